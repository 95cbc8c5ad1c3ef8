//! Figures a store reports about itself.

use crate::index::IndexBackend;
use std::time::Duration;

/// Where the index came from at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IndexSource {
    /// A new, empty store was created.
    #[default]
    Created,
    /// The saved checkpoint was loaded and the log tail after it replayed.
    Checkpoint,
    /// The whole log was scanned (no usable checkpoint).
    FullScan,
}

/// What recovery did when the store was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Where the index came from.
    pub source: IndexSource,
    /// Why the checkpoint was not used, when it was not.
    pub checkpoint_problem: Option<String>,
    /// Records read from the log at open (the tail after the checkpoint).
    pub replayed_records: u64,
    /// Bytes of those records.
    pub replayed_bytes: u64,
    /// Bytes of a torn or garbage tail that were cut off.
    pub torn_tail_bytes: u64,
    /// Offset where the torn tail started (meaningful when `torn_tail_bytes > 0`).
    pub torn_tail_offset: u64,
    /// Damaged regions `(offset, length)` that repair replaced by padding.
    pub repaired_regions: Vec<(u64, u64)>,
    /// Wall time of the open.
    pub duration: Duration,
}

/// Per-compression figures of the live payloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodecStats {
    /// Live payloads stored with this codec.
    pub count: u64,
    /// Their total length before compression.
    pub raw_bytes: u64,
    /// Their total stored length.
    pub stored_bytes: u64,
}

/// A snapshot of a store's figures; O(1) to take.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PayloadStats {
    /// Live payloads.
    pub payloads: u64,
    /// Bytes of live records in the log (headers included).
    pub live_bytes: u64,
    /// Bytes of dead records (replaced, deleted, tombstones, padding).
    pub dead_bytes: u64,
    /// Length of the log (file header + all records).
    pub file_bytes: u64,
    /// Logical (uncompressed) bytes of the live payloads.
    pub raw_bytes: u64,
    /// Indexed by `CompressionType as usize`: none, LZ4, ZSTD.
    pub by_compression: [CodecStats; 3],
    /// Raw bytes / stored bytes of the live payloads (1.0 when empty).
    pub compression_ratio: f64,
    /// RAM held by the index (with the HashMap backend, also a table being
    /// grown beside the current one, see `Options::index_growth_thread`).
    pub index_memory_bytes: u64,
    /// Bytes of the DiskHash index file in use (0 for the HashMap backend,
    /// whose checkpoint is only written at `save_index`).
    pub index_file_bytes: u64,
    /// Index RAM per live payload (0 when empty).
    pub index_bytes_per_payload: f64,
    /// Index backend in use.
    pub backend: IndexBackend,
    /// Log offset below which every record is durable.
    pub durable_offset: u64,
    /// When the last checkpoint was saved (unix seconds), if any.
    pub last_checkpoint_unix: Option<u64>,
    /// Log offset the last checkpoint covers (0 if none).
    pub last_checkpoint_offset: u64,
    /// What recovery did at open.
    pub recovery: RecoveryReport,
}

/// What [`PayloadStore::compact`](crate::PayloadStore::compact) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Live payloads copied to the new log.
    pub payloads: u64,
    /// Log file bytes before (up to the committed end).
    pub bytes_before: u64,
    /// Log file bytes after.
    pub bytes_after: u64,
    /// Compaction generation of the new log (1 after the first).
    pub generation: u64,
    /// Time taken, the reopen included.
    pub duration: Duration,
}

/// What [`PayloadStore::verify`](crate::PayloadStore::verify) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Intact records read (payloads, tombstones, padding).
    pub records: u64,
    /// Bytes of log looked at (from the end of the file header to the
    /// committed end when the scrub started).
    pub bytes: u64,
    /// Damaged regions `(offset, length)`: bytes between intact records
    /// that are not intact records.
    pub damaged: Vec<(u64, u64)>,
    /// Index entries of live payloads checked.
    pub index_entries: u64,
    /// Entries whose record is damaged, not a payload, or not where a
    /// lookup of its id leads.
    pub index_errors: u64,
    /// Log offset the first such entry points at.
    pub first_index_error: Option<u64>,
}

impl VerifyReport {
    /// No damage in the log and no bad index entry.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.index_errors == 0
    }
}
