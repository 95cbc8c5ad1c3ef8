//! A batch of put records encoded for positioned writes, and the pipeline
//! that compresses runs of a large batch while earlier runs are written.
//!
//! `append_batch` compresses and checksums its records before it takes the
//! writer lock. The records of a run are laid out as they will lie in the
//! log: small ones, and every compressed one, are copied into one staging
//! buffer; a large raw payload stays where the caller has it and is written
//! from there (copying it would only move the same bytes twice):
//!
//! ```text
//! stage   [hdr|payload][hdr|lz4 bytes][hdr]   [hdr|payload][hdr|payload]…
//!                                          ▲
//! direct                                   └─ large raw payload (caller's memory)
//!
//! write   stage[..a]          payload          stage[a..]     (one pwritev per run)
//! ```
//!
//! Why stage at all: writing a thousand small records as two iovecs each
//! (header, payload) costs the kernel more than the copy saves. Measured on
//! w1 (1000 records of 100-1000 B per call): one `pwritev` with 2000
//! segments took 1.5x the time of a copy into one buffer plus one `write`.
//! The copy also makes the checksum cheap: it runs over bytes the copy just
//! brought into the cache.
//!
//! A batch with a lot to compress is cut into runs of about equal bytes;
//! `in_order` compresses them on all cores and hands each finished run to
//! the caller in order, so the kernel copies run k into the page cache while
//! run k+1 is still being compressed:
//!
//! ```text
//! workers   [compress 0][compress 2][compress 4]
//!           [compress 1][compress 3]
//! caller                [write 0][write 1][write 2][write 3][write 4] publish
//! ```

use crate::codec::{self, CompressionType};
use crate::error::Result;
use crate::format::{self, RecordHeader, RECORD_HEADER_LEN};
use parking_lot::{Condvar, Mutex};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Raw payloads longer than this are written from the caller's memory.
pub const STAGE_MAX: usize = 64 << 10;

/// Encoded records, ready to be written back to back.
pub struct EncodedBatch<'a> {
    stage: Vec<u8>,
    /// Large raw payloads: (stage offset they follow, bytes).
    direct: Vec<(usize, &'a [u8])>,
    direct_bytes: u64,
    /// Every record's header and offset from the start of the batch.
    records: Vec<(RecordHeader, u64)>,
}

impl<'a> EncodedBatch<'a> {
    /// An empty batch with room for `records` records of `bytes` payload bytes.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        EncodedBatch {
            stage: Vec::with_capacity(records * RECORD_HEADER_LEN + bytes),
            direct: Vec::new(),
            direct_bytes: 0,
            records: Vec::with_capacity(records),
        }
    }

    /// Encodes a put of `data` under `id` with `codec` (stored raw when the
    /// codec does not shrink it) and seals it with the store's `salt`.
    pub fn push_put(
        &mut self,
        salt: u64,
        zstd_level: i32,
        id: u128,
        data: &'a [u8],
        codec: CompressionType,
    ) -> Result<()> {
        let start = self.stage.len();
        let rel = start as u64 + self.direct_bytes;
        self.stage.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        let shrunk = codec::compress(codec, zstd_level, data, &mut self.stage)?;
        let direct = !shrunk && data.len() > STAGE_MAX;
        if !shrunk && !direct {
            self.stage.extend_from_slice(data);
        }
        let compressed = shrunk.then(|| self.stage.len() - start - RECORD_HEADER_LEN);
        let mut header = RecordHeader::put_encoded(id, codec, compressed, data.len());
        let mut hb = header.encode();
        if direct {
            format::seal(salt, &mut hb, data);
            self.stage[start..].copy_from_slice(&hb);
            self.direct.push((self.stage.len(), data));
            self.direct_bytes += data.len() as u64;
        } else {
            self.stage[start..start + RECORD_HEADER_LEN].copy_from_slice(&hb);
            format::seal_record(salt, &mut self.stage[start..]);
        }
        header.crc = u32::from_le_bytes(self.stage[start..start + 4].try_into().expect("4 bytes"));
        self.records.push((header, rel));
        Ok(())
    }

    /// Bytes the batch occupies in the log.
    pub fn len(&self) -> u64 {
        self.stage.len() as u64 + self.direct_bytes
    }

    /// Every record's header and offset from the start of the batch.
    pub fn records(&self) -> &[(RecordHeader, u64)] {
        &self.records
    }

    /// The bytes to write, in order, appended to `parts`.
    pub fn parts<'s>(&'s self, parts: &mut Vec<&'s [u8]>) {
        let mut from = 0;
        for &(at, bytes) in &self.direct {
            parts.push(&self.stage[from..at]);
            parts.push(bytes);
            from = at;
        }
        parts.push(&self.stage[from..]);
    }
}

