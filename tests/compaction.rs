//! `compact`: only live payloads survive, every one of them intact; damage,
//! failed I/O and a kill -9 at any moment leave a store that answers every
//! acknowledged payload right.
mod common;

use common::*;
use payloadstore::io::{Fault, FaultyIo};
use payloadstore::{CompressionType, Error, IndexBackend, IndexSource, Options, PayloadStore};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

fn len_of(id: u128, version: u64) -> usize {
    [40, 700, 3000, 40_000, 150_000][((id as u64 + version) % 5) as usize]
}

fn value(id: u128, version: u64) -> Vec<u8> {
    payload(id ^ (u128::from(version) << 64), len_of(id, version))
}

/// Fills a store: `n` ids, most replaced a few times, every seventh
/// deleted. Returns what each live id must read back as, and the deleted ids.
fn fill(s: &PayloadStore, n: u128) -> (HashMap<u128, Vec<u8>>, Vec<u128>) {
    let mut model = HashMap::new();
    for version in 0..3u64 {
        for id in 0..n {
            if version == 0 || id % 3 != 0 {
                let v = value(id, version);
                s.append(id, &v, None).unwrap();
                model.insert(id, v);
            }
        }
    }
    let deleted: Vec<u128> = (0..n).filter(|id| id % 7 == 0).collect();
    for &id in &deleted {
        assert!(s.delete(id).unwrap());
        model.remove(&id);
    }
    s.sync().unwrap();
    (model, deleted)
}

/// `fill` on a new store at `dir`, which is then closed (a template that
/// each round copies).
fn filled_and_closed(
    dir: &Path,
    backend: IndexBackend,
    n: u128,
) -> (HashMap<u128, Vec<u8>>, Vec<u128>) {
    let s = PayloadStore::open_with_options(dir, Options::default().backend(backend)).unwrap();
    let m = fill(&s, n);
    s.close().unwrap();
    m
}

fn assert_holds(s: &PayloadStore, model: &HashMap<u128, Vec<u8>>, deleted: &[u128]) {
    assert_eq!(s.len(), model.len());
    for (&id, want) in model {
        assert_eq!(s.get(id).unwrap().as_ref(), Some(want), "id {id}");
    }
    for &id in deleted {
        assert_eq!(s.get(id).unwrap(), None, "deleted id {id}");
    }
}

fn log_bytes(store: &Path) -> Vec<u8> {
    std::fs::read(store.join("payload.data")).unwrap()
}

