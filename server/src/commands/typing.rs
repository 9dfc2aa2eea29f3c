//! `typing`: tell a joined channel's other members that this user is typing. Silent on success,
//! at most one announcement per connection and channel per `--typing-interval` (the rest are
//! dropped and counted), never kept in history.

use std::sync::Arc;
use std::time::Instant;

use protocol::{ErrorCode, TypingUser};

use super::{Replies, Session, refuse_muted};
use crate::engine::Announcement;
use crate::error::ChatError;
use crate::limits::check_not_reserved;
use crate::metrics::Limit;
use crate::node::Node;
use crate::policy::Access;

pub(super) async fn run(
    session: &mut Session,
    node: &Node,
    channel: &str,
) -> Result<Replies, ChatError> {
    // Local checks first: a typing dropped by the window costs no engine round trip.
    check_not_reserved(channel)?;
    session.require_joined(channel)?;
    if let Access::Deny(text) = node.channels.may_send(&session.principal, channel) {
        return Err(ChatError::new(ErrorCode::Forbidden, text));
    }
    refuse_muted(node, &session.principal)?;
    let last = session.channels.get(channel).and_then(|j| j.typing_at);
    if last.is_some_and(|at| at.elapsed() < node.limits.typing_interval) {
        node.metrics.limit(Limit::TypingRate);
        return Ok(Vec::new());
    }
    let username = session.require_name(node).await?;
    let typing = TypingUser {
        channel: channel.to_owned(),
        user_id: session.principal.user_id.to_string(),
        username,
    };
    node.engine
        .broker
        .announce(Announcement::Typing(Arc::new(typing)))
        .await?;
    if let Some(joined) = session.channels.get_mut(channel) {
        joined.typing_at = Some(Instant::now());
    }
    Ok(Vec::new())
}
