//! RSA signing keys: loading or creating the key file, RFC 7638 key ids and the public JWKS.
//!
//! All RSA work (generation, PKCS#1 and PKCS#8 parsing, signing) is done by `aws-lc-rs`, whose
//! private-key operations are constant-time (the pure-Rust `rsa` crate used before is not:
//! RUSTSEC-2023-0071) and several times faster.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKey, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::IdentityError;

/// Size of generated keys, and the smallest key accepted from a file.
pub const KEY_BITS: usize = 2048;

/// PEM label of a PKCS#8 private key.
const PKCS8_PRIVATE: &str = "PRIVATE KEY";
/// PEM label of a PKCS#1 private key.
const PKCS1_PRIVATE: &str = "RSA PRIVATE KEY";
/// PEM label of an X.509 `SubjectPublicKeyInfo` public key.
const SPKI_PUBLIC: &str = "PUBLIC KEY";
/// PEM label of a PKCS#1 public key.
const PKCS1_PUBLIC: &str = "RSA PUBLIC KEY";

/// One public key as published in the JWKS (`/.well-known/jwks.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `RSA`.
    pub kty: String,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Public exponent, base64url without padding.
    pub e: String,
    /// Key id: the RFC 7638 thumbprint.
    pub kid: String,
    /// Always `RS256`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// The JWKS document: `{"keys":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The published keys, current first.
    pub keys: Vec<Jwk>,
}

/// A public key that verifies tokens.
#[derive(Clone)]
pub struct VerifyKey {
    /// The key id (RFC 7638 thumbprint).
    pub kid: String,
    /// The key for `jsonwebtoken`.
    pub decoding: DecodingKey,
    /// The published form.
    pub jwk: Jwk,
}

/// The private key that signs tokens, with its public half.
#[derive(Clone)]
pub struct SigningKey {
    /// The parsed private key, kept ready to sign (parsing it again for every token would cost
    /// a good part of a signature).
    key_pair: Arc<KeyPair>,
    /// The public half.
    pub public: VerifyKey,
}

impl SigningKey {
    /// The RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)?;
        Ok(signature)
    }
}

/// The current signing key and, after a rotation, the previous (verify-only) key.
#[derive(Clone)]
pub struct KeyRing {
    /// Signs every new token.
    pub current: SigningKey,
    /// Still accepted and published, never used to sign.
    pub previous: Option<VerifyKey>,
}

impl KeyRing {
    /// Loads the key file (creating it when missing) and the optional previous key file.
    pub async fn load(
        key_file: &Path,
        previous_key_file: Option<&Path>,
    ) -> Result<Self, IdentityError> {
        let key_file = key_file.to_path_buf();
        let previous_key_file = previous_key_file.map(Path::to_path_buf);
        // Key generation takes a noticeable amount of CPU; file access is blocking too.
        tokio::task::spawn_blocking(move || Self::load_blocking(&key_file, previous_key_file))
            .await
            .map_err(|e| IdentityError::Key(format!("key loading task failed: {e}")))?
    }

    fn load_blocking(key_file: &Path, previous: Option<PathBuf>) -> Result<Self, IdentityError> {
        let current = signing_key(load_or_create_private_key(key_file)?);
        let previous = match previous {
            None => None,
            Some(path) => {
                let key = load_public_key(&path)?;
                if key.kid == current.public.kid {
                    tracing::warn!(
                        path = %path.display(),
                        "the previous key file holds the current key; ignoring it"
                    );
                    None
                } else {
                    Some(key)
                }
            }
        };
        tracing::info!(
            kid = %current.public.kid,
            previous_kid = previous.as_ref().map(|k| k.kid.as_str()),
            "identity signing key loaded"
        );
        Ok(Self { current, previous })
    }

    /// The verifying key with this `kid`, current or previous.
    pub fn find(&self, kid: &str) -> Option<&VerifyKey> {
        std::iter::once(&self.current.public)
            .chain(self.previous.as_ref())
            .find(|key| key.kid == kid)
    }

    /// The JWKS document listing the current and the previous key.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: std::iter::once(&self.current.public)
                .chain(self.previous.as_ref())
                .map(|key| key.jwk.clone())
                .collect(),
        }
    }
}

