//! The in-memory index ("HashMap" backend): an open-addressing table of
//! 8-byte atomic slots with a control byte each, read without locks.
//!
//! # Why 10 bytes per slot are enough
//!
//! Every record on disk carries its full 128-bit id, so the table keeps only
//! where the record is and a 32-bit hash tag of its id:
//!
//! ```text
//! ctrl (u8, shared with readers):   0 empty, 1 deleted, else 0x80 | tag bits 0..7
//!                                   (eight to a u64 word, see `slots`)
//! slot (u64, shared with readers):  bits 0..44  record offset in the log
//!                                   bits 44..64 tag bits 7..27
//! hi   (u8, read by the grower):    tag bits 27..32
//! ```
//!
//! A lookup scans the control bytes from the id's home position, a word of
//! eight at a time (a few bit operations find the empty bytes and the
//! matching ones; no branch per byte): an empty one ends it (a miss), and
//! only a byte with the id's 7 low tag bits sends it to that slot, whose
//! 20 tag bits and then the record header (which `get` reads anyway)
//! confirm the match. The control bytes are 1/8 of the slots' size, so a
//! miss usually stays in the CPU caches, where the slots of a large table
//! do not (misses 2.5x faster: BENCHMARKS.md, run 11; eight at a time,
//! another 1.17x: run 12).
//! The table keeps the last 5 tag bits (readers never look at them) so
//! that growing it can place every entry again from its tag alone, without
//! touching the log. Offsets
//! fit 44 bits because the log is at most 16 TiB (`MAX_LOG_LEN`).
//!
//! The checkpoint keeps the layout it always had (a u64 per slot with a
//! 48-bit offset and tag bits 0..16, then tag bits 16..32 as a u16 per
//! slot); `snapshot` and `from_snapshot` convert.
//!
//! Position = `(tag · capacity) >> 32` (so capacity need not be a power of
//! two), linear probing. The position depends on the tag's high bits, so
//! the control byte takes the low ones, which neighbouring entries do not
//! share. The table grows by rebuilding at 80% occupancy to a size where
//! live entries fill 53%: 10 B / 0.8 … 10 B / 0.53 = 12.5 … 18.8 B per
//! payload (large tables: 46.7 … 80%, 12.5 … 21.4 B, see Growing).
//! Deletes shrink it the same way: when live entries fill less than 1/4 of
//! it, it is rebuilt to 53% (so RAM follows the live count, at
//! most 40 B per payload after mass deletes, and growing and shrinking are
//! both amortized O(1) per operation). `reserve` (the store's
//! `Options::expected_payloads`) sizes the table up front and sets a floor
//! that neither growing nor shrinking goes below.
//!
//! # Concurrency
//!
//! Readers load the current table through an `ArcSwap` and load control
//! bytes and slots with `Acquire`. The single writer (it must hold `&mut
//! MemWriter`, which lives in the store's writer lock) stores a slot, then
//! its control byte, both with `Release`, so a reader that sees a control
//! byte sees at least the slot stored with it:
//! - insert: an empty or deleted slot becomes the entry;
//! - replace: the slot's offset changes (both records stay valid);
//! - delete: slot and control byte become deleted, which probes skip (no
//!   entries move, so a concurrent probe never misses an entry that is
//!   present).
//!
//! Growing builds a new table and publishes it with one pointer swap;
//! readers still on the old one see the same contents (the writer does not
//! change it meanwhile), and it is freed when the last of them lets go.
//!
//! # Growing
//!
//! A rebuild of a table of a million entries takes 15-35 ms, most of it
//! touching the new table's memory for the first time; done by the writer,
//! the append that crosses the threshold waits that long, and a bulk load
//! spends 8-17 % of its time in rebuilds (BENCHMARKS.md, run 13). So from
//! `GROW_IN_BACKGROUND_FROM` slots on, a helper thread builds the next table
//! while the writer goes on using the current one:
//!
//! 1. At 70 % occupancy the writer starts the helper on a table sized for
//!    every entry the current one can take before it is full (80 %): 1.5x
//!    its size, as a rebuild at 80 % would make it. From then on the writer
//!    notes every change it makes to the current table in a journal
//!    (`Change`: an id's tag, and its entry's offset before and after).
//! 2. The helper copies every entry of the current table into the new one,
//!    reading each slot while the writer may be changing it. It reads the
//!    control byte, the slot, the high byte, then the slot and the control
//!    byte again, with `Acquire`, until the two reads agree; the writer
//!    stores high byte, slot and control byte in that order with `Release`.
//!    A slot's value never comes back once changed (each is a different
//!    record's offset), so agreeing reads saw one state of the entry, and
//!    the high byte read between them belongs to it (the writer only changes
//!    a high byte after the slot became deleted).
//! 3. When the helper is done (the writer checks at each change), or the
//!    current table reaches 80 % and the writer waits for it, the writer
//!    replays the journal on the new table and publishes it. The helper
//!    copied each slot at some moment after the journal began, so an entry
//!    that changed meanwhile may be in the new table in any of its states
//!    (any offset the journal names for it, or the one before), or not at
//!    all. The replay works out from the journal which offsets are still
//!    entries at its end, deletes every other offset it names from the new
//!    table (found by tag and exact offset; offsets are unique), and
//!    inserts the ones still entries where the copy lacks them.
//!
//! A rebuild the writer must make at once (a shrink after deletes,
//! `reserve`) first stops the helper and discards its table. While a table
//! grows, the next one (1.5x) exists beside it, as during any rebuild.