/// Runs `work` on every element of `runs` on `threads` threads and hands
/// the results to `sink` on the calling thread, in order, each as soon as
/// it and those before it are done: the caller writes run k while later
/// runs are still being compressed. Stops at the first error of `work` or
/// `sink` and returns it; a panic in `work` is resumed on the caller.
pub fn in_order<R: Sync, T: Send, E: Send>(
    runs: &[R],
    threads: usize,
    work: impl Fn(&R) -> std::result::Result<T, E> + Sync,
    mut sink: impl FnMut(T) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    type Done<T, E> = std::thread::Result<std::result::Result<T, E>>;
    let slots: Vec<Mutex<Option<Done<T, E>>>> = runs.iter().map(|_| Mutex::new(None)).collect();
    let ready = Condvar::new();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for _ in 0..threads.clamp(1, runs.len().max(1)) {
            sc.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = runs.get(k) else { break };
                    let done = catch_unwind(AssertUnwindSafe(|| work(run)));
                    *slots[k].lock() = Some(done);
                    ready.notify_all();
                }
            });
        }
        let mut result = Ok(());
        for slot in &slots {
            let mut g = slot.lock();
            while g.is_none() {
                ready.wait(&mut g);
            }
            let done = g.take().expect("filled");
            drop(g);
            result = match done {
                Ok(Ok(t)) => sink(t),
                Ok(Err(e)) => Err(e),
                Err(panic) => {
                    stop.store(true, Ordering::Relaxed);
                    resume_unwind(panic)
                }
            };
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
                break;
            }
        }
        result
    })
}

