//! Inputs for the tests that check a fast reader against its definition:
//! every short text, or longer ones pieced together.

/// Calls `check` with every text of up to `len_max` bytes drawn from
/// `alphabet` (one byte of each class the readers tell apart), shortest
/// first.
pub(crate) fn each_text(alphabet: &[u8], len_max: u32, mut check: impl FnMut(&[u8])) {
    let mut text = Vec::with_capacity(len_max as usize);
    for len in 0..=len_max {
        for mut n in 0..alphabet.len().pow(len) {
            text.clear();
            for _ in 0..len {
                text.push(alphabet[n % alphabet.len()]);
                n /= alphabet.len();
            }
            check(&text);
        }
    }
}

/// Calls `check` with `count` texts of at least `len_min` bytes, each made
/// of `pieces` in an order drawn from `seed` (a fixed sequence, so a
/// failure repeats): long enough to cross the block and scan boundaries
/// that short texts never reach.
pub(crate) fn pieced_texts(
    pieces: &[&[u8]],
    count: usize,
    len_min: usize,
    seed: u64,
    mut check: impl FnMut(&[u8]),
) {
    let mut state = seed;
    let mut text = Vec::with_capacity(len_min * 2);
    for _ in 0..count {
        text.clear();
        while text.len() < len_min {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            text.extend_from_slice(pieces[(state >> 33) as usize % pieces.len()]);
        }
        check(&text);
    }
}
