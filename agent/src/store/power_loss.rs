//! Power-loss tests: the store over a redb storage backend that loses every write not yet
//! synced when the power goes (SQLite's crash harness does the same).
//!
//! [`Disk`] keeps two images: what the process sees (every write applied) and what survives a
//! power loss (the image as of the last `sync_data`), plus the writes since. At crash point N
//! (the Nth write, length change or sync) the power goes: the call fails, and the surviving
//! image is the synced one, optionally with a random subset of the unsynced writes applied, the
//! last of them possibly torn at a 512-byte sector (a disk may write back dirty pages in any
//! order before it loses power). The store is then reopened from the surviving image, and:
//!
//! - it opens;
//! - it holds exactly the state after the last operation that returned (every acknowledged
//!   commit is there), or after the one in flight (a commit is atomic: all or nothing);
//! - the ledger and the outbox agree: the outbox holds exactly the seqs after the acknowledged
//!   one, and for each run still in it, its last `Run` event is the stored run.
//!
//! `cargo test` runs every crash point of one workload, clean and torn (a few hundred);
//! `OUTPOST_SLOW_TESTS=1` runs more workload variants, to at least 10,000 crash points
//! (figures in docs/RELIABILITY.md, "Power loss").

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use outpost_common::record::{
    AttemptOutcome, AttemptRecord, LimitsMode, RunKind, RunRecord, RunState, StatusEvent,
    TaskInstanceRecord, TaskState,
};
use redb::StorageBackend;

use super::{Batch, DbError, Retention, RunFilter, Store, StoreError, WorkflowVersion};

enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Default)]
struct Disk {
    /// What the running process reads.
    current: Vec<u8>,
    /// What survives a power loss: the image at the last sync.
    durable: Vec<u8>,
    /// Writes and length changes since the last sync, in order.
    pending: Vec<Op>,
    /// Mutating calls so far.
    calls: u64,
    /// The power goes at this call.
    crash_at: Option<u64>,
    /// Apply a random subset of the unsynced writes at the crash (else none).
    torn: bool,
    rng: u64,
    /// The image that survived, once the power went.
    survived: Option<Vec<u8>>,
}

impl Disk {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn apply(image: &mut Vec<u8>, op: &Op) {
        match op {
            Op::Write(offset, data) => {
                let start = *offset as usize;
                if image.len() < start + data.len() {
                    image.resize(start + data.len(), 0);
                }
                image[start..start + data.len()].copy_from_slice(data);
            }
            Op::SetLen(len) => image.resize(*len as usize, 0),
        }
    }

    /// Count a mutating call; at the crash point the power goes and the call fails.
    fn tick(&mut self) -> std::io::Result<()> {
        if self.survived.is_some() {
            return Err(std::io::Error::other("the power is off"));
        }
        self.calls += 1;
        if self.crash_at != Some(self.calls) {
            return Ok(());
        }
        let mut image = self.durable.clone();
        if self.torn {
            let pending = std::mem::take(&mut self.pending);
            for op in &pending {
                match self.next_rand() % 4 {
                    0 => {}
                    1 => {
                        if let Op::Write(offset, data) = op {
                            let sectors = data.len().div_ceil(512) as u64;
                            let keep = (self.next_rand() % (sectors + 1)) as usize * 512;
                            let part = data[..keep.min(data.len())].to_vec();
                            Self::apply(&mut image, &Op::Write(*offset, part));
                        }
                    }
                    _ => Self::apply(&mut image, op),
                }
            }
        }
        self.survived = Some(image);
        Err(std::io::Error::other("power lost"))
    }
}

/// A storage backend over a [`Disk`] (shared, so the test can take the surviving image).
#[derive(Clone)]
struct CrashBackend(Arc<Mutex<Disk>>);

impl std::fmt::Debug for CrashBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrashBackend")
    }
}

impl CrashBackend {
    fn new(image: Vec<u8>, crash_at: Option<u64>, torn: bool, seed: u64) -> CrashBackend {
        CrashBackend(Arc::new(Mutex::new(Disk {
            current: image.clone(),
            durable: image,
            crash_at,
            torn,
            rng: seed,
            ..Disk::default()
        })))
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StorageBackend for CrashBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.disk().current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let d = self.disk();
        let start = offset as usize;
        let src = d
            .current
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::other("read past the end"))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut d = self.disk();
        d.tick()?;
        let op = Op::SetLen(len);
        Disk::apply(&mut d.current, &op);
        d.pending.push(op);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut d = self.disk();
        d.tick()?;
        let pending = std::mem::take(&mut d.pending);
        for op in &pending {
            Disk::apply(&mut d.durable, op);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut d = self.disk();
        d.tick()?;
        let op = Op::Write(offset, data.to_vec());
        Disk::apply(&mut d.current, &op);
        d.pending.push(op);
        Ok(())
    }
}

