//! What only the DiskHash backend promises: RAM that does not grow with the
//! number of ids, one index page read per cold lookup, and conversion
//! between backends. (Everything both backends share runs against both in
//! the other suites.)
mod common;

use common::*;
use payloadstore::{IndexBackend, IndexSource, Options, PayloadStore};

/// The tests of this file run one at a time: one of them measures the
/// process's anonymous memory, which the others would disturb.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn id_of(i: u64) -> u128 {
    u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64 | u128::from(i)
}

#[test]
fn index_ram_does_not_grow_with_ids() {
    let _serial = serial();
    let t = TempDir::new("dh-ram");
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    for i in 0..10_000u64 {
        s.append(id_of(i), &i.to_le_bytes(), None).unwrap();
    }
    let (mem_small, file_small) = {
        let st = s.stats();
        (st.index_memory_bytes, st.index_file_bytes)
    };
    let anon_before = status_kb("RssAnon:");
    let n = 1_000_000u64;
    for i in 10_000..n {
        s.append(id_of(i), &i.to_le_bytes(), None).unwrap();
    }
    let st = s.stats();
    assert_eq!(st.payloads, n);
    assert_eq!(st.backend, IndexBackend::DiskHash);
    assert_eq!(st.index_memory_bytes, mem_small, "fixed RAM");
    assert!(
        st.index_file_bytes > 50 * file_small,
        "the table grew on disk"
    );
    assert!(
        (st.index_file_bytes as f64 / n as f64) < 40.0,
        "{} index bytes on disk per id",
        st.index_file_bytes as f64 / n as f64
    );
    if let (Some(b), Some(a)) = (anon_before, status_kb("RssAnon:")) {
        // The HashMap backend needs ~17 MB for these ids; other test threads
        // allocate too, so allow some slack.
        let grew = (a.saturating_sub(b)) * 1024;
        assert!(grew < 6 << 20, "anonymous RSS grew {grew} bytes");
    }
    for i in (0..n).step_by(997) {
        assert_eq!(s.get(id_of(i)).unwrap().unwrap(), i.to_le_bytes());
    }
}

#[test]
fn a_cold_lookup_reads_at_most_one_index_page() {
    let _serial = serial();
    let t = TempDir::new("dh-cold");
    let n = 300_000u64;
    {
        let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
        for i in 0..n {
            s.append(id_of(i), &i.to_le_bytes(), None).unwrap();
        }
        s.close().unwrap(); // syncs the index: its pages are clean and evictable
    }
    let index = t.store().join(index_file(IndexBackend::DiskHash));
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    assert_eq!(s.stats().recovery.source, IndexSource::Checkpoint);
    assert_eq!(s.stats().recovery.replayed_records, 0);
    evict(&index);
    let (start, pages) = resident_pages(&index);
    assert!(pages > 1000, "{pages} index pages");
    let mut rng = Rng(5);
    let mut prev = start;
    let mut reads = 0;
    for k in 0..200 {
        let i = rng.below(2 * n); // half of them misses
        let got = s.get(id_of(i)).unwrap();
        assert_eq!(got.is_some(), i < n);
        let (now, _) = resident_pages(&index);
        assert!(
            now <= prev + 1,
            "lookup {k} read {} index pages",
            now - prev
        );
        reads += now - prev;
        prev = now;
    }
    eprintln!("cold lookups: {start} of {pages} pages resident at start, {reads} page reads");
    // Where the file system honours the eviction, lookups did read pages.
    if start < pages / 2 {
        assert!(reads > 100, "only {reads} page reads for 200 cold lookups");
    }
}

#[test]
fn stores_convert_between_backends() {
    let _serial = serial();
    let t = TempDir::new("dh-convert");
    let mut model = std::collections::HashMap::new();
    let mut next = 0u64;
    let steps = [
        IndexBackend::HashMap,
        IndexBackend::DiskHash,
        IndexBackend::HashMap,
        IndexBackend::DiskHash,
        IndexBackend::DiskHash,
    ];
    for (round, &backend) in steps.iter().enumerate() {
        let s = PayloadStore::open_with_options(t.store(), Options::default().backend(backend))
            .unwrap();
        assert_eq!(s.stats().backend, backend);
        // everything written under the other backend is there
        assert_eq!(s.len(), model.len(), "round {round}");
        for (id, data) in &model {
            assert_eq!(s.get(*id).unwrap().as_ref(), Some(data), "round {round}");
        }
        // write, replace and delete under this one
        for _ in 0..3000 {
            let id = id_of(next % 5000);
            if next.is_multiple_of(11) {
                s.delete(id).unwrap();
                model.remove(&id);
            } else {
                let data = payload(id, (next % 300) as usize);
                s.append(id, &data, None).unwrap();
                model.insert(id, data);
            }
            next += 1;
        }
        s.close().unwrap();
    }
}

