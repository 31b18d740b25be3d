//! Where chosen bytes are in a text, as bitmasks 64 bytes at a time.
//!
//! # What this module owns
//!
//! A decoder that walks a line token by token asks, again and again, for
//! the next byte of some small set (`=`, a space, a quote). One search per
//! question costs a set-up each time and reads the same bytes twice (the
//! key's search stops at `=`, the value's starts there). [`Marks`] instead
//! classifies each 64-byte block of the text once, into one bit mask per
//! class of bytes (SSE2 compares on x86-64, a plain loop elsewhere), and
//! answers each question with a shift and a count of trailing zeros.
//!
//! Blocks start at multiples of 64 from the start of the text; a walk that
//! moves forward loads each block once. The last block is read through a
//! zeroed copy, so a class must not hold the byte 0 (whose bits past the end
//! of the text would otherwise be set).

/// A text's byte classes, block by block. `K` classes of up to two bytes
/// each (a one-byte class names its byte twice).
pub(crate) struct Marks<'t, const K: usize> {
    text: &'t [u8],
    classes: [[u8; 2]; K],
    /// Start of the block `masks` describe; `usize::MAX` before the first.
    block: usize,
    /// Per class, bit `i` set when byte `block + i` is in the class.
    masks: [u64; K],
}

impl<'t, const K: usize> Marks<'t, K> {
    pub(crate) fn new(text: &'t [u8], classes: [[u8; 2]; K]) -> Self {
        debug_assert!(classes.iter().flatten().all(|&b| b != 0));
        Marks {
            text,
            classes,
            block: usize::MAX,
            masks: [0; K],
        }
    }

    /// The first offset at or after `from` whose byte is in one of the
    /// classes whose bits `which` sets (bit `k` for class `k`).
    #[inline]
    pub(crate) fn find(&mut self, mut from: usize, which: u32) -> Option<usize> {
        while from < self.text.len() {
            let block = from & !63;
            if block != self.block {
                self.load(block);
            }
            let mut hits = 0;
            for (k, mask) in self.masks.iter().enumerate() {
                if which >> k & 1 != 0 {
                    hits |= mask;
                }
            }
            hits &= u64::MAX << (from & 63);
            if hits != 0 {
                return Some(block + hits.trailing_zeros() as usize);
            }
            from = block + 64;
        }
        None
    }

    /// Classifies the block at `block` (a multiple of 64 within the text).
    #[inline(never)]
    fn load(&mut self, block: usize) {
        let rest = &self.text[block..];
        let mut tail = [0u8; 64];
        let bytes: &[u8; 64] = match rest.first_chunk::<64>() {
            Some(bytes) => bytes,
            None => {
                tail[..rest.len()].copy_from_slice(rest);
                &tail
            }
        };
        self.masks = classify(bytes, &self.classes);
        self.block = block;
    }
}

/// One mask per class over 64 bytes: in two 32-byte halves where the CPU
/// has AVX2 (checked at run time; about half the instructions of the four
/// SSE2 quarters), else in SSE2 quarters.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify<const K: usize>(bytes: &[u8; 64], classes: &[[u8; 2]; K]) -> [u64; K] {
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked above.
        unsafe { classify_avx2(bytes, classes) }
    } else {
        classify_sse2(bytes, classes)
    }
}

/// [`classify`] in 32-byte AVX2 halves.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn classify_avx2<const K: usize>(bytes: &[u8; 64], classes: &[[u8; 2]; K]) -> [u64; K] {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };
    // SAFETY: the two unaligned 32-byte loads are at offsets 0 and 32 of
    // a 64-byte array; AVX2 is the caller's promise.
    unsafe {
        let halves: [__m256i; 2] =
            [0, 32].map(|at| _mm256_loadu_si256(bytes.as_ptr().add(at).cast()));
        let mut masks = [0u64; K];
        for (mask, &[a, b]) in masks.iter_mut().zip(classes) {
            let (a, b) = (_mm256_set1_epi8(a as i8), _mm256_set1_epi8(b as i8));
            for (i, &half) in halves.iter().enumerate() {
                let hits = _mm256_or_si256(_mm256_cmpeq_epi8(half, a), _mm256_cmpeq_epi8(half, b));
                // The move gives 32 bits, one per byte.
                *mask |= u64::from(_mm256_movemask_epi8(hits) as u32) << (32 * i);
            }
        }
        masks
    }
}

