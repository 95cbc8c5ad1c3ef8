//! The record checksum: CRC-32 (IEEE, the polynomial of zlib and
//! `crc32fast`), with a kernel of our own for 128 B..2 KiB, the sizes most
//! records have.
//!
//! Why: below 2 KiB `crc32fast` folds 16 bytes per carry-less multiply,
//! about 20 instructions per 64-byte line plus a serial tail. With AVX-512
//! `VPCLMULQDQ` a line is one load, two multiplies and one three-way XOR,
//! and there is no tail. Measured (BENCHMARKS.md, run 5): 1.6x faster on
//! cached 560-1500 B inputs, 1.6x on cold records out of a plain mmap, an
//! index rebuild (open without checkpoint, 1M records) 0.89x the time.
//! Point gets did not move: they wait on memory, not on the checksum.
//!
//! The result is bit for bit `crc32fast`'s (the on-disk format is
//! unchanged); the tests compare the two on every length up to 4 KiB.
//!
//! How the kernel computes it. In a reflected CRC, starting from register
//! `s` equals XOR-ing `s` into the message's first four bytes and starting
//! from zero, and zero bytes in front of a zero-start message change
//! nothing. So the message is padded in front to whole 64-byte blocks and
//! folded: the 64-byte state moves one block forward as, per 128-bit lane
//! `L`, `L.lo * k(544) ^ L.hi * k(480)` (carry-less; `k(n) = reflect(x^n
//! mod P) << 1`), XOR-ed into the next block. The four lanes of the last
//! state then move 384, 256 and 128 bits onto the fourth, and the 16 bytes
//! left are a message with the same zero-start CRC, which a Barrett
//! reduction finishes (a handful of instructions; handing those 16 bytes to
//! `crc32fast` cost about a hundred, see BENCHMARKS.md run 11).

/// The CRC-32 of `data` continuing from `state` (a previous result, or the
/// seed): equal to `crc32fast::Hasher::new_with_initial(state)` updated
/// with `data`.
#[inline]
pub fn update(state: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() >= WIDE_MIN && data.len() < WIDE_MAX && wide_available() {
            // SAFETY: `wide_available` checked every target feature the
            // kernel is compiled with.
            return unsafe { wide::update(state, data) };
        }
    }
    finish(state, data)
}

/// Shorter inputs gain nothing from the wide kernel (one fold at most).
const WIDE_MIN: usize = 128;
/// From 2 KiB `crc32fast` runs its own 16-stream AVX-512 kernel, faster
/// than this one's single stream on long inputs.
const WIDE_MAX: usize = 2048;

