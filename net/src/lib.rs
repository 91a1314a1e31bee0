//! Outpost transport (see the crate description).
