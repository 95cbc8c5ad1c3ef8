//! Fault injection (SQLite-style): run a workload once to count its I/O
//! operations, then rerun it failing the Nth operation, for every N, with
//! ENOSPC, EIO and short writes — once, or from then on (a dead disk).
//! Each call returns a clear error; after a failed fsync later syncs refuse
//! (`Poisoned`); after reopening with a healthy disk, every payload synced
//! before the fault is intact and nothing else reads back wrong.
mod common;

use common::*;
use payloadstore::io::{Fault, FaultyIo};
use payloadstore::{CompressionType, Error, IndexBackend, Options, PayloadStore};
use std::collections::HashMap;
use std::sync::Arc;

fn len_of(id: u128) -> usize {
    [100, 3000, 70_000, 250_000][(id % 4) as usize]
}

fn opts(io: &Arc<FaultyIo>) -> Options {
    opts_for(io, IndexBackend::HashMap)
}

fn opts_for(io: &Arc<FaultyIo>, backend: IndexBackend) -> Options {
    Options::default()
        .backend(backend)
        .io(io.clone())
        .auto_checkpoint_bytes(1 << 20)
}

fn expected_error(e: &Error) -> bool {
    matches!(
        e,
        Error::NoSpace { .. } | Error::Io { .. } | Error::Poisoned
    )
}

/// The workload: appends (enough to grow the log several times), syncs,
/// checkpoints, close. Returns the ids acknowledged by a successful sync.
fn workload(
    dir: &std::path::Path,
    io: &Arc<FaultyIo>,
    backend: IndexBackend,
) -> (Vec<u128>, Vec<String>) {
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    let s = match PayloadStore::open_with_options(dir, opts_for(io, backend)) {
        Ok(s) => s,
        Err(e) => {
            assert!(expected_error(&e), "open: {e}");
            return (acked, vec![format!("open: {e}")]);
        }
    };
    let mut poisoned = false;
    for round in 0..5u128 {
        let mut pending = Vec::new();
        if round % 2 == 1 {
            // a batch: one write for all its records
            let datas: Vec<(u128, Vec<u8>)> = (0..12u128)
                .map(|k| {
                    (
                        round * 100 + k,
                        payload(round * 100 + k, len_of(round * 100 + k)),
                    )
                })
                .collect();
            let refs: Vec<(u128, &[u8])> =
                datas.iter().map(|(id, d)| (*id, d.as_slice())).collect();
            match s.append_batch(&refs, None) {
                Ok(_) => pending.extend(datas.iter().map(|(id, _)| *id)),
                Err(e) => {
                    assert!(expected_error(&e), "append_batch: {e}");
                    poisoned |= matches!(e, Error::Poisoned);
                    errors.push(format!("append_batch: {e}"));
                    for (id, _) in &datas {
                        assert!(!s.has_payload(*id), "a failed batch left id {id} visible");
                    }
                }
            }
        }
        for k in 0..12u128 {
            if round % 2 == 1 {
                break;
            }
            let id = round * 100 + k;
            match s.append(id, &payload(id, len_of(id)), None) {
                Ok(_) => pending.push(id),
                Err(e) => {
                    assert!(expected_error(&e), "append: {e}");
                    poisoned |= matches!(e, Error::Poisoned);
                    errors.push(format!("append: {e}"));
                }
            }
        }
        match s.sync() {
            Ok(()) => {
                assert!(!poisoned, "a sync succeeded after an fsync failure");
                acked.extend(pending);
            }
            Err(e) => {
                assert!(expected_error(&e), "sync: {e}");
                errors.push(format!("sync: {e}"));
                if !matches!(e, Error::Poisoned) {
                    // the lost writes are never covered by a later sync
                    assert!(
                        matches!(s.sync(), Err(Error::Poisoned)),
                        "sync after a failed fsync must refuse"
                    );
                    assert!(matches!(s.append(1, b"x", None), Err(Error::Poisoned)));
                }
                poisoned = true;
            }
        }
        if round % 2 == 1 {
            if let Err(e) = s.save_index() {
                assert!(expected_error(&e), "save_index: {e}");
                errors.push(format!("save_index: {e}"));
            }
        }
        // reads keep working whatever happened to writes
        for id in &acked {
            assert_eq!(
                s.get(*id).unwrap().as_deref(),
                Some(&payload(*id, len_of(*id))[..])
            );
        }
    }
    if let Err(e) = s.close() {
        assert!(expected_error(&e), "close: {e}");
        errors.push(format!("close: {e}"));
    }
    (acked, errors)
}

