//! Round trips, replacement, deletion, stats, options and argument errors.
mod common;

use common::*;
use payloadstore::{CompressionType, Error, IndexSource, Options, PayloadStore};

const SIZES: &[usize] = &[
    0,
    1,
    1023,
    1024,
    100 * 1024 - 1,
    100 * 1024,
    100 * 1024 + 1,
    4 << 20,
];
const CHOICES: &[Option<CompressionType>] = &[
    None,
    Some(CompressionType::None),
    Some(CompressionType::Lz4),
    Some(CompressionType::Zstd),
];

#[test]
fn every_size_under_every_compression_survives_reopen() {
    for backend in backends() {
        let t = TempDir::new("rt");
        let mut locs = Vec::new();
        {
            let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
            for (ci, c) in CHOICES.iter().enumerate() {
                for (si, &len) in SIZES.iter().enumerate() {
                    let id = (ci as u128) << 64 | si as u128;
                    let data = payload(id, len);
                    let (off, stored, tag) = s.append(id, &data, *c).unwrap();
                    let tag = CompressionType::try_from(tag).unwrap();
                    if let Some(c) = c {
                        // an explicit codec is used unless it does not shrink the data
                        assert!(
                            tag == *c || tag == CompressionType::None,
                            "{c:?} -> {tag:?}"
                        );
                    } else {
                        let want = if len < 1024 {
                            CompressionType::None
                        } else if len <= 100 * 1024 {
                            CompressionType::Lz4
                        } else {
                            CompressionType::Zstd
                        };
                        assert_eq!(tag, want, "automatic choice for {len} bytes");
                    }
                    if tag != CompressionType::None {
                        assert!((stored as usize) < len);
                    } else {
                        assert_eq!(stored as usize, len);
                    }
                    assert_eq!(s.get(id).unwrap().unwrap(), data);
                    locs.push((id, data, off, stored, tag));
                }
            }
            assert_eq!(s.len(), CHOICES.len() * SIZES.len());
        }
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        assert_eq!(s.stats().recovery.source, IndexSource::Checkpoint);
        assert_eq!(s.len(), locs.len());
        // one Vec reused for every get_to_vec: each call replaces its contents
        let mut v = b"left over from an earlier read".to_vec();
        for (id, data, off, stored, tag) in &locs {
            assert_eq!(&s.get(*id).unwrap().unwrap(), data);
            assert_eq!(&s.get_at_offset(*off, *stored, *tag).unwrap(), data);
            let mut buf = vec![0u8; data.len()];
            assert_eq!(s.get_into(*id, &mut buf).unwrap(), Some(data.len()));
            assert_eq!(&buf, data);
            if !data.is_empty() {
                let mut small = vec![0u8; data.len() - 1];
                assert!(
                    matches!(s.get_into(*id, &mut small), Err(Error::BufferTooSmall { needed }) if needed == data.len())
                );
            }
            assert!(s.get_to_vec(*id, &mut v).unwrap());
            assert_eq!(&v, data);
            assert_eq!(s.payload_len(*id).unwrap(), Some(data.len()));
        }
        assert!(!s.get_to_vec(u128::MAX, &mut v).unwrap());
        assert!(v.is_empty());
    }
}

#[test]
fn last_write_wins_and_delete_leave_dead_bytes() {
    for backend in backends() {
        let t = TempDir::new("lww");
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        let (off1, len1, tag1) = s.append(5, b"first", None).unwrap();
        s.append(5, b"second version", None).unwrap();
        assert_eq!(s.get(5).unwrap().unwrap(), b"second version");
        assert_eq!(s.len(), 1);
        let st = s.stats();
        assert_eq!(st.dead_bytes, 32 + 5, "the replaced record is dead");
        // the old location still reads the old bytes
        assert_eq!(
            s.get_at_offset(off1, len1, CompressionType::try_from(tag1).unwrap())
                .unwrap(),
            b"first"
        );
        assert!(s.delete(5).unwrap());
        assert!(!s.delete(5).unwrap());
        assert!(!s.has_payload(5));
        assert_eq!(s.get(5).unwrap(), None);
        assert!(s.is_empty());
        drop(s);
        // deletes survive reopen, with and without the checkpoint
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        assert_eq!(s.get(5).unwrap(), None);
        s.append(6, b"x", None).unwrap();
        drop(s);
        std::fs::remove_file(t.store().join(index_file(backend))).unwrap();
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        assert_eq!(s.stats().recovery.source, IndexSource::FullScan);
        assert_eq!(s.get(5).unwrap(), None);
        assert_eq!(s.get(6).unwrap().unwrap(), b"x");
        assert_eq!(s.len(), 1);
        let st = s.stats();
        assert_eq!(st.live_bytes, 33);
        assert_eq!(st.dead_bytes, (32 + 5) + (32 + 14) + 32);
    }
}

