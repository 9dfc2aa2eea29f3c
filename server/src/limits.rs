//! Naming and message rules, checked before anything reaches the engine.

use protocol::ErrorCode;

use crate::config::Limits;
use crate::error::ChatError;

/// Characters that reorder text invisibly (used to spoof names): bidi embeddings, overrides
/// and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
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
    if label.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Some("must not contain control characters".into());
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

/// Checks a channel name.
pub fn check_channel(channel: &str, limits: &Limits) -> Result<(), ChatError> {
    match label_problem(channel, limits.max_channel_chars) {
        None => Ok(()),
        Some(problem) => Err(ChatError::new(
            ErrorCode::BadChannel,
            format!("Invalid channel name: {problem}"),
        )),
    }
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
    if text
        .chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
    {
        return Err(ChatError::new(
            ErrorCode::BadMessage,
            "Message must not contain control characters",
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
}
