//! `GET /admin/audit?before=ID&limit=N`: the audit log, newest first, a page at a time.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::MessageId;
use serde::Deserialize;

use super::{authorize, error};
use crate::app::AppState;
use crate::engine::audit::AUDIT_PAGE_MAX;

/// Entries in a page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 50;

/// The query of `GET /admin/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this id (the `next` of the previous page); the newest when absent.
    pub before: Option<String>,
    /// Entries in the page (at most [`AUDIT_PAGE_MAX`]).
    pub limit: Option<usize>,
}

/// `{"entries": [...], "next": "ID"}` (`next` absent on the last page).
pub async fn page(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err((status, text)) = authorize(&app, &headers) {
        return error(status, text);
    }
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let before = match query.before.as_deref().map(str::parse::<MessageId>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("before: {e}")),
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > AUDIT_PAGE_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit: from 1 to {AUDIT_PAGE_MAX}"),
        );
    }
    // One more than asked, to know whether there is a next page.
    match app.node.engine.audit.page(before, limit + 1).await {
        Ok(mut entries) => {
            let more = entries.len() > limit;
            entries.truncate(limit);
            let mut body = serde_json::json!({ "entries": entries });
            if more && let Some(last) = entries.last() {
                body["next"] = serde_json::json!(last.id);
            }
            Json(body).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
