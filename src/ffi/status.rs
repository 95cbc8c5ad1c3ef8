//! Status codes of the C API. Values are fixed forever and never reused;
//! they are grouped by subsystem.

use crate::Error;
use std::ffi::c_char;

/// Result of every fallible C function: `PS_OK` (0) or a `PS_*` code.
pub type ps_status = i32;

/// Success.
pub const PS_OK: ps_status = 0;
/// The id has no payload (an outcome, not a failure).
pub const PS_NOT_FOUND: ps_status = 1;

/// A required pointer argument was NULL.
pub const PS_ERR_NULL_ARGUMENT: ps_status = 100;
/// An argument is out of range or inconsistent (e.g. `len > 0` with NULL data).
pub const PS_ERR_INVALID_ARGUMENT: ps_status = 101;
/// A compression integer is not one of `PS_COMPRESSION_*`.
pub const PS_ERR_INVALID_COMPRESSION: ps_status = 102;
/// The caller's buffer is too small; the needed size was written to `*out_len`.
pub const PS_ERR_BUFFER_TOO_SMALL: ps_status = 103;
/// The payload exceeds the maximum payload size.
pub const PS_ERR_PAYLOAD_TOO_LARGE: ps_status = 104;
/// A `ps_location` is not exactly a payload record of the store.
pub const PS_ERR_INVALID_LOCATION: ps_status = 105;
/// A handle is not a live object of the expected type.
pub const PS_ERR_INVALID_HANDLE: ps_status = 106;

/// Another handle (this or another process) has the store open.
pub const PS_ERR_LOCKED: ps_status = 200;
/// The store is read-only.
pub const PS_ERR_READ_ONLY: ps_status = 201;
/// An earlier fsync failed; the handle refuses writes until reopened.
pub const PS_ERR_POISONED: ps_status = 202;
/// The request cannot be served here (e.g. a read-only DiskHash open whose
/// index must first be repaired or rebuilt by a writable open).
pub const PS_ERR_UNSUPPORTED: ps_status = 203;

/// An operating-system I/O call failed.
pub const PS_ERR_IO: ps_status = 300;
/// The disk is full; nothing was written, stored data is intact.
pub const PS_ERR_NO_SPACE: ps_status = 301;

/// The directory does not hold a payload store.
pub const PS_ERR_NOT_A_STORE: ps_status = 400;
/// The store was written by a newer format version.
pub const PS_ERR_UNSUPPORTED_VERSION: ps_status = 401;
/// A record in the durable part of the log is damaged (open with repair).
pub const PS_ERR_CORRUPT: ps_status = 402;
/// A stored record failed its checksum; its bytes were not returned.
pub const PS_ERR_CHECKSUM_MISMATCH: ps_status = 403;

/// A bug: the library panicked. The call had no effect on stored data.
pub const PS_ERR_PANIC: ps_status = 900;

/// Every status with its text (the text is NUL-terminated for C).
const TEXTS: &[(ps_status, &str)] = &[
    (PS_OK, "ok\0"),
    (PS_NOT_FOUND, "not found\0"),
    (
        PS_ERR_NULL_ARGUMENT,
        "a required pointer argument is NULL\0",
    ),
    (PS_ERR_INVALID_ARGUMENT, "invalid argument\0"),
    (PS_ERR_INVALID_COMPRESSION, "unknown compression value\0"),
    (PS_ERR_BUFFER_TOO_SMALL, "buffer too small\0"),
    (PS_ERR_PAYLOAD_TOO_LARGE, "payload too large\0"),
    (
        PS_ERR_INVALID_LOCATION,
        "no payload record at this location\0",
    ),
    (PS_ERR_INVALID_HANDLE, "invalid handle\0"),
    (PS_ERR_LOCKED, "store is locked by another handle\0"),
    (PS_ERR_READ_ONLY, "store is read-only\0"),
    (
        PS_ERR_POISONED,
        "an earlier fsync failed; reopen the store\0",
    ),
    (PS_ERR_UNSUPPORTED, "unsupported\0"),
    (PS_ERR_IO, "I/O error\0"),
    (PS_ERR_NO_SPACE, "no space left on device\0"),
    (PS_ERR_NOT_A_STORE, "not a payload store\0"),
    (
        PS_ERR_UNSUPPORTED_VERSION,
        "unsupported store format version\0",
    ),
    (PS_ERR_CORRUPT, "store is corrupt (open with repair)\0"),
    (PS_ERR_CHECKSUM_MISMATCH, "checksum mismatch\0"),
    (PS_ERR_PANIC, "internal error (panic)\0"),
];

/// The static text of a status.
pub(crate) fn text(status: ps_status) -> *const c_char {
    TEXTS
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(c"unknown status".as_ptr(), |(_, t)| t.as_ptr().cast())
}

/// Every status value, for tests.
pub fn all() -> impl Iterator<Item = ps_status> {
    TEXTS.iter().map(|(s, _)| *s)
}

/// The status of an error; one-to-one with `Error`'s variants.
pub(crate) fn of(e: &Error) -> ps_status {
    match e {
        Error::Io { .. } => PS_ERR_IO,
        Error::NoSpace { .. } => PS_ERR_NO_SPACE,
        Error::Locked { .. } => PS_ERR_LOCKED,
        Error::NotAStore { .. } => PS_ERR_NOT_A_STORE,
        Error::UnsupportedVersion { .. } => PS_ERR_UNSUPPORTED_VERSION,
        Error::Corrupt { .. } => PS_ERR_CORRUPT,
        Error::ChecksumMismatch { .. } => PS_ERR_CHECKSUM_MISMATCH,
        Error::InvalidLocation { .. } => PS_ERR_INVALID_LOCATION,
        Error::PayloadTooLarge { .. } => PS_ERR_PAYLOAD_TOO_LARGE,
        Error::BufferTooSmall { .. } => PS_ERR_BUFFER_TOO_SMALL,
        Error::ReadOnly => PS_ERR_READ_ONLY,
        Error::Poisoned => PS_ERR_POISONED,
        Error::InvalidCompression(_) => PS_ERR_INVALID_COMPRESSION,
        Error::InvalidArgument(_) => PS_ERR_INVALID_ARGUMENT,
        Error::Unsupported(_) => PS_ERR_UNSUPPORTED,
    }
}
