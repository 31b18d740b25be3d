//! ArcSight Common Event Format (CEF) payloads.
//!
//! # What this module owns
//!
//! `CEF:Version|Device Vendor|Device Product|Device Version|Device Event
//! Class ID|Name|Severity|Extension`, read after a syslog header or alone:
//!
//! * The seven header fields become `cef.version`, `cef.device_vendor`,
//!   `cef.device_product`, `cef.device_version`, `cef.signature_id`,
//!   `cef.name` and `cef.severity`, with `\|` and `\\` unescaped. Fewer
//!   than seven `|` is [`DecodeIssue::CefBadHeader`] and nothing is pushed.
//! * The extension is `key=value` pairs separated by spaces. A value runs
//!   until the space before the next `key=` (keys are
//!   [`super::is_key_byte`] runs), so values may hold spaces and even
//!   unescaped `=` inside a word (`request=http://h/?a=b`). Trailing spaces
//!   are trimmed. Escapes in values: `\=`, `\\`, `\|`, `\n` (LF) and `\r`
//!   (CR); other backslashes are kept.
//! * Repeated keys: the first wins.
//! * Custom labels: for every `xLabel=name` whose `x` is also present
//!   (`cs1Label=Proxy cs1=squid`, likewise `cn1`, `cfp1`, `c6a1`,
//!   `flexString1`, `deviceCustomDate1`, ...), the field `name` = value of
//!   `x` is added after all extension pairs; `x` itself is kept.
//!
//! It must not allocate (unescaped text goes to the arena) or interpret
//! values.

use super::marks::Marks;
use super::{is_key_byte, unescape_scanned, Arena, DecodeIssue, SeenKeys, Source, KEY_BYTES_MAX};
use crate::fields::Fields;

/// Header field names, in wire order (after `CEF:`).
pub(crate) const HEADER_NAMES: [&str; 7] = [
    "cef.version",
    "cef.device_vendor",
    "cef.device_product",
    "cef.device_version",
    "cef.signature_id",
    "cef.name",
    "cef.severity",
];

const HEADER_ESCAPES: &[(u8, u8)] = &[(b'|', b'|'), (b'\\', b'\\')];
const EXTENSION_ESCAPES: &[(u8, u8)] = &[
    (b'=', b'='),
    (b'\\', b'\\'),
    (b'|', b'|'),
    (b'n', b'\n'),
    (b'r', b'\r'),
];

/// Decodes `text`, which starts with `CEF:`. On `Err` nothing was pushed.
pub fn decode<'a>(
    text: &'a [u8],
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
) -> Result<Source<'a>, DecodeIssue> {
    let (header, at) = split_header(text).ok_or(DecodeIssue::CefBadHeader)?;
    let extension = &text[at.min(text.len())..];
    let start = fields.len();
    let mut source = Source {
        vendor: b"",
        product: b"",
    };
    for (i, (name, (raw, backslash))) in HEADER_NAMES.iter().zip(header).enumerate() {
        let value = unescape_scanned(raw, backslash, HEADER_ESCAPES, arena).unwrap_or(raw);
        match i {
            1 => source.vendor = value,
            2 => source.product = value,
            _ => {}
        }
        fields.push(name, value);
    }
    pairs(extension, arena, fields, start);
    labels(fields, start);
    Ok(source)
}

/// The seven header fields of `text` (which starts with `CEF:`), each with
/// whether it holds a backslash, and the offset just past the seventh `|`;
/// `None` when there are fewer than seven unescaped `|`.
#[allow(clippy::type_complexity)]
fn split_header(text: &[u8]) -> Option<([(&[u8], bool); 7], usize)> {
    debug_assert!(text.starts_with(b"CEF:"));
    let mut header: [(&[u8], bool); 7] = [(b"", false); 7];
    let mut at = 4;
    for slot in &mut header {
        let (len, backslash) = unescaped_pipe(&text[at..])?;
        *slot = (&text[at..at + len], backslash);
        at += len + 1;
    }
    Some((header, at))
}

/// The vendor and product [`decode`] would give `text` (which starts with
/// `CEF:`) as its source, read from the header alone: `None` when the
/// header is bad (then `decode` fails) or either holds a backslash (an
/// escape `decode` would undo in its arena).
pub fn source(text: &[u8]) -> Option<Source<'_>> {
    let ([_, (vendor, vendor_escaped), (product, product_escaped), ..], _) = split_header(text)?;
    (!vendor_escaped && !product_escaped).then_some(Source { vendor, product })
}

