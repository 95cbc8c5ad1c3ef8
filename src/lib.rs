//! # payload_store
//!
//! A crash-safe, append-only store of opaque payloads keyed by 128-bit ids,
//! with a C ABI (`include/payload_store.h`).
//!
//! - **Log**: one append-only file of checksummed records (`format`); the
//!   payload bytes are written once — the log *is* the write-ahead log.
//! - **Index**: id → record offset, in RAM at 12.5–18.8 bytes per payload
//!   (`index/memory.rs`), checkpointed atomically so that open replays only
//!   the log tail (`checkpoint`, `recovery`); or, with
//!   [`IndexBackend::DiskHash`], in an on-disk linear hash table updated in
//!   place (`index/disk.rs`): fixed RAM, one page read per cold lookup.
//! - **Reads**: through a memory map that never moves (`segment`), lock-free
//!   and concurrent with the single writer.
//! - **Compression** per payload by size, LZ4 or ZSTD (`codec`).
//!
//! ```
//! use payloadstore::{Options, PayloadStore, SyncPolicy};
//! let dir = std::env::temp_dir().join(format!("ps-lib-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let store = PayloadStore::open_with_options(&dir, Options::default().sync_policy(SyncPolicy::GroupCommit))?;
//! store.append(1, &vec![b'x'; 4096], None)?; // durable when it returns
//! let s = store.stats();
//! assert_eq!(s.payloads, 1);
//! assert!(s.compression_ratio > 10.0);
//! # drop(store); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), payloadstore::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod batch;
mod checkpoint;
mod codec;
#[doc(hidden)]
pub mod crc;
mod error;
pub mod ffi;
pub mod format;
pub mod index;
#[doc(hidden)]
pub mod io;
mod maps;
mod options;
mod prefault;
mod recovery;
mod segment;
mod stats;
mod store;
mod sys;
#[cfg(test)]
mod test_rng;

pub use codec::{CompressionPolicy, CompressionType};
pub use error::{Error, Result};
pub use index::IndexBackend;
pub use options::{LogCallback, LogLevel, Options, SyncPolicy};
pub use stats::{
    CodecStats, CompactReport, IndexSource, PayloadStats, RecoveryReport, VerifyReport,
};
pub use store::{PayloadStore, MAX_PAYLOAD_LEN};
