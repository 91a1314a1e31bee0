//! The shared run history in PostgreSQL (`[ha] postgres`): the [`SharedHistory`] the store
//! routes ingest and history reads to (`store/history.rs`).
//!
//! Tables (created at start-up, under an advisory lock so replicas starting together do not
//! race): `outpost_agent_seq` (each agent's committed status sequence), `outpost_runs` (the
//! latest record of each run, with the columns the listing filters and orders by),
//! `outpost_tasks`, `outpost_missed`. Records are stored as the hub's own encoding (the same
//! bytes as in redb), so a replica of another version decodes them as it decodes its store.
//! Text columns collate as "C": the listing's order and its cursor are the byte order the
//! embedded store pages by.
//!
//! The store's callers are synchronous (the group commit, `spawn_blocking`); each call runs
//! its statements on the hub's runtime and waits (`block`). A connection is lent by a pool
//! and checked before it is lent again; one whose ingest did not commit is closed, never lent
//! with its transaction open.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use outpost_common::record::{
    MissedFirings, RunKind, RunRecord, StatusEvent, TaskInstanceRecord, TaskState, UnixMillis,
};
use outpost_common::store::decode;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::firings::watch::Reported;
use crate::store::{
    HistoryLock, HubRun, IngestBatch, RetentionPolicy, RetentionReport, RunQuery, SharedHistory,
    StoreError,
};

/// The schema, created once per database (every statement is idempotent).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS outpost_agent_seq (
    agent text COLLATE "C" PRIMARY KEY,
    committed_seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS outpost_runs (
    agent text COLLATE "C" NOT NULL,
    run_id text COLLATE "C" NOT NULL,
    workflow text COLLATE "C" NOT NULL,
    state text NOT NULL,
    manual boolean NOT NULL,
    scheduled_ms bigint NOT NULL,
    created_ms bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (agent, run_id)
);
CREATE INDEX IF NOT EXISTS outpost_runs_created ON outpost_runs (created_ms, agent, run_id);
CREATE INDEX IF NOT EXISTS outpost_runs_workflow
    ON outpost_runs (workflow, created_ms, agent, run_id);
CREATE INDEX IF NOT EXISTS outpost_runs_agent
    ON outpost_runs (agent, workflow, created_ms, run_id);
CREATE INDEX IF NOT EXISTS outpost_runs_state ON outpost_runs (state, created_ms, agent, run_id);
CREATE INDEX IF NOT EXISTS outpost_runs_id ON outpost_runs (run_id);
CREATE INDEX IF NOT EXISTS outpost_runs_instant
    ON outpost_runs (agent, workflow, scheduled_ms) WHERE NOT manual;
CREATE TABLE IF NOT EXISTS outpost_tasks (
    agent text COLLATE "C" NOT NULL,
    run_id text COLLATE "C" NOT NULL,
    task_id text COLLATE "C" NOT NULL,
    failed boolean NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (agent, run_id, task_id)
);
CREATE TABLE IF NOT EXISTS outpost_missed (
    agent text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    workflow text COLLATE "C" NOT NULL,
    first_ms bigint NOT NULL,
    last_ms bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (agent, seq)
);
"#;

/// Lock an agent's sequence row (created at 0 if new) and read it.
const LOCK_SEQ: &str = "INSERT INTO outpost_agent_seq AS s (agent, committed_seq) VALUES ($1, 0) \
     ON CONFLICT (agent) DO UPDATE SET committed_seq = s.committed_seq RETURNING committed_seq";
/// Of an agent's runs, those with a task that ended failed.
const FAILED_TASKS: &str = "SELECT DISTINCT run_id FROM outpost_tasks \
     WHERE agent = $1 AND run_id = ANY($2) AND failed";
