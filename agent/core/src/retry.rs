//! Retry decisions and retry delays, as pure functions.
//!
//! A task has `retries` extra attempts after the first, so at most `retries + 1` attempts.
//! After attempt `n` (1-based) fails, the delay before attempt `n + 1` is:
//! - `fixed`: `delay`;
//! - `exponential`: `delay * 2^(n-1)`, capped at `max_delay` when set;
//!
//! then multiplied by `1 + jitter * (2u - 1)` for `u` uniform in `[0, 1)` (so within
//! `[d * (1 - jitter), d * (1 + jitter)]`). Jitter is applied after the cap. `jitter` is clamped
//! to `0.0..=1.0` (NaN counts as 0). All arithmetic saturates; nothing here panics.
//!
//! The randomness comes from [`SplitMix64`], a tiny deterministic PRNG seeded by the caller, so
//! that the engine's behaviour depends only on its inputs.

use std::time::Duration;

use outpost_common::model::{Backoff, RetryPolicy};
use outpost_common::record::AttemptOutcome;

/// Maximum number of attempts a policy allows (`retries + 1`, saturating).
pub fn max_attempts(policy: &RetryPolicy) -> u32 {
    policy.retries.saturating_add(1)
}

/// Whether a task whose attempt number `attempt` (1-based) ended with `outcome` gets another
/// attempt. Successes and cancellations are never retried; every other failure is retried while
/// attempts are left.
pub fn should_retry(policy: &RetryPolicy, attempt: u32, outcome: &AttemptOutcome) -> bool {
    if outcome.is_success() || matches!(outcome, AttemptOutcome::Cancelled) {
        return false;
    }
    attempt < max_attempts(policy)
}

/// The delay before the next attempt after attempt `attempt` (1-based) failed, before jitter.
pub fn base_delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    match policy.backoff {
        Backoff::Fixed => policy.delay,
        Backoff::Exponential => {
            let exp = attempt.saturating_sub(1).min(127);
            let nanos = policy.delay.as_nanos().checked_mul(1u128 << exp);
            let d = nanos.map(duration_from_nanos).unwrap_or(Duration::MAX);
            match policy.max_delay {
                Some(cap) => d.min(cap),
                None => d,
            }
        }
    }
}

/// `d` multiplied by `1 + jitter * (2u - 1)`; `u` is clamped to `[0, 1]`.
pub fn apply_jitter(d: Duration, jitter: f64, u: f64) -> Duration {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    if jitter == 0.0 {
        return d;
    }
    let u = if u.is_nan() { 0.5 } else { u.clamp(0.0, 1.0) };
    let factor = 1.0 + jitter * (2.0 * u - 1.0);
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// The full retry delay after attempt `attempt` failed, with jitter drawn from `rng` (only
/// drawn when the policy has jitter, so jitter-free policies do not advance the generator).
pub fn retry_delay(policy: &RetryPolicy, attempt: u32, rng: &mut SplitMix64) -> Duration {
    let d = base_delay(policy, attempt);
    if policy.jitter > 0.0 {
        apply_jitter(d, policy.jitter, rng.next_f64())
    } else {
        d
    }
}

fn duration_from_nanos(n: u128) -> Duration {
    let secs = n / 1_000_000_000;
    let sub = (n % 1_000_000_000) as u32;
    match u64::try_from(secs) {
        Ok(s) => Duration::new(s, sub),
        Err(_) => Duration::MAX,
    }
}

/// SplitMix64: a small, fast, well-distributed deterministic generator (Steele, Lea, Flood).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(
        retries: u32,
        secs: u64,
        backoff: Backoff,
        max: Option<u64>,
        jitter: f64,
    ) -> RetryPolicy {
        RetryPolicy {
            retries,
            delay: Duration::from_secs(secs),
            backoff,
            max_delay: max.map(Duration::from_secs),
            jitter,
        }
    }

    #[test]
    fn retry_limit() {
        let p = policy(2, 1, Backoff::Fixed, None, 0.0);
        let fail = AttemptOutcome::Exited(1);
        assert!(should_retry(&p, 1, &fail));
        assert!(should_retry(&p, 2, &fail));
        assert!(!should_retry(&p, 3, &fail));
        assert!(!should_retry(&p, 1, &AttemptOutcome::Exited(0)));
        assert!(!should_retry(&p, 1, &AttemptOutcome::Cancelled));
        assert!(should_retry(&p, 1, &AttemptOutcome::TimedOut));
        let none = policy(0, 1, Backoff::Fixed, None, 0.0);
        assert!(!should_retry(&none, 1, &fail));
        let huge = policy(u32::MAX, 1, Backoff::Fixed, None, 0.0);
        assert_eq!(max_attempts(&huge), u32::MAX);
    }

    #[test]
    fn fixed_and_exponential_delays() {
        let f = policy(5, 7, Backoff::Fixed, None, 0.0);
        assert_eq!(base_delay(&f, 1), Duration::from_secs(7));
        assert_eq!(base_delay(&f, 4), Duration::from_secs(7));
        let e = policy(10, 10, Backoff::Exponential, Some(100), 0.0);
        let got: Vec<u64> = (1..=6).map(|n| base_delay(&e, n).as_secs()).collect();
        assert_eq!(got, [10, 20, 40, 80, 100, 100]);
        let unc = policy(10, 1, Backoff::Exponential, None, 0.0);
        assert_eq!(base_delay(&unc, 200), Duration::MAX);
        assert_eq!(base_delay(&unc, u32::MAX), Duration::MAX);
    }

    #[test]
    fn jitter_bounds_and_determinism() {
        let p = policy(3, 100, Backoff::Fixed, None, 0.25);
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let d = retry_delay(&p, 1, &mut a);
            assert_eq!(d, retry_delay(&p, 1, &mut b));
            assert!(
                d >= Duration::from_secs(75) && d <= Duration::from_secs(125),
                "{d:?}"
            );
            distinct.insert(d.as_millis());
        }
        assert!(distinct.len() > 100, "jitter should spread delays");
        assert_eq!(
            apply_jitter(Duration::from_secs(10), 1.0, 0.0),
            Duration::ZERO
        );
        assert_eq!(
            apply_jitter(Duration::from_secs(10), f64::NAN, 0.0),
            Duration::from_secs(10)
        );
        assert_eq!(apply_jitter(Duration::MAX, 1.0, 1.0), Duration::MAX);
    }

    #[test]
    fn prng_output_in_range() {
        let mut r = SplitMix64::new(0);
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
