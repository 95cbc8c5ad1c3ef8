//! Saving and loading the index checkpoint (`index.ckpt`).
//!
//! A checkpoint is the index as of a log offset (`covered_end`) that was
//! durable when it was saved. It is written to a temporary file, synced,
//! renamed over the old one and the directory synced, so a crash leaves the
//! old checkpoint or the new one, never a mix. Anything wrong with it — a bad
//! checksum, another log's salt, a `covered_end` past the end of the log or
//! not at a record boundary — makes open ignore it and rebuild from the log.

use crate::error::Result;
use crate::format::{self, CheckpointHeader, CKPT_HEADER_LEN, INDEX_FILE, INDEX_TMP_FILE};
use crate::io::{self, Io};
use std::path::Path;

/// A checkpoint read back from disk.
pub struct Loaded {
    /// Its header.
    pub header: CheckpointHeader,
    /// The slot array.
    pub slots: Vec<u64>,
    /// The high tag bits.
    pub hi: Vec<u16>,
}

/// Writes a checkpoint atomically.
pub fn save(
    io: &dyn Io,
    dir: &Path,
    header: &CheckpointHeader,
    slots: &[u64],
    hi: &[u16],
) -> Result<()> {
    debug_assert_eq!(slots.len(), hi.len());
    let mut body = Vec::with_capacity(slots.len() * 10 + 4);
    for s in slots {
        body.extend_from_slice(&s.to_le_bytes());
    }
    for h in hi {
        body.extend_from_slice(&h.to_le_bytes());
    }
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let head = header.encode();
    io::write_atomic(io, dir, INDEX_TMP_FILE, INDEX_FILE, &[&head, &body])
}

/// Reads the checkpoint. `Ok(None)`: there is none. `Err(reason)`: it exists
/// but cannot be used.
pub fn load(dir: &Path) -> std::result::Result<Option<Loaded>, String> {
    let path = dir.join(INDEX_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let header = CheckpointHeader::decode(&bytes).map_err(str::to_string)?;
    if header.backend != format::CKPT_BACKEND_MEMORY {
        return Err(format!("checkpoint of unknown backend {}", header.backend));
    }
    let n = usize::try_from(header.slots).map_err(|_| "slot count out of range".to_string())?;
    let expected = n
        .checked_mul(10)
        .and_then(|b| b.checked_add(CKPT_HEADER_LEN + 4));
    if expected != Some(bytes.len()) {
        return Err(format!(
            "checkpoint is {} bytes, its header implies {expected:?}",
            bytes.len()
        ));
    }
    let body = &bytes[CKPT_HEADER_LEN..bytes.len() - 4];
    if format::le_u32(&bytes, bytes.len() - 4) != crc32fast::hash(body) {
        return Err("checkpoint body checksum mismatch".to_string());
    }
    let slots = body[..n * 8]
        .chunks_exact(8)
        .map(|c| format::le_u64(c, 0))
        .collect();
    let hi = body[n * 8..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(Some(Loaded { header, slots, hi }))
}

/// Removes a checkpoint (used when it no longer matches the log).
pub fn remove(dir: &Path) -> Result<()> {
    crate::io::remove_if_present(&dir.join(INDEX_FILE))
}
