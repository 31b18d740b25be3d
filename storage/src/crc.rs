//! CRC32C (Castagnoli) of journal records.
//!
//! Records are a few hundred bytes at arbitrary offsets. The `crc32c`
//! crate aligns its input byte by byte first and runs its parallel kernels
//! only past ~768 bytes, so a record was one serial chain of `crc32`
//! instructions (each waits three cycles for the one before it). Here,
//! with SSE 4.2 and PCLMULQDQ:
//!
//! * the longest prefix that splits into three equal lanes (a multiple of
//!   eight bytes each) runs as three independent chains, interleaved, so
//!   the instructions overlap;
//! * the lanes are joined by linearity: for a CRC state `s` (before the
//!   final inversion), feeding `A‖B‖C` gives
//!   `shift(a, |B|+|C|) ⊕ shift(b, |C|) ⊕ c`, where `a` is the state after
//!   `A` from `s`, `b` and `c` the states after `B` and `C` from zero, and
//!   `shift(v, n)` the state after `n` zero bytes from `v`, that is
//!   `v·x^(8n) mod P`. One carry-less multiply by `x^(8n−33) mod P` and
//!   one `crc32` of the 64-bit product compute it (`crc32` of a word `w`
//!   from zero is `w·x^32 mod P`, and the reflected product carries one
//!   more factor of `x`); the constants for every lane length are computed
//!   at compile time (`SHIFT`);
//! * the rest (under 24 bytes, or past the largest lane) runs serially in
//!   8, 4, 2 and 1 byte steps, from unaligned loads.
//!
//! Without those instructions, the crate computes it. Every path gives the
//! same value as `crc32c::crc32c` (tested over offsets and lengths, and the
//! standard check value).

/// CRC32C's polynomial, bit-reflected.
const POLY: u32 = 0x82F6_3B78;

/// Longest lane, in eight-byte words: a record longer than three lanes
/// runs several three-lane blocks.
const LANE_WORDS_MAX: usize = 64;

/// Shortest lane worth the join (two multiplies and a `crc32`).
const LANE_WORDS_MIN: usize = 2;

/// `SHIFT[w]` = `x^(64·w − 33) mod P` (reflected), the multiplier that
/// shifts a state past `8·w` zero bytes, for `w` in `1..=2·LANE_WORDS_MAX`
/// (a lane, and two lanes). `SHIFT[0]` is unused.
static SHIFT: [u32; 2 * LANE_WORDS_MAX + 1] = shift_table();

/// `v·x^bits mod P` in the reflected representation, one bit at a time.
const fn times_x_pow(mut v: u32, bits: usize) -> u32 {
    let mut i = 0;
    while i < bits {
        v = if v & 1 == 1 { (v >> 1) ^ POLY } else { v >> 1 };
        i += 1;
    }
    v
}

const fn shift_table() -> [u32; 2 * LANE_WORDS_MAX + 1] {
    let mut table = [0u32; 2 * LANE_WORDS_MAX + 1];
    // The polynomial 1 is the top bit; x^31 = x^(64 − 33) for one word.
    let mut k = times_x_pow(1 << 31, 64 - 33);
    let mut w = 1;
    while w <= 2 * LANE_WORDS_MAX {
        table[w] = k;
        k = times_x_pow(k, 64);
        w += 1;
    }
    table
}

