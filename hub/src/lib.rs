//! The Outpost hub: canonical workflows, enrollment, signed versions, status ingest, the HTTP
//! API and the ops CLI.

pub mod keys;
pub mod pki;
pub mod store;
