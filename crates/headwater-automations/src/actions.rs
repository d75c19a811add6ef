//! Carrying out one delivery's action.

use chrono::Utc;
use headwater_core::{Action, Delivery, FlowRun};
use headwater_store::ops::{start_deployment_run, DeploymentRunError, DeploymentRunRequest};
use headwater_store::record_flow_run_state;

use crate::notify::{self, Failure, Message};
use crate::templates::context;
use crate::Engine;

fn store_failure(e: headwater_store::StoreError) -> Failure {
    Failure::transient(format!("the store: {e}"))
}

pub(crate) async fn perform(engine: &Engine, d: &Delivery) -> Result<(), Failure> {
    let store = engine.store.as_ref();
    match &d.action {
        Action::Notify { block, subject, body, to } => {
            let doc = store
                .read_block(block, true)
                .await
                .map_err(store_failure)?
                .ok_or_else(|| Failure::permanent(format!("there is no block named '{block}'")))?;
            let ctx = context(&d.automation, &d.event, &engine.config.ui_url);
            let message = Message { subject: subject.as_deref(), body: body.as_deref(), to, context: &ctx };
            notify::send(&engine.http, &doc, &message).await
        }
        Action::RunDeployment { deployment, parameters } => {
            let name = deployment
                .clone()
                .or_else(|| d.event.deployment.clone())
                .ok_or_else(|| Failure::permanent("the event is about no deployment, and the action names none"))?;
            // A delivery carried out twice (a crash before it was marked)
            // still starts one run.
            let request = DeploymentRunRequest {
                parameters: parameters.clone(),
                idempotency_key: Some(format!("automation:{}", d.id)),
                check: true,
            };
            let started = start_deployment_run(store, &name, request, None).await.map_err(|e| match e {
                DeploymentRunError::NoDeployment(_) => {
                    Failure::permanent(format!("there is no deployment named '{name}'"))
                }
                DeploymentRunError::InvalidParameters(why) => Failure::permanent(why),
                DeploymentRunError::Store(e) => store_failure(e),
            })?;
            if started.created {
                if let Some(wake) = &engine.config.on_runs_created {
                    wake();
                }
            }
            Ok(())
        }
        Action::CancelRun => {
            let run = current_run(engine, d).await?;
            let state = headwater_core::transition::cancellation(
                &format!("flow run '{}'", run.name),
                run.state.state_type,
                Utc::now(),
            )
            .map_err(|e| Failure::permanent(e.to_string()))?;
            record_flow_run_state(store, run, state).await.map_err(store_failure)?;
            Ok(())
        }
        Action::PauseRun => {
            let run = current_run(engine, d).await?;
            let state = headwater_core::transition::pause_request(
                &format!("flow run '{}'", run.name),
                run.state.state_type,
                Utc::now(),
            )
            .map_err(|e| Failure::permanent(e.to_string()))?
            .with_message(format!("paused by automation '{}'", d.automation));
            record_flow_run_state(store, run, state).await.map_err(store_failure)?;
            Ok(())
        }
        Action::PauseSchedule { deployment } => {
            let name = deployment
                .clone()
                .or_else(|| d.event.deployment.clone())
                .ok_or_else(|| Failure::permanent("the event is about no deployment, and the action names none"))?;
            let mut dep = store
                .read_deployment(&name)
                .await
                .map_err(store_failure)?
                .ok_or_else(|| Failure::permanent(format!("there is no deployment named '{name}'")))?;
            if !dep.paused {
                dep.paused = true;
                dep.updated = Utc::now();
                store.apply_deployment(&dep).await.map_err(store_failure)?;
            }
            Ok(())
        }
    }
}

/// The run the event is about, as it is now.
async fn current_run(engine: &Engine, d: &Delivery) -> Result<FlowRun, Failure> {
    let id = d.event.flow_run.as_ref().map(|r| r.id).ok_or_else(|| Failure::permanent("the event is about no run"))?;
    engine
        .store
        .read_flow_run(id)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| Failure::permanent(format!("flow run {id} no longer exists")))
}
