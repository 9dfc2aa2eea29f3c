//! This node's local fan-out: which local connections are in which channel, and their bounded
//! outgoing queues.
//!
//! The hub is the engine's [`DeliverySink`]: every delivery is serialised and encoded once into
//! a shared WebSocket frame ([`WsFrame`]) and handed to each receiver's [`Outbox`], which writes
//! it to the socket at once when nothing waits there. A receiver whose queue is full is too
//! slow: it is closed with 1008 instead of growing memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use protocol::{ErrorCode, ErrorReply, MessageId};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::engine::{Delivery, DeliverySink};
use crate::metrics::{Limit, Metrics};
use crate::moderation::{Sanction, muted_text};

mod blocks;
mod census;
mod load;
pub mod outbox;

pub use blocks::BlockList;
pub use outbox::{Outbox, Outgoing, WsFrame};

/// Identifies one WebSocket connection on this node.
pub type ConnId = u64;

/// Why the server ends a connection from outside its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason text (at most 123 bytes).
    pub text: &'static str,
    /// Metrics label.
    pub label: &'static str,
    /// The limit this close enforces, if any (counted in `chat_limit_hits_total`).
    pub limit: Option<Limit>,
}

/// The outgoing queue was full: the client reads too slowly.
pub const SLOW_CONSUMER: CloseReason = CloseReason {
    code: 1008,
    text: "outgoing queue full: client too slow",
    label: "slow_consumer",
    limit: Some(Limit::OutgoingQueue),
};

/// Closed by a moderator's kick.
pub const KICKED: CloseReason = CloseReason {
    code: 1008,
    text: "kicked by a moderator",
    label: "kicked",
    limit: None,
};

/// The server is shutting down (a connection's kill signal is a child of the shutdown token).
pub const SHUTDOWN: CloseReason = CloseReason {
    code: 1001,
    text: "server shutting down",
    label: "shutdown",
    limit: None,
};

/// Closed by a moderator's ban.
pub const BANNED: CloseReason = CloseReason {
    code: 1008,
    text: "banned by a moderator",
    label: "banned",
    limit: None,
};

/// A cheap handle other tasks use to deliver frames to a connection or to close it.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Connection id.
    pub id: ConnId,
    /// Owning user.
    pub user_id: Arc<str>,
    /// The user's block list, shared by the user's connections on this node.
    pub blocks: Arc<BlockList>,
    /// Where frames for the connection go (to its socket, or queued for its task).
    pub outbox: Arc<Outbox>,
    kill: Arc<Kill>,
}

#[derive(Debug)]
struct Kill {
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
}

/// Tells a connection's task that another task wants it closed.
#[derive(Debug)]
pub struct KillSignal(Arc<Kill>);

impl KillSignal {
    /// Resolves when another task asked to close the connection, or the server shuts down;
    /// returns why. One future serves a connection's whole life (pin it once): polling it is
    /// one uncontended lock, where a fresh one per wake-up would register and unregister.
    pub async fn killed(&self) -> CloseReason {
        self.0.token.cancelled().await;
        self.0.reason.get().copied().unwrap_or(SHUTDOWN)
    }
}

impl ConnHandle {
    /// Delivers a frame. A full queue closes the connection (slow consumer); returns false then.
    pub fn send(&self, item: Outgoing, metrics: &Metrics) -> bool {
        self.send_by(item, outbox::Writer::Deliverer, metrics)
    }

    /// [`send`](Self::send), saying who writes it to an idle socket.
    fn send_by(&self, item: Outgoing, writer: outbox::Writer, metrics: &Metrics) -> bool {
        match self.outbox.deliver_by(item, writer) {
            outbox::Delivered::Written | outbox::Delivered::Queued => true,
            outbox::Delivered::Full => {
                if self.close(SLOW_CONSUMER) {
                    metrics.queue_drops.inc();
                }
                false
            }
            // The connection is already ending.
            outbox::Delivered::Closed => false,
        }
    }

