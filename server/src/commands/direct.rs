//! `direct`: text to every connection of one user, on any node.

use protocol::{DirectMessage, ErrorCode, Ref};

use super::{Replies, Session, reply};
use crate::engine::now_ms;
use crate::error::ChatError;
use crate::limits::check_message;
use crate::moderation::Target;
use crate::node::Node;

pub(super) async fn run(
    session: &mut Session,
    node: &Node,
    to: &str,
    message: String,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    let username = session.require_name(node).await?;
    if to.is_empty() || to.len() > 128 {
        return Err(ChatError::new(ErrorCode::BadRequest, "Invalid recipient"));
    }
    check_message(&message, &node.limits)?;
    session.charge_message()?;
    let message = super::screen(node, &session.principal, Target::Direct(to), message)?;
    let direct = DirectMessage {
        id: uuid::Uuid::now_v7().to_string(),
        from: session.principal.user_id.to_string(),
        username,
        message,
        ts: now_ms(),
    };
    if !node.engine.broker.send_direct(to, direct).await? {
        return Err(ChatError::new(
            ErrorCode::NotFound,
            format!("User {to} is not online"),
        ));
    }
    Ok(vec![reply(
        format!("Direct message sent to {to}"),
        reference,
    )])
}
