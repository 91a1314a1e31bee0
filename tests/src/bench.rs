//! Shared by the benchmarks that seed a hub store directly (outpost-firingbench,
//! outpost-storebench, outpost-consolebench): played agents enrolled without the network, and
//! runs ingested in batches.

use outpost_common::record::{
    OutboxEntry, RunKind, RunRecord, RunState, StatusEvent, TaskInstanceRecord, TaskState,
};
use outpost_hub::store::{AgentRecord, Store};

/// The ids of `n` played agents (`agent-` and 16 hex digits, like real ones).
pub fn agent_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("agent-{i:016x}")).collect()
}

/// Enroll a played agent `id` in `store` with a fresh single-use token.
pub fn enroll_played_agent(store: &Store, id: &str) -> anyhow::Result<()> {
    let (tid, secret) = store.create_token(vec![], i64::MAX, "bench", 0)?;
    store.enroll(
        &tid,
        &secret,
        AgentRecord {
            id: id.to_string(),
            labels: vec![],
            enrolled_ms: 1,
            cert_serial: "01".into(),
            cert_fingerprint: "ff".into(),
            revoked_ms: None,
            last_seen_ms: None,
            software_version: "bench".into(),
            active: vec![],
            committed_seq: 0,
            hostname: "h".into(),
            clock_offset: None,
            telemetry: None,
            cert_not_after_ms: None,
            previous_cert_fingerprint: None,
            pinned_roots: None,
            name: None,
            decommissioned_ms: None,
        },
        1,
    )?;
    Ok(())
}

/// Virtual time: one run every 100 ms of schedule, from this instant.
pub const T0: i64 = 1_700_000_000_000;
pub const STEP_MS: i64 = 100;

/// Seeds runs into a hub store through its own ingest (`Store::ingest_at`, the path the QUIC
/// driver takes): agents take turns with one batch each; workflows `wf00`, `wf01`, … in turn;
/// one task instance (`main`) per run; one run in a hundred failed.
pub struct RunSeeder {
    /// The agents (enrolled already).
    pub agents: Vec<String>,
    /// How many workflows the runs cycle through.
    pub workflows: usize,
    seqs: Vec<u64>,
    /// Runs made so far.
    pub made: u64,
}

impl RunSeeder {
    /// A seeder for `agents` cycling through `workflows` workflows.
    pub fn new(agents: Vec<String>, workflows: usize) -> RunSeeder {
        RunSeeder {
            seqs: vec![0; agents.len()],
            agents,
            workflows: workflows.max(1),
            made: 0,
        }
    }

    /// Ingest runs up to `upto` in all.
    pub fn seed(&mut self, store: &Store, upto: u64, batch: usize) -> anyhow::Result<()> {
        while self.made < upto {
            let a = (self.made as usize / batch) % self.agents.len();
            let id = &self.agents[a];
            let mut entries = Vec::with_capacity(batch * 2);
            for _ in 0..batch.min((upto - self.made) as usize) {
                let n = self.made;
                self.made += 1;
                let at = T0 + n as i64 * STEP_MS;
                let wf = format!("wf{:02}", n as usize % self.workflows);
                let run_id = format!("run-{n:010}");
                let failed = n % 100 == 7;
                let state = if failed {
                    RunState::Failed
                } else {
                    RunState::Succeeded
                };
                self.seqs[a] += 1;
                entries.push(OutboxEntry {
                    seq: self.seqs[a],
                    event: StatusEvent::Task(TaskInstanceRecord {
                        run_id: run_id.clone(),
                        task_id: "main".into(),
                        state: if failed {
                            TaskState::Failed
                        } else {
                            TaskState::Succeeded
                        },
                        attempts: vec![],
                        outputs: vec![],
                        retry_at_ms: None,
                        updated_ms: at + 50,
                    }),
                });
                self.seqs[a] += 1;
                entries.push(OutboxEntry {
                    seq: self.seqs[a],
                    event: StatusEvent::Run(RunRecord {
                        run_id,
                        workflow: wf,
                        version: 1,
                        kind: RunKind::Scheduled,
                        scheduled_ms: at,
                        state,
                        params: vec![],
                        created_ms: at,
                        started_ms: Some(at),
                        ended_ms: Some(at + 60),
                        agent_id: None,
                        skip_reason: None,
                    }),
                });
            }
            store.ingest_at(id, &entries, T0 + self.made as i64 * STEP_MS)?;
        }
        Ok(())
    }
}
