//! Time, read through an injectable clock.
//!
//! Sans-IO cores never read the clock: they take `now` as an argument. Drivers read it through
//! [`Clock`], so that tests can substitute a [`ManualClock`].

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Wall time (may jump: NTP steps) and monotonic time (never goes back).
pub trait Clock: Send + Sync + 'static {
    fn wall(&self) -> DateTime<Utc>;
    /// Monotonic time since an arbitrary fixed origin of this clock.
    fn mono(&self) -> Duration;
}

/// The operating system's clocks.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn mono(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock for tests: wall and monotonic time move only when told.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<(DateTime<Utc>, Duration)>>,
}

impl ManualClock {
    pub fn new(wall: DateTime<Utc>) -> Self {
        ManualClock {
            inner: Arc::new(Mutex::new((wall, Duration::ZERO))),
        }
    }
    /// Both clocks advance by `d`.
    pub fn advance(&self, d: Duration) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += chrono::Duration::from_std(d).unwrap_or(chrono::TimeDelta::zero());
        g.1 += d;
    }
    /// The wall clock jumps to `to` (forward or back); the monotonic clock does not move.
    pub fn set_wall(&self, to: DateTime<Utc>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = to;
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> DateTime<Utc> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0
    }
    fn mono(&self) -> Duration {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

/// One reading of both clocks, handed to sans-IO cores as their only source of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall: DateTime<Utc>,
    pub mono: Duration,
}

impl Now {
    pub fn read(clock: &dyn Clock) -> Now {
        Now {
            wall: clock.wall(),
            mono: clock.mono(),
        }
    }
    /// Milliseconds since the Unix epoch (wall), as stored in records.
    pub fn wall_ms(&self) -> i64 {
        self.wall.timestamp_millis()
    }
}
