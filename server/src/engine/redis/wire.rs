//! What nodes publish to each other over Redis pub/sub (JSON; chat messages are written by the
//! publish script with the same field names).

use protocol::{
    BroadcastMessage, ChatMessage, DirectMessage, MessageId, PresenceChange, TypingUser,
};
use serde::{Deserialize, Serialize};

use crate::engine::{BlockSnapshot, NodeInfo};
use crate::moderation::Sanction;

/// A pub/sub payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t")]
pub(super) enum Wire {
    /// A chat message (written by the publish script).
    #[serde(rename = "m")]
    Message {
        id: String,
        c: String,
        u: String,
        n: String,
        m: String,
    },
    /// A user joined a channel.
    #[serde(rename = "j")]
    Joined {
        c: String,
        u: String,
        n: Option<String>,
    },
    /// A user left a channel.
    #[serde(rename = "l")]
    Left {
        c: String,
        u: String,
        n: Option<String>,
    },
    /// A direct message for every connection of `to`.
    #[serde(rename = "d")]
    Direct { to: String, d: DirectMessage },
    /// An operator broadcast to everyone.
    #[serde(rename = "b")]
    Broadcast { b: BroadcastMessage },
    /// An operator broadcast to one channel's members (a tag of its own: a node of an older
    /// version ignores it, rather than reading it as a broadcast to everyone).
    #[serde(rename = "bc")]
    ChannelBroadcast { b: BroadcastMessage },
    /// A moderation action on every connection of `u`.
    #[serde(rename = "x")]
    Sanction { u: String, s: Sanction },
    /// A user is typing in a channel (`w` for writing; published only, never streamed).
    #[serde(rename = "w")]
    Typing { c: String, u: String, n: String },
    /// A node's report (`s` for status), for the console's overview.
    #[serde(rename = "s")]
    Node { i: Box<NodeInfo> },
    /// `u` set its display name `n` (nodes holding `u` update the name they carry).
    #[serde(rename = "a")]
    Name { u: String, n: String },
    /// `u`'s block list changed: every user it blocks now (an empty list may come as `{}`
    /// from older nodes, whose scripts wrote it with cjson).
    #[serde(rename = "k")]
    Blocks {
        u: String,
        v: u64,
        #[serde(deserialize_with = "lua_list")]
        b: Vec<String>,
    },
}

/// A list as cjson writes it: an array, or `{}` when empty (Lua cannot tell the two apart).
fn lua_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error;
    use serde_json::Value;
    match Value::deserialize(deserializer)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(D::Error::custom("a block list holds user ids")),
            })
            .collect(),
        Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        _ => Err(D::Error::custom("expected a block list")),
    }
}

/// A decoded payload.
pub(super) enum Incoming {
    Message(ChatMessage),
    Joined(PresenceChange),
    Left(PresenceChange),
    Direct { to: String, message: DirectMessage },
    Broadcast(BroadcastMessage),
    Sanction { user: String, sanction: Sanction },
    Typing(TypingUser),
    Blocks { user: String, blocks: BlockSnapshot },
    Name { user: String, name: String },
    Node(NodeInfo),
}

fn encode(wire: &Wire) -> String {
    serde_json::to_string(wire).unwrap_or_else(|e| unreachable!("wire encoding: {e}"))
}

impl Wire {
    pub fn joined(channel: &str, user: &str, name: Option<&str>) -> String {
        encode(&Wire::Joined {
            c: channel.into(),
            u: user.into(),
            n: name.map(Into::into),
        })
    }

    pub fn left(channel: &str, user: &str, name: Option<&str>) -> String {
        encode(&Wire::Left {
            c: channel.into(),
            u: user.into(),
            n: name.map(Into::into),
        })
    }

    pub fn direct(to: &str, message: &DirectMessage) -> String {
        encode(&Wire::Direct {
            to: to.into(),
            d: message.clone(),
        })
    }

    pub fn broadcast(message: &BroadcastMessage) -> String {
        let b = message.clone();
        encode(&if message.channel.is_some() {
            Wire::ChannelBroadcast { b }
        } else {
            Wire::Broadcast { b }
        })
    }

    pub fn node(info: &NodeInfo) -> String {
        encode(&Wire::Node {
            i: Box::new(info.clone()),
        })
    }

    pub fn sanction(user: &str, sanction: &Sanction) -> String {
        encode(&Wire::Sanction {
            u: user.into(),
            s: sanction.clone(),
        })
    }

    pub fn typing(typing: &TypingUser) -> String {
        encode(&Wire::Typing {
            c: typing.channel.clone(),
            u: typing.user_id.clone(),
            n: typing.username.clone(),
        })
    }

    /// A chat message's payload up to its id: the publish script appends the id and `"}`.
    pub fn message_head(channel: &str, user: &str, name: &str, text: &str) -> String {
        let json = |value: &str| serde_json::to_string(value).unwrap_or_default();
        format!(
            r#"{{"t":"m","c":{},"u":{},"n":{},"m":{},"id":""#,
            json(channel),
            json(user),
            json(name),
            json(text)
        )
    }

    /// `user` set the name `name`.
    pub fn name(user: &str, name: &str) -> String {
        encode(&Wire::Name {
            u: user.into(),
            n: name.into(),
        })
    }

    /// `user`'s block list after a change.
    pub fn blocks(user: &str, blocks: &BlockSnapshot) -> String {
        encode(&Wire::Blocks {
            u: user.into(),
            v: blocks.version,
            b: blocks.users.clone(),
        })
    }

