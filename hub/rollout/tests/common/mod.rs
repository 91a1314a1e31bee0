//! Test harness: a controller plus a tiny simulated hub and agents.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use outpost_rollout::*;

/// A spec with sensible defaults.
pub fn spec(canary: Size, steps: Vec<Size>) -> RolloutSpec {
    RolloutSpec {
        id: "ro-1".into(),
        workflow: "press".into(),
        pool: "line-3".into(),
        from_version: Some(1),
        to_version: 2,
        canary,
        steps,
        bake_ms: 1_000,
        min_runs: 1,
        min_runs_scope: Scope::PerAgent,
        max_failure_rate: 0.5,
        manual: false,
        probation: Some((3, 1)),
        offline: OfflinePolicy::Fail,
        created_ms: 0,
    }
}

pub fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a{i:02}")).collect()
}

/// The stable order computed independently of the crate.
pub fn stable_order(rollout: &str, agents: &[String]) -> Vec<String> {
    let mut v: Vec<(Vec<u8>, String)> = agents
        .iter()
        .map(|a| {
            let mut b = rollout.as_bytes().to_vec();
            b.extend_from_slice(a.as_bytes());
            (blake3::hash(&b).as_bytes().to_vec(), a.clone())
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, a)| a).collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimAgent {
    pub online: bool,
    /// Last version the hub was told to give it (the hub's desired state).
    pub desired: Option<u64>,
    /// What it runs (0 = nothing).
    pub active: u64,
}

pub struct Harness {
    pub c: Controller,
    pub now: i64,
    pub agents: BTreeMap<String, SimAgent>,
    /// Every action, rendered.
    pub log: Vec<String>,
    /// Every action, raw, with the time it was polled.
    pub actions: Vec<(i64, Action)>,
    /// Agents in the order they were first assigned the new version.
    pub first_new: Vec<String>,
    /// Agents automatically activate what they are sent when online.
    pub auto: bool,
}

pub fn render(a: &Action) -> String {
    match a {
        Action::Assign {
            agent_id,
            version,
            previous_version,
            probation,
        } => {
            format!(
                "assign {agent_id} v{version} prev={previous_version:?} probation={probation:?}"
            )
        }
        Action::Phase(p) => format!("phase {p:?}"),
        Action::Audit(s) => format!("audit {s}"),
        Action::Finished(o) => format!("finished {o:?}"),
    }
}

impl Harness {
    pub fn new(spec: RolloutSpec, n: usize) -> Harness {
        let members: Vec<Member> = ids(n)
            .into_iter()
            .map(|id| Member {
                agent_id: id,
                online: true,
                version: spec.from_version,
            })
            .collect();
        Self::with_members(spec, members)
    }

    pub fn with_members(spec: RolloutSpec, members: Vec<Member>) -> Harness {
        Self::start(spec, members, true)
    }

    /// Without automatic activations (agents only activate when told to).
    pub fn quiet(spec: RolloutSpec, n: usize) -> Harness {
        let members = ids(n)
            .into_iter()
            .map(|id| Member {
                agent_id: id,
                online: true,
                version: spec.from_version,
            })
            .collect();
        Self::start(spec, members, false)
    }

    pub fn start(spec: RolloutSpec, members: Vec<Member>, auto: bool) -> Harness {
        let agents = members
            .iter()
            .map(|m| {
                (
                    m.agent_id.clone(),
                    SimAgent {
                        online: m.online,
                        desired: None,
                        active: m.version.unwrap_or(0),
                    },
                )
            })
            .collect();
        let c = Controller::new(spec, members, 0).expect("valid spec");
        let mut h = Harness {
            c,
            now: 0,
            agents,
            log: Vec::new(),
            actions: Vec::new(),
            first_new: Vec::new(),
            auto,
        };
        h.settle();
        h
    }

    pub fn to(&self) -> u64 {
        self.c.spec().to_version
    }

    pub fn from(&self) -> u64 {
        self.c.spec().from_version.unwrap_or(0)
    }

    /// Poll every action; apply assignments to the simulated hub state.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Some(a) = self.c.poll_action() {
            n += 1;
            self.log.push(format!("t={} {}", self.now, render(&a)));
            if let Action::Assign {
                agent_id, version, ..
            } = &a
            {
                if *version == self.to() && !self.first_new.contains(agent_id) {
                    self.first_new.push(agent_id.clone());
                }
                if let Some(s) = self.agents.get_mut(agent_id) {
                    s.desired = Some(*version);
                }
            }
            self.actions.push((self.now, a));
        }
        n
    }

    /// Drain, and let online agents activate what they were sent, until quiet.
    pub fn settle(&mut self) {
        loop {
            self.drain();
            if !self.auto {
                return;
            }
            let todo: Vec<(String, u64)> = self
                .agents
                .iter()
                .filter(|(_, s)| s.online && s.desired.is_some_and(|d| d != s.active))
                .map(|(id, s)| (id.clone(), s.desired.unwrap_or(0)))
                .collect();
            if todo.is_empty() {
                return;
            }
            for (id, v) in todo {
                self.activate(&id, v);
            }
        }
    }

    pub fn activate(&mut self, id: &str, v: u64) {
        if let Some(s) = self.agents.get_mut(id) {
            s.active = v;
        }
        self.c.handle_activated(id, v, self.now);
        self.drain();
    }

    pub fn advance(&mut self, ms: i64) {
        self.now += ms;
        self.c.handle_timeout(self.now);
        self.settle();
    }

    /// One successful run of the new version on every online agent that runs it.
    pub fn runs_ok(&mut self) {
        let to = self.to();
        let on: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, s)| s.online && s.active == to)
            .map(|(id, _)| id.clone())
            .collect();
        for id in on {
            self.c.handle_run(&id, to, true, self.now);
        }
        self.settle();
    }

    pub fn run(&mut self, id: &str, ok: bool) {
        let to = self.to();
        self.c.handle_run(id, to, ok, self.now);
        self.settle();
    }

    pub fn online(&mut self, id: &str, on: bool) {
        if let Some(s) = self.agents.get_mut(id) {
            s.online = on;
        }
        self.c.handle_online(id, on, self.now);
        self.settle();
    }

    pub fn command(&mut self, cmd: Command) -> Result<(), RefusedReason> {
        let r = self.c.handle_command(cmd, self.now);
        self.log
            .push(format!("t={} command {cmd:?} -> {r:?}", self.now));
        self.settle();
        r
    }

    /// Members currently sent the new version (hub desired state).
    pub fn on_new(&self) -> usize {
        let to = self.to();
        self.agents
            .values()
            .filter(|s| s.desired == Some(to))
            .count()
    }

    pub fn phase(&self) -> Phase {
        self.c.phase().clone()
    }

    /// Runs, bake, repeat: drive a healthy rollout up to `max_rounds` gates.
    pub fn healthy_round(&mut self) {
        self.runs_ok();
        let bake = self.c.spec().bake_ms;
        self.advance(bake);
    }

    /// The audit trail and a compact final status, for snapshots.
    pub fn transcript(&self) -> String {
        let mut s = String::new();
        for l in &self.log {
            let _ = writeln!(s, "{l}");
        }
        let _ = writeln!(s, "--- status");
        let _ = write!(s, "{}", render_status(&self.c.status(self.now)));
        s
    }
}

