//! One behaviour suite for every store backend.
//!
//! Each backend's tests call [`run_all`] on a fresh store; a new backend is
//! done when it passes. Names are made unique per call so the suite also
//! runs against a shared database.

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use headwater_core::{
    flow_id_for_name, Flow, FlowRun, LogLevel, LogRecord, RunKind, State, StateRecord, StateType, TaskRun,
};
use serde_json::json;
use uuid::Uuid;

use crate::{FlowRunFilter, LogFilter, Store, StoreError, WriteBatch};
use headwater_core::Heartbeat;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 123_000).unwrap()
}

fn flow(name: &str, version: &str) -> Flow {
    Flow {
        id: flow_id_for_name(name),
        name: name.to_string(),
        version: Some(version.to_string()),
        description: Some("moves taxi data".into()),
        parameter_schema: json!({"type": "object", "properties": {"month": {"type": "integer"}}}),
        created: t(0),
        updated: t(0),
    }
}

fn flow_run(flow: &Flow, name: &str, at: i64, state: State) -> FlowRun {
    FlowRun {
        flow_id: flow.id,
        parameters: json!({"month": 1, "color": "yellow"}),
        tags: vec!["nightly".into()],
        ..FlowRun::new(Uuid::now_v7(), &flow.name, name, state, t(at))
    }
}

fn task_run(fr: &FlowRun, task: &str, key: u64, at: i64) -> TaskRun {
    TaskRun {
        id: Uuid::now_v7(),
        flow_run_id: fr.id,
        task_name: task.into(),
        name: format!("{task}-{key}"),
        dynamic_key: key,
        tags: vec!["extract".into()],
        state: State::completed(t(at)),
        run_count: 1,
        cache_key: Some("abc".into()),
        cache_expiration: Some(t(at + 86_400)),
        start_time: Some(t(at)),
        end_time: Some(t(at + 1)),
        created: t(at),
    }
}

fn log(fr: &FlowRun, task: Option<Uuid>, level: LogLevel, msg: &str) -> LogRecord {
    LogRecord { id: 0, flow_run_id: fr.id, task_run_id: task, level, timestamp: t(5), message: msg.into() }
}

pub async fn run_all(store: &dyn Store) {
    flows_upsert_by_name(store).await;
    runs_round_trip_with_history(store).await;
    filters_and_keyset_pagination(store).await;
    run_history_by_state(store).await;
    task_runs_and_logs(store).await;
    run_timeline_in_start_order(store).await;
    resolve_by_id_prefix_and_name(store).await;
    stale_runs_crash_with_their_tasks(store).await;
    deployments_apply_list_and_delete(store).await;
    deployment_runs_start_with_their_parameters_checked(store).await;
    runs_are_enqueued_once_and_claimed_once(store).await;
    deployment_limits_hold_at_claim_time(store).await;
    backfills_run_each_partition_once_within_their_bound(store).await;
    work_pools_pause_limit_and_workers(store).await;
    work_queues_by_priority_with_limits(store).await;
    crashed_runs_retry_when_their_flow_allows(store).await;
    variables_set_read_and_delete(store).await;
    artifacts_are_versioned_by_key(store).await;
    blocks_keep_secrets_sealed(store).await;
    datasets_version_partitions_and_guard_their_schema(store).await;
    concurrency_slots_are_leased_atomically(store).await;
    automations_and_their_outbox(store).await;
    empty_batch_is_fine(store).await;
    reported_moves_are_checked_against_the_rules(store).await;
    waiting_runs_are_counted_per_pool_and_queue(store).await;
    counts_no_store_keeps_are_refused_not_wrapped(store).await;
    // Last: it deletes what other tests left older than its cutoff.
    old_history_is_pruned_but_what_must_stay(store).await;
}

