//! Reading the log at open: replaying records into the index, cutting a torn
//! tail, refusing (or, with repair, patching) damage in the durable part.
//!
//! # What counts as what
//!
//! The scan walks records from a start offset (the checkpoint's `covered_end`,
//! or the first record) while each one decodes, fits in the file and matches
//! its checksum. At the first record that does not:
//! - zeros to the end of the file: the clean end of the log (the file is
//!   preallocated with zeros ahead of the writer). At or past the watermark
//!   only the next MiB is checked: a writable open cuts the file at the end
//!   of the scan anyway, so only the report could differ, while reading up
//!   to a whole growth step of preallocated zeros (1 GiB for a large log)
//!   would make the open after a crash grow with the preallocation instead
//!   of the unsynced tail;
//! - at or past the header's durable watermark: a **torn tail** — a write that
//!   never completed because the process or machine died. It is cut off and
//!   reported in [`RecoveryReport`](crate::RecoveryReport); nothing acknowledged as durable lived there;
//! - below the watermark: **corruption** of data that was durable. Open fails
//!   with `Error::Corrupt` — unless repair is on: then the scan searches for
//!   the next intact record, covers the damaged bytes with a padding record
//!   (so later scans pass over them) and goes on. Repair applies past the
//!   watermark too, so no intact record after a damaged one is lost.

use crate::error::{Error, Result};
use crate::format::{self, RecordHeader, RECORD_HEADER_LEN};
use crate::segment::Segment;

/// The outcome of a scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// End of the last intact record: the new end of the log.
    pub end: u64,
    /// Offset of the last intact record (0 if none was read).
    pub last_record: u64,
    /// Records applied.
    pub records: u64,
    /// Bytes of records applied.
    pub bytes: u64,
    /// Non-zero bytes after `end` that were not records (a torn tail).
    pub torn_tail_bytes: u64,
    /// Regions `(offset, length)` replaced by padding (repair).
    pub repaired: Vec<(u64, u64)>,
}

/// How to treat damage.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// Offset below which every record was durable.
    pub watermark: u64,
    /// Patch damage instead of failing.
    pub repair: bool,
    /// Whether patches may be written to the file.
    pub writable: bool,
}

/// Scans `[start, file_len)`; `apply` receives every intact record in order.
/// The segment's committed end must be `file_len` while scanning.
pub fn scan(
    seg: &Segment,
    salt: u64,
    start: u64,
    file_len: u64,
    mode: Mode,
    mut apply: impl FnMut(u64, &RecordHeader),
) -> Result<Scan> {
    let mut s = Scan {
        end: start,
        ..Scan::default()
    };
    let mut pos = start;
    while pos < file_len {
        match seg.record(salt, pos).map(|(h, _)| h) {
            Ok(h) => {
                apply(pos, &h);
                s.last_record = pos;
                s.records += 1;
                s.bytes += h.record_len();
                pos += h.record_len();
                s.end = pos;
            }
            Err(reason) => {
                // Past the watermark, whatever follows is cut anyway (a
                // writable open truncates the file to the scan's end), so
                // only the report depends on it: look at the next MiB, not
                // at up to a whole growth step of preallocated zeros. Below
                // the watermark zeros are checked to the end of the file.
                let look = if pos >= mode.watermark {
                    file_len.min(pos + ZERO_CHECK_PAST_WATERMARK)
                } else {
                    file_len
                };
                if all_zero(seg, pos, look) {
                    break;
                }
                if mode.repair {
                    match next_intact(seg, salt, pos + RECORD_HEADER_LEN as u64, file_len) {
                        Some(next) => {
                            if mode.writable {
                                write_padding(seg, salt, pos, next - pos)?;
                            }
                            s.repaired.push((pos, next - pos));
                            pos = next;
                            continue;
                        }
                        None => {
                            s.torn_tail_bytes = file_len - pos;
                            break;
                        }
                    }
                }
                if pos < mode.watermark {
                    return Err(Error::Corrupt {
                        offset: pos,
                        reason,
                    });
                }
                s.torn_tail_bytes = file_len - pos;
                break;
            }
        }
    }
    Ok(s)
}

/// How far past the first non-record at or past the watermark the scan
/// checks for zeros (see `scan`).
const ZERO_CHECK_PAST_WATERMARK: u64 = 1 << 20;

fn all_zero(seg: &Segment, from: u64, to: u64) -> bool {
    let mut at = from;
    while at < to {
        let n = (to - at).min(1 << 20);
        match seg.bytes(at, n as usize) {
            Some(b) if b.iter().all(|&x| x == 0) => at += n,
            _ => return false,
        }
    }
    true
}

/// First offset in `[from, file_len)` holding an intact record.
fn next_intact(seg: &Segment, salt: u64, from: u64, file_len: u64) -> Option<u64> {
    (from..file_len.saturating_sub(RECORD_HEADER_LEN as u64 - 1))
        .find(|&p| seg.record(salt, p).is_ok())
}

/// Covers `[off, off + len)` (`len` ≥ header size) with padding records.
fn write_padding(seg: &Segment, salt: u64, mut off: u64, len: u64) -> Result<()> {
    let hl = RECORD_HEADER_LEN as u64;
    let end = off + len;
    while off < end {
        let mut n = (end - off).min(format::MAX_RECORD_LEN);
        if end - off - n > 0 && end - off - n < hl {
            n -= hl; // leave room for one more header
        }
        let stored_len = u32::try_from(n - hl).map_err(|_| Error::Corrupt {
            offset: off,
            reason: "bad padding",
        })?;
        let body = seg
            .bytes(off + hl, stored_len as usize)
            .ok_or(Error::Corrupt {
                offset: off,
                reason: "damaged region out of range",
            })?;
        let mut hdr = RecordHeader {
            crc: 0,
            kind: format::RecordKind::Padding,
            compression: crate::CompressionType::None,
            id: 0,
            stored_len,
            raw_len: 0,
        }
        .encode();
        format::seal(salt, &mut hdr, body);
        seg.overwrite_at_open(off, &hdr)?;
        off += n;
    }
    Ok(())
}
