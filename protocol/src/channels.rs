//! Channel name rules that clients need to know as well as the server.

/// First characters that mark a reserved channel name: `@` and its lookalikes, the fullwidth
/// commercial at (U+FF20) and the small commercial at (U+FE6B). Clients use `@…` names for
/// their own, local namespaces (the Bevy plugin's `@system` log, for example), so the server
/// refuses them as channels (`bad_channel`).
pub const RESERVED_CHANNEL_PREFIXES: [char; 3] = ['@', '\u{FF20}', '\u{FE6B}'];

/// Whether `channel` starts with a reserved character (see [`RESERVED_CHANNEL_PREFIXES`]).
///
/// ```
/// assert!(protocol::is_reserved_channel("@system"));
/// assert!(protocol::is_reserved_channel("\u{FF20}system"));
/// assert!(!protocol::is_reserved_channel("lobby@home"));
/// ```
pub fn is_reserved_channel(channel: &str) -> bool {
    channel
        .chars()
        .next()
        .is_some_and(|c| RESERVED_CHANNEL_PREFIXES.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_and_its_lookalikes_are_reserved_only_in_front() {
        for reserved in ["@", "@system", "\u{FF20}x", "\u{FE6B}x", "@ lobby"] {
            assert!(is_reserved_channel(reserved), "{reserved:?}");
        }
        for open in ["", "lobby", "a@b", " @x", "x\u{FF20}"] {
            assert!(!is_reserved_channel(open), "{open:?}");
        }
    }
}
