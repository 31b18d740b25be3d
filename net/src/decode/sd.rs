//! RFC 5424 structured data as fields: `[id k="v"]` gives `sd.id.k` = `v`.
//!
//! # What this module owns
//!
//! Reading the structured data that `syslog::rfc5424` already validated,
//! building the `sd.<SD-ID>.<PARAM-NAME>` names in the arena, and
//! unescaping values (`\"`, `\\` and `\]` lose their backslash; any other
//! backslash is kept, RFC 5424 section 6.3.3). Repeated parameters are all
//! kept (RFC 5424 allows them). It must not re-validate or refuse anything:
//! malformed input stops the walk quietly, since the parser has already
//! ruled on the line.

use super::{find_byte, find_byte2, unescape_scanned, Arena};
use crate::fields::Fields;

/// The escapes RFC 5424 defines inside PARAM-VALUE.
const SD_ESCAPES: &[(u8, u8)] = &[(b'"', b'"'), (b'\\', b'\\'), (b']', b']')];

/// Appends the fields of `sd` (validated STRUCTURED-DATA, not `-`).
pub fn decode<'a>(sd: &'a [u8], arena: &mut Arena<'a>, fields: &mut Fields<'a>) {
    let mut at = 0;
    while sd.get(at) == Some(&b'[') {
        let rest = &sd[at + 1..];
        let Some(id_len) = rest.iter().position(|&b| b == b' ' || b == b']') else {
            return;
        };
        let Some(id) = super::key_text(&rest[..id_len]) else {
            return;
        };
        at += 1 + id_len;
        // Parameters: ` name="value"` until `]`.
        while sd.get(at) == Some(&b' ') {
            let rest = &sd[at + 1..];
            let Some(eq) = find_byte(b'=', rest) else {
                return;
            };
            let Some(param) = super::key_text(&rest[..eq]) else {
                return;
            };
            let value_start = at + 1 + eq + 2;
            let Some((value_len, backslash)) = value_len(sd.get(value_start..).unwrap_or_default())
            else {
                return;
            };
            let raw = &sd[value_start..value_start + value_len];
            if fields.is_full() {
                fields.count_overflow();
            } else if let (Some(name), Some(value)) = (
                arena.concat_str(&["sd.", id, ".", param]),
                unescape_scanned(raw, backslash, SD_ESCAPES, arena),
            ) {
                fields.push(name, value);
            }
            at = value_start + value_len + 1;
        }
        if sd.get(at) != Some(&b']') {
            return;
        }
        at += 1;
    }
}

/// Length of a PARAM-VALUE up to its closing, unescaped quote, and
/// whether it holds a backslash.
fn value_len(rest: &[u8]) -> Option<(usize, bool)> {
    let mut at = 0;
    let mut backslash = false;
    loop {
        let i = find_byte2(b'"', b'\\', rest.get(at..)?)?;
        if rest[at + i] == b'"' {
            return Some((at + i, backslash));
        }
        backslash = true;
        at += i + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unescaped_values() {
        let sd = br#"[exampleSDID@32473 iut="3" eventSource="App \"x\" \] \\ \n"][meta seq="1" seq="2"][empty]"#;
        let mut buffer = [0u8; 512];
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        decode(sd, &mut arena, &mut fields);
        let got: Vec<(&str, &[u8])> = fields.as_slice().to_vec();
        assert_eq!(
            got,
            vec![
                ("sd.exampleSDID@32473.iut", &b"3"[..]),
                (
                    "sd.exampleSDID@32473.eventSource",
                    &br#"App "x" ] \ \n"#[..]
                ),
                ("sd.meta.seq", &b"1"[..]),
                ("sd.meta.seq", &b"2"[..]),
            ]
        );
    }
}
