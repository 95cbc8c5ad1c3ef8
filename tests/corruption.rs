//! Damaged files: torn tails, flipped bytes, bad checkpoints, wrong locations.
mod common;

use common::*;
use payloadstore::{CompressionType, Error, IndexSource, Options, PayloadStore};
use std::path::Path;

const LOG: &str = "payload.data";
const CKPT: &str = "index.ckpt";

struct Item {
    id: u128,
    data: Vec<u8>,
    loc: (u64, u32, u8),
}

fn fill(dir: &Path, ids: std::ops::Range<u128>, backend: payloadstore::IndexBackend) -> Vec<Item> {
    let s = PayloadStore::open_with_backend(dir, backend).unwrap();
    let items: Vec<Item> = ids
        .map(|id| {
            let data = payload(id, [10, 700, 3000, 20_000][(id % 4) as usize]);
            let loc = s.append(id, &data, None).unwrap();
            Item { id, data, loc }
        })
        .collect();
    s.close().unwrap();
    items
}

fn check_all(s: &PayloadStore, items: &[Item]) {
    for it in items {
        assert_eq!(
            s.get(it.id).unwrap().as_ref(),
            Some(&it.data),
            "id {}",
            it.id
        );
    }
}

/// The last record was appended after the last sync (its bytes are past the
/// durable watermark): a cut anywhere inside it is a torn tail — cut off,
/// reported, everything before it intact.
#[test]
fn torn_last_record_is_cut_at_every_offset() {
    for backend in backends() {
        let t = TempDir::new("torn");
        let a = t.path().join("a");
        let items = fill(&a, 0..40, backend);
        // B = A + one more record; take B's log with A's header (watermark)
        // and A's checkpoint: exactly what a crash before the sync leaves.
        let b = t.path().join("b");
        copy_dir(&a, &b);
        let last = {
            let s = PayloadStore::open_with_backend(&b, backend).unwrap();
            let data = payload(999, 5000);
            let loc = s.append(999, &data, None).unwrap();
            s.close().unwrap();
            loc
        };
        let mut log = std::fs::read(b.join(LOG)).unwrap();
        let a_log = std::fs::read(a.join(LOG)).unwrap();
        log[..128].copy_from_slice(&a_log[..128]);
        let (start, end) = (last.0, last.0 + 32 + u64::from(last.1));
        assert_eq!(end as usize, log.len());
        let work = t.path().join("w");
        for cut in start + 1..end {
            copy_dir(&a, &work);
            std::fs::write(work.join(LOG), &log[..cut as usize]).unwrap();
            let s = PayloadStore::open_with_backend(&work, backend).unwrap();
            let r = s.stats().recovery;
            // A torn tail is the non-zero bytes past the last record: when
            // the bytes left happen to be zeros (the checksum, first in the
            // header, starts with a zero byte for 1 salt in 256), they read
            // as the preallocated end of the log, and nothing is torn.
            let left = &log[start as usize..cut as usize];
            let torn = if left.iter().all(|&b| b == 0) {
                0
            } else {
                cut - start
            };
            assert_eq!(r.torn_tail_bytes, torn, "cut at {cut}");
            assert_eq!(r.torn_tail_offset, if torn > 0 { start } else { 0 });
            assert_eq!(s.get(999).unwrap(), None);
            assert_eq!(s.len(), items.len());
            if cut % 97 == 0 {
                check_all(&s, &items);
            }
            // the store stays usable: append where the tail was
            s.append(1000, b"after", None).unwrap();
            drop(s);
            let s = PayloadStore::open_with_backend(&work, backend).unwrap();
            assert_eq!(s.get(1000).unwrap().unwrap(), b"after");
            assert_eq!(s.stats().recovery.torn_tail_bytes, 0);
        }
        // the case the salt picks only now and then: what is left of the
        // record is zeros
        copy_dir(&a, &work);
        let mut zeros = log[..start as usize].to_vec();
        zeros.extend_from_slice(&[0; 7]);
        std::fs::write(work.join(LOG), &zeros).unwrap();
        let s = PayloadStore::open_with_backend(&work, backend).unwrap();
        let r = s.stats().recovery;
        assert_eq!((r.torn_tail_bytes, r.torn_tail_offset), (0, 0));
        assert_eq!(s.len(), items.len());
        check_all(&s, &items);
    }
}

