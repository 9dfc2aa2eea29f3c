//! A channel's fan-out load: whether its deliverers write frames themselves or leave them to the
//! members' tasks (see [`FanOutLoad`]).

/// How much of a thread this channel's fan-out took in the last window. Past half of one, the
/// channel is overloaded: the deliverer only queues its frames and the members' tasks write them,
/// on every thread, several frames per write (one thread writing each frame alone would cap the
/// channel's deliveries/s). Queueing costs about a tenth of writing, so the channel is back to
/// direct writes when queueing took less than a tenth of a thread.
#[derive(Debug)]
pub(super) struct FanOutLoad {
    since: std::time::Instant,
    busy: std::time::Duration,
    overloaded: bool,
}

impl Default for FanOutLoad {
    fn default() -> Self {
        Self {
            since: std::time::Instant::now(),
            busy: std::time::Duration::ZERO,
            overloaded: false,
        }
    }
}

/// The window over which a channel's fan-out load is measured.
const LOAD_WINDOW: std::time::Duration = std::time::Duration::from_millis(250);

impl FanOutLoad {
    /// Counts one fan-out that took `took`.
    pub(super) fn record(&mut self, now: std::time::Instant, took: std::time::Duration) {
        self.busy += took;
        let window = now.duration_since(self.since);
        if window >= LOAD_WINDOW {
            self.overloaded = if self.overloaded {
                self.busy * 10 >= window
            } else {
                self.busy * 2 > window
            };
            self.since = now;
            self.busy = std::time::Duration::ZERO;
        }
    }

    /// Whether the channel is overloaded now (its members' tasks write its frames).
    pub(super) fn overloaded(&self) -> bool {
        self.overloaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_channel_is_overloaded_past_half_a_thread_and_back_below_a_tenth() {
        let start = Instant::now();
        let mut load = FanOutLoad {
            since: start,
            busy: Duration::ZERO,
            overloaded: false,
        };
        let ms = Duration::from_millis;
        // Within a window nothing changes; at its end, the share of the thread decides.
        load.record(start + ms(100), ms(90));
        assert!(!load.overloaded());
        load.record(start + ms(250), ms(10));
        assert!(!load.overloaded(), "40 % of a thread");
        load.record(start + ms(500), ms(150));
        assert!(load.overloaded(), "60 % of a thread");
        load.record(start + ms(750), ms(50));
        assert!(load.overloaded(), "queueing at 20 % stays overloaded");
        load.record(start + ms(1000), ms(20));
        assert!(!load.overloaded(), "queueing at 8 %: back to direct writes");
    }
}
