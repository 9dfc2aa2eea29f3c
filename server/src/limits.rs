//! Naming and message rules, checked before anything reaches the engine.
//!
//! Names and channels must look like what they are: no control, bidi, format (Cf) or other
//! default-ignorable characters, no line or paragraph separators, and at least one character
//! that shows on its own, so that two players (or channels) cannot look the same. Messages are
//! freer: they keep emoji sequences (zero width joiners, variation selectors, tag sequences of
//! subdivision flags) and refuse only control and bidi characters.

use protocol::ErrorCode;
use unicode_general_category::{GeneralCategory, get_general_category};

use crate::config::Limits;
use crate::error::ChatError;

/// Characters that reorder text invisibly (used to spoof names and messages): the Arabic letter
/// mark, left-to-right and right-to-left marks, bidi embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Default_Ignorable_Code_Point: characters that render as nothing when not supported, taken
/// range by range from DerivedCoreProperties.txt of Unicode 15.0 (no crate we use exposes the
/// property). Most are also format characters (Cf); the others are fillers (Hangul), variation
/// selectors, and code points reserved to become ignorable.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Not allowed in a name or channel although it may show nothing: format characters (Cf, e.g.
/// zero width space and joiner, byte order mark, tag characters), other default-ignorables, and
/// line and paragraph separators (Zl, Zp).
fn is_invisible(c: char) -> bool {
    is_default_ignorable(c)
        || matches!(
            get_general_category(c),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

/// Shows something on its own: neither whitespace nor a combining mark (Mn, Mc, Me).
fn stands_alone(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            get_general_category(c),
            GeneralCategory::NonspacingMark
                | GeneralCategory::SpacingMark
                | GeneralCategory::EnclosingMark
        )
}

/// `U+XXXX`, for error texts.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Why a label (name or channel) breaks the rules, if it does.
fn label_problem(label: &str, max_chars: usize) -> Option<String> {
    let chars = label.chars().count();
    if label.trim().is_empty() {
        return Some("must not be empty".into());
    }
    if chars > max_chars {
        return Some(format!("{chars} characters, at most {max_chars} allowed"));
    }
    if label.trim() != label {
        return Some("must not start or end with spaces".into());
    }
    if let Some(c) = label
        .chars()
        .find(|&c| c.is_control() || is_bidi_control(c))
    {
        return Some(format!(
            "must not contain control characters ({})",
            code_point(c)
        ));
    }
    if let Some(c) = label.chars().find(|&c| is_invisible(c)) {
        return Some(format!(
            "must not contain invisible characters ({})",
            code_point(c)
        ));
    }
    if !label.chars().any(stands_alone) {
        return Some("must contain a visible character, not only spaces and marks".into());
    }
    None
}

/// Checks a username.
pub fn check_name(name: &str, limits: &Limits) -> Result<(), ChatError> {
    match label_problem(name, limits.max_name_chars) {
        None => Ok(()),
        Some(problem) => Err(ChatError::new(
            ErrorCode::BadName,
            format!("Invalid username: {problem}"),
        )),
    }
}

/// Checks a channel name: the naming rules, and no reserved `@…` name (see
/// [`check_not_reserved`]).
pub fn check_channel(channel: &str, limits: &Limits) -> Result<(), ChatError> {
    match label_problem(channel, limits.max_channel_chars) {
        None => check_not_reserved(channel),
        Some(problem) => Err(ChatError::new(
            ErrorCode::BadChannel,
            format!("Invalid channel name: {problem}"),
        )),
    }
}

/// Refuses a channel name that starts with `@` or a lookalike (U+FF20, U+FE6B): clients keep
/// those for their own namespaces (the plugin's `@system` log). Requests on joined channels
/// check only this, so that `message` to `@x` says why rather than `not_joined`.
pub fn check_not_reserved(channel: &str) -> Result<(), ChatError> {
    if protocol::is_reserved_channel(channel) {
        return Err(ChatError::new(
            ErrorCode::BadChannel,
            "Invalid channel name: channel names starting with @ are reserved",
        ));
    }
    Ok(())
}

/// Checks the text of a chat or direct message.
pub fn check_message(text: &str, limits: &Limits) -> Result<(), ChatError> {
    if text.trim().is_empty() {
        return Err(ChatError::new(
            ErrorCode::BadMessage,
            "Message must not be empty",
        ));
    }
    let chars = text.chars().count();
    if chars > limits.max_message_chars {
        return Err(ChatError::new(
            ErrorCode::TooLong,
            format!(
                "Message too long: {chars} characters, at most {} allowed",
                limits.max_message_chars
            ),
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
    {
        return Err(ChatError::new(
            ErrorCode::BadMessage,
            format!(
                "Message must not contain control characters ({})",
                code_point(c)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn names_and_channels() {
        let limits = Config::defaults().limits;
        for good in ["Ann", "ゆき", "Zoë the 3rd", "a", &"x".repeat(32)] {
            assert!(check_name(good, &limits).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "   ",
            " Ann",
            "Ann ",
            "A\nnn",
            "A\u{202E}nn",
            &"x".repeat(33),
        ] {
            assert_eq!(
                check_name(bad, &limits).unwrap_err().code,
                ErrorCode::BadName
            );
        }
        assert!(check_channel("global chat", &limits).is_ok());
        assert_eq!(
            check_channel(&"c".repeat(65), &limits).unwrap_err().code,
            ErrorCode::BadChannel
        );
    }

    #[test]
    fn at_names_are_reserved_with_their_lookalikes() {
        let limits = Config::defaults().limits;
        for reserved in ["@system", "@", "\u{FF20}system", "\u{FE6B}system"] {
            let error = check_channel(reserved, &limits).unwrap_err();
            assert_eq!(error.code, ErrorCode::BadChannel, "{reserved:?}");
            assert_eq!(
                error.message,
                "Invalid channel name: channel names starting with @ are reserved"
            );
        }
        assert!(check_channel("team@home", &limits).is_ok());
        // The naming rules come first: a blank is reported as blank.
        assert!(
            check_channel(" @x", &limits)
                .unwrap_err()
                .message
                .contains("spaces")
        );
    }

    #[test]
    fn messages() {
        let limits = Config::defaults().limits;
        assert!(check_message("hello\nworld\t!", &limits).is_ok());
        assert_eq!(
            check_message(" ", &limits).unwrap_err().code,
            ErrorCode::BadMessage
        );
        assert_eq!(
            check_message("a\u{7}", &limits).unwrap_err().code,
            ErrorCode::BadMessage
        );
        assert_eq!(
            check_message(&"é".repeat(501), &limits).unwrap_err().code,
            ErrorCode::TooLong
        );
        assert!(check_message(&"é".repeat(500), &limits).is_ok());
    }

    /// Labels that look like "Ann" (or like nothing) but are not: each is refused, as a name
    /// and as a channel, naming the character.
    #[test]
    fn invisible_characters_are_refused_in_names_and_channels() {
        let limits = Config::defaults().limits;
        let cases = [
            ("Ann\u{200B}", "invisible characters (U+200B)"), // zero width space
            ("A\u{200D}nn", "invisible characters (U+200D)"), // zero width joiner
            ("\u{FEFF}Ann", "invisible characters (U+FEFF)"), // byte order mark
            ("Ann\u{061C}", "control characters (U+061C)"),   // Arabic letter mark (bidi)
            ("Ann\u{E0041}", "invisible characters (U+E0041)"), // tag latin capital A
            ("Ann\u{E0001}", "invisible characters (U+E0001)"), // language tag
            ("A\u{2028}nn", "invisible characters (U+2028)"), // line separator
            ("A\u{2029}nn", "invisible characters (U+2029)"), // paragraph separator
            ("Ann\u{00AD}", "invisible characters (U+00AD)"), // soft hyphen
            ("Ann\u{2060}", "invisible characters (U+2060)"), // word joiner
            ("Ann\u{180E}", "invisible characters (U+180E)"), // Mongolian vowel separator
            ("Ann\u{FE0F}", "invisible characters (U+FE0F)"), // variation selector 16
            ("Ann\u{034F}", "invisible characters (U+034F)"), // combining grapheme joiner
            ("\u{3164}", "invisible characters (U+3164)"),    // Hangul filler
            ("Ann\u{115F}", "invisible characters (U+115F)"), // Hangul choseong filler
            ("Ann\u{0600}", "invisible characters (U+0600)"), // Arabic number sign (Cf)
            ("\u{0301}\u{0301}", "visible character"),        // combining marks only
            ("\u{20DD}", "visible character"),                // enclosing circle only
            ("\u{0301} \u{0308}", "visible character"),       // marks and a space
        ];
        let mut wrong = Vec::new();
        for (label, problem) in cases {
            for (what, result, code) in [
                ("name", check_name(label, &limits), ErrorCode::BadName),
                (
                    "channel",
                    check_channel(label, &limits),
                    ErrorCode::BadChannel,
                ),
            ] {
                match result {
                    Err(e) if e.code == code && e.message.contains(problem) => {}
                    other => wrong.push(format!("{what} {label:?}: {other:?}, wanted {problem:?}")),
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert_eq!(
            check_name("Ann\u{200B}", &limits).unwrap_err().message,
            "Invalid username: must not contain invisible characters (U+200B)"
        );
        // Visible marks on a base letter, other scripts and emoji stay allowed.
        for good in ["Jose\u{0301}", "नमस्ते", "😀 Ann", "❤", "Ann\u{3000}Lee"] {
            assert!(check_name(good, &limits).is_ok(), "{good:?}");
            assert!(check_channel(good, &limits).is_ok(), "{good:?}");
        }
    }

    /// Messages keep emoji sequences (zero width joiners, variation selectors, tag sequences)
    /// but refuse every bidi control, the Arabic letter mark included.
    #[test]
    fn messages_keep_emoji_sequences_and_refuse_bidi_controls() {
        let limits = Config::defaults().limits;
        for good in [
            "👩\u{200D}💻",
            "🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}",
            "❤\u{FE0F}",
            "👨\u{200D}👩\u{200D}👧",
            "Jose\u{0301}",
        ] {
            assert!(check_message(good, &limits).is_ok(), "{good:?}");
        }
        for bad in ["a\u{061C}b", "a\u{202E}b", "a\u{2067}b", "a\u{200F}b"] {
            let err = check_message(bad, &limits).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadMessage, "{bad:?}");
        }
        assert_eq!(
            check_message("a\u{061C}b", &limits).unwrap_err().message,
            "Message must not contain control characters (U+061C)"
        );
    }
}
