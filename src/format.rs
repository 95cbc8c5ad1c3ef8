//! The on-disk format: the only module where bytes become integers.
//!
//! A store is a directory:
//!
//! ```text
//! <dir>/LOCK          empty file, flock()ed while a handle is open
//! <dir>/payload.data  the log: file header, then records, append-only
//! <dir>/payload.data.tmp  a log being written (creation, `compact`);
//!                     removed by the next writable open
//! <dir>/compact.tmp/  a DiskHash table being built by `compact` (same)
//! <dir>/index.ckpt    index checkpoint (optional; rebuilt from the log if bad)
//! ```
//!
//! All integers are little-endian and fixed-width.
//!
//! # Log file header (128 bytes)
//!
//! ```text
//! offset size field
//!    0    8  magic  b"PSTORLOG"
//!    8    4  format version (1)
//!   12    4  feature flags (0 in version 1; unknown bits are refused)
//!   16    8  salt: random per log, seeds every record checksum
//!   24    8  generation: 0 for a new log; compaction writes n+1 to a new file
//!   32    8  creation time, unix seconds
//!   40   20  reserved, zero
//!   60    4  crc32 of bytes [0, 60)
//!   64    8  durable watermark: log offset known durable at the previous sync
//!   72    4  crc32 of bytes [64, 72)
//!   76   52  reserved, zero
//!  128       first record
//! ```
//!
//! # Record (32-byte header + stored bytes, no padding)
//!
//! ```text
//! offset size field
//!    0    4  crc32, seeded with the salt, over header bytes [4, 32) + stored bytes
//!    4    1  kind: 'P' put, 'D' delete (tombstone), 'Z' padding (repaired hole)
//!    5    1  compression tag: 0 none, 1 LZ4 block, 2 ZSTD frame
//!    6    2  reserved, zero
//!    8   16  edge id (u128)
//!   24    4  stored length (bytes following the header)
//!   28    4  raw length (payload length after decompression)
//!   32    …  stored bytes
//! ```
//!
//! Zero bytes never form a valid record (kind 0 is invalid), so the
//! preallocated, zero-filled tail of the log reads as "end of log".
//!
//! # Index checkpoint (HashMap backend)
//!
//! ```text
//! offset size field
//!    0    8  magic b"PSTORIDX"
//!    8    4  format version (1)
//!   12    4  backend (1 = in-memory slot table)
//!   16    8  salt of the log it describes
//!   24    8  covered end: log offset up to which the checkpoint reflects the log
//!   32    8  offset of the last record before covered end (0: none)
//!   40    8  saved at, unix seconds
//!   48    8  slot count n
//!   56  8×12 counters (see `Counters`)
//!  152    4  crc32 of bytes [0, 152)
//!  156    4  reserved
//!  160  8×n  slots: u64 = 48-bit record offset | low 16 bits of the hash tag << 48
//!       2×n  high 16 bits of each slot's 32-bit hash tag (for rehashing)
//!  end    4  crc32 of the slot bytes
//! ```

use crate::codec::CompressionType;

/// Name of the log file inside the store directory.
pub const LOG_FILE: &str = "payload.data";
/// Temporary name a new log is written under before the atomic rename.
pub const LOG_TMP_FILE: &str = "payload.data.tmp";
/// Name of the index checkpoint inside the store directory.
pub const INDEX_FILE: &str = "index.ckpt";
/// Temporary name the checkpoint is written under before the atomic rename.
pub const INDEX_TMP_FILE: &str = "index.ckpt.tmp";
/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

