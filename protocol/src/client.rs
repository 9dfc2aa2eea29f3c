//! Client → server frames: `{"type": ..., "payload": {...}, "ref": ...}`.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::ErrorCode;
use crate::ids::{MessageId, Ref};
use crate::server::ErrorReply;

/// One parsed client frame: the request and the reference to echo on its replies.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    /// The client's `ref`, if it sent one.
    pub reference: Option<Ref>,
    /// What the client asks for.
    pub request: ClientRequest,
}

/// Everything a client can ask the server to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    /// `set-name`: set the user's display name (kept across reconnects).
    SetName {
        /// The new name.
        username: String,
    },
    /// `join`: start receiving a channel, optionally with history first.
    Join {
        /// Channel to join.
        channel: String,
        /// Send the last `history` messages before live traffic.
        history: Option<u32>,
        /// Send every kept message after this id before live traffic (resume after a reconnect).
        since: Option<MessageId>,
    },
    /// `leave`: stop receiving a channel.
    Leave {
        /// Channel to leave.
        channel: String,
    },
    /// `message`: send text to a joined channel.
    Message {
        /// Target channel (must be joined).
        channel: String,
        /// The text.
        message: String,
    },
    /// `who`: list the users present in a channel.
    Who {
        /// Channel to list.
        channel: String,
    },
    /// `direct`: send text to every connection of one user.
    Direct {
        /// Recipient's user id.
        to: String,
        /// The text.
        message: String,
    },
    /// `history`: page back through a channel's kept messages.
    History {
        /// Channel to read.
        channel: String,
        /// Only messages older than this id (the newest page when absent).
        before: Option<MessageId>,
        /// Page size (the server caps it).
        limit: Option<u32>,
    },
    /// `ping`: application-level keep-alive, answered with `pong`.
    Ping,
    /// `typing`: tell a joined channel's other members that this user is typing (no reply).
    Typing {
        /// Channel the user types in (must be joined).
        channel: String,
    },
    /// `block`: stop receiving this user's channel messages, direct messages and typing
    /// indicators (kept across reconnects), answered with `blocked_users`.
    Block {
        /// The user to block.
        user_id: String,
    },
    /// `unblock`: receive this user again, answered with `blocked_users`.
    Unblock {
        /// The user to unblock.
        user_id: String,
    },
    /// `blocked`: the users this user blocks, answered with `blocked_users`.
    Blocked,
}

impl ClientRequest {
    /// The wire `type` of this request.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientRequest::SetName { .. } => "set-name",
            ClientRequest::Join { .. } => "join",
            ClientRequest::Leave { .. } => "leave",
            ClientRequest::Message { .. } => "message",
            ClientRequest::Who { .. } => "who",
            ClientRequest::Direct { .. } => "direct",
            ClientRequest::History { .. } => "history",
            ClientRequest::Ping => "ping",
            ClientRequest::Typing { .. } => "typing",
            ClientRequest::Block { .. } => "block",
            ClientRequest::Unblock { .. } => "unblock",
            ClientRequest::Blocked => "blocked",
        }
    }
}

impl ClientFrame {
    /// A frame without a reference.
    pub fn new(request: ClientRequest) -> Self {
        Self {
            reference: None,
            request,
        }
    }

    /// A frame whose replies will echo `reference`.
    pub fn with_ref(request: ClientRequest, reference: impl Into<Ref>) -> Self {
        Self {
            reference: Some(reference.into()),
            request,
        }
    }

    /// The frame as JSON text, ready to send.
    pub fn to_json(&self) -> String {
        use serde_json::{Map, Value, json};
        let payload = match &self.request {
            ClientRequest::SetName { username } => json!({ "username": username }),
            ClientRequest::Join {
                channel,
                history,
                since,
            } => {
                let mut p = Map::new();
                p.insert("channel".into(), json!(channel));
                if let Some(h) = history {
                    p.insert("history".into(), json!(h));
                }
                if let Some(s) = since {
                    p.insert("since".into(), json!(s));
                }
                Value::Object(p)
            }
            ClientRequest::Leave { channel }
            | ClientRequest::Who { channel }
            | ClientRequest::Typing { channel } => {
                json!({ "channel": channel })
            }
            ClientRequest::Message { channel, message } => {
                json!({ "channel": channel, "message": message })
            }
            ClientRequest::Direct { to, message } => json!({ "to": to, "message": message }),
            ClientRequest::History {
                channel,
                before,
                limit,
            } => {
                let mut p = Map::new();
                p.insert("channel".into(), json!(channel));
                if let Some(b) = before {
                    p.insert("before".into(), json!(b));
                }
                if let Some(l) = limit {
                    p.insert("limit".into(), json!(l));
                }
                Value::Object(p)
            }
            ClientRequest::Ping | ClientRequest::Blocked => Value::Null,
            ClientRequest::Block { user_id } | ClientRequest::Unblock { user_id } => {
                json!({ "user_id": user_id })
            }
        };
        let mut frame = Map::new();
        frame.insert("type".into(), json!(self.request.type_name()));
        if !payload.is_null() {
            frame.insert("payload".into(), payload);
        }
        if let Some(r) = &self.reference {
            frame.insert("ref".into(), json!(r));
        }
        Value::Object(frame).to_string()
    }
}

