//! The on-disk index ("DiskHash" backend): linear hashing over 4 KiB bucket
//! pages of a memory-mapped file, `index.dh`.
//!
//! # File layout
//!
//! ```text
//! page 0: header                         page 1 + b: bucket b (b = 0, 1, 2, …)
//! ┌──────┬─────────────────────────────┐  ┌──────────────────────────────────┐
//! │    0 │ magic "PSDHASH1"            │  │ 255 slots × 16 bytes:            │
//! │    8 │ u32 version (1)             │  │   u64 hash of the id (0 = empty) │
//! │   12 │ u32 page size (4096)        │  │   u64 offset of its newest       │
//! │   16 │ u64 salt of the log it maps │  │       record in the log          │
//! │   24 │ u64 hash seed (random)      │  │ 4080: u64 page checksum          │
//! │      │                             │  │ 4088: u64 reserved (0)           │
//! │      │                             │  └──────────────────────────────────┘
//! │   32 │ u32 state: 1 clean, 2 dirty │
//! │   36 │ 36 B boot id when dirtied   │
//! │   72 │ u32 crc32 of [0, 72)        │
//! │   80 │ u64 geometry: level << 56 | split pointer
//! │  128 │ state copy A (256 B) ┐ seq, done, applied_end, last_record,
//! │  384 │ state copy B (256 B) ┘ entries, intent bucket, cleanup bucket,
//! │      │                        12 counters (see `format::Counters`),
//! │      │                        crc of the fixed part
//! └──────┴─────────────────────────────┘
//! page checksum = seed(b) + Σ over live slots i of (hash ^ rotl(offset, 29)) · M_i
//!   (wrapping; M_i odd constants; seed(b) never 0, so a zeroed page fails)
//! ```
//!
//! All integers little-endian (the library only builds for little-endian
//! targets where the words are accessed in place as atomics).
//!
//! # Addressing
//!
//! `hash = fmix64(id, seed)` (never 0). With geometry `(level L, split s)`
//! there are `2^L + s` buckets; an id lives in bucket `hash mod 2^L`, or
//! `hash mod 2^(L+1)` when that is below `s` (already split). Inside its
//! bucket it is found by linear probing from slot `((hash >> 32) · 255) >> 32`,
//! wrapping, until an empty slot. A lookup reads exactly one bucket page: one
//! random page read when the page is not cached (the maps use `MADV_RANDOM`,
//! so the kernel reads no neighbours). A hit is confirmed against the id in
//! the log record; a miss verifies the page checksum, so a damaged page is
//! reported instead of hiding an entry.
//!
//! # Growth without a stop-the-world rehash
//!
//! When the table holds more than 65 % of its slots, a *round* starts: every
//! insert then splits one bucket (bucket `s` into `s` and `2^L + s`, the
//! entries whose hash bit `L` is set move), until all `2^L` buckets of the
//! round are split. A round therefore takes `2^L` inserts while the table
//! holds ~166·2^L entries: load stays even across buckets (no old bucket
//! waits a whole doubling to split), each insert does at most one split
//! (three page touches), and the file grows one page per split. A bucket
//! that fills up anyway (~166 entries expected at the start of a round, σ ≈ 13:
//! ~10^-11 per bucket per round with a random seed) makes the insert split
//! ahead until it has room.
//!
//! # Concurrency
//!
//! One writer (it holds `&mut DiskWriter`, which lives in the store's writer
//! lock); readers never lock. Every bucket change happens inside a seqlock
//! from a fixed array of stripes (bucket `b` uses stripe `b % STRIPES`):
//! readers retry when the stripe's sequence moved, and also when the
//! geometry moved, so they never see a half-moved entry or miss one.
//!
//! # Crash protocol
//!
//! The index is updated in place through a shared mapping; the log is the
//! write-ahead log. Two things make that safe:
//!
//! - *Process crash* (`kill -9`, panic, abort): the page cache survives with
//!   the file exactly as the process left it, possibly in the middle of one
//!   operation. Each record is applied as: write the *next* state (counters,
//!   `applied_end`, …) into the inactive state copy and store its `seq`
//!   last (the intent); change the bucket(s), storing `intent bucket` /
//!   `cleanup bucket` before touching them; store `done = seq` (the commit).
//!   Every bucket change is ordered so that an interruption leaves at worst
//!   an exact duplicate or a misplaced entry, never a lost or unreachable
//!   one. On open an uncommitted intent is finished: its buckets are
//!   repaired (duplicates and misplaced entries removed), the record at the
//!   committed `applied_end` is applied again (idempotent), and the intent is
//!   committed. Then only the log after `applied_end` is replayed.
//! - *Power loss*: pages reach the disk in any order and may tear. Before the
//!   first change after a checkpoint the header is set `dirty` with the boot
//!   id and synced; a checkpoint syncs the log, syncs every page and sets the
//!   header `clean`. An index found dirty with another boot id (the machine
//!   went down with unsaved changes) is not trusted: it is rebuilt from the
//!   log. A clean index is exactly the checkpoint, and only the log tail is
//!   replayed.

use crate::error::{Error, Result};
use crate::format::{Counters, COUNTER_WORDS, LOG_HEADER_LEN};
use crate::io::{self, Io};
use crate::maps::ChunkMaps;
use crate::sys;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

/// Name of the index file inside the store directory.
pub const FILE: &str = "index.dh";
const TMP_FILE: &str = "index.dh.tmp";
const MAGIC: [u8; 8] = *b"PSDHASH1";
const VERSION: u32 = 1;
/// Bytes per page (header and buckets).
pub const PAGE: u64 = 4096;
/// Slots per bucket.
pub const SLOTS: usize = 255;
/// 8-byte words per bucket page.
const WORDS: usize = 512;
/// Word of a bucket page that holds its checksum.
const SUM: usize = 2 * SLOTS;
/// log2 of the bytes one map covers (1 GiB); maps never move.
const CHUNK_SHIFT: u32 = 30;
/// Number of maps: the index file can grow to 16 TiB (~4·10^12 slots).
const MAX_CHUNKS: usize = 1 << 14;
/// Seqlock stripes: fixed RAM whatever the number of buckets.
const STRIPES: usize = 1024;
const MAX_LEVEL: u64 = 40;
/// A round of splits starts above this load: 13/20 = 65 %.
const LOAD_NUM: u64 = 13;
const LOAD_DEN: u64 = 20;
/// The file grows by at least this much at a time (blocks reserved).
const GROW_MIN: u64 = 256 << 10;

const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_PAGE: usize = 12;
const H_SALT: usize = 16;
const H_SEED: usize = 24;
const H_STATE: usize = 32;
const H_BOOT: usize = 36;
const H_CRC: usize = 72;
const H_GEO: u64 = 80;
const H_COPY: [u64; 2] = [128, 384];
const C_SEQ: u64 = 0;
const C_DONE: u64 = 8;
const C_END: u64 = 16;
const C_LAST: u64 = 24;
const C_ENTRIES: u64 = 32;
const C_INTENT: u64 = 40;
const C_CLEANUP: u64 = 48;
const C_COUNTERS: u64 = 56;
const C_CRC: u64 = C_COUNTERS + 8 * COUNTER_WORDS as u64;