/// CRC32C of `bytes` (initial state all ones, final inversion), as
/// `crc32c::crc32c` computes it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
        {
            // SAFETY: both features are present (checked just above).
            return unsafe { crc32c_x86(bytes) };
        }
    }
    crc32c::crc32c(bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
unsafe fn crc32c_x86(bytes: &[u8]) -> u32 {
    let mut crc = u64::from(!0u32);
    let mut rest = bytes;
    loop {
        let lane_words = (rest.len() / 24).min(LANE_WORDS_MAX);
        if lane_words < LANE_WORDS_MIN {
            break;
        }
        let lane = lane_words * 8;
        crc = three_lanes(crc, &rest[..3 * lane], lane_words);
        rest = &rest[3 * lane..];
    }
    serial(crc, rest)
}

/// The state after `block` (three lanes of `lane_words` words) from `crc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
fn three_lanes(crc: u64, block: &[u8], lane_words: usize) -> u64 {
    use std::arch::x86_64::_mm_crc32_u64;
    let lane = lane_words * 8;
    debug_assert_eq!(block.len(), 3 * lane);
    let (first, later) = block.split_at(lane);
    let (second, third) = later.split_at(lane);
    let (mut a, mut b, mut c) = (crc, 0u64, 0u64);
    for ((x, y), z) in first
        .chunks_exact(8)
        .zip(second.chunks_exact(8))
        .zip(third.chunks_exact(8))
    {
        a = _mm_crc32_u64(a, word(x));
        b = _mm_crc32_u64(b, word(y));
        c = _mm_crc32_u64(c, word(z));
    }
    shift(a, SHIFT[2 * lane_words]) ^ shift(b, SHIFT[lane_words]) ^ c
}

/// `state·x^(8n) mod P` given `k` = `SHIFT[n / 8]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
fn shift(state: u64, k: u32) -> u64 {
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_crc32_u64, _mm_cvtsi128_si64, _mm_cvtsi64_si128,
    };
    let product = _mm_clmulepi64_si128::<0>(
        _mm_cvtsi64_si128(state as i64),
        _mm_cvtsi64_si128(i64::from(k)),
    );
    // The product of two 32-bit polynomials fits the low 64 bits.
    _mm_crc32_u64(0, _mm_cvtsi128_si64(product) as u64)
}

/// Eight bytes as a little-endian word (`bytes` is eight long).
#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]))
}

/// The serial chain over `bytes` from state `crc`, inverted at the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn serial(mut crc: u64, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        crc = _mm_crc32_u64(crc, word(w));
    }
    let mut crc = crc as u32;
    let mut rest = words.remainder();
    if rest.len() >= 4 {
        crc = _mm_crc32_u32(
            crc,
            u32::from_le_bytes(rest[..4].try_into().unwrap_or([0; 4])),
        );
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        crc = _mm_crc32_u16(
            crc,
            u16::from_le_bytes(rest[..2].try_into().unwrap_or([0; 2])),
        );
        rest = &rest[2..];
    }
    if let Some(&last) = rest.first() {
        crc = _mm_crc32_u8(crc, last);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn equals_the_crate_over_offsets_and_lengths() {
        let data = data(8_000);
        for start in 0..16 {
            for len in (0..700).chain([767, 768, 1_024, 1_500, 1_535, 1_536, 1_537, 4_099, 7_000]) {
                let bytes = &data[start..start + len];
                assert_eq!(crc32c(bytes), crc32c::crc32c(bytes), "{start} {len}");
            }
        }
        // The standard check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn a_flipped_bit_anywhere_changes_the_crc() {
        // Each lane, each join and the serial tail must see every byte.
        let mut bytes = data(600);
        let whole = crc32c(&bytes);
        for at in 0..bytes.len() {
            bytes[at] ^= 0x10;
            assert_ne!(crc32c(&bytes), whole, "{at}");
            bytes[at] ^= 0x10;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_shift_equals_feeding_zero_words() {
        use std::arch::x86_64::_mm_crc32_u64;
        if !(std::arch::is_x86_feature_detected!("sse4.2")
            && std::arch::is_x86_feature_detected!("pclmulqdq"))
        {
            eprintln!("skipped: no SSE 4.2 and PCLMULQDQ (crc32c() uses the crate)");
            return;
        }
        for state in [1u64, 0x8000_0000, 0xDEAD_BEEF, 0xFFFF_FFFF, 0x1234_5678] {
            let mut fed = state;
            for (words, &k) in SHIFT.iter().enumerate().skip(1) {
                // SAFETY: SSE 4.2 is present (checked above).
                fed = unsafe { _mm_crc32_u64(fed, 0) };
                // SAFETY: both features are present (checked above).
                let shifted = unsafe { shift(state, k) };
                assert_eq!(shifted, fed, "{state:#x} {words}");
            }
        }
    }
}
