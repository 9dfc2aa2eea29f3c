//! `message`: text to every member of a joined channel, on every node, the sender included.

use protocol::{ErrorCode, Ref};

use super::{Replies, Session, reply};
use crate::engine::NewMessage;
use crate::error::ChatError;
use crate::limits::{check_message, check_not_reserved};
use crate::moderation::Target;
use crate::node::Node;
use crate::policy::Access;

pub(super) async fn run(
    session: &mut Session,
    node: &Node,
    channel: &str,
    message: String,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    let username = session.require_name(node).await?;
    check_not_reserved(channel)?;
    session.require_joined(channel)?;
    if let Access::Deny(text) = node.channels.may_send(&session.principal, channel) {
        return Err(ChatError::new(ErrorCode::Forbidden, text));
    }
    check_message(&message, &node.limits)?;
    session.charge_message()?;
    let message = super::screen(node, &session.principal, Target::Channel(channel), message)?;
    let ack = reply(format!("Message sent to {channel}: {message}"), reference);
    node.engine
        .broker
        .publish(NewMessage {
            channel: channel.to_owned(),
            user_id: session.principal.user_id.to_string(),
            username,
            message,
        })
        .await?;
    node.metrics.messages_published.inc();
    // The sender stopped typing: the next `typing` here is news again.
    if let Some(joined) = session.channels.get_mut(channel) {
        joined.typing_at = None;
    }
    // The sender's own copy is queued by now; this reply is written before the queue is read,
    // so the sender sees "Message sent to ..." first, as with the seed.
    Ok(vec![ack])
}
