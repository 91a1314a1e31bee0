//! The hub's wall clock.

use outpost_common::record::UnixMillis;

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> UnixMillis {
    chrono::Utc::now().timestamp_millis()
}
