//! A file mapped in fixed chunks that never move (the log and the DiskHash
//! table both use it).
//!
//! Chunk `i` maps `map_len` bytes from file offset `i << shift`; it is mapped
//! once, the first time the file reaches it, and stays mapped until the
//! `ChunkMaps` is dropped, so a pointer into it stays valid for as long as
//! the owner is borrowed. Mapping past the end of the file is allowed; those
//! pages only become accessible once the file has grown over them. What may
//! be dereferenced, and when, is the owner's argument (`segment.rs`,
//! `index/disk.rs`).

use crate::error::{Error, Result};
use memmap2::{Advice, MmapOptions, MmapRaw};
use parking_lot::Mutex;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The chunk maps of one file.
pub struct ChunkMaps {
    chunks: Box<[OnceLock<MmapRaw>]>,
    lock: Mutex<()>,
    shift: u32,
    map_len: u64,
    /// Advise point reads (`MADV_RANDOM`) on every map, present and future.
    random: AtomicBool,
}

impl ChunkMaps {
    /// `count` chunk slots of `1 << shift` bytes, each mapped `map_len` long.
    pub fn new(count: usize, shift: u32, map_len: u64, random: bool) -> ChunkMaps {
        ChunkMaps {
            chunks: (0..count).map(|_| OnceLock::new()).collect(),
            lock: Mutex::new(()),
            shift,
            map_len,
            random: AtomicBool::new(random),
        }
    }

    /// Maps every chunk holding bytes below `end` (the caller checked that
    /// `end` fits the slots).
    pub fn map_upto(
        &self,
        file: &File,
        path: &Path,
        writable: bool,
        end: u64,
        what: &'static str,
    ) -> Result<()> {
        let last = (end.saturating_sub(1) >> self.shift) as usize;
        for i in 0..=last {
            if self.chunks[i].get().is_some() {
                continue;
            }
            let _g = self.lock.lock();
            if self.chunks[i].get().is_some() {
                continue;
            }
            let mut opts = MmapOptions::new();
            opts.offset((i as u64) << self.shift)
                .len(self.map_len as usize);
            let map = if writable {
                opts.map_raw(file)
            } else {
                opts.map_raw_read_only(file)
            }
            .map_err(|e| Error::io(what, path, e))?;
            if self.random.load(Ordering::Relaxed) {
                let _ = map.advise(Advice::Random);
            }
            let _ = self.chunks[i].set(map);
        }
        Ok(())
    }

    /// Switches every map, present and future, to point reads.
    pub fn set_random(&self) {
        let _g = self.lock.lock();
        self.random.store(true, Ordering::Relaxed);
        for map in self.mapped() {
            let _ = map.advise(Advice::Random);
        }
    }

    /// Asks for transparent huge pages on the file range `[from, to)` (2 MiB
    /// aligned) of every chunk mapped so far: the kernel then reads faulting
    /// pages in 2 MiB folios and maps each with one TLB entry (Linux, where
    /// the filesystem supports large folios; a hint, ignored elsewhere).
    /// A written page of such a folio dirties all of it, so the range must
    /// hold bytes nobody writes again.
    pub fn advise_huge(&self, from: u64, to: u64) {
        let _g = self.lock.lock();
        for (i, map) in self.mapped().enumerate() {
            let base = (i as u64) << self.shift;
            let (start, end) = (from.max(base), to.min(base + self.map_len));
            if start < end {
                let _ = map.advise_range(
                    Advice::HugePage,
                    (start - base) as usize,
                    (end - start) as usize,
                );
            }
        }
    }

    /// Whether maps advise point reads.
    pub fn random(&self) -> bool {
        self.random.load(Ordering::Relaxed)
    }

    /// The map of the chunk holding file offset `off`, if it is mapped.
    #[inline]
    pub fn chunk_of(&self, off: u64) -> Option<&MmapRaw> {
        self.chunks.get((off >> self.shift) as usize)?.get()
    }

    /// Pointer to file offset `off` through the map of its chunk, and the
    /// offset relative to that map. Panics if the chunk is not mapped (the
    /// owners map before they address).
    #[inline]
    pub fn ptr(&self, off: u64) -> (*mut u8, usize) {
        let map = self.chunk_of(off).expect("chunk mapped before use");
        let rel = (off & ((1 << self.shift) - 1)) as usize;
        // `rel` < chunk size ≤ map_len: the result stays inside the map.
        (map.as_mut_ptr().wrapping_add(rel), rel)
    }

    /// The maps made so far, in file order.
    pub fn mapped(&self) -> impl Iterator<Item = &MmapRaw> {
        self.chunks.iter().map_while(|c| c.get())
    }
}
