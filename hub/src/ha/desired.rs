//! Desired state in etcd (the `ha` feature): the driver between the store's replicated tables
//! (`store/replicated.rs`, where every rule is) and etcd.
//!
//! Keys, under `<prefix>/ds/`:
//! - `rev`: rewritten by every write; its modification revision is the revision the canonical
//!   state is at (where a replica that loads it goes on watching);
//! - `t/<table>/<key in hex>`: one record, its value as the store keeps it.
//!
//! The driver loads the whole state when it starts (seeding an empty etcd with this replica's
//! tables), then watches the prefix and applies every other replica's revision to the local
//! copy, in order (its own writes too). It makes the writes the store publishes: one etcd
//! transaction each, that compares every record it changes with the value the writer's copy
//! had and, for the leader's writes, the election key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::{mpsc, watch};

use super::{HaConfig, LeaderGate};
use crate::store::{Change, Publisher, Snapshot, Store, StoreError, as_changes};

/// How long a write waits for etcd before it is reported as not made.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest gRPC message the driver sends or takes: the whole desired state when it loads,
/// a write of every connected agent's presence, a watch response of such a write. gRPC's
/// default of 4 MiB was too small at 10,000 agents (the driver could never load again).
const MAX_MESSAGE: usize = 64 << 20;

/// The key-value client with [`MAX_MESSAGE`].
fn kv(client: &Client) -> etcd_client::KvClient {
    client
        .kv_client()
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// How often the driver asks etcd for a sign of life on the watch.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A write for the driver to make.
struct Request {
    fence: Option<i64>,
    changes: Vec<Change>,
    reply: std::sync::mpsc::SyncSender<Result<u64, StoreError>>,
}

/// The store's [`Publisher`] in HA mode: hands writes to the driver task.
#[derive(Debug)]
pub struct EtcdPublisher {
    tx: mpsc::UnboundedSender<Request>,
    /// Whether the local copy is current (loaded and watched).
    synced: AtomicBool,
    gate: Arc<LeaderGate>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("changes", &self.changes.len())
            .finish()
    }
}

impl Publisher for EtcdPublisher {
    fn publish(&self, fence: Option<i64>, changes: &[Change]) -> Result<u64, StoreError> {
        if !self.synced.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "not connected to etcd (or not caught up with it yet)".into(),
            ));
        }
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send(Request {
                fence,
                changes: changes.to_vec(),
                reply,
            })
            .map_err(|_| StoreError::Unavailable("the etcd driver has stopped".into()))?;
        match rx.recv_timeout(PUBLISH_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd did not answer within {PUBLISH_TIMEOUT:?} (the change may still appear)"
            ))),
        }
    }
}

impl EtcdPublisher {
    /// Whether the local copy is current.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
}

/// A publisher for `store` and the task that drives it; run the task with [`run`].
pub fn publisher(gate: Arc<LeaderGate>) -> (Arc<EtcdPublisher>, Driver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let p = Arc::new(EtcdPublisher {
        tx,
        synced: AtomicBool::new(false),
        gate,
    });
    (p.clone(), Driver { rx, publisher: p })
}

/// The driver's half of [`publisher`].
pub struct Driver {
    rx: mpsc::UnboundedReceiver<Request>,
    publisher: Arc<EtcdPublisher>,
}

fn rev_key(cfg: &HaConfig) -> String {
    format!("{}/ds/rev", cfg.prefix)
}

fn prefix(cfg: &HaConfig) -> String {
    format!("{}/ds/", cfg.prefix)
}

