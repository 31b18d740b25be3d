//! key=value payloads: netfilter/iptables (`IN=eth0 OUT= SRC=...`),
//! FortiGate (`date=... devname="fw1" srcip=...`), and the many loggers
//! that write `k=v` pairs; the fallback after every other decoder.
//!
//! # What this module owns
//!
//! * A pair is a key ([`super::is_key_byte`]s, at most
//!   [`super::KEY_BYTES_MAX`]) directly followed by `=` at the start of a
//!   whitespace-separated token. The value is either a double-quoted string
//!   (`\"` and `\\` unescaped; it may hold spaces) or the rest of the token
//!   up to the next space or tab, with one trailing `,` or `;` dropped
//!   (`user=bob, ip=1.2.3.4`). Empty values are kept (`OUT=` is meaningful
//!   to netfilter rules). Tokens that are not pairs (`SYN`, `[UFW BLOCK]`)
//!   are skipped.
//! * Repeated keys: the first wins, as in the free-text table, which also
//!   stops an attacker-supplied repeat from overriding the real value.
//! * The message is claimed only with at least [`KV_PAIRS_MIN`] pairs, so a
//!   sentence with one `a=b` in it stays text.
//! * The `k: v` and `k:v` forms are read only when the message has no
//!   `k=v` pair and every token of it belongs to such a pair (`src: 1.2.3.4
//!   dst: 5.6.7.8`); otherwise colons are too common in free text
//!   (`error: connection refused`) to mean anything.
//!
//! It must not allocate (unescaped values go to the arena) or interpret
//! values.

use memchr::{memchr, memchr2};

use super::marks::Marks;
use super::{find_byte2, is_key_byte, unescape, Arena, SeenKeys, KEY_BYTES_MAX};
use crate::fields::Fields;

/// Fewest pairs for a message to count as key=value.
pub const KV_PAIRS_MIN: usize = 2;

const QUOTE_ESCAPES: &[(u8, u8)] = &[(b'"', b'"'), (b'\\', b'\\')];

/// Decodes `text` as key=value pairs; returns whether it was claimed. When
/// not claimed nothing was pushed.
pub fn decode<'a>(text: &'a [u8], arena: &mut Arena<'a>, fields: &mut Fields<'a>) -> bool {
    // Cheap refusal: no `=` and no `:` means no pairs of either form.
    if memchr2(b'=', b':', text).is_none() {
        return false;
    }
    let start = fields.len();
    let mut pairs = 0usize;
    if memchr(b'=', text).is_some() {
        pairs = equals_pairs(text, arena, fields, start);
    }
    if pairs == 0 {
        fields.truncate(start);
        pairs = colon_pairs(text, arena, fields, start).unwrap_or(0);
    }
    if pairs < KV_PAIRS_MIN {
        fields.truncate(start);
        return false;
    }
    true
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Length of the token at the start of `text`: up to the first space or
/// tab, or all of it.
fn token_len(text: &[u8]) -> usize {
    find_byte2(b' ', b'\t', text).unwrap_or(text.len())
}

/// Length of the key at the start of `text`, if it is followed by `sep`
/// (which is not a key byte).
#[inline]
fn key_len(text: &[u8], sep: u8) -> Option<usize> {
    debug_assert!(!is_key_byte(sep));
    let limit = text.len().min(KEY_BYTES_MAX + 1);
    let mut len = 0;
    while len < limit && is_key_byte(text[len]) {
        len += 1;
    }
    (len > 0 && len <= KEY_BYTES_MAX && text.get(len) == Some(&sep)).then_some(len)
}

/// Reads a value at the start of `text`: quoted, or up to whitespace.
/// Returns the raw value (without quotes), whether it is quoted and holds
/// a backslash (so needs unescaping), and the bytes consumed.
#[inline(always)]
fn value(text: &[u8]) -> (&[u8], bool, usize) {
    if text.first() == Some(&b'"') {
        let mut at = 1;
        let mut backslash = false;
        while let Some(i) = text
            .get(at..)
            .and_then(|rest| find_byte2(b'"', b'\\', rest))
        {
            if text[at + i] == b'"' {
                return (&text[1..at + i], backslash, at + i + 1);
            }
            backslash = true;
            at += i + 2;
        }
        // Unterminated: the value is the rest, without the quote.
        return (&text[1..], backslash, text.len());
    }
    let len = token_len(text);
    (unquoted(&text[..len]), false, len)
}

/// An unquoted value's token without one trailing `,` or `;`.
#[inline(always)]
fn unquoted(token: &[u8]) -> &[u8] {
    match token.split_last() {
        Some((&(b',' | b';'), rest)) => rest,
        _ => token,
    }
}

/// Pushes one pair unless the key was already seen.
#[inline(always)]
fn push<'a>(
    key: &'a [u8],
    raw: &'a [u8],
    escaped: bool,
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
    seen: &mut SeenKeys,
) {
    debug_assert!(key.iter().all(|&b| is_key_byte(b)));
    // SAFETY: `key_len` took only key bytes, which are all ASCII
    // (`is_key_byte`), and ASCII is UTF-8.
    let key = unsafe { std::str::from_utf8_unchecked(key) };
    if seen.seen(fields, key) {
        return;
    }
    if fields.is_full() {
        fields.count_overflow();
        return;
    }
    // Unquoted values are taken as written, backslashes and all.
    let value = if escaped {
        unescape(raw, QUOTE_ESCAPES, arena).unwrap_or(raw)
    } else {
        raw
    };
    fields.push(key, value);
}