/// Magic at the start of the log.
pub const LOG_MAGIC: [u8; 8] = *b"PSTORLOG";
/// Magic at the start of an index checkpoint.
pub const INDEX_MAGIC: [u8; 8] = *b"PSTORIDX";
/// The on-disk format version this build writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Size of the log file header; the first record starts here.
pub const LOG_HEADER_LEN: u64 = 128;
const LH_VERSION: usize = LOG_MAGIC.len();
const LH_FLAGS: usize = LH_VERSION + size_of::<u32>();
const LH_SALT: usize = LH_FLAGS + size_of::<u32>();
const LH_GENERATION: usize = LH_SALT + size_of::<u64>();
const LH_CREATED: usize = LH_GENERATION + size_of::<u64>();
const LH_STATIC_CRC: usize = 60;
/// Offset of the durable-watermark slot in the log header.
pub const LH_WATERMARK: usize = LH_STATIC_CRC + size_of::<u32>();
const LH_WATERMARK_CRC: usize = LH_WATERMARK + size_of::<u64>();
/// Length of the watermark slot (value + crc).
pub const WATERMARK_SLOT_LEN: usize = size_of::<u64>() + size_of::<u32>();

/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 32;
const RH_KIND: usize = size_of::<u32>();
const RH_COMPRESSION: usize = RH_KIND + 1;
const RH_RESERVED: usize = RH_COMPRESSION + 1;
const RH_ID: usize = RH_RESERVED + size_of::<u16>();
const RH_STORED_LEN: usize = RH_ID + size_of::<u128>();
const RH_RAW_LEN: usize = RH_STORED_LEN + size_of::<u32>();
const _: () = assert!(RH_RAW_LEN + size_of::<u32>() == RECORD_HEADER_LEN);

/// Largest payload (raw or stored) a record may hold: 1 GiB.
pub const MAX_PAYLOAD_LEN: u64 = 1 << 30;
/// Largest record on disk.
pub const MAX_RECORD_LEN: u64 = MAX_PAYLOAD_LEN + RECORD_HEADER_LEN as u64;

/// What a record means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A payload for an id.
    Put,
    /// The id was deleted.
    Delete,
    /// Filler written by repair over a damaged region; carries no data.
    Padding,
}

impl RecordKind {
    fn to_byte(self) -> u8 {
        match self {
            RecordKind::Put => b'P',
            RecordKind::Delete => b'D',
            RecordKind::Padding => b'Z',
        }
    }
    fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            b'P' => Some(RecordKind::Put),
            b'D' => Some(RecordKind::Delete),
            b'Z' => Some(RecordKind::Padding),
            _ => None,
        }
    }
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Stored checksum.
    pub crc: u32,
    /// Record kind.
    pub kind: RecordKind,
    /// Compression of the stored bytes.
    pub compression: CompressionType,
    /// Edge id.
    pub id: u128,
    /// Bytes following the header.
    pub stored_len: u32,
    /// Payload length after decompression.
    pub raw_len: u32,
}

impl RecordHeader {
    /// The header of a payload of `raw_len` bytes stored as `stored_len`
    /// bytes with `codec` (`None`: raw); the checksum is set by sealing.
    pub fn put(id: u128, codec: CompressionType, stored_len: usize, raw_len: usize) -> Self {
        RecordHeader {
            crc: 0,
            kind: RecordKind::Put,
            compression: codec,
            id,
            stored_len: stored_len as u32,
            raw_len: raw_len as u32,
        }
    }

    /// The header of a put after compression was tried: `compressed` is the
    /// size `codec` shrank the payload to, or `None` if it did not shrink
    /// (the payload is then stored raw).
    pub fn put_encoded(
        id: u128,
        codec: CompressionType,
        compressed: Option<usize>,
        raw_len: usize,
    ) -> Self {
        match compressed {
            Some(stored) => RecordHeader::put(id, codec, stored, raw_len),
            None => RecordHeader::put(id, CompressionType::None, raw_len, raw_len),
        }
    }

