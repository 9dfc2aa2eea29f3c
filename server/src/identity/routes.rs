//! The built-in identity's HTTP endpoints, byte-compatible with the seed's Custom Identity
//! Component: `/login-as-guest`, `/refresh-access-token` and `/.well-known/jwks.json`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::{ErrorCode, ErrorReply, LoginResponse, RefreshResponse};

use super::guests::{GuestStore, GuestStoreError, check_guest, create_guest};
use super::tokens::{SCOPE_GUEST, TokenError, TokenPair, TokenService};

const COULD_NOT_VALIDATE_USER: &str = "Error: Could not validate user";
const NO_GUEST_SECRET: &str = "Error: No guest_secret in query string";
const NO_REFRESH_TOKEN: &str = "Error: No refresh token provided";
const BAD_REFRESH_TOKEN: &str = "Error: Failed to validate refresh token";
const INTERNAL: &str = "Error: Internal server error";
/// The text of the WebSocket side's `unavailable` error, so that clients see one wording.
const UNAVAILABLE: &str = "the chat backend is unavailable, try again shortly";
/// `Retry-After` of a 503 while the guest store is unreachable: about the engine's longest
/// reconnect backoff.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// Why a login or refresh failed on the server's side.
#[derive(Debug, thiserror::Error)]
enum ServerFailure {
    /// The guest store cannot be reached now (Redis down): 503, `Retry-After`, and the JSON
    /// error `unavailable`, as on the WebSocket.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: 500 with the seed's text.
    #[error("{0}")]
    Internal(String),
}

impl From<GuestStoreError> for ServerFailure {
    fn from(error: GuestStoreError) -> Self {
        match error {
            GuestStoreError::Unavailable(detail) => ServerFailure::Unavailable(detail),
            GuestStoreError::Failed(detail) => ServerFailure::Internal(detail),
        }
    }
}

impl From<TokenError> for ServerFailure {
    fn from(error: TokenError) -> Self {
        ServerFailure::Internal(error.to_string())
    }
}

impl IntoResponse for ServerFailure {
    fn into_response(self) -> Response {
        match self {
            ServerFailure::Unavailable(detail) => {
                tracing::warn!(%detail, "identity request refused: storage unavailable");
                let body = ErrorReply {
                    error: UNAVAILABLE.into(),
                    code: ErrorCode::Unavailable,
                    reference: None,
                }
                .to_json();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [
                        (header::CONTENT_TYPE, "application/json".to_owned()),
                        (
                            header::RETRY_AFTER,
                            UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
                        ),
                    ],
                    body,
                )
                    .into_response()
            }
            ServerFailure::Internal(detail) => {
                tracing::error!(%detail, "identity request failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
            }
        }
    }
}

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
            Err(e) => return ServerFailure::from(e).into_response(),
        },
        Some(user_id) => {
            let Some(secret) = param(query, "guest_secret").filter(|s| !s.is_empty()) else {
                return text(StatusCode::BAD_REQUEST, NO_GUEST_SECRET);
            };
            match check_guest(state.guests.as_ref(), &user_id, &secret).await {
                Ok(true) => (user_id, secret),
                Ok(false) => return text(StatusCode::UNAUTHORIZED, COULD_NOT_VALIDATE_USER),
                Err(e) => return ServerFailure::from(e).into_response(),
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
        Err(e) => ServerFailure::from(e).into_response(),
    }
}

/// `GET /refresh-access-token?refresh_token=R` (needs no storage: it keeps working while Redis
/// is down)
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
        Err(e) => ServerFailure::from(e).into_response(),
    }
}
