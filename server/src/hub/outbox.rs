//! A connection's outgoing side, shared by its task and by every task that delivers to it.
//!
//! Most deliveries find nothing waiting for the connection: then the deliverer writes the
//! message's frame (encoded once per message, the same bytes for every member) straight to the
//! socket with one non-blocking write, and the connection's task is not woken at all. Only when
//! the socket would block, a write is partial, or the task is answering a request (its replies
//! go first) does a frame wait in the queue, in order, for the task to write when the socket
//! can take it. The queue is bounded: a client that stops reading fills it and is closed as a
//! slow consumer, as before.
//!
//! Every byte written to the socket goes through here under one lock (deliveries, the task's
//! replies, and tungstenite's pings, pongs and close frames), so frames never interleave.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use protocol::MessageId;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// tungstenite's frames (pongs, pings, close) waiting at most; past it tungstenite waits for the
/// socket (a client that pings without reading cannot grow the queue).
const RAW_WAITING: usize = 8;
/// Frames written per vectored write (Linux takes up to 1024 slices; a few dozen cover a burst).
const SLICES_PER_WRITE: usize = 64;

/// A server text frame (RFC 6455 §5.2: header and unmasked payload), encoded once and shared by
/// every connection it is written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame(Bytes);

impl WsFrame {
    /// The text frame carrying `text`.
    pub fn text(text: impl Into<Bytes>) -> Self {
        Self::encode(Frame::message(text, OpCode::Data(Data::Text), true))
    }

    /// The close frame with `code` and `reason` (for a connection whose WebSocket is gone; a
    /// live one closes through tungstenite).
    pub fn close(code: u16, reason: &str) -> Self {
        Self::encode(Frame::close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        })))
    }

    fn encode(frame: Frame) -> Self {
        let mut encoded = Vec::with_capacity(frame.len());
        frame
            .format(&mut encoded)
            .unwrap_or_else(|e| unreachable!("writing to a Vec: {e}"));
        Self(Bytes::from(encoded))
    }

    /// The frame's bytes, to queue as they are.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The frame's bytes as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A frame for one connection.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Send as is.
    Frame(WsFrame),
    /// A channel frame: it waits in the queue tagged with its channel and id, so that a `leave`
    /// or a history replay can take it out again.
    Channel {
        /// The channel.
        channel: Arc<str>,
        /// The message id (none for presence events).
        id: Option<MessageId>,
        /// The encoded frame.
        frame: WsFrame,
    },
}

/// Who writes a delivery to an idle connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The delivering task, at once (the cheapest: no wake-up).
    Deliverer,
    /// The connection's task (spreads a large fan-out over the runtime's threads).
    Task,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Written to the socket now.
    Written,
    /// Queued for the connection's task.
    Queued,
    /// The queue is full: the client reads too slowly.
    Full,
    /// The connection is closing or gone.
    Closed,
}

/// What one [`Outbox::try_flush`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued is written.
    Done,
    /// The socket takes no more now: wait until it is writable.
    Blocked,
    /// Stopped after the batch; more is queued.
    More,
    /// The socket failed (the peer is gone), or there is none.
    Failed,
}

/// Bytes waiting for the socket, in the order they must go out.
#[derive(Debug)]
struct Queued {
    bytes: Bytes,
    /// For channel frames: the channel and the message id, to take them out again.
    channel: Option<(Arc<str>, Option<MessageId>)>,
    kind: Kind,
}

/// Who queued bytes, which decides what bounds them and whether they count as a frame out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A delivery from another task (bounded by the capacity; a frame out).
    Delivery,
    /// One of the task's replies (bounded by the request; a frame out).
    Reply,
    /// tungstenite's own bytes (bounded by [`RAW_WAITING`]; counted in no metric).
    Raw,
}