    /// Total bytes of the record on disk.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.stored_len)
    }

    /// Encodes the header with a zero checksum field; `seal` fills it in.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[..RH_KIND].copy_from_slice(&self.crc.to_le_bytes());
        b[RH_KIND] = self.kind.to_byte();
        b[RH_COMPRESSION] = self.compression as u8;
        b[RH_ID..RH_STORED_LEN].copy_from_slice(&self.id.to_le_bytes());
        b[RH_STORED_LEN..RH_RAW_LEN].copy_from_slice(&self.stored_len.to_le_bytes());
        b[RH_RAW_LEN..].copy_from_slice(&self.raw_len.to_le_bytes());
        b
    }

    /// Decodes and sanity-checks a header (not the checksum: see `checksum_ok`).
    pub fn decode(b: &[u8; RECORD_HEADER_LEN]) -> Result<RecordHeader, &'static str> {
        let kind = RecordKind::from_byte(b[RH_KIND]).ok_or("unknown record kind")?;
        let compression =
            CompressionType::try_from(b[RH_COMPRESSION]).map_err(|_| "unknown compression tag")?;
        if b[RH_RESERVED..RH_ID] != [0, 0] {
            return Err("reserved header bytes are not zero");
        }
        let h = RecordHeader {
            crc: le_u32(b, 0),
            kind,
            compression,
            id: u128::from_le_bytes(array(b, RH_ID)),
            stored_len: le_u32(b, RH_STORED_LEN),
            raw_len: le_u32(b, RH_RAW_LEN),
        };
        if u64::from(h.stored_len) > MAX_PAYLOAD_LEN || u64::from(h.raw_len) > MAX_PAYLOAD_LEN {
            return Err("length exceeds the maximum payload size");
        }
        match kind {
            RecordKind::Put
                if compression == CompressionType::None && h.stored_len != h.raw_len =>
            {
                Err("uncompressed record with different stored and raw lengths")
            }
            RecordKind::Delete
                if h.stored_len != 0 || h.raw_len != 0 || compression != CompressionType::None =>
            {
                Err("malformed tombstone")
            }
            RecordKind::Padding
                if h.raw_len != 0 || compression != CompressionType::None || h.id != 0 =>
            {
                Err("malformed padding record")
            }
            _ => Ok(h),
        }
    }

    /// Reads only the id field of an encoded header (hot path of index probes).
    #[inline]
    pub fn peek_id(b: &[u8]) -> u128 {
        u128::from_le_bytes(array(b, RH_ID))
    }
}

/// The 32-bit checksum seed derived from a log's salt.
#[inline]
pub fn crc_seed(salt: u64) -> u32 {
    // Fold both halves so every salt bit matters.
    (salt ^ (salt >> 32)) as u32
}

/// Checksum of a record: header bytes [4, 32) then the stored bytes.
#[inline]
pub fn record_crc(salt: u64, header: &[u8; RECORD_HEADER_LEN], stored: &[u8]) -> u32 {
    let head = crate::crc::update(crc_seed(salt), &header[RH_KIND..]);
    crate::crc::update(head, stored)
}

