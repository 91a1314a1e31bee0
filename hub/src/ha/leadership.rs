//! Leadership on an etcd lease, as a state machine (sans-IO, quinn-proto style).
//!
//! The driver (`ha::etcd`, the `ha` feature) does the I/O: it grants the lease, sends its
//! keep-alives, campaigns on etcd's election API and makes fenced writes; it feeds every
//! outcome in here with the monotonic time it *sent* the request, and asks
//! [`Leadership::poll_role`] whether this replica may act as leader now.
//!
//! The rule that keeps two replicas from acting as leader at once: etcd starts a lease's TTL
//! over when it *receives* a keep-alive, which is after we sent it. So the lease lives at least
//! until `sent + ttl` by our monotonic clock, whatever the network did afterwards; we act only
//! while `now < sent + ttl - margin` for the last keep-alive etcd answered. Another replica can
//! only win the election after etcd expires our lease, which is later. A replica that is
//! paused (SIGSTOP, a VM stall) or cut off from etcd stops acting as soon as it runs again or
//! the time passes, before it hears anything from etcd; and every write it makes as leader is
//! also fenced in etcd on its election key's revision (its epoch), which a successor's
//! election key outlives — see [`Leadership::handle_fenced_refusal`].
//!
//! Times are milliseconds of the boot-time clock ([`super::mono_ms`]), never the wall clock: a
//! wall-clock step must not extend a lease, and time spent suspended must count.

/// What this replica may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serve agents and operators; run nothing that must run once.
    Follower,
    /// Run what must run once (rollouts, alert and missed-firing evaluation, retention), with
    /// this epoch: the creation revision of its election key in etcd, strictly greater than
    /// every earlier leader's.
    Leader {
        /// The leader epoch.
        epoch: i64,
    },
}

/// The next thing the driver must do for the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Grant a new lease (there is none, or the last one expired or was lost).
    Grant,
    /// Send a keep-alive for this lease.
    KeepAlive {
        /// The lease id.
        lease: i64,
    },
    /// Campaign for leadership with this lease (blocks in etcd until elected).
    Campaign {
        /// The lease id.
        lease: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    id: i64,
    ttl_ms: i64,
    /// The lease lives at least until here (monotonic ms): the send time of the last request
    /// etcd answered with the lease alive, plus the TTL.
    valid_until: i64,
    /// When the last keep-alive was sent (or the grant).
    renewed_at: i64,
    /// A keep-alive is in flight (sent at this time).
    in_flight: Option<i64>,
}

/// The leadership of one replica.
#[derive(Debug, Clone)]
pub struct Leadership {
    ttl_ms: i64,
    margin_ms: i64,
    lease: Option<Lease>,
    /// Elected on the current lease with this epoch.
    epoch: Option<i64>,
    campaigning: bool,
    /// Highest epoch this replica ever led with (an epoch never goes backwards).
    last_epoch: i64,
}

impl Leadership {
    /// Leadership on leases of `ttl_ms`. The replica stops acting `margin_ms` before the lease
    /// could expire (for the difference between this machine's and etcd's clock rates; a
    /// tenth of the TTL is plenty).
    pub fn new(ttl_ms: i64, margin_ms: i64) -> Leadership {
        let ttl_ms = ttl_ms.max(1_000);
        Leadership {
            ttl_ms,
            margin_ms: margin_ms.clamp(0, ttl_ms / 2),
            lease: None,
            epoch: None,
            campaigning: false,
            last_epoch: 0,
        }
    }

    /// The lease TTL in whole seconds, as etcd takes it.
    pub fn ttl_secs(&self) -> i64 {
        (self.ttl_ms / 1000).max(1)
    }

    /// etcd granted lease `id` with `ttl_secs`, asked for at `sent_at`.
    pub fn handle_granted(&mut self, id: i64, ttl_secs: i64, sent_at: i64) {
        let ttl_ms = ttl_secs.saturating_mul(1000);
        self.lease = Some(Lease {
            id,
            ttl_ms,
            valid_until: sent_at.saturating_add(ttl_ms),
            renewed_at: sent_at,
            in_flight: None,
        });
        self.epoch = None;
        self.campaigning = false;
    }

    /// A keep-alive for `id` sent at `sent_at` is on its way.
    pub fn handle_keepalive_sent(&mut self, id: i64, sent_at: i64) {
        if let Some(l) = self.lease.as_mut().filter(|l| l.id == id) {
            l.in_flight = Some(sent_at);
        }
    }

