//! Run logs from `tracing`.
//!
//! [`HeadwaterLayer`] records every event emitted inside a flow or task run
//! as a log of that run, and prints events in a readable form. The SDK
//! installs it as the global subscriber when a flow first runs, unless the
//! program installed its own; such a program adds [`layer`] to it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Once;

use chrono::{Local, Utc};
use headwater_config::{Overrides, Settings};
use headwater_core::{LogLevel, LogRecord};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;

use crate::context::RunContext;
use crate::recorder;

pub struct HeadwaterLayer {
    console: bool,
    console_level: LogLevel,
}

/// The layer to add to a subscriber the program builds itself.
pub fn layer() -> HeadwaterLayer {
    let settings = Settings::load(&Overrides::default()).ok();
    HeadwaterLayer {
        console: settings.as_ref().is_none_or(|s| s.logging_console()),
        console_level: settings.as_ref().and_then(|s| s.logging_level().parse().ok()).unwrap_or(LogLevel::Info),
    }
}

/// Installs the Headwater layer as the global subscriber if none is set,
/// with the trace exporter when OTLP is configured (the program is the
/// service, unless OTEL_SERVICE_NAME says otherwise).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if !tracing::dispatcher::has_been_set() {
            let service = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "headwater-flow".into());
            let subscriber = Registry::default()
                .with(layer().with_filter(headwater_telemetry::not_ours()))
                .with(headwater_telemetry::layer(&service));
            let _ = tracing::subscriber::set_global_default(subscriber);
        }
    });
}

fn level_of(event: &Event<'_>) -> LogLevel {
    match *event.metadata().level() {
        tracing::Level::ERROR => LogLevel::Error,
        tracing::Level::WARN => LogLevel::Warning,
        tracing::Level::INFO => LogLevel::Info,
        _ => LogLevel::Debug,
    }
}

/// The message first, then other fields as `key=value`.
struct MessageVisitor<'a>(&'a mut String, &'a mut String);

impl Visit for MessageVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.1, " {}={value}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.1, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for HeadwaterLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = level_of(event);
        let run = RunContext::current();
        let record_level = run.as_ref().map_or(LogLevel::Critical, |r| r.engine.min_level);
        let wanted_on_console = self.console && level >= self.console_level;
        if level < record_level && !wanted_on_console {
            return;
        }
        let mut message = String::new();
        let mut fields = String::new();
        event.record(&mut MessageVisitor(&mut message, &mut fields));
        message.push_str(&fields);
        let message = crate::blocks::redact(message);

        if wanted_on_console {
            let label = match &run {
                Some(r) => r.label(),
                None => event.metadata().target().to_string(),
            };
            let line =
                format!("{} | {:<7} | {label} - {message}\n", Local::now().format("%H:%M:%S%.3f"), level.as_str());
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        if let Some(r) = run {
            if level >= r.engine.min_level {
                r.engine.recorder.send(recorder::Event::Log(LogRecord {
                    id: 0,
                    flow_run_id: r.flow.id,
                    task_run_id: r.task_run.as_ref().map(|t| t.0),
                    level,
                    timestamp: Utc::now(),
                    message,
                }));
            }
        }
    }
}