fn verify(dir: &std::path::Path, acked: &[u128], what: &str, backend: IndexBackend) {
    let s = PayloadStore::open_with_backend(dir, backend)
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    for id in acked {
        assert_eq!(
            s.get(*id).unwrap().as_deref(),
            Some(&payload(*id, len_of(*id))[..]),
            "{what}: id {id}"
        );
    }
    // anything else present reads back exactly what was appended
    s.for_each(|id, _| {
        assert_eq!(
            s.get(id).unwrap().unwrap(),
            payload(id, len_of(id)),
            "{what}: unsynced id {id} reads wrong bytes"
        );
    })
    .unwrap();
}

#[test]
fn every_io_operation_can_fail() {
    for backend in backends() {
        every_io_operation_can_fail_with(backend);
    }
}

fn every_io_operation_can_fail_with(backend: IndexBackend) {
    let t = TempDir::new("faults");
    let io = FaultyIo::new();
    let (acked, errors) = workload(&t.path().join("count"), &io, backend);
    assert!(errors.is_empty(), "clean run had errors: {errors:?}");
    assert_eq!(acked.len(), 60);
    let total = io.ops();
    assert!(total > 20, "workload did only {total} I/O operations");
    let faults = [Fault::NoSpace, Fault::Eio, Fault::ShortWrite];
    let mut failures_seen = 0;
    for n in 0..total {
        for (fi, fault) in faults.iter().enumerate() {
            let sticky = (n + fi as u64).is_multiple_of(4);
            let dir = t.path().join(format!("n{n}-{fi}"));
            let io = FaultyIo::new();
            io.fail_at(n, *fault, sticky);
            let what = format!(
                "fault {fault:?} at op {n}{}",
                if sticky { " (sticky)" } else { "" }
            );
            let (acked, errors) = workload(&dir, &io, backend);
            assert!(io.injected() > 0, "{what}: not injected");
            assert!(
                !errors.is_empty(),
                "{what}: injected but no call reported an error"
            );
            failures_seen += errors.len();
            verify(&dir, &acked, &what, backend);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert!(failures_seen as u64 >= total * 3);
}

#[test]
fn faults_during_recovery_lose_nothing() {
    let t = TempDir::new("recfaults");
    let base = t.path().join("base");
    // a store left by a crash: synced payloads, then an unsynced tail and no close
    let mut acked = Vec::new();
    {
        let s = PayloadStore::open_with_options(&base, Options::default().auto_checkpoint_bytes(0))
            .unwrap();
        for id in 0..30u128 {
            s.append(id, &payload(id, len_of(id)), None).unwrap();
            acked.push(id);
        }
        s.save_index().unwrap();
        for id in 30..50u128 {
            s.append(id, &payload(id, len_of(id)), None).unwrap();
            acked.push(id); // in the page cache: a process crash keeps them
        }
        s.abandon();
    }
    // recovered with the HashMap index, and with DiskHash (which then builds
    // index.dh from the log: its own creation, growth and syncs can fail)
    for backend in backends() {
        recover_with_faults(&t, &base, &acked, backend);
    }
}

fn recover_with_faults(t: &TempDir, base: &std::path::Path, acked: &[u128], backend: IndexBackend) {
    // count the I/O of a recovery
    let probe = t.path().join("probe");
    copy_dir(base, &probe);
    let io = FaultyIo::new();
    let s = PayloadStore::open_with_options(&probe, opts_for(&io, backend)).unwrap();
    let total = io.ops();
    s.abandon();
    std::fs::remove_dir_all(&probe).unwrap();
    assert!(total >= 2, "recovery did {total} I/O operations");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for n in 0..total {
        for fault in [Fault::NoSpace, Fault::Eio, Fault::ShortWrite] {
            let dir = t.path().join(format!("r{n}"));
            copy_dir(base, &dir);
            let io = FaultyIo::new();
            io.fail_at(n, fault, false);
            match PayloadStore::open_with_options(&dir, opts_for(&io, backend)) {
                Ok(s) => s.abandon(),
                Err(e) => {
                    assert!(expected_error(&e), "recovery fault {fault:?} at {n}: {e}");
                    *seen.entry(format!("{e}")).or_default() += 1;
                }
            }
            verify(
                &dir,
                acked,
                &format!("{backend:?} recovery fault {fault:?} at op {n}"),
                backend,
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert!(!seen.is_empty(), "no recovery operation failed visibly");
}

#[test]
fn full_disk_on_append_keeps_the_store_usable() {
    let t = TempDir::new("enospc");
    let io = FaultyIo::new();
    let s = PayloadStore::open_with_options(t.store(), opts(&io)).unwrap();
    s.append(1, &payload(1, 1000), None).unwrap();
    s.sync().unwrap();
    io.fail_at(0, Fault::NoSpace, true); // the disk is full from now on
    let big = payload(2, 6 << 20); // stored raw, it needs the log to grow
    let raw = Some(CompressionType::None);
    assert!(matches!(s.append(2, &big, raw), Err(Error::NoSpace { .. })));
    assert!(!s.has_payload(2));
    assert_eq!(s.get(1).unwrap().unwrap(), payload(1, 1000));
    io.heal(); // space was freed
    s.append(2, &big, raw).unwrap();
    s.sync().unwrap();
    s.close().unwrap();
    let s = PayloadStore::open(t.store()).unwrap();
    assert_eq!(s.get(2).unwrap().unwrap(), big);
}

#[test]
fn full_disk_while_the_diskhash_table_grows_keeps_the_store_usable() {
    let t = TempDir::new("enospc-dh");
    let io = FaultyIo::new();
    let s =
        PayloadStore::open_with_options(t.store(), opts_for(&io, IndexBackend::DiskHash)).unwrap();
    s.append(1, &payload(1, 1000), None).unwrap();
    s.sync().unwrap();
    io.fail_at(0, Fault::NoSpace, true); // the disk is full from now on
                                         // tiny payloads: the log has room left, the table has to grow
    let mut stored = Vec::new();
    let failed = (100..200_000u128).find_map(|id| match s.append(id, &id.to_le_bytes(), None) {
        Ok(_) => {
            stored.push(id);
            None
        }
        Err(e) => Some((id, e)),
    });
    let (id, e) = failed.expect("the table needed to grow");
    match &e {
        Error::NoSpace { path, .. } => assert!(path.ends_with("index.dh"), "{e}"),
        _ => panic!("expected NoSpace, got {e}"),
    }
    assert!(
        !s.has_payload(id),
        "nothing of the failed append is visible"
    );
    for &k in stored.iter().step_by(97) {
        assert_eq!(s.get(k).unwrap().unwrap(), k.to_le_bytes());
    }
    io.heal(); // space was freed: the same handle goes on
    s.append(id, &id.to_le_bytes(), None).unwrap();
    s.sync().unwrap();
    s.close().unwrap();
    let s = PayloadStore::open_with_backend(t.store(), IndexBackend::DiskHash).unwrap();
    assert_eq!(s.len(), stored.len() + 2);
    assert_eq!(s.get(id).unwrap().unwrap(), id.to_le_bytes());
    assert_eq!(s.get(1).unwrap().unwrap(), payload(1, 1000));
}

#[test]
fn a_fault_anywhere_in_a_pipelined_batch_stores_none_of_it() {
    // 64 compressible payloads of 250 KB: 16 MB to compress, split into runs
    // that are written while later ones compress (batch.rs, `in_order`)
    let datas: Vec<(u128, Vec<u8>)> = (0..64u128)
        .map(|i| (1000 + i, payload(1000 + i, 250_000)))
        .collect();
    let refs: Vec<(u128, &[u8])> = datas.iter().map(|(id, d)| (*id, d.as_slice())).collect();
    // no automatic checkpoint: every operation the batch makes is its own
    let opts = |io: &Arc<FaultyIo>| opts(io).auto_checkpoint_bytes(0);
    let batch_ops = {
        let t = TempDir::new("pipe-count");
        let io = FaultyIo::new();
        let s = PayloadStore::open_with_options(t.store(), opts(&io)).unwrap();
        s.append(1, b"before", None).unwrap();
        let before = io.ops();
        s.append_batch(&refs, None).unwrap();
        io.ops() - before
    };
    assert!(
        batch_ops >= 3,
        "the batch wrote in several runs ({batch_ops} operations)"
    );
    for fault in [Fault::Eio, Fault::NoSpace, Fault::ShortWrite] {
        for n in 0..batch_ops {
            let t = TempDir::new("pipe");
            let io = FaultyIo::new();
            let s = PayloadStore::open_with_options(t.store(), opts(&io)).unwrap();
            s.append(1, b"before", None).unwrap();
            io.fail_at(n, fault, false);
            let e = s.append_batch(&refs, None).expect_err("operation n fails");
            assert!(expected_error(&e), "{fault:?} at {n}: {e}");
            for (id, _) in &datas {
                assert!(
                    !s.has_payload(*id),
                    "{fault:?} at {n}: id {id} visible after a failed batch"
                );
            }
            assert_eq!(s.get(1).unwrap().unwrap(), b"before");
            // the handle keeps working: the same batch again, then reopen
            let locs = s.append_batch(&refs, None).unwrap();
            s.sync().unwrap();
            s.close().unwrap();
            let s = PayloadStore::open(t.store()).unwrap();
            assert_eq!(s.len(), 65);
            for ((id, d), loc) in datas.iter().zip(&locs) {
                assert_eq!(
                    &s.get(*id).unwrap().unwrap(),
                    d,
                    "{fault:?} at {n}: id {id}"
                );
                let codec = CompressionType::try_from(loc.2).unwrap();
                assert_eq!(&s.get_at_offset(loc.0, loc.1, codec).unwrap(), d);
            }
            assert!(s.verify().unwrap().is_clean(), "{fault:?} at {n}");
        }
    }
}