/// Writes the checksum into an encoded header.
#[inline]
pub fn seal(salt: u64, header: &mut [u8; RECORD_HEADER_LEN], stored: &[u8]) {
    let crc = record_crc(salt, header, stored);
    header[..RH_KIND].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the checksum into a whole encoded record (header and stored bytes
/// contiguous, checksum field ignored); one pass over the bytes.
#[inline]
pub fn seal_record(salt: u64, record: &mut [u8]) {
    let crc = whole_record_crc(salt, record);
    record[..RH_KIND].copy_from_slice(&crc.to_le_bytes());
}

/// Checksum of a whole record (header and stored bytes contiguous): the
/// same as `record_crc` over its two halves.
#[inline]
fn whole_record_crc(salt: u64, record: &[u8]) -> u32 {
    crate::crc::update(crc_seed(salt), &record[RH_KIND..])
}

/// True when the checksum of a whole record (header and stored bytes
/// contiguous, as in the log) matches; one pass over the bytes.
#[inline]
pub fn record_checksum_ok(salt: u64, record: &[u8]) -> bool {
    if record.len() < RECORD_HEADER_LEN {
        return false;
    }
    le_u32(record, 0) == whole_record_crc(salt, record)
}

/// The static part of the log header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHeader {
    /// Format version of the file.
    pub version: u32,
    /// Checksum salt.
    pub salt: u64,
    /// Compaction generation.
    pub generation: u64,
    /// Creation time, unix seconds.
    pub created: u64,
}

impl LogHeader {
    /// Encodes the full 128-byte header with the given watermark.
    pub fn encode(&self, watermark: u64) -> [u8; LOG_HEADER_LEN as usize] {
        let mut b = [0u8; LOG_HEADER_LEN as usize];
        b[..LH_VERSION].copy_from_slice(&LOG_MAGIC);
        b[LH_VERSION..LH_FLAGS].copy_from_slice(&self.version.to_le_bytes());
        b[LH_SALT..LH_GENERATION].copy_from_slice(&self.salt.to_le_bytes());
        b[LH_GENERATION..LH_CREATED].copy_from_slice(&self.generation.to_le_bytes());
        b[LH_CREATED..LH_CREATED + 8].copy_from_slice(&self.created.to_le_bytes());
        let crc = crc32fast::hash(&b[..LH_STATIC_CRC]);
        b[LH_STATIC_CRC..LH_WATERMARK].copy_from_slice(&crc.to_le_bytes());
        b[LH_WATERMARK..LH_WATERMARK + WATERMARK_SLOT_LEN]
            .copy_from_slice(&encode_watermark(watermark));
        b
    }

    /// Decodes the header; returns it with the watermark (0 when its slot is damaged).
    pub fn decode(b: &[u8]) -> Result<(LogHeader, Option<u64>), DecodeError> {
        if b.len() < LOG_HEADER_LEN as usize {
            return Err(DecodeError::NotAStore("file shorter than the log header"));
        }
        if b[..LH_VERSION] != LOG_MAGIC {
            return Err(DecodeError::NotAStore("bad magic number"));
        }
        if le_u32(b, LH_STATIC_CRC) != crc32fast::hash(&b[..LH_STATIC_CRC]) {
            return Err(DecodeError::NotAStore("log header checksum mismatch"));
        }
        let version = le_u32(b, LH_VERSION);
        if version == 0 || version > FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        if le_u32(b, LH_FLAGS) != 0 {
            return Err(DecodeError::Version(version));
        }
        let h = LogHeader {
            version,
            salt: le_u64(b, LH_SALT),
            generation: le_u64(b, LH_GENERATION),
            created: le_u64(b, LH_CREATED),
        };
        let wm = le_u64(b, LH_WATERMARK);
        let wm_ok =
            le_u32(b, LH_WATERMARK_CRC) == crc32fast::hash(&b[LH_WATERMARK..LH_WATERMARK_CRC]);
        Ok((h, wm_ok.then_some(wm)))
    }
}

/// Encodes the watermark slot (value + its crc).
pub fn encode_watermark(watermark: u64) -> [u8; WATERMARK_SLOT_LEN] {
    let mut s = [0u8; WATERMARK_SLOT_LEN];
    s[..8].copy_from_slice(&watermark.to_le_bytes());
    let crc = crc32fast::hash(&s[..8]);
    s[8..].copy_from_slice(&crc.to_le_bytes());
    s
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a store file (or its static header is damaged).
    NotAStore(&'static str),
    /// Written by an unknown format version or with unknown feature flags.
    Version(u32),
}

/// Counters kept with the index and saved in its checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Live payloads.
    pub live: u64,
    /// Bytes of live records on disk (headers included).
    pub live_bytes: u64,
    /// Bytes of dead records (replaced, deleted, tombstones, padding).
    pub dead_bytes: u64,
    /// Live payload count by compression tag.
    pub count_by_codec: [u64; 3],
    /// Raw (uncompressed) bytes of live payloads by compression tag.
    pub raw_by_codec: [u64; 3],
    /// Stored bytes of live payloads by compression tag.
    pub stored_by_codec: [u64; 3],
}

/// Number of u64 words `Counters` encodes to.
pub const COUNTER_WORDS: usize = 12;

impl Counters {
    /// The counters as words, in their on-disk order.
    pub fn words(&self) -> [u64; COUNTER_WORDS] {
        let c = self;
        [
            c.live,
            c.live_bytes,
            c.dead_bytes,
            c.count_by_codec[0],
            c.count_by_codec[1],
            c.count_by_codec[2],
            c.raw_by_codec[0],
            c.raw_by_codec[1],
            c.raw_by_codec[2],
            c.stored_by_codec[0],
            c.stored_by_codec[1],
            c.stored_by_codec[2],
        ]
    }
    /// Inverse of `words`.
    pub fn from_words(w: [u64; COUNTER_WORDS]) -> Counters {
        Counters {
            live: w[0],
            live_bytes: w[1],
            dead_bytes: w[2],
            count_by_codec: [w[3], w[4], w[5]],
            raw_by_codec: [w[6], w[7], w[8]],
            stored_by_codec: [w[9], w[10], w[11]],
        }
    }
}

/// Backend tag of a checkpoint made by the in-memory slot table.
pub const CKPT_BACKEND_MEMORY: u32 = 1;
const CK_VERSION: usize = INDEX_MAGIC.len();
const CK_BACKEND: usize = CK_VERSION + size_of::<u32>();
const CK_SALT: usize = CK_BACKEND + size_of::<u32>();
const CK_COVERED: usize = CK_SALT + size_of::<u64>();
const CK_LAST_RECORD: usize = CK_COVERED + size_of::<u64>();
const CK_SAVED_AT: usize = CK_LAST_RECORD + size_of::<u64>();
const CK_SLOTS: usize = CK_SAVED_AT + size_of::<u64>();
const CK_COUNTERS: usize = CK_SLOTS + size_of::<u64>();
const CK_HEADER_CRC: usize = CK_COUNTERS + COUNTER_WORDS * size_of::<u64>();
/// Size of the checkpoint header; slots follow.
pub const CKPT_HEADER_LEN: usize = CK_HEADER_CRC + 2 * size_of::<u32>();
const _: () = assert!(CKPT_HEADER_LEN == 160);

/// The header of an index checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// Backend that wrote it.
    pub backend: u32,
    /// Salt of the log it belongs to.
    pub salt: u64,
    /// Log offset the checkpoint covers (a record boundary, durable when saved).
    pub covered_end: u64,
    /// Offset of the last record before `covered_end` (0 when none): open
    /// checks that this record is intact and ends exactly at `covered_end`.
    pub last_record: u64,
    /// When it was saved, unix seconds.
    pub saved_at: u64,
    /// Number of u64 slots that follow.
    pub slots: u64,
    /// Counters at `covered_end`.
    pub counters: Counters,
}