/// Cutting into a record that was durable (below the watermark) is data loss
/// the store cannot explain as a crash: open refuses with `Corrupt`; repair
/// keeps every intact record.
#[test]
fn truncated_durable_record_is_an_error_unless_repairing() {
    let t = TempDir::new("trdur");
    let a = t.path().join("a");
    let items = fill(&a, 0..20, payloadstore::IndexBackend::HashMap);
    let last = items.last().unwrap();
    let log = std::fs::read(a.join(LOG)).unwrap();
    for cut in [
        last.loc.0 + 1,
        last.loc.0 + 31,
        last.loc.0 + 33,
        log.len() as u64 - 1,
    ] {
        let w = t.path().join("w");
        copy_dir(&a, &w);
        std::fs::write(w.join(LOG), &log[..cut as usize]).unwrap();
        match PayloadStore::open(&w) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, last.loc.0),
            Err(e) => panic!("cut {cut}: {e}"),
            Ok(_) => panic!("cut {cut}: opened"),
        }
        assert_eq!(
            std::fs::metadata(w.join(LOG)).unwrap().len(),
            cut,
            "a refused open changes nothing"
        );
        let s = PayloadStore::open_with_options(&w, Options::default().repair(true)).unwrap();
        check_all(&s, &items[..items.len() - 1]);
        assert_eq!(s.get(last.id).unwrap(), None);
    }
}

#[test]
fn flipped_byte_in_a_middle_record() {
    let t = TempDir::new("flip");
    let a = t.path().join("a");
    let items = fill(&a, 0..60, payloadstore::IndexBackend::HashMap);
    let victim = &items[30];
    for at in [
        victim.loc.0 + 3,
        victim.loc.0 + 10,
        victim.loc.0 + 40 + u64::from(victim.loc.1) / 2,
    ] {
        let w = t.path().join("w");
        copy_dir(&a, &w);
        let mut log = std::fs::read(w.join(LOG)).unwrap();
        log[at as usize] ^= 0x20;
        std::fs::write(w.join(LOG), &log).unwrap();
        // 1. with the checkpoint: opens; the damaged payload is an error, never bytes
        {
            let s = PayloadStore::open(&w).unwrap();
            for it in &items {
                match s.get(it.id) {
                    Ok(Some(d)) => {
                        assert_ne!(it.id, victim.id, "damaged record returned");
                        assert_eq!(d, it.data)
                    }
                    Ok(None) => assert_eq!(it.id, victim.id, "flip at {at} hid id {}", it.id),
                    Err(Error::ChecksumMismatch { offset }) => assert_eq!(offset, victim.loc.0),
                    Err(e) => panic!("{e}"),
                }
            }
            // get_many answers the same, id by id: the damage stays with
            // the victim and never stops or alters the others
            let ids: Vec<u128> = items.iter().map(|it| it.id).collect();
            for (it, got) in items.iter().zip(s.get_many(&ids)) {
                match (got, s.get(it.id)) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "get_many of {}", it.id),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("id {}: get_many {a:?}, get {b:?}", it.id),
                }
            }
            let (o, l, c) = victim.loc;
            assert!(s
                .get_at_offset(o, l, CompressionType::try_from(c).unwrap())
                .is_err());
            // the scrub finds the latent damage: one region at the victim,
            // one index entry that leads to it, nothing else
            let r = s.verify().unwrap();
            assert_eq!(r.damaged.len(), 1, "flip at {at}: {r:?}");
            assert_eq!(r.damaged[0].0, victim.loc.0);
            assert_eq!(r.records, items.len() as u64 - 1);
            assert_eq!(r.index_entries, items.len() as u64);
            assert_eq!(
                (r.index_errors, r.first_index_error),
                (1, Some(victim.loc.0))
            );
            assert!(!r.is_clean());
            s.close().unwrap();
        }
        // 2. without the checkpoint: the full scan refuses to guess
        std::fs::remove_file(w.join(CKPT)).unwrap();
        assert!(
            matches!(PayloadStore::open(&w), Err(Error::Corrupt { offset, .. }) if offset == victim.loc.0)
        );
        // 3. repair keeps every intact record, before and after the damage
        let s = PayloadStore::open_with_options(&w, Options::default().repair(true)).unwrap();
        let r = s.stats().recovery;
        assert_eq!(r.repaired_regions.len(), 1);
        assert_eq!(r.repaired_regions[0].0, victim.loc.0);
        for it in &items {
            if it.id != victim.id {
                assert_eq!(s.get(it.id).unwrap().unwrap(), it.data);
            }
        }
        assert_eq!(s.get(victim.id).unwrap(), None);
        assert_eq!(s.len(), items.len() - 1);
        assert!(
            s.verify().unwrap().is_clean(),
            "repaired store scrubs clean"
        );
        drop(s);
        // 4. the repair is persistent: a plain full-scan open now succeeds
        std::fs::remove_file(w.join(CKPT)).unwrap();
        let s = PayloadStore::open(&w).unwrap();
        assert_eq!(s.len(), items.len() - 1);
        assert_eq!(s.stats().recovery.source, IndexSource::FullScan);
    }
}

