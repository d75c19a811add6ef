//! # Headwater
//!
//! Turn an ordinary async Rust program into an orchestrated flow of tasks:
//! add `#[flow]` and `#[task]`, and every run, state, retry and log is
//! recorded in an embedded SQLite database under `HEADWATER_HOME`.
//!
//! ```ignore
//! use headwater::prelude::*;
//!
//! #[task(retries = 3, retry_delay = [1, 10, 60])]
//! async fn fetch(url: String) -> Result<String> { Ok(reqwest::get(url).await?.text().await?) }
//!
//! #[flow(name = "hello")]
//! async fn hello(url: String) -> Result<usize> {
//!     let body = fetch(url).await?;
//!     info!("got {} bytes", body.len());
//!     Ok(body.len())
//! }
//! ```

mod app;
mod artifacts;
pub mod blocks;
mod concurrency;
mod context;
mod engine;
mod error;
mod flow;
mod handle;
mod logging;
mod outcome;
mod recorder;
mod results;
mod serve;
mod signals;
mod spec;
mod task;
mod tracker;

pub use app::App;
pub use artifacts::{link_artifact, markdown_artifact, table_artifact, variables, NewArtifact};
pub use concurrency::{concurrency, rate_limit, SlotGuard};
pub use context::{current_flow_run, current_task_run};
pub use engine::Engine;
pub use handle::FlowHandle;

/// The store the current flow records to (embedded or the server), for
/// catalog writes and reads a flow makes itself.
pub fn current_store() -> Result<std::sync::Arc<dyn headwater_store::Store>> {
    match context::RunContext::current() {
        Some(ctx) => Ok(ctx.engine.store_handle()),
        None => Ok(Engine::current()?.store_handle()),
    }
}
pub use error::{Error, Result};
pub use headwater_core::{CachePolicy, LogLevel, State, StateType};
pub use headwater_macros::{flow, flows, task};
/// Traces over OTLP: add `telemetry::layer("my-service")` to a subscriber of your own.
pub use headwater_telemetry as telemetry;
pub use logging::{init as init_logging, layer as log_layer, HeadwaterLayer};
pub use signals::disable_signal_handling;
pub use spec::{parameter_schema, parse_parameters, FlowSpec};
pub use task::{map, map_unordered, submit, TaskHandle, TaskSpec};

/// What a flow program needs in scope.
pub mod prelude {
    pub use anyhow::{anyhow, bail, Context as _, Result};
    pub use futures::future::{join_all, try_join_all};
    pub use tracing::{debug, error, info, warn};

    pub use crate::{flow, flows, map, map_unordered, submit, task, App, Engine, TaskHandle};
}

/// Used by the code `#[flow]` and `#[task]` generate; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;

    pub use crate::flow::run_flow;
    pub use crate::spec::FlowSpec;
    pub use crate::task::{
        hash_inputs, keeps_completed_calls, output_probe, run_cached_task, run_task, InputsProbe, OpaqueInputs,
        OpaqueOutput, StorableInputs, StorableOutput, TaskCall, TaskSpec,
    };
    pub use headwater_core::CachePolicy;
}