    /// Closes the connection with `reason` after `frame` (e.g. a kick's reason), which is
    /// delivered even when the queue is full.
    pub fn close_after(&self, reason: CloseReason, frame: WsFrame) {
        self.outbox.deliver_last(frame);
        self.close(reason);
    }

    /// Asks the connection's task to close with `reason`. Returns true for the first request.
    pub fn close(&self, reason: CloseReason) -> bool {
        let first = self.kill.reason.set(reason).is_ok();
        self.kill.token.cancel();
        first
    }
}

/// One local member of a channel.
#[derive(Debug, Clone)]
struct Member {
    handle: ConnHandle,
    /// Messages up to this id went to the member as history when it joined: live copies of
    /// them are not delivered again.
    replay_until: Option<MessageId>,
}

/// A channel's local members, plus the lock that serialises joins and leaves (and the
/// engine subscription they may start or end).
#[derive(Debug, Default)]
pub struct ChannelEntry {
    /// Held while a join or leave changes membership; the bool is "subscribed in the engine".
    pub transition: tokio::sync::Mutex<EntryState>,
    members: RwLock<HashMap<ConnId, Member>>,
    load: parking_lot::Mutex<load::FanOutLoad>,
    /// Chat messages delivered here since the entry was made (the console's channel rates).
    messages: AtomicU64,
}

/// Engine subscription state of a channel entry.
#[derive(Debug, Default)]
pub struct EntryState {
    /// The engine delivers this channel to this node.
    pub subscribed: bool,
    /// The entry was removed from the hub; a joiner must fetch a fresh one.
    pub retired: bool,
}

impl ChannelEntry {
    /// Adds a member. Returns how many local connections of that user are now members.
    pub fn insert(&self, handle: &ConnHandle) -> usize {
        let mut members = self.members.write();
        members.insert(
            handle.id,
            Member {
                handle: handle.clone(),
                replay_until: None,
            },
        );
        members
            .values()
            .filter(|m| m.handle.user_id == handle.user_id)
            .count()
    }

    /// Removes a member. Returns (was a member, local connections of that user still members).
    pub fn remove(&self, handle: &ConnHandle) -> (bool, usize) {
        let mut members = self.members.write();
        let removed = members.remove(&handle.id).is_some();
        let left = members
            .values()
            .filter(|m| m.handle.user_id == handle.user_id)
            .count();
        (removed, left)
    }

