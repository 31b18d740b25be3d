//! Exhaustive inputs for the tests that check a fast reader against its
//! definition.

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
