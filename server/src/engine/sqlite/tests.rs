//! The database on its own: every kind of write read back after a reopen, within the caps.

use std::sync::Arc;

use protocol::{ChatMessage, MessageId};

use super::redo::RedoLog;
use super::*;
use crate::engine::EngineError;
use crate::identity::guests::SecretHash;
use crate::moderation::Standing;

fn caps(per_channel: usize) -> HistoryCaps {
    HistoryCaps {
        per_channel,
        oldest_ms: 0,
    }
}

fn message(channel: &str, ms: u64, text: &str) -> Arc<ChatMessage> {
    Arc::new(ChatMessage {
        channel: channel.into(),
        id: MessageId::new(ms, 0),
        ts: ms,
        user_id: "u".into(),
        username: "U".into(),
        message: text.into(),
    })
}

/// A channel of a snapshot, by name.
fn channel<'a>(snapshot: &'a Snapshot, name: &str) -> &'a ChannelSnapshot {
    snapshot
        .channels
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no channel {name} in {snapshot:?}"))
}

fn texts(channel: &ChannelSnapshot) -> Vec<&str> {
    channel
        .messages
        .iter()
        .map(|m| m.message.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_read_back_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/chat.db");
    let database = Database::open(&path, Durability::Full, caps(10)).unwrap();
    assert!(database.snapshot.channels.is_empty());
    let journal = database.journal;
    let writes = [
        Write::Message(message("a", 1, "a1")),
        Write::Message(message("a", 2, "a2")),
        Write::Message(message("a", 3, "a3")),
        Write::Message(message("b", 1, "b1")),
        Write::Message(message("gone", 1, "g1")),
        Write::Trim {
            channel: Arc::from("a"),
            through: MessageId::new(1, 0),
        },
        Write::Forget {
            channel: Arc::from("gone"),
        },
        Write::Name {
            user_id: "u1".into(),
            name: "Ann".into(),
            at_ms: 1,
        },
        Write::Name {
            user_id: "u1".into(),
            name: "Anna".into(),
            at_ms: 2,
        },
        Write::Standing {
            user_id: "u1".into(),
            standing: Standing {
                muted: Some((u64::MAX, "spam".into())),
                banned: None,
            },
        },
        Write::Standing {
            user_id: "u2".into(),
            standing: Standing {
                muted: None,
                banned: Some((5, "".into())),
            },
        },
        Write::Standing {
            user_id: "u2".into(),
            standing: Standing::default(),
        },
        Write::Blocks {
            user_id: "u1".into(),
            users: vec!["x".into(), "y".into()],
            version: 7,
        },
        Write::Guest {
            user_id: "g".into(),
            secret: SecretHash::of("secret"),
        },
        Write::Audit(Box::new(audit_entry(MessageId::new(9, 0), "u2"))),
        Write::Audit(Box::new(audit_entry(MessageId::new(9, 1), "u1"))),
    ];
    let mut pending = Vec::new();
    for write in writes {
        pending.push(journal.write(write).unwrap());
    }
    for pending in pending {
        pending.committed().await.unwrap();
    }
    assert!(journal.healthy());
    // Open elsewhere while in use: refused.
    let error = Database::open(&path, Durability::Normal, caps(10))
        .err()
        .expect("a second opener is refused");
    assert!(error.contains("another chat-server is using it"), "{error}");
    drop(journal);

    let database = Database::open(&path, Durability::Normal, caps(10)).unwrap();
    let held = database.snapshot;
    let mut channels = held.channels;
    channels.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(channels.len(), 2, "{channels:?}");
    assert_eq!(texts(&channels[0]), ["a2", "a3"]);
    assert_eq!(channels[0].trimmed_through, Some(MessageId::new(1, 0)));
    assert_eq!(texts(&channels[1]), ["b1"]);
    assert_eq!(channels[1].trimmed_through, None);
    assert_eq!(held.names, [("u1".to_owned(), "Anna".to_owned())]);
    assert_eq!(
        held.name_history["u1"],
        [("Anna".to_owned(), 2), ("Ann".to_owned(), 1)]
    );
    assert_eq!(
        held.standings,
        [(
            "u1".to_owned(),
            Standing {
                muted: Some((u64::MAX, "spam".into())),
                banned: None
            }
        )]
    );
    assert_eq!(held.blocks["u1"], ["x", "y"]);
    assert_eq!(held.blocks_version, 7);
    assert!(held.guests["g"].matches("secret"));
    assert_eq!(
        held.audit,
        [
            audit_entry(MessageId::new(9, 0), "u2"),
            audit_entry(MessageId::new(9, 1), "u1")
        ]
    );
    drop(database.journal);

    // Read back within smaller caps: the newest per channel, and what the cap left behind.
    let database = Database::open(&path, Durability::Normal, caps(1)).unwrap();
    let a = channel(&database.snapshot, "a");
    assert_eq!(texts(a), ["a3"]);
    assert_eq!(a.trimmed_through, Some(MessageId::new(2, 0)));
    drop(database);
    // And by age.
    let old = HistoryCaps {
        per_channel: 10,
        oldest_ms: 3,
    };
    let database = Database::open(&path, Durability::Normal, old).unwrap();
    let a = channel(&database.snapshot, "a");
    assert_eq!(texts(a), ["a3"]);
    let b = channel(&database.snapshot, "b");
    assert!(b.messages.is_empty());
    assert_eq!(b.trimmed_through, Some(MessageId::new(1, 0)));
}

#[test]
fn a_file_of_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", schema::VERSION + 1)
        .unwrap();
    drop(conn);
    let error = Database::open(&path, Durability::Normal, caps(10))
        .err()
        .expect("refused");
    assert!(error.contains("newer chat-server"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_each_hear_back_once_committed_in_either_mode() {
    for durability in [Durability::Normal, Durability::Full] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let journal = Database::open(&path, durability, caps(10)).unwrap().journal;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    journal
                        .write(Write::Name {
                            user_id: format!("u{i}"),
                            name: format!("n{i}"),
                            at_ms: 0,
                        })
                        .unwrap()
                        .committed()
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // A write nobody waits for is committed by a flush.
        journal.write_unwaited(Write::Name {
            user_id: "late".into(),
            name: "Late".into(),
            at_ms: 0,
        });
        journal.flush().await;
        // Committed: in the redo log, or already folded into the file (read in that order, so
        // that a fold in between cannot hide any).
        let log = redo::segment_paths(&path).map(|p| std::fs::File::open(p).unwrap());
        let logged = redo::read(&[&log[0], &log[1], &log[0]], epoch_of(&path), 0).unwrap();
        let mut names: std::collections::HashSet<String> = logged
            .records
            .iter()
            .flat_map(|r| &r.writes)
            .filter_map(|write| match write {
                Write::Name { user_id, .. } => Some(user_id.clone()),
                _ => None,
            })
            .collect();
        let reader = rusqlite::Connection::open(&path).unwrap();
        let mut filed = reader.prepare("SELECT user_id FROM names").unwrap();
        names.extend(
            filed
                .query_map([], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap),
        );
        assert_eq!(names.len(), 201, "{durability:?}");
        drop(journal);
        let held = Database::open(&path, durability, caps(10))
            .unwrap()
            .snapshot;
        assert_eq!(held.names.len(), 201);
    }
}

/// An audit entry of a ban of `user`, with every field set.
fn audit_entry(id: MessageId, user: &str) -> crate::engine::AuditEntry {
    crate::engine::AuditEntry {
        id,
        ts: id.ms,
        action: crate::engine::AuditAction::Ban,
        target: user.into(),
        reason: Some("spam".into()),
        seconds: Some(600),
        result: "ok".into(),
        address: "10.0.0.1".into(),
        via: "console".into(),
    }
}

/// The redo epoch of the database at `path`.
fn epoch_of(path: &std::path::Path) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    schema::meta_number(&conn, Meta::RedoEpoch)
        .unwrap()
        .unwrap()
}

/// Waits (at most 10 s) until `condition` holds.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_file_cannot_take_changes_they_are_refused_and_none_committed_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let journal = Database::open(&path, Durability::Normal, caps(10))
        .unwrap()
        .journal;
    let name = |user: &str| Write::Name {
        user_id: user.into(),
        name: "N".into(),
        at_ms: 0,
    };
    journal.write(name("a")).unwrap().committed().await.unwrap();
    // Break the table behind the server's back: folding the log into the file fails.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    other
        .execute_batch("ALTER TABLE names RENAME TO names_away")
        .unwrap();
    // Committed to the redo log all the same: kept, and folded in once the file takes it.
    journal.write(name("b")).unwrap().committed().await.unwrap();
    until("the failed fold is noticed", || !journal.healthy()).await;
    // Now refused before anything is queued (so nothing is changed and then lost).
    match journal.write(name("c")) {
        Err(EngineError::Unavailable(why)) => {
            assert!(why.contains("cannot store changes right now"), "{why}");
            assert!(why.contains("no such table"), "{why}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    // Mended: the next fold works, and writes are taken again.
    other
        .execute_batch("ALTER TABLE names_away RENAME TO names")
        .unwrap();
    drop(other);
    until("the fold works again", || journal.healthy()).await;
    journal.write(name("d")).unwrap().committed().await.unwrap();
    drop(journal);
    let names = Database::open(&path, Durability::Normal, caps(10))
        .unwrap()
        .snapshot
        .names;
    let mut users: Vec<&str> = names.iter().map(|(user, _)| user.as_str()).collect();
    users.sort();
    assert_eq!(users, ["a", "b", "d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_redo_log_holds_is_folded_in_on_open_and_never_into_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let journal = Database::open(&path, Durability::Normal, caps(10))
        .unwrap()
        .journal;
    journal
        .write(Write::Message(message("a", 1, "a1")))
        .unwrap()
        .committed()
        .await
        .unwrap();
    drop(journal);
    // The server stopped cleanly: the file alone holds everything; the log is empty.
    let [redo0, redo1] = redo::segment_paths(&path);
    for log in [&redo0, &redo1] {
        assert_eq!(
            std::fs::metadata(log).unwrap().len(),
            0,
            "{}",
            log.display()
        );
    }
    // A crash after the commit, before the fold: the record is in the log only.
    let (epoch, through) = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let number = |key| schema::meta_number(&conn, key).unwrap().unwrap();
        (number(Meta::RedoEpoch), number(Meta::RedoThrough))
    };
    let mut log = RedoLog::new(
        [
            redo::open_segment(&redo0).unwrap(),
            redo::open_segment(&redo1).unwrap(),
        ],
        epoch,
        through + 1,
        false,
    );
    log.append([Write::Message(message("a", 2, "a2"))].iter())
        .unwrap();
    drop(log);
    let database = Database::open(&path, Durability::Normal, caps(10)).unwrap();
    assert_eq!(texts(channel(&database.snapshot, "a")), ["a1", "a2"]);
    // Folded in, and the log emptied, before the server takes changes again.
    assert_eq!(std::fs::metadata(&redo0).unwrap().len(), 0);
    drop(database);
    // A record of another epoch beside a file is not applied to it.
    let mut log = RedoLog::new(
        [
            redo::open_segment(&redo0).unwrap(),
            redo::open_segment(&redo1).unwrap(),
        ],
        epoch ^ 1,
        through + 2,
        false,
    );
    log.append([Write::Message(message("a", 3, "a3"))].iter())
        .unwrap();
    drop(log);
    let database = Database::open(&path, Durability::Normal, caps(10)).unwrap();
    assert_eq!(texts(channel(&database.snapshot, "a")), ["a1", "a2"]);
}
