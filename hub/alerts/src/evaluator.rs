//! The evaluator: rules over inputs and level conditions, with the time as an argument.
//!
//! Items are gathered per (rule, group) — the group is the workflow, or the whole rule for what
//! has no workflow (an agent offline, a clock offset...). A group's first notification leaves
//! `group_wait` after its first item; while it keeps firing, at most one notification per
//! `repeat_interval` carries what gathered since (a count beyond the listed items). A level
//! group whose conditions all cleared sends one resolved notice, if it had notified. Silences
//! hold back items: an event item at once, a condition item at each notification.
//!
//! The state is plain data ([`Evaluator::encode`]); the driver commits it in the transaction
//! that stores the notifications it produced, so each one is made once across restarts and
//! its [`Notification::dedup_key`] is stable.

use std::collections::BTreeMap;

use minicbor::{Decode, Encode};

use crate::input::{Condition, Input, InputEvent};
use crate::notification::{AlertItem, AlertStatus, Notification, UnixMillis};
use crate::rule::{EventKind, Rule, Silence, Subject};

/// Evaluator settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// An event that reached the hub more than this after it happened is marked delayed.
    pub delayed_after_ms: i64,
    /// Items listed in one notification (the rest are counted in `suppressed`).
    pub max_items: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            delayed_after_ms: 120_000,
            max_items: 20,
        }
    }
}

/// Stored state could not be read.
#[derive(Debug, thiserror::Error)]
#[error("alert evaluator state: {0}")]
pub struct DecodeError(String);

/// One (rule, group)'s gathering.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct Group {
    #[n(0)]
    rule: String,
    #[n(1)]
    workflow: Option<String>,
    /// Fed by level conditions (else by events).
    #[n(2)]
    level: bool,
    /// Unique across the evaluator's life: part of the dedup key.
    #[n(3)]
    episode: u64,
    #[n(4)]
    starts_ms: UnixMillis,
    /// Events waiting for the next notification.
    #[n(5)]
    pending: Vec<(AlertItem, Subject)>,
    /// Events beyond `max_items` since the last notification.
    #[n(6)]
    pending_extra: u64,
    /// When the first pending event arrived.
    #[n(7)]
    first_pending_ms: Option<UnixMillis>,
    /// Level conditions active now, by key.
    #[n(8)]
    active: BTreeMap<String, (AlertItem, Subject)>,
    /// Level conditions cleared since the last notification.
    #[n(9)]
    cleared: Vec<AlertItem>,
    #[n(10)]
    last_sent_ms: Option<UnixMillis>,
    /// Firing notifications sent in this episode.
    #[n(11)]
    sent: u64,
}

/// The persisted part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
struct State {
    /// `rule \x1f workflow \x1f E|L -> group`.
    #[n(0)]
    groups: BTreeMap<String, Group>,
    /// Failures in a row: `agent \x1f workflow -> count`.
    #[n(1)]
    streaks: BTreeMap<String, u32>,
    #[n(2)]
    next_episode: u64,
}

/// Rules, settings and state.
#[derive(Debug, Clone)]
pub struct Evaluator {
    rules: Vec<Rule>,
    settings: Settings,
    state: State,
}

fn group_key(rule: &str, workflow: Option<&str>, level: bool) -> String {
    format!(
        "{rule}\x1f{}\x1f{}",
        workflow.unwrap_or(""),
        if level { 'L' } else { 'E' }
    )
}

impl Evaluator {
    /// A fresh evaluator.
    pub fn new(rules: Vec<Rule>, settings: Settings) -> Evaluator {
        Evaluator {
            rules,
            settings,
            state: State::default(),
        }
    }

    /// Resume from [`Evaluator::encode`]d state (the rules may have changed: groups of rules
    /// no longer configured are dropped at the next [`Evaluator::poll`]).
    pub fn decode(
        rules: Vec<Rule>,
        settings: Settings,
        bytes: &[u8],
    ) -> Result<Evaluator, DecodeError> {
        let state = if bytes.is_empty() {
            State::default()
        } else {
            minicbor::decode(bytes).map_err(|e| DecodeError(e.to_string()))?
        };
        Ok(Evaluator {
            rules,
            settings,
            state,
        })
    }

