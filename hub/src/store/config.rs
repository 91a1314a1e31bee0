//! The configuration every agent's desired state is computed from (workflow metas, pools,
//! decisions, and the versions they name with their decoded signed bundles), read from the
//! store once per change instead of once per agent session.
//!
//! A deploy wakes every connected session, and each computes its agent's desired state: at
//! 10,000 agents that read and decoded the workflow list, the pools, the decisions and the
//! deployed version's bundle 10,000 times for one change. [`Store::config`] reads them once and
//! hands the same [`ConfigSnapshot`] to every session until the configuration changes.
//!
//! # Invariant
//!
//! The configuration tables cached here (`workflows`, `workflow_versions`, `pools`,
//! `pool_decisions`) are written only in direct write transactions
//! ([`Store::begin_write`]), never inside the group commit (whose writers are agent sessions).
//! [`DirectWrite::commit`](super::file::DirectWrite::commit) bumps the generation after the
//! commit is durable; a snapshot is tagged with the generation read *before* its data, so a
//! snapshot is never used after a commit newer than its data has returned (a change is seen
//! by every desired-state computation that starts after the writer's call returned, which is
//! when sessions are told that the desired state changed). Any direct write invalidates, also
//! one of another table: a few more reads, never a stale one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use outpost_common::proto::SignedBundle;

use super::error::StoreError;
use super::file::Store;
use super::pools::{PoolDecision, PoolRecord, WorkflowPool};
use super::records::WorkflowMeta;

/// The cache of one [`Store`].
#[derive(Default)]
pub(super) struct ConfigCache {
    /// Bumped after every durable direct write.
    generation: AtomicU64,
    /// The last snapshot read (possibly of an older generation).
    snapshot: Mutex<Option<Arc<ConfigSnapshot>>>,
}

impl ConfigCache {
    /// A direct write committed: the next [`Store::config`] reads the store again.
    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The configuration at one generation. Shared by every session that computes a desired state
/// until the next direct write.
#[derive(Debug)]
pub(crate) struct ConfigSnapshot {
    generation: u64,
    /// Every workflow with its state, by name.
    pub(crate) workflows: Vec<(String, WorkflowMeta)>,
    /// Every pool, by name.
    pub(crate) pools: Vec<PoolRecord>,
    /// Every pool decision.
    pub(crate) decisions: Vec<(WorkflowPool, PoolDecision)>,
    /// The versions asked for so far at this generation.
    versions: Mutex<HashMap<(String, u64), Arc<CachedVersion>>>,
}

/// What a desired state needs of one stored version.
#[derive(Debug)]
pub(crate) struct CachedVersion {
    /// blake3 hex of the content.
    pub(crate) content_hash: String,
    /// The signed bundle as stored (its bytes are the bytes signed).
    pub(crate) bundle: SignedBundle,
}

impl ConfigSnapshot {
    /// Whether `workflow` is paused at the hub.
    pub(crate) fn paused(&self, workflow: &str) -> bool {
        self.workflows
            .iter()
            .any(|(n, m)| n == workflow && m.paused)
    }

    /// `version` of `workflow`, read and decoded once per generation.
    pub(crate) fn version(
        &self,
        store: &Store,
        workflow: &str,
        version: u64,
    ) -> Result<Arc<CachedVersion>, StoreError> {
        let key = (workflow.to_string(), version);
        if let Some(v) = self.lock_versions().get(&key) {
            return Ok(v.clone());
        }
        // Read outside the lock: two sessions may both read a version the first time; the
        // result is the same (a stored version is never rewritten).
        let stored = store.version(workflow, Some(version))?;
        let cached = Arc::new(CachedVersion {
            bundle: stored.signed_bundle()?,
            content_hash: stored.content_hash,
        });
        self.lock_versions().insert(key, cached.clone());
        Ok(cached)
    }

    fn lock_versions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Arc<CachedVersion>>> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store {
    /// The configuration now (see the [module docs](self)): the cached snapshot if no direct
    /// write committed since it was read, else a fresh one.
    pub(crate) fn config(&self) -> Result<Arc<ConfigSnapshot>, StoreError> {
        let cache = &self.config;
        // Read before the data: a commit after this point makes the snapshot stale.
        let generation = cache.generation.load(Ordering::Acquire);
        if let Some(s) = cache
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|s| s.generation == generation)
        {
            return Ok(s.clone());
        }
        let fresh = Arc::new(ConfigSnapshot {
            generation,
            workflows: self.workflows()?,
            pools: self.pools()?,
            decisions: self.decisions()?,
            versions: Mutex::default(),
        });
        let mut slot = cache
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Keep the newest generation read (a slower reader of an older one does not replace it).
        if slot.as_ref().is_none_or(|s| s.generation <= generation) {
            *slot = Some(fresh.clone());
        }
        Ok(fresh)
    }
}