    /// Decodes a payload; `None` (logged) for one this version does not understand.
    pub fn decode(payload: &[u8]) -> Option<Incoming> {
        if payload.starts_with(MESSAGE_TAG) {
            // The common case, read straight into its fields: a tagged enum is read through a
            // buffer of every field first.
            if let Ok(message) = serde_json::from_slice::<MessageFields>(payload) {
                return message.into_incoming();
            }
        }
        let wire: Wire = match serde_json::from_slice(payload) {
            Ok(wire) => wire,
            Err(error) => {
                tracing::warn!(%error, "ignoring an unreadable pub/sub payload");
                return None;
            }
        };
        Some(match wire {
            Wire::Message { id, c, u, n, m } => {
                return MessageFields { id, c, u, n, m }.into_incoming();
            }
            Wire::Joined { c, u, n } => Incoming::Joined(PresenceChange {
                channel: c,
                user_id: u,
                username: n,
            }),
            Wire::Left { c, u, n } => Incoming::Left(PresenceChange {
                channel: c,
                user_id: u,
                username: n,
            }),
            Wire::Direct { to, d } => Incoming::Direct { to, message: d },
            Wire::Broadcast { b } | Wire::ChannelBroadcast { b } => Incoming::Broadcast(b),
            Wire::Sanction { u, s } => Incoming::Sanction {
                user: u,
                sanction: s,
            },
            Wire::Typing { c, u, n } => Incoming::Typing(TypingUser {
                channel: c,
                user_id: u,
                username: n,
            }),
            Wire::Name { u, n } => Incoming::Name { user: u, name: n },
            Wire::Node { i } => Incoming::Node(*i),
            Wire::Blocks { u, v, mut b } => {
                b.sort_unstable();
                Incoming::Blocks {
                    user: u,
                    blocks: BlockSnapshot {
                        version: v,
                        users: b,
                    },
                }
            }
        })
    }
}

/// How every chat message's payload starts ([`Wire::message_head`]).
const MESSAGE_TAG: &[u8] = br#"{"t":"m","#;

/// The fields of [`Wire::Message`], read without the tag.
#[derive(Deserialize)]
struct MessageFields {
    id: String,
    c: String,
    u: String,
    n: String,
    m: String,
}

impl MessageFields {
    fn into_incoming(self) -> Option<Incoming> {
        let id: MessageId = self.id.parse().ok()?;
        Some(Incoming::Message(ChatMessage {
            username: self.n,
            message: self.m,
            channel: self.c,
            id,
            user_id: self.u,
            ts: id.ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_payloads_decode() {
        // As cjson writes it (it escapes '/').
        let payload =
            br#"{"t":"m","id":"1700000000000-3","c":"a\/b","u":"u1","n":"Ann","m":"hi \u00e9"}"#;
        let Some(Incoming::Message(m)) = Wire::decode(payload) else {
            panic!("not a message");
        };
        assert_eq!((m.channel.as_str(), m.message.as_str()), ("a/b", "hi é"));
        assert_eq!(m.id, MessageId::new(1_700_000_000_000, 3));
        assert!(Wire::decode(b"nonsense").is_none());
        assert!(matches!(
            Wire::decode(Wire::left("c", "u", None).as_bytes()),
            Some(Incoming::Left(_))
        ));
    }

    #[test]
    fn a_message_head_with_its_id_decodes() {
        let text = "say \"hi\" \\ \u{1F600} </script>\n";
        let head = Wire::message_head("lobby \"1\"", "u\u{e9}", "Ann", text);
        let payload = format!("{head}1700000000000-7\"}}");
        let Some(Incoming::Message(m)) = Wire::decode(payload.as_bytes()) else {
            panic!("not a message: {payload}");
        };
        assert_eq!(m.channel, "lobby \"1\"");
        assert_eq!(m.user_id, "u\u{e9}");
        assert_eq!(m.username, "Ann");
        assert_eq!(m.message, text);
        assert_eq!(m.id, MessageId::new(1_700_000_000_000, 7));
    }

    #[test]
    fn typing_round_trips() {
        let typing = TypingUser {
            channel: "a/b".into(),
            user_id: "u1".into(),
            username: "Ann".into(),
        };
        let payload = Wire::typing(&typing);
        assert_eq!(payload, r#"{"t":"w","c":"a/b","u":"u1","n":"Ann"}"#);
        let Some(Incoming::Typing(decoded)) = Wire::decode(payload.as_bytes()) else {
            panic!("not a typing");
        };
        assert_eq!(decoded, typing);
    }

    #[test]
    fn block_lists_decode_as_cjson_writes_them() {
        for (payload, want) in [
            (
                &br#"{"t":"k","u":"a","v":2,"b":["c","b"]}"#[..],
                vec!["b", "c"],
            ),
            // cjson writes an empty Lua table as an object.
            (
                &br#"{"t":"k","u":"a","v":2,"b":{}}"#[..],
                Vec::<&str>::new(),
            ),
        ] {
            let Some(Incoming::Blocks { user, blocks }) = Wire::decode(payload) else {
                panic!("not a block list");
            };
            let want: Vec<String> = want.into_iter().map(String::from).collect::<Vec<_>>();
            assert_eq!(
                (user.as_str(), blocks.version, blocks.users),
                ("a", 2, want)
            );
        }
        assert!(Wire::decode(br#"{"t":"k","u":"a","v":1,"b":{"x":1}}"#).is_none());
    }
}
