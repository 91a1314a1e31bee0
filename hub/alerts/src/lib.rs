//! Sans-IO alert evaluation for the Outpost hub.
//!
//! The hub's alert pipeline has three stages. The **sources** (the ingest of agents' status, the
//! hub's own conditions) commit alert inputs durably; the **evaluator** in this crate turns
//! inputs and the time into [`Notification`]s (rules, grouping, throttling, silences, resolved
//! notices) with no I/O of its own; the hub's **delivery** driver sends each notification to
//! its channels from a durable outbox, at least once, with the [`Notification::dedup_key`] for
//! channels that deduplicate.

pub mod evaluator;
pub mod input;
pub mod notification;
pub mod rule;

pub use evaluator::{DecodeError, Evaluator, Settings};
pub use input::{Condition, Input, InputEvent, Measure};
pub use notification::{AlertItem, AlertStatus, Notification, UnixMillis};
pub use rule::{EventKind, Rule, Silence, Subject, When, glob_match};
