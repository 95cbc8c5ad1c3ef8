//! The in-memory index ("HashMap" backend): an open-addressing table of
//! 8-byte atomic slots, read without locks.
//!
//! # Why 10 bytes per slot are enough
//!
//! Every record on disk carries its full 128-bit id, so the table keeps only
//! where the record is and a 32-bit hash tag of its id:
//!
//! ```text
//! slot (u64, shared with readers):  bits 0..48  record offset in the log
//!                                   bits 48..64 tag bits 0..16
//! hi   (u16, writer only):          tag bits 16..32
//! ```
//!
//! A lookup compares the 16 tag bits in the slot and confirms a match by
//! reading the id from the record header (which `get` reads anyway). The
//! writer keeps the other 16 tag bits so that growing the table can place
//! every entry again from its tag alone, without touching the log.
//!
//! Position = `(tag · capacity) >> 32` (so capacity need not be a power of
//! two), linear probing. The table grows by rebuilding at 80% occupancy to a
//! size where live entries fill 53%: 10 B / 0.8 … 10 B / 0.53 = 12.5 … 18.8 B
//! per payload. Deletes shrink it the same way: when live entries fill less
//! than 1/4 of it, it is rebuilt to 53% (so RAM follows the live count, at
//! most 40 B per payload after mass deletes, and growing and shrinking are
//! both amortized O(1) per operation).
//!
//! # Concurrency
//!
//! Readers load the current table through an `ArcSwap` and probe atomics with
//! `Acquire`. The single writer (it must hold `&mut MemWriter`, which lives in
//! the store's writer lock) stores slots with `Release`:
//! - insert: an empty or deleted slot becomes the entry (one store);
//! - replace: the slot's offset changes (one store; both records stay valid);
//! - delete: the slot becomes `DELETED`, which probes skip (no entries move,
//!   so a concurrent probe never misses an entry that is present).
//!
//! Growing builds a new table and publishes it with one pointer swap;
//! readers still on the old one see the same contents (the writer does not
//! change it meanwhile), and it is freed when the last of them lets go.

use super::slots::Slots;
use arc_swap::ArcSwap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const EMPTY: u64 = 0;
const DELETED: u64 = u64::MAX;
const OFFSET_BITS: u32 = 48;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Bytes of RAM per slot (u64 slot + u16 high tag).
pub const BYTES_PER_SLOT: u64 = 10;
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

/// One immutable-size table of atomic slots.
pub struct Table {
    slots: Slots,
}

impl Table {
    fn new(cap: u64) -> Table {
        // EMPTY is 0
        Table {
            slots: Slots::zeroed(cap as usize),
        }
    }

    #[inline]
    fn cap(&self) -> u64 {
        self.slots.len() as u64
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

    /// Finds the slot of `tag` whose record `confirm` accepts.
    #[inline]
    fn find(&self, tag: u32, mut confirm: impl FnMut(u64) -> bool) -> Option<(usize, u64)> {
        let want = u64::from(tag as u16) << OFFSET_BITS;
        let mut i = self.home(tag);
        loop {
            let v = self.slots[i].load(Ordering::Acquire);
            if v == EMPTY {
                return None;
            }
            if v != DELETED && v & !OFFSET_MASK == want && confirm(v & OFFSET_MASK) {
                return Some((i, v & OFFSET_MASK));
            }
            i = self.next(i);
        }
    }
}

/// Writer-only state: the high tag bits and occupancy. Only reachable through
/// the store's writer lock.
pub struct MemWriter {
    /// The table readers see (only the writer replaces it, so holding it
    /// here spares the writer the shared pointer load on every update).
    table: Arc<Table>,
    hi: Vec<u16>,
    /// Entries plus deleted marks (what probes walk over).
    occupied: u64,
    /// Entries.
    live: u64,
}

/// The in-memory index.
pub struct MemIndex {
    table: ArcSwap<Table>,
}

fn pack(off: u64, tag: u32) -> u64 {
    debug_assert!(off > 0 && off < OFFSET_MASK);
    off | (u64::from(tag as u16) << OFFSET_BITS)
}

impl MemIndex {
    /// An empty index sized for about `expected` entries.
    pub fn new(expected: u64) -> (MemIndex, MemWriter) {
        let cap = (expected * REBUILD_NUM / REBUILD_DEN + 1).max(MIN_SLOTS);
        let table = Arc::new(Table::new(cap));
        let idx = MemIndex {
            table: ArcSwap::new(table.clone()),
        };
        (
            idx,
            MemWriter {
                table,
                hi: vec![0; cap as usize],
                occupied: 0,
                live: 0,
            },
        )
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
        let t = self.table.load();
        crate::sys::prefetch_line(&t.slots[t.home(tag_of(id))]);
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
            t.slots[i].store(pack(off, tag), Ordering::Release);
            return Some(old);
        }
        // Absent: take the first deleted or empty slot of the probe sequence.
        let mut i = t.home(tag);
        loop {
            let v = t.slots[i].load(Ordering::Relaxed);
            if v == EMPTY || v == DELETED {
                if v == EMPTY {
                    w.occupied += 1;
                }
                w.live += 1;
                w.hi[i] = (tag >> 16) as u16;
                t.slots[i].store(pack(off, tag), Ordering::Release);
                break;
            }
            i = t.next(i);
        }
        if w.occupied * MAX_LOAD_DEN > t.cap() * MAX_LOAD_NUM {
            self.rebuild(w);
        }
        None
    }

