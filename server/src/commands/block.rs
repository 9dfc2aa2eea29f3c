//! `block`, `unblock` and `blocked`: the users whose channel messages, direct messages and
//! typing indicators this user does not receive. Each answers `blocked_users` with the full
//! list; `block` and `unblock` first acknowledge as other requests do.

use protocol::{BlockedUsers, ErrorCode, Event, Ref};

use super::{Replies, Session, reply};
use crate::engine::{BlockOutcome, BlockSnapshot};
use crate::error::ChatError;
use crate::node::Node;

/// Longest user id accepted (the `direct` recipient rule).
const MAX_USER_ID_BYTES: usize = 128;

/// Refuses what cannot be a user id.
fn check_user_id(user_id: &str) -> Result<(), ChatError> {
    let problem = if user_id.trim().is_empty() {
        "must not be empty"
    } else if user_id.len() > MAX_USER_ID_BYTES {
        "longer than 128 bytes"
    } else if user_id.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(ChatError::new(
        ErrorCode::BadRequest,
        format!("Invalid user id: {problem}"),
    ))
}

/// The list as the client sees it, and the requester's cache brought up to date (the same
/// list also reaches every node, in order, but the requester's next request must see it now).
fn answer(session: &Session, blocks: BlockSnapshot, reference: Option<&Ref>) -> String {
    session.conn.blocks.apply(&blocks, false);
    Event::BlockedUsers(BlockedUsers {
        user_ids: blocks.users,
    })
    .to_json(reference)
}

pub(super) async fn block(
    session: &mut Session,
    node: &Node,
    target: &str,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    check_user_id(target)?;
    if target == &*session.principal.user_id {
        return Err(ChatError::new(
            ErrorCode::BadRequest,
            "You cannot block yourself",
        ));
    }
    let max = node.limits.max_blocks;
    match node
        .engine
        .moderation
        .block(&session.principal.user_id, target, max)
        .await?
    {
        BlockOutcome::Blocked(blocks) => Ok(vec![
            reply(format!("You have blocked {target}"), reference),
            answer(session, blocks, reference),
        ]),
        BlockOutcome::TooMany => Err(ChatError::new(
            ErrorCode::TooManyBlocks,
            format!("You have blocked {max} users already, unblock one first"),
        )),
    }
}

pub(super) async fn unblock(
    session: &mut Session,
    node: &Node,
    target: &str,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    check_user_id(target)?;
    let blocks = node
        .engine
        .moderation
        .unblock(&session.principal.user_id, target)
        .await?;
    Ok(vec![
        reply(format!("You have unblocked {target}"), reference),
        answer(session, blocks, reference),
    ])
}

pub(super) async fn blocked(
    session: &mut Session,
    node: &Node,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    let blocks = node
        .engine
        .moderation
        .blocked(&session.principal.user_id)
        .await?;
    Ok(vec![answer(session, blocks, reference)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_checked() {
        assert!(check_user_id("6f1c-u").is_ok());
        for bad in ["", "  ", "a\nb", &"x".repeat(129)] {
            let error = check_user_id(bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::BadRequest, "{bad:?}");
            assert!(error.message.starts_with("Invalid user id: "));
        }
    }
}
