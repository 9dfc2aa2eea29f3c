//! The nodes of the deployment as this node last heard from them (each reports once a second
//! over the broker), with their rates: the console's overview.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::engine::NodeInfo;

/// A node not heard from for this long is left out (stopped, or cut off).
pub const NODE_SILENT_AFTER: Duration = Duration::from_secs(10);

/// Samples of the sums kept for the console's charts (five minutes, one a second).
pub const RECENT_SAMPLES: usize = 300;

/// The last two reports of every node heard from, and the sums of the last minutes.
#[derive(Default)]
pub struct NodeDirectory {
    nodes: Mutex<HashMap<String, Heard>>,
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    samples: std::collections::VecDeque<Sample>,
    last: Option<Instant>,
}

/// The sums over every node at one moment (a point of the console's charts).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// When, ms since the Unix epoch.
    pub ts: u64,
    /// WebSocket connections open.
    pub connections: u64,
    /// Messages published per second.
    pub messages_per_second: f64,
    /// Frames sent per second.
    pub deliveries_per_second: f64,
}

struct Heard {
    last: NodeInfo,
    previous: Option<NodeInfo>,
    at: Instant,
}

/// A channel across the deployment, as the console lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelView {
    /// The channel.
    pub name: String,
    /// Members (connections) on every node.
    pub members: u64,
    /// Chat messages per second between the last two reports.
    pub messages_per_second: f64,
    /// Nodes with members there.
    pub nodes: usize,
}

/// A node as the overview shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Its last report.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Messages published per second between its last two reports.
    pub messages_per_second: f64,
    /// Frames sent per second between its last two reports.
    pub deliveries_per_second: f64,
    /// How long ago its last report came, ms.
    pub heard_ms_ago: u64,
}

impl NodeDirectory {
    /// Takes a node's report.
    pub fn heard(&self, info: NodeInfo) {
        let mut nodes = self.nodes.lock();
        let now = Instant::now();
        match nodes.get_mut(&info.node) {
            // A report older than the last (reordered): ignored.
            Some(heard) if info.sent_ms <= heard.last.sent_ms => {}
            Some(heard) => {
                heard.previous = Some(std::mem::replace(&mut heard.last, info));
                heard.at = now;
            }
            None => {
                nodes.insert(
                    info.node.clone(),
                    Heard {
                        last: info,
                        previous: None,
                        at: now,
                    },
                );
            }
        }
        nodes.retain(|_, heard| now.duration_since(heard.at) < NODE_SILENT_AFTER);
        drop(nodes);
        self.sample(now);
    }

