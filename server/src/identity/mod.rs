//! Identity: the built-in guest login (a port of the AWS Game Backend Framework's Custom Identity
//! Component) and the checks of the access tokens that open WebSocket connections.
//!
//! Three modes, chosen by [`IdentityConfig`]:
//! - built-in (default): `/login-as-guest`, `/refresh-access-token` and `/.well-known/jwks.json`
//!   are served; tokens are signed and checked with the key file;
//! - `no_identity`: only the JWKS is served; tokens signed with the key file (by another service
//!   sharing it) are still accepted;
//! - `issuer_url`: no local routes and no key file; tokens are checked against the external
//!   issuer's JWKS.
//!
//! Files: [`keys`] (key file, key ids, JWKS), [`tokens`] (claims, signing, checks), [`guests`]
//! (guest accounts), `routes` (HTTP endpoints), [`external`] (external issuer).

pub mod external;
pub mod guests;
pub mod keys;
mod routes;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

use crate::config::IdentityConfig;

use self::external::ExternalIssuer;
use self::guests::{FileGuestStore, GuestStore};
use self::keys::KeyRing;
use self::tokens::TokenService;

/// Who a valid access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub user_id: Arc<str>,
    /// The token's `scope` (`guest` or `authenticated`).
    pub scope: Arc<str>,
    /// The token's other claims (e.g. a team or role an external issuer adds), for channel
    /// rules.
    pub claims: Arc<serde_json::Map<String, serde_json::Value>>,
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
    /// The identity settings are not usable (e.g. a malformed issuer URL).
    #[error("{0}")]
    Config(String),
}

/// Token issuing and checking, in the mode the configuration selects.
pub struct Identity {
    mode: Mode,
}

enum Mode {
    /// Keys from the key file; login routes when `guests` is set.
    Local {
        tokens: Arc<TokenService>,
        guests: Option<Arc<dyn GuestStore>>,
    },
    /// Keys from an external issuer's JWKS.
    External(Box<ExternalIssuer>),
}

impl Identity {
    /// Loads keys (creating the key file on first start) or sets up the external issuer.
    pub async fn from_config(
        config: &IdentityConfig,
        listen: SocketAddr,
    ) -> Result<Self, IdentityError> {
        Self::from_config_with_guests(config, listen, None).await
    }

    /// As [`Identity::from_config`], keeping guests in `shared_guests` (e.g. Redis, for several
    /// nodes) instead of the guest file.
    pub async fn from_config_with_guests(
        config: &IdentityConfig,
        listen: SocketAddr,
        shared_guests: Option<Arc<dyn GuestStore>>,
    ) -> Result<Self, IdentityError> {
        if let Some(url) = &config.issuer_url {
            let url = url.trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(IdentityError::Config(format!(
                    "issuer URL {url:?} must start with http:// or https://"
                )));
            }
            if config.no_identity {
                tracing::debug!("no_identity is implied by an external issuer");
            }
            let external = Box::new(ExternalIssuer::new(url, config.jwks_refetch_interval).await);
            return Ok(Self {
                mode: Mode::External(external),
            });
        }
        let issuer = match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                if listen.ip().is_unspecified() {
                    tracing::warn!(
                        %listen,
                        "no public URL set: tokens name http://{listen} as their issuer; set the public URL"
                    );
                }
                format!("http://{listen}")
            }
        };
        let keys = KeyRing::load(&config.key_file, config.previous_key_file.as_deref()).await?;
        let tokens = Arc::new(TokenService::new(issuer, Arc::new(keys)));
        let guests = if config.no_identity {
            None
        } else if let Some(shared) = shared_guests {
            Some(shared)
        } else {
            let store = FileGuestStore::open(&config.guest_file).await?;
            Some(Arc::new(store) as Arc<dyn GuestStore>)
        };
        Ok(Self::local(tokens, guests))
    }

    /// The built-in identity with these tokens; the login and refresh routes are served when a
    /// guest store is given (e.g. a shared store instead of the guest file).
    pub fn local(tokens: Arc<TokenService>, guests: Option<Arc<dyn GuestStore>>) -> Self {
        Self {
            mode: Mode::Local { tokens, guests },
        }
    }

    /// The issuer URL tokens must carry in `iss`.
    pub fn issuer(&self) -> &str {
        match &self.mode {
            Mode::Local { tokens, .. } => tokens.issuer(),
            Mode::External(external) => external.issuer(),
        }
    }

    /// Checks an access token for the WebSocket.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        match &self.mode {
            Mode::Local { tokens, .. } => tokens.verify(token),
            Mode::External(external) => external.verify(token).await,
        }
    }

    /// The identity HTTP routes of this mode.
    pub fn router(self: &Arc<Self>) -> Router {
        match &self.mode {
            Mode::Local { tokens, guests } => routes::router(tokens.clone(), guests.clone()),
            Mode::External(_) => Router::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::tokens::{REFRESH_TOKEN_TTL, SCOPE_GUEST, signing_slots};
    use super::*;

    async fn service() -> TokenService {
        let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-key.pem");
        let keys = KeyRing::load(&key, None).await.unwrap();
        TokenService::new("http://issuer".into(), Arc::new(keys))
    }

    #[tokio::test]
    async fn access_tokens_verify_and_refresh_tokens_do_not() {
        let service = service().await;
        let pair = service.login("u1", SCOPE_GUEST).unwrap();
        let principal = service.verify(&pair.auth_token).unwrap();
        assert_eq!(&*principal.user_id, "u1");
        assert_eq!(&*principal.scope, "guest");
        assert!(matches!(
            service.verify(&pair.refresh_token),
            Err(AuthError::Invalid(_))
        ));
        assert!(service.refresh(&pair.auth_token).is_err());
        let refreshed = service.refresh(&pair.refresh_token).unwrap();
        assert_eq!(refreshed.user_id, "u1");
        assert!(refreshed.refresh_token_expires_in <= REFRESH_TOKEN_TTL);
        assert!(service.verify(&refreshed.auth_token).is_ok());

        let other = TokenService::new("http://elsewhere".into(), Arc::new(service.keys().clone()));
        assert!(other.verify(&pair.auth_token).is_err());
        assert!(other.refresh(&pair.refresh_token).is_err());
    }

    #[tokio::test]
    async fn signatures_wait_for_one_of_the_slots_in_turn() {
        let service = service().await;
        let mut held = Vec::new();
        for _ in 0..signing_slots() {
            held.push(service.signing_slot().await.unwrap());
        }
        let waiting = service.signing_slot();
        tokio::pin!(waiting);
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), &mut waiting).await;
        assert!(early.is_err(), "every slot is taken");
        held.pop();
        let slot = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await;
        assert!(matches!(slot, Ok(Ok(_))), "a freed slot is handed on");
    }
}
