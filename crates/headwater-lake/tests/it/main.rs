//! The lake's parts against real files, a real HTTP server on loopback and
//! real object stores (a local folder; S3 through an S3-compatible server
//! when one is available).

mod bigquery;
mod convert;
mod download;
mod postgres;
mod stores;
