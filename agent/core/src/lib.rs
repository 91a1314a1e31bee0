//! Sans-IO core of the Outpost agent: DAG run state, retries, cron planning, admission.
//!
//! **Architecture Invariant**: nothing here does I/O, reads a clock, spawns a process or uses
//! randomness it was not seeded with. Every input (including the time, as
//! [`outpost_common::clock::Now`]) is an argument; every effect is a returned value. The same
//! sequence of calls always yields the same outputs.
//!
//! - [`planner::Planner`] (one per scheduled workflow) turns the passage of wall time into
//!   firings (`Fire { scheduled, kind }`) and reports of missed firings.
//! - [`engine::Engine`] (one per agent) admits runs per workflow overlap policy, walks each run's
//!   DAG by trigger rules, schedules attempts across runs under `max_running` and resource
//!   semaphores, and handles retries, timeouts, cancellation and crash recovery.
//! - [`retention`] decides when retention may prune and how much (clock steps, a bounded
//!   share per pass).
//! - [`deploy`] decides hub deploys (the anti-rollback state) and probation (when to revert).
//! - [`deadlines`] detects missed `deadline`s and `max_start_delay`s (wall time an argument).
//! - [`hooks`] decides which committed event makes which hook job (one per event).
//! - [`rerun`] chooses the tasks `run retry` reopens in a finished run.
//! - [`retry`] holds the retry decision and delay arithmetic, and the seeded PRNG.
//!
//! # Call order (the driver's loop)
//!
//! ```text
//! startup:  for each stored run: engine.restore_run(..); planner = Planner::new(.., last_fired, now)
//! loop:
//!   now = clock.read()
//!   for each planner: for out in planner.handle_time(now):
//!        Fire   -> build RunRecord, engine.add_run(run, wf, now)   (commit with planner.last_fired())
//!        Missed -> commit StatusEvent::Missed                      (with planner.last_fired())
//!   process events: engine.handle_started / handle_exited / handle_cancel
//!   engine.handle_timeout(now) if engine.poll_timeout() <= now.mono
//!   while let Some(a) = engine.poll_action() { perform a in order: Commit before any later Spawn/Kill }
//!   sleep until min(engine.poll_timeout() [mono], planner.poll_timeout() [wall]) or an event
//! ```
//!
//! # Invariants (checked by the property tests)
//!
//! - A task starts only when its trigger rule accepts its upstream states; every run ends with
//!   every task terminal; a task never has more than `retries + 1` attempts.
//! - Running attempts never exceed `max_running`; no resource is used beyond its capacity.
//! - Durable first: every `Spawn` is preceded by a `Commit` holding that task's `Running`
//!   snapshot. Commits carry full snapshots, so applying one twice is harmless.
//! - The planner never fires a scheduled instant twice, fires in increasing order, and accounts
//!   for every instant between its start and now: fired, or counted in one `MissedFirings`.

pub mod deadlines;
pub mod deploy;
pub mod engine;
pub mod hooks;
pub mod planner;
pub mod rerun;
pub mod retention;
pub mod retry;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use engine::{Action, Engine, EngineConfig, EngineError, KillReason};
pub use planner::{Planner, PlannerOutput};
