//! The one error type of the crate. Every variant maps to exactly one C status
//! code (see `ffi::status`), so a variant is never reused for a different
//! meaning.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in `payload_store`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed (other than a full disk).
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The disk (or quota) is full: nothing was appended; stored data is intact.
    NoSpace {
        /// What the store was doing.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
    },
    /// Another handle (this or another process) has the store open. The
    /// lock is an `flock` on the store's lock file, so a process forked by
    /// another thread keeps it until that process execs or exits: right
    /// after a handle closes, a reopen can see `Locked` for that moment.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The directory holds something that is not a payload store log.
    NotAStore {
        /// The offending file.
        path: PathBuf,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The store was written by a newer (or unknown) format version.
    UnsupportedVersion {
        /// Version found on disk.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// A record inside the durable part of the log is damaged. Open with
    /// `Options::repair(true)` to keep every intact record.
    Corrupt {
        /// Byte offset of the damaged record in the log.
        offset: u64,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A stored record's checksum does not match its bytes; they are not returned.
    ChecksumMismatch {
        /// Byte offset of the record in the log.
        offset: u64,
    },
    /// `get_at_offset` was given a location that is not exactly a record of
    /// that length and compression.
    InvalidLocation {
        /// The offset that was asked for.
        offset: u64,
        /// The stored length that was asked for.
        length: u32,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A payload (or its compressed form) exceeds the store's maximum.
    PayloadTooLarge {
        /// Size of the payload.
        len: u64,
        /// Largest payload accepted.
        max: u64,
    },
    /// The caller's buffer cannot hold the payload; `needed` bytes are required.
    BufferTooSmall {
        /// Size the buffer must have.
        needed: usize,
    },
    /// The store was opened read-only (or turned read-only after a failed sync).
    ReadOnly,
    /// An earlier fsync failed: written data may not be durable, so the store
    /// refuses further writes and syncs. Reopen it to recover.
    Poisoned,
    /// A compression tag byte that is not one of `CompressionType`.
    InvalidCompression(u8),
    /// A caller-supplied argument is invalid.
    InvalidArgument(&'static str),
    /// The request cannot be served in this situation (e.g. a read-only
    /// DiskHash open whose index a writable open must repair or rebuild first).
    Unsupported(&'static str),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.raw_os_error() == Some(libc::EDQUOT)
        {
            Error::NoSpace { op, path }
        } else {
            Error::Io { op, path, source }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "I/O error while {op} ({}): {source}", path.display())
            }
            Error::NoSpace { op, path } => {
                write!(f, "no space left on device while {op} ({})", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "store is already open by another handle (lock {})",
                path.display()
            ),
            Error::NotAStore { path, reason } => {
                write!(f, "{} is not a payload store: {reason}", path.display())
            }
            Error::UnsupportedVersion { found, supported } => {
                write!(f, "store format version {found} is not supported (this build reads up to {supported})")
            }
            Error::Corrupt { offset, reason } => {
                write!(f, "corrupt record at log offset {offset}: {reason} (open with repair to keep intact records)")
            }
            Error::ChecksumMismatch { offset } => {
                write!(f, "checksum mismatch in record at log offset {offset}")
            }
            Error::InvalidLocation {
                offset,
                length,
                reason,
            } => {
                write!(
                    f,
                    "no record of stored length {length} at offset {offset}: {reason}"
                )
            }
            Error::PayloadTooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds the maximum of {max}")
            }
            Error::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {needed} bytes needed")
            }
            Error::ReadOnly => write!(f, "store is read-only"),
            Error::Poisoned => write!(
                f,
                "an earlier fsync failed; the store refuses writes until reopened"
            ),
            Error::InvalidCompression(t) => write!(f, "invalid compression tag {t}"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant renders a message naming what went wrong (and where).
    #[test]
    fn every_variant_has_a_message() {
        let p = || PathBuf::from("/x/payload.data");
        let all = [
            Error::io("writing", p(), io::Error::from_raw_os_error(libc::EIO)),
            Error::io("reserving", p(), io::Error::from_raw_os_error(libc::ENOSPC)),
            Error::Locked { path: p() },
            Error::NotAStore {
                path: p(),
                reason: "bad magic number",
            },
            Error::UnsupportedVersion {
                found: 9,
                supported: 1,
            },
            Error::Corrupt {
                offset: 4096,
                reason: "checksum mismatch",
            },
            Error::ChecksumMismatch { offset: 4096 },
            Error::InvalidLocation {
                offset: 7,
                length: 3,
                reason: "nope",
            },
            Error::PayloadTooLarge { len: 5, max: 4 },
            Error::BufferTooSmall { needed: 12 },
            Error::ReadOnly,
            Error::Poisoned,
            Error::InvalidCompression(7),
            Error::InvalidArgument("x"),
            Error::Unsupported("y"),
        ];
        assert!(
            matches!(all[1], Error::NoSpace { .. }),
            "ENOSPC maps to NoSpace"
        );
        let mut seen = std::collections::HashSet::new();
        for e in &all {
            let m = e.to_string();
            assert!(!m.is_empty() && seen.insert(m.clone()), "{m}");
            assert_eq!(
                std::error::Error::source(e).is_some(),
                matches!(e, Error::Io { .. })
            );
        }
        assert!(all[5].to_string().contains("4096"), "offsets are named");
        assert!(
            all[0].to_string().contains("/x/payload.data"),
            "files are named"
        );
    }
}
