//! The admin HTTP API, guarded by a bearer token (`--admin-token`), and the console page that
//! uses it; both off when no token is set. Every action is recorded in the engine's audit log
//! (`GET /admin/audit` reads it).

mod actions;
mod audit;
mod channels;
mod console;
mod overview;
mod players;

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::engine::{AuditAction, AuditEntry, EngineError, now_ms};

/// The admin routes (each checks the token itself, so a wrong one is told why), limited per
/// address and answered with the console's security headers.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(console::root))
        .route("/admin/", get(console::page))
        .route("/admin/console.js", get(console::script))
        .route("/admin/console.css", get(console::styles))
        .route("/admin/audit", get(audit::page))
        .route("/admin/channels", get(channels::list))
        .route("/admin/channels/{name}", get(channels::show))
        .route("/admin/channels/{name}/history", get(channels::history))
        .route("/admin/channels/{name}/stream", get(channels::stream))
        .route("/admin/players", get(players::find))
        .route("/admin/players/{user_id}", get(players::show))
        .route("/admin/overview", get(overview::once))
        .route("/admin/stream", get(overview::stream))
        .route("/admin/broadcast", post(actions::broadcast))
        .route("/admin/{action}", post(actions::moderate))
        .route_layer(axum::middleware::from_fn_with_state(state, protect))
}

/// The Content-Security-Policy of everything under `/admin/`: the console's own script, styles
/// and API only; no inline script, no framing, no other origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Refuses an address past its share of admin requests (429 with `Retry-After`), and adds the
/// security headers to every answer.
async fn protect(
    axum::extract::State(app): axum::extract::State<AppState>,
    caller: Caller,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = match caller.ip.map(|ip| app.guard.check_admin(ip)) {
        Some(Err(wait)) => {
            app.node.metrics.limit(crate::metrics::Limit::AdminRate);
            let mut refused = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many admin requests from this address, try again shortly",
            );
            refused
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
            refused
        }
        _ => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    response
}

/// Header a client sets to be recorded as the console (`X-Admin-Client: console`) rather than
/// the API.
pub const CLIENT_HEADER: &str = "x-admin-client";

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": text.into() }))).into_response()
}

/// Checks the bearer token; the status and text to answer when it is wrong or the API is off.
fn authorize(app: &AppState, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let Some(expected) = app.config.admin_token.as_deref() else {
        return Err((
            StatusCode::NOT_FOUND,
            "the admin API is off: start the server with --admin-token",
        ));
    };
    // A missing or empty header is refused before any compare: "" must never match.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or((
            StatusCode::UNAUTHORIZED,
            "missing admin token: send Authorization: Bearer <token>",
        ))?;
    if !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "invalid admin token"))
    }
}

/// Who made an admin request: the address (as the guard sees it, behind a trusted proxy too)
/// and whether it came from the console.
pub struct Caller {
    ip: Option<std::net::IpAddr>,
    address: String,
    via: &'static str,
}

impl Caller {
    /// The audit entry of `action` on `target` by this caller, with the engine's `result`.
    fn entry(
        &self,
        action: AuditAction,
        target: &str,
        reason: Option<String>,
        result: &Result<(), EngineError>,
    ) -> AuditEntry {
        AuditEntry {
            id: protocol::MessageId::new(0, 0),
            ts: now_ms(),
            action,
            target: target.to_owned(),
            reason: reason.filter(|r| !r.is_empty()),
            seconds: None,
            result: match result {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.to_string(),
            },
            address: self.address.clone(),
            via: self.via.to_owned(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let ip = app.guard.client_ip(&parts.headers, peer);
        let address = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let console = parts
            .headers
            .get(CLIENT_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"console"));
        Ok(Self {
            ip,
            address,
            via: if console { "console" } else { "api" },
        })
    }
}
