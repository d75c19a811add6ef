//! The store's integration tests: the conformance suite on SQLite, plus the
//! SQLite-specific promises (several processes' worth of writers at once).

mod sqlite;