impl CheckpointHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; CKPT_HEADER_LEN] {
        let mut b = [0u8; CKPT_HEADER_LEN];
        b[..CK_VERSION].copy_from_slice(&INDEX_MAGIC);
        b[CK_VERSION..CK_BACKEND].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[CK_BACKEND..CK_SALT].copy_from_slice(&self.backend.to_le_bytes());
        b[CK_SALT..CK_COVERED].copy_from_slice(&self.salt.to_le_bytes());
        b[CK_COVERED..CK_LAST_RECORD].copy_from_slice(&self.covered_end.to_le_bytes());
        b[CK_LAST_RECORD..CK_SAVED_AT].copy_from_slice(&self.last_record.to_le_bytes());
        b[CK_SAVED_AT..CK_SLOTS].copy_from_slice(&self.saved_at.to_le_bytes());
        b[CK_SLOTS..CK_COUNTERS].copy_from_slice(&self.slots.to_le_bytes());
        for (i, w) in self.counters.words().iter().enumerate() {
            let at = CK_COUNTERS + i * 8;
            b[at..at + 8].copy_from_slice(&w.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..CK_HEADER_CRC]);
        b[CK_HEADER_CRC..CK_HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies the header.
    pub fn decode(b: &[u8]) -> Result<CheckpointHeader, &'static str> {
        if b.len() < CKPT_HEADER_LEN {
            return Err("checkpoint shorter than its header");
        }
        if b[..CK_VERSION] != INDEX_MAGIC {
            return Err("bad checkpoint magic");
        }
        if le_u32(b, CK_HEADER_CRC) != crc32fast::hash(&b[..CK_HEADER_CRC]) {
            return Err("checkpoint header checksum mismatch");
        }
        if le_u32(b, CK_VERSION) != FORMAT_VERSION {
            return Err("unknown checkpoint version");
        }
        let mut w = [0u64; COUNTER_WORDS];
        for (i, v) in w.iter_mut().enumerate() {
            *v = le_u64(b, CK_COUNTERS + i * 8);
        }
        Ok(CheckpointHeader {
            backend: le_u32(b, CK_BACKEND),
            salt: le_u64(b, CK_SALT),
            covered_end: le_u64(b, CK_COVERED),
            last_record: le_u64(b, CK_LAST_RECORD),
            saved_at: le_u64(b, CK_SAVED_AT),
            slots: le_u64(b, CK_SLOTS),
            counters: Counters::from_words(w),
        })
    }
}

