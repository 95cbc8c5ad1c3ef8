//! Everything a store can be opened with.

use crate::codec::CompressionPolicy;
use crate::index::IndexBackend;
use crate::io::{Io, OsIo};
use std::fmt;
use std::sync::Arc;

/// When appended bytes are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Only when the caller calls `sync()` (or `save_index`/`close`). Fastest;
    /// a process crash still loses nothing (the bytes are in the OS page
    /// cache), a power loss loses what was appended since the last `sync`.
    #[default]
    Manual,
    /// `append` returns only after its record is on stable storage; the
    /// fsync runs inside the writer lock, one per append.
    EveryAppend,
    /// `append` returns only after its record is on stable storage, but waits
    /// for the fsync outside the writer lock: appenders that arrive while one
    /// fsync runs share the next one (group commit).
    GroupCommit,
}

/// Severity of a message the store emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum LogLevel {
    /// Something failed.
    Error = 1,
    /// Something needs attention (memory growth, recovery cut a torn tail).
    Warn = 2,
    /// Routine information (what recovery did).
    Info = 3,
}

/// A callback that receives every message the store logs, besides the `log` crate.
pub type LogCallback = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// Options for [`crate::PayloadStore::open_with_options`]. Build with the
/// chained setters on `Options::default()`.
#[derive(Clone)]
pub struct Options {
    pub(crate) backend: IndexBackend,
    pub(crate) sync: SyncPolicy,
    pub(crate) compression: CompressionPolicy,
    pub(crate) memory_warnings: Vec<u64>,
    pub(crate) read_only: bool,
    pub(crate) repair: bool,
    pub(crate) auto_checkpoint_bytes: u64,
    pub(crate) rebuild_memory_bytes: u64,
    pub(crate) prefault: bool,
    pub(crate) index_growth_thread: bool,
    pub(crate) huge_reads_max: u64,
    pub(crate) expected_payloads: u64,
    pub(crate) logger: Option<LogCallback>,
    pub(crate) io: Arc<dyn Io>,
}

