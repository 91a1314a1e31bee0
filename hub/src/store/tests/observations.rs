//! Agents' observations (`observations.rs`): last contacts and clock offsets are seen by every
//! reader at once, written in one batch, and never replace a later value.

use super::super::Store;
use super::{enrolled, open};

/// The record as stored, without the observations not written yet.
fn stored(store: &Store, id: &str) -> super::AgentRecord {
    let txn = redb::ReadableDatabase::begin_read(&*store.db()).unwrap();
    let t = txn.open_table(super::super::schema::AGENTS).unwrap();
    let v = redb::ReadableTable::get(&t, id).unwrap().unwrap();
    minicbor::decode(v.value()).unwrap()
}

#[test]
fn observations_are_read_at_once_and_written_in_one_batch() {
    let (_d, store) = open();
    enrolled(&store, "a");
    enrolled(&store, "b");
    store.touch_agent("a", 100);
    store.record_clock_offset("a", -1_500, 90);
    store.touch_agent("b", 120);
    // Readers see them before they are written.
    let a = store.agent("a").unwrap();
    assert_eq!(
        (a.last_seen_ms, a.clock_offset),
        (Some(100), Some((-1_500, 90)))
    );
    let all = store.agents().unwrap();
    assert_eq!(
        all.iter().map(|r| r.last_seen_ms).collect::<Vec<_>>(),
        vec![Some(100), Some(120)]
    );
    assert_eq!(stored(&store, "a").last_seen_ms, None);
    assert_eq!(store.pending_observations(), 2);
    // One flush writes both records and forgets what it wrote.
    assert_eq!(store.flush_observations().unwrap(), 2);
    assert_eq!(store.pending_observations(), 0);
    let a = stored(&store, "a");
    assert_eq!(
        (a.last_seen_ms, a.clock_offset),
        (Some(100), Some((-1_500, 90)))
    );
    assert_eq!(stored(&store, "b").last_seen_ms, Some(120));
    assert_eq!(store.flush_observations().unwrap(), 0);
}

#[test]
fn the_later_observation_wins_over_the_stored_one() {
    let (_d, store) = open();
    enrolled(&store, "a");
    store.touch_agent("a", 300);
    store.record_clock_offset("a", 40, 300);
    assert_eq!(store.flush_observations().unwrap(), 1);
    // Older observations (a slow session's) neither show nor overwrite the stored ones.
    store.touch_agent("a", 200);
    store.record_clock_offset("a", 7, 200);
    let a = store.agent("a").unwrap();
    assert_eq!(
        (a.last_seen_ms, a.clock_offset),
        (Some(300), Some((40, 300)))
    );
    assert_eq!(store.flush_observations().unwrap(), 0);
    let a = stored(&store, "a");
    assert_eq!(
        (a.last_seen_ms, a.clock_offset),
        (Some(300), Some((40, 300)))
    );
    // A later one does.
    store.touch_agent("a", 400);
    store.record_clock_offset("a", -3, 410);
    assert_eq!(store.flush_observations().unwrap(), 1);
    let a = stored(&store, "a");
    assert_eq!(
        (a.last_seen_ms, a.clock_offset),
        (Some(400), Some((-3, 410)))
    );
}

#[test]
fn an_observation_of_an_agent_that_is_gone_is_dropped() {
    let (_d, store) = open();
    store.touch_agent("agent-gone", 100);
    assert_eq!(store.flush_observations().unwrap(), 0);
    assert_eq!(store.pending_observations(), 0);
    assert!(store.agent("agent-gone").is_err());
}

#[test]
fn unflushed_observations_are_lost_with_the_process_flushed_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    {
        let store = Store::open(&path).unwrap();
        enrolled(&store, "a");
        store.touch_agent("a", 100);
        assert_eq!(store.flush_observations().unwrap(), 1);
        store.touch_agent("a", 200);
        assert_eq!(store.agent("a").unwrap().last_seen_ms, Some(200));
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.agent("a").unwrap().last_seen_ms, Some(100));
}
