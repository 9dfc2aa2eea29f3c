//! Server → client frames: plain replies (`{"message"}` / `{"error","code"}`) and typed events.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorCode;
use crate::events::Event;
use crate::ids::Ref;

/// A success reply in the seed's shape: `{"message":"..."}`, plus `ref` when the request had one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply<'a> {
    /// The seed's reply text, e.g. `You have joined lobby`.
    pub message: Cow<'a, str>,
    /// The request's reference.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a Ref>,
}

/// An error reply: `{"error":"...","code":"..."}`, plus `ref` when the request had one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorReply<'a> {
    /// Human-readable text (the seed's wording where it has one).
    pub error: Cow<'a, str>,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// The request's reference.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a Ref>,
}

/// A typed event with an optional `ref` (set when it answers a request, e.g. `presence`).
#[derive(Serialize)]
struct EventWithRef<'a> {
    #[serde(flatten)]
    event: &'a Event,
    #[serde(rename = "ref")]
    reference: &'a Ref,
}

impl Event {
    /// The event as JSON text, echoing `reference` when given.
    pub fn to_json(&self, reference: Option<&Ref>) -> String {
        let result = match reference {
            None => serde_json::to_string(self),
            Some(reference) => serde_json::to_string(&EventWithRef {
                event: self,
                reference,
            }),
        };
        // Serialising these plain structs to a string cannot fail: no maps with non-string
        // keys, no custom serialisers that error.
        result.unwrap_or_else(|e| unreachable!("event serialisation failed: {e}"))
    }
}

impl Reply<'_> {
    /// The reply as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("reply serialisation: {e}"))
    }
}

impl ErrorReply<'_> {
    /// The error reply as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("error serialisation: {e}"))
    }
}

/// One frame as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    /// A success reply (`{"message"}`).
    Reply {
        /// The reply text.
        message: String,
        /// The echoed reference.
        reference: Option<Ref>,
    },
    /// An error reply (`{"error","code"}`).
    Error {
        /// The error text.
        error: String,
        /// The code (`Unknown` when absent or unknown to this version).
        code: ErrorCode,
        /// The echoed reference.
        reference: Option<Ref>,
    },
    /// A typed event.
    Event {
        /// The event.
        event: Event,
        /// The echoed reference, when the event answers a request.
        reference: Option<Ref>,
    },
}

/// A server frame this version could not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrameError(pub String);

impl std::fmt::Display for ServerFrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unreadable server frame: {}", self.0)
    }
}

impl std::error::Error for ServerFrameError {}

#[derive(Deserialize)]
struct RawServerFrame<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<ErrorCode>,
    #[serde(rename = "ref", default)]
    reference: Option<Ref>,
}

