//! Shared by the benchmarks that seed a hub store directly (outpost-firingbench,
//! outpost-storebench): played agents enrolled without the network.

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