#[test]
fn stats_report_compression_and_index_memory() {
    let t = TempDir::new("stats");
    let s = PayloadStore::open(t.store()).unwrap();
    for i in 0..300u128 {
        let len = [100, 5000, 200_000][(i % 3) as usize];
        s.append(i, &payload(i, len), None).unwrap();
    }
    let st = s.stats();
    assert_eq!(st.payloads, 300);
    assert_eq!(st.by_compression.iter().map(|c| c.count).sum::<u64>(), 300);
    assert_eq!(st.by_compression[0].count, 100);
    assert_eq!(st.by_compression[1].count, 100);
    assert_eq!(st.by_compression[2].count, 100);
    assert_eq!(st.raw_bytes, 100 * (100 + 5000 + 200_000));
    assert!(st.compression_ratio > 1.5, "ratio {}", st.compression_ratio);
    assert!(st.index_memory_bytes > 0);
    assert_eq!(st.file_bytes, 128 + st.live_bytes);
    s.sync().unwrap();
    assert_eq!(s.durable_offset(), st.file_bytes);
    assert_eq!(s.stats().durable_offset, st.file_bytes);
}

#[test]
fn second_handle_is_locked_and_read_only_handles_share() {
    for backend in backends() {
        let t = TempDir::new("lock");
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        s.append(1, b"one", None).unwrap();
        assert!(matches!(
            PayloadStore::open_with_backend(t.store(), backend),
            Err(Error::Locked { .. })
        ));
        assert!(matches!(
            PayloadStore::open_with_options(
                t.store(),
                Options::default().read_only(true).backend(backend)
            ),
            Err(Error::Locked { .. })
        ));
        drop(s);
        let r1 = PayloadStore::open_with_options(
            t.store(),
            Options::default().read_only(true).backend(backend),
        )
        .unwrap();
        let r2 = PayloadStore::open_with_options(
            t.store(),
            Options::default().read_only(true).backend(backend),
        )
        .unwrap();
        assert_eq!(r1.get(1).unwrap().unwrap(), b"one");
        assert_eq!(r2.get(1).unwrap().unwrap(), b"one");
        assert!(matches!(r1.append(2, b"x", None), Err(Error::ReadOnly)));
        assert!(matches!(r1.save_index(), Err(Error::ReadOnly)));
        assert!(matches!(
            PayloadStore::open_with_backend(t.store(), backend),
            Err(Error::Locked { .. })
        ));
    }
}

