//! Headwater's worker: the claim loop that takes a pool's due runs
//! ([`Claims`], also used by a flow program's `serve`), and the jobs that
//! run them — processes and Docker containers — with their output copied
//! into the runs' logs (secrets masked), cancellation enforced and crashes
//! recorded.

mod claims;
mod docker;
mod worker;

pub use claims::{claim_span, Claimed, Claims};
pub use docker::{Docker, DockerError, JobSpec};
pub use worker::{start, WorkerError, WorkerOptions};
