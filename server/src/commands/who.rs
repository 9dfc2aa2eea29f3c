//! `who`: the users present in a joined channel.

use protocol::{Event, PresenceList, Ref};

use super::{Replies, Session};
use crate::error::ChatError;
use crate::node::Node;

pub(super) async fn run(
    session: &mut Session,
    node: &Node,
    channel: &str,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    session.require_joined(channel)?;
    let users = node.engine.presence.presence(channel).await?;
    let event = Event::Presence(PresenceList {
        channel: channel.to_owned(),
        users,
    });
    Ok(vec![event.to_json(reference)])
}
