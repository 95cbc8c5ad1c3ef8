//! A zero-initialised array of atomic slots for the RAM table, and one
//! control byte per slot beside it, backed by transparent huge pages when
//! large.
//!
//! Every lookup of the RAM table touches one random slot. With 4 KiB pages a
//! 15 MB table (1M ids) spans ~3,700 pages, more than the CPU's TLB holds,
//! so nearly every lookup also walks the page tables. Mapped with
//! `MADV_HUGEPAGE` the same table is 8 pages of 2 MiB. Small tables, and
//! any platform or kernel where the anonymous map fails, use the heap.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicU8};

/// Tables from this size on are mapped (below it, the rounding of a huge
/// page would waste a noticeable share).
const MAP_FROM_BYTES: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// `len` atomic u64 slots and `len` atomic control bytes, all zero at
/// first.
pub struct Slots(Backing);

enum Backing {
    Heap(Box<[AtomicU64]>, Box<[AtomicU8]>),
    Map {
        /// Start of the whole anonymous map (for `munmap`).
        base: *mut libc::c_void,
        map_len: usize,
        /// First slot: `base` rounded up to a huge-page boundary.
        slots: *const AtomicU64,
        /// First control byte: right after the last slot.
        ctrl: *const AtomicU8,
        len: usize,
    },
}

// SAFETY: the map is private to this value and only reached through
// `&[AtomicU64]` and `&[AtomicU8]` (atomics are Sync); the pointers are never
// handed out beyond the value's lifetime.
unsafe impl Send for Slots {}
// SAFETY: as above: shared access is to atomics only.
unsafe impl Sync for Slots {}

impl Slots {
    /// `len` zeroed slots and control bytes.
    pub fn zeroed(len: usize) -> Slots {
        let bytes = len * (size_of::<AtomicU64>() + size_of::<AtomicU8>());
        if bytes >= MAP_FROM_BYTES {
            if let Some(s) = Self::map(len, bytes) {
                return s;
            }
        }
        Slots(Backing::Heap(
            (0..len).map(|_| AtomicU64::new(0)).collect(),
            (0..len).map(|_| AtomicU8::new(0)).collect(),
        ))
    }

    /// The control bytes, one per slot.
    #[inline]
    pub fn ctrl(&self) -> &[AtomicU8] {
        match &self.0 {
            Backing::Heap(_, c) => c,
            // SAFETY: `ctrl` points to `len` bytes right after the slots,
            // inside the same live zero-filled read-write mapping (zero is
            // a valid AtomicU8), which lives as long as `self`.
            Backing::Map { ctrl, len, .. } => unsafe { std::slice::from_raw_parts(*ctrl, *len) },
        }
    }

    #[cfg(target_os = "linux")]
    fn map(len: usize, bytes: usize) -> Option<Slots> {
        let used = bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let map_len = used + HUGE_PAGE;
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
        let skip = (HUGE_PAGE - base as usize % HUGE_PAGE) % HUGE_PAGE;
        // SAFETY: `skip < HUGE_PAGE` and `skip + used <= map_len`: the range
        // lies inside the map just made. madvise only advises; a kernel
        // without THP refuses and the memory stays ordinary.
        let start = unsafe { base.cast::<u8>().add(skip) };
        // SAFETY: see above.
        unsafe { libc::madvise(start.cast(), used, libc::MADV_HUGEPAGE) };
        Some(Slots(Backing::Map {
            base,
            map_len,
            slots: start.cast::<AtomicU64>().cast_const(),
            // SAFETY: the control bytes take `[len * 8, len * 9)` from
            // `start`, and `len * 9 == bytes <= used`: inside the map.
            ctrl: unsafe { start.add(len * size_of::<AtomicU64>()) }
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
            Backing::Heap(b, _) => b,
            // SAFETY: `slots` is 8-byte aligned (huge-page aligned), points to
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
    use std::sync::atomic::Ordering;

    #[test]
    fn small_and_large_tables_start_zeroed_and_keep_values() {
        for len in [64, MAP_FROM_BYTES / 8 + 3] {
            let s = Slots::zeroed(len);
            assert_eq!(s.len(), len);
            assert_eq!(s.ctrl().len(), len);
            assert!(s.iter().all(|v| v.load(Ordering::Relaxed) == 0));
            assert!(s.ctrl().iter().all(|v| v.load(Ordering::Relaxed) == 0));
            s[len - 1].store(7, Ordering::Relaxed);
            s[0].store(9, Ordering::Relaxed);
            // the control bytes lie beside the slots, not over them
            for c in s.ctrl() {
                c.store(0xff, Ordering::Relaxed);
            }
            assert_eq!(
                s[len - 1].load(Ordering::Relaxed) + s[0].load(Ordering::Relaxed),
                16
            );
            assert!(s.ctrl().iter().all(|v| v.load(Ordering::Relaxed) == 0xff));
        }
    }
}
