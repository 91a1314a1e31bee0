//! The HA driver (the `ha` feature): leadership on etcd. Thin: every decision is
//! [`Leadership`]'s; this makes the requests (lease grant and keep-alive, campaign on etcd's
//! election API, the fenced leader record, resign) and feeds their outcomes back with the
//! monotonic time each was sent, then publishes the role into the [`LeaderGate`].

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, LeaderKey, LeaseKeepAliveStream, LeaseKeeper,
    ResignOptions, Txn, TxnOp,
};
use tokio::sync::{mpsc, watch};

use super::leadership::Action;
use super::{HaConfig, LeaderGate, Leadership, Role, mono_ms};

/// How long to wait before trying again after etcd failed a request.
const RETRY: Duration = Duration::from_millis(500);

/// What a campaign task reports: the lease it campaigned with and the election key it won.
type Campaigned = (i64, Result<LeaderKey, String>);

/// Take part in the election of `cfg` until `shutdown` flips, publishing this replica's role
/// into `gate`. On shutdown a leader resigns and revokes its lease, so another replica takes
/// over at once instead of after the TTL.
pub async fn run(cfg: HaConfig, gate: Arc<LeaderGate>, mut shutdown: watch::Receiver<bool>) {
    let ttl_ms = i64::try_from(cfg.lease_ttl.as_millis()).unwrap_or(5_000);
    let mut machine = Leadership::new(ttl_ms, cfg.margin_ms());
    // Every request gives up after a third of the TTL: a keep-alive must not wait out the lease.
    let request_timeout = Duration::from_millis(u64::try_from(ttl_ms / 3).unwrap_or(1_000));
    let mut client: Option<Client> = None;
    let mut keeper: Option<(i64, LeaseKeeper, LeaseKeepAliveStream)> = None;
    let mut leader_key: Option<LeaderKey> = None;
    let mut campaign: Option<tokio::task::JoinHandle<()>> = None;
    let (camp_tx, mut camp_rx) = mpsc::channel::<Campaigned>(4);
    let mut last_role = Role::Follower;
    // Which of `cfg.etcd` to use (the next one after a failure).
    let mut member = 0usize;
    // The TTL etcd granted the current lease (it may differ from the one asked for).
    let mut granted_ttl = machine.ttl_secs();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let Some(c) = client.as_mut() else {
            // No per-request timeout on the channel: a campaign blocks until elected. Each
            // unary request has its own timeout below.
            // One member at a time, the next one after any failure: a balanced channel kept
            // choosing a killed member (tested in tests/e2e/ha.rs). Any member serves; with
            // `require_leader` one cut off from the others' quorum answers with an error
            // instead of hanging.
            let opts = ConnectOptions::new()
                .with_connect_timeout(request_timeout)
                .with_keep_alive(Duration::from_secs(1), request_timeout)
                .with_require_leader(true);
            let endpoint = &cfg.etcd[member % cfg.etcd.len().max(1)];
            match tokio::time::timeout(request_timeout, Client::connect([endpoint], Some(opts)))
                .await
            {
                Ok(Ok(c)) => client = Some(c),
                Ok(Err(e)) => tracing::warn!(error = %e, "etcd: cannot connect"),
                Err(_) => tracing::warn!("etcd: connect timed out"),
            }
            publish(&gate, &mut machine, &mut last_role);
            if client.is_none() {
                member = member.wrapping_add(1);
                if pause(RETRY, &mut shutdown).await {
                    break;
                }
            }
            continue;
        };
        let action = machine.poll_action(mono_ms());
        let mut failed = false;
        match action {
            Some(Action::Grant) => {
                if let Some(t) = campaign.take() {
                    t.abort();
                }
                keeper = None;
                leader_key = None;
                gate.set_election_key(None);
                let sent = mono_ms();
                match tokio::time::timeout(request_timeout, c.lease_grant(machine.ttl_secs(), None))
                    .await
                {
                    Ok(Ok(r)) => {
                        tracing::debug!(lease = r.id(), ttl = r.ttl(), "etcd: lease granted");
                        granted_ttl = r.ttl();
                        machine.handle_granted(r.id(), r.ttl(), sent);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "etcd: lease grant failed");
                        failed = true;
                    }
                    Err(_) => {
                        tracing::warn!("etcd: lease grant timed out");
                        failed = true;
                    }
                }
            }
            Some(Action::KeepAlive { lease }) => {
                let sent = mono_ms();
                machine.handle_keepalive_sent(lease, sent);
                let reply = tokio::time::timeout(request_timeout, async {
                    match keeper.as_mut() {
                        Some((id, k, s)) if *id == lease => {
                            k.keep_alive().await?;
                            s.message().await
                        }
                        _ => {
                            // Opening the stream sends the first keep-alive and takes its
                            // answer (an error unless the lease is alive): the lease was
                            // renewed to its granted TTL.
                            let (k, s) = c.lease_keep_alive(lease).await?;
                            keeper = Some((lease, k, s));
                            Ok(None)
                        }
                    }
                })
                .await;
                match reply {
                    Ok(Ok(Some(r))) => machine.handle_keepalive_reply(lease, r.ttl()),
                    Ok(Ok(None)) if keeper.as_ref().is_some_and(|(id, ..)| *id == lease) => {
                        machine.handle_keepalive_reply(lease, granted_ttl);
                    }
                    other => {
                        tracing::warn!(lease, outcome = ?other.map(|r| r.map(|_| ())), "etcd: keep-alive failed");
                        machine.handle_keepalive_failed();
                        keeper = None;
                        failed = true;
                    }
                }
                // Every keep-alive of a leader also rewrites the leader record, fenced on
                // its election key: a replica that lost the key without knowing it learns it
                // here, whatever its clock says.
                if let (Role::Leader { epoch }, Some(key)) =
                    (machine.poll_role(mono_ms()), leader_key.as_ref())
                {
                    fence(c, &cfg, key, epoch, &gate, &mut machine, request_timeout).await;
                }
            }
            Some(Action::Campaign { lease }) => {
                machine.handle_campaign_sent();
                let (mut c, tx) = (c.clone(), camp_tx.clone());
                let (name, value) = (cfg.election(), cfg.name.clone());
                if let Some(t) = campaign.take() {
                    t.abort();
                }
                campaign = Some(tokio::spawn(async move {
                    let r = match c.campaign(name, value, lease).await {
                        Ok(mut r) => r.take_leader().ok_or_else(|| "no leader key".to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send((lease, r)).await;
                }));
            }
            None => {}
        }
        if failed {
            next_member(&mut client, &mut keeper, &mut member);
            machine.handle_campaign_failed();
            if let Some(t) = campaign.take() {
                t.abort();
            }
        }
        publish(&gate, &mut machine, &mut last_role);
        if action.is_some() && !failed {
            continue;
        }
        let now = mono_ms();
        let wait = if failed {
            // A keep-alive is retried on the next member at once: the lease has little time.
            if matches!(action, Some(Action::KeepAlive { .. })) {
                Duration::from_millis(50)
            } else {
                RETRY
            }
        } else {
            Duration::from_millis(u64::try_from(machine.poll_timeout(now) - now).unwrap_or(0))
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            Some((lease, r)) = camp_rx.recv() => match r {
                Ok(key) => {
                    machine.handle_elected(lease, key.rev());
                    if let (Role::Leader { epoch }, Some(c)) = (machine.poll_role(mono_ms()), client.as_mut()) {
                        fence(c, &cfg, &key, epoch, &gate, &mut machine, request_timeout).await;
                    }
                    gate.set_election_key(Some((key.rev(), key.key().to_vec())));
                    leader_key = Some(key);
                }
                Err(e) => {
                    tracing::warn!(lease, error = %e, "etcd: campaign failed");
                    machine.handle_campaign_failed();
                    next_member(&mut client, &mut keeper, &mut member);
                    if pause(RETRY, &mut shutdown).await {
                        break;
                    }
                }
            },
            _ = shutdown.changed() => break,
        }
        publish(&gate, &mut machine, &mut last_role);
    }
    // Leave: stop acting first, then give the election up.
    gate.publish(Role::Follower, 0);
    gate.set_election_key(None);
    if let Some(t) = campaign.take() {
        t.abort();
    }
    if let Some(c) = client.as_mut() {
        let _ = tokio::time::timeout(request_timeout, async {
            if let Some(key) = leader_key.take() {
                let lease = key.lease();
                let _ = c.resign(Some(ResignOptions::new().with_leader(key))).await;
                let _ = c.lease_revoke(lease).await;
            }
        })
        .await;
    }
}

