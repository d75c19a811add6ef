//! The pure domain core of Headwater.
//!
//! Everything here is plain data and functions: run states and their legal
//! transitions, retry and backoff schedules, cache keys, duration parsing and
//! run names. Nothing reads a clock, a file or the network; callers pass in
//! the time and the randomness they want, which keeps every rule testable.

pub mod access;
pub mod artifact;
pub mod automation;
pub mod block;
pub mod cache;
pub mod concurrency;
pub mod dataset;
pub mod deployment;
pub mod duration;
pub mod error;
pub mod model;
#[cfg(any(test, feature = "mutations"))]
pub mod mutations;
pub mod names;
pub mod partition;
pub mod retention;
pub mod retry;
pub mod schedule;
pub mod state;
pub mod transition;
pub mod work_pool;

pub use access::{validate_key_name, ApiKey, AuditEntry, Role};
pub use artifact::{validate_artifact, validate_variable, Artifact, ArtifactKind, Variable};
pub use automation::{
    automation_id_for_name, Action, Automation, AutomationEvent, AutomationStatus, Delivery, DeliveryOutcome,
    DeliveryStatus, Trigger,
};
pub use block::{validate_block, BlockDocument, BlockType};
pub use cache::{CacheKey, CachePolicy};
pub use concurrency::{Acquired, ConcurrencyLimit, SlotLease, SlotRequest};
pub use dataset::{Column, Dataset, DatasetVersion, RunWrite, SourceCheck, SourceStamp, VersionRef};
pub use deployment::{
    parse_automations, parse_datasets, parse_manifest, parse_manifest_with, CollisionStrategy, DatasetSpec, Deployment,
    DeploymentSchedule, ManifestError, PullStep, Templates,
};
pub use error::{CoreError, Result};
pub use model::{
    crash_message, flow_id_for_name, Flow, FlowRun, Heartbeat, LogLevel, LogRecord, RunKind, StateRecord, TaskRun,
};
pub use retry::{Backoff, RetryPolicy};
pub use schedule::Schedule;
pub use state::{State, StateType};
pub use transition::validate_transition;
pub use work_pool::{
    pool_status, queues_to_serve, PoolStatus, WorkPool, WorkPoolKind, WorkQueue, WorkerStatus, DEFAULT_QUEUE,
};
