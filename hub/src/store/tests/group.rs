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

/// Writers `1..=n`, started while redb's one writer is held so that they pile up and form a
/// group when it is let go; each thread's outcome, in order.
fn queued<R: Send + 'static>(
    store: &Arc<Store>,
    n: u64,
    w: impl Fn(&Store, u64) -> R + Send + Sync + 'static,
) -> Vec<std::thread::Result<R>> {
    let blocker = store.begin_write().unwrap();
    let go = Arc::new(Barrier::new(n as usize + 1));
    let w = Arc::new(w);
    let threads: Vec<_> = (1..=n)
        .map(|k| {
            let (store, go, w) = (store.clone(), go.clone(), w.clone());
            std::thread::spawn(move || {
                go.wait();
                w(&store, k)
            })
        })
        .collect();
    go.wait();
    std::thread::sleep(std::time::Duration::from_millis(200));
    blocker.commit().unwrap();
    threads.into_iter().map(|t| t.join()).collect()
}

/// Writers that wait while another holds redb's writer form one group when it is free.
#[test]
fn writers_queued_behind_a_commit_share_the_next_one() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    put(&store, 0, false).unwrap();
    let before = store.group_stats();
    let n = 16;
    for (k, r) in (1..).zip(queued(&store, n, |s, k| put(s, k, false))) {
        assert_eq!(r.unwrap().unwrap(), k);
    }
    for k in 1..=n {
        assert_eq!(
            stored(&store, k),
            Some(k * 10),
            "write {k} returned Ok, so it is stored"
        );
    }
    let after = store.group_stats();
    assert_eq!(after.members - before.members, n);
    assert!(
        after.commits - before.commits < n,
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
    let n = 24u64;
    let results = queued(&store, n, |s, k| put(s, k, k % 5 == 0));
    for (k, r) in (1..).zip(results) {
        let r = r.unwrap();
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
    let n = 8u64;
    let results = queued(&store, n, |s, k| {
        s.write(|txn: &WriteTransaction| {
            txn.open_table(T)?.insert(k, k * 10)?;
            assert!(k != 3, "member 3 panics after writing");
            Ok(k)
        })
    });
    for (k, r) in (1..).zip(results) {
        match r {
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