use super::slots::Slots;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const EMPTY: u64 = 0;
const DELETED: u64 = u64::MAX;
const OFFSET_BITS: u32 = 44;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
// Record offsets lie below the log's largest size; a record is longer than
// one byte, so none starts at OFFSET_MASK and no entry equals DELETED.
const _: () = assert!(crate::segment::MAX_LOG_LEN <= OFFSET_MASK + 1);
/// Control byte of an empty slot (what a zeroed table holds).
const C_EMPTY: u8 = 0;
/// Control byte of a deleted slot.
const C_DELETED: u8 = 1;
/// Bytes of RAM per slot (u64 slot + control byte + high tag byte).
pub const BYTES_PER_SLOT: u64 = 10;
/// The checkpoint's slot layout: a 48-bit offset and tag bits 0..16.
const CKPT_OFFSET_BITS: u32 = 48;
const MIN_SLOTS: u64 = 64;
/// Occupancy (entries + deleted marks) that triggers a rebuild: 4/5.
const MAX_LOAD_NUM: u64 = 4;
const MAX_LOAD_DEN: u64 = 5;
/// A table whose live entries fill less than 1/4 of it is rebuilt smaller
/// (at most 40 B per payload after mass deletes).
const SHRINK_BELOW_DEN: u64 = 4;
/// Live entries fill 8/15 (53%) of a freshly rebuilt table.
const REBUILD_NUM: u64 = 15;
const REBUILD_DEN: u64 = 8;
/// Occupancy from which a large table's successor is built by a helper
/// thread: 7/10 (see the module docs, Growing).
const GROW_FROM_NUM: u64 = 7;
const GROW_FROM_DEN: u64 = 10;
/// Tables of fewer slots are rebuilt by the writer (a millisecond or less).
const GROW_IN_BACKGROUND_FROM: u64 = 1 << 16;
/// Most changes a growth's journal reserves room for up front (24 MiB).
const JOURNAL_RESERVE_MAX: usize = 1 << 20;
/// The high bit of every byte: the control bytes of entries (`0x80 | …`).
const BYTES_HI: u64 = 0x8080_8080_8080_8080;

/// Slots of a table that `entries` fill to the rebuild target (53 %).
fn capacity_for(entries: u64) -> u64 {
    (entries.saturating_mul(REBUILD_NUM) / REBUILD_DEN + 1).max(MIN_SLOTS)
}

/// The 32-bit hash tag of an id. Part of the checkpoint format: changing it
/// needs a new format version.
#[inline]
pub fn tag_of(id: u128) -> u32 {
    #[inline]
    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
    let lo = id as u64;
    let hi = (id >> 64) as u64;
    (fmix(lo ^ fmix(hi ^ 0x9e37_79b9_7f4a_7c15)) >> 32) as u32
}

/// The control byte of an entry with this tag.
#[inline]
fn ctrl_of(tag: u32) -> u8 {
    0x80 | (tag & 0x7f) as u8
}

/// The tag bits a slot holds (7..27), in place.
#[inline]
fn slot_tag_bits(tag: u32) -> u64 {
    u64::from((tag >> 7) & 0xf_ffff) << OFFSET_BITS
}

/// The whole tag of an entry from its control byte, slot and high byte.
#[inline]
fn tag_from(ctrl: u8, slot: u64, hi: u8) -> u32 {
    u32::from(ctrl & 0x7f) | (((slot >> OFFSET_BITS) as u32) << 7) | (u32::from(hi) << 27)
}

/// An entry in the checkpoint's layout: the slot (48-bit offset, tag bits
/// 0..16) and tag bits 16..32.
#[inline]
fn to_ckpt(off: u64, tag: u32) -> (u64, u16) {
    (
        off | (u64::from(tag as u16) << CKPT_OFFSET_BITS),
        (tag >> 16) as u16,
    )
}

/// Offset and tag of an entry in the checkpoint's layout.
#[inline]
fn from_ckpt(slot: u64, hi: u16) -> (u64, u32) {
    let off = slot & ((1 << CKPT_OFFSET_BITS) - 1);
    (
        off,
        (u32::from(hi) << 16) | (slot >> CKPT_OFFSET_BITS) as u32,
    )
}

/// One immutable-size table of atomic slots and their control bytes.
pub struct Table {
    slots: Slots,
}

impl Table {
    fn new(cap: u64) -> Table {
        // EMPTY and C_EMPTY are 0
        Table {
            slots: Slots::zeroed(cap as usize),
        }
    }

    /// Stores an entry (or `DELETED`) at `i`: the slot, then its control
    /// byte (see the module docs, Concurrency).
    #[inline]
    fn set(&self, i: usize, v: u64, ctrl: u8, order: Ordering) {
        self.slots[i].store(v, order);
        self.slots.set_ctrl(i, ctrl, order);
    }

    /// Stores a new entry at `i`: its high byte, then the slot and the
    /// control byte (see the module docs, Growing).
    #[inline]
    fn set_entry(&self, i: usize, v: u64, tag: u32, order: Ordering) {
        self.slots.hi()[i].store((tag >> 27) as u8, order);
        self.set(i, v, ctrl_of(tag), order);
    }

    #[inline]
    fn cap(&self) -> u64 {
        self.slots.len() as u64
    }

    /// The slot value and whole tag of the entry at `j`, or `None` if it
    /// holds none; one state of it even while the writer changes it (see
    /// the module docs, Growing).
    fn read_entry(&self, j: usize) -> Option<(u64, u32)> {
        loop {
            let c = self.slots.ctrl(j, Ordering::Acquire);
            if c < 0x80 {
                return None;
            }
            let v = self.slots[j].load(Ordering::Acquire);
            let h = self.slots.hi()[j].load(Ordering::Acquire);
            if v != EMPTY
                && v != DELETED
                && self.slots[j].load(Ordering::Acquire) == v
                && self.slots.ctrl(j, Ordering::Acquire) == c
            {
                return Some((v, tag_from(c, v, h)));
            }
        }
    }

    /// Asks the CPU to fetch the lines a lookup of `tag` reads first: its
    /// home control word and slot.
    #[inline]
    fn prefetch_home(&self, tag: u32) -> usize {
        let i = self.home(tag);
        crate::sys::prefetch_line(&self.slots.ctrl_words()[i / 8]);
        crate::sys::prefetch_line(&self.slots[i]);
        i
    }

    /// Puts an entry into the first empty or deleted slot from its home,
    /// for a table nobody reads yet; true if that slot was empty.
    fn place(&self, v: u64, tag: u32) -> bool {
        let mut i = self.home(tag);
        loop {
            let c = self.slots.ctrl(i, Ordering::Relaxed);
            if c == C_EMPTY || c == C_DELETED {
                self.set_entry(i, v, tag, Ordering::Relaxed);
                return c == C_EMPTY;
            }
            i = self.next(i);
        }
    }

    /// Copies the entries of control words `words` of `self` into `new`
    /// (empty at first, read by nobody yet); returns how many. `self` may
    /// be changing meanwhile (see `read_entry`).
    fn copy_into(&self, new: &Table, words: std::ops::Range<usize>) -> u64 {
        let mut copied = 0;
        let ctrl = self.slots.ctrl_words();
        for w in words {
            let mut entries = ctrl[w].load(Ordering::Acquire) & BYTES_HI;
            while entries != 0 {
                let j = w * 8 + (entries.trailing_zeros() / 8) as usize;
                entries &= entries - 1;
                if let Some((v, tag)) = self.read_entry(j) {
                    new.place(v, tag);
                    copied += 1;
                }
            }
        }
        copied
    }