/// RFC 7638 JWK thumbprint of an RSA public key given as base64url `n` and `e`.
pub fn thumbprint(n: &str, e: &str) -> String {
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The verifying form of a public key.
pub fn verify_key(public: &PublicKey) -> VerifyKey {
    let components = PublicKeyComponents::<Vec<u8>>::from(public);
    let n = URL_SAFE_NO_PAD.encode(&components.n);
    let e = URL_SAFE_NO_PAD.encode(&components.e);
    let kid = thumbprint(&n, &e);
    let decoding = DecodingKey::from_rsa_raw_components(&components.n, &components.e);
    VerifyKey {
        jwk: Jwk {
            kty: "RSA".into(),
            n,
            e,
            kid: kid.clone(),
            alg: "RS256".into(),
            use_: "sig".into(),
        },
        kid,
        decoding,
    }
}

fn signing_key(private: KeyPair) -> SigningKey {
    let public = verify_key(private.public_key());
    SigningKey {
        key_pair: Arc::new(private),
        public,
    }
}

fn key_error(path: &Path, detail: impl std::fmt::Display) -> IdentityError {
    IdentityError::Key(format!("key file {}: {detail}", path.display()))
}

fn io_error(path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_pem(path: &Path) -> Result<String, IdentityError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    String::from_utf8(bytes).map_err(|_| key_error(path, "not a PEM file (not text)"))
}

/// The PEM blocks of a file; a malformed block is an error naming the file.
fn pem_blocks(pem: &str, path: &Path) -> Result<Vec<pem::Pem>, IdentityError> {
    pem::parse_many(pem).map_err(|e| key_error(path, format!("malformed PEM: {e}")))
}

/// Why `aws-lc-rs` refused a key, in words.
fn rejected(kind: &str, e: aws_lc_rs::error::KeyRejected) -> String {
    match e.description_() {
        "TooSmall" => format!("the RSA key is too small; at least {KEY_BITS} bits are required"),
        "TooLarge" => "the RSA key is too large (more than 8192 bits)".into(),
        detail => format!("not an RSA {kind} key ({detail})"),
    }
}

fn check_size(bits: usize, path: &Path) -> Result<(), IdentityError> {
    if bits < KEY_BITS {
        return Err(key_error(
            path,
            format!("the RSA key has {bits} bits; at least {KEY_BITS} are required"),
        ));
    }
    Ok(())
}

/// Parses a private RSA key in PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM.
pub fn parse_private_key(pem: &str, path: &Path) -> Result<KeyPair, IdentityError> {
    let blocks = pem_blocks(pem, path)?;
    let key = if let Some(block) = blocks.iter().find(|b| b.tag() == PKCS1_PRIVATE) {
        KeyPair::from_der(block.contents())
    } else if let Some(block) = blocks.iter().find(|b| b.tag() == PKCS8_PRIVATE) {
        KeyPair::from_pkcs8(block.contents())
    } else {
        return Err(key_error(
            path,
            format!("no `{PKCS8_PRIVATE}` or `{PKCS1_PRIVATE}` PEM block found"),
        ));
    };
    let key = key.map_err(|e| key_error(path, rejected("private", e)))?;
    check_size(key.public_modulus_len() * 8, path)?;
    Ok(key)
}

/// Parses a public RSA key in X.509 (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) PEM; `None` when
/// the file holds neither.
fn parse_public_key(pem: &str, path: &Path) -> Result<Option<PublicKey>, IdentityError> {
    let blocks = pem_blocks(pem, path)?;
    let Some(block) = blocks
        .iter()
        .find(|b| b.tag() == SPKI_PUBLIC)
        .or_else(|| blocks.iter().find(|b| b.tag() == PKCS1_PUBLIC))
    else {
        return Ok(None);
    };
    // Either DER form is accepted whatever the label says.
    let key = PublicKey::from_der(block.contents())
        .map_err(|e| key_error(path, rejected("public", e)))?;
    Ok(Some(key))
}

/// Loads the public half of a key file: a private key, or a `PUBLIC KEY` / `RSA PUBLIC KEY` PEM.
fn load_public_key(path: &Path) -> Result<VerifyKey, IdentityError> {
    let pem = read_pem(path)?;
    let public = match parse_public_key(&pem, path)? {
        Some(public) => public,
        None => parse_private_key(&pem, path)?.public_key().clone(),
    };
    check_size(public.modulus_len() * 8, path)?;
    Ok(verify_key(&public))
}

/// Loads the private key at `path`, or generates one and writes it there when the file is missing.
fn load_or_create_private_key(path: &Path) -> Result<KeyPair, IdentityError> {
    match std::fs::metadata(path) {
        Ok(_) => parse_private_key(&read_pem(path)?, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_private_key(path),
        Err(e) => Err(io_error(path, e)),
    }
}

/// A new key as PKCS#8 PEM (LF line endings, as keys made by the earlier versions).
fn generate_pem(path: &Path) -> Result<(KeyPair, String), IdentityError> {
    let key = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|e| key_error(path, format!("cannot generate a key: {e}")))?;
    let der = key
        .as_der()
        .map_err(|e| key_error(path, format!("cannot encode the key: {e}")))?;
    let pem = pem::encode_config(
        &pem::Pem::new(PKCS8_PRIVATE, der.as_ref()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok((key, pem))
}

fn create_private_key(path: &Path) -> Result<KeyPair, IdentityError> {
    let (key, pem) = generate_pem(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let tmp = temp_path(path);
    let written = write_private(&tmp, pem.as_bytes()).map_err(|e| io_error(&tmp, e));
    let published = written.and_then(|()| publish(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match published? {
        Published::Ours => {
            tracing::info!(path = %path.display(), "created a new identity signing key");
            Ok(key)
        }
        // Another node sharing the file created it first: use theirs so that we agree.
        Published::Theirs => parse_private_key(&read_pem(path)?, path),
    }
}

enum Published {
    Ours,
    Theirs,
}

/// Moves the finished temp file to `path` without replacing a key another process wrote
/// meanwhile (a hard link fails when the target exists); falls back to a rename where hard
/// links are not supported.
fn publish(tmp: &Path, path: &Path) -> Result<Published, IdentityError> {
    match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(Published::Ours),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Published::Theirs),
        Err(_) => {
            if path.exists() {
                return Ok(Published::Theirs);
            }
            std::fs::rename(tmp, path).map_err(|e| io_error(path, e))?;
            Ok(Published::Ours)
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t\
                 Soc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65\
                 YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrd\
                 kt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqD\
                 Kgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rejects_non_key_files() {
        let path = Path::new("bogus.pem");
        let err = parse_private_key("hello", path)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("bogus.pem")));
        let err = parse_private_key(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            path,
        )
        .err()
        .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("bogus.pem")));
    }

    #[test]
    fn creates_loads_and_keeps_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/key.pem");
        let created = KeyRing::load_blocking(&path, None).unwrap();
        let loaded = KeyRing::load_blocking(&path, None).unwrap();
        assert_eq!(created.current.public.kid, loaded.current.public.kid);
        assert_eq!(loaded.jwks().keys.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temp files left behind.
        let entries = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 1);
    }
}
