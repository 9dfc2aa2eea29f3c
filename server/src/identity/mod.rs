//! Identity: the built-in guest login (the seed's Custom Identity Component) and token checks.
//!
//! STUB — being implemented (keys.rs, tokens.rs, guests.rs, routes.rs, external.rs).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

use crate::config::IdentityConfig;

/// Who a valid access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub user_id: Arc<str>,
    /// The token's `scope` (`guest` or `authenticated`).
    pub scope: Arc<str>,
}

/// Why a WebSocket connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `auth_token` in the query string.
    #[error("No authentication token provided")]
    Missing,
    /// The token did not verify; the detail is for logs only.
    #[error("Invalid token")]
    Invalid(String),
}

/// Identity start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing a key or guest file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key file did not hold a usable RSA key.
    #[error("{0}")]
    Key(String),
}

/// Token issuing and checking, in the mode the configuration selects.
pub struct Identity {}

impl Identity {
    /// Loads keys (creating the key file on first start) or sets up the external issuer.
    pub async fn from_config(
        _config: &IdentityConfig,
        _listen: SocketAddr,
    ) -> Result<Self, IdentityError> {
        Ok(Self {})
    }

    /// Checks an access token for the WebSocket.
    pub async fn verify(&self, _token: &str) -> Result<Principal, AuthError> {
        Err(AuthError::Invalid("stub".into()))
    }

    /// The identity HTTP routes of this mode.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
    }
}
