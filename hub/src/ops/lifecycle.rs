//! The workflow lifecycle beyond apply: what an apply would do (`workflow apply --dry-run`: the
//! diff against the hub and which pools and agents a new version would reach) and
//! `workflow delete` (removals to agents, history kept).

use crate::hub::{Hub, now_ms, resolve_decisions};
use crate::store::{DEFAULT_POOL_PREFIX, DeleteOutcome, PoolDecision, PoolRecord};

use super::OpResult;
use super::workflows::unified_diff;

/// What applying one valid file would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyPlan {
    /// The workflow.
    pub workflow: String,
    /// `new`, `changed`, `unchanged`, `revived` (applied again after `workflow delete`) or
    /// `waiting` (the same content already waits for release signatures).
    pub status: &'static str,
    /// The hub's latest version, if any.
    pub latest: Option<u64>,
    /// Unified diff of the latest version against the file (empty when new or unchanged).
    pub diff: String,
    /// A new version would wait for release signatures (no release key at the hub) before it
    /// reaches any agent.
    pub needs_release: bool,
    /// Every pool with a decision for the workflow (and its default pool).
    pub pools: Vec<PoolPlan>,
    /// Agents that would get the new version once it is released (none when unchanged).
    pub agents: Vec<String>,
}

/// One pool in an [`ApplyPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPlan {
    /// Pool name.
    pub pool: String,
    /// The version it holds now (0: none).
    pub version: u64,
    /// Whether the new version would be deployed to it.
    pub gets_new: bool,
    /// Why (follows apply, pinned, rollout in progress, managed by deploy).
    pub note: String,
}

/// The facts a plan is made from, read once for every file of an apply.
pub(crate) struct PlanInputs {
    pub(crate) pools: Vec<PoolRecord>,
    pub(crate) decisions: Vec<((String, String), PoolDecision)>,
    pub(crate) agents: Vec<(String, Vec<(String, String)>)>,
}

/// Which pools and agents a new version of `workflow` with `target` reaches (sans-IO): its
/// default pool gets it while that pool follows apply (not pinned, no rollout, not managed by
/// `workflow deploy`); an agent gets it when the default pool's decision is the one that wins
/// for it.
pub(crate) fn reach(
    inputs: &PlanInputs,
    workflow: &str,
    target: &[(String, String)],
    changed: bool,
) -> (Vec<PoolPlan>, Vec<String>) {
    let default = format!("{DEFAULT_POOL_PREFIX}{workflow}");
    let mut pools = Vec::new();
    let mut current_default = None;
    for ((w, p), d) in &inputs.decisions {
        if w != workflow {
            continue;
        }
        let follows = *p == default && d.follow_latest && !d.pinned && d.rollout.is_none();
        if *p == default {
            current_default = Some(d.clone());
        }
        let note = if d.pinned {
            format!("pinned to version {}: keeps it", d.version)
        } else if d.rollout.is_some() {
            format!(
                "rollout ro-{} in progress: keeps its rollout",
                d.rollout.unwrap_or(0)
            )
        } else if follows {
            "follows apply: deploys the new version".to_string()
        } else {
            format!(
                "managed (deploy): stays on version {} until `workflow deploy`",
                d.version
            )
        };
        pools.push(PoolPlan {
            pool: p.clone(),
            version: d.version,
            gets_new: follows && changed,
            note,
        });
    }
    let follows = current_default
        .as_ref()
        .is_none_or(|d| d.follow_latest && !d.pinned && d.rollout.is_none());
    if current_default.is_none() {
        pools.push(PoolPlan {
            pool: default.clone(),
            version: 0,
            gets_new: changed,
            note: "new default pool (the workflow's target): deploys the new version".into(),
        });
    }
    if !(follows && changed) {
        return (pools, Vec::new());
    }
    // The world as it would be: the default pool's selector is the new target and its
    // decision deploys the new version (marked u64::MAX).
    let mut target = target.to_vec();
    target.sort();
    let mut all_pools: Vec<PoolRecord> = inputs
        .pools
        .iter()
        .filter(|p| p.name != default)
        .cloned()
        .collect();
    all_pools.push(PoolRecord {
        name: default.clone(),
        selector: target,
        created_ms: 0,
        created_by: String::new(),
    });
    let max_seq = inputs
        .decisions
        .iter()
        .map(|(_, d)| d.seq)
        .max()
        .unwrap_or(0);
    let mut decisions: Vec<((String, String), PoolDecision)> = inputs
        .decisions
        .iter()
        .filter(|((w, p), _)| !(w == workflow && *p == default))
        .cloned()
        .collect();
    decisions.push((
        (workflow.to_string(), default.clone()),
        PoolDecision {
            version: u64::MAX,
            pinned: false,
            seq: current_default.map(|d| d.seq).unwrap_or(max_seq + 1),
            at_ms: 0,
            actor: String::new(),
            follow_latest: true,
            rollout: None,
        },
    ));
    let mut agents = Vec::new();
    for (id, labels) in &inputs.agents {
        let resolved = resolve_decisions(labels, &all_pools, &decisions);
        if resolved
            .iter()
            .any(|r| r.workflow == workflow && r.pool == default && r.decision.version == u64::MAX)
        {
            agents.push(id.clone());
        }
    }
    (pools, agents)
}

impl Hub {
    /// The facts [`reach`] needs: pools, decisions, and the non-revoked agents' labels.
    pub(crate) fn plan_inputs(&self) -> OpResult<PlanInputs> {
        Ok(PlanInputs {
            pools: self.store().pools()?,
            decisions: self.store().decisions()?,
            agents: self
                .store()
                .agents()?
                .into_iter()
                .filter(|a| a.revoked_ms.is_none())
                .map(|a| (a.id, a.labels))
                .collect(),
        })
    }

