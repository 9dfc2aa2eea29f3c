//! `set-name`: the user's display name, kept per user across reconnects.

use protocol::Ref;

use super::{Replies, Session, reply};
use crate::error::ChatError;
use crate::limits::check_name;
use crate::moderation::Target;
use crate::node::Node;

pub(super) async fn run(
    session: &mut Session,
    node: &Node,
    username: &str,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    check_name(username, &node.limits)?;
    super::screen(node, &session.principal, Target::Name, username.to_owned())?;
    node.engine
        .users
        .set_name(&session.principal.user_id, username, node.unique_names)
        .await?;
    Ok(vec![reply(
        format!("Username set to {username}"),
        reference,
    )])
}
