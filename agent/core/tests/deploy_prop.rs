#![allow(clippy::unwrap_used)] // tests may unwrap
//! Property tests for deploy acceptance and probation: random sequences of deploys and run
//! outcomes, with and without a crash.

use outpost_agent_core::deploy::{
    DeployState, FinishedRun, ProbationVerdict, VerifiedDeploy, accept, evaluate_probation,
};
use outpost_common::proto::Probation;
use outpost_common::record::RunState;
use proptest::prelude::*;

const WF: &str = "wf";

#[derive(Debug, Clone)]
enum Input {
    /// A verified deploy; `held` is decided from the versions accepted before.
    Deploy {
        version: u64,
        epoch: u64,
        remove: bool,
        probation: Option<(u32, u32)>,
        previous: Option<u64>,
    },
    /// A run of the active version (or of `stale`: an older one) finished in this state.
    Run { state: RunState, stale: bool },
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (
            1u64..8,
            0u64..12,
            prop::bool::weighted(0.1),
            prop::option::weighted(0.6, (1u32..5, 0u32..3)),
            prop::option::weighted(0.2, 0u64..8),
        )
            .prop_map(
                |(version, epoch, remove, probation, previous)| Input::Deploy {
                    version,
                    epoch,
                    remove,
                    probation,
                    previous,
                }
            ),
        (
            prop::sample::select(vec![
                RunState::Succeeded,
                RunState::Failed,
                RunState::Failed,
                RunState::Cancelled,
                RunState::Skipped,
                RunState::Running,
            ]),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(state, stale)| Input::Run { state, stale }),
    ]
}

/// What the store holds: the deploy state and the runs.
#[derive(Debug, Clone, Default, PartialEq)]
struct Persisted {
    state: DeployState,
    runs: Vec<FinishedRun>,
    /// Versions stored (a deploy of one of them may go back to it).
    held: Vec<u64>,
    reverts: u32,
}

/// One step of the agent; `persist` is called after each write, as the store commits them
/// (a run finishing is one commit, the probation decision after it another).
fn step(p: &mut Persisted, i: usize, input: &Input, persist: &mut dyn FnMut(&Persisted)) {
    let now_ms = i as i64 * 10;
    match input {
        Input::Deploy {
            version,
            epoch,
            remove,
            probation,
            previous,
        } => {
            let d = VerifiedDeploy {
                version: *version,
                epoch: *epoch,
                remove: *remove,
                held: p.held.contains(version),
                probation: probation.map(|(runs, max_failures)| Probation { runs, max_failures }),
                previous_version: *previous,
                rollout_id: None,
            };
            if let Ok(next) = accept(&p.state, &d, now_ms) {
                p.state = next;
                if !remove && !p.held.contains(version) {
                    p.held.push(*version);
                }
                persist(p);
            }
        }
        Input::Run { state, stale } => {
            let version = if *stale {
                p.state.active_version.saturating_sub(1)
            } else {
                p.state.active_version
            };
            p.runs.push(FinishedRun {
                run_id: format!("{WF}@v{version}@{i:04}"),
                version,
                created_ms: now_ms,
                state: *state,
                failed_task: false,
            });
            persist(p);
            probation(p, now_ms, persist);
        }
    }
}