/// A batch's runs (each run's latest report).
const UPSERT_RUNS: &str = "INSERT INTO outpost_runs AS r \
     (agent, run_id, workflow, state, manual, scheduled_ms, created_ms, record) \
     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], \
     $6::int8[], $7::int8[], $8::bytea[]) \
     ON CONFLICT (agent, run_id) DO UPDATE SET workflow = EXCLUDED.workflow, \
     state = EXCLUDED.state, manual = EXCLUDED.manual, scheduled_ms = EXCLUDED.scheduled_ms, \
     created_ms = EXCLUDED.created_ms, record = EXCLUDED.record";
/// A batch's task instances.
const UPSERT_TASKS: &str = "INSERT INTO outpost_tasks AS t (agent, run_id, task_id, failed, record) \
     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bool[], $5::bytea[]) \
     ON CONFLICT (agent, run_id, task_id) DO UPDATE SET \
     failed = EXCLUDED.failed, record = EXCLUDED.record";
/// A batch's missed-firing records (kept under their seq, never rewritten).
const INSERT_MISSED: &str = "INSERT INTO outpost_missed \
     (agent, seq, workflow, first_ms, last_ms, record) \
     SELECT $1, * FROM unnest($2::int8[], $3::text[], $4::int8[], $5::int8[], $6::bytea[]) \
     ON CONFLICT (agent, seq) DO NOTHING";
/// The agent's new committed sequence.
const SET_SEQ: &str = "UPDATE outpost_agent_seq SET committed_seq = $2 WHERE agent = $1";

/// The scheduled instants an agent ran a workflow at in a span (missed-firing detection).
const REPORTED_RUNS: &str = "SELECT scheduled_ms FROM outpost_runs WHERE agent = $1 \
     AND workflow = $2 AND NOT manual AND scheduled_ms BETWEEN $3 AND $4 ORDER BY scheduled_ms";
/// The spans an agent recorded as missed for a workflow, overlapping a span.
const REPORTED_MISSED: &str = "SELECT first_ms, last_ms FROM outpost_missed WHERE agent = $1 \
     AND workflow = $2 AND last_ms >= $3 AND first_ms <= $4 ORDER BY seq";

/// The advisory lock the schema is created under (any constant the hub alone uses).
const SCHEMA_LOCK: i64 = 0x6f75_7470_6f73_7401;

/// Connections one replica holds at most.
const POOL_SIZE: usize = 32;

/// The shared run history in PostgreSQL.
pub struct PgHistory {
    pool: Pool,
    rt: tokio::runtime::Handle,
}

fn pg_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::History(e.to_string())
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Refused(format!("{what} {v} is out of range")))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl PgHistory {
    /// A pool of connections to `conninfo` (libpq's `key=value` or `postgresql://` form); no
    /// connection is made yet. Called inside the hub's runtime.
    pub fn new(conninfo: &str) -> Result<PgHistory, String> {
        let mut cfg: tokio_postgres::Config = conninfo
            .parse()
            .map_err(|e| format!("[ha] postgres: {e}"))?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(5));
        }
        cfg.application_name("outpost-hub");
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("[ha] postgres: {e}"))?;
        Ok(PgHistory {
            pool,
            rt: tokio::runtime::Handle::current(),
        })
    }

    /// Create the tables if they are missing (once, whichever replica comes first).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pg_err)?;
        let t = c.transaction().await.map_err(pg_err)?;
        t.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(pg_err)?;
        // "already exists, skipping" on every start but the first is no news.
        t.batch_execute("SET LOCAL client_min_messages = warning")
            .await
            .map_err(pg_err)?;
        t.batch_execute(SCHEMA).await.map_err(pg_err)?;
        t.commit().await.map_err(pg_err)
    }

    /// Run `f` on the hub's runtime and wait for it (from a blocking thread, or from a runtime
    /// worker, which is handed over to the others meanwhile).
    fn block<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.rt.block_on(f)),
            Err(_) => self.rt.block_on(f),
        }
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pg_err)
    }
}

