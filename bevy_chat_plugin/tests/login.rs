//! Logging in: saved guest credentials, bring-your-own tokens (valid and not).

mod common;

use bevy_chat_plugin::*;
use common::*;

#[test]
fn saved_guest_credentials_keep_the_same_user() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/dir/guest.json");

    let mut first = guest_app(&server.url(), &file);
    let id = wait_connected(&mut first);
    let saved = load_credentials(&file).expect("credentials saved on first login");
    assert_eq!(saved.user_id, id);
    drop(first);

    let mut second = guest_app(&server.url(), &file);
    assert_eq!(wait_connected(&mut second), id, "same guest again");
    assert_eq!(
        load_credentials(&file),
        Some(saved.clone()),
        "file unchanged"
    );
    drop(second);

    // Credentials the server does not know (e.g. its guest file was reset) are replaced.
    save_credentials(
        &file,
        &GuestCredentials {
            user_id: "00000000-0000-0000-0000-000000000000".into(),
            guest_secret: "not-the-secret".into(),
        },
    )
    .unwrap();
    let mut third = guest_app(&server.url(), &file);
    let new_id = wait_connected(&mut third);
    assert_ne!(new_id, id);
    assert_eq!(load_credentials(&file).unwrap().user_id, new_id);
    assert!(
        rec(third.world()).errors.is_empty(),
        "{:?}",
        rec(third.world())
    );
}

#[test]
fn a_valid_token_of_our_own_connects() {
    let server = TestServer::start();
    let login = server.login_as_guest();
    let mut app = app_with(
        ChatPlugin::new(server.url())
            .with_login(ChatLogin::Token(login.auth_token.clone()))
            .with_reconnect(fast_reconnect()),
    );
    assert_eq!(app.world().resource::<ChatAuth>().credentials_file, None);
    update_until(&mut app, TIMEOUT, "the token to connect", |w| {
        state(w) == ChatConnectionState::Connected && !rec(w).connected.is_empty()
    });
    // The user id is read from the token's subject.
    assert_eq!(
        app.world().resource::<ChatAuth>().user_id.as_deref(),
        Some(login.user_id.as_str())
    );
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
