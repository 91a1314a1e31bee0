//! Reconnect backoff: exponential with full jitter, capped. Sans-IO: the caller supplies the
//! random number, so the delay is deterministic given its inputs.

use std::time::Duration;

/// Exponential backoff with full jitter: after `n` consecutive failures the delay is uniform in
/// `[0, min(cap, base * 2^(n-1))]` ("full jitter", spreading reconnects of many agents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling after the first failure.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
}

impl Default for Backoff {
    /// base 200 ms, cap 30 s.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The ceiling of the delay after `failures` consecutive failures (zero for none).
    pub(crate) fn ceiling(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exp = failures - 1;
        let grown = 1u32
            .checked_shl(exp)
            .and_then(|m| self.base.checked_mul(m))
            .unwrap_or(self.cap);
        grown.min(self.cap)
    }

    /// The delay before the next attempt after `failures` consecutive failures, given
    /// `rand_unit` uniform in `[0, 1]` (clamped; NaN counts as 0).
    pub fn delay(&self, failures: u32, rand_unit: f64) -> Duration {
        let r = if rand_unit.is_nan() {
            0.0
        } else {
            rand_unit.clamp(0.0, 1.0)
        };
        self.ceiling(failures).mul_f64(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::ZERO);
        assert_eq!(b.ceiling(1), ms(200));
        assert_eq!(b.ceiling(2), ms(400));
        assert_eq!(b.ceiling(5), ms(3200));
        assert_eq!(b.ceiling(8), ms(25_600));
        assert_eq!(b.ceiling(9), ms(30_000));
        assert_eq!(b.ceiling(40), ms(30_000)); // shift overflow
        assert_eq!(b.ceiling(u32::MAX), ms(30_000));
        let huge = Backoff {
            base: Duration::from_secs(u64::MAX / 2),
            cap: Duration::MAX,
        };
        assert_eq!(huge.ceiling(3), Duration::MAX); // multiplication overflow → cap
    }

    #[test]
    fn delay_is_full_jitter_and_deterministic() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 1.0), ms(800));
        assert_eq!(b.delay(3, 0.5), ms(400));
        assert_eq!(b.delay(3, 0.25), b.delay(3, 0.25));
        assert_eq!(b.delay(20, 0.5), ms(15_000));
        assert_eq!(b.delay(0, 0.9), Duration::ZERO);
        // out-of-range randoms are clamped, never panic
        assert_eq!(b.delay(2, 7.0), ms(400));
        assert_eq!(b.delay(2, -1.0), Duration::ZERO);
        assert_eq!(b.delay(2, f64::NAN), Duration::ZERO);
        assert_eq!(b.delay(2, f64::INFINITY), ms(400));
        for f in 0..64 {
            for i in 0..=10 {
                let d = b.delay(f, f64::from(i) / 10.0);
                assert!(d <= b.cap && d <= b.ceiling(f));
            }
        }
    }
}