/// The `k=v` pass; returns the pairs read (repeats included). The line's
/// spaces, `=` and quotes are found by [`Marks`], one classification per
/// 64 bytes: a token is searched for its first `=`, space or tab, so one
/// without `=` is skipped without looking at its bytes, and only the bytes
/// before an `=` are checked as a key.
fn equals_pairs<'a>(
    text: &'a [u8],
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
    start: usize,
) -> usize {
    const SPACE: u32 = 1;
    const EQUALS: u32 = 2;
    const QUOTE_OR_BACKSLASH: u32 = 4;
    let mut marks = Marks::new(text, [[b' ', b'\t'], [b'=', b'='], [b'"', b'\\']]);
    let mut seen = SeenKeys::new(start);
    let mut pairs = 0;
    let mut at = 0;
    while at < text.len() {
        if is_space(text[at]) {
            at += 1;
            continue;
        }
        let Some(stop) = marks.find(at, SPACE | EQUALS) else {
            // The last token, without `=`.
            break;
        };
        if text[stop] != b'=' {
            at = stop;
            continue;
        }
        let key = &text[at..stop];
        let value_at = stop + 1;
        if key.is_empty() || key.len() > KEY_BYTES_MAX || !key.iter().all(|&b| is_key_byte(b)) {
            // Not a key: the token runs on past the `=` to a space or tab.
            at = marks.find(value_at, SPACE).unwrap_or(text.len());
            continue;
        }
        // As `value`, by the marks.
        let (raw, escaped, end) = if text.get(value_at) == Some(&b'"') {
            let mut from = value_at + 1;
            let mut backslash = false;
            loop {
                match marks.find(from, QUOTE_OR_BACKSLASH) {
                    Some(quote) if text[quote] == b'"' => {
                        break (&text[value_at + 1..quote], backslash, quote + 1);
                    }
                    Some(escape) => {
                        backslash = true;
                        from = escape + 2;
                    }
                    // Unterminated: the value is the rest, without the quote.
                    None => break (&text[value_at + 1..], backslash, text.len()),
                }
            }
        } else {
            let end = marks.find(value_at, SPACE).unwrap_or(text.len());
            (unquoted(&text[value_at..end]), false, end)
        };
        push(key, raw, escaped, arena, fields, &mut seen);
        pairs += 1;
        at = end;
    }
    pairs
}

