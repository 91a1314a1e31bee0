//! The Outpost edge agent library: the drivers behind the `outpost-agent` binary.

pub mod exec;
pub mod store;
