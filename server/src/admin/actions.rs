//! The admin actions: mute, unmute, kick, ban and unban a user, and broadcast; each one
//! recorded in the audit log with its result.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Caller, error};
use crate::app::AppState;
use crate::engine::{AuditAction, AuditEntry, EngineError, now_ms};
use crate::limits::{check_channel, check_message};
use crate::moderation::Sanction;

/// Body of `POST /admin/broadcast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// Text delivered to every connection on every node (or to one channel's members).
    pub message: String,
    /// Only this channel's members, when given.
    #[serde(default)]
    pub channel: Option<String>,
}

/// Body of `POST /admin/{mute,unmute,kick,ban,unban}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModerationRequest {
    /// The user acted on (the token's `sub`).
    pub user_id: String,
    /// Length of a mute or ban; until lifted when absent.
    #[serde(default)]
    pub seconds: Option<u64>,
    /// Shown to the user.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Longest mute or ban that can be given in seconds (ten years; longer: leave `seconds` out).
const MAX_SANCTION_SECONDS: u64 = 10 * 365 * 24 * 3600;
/// Longest reason shown to a user.
const MAX_REASON_CHARS: usize = 200;

/// `POST /admin/{action}` with `{"user_id", "seconds"?, "reason"?}`: mute, unmute, kick, ban or
/// unban a user on every node.
pub async fn moderate(
    State(app): State<AppState>,
    caller: Caller,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ModerationRequest>, JsonRejection>,
) -> Response {
    let request = match admitted(&app, &headers, body) {
        Ok(request) => request,
        Err((status, text)) => return error(status, text),
    };
    let (action, sanction) = match sanction_of(&action, &request) {
        Ok(sanction) => sanction,
        Err((status, text)) => return error(status, text),
    };
    tracing::info!(
        action = action.as_str(),
        user = request.user_id,
        "moderation"
    );
    let limited = matches!(action, AuditAction::Mute | AuditAction::Ban);
    let engine = app.node.engine.clone();
    let user = request.user_id.clone();
    let act = async move { engine.moderation.moderate(&user, sanction).await };
    let seconds = request.seconds.filter(|_| limited);
    audited(&app, act, move |result| AuditEntry {
        seconds,
        ..caller.entry(action, &request.user_id, request.reason, result)
    })
    .await
}

/// The request body, once the bearer token is right; else the status and text to answer.
fn admitted<T>(
    app: &AppState,
    headers: &HeaderMap,
    body: Result<Json<T>, JsonRejection>,
) -> Result<T, (StatusCode, String)> {
    super::authorize(app, headers).map_err(|(status, text)| (status, text.to_owned()))?;
    body.map(|Json(request)| request)
        .map_err(|rejection| (StatusCode::BAD_REQUEST, rejection.body_text()))
}

/// Carries out `act` and records it in the audit log (`entry` of its result), in a task of their
/// own (so that a client going away, or the request timing out, never leaves an action done and
/// not recorded). Answers `{"ok": true, "audit_id": ...}`, or 503 when the engine could not
/// carry the action out. An action done whose record failed is answered `ok` all the same (it
/// was done: a retry would do it twice) with `audit_error`.
async fn audited(
    app: &AppState,
    act: impl Future<Output = Result<(), EngineError>> + Send + 'static,
    entry: impl FnOnce(&Result<(), EngineError>) -> AuditEntry + Send + 'static,
) -> Response {
    let audit = app.node.engine.audit.clone();
    let task = tokio::spawn(async move {
        let result = act.await;
        let recorded = audit.record(entry(&result)).await;
        (result, recorded)
    });
    match task.await {
        Ok((result, recorded)) => answer(result, recorded),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the action failed unexpectedly: {e}"),
        ),
    }
}

/// The answer to an action with its `result` and how its recording went.
fn answer(result: Result<(), EngineError>, recorded: Result<AuditEntry, EngineError>) -> Response {
    let audit = match &recorded {
        Ok(entry) => serde_json::json!({ "audit_id": entry.id }),
        Err(e) => {
            tracing::error!(error = %e, "an admin action could not be recorded in the audit log");
            serde_json::json!({ "audit_error": e.to_string() })
        }
    };
    match result {
        Ok(()) => {
            let mut body = serde_json::json!({ "ok": true });
            body.as_object_mut()
                .unwrap()
                .extend(audit.as_object().unwrap().clone());
            Json(body).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The sanction an admin request asks for, or why it is refused.
fn sanction_of(
    action: &str,
    request: &ModerationRequest,
) -> Result<(AuditAction, Sanction), (StatusCode, String)> {
    let bad = |text: String| Err((StatusCode::BAD_REQUEST, text));
    if request.user_id.trim().is_empty() || request.user_id.len() > 256 {
        return bad("user_id must be a user id".into());
    }
    let reason = request.reason.clone().unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return bad(format!(
            "reason: at most {MAX_REASON_CHARS} characters, no control characters"
        ));
    }
    let until_ms = match request.seconds {
        None => u64::MAX,
        Some(0) => return bad("seconds must be at least 1".into()),
        Some(s) if s > MAX_SANCTION_SECONDS => {
            return bad(format!(
                "seconds: at most {MAX_SANCTION_SECONDS}; leave it out for until lifted"
            ));
        }
        Some(s) => now_ms().saturating_add(s * 1000),
    };
    let parsed = AuditAction::parse(action).filter(|a| *a != AuditAction::Broadcast);
    Ok(match parsed {
        Some(action @ AuditAction::Mute) => (action, Sanction::Mute { until_ms, reason }),
        Some(action @ AuditAction::Unmute) => (action, Sanction::Unmute),
        Some(action @ AuditAction::Kick) => (action, Sanction::Kick { reason }),
        Some(action @ AuditAction::Ban) => (action, Sanction::Ban { until_ms, reason }),
        Some(action @ AuditAction::Unban) => (action, Sanction::Unban),
        _ => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no admin action {action:?} (mute, unmute, kick, ban, unban)"),
            ));
        }
    })
}

/// `POST /admin/broadcast {"message": "...", "channel"?: "..."}`: an operator announcement to
/// everyone connected, or to one channel's members.
pub async fn broadcast(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<BroadcastRequest>, JsonRejection>,
) -> Response {
    let request = match admitted(&app, &headers, body) {
        Ok(request) => request,
        Err((status, text)) => return error(status, text),
    };
    if let Err(problem) = check_message(&request.message, &app.node.limits) {
        return error(StatusCode::BAD_REQUEST, problem.message);
    }
    if let Some(channel) = &request.channel
        && let Err(problem) = check_channel(channel, &app.node.limits)
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("channel: {}", problem.message),
        );
    }
    let target = request
        .channel
        .as_ref()
        .map_or_else(|| "*".to_owned(), |channel| format!("#{channel}"));
    let message = protocol::BroadcastMessage {
        message: request.message.clone(),
        ts: now_ms(),
        channel: request.channel,
    };
    let engine = app.node.engine.clone();
    let act = async move { engine.broker.broadcast(message).await };
    let text = request.message;
    audited(&app, act, move |result| {
        caller.entry(AuditAction::Broadcast, &target, Some(text), result)
    })
    .await
}
