//! The web UI in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, started by `headwater_test_support::Browser`), against a
//! server with a real store. Screenshots of each page land in
//! `$HEADWATER_TEST_SCREENSHOTS` (`scripts/test` sets it to
//! `test-artifacts/ui-screens`).

use chrono::Utc;
use headwater_core::{flow_id_for_name, Flow, FlowRun, LogLevel, LogRecord, RunKind, State, StateRecord, TaskRun};
use headwater_server::RunningServer;
use headwater_store::{Store, WriteBatch};
use headwater_test_support::Browser;
use serde_json::json;
use uuid::Uuid;

use super::{run_of, sealed_sqlite};

const SECRET_URL: &str = "https://hooks.slack.com/services/T0/B0/ui-s3cret-t0ken";

/// What the pages show: a finished run with three tasks (one retried) and
/// logs, a running run, a deployment whose flow takes `month: u32`, and a
/// block with a secret.
async fn seed(store: &dyn Store) -> (FlowRun, FlowRun) {
    let now = Utc::now();
    let flow = Flow {
        id: flow_id_for_name("ui-etl"),
        name: "ui-etl".into(),
        version: None,
        description: Some("loads a month".into()),
        parameter_schema: json!({"type": "object", "properties": {"month": {"type": "integer", "minimum": 0}},
            "required": ["month"]}),
        created: now,
        updated: now,
    };
    let t = |s: i64| now - chrono::Duration::seconds(60 - s);
    let mut done = run_of(&flow.name, "finished-otter", State::completed(t(30)), 60, &["taxi"]);
    done.parameters = json!({"month": 1});
    done.start_time = Some(t(0));
    done.created = t(0);
    done.end_time = Some(t(30));
    let task = |name: &str, start: i64, end: i64, tries: u32| TaskRun {
        id: Uuid::now_v7(),
        flow_run_id: done.id,
        task_name: name.into(),
        name: format!("{name}-0"),
        dynamic_key: 0,
        tags: vec![],
        state: State::completed(t(end)),
        run_count: tries,
        cache_key: None,
        cache_expiration: None,
        start_time: Some(t(start)),
        end_time: Some(t(end)),
        created: t(start),
    };
    let tasks = vec![task("extract", 0, 10, 1), task("transform", 10, 20, 2), task("load", 20, 30, 1)];
    let logs = (0..3)
        .map(|i| LogRecord {
            id: 0,
            flow_run_id: done.id,
            task_run_id: None,
            level: if i == 2 { LogLevel::Warning } else { LogLevel::Info },
            timestamp: t(i),
            message: format!("loading month 1, step {i}"),
        })
        .collect();
    let mut running = done.clone();
    running.id = Uuid::now_v7();
    running.name = "busy-heron".into();
    running.state = State::running(now);
    running.end_time = None;
    let states = vec![
        StateRecord { run_id: done.id, kind: RunKind::Flow, state: State::running(t(0)) },
        StateRecord { run_id: done.id, kind: RunKind::Flow, state: done.state.clone() },
        StateRecord { run_id: running.id, kind: RunKind::Flow, state: running.state.clone() },
    ];
    done.state = State::completed(t(30));
    store
        .record(&WriteBatch {
            flows: vec![flow],
            flow_runs: vec![done.clone(), running.clone()],
            task_runs: tasks,
            states,
            logs,
            ..Default::default()
        })
        .await
        .unwrap();
    let doc = json!({"deployments": [{"name": "ui-monthly", "flow": "ui-etl", "entrypoint": "./etl",
        "parameters": {"month": 1}, "schedules": [{"cron": "0 5 1 * *"}]}]});
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
    store.apply_deployment(&d).await.unwrap();
    let block = headwater_core::BlockDocument {
        name: "team-alerts".into(),
        block_type: "slack-webhook".into(),
        data: json!({ "url": SECRET_URL }),
        created: now,
        updated: now,
    };
    store.register_block_types(&headwater_blocks::builtin_types()).await.unwrap();
    store.save_block(&block).await.unwrap();
    (done, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_runs_starts_custom_runs_cancels_and_never_shows_secrets() {
    let Some(b) = Browser::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = sealed_sqlite(dir.path()).await;
    let (done, running) = seed(store.as_ref()).await;
    let server = RunningServer::start(store.clone(), vec![]).await.unwrap();
    let ui = format!("http://{}", server.addr);

    // Dashboard, then the runs list, then a run's page through its link.
    b.goto(&format!("{ui}/")).await;
    b.wait("the dashboard", "document.querySelector('h1') && document.querySelector('h1').textContent === 'Dashboard'")
        .await;
    b.screenshot("dashboard").await;
    b.goto(&format!("{ui}/runs")).await;
    b.wait("the runs list", "document.body.innerText.includes('finished-otter')").await;
    b.screenshot("flow-runs").await;
    b.click(&format!("a[href='/runs/{}']", done.id)).await;
    let bars = b
        .wait(
            "the timeline",
            "document.querySelectorAll('.g-row').length === 3 && document.querySelectorAll('.g-row').length",
        )
        .await;
    assert_eq!(bars, 3, "one bar per task run");
    let retried =
        b.js("return [...document.querySelectorAll('.g-row')].map(r => r.getAttribute('aria-label')).join('|')").await;
    assert!(retried.as_str().unwrap().contains("transform-0: Completed, 10s, 2 attempts"), "{retried}");
    let widths = b
        .js("return [...document.querySelectorAll('.g-bar')].map(x => Math.round(100 * x.offsetWidth / x.parentElement.offsetWidth))")
        .await;
    assert_eq!(widths, json!([33, 33, 33]), "each task took a third of the run");
    let lefts = b
        .js("return [...document.querySelectorAll('.g-bar')].map(x => Math.round(100 * x.offsetLeft / x.parentElement.offsetWidth))")
        .await;
    assert_eq!(lefts, json!([0, 33, 67]), "one after the other");
    let colours = b.js("const bg = (css) => getComputedStyle(document.querySelector(css)).backgroundColor; return bg('.g-bar') === bg('h1 .badge')").await;
    assert_eq!(colours, true, "bars take their state's colour (the run's badge is Completed too)");
    b.wait("the logs", "document.querySelector('.logs').innerText.includes('loading month 1, step 2')").await;
    b.type_into("input[type=search]", "step 1").await;
    let shown = b.wait("the filtered logs", "!document.querySelector('.logs').innerText.includes('step 2') && document.querySelector('.logs').innerText").await;
    assert!(shown.as_str().unwrap().contains("step 1"), "{shown}");
    b.screenshot("flow-run").await;

    // A custom run from the form: an invalid value is refused inline, then a valid one starts a run.
    b.goto(&format!("{ui}/deployments/ui-monthly")).await;
    b.wait("the run form", "document.querySelector('#f-month')").await;
    let schedule = b
        .wait(
            "the schedule in words",
            "document.querySelector('.schedule') && document.querySelector('.schedule').innerText",
        )
        .await;
    assert!(schedule.as_str().unwrap().starts_with("At 05:00, on day 1. (UTC)"), "{schedule}");
    assert!(schedule.as_str().unwrap().contains("next: "), "{schedule}");
    b.type_into("#f-month", "1.5").await;
    b.click("button[type=submit]").await;
    let error = b.wait("the inline error", "document.getElementById('f-month-err').textContent").await;
    assert_eq!(error, "expected a whole number");
    b.type_into("#f-month", "-1").await;
    b.click("button[type=submit]").await;
    b.wait("the bound's error", "document.getElementById('f-month-err').textContent === 'must be at least 0'").await;
    let before = store.list_flow_runs(&Default::default()).await.unwrap().len();
    assert_eq!(before, 2, "nothing was submitted");
    b.screenshot("deployment-invalid").await;
    b.type_into("#f-month", "3").await;
    b.click("button[type=submit]").await;
    b.wait("the new run's page", "location.pathname.startsWith('/runs/') && document.querySelector('.badge')").await;
    let runs = store.list_flow_runs(&Default::default()).await.unwrap();
    let started = runs.iter().find(|r| r.deployment_id.is_some()).expect("a deployment run");
    assert_eq!(started.parameters, json!({"month": 3}));
    b.screenshot("custom-run").await;

    // Cancel a running run from its page.
    b.goto(&format!("{ui}/runs/{}", running.id)).await;
    b.wait("the cancel button", "[...document.querySelectorAll('button')].some(x => x.textContent === 'Cancel')").await;
    b.js("[...document.querySelectorAll('button')].find(x => x.textContent === 'Cancel').click()").await;
    b.wait("the run cancelling", "document.querySelector('h1 .badge').textContent === 'Cancelling'").await;
    assert_eq!(store.read_flow_run(running.id).await.unwrap().unwrap().state.name, "Cancelling");

    // Live: a running run's page shows new logs and its end as they are
    // recorded, without a reload (server-sent events; the page does not poll).
    let mut live = running.clone();
    live.id = Uuid::now_v7();
    live.name = "live-heron".into();
    live.state = State::running(Utc::now());
    store.record(&WriteBatch { flow_runs: vec![live.clone()], ..Default::default() }).await.unwrap();
    b.goto(&format!("{ui}/runs/{}", live.id)).await;
    b.wait(
        "the live run",
        "document.querySelector('h1 .badge') && document.querySelector('h1 .badge').textContent === 'Running'",
    )
    .await;
    b.js("window.__sameDocument = true").await;
    let later = LogRecord {
        id: 0,
        flow_run_id: live.id,
        task_run_id: None,
        level: LogLevel::Info,
        timestamp: Utc::now(),
        message: "a line written later".into(),
    };
    store.record(&WriteBatch { logs: vec![later], ..Default::default() }).await.unwrap();
    b.wait("the new log line", "document.querySelector('.logs').innerText.includes('a line written later')").await;
    live.state = State::completed(Utc::now());
    live.end_time = Some(live.state.timestamp);
    let history = StateRecord { run_id: live.id, kind: RunKind::Flow, state: live.state.clone() };
    store
        .record(&WriteBatch { flow_runs: vec![live.clone()], states: vec![history], ..Default::default() })
        .await
        .unwrap();
    b.wait("the run's end", "document.querySelector('h1 .badge').textContent === 'Completed'").await;
    assert_eq!(b.js("return window.__sameDocument === true").await, true, "no reload");

    // Blocks: masked on the page and in every API answer the page reads.
    b.goto(&format!("{ui}/blocks")).await;
    b.wait("the blocks", "document.body.innerText.includes('team-alerts')").await;
    let page = b.js("return document.documentElement.outerHTML").await;
    assert!(page.as_str().unwrap().contains("********") && !page.as_str().unwrap().contains("s3cret"), "{page}");
    let wire = b
        .js("return Promise.all(['/api/blocks', '/api/blocks/team-alerts'].map(u => fetch(u).then(r => r.text()))).then(x => x.join(''))")
        .await;
    assert!(!wire.as_str().unwrap().contains("s3cret"), "{wire}");
    b.screenshot("blocks").await;

    // A phone's width: nothing scrolls sideways.
    b.size(390, 844).await;
    for (path, name) in [("/runs".to_string(), "phone-runs"), (format!("/runs/{}", done.id), "phone-flow-run")] {
        b.goto(&format!("{ui}{path}")).await;
        b.wait("the page", "document.querySelector('h1') && !document.body.innerText.includes('Loading')").await;
        b.wait("the page to settle", "document.querySelectorAll('table').length").await;
        assert!(b.fits_width().await, "{path} is wider than a phone");
        b.screenshot(name).await;
    }
    b.close().await;
    server.stop().await.unwrap();
}

fn with_history(runs: &[FlowRun]) -> Vec<StateRecord> {
    runs.iter().map(|r| StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() }).collect()
}

const MARKDOWN: &str = "# Load report\n\nLoaded **1,234** rows from `yellow_2024-01` — see [the docs](https://example.com/docs).\n\n\
| month | rows |\n|---|---:|\n| 1 | 1234 |\n| 2 | 999 |\n\n- first\n- second\n\n<script>window.__injected = true</script> [bad](javascript:alert(1))\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_searches_stays_live_pauses_runs_edits_blocks_and_draws_big_timelines() {
    let Some(b) = Browser::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = sealed_sqlite(dir.path()).await;
    store.register_block_types(&headwater_blocks::builtin_types()).await.unwrap();
    let now = Utc::now();
    let flow = Flow {
        id: flow_id_for_name("ui-big"),
        name: "ui-big".into(),
        version: None,
        description: None,
        parameter_schema: json!({"type": "object", "properties": {}}),
        created: now,
        updated: now,
    };
    let old = run_of(&flow.name, "ancient-otter", State::completed(now), 3 * 86400, &["taxi"]);
    let tagged = run_of(&flow.name, "tagged-otter", State::failed(now, "boom"), 60, &["taxi", "nightly"]);
    let plain = run_of(&flow.name, "plain-heron", State::completed(now), 30, &["nightly"]);
    let scheduled =
        run_of(&flow.name, "waiting-crane", State::scheduled(now, now + chrono::Duration::hours(1)), 20, &[]);
    let mut big = run_of(&flow.name, "wide-river", State::completed(now), 10, &[]);
    big.end_time = Some(big.created + chrono::Duration::seconds(10_000));
    let tasks: Vec<TaskRun> = (0..10_000)
        .map(|i| TaskRun {
            id: Uuid::now_v7(),
            flow_run_id: big.id,
            task_name: "chunk".into(),
            name: format!("chunk-{i}"),
            dynamic_key: i,
            tags: vec![],
            state: if i % 97 == 0 { State::failed(now, "bad chunk") } else { State::completed(now) },
            run_count: 1,
            cache_key: None,
            cache_expiration: None,
            start_time: Some(big.created + chrono::Duration::seconds(i as i64)),
            end_time: Some(big.created + chrono::Duration::seconds(i as i64 + 1)),
            created: big.created + chrono::Duration::milliseconds(i as i64),
        })
        .collect();
    let report = headwater_core::Artifact {
        id: Uuid::now_v7(),
        key: Some("load-report".into()),
        kind: headwater_core::ArtifactKind::Markdown,
        data: json!(MARKDOWN),
        description: None,
        flow_run_id: Some(big.id),
        task_run_id: None,
        created: now,
    };
    // A subflow run of the big run, started between its first two tasks.
    let mut sub = run_of(&flow.name, "side-stream", State::cancelled(now, "stopped"), 10, &[]);
    sub.parent_flow_run_id = Some(big.id);
    sub.start_time = Some(big.created + chrono::Duration::milliseconds(500));
    sub.end_time = Some(big.created + chrono::Duration::seconds(3));
    let all = vec![old.clone(), tagged.clone(), plain.clone(), scheduled.clone(), big.clone(), sub.clone()];
    store
        .record(&WriteBatch {
            flows: vec![flow.clone()],
            states: with_history(&all),
            flow_runs: all,
            task_runs: tasks,
            artifacts: vec![report],
            ..Default::default()
        })
        .await
        .unwrap();
    let server = RunningServer::start(store.clone(), vec![]).await.unwrap();
    let ui = format!("http://{}", server.addr);
    let listed = "[...document.querySelectorAll('tbody tr td:first-child')].map(x => x.innerText).join(',')";

    // Search by name, by tag, by time range.
    b.goto(&format!("{ui}/runs?q=OTTER")).await;
    let found = b.wait("the search", &format!("document.querySelector('tbody td a') && {listed}")).await;
    assert_eq!(found, "tagged-otter,ancient-otter");
    b.goto(&format!("{ui}/runs")).await;
    b.wait("the runs list", "document.body.innerText.includes('plain-heron')").await;
    b.type_into("input[name=tag]", "taxi, nightly").await;
    b.js("document.querySelector('select[name=range]').value = '24h'").await;
    b.click("form.filters button[type=submit]").await;
    // Only the run with both tags created in the last 24 hours.
    b.wait("the tag and range filter", &format!("location.search.includes('tag=') && {listed} === 'tagged-otter'"))
        .await;
    b.screenshot("flow-runs-filtered").await;

    // The list is live: a run recorded now appears without a reload.
    b.goto(&format!("{ui}/runs")).await;
    b.wait("the runs list", "document.body.innerText.includes('plain-heron')").await;
    b.js("window.__sameDocument = true").await;
    let fresh = run_of(&flow.name, "fresh-lynx", State::running(Utc::now()), 0, &[]);
    store
        .record(&WriteBatch {
            states: with_history(std::slice::from_ref(&fresh)),
            flow_runs: vec![fresh],
            ..Default::default()
        })
        .await
        .unwrap();
    b.wait("the new run in the list", "document.body.innerText.includes('fresh-lynx')").await;
    assert_eq!(b.js("return window.__sameDocument === true").await, true, "no reload");

    // The dashboard: runs of the last 24 hours by state, from the server's counts.
    b.goto(&format!("{ui}/")).await;
    let cards = b
        .wait("the state counts", "document.querySelector('.cards a') && document.querySelector('.cards').innerText")
        .await;
    let cards = cards.as_str().unwrap().replace('\n', " ");
    assert!(cards.contains("COMPLETED 2") && cards.contains("FAILED 1") && cards.contains("RUNNING 1"), "{cards}");
    let segments = b.js("return document.querySelectorAll('.chart .c-seg').length").await;
    assert!(segments.as_u64().unwrap() >= 3, "bars in the chart: {segments}");
    b.screenshot("dashboard-chart").await;

    // Pause a run that has not started, then resume it.
    b.goto(&format!("{ui}/runs/{}", scheduled.id)).await;
    let button =
        |label: &str| format!("[...document.querySelectorAll('button')].find(x => x.textContent === '{label}')");
    b.wait("the pause button", &button("Pause")).await;
    b.js(&format!("{}.click()", button("Pause"))).await;
    b.wait("the run paused", "document.querySelector('h1 .badge').textContent === 'Paused'").await;
    assert_eq!(store.read_flow_run(scheduled.id).await.unwrap().unwrap().state.name, "Paused");
    b.js(&format!("{}.click()", button("Resume"))).await;
    b.wait("the run resumed", "document.querySelector('h1 .badge').textContent === 'Scheduled'").await;
    let resumed = store.read_flow_run(scheduled.id).await.unwrap().unwrap();
    assert!(resumed.state.scheduled_time.unwrap() <= Utc::now(), "due at once");

    // 10,000 task runs: the timeline draws only the rows in view and scrolls to the last one.
    b.goto(&format!("{ui}/runs/{}", big.id)).await;
    b.wait("the big timeline", "document.querySelector('.gantt[aria-label*=\"10001\"] .g-row')").await;
    let drawn = b.js("return document.querySelectorAll('.g-row').length").await.as_u64().unwrap();
    assert!(drawn > 10 && drawn < 200, "rows in the page: {drawn}");
    let first_rows = b
        .js("return [...document.querySelectorAll('.g-row .g-name')].slice(0, 3).map(x => x.innerText).join('|')")
        .await;
    assert_eq!(first_rows, "chunk-0|↳ side-stream|chunk-1", "in start order, the subflow among the tasks");
    let sub_link = b.js(&format!("return !!document.querySelector(\".g-row a[href='/runs/{}']\")", sub.id)).await;
    assert_eq!(sub_link, true, "the subflow's bar links to its run");
    b.js("const g = document.querySelector('.gantt'); g.scrollTop = g.scrollHeight").await;
    b.wait(
        "the last task run",
        "[...document.querySelectorAll('.g-row')].some(r => r.innerText.includes('chunk-9999'))",
    )
    .await;
    let failed_bar = b.js("return document.querySelectorAll('.g-bar.s-FAILED').length > 0").await;
    assert_eq!(failed_bar, true, "failed chunks in the failed colour");

    // The markdown artifact, rendered (and nothing from it run as markup).
    let md =
        b.wait("the markdown", "document.querySelector('.md table') && document.querySelector('.md').innerHTML").await;
    let md = md.as_str().unwrap();
    assert!(md.contains("<h3>Load report</h3>") && md.contains("<strong>1,234</strong>"), "{md}");
    assert!(md.contains("<code>yellow_2024-01</code>") && md.contains("<li>second</li>"), "{md}");
    assert!(md.contains("href=\"https://example.com/docs\"") && !md.contains("javascript:alert(1)\""), "{md}");
    assert!(md.contains("&lt;script&gt;"), "markup shows as text: {md}");
    assert_eq!(b.js("return window.__injected === undefined").await, true);
    let cells = b.js("return [...document.querySelectorAll('.md td')].map(x => x.innerText).join(',')").await;
    assert_eq!(cells, "1,1234,2,999");
    b.screenshot("flow-run-10000-tasks").await;

    // A dataset: its partitions with the run that wrote each.
    let write = headwater_core::DatasetVersion {
        dataset: "yellow_trips".into(),
        partition: "year=2024/month=01".into(),
        version: 0,
        location: "file:///lake/yellow_trips/year=2024/month=01/part.parquet".into(),
        rows: 1234,
        bytes: 56789,
        schema: vec![headwater_core::Column {
            name: "fare_amount".into(),
            data_type: "Float64".into(),
            nullable: true,
        }],
        flow_run_id: Some(big.id),
        written: Utc::now(),
        inputs: vec![headwater_core::VersionRef {
            dataset: "yellow".into(),
            partition: "year=2024/month=01".into(),
            version: 1,
        }],
        source: None,
        source_check: None,
    };
    let source = headwater_core::DatasetVersion {
        dataset: "yellow".into(),
        location: "file:///lake/yellow/year=2024/month=01/data.parquet".into(),
        inputs: vec![],
        ..write.clone()
    };
    store.record_dataset_write(&source, false).await.unwrap();
    store.record_dataset_write(&write, false).await.unwrap();
    // Its freshness policy expects February too, long overdue.
    let policy: headwater_core::partition::DatasetPolicy = serde_json::from_value(serde_json::json!({
        "time": {"every": "month", "start": "2024-01", "end": "2024-02", "timezone": "UTC"},
        "freshness": {"within": "1d"}
    }))
    .unwrap();
    store.set_dataset_policy("yellow_trips", Some(&policy), Utc::now()).await.unwrap();
    b.goto(&format!("{ui}/datasets")).await;
    b.wait("the datasets", "document.querySelector('a[href=\"/datasets/yellow_trips\"]')").await;
    b.click("a[href='/datasets/yellow_trips']").await;
    b.wait("the dataset's partitions", "document.body.innerText.includes('year=2024/month=01')").await;
    let writer = b.js(&format!("return document.querySelectorAll('a[href=\"/runs/{}\"]').length", big.id)).await;
    assert_eq!(writer, 2, "the writing run linked from the partition and from its version");
    // Its lineage: made from the lake's yellow, that month's version 1.
    let upstream = b.js("return document.querySelector('.upstream a').getAttribute('href')").await;
    assert_eq!(upstream, "/datasets/yellow");
    assert!(b.js("return document.body.innerText").await.as_str().unwrap().contains("yellow year=2024/month=01 v1"));
    // The late month is listed, unwritten, and marked.
    let late = b.js("return [...document.querySelectorAll('tr.stale')].map((r) => r.cells[0].innerText)").await;
    assert_eq!(late, serde_json::json!(["year=2024/month=02"]));
    assert!(b.js("return document.querySelector('.policy').innerText").await.as_str().unwrap().contains("24h"));
    b.screenshot("dataset").await;

    // A block from the type's form: a bad port is refused inline; the
    // secret never comes back to the page or over the network.
    let secret = "pg-s3cret-pass";
    b.goto(&format!("{ui}/blocks?type=postgres-connection")).await;
    b.wait("the block form", "document.getElementById('f-password')").await;
    b.type_into("#block-name", "warehouse").await;
    for (field, value) in [("host", "db.internal"), ("port", "54.5"), ("database", "taxi"), ("username", "loader")] {
        b.type_into(&format!("#f-{field}"), value).await;
    }
    b.type_into("#f-password", secret).await;
    b.click(".block-form button[type=submit]").await;
    let error = b.wait("the inline error", "document.getElementById('f-port-err').textContent").await;
    assert_eq!(error, "expected a whole number");
    assert!(store.read_block("warehouse", false).await.unwrap().is_none(), "nothing saved");
    b.type_into("#f-port", "6543").await;
    b.click(".block-form button[type=submit]").await;
    b.wait(
        "the saved block",
        "location.pathname === '/blocks/warehouse' && document.body.innerText.includes('Saved.')",
    )
    .await;
    let stored = store.read_block("warehouse", true).await.unwrap().unwrap();
    assert_eq!(stored.data["password"], secret);
    assert_eq!(stored.data["port"], 6543);
    // Edit: a new host, the secret left as it is.
    b.wait("the edit form", "document.getElementById('f-host')").await;
    let placeholder = b.js("return document.getElementById('f-password').placeholder + '|' + document.getElementById('f-password').value").await;
    assert_eq!(placeholder, "******** (unchanged)|");
    b.type_into("#f-host", "db2.internal").await;
    b.click(".block-form button[type=submit]").await;
    b.wait("the saved edit", "document.body.innerText.includes('db2.internal')").await;
    let stored = store.read_block("warehouse", true).await.unwrap().unwrap();
    assert_eq!((stored.data["host"].as_str(), stored.data["password"].as_str()), (Some("db2.internal"), Some(secret)));
    let page = b.js("return document.documentElement.outerHTML").await;
    assert!(!page.as_str().unwrap().contains(secret), "{page}");
    let wire = b
        .js("return Promise.all(['/api/blocks', '/api/blocks/warehouse'].map(u => fetch(u).then(r => r.text()))).then(x => x.join(''))")
        .await;
    assert!(!wire.as_str().unwrap().contains(secret) && wire.as_str().unwrap().contains("********"), "{wire}");
    b.screenshot("block-edit").await;

    b.close().await;
    server.stop().await.unwrap();
}

