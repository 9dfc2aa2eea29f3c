//! Wire types of the bevy chat protocol.
//!
//! The protocol is JSON over WebSocket text frames, one object per frame, compatible with the
//! AWS Game Backend Framework "Simple WebSocket Chat" sample (`set-name`, `join`, `leave`,
//! `message`) and extended with history, presence, direct messages, broadcast and keep-alive.
//! See `docs/PROTOCOL.md` in the repository for the full reference.
//!
//! This crate does no IO. The server parses client frames with [`parse_client_frame`] (every bad
//! frame becomes a [`RequestError`] that renders as the right error reply) and serialises
//! [`Reply`] / [`Event`] values; a client does the reverse with [`parse_server_frame`] and
//! [`ClientFrame::to_json`].
//!
//! ```
//! use protocol::{parse_client_frame, ClientRequest};
//! let frame = parse_client_frame(r#"{"type":"join","payload":{"channel":"lobby"},"ref":7}"#).unwrap();
//! assert!(matches!(frame.request, ClientRequest::Join { ref channel, .. } if channel == "lobby"));
//! ```

mod channels;
mod client;
mod error;
mod events;
mod identity;
mod ids;
mod server;

pub use channels::{RESERVED_CHANNEL_PREFIXES, is_reserved_channel};
pub use client::{ClientFrame, ClientRequest, RequestError, parse_client_frame};
pub use error::ErrorCode;
pub use events::{
    BlockedUsers, BroadcastMessage, ChatMessage, DirectMessage, Event, HistoryPage, PresenceChange,
    PresenceList, PresenceUser, TypingUser,
};
pub use identity::{LoginResponse, RefreshResponse};
pub use ids::{MessageId, ParseMessageIdError, Ref};
pub use server::{ErrorReply, Reply, ServerFrame, ServerFrameError, parse_server_frame};