    /// Asks the CPU to fetch the lines an update of `id` touches first (its
    /// home slot and high tag bits); a hint for batches.
    #[inline]
    pub fn prefetch(&self, w: &MemWriter, id: u128) {
        let i = w.table.home(tag_of(id));
        crate::sys::prefetch_line(&w.table.slots[i]);
        crate::sys::prefetch_ptr((&w.hi[i] as *const u16).cast());
    }

    /// Removes `id`; returns its offset if it was present.
    pub fn remove(
        &self,
        w: &mut MemWriter,
        id: u128,
        confirm: impl FnMut(u64) -> bool,
    ) -> Option<u64> {
        let t = &w.table;
        let (i, old) = t.find(tag_of(id), confirm)?;
        t.slots[i].store(DELETED, Ordering::Release);
        w.live -= 1;
        // Give memory back after mass deletes: below 1/4 full, rebuild to
        // the 53 % of a fresh table (so the next shrink is far away too).
        if w.live * SHRINK_BELOW_DEN < w.table.cap() && w.table.cap() > MIN_SLOTS * SHRINK_BELOW_DEN
        {
            self.rebuild(w);
        }
        Some(old)
    }

    /// Rebuilds the table for the live entries (dropping deleted marks).
    fn rebuild(&self, w: &mut MemWriter) {
        let old = w.table.clone();
        let live = old
            .slots
            .iter()
            .filter(|s| !matches!(s.load(Ordering::Relaxed), EMPTY | DELETED))
            .count() as u64;
        let cap = (live * REBUILD_NUM / REBUILD_DEN + 1).max(MIN_SLOTS);
        let new = Table::new(cap);
        let mut hi = vec![0u16; cap as usize];
        let mut occupied = 0;
        for (s, &h) in old.slots.iter().zip(&w.hi) {
            let v = s.load(Ordering::Relaxed);
            if v == EMPTY || v == DELETED {
                continue;
            }
            let tag = (u32::from(h) << 16) | (v >> OFFSET_BITS) as u32;
            let mut i = new.home(tag);
            while new.slots[i].load(Ordering::Relaxed) != EMPTY {
                i = new.next(i);
            }
            new.slots[i].store(v, Ordering::Relaxed);
            hi[i] = h;
            occupied += 1;
        }
        w.hi = hi;
        w.occupied = occupied;
        w.live = occupied;
        w.table = Arc::new(new);
        // The swap publishes every slot stored above (ArcSwap stores with release).
        self.table.store(w.table.clone());
    }

    /// RAM the index uses now.
    pub fn memory_bytes(&self) -> u64 {
        self.table.load().cap() * BYTES_PER_SLOT
    }

    /// Copies the table out for a checkpoint: (slots, high tag bits).
    pub fn snapshot(&self, w: &MemWriter) -> (Vec<u64>, Vec<u16>) {
        let t = self.table.load();
        (
            t.slots.iter().map(|s| s.load(Ordering::Relaxed)).collect(),
            w.hi.clone(),
        )
    }

    /// Rebuilds an index from checkpointed slots. `None` if the arrays are
    /// inconsistent (lengths differ, a slot sits where its tag cannot put it).
    pub fn from_snapshot(slots: Vec<u64>, hi: Vec<u16>) -> Option<(MemIndex, MemWriter)> {
        if slots.len() != hi.len() || (slots.len() as u64) < MIN_SLOTS {
            return None;
        }
        let (occupied, deleted) = slots.iter().fold((0, 0), |(o, d), &v| {
            (o + u64::from(v != EMPTY), d + u64::from(v == DELETED))
        });
        let live = occupied - deleted;
        if occupied * MAX_LOAD_DEN > slots.len() as u64 * MAX_LOAD_NUM {
            return None;
        }
        let table = Table {
            slots: Slots::from_values(slots),
        };
        let table = Arc::new(table);
        let idx = MemIndex {
            table: ArcSwap::new(table.clone()),
        };
        Some((
            idx,
            MemWriter {
                table,
                hi,
                occupied,
                live,
            },
        ))
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
