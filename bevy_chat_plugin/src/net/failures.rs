//! Failures written to the log (`warn!`), so that a game that does not read
//! [`ChatError`](crate::ChatError) still shows why chat does not work: at most one line per
//! kind of failure per [`FAILURE_LOG_INTERVAL`], the next one counting those left out.

use std::time::{Duration, Instant};

/// At most one log line per kind of failure in this interval.
pub(crate) const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The kinds of failure, each rate-limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Logging in over HTTP failed (no server, refused, bad answer).
    Login,
    /// The WebSocket could not be opened.
    Connect,
    /// The server refused the token.
    Auth,
    /// The server refused the connection (a ban, too many connections).
    Refused,
    /// An open connection was lost.
    Lost,
}

impl FailureKind {
    const ALL: usize = 5;

    fn index(self) -> usize {
        match self {
            Self::Login => 0,
            Self::Connect => 1,
            Self::Auth => 2,
            Self::Refused => 3,
            Self::Lost => 4,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Login => "cannot log in to",
            Self::Connect => "cannot connect to",
            Self::Auth => "the token was refused by",
            Self::Refused => "the connection was refused by",
            Self::Lost => "lost the connection to",
        }
    }
}

/// Decides which failures are written, per kind.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    interval: Duration,
    /// Per kind: when the last line was written, and how many were left out since.
    slots: [(Option<Instant>, u32); FailureKind::ALL],
}

impl RateLimit {
    /// At most one line per kind per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            slots: [(None, 0); FailureKind::ALL],
        }
    }

    /// A failure of `kind` happened at `now`: `Some(left_out)` when it is to be written (with
    /// the number of failures of this kind left out since the last line), `None` when not.
    pub fn admit(&mut self, kind: FailureKind, now: Instant) -> Option<u32> {
        let (last, left_out) = &mut self.slots[kind.index()];
        match *last {
            Some(at) if now.saturating_duration_since(at) < self.interval => {
                *left_out = left_out.saturating_add(1);
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(left_out))
            }
        }
    }
}

/// The network thread's failure log for one server.
#[derive(Debug, Clone)]
pub(crate) struct FailureLog {
    enabled: bool,
    server: String,
    limit: RateLimit,
}

impl FailureLog {
    /// Logs failures about `server` when `enabled`.
    pub fn new(enabled: bool, server: &str) -> Self {
        Self {
            enabled,
            server: server.to_owned(),
            limit: RateLimit::new(FAILURE_LOG_INTERVAL),
        }
    }

    /// Writes a `warn!` line for this failure unless one of its kind was written lately.
    pub fn failed(&mut self, kind: FailureKind, reason: &str) {
        if !self.enabled {
            return;
        }
        let Some(left_out) = self.limit.admit(kind, Instant::now()) else {
            return;
        };
        let server = &self.server;
        let what = kind.describe();
        if left_out == 0 {
            bevy::log::warn!("chat: {what} {server}: {reason}");
        } else {
            bevy::log::warn!(
                "chat: {what} {server}: {reason} ({left_out} more like it in the last {}s)",
                self.limit.interval.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_counting_those_left_out() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut limit = RateLimit::new(Duration::from_secs(30));
        assert_eq!(limit.admit(FailureKind::Connect, at(0)), Some(0));
        assert_eq!(limit.admit(FailureKind::Connect, at(1)), None);
        assert_eq!(limit.admit(FailureKind::Connect, at(29)), None);
        // Another kind has its own budget.
        assert_eq!(limit.admit(FailureKind::Login, at(2)), Some(0));
        assert_eq!(limit.admit(FailureKind::Login, at(3)), None);
        // The interval runs from the last line written.
        assert_eq!(limit.admit(FailureKind::Connect, at(30)), Some(2));
        assert_eq!(limit.admit(FailureKind::Connect, at(31)), None);
        assert_eq!(limit.admit(FailureKind::Connect, at(100)), Some(1));
        assert_eq!(limit.admit(FailureKind::Connect, at(200)), Some(0));
        assert_eq!(limit.admit(FailureKind::Login, at(40)), Some(1));
    }

    #[test]
    fn a_clock_going_backwards_does_not_open_the_gate() {
        let start = Instant::now() + Duration::from_secs(60);
        let mut limit = RateLimit::new(Duration::from_secs(30));
        assert_eq!(limit.admit(FailureKind::Auth, start), Some(0));
        assert_eq!(
            limit.admit(FailureKind::Auth, start - Duration::from_secs(10)),
            None
        );
    }
}