#[test]
fn missing_truncated_or_garbled_checkpoint_is_rebuilt() {
    for backend in backends() {
        let t = TempDir::new("ckpt");
        let a = t.path().join("a");
        let items = fill(&a, 0..200, backend);
        let file = index_file(backend);
        let ck = std::fs::read(a.join(file)).unwrap();
        let header_len = if file == CKPT { 160 } else { 4096 };
        let mut damage: Vec<(&str, Option<Vec<u8>>)> = vec![
            ("deleted", None),
            ("empty", Some(vec![])),
            ("header only", Some(ck[..header_len].to_vec())),
            (
                "garbled header",
                Some({
                    let mut c = ck.clone();
                    c[30] ^= 1;
                    c
                }),
            ),
            (
                "random",
                Some((0..ck.len()).map(|i| (i * 31 % 251) as u8).collect()),
            ),
        ];
        if file == CKPT {
            // The checkpoint is checksummed whole. (DiskHash bucket pages are
            // not: see the README, "DiskHash index".)
            damage.push(("truncated", Some(ck[..ck.len() / 2].to_vec())));
            damage.push((
                "garbled body",
                Some({
                    let mut c = ck.clone();
                    let n = c.len();
                    c[n - 100] ^= 0x40;
                    c
                }),
            ));
        } else {
            // an index of another store of the same size
            let other = t.path().join("other");
            fill(&other, 0..200, backend);
            damage.push(("foreign", Some(std::fs::read(other.join(file)).unwrap())));
        }
        for (what, content) in damage {
            let w = t.path().join("w");
            copy_dir(&a, &w);
            match content {
                None => std::fs::remove_file(w.join(file)).unwrap(),
                Some(c) => std::fs::write(w.join(file), c).unwrap(),
            }
            let s = PayloadStore::open_with_backend(&w, backend).unwrap();
            let r = s.stats().recovery;
            assert_eq!(r.source, IndexSource::FullScan, "{what}");
            assert!(r.checkpoint_problem.is_some(), "{what}");
            assert_eq!(s.len(), items.len(), "{what}");
            check_all(&s, &items);
            drop(s);
            // the rebuilt index was saved at close: the next open uses it
            let s = PayloadStore::open_with_backend(&w, backend).unwrap();
            assert_eq!(s.stats().recovery.source, IndexSource::Checkpoint, "{what}");
            check_all(&s, &items);
        }
    }
}