/// Splits `items` into at most `n` consecutive runs of about equal bytes
/// (a few large payloads among many small ones would otherwise leave one
/// compressing thread with most of the work).
pub fn split_by_bytes<'i, 'a>(
    items: &'i [(u128, &'a [u8])],
    n: usize,
) -> Vec<&'i [(u128, &'a [u8])]> {
    let weight = |d: &[u8]| d.len() as u64 + RECORD_HEADER_LEN as u64;
    let total: u64 = items.iter().map(|(_, d)| weight(d)).sum();
    let mut runs = Vec::with_capacity(n);
    let (mut from, mut acc) = (0, 0u64);
    for (i, (_, d)) in items.iter().enumerate() {
        acc += weight(d);
        // close run k once the bytes so far reach k/n of the total
        if acc * n as u64 >= total * (runs.len() as u64 + 1) && runs.len() + 1 < n {
            runs.push(&items[from..=i]);
            from = i + 1;
        }
    }
    if from < items.len() {
        runs.push(&items[from..]);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch's bytes, as they would land in the log.
    fn written(b: &EncodedBatch) -> Vec<u8> {
        let mut parts = Vec::new();
        b.parts(&mut parts);
        parts.concat()
    }

    #[test]
    fn records_lie_back_to_back_and_verify() {
        let salt = 0x1234_5678_9abc_def0;
        let text: Vec<u8> = b"some words repeat, some words repeat. "
            .iter()
            .cycle()
            .take(300_000)
            .copied()
            .collect();
        let mut x = crate::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        let noise: Vec<u8> = (0..200_000).map(|_| x.next() as u8).collect();
        let cases: Vec<(&[u8], CompressionType)> = vec![
            (b"", CompressionType::None),
            (b"tiny", CompressionType::None),
            (&text[..5000], CompressionType::Lz4), // staged, compressed
            (&noise[..5000], CompressionType::Lz4), // does not shrink: staged raw
            (&noise[..STAGE_MAX], CompressionType::None), // largest staged raw
            (&noise[..STAGE_MAX + 1], CompressionType::None), // direct
            (&text, CompressionType::Zstd),        // large but compressed: staged
            (&noise, CompressionType::Zstd),       // does not shrink: direct
            (b"after", CompressionType::None),
        ];
        let mut b = EncodedBatch::with_capacity(0, 0);
        for (i, (data, codec)) in cases.iter().enumerate() {
            b.push_put(salt, 1, i as u128, data, *codec).unwrap();
        }
        let log = written(&b);
        assert_eq!(log.len() as u64, b.len());
        assert_eq!(
            b.direct.len(),
            2,
            "exactly the two large raw payloads go direct"
        );
        let mut next = 0u64;
        for (i, ((h, rel), (data, codec))) in b.records().iter().zip(&cases).enumerate() {
            assert_eq!(*rel, next, "record {i} starts where the previous ended");
            let rec = &log[*rel as usize..(*rel + h.record_len()) as usize];
            assert!(format::record_checksum_ok(salt, rec), "record {i} verifies");
            let hb: &[u8; RECORD_HEADER_LEN] = rec[..RECORD_HEADER_LEN].try_into().unwrap();
            assert_eq!(RecordHeader::decode(hb).unwrap(), *h);
            assert_eq!(h.id, i as u128);
            let stored = &rec[RECORD_HEADER_LEN..];
            let mut raw = vec![0; h.raw_len as usize];
            codec::decompress_into(h.compression, stored, &mut raw).unwrap();
            assert_eq!(raw, *data, "record {i} reads back");
            if h.compression != CompressionType::None {
                assert_eq!(h.compression, *codec);
                assert!(stored.len() < data.len());
            }
            next = *rel + h.record_len();
        }
        assert_eq!(next, b.len());
        // a flipped bit anywhere in a record is caught
        let (h, rel) = b.records()[2];
        let mut bad = log[rel as usize..(rel + h.record_len()) as usize].to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!format::record_checksum_ok(salt, &bad));
    }

    #[test]
    fn in_order_hands_results_over_in_order_and_stops_at_errors() {
        let runs: Vec<u64> = (0..40).collect();
        for threads in [1, 2, 4] {
            // later runs finish first: the sink still sees them in order
            let mut seen = Vec::new();
            in_order(
                &runs,
                threads,
                |&k| -> std::result::Result<u64, String> {
                    // uneven work, so runs finish out of order
                    let mut x = k;
                    for _ in 0..(40 - k) * 20_000 {
                        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                    }
                    std::hint::black_box(x);
                    Ok(k * 10)
                },
                |v| {
                    seen.push(v);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(seen, runs.iter().map(|k| k * 10).collect::<Vec<_>>());
            // an error in run 7 stops the sink after runs 0..7
            let mut seen = Vec::new();
            let r = in_order(
                &runs,
                threads,
                |&k| {
                    if k == 7 {
                        Err(format!("bad {k}"))
                    } else {
                        Ok(k)
                    }
                },
                |v| {
                    seen.push(v);
                    Ok(())
                },
            );
            assert_eq!(r, Err("bad 7".to_string()));
            assert_eq!(seen, (0..7).collect::<Vec<_>>());
            // an error of the sink stops it too
            let mut seen = Vec::new();
            let r = in_order(
                &runs,
                threads,
                |&k| Ok::<_, u64>(k),
                |v| {
                    seen.push(v);
                    if v == 3 {
                        Err(v)
                    } else {
                        Ok(())
                    }
                },
            );
            assert_eq!((r, seen.len()), (Err(3), 4));
        }
        // a panic in the work reaches the caller
        let p = std::panic::catch_unwind(|| {
            in_order(
                &runs,
                2,
                |&k| {
                    if k == 5 {
                        panic!("boom")
                    } else {
                        Ok::<_, ()>(k)
                    }
                },
                |_| Ok(()),
            )
        });
        assert!(p.is_err());
    }

    #[test]
    fn split_by_bytes_keeps_order_and_balances_bytes() {
        // 50 small payloads, then one that outweighs all of them, then 50 more
        let small = [0u8; 100];
        let big = vec![0u8; 20_000];
        let mut items: Vec<(u128, &[u8])> = (0..50).map(|i| (i, &small[..])).collect();
        items.push((50, &big));
        items.extend((51..101).map(|i| (i, &small[..])));
        for n in 1..=4 {
            let runs = split_by_bytes(&items, n);
            assert!(!runs.is_empty() && runs.len() <= n);
            let ids: Vec<u128> = runs
                .iter()
                .flat_map(|r| r.iter().map(|(id, _)| *id))
                .collect();
            assert_eq!(
                ids,
                (0..101).collect::<Vec<_>>(),
                "every item once, in order"
            );
            assert!(runs.iter().all(|r| !r.is_empty()));
        }
        // two runs of equal bytes: the big payload ends the first one
        let runs = split_by_bytes(&items, 2);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].last().unwrap().0, 50);
        // uniform sizes split evenly
        let even: Vec<(u128, &[u8])> = (0..1000).map(|i| (i, &small[..])).collect();
        let runs = split_by_bytes(&even, 2);
        assert_eq!((runs[0].len(), runs[1].len()), (500, 500));
        assert!(split_by_bytes(&[], 2).is_empty());
    }
}
