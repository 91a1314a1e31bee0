//! The Outpost hub: canonical workflows, enrollment, signed versions, status ingest, the HTTP
//! API and the ops CLI.

pub mod config;
pub mod gateway;
pub mod hub;
pub mod init;
pub mod keys;
pub mod pki;
pub mod store;
