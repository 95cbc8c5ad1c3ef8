//! `Options::expected_payloads`: sizing the RAM index at open. (Its own
//! test binary: `tests/memory.rs` measures the process's RSS, which this
//! test's tables would disturb.)
mod common;

use common::*;
use payloadstore::{Options, PayloadStore};

/// `Options::expected_payloads`: the RAM index is sized at open, loading up
/// to that many changes its size not at all (no rebuild), deletes do not
/// shrink it below that size, and a store reopened from its checkpoint
/// with a larger expectation grows at open. The answers stay right
/// throughout.
#[test]
fn expected_payloads_sizes_the_index_once() {
    let t = TempDir::new("mem-expected");
    let n = 100_000u64;
    let id = |i: u64| u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64 | u128::from(i);
    let opts = |count| Options::default().expected_payloads(count);
    let s = PayloadStore::open_with_options(t.store(), opts(n)).unwrap();
    let sized = s.stats().index_memory_bytes;
    assert!(sized >= n * 18, "{sized} bytes for {n} expected");
    for i in 0..n {
        s.append(id(i), &i.to_le_bytes(), None).unwrap();
        if i % 10_000 == 0 {
            assert_eq!(s.stats().index_memory_bytes, sized, "after {i} appends");
        }
    }
    assert_eq!(s.stats().index_memory_bytes, sized);
    for i in (0..n).filter(|i| i % 20 != 0) {
        s.delete(id(i)).unwrap();
    }
    assert_eq!(
        s.stats().index_memory_bytes,
        sized,
        "no shrink below the reservation"
    );
    s.close().unwrap();
    // reopened from the checkpoint, expecting 4x as many: grown at open
    let s = PayloadStore::open_with_options(t.store(), opts(4 * n)).unwrap();
    let grown = s.stats().index_memory_bytes;
    assert!(grown >= 4 * n * 18, "{grown} bytes for {} expected", 4 * n);
    for i in 0..n {
        let want = (i % 20 == 0).then(|| i.to_le_bytes().to_vec());
        assert_eq!(s.get(id(i)).unwrap(), want, "payload {i}");
    }
    for i in n..4 * n {
        s.append(id(i), &i.to_le_bytes(), None).unwrap();
    }
    assert_eq!(s.stats().index_memory_bytes, grown);
    assert_eq!(s.len() as u64, n / 20 + 3 * n);
    drop(s);
    // The floor belongs to the handle, not to the store: reopened without
    // an expectation, the table has its checkpointed size, and deletes
    // shrink it again.
    let s = PayloadStore::open(t.store()).unwrap();
    assert_eq!(s.stats().index_memory_bytes, grown);
    for i in n..4 * n {
        s.delete(id(i)).unwrap();
    }
    assert!(s.stats().index_memory_bytes * 4 < grown);
    assert_eq!(s.get(id(0)).unwrap(), Some(0u64.to_le_bytes().to_vec()));
    assert_eq!(s.get(id(n)).unwrap(), None);
}

/// An expectation the machine cannot hold is refused at open with a
/// specific error, before anything is created, and a store that exists
/// stays as it was.
#[test]
fn an_expectation_beyond_ram_is_refused() {
    use payloadstore::Error;
    let t = TempDir::new("mem-expected-huge");
    let s = PayloadStore::open(t.store()).unwrap();
    s.append(1, b"kept", None).unwrap();
    s.close().unwrap();
    let huge = Options::default().expected_payloads(u64::MAX);
    let r = PayloadStore::open_with_options(t.store(), huge.clone());
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{:?}", r.err());
    let fresh = t.path().join("never-created");
    let r = PayloadStore::open_with_options(&fresh, huge.clone());
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
    assert!(!fresh.exists());
    // DiskHash ignores the option
    let dh = PayloadStore::open_with_options(
        t.path().join("dh"),
        huge.backend(payloadstore::IndexBackend::DiskHash),
    )
    .unwrap();
    drop(dh);
    let s = PayloadStore::open(t.store()).unwrap();
    assert_eq!(s.get(1).unwrap().as_deref(), Some(&b"kept"[..]));
}
