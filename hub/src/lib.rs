//! The Outpost hub library.
