//! Strict RFC 5424 parsing (section 6): every header field, the timestamp
//! and the structured data are validated; any violation is an error naming
//! the offset.

use memchr::memchr2;

use super::{
    digits, parse_rfc3339, strip_bom, Format, ParseContext, ParseError, ParseErrorReason,
    SyslogMessage,
};

/// RFC 5424 section 6: field length limits.
const HOSTNAME_BYTES_MAX: usize = 255;
const APP_NAME_BYTES_MAX: usize = 48;
const PROC_ID_BYTES_MAX: usize = 128;
const MSG_ID_BYTES_MAX: usize = 32;
const SD_NAME_BYTES_MAX: usize = 32;

/// Whether the bytes after PRI at `pos` are an RFC 5424 VERSION: `1 `, or
/// another 1-3 digit number followed by a space and a 5424-shaped timestamp
/// (`-` or `dddd-`), which is then refused as `bad_version` rather than read
/// as a 3164 message starting with a number.
pub(super) fn looks_like(line: &[u8], pos: usize) -> bool {
    let rest = line.get(pos..).unwrap_or_default();
    if rest.starts_with(b"1 ") {
        return true;
    }
    let n = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n == 0 || n > 3 || rest.get(n) != Some(&b' ') {
        return false;
    }
    let ts = &rest[n + 1..];
    ts.starts_with(b"- ") || (digits(ts, 0, 4).is_some() && ts.get(4) == Some(&b'-'))
}

pub(super) fn parse<'a>(
    line: &'a [u8],
    pri: u8,
    pos: usize,
    ctx: &ParseContext,
) -> Result<SyslogMessage<'a>, ParseError> {
    if !line[pos..].starts_with(b"1 ") {
        return Err(ParseError::new(ParseErrorReason::BadVersion, pos));
    }
    let mut msg = SyslogMessage::empty(Format::Rfc5424, Some(pri), b"");
    let mut pos = pos + 2;

    let (timestamp, next) = header_field(line, pos, usize::MAX)?;
    if timestamp.is_some() {
        match parse_rfc3339(line, pos, true, ctx.default_offset_s) {
            Ok((ns, end)) if end + 1 == next => msg.timestamp_ns = Some(ns),
            Ok((_, end)) => return Err(ParseError::new(ParseErrorReason::BadTimestamp, end)),
            Err(at) => return Err(ParseError::new(ParseErrorReason::BadTimestamp, at)),
        }
    }
    pos = next;
    (msg.hostname, pos) = header_field(line, pos, HOSTNAME_BYTES_MAX)?;
    (msg.app_name, pos) = header_field(line, pos, APP_NAME_BYTES_MAX)?;
    (msg.proc_id, pos) = header_field(line, pos, PROC_ID_BYTES_MAX)?;
    (msg.msg_id, pos) = header_field(line, pos, MSG_ID_BYTES_MAX)?;

    let end = structured_data_end(line, pos)?;
    debug_assert!(end > pos && end <= line.len());
    let sd = &line[pos..end];
    msg.structured_data = if sd == b"-" { None } else { Some(sd) };
    msg.message = match line.get(end) {
        None => b"",
        Some(b' ') => strip_bom(&line[end + 1..]),
        Some(_) => return Err(ParseError::new(ParseErrorReason::BadStructuredData, end)),
    };
    Ok(msg)
}

/// Reads one header field at `pos`, which must be followed by a space:
/// `None` for NILVALUE, otherwise 1 to `len_max` PRINTUSASCII bytes.
/// Returns the value and the offset after the space.
#[inline]
fn header_field(
    line: &[u8],
    pos: usize,
    len_max: usize,
) -> Result<(Option<&[u8]>, usize), ParseError> {
    let rest = line.get(pos..).unwrap_or_default();
    // One pass finds the end and checks every byte; a field that ends
    // anywhere but at a space, or is empty or too long, is read again by
    // `header_field_exact` for the offset of its error.
    let len = crate::decode::printable_len(rest);
    if len > 0 && len <= len_max && rest.get(len) == Some(&b' ') {
        let field = &rest[..len];
        let value = if field == b"-" { None } else { Some(field) };
        return Ok((value, pos + len + 1));
    }
    header_field_exact(line, pos, len_max)
}

