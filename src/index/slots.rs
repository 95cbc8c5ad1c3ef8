//! A zero-initialised array of atomic slots for the RAM table, one control
//! byte per slot beside it and one high tag byte per slot after those,
//! backed by transparent huge pages when large.
//!
//! The control bytes are packed eight to an `AtomicU64` word (slot `i` is
//! byte `i % 8`, counted from the least significant, of word `i / 8`), so a
//! reader scans eight of them with one load, and every access to them,
//! reader's or writer's, is a whole-word atomic (no mixed-size atomics).
//!
//! Every lookup of the RAM table touches one random slot. With 4 KiB pages a
//! 15 MB table (1M ids) spans ~3,700 pages, more than the CPU's TLB holds,
//! so nearly every lookup also walks the page tables. Mapped with
//! `MADV_HUGEPAGE` the same table is 8 pages of 2 MiB. Tables from 256 KiB
//! are mapped (huge pages from 4 MiB), so that a table given back is given
//! back to the system: a table on the heap of a growth helper thread (see
//! `memory.rs`) stayed in that thread's malloc arena after it was freed
//! (RSS of a 1M load 22.6-25.1 B per payload instead of 20.5). Small
//! tables, and any platform or kernel where the anonymous map fails, use
//! the heap.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Words holding the control bytes of `len` slots.
#[inline]
pub fn ctrl_words(len: usize) -> usize {
    len.div_ceil(8)
}

/// Tables from this size on are mapped.
const MAP_FROM_BYTES: usize = 256 << 10;
/// Tables from this size on are advised for huge pages (below it, the
/// rounding to a whole huge page would waste a noticeable share).
const HUGE_FROM_BYTES: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// `len` atomic u64 slots, `len` control bytes (in `len.div_ceil(8)`
/// atomic words) and `len` high bytes, all zero at first.
pub struct Slots(Backing);

enum Backing {
    Heap(Box<[AtomicU64]>, Box<[AtomicU64]>, Box<[AtomicU8]>),
    Map {
        /// Start of the whole anonymous map (for `munmap`).
        base: *mut libc::c_void,
        map_len: usize,
        /// First slot: `base` rounded up to a huge-page boundary.
        slots: *const AtomicU64,
        /// First control word: right after the last slot.
        ctrl: *const AtomicU64,
        /// First high byte: right after the last control word.
        hi: *const AtomicU8,
        len: usize,
    },
}

// SAFETY: the map is private to this value and only reached through
// `&[AtomicU64]` (atomics are Sync); the pointers are never
// handed out beyond the value's lifetime.
unsafe impl Send for Slots {}
// SAFETY: as above: shared access is to atomics only.
unsafe impl Sync for Slots {}

impl Slots {
    /// `len` zeroed slots and control bytes.
    pub fn zeroed(len: usize) -> Slots {
        let bytes = (len + ctrl_words(len)) * size_of::<AtomicU64>() + len;
        if bytes >= MAP_FROM_BYTES {
            if let Some(s) = Self::map(len, bytes) {
                return s;
            }
        }
        Slots(Backing::Heap(
            (0..len).map(|_| AtomicU64::new(0)).collect(),
            (0..ctrl_words(len)).map(|_| AtomicU64::new(0)).collect(),
            (0..len).map(|_| AtomicU8::new(0)).collect(),
        ))
    }

    /// Writes a zero into every page of the three arrays, so that a later
    /// `copy_from` finds them mapped in (no page faults while it runs).
    pub fn touch(&self) {
        const PAGE: usize = 4096;
        for s in self.iter().step_by(PAGE / 8) {
            s.store(0, Ordering::Relaxed);
        }
        for c in self.ctrl_words().iter().step_by(PAGE / 8) {
            c.store(0, Ordering::Relaxed);
        }
        for h in self.hi().iter().step_by(PAGE) {
            h.store(0, Ordering::Relaxed);
        }
    }

