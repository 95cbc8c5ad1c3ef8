//! DiskHash at scale: loads N ids (default 100M) with 8-byte payloads one
//! `append` at a time and reports load rate, append latency percentiles per
//! growth stage, RSS (anonymous and file-backed) at 1M / 10M / 100M, index
//! bytes on disk per id, open time, cold lookups (index pages read per get)
//! and warm lookups against the HashMap backend on the same store.
//!
//! ```text
//! cargo run --release --example diskhash_bench -- [--ids N] [--dir PATH] [--keep]
//! ```
//!
//! Needs ~10 GB of disk for 100M ids; the store is removed afterwards unless
//! `--keep`. Not a test: figures depend on the machine.

// the page-cache helpers (mincore, fadvise) and the PRNG the tests use
#[path = "../tests/common/mod.rs"]
mod common;

use common::{evict, resident_pages, Rng};
use payloadstore::{IndexBackend, Options, PayloadStore};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Log-scale latency histogram: 16 sub-buckets per power of two of ns.
struct Hist {
    counts: Vec<u64>,
    max: u64,
    n: u64,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            counts: vec![0; 64 * 16],
            max: 0,
            n: 0,
        }
    }
    fn add(&mut self, ns: u64) {
        let ns = ns.max(1);
        let p = 63 - ns.leading_zeros() as usize;
        let sub = if p >= 4 {
            ((ns >> (p - 4)) & 15) as usize
        } else {
            0
        };
        self.counts[p * 16 + sub] += 1;
        self.max = self.max.max(ns);
        self.n += 1;
    }
    /// Upper bound of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> u64 {
        let want = (q * self.n as f64).ceil() as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want && c > 0 {
                let (p, sub) = (i / 16, (i % 16) as u64);
                return if p >= 4 {
                    (16 + sub + 1) << (p - 4)
                } else {
                    1 << (p + 1)
                };
            }
        }
        self.max
    }
    fn line(&self, label: &str) -> String {
        format!(
            "| {label:<22} | {:>12} | {:>7} | {:>7} | {:>7} | {:>8} |",
            self.n,
            fmt_ns(self.quantile(0.5)),
            fmt_ns(self.quantile(0.99)),
            fmt_ns(self.quantile(0.999)),
            fmt_ns(self.max),
        )
    }
}

fn fmt_ns(ns: u64) -> String {
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{} µs", ns / 1000)
    } else {
        format!("{} ms", ns / 1_000_000)
    }
}

fn status() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |f: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(f))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (
        kb("VmRSS:") << 10,
        kb("RssAnon:") << 10,
        kb("RssFile:") << 10,
    )
}

fn read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("read_bytes:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn id_of(i: u64) -> u128 {
    u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64 | u128::from(i)
}

fn warm_gets(s: &PayloadStore, n: u64, gets: u64) -> Duration {
    let mut rng = Rng(99);
    let mut buf = [0u8; 64];
    let t = Instant::now();
    for _ in 0..gets {
        let i = rng.below(n);
        let got = s.get_into(id_of(i), &mut buf).unwrap();
        assert_eq!(got, Some(8));
    }
    t.elapsed()
}

