//! Delivery accounting: which messages were sent, which deliveries were therefore expected, which
//! arrived, which were lost or duplicated, and the end-to-end latency histogram.
//!
//! Each client keeps its own [`SenderLog`] and [`ReceiverLog`] while the run goes (no shared lock
//! on the hot path); at the end they are handed to an [`Accounting`], which computes the
//! [`DeliverySummary`].

use std::collections::{BTreeMap, HashMap, HashSet};

use hdrhistogram::Histogram;

/// Highest latency the histogram holds, in µs (one hour); larger values are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Identity of one benchmark message: the sending client and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgKey {
    /// Index of the sending client.
    pub sender: u32,
    /// Sequence number within that client's messages, from 0.
    pub seq: u32,
}

/// The text a benchmark message carries: `b|<sender>|<seq>|<send_unix_nanos>`.
pub fn encode_text(key: MsgKey, send_unix_nanos: u128) -> String {
    format!("b|{}|{}|{}", key.sender, key.seq, send_unix_nanos)
}

/// Reads a text written by [`encode_text`]: the key and the send time (Unix ns). `None` for any
/// other text (e.g. traffic that is not ours).
pub fn decode_text(text: &str) -> Option<(MsgKey, u128)> {
    let mut parts = text.strip_prefix("b|")?.split('|');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let nanos = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((MsgKey { sender, seq }, nanos))
}

/// Reads a benchmark delivery straight from a frame's text, without a full JSON parse, so the
/// generator keeps up with hundreds of thousands of deliveries a second: the frame must be a
/// `chat_message_received` event of `channel` whose text [`encode_text`] wrote. `None` for
/// anything else (the caller then parses the frame in full).
pub fn scan_delivery(frame: &str, channel: &str) -> Option<(MsgKey, u128)> {
    let payload = frame.strip_prefix(r#"{"type":"chat_message_received","payload":{"#)?;
    if string_field(payload, "channel")? != channel {
        return None;
    }
    decode_text(string_field(payload, "message")?)
}

/// The value of the first `"name":"..."` in `json`, when it has no escapes (benchmark texts and
/// channel names never do; a value with one is refused, not misread).
fn string_field<'a>(json: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let start = json.find(&key)? + key.len();
    let value = &json[start..];
    let end = value.find('"')?;
    let value = &value[..end];
    (!value.contains('\\')).then_some(value)
}

/// A new, empty latency histogram (µs, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// What one client sent: every message the server was given, and those it refused.
#[derive(Debug, Default, Clone)]
pub struct SenderLog {
    /// Messages written to the connection, with the channel index they were sent to.
    pub sent: Vec<(MsgKey, usize)>,
    /// Messages the server answered with an error (not delivered to anyone, so not expected).
    pub rejected: Vec<MsgKey>,
    /// Messages the server acknowledged ("Message sent to ...").
    pub acked: u64,
}

/// What one client received on its channel.
#[derive(Debug, Clone)]
pub struct ReceiverLog {
    /// Index of the channel this client is a member of.
    pub channel: usize,
    /// How often each message arrived.
    counts: HashMap<MsgKey, u32>,
    /// Latency of each first arrival, µs.
    histogram: Histogram<u64>,
}

impl ReceiverLog {
    /// An empty log for a member of `channel`.
    pub fn new(channel: usize) -> Self {
        Self {
            channel,
            counts: HashMap::new(),
            histogram: new_histogram(),
        }
    }

    /// Records one arrival of `key`. The latency is recorded only for the first arrival; returns
    /// whether this was the first.
    pub fn record(&mut self, key: MsgKey, latency_us: u64) -> bool {
        let count = self.counts.entry(key).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.histogram
                .saturating_record(latency_us.clamp(1, MAX_LATENCY_US));
            true
        } else {
            false
        }
    }

    /// Distinct messages received so far.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }
}

/// Counts computed by [`Accounting::summary`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    /// Messages written to connections.
    pub sent: u64,
    /// Messages acknowledged by the server.
    pub acked: u64,
    /// Messages refused by the server (error reply).
    pub rejected: u64,
    /// Deliveries that should have happened: for every accepted message, each member of its
    /// channel (the sender included).
    pub expected: u64,
    /// Expected deliveries that happened (each counted once).
    pub received: u64,
    /// Expected deliveries that never happened (`expected - received`).
    pub lost: u64,
    /// Extra copies of deliveries already received.
    pub duplicated: u64,
    /// Benchmark messages a client received that it should not have (never sent, refused, or
    /// for another channel).
    pub unexpected: u64,
}

