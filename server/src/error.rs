//! Errors of client requests, each carrying the wire code and the text the client sees.

use std::borrow::Cow;

use protocol::{ErrorCode, ErrorReply, Ref};

use crate::engine::EngineError;

/// A request the server refused, with the reply the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ChatError {
    /// Wire code.
    pub code: ErrorCode,
    /// Wire text.
    pub message: Cow<'static, str>,
}

impl ChatError {
    /// An error with a code and text.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The JSON error reply, echoing `reference`.
    pub fn to_json(&self, reference: Option<&Ref>) -> String {
        ErrorReply {
            error: Cow::Borrowed(&self.message),
            code: self.code,
            reference,
        }
        .to_json()
    }
}

impl From<EngineError> for ChatError {
    fn from(error: EngineError) -> Self {
        match &error {
            EngineError::Unavailable(detail) => {
                tracing::warn!(%detail, "engine unavailable");
                ChatError::new(ErrorCode::Unavailable, error.to_string())
            }
            EngineError::Unconfirmed(detail) => {
                tracing::warn!(%detail, "a message was not confirmed by a Redis replica");
                ChatError::new(ErrorCode::Unavailable, error.to_string())
            }
            EngineError::NameTaken(_) => ChatError::new(ErrorCode::NameTaken, error.to_string()),
        }
    }
}
