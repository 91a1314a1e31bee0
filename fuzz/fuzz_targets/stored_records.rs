//! Stored records, as the stores decode them when they read a table (a corrupt or hand-edited
//! database): `[selector, record bytes...]`, the selector picking the type, decoded with
//! minicbor like the stores' `decode` helpers do.
//!
//! Types: the shared records (`outpost_common::record`, `trust::SignedRoot` as the agent stores
//! its trusted root metadata, `trust::WorkflowTrustState`), the agent store's
//! (`outpost_agent::store`, `outpost_agent::identity`, hook jobs), the hub store's
//! (`outpost_hub::store`, the firing watch) and the alert pipeline's (`outpost_alerts`: inputs,
//! notifications, silences, the evaluator's state).
//!
//! Properties besides "never panics": a record that decodes re-encodes to bytes that decode to
//! the same encoding.
//!
//! Run with `cargo +nightly fuzz run stored_records` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minicbor::{Decode, Encode};

fn check<T: Encode<()> + for<'b> Decode<'b, ()>>(bytes: &[u8]) {
    if let Ok(v) = minicbor::decode::<T>(bytes) {
        let again = minicbor::to_vec(&v).expect("a decoded record encodes");
        let back: T = minicbor::decode(&again).expect("a re-encoded record decodes");
        let third = minicbor::to_vec(&back).expect("encodes");
        assert_eq!(again, third, "encoding is not stable across a round trip");
    }
}

type Check = fn(&[u8]);

const TYPES: &[Check] = &[
    check::<outpost_common::record::RunRecord>,
    check::<outpost_common::record::TaskInstanceRecord>,
    check::<outpost_common::record::AttemptRecord>,
    check::<outpost_common::record::MissedFirings>,
    check::<outpost_common::record::OutboxEntry>,
    check::<outpost_common::record::StatusEvent>,
    check::<outpost_common::trust::SignedRoot>,
    check::<outpost_common::trust::WorkflowTrustState>,
    check::<outpost_agent::store::WorkflowVersion>,
    check::<outpost_agent::identity::Identity>,
    check::<outpost_agent_core::deploy::DeployState>,
    check::<outpost_agent_core::deploy::ProbationState>,
    check::<outpost_hub::store::WorkflowMeta>,
    check::<outpost_hub::store::StoredVersion>,
    check::<outpost_hub::store::AgentRecord>,
    check::<outpost_hub::store::TokenRecord>,
    check::<outpost_hub::store::IssuedAssignment>,
    check::<outpost_hub::store::DeployResultRecord>,
    check::<outpost_hub::store::PendingVersion>,
    check::<outpost_hub::store::AuditEntry>,
    check::<outpost_hub::store::PoolRecord>,
    check::<outpost_hub::store::PoolDecision>,
    check::<outpost_hub::store::RolloutRecord>,
    check::<outpost_hub::store::RolloutAssign>,
    check::<outpost_hub::store::RolloutEvent>,
    check::<outpost_hub::store::OperatorRecord>,
    check::<outpost_common::record::DeadlineMiss>,
    check::<outpost_agent_core::hooks::HookJob>,
    check::<outpost_alerts::Input>,
    check::<outpost_alerts::Notification>,
    check::<outpost_alerts::Silence>,
    check::<outpost_hub::store::DeliveryRecord>,
    check::<outpost_hub::firings::watch::WatchState>,
    evaluator_state,
];

/// The alert evaluator's stored state, as the hub's alert driver reads it: an error, or a state
/// that encodes again.
fn evaluator_state(bytes: &[u8]) {
    if let Ok(ev) =
        outpost_alerts::Evaluator::decode(Vec::new(), outpost_alerts::Settings::default(), bytes)
    {
        let _ = ev.encode();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    TYPES[usize::from(sel) % TYPES.len()](bytes);
});
