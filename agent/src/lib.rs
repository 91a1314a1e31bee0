//! The Outpost edge agent.
//!
//! - [`driver`]: the async shell around the sans-IO core (`outpost_agent_core`): carries out its
//!   actions durable-first against [`store`] and [`exec`].
//! - [`store`]: the redb ledger (runs, task instances, outbox, workflow versions).
//! - [`exec`]: task attempts as OS processes (process groups, logs, limits).
//! - [`daemon`], [`control`], [`standalone`]: `serve`, its local control socket, workflow files.
//! - [`app`], [`cli`]: the command line.

pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod disk;
pub mod driver;
pub mod exec;
pub mod hub_link;
pub mod identity;
pub mod private_fs;
pub mod render;
pub mod standalone;
pub mod startlog;
pub mod store;
pub mod telemetry;
pub mod views;
