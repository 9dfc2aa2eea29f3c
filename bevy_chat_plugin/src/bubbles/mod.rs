//! Speech bubbles: what players say in a channel appears above their entities in the game world
//! (feature `bubbles`).
//!
//! Put a [`ChatSpeaker`] on an entity with a `Transform`, add [`ChatBubblesPlugin`], and that
//! user's live channel messages show as bubbles above it: Bevy UI nodes placed each frame where
//! the entity appears through the UI camera, so the same code serves `Camera2d` and `Camera3d`.
//! Bubbles stack (newest at the bottom), fade out, and hide while the speaker is behind the
//! camera or off screen. [`ChatBubbleStyle`] sets how they look and which channels they show.
//!
//! Three systems run in `Update`, in [`ChatBubbleSystems`] order: [`ChatBubbleSystems::Collect`]
//! turns [`ChatMessageReceived`] into entries of the [`ChatBubbleBoard`] and expires old ones
//! (every live message counts, so an avatar spawned a frame after its owner spoke still shows it),
//! [`ChatBubbleSystems::Spawn`] makes the UI entities match the board and fades them, and
//! [`ChatBubbleSystems::Position`] (only while a camera exists) places them on screen.

mod board;
mod layout;

use std::collections::{HashMap, HashSet};

use bevy::prelude::*;
use bevy::ui::DefaultUiCamera;

use crate::messages::ChatMessageReceived;

pub use board::{Bubble, BubbleChannels, ChatBubbleBoard, ChatBubbleStyle};
pub use layout::{StackPlacement, place_stack, project_to_viewport};

/// Marks an entity as a chat user in the world: that user's live channel messages appear as
/// speech bubbles above it.
///
/// ```
/// use bevy::prelude::*;
/// use bevy_chat_plugin::prelude::*;
/// use bevy_chat_plugin::bubbles::{ChatBubbleStyle, ChatBubblesPlugin, ChatSpeaker};
///
/// // A game uses `DefaultPlugins`, a camera (`commands.spawn(Camera2d)`) and a connected chat;
/// // this runs headless and offline, where bubbles are kept but not drawn.
/// let mut chat = ChatPlugin::new("http://127.0.0.1:8080").with_app_name("my_game");
/// chat.auto_connect = false;
/// let mut app = App::new();
/// app.add_plugins((MinimalPlugins, chat, ChatBubblesPlugin))
///     .insert_resource(ChatBubbleStyle {
///         lifetime: 8.0,
///         ..default()
///     })
///     .add_systems(Startup, |mut commands: Commands| {
///         // Another player's avatar, whose user id came from presence or a message.
///         commands.spawn((
///             Transform::from_xyz(100.0, 0.0, 0.0),
///             ChatSpeaker::new("their-user-id").with_offset(Vec3::Y * 24.0),
///         ));
///     });
/// app.update(); // a game calls `app.run()`
/// let mut speakers = app.world_mut().query::<&ChatSpeaker>();
/// assert_eq!(speakers.iter(app.world()).count(), 1);
/// ```
#[derive(Component, Debug, Clone, PartialEq)]
pub struct ChatSpeaker {
    /// The chat user id whose messages this entity says (`Chat::user_id` for the local player,
    /// `ChatMessageReceived::user_id` / `PresenceUser::user_id` for others).
    pub user_id: String,
    /// Where bubbles attach, relative to the entity's origin in world units (e.g. the top of
    /// the head). The style's `vertical_offset` adds screen pixels above that.
    pub offset: Vec3,
}

impl ChatSpeaker {
    /// A speaker with bubbles anchored at the entity's origin.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            offset: Vec3::ZERO,
        }
    }

    /// Anchors the bubbles at `offset` from the entity's origin (world units).
    pub fn with_offset(mut self, offset: Vec3) -> Self {
        self.offset = offset;
        self
    }
}

/// The UI node that holds one speaker's bubbles (spawned and despawned by the plugin).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatBubbleStack {
    /// The entity with the [`ChatSpeaker`].
    pub speaker: Entity,
}

/// One bubble: a panel node in a [`ChatBubbleStack`], with the text as its child.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct ChatBubble {
    /// The entity with the [`ChatSpeaker`].
    pub speaker: Entity,
    /// The [`Bubble::id`] on the [`ChatBubbleBoard`].
    pub id: u64,
    /// When it appeared (seconds on the app's clock).
    pub born: f64,
}