/// [`classify`] in 16-byte SSE2 quarters.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify_sse2<const K: usize>(bytes: &[u8; 64], classes: &[[u8; 2]; K]) -> [u64; K] {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline; the four unaligned
    // 16-byte loads are at offsets 0, 16, 32 and 48 of a 64-byte array.
    unsafe {
        let quarters: [__m128i; 4] =
            [0, 16, 32, 48].map(|at| _mm_loadu_si128(bytes.as_ptr().add(at).cast()));
        let mut masks = [0u64; K];
        for (mask, &[a, b]) in masks.iter_mut().zip(classes) {
            let (a, b) = (_mm_set1_epi8(a as i8), _mm_set1_epi8(b as i8));
            for (i, &quarter) in quarters.iter().enumerate() {
                let hits = _mm_or_si128(_mm_cmpeq_epi8(quarter, a), _mm_cmpeq_epi8(quarter, b));
                // The move gives 16 bits, one per byte.
                *mask |= u64::from(_mm_movemask_epi8(hits) as u16) << (16 * i);
            }
        }
        masks
    }
}

/// One mask per class over 64 bytes, a byte at a time: the classification
/// off x86-64, and what the vector ones are tested against.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn classify_bytes<const K: usize>(bytes: &[u8; 64], classes: &[[u8; 2]; K]) -> [u64; K] {
    let mut masks = [0u64; K];
    for (mask, &[a, b]) in masks.iter_mut().zip(classes) {
        for (i, &byte) in bytes.iter().enumerate() {
            *mask |= u64::from(byte == a || byte == b) << i;
        }
    }
    masks
}

/// One mask per class over 64 bytes.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn classify<const K: usize>(bytes: &[u8; 64], classes: &[[u8; 2]; K]) -> [u64; K] {
    classify_bytes(bytes, classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each vector classification (AVX2 where this CPU has it, and SSE2)
    /// gives the byte-by-byte masks, for every class byte at every one of
    /// the 64 places, among other bytes and the byte 0.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_masks_are_the_byte_by_byte_masks() {
        let classes = [[b' ', b'\t'], [b'=', b'='], [b'"', b'\\']];
        let fill = [b'a', 0, 0xFF, b'<', b'~'];
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let mut blocks = Vec::new();
        for at in 0..64 {
            for &byte in b" \t=\"\\" {
                let mut block = [fill[at % fill.len()]; 64];
                block[at] = byte;
                block[(at * 7 + 3) % 64] = byte;
                blocks.push(block);
            }
        }
        let mut block = [0u8; 64];
        for (i, byte) in block.iter_mut().enumerate() {
            *byte = b" \t=\"\\ab"[(i * i + 3 * i) % 7];
        }
        blocks.push(block);
        for block in &blocks {
            let want = classify_bytes(block, &classes);
            assert_eq!(classify_sse2(block, &classes), want, "{block:?}");
            if avx2 {
                // SAFETY: the CPU has AVX2, checked above.
                assert_eq!(unsafe { classify_avx2(block, &classes) }, want, "{block:?}");
            }
        }
    }

    /// `find` against a byte-by-byte search, from every offset of texts of
    /// every length to past two blocks, with class bytes at scattered
    /// places (and the byte 0 in the text, which no class holds).
    #[test]
    fn finds_as_a_byte_by_byte_search() {
        let classes = [[b' ', b'\t'], [b'=', b'='], [b'"', b'\\']];
        let alphabet = [
            b'a', b' ', b'\t', b'=', b'"', b'\\', 0, 0xFF, b'b', b'c', b'd',
        ];
        for len in 0..140 {
            let text: Vec<u8> = (0..len)
                .map(|i| alphabet[(i * i * 7 + i * 3 + len) % alphabet.len()])
                .collect();
            for which in 1..8u32 {
                let mut marks = Marks::new(&text, classes);
                for from in 0..=len + 1 {
                    let want = (from..len).find(|&i| {
                        (0..3).any(|k| which >> k & 1 != 0 && classes[k].contains(&text[i]))
                    });
                    assert_eq!(marks.find(from, which), want, "len {len} from {from}");
                }
                // Backwards too: a block is loaded again when asked.
                for from in (0..len).rev() {
                    let want = (from..len).find(|&i| {
                        (0..3).any(|k| which >> k & 1 != 0 && classes[k].contains(&text[i]))
                    });
                    assert_eq!(marks.find(from, which), want, "len {len} from {from}");
                }
            }
        }
    }
}
