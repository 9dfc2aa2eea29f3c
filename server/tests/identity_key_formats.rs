//! Key files in every PEM format the server has ever accepted (`--key-file` and
//! `--previous-key-file`) keep loading, with the same key ids, whatever RSA library reads them.
//!
//! The fixtures are the two test keys converted with `openssl rsa`: `test-key-pkcs1.pem`
//! (`-traditional`: PKCS#1 `RSA PRIVATE KEY`), `other-key-public.pem` (`-pubout`: X.509
//! `PUBLIC KEY`) and `other-key-public-pkcs1.pem` (`-RSAPublicKey_out`: PKCS#1 `RSA PUBLIC KEY`);
//! `small-key.pem` is a 1024-bit key (`openssl genpkey`).

mod common;

use std::path::PathBuf;

use common::tokens::*;
use common::*;

/// RFC 7638 thumbprint of `test-key.pem`, as published by every version of the server.
const TEST_KID: &str = "9eRPiMZB8M72rfw5jyiJJ0p0d0SBzpn-4dkUWzmPlGQ";
/// RFC 7638 thumbprint of `other-key.pem`.
const OTHER_KID: &str = "fYIjSSrQNf3cCtx0MY2FtI_sAfuloSmVgqhd9pe_w1c";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A server signing with `key` and still accepting `previous`, checked end to end: both key ids
/// published, a login's tokens verify with the JWKS and open a session, and a token signed with
/// the previous key is still accepted.
async fn check_key_files(key: &str, previous: &str) {
    let server = TestServer::start_with(|c| {
        std::fs::copy(fixture(key), &c.identity.key_file).unwrap();
        c.identity.previous_key_file = Some(fixture(previous));
    })
    .await;
    let jwks = jwks(&server).await;
    let kids = kids(&jwks);
    assert_eq!(kids, [TEST_KID, OTHER_KID], "{key} + {previous}");

    let iss = server.http();
    let login = server.login().await;
    let (header, _) = decode(&login.auth_token, &jwks, &iss, "gamebackend");
    assert_eq!(header.kid.as_deref(), Some(TEST_KID));
    expect_welcome(&server, &login.auth_token).await;
    let refreshed = refresh(&server, &login.refresh_token).await;
    expect_welcome(&server, &refreshed.auth_token).await;

    let old = sign(
        &other_key(),
        Some(OTHER_KID),
        &access_claims(&iss, OTHER_KID),
    );
    expect_welcome(&server, &old).await;
}

#[test]
fn the_fixture_kids_are_the_rfc7638_thumbprints() {
    assert_eq!(kid_of(&fixture_key()), TEST_KID);
    assert_eq!(kid_of(&other_key()), OTHER_KID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs8_private_key_and_pkcs8_private_previous_key() {
    check_key_files("test-key.pem", "other-key.pem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs1_private_key_and_x509_public_previous_key() {
    check_key_files("test-key-pkcs1.pem", "other-key-public.pem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs1_public_previous_key() {
    check_key_files("test-key.pem", "other-key-public-pkcs1.pem").await;
}

/// Binding with this configuration fails; the error text.
async fn refused(config: server::config::Config) -> String {
    match server::Server::bind(config).await {
        Ok(_) => panic!("the key file must be refused"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_keys_and_public_keys_cannot_sign() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.identity.key_file = fixture("small-key.pem");
    let error = refused(config.clone()).await;
    assert!(
        error.contains("small-key.pem") && error.contains("2048"),
        "{error}"
    );

    config.identity.key_file = fixture_key();
    config.identity.previous_key_file = Some(fixture("small-key.pem"));
    let error = refused(config.clone()).await;
    assert!(
        error.contains("small-key.pem") && error.contains("2048"),
        "{error}"
    );

    config.identity.key_file = fixture("other-key-public.pem");
    config.identity.previous_key_file = None;
    let error = refused(config).await;
    assert!(
        error.contains("other-key-public.pem") && error.contains("PRIVATE KEY"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_key_is_pkcs8_pem_and_loads_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.identity.key_file = dir.path().join("new/key.pem");
    let first = TestServer::start_config(config.clone(), tempfile::tempdir().unwrap()).await;
    let kid = jwks(&first).await.keys[0].common.key_id.clone().unwrap();
    first.stop().await;

    let pem = std::fs::read_to_string(&config.identity.key_file).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"), "{pem}");
    assert!(!pem.contains('\r'));
    assert_eq!(kid_of(&config.identity.key_file), kid);

    let second = TestServer::start_config(config, tempfile::tempdir().unwrap()).await;
    assert_eq!(
        jwks(&second).await.keys[0].common.key_id.as_deref(),
        Some(kid.as_str())
    );
    let login = second.login().await;
    expect_welcome(&second, &login.auth_token).await;
}

/// The pure-Rust `rsa` crate (RUSTSEC-2023-0071, a timing side channel on private-key
/// operations) is gone: RSA is done by `aws-lc-rs`.
#[test]
fn the_rsa_crate_is_not_built() {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"))
        .expect("the workspace Cargo.lock");
    assert!(
        !lock.lines().any(|line| line == r#"name = "rsa""#),
        "Cargo.lock still has the rsa crate"
    );
    assert!(lock.lines().any(|line| line == r#"name = "aws-lc-rs""#));
}