    /// The state to persist.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail.
        minicbor::to_vec(&self.state).unwrap_or_default()
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Feed one event (each event once).
    pub fn event(&mut self, input: &Input, silences: &[Silence], now: UnixMillis) {
        let s = &input.subject;
        let delayed = input.received_ms.saturating_sub(input.at_ms);
        let delayed_ms = (delayed > self.settings.delayed_after_ms).then_some(delayed as u64);
        let item = |run_id: Option<&str>, task: Option<&str>, detail: &str| AlertItem {
            agent: s.agent.clone(),
            workflow: s.workflow.clone(),
            run_id: run_id.map(str::to_string),
            task: task.map(str::to_string),
            detail: detail.to_string(),
            at_ms: input.at_ms,
            delayed_ms,
        };
        let mut fired: Vec<(usize, AlertItem)> = Vec::new();
        match &input.event {
            InputEvent::RunFinished {
                run_id,
                succeeded,
                detail,
                ..
            } => {
                let key = format!(
                    "{}\x1f{}",
                    s.agent.as_deref().unwrap_or(""),
                    s.workflow.as_deref().unwrap_or("")
                );
                let prev = self.state.streaks.get(&key).copied().unwrap_or(0);
                if *succeeded {
                    self.state.streaks.remove(&key);
                } else {
                    self.state.streaks.insert(key, prev.saturating_add(1));
                }
                for (i, r) in self.rules.iter().enumerate() {
                    let fires = match r.event {
                        EventKind::RunFailed => !succeeded && r.when.fires(prev + 1),
                        EventKind::RunRecovered => *succeeded && prev > 0,
                        _ => false,
                    };
                    if fires && r.selects(s) {
                        let d = if *succeeded {
                            format!("{detail} (after {prev} failed in a row)")
                        } else if prev > 0 {
                            format!("{detail} ({} failed in a row)", prev + 1)
                        } else {
                            detail.clone()
                        };
                        fired.push((i, item(Some(run_id), None, &d)));
                    }
                }
            }
            InputEvent::DeadlineMissed {
                run_id,
                task,
                detail,
            } => {
                let it = item(Some(run_id), task.as_deref(), detail);
                fired.extend(self.select(EventKind::DeadlineMissed, s, &it));
            }
            InputEvent::FiringsMissed { detail, .. } => {
                let it = item(None, None, detail);
                fired.extend(self.select(EventKind::FiringMissed, s, &it));
            }
            InputEvent::ProbationRevert { detail } => {
                let it = item(None, None, detail);
                fired.extend(self.select(EventKind::ProbationRevert, s, &it));
            }
        }
        for (i, it) in fired {
            let rule = &self.rules[i];
            if silences.iter().any(|x| x.silences(&rule.name, s, now)) {
                continue;
            }
            let key = group_key(&rule.name, s.workflow.as_deref(), false);
            let max = self.settings.max_items;
            let g = self.group(key, i, s.workflow.clone(), false, now);
            g.first_pending_ms.get_or_insert(now);
            if g.pending.len() < max {
                g.pending.push((it, s.clone()));
            } else {
                g.pending_extra += 1;
            }
        }
    }

