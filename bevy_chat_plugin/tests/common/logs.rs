//! Captures the process's warnings (from every thread, the plugin's network thread included)
//! with a global `tracing` subscriber.

use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bevy::log::tracing::field::{Field, Visit};
use bevy::log::tracing::{Event, Level, Subscriber};
use bevy::log::tracing_subscriber::Layer;
use bevy::log::tracing_subscriber::layer::{Context, SubscriberExt};
use bevy::log::tracing_subscriber::registry::Registry;

/// Warnings and errors logged in this process since [`capture`] was first called.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    /// The lines that contain `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        let lines = self.0.lock().unwrap();
        lines.iter().filter(|l| l.contains(text)).cloned().collect()
    }
}

/// Starts capturing (once per test process) and returns the capture.
pub fn capture() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let subscriber = Registry::default().with(CaptureLayer(captured.clone()));
            bevy::log::tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the tests");
            captured
        })
        .clone()
}

struct CaptureLayer(Captured);

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        // More verbose levels compare greater.
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let mut line = Line(String::new());
        event.record(&mut line);
        (self.0).0.lock().unwrap().push(line.0);
    }
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
