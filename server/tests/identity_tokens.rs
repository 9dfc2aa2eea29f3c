//! Token checks on the WebSocket: refused tokens, shared keys, external issuers.

mod common;

use common::tokens::*;
use common::*;

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
    // Hold the issuer's port while the chat server starts, so that it cannot be handed the
    // same (just freed) port.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    // Default refetch interval (10 s): the lazy first fetch must not wait for it.
    let chat =
        TestServer::start_with(|c| c.identity.issuer_url = Some(format!("http://{addr}"))).await;
    drop(probe);
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
