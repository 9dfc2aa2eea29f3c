//! Memory engine tests: channels, ids, history reads, the channel cap and the byte budget.

use super::*;
use crate::engine::{BlockOutcome, ModerationStore};

/// Collects deliveries.
#[derive(Default)]
struct Collect(Mutex<Vec<Delivery>>);

impl DeliverySink for Collect {
    fn deliver(&self, delivery: Delivery) {
        self.0.lock().push(delivery);
    }
}

/// An engine delivering to `sink`, keeping `history_size` messages per channel.
fn engine(sink: Arc<dyn DeliverySink>, history_size: usize) -> MemoryEngine {
    MemoryEngine::new(sink, history_size, Arc::new(MemoryUsers::new()))
}

fn message(channel: &str, text: &str) -> NewMessage {
    NewMessage {
        channel: channel.into(),
        user_id: "u".into(),
        username: "U".into(),
        message: text.into(),
    }
}

#[tokio::test]
async fn past_the_cap_the_quietest_channel_without_members_is_forgotten() {
    let engine = engine(Arc::new(Collect::default()), 10).with_max_channels(3);
    engine.presence_add("busy", "u").await.unwrap();
    engine
        .publish(message("busy", "old but occupied"))
        .await
        .unwrap();
    // Within one millisecond the name breaks the tie: c0 and c1 go either way.
    for n in 0..5 {
        engine
            .publish(message(&format!("c{n}"), "hi"))
            .await
            .unwrap();
    }
    let mut kept: Vec<_> = engine.channels.read().keys().cloned().collect();
    kept.sort();
    assert_eq!(
        kept,
        ["busy", "c3", "c4"],
        "members' channels stay, quiet ones go"
    );
    let last = HistoryQuery::Last { limit: 10 };
    assert!(
        engine
            .history("c0", last)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    assert_eq!(
        engine.history("busy", last).await.unwrap().messages.len(),
        1
    );
    // Publishing to a forgotten channel starts it again (ids keep rising with time).
    engine.publish(message("c0", "again")).await.unwrap();
    assert_eq!(engine.history("c0", last).await.unwrap().messages.len(), 1);
}

#[tokio::test]
async fn empty_channels_are_forgotten_and_kept_ones_are_not() {
    let engine = engine(Arc::new(Collect::default()), 10);
    for n in 0..100 {
        let channel = format!("c{n}");
        assert!(engine.presence_add(&channel, "u").await.unwrap());
        assert!(engine.presence_remove(&channel, "u").await.unwrap());
    }
    assert!(engine.channels.read().is_empty());
    engine.presence_add("kept", "u").await.unwrap();
    engine.publish(message("kept", "hi")).await.unwrap();
    engine.presence_remove("kept", "u").await.unwrap();
    let history = engine
        .history("kept", HistoryQuery::Last { limit: 5 })
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 1);
}

