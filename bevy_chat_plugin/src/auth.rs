//! Login over HTTP (run on the network thread, never the main thread) and the saved guest
//! credentials.

use std::path::Path;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use protocol::{LoginResponse, RefreshResponse};
use serde::{Deserialize, Serialize};

/// Refresh the access token this long before it expires.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The login as the ECS sees it (games read it through [`Chat::user_id`](crate::Chat::user_id)).
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChatAuth {
    /// This player's user id, once logged in.
    pub user_id: Option<String>,
}

/// A guest's saved credentials: enough to log in as the same user again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GuestCredentials {
    /// The guest's user id.
    pub user_id: String,
    /// The guest's secret.
    pub guest_secret: String,
}

/// Tokens in hand on the network thread.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    pub user_id: Option<String>,
    pub access: String,
    pub access_expires: Option<Instant>,
    pub refresh: Option<String>,
    pub refresh_expires: Option<Instant>,
}

impl Tokens {
    /// Tokens the server just issued, with their lifetimes in seconds.
    fn issued(
        user_id: String,
        access: String,
        access_secs: u64,
        refresh: String,
        refresh_secs: u64,
    ) -> Self {
        let now = Instant::now();
        Self {
            user_id: Some(user_id),
            access,
            access_expires: Some(now + Duration::from_secs(access_secs)),
            refresh: Some(refresh),
            refresh_expires: Some(now + Duration::from_secs(refresh_secs)),
        }
    }

    fn from_login(login: LoginResponse) -> Self {
        let LoginResponse {
            user_id,
            auth_token,
            refresh_token,
            auth_token_expires_in,
            refresh_token_expires_in,
            ..
        } = login;
        Self::issued(
            user_id,
            auth_token,
            auth_token_expires_in,
            refresh_token,
            refresh_token_expires_in,
        )
    }

    fn from_refresh(refresh: RefreshResponse) -> Self {
        let RefreshResponse {
            user_id,
            auth_token,
            refresh_token,
            auth_token_expires_in,
            refresh_token_expires_in,
        } = refresh;
        Self::issued(
            user_id,
            auth_token,
            auth_token_expires_in,
            refresh_token,
            refresh_token_expires_in,
        )
    }

    /// A token from the game (external issuer). The user id comes from its `sub` claim (read,
    /// not verified: the server verifies).
    pub fn external(token: String) -> Self {
        Self {
            user_id: token_subject(&token),
            access: token,
            access_expires: None,
            refresh: None,
            refresh_expires: None,
        }
    }

    /// The access token expires within `margin`.
    pub fn access_expiring(&self, margin: Duration) -> bool {
        self.access_expires
            .is_some_and(|at| at.saturating_duration_since(Instant::now()) <= margin)
    }

    /// The refresh token can still be used.
    pub fn can_refresh(&self) -> bool {
        self.refresh.is_some()
            && self.refresh_expires.is_some_and(|at| {
                at.saturating_duration_since(Instant::now()) > Duration::from_secs(30)
            })
    }
}

/// The `sub` claim of a JWT, without checking its signature.
fn token_subject(token: &str) -> Option<String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Claims>(&bytes)
        .ok()
        .map(|c| c.sub)
        .filter(|sub| !sub.is_empty())
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    /// The server could not be reached or did not answer in time.
    #[error("cannot reach the login server: {0}")]
    Unreachable(String),
    /// The server refused (e.g. unknown guest): the text is the server's.
    #[error("login refused ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The answer was not the expected JSON.
    #[error("unexpected login response: {0}")]
    BadResponse(String),
}

impl LoginError {
    /// The server said no to these credentials (as opposed to a network problem).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LoginError::Refused {
                status: 400 | 401 | 404,
                ..
            }
        )
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

