//! Token helpers for the identity tests: sign tokens, read the JWKS, check replies. Also a
//! prelude of what those tests import (each test file uses part of it).
#![allow(unused_imports)]

pub use std::path::Path;
pub use std::sync::Arc;
pub use std::sync::atomic::{AtomicUsize, Ordering};
pub use std::time::Duration;

pub use base64::Engine;
pub use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use jsonwebtoken::jwk::JwkSet;
pub use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
pub use protocol::{LoginResponse, RefreshResponse};
pub use serde_json::{Value, json};
pub use sha2::{Digest, Sha256};
pub use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

pub const WELCOME: &str = r#"{"message":"Successfully connected!"}"#;
pub const AUTH_REQUIRED: &str =
    r#"{"error":"No authentication token provided","code":"auth_required"}"#;
pub const INVALID_TOKEN: &str = r#"{"error":"Invalid token","code":"invalid_token"}"#;

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `(n, e)` of a PEM private key, base64url without padding.
pub fn public_parts(pem_file: &Path) -> (String, String) {
    use aws_lc_rs::signature::KeyPair as _;
    let pem = pem::parse(std::fs::read(pem_file).unwrap()).unwrap();
    assert_eq!(pem.tag(), "PRIVATE KEY", "a PKCS#8 fixture");
    let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(pem.contents()).unwrap();
    let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public_key());
    (
        URL_SAFE_NO_PAD.encode(public.n),
        URL_SAFE_NO_PAD.encode(public.e),
    )
}

/// RFC 7638 thumbprint of a key file, computed independently of the server.
pub fn kid_of(pem_file: &Path) -> String {
    let (n, e) = public_parts(pem_file);
    let canonical = json!({"e": e, "kty": "RSA", "n": n}).to_string();
    // serde_json sorts object keys (no preserve_order): the canonical member order.
    assert!(canonical.starts_with(r#"{"e":"#));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Signs `claims` with RS256 and the key in `pem_file`, with `kid` in the header.
pub fn sign(pem_file: &Path, kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(pem_file).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Valid access token claims for `iss`.
pub fn access_claims(iss: &str, kid: &str) -> Value {
    let now = now();
    json!({
        "sub": "user-1", "iss": iss, "aud": "gamebackend", "scope": "guest", "kid": kid,
        "iat": now, "nbf": now, "exp": now + 900,
    })
}

/// `base` with `changes` merged in.
pub fn with(mut base: Value, changes: Value) -> Value {
    if let (Some(base), Value::Object(changes)) = (base.as_object_mut(), changes) {
        base.extend(changes);
    }
    base
}

/// A URL-encoded query string.
pub fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// GET returning (status, content type, body).
pub async fn get_full(url: String) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut response = agent().get(&url).call().expect("http get");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (status, content_type, body)
    })
    .await
    .unwrap()
}

/// Asserts a plain-text error response.
pub async fn expect_error(server: &TestServer, path: &str, status: u16, body: &str) {
    let (got_status, content_type, got_body) = get_full(format!("{}{path}", server.http())).await;
    assert_eq!(
        (got_status, got_body.as_str()),
        (status, body),
        "GET {path}"
    );
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

pub async fn jwks(server: &TestServer) -> JwkSet {
    let (status, body) = server.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The key ids the JWKS publishes, in order.
pub fn kids(jwks: &JwkSet) -> Vec<String> {
    jwks.keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect()
}

/// Verifies `token` with the JWKS (independently of the server) and returns header and claims.
pub fn decode(token: &str, jwks: &JwkSet, iss: &str, aud: &str) -> (Header, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.as_deref().expect("kid in the header");
    let key = DecodingKey::from_jwk(jwks.find(kid).expect("kid in the JWKS")).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[iss]);
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation).expect("token verifies");
    (data.header, data.claims)
}

pub async fn expect_welcome(server: &TestServer, token: &str) {
    let mut client = server.connect(token).await;
    client.expect_text(WELCOME).await;
}

pub async fn expect_refused(server: &TestServer, token: &str, frame: &str) {
    let mut client = server.connect(token).await;
    client.expect_text(frame).await;
    let close = client.expect_close().await;
    assert_eq!(close.map(|(code, _)| code), Some(1008), "token {token:?}");
}

pub async fn refresh(server: &TestServer, token: &str) -> RefreshResponse {
    let (status, body) = server
        .get(&format!(
            "/refresh-access-token?{}",
            query(&[("refresh_token", token)])
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}
