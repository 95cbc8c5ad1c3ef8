//! Where the time of a point get goes, stage by stage (BENCHMARKS.md,
//! "Anatomy of a get").
//!
//! ```text
//! cargo run --release --example get_anatomy -- [--count N] [--gets M] [--dir DIR]
//! ```
//!
//! Loads N payloads of 100-1000 random bytes (w1's sizes), then times M
//! random lookups in several ways, in ns per operation:
//! - `has_payload`: index slot, then the record header (id confirmation);
//! - `payload_len`: the same, plus the checksum over the whole record;
//! - `get`: the same, plus the copy into a new Vec;
//! - `get_to_vec` / `get_into`: the copy into a Vec reused across calls /
//!   into the caller's buffer (no allocation per get);
//! - `get_at_offset`: `get` without the index;
//! - `get_many`: the same lookups in batches of 64 ids;
//! - on a plain read-only mmap of the same log file, no store involved:
//!   copying each record out (what an unverified store does), checksumming
//!   it, checksumming then copying it (the least a verified get does),
//!   summing its 8-byte words (the least work that reads every byte),
//!   and the copy again with every iteration made to wait for the
//!   previous one's bytes ("serialized"), which is the latency one verified
//!   get cannot hide;
//! - the plain copy followed by ~150 and ~280 instructions of register
//!   arithmetic that touch no memory and depend on nothing loaded: how much
//!   extra work per lookup it takes before consecutive lookups stop
//!   overlapping their cache misses (BENCHMARKS.md, run 11).

use payloadstore::{CompressionType, PayloadStore};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let (mut n, mut m) = (1_000_000usize, 3_000_000usize);
    let mut dir = std::env::temp_dir().join("payload-store-get-anatomy");
    let mut args = std::env::args().skip(1);
    while let Some(k) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--count" => n = v.parse().expect("--count N"),
            "--gets" => m = v.parse().expect("--gets M"),
            "--dir" => dir = PathBuf::from(v),
            _ => panic!("unknown option {k}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let store = PayloadStore::open(&dir).expect("open");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pool: Vec<u8> = (0..64 << 20).map(|_| rnd() as u8).collect();
    let mut ids = Vec::with_capacity(n);
    let mut locs = Vec::with_capacity(n);
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let len = 100 + (rnd() % 901) as usize;
        let at = rnd() as usize % (pool.len() - len);
        let id = (u128::from(rnd()) << 64) | u128::from(rnd());
        ids.push(id);
        batch.push((id, &pool[at..at + len]));
        if batch.len() == 1000 || i + 1 == n {
            locs.extend(store.append_batch(&batch, None).expect("append_batch"));
            batch.clear();
        }
    }
    store.sync().expect("sync");
    let order: Vec<usize> = (0..m).map(|_| (rnd() % n as u64) as usize).collect();
    let time = |f: &mut dyn FnMut(usize) -> usize| {
        let t = Instant::now();
        let mut sum = 0usize;
        for &i in &order {
            sum = sum.wrapping_add(f(i));
        }
        black_box(sum);
        t.elapsed().as_nanos() as f64 / m as f64
    };
    let file = std::fs::File::open(dir.join("payload.data")).expect("log file");
    // SAFETY: a read-only map of a file nobody writes while it is mapped
    // (the store is idle from here on).
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
    let record = |i: usize| {
        let (off, len, _) = locs[i];
        &map[off as usize..off as usize + 32 + len as usize]
    };
    println!("{n} payloads of 100-1000 B, {m} random lookups per figure, ns per lookup");
    for round in 0..3 {
        let has = time(&mut |i| store.has_payload(ids[i]) as usize);
        let len = time(&mut |i| store.payload_len(ids[i]).unwrap().unwrap());
        let get = time(&mut |i| store.get(ids[i]).unwrap().unwrap().len());
        let mut reused = Vec::new();
        let to_vec = time(&mut |i| {
            store.get_to_vec(ids[i], &mut reused).unwrap();
            reused.len()
        });
        let mut buf = vec![0u8; 1024];
        let into = time(&mut |i| store.get_into(ids[i], &mut buf).unwrap().unwrap());
        let many = {
            let t = Instant::now();
            let mut sum = 0usize;
            for batch in order.chunks(64) {
                let want: Vec<u128> = batch.iter().map(|&i| ids[i]).collect();
                for r in store.get_many(&want) {
                    sum = sum.wrapping_add(r.unwrap().unwrap().len());
                }
            }
            black_box(sum);
            t.elapsed().as_nanos() as f64 / m as f64
        };
        let at = time(&mut |i| {
            let (off, len, codec) = locs[i];
            let codec = CompressionType::try_from(codec).unwrap();
            store.get_at_offset(off, len, codec).unwrap().len()
        });
        let copy = time(&mut |i| black_box(record(i).to_vec()).len());
        // `rounds` rounds of four independent register operations plus the
        // loop's own (callgrind: 25 rounds ~150 instructions, 50 ~280).
        let busy = |rounds: usize| {
            let (mut a, mut b, mut c, mut d) = (1u64, 2u64, 3u64, 4u64);
            for _ in 0..black_box(rounds) {
                a = a.wrapping_add(b);
                b ^= c;
                c = c.wrapping_add(d);
                d ^= a;
            }
            (a ^ b ^ c ^ d) as usize
        };
        let copy_150 = time(&mut |i| {
            let v = black_box(record(i).to_vec());
            v.len().wrapping_add(busy(25) & 1)
        });
        let copy_280 = time(&mut |i| {
            let v = black_box(record(i).to_vec());
            v.len().wrapping_add(busy(50) & 1)
        });
        let crc = time(&mut |i| crc32fast::hash(record(i)) as usize);
        // the least a verified get must do: checksum the record, then copy
        let crc_copy = time(&mut |i| {
            let r = record(i);
            let c = payloadstore::crc::update(0, r) as usize;
            black_box(r.to_vec()).len().wrapping_add(c & 1)
        });
        let wide = time(&mut |i| payloadstore::crc::update(0, record(i)) as usize);
        let sum = time(&mut |i| {
            let r = record(i);
            let words = r.chunks_exact(8);
            let tail: usize = words.remainder().iter().map(|&b| b as usize).sum();
            words.fold(tail, |s, w| {
                s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()) as usize)
            })
        });
        let mut wait = 0usize;
        let serial = time(&mut |i| {
            let v = record((i + wait) % n).to_vec();
            wait = v[v.len() - 1] as usize * black_box(0usize); // depends on the bytes
            v.len()
        });
        let mut wait = 0usize;
        let serial_get = time(&mut |i| {
            let v = store.get(ids[(i + wait) % n]).unwrap().unwrap();
            wait = v[v.len() - 1] as usize * black_box(0usize);
            v.len()
        });
        println!(
            "round {round}: store: has_payload {has:.0}, payload_len {len:.0}, get {get:.0}, get_to_vec {to_vec:.0}, get_into {into:.0}, get_many {many:.0}, \
             get_at_offset {at:.0}, get serialized {serial_get:.0} | plain mmap: copy {copy:.0}, \
             crc32fast {crc:.0}, crc32 (ours) {wide:.0}, crc32 + copy {crc_copy:.0}, word sum {sum:.0}, copy serialized {serial:.0}, \
             copy + ~150 instructions {copy_150:.0}, copy + ~280 instructions {copy_280:.0}"
        );
    }
    drop(map);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
