//! External issuer mode: tokens are checked against another service's JWKS, fetched over HTTP and
//! cached by key id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use super::tokens::{header_kid, verify_access};
use super::{AuthError, Principal};

/// How long one JWKS fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type KeyCache = HashMap<String, Arc<DecodingKey>>;

/// Verifies access tokens with the keys an external issuer publishes.
pub struct ExternalIssuer {
    issuer: String,
    jwks_url: String,
    agent: ureq::Agent,
    keys: parking_lot::RwLock<KeyCache>,
    /// When the JWKS was last fetched (successfully or not); held while fetching so that
    /// concurrent verifications never fetch at once.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Completed fetches, to let waiters see that a fetch happened while they waited.
    fetches: AtomicU64,
    refetch_interval: Duration,
}

impl ExternalIssuer {
    /// Sets up the issuer `issuer_url` (a trailing `/` is ignored) and fetches its JWKS once; a
    /// failed first fetch is only logged, and retried on the first verification.
    pub async fn new(issuer_url: &str, refetch_interval: Duration) -> Self {
        let issuer = issuer_url.trim_end_matches('/').to_string();
        let jwks_url = format!("{issuer}/.well-known/jwks.json");
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            // Fetches are rare: a pooled connection would mostly be stale by the next one.
            .max_idle_connections(0)
            .build()
            .into();
        let this = Self {
            issuer,
            jwks_url,
            agent,
            keys: parking_lot::RwLock::new(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            refetch_interval,
        };
        match this.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %this.jwks_url, keys = keys.len(), "external issuer keys loaded");
                *this.keys.write() = keys;
                *this.last_fetch.lock().await = Some(Instant::now());
                this.fetches.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => tracing::warn!(
                url = %this.jwks_url,
                error = %e,
                "cannot fetch the external issuer's keys; will retry on the first connection"
            ),
        }
        this
    }

    /// The issuer URL tokens must carry in `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks an access token, refetching the JWKS when its `kid` is unknown (at most once per
    /// refetch interval).
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let kid = header_kid(token).map_err(AuthError::Invalid)?;
        let key = match self.cached(&kid) {
            Some(key) => key,
            None => self.refetch_for(&kid).await?,
        };
        verify_access(token, &key, &self.issuer)
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys.read().get(kid).cloned()
    }

    async fn refetch_for(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        let unknown = || AuthError::Invalid(format!("unknown kid {kid:?}"));
        let seen = self.fetches.load(Ordering::Acquire);
        let mut last_fetch = self.last_fetch.lock().await;
        // Someone fetched while we waited for the lock: their result is as fresh as ours would be.
        if self.fetches.load(Ordering::Acquire) != seen {
            return self.cached(kid).ok_or_else(unknown);
        }
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.refetch_interval) {
            return Err(unknown());
        }
        *last_fetch = Some(Instant::now());
        let result = self.fetch().await;
        self.fetches.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(keys) => {
                tracing::info!(url = %self.jwks_url, keys = keys.len(), "external issuer keys refetched");
                *self.keys.write() = keys;
            }
            Err(e) => {
                tracing::warn!(url = %self.jwks_url, error = %e, "cannot refetch the external issuer's keys")
            }
        }
        drop(last_fetch);
        self.cached(kid).ok_or_else(unknown)
    }

    /// Fetches and parses the JWKS (blocking HTTP on a blocking thread).
    async fn fetch(&self) -> Result<KeyCache, String> {
        let agent = self.agent.clone();
        let url = self.jwks_url.clone();
        tokio::task::spawn_blocking(move || {
            let mut response = agent.get(&url).call().map_err(|e| e.to_string())?;
            let document: JwksIn = response
                .body_mut()
                .read_json()
                .map_err(|e| format!("not a JWKS document: {e}"))?;
            Ok(parse_keys(document))
        })
        .await
        .map_err(|e| format!("fetch task failed: {e}"))?
    }
}

#[derive(Deserialize)]
struct JwksIn {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct JwkIn {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// The usable keys of a JWKS: RSA signing keys with a `kid`, for RS256 (or no `alg`).
fn parse_keys(document: JwksIn) -> KeyCache {
    let mut keys = HashMap::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<JwkIn>(value) else {
            continue;
        };
        let usable = jwk.kty == "RSA"
            && jwk.alg.as_deref().is_none_or(|alg| alg == "RS256")
            && jwk.use_.as_deref().is_none_or(|u| u == "sig");
        let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        if !usable {
            continue;
        }
        match DecodingKey::from_rsa_components(&n, &e) {
            Ok(key) => {
                keys.insert(kid, Arc::new(key));
            }
            Err(error) => tracing::warn!(%kid, %error, "skipping a malformed key of the JWKS"),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_rsa_signing_keys_with_a_kid() {
        let document: JwksIn = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB", "alg": "RS256", "use": "sig"},
            {"kty": "RSA", "kid": "b", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "c", "n": "AQAB", "e": "AQAB", "alg": "RS512"},
            {"kty": "RSA", "kid": "d", "n": "AQAB", "e": "AQAB", "use": "enc"},
            {"kty": "EC", "kid": "e", "x": "AQAB", "y": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "f", "n": "!!", "e": "AQAB"},
            "garbage"
        ]}))
        .unwrap();
        let mut kids: Vec<_> = parse_keys(document).into_keys().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
    }
}
