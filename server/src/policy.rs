//! Channel access rules: who may join a channel and who may send to it.
//!
//! The default is the seed's: every channel is open to everyone. `--channel-rules FILE` loads
//! [`ChannelRules`] from TOML; a game can also plug in its own [`ChannelPolicy`] with
//! [`Server::bind_with`](crate::Server::bind_with).
//!
//! ```toml
//! # First matching pattern wins; channels no pattern matches stay open.
//! [[channel]]
//! pattern = "team-red-*"            # `*`: any run of characters, `?`: one character
//! join = { claim = "team", equals = "red" }
//!
//! [[channel]]
//! pattern = "announcements"
//! join = "anyone"
//! send = { users = ["2f6c0a4e-..."] }
//!
//! [[channel]]
//! pattern = "staff"
//! join = { scope = "authenticated" }
//! ```

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use wildmatch::WildMatch;

use crate::identity::Principal;

/// A verdict of a [`ChannelPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Go ahead.
    Allow,
    /// Refused; the client gets `forbidden` with this text.
    Deny(String),
}

/// Decides who may join and send in which channel. Called on every `join` and every `message`,
/// on the connection's task: keep it fast and free of IO (precompute what you need).
pub trait ChannelPolicy: Send + Sync + 'static {
    /// Whether `who` may join `channel`.
    fn may_join(&self, who: &Principal, channel: &str) -> Access;
    /// Whether `who` may send a message to `channel` (which it has joined).
    fn may_send(&self, who: &Principal, channel: &str) -> Access;
}

/// The seed's behaviour: every channel is open to everyone.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenChannels;

impl ChannelPolicy for OpenChannels {
    fn may_join(&self, _: &Principal, _: &str) -> Access {
        Access::Allow
    }

    fn may_send(&self, _: &Principal, _: &str) -> Access {
        Access::Allow
    }
}

/// Who a rule lets in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    untagged,
    expecting = r#""anyone", "nobody", { scope = "..." }, { claim = "...", equals = ... } or { users = ["...", ...] }"#
)]
pub enum Who {
    /// `"anyone"` or `"nobody"`.
    Keyword(Keyword),
    /// `{ scope = "authenticated" }`: tokens with this `scope`.
    Scope {
        /// The required scope.
        scope: String,
    },
    /// `{ claim = "team", equals = "red" }`: tokens whose claim equals the value (or, for an
    /// array claim, contains it); without `equals`, tokens that carry the claim as `true`.
    Claim {
        /// The claim's name.
        claim: String,
        /// The value it must have.
        #[serde(default)]
        equals: Option<Value>,
    },
    /// `{ users = ["id", ...] }`: these user ids (`sub`).
    Users {
        /// The allowed user ids.
        users: Vec<String>,
    },
}

/// `"anyone"` or `"nobody"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keyword {
    /// Every connected user.
    Anyone,
    /// No one (e.g. a read-only channel for `send`).
    Nobody,
}

impl Who {
    /// Whether `principal` is let in.
    pub fn admits(&self, principal: &Principal) -> bool {
        match self {
            Who::Keyword(Keyword::Anyone) => true,
            Who::Keyword(Keyword::Nobody) => false,
            Who::Scope { scope } => *principal.scope == **scope,
            Who::Claim { claim, equals } => {
                let Some(value) = principal.claims.get(claim) else {
                    return false;
                };
                match (equals, value) {
                    (None, value) => *value == Value::Bool(true),
                    (Some(wanted), Value::Array(items)) => items.contains(wanted),
                    (Some(wanted), value) => value == wanted,
                }
            }
            Who::Users { users } => users.iter().any(|u| **u == *principal.user_id),
        }
    }
}

/// One `[[channel]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// Channel names it covers (`*` and `?` wildcards).
    pub pattern: String,
    /// Who may join (default: anyone).
    #[serde(default = "anyone")]
    pub join: Who,
    /// Who may send (default: whoever may join).
    #[serde(default)]
    pub send: Option<Who>,
}

fn anyone() -> Who {
    Who::Keyword(Keyword::Anyone)
}

/// Rules from a TOML file: the first rule whose pattern matches decides; unmatched channels are
/// open.
#[derive(Debug, Clone)]
pub struct ChannelRules {
    rules: Vec<(WildMatch, ChannelRule)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    channel: Vec<ChannelRule>,
}

