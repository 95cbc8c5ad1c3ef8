//! Benchmark: payload_store beside a raw-file baseline, same workload, same run.
//!
//! ```text
//! cargo run --release --example bench -- --workload w1            # 1M x 100-1000 B
//! cargo run --release --example bench -- --workload w2 [--no-compression]
//! options: --count N  --get-secs S  --sync-count N  --dir DIR  --seed S
//!          --engine all|both|store|raw|checked  --rounds R
//! ```
//!
//! The baseline is the floor the store is measured against: one append-only
//! file of `[id u128][len u32][bytes]` written with one `write(2)` per batch
//! of 1000, an in-memory `HashMap` index, reads copied out of an `mmap`; no
//! checksums, no compression, no persisted index (open = full scan).
//! The checked baseline is the same file with a CRC-32 of each payload in
//! its record (`[id u128][len u32][crc u32][bytes]`, computed with the
//! store's own CRC code) that every get checks before it copies: the least a
//! hand-rolled blob file that never returns damaged bytes has to do, so the
//! ratio against it is the price of the store's own design rather than of
//! verification.
//! "append per item" loads up to 1 GiB with one call per item and no sync:
//! the store's `append`, the baseline's `write(2)` of one record.
//! Figures are printed as absolute values and as ratios store / baseline.
//! `--engine both` runs the store and the baseline only, `--engine store`,
//! `raw` or `checked` one of them; the default runs all three.
//! `--rounds R` runs every engine R times, in turn and in alternating order
//! (baselines first in even rounds, the store first in odd ones), and prints
//! each figure's median with the range of the per-round ratios: on a shared
//! machine a single run of each can be off by a third.

use payloadstore::{Options, PayloadStore};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    workload: String,
    count: usize,
    get_secs: f64,
    sync_count: usize,
    dir: PathBuf,
    seed: u64,
    compression: bool,
    engines: String,
    rounds: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        workload: "w1".into(),
        count: 0,
        get_secs: 3.0,
        sync_count: 100_000,
        dir: std::env::temp_dir().join("payload-store-bench"),
        seed: 42,
        compression: true,
        engines: "all".into(),
        rounds: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--workload" => a.workload = v(),
            "--count" => a.count = v().parse().expect("--count N"),
            "--get-secs" => a.get_secs = v().parse().expect("--get-secs S"),
            "--sync-count" => a.sync_count = v().parse().expect("--sync-count N"),
            "--dir" => a.dir = PathBuf::from(v()),
            "--seed" => a.seed = v().parse().expect("--seed S"),
            "--no-compression" => a.compression = false,
            "--engine" => a.engines = v(),
            "--rounds" => a.rounds = v().parse::<usize>().expect("--rounds R").max(1),
            "--help" | "-h" => {
                println!("see the doc comment of examples/bench.rs");
                std::process::exit(0);
            }
            other => panic!("unknown option {other}"),
        }
    }
    if a.count == 0 {
        a.count = if a.workload == "w2" {
            200_000
        } else {
            1_000_000
        };
    }
    a
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Items: (id, offset into the pool, length).
struct Workload {
    pool: Vec<u8>,
    items: Vec<(u128, usize, usize)>,
    logical: u64,
}

impl Workload {
    fn new(name: &str, count: usize, seed: u64) -> Workload {
        let mut r = Rng(seed);
        // Text-like pool: words, numbers, JSON punctuation; compresses like logs/traces.
        let words: Vec<&[u8]> = b"the of and to in is for on with as by at from agent tool call result trace span edge node graph \
              latency token prompt reply error retry cache vector store payload query search {\"id\": \"name\": [ ] , }"
            .split(|&c| c == b' ')
            .collect();
        let mut pool = Vec::with_capacity(32 << 20);
        while pool.len() < 32 << 20 {
            let x = r.next();
            if x.is_multiple_of(7) {
                pool.extend_from_slice((x >> 8).to_string().as_bytes());
            } else {
                pool.extend_from_slice(words[(x >> 3) as usize % words.len()]);
            }
            pool.push(b' ');
        }
        let mut items = Vec::with_capacity(count);
        let mut logical = 0;
        for _ in 0..count {
            let len = match name {
                "w2" => {
                    let p = r.next() % 100;
                    if p < 70 {
                        r.range(100, 1023)
                    } else if p < 95 {
                        r.range(1024, 100 * 1024 - 1)
                    } else {
                        r.range(100 * 1024, 1 << 20)
                    }
                }
                _ => r.range(100, 1000),
            } as usize;
            let off = r.next() as usize % (pool.len() - len);
            let id = (u128::from(r.next()) << 64) | u128::from(r.next());
            items.push((id, off, len));
            logical += len as u64;
        }
        Workload {
            pool,
            items,
            logical,
        }
    }
    fn data(&self, i: usize) -> &[u8] {
        let (_, off, len) = self.items[i];
        &self.pool[off..off + len]
    }
}