/// [`header_field`] a step at a time: the space, then emptiness, then each
/// byte, then the length, so that each error names its own offset.
#[cold]
fn header_field_exact(
    line: &[u8],
    pos: usize,
    len_max: usize,
) -> Result<(Option<&[u8]>, usize), ParseError> {
    let rest = line.get(pos..).unwrap_or_default();
    let Some(len) = crate::decode::find_byte(b' ', rest) else {
        return Err(ParseError::new(ParseErrorReason::BadHeader, line.len()));
    };
    let field = &rest[..len];
    if field.is_empty() {
        return Err(ParseError::new(ParseErrorReason::BadHeader, pos));
    }
    if let Some(i) = field.iter().position(|b| !(33..=126).contains(b)) {
        return Err(ParseError::new(ParseErrorReason::BadHeader, pos + i));
    }
    if field.len() > len_max {
        return Err(ParseError::new(ParseErrorReason::FieldTooLong, pos));
    }
    let value = if field == b"-" { None } else { Some(field) };
    Ok((value, pos + len + 1))
}

/// Validates STRUCTURED-DATA at `pos` (NILVALUE or one or more SD-ELEMENTs)
/// and returns the offset just after it.
///
/// Parameter values end at the first unescaped `"`; inside them a backslash
/// escapes the next byte. An unescaped `]` inside a value is accepted even
/// though RFC 5424 says it must be escaped: the quotes already delimit the
/// value unambiguously and several senders get this wrong.
fn structured_data_end(line: &[u8], pos: usize) -> Result<usize, ParseError> {
    let bad = |at: usize| ParseError::new(ParseErrorReason::BadStructuredData, at);
    match line.get(pos) {
        Some(b'-') => return Ok(pos + 1),
        Some(b'[') => {}
        _ => return Err(bad(pos)),
    }
    let mut at = pos;
    while line.get(at) == Some(&b'[') {
        at = sd_name_end(line, at + 1).ok_or(bad(at + 1))?;
        loop {
            match line.get(at) {
                Some(b']') => {
                    at += 1;
                    break;
                }
                Some(b' ') => {
                    let name_end = sd_name_end(line, at + 1).ok_or(bad(at + 1))?;
                    if line.get(name_end) != Some(&b'=') {
                        return Err(bad(name_end));
                    }
                    if line.get(name_end + 1) != Some(&b'"') {
                        return Err(bad(name_end + 1));
                    }
                    at = param_value_end(line, name_end + 2).ok_or(bad(line.len()))?;
                }
                _ => return Err(bad(at)),
            }
        }
    }
    debug_assert!(at > pos);
    Ok(at)
}

/// Reads an SD-NAME (1-32 PRINTUSASCII except `=`, space, `]`, `"`) at
/// `pos`; returns the offset after it.
fn sd_name_end(line: &[u8], pos: usize) -> Option<usize> {
    let rest = line.get(pos..)?;
    // An indexed loop over a byte table: the chained `take`, `take_while`
    // and `count` it replaces cost ~25 instructions per name byte.
    let limit = rest.len().min(SD_NAME_BYTES_MAX + 1);
    let mut len = 0;
    while len < limit && SD_NAME_BYTES[usize::from(rest[len])] {
        len += 1;
    }
    if len == 0 || len > SD_NAME_BYTES_MAX {
        return None;
    }
    Some(pos + len)
}

/// The bytes of an SD-NAME: PRINTUSASCII except `=`, space, `]`, `"`.
static SD_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 33;
    while b <= 126 {
        table[b] = !matches!(b as u8, b'=' | b']' | b'"');
        b += 1;
    }
    table
};

