//! The operator console: one page, its script and its styles, built into the binary (no build
//! step, nothing fetched from elsewhere), served under `/admin/` while an admin token is set.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::app::AppState;

const PAGE: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLES: &str = include_str!("../../console/console.css");

/// `GET /admin`: to the page.
pub async fn root() -> Redirect {
    Redirect::permanent("/admin/")
}

/// `GET /admin/`: the page.
pub async fn page(State(app): State<AppState>) -> Response {
    asset(&app, "text/html; charset=utf-8", PAGE)
}

/// `GET /admin/console.js`.
pub async fn script(State(app): State<AppState>) -> Response {
    asset(&app, "text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /admin/console.css`.
pub async fn styles(State(app): State<AppState>) -> Response {
    asset(&app, "text/css; charset=utf-8", STYLES)
}

/// An asset, or 404 while the admin API is off (no token: no console either).
fn asset(app: &AppState, content_type: &'static str, body: &'static str) -> Response {
    if app.config.admin_token.is_none() {
        return (
            StatusCode::NOT_FOUND,
            "the admin console is off: start the server with --admin-token",
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