// ---- the workload: the agent's real commit paths ---------------------------------------------

fn run(id: &str, created_ms: i64, state: RunState) -> RunRecord {
    RunRecord {
        run_id: id.to_string(),
        workflow: "wf".into(),
        version: 1,
        kind: RunKind::Scheduled,
        scheduled_ms: created_ms,
        state,
        params: vec![("site".into(), "plant-7".into())],
        created_ms,
        started_ms: (state != RunState::Queued).then_some(created_ms + 1),
        ended_ms: state.is_terminal().then_some(created_ms + 5),
        agent_id: None,
        skip_reason: None,
    }
}

fn task(run_id: &str, state: TaskState, created_ms: i64) -> TaskInstanceRecord {
    let attempts = match state {
        TaskState::Pending => Vec::new(),
        _ => vec![AttemptRecord {
            attempt: 1,
            started_ms: created_ms + 1,
            ended_ms: (state == TaskState::Succeeded).then_some(created_ms + 4),
            pid: Some(4242),
            outcome: (state == TaskState::Succeeded).then_some(AttemptOutcome::Exited(0)),
            reason: None,
            log_path: Some(format!("logs/{run_id}/t.1.log")),
            limits: LimitsMode::None,
            dispatched_ms: None,
        }],
    };
    TaskInstanceRecord {
        run_id: run_id.to_string(),
        task_id: "t".into(),
        state,
        attempts,
        outputs: Vec::new(),
        retry_at_ms: None,
        updated_ms: created_ms + 4,
    }
}

fn batch(events: Vec<StatusEvent>) -> Batch {
    Batch {
        events,
        ..Batch::default()
    }
}

/// One step of the workload: one transaction of the store's public API.
type Step = Box<dyn Fn(&Store) -> Result<(), StoreError>>;

/// The workload's steps.
fn steps(variant: u64) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    out.push(Box::new(|s: &Store| {
        s.commit(Batch {
            workflow_puts: vec![WorkflowVersion {
                name: "wf".into(),
                version: 1,
                content_hash: "h1".into(),
                source: b"name: wf\ntasks:\n  t:\n    command: [/bin/true]\n".to_vec(),
                format: "yaml".into(),
                origin: "hub".into(),
                created_ms: 1,
            }],
            meta_puts: vec![("deploy/wf".into(), b"state".to_vec())],
            ..Batch::default()
        })
        .map(|_| ())
    }));
    let runs = 3 + variant % 4;
    for i in 0..runs {
        let id = format!("wf@v1@r{variant}-{i}");
        let created = 1_000 * (i as i64 + 1);
        let (a, b, c) = (id.clone(), id.clone(), id.clone());
        out.push(Box::new(move |s: &Store| {
            let mut b = batch(vec![
                StatusEvent::Run(run(&a, created, RunState::Queued)),
                StatusEvent::Task(task(&a, TaskState::Pending, created)),
            ]);
            b.last_fired.push(("wf".into(), created));
            s.commit(b).map(|_| ())
        }));
        out.push(Box::new(move |s: &Store| {
            s.commit(batch(vec![
                StatusEvent::Task(task(&b, TaskState::Running, created)),
                StatusEvent::Run(run(&b, created, RunState::Running)),
            ]))
            .map(|_| ())
        }));
        out.push(Box::new(move |s: &Store| {
            s.commit(batch(vec![
                StatusEvent::Task(task(&c, TaskState::Succeeded, created)),
                StatusEvent::Run(run(&c, created, RunState::Succeeded)),
            ]))
            .map(|_| ())
        }));
        if i % 2 == 1 {
            // The hub acknowledges all but the last event.
            out.push(Box::new(|s: &Store| {
                let last = s.last_seq()?;
                s.ack_outbox(last.saturating_sub(1)).map(|_| ())
            }));
        }
        if i == 2 {
            out.push(Box::new(|s: &Store| {
                s.prune(
                    Retention {
                        max_age: None,
                        max_runs_per_workflow: Some(1),
                    },
                    10_000_000,
                )
                .map(|_| ())
            }));
        }
    }
    out
}

