//! A player keeps their guest identity across the upgrade to per-server credential files: the
//! single `<data dir>/<app>/guest.json` of older versions is read once and copied.
//!
//! One test in its own binary: it points the platform data directory (`XDG_DATA_HOME`) at a
//! temporary directory for the whole process.

mod common;

use bevy_chat_plugin::*;
use common::*;

#[test]
fn the_guest_saved_by_an_older_version_is_kept() {
    let data = tempfile::tempdir().unwrap();
    // SAFETY: the only test of this binary sets it before any thread reads the environment.
    unsafe { std::env::set_var("XDG_DATA_HOME", data.path()) };
    let server = TestServer::start();
    let old = server.login_as_guest();
    let legacy = directories::ProjectDirs::from("", "", "legacy_game")
        .expect("a data directory")
        .data_dir()
        .join("guest.json");
    write_credentials(&legacy, &old.user_id, &old.guest_secret);
    let legacy_bytes = std::fs::read(&legacy).unwrap();

    let plugin = ChatPlugin::new(server.url())
        .with_app_name("legacy_game")
        .with_reconnect(fast_reconnect());
    let new_file = plugin.credentials_path().expect("a credentials file");
    assert!(new_file.starts_with(data.path()), "{new_file:?}");
    assert!(!new_file.exists());
    let mut app = app_with(plugin);
    let id = wait_connected(&mut app);
    assert_eq!(id, old.user_id, "the same player as before the upgrade");
    assert_eq!(
        saved_user_id(&new_file).as_deref(),
        Some(old.user_id.as_str())
    );
    assert_eq!(
        std::fs::read(&legacy).unwrap(),
        legacy_bytes,
        "the old file is left alone"
    );
    drop(app);

    // A server that does not know the old guest: a new one, saved in its own file only.
    let other = TestServer::start();
    let plugin = ChatPlugin::new(other.url())
        .with_app_name("legacy_game")
        .with_reconnect(fast_reconnect());
    let other_file = plugin.credentials_path().unwrap();
    let mut app = app_with(plugin);
    let other_id = wait_connected(&mut app);
    assert_ne!(other_id, old.user_id);
    assert_eq!(saved_user_id(&other_file), Some(other_id));
    assert_eq!(
        saved_user_id(&new_file).as_deref(),
        Some(old.user_id.as_str())
    );
    assert_eq!(std::fs::read(&legacy).unwrap(), legacy_bytes);
}
