//! 4 readers and 2 writers (plus a checkpointer) for several seconds; every
//! read is checked against what was written.
mod common;

use common::*;
use payloadstore::{Options, PayloadStore, SyncPolicy};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MAX_PER_WRITER: usize = 1 << 21;
/// Each writer keeps going past the deadline until it has made this many
/// appends and the readers have verified `MIN_READS`: the test checks
/// agreement, not speed, so a slow disk (GroupCommit waits for fsync) only
/// makes it take longer.
const MIN_PER_WRITER: usize = 150;
const MIN_READS: u64 = 2000;

/// Payload for `id` at `version`: the version in the first 4 bytes, then
/// deterministic content.
fn versioned(id: u128, version: u32) -> Vec<u8> {
    let len = [8usize, 300, 1500, 9000][(id as usize + version as usize) % 4];
    let mut v = version.to_le_bytes().to_vec();
    v.extend(payload(id ^ (u128::from(version) << 100), len));
    v
}

#[test]
fn readers_and_writers_agree() {
    for backend in backends() {
        for policy in [SyncPolicy::Manual, SyncPolicy::GroupCommit] {
            run(backend, policy, Duration::from_millis(2500));
        }
    }
}

fn run(backend: payloadstore::IndexBackend, policy: SyncPolicy, dur: Duration) {
    let t = TempDir::new("conc");
    let store = PayloadStore::open_with_options(
        t.store(),
        Options::default().backend(backend).sync_policy(policy),
    )
    .unwrap();
    let done: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(0)).collect();
    let latest: Vec<Vec<AtomicU32>> = (0..2)
        .map(|_| (0..MAX_PER_WRITER).map(|_| AtomicU32::new(0)).collect())
        .collect();
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let deadline = Instant::now() + dur;
    std::thread::scope(|sc| {
        for w in 0..2usize {
            let (store, done, latest, stop, reads) = (&store, &done, &latest, &stop, &reads);
            sc.spawn(move || {
                let mut rng = Rng(w as u64 + 1);
                let mut i = 0usize;
                while i < MAX_PER_WRITER
                    && (Instant::now() < deadline
                        || i < MIN_PER_WRITER
                        || reads.load(Ordering::Relaxed) < MIN_READS)
                {
                    let id = (w as u128) << 64 | i as u128;
                    store.append(id, &versioned(id, 0), None).unwrap();
                    i += 1;
                    done[w].store(i as u64, Ordering::Release);
                    if i.is_multiple_of(10) {
                        // replace an older id with a newer version
                        let j = rng.below(i as u64) as usize;
                        let id = (w as u128) << 64 | j as u128;
                        let v = latest[w][j].load(Ordering::Relaxed) + 1;
                        store.append(id, &versioned(id, v), None).unwrap();
                        latest[w][j].store(v, Ordering::Release);
                    }
                }
                stop.store(true, Ordering::Release);
            });
        }
        sc.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                store.save_index().unwrap();
                store.sync().unwrap();
                let s = store.stats();
                assert!(s.durable_offset <= s.file_bytes);
            }
        });
        for r in 0..4u64 {
            let (store, done, latest, stop, reads) = (&store, &done, &latest, &stop, &reads);
            sc.spawn(move || {
                let mut rng = Rng(100 + r);
                let mut buf = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let w = rng.below(2) as usize;
                    let upto = done[w].load(Ordering::Acquire);
                    if upto == 0 {
                        continue;
                    }
                    let j = rng.below(upto) as usize;
                    let id = (w as u128) << 64 | j as u128;
                    let min_v = latest[w][j].load(Ordering::Acquire);
                    assert!(
                        store.get_to_vec(id, &mut buf).unwrap(),
                        "id {id} appended but not found"
                    );
                    let v = u32::from_le_bytes(buf[..4].try_into().unwrap());
                    assert!(
                        v >= min_v,
                        "read version {v} after version {min_v} was acknowledged"
                    );
                    assert_eq!(buf, versioned(id, v));
                    // ids never written are absent
                    assert!(!store.has_payload((w as u128) << 64 | (upto as u128 + 1_000_000)));
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let total: u64 = done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
    let nreads = reads.load(Ordering::Relaxed);
    eprintln!("{backend:?} {policy:?}: {total} ids appended, {nreads} verified reads");
    assert!(
        total >= 2 * MIN_PER_WRITER as u64 && nreads >= MIN_READS,
        "{total} appends, {nreads} reads"
    );
    assert_eq!(store.len() as u64, total);
    drop(store);
    let store = PayloadStore::open_with_backend(t.store(), backend).unwrap();
    assert_eq!(store.len() as u64, total);
    for (w, d) in done.iter().enumerate() {
        for j in (0..d.load(Ordering::Relaxed) as usize).step_by(97) {
            let id = (w as u128) << 64 | j as u128;
            assert_eq!(
                store.get(id).unwrap().unwrap(),
                versioned(id, latest[w][j].load(Ordering::Relaxed))
            );
        }
    }
}

/// Two threads load large compressible batches (each compressed on all
/// cores in runs and written run by run, `append_batch`), a third appends
/// one at a time, and two readers check whatever they find, meanwhile. Then
/// every payload reads back, also after a reopen.
#[test]
fn pipelined_batches_beside_appends_and_readers() {
    for backend in backends() {
        let t = TempDir::new("pipe-conc");
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        let batches = 3u128;
        let per_batch = 24u128; // 24 x 200 KB: more than one run
        let batch_id = |w: u128, b: u128, k: u128| (w << 64) | (b << 32) | k;
        let big = |id: u128| payload(id, 200_000);
        let done = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let s = &s;
            let mut writers = Vec::new();
            for w in 1..=2u128 {
                writers.push(sc.spawn(move || {
                    for b in 0..batches {
                        let datas: Vec<(u128, Vec<u8>)> = (0..per_batch)
                            .map(|k| (batch_id(w, b, k), big(batch_id(w, b, k))))
                            .collect();
                        let refs: Vec<(u128, &[u8])> =
                            datas.iter().map(|(id, d)| (*id, d.as_slice())).collect();
                        let locs = s.append_batch(&refs, None).unwrap();
                        // records of one batch lie back to back, in order
                        for pair in locs.windows(2) {
                            assert_eq!(pair[1].0, pair[0].0 + 32 + u64::from(pair[0].1));
                        }
                    }
                }));
            }
            writers.push(sc.spawn(move || {
                for k in 0..2000u128 {
                    s.append(k, &payload(k, 700), None).unwrap();
                }
            }));
            let readers: Vec<_> = (0..2u64)
                .map(|r| {
                    let done = &done;
                    sc.spawn(move || {
                        let mut x = r + 1;
                        while !done.load(Ordering::Acquire) {
                            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                            let (w, b, k) = (
                                1 + u128::from(x >> 63),
                                u128::from(x >> 40) % batches,
                                u128::from(x >> 8) % per_batch,
                            );
                            if let Some(v) = s.get(batch_id(w, b, k)).unwrap() {
                                assert_eq!(v, big(batch_id(w, b, k)));
                            }
                            let k = u128::from(x >> 20) % 2000;
                            if let Some(v) = s.get(k).unwrap() {
                                assert_eq!(v, payload(k, 700));
                            }
                        }
                    })
                })
                .collect();
            for h in writers {
                h.join().unwrap();
            }
            done.store(true, Ordering::Release);
            for h in readers {
                h.join().unwrap();
            }
        });
        let check = |s: &PayloadStore| {
            assert_eq!(s.len() as u128, 2000 + 2 * batches * per_batch);
            for w in 1..=2 {
                for b in 0..batches {
                    for k in 0..per_batch {
                        assert_eq!(
                            s.get(batch_id(w, b, k)).unwrap().unwrap(),
                            big(batch_id(w, b, k))
                        );
                    }
                }
            }
            for k in 0..2000u128 {
                assert_eq!(s.get(k).unwrap().unwrap(), payload(k, 700));
            }
            assert!(s.verify().unwrap().is_clean());
        };
        check(&s);
        s.close().unwrap();
        check(&PayloadStore::open_with_backend(t.store(), backend).unwrap());
    }
}