/// Collects every client's logs and computes what was lost and duplicated.
pub struct Accounting {
    /// Members (ready clients) of each channel at the barrier.
    members: Vec<u64>,
    /// Channel of every sent message.
    sent: HashMap<MsgKey, usize>,
    rejected: HashSet<MsgKey>,
    acked: u64,
    receivers: Vec<ReceiverLog>,
    histogram: Histogram<u64>,
}

impl Accounting {
    /// Accounting for channels with these member counts (index = channel index).
    pub fn new(members: Vec<u64>) -> Self {
        Self {
            members,
            sent: HashMap::new(),
            rejected: HashSet::new(),
            acked: 0,
            receivers: Vec::new(),
            histogram: new_histogram(),
        }
    }

    /// Adds one client's sends.
    pub fn add_sender(&mut self, log: SenderLog) {
        self.sent.extend(log.sent);
        self.rejected.extend(log.rejected);
        self.acked += log.acked;
    }

    /// Adds one client's receipts. Only clients that were members at the barrier may be added.
    pub fn add_receiver(&mut self, log: ReceiverLog) {
        self.histogram
            .add(&log.histogram)
            .expect("histograms share bounds");
        self.receivers.push(log);
    }

    /// The merged latency histogram (µs) of every first arrival.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// Expected, received, lost and duplicated deliveries over everything added so far.
    pub fn summary(&self) -> DeliverySummary {
        let accepted = |key: &MsgKey| !self.rejected.contains(key);
        let expected = self
            .sent
            .iter()
            .filter(|(key, _)| accepted(key))
            .map(|(_, &channel)| self.members.get(channel).copied().unwrap_or(0))
            .sum();
        let mut received = 0;
        let mut duplicated = 0;
        let mut unexpected = 0;
        for log in &self.receivers {
            for (key, &count) in &log.counts {
                let valid = self.sent.get(key) == Some(&log.channel) && accepted(key);
                if valid {
                    received += 1;
                    duplicated += u64::from(count.saturating_sub(1));
                } else {
                    unexpected += u64::from(count);
                }
            }
        }
        DeliverySummary {
            sent: self.sent.len() as u64,
            acked: self.acked,
            rejected: self.rejected.len() as u64,
            expected,
            received,
            lost: expected.saturating_sub(received),
            duplicated,
            unexpected,
        }
    }
}

/// Errors by kind (`server:<code>`, `connect_failed`, `closed_by_server`, ...), with counts.
pub type ErrorCounts = BTreeMap<String, u64>;