    /// A new table of `cap` slots with every entry of `self`, or `None`
    /// if `stop` was set first.
    fn grown(&self, cap: u64, stop: &AtomicBool) -> Option<(Table, u64)> {
        const STEP: usize = 4096; // control words between looks at `stop`
        let new = Table::new(cap);
        let words = self.slots.ctrl_words().len();
        let mut entries = 0;
        for start in (0..words).step_by(STEP) {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            entries += self.copy_into(&new, start..(start + STEP).min(words));
        }
        Some((new, entries))
    }

    /// Brings a grown table nobody reads yet up to date with the changes
    /// journalled while it was copied (see the module docs, Growing);
    /// returns how many empty slots that took.
    fn replay(&self, journal: &[Change]) -> u64 {
        // While a table is filled (the common case) every change is an
        // insert, and each one stays.
        if journal.iter().all(|ch| ch.old == 0 && ch.new != 0) {
            return self.insert_missing(journal, |ch| (ch.new, ch.tag));
        }
        // The entries the changes leave: offset -> tag.
        let mut last = std::collections::HashMap::with_capacity(journal.len());
        for ch in journal {
            last.remove(&ch.old);
            if ch.new != 0 {
                last.insert(ch.new, ch.tag);
            }
        }
        // Any other state the copy may hold of an entry that changed goes.
        for ch in journal {
            for o in [ch.old, ch.new] {
                if o != 0 && !last.contains_key(&o) {
                    if let Some((i, _)) = self.find(ch.tag, |at| at == o) {
                        self.set(i, DELETED, C_DELETED, Ordering::Relaxed);
                    }
                }
            }
        }
        let last: Vec<(u64, u32)> = last.into_iter().collect();
        self.insert_missing(&last, |&entry| entry)
    }

    /// Inserts the entry `entry(item)` (offset, tag) of each of `items`
    /// where the table lacks it, fetching home lines a few items ahead (the
    /// table is larger than the caches, and the lookups are independent).
    /// Returns how many empty slots that took.
    fn insert_missing<T>(&self, items: &[T], entry: impl Fn(&T) -> (u64, u32)) -> u64 {
        const AHEAD: usize = 16;
        let mut took = 0;
        for (k, item) in items.iter().enumerate() {
            if let Some(ahead) = items.get(k + AHEAD) {
                self.prefetch_home(entry(ahead).1);
            }
            let (o, tag) = entry(item);
            if self.find(tag, |at| at == o).is_none() {
                took += u64::from(self.place(pack(o, tag), tag));
            }
        }
        took
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.cap()) >> 32) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// Finds the slot of `tag` whose record `confirm` accepts. Scans the
    /// control bytes a word (eight) at a time: the bytes equal to the tag's
    /// control byte before the first empty one are the candidates.
    #[inline]
    fn find(&self, tag: u32, mut confirm: impl FnMut(u64) -> bool) -> Option<(usize, u64)> {
        let want = slot_tag_bits(tag);
        let want_ctrl = u64::from(ctrl_of(tag)) * BYTES_LO;
        let words = self.slots.ctrl_words();
        let cap = self.slots.len();
        let i = self.home(tag);
        // A hit reads the slot after its control byte: fetch both at once.
        crate::sys::prefetch_line(&self.slots[i]);
        let mut w = i / 8;
        // the bytes of word `w` that are this probe's: from `i` on at first
        let mut ours = !0u64 << (8 * (i % 8));
        loop {
            if w == words.len() - 1 && !cap.is_multiple_of(8) {
                // past the last slot: neither empty nor a match
                ours &= (1 << (8 * (cap % 8))) - 1;
            }
            let x = words[w].load(Ordering::Acquire);
            let empty = zero_bytes(x) & ours;
            let mut hits = zero_bytes(x ^ want_ctrl) & ours;
            if empty != 0 {
                hits &= (empty & empty.wrapping_neg()) - 1; // before the first empty
            }
            while hits != 0 {
                let k = w * 8 + (hits.trailing_zeros() / 8) as usize;
                hits &= hits - 1;
                let v = self.slots[k].load(Ordering::Acquire);
                if v != DELETED && v & !OFFSET_MASK == want && confirm(v & OFFSET_MASK) {
                    return Some((k, v & OFFSET_MASK));
                }
            }
            if empty != 0 {
                return None;
            }
            w = if w + 1 == words.len() { 0 } else { w + 1 };
            ours = !0;
        }
    }
}

/// 0x01 in every byte of a word.
const BYTES_LO: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `x` that is zero, and no other bit. Exact
/// (no carries between bytes: each byte's low 7 bits are added apart from
/// its high bit).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    !((x & LOW7).wrapping_add(LOW7) | x | LOW7)
}

/// Writer-only state: the high tag bits and occupancy. Only reachable through
/// the store's writer lock.
pub struct MemWriter {
    /// The table readers see (only the writer replaces it, so holding it
    /// here spares the writer the shared pointer load on every update).
    table: Arc<Table>,
    /// Entries plus deleted marks (what probes walk over).
    occupied: u64,
    /// Entries.
    live: u64,
    /// Rebuilds never make the table smaller than this (`reserve`).
    min_cap: u64,
    /// The next table, while a helper builds it.
    growth: Option<Growth>,
    /// Tables from this many slots grow in the background (cleared if a
    /// helper thread cannot be started).
    grow_in_background_from: u64,
}

/// A successor of the current table being built by a helper thread (see
/// the module docs, Growing). Dropping it stops the helper and waits for
/// it.
struct Growth {
    /// Slots of the table being built.
    cap: u64,
    helper: Option<JoinHandle<Option<(Table, u64)>>>,
    stop: Arc<AtomicBool>,
    /// Every change made to the current table since the helper started.
    journal: Vec<Change>,
}

/// A change to the entry of `tag`: from offset `old` to offset `new` (0:
/// no entry, before or after).
#[derive(Clone, Copy, Debug)]
struct Change {
    tag: u32,
    old: u64,
    new: u64,
}

