//! `PayloadStore`: the façade tying log, index, checkpoint and recovery together.
//!
//! # Durability contract
//!
//! - When `append` returns, the record is in the log's shared mapping (the
//!   OS page cache) and in the index: every later `get` sees it, and a crash
//!   of the *process* cannot lose it.
//! - When `sync` returns (or `append` under `EveryAppend`/`GroupCommit`),
//!   every record appended before it is on stable storage: a power loss
//!   cannot lose it. [`PayloadStore::durable_offset`] says how far that
//!   reaches without forcing an fsync.
//! - The index checkpoint never covers more than was durable when it was
//!   saved (`save_index` syncs first), and open replays only the log after it.
//! - A failed fsync poisons the handle: later appends and syncs return
//!   `Error::Poisoned` instead of pretending the lost writes are durable.

mod compact;

use crate::batch::{self, EncodedBatch, STAGE_MAX};
use crate::checkpoint;
use crate::codec::{self, CompressionType};
use crate::error::{Error, Result};
use crate::format::{
    self, CheckpointHeader, Counters, LogHeader, RecordHeader, RecordKind, LOG_HEADER_LEN,
    RECORD_HEADER_LEN,
};
use crate::index::disk::{self, Change, DiskIndex, DiskState};
use crate::index::memory::MemIndex;
use crate::index::{Index, IndexBackend, IndexWriter};
use crate::io;
use crate::options::{LogLevel, Options, SyncPolicy};
use crate::recovery::{self, Mode};
use crate::segment::{Segment, WriteCursor};
use crate::stats::{
    CodecStats, CompactReport, IndexSource, PayloadStats, RecoveryReport, VerifyReport,
};
use crate::sys;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A batch holding at least this many bytes to compress is compressed on
/// all cores, in runs of about `RUN_BYTES` payload bytes.
const PARALLEL_COMPRESS_BYTES: usize = 1 << 20;
/// Payload bytes per run of a batch compressed on all cores; each run is
/// written as soon as it and those before it are ready.
const RUN_BYTES: usize = 4 << 20;

/// Records applied together at open (see the scan in `open_with_options`).
const APPLY_GROUP: usize = 32;
/// How many records ahead `append_batch` prefetches the payload bytes it is
/// about to checksum (overlaps their cache misses).
const PREFETCH_AHEAD: usize = 2;
/// ... of at most this many bytes of each.
const PREFETCH_PAYLOAD_MAX: usize = 4096;
/// How many records ahead `append_batch` prefetches the index lines it is
/// about to update.
const INDEX_AHEAD: usize = 32;

/// `get_many` prefetches at most this much of each record (larger ones are
/// bound by copying, not by latency).
const PREFETCH_RECORD_MAX: u64 = 16 << 10;

/// Bytes of a record a single read prefetches once the index names it: the
/// header and the first 544 payload bytes, a whole record of w1's mean size
/// (BENCHMARKS.md, run 10).
const READ_AHEAD: u64 = 576;

/// Records at least this large are appended with `pwritev` rather than
/// copied through the map (the system call costs less than the page faults
/// of that many fresh pages).
const WRITE_SYSCALL_FROM: usize = 16 << 10;

/// Durable progress after which a sync also refreshes the header watermark.
const WATERMARK_STEP: u64 = 16 << 20;

/// Largest payload `append` accepts (1 GiB).
pub const MAX_PAYLOAD_LEN: u64 = format::MAX_PAYLOAD_LEN;

/// State only the writer touches; behind `PayloadStore::writer`.
struct Writer {
    cur: WriteCursor,
    ix: IndexWriter,
    counters: Counters,
    last_record: u64,
    next_warning: usize,
}

/// One generation of the log: what a reader needs, in one piece, so that a
/// compaction can swap it while readers of the old one finish.
struct Gen {
    salt: u64,
    /// Compaction generation of the log (format.rs).
    generation: u64,
    seg: Segment,
    index: Index,
}

impl Gen {
    /// Offset of the newest record of `edge_id`.
    #[inline]
    fn locate(&self, edge_id: u128) -> Result<Option<u64>> {
        self.locate_then(edge_id, |_| {})
    }

    /// [`locate`](Self::locate) for a read of the payload: the start of
    /// each candidate record is prefetched as soon as the index names it,
    /// so that its payload lines load together with the header that
    /// confirms the id instead of after it.
    fn locate_to_read(&self, edge_id: u128) -> Result<Option<u64>> {
        self.locate_then(edge_id, |off| self.seg.prefetch(off, READ_AHEAD))
    }

    /// [`locate`](Self::locate), calling `candidate(offset)` for each record
    /// the index names before reading its header to confirm the id.
    fn locate_then(&self, edge_id: u128, candidate: impl Fn(u64)) -> Result<Option<u64>> {
        self.index.get(
            edge_id,
            |off| {
                candidate(off);
                self.seg.peek_id(off) == Some(edge_id)
            },
            |off| self.is_delete(off),
        )
    }

    /// Whether the record at `off` is a tombstone.
    fn is_delete(&self, off: u64) -> bool {
        is_delete_at(&self.seg, off)
    }

    /// The verified header and stored bytes of the record at `off`.
    fn record(&self, off: u64) -> Result<(RecordHeader, &[u8])> {
        self.seg
            .record(self.salt, off)
            .map_err(|_| Error::ChecksumMismatch { offset: off })
    }

    fn read_vec(&self, off: u64) -> Result<Vec<u8>> {
        let (h, stored) = self.record(off)?;
        decode_vec(off, &h, stored)
    }

    /// Calls `f(offset, its record's header or the error reading it)` for
    /// every index entry of a live payload (what `for_each` visits).
    /// `Err` only for a damaged DiskHash page, which stops the walk.
    fn walk_entries(&self, mut f: impl FnMut(u64, Result<RecordHeader>)) -> Result<()> {
        let damaged_page = |b| Error::Corrupt {
            offset: DiskIndex::page_offset(b),
            reason: "DiskHash index page checksum mismatch",
        };
        if let Index::DiskOverlay(d, tail) = &self.index {
            // The table's entries unless the tail has a newer record of the
            // id, then the tail's payloads.
            let newer = |id: u128| tail.get(id, |o| self.seg.peek_id(o) == Some(id)).is_some();
            let mut emit = |off: u64, from_tail: bool| match self.record(off) {
                Ok((h, _)) if from_tail && h.kind != RecordKind::Put => {}
                Ok((h, _)) if !from_tail && newer(h.id) => {}
                Ok((h, _)) => f(off, Ok(h)),
                Err(e) => f(off, Err(e)),
            };
            d.for_each_offset(|off| emit(off, false))
                .map_err(damaged_page)?;
            tail.for_each_offset(|off| emit(off, true));
            return Ok(());
        }
        self.index
            .for_each_offset(|off| f(off, self.record(off).map(|(h, _)| h)))
    }
}

/// Decompresses (or copies) a record's stored bytes into `out`.
fn decode_into(off: u64, h: &RecordHeader, stored: &[u8], out: &mut [u8]) -> Result<()> {
    codec::decompress_into(h.compression, stored, out).map_err(|reason| Error::Corrupt {
        offset: off,
        reason,
    })
}

/// A record's payload in a new Vec.
fn decode_vec(off: u64, h: &RecordHeader, stored: &[u8]) -> Result<Vec<u8>> {
    if h.compression == CompressionType::None {
        return Ok(stored.to_vec()); // no zero-fill before the copy
    }
    let mut out = vec![0u8; h.raw_len as usize];
    decode_into(off, h, stored, &mut out)?;
    Ok(out)
}

/// The last checkpoint written or loaded.
#[derive(Clone, Copy, Default)]
struct CheckpointMark {
    covered_end: u64,
    saved_at: Option<u64>,
}

