//! `leave`: stop receiving a channel.

use protocol::{ErrorCode, Ref};

use super::{Replies, Session, reply};
use crate::error::ChatError;
use crate::node::Node;

pub(super) async fn run(
    session: &mut Session,
    node: &Node,
    channel: &str,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    if session.channels.remove(channel).is_none() {
        // The seed answers nothing here; a silent no-op leaves clients guessing.
        return Err(ChatError::new(
            ErrorCode::NotJoined,
            format!("You are not in {channel}"),
        ));
    }
    let username = session.announced_name(node).await;
    node.leave(channel, &session.conn, username.as_deref())
        .await;
    Ok(vec![reply(format!("You have left {channel}"), reference)])
}
