//! The top of the panel: connection status, who the player is, and the outage banner shown
//! from any tab while the chat is not connected.

use bevy_egui::egui;

use super::ChatUiState;
use super::panel::short_id;
use super::track::StatusInfo;
use crate::ChatAuth;
use crate::state::ChatConnectionState;

/// Colour and words for a connection state.
fn connection_label(connection: ChatConnectionState) -> (egui::Color32, &'static str) {
    let amber = egui::Color32::from_rgb(230, 200, 80);
    let red = egui::Color32::from_rgb(220, 80, 80);
    match connection {
        ChatConnectionState::Connected => (egui::Color32::from_rgb(90, 200, 120), "Connected"),
        ChatConnectionState::Connecting => (amber, "Connecting…"),
        ChatConnectionState::LoggingIn => (amber, "Logging in…"),
        ChatConnectionState::Reconnecting => {
            (egui::Color32::from_rgb(240, 140, 60), "Reconnecting…")
        }
        ChatConnectionState::Disconnected => (red, "Disconnected"),
        ChatConnectionState::Failed => (red, "Chat is off"),
    }
}

/// The line shown above the tabs while not connected (from any tab), or `None` when connected.
pub(super) fn outage_banner(
    connection: ChatConnectionState,
    problem: Option<&str>,
) -> Option<String> {
    let reason = problem.map(|p| format!(" ({p})")).unwrap_or_default();
    Some(match connection {
        ChatConnectionState::Connected => return None,
        ChatConnectionState::Failed => {
            format!("Chat is off: {}", problem.unwrap_or("it could not start"))
        }
        ChatConnectionState::Reconnecting => {
            format!("Not connected{reason}: retrying… Lines sent now are not delivered.")
        }
        ChatConnectionState::LoggingIn | ChatConnectionState::Connecting => {
            format!("Not connected yet{reason}: connecting…")
        }
        ChatConnectionState::Disconnected => format!("Not connected{reason}."),
    })
}

/// The player's name for the header: the name the server confirmed, else the user id prefix.
pub(super) fn header_name(status: &StatusInfo, user_id: Option<&str>) -> Option<String> {
    status.name.clone().or_else(|| user_id.map(short_id))
}

pub(super) fn status_line(
    ui: &mut egui::Ui,
    state: &ChatUiState,
    connection: ChatConnectionState,
    auth: &ChatAuth,
) {
    let (color, text) = connection_label(connection);
    ui.horizontal(|ui| {
        status_dot(ui, color);
        ui.label(text);
        if let Some(name) = header_name(&state.status, auth.user_id.as_deref()) {
            ui.weak(format!("· you are {name}"));
        }
    });
    if let Some(notice) = &state.notice {
        ui.weak(notice);
    }
}

/// A filled circle drawn with the painter (no font needs a "●" glyph).
fn status_dot(ui: &mut egui::Ui, color: egui::Color32) {
    let size = ui.text_style_height(&egui::TextStyle::Body);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), size * 0.3, color);
}

/// The outage line: visible whatever tab is open.
pub(super) fn outage(ui: &mut egui::Ui, text: &str) {
    egui::Frame::new()
        .fill(egui::Color32::from_rgba_unmultiplied(120, 40, 30, 160))
        .inner_margin(egui::Margin::symmetric(6, 2))
        .corner_radius(3)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(egui::RichText::new(text).color(egui::Color32::from_rgb(255, 225, 200)));
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_chat_says_why() {
        let banner = outage_banner(
            ChatConnectionState::Failed,
            Some("the server URL must start with http:// or https://"),
        );
        assert_eq!(
            banner.as_deref(),
            Some("Chat is off: the server URL must start with http:// or https://")
        );
    }

    #[test]
    fn an_outage_is_a_banner_and_a_connection_is_not() {
        assert_eq!(outage_banner(ChatConnectionState::Connected, None), None);
        let banner = outage_banner(ChatConnectionState::Reconnecting, Some("closed")).unwrap();
        assert!(
            banner.contains("retrying") && banner.contains("closed"),
            "{banner}"
        );
        assert!(outage_banner(ChatConnectionState::Connecting, None).is_some());
        assert!(outage_banner(ChatConnectionState::Disconnected, None).is_some());
    }

    #[test]
    fn the_header_shows_the_players_name_once_set() {
        let mut status = StatusInfo::default();
        let id = "0123456789abcdef";
        assert_eq!(header_name(&status, Some(id)).as_deref(), Some("01234567"));
        status.name = Some("Ann".into());
        assert_eq!(header_name(&status, Some(id)).as_deref(), Some("Ann"));
        assert_eq!(header_name(&StatusInfo::default(), None), None);
    }
}