/// Everything the store holds, through its public API; also checks that the ledger and the
/// outbox agree.
fn dump(s: &Store) -> Result<String, String> {
    let e = |e: StoreError| e.to_string();
    let last = s.last_seq().map_err(e)?;
    let acked = s.acked_seq().map_err(e)?;
    let outbox = s.outbox_after(0, usize::MAX).map_err(e)?;
    let seqs: Vec<u64> = outbox.iter().map(|o| o.seq).collect();
    let expected: Vec<u64> = (acked + 1..=last).collect();
    if seqs != expected {
        return Err(format!(
            "outbox seqs {seqs:?}, expected {expected:?} (acked {acked}, last {last})"
        ));
    }
    let runs = s.runs(RunFilter::default()).map_err(e)?;
    let mut tasks = Vec::new();
    for r in &runs {
        tasks.push(s.tasks(&r.run_id).map_err(e)?);
    }
    for entry in outbox.iter().rev() {
        if let StatusEvent::Run(r) = &entry.event {
            let stored = s.run(&r.run_id).map_err(e)?;
            let latest = outbox.iter().rev().find_map(|o| match &o.event {
                StatusEvent::Run(x) if x.run_id == r.run_id => Some(x),
                _ => None,
            });
            if stored.as_ref() != latest {
                return Err(format!(
                    "run {} in the ledger {stored:?} is not its last outbox event {latest:?}",
                    r.run_id
                ));
            }
        }
    }
    let workflows = s.active_workflows().map_err(e)?;
    let meta = s.meta_with_prefix("").map_err(e)?;
    let fired = s.last_fired("wf").map_err(e)?;
    Ok(format!(
        "{last} {acked} {outbox:?} {runs:?} {tasks:?} {workflows:?} {meta:?} {fired:?}"
    ))
}

/// The states after 0, 1, ... steps, from a store that never crashes.
fn reference(variant: u64) -> Vec<String> {
    let store = Store::open_backend(CrashBackend::new(Vec::new(), None, false, 1)).unwrap();
    let mut out = vec![dump(&store).unwrap()];
    for step in steps(variant) {
        step(&store).unwrap();
        out.push(dump(&store).unwrap());
    }
    out
}

/// How many mutating calls the workload makes (open included): the crash points.
fn crash_points(variant: u64) -> u64 {
    let backend = CrashBackend::new(Vec::new(), None, false, 1);
    {
        let store = Store::open_backend(backend.clone()).unwrap();
        for step in steps(variant) {
            step(&store).unwrap();
        }
    }
    backend.disk().calls
}

/// Crash at `point`, reopen from what survived, and check. Returns an error message on a
/// violation.
fn crash_once(variant: u64, point: u64, torn: bool, reference: &[String]) -> Result<(), String> {
    let backend = CrashBackend::new(Vec::new(), Some(point), torn, point * 7919 + variant);
    let mut done = 0usize;
    let opened = Store::open_backend(backend.clone());
    let created = opened.is_ok();
    if let Ok(store) = opened {
        for step in steps(variant) {
            if step(&store).is_err() {
                break;
            }
            done += 1;
        }
    }
    let Some(image) = backend.disk().survived.take() else {
        return Err(format!("crash point {point} was never reached"));
    };
    let store = match Store::open_backend(CrashBackend::new(image, None, false, 1)) {
        Ok(s) => s,
        // The power went while the store was being created: `Store::open` keeps such a file
        // aside (no marker yet) and creates the store again.
        Err(StoreError::Db(DbError::Redb(_))) if !created => {
            Store::open_backend(CrashBackend::new(Vec::new(), None, false, 1))
                .map_err(|e| format!("a new store cannot be created: {e}"))?
        }
        Err(e) => return Err(format!("the store does not reopen: {e}")),
    };
    let state = dump(&store)?;
    let ok = reference.get(done) == Some(&state) || reference.get(done + 1) == Some(&state);
    if !ok {
        return Err(format!(
            "after {done} acknowledged steps the store holds neither that state nor the next:\n{state}\nexpected\n{:?}",
            reference.get(done)
        ));
    }
    // The reopened store keeps working: the rest of the workload commits on top.
    store
        .commit(batch(vec![StatusEvent::Run(run(
            "after-crash",
            99_000,
            RunState::Queued,
        ))]))
        .map_err(|e| format!("cannot commit after the crash: {e}"))?;
    Ok(())
}

/// Every crash point of `variants`, clean and torn; returns (points run, time).
fn sweep(variants: std::ops::Range<u64>, min_points: u64) -> (u64, Duration) {
    let t0 = Instant::now();
    let mut points = 0;
    for variant in variants {
        let reference = reference(variant);
        let n = crash_points(variant);
        for point in 1..=n {
            for torn in [false, true] {
                if let Err(e) = crash_once(variant, point, torn, &reference) {
                    panic!("variant {variant}, crash point {point}/{n}, torn {torn}: {e}");
                }
                points += 1;
            }
        }
        if points >= min_points {
            break;
        }
    }
    (points, t0.elapsed())
}

/// A few hundred crash points by default; at least 10,000 with `OUTPOST_SLOW_TESTS=1`.
#[test]
fn every_acknowledged_commit_survives_a_power_loss_at_every_point() {
    let slow = std::env::var_os("OUTPOST_SLOW_TESTS").is_some_and(|v| v == "1");
    let (variants, min_points) = if slow { (0..1_000, 10_000) } else { (0..1, 0) };
    let (points, took) = sweep(variants, min_points);
    eprintln!("power loss (slow mode: {slow}): {points} crash points in {took:?}");
    assert!(points >= if slow { 10_000 } else { 200 }, "{points}");
}