/// Drop the connection after a failure and use the next member: this one may be dead,
/// partitioned or overloaded.
fn next_member(
    client: &mut Option<Client>,
    keeper: &mut Option<(i64, LeaseKeeper, LeaseKeepAliveStream)>,
    member: &mut usize,
) {
    *client = None;
    *keeper = None;
    *member = member.wrapping_add(1);
}

/// Publish the machine's role at this moment into the gate (and log a change).
fn publish(gate: &LeaderGate, machine: &mut Leadership, last: &mut Role) {
    let now = mono_ms();
    let role = machine.poll_role(now);
    gate.publish(role, machine.acting_until().unwrap_or(0));
    if role != *last {
        match role {
            Role::Leader { epoch } => tracing::info!(epoch, "elected leader"),
            Role::Follower => tracing::warn!("not leader"),
        }
        *last = role;
    }
}

/// Write the leader record if and only if `key` (our election key, created at `epoch`) still
/// exists. A refusal means we lost the election: step down.
async fn fence(
    c: &mut Client,
    cfg: &HaConfig,
    key: &LeaderKey,
    epoch: i64,
    gate: &LeaderGate,
    machine: &mut Leadership,
    timeout: Duration,
) {
    let record = serde_json::json!({ "name": cfg.name, "epoch": epoch }).to_string();
    let txn = Txn::new()
        .when([Compare::create_revision(key.key(), CompareOp::Equal, epoch)])
        .and_then([TxnOp::put(cfg.leader_record(), record, None)]);
    match tokio::time::timeout(timeout, c.txn(txn)).await {
        Ok(Ok(r)) if r.succeeded() => {}
        Ok(Ok(_)) => {
            tracing::warn!(epoch, "etcd refused a fenced write: another replica leads");
            gate.count_refused();
            machine.handle_fenced_refusal();
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "etcd: fenced write failed"),
        Err(_) => tracing::warn!("etcd: fenced write timed out"),
    }
}

/// Sleep `d` unless `shutdown` flips first (then true).
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}
