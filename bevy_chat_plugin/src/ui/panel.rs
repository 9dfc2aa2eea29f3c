//! Drawing the chat panel with egui.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};

use super::NameAction;
use super::status::{outage, outage_banner, status_line};
use super::{ChatUiConfig, ChatUiFocus, ChatUiState, fonts};
use crate::log::{ChatLineKind, ChatLog, ChatLogKey};
use crate::state::ChatConnectionState;
use crate::{Chat, ChatAuth, ChatBlockList, ChatTyping};

/// What the panel shows, read-only.
#[derive(SystemParam)]
pub(super) struct Shown<'w> {
    log: Res<'w, ChatLog>,
    auth: Res<'w, ChatAuth>,
    connection: Res<'w, ChatConnectionState>,
    typists: Res<'w, ChatTyping>,
    blocked: Res<'w, ChatBlockList>,
}

/// Draws the panel and records whether it holds the keyboard.
pub(super) fn draw(
    mut contexts: EguiContexts,
    config: Res<ChatUiConfig>,
    mut state: ResMut<ChatUiState>,
    mut focus: ResMut<ChatUiFocus>,
    mut chat: Chat,
    shown: Shown,
) -> Result {
    let Shown {
        log,
        auth,
        connection,
        typists,
        blocked,
    } = shown;
    let ctx = contexts.ctx_mut()?;
    if !state.fonts_ready {
        fonts::install(ctx, config.0.builtin_fonts, &config.0.font_files);
        state.fonts_ready = true;
    }
    if !state.open {
        focus.typing = false;
        return Ok(());
    }
    let style = &config.0.style;
    let alpha = (style.opacity.clamp(0.0, 1.0) * 255.0) as u8;
    let frame = egui::Frame::window(&ctx.global_style())
        .fill(egui::Color32::from_rgba_unmultiplied(18, 20, 28, alpha))
        .stroke(egui::Stroke::new(1.0, egui::Color32::from_white_alpha(40)));
    let mut typing = false;
    egui::Window::new("Chat")
        .title_bar(false)
        .anchor(style.anchor, style.offset)
        .fixed_size([style.width, style.height])
        .frame(frame)
        .show(ctx, |ui| {
            ui.style_mut().override_text_style = None;
            for (_, font) in ui.style_mut().text_styles.iter_mut() {
                font.size = font.size.max(style.text_size * 0.85);
            }
            status_line(ui, &state, *connection, &auth);
            if let Some(banner) = outage_banner(*connection, state.status.problem.as_deref()) {
                outage(ui, &banner);
            }
            ui.separator();
            tabs(ui, &mut state, &log);
            ui.separator();
            let active = state.active.clone().unwrap_or(ChatLogKey::System);
            let names = NameMenu {
                blocked: &blocked,
                me: auth.user_id.as_deref(),
            };
            // The input line, the name and join fields, and the typing line.
            let input_height = 84.0;
            let list_height = (ui.available_height() - input_height).max(60.0);
            let top_down = egui::Layout::top_down(egui::Align::Min);
            ui.horizontal_top(|ui| {
                let messages_width = (ui.available_width() * 0.74).floor();
                ui.allocate_ui_with_layout(
                    egui::vec2(messages_width, list_height),
                    top_down,
                    |ui| {
                        ui.set_min_size(egui::vec2(messages_width, list_height));
                        messages(ui, &mut state, &log, &active, &names);
                    },
                );
                ui.separator();
                let people_width = ui.available_width();
                ui.allocate_ui_with_layout(egui::vec2(people_width, list_height), top_down, |ui| {
                    ui.set_min_size(egui::vec2(people_width, list_height));
                    people(ui, &mut state, &active, *connection, &names);
                });
            });
            typing_line(ui, &typists, &active);
            ui.separator();
            let keep_focus = config.0.keep_focus_after_send;
            typing = input_line(ui, &mut state, &mut chat, &active, keep_focus);
            typing |= controls(ui, &mut state, &mut chat, &active);
        });
    focus.typing = typing;
    match state.name_action.take() {
        Some(NameAction::Block(user_id)) => chat.block(user_id),
        Some(NameAction::Unblock(user_id)) => chat.unblock(user_id),
        None => {}
    }
    Ok(())
}

/// "Ann is typing…" under the messages of a channel; an empty line otherwise, so that the
/// layout does not jump.
fn typing_line(ui: &mut egui::Ui, typists: &ChatTyping, active: &ChatLogKey) {
    let line = active
        .as_channel()
        .and_then(|channel| typists.describe(channel))
        .unwrap_or_default();
    ui.label(
        egui::RichText::new(line)
            .italics()
            .small()
            .color(egui::Color32::from_gray(170)),
    );
}