/// Adds `n` to the count of `kind`.
pub fn count_error(errors: &mut ErrorCounts, kind: impl Into<String>, n: u64) {
    *errors.entry(kind.into()).or_insert(0) += n;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sender: u32, seq: u32) -> MsgKey {
        MsgKey { sender, seq }
    }

    /// Two channels: 0 has clients 0,1,2; 1 has clients 3,4.
    fn accounting_with_sends() -> Accounting {
        let mut acc = Accounting::new(vec![3, 2]);
        acc.add_sender(SenderLog {
            sent: vec![(key(0, 0), 0), (key(0, 1), 0)],
            rejected: vec![],
            acked: 2,
        });
        acc.add_sender(SenderLog {
            sent: vec![(key(3, 0), 1)],
            rejected: vec![],
            acked: 1,
        });
        acc
    }

    fn receiver(channel: usize, keys: &[MsgKey]) -> ReceiverLog {
        let mut log = ReceiverLog::new(channel);
        for &k in keys {
            log.record(k, 100);
        }
        log
    }

    #[test]
    fn deliveries_are_scanned_without_a_full_parse() {
        let key = MsgKey { sender: 7, seq: 3 };
        let event = protocol::Event::ChatMessageReceived(protocol::ChatMessage {
            username: "bench-7".into(),
            message: encode_text(key, 42),
            channel: "bench-x-1".into(),
            id: protocol::MessageId::new(1, 0),
            user_id: "u".into(),
            ts: 1,
        });
        let frame = event.to_json(None);
        assert_eq!(scan_delivery(&frame, "bench-x-1"), Some((key, 42)));
        assert_eq!(scan_delivery(&frame, "bench-x-2"), None, "another channel");
        assert_eq!(
            scan_delivery(&frame.replace("b|7", "b\\|7"), "bench-x-1"),
            None
        );
        assert_eq!(
            scan_delivery(r#"{"type":"reply","payload":{}}"#, "bench-x-1"),
            None
        );
    }

    #[test]
    fn text_round_trips_and_foreign_text_is_ignored() {
        let k = key(17, 42);
        assert_eq!(decode_text(&encode_text(k, 123)), Some((k, 123)));
        assert_eq!(decode_text("hello"), None);
        assert_eq!(decode_text("b|1|2"), None);
        assert_eq!(decode_text("b|1|2|3|4"), None);
        assert_eq!(decode_text("b|x|2|3"), None);
    }

    #[test]
    fn everything_delivered_once_is_neither_lost_nor_duplicated() {
        let mut acc = accounting_with_sends();
        for _ in 0..3 {
            acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        }
        for _ in 0..2 {
            acc.add_receiver(receiver(1, &[key(3, 0)]));
        }
        let s = acc.summary();
        assert_eq!(s.sent, 3);
        assert_eq!(s.acked, 3);
        assert_eq!(s.expected, 3 * 2 + 2);
        assert_eq!(s.received, 8);
        assert_eq!(s.lost, 0);
        assert_eq!(s.duplicated, 0);
        assert_eq!(s.unexpected, 0);
        assert_eq!(acc.histogram().len(), 8);
    }

    #[test]
    fn a_missing_delivery_is_reported_lost() {
        let mut acc = accounting_with_sends();
        acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        // The third member of channel 0 never got (0, 1).
        acc.add_receiver(receiver(0, &[key(0, 0)]));
        acc.add_receiver(receiver(1, &[key(3, 0)]));
        acc.add_receiver(receiver(1, &[key(3, 0)]));
        let s = acc.summary();
        assert_eq!(s.expected, 8);
        assert_eq!(s.received, 7);
        assert_eq!(s.lost, 1);
        assert_eq!(s.duplicated, 0);
    }

    #[test]
    fn a_member_that_received_nothing_loses_everything() {
        let mut acc = accounting_with_sends();
        acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        // Third member of channel 0 and both of channel 1 are never added (e.g. disconnected).
        let s = acc.summary();
        assert_eq!(s.received, 4);
        assert_eq!(s.lost, 4);
    }

    #[test]
    fn a_second_copy_is_reported_duplicated_not_received_twice() {
        let mut acc = accounting_with_sends();
        let mut log = ReceiverLog::new(0);
        assert!(log.record(key(0, 0), 50));
        assert!(!log.record(key(0, 0), 70));
        assert!(!log.record(key(0, 0), 90));
        assert!(log.record(key(0, 1), 50));
        assert_eq!(log.distinct(), 2);
        acc.add_receiver(log);
        acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        acc.add_receiver(receiver(1, &[key(3, 0)]));
        acc.add_receiver(receiver(1, &[key(3, 0)]));
        let s = acc.summary();
        assert_eq!(s.received, 8);
        assert_eq!(s.lost, 0);
        assert_eq!(s.duplicated, 2);
        // Only first arrivals carry latency.
        assert_eq!(acc.histogram().len(), 8);
    }

    #[test]
    fn loss_and_duplicates_are_counted_independently() {
        let mut acc = accounting_with_sends();
        let mut dup = receiver(0, &[key(0, 0), key(0, 1)]);
        dup.record(key(0, 1), 10);
        acc.add_receiver(dup);
        acc.add_receiver(receiver(0, &[key(0, 1)]));
        acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        acc.add_receiver(receiver(1, &[key(3, 0)]));
        acc.add_receiver(receiver(1, &[]));
        let s = acc.summary();
        assert_eq!(s.received, 6);
        assert_eq!(s.lost, 2);
        assert_eq!(s.duplicated, 1);
    }

    #[test]
    fn rejected_messages_are_not_expected_and_wrong_channel_is_unexpected() {
        let mut acc = Accounting::new(vec![2, 2]);
        acc.add_sender(SenderLog {
            sent: vec![(key(0, 0), 0), (key(0, 1), 0)],
            rejected: vec![key(0, 1)],
            acked: 1,
        });
        acc.add_receiver(receiver(0, &[key(0, 0)]));
        acc.add_receiver(receiver(0, &[key(0, 0), key(0, 1)]));
        // Channel 1 members got a channel-0 message and one never sent.
        acc.add_receiver(receiver(1, &[key(0, 0), key(9, 9)]));
        let s = acc.summary();
        assert_eq!(s.rejected, 1);
        assert_eq!(s.expected, 2);
        assert_eq!(s.received, 2);
        assert_eq!(s.lost, 0);
        assert_eq!(s.unexpected, 3);
    }

    #[test]
    fn error_counts_accumulate() {
        let mut errors = ErrorCounts::new();
        count_error(&mut errors, "server:rate_limited", 1);
        count_error(&mut errors, "server:rate_limited", 2);
        assert_eq!(errors["server:rate_limited"], 3);
    }
}
