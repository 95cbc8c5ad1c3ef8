//! The Rust half of the main demo (`bash examples/run-demo.sh` runs it after
//! the C demo): concurrent appenders with group commit, verified reads,
//! replacement and deletion, a simulated crash (the tail after the last
//! checkpoint is replayed), compaction, and a location that is not a record.

use payloadstore::{CompressionType, IndexBackend, Options, PayloadStore, SyncPolicy};
use std::time::Instant;

fn payload(id: u128, len: usize) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"agent ",
        b"tool ",
        b"result ",
        b"{\"edge\": ",
        b"42, ",
        b"trace ",
        b"span ",
        b"ok ",
    ];
    let mut x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(words[(x % 8) as usize]);
    }
    v.truncate(len);
    v
}

fn len_of(id: u128) -> usize {
    [200, 800, 4000, 30_000, 250_000][(id % 5) as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("payload-store-rust-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    println!("payload_store - Rust demo in {}", dir.display());

    // 1. Two threads append with group commit: each append is durable when it returns.
    let store = PayloadStore::open_with_options(
        &dir,
        Options::default().sync_policy(SyncPolicy::GroupCommit),
    )?;
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..2u128 {
            let store = &store;
            s.spawn(move || {
                for i in 0..500u128 {
                    let id = w << 64 | i;
                    store
                        .append(id, &payload(id, len_of(id)), None)
                        .expect("append");
                }
            });
        }
    });
    let st = store.stats();
    println!(
        "2 threads appended {} payloads with group commit in {:.2} s; durable up to offset {} of {}",
        st.payloads,
        t.elapsed().as_secs_f64(),
        st.durable_offset,
        st.file_bytes
    );
    for (name, c) in ["none", "lz4", "zstd"].iter().zip(st.by_compression) {
        if c.count > 0 {
            println!(
                "  {name:>4}: {:4} payloads, ratio {:.2}",
                c.count,
                c.raw_bytes as f64 / c.stored_bytes as f64
            );
        }
    }

    // 2. Every payload reads back byte-identical.
    for w in 0..2u128 {
        for i in 0..500u128 {
            let id = w << 64 | i;
            assert_eq!(
                store.get(id)?.as_deref(),
                Some(&payload(id, len_of(id))[..])
            );
        }
    }
    println!("verified 1000 payloads");
    let scrub = store.verify()?;
    assert!(scrub.is_clean());
    println!(
        "scrub: {} records, {} bytes of log checksummed, {} index entries lead to their records",
        scrub.records, scrub.bytes, scrub.index_entries
    );

    // 3. Replace and delete; old locations stay readable, wrong ones are refused.
    let (off, len, tag) = store.append(7, b"version 1", None)?;
    store.append(7, b"version 2", None)?;
    store.delete(3)?;
    println!(
        "id 7 is now {:?}; its old location still reads {:?}; id 3 deleted: {:?}",
        String::from_utf8_lossy(&store.get(7)?.unwrap_or_default()),
        String::from_utf8_lossy(&store.get_at_offset(off, len, CompressionType::try_from(tag)?)?),
        store.get(3)?
    );
    match store.get_at_offset(off + 1, len, CompressionType::None) {
        Err(e) => println!("a location one byte off: {e}"),
        Ok(_) => panic!("wrong location accepted"),
    }
    store.save_index()?;

    // 4. Appends after the checkpoint, then a "crash": the handle is
    //    abandoned without closing, as a killed process leaves it (the bytes
    //    are in the page cache; no final sync, no index save).
    for i in 0..100u128 {
        store.append(1 << 100 | i, &payload(i, 700), None)?;
    }
    store.sync()?;
    let live = store.len();
    store.abandon();
    println!("simulated crash with {live} payloads, without close");
    let t = Instant::now();
    let reopened = PayloadStore::open(&dir)?;
    let r = reopened.stats().recovery;
    println!(
        "reopened in {:.1} ms: index from {:?}, {} records replayed after the checkpoint, {} payloads",
        t.elapsed().as_secs_f64() * 1e3,
        r.source,
        r.replayed_records,
        reopened.len()
    );
    assert_eq!(reopened.len(), live);
    assert_eq!(
        reopened.get(1 << 100 | 99)?.as_deref(),
        Some(&payload(99, 700)[..])
    );

    // Replace the 250 KB payloads with small ones, then compact: the log
    // keeps only what the index still names.
    let big: Vec<u128> = (0..500u128).filter(|i| len_of(*i) == 250_000).collect();
    for &id in &big {
        reopened.append(id, &payload(id + 7, 300), None)?;
    }
    let dead = reopened.stats().dead_bytes;
    let c = reopened.compact()?;
    println!(
        "replaced {} large payloads ({:.1} MiB dead), compacted: {} live payloads, log {:.1} -> {:.1} MiB in {:.0} ms",
        big.len(),
        dead as f64 / 1048576.0,
        c.payloads,
        c.bytes_before as f64 / 1048576.0,
        c.bytes_after as f64 / 1048576.0,
        c.duration.as_secs_f64() * 1e3
    );
    assert_eq!(reopened.get(big[0])?, Some(payload(big[0] + 7, 300)));
    assert_eq!(reopened.stats().dead_bytes, 0);
    assert!(reopened.verify()?.is_clean());
    reopened.close()?;

    // 5. The same store with the on-disk index: the first open builds
    //    index.dh from the log; later opens map it (RAM stays fixed however
    //    many ids the store holds).
    let t = Instant::now();
    let disk = PayloadStore::open_with_backend(&dir, IndexBackend::DiskHash)?;
    println!(
        "opened with DiskHash in {:.1} ms ({:?}: index.dh built from the log)",
        t.elapsed().as_secs_f64() * 1e3,
        disk.stats().recovery.source
    );
    for i in 0..200_000u128 {
        disk.append(2 << 100 | i, &(i as u64).to_le_bytes(), None)?;
    }
    disk.close()?;
    let t = Instant::now();
    let disk = PayloadStore::open_with_backend(&dir, IndexBackend::DiskHash)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let st = disk.stats();
    println!(
        "DiskHash: {} payloads, reopened in {open_ms:.2} ms, index file {:.1} MB on disk, {:.1} KB of index RAM",
        st.payloads,
        st.index_file_bytes as f64 / 1e6,
        st.index_memory_bytes as f64 / 1e3
    );
    assert_eq!(
        disk.get(2 << 100 | 123_456)?.as_deref(),
        Some(&123_456u64.to_le_bytes()[..])
    );
    assert_eq!(disk.len(), live + 200_000);
    disk.close()?;
    std::fs::remove_dir_all(&dir).ok();
    println!("Rust demo: OK");
    Ok(())
}