/// A durable, crash-safe store of payloads keyed by 128-bit ids.
///
/// Thread-safe: share it (`&PayloadStore` or `Arc<PayloadStore>`) between
/// threads. Reads run concurrently without locks; appends are serialized.
///
/// ```
/// use payloadstore::{PayloadStore, CompressionType};
/// let dir = std::env::temp_dir().join(format!("ps-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = PayloadStore::open(&dir)?;
/// let (offset, len, tag) = store.append(7, b"hello", None)?;
/// assert_eq!(store.get(7)?.as_deref(), Some(&b"hello"[..]));
/// let codec = CompressionType::try_from(tag)?;
/// assert_eq!(store.get_at_offset(offset, len, codec)?, b"hello");
/// store.sync()?; // durable against power loss from here on
/// store.close()?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), payloadstore::Error>(())
/// ```
pub struct PayloadStore {
    dir: PathBuf,
    opts: Options,
    /// The log and the index readers use; replaced whole by `compact`,
    /// under the writer lock, so a writer that holds the lock sees one
    /// generation throughout.
    gen: ArcSwap<Gen>,
    /// Held for the whole of a compaction (one at a time).
    compacting: Mutex<()>,
    writer: Mutex<Writer>,
    live: AtomicU64,
    sync_lock: Mutex<()>,
    durable: AtomicU64,
    /// Watermark last written to the log header (a lower bound of `durable`).
    watermark: AtomicU64,
    poisoned: AtomicBool,
    checkpoint: Mutex<CheckpointMark>,
    recovery: RecoveryReport,
    closed: bool,
    _lock: File,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PayloadStore>();
};

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl PayloadStore {
    /// Opens (creating if needed) a store with the in-memory HashMap index.
    pub fn open<P: AsRef<Path>>(data_dir: P) -> Result<Self> {
        Self::open_with_options(data_dir, Options::default())
    }

    /// Opens (creating if needed) a store with the given index backend.
    pub fn open_with_backend<P: AsRef<Path>>(data_dir: P, backend: IndexBackend) -> Result<Self> {
        Self::open_with_options(data_dir, Options::default().backend(backend))
    }

    /// Opens (creating if needed, unless read-only) a store with options.
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open_with_options(&dir, Options::default().sync_policy(SyncPolicy::EveryAppend))?;
    /// store.append(1, b"durable when append returns", None)?;
    /// assert_eq!(store.durable_offset(), store.appended_offset());
    /// drop(store);
    /// // several read-only handles may share a store
    /// let store = PayloadStore::open_with_options(&dir, Options::default().read_only(true))?;
    /// assert!(matches!(store.append(2, b"x", None), Err(Error::ReadOnly)));
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn open_with_options<P: AsRef<Path>>(data_dir: P, opts: Options) -> Result<Self> {
        let started = Instant::now();
        let dir = data_dir.as_ref().to_path_buf();
        let writable = !opts.read_only;
        if opts.backend == IndexBackend::HashMap
            && MemIndex::bytes_for(opts.expected_payloads) > sys::physical_memory()
        {
            return Err(Error::InvalidArgument(
                "expected_payloads: an index for that many payloads would not fit in RAM",
            ));
        }
        if writable {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io("creating the store directory", &dir, e))?;
        }
        let lock = sys::lock_dir(&dir.join(format::LOCK_FILE), writable)?;
        let log_path = dir.join(format::LOG_FILE);
        if writable {
            // What an interrupted `compact` (or log creation) left behind.
            io::remove_if_present(&dir.join(format::LOG_TMP_FILE))?;
            let d = dir.join(compact::TMP_DIR);
            if d.exists() {
                std::fs::remove_dir_all(&d)
                    .map_err(|e| Error::io("removing a stale compaction directory", &d, e))?;
            }
        }
        // A new log is created atomically (temp file, fsync, rename, directory
        // fsync): a crash during creation leaves no half-written header.
        let existing_len = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let created = existing_len == 0;
        if created {
            if !writable {
                return Err(Error::NotAStore {
                    path: log_path,
                    reason: "no log file",
                });
            }
            let header = LogHeader {
                version: format::FORMAT_VERSION,
                salt: sys::random_u64(),
                generation: 0,
                created: sys::unix_now(),
            };
            checkpoint::remove(&dir)?;
            io::write_atomic(
                &*opts.io,
                &dir,
                format::LOG_TMP_FILE,
                format::LOG_FILE,
                &[&header.encode(LOG_HEADER_LEN)],
            )?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .truncate(false)
            .mode(0o644)
            .open(&log_path)
            .map_err(|e| Error::io("opening the log", &log_path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io("reading log metadata", &log_path, e))?
            .len();
        let mut hb = [0u8; LOG_HEADER_LEN as usize];
        if file_len < LOG_HEADER_LEN {
            return Err(Error::NotAStore {
                path: log_path,
                reason: "file shorter than the log header",
            });
        }
        file.read_exact_at(&mut hb, 0)
            .map_err(|e| Error::io("reading the log header", &log_path, e))?;
        let (header, watermark) = LogHeader::decode(&hb).map_err(|e| match e {
            format::DecodeError::NotAStore(reason) => Error::NotAStore {
                path: log_path.clone(),
                reason,
            },
            format::DecodeError::Version(found) => Error::UnsupportedVersion {
                found,
                supported: format::FORMAT_VERSION,
            },
        })?;
        let salt = header.salt;
        let generation = header.generation;
        let seg = Segment::new(log_path, file, writable, opts.prefault, opts.io.clone());
        seg.map_upto(file_len)?;
        seg.set_committed(file_len);

        let mut report = RecoveryReport::default();
        let loaded = match opts.backend {
            IndexBackend::HashMap => load_mem_index(&dir, &seg, salt, file_len, &mut report),
            IndexBackend::DiskHash => {
                load_disk_index(&dir, &seg, salt, file_len, &opts, &mut report)?
            }
        };
        let Loaded {
            mut index,
            writer: mut ixw,
            counters,
            start,
            mut mark,
            bulk,
        } = loaded;
        if report.source != IndexSource::Checkpoint && !created {
            report.source = IndexSource::FullScan;
            mark = CheckpointMark::default();
        }
        index.set_growth_thread(&mut ixw, opts.index_growth_thread);
        if !opts.read_only {
            // before the replay, which then rebuilds nothing either
            index.reserve(&mut ixw, opts.expected_payloads);
        }
        let mut w = Writer {
            cur: WriteCursor {
                end: start.0,
                capacity: file_len,
                prefaulted: 0,
            },
            ix: ixw,
            counters,
            last_record: start.1,
            next_warning: 0,
        };
        let mode = Mode {
            watermark: watermark.unwrap_or(0),
            repair: opts.repair,
            writable,
        };
        // The log after the index: applied record by record, or (a new
        // DiskHash table too big for the rebuild budget) counted, then built
        // in passes.
        let (scan, puts) = replay(&seg, salt, mode, &index, &mut w, start.0, file_len, bulk)?;
        if bulk && !bulk_build(&seg, salt, &index, &mut w, &opts, scan.end, puts)? {
            // A bucket overflowed under the fixed geometry (not expected with
            // a random seed): build the ordinary way, record by record.
            let o = DiskIndex::create(&dir, salt, opts.io.clone())?;
            index = Index::Disk(o.index);
            w.ix = IndexWriter::Disk(o.writer);
            w.counters = Counters::default();
            w.last_record = 0;
            replay(
                &seg,
                salt,
                mode,
                &index,
                &mut w,
                LOG_HEADER_LEN,
                scan.end,
                false,
            )?;
        }
        w.cur.end = scan.end;
        if scan.records > 0 {
            w.last_record = scan.last_record;
        }
        report.replayed_records = scan.records;
        report.replayed_bytes = scan.bytes;
        report.torn_tail_bytes = scan.torn_tail_bytes;
        report.torn_tail_offset = if scan.torn_tail_bytes > 0 {
            scan.end
        } else {
            0
        };
        report.repaired_regions = scan.repaired;
        seg.set_committed(scan.end);

        let durable;
        if writable {
            // After a clean close the log ends at its last record and the
            // watermark covers it: nothing to cut or to make durable.
            let clean = file_len == scan.end && watermark == Some(scan.end);
            if !clean {
                if file_len > scan.end {
                    seg.set_len(scan.end)?;
                    w.cur.capacity = scan.end;
                }
                // Everything recovered is made durable once, so the watermark can cover it.
                seg.write_watermark(scan.end)?;
                seg.sync()?;
            }
            durable = scan.end;
        } else {
            durable = watermark.unwrap_or(LOG_HEADER_LEN).min(scan.end);
        }
        seg.set_random_access();
        if scan.end <= opts.huge_reads_max {
            seg.huge_reads_below(scan.end);
        }
        report.duration = started.elapsed();
        let store = PayloadStore {
            dir,
            live: AtomicU64::new(w.counters.live),
            writer: Mutex::new(w),
            opts,
            gen: ArcSwap::from_pointee(Gen {
                salt,
                generation,
                seg,
                index,
            }),
            compacting: Mutex::new(()),
            sync_lock: Mutex::new(()),
            durable: AtomicU64::new(durable),
            watermark: AtomicU64::new(durable),
            poisoned: AtomicBool::new(false),
            checkpoint: Mutex::new(mark),
            recovery: report,
            closed: false,
            _lock: lock,
        };
        store.report_recovery();
        store.check_memory(&store.gen.load(), &mut store.writer.lock());
        Ok(store)
    }

    fn report_recovery(&self) {
        let r = &self.recovery;
        if r.torn_tail_bytes > 0 {
            self.emit(
                LogLevel::Warn,
                &format!(
                    "cut a torn tail of {} bytes at log offset {}",
                    r.torn_tail_bytes, r.torn_tail_offset
                ),
            );
        }
        for (off, len) in &r.repaired_regions {
            self.emit(
                LogLevel::Warn,
                &format!("repair: replaced {len} damaged bytes at log offset {off} by padding"),
            );
        }
        if let Some(p) = &r.checkpoint_problem {
            self.emit(LogLevel::Info, &format!("index rebuilt from the log: {p}"));
        }
    }

    fn emit(&self, level: LogLevel, msg: &str) {
        let l = match level {
            LogLevel::Error => log::Level::Error,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Info => log::Level::Info,
        };
        log::log!(target: "payload_store", l, "{}: {msg}", self.dir.display());
        if let Some(cb) = &self.opts.logger {
            cb(level, msg);
        }
    }

    fn writable(&self) -> Result<()> {
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Appends a payload for `edge_id` and returns its location
    /// `(offset, stored length, compression tag)`, valid for `get_at_offset`.
    ///
    /// `compression: None` picks by size (under 1 KiB none, up to 100 KiB
    /// LZ4, above ZSTD; see `CompressionPolicy`); where compression does not
    /// shrink the payload it is stored raw. An id that exists is replaced
    /// (last write wins). Compression and checksumming run before the writer
    /// lock is taken, so concurrent appenders compress in parallel.
    pub fn append(
        &self,
        edge_id: u128,
        data: &[u8],
        compression: Option<CompressionType>,
    ) -> Result<(u64, u32, u8)> {
        self.writable()?;
        if data.len() as u64 > MAX_PAYLOAD_LEN {
            return Err(Error::PayloadTooLarge {
                len: data.len() as u64,
                max: MAX_PAYLOAD_LEN,
            });
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let (header, shrunk) = self.encode_put(edge_id, data, compression, &mut scratch)?;
            let stored: &[u8] = if shrunk { &scratch } else { data };
            let off = self.write_record(&header, stored)?;
            if scratch.capacity() > 1 << 20 {
                *scratch = Vec::new();
            }
            Ok((off, header.stored_len, header.compression as u8))
        })
    }

    /// The header of a payload record: picks the codec (`None` = by size),
    /// compresses into `out` and reports whether `out` holds the stored
    /// bytes (false: store `data` raw, compression did not shrink it).
    fn encode_put(
        &self,
        id: u128,
        data: &[u8],
        compression: Option<CompressionType>,
        out: &mut Vec<u8>,
    ) -> Result<(RecordHeader, bool)> {
        let codec = self.codec_for(compression, data.len());
        out.clear();
        let shrunk = codec::compress(codec, self.opts.compression.zstd_level, data, out)?;
        let header = RecordHeader::put_encoded(id, codec, shrunk.then_some(out.len()), data.len());
        Ok((header, shrunk))
    }

    /// The codec of a payload of `len` bytes: the caller's, or by size.
    fn codec_for(&self, compression: Option<CompressionType>, len: usize) -> CompressionType {
        compression.unwrap_or_else(|| self.opts.compression.choose(len))
    }

    /// Appends one encoded record under the writer lock, applies it to the
    /// index and honours the sync policy. Returns its offset.
    fn write_record(&self, header: &RecordHeader, stored: &[u8]) -> Result<u64> {
        let mut hb = header.encode();
        let salt = self.gen.load().salt;
        format::seal(salt, &mut hb, stored);
        let mut w = self.writer.lock();
        self.writable()?;
        let g = self.gen.load();
        if g.salt != salt {
            // a compaction switched logs before the lock was taken
            format::seal(g.salt, &mut hb, stored);
        }
        self.reserve_index(&g, &mut w, 1)?;
        let off = if stored.len() >= WRITE_SYSCALL_FROM {
            g.seg.append_vectored(&mut w.cur, &[&hb, stored])?
        } else {
            g.seg.append(&mut w.cur, &[&hb, stored])?
        };
        if self.prefault_wanted(w.cur.end) {
            g.seg.prefault_ahead(&mut w.cur);
        }
        if let Err(e) = apply(&g.seg, &g.index, &mut w, off, header) {
            return Err(self.index_failed(e));
        }
        self.after_write(&g, w)?;
        Ok(off)
    }

    /// Whether the pages ahead of `end` should be populated (see
    /// `prefault.rs`): only while syncs are rare — none in the last 16 MiB
    /// appended — since a sync also writes back the populated zeros.
    #[inline]
    fn prefault_wanted(&self, end: u64) -> bool {
        const RECENT_SYNC: u64 = 16 << 20;
        self.opts.sync == SyncPolicy::Manual
            && end.saturating_sub(self.durable_offset()) > RECENT_SYNC
    }

    /// Appends many payloads, their records encoded into one buffer and
    /// written with one `pwritev`. Returns each payload's location, in
    /// order. Same semantics as calling `append` for each (compression
    /// choice, last write wins, sync policy applied once for the whole
    /// batch); cheaper for bulk loads because the records reach the page
    /// cache in one system call instead of through page faults on the
    /// mapping.
    ///
    /// A batch with 1 MiB or more to compress is compressed on all cores in
    /// runs of ~4 MiB, each written as soon as it is ready; the writer lock
    /// is held from the first run's write until the batch is published, so
    /// other appenders compress meanwhile but write after it.
    ///
    /// Nothing of a failed batch becomes visible: its bytes lie past the
    /// end of the log and the next append overwrites them. (If the process
    /// dies before that, records of it that reached the disk whole may be
    /// found at the next open, as a write that failed halfway may leave.)
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-batch-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// let items: Vec<(u128, Vec<u8>)> = (0..100u128).map(|i| (i, vec![i as u8; 10])).collect();
    /// let refs: Vec<(u128, &[u8])> = items.iter().map(|(id, d)| (*id, d.as_slice())).collect();
    /// let locs = store.append_batch(&refs, None)?;
    /// assert_eq!(locs.len(), 100);
    /// assert_eq!(store.get(42)?.unwrap(), vec![42u8; 10]);
    /// assert_eq!(store.get_at_offset(locs[7].0, locs[7].1, CompressionType::try_from(locs[7].2)?)?, vec![7u8; 10]);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn append_batch(
        &self,
        items: &[(u128, &[u8])],
        compression: Option<CompressionType>,
    ) -> Result<Vec<(u64, u32, u8)>> {
        self.writable()?;
        if let Some((_, d)) = items.iter().find(|(_, d)| d.len() as u64 > MAX_PAYLOAD_LEN) {
            return Err(Error::PayloadTooLarge {
                len: d.len() as u64,
                max: MAX_PAYLOAD_LEN,
            });
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        loop {
            let salt = self.gen.load().salt;
            if let Some(locs) = self.append_batch_sealed(items, compression, salt)? {
                return Ok(locs);
            }
            // a compaction switched logs before the batch could be written
        }
    }

    /// `append_batch` with every record sealed under `salt`; `None` (nothing
    /// written) when the log's salt is another one by the time the writer
    /// lock is taken.
    fn append_batch_sealed<'a>(
        &self,
        items: &[(u128, &'a [u8])],
        compression: Option<CompressionType>,
        salt: u64,
    ) -> Result<Option<Vec<(u64, u32, u8)>>> {
        // Encode (compress, checksum) every record before taking the lock,
        // laid out as it will lie in the log (see `batch.rs`). When the
        // batch holds enough bytes to compress, the work is split over the
        // cores (a single appending thread would otherwise be bound by one
        // core's ZSTD/LZ4 speed), in runs of about equal bytes.
        let codec_of = |d: &[u8]| self.codec_for(compression, d.len());
        let encode = |run: &'_ [(u128, &'a [u8])]| -> Result<EncodedBatch<'a>> {
            // room for every staged record, and for a compressor's worst
            // case on top of what is staged, so the buffer never moves
            let bytes = run
                .iter()
                .map(|(_, d)| match codec_of(d) {
                    CompressionType::None => d.len().min(STAGE_MAX),
                    _ => d.len() + d.len() / 8 + 64, // lz4_flex: 1.1x + 20
                })
                .sum();
            let mut batch = EncodedBatch::with_capacity(run.len(), bytes);
            for (k, &(id, data)) in run.iter().enumerate() {
                if let Some((_, ahead)) = run.get(k + PREFETCH_AHEAD) {
                    crate::sys::prefetch_bytes(&ahead[..ahead.len().min(PREFETCH_PAYLOAD_MAX)]);
                }
                batch.push_put(
                    salt,
                    self.opts.compression.zstd_level,
                    id,
                    data,
                    codec_of(data),
                )?;
            }
            Ok(batch)
        };
        let to_compress: usize = items
            .iter()
            .filter(|(_, d)| codec_of(d) != CompressionType::None)
            .map(|(_, d)| d.len())
            .sum();
        // Each encoded run is written past the end of the log as soon as it
        // is ready (while later runs still compress) and published with the
        // rest once all are written: nothing of a failed batch is visible.
        // When syncs are frequent, writeback of each run starts at once, so
        // the caller's next `sync` finds most of the batch on its way.
        let mut w: Option<parking_lot::MutexGuard<'_, Writer>> = None;
        let mut records = Vec::with_capacity(items.len());
        let mut written = 0u64;
        let mut stale = false;
        let mut write_run = |b: EncodedBatch<'a>| -> Result<()> {
            if stale {
                return Ok(());
            }
            if w.is_none() {
                let mut g = self.writer.lock();
                self.writable()?;
                let gen = self.gen.load();
                if gen.salt != salt {
                    stale = true;
                    return Ok(());
                }
                self.reserve_index(&gen, &mut g, items.len() as u64)?;
                w = Some(g);
            }
            let g = w.as_mut().expect("locked above");
            // the writer lock is held: no compaction can switch logs now
            let gen = self.gen.load();
            let seg = &gen.seg;
            let mut parts: Vec<&[u8]> = Vec::with_capacity(2);
            b.parts(&mut parts);
            // (no prefault_ahead here: `pwritev` into populated pages
            // measured slower, 776 -> 671 MB/s on w1)
            let len = seg.write_pending(&mut g.cur, written, &parts)?;
            debug_assert_eq!(len, b.len());
            if !self.prefault_wanted(g.cur.end) {
                seg.start_writeback(g.cur.end + written, len);
            }
            records.extend(b.records().iter().map(|&(h, rel)| (h, written + rel)));
            written += len;
            Ok(())
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads > 1 && to_compress >= PARALLEL_COMPRESS_BYTES {
            let total: usize = items.iter().map(|(_, d)| d.len()).sum();
            let runs = batch::split_by_bytes(items, (total / RUN_BYTES).max(threads));
            batch::in_order(&runs, threads, |r| encode(r), &mut write_run)?;
        } else {
            write_run(encode(items)?)?;
        }
        let Some(mut w) = w else {
            debug_assert!(stale);
            return Ok(None);
        };
        let g = self.gen.load();
        let base = g.seg.publish(&mut w.cur, written);
        // overlap the index's memory latencies (see `Index::prefetch`)
        for (header, _) in records.iter().take(INDEX_AHEAD) {
            g.index.prefetch(&w.ix, header.id);
        }
        for (k, (header, rel)) in records.iter().enumerate() {
            if let Some((ahead, _)) = records.get(k + INDEX_AHEAD) {
                g.index.prefetch(&w.ix, ahead.id);
            }
            if let Err(e) = apply(&g.seg, &g.index, &mut w, base + rel, header) {
                return Err(self.index_failed(e));
            }
        }
        self.after_write(&g, w)?;
        Ok(Some(
            records
                .iter()
                .map(|(h, rel)| (base + rel, h.stored_len, h.compression as u8))
                .collect(),
        ))
    }

    /// DiskHash: reserves the index file space `records` more records can
    /// need before they are written, so a full disk fails the call cleanly
    /// (nothing written, handle usable) instead of poisoning it.
    fn reserve_index(&self, g: &Gen, w: &mut Writer, records: u64) -> Result<()> {
        match (&g.index, &mut w.ix) {
            (Index::Disk(d), IndexWriter::Disk(dw)) => d.reserve_ahead(dw, records),
            _ => Ok(()),
        }
    }

    /// The DiskHash index could not take a record that is already in the
    /// log: the handle stops writing (the next open replays the record).
    fn index_failed(&self, e: Error) -> Error {
        self.poisoned.store(true, Ordering::Release);
        self.emit(
            LogLevel::Error,
            &format!("updating the DiskHash index failed, store is now read-only: {e}"),
        );
        e
    }

    /// What follows every write: figures, memory warnings, the sync policy
    /// (inside the writer lock for `EveryAppend`, outside it for
    /// `GroupCommit`) and the automatic checkpoint.
    /// `g`: the generation the write went to (loaded under the lock).
    fn after_write(&self, g: &Gen, mut w: parking_lot::MutexGuard<'_, Writer>) -> Result<()> {
        self.live.store(w.counters.live, Ordering::Relaxed);
        self.check_memory(g, &mut w);
        let end = w.cur.end;
        if self.opts.sync == SyncPolicy::EveryAppend {
            self.sync_to(end)?;
        }
        drop(w);
        if self.opts.sync == SyncPolicy::GroupCommit {
            self.sync_to(end)?;
        }
        self.maybe_checkpoint(end);
        Ok(())
    }

    /// Deletes `edge_id`: writes a tombstone and drops it from the index.
    /// Returns whether it was present. Its location stays readable through
    /// `get_at_offset` until compaction.
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// let (off, len, tag) = store.append(9, b"gone soon", None)?;
    /// assert!(store.delete(9)?);
    /// assert_eq!(store.get(9)?, None);
    /// assert!(!store.delete(9)?);
    /// // the old location still reads what was written there
    /// assert_eq!(store.get_at_offset(off, len, CompressionType::try_from(tag)?)?, b"gone soon");
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn delete(&self, edge_id: u128) -> Result<bool> {
        self.writable()?;
        if self.gen.load().locate(edge_id)?.is_none() {
            return Ok(false);
        }
        let header = RecordHeader {
            crc: 0,
            kind: RecordKind::Delete,
            compression: CompressionType::None,
            id: edge_id,
            stored_len: 0,
            raw_len: 0,
        };
        self.write_record(&header, &[])?;
        Ok(true)
    }

    fn check_memory(&self, g: &Gen, w: &mut Writer) {
        let Some(&threshold) = self.opts.memory_warnings.get(w.next_warning) else {
            return;
        };
        let bytes = g.index.memory_bytes(&w.ix);
        if bytes >= threshold {
            w.next_warning += 1;
            self.emit(
                LogLevel::Warn,
                &format!(
                    "index memory reached {bytes} bytes (threshold {threshold}) for {} payloads; consider the DiskHash backend",
                    w.counters.live
                ),
            );
        }
    }

    fn maybe_checkpoint(&self, end: u64) {
        let every = self.opts.auto_checkpoint_bytes;
        // DiskHash applies every record to its file as it goes: a process
        // crash replays at most one record, and a checkpoint only helps a
        // machine crash while the store is idle (the next append dirties the
        // table again). Flushing the table from inside an append would only
        // add a stall: it happens at `save_index` and `close`.
        if every == 0 || self.opts.backend == IndexBackend::DiskHash {
            return;
        }
        // A checkpoint being saved holds this lock throughout (snapshot,
        // log sync, file write): the append that finds it busy goes on
        // rather than wait for it.
        let Some(mark) = self.checkpoint.try_lock() else {
            return;
        };
        let covered = mark.covered_end;
        drop(mark);
        if end.saturating_sub(covered) >= every {
            if let Err(e) = self.save_index() {
                self.emit(
                    LogLevel::Error,
                    &format!("automatic checkpoint failed: {e}"),
                );
            }
        }
    }

    /// The payload of `edge_id`, or `None` if it has none.
    pub fn get(&self, edge_id: u128) -> Result<Option<Vec<u8>>> {
        let g = self.gen.load();
        match g.locate_to_read(edge_id)? {
            None => Ok(None),
            Some(off) => g.read_vec(off).map(Some),
        }
    }

    /// The payloads of many ids, in order: the same answers as calling
    /// [`get`](Self::get) for each (an error for one id does not stop the
    /// others), but the ids are taken in groups whose memory accesses
    /// overlap: every index slot of a group is fetched, then every record
    /// header, then every record, so one get's cache misses no longer wait
    /// for the previous one's. About 2x the throughput of single gets on
    /// stores larger than the CPU caches (BENCHMARKS.md, get_anatomy).
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-many-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// store.append(1, b"one", None)?;
    /// store.append(3, b"three", None)?;
    /// let got = store.get_many(&[3, 2, 1]);
    /// assert_eq!(got[0].as_ref().unwrap().as_deref(), Some(&b"three"[..]));
    /// assert!(got[1].as_ref().unwrap().is_none());
    /// assert_eq!(got[2].as_ref().unwrap().as_deref(), Some(&b"one"[..]));
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn get_many(&self, ids: &[u128]) -> Vec<Result<Option<Vec<u8>>>> {
        const GROUP: usize = 16;
        let g = self.gen.load();
        let mut out = Vec::with_capacity(ids.len());
        for group in ids.chunks(GROUP) {
            // 1: the index lines
            for &id in group {
                g.index.prefetch_lookup(id);
            }
            // 2: the headers of the records the index points to
            for &id in group {
                g.index
                    .candidates(id, |off| g.seg.prefetch(off, RECORD_HEADER_LEN as u64));
            }
            // 3: confirmed locations (headers are in cache now); the records
            let mut located = Vec::with_capacity(group.len());
            for &id in group {
                let loc = g.locate(id);
                if let Ok(Some(off)) = loc {
                    let len = g.seg.header(off).map_or(0, |h| h.record_len());
                    g.seg.prefetch(off, len.min(PREFETCH_RECORD_MAX));
                }
                located.push(loc);
            }
            // 4: verify and copy
            for loc in located {
                out.push(match loc {
                    Ok(Some(off)) => g.read_vec(off).map(Some),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                });
            }
        }
        out
    }

    /// Copies the payload of `edge_id` into `buf` without allocating.
    /// Returns its length, `None` if absent, or `Error::BufferTooSmall
    /// { needed }` when `buf` is shorter than the payload.
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// store.append(3, b"twelve bytes", None)?;
    /// let mut buf = [0u8; 64];
    /// assert_eq!(store.get_into(3, &mut buf)?, Some(12));
    /// assert_eq!(&buf[..12], b"twelve bytes");
    /// assert!(matches!(store.get_into(3, &mut [0u8; 4]), Err(Error::BufferTooSmall { needed: 12 })));
    /// assert_eq!(store.get_into(4, &mut buf)?, None);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn get_into(&self, edge_id: u128, buf: &mut [u8]) -> Result<Option<usize>> {
        let g = self.gen.load();
        let Some(off) = g.locate_to_read(edge_id)? else {
            return Ok(None);
        };
        let (h, stored) = g.record(off)?;
        let n = h.raw_len as usize;
        if n > buf.len() {
            return Err(Error::BufferTooSmall { needed: n });
        }
        decode_into(off, &h, stored, &mut buf[..n])?;
        Ok(Some(n))
    }

    /// Replaces the contents of `out` with the payload of `edge_id`, reusing
    /// its capacity. Returns false (and leaves `out` empty) if absent.
    pub fn get_to_vec(&self, edge_id: u128, out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        let g = self.gen.load();
        let Some(off) = g.locate_to_read(edge_id)? else {
            return Ok(false);
        };
        let (h, stored) = g.record(off)?;
        if h.compression == CompressionType::None {
            out.extend_from_slice(stored); // no zero-fill before the copy
            return Ok(true);
        }
        out.resize(h.raw_len as usize, 0);
        if let Err(e) = decode_into(off, &h, stored, out) {
            out.clear();
            return Err(e);
        }
        Ok(true)
    }

    /// Length of the payload of `edge_id` after decompression, if present.
    pub fn payload_len(&self, edge_id: u128) -> Result<Option<usize>> {
        let g = self.gen.load();
        match g.locate(edge_id)? {
            None => Ok(None),
            Some(off) => g.record(off).map(|(h, _)| Some(h.raw_len as usize)),
        }
    }

    /// Reads a location returned by `append`. The location must be exactly a
    /// payload record with that stored length and compression whose checksum
    /// matches; anything else is `Error::InvalidLocation` — never other bytes.
    /// Locations of replaced or deleted payloads stay readable (until compaction).
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// let (off, len, tag) = store.append(5, &vec![7u8; 5000], None)?; // LZ4
    /// let codec = CompressionType::try_from(tag)?;
    /// assert_eq!(codec, CompressionType::Lz4);
    /// assert_eq!(store.get_at_offset(off, len, codec)?, vec![7u8; 5000]);
    /// assert!(matches!(store.get_at_offset(off + 1, len, codec), Err(Error::InvalidLocation { .. })));
    /// assert!(matches!(store.get_at_offset(off, len, CompressionType::None), Err(Error::InvalidLocation { .. })));
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn get_at_offset(
        &self,
        offset: u64,
        length: u32,
        compression: CompressionType,
    ) -> Result<Vec<u8>> {
        let bad = |reason| Error::InvalidLocation {
            offset,
            length,
            reason,
        };
        if offset < LOG_HEADER_LEN {
            return Err(bad("offset is inside the file header"));
        }
        let total = u64::from(length) + RECORD_HEADER_LEN as u64;
        let g = self.gen.load();
        if offset
            .checked_add(total)
            .is_none_or(|end| end > g.seg.committed())
        {
            return Err(bad("location extends past the end of the log"));
        }
        let (h, stored) = g
            .seg
            .record(g.salt, offset)
            .map_err(|_| bad("no intact record at this offset"))?;
        if h.kind != RecordKind::Put {
            return Err(bad("the record at this offset is not a payload"));
        }
        if h.stored_len != length {
            return Err(bad("the record at this offset has another length"));
        }
        if h.compression != compression {
            return Err(bad("the record at this offset has another compression"));
        }
        decode_vec(offset, &h, stored)
    }

    /// Whether `edge_id` has a payload. (A damaged DiskHash index page is
    /// reported through the log callback and answers false; `get` returns
    /// the error itself.)
    pub fn has_payload(&self, edge_id: u128) -> bool {
        match self.gen.load().locate(edge_id) {
            Ok(found) => found.is_some(),
            Err(e) => {
                self.emit(LogLevel::Error, &format!("lookup of {edge_id}: {e}"));
                false
            }
        }
    }

    /// Number of live payloads.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed) as usize
    }

    /// Whether the store holds no payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Log offset below which everything is durable. A location `(offset,
    /// length, _)` is durable when `offset + 32 + length <= durable_offset()`.
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?; // SyncPolicy::Manual
    /// let (off, len, _) = store.append(1, b"abc", None)?;
    /// let durable = |s: &PayloadStore| off + 32 + u64::from(len) <= s.durable_offset();
    /// assert!(!durable(&store));
    /// store.sync()?;
    /// assert!(durable(&store));
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn durable_offset(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// End of the log: everything appended so far lies below it.
    pub fn appended_offset(&self) -> u64 {
        self.gen.load().seg.committed()
    }

    /// Makes every append that returned before this call durable.
    pub fn sync(&self) -> Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        // a table grown in the background since the last append replaces
        // the old one now rather than at the next append (never waits)
        let end = match self.writer.try_lock() {
            Some(mut w) => {
                self.gen.load().index.settle(&mut w.ix, false);
                w.cur.end
            }
            None => self.gen.load().seg.committed(),
        };
        self.sync_to(end)
    }

    /// Makes the log durable at least up to `target`. Concurrent callers
    /// share fsyncs: whoever holds the sync lock syncs everything written so far.
    fn sync_to(&self, target: u64) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _g = self.sync_lock.lock();
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        let prev = self.durable.load(Ordering::Acquire);
        if prev >= target {
            return Ok(());
        }
        // the sync lock is held: no compaction can switch logs now
        let g = self.gen.load();
        let end = g.seg.committed();
        // The header watermark records what an *earlier* sync made durable:
        // it is written by this fsync, so it never claims bytes that this
        // fsync might tear. It is a lower bound, refreshed every
        // WATERMARK_STEP bytes to keep the header page out of most fsyncs.
        let mut result = Ok(());
        if prev >= self.watermark.load(Ordering::Relaxed) + WATERMARK_STEP {
            result = g.seg.write_watermark(prev);
            self.watermark.store(prev, Ordering::Relaxed);
        }
        let result = result.and_then(|()| g.seg.sync());
        if let Err(e) = result {
            self.poisoned.store(true, Ordering::Release);
            self.emit(
                LogLevel::Error,
                &format!("fsync failed, store is now read-only: {e}"),
            );
            return Err(e);
        }
        self.durable.store(end, Ordering::Release);
        Ok(())
    }

    /// Saves the index checkpoint atomically, after syncing the log, so that
    /// the next open replays only what is appended after this call.
    pub fn save_index(&self) -> Result<()> {
        self.writable()?;
        let mut mark = self.checkpoint.lock();
        // the checkpoint lock is held: no compaction can switch logs now
        let g = self.gen.load();
        if mark.saved_at.is_some() && mark.covered_end == g.seg.committed() {
            return Ok(()); // nothing appended since the last checkpoint
        }
        let buf = match &g.index {
            Index::Mem(m) => Some(m.copy_buffer()),
            _ => None,
        };
        drop(g);
        let mut w = self.writer.lock();
        // the checkpoint lock is held: no compaction can switch logs now
        let g = self.gen.load();
        // a table being grown is finished first, and the checkpoint holds it
        // (the wait is what the rest of a rebuild would take)
        g.index.settle(&mut w.ix, true);
        let end = w.cur.end;
        if mark.saved_at.is_some() && mark.covered_end == end {
            return Ok(());
        }
        let saved_at = sys::unix_now();
        match (&g.index, &w.ix) {
            (Index::Mem(m), IndexWriter::Mem(mw)) => {
                // Under the writer lock only a copy of the table's arrays
                // (a few ms at 1M ids; the conversion to the checkpoint's
                // layout took 9-15 ms there), the fsync outside it: the
                // checkpoint reaches the disk only after the log it covers.
                let raw = m.raw_copy(mw, buf.expect("taken for the HashMap backend"));
                let (last_record, counters) = (w.last_record, w.counters);
                drop(w);
                let (slots, hi) = raw.to_checkpoint();
                drop(raw);
                let header = CheckpointHeader {
                    backend: format::CKPT_BACKEND_MEMORY,
                    salt: g.salt,
                    covered_end: end,
                    last_record,
                    saved_at,
                    slots: slots.len() as u64,
                    counters,
                };
                self.sync_to(end)?;
                checkpoint::save(&*self.opts.io, &self.dir, &header, &slots, &hi)?;
            }
            (Index::Disk(d), IndexWriter::Disk(_)) => {
                // Most of the work (log fsync, index page writeback) outside
                // the writer lock; then, under it, what was added meanwhile,
                // and the header is marked clean.
                drop(w);
                self.sync_to(end)?;
                d.flush()?;
                let mut w = self.writer.lock();
                let end = w.cur.end;
                self.sync_to(end)?;
                let IndexWriter::Disk(dw) = &mut w.ix else {
                    unreachable!()
                };
                d.checkpoint(dw)?;
                *mark = CheckpointMark {
                    covered_end: end,
                    saved_at: Some(saved_at),
                };
                return Ok(());
            }
            _ => unreachable!("index and writer state of different backends"),
        }
        *mark = CheckpointMark {
            covered_end: end,
            saved_at: Some(saved_at),
        };
        Ok(())
    }

    /// Figures about the store; O(1).
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// store.append(1, &vec![b'a'; 2048], None)?;
    /// store.append(1, b"replaced", None)?;
    /// let st = store.stats();
    /// assert_eq!(st.payloads, 1);
    /// assert!(st.dead_bytes > 0);
    /// assert_eq!(st.by_compression[CompressionType::None as usize].count, 1);
    /// assert_eq!(st.recovery.source, IndexSource::Created);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn stats(&self) -> PayloadStats {
        let (c, end, durable, mem) = {
            let mut w = self.writer.lock();
            let g = self.gen.load();
            // a grown table whose helper is done replaces the old one now
            g.index.settle(&mut w.ix, false);
            // Read under the writer lock: durable ≤ committed == end then.
            let mem = g.index.memory_bytes(&w.ix);
            (w.counters, w.cur.end, self.durable_offset(), mem)
        };
        let mark = *self.checkpoint.lock();
        let by: [CodecStats; 3] = std::array::from_fn(|i| CodecStats {
            count: c.count_by_codec[i],
            raw_bytes: c.raw_by_codec[i],
            stored_bytes: c.stored_by_codec[i],
        });
        let raw: u64 = c.raw_by_codec.iter().sum();
        let stored: u64 = c.stored_by_codec.iter().sum();
        PayloadStats {
            payloads: c.live,
            live_bytes: c.live_bytes,
            dead_bytes: c.dead_bytes,
            file_bytes: end,
            raw_bytes: raw,
            by_compression: by,
            compression_ratio: if stored == 0 {
                1.0
            } else {
                raw as f64 / stored as f64
            },
            index_memory_bytes: mem,
            index_file_bytes: self.gen.load().index.file_bytes(),
            index_bytes_per_payload: if c.live == 0 {
                0.0
            } else {
                mem as f64 / c.live as f64
            },
            backend: self.opts.backend,
            durable_offset: durable,
            last_checkpoint_unix: mark.saved_at,
            last_checkpoint_offset: mark.covered_end,
            recovery: self.recovery.clone(),
        }
    }

    /// Calls `f(edge_id, location)` for every live payload, in no particular order.
    /// Each id present for the whole call is visited exactly once (with
    /// DiskHash also while concurrent appends split buckets). Ids appended
    /// or deleted meanwhile may or may not be seen; one deleted and appended
    /// again meanwhile can be seen twice.
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// for id in 0..10u128 {
    ///     store.append(id, &id.to_le_bytes(), None)?;
    /// }
    /// let mut ids = Vec::new();
    /// store.for_each(|id, _location| ids.push(id))?;
    /// ids.sort();
    /// assert_eq!(ids, (0..10).collect::<Vec<u128>>());
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn for_each(&self, mut f: impl FnMut(u128, (u64, u32, u8))) -> Result<()> {
        let mut err = None;
        self.gen.load().walk_entries(|off, rec| match rec {
            Ok(h) => f(h.id, (off, h.stored_len, h.compression as u8)),
            Err(e) => {
                err.get_or_insert(e);
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    /// Scrubs the store: reads every record of the log up to the committed
    /// end and checks its checksum, then checks that every index entry
    /// points at an intact payload record whose id the index finds there.
    /// Damage is reported, not repaired (see `Options::repair`), and the
    /// store stays usable; `Err` only for a damaged DiskHash page. Runs
    /// beside readers and the writer (appends after it starts are not
    /// looked at); costs one pass over the log.
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// store.append(1, b"one", None)?;
    /// store.append(2, b"two", None)?;
    /// let r = store.verify()?;
    /// assert_eq!((r.records, r.index_entries), (2, 2));
    /// assert!(r.is_clean());
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn verify(&self) -> Result<VerifyReport> {
        // one generation throughout, even if a compaction switches meanwhile
        let g = self.gen.load_full();
        let end = g.seg.committed();
        let mode = Mode {
            watermark: u64::MAX,
            repair: true,
            writable: false,
        };
        let scan = recovery::scan(&g.seg, g.salt, LOG_HEADER_LEN, end, mode, |_, _| {})?;
        let mut r = VerifyReport {
            records: scan.records,
            bytes: end - LOG_HEADER_LEN,
            damaged: scan.repaired,
            ..VerifyReport::default()
        };
        // What the scan could not read up to the committed end, torn-looking
        // or zeros, is damage: records were committed there.
        if scan.end < end {
            r.damaged.push((scan.end, end - scan.end));
        }
        g.walk_entries(|off, rec| {
            r.index_entries += 1;
            let found = match rec {
                Ok(h) if h.kind == RecordKind::Put => {
                    matches!(g.locate(h.id), Ok(Some(at)) if at == off)
                }
                _ => false,
            };
            if !found {
                r.index_errors += 1;
                r.first_index_error.get_or_insert(off);
            }
        })?;
        Ok(r)
    }

    /// Syncs, saves the index, trims the preallocated tail and releases the
    /// store, reporting the first error (Drop does the same but can only log).
    pub fn close(mut self) -> Result<()> {
        let r = self.shutdown();
        self.closed = true;
        r
    }

    /// Releases the handle the way a process crash would: no sync, no index
    /// checkpoint, no trimming; the lock is released. Appended bytes remain
    /// in the OS page cache, exactly as after `kill -9`. For crash tests.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.closed = true;
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        self.writable()?;
        self.sync()?;
        self.save_index()?;
        let g = self.gen.load();
        let end = g.seg.committed();
        // No reader can exist (we hold &mut self): trimming the file is safe.
        g.seg.set_len(end)?;
        g.seg.write_watermark(end)?;
        g.seg.sync()
    }
}

impl Drop for PayloadStore {
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.shutdown() {
                self.emit(LogLevel::Error, &format!("closing the store failed: {e}"));
            }
        }
    }
}