pub async fn old_history_is_pruned_but_what_must_stay(store: &dyn Store) {
    use crate::ArtifactFilter;
    use headwater_core::retention::PruneKind;
    use headwater_core::{Artifact, ArtifactKind};
    // Long before every other test's records, so the counts are this test's.
    const ERA: i64 = -50_000_000;
    let at = |s: i64| t(ERA + s);
    let before = at(10_000);
    let f = flow(&format!("prune-{}", Uuid::now_v7().simple()), "1");
    let finished = |name: &str, created: i64| {
        let mut r = flow_run(&f, name, 0, State::completed(at(created + 10)));
        r.created = at(created);
        r
    };
    let old = finished("old", 0);
    let mut unfinished = finished("still-running", 1);
    unfinished.state = State::running(at(11));
    let deployment = Uuid::now_v7();
    let mut part_first = finished("partition-first-try", 2);
    let mut part_latest = finished("partition-latest", 3);
    for r in [&mut part_first, &mut part_latest] {
        r.deployment_id = Some(deployment);
        r.partition = Some("month=2019-01".into());
    }
    let parent = finished("parent", 4);
    let mut child = finished("child", 5);
    child.parent_flow_run_id = Some(parent.id);
    let young = finished("young", 20_000);
    let task = task_run(&old, "fetch", 0, ERA + 1);
    let key = format!("rows-{}", Uuid::now_v7().simple());
    let art = |key: Option<&str>, created: i64, run: &FlowRun| Artifact {
        id: Uuid::now_v7(),
        key: key.map(String::from),
        kind: ArtifactKind::Markdown,
        data: json!("# rows"),
        description: None,
        flow_run_id: Some(run.id),
        task_run_id: None,
        created: at(created),
    };
    let keyed_latest = art(Some(&key), 6, &old);
    let keyed_older = art(Some(&key), 5, &young);
    let loose = art(None, 6, &old);
    let line = |run: &FlowRun, s: i64| LogRecord {
        id: 0,
        flow_run_id: run.id,
        task_run_id: None,
        level: LogLevel::Info,
        timestamp: at(s),
        message: "a line".into(),
    };
    let runs = vec![
        old.clone(),
        unfinished.clone(),
        part_first.clone(),
        part_latest.clone(),
        parent.clone(),
        child.clone(),
        young.clone(),
    ];
    let states =
        runs.iter().map(|r| StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() }).collect();
    store
        .record(&WriteBatch {
            flows: vec![f.clone()],
            flow_runs: runs,
            task_runs: vec![task.clone()],
            states,
            logs: vec![line(&old, 1), line(&young, 2), line(&young, 20_001)],
            artifacts: vec![keyed_latest.clone(), keyed_older.clone(), loose.clone()],
            ..Default::default()
        })
        .await
        .unwrap();

    let doomed = [old.id, part_first.id, parent.id, child.id];
    assert_eq!(store.prune(PruneKind::Runs, before, 100, true).await.unwrap(), 4, "a dry run counts");
    assert!(store.read_flow_run(old.id).await.unwrap().is_some(), "a dry run deletes nothing");
    // Small batches, until one comes back short: the parent waits for its subflow.
    let mut deleted = 0;
    loop {
        let n = store.prune(PruneKind::Runs, before, 1, false).await.unwrap();
        deleted += n;
        if n < 1 {
            break;
        }
    }
    assert_eq!(deleted, 4);
    for id in doomed {
        assert!(store.read_flow_run(id).await.unwrap().is_none(), "pruned");
        assert!(store.read_states(id).await.unwrap().is_empty(), "with its states");
    }
    assert!(store.read_task_run(task.id).await.unwrap().is_none(), "with its task runs");
    assert!(store.read_states(task.id).await.unwrap().is_empty());
    assert!(store.read_logs(&LogFilter::for_flow_run(old.id)).await.unwrap().is_empty(), "with its logs");
    for kept in [&unfinished, &part_latest, &young] {
        assert!(store.read_flow_run(kept.id).await.unwrap().is_some(), "{} stays", kept.name);
    }
    // The name search forgets the pruned runs and still finds the others.
    let named =
        |name: &str| FlowRunFilter { flow_name: Some(f.name.clone()), name: Some(name.into()), ..Default::default() };
    let found = store.list_flow_runs(&named("partition-")).await.unwrap();
    assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), vec![part_latest.id]);
    assert!(store.list_flow_runs(&named("parent")).await.unwrap().is_empty());
    let arts = store.list_artifacts(&ArtifactFilter { key: Some(key.clone()), ..Default::default() }).await.unwrap();
    assert!(arts.iter().any(|a| a.id == keyed_latest.id), "a key's latest artifact stays with its run gone");
    let of_old =
        store.list_artifacts(&ArtifactFilter { flow_run_id: Some(old.id), ..Default::default() }).await.unwrap();
    assert!(of_old.iter().all(|a| a.id != loose.id), "a run's loose artifacts go with it");

    assert_eq!(store.prune(PruneKind::Artifacts, before, 100, true).await.unwrap(), 1);
    assert_eq!(store.prune(PruneKind::Artifacts, before, 100, false).await.unwrap(), 1);
    let arts = store.list_artifacts(&ArtifactFilter { key: Some(key.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(arts.iter().map(|a| a.id).collect::<Vec<_>>(), vec![keyed_latest.id], "the older version goes");

    assert_eq!(store.prune(PruneKind::Logs, before, 100, true).await.unwrap(), 1);
    assert_eq!(store.prune(PruneKind::Logs, before, 100, false).await.unwrap(), 1);
    let young_logs = store.read_logs(&LogFilter::for_flow_run(young.id)).await.unwrap();
    assert_eq!(young_logs.iter().map(|l| l.timestamp).collect::<Vec<_>>(), vec![at(20_001)]);
    assert_eq!(store.prune(PruneKind::Deliveries, before, 100, true).await.unwrap(), 0);
}

pub async fn waiting_runs_are_counted_per_pool_and_queue(store: &dyn Store) {
    let f = flow(&format!("waiting-{}", Uuid::now_v7().simple()), "1");
    let pool = format!("pool-{}", Uuid::now_v7().simple());
    let mut runs = Vec::new();
    for (i, (queue, late)) in
        [(None, false), (None, false), (None, true), (Some("urgent"), false)].into_iter().enumerate()
    {
        let state = if late { State::late(t(i as i64), t(i as i64)) } else { State::scheduled(t(i as i64), t(100)) };
        let mut r = flow_run(&f, &format!("waiting-{i}"), i as i64, state);
        r.work_pool = Some(pool.clone());
        r.work_queue = queue.map(String::from);
        runs.push(r);
    }
    let mut done = flow_run(&f, "done", 9, State::completed(t(9)));
    done.work_pool = Some(pool.clone());
    runs.push(done);
    store.record(&WriteBatch { flows: vec![f], flow_runs: runs, ..Default::default() }).await.unwrap();
    let mut mine: Vec<_> = store
        .waiting_runs()
        .await
        .unwrap()
        .into_iter()
        .filter(|w| w.work_pool == pool)
        .map(|w| (w.work_queue, w.late, w.runs))
        .collect();
    mine.sort();
    assert_eq!(
        mine,
        vec![("default".to_string(), false, 2), ("default".to_string(), true, 1), ("urgent".to_string(), false, 1)]
    );
}

pub async fn reported_moves_are_checked_against_the_rules(store: &dyn Store) {
    let f = flow(&format!("checked-{}", Uuid::now_v7().simple()), "1");
    let moved = |r: &FlowRun| StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() };
    let mut a = flow_run(&f, "crashed-meanwhile", 0, State::pending(t(1)));
    let mut b = flow_run(&f, "healthy", 0, State::pending(t(1)));
    let mut task = task_run(&b, "fetch", 0, 1);
    task.state = State::pending(t(2));
    let task_moves = [State::pending(t(2)), State::running(t(3)), State::completed(t(4))].map(|state| StateRecord {
        run_id: task.id,
        kind: RunKind::Task,
        state,
    });
    let created = WriteBatch {
        flows: vec![f.clone()],
        flow_runs: vec![a.clone(), b.clone()],
        states: vec![moved(&a), moved(&b)],
        ..Default::default()
    };
    assert!(store.record_checked(&created).await.unwrap().refused.is_empty());

    // The reaper crashes `a` while its process still reports it running.
    a.state = State::crashed(t(5), "no heartbeat");
    store
        .record(&WriteBatch { flow_runs: vec![a.clone()], states: vec![moved(&a)], ..Default::default() })
        .await
        .unwrap();
    a.state = State::running(t(6));
    b.state = State::running(t(6));
    task.state = State::completed(t(4));
    let report = WriteBatch {
        flow_runs: vec![a.clone(), b.clone()],
        task_runs: vec![task.clone()],
        states: [vec![moved(&a), moved(&b)], task_moves.to_vec()].concat(),
        logs: vec![log(&a, None, LogLevel::Info, "still working"), log(&b, None, LogLevel::Info, "working")],
        ..Default::default()
    };
    let outcome = store.record_checked(&report).await.unwrap();
    assert_eq!(outcome.refused.len(), 1, "{outcome:?}");
    let refused = &outcome.refused[0];
    assert_eq!((refused.run_id, refused.from, refused.to), (a.id, Some(StateType::Crashed), StateType::Running));
    assert_eq!(refused.run, "crashed-meanwhile");
    assert!(refused.reason.contains("CRASHED -> RUNNING"), "{}", refused.reason);

    let a_now = store.read_flow_run(a.id).await.unwrap().unwrap();
    assert_eq!(a_now.state.state_type, StateType::Crashed, "the refused run keeps its state");
    assert_eq!(store.read_states(a.id).await.unwrap().len(), 2);
    assert_eq!(store.read_flow_run(b.id).await.unwrap().unwrap().state.state_type, StateType::Running);
    assert_eq!(store.read_task_run(task.id).await.unwrap().unwrap().state.state_type, StateType::Completed);
    let logs = store.read_logs(&LogFilter::for_flow_run(a.id)).await.unwrap();
    assert_eq!(logs.len(), 1, "a refused run's logs are kept");

    // The same report again (its answer was lost): nothing new is refused or doubled.
    let again = store.record_checked(&report).await.unwrap();
    assert_eq!(again.refused.iter().map(|r| r.run_id).collect::<Vec<_>>(), vec![a.id]);
    assert_eq!(store.read_states(b.id).await.unwrap().len(), 2, "b's history is not written twice");
    assert_eq!(store.read_states(task.id).await.unwrap().len(), 3);
}

pub async fn automations_and_their_outbox(store: &dyn Store) {
    use headwater_core::{
        automation_id_for_name, Action, Automation, AutomationEvent, Delivery, DeliveryOutcome, DeliveryStatus, Trigger,
    };
    let name = format!("notify-{}", Uuid::now_v7().simple());
    let mut a = Automation {
        id: automation_id_for_name(&name),
        name: name.clone(),
        description: Some("tell the team".into()),
        enabled: true,
        trigger: Trigger::FlowRunState {
            states: vec!["Failed".into()],
            flows: vec![],
            deployments: vec![],
            tags: vec!["taxi".into()],
            work_pools: vec![],
        },
        actions: vec![
            Action::Notify { block: "slack".into(), subject: None, body: None, to: vec![] },
            Action::CancelRun,
        ],
        created: t(0),
        updated: t(0),
        status: Default::default(),
    };
    assert_eq!(store.apply_automation(&a).await.unwrap(), a);
    a.description = None;
    a.updated = t(5);
    a.created = t(5);
    let stored = store.apply_automation(&a).await.unwrap();
    assert_eq!((stored.created, stored.updated, stored.description), (t(0), t(5), None), "re-applied in place");
    let paused = store.set_automation_enabled(&name, false).await.unwrap().unwrap();
    assert!(!paused.enabled);
    assert!(store.set_automation_enabled("no-such-automation", false).await.unwrap().is_none());
    store.set_automation_enabled(&name, true).await.unwrap();
    assert!(store.list_automations().await.unwrap().iter().any(|x| x.name == name && x.enabled));
    assert!(store.list_deliveries(&name, 10).await.unwrap().is_empty(), "nothing delivered yet");

    let Some(outbox) = store.outbox() else {
        // A client of the server: the server keeps the outbox.
        assert!(store.delete_automation(&name).await.unwrap());
        return;
    };
    let active = outbox.active_automations().await.unwrap();
    assert_eq!(active.iter().find(|x| x.name == name).map(|x| &x.actions), Some(&a.actions));
    store.set_automation_enabled(&name, false).await.unwrap();
    assert!(outbox.active_automations().await.unwrap().iter().all(|x| x.name != name), "paused ones are left out");
    store.set_automation_enabled(&name, true).await.unwrap();
    // The state history as a stream: flow runs only, in order.
    let f = flow("outbox-flow", "1");
    let fr = flow_run(&f, "failing-run", 1, State::running(t(1)));
    let tr = task_run(&fr, "extract", 0, 1);
    let before = outbox.last_state_event().await.unwrap();
    let history = |run: &FlowRun, kind, state: State| StateRecord { run_id: run.id, kind, state };
    store
        .record(&WriteBatch {
            flows: vec![f.clone()],
            flow_runs: vec![fr.clone()],
            task_runs: vec![tr.clone()],
            states: vec![
                history(&fr, RunKind::Flow, State::running(t(1))),
                StateRecord { run_id: tr.id, kind: RunKind::Task, state: State::failed(t(2), "task") },
                history(&fr, RunKind::Flow, State::failed(t(3), "boom")),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let events = outbox.read_state_events(before, 100).await.unwrap();
    assert_eq!(events.len(), 2, "task states are not flow events");
    assert!(events[0].0 < events[1].0);
    assert_eq!(events[1].1.state.name, "Failed");
    assert!(outbox.last_state_event().await.unwrap() >= events[1].0);
    assert_eq!(outbox.read_state_events(events[0].0, 1).await.unwrap()[0].0, events[1].0);

    let cursor = format!("cursor-{name}");
    assert_eq!(outbox.read_cursor(&cursor).await.unwrap(), None);
    outbox.write_cursor(&cursor, 41).await.unwrap();
    outbox.write_cursor(&cursor, 42).await.unwrap();
    assert_eq!(outbox.read_cursor(&cursor).await.unwrap(), Some(42));

    // Deliveries: once per (automation, event, action), claimed once, retried, finished.
    let event = AutomationEvent {
        kind: "flow-run-state".into(),
        key: format!("state:{}", events[1].0),
        occurred: t(3),
        summary: "failing-run failed".into(),
        flow_run: Some(fr.clone()),
        state: Some(State::failed(t(3), "boom")),
        deployment: None,
        work_pool: None,
        worker: None,
        partition: None,
        dataset: None,
    };
    let now = Utc::now();
    let deliveries = Delivery::for_event(&a, &event, now);
    assert_eq!(outbox.enqueue_deliveries(&deliveries).await.unwrap(), 2);
    assert_eq!(outbox.enqueue_deliveries(&Delivery::for_event(&a, &event, now)).await.unwrap(), 0, "deduplicated");
    let mut ghost = a.clone();
    ghost.id = automation_id_for_name("deleted-meanwhile");
    assert_eq!(outbox.enqueue_deliveries(&Delivery::for_event(&ghost, &event, now)).await.unwrap(), 0);

    let lease = std::time::Duration::from_secs(60);
    let claimed = outbox.claim_deliveries(now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].event, event, "the event comes back as it was recorded");
    assert_eq!(claimed[0].automation, name);
    assert!(outbox.claim_deliveries(now, lease, 10).await.unwrap().is_empty(), "claimed deliveries are leased");
    let (notify, cancel) =
        if claimed[0].action_index == 0 { (&claimed[0], &claimed[1]) } else { (&claimed[1], &claimed[0]) };
    outbox
        .finish_delivery(
            notify.id,
            &DeliveryOutcome::Retry { at: now, error: "receiver down (connection refused)".into() },
        )
        .await
        .unwrap();
    outbox.finish_delivery(cancel.id, &DeliveryOutcome::Failed { error: "the run is over".into() }).await.unwrap();
    let status = store.read_automation(&name).await.unwrap().unwrap().status;
    assert_eq!((status.pending, status.failed, status.delivered), (1, 1, 0));
    assert!(status.last_error.is_some() && status.last_error_at.is_some());
    let again = outbox.claim_deliveries(now, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1, "the retry is due again");
    assert_eq!(again[0].attempts, 1);
    let at = Utc::now().trunc_subsecs(3);
    outbox.finish_delivery(again[0].id, &DeliveryOutcome::Delivered { at }).await.unwrap();
    let status = store.read_automation(&name).await.unwrap().unwrap().status;
    assert_eq!((status.pending, status.failed, status.delivered), (0, 1, 1));
    assert_eq!(status.last_delivered, Some(at));
    let listed = store.list_deliveries(&name, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|d| d.status == DeliveryStatus::Delivered && d.attempts == 2));
    let pending = Delivery::for_event(&a, &AutomationEvent { key: "later".into(), ..event.clone() }, now);
    assert_eq!(outbox.enqueue_deliveries(&pending).await.unwrap(), 2);
    assert_eq!(outbox.prune_deliveries(now - Duration::seconds(1)).await.unwrap(), 0, "nothing that old");
    assert_eq!(outbox.prune_deliveries(now + Duration::seconds(1)).await.unwrap(), 2, "finished ones go");
    assert_eq!(store.list_deliveries(&name, 10).await.unwrap().len(), 2, "pending ones stay");

    assert!(store.delete_automation(&name).await.unwrap());
    assert!(!store.delete_automation(&name).await.unwrap());
    assert!(store.list_deliveries(&name, 10).await.unwrap().is_empty(), "deliveries go with their automation");
}

pub async fn concurrency_slots_are_leased_atomically(store: &dyn Store) {
    use headwater_core::{Acquired, SlotRequest};
    let tag = format!("extract-{}", Uuid::now_v7().simple());
    let db = format!("db-{}", Uuid::now_v7().simple());
    let ask = |slots: Vec<(String, u32)>, ttl_ms: u64| SlotRequest { slots, holder: "fetch-0".into(), ttl_ms };
    let granted = |a: Acquired| match a {
        Acquired::Granted { lease } => lease,
        full => panic!("expected a lease, got {full:?}"),
    };
    // No limit: granted, nothing held.
    let free = granted(store.acquire_slots(&ask(vec![(tag.clone(), 1)], 60_000)).await.unwrap());
    assert!(free.slots.is_empty());

    let limit = store.set_concurrency_limit(&tag, 2, None).await.unwrap();
    assert_eq!((limit.limit, limit.active_slots), (2, 0));
    store.set_concurrency_limit(&db, 1, None).await.unwrap();
    let a = granted(store.acquire_slots(&ask(vec![(tag.clone(), 1)], 60_000)).await.unwrap());
    assert_eq!(a.slots, [(tag.clone(), 1)]);
    let b = granted(store.acquire_slots(&ask(vec![(tag.clone(), 1), ("no-limit".into(), 1)], 60_000)).await.unwrap());
    assert_eq!(b.slots, [(tag.clone(), 1)], "names without a limit are not part of the lease");
    assert_eq!(store.read_concurrency_limit(&tag).await.unwrap().unwrap().active_slots, 2);
    match store.acquire_slots(&ask(vec![(db.clone(), 1), (tag.clone(), 1)], 60_000)).await.unwrap() {
        Acquired::Full { name, limit, active } => assert_eq!((name, limit, active), (tag.clone(), 2, 2)),
        other => panic!("{other:?}"),
    }
    // All or none: the free `db` slot was not taken by the refused request.
    assert_eq!(store.read_concurrency_limit(&db).await.unwrap().unwrap().active_slots, 0);
    assert!(matches!(
        store.acquire_slots(&ask(vec![(db.clone(), 2)], 60_000)).await,
        Err(StoreError::Refused(m)) if m.contains("allows 1")
    ));

    // Released slots are free again; a second release changes nothing.
    assert!(store.release_lease(a.id).await.unwrap());
    assert!(!store.release_lease(a.id).await.unwrap());
    let c = granted(store.acquire_slots(&ask(vec![(tag.clone(), 1)], 300)).await.unwrap());
    // A lease that is not renewed expires (its holder died): the slot frees itself.
    assert!(store.renew_lease(b.id, 60_000).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert!(!store.renew_lease(c.id, 60_000).await.unwrap(), "too late: the lease expired");
    assert_eq!(store.read_concurrency_limit(&tag).await.unwrap().unwrap().active_slots, 1);
    granted(store.acquire_slots(&ask(vec![(tag.clone(), 1)], 60_000)).await.unwrap());
    assert_eq!(store.reset_concurrency_limit(&tag).await.unwrap(), 2);
    assert_eq!(store.read_concurrency_limit(&tag).await.unwrap().unwrap().active_slots, 0);

    // A rate limit: 2 slots at 4 per second, each taken 500 ms (slow enough that a busy
    // machine takes the three asks below before one frees).
    let api = format!("api-{}", Uuid::now_v7().simple());
    store.set_concurrency_limit(&api, 2, Some(4.0)).await.unwrap();
    let r = granted(store.acquire_slots(&ask(vec![(api.clone(), 1)], 60_000)).await.unwrap());
    granted(store.acquire_slots(&ask(vec![(api.clone(), 1)], 60_000)).await.unwrap());
    assert!(!store.release_lease(r.id).await.unwrap(), "a rate limit's slot is not given back");
    assert!(matches!(store.acquire_slots(&ask(vec![(api.clone(), 1)], 60_000)).await.unwrap(), Acquired::Full { .. }));
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    granted(store.acquire_slots(&ask(vec![(api.clone(), 1)], 60_000)).await.unwrap());

    let listed = store.list_concurrency_limits().await.unwrap();
    assert!(listed.iter().any(|l| l.name == api && l.slot_decay_per_second == Some(4.0)));
    assert!(matches!(store.set_concurrency_limit("", 1, None).await, Err(StoreError::Refused(_))));
    for name in [&tag, &db, &api] {
        assert!(store.delete_concurrency_limit(name).await.unwrap());
    }
    assert!(!store.delete_concurrency_limit(&tag).await.unwrap());
    assert!(store.read_concurrency_limit(&tag).await.unwrap().is_none());
}

pub async fn datasets_version_partitions_and_guard_their_schema(store: &dyn Store) {
    use headwater_core::{Column, DatasetVersion};
    let name = format!("yellow-{}", Uuid::now_v7().simple());
    let cols = |t: &str| {
        vec![
            Column { name: "passenger_count".into(), data_type: t.into(), nullable: true },
            Column { name: "fare_amount".into(), data_type: "Float64".into(), nullable: true },
        ]
    };
    let write = |partition: &str, rows: u64, at: i64, ty: &str| DatasetVersion {
        dataset: name.clone(),
        partition: partition.into(),
        version: 0,
        location: format!("file:///lake/{name}/{partition}/data.parquet"),
        rows,
        bytes: rows * 10,
        schema: cols(ty),
        flow_run_id: Some(Uuid::now_v7()),
        written: t(at),
        inputs: vec![],
        source: None,
        source_check: None,
    };
    let v1 = store.record_dataset_write(&write("year=2021/month=01", 100, 1, "Int64"), false).await.unwrap();
    assert_eq!(v1.version, 1);
    store.record_dataset_write(&write("year=2021/month=02", 200, 2, "Int64"), false).await.unwrap();
    let again = store.record_dataset_write(&write("year=2021/month=01", 110, 3, "Int64"), false).await.unwrap();
    assert_eq!(again.version, 2, "a month written again is its next version");
    let d = store.read_dataset(&name).await.unwrap().unwrap();
    assert_eq!((d.partitions, d.rows, d.bytes), (2, 310, 3100), "current versions only: no double counting");
    assert_eq!(d.schema, cols("Int64"));
    let parts = store.list_partitions(&name).await.unwrap();
    assert_eq!(
        parts.iter().map(|p| (p.partition.as_str(), p.version)).collect::<Vec<_>>(),
        [("year=2021/month=01", 2), ("year=2021/month=02", 1)]
    );
    assert_eq!(store.dataset_history(&name).await.unwrap().len(), 3);
    assert!(store.list_datasets().await.unwrap().iter().any(|x| x.name == name));

    let e = store.record_dataset_write(&write("year=2021/month=03", 5, 4, "Float64"), false).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Refused(m) if m.contains("column 'passenger_count' is Int64 in the dataset but Float64")),
        "{e}"
    );
    assert_eq!(store.list_partitions(&name).await.unwrap().len(), 2, "a refused write records nothing");
    store.record_dataset_write(&write("year=2021/month=03", 5, 4, "Float64"), true).await.unwrap();
    assert_eq!(store.read_dataset(&name).await.unwrap().unwrap().schema, cols("Float64"), "evolution allowed");
    assert!(store.read_dataset("no-such-dataset").await.unwrap().is_none());

    // What a run wrote, itself or through a subflow; another run's writes
    // are not its own.
    let f = flow("etl-month", "1");
    let parent = flow_run(&f, "parent", 10, State::completed(t(12)));
    let mut child = flow_run(&f, "child", 10, State::completed(t(11)));
    child.parent_flow_run_id = Some(parent.id);
    let other = flow_run(&f, "other", 10, State::completed(t(11)));
    store
        .record(&WriteBatch {
            flows: vec![f.clone()],
            flow_runs: vec![parent.clone(), child.clone(), other.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let by = |run: &FlowRun, partition: &str, at: i64| DatasetVersion {
        flow_run_id: Some(run.id),
        ..write(partition, 7, at, "Float64")
    };
    store.record_dataset_write(&by(&child, "year=2022/month=01", 20), true).await.unwrap();
    store.record_dataset_write(&by(&parent, "year=2022/month=02", 21), true).await.unwrap();
    store.record_dataset_write(&by(&other, "year=2022/month=03", 22), true).await.unwrap();
    let written = store.versions_written_by(&[parent.id, Uuid::now_v7()]).await.unwrap();
    let seen: Vec<(Uuid, &str)> = written.iter().map(|w| (w.run_id, w.version.partition.as_str())).collect();
    assert_eq!(seen, [(parent.id, "year=2022/month=01"), (parent.id, "year=2022/month=02")]);
    assert_eq!(written[0].version.flow_run_id, Some(child.id), "the writer is kept");
    assert!(store.versions_written_by(&[]).await.unwrap().is_empty());

    // Lineage: a warehouse month made from the lake's month.
    let table = format!("{name}_trips");
    let source =
        headwater_core::VersionRef { dataset: name.clone(), partition: "year=2022/month=01".into(), version: 1 };
    let month = DatasetVersion {
        dataset: table.clone(),
        location: format!("duckdb:///wh.duckdb#{table}"),
        inputs: vec![source.clone()],
        ..by(&child, "year=2022/month=01", 23)
    };
    store.record_dataset_write(&month, true).await.unwrap();
    assert_eq!(store.dataset_history(&table).await.unwrap()[0].inputs, [source], "inputs are kept");
    let up = crate::lineage::lineage(store, &table).await.unwrap().unwrap();
    assert_eq!((up.upstream, up.downstream), (vec![name.clone()], vec![]));
    let down = crate::lineage::lineage(store, &name).await.unwrap().unwrap();
    assert_eq!((down.upstream, down.downstream), (vec![], vec![table.clone()]));
    assert!(crate::lineage::lineage(store, "no-such-dataset").await.unwrap().is_none());

    // The file on the web a version was made from, and a later look at it.
    let stamp = headwater_core::SourceStamp {
        url: format!("http://web/{name}_tripdata_2022-04.csv.gz"),
        etag: Some("\"v1\"".into()),
        last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
        size: Some(10),
    };
    let sourced = DatasetVersion { source: Some(stamp.clone()), ..write("year=2022/month=04", 5, 30, "Float64") };
    let sourced = store.record_dataset_write(&sourced, true).await.unwrap();
    let current = || async {
        store.list_partitions(&name).await.unwrap().into_iter().find(|v| v.partition == "year=2022/month=04").unwrap()
    };
    assert_eq!((current().await.source, current().await.source_check), (Some(stamp.clone()), None));
    let at = headwater_core::VersionRef {
        dataset: name.clone(),
        partition: "year=2022/month=04".into(),
        version: sourced.version,
    };
    let seen = headwater_core::SourceStamp { etag: Some("\"v2\"".into()), ..stamp.clone() };
    let check = headwater_core::SourceCheck { seen, checked: t(31), changed: true };
    assert!(store.record_source_check(&at, &check).await.unwrap());
    assert_eq!(current().await.source_check, Some(check.clone()));
    assert!(current().await.source_changed());
    let missing = headwater_core::VersionRef { version: 99, ..at.clone() };
    assert!(!store.record_source_check(&missing, &check).await.unwrap(), "no such version");
    // The partition written again: its new version has not been looked at.
    let again = DatasetVersion { source: Some(check.seen.clone()), ..write("year=2022/month=04", 6, 32, "Float64") };
    store.record_dataset_write(&again, true).await.unwrap();
    assert_eq!((current().await.rows, current().await.source_check), (6, None));

    // A freshness policy on the dataset: the partitions it expects, the late one stale.
    let policy: headwater_core::partition::DatasetPolicy = serde_json::from_value(json!({
        "time": {"every": "month", "start": "2022-01", "end": "2022-05", "timezone": "UTC"},
        "freshness": {"within": "2d"}
    }))
    .unwrap();
    store.set_dataset_policy(&name, Some(&policy), t(40)).await.unwrap();
    let d = store.read_dataset(&name).await.unwrap().unwrap();
    assert_eq!((d.policy.as_ref(), d.partitions), (Some(&policy), 7), "the policy is kept, the partitions too");
    let now: chrono::DateTime<Utc> = "2022-07-01T00:00:00Z".parse().unwrap();
    let parts = crate::freshness::dataset_partitions(store, &name, now).await.unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.partition.as_str()).collect();
    assert_eq!(
        names,
        [
            "year=2022/month=01",
            "year=2022/month=02",
            "year=2022/month=03",
            "year=2022/month=04",
            "year=2022/month=05",
            "year=2021/month=01",
            "year=2021/month=02",
            "year=2021/month=03"
        ],
        "what the policy expects, then what else it holds"
    );
    let stale: Vec<&str> = parts.iter().filter(|p| p.stale).map(|p| p.partition.as_str()).collect();
    assert_eq!(stale, ["year=2022/month=05"]);
    assert_eq!(parts[4].due, Some("2022-06-03T00:00:00Z".parse().unwrap()));
    assert!(parts[4].version.is_none() && parts[3].version.is_some());
    let before: chrono::DateTime<Utc> = "2022-01-01T00:00:00Z".parse().unwrap();
    let late = crate::freshness::newly_late(store, &name, &policy, before, now).await.unwrap();
    assert_eq!(late.iter().map(|l| l.partition.as_str()).collect::<Vec<_>>(), ["year=2022/month=05"]);
    // A policy for a dataset nothing has written yet creates it, empty.
    let planned = format!("{name}-planned");
    store.set_dataset_policy(&planned, Some(&policy), t(41)).await.unwrap();
    let empty = store.read_dataset(&planned).await.unwrap().unwrap();
    assert_eq!((empty.partitions, empty.schema.len(), empty.policy.is_some()), (0, 0, true));
    let parts = crate::freshness::dataset_partitions(store, &planned, now).await.unwrap();
    assert_eq!(parts.iter().filter(|p| p.stale).count(), 5, "none written, all late");
    // Hourly for years is too long to list whole: the newest hours are listed.
    let hourly: headwater_core::partition::DatasetPolicy = serde_json::from_value(json!({
        "time": {"every": "hour", "start": "2015-01-01T00", "timezone": "UTC"},
        "freshness": {"within": "1h"}
    }))
    .unwrap();
    store.set_dataset_policy(&planned, Some(&hourly), t(42)).await.unwrap();
    let parts = crate::freshness::dataset_partitions(store, &planned, now).await.unwrap();
    assert_eq!(parts.len(), crate::freshness::PARTITIONS_SHOWN);
    assert_eq!(parts.last().unwrap().partition, "year=2022/month=06/day=30/hour=23", "up to the newest complete hour");
    store.set_dataset_policy(&planned, None, t(42)).await.unwrap();
    assert!(store.read_dataset(&planned).await.unwrap().unwrap().policy.is_none());
}

/// The store under test must have a secret key.
pub async fn blocks_keep_secrets_sealed(store: &dyn Store) {
    use headwater_core::block::MASK;
    use headwater_core::{BlockDocument, BlockType};
    let slug = format!("warehouse-{}", Uuid::now_v7().simple());
    let ty = BlockType {
        slug: slug.clone(),
        name: "Warehouse".into(),
        description: "a test type".into(),
        schema: json!({"type": "object", "required": ["host"], "properties": {
            "host": {"type": "string"},
            "port": {"type": "integer"},
            "password": {"type": ["string", "null"], "writeOnly": true}
        }}),
    };
    store.register_block_types(std::slice::from_ref(&ty)).await.unwrap();
    assert!(store.list_block_types().await.unwrap().contains(&ty));
    let name = format!("wh-{}", Uuid::now_v7().simple());
    let doc = BlockDocument {
        name: name.clone(),
        block_type: slug.clone(),
        data: json!({"host": "db.internal", "port": 5432, "password": "hunter2"}),
        created: t(0),
        updated: t(0),
    };
    let saved = store.save_block(&doc).await.unwrap();
    assert_eq!(saved.data, json!({"host": "db.internal", "port": 5432, "password": MASK}));
    assert_eq!(store.read_block(&name, false).await.unwrap().unwrap().data["password"], MASK);
    assert_eq!(store.read_block(&name, true).await.unwrap().unwrap().data["password"], "hunter2");
    let listed = store.list_blocks().await.unwrap();
    let mine = listed.iter().find(|b| b.name == name).unwrap();
    assert_eq!(mine.data["password"], MASK);
    assert!(!serde_json::to_string(&listed).unwrap().contains("hunter2"));

    // Sent back masked (an edit form), the secret keeps its value.
    let mut edited = doc.clone();
    edited.data = json!({"host": "db2.internal", "port": 5432, "password": MASK});
    edited.updated = t(5);
    let saved = store.save_block(&edited).await.unwrap();
    assert_eq!((saved.created, saved.updated), (t(0), t(5)));
    let revealed = store.read_block(&name, true).await.unwrap().unwrap();
    assert_eq!(
        (revealed.data["host"].as_str(), revealed.data["password"].as_str()),
        (Some("db2.internal"), Some("hunter2"))
    );

    let mut bad = doc.clone();
    bad.data = json!({"host": "h", "port": "five"});
    let e = store.save_block(&bad).await.unwrap_err();
    assert!(matches!(&e, StoreError::Refused(m) if m.contains("port: expected integer")), "{e}");
    let mut unknown = doc.clone();
    unknown.block_type = "no-such-type".into();
    let e = store.save_block(&unknown).await.unwrap_err();
    assert!(matches!(&e, StoreError::Refused(m) if m.contains("unknown block type 'no-such-type'")), "{e}");
    assert!(store.delete_block(&name).await.unwrap());
    assert!(!store.delete_block(&name).await.unwrap());
    assert!(store.read_block(&name, true).await.unwrap().is_none());
}

pub async fn variables_set_read_and_delete(store: &dyn Store) {
    use headwater_core::Variable;
    let name = format!("taxi_months_{}", Uuid::now_v7().simple());
    let mut v = Variable {
        name: name.clone(),
        value: json!([1, 2, 3]),
        tags: vec!["taxi".into()],
        created: t(0),
        updated: t(0),
    };
    assert_eq!(store.set_variable(&v).await.unwrap(), v);
    v.value = json!({"months": [4], "note": "ünïcode"});
    v.updated = t(10);
    v.created = t(10);
    let stored = store.set_variable(&v).await.unwrap();
    assert_eq!((stored.created, stored.updated), (t(0), t(10)), "an update keeps the creation time");
    assert_eq!(store.read_variable(&name).await.unwrap().unwrap().value, v.value);
    assert!(store.list_variables().await.unwrap().iter().any(|x| x.name == name));
    assert!(store.delete_variable(&name).await.unwrap());
    assert!(!store.delete_variable(&name).await.unwrap());
    assert!(store.read_variable(&name).await.unwrap().is_none());
}

pub async fn artifacts_are_versioned_by_key(store: &dyn Store) {
    use crate::ArtifactFilter;
    use headwater_core::{Artifact, ArtifactKind};
    let f = flow(&format!("art-{}", Uuid::now_v7().simple()), "1");
    let run = flow_run(&f, "publisher", 0, State::completed(t(1)));
    let key = format!("row-counts-{}", Uuid::now_v7().simple());
    let art = |key: Option<&str>, at: i64, data| Artifact {
        id: Uuid::now_v7(),
        key: key.map(String::from),
        kind: ArtifactKind::Table,
        data,
        description: Some("rows per month".into()),
        flow_run_id: Some(run.id),
        task_run_id: None,
        created: t(at),
    };
    let v1 = art(Some(&key), 1, json!([{"month": 1, "rows": 1369765}]));
    let v2 = art(Some(&key), 2, json!([{"month": 1, "rows": 1369765}, {"month": 2, "rows": 1371709}]));
    let loose = art(None, 3, json!([[1, 2]]));
    let batch = WriteBatch {
        flows: vec![f],
        flow_runs: vec![run.clone()],
        artifacts: vec![v1.clone(), v2.clone(), loose.clone()],
        ..Default::default()
    };
    store.record(&batch).await.unwrap();
    store.record(&batch).await.unwrap(); // written twice: still three
    let of_run =
        store.list_artifacts(&ArtifactFilter { flow_run_id: Some(run.id), ..Default::default() }).await.unwrap();
    assert_eq!(of_run, [loose.clone(), v2.clone(), v1.clone()], "newest first, each once");
    let versions =
        store.list_artifacts(&ArtifactFilter { key: Some(key.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(versions.iter().map(|a| a.id).collect::<Vec<_>>(), [v2.id, v1.id]);
    let latest = store
        .list_artifacts(&ArtifactFilter { flow_run_id: Some(run.id), latest_only: true, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(latest, std::slice::from_ref(&v2), "the current version of each key; unkeyed ones left out");
    assert_eq!(store.delete_artifacts(&key).await.unwrap(), 2);
    let left = store.list_artifacts(&ArtifactFilter { flow_run_id: Some(run.id), ..Default::default() }).await.unwrap();
    assert_eq!(left, [loose]);
}

pub async fn work_queues_by_priority_with_limits(store: &dyn Store) {
    use headwater_core::{WorkPool, WorkPoolKind, WorkQueue, DEFAULT_QUEUE};
    let now = Utc::now().trunc_subsecs(6);
    let pool = format!("qpool-{}", Uuid::now_v7().simple());
    store.apply_work_pool(&WorkPool::new(&pool, WorkPoolKind::Process, now)).await.unwrap();
    let queues = store.list_work_queues(&pool).await.unwrap();
    assert_eq!(queues.iter().map(|q| (q.name.as_str(), q.priority)).collect::<Vec<_>>(), [(DEFAULT_QUEUE, 1)]);
    let mut low = WorkQueue::new(&pool, "low", 5, now);
    low.concurrency_limit = Some(1);
    assert_eq!(store.apply_work_queue(&low).await.unwrap(), low);
    let mut urgent = WorkQueue::new(&pool, "urgent", 0, now);
    store.apply_work_queue(&urgent).await.unwrap();
    let names: Vec<_> = store.list_work_queues(&pool).await.unwrap().into_iter().map(|q| q.name).collect();
    assert_eq!(names, ["urgent", DEFAULT_QUEUE, "low"]);

    // One run per queue, due in the reverse of the order they will be served.
    let run_in = |queue: Option<&str>, due_secs_ago: i64| {
        let mut spec =
            json!({"name": format!("d-{pool}"), "flow": "f", "entrypoint": "x", "work_pool": {"name": pool}});
        if let Some(q) = queue {
            spec["work_pool"]["queue"] = json!(q);
        }
        let d = headwater_core::parse_manifest("headwater.yaml", json!({"deployments": [spec]}), &|_| None, now)
            .unwrap()
            .remove(0);
        d.manual_run(&json!({}), now - Duration::seconds(due_secs_ago), now, due_secs_ago as u64)
    };
    let in_default = run_in(None, 50);
    let low1 = run_in(Some("low"), 40);
    let low2 = run_in(Some("low"), 30);
    let adhoc = run_in(Some("adhoc"), 20);
    let urgent1 = run_in(Some("urgent"), 10);
    assert_eq!(in_default.work_queue.as_deref(), Some(DEFAULT_QUEUE));
    let all = [in_default.clone(), low1.clone(), low2.clone(), adhoc.clone(), urgent1.clone()];
    assert_eq!(store.enqueue_runs(&all).await.unwrap(), 5);
    let pool_name = pool.as_str();
    let claim = |only: Vec<&str>| {
        let only: Vec<String> = only.into_iter().map(String::from).collect();
        async move { store.claim_due_run(pool_name, &only, now).await.unwrap().map(|r| r.id) }
    };
    assert_eq!(claim(vec!["low"]).await, Some(low1.id), "a worker limited to one queue");
    assert_eq!(claim(vec!["low"]).await, None, "the queue is at its limit");
    assert_eq!(claim(vec![]).await, Some(urgent1.id), "the highest priority first, though due last");
    assert_eq!(claim(vec![]).await, Some(in_default.id));
    assert_eq!(claim(vec![]).await, Some(adhoc.id), "a queue never created is served after the others");
    assert_eq!(claim(vec![]).await, None, "low2 waits for low's slot");
    // A paused queue hands out nothing; resumed, it does.
    urgent.paused = true;
    store.apply_work_queue(&urgent).await.unwrap();
    let urgent2 = run_in(Some("urgent"), 5);
    store.enqueue_runs(std::slice::from_ref(&urgent2)).await.unwrap();
    assert_eq!(claim(vec![]).await, None);
    urgent.paused = false;
    store.apply_work_queue(&urgent).await.unwrap();
    assert_eq!(claim(vec![]).await, Some(urgent2.id));

    let orphan = WorkQueue::new("no-such-pool", "q", 1, now);
    assert!(matches!(store.apply_work_queue(&orphan).await, Err(StoreError::Refused(m)) if m.contains("no-such-pool")));
    assert!(matches!(store.delete_work_queue(&pool, DEFAULT_QUEUE).await, Err(StoreError::Refused(_))));
    assert!(store.delete_work_queue(&pool, "low").await.unwrap());
    assert!(!store.delete_work_queue(&pool, "low").await.unwrap());
    assert!(store.delete_work_pool(&pool).await.unwrap());
    assert!(store.list_work_queues(&pool).await.unwrap().is_empty());
}

pub async fn crashed_runs_retry_when_their_flow_allows(store: &dyn Store) {
    let f = flow(&format!("crash-retry-{}", Uuid::now_v7().simple()), "1");
    let now = Utc::now().trunc_subsecs(6);
    let dead = |name: &str, run_count: u32| {
        let mut r = flow_run(&f, name, 0, State::running(now - Duration::seconds(600)));
        r.heartbeat = Some(now - Duration::seconds(300));
        r.work_pool = Some("crash-pool".into());
        r.run_count = run_count;
        r.retry_policy = Some(headwater_core::RetryPolicy::fixed(1, std::time::Duration::from_secs(30)));
        r
    };
    let first_attempt = dead("first-attempt", 1);
    let last_attempt = dead("last-attempt", 2);
    let mut by_hand = dead("by-hand", 1);
    by_hand.work_pool = None;
    store
        .record(&WriteBatch {
            flows: vec![f.clone()],
            flow_runs: vec![first_attempt.clone(), last_attempt.clone(), by_hand.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    store.crash_stale_runs(now - Duration::seconds(60)).await.unwrap();
    let retried = store.read_flow_run(first_attempt.id).await.unwrap().unwrap();
    assert_eq!((retried.state.state_type, retried.state.name.as_str()), (StateType::Scheduled, "AwaitingRetry"));
    assert!(retried.state.scheduled_time.unwrap() >= now + Duration::seconds(30), "after the flow's retry delay");
    assert_eq!(retried.end_time, None);
    assert_eq!(retried.retry_policy, first_attempt.retry_policy, "the policy survives");
    let history: Vec<_> =
        store.read_states(first_attempt.id).await.unwrap().into_iter().map(|s| s.state.name).collect();
    assert_eq!(history[history.len() - 2..], ["Crashed".to_string(), "AwaitingRetry".to_string()]);
    for r in [&last_attempt, &by_hand] {
        let got = store.read_flow_run(r.id).await.unwrap().unwrap();
        assert_eq!(got.state.state_type, StateType::Crashed, "{}: no retry left, or no worker to run it", r.name);
    }
}

pub async fn work_pools_pause_limit_and_workers(store: &dyn Store) {
    use headwater_core::{WorkPool, WorkPoolKind};
    let now = Utc::now().trunc_subsecs(6);
    let name = format!("pool-{}", Uuid::now_v7().simple());
    let mut pool = WorkPool::new(&name, WorkPoolKind::Process, t(0));
    pool.concurrency_limit = Some(1);
    assert_eq!(store.apply_work_pool(&pool).await.unwrap(), pool);
    assert!(store.list_work_pools().await.unwrap().iter().any(|p| p.name == name));

    let doc = json!({"deployments": [{"name": format!("d-{name}"), "flow": "f", "entrypoint": "x", "work_pool": {"name": name}}]});
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
    let runs: Vec<_> =
        (0..2).map(|i| d.manual_run(&json!({}), now - Duration::seconds(5 - i), now, i as u64)).collect();
    store.enqueue_runs(&runs).await.unwrap();
    let first = store.claim_due_run(&name, &[], now).await.unwrap().expect("a free slot");
    assert!(store.claim_due_run(&name, &[], now).await.unwrap().is_none(), "the pool is at its limit");
    let mut done = first.clone();
    done.state = State::completed(now);
    store.record(&WriteBatch { flow_runs: vec![done], ..Default::default() }).await.unwrap();
    // Paused: nothing handed out even with a free slot.
    pool.paused = true;
    pool.updated = t(5);
    let stored = store.apply_work_pool(&pool).await.unwrap();
    assert!(stored.paused);
    assert_eq!(stored.created, t(0));
    assert!(store.claim_due_run(&name, &[], now).await.unwrap().is_none(), "a paused pool hands out nothing");
    pool.paused = false;
    store.apply_work_pool(&pool).await.unwrap();
    assert_eq!(store.claim_due_run(&name, &[], now).await.unwrap().map(|r| r.id), Some(runs[1].id));

    store.worker_heartbeat(&name, "w1", now - Duration::seconds(10)).await.unwrap();
    store.worker_heartbeat(&name, "w1", now).await.unwrap();
    store.worker_heartbeat(&name, "w1", now - Duration::seconds(20)).await.unwrap();
    store.worker_heartbeat(&name, "w2", now).await.unwrap();
    let workers = store.list_workers(Some(&name)).await.unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers[0].last_heartbeat, now, "a heartbeat never moves back");
    assert!(store.list_workers(None).await.unwrap().len() >= 2);
    assert!(store.delete_work_pool(&name).await.unwrap());
    assert!(store.read_work_pool(&name).await.unwrap().is_none());
    assert!(store.list_workers(Some(&name)).await.unwrap().is_empty());
}

pub async fn deployment_limits_hold_at_claim_time(store: &dyn Store) {
    let now = Utc::now().trunc_subsecs(6);
    for (strategy, expect_cancel) in [("enqueue", false), ("cancel_new", true)] {
        let pool = format!("limited-{}", Uuid::now_v7().simple());
        let doc = json!({"deployments": [{
            "name": format!("one-at-a-time-{}", Uuid::now_v7().simple()), "flow": "f", "entrypoint": "x",
            "work_pool": {"name": pool}, "concurrency_limit": {"limit": 1, "collision_strategy": strategy}
        }]});
        let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
        store.apply_deployment(&d).await.unwrap();
        let runs: Vec<_> =
            (0..3).map(|i| d.manual_run(&json!({}), now - Duration::seconds(10 - i), now, i as u64)).collect();
        store.enqueue_runs(&runs).await.unwrap();
        let first = store.claim_due_run(&pool, &[], now).await.unwrap().expect("a free slot");
        assert_eq!(first.id, runs[0].id);
        assert!(store.claim_due_run(&pool, &[], now).await.unwrap().is_none(), "{strategy}: the deployment is full");
        let second = store.read_flow_run(runs[1].id).await.unwrap().unwrap();
        if expect_cancel {
            assert_eq!(second.state.state_type, StateType::Cancelled);
            assert!(second.state.message.as_deref().unwrap().contains("concurrency limit"));
        } else {
            assert_eq!(second.state.state_type, StateType::Scheduled, "enqueue: it waits");
        }
        // The slot frees when the running one finishes.
        let mut done = first.clone();
        done.state = State::completed(now);
        store.record(&WriteBatch { flow_runs: vec![done], ..Default::default() }).await.unwrap();
        let next = store.claim_due_run(&pool, &[], now).await.unwrap();
        if expect_cancel {
            // Every run that came due while it was full was cancelled.
            assert!(next.is_none());
            let third = store.read_flow_run(runs[2].id).await.unwrap().unwrap();
            assert_eq!(third.state.state_type, StateType::Cancelled);
        } else {
            assert_eq!(next.expect("the slot is free again").id, runs[1].id, "oldest waiting run first");
        }
    }
}

pub async fn backfills_run_each_partition_once_within_their_bound(store: &dyn Store) {
    use crate::backfills::{
        backfill_report, cancel_backfill, partition_grid, retry_failed, start_backfill, BackfillError, BackfillRequest,
    };
    use headwater_core::partition::{Only, Selection};
    let now = Utc::now().trunc_subsecs(6);
    let pool = format!("backfill-{}", Uuid::now_v7().simple());
    let name = format!("taxi-{}", Uuid::now_v7().simple());
    let doc = json!({"deployments": [{
        "name": name, "flow": "etl-month", "entrypoint": "x", "work_pool": {"name": pool},
        "parameters": {"lake": "taxi-lake"},
        "partitions": {
            "time": {"every": "month", "start": "2021-01", "end": "2021-03"},
            "static": {"color": ["yellow", "green"]},
            "parameters": {"color": "color", "year": "year", "month": "month"}
        }
    }]});
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
    store.apply_deployment(&d).await.unwrap();
    let request = BackfillRequest { deployment: name.clone(), max_concurrent: Some(2), ..Default::default() };

    let dry = start_backfill(store, BackfillRequest { dry_run: true, ..request.clone() }, now).await.unwrap();
    assert_eq!((dry.plan.to_run.len(), dry.created), (6, 0));
    assert!(store.read_backfill(&dry.backfill.name).await.unwrap().is_none(), "a dry run records nothing");
    let made = start_backfill(store, request.clone(), now).await.unwrap();
    assert_eq!(made.created, 6);
    let again = start_backfill(store, request.clone(), now).await.unwrap();
    assert_eq!((again.created, again.plan.in_flight.len()), (0, 6), "the same command twice runs nothing twice");
    let b = store.read_backfill(&made.backfill.name).await.unwrap().expect("by name");
    assert_eq!(store.read_backfill(&b.id.to_string()).await.unwrap().expect("by id").name, b.name);
    assert_eq!(store.list_backfills(Some(&name)).await.unwrap().len(), 1);
    assert_eq!(b.partitions.len(), 6);

    let runs = store
        .list_flow_runs(&FlowRunFilter { backfill_id: Some(b.id), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(runs.len(), 6);
    let first = runs.iter().find(|r| r.partition.as_deref() == Some("color=yellow/month=2021-01")).unwrap();
    assert_eq!(first.parameters, json!({"lake": "taxi-lake", "color": "yellow", "year": 2021, "month": 1}));
    assert!(first.tags.contains(&"partition:color=yellow/month=2021-01".to_string()));
    let by_partition = FlowRunFilter { partition: Some("color=green/month=2021-02".into()), ..Default::default() };
    assert_eq!(store.list_flow_runs(&by_partition).await.unwrap().len(), 1);

    // The server holds the backfill to 2 at once, whoever claims.
    let a = store.claim_due_run(&pool, &[], now).await.unwrap().expect("a slot");
    let second = store.claim_due_run(&pool, &[], now).await.unwrap().expect("a second slot");
    assert!(store.claim_due_run(&pool, &[], now).await.unwrap().is_none(), "at most 2 at once");
    let mut done = a.clone();
    done.state = State::completed(now);
    let mut failed = second.clone();
    failed.state = State::failed(now, "the download was cut off");
    store.record(&WriteBatch { flow_runs: vec![done, failed], ..Default::default() }).await.unwrap();
    let report = backfill_report(store, &b.name).await.unwrap();
    assert_eq!(report.counts.get("completed"), Some(&1));
    assert_eq!(report.counts.get("failed"), Some(&1));
    assert_eq!(report.counts.get("in_flight"), Some(&4));

    // Only the failed partition is queued again, once.
    let retried = retry_failed(store, &b.name, now).await.unwrap();
    assert_eq!(retried.created, 1);
    assert_eq!(retried.plan.to_run[0].partition, second.partition.clone().unwrap());
    assert_eq!(retry_failed(store, &b.name, now).await.unwrap().created, 0, "now it is queued");
    let latest = store.latest_partition_runs(d.id).await.unwrap();
    assert_eq!(latest.len(), 6, "one latest run per partition");
    let retry_run = latest.iter().find(|r| r.partition == second.partition).unwrap();
    assert_ne!(retry_run.id, second.id);
    assert_eq!(retry_run.state.state_type, StateType::Scheduled);

    let grid = partition_grid(store, &name, now).await.unwrap();
    assert_eq!(grid.times, ["2021-01", "2021-02", "2021-03"]);
    assert_eq!(grid.columns, ["yellow", "green"]);
    assert_eq!(grid.cells.len(), 6);

    // Cancelling stops what is queued; no run of it starts any more.
    let running = store.claim_due_run(&pool, &[], now).await.unwrap().expect("a slot freed");
    let (cancelled, stopped) = cancel_backfill(store, &b.name, now).await.unwrap();
    assert!(cancelled.cancelled.is_some());
    assert_eq!(stopped, 5, "four queued and one claimed");
    assert!(store.claim_due_run(&pool, &[], now).await.unwrap().is_none());
    let r = store.read_flow_run(running.id).await.unwrap().unwrap();
    assert_eq!(r.state.state_type, StateType::Cancelling, "a running run is asked to stop");
    let report = backfill_report(store, &b.name).await.unwrap();
    assert_eq!(report.counts.get("completed"), Some(&1));

    // Bad selections name the field and create nothing.
    let blue = Selection::default().with_statics(&["color=blue".into()]).unwrap();
    let e = start_backfill(store, BackfillRequest { selection: blue, ..request.clone() }, now).await.unwrap_err();
    assert!(matches!(&e, BackfillError::Invalid(p) if p.field == "partition.color"), "{e}");
    let early = Selection { from: Some("2020-12".into()), ..Default::default() };
    let e = start_backfill(store, BackfillRequest { selection: early, only: Only::All, ..request.clone() }, now)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("from: 2020-12 is before"), "{e}");
    let long = BackfillRequest { name: Some("n".repeat(201)), ..request.clone() };
    let e = start_backfill(store, long, now).await.unwrap_err();
    assert!(matches!(&e, BackfillError::Invalid(p) if p.field == "name"), "{e}");
    assert!(matches!(
        start_backfill(store, BackfillRequest { deployment: "no-such".into(), ..request }, now).await,
        Err(BackfillError::NoDeployment(_))
    ));
    assert_eq!(store.list_backfills(Some(&name)).await.unwrap().len(), 1);

    // A partition schedule runs last month once per colour, once.
    let pool = format!("monthly-{}", Uuid::now_v7().simple());
    let doc = json!({"deployments": [{
        "name": format!("{name}-monthly"), "flow": "etl-month", "entrypoint": "x", "work_pool": {"name": pool},
        "partitions": {
            "time": {"every": "month", "start": "2019-01", "timezone": "America/New_York"},
            "static": {"color": ["yellow", "green"]},
            "parameters": {"color": "color", "year": "year", "month": "month"}
        },
        "schedules": [{"cron": "0 5 2 * *", "timezone": "America/New_York", "partition": "latest"}]
    }]});
    let mut monthly = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
    monthly.created = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    store.apply_deployment(&monthly).await.unwrap();
    let at = Utc.with_ymd_and_hms(2021, 3, 2, 10, 0, 5).unwrap();
    let late = std::time::Duration::from_secs(15);
    assert_eq!(crate::scheduling::schedule_due(store, at, Some(&pool), late).await.unwrap(), 2);
    assert_eq!(crate::scheduling::schedule_due(store, at, Some(&pool), late).await.unwrap(), 0);
    let mut made: Vec<String> =
        store.latest_partition_runs(monthly.id).await.unwrap().into_iter().filter_map(|r| r.partition).collect();
    made.sort();
    assert_eq!(made, ["color=green/month=2021-02", "color=yellow/month=2021-02"]);
}

pub async fn runs_are_enqueued_once_and_claimed_once(store: &dyn Store) {
    let pool = format!("pool-{}", Uuid::now_v7().simple());
    let name = format!("queue-{}", Uuid::now_v7().simple());
    let doc = json!({"deployments": [{
        "name": name, "flow": "f", "entrypoint": "x", "work_pool": {"name": pool},
        "schedules": [{"interval": 1, "anchor_date": "2026-01-01T00:00:00Z"}]
    }]});
    let now = Utc::now().trunc_subsecs(6);
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
    let mut seed = 0u64;
    let mut next = || {
        seed += 1;
        seed
    };
    // 40 runs due over the last 40 seconds; asking twice creates them once.
    let runs = d.scheduled_runs(now - Duration::seconds(40), now, 100, now, &mut next);
    assert_eq!(runs.len(), 40);
    assert_eq!(store.enqueue_runs(&runs).await.unwrap(), 40);
    let again = d.scheduled_runs(now - Duration::seconds(40), now, 100, now, &mut next);
    assert_eq!(store.enqueue_runs(&again).await.unwrap(), 0, "idempotency keys hold");
    // A future run is not due yet.
    let future = d.manual_run(&json!({}), now + Duration::hours(1), now, 1);
    assert_eq!(store.enqueue_runs(std::slice::from_ref(&future)).await.unwrap(), 1);

    // Four claimers at once: every due run exactly once, oldest first.
    let mut claimed = Vec::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let (a, b, c, e) = futures_join4(store, &pool, now).await;
        let got: Vec<FlowRun> = [a, b, c, e].into_iter().flatten().collect();
        if got.is_empty() {
            break;
        }
        claimed.extend(got);
        assert!(rounds < 100);
    }
    let mut ids: Vec<Uuid> = claimed.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "each due run handed out once");
    assert_eq!(claimed.len(), 40);
    assert!(claimed.iter().all(|r| r.state.state_type == StateType::Pending && r.deployment_id == Some(d.id)));
    let stored = store.read_flow_run(claimed[0].id).await.unwrap().unwrap();
    assert_eq!(stored.state.state_type, StateType::Pending);
    assert_eq!(stored.work_pool.as_deref(), Some(pool.as_str()));
    let history: Vec<_> = store.read_states(stored.id).await.unwrap().into_iter().map(|s| s.state.name).collect();
    assert_eq!(history, ["Scheduled", "Pending"]);
    // A run nobody picked up in time becomes Late, and can still be claimed.
    let overdue = d.manual_run(&json!({}), now - Duration::minutes(5), now, 2);
    store.enqueue_runs(std::slice::from_ref(&overdue)).await.unwrap();
    let late = store.mark_late_runs(now - Duration::minutes(1)).await.unwrap();
    assert!(late.iter().any(|r| r.id == overdue.id));
    let stored = store.read_flow_run(overdue.id).await.unwrap().unwrap();
    assert_eq!((stored.state.state_type, stored.state.name.as_str()), (StateType::Scheduled, "Late"));
    assert_eq!(stored.state.scheduled_time, overdue.state.scheduled_time);
    assert!(store.mark_late_runs(now - Duration::minutes(1)).await.unwrap().iter().all(|r| r.id != overdue.id));
    assert_eq!(store.claim_due_run(&pool, &[], now).await.unwrap().map(|r| r.id), Some(overdue.id));
    assert!(
        store.claim_due_run(&pool, &[], now + Duration::hours(2)).await.unwrap().is_some(),
        "the future run, once due"
    );
    assert!(store.claim_due_run("no-such-pool", &[], now).await.unwrap().is_none());
    // A claimed run that never starts (its worker died) is not left PENDING.
    let never_started = store.read_flow_run(claimed[0].id).await.unwrap().unwrap();
    // Stamped when the claim held its locks: at or after the time it was asked for.
    let beat = never_started.heartbeat.expect("a claim counts as a heartbeat");
    assert!(beat >= now && beat < now + Duration::minutes(1), "{beat} is the claim's time ({now})");
    let crashed = store.crash_stale_runs(now + Duration::hours(3)).await.unwrap();
    assert!(crashed.iter().any(|r| r.id == never_started.id));
    assert_eq!(store.read_flow_run(never_started.id).await.unwrap().unwrap().state.state_type, StateType::Crashed);
}

async fn futures_join4(
    store: &dyn Store,
    pool: &str,
    now: DateTime<Utc>,
) -> (Option<FlowRun>, Option<FlowRun>, Option<FlowRun>, Option<FlowRun>) {
    let claim = || async { store.claim_due_run(pool, &[], now).await.unwrap() };
    tokio::join!(claim(), claim(), claim(), claim())
}

/// The one operation every caller (the API, the CLI, automations) uses.
pub async fn deployment_runs_start_with_their_parameters_checked(store: &dyn Store) {
    use crate::ops::{start_deployment_run, DeploymentRunError, DeploymentRunRequest};
    let name = format!("monthly-{}", Uuid::now_v7().simple());
    let flow_name = format!("load-month-{}", Uuid::now_v7().simple());
    let doc = json!({"deployments": [{
        "name": name, "flow": flow_name, "entrypoint": ["hw-examples", "load-month"],
        "parameters": {"month": 1}, "work_pool": {"name": "conformance"}
    }]});
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, t(0)).unwrap().remove(0);
    store.apply_deployment(&d).await.unwrap();
    let mut f = flow(&flow_name, "1");
    f.parameter_schema = json!({"type": "object", "properties": {"month": {"type": "integer", "maximum": 12}}});
    store.record(&WriteBatch { flows: vec![f], ..Default::default() }).await.unwrap();
    let ask = |month: serde_json::Value, key: Option<&str>, check: bool| DeploymentRunRequest {
        parameters: json!({"month": month}).as_object().unwrap().clone(),
        idempotency_key: key.map(str::to_string),
        check,
    };

    let refused = start_deployment_run(store, &name, ask(json!(13), None, true), None).await.unwrap_err();
    assert!(
        matches!(&refused, DeploymentRunError::InvalidParameters(m) if m.starts_with("parameters.month")),
        "{refused}"
    );
    let program = |_: &headwater_core::Deployment, _: &serde_json::Value| Err("the program says no".to_string());
    let refused = start_deployment_run(store, &name, ask(json!(2), None, true), Some(&program)).await.unwrap_err();
    assert_eq!(refused.to_string(), "the program says no");
    assert!(store
        .list_flow_runs(&FlowRunFilter { deployment_id: Some(d.id), ..Default::default() })
        .await
        .unwrap()
        .is_empty());

    let key = format!("{name}-once");
    let started = start_deployment_run(store, &name, ask(json!(2), Some(&key), true), None).await.unwrap();
    assert!(started.created);
    assert_eq!((started.run.parameters["month"].clone(), started.run.deployment_id), (json!(2), Some(d.id)));
    assert_eq!(started.run.state.state_type, StateType::Scheduled);
    let again = start_deployment_run(store, &name, ask(json!(2), Some(&key), true), None).await.unwrap();
    assert!(!again.created, "one run per idempotency key");
    // Unchecked (`--no-check`), a value the schema refuses is queued as given.
    assert!(start_deployment_run(store, &name, ask(json!(13), None, false), None).await.unwrap().created);
    let runs = store.list_flow_runs(&FlowRunFilter { deployment_id: Some(d.id), ..Default::default() }).await.unwrap();
    assert_eq!(runs.len(), 2);
    let missing = start_deployment_run(store, "no-such-deployment", ask(json!(1), None, true), None).await;
    assert!(matches!(missing, Err(DeploymentRunError::NoDeployment(_))));
    store.delete_deployment(&name).await.unwrap();
}

pub async fn deployments_apply_list_and_delete(store: &dyn Store) {
    let name = format!("taxi-{}", Uuid::now_v7().simple());
    let doc = json!({"deployments": [{
        "name": name, "flow": "etl-parent-flow", "entrypoint": ["hw-examples", "etl-parent-flow"],
        "parameters": {"year": 2021},
        "schedules": [{"cron": "0 5 1 * *", "timezone": "Europe/Berlin"}, {"interval": 3600}],
        "concurrency_limit": 2
    }]});
    let first = headwater_core::parse_manifest("headwater.yaml", doc.clone(), &|_| None, t(0)).unwrap().remove(0);
    let stored = store.apply_deployment(&first).await.unwrap();
    assert_eq!(stored, first);
    assert_eq!(store.read_deployment(&name).await.unwrap().unwrap(), first);
    // Re-applying (later, paused) replaces the content and keeps the creation time.
    let mut again = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, t(60)).unwrap().remove(0);
    again.paused = true;
    let stored = store.apply_deployment(&again).await.unwrap();
    assert_eq!(stored.created, t(0));
    assert_eq!(stored.updated, t(60));
    let read = store.read_deployment(&name).await.unwrap().unwrap();
    assert!(read.paused);
    assert_eq!(read.schedules.len(), 2);
    assert_eq!(read.schedules[0].schedule.timezone(), "Europe/Berlin");
    assert!(store.list_deployments().await.unwrap().iter().any(|d| d.name == name));
    assert!(store.delete_deployment(&name).await.unwrap());
    assert!(!store.delete_deployment(&name).await.unwrap());
    assert!(store.read_deployment(&name).await.unwrap().is_none());
}

pub async fn stale_runs_crash_with_their_tasks(store: &dyn Store) {
    let f = flow(&format!("reap-{}", Uuid::now_v7().simple()), "1");
    // Stores keep microseconds.
    let now = Utc::now().trunc_subsecs(6);
    let ago = |s: i64| now - Duration::seconds(s);
    let mut dead = flow_run(&f, "killed", 0, State::running(ago(600)));
    dead.heartbeat = Some(ago(300));
    let mut alive = flow_run(&f, "alive", 1, State::running(ago(600)));
    alive.heartbeat = Some(ago(300));
    let mut done = flow_run(&f, "done", 2, State::completed(ago(400)));
    done.heartbeat = Some(ago(400));
    let mut dead_task = task_run(&dead, "load", 0, 0);
    dead_task.state = State::running(ago(500));
    dead_task.end_time = None;
    let finished_task = task_run(&dead, "fetch", 0, 0);
    store
        .record(&WriteBatch {
            flows: vec![f],
            flow_runs: vec![dead.clone(), alive.clone(), done.clone()],
            task_runs: vec![dead_task.clone(), finished_task.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    // The live run's process is still beating.
    store
        .record(&WriteBatch { heartbeats: vec![Heartbeat { flow_run_id: alive.id, at: ago(1) }], ..Default::default() })
        .await
        .unwrap();
    // An older heartbeat never moves the clock back.
    store
        .record(&WriteBatch {
            heartbeats: vec![Heartbeat { flow_run_id: alive.id, at: ago(200) }],
            ..Default::default()
        })
        .await
        .unwrap();

    let crashed = store.crash_stale_runs(ago(60)).await.unwrap();
    let crashed_ids: Vec<_> = crashed.iter().map(|r| r.id).collect();
    assert!(crashed_ids.contains(&dead.id));
    assert!(!crashed_ids.contains(&alive.id) && !crashed_ids.contains(&done.id));

    let got = store.read_flow_run(dead.id).await.unwrap().unwrap();
    assert_eq!(got.state.state_type, StateType::Crashed);
    assert!(got.state.message.as_deref().unwrap().starts_with("no heartbeat since"), "{:?}", got.state.message);
    assert!(got.end_time.is_some());
    assert_eq!(store.read_states(dead.id).await.unwrap().last().unwrap().state.state_type, StateType::Crashed);
    let tasks = store.list_task_runs(dead.id).await.unwrap();
    let by_name = |n: &str| tasks.iter().find(|t| t.task_name == n).unwrap().state.state_type;
    assert_eq!(by_name("load"), StateType::Crashed);
    assert_eq!(by_name("fetch"), StateType::Completed, "finished task runs keep their state");
    let alive_now = store.read_flow_run(alive.id).await.unwrap().unwrap();
    assert_eq!(alive_now.state.state_type, StateType::Running);
    assert_eq!(alive_now.heartbeat, Some(ago(1)));
    assert!(store.crash_stale_runs(ago(60)).await.unwrap().iter().all(|r| r.id != dead.id), "crashed once");
}

pub async fn flows_upsert_by_name(store: &dyn Store) {
    let name = format!("etl-{}", Uuid::now_v7().simple());
    let batch = WriteBatch { flows: vec![flow(&name, "1")], ..Default::default() };
    store.record(&batch).await.unwrap();
    let mut f2 = flow(&name, "2");
    f2.updated = t(10);
    store.record(&WriteBatch { flows: vec![f2], ..Default::default() }).await.unwrap();
    let got = store.read_flow(&name).await.unwrap().expect("flow stored");
    assert_eq!(got.version.as_deref(), Some("2"));
    assert_eq!(got.created, t(0), "created is kept on re-registration");
    assert_eq!(got.updated, t(10));
    assert_eq!(got.parameter_schema["properties"]["month"]["type"], "integer");
    assert!(store.list_flows().await.unwrap().iter().any(|f| f.name == name));
    assert!(store.read_flow("no-such-flow").await.unwrap().is_none());
}

pub async fn runs_round_trip_with_history(store: &dyn Store) {
    let f = flow(&format!("hist-{}", Uuid::now_v7().simple()), "1");
    let mut run = flow_run(&f, "brave-heron", 1, State::pending(t(1)));
    let mut states = vec![StateRecord { run_id: run.id, kind: RunKind::Flow, state: run.state.clone() }];
    store
        .record(&WriteBatch {
            flows: vec![f.clone()],
            flow_runs: vec![run.clone()],
            states: states.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Later snapshots replace the row; history is appended.
    run.state = State::running(t(2));
    run.start_time = Some(t(2));
    states.push(StateRecord { run_id: run.id, kind: RunKind::Flow, state: run.state.clone() });
    let mut ar = State::awaiting_retry(t(3), t(13));
    ar.message = Some("retry 1 of 2".into());
    states.push(StateRecord { run_id: run.id, kind: RunKind::Flow, state: ar });
    let mut retrying = State::running(t(13));
    retrying.name = "Retrying".into();
    states.push(StateRecord { run_id: run.id, kind: RunKind::Flow, state: retrying });
    run.state = State::failed(t(20), "boom: connection reset");
    run.end_time = Some(t(20));
    run.run_count = 2;
    states.push(StateRecord { run_id: run.id, kind: RunKind::Flow, state: run.state.clone() });
    store
        .record(&WriteBatch { flow_runs: vec![run.clone()], states: states[1..].to_vec(), ..Default::default() })
        .await
        .unwrap();

    let got = store.read_flow_run(run.id).await.unwrap().expect("run stored");
    assert_eq!(got, run);
    let history = store.read_states(run.id).await.unwrap();
    assert_eq!(history, states);
    assert_eq!(history[2].state.name, "AwaitingRetry");
    assert_eq!(history[2].state.scheduled_time, Some(t(13)));
    assert!(store.read_flow_run(Uuid::now_v7()).await.unwrap().is_none());
}

pub async fn filters_and_keyset_pagination(store: &dyn Store) {
    let f = flow(&format!("page-{}", Uuid::now_v7().simple()), "1");
    let mut runs = Vec::new();
    for i in 0..25 {
        let state = match i % 3 {
            0 => State::completed(t(i)),
            1 => State::failed(t(i), "x"),
            _ => State::late(t(i), t(i)),
        };
        let mut run = flow_run(&f, &format!("run-{i}"), i, state);
        if i % 2 == 0 {
            run.tags.push("taxi".into());
        }
        runs.push(run);
    }
    let parent = runs[0].id;
    runs[1].parent_flow_run_id = Some(parent);
    runs[2].parent_flow_run_id = Some(parent);
    // run-2 is a Prefect client's subflow: a task run of run-0 stands for it.
    let wrapper = Uuid::now_v7();
    runs[2].parent_task_run_id = Some(wrapper);
    store.record(&WriteBatch { flows: vec![f.clone()], flow_runs: runs.clone(), ..Default::default() }).await.unwrap();

    let base = FlowRunFilter { flow_name: Some(f.name.clone()), limit: 10, ..Default::default() };
    let page1 = store.list_flow_runs(&base).await.unwrap();
    assert_eq!(page1.len(), 10);
    assert_eq!(page1[0].name, "run-24", "newest first");
    let last = page1.last().unwrap();
    let page2 = store.list_flow_runs(&FlowRunFilter { before: Some(last.into()), ..base.clone() }).await.unwrap();
    assert_eq!(page2.len(), 10);
    assert_eq!(page2[0].name, "run-14");
    let last = page2.last().unwrap();
    let page3 = store.list_flow_runs(&FlowRunFilter { before: Some(last.into()), ..base.clone() }).await.unwrap();
    assert_eq!(page3.len(), 5);
    assert_eq!(page3.last().unwrap().name, "run-0");

    let failed = store
        .list_flow_runs(&FlowRunFilter { states: vec![StateType::Failed], limit: 100, ..base.clone() })
        .await
        .unwrap();
    assert_eq!(failed.len(), 8);
    assert!(failed.iter().all(|r| r.state.state_type == StateType::Failed));
    let late = store
        .list_flow_runs(&FlowRunFilter { state_names: vec!["Late".into()], limit: 100, ..base.clone() })
        .await
        .unwrap();
    assert_eq!(late.len(), 8);
    let two = store
        .list_flow_runs(&FlowRunFilter {
            states: vec![StateType::Failed, StateType::Completed],
            limit: 100,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(two.len(), 17);
    let children = store
        .list_flow_runs(&FlowRunFilter { parent_flow_run_id: Some(parent), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(children.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), vec!["run-2", "run-1"]);
    let wrapped = store
        .list_flow_runs(&FlowRunFilter { parent_task_run_id: Some(wrapper), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(
        wrapped.iter().map(|r| (r.name.as_str(), r.parent_task_run_id)).collect::<Vec<_>>(),
        vec![("run-2", Some(wrapper))]
    );

    let names = |runs: Vec<FlowRun>| runs.into_iter().map(|r| r.name).collect::<Vec<_>>();
    let by_name =
        store.list_flow_runs(&FlowRunFilter { name: Some("UN-1".into()), limit: 100, ..base.clone() }).await.unwrap();
    assert_eq!(by_name.len(), 11, "run-1 and run-10 … run-19, whatever the case: {:?}", names(by_name));
    let wildcard =
        store.list_flow_runs(&FlowRunFilter { name: Some("n-2%".into()), limit: 100, ..base.clone() }).await.unwrap();
    assert!(wildcard.is_empty(), "% is searched for, not a wildcard: {:?}", names(wildcard));
    let tagged = store
        .list_flow_runs(&FlowRunFilter { tags: vec!["taxi".into(), "nightly".into()], limit: 100, ..base.clone() })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 13);
    assert!(tagged.iter().all(|r| r.tags.contains(&"taxi".to_string())));
    let no_tag = store
        .list_flow_runs(&FlowRunFilter { tags: vec!["taxi".into(), "hourly".into()], limit: 100, ..base.clone() })
        .await
        .unwrap();
    assert!(no_tag.is_empty());
    let window = store
        .list_flow_runs(&FlowRunFilter { since: Some(t(5)), until: Some(t(10)), limit: 100, ..base.clone() })
        .await
        .unwrap();
    assert_eq!(names(window), ["run-9", "run-8", "run-7", "run-6", "run-5"]);
}

pub async fn run_history_by_state(store: &dyn Store) {
    // A span of its own: other tests' runs sit near t(0).
    let base = 1_000_000 + (Uuid::now_v7().as_u128() % 100_000) as i64 * 1_000;
    let f = flow(&format!("history-{}", Uuid::now_v7().simple()), "1");
    let runs: Vec<FlowRun> = [(0, State::completed(t(0))), (5, State::failed(t(0), "x")), (15, State::completed(t(0)))]
        .into_iter()
        .chain([(29, State::late(t(0), t(0))), (30, State::completed(t(0))), (-1, State::completed(t(0)))])
        .enumerate()
        .map(|(i, (at, state))| flow_run(&f, &format!("h-{i}"), base + at, state))
        .collect();
    store.record(&WriteBatch { flows: vec![f], flow_runs: runs, ..Default::default() }).await.unwrap();

    let q = crate::HistoryQuery { since: t(base), until: t(base + 30), buckets: 3 };
    let buckets = store.flow_run_history(&q).await.unwrap();
    let counts: Vec<Vec<(StateType, u64)>> =
        buckets.iter().map(|b| b.counts.iter().map(|(s, n)| (*s, *n)).collect()).collect();
    assert_eq!(
        counts,
        [
            vec![(StateType::Completed, 1), (StateType::Failed, 1)],
            vec![(StateType::Completed, 1)],
            vec![(StateType::Scheduled, 1)],
        ],
        "the run at the end of the span and the one before it are not counted"
    );
    assert_eq!((buckets[0].start, buckets[0].end, buckets[2].end), (t(base), t(base + 10), t(base + 30)));
    let one =
        store.flow_run_history(&crate::HistoryQuery { since: t(base), until: t(base + 30), buckets: 0 }).await.unwrap();
    assert_eq!(one.len(), 1, "at least one bucket");
    assert_eq!(one[0].counts.values().sum::<u64>(), 4);
}

pub async fn task_runs_and_logs(store: &dyn Store) {
    let f = flow(&format!("tasks-{}", Uuid::now_v7().simple()), "1");
    let fr = flow_run(&f, "calm-otter", 0, State::completed(t(9)));
    let tasks: Vec<TaskRun> = (0..3).map(|k| task_run(&fr, "fetch", k, k as i64)).collect();
    let logs = vec![
        log(&fr, None, LogLevel::Info, "Created flow run 'calm-otter'"),
        log(&fr, Some(tasks[0].id), LogLevel::Debug, "debug detail"),
        log(&fr, Some(tasks[1].id), LogLevel::Warning, "rows: 1369765 — 'quoted' \"text\""),
        log(&fr, None, LogLevel::Error, "final error"),
    ];
    store
        .record(&WriteBatch {
            flows: vec![f],
            flow_runs: vec![fr.clone()],
            task_runs: tasks.clone(),
            logs: logs.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let got = store.list_task_runs(fr.id).await.unwrap();
    assert_eq!(got, tasks);
    assert_eq!(store.read_task_run(tasks[1].id).await.unwrap().as_ref(), Some(&tasks[1]));
    assert_eq!(store.read_task_run(Uuid::now_v7()).await.unwrap(), None, "an unknown task run is None, not an error");

    let all = store.read_logs(&LogFilter::for_flow_run(fr.id)).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids increase in write order");
    assert_eq!(all[2].message, logs[2].message);
    assert_eq!(all[1].task_run_id, Some(tasks[0].id));
    let warn_up =
        store.read_logs(&LogFilter { min_level: LogLevel::Warning, ..LogFilter::for_flow_run(fr.id) }).await.unwrap();
    assert_eq!(warn_up.iter().map(|l| l.level).collect::<Vec<_>>(), vec![LogLevel::Warning, LogLevel::Error]);
    let after = store.read_logs(&LogFilter { after_id: all[1].id, ..LogFilter::for_flow_run(fr.id) }).await.unwrap();
    assert_eq!(after.len(), 2);
    let of_task =
        store.read_logs(&LogFilter { task_run_id: Some(tasks[1].id), ..LogFilter::for_flow_run(fr.id) }).await.unwrap();
    assert_eq!(of_task.len(), 1);
    let limited = store.read_logs(&LogFilter { limit: 3, ..LogFilter::for_flow_run(fr.id) }).await.unwrap();
    assert_eq!(limited.len(), 3);
}

pub async fn run_timeline_in_start_order(store: &dyn Store) {
    let f = flow(&format!("timeline-{}", Uuid::now_v7().simple()), "1");
    let mut parent = flow_run(&f, "parent", 0, State::running(t(1)));
    parent.start_time = Some(t(1));
    // Created in one order, started in another; one retried, one waiting.
    let mut late_starter = task_run(&parent, "load", 0, 1);
    late_starter.start_time = Some(t(8));
    late_starter.end_time = None;
    late_starter.state = State::running(t(8));
    let mut retried = task_run(&parent, "fetch", 0, 2);
    retried.run_count = 3;
    retried.state = State::failed(t(4), "boom");
    let mut waiting = task_run(&parent, "fetch", 1, 3);
    (waiting.start_time, waiting.end_time, waiting.state) = (None, None, State::pending(t(3)));
    let mut child = flow_run(&f, "child", 4, State::completed(t(6)));
    (child.parent_flow_run_id, child.start_time, child.end_time) = (Some(parent.id), Some(t(5)), Some(t(6)));
    let other = flow_run(&f, "unrelated", 4, State::completed(t(6)));
    let other_task = task_run(&other, "fetch", 0, 4);
    store
        .record(&WriteBatch {
            flows: vec![f],
            flow_runs: vec![parent.clone(), child.clone(), other],
            task_runs: vec![late_starter.clone(), retried.clone(), waiting.clone(), other_task],
            ..Default::default()
        })
        .await
        .unwrap();

    let timeline = store.run_timeline(parent.id).await.unwrap();
    let seen: Vec<(&str, RunKind, StateType, u32)> =
        timeline.iter().map(|e| (e.name.as_str(), e.kind, e.state_type, e.run_count)).collect();
    assert_eq!(
        seen,
        [
            ("fetch-0", RunKind::Task, StateType::Failed, 3),
            ("child", RunKind::Flow, StateType::Completed, 1),
            ("load-0", RunKind::Task, StateType::Running, 1),
            ("fetch-1", RunKind::Task, StateType::Pending, 1),
        ],
        "started entries by start time, the waiting one last, nothing of another run"
    );
    assert_eq!(timeline[0].id, retried.id);
    assert_eq!(timeline[0].state_name, "Failed");
    assert_eq!((timeline[1].id, timeline[1].start_time, timeline[1].end_time), (child.id, Some(t(5)), Some(t(6))));
    assert_eq!((timeline[2].start_time, timeline[2].end_time), (Some(t(8)), None));
    assert!(store.run_timeline(Uuid::now_v7()).await.unwrap().is_empty());
}

pub async fn resolve_by_id_prefix_and_name(store: &dyn Store) {
    let f = flow(&format!("resolve-{}", Uuid::now_v7().simple()), "1");
    let unique = format!("unique-{}", Uuid::now_v7().simple());
    let a = flow_run(&f, &unique, 0, State::completed(t(1)));
    let dup = format!("dup-{}", Uuid::now_v7().simple());
    let b = flow_run(&f, &dup, 1, State::completed(t(1)));
    let c = flow_run(&f, &dup, 2, State::completed(t(1)));
    store.record(&WriteBatch { flows: vec![f], flow_runs: vec![a.clone(), b, c], ..Default::default() }).await.unwrap();
    assert_eq!(store.resolve_flow_run(&a.id.to_string()).await.unwrap().id, a.id);
    assert_eq!(store.resolve_flow_run(&a.id.to_string()[..36]).await.unwrap().id, a.id);
    assert_eq!(store.resolve_flow_run(&unique).await.unwrap().id, a.id);
    assert!(matches!(store.resolve_flow_run(&dup).await, Err(StoreError::Ambiguous { count: 2, .. })));
    let missing = store.resolve_flow_run("no-such-run").await.unwrap_err();
    assert_eq!(missing.to_string(), "no flow run matches 'no-such-run'");
    let err = store.resolve_flow_run(&Uuid::now_v7().to_string()).await.unwrap_err();
    assert!(matches!(err, StoreError::FlowRunNotFound(_)));
}

pub async fn empty_batch_is_fine(store: &dyn Store) {
    store.record(&WriteBatch::default()).await.unwrap();
}

/// Not in [`run_all`]: issuing a key makes a server over the store require
/// one, which the suite's anonymous API client would then lack. Over the
/// API, the client needs the server's configured (admin) key.
pub async fn api_keys_are_hashed_revocable_and_calls_audited(store: &dyn Store) {
    use crate::AuditFilter;
    use headwater_core::{AuditEntry, Role};

    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let name = format!("ci-{tag}");
    assert!(!store.has_api_keys().await.unwrap(), "a fresh store has no keys");
    let issued = store.issue_api_key(&name, Role::Run, t(0)).await.unwrap();
    assert_eq!((issued.key.name.as_str(), issued.key.role, issued.key.revoked), (name.as_str(), Role::Run, None));
    assert!(issued.secret.starts_with(&issued.key.prefix));
    let again = store.issue_api_key(&name, Role::Admin, t(1)).await.unwrap_err();
    assert!(matches!(again, StoreError::Refused(_)), "{again:?}");
    let bad = store.issue_api_key("Not Valid", Role::Read, t(1)).await.unwrap_err();
    assert!(bad.to_string().contains("contains 'N'"), "{bad}");
    let reader = store.issue_api_key(&format!("ro-{tag}"), Role::Read, t(2)).await.unwrap();

    assert_eq!(store.find_api_key(&issued.secret).await.unwrap(), Some(issued.key.clone()));
    assert_eq!(store.find_api_key(&format!(" {} ", reader.secret)).await.unwrap().map(|k| k.role), Some(Role::Read));
    assert_eq!(store.find_api_key(&format!("{}0", issued.secret)).await.unwrap(), None);
    assert_eq!(store.find_api_key(&issued.key.prefix).await.unwrap(), None);
    assert!(store.has_api_keys().await.unwrap());

    // (Over the API, the server's clock sets the time.)
    let revoked = store.revoke_api_key(&name, t(10)).await.unwrap().expect("the key");
    assert!(revoked.revoked.is_some());
    assert_eq!(store.revoke_api_key(&name, t(20)).await.unwrap().unwrap().revoked, revoked.revoked, "revoked once");
    assert_eq!(store.revoke_api_key("no-such-key", t(20)).await.unwrap(), None);
    assert_eq!(store.find_api_key(&issued.secret).await.unwrap(), None, "a revoked key is refused");
    assert!(store.has_api_keys().await.unwrap(), "the read key is still accepted");
    let listed = store.list_api_keys().await.unwrap();
    let mine: Vec<_> = listed.iter().filter(|k| k.name.ends_with(&tag)).collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().any(|k| k.name == name && k.revoked.is_some()), "revoked keys stay listed");
    store.revoke_api_key(&reader.key.name, t(11)).await.unwrap();
    assert!(!store.has_api_keys().await.unwrap());
    assert!(store.issue_api_key(&name, Role::Run, t(30)).await.is_err(), "a revoked key's name stays taken");

    let entry = |at: i64, key: &str, path: &str, status: u16| AuditEntry {
        id: 0,
        at: t(at),
        key: Some(key.to_string()),
        method: "PUT".into(),
        path: path.into(),
        status,
    };
    let (a, b) = (format!("a-{tag}"), format!("b-{tag}"));
    let entries = vec![
        entry(1, &a, "/api/variables", 200),
        entry(2, &b, "/api/blocks", 403),
        entry(3, &a, "/api/deployments", 200),
    ];
    store.record_audit(&entries).await.unwrap();
    store.record_audit(&[]).await.unwrap();
    let of_a = store.read_audit(&AuditFilter { key: Some(a.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(of_a.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["/api/deployments", "/api/variables"]);
    assert!(of_a[0].id > of_a[1].id, "newest first");
    assert_eq!(of_a[1].at, t(1));
    let older = AuditFilter { key: Some(a.clone()), before: Some(of_a[0].id), limit: Some(5) };
    assert_eq!(store.read_audit(&older).await.unwrap(), vec![of_a[1].clone()]);
    let of_b = store.read_audit(&AuditFilter { key: Some(b), limit: Some(1), ..Default::default() }).await.unwrap();
    assert_eq!((of_b.len(), of_b[0].status), (1, 403));
    let newest = store.read_audit(&AuditFilter { limit: Some(2), ..Default::default() }).await.unwrap();
    assert!(newest.len() == 2 && newest[0].id > newest[1].id);

    // Retention of the log: by the entries' time.
    use headwater_core::retention::PruneKind;
    assert!(store.prune(PruneKind::Audit, t(2), 100, true).await.unwrap() >= 1);
    assert!(store.prune(PruneKind::Audit, t(2), 100, false).await.unwrap() >= 1);
    let left = store.read_audit(&AuditFilter { key: Some(a), ..Default::default() }).await.unwrap();
    assert_eq!(left.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["/api/deployments"], "the one at t(1) went");
}

/// A count above what every engine keeps (PostgreSQL's `integer`) is
/// refused whole, on every backend alike, instead of wrapping around.
pub async fn counts_no_store_keeps_are_refused_not_wrapped(store: &dyn Store) {
    use headwater_core::{WorkPool, WorkPoolKind, WorkQueue};
    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let f = flow(&format!("counts-{tag}"), "1");
    let mut run = flow_run(&f, &format!("counted-{tag}"), 0, State::completed(t(1)));
    run.run_count = crate::MAX_STORED_COUNT + 1;
    let batch = WriteBatch { flows: vec![f.clone()], flow_runs: vec![run.clone()], ..Default::default() };
    let refused = store.record(&batch).await.unwrap_err();
    assert!(refused.to_string().contains("run_count 2147483648 is above 2147483647"), "{refused}");
    assert!(store.record_checked(&batch).await.is_err());
    assert!(store.read_flow_run(run.id).await.unwrap().is_none(), "nothing of the batch was written");
    run.run_count = crate::MAX_STORED_COUNT;
    store.record(&WriteBatch { flow_runs: vec![run.clone()], ..batch }).await.unwrap();
    assert_eq!(store.read_flow_run(run.id).await.unwrap().unwrap().run_count, crate::MAX_STORED_COUNT);

    let mut pool = WorkPool::new(&format!("counts-{tag}"), WorkPoolKind::Process, t(0));
    pool.concurrency_limit = Some(1_000_001);
    let refused = store.apply_work_pool(&pool).await.unwrap_err();
    assert!(refused.to_string().contains("at most 1000000"), "{refused}");
    pool.concurrency_limit = Some(1_000_000);
    store.apply_work_pool(&pool).await.unwrap();
    let queue = WorkQueue {
        work_pool: pool.name.clone(),
        name: "big".into(),
        priority: u32::MAX,
        concurrency_limit: None,
        paused: false,
        created: t(0),
        updated: t(0),
    };
    assert!(store.apply_work_queue(&queue).await.unwrap_err().to_string().contains("the priority of 'big'"));
    store.delete_work_pool(&pool.name).await.unwrap();

    // A lease lasts at most a day (a time beyond the calendar once panicked).
    let limit = format!("counts-{tag}");
    store.set_concurrency_limit(&limit, 1, None).await.unwrap();
    let ask = |ttl_ms: u64| headwater_core::SlotRequest { slots: vec![(limit.clone(), 1)], holder: "h".into(), ttl_ms };
    let refused = store.acquire_slots(&ask(u64::MAX)).await.unwrap_err();
    assert!(refused.to_string().contains("is above 86400000"), "{refused}");
    let headwater_core::Acquired::Granted { lease } = store.acquire_slots(&ask(60_000)).await.unwrap() else {
        panic!("the slot is free")
    };
    assert!(store.renew_lease(lease.id, u64::MAX).await.is_err());
    assert!(store.renew_lease(lease.id, 86_400_000).await.unwrap());
    store.delete_concurrency_limit(&limit).await.unwrap();
}
