//! The example program run as real processes against one embedded store.

mod backfill;
mod deploy;
mod processes;
mod traces;
mod ui;