/// Reads a little-endian u32 at `at` (caller guarantees the bounds).
#[inline]
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

/// Reads a little-endian u64 at `at` (caller guarantees the bounds).
#[inline]
pub fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(b, at))
}

#[inline]
fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_header_round_trip_and_checksum() {
        let h = RecordHeader {
            crc: 0,
            kind: RecordKind::Put,
            compression: CompressionType::Lz4,
            id: 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            stored_len: 5,
            raw_len: 9,
        };
        let mut b = h.encode();
        seal(42, &mut b, b"hello");
        let d = RecordHeader::decode(&b).unwrap();
        assert_eq!(d.id, h.id);
        assert_eq!(d.stored_len, 5);
        let record = |b: &[u8], body: &[u8]| [b, body].concat();
        assert!(record_checksum_ok(42, &record(&b, b"hello")));
        assert!(
            !record_checksum_ok(43, &record(&b, b"hello")),
            "salt must change the checksum"
        );
        assert!(!record_checksum_ok(42, &record(&b, b"hellp")));
        assert!(
            RecordHeader::decode(&[0u8; RECORD_HEADER_LEN]).is_err(),
            "zeros are not a record"
        );
    }

    #[test]
    fn log_header_round_trip_and_damage() {
        let h = LogHeader {
            version: 1,
            salt: 7,
            generation: 0,
            created: 99,
        };
        let mut b = h.encode(4096);
        assert_eq!(LogHeader::decode(&b).unwrap(), (h, Some(4096)));
        b[LH_WATERMARK] ^= 1;
        assert_eq!(LogHeader::decode(&b).unwrap(), (h, None));
        b[LH_SALT] ^= 1;
        assert!(matches!(
            LogHeader::decode(&b),
            Err(DecodeError::NotAStore(_))
        ));
    }

    #[test]
    fn checkpoint_header_round_trip() {
        let c = CheckpointHeader {
            backend: CKPT_BACKEND_MEMORY,
            salt: 5,
            covered_end: 1000,
            last_record: 900,
            saved_at: 3,
            slots: 64,
            counters: Counters {
                live: 3,
                dead_bytes: 9,
                count_by_codec: [1, 1, 1],
                ..Counters::default()
            },
        };
        let mut b = c.encode();
        assert_eq!(CheckpointHeader::decode(&b).unwrap(), c);
        b[CK_COVERED] ^= 0x80;
        assert!(CheckpointHeader::decode(&b).is_err());
    }
}