#[test]
fn an_index_dirtied_before_a_machine_crash_is_rebuilt_from_the_log() {
    let _serial = serial();
    let t = TempDir::new("dh-reboot");
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    for i in 0..5000u64 {
        s.append(id_of(i), &i.to_le_bytes(), None).unwrap();
    }
    s.save_index().unwrap(); // clean checkpoint ...
    for i in 5000..6000u64 {
        s.append(id_of(i), &i.to_le_bytes(), None).unwrap(); // ... then dirty again
    }
    s.sync().unwrap();
    s.abandon();
    // Same boot (a process crash): trusted, nothing left to replay.
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    let r = s.stats().recovery;
    assert_eq!(r.source, IndexSource::Checkpoint);
    assert_eq!(r.replayed_records, 0);
    for i in 6000..6100u64 {
        s.append(id_of(i), &i.to_le_bytes(), None).unwrap();
    }
    s.sync().unwrap();
    s.abandon();
    // Another boot: the dirty file is not trusted.
    simulate_reboot(&t.store().join(index_file(IndexBackend::DiskHash)));
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    let r = s.stats().recovery;
    assert_eq!(r.source, IndexSource::FullScan);
    assert!(r.checkpoint_problem.unwrap().contains("restarted"));
    assert_eq!(s.len(), 6100);
    for i in 0..6100u64 {
        assert_eq!(s.get(id_of(i)).unwrap().unwrap(), i.to_le_bytes());
    }
    s.close().unwrap();
    // After a clean close the next open replays nothing.
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    let r = s.stats().recovery;
    assert_eq!((r.source, r.replayed_records), (IndexSource::Checkpoint, 0));
}

#[test]
fn read_only_handles_index_what_the_table_has_not_seen_in_ram() {
    let _serial = serial();
    let t = TempDir::new("dh-ro");
    let mut model = std::collections::HashMap::new();
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    for i in 0..1000u64 {
        s.append(id_of(i), &i.to_le_bytes(), None).unwrap();
        model.insert(id_of(i), i.to_le_bytes().to_vec());
    }
    s.close().unwrap();
    // The HashMap backend appends, replaces and deletes: index.dh is behind.
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::HashMap).unwrap();
    for i in 1000..1500u64 {
        s.append(id_of(i), &i.to_le_bytes(), None).unwrap();
        model.insert(id_of(i), i.to_le_bytes().to_vec());
    }
    for i in 0..100u64 {
        s.append(id_of(i), b"replaced", None).unwrap();
        model.insert(id_of(i), b"replaced".to_vec());
    }
    for i in 100..200u64 {
        assert!(s.delete(id_of(i)).unwrap());
        model.remove(&id_of(i));
    }
    s.close().unwrap();
    let ro = Options::default()
        .read_only(true)
        .backend(IndexBackend::DiskHash);
    let s = PayloadStore::open_with_options(t.store(), ro.clone()).unwrap();
    let r = s.stats().recovery;
    assert_eq!(r.source, IndexSource::Checkpoint);
    assert_eq!(r.replayed_records, 700);
    assert_eq!(s.len(), model.len());
    for i in 0..1600u64 {
        assert_eq!(
            s.get(id_of(i)).unwrap(),
            model.get(&id_of(i)).cloned(),
            "{i}"
        );
        assert_eq!(s.has_payload(id_of(i)), model.contains_key(&id_of(i)));
    }
    let mut seen = std::collections::HashMap::new();
    s.for_each(|id, _| *seen.entry(id).or_insert(0) += 1)
        .unwrap();
    assert_eq!(seen.len(), model.len());
    assert!(seen.values().all(|&n| n == 1), "each id once");
    assert!(seen.keys().all(|id| model.contains_key(id)));
    drop(s);
    // A writer that crashed mid-way leaves the table dirty but consistent:
    // read-only handles still open it.
    let w = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    w.append(id_of(5000), b"late", None).unwrap();
    w.abandon();
    let s = PayloadStore::open_with_options(t.store(), ro).unwrap();
    assert_eq!(s.get(id_of(5000)).unwrap().unwrap(), b"late");
    assert_eq!(s.len(), model.len() + 1);
}

