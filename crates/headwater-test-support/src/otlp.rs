//! An OTLP/HTTP trace receiver on loopback that decodes what exporters
//! send (protobuf `ExportTraceServiceRequest`, as OpenTelemetry's OTLP
//! exporters send by default), so tests check real exported spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One span as received.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// Hex, as in a `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// Attribute values as text.
    pub attributes: HashMap<String, String>,
    /// The span's status says it failed.
    pub error: bool,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

pub struct OtlpReceiver {
    /// What to give as OTEL_EXPORTER_OTLP_ENDPOINT.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Requests refused (not protobuf, or not decodable).
    refused: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(body: &[u8]) -> Result<Vec<ReceivedSpan>, String> {
    let request = ExportTraceServiceRequest::decode(body).map_err(|e| format!("not an OTLP trace request: {e}"))?;
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(text)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: s.attributes.iter().map(|kv| (kv.key.clone(), text(kv))).collect(),
                    error: s.status.is_some_and(|st| st.code == 2),
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                });
            }
        }
    }
    Ok(out)
}

impl OtlpReceiver {
    /// Listens on an ephemeral loopback port for `POST /v1/traces`.
    pub async fn start() -> OtlpReceiver {
        let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let (kept, bad) = (spans.clone(), refused.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (kept, bad) = (kept.clone(), bad.clone());
                async move {
                    let kind = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if kind != "application/x-protobuf" {
                        bad.lock().unwrap().push(format!("content type {kind:?}"));
                        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                    }
                    match decode(&body) {
                        Ok(got) => {
                            kept.lock().unwrap().extend(got);
                            (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
                        }
                        Err(e) => {
                            bad.lock().unwrap().push(e);
                            (StatusCode::BAD_REQUEST, Vec::new())
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver { endpoint, spans, refused, server }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// What was refused, and why (tests expect nothing).
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until `done` holds for the spans received.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let started = Instant::now();
        loop {
            let got = self.spans();
            if done(&got) || started.elapsed() > limit {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