    /// Number of local members.
    pub fn len(&self) -> usize {
        self.members.read().len()
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Local connections and channel memberships of this node.
pub struct Hub {
    channels: RwLock<HashMap<Arc<str>, Arc<ChannelEntry>>>,
    users: RwLock<HashMap<Arc<str>, Vec<ConnHandle>>>,
    conns: RwLock<HashMap<ConnId, ConnHandle>>,
    /// Muted users with connections here: until (Unix ms, `u64::MAX`: until lifted) and why.
    muted: RwLock<HashMap<Arc<str>, (u64, String)>>,
    /// Counts mute and unmute deliveries, so that a mute read from the engine before one of
    /// them arrived is not applied over it.
    mute_epoch: AtomicU64,
    next_id: AtomicU64,
    queue_size: usize,
    metrics: Arc<Metrics>,
    /// The deployment's nodes as last heard from (the console's overview).
    pub directory: crate::directory::NodeDirectory,
}

impl Hub {
    /// An empty hub whose connections queue at most `queue_size` frames.
    pub fn new(queue_size: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            channels: RwLock::default(),
            users: RwLock::default(),
            conns: RwLock::default(),
            muted: RwLock::default(),
            mute_epoch: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            queue_size: queue_size.max(1),
            metrics,
            directory: crate::directory::NodeDirectory::default(),
        }
    }

    /// Registers a new connection of `user_id` writing to `socket` (none: its frames only
    /// queue, for tests) and returns its handle and its kill signal.
    pub fn connect(
        &self,
        user_id: Arc<str>,
        socket: Option<Arc<TcpStream>>,
        shutdown: &CancellationToken,
    ) -> (ConnHandle, KillSignal) {
        let outbox = Arc::new(Outbox::new(
            socket,
            self.queue_size,
            self.metrics.frames_out.clone(),
        ));
        let kill = Arc::new(Kill {
            token: shutdown.child_token(),
            reason: OnceLock::new(),
        });
        let handle = {
            let mut users = self.users.write();
            let list = users.entry(user_id.clone()).or_default();
            let handle = ConnHandle {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                user_id,
                blocks: list.first().map(|h| h.blocks.clone()).unwrap_or_default(),
                outbox,
                kill: kill.clone(),
            };
            list.push(handle.clone());
            handle
        };
        self.conns.write().insert(handle.id, handle.clone());
        (handle, KillSignal(kill))
    }

    /// Forgets a connection (after it left its channels). Returns how many connections its
    /// user still has on this node.
    pub fn disconnect(&self, handle: &ConnHandle) -> usize {
        self.conns.write().remove(&handle.id);
        let mut users = self.users.write();
        let Some(list) = users.get_mut(&handle.user_id) else {
            return 0;
        };
        list.retain(|h| h.id != handle.id);
        let left = list.len();
        if left == 0 {
            users.remove(&handle.user_id);
            self.muted.write().remove(&handle.user_id);
        }
        left
    }

    /// The current mute epoch: read it before asking the engine for a user's mute, and hand it
    /// to [`load_mute`](Self::load_mute).
    pub fn mute_epoch(&self) -> u64 {
        self.mute_epoch.load(Ordering::Acquire)
    }

    /// Applies a user's recorded mute (read from the engine when a connection opens), unless a
    /// mute or unmute arrived since `epoch` (then it is stale: read again). Returns whether it
    /// was current.
    pub fn load_mute(&self, user_id: &Arc<str>, muted: Option<(u64, String)>, epoch: u64) -> bool {
        let mut map = self.muted.write();
        if self.mute_epoch.load(Ordering::Acquire) != epoch {
            return false;
        }
        if let Some(mute) = muted {
            map.insert(user_id.clone(), mute);
        }
        true
    }

    /// Why `user_id` may not send now, if muted (an ended mute is forgotten).
    pub fn mute_of(&self, user_id: &str, now_ms: u64) -> Option<String> {
        let (until, reason) = self.muted.read().get(user_id).cloned()?;
        if until > now_ms {
            return Some(muted_text(&reason, until, now_ms));
        }
        let mut map = self.muted.write();
        // Only the ended mute: a new one may have replaced it meanwhile.
        if map.get(user_id).is_some_and(|(u, _)| *u == until) {
            map.remove(user_id);
        }
        None
    }

    /// Applies a moderation action to the user's connections here.
    fn sanction(&self, user: &Arc<str>, sanction: &Sanction) {
        let (close, text, reason) = match sanction {
            Sanction::Mute { until_ms, reason } => {
                // `users` before `muted`, as `disconnect` takes them.
                let users = self.users.read();
                let mut map = self.muted.write();
                self.mute_epoch.fetch_add(1, Ordering::AcqRel);
                if users.contains_key(user) {
                    map.insert(user.clone(), (*until_ms, reason.clone()));
                }
                return;
            }
            Sanction::Unmute => {
                let mut map = self.muted.write();
                self.mute_epoch.fetch_add(1, Ordering::AcqRel);
                map.remove(user);
                return;
            }
            Sanction::Unban => return,
            Sanction::Kick { reason } => (KICKED, "You were kicked", reason),
            Sanction::Ban { reason, .. } => (BANNED, "You are banned", reason),
        };
        let text = if reason.is_empty() {
            text.to_owned()
        } else {
            format!("{text}: {reason}")
        };
        let frame = WsFrame::text(
            ErrorReply {
                error: text.into(),
                code: ErrorCode::Forbidden,
                reference: None,
            }
            .to_json(),
        );
        for handle in self.users.read().get(user).into_iter().flatten() {
            // The session writes what is queued (this frame) before the close frame.
            handle.close_after(close, frame.clone());
        }
    }

    /// The channel's entry, created when missing.
    pub fn entry(&self, channel: &str) -> Arc<ChannelEntry> {
        if let Some(entry) = self.channels.read().get(channel) {
            return entry.clone();
        }
        self.channels
            .write()
            .entry(Arc::from(channel))
            .or_default()
            .clone()
    }

    /// Records that messages of `channel` up to `until` went to `handle` as history when it
    /// joined, and takes their live copies out of its queue: they are not delivered twice.
    pub fn replayed(&self, channel: &str, handle: &ConnHandle, until: MessageId) {
        if let Some(entry) = self.existing_entry(channel)
            && let Some(member) = entry.members.write().get_mut(&handle.id)
        {
            member.replay_until = Some(until);
        }
        handle.outbox.forget_replayed(channel, until);
    }

    /// The channel's entry, if it exists.
    pub fn existing_entry(&self, channel: &str) -> Option<Arc<ChannelEntry>> {
        self.channels.read().get(channel).cloned()
    }

    /// Removes an empty entry; the caller holds its transition lock and marks it retired.
    pub fn retire(&self, channel: &str, entry: &Arc<ChannelEntry>) {
        let mut channels = self.channels.write();
        if channels
            .get(channel)
            .is_some_and(|current| Arc::ptr_eq(current, entry))
        {
            channels.remove(channel);
        }
    }

    /// The channels `conn` is a member of (a scan of every channel: for cleaning up after a
    /// connection whose task could not say, see `ws::session`).
    pub fn channels_of(&self, conn: ConnId) -> Vec<Arc<str>> {
        let channels = self.channels.read();
        let joined = channels
            .iter()
            .filter(|(_, e)| e.members.read().contains_key(&conn));
        joined.map(|(channel, _)| channel.clone()).collect()
    }

    /// Channels with local members (engine subscriptions this node needs).
    pub fn channel_count(&self) -> usize {
        self.channels.read().len()
    }

    /// Every local connection (for shutdown).
    pub fn connections(&self) -> Vec<ConnHandle> {
        self.conns.read().values().cloned().collect()
    }

    /// Applies a user's new block list to its connections here.
    fn blocks(&self, user: &str, blocks: &crate::engine::BlockSnapshot, reset: bool) {
        if let Some(handle) = self.users.read().get(user).and_then(|list| list.first()) {
            handle.blocks.apply(blocks, reset);
        }
    }

    /// Queues `frame` for every local member of `channel`, except those `origin` leaves out:
    /// the members who block the sender, and for a typing indicator the typist's own
    /// connections.
    fn fan_out_channel(
        &self,
        channel: &str,
        id: Option<MessageId>,
        frame: WsFrame,
        origin: Origin<'_>,
    ) {
        let Some(entry) = self.existing_entry(channel) else {
            return;
        };
        if id.is_some() {
            entry.messages.fetch_add(1, Ordering::Relaxed);
        }
        let channel: Arc<str> = Arc::from(channel);
        let start = std::time::Instant::now();
        let members = entry.members.read();
        let writer = if entry.load.lock().overloaded() {
            outbox::Writer::Task
        } else {
            outbox::Writer::Deliverer
        };
        // Two passes. Who gets the frame touches each member's entry and block list, cache
        // misses independent of each other that the processor overlaps in a loop without
        // syscalls; it also starts fetching each recipient's outbox, so that the writes that
        // follow find it in cache.
        let mut recipients: Vec<&ConnHandle> = Vec::with_capacity(members.len());
        recipients.extend(members.values().filter(|member| {
                !origin.leaves_out(&member.handle)
                    && !matches!((id, member.replay_until), (Some(id), Some(until)) if id <= until)
            })
            .map(|member| {
                member.handle.outbox.prefetch();
                &member.handle
            }));
        for handle in recipients {
            handle.send_by(
                Outgoing::Channel {
                    channel: channel.clone(),
                    id,
                    frame: frame.clone(),
                },
                writer,
                &self.metrics,
            );
        }
        drop(members);
        let now = std::time::Instant::now();
        entry.load.lock().record(now, now.duration_since(start));
    }
}

/// Where a channel frame comes from, which decides who does not get it.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    /// A presence event: every member gets it.
    Presence,
    /// A chat message of this user: not for the members who block the user.
    Message(&'a str),
    /// This user is typing: neither for the user's own connections nor for its blockers.
    Typing(&'a str),
}

impl Origin<'_> {
    /// Whether `member` does not get the frame. Costs one branch and an atomic load per member
    /// who blocks nobody.
    fn leaves_out(self, member: &ConnHandle) -> bool {
        match self {
            Origin::Presence => false,
            Origin::Message(from) => member.blocks.blocks(from),
            Origin::Typing(from) => *member.user_id == *from || member.blocks.blocks(from),
        }
    }
}

/// An event frame serialised straight from the shared payload: the same JSON as
/// `Event::to_json` (`{"type":...,"payload":...}`) without cloning the payload into an
/// [`Event`] first.
fn serialise<T: serde::Serialize>(kind: &'static str, payload: &T) -> WsFrame {
    #[derive(serde::Serialize)]
    struct Frame<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        payload: &'a T,
    }
    let json = serde_json::to_string(&Frame { kind, payload })
        .unwrap_or_else(|e| unreachable!("event serialisation: {e}"));
    WsFrame::text(json)
}

