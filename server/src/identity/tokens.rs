//! Access and refresh tokens: the claims of the seed's Custom Identity Component, signing and
//! checking.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::KeyRing;
use super::{AuthError, Principal};

/// Lifetime of an access token, in seconds (15 minutes).
pub const ACCESS_TOKEN_TTL: u64 = 900;
/// Lifetime of a refresh token issued at login, in seconds (6 days).
pub const REFRESH_TOKEN_TTL: u64 = 6 * 24 * 3600;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// `aud` of access tokens.
pub const ACCESS_AUDIENCE: &str = "gamebackend";
/// `aud` and `scope` of refresh tokens.
pub const REFRESH_AUDIENCE: &str = "refresh";
/// `scope` of guest access tokens.
pub const SCOPE_GUEST: &str = "guest";
/// `scope` of access tokens of players logged in through a platform.
pub const SCOPE_AUTHENTICATED: &str = "authenticated";

/// Whether an access token `scope` is one the chat accepts.
pub fn is_access_scope(scope: &str) -> bool {
    scope == SCOPE_GUEST || scope == SCOPE_AUTHENTICATED
}

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The issuer URL.
    pub iss: String,
    /// Always `gamebackend`.
    pub aud: String,
    /// `guest` or `authenticated`.
    pub scope: String,
    /// The signing key id (also in the header).
    pub kid: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
}

/// Claims of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    /// The user id.
    pub sub: String,
    /// The issuer URL.
    pub iss: String,
    /// Always `refresh`.
    pub aud: String,
    /// Always `refresh`.
    pub scope: String,
    /// The `scope` of the access tokens this token mints.
    pub access_token_scope: String,
    /// The signing key id (also in the header).
    pub kid: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expiry (Unix seconds); kept across refreshes.
    pub exp: u64,
}

/// A freshly signed access and refresh token pair.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// The user id.
    pub user_id: String,
    /// The access token.
    pub auth_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub auth_token_expires_in: u64,
    /// Seconds until the refresh token expires.
    pub refresh_token_expires_in: u64,
}