fn decode_run(agent: String, bytes: &[u8]) -> Result<HubRun, StoreError> {
    let record: RunRecord = decode(bytes, "outpost_runs", &agent)?;
    Ok(HubRun {
        agent_id: agent,
        record,
    })
}

impl SharedHistory for PgHistory {
    fn committed_seq(&self, agent: &str) -> Result<u64, StoreError> {
        self.block(async {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT committed_seq FROM outpost_agent_seq WHERE agent = $1",
                    &[&agent],
                )
                .await
                .map_err(pg_err)?;
            Ok(row.map_or(0, |r| to_u64(r.get(0))))
        })
    }

    fn lock_agent<'a>(
        &'a self,
        agent: &str,
        ending: &[&str],
    ) -> Result<Box<dyn HistoryLock + 'a>, StoreError> {
        self.block(async {
            let c = self.client().await?;
            let lock_row = c.prepare_cached(LOCK_SEQ).await.map_err(pg_err)?;
            let failed = c.prepare_cached(FAILED_TASKS).await.map_err(pg_err)?;
            // One round trip: the three are sent together and run in order. The first
            // statement takes the row's lock and reads it, creating it at 0 if new.
            let (_, row, failed) = tokio::try_join!(
                c.batch_execute("BEGIN"),
                async { c.query_one(&lock_row, &[&agent]).await },
                async {
                    match ending.is_empty() {
                        true => Ok(Vec::new()),
                        false => c.query(&failed, &[&agent, &ending]).await,
                    }
                },
            )
            .map_err(pg_err)?;
            Ok(Box::new(PgLock {
                history: self,
                seq: to_u64(row.get(0)),
                failed: failed.into_iter().map(|r| r.get(0)).collect(),
                client: Some(c),
            }) as Box<dyn HistoryLock + 'a>)
        })
    }

    fn runs(&self, q: &RunQuery) -> Result<Vec<HubRun>, StoreError> {
        let since = q.since_ms.unwrap_or(i64::MIN);
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let state = q.state.map(|s| s.as_str());
        let mut sql = String::from("SELECT agent, record FROM outpost_runs WHERE created_ms >= $1");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&since];
        if let Some(a) = &q.agent {
            params.push(a);
            sql.push_str(&format!(" AND agent = ${}", params.len()));
        }
        if let Some(w) = &q.workflow {
            params.push(w);
            sql.push_str(&format!(" AND workflow = ${}", params.len()));
        }
        if let Some(s) = &state {
            params.push(s);
            sql.push_str(&format!(" AND state = ${}", params.len()));
        }
        if let Some(c) = &q.before {
            params.push(&c.created_ms);
            params.push(&c.agent);
            params.push(&c.run_id);
            let n = params.len();
            sql.push_str(&format!(
                " AND (created_ms, agent, run_id) < (${}, ${}, ${})",
                n - 2,
                n - 1,
                n
            ));
        }
        params.push(&limit);
        sql.push_str(&format!(
            " ORDER BY created_ms DESC, agent DESC, run_id DESC LIMIT ${}",
            params.len()
        ));
        self.block(async {
            let c = self.client().await?;
            let rows = c.query(&sql, &params).await.map_err(pg_err)?;
            rows.into_iter()
                .map(|r| decode_run(r.get(0), r.get::<_, &[u8]>(1)))
                .collect()
        })
    }

    fn run(
        &self,
        agent: &str,
        run_id: &str,
    ) -> Result<Option<(RunRecord, Vec<TaskInstanceRecord>)>, StoreError> {
        self.block(async {
            let c = self.client().await?;
            let Some(row) = c
                .query_opt(
                    "SELECT record FROM outpost_runs WHERE agent = $1 AND run_id = $2",
                    &[&agent, &run_id],
                )
                .await
                .map_err(pg_err)?
            else {
                return Ok(None);
            };
            let run: RunRecord = decode(row.get::<_, &[u8]>(0), "outpost_runs", run_id)?;
            let tasks = c
                .query(
                    "SELECT record FROM outpost_tasks WHERE agent = $1 AND run_id = $2 \
                     ORDER BY task_id",
                    &[&agent, &run_id],
                )
                .await
                .map_err(pg_err)?
                .into_iter()
                .map(|r| decode(r.get::<_, &[u8]>(0), "outpost_tasks", run_id).map_err(Into::into))
                .collect::<Result<Vec<TaskInstanceRecord>, StoreError>>()?;
            Ok(Some((run, tasks)))
        })
    }

    fn run_agents(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        self.block(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT agent FROM outpost_runs WHERE run_id = $1 ORDER BY agent",
                    &[&run_id],
                )
                .await
                .map_err(pg_err)?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    fn run_had_failed_task(&self, agent: &str, run_id: &str) -> Result<bool, StoreError> {
        self.block(async {
            let c = self.client().await?;
            let row = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM outpost_tasks \
                     WHERE agent = $1 AND run_id = $2 AND failed)",
                    &[&agent, &run_id],
                )
                .await
                .map_err(pg_err)?;
            Ok(row.get(0))
        })
    }

    fn reported_firings(
        &self,
        agent: &str,
        workflow: &str,
        start: UnixMillis,
        end: UnixMillis,
    ) -> Result<Reported, StoreError> {
        // Asked for every watched (agent, workflow) at each evaluation: both statements are
        // prepared once per connection and sent together.
        self.block(async {
            let c = self.client().await?;
            let ran = c.prepare_cached(REPORTED_RUNS).await.map_err(pg_err)?;
            let missed = c.prepare_cached(REPORTED_MISSED).await.map_err(pg_err)?;
            let params: [&(dyn ToSql + Sync); 4] = [&agent, &workflow, &start, &end];
            let (ran, missed) = tokio::try_join!(async { c.query(&ran, &params).await }, async {
                c.query(&missed, &params).await
            },)
            .map_err(pg_err)?;
            let ran = ran.into_iter().map(|r| r.get(0)).collect();
            let missed = missed.into_iter().map(|r| (r.get(0), r.get(1))).collect();
            Ok(Reported { ran, missed })
        })
    }

    fn missed(&self, agent: &str) -> Result<Vec<(u64, MissedFirings)>, StoreError> {
        self.block(async {
            let c = self.client().await?;
            c.query(
                "SELECT seq, record FROM outpost_missed WHERE agent = $1 ORDER BY seq",
                &[&agent],
            )
            .await
            .map_err(pg_err)?
            .into_iter()
            .map(|r| {
                let m: MissedFirings = decode(r.get::<_, &[u8]>(1), "outpost_missed", agent)?;
                Ok((to_u64(r.get(0)), m))
            })
            .collect()
        })
    }

    fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now_ms: UnixMillis,
        held: &[String],
    ) -> Result<RetentionReport, StoreError> {
        if !policy.enabled() || policy.batch == 0 {
            return Ok(RetentionReport::default());
        }
        let recent = now_ms.saturating_sub(policy.keep_recent_ms);
        // Past `max_age` (or nothing: MIN), never younger than `keep_recent`.
        let cutoff = policy
            .max_age_ms
            .map_or(i64::MIN, |age| now_ms.saturating_sub(age).min(recent));
        let max = policy
            .max_runs_per_workflow
            .map_or(i64::MAX, |m| i64::try_from(m).unwrap_or(i64::MAX));
        let batch = i64::try_from(policy.batch).unwrap_or(i64::MAX);
        self.block(async {
            let c = self.client().await?;
            let row = c
                .query_one(
                    "WITH victims AS (SELECT agent, run_id FROM ( \
                       (SELECT agent, run_id FROM outpost_runs \
                        WHERE created_ms < $1 AND state NOT IN ('queued', 'running') \
                        AND workflow <> ALL($4) ORDER BY created_ms LIMIT $3) \
                       UNION \
                       (SELECT agent, run_id FROM (SELECT agent, run_id, state, workflow, \
                        created_ms, row_number() OVER (PARTITION BY agent, workflow \
                        ORDER BY created_ms DESC, run_id DESC) AS n FROM outpost_runs) r \
                        WHERE n > $2 AND created_ms < $5 AND state NOT IN ('queued', 'running') \
                        AND workflow <> ALL($4) LIMIT $3)) u LIMIT $3), \
                     t AS (DELETE FROM outpost_tasks x USING victims v \
                        WHERE x.agent = v.agent AND x.run_id = v.run_id RETURNING 1), \
                     r AS (DELETE FROM outpost_runs x USING victims v \
                        WHERE x.agent = v.agent AND x.run_id = v.run_id RETURNING 1) \
                     SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM t)",
                    &[&cutoff, &max, &batch, &held, &recent],
                )
                .await
                .map_err(pg_err)?;
            let (runs, tasks): (i64, i64) = (row.get(0), row.get(1));
            let runs = usize::try_from(runs).unwrap_or(0);
            Ok(RetentionReport {
                runs,
                tasks: usize::try_from(tasks).unwrap_or(0),
                more: runs >= policy.batch,
            })
        })
    }
}

