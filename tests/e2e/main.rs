#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
//! End-to-end tests: the real `outpost-agent` and `outpost-hub` binaries, real redb stores, real
//! processes, real QUIC on loopback (with a UDP relay for network faults).
//! Run with `cargo test --workspace` (which builds the binary first).

mod agent_metrics;
mod alert_delivery;
mod alerts;
mod certs;
mod channels;
mod cli;
mod crash;
mod daemon;
mod deploy;
mod dev;
mod docs_examples;
mod edge_alerts;
mod engine;
mod enroll;
mod firings;
mod fleet;
mod ha;
mod hub;
mod hub_events;
mod hub_faults;

mod console;
mod hub_limits;
mod hub_restart;
mod hub_restore;
mod lifecycle;
mod metrics;
mod offline_commands;
mod operators;
mod replicas;
mod rollouts;
mod runs_ops;
mod secrets;
mod trust;
mod values;
mod views;
