//! The SDK against a real embedded store: every test opens its own engine
//! in a temporary home and reads back what was recorded.

mod artifacts;
mod caching;
mod client_mode;
mod concurrency;
mod flows;
mod parameters;
mod retries;
mod support;