/// The order of the bubble systems in `Update`.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChatBubbleSystems {
    /// New messages onto the [`ChatBubbleBoard`]; expired ones off it.
    Collect,
    /// UI entities spawned, despawned and faded to match the board.
    Spawn,
    /// Stacks placed above their speakers (runs only while a camera exists).
    Position,
}

/// Speech bubbles above [`ChatSpeaker`] entities. Needs [`ChatPlugin`](crate::ChatPlugin); add it
/// yourself (the egui panel's `ChatUiPlugin` does not add it). Without Bevy's `UiPlugin` (e.g.
/// headless) the bubble entities still come and go, they are just not drawn.
pub struct ChatBubblesPlugin;

impl Plugin for ChatBubblesPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<ChatBubbleStyle>()
            .init_resource::<ChatBubbleBoard>()
            .add_message::<ChatMessageReceived>()
            .configure_sets(
                Update,
                (
                    ChatBubbleSystems::Collect,
                    ChatBubbleSystems::Spawn,
                    ChatBubbleSystems::Position,
                )
                    .chain(),
            )
            .add_systems(
                Update,
                (
                    collect.in_set(ChatBubbleSystems::Collect),
                    spawn.in_set(ChatBubbleSystems::Spawn),
                    position
                        .in_set(ChatBubbleSystems::Position)
                        .run_if(any_with_component::<Camera>),
                ),
            );
    }
}

/// Puts live messages on the board; drops expired bubbles.
fn collect(
    time: Res<Time>,
    style: Res<ChatBubbleStyle>,
    mut board: ResMut<ChatBubbleBoard>,
    mut received: MessageReader<ChatMessageReceived>,
) {
    if received.is_empty() && board.is_empty() {
        return;
    }
    let now = time.elapsed_secs_f64();
    for message in received.read() {
        board.push(message, now, &style);
    }
    board.expire(now, &style);
}

/// Colour with its alpha multiplied by `opacity`.
fn faded(color: Color, opacity: f32) -> Color {
    let alpha = color.alpha();
    color.with_alpha(alpha * opacity)
}

/// Makes stacks and bubbles match the board, and fades them.
#[allow(clippy::too_many_arguments)]
fn spawn(
    mut commands: Commands,
    time: Res<Time>,
    style: Res<ChatBubbleStyle>,
    board: Res<ChatBubbleBoard>,
    speakers: Query<(Entity, &ChatSpeaker)>,
    stacks: Query<(Entity, &ChatBubbleStack, Option<&Children>)>,
    mut bubbles: Query<(&ChatBubble, &mut BackgroundColor, &mut Node, &Children)>,
    mut texts: Query<(&mut TextColor, &mut TextFont)>,
) {
    let now = time.elapsed_secs_f64();
    let mut stack_of: HashMap<Entity, (Entity, Option<&Children>)> = HashMap::new();
    for (stack, owner, children) in &stacks {
        let live = speakers
            .get(owner.speaker)
            .is_ok_and(|(_, s)| board.bubbles(&s.user_id).len() > 0);
        if live {
            stack_of.insert(owner.speaker, (stack, children));
        } else {
            commands.entity(stack).despawn();
        }
    }
    for (speaker, ChatSpeaker { user_id, .. }) in &speakers {
        let wanted = board.bubbles(user_id);
        if wanted.len() == 0 {
            continue;
        }
        let (stack, children) = match stack_of.get(&speaker) {
            Some(&(stack, children)) => (stack, children),
            None => (commands.spawn(stack_node(speaker, &style)).id(), None),
        };
        let mut shown = HashSet::new();
        for &child in children.into_iter().flatten() {
            let Ok((bubble, mut background, mut node, texts_of)) = bubbles.get_mut(child) else {
                continue;
            };
            if board.bubbles(user_id).any(|b| b.id == bubble.id) {
                shown.insert(bubble.id);
                let opacity = style.opacity((now - bubble.born) as f32);
                background.set_if_neq(BackgroundColor(faded(style.background, opacity)));
                let max_width = Val::Px(style.max_width);
                if node.max_width != max_width {
                    node.max_width = max_width;
                }
                for &text in texts_of {
                    if let Ok((mut color, mut font)) = texts.get_mut(text) {
                        color.set_if_neq(TextColor(faded(style.text_color, opacity)));
                        if font.font_size != FontSize::Px(style.font_size)
                            || font.font != style.font
                        {
                            font.font_size = FontSize::Px(style.font_size);
                            font.font = style.font.clone();
                        }
                    }
                }
            } else {
                commands.entity(child).despawn();
            }
        }
        // New bubbles are newer than every shown one: appended, they land at the bottom.
        for bubble in board.bubbles(user_id).filter(|b| !shown.contains(&b.id)) {
            let panel = commands
                .spawn(bubble_node(speaker, bubble, &style, now))
                .id();
            commands.entity(stack).add_child(panel);
        }
    }
}