#[test]
fn stale_or_foreign_checkpoint() {
    let t = TempDir::new("stale");
    let a = t.path().join("a");
    let s = PayloadStore::open(&a).unwrap();
    for i in 0..100u128 {
        s.append(i, &payload(i, 500), None).unwrap();
    }
    s.save_index().unwrap();
    let old_ck = std::fs::read(a.join(CKPT)).unwrap();
    for i in 100..150u128 {
        s.append(i, &payload(i, 500), None).unwrap();
    }
    s.delete(3).unwrap();
    s.append(4, b"replaced", None).unwrap();
    s.close().unwrap();
    // an older checkpoint of the same log: only the tail after it is replayed
    std::fs::write(a.join(CKPT), &old_ck).unwrap();
    let s = PayloadStore::open(&a).unwrap();
    let r = s.stats().recovery;
    assert_eq!(r.source, IndexSource::Checkpoint);
    assert_eq!(r.replayed_records, 52);
    assert_eq!(s.len(), 149);
    assert_eq!(s.get(3).unwrap(), None);
    assert_eq!(s.get(4).unwrap().unwrap(), b"replaced");
    assert_eq!(s.get(149).unwrap().unwrap(), payload(149, 500));
    drop(s);
    // a checkpoint of another store is refused
    let b = t.path().join("b");
    fill(&b, 0..10, payloadstore::IndexBackend::HashMap);
    std::fs::copy(b.join(CKPT), a.join(CKPT)).unwrap();
    let s = PayloadStore::open(&a).unwrap();
    assert_eq!(s.stats().recovery.source, IndexSource::FullScan);
    assert_eq!(s.len(), 149);
    drop(s);
    // a checkpoint claiming more than the log holds (the log is an older copy)
    // is refused, never trusted to point past the end
    let older = t.path().join("older");
    fill(&older, 0..30, payloadstore::IndexBackend::HashMap);
    let newer = t.path().join("newer");
    copy_dir(&older, &newer);
    {
        let s = PayloadStore::open(&newer).unwrap();
        for i in 30..60u128 {
            s.append(i, &payload(i, 10), None).unwrap();
        }
    }
    std::fs::copy(newer.join(CKPT), older.join(CKPT)).unwrap();
    let s = PayloadStore::open(&older).unwrap();
    let r = s.stats().recovery;
    assert_eq!(r.source, IndexSource::FullScan);
    assert!(r
        .checkpoint_problem
        .unwrap()
        .contains("more than the log holds"));
    assert_eq!(s.len(), 30);
    assert_eq!(s.get(45).unwrap(), None);
}

