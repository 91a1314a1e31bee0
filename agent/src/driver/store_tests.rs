//! The driver against its store and disk: retention under clock steps.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use outpost_common::clock::ManualClock;
use outpost_common::record::{RunKind, RunRecord, RunState, StatusEvent};

use super::{Driver, DriverConfig, test_config};
use crate::store::{Batch, Retention, Store};

const DAY: Duration = Duration::from_secs(86_400);

fn t0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
}

fn driver(dir: &std::path::Path, clock: &ManualClock, store: Arc<Store>) -> Driver {
    Driver::new(
        DriverConfig {
            retention: Some(Retention {
                max_age: Some(30 * DAY),
                max_runs_per_workflow: None,
            }),
            ..test_config(dir)
        },
        Arc::new(clock.clone()),
        store,
    )
}

/// 20 finished runs of yesterday, acknowledged by the hub.
fn history(store: &Store) {
    let created = (t0() - TimeDelta::days(1)).timestamp_millis();
    let events = (0..20)
        .map(|i| {
            StatusEvent::Run(RunRecord {
                run_id: format!("wf@v1@r{i:02}"),
                workflow: "wf".into(),
                version: 1,
                kind: RunKind::Manual,
                scheduled_ms: created + i,
                state: RunState::Succeeded,
                params: Vec::new(),
                created_ms: created + i,
                started_ms: Some(created + i),
                ended_ms: Some(created + i + 1),
                agent_id: None,
                skip_reason: None,
            })
        })
        .collect();
    store
        .commit(Batch {
            events,
            ..Batch::default()
        })
        .unwrap();
    store.ack_outbox(store.last_seq().unwrap()).unwrap();
}

#[test]
fn a_clock_step_prunes_nothing_and_a_wrong_clock_at_start_prunes_a_tenth_per_pass() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("agent.redb")).unwrap());
    history(&store);
    let clock = ManualClock::new(t0());
    let mut d = driver(dir.path(), &clock, store.clone());
    assert_eq!(d.prune().unwrap(), 0, "nothing is old yet");
    // The wall clock jumps 400 days ahead while the agent runs: the planner's rule sees it.
    clock.set_wall(t0() + TimeDelta::days(400));
    assert_eq!(d.prune().unwrap(), 0);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(d.prune().unwrap(), 0, "age is measured without the step");
    assert_eq!(store.run_count().unwrap(), 20);
    drop(d);

    // Restarted with the clock still 400 days ahead: nothing to compare with, so the bounded
    // share is what protects the history: a tenth per pass, the oldest first.
    let mut d = driver(dir.path(), &clock, store.clone());
    assert_eq!(d.prune().unwrap(), 2);
    assert!(!store.run_exists("wf@v1@r00").unwrap());
    assert!(store.run_exists("wf@v1@r02").unwrap());
    clock.advance(Duration::from_secs(3600));
    assert_eq!(d.prune().unwrap(), 2);
    assert_eq!(store.run_count().unwrap(), 16);
}

/// Free space for tests: what `free` holds.
struct FakeSpace(Arc<std::sync::atomic::AtomicU64>);

impl crate::disk::FreeSpace for FakeSpace {
    fn space(&self, _dir: &std::path::Path) -> std::io::Result<crate::disk::Space> {
        Ok(crate::disk::Space {
            free: self.0.load(std::sync::atomic::Ordering::Relaxed),
            total: 1 << 30,
        })
    }
}