fn main() {
    let mut n: u64 = 100_000_000;
    let mut dir = PathBuf::from("target/diskhash-bench");
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ids" => n = args.next().and_then(|v| v.parse().ok()).expect("--ids N"),
            "--dir" => dir = PathBuf::from(args.next().expect("--dir PATH")),
            "--keep" => keep = true,
            _ => panic!("unknown argument {a}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "DiskHash benchmark: {n} ids x 8-byte payloads in {}",
        dir.display()
    );
    println!("(auto-checkpoint off during the load, so latencies show table growth only)\n");

    // ---- load
    let opts = Options::default()
        .backend(IndexBackend::DiskHash)
        .auto_checkpoint_bytes(0);
    let s = PayloadStore::open_with_options(&dir, opts).unwrap();
    let stages: Vec<u64> = [1_000_000u64, 10_000_000, 100_000_000, 1_000_000_000]
        .into_iter()
        .filter(|&m| m < n)
        .chain([n])
        .collect();
    let mut hists = Vec::new();
    let mut mem_rows = Vec::new();
    let mut all = Hist::new();
    let started = Instant::now();
    let mut from = 0;
    for &to in &stages {
        let mut h = Hist::new();
        for i in from..to {
            let t = Instant::now();
            s.append(id_of(i), &i.to_le_bytes(), None).unwrap();
            let ns = t.elapsed().as_nanos() as u64;
            h.add(ns);
            all.add(ns);
            if i % (n / 20).max(1) == 0 {
                print!("\r  loading: {:>3}%", i * 100 / n);
                let _ = std::io::stdout().flush();
            }
        }
        let st = s.stats();
        let (rss, anon, file) = status();
        mem_rows.push(format!(
            "| {to:>12} | {:>10} | {:>10} | {:>10} | {:>10} | {:>6.1} | {:>9} |",
            mb(rss),
            mb(anon),
            mb(file),
            mb(st.index_file_bytes),
            st.index_file_bytes as f64 / to as f64,
            mb(st.index_memory_bytes),
        ));
        hists.push((format!("{from}..{to}"), h));
        from = to;
    }
    let load = started.elapsed();
    println!("\r  loading: done      ");
    let t = Instant::now();
    s.save_index().unwrap();
    let ckpt = t.elapsed();
    let st = s.stats();
    s.close().unwrap();
    println!(
        "\nload: {:.1} s, {:.0} appends/s, {:.1} MB/s of payload ({:.1} MB/s log incl. headers); final checkpoint {:.2} s",
        load.as_secs_f64(),
        n as f64 / load.as_secs_f64(),
        (n * 8) as f64 / 1e6 / load.as_secs_f64(),
        st.file_bytes as f64 / 1e6 / load.as_secs_f64(),
        ckpt.as_secs_f64()
    );
    println!("\nappend latency by stage of growth:\n");
    println!("| ids                    |      appends |     p50 |     p99 |   p99.9 |      max |");
    println!("|------------------------|--------------|---------|---------|---------|----------|");
    for (label, h) in &hists {
        println!("{}", h.line(label));
    }
    println!("{}", all.line("all"));
    println!("\nmemory (RssFile = mapped pages of log and index, reclaimable page cache):\n");
    println!(
        "|          ids |     VmRSS  |   RssAnon  |   RssFile  | index file | B/id   | index RAM |"
    );
    println!(
        "|--------------|------------|------------|------------|------------|--------|-----------|"
    );
    for r in &mem_rows {
        println!("{r}");
    }

    // ---- open after a clean close
    let index = dir.join("index.dh");
    let log = dir.join("payload.data");
    let t = Instant::now();
    let s = PayloadStore::open_with_backend(&dir, IndexBackend::DiskHash).unwrap();
    let open = t.elapsed();
    assert_eq!(s.len() as u64, n);
    println!(
        "\nopen after clean close (DiskHash): {:.3} ms",
        open.as_secs_f64() * 1e3
    );

    // ---- cold lookups: index and log evicted from the page cache
    evict(&index);
    evict(&log);
    let res0 = resident_pages(&index).0;
    let io0 = read_bytes();
    let mut rng = Rng(7);
    let cold = 2000u64;
    let mut h = Hist::new();
    let mut buf = [0u8; 64];
    for k in 0..cold {
        let i = rng.below(2 * n); // half misses
        let t = Instant::now();
        let got = s.get_into(id_of(i), &mut buf).unwrap();
        h.add(t.elapsed().as_nanos() as u64);
        assert_eq!(got.is_some(), i < n, "lookup {k}");
    }
    let res1 = resident_pages(&index).0;
    let io1 = read_bytes();
    println!(
        "cold lookups ({cold}, half misses): p50 {} p99 {} max {}; index pages read {:.3}/lookup; storage reads {:.0} bytes/lookup (index + log)",
        fmt_ns(h.quantile(0.5)),
        fmt_ns(h.quantile(0.99)),
        fmt_ns(h.max),
        (res1 - res0) as f64 / cold as f64,
        (io1 - io0) as f64 / cold as f64
    );

    // ---- warm lookups: DiskHash vs HashMap on the same store
    let gets = 2_000_000u64.min(n * 4);
    warm_gets(&s, n, gets);
    let dh = warm_gets(&s, n, gets);
    drop(s);
    let t = Instant::now();
    let s = PayloadStore::open_with_backend(&dir, IndexBackend::HashMap).unwrap();
    let convert = t.elapsed();
    let hm_ram = s.stats().index_memory_bytes;
    warm_gets(&s, n, gets);
    let hm = warm_gets(&s, n, gets);
    drop(s);
    println!(
        "warm lookups ({gets} random hits, 1 thread): DiskHash {:.0} ns/get, HashMap {:.0} ns/get: ratio {:.2}x",
        dh.as_nanos() as f64 / gets as f64,
        hm.as_nanos() as f64 / gets as f64,
        dh.as_secs_f64() / hm.as_secs_f64()
    );
    println!(
        "converting to HashMap (full log scan): {:.1} s; HashMap index RAM {} ({:.1} B/id) vs DiskHash {}",
        convert.as_secs_f64(),
        mb(hm_ram),
        hm_ram as f64 / n as f64,
        mb(st.index_memory_bytes)
    );
    // ---- what a machine crash with unsaved index changes costs: a rebuild
    std::fs::remove_file(&index).unwrap();
    let t = Instant::now();
    let s = PayloadStore::open_with_backend(&dir, IndexBackend::DiskHash).unwrap();
    let rebuild = t.elapsed();
    assert_eq!(s.len() as u64, n);
    s.close().unwrap();
    println!(
        "rebuilding index.dh from the log (after a machine crash while dirty, or converting from HashMap): {:.1} s ({:.0} records/s)",
        rebuild.as_secs_f64(),
        n as f64 / rebuild.as_secs_f64()
    );
    let du = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    println!(
        "disk: log {} ({:.1} B/id), index file {} ({:.1} B/id)",
        mb(du(&log)),
        du(&log) as f64 / n as f64,
        mb(du(&index)),
        du(&index) as f64 / n as f64
    );
    if !keep {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