impl Default for Options {
    fn default() -> Self {
        const MIB: u64 = 1 << 20;
        Options {
            backend: IndexBackend::HashMap,
            sync: SyncPolicy::Manual,
            compression: CompressionPolicy::default(),
            memory_warnings: vec![64 * MIB, 256 * MIB, 1024 * MIB, 4096 * MIB],
            read_only: false,
            repair: false,
            auto_checkpoint_bytes: 1 << 30,
            rebuild_memory_bytes: crate::sys::physical_memory() / 2,
            prefault: true,
            index_growth_thread: true,
            huge_reads_max: crate::sys::physical_memory() / 4,
            expected_payloads: 0,
            logger: None,
            io: Arc::new(OsIo),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("backend", &self.backend)
            .field("sync", &self.sync)
            .field("compression", &self.compression)
            .field("memory_warnings", &self.memory_warnings)
            .field("read_only", &self.read_only)
            .field("repair", &self.repair)
            .field("auto_checkpoint_bytes", &self.auto_checkpoint_bytes)
            .field("rebuild_memory_bytes", &self.rebuild_memory_bytes)
            .field("prefault", &self.prefault)
            .field("index_growth_thread", &self.index_growth_thread)
            .field("huge_reads_max", &self.huge_reads_max)
            .field("expected_payloads", &self.expected_payloads)
            .field("logger", &self.logger.is_some())
            .finish()
    }
}

impl Options {
    /// Index backend (default `HashMap`).
    pub fn backend(mut self, backend: IndexBackend) -> Self {
        self.backend = backend;
        self
    }
    /// Sync policy (default `Manual`).
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }
    /// Thresholds and levels of the automatic compression choice.
    pub fn compression(mut self, policy: CompressionPolicy) -> Self {
        self.compression = policy;
        self
    }
    /// Turns automatic compression off (`append(.., None)` stores raw);
    /// an explicit codec passed to `append` is still honoured.
    pub fn compression_enabled(mut self, enabled: bool) -> Self {
        self.compression.enabled = enabled;
        self
    }
    /// Index-memory sizes (bytes) at which a warning is logged, once each.
    pub fn memory_warnings(mut self, thresholds: Vec<u64>) -> Self {
        self.memory_warnings = thresholds;
        self.memory_warnings.sort_unstable();
        self
    }
    /// Opens without writing anything; appends fail with `Error::ReadOnly`.
    /// Several read-only handles may share a store; none can while a writer has it.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
    /// On a damaged record in the durable part of the log, keep every intact
    /// record (damaged regions are overwritten by padding records) instead
    /// of failing with `Error::Corrupt`.
    pub fn repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }
    /// HashMap backend: the number of payloads the store is expected to hold
    /// (default 0: no guess). At open the RAM index is sized for that many
    /// at once (10 B / 0.53 = 18.8 B per expected payload), so loading them
    /// rebuilds no table: the table otherwise grows by 1.5x at 80 %
    /// occupancy, and each rebuild copies it inside an append (~20 ms at 1M
    /// payloads, ~200 ms at 10M). While this handle is open the table does
    /// not shrink below that size (a reopen without the option lets deletes
    /// shrink it again). Ignored by DiskHash, which grows a bucket at a time.
    /// A count whose index would not fit in physical memory fails `open`
    /// with `Error::InvalidArgument`.
    pub fn expected_payloads(mut self, count: u64) -> Self {
        self.expected_payloads = count;
        self
    }
    /// DiskHash: page-cache budget for rebuilding `index.dh` from the log
    /// (after a machine crash with unsaved changes, or when converting a
    /// HashMap store). A table that may not fit is built in sequential passes
    /// over the log, one range of buckets per pass, instead of by random
    /// inserts. Default: half of physical memory.
    pub fn rebuild_memory_bytes(mut self, bytes: u64) -> Self {
        self.rebuild_memory_bytes = bytes.max(super::index::disk::PAGE);
        self
    }
    /// Saves the index checkpoint automatically after this many appended
    /// bytes (0 = never; default 1 GiB), which bounds recovery time.
    /// HashMap backend only: the DiskHash table is updated in place and
    /// checkpointed by `save_index` and `close`.
    pub fn auto_checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.auto_checkpoint_bytes = bytes;
        self
    }

    /// Whether a helper thread populates the log's pages a few MiB ahead of
    /// the write position (Linux; default on), so that appends rarely take
    /// a page fault: per-record `append` runs about 1.8x faster on a machine
    /// with a spare core. It works only while syncs are rare (none in the
    /// last 16 MiB appended, `SyncPolicy::Manual`): populated pages hold
    /// zeros until the writer fills them, and a `sync` writes them back too
    /// (at most 4 MiB once). The thread starts with the first append that
    /// uses it. Turn it off to keep the store to the caller's threads.
    pub fn prefault(mut self, enabled: bool) -> Self {
        self.prefault = enabled;
        self
    }

    /// Whether the HashMap index grows in a helper thread (default on).
    /// From 64K slots (about 46K payloads) on, the next, 1.5x larger table
    /// is built beside the current one while appends go on, and the append
    /// that would have rebuilt it (15-35 ms at 1M payloads) only replays
    /// what changed meanwhile: the slowest batch of 1000 w1 records in a
    /// bulk load of 1M falls from 13-30 ms to 3-8 ms, and the load runs
    /// ~3 % faster (BENCHMARKS.md, run 13). Off, the appending thread
    /// rebuilds the table itself, and with `prefault(false)` as well the
    /// store uses only the caller's threads. `expected_payloads` avoids the
    /// rebuilds altogether when the count is known.
    pub fn index_growth_thread(mut self, enabled: bool) -> Self {
        self.index_growth_thread = enabled;
        self
    }

    /// Logs up to this long when opened (default: a quarter of physical
    /// memory; 0 = never) are read through 2 MiB pages up to where they
    /// ended at open (Linux with transparent huge pages in `madvise` or
    /// `always` mode and a filesystem with large folios, such as ext4 from
    /// kernel 6.16). A cold read then brings in the 2 MiB around its record
    /// instead of 4 KiB, and one TLB entry covers 2 MiB of the log. Measured
    /// on 1M w1 records (BENCHMARKS.md): reading every payload once after a
    /// restart with a cold page cache 5x faster, random gets afterwards
    /// 1.1-1.2x. Above the limit, cold point reads stay 4 KiB (a store much
    /// larger than RAM would otherwise read 2 MiB per get).
    pub fn huge_reads_max(mut self, bytes: u64) -> Self {
        self.huge_reads_max = bytes;
        self
    }

    /// Replaces the file-I/O layer (fault-injection tests).
    #[doc(hidden)]
    pub fn io(mut self, io: Arc<dyn Io>) -> Self {
        self.io = io;
        self
    }
    /// Receives every message the store logs (memory warnings, recovery).
    pub fn log_callback(mut self, cb: LogCallback) -> Self {
        self.logger = Some(cb);
        self
    }
}