pub fn render_status(st: &Status) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} pool={} v{:?}->v{} phase={:?} step={}/{} members={} outcome={:?}",
        st.id,
        st.workflow,
        st.pool,
        st.from_version,
        st.to_version,
        st.phase,
        st.step,
        st.step_count,
        st.members,
        st.outcome
    );
    for k in &st.steps {
        let _ = writeln!(
            s,
            "  step {} size={:?} target={} updated={} active={}",
            k.index, k.size, k.target, k.updated, k.active
        );
    }
    for a in &st.agents {
        let _ = writeln!(
            s,
            "  {} at={:?} {:?} online={} v={:?} desired={} runs={} fail={} {}",
            a.agent_id,
            a.selected_at,
            a.state,
            a.online,
            a.version,
            a.desired_version,
            a.runs,
            a.failures,
            a.failure.clone().unwrap_or_default()
        );
    }
    let g = &st.gate;
    let _ = writeln!(
        s,
        "  gate runs={} failures={} rate={:?} max={} bake_left={:?} min_runs={} {:?} step_runs={} needed={} awaiting={}",
        g.runs,
        g.failures,
        g.failure_rate,
        g.max_failure_rate,
        g.bake_left_ms,
        g.min_runs,
        g.min_runs_scope,
        g.step_runs,
        g.runs_needed,
        g.awaiting_activation
    );
    s
}
