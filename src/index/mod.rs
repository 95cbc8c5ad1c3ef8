//! The id → record-offset index.
//!
//! The index maps an id to the offset of its newest record; lengths and the
//! compression tag are read from the record header itself, which is checked
//! on every read anyway. `memory` is the in-RAM backend, `disk` the on-disk
//! linear hash table ("DiskHash").

pub(crate) mod disk;
pub(crate) mod memory;
mod slots;

/// Which index implementation a store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IndexBackend {
    /// Open-addressing table in RAM (12.5–18.8 bytes per payload).
    #[default]
    HashMap,
    /// On-disk linear hash table (`index.dh`) for tens of millions to
    /// billions of ids: fixed anonymous RAM (~0.4 MB), one page read per cold
    /// lookup. A store made with one backend opens with the other.
    DiskHash,
}

use crate::error::{Error, Result};
use disk::DiskIndex;

fn damaged_page(bucket: u64) -> Error {
    Error::Corrupt {
        offset: DiskIndex::page_offset(bucket),
        reason: "DiskHash index page checksum mismatch (offset in index.dh; remove that file and it is rebuilt from the log)",
    }
}
use memory::MemIndex;

/// The index a store uses: one of the backends.
pub(crate) enum Index {
    /// In RAM.
    Mem(MemIndex),
    /// In a mapped file.
    Disk(DiskIndex),
    /// A read-only view of a DiskHash table that is behind the log: the
    /// records it has not seen are indexed in RAM (offsets of the newest
    /// record per id, deletes included), looked up first.
    DiskOverlay(DiskIndex, MemIndex),
}

impl Index {
    /// Looks up the record offset of `id` (see the backends' `get`);
    /// `is_delete(offset)` tells a tombstone (only the overlay holds them).
    #[inline]
    pub fn get(
        &self,
        id: u128,
        mut confirm: impl FnMut(u64) -> bool,
        is_delete: impl Fn(u64) -> bool,
    ) -> Result<Option<u64>> {
        match self {
            Index::Mem(m) => Ok(m.get(id, confirm)),
            Index::Disk(d) => d.get(id, confirm).map_err(damaged_page),
            Index::DiskOverlay(d, tail) => match tail.get(id, &mut confirm) {
                Some(off) if is_delete(off) => Ok(None),
                Some(off) => Ok(Some(off)),
                None => d.get(id, confirm).map_err(damaged_page),
            },
        }
    }

    /// Calls `candidate(offset)` for the offsets a lookup of `id` would
    /// confirm first (unconfirmed: a prefetch hint for batched reads).
    pub fn candidates(&self, id: u128, mut candidate: impl FnMut(u64)) {
        match self {
            Index::Mem(m) => m.candidates(id, candidate),
            Index::Disk(d) => d.candidates(id, candidate),
            Index::DiskOverlay(d, tail) => {
                tail.candidates(id, &mut candidate);
                d.candidates(id, candidate);
            }
        }
    }

    /// Prefetches, for a reader, the first index line a lookup of `id` reads.
    pub fn prefetch_lookup(&self, id: u128) {
        match self {
            Index::Mem(m) => m.prefetch_lookup(id),
            Index::Disk(d) | Index::DiskOverlay(d, _) => d.prefetch(id),
        }
    }

    /// Calls `f(offset)` for every live entry.
    pub fn for_each_offset(&self, f: impl FnMut(u64)) -> Result<()> {
        match self {
            Index::Mem(m) => {
                m.for_each_offset(f);
                Ok(())
            }
            Index::Disk(d) => d.for_each_offset(f).map_err(damaged_page),
            Index::DiskOverlay(..) => unreachable!("the store iterates an overlay itself"),
        }
    }

    /// Anonymous RAM the index holds, with a RAM table being grown beside
    /// the current one (see `MemIndex`, Growing).
    pub fn memory_bytes(&self, w: &IndexWriter) -> u64 {
        let growing = match w {
            IndexWriter::Mem(mw) => mw.growing_bytes(),
            IndexWriter::Disk(_) => 0,
        };
        growing
            + match self {
                Index::Mem(m) => m.memory_bytes(),
                Index::Disk(d) => d.memory_bytes(),
                Index::DiskOverlay(d, tail) => d.memory_bytes() + tail.memory_bytes(),
            }
    }

    /// Bytes of the index's own file (the DiskHash table; 0 in RAM).
    pub fn file_bytes(&self) -> u64 {
        match self {
            Index::Mem(_) => 0,
            Index::Disk(d) | Index::DiskOverlay(d, _) => d.file_bytes(),
        }
    }
}

impl Index {
    /// Asks the CPU to fetch what an update of `id` will touch first, so that
    /// a group of records overlaps their memory latencies (a hint).
    #[inline]
    pub fn prefetch(&self, w: &IndexWriter, id: u128) {
        match (self, w) {
            (Index::Disk(d), _) => d.prefetch(id),
            (Index::Mem(m), IndexWriter::Mem(mw)) => m.prefetch(mw, id),
            _ => {}
        }
    }

    /// HashMap backend (and a DiskHash overlay's RAM tail): whether large
    /// tables grow in a helper thread (`Options::index_growth_thread`).
    pub fn set_growth_thread(&self, w: &mut IndexWriter, enabled: bool) {
        if let IndexWriter::Mem(mw) = w {
            mw.set_growth_thread(enabled);
        }
    }

    /// HashMap backend (and an overlay's RAM tail): publishes a table grown
    /// in the background once its helper is done, with `wait` also one still
    /// being grown (see `MemIndex::settle`).
    pub fn settle(&self, w: &mut IndexWriter, wait: bool) {
        if let (Index::Mem(m) | Index::DiskOverlay(_, m), IndexWriter::Mem(mw)) = (self, w) {
            m.settle(mw, wait);
        }
    }

    /// HashMap backend: sizes the table for `expected` entries now, so that
    /// loading that many causes no table rebuild (see `MemIndex::reserve`).
    /// DiskHash grows one bucket at a time, with no such stall: nothing to do.
    pub fn reserve(&self, w: &mut IndexWriter, expected: u64) {
        if let (Index::Mem(m), IndexWriter::Mem(mw)) = (self, w) {
            m.reserve(mw, expected);
        }
    }
}

/// Writer-only state of the index; lives in the store's writer lock.
pub(crate) enum IndexWriter {
    /// Of `Index::Mem`.
    Mem(memory::MemWriter),
    /// Of `Index::Disk`.
    Disk(disk::DiskWriter),
}
