//! Helpers shared by the decoder targets (included with `#[path]`).

use shardwatch_net::fields::Fields;

/// Asserts every value lies in `input` or the arena's buffer, or is a short `'static`
/// constant (`true`/`false`), and that names are not empty unless JSON
/// allowed it.
pub fn assert_values_within(fields: &Fields<'_>, input: &[u8], arena: std::ops::Range<*const u8>) {
    let input = input.as_ptr_range();
    for (_, value) in fields.as_slice() {
        if value.is_empty() || *value == b"true" || *value == b"false" {
            continue;
        }
        let p = value.as_ptr_range();
        let in_input = input.start <= p.start && p.end <= input.end;
        let in_arena = arena.start <= p.start && p.end <= arena.end;
        assert!(in_input || in_arena, "value outside input and arena");
    }
}

/// The fields as owned pairs, for comparing two runs.
pub fn owned(fields: &Fields<'_>) -> Vec<(String, Vec<u8>)> {
    fields
        .as_slice()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect()
}