/// An agent's row of `outpost_agent_seq`, locked in an open transaction.
struct PgLock<'a> {
    history: &'a PgHistory,
    /// `None` once committed.
    client: Option<Object>,
    seq: u64,
    failed: HashSet<String>,
}

impl PgLock<'_> {
    fn conn(&self) -> Result<&Object, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::History("the ingest's connection is gone".into()))
    }
}

impl Drop for PgLock<'_> {
    fn drop(&mut self) {
        // Not committed: close the connection (PostgreSQL rolls its transaction back) rather
        // than lend it again with the transaction open.
        if let Some(c) = self.client.take() {
            drop(Object::take(c));
        }
    }
}

impl HistoryLock for PgLock<'_> {
    fn committed_seq(&self) -> u64 {
        self.seq
    }

    fn failed_task_runs(&self) -> &HashSet<String> {
        &self.failed
    }

    fn commit(mut self: Box<Self>, batch: &IngestBatch<'_>) -> Result<(), StoreError> {
        let rows = Rows::of(batch)?;
        let seq = to_i64(batch.seq, "status sequence")?;
        let (runs, tasks): (Vec<&str>, Vec<&str>) = rows.task_keys.iter().copied().unzip();
        let c = self.conn()?;
        self.history.block(async {
            let upsert_runs = c.prepare_cached(UPSERT_RUNS).await.map_err(pg_err)?;
            let upsert_tasks = c.prepare_cached(UPSERT_TASKS).await.map_err(pg_err)?;
            let insert_missed = c.prepare_cached(INSERT_MISSED).await.map_err(pg_err)?;
            let set_seq = c.prepare_cached(SET_SEQ).await.map_err(pg_err)?;
            // One round trip: the statements and the COMMIT are sent together and run in order.
            // If one fails the transaction is aborted, the COMMIT only ends it, and the
            // failure is returned: nothing was stored.
            tokio::try_join!(
                async {
                    if rows.run_ids.is_empty() {
                        return Ok(0);
                    }
                    c.execute(
                        &upsert_runs,
                        &[
                            &batch.agent,
                            &rows.run_ids,
                            &rows.workflows,
                            &rows.states,
                            &rows.manual,
                            &rows.scheduled,
                            &rows.created,
                            &rows.run_records,
                        ],
                    )
                    .await
                },
                async {
                    if runs.is_empty() {
                        return Ok(0);
                    }
                    c.execute(
                        &upsert_tasks,
                        &[
                            &batch.agent,
                            &runs,
                            &tasks,
                            &rows.task_failed,
                            &rows.task_records,
                        ],
                    )
                    .await
                },
                async {
                    if rows.missed_seq.is_empty() {
                        return Ok(0);
                    }
                    c.execute(
                        &insert_missed,
                        &[
                            &batch.agent,
                            &rows.missed_seq,
                            &rows.missed_workflow,
                            &rows.missed_first,
                            &rows.missed_last,
                            &rows.missed_records,
                        ],
                    )
                    .await
                },
                async { c.execute(&set_seq, &[&batch.agent, &seq]).await },
                c.batch_execute("COMMIT"),
            )
            .map_err(pg_err)?;
            Ok(())
        })?;
        // Committed: the connection goes back to the pool.
        self.client = None;
        Ok(())
    }
}

