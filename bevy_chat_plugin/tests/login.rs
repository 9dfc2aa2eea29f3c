//! Logging in: saved guest credentials, bring-your-own tokens (valid and not).

mod common;

use std::path::Path;

use bevy_chat_plugin::*;
use common::*;

#[test]
fn saved_guest_credentials_keep_the_same_user() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/dir/guest.json");

    let mut first = guest_app(&server.url(), &file);
    let id = wait_connected(&mut first);
    let saved = std::fs::read(&file).expect("credentials saved on first login");
    assert_eq!(saved_user_id(&file).as_deref(), Some(id.as_str()));
    drop(first);

    let mut second = guest_app(&server.url(), &file);
    assert_eq!(wait_connected(&mut second), id, "same guest again");
    assert_eq!(std::fs::read(&file).unwrap(), saved, "file unchanged");
    drop(second);

    // Credentials the server does not know (e.g. its guest file was reset) are replaced.
    write_credentials(&file, UNKNOWN_GUEST, "not-the-secret");
    let mut third = guest_app(&server.url(), &file);
    let new_id = wait_connected(&mut third);
    assert_ne!(new_id, id);
    assert_eq!(saved_user_id(&file), Some(new_id));
    assert!(
        rec(third.world()).errors.is_empty(),
        "{:?}",
        rec(third.world())
    );
}

/// A guest id no server knows.
const UNKNOWN_GUEST: &str = "00000000-0000-0000-0000-000000000000";

/// Guest login against `url`, credentials in `dir` (one file per server).
fn keyed_plugin(url: &str, dir: &Path) -> ChatPlugin {
    ChatPlugin::new(url)
        .with_credentials_dir(dir)
        .with_reconnect(fast_reconnect())
}

#[test]
fn each_server_has_its_own_saved_guest_and_a_refusal_touches_only_its_own() {
    let one = TestServer::start();
    let two = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file_one = keyed_plugin(&one.url(), dir.path())
        .credentials_path()
        .unwrap();
    let file_two = keyed_plugin(&two.url(), dir.path())
        .credentials_path()
        .unwrap();
    assert_ne!(file_one, file_two);

    let mut a = app_with(keyed_plugin(&one.url(), dir.path()));
    let mut b = app_with(keyed_plugin(&two.url(), dir.path()));
    let id_one = wait_connected(&mut a);
    let id_two = wait_connected(&mut b);
    assert_ne!(id_one, id_two);
    drop((a, b));
    assert_eq!(saved_user_id(&file_one), Some(id_one.clone()));
    assert_eq!(saved_user_id(&file_two), Some(id_two.clone()));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    // Server one no longer knows its guest: the 401 makes a new guest there and replaces only
    // server one's file.
    write_credentials(&file_one, UNKNOWN_GUEST, "not-the-secret");
    let saved_two = std::fs::read(&file_two).unwrap();
    let mut c = app_with(keyed_plugin(&one.url(), dir.path()));
    let new_one = wait_connected(&mut c);
    assert_ne!(new_one, id_one);
    assert_eq!(saved_user_id(&file_one), Some(new_one));
    assert_eq!(std::fs::read(&file_two).unwrap(), saved_two);
    drop(c);

    // And server two's player is still the same user there.
    let mut d = app_with(keyed_plugin(&two.url(), dir.path()));
    assert_eq!(wait_connected(&mut d), id_two);
}

/// `http://` on a loopback port nothing listens on.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn login_errors(world: &bevy::prelude::World) -> usize {
    rec(world)
        .errors
        .iter()
        .filter(|e| e.code == ChatErrorCode::Login)
        .count()
}

#[test]
fn failures_are_logged_once_per_kind_unless_turned_off() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().unwrap();

    // No server: every attempt fails, one warning says so.
    let url = dead_url();
    let mut app = app_with(keyed_plugin(&url, dir.path()));
    update_until(&mut app, TIMEOUT, "three failed logins", |w| {
        login_errors(w) >= 3
    });
    let lines = logs.lines_with(&url);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("cannot log in"), "{lines:#?}");
    drop(app);

    // The game turned it off.
    let url = dead_url();
    let mut app = app_with(keyed_plugin(&url, dir.path()).with_log_failures(false));
    update_until(&mut app, TIMEOUT, "three failed logins", |w| {
        login_errors(w) >= 3
    });
    assert_eq!(logs.lines_with(&url), Vec::<String>::new());
}

#[test]
fn a_valid_token_of_our_own_connects() {
    let server = TestServer::start();
    let login = server.login_as_guest();
    let plugin = ChatPlugin::new(server.url())
        .with_login(ChatLogin::Token(login.auth_token.clone()))
        .with_reconnect(fast_reconnect());
    assert_eq!(plugin.credentials_path(), None);
    let mut app = app_with(plugin);
    update_until(&mut app, TIMEOUT, "the token to connect", |w| {
        state(w) == ChatConnectionState::Connected && !rec(w).connected.is_empty()
    });
    // The user id is read from the token's subject.
    assert_eq!(user_id(app.world()), Some(login.user_id.clone()));
    assert_eq!(rec(app.world()).connected[0].user_id, login.user_id);
    set_name(&mut app, "Tok");
    join(&mut app, "lobby");
    send(&mut app, "lobby", "I brought my own token");
    update_until(&mut app, TIMEOUT, "the own message", |w| {
        !rec(w).messages.is_empty()
    });
    assert_eq!(rec(app.world()).messages[0].user_id, login.user_id);
    assert!(rec(app.world()).errors.is_empty(), "{:?}", rec(app.world()));
}

