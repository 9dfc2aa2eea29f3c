//! Stable error codes carried by every error reply (`{"error": "...", "code": "..."}`).

use serde::{Deserialize, Serialize};

/// Machine-readable reason of an error reply. The `error` text is for people and may change; the
/// code is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The connection carried no `auth_token`.
    AuthRequired,
    /// The token was invalid, expired, or for the wrong audience or scope.
    InvalidToken,
    /// The frame was not a JSON object.
    BadJson,
    /// The `type` is missing or unknown.
    InvalidMessage,
    /// A payload field is missing or has the wrong type.
    BadRequest,
    /// Sending needs a username: send `set-name` first.
    NameRequired,
    /// The channel was not joined by this connection.
    NotJoined,
    /// The message text is longer than the server allows.
    TooLong,
    /// The message text is empty or has characters that are not allowed.
    BadMessage,
    /// The username breaks the naming rules.
    BadName,
    /// The channel name breaks the naming rules.
    BadChannel,
    /// Another user holds this username (only when the server enforces unique names).
    NameTaken,
    /// Too many messages in too short a time; try again shortly.
    RateLimited,
    /// The connection has joined as many channels as the server allows.
    TooManyChannels,
    /// This user or address already has as many connections open as the server allows.
    TooManyConnections,
    /// Not allowed.
    Forbidden,
    /// The target (a user, a message) does not exist or is not reachable.
    NotFound,
    /// The shared backend (e.g. Redis) is unreachable: the request was not carried out.
    Unavailable,
    /// The server failed unexpectedly; the request may not have been carried out.
    Internal,
    /// The user blocks as many users as the server allows: unblock one first.
    TooManyBlocks,
    /// A code this version of the crate does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthRequired => "auth_required",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NameRequired => "name_required",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::TooLong => "too_long",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::BadName => "bad_name",
            ErrorCode::BadChannel => "bad_channel",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::TooManyBlocks => "too_many_blocks",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// Every code a server sends, for documentation and metrics.
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::AuthRequired,
        ErrorCode::InvalidToken,
        ErrorCode::BadJson,
        ErrorCode::InvalidMessage,
        ErrorCode::BadRequest,
        ErrorCode::NameRequired,
        ErrorCode::NotJoined,
        ErrorCode::TooLong,
        ErrorCode::BadMessage,
        ErrorCode::BadName,
        ErrorCode::BadChannel,
        ErrorCode::NameTaken,
        ErrorCode::RateLimited,
        ErrorCode::TooManyChannels,
        ErrorCode::TooManyConnections,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::TooManyBlocks,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
        assert!(ErrorCode::ALL.contains(&ErrorCode::TooManyBlocks));
        assert_eq!(ErrorCode::TooManyBlocks.as_str(), "too_many_blocks");
        let unknown: ErrorCode = serde_json::from_str("\"from_the_future\"").unwrap();
        assert_eq!(unknown, ErrorCode::Unknown);
    }
}