fn tabs(ui: &mut egui::Ui, state: &mut ChatUiState, log: &ChatLog) {
    ui.horizontal_wrapped(|ui| {
        let mut tabs: Vec<(ChatLogKey, String)> = state
            .tabs
            .iter()
            .map(|t| {
                let unread = state.unread(t);
                let label = if unread > 0 {
                    format!("#{t} ({unread})")
                } else {
                    format!("#{t}")
                };
                (ChatLogKey::channel(t), label)
            })
            .collect();
        if log.lines(&ChatLogKey::Direct).next().is_some() {
            tabs.push((ChatLogKey::Direct, "Direct".to_owned()));
        }
        tabs.push((ChatLogKey::System, "System".to_owned()));
        let active = state.active.clone().unwrap_or(ChatLogKey::System);
        for (key, label) in tabs {
            if ui.selectable_label(active == key, label).clicked() {
                if let Some(channel) = key.as_channel() {
                    state.status.unread.remove(channel);
                }
                state.active = Some(key);
            }
        }
    });
}

fn messages(
    ui: &mut egui::Ui,
    state: &mut ChatUiState,
    log: &ChatLog,
    active: &ChatLogKey,
    names: &NameMenu,
) {
    if let Some(channel) = active.as_channel() {
        state.status.unread.remove(channel);
    }
    egui::ScrollArea::vertical()
        .id_salt(("chat-lines", active))
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for line in log.lines(active) {
                ui.horizontal_wrapped(|ui| {
                    ui.spacing_mut().item_spacing.x = 4.0;
                    ui.weak(clock(line.ts));
                    match &line.kind {
                        ChatLineKind::Message {
                            user_id,
                            username,
                            text,
                        } => {
                            let name = egui::RichText::new(username)
                                .color(name_color(user_id))
                                .strong();
                            let response =
                                ui.add(egui::Label::new(name).sense(egui::Sense::click()));
                            names.show(state, &response, user_id);
                            ui.label(text);
                        }
                        ChatLineKind::System(text) => {
                            ui.label(
                                egui::RichText::new(text)
                                    .italics()
                                    .color(egui::Color32::from_gray(150)),
                            );
                        }
                    }
                });
            }
        });
}

fn people(
    ui: &mut egui::Ui,
    state: &mut ChatUiState,
    active: &ChatLogKey,
    connection: ChatConnectionState,
    names: &NameMenu,
) {
    let Some(channel) = active.as_channel() else {
        return;
    };
    let users = state
        .status
        .presence
        .get(channel)
        .cloned()
        .unwrap_or_default();
    let live = connection == ChatConnectionState::Connected;
    ui.vertical(|ui| {
        if live {
            ui.weak(format!("Here ({})", users.len()));
        } else {
            ui.weak(format!("Here ({}) · reconnecting…", users.len()))
                .on_hover_text("Not connected: this list may be out of date");
        }
        egui::ScrollArea::vertical()
            .id_salt(("chat-people", active))
            .show(ui, |ui| {
                for user in users {
                    let name = user
                        .username
                        .clone()
                        .unwrap_or_else(|| short_id(&user.user_id));
                    let color = if live {
                        name_color(&user.user_id)
                    } else {
                        egui::Color32::from_gray(120)
                    };
                    let label = egui::RichText::new(name).color(color);
                    let response = ui.add(egui::Label::new(label).sense(egui::Sense::click()));
                    names.show(state, &response, &user.user_id);
                }
            });
    });
}

/// The menu a click (or right click) on a name opens: whisper, block or unblock.
struct NameMenu<'a> {
    blocked: &'a ChatBlockList,
    /// This player's user id (no block entry for oneself).
    me: Option<&'a str>,
}

impl NameMenu<'_> {
    fn show(&self, state: &mut ChatUiState, response: &egui::Response, user_id: &str) {
        let open = (response.clicked() || response.secondary_clicked())
            .then_some(egui::SetOpenCommand::Toggle);
        egui::Popup::menu(response).open_memory(open).show(|ui| {
            if ui.button("Whisper").clicked() {
                state.input = format!("/w {user_id} ");
                state.focus_input = true;
                ui.close();
            }
            if self.me == Some(user_id) {
                return;
            }
            if self.blocked.contains(user_id) {
                if ui.button("Unblock").clicked() {
                    state.name_action = Some(NameAction::Unblock(user_id.to_owned()));
                    ui.close();
                }
            } else if ui
                .button("Block")
                .on_hover_text("stop seeing their messages, whispers and typing")
                .clicked()
            {
                state.name_action = Some(NameAction::Block(user_id.to_owned()));
                ui.close();
            }
        });
    }
}

