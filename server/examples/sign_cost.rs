//! The cost of one RS256 token signature, as the login and refresh routes pay it.
//!
//! `cargo run --release -p server --example sign_cost -- [KEY_FILE] [COUNT]` (defaults: the test
//! key, 2,000 logins) prints the mean time of `TokenService::login` (two signatures: an access and
//! a refresh token), of `TokenService::refresh` (one check and two signatures) and, for
//! comparison, of `jsonwebtoken::encode` with the same key (which parses the key on every call).
//! Everything runs on one thread. See docs/BENCHMARKS.md, "Logins".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use server::identity::keys::KeyRing;
use server::identity::tokens::{SCOPE_GUEST, TokenService};

fn per_call(count: u32, mut work: impl FnMut()) -> Duration {
    // A few calls first, so that caches and lazy set-up are not counted.
    for _ in 0..10 {
        work();
    }
    let start = Instant::now();
    for _ in 0..count {
        work();
    }
    start.elapsed() / count
}

fn main() {
    let mut args = std::env::args().skip(1);
    let key_file = args.next().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-key.pem"),
        PathBuf::from,
    );
    let count: u32 = args
        .next()
        .map(|n| n.parse().expect("COUNT is a number"))
        .unwrap_or(2_000)
        .max(1);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let keys = runtime
        .block_on(KeyRing::load(&key_file, None))
        .expect("the key file loads");
    let tokens = TokenService::new("http://127.0.0.1:8080".into(), Arc::new(keys));

    let login = per_call(count, || {
        tokens.login("user-1", SCOPE_GUEST).expect("login signs");
    });
    let pair = tokens.login("user-1", SCOPE_GUEST).expect("login signs");
    let refresh = per_call(count, || {
        tokens.refresh(&pair.refresh_token).expect("refresh");
    });
    let pem = std::fs::read(&key_file).expect("the key file reads");
    let key = EncodingKey::from_rsa_pem(&pem).expect("an RSA key");
    let header = Header::new(Algorithm::RS256);
    let claims =
        serde_json::json!({"sub": "user-1", "aud": "gamebackend", "exp": 2_000_000_000u64});
    let encode = per_call(count, || {
        jsonwebtoken::encode(&header, &claims, &key).expect("encode signs");
    });

    println!("key file: {}", key_file.display());
    println!("calls each: {count}");
    println!(
        "login (2 signatures):   {login:>10.1?}  => {:>10.1?} per signature",
        login / 2
    );
    println!("refresh (check + 2 signatures): {refresh:>10.1?}");
    println!("jsonwebtoken::encode (1 signature, key parsed per call): {encode:>10.1?}");
}
