//! Players for the console: find one by user id or name (`GET /admin/players?q=`), and one
//! player's name, mute, ban, block list and connections (`GET /admin/players/{user_id}`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{authorize, error};
use crate::app::AppState;
use crate::engine::{EngineError, now_ms};

/// Players found at most.
const FOUND: usize = 50;

/// The query of `GET /admin/players`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindQuery {
    /// A user id, or part of a name (any case).
    pub q: String,
}

/// `{"players": [{"user_id", "name"}], "name_search": bool}`: the user with that id (if the
/// engine knows a name, mute or ban of it) and users whose name holds `q`. `name_search` is
/// false where the engine cannot search names (Redis): then only a user id finds a player.
pub async fn find(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FindQuery>, QueryRejection>,
) -> Response {
    if let Err((status, text)) = authorize(&app, &headers) {
        return error(status, text);
    }
    let query = match query {
        Ok(Query(query)) => query.q.trim().to_owned(),
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if query.is_empty() || query.len() > 256 {
        return error(StatusCode::BAD_REQUEST, "q: a user id or part of a name");
    }
    match found(&app, &query).await {
        Ok((players, name_search)) => Json(serde_json::json!({
            "players": players
                .into_iter()
                .map(|(user_id, name)| serde_json::json!({ "user_id": user_id, "name": name }))
                .collect::<Vec<_>>(),
            "name_search": name_search,
        }))
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn found(
    app: &AppState,
    query: &str,
) -> Result<(Vec<(String, Option<String>)>, bool), EngineError> {
    let engine = &app.node.engine;
    let mut players = Vec::new();
    let name = engine.users.name(query).await?;
    let standing = engine.moderation.standing(query).await?;
    let here = app.node.hub.user_here(query).0 > 0;
    if name.is_some() || standing != Default::default() || here {
        players.push((query.to_owned(), name));
    }
    let by_name = engine.users.find_by_name(query, FOUND).await?;
    let name_search = by_name.is_some();
    for (user, name) in by_name.unwrap_or_default() {
        if user != query {
            players.push((user, Some(name)));
        }
    }
    Ok((players, name_search))
}

/// `GET /admin/players/{user_id}`: `{"user_id", "name", "names": [{"name", "ts"}], "muted":
/// {"until_ms", "reason"} | null, "banned": ... | null, "blocks": [user ids], "online_nodes":
/// [...], "channels": [...], "connections_here", "channels_here": [...]}` (its last names, newest
/// first; mutes and bans in force now; the nodes it is connected to and the channels it is in,
/// across the deployment; connections and channels on the node answering).
pub async fn show(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    if let Err((status, text)) = authorize(&app, &headers) {
        return error(status, text);
    }
    if user.trim().is_empty() || user.len() > 256 {
        return error(StatusCode::BAD_REQUEST, "a user id, please");
    }
    let engine = &app.node.engine;
    let read = async {
        Ok::<_, EngineError>((
            engine.users.name(&user).await?,
            engine.users.name_history(&user).await?,
            engine.moderation.standing(&user).await?,
            engine.moderation.blocked(&user).await?,
            engine.presence.online_nodes(&user).await?,
            engine.presence.channels_of(&user).await?,
        ))
    };
    let (name, names, standing, blocks, nodes, channels_in) = match read.await {
        Ok(read) => read,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let now = now_ms();
    let in_force = |sanction: Option<(u64, String)>| {
        sanction
            .filter(|(until, _)| *until > now)
            .map(|(until, reason)| {
                let until = (until != u64::MAX).then_some(until);
                serde_json::json!({ "until_ms": until, "reason": reason })
            })
    };
    let (connections, channels) = app.node.hub.user_here(&user);
    Json(serde_json::json!({
        "user_id": user,
        "name": name,
        "names": names
            .into_iter()
            .map(|(name, ts)| serde_json::json!({ "name": name, "ts": ts }))
            .collect::<Vec<_>>(),
        "muted": in_force(standing.muted),
        "banned": in_force(standing.banned),
        "blocks": blocks.users,
        "online_nodes": nodes,
        "channels": channels_in,
        "connections_here": connections,
        "channels_here": channels,
    }))
    .into_response()
}