/// The message line. Returns whether it has the keyboard.
fn input_line(
    ui: &mut egui::Ui,
    state: &mut ChatUiState,
    chat: &mut Chat,
    active: &ChatLogKey,
    keep_focus_after_send: bool,
) -> bool {
    let hint = match active {
        ChatLogKey::Channel(_) => "Say something… (Enter to send, /help)",
        ChatLogKey::Direct | ChatLogKey::System => "/join channel · /w user_id text · /name N",
    };
    let response = ui.add(
        egui::TextEdit::singleline(&mut state.input)
            .hint_text(hint)
            .desired_width(f32::INFINITY)
            .id(egui::Id::new("chat-input")),
    );
    let mut focused = response.has_focus();
    if response.changed()
        && !state.input.trim().is_empty()
        && !state.input.starts_with('/')
        && let Some(channel) = active.as_channel()
    {
        chat.typing(channel);
    }
    if std::mem::take(&mut state.focus_input) {
        response.request_focus();
        focused = true;
    }
    // egui's single-line edit gives up the focus on Enter (send) and on Escape (leave, the
    // text stays).
    if response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
        let text = std::mem::take(&mut state.input);
        submit(text.trim(), state, chat, active);
        if keep_focus_after_send {
            response.request_focus();
            focused = true;
        }
    }
    focused
}

/// Name and join fields. Returns whether one of them has the keyboard.
fn controls(
    ui: &mut egui::Ui,
    state: &mut ChatUiState,
    chat: &mut Chat,
    active: &ChatLogKey,
) -> bool {
    let mut typing = false;
    ui.horizontal(|ui| {
        let name = ui.add(
            egui::TextEdit::singleline(&mut state.name_input)
                .hint_text("name")
                .desired_width(90.0),
        );
        typing |= name.has_focus();
        let enter = name.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Set name").clicked() || enter) && !state.name_input.trim().is_empty() {
            chat.set_name(state.name_input.trim());
        }
        let join = ui.add(
            egui::TextEdit::singleline(&mut state.join_input)
                .hint_text("channel")
                .desired_width(90.0),
        );
        typing |= join.has_focus();
        let enter = join.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Join").clicked() || enter) && !state.join_input.trim().is_empty() {
            chat.join(state.join_input.trim());
            state.join_input.clear();
        }
        if let Some(channel) = active.as_channel()
            && ui.button("Leave").clicked()
        {
            chat.leave(channel);
        }
    });
    typing
}

/// Sends a line, or runs a slash command.
fn submit(text: &str, state: &mut ChatUiState, chat: &mut Chat, active: &ChatLogKey) {
    let channel = active.as_channel();
    if text.is_empty() {
        return;
    }
    let (command, rest) = match text.strip_prefix('/') {
        Some(command) => command.split_once(' ').unwrap_or((command, "")),
        None => {
            match channel {
                Some(channel) => chat.send(channel, text),
                None => {
                    state.notice = Some("Pick a channel tab to talk, or /w user_id text".into())
                }
            }
            return;
        }
    };
    let rest = rest.trim();
    match command {
        "join" | "j" if !rest.is_empty() => chat.join(rest),
        "leave" if !rest.is_empty() => chat.leave(rest),
        "leave" if channel.is_some() => chat.leave(channel.unwrap_or_default()),
        "name" | "nick" if !rest.is_empty() => chat.set_name(rest),
        "who" if channel.is_some() => chat.who(channel.unwrap_or_default()),
        "w" | "msg" => match rest.split_once(' ') {
            Some((to, message)) if !message.trim().is_empty() => chat.direct(to, message.trim()),
            _ => state.notice = Some("usage: /w user_id text".into()),
        },
        _ => {
            state.notice =
                Some("commands: /join C · /leave · /name N · /w user_id text · /who".into())
        }
    }
}

/// `HH:MM` (UTC) of a timestamp in ms.
fn clock(ts: u64) -> String {
    let minutes = ts / 60_000;
    format!("{:02}:{:02}", (minutes / 60) % 24, minutes % 60)
}

/// A stable, readable colour per user.
fn name_color(user_id: &str) -> egui::Color32 {
    let hash = user_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let hue = (hash % 360) as f32 / 360.0;
    egui::ecolor::Hsva::new(hue, 0.55, 0.95, 1.0).into()
}

/// The first characters of a user id, for people.
pub(super) fn short_id(user_id: &str) -> String {
    user_id.chars().take(8).collect()
}
