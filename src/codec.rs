//! Compression: the tag byte stored in every record and the codecs behind it.

use crate::error::{Error, Result};

/// How a payload's bytes are stored. The discriminant is the tag byte written
/// on disk and returned by `append`; it never changes.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompressionType {
    /// Stored as given.
    None = 0,
    /// LZ4 block format (fast; default for 1 KiB – 100 KiB).
    Lz4 = 1,
    /// ZSTD frame (dense; default above 100 KiB).
    Zstd = 2,
}

impl TryFrom<u8> for CompressionType {
    type Error = Error;
    fn try_from(tag: u8) -> Result<Self> {
        match tag {
            0 => Ok(CompressionType::None),
            1 => Ok(CompressionType::Lz4),
            2 => Ok(CompressionType::Zstd),
            t => Err(Error::InvalidCompression(t)),
        }
    }
}

/// Size thresholds and levels of the automatic compression choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressionPolicy {
    /// Payloads shorter than this are stored raw (default 1024).
    pub lz4_min: usize,
    /// Payloads longer than this use ZSTD (default 100 KiB = 102400).
    pub zstd_above: usize,
    /// ZSTD level (default 1: on text-like data it compresses as densely as
    /// level 3 at ~1.6x the speed).
    pub zstd_level: i32,
    /// When false, `None` as the compression argument means "store raw".
    pub enabled: bool,
}

impl Default for CompressionPolicy {
    fn default() -> Self {
        CompressionPolicy {
            lz4_min: 1024,
            zstd_above: 100 * 1024,
            zstd_level: 1,
            enabled: true,
        }
    }
}

impl CompressionPolicy {
    /// The codec the automatic choice picks for a payload of `len` bytes.
    pub fn choose(&self, len: usize) -> CompressionType {
        if !self.enabled || len < self.lz4_min {
            CompressionType::None
        } else if len > self.zstd_above {
            CompressionType::Zstd
        } else {
            CompressionType::Lz4
        }
    }
}

/// Compresses `data` with `codec`, appending the result to `out`. Returns
/// false, and leaves `out` as it was, when the result would not be smaller
/// than `data` (store raw instead).
pub fn compress(
    codec: CompressionType,
    level: i32,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool> {
    let start = out.len();
    let n = match codec {
        CompressionType::None => return Ok(false),
        CompressionType::Lz4 => {
            out.resize(
                start + lz4_flex::block::get_maximum_output_size(data.len()),
                0,
            );
            lz4_flex::block::compress_into(data, &mut out[start..])
                .map_err(|_| Error::InvalidArgument("lz4 compression failed"))
        }
        CompressionType::Zstd => {
            out.resize(start + zstd::zstd_safe::compress_bound(data.len()), 0);
            zstd::bulk::compress_to_buffer(data, &mut out[start..], level)
                .map_err(|_| Error::InvalidArgument("zstd compression failed"))
        }
    };
    match n {
        Ok(n) if n < data.len() => {
            out.truncate(start + n);
            Ok(true)
        }
        other => {
            out.truncate(start);
            other.map(|_| false)
        }
    }
}

/// Decompresses `stored` into exactly `out` (whose length is the raw length).
/// `Err(reason)` when the bytes do not decode to exactly that many bytes.
pub fn decompress_into(
    codec: CompressionType,
    stored: &[u8],
    out: &mut [u8],
) -> std::result::Result<(), &'static str> {
    let n =
        match codec {
            CompressionType::None => {
                if stored.len() != out.len() {
                    return Err("length mismatch");
                }
                out.copy_from_slice(stored);
                stored.len()
            }
            CompressionType::Lz4 => lz4_flex::block::decompress_into(stored, out)
                .map_err(|_| "lz4 data is malformed")?,
            CompressionType::Zstd => zstd::bulk::decompress_to_buffer(stored, out)
                .map_err(|_| "zstd data is malformed")?,
        };
    if n == out.len() {
        Ok(())
    } else {
        Err("decompressed length differs from the recorded raw length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_follows_thresholds() {
        let p = CompressionPolicy::default();
        assert_eq!(p.choose(0), CompressionType::None);
        assert_eq!(p.choose(1023), CompressionType::None);
        assert_eq!(p.choose(1024), CompressionType::Lz4);
        assert_eq!(p.choose(100 * 1024), CompressionType::Lz4);
        assert_eq!(p.choose(100 * 1024 + 1), CompressionType::Zstd);
        assert_eq!(
            CompressionPolicy {
                enabled: false,
                ..p
            }
            .choose(1 << 20),
            CompressionType::None
        );
    }

    #[test]
    fn codecs_round_trip_and_reject_garbage() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
        for codec in [CompressionType::Lz4, CompressionType::Zstd] {
            let mut out = Vec::new();
            assert!(compress(codec, 1, &data, &mut out).unwrap());
            let mut back = vec![0u8; data.len()];
            decompress_into(codec, &out, &mut back).unwrap();
            assert_eq!(back, data);
            let mut short = vec![0u8; data.len() - 1];
            assert!(decompress_into(codec, &out, &mut short).is_err());
            assert!(decompress_into(codec, &[0xff; 16], &mut back).is_err());
        }
        assert!(matches!(
            CompressionType::try_from(3),
            Err(Error::InvalidCompression(3))
        ));
    }
}
