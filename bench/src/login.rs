//! Guest logins before a run: every client then connects with a token it already holds, so the
//! measured phases (and reconnect storms and ramp steps) do not include HTTP logins.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Logs in `count` new guests at `base_url` (`GET {base_url}/login-as-guest`), at most
/// `concurrency` at a time, and returns their access tokens in order.
///
/// Fails with the number of failed logins and the first error when any login fails.
pub async fn login_guests(
    base_url: &str,
    count: usize,
    concurrency: usize,
) -> Result<Vec<Arc<str>>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("{}/login-as-guest", base_url.trim_end_matches('/'));
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let agent = agent.clone();
            let url = url.clone();
            let limit = limit.clone();
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.map_err(|e| e.to_string())?;
                tokio::task::spawn_blocking(move || login(&agent, &url))
                    .await
                    .map_err(|e| e.to_string())?
            })
        })
        .collect();
    let mut tokens = Vec::with_capacity(count);
    let mut failures = 0usize;
    let mut first_error = None;
    for task in tasks {
        match task.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(token) => tokens.push(Arc::from(token)),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(tokens),
        Some(e) => {
            let hint = if e.contains("429") {
                " (the server limits logins per address: raise chat-server's \
                 --logins-per-minute and --login-burst for benchmarks)"
            } else {
                ""
            };
            Err(format!(
                "{failures} of {count} guest logins failed ({url}): {e}{hint}"
            ))
        }
    }
}

/// `GET url` and the `auth_token` of its JSON body.
fn login(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let body: serde_json::Value = response
        .body_mut()
        .read_json()
        .map_err(|e| format!("login reply is not JSON: {e}"))?;
    body["auth_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "login reply has no auth_token".to_owned())
}