/// The operations both engines run.
trait Engine: Sync + Sized {
    fn open(dir: &Path, a: &Args) -> Self;
    fn close(self);
    /// Appends `extra` items after the last checkpoint, "crashes" and times
    /// the reopen (ms).
    fn crash_reopen(self, dir: &Path, a: &Args, w: &Workload, extra: usize) -> f64;
    /// One batch of (normally) 1000 items.
    fn put_batch(&mut self, batch: &[(u128, &[u8])]);
    /// One item on its own (the store's `append`; the baseline's `write(2)`).
    fn put_one(&mut self, id: u128, data: &[u8]);
    fn sync(&mut self);
    fn get(&self, id: u128) -> Option<Vec<u8>>;
}

fn store_opts(a: &Args) -> Options {
    Options::default().compression_enabled(a.compression)
}

impl Engine for PayloadStore {
    fn open(dir: &Path, a: &Args) -> Self {
        PayloadStore::open_with_options(dir, store_opts(a)).unwrap()
    }
    fn close(self) {
        PayloadStore::close(self).unwrap();
    }
    fn crash_reopen(self, dir: &Path, a: &Args, w: &Workload, extra: usize) -> f64 {
        for i in 0..extra {
            self.append(w.items[i].0 ^ 1, w.data(i), None).unwrap();
        }
        PayloadStore::sync(&self).unwrap();
        self.abandon(); // as a killed process leaves it
        let t = Instant::now();
        let s = PayloadStore::open_with_options(dir, store_opts(a)).unwrap();
        assert!(s.get(w.items[0].0 ^ 1).unwrap().is_some());
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(s.stats().recovery.replayed_records, extra as u64);
        ms
    }
    fn put_batch(&mut self, batch: &[(u128, &[u8])]) {
        self.append_batch(batch, None).expect("append_batch");
    }
    fn put_one(&mut self, id: u128, data: &[u8]) {
        self.append(id, data, None).expect("append");
    }
    fn sync(&mut self) {
        PayloadStore::sync(self).expect("sync");
    }
    fn get(&self, id: u128) -> Option<Vec<u8>> {
        PayloadStore::get(self, id).expect("get")
    }
}

/// The baselines' hash of an id: ids are random 128-bit values, so the two
/// halves are folded and mixed once instead of run through SipHash (the
/// same as the `../shared/peers` harness's baseline; SipHash alone made the
/// baseline's gets ~10 % slower).
#[derive(Default)]
struct FoldHasher(u64);

impl std::hash::Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64);
        self.0 = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
}

type RawIndex = HashMap<u128, (u64, u32), std::hash::BuildHasherDefault<FoldHasher>>;

/// The raw-file baseline (see the module docs); with `checked`, the
/// checked baseline.
struct RawFile {
    file: File,
    len: u64,
    index: RawIndex,
    map: Option<memmap2::Mmap>,
    buf: Vec<u8>,
    checked: bool,
}

/// The checked baseline: the raw file with a CRC-32 per payload.
struct CheckedRaw(RawFile);

impl RawFile {
    fn hdr(checked: bool) -> usize {
        if checked {
            24
        } else {
            20
        }
    }

    fn open(dir: &Path, checked: bool) -> RawFile {
        let hdr = RawFile::hdr(checked);
        std::fs::create_dir_all(dir).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join("data.log"))
            .unwrap();
        let len = file.metadata().unwrap().len();
        let mut index = RawIndex::default();
        if len > 0 {
            // SAFETY: benchmark-only baseline; nothing else touches the file.
            let m = unsafe { memmap2::Mmap::map(&file).unwrap() };
            let mut p = 0usize;
            while p + hdr <= m.len() {
                let id = u128::from_le_bytes(m[p..p + 16].try_into().unwrap());
                let l = u32::from_le_bytes(m[p + 16..p + 20].try_into().unwrap());
                if p + hdr + l as usize > m.len() {
                    break;
                }
                index.insert(id, ((p + hdr) as u64, l));
                p += hdr + l as usize;
            }
        }
        let mut r = RawFile {
            file,
            len,
            index,
            map: None,
            buf: Vec::new(),
            checked,
        };
        r.remap();
        r
    }
    fn remap(&mut self) {
        // SAFETY: as above.
        self.map = (self.len > 0).then(|| unsafe { memmap2::Mmap::map(&self.file).unwrap() });
    }
}