    fn select(&self, kind: EventKind, s: &Subject, it: &AlertItem) -> Vec<(usize, AlertItem)> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.event == kind && r.selects(s))
            .map(|(i, _)| (i, it.clone()))
            .collect()
    }

    fn group(
        &mut self,
        key: String,
        rule: usize,
        workflow: Option<String>,
        level: bool,
        now: UnixMillis,
    ) -> &mut Group {
        let next = &mut self.state.next_episode;
        let name = &self.rules[rule].name;
        self.state.groups.entry(key).or_insert_with(|| {
            *next += 1;
            Group {
                rule: name.clone(),
                workflow,
                level,
                episode: *next,
                starts_ms: now,
                pending: Vec::new(),
                pending_extra: 0,
                first_pending_ms: None,
                active: BTreeMap::new(),
                cleared: Vec::new(),
                last_sent_ms: None,
                sent: 0,
            }
        })
    }

    /// The level conditions as they stand at `now`: every one that holds (whether or not a
    /// rule's threshold is reached). One held before and absent or below threshold now has
    /// cleared.
    pub fn conditions(&mut self, conditions: &[Condition], now: UnixMillis) {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..self.rules.len() {
            let rule = self.rules[i].clone();
            for c in conditions {
                if c.event != rule.event
                    || !rule.selects(&c.subject)
                    || !c.measure.active(rule.threshold(), now)
                {
                    continue;
                }
                let key = group_key(&rule.name, c.subject.workflow.as_deref(), true);
                seen.entry(key.clone()).or_default().push(c.key.clone());
                let g = self.group(key, i, c.subject.workflow.clone(), true, now);
                g.active
                    .entry(c.key.clone())
                    // What it says may change while it holds (unknown becomes missed).
                    .and_modify(|(it, _)| it.detail.clone_from(&c.detail))
                    .or_insert_with(|| {
                        (
                            AlertItem {
                                agent: c.subject.agent.clone(),
                                workflow: c.subject.workflow.clone(),
                                run_id: None,
                                task: None,
                                detail: c.detail.clone(),
                                at_ms: c.since_ms,
                                delayed_ms: None,
                            },
                            c.subject.clone(),
                        )
                    });
            }
        }
        let max = self.settings.max_items;
        for (key, g) in self.state.groups.iter_mut().filter(|(_, g)| g.level) {
            let keep = seen.get(key);
            let gone: Vec<String> = g
                .active
                .keys()
                .filter(|k| keep.is_none_or(|v| !v.contains(k)))
                .cloned()
                .collect();
            for k in gone {
                if let Some((mut it, _)) = g.active.remove(&k)
                    && g.cleared.len() < max
                {
                    it.detail = format!("cleared: {}", it.detail);
                    g.cleared.push(it);
                }
            }
        }
    }

    /// The notifications due at `now` (each returned once: persist the state with them).
    pub fn poll(&mut self, silences: &[Silence], now: UnixMillis) -> Vec<Notification> {
        let rules = &self.rules;
        let max = self.settings.max_items;
        let mut out = Vec::new();
        let mut remove = Vec::new();
        for (key, g) in self.state.groups.iter_mut() {
            let Some(rule) = rules.iter().find(|r| r.name == g.rule) else {
                remove.push(key.clone());
                continue;
            };
            if g.level {
                if g.active.is_empty() {
                    if g.sent > 0 {
                        let items = std::mem::take(&mut g.cleared);
                        out.push(notification(rule, g, AlertStatus::Resolved, items, 0, now));
                    }
                    remove.push(key.clone());
                    continue;
                }
                let due = match g.last_sent_ms {
                    None => g.starts_ms.saturating_add(rule.group_wait_ms),
                    Some(t) => t.saturating_add(rule.repeat_interval_ms),
                };
                if now < due {
                    continue;
                }
                let visible: Vec<AlertItem> = g
                    .active
                    .values()
                    .filter(|(_, s)| !silences.iter().any(|x| x.silences(&rule.name, s, now)))
                    .map(|(it, _)| it.clone())
                    .collect();
                if visible.is_empty() {
                    continue;
                }
                let extra = visible.len().saturating_sub(max) as u64;
                let items: Vec<AlertItem> = visible.into_iter().take(max).collect();
                g.cleared.clear();
                out.push(notification(
                    rule,
                    g,
                    AlertStatus::Firing,
                    items,
                    extra,
                    now,
                ));
                g.last_sent_ms = Some(now);
                g.sent += 1;
            } else {
                let Some(first) = g.first_pending_ms else {
                    if g.last_sent_ms
                        .is_none_or(|t| now >= t.saturating_add(rule.repeat_interval_ms))
                    {
                        remove.push(key.clone());
                    }
                    continue;
                };
                let mut due = first.saturating_add(rule.group_wait_ms);
                if let Some(t) = g.last_sent_ms {
                    due = due.max(t.saturating_add(rule.repeat_interval_ms));
                }
                if now < due {
                    continue;
                }
                let items: Vec<AlertItem> = g.pending.drain(..).map(|(it, _)| it).collect();
                let extra = std::mem::take(&mut g.pending_extra);
                g.first_pending_ms = None;
                out.push(notification(
                    rule,
                    g,
                    AlertStatus::Firing,
                    items,
                    extra,
                    now,
                ));
                g.last_sent_ms = Some(now);
                g.sent += 1;
            }
        }
        for k in remove {
            self.state.groups.remove(&k);
        }
        out
    }

    /// The earliest time a notification may fall due without new input (the driver also ticks
    /// on a timer, for level conditions that cross their thresholds).
    pub fn next_due(&self) -> Option<UnixMillis> {
        self.state
            .groups
            .values()
            .filter_map(|g| {
                let rule = self.rules.iter().find(|r| r.name == g.rule)?;
                if g.level {
                    Some(match g.last_sent_ms {
                        None => g.starts_ms.saturating_add(rule.group_wait_ms),
                        Some(t) => t.saturating_add(rule.repeat_interval_ms),
                    })
                } else {
                    let first = g.first_pending_ms?;
                    let due = first.saturating_add(rule.group_wait_ms);
                    Some(match g.last_sent_ms {
                        Some(t) => due.max(t.saturating_add(rule.repeat_interval_ms)),
                        None => due,
                    })
                }
            })
            .min()
    }
}