/// The index as loaded at open, before the log tail is replayed into it.
struct Loaded {
    index: Index,
    writer: IndexWriter,
    counters: Counters,
    /// (log offset to replay from, last record before it)
    start: (u64, u64),
    mark: CheckpointMark,
    /// A new DiskHash table too big for the rebuild budget: built in passes
    /// after the scan (`bulk_build`) instead of record by record.
    bulk: bool,
}

fn fresh_mem_index(file_len: u64) -> Loaded {
    // Guess the entry count from the log size (≥ 64 bytes per record) to
    // avoid most rebuilds during a full scan.
    let (index, mem) = MemIndex::new(file_len / 256);
    Loaded {
        index: Index::Mem(index),
        writer: IndexWriter::Mem(mem),
        counters: Counters::default(),
        start: (LOG_HEADER_LEN, 0),
        mark: CheckpointMark::default(),
        bulk: false,
    }
}

/// The HashMap index: the checkpoint if it is usable, else empty (the whole
/// log is then replayed).
fn load_mem_index(
    dir: &Path,
    seg: &Segment,
    salt: u64,
    file_len: u64,
    report: &mut RecoveryReport,
) -> Loaded {
    let ck = match checkpoint::load(dir) {
        Ok(Some(ck)) => ck,
        Ok(None) => {
            if file_len > LOG_HEADER_LEN {
                report.checkpoint_problem = Some("no checkpoint".into());
            }
            return fresh_mem_index(file_len);
        }
        Err(problem) => {
            report.checkpoint_problem = Some(problem);
            return fresh_mem_index(file_len);
        }
    };
    let h = ck.header;
    let usable = if h.salt != salt {
        Err("checkpoint belongs to another log")
    } else {
        usable_checkpoint(seg, salt, file_len, h.covered_end, h.last_record)
    };
    if let Err(problem) = usable {
        report.checkpoint_problem = Some(problem.into());
        return fresh_mem_index(file_len);
    }
    let Some((index, mem)) = MemIndex::from_snapshot(ck.slots, ck.hi) else {
        report.checkpoint_problem = Some("checkpoint slot table is inconsistent".into());
        return fresh_mem_index(file_len);
    };
    report.source = IndexSource::Checkpoint;
    Loaded {
        index: Index::Mem(index),
        writer: IndexWriter::Mem(mem),
        counters: h.counters,
        start: (h.covered_end, h.last_record),
        mark: CheckpointMark {
            covered_end: h.covered_end,
            saved_at: Some(h.saved_at),
        },
        bulk: false,
    }
}