impl Engine for RawFile {
    fn open(dir: &Path, _: &Args) -> Self {
        RawFile::open(dir, false)
    }
    fn close(self) {}
    fn crash_reopen(self, dir: &Path, _: &Args, w: &Workload, _extra: usize) -> f64 {
        let checked = self.checked;
        drop(self); // the baseline always scans the whole file
        let t = Instant::now();
        let r = RawFile::open(dir, checked);
        assert!(r.get(w.items[0].0).is_some());
        t.elapsed().as_secs_f64() * 1e3
    }
    fn put_batch(&mut self, batch: &[(u128, &[u8])]) {
        let hdr = RawFile::hdr(self.checked);
        for &(id, data) in batch {
            let off = self.len + (self.buf.len() + hdr) as u64;
            self.index.insert(id, (off, data.len() as u32));
            self.buf.extend_from_slice(&id.to_le_bytes());
            self.buf
                .extend_from_slice(&(data.len() as u32).to_le_bytes());
            if self.checked {
                let crc = payloadstore::crc::update(0, data);
                self.buf.extend_from_slice(&crc.to_le_bytes());
            }
            self.buf.extend_from_slice(data);
        }
        self.file.write_all(&self.buf).unwrap();
        self.len += self.buf.len() as u64;
        self.buf.clear();
    }
    fn put_one(&mut self, id: u128, data: &[u8]) {
        self.put_batch(&[(id, data)]);
    }
    fn sync(&mut self) {
        self.file.sync_data().unwrap();
        self.remap();
    }
    fn get(&self, id: u128) -> Option<Vec<u8>> {
        let &(off, len) = self.index.get(&id)?;
        let m = self.map.as_ref()?;
        let (off, len) = (off as usize, len as usize);
        let bytes = &m[off..off + len];
        if self.checked {
            let crc = u32::from_le_bytes(m[off - 4..off].try_into().unwrap());
            assert_eq!(payloadstore::crc::update(0, bytes), crc, "damaged record");
        }
        Some(bytes.to_vec())
    }
}

impl Engine for CheckedRaw {
    fn open(dir: &Path, _: &Args) -> Self {
        CheckedRaw(RawFile::open(dir, true))
    }
    fn close(self) {}
    fn crash_reopen(self, dir: &Path, a: &Args, w: &Workload, extra: usize) -> f64 {
        self.0.crash_reopen(dir, a, w, extra)
    }
    fn put_batch(&mut self, batch: &[(u128, &[u8])]) {
        self.0.put_batch(batch)
    }
    fn put_one(&mut self, id: u128, data: &[u8]) {
        self.0.put_one(id, data)
    }
    fn sync(&mut self) {
        self.0.sync()
    }
    fn get(&self, id: u128) -> Option<Vec<u8>> {
        self.0.get(id)
    }
}

fn progress(phase: &str, done: usize, total: usize) {
    if done.is_multiple_of((total / 100).max(1)) || done == total {
        let w = 30 * done / total.max(1);
        eprint!(
            "\r  {phase:<12} [{}{}] {:3}%",
            "#".repeat(w),
            " ".repeat(30 - w),
            100 * done / total.max(1)
        );
        if done == total {
            eprintln!();
        }
    }
}

fn peak_rss_reset() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.blocks() * 512)
            .sum()
    })
}

#[derive(Default)]
struct Figures {
    bulk_mbs: f64,
    bulk_kops: f64,
    bulk_batch_max_ms: f64,
    item_mbs: f64,
    item_kops: f64,
    sync_mbs: f64,
    sync_kops: f64,
    get1_kops: f64,
    get2_kops: f64,
    miss_kops: f64,
    open_clean_ms: f64,
    open_crash_ms: f64,
    disk_ratio: f64,
    peak_rss_mib: f64,
}