/// The RAM table grows several times while it is being filled (from 64K
/// slots on, in a helper thread: src/index/memory.rs, Growing), with
/// replacements and deletes among the appends. Two readers check, the
/// whole time, every id whose fate is settled: ids below the published
/// mark that are never touched again must read back exactly; deleted ones
/// must be absent.
#[test]
fn readers_agree_while_the_table_grows() {
    let dir = TempDir::new("grow");
    let store = PayloadStore::open(dir.store()).unwrap();
    const N: u64 = 240_000;
    const BATCH: u64 = 1000;
    // id k: appended in batch k / BATCH; ids k % 7 == 3 are replaced by a
    // second version in the next batch, ids k % 11 == 5 deleted in it
    // small payloads: the table is what is being tested
    let body = |k: u64, version: u32| {
        let mut v = version.to_le_bytes().to_vec();
        v.extend(payload(
            u128::from(k) | u128::from(version) << 100,
            20 + (k % 100) as usize,
        ));
        v
    };
    let settled = AtomicU64::new(0); // ids below this have their final state
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for r in 0..2u64 {
            let (store, settled, done, reads) = (&store, &settled, &done, &reads);
            s.spawn(move || {
                let mut rng = Rng(r + 1);
                while !done.load(Ordering::Acquire) {
                    let below = settled.load(Ordering::Acquire);
                    if below == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    for _ in 0..256 {
                        let k = rng.below(below);
                        let got = store.get(u128::from(k)).unwrap();
                        let want = if k % 11 == 5 {
                            None
                        } else {
                            Some(body(k, if k % 7 == 3 { 2 } else { 1 }))
                        };
                        assert_eq!(got, want, "id {k}, settled below {below}");
                    }
                    reads.fetch_add(256, Ordering::Relaxed);
                }
            });
        }
        // each batch: the next BATCH ids (the last "batch" none), and the
        // second versions of the previous batch's ids; then its deletes
        let mut prev: Vec<u64> = Vec::new();
        for start in (0..=N).step_by(BATCH as usize) {
            let ids: Vec<u64> = (start..(start + BATCH).min(N)).collect();
            let items: Vec<(u64, u32)> = ids
                .iter()
                .map(|&k| (k, 1))
                .chain(prev.iter().filter(|k| *k % 7 == 3).map(|&k| (k, 2)))
                .collect();
            let bodies: Vec<Vec<u8>> = items.iter().map(|&(k, v)| body(k, v)).collect();
            let batch: Vec<(u128, &[u8])> = items
                .iter()
                .zip(&bodies)
                .map(|(&(k, _), b)| (u128::from(k), &b[..]))
                .collect();
            store.append_batch(&batch, None).unwrap();
            for &k in prev.iter().filter(|k| *k % 11 == 5) {
                assert!(store.delete(u128::from(k)).unwrap());
            }
            settled.store(start, Ordering::Release);
            prev = ids;
        }
        // both readers check at least one round after the last mark
        let then = reads.load(Ordering::Relaxed);
        while reads.load(Ordering::Relaxed) < then + 2 * 256 {
            std::thread::yield_now();
        }
        done.store(true, Ordering::Release);
    });
    let live = (0..N).filter(|k| k % 11 != 5).count();
    assert_eq!(store.len(), live);
    for k in 0..N {
        let want = (k % 11 != 5).then(|| body(k, if k % 7 == 3 { 2 } else { 1 }));
        assert_eq!(store.get(u128::from(k)).unwrap(), want, "id {k}");
    }
    drop(store);
    let store = PayloadStore::open(dir.store()).unwrap();
    assert_eq!(store.len(), live);
}