impl Growth {
    fn finished(&self) -> bool {
        self.helper.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Growth {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.helper.take() {
            let _ = h.join();
        }
    }
}

impl MemWriter {
    fn new(table: Arc<Table>, occupied: u64, live: u64) -> MemWriter {
        MemWriter {
            table,
            occupied,
            live,
            min_cap: MIN_SLOTS,
            growth: None,
            grow_in_background_from: GROW_IN_BACKGROUND_FROM,
        }
    }

    /// Whether tables from `GROW_IN_BACKGROUND_FROM` slots grow in a helper
    /// thread (else the writer rebuilds them when full).
    pub fn set_growth_thread(&mut self, enabled: bool) {
        self.grow_in_background_from = if enabled {
            GROW_IN_BACKGROUND_FROM
        } else {
            self.growth = None; // (none yet at open, where this is called)
            u64::MAX
        };
    }

    /// RAM of the table being grown beside the current one (0 if none).
    pub fn growing_bytes(&self) -> u64 {
        self.growth.as_ref().map_or(0, |g| g.cap * BYTES_PER_SLOT)
    }

    /// Notes a change for the table being grown, if any.
    #[inline]
    fn journal(&mut self, tag: u32, old: u64, new: u64) {
        if let Some(g) = &mut self.growth {
            g.journal.push(Change { tag, old, new });
        }
    }
}

/// A copy of a table's slots, control words and high tag bytes (see
/// `MemIndex::raw_copy`).
pub struct RawTable(Slots);

impl RawTable {
    /// The checkpoint's layout (see `MemIndex::snapshot`).
    pub fn to_checkpoint(&self) -> (Vec<u64>, Vec<u16>) {
        let t = &self.0;
        let mut slots = Vec::with_capacity(t.len());
        let mut hi = Vec::with_capacity(t.len());
        for (i, (s, h)) in t.iter().zip(t.hi()).enumerate() {
            let (v, h) = (s.load(Ordering::Relaxed), h.load(Ordering::Relaxed));
            if v == EMPTY || v == DELETED {
                slots.push(v);
                hi.push(0);
                continue;
            }
            let c = t.ctrl(i, Ordering::Relaxed);
            let (slot, high) = to_ckpt(v & OFFSET_MASK, tag_from(c, v, h));
            slots.push(slot);
            hi.push(high);
        }
        (slots, hi)
    }
}

/// The in-memory index.
pub struct MemIndex {
    table: ArcSwap<Table>,
}

fn pack(off: u64, tag: u32) -> u64 {
    debug_assert!(off > 0 && off < OFFSET_MASK);
    off | slot_tag_bits(tag)
}

impl MemIndex {
    /// An empty index sized for about `expected` entries.
    pub fn new(expected: u64) -> (MemIndex, MemWriter) {
        let cap = capacity_for(expected);
        let table = Arc::new(Table::new(cap));
        let idx = MemIndex {
            table: ArcSwap::new(table.clone()),
        };
        (idx, MemWriter::new(table, 0, 0))
    }

    /// Looks up the record offset of an id; `confirm(offset)` checks that the
    /// record at `offset` really has this id.
    #[inline]
    pub fn get(&self, id: u128, confirm: impl FnMut(u64) -> bool) -> Option<u64> {
        self.table
            .load()
            .find(tag_of(id), confirm)
            .map(|(_, off)| off)
    }

    /// Prefetches the home slot of `id` for a reader.
    #[inline]
    pub fn prefetch_lookup(&self, id: u128) {
        self.table.load().prefetch_home(tag_of(id));
    }

    /// Calls `candidate(offset)` for the entries whose tag matches `id`'s,
    /// without confirming them (a prefetch hint for batched reads).
    pub fn candidates(&self, id: u128, mut candidate: impl FnMut(u64)) {
        let _ = self.table.load().find(tag_of(id), |off| {
            candidate(off);
            false
        });
    }

    /// Inserts or replaces `id` → `off`; returns the previous offset.
    pub fn upsert(
        &self,
        w: &mut MemWriter,
        id: u128,
        off: u64,
        confirm: impl FnMut(u64) -> bool,
    ) -> Option<u64> {
        let tag = tag_of(id);
        let t = &w.table;
        if let Some((i, old)) = t.find(tag, confirm) {
            t.set(i, pack(off, tag), ctrl_of(tag), Ordering::Release);
            w.journal(tag, old, off);
            self.settle(w, false);
            return Some(old);
        }
        // Absent: take the first deleted or empty slot of the probe sequence.
        // The control bytes say which (only this writer changes them), so
        // the slot's line is only written, never waited for.
        let mut i = t.home(tag);
        loop {
            let c = t.slots.ctrl(i, Ordering::Relaxed);
            if c == C_EMPTY || c == C_DELETED {
                if c == C_EMPTY {
                    w.occupied += 1;
                }
                w.live += 1;
                t.set_entry(i, pack(off, tag), tag, Ordering::Release);
                break;
            }
            i = t.next(i);
        }
        w.journal(tag, 0, off);
        self.grow_if_due(w);
        None
    }

    /// After an insert: finishes, starts or makes the growth that is due.
    fn grow_if_due(&self, w: &mut MemWriter) {
        let cap = w.table.cap();
        let full = w.occupied * MAX_LOAD_DEN > cap * MAX_LOAD_NUM;
        if let Some(g) = &w.growth {
            if full || g.finished() {
                self.finish_growth(w);
            }
        } else if full {
            self.rebuild(w);
        } else if cap >= w.grow_in_background_from
            && w.occupied * GROW_FROM_DEN > cap * GROW_FROM_NUM
        {
            self.start_growth(w);
        }
    }

    /// Starts a helper thread on the next table (see the module docs,
    /// Growing). If no thread can be started, this table and later ones
    /// are rebuilt by the writer.
    fn start_growth(&self, w: &mut MemWriter) {
        let cap = w.table.cap();
        // every entry the table can take before it is full
        let headroom = (cap * MAX_LOAD_NUM / MAX_LOAD_DEN).saturating_sub(w.occupied);
        let new_cap = capacity_for(w.live + headroom).max(w.min_cap);
        let (old, stop) = (w.table.clone(), Arc::new(AtomicBool::new(false)));
        let stop_seen = stop.clone();
        let helper = std::thread::Builder::new()
            .name("payloadstore-index-grow".into())
            .spawn(move || old.grown(new_cap, &stop_seen));
        match helper {
            Ok(h) => {
                w.growth = Some(Growth {
                    cap: new_cap,
                    helper: Some(h),
                    stop,
                    // room for the inserts that fill the table (the usual
                    // changes while a table grows) without doubling past
                    // them, up to 24 MiB reserved (a huge table's journal
                    // grows beyond that as it needs)
                    journal: Vec::with_capacity((headroom as usize + 1).min(JOURNAL_RESERVE_MAX)),
                })
            }
            Err(_) => w.grow_in_background_from = u64::MAX,
        }
    }