#[derive(Debug)]
struct State {
    /// Bytes in the order they go out.
    queue: VecDeque<Queued>,
    /// Bytes of the front entry already written (a partial write).
    front_written: usize,
    /// Deliveries that arrived while the task answered a request: they go out after its
    /// replies (as if they arrived after the request).
    held: VecDeque<Queued>,
    /// Deliveries in `queue` and `held` (what the capacity bounds).
    from_others: usize,
    /// tungstenite's frames in `queue` (see [`RAW_WAITING`]).
    raw_waiting: usize,
    /// The task's replies in `queue` (see [`Outbox::finish_request`]).
    replies_waiting: usize,
    /// The task is answering a request (or has not queued its welcome yet).
    busy: bool,
    /// The connection is closing: no more deliveries.
    closed: bool,
    /// A write failed: the peer is gone.
    failed: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            front_written: 0,
            held: VecDeque::new(),
            from_others: 0,
            raw_waiting: 0,
            replies_waiting: 0,
            busy: true,
            closed: false,
            failed: false,
        }
    }
}

impl State {
    /// Removes held deliveries that `drop` selects.
    fn remove_held(&mut self, drop: impl Fn(&Queued) -> bool) {
        let before = self.held.len();
        self.held.retain(|entry| !drop(entry));
        self.from_others -= before - self.held.len();
    }

    /// Removes every delivery not yet begun (`queue` and `held`).
    fn discard_deliveries(&mut self) {
        self.remove_held(|_| true);
        let keep_front = self.front_written > 0;
        let mut index = 0;
        let mut removed = 0;
        self.queue.retain(|entry| {
            let keep = (index == 0 && keep_front) || entry.kind != Kind::Delivery;
            removed += usize::from(!keep);
            index += 1;
            keep
        });
        self.from_others -= removed;
    }
}

/// The outgoing side of one connection; see the module text.
#[derive(Debug)]
pub struct Outbox {
    /// The connection's socket; none for a connection that has no socket (the fuzz target),
    /// whose frames only queue.
    socket: Option<Arc<TcpStream>>,
    state: Mutex<State>,
    /// Tells the connection's task that frames wait for it.
    wake: Notify,
    /// Queued deliveries at most (`--outgoing-queue`).
    capacity: usize,
    /// `chat_frames_out_total`: every frame written, whoever wrote it.
    frames_out: Counter,
}

impl Outbox {
    /// The outgoing side of `socket`, queueing at most `capacity` deliveries and counting the
    /// frames it writes in `frames_out`.
    pub fn new(socket: Option<Arc<TcpStream>>, capacity: usize, frames_out: Counter) -> Self {
        Self {
            socket,
            state: Mutex::default(),
            wake: Notify::new(),
            capacity: capacity.max(1),
            frames_out,
        }
    }

