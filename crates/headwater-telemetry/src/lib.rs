//! Traces: OpenTelemetry spans of flow runs, task runs (with their
//! attempts), API requests and worker claims, exported over OTLP/HTTP when
//! the standard variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SERVICE_NAME`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*` and `OTEL_SDK_DISABLED` as
//! the specification says).
//!
//! Headwater's spans are `tracing` spans of one target, [`TARGET`]. Only the
//! layer made here is interested in that target, and it exists only when
//! traces are on: otherwise each span's callsite is disabled for every
//! subscriber and creating one costs a relaxed load, nothing more. Log lines
//! on the console never show these spans, and no other event goes to the
//! exporter (a run's logs may hold what only the store should keep).
//!
//! A trace crosses processes as a W3C `traceparent`: a worker gives the flow
//! process it starts the one of its claim span (`TRACEPARENT`), and the
//! server continues the trace of a request that carries a `traceparent`
//! header.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::filter::{filter_fn, FilterFn};
use tracing_subscriber::layer::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The target of every span Headwater exports (`info_span!(target: TARGET, …)`).
pub const TARGET: &str = "headwater_trace";

/// The variable a flow process started by a worker finds its parent in.
pub const TRACEPARENT: &str = "TRACEPARENT";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether the environment asks for traces (read through `var`, so tests can
/// give one of their own).
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| var(k).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let exporter_none = var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && !disabled && !exporter_none
}

/// A filter that keeps Headwater's spans out: for console and log layers, so
/// their lines look the same whether traces are on or not.
pub fn not_ours() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool + Clone> {
    filter_fn(|m| m.target() != TARGET)
}

type Exporting<S> = Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    FilterFn<fn(&tracing::Metadata<'_>) -> bool>,
    S,
>;

/// The layer that exports Headwater's spans, when the environment asks for
/// traces (`None` otherwise, or if the exporter cannot be built: then a
/// warning says why and the program carries on without traces).
/// `service` names the program unless `OTEL_SERVICE_NAME` does.
pub fn layer<S>(service: &str) -> Option<Exporting<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !wanted(|k| std::env::var(k).ok()) {
        return None;
    }
    let provider = match PROVIDER.get() {
        Some(p) => p.clone(),
        None => {
            let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("warning: traces are off: the OTLP exporter could not be made: {e}");
                    return None;
                }
            };
            // OTEL_SERVICE_NAME (read by the builder) wins over our default.
            let resource = if std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty()) {
                Resource::builder().build()
            } else {
                Resource::builder().with_service_name(service.to_string()).build()
            };
            let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
            PROVIDER.get_or_init(|| provider).clone()
        }
    };
    let tracer = provider.tracer("headwater");
    let only_ours: fn(&tracing::Metadata<'_>) -> bool = |m| m.target() == TARGET;
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_location(false)
            .with_filter(filter_fn(only_ours)),
    )
}

/// Sends what has been recorded so far (blocks until the exporter answered
/// or gave up): before a program exits, and after each root flow run.
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        if let Err(e) = p.force_flush() {
            eprintln!("warning: traces could not all be sent: {e}");
        }
    }
}

/// Whether spans are being exported in this process.
pub fn on() -> bool {
    PROVIDER.get().is_some()
}

/// The W3C `traceparent` of `span`, to hand to another process (`None` when
/// traces are off or the span is disabled).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !on() || span.is_disabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` continue the trace `traceparent` names (from another
/// process). Call it before the span is first entered; a malformed value is
/// ignored (the span starts a trace of its own).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    if !on() || span.is_disabled() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.trim().to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn traces_are_on_only_when_an_endpoint_is_given_and_nothing_turns_them_off() {
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_TRACES_EXPORTER", "none")])));
    }

    #[test]
    fn without_traces_spans_carry_no_context() {
        let span = tracing::info_span!(target: TARGET, "flow_run");
        assert_eq!(traceparent(&span), None);
        continue_trace(&span, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    }
}