/// A partitioned deployment's page: the heatmap of its partitions (months
/// by colour, each cell its latest run's state) and its backfill's progress;
/// a cell opens its run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_heatmap_opens_a_partitions_run() {
    use headwater_store::backfills::{start_backfill, BackfillRequest};
    let Some(b) = Browser::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = sealed_sqlite(dir.path()).await;
    let now = Utc::now();
    let doc = json!({"deployments": [{
        "name": "taxi-months", "flow": "etl-month", "entrypoint": "x", "work_pool": {"name": "taxi"},
        "partitions": {
            "time": {"every": "month", "start": "2021-01", "end": "2021-03"},
            "static": {"color": ["yellow", "green"]},
            "parameters": {"color": "color", "year": "year", "month": "month"},
            "freshness": {"within": "1d"}
        }
    }]});
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
    store.apply_deployment(&d).await.unwrap();
    let request = BackfillRequest { deployment: d.name.clone(), max_concurrent: Some(2), ..Default::default() };
    assert_eq!(start_backfill(store.as_ref(), request, now).await.unwrap().created, 6);
    let claimed = store.claim_due_run("taxi", &[], now).await.unwrap().expect("a run");
    let mut done = claimed.clone();
    done.state = State::completed(Utc::now());
    store.record(&WriteBatch { flow_runs: vec![done], ..Default::default() }).await.unwrap();
    // The completed run wrote its month to the lake.
    let write = headwater_core::DatasetVersion {
        dataset: "yellow".into(),
        partition: "year=2021/month=01".into(),
        version: 0,
        location: "file:///lake/yellow/year=2021/month=01/data.parquet".into(),
        rows: 4321,
        bytes: 99_000,
        schema: vec![],
        flow_run_id: Some(claimed.id),
        written: Utc::now(),
        inputs: vec![],
        source: None,
        source_check: None,
    };
    store.record_dataset_write(&write, false).await.unwrap();
    let server = RunningServer::start(store.clone(), vec![]).await.unwrap();
    let ui = format!("http://{}", server.addr);

    b.goto(&format!("{ui}/deployments/taxi-months")).await;
    b.wait("the heatmap", "document.querySelectorAll('.heatmap .hm').length === 6").await;
    let partition = claimed.partition.clone().unwrap();
    let cell = format!(".hm[data-partition='{partition}']");
    let class = b.js(&format!("return document.querySelector(\"{cell}\").className")).await;
    assert_eq!(class, "hm s-COMPLETED", "{partition}");
    let queued = b.js("return document.querySelectorAll('.hm.s-SCHEDULED').length").await;
    assert_eq!(queued, 5);
    // 2021 is long past its deadlines: every month not loaded is stale.
    let stale = b.js("return document.querySelectorAll('.hm.hm-stale').length").await;
    assert_eq!(stale, 5);
    let title = b.js(&format!("return document.querySelector(\"{cell}\").title")).await;
    assert!(title.as_str().unwrap().contains("Completed, 4321 rows"), "{title}");
    let rows =
        b.js("return [...document.querySelectorAll('.heatmap tbody th')].map(t => t.textContent).join(',')").await;
    assert_eq!(rows, "2021-01,2021-02,2021-03");
    b.wait("the backfill's progress", "document.body.innerText.includes('1/6 completed, 5 in flight, 0 failed')").await;
    b.screenshot("partitions").await;
    b.click(&cell).await;
    b.wait(
        "the run's page",
        &format!(
            "document.querySelector('h1') && document.querySelector('h1').textContent.includes('{}')",
            claimed.name
        ),
    )
    .await;
    // The run's page says what it wrote: the dataset version and its rows.
    b.wait(
        "the datasets it wrote",
        "document.body.innerText.includes('Datasets written') && document.body.innerText.includes('4321')",
    )
    .await;
    b.close().await;
    server.stop().await.unwrap();
}

