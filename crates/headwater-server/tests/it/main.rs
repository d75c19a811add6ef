//! The server over HTTP, on ephemeral loopback ports, with real stores.

mod api;
mod ui;
