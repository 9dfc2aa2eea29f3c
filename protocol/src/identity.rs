//! Bodies of the identity HTTP endpoints (`/login-as-guest`, `/refresh-access-token`).

use serde::{Deserialize, Serialize};

/// `GET /login-as-guest` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The guest's user id (a UUID).
    pub user_id: String,
    /// The guest's secret: keep it to log in as the same guest later.
    pub guest_secret: String,
    /// Access token for the WebSocket (`?auth_token=`).
    pub auth_token: String,
    /// Token for `/refresh-access-token`.
    pub refresh_token: String,
    /// Seconds until `auth_token` expires.
    pub auth_token_expires_in: u64,
    /// Seconds until `refresh_token` expires.
    pub refresh_token_expires_in: u64,
}

/// `GET /refresh-access-token` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshResponse {
    /// The user id.
    pub user_id: String,
    /// A new access token.
    pub auth_token: String,
    /// The refresh token (same expiry as the one presented).
    pub refresh_token: String,
    /// Seconds until `auth_token` expires.
    pub auth_token_expires_in: u64,
    /// Seconds until `refresh_token` expires.
    pub refresh_token_expires_in: u64,
}