fn probation(p: &mut Persisted, now_ms: i64, persist: &mut dyn FnMut(&Persisted)) {
    match evaluate_probation(WF, &p.state, &p.runs, now_ms) {
        ProbationVerdict::Continue => {}
        ProbationVerdict::Passed { state, .. } => {
            p.state = state;
            persist(p);
        }
        ProbationVerdict::Revert { state, .. } => {
            p.state = state;
            p.reverts += 1;
            persist(p);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The highest accepted version never drops and accepted epochs strictly rise, across
    /// deploys, removals and reverts.
    #[test]
    fn highest_never_drops_and_epochs_rise(inputs in prop::collection::vec(input(), 1..40)) {
        let mut p = Persisted::default();
        for (i, input) in inputs.iter().enumerate() {
            let before = p.state.clone();
            step(&mut p, i, input, &mut |_| {});
            prop_assert!(p.state.highest_version >= before.highest_version);
            if p.state.last_epoch != before.last_epoch {
                prop_assert!(p.state.last_epoch > before.last_epoch);
                let Input::Deploy { epoch, version, remove, .. } = input else {
                    panic!("only a deploy moves the epoch");
                };
                prop_assert_eq!(p.state.last_epoch, *epoch);
                if !remove {
                    prop_assert_eq!(p.state.active_version, *version);
                }
            }
            if p.state.active_version > 0 && p.state.reverted_from.is_none() {
                prop_assert!(p.state.active_version <= p.state.highest_version);
            }
        }
    }

    /// A revert happens exactly when more than `max_failures` of the first `runs` counted runs
    /// of the version on probation failed (counted here by a plain model): a failed run, or a
    /// run that ended `succeeded` with a failed task (an `all_done` leaf after it).
    #[test]
    fn revert_exactly_when_failures_exceed_the_limit(
        runs in 1u32..6,
        max_failures in 0u32..4,
        outcomes in prop::collection::vec(
            (prop::sample::select(vec![
                RunState::Succeeded, RunState::Failed, RunState::Cancelled,
                RunState::Skipped, RunState::Running,
            ]), any::<bool>()),
            0..12,
        ),
    ) {
        let s1 = accept(&DeployState::default(), &VerifiedDeploy {
            version: 1, epoch: 1, remove: false, held: false,
            probation: None, previous_version: None, rollout_id: None,
        }, 0).unwrap();
        let s2 = accept(&s1, &VerifiedDeploy {
            version: 2, epoch: 2, remove: false, held: false,
            probation: Some(Probation { runs, max_failures }),
            previous_version: None, rollout_id: Some("r1".into()),
        }, 100).unwrap();
        let mut state = s2;
        let mut stored = Vec::new();
        // A run of the old version and one from before the probation never count.
        stored.push(FinishedRun { run_id: "old".into(), version: 1, created_ms: 150, state: RunState::Failed, failed_task: true });
        stored.push(FinishedRun { run_id: "early".into(), version: 2, created_ms: 50, state: RunState::Failed, failed_task: true });
        let mut counted: Vec<bool> = Vec::new();
        let mut reverted_at = None;
        for (i, (st, failed_task)) in outcomes.iter().enumerate() {
            stored.push(FinishedRun {
                run_id: format!("r{i:03}"), version: 2, created_ms: 200 + i as i64, state: *st,
                failed_task: *failed_task,
            });
            if st.is_terminal() && *st != RunState::Skipped && counted.len() < runs as usize {
                counted.push(*st == RunState::Failed || (*st == RunState::Succeeded && *failed_task));
            }
            let failures = counted.iter().filter(|f| **f).count() as u32;
            let verdict = evaluate_probation("wf", &state, &stored, 1000 + i as i64);
            match verdict {
                ProbationVerdict::Revert { state: next, revert } => {
                    prop_assert!(reverted_at.is_none(), "one revert only");
                    prop_assert!(failures > max_failures);
                    prop_assert_eq!((revert.from_version, revert.to_version), (2, 1));
                    prop_assert_eq!(revert.rollout_id.as_deref(), Some("r1"));
                    prop_assert_eq!(next.active_version, 1);
                    prop_assert_eq!(next.highest_version, 2);
                    prop_assert_eq!(next.reverted_from, Some(2));
                    prop_assert!(next.probation.is_none());
                    reverted_at = Some(i);
                    state = next;
                }
                ProbationVerdict::Passed { state: next, failed } => {
                    prop_assert!(state.probation.is_some());
                    prop_assert!(failures <= max_failures);
                    prop_assert_eq!(failed, failures);
                    prop_assert_eq!(counted.len(), runs as usize);
                    prop_assert_eq!(next.active_version, 2);
                    state = next;
                }
                ProbationVerdict::Continue => {
                    if state.probation.is_some() {
                        prop_assert!(failures <= max_failures);
                        prop_assert!(counted.len() < runs as usize);
                    }
                }
            }
        }
        let failures = counted.iter().filter(|f| **f).count() as u32;
        prop_assert_eq!(reverted_at.is_some(), failures > max_failures);
    }

    /// A crash at any point: the agent restarts from what the store held then (a prefix of what
    /// it persisted), evaluates probation once (start-up), and gets the inputs it had not
    /// persisted again (the hub resends a deploy it got no answer for; a run's outcome is in the
    /// store or the run is recovered and finishes again). It ends in the same state, with the
    /// same reverts.
    #[test]
    fn a_revert_survives_a_crash_at_every_point(
        inputs in prop::collection::vec(input(), 1..30),
        crash_at in any::<prop::sample::Index>(),
    ) {
        // Without a crash, recording every persisted point and the input it belongs to.
        let mut points: Vec<(usize, Persisted)> = vec![(0, Persisted::default())];
        let mut p = Persisted::default();
        for (i, input) in inputs.iter().enumerate() {
            let mut seen = Vec::new();
            step(&mut p, i, input, &mut |s| seen.push(s.clone()));
            // A point after which input `i` is wholly persisted resumes at `i + 1`; one in the
            // middle of it (the run stored, its probation decision not) resumes at `i + 1` too
            // (the run's outcome is stored), with the start-up evaluation doing the rest.
            points.extend(seen.into_iter().map(|s| (i + 1, s)));
        }
        let end = p;
        let (resume, mut q) = points[crash_at.index(points.len())].clone();
        // Start-up: probation is evaluated against the stored runs.
        let start_ms = resume as i64 * 10 - 5;
        probation(&mut q, start_ms, &mut |_| {});
        for (i, input) in inputs.iter().enumerate().skip(resume) {
            step(&mut q, i, input, &mut |_| {});
        }
        prop_assert_eq!(&q.state, &end.state);
        prop_assert_eq!(q.reverts, end.reverts);
    }
}