/// A frame the server could not accept, with what to tell the client.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    /// The frame's `ref`, when it could be read.
    pub reference: Option<Ref>,
    /// Stable error code.
    pub code: ErrorCode,
    /// Human-readable error text (the seed's wording where the seed has one).
    pub message: String,
}

impl RequestError {
    /// The error reply to send back.
    pub fn reply(&self) -> ErrorReply<'_> {
        ErrorReply {
            error: self.message.as_str().into(),
            code: self.code,
            reference: self.reference.as_ref(),
        }
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(rename = "ref", borrow, default)]
    reference: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct NamePayload {
    username: String,
}

#[derive(Deserialize)]
struct JoinPayload {
    channel: String,
    #[serde(default)]
    history: Option<u32>,
    #[serde(default)]
    since: Option<MessageId>,
}

#[derive(Deserialize)]
struct ChannelPayload {
    channel: String,
}

#[derive(Deserialize)]
struct MessagePayload {
    channel: String,
    message: String,
}

#[derive(Deserialize)]
struct DirectPayload {
    to: String,
    message: String,
}

#[derive(Deserialize)]
struct HistoryPayload {
    channel: String,
    #[serde(default)]
    before: Option<MessageId>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct UserPayload {
    user_id: String,
}

/// Parses one client text frame.
///
/// Never panics: a frame that is not a JSON object, has no known `type`, or whose payload lacks a
/// field becomes a [`RequestError`] carrying the seed's wording (`Error handling message: ...`,
/// `Invalid message`) and a [`ErrorCode`]. Unknown extra fields are ignored.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, RequestError> {
    let bad_json = |detail: String| RequestError {
        reference: None,
        code: ErrorCode::BadJson,
        message: format!("Error handling message: {detail}"),
    };
    if !text.trim_start().starts_with('{') {
        // serde would read a JSON array as a struct; only objects are frames.
        return Err(match serde_json::from_str::<&RawValue>(text) {
            Err(e) => bad_json(e.to_string()),
            Ok(_) => bad_json("expected a JSON object".into()),
        });
    }
    let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| bad_json(e.to_string()))?;
    let reference = match raw.reference {
        None => None,
        Some(value) => match serde_json::from_str::<Option<Ref>>(value.get()) {
            Ok(reference) => reference,
            Err(_) => {
                return Err(RequestError {
                    reference: None,
                    code: ErrorCode::BadRequest,
                    message: "Error handling message: ref must be a string or a number".into(),
                });
            }
        },
    };
    let fail = |code, message: String| RequestError {
        reference: reference.clone(),
        code,
        message,
    };
    // A `Cow` also reads a type written with escapes (`"mess\u0061ge"`), which `&str` cannot
    // borrow.
    let kind = raw
        .kind
        .and_then(|k| serde_json::from_str::<std::borrow::Cow<'_, str>>(k.get()).ok());
    let Some(kind) = kind.as_deref() else {
        return Err(fail(ErrorCode::InvalidMessage, "Invalid message".into()));
    };
    fn payload<T: DeserializeOwned>(raw: Option<&RawValue>) -> Result<T, String> {
        let text = raw.map_or("null", RawValue::get);
        serde_json::from_str(text).map_err(|e| {
            if text == "null" {
                "Error handling message: payload is missing".to_owned()
            } else {
                format!("Error handling message: invalid payload: {e}")
            }
        })
    }
    let bad = |message| fail(ErrorCode::BadRequest, message);
    let request = match kind {
        "set-name" => {
            let p: NamePayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::SetName {
                username: p.username,
            }
        }
        "join" => {
            let p: JoinPayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::Join {
                channel: p.channel,
                history: p.history,
                since: p.since,
            }
        }
        "leave" => {
            let p: ChannelPayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::Leave { channel: p.channel }
        }
        "message" => {
            let p: MessagePayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::Message {
                channel: p.channel,
                message: p.message,
            }
        }
        "who" => {
            let p: ChannelPayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::Who { channel: p.channel }
        }
        "direct" => {
            let p: DirectPayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::Direct {
                to: p.to,
                message: p.message,
            }
        }
        "history" => {
            let p: HistoryPayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::History {
                channel: p.channel,
                before: p.before,
                limit: p.limit,
            }
        }
        "ping" => ClientRequest::Ping,
        "typing" => {
            let p: ChannelPayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::Typing { channel: p.channel }
        }
        "block" => {
            let p: UserPayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::Block { user_id: p.user_id }
        }
        "unblock" => {
            let p: UserPayload = payload(raw.payload).map_err(bad)?;
            ClientRequest::Unblock { user_id: p.user_id }
        }
        "blocked" => ClientRequest::Blocked,
        _ => return Err(fail(ErrorCode::InvalidMessage, "Invalid message".into())),
    };
    Ok(ClientFrame { reference, request })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> RequestError {
        parse_client_frame(text).unwrap_err()
    }

    #[test]
    fn an_escaped_type_is_read() {
        let frame = parse_client_frame(r#"{"type":"p\u0069ng"}"#).unwrap();
        assert_eq!(frame.request, ClientRequest::Ping);
    }

    #[test]
    fn parses_every_request_and_round_trips() {
        let frames = [
            ClientFrame::new(ClientRequest::SetName {
                username: "Ann".into(),
            }),
            ClientFrame::with_ref(
                ClientRequest::Join {
                    channel: "lobby".into(),
                    history: Some(10),
                    since: Some(MessageId::new(5, 1)),
                },
                1,
            ),
            ClientFrame::with_ref(
                ClientRequest::Leave {
                    channel: "lobby".into(),
                },
                "abc",
            ),
            ClientFrame::new(ClientRequest::Message {
                channel: "lobby".into(),
                message: "hi \"there\" ✓".into(),
            }),
            ClientFrame::new(ClientRequest::Who {
                channel: "lobby".into(),
            }),
            ClientFrame::new(ClientRequest::Direct {
                to: "u1".into(),
                message: "psst".into(),
            }),
            ClientFrame::new(ClientRequest::History {
                channel: "lobby".into(),
                before: Some(MessageId::new(9, 0)),
                limit: Some(3),
            }),
            ClientFrame::with_ref(ClientRequest::Ping, 2),
            ClientFrame::new(ClientRequest::Typing {
                channel: "lobby".into(),
            }),
            ClientFrame::with_ref(
                ClientRequest::Block {
                    user_id: "u2".into(),
                },
                3,
            ),
            ClientFrame::new(ClientRequest::Unblock {
                user_id: "u2".into(),
            }),
            ClientFrame::new(ClientRequest::Blocked),
        ];
        for frame in frames {
            assert_eq!(parse_client_frame(&frame.to_json()).unwrap(), frame);
        }
    }

    #[test]
    fn typing_has_its_wire_shape() {
        let frame = ClientFrame::new(ClientRequest::Typing {
            channel: "lobby".into(),
        });
        // Field order is serde_json's; compare the values.
        let json: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "typing", "payload": {"channel": "lobby"}})
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"typing","payload":{"channel":"lobby"}}"#).unwrap(),
            frame
        );
        let e = err(r#"{"type":"typing","ref":1}"#);
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.message, "Error handling message: payload is missing");
    }

    #[test]
    fn seed_frames_parse() {
        let f = parse_client_frame(
            r#"{ "type" : "message", "payload" : { "channel" : "c", "message" : "m" }}"#,
        )
        .unwrap();
        assert_eq!(
            f.request,
            ClientRequest::Message {
                channel: "c".into(),
                message: "m".into()
            }
        );
        assert_eq!(f.reference, None);
    }

    #[test]
    fn bad_frames_become_errors() {
        let e = err("not json");
        assert_eq!(e.code, ErrorCode::BadJson);
        assert!(e.message.starts_with("Error handling message: "));
        assert_eq!(err("[1,2]").code, ErrorCode::BadJson);
        assert_eq!(err("42").code, ErrorCode::BadJson);
        assert_eq!(err(r#"{"payload":{}}"#).code, ErrorCode::InvalidMessage);
        let e = err(r#"{"type":"dance","ref":3}"#);
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::InvalidMessage, "Invalid message")
        );
        assert_eq!(e.reference, Some(Ref::from(3)));
        assert_eq!(err(r#"{"type":7}"#).code, ErrorCode::InvalidMessage);
        let e = err(r#"{"type":"join","ref":"r"}"#);
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.message, "Error handling message: payload is missing");
        assert_eq!(e.reference, Some(Ref::from("r")));
        assert_eq!(
            err(r#"{"type":"join","payload":{}}"#).code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"type":"join","payload":{"channel":5}}"#).code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"type":"join","payload":{"channel":"c","since":"x"}}"#).code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"type":"join","payload":{"channel":"c","history":-1}}"#).code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"type":"ping","ref":{"a":1}}"#).code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn block_requests_parse_from_the_documented_wire() {
        let f =
            parse_client_frame(r#"{"type":"block","payload":{"user_id":"u9"},"ref":1}"#).unwrap();
        assert_eq!(
            f.request,
            ClientRequest::Block {
                user_id: "u9".into()
            }
        );
        // `blocked` takes no payload; an empty one (or any) is ignored.
        for text in [
            r#"{"type":"blocked"}"#,
            r#"{"type":"blocked","payload":{}}"#,
        ] {
            assert_eq!(
                parse_client_frame(text).unwrap().request,
                ClientRequest::Blocked
            );
        }
        assert_eq!(err(r#"{"type":"block"}"#).code, ErrorCode::BadRequest);
        assert_eq!(
            err(r#"{"type":"unblock","payload":{"user_id":7}}"#).code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn extra_fields_are_ignored() {
        let f = parse_client_frame(
            r#"{"type":"leave","payload":{"channel":"c","extra":[1]},"more":true}"#,
        )
        .unwrap();
        assert_eq!(
            f.request,
            ClientRequest::Leave {
                channel: "c".into()
            }
        );
    }
}