fn load<E: Engine>(
    e: &mut E,
    w: &Workload,
    n: usize,
    sync_every: Option<usize>,
    phase: &str,
) -> (Duration, Duration) {
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        batch.push((w.items[i].0, w.data(i)));
        if batch.len() == 1000 || i + 1 == n {
            let b = Instant::now();
            e.put_batch(&batch);
            batch.clear();
            if sync_every.is_some() {
                e.sync();
            }
            slowest = slowest.max(b.elapsed());
        }
        progress(phase, i + 1, n);
    }
    e.sync();
    (t.elapsed(), slowest)
}

fn gets<E: Engine>(e: &E, w: &Workload, threads: u64, secs: f64, miss: bool) -> f64 {
    let total = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (total, stop) = (&total, &stop);
            s.spawn(move || {
                let mut r = Rng(1000 + t);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        let i = (r.next() % w.items.len() as u64) as usize;
                        if miss {
                            assert!(e.get(u128::from(r.next()) << 64 | 7).is_none());
                        } else {
                            let v = e.get(w.items[i].0).expect("present");
                            assert_eq!(v.len(), w.items[i].2);
                            if n.is_multiple_of(16) {
                                assert_eq!(v, w.data(i));
                            }
                        }
                        n += 1;
                    }
                }
                total.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    total.load(Ordering::Relaxed) as f64 / secs / 1000.0
}

/// Writes back every dirty page of the system before a timed load, so that
/// neither engine loads while the kernel still flushes what the one before
/// it wrote (on 2 cores the flusher competes for the CPU: without this the
/// engine that runs second lost up to half its bulk speed).
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn run<E: Engine>(name: &str, a: &Args, w: &Workload) -> Figures {
    let dir = a.dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut f = Figures::default();
    peak_rss_reset();
    let mut e = E::open(&dir, a);
    settle();
    let (t, slowest) = load(&mut e, w, w.items.len(), None, "bulk");
    f.bulk_batch_max_ms = slowest.as_secs_f64() * 1e3;
    f.bulk_mbs = w.logical as f64 / 1e6 / t.as_secs_f64();
    f.bulk_kops = w.items.len() as f64 / 1e3 / t.as_secs_f64();
    eprintln!("  get 1/2 threads, miss ({} s each)", a.get_secs);
    f.get1_kops = gets(&e, w, 1, a.get_secs, false);
    f.get2_kops = gets(&e, w, 2, a.get_secs, false);
    f.miss_kops = gets(&e, w, 1, a.get_secs, true);
    f.peak_rss_mib = peak_rss_mib();
    e.close();
    f.disk_ratio = disk_bytes(&dir) as f64 / w.logical as f64;
    let t = Instant::now();
    let e = E::open(&dir, a);
    assert!(e.get(w.items[0].0).is_some());
    f.open_clean_ms = t.elapsed().as_secs_f64() * 1e3;
    f.open_crash_ms = e.crash_reopen(&dir, a, w, (w.items.len() / 100).max(1));
    let _ = std::fs::remove_dir_all(&dir);
    let n = a.sync_count.min(w.items.len());
    let mut e = E::open(&dir, a);
    settle();
    let (t, _) = load(&mut e, w, n, Some(1000), "sync/1000");
    let bytes: usize = (0..n).map(|i| w.items[i].2).sum();
    f.sync_mbs = bytes as f64 / 1e6 / t.as_secs_f64();
    f.sync_kops = n as f64 / 1e3 / t.as_secs_f64();
    e.close();
    let _ = std::fs::remove_dir_all(&dir);
    // one call per item, no syncs, up to 1 GiB
    let mut e = E::open(&dir, a);
    let (mut n, mut bytes) = (0, 0);
    while n < w.items.len() && bytes < 1 << 30 {
        bytes += w.items[n].2;
        n += 1;
    }
    settle();
    let t = Instant::now();
    for i in 0..n {
        e.put_one(w.items[i].0, w.data(i));
        progress("per item", i + 1, n);
    }
    e.sync();
    let t = t.elapsed();
    f.item_mbs = bytes as f64 / 1e6 / t.as_secs_f64();
    f.item_kops = n as f64 / 1e3 / t.as_secs_f64();
    e.close();
    let _ = std::fs::remove_dir_all(&dir);
    f
}