/// Parses one server text frame (what a client receives).
pub fn parse_server_frame(text: &str) -> Result<ServerFrame, ServerFrameError> {
    let raw: RawServerFrame<'_> =
        serde_json::from_str(text).map_err(|e| ServerFrameError(e.to_string()))?;
    if let Some(kind) = raw.kind {
        let payload = raw.payload.map_or("null", RawValue::get);
        let tagged = if payload == "null" {
            serde_json::json!({ "type": kind })
        } else {
            let payload: serde_json::Value =
                serde_json::from_str(payload).map_err(|e| ServerFrameError(e.to_string()))?;
            serde_json::json!({ "type": kind, "payload": payload })
        };
        let event = serde_json::from_value(tagged).map_err(|e| ServerFrameError(e.to_string()))?;
        return Ok(ServerFrame::Event {
            event,
            reference: raw.reference,
        });
    }
    if let Some(error) = raw.error {
        return Ok(ServerFrame::Error {
            error,
            code: raw.code.unwrap_or(ErrorCode::Unknown),
            reference: raw.reference,
        });
    }
    if let Some(message) = raw.message {
        return Ok(ServerFrame::Reply {
            message,
            reference: raw.reference,
        });
    }
    Err(ServerFrameError(
        "neither type, error nor message present".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use crate::ids::MessageId;

    #[test]
    fn seed_replies_are_byte_exact() {
        let r = Reply {
            message: "Successfully connected!".into(),
            reference: None,
        };
        assert_eq!(r.to_json(), r#"{"message":"Successfully connected!"}"#);
        let reference = Ref::from(4);
        let r = Reply {
            message: "You have joined c".into(),
            reference: Some(&reference),
        };
        assert_eq!(r.to_json(), r#"{"message":"You have joined c","ref":4}"#);
        let e = ErrorReply {
            error: "Invalid message".into(),
            code: ErrorCode::InvalidMessage,
            reference: None,
        };
        assert_eq!(
            e.to_json(),
            r#"{"error":"Invalid message","code":"invalid_message"}"#
        );
    }

    #[test]
    fn chat_message_keeps_seed_field_order() {
        let event = Event::ChatMessageReceived(ChatMessage {
            username: "N".into(),
            message: "M".into(),
            channel: "C".into(),
            id: MessageId::new(1, 0),
            user_id: "u".into(),
            ts: 1,
        });
        assert_eq!(
            event.to_json(None),
            r#"{"type":"chat_message_received","payload":{"username":"N","message":"M","channel":"C","id":"1-0","user_id":"u","ts":1}}"#
        );
    }

    #[test]
    fn user_typing_has_its_wire_shape() {
        let event = Event::UserTyping(TypingUser {
            channel: "lobby".into(),
            user_id: "u1".into(),
            username: "Ann".into(),
        });
        assert_eq!(
            event.to_json(None),
            r#"{"type":"user_typing","payload":{"channel":"lobby","user_id":"u1","username":"Ann"}}"#
        );
    }

    #[test]
    fn every_event_round_trips_through_the_client_parser() {
        let reference = Ref::from("x");
        let events = [
            Event::Pong,
            Event::Broadcast(BroadcastMessage {
                message: "hi".into(),
                ts: 3,
                channel: None,
            }),
            Event::Broadcast(BroadcastMessage {
                message: "to the lobby".into(),
                ts: 4,
                channel: Some("lobby".into()),
            }),
            Event::History(HistoryPage {
                channel: "c".into(),
                messages: vec![],
                more: true,
                gap: false,
            }),
            Event::Presence(PresenceList {
                channel: "c".into(),
                users: vec![PresenceUser {
                    user_id: "u".into(),
                    username: None,
                }],
            }),
            Event::UserLeft(PresenceChange {
                channel: "c".into(),
                user_id: "u".into(),
                username: Some("n".into()),
            }),
            Event::DirectMessageReceived(DirectMessage {
                id: "d".into(),
                from: "u".into(),
                username: "n".into(),
                message: "m".into(),
                ts: 9,
            }),
            Event::BlockedUsers(BlockedUsers {
                user_ids: vec!["u1".into(), "u2".into()],
            }),
        ];
        for event in events {
            for r in [None, Some(&reference)] {
                let parsed = parse_server_frame(&event.to_json(r)).unwrap();
                assert_eq!(
                    parsed,
                    ServerFrame::Event {
                        event: event.clone(),
                        reference: r.cloned()
                    }
                );
            }
        }
        assert_eq!(Event::Pong.to_json(None), r#"{"type":"pong"}"#);
        assert_eq!(
            Event::BlockedUsers(BlockedUsers { user_ids: vec![] }).to_json(None),
            r#"{"type":"blocked_users","payload":{"user_ids":[]}}"#
        );
        assert_eq!(
            parse_server_frame(r#"{"error":"Invalid token"}"#).unwrap(),
            ServerFrame::Error {
                error: "Invalid token".into(),
                code: ErrorCode::Unknown,
                reference: None
            }
        );
        assert!(parse_server_frame("{}").is_err());
    }
}
