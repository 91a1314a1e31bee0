//! Which hub address the link dials next, and how long it waits first (sans-IO: no clock, no
//! randomness inside; the link passes both in).
//!
//! The addresses, in the order tried: `[hub] address` from the agent's config when set, then the
//! hub's replicas (learnt at enrollment and from every `Welcome`), or, when the hub sent none, the
//! address the agent enrolled at; each once. The link keeps dialing the address that works; when
//! a connection attempt or a live connection fails it moves to the next one (round robin) after
//! the reconnect backoff, which grows with consecutive failures and starts afresh after a session
//! the hub welcomed (or one that lasted a while).

use std::time::Duration;

use outpost_net::backoff::Backoff;

/// A session lasting this long resets the backoff even if the hub never welcomed it.
pub const LONG_SESSION: Duration = Duration::from_secs(30);

/// The hub addresses the link may dial and where it is in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubAddresses {
    /// `[hub] address` in the agent's config: tried first.
    configured: Option<String>,
    /// Where the agent enrolled (used when the hub sent no replicas).
    enrolled: String,
    /// The hub's replica addresses as the agent keeps them.
    replicas: Vec<String>,
    /// Index into [`HubAddresses::list`] of the address dialed now.
    at: usize,
    /// Consecutive failed sessions (the backoff's exponent).
    failures: u32,
    backoff: Backoff,
}

impl HubAddresses {
    /// Start at the first address.
    pub fn new(
        configured: Option<String>,
        enrolled: &str,
        replicas: &[String],
        backoff: Backoff,
    ) -> HubAddresses {
        HubAddresses {
            configured: configured.filter(|a| !a.is_empty()),
            enrolled: enrolled.to_string(),
            replicas: replicas.to_vec(),
            at: 0,
            failures: 0,
            backoff,
        }
    }

    /// Every address in the order tried, each once (never empty).
    pub fn list(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let rest = if self.replicas.is_empty() {
            std::slice::from_ref(&self.enrolled)
        } else {
            self.replicas.as_slice()
        };
        for a in self.configured.iter().chain(rest) {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// The address to dial now.
    pub fn current(&self) -> String {
        let list = self.list();
        list.get(self.at % list.len().max(1))
            .cloned()
            .unwrap_or_else(|| self.enrolled.clone())
    }

    /// The agent's stored enrollment as read now (a `Welcome` may have replaced the replicas):
    /// the link keeps dialing the current address if it is still listed, else starts over at
    /// the first. Returns whether the list changed.
    pub fn update(&mut self, enrolled: &str, replicas: &[String]) -> bool {
        if self.enrolled == enrolled && self.replicas == replicas {
            return false;
        }
        let current = self.current();
        self.enrolled = enrolled.to_string();
        self.replicas = replicas.to_vec();
        self.at = self.list().iter().position(|a| *a == current).unwrap_or(0);
        true
    }

    /// A session ended in failure (it could not connect, or its connection broke): move to the
    /// next address and return how long to wait before dialing it. `welcomed`: the hub welcomed
    /// that session; `lasted`: how long it lasted; `rand_unit`: uniform in `[0, 1]` (the
    /// backoff's jitter).
    pub fn failed(&mut self, welcomed: bool, lasted: Duration, rand_unit: f64) -> Duration {
        if welcomed || lasted > LONG_SESSION {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        let n = self.list().len().max(1);
        self.at = (self.at % n + 1) % n;
        self.backoff.delay(self.failures, rand_unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
        }
    }

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn without_replicas_the_enrolled_address_is_the_only_one() {
        let mut h = HubAddresses::new(None, "a:1", &[], backoff());
        assert_eq!(h.list(), s(&["a:1"]));
        assert_eq!(h.current(), "a:1");
        h.failed(false, NOW, 1.0);
        assert_eq!(h.current(), "a:1");
    }

    #[test]
    fn failures_move_round_robin_through_the_replicas() {
        let mut h = HubAddresses::new(None, "lb:1", &s(&["a:1", "b:1", "c:1"]), backoff());
        // The replicas replace the enrolled address.
        assert_eq!(h.list(), s(&["a:1", "b:1", "c:1"]));
        let mut seen = vec![h.current()];
        for _ in 0..4 {
            h.failed(false, NOW, 0.5);
            seen.push(h.current());
        }
        assert_eq!(seen, s(&["a:1", "b:1", "c:1", "a:1", "b:1"]));
    }

    #[test]
    fn the_configured_address_stays_first_and_is_listed_once() {
        let mut h = HubAddresses::new(Some("b:1".into()), "a:1", &s(&["a:1", "b:1"]), backoff());
        assert_eq!(h.list(), s(&["b:1", "a:1"]));
        assert_eq!(h.current(), "b:1");
        h.failed(true, NOW, 0.0);
        assert_eq!(h.current(), "a:1");
        h.failed(true, NOW, 0.0);
        assert_eq!(h.current(), "b:1");
        let h = HubAddresses::new(Some("x:1".into()), "a:1", &[], backoff());
        assert_eq!(h.list(), s(&["x:1", "a:1"]));
        let h = HubAddresses::new(Some(String::new()), "a:1", &[], backoff());
        assert_eq!(h.list(), s(&["a:1"]));
    }

    #[test]
    fn the_backoff_grows_with_consecutive_failures_and_restarts_after_a_welcome() {
        let mut h = HubAddresses::new(None, "a:1", &s(&["a:1", "b:1"]), backoff());
        let ceilings: Vec<Duration> = (0..4).map(|_| h.failed(false, NOW, 1.0)).collect();
        assert_eq!(
            ceilings,
            [200, 400, 800, 1600].map(Duration::from_millis).to_vec()
        );
        // A welcomed session (the hub answered) restarts the bound at its base...
        assert_eq!(h.failed(true, NOW, 1.0), Duration::from_millis(200));
        assert_eq!(h.failed(false, NOW, 1.0), Duration::from_millis(400));
        // ...and so does one that lasted a while.
        assert_eq!(
            h.failed(false, LONG_SESSION + Duration::from_secs(1), 1.0),
            Duration::from_millis(200)
        );
        // The jitter scales the delay.
        assert_eq!(h.failed(false, NOW, 0.5), Duration::from_millis(200));
    }

    #[test]
    fn a_new_list_keeps_the_address_in_use_if_it_is_still_listed() {
        let mut h = HubAddresses::new(None, "a:1", &[], backoff());
        assert!(!h.update("a:1", &[]));
        // The Welcome of the hub at a:1 lists its replicas: stay at a:1.
        assert!(h.update("a:1", &s(&["b:1", "a:1"])));
        assert_eq!(h.current(), "a:1");
        h.failed(true, NOW, 0.0);
        assert_eq!(h.current(), "b:1");
        assert!(!h.update("a:1", &s(&["b:1", "a:1"])));
        // A list without the current address starts over at its first.
        assert!(h.update("a:1", &s(&["c:1", "d:1"])));
        assert_eq!(h.current(), "c:1");
        // A list that shrinks under the index still yields a listed address.
        let mut h = HubAddresses::new(None, "a:1", &s(&["a:1", "b:1", "c:1"]), backoff());
        h.failed(false, NOW, 0.0);
        h.failed(false, NOW, 0.0);
        assert_eq!(h.current(), "c:1");
        h.update("a:1", &s(&["a:1"]));
        assert_eq!(h.current(), "a:1");
    }
}