#[test]
fn only_live_payloads_survive_and_every_one_is_intact() {
    for backend in backends() {
        let t = TempDir::new("compact");
        let opts = Options::default().backend(backend);
        let s = PayloadStore::open_with_options(t.store(), opts.clone()).unwrap();
        let (mut model, deleted) = fill(&s, 600);
        let before = s.stats();
        assert!(before.dead_bytes > 0);

        let r = s.compact().unwrap();
        assert_eq!(r.payloads, model.len() as u64, "{backend:?}");
        assert_eq!(r.generation, 1);
        assert_eq!(r.bytes_before, before.file_bytes);
        let after = s.stats();
        assert_eq!(after.dead_bytes, 0, "{backend:?}");
        assert_eq!(after.live_bytes, before.live_bytes);
        assert_eq!(after.payloads, before.payloads);
        // exactly the live records (headers included) behind the file header
        assert_eq!(r.bytes_after, 128 + after.live_bytes, "{backend:?}");
        assert_eq!(after.file_bytes, r.bytes_after);
        assert!(r.bytes_after < r.bytes_before / 2, "{r:?}");
        assert_holds(&s, &model, &deleted);
        assert!(s.verify().unwrap().is_clean());
        // the locations `for_each` hands out now are the new log's
        let mut seen = 0;
        s.for_each(|id, (off, len, tag)| {
            let codec = CompressionType::try_from(tag).unwrap();
            assert_eq!(&s.get_at_offset(off, len, codec).unwrap(), &model[&id]);
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, model.len());
        assert!(!t.store().join("payload.data.tmp").exists());

        // appends, replacements and deletes go on; a second compaction of
        // a log that only grew by live payloads keeps every byte
        for id in 600..650u128 {
            let v = value(id, 9);
            s.append(id, &v, None).unwrap();
            model.insert(id, v);
        }
        let r2 = s.compact().unwrap();
        assert_eq!(r2.generation, 2);
        assert_eq!(r2.bytes_after, r2.bytes_before);
        s.close().unwrap();

        let s = PayloadStore::open_with_options(t.store(), opts).unwrap();
        assert_eq!(s.stats().recovery.source, IndexSource::Checkpoint);
        assert_holds(&s, &model, &deleted);
    }
}

#[test]
fn an_empty_store_and_a_read_only_one() {
    let t = TempDir::new("compact-empty");
    let s = PayloadStore::open(t.store()).unwrap();
    let r = s.compact().unwrap();
    assert_eq!((r.payloads, r.bytes_before, r.bytes_after), (0, 128, 128));
    s.append(1, b"one", None).unwrap();
    assert!(s.delete(1).unwrap());
    let r = s.compact().unwrap();
    assert_eq!((r.payloads, r.bytes_after), (0, 128));
    assert!(s.is_empty());
    s.close().unwrap();
    let ro =
        PayloadStore::open_with_options(t.store(), Options::default().read_only(true)).unwrap();
    assert!(matches!(ro.compact(), Err(Error::ReadOnly)));
}

/// Flips a byte of the record holding `id`'s payload, on disk.
fn damage(store: &Path, s: &PayloadStore, id: u128) -> u64 {
    let mut at = None;
    s.for_each(|i, (off, _, _)| {
        if i == id {
            at = Some(off);
        }
    })
    .unwrap();
    let off = at.unwrap() + 40;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(store.join("payload.data"))
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], off).unwrap();
    off
}

#[test]
fn damage_stops_compaction_and_changes_nothing() {
    for backend in backends() {
        let t = TempDir::new("compact-damage");
        let opts = Options::default().backend(backend);
        let s = PayloadStore::open_with_options(t.store(), opts.clone()).unwrap();
        let (mut model, deleted) = fill(&s, 200);
        let hit = 5u128; // live, replaced twice
        damage(&t.store(), &s, hit);
        let log = log_bytes(&t.store());

        let e = s.compact().unwrap_err();
        let first = s.verify().unwrap().damaged[0].0;
        assert!(
            matches!(e, Error::Corrupt { offset, .. } if offset == first),
            "{backend:?}: {e}"
        );
        assert_eq!(log_bytes(&t.store()), log, "the log was changed");
        assert!(!t.store().join("payload.data.tmp").exists());
        // still usable: every other payload reads back, appends go on
        assert!(matches!(s.get(hit), Err(Error::ChecksumMismatch { .. })));
        model.remove(&hit);
        assert!(!s.verify().unwrap().is_clean());
        s.append(1000, b"after", None).unwrap();
        model.insert(1000, b"after".to_vec());
        for (&id, want) in &model {
            assert_eq!(s.get(id).unwrap().as_ref(), Some(want), "id {id}");
        }
        // once the damaged payload is replaced, compaction drops its record
        let v = value(hit, 7);
        s.append(hit, &v, None).unwrap();
        model.insert(hit, v);
        let r = s.compact().unwrap();
        assert_eq!(r.payloads, model.len() as u64);
        assert_holds(&s, &model, &deleted);
        assert!(s.verify().unwrap().is_clean());
        s.close().unwrap();
        let s = PayloadStore::open_with_options(t.store(), opts).unwrap();
        assert_holds(&s, &model, &deleted);
    }
}

