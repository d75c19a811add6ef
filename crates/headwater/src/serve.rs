//! `my-flows serve FLOW`: a flow program that deploys one of its flows and
//! runs that deployment's runs itself, in-process, without a worker (as
//! Prefect's `flow.serve()`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use chrono::Utc;
use headwater_core::deployment::{deployment_id_for_name, CollisionStrategy, Deployment, DeploymentSchedule};
use headwater_core::Schedule;
use headwater_worker::Claims;
use serde_json::Value;

use crate::engine::Engine;
use crate::flow::ADOPT;
use crate::handle::FlowHandle;

/// How `serve` was asked to run.
#[derive(Debug, Default)]
pub(crate) struct ServeOptions {
    pub name: Option<String>,
    pub cron: Option<String>,
    pub interval: Option<String>,
    pub timezone: Option<String>,
    pub limit: Option<usize>,
}

pub(crate) async fn serve(flow: FlowHandle, params: Value, opts: ServeOptions) -> Result<(), String> {
    // Ctrl-C stops taking runs and lets the ones in progress finish.
    crate::signals::disable_signal_handling();
    let engine = Engine::current().map_err(|e| e.to_string())?;
    let store = engine.store_handle();
    let late_after = engine.settings().late_after();
    let params = flow.resolve_parameters(params).map_err(|e| e.to_string())?;
    flow.check_json(params.clone()).map_err(|e| e.to_string())?;
    let name = opts.name.clone().unwrap_or_else(|| flow.name().to_string());
    let pool = headwater_core::work_pool::served_pool(&name);
    let tz = opts.timezone.as_deref().unwrap_or("UTC");
    let mut schedules = Vec::new();
    if let Some(expr) = &opts.cron {
        schedules.push(Schedule::cron(expr, tz).map_err(|e| e.to_string())?);
    }
    if let Some(every) = &opts.interval {
        let every = headwater_core::duration::parse_duration(every).map_err(|e| e.to_string())?;
        schedules.push(Schedule::interval(every, None, tz).map_err(|e| e.to_string())?);
    }
    let now = Utc::now();
    let program = std::env::current_exe().map_err(|e| e.to_string())?.display().to_string();
    let deployment = Deployment {
        id: deployment_id_for_name(&name),
        name: name.clone(),
        flow_name: flow.name().to_string(),
        entrypoint: vec![program, flow.name().to_string()],
        description: flow.description().map(str::to_string),
        version: None,
        tags: Vec::new(),
        parameters: params,
        work_pool: Some(pool.clone()),
        work_queue: None,
        job_variables: Value::Object(Default::default()),
        schedules: schedules
            .into_iter()
            .enumerate()
            .map(|(i, schedule)| DeploymentSchedule {
                id: deployment_id_for_name(&format!("{name}#schedule{i}")),
                schedule,
                parameters: Value::Object(Default::default()),
                active: true,
                partition: None,
            })
            .collect(),
        concurrency_limit: None,
        collision_strategy: CollisionStrategy::Enqueue,
        env: Default::default(),
        pull_steps: Vec::new(),
        partitions: None,
        paused: false,
        created: now,
        updated: now,
    };
    let stored = store.apply_deployment(&deployment).await.map_err(|e| e.to_string())?;
    let shown: Vec<String> = stored.schedules.iter().map(|s| s.schedule.describe()).collect();
    println!(
        "Serving flow '{}' as deployment '{name}'{}; start runs by hand with `headwater deployment run {name}`. Ctrl-C stops.",
        flow.name(),
        if shown.is_empty() { String::new() } else { format!(" ({})", shown.join("; ")) }
    );

    let limit = opts.limit.unwrap_or(4).max(1);
    let flow = Rc::new(flow);
    let in_flight = Rc::new(Cell::new(0usize));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                let claims = Claims::new(store.as_ref(), &pool, &[], late_after);
                if let Err(e) = claims.schedule().await {
                    eprintln!("headwater: could not schedule runs: {e}");
                }
                let claimed = match claims.claim(limit.saturating_sub(in_flight.get()), Duration::ZERO).await {
                    Ok(claimed) => claimed.runs,
                    Err(e) => {
                        eprintln!("headwater: could not take a run: {e}");
                        Vec::new()
                    }
                };
                for run in claimed {
                    in_flight.set(in_flight.get() + 1);
                    let (flow, in_flight) = (flow.clone(), in_flight.clone());
                    // The run's trace starts at its claim, as under a worker.
                    let claim = headwater_worker::claim_span(&run, &pool, "serve");
                    tokio::task::spawn_local(async move {
                        let adopted = (run.id, run.name.clone(), run.run_count);
                        let result = tracing::Instrument::instrument(
                            ADOPT.scope(adopted, flow.run_json(run.parameters.clone())),
                            claim,
                        )
                        .await;
                        let failure = match result {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e),
                            Err(e) => Some(e.to_string()),
                        };
                        if let Some(e) = failure {
                            eprintln!("headwater: flow run '{}' ended: {e}", run.name);
                        }
                        in_flight.set(in_flight.get() - 1);
                    });
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = &mut ctrl_c => break,
                }
            }
            println!("Stopping: waiting for {} run(s) in progress", in_flight.get());
            while in_flight.get() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    Ok(())
}