    /// Publishes the table a helper has finished growing, if there is one
    /// (with `wait`, also one still being grown, once it is done):
    /// installing it otherwise waits for the writer's next change, and
    /// until then both tables take memory.
    pub fn settle(&self, w: &mut MemWriter, wait: bool) {
        if w.growth.as_ref().is_some_and(|g| wait || g.finished()) {
            self.finish_growth(w);
        }
    }

    /// Waits for the helper, replays the journal on its table and
    /// publishes it. A helper that failed is replaced by a rebuild.
    fn finish_growth(&self, w: &mut MemWriter) {
        let Some(mut g) = w.growth.take() else {
            return;
        };
        match g.helper.take().and_then(|h| h.join().ok()).flatten() {
            Some((table, entries)) => {
                let journal = std::mem::take(&mut g.journal);
                self.install(w, table, entries, journal);
            }
            None => self.rebuild(w),
        }
    }

    /// Publishes a grown table after replaying `journal` on it.
    fn install(&self, w: &mut MemWriter, table: Table, entries: u64, journal: Vec<Change>) {
        let occupied = entries + table.replay(&journal);
        debug_assert_eq!(
            table
                .slots
                .iter()
                .filter(|s| !matches!(s.load(Ordering::Relaxed), EMPTY | DELETED))
                .count() as u64,
            w.live
        );
        w.occupied = occupied;
        w.table = Arc::new(table);
        // The swap publishes every slot stored above (ArcSwap stores with release).
        self.table.store(w.table.clone());
    }

    /// RAM a table sized for `expected` entries takes (see `reserve`).
    pub fn bytes_for(expected: u64) -> u64 {
        capacity_for(expected).saturating_mul(BYTES_PER_SLOT)
    }

    /// Makes room for `expected` entries at once: the table is rebuilt now
    /// (if smaller) to the size it would grow to by then, and later
    /// rebuilds (growing past `expected`, or shrinking after deletes) never
    /// make it smaller than that. Loading up to `expected` entries then
    /// rebuilds nothing.
    pub fn reserve(&self, w: &mut MemWriter, expected: u64) {
        let cap = capacity_for(expected);
        w.min_cap = w.min_cap.max(cap);
        if w.table.cap() < cap {
            self.rebuild(w);
        }
    }

    /// Asks the CPU to fetch the lines an update of `id` touches first (its
    /// home slot and high tag bits); a hint for batches.
    #[inline]
    pub fn prefetch(&self, w: &MemWriter, id: u128) {
        let i = w.table.prefetch_home(tag_of(id));
        crate::sys::prefetch_ptr((&w.table.slots.hi()[i] as *const AtomicU8).cast());
    }

    /// Removes `id`; returns its offset if it was present.
    pub fn remove(
        &self,
        w: &mut MemWriter,
        id: u128,
        confirm: impl FnMut(u64) -> bool,
    ) -> Option<u64> {
        let t = &w.table;
        let tag = tag_of(id);
        let (i, old) = t.find(tag, confirm)?;
        t.set(i, DELETED, C_DELETED, Ordering::Release);
        w.live -= 1;
        w.journal(tag, old, 0);
        // Give memory back after mass deletes: below 1/4 full, rebuild to
        // the 53 % of a fresh table (so the next shrink is far away too).
        if w.live * SHRINK_BELOW_DEN < w.table.cap()
            && w.table.cap() > (MIN_SLOTS * SHRINK_BELOW_DEN).max(w.min_cap)
        {
            self.rebuild(w);
        } else {
            self.settle(w, false);
        }
        Some(old)
    }

    /// Rebuilds the table for the live entries (dropping deleted marks), at
    /// once. A table being grown in the background is discarded.
    fn rebuild(&self, w: &mut MemWriter) {
        w.growth = None;
        let cap = capacity_for(w.live).max(w.min_cap);
        let (new, entries) = w
            .table
            .grown(cap, &AtomicBool::new(false))
            .expect("never stopped");
        // `live` is kept by every update
        debug_assert_eq!(entries, w.live);
        self.install(w, new, entries, Vec::new());
    }

    /// RAM the index uses now.
    pub fn memory_bytes(&self) -> u64 {
        self.table.load().cap() * BYTES_PER_SLOT
    }

    /// Room for a copy of the current table, its pages mapped in: taken
    /// before the writer lock, so that `raw_copy` under it only copies.
    pub fn copy_buffer(&self) -> RawTable {
        let s = Slots::zeroed(self.table.load().slots.len());
        s.touch();
        RawTable(s)
    }

    /// A plain copy of the table's arrays, cheap enough to take under the
    /// writer lock (about a memory copy into `buf`, when it still fits the
    /// table); `RawTable::to_checkpoint` turns it into the checkpoint's
    /// layout afterwards. Its memory is mapped for a large table, so that
    /// freeing it returns it to the system (heap copies stayed in the
    /// allocator: +3 B of RSS per payload after `save_index`).
    pub fn raw_copy(&self, w: &MemWriter, buf: RawTable) -> RawTable {
        let src = &w.table.slots;
        let buf = if buf.0.len() == src.len() {
            buf
        } else {
            RawTable(Slots::zeroed(src.len())) // the table grew meanwhile
        };
        buf.0.copy_from(src);
        buf
    }

    /// The table in the checkpoint's layout: every slot as the 48-bit
    /// offset plus the tag's low 16 bits, and the tag's high 16 bits beside
    /// (`from_snapshot` reads it back).
    pub fn snapshot(&self, w: &MemWriter) -> (Vec<u64>, Vec<u16>) {
        self.raw_copy(w, RawTable(Slots::zeroed(0))).to_checkpoint()
    }

