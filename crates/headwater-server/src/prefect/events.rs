//! Prefect's event stream. A Prefect client reports every task-run state
//! change as an event on `WS /events/in` (not through REST), and flow-run
//! heartbeats the same way. Events are recorded in batches, in the order
//! they came, and a websocket ping — the client's checkpoint — is answered
//! only once everything before it is stored: the client keeps and resends
//! what was not confirmed, so a server that stops loses nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use headwater_core::{Heartbeat, RunKind, StateRecord, TaskRun};
use headwater_store::{Store, StoreError, WriteBatch};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::wire::{dynamic_key_number, task_name_of_key, StateIn};
use super::{Compat, PrefectJson};
use crate::error::ApiError;

/// Events wait at most this long for others to share their transaction.
const GATHER_FOR: Duration = Duration::from_millis(25);
/// And at most this many share one.
const BATCH_EVENTS: usize = 2_000;

/// What one event means to Headwater.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decoded {
    /// A task run entered a state: its snapshot as of that state.
    TaskRunState(Box<TaskRun>),
    Heartbeat(Heartbeat),
    /// An event Headwater does not keep (a block loaded, a worker started).
    Other,
}

#[derive(Debug, Deserialize)]
struct Event {
    occurred: DateTime<Utc>,
    event: String,
    resource: Map<String, Value>,
    #[serde(default)]
    related: Vec<Map<String, Value>>,
    #[serde(default)]
    payload: Value,
}

#[derive(Debug, Deserialize)]
struct TaskRunPayload {
    name: String,
    task_key: String,
    #[serde(default)]
    dynamic_key: Value,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    run_count: u32,
    #[serde(default)]
    expected_start_time: Option<DateTime<Utc>>,
    #[serde(default)]
    start_time: Option<DateTime<Utc>>,
    #[serde(default)]
    end_time: Option<DateTime<Utc>>,
}

fn resource_uuid(resource: &Map<String, Value>, kind: &str) -> Option<Uuid> {
    resource.get("prefect.resource.id")?.as_str()?.strip_prefix(kind)?.parse().ok()
}

/// The heartbeat a Prefect run gets for a sign of life at `at`: alive until
/// its next beat is due (`interval`), then the server's timeout applies.
pub(crate) fn held_until(at: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    at + chrono::Duration::from_std(interval).unwrap_or_else(|_| chrono::Duration::days(1))
}

