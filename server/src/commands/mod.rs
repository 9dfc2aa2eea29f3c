//! Client requests, one file per request type (as in mini-redis). Each returns the frames to
//! send back to the requesting connection, in order; deliveries to others go through the engine.

mod block;
mod direct;
mod history;
mod join;
mod leave;
mod message;
mod set_name;
mod typing;
mod who;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use protocol::{ClientFrame, ClientRequest, ErrorCode, Event, Ref, Reply};

use crate::error::ChatError;
use crate::hub::ConnHandle;
use crate::identity::Principal;
use crate::moderation::{Review, Target};
use crate::node::Node;

/// A channel this connection has joined.
#[derive(Debug, Default, Clone, Copy)]
pub struct Joined {
    /// When this connection last announced `typing` here (cleared by a `message`).
    pub typing_at: Option<std::time::Instant>,
}

/// Per-connection state that requests read and change.
pub struct Session {
    /// This connection's queue handle (its identity in the hub).
    pub conn: ConnHandle,
    /// The authenticated user.
    pub principal: Principal,
    /// Channels joined by this connection (the hub knows them too, to route deliveries).
    pub channels: HashMap<Arc<str>, Joined, foldhash::fast::RandomState>,
    message_limiter: DefaultDirectRateLimiter,
}

impl Session {
    /// State of a new connection.
    pub fn new(conn: ConnHandle, principal: Principal, node: &Node) -> Self {
        let per_second =
            NonZeroU32::new(node.limits.messages_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(node.limits.message_burst).unwrap_or(per_second);
        Self {
            conn,
            principal,
            channels: HashMap::default(),
            message_limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
        }
    }

    /// Charges one chat or direct message against the connection's rate.
    fn charge_message(&self) -> Result<(), ChatError> {
        self.message_limiter.check().map_err(|_| {
            ChatError::new(
                ErrorCode::RateLimited,
                "You are sending messages too fast, slow down",
            )
        })
    }

    /// The user's display name, which `message` and `direct` require.
    async fn require_name(&self, node: &Node) -> Result<String, ChatError> {
        node.engine
            .users
            .name(&self.principal.user_id)
            .await?
            .ok_or_else(|| ChatError::new(ErrorCode::NameRequired, "You must set a username first"))
    }

    /// The user's name for presence announcements; none when unset or unreadable (a leave
    /// must go through even while the engine is down).
    async fn announced_name(&self, node: &Node) -> Option<String> {
        node.engine
            .users
            .name(&self.principal.user_id)
            .await
            .ok()
            .flatten()
    }

    /// Fails with the seed's error unless the channel is joined.
    fn require_joined(&self, channel: &str) -> Result<(), ChatError> {
        if self.channels.contains_key(channel) {
            Ok(())
        } else {
            Err(ChatError::new(
                ErrorCode::NotJoined,
                "You must join the channel first",
            ))
        }
    }
}

/// Drops the messages of users this connection's user blocks from a history page (the page may
/// then hold fewer messages than asked for; `more` still tells whether older ones are kept).
fn without_blocked(session: &Session, messages: &mut Vec<protocol::ChatMessage>) {
    let blocks = &session.conn.blocks;
    if blocks.blocks_anyone() {
        messages.retain(|m| !blocks.blocks(&m.user_id));
    }
}

/// Frames to send back to the requester, in order.
pub type Replies = Vec<String>;

/// What may be delivered of `text` from `who` to `target`: refused when the user is muted
/// (messages only) or the moderator rejects it, else the text as the moderator leaves it.
pub fn screen(
    node: &Node,
    who: &Principal,
    target: Target<'_>,
    text: String,
) -> Result<String, ChatError> {
    if target != Target::Name {
        refuse_muted(node, who)?;
    }
    match node.moderator.review(who, target, &text) {
        Review::Pass => Ok(text),
        Review::Replace(_) if target == Target::Name => Err(ChatError::new(
            ErrorCode::BadName,
            "Invalid username: not allowed",
        )),
        Review::Replace(replaced) => Ok(replaced),
        Review::Reject(reason) if target == Target::Name => Err(ChatError::new(
            ErrorCode::BadName,
            format!("Invalid username: {reason}"),
        )),
        Review::Reject(reason) => Err(ChatError::new(ErrorCode::Forbidden, reason)),
    }
}

/// Refuses a muted user (`forbidden`, saying for how long): what `message`, `direct` and
/// `typing` check first.
pub fn refuse_muted(node: &Node, who: &Principal) -> Result<(), ChatError> {
    match node.hub.mute_of(&who.user_id, crate::engine::now_ms()) {
        Some(muted) => Err(ChatError::new(ErrorCode::Forbidden, muted)),
        None => Ok(()),
    }
}

/// A seed-style `{"message": ...}` reply.
pub fn reply(text: impl Into<std::borrow::Cow<'static, str>>, reference: Option<&Ref>) -> String {
    Reply {
        message: text.into(),
        reference,
    }
    .to_json()
}

/// Carries out one parsed request. Errors become error replies (counted in metrics).
pub async fn handle(session: &mut Session, node: &Node, frame: ClientFrame) -> Replies {
    let reference = frame.reference.as_ref();
    let result = match frame.request {
        ClientRequest::SetName { username } => {
            set_name::run(session, node, &username, reference).await
        }
        ClientRequest::Join {
            channel,
            history,
            since,
        } => join::run(session, node, &channel, history, since, reference).await,
        ClientRequest::Leave { channel } => leave::run(session, node, &channel, reference).await,
        ClientRequest::Message { channel, message } => {
            message::run(session, node, &channel, message, reference).await
        }
        ClientRequest::Who { channel } => who::run(session, node, &channel, reference).await,
        ClientRequest::Direct { to, message } => {
            direct::run(session, node, &to, message, reference).await
        }
        ClientRequest::History {
            channel,
            before,
            limit,
        } => history::run(session, node, &channel, before, limit, reference).await,
        ClientRequest::Ping => Ok(vec![Event::Pong.to_json(reference)]),
        ClientRequest::Typing { channel } => typing::run(session, node, &channel).await,
        ClientRequest::Block { user_id } => block::block(session, node, &user_id, reference).await,
        ClientRequest::Unblock { user_id } => {
            block::unblock(session, node, &user_id, reference).await
        }
        ClientRequest::Blocked => block::blocked(session, node, reference).await,
    };
    result.unwrap_or_else(|error| {
        node.metrics.error(error.code);
        vec![error.to_json(reference)]
    })
}

/// Leaves every channel of a closing connection: those its session lists, and `also` (after a
/// request panicked, the hub's list: a join or leave may have stopped halfway).
pub async fn leave_all(session: &mut Session, node: &Node, also: Vec<Arc<str>>) {
    let username = session.announced_name(node).await;
    let listed: Vec<Arc<str>> = session
        .channels
        .drain()
        .map(|(channel, _)| channel)
        .collect();
    for channel in listed.into_iter().chain(also) {
        // A channel in both lists is left once: the second leave finds no member.
        node.leave(&channel, &session.conn, username.as_deref())
            .await;
    }
}
