//! Measures HashMap-index RAM per payload: `cargo run --release --example
//! index_memory -- 1000000 10000000`. For each count, loads that many tiny
//! payloads into a fresh store and prints what `stats()` reports next to the
//! process's anonymous RSS growth (from /proc/self/status, RssAnon).

use payloadstore::PayloadStore;

fn rss_anon_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() -> Result<(), payloadstore::Error> {
    let counts: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1_000_000, 10_000_000]
    } else {
        counts
    };
    println!("| payloads | stats: index bytes | stats: B/payload | RssAnon growth | RssAnon B/payload | after save_index | open from checkpoint |");
    println!("|---|---|---|---|---|---|---|");
    for n in counts {
        let dir = std::env::temp_dir().join(format!("ps-index-memory-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let before = rss_anon_bytes();
        let store = PayloadStore::open(&dir)?;
        let mut x = 0x1234_5678_9abc_def0u64;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (u128::from(x) << 64) | u128::from(i);
            store.append(id, &i.to_le_bytes(), None)?;
        }
        let st = store.stats();
        let grown = rss_anon_bytes().saturating_sub(before);
        // a table still being grown in the background (a load that ends
        // between 70 and 80 % of the table) is finished by a checkpoint
        store.save_index()?;
        let settled = rss_anon_bytes().saturating_sub(before);
        store.close()?;
        let t = std::time::Instant::now();
        let store = PayloadStore::open(&dir)?;
        let open_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(store.len() as u64, n);
        drop(store);
        println!(
            "| {n} | {} | {:.1} | {} | {:.1} | {:.1} | {open_ms:.1} ms |",
            st.index_memory_bytes,
            st.index_bytes_per_payload,
            grown,
            grown as f64 / n as f64,
            settled as f64 / n as f64
        );
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}
