//! A session's interface to the rest of the network thread: what it is given
//! ([`SessionLink`]) and how it ends ([`SessionEnd`]).

use protocol::ErrorCode;

use super::bridge::{CommandSource, EventSink};
use super::restore::Restore;
use crate::config::ChatPlugin;

/// All a session sees of the rest of the network thread.
pub(crate) struct SessionLink<'a> {
    /// The plugin's settings.
    pub config: &'a ChatPlugin,
    /// Commands from the game.
    pub commands: &'a CommandSource,
    /// Events (and the connection state) to the game.
    pub sink: &'a mut EventSink,
    /// What to restore, kept up to date for the next session.
    pub restore: &'a mut Restore,
    /// A session was up before this one (for [`ChatConnected::reconnect`](crate::ChatConnected::reconnect)).
    pub reconnect: bool,
}

/// How a session ended.
pub(crate) enum SessionEnd {
    /// The game asked to disconnect, or the app is closing.
    Stopped,
    /// The server refused the token.
    AuthRefused(String),
    /// The server refused the connection for another reason (too many connections, a ban):
    /// the token is fine, so keep it and try again later.
    Refused(ErrorCode, String),
    /// The connection could not be opened.
    Failed(String),
    /// The connection was up and then ended.
    Dropped(String),
}
