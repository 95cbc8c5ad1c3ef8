//! With `prefault(false)` and `index_growth_thread(false)` the store runs
//! on the caller's threads only, through a load large enough that the RAM
//! index grows many times. (Its own test binary: the test harness runs
//! the tests of one binary on parallel threads, which would blur the
//! count.)
#![cfg(target_os = "linux")]
mod common;

use common::*;
use payloadstore::{Options, PayloadStore};

/// The names of this process's threads.
fn threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_store_told_to_keep_to_the_callers_threads_starts_none() {
    let dir = TempDir::new("threads");
    let before = threads();
    let opts = Options::default()
        .prefault(false)
        .index_growth_thread(false);
    let store = PayloadStore::open_with_options(dir.store(), opts).unwrap();
    let bodies: Vec<Vec<u8>> = (0..1000u128)
        .map(|k| payload(k, 40 + (k % 60) as usize))
        .collect();
    for start in (0..300_000u128).step_by(1000) {
        let batch: Vec<(u128, &[u8])> = bodies
            .iter()
            .enumerate()
            .map(|(k, b)| (start + k as u128, &b[..]))
            .collect();
        store.append_batch(&batch, None).unwrap();
        assert_eq!(threads(), before, "after the batch from id {start}");
    }
    assert!(
        store.stats().index_memory_bytes > 3_000_000,
        "the table grew"
    );
    for id in (0..300_000u128).step_by(997) {
        let k = (id % 1000) as usize;
        assert_eq!(store.get(id).unwrap().as_deref(), Some(&bodies[k][..]));
    }
}