fn record_key(cfg: &HaConfig, c: &Change) -> Vec<u8> {
    let mut k = format!("{}/ds/t/{}/", cfg.prefix, c.table).into_bytes();
    for b in &c.key {
        k.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    k
}

/// The table and record key of an etcd key under the prefix (`None`: not a record).
fn parse_key(cfg: &HaConfig, key: &[u8]) -> Option<(String, Vec<u8>)> {
    let head = format!("{}/ds/t/", cfg.prefix);
    let rest = std::str::from_utf8(key.strip_prefix(head.as_bytes())?).ok()?;
    let (table, hex) = rest.split_once('/')?;
    if hex.len() % 2 != 0 || !crate::store::is_replicated_table(table) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((table.to_string(), bytes))
}

/// Keep `store`'s replicated tables a copy of etcd's until `shutdown` flips; `changed` is
/// called after every change another replica made was applied.
pub async fn run(
    cfg: HaConfig,
    store: Arc<Store>,
    mut driver: Driver,
    changed: Arc<dyn Fn() + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut member = 0usize;
    let timeout = Duration::from_millis(
        u64::try_from(cfg.lease_ttl.as_millis() / 3)
            .unwrap_or(1_000)
            .max(500),
    );
    while !*shutdown.borrow() {
        let endpoint = cfg.etcd[member % cfg.etcd.len().max(1)].clone();
        member = member.wrapping_add(1);
        // No HTTP/2 keep-alive pings: etcd closes a connection that pings an idle stream more
        // often than every 5 s. The watch's own progress requests are the heartbeat instead.
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_require_leader(true);
        let client = match tokio::time::timeout(timeout, Client::connect([&endpoint], Some(opts)))
            .await
        {
            Ok(Ok(c)) => c,
            other => {
                tracing::warn!(endpoint, error = ?other.map(|r| r.err().map(|e| e.to_string())), "desired state: cannot connect to etcd");
                fail_pending(&mut driver);
                if pause(&mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        match session(
            &cfg,
            &store,
            &mut driver,
            &changed,
            client,
            timeout,
            &mut shutdown,
        )
        .await
        {
            Ok(()) => break,
            Err(e) => {
                driver.publisher.synced.store(false, Ordering::SeqCst);
                tracing::warn!(endpoint, error = %e, "desired state: etcd session ended; desired state is read-only until it is back");
                fail_pending(&mut driver);
                if pause(&mut shutdown).await {
                    break;
                }
            }
        }
    }
    driver.publisher.synced.store(false, Ordering::SeqCst);
}

/// Refuse the writes waiting while there is no session.
fn fail_pending(driver: &mut Driver) {
    while let Ok(r) = driver.rx.try_recv() {
        let _ = r
            .reply
            .send(Err(StoreError::Unavailable("not connected to etcd".into())));
    }
}

async fn pause(shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(500)) => false,
        _ = shutdown.changed() => true,
    }
}

/// One connection: load (or seed), then watch and write until an error (`Err`) or shutdown.
async fn session(
    cfg: &HaConfig,
    store: &Arc<Store>,
    driver: &mut Driver,
    changed: &Arc<dyn Fn() + Send + Sync>,
    mut client: Client,
    timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let rev = load(cfg, store, &mut client, timeout).await?;
    changed();
    let mut watcher = client.clone();
    let mut stream = tokio::time::timeout(
        timeout,
        watcher
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(
                prefix(cfg),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(i64::try_from(rev)?.saturating_add(1)),
                ),
            ),
    )
    .await??;
    driver.publisher.synced.store(true, Ordering::SeqCst);
    tracing::info!(revision = rev, "desired state: in sync with etcd, watching");
    // Two loops on one task: applying the watch's revisions and making this replica's writes.
    // They must not wait for each other: a write holds the store's write transaction open
    // until etcd answered, and applying a revision needs that transaction.
    let applying = apply_loop(cfg, store, changed, &mut stream);
    let gate = driver.publisher.gate.clone();
    let writing = write_loop(cfg, driver, client, timeout);
    let replicas = live_loop(cfg, &gate, &mut watcher, timeout);
    tokio::select! {
        r = applying => r,
        r = writing => r,
        r = replicas => r,
        _ = shutdown.changed() => Ok(()),
    }
}

/// Keep the gate's set of live replicas: every replica's election key (its value is the
/// replica's name), read once and then watched.
async fn live_loop(
    cfg: &HaConfig,
    gate: &LeaderGate,
    client: &mut Client,
    timeout: Duration,
) -> anyhow::Result<()> {
    let election = format!("{}/", cfg.election());
    let resp = tokio::time::timeout(
        timeout * 4,
        kv(client).get(election.clone(), Some(GetOptions::new().with_prefix())),
    )
    .await??;
    let at = resp.header().map_or(0, |h| h.revision());
    gate.set_live(true, b"", None);
    for kv in resp.kvs() {
        gate.set_live(false, kv.key(), Some(&String::from_utf8_lossy(kv.value())));
    }
    let mut stream = tokio::time::timeout(
        timeout,
        client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(
                election,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(at.saturating_add(1)),
                ),
            ),
    )
    .await??;
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            anyhow::bail!("the watch of the replicas was cancelled");
        }
        for ev in resp.events() {
            if let Some(kv) = ev.kv() {
                let name = String::from_utf8_lossy(kv.value()).to_string();
                let alive = (ev.event_type() == EventType::Put).then_some(name.as_str());
                gate.set_live(false, kv.key(), alive);
            }
        }
    }
    anyhow::bail!("the watch of the replicas ended")
}