/// The DiskHash index: the file if it can be trusted (finishing an operation
/// a crash interrupted), else a new one that the whole log is replayed into.
fn load_disk_index(
    dir: &Path,
    seg: &Segment,
    salt: u64,
    file_len: u64,
    opts: &Options,
    report: &mut RecoveryReport,
) -> Result<Loaded> {
    let writable = !opts.read_only;
    let problem = match DiskIndex::open(dir, salt, writable, opts.io.clone())? {
        Err(problem) => problem,
        Ok(o) => {
            let st = o.state;
            match usable_checkpoint(seg, salt, file_len, st.applied_end, st.last_record) {
                Err(problem) => problem.to_string(),
                Ok(()) => {
                    let (index, mut dw) = (o.index, o.writer);
                    let finished = match o.intent {
                        None => true,
                        Some(_) if !writable => return Err(disk_read_only()),
                        Some(intent) => finish_intent(seg, salt, &index, &mut dw, &intent),
                    };
                    if finished {
                        let st = *dw.state();
                        report.source = IndexSource::Checkpoint;
                        let (index, writer) = if writable {
                            (Index::Disk(index), IndexWriter::Disk(dw))
                        } else {
                            // Read-only: whatever the log holds past the
                            // table goes into a RAM overlay.
                            let (tail, mw) = MemIndex::new(0);
                            (Index::DiskOverlay(index, tail), IndexWriter::Mem(mw))
                        };
                        return Ok(Loaded {
                            index,
                            writer,
                            counters: st.counters,
                            start: (st.applied_end, st.last_record),
                            mark: CheckpointMark {
                                covered_end: if o.dirty { 0 } else { st.applied_end },
                                saved_at: (!o.dirty).then(sys::unix_now),
                            },
                            bulk: false,
                        });
                    }
                    "an interrupted index change could not be finished".into()
                }
            }
        }
    };
    if file_len > LOG_HEADER_LEN {
        report.checkpoint_problem = Some(problem);
    }
    if !writable {
        return Err(disk_read_only());
    }
    let o = DiskIndex::create(dir, salt, opts.io.clone())?;
    Ok(Loaded {
        index: Index::Disk(o.index),
        writer: IndexWriter::Disk(o.writer),
        counters: Counters::default(),
        start: (LOG_HEADER_LEN, 0),
        mark: CheckpointMark::default(),
        // Records take ≥ 33 bytes of log, an entry ≤ 49.4 bytes of table:
        // the table stays below 1.5x the log.
        bulk: file_len.saturating_mul(3) / 2 > opts.rebuild_memory_bytes,
    })
}

