//! The Outpost edge agent as a library: its drivers, used by the `outpost-agent` binary and by
//! the end-to-end tests.

pub mod store;