/// A table bigger than the rebuild budget is built in passes over the log;
/// the result (payloads, counters) is the same as a record-by-record build.
#[test]
fn a_table_over_the_rebuild_budget_is_built_in_passes() {
    let _serial = serial();
    let t = TempDir::new("dh-passes");
    let mut model = std::collections::HashMap::new();
    {
        let s = PayloadStore::open_with_backend(t.store(), IndexBackend::HashMap).unwrap();
        let mut r = Rng(11);
        for step in 0..60_000u64 {
            let id = id_of(r.below(20_000));
            if step % 13 == 0 {
                s.delete(id).unwrap();
                model.remove(&id);
            } else {
                let data = payload(id, (step % 1500) as usize);
                s.append(id, &data, None).unwrap();
                model.insert(id, data);
            }
        }
        s.close().unwrap();
    }
    let mut built = Vec::new();
    for budget in [u64::MAX, 64 << 10] {
        // what a record-by-record index says about the same log
        let _ = std::fs::remove_file(t.store().join(index_file(IndexBackend::HashMap)));
        let reference = PayloadStore::open_with_backend(t.store(), IndexBackend::HashMap)
            .unwrap()
            .stats();
        let _ = std::fs::remove_file(t.store().join(index_file(IndexBackend::DiskHash)));
        let opts = Options::default()
            .backend(IndexBackend::DiskHash)
            .rebuild_memory_bytes(budget);
        let s = PayloadStore::open_with_options(t.store(), opts).unwrap();
        let st = s.stats();
        assert_eq!(st.recovery.source, IndexSource::FullScan);
        assert_eq!(st.payloads, model.len() as u64, "budget {budget}");
        assert_eq!(
            (st.live_bytes, st.dead_bytes, st.by_compression),
            (
                reference.live_bytes,
                reference.dead_bytes,
                reference.by_compression
            ),
            "counters, budget {budget}"
        );
        for (id, data) in &model {
            assert_eq!(s.get(*id).unwrap().as_ref(), Some(data));
        }
        assert_eq!(s.get(id_of(1 << 40)).unwrap(), None);
        let mut n = 0;
        s.for_each(|_, _| n += 1).unwrap();
        assert_eq!(n, model.len());
        // and it is a normal table afterwards: writes, reopen, crash
        s.append(id_of(1 << 41), b"after", None).unwrap();
        s.close().unwrap();
        let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
        assert_eq!(s.stats().recovery.source, IndexSource::Checkpoint);
        assert_eq!(s.get(id_of(1 << 41)).unwrap().unwrap(), b"after");
        assert!(s.delete(id_of(1 << 41)).unwrap());
        built.push(s.stats().index_file_bytes);
        s.abandon();
    }
    // the bulk build sized its table for every put in the log at once (the
    // record-by-record one grew it for the live ids): the passes did run
    assert!(built[1] > built[0], "{built:?}");
}

/// `for_each` while another thread appends (and so splits buckets): every
/// id stored before the walk is visited exactly once, no id twice.
#[test]
fn for_each_visits_each_id_once_while_appends_split_buckets() {
    let _serial = serial();
    let t = TempDir::new("dh-walk");
    let s = PayloadStore::open_with_options(
        t.store(),
        Options::default().backend(IndexBackend::DiskHash),
    )
    .unwrap();
    let before = 40_000u64;
    let batch: Vec<(u128, Vec<u8>)> = (0..before)
        .map(|i| (id_of(i), payload(id_of(i), 20)))
        .collect();
    let refs: Vec<(u128, &[u8])> = batch.iter().map(|(id, d)| (*id, &d[..])).collect();
    s.append_batch(&refs, None).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let walks = std::thread::scope(|sc| {
        let writer = sc.spawn(|| {
            let mut i = before;
            // Appends until the walks are done, and at least 20,000 of them
            // (enough to split hundreds of buckets) whatever the timing.
            while i < before + 20_000 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.append(id_of(i), &payload(id_of(i), 20), None).unwrap();
                i += 1;
            }
            i
        });
        // Stops the writer however this thread leaves the scope (a failed
        // assertion included), so that the scope's join cannot hang.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stopper = StopOnDrop(&stop);
        let mut walks = 0;
        for _ in 0..8 {
            let mut seen = std::collections::HashMap::new();
            s.for_each(|id, _| *seen.entry(id).or_insert(0u32) += 1)
                .unwrap();
            for (id, n) in &seen {
                assert_eq!(*n, 1, "id {id:x} visited {n} times");
            }
            for i in 0..before {
                assert_eq!(seen.get(&id_of(i)), Some(&1), "id {i} visited once");
            }
            walks += 1;
        }
        drop(stopper);
        let appended = writer.join().unwrap();
        assert!(appended >= before + 20_000);
        walks
    });
    assert_eq!(walks, 8);
}
