//! chat-bench: a load generator for chat servers speaking the bevy chat protocol (part 1).
//!
//! Clients log in (or use given tokens), connect, set a name, join their channel and wait at a
//! barrier; then senders send messages whose text carries the sender, a sequence number and the
//! send time (`b|<client>|<seq>|<send_unix_nanos>`). Every member of a channel must receive every
//! message sent to it, so the run knows exactly which deliveries to expect and reports latency,
//! loss, duplicates and errors. Run it from code with [`scenario::run`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use chat_bench::scenario::{ScenarioConfig, ScenarioKind, run};
//! let mut config = ScenarioConfig::defaults(ScenarioKind::Seed, "ws://127.0.0.1:8080/")?;
//! config.clients = 20;
//! let result = run(&config).await?;
//! println!("{}", result.table());
//! # Ok(()) }
//! ```

pub mod cli;
pub mod client;
pub mod login;
pub mod login_scenario;
pub mod proc_stats;
pub mod ramp;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod target;
