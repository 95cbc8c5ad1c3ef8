//! The log file and its memory maps.
//!
//! # How the maps follow a growing file
//!
//! The file is mapped in fixed chunks: chunk `i` maps file bytes
//! `[i·CHUNK, i·CHUNK + CHUNK + MAX_RECORD_LEN)`, so any record that *starts*
//! in chunk `i` lies entirely inside chunk `i`'s mapping, and every offset has
//! exactly one mapping it is read and written through. A chunk is mapped once,
//! the first time the log reaches it, and is never unmapped or moved while the
//! `Segment` lives: a pointer handed to a reader stays valid for as long as it
//! borrows the `Segment`. Mapping past the end of the file is allowed; those
//! pages only become accessible once the file has grown over them.
//!
//! # Writes
//!
//! Appends copy bytes into the shared mapping (no syscall per append). The
//! file is grown ahead of the writer with `fallocate`, so the blocks are
//! reserved: a full disk is an `Error::NoSpace` from `reserve`, never a SIGBUS
//! in the middle of a copy. `committed` is published with `Release` after the
//! copy; readers load it with `Acquire` and only read below it.
//!
//! # SAFETY argument for reading through the maps
//!
//! A `&[u8]` handed out by [`Segment::bytes`] covers bytes in `[LOG_HEADER_LEN,
//! committed)`. Those bytes:
//! 1. lie inside the file (the file is never shorter than `committed` while
//!    the segment is open: it is only truncated at open, before any reader
//!    exists, and at close, when no reader can exist), so no SIGBUS;
//! 2. are never written again (the log is append-only; the only in-place
//!    writes are the watermark slot in the file header, below
//!    `LOG_HEADER_LEN`, and repair's padding records, written at open before
//!    `committed` is published);
//! 3. cannot be changed by another process, because the directory is
//!    `flock`ed by every handle (advisory: a process that ignores the lock and
//!    truncates or rewrites the file is outside what this library can defend
//!    against, exactly as for any mmap-based store).

use crate::error::{Error, Result};
use crate::format::{self, LOG_HEADER_LEN, MAX_RECORD_LEN};
use crate::io::Io;
use crate::maps::ChunkMaps;
use crate::prefault::Prefaulter;
use memmap2::Advice;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// log2 of the chunk size (4 GiB).
const CHUNK_SHIFT: u32 = 32;
/// Number of chunk slots: the log can grow to 16 TiB.
const MAX_CHUNKS: usize = 4096;
/// Largest log file.
pub const MAX_LOG_LEN: u64 = (MAX_CHUNKS as u64) << CHUNK_SHIFT;
/// Each chunk's mapping overlaps the next by one maximal record.
const MAP_LEN: u64 = (1 << CHUNK_SHIFT) + MAX_RECORD_LEN + 4096;

/// The writer's view of the file; lives inside the store's writer lock, so
/// holding `&mut WriteCursor` proves the caller is the only writer.
#[derive(Debug)]
pub struct WriteCursor {
    /// End of the last complete record (== `Segment::committed`).
    pub end: u64,
    /// Current file length: bytes reserved on disk.
    pub capacity: u64,
    /// End of the range handed to the prefaulter so far.
    pub prefaulted: u64,
}

/// The log file, mapped.
pub struct Segment {
    path: PathBuf,
    file: File,
    writable: bool,
    /// Started with the first `prefault_ahead` (when enabled). Declared
    /// before `maps`: dropped (its thread joined) before they are unmapped.
    prefault: OnceLock<Option<Prefaulter>>,
    prefault_enabled: bool,
    maps: ChunkMaps,
    committed: AtomicU64,
    io: Arc<dyn Io>,
}

/// How far ahead of the write position pages are populated.
const PREFAULT_WINDOW: u64 = 4 << 20;

/// Records at least this long are read ahead in one request when cold.
const WILLNEED_LEN: u64 = 64 << 10;

impl Segment {
    /// Wraps an open log file; maps nothing yet.
    pub fn new(
        path: PathBuf,
        file: File,
        writable: bool,
        prefault: bool,
        io: Arc<dyn Io>,
    ) -> Segment {
        Segment {
            path,
            file,
            writable,
            prefault: OnceLock::new(),
            prefault_enabled: prefault && writable,
            maps: ChunkMaps::new(MAX_CHUNKS, CHUNK_SHIFT, MAP_LEN, false),
            committed: AtomicU64::new(LOG_HEADER_LEN),
            io,
        }
    }

