//! Identifiers that travel on the wire: message ids and request references.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Id of a channel message, ordered within its channel.
///
/// Written `"<ms>-<seq>"` (the format of a Redis stream id): the server time in milliseconds
/// and a sequence number that breaks ties. Both engines produce the same format, so a client can
/// hand any id back in `since` / `before` whichever engine the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId {
    /// Milliseconds since the Unix epoch at which the server accepted the message.
    pub ms: u64,
    /// Sequence number among messages accepted in the same millisecond.
    pub seq: u64,
}

impl MessageId {
    /// Builds an id from its two parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The smallest id strictly greater than `self` (the largest id is its own successor: ids
    /// come from clients too, and must never overflow).
    pub const fn successor(self) -> Self {
        match (self.seq.checked_add(1), self.ms.checked_add(1)) {
            (Some(seq), _) => Self { ms: self.ms, seq },
            (None, Some(ms)) => Self { ms, seq: 0 },
            (None, None) => self,
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The text was not a message id of the form `"<ms>-<seq>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMessageIdError(pub String);

impl fmt::Display for ParseMessageIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid message id {:?}: expected \"<ms>-<seq>\"",
            self.0
        )
    }
}

impl std::error::Error for ParseMessageIdError {}

impl FromStr for MessageId {
    type Err = ParseMessageIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseMessageIdError(s.chars().take(64).collect());
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A client's request reference (`"ref"`): a string or a number, echoed on every reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ref {
    /// A numeric reference, kept exactly as the client wrote it.
    Number(serde_json::Number),
    /// A string reference.
    Text(String),
}

impl From<u64> for Ref {
    fn from(n: u64) -> Self {
        Ref::Number(n.into())
    }
}

impl From<&str> for Ref {
    fn from(s: &str) -> Self {
        Ref::Text(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip_and_order() {
        let a: MessageId = "1700000000000-0".parse().unwrap();
        let b: MessageId = "1700000000000-1".parse().unwrap();
        let c: MessageId = "1700000000001".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "1700000000000-0");
        assert_eq!(a.successor(), b);
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"1700000000000-1\"");
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "1 -2",
            "99999999999999999999999-0",
        ] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad:?} parsed");
        }
    }
}