#[test]
fn an_invalid_token_is_an_auth_error_and_stops_until_a_new_token() {
    let server = TestServer::start();
    let mut app = app_with(
        ChatPlugin::new(server.url())
            .with_login(ChatLogin::Token("garbage".into()))
            .with_reconnect(fast_reconnect()),
    );
    update_until(&mut app, TIMEOUT, "the auth error", |w| {
        !rec(w).errors.is_empty()
    });
    let error = rec(app.world()).errors[0].clone();
    assert_eq!(error.code, ChatErrorCode::Auth, "{error:?}");
    assert_eq!(error.request, ChatRequest::Connect);
    assert!(!error.message.is_empty());
    update_until(
        &mut app,
        TIMEOUT,
        "the chat to settle as disconnected",
        |w| state(w) == ChatConnectionState::Disconnected,
    );
    assert!(rec(app.world()).connected.is_empty());
    // It gave up: a bounded number of further frames (well over several reconnect delays)
    // brings no new attempt.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(600) {
        app.update();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(state(app.world()), ChatConnectionState::Disconnected);
    assert_eq!(rec(app.world()).errors.len(), 1, "{:?}", rec(app.world()));
    assert!(rec(app.world()).connected.is_empty());

    // Offline requests are refused at once with NotConnected.
    send(&mut app, "lobby", "hello?");
    update_until(&mut app, TIMEOUT, "the not-connected error", |w| {
        rec(w).errors.len() == 2
    });
    let error = rec(app.world()).errors[1].clone();
    assert_eq!(error.code, ChatErrorCode::NotConnected);
    assert_eq!(error.request, ChatRequest::Message);
    assert_eq!(error.target.as_deref(), Some("lobby"));

    // A new token from the game connects.
    let login = server.login_as_guest();
    chat(&mut app, move |chat| chat.set_token(login.auth_token));
    update_until(&mut app, TIMEOUT, "the new token to connect", |w| {
        state(w) == ChatConnectionState::Connected && !rec(w).connected.is_empty()
    });
}

#[test]
fn a_banned_player_is_told_keeps_its_login_and_comes_back_when_unbanned() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut app = guest_app(&server.url(), &dir.path().join("a.json"));
    let user = wait_connected(&mut app);
    server.moderate("ban", &user, "cheating");
    update_until(&mut app, TIMEOUT, "the refusal on reconnect", |w| {
        rec(w).errors.iter().any(|e| {
            e.request == ChatRequest::Connect
                && e.code == ChatErrorCode::Server(protocol::ErrorCode::Forbidden)
        })
    });
    let refusal = rec(app.world())
        .errors
        .iter()
        .find(|e| e.request == ChatRequest::Connect)
        .cloned();
    assert_eq!(refusal.unwrap().message, "You are banned: cheating");
    assert_ne!(state(app.world()), ChatConnectionState::Connected);
    // It keeps trying with back-off, quietly, with the same login (no new guest).
    server.moderate("unban", &user, "");
    update_until(&mut app, TIMEOUT, "the reconnect after the unban", |w| {
        state(w) == ChatConnectionState::Connected && rec(w).connected.len() == 2
    });
    assert_eq!(user_id(app.world()).as_deref(), Some(user.as_str()));
    let connect_errors = rec(app.world())
        .errors
        .iter()
        .filter(|e| e.request == ChatRequest::Connect)
        .count();
    assert_eq!(connect_errors, 1, "{:?}", rec(app.world()).errors);
}

#[test]
fn a_player_banned_before_starting_gets_one_clear_error() {
    let server = TestServer::start();
    let login = server.login_as_guest();
    server.moderate("ban", &login.user_id, "");
    let mut app = app_with(
        ChatPlugin::new(server.url())
            .with_login(ChatLogin::Token(login.auth_token))
            .with_reconnect(fast_reconnect()),
    );
    update_until(&mut app, TIMEOUT, "the refusal", |w| {
        !rec(w).errors.is_empty()
    });
    // A bounded number of frames over several reconnect delays: still one error, no connect.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(600) {
        app.update();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let errors = &rec(app.world()).errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].code,
        ChatErrorCode::Server(protocol::ErrorCode::Forbidden)
    );
    assert_eq!(errors[0].message, "You are banned");
    assert!(rec(app.world()).connected.is_empty());
}

#[test]
fn a_server_url_without_a_scheme_turns_chat_off_without_a_panic() {
    for url in ["127.0.0.1:8080", "ws://127.0.0.1:8080", "http://"] {
        let mut app = app_with(ChatPlugin::new(url).with_reconnect(fast_reconnect()));
        // A game system that takes `Chat` runs (before, its parameters failed validation and
        // the app panicked), and its request is answered.
        app.add_systems(
            bevy::prelude::Update,
            |mut chat: Chat, mut once: bevy::prelude::Local<bool>| {
                if !std::mem::replace(&mut *once, true) {
                    chat.join("lobby");
                }
            },
        );
        update_until(&mut app, TIMEOUT, "both errors", |w| {
            rec(w).errors.len() >= 2
        });
        assert_eq!(state(app.world()), ChatConnectionState::Failed);
        let errors = &rec(app.world()).errors;
        assert_eq!(errors[0].request, ChatRequest::Connect, "{errors:?}");
        assert_eq!(errors[0].code, ChatErrorCode::NotStarted);
        assert!(errors[0].message.contains("http://"), "{errors:?}");
        assert_eq!(errors[1].request, ChatRequest::Join);
        assert_eq!(errors[1].target.as_deref(), Some("lobby"));
        assert_eq!(errors[1].code, ChatErrorCode::NotStarted);
        for _ in 0..5 {
            app.update();
        }
        assert_eq!(rec(app.world()).errors.len(), 2, "reported once");
    }
}