    /// Names the file after a rename (the path is what `Io` calls report).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// End of the last complete record: readers may read below it.
    #[inline]
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Publishes a new committed end. Only the open path and the writer call it.
    pub fn set_committed(&self, end: u64) {
        self.committed.store(end, Ordering::Release);
    }

    /// Maps every chunk that holds bytes below `end`.
    pub fn map_upto(&self, end: u64) -> Result<()> {
        if end > MAX_LOG_LEN {
            return Err(Error::PayloadTooLarge {
                len: end,
                max: MAX_LOG_LEN,
            });
        }
        // The maps are only dereferenced below `committed` (reads) or below
        // the reserved file length (the single writer), and the file is
        // locked against others: see the module docs.
        self.maps.map_upto(
            &self.file,
            &self.path,
            self.writable,
            end,
            "mapping the log",
        )
    }

    /// Switches the maps to point reads, after the recovery scan: a cold
    /// `get` then reads the pages of its record, not megabytes around them
    /// (the kernel's read-around follows the device's `read_ahead_kb`).
    pub fn set_random_access(&self) {
        self.maps.set_random();
    }

    /// Reads of the records below `end` through 2 MiB pages (see
    /// `ChunkMaps::advise_huge`): a cold read brings in the 2 MiB around it,
    /// and the TLB covers 512 times more of the log. Only from 2 MiB (past
    /// the header page, which syncs rewrite) to the last 2 MiB boundary
    /// below `end`: the log is append-only, so nothing there is written
    /// again and no huge folio is ever dirtied (appends through the map
    /// into one would make every sync write 2 MiB back).
    pub fn huge_reads_below(&self, end: u64) {
        const HUGE: u64 = 2 << 20;
        let to = end / HUGE * HUGE;
        if to > HUGE {
            self.maps.advise_huge(HUGE, to);
        }
    }

    #[inline]
    fn ptr(&self, off: u64) -> *mut u8 {
        self.maps.ptr(off).0
    }

    /// The bytes `[off, off + len)` when they lie below the committed end and
    /// past the file header; `None` otherwise.
    #[inline]
    pub fn bytes(&self, off: u64, len: usize) -> Option<&[u8]> {
        let end = off.checked_add(len as u64)?;
        if off < LOG_HEADER_LEN || end > self.committed() || len as u64 > MAX_RECORD_LEN {
            return None;
        }
        // SAFETY: `[off, end)` is below `committed`: inside the file, mapped
        // (chunks are mapped before `committed` passes into them), never
        // written again, and a record-sized range starting in a chunk lies
        // inside that chunk's mapping (MAP_LEN overlap). See the module docs.
        Some(unsafe { std::slice::from_raw_parts(self.ptr(off), len) })
    }

    /// Reads the id of the record at `off` (an offset taken from the index,
    /// so it is a committed record start). Returns `None` if out of range.
    #[inline]
    pub fn peek_id(&self, off: u64) -> Option<u128> {
        self.bytes(off, format::RECORD_HEADER_LEN)
            .map(format::RecordHeader::peek_id)
    }

    /// The header of the record at `off`, decoded but not verified (the
    /// checksum covers the whole record: `record` verifies it). `None` if
    /// out of range or not a header.
    #[inline]
    pub fn header(&self, off: u64) -> Option<format::RecordHeader> {
        let b = self.bytes(off, format::RECORD_HEADER_LEN)?;
        format::RecordHeader::decode(b.try_into().ok()?).ok()
    }

    /// Prefetches `len` bytes at `off` (clipped to the committed log); a
    /// hint, for batched reads.
    #[inline]
    pub fn prefetch(&self, off: u64, len: u64) {
        let len = len.min(self.committed().saturating_sub(off));
        if let Some(b) = self.bytes(off, len as usize) {
            crate::sys::prefetch_bytes(b);
        }
    }

