//! The operator console in a real browser (headless Chromium through WebDriver) against a real
//! server: signing in, the live overview, and acting on a player, seen from the player's side
//! and in the audit log.

mod common;

use common::browser::Browser;
use common::*;
use fantoccini::Locator;
use serde_json::json;

/// A server with the admin API (and so the console) on, and a browser at its console.
async fn console(test: &str) -> Option<(TestServer, Browser)> {
    let server = TestServer::start_on(&TestEngine::Sqlite, |c| {
        c.admin_token = Some(ADMIN_TOKEN.into());
    })
    .await;
    let browser = Browser::start(test).await?;
    browser
        .client
        .goto(&format!("{}/admin/", server.http()))
        .await
        .unwrap();
    Some((server, browser))
}

/// Signs in with the right token and waits for the overview.
async fn sign_in(browser: &Browser) {
    browser.fill("token", ADMIN_TOKEN).await;
    browser.click("sign-in-button").await;
    browser.until_text("stream-state", |t| t == "Live").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_takes_the_right_token_only_and_keeps_it_out_of_the_url() {
    let Some((server, browser)) = console("console::signing_in").await else {
        return;
    };
    assert!(!browser.shown("nav").await);
    browser.fill("token", "not-the-token").await;
    browser.click("sign-in-button").await;
    let refused = browser.until_text("sign-in-error", |t| !t.is_empty()).await;
    assert_eq!(refused, "Not signed in: invalid admin token.");
    assert!(!browser.shown("nav").await);
    sign_in(&browser).await;
    assert!(browser.shown("nav").await);
    assert!(!browser.shown("sign-in").await);
    let url = browser.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(ADMIN_TOKEN), "{url}");
    // Kept for this tab: a reload stays signed in, signing out forgets it.
    browser.client.refresh().await.unwrap();
    browser.until_text("stream-state", |t| t == "Live").await;
    browser.click("sign-out").await;
    assert!(browser.shown("sign-in").await);
    let kept = browser
        .client
        .execute(
            "return sessionStorage.getItem('bevy-chat-admin-token')",
            vec![],
        )
        .await
        .unwrap();
    assert!(kept.is_null(), "{kept}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_a_new_connection_live() {
    let Some((server, browser)) = console("console::overview").await else {
        return;
    };
    sign_in(&browser).await;
    browser.until_text("total-connections", |t| t == "0").await;
    assert_eq!(browser.text("total-nodes").await, "1");
    let player = server.guest().await;
    browser.until_text("total-connections", |t| t == "1").await;
    let node_row = browser
        .client
        .find(Locator::Css("#nodes tbody tr"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(node_row.starts_with("local"), "{node_row}");
    assert!(node_row.contains(env!("CARGO_PKG_VERSION")), "{node_row}");
    drop(player);
    browser.until_text("total-connections", |t| t == "0").await;
}

/// Applies `action` to `user` from the players page (with a reason), confirming it.
async fn act(browser: &Browser, action: &str, user: &str, reason: &str) {
    browser.click("nav-players").await;
    browser.fill("action-user", user).await;
    browser
        .client
        .find(Locator::Css(&format!(
            "#action-kind option[value='{action}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.fill("action-reason", reason).await;
    browser.click("action-button").await;
    let question = browser.until_text("confirm-text", |t| !t.is_empty()).await;
    assert!(
        question.starts_with(&format!("{action} {user}")),
        "{question}"
    );
    browser.click("confirm-ok").await;
    let told = browser.until_text("toast", |t| !t.is_empty()).await;
    assert_eq!(told, format!("Done: {action} {user}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_from_the_console_refuses_the_players_next_message() {
    let Some((server, browser)) = console("console::mute").await else {
        return;
    };
    sign_in(&browser).await;
    let mut player = server.named("Mallory").await;
    player.join("lobby").await;
    act(&browser, "mute", &player.user_id, "spam").await;
    player
        .send_request(
            "message",
            json!({ "channel": "lobby", "message": "buy gold" }),
        )
        .await;
    let refused = player.recv_type_or_error().await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("You are muted: spam"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_from_the_console_closes_the_player_and_is_in_the_audit_log() {
    let Some((server, browser)) = console("console::ban").await else {
        return;
    };
    sign_in(&browser).await;
    let mut player = server.named("Trudy").await;
    act(&browser, "ban", &player.user_id, "cheating").await;
    assert_eq!(player.expect_close().await.map(|c| c.0), Some(1008));
    browser.click("nav-audit").await;
    let row = browser
        .until_text("audit-table", |t| t.contains("ban"))
        .await;
    let newest = row.lines().nth(1).unwrap_or_default().to_owned();
    for part in [
        "ban",
        player.user_id.as_str(),
        "cheating",
        "ok",
        "console 127.0.0.1",
    ] {
        assert!(newest.contains(part), "{part} not in {newest:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_opened_in_the_console_shows_its_history_and_new_messages_live() {
    let Some((server, browser)) = console("console::channel").await else {
        return;
    };
    sign_in(&browser).await;
    let mut player = server.named("Link").await;
    player.join("lobby").await;
    common::cluster::say(&mut player, "lobby", "before the console looked").await;
    browser.click("nav-channels").await;
    // Listed from the node's reports (once a second): search until it shows.
    let open = Locator::Css("#channels-table button[data-channel='lobby']");
    let deadline = std::time::Instant::now() + common::browser::PAGE_WAIT;
    while browser.client.find(open).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "lobby never listed");
        browser.click("channel-search-button").await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    browser
        .client
        .find(open)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.until_text("channel-state", |t| t == "Live").await;
    let shown = browser.text("channel-messages").await;
    assert!(shown.contains("Link before the console looked"), "{shown}");
    assert!(
        browser
            .text("channel-members")
            .await
            .contains(&player.user_id)
    );
    common::cluster::say(&mut player, "lobby", "hello, console").await;
    browser
        .until_text("channel-messages", |t| t.contains("Link hello, console"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_found_by_name_shows_their_standing() {
    let Some((server, browser)) = console("console::player").await else {
        return;
    };
    sign_in(&browser).await;
    let mut player = server.named("Ganondorf").await;
    player.join("castle").await;
    act(&browser, "mute", &player.user_id, "shouting").await;
    browser.fill("player-query", "ganon").await;
    browser.click("player-search-button").await;
    browser.until_text("player-note", |t| t == "1 found").await;
    browser
        .client
        .find(Locator::Css("#player-results button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let facts = browser
        .until_text("player-facts", |t| t.contains("Ganondorf"))
        .await;
    for part in [
        "shouting (until lifted)",
        "castle",
        "local",
        &player.user_id,
    ] {
        assert!(facts.contains(part), "{part} not in {facts:?}");
    }
}