#[tokio::test]
async fn ids_increase_and_history_reads_every_way() {
    let sink = Arc::new(Collect::default());
    let engine = engine(sink.clone(), 4);
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(
            engine
                .publish(message("c", &n.to_string()))
                .await
                .unwrap()
                .id,
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(sink.0.lock().len(), 6);
    let texts = |h: History| -> Vec<String> { h.messages.into_iter().map(|m| m.message).collect() };
    let last = engine
        .history("c", HistoryQuery::Last { limit: 2 })
        .await
        .unwrap();
    assert!(last.more);
    assert_eq!(texts(last), ["4", "5"]);
    let since = engine
        .history(
            "c",
            HistoryQuery::Since {
                after: ids[3],
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(!since.gap);
    assert_eq!(texts(since), ["4", "5"]);
    let since_dropped = engine
        .history(
            "c",
            HistoryQuery::Since {
                after: ids[0],
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(since_dropped.gap, "message 1 was dropped from a ring of 4");
    let capped = engine
        .history(
            "c",
            HistoryQuery::Since {
                after: ids[1],
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert!(capped.gap);
    assert_eq!(texts(capped), ["4", "5"]);
    let before = engine
        .history(
            "c",
            HistoryQuery::Before {
                before: ids[4],
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(!before.more);
    assert_eq!(texts(before), ["2", "3"]);
}

/// What one message of `message(channel, text)` costs the budget (entry included).
fn cost(channel: &str, text: &str) -> usize {
    let stored = message(channel, text).stored(MessageId::new(1, 0));
    kept_bytes(&stored) + budget::ENTRY_BYTES
}

fn texts(history: History) -> Vec<String> {
    history.messages.into_iter().map(|m| m.message).collect()
}

#[tokio::test]
async fn past_the_byte_budget_the_oldest_messages_of_any_channel_go_first() {
    let per = cost("a", "a0");
    let limit = 4 * per + per / 2;
    let metrics = Arc::new(Metrics::new());
    let engine = engine(Arc::new(Collect::default()), 100)
        .with_history_bytes(limit)
        .with_metrics(metrics.clone());
    let mut ids = HashMap::new();
    for n in 0..3 {
        for channel in ["a", "b", "c"] {
            if n == 2 && channel == "c" {
                break;
            }
            let text = format!("{channel}{n}");
            let stored = engine.publish(message(channel, &text)).await.unwrap();
            ids.insert(text, stored.id);
            assert!(engine.budget.lock().held() <= limit);
        }
    }
    // Sent: a0 b0 c0 a1 b1 c1 a2 b2; room for four: the four oldest went, across channels.
    let last = HistoryQuery::Last { limit: 10 };
    assert_eq!(texts(engine.history("a", last).await.unwrap()), ["a2"]);
    assert_eq!(
        texts(engine.history("b", last).await.unwrap()),
        ["b1", "b2"]
    );
    assert_eq!(texts(engine.history("c", last).await.unwrap()), ["c1"]);
    assert_eq!(engine.budget.lock().held(), 4 * per);

    let since = |channel: &'static str, after: &str| {
        let after = ids[after];
        let engine = &engine;
        async move {
            engine
                .history(channel, HistoryQuery::Since { after, limit: 10 })
                .await
                .unwrap()
        }
    };
    let resumed = since("a", "a0").await;
    assert!(resumed.gap, "a1, after a0, was dropped");
    assert_eq!(texts(resumed), ["a2"]);
    let resumed = since("a", "a1").await;
    assert!(!resumed.gap, "nothing after a1 was dropped");
    assert_eq!(texts(resumed), ["a2"]);
    let resumed = since("b", "b0").await;
    assert!(!resumed.gap, "b0 itself was dropped, but the reader had it");
    assert_eq!(texts(resumed), ["b1", "b2"]);

    let rendered = metrics.render();
    assert!(
        rendered.contains(r#"chat_limit_hits_total{limit="history_bytes"} 4"#),
        "{rendered}"
    );
    assert!(
        rendered.contains(&format!("chat_memory_history_bytes {}", 4 * per)),
        "{rendered}"
    );
}

/// Messages the per-channel count cap dropped leave an entry in the budget's queue until it
/// reaches the front; those entries count too, so a quiet channel's old message cannot make
/// the queue grow without end behind it.
#[tokio::test]
async fn entries_left_by_the_count_cap_are_bounded_by_the_budget() {
    let per = cost("busy", "m0000");
    let limit = 20 * per;
    let engine = engine(Arc::new(Collect::default()), 2).with_history_bytes(limit);
    engine.publish(message("quiet", "old")).await.unwrap();
    for n in 0..2000 {
        engine
            .publish(message("busy", &format!("m{n:04}")))
            .await
            .unwrap();
        let budget = engine.budget.lock();
        assert!(budget.held() <= limit);
        assert!(budget.queued() <= limit / budget::ENTRY_BYTES);
    }
    let quiet = engine
        .history(
            "quiet",
            HistoryQuery::Since {
                after: MessageId::new(0, 0),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(quiet.messages.is_empty() && quiet.gap);
    let busy = engine
        .history("busy", HistoryQuery::Last { limit: 10 })
        .await
        .unwrap();
    assert_eq!(texts(busy), ["m1998", "m1999"]);
}

/// Publishers on many channels, the channel cap forgetting channels and the budget dropping
/// messages across channels, all at once: no deadlock, and the accounting still adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_stay_within_the_budget_without_deadlock() {
    let per = cost("c0", "x");
    let limit = 50 * per;
    let engine = Arc::new(
        engine(Arc::new(Collect::default()), 20)
            .with_max_channels(4)
            .with_history_bytes(limit),
    );
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for n in 0..2000 {
                    let channel = format!("c{}", (task + n) % 7);
                    engine.publish(message(&channel, "x")).await.unwrap();
                    if n % 50 == 0 {
                        engine.presence_add(&channel, "u").await.unwrap();
                        engine.presence_remove(&channel, "u").await.unwrap();
                    }
                }
            })
        })
        .collect();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await
    .expect("no deadlock");
    let channels: Vec<_> = engine.channels.read().values().cloned().collect();
    let mut kept = 0;
    for state in channels {
        let state = state.lock();
        kept += state
            .history
            .iter()
            .map(|k| kept_bytes(&k.message) + budget::ENTRY_BYTES)
            .sum::<usize>();
    }
    let budget = engine.budget.lock();
    assert!(budget.held() <= limit, "{} > {limit}", budget.held());
    assert!(
        kept <= budget.held(),
        "kept messages cost {kept}, held {}",
        budget.held()
    );
}

#[tokio::test]
async fn block_lists_are_capped_versioned_and_delivered_in_order() {
    let sink = Arc::new(Collect::default());
    let engine = MemoryModeration::new(sink.clone());
    let users = |outcome: BlockOutcome| match outcome {
        BlockOutcome::Blocked(snapshot) => snapshot.users,
        BlockOutcome::TooMany => panic!("too many"),
    };
    assert_eq!(users(engine.block("a", "c", 2).await.unwrap()), ["c"]);
    assert_eq!(users(engine.block("a", "b", 2).await.unwrap()), ["b", "c"]);
    assert_eq!(
        engine.block("a", "d", 2).await.unwrap(),
        BlockOutcome::TooMany
    );
    // Blocked already: no new entry, so the cap does not refuse it.
    assert_eq!(users(engine.block("a", "b", 2).await.unwrap()), ["b", "c"]);
    assert_eq!(engine.unblock("a", "c").await.unwrap().users, ["b"]);
    assert_eq!(engine.blocked("a").await.unwrap().users, ["b"]);
    assert!(engine.blocked("z").await.unwrap().users.is_empty());
    // Every change was delivered, with growing versions, in order.
    let delivered: Vec<(u64, Vec<String>)> = sink
        .0
        .lock()
        .iter()
        .filter_map(|d| match d {
            Delivery::Blocks { user, blocks, .. } if &**user == "a" => {
                Some((blocks.version, blocks.users.clone()))
            }
            _ => None,
        })
        .collect();
    let versions: Vec<u64> = delivered.iter().map(|(v, _)| *v).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(delivered.len(), 4);
    assert_eq!(delivered.last().unwrap().1, ["b"]);
}

#[tokio::test]
async fn the_age_cap_drops_old_messages_at_the_sweep_and_a_resume_learns_of_the_gap() {
    let engine =
        engine(Arc::new(Collect::default()), 10).with_max_age(std::time::Duration::from_secs(60));
    let first = engine.publish(message("c", "old")).await.unwrap();
    engine
        .publish(message("c", "older still kept"))
        .await
        .unwrap();
    // Nothing is past the cap yet.
    engine.sweep(now_ms());
    assert_eq!(
        texts(
            engine
                .history("c", HistoryQuery::Last { limit: 10 })
                .await
                .unwrap()
        ),
        ["old", "older still kept"]
    );
    // An hour on, both are.
    engine.sweep(now_ms() + 3_600_000);
    assert!(
        engine
            .history("c", HistoryQuery::Last { limit: 10 })
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    let since = engine
        .history(
            "c",
            HistoryQuery::Since {
                after: first.id,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(since.gap);
}

/// An engine keeping `history_size` per channel in a database at `path`.
fn durable(path: &std::path::Path, history_size: usize) -> MemoryEngine {
    use crate::engine::sqlite::{Database, Durability, HistoryCaps};
    let caps = HistoryCaps {
        per_channel: history_size,
        oldest_ms: 0,
    };
    let database = Database::open(path, Durability::Normal, caps).unwrap();
    let engine = engine(Arc::new(Collect::default()), history_size).with_journal(database.journal);
    engine.restore(database.snapshot.channels);
    engine
}

/// Rows of the `messages` table, read with a connection of the test's own.
fn rows(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare("SELECT channel || ':' || message FROM messages ORDER BY channel, ms, seq")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trims_and_forgotten_channels_reach_the_database_at_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let engine = durable(&path, 2).with_max_channels(2);
    let mut ids = Vec::new();
    for text in ["a1", "a2", "a3", "a4"] {
        ids.push(engine.publish(message("a", text)).await.unwrap().id);
    }
    engine.publish(message("b", "b1")).await.unwrap();
    // Every message is committed once acknowledged; the count cap's trims wait for the sweep.
    let journal = engine.journal.clone().unwrap();
    journal.fold_now().await;
    assert_eq!(rows(&path), ["a:a1", "a:a2", "a:a3", "a:a4", "b:b1"]);
    engine.sweep(now_ms());
    journal.fold_now().await;
    assert_eq!(rows(&path), ["a:a3", "a:a4", "b:b1"]);
    // A third channel past the cap of two forgets the quietest one, in the file too.
    engine.publish(message("c", "c1")).await.unwrap();
    engine.sweep(now_ms());
    journal.fold_now().await;
    assert_eq!(rows(&path), ["b:b1", "c:c1"]);
    drop((engine, journal));

    // Read back: what was kept, and new ids after the newest read back even if the clock is
    // behind it.
    let engine = durable(&path, 2);
    let history = engine
        .history("b", HistoryQuery::Last { limit: 10 })
        .await
        .unwrap();
    assert_eq!(texts(history), ["b1"]);
    assert!(
        engine
            .history("a", HistoryQuery::Last { limit: 10 })
            .await
            .unwrap()
            .messages
            .is_empty()
    );
}

#[tokio::test]
async fn ids_after_a_restore_follow_the_newest_read_back_even_when_the_clock_is_behind() {
    use crate::engine::sqlite::ChannelSnapshot;
    let engine = engine(Arc::new(Collect::default()), 10);
    let future = MessageId::new(now_ms() + 3_600_000, 7);
    let kept = message("c", "from the future").stored(future);
    engine.restore(vec![
        ChannelSnapshot {
            name: "c".into(),
            messages: vec![kept],
            trimmed_through: None,
        },
        ChannelSnapshot {
            name: "d".into(),
            messages: Vec::new(),
            trimmed_through: Some(future),
        },
    ]);
    let next = engine.publish(message("c", "now")).await.unwrap();
    assert_eq!(next.id, future.successor());
    let next = engine.publish(message("d", "now")).await.unwrap();
    assert_eq!(next.id, future.successor());
    let since = engine
        .history(
            "d",
            HistoryQuery::Since {
                after: MessageId::new(1, 0),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(
        since.gap,
        "what was trimmed before the restore is still a gap"
    );
}