const STATE_CLEAN: u32 = 1;
const STATE_DIRTY: u32 = 2;
/// A bulk build is in progress: the table is not usable until it ends.
const STATE_BUILDING: u32 = 3;

/// What a committed state copy records: how far into the log the index is
/// applied and the store's counters at that point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskState {
    /// End of the last record applied (a record boundary of the log).
    pub applied_end: u64,
    /// Offset of that record (0 if none).
    pub last_record: u64,
    /// Entries in the table.
    pub entries: u64,
    /// The store's counters after that record.
    pub counters: Counters,
}

/// An operation that was interrupted by a crash: finish it with
/// [`DiskIndex::finish`].
#[derive(Clone, Copy, Debug)]
pub struct Intent {
    /// The state the operation was going to commit.
    pub next: DiskState,
    buckets: [u64; 2],
}

/// A change to one id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// id → offset (insert or replace).
    Set(u64),
    /// id removed.
    Remove,
    /// No index change (padding): only the state advances.
    None,
}

/// The shared part of the index: maps and stripes. Readers use it through
/// `&self`.
pub struct DiskIndex {
    path: PathBuf,
    file: File,
    writable: bool,
    maps: ChunkMaps,
    stripes: Box<[AtomicU64]>,
    seed: u64,
    /// Every durable operation on the file (grow, sync) goes through it.
    io: Arc<dyn Io>,
}

/// Writer-only state; lives in the store's writer lock.
pub struct DiskWriter {
    active: usize,
    seq: u64,
    state: DiskState,
    /// Pages the file holds (blocks reserved).
    capacity: u64,
    dirty: bool,
}

/// Why an index file cannot be used as it is (it is then rebuilt).
pub type Unusable = String;

/// A usable index as found at open.
pub struct Opened {
    /// The index.
    pub index: DiskIndex,
    /// Its writer state.
    pub writer: DiskWriter,
    /// The committed state.
    pub state: DiskState,
    /// An operation a crash interrupted, if any.
    pub intent: Option<Intent>,
    /// Whether the header says the file may differ from its last checkpoint.
    pub dirty: bool,
}

#[inline]
fn fmix(k: u64) -> u64 {
    fmix_const(k)
}

#[inline]
fn hash_of(seed: u64, id: u128) -> u64 {
    let h = fmix(id as u64 ^ fmix((id >> 64) as u64 ^ seed));
    h.max(1)
}

#[inline]
fn geo_parts(geo: u64) -> (u64, u64) {
    (geo >> 56, geo & ((1 << 56) - 1))
}

#[inline]
fn bucket_of(hash: u64, geo: u64) -> u64 {
    let (level, split) = geo_parts(geo);
    let b = hash & ((1 << level) - 1);
    if b < split {
        hash & ((2 << level) - 1)
    } else {
        b
    }
}

/// The geometry once the next bucket of the round has been split.
fn geo_after_split(geo: u64) -> u64 {
    let (level, split) = geo_parts(geo);
    if split + 1 == 1 << level {
        (level + 1) << 56
    } else {
        (level << 56) | (split + 1)
    }
}

#[inline]
fn buckets(geo: u64) -> u64 {
    let (level, split) = geo_parts(geo);
    (1 << level) + split
}

#[inline]
fn home(hash: u64) -> usize {
    (((hash >> 32) * SLOTS as u64) >> 32) as usize
}

#[inline]
fn next(i: usize) -> usize {
    if i + 1 == SLOTS {
        0
    } else {
        i + 1
    }
}

/// Odd per-position multipliers of the page checksum.
const SLOT_MUL: [u64; SLOTS] = {
    let mut m = [0u64; SLOTS];
    let mut i = 0;
    while i < SLOTS {
        m[i] = fmix_const(i as u64 + 1) | 1;
        i += 1;
    }
    m
};

const fn fmix_const(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// A slot's share of its page checksum: hash and offset combined, times an
/// odd constant of the position (a bijection: any change of one slot changes
/// the sum; swapped slots too); 0 for an empty slot, whatever its offset
/// word holds. One multiply per slot, so a miss can afford to check a page.
#[inline]
fn slot_sum(i: usize, h: u64, off: u64) -> u64 {
    let live = u64::from(h != 0).wrapping_neg();
    (h ^ off.rotate_left(29)).wrapping_mul(SLOT_MUL[i]) & live
}

/// Checksum of the state copy fields that an intent fixes in advance.
fn copy_crc(st: &DiskState) -> u64 {
    let mut buf = [0u8; 8 * (3 + COUNTER_WORDS)];
    for (chunk, w) in buf.chunks_exact_mut(8).zip(
        [st.applied_end, st.last_record, st.entries]
            .iter()
            .chain(st.counters.words().iter()),
    ) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    u64::from(crc32fast::hash(&buf))
}

/// Checksum of an empty bucket `b`: never 0, so a zeroed page is caught.
fn page_seed(seed: u64, b: u64) -> u64 {
    fmix(seed ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)) | 1
}

fn header_crc(h: &[u8]) -> u32 {
    crc32fast::hash(&h[..H_CRC])
}

