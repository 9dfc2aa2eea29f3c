//! Moderation: operator actions on users (mute, kick, ban, through the admin API, applied by
//! every node), and message review ([`Moderator`], with [`WordFilter`] as the built-in one).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::identity::Principal;

/// An operator action on a user. Every node applies it to the user's connections there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Sanction {
    /// The user's messages and direct messages are refused until `until_ms` (Unix ms).
    Mute {
        /// End of the mute (`u64::MAX`: until lifted).
        until_ms: u64,
        /// Shown to the user.
        reason: String,
    },
    /// Lifts a mute.
    Unmute,
    /// Closes every connection of the user (they may reconnect).
    Kick {
        /// Shown to the user.
        reason: String,
    },
    /// Closes every connection of the user and refuses new ones until `until_ms`.
    Ban {
        /// End of the ban (`u64::MAX`: until lifted).
        until_ms: u64,
        /// Shown to the user.
        reason: String,
    },
    /// Lifts a ban.
    Unban,
}

/// A user's current mute and ban, as stored by the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Muted until (Unix ms) and why.
    pub muted: Option<(u64, String)>,
    /// Banned until (Unix ms) and why.
    pub banned: Option<(u64, String)>,
}

impl Standing {
    /// The reason of the ban in force at `now_ms`, if any.
    pub fn ban_at(&self, now_ms: u64) -> Option<&str> {
        self.banned
            .as_ref()
            .filter(|(until, _)| *until > now_ms)
            .map(|(_, reason)| reason.as_str())
    }

    /// What a banned user is told at `now_ms`, if banned then.
    pub fn ban_text(&self, now_ms: u64) -> Option<String> {
        self.ban_at(now_ms).map(|reason| match reason {
            "" => "You are banned".to_owned(),
            reason => format!("You are banned: {reason}"),
        })
    }
}

/// The text a muted user gets.
pub fn muted_text(reason: &str, until_ms: u64, now_ms: u64) -> String {
    let mut text = String::from("You are muted");
    if !reason.is_empty() {
        text.push_str(": ");
        text.push_str(reason);
    }
    if until_ms != u64::MAX {
        let seconds = until_ms.saturating_sub(now_ms).div_ceil(1000);
        text.push_str(&format!(" ({seconds} s left)"));
    }
    text
}

/// Where a reviewed text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A channel message.
    Channel(&'a str),
    /// A direct message to this user id.
    Direct(&'a str),
    /// A username being set.
    Name,
}

/// What a [`Moderator`] decides about a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Deliver as is.
    Pass,
    /// Deliver this text instead (e.g. with words masked). For names: refused.
    Replace(String),
    /// Refuse; the sender gets `forbidden` with this text.
    Reject(String),
}

/// Reviews every chat message, direct message and username before it goes anywhere. Called on
/// the connection's task: keep it fast and free of IO.
pub trait Moderator: Send + Sync + 'static {
    /// The verdict on `text` from `who` to `target`.
    fn review(&self, who: &Principal, target: Target<'_>, text: &str) -> Review;
}

/// Masks listed words and phrases with `*`, one per character.
///
/// Matching ignores case (Unicode lowercase, character by character) and works on characters,
/// never splitting one. Entries in scripts written without spaces (CJK, kana, Hangul, Thai) match
/// anywhere; others only as whole words, so `ass` does not mask `class`.
#[derive(Debug, Clone, Default)]
pub struct WordFilter {
    entries: Vec<Vec<char>>,
}

fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// Scripts written without spaces between words.
fn unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF      // Thai, Lao
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F) // CJK Extensions B–F
}

impl WordFilter {
    /// A filter of these entries (blank ones ignored).
    pub fn new<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Self {
        let entries = entries
            .into_iter()
            .map(|e| e.as_ref().trim().chars().map(fold).collect::<Vec<_>>())
            .filter(|e| !e.is_empty())
            .collect();
        Self { entries }
    }

