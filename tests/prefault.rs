//! `Options::prefault`: the helper thread runs only when enabled and while
//! syncs are rare, is gone when the store is, and the data it ran ahead of
//! reads back. (Its own binary: it counts this process's threads.)
mod common;

use common::*;
use payloadstore::{CompressionType, Options, PayloadStore};

fn prefault_threads() -> usize {
    threads_named(PREFAULT_THREAD)
}

/// Appends 24 MiB in 8 KiB payloads; with `sync_every`, syncs that often.
fn load(s: &PayloadStore, sync_every: Option<u128>) -> u128 {
    let n = 3 * 1024;
    for id in 0..n {
        s.append(id, &payload(id, 8192), Some(CompressionType::None))
            .unwrap();
        if sync_every.is_some_and(|k| id % k == k - 1) {
            s.sync().unwrap();
        }
    }
    n
}

#[cfg(target_os = "linux")]
#[test]
fn the_prefault_thread_follows_the_option_and_the_sync_rate() {
    for backend in backends() {
        for (enabled, sync_every, expect) in [
            (false, None, 0),
            (true, Some(64), 0), // a sync every 512 KiB: populating would write zeros twice
            (true, None, 1),
        ] {
            let t = TempDir::new("prefault");
            let s = PayloadStore::open_with_options(
                t.store(),
                Options::default().backend(backend).prefault(enabled),
            )
            .unwrap();
            let n = load(&s, sync_every);
            assert_eq!(
                prefault_threads(),
                expect,
                "{backend:?} enabled {enabled} sync every {sync_every:?}"
            );
            for id in (0..n).step_by(7) {
                assert_eq!(s.get(id).unwrap().unwrap(), payload(id, 8192));
            }
            s.close().unwrap();
            assert_eq!(prefault_threads(), 0, "the thread outlived its store");
            let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
            assert_eq!(s.len() as u128, n);
            for id in (0..n).step_by(5) {
                assert_eq!(s.get(id).unwrap().unwrap(), payload(id, 8192));
            }
        }
    }
}
