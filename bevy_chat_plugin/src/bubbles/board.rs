//! Which bubbles exist: a plain resource with no rendering in it, so the rules (channel filter,
//! stacking, expiry, fading) are tested without a window.

use std::collections::{HashMap, HashSet, VecDeque};

use bevy::prelude::*;

use crate::messages::ChatMessageReceived;

/// Which channels' messages become bubbles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BubbleChannels {
    /// Every joined channel.
    #[default]
    All,
    /// Only these channels.
    Only(HashSet<String>),
}

impl BubbleChannels {
    /// Only the given channels.
    pub fn only<I, S>(channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Only(channels.into_iter().map(Into::into).collect())
    }

    /// Whether messages of `channel` are shown.
    pub fn allows(&self, channel: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(channels) => channels.contains(channel),
        }
    }
}

/// How speech bubbles look and behave. Change it at any time; new values apply from the next
/// frame (sizes and colours to existing bubbles too).
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct ChatBubbleStyle {
    /// Seconds a bubble stays, fade included.
    pub lifetime: f32,
    /// Seconds of fading out at the end of the lifetime.
    pub fade: f32,
    /// Bubbles stacked above one speaker at most; the oldest goes first.
    pub max_per_speaker: usize,
    /// Widest a bubble gets (logical pixels); longer text wraps.
    pub max_width: f32,
    /// Text size (logical pixels).
    pub font_size: f32,
    /// The font. The default handle is Bevy's embedded default font (ASCII only); load a font
    /// with more scripts for players who write in them.
    pub font: bevy::text::FontSource,
    /// Text colour.
    pub text_color: Color,
    /// Panel colour behind the text.
    pub background: Color,
    /// Screen distance (logical pixels) between the speaker's anchor point and the lowest bubble.
    pub vertical_offset: f32,
    /// Which channels' messages are shown.
    pub channels: BubbleChannels,
}

impl Default for ChatBubbleStyle {
    fn default() -> Self {
        Self {
            lifetime: 6.0,
            fade: 1.0,
            max_per_speaker: 3,
            max_width: 260.0,
            font_size: 16.0,
            font: default(),
            text_color: Color::srgb(0.08, 0.08, 0.1),
            background: Color::srgba(0.97, 0.97, 0.94, 0.92),
            vertical_offset: 36.0,
            channels: BubbleChannels::All,
        }
    }
}

impl ChatBubbleStyle {
    /// Opacity (0..=1) of a bubble `age` seconds old: 1 until the fade starts, then down to 0 at
    /// the end of the lifetime.
    pub fn opacity(&self, age: f32) -> f32 {
        let fade = self.fade.clamp(0.0, self.lifetime.max(0.0));
        let fade_start = self.lifetime - fade;
        if age < fade_start {
            1.0
        } else if age >= self.lifetime || fade <= 0.0 {
            0.0
        } else {
            1.0 - (age - fade_start) / fade
        }
    }
}

/// One bubble: a line a user said.
#[derive(Debug, Clone, PartialEq)]
pub struct Bubble {
    /// Unique within this app, increasing.
    pub id: u64,
    /// The channel it was said in.
    pub channel: String,
    /// The text.
    pub text: String,
    /// When it appeared (seconds on the app's clock).
    pub born: f64,
}

/// The live bubbles of every speaker, by user id, oldest first. Filled from
/// [`ChatMessageReceived`] by [`ChatBubblesPlugin`](super::ChatBubblesPlugin); read it to draw
/// bubbles your own way.
#[derive(Resource, Debug, Default)]
pub struct ChatBubbleBoard {
    speakers: HashMap<String, VecDeque<Bubble>>,
    next_id: u64,
}

impl ChatBubbleBoard {
    /// Adds a bubble for a live channel message if the style shows its channel; drops the
    /// speaker's oldest bubbles beyond the style's maximum. Returns the new bubble's id, or `None`
    /// when the message makes no bubble (history, a filtered channel, a maximum of 0).
    ///
    /// Users without a [`ChatSpeaker`](super::ChatSpeaker) entity get bubbles too (nothing draws
    /// them): an avatar spawned in reaction to the same message, a frame later, still shows it.
    /// Memory stays bounded by who spoke within one lifetime.
    pub fn push(
        &mut self,
        message: &ChatMessageReceived,
        now: f64,
        style: &ChatBubbleStyle,
    ) -> Option<u64> {
        if message.from_history
            || style.max_per_speaker == 0
            || !style.channels.allows(&message.channel)
        {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let stack = self.speakers.entry(message.user_id.clone()).or_default();
        stack.push_back(Bubble {
            id,
            channel: message.channel.clone(),
            text: message.text.clone(),
            born: now,
        });
        while stack.len() > style.max_per_speaker {
            stack.pop_front();
        }
        Some(id)
    }

    /// Removes bubbles older than the lifetime, and bubbles beyond the maximum per speaker (when
    /// it shrank).
    pub fn expire(&mut self, now: f64, style: &ChatBubbleStyle) {
        let lifetime = f64::from(style.lifetime);
        self.speakers.retain(|_, stack| {
            stack.retain(|b| now - b.born < lifetime);
            while stack.len() > style.max_per_speaker {
                stack.pop_front();
            }
            !stack.is_empty()
        });
    }

    /// A user's live bubbles, oldest first (empty when none).
    pub fn bubbles(&self, user_id: &str) -> impl ExactSizeIterator<Item = &Bubble> {
        static NONE: VecDeque<Bubble> = VecDeque::new();
        self.speakers.get(user_id).unwrap_or(&NONE).iter()
    }

    /// Users with at least one bubble.
    pub fn speakers(&self) -> impl Iterator<Item = &str> {
        self.speakers.keys().map(String::as_str)
    }

    /// Number of live bubbles.
    pub fn len(&self) -> usize {
        self.speakers.values().map(VecDeque::len).sum()
    }

    /// Whether no bubble is live.
    pub fn is_empty(&self) -> bool {
        self.speakers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::MessageId;

    fn message(user: &str, channel: &str, text: &str) -> ChatMessageReceived {
        ChatMessageReceived {
            channel: channel.into(),
            id: MessageId::default(),
            user_id: user.into(),
            username: user.to_uppercase(),
            text: text.into(),
            ts: 0,
            from_history: false,
        }
    }

    fn texts<'a>(board: &'a ChatBubbleBoard, user: &str) -> Vec<&'a str> {
        board.bubbles(user).map(|b| b.text.as_str()).collect()
    }