/// Apply every revision the watch brings, in order, until it fails or goes quiet.
async fn apply_loop(
    cfg: &HaConfig,
    store: &Arc<Store>,
    changed: &Arc<dyn Fn() + Send + Sync>,
    stream: &mut etcd_client::WatchStream,
) -> anyhow::Result<()> {
    // A member cut off or gone sends nothing: ask for a progress report every heartbeat and
    // give the session up when nothing came for five (a write meanwhile times out by itself).
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                if heard.elapsed() > HEARTBEAT * 5 {
                    anyhow::bail!("etcd sent nothing for {:?}", heard.elapsed());
                }
                // A stream whose bytes are held must not hold this loop: the silence above
                // ends the session.
                let _ = tokio::time::timeout(HEARTBEAT, stream.request_progress()).await;
            }
            msg = stream.message() => {
                let Some(resp) = msg? else {
                    anyhow::bail!("the watch ended");
                };
                heard = tokio::time::Instant::now();
                if resp.canceled() || resp.compact_revision() > 0 {
                    anyhow::bail!("the watch was cancelled ({}; compacted at {})", resp.cancel_reason(), resp.compact_revision());
                }
                // Events in revision order; one local transaction per revision.
                let mut by_rev: BTreeMap<i64, Vec<Change>> = BTreeMap::new();
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let entry = by_rev.entry(kv.mod_revision()).or_default();
                    if let Some((table, key)) = parse_key(cfg, kv.key()) {
                        entry.push(Change {
                            before: None,
                            table,
                            key,
                            value: (ev.event_type() == EventType::Put).then(|| kv.value().to_vec()),
                        });
                    }
                }
                for (rev, changes) in by_rev {
                    let s = store.clone();
                    let rev = u64::try_from(rev)?;
                    // A revision the copy holds already (after a reload) is skipped there.
                    let applied =
                        tokio::task::spawn_blocking(move || s.apply_replicated(rev, &changes))
                            .await??;
                    if applied {
                        tracing::debug!(revision = rev, "desired state: applied another replica's change");
                        changed();
                    }
                }
            }
        }
    }
}

/// Make the writes the store publishes, one at a time, until one cannot reach etcd.
async fn write_loop(
    cfg: &HaConfig,
    driver: &mut Driver,
    mut client: Client,
    timeout: Duration,
) -> anyhow::Result<()> {
    while let Some(req) = driver.rx.recv().await {
        let r = write(cfg, &driver.publisher.gate, &mut client, &req, timeout).await;
        let failed = matches!(r, Err(StoreError::Unavailable(_)));
        let _ = req.reply.send(r);
        if failed {
            anyhow::bail!("a write to etcd failed");
        }
    }
    Ok(())
}

/// Load the canonical state into the store (or seed an empty etcd with the store's); the
/// revision it is at.
async fn load(
    cfg: &HaConfig,
    store: &Arc<Store>,
    client: &mut Client,
    timeout: Duration,
) -> anyhow::Result<u64> {
    loop {
        let resp = tokio::time::timeout(
            timeout * 4,
            kv(client).get(prefix(cfg), Some(GetOptions::new().with_prefix())),
        )
        .await??;
        // The revision of the last write of desired state (etcd's own revision also counts
        // the election's writes): what writes compare with, and where the watch goes on.
        let seeded = resp
            .kvs()
            .iter()
            .find(|kv| kv.key() == rev_key(cfg).as_bytes())
            .map(|kv| kv.mod_revision());
        if let Some(at) = seeded {
            let mut all = Snapshot::new();
            for kv in resp.kvs() {
                if let Some((table, key)) = parse_key(cfg, kv.key()) {
                    all.entry(table)
                        .or_default()
                        .insert(key, kv.value().to_vec());
                }
            }
            let rev = u64::try_from(at)?;
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.load_replicated(rev, &all)).await??;
            tracing::info!(revision = rev, "desired state: loaded from etcd");
            return Ok(rev);
        }
        // An empty etcd: the first replica to get here puts its state in.
        let s = store.clone();
        let mine = tokio::task::spawn_blocking(move || s.replicated_snapshot()).await??;
        let mut ops: Vec<TxnOp> = as_changes(&mine)
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| TxnOp::put(record_key(cfg, c), v.clone(), None))
            })
            .collect();
        ops.push(TxnOp::put(rev_key(cfg), cfg.name.clone(), None));
        let txn = Txn::new()
            .when([Compare::create_revision(rev_key(cfg), CompareOp::Equal, 0)])
            .and_then(ops);
        let r = tokio::time::timeout(timeout * 4, kv(client).txn(txn)).await??;
        if r.succeeded() {
            let rev = u64::try_from(r.header().map_or(0, |h| h.revision()))?;
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.mark_replicated(rev)).await??;
            tracing::info!(
                revision = rev,
                "desired state: etcd was empty; seeded it with this replica's"
            );
            return Ok(rev);
        }
        // Another replica seeded it first: load that.
    }
}

