//! `join`: membership of a channel, with optional history (`history`: last K, `since`: resume).

use protocol::{ErrorCode, Event, HistoryPage, MessageId, Ref};

use super::{Joined, Replies, Session, reply};
use crate::engine::HistoryQuery;
use crate::error::ChatError;
use crate::limits::check_channel;
use crate::node::Node;
use crate::policy::Access;

pub(super) async fn run(
    session: &mut Session,
    node: &Node,
    channel: &str,
    history: Option<u32>,
    since: Option<MessageId>,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    check_channel(channel, &node.limits)?;
    if let Access::Deny(text) = node.channels.may_join(&session.principal, channel) {
        return Err(ChatError::new(ErrorCode::Forbidden, text));
    }
    if session.channels.contains_key(channel) {
        return Ok(vec![reply(
            format!("You have already joined {channel}"),
            reference,
        )]);
    }
    if session.channels.len() >= node.limits.max_channels_per_connection {
        return Err(ChatError::new(
            ErrorCode::TooManyChannels,
            format!(
                "You are in {} channels already, leave one first",
                session.channels.len()
            ),
        ));
    }
    let username = node.engine.users.name(&session.principal.user_id).await?;
    node.join(channel, &session.conn, username.as_deref())
        .await?;
    let mut replies = vec![reply(format!("You have joined {channel}"), reference)];

    let page = node.limits.max_history_page;
    let query = match (since, history) {
        (Some(after), _) => Some(HistoryQuery::Since { after, limit: page }),
        (None, Some(k)) if k > 0 => Some(HistoryQuery::Last {
            limit: (k as usize).min(page),
        }),
        _ => None,
    };
    if let Some(query) = query {
        // We are subscribed already, so anything newer than this read also arrives live; the
        // hub drops the live copies of what the history holds.
        match node.engine.broker.history(channel, query).await {
            Ok(mut history) => {
                if let Some(last) = history.messages.last() {
                    node.hub.replayed(channel, &session.conn, last.id);
                }
                super::without_blocked(session, &mut history.messages);
                let event = Event::History(HistoryPage {
                    channel: channel.to_owned(),
                    messages: history.messages,
                    more: history.more,
                    gap: history.gap,
                });
                replies.push(event.to_json(reference));
            }
            Err(error) => {
                // Joined, but without the history: say so rather than pretend it was empty.
                let error = ChatError::from(error);
                node.metrics.error(error.code);
                replies.push(error.to_json(reference));
            }
        }
    }
    session.channels.insert(channel.into(), Joined::default());
    Ok(replies)
}
