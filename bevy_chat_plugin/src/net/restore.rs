//! What outlives a connection: the tokens, the name and the channels (with how far each was
//! read), which every new session restores.

use std::collections::BTreeMap;

use protocol::MessageId;

use crate::auth::Tokens;

/// A channel the player wants to be in, and how far it has read.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelTrack {
    /// Newest message id received (live or history): the resume point after a reconnect.
    pub last_id: Option<MessageId>,
    /// The server confirmed the join on the current connection.
    pub joined: bool,
    /// The server confirmed a join of this channel on some connection (a later join is a
    /// re-join).
    pub ever_joined: bool,
}

/// What a session must restore on a new connection. The worker keeps it between sessions; a
/// session updates it as the game and the server change things.
#[derive(Debug, Default)]
pub(crate) struct Restore {
    /// The tokens to connect with (and refresh).
    pub tokens: Option<Tokens>,
    /// The name to (re)apply on connect.
    pub name: Option<String>,
    /// Channels to be in, kept across reconnects.
    pub channels: BTreeMap<String, ChannelTrack>,
}

impl Restore {
    /// Every channel is to be joined again (the connection ended).
    pub fn connection_ended(&mut self) {
        for track in self.channels.values_mut() {
            track.joined = false;
        }
    }
}
