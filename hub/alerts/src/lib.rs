//! Sans-IO alert evaluation for the Outpost hub.
//!
//! The hub's alert pipeline has three stages. The **sources** (the ingest of agents' status, the
//! hub's own conditions) commit alert inputs durably; the **evaluator** in this crate turns
//! inputs and the time into [`Notification`]s (rules, grouping, throttling, silences, resolved
//! notices) with no I/O of its own; the hub's **delivery** driver sends each notification to
//! its channels from a durable outbox, at least once, with the [`Notification::dedup_key`] for
//! channels that deduplicate.

pub mod notification;

pub use notification::{AlertItem, AlertStatus, Notification};