/// Offset of the first `|` not escaped by a backslash, and whether a
/// backslash comes before it.
fn unescaped_pipe(text: &[u8]) -> Option<(usize, bool)> {
    let mut at = 0;
    let mut backslash = false;
    loop {
        let i = super::find_byte2(b'|', b'\\', text.get(at..)?)?;
        if text[at + i] == b'|' {
            return Some((at + i, backslash));
        }
        backslash = true;
        at += i + 2;
    }
}

/// Reads space-separated `key=value` pairs where a value runs until the
/// next ` key=`; pushes them (first occurrence of a key wins, judged among
/// the fields from `start`). Shared with LEEF 1.0 senders that use spaces.
pub(crate) fn pairs<'a>(
    text: &'a [u8],
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
    start: usize,
) {
    let mut seen = SeenKeys::new(start);
    let mut marks = Marks::new(text, [[b'=', b'\\']]);
    let mut at = 0;
    // The key found by the last value's search (start, `=`), so that it is
    // not read again.
    let mut found: Option<(usize, usize)> = None;
    loop {
        let key_len = match found.take() {
            Some((key_start, eq)) => {
                debug_assert_eq!(key_start, at);
                eq - key_start
            }
            None => {
                while text.get(at) == Some(&b' ') {
                    at += 1;
                }
                if at >= text.len() {
                    return;
                }
                // The key: key bytes up to `=`.
                let key_len = text[at..]
                    .iter()
                    .take(KEY_BYTES_MAX + 1)
                    .take_while(|&&b| is_key_byte(b))
                    .count();
                if key_len == 0 || key_len > KEY_BYTES_MAX || text.get(at + key_len) != Some(&b'=')
                {
                    // Not a pair: skip to the next key-shaped start.
                    match next_key_start(&mut marks, text, at, &mut false) {
                        Some(next) => {
                            at = next.0;
                            found = Some(next);
                            continue;
                        }
                        None => return,
                    }
                }
                key_len
            }
        };
        let key = &text[at..at + key_len];
        let value_start = at + key_len + 1;
        let mut escaped = false;
        let (value_end, next) = match next_key_start(&mut marks, text, value_start, &mut escaped) {
            Some(next) => {
                found = Some(next);
                (next.0, next.0)
            }
            None => (text.len(), text.len()),
        };
        let mut raw = &text[value_start..value_end.max(value_start)];
        while let Some((&b' ', rest)) = raw.split_last() {
            raw = rest;
        }
        if let Some(key) = super::key_text(key) {
            if fields.is_full() {
                fields.count_overflow();
            } else if !seen.seen(fields, key) {
                // The search for the next key passed every backslash of
                // the value (and said so): without one there is nothing to
                // unescape.
                let value = unescape_scanned(raw, escaped, EXTENSION_ESCAPES, arena).unwrap_or(raw);
                fields.push(key, value);
            }
        }
        at = next;
    }
}

/// The next ` key=` after `from`: the offsets of the key's first byte and
/// of its `=`. An `=` preceded by a backslash is escaped and does not
/// count. `escaped` is set when a backslash lies between `from` and the
/// key (or the end of `text`, when there is no next key). `marks` are
/// `text`'s `=` and backslashes.
fn next_key_start(
    marks: &mut Marks<'_, 1>,
    text: &[u8],
    from: usize,
    escaped: &mut bool,
) -> Option<(usize, usize)> {
    let mut at = from;
    loop {
        let eq = marks.find(at, 1)?;
        if text[eq] == b'\\' {
            *escaped = true;
            at = eq + 2;
            continue;
        }
        // Walk back over key bytes; a key starts after a space.
        let key_start = text[..eq]
            .iter()
            .rposition(|&b| !is_key_byte(b))
            .map_or(0, |i| i + 1);
        if key_start > from
            && key_start < eq
            && eq - key_start <= KEY_BYTES_MAX
            && text[key_start - 1] == b' '
        {
            return Some((key_start, eq));
        }
        at = eq + 1;
    }
}