    /// Rebuilds an index from checkpointed slots (in the checkpoint's
    /// layout, see `snapshot`). `None` if the arrays are inconsistent
    /// (lengths differ, too full, an offset out of range).
    pub fn from_snapshot(slots: Vec<u64>, hi16: Vec<u16>) -> Option<(MemIndex, MemWriter)> {
        if slots.len() != hi16.len() || (slots.len() as u64) < MIN_SLOTS {
            return None;
        }
        let (occupied, deleted) = slots.iter().fold((0, 0), |(o, d), &v| {
            (o + u64::from(v != EMPTY), d + u64::from(v == DELETED))
        });
        let live = occupied - deleted;
        if occupied * MAX_LOAD_DEN > slots.len() as u64 * MAX_LOAD_NUM {
            return None;
        }
        let n = slots.len();
        let table = Table::new(n as u64);
        // `Table::set`'s stores, on slices taken once and a control word
        // stored once per eight slots: per slot through `set` this loop took
        // 225-290 ms instead of 205 for 10M entries.
        let (dst, ctrl) = (&table.slots[..n], table.slots.ctrl_words());
        let (hi16, hi_bytes) = (&hi16[..n], &table.slots.hi()[..n]);
        let mut word = 0u64;
        for i in 0..n {
            if i % 8 == 0 && i > 0 {
                ctrl[i / 8 - 1].store(std::mem::take(&mut word), Ordering::Relaxed);
            }
            let (slot, control) = match slots[i] {
                EMPTY => continue,
                DELETED => (DELETED, C_DELETED),
                v => {
                    let (off, tag) = from_ckpt(v, hi16[i]);
                    if off == 0 || off > OFFSET_MASK {
                        return None;
                    }
                    hi_bytes[i].store((tag >> 27) as u8, Ordering::Relaxed);
                    (pack(off, tag), ctrl_of(tag))
                }
            };
            dst[i].store(slot, Ordering::Relaxed);
            word |= u64::from(control) << (8 * (i % 8));
        }
        ctrl[(n - 1) / 8].store(word, Ordering::Relaxed);
        let table = Arc::new(table);
        let idx = MemIndex {
            table: ArcSwap::new(table.clone()),
        };
        Some((idx, MemWriter::new(table, occupied, live)))
    }

