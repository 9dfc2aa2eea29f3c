//! Identity over HTTP: guest login, refresh, JWKS, key files, guest persistence.

mod common;

use common::tokens::*;
use common::*;

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
    let kids = kids(&jwks);
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