/// Adds a field named by each `xLabel` value for the `x` it labels.
fn labels(fields: &mut Fields<'_>, start: usize) {
    let end = fields.len();
    for i in start..end {
        let (key, label) = fields.as_slice()[i];
        let Some(base) = key.strip_suffix("Label") else {
            continue;
        };
        if base.is_empty() || label.is_empty() {
            continue;
        }
        let Ok(label) = std::str::from_utf8(label) else {
            continue;
        };
        let value = fields.as_slice()[start..end]
            .iter()
            .find(|(n, _)| *n == base)
            .map(|(_, v)| *v);
        if let Some(value) = value {
            fields.push(label, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<Vec<(String, String)>, DecodeIssue> {
        let mut buffer = [0u8; 4096];
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        decode(text.as_bytes(), &mut arena, &mut fields)?;
        Ok(fields
            .as_slice()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect())
    }

    fn ext(f: &[(String, String)]) -> Vec<(&str, &str)> {
        f[7..]
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn spec_example() {
        let f = run(r"CEF:0|Security|threatmanager|1.0|100|detected a \| in message|10|src=10.0.0.1 act=blocked a \= dst=1.1.1.1").unwrap();
        assert_eq!(f[1].1, "Security");
        assert_eq!(f[5].1, "detected a | in message");
        assert_eq!(
            ext(&f),
            vec![
                ("src", "10.0.0.1"),
                ("act", "blocked a ="),
                ("dst", "1.1.1.1")
            ]
        );
    }

    #[test]
    fn values_with_spaces_equals_and_escapes() {
        let f = run(r"CEF:0|V|P|1|2|N|5|msg=Detected a threat.\n No action needed  request=http://h/x?a=b&c=d cs1Label=Proxy Name cs1=squid 3 cs1=dup fname=c:\\x\=y").unwrap();
        assert_eq!(
            ext(&f),
            vec![
                ("msg", "Detected a threat.\n No action needed"),
                ("request", "http://h/x?a=b&c=d"),
                ("cs1Label", "Proxy Name"),
                ("cs1", "squid 3"),
                ("fname", r"c:\x=y"),
                ("Proxy Name", "squid 3"),
            ]
        );
    }

    #[test]
    fn bad_headers_push_nothing() {
        assert_eq!(run("CEF:0|a|b|c|d|e"), Err(DecodeIssue::CefBadHeader));
        assert_eq!(run(r"CEF:0|a|b|c|d|e|f\|"), Err(DecodeIssue::CefBadHeader));
        let f = run("CEF:0|a|b|c|d|e|f|").unwrap();
        assert_eq!(f.len(), 7);
        let f = run("CEF:0|a|b|c|d|e|f| junk =x =y k=v").unwrap();
        assert_eq!(ext(&f), vec![("k", "v")]);
    }

    /// The next-key search over the marks against a byte-by-byte one, from
    /// every offset of texts whose keys, escapes and spaces cross the
    /// 64-byte blocks the marks classify.
    #[test]
    fn next_key_start_as_by_byte_search() {
        fn by_bytes(text: &[u8], from: usize) -> (Option<(usize, usize)>, bool) {
            let mut escaped = false;
            let mut at = from;
            while at < text.len() {
                match text[at] {
                    b'\\' => {
                        escaped = true;
                        at += 2;
                    }
                    b'=' => {
                        let key_start = (0..at)
                            .rev()
                            .find(|&i| !is_key_byte(text[i]))
                            .map_or(0, |i| i + 1);
                        if key_start > from
                            && key_start < at
                            && at - key_start <= KEY_BYTES_MAX
                            && text[key_start - 1] == b' '
                        {
                            return (Some((key_start, at)), escaped);
                        }
                        at += 1;
                    }
                    _ => at += 1,
                }
            }
            (None, escaped)
        }
        let pieces: [&[u8]; 9] = [
            b"k=v ",
            b"key=a b ",
            b"x\\=y ",
            b"\\",
            b"  ",
            b"word",
            b"=",
            b"a=b=c ",
            b"msg=say ",
        ];
        crate::test_texts::pieced_texts(&pieces, 500, 200, 11, |text| {
            let mut marks = Marks::new(text, [[b'=', b'\\']]);
            for from in 0..text.len() {
                let mut escaped = false;
                let got = next_key_start(&mut marks, text, from, &mut escaped);
                assert_eq!(
                    (got, escaped),
                    by_bytes(text, from),
                    "{from} {:?}",
                    String::from_utf8_lossy(text)
                );
            }
        });
    }
}
