//! Run-history retention at the hub: the `[retention]` section of `hub.toml` and the periodic
//! task that applies it (the deleting itself is `Store::apply_retention`, in bounded batches).
//!
//! ```toml
//! [retention]
//! max_age = "90d"              # delete finished runs older than this
//! max_runs_per_workflow = 1000 # keep the newest N runs of each workflow on each agent
//! keep_recent = "1h"           # never delete a run younger than this (default 1h)
//! interval = "10m"             # how often the task runs (default 10m)
//! batch = 500                  # most runs deleted in one write transaction (default 500)
//! ```
//!
//! Without `max_age` and `max_runs_per_workflow` the hub keeps every run (the default).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::hub::{Hub, now_ms};
use crate::store::{RetentionPolicy, RetentionReport};

/// Default interval of the retention task.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
/// Most batches one round of the task deletes (it goes on at the next round).
const MAX_BATCHES_PER_ROUND: usize = 1000;
/// Pause between two batches: the ingest's write transactions get the store in between.
const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// `[retention]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    max_age: Option<String>,
    max_runs_per_workflow: Option<u64>,
    keep_recent: Option<String>,
    interval: Option<String>,
    batch: Option<usize>,
}

/// `[retention]` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// What is kept.
    pub policy: RetentionPolicy,
    /// How often the task runs.
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            policy: RetentionPolicy::default(),
            interval: DEFAULT_INTERVAL,
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Resolve `[retention]`; the error names the key.
pub(crate) fn resolve(raw: RawRetention) -> Result<RetentionConfig, String> {
    let dur = |v: &Option<String>, key: &str| -> Result<Option<Duration>, String> {
        v.as_deref()
            .map(|s| {
                outpost_common::duration::parse_duration(s)
                    .map_err(|e| format!("[retention] {key} = {s:?}: {e}"))
            })
            .transpose()
    };
    let mut out = RetentionConfig::default();
    out.policy.max_age_ms = dur(&raw.max_age, "max_age")?.map(ms);
    if out.policy.max_age_ms == Some(0) {
        return Err("[retention] max_age must be at least one second".into());
    }
    if raw.max_runs_per_workflow == Some(0) {
        return Err("[retention] max_runs_per_workflow must be at least 1".into());
    }
    out.policy.max_runs_per_workflow = raw.max_runs_per_workflow;
    if let Some(k) = dur(&raw.keep_recent, "keep_recent")? {
        out.policy.keep_recent_ms = ms(k);
    }
    if let Some(i) = dur(&raw.interval, "interval")? {
        if i.is_zero() {
            return Err("[retention] interval must be more than zero".into());
        }
        out.interval = i;
    }
    if let Some(b) = raw.batch {
        if b == 0 {
            return Err("[retention] batch must be at least 1".into());
        }
        out.policy.batch = b;
    }
    Ok(out)
}

impl Hub {
    /// Apply `policy` now, batch after batch (each its own short write transaction, with a
    /// pause between them), until nothing is left to delete or the round's limit is reached.
    pub async fn apply_retention(
        self: &Arc<Self>,
        policy: RetentionPolicy,
    ) -> anyhow::Result<RetentionReport> {
        let mut total = RetentionReport::default();
        for _ in 0..MAX_BATCHES_PER_ROUND {
            let hub = self.clone();
            let r =
                tokio::task::spawn_blocking(move || hub.store().apply_retention(&policy, now_ms()))
                    .await??;
            total.runs += r.runs;
            total.tasks += r.tasks;
            total.more = r.more;
            if !r.more {
                break;
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
        Ok(total)
    }
}

/// The retention task: every `cfg.interval`, apply the policy (nothing to do without limits).
pub async fn drive(
    hub: Arc<Hub>,
    cfg: RetentionConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if !cfg.policy.enabled() {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(cfg.interval) => {}
            _ = shutdown.changed() => return,
        }
        match hub.apply_retention(cfg.policy).await {
            Ok(r) if r.runs > 0 => {
                tracing::info!(runs = r.runs, tasks = r.tasks, more = r.more, "retention");
            }
            Ok(_) => {}
            Err(e) => tracing::error!("retention: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_resolves_and_names_bad_keys() {
        let c = resolve(RawRetention::default()).unwrap();
        assert!(!c.policy.enabled());
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        let c = resolve(RawRetention {
            max_age: Some("90d".into()),
            max_runs_per_workflow: Some(5),
            keep_recent: Some("0s".into()),
            interval: Some("2s".into()),
            batch: Some(7),
        })
        .unwrap();
        assert_eq!(c.policy.max_age_ms, Some(90 * 86_400_000));
        assert_eq!(c.policy.max_runs_per_workflow, Some(5));
        assert_eq!(c.policy.keep_recent_ms, 0);
        assert_eq!(c.policy.batch, 7);
        assert_eq!(c.interval, Duration::from_secs(2));
        let bad = resolve(RawRetention {
            max_age: Some("soon".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(bad.contains("max_age"), "{bad}");
        assert!(
            resolve(RawRetention {
                max_runs_per_workflow: Some(0),
                ..Default::default()
            })
            .is_err()
        );
    }
}