impl DiskIndex {
    /// Names the file after a rename (the path is what `Io` calls report).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Creates a new, empty index file for the log with `log_salt` (replacing
    /// any old one) and opens it.
    pub fn create(dir: &Path, log_salt: u64, io: Arc<dyn Io>) -> Result<Opened> {
        let mut init = vec![0u8; 2 * PAGE as usize];
        init[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
        init[H_VERSION..H_VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
        init[H_PAGE..H_PAGE + 4].copy_from_slice(&(PAGE as u32).to_le_bytes());
        init[H_SALT..H_SALT + 8].copy_from_slice(&log_salt.to_le_bytes());
        init[H_SEED..H_SEED + 8].copy_from_slice(&sys::random_u64().to_le_bytes());
        init[H_STATE..H_STATE + 4].copy_from_slice(&STATE_CLEAN.to_le_bytes());
        let crc = header_crc(&init);
        init[H_CRC..H_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        let c = H_COPY[0] as usize;
        init[c..c + 8].copy_from_slice(&1u64.to_le_bytes()); // seq
        init[c + 8..c + 16].copy_from_slice(&1u64.to_le_bytes()); // done
        init[c + 16..c + 24].copy_from_slice(&LOG_HEADER_LEN.to_le_bytes());
        let st0 = DiskState {
            applied_end: LOG_HEADER_LEN,
            ..DiskState::default()
        };
        let at = c + C_CRC as usize;
        init[at..at + 8].copy_from_slice(&copy_crc(&st0).to_le_bytes());
        let seed = u64::from_le_bytes(init[H_SEED..H_SEED + 8].try_into().unwrap());
        let at = PAGE as usize + 8 * SUM;
        init[at..at + 8].copy_from_slice(&page_seed(seed, 0).to_le_bytes());
        // Temp file, fsync, rename, directory fsync: never a half-made index.
        io::write_atomic(&*io, dir, TMP_FILE, FILE, &[&init])?;
        Self::open(dir, log_salt, true, io)?.map_err(|_| Error::Corrupt {
            offset: 0,
            reason: "a newly created DiskHash index does not read back",
        })
    }

    /// Opens the index file of the log with `log_salt`. `Ok(Err(why))` when
    /// it is missing or cannot be trusted: the caller rebuilds it.
    pub fn open(
        dir: &Path,
        log_salt: u64,
        writable: bool,
        io: Arc<dyn Io>,
    ) -> Result<std::result::Result<Opened, Unusable>> {
        let path = dir.join(FILE);
        let file = match OpenOptions::new().read(true).write(writable).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Err("no DiskHash index file".into()))
            }
            Err(e) => return Err(Error::io("opening the DiskHash index", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading index metadata", &path, e))?
            .len();
        if len < 2 * PAGE || len % PAGE != 0 {
            return Ok(Err("index file has a bad length".into()));
        }
        let mut h = vec![0u8; PAGE as usize];
        file.read_exact_at(&mut h, 0)
            .map_err(|e| Error::io("reading the index header", &path, e))?;
        let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
        if h[H_MAGIC..H_MAGIC + 8] != MAGIC {
            return Ok(Err("index file has no DiskHash magic".into()));
        }
        if u32_at(H_CRC) != header_crc(&h) {
            return Ok(Err("index header checksum mismatch".into()));
        }
        if u32_at(H_VERSION) != VERSION || u64::from(u32_at(H_PAGE)) != PAGE {
            return Ok(Err("index file has another version or page size".into()));
        }
        if u64_at(H_SALT) != log_salt {
            return Ok(Err("index file belongs to another log".into()));
        }
        let dirty = match u32_at(H_STATE) {
            STATE_CLEAN => false,
            STATE_DIRTY => {
                let boot = sys::boot_id();
                if boot.iter().all(|&b| b == 0) || h[H_BOOT..H_BOOT + 36] != boot[..] {
                    return Ok(Err(
                        "the machine restarted while the index had unsaved changes".into(),
                    ));
                }
                true
            }
            STATE_BUILDING => return Ok(Err("a rebuild of the index was interrupted".into())),
            _ => return Ok(Err("index header has an unknown state".into())),
        };
        let index = DiskIndex {
            path,
            file,
            writable,
            // Lookups touch one page each: no read-around.
            maps: ChunkMaps::new(MAX_CHUNKS, CHUNK_SHIFT, 1 << CHUNK_SHIFT, true),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            seed: u64_at(H_SEED),
            io,
        };
        index.map_upto(len)?;
        let geo = index.word(H_GEO).load(Ordering::Acquire);
        let (level, split) = geo_parts(geo);
        if level > MAX_LEVEL || split >= 1 << level || 1 + buckets(geo) > len / PAGE {
            return Ok(Err("index geometry does not fit the file".into()));
        }
        let copies = [index.read_copy(0), index.read_copy(1)];
        let committed = |c: &(u64, u64, DiskState, [u64; 2])| c.0 != 0 && c.0 == c.1;
        let active = match (committed(&copies[0]), committed(&copies[1])) {
            (true, true) => usize::from(copies[1].0 > copies[0].0),
            (true, false) => 0,
            (false, true) => 1,
            (false, false) => return Ok(Err("index has no committed state".into())),
        };
        let (seq, _, state, _) = copies[active];
        let other = copies[1 - active];
        let intent = (other.0 == seq + 1 && other.1 != other.0).then_some(Intent {
            next: other.2,
            buckets: other.3,
        });
        let crc_ok = |i: usize| {
            index.word(H_COPY[i] + C_CRC).load(Ordering::Relaxed) == copy_crc(&copies[i].2)
        };
        if !crc_ok(active) || (intent.is_some() && !crc_ok(1 - active)) {
            return Ok(Err("index state checksum mismatch".into()));
        }
        if intent.is_some() && !dirty {
            return Ok(Err(
                "index has an unfinished change but is marked clean".into()
            ));
        }
        Ok(Ok(Opened {
            writer: DiskWriter {
                active,
                seq,
                state,
                capacity: len / PAGE,
                dirty,
            },
            index,
            state,
            intent,
            dirty,
        }))
    }

    fn map_upto(&self, len: u64) -> Result<()> {
        let last = (len.saturating_sub(1) >> CHUNK_SHIFT) as usize;
        if last >= MAX_CHUNKS {
            return Err(Error::InvalidArgument("DiskHash index larger than 16 TiB"));
        }
        // The maps are only dereferenced below the file's length (pages are
        // reserved before they are used), and the file is locked against
        // other writers through the store's directory lock.
        self.maps.map_upto(
            &self.file,
            &self.path,
            self.writable,
            len,
            "mapping the DiskHash index",
        )
    }

    /// The 8-byte word at file offset `at`.
    #[inline]
    fn word(&self, at: u64) -> &AtomicU64 {
        debug_assert!(at.is_multiple_of(8));
        let (ptr, _) = self.maps.ptr(at);
        // SAFETY: `at` lies in a page below the file's length (header, or a
        // bucket below the published geometry / the writer's reserved
        // capacity), inside this chunk's map, which lives as long as `self`.
        // The map is page-aligned and `at` a multiple of 8, so the pointer is
        // aligned for AtomicU64; all accesses to index words go through
        // atomics (the writer of a read-only map never stores).
        unsafe { &*(ptr as *const AtomicU64) }
    }

    /// The 512 words (255 × (hash, offset), checksum, reserved) of bucket `b`.
    #[inline]
    fn bucket(&self, b: u64) -> &[AtomicU64; WORDS] {
        let at = (1 + b) * PAGE;
        let first = self.word(at);
        // SAFETY: a bucket is one page, page-aligned, so it never straddles
        // two chunk maps; `word` established that its first word is valid
        // and the remaining 4088 bytes are in the same page.
        unsafe { &*(first as *const AtomicU64 as *const [AtomicU64; WORDS]) }
    }

    fn read_copy(&self, i: usize) -> (u64, u64, DiskState, [u64; 2]) {
        let base = H_COPY[i];
        let r = |o: u64| self.word(base + o).load(Ordering::Acquire);
        let mut words = [0u64; COUNTER_WORDS];
        for (k, w) in words.iter_mut().enumerate() {
            *w = r(C_COUNTERS + 8 * k as u64);
        }
        (
            r(C_SEQ),
            r(C_DONE),
            DiskState {
                applied_end: r(C_END),
                last_record: r(C_LAST),
                entries: r(C_ENTRIES),
                counters: Counters::from_words(words),
            },
            [r(C_INTENT), r(C_CLEANUP)],
        )
    }

    #[inline]
    fn hash(&self, id: u128) -> u64 {
        hash_of(self.seed, id)
    }

    #[inline]
    fn geo(&self) -> &AtomicU64 {
        self.word(H_GEO)
    }

    /// Looks up the record offset of `id`; `confirm(offset)` checks that the
    /// record there has this id. Lock-free; touches one bucket page. When
    /// the id is not found the page's checksum is verified: `Err(page)` if
    /// it does not match (a damaged page could hide an entry).
    #[inline]
    pub fn get(
        &self,
        id: u128,
        confirm: impl FnMut(u64) -> bool,
    ) -> std::result::Result<Option<u64>, u64> {
        self.lookup(id, confirm, true)
    }

    /// Calls `candidate(offset)` for the entries whose hash matches `id`'s,
    /// without confirming them or checking the page (a prefetch hint for
    /// batched reads).
    pub fn candidates(&self, id: u128, mut candidate: impl FnMut(u64)) {
        let _ = self.lookup(
            id,
            |off| {
                candidate(off);
                false
            },
            false,
        );
    }

    /// `get` for the writer: no checksum check (a miss is then an insert).
    pub fn writer_get(&self, id: u128, confirm: impl FnMut(u64) -> bool) -> Option<u64> {
        self.lookup(id, confirm, false).unwrap_or(None)
    }

    #[inline]
    fn lookup(
        &self,
        id: u128,
        mut confirm: impl FnMut(u64) -> bool,
        verify: bool,
    ) -> std::result::Result<Option<u64>, u64> {
        let h = self.hash(id);
        loop {
            let geo = self.geo().load(Ordering::Acquire);
            let b = bucket_of(h, geo);
            let stripe = &self.stripes[b as usize % STRIPES];
            let seq = stripe.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let slots = self.bucket(b);
            let mut i = home(h);
            let mut found = None;
            for _ in 0..SLOTS {
                let v = slots[2 * i].load(Ordering::Relaxed);
                if v == 0 {
                    break;
                }
                if v == h {
                    let off = slots[2 * i + 1].load(Ordering::Relaxed);
                    if confirm(off) {
                        found = Some(off);
                        break;
                    }
                }
                i = next(i);
            }
            let ok = found.is_some() || !verify || self.page_ok(b, slots);
            fence(Ordering::Acquire);
            if stripe.load(Ordering::Relaxed) == seq && self.geo().load(Ordering::Relaxed) == geo {
                return if ok { Ok(found) } else { Err(b) };
            }
        }
    }

    /// Asks the CPU to fetch the cache lines an operation on `id` will touch
    /// first (its home slot and the page checksum), so that a batch of
    /// records overlaps their memory latencies. A hint: nothing happens if
    /// the page is not mapped yet.
    #[inline]
    pub fn prefetch(&self, id: u128) {
        let h = self.hash(id);
        let b = bucket_of(h, self.geo().load(Ordering::Relaxed));
        let slots = self.bucket(b);
        crate::sys::prefetch_line(&slots[2 * home(h)]);
        crate::sys::prefetch_line(&slots[SUM]);
    }

    /// Whether bucket `b`'s checksum matches its slots.
    fn page_ok(&self, b: u64, slots: &[AtomicU64; WORDS]) -> bool {
        slots[SUM].load(Ordering::Relaxed) == self.page_sum(b, slots)
    }

    fn page_sum(&self, b: u64, slots: &[AtomicU64; WORDS]) -> u64 {
        (0..SLOTS).fold(page_seed(self.seed, b), |s, i| {
            s.wrapping_add(slot_sum(
                i,
                slots[2 * i].load(Ordering::Relaxed),
                slots[2 * i + 1].load(Ordering::Relaxed),
            ))
        })
    }

    /// Index file offset of bucket `b` (for error messages).
    pub fn page_offset(b: u64) -> u64 {
        (1 + b) * PAGE
    }

    /// Calls `f(offset)` for every entry (each bucket read consistently).
    /// `Err(bucket)` at the first page whose checksum does not match.
    ///
    /// Concurrent splits move entries from a bucket to a higher one, so a
    /// plain walk over the buckets would meet an entry again in the new
    /// bucket after meeting it in the old. The walk remembers the geometry
    /// each bucket was read under; an entry met in bucket `j` is skipped when
    /// one of `j`'s ancestors (the buckets it was split from, down to where
    /// the entry lived when the walk started) was read while the entry's
    /// home was that ancestor, i.e. when it was met there already. An entry
    /// present for the whole walk is therefore passed exactly once; one
    /// inserted or removed meanwhile at most once.
    pub fn for_each_offset(&self, mut f: impl FnMut(u64)) -> std::result::Result<(), u64> {
        let mut b = 0;
        let mut offs = Vec::with_capacity(SLOTS);
        let geo0 = self.geo().load(Ordering::Acquire);
        // (first bucket read under a geometry, that geometry), ascending.
        let mut read_under: Vec<(u64, u64)> = Vec::new();
        let geo_when_read = |read_under: &[(u64, u64)], x: u64| {
            let i = read_under.partition_point(|&(first, _)| first <= x);
            read_under[i - 1].1
        };
        loop {
            let geo = self.geo().load(Ordering::Acquire);
            if b >= buckets(geo) {
                return Ok(());
            }
            let stripe = &self.stripes[b as usize % STRIPES];
            let seq = stripe.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            offs.clear();
            let slots = self.bucket(b);
            for i in 0..SLOTS {
                let h = slots[2 * i].load(Ordering::Relaxed);
                if h != 0 && bucket_of(h, geo) == b {
                    offs.push((h, slots[2 * i + 1].load(Ordering::Relaxed)));
                }
            }
            let ok = self.page_ok(b, slots);
            fence(Ordering::Acquire);
            if stripe.load(Ordering::Relaxed) != seq || self.geo().load(Ordering::Relaxed) != geo {
                continue;
            }
            if !ok {
                return Err(b);
            }
            if read_under.last().map(|&(_, g)| g) != Some(geo) {
                read_under.push((b, geo));
            }
            for &(h, o) in &offs {
                // Ancestors of b down to the entry's bucket at the start:
                // each step undoes one split (clears b's top bit).
                let start = bucket_of(h, geo0);
                let mut x = b;
                let mut met = false;
                while x > start {
                    x -= 1 << (63 - x.leading_zeros());
                    if bucket_of(h, geo_when_read(&read_under, x)) == x {
                        met = true;
                        break;
                    }
                }
                if !met {
                    f(o);
                }
            }
            b += 1;
        }
    }

    /// Anonymous RAM the index holds, independent of the number of ids.
    pub fn memory_bytes(&self) -> u64 {
        (STRIPES * 8 + MAX_CHUNKS * std::mem::size_of::<std::sync::OnceLock<memmap2::MmapRaw>>())
            as u64
    }

    /// Bytes of the index file in use (header + buckets).
    pub fn file_bytes(&self) -> u64 {
        (1 + buckets(self.geo().load(Ordering::Relaxed))) * PAGE
    }

    // ---------------------------------------------------------------- writer

    fn lock_stripe(&self, b: u64) -> u64 {
        let s = &self.stripes[b as usize % STRIPES];
        let v = s.load(Ordering::Relaxed);
        s.store(v + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        v
    }

    fn unlock_stripe(&self, b: u64, v: u64) {
        self.stripes[b as usize % STRIPES].store(v + 2, Ordering::Release);
    }

    /// Slot of `hash` in bucket `b` whose record `confirm` accepts.
    fn find(&self, b: u64, h: u64, confirm: &mut impl FnMut(u64) -> bool) -> Option<usize> {
        let slots = self.bucket(b);
        let mut i = home(h);
        for _ in 0..SLOTS {
            let v = slots[2 * i].load(Ordering::Relaxed);
            if v == 0 {
                return None;
            }
            if v == h && confirm(slots[2 * i + 1].load(Ordering::Relaxed)) {
                return Some(i);
            }
            i = next(i);
        }
        None
    }

    /// Sets slot `i` of `slots` (bucket `b`) to (h, off), h = 0 clearing it,
    /// and keeps the page checksum up to date. The offset is stored before
    /// the hash (Release), the checksum last: an interruption leaves the old
    /// or the new entry and at worst a checksum that the crash repair
    /// recomputes.
    #[inline]
    fn set_slot(&self, slots: &[AtomicU64; WORDS], i: usize, h: u64, off: u64) {
        let (oh, oo) = (
            slots[2 * i].load(Ordering::Relaxed),
            slots[2 * i + 1].load(Ordering::Relaxed),
        );
        let sum = slots[SUM]
            .load(Ordering::Relaxed)
            .wrapping_sub(slot_sum(i, oh, oo))
            .wrapping_add(slot_sum(i, h, if h == 0 { oo } else { off }));
        if h != 0 {
            slots[2 * i + 1].store(off, Ordering::Relaxed);
        }
        slots[2 * i].store(h, Ordering::Release);
        slots[SUM].store(sum, Ordering::Release);
    }

    /// Puts (hash, off) into the first empty slot of its probe sequence.
    /// False if the bucket is full.
    fn insert(&self, b: u64, h: u64, off: u64) -> bool {
        let slots = self.bucket(b);
        let mut i = home(h);
        for _ in 0..SLOTS {
            if slots[2 * i].load(Ordering::Relaxed) == 0 {
                self.set_slot(slots, i, h, off);
                return true;
            }
            i = next(i);
        }
        false
    }

    /// Removes slot `i` of bucket `b` by backward shift: later entries of the
    /// cluster move up so that no probe sequence is broken. Each move writes
    /// the copy before clearing the source, so an interruption leaves an
    /// exact duplicate, never a lost entry.
    fn remove_at(&self, b: u64, mut i: usize) {
        let slots = self.bucket(b);
        let mut j = i;
        for _ in 0..SLOTS - 1 {
            j = next(j);
            let h = slots[2 * j].load(Ordering::Relaxed);
            if h == 0 {
                break;
            }
            let k = home(h);
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if stays {
                continue;
            }
            self.set_slot(slots, i, h, slots[2 * j + 1].load(Ordering::Relaxed));
            i = j;
        }
        self.set_slot(slots, i, 0, 0);
    }

    /// Removes from bucket `b` every entry `drop(hash, off, slot)` selects,
    /// by backward shifts, until a full pass finds none (a shift can carry an
    /// entry around the wrap into a slot already passed).
    fn purge(&self, b: u64, mut drop: impl FnMut(&[AtomicU64; WORDS], usize) -> bool) {
        let slots = self.bucket(b);
        loop {
            let mut removed = false;
            let mut i = 0;
            while i < SLOTS {
                if slots[2 * i].load(Ordering::Relaxed) != 0 && drop(slots, i) {
                    self.remove_at(b, i);
                    removed = true;
                } else {
                    i += 1;
                }
            }
            if !removed {
                return;
            }
        }
    }

    /// Makes sure the file holds at least `pages` pages, reserving blocks
    /// ahead so that stores through the map cannot fail on a full disk.
    fn ensure_pages(&self, w: &mut DiskWriter, pages: u64) -> Result<()> {
        if pages <= w.capacity {
            return Ok(());
        }
        let old = w.capacity * PAGE;
        let new = (pages * PAGE).max(old + (old / 8).max(GROW_MIN).next_multiple_of(PAGE));
        self.io.reserve(&self.file, &self.path, old, new)?;
        self.map_upto(new)?;
        w.capacity = new / PAGE;
        Ok(())
    }

    /// Reserves the file space `inserts` more entries can need (one split
    /// each), so that a full disk is reported before the records they come
    /// from are written to the log, not halfway through applying them.
    pub fn reserve_ahead(&self, w: &mut DiskWriter, inserts: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let geo = self.geo().load(Ordering::Relaxed);
        self.ensure_pages(w, 2 + buckets(geo) + inserts)
    }

    /// Splits the next bucket of the round (see the module docs).
    fn split_one(&self, w: &mut DiskWriter) -> Result<()> {
        let geo = self.geo().load(Ordering::Relaxed);
        let (level, split) = geo_parts(geo);
        if level >= MAX_LEVEL {
            return Err(Error::InvalidArgument("DiskHash index cannot grow further"));
        }
        let (p, n) = (split, (1 << level) + split);
        self.ensure_pages(w, n + 2)?;
        let sp = self.lock_stripe(p);
        let same = p as usize % STRIPES == n as usize % STRIPES;
        let sn = if same { 0 } else { self.lock_stripe(n) };
        // 1. The new bucket (beyond the published geometry: invisible).
        self.fill_split_image(p, n, level);
        // 2. Publish: lookups of the movers now go to `n`.
        self.geo().store(geo_after_split(geo), Ordering::Release);
        // 3. Drop the movers from `p` (recorded first, for crash repair).
        self.word(H_COPY[1 - w.active] + C_CLEANUP)
            .store(p + 1, Ordering::Release);
        self.purge(p, |s, i| {
            (s[2 * i].load(Ordering::Relaxed) >> level) & 1 == 1
        });
        if !same {
            self.unlock_stripe(n, sn);
        }
        self.unlock_stripe(p, sp);
        Ok(())
    }

    /// Writes bucket `n` afresh with the entries of bucket `p` whose hash
    /// bit `level` is set (step 1 of a split).
    fn fill_split_image(&self, p: u64, n: u64, level: u64) {
        let (src, dst) = (self.bucket(p), self.bucket(n));
        for word in dst.iter() {
            word.store(0, Ordering::Relaxed);
        }
        dst[SUM].store(page_seed(self.seed, n), Ordering::Relaxed);
        for i in 0..SLOTS {
            let h = src[2 * i].load(Ordering::Relaxed);
            if h != 0 && (h >> level) & 1 == 1 {
                let ok = self.insert(n, h, src[2 * i + 1].load(Ordering::Relaxed));
                debug_assert!(ok);
            }
        }
    }

    fn should_split(&self, entries: u64) -> bool {
        let (level, split) = geo_parts(self.geo().load(Ordering::Relaxed));
        split > 0 || entries * LOAD_DEN > LOAD_NUM * SLOTS as u64 * (1 << level)
    }

    /// Writes the header state (clean/dirty) and syncs the header page.
    fn set_state(&self, state: u32) -> Result<()> {
        let map = self.maps.chunk_of(0).expect("header mapped");
        let mut h = [0u8; H_CRC + 4];
        // SAFETY: page 0 is the header, inside the file and chunk 0; only
        // the writer (which calls this) writes these bytes.
        let hp = unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr(), H_CRC + 4) };
        h.copy_from_slice(hp);
        h[H_STATE..H_STATE + 4].copy_from_slice(&state.to_le_bytes());
        let boot = if state == STATE_DIRTY {
            sys::boot_id()
        } else {
            [0; 36]
        };
        h[H_BOOT..H_BOOT + 36].copy_from_slice(&boot);
        let crc = header_crc(&h);
        h[H_CRC..H_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        hp.copy_from_slice(&h);
        // fsync writes back the file's dirty pages, mapped ones included
        // (just after a checkpoint that is this header page alone).
        self.io.sync_data(&self.file, &self.path)
    }

    /// Applies one log record (ending at `applied_end`, starting at
    /// `last_record`) to the index and commits the new state (see "Crash
    /// protocol"). The id's entry is looked up once: `confirm` identifies it
    /// among hash matches, `counters(old)` gives the store's counters after
    /// the record from the offset it replaces (if any); the entry count is
    /// derived here.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        w: &mut DiskWriter,
        id: u128,
        change: Change,
        mut confirm: impl FnMut(u64) -> bool,
        applied_end: u64,
        last_record: u64,
        counters: impl FnOnce(Option<u64>) -> Counters,
    ) -> Result<()> {
        if !self.writable {
            // A read-only map must never be stored to (SIGSEGV); the store
            // never gets here with one, this keeps it so.
            return Err(Error::ReadOnly);
        }
        if !w.dirty {
            self.set_state(STATE_DIRTY)?;
            w.dirty = true;
        }
        let geo = self.geo().load(Ordering::Relaxed);
        // Room for this record's split, reserved before anything changes.
        self.ensure_pages(w, 2 + buckets(geo) + 1)?;
        let h = self.hash(id);
        let mut b = bucket_of(h, geo);
        let found = match change {
            Change::None => None,
            Change::Set(_) | Change::Remove => self.find(b, h, &mut confirm),
        };
        let old = found.map(|i| self.bucket(b)[2 * i + 1].load(Ordering::Relaxed));
        let entries = match (change, found) {
            (Change::Set(_), None) => w.state.entries + 1,
            (Change::Remove, Some(_)) => w.state.entries - 1,
            _ => w.state.entries,
        };
        let next = DiskState {
            applied_end,
            last_record,
            entries,
            counters: counters(old),
        };
        self.write_intent(w, &next);
        match (change, found) {
            (Change::Set(off), Some(i)) => {
                self.mark_intent(w, b);
                let v = self.lock_stripe(b);
                self.set_slot(self.bucket(b), i, h, off);
                self.unlock_stripe(b, v);
            }
            (Change::Set(off), None) => {
                loop {
                    self.mark_intent(w, b);
                    let v = self.lock_stripe(b);
                    let ok = self.insert(b, h, off);
                    self.unlock_stripe(b, v);
                    if ok {
                        break;
                    }
                    // Full bucket: split ahead until it has room.
                    self.split_one(w)?;
                    b = bucket_of(h, self.geo().load(Ordering::Relaxed));
                }
                if self.should_split(next.entries) {
                    self.split_one(w)?;
                }
            }
            (Change::Remove, Some(i)) => {
                self.mark_intent(w, b);
                let v = self.lock_stripe(b);
                self.remove_at(b, i);
                self.unlock_stripe(b, v);
            }
            _ => {}
        }
        self.commit(w, &next);
        Ok(())
    }

    fn write_intent(&self, w: &DiskWriter, next: &DiskState) {
        let base = H_COPY[1 - w.active];
        let s = |o: u64, v: u64| self.word(base + o).store(v, Ordering::Relaxed);
        s(C_DONE, 0);
        s(C_END, next.applied_end);
        s(C_LAST, next.last_record);
        s(C_ENTRIES, next.entries);
        s(C_INTENT, 0);
        s(C_CLEANUP, 0);
        for (k, v) in next.counters.words().iter().enumerate() {
            s(C_COUNTERS + 8 * k as u64, *v);
        }
        s(C_CRC, copy_crc(next));
        // The sequence number is stored last: it makes the intent valid.
        self.word(base + C_SEQ).store(w.seq + 1, Ordering::Release);
    }

    fn mark_intent(&self, w: &DiskWriter, b: u64) {
        self.word(H_COPY[1 - w.active] + C_INTENT)
            .store(b + 1, Ordering::Release);
    }

    fn commit(&self, w: &mut DiskWriter, next: &DiskState) {
        let other = 1 - w.active;
        self.word(H_COPY[other] + C_DONE)
            .store(w.seq + 1, Ordering::Release);
        w.active = other;
        w.seq += 1;
        w.state = *next;
    }

    /// Finishes an operation a crash interrupted: repairs the buckets it was
    /// changing, applies `change` for `id` again and commits its state.
    /// False if that cannot be done (the caller rebuilds the index).
    pub fn finish(
        &self,
        w: &mut DiskWriter,
        intent: &Intent,
        id: u128,
        change: Change,
        mut confirm: impl FnMut(u64) -> bool,
    ) -> bool {
        if !self.writable {
            return false;
        }
        let geo = self.geo().load(Ordering::Relaxed);
        let n = buckets(geo);
        for b in intent.buckets.iter().filter(|&&b| b != 0).map(|b| b - 1) {
            if b >= n {
                return false;
            }
            // Keep the first copy of each (hash, offset); drop misplaced ones.
            self.purge(b, |s, i| {
                let (h, off) = (
                    s[2 * i].load(Ordering::Relaxed),
                    s[2 * i + 1].load(Ordering::Relaxed),
                );
                bucket_of(h, geo) != b
                    || (0..i).any(|k| {
                        s[2 * k].load(Ordering::Relaxed) == h
                            && s[2 * k + 1].load(Ordering::Relaxed) == off
                    })
            });
            // An interrupted change may have left the checksum behind.
            let slots = self.bucket(b);
            slots[SUM].store(self.page_sum(b, slots), Ordering::Release);
        }
        let h = self.hash(id);
        let b = bucket_of(h, geo);
        match change {
            Change::None => {}
            Change::Set(off) => match self.find(b, h, &mut confirm) {
                Some(i) => self.set_slot(self.bucket(b), i, h, off),
                None => {
                    if !self.insert(b, h, off) {
                        return false;
                    }
                }
            },
            Change::Remove => {
                if let Some(i) = self.find(b, h, &mut confirm) {
                    self.remove_at(b, i);
                }
            }
        }
        self.commit(w, &intent.next);
        true
    }

    // ------------------------------------------------------------ bulk build
    //
    // A table bigger than the RAM budget is rebuilt from the log in passes:
    // the geometry is fixed up front for the number of records, and pass k
    // applies only the records whose bucket lies in the k-th range of
    // buckets, so each pass touches a region of the file that fits in the
    // page cache and the log is read sequentially. No readers exist yet and
    // no splits happen; a crash during the build leaves the header
    // `building`, which the next open rebuilds.

    /// Starts a bulk build for up to `ids` entries; returns the bucket count.
    pub fn begin_build(&self, w: &mut DiskWriter, ids: u64) -> Result<u64> {
        let per_bucket = (LOAD_NUM * SLOTS as u64 / LOAD_DEN).max(1);
        let mut level = 0;
        while (1u64 << level) * per_bucket < ids && level < MAX_LEVEL {
            level += 1;
        }
        self.set_state(STATE_BUILDING)?;
        w.dirty = true;
        self.ensure_pages(w, 2 + (1 << level))?;
        self.geo().store(level << 56, Ordering::Release);
        Ok(1 << level)
    }

    /// Prepares buckets `lo..hi` for a build pass: pages past the creation
    /// geometry are fallocated zeros and get their empty checksum (bucket 0
    /// has it from creation).
    pub fn build_range(&self, lo: u64, hi: u64) {
        for b in lo.max(1)..hi {
            let slots = self.bucket(b);
            if slots[SUM].load(Ordering::Relaxed) == 0 {
                slots[SUM].store(page_seed(self.seed, b), Ordering::Relaxed);
            }
        }
    }

    /// The bucket `id` belongs to (fixed geometry during a build).
    pub fn bucket_of_id(&self, id: u128) -> u64 {
        bucket_of(self.hash(id), self.geo().load(Ordering::Relaxed))
    }

    /// Build step: id → off. Returns the previous offset, or `Err(())` if
    /// the bucket is full (the caller falls back to a normal rebuild).
    pub fn build_set(
        &self,
        id: u128,
        off: u64,
        mut confirm: impl FnMut(u64) -> bool,
    ) -> std::result::Result<Option<u64>, ()> {
        let h = self.hash(id);
        let b = bucket_of(h, self.geo().load(Ordering::Relaxed));
        let slots = self.bucket(b);
        match self.find(b, h, &mut confirm) {
            Some(i) => {
                let old = slots[2 * i + 1].load(Ordering::Relaxed);
                self.set_slot(slots, i, h, off);
                Ok(Some(old))
            }
            None if self.insert(b, h, off) => Ok(None),
            None => Err(()),
        }
    }

    /// Build step: id removed. Returns its offset if it was present.
    pub fn build_remove(&self, id: u128, mut confirm: impl FnMut(u64) -> bool) -> Option<u64> {
        let h = self.hash(id);
        let b = bucket_of(h, self.geo().load(Ordering::Relaxed));
        let i = self.find(b, h, &mut confirm)?;
        let old = self.bucket(b)[2 * i + 1].load(Ordering::Relaxed);
        self.remove_at(b, i);
        Some(old)
    }

    /// Ends a bulk build: commits `state` and marks the table usable.
    pub fn end_build(&self, w: &mut DiskWriter, state: &DiskState) -> Result<()> {
        self.write_intent(w, state);
        self.commit(w, state);
        self.set_state(STATE_DIRTY)
    }

    /// Syncs every page to disk (no lock needed; the writer may run).
    pub fn flush(&self) -> Result<()> {
        self.io.sync_data(&self.file, &self.path)
    }

    /// Makes the file a checkpoint: syncs the pages, then marks the header
    /// clean. The caller holds the writer lock and has made the log durable
    /// up to the applied end.
    pub fn checkpoint(&self, w: &mut DiskWriter) -> Result<()> {
        if !w.dirty || !self.writable {
            return Ok(());
        }
        self.flush()?;
        self.set_state(STATE_CLEAN)?;
        w.dirty = false;
        Ok(())
    }
}

impl DiskWriter {
    /// The committed state.
    pub fn state(&self) -> &DiskState {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ps-dh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Sets `id` → `off` for a fake 40-byte record at `off`; `at` (offset
    /// → id) confirms candidates.
    fn put(idx: &DiskIndex, w: &mut DiskWriter, at: &HashMap<u64, u128>, id: u128, off: u64) {
        let confirm = |o| at.get(&o) == Some(&id);
        idx.apply(w, id, Change::Set(off), confirm, off + 40, off, |_| {
            Counters::default()
        })
        .unwrap();
    }

    /// A table of `n` ids at fake offsets 1000 + 40·k (`at` maps back).
    fn filled(dir: &Path, n: u128) -> (DiskIndex, DiskWriter, HashMap<u64, u128>, DiskState) {
        let o = DiskIndex::create(dir, 9, Arc::new(io::OsIo)).unwrap();
        let (idx, mut w) = (o.index, o.writer);
        let mut at = HashMap::new();
        let mut st = DiskState::default();
        for k in 0..n {
            let (id, off) = (k * 7919 + 1, 1000 + 40 * k as u64);
            at.insert(off, id);
            st.entries += 1;
            st.applied_end = off + 40;
            put(&idx, &mut w, &at, id, off);
        }
        assert_eq!(w.state().entries, st.entries);
        st.last_record = w.state().last_record;
        (idx, w, at, st)
    }

    /// Every id of `at` found at its offset exactly once, every page sound.
    fn check_all(idx: &DiskIndex, at: &HashMap<u64, u128>, gone: &[u128]) {
        let geo = idx.geo().load(Ordering::Relaxed);
        for b in 0..buckets(geo) {
            assert!(idx.page_ok(b, idx.bucket(b)), "bucket {b} checksum");
        }
        let mut seen = HashMap::new();
        idx.for_each_offset(|o| *seen.entry(o).or_insert(0) += 1)
            .unwrap();
        for (&off, &id) in at {
            if gone.contains(&id) {
                assert_eq!(idx.get(id, |o| at.get(&o) == Some(&id)), Ok(None));
                assert_eq!(seen.get(&off), None);
            } else {
                assert_eq!(idx.get(id, |o| at.get(&o) == Some(&id)), Ok(Some(off)));
                assert_eq!(seen.get(&off), Some(&1), "id {id} listed once");
            }
        }
    }

    /// A crash in the middle of a backward-shift removal leaves a duplicate;
    /// the next open finishes the removal and drops the duplicate.
    #[test]
    fn an_interrupted_removal_is_finished_at_open() {
        let dir = temp("cut-remove");
        let (idx, w, at, st) = filled(&dir, 3000);
        // an entry followed by one that a removal would shift back
        let geo = idx.geo().load(Ordering::Relaxed);
        let (b, i, j, victim) = (0..buckets(geo))
            .find_map(|b| {
                let s = idx.bucket(b);
                (0..SLOTS).find_map(|i| {
                    let j = next(i);
                    let (hi, hj) = (
                        s[2 * i].load(Ordering::Relaxed),
                        s[2 * j].load(Ordering::Relaxed),
                    );
                    let moves = hi != 0 && hj != 0 && home(hj) != j;
                    moves.then(|| (b, i, j, at[&s[2 * i + 1].load(Ordering::Relaxed)]))
                })
            })
            .expect("a cluster to shift");
        let next_state = DiskState {
            entries: st.entries - 1,
            applied_end: st.applied_end + 32,
            ..st
        };
        // what `apply` does up to the kill: intent, bucket mark, first move
        idx.write_intent(&w, &next_state);
        idx.mark_intent(&w, b);
        let s = idx.bucket(b);
        let (hj, oj) = (
            s[2 * j].load(Ordering::Relaxed),
            s[2 * j + 1].load(Ordering::Relaxed),
        );
        idx.set_slot(s, i, hj, oj); // copied, source not cleared yet
        drop((idx, w));
        let o = DiskIndex::open(&dir, 9, true, Arc::new(io::OsIo))
            .unwrap()
            .unwrap();
        let intent = o.intent.expect("the interrupted intent is found");
        assert_eq!(intent.next, next_state);
        let (idx, mut w) = (o.index, o.writer);
        assert!(
            idx.finish(&mut w, &intent, victim, Change::Remove, |o| at.get(&o)
                == Some(&victim))
        );
        assert_eq!(*w.state(), next_state);
        check_all(&idx, &at, &[victim]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A crash after a split was published but before the movers were
    /// dropped from the old bucket: the next open drops them.
    #[test]
    fn an_interrupted_split_is_finished_at_open() {
        let dir = temp("cut-split");
        let (idx, mut w, at, st) = filled(&dir, 3000);
        let next_state = DiskState {
            applied_end: st.applied_end + 32,
            ..st
        };
        idx.write_intent(&w, &next_state);
        // split_one up to the kill: new bucket written, geometry published,
        // cleanup recorded, one mover of several dropped
        let geo = idx.geo().load(Ordering::Relaxed);
        let (level, split) = geo_parts(geo);
        let (p, n) = (split, (1 << level) + split);
        idx.ensure_pages(&mut w, n + 2).unwrap();
        let src = idx.bucket(p);
        let movers: Vec<usize> = (0..SLOTS)
            .filter(|&i| {
                let h = src[2 * i].load(Ordering::Relaxed);
                h != 0 && (h >> level) & 1 == 1
            })
            .collect();
        assert!(movers.len() >= 2, "a bucket with movers");
        idx.fill_split_image(p, n, level);
        let published = geo_after_split(geo);
        idx.geo().store(published, Ordering::Release);
        idx.word(H_COPY[1 - w.active] + C_CLEANUP)
            .store(p + 1, Ordering::Release);
        idx.remove_at(p, movers[0]);
        drop((idx, w));
        let o = DiskIndex::open(&dir, 9, true, Arc::new(io::OsIo))
            .unwrap()
            .unwrap();
        let intent = o.intent.expect("the interrupted intent is found");
        let (idx, mut w) = (o.index, o.writer);
        // the record being applied was padding: no change of its own
        assert!(idx.finish(&mut w, &intent, 0, Change::None, |_| false));
        let s = idx.bucket(p);
        assert!(
            (0..SLOTS).all(|i| {
                let h = s[2 * i].load(Ordering::Relaxed);
                h == 0 || bucket_of(h, published) == p
            }),
            "no misplaced entry left in the split bucket"
        );
        check_all(&idx, &at, &[]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Offsets are fake: `confirm` looks the id up in a side table. Drives
    /// many rounds of splits, replaces and removes, and checks every id.
    /// Splits during a walk move entries the walk has passed into buckets
    /// ahead of it; each entry present throughout is still passed once.
    #[test]
    fn a_walk_passes_each_entry_once_while_buckets_split() {
        let dir = temp("walk");
        let (idx, mut w, at, _) = filled(&dir, 20_000);
        let geo_before = idx.geo().load(Ordering::Relaxed);
        let mut seen: HashMap<u64, u32> = HashMap::new();
        let mut added: HashMap<u64, u128> = HashMap::new();
        let mut k = 0u128;
        idx.for_each_offset(|o| {
            *seen.entry(o).or_insert(0) += 1;
            // three inserts per entry passed (a split each during a round),
            // 30,000 in all
            for _ in 0..if k < 30_000 { 3 } else { 0 } {
                k += 1;
                let (id, off) = (u128::MAX - k * 104_729, 10_000_000 + 40 * k as u64);
                added.insert(off, id);
                put(&idx, &mut w, &added, id, off);
            }
        })
        .unwrap();
        let (l0, s0) = geo_parts(geo_before);
        let (l1, s1) = geo_parts(idx.geo().load(Ordering::Relaxed));
        assert!(
            buckets((l1 << 56) | s1) > buckets((l0 << 56) | s0) + 100,
            "the walk saw splits: {l0}/{s0} -> {l1}/{s1}"
        );
        for off in at.keys() {
            assert_eq!(seen.get(off), Some(&1), "entry at {off}");
        }
        for (off, n) in &seen {
            assert!(*n == 1, "offset {off} passed {n} times");
            assert!(at.contains_key(off) || added.contains_key(off));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn set_get_remove_across_splits() {
        let dir = temp("ops");
        let o = DiskIndex::create(&dir, 7, Arc::new(io::OsIo)).unwrap();
        let (idx, mut w) = (o.index, o.writer);
        let mut at: HashMap<u64, u128> = HashMap::new();
        let mut state = DiskState::default();
        let n = 60_000u128;
        let mut off = 1000u64;
        for id in 0..n {
            off += 40;
            at.insert(off, id * 7919);
            state.entries += 1;
            idx.apply(
                &mut w,
                id * 7919,
                Change::Set(off),
                |o| at.get(&o) == Some(&(id * 7919)),
                off,
                off,
                |_| Counters::default(),
            )
            .unwrap();
        }
        let (level, _) = geo_parts(idx.geo().load(Ordering::Relaxed));
        assert!(level >= 8, "table grew: level {level}");
        for (o, id) in &at {
            assert_eq!(idx.get(*id, |x| at.get(&x) == Some(id)), Ok(Some(*o)));
        }
        assert_eq!(idx.get(1, |x| at.get(&x) == Some(&1)), Ok(None));
        for id in (0..n).step_by(3) {
            state.entries -= 1;
            idx.apply(
                &mut w,
                id * 7919,
                Change::Remove,
                |o| at.get(&o) == Some(&(id * 7919)),
                off,
                off,
                |_| Counters::default(),
            )
            .unwrap();
        }
        let mut seen = 0;
        idx.for_each_offset(|_| seen += 1).unwrap();
        assert_eq!(seen as u64, state.entries);
        // every page's checksum followed the inserts, removes and splits
        let geo = idx.geo().load(Ordering::Relaxed);
        for b in 0..buckets(geo) {
            assert!(idx.page_ok(b, idx.bucket(b)), "bucket {b}");
        }
        // a flipped bit in a slot is caught by the next miss in that bucket
        let victim = idx.bucket(3);
        let i = (0..SLOTS)
            .find(|&i| victim[2 * i].load(Ordering::Relaxed) != 0)
            .unwrap();
        victim[2 * i + 1].fetch_xor(1 << 20, Ordering::Relaxed);
        let miss = (0..u128::MAX)
            .map(|k| k << 70)
            .find(|&id| bucket_of(idx.hash(id), geo) == 3)
            .unwrap();
        assert_eq!(idx.get(miss, |_| false), Err(3));
        assert_eq!(idx.for_each_offset(|_| ()), Err(3));
        victim[2 * i + 1].fetch_xor(1 << 20, Ordering::Relaxed);
        assert_eq!(idx.get(miss, |_| false), Ok(None));
        for (o, id) in &at {
            let want = (id / 7919 % 3 != 0).then_some(*o);
            assert_eq!(
                idx.get(*id, |x| at.get(&x) == Some(id)),
                Ok(want),
                "id {id}"
            );
        }
        assert_eq!(w.state().entries, state.entries);
        drop(idx);
        let o = DiskIndex::open(&dir, 7, true, Arc::new(io::OsIo))
            .unwrap()
            .unwrap();
        assert!(o.dirty && o.intent.is_none());
        assert_eq!(o.state.entries, state.entries);
        assert!(DiskIndex::open(&dir, 8, true, Arc::new(io::OsIo))
            .unwrap()
            .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backward_shift_keeps_clusters_reachable() {
        let dir = temp("shift");
        let o = DiskIndex::create(&dir, 1, Arc::new(io::OsIo)).unwrap();
        let idx = o.index;
        // Entries whose home is the last slot wrap into 0, 1, …
        let hs: Vec<u64> = (0..6u64)
            .map(|k| (0xffff_ffff << 32) | (k + 1) << 1)
            .collect();
        for (k, &h) in hs.iter().enumerate() {
            assert!(idx.insert(0, h, 100 + k as u64));
        }
        let slots = idx.bucket(0);
        let pos = |h: u64| (0..SLOTS).find(|&i| slots[2 * i].load(Ordering::Relaxed) == h);
        idx.remove_at(0, pos(hs[1]).unwrap());
        for (k, &h) in hs.iter().enumerate() {
            assert_eq!(pos(h).is_some(), k != 1);
            let mut yes = |_| true;
            assert_eq!(idx.find(0, h, &mut yes).is_some(), k != 1, "entry {k}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
