//! Desired state shared by hub replicas (HA mode): the tables every replica must serve alike are
//! canonical in an external, linearizable store (etcd), and the redb tables here are a copy of
//! it, kept current by watching.
//!
//! The replicated tables: `workflows`, `workflow_versions`, `pending_versions`, `roots`,
//! `pools`, `pool_decisions`, `rollouts`, `rollout_state`, `rollout_agents`, `operators`,
//! `tokens`, `agent_names`, `silences`, the HA-only `rollout_events`, `alert_events` and
//! `agent_presence`, `meta`'s sequences of those (`decision_seq`, `event_seq`,
//! `alert_event_seq`, `silence_seq`), and a derived one, `agent_identities`: the identity part of
//! each `agents` record (certificates, labels, name, revocation), applied into the local record
//! with the replica's own observations (last contact, what it runs, telemetry) kept. Writes
//! that change an identity are direct writes for that reason (enrollment, revocation,
//! certificate renewal, labels, rename, decommission). Everything else (run history,
//! assignments minted per session, the agents' observations, the audit log, the alert tables)
//! stays this replica's own.
//!
//! How a write works, when a [`Publisher`] is attached (embedded mode has none and nothing
//! here runs):
//! 1. A direct write transaction ([`Store::begin_write`]) runs its logic on the local copy, as
//!    in embedded mode, beside a read transaction of the state it started from.
//! 2. At commit, the replicated tables it may change ([`Scope`]) are compared with that state:
//!    the [`Change`]s, each with the value it replaces.
//! 3. The publisher commits them to etcd in one transaction that succeeds only if every record
//!    changed still has in etcd the value it replaces (first writer wins on each record: two
//!    replicas changing one record cannot both succeed, writes of different records do not
//!    refuse each other), and, for a write of the leader's tasks, only while its election key
//!    still exists ([`fenced`]), so a deposed leader's are refused.
//! 4. Only then does the local transaction commit. If etcd refused or could not be reached,
//!    the local transaction is dropped: nothing changed anywhere ([`StoreError::Conflict`],
//!    [`StoreError::Unavailable`]).
//!
//! Invariants that span records hold because their writes overlap: a new version, decision,
//! rollout or silence takes the next number of a sequence (its workflow record or a `meta`
//! sequence, both written), a name is claimed by writing its `agent_names` record, a token use
//! rewrites the token. What a write only read (a pool that must exist) may have changed at
//! another replica meanwhile: writes are snapshot-isolated, not serializable.
//!
//! Changes other replicas made arrive through [`Store::apply_replicated`] (a watch), one etcd
//! revision per local transaction, in order; a replica that fell behind the watch's history
//! loads the whole state again ([`Store::load_replicated`]).
//!
//! A write that returned `Ok` is in etcd (durable on a quorum) and in the local store; a crash
//! between the two loses only the local half, which the watch brings back.

use std::cell::Cell;
use std::collections::BTreeMap;

use redb::{
    Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, Value,
    WriteTransaction,
};

use minicbor::{Decode, Encode};

use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::operators::OPERATORS;
use super::records::AgentRecord;
use super::schema::{
    AGENT_NAMES, AGENTS, ALERT_EVENTS, DECISIONS, META, META_ALERT_EVENT_SEQ, META_DECISION_SEQ,
    META_EVENT_SEQ, META_SILENCE_SEQ, PENDING, POOLS, PRESENCE, ROLLOUT_AGENTS, ROLLOUT_EVENTS,
    ROLLOUT_STATE, ROLLOUTS, ROOTS, SILENCES, TOKENS, VERSIONS, WORKFLOWS,
};

/// The derived table of agent identities: the identity part of each `agents` record.
const IDENTITIES: &str = "agent_identities";

/// The `meta` keys that are replicated.
const META_KEYS: [&str; 4] = [
    META_DECISION_SEQ,
    META_EVENT_SEQ,
    META_ALERT_EVENT_SEQ,
    META_SILENCE_SEQ,
];

/// `meta` key: the canonical revision the replicated tables are a copy of (0: never
/// replicated).
pub(crate) const META_REPLICA_REV: &str = "replica_rev";