    /// What applying a valid file of `workflow` (its `content` and `target`) would do. Changes
    /// nothing.
    pub(crate) fn plan_apply(
        &self,
        inputs: &PlanInputs,
        workflow: &str,
        content: &str,
        target: &[(String, String)],
    ) -> OpResult<ApplyPlan> {
        let hash = blake3::hash(content.as_bytes()).to_hex().to_string();
        let meta = self
            .store()
            .workflows()?
            .into_iter()
            .find(|(n, _)| n == workflow);
        let pending = self.store().pending(workflow)?;
        let (status, latest, diff) = match &meta {
            None => ("new", None, String::new()),
            Some((_, m)) => {
                let v = self.store().version(workflow, Some(m.latest))?;
                let old = String::from_utf8_lossy(&v.content).into_owned();
                let diff = unified_diff(workflow, m.latest, &old, m.latest + 1, content)
                    .replace(&format!("{workflow} v{}", m.latest + 1), "(file)");
                if m.deleted_ms.is_some() {
                    ("revived", Some(m.latest), diff)
                } else if v.content_hash == hash {
                    ("unchanged", Some(m.latest), String::new())
                } else {
                    ("changed", Some(m.latest), diff)
                }
            }
        };
        let status = match &pending {
            Some(p) if p.content_hash == hash && status != "revived" => "waiting",
            _ => status,
        };
        let changed = matches!(status, "new" | "changed" | "revived");
        let (mut pools, agents) = if meta.as_ref().is_some_and(|(_, m)| m.deleted_ms.is_some()) {
            // Deleted: its decisions are gone, so the plan is that of a new workflow.
            let inputs = PlanInputs {
                pools: inputs.pools.clone(),
                decisions: inputs
                    .decisions
                    .iter()
                    .filter(|((w, _), _)| w != workflow)
                    .cloned()
                    .collect(),
                agents: inputs.agents.clone(),
            };
            reach(&inputs, workflow, target, changed)
        } else {
            reach(inputs, workflow, target, changed)
        };
        pools.sort_by(|a, b| a.pool.cmp(&b.pool));
        Ok(ApplyPlan {
            workflow: workflow.to_string(),
            status,
            latest,
            diff,
            needs_release: changed && self.release_key().is_none(),
            pools,
            agents,
        })
    }

    /// `workflow delete`: every agent that runs it gets a removal (its pool decisions are
    /// dropped); versions and runs are kept; `workflow list --all` still shows it. Refused
    /// while a rollout of it is in progress unless `force`. Audited.
    pub fn delete_workflow(
        &self,
        actor: &str,
        name: &str,
        force: bool,
    ) -> OpResult<(DeleteOutcome, Vec<String>)> {
        let _g = self.lock_rollouts();
        let reached = self.targeted_agents(name)?;
        let out = self.store().delete_workflow(name, force, actor, now_ms())?;
        self.notify_changed();
        if !out.aborted_rollouts.is_empty() {
            self.rollout_wake.notify_one();
        }
        Ok((out, reached))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, sel: &[(&str, &str)]) -> PoolRecord {
        PoolRecord {
            name: name.into(),
            selector: sel
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_ms: 0,
            created_by: String::new(),
        }
    }

    fn decision(version: u64, seq: u64, follow: bool, pinned: bool) -> PoolDecision {
        PoolDecision {
            version,
            pinned,
            seq,
            at_ms: 0,
            actor: String::new(),
            follow_latest: follow,
            rollout: None,
        }
    }

    fn inputs(decisions: Vec<((String, String), PoolDecision)>) -> PlanInputs {
        PlanInputs {
            pools: vec![
                pool("wf:etl", &[("site", "a")]),
                pool("line-3", &[("line", "3")]),
            ],
            decisions,
            agents: vec![
                ("agent-a".into(), vec![("site".into(), "a".into())]),
                (
                    "agent-a3".into(),
                    vec![("site".into(), "a".into()), ("line".into(), "3".into())],
                ),
                ("agent-b".into(), vec![("site".into(), "b".into())]),
            ],
        }
    }

    #[test]
    fn new_workflow_reaches_the_agents_its_target_selects() {
        let (pools, agents) = reach(&inputs(vec![]), "etl", &[("site".into(), "b".into())], true);
        assert_eq!(agents, vec!["agent-b".to_string()]);
        assert_eq!(pools.len(), 1);
        assert!(pools[0].gets_new && pools[0].pool == "wf:etl");
    }

    #[test]
    fn a_pool_deployed_later_wins_and_a_pin_holds() {
        let d = vec![
            (("etl".into(), "wf:etl".into()), decision(2, 1, true, false)),
            (
                ("etl".into(), "line-3".into()),
                decision(1, 2, false, false),
            ),
        ];
        let (pools, agents) = reach(&inputs(d), "etl", &[("site".into(), "a".into())], true);
        // agent-a3 follows line-3 (decided later): it keeps version 1.
        assert_eq!(agents, vec!["agent-a".to_string()]);
        assert!(pools.iter().any(|p| p.pool == "line-3" && !p.gets_new));
        let pinned = vec![(("etl".into(), "wf:etl".into()), decision(2, 1, false, true))];
        let (pools, agents) = reach(&inputs(pinned), "etl", &[("site".into(), "a".into())], true);
        assert!(agents.is_empty());
        assert!(pools[0].note.contains("pinned to version 2"), "{pools:?}");
        // Unchanged content reaches nobody.
        let (_, agents) = reach(
            &inputs(vec![]),
            "etl",
            &[("site".into(), "a".into())],
            false,
        );
        assert!(agents.is_empty());
    }
}