/// The audit log's page: a read key is sent back for an admin one; the
/// admin sees the keys (never the keys themselves) and who changed what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_shows_keys_and_who_changed_what_to_admins_only() {
    use headwater_core::Role;
    use headwater_store::AuditFilter;
    let Some(b) = Browser::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = sealed_sqlite(dir.path()).await;
    let ops = store.issue_api_key("ops", Role::Admin, Utc::now()).await.unwrap();
    let dash = store.issue_api_key("dash", Role::Read, Utc::now()).await.unwrap();
    let server = RunningServer::start(store.clone(), vec![]).await.unwrap();
    headwater_client::install_tls_provider();
    let http = reqwest::Client::new();
    let variable = json!({"name": "region", "value": "eu", "tags": [], "created": Utc::now(), "updated": Utc::now()});
    for key in [&ops.secret, &dash.secret] {
        http.put(format!("{}/variables", server.api_url())).bearer_auth(key).json(&variable).send().await.unwrap();
    }
    for _ in 0..100 {
        if store.read_audit(&AuditFilter::default()).await.unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ui = format!("http://{}", server.addr);

    b.goto(&format!("{ui}/audit")).await;
    b.wait("the key form", "document.querySelector('input[name=key]')").await;
    b.type_into("input[name=key]", &dash.secret).await;
    b.click("button[type=submit]").await;
    b.wait("the refusal", "document.body.innerText.includes(\"the key 'dash' has the role read\")").await;
    b.type_into("input[name=key]", &ops.secret).await;
    b.click("button[type=submit]").await;
    b.wait(
        "the audit log",
        "document.querySelector('h1').textContent === 'Audit log' && document.querySelectorAll('table').length === 2",
    )
    .await;
    let rows = b
        .js("return [...document.querySelectorAll('table')[1].querySelectorAll('tbody tr')].map(r => [...r.cells].slice(1).map(c => c.textContent).join(' '))")
        .await;
    assert_eq!(rows, json!(["dash PUT /api/variables 403", "ops PUT /api/variables 200"]), "newest first");
    let keys = b.js("return document.querySelectorAll('table')[0].innerText").await;
    let keys = keys.as_str().unwrap();
    assert!(keys.contains("ops") && keys.contains("admin") && keys.contains(&ops.key.prefix), "{keys}");
    let page = b.js("return document.documentElement.outerHTML").await;
    for secret in [&ops.secret, &dash.secret] {
        assert!(!page.as_str().unwrap().contains(&secret[11..]), "no key on the page");
    }
    b.screenshot("audit").await;
    // Only one key's calls.
    b.js("const s = document.querySelector('select[name=key]'); s.value = 'ops'; s.dispatchEvent(new Event('change'))")
        .await;
    b.wait("the filtered log", "location.search === '?key=ops' && document.querySelectorAll('table')[1] && document.querySelectorAll('table')[1].querySelectorAll('tbody tr').length === 1").await;
    b.close().await;
    server.stop().await.unwrap();
}