/// Reads one event as the client sent it; the error says what is wrong.
/// Prefect's clients beat far less often than Headwater's SDK (every 180 s
/// by default), so a heartbeat is recorded as `lease` later: the run stays
/// alive until its next beat is due, then the server's timeout applies.
pub(crate) fn decode(raw: &str, lease: Duration) -> Result<Decoded, String> {
    let event: Event = serde_json::from_str(raw).map_err(|e| format!("not a Prefect event: {e}"))?;
    if event.event == "prefect.flow-run.heartbeat" {
        let flow_run_id = resource_uuid(&event.resource, "prefect.flow-run.")
            .ok_or("a heartbeat whose resource is not a flow run")?;
        return Ok(Decoded::Heartbeat(Heartbeat { flow_run_id, at: held_until(event.occurred, lease) }));
    }
    let Some(_) = event.event.strip_prefix("prefect.task-run.") else {
        return Ok(Decoded::Other);
    };
    let id = resource_uuid(&event.resource, "prefect.task-run.").ok_or("a task-run event without a task-run id")?;
    let flow_run_id = event
        .related
        .iter()
        .find(|r| r.get("prefect.resource.role").and_then(Value::as_str) == Some("flow-run"))
        .and_then(|r| resource_uuid(r, "prefect.flow-run."))
        .ok_or("a task-run event without its flow run in `related` (a task outside a flow is not recorded)")?;
    let state_value =
        event.payload.get("validated_state").cloned().ok_or("a task-run event without `validated_state`")?;
    let expiration = state_value.pointer("/data/expiration").and_then(Value::as_str).and_then(|s| s.parse().ok());
    let state_in: StateIn = serde_json::from_value(state_value).map_err(|e| format!("payload.validated_state: {e}"))?;
    // The state's own time is in the resource; the event's time is close.
    let at = event
        .resource
        .get("prefect.state-timestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<DateTime<Utc>>().ok())
        .unwrap_or(event.occurred);
    let state = state_in.into_state(at);
    let task: TaskRunPayload = serde_json::from_value(event.payload.get("task_run").cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("payload.task_run: {e}"))?;
    let dynamic_key = match &task.dynamic_key {
        Value::String(s) => dynamic_key_number(s),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    Ok(Decoded::TaskRunState(Box::new(TaskRun {
        id,
        flow_run_id,
        task_name: task_name_of_key(&task.task_key).to_string(),
        name: task.name,
        dynamic_key,
        tags: task.tags,
        run_count: task.run_count,
        cache_key: None,
        cache_expiration: if state.name == "Cached" || expiration.is_some() { expiration } else { None },
        start_time: task.start_time,
        end_time: task.end_time.filter(|_| state.is_terminal()),
        created: task.expected_start_time.unwrap_or(event.occurred),
        state,
    })))
}

/// Gathers decoded events and writes them in one transaction: each task
/// run's states in order, its snapshot as of the newest. A state no newer
/// than the one recorded is a resent event and is skipped, so a client
/// resending after a reconnect does not double a history.
pub(crate) struct EventSink {
    store: Arc<dyn Store>,
    heartbeat_lease: Duration,
    pending: Vec<Decoded>,
    newest: HashMap<Uuid, DateTime<Utc>>,
    seen_flow_runs: HashSet<Uuid>,
    /// Events that could not be read (logged, then skipped).
    pub skipped: u64,
}

impl EventSink {
    pub fn new(store: Arc<dyn Store>, heartbeat_lease: Duration) -> Self {
        EventSink {
            store,
            heartbeat_lease,
            pending: Vec::new(),
            newest: HashMap::new(),
            seen_flow_runs: HashSet::new(),
            skipped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn push(&mut self, raw: &str) {
        match decode(raw, self.heartbeat_lease) {
            Ok(Decoded::Other) => {}
            Ok(d) => self.pending.push(d),
            Err(why) => {
                self.skipped += 1;
                tracing::warn!("skipped a Prefect event ({} so far): {why}", self.skipped);
            }
        }
    }

    /// Learns what a flow run's task runs already recorded, once per flow run.
    async fn learn(&mut self, flow_run_id: Uuid) -> Result<(), StoreError> {
        if self.seen_flow_runs.insert(flow_run_id) {
            for t in self.store.list_task_runs(flow_run_id).await? {
                self.newest.insert(t.id, t.state.timestamp);
            }
        }
        Ok(())
    }

    /// The batch of what is pending, and each task run's newest state time
    /// once it is stored.
    fn batch(&mut self) -> (WriteBatch, HashMap<Uuid, DateTime<Utc>>) {
        let mut batch = WriteBatch::default();
        let mut newest: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
        let mut snapshot_at: HashMap<Uuid, usize> = HashMap::new();
        for d in std::mem::take(&mut self.pending) {
            match d {
                Decoded::TaskRunState(t) => {
                    let known = newest.get(&t.id).or_else(|| self.newest.get(&t.id));
                    if known.is_some_and(|at| t.state.timestamp <= *at) {
                        continue;
                    }
                    newest.insert(t.id, t.state.timestamp);
                    batch.states.push(StateRecord { run_id: t.id, kind: RunKind::Task, state: t.state.clone() });
                    match snapshot_at.get(&t.id) {
                        Some(&i) => batch.task_runs[i] = *t,
                        None => {
                            snapshot_at.insert(t.id, batch.task_runs.len());
                            batch.task_runs.push(*t);
                        }
                    }
                }
                Decoded::Heartbeat(h) => batch.heartbeats.push(h),
                Decoded::Other => {}
            }
        }
        (batch, newest)
    }

    /// Writes what is pending. On a store error nothing is confirmed: the
    /// caller closes the stream and the client resends.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let flow_runs: HashSet<Uuid> = self
            .pending
            .iter()
            .filter_map(|d| match d {
                Decoded::TaskRunState(t) => Some(t.flow_run_id),
                _ => None,
            })
            .collect();
        for f in flow_runs {
            self.learn(f).await?;
        }
        let (batch, newest) = self.batch();
        // Only what is stored counts as seen: if this fails, a resend is taken.
        let started = std::time::Instant::now();
        self.store.record(&batch).await?;
        crate::metrics::batch_recorded("prefect_events", &batch, &[], started.elapsed().as_secs_f64());
        self.newest.extend(newest);
        Ok(())
    }
}

/// `WS /events/in`: the client's first message authenticates it, then
/// events flow with no answer but the pongs of its checkpoints.
pub(super) async fn events_in(ws: WebSocketUpgrade, State(compat): State<Compat>) -> Response {
    ws.protocols(["prefect"]).on_upgrade(move |socket| stream_in(socket, compat))
}

/// Reads the auth message (answering pings meanwhile) and answers it;
/// false when the client is refused or gone.
pub(super) async fn handshake(socket: &mut WebSocket, compat: &Compat, needs: headwater_core::Role) -> bool {
    let first = loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.recv()).await {
            Ok(Some(Ok(Message::Text(t)))) => break t,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return false,
        }
    };
    let token = serde_json::from_str::<Value>(first.as_str()).ok().and_then(|v| {
        (v.get("type")?.as_str()? == "auth").then(|| v.get("token").and_then(Value::as_str).map(str::to_string))
    });
    let refusal = match token {
        None => Some("the first message must be {\"type\": \"auth\", \"token\": …}".to_string()),
        Some(token) => match compat.access.identify(token.as_deref()).await {
            Ok(caller) if caller.role.allows(needs) => None,
            Ok(caller) => Some(format!(
                "the key '{}' has the role {}; this stream needs {needs}",
                caller.name.unwrap_or_default(),
                caller.role
            )),
            Err(crate::auth::Refusal::Unavailable(_)) => Some("cannot check the API key now; try again".into()),
            Err(_) => Some(
                "this server requires an API key: set PREFECT_API_AUTH_STRING to it (on its event stream \
                 Prefect's client sends that, not PREFECT_API_KEY)"
                    .into(),
            ),
        },
    };
    if let Some(reason) = refusal {
        let answer = serde_json::json!({"type": "auth_failure", "reason": reason}).to_string();
        let _ = socket.send(Message::Text(answer.into())).await;
        let frame = CloseFrame { code: close_code::POLICY, reason: reason.into() };
        let _ = socket.send(Message::Close(Some(frame))).await;
        return false;
    }
    socket.send(Message::Text(r#"{"type":"auth_success"}"#.into())).await.is_ok()
}

async fn stream_in(mut socket: WebSocket, compat: Compat) {
    if !handshake(&mut socket, &compat, headwater_core::Role::Run).await {
        return;
    }
    let mut sink = EventSink::new(compat.store.clone(), compat.heartbeat_lease);
    loop {
        let next = if sink.len() == 0 {
            socket.recv().await
        } else {
            match tokio::time::timeout(GATHER_FOR, socket.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    if !flushed(&mut sink).await {
                        return;
                    }
                    continue;
                }
            }
        };
        match next {
            Some(Ok(Message::Text(t))) => sink.push(t.as_str()),
            Some(Ok(Message::Binary(b))) => match std::str::from_utf8(&b) {
                Ok(t) => sink.push(t),
                Err(_) => sink.skipped += 1,
            },
            // The pong to this ping goes out with the next read: store
            // first. If that fails, return without reading, so it never does.
            Some(Ok(Message::Ping(_))) => {
                if !flushed(&mut sink).await {
                    return;
                }
            }
            Some(Ok(Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                let _ = flushed(&mut sink).await;
                return;
            }
        }
        if sink.len() >= BATCH_EVENTS && !flushed(&mut sink).await {
            return;
        }
    }
}

async fn flushed(sink: &mut EventSink) -> bool {
    match sink.flush().await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("could not record Prefect events; closing the stream so the client resends them: {e}");
            false
        }
    }
}

/// `POST /events`: the same events over HTTP, recorded before the answer.
pub(super) async fn post_events(
    State(compat): State<Compat>,
    PrefectJson(events): PrefectJson<Vec<Value>>,
) -> Result<StatusCode, ApiError> {
    let mut sink = EventSink::new(compat.store.clone(), compat.heartbeat_lease);
    for e in &events {
        sink.push(&e.to_string());
    }
    sink.flush().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(180);

    const RUNNING: &str = r#"{"occurred":"2026-12-01T11:02:43.966948Z","event":"prefect.task-run.Running","resource":{"prefect.resource.id":"prefect.task-run.01a23145-6fc9-72e4-82b7-c30aba8423f9","prefect.resource.name":"fetch-b6a","prefect.state-timestamp":"2026-12-01T11:02:43.966948+00:00"},"related":[{"prefect.resource.id":"prefect.flow-run.6261b1b6-8902-4283-81ee-90e7056bd062","prefect.resource.role":"flow-run"},{"prefect.resource.id":"prefect.flow.af22f82e-7dd9-4e31-86ab-14039656a3f7","prefect.resource.role":"flow"}],"payload":{"intended":{"from":"PENDING","to":"RUNNING"},"validated_state":{"type":"RUNNING","name":"Running","message":"","state_details":{},"data":null},"task_run":{"name":"fetch-b6a","task_key":"fetch-8a4a4306","dynamic_key":"b6ab1cc1-18d6-473d-9df3-942691ae00ec","tags":["lake"],"run_count":1,"expected_start_time":"2026-12-01T11:02:43.913420Z","start_time":"2026-12-01T11:02:43.966948Z"}},"id":"01a23145-6ffb-7aab-b266-16c15637f60c","follows":null}"#;

    #[test]
    fn a_task_run_event_is_its_snapshot() {
        let Decoded::TaskRunState(t) = decode(RUNNING, LEASE).unwrap() else { panic!("not a task run") };
        assert_eq!(t.id.to_string(), "01a23145-6fc9-72e4-82b7-c30aba8423f9");
        assert_eq!(t.flow_run_id.to_string(), "6261b1b6-8902-4283-81ee-90e7056bd062");
        assert_eq!((t.task_name.as_str(), t.name.as_str(), t.run_count), ("fetch", "fetch-b6a", 1));
        assert_eq!((t.state.state_type, t.state.name.as_str()), (headwater_core::StateType::Running, "Running"));
        assert_eq!(t.state.timestamp.to_rfc3339(), "2026-12-01T11:02:43.966948+00:00");
        assert_eq!(t.tags, vec!["lake".to_string()]);
        assert_eq!(t.end_time, None);
    }

    #[test]
    fn bad_events_say_what_is_wrong() {
        assert!(decode("not json", LEASE).unwrap_err().contains("not a Prefect event"));
        let no_flow = RUNNING.replace("\"prefect.resource.role\":\"flow-run\"", "\"prefect.resource.role\":\"x\"");
        assert!(decode(&no_flow, LEASE).unwrap_err().contains("flow run"));
        let bad_state = RUNNING.replace("\"type\":\"RUNNING\"", "\"type\":\"SLEEPING\"");
        assert!(decode(&bad_state, LEASE).unwrap_err().contains("validated_state"));
        let other = r#"{"occurred":"2026-12-01T11:02:43Z","event":"prefect.block.secret.loaded","resource":{"prefect.resource.id":"x"}}"#;
        assert_eq!(decode(other, LEASE).unwrap(), Decoded::Other);
    }

    #[test]
    fn a_heartbeat_holds_its_run_for_prefects_interval() {
        let beat = r#"{"occurred":"2026-12-01T11:00:00Z","event":"prefect.flow-run.heartbeat","resource":{"prefect.resource.id":"prefect.flow-run.6261b1b6-8902-4283-81ee-90e7056bd062"}}"#;
        let Decoded::Heartbeat(h) = decode(beat, LEASE).unwrap() else { panic!("not a heartbeat") };
        assert_eq!(h.at.to_rfc3339(), "2026-12-01T11:03:00+00:00");
    }
}
