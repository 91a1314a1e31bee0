//! Outpost's shared crate: the workflow model and its file format, DAG validation, schedules,
//! durable records, the wire protocol, signing, the sync state machines and (feature `store`)
//! the redb plumbing of the two stores.
//!
//! **Architecture Invariant**: this crate knows nothing of tokio, QUIC or processes, and of redb
//! only in `store` (feature `store`). Its only I/O: `workflow::load_file` reads the workflow
//! file it is given, `clock::SystemClock` reads the clocks, `trust::SigningKey::generate` draws
//! from the OS's random source, and `store` creates the store file and uses the redb
//! transactions it is handed. Everything else works on the bytes and values it is handed.
//!
//! # Public surface
//!
//! Every module below is public because the agent, the hub, the tests or the fuzz targets use
//! it; inside them, what no other crate uses is `pub(crate)`. The surface is: the workflow
//! model and its files ([`model`], [`workflow`], [`params`], [`template`], [`schedule`],
//! [`duration`]), the durable records ([`record`]), the wire protocol ([`proto`], [`frame`]),
//! roles, signatures and deploy checks ([`trust`]), the session state machines ([`sync`]), time
//! ([`clock`]), text helpers ([`text`]) and, with the `store` feature, `store`.

pub mod clock;
pub mod duration;
pub mod frame;
pub mod model;
pub mod params;
pub mod proto;
pub mod record;
pub mod schedule;
pub mod size;
#[cfg(feature = "store")]
pub mod store;
pub mod sync;
pub mod template;
pub mod text;
pub mod trust;
pub mod views;
pub mod workflow;
