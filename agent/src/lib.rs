//! The Outpost edge agent.
//!
//! - `driver`: the async shell around the sans-IO core (`outpost_agent_core`): carries out its
//!   actions durable-first against [`store`] and [`exec`].
//! - [`store`]: the redb ledger (runs, task instances, outbox, workflow versions).
//! - [`exec`]: task attempts as OS processes (process groups, logs, limits).
//! - [`daemon`], `control`, `standalone`: `serve`, its local control socket, workflow files.
//! - [`app`], [`cli`]: the command line.
//!
//! **Public surface** (what the hub's `dev`, the test harnesses and the fuzzers use): [`app`]
//! (the binary's entry point), [`cli`], [`config`], [`daemon::serve`], [`exec`] (the limits
//! wrapper's entry point), [`hub_link::enroll`], [`identity`] and [`store`]. Everything else is
//! crate-private.

pub mod app;
pub mod cli;
pub mod config;
pub(crate) mod control;
pub mod daemon;
pub(crate) mod disk;
pub(crate) mod driver;
pub(crate) mod enroll;
pub mod exec;
pub mod hook_runner;
pub mod hub_addresses;
pub mod hub_link;
pub mod identity;
pub mod metrics;
pub(crate) mod private_fs;
pub(crate) mod render;
pub mod run_as;
pub mod secrets;
pub(crate) mod standalone;
pub(crate) mod startlog;
pub mod store;
pub(crate) mod telemetry;
pub(crate) mod views;
