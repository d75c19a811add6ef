//! The store's integration tests: the conformance suite on every backend,
//! plus each backend's own promises.

mod postgres;
mod sqlite;