    /// Starts fetching what a delivery reads (the lock and the queue's header, and the socket)
    /// into the processor's cache, ahead of it: a hint, with no effect but speed (none but on
    /// x86_64). Reading the socket's address loads the outbox's own first line.
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            const LINE: usize = 64;
            let state = std::ptr::from_ref(&self.state).cast::<i8>();
            let size = size_of::<Mutex<State>>();
            // Every cache line the state touches: each 64th byte, and the last one.
            let lines = (0..size).step_by(LINE).chain([size - 1]);
            let socket = self
                .socket
                .as_deref()
                .map(|socket| std::ptr::from_ref(socket).cast::<i8>());
            let addresses = lines.map(|offset| state.wrapping_add(offset)).chain(socket);
            for address in addresses {
                // SAFETY: a prefetch only hints the cache; it reads nothing the program sees
                // and does not fault, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(address) };
            }
        }
    }

    /// Delivers a frame from another task: written now when nothing waits before it and the
    /// socket takes it whole, queued otherwise.
    pub fn deliver(&self, item: Outgoing) -> Delivered {
        self.deliver_by(item, Writer::Deliverer)
    }

    /// Delivers a frame, written by the deliverer when it may and nothing waits, or else by the
    /// connection's task.
    pub fn deliver_by(&self, item: Outgoing, writer: Writer) -> Delivered {
        let (frame, channel) = match item {
            Outgoing::Frame(frame) => (frame, None),
            Outgoing::Channel { channel, id, frame } => (frame, Some((channel, id))),
        };
        self.deliver_bytes(frame.0, channel, false, writer)
    }

    /// Queues a frame that must reach the client before the connection closes (a kick's
    /// reason): not refused for a full queue.
    pub fn deliver_last(&self, frame: WsFrame) -> Delivered {
        self.deliver_bytes(frame.0, None, true, Writer::Deliverer)
    }

    fn deliver_bytes(
        &self,
        bytes: Bytes,
        channel: Option<(Arc<str>, Option<MessageId>)>,
        beyond_capacity: bool,
        writer: Writer,
    ) -> Delivered {
        let mut state = self.state.lock();
        if state.closed || state.failed {
            return Delivered::Closed;
        }
        if state.queue.is_empty()
            && !state.busy
            && writer == Writer::Deliverer
            && let Some(socket) = &self.socket
        {
            // A plain non-blocking send: tokio's `try_write` would also consult (another cache
            // line per member) and keep the socket's readiness, which only the task needs. A
            // send that would block leaves that readiness set: the task's first flush finds
            // the socket full and clears it (one extra wake-up, only then).
            match socket2::SockRef::from(&**socket).send(&bytes) {
                Ok(written) if written == bytes.len() => {
                    self.frames_out.inc();
                    return Delivered::Written;
                }
                Ok(written) => state.front_written = written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    state.failed = true;
                    self.wake.notify_one();
                    return Delivered::Closed;
                }
            }
        } else if state.from_others >= self.capacity && !beyond_capacity {
            return Delivered::Full;
        }
        let entry = Queued {
            bytes,
            channel,
            kind: Kind::Delivery,
        };
        state.from_others += 1;
        if state.busy {
            // The task writes these after its replies.
            state.held.push_back(entry);
        } else {
            if state.queue.is_empty() {
                self.wake.notify_one();
            }
            state.queue.push_back(entry);
        }
        Delivered::Queued
    }

    /// Queues one of the task's replies behind what waits; the task writes it with
    /// [`finish_request`](Self::finish_request) (or [`flush`](Self::flush)).
    pub fn push_reply(&self, frame: WsFrame) {
        let mut state = self.state.lock();
        state.replies_waiting += 1;
        state.queue.push_back(Queued {
            bytes: frame.0,
            channel: None,
            kind: Kind::Reply,
        });
    }

    /// Queues bytes tungstenite wrote (its pings, pongs and close frames, whole frames), unless
    /// [`RAW_WAITING`] of them wait already: false then (write some, then try again).
    pub fn push_raw(&self, bytes: Bytes) -> bool {
        let mut state = self.state.lock();
        if state.raw_waiting >= RAW_WAITING {
            return false;
        }
        if !bytes.is_empty() {
            state.raw_waiting += 1;
            state.queue.push_back(Queued {
                bytes,
                channel: None,
                kind: Kind::Raw,
            });
        }
        true
    }

    /// The task starts answering a request: deliveries are held until
    /// [`end_request`](Self::end_request), then queue behind its replies.
    pub fn begin_request(&self) {
        self.state.lock().busy = true;
    }

    /// The request is answered (its replies queued): deliveries that arrived meanwhile join the
    /// queue behind them, so that one write can carry both (the task flushes next, with
    /// [`try_flush`](Self::try_flush), and what the socket does not take then waits for
    /// [`ready`](Self::ready)). Later deliveries go straight to the socket again once the
    /// queue is empty.
    pub fn end_request(&self) {
        let mut state = self.state.lock();
        let state = &mut *state;
        state.busy = false;
        state.queue.append(&mut state.held);
    }

    /// Ends a request: its replies, and behind them the deliveries that arrived meanwhile, go
    /// out in as few writes as the socket takes (the ack and the sender's own copy of its
    /// message in one). Returns once the replies are written, so that a client that sends
    /// requests without reading the answers is held up rather than buffered for (a request
    /// with no reply, such as `typing`, waits for nothing); deliveries the socket did not take
    /// wait for [`ready`](Self::ready). Fails when the socket does.
    pub async fn finish_request(&self) -> Result<(), ()> {
        self.end_request();
        loop {
            match self.try_flush(SLICES_PER_WRITE) {
                Flush::Done => return Ok(()),
                Flush::Failed => return Err(()),
                _ if self.state.lock().replies_waiting == 0 => return Ok(()),
                Flush::More => {}
                Flush::Blocked => self.writable().await.map_err(|_| ())?,
            }
        }
    }

    /// Takes out the frames of `channel` that arrived during the current request (it left the
    /// channel: what arrived before the request is still its to receive).
    pub fn forget_channel(&self, channel: &str) {
        self.state
            .lock()
            .remove_held(|entry| matches!(&entry.channel, Some((c, _)) if &**c == channel));
    }

    /// Takes out the held messages of `channel` up to `until` (they went out as history).
    pub fn forget_replayed(&self, channel: &str, until: MessageId) {
        self.state.lock().remove_held(|entry| {
            matches!(&entry.channel, Some((c, Some(id))) if &**c == channel && *id <= until)
        });
    }

    /// The connection is closing: refuses further deliveries. With `discard`, also drops the
    /// deliveries that wait (a slow consumer's backlog), so the close frame goes out next.
    /// Returns whether it was open until now.
    pub fn close(&self, discard: bool) -> bool {
        let mut state = self.state.lock();
        let was_open = !state.closed;
        state.closed = true;
        if discard {
            state.discard_deliveries();
        }
        was_open
    }

    /// Writes queued bytes until the queue is empty, the socket blocks, or about `batch` frames
    /// went out; returns which.
    pub fn try_flush(&self, batch: usize) -> Flush {
        let Some(socket) = &self.socket else {
            return Flush::Failed;
        };
        let mut frames = 0u64;
        let flush = self.write_queued(socket, batch, &mut frames);
        self.frames_out.inc_by(frames);
        flush
    }

    fn write_queued(&self, socket: &TcpStream, batch: usize, frames: &mut u64) -> Flush {
        let mut state = self.state.lock();
        let mut entries = 0;
        loop {
            if state.failed {
                return Flush::Failed;
            }
            if state.queue.is_empty() {
                return Flush::Done;
            }
            if entries >= batch {
                return Flush::More;
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); SLICES_PER_WRITE];
                let mut count = 0;
                for (index, entry) in state.queue.iter().take(SLICES_PER_WRITE).enumerate() {
                    let skip = if index == 0 { state.front_written } else { 0 };
                    slices[count] = IoSlice::new(&entry.bytes[skip..]);
                    count += 1;
                }
                socket.try_write_vectored(&slices[..count])
            };
            match written {
                // A socket that takes nothing of a non-empty write is gone.
                Ok(0) => {
                    state.failed = true;
                    return Flush::Failed;
                }
                Ok(mut written) => {
                    while written > 0 {
                        let front = &state.queue[0];
                        let left = front.bytes.len() - state.front_written;
                        if written < left {
                            state.front_written += written;
                            break;
                        }
                        written -= left;
                        state.front_written = 0;
                        let done = state.queue.pop_front().expect("front entry");
                        entries += 1;
                        match done.kind {
                            Kind::Delivery => {
                                state.from_others -= 1;
                                *frames += 1;
                            }
                            Kind::Reply => {
                                state.replies_waiting -= 1;
                                *frames += 1;
                            }
                            Kind::Raw => state.raw_waiting -= 1,
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(_) => {
                    state.failed = true;
                    return Flush::Failed;
                }
            }
        }
    }

    /// Writes everything queued, waiting for the socket as needed. Fails when the socket does
    /// (the peer is gone).
    pub async fn flush(&self) -> Result<(), ()> {
        loop {
            match self.try_flush(usize::MAX) {
                Flush::Done => return Ok(()),
                Flush::More => {}
                Flush::Failed => return Err(()),
                Flush::Blocked => self.writable().await.map_err(|_| ())?,
            }
        }
    }

    /// Resolves when frames wait and the socket may take some: then call
    /// [`try_flush`](Self::try_flush). Never resolves while the task answers a request.
    pub async fn ready(&self) -> io::Result<()> {
        loop {
            let notified = self.wake.notified();
            let (work, failed) = {
                let state = self.state.lock();
                (!state.queue.is_empty() && !state.busy, state.failed)
            };
            if failed {
                return Ok(());
            }
            if work {
                return self.writable().await;
            }
            notified.await;
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match &self.socket {
            Some(socket) => socket.writable().await,
            None => std::future::pending().await,
        }
    }

    /// Polls for writability on behalf of the task's WebSocket (see [`crate::ws`]).
    pub fn poll_writable(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match &self.socket {
            Some(socket) => socket.poll_write_ready(cx),
            None => std::task::Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests;
