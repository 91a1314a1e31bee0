//! The agent's views of its own runs and tasks (`outpost_common::views`, without an `agent`
//! field and with each task's log file): what `--output json` prints and what the control socket
//! carries. Times are RFC 3339 strings (UTC).

pub use outpost_common::record::rfc3339;
pub use outpost_common::text::table;

/// A run of this agent.
pub type RunView = outpost_common::views::RunView<outpost_common::views::Local>;
