#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
//! End-to-end tests: the real `outpost-agent` binary, real redb stores, real processes.
//! Run with `cargo test --workspace` (which builds the binary first).

mod cli;
mod crash;
mod daemon;
mod deploy;
mod engine;
mod hub;
mod hub_faults;