    /// Overwrites all three arrays with those of `src` (same length). Only
    /// the writer of `src` may call it, as for every store into a table.
    pub fn copy_from(&self, src: &Slots) {
        assert_eq!(self.len(), src.len());
        for (d, s) in self.iter().zip(src.iter()) {
            d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        for (d, s) in self.ctrl_words().iter().zip(src.ctrl_words()) {
            d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        for (d, s) in self.hi().iter().zip(src.hi()) {
            d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// One byte per slot for the table's own use (the high tag bits).
    #[inline]
    pub fn hi(&self) -> &[AtomicU8] {
        match &self.0 {
            Backing::Heap(_, _, h) => h,
            // SAFETY: `hi` points to `len` bytes right after the control
            // words, inside the same live zero-filled read-write mapping
            // (zero is a valid AtomicU8, which has no alignment beyond 1),
            // which lives as long as `self`.
            Backing::Map { hi, len, .. } => unsafe { std::slice::from_raw_parts(*hi, *len) },
        }
    }

    /// The control words, eight control bytes each (see the module docs);
    /// the bytes past `len` in the last word stay zero.
    #[inline]
    pub fn ctrl_words(&self) -> &[AtomicU64] {
        match &self.0 {
            Backing::Heap(_, c, _) => c,
            // SAFETY: `ctrl` is 8-byte aligned and points to
            // `ctrl_words(len)` words right after the slots, inside the same
            // live zero-filled read-write mapping (zero is a valid
            // AtomicU64), which lives as long as `self`.
            Backing::Map { ctrl, len, .. } => unsafe {
                std::slice::from_raw_parts(*ctrl, ctrl_words(*len))
            },
        }
    }

    /// The control byte of slot `i`.
    #[inline]
    pub fn ctrl(&self, i: usize, order: Ordering) -> u8 {
        (self.ctrl_words()[i / 8].load(order) >> (8 * (i % 8))) as u8
    }

    /// Sets the control byte of slot `i` (the word is stored with `order`).
    /// Not an atomic read-modify-write: only the table's one writer may
    /// call it, as for every other store into the table.
    #[inline]
    pub fn set_ctrl(&self, i: usize, c: u8, order: Ordering) {
        let word = &self.ctrl_words()[i / 8];
        let shift = 8 * (i % 8);
        let old = word.load(Ordering::Relaxed);
        word.store((old & !(0xff << shift)) | (u64::from(c) << shift), order);
    }

    #[cfg(target_os = "linux")]
    fn map(len: usize, bytes: usize) -> Option<Slots> {
        let huge = bytes >= HUGE_FROM_BYTES;
        let unit = if huge {
            HUGE_PAGE
        } else {
            crate::sys::page_size()
        };
        let used = bytes.div_ceil(unit) * unit;
        // room to start on a huge-page boundary
        let map_len = used + if huge { HUGE_PAGE } else { 0 };
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // affected. The result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let skip = if huge {
            (HUGE_PAGE - base as usize % HUGE_PAGE) % HUGE_PAGE
        } else {
            0
        };
        // SAFETY: `skip + used <= map_len` (`skip < HUGE_PAGE`, and 0 unless
        // the map has a huge page to spare): the range lies inside the map
        // just made.
        let start = unsafe { base.cast::<u8>().add(skip) };
        if huge {
            // SAFETY: see above. madvise only advises; a kernel without THP
            // refuses and the memory stays ordinary.
            unsafe { libc::madvise(start.cast(), used, libc::MADV_HUGEPAGE) };
        }
        Some(Slots(Backing::Map {
            base,
            map_len,
            slots: start.cast::<AtomicU64>().cast_const(),
            // SAFETY: the control words take `[len * 8, len * 8 +
            // ctrl_words(len) * 8)` from `start` (8-byte aligned, as `start`
            // is), below `bytes <= used`: inside the map.
            ctrl: unsafe { start.add(len * size_of::<AtomicU64>()) }
                .cast::<AtomicU64>()
                .cast_const(),
            // SAFETY: the high bytes take the last `len` bytes of `[0,
            // bytes)` from `start`, after the control words: inside the map.
            hi: unsafe { start.add((len + ctrl_words(len)) * size_of::<AtomicU64>()) }
                .cast::<AtomicU8>()
                .cast_const(),
            len,
        }))
    }

    #[cfg(not(target_os = "linux"))]
    fn map(_len: usize, _bytes: usize) -> Option<Slots> {
        None
    }
}

impl Deref for Slots {
    type Target = [AtomicU64];
    #[inline]
    fn deref(&self) -> &[AtomicU64] {
        match &self.0 {
            Backing::Heap(b, _, _) => b,
            // SAFETY: `slots` is 8-byte aligned (page aligned), points to
            // `len * 8` bytes inside a live read-write mapping that anonymous
            // mapping zero-filled (zero is a valid AtomicU64), and the mapping
            // lives as long as `self`.
            Backing::Map { slots, len, .. } => unsafe { std::slice::from_raw_parts(*slots, *len) },
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        if let Backing::Map { base, map_len, .. } = self.0 {
            // SAFETY: `base`/`map_len` are exactly the mapping made in `map`,
            // unmapped once; no reference into it outlives `self`.
            unsafe { libc::munmap(base, map_len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_tables_start_zeroed_and_keep_values() {
        for len in [64, 67, MAP_FROM_BYTES / 8 + 3, HUGE_FROM_BYTES / 8 + 3] {
            let s = Slots::zeroed(len);
            assert_eq!(s.len(), len);
            assert_eq!(s.ctrl_words().len(), len.div_ceil(8));
            assert!(s.iter().all(|v| v.load(Ordering::Relaxed) == 0));
            assert!((0..len).all(|i| s.ctrl(i, Ordering::Relaxed) == 0));
            assert_eq!(s.hi().len(), len);
            assert!(s.hi().iter().all(|h| h.load(Ordering::Relaxed) == 0));
            s[len - 1].store(7, Ordering::Relaxed);
            s[0].store(9, Ordering::Relaxed);
            // the control bytes lie beside the slots, not over them, and
            // each one keeps its own value
            for i in 0..len {
                s.set_ctrl(i, (i % 251) as u8 + 1, Ordering::Relaxed);
            }
            assert_eq!(
                s[len - 1].load(Ordering::Relaxed) + s[0].load(Ordering::Relaxed),
                16
            );
            assert!((0..len).all(|i| s.ctrl(i, Ordering::Relaxed) == (i % 251) as u8 + 1));
            s.set_ctrl(len - 1, 0, Ordering::Relaxed);
            assert_eq!(s.ctrl(len - 1, Ordering::Relaxed), 0);
            assert_eq!(
                s.ctrl(len - 2, Ordering::Relaxed),
                ((len - 2) % 251) as u8 + 1
            );
            // the high bytes lie after both, over neither
            for (i, h) in s.hi().iter().enumerate() {
                h.store((i % 13) as u8 + 1, Ordering::Relaxed);
            }
            assert_eq!(s[0].load(Ordering::Relaxed), 9);
            assert_eq!(
                s.ctrl(len - 2, Ordering::Relaxed),
                ((len - 2) % 251) as u8 + 1
            );
            assert_eq!(s.ctrl(len - 1, Ordering::Relaxed), 0);
            assert!((0..len).all(|i| s.hi()[i].load(Ordering::Relaxed) == (i % 13) as u8 + 1));
        }
    }
}
