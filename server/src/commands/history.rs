//! `history`: page back through a joined channel's kept messages.

use protocol::{Event, HistoryPage, MessageId, Ref};

use super::{Replies, Session};
use crate::engine::HistoryQuery;
use crate::error::ChatError;
use crate::node::Node;

/// Page size when the request names none.
const DEFAULT_PAGE: usize = 50;

pub(super) async fn run(
    session: &mut Session,
    node: &Node,
    channel: &str,
    before: Option<MessageId>,
    limit: Option<u32>,
    reference: Option<&Ref>,
) -> Result<Replies, ChatError> {
    session.require_joined(channel)?;
    let limit = limit
        .map_or(DEFAULT_PAGE, |l| l as usize)
        .min(node.limits.max_history_page);
    let query = match before {
        Some(before) => HistoryQuery::Before { before, limit },
        None => HistoryQuery::Last { limit },
    };
    let mut history = node.engine.broker.history(channel, query).await?;
    super::without_blocked(session, &mut history.messages);
    let event = Event::History(HistoryPage {
        channel: channel.to_owned(),
        messages: history.messages,
        more: history.more,
        gap: false,
    });
    Ok(vec![event.to_json(reference)])
}