/// The `meta` keys that are replicated, under this table name.
const META_TABLE: &str = "meta";

/// One replicated record changed: its table, its key and value as redb stores them, the new
/// value (`None`: deleted) and, for a write being published, the value it replaces (`None`:
/// there was none; not known for changes that come from the canonical store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The table's name.
    pub table: String,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The new value's bytes, or `None` when the record was deleted.
    pub value: Option<Vec<u8>>,
    /// The value the write replaces, as this replica's copy had it.
    pub before: Option<Vec<u8>>,
}

/// The canonical store a replica publishes its desired-state writes to.
pub trait Publisher: Send + Sync + std::fmt::Debug {
    /// Commit `changes` if and only if every record they change still has, in the canonical
    /// store, the value it replaces (`before`; absent when `None`) and, with `fence`, the
    /// leader of that epoch still holds its election. The new revision. Blocks (called from
    /// the blocking threads the store runs on).
    fn publish(&self, fence: Option<i64>, changes: &[Change]) -> Result<u64, StoreError>;
}

thread_local! {
    static FENCE: Cell<Option<i64>> = const { Cell::new(None) };
}

/// Run `f` with this thread's replicated writes fenced on the leader's `epoch`: etcd refuses
/// them once another replica has been elected. The leader's tasks (the rollout controllers)
/// write through this; operators' commands do not need to (any replica takes them).
pub fn fenced<T>(epoch: i64, f: impl FnOnce() -> T) -> T {
    let before = FENCE.with(|c| c.replace((epoch > 0).then_some(epoch)));
    let r = f();
    FENCE.with(|c| c.set(before));
    r
}

fn current_fence() -> Option<i64> {
    FENCE.with(Cell::get)
}

/// Every replicated table's records, by table name, key bytes, value bytes.
pub type Snapshot = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Which replicated tables a direct write may change, so that its commit compares only those
/// (reading every replicated table twice per write is what HA mode cost most: docs/BENCHMARKS.md,
/// "HA mode with desired state in etcd"). In debug builds (the tests) the whole set is compared
/// as well and a change outside the scope fails the write, so a scope that is too narrow is
/// found by the HA tests, not by a replica that silently diverges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Any replicated table (the default of [`Store::begin_write`]).
    All,
    /// Only these (names of replicated tables; `"meta"` for its replicated keys,
    /// `"agent_identities"` for the identities in `agents`).
    Only(&'static [&'static str]),
}

impl Scope {
    fn has(self, table: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(t) => t.contains(&table),
        }
    }
}

/// Call `$f(txn, DEF, out)` for every replicated redb table (`meta`'s key aside).
macro_rules! for_each_table {
    ($f:ident, $txn:expr, ($out:expr, $scope:expr)) => {
        for_each_table!(@each $f, $txn, ($out, $scope));
    };
    (@each $f:ident, $txn:expr, ($out:expr, $scope:expr)) => {
        $f($txn, WORKFLOWS, (&mut *$out, $scope))?;
        $f($txn, VERSIONS, (&mut *$out, $scope))?;
        $f($txn, PENDING, (&mut *$out, $scope))?;
        $f($txn, ROOTS, (&mut *$out, $scope))?;
        $f($txn, POOLS, (&mut *$out, $scope))?;
        $f($txn, DECISIONS, (&mut *$out, $scope))?;
        $f($txn, ROLLOUTS, (&mut *$out, $scope))?;
        $f($txn, ROLLOUT_STATE, (&mut *$out, $scope))?;
        $f($txn, ROLLOUT_AGENTS, (&mut *$out, $scope))?;
        $f($txn, OPERATORS, (&mut *$out, $scope))?;
        $f($txn, TOKENS, (&mut *$out, $scope))?;
        $f($txn, ROLLOUT_EVENTS, (&mut *$out, $scope))?;
        $f($txn, PRESENCE, (&mut *$out, $scope))?;
        $f($txn, AGENT_NAMES, (&mut *$out, $scope))?;
        $f($txn, ALERT_EVENTS, (&mut *$out, $scope))?;
        $f($txn, SILENCES, (&mut *$out, $scope))?;
    };
}

