//! The built-in identity's HTTP endpoints, byte-compatible with the seed's Custom Identity
//! Component: `/login-as-guest`, `/refresh-access-token` and `/.well-known/jwks.json`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::{LoginResponse, RefreshResponse};

use super::guests::{GuestStore, check_guest, create_guest};
use super::tokens::{SCOPE_GUEST, TokenError, TokenPair, TokenService};

const COULD_NOT_VALIDATE_USER: &str = "Error: Could not validate user";
const NO_GUEST_SECRET: &str = "Error: No guest_secret in query string";
const NO_REFRESH_TOKEN: &str = "Error: No refresh token provided";
const BAD_REFRESH_TOKEN: &str = "Error: Failed to validate refresh token";
const INTERNAL: &str = "Error: Internal server error";

#[derive(Clone)]
struct LoginState {
    tokens: Arc<TokenService>,
    guests: Arc<dyn GuestStore>,
}

/// The identity routes: the JWKS always, login and refresh when `guests` is given.
pub(crate) fn router(tokens: Arc<TokenService>, guests: Option<Arc<dyn GuestStore>>) -> Router {
    // The keys never change while running: serialise the document once.
    let jwks = serde_json::to_string(&tokens.keys().jwks()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the JWKS");
        r#"{"keys":[]}"#.into()
    });
    let jwks = axum::body::Bytes::from(jwks);
    let router = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let body = jwks.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    match guests {
        None => router,
        Some(guests) => router.merge(
            Router::new()
                .route("/login-as-guest", get(login_as_guest))
                .route("/refresh-access-token", get(refresh_access_token))
                .with_state(LoginState { tokens, guests }),
        ),
    }
}

/// The first value of `name` in a query string.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

fn internal(detail: impl std::fmt::Display) -> Response {
    tracing::error!(%detail, "identity request failed");
    text(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
}

/// Token responses must not be cached by intermediaries (RFC 6749 §5.1).
fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Signs tokens off the async threads, at most one signature per core at a time (see
/// [`TokenService::signing_slot`]): a login storm then cannot take the CPU from the chat.
async fn sign(
    tokens: &Arc<TokenService>,
    work: impl FnOnce(&TokenService) -> Result<TokenPair, TokenError> + Send + 'static,
) -> Result<TokenPair, TokenError> {
    let slot = tokens.signing_slot().await?;
    let tokens = tokens.clone();
    tokio::task::spawn_blocking(move || {
        let signed = work(&tokens);
        drop(slot);
        signed
    })
    .await
    .unwrap_or_else(|e| Err(TokenError::Internal(format!("signing task failed: {e}"))))
}

/// `GET /login-as-guest[?user_id=U&guest_secret=S]`
async fn login_as_guest(State(state): State<LoginState>, RawQuery(query): RawQuery) -> Response {
    let query = query.as_deref();
    let (user_id, secret) = match param(query, "user_id") {
        None => match create_guest(state.guests.as_ref()).await {
            Ok(created) => created,
            Err(e) => return internal(e),
        },
        Some(user_id) => {
            let Some(secret) = param(query, "guest_secret").filter(|s| !s.is_empty()) else {
                return text(StatusCode::BAD_REQUEST, NO_GUEST_SECRET);
            };
            match check_guest(state.guests.as_ref(), &user_id, &secret).await {
                Ok(true) => (user_id, secret),
                Ok(false) => return text(StatusCode::UNAUTHORIZED, COULD_NOT_VALIDATE_USER),
                Err(e) => return internal(e),
            }
        }
    };
    let subject = user_id.clone();
    match sign(&state.tokens, move |t| t.login(&subject, SCOPE_GUEST)).await {
        Ok(pair) => no_store(axum::Json(LoginResponse {
            user_id,
            guest_secret: secret,
            auth_token: pair.auth_token,
            refresh_token: pair.refresh_token,
            auth_token_expires_in: pair.auth_token_expires_in,
            refresh_token_expires_in: pair.refresh_token_expires_in,
        })),
        Err(e) => internal(e),
    }
}

/// `GET /refresh-access-token?refresh_token=R`
async fn refresh_access_token(
    State(state): State<LoginState>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(token) = param(query.as_deref(), "refresh_token").filter(|t| !t.is_empty()) else {
        return text(StatusCode::UNAUTHORIZED, NO_REFRESH_TOKEN);
    };
    match sign(&state.tokens, move |t| t.refresh(&token)).await {
        Ok(pair) => no_store(axum::Json(RefreshResponse {
            user_id: pair.user_id,
            auth_token: pair.auth_token,
            refresh_token: pair.refresh_token,
            auth_token_expires_in: pair.auth_token_expires_in,
            refresh_token_expires_in: pair.refresh_token_expires_in,
        })),
        Err(TokenError::Invalid(detail)) => {
            tracing::info!(%detail, "refused a refresh token");
            text(StatusCode::UNAUTHORIZED, BAD_REFRESH_TOKEN)
        }
        Err(e) => internal(e),
    }
}