fn disk_read_only() -> Error {
    Error::Unsupported(
        "the DiskHash index is behind the log and a read-only open cannot update it; open the store writable once",
    )
}

/// Applies again the record a crash interrupted (the one at the committed
/// `applied_end`, ending at the intent's).
fn finish_intent(
    seg: &Segment,
    salt: u64,
    index: &DiskIndex,
    w: &mut disk::DiskWriter,
    intent: &disk::Intent,
) -> bool {
    let at = w.state().applied_end;
    let Ok((h, _)) = seg.record(salt, at) else {
        return false;
    };
    if at + h.record_len() != intent.next.applied_end {
        return false;
    }
    let change = match h.kind {
        RecordKind::Put => Change::Set(at),
        RecordKind::Delete => Change::Remove,
        RecordKind::Padding => Change::None,
    };
    index.finish(w, intent, h.id, change, |o| seg.peek_id(o) == Some(h.id))
}

/// Why an index state covering `[.., covered_end)` with its last record at
/// `last_record` cannot be used with this log, if it cannot.
fn usable_checkpoint(
    seg: &Segment,
    salt: u64,
    file_len: u64,
    covered_end: u64,
    last_record: u64,
) -> std::result::Result<(), &'static str> {
    if covered_end < LOG_HEADER_LEN || covered_end > file_len {
        return Err("checkpoint covers more than the log holds");
    }
    if last_record == 0 {
        return if covered_end == LOG_HEADER_LEN {
            Ok(())
        } else {
            Err("checkpoint has no last record")
        };
    }
    match seg.record(salt, last_record) {
        Ok((r, _)) if last_record + r.record_len() == covered_end => Ok(()),
        Ok(_) => Err("checkpoint end is not a record boundary"),
        Err(_) => Err("checkpoint's last record is damaged or missing"),
    }
}