#[test]
fn bad_arguments_and_bad_directories_get_specific_errors() {
    let t = TempDir::new("args");
    assert!(matches!(
        PayloadStore::open_with_options(t.store(), Options::default().read_only(true)),
        Err(Error::Io { .. }) | Err(Error::NotAStore { .. })
    ));
    let s = PayloadStore::open(t.store()).unwrap();
    let big = vec![0u8; (payloadstore::MAX_PAYLOAD_LEN + 1) as usize];
    assert!(matches!(
        s.append(1, &big, None),
        Err(Error::PayloadTooLarge { .. })
    ));
    drop(big);
    assert!(s.is_empty(), "a rejected append stores nothing");
    assert!(matches!(
        CompressionType::try_from(9),
        Err(Error::InvalidCompression(9))
    ));
    drop(s);
    // not a store
    let junk = t.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("payload.data"), vec![7u8; 500]).unwrap();
    assert!(matches!(
        PayloadStore::open(&junk),
        Err(Error::NotAStore { .. })
    ));
    assert_eq!(
        std::fs::read(junk.join("payload.data")).unwrap(),
        vec![7u8; 500],
        "a foreign file is left untouched"
    );
    // newer format version
    let mut log = std::fs::read(t.store().join("payload.data")).unwrap();
    log[8] = 9;
    let crc = crc32(&log[..60]);
    log[60..64].copy_from_slice(&crc.to_le_bytes());
    let newer = t.path().join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    std::fs::write(newer.join("payload.data"), &log).unwrap();
    assert!(matches!(
        PayloadStore::open(&newer),
        Err(Error::UnsupportedVersion { found: 9, .. })
    ));
    // a read-only DiskHash open of a store whose index file is missing
    let plain = t.path().join("plain");
    PayloadStore::open(&plain).unwrap().close().unwrap();
    assert!(matches!(
        PayloadStore::open_with_options(
            &plain,
            Options::default()
                .read_only(true)
                .backend(payloadstore::IndexBackend::DiskHash)
        ),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn compression_can_be_turned_off() {
    let t = TempDir::new("nocomp");
    let s =
        PayloadStore::open_with_options(t.store(), Options::default().compression_enabled(false))
            .unwrap();
    let (_, len, tag) = s.append(1, &payload(1, 300_000), None).unwrap();
    assert_eq!((len, tag), (300_000, 0));
    let (_, _, tag) = s
        .append(2, &payload(2, 300_000), Some(CompressionType::Zstd))
        .unwrap();
    assert_eq!(tag, 2, "an explicit codec is still honoured");
}

#[test]
fn memory_warnings_reach_the_callback() {
    use std::sync::{Arc, Mutex};
    let t = TempDir::new("memwarn");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let opts = Options::default()
        .memory_warnings(vec![4 << 10, 16 << 10])
        .log_callback(Arc::new(move |lvl, msg| {
            sink.lock().unwrap().push((lvl, msg.to_string()))
        }));
    let s = PayloadStore::open_with_options(t.store(), opts).unwrap();
    for i in 0..3000u128 {
        s.append(i, b"x", None).unwrap();
    }
    let seen = seen.lock().unwrap();
    let warnings: Vec<_> = seen
        .iter()
        .filter(|(_, m)| m.contains("index memory"))
        .collect();
    assert_eq!(warnings.len(), 2, "{seen:?}");
    assert!(warnings
        .iter()
        .all(|(l, _)| *l == payloadstore::LogLevel::Warn));
}

#[test]
fn for_each_visits_every_live_payload() {
    for backend in backends() {
        let t = TempDir::new("iter");
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        for i in 0..1000u128 {
            s.append(i * 3, &payload(i, 10), None).unwrap();
        }
        s.delete(0).unwrap();
        let mut ids = Vec::new();
        s.for_each(|id, (off, len, tag)| {
            assert_eq!(
                s.get_at_offset(off, len, CompressionType::try_from(tag).unwrap())
                    .unwrap(),
                payload(id / 3, 10)
            );
            ids.push(id);
        })
        .unwrap();
        ids.sort_unstable();
        assert_eq!(ids, (1..1000u128).map(|i| i * 3).collect::<Vec<_>>());
    }
}

#[test]
fn append_batch_matches_append() {
    for backend in backends() {
        let t = TempDir::new("batch");
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        assert!(s.append_batch(&[], None).unwrap().is_empty());
        let datas: Vec<(u128, Vec<u8>)> = SIZES
            .iter()
            .enumerate()
            .map(|(i, &len)| (i as u128, payload(i as u128, len)))
            .collect();
        let mut refs: Vec<(u128, &[u8])> =
            datas.iter().map(|(id, d)| (*id, d.as_slice())).collect();
        refs.push((0, b"zero again")); // same id twice in one batch: the later wins
        let locs = s.append_batch(&refs, None).unwrap();
        assert_eq!(locs.len(), refs.len());
        for ((id, data), loc) in refs.iter().zip(&locs) {
            let codec = CompressionType::try_from(loc.2).unwrap();
            assert_eq!(
                &s.get_at_offset(loc.0, loc.1, codec).unwrap(),
                data,
                "id {id}"
            );
            // same codec choice as a single append
            let single = s.append(1000 + id, data, None).unwrap();
            assert_eq!(single.2, loc.2);
        }
        assert_eq!(s.get(0).unwrap().unwrap(), b"zero again");
        assert_eq!(s.len(), SIZES.len() * 2);
        assert!(s.stats().dead_bytes > 0);
        let big = vec![0u8; (payloadstore::MAX_PAYLOAD_LEN + 1) as usize];
        assert!(matches!(
            s.append_batch(&[(77, b"ok"), (78, &big)], None),
            Err(Error::PayloadTooLarge { .. })
        ));
        assert!(!s.has_payload(77), "a rejected batch stores nothing");
        drop(s);
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        for (id, data) in refs.iter().skip(1) {
            assert_eq!(&s.get(*id).unwrap().unwrap(), data);
        }
    }
}

#[test]
fn large_batches_span_many_vectored_writes() {
    for backend in backends() {
        let t = TempDir::new("bigbatch");
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        // 3000 records, staged into one buffer, and every 300th a raw payload
        // over 64 KiB that is written from where it lies (its own iovec)
        let datas: Vec<(u128, Vec<u8>)> = (0..3000u128)
            .map(|i| {
                (
                    i,
                    payload(
                        i,
                        if i % 300 == 7 {
                            70_000
                        } else {
                            (i % 50) as usize
                        },
                    ),
                )
            })
            .collect();
        let refs: Vec<(u128, &[u8])> = datas.iter().map(|(id, d)| (*id, d.as_slice())).collect();
        let locs = s.append_batch(&refs, Some(CompressionType::None)).unwrap();
        let mut expect_off = locs[0].0;
        for ((id, data), loc) in datas.iter().zip(&locs) {
            assert_eq!(loc.0, expect_off, "records are back to back");
            expect_off += 32 + u64::from(loc.1);
            assert_eq!(&s.get(*id).unwrap().unwrap(), data);
        }
        assert_eq!(s.appended_offset(), expect_off);
        drop(s);
        std::fs::remove_file(t.store().join(index_file(backend))).unwrap();
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        assert_eq!(s.len(), 3000);
        assert_eq!(s.get(2999).unwrap().unwrap(), datas[2999].1);
    }
}
