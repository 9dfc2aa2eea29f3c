//! Identity: guest login, refresh, JWKS, token checks on WebSocket connect, key and guest files,
//! and the `no_identity` and external issuer modes, against real servers.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use protocol::{LoginResponse, RefreshResponse};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WELCOME: &str = r#"{"message":"Successfully connected!"}"#;
const AUTH_REQUIRED: &str =
    r#"{"error":"No authentication token provided","code":"auth_required"}"#;
const INVALID_TOKEN: &str = r#"{"error":"Invalid token","code":"invalid_token"}"#;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `(n, e)` of a PEM private key, base64url without padding.
fn public_parts(pem_file: &Path) -> (String, String) {
    let pem = std::fs::read_to_string(pem_file).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    (
        URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    )
}

/// RFC 7638 thumbprint of a key file, computed independently of the server.
fn kid_of(pem_file: &Path) -> String {
    let (n, e) = public_parts(pem_file);
    let canonical = json!({"e": e, "kty": "RSA", "n": n}).to_string();
    // serde_json sorts object keys (no preserve_order): the canonical member order.
    assert!(canonical.starts_with(r#"{"e":"#));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Signs `claims` with RS256 and the key in `pem_file`, with `kid` in the header.
fn sign(pem_file: &Path, kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(pem_file).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Valid access token claims for `iss`.
fn access_claims(iss: &str, kid: &str) -> Value {
    let now = now();
    json!({
        "sub": "user-1", "iss": iss, "aud": "gamebackend", "scope": "guest", "kid": kid,
        "iat": now, "nbf": now, "exp": now + 900,
    })
}

/// `base` with `changes` merged in.
fn with(mut base: Value, changes: Value) -> Value {
    if let (Some(base), Value::Object(changes)) = (base.as_object_mut(), changes) {
        base.extend(changes);
    }
    base
}

/// A URL-encoded query string.
fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// GET returning (status, content type, body).
async fn get_full(url: String) -> (u16, String, String) {
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
async fn expect_error(server: &TestServer, path: &str, status: u16, body: &str) {
    let (got_status, content_type, got_body) = get_full(format!("{}{path}", server.http())).await;
    assert_eq!(
        (got_status, got_body.as_str()),
        (status, body),
        "GET {path}"
    );
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

async fn jwks(server: &TestServer) -> JwkSet {
    let (status, body) = server.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Verifies `token` with the JWKS (independently of the server) and returns header and claims.
fn decode(token: &str, jwks: &JwkSet, iss: &str, aud: &str) -> (Header, Value) {
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

async fn expect_welcome(server: &TestServer, token: &str) {
    let mut client = server.connect(token).await;
    client.expect_text(WELCOME).await;
}

async fn expect_refused(server: &TestServer, token: &str, frame: &str) {
    let mut client = server.connect(token).await;
    client.expect_text(frame).await;
    let close = client.expect_close().await;
    assert_eq!(close.map(|(code, _)| code), Some(1008), "token {token:?}");
}

async fn refresh(server: &TestServer, token: &str) -> RefreshResponse {
    let (status, body) = server
        .get(&format!(
            "/refresh-access-token?{}",
            query(&[("refresh_token", token)])
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Login, refresh, JWKS
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_guest_login_issues_the_seed_tokens() {
    let server = TestServer::start().await;
    let (status, content_type, body) = get_full(format!("{}/login-as-guest", server.http())).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("application/json"));
    let raw: Value = serde_json::from_str(&body).unwrap();
    let fields: Vec<_> = raw.as_object().unwrap().keys().cloned().collect();
    let mut expected = [
        "user_id",
        "guest_secret",
        "auth_token",
        "refresh_token",
        "auth_token_expires_in",
        "refresh_token_expires_in",
    ];
    expected.sort();
    assert_eq!(fields, expected);
    let login: LoginResponse = serde_json::from_value(raw).unwrap();
    let user = uuid::Uuid::parse_str(&login.user_id).unwrap();
    assert_eq!(user.get_version_num(), 4);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&login.guest_secret).unwrap().len(),
        32
    );
    assert_eq!(login.auth_token_expires_in, 900);
    assert_eq!(login.refresh_token_expires_in, 518_400);

    let jwks = jwks(&server).await;
    let kid = kid_of(&fixture_key());
    let iss = server.http();
    let before = now();
    let (header, claims) = decode(&login.auth_token, &jwks, &iss, "gamebackend");
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
    assert_eq!(claims["sub"], login.user_id.as_str());
    assert_eq!(claims["iss"], iss.as_str());
    assert_eq!(claims["aud"], "gamebackend");
    assert_eq!(claims["scope"], "guest");
    assert_eq!(claims["kid"], kid.as_str());
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat.abs_diff(before) <= 5);
    assert_eq!(claims["nbf"].as_u64(), Some(iat));
    assert_eq!(claims["exp"].as_u64(), Some(iat + 900));

    let (header, claims) = decode(&login.refresh_token, &jwks, &iss, "refresh");
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
    assert_eq!(claims["sub"], login.user_id.as_str());
    assert_eq!(claims["aud"], "refresh");
    assert_eq!(claims["scope"], "refresh");
    assert_eq!(claims["access_token_scope"], "guest");
    assert_eq!(claims["kid"], kid.as_str());
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["nbf"].as_u64(), Some(iat));
    assert_eq!(claims["exp"].as_u64(), Some(iat + 6 * 24 * 3600));

    expect_welcome(&server, &login.auth_token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_guest_login_and_its_failures() {
    let server = TestServer::start().await;
    let login = server.login().await;
    let again = format!(
        "/login-as-guest?{}",
        query(&[
            ("user_id", &login.user_id),
            ("guest_secret", &login.guest_secret)
        ])
    );
    let (status, body) = server.get(&again).await;
    assert_eq!(status, 200, "{body}");
    let second: LoginResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(second.user_id, login.user_id);
    assert_eq!(second.guest_secret, login.guest_secret);
    assert_eq!(second.auth_token_expires_in, 900);
    assert_eq!(second.refresh_token_expires_in, 518_400);
    expect_welcome(&server, &second.auth_token).await;

    let wrong = query(&[("user_id", &login.user_id), ("guest_secret", "wrong")]);
    let unknown = query(&[
        ("user_id", &uuid::Uuid::new_v4().to_string()),
        ("guest_secret", &login.guest_secret),
    ]);
    let no_secret = query(&[("user_id", &login.user_id)]);
    let unauthorized = "Error: Could not validate user";
    expect_error(
        &server,
        &format!("/login-as-guest?{wrong}"),
        401,
        unauthorized,
    )
    .await;
    expect_error(
        &server,
        &format!("/login-as-guest?{unknown}"),
        401,
        unauthorized,
    )
    .await;
    let missing = "Error: No guest_secret in query string";
    expect_error(
        &server,
        &format!("/login-as-guest?{no_secret}"),
        400,
        missing,
    )
    .await;
    let empty = format!("/login-as-guest?{no_secret}&guest_secret=");
    expect_error(&server, &empty, 400, missing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_keeps_the_expiry_and_refuses_bad_tokens() {
    let server = TestServer::start().await;
    let login = server.login().await;
    let jwks = jwks(&server).await;
    let iss = server.http();
    let (_, original) = decode(&login.refresh_token, &jwks, &iss, "refresh");

    let refreshed = refresh(&server, &login.refresh_token).await;
    assert_eq!(refreshed.user_id, login.user_id);
    assert_eq!(refreshed.auth_token_expires_in, 900);
    let (_, access) = decode(&refreshed.auth_token, &jwks, &iss, "gamebackend");
    assert_eq!(access["sub"], login.user_id.as_str());
    assert_eq!(access["scope"], "guest");
    let (_, renewed) = decode(&refreshed.refresh_token, &jwks, &iss, "refresh");
    assert_eq!(renewed["exp"], original["exp"]);
    assert_eq!(renewed["access_token_scope"], "guest");
    let remaining = original["exp"].as_u64().unwrap() - now();
    assert!(refreshed.refresh_token_expires_in.abs_diff(remaining) <= 5);
    assert!(refreshed.refresh_token_expires_in <= 518_400);
    expect_welcome(&server, &refreshed.auth_token).await;
    // The renewed refresh token works too, still with the original expiry.
    let twice = refresh(&server, &refreshed.refresh_token).await;
    let (_, renewed) = decode(&twice.refresh_token, &jwks, &iss, "refresh");
    assert_eq!(renewed["exp"], original["exp"]);

    let no_token = "Error: No refresh token provided";
    expect_error(&server, "/refresh-access-token", 401, no_token).await;
    expect_error(
        &server,
        "/refresh-access-token?refresh_token=",
        401,
        no_token,
    )
    .await;
    let invalid = "Error: Failed to validate refresh token";
    let bad = |token: &str| {
        format!(
            "/refresh-access-token?{}",
            query(&[("refresh_token", token)])
        )
    };
    expect_error(&server, &bad("garbage"), 401, invalid).await;
    expect_error(&server, &bad(&login.auth_token), 401, invalid).await;
    let kid = kid_of(&fixture_key());
    let claims = {
        let now = now();
        json!({
            "sub": "user-1", "iss": iss, "aud": "refresh", "scope": "refresh",
            "access_token_scope": "guest", "kid": kid, "iat": now, "nbf": now, "exp": now + 600,
        })
    };
    // Sanity check of the hand-made refresh token, then variations of it.
    let good = sign(&fixture_key(), Some(&kid), &claims);
    assert_eq!(refresh(&server, &good).await.user_id, "user-1");
    let expired = with(claims.clone(), json!({"exp": now() - 120}));
    let forged = sign(&other_key(), Some(&kid), &claims);
    let wrong_scope = with(claims.clone(), json!({"access_token_scope": "admin"}));
    let wrong_iss = with(claims.clone(), json!({"iss": "http://elsewhere"}));
    for token in [
        sign(&fixture_key(), Some(&kid), &expired),
        forged,
        sign(&fixture_key(), Some(&kid), &wrong_scope),
        sign(&fixture_key(), Some(&kid), &wrong_iss),
    ] {
        expect_error(&server, &bad(&token), 401, invalid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_publishes_the_key_with_its_rfc7638_kid() {
    let server = TestServer::start().await;
    let (status, content_type, body) =
        get_full(format!("{}/.well-known/jwks.json", server.http())).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/json"));
    let (n, e) = public_parts(&fixture_key());
    let expected = json!({"keys": [{
        "kty": "RSA", "n": n, "e": e, "kid": kid_of(&fixture_key()), "alg": "RS256", "use": "sig",
    }]});
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), expected);
    assert_eq!(e, "AQAB");
}

// ---------------------------------------------------------------------------------------------
// WebSocket token checks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_requires_a_token() {
    let server = TestServer::start().await;
    let login = server.login().await;
    expect_welcome(&server, &login.auth_token).await;

    let mut client = Client::connect(&format!("ws://{}/", server.addr)).await;
    client.expect_text(AUTH_REQUIRED).await;
    assert_eq!(client.expect_close().await.map(|c| c.0), Some(1008));
    expect_refused(&server, "", AUTH_REQUIRED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refuses_invalid_tokens() {
    let server = TestServer::start().await;
    let iss = server.http();
    let kid = kid_of(&fixture_key());
    let good = access_claims(&iss, &kid);
    // The hand-made token itself is fine, so each variation fails for its one reason.
    expect_welcome(&server, &sign(&fixture_key(), Some(&kid), &good)).await;
    // Within the leeway.
    let just_expired = with(good.clone(), json!({"exp": now() - 10}));
    expect_welcome(&server, &sign(&fixture_key(), Some(&kid), &just_expired)).await;

    let login = server.login().await;
    let hmac = jsonwebtoken::encode(
        &Header {
            kid: Some(kid.clone()),
            ..Header::new(Algorithm::HS256)
        },
        &good,
        &EncodingKey::from_secret(&std::fs::read(fixture_key()).unwrap()),
    )
    .unwrap();
    let variations = [
        ("expired", with(good.clone(), json!({"exp": now() - 120}))),
        (
            "not yet valid",
            with(good.clone(), json!({"nbf": now() + 300})),
        ),
        ("wrong aud", with(good.clone(), json!({"aud": "refresh"}))),
        ("wrong scope", with(good.clone(), json!({"scope": "admin"}))),
        (
            "refresh scope",
            with(good.clone(), json!({"scope": "refresh"})),
        ),
        (
            "wrong iss",
            with(good.clone(), json!({"iss": "http://elsewhere"})),
        ),
        ("empty sub", with(good.clone(), json!({"sub": ""}))),
    ];
    let mut tokens: Vec<(String, String)> = variations
        .into_iter()
        .map(|(name, claims)| (name.to_owned(), sign(&fixture_key(), Some(&kid), &claims)))
        .collect();
    tokens.extend([
        ("garbage".to_owned(), "not-a-token".to_owned()),
        (
            "other key, same kid".into(),
            sign(&other_key(), Some(&kid), &good),
        ),
        (
            "unknown kid".into(),
            sign(&fixture_key(), Some("nope"), &good),
        ),
        ("no kid".into(), sign(&fixture_key(), None, &good)),
        ("HS256".into(), hmac),
        ("refresh token".into(), login.refresh_token),
    ]);
    for (name, token) in tokens {
        eprintln!("case: {name}");
        expect_refused(&server, &token, INVALID_TOKEN).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Key file, several nodes, key rotation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_is_created_and_shared_by_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("new/key.pem");
    let public = "http://chat.example.test/";
    let configure = |c: &mut server::config::Config| {
        c.identity.key_file = key.clone();
        c.identity.public_url = Some(public.to_owned());
    };
    let a = TestServer::start_with(configure).await;
    let pem = std::fs::read_to_string(&key).expect("key file created");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(std::fs::read_dir(key.parent().unwrap()).unwrap().count(), 1);

    let b = TestServer::start_with(configure).await;
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem, "key kept");
    let (a_jwks, b_jwks) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(a_jwks, b_jwks);
    let kid = kid_of(&key);
    assert_eq!(a_jwks.keys.len(), 1);
    assert_eq!(a_jwks.keys[0].common.key_id.as_deref(), Some(kid.as_str()));

    let from_a = a.login().await;
    let (_, claims) = decode(
        &from_a.auth_token,
        &a_jwks,
        "http://chat.example.test",
        "gamebackend",
    );
    assert_eq!(claims["iss"], "http://chat.example.test");
    expect_welcome(&b, &from_a.auth_token).await;
    let from_b = b.login().await;
    expect_welcome(&a, &from_b.auth_token).await;
    // Refresh tokens travel between nodes too.
    let refreshed = refresh(&b, &from_a.refresh_token).await;
    expect_welcome(&a, &refreshed.auth_token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_that_is_not_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    std::fs::write(&config.identity.key_file, "not a key\n").unwrap();
    let error = match server::Server::bind(config.clone()).await {
        Ok(_) => panic!("a bad key file must be refused"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("key.pem"), "{error}");

    config.identity.key_file = fixture_key();
    config.identity.previous_key_file = Some(dir.path().join("missing.pem"));
    let error = match server::Server::bind(config).await {
        Ok(_) => panic!("a missing previous key file must be refused"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("missing.pem"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_key_still_verifies_and_is_published() {
    let server = TestServer::start_with(|c| c.identity.previous_key_file = Some(other_key())).await;
    let current = kid_of(&fixture_key());
    let previous = kid_of(&other_key());
    let jwks = jwks(&server).await;
    let kids: Vec<_> = jwks
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(kids, [current.clone(), previous.clone()]);

    let iss = server.http();
    let old = sign(
        &other_key(),
        Some(&previous),
        &access_claims(&iss, &previous),
    );
    expect_welcome(&server, &old).await;
    // The previous key is never used to sign.
    let login = server.login().await;
    let (header, _) = decode(&login.auth_token, &jwks, &iss, "gamebackend");
    assert_eq!(header.kid, Some(current.clone()));
    // A refresh token signed before the rotation still refreshes, into current-key tokens.
    let now = now();
    let old_refresh = sign(
        &other_key(),
        Some(&previous),
        &json!({
            "sub": "veteran", "iss": iss, "aud": "refresh", "scope": "refresh",
            "access_token_scope": "guest", "kid": previous, "iat": now, "nbf": now,
            "exp": now + 3600,
        }),
    );
    let refreshed = refresh(&server, &old_refresh).await;
    let (header, claims) = decode(&refreshed.auth_token, &jwks, &iss, "gamebackend");
    assert_eq!(header.kid, Some(current));
    assert_eq!(claims["sub"], "veteran");
    expect_welcome(&server, &refreshed.auth_token).await;
}

// ---------------------------------------------------------------------------------------------
// Guest file
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_survive_a_restart_without_storing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let guests = dir.path().join("data/guests.jsonl");
    let configure = |c: &mut server::config::Config| {
        c.identity.key_file = fixture_key();
        c.identity.guest_file = guests.clone();
    };
    let first = TestServer::start_with(configure).await;
    let login = first.login().await;
    first.stop().await;

    let contents = std::fs::read_to_string(&guests).unwrap();
    assert!(!contents.contains(&login.guest_secret));
    let line: Value = serde_json::from_str(contents.lines().next().unwrap()).unwrap();
    assert_eq!(line["user_id"], login.user_id.as_str());
    let hash = Sha256::digest(login.guest_secret.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(line["secret_sha256"], hex.as_str());

    // A corrupt line (e.g. from a crash mid-write) is skipped, not fatal.
    std::fs::write(&guests, format!("{contents}{{\"user_id\":\"trunc")).unwrap();
    let second = TestServer::start_with(configure).await;
    let again = format!(
        "/login-as-guest?{}",
        query(&[
            ("user_id", &login.user_id),
            ("guest_secret", &login.guest_secret)
        ])
    );
    let (status, body) = second.get(&again).await;
    assert_eq!(status, 200, "{body}");
    let relogin: LoginResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(relogin.user_id, login.user_id);
    expect_welcome(&second, &relogin.auth_token).await;
    // A guest created after the corrupt line is kept as well.
    let newer = second.login().await;
    second.stop().await;
    let third = TestServer::start_with(configure).await;
    let newer_query = query(&[
        ("user_id", &newer.user_id),
        ("guest_secret", &newer.guest_secret),
    ]);
    let (status, body) = third.get(&format!("/login-as-guest?{newer_query}")).await;
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identity_serves_only_the_jwks_and_accepts_shared_key_tokens() {
    let public = "http://chat.example.test";
    let normal = TestServer::start_with(|c| c.identity.public_url = Some(public.into())).await;
    let gateway = TestServer::start_with(|c| {
        c.identity.public_url = Some(public.into());
        c.identity.no_identity = true;
    })
    .await;
    assert_eq!(gateway.get("/login-as-guest").await.0, 404);
    assert_eq!(
        gateway.get("/refresh-access-token?refresh_token=x").await.0,
        404
    );
    assert_eq!(jwks(&gateway).await, jwks(&normal).await);
    assert!(!gateway.dir.path().join("guests.jsonl").exists());

    let login = normal.login().await;
    expect_welcome(&gateway, &login.auth_token).await;
    expect_refused(&gateway, &login.refresh_token, INVALID_TOKEN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_issuer_mode_checks_tokens_against_the_issuer_jwks() {
    let issuer = TestServer::start().await;
    let chat = TestServer::start_with(|c| {
        c.identity.issuer_url = Some(format!("{}/", issuer.http()));
        // A key file that is not a key: it must not be read in this mode.
        std::fs::write(&c.identity.key_file, "not a key").unwrap();
        c.identity.guest_file = c.identity.guest_file.with_file_name("never.jsonl");
    })
    .await;
    assert!(!chat.dir.path().join("never.jsonl").exists());
    assert_eq!(chat.get("/login-as-guest").await.0, 404);
    assert_eq!(
        chat.get("/refresh-access-token?refresh_token=x").await.0,
        404
    );
    assert_eq!(chat.get("/.well-known/jwks.json").await.0, 404);

    let login = issuer.login().await;
    expect_welcome(&chat, &login.auth_token).await;
    let refreshed = refresh(&issuer, &login.refresh_token).await;
    expect_welcome(&chat, &refreshed.auth_token).await;

    let iss = issuer.http();
    let kid = kid_of(&fixture_key());
    let other = kid_of(&other_key());
    let good = access_claims(&iss, &kid);
    for token in [
        sign(&other_key(), Some(&kid), &good),
        sign(&other_key(), Some(&other), &access_claims(&iss, &other)),
        sign(
            &fixture_key(),
            Some(&kid),
            &with(good.clone(), json!({"iss": chat.http()})),
        ),
        sign(
            &fixture_key(),
            Some(&kid),
            &with(good.clone(), json!({"aud": "refresh"})),
        ),
        sign(
            &fixture_key(),
            Some(&kid),
            &with(good.clone(), json!({"scope": "admin"})),
        ),
        login.refresh_token,
        "garbage".into(),
    ] {
        expect_refused(&chat, &token, INVALID_TOKEN).await;
    }
    let authenticated = with(good, json!({"scope": "authenticated"}));
    expect_welcome(&chat, &sign(&fixture_key(), Some(&kid), &authenticated)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_issuer_keys_are_refetched_for_an_unknown_kid() {
    let first = TestServer::start().await;
    let issuer_addr = first.addr;
    let chat = TestServer::start_with(|c| {
        c.identity.issuer_url = Some(first.http());
        c.identity.jwks_refetch_interval = Duration::ZERO;
    })
    .await;
    expect_welcome(&chat, &first.login().await.auth_token).await;
    first.stop().await;

    // The issuer comes back on the same address with a new key.
    let second = TestServer::start_with(|c| {
        c.listen = issuer_addr;
        c.identity.key_file = other_key();
        c.identity.public_url = Some(format!("http://{issuer_addr}"));
    })
    .await;
    let login = second.login().await;
    let (header, _) = decode(
        &login.auth_token,
        &jwks(&second).await,
        &second.http(),
        "gamebackend",
    );
    assert_eq!(header.kid, Some(kid_of(&other_key())));
    expect_welcome(&chat, &login.auth_token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_issuer_down_at_startup_is_fetched_lazily() {
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    // Default refetch interval (10 s): the lazy first fetch must not wait for it.
    let chat =
        TestServer::start_with(|c| c.identity.issuer_url = Some(format!("http://{addr}"))).await;
    let issuer = TestServer::start_with(|c| c.listen = addr).await;
    expect_welcome(&chat, &issuer.login().await.auth_token).await;
}

/// A minimal JWKS endpoint that counts its requests.
async fn counting_jwks_server(body: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_do_not_hammer_the_issuer() {
    let kid = kid_of(&fixture_key());
    let (n, e) = public_parts(&fixture_key());
    // `alg` and `use` are optional in a JWKS.
    let body = json!({"keys": [
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": kid, "n": n, "e": e},
    ]});
    let (url, hits) = counting_jwks_server(body.to_string()).await;
    let chat = TestServer::start_with(|c| {
        c.identity.issuer_url = Some(url.clone());
        c.identity.jwks_refetch_interval = Duration::from_secs(3600);
    })
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once at startup");
    expect_welcome(
        &chat,
        &sign(&fixture_key(), Some(&kid), &access_claims(&url, &kid)),
    )
    .await;

    let chat = &chat;
    let mut clients = Vec::new();
    for i in 0..8 {
        let random = format!("random-{i}");
        let token = sign(&fixture_key(), Some(&random), &access_claims(&url, &random));
        clients.push(async move { expect_refused(chat, &token, INVALID_TOKEN).await });
    }
    futures_util::future::join_all(clients).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no refetch within the interval"
    );
    expect_welcome(
        chat,
        &sign(&fixture_key(), Some(&kid), &access_claims(&url, &kid)),
    )
    .await;
}