/// Applies one record to index and counters: shared by append and recovery.
/// An error (DiskHash only: the index file could not grow or sync) leaves
/// the record in the log but not in the index; the caller poisons the handle.
fn apply(seg: &Segment, index: &Index, w: &mut Writer, off: u64, h: &RecordHeader) -> Result<()> {
    let confirm = |o: u64| seg.peek_id(o) == Some(h.id);
    let mut c = w.counters;
    let old = match (index, &mut w.ix) {
        (Index::Mem(m), IndexWriter::Mem(mw)) => match h.kind {
            RecordKind::Put => m.upsert(mw, h.id, off, confirm),
            RecordKind::Delete => m.remove(mw, h.id, confirm),
            RecordKind::Padding => None,
        },
        (Index::Disk(d), IndexWriter::Disk(dw)) => {
            let change = match h.kind {
                RecordKind::Put => Change::Set(off),
                RecordKind::Delete => Change::Remove,
                RecordKind::Padding => Change::None,
            };
            let after = |old| {
                account(seg, &mut c, old, h);
                c
            };
            d.apply(dw, h.id, change, confirm, off + h.record_len(), off, after)?;
            w.counters = dw.state().counters;
            w.last_record = off;
            return Ok(());
        }
        (Index::DiskOverlay(d, tail), IndexWriter::Mem(mw)) => {
            let old = match h.kind {
                RecordKind::Put | RecordKind::Delete => {
                    let prev = match tail.get(h.id, confirm) {
                        Some(o) if is_delete_at(seg, o) => None,
                        Some(o) => Some(o),
                        None => d.writer_get(h.id, confirm),
                    };
                    tail.upsert(mw, h.id, off, confirm);
                    prev
                }
                RecordKind::Padding => None,
            };
            account(seg, &mut c, old, h);
            w.counters = c;
            w.last_record = off;
            return Ok(());
        }
        _ => unreachable!("index and writer state of different backends"),
    };
    account(seg, &mut c, old, h);
    w.counters = c;
    w.last_record = off;
    Ok(())
}