/// A batch's rows, as the columns of the statements above. A run or task reported twice in a
/// batch is stored once, as its last report (one statement may not update a row twice).
#[derive(Default)]
struct Rows<'a> {
    run_ids: Vec<&'a str>,
    workflows: Vec<&'a str>,
    states: Vec<&'static str>,
    manual: Vec<bool>,
    scheduled: Vec<i64>,
    created: Vec<i64>,
    run_records: Vec<&'a [u8]>,
    task_keys: Vec<(&'a str, &'a str)>,
    task_failed: Vec<bool>,
    task_records: Vec<&'a [u8]>,
    missed_seq: Vec<i64>,
    missed_workflow: Vec<&'a str>,
    missed_first: Vec<i64>,
    missed_last: Vec<i64>,
    missed_records: Vec<&'a [u8]>,
}

impl<'a> Rows<'a> {
    fn of(batch: &'a IngestBatch<'a>) -> Result<Rows<'a>, StoreError> {
        let mut rows = Rows::default();
        let mut run_at: HashMap<&str, usize> = HashMap::new();
        let mut task_at: HashMap<(&str, &str), usize> = HashMap::new();
        for (entry, bytes) in batch.entries.iter().zip(batch.encoded) {
            let Some(bytes) = bytes.as_deref() else {
                continue;
            };
            match &entry.event {
                StatusEvent::Run(r) => {
                    let manual = r.kind == RunKind::Manual;
                    if let Some(&i) = run_at.get(r.run_id.as_str()) {
                        rows.workflows[i] = &r.workflow;
                        rows.states[i] = r.state.as_str();
                        rows.manual[i] = manual;
                        rows.scheduled[i] = r.scheduled_ms;
                        rows.created[i] = r.created_ms;
                        rows.run_records[i] = bytes;
                        continue;
                    }
                    run_at.insert(&r.run_id, rows.run_ids.len());
                    rows.run_ids.push(&r.run_id);
                    rows.workflows.push(&r.workflow);
                    rows.states.push(r.state.as_str());
                    rows.manual.push(manual);
                    rows.scheduled.push(r.scheduled_ms);
                    rows.created.push(r.created_ms);
                    rows.run_records.push(bytes);
                }
                StatusEvent::Task(t) => {
                    let failed = t.state == TaskState::Failed;
                    let key = (t.run_id.as_str(), t.task_id.as_str());
                    if let Some(&i) = task_at.get(&key) {
                        rows.task_failed[i] = failed;
                        rows.task_records[i] = bytes;
                        continue;
                    }
                    task_at.insert(key, rows.task_keys.len());
                    rows.task_keys.push(key);
                    rows.task_failed.push(failed);
                    rows.task_records.push(bytes);
                }
                StatusEvent::Missed(m) => {
                    rows.missed_seq.push(to_i64(entry.seq, "status sequence")?);
                    rows.missed_workflow.push(&m.workflow);
                    rows.missed_first.push(m.first_ms);
                    rows.missed_last.push(m.last_ms);
                    rows.missed_records.push(bytes);
                }
                _ => {}
            }
        }
        Ok(rows)
    }
}