/// Read `def` as raw bytes (a table not created yet reads as empty).
fn read_raw<K: Key + 'static, V: Value + 'static>(
    t: &impl ReadableTable<K, V>,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
    let mut m = BTreeMap::new();
    for e in t.iter()? {
        let (k, v) = e?;
        m.insert(
            K::as_bytes(&k.value()).as_ref().to_vec(),
            V::as_bytes(&v.value()).as_ref().to_vec(),
        );
    }
    Ok(m)
}

fn read_tables_r(txn: &ReadTransaction, scope: Scope, ids: bool) -> Result<Snapshot, StoreError> {
    fn one<K: Key + 'static, V: Value + 'static>(
        txn: &ReadTransaction,
        def: TableDefinition<K, V>,
        (out, scope): (&mut Snapshot, Scope),
    ) -> Result<(), StoreError> {
        if !scope.has(def.name()) {
            return Ok(());
        }
        let m = match txn.open_table(def) {
            Ok(t) => read_raw(&t)?,
            Err(redb::TableError::TableDoesNotExist(_)) => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        out.insert(def.name().to_string(), m);
        Ok(())
    }
    let mut s = Snapshot::new();
    for_each_table!(one, txn, (&mut s, scope));
    if ids && scope.has(IDENTITIES) {
        let ids = match txn.open_table(AGENTS) {
            Ok(t) => identities(&t)?,
            Err(redb::TableError::TableDoesNotExist(_)) => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        s.insert(IDENTITIES.to_string(), ids);
    }
    if !scope.has(META_TABLE) {
        return Ok(s);
    }
    let mut meta = BTreeMap::new();
    match txn.open_table(META) {
        Ok(t) => {
            for k in META_KEYS {
                if let Some(v) = t.get(k)? {
                    meta.insert(k.as_bytes().to_vec(), v.value().to_le_bytes().to_vec());
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    s.insert(META_TABLE.to_string(), meta);
    Ok(s)
}

fn read_tables_w(txn: &WriteTransaction, scope: Scope, ids: bool) -> Result<Snapshot, StoreError> {
    fn one<K: Key + 'static, V: Value + 'static>(
        txn: &WriteTransaction,
        def: TableDefinition<K, V>,
        (out, scope): (&mut Snapshot, Scope),
    ) -> Result<(), StoreError> {
        if !scope.has(def.name()) {
            return Ok(());
        }
        let m = read_raw(&txn.open_table(def)?)?;
        out.insert(def.name().to_string(), m);
        Ok(())
    }
    let mut s = Snapshot::new();
    for_each_table!(one, txn, (&mut s, scope));
    if ids && scope.has(IDENTITIES) {
        s.insert(
            IDENTITIES.to_string(),
            identities(&txn.open_table(AGENTS)?)?,
        );
    }
    if !scope.has(META_TABLE) {
        return Ok(s);
    }
    let t = txn.open_table(META)?;
    let mut meta = BTreeMap::new();
    for k in META_KEYS {
        if let Some(v) = t.get(k)? {
            meta.insert(k.as_bytes().to_vec(), v.value().to_le_bytes().to_vec());
        }
    }
    s.insert(META_TABLE.to_string(), meta);
    Ok(s)
}

/// What changed from `before` to `after`, table by table, key by key.
pub(crate) fn diff(before: &Snapshot, after: &Snapshot) -> Vec<Change> {
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    for (table, a) in after {
        let b = before.get(table).unwrap_or(&empty);
        for (k, v) in a {
            if b.get(k) != Some(v) {
                out.push(Change {
                    table: table.clone(),
                    key: k.clone(),
                    value: Some(v.clone()),
                    before: b.get(k).cloned(),
                });
            }
        }
        for (k, old) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
            out.push(Change {
                table: table.clone(),
                key: k.clone(),
                value: None,
                before: Some(old.clone()),
            });
        }
    }
    out
}

/// Every record of `s` as a change (what seeds an empty canonical store).
pub fn as_changes(s: &Snapshot) -> Vec<Change> {
    diff(&Snapshot::new(), s)
}

/// Apply `changes` to `txn`'s tables. A change of an unknown table or a malformed record is
/// refused (the whole transaction is dropped by the caller).
fn apply(txn: &WriteTransaction, changes: &[Change]) -> Result<(), StoreError> {
    fn one<K: Key + 'static, V: Value + 'static>(
        txn: &WriteTransaction,
        def: TableDefinition<K, V>,
        c: &Change,
    ) -> Result<(), StoreError> {
        if let Some(n) = K::fixed_width()
            && n != c.key.len()
        {
            return Err(malformed(c));
        }
        let mut t = txn.open_table(def)?;
        match &c.value {
            Some(v) => {
                if V::fixed_width().is_some_and(|n| n != v.len()) {
                    return Err(malformed(c));
                }
                t.insert(K::from_bytes(&c.key), V::from_bytes(v))?;
            }
            None => {
                t.remove(K::from_bytes(&c.key))?;
            }
        }
        Ok(())
    }
    for c in changes {
        match c.table.as_str() {
            META_TABLE => {
                let Some(key) = META_KEYS.into_iter().find(|k| k.as_bytes() == c.key) else {
                    return Err(malformed(c));
                };
                let mut meta = txn.open_table(META)?;
                match &c.value {
                    Some(v) => {
                        let n = <[u8; 8]>::try_from(v.as_slice()).map_err(|_| malformed(c))?;
                        meta.insert(key, u64::from_le_bytes(n))?;
                    }
                    None => {
                        meta.remove(key)?;
                    }
                }
            }
            t if t == WORKFLOWS.name() => one(txn, WORKFLOWS, c)?,
            t if t == VERSIONS.name() => one(txn, VERSIONS, c)?,
            t if t == PENDING.name() => one(txn, PENDING, c)?,
            t if t == ROOTS.name() => one(txn, ROOTS, c)?,
            t if t == POOLS.name() => one(txn, POOLS, c)?,
            t if t == DECISIONS.name() => one(txn, DECISIONS, c)?,
            t if t == ROLLOUTS.name() => one(txn, ROLLOUTS, c)?,
            t if t == ROLLOUT_STATE.name() => one(txn, ROLLOUT_STATE, c)?,
            t if t == ROLLOUT_AGENTS.name() => one(txn, ROLLOUT_AGENTS, c)?,
            t if t == OPERATORS.name() => one(txn, OPERATORS, c)?,
            t if t == TOKENS.name() => one(txn, TOKENS, c)?,
            t if t == ROLLOUT_EVENTS.name() => one(txn, ROLLOUT_EVENTS, c)?,
            t if t == PRESENCE.name() => one(txn, PRESENCE, c)?,
            t if t == AGENT_NAMES.name() => one(txn, AGENT_NAMES, c)?,
            t if t == ALERT_EVENTS.name() => one(txn, ALERT_EVENTS, c)?,
            t if t == SILENCES.name() => one(txn, SILENCES, c)?,
            IDENTITIES => apply_identity(txn, c)?,
            _ => return Err(malformed(c)),
        }
    }
    Ok(())
}

/// What every replica must agree on about an agent: who it is, its certificates, labels and
/// name, whether it is revoked or decommissioned. The rest of its record (last contact, what it
/// runs, its committed seq, telemetry) is the replica's own observation.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct AgentIdentity {
    #[n(0)]
    labels: Vec<(String, String)>,
    #[n(1)]
    enrolled_ms: i64,
    #[n(2)]
    cert_serial: String,
    #[n(3)]
    cert_fingerprint: String,
    #[n(4)]
    revoked_ms: Option<i64>,
    #[n(5)]
    hostname: String,
    #[n(6)]
    cert_not_after_ms: Option<i64>,
    #[n(7)]
    previous_cert_fingerprint: Option<String>,
    #[n(8)]
    name: Option<String>,
    #[n(9)]
    decommissioned_ms: Option<i64>,
}

impl AgentIdentity {
    fn of(a: &AgentRecord) -> AgentIdentity {
        AgentIdentity {
            labels: a.labels.clone(),
            enrolled_ms: a.enrolled_ms,
            cert_serial: a.cert_serial.clone(),
            cert_fingerprint: a.cert_fingerprint.clone(),
            revoked_ms: a.revoked_ms,
            hostname: a.hostname.clone(),
            cert_not_after_ms: a.cert_not_after_ms,
            previous_cert_fingerprint: a.previous_cert_fingerprint.clone(),
            name: a.name.clone(),
            decommissioned_ms: a.decommissioned_ms,
        }
    }

    /// Put this identity into `a`, keeping its observations.
    fn apply_to(self, a: &mut AgentRecord) {
        a.labels = self.labels;
        a.enrolled_ms = self.enrolled_ms;
        a.cert_serial = self.cert_serial;
        a.cert_fingerprint = self.cert_fingerprint;
        a.revoked_ms = self.revoked_ms;
        a.hostname = self.hostname;
        a.cert_not_after_ms = self.cert_not_after_ms;
        a.previous_cert_fingerprint = self.previous_cert_fingerprint;
        a.name = self.name;
        a.decommissioned_ms = self.decommissioned_ms;
    }
}

/// The identities of every agent in `agents`, encoded.
fn identities(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
    let mut m = BTreeMap::new();
    for e in t.iter()? {
        let (k, v) = e?;
        let rec: AgentRecord = decode(v.value(), "agents", k.value())?;
        m.insert(
            k.value().as_bytes().to_vec(),
            encode(&AgentIdentity::of(&rec))?,
        );
    }
    Ok(m)
}

/// Walk `before` and `after` (one table before and after a write) in key order together and
/// call `f(key, old, new)` for every record that differs, without copying the others: a write
/// compares a table of many records in a few microseconds per thousand.
fn merge_diff<K: Key + 'static, V: Value + 'static>(
    before: Option<&impl ReadableTable<K, V>>,
    after: &impl ReadableTable<K, V>,
    mut f: impl FnMut(&[u8], Option<&[u8]>, Option<&[u8]>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    type Entry<'a, K, V> = (redb::AccessGuard<'a, K>, redb::AccessGuard<'a, V>);
    fn step<'a, K: Key + 'static, V: Value + 'static>(
        it: &mut Option<redb::Range<'a, K, V>>,
    ) -> Result<Option<Entry<'a, K, V>>, StoreError> {
        match it.as_mut().and_then(Iterator::next) {
            Some(r) => Ok(Some(r?)),
            None => Ok(None),
        }
    }
    let mut bi = match before {
        Some(t) => Some(t.iter()?),
        None => None,
    };
    let mut ai = Some(after.iter()?);
    let mut b = step(&mut bi)?;
    let mut a = step(&mut ai)?;
    loop {
        let order = match (&b, &a) {
            (None, None) => return Ok(()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((bk, _)), Some((ak, _))) => K::compare(
                K::as_bytes(&bk.value()).as_ref(),
                K::as_bytes(&ak.value()).as_ref(),
            ),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some((bk, bv)) = &b {
                    f(
                        K::as_bytes(&bk.value()).as_ref(),
                        Some(V::as_bytes(&bv.value()).as_ref()),
                        None,
                    )?;
                }
                b = step(&mut bi)?;
            }
            std::cmp::Ordering::Greater => {
                if let Some((ak, av)) = &a {
                    f(
                        K::as_bytes(&ak.value()).as_ref(),
                        None,
                        Some(V::as_bytes(&av.value()).as_ref()),
                    )?;
                }
                a = step(&mut ai)?;
            }
            std::cmp::Ordering::Equal => {
                if let (Some((_, bv)), Some((ak, av))) = (&b, &a) {
                    let (bval, aval) = (bv.value(), av.value());
                    let (old, new) = (V::as_bytes(&bval), V::as_bytes(&aval));
                    if old.as_ref() != new.as_ref() {
                        f(
                            K::as_bytes(&ak.value()).as_ref(),
                            Some(old.as_ref()),
                            Some(new.as_ref()),
                        )?;
                    }
                }
                b = step(&mut bi)?;
                a = step(&mut ai)?;
            }
        }
    }
}

/// What a write changed in the replicated tables of `scope` (`meta`'s keys and the agents'
/// identities included), walking each table before and after together.
fn scoped_changes(
    before: &ReadTransaction,
    txn: &WriteTransaction,
    scope: Scope,
) -> Result<Vec<Change>, StoreError> {
    fn one<K: Key + 'static, V: Value + 'static>(
        (before, txn): (&ReadTransaction, &WriteTransaction),
        def: TableDefinition<K, V>,
        (out, scope): (&mut Vec<Change>, Scope),
    ) -> Result<(), StoreError> {
        if !scope.has(def.name()) {
            return Ok(());
        }
        let b = match before.open_table(def) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let a = txn.open_table(def)?;
        merge_diff(b.as_ref(), &a, |k, old, new| {
            out.push(Change {
                table: def.name().to_string(),
                key: k.to_vec(),
                value: new.map(<[u8]>::to_vec),
                before: old.map(<[u8]>::to_vec),
            });
            Ok(())
        })
    }
    let mut out = Vec::new();
    for_each_table!(one, (before, txn), (&mut out, scope));
    if scope.has(IDENTITIES) {
        out.extend(identity_changes(before, txn)?);
    }
    if scope.has(META_TABLE) {
        let b = read_tables_r(before, Scope::Only(&[META_TABLE]), false)?;
        let a = read_tables_w(txn, Scope::Only(&[META_TABLE]), false)?;
        out.extend(diff(&b, &a));
    }
    Ok(out)
}

/// The identities a write changed: the `agents` records whose bytes differ are decoded, the
/// others (most, in a fleet) only compared.
fn identity_changes(
    before: &ReadTransaction,
    txn: &WriteTransaction,
) -> Result<Vec<Change>, StoreError> {
    let b = match before.open_table(AGENTS) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let a = txn.open_table(AGENTS)?;
    let ident = |raw: &[u8], key: &[u8]| -> Result<Vec<u8>, StoreError> {
        let id = String::from_utf8_lossy(key);
        let rec: AgentRecord = decode(raw, "agents", &*id)?;
        Ok(encode(&AgentIdentity::of(&rec))?)
    };
    let mut out = Vec::new();
    merge_diff(b.as_ref(), &a, |k, old, new| {
        let before = old.map(|o| ident(o, k)).transpose()?;
        let value = new.map(|n| ident(n, k)).transpose()?;
        if before != value {
            out.push(Change {
                table: IDENTITIES.to_string(),
                key: k.to_vec(),
                value,
                before,
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// Another replica changed an agent's identity: update this replica's record of it (or make
/// one: the agent enrolled there), or remove it.
fn apply_identity(txn: &WriteTransaction, c: &Change) -> Result<(), StoreError> {
    let id = std::str::from_utf8(&c.key).map_err(|_| malformed(c))?;
    let mut agents = txn.open_table(AGENTS)?;
    let Some(v) = &c.value else {
        agents.remove(id)?;
        return Ok(());
    };
    let ident: AgentIdentity = decode(v, IDENTITIES, id)?;
    let mut rec = match agents.get(id)? {
        Some(old) => decode(old.value(), "agents", id)?,
        None => AgentRecord {
            id: id.to_string(),
            labels: Vec::new(),
            enrolled_ms: 0,
            cert_serial: String::new(),
            cert_fingerprint: String::new(),
            revoked_ms: None,
            last_seen_ms: None,
            software_version: String::new(),
            active: Vec::new(),
            committed_seq: 0,
            hostname: String::new(),
            cert_not_after_ms: None,
            previous_cert_fingerprint: None,
            pinned_roots: None,
            clock_offset: None,
            telemetry: None,
            name: None,
            decommissioned_ms: None,
        },
    };
    ident.apply_to(&mut rec);
    agents.insert(id, encode(&rec)?.as_slice())?;
    Ok(())
}

fn malformed(c: &Change) -> StoreError {
    StoreError::Refused(format!(
        "replicated record of table {:?} ({} key bytes) is malformed",
        c.table,
        c.key.len()
    ))
}

/// Whether `table` names a replicated table.
pub fn is_replicated_table(table: &str) -> bool {
    table == META_TABLE
        || [
            WORKFLOWS.name(),
            VERSIONS.name(),
            PENDING.name(),
            ROOTS.name(),
            POOLS.name(),
            DECISIONS.name(),
            ROLLOUTS.name(),
            ROLLOUT_STATE.name(),
            ROLLOUT_AGENTS.name(),
            OPERATORS.name(),
            TOKENS.name(),
            ROLLOUT_EVENTS.name(),
            PRESENCE.name(),
            AGENT_NAMES.name(),
            ALERT_EVENTS.name(),
            SILENCES.name(),
            IDENTITIES,
        ]
        .contains(&table)
}

/// The local half of a direct write in HA mode: the state it began from, and what it may
/// change.
pub(super) struct Before(ReadTransaction, Scope);

impl Store {
    /// Attach the canonical store: from now on every direct write that changes a replicated
    /// table is published before it commits. Once per store.
    pub fn set_publisher(&self, p: std::sync::Arc<dyn Publisher>) {
        let _ = self.publisher.set(p);
    }

    /// The revision of the canonical state this store's replicated tables are a copy of (0:
    /// never replicated).
    pub fn replica_rev(&self) -> Result<u64, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(match txn.open_table(META) {
            Ok(t) => t.get(META_REPLICA_REV)?.map_or(0, |v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(e.into()),
        })
    }

    /// The replicated tables as they are now.
    pub fn replicated_snapshot(&self) -> Result<Snapshot, StoreError> {
        read_tables_r(&self.db().begin_read()?, Scope::All, true)
    }

    /// The state a direct write begins from, when there is a publisher to compare it with.
    pub(super) fn before_write(&self, scope: Scope) -> Result<Option<Before>, StoreError> {
        match self.publisher.get() {
            Some(_) => Ok(Some(Before(self.db().begin_read()?, scope))),
            None => Ok(None),
        }
    }

    /// Publish what `txn` changed in the replicated tables since `before`; on success record
    /// the new revision in `txn` (which the caller then commits). Nothing to publish: nothing
    /// done.
    pub(super) fn publish_write(
        &self,
        before: &Before,
        txn: &WriteTransaction,
    ) -> Result<(), StoreError> {
        let Some(p) = self.publisher.get() else {
            return Ok(());
        };
        let scope = before.1;
        let changes = scoped_changes(&before.0, txn, scope)?;
        if cfg!(debug_assertions) && scope != Scope::All {
            let all = diff(
                &read_tables_r(&before.0, Scope::All, true)?,
                &read_tables_w(txn, Scope::All, true)?,
            );
            if let Some(c) = all.iter().find(|c| !scope.has(&c.table)) {
                return Err(StoreError::Db(super::error::DbError::Inconsistent(
                    format!(
                        "a direct write scoped to {scope:?} changed replicated table {}",
                        c.table
                    ),
                )));
            }
        }
        if cfg!(debug_assertions) {
            // The walk in key order finds what the plain comparison of copies finds.
            let sorted = |mut v: Vec<Change>| {
                v.sort_by(|a, b| (&a.table, &a.key).cmp(&(&b.table, &b.key)));
                v
            };
            let plain = diff(
                &read_tables_r(&before.0, scope, true)?,
                &read_tables_w(txn, scope, true)?,
            );
            if sorted(plain) != sorted(changes.clone()) {
                return Err(StoreError::Db(super::error::DbError::Inconsistent(
                    "the changes found by walking the tables differ from a comparison of copies"
                        .into(),
                )));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        // The copy's revision is not advanced: revisions of other replicas before this one may
        // not be applied yet; the watch brings them, and this one, in order.
        p.publish(current_fence(), &changes)?;
        Ok(())
    }

    /// Apply what the canonical store committed at revision `rev` (another replica's write,
    /// from the watch). A revision this copy already holds is skipped (false).
    pub fn apply_replicated(&self, rev: u64, changes: &[Change]) -> Result<bool, StoreError> {
        let txn = self.begin_txn()?;
        let at = txn
            .open_table(META)?
            .get(META_REPLICA_REV)?
            .map_or(0, |v| v.value());
        if rev <= at {
            txn.abort()?;
            return Ok(false);
        }
        apply(&txn, changes)?;
        txn.open_table(META)?.insert(META_REPLICA_REV, rev)?;
        txn.commit()?;
        self.config.invalidate();
        Ok(true)
    }

    /// Replace the replicated tables by the canonical state `all` at revision `rev` (a replica
    /// starting, or one that fell behind the watch's history).
    ///
    /// A store that was never replicated and holds desired state other than the canonical
    /// one is refused: that state would be lost (start the replica that holds it first, so it
    /// seeds etcd, or move it aside).
    pub fn load_replicated(&self, rev: u64, all: &Snapshot) -> Result<(), StoreError> {
        let txn = self.begin_txn()?;
        let at = txn
            .open_table(META)?
            .get(META_REPLICA_REV)?
            .map_or(0, |v| v.value());
        let mine = read_tables_w(&txn, Scope::All, true)?;
        let changes = diff(&mine, all);
        if at == 0 && !changes.is_empty() && mine.values().any(|t| !t.is_empty()) {
            txn.abort()?;
            return Err(StoreError::Refused(format!(
                "this store holds desired state (workflows, pools, rollouts, operators or \
                 tokens) that differs from the HA cluster's in etcd ({} records differ); \
                 refusing to overwrite it: start the replica that holds the fleet's state \
                 first, or move this data directory aside",
                changes.len()
            )));
        }
        apply(&txn, &changes)?;
        txn.open_table(META)?.insert(META_REPLICA_REV, rev)?;
        txn.commit()?;
        self.config.invalidate();
        Ok(())
    }

    /// The queue a leader's driver reads and consumes: `local`, this store's own (embedded), or
    /// in HA mode `shared`, the replicated one every replica forwards its `local` to.
    pub(super) fn queue_table(
        &self,
        local: TableDefinition<'static, u64, &'static [u8]>,
        shared: TableDefinition<'static, u64, &'static [u8]>,
    ) -> TableDefinition<'static, u64, &'static [u8]> {
        if self.publisher.get().is_some() {
            shared
        } else {
            local
        }
    }

    /// HA mode: move up to `limit` entries of this replica's queue `from` to the replicated
    /// queue `to`, numbered by `meta`'s `seq_key`, in one write (published to etcd before it
    /// commits: an entry is in exactly one of the two). How many moved; 0 in embedded mode.
    pub(super) fn forward_queue(
        &self,
        from: TableDefinition<u64, &[u8]>,
        to: TableDefinition<u64, &[u8]>,
        seq_key: &str,
        limit: usize,
    ) -> Result<usize, StoreError> {
        if self.publisher.get().is_none() {
            return Ok(0);
        }
        let txn =
            self.begin_write_in(Scope::Only(&["rollout_events", "alert_events", META_TABLE]))?;
        let moved = {
            let mut inbox = txn.open_table(from)?;
            let mut queue = txn.open_table(to)?;
            let mut meta = txn.open_table(META)?;
            let mut seq = meta.get(seq_key)?.map_or(0, |v| v.value());
            let mut moved = Vec::new();
            for e in inbox.iter()?.take(limit) {
                let (k, v) = e?;
                seq += 1;
                queue.insert(seq, v.value())?;
                moved.push(k.value());
            }
            for k in &moved {
                inbox.remove(*k)?;
            }
            meta.insert(seq_key, seq)?;
            moved.len()
        };
        if moved == 0 {
            txn.abort()?;
            return Ok(0);
        }
        txn.commit()?;
        Ok(moved)
    }

    /// Record that this store's replicated tables are the canonical state at `rev` (this
    /// replica seeded an empty etcd with them).
    pub fn mark_replicated(&self, rev: u64) -> Result<(), StoreError> {
        let txn = self.begin_txn()?;
        txn.open_table(META)?.insert(META_REPLICA_REV, rev)?;
        txn.commit()?;
        Ok(())
    }
}