/// Scans the log `[from, to)` and applies every record to index and
/// counters — or, with `count_only`, only counts the puts (for a bulk
/// build). Records are applied in groups of `APPLY_GROUP`: each one's index
/// lines are prefetched when it is read, so their memory latencies overlap
/// (a rebuild of a large DiskHash table is bound by them).
#[allow(clippy::too_many_arguments)]
fn replay(
    seg: &Segment,
    salt: u64,
    mode: Mode,
    index: &Index,
    w: &mut Writer,
    from: u64,
    to: u64,
    count_only: bool,
) -> Result<(recovery::Scan, u64)> {
    let mut failed = None;
    let mut puts = 0u64;
    let mut pending: Vec<(u64, RecordHeader)> = Vec::with_capacity(APPLY_GROUP);
    let mut flush = |pending: &mut Vec<(u64, RecordHeader)>, w: &mut Writer| {
        for (off, h) in pending.drain(..) {
            if failed.is_none() {
                if let Err(e) = apply(seg, index, w, off, &h) {
                    failed = Some(e);
                }
            }
        }
    };
    let scan = recovery::scan(seg, salt, from, to, mode, |off, h| {
        if count_only {
            puts += u64::from(h.kind == RecordKind::Put);
            return;
        }
        index.prefetch(&w.ix, h.id);
        pending.push((off, *h));
        if pending.len() == APPLY_GROUP {
            flush(&mut pending, w);
        }
    })?;
    flush(&mut pending, w);
    match failed {
        Some(e) => Err(e),
        None => Ok((scan, puts)),
    }
}