    /// etcd answered the keep-alive for `id` with `ttl_secs` left (0 or less: the lease is
    /// gone, expired or revoked).
    pub fn handle_keepalive_reply(&mut self, id: i64, ttl_secs: i64) {
        let Some(l) = self.lease.as_mut().filter(|l| l.id == id) else {
            return;
        };
        let Some(sent_at) = l.in_flight.take() else {
            return;
        };
        if ttl_secs <= 0 {
            self.lost();
            return;
        }
        l.ttl_ms = ttl_secs.saturating_mul(1000);
        l.renewed_at = sent_at;
        l.valid_until = l.valid_until.max(sent_at.saturating_add(l.ttl_ms));
    }

    /// The keep-alive stream or the connection to etcd failed: the in-flight keep-alive
    /// renews nothing; the lease may still be alive until its deadline (the driver reconnects
    /// and keeps it alive if it can).
    pub fn handle_keepalive_failed(&mut self) {
        if let Some(l) = self.lease.as_mut() {
            l.in_flight = None;
        }
    }

    /// The driver sent the campaign for the current lease.
    pub fn handle_campaign_sent(&mut self) {
        self.campaigning = true;
    }

    /// The campaign failed (etcd unreachable, the lease expired meanwhile).
    pub fn handle_campaign_failed(&mut self) {
        self.campaigning = false;
    }

    /// Elected with lease `lease`: the election key was created at revision `epoch`.
    pub fn handle_elected(&mut self, lease: i64, epoch: i64) {
        self.campaigning = false;
        if self.lease.is_some_and(|l| l.id == lease) && epoch > self.last_epoch {
            self.epoch = Some(epoch);
            self.last_epoch = epoch;
        }
    }

    /// A fenced write was refused: the election key of our epoch no longer exists, so another
    /// replica is (or will be) leader. Step down at once and start over with a new lease.
    pub fn handle_fenced_refusal(&mut self) {
        self.lost();
    }

    fn lost(&mut self) {
        self.lease = None;
        self.epoch = None;
        self.campaigning = false;
    }

    /// What this replica may do at `now`. A lease past its deadline is dropped here, so the
    /// next action is a new grant.
    pub fn poll_role(&mut self, now: i64) -> Role {
        if let Some(l) = self.lease
            && now >= l.valid_until
        {
            self.lost();
        }
        match (self.lease, self.epoch) {
            (Some(l), Some(epoch)) if now < l.valid_until - self.margin_ms => {
                Role::Leader { epoch }
            }
            _ => Role::Follower,
        }
    }

    /// While leading: the moment acting must stop (monotonic ms), unless a keep-alive
    /// extends the lease before.
    pub fn acting_until(&self) -> Option<i64> {
        match (self.lease, self.epoch) {
            (Some(l), Some(_)) => Some(l.valid_until - self.margin_ms),
            _ => None,
        }
    }

    /// The next request the driver should make at `now`, if any is due.
    pub fn poll_action(&mut self, now: i64) -> Option<Action> {
        let _ = self.poll_role(now);
        let Some(l) = self.lease else {
            return Some(Action::Grant);
        };
        if l.in_flight.is_none() && now >= l.renewed_at + self.keepalive_every(l) {
            return Some(Action::KeepAlive { lease: l.id });
        }
        if self.epoch.is_none() && !self.campaigning {
            return Some(Action::Campaign { lease: l.id });
        }
        None
    }

    /// When to poll next (monotonic ms): the next keep-alive, or the moment the role changes.
    pub fn poll_timeout(&self, now: i64) -> i64 {
        match self.lease {
            None => now,
            Some(l) => {
                let mut t = l.valid_until;
                if self.epoch.is_some() {
                    t = t.min(l.valid_until - self.margin_ms);
                }
                if l.in_flight.is_none() {
                    t = t.min(l.renewed_at + self.keepalive_every(l));
                }
                t.max(now)
            }
        }
    }

    /// Keep-alives go out every third of the TTL: two may be lost before the lease lapses.
    fn keepalive_every(&self, l: Lease) -> i64 {
        (l.ttl_ms / 3).max(100)
    }