    /// Adds a sample of the sums, at most one a second (whichever node's report comes first).
    fn sample(&self, now: Instant) {
        let mut recent = self.recent.lock();
        if recent
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_millis(950))
        {
            return;
        }
        recent.last = Some(now);
        let nodes = self.nodes();
        let sample = Sample {
            ts: crate::engine::now_ms(),
            connections: nodes.iter().map(|n| n.info.connections).sum(),
            messages_per_second: nodes.iter().map(|n| n.messages_per_second).sum(),
            deliveries_per_second: nodes.iter().map(|n| n.deliveries_per_second).sum(),
        };
        recent.samples.push_back(sample);
        if recent.samples.len() > RECENT_SAMPLES {
            recent.samples.pop_front();
        }
    }

    /// The busiest channels of every node, merged: members summed over the nodes, the message
    /// rate as the node seeing the most (every node with members sees every message), most
    /// members first.
    pub fn channels(&self) -> Vec<ChannelView> {
        let now = Instant::now();
        let nodes = self.nodes.lock();
        let mut merged: HashMap<&str, ChannelView> = HashMap::new();
        for heard in nodes
            .values()
            .filter(|heard| now.duration_since(heard.at) < NODE_SILENT_AFTER)
        {
            let before: HashMap<&str, u64> = heard
                .previous
                .iter()
                .flat_map(|previous| &previous.busiest)
                .map(|load| (load.name.as_str(), load.messages))
                .collect();
            let seconds = heard.previous.as_ref().map_or(0.0, |previous| {
                heard.last.sent_ms.saturating_sub(previous.sent_ms) as f64 / 1000.0
            });
            for load in &heard.last.busiest {
                let rate = match before.get(load.name.as_str()) {
                    Some(&then) if seconds > 0.0 => {
                        load.messages.saturating_sub(then) as f64 / seconds
                    }
                    _ => 0.0,
                };
                let view = merged.entry(&load.name).or_insert_with(|| ChannelView {
                    name: load.name.clone(),
                    members: 0,
                    messages_per_second: 0.0,
                    nodes: 0,
                });
                view.members += load.members;
                view.messages_per_second = view.messages_per_second.max(rate);
                view.nodes += 1;
            }
        }
        let mut channels: Vec<ChannelView> = merged.into_values().collect();
        channels.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
        channels
    }

    /// The sums of the last minutes, oldest first.
    pub fn recent(&self) -> Vec<Sample> {
        self.recent.lock().samples.iter().copied().collect()
    }

    /// Every node heard from lately, by id.
    pub fn nodes(&self) -> Vec<NodeView> {
        let now = Instant::now();
        let nodes = self.nodes.lock();
        let mut views: Vec<NodeView> = nodes
            .values()
            .filter(|heard| now.duration_since(heard.at) < NODE_SILENT_AFTER)
            .map(|heard| {
                let rate = |of: fn(&NodeInfo) -> u64| match &heard.previous {
                    Some(previous) if heard.last.sent_ms > previous.sent_ms => {
                        let seconds = (heard.last.sent_ms - previous.sent_ms) as f64 / 1000.0;
                        of(&heard.last).saturating_sub(of(previous)) as f64 / seconds
                    }
                    _ => 0.0,
                };
                NodeView {
                    info: NodeInfo {
                        busiest: Vec::new(),
                        refusals: heard.last.refusals.clone(),
                        node: heard.last.node.clone(),
                        version: heard.last.version.clone(),
                        ..heard.last
                    },
                    messages_per_second: rate(|info| info.messages),
                    deliveries_per_second: rate(|info| info.deliveries),
                    heard_ms_ago: now.duration_since(heard.at).as_millis() as u64,
                }
            })
            .collect();
        views.sort_by(|a, b| a.info.node.cmp(&b.info.node));
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, sent_ms: u64, messages: u64) -> NodeInfo {
        NodeInfo {
            node: node.into(),
            version: "0".into(),
            started_ms: 0,
            sent_ms,
            connections: 1,
            channels: 1,
            messages,
            deliveries: messages * 10,
            engine_ready: true,
            refusals: Default::default(),
            busiest: vec![crate::engine::ChannelLoad {
                name: "lobby".into(),
                members: 2,
                messages,
            }],
        }
    }

    #[test]
    fn rates_come_from_a_nodes_last_two_reports() {
        let directory = NodeDirectory::default();
        directory.heard(report("b", 1_000, 5));
        directory.heard(report("a", 1_000, 0));
        directory.heard(report("a", 3_000, 100));
        // Out of order: ignored.
        directory.heard(report("a", 2_000, 7));
        let nodes = directory.nodes();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].info.node, "a");
        assert_eq!(nodes[0].messages_per_second, 50.0);
        assert_eq!(nodes[0].deliveries_per_second, 500.0);
        assert_eq!(nodes[1].messages_per_second, 0.0);
        // One sample of the sums a second at most: the reports above came together.
        let recent = directory.recent();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].connections, 1);
        // The lobby: members of both nodes, the rate of the one that has two reports.
        let channels = directory.channels();
        assert_eq!(channels.len(), 1);
        assert_eq!(
            (
                channels[0].members,
                channels[0].messages_per_second,
                channels[0].nodes
            ),
            (4, 50.0, 2)
        );
    }
}