fn finish(state: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(state);
    h.update(data);
    h.finalize()
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn wide_available() -> bool {
    // std caches the CPUID answers; each check is a load and a bit test.
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vbmi")
        && std::arch::is_x86_feature_detected!("vpclmulqdq")
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    /// `k(n) = reflect(x^n mod P) << 1`; a 128-bit lane moves `D` bits
    /// forward as `lo * k(D + 32) ^ hi * k(D - 32)`.
    const K544: i64 = 0x1_5444_2bd4;
    const K480: i64 = 0x1_c6e4_1596;
    const K416: i64 = 0x3db1_ecdc;
    const K352: i64 = 0x1_7435_9406;
    const K288: i64 = 0xf1da_05aa;
    const K224: i64 = 0x1_5a54_6366;
    const K160: i64 = 0x1_7519_97d0;
    const K96: i64 = 0xccaa_009e;
    const K64: i64 = 0x1_63cd_6124;
    /// The polynomial (reflected, with its x^32 term) and the Barrett
    /// constant `floor(x^64 / P)` (reflected).
    const POLY: i64 = 0x1_db71_0641;
    const MU: i64 = 0x1_f701_1641;

    static IOTA: [u8; 64] = {
        let mut a = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            a[i] = i as u8;
            i += 1;
        }
        a
    };

    /// # Safety
    /// The CPU must support AVX-512 F, BW and VBMI and VPCLMULQDQ;
    /// `data.len() >= 64`.
    #[target_feature(
        enable = "avx512f",
        enable = "avx512bw",
        enable = "avx512vbmi",
        enable = "vpclmulqdq"
    )]
    pub unsafe fn update(state: u32, data: &[u8]) -> u32 {
        debug_assert!(data.len() >= 64);
        let p = data.as_ptr();
        // Zero bytes in front of a zero-start message do not change its
        // CRC: pad the front so that every block is a whole 64 bytes, and
        // the loop has no tail. The first block holds `64 - pad` bytes.
        let pad = (64 - data.len() % 64) % 64;
        let first = 64 - pad;
        let mask_lo: u64 = if pad == 0 { !0 } else { (1 << first) - 1 };
        let mask_hi: u64 = !0 << pad;
        // SAFETY: the mask selects bytes 0..first of `data` (first <= 64
        // <= len); masked-off bytes are not read.
        let head = unsafe { _mm512_maskz_loadu_epi8(mask_lo, p.cast()) };
        // The register (crc32fast keeps it inverted) goes into the
        // message's first four bytes; with a short first block some of
        // them spill into the second, which the rotation below puts in
        // front (bytes 0..pad) for `carry`.
        let head = _mm512_xor_si512(
            head,
            _mm512_castsi128_si512(_mm_cvtsi32_si128(!state as i32)),
        );
        // SAFETY: IOTA is 64 readable bytes.
        let iota = unsafe { _mm512_loadu_si512(IOTA.as_ptr().cast()) };
        let rot = _mm512_permutexvar_epi8(_mm512_sub_epi8(iota, _mm512_set1_epi8(pad as i8)), head);
        let mut x = _mm512_maskz_mov_epi8(mask_hi, rot);
        let mut carry = _mm512_maskz_mov_epi8(!mask_hi, rot);
        let keys = _mm512_broadcast_i32x4(_mm_set_epi64x(K480, K544));
        let mut at = first;
        while at < data.len() {
            // SAFETY: (len - first) is a multiple of 64, so at + 64 <= len.
            let next = unsafe { _mm512_loadu_si512(p.add(at).cast()) };
            let lo = _mm512_clmulepi64_epi128(x, keys, 0x00);
            let hi = _mm512_clmulepi64_epi128(x, keys, 0x11);
            x = _mm512_ternarylogic_epi64(lo, hi, _mm512_xor_si512(next, carry), 0x96);
            carry = _mm512_setzero_si512();
            at += 64;
        }
        // Four lanes to one: lanes 0, 1, 2 move 384, 256, 128 bits forward
        // onto lane 3.
        let lane_keys = _mm512_set_epi64(0, 0, K96, K160, K224, K288, K352, K416);
        let lo = _mm512_clmulepi64_epi128(x, lane_keys, 0x00);
        let hi = _mm512_clmulepi64_epi128(x, lane_keys, 0x11);
        let moved = _mm512_mask_mov_epi64(_mm512_xor_si512(lo, hi), 0b1100_0000, x);
        let half = _mm256_xor_si256(
            _mm512_castsi512_si256(moved),
            _mm512_extracti64x4_epi64(moved, 1),
        );
        let r = _mm_xor_si128(
            _mm256_castsi256_si128(half),
            _mm256_extracti128_si256(half, 1),
        );
        // Those 16 bytes are a message with the same zero-start CRC. Its
        // low 64 bits move 64 forward onto the high ones (96 bits left),
        // the low 32 of those 32 forward (64 left), and a Barrett
        // reduction takes the remainder; the same steps and constants as
        // `crc32fast`'s PCLMULQDQ kernel, which the tests compare with.
        let low32 = _mm_set_epi32(0, 0, 0, !0);
        let x = _mm_xor_si128(
            _mm_clmulepi64_si128(r, _mm_set_epi64x(K96, 0), 0x10),
            _mm_srli_si128(r, 8),
        );
        let x = _mm_xor_si128(
            _mm_clmulepi64_si128(_mm_and_si128(x, low32), _mm_set_epi64x(0, K64), 0x00),
            _mm_srli_si128(x, 4),
        );
        let pu = _mm_set_epi64x(MU, POLY);
        let t1 = _mm_clmulepi64_si128(_mm_and_si128(x, low32), pu, 0x10);
        let t2 = _mm_clmulepi64_si128(_mm_and_si128(t1, low32), pu, 0x00);
        // crc32fast keeps the register inverted.
        !(_mm_extract_epi32(_mm_xor_si128(x, t2), 1) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = crate::test_rng::XorShift(seed | 1);
        (0..n).map(|_| x.next() as u8).collect()
    }

    #[test]
    fn equals_crc32fast_at_every_length_and_alignment() {
        let data = bytes(4096 + 64, 7);
        for len in 0..=4096 {
            for start in [0, 1, 13, 63] {
                let d = &data[start..start + len];
                for state in [0u32, 0xffff_ffff, 0x1234_5678 ^ len as u32] {
                    assert_eq!(
                        update(state, d),
                        finish(state, d),
                        "len {len} start {start}"
                    );
                }
            }
        }
    }

    #[test]
    fn pieces_chain_like_one_pass() {
        let data = bytes(3000, 11);
        for cut in (0..3000).step_by(97) {
            let a = update(5, &data[..cut]);
            assert_eq!(update(a, &data[cut..]), update(5, &data));
        }
    }

    #[test]
    fn one_flipped_bit_changes_the_result() {
        let data = bytes(1000, 3);
        let good = update(9, &data);
        for bit in (0..8000).step_by(37) {
            let mut d = data.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(update(9, &d), good, "bit {bit}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_wide_kernel_runs_here_when_the_cpu_has_it() {
        // Guards against the dispatch silently never taking the kernel.
        if wide_available() {
            let d = bytes(500, 1);
            // SAFETY: features checked just above; 500 >= 64.
            assert_eq!(unsafe { wide::update(3, &d) }, finish(3, &d));
        }
    }
}
