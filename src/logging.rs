//! Diagnostics on stderr through `tracing`: text or JSON lines (`--log-format`), level from
//! `-v`/`-q` or `RUST_LOG`. Diagnostics never go to stdout, which carries only the result.
//!
//! JSON lines (SPEC §5) are written by `JsonLines`: one object per event with `time`, `level`,
//! `message`, and the fields of the event and of its enclosing spans (`host`, `service`,
//! `step`, `run_id` where they apply).

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{Format, Global};

pub fn init(global: &Global) {
    let level = level(global.log_format, global.verbose, global.quiet);
    // Our own crate at the chosen level; russh stays at warn unless RUST_LOG says otherwise.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,deploy={level}")));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match global.log_format {
        Format::Json => registry.with(JsonLines).try_init(),
        Format::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(
                        std::env::var_os("NO_COLOR").is_none()
                            && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                    ),
            )
            .try_init(),
    };
}

/// The level of our own diagnostics. Warnings and errors (host failures, switch-backs, lost
/// history records) are always shown; `-q` silences only `info`. JSON lines carry the
/// progress events as `info` (the plain lines' counterpart), so they start there; text
/// diagnostics start at `warn` (the plain progress lines already say the rest).
fn level(format: Format, verbose: u8, quiet: bool) -> &'static str {
    match (format, quiet, verbose) {
        (_, true, _) => "warn",
        (Format::Json, false, 0) | (Format::Text, false, 1) => "info",
        (Format::Text, false, 0) => "warn",
        (Format::Json, false, 1) | (Format::Text, false, 2) => "debug",
        _ => "trace",
    }
}

/// Whether diagnostics go out as JSON lines (then nothing else may write plain text to stderr).
pub fn json(global: &Global) -> bool {
    global.log_format == Format::Json
}

/// Writes each event as one JSON object on stderr.
struct JsonLines;

/// Fields recorded on a span, kept in its extensions.
struct SpanFields(Map<String, Value>);

struct Collect<'a>(&'a mut Map<String, Value>);

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut fields = Map::new();
        attributes.record(&mut Collect(&mut fields));
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        if let Some(span) = context.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Collect(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut object = Map::new();
        object.insert(
            "time".to_string(),
            Value::String(
                humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ),
        );
        object.insert(
            "level".to_string(),
            Value::String(event.metadata().level().as_str().to_ascii_lowercase()),
        );
        if let Some(scope) = context.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (key, value) in &fields.0 {
                        object.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        event.record(&mut Collect(&mut object));
        let line = Value::Object(object).to_string();
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }
}