#[test]
fn damage_in_dead_records_is_dropped() {
    let t = TempDir::new("compact-dead-damage");
    let s = PayloadStore::open(t.store()).unwrap();
    let (model, deleted) = fill(&s, 200);
    // a payload damaged on disk, then deleted: its record is dead
    let doomed = 400u128;
    s.append(doomed, &value(doomed, 0), None).unwrap();
    let off = damage(&t.store(), &s, doomed);
    assert!(s.delete(doomed).unwrap());
    let v = s.verify().unwrap();
    assert_eq!(v.damaged.len(), 1);
    assert!(v.damaged[0].0 < off && off < v.damaged[0].0 + v.damaged[0].1);
    let r = s.compact().unwrap();
    assert_eq!(r.payloads, model.len() as u64);
    assert_holds(&s, &model, &deleted);
    assert_eq!(s.get(doomed).unwrap(), None);
    assert!(s.verify().unwrap().is_clean());
}

#[test]
fn a_failed_write_sync_or_rename_leaves_the_store_as_it_was() {
    for backend in backends() {
        let t = TempDir::new("compact-faults");
        let template = t.path().join("template");
        let (model, deleted) = filled_and_closed(&template, backend, 300);
        // count the operations of a clean compaction
        let count = {
            let dir = t.path().join("count");
            copy_dir(&template, &dir);
            let io = FaultyIo::new();
            let opts = Options::default().backend(backend).io(io.clone());
            let s = PayloadStore::open_with_options(&dir, opts).unwrap();
            let start = io.ops();
            s.compact().unwrap();
            io.ops() - start
        };
        assert!(count >= 4, "{count}");
        for n in 0..count {
            for fault in [Fault::NoSpace, Fault::Eio, Fault::ShortWrite] {
                let dir = t.path().join(format!("run-{n}-{fault:?}"));
                copy_dir(&template, &dir);
                let io: Arc<FaultyIo> = FaultyIo::new();
                let opts = Options::default().backend(backend).io(io.clone());
                let s = PayloadStore::open_with_options(&dir, opts.clone()).unwrap();
                io.fail_at(io.ops() + n, fault, false);
                match s.compact() {
                    Ok(_) => {}
                    Err(e) => {
                        assert!(
                            matches!(
                                e,
                                Error::NoSpace { .. } | Error::Io { .. } | Error::Poisoned
                            ),
                            "op {n} {fault:?}: {e}"
                        );
                        // readers answer right whether or not the handle
                        // could move on to the new log
                        assert_holds(&s, &model, &deleted);
                    }
                }
                assert!(io.injected() > 0, "op {n}: no fault was injected");
                drop(s);
                io.heal();
                let s = PayloadStore::open_with_options(&dir, opts).unwrap();
                assert_holds(&s, &model, &deleted);
                assert!(s.verify().unwrap().is_clean(), "op {n} {fault:?}");
                drop(s);
                assert!(!dir.join("payload.data.tmp").exists());
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
}

/// The child of `kill_9_during_compaction`: compacts the store it is
/// given, over and over, printing a line before each compaction.
#[test]
fn compaction_child() {
    let Ok(dir) = std::env::var("PS_COMPACT_CHILD") else {
        return;
    };
    let backend = match std::env::var("PS_CRASH_BACKEND").as_deref() {
        Ok("DiskHash") => IndexBackend::DiskHash,
        _ => IndexBackend::HashMap,
    };
    let s = PayloadStore::open_with_options(&dir, Options::default().backend(backend)).unwrap();
    for round in 0u64.. {
        println!("{round}");
        s.compact().unwrap();
    }
}

#[test]
fn kill_9_during_compaction() {
    for backend in backends() {
        let t = TempDir::new("compact-kill");
        let template = t.path().join("template");
        let (model, deleted) = filled_and_closed(&template, backend, 1500);
        let mut rng = Rng(0xC0FFEE ^ backend as u64);
        let mut generations = Vec::new();
        for round in 0..6 {
            let dir = t.path().join(format!("round-{round}"));
            copy_dir(&template, &dir);
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "compaction_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("PS_COMPACT_CHILD", &dir)
                .env("PS_CRASH_BACKEND", format!("{backend:?}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Kill after a random number of started compactions: the kill
            // lands somewhere inside the next one (or its reopen).
            let kill_after = 1 + rng.below(3);
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = 0;
            while seen < kill_after {
                match lines.next() {
                    Some(Ok(l)) if l.parse::<u64>().is_ok() => seen += 1,
                    Some(_) => {}
                    None => panic!("child ended early: {:?}", child.wait()),
                }
            }
            child.kill().unwrap();
            assert!(!child.wait().unwrap().success());

            let s =
                PayloadStore::open_with_options(&dir, Options::default().backend(backend)).unwrap();
            assert_holds(&s, &model, &deleted);
            assert!(s.verify().unwrap().is_clean(), "round {round}");
            assert!(!dir.join("payload.data.tmp").exists());
            drop(s);
            // the compactions finished before the one killed stay done
            let header = log_bytes(&dir);
            let generation = u64::from_le_bytes(header[24..32].try_into().unwrap());
            assert!(generation + 1 >= kill_after, "round {round}: {generation}");
            generations.push(generation);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        println!("{backend:?}: generations after the kills {generations:?}");
    }
}

#[test]
fn compaction_while_the_ram_table_grows_and_of_odd_payloads() {
    let t = TempDir::new("compact-grow");
    let s = PayloadStore::open(t.store()).unwrap();
    let mut model = HashMap::new();
    // enough ids that the RAM table is grown in the helper thread; the
    // compaction starts right after the last append, with a growth likely
    // still under way
    for id in 0..150_000u128 {
        // an odd multiplier: distinct ids spread over all 128 bits
        let id = id.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        let v = (id as u64).to_le_bytes()[..(id % 9) as usize].to_vec(); // 0-8 bytes
        s.append(id, &v, None).unwrap();
        if id % 4 == 0 {
            s.append(id, &v, None).unwrap(); // a dead copy
        }
        model.insert(id, v);
    }
    let r = s.compact().unwrap();
    assert_eq!(r.payloads, 150_000);
    assert_holds(&s, &model, &[]);
    assert!(s.verify().unwrap().is_clean());
}

#[test]
fn readers_and_writers_go_on_during_compaction() {
    use payloadstore::SyncPolicy;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    // every sync policy: each takes the sync lock at another point of an
    // append, which the switch must not deadlock with
    for (backend, policy) in [
        (IndexBackend::HashMap, SyncPolicy::Manual),
        (IndexBackend::DiskHash, SyncPolicy::Manual),
        (IndexBackend::HashMap, SyncPolicy::EveryAppend),
        (IndexBackend::DiskHash, SyncPolicy::GroupCommit),
    ] {
        let t = TempDir::new("compact-online");
        let opts = Options::default().backend(backend).sync_policy(policy);
        let s = PayloadStore::open_with_options(t.store(), opts.clone()).unwrap();
        let (settled, deleted) = fill(&s, 1500);
        let stop = AtomicBool::new(false);
        let reads = AtomicU64::new(0);
        let written = AtomicU64::new(0);
        let (model, rounds) = std::thread::scope(|sc| {
            // readers: every settled id, over and over, must read right
            for r in 0..2u64 {
                let (s, settled, deleted, stop, reads) = (&s, &settled, &deleted, &stop, &reads);
                sc.spawn(move || {
                    let mut rng = Rng(r + 1);
                    let ids: Vec<u128> = settled.keys().copied().collect();
                    while !stop.load(Ordering::Relaxed) {
                        let id = ids[rng.below(ids.len() as u64) as usize];
                        assert_eq!(s.get(id).unwrap().as_ref(), Some(&settled[&id]), "id {id}");
                        let gone = deleted[rng.below(deleted.len() as u64) as usize];
                        assert_eq!(s.get(gone).unwrap(), None);
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            // a flood: 256 KiB payloads as fast as they go, so the appends
            // keep pace with the copy and the tail is copied in slices
            // under the writer lock; its ids are replaced over and over
            let flood = sc.spawn(|| {
                let mut last = HashMap::new();
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = 200_000 + u128::from(k % 16);
                    let mut rng = Rng(k);
                    let v: Vec<u8> = (0..256 << 10).map(|_| rng.next() as u8).collect();
                    s.append(id, &v, Some(CompressionType::None)).unwrap();
                    last.insert(id, Some(v));
                    k += 1;
                }
                last
            });
            // a writer: new ids, replacements, deletes, syncs and batches
            let writer = sc.spawn(|| {
                let mut model: HashMap<u128, Option<Vec<u8>>> = HashMap::new();
                let mut rng = Rng(99);
                let mut version = 10u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = 100_000 + u128::from(rng.below(3000));
                    version += 1;
                    match rng.below(10) {
                        0 => {
                            s.delete(id).unwrap();
                            model.insert(id, None);
                        }
                        1 => s.sync().unwrap(),
                        3 => {
                            // large and incompressible: the log grows past
                            // what the switch copies, so catch-up rounds run
                            let mut rng2 = Rng(version);
                            let v: Vec<u8> = (0..1 << 20).map(|_| rng2.next() as u8).collect();
                            s.append(id, &v, None).unwrap();
                            model.insert(id, Some(v));
                        }
                        2 => {
                            let items: Vec<(u128, Vec<u8>)> =
                                (0..8).map(|k| (id + k, value(id + k, version))).collect();
                            let refs: Vec<(u128, &[u8])> =
                                items.iter().map(|(i, v)| (*i, v.as_slice())).collect();
                            s.append_batch(&refs, None).unwrap();
                            for (i, v) in items {
                                model.insert(i, Some(v));
                            }
                        }
                        _ => {
                            let v = value(id, version);
                            s.append(id, &v, None).unwrap();
                            model.insert(id, Some(v));
                        }
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                }
                model
            });
            let mut rounds = Vec::new();
            for _ in 0..3 {
                let before = written.load(Ordering::Relaxed);
                let r = s.compact();
                if r.is_err() {
                    stop.store(true, Ordering::Relaxed); // or the scope never ends
                }
                rounds.push((r.unwrap(), written.load(Ordering::Relaxed) - before));
            }
            stop.store(true, Ordering::Relaxed);
            let mut model = writer.join().unwrap();
            model.extend(flood.join().unwrap());
            (model, rounds)
        });
        assert!(reads.load(Ordering::Relaxed) > 0);
        assert_eq!(rounds.last().unwrap().0.generation, 3);
        println!(
            "{backend:?} {policy:?}: writes during each compaction {:?}",
            rounds.iter().map(|r| r.1).collect::<Vec<_>>()
        );
        let check = |s: &PayloadStore| {
            assert_holds_with(s, &settled, &deleted, &model);
            assert!(s.verify().unwrap().is_clean());
        };
        check(&s);
        s.close().unwrap();
        let s = PayloadStore::open_with_options(t.store(), opts).unwrap();
        check(&s);
    }
}

/// `assert_holds` for the settled ids plus a writer's model (None: deleted).
fn assert_holds_with(
    s: &PayloadStore,
    settled: &HashMap<u128, Vec<u8>>,
    deleted: &[u128],
    model: &HashMap<u128, Option<Vec<u8>>>,
) {
    for (&id, want) in settled {
        assert_eq!(s.get(id).unwrap().as_ref(), Some(want), "id {id}");
    }
    for &id in deleted {
        assert_eq!(s.get(id).unwrap(), None, "deleted id {id}");
    }
    for (&id, want) in model {
        assert_eq!(&s.get(id).unwrap(), want, "written id {id}");
    }
    let live = model.values().filter(|v| v.is_some()).count();
    assert_eq!(s.len(), settled.len() + live);
}