/// Builds a new DiskHash table from the log `[LOG_HEADER_LEN, end)` in
/// passes of at most `rebuild_memory_bytes` of table each (see
/// `DiskIndex::begin_build`), leaving counters and state as a
/// record-by-record replay would. `Ok(false)` if a bucket overflowed (the
/// caller then replays record by record).
fn bulk_build(
    seg: &Segment,
    salt: u64,
    index: &Index,
    w: &mut Writer,
    opts: &Options,
    end: u64,
    puts: u64,
) -> Result<bool> {
    let (Index::Disk(d), IndexWriter::Disk(dw)) = (index, &mut w.ix) else {
        unreachable!("bulk builds are for DiskHash")
    };
    let buckets = d.begin_build(dw, puts)?;
    let table = buckets * disk::PAGE;
    let passes = table.div_ceil(opts.rebuild_memory_bytes).clamp(1, buckets);
    let mode = Mode {
        watermark: 0,
        repair: false,
        writable: true,
    };
    let mut total = [0u64; format::COUNTER_WORDS];
    let (mut entries, mut last) = (0u64, 0u64);
    for k in 0..passes {
        let (lo, hi) = (buckets * k / passes, buckets * (k + 1) / passes);
        d.build_range(lo, hi);
        let mut c = Counters::default();
        let mut full = false;
        recovery::scan(seg, salt, LOG_HEADER_LEN, end, mode, |off, h| {
            last = off;
            let mine = match h.kind {
                RecordKind::Padding => k == 0,
                _ => (lo..hi).contains(&d.bucket_of_id(h.id)),
            };
            if !mine || full {
                return;
            }
            let confirm = |o: u64| seg.peek_id(o) == Some(h.id);
            let old = match h.kind {
                RecordKind::Put => match d.build_set(h.id, off, confirm) {
                    Ok(old) => old,
                    Err(()) => {
                        full = true;
                        return;
                    }
                },
                RecordKind::Delete => d.build_remove(h.id, confirm),
                RecordKind::Padding => None,
            };
            match (h.kind, old) {
                (RecordKind::Put, None) => entries += 1,
                (RecordKind::Delete, Some(_)) => entries -= 1,
                _ => {}
            }
            account(seg, &mut c, old, h);
        })?;
        if full {
            return Ok(false);
        }
        for (t, v) in total.iter_mut().zip(c.words()) {
            *t += v;
        }
        // write this range back before the next one fills the page cache
        d.flush()?;
    }
    let counters = Counters::from_words(total);
    let state = DiskState {
        applied_end: end,
        last_record: last,
        entries,
        counters,
    };
    d.end_build(dw, &state)?;
    w.counters = counters;
    w.last_record = last;
    Ok(true)
}

/// Whether the record at `off` is a tombstone.
fn is_delete_at(seg: &Segment, off: u64) -> bool {
    seg.header(off)
        .is_some_and(|h| h.kind == RecordKind::Delete)
}

/// Counts record `h` (replacing or deleting the record at `old`, if any).
fn account(seg: &Segment, c: &mut Counters, old: Option<u64>, h: &RecordHeader) {
    if let Some(old) = old {
        retire(seg, c, old);
    }
    match h.kind {
        RecordKind::Put => {
            let t = h.compression as usize;
            c.live += 1;
            c.live_bytes += h.record_len();
            c.count_by_codec[t] += 1;
            c.raw_by_codec[t] += u64::from(h.raw_len);
            c.stored_by_codec[t] += u64::from(h.stored_len);
        }
        RecordKind::Delete | RecordKind::Padding => c.dead_bytes += h.record_len(),
    }
}

/// Moves the record at `off` from live to dead in the counters.
fn retire(seg: &Segment, c: &mut Counters, off: u64) {
    let Some(h) = seg.header(off) else {
        return;
    };
    let t = h.compression as usize;
    c.live = c.live.saturating_sub(1);
    c.live_bytes = c.live_bytes.saturating_sub(h.record_len());
    c.dead_bytes += h.record_len();
    c.count_by_codec[t] = c.count_by_codec[t].saturating_sub(1);
    c.raw_by_codec[t] = c.raw_by_codec[t].saturating_sub(u64::from(h.raw_len));
    c.stored_by_codec[t] = c.stored_by_codec[t].saturating_sub(u64::from(h.stored_len));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An append that finds a checkpoint being saved goes on without it
    /// (it used to wait for the whole save: the lock read and the save
    /// were on one mutex). The test holds that lock and appends on
    /// another thread; a regression shows as that append not returning.
    #[test]
    fn appends_do_not_wait_for_a_checkpoint_being_saved() {
        let dir = std::env::temp_dir().join(format!("ps-unit-ckwait-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = PayloadStore::open_with_options(&dir, Options::default().auto_checkpoint_bytes(1))
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|sc| {
            let saving = s.checkpoint.lock();
            sc.spawn(|| {
                for id in 0..100u128 {
                    s.append(id, b"appended while a checkpoint is saved", None)
                        .unwrap();
                }
                tx.send(()).unwrap();
            });
            let done = rx.recv_timeout(std::time::Duration::from_secs(20));
            drop(saving);
            assert!(done.is_ok(), "appends waited for the checkpoint lock");
        });
        assert_eq!(s.len(), 100);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