/// Finds the closing quote of a PARAM-VALUE starting at `pos` (just after
/// the opening quote); returns the offset after it.
fn param_value_end(line: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let rest = line.get(pos..)?;
        let i = memchr2(b'"', b'\\', rest)?;
        if rest[i] == b'"' {
            return Some(pos + i + 1);
        }
        // A backslash escapes the next byte, whatever it is; a trailing
        // backslash leaves the value unterminated.
        pos += i + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, time::NS_PER_S, ParseContext, ParseErrorReason};

    const CTX: ParseContext = ParseContext {
        now_ns: 1_795_780_800 * NS_PER_S,
        default_offset_s: 0,
    };

    fn err(line: &str) -> (ParseErrorReason, usize) {
        let e = parse(line.as_bytes(), &CTX).unwrap_err();
        (e.reason, e.offset)
    }

    #[test]
    fn rfc_example_1() {
        let line = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8";
        let m = parse(line, &CTX).unwrap();
        assert_eq!(m.pri, Some(34));
        assert_eq!(m.timestamp_ns, Some(1_065_910_455_003_000_000));
        assert_eq!(m.hostname, Some(&b"mymachine.example.com"[..]));
        assert_eq!(m.app_name, Some(&b"su"[..]));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.msg_id, Some(&b"ID47"[..]));
        assert_eq!(m.structured_data, None);
        assert_eq!(m.message, b"'su root' failed for lonvick on /dev/pts/8");
    }

    #[test]
    fn structured_data_forms() {
        let m = parse(br#"<165>1 - h a p m [x@1 a="\"\]\\" b=""][y@2] msg"#, &CTX).unwrap();
        assert_eq!(
            m.structured_data,
            Some(&br#"[x@1 a="\"\]\\" b=""][y@2]"#[..])
        );
        assert_eq!(m.message, b"msg");
        let m = parse(b"<165>1 - - - - - [a]", &CTX).unwrap();
        assert_eq!(m.message, b"");
        let m = parse(b"<165>1 - - - - - -", &CTX).unwrap();
        assert_eq!(m.structured_data, None);
    }

    #[test]
    fn errors() {
        use ParseErrorReason::*;
        assert_eq!(err("<13>2 - - - - - -"), (BadVersion, 4));
        assert_eq!(err("<13>1 2003-10-11 h a p m -"), (BadTimestamp, 16));
        assert_eq!(
            err("<13>1 2003-10-11T22:14:15 h a p m -"),
            (BadTimestamp, 25)
        );
        assert_eq!(
            err("<13>1 2003-02-30T22:14:15Z h a p m -"),
            (BadTimestamp, 6)
        );
        assert_eq!(
            err("<13>1 2003-10-11T22:14:15Zx h a p m -"),
            (BadTimestamp, 26)
        );
        assert_eq!(
            err("<13>1 2003-10-11T22:14:15.1234567890Z h a p m -"),
            (BadTimestamp, 25)
        );
        assert_eq!(err("<13>1 -  a p m -"), (BadHeader, 8));
        assert_eq!(err("<13>1 - h a p m"), (BadHeader, 15));
        assert_eq!(err("<13>1 - h\x01 a p m -"), (BadHeader, 9));
        assert_eq!(
            err("<13>1 - h aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa p m -"),
            (FieldTooLong, 10)
        );
        assert_eq!(err("<13>1 - h a p m x"), (BadStructuredData, 16));
        assert_eq!(err("<13>1 - h a p m [a"), (BadStructuredData, 18));
        assert_eq!(err("<13>1 - h a p m [a b]"), (BadStructuredData, 20));
        assert_eq!(err("<13>1 - h a p m [a b=c]"), (BadStructuredData, 21));
        assert_eq!(err(r#"<13>1 - h a p m [a b="c]"#), (BadStructuredData, 24));
        assert_eq!(
            err(r#"<13>1 - h a p m [a b="c\"]"#),
            (BadStructuredData, 26)
        );
        assert_eq!(err("<13>1 - h a p m []"), (BadStructuredData, 17));
        assert_eq!(err("<13>1 - h a p m [a]x"), (BadStructuredData, 19));
        // A second element after a space is MSG, not structured data.
        let m = parse(b"<13>1 - h a p m [a] [b]", &CTX).unwrap();
        assert_eq!(
            (m.structured_data, m.message),
            (Some(&b"[a]"[..]), &b"[b]"[..])
        );
    }

    /// The one-pass field reader against the step-by-step one: every line
    /// of up to six bytes from an alphabet of each byte class, at two
    /// length limits, read from two offsets.
    #[test]
    fn header_fields_read_in_one_pass_as_step_by_step() {
        use super::{header_field, header_field_exact};
        let mut read = 0;
        crate::test_texts::each_text(b"a-~ \x1f\x7f\xff", 6, |line| {
            for len_max in [2, usize::MAX] {
                for pos in [0, 1] {
                    let got = header_field(line, pos, len_max);
                    assert_eq!(
                        got,
                        header_field_exact(line, pos, len_max),
                        "{line:?} {pos}"
                    );
                    read += usize::from(got.is_ok());
                }
            }
        });
        assert!(read > 1000, "{read} fields read");
    }
}