#[test]
fn get_at_offset_rejects_every_wrong_location() {
    let t = TempDir::new("loc");
    let s = PayloadStore::open(t.store()).unwrap();
    let mut items = Vec::new();
    for id in 0..50u128 {
        let data = payload(id, [0, 5, 900, 4000, 150_000][(id % 5) as usize]);
        let loc = s.append(id, &data, None).unwrap();
        items.push((data, loc));
    }
    s.delete(7).unwrap();
    let end = s.appended_offset();
    let real: std::collections::HashSet<(u64, u32, u8)> = items.iter().map(|(_, l)| *l).collect();
    let codecs = [
        CompressionType::None,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];
    for (data, (off, len, tag)) in &items {
        let tag = CompressionType::try_from(*tag).unwrap();
        assert_eq!(&s.get_at_offset(*off, *len, tag).unwrap(), data);
        for d in [-64i64, -33, -32, -31, -1, 1, 2, 31, 32, 33] {
            let o = off.wrapping_add_signed(d);
            let r = s.get_at_offset(o, *len, tag);
            assert!(
                matches!(r, Err(Error::InvalidLocation { .. })),
                "offset {off}{d:+}: {r:?}"
            );
        }
        for dl in [-1i64, 1, 1000] {
            let l = (*len as i64 + dl).max(0) as u32;
            if l != *len {
                assert!(matches!(
                    s.get_at_offset(*off, l, tag),
                    Err(Error::InvalidLocation { .. })
                ));
            }
        }
        for c in codecs.iter().filter(|c| **c != tag) {
            assert!(matches!(
                s.get_at_offset(*off, *len, *c),
                Err(Error::InvalidLocation { .. })
            ));
        }
    }
    for (o, l) in [
        (0u64, 0u32),
        (64, 10),
        (127, 1),
        (end, 0),
        (end - 1, 0),
        (u64::MAX, u32::MAX),
        (u64::MAX - 10, 5),
        (128, u32::MAX),
    ] {
        for c in codecs {
            assert!(
                matches!(s.get_at_offset(o, l, c), Err(Error::InvalidLocation { .. })),
                "({o}, {l}, {c:?})"
            );
        }
    }
    // random locations: an error unless it is exactly a real one
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let o = rng.below(end + 100);
        let l = if rng.below(2) == 0 {
            rng.below(5000) as u32
        } else {
            items[rng.below(50) as usize].1 .1
        };
        let c = codecs[rng.below(3) as usize];
        match s.get_at_offset(o, l, c) {
            Ok(d) => {
                assert!(
                    real.contains(&(o, l, c as u8)),
                    "accepted fake location ({o}, {l}, {c:?})"
                );
                let (data, _) = items
                    .iter()
                    .find(|(_, loc)| *loc == (o, l, c as u8))
                    .unwrap();
                assert_eq!(&d, data);
            }
            Err(Error::InvalidLocation { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// The scrub on both backends: a clean store verifies clean; a run of
/// zeroed sectors in the middle of the log (which open does not read: the
/// index comes from the checkpoint or the table) is reported as one damaged
/// region plus one index error per payload it swallowed, while appends go
/// on and every other payload stays readable.
#[test]
fn verify_reports_zeroed_sectors_on_both_backends() {
    for backend in backends() {
        let t = TempDir::new("scrub");
        let a = t.path().join("a");
        let items = fill(&a, 0..80, backend);
        {
            let s = PayloadStore::open_with_backend(&a, backend).unwrap();
            let r = s.verify().unwrap();
            assert!(r.is_clean(), "{backend:?}: {r:?}");
            assert_eq!((r.records, r.index_entries), (80, 80));
        }
        let mut log = std::fs::read(a.join(LOG)).unwrap();
        let (from, to) = (
            items[40].loc.0 as usize + 100,
            items[40].loc.0 as usize + 8292,
        );
        log[from..to].fill(0);
        std::fs::write(a.join(LOG), &log).unwrap();
        let hit: Vec<&Item> = items
            .iter()
            .filter(|it| {
                let (o, l) = (it.loc.0 as usize, it.loc.1 as usize + 32);
                o < to && o + l > from
            })
            .collect();
        assert!(hit.len() >= 2, "the zeroed run spans records");
        let s = PayloadStore::open_with_backend(&a, backend).unwrap();
        s.append(1000, b"meanwhile", None).unwrap();
        let r = s.verify().unwrap();
        assert_eq!(r.damaged.len(), 1, "{backend:?}: {r:?}");
        let (d_off, d_len) = r.damaged[0];
        assert_eq!(d_off, hit[0].loc.0);
        let last = hit.last().unwrap();
        assert_eq!(d_off + d_len, last.loc.0 + 32 + u64::from(last.loc.1));
        assert_eq!(r.index_entries, 81);
        assert_eq!(r.index_errors, hit.len() as u64);
        assert!(r.first_index_error.is_some());
        for it in &items {
            if hit.iter().all(|h| h.id != it.id) {
                assert_eq!(s.get(it.id).unwrap().unwrap(), it.data);
            }
        }
        assert_eq!(s.get(1000).unwrap().unwrap(), b"meanwhile");
    }
}