fn main() {
    let a = parse_args();
    eprintln!("generating workload {} ({} items)...", a.workload, a.count);
    let w = Workload::new(&a.workload, a.count, a.seed);
    let wants =
        |e: &str| a.engines == "all" || a.engines == e || (a.engines == "both" && e != "checked");
    // Results per round: [raw, checked, store].
    let mut results: [Vec<Figures>; 3] = Default::default();
    for round in 0..a.rounds {
        let mut order = vec![0, 1, 2];
        if round % 2 == 1 {
            order.reverse();
        }
        for e in order {
            let label = format!("round {}/{}", round + 1, a.rounds);
            match e {
                0 if wants("raw") => {
                    eprintln!("rawfile baseline ({label}):");
                    results[0].push(run::<RawFile>("rawfile", &a, &w));
                }
                1 if wants("checked") => {
                    eprintln!("rawfile baseline with a CRC-32 per payload ({label}):");
                    results[1].push(run::<CheckedRaw>("rawfile-crc", &a, &w));
                }
                2 if wants("store") => {
                    eprintln!(
                        "payload_store (compression {}, {label}):",
                        if a.compression { "by size" } else { "off" }
                    );
                    results[2].push(run::<PayloadStore>("payloadstore", &a, &w));
                }
                _ => {}
            }
        }
    }
    println!(
        "\nworkload {}: {} items, {:.1} MiB logical; compression {}; {} s per get phase; sync load {} items; {}\n",
        a.workload,
        w.items.len(),
        w.logical as f64 / 1048576.0,
        if a.compression { "by size (default)" } else { "off" },
        a.get_secs,
        a.sync_count.min(w.items.len()),
        if a.rounds > 1 {
            format!(
                "{} rounds, medians; ratios: median (lowest-highest of the rounds)",
                a.rounds
            )
        } else {
            "one round".to_string()
        }
    );
    println!(
        "| figure | payload_store | raw-file baseline | raw file + CRC | store / baseline | store / raw + CRC |"
    );
    println!("|---|---|---|---|---|---|");
    let median = |mut v: Vec<f64>| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let ratios = |field: fn(&Figures) -> f64, base: &[Figures]| -> String {
        let per_round: Vec<f64> = results[2]
            .iter()
            .zip(base)
            .filter(|(_, b)| field(b) != 0.0)
            .map(|(p, b)| field(p) / field(b))
            .collect();
        if per_round.is_empty() {
            return "-".into();
        }
        let (lo, hi) = per_round
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        let rounds = per_round.len();
        let mid = median(per_round);
        if rounds > 1 {
            format!("{mid:.2}x ({lo:.2}-{hi:.2})")
        } else {
            format!("{mid:.2}x")
        }
    };
    let row = |name: &str, field: fn(&Figures) -> f64, unit: &str| {
        let [p, r, c] = [2, 0, 1].map(|e| median(results[e].iter().map(field).collect()));
        println!(
            "| {name} | {p:.1} {unit} | {r:.1} {unit} | {c:.1} {unit} | {} | {} |",
            ratios(field, &results[0]),
            ratios(field, &results[1])
        );
    };
    type Field = fn(&Figures) -> f64;
    let rows: [(&str, Field, &str); 14] = [
        ("bulk append", |f| f.bulk_mbs, "MB/s"),
        ("bulk append", |f| f.bulk_kops, "kops/s"),
        ("bulk: slowest batch of 1000", |f| f.bulk_batch_max_ms, "ms"),
        ("append per item", |f| f.item_mbs, "MB/s"),
        ("append per item", |f| f.item_kops, "kops/s"),
        ("durable append (sync/1000)", |f| f.sync_mbs, "MB/s"),
        ("durable append (sync/1000)", |f| f.sync_kops, "kops/s"),
        ("get, 1 thread", |f| f.get1_kops, "kops/s"),
        ("get, 2 threads", |f| f.get2_kops, "kops/s"),
        ("miss, 1 thread", |f| f.miss_kops, "kops/s"),
        ("open after clean close", |f| f.open_clean_ms, "ms"),
        ("open after crash (1% tail)", |f| f.open_crash_ms, "ms"),
        ("disk / logical bytes", |f| f.disk_ratio, ""),
        ("peak RSS (load + gets)", |f| f.peak_rss_mib, "MiB"),
    ];
    for (name, field, unit) in rows {
        row(name, field, unit);
    }
}
