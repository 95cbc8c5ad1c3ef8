//! Soak: mixed load with verification for a given time.
//!
//! ```text
//! cargo run --release --example soak -- --secs 600        # ten minutes
//! cargo run --release --example soak -- --secs 15         # the CI version
//! ```
//!
//! In cycles of a few seconds: 2 writer threads append versioned payloads and
//! delete some; 2 reader threads check every read against what was
//! acknowledged; a maintenance thread syncs and checkpoints. Between cycles
//! the store is closed (or abandoned, as a crash would leave it), reopened
//! and checked completely. Exits non-zero on the first wrong byte.

use payloadstore::{IndexBackend, Options, PayloadStore, SyncPolicy};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const IDS_PER_WRITER: usize = 20_000;
const NONE: u32 = 0;
const LIVE: u32 = 1;
const DELETED: u32 = 2;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn versioned(id: u128, v: u32) -> Vec<u8> {
    let len = [12usize, 300, 2000, 9000, 40_000][((id as usize) + v as usize) % 5];
    let mut out = v.to_le_bytes().to_vec();
    let mut x = (id as u64) ^ (u64::from(v) << 32) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(if x.is_multiple_of(3) {
            b"trace "
        } else {
            b"edge "
        });
        out.push((x >> 40) as u8);
    }
    out.truncate(len);
    out
}

/// What has been acknowledged per id: the last version appended (versions
/// only grow), whether the id is live or deleted, and how many deletes were
/// started and finished (a reader may see a delete that has not returned yet).
struct Model {
    version: Vec<AtomicU32>,
    state: Vec<AtomicU32>,
    deletes_started: Vec<AtomicU32>,
    deletes_done: Vec<AtomicU32>,
}

fn check_read(store: &PayloadStore, m: &Model, idx: usize) {
    let id = idx as u128;
    // `done` first: a delete that finishes after it was read has a larger
    // `deletes_started`; one that finished before it has already stored
    // DELETED (the writer does that before counting it done), so the state
    // read next shows it or a later append
    let done = m.deletes_done[idx].load(Ordering::Acquire);
    let state = m.state[idx].load(Ordering::Acquire);
    let before = m.version[idx].load(Ordering::Acquire);
    match store.get(id).expect("get failed") {
        Some(bytes) => {
            let v = u32::from_le_bytes(bytes[..4].try_into().unwrap());
            match state {
                LIVE => assert!(
                    v >= before,
                    "id {id}: read version {v} after {before} was acknowledged"
                ),
                DELETED => assert!(v > before, "id {id}: deleted version {v} came back"),
                _ => {}
            }
            assert_eq!(
                bytes,
                versioned(id, v),
                "id {id}: wrong bytes for version {v}"
            );
        }
        None => {
            // absent is fine if a delete was started after the ones that had
            // finished when this check began (it may still be in flight)
            let deleted_since = m.deletes_started[idx].load(Ordering::Acquire) > done;
            assert!(
                state != LIVE || deleted_since,
                "id {id}: version {before} acknowledged but absent"
            );
        }
    }
}

fn main() {
    let mut secs = 60.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--secs" {
            secs = args.next().and_then(|v| v.parse().ok()).expect("--secs N");
        }
    }
    let dir = std::env::temp_dir().join(format!("payload-store-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let m = Model {
        version: (0..2 * IDS_PER_WRITER).map(|_| AtomicU32::new(0)).collect(),
        state: (0..2 * IDS_PER_WRITER)
            .map(|_| AtomicU32::new(NONE))
            .collect(),
        deletes_started: (0..2 * IDS_PER_WRITER).map(|_| AtomicU32::new(0)).collect(),
        deletes_done: (0..2 * IDS_PER_WRITER).map(|_| AtomicU32::new(0)).collect(),
    };
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (appends, reads) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut cycle = 0u64;
    while Instant::now() < deadline {
        let policy = if cycle % 3 == 2 {
            SyncPolicy::GroupCommit
        } else {
            SyncPolicy::Manual
        };
        // two cycles (a close, then a crash) per index backend, alternating:
        // every switch converts the store
        let backend = if (cycle / 2) % 2 == 1 {
            IndexBackend::DiskHash
        } else {
            IndexBackend::HashMap
        };
        let store = PayloadStore::open_with_options(
            &dir,
            Options::default()
                .backend(backend)
                .sync_policy(policy)
                .auto_checkpoint_bytes(64 << 20),
        )
        .expect("open");
        // full check after every reopen
        for idx in 0..m.state.len() {
            check_read(&store, &m, idx);
        }
        let stop = AtomicBool::new(false);
        let cycle_end = (Instant::now() + Duration::from_secs(4)).min(deadline);
        std::thread::scope(|s| {
            for w in 0..2usize {
                let (store, m, stop, appends) = (&store, &m, &stop, &appends);
                s.spawn(move || {
                    let mut r = Rng(cycle * 10 + w as u64 + 1);
                    while !stop.load(Ordering::Relaxed) {
                        let idx = w * IDS_PER_WRITER + (r.next() as usize % IDS_PER_WRITER);
                        if r.next().is_multiple_of(20)
                            && m.state[idx].load(Ordering::Relaxed) == LIVE
                        {
                            m.deletes_started[idx].fetch_add(1, Ordering::Release);
                            store.delete(idx as u128).expect("delete");
                            m.state[idx].store(DELETED, Ordering::Release);
                            m.deletes_done[idx].fetch_add(1, Ordering::Release);
                        } else {
                            let v = m.version[idx].load(Ordering::Relaxed) + 1;
                            store
                                .append(idx as u128, &versioned(idx as u128, v), None)
                                .expect("append");
                            m.version[idx].store(v, Ordering::Release);
                            m.state[idx].store(LIVE, Ordering::Release);
                        }
                        appends.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            for rd in 0..2u64 {
                let (store, m, stop, reads) = (&store, &m, &stop, &reads);
                s.spawn(move || {
                    let mut r = Rng(cycle * 100 + rd + 7);
                    while !stop.load(Ordering::Relaxed) {
                        check_read(store, m, r.next() as usize % m.state.len());
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            s.spawn(|| {
                let mut n = 0u64;
                while Instant::now() < cycle_end {
                    std::thread::sleep(Duration::from_millis(200)); // pacing, not synchronization
                    store.sync().expect("sync");
                    n += 1;
                    if n.is_multiple_of(5) {
                        store.save_index().expect("save_index");
                    }
                }
                stop.store(true, Ordering::Relaxed);
            });
        });
        let st = store.stats();
        if cycle.is_multiple_of(2) {
            store.close().expect("close");
        } else {
            store.sync().expect("sync");
            store.abandon(); // as a killed process leaves it
        }
        println!(
            "cycle {cycle} ({backend:?}): {} payloads, {:.1} MiB log ({:.0}% dead), {} appends, {} verified reads so far, {}",
            st.payloads,
            st.file_bytes as f64 / 1048576.0,
            100.0 * st.dead_bytes as f64 / st.file_bytes.max(1) as f64,
            appends.load(Ordering::Relaxed),
            reads.load(Ordering::Relaxed),
            if cycle.is_multiple_of(2) { "closed" } else { "abandoned (crash)" }
        );
        cycle += 1;
    }
    let store = PayloadStore::open(&dir).expect("final open");
    for idx in 0..m.state.len() {
        check_read(&store, &m, idx);
    }
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    println!("soak: OK ({cycle} cycles, {secs} s)");
}