impl ChannelRules {
    /// Parses rules from TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let rules = file
            .channel
            .into_iter()
            .map(|rule| (WildMatch::new(&rule.pattern), rule))
            .collect();
        Ok(Self { rules })
    }

    /// Reads and parses a rules file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn rule(&self, channel: &str) -> Option<&ChannelRule> {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.matches(channel))
            .map(|(_, rule)| rule)
    }
}

impl ChannelPolicy for ChannelRules {
    fn may_join(&self, who: &Principal, channel: &str) -> Access {
        match self.rule(channel) {
            Some(rule) if !rule.join.admits(who) => {
                Access::Deny(format!("You may not join {channel}"))
            }
            _ => Access::Allow,
        }
    }

    fn may_send(&self, who: &Principal, channel: &str) -> Access {
        let Some(rule) = self.rule(channel) else {
            return Access::Allow;
        };
        if rule.send.as_ref().unwrap_or(&rule.join).admits(who) {
            Access::Allow
        } else {
            Access::Deny(format!("You may not send to {channel}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, scope: &str, claims: Value) -> Principal {
        let Value::Object(claims) = claims else {
            panic!("claims must be an object")
        };
        Principal {
            user_id: user.into(),
            scope: scope.into(),
            claims: claims.into(),
        }
    }

    const RULES: &str = r#"
        [[channel]]
        pattern = "team-red-*"
        join = { claim = "team", equals = "red" }

        [[channel]]
        pattern = "announcements"
        join = "anyone"
        send = { users = ["boss"] }

        [[channel]]
        pattern = "staff"
        join = { scope = "authenticated" }

        [[channel]]
        pattern = "beta-?"
        join = { claim = "beta" }

        [[channel]]
        pattern = "guild-*"
        join = { claim = "guilds", equals = "owls" }
        send = "nobody"
    "#;

    #[test]
    fn rules_decide_join_and_send() {
        let rules = ChannelRules::parse(RULES).unwrap();
        let guest = who("g", "guest", serde_json::json!({}));
        let red = who(
            "r",
            "guest",
            serde_json::json!({"team": "red", "guilds": ["owls"]}),
        );
        let boss = who("boss", "authenticated", serde_json::json!({"beta": true}));
        let allow = Access::Allow;
        assert_eq!(rules.may_join(&guest, "lobby"), allow, "unmatched is open");
        assert_eq!(rules.may_send(&guest, "lobby"), allow);
        assert_eq!(
            rules.may_join(&guest, "team-red-1"),
            Access::Deny("You may not join team-red-1".into())
        );
        assert_eq!(rules.may_join(&red, "team-red-1"), allow);
        assert_eq!(
            rules.may_send(&red, "team-red-1"),
            allow,
            "send follows join"
        );
        assert_eq!(rules.may_join(&guest, "announcements"), allow);
        assert_eq!(
            rules.may_send(&guest, "announcements"),
            Access::Deny("You may not send to announcements".into())
        );
        assert_eq!(rules.may_send(&boss, "announcements"), allow);
        assert_ne!(rules.may_join(&guest, "staff"), allow);
        assert_eq!(rules.may_join(&boss, "staff"), allow);
        assert_eq!(rules.may_join(&boss, "beta-1"), allow);
        assert_eq!(
            rules.may_join(&red, "beta-10"),
            allow,
            "? is one character: no rule"
        );
        assert_ne!(rules.may_join(&red, "beta-1"), allow);
        assert_eq!(
            rules.may_join(&red, "guild-x"),
            allow,
            "array claims contain"
        );
        assert_ne!(rules.may_send(&red, "guild-x"), allow);
    }

    #[test]
    fn bad_files_are_refused_clearly() {
        let err =
            ChannelRules::parse("[[channel]]\npattern = \"x\"\njoin = \"everyone\"").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains(r#""anyone", "nobody""#),
            "{err}"
        );
        let err = ChannelRules::parse("[[channel]]\npatern = \"x\"").unwrap_err();
        assert!(err.contains("patern") || err.contains("pattern"), "{err}");
        assert!(ChannelRules::parse("").is_ok(), "no rules: all open");
    }
}