    /// Calls `f(offset)` for every live entry.
    pub fn for_each_offset(&self, mut f: impl FnMut(u64)) {
        for s in self.table.load().slots.iter() {
            let v = s.load(Ordering::Acquire);
            if v != EMPTY && v != DELETED {
                f(v & OFFSET_MASK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An index of ids `id_of(0..n)` at fake offsets 1000 + 8·k; `confirm`
    /// looks the id up in the returned side table. Every insert is new.
    fn filled(n: u128, id_of: impl Fn(u128) -> u128) -> (MemIndex, MemWriter, HashMap<u64, u128>) {
        let (idx, mut w) = MemIndex::new(0);
        let mut at: HashMap<u64, u128> = HashMap::new();
        for k in 0..n {
            let (id, off) = (id_of(k), 1000 + k as u64 * 8);
            at.insert(off, id);
            let prev = idx.upsert(&mut w, id, off, |o| at[&o] == id);
            assert!(prev.is_none());
        }
        (idx, w, at)
    }

    /// Offsets are fake: `confirm` looks the id up in a side table.
    #[test]
    fn upsert_get_remove_across_rebuilds() {
        let n = 20_000u128;
        let (idx, mut w, mut at) = filled(n, |k| k * 7919);
        assert!(
            idx.memory_bytes() <= n as u64 * 19,
            "{} bytes for {n}",
            idx.memory_bytes()
        );
        for id in 0..n {
            assert_eq!(
                idx.get(id * 7919, |o| at[&o] == id * 7919),
                Some(1000 + id as u64 * 8)
            );
        }
        assert_eq!(idx.get(1, |o| at[&o] == 1), None);
        // replace, remove
        at.insert(999_999_992, 7919);
        assert_eq!(
            idx.upsert(&mut w, 7919, 999_999_992, |o| at[&o] == 7919),
            Some(1008)
        );
        assert_eq!(idx.get(7919, |o| at[&o] == 7919), Some(999_999_992));
        assert_eq!(idx.remove(&mut w, 0, |o| at[&o] == 0), Some(1000));
        assert_eq!(idx.get(0, |o| at[&o] == 0), None);
        let (s, h) = idx.snapshot(&w);
        let (idx2, _) = MemIndex::from_snapshot(s, h).unwrap();
        assert_eq!(idx2.get(7919 * 5, |o| at[&o] == 7919 * 5), Some(1040));
        let mut count = 0;
        idx2.for_each_offset(|_| count += 1);
        assert_eq!(count, n as usize - 1);
    }

    #[test]
    fn the_tag_survives_its_split_over_control_byte_slot_and_high_byte() {
        let mut rng = crate::test_rng::XorShift(0x1234_5678_9abc_def1);
        for _ in 0..100_000 {
            let x = rng.next();
            let tag = x as u32;
            let off = 1 + (x >> 32) % OFFSET_MASK.min(u64::MAX >> 32);
            let v = pack(off, tag);
            assert_eq!(v & OFFSET_MASK, off);
            assert!(v != EMPTY && v != DELETED);
            assert!(ctrl_of(tag) >= 0x80);
            assert_eq!(tag_from(ctrl_of(tag), v, (tag >> 27) as u8), tag);
        }
    }

    /// Checkpoints keep their old layout (48-bit offset | tag bits 0..16,
    /// then tag bits 16..32), whatever the table holds in RAM.
    #[test]
    fn snapshots_keep_the_checkpoint_layout() {
        let n = 3000u128;
        let (idx, mut w, at) = filled(n, |k| k * 104_729 + 3);
        idx.remove(&mut w, 3, |o| at[&o] == 3).unwrap();
        let (slots, hi) = idx.snapshot(&w);
        let mut seen = 0;
        for (&v, &h) in slots.iter().zip(&hi) {
            if v == EMPTY || v == DELETED {
                continue;
            }
            let off = v & ((1 << 48) - 1);
            let id = at[&off];
            let tag = tag_of(id);
            assert_eq!(v >> 48, u64::from(tag & 0xffff), "id {id}");
            assert_eq!(u32::from(h), tag >> 16, "id {id}");
            seen += 1;
        }
        assert_eq!(seen, n - 1);
        assert_eq!(slots.iter().filter(|&&v| v == DELETED).count(), 1);
        let (idx2, mut w2) = MemIndex::from_snapshot(slots.clone(), hi.clone()).unwrap();
        for k in 1..n {
            let id = k * 104_729 + 3;
            assert_eq!(idx2.get(id, |o| at[&o] == id), Some(1000 + k as u64 * 8));
        }
        assert_eq!(idx2.get(3, |o| at.get(&o) == Some(&3)), None);
        // the loaded table grows like a fresh one (rebuilds use the tags)
        let mut at = at;
        for k in n..4 * n {
            let (id, off) = (k * 104_729 + 3, 1000 + k as u64 * 8);
            at.insert(off, id);
            assert_eq!(idx2.upsert(&mut w2, id, off, |o| at[&o] == id), None);
        }
        for k in 1..4 * n {
            let id = k * 104_729 + 3;
            assert_eq!(idx2.get(id, |o| at[&o] == id), Some(1000 + k as u64 * 8));
        }
        // an offset the RAM layout cannot hold is refused
        let mut bad = slots;
        let i = bad
            .iter()
            .position(|&v| v != EMPTY && v != DELETED)
            .unwrap();
        bad[i] = (bad[i] & !((1 << 48) - 1)) | (1 << 46);
        assert!(MemIndex::from_snapshot(bad, hi).is_none());
    }

    /// The word-at-a-time scan: probe runs that cross the end of the table
    /// (whose last control word is partly past the last slot) and wrap to
    /// its start, with deleted slots inside them, for capacities at every
    /// remainder modulo 8.
    #[test]
    fn probes_wrap_around_the_end_of_the_control_words() {
        for expected in 34..=40 {
            let (idx, mut w) = MemIndex::new(expected);
            let cap = w.table.cap() as usize;
            // ids whose home is one of the last three slots, and a few more
            // held back to look up as misses
            let mut near_end = (1u128..)
                .filter(|&id| w.table.home(tag_of(id)) >= cap - 3)
                .take(14);
            let ids: Vec<u128> = near_end.by_ref().take(10).collect();
            let absent: Vec<u128> = near_end.collect();
            let at: HashMap<u64, u128> = ids
                .iter()
                .enumerate()
                .map(|(k, &id)| (1000 + 8 * k as u64, id))
                .collect();
            let at = &at;
            let confirm = |id: u128| move |o: u64| at.get(&o) == Some(&id);
            for (k, &id) in ids.iter().enumerate() {
                assert_eq!(
                    idx.upsert(&mut w, id, 1000 + 8 * k as u64, confirm(id)),
                    None
                );
            }
            assert_eq!(w.table.cap() as usize, cap, "no rebuild meanwhile");
            // the run went past the last slot: some entries sit at the start
            assert!((0..4).any(|i| w.table.slots.ctrl(i, Ordering::Relaxed) >= 0x80));
            for k in [1, 4, 8] {
                assert!(idx.remove(&mut w, ids[k], confirm(ids[k])).is_some());
            }
            for (k, &id) in ids.iter().enumerate() {
                let want = (![1, 4, 8].contains(&k)).then_some(1000 + 8 * k as u64);
                assert_eq!(idx.get(id, confirm(id)), want, "cap {cap}, id {id}");
            }
            for &id in &absent {
                assert_eq!(idx.get(id, |_| true), None, "cap {cap}, absent {id}");
            }
        }
    }

    #[test]
    fn zero_bytes_marks_exactly_the_zero_bytes() {
        let mut rng = crate::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..100_000 {
            let x = rng.next();
            // plenty of zero and 0x01 bytes (the pattern carries get wrong)
            let v = x & 0x0101_ff00_01ff_0001 & x.rotate_left(17);
            let want = (0..8)
                .filter(|b| (v >> (8 * b)) as u8 == 0)
                .fold(0u64, |m, b| m | 0x80 << (8 * b));
            assert_eq!(zero_bytes(v), want, "{v:#018x}");
        }
    }

    /// One random change through the writer, mirrored in `model` (id →
    /// offset) and `at` (offset → id); returns it as the journal has it.
    /// An index's expected state under random changes: the live entries,
    /// the id each offset was written for, and the next offset to write.
    struct Churn {
        rng: crate::test_rng::XorShift,
        model: HashMap<u128, u64>,
        at: HashMap<u64, u128>,
        next_off: u64,
    }

    impl Churn {
        fn new(seed: u64) -> Churn {
            Churn {
                rng: crate::test_rng::XorShift(seed),
                model: HashMap::new(),
                at: HashMap::new(),
                next_off: 1000,
            }
        }

        /// Forgets every entry (the random sequence goes on).
        fn clear(&mut self) {
            self.model.clear();
            self.at.clear();
            self.next_off = 1000;
        }

        /// Deletes (a third of the time) or upserts a random id below
        /// `ids`, checking what the index reports, and returns the change.
        fn change(&mut self, idx: &MemIndex, w: &mut MemWriter, ids: u128) -> Change {
            let id = u128::from(self.rng.next()) % ids;
            let tag = tag_of(id);
            let old = self.model.get(&id).copied().unwrap_or(0);
            let at = &mut self.at;
            if old != 0 && self.rng.next().is_multiple_of(3) {
                assert_eq!(idx.remove(w, id, |o| at.get(&o) == Some(&id)), Some(old));
                self.model.remove(&id);
                return Change { tag, old, new: 0 };
            }
            self.next_off += 8;
            let new = self.next_off;
            at.insert(new, id);
            let prev = idx.upsert(w, id, new, |o| at.get(&o) == Some(&id));
            assert_eq!(prev.unwrap_or(0), old);
            self.model.insert(id, new);
            Change { tag, old, new }
        }

        /// The index holds exactly the expected entries among ids below `ids`.
        fn assert_holds(&self, idx: &MemIndex, ids: u128) {
            let at = &self.at;
            for id in 0..ids {
                assert_eq!(
                    idx.get(id, |o| at.get(&o) == Some(&id)),
                    self.model.get(&id).copied(),
                    "id {id}"
                );
            }
            let mut count = 0;
            idx.for_each_offset(|_| count += 1);
            assert_eq!(count, self.model.len());
        }
    }

    /// Growing in the background, with every interleaving of the helper's
    /// copy and the writer's changes taken apart: the copy runs a few
    /// control words at a time between batches of inserts, replacements,
    /// deletes and inserts into deleted slots, then the journal is replayed
    /// (`install`). The result must hold exactly the current entries, with
    /// the counts right for further growth.
    #[test]
    fn a_copy_interleaved_with_changes_ends_in_the_current_state() {
        let mut c = Churn::new(0x005e_ed0f_9a0e);
        for round in 0..20 {
            let ids = 3000u128;
            let (idx, mut w) = MemIndex::new(4000);
            idx.reserve(&mut w, 4000); // no shrinking either
            w.grow_in_background_from = u64::MAX; // the test is the helper
            c.clear();
            for _ in 0..2000 {
                c.change(&idx, &mut w, ids);
            }
            let old = w.table.clone();
            let new = Table::new(capacity_for(4000) * 3 / 2);
            let words = old.slots.ctrl_words().len();
            let (mut copied, mut journal, mut pos) = (0, Vec::new(), 0);
            while pos < words {
                let step = 1 + (c.rng.next() % 40) as usize;
                copied += old.copy_into(&new, pos..(pos + step).min(words));
                pos += step;
                for _ in 0..c.rng.next() % (5 + round) {
                    let ch = c.change(&idx, &mut w, ids);
                    journal.push(ch);
                }
            }
            assert_eq!(w.table.cap(), old.cap(), "no rebuild meanwhile");
            idx.install(&mut w, new, copied, journal);
            c.assert_holds(&idx, ids);
            // and it goes on working: more changes, growing again
            for _ in 0..6000 {
                c.change(&idx, &mut w, 8000);
            }
            c.assert_holds(&idx, 8000);
        }
    }

    /// The real helper thread: a table grown in the background many times
    /// under inserts, replacements and deletes, while a reader looks up
    /// ids that stay present throughout and must always find them.
    #[test]
    fn tables_grown_by_the_helper_hold_every_entry() {
        use std::sync::atomic::AtomicBool;
        let (idx, mut w) = MemIndex::new(0);
        w.grow_in_background_from = 256;
        let mut c = Churn::new(0x0dd_ba11);
        // ids 1 << 64 .. + 500 are inserted first and never changed
        let stable: Vec<(u128, u64)> = (0..500u128)
            .map(|k| ((1 << 64) + k, (1 << 40) + k as u64 * 8))
            .collect();
        let stable_at: HashMap<u64, u128> = stable.iter().map(|&(id, o)| (o, id)).collect();
        for &(id, off) in &stable {
            assert_eq!(
                idx.upsert(&mut w, id, off, |o| stable_at.get(&o) == Some(&id)),
                None
            );
        }
        let done = AtomicBool::new(false);
        // ends the reader however the writer's loop ends (a failed assertion
        // included)
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let mut grew = 0;
        std::thread::scope(|s| {
            let _done = Done(&done);
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    for &(id, off) in &stable {
                        assert_eq!(idx.get(id, |o| o == off), Some(off), "stable id {id}");
                    }
                }
            });
            let mut cap = w.table.cap();
            for k in 0..200_000u64 {
                // ids grow with k, so the table keeps growing
                let ids = 1000 + u128::from(k / 2);
                let ch = c.change(&idx, &mut w, ids);
                assert!(ch.new != 0 || ch.old != 0);
                if w.table.cap() != cap {
                    grew += 1;
                    cap = w.table.cap();
                }
            }
        });
        assert!(grew >= 5, "grew {grew} times");
        for &(id, off) in &stable {
            c.model.insert(id, off);
            c.at.insert(off, id);
        }
        // ids below 101_000 were used; the stable ones are counted too
        c.assert_holds(&idx, 101_000);
    }

    /// A growth whose helper is done is published by `settle`, with no
    /// further change to trigger it (what `sync`, `stats` and `save_index`
    /// call, so that an idle store does not keep two tables).
    #[test]
    fn settle_publishes_a_finished_growth() {
        let (idx, mut w) = MemIndex::new(0);
        w.grow_in_background_from = 256;
        // offset -> id of every id inserted (ids 1, 2, …)
        let mut at = HashMap::new();
        let insert_next = |w: &mut MemWriter, at: &mut HashMap<u64, u128>| {
            let id = at.len() as u128 + 1;
            let off = 1000 + 8 * id as u64;
            at.insert(off, id);
            idx.upsert(w, id, off, |o| at.get(&o) == Some(&id));
        };
        let holds_all = |at: &HashMap<u64, u128>| {
            for (&off, &id) in at {
                assert_eq!(idx.get(id, |o| at.get(&o) == Some(&id)), Some(off));
            }
        };
        while w.growth.is_none() {
            insert_next(&mut w, &mut at);
        }
        let before = idx.memory_bytes();
        while !w.growth.as_ref().unwrap().finished() {
            std::thread::yield_now();
        }
        idx.settle(&mut w, false);
        assert!(w.growth.is_none());
        assert!(
            idx.memory_bytes() > before,
            "{} -> {}",
            before,
            idx.memory_bytes()
        );
        holds_all(&at);
        // and nothing to do when no growth is under way
        idx.settle(&mut w, true);
        assert!(w.growth.is_none());
        // with `wait`, a growth still under way is waited for
        let cap = w.table.cap();
        while w.table.cap() == cap {
            insert_next(&mut w, &mut at);
            if w.growth.is_some() {
                idx.settle(&mut w, true);
                assert!(w.growth.is_none());
            }
        }
        holds_all(&at);
    }

    /// Mass deletes give the table's memory back; what is left is found.
    #[test]
    fn the_table_shrinks_after_mass_deletes() {
        let n = 40_000u128;
        let (idx, mut w, mut at) = filled(n, |k| k);
        let full = idx.memory_bytes();
        for id in 0..n {
            if id % 50 != 0 {
                let off = 1000 + id as u64 * 8;
                assert_eq!(idx.remove(&mut w, id, |o| at[&o] == id), Some(off));
            }
        }
        let left = n as u64 / 50;
        assert!(
            idx.memory_bytes() * 10 < full
                && idx.memory_bytes() <= left * BYTES_PER_SLOT * SHRINK_BELOW_DEN,
            "{} bytes for {left} entries (was {full})",
            idx.memory_bytes()
        );
        for id in 0..n {
            let want = (id % 50 == 0).then_some(1000 + id as u64 * 8);
            assert_eq!(idx.get(id, |o| at[&o] == id), want, "id {id}");
        }
        // and grows again
        for id in n..2 * n {
            let off = 1000 + id as u64 * 8;
            at.insert(off, id);
            idx.upsert(&mut w, id, off, |o| at[&o] == id);
        }
        let mut count = 0;
        idx.for_each_offset(|_| count += 1);
        assert_eq!(count as u64, left + n as u64);
    }
}