#[tokio::test(flavor = "current_thread")]
async fn low_disk_space_pauses_starts_says_so_and_resumes_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("agent.redb")).unwrap());
    let free = Arc::new(std::sync::atomic::AtomicU64::new(10));
    let mut guard =
        crate::disk::DiskGuard::new(dir.path(), crate::disk::MinFree::Bytes(1024 * 1024));
    guard.source = Arc::new(FakeSpace(free.clone()));
    let clock = Arc::new(outpost_common::clock::SystemClock::default());
    let mut cfg = test_config(dir.path());
    cfg.exec.disk_low = guard.low.clone();
    cfg.disk_guard = Some(guard);
    let mut d = Driver::new(cfg, clock, store.clone());
    let src = "name: disk\ntasks:\n  t:\n    command: [/bin/echo, hello]\n";
    let wf = outpost_common::workflow::parse(
        "disk.yaml",
        src,
        outpost_common::workflow::Format::Yaml,
        &Default::default(),
    )
    .unwrap();
    let version = d
        .record_version(&wf, src.as_bytes(), "yaml", "disk.yaml")
        .unwrap();
    d.install_workflow(wf, version, "disk.yaml".into(), false)
        .unwrap();
    let run_id = d.trigger("disk", Vec::new()).unwrap();
    // Space is low: the run is recorded, nothing starts, status says why.
    let t0 = std::time::Instant::now();
    d.run_loop(|_| t0.elapsed() > Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(d.disk_low());
    let tasks = store.tasks(&run_id).unwrap();
    assert!(
        tasks.iter().all(|t| t.attempts.is_empty()),
        "no attempt while space is low: {tasks:?}"
    );
    let status = d.status().unwrap();
    let said = status.disk_low.unwrap_or_default();
    assert!(said.contains("min_free_disk"), "{said}");
    // Space comes back: the run goes on by itself.
    free.store(1 << 29, std::sync::atomic::Ordering::Relaxed);
    let done = tokio::time::timeout(
        Duration::from_secs(20),
        d.run_loop(|d| !d.finished.is_empty()),
    )
    .await;
    assert!(done.is_ok(), "the run did not resume");
    assert!(!d.disk_low());
    assert!(d.status().unwrap().disk_low.is_none());
    let run = store.run(&run_id).unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
}

/// Unmounts a test file system (lazily) when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A real full disk: the store lives on a 64 MiB tmpfs that a filler file fills up, so that a
/// commit fails with ENOSPC. The driver keeps the batch, reopens the store and retries; once
/// the filler is removed the commit succeeds, exactly once, and nothing committed before is
/// lost. Mounting needs root: CI runs as root, and this test fails (it does not skip) without.
#[test]
fn a_commit_that_fails_on_a_full_disk_is_retried_until_space_is_back() {
    use std::io::Write as _;
    assert!(
        rustix::process::getuid().is_root(),
        "this test mounts a small tmpfs to fill it: run it as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "cannot mount a tmpfs on {}",
        mnt.display()
    );
    let _unmount = Unmount(mnt.clone());

    let store = Arc::new(Store::open(&mnt.join("agent.redb")).unwrap());
    history(&store);
    let before = store.last_seq().unwrap();
    let clock = ManualClock::new(t0());
    let mut d = driver(&mnt, &clock, store.clone());

    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
    }
    // Runs with 3 MiB of parameters in all: more than the store can grow into.
    let big: Vec<StatusEvent> = (0..12)
        .map(|i| {
            StatusEvent::Run(RunRecord {
                run_id: format!("wf@v1@big{i:02}"),
                workflow: "wf".into(),
                version: 1,
                kind: RunKind::Manual,
                scheduled_ms: 5,
                state: RunState::Queued,
                params: vec![("blob".into(), "x".repeat(256 * 1024))],
                created_ms: t0().timestamp_millis() + i,
                started_ms: None,
                ended_ms: None,
                agent_id: None,
                skip_reason: None,
            })
        })
        .collect();
    let n = big.len() as u64;
    let stalled = d.commits.stall_report();
    let freer = std::thread::spawn(move || {
        // Free the space only once the commit was seen failing.
        let t0 = std::time::Instant::now();
        let mut seen = None;
        while t0.elapsed() < Duration::from_secs(30) {
            seen = stalled.lock().unwrap().clone();
            if seen.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_file(&filler).unwrap();
        seen
    });
    d.commit(Batch {
        events: big,
        ..Batch::default()
    })
    .unwrap();
    let seen = freer.join().unwrap();
    let seen = seen.expect("the commit never failed: the disk was not full");
    assert!(
        seen.contains("No space left") || seen.contains("closed"),
        "{seen}"
    );
    assert!(d.store_stalled().is_none());
    // Committed once, after everything before it; the ledger and the outbox agree.
    assert_eq!(store.last_seq().unwrap(), before + n);
    assert_eq!(store.run_count().unwrap(), 20 + n);
    assert_eq!(store.outbox_len().unwrap(), n);
    assert!(store.run("wf@v1@r00").unwrap().is_some());
    // And the store goes on.
    d.commit(Batch {
        paused: vec![("wf".into(), true)],
        ..Batch::default()
    })
    .unwrap();
    assert!(store.is_paused("wf").unwrap());
}
