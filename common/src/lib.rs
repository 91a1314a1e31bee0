//! Outpost's shared crate: the workflow model and its file format, DAG validation, schedules,
//! durable records and (later) the wire protocol and signing.
//!
//! **Architecture Invariant**: this crate does no I/O besides reading the bytes it is handed; it
//! knows nothing of tokio, redb, QUIC or processes.

pub mod clock;
pub mod duration;
pub mod frame;
pub mod model;
pub mod params;
pub mod proto;
pub mod record;
pub mod schedule;
pub mod sign;
pub mod sync;
pub mod template;
pub mod text;
pub mod views;
pub mod workflow;