    #[test]
    fn live_messages_become_bubbles_history_does_not() {
        let style = ChatBubbleStyle::default();
        let mut board = ChatBubbleBoard::default();
        assert!(
            board
                .push(&message("u1", "lobby", "hi"), 0.0, &style)
                .is_some()
        );
        // History is not speech.
        let mut old = message("u1", "lobby", "yesterday");
        old.from_history = true;
        assert!(board.push(&old, 0.0, &style).is_none());
        assert_eq!(texts(&board, "u1"), ["hi"]);
        assert_eq!(board.bubbles("u2").len(), 0);
        assert_eq!(board.len(), 1);
        assert_eq!(board.speakers().collect::<Vec<_>>(), ["u1"]);
        let none = ChatBubbleStyle {
            max_per_speaker: 0,
            ..default()
        };
        assert!(
            board
                .push(&message("u1", "lobby", "x"), 0.0, &none)
                .is_none()
        );
    }

    #[test]
    fn the_channel_filter_applies() {
        let style = ChatBubbleStyle {
            channels: BubbleChannels::only(["lobby"]),
            ..default()
        };
        let mut board = ChatBubbleBoard::default();
        board.push(&message("u1", "lobby", "shown"), 0.0, &style);
        board.push(&message("u1", "trade", "hidden"), 0.0, &style);
        assert_eq!(texts(&board, "u1"), ["shown"]);
        assert!(BubbleChannels::All.allows("anything"));
    }

    #[test]
    fn stacks_keep_the_newest_and_drop_the_oldest_first() {
        let style = ChatBubbleStyle {
            max_per_speaker: 2,
            ..default()
        };
        let mut board = ChatBubbleBoard::default();
        for (n, text) in ["one", "two", "three"].into_iter().enumerate() {
            board.push(&message("u1", "lobby", text), n as f64, &style);
        }
        assert_eq!(texts(&board, "u1"), ["two", "three"]);
        let ids: Vec<u64> = board.bubbles("u1").map(|b| b.id).collect();
        assert!(ids[0] < ids[1]);
        // Other speakers have their own stacks.
        board.push(&message("u2", "lobby", "mine"), 2.0, &style);
        assert_eq!(texts(&board, "u2"), ["mine"]);

        // A smaller maximum applies on the next expiry pass.
        let smaller = ChatBubbleStyle {
            max_per_speaker: 1,
            ..default()
        };
        board.expire(2.0, &smaller);
        assert_eq!(texts(&board, "u1"), ["three"]);
    }

    #[test]
    fn bubbles_expire_after_their_lifetime() {
        let style = ChatBubbleStyle {
            lifetime: 2.0,
            ..default()
        };
        let mut board = ChatBubbleBoard::default();
        board.push(&message("u1", "lobby", "early"), 0.0, &style);
        board.push(&message("u1", "lobby", "late"), 1.5, &style);
        board.expire(1.9, &style);
        assert_eq!(texts(&board, "u1"), ["early", "late"]);
        board.expire(2.0, &style);
        assert_eq!(texts(&board, "u1"), ["late"]);
        board.expire(3.5, &style);
        assert!(board.is_empty());
    }

    #[test]
    fn opacity_holds_then_fades_to_zero() {
        let style = ChatBubbleStyle {
            lifetime: 4.0,
            fade: 1.0,
            ..default()
        };
        assert_eq!(style.opacity(0.0), 1.0);
        assert_eq!(style.opacity(3.0), 1.0);
        assert!((style.opacity(3.5) - 0.5).abs() < 1e-6);
        assert_eq!(style.opacity(4.0), 0.0);
        let no_fade = ChatBubbleStyle {
            fade: 0.0,
            ..style.clone()
        };
        assert_eq!(no_fade.opacity(3.99), 1.0);
        assert_eq!(no_fade.opacity(4.0), 0.0);
        // A fade longer than the lifetime starts at once.
        let long_fade = ChatBubbleStyle {
            fade: 10.0,
            ..style
        };
        assert!((long_fade.opacity(2.0) - 0.5).abs() < 1e-6);
    }
}
