//! Reading history stream entries.

use protocol::{ChatMessage, MessageId};

use crate::engine::EngineError;

pub(super) fn parse_id(id: &str) -> Result<MessageId, EngineError> {
    id.parse()
        .map_err(|e| EngineError::Unavailable(format!("bad stream id from Redis: {e}")))
}

/// One stream entry as read with XRANGE: id and flat field/value list.
pub(super) type Entry = (String, Vec<String>);

pub(super) fn entry_message(
    channel: &str,
    (id, fields): Entry,
) -> Result<ChatMessage, EngineError> {
    let id = parse_id(&id)?;
    let mut message = ChatMessage {
        username: String::new(),
        message: String::new(),
        channel: channel.to_owned(),
        id,
        user_id: String::new(),
        ts: id.ms,
    };
    for pair in fields.chunks(2) {
        if let [field, value] = pair {
            match field.as_str() {
                "u" => message.user_id = value.clone(),
                "n" => message.username = value.clone(),
                "m" => message.message = value.clone(),
                _ => {}
            }
        }
    }
    Ok(message)
}