/// Make one write: if every record it changes still has in etcd the value this replica's copy
/// had (absent: no key), and, fenced, the leader of that epoch still holds its election key,
/// put the changes. The new revision. Writes of different records by different replicas do not
/// refuse each other; two writes of one record do (the second is told to try again).
async fn write(
    cfg: &HaConfig,
    gate: &LeaderGate,
    client: &mut Client,
    req: &Request,
    timeout: Duration,
) -> Result<u64, StoreError> {
    let mut when: Vec<Compare> = req
        .changes
        .iter()
        .map(|c| match &c.before {
            Some(v) => Compare::value(record_key(cfg, c), CompareOp::Equal, v.clone()),
            None => Compare::create_revision(record_key(cfg, c), CompareOp::Equal, 0),
        })
        .collect();
    if let Some(epoch) = req.fence {
        let Some(key) = gate.election_key(epoch) else {
            gate.count_refused();
            return Err(StoreError::Conflict(format!(
                "this replica no longer leads (epoch {epoch}); the write was not made"
            )));
        };
        when.push(Compare::create_revision(key, CompareOp::Equal, epoch));
    }
    let mut ops: Vec<TxnOp> = req
        .changes
        .iter()
        .map(|c| match &c.value {
            Some(v) => TxnOp::put(record_key(cfg, c), v.clone(), None),
            None => TxnOp::delete(record_key(cfg, c), None),
        })
        .collect();
    ops.push(TxnOp::put(rev_key(cfg), cfg.name.clone(), None));
    let txn = Txn::new().when(when).and_then(ops);
    match tokio::time::timeout(timeout * 2, kv(client).txn(txn)).await {
        Ok(Ok(r)) if r.succeeded() => {
            let rev = r.header().map_or(0, |h| h.revision());
            u64::try_from(rev).map_err(|_| StoreError::Unavailable("etcd sent no revision".into()))
        }
        Ok(Ok(_)) => {
            if req.fence.is_some() {
                gate.count_refused();
            }
            Err(StoreError::Conflict(
                "what this changes was changed at another replica meanwhile (or this replica no \
                 longer leads); nothing was changed: try again"
                    .into(),
            ))
        }
        Ok(Err(e)) => Err(StoreError::Unavailable(format!("etcd: {e}"))),
        Err(_) => Err(StoreError::Unavailable(
            "etcd did not answer in time (the change may still appear)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn record_keys_round_trip_and_foreign_keys_are_not_records() {
        let cfg = HaConfig {
            etcd: vec![],
            name: "a".into(),
            prefix: "/o".into(),
            lease_ttl: Duration::from_secs(5),
            postgres: None,
        };
        let c = Change {
            before: None,
            table: "workflow_versions".into(),
            key: vec![0, 1, 0xfe, b'/'],
            value: None,
        };
        let k = record_key(&cfg, &c);
        assert_eq!(k, b"/o/ds/t/workflow_versions/0001fe2f");
        assert_eq!(parse_key(&cfg, &k), Some((c.table, c.key)));
        for bad in [
            &b"/o/ds/rev"[..],
            b"/o/ds/t/runs/00",
            b"/o/ds/t/pools/0",
            b"/o/ds/t/pools/zz",
            b"/p/ds/t/pools/00",
            b"/o/ds/t/pools",
        ] {
            assert_eq!(
                parse_key(&cfg, bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