fn get_json<T: serde::de::DeserializeOwned>(url: &str, timeout: Duration) -> Result<T, LoginError> {
    let mut response = agent(timeout)
        .get(url)
        .call()
        .map_err(|e| LoginError::Unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| LoginError::Unreachable(e.to_string()))?;
    if status != 200 {
        return Err(LoginError::Refused { status, body });
    }
    serde_json::from_str(&body).map_err(|e| LoginError::BadResponse(e.to_string()))
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Logs in as the saved guest, or as a new guest (saving its credentials) when there is none
/// or the server no longer knows it. With no `credentials_file` yet, the guest saved at
/// `legacy_file` by an older version is tried first and, when the server knows it, saved to
/// `credentials_file` (the legacy file is left as it is). Blocking: call it off the main thread.
pub(crate) fn login_guest(
    server_url: &str,
    credentials_file: Option<&Path>,
    legacy_file: Option<&Path>,
    timeout: Duration,
) -> Result<Tokens, LoginError> {
    let base = server_url.trim_end_matches('/');
    let saved = credentials_file.and_then(load_credentials);
    let migrating = saved.is_none() && credentials_file.is_some_and(|path| !path.exists());
    let saved = saved.or_else(|| legacy_file.filter(|_| migrating).and_then(load_credentials));
    if let Some(saved) = saved {
        let url = format!(
            "{base}/login-as-guest?user_id={}&guest_secret={}",
            encode(&saved.user_id),
            encode(&saved.guest_secret)
        );
        match get_json::<LoginResponse>(&url, timeout) {
            Ok(login) => {
                if migrating && let Some(path) = credentials_file {
                    keep(path, &saved);
                }
                return Ok(Tokens::from_login(login));
            }
            Err(error) if error.is_refusal() => {
                warn!(%error, "saved guest refused; logging in as a new guest");
            }
            Err(error) => return Err(error),
        }
    }
    let login: LoginResponse = get_json(&format!("{base}/login-as-guest"), timeout)?;
    if let Some(path) = credentials_file {
        let credentials = GuestCredentials {
            user_id: login.user_id.clone(),
            guest_secret: login.guest_secret.clone(),
        };
        keep(path, &credentials);
    }
    Ok(Tokens::from_login(login))
}

/// Saves credentials, warning when that fails (the player then gets a new guest next time).
fn keep(path: &Path, credentials: &GuestCredentials) {
    if let Err(error) = save_credentials(path, credentials) {
        warn!(%error, path = %path.display(), "could not save guest credentials");
    }
}

/// Trades a refresh token for new tokens. Blocking.
pub(crate) fn refresh(
    server_url: &str,
    refresh_token: &str,
    timeout: Duration,
) -> Result<Tokens, LoginError> {
    let url = format!(
        "{}/refresh-access-token?refresh_token={}",
        server_url.trim_end_matches('/'),
        encode(refresh_token)
    );
    get_json::<RefreshResponse>(&url, timeout).map(Tokens::from_refresh)
}

/// Reads saved credentials; none when the file is missing or unreadable.
pub(crate) fn load_credentials(path: &Path) -> Option<GuestCredentials> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(credentials) => Some(credentials),
        Err(error) => {
            warn!(%error, path = %path.display(), "ignoring unreadable guest credentials");
            None
        }
    }
}

/// Saves credentials (creating the directory; owner-only permissions on unix).
pub(crate) fn save_credentials(path: &Path, credentials: &GuestCredentials) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(credentials).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/guest.json");
        assert!(load_credentials(&path).is_none());
        let credentials = GuestCredentials {
            user_id: "u".into(),
            guest_secret: "s".into(),
        };
        save_credentials(&path, &credentials).unwrap();
        assert_eq!(load_credentials(&path), Some(credentials));
        std::fs::write(&path, "garbage").unwrap();
        assert!(load_credentials(&path).is_none());
    }

    #[test]
    fn the_user_id_of_a_token_is_its_subject() {
        // {"alg":"none"} . {"sub":"user-1","aud":"gamebackend"} . no signature
        let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyLTEiLCJhdWQiOiJnYW1lYmFja2VuZCJ9.";
        assert_eq!(token_subject(token).as_deref(), Some("user-1"));
        assert_eq!(token_subject("garbage"), None);
        assert_eq!(Tokens::external("a.b.c".into()).user_id, None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("a b+c/d=é"), "a%20b%2Bc%2Fd%3D%C3%A9");
        assert_eq!(encode("AZaz09-_.~"), "AZaz09-_.~");
    }
}
