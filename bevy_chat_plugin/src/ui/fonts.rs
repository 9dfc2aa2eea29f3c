//! The fonts the panel needs, shipped inside the crate, plus the game's extra font files.
//!
//! egui's default fonts cover Latin and a few symbols only. The panel adds, as fallbacks after
//! whatever fonts the context already has (so a game's own egui fonts stay first):
//! - DejaVu Sans (always, ~742 KiB in the binary): Latin, Greek, Cyrillic, Armenian, Georgian,
//!   Hebrew, Arabic and more;
//! - Droid Sans Fallback (cargo feature `ui-cjk-font`, ~3.9 MiB more): Chinese and Japanese (its Hangul coverage is partial);
//! - then [`ChatUiPlugin::font_files`](super::ChatUiPlugin::font_files), in order.
//!
//! The files and their licenses are in `bevy_chat_plugin/assets/` (see its README).

use bevy::prelude::*;
use bevy_egui::egui;
use egui::epaint::text::{FontInsert, FontPriority, InsertFontFamily};

/// DejaVu Sans 2.37 (Bitstream Vera license, see `assets/licenses/DejaVuSans.copyright`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Droid Sans Fallback (Apache 2.0, see `assets/licenses/DroidSansFallback.copyright`).
#[cfg(feature = "ui-cjk-font")]
static DROID_SANS_FALLBACK: &[u8] = include_bytes!("../../assets/fonts/DroidSansFallbackFull.ttf");

/// A font the panel adds: its name in egui and its bytes.
pub(super) struct EmbeddedFont {
    /// Name in egui's font definitions.
    pub name: &'static str,
    /// The `.ttf` file.
    pub bytes: &'static [u8],
}

/// The fonts compiled into the crate, in fallback order.
pub(super) fn embedded() -> Vec<EmbeddedFont> {
    #[allow(unused_mut)]
    let mut fonts = vec![EmbeddedFont {
        name: "bevy_chat-dejavu-sans",
        bytes: DEJAVU_SANS,
    }];
    #[cfg(feature = "ui-cjk-font")]
    fonts.push(EmbeddedFont {
        name: "bevy_chat-droid-sans-fallback",
        bytes: DROID_SANS_FALLBACK,
    });
    fonts
}

/// Fallback after every existing font, in both families.
fn fallback_everywhere() -> Vec<InsertFontFamily> {
    [egui::FontFamily::Proportional, egui::FontFamily::Monospace]
        .into_iter()
        .map(|family| InsertFontFamily {
            family,
            priority: FontPriority::Lowest,
        })
        .collect()
}

/// Adds the embedded fonts (when `builtin`) and the extra font files as fallbacks to `ctx`,
/// keeping the fonts it already has.
pub(super) fn install(ctx: &egui::Context, builtin: bool, files: &[std::path::PathBuf]) {
    if builtin {
        for font in embedded() {
            ctx.add_font(FontInsert::new(
                font.name,
                egui::FontData::from_static(font.bytes),
                fallback_everywhere(),
            ));
        }
    }
    for (index, path) in files.iter().enumerate() {
        match std::fs::read(path) {
            Ok(bytes) => ctx.add_font(FontInsert::new(
                &format!("bevy_chat-font-{index}"),
                egui::FontData::from_owned(bytes),
                fallback_everywhere(),
            )),
            Err(error) => warn!(%error, path = %path.display(), "chat: cannot load font"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The characters of `text` no font of `ctx` has a glyph for.
    fn missing(ctx: &egui::Context, text: &str) -> Vec<char> {
        let mut missing = Vec::new();
        // Fonts added with `add_font` are built at the start of the next pass.
        for _ in 0..2 {
            let mut output = ctx.run_ui(egui::RawInput::default(), |ui| {
                missing = ui.ctx().fonts_mut(|fonts| {
                    text.chars()
                        .filter(|c| !c.is_whitespace())
                        .filter(|c| !fonts.has_glyph(&egui::FontId::proportional(14.0), *c))
                        .collect()
                });
            });
            output.textures_delta.clear();
        }
        missing
    }

    fn renders(ctx: &egui::Context, text: &str) -> bool {
        let missing = missing(ctx, text);
        if !missing.is_empty() {
            eprintln!("no glyph for {missing:?}");
        }
        missing.is_empty()
    }

    #[test]
    fn names_in_other_scripts_render_with_the_embedded_fonts() {
        let names = "Ёжик Ελένη שלום Արամ ნინო";
        let plain = egui::Context::default();
        assert!(
            !renders(&plain, names),
            "egui's default fonts alone should lack these glyphs (else this test proves nothing)"
        );
        let ctx = egui::Context::default();
        install(&ctx, true, &[]);
        assert!(renders(&ctx, names));
    }

    #[cfg(feature = "ui-cjk-font")]
    #[test]
    fn cjk_names_render_with_the_cjk_feature() {
        let ctx = egui::Context::default();
        install(&ctx, true, &[]);
        assert!(renders(&ctx, "李明 さくら カタカナ 漢字"));
    }

    #[test]
    fn a_missing_font_file_is_a_warning_not_a_failure() {
        let ctx = egui::Context::default();
        install(&ctx, false, &["/nonexistent/font.ttf".into()]);
        assert!(renders(&ctx, "abc"));
    }
}