fn notification(
    rule: &Rule,
    g: &Group,
    status: AlertStatus,
    items: Vec<AlertItem>,
    suppressed: u64,
    now: UnixMillis,
) -> Notification {
    let event = rule.event.as_str();
    let n = items.len() as u64 + suppressed;
    let mut agents: Vec<&str> = items.iter().filter_map(|i| i.agent.as_deref()).collect();
    agents.sort_unstable();
    agents.dedup();
    let what = match &g.workflow {
        Some(w) => format!("{event} {w}"),
        None => event.to_string(),
    };
    let delayed = if items.iter().any(|i| i.delayed_ms.is_some()) {
        " (delayed: reported late by a cut-off agent)"
    } else {
        ""
    };
    let summary = match status {
        AlertStatus::Firing => format!(
            "[FIRING] {}: {what}: {n} event{} on {} agent{}{delayed}",
            rule.name,
            if n == 1 { "" } else { "s" },
            agents.len(),
            if agents.len() == 1 { "" } else { "s" },
        ),
        AlertStatus::Resolved => format!("[RESOLVED] {}: {what}: cleared", rule.name),
    };
    let mut labels = vec![
        ("event".to_string(), event.to_string()),
        ("rule".to_string(), rule.name.clone()),
    ];
    if let Some(w) = &g.workflow {
        labels.push(("workflow".into(), w.clone()));
    }
    labels.sort();
    let wf = g.workflow.as_deref().unwrap_or("");
    let dedup_key = match status {
        AlertStatus::Firing => format!("{}/{wf}/{}/{}", rule.name, g.episode, g.sent),
        AlertStatus::Resolved => format!("{}/{wf}/{}/resolved", rule.name, g.episode),
    };
    Notification {
        dedup_key,
        rule: rule.name.clone(),
        status,
        event: event.into(),
        summary,
        items,
        labels,
        starts_ms: g.starts_ms,
        ends_ms: (status == AlertStatus::Resolved).then_some(now),
        created_ms: now,
        suppressed,
    }
}