    /// The intact record at `off`: its header and stored bytes, when a
    /// record header decodes there, the record lies below the committed end
    /// and its checksum matches. `Err(reason)` otherwise.
    #[inline]
    pub fn record(
        &self,
        salt: u64,
        off: u64,
    ) -> std::result::Result<(format::RecordHeader, &[u8]), &'static str> {
        let hb = self
            .bytes(off, format::RECORD_HEADER_LEN)
            .ok_or("record header out of range")?;
        let hb: &[u8; format::RECORD_HEADER_LEN] = hb.try_into().map_err(|_| "short header")?;
        let h = format::RecordHeader::decode(hb)?;
        let whole = self
            .bytes(off, h.record_len() as usize)
            .ok_or("record extends past the end of the log")?;
        if h.record_len() >= WILLNEED_LEN && self.maps.random() {
            self.will_need(off, whole);
        }
        if !format::record_checksum_ok(salt, whole) {
            return Err("checksum mismatch");
        }
        Ok((h, &whole[format::RECORD_HEADER_LEN..]))
    }

    /// Asks the kernel to read the record `whole` at `off` in one go when
    /// some of it is not in memory: under `MADV_RANDOM` a large cold record
    /// would otherwise fault in page by page. When it is all in memory
    /// (`mincore`, ~1 µs) the advice is skipped, as it costs 1.3-12.5 µs on
    /// resident pages (BENCHMARKS.md, run 11).
    fn will_need(&self, off: u64, whole: &[u8]) {
        if crate::sys::resident(whole) == Some(true) {
            return;
        }
        if let Some(map) = self.maps.chunk_of(off) {
            let rel = self.maps.ptr(off).1;
            let start = rel & !(crate::sys::page_size() - 1);
            let _ = map.advise_range(Advice::WillNeed, start, rel + whole.len() - start);
        }
    }

    /// Appends `parts` as one record at `cur.end` through the mapping,
    /// growing and mapping the file as needed, then publishes the new end.
    /// Returns the record offset.
    pub fn append(&self, cur: &mut WriteCursor, parts: &[&[u8]]) -> Result<u64> {
        self.append_with(cur, parts, |off| {
            let mut at = off;
            for p in parts {
                // SAFETY: `[at, at + p.len())` is inside the reserved file
                // (capacity ≥ new end), inside the chunk mapping of `off`
                // (record ≤ MAX_RECORD_LEN), and at or past `committed`, so no
                // reader holds a reference to it; `&mut WriteCursor` makes us
                // the only writer.
                unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.ptr(at), p.len()) };
                at += p.len() as u64;
            }
            Ok(())
        })
    }

    /// Keeps the pages from the write position to `PREFAULT_WINDOW` past it
    /// populated by the helper thread (see `prefault.rs`): one request per
    /// half window of appends. Writer only.
    #[inline]
    pub fn prefault_ahead(&self, cur: &mut WriteCursor) {
        if !self.prefault_enabled || cur.prefaulted >= cur.end + PREFAULT_WINDOW / 2 {
            return;
        }
        let page = crate::sys::page_size() as u64;
        let start = cur.end.max(cur.prefaulted).div_ceil(page) * page;
        // one request stays inside one chunk's map
        let chunk_end = ((start >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT;
        let end = ((cur.end + PREFAULT_WINDOW).min(cur.capacity).min(chunk_end)) & !(page - 1);
        if end <= start || self.maps.chunk_of(start).is_none() {
            return;
        }
        let Some(p) = self.prefault.get_or_init(Prefaulter::start) else {
            return;
        };
        // `[start, end)` lies inside the file (≤ capacity) and inside the
        // mapped chunk of `start`; maps stay until the segment is dropped,
        // after the prefaulter (field order).
        p.request(self.ptr(start), (end - start) as usize);
        cur.prefaulted = end;
    }

    /// Appends already-encoded records (`parts`, back to back) with
    /// vectored positioned writes, not through the mapping. Readers see the
    /// bytes through the mapping: both go through the same page cache.
    pub fn append_vectored(&self, cur: &mut WriteCursor, parts: &[&[u8]]) -> Result<u64> {
        let len = self.write_pending(cur, 0, parts)?;
        Ok(self.publish(cur, len))
    }

    /// Writes `parts` with vectored positioned writes at `cur.end + at`,
    /// past the published end (no reader looks there yet), growing the file
    /// as needed. Publishes nothing: see `publish`. Returns their length.
    pub fn write_pending(&self, cur: &mut WriteCursor, at: u64, parts: &[&[u8]]) -> Result<u64> {
        self.write_past_end(cur, at, parts, |off| {
            self.io
                .write_vectored_at(&self.file, &self.path, parts, off)
        })
    }

    /// Publishes `len` bytes written past the end by `write_pending`:
    /// readers see them from now on. Returns where they start.
    pub fn publish(&self, cur: &mut WriteCursor, len: u64) -> u64 {
        let off = cur.end;
        cur.end += len;
        self.set_committed(cur.end);
        off
    }

    /// Asks the kernel to start writing `[off, off + len)` back (a hint for
    /// callers that sync soon; see `Io::start_writeback`).
    pub fn start_writeback(&self, off: u64, len: u64) {
        self.io.start_writeback(&self.file, off, len);
    }

    /// Reserves room for `parts` at the end, lets `write(offset)` put them
    /// there, then publishes the new end.
    fn append_with(
        &self,
        cur: &mut WriteCursor,
        parts: &[&[u8]],
        write: impl FnOnce(u64) -> Result<()>,
    ) -> Result<u64> {
        let len = self.write_past_end(cur, 0, parts, write)?;
        Ok(self.publish(cur, len))
    }

    /// Grows the file for `parts` at `cur.end + at` and lets `write(offset)`
    /// put them there (past `committed`: no reader looks at those bytes
    /// yet). Returns their length.
    fn write_past_end(
        &self,
        cur: &mut WriteCursor,
        at: u64,
        parts: &[&[u8]],
        write: impl FnOnce(u64) -> Result<()>,
    ) -> Result<u64> {
        let len = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let off = cur.end + at;
        self.room_for(cur, off + len)?;
        write(off)?;
        Ok(len)
    }

    /// Checks that the log may reach `new_end` and grows the file to it.
    fn room_for(&self, cur: &mut WriteCursor, new_end: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        if new_end > MAX_LOG_LEN {
            return Err(Error::PayloadTooLarge {
                len: new_end,
                max: MAX_LOG_LEN,
            });
        }
        if new_end > cur.capacity {
            self.grow(cur, new_end)?;
        }
        Ok(())
    }

    fn grow(&self, cur: &mut WriteCursor, needed: u64) -> Result<()> {
        const MIB: u64 = 1 << 20;
        let step = (cur.capacity / 8).clamp(4 * MIB, 1024 * MIB);
        let new_cap = (needed.max(cur.capacity + step)).div_ceil(MIB) * MIB;
        let new_cap = new_cap.min(MAX_LOG_LEN).max(needed);
        self.io
            .reserve(&self.file, &self.path, cur.capacity, new_cap)?;
        self.map_upto(new_cap)?;
        cur.capacity = new_cap;
        Ok(())
    }

    /// Overwrites `bytes` at `off` below the committed end. Only for repair at
    /// open, before the segment is shared with any reader.
    pub fn overwrite_at_open(&self, off: u64, bytes: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        assert!(off >= LOG_HEADER_LEN && off + bytes.len() as u64 <= self.committed());
        // SAFETY: in range of the file and mapping (checked above); called only
        // while the store is being opened, so no reader exists.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr(off), bytes.len()) };
        Ok(())
    }

    /// Writes the watermark slot of the file header. Callers serialize on the
    /// store's sync lock; readers never read below `LOG_HEADER_LEN`.
    pub fn write_watermark(&self, watermark: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let slot = format::encode_watermark(watermark);
        // SAFETY: the header page is inside the file (created with its header)
        // and chunk 0 is mapped at open; the slot is written only under the
        // sync lock and read by nobody while the store is open.
        unsafe {
            std::ptr::copy_nonoverlapping(
                slot.as_ptr(),
                self.ptr(format::LH_WATERMARK as u64),
                slot.len(),
            )
        };
        Ok(())
    }

    /// Makes everything written through the maps durable.
    pub fn sync(&self) -> Result<()> {
        #[cfg(not(target_os = "linux"))]
        for map in self.maps.mapped() {
            map.flush()
                .map_err(|e| Error::io("flushing the log map", &self.path, e))?;
        }
        // On Linux fdatasync writes back pages dirtied through shared maps too.
        self.io.sync_data(&self.file, &self.path)
    }

    /// Sets the file length (open-time recovery and close only).
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.io.set_len(&self.file, &self.path, len)
    }
}