    /// The highest epoch this replica has led with (0: never).
    pub fn last_epoch(&self) -> i64 {
        self.last_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: i64 = 6_000;
    const MARGIN: i64 = 600;

    fn elected(at: i64) -> Leadership {
        let mut l = Leadership::new(TTL, MARGIN);
        assert_eq!(l.poll_action(at), Some(Action::Grant));
        l.handle_granted(7, 6, at);
        assert_eq!(l.poll_action(at), Some(Action::Campaign { lease: 7 }));
        l.handle_campaign_sent();
        assert_eq!(l.poll_action(at), None);
        l.handle_elected(7, 42);
        l
    }

    #[test]
    fn a_granted_and_elected_replica_leads_with_its_epoch() {
        let mut l = elected(1_000);
        assert_eq!(l.poll_role(1_000), Role::Leader { epoch: 42 });
        assert_eq!(l.last_epoch(), 42);
    }

    #[test]
    fn without_keepalives_it_stops_leading_a_margin_before_the_lease_can_expire() {
        let mut l = elected(1_000);
        // Lease valid until 1_000 + 6_000; acting stops at 7_000 - 600.
        assert_eq!(l.poll_role(6_399), Role::Leader { epoch: 42 });
        assert_eq!(l.acting_until(), Some(6_400));
        // The keep-alive is overdue: wake at once.
        assert_eq!(l.poll_timeout(3_100), 3_100);
        assert_eq!(l.poll_role(6_400), Role::Follower);
        // Past the lease itself: the lease is dropped and a new one is asked for.
        assert_eq!(l.poll_role(7_000), Role::Follower);
        assert_eq!(l.poll_action(7_000), Some(Action::Grant));
    }

    #[test]
    fn a_keepalive_extends_the_lease_from_when_it_was_sent_not_when_it_was_answered() {
        let mut l = elected(0);
        assert_eq!(l.poll_action(1_999), None);
        assert_eq!(l.poll_action(2_000), Some(Action::KeepAlive { lease: 7 }));
        l.handle_keepalive_sent(7, 2_000);
        assert_eq!(
            l.poll_action(2_100),
            None,
            "one keep-alive in flight at a time"
        );
        // The reply comes 3 s later (a slow network): the lease counts from 2_000.
        l.handle_keepalive_reply(7, 6);
        assert_eq!(l.poll_role(7_399), Role::Leader { epoch: 42 });
        assert_eq!(l.poll_role(7_400), Role::Follower);
    }

    #[test]
    fn a_paused_replica_is_a_follower_the_moment_it_runs_again() {
        let mut l = elected(0);
        l.handle_keepalive_sent(7, 2_000);
        // SIGSTOP for 30 s; the reply that was waiting arrives after the resume.
        assert_eq!(l.poll_role(32_000), Role::Follower);
        l.handle_keepalive_reply(7, 6);
        assert_eq!(l.poll_role(32_001), Role::Follower);
        assert_eq!(l.poll_action(32_001), Some(Action::Grant));
    }

    #[test]
    fn a_lease_reported_gone_ends_leadership_at_once() {
        let mut l = elected(0);
        l.handle_keepalive_sent(7, 2_000);
        l.handle_keepalive_reply(7, 0);
        assert_eq!(l.poll_role(2_001), Role::Follower);
        assert_eq!(l.poll_action(2_001), Some(Action::Grant));
    }

    #[test]
    fn a_refused_fenced_write_steps_down_and_starts_over() {
        let mut l = elected(0);
        l.handle_fenced_refusal();
        assert_eq!(l.poll_role(1), Role::Follower);
        assert_eq!(l.poll_action(1), Some(Action::Grant));
        l.handle_granted(8, 6, 10);
        l.handle_campaign_sent();
        // An election answer that is not newer than what we led with is not believed.
        l.handle_elected(8, 42);
        assert_eq!(l.poll_role(11), Role::Follower);
        l.handle_elected(8, 50);
        assert_eq!(l.poll_role(11), Role::Leader { epoch: 50 });
    }

    #[test]
    fn answers_for_an_old_lease_change_nothing() {
        let mut l = elected(0);
        l.handle_keepalive_sent(7, 100);
        l.handle_granted(9, 6, 200);
        l.handle_keepalive_reply(7, 6);
        l.handle_elected(7, 99);
        assert_eq!(l.poll_role(300), Role::Follower);
        assert_eq!(l.poll_action(300), Some(Action::Campaign { lease: 9 }));
    }

    #[test]
    fn a_failed_keepalive_is_retried_and_the_deadline_does_not_move() {
        let mut l = elected(0);
        l.handle_keepalive_sent(7, 2_000);
        l.handle_keepalive_failed();
        assert_eq!(l.poll_action(2_001), Some(Action::KeepAlive { lease: 7 }));
        assert_eq!(l.poll_role(5_399), Role::Leader { epoch: 42 });
        assert_eq!(l.poll_role(5_400), Role::Follower);
    }

    #[test]
    fn a_failed_campaign_is_sent_again() {
        let mut l = Leadership::new(TTL, MARGIN);
        l.handle_granted(7, 6, 0);
        l.handle_campaign_sent();
        l.handle_campaign_failed();
        assert_eq!(l.poll_action(1), Some(Action::Campaign { lease: 7 }));
    }

    #[test]
    fn poll_timeout_wakes_for_the_keepalive_and_for_the_end_of_acting() {
        let l = elected(0);
        assert_eq!(l.poll_timeout(0), 2_000);
        let mut l = elected(0);
        l.handle_keepalive_sent(7, 2_000);
        assert_eq!(l.poll_timeout(2_000), 5_400);
    }
}