/// Why a token could not be issued or refreshed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The refresh token is not valid; the detail is for logs only.
    #[error("invalid refresh token: {0}")]
    Invalid(String),
    /// Signing failed (a server problem).
    #[error("cannot sign a token")]
    Signing(#[from] aws_lc_rs::error::Unspecified),
    /// The claims could not be serialised (a server problem).
    #[error("cannot encode the claims: {0}")]
    Claims(#[from] serde_json::Error),
    /// Another server-side failure.
    #[error("{0}")]
    Internal(String),
}

/// Signatures made at once by the login and refresh routes: one per core.
///
/// Measured on 2 cores with chat traffic (200 clients, 400 msg/s) during a login storm (64
/// clients logging in and refreshing as fast as answered): with every signature on its own
/// blocking thread, the chat's p99 latency went from 0.5 ms to 48-59 ms (signing threads
/// outnumbered the async workers for the CPU); signing on the async workers, 74 ms; one signing
/// thread per core, 2.1 ms, with the logins' p99 also the lowest (38-43 ms against 110-118 ms).
/// See docs/BENCHMARKS.md, "Logins".
pub fn signing_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Issues and checks the built-in identity's tokens with the local keys.
pub struct TokenService {
    issuer: String,
    keys: Arc<KeyRing>,
    /// [`signing_slots`] permits, handed out first come first served.
    signers: Arc<tokio::sync::Semaphore>,
    /// The base64url JOSE header of every token signed (`RS256`, the current `kid`).
    header: String,
}

/// The current time in Unix seconds.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

impl TokenService {
    /// A service issuing tokens for `issuer` (no trailing `/`).
    pub fn new(issuer: String, keys: Arc<KeyRing>) -> Self {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(keys.current.public.kid.clone());
        // A header of strings only always serialises.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        Self {
            issuer,
            keys,
            header: URL_SAFE_NO_PAD.encode(header),
            signers: Arc::new(tokio::sync::Semaphore::new(signing_slots())),
        }
    }

    /// Waits for one of the [`signing_slots`] (in arrival order); hold it until the signature is
    /// made (move it into the blocking task, so that a request given up meanwhile does not free
    /// the slot of a signature still running).
    pub async fn signing_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, TokenError> {
        self.signers
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| TokenError::Internal(format!("signing slots: {e}")))
    }

    /// The issuer URL written into (and required of) tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// A compact JWS (RFC 7515 §7.1) of `claims`, RS256-signed with the current key. The
    /// parsed key is reused for every token: `jsonwebtoken::encode` would parse it again each
    /// time.
    fn encode(&self, claims: &impl Serialize) -> Result<String, TokenError> {
        let claims = serde_json::to_vec(claims)?;
        let mut token = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 350);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = self.keys.current.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// Signs an access token for `user_id` with `scope`.
    pub fn access_token(&self, user_id: &str, scope: &str, now: u64) -> Result<String, TokenError> {
        let claims = AccessClaims {
            sub: user_id.into(),
            iss: self.issuer.clone(),
            aud: ACCESS_AUDIENCE.into(),
            scope: scope.into(),
            kid: self.keys.current.public.kid.clone(),
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_TTL,
        };
        self.encode(&claims)
    }

    /// Signs a refresh token for `user_id` expiring at `exp`.
    pub fn refresh_token(
        &self,
        user_id: &str,
        access_token_scope: &str,
        now: u64,
        exp: u64,
    ) -> Result<String, TokenError> {
        let claims = RefreshClaims {
            sub: user_id.into(),
            iss: self.issuer.clone(),
            aud: REFRESH_AUDIENCE.into(),
            scope: REFRESH_AUDIENCE.into(),
            access_token_scope: access_token_scope.into(),
            kid: self.keys.current.public.kid.clone(),
            iat: now,
            nbf: now,
            exp,
        };
        self.encode(&claims)
    }

    /// The tokens of a login: a new access token and a 6-day refresh token.
    pub fn login(&self, user_id: &str, scope: &str) -> Result<TokenPair, TokenError> {
        let now = now();
        Ok(TokenPair {
            user_id: user_id.into(),
            auth_token: self.access_token(user_id, scope, now)?,
            refresh_token: self.refresh_token(user_id, scope, now, now + REFRESH_TOKEN_TTL)?,
            auth_token_expires_in: ACCESS_TOKEN_TTL,
            refresh_token_expires_in: REFRESH_TOKEN_TTL,
        })
    }

    /// Checks a refresh token and issues a new access token and a refresh token with the same
    /// expiry.
    pub fn refresh(&self, refresh_token: &str) -> Result<TokenPair, TokenError> {
        let key = self.key_for(refresh_token).map_err(TokenError::Invalid)?;
        let claims: RefreshIn = decode(refresh_token, key, &self.issuer, REFRESH_AUDIENCE)
            .map_err(TokenError::Invalid)?;
        if claims.scope != REFRESH_AUDIENCE {
            return Err(TokenError::Invalid(format!("scope {:?}", claims.scope)));
        }
        if !is_access_scope(&claims.access_token_scope) {
            return Err(TokenError::Invalid(format!(
                "access_token_scope {:?}",
                claims.access_token_scope
            )));
        }
        if claims.sub.is_empty() {
            return Err(TokenError::Invalid("empty sub".into()));
        }
        let now = now();
        let scope = &claims.access_token_scope;
        Ok(TokenPair {
            user_id: claims.sub.clone(),
            auth_token: self.access_token(&claims.sub, scope, now)?,
            refresh_token: self.refresh_token(&claims.sub, scope, now, claims.exp)?,
            auth_token_expires_in: ACCESS_TOKEN_TTL,
            refresh_token_expires_in: claims.exp.saturating_sub(now),
        })
    }

    /// Checks an access token against the local keys.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.key_for(token).map_err(AuthError::Invalid)?;
        verify_access(token, key, &self.issuer)
    }

    /// The verifying key named by the token header's `kid`.
    fn key_for(&self, token: &str) -> Result<&DecodingKey, String> {
        let kid = header_kid(token)?;
        self.keys
            .find(&kid)
            .map(|key| &key.decoding)
            .ok_or_else(|| format!("unknown kid {kid:?}"))
    }
}

/// The `kid` of an RS256 token's header.
pub fn header_kid(token: &str) -> Result<String, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("bad header: {e}"))?;
    if header.alg != Algorithm::RS256 {
        return Err(format!("algorithm {:?} is not RS256", header.alg));
    }
    header.kid.ok_or_else(|| "no kid in the header".to_string())
}

/// The claims read from an access token.
#[derive(Deserialize)]
struct AccessIn {
    sub: String,
    scope: String,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// The claims read from a refresh token.
#[derive(Deserialize)]
struct RefreshIn {
    sub: String,
    scope: String,
    access_token_scope: String,
    exp: u64,
}

fn validation(issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation
}

fn decode<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    issuer: &str,
    audience: &str,
) -> Result<T, String> {
    jsonwebtoken::decode::<T>(token, key, &validation(issuer, audience))
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

/// Checks an access token's signature (RS256 with `key`), `exp`/`nbf`, `iss`, `aud`
/// (`gamebackend`) and `scope` (`guest` or `authenticated`).
pub fn verify_access(token: &str, key: &DecodingKey, issuer: &str) -> Result<Principal, AuthError> {
    let claims: AccessIn =
        decode(token, key, issuer, ACCESS_AUDIENCE).map_err(AuthError::Invalid)?;
    if !is_access_scope(&claims.scope) {
        return Err(AuthError::Invalid(format!("scope {:?}", claims.scope)));
    }
    if claims.sub.is_empty() {
        return Err(AuthError::Invalid("empty sub".into()));
    }
    Ok(Principal {
        user_id: claims.sub.into(),
        scope: claims.scope.into(),
        claims: claims.other.into(),
    })
}