    /// Reads a list: one word or phrase per line, `#` starts a comment line.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self::new(
            text.lines().filter(|l| !l.trim_start().starts_with('#')),
        ))
    }

    /// Whether the filter has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `text` with every listed entry masked, or `None` when nothing matched.
    pub fn mask(&self, text: &str) -> Option<String> {
        if self.entries.is_empty() {
            // The default (no --word-filter): nothing to allocate on every message.
            return None;
        }
        let original: Vec<char> = text.chars().collect();
        let folded: Vec<char> = original.iter().copied().map(fold).collect();
        let mut masked = vec![false; original.len()];
        for entry in &self.entries {
            let whole_word = !entry.iter().any(|&c| unspaced(c));
            let mut start = 0;
            while start + entry.len() <= folded.len() {
                let end = start + entry.len();
                let hit = folded[start..end] == entry[..]
                    && (!whole_word
                        || ((start == 0 || !folded[start - 1].is_alphanumeric())
                            && (end == folded.len() || !folded[end].is_alphanumeric())));
                if hit {
                    masked[start..end].iter_mut().for_each(|m| *m = true);
                    start = end;
                } else {
                    start += 1;
                }
            }
        }
        masked.contains(&true).then(|| {
            original
                .iter()
                .zip(&masked)
                .map(|(&c, &m)| if m && !c.is_whitespace() { '*' } else { c })
                .collect()
        })
    }
}

impl Moderator for WordFilter {
    fn review(&self, _: &Principal, target: Target<'_>, text: &str) -> Review {
        match (self.mask(text), target) {
            (None, _) => Review::Pass,
            (Some(_), Target::Name) => Review::Reject("That name is not allowed".into()),
            (Some(masked), _) => Review::Replace(masked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_masked_whole_and_without_case() {
        let filter = WordFilter::new(["darn", "ass", "very bad", "дурак", "ばか", "笨蛋"]);
        assert_eq!(filter.mask("Darn it!").as_deref(), Some("**** it!"));
        assert_eq!(filter.mask("a class act"), None, "inside a word: kept");
        assert_eq!(filter.mask("you ass."), Some("you ***.".into()));
        assert_eq!(
            filter.mask("VERY BAD idea").as_deref(),
            Some("**** *** idea")
        );
        assert_eq!(filter.mask("Ты ДУРАК").as_deref(), Some("Ты *****"));
        assert_eq!(
            filter.mask("おまえはばかだ").as_deref(),
            Some("おまえは**だ")
        );
        assert_eq!(filter.mask("你是笨蛋吗").as_deref(), Some("你是**吗"));
        assert_eq!(filter.mask("all good 😀"), None);
        assert_eq!(filter.mask("darn😀darn").as_deref(), Some("****😀****"));
        assert!(WordFilter::new(["", "  "]).is_empty());
    }

    #[test]
    fn names_with_listed_words_are_refused_not_masked() {
        let filter = WordFilter::new(["darn"]);
        let who = Principal {
            user_id: "u".into(),
            scope: "guest".into(),
            claims: Default::default(),
        };
        assert!(matches!(
            filter.review(&who, Target::Name, "Darn"),
            Review::Reject(_)
        ));
        assert_eq!(filter.review(&who, Target::Name, "Ann"), Review::Pass);
        assert_eq!(
            filter.review(&who, Target::Channel("c"), "darn"),
            Review::Replace("****".into())
        );
    }

    #[test]
    fn muted_texts_say_why_and_how_long() {
        assert_eq!(muted_text("", u64::MAX, 0), "You are muted");
        assert_eq!(
            muted_text("spam", 10_500, 1_000),
            "You are muted: spam (10 s left)"
        );
        let standing = Standing {
            banned: Some((5_000, "cheating".into())),
            ..Default::default()
        };
        assert_eq!(standing.ban_at(4_999), Some("cheating"));
        assert_eq!(standing.ban_at(5_000), None);
    }
}