/// The invisible column a speaker's bubbles stack in (placed by [`position`]).
fn stack_node(speaker: Entity, style: &ChatBubbleStyle) -> impl Bundle {
    (
        Name::new("chat bubble stack"),
        ChatBubbleStack { speaker },
        Node {
            position_type: PositionType::Absolute,
            width: Val::Px(style.max_width),
            flex_direction: FlexDirection::Column,
            align_items: AlignItems::Center,
            justify_content: JustifyContent::FlexEnd,
            row_gap: Val::Px(4.0),
            ..default()
        },
        // Hidden until placed, so nothing flashes in a corner.
        Visibility::Hidden,
    )
}

/// A panel with the text, wrapped at the style's width.
fn bubble_node(speaker: Entity, bubble: &Bubble, style: &ChatBubbleStyle, now: f64) -> impl Bundle {
    let opacity = style.opacity((now - bubble.born) as f32);
    (
        ChatBubble {
            speaker,
            id: bubble.id,
            born: bubble.born,
        },
        Node {
            max_width: Val::Px(style.max_width),
            padding: UiRect::axes(Val::Px(8.0), Val::Px(4.0)),
            border_radius: BorderRadius::all(Val::Px(8.0)),
            ..default()
        },
        BackgroundColor(faded(style.background, opacity)),
        children![(
            Text::new(bubble.text.clone()),
            TextFont {
                font: style.font.clone(),
                font_size: FontSize::Px(style.font_size),
                ..default()
            },
            TextColor(faded(style.text_color, opacity)),
            TextLayout::new(Justify::Center, LineBreak::WordOrCharacter),
        )],
    )
}

/// Places every stack above its speaker as the UI camera sees it; hides stacks whose speaker is
/// behind the camera or off screen.
fn position(
    ui_camera: DefaultUiCamera,
    cameras: Query<(&Camera, &GlobalTransform)>,
    speakers: Query<(&ChatSpeaker, &GlobalTransform)>,
    mut stacks: Query<(&ChatBubbleStack, &mut Node, &mut Visibility)>,
    style: Res<ChatBubbleStyle>,
    ui_scale: Option<Res<UiScale>>,
) {
    let camera = ui_camera
        .get()
        .and_then(|entity| cameras.get(entity).ok())
        .filter(|(camera, _)| camera.is_active);
    let scale = ui_scale.map_or(1.0, |s| s.0);
    for (stack, mut node, mut visibility) in &mut stacks {
        let placement = camera.and_then(|(camera, camera_transform)| {
            let (speaker, transform) = speakers.get(stack.speaker).ok()?;
            let viewport = camera.logical_viewport_size()?;
            let anchor = project_to_viewport(
                camera.clip_from_view(),
                camera_transform,
                transform.translation() + speaker.offset,
                viewport,
            );
            place_stack(
                anchor,
                viewport,
                style.max_width,
                style.vertical_offset,
                scale,
            )
        });
        match placement {
            Some(StackPlacement {
                left,
                bottom,
                width,
            }) => {
                let (left, bottom, width) = (Val::Px(left), Val::Px(bottom), Val::Px(width));
                if node.left != left || node.bottom != bottom || node.width != width {
                    node.left = left;
                    node.bottom = bottom;
                    node.width = width;
                }
                visibility.set_if_neq(Visibility::Inherited);
            }
            None => {
                visibility.set_if_neq(Visibility::Hidden);
            }
        }
    }
}
