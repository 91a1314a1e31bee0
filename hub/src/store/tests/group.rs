//! Group commit (`group.rs`): concurrent writers share commits, every write returned `Ok` is in
//! the store, and a failing member takes nothing of the others with it.

use std::sync::{Arc, Barrier};

use redb::{ReadableDatabase, TableDefinition, WriteTransaction};

use super::super::{Store, StoreError};
use super::open;

const T: TableDefinition<u64, u64> = TableDefinition::new("group_test");

fn put(store: &Store, k: u64, fail: bool) -> Result<u64, StoreError> {
    store.write(|txn: &WriteTransaction| {
        txn.open_table(T)?.insert(k, k * 10)?;
        if fail {
            return Err(StoreError::Refused(format!(
                "member {k} fails after writing"
            )));
        }
        Ok(k)
    })
}

fn stored(store: &Store, k: u64) -> Option<u64> {
    let txn = store.db().begin_read().unwrap();
    let t = txn.open_table(T).unwrap();
    t.get(k).unwrap().map(|v| v.value())
}

/// Writers that wait while another holds redb's writer form one group when it is free.
#[test]
fn writers_queued_behind_a_commit_share_the_next_one() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    put(&store, 0, false).unwrap();
    let before = store.group_stats();
    // Hold redb's one writer so that the writers below pile up.
    let blocker = store.begin_write().unwrap();
    let n = 16;
    let go = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (1..=n as u64)
        .map(|k| {
            let (store, go) = (store.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                put(&store, k, false)
            })
        })
        .collect();
    go.wait();
    std::thread::sleep(std::time::Duration::from_millis(200));
    blocker.commit().unwrap();
    for (k, t) in (1..).zip(threads) {
        assert_eq!(t.join().unwrap().unwrap(), k);
    }
    for k in 1..=n as u64 {
        assert_eq!(
            stored(&store, k),
            Some(k * 10),
            "write {k} returned Ok, so it is stored"
        );
    }
    let after = store.group_stats();
    assert_eq!(after.members - before.members, n as u64);
    assert!(
        after.commits - before.commits < n as u64,
        "{n} queued writers made {} commits: none shared",
        after.commits - before.commits
    );
    assert!(after.largest > 1);
}

/// A member that fails after writing aborts its group; its error is its own, the other members
/// run again and are stored, and nothing of the failed one is.
#[test]
fn a_failing_member_loses_only_its_own_write() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let blocker = store.begin_write().unwrap();
    let n = 24u64;
    let go = Arc::new(Barrier::new(n as usize + 1));
    let threads: Vec<_> = (1..=n)
        .map(|k| {
            let (store, go) = (store.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                put(&store, k, k % 5 == 0)
            })
        })
        .collect();
    go.wait();
    std::thread::sleep(std::time::Duration::from_millis(200));
    blocker.commit().unwrap();
    for (k, t) in (1..).zip(threads) {
        let r = t.join().unwrap();
        if k % 5 == 0 {
            assert!(
                matches!(&r, Err(StoreError::Refused(m)) if m.contains(&format!("member {k} "))),
                "{r:?}"
            );
            assert_eq!(stored(&store, k), None, "failed member {k} left its write");
        } else {
            assert_eq!(r.unwrap(), k);
            assert_eq!(stored(&store, k), Some(k * 10), "member {k} lost");
        }
    }
}

/// A member that panics mid-write is dropped like a failing one: its panic reaches its caller,
/// the other members are stored, and the store keeps taking writes.
#[test]
fn a_panicking_member_does_not_wedge_the_group() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let blocker = store.begin_write().unwrap();
    let n = 8u64;
    let go = Arc::new(Barrier::new(n as usize + 1));
    let threads: Vec<_> = (1..=n)
        .map(|k| {
            let (store, go) = (store.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                store.write(|txn: &WriteTransaction| {
                    txn.open_table(T)?.insert(k, k * 10)?;
                    assert!(k != 3, "member 3 panics after writing");
                    Ok(k)
                })
            })
        })
        .collect();
    go.wait();
    std::thread::sleep(std::time::Duration::from_millis(200));
    blocker.commit().unwrap();
    for (k, t) in (1..).zip(threads) {
        match t.join() {
            Err(_) => assert_eq!(k, 3, "only member 3 panics"),
            Ok(r) => {
                assert_eq!(r.unwrap(), k);
                assert_eq!(stored(&store, k), Some(k * 10), "member {k} lost");
            }
        }
    }
    assert_eq!(stored(&store, 3), None);
    assert_eq!(put(&store, 100, false).unwrap(), 100);
}
