//! The id → record-offset index.
//!
//! The index maps an id to the offset of its newest record; lengths and the
//! compression tag are read from the record header itself, which is checked
//! on every read anyway. `memory` is the in-RAM backend.

pub mod disk;
pub mod memory;

/// Which index implementation a store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IndexBackend {
    /// Open-addressing table in RAM (12.5–18.8 bytes per payload).
    #[default]
    HashMap,
    /// On-disk hash table for billions of ids (not yet available in this build).
    DiskHash,
}