impl DeliverySink for Hub {
    fn deliver(&self, delivery: Delivery) {
        match delivery {
            Delivery::Message(message) => {
                let frame = serialise("chat_message_received", &*message);
                let origin = Origin::Message(&message.user_id);
                self.fan_out_channel(&message.channel, Some(message.id), frame, origin);
            }
            Delivery::UserJoined(change) => {
                let frame = serialise("user_joined", &*change);
                self.fan_out_channel(&change.channel, None, frame, Origin::Presence);
            }
            Delivery::UserLeft(change) => {
                let frame = serialise("user_left", &*change);
                self.fan_out_channel(&change.channel, None, frame, Origin::Presence);
            }
            Delivery::Direct { to, message } => {
                let frame = serialise("direct_message_received", &*message);
                let users = self.users.read();
                for handle in users.get(&to).into_iter().flatten() {
                    // Not delivered to a blocker; the sender had its usual ack.
                    if !handle.blocks.blocks(&message.from) {
                        handle.send(Outgoing::Frame(frame.clone()), &self.metrics);
                    }
                }
            }
            Delivery::Broadcast(message) => {
                let frame = serialise("broadcast", &*message);
                match &message.channel {
                    // To one channel: its members here, as a presence event (blocks aside).
                    Some(channel) => self.fan_out_channel(channel, None, frame, Origin::Presence),
                    None => {
                        for handle in self.conns.read().values() {
                            handle.send(Outgoing::Frame(frame.clone()), &self.metrics);
                        }
                    }
                }
            }
            Delivery::Sanction { user, sanction } => self.sanction(&user, &sanction),
            Delivery::Node(info) => self.directory.heard(Arc::unwrap_or_clone(info)),
            Delivery::Typing(typing) => {
                let frame = serialise("user_typing", &*typing);
                let origin = Origin::Typing(&typing.user_id);
                self.fan_out_channel(&typing.channel, None, frame, origin);
            }
            Delivery::Blocks {
                user,
                blocks,
                reset,
            } => self.blocks(&user, &blocks, reset),
        }
    }
}

#[cfg(test)]
mod tests;