/// The `k: v` / `k:v` pass: `None` as soon as a token is not part of a
/// pair.
fn colon_pairs<'a>(
    text: &'a [u8],
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
    start: usize,
) -> Option<usize> {
    let mut seen = SeenKeys::new(start);
    let mut pairs = 0;
    let mut at = 0;
    while at < text.len() {
        if is_space(text[at]) {
            at += 1;
            continue;
        }
        let rest = &text[at..];
        let k = key_len(rest, b':')?;
        let mut value_at = k + 1;
        while rest.get(value_at).is_some_and(|&b| is_space(b)) {
            value_at += 1;
        }
        if value_at >= rest.len() {
            return None;
        }
        let (raw, escaped, used) = value(&rest[value_at..]);
        push(&rest[..k], raw, escaped, arena, fields, &mut seen);
        pairs += 1;
        at += value_at + used;
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_are_ascii() {
        // `push` takes a key as text unchecked because of this.
        for b in 0..=255u8 {
            assert!(!is_key_byte(b) || b.is_ascii(), "{b:#x}");
        }
        assert!(!is_key_byte(b'=') && !is_key_byte(b':'));
    }

    #[test]
    fn key_len_takes_up_to_the_longest_key() {
        let at_limit = format!("{}=v", "k".repeat(KEY_BYTES_MAX));
        assert_eq!(key_len(at_limit.as_bytes(), b'='), Some(KEY_BYTES_MAX));
        let over = format!("{}=v", "k".repeat(KEY_BYTES_MAX + 1));
        assert_eq!(key_len(over.as_bytes(), b'='), None);
        assert_eq!(key_len(b"=v", b'='), None);
        assert_eq!(key_len(b"ab", b'='), None);
        assert_eq!(key_len(b"a/b=c", b'='), None);
        assert_eq!(key_len(b"a:b", b'='), None);
        assert_eq!(key_len(b"a:b", b':'), Some(1));
        assert_eq!(key_len(b"SRC=1.2.3.4", b'='), Some(3));
    }

    #[test]
    fn token_length_on_both_sides_of_the_short_scan() {
        for len in 0..80 {
            for end in [b' ', b'\t'] {
                let mut text = vec![b'x'; len];
                assert_eq!(token_len(&text), len);
                text.push(end);
                text.extend_from_slice(b"more words");
                assert_eq!(token_len(&text), len, "{len}");
            }
        }
    }

    fn run(text: &str) -> Option<Vec<(String, String)>> {
        let mut buffer = [0u8; 4096];
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        if !decode(text.as_bytes(), &mut arena, &mut fields) {
            assert!(fields.is_empty());
            return None;
        }
        Some(
            fields
                .as_slice()
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        )
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn netfilter() {
        assert_eq!(
            run("[UFW BLOCK] IN=eth0 OUT= MAC=00:11 SRC=1.2.3.4 PROTO=TCP SPT=1 DPT=22 SYN URGP=0"),
            pairs(&[
                ("IN", "eth0"),
                ("OUT", ""),
                ("MAC", "00:11"),
                ("SRC", "1.2.3.4"),
                ("PROTO", "TCP"),
                ("SPT", "1"),
                ("DPT", "22"),
                ("URGP", "0"),
            ])
        );
    }

    #[test]
    fn quoted_values_and_first_wins() {
        assert_eq!(
            run(r#"devname="FG 100" msg="say \"hi\" \\ now" srcip=1.2.3.4, srcip=6.6.6.6 x="open"#),
            pairs(&[
                ("devname", "FG 100"),
                ("msg", r#"say "hi" \ now"#),
                ("srcip", "1.2.3.4"),
                ("x", "open"),
            ])
        );
    }

    #[test]
    fn one_pair_is_text() {
        assert_eq!(run("retrying with timeout=5 soon"), None);
        assert_eq!(run("error: connection refused"), None);
        assert_eq!(run("no pairs here"), None);
    }

    #[test]
    fn colon_form_only_when_every_token_is_a_pair() {
        assert_eq!(
            run("src: 1.2.3.4 dst:5.6.7.8 user: \"a b\""),
            pairs(&[("src", "1.2.3.4"), ("dst", "5.6.7.8"), ("user", "a b")])
        );
        assert_eq!(run("src: 1.2.3.4 dst: 5.6.7.8 and more"), None);
        assert_eq!(
            run("time: 12:00:00 host: a"),
            pairs(&[("time", "12:00:00"), ("host", "a")])
        );
    }

    /// The `k=v` pass as first written: a key run checked at every token,
    /// then the value, or the token skipped.
    fn equals_pairs_by_key_run<'a>(
        text: &'a [u8],
        arena: &mut Arena<'a>,
        fields: &mut Fields<'a>,
    ) -> usize {
        let mut seen = SeenKeys::new(fields.len());
        let (mut pairs, mut at) = (0, 0);
        while at < text.len() {
            let rest = &text[at..];
            if is_space(rest[0]) {
                at += 1;
            } else if let Some(k) = key_len(rest, b'=') {
                let (raw, escaped, used) = value(&rest[k + 1..]);
                push(&rest[..k], raw, escaped, arena, fields, &mut seen);
                pairs += 1;
                at += k + 1 + used;
            } else {
                at += token_len(rest);
            }
        }
        pairs
    }

    /// The one-scan pass against the key-run one, over every text of up
    /// to six bytes from an alphabet of each byte class they tell apart.
    #[test]
    fn equals_pairs_read_as_by_key_run() {
        // Both passes over `text`: the pairs each read, and whether they
        // pushed the same fields.
        let compare = |text: &[u8]| {
            let (mut one, mut two) = ([0u8; 1024], [0u8; 1024]);
            let (mut arena_one, mut arena_two) = (Arena::over(&mut one), Arena::over(&mut two));
            let (mut fields_one, mut fields_two) = (Fields::new(), Fields::new());
            let pairs = equals_pairs(text, &mut arena_one, &mut fields_one, 0);
            let want = equals_pairs_by_key_run(text, &mut arena_two, &mut fields_two);
            assert_eq!(pairs, want, "{:?}", String::from_utf8_lossy(text));
            assert_eq!(fields_one.as_slice(), fields_two.as_slice(), "{text:?}");
            pairs
        };
        let mut claimed = 0;
        crate::test_texts::each_text(b"a=  \t\"\\,:/", 6, |text| {
            claimed += usize::from(compare(text) > 0);
        });
        assert!(claimed > 10_000, "{claimed}");
        // Keys at and past the longest, and a long run of key bytes
        // without `=`.
        for text in [
            format!("{}=v b=c", "k".repeat(KEY_BYTES_MAX)),
            format!("{}=v b=c", "k".repeat(KEY_BYTES_MAX + 1)),
            format!("{} b=c d=e", "k".repeat(300)),
        ] {
            compare(text.as_bytes());
        }
        // Texts of a few hundred bytes, whose tokens, quoted values and
        // escapes cross the 64-byte blocks the one-scan pass classifies.
        let pieces: [&[u8]; 10] = [
            b"k=v ",
            b"key=\"a b\" ",
            b"x=\"q\\\"r\" ",
            b"  ",
            b"\t",
            b"word ",
            b"a=b=c ",
            b"=x ",
            b"k=\"open",
            b"n=1, ",
        ];
        crate::test_texts::pieced_texts(&pieces, 2_000, 300, 7, |text| {
            compare(text);
        });
    }
}
