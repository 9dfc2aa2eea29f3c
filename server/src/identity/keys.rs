//! RSA signing keys: loading or creating the key file, RFC 7638 key ids and the public JWKS.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::IdentityError;

/// Size of generated keys, and the smallest key accepted from a file.
pub const KEY_BITS: usize = 2048;

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
    /// The key for `jsonwebtoken` (PKCS#1 DER inside).
    pub encoding: EncodingKey,
    /// The public half.
    pub public: VerifyKey,
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
        let current = signing_key(&load_or_create_private_key(key_file)?, key_file)?;
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
pub fn verify_key(public: &RsaPublicKey) -> VerifyKey {
    let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
    let kid = thumbprint(&n, &e);
    let decoding =
        DecodingKey::from_rsa_raw_components(&public.n().to_bytes_be(), &public.e().to_bytes_be());
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

fn signing_key(private: &RsaPrivateKey, path: &Path) -> Result<SigningKey, IdentityError> {
    let der = private
        .to_pkcs1_der()
        .map_err(|e| key_error(path, format!("cannot encode the key: {e}")))?;
    Ok(SigningKey {
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        public: verify_key(&private.to_public_key()),
    })
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
pub fn parse_private_key(pem: &str, path: &Path) -> Result<RsaPrivateKey, IdentityError> {
    let key = if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| key_error(path, e))?
    } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| key_error(path, format!("not an RSA private key: {e}")))?
    } else {
        return Err(key_error(
            path,
            "no `PRIVATE KEY` or `RSA PRIVATE KEY` PEM block found",
        ));
    };
    check_size(key.size() * 8, path)?;
    Ok(key)
}

/// Loads the public half of a key file: a private key, or a `PUBLIC KEY` / `RSA PUBLIC KEY` PEM.
fn load_public_key(path: &Path) -> Result<VerifyKey, IdentityError> {
    let pem = read_pem(path)?;
    let public = if pem.contains("-----BEGIN PUBLIC KEY-----") {
        RsaPublicKey::from_public_key_pem(&pem)
            .map_err(|e| key_error(path, format!("not an RSA public key: {e}")))?
    } else if pem.contains("-----BEGIN RSA PUBLIC KEY-----") {
        RsaPublicKey::from_pkcs1_pem(&pem).map_err(|e| key_error(path, e))?
    } else {
        parse_private_key(&pem, path)?.to_public_key()
    };
    check_size(public.size() * 8, path)?;
    Ok(verify_key(&public))
}

/// Loads the private key at `path`, or generates one and writes it there when the file is missing.
fn load_or_create_private_key(path: &Path) -> Result<RsaPrivateKey, IdentityError> {
    match std::fs::metadata(path) {
        Ok(_) => parse_private_key(&read_pem(path)?, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_private_key(path),
        Err(e) => Err(io_error(path, e)),
    }
}

fn create_private_key(path: &Path) -> Result<RsaPrivateKey, IdentityError> {
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, KEY_BITS)
        .map_err(|e| key_error(path, format!("cannot generate a key: {e}")))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_error(path, format!("cannot encode the key: {e}")))?;
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
