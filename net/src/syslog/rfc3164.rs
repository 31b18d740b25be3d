//! Lenient RFC 3164 parsing and its real-world variants; the module docs of
//! `syslog` describe the accepted forms and the relay rule.

use std::cell::Cell;

use memchr::memchr;

use super::{
    digits, fraction, parse_rfc3339, plain, strip_bom, time, Format, ParseContext, ParseError,
    ParseErrorReason, SyslogMessage, HEADER_LAYERS_MAX,
};

/// Longest hostname accepted (RFC 1035 names, RFC 5424 limit).
const HOSTNAME_BYTES_MAX: usize = 255;
/// Longest tag program name; RFC 3164 says 32, real tags run longer.
const TAG_BYTES_MAX: usize = 64;
/// Longest `[pid]` content.
const PROC_ID_BYTES_MAX: usize = 128;
/// Most digits in a leading sequence number.
const SEQUENCE_DIGITS_MAX: usize = 10;
/// Longest Cisco mnemonic (`FAC-SEV-MNEMONIC`).
const MNEMONIC_BYTES_MAX: usize = 96;

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// The month (0-11) a three-letter name gives, in any case. Every byte of
/// a month name is a letter, and `b | 0x20` equals a lowercase letter only
/// for that letter in either case, so one OR and one compare of the packed
/// bytes per month does what a case-insensitive compare does.
fn month_of(name: &[u8]) -> Option<usize> {
    let &[a, b, c] = name else {
        return None;
    };
    let packed = u32::from_le_bytes([a, b, c, 0]) | 0x20_2020;
    MONTHS
        .iter()
        .position(|m| u32::from_le_bytes([m[0], m[1], m[2], 0]) == packed)
}

/// Zone names seen after Cisco and BSD timestamps, with their offsets.
const ZONES: [(&[u8], i32); 12] = [
    (b"UTC", 0),
    (b"GMT", 0),
    (b"EST", -5 * 3600),
    (b"EDT", -4 * 3600),
    (b"CST", -6 * 3600),
    (b"CDT", -5 * 3600),
    (b"MST", -7 * 3600),
    (b"MDT", -6 * 3600),
    (b"PST", -8 * 3600),
    (b"PDT", -7 * 3600),
    (b"CET", 3600),
    (b"CEST", 2 * 3600),
];

/// One parsed timestamp: UTC ns, whether a Cisco clock marker said the
/// clock was unsynchronized, and the offset after it (and its separator).
struct Stamp {
    ns: i64,
    unsynced: bool,
    next: usize,
}

pub(super) fn parse<'a>(
    line: &'a [u8],
    pri: Option<u8>,
    start: usize,
    ctx: &ParseContext,
) -> Result<SyslogMessage<'a>, ParseError> {
    debug_assert!(start <= line.len());
    let whole = line;
    let line = &Line::new(line);
    let mut msg = SyslogMessage::empty(Format::Rfc3164, pri, b"");
    let mut pos = start;
    let mut last_layer_had_host = false;
    for _ in 0..HEADER_LAYERS_MAX {
        let mut cursor = pos;
        let sequence = sequence_at(line, cursor);
        if let Some((_, next)) = sequence {
            cursor = next;
        }
        // Cisco `logging origin-id`: `seq: router1: *Mar  1 ...`.
        let mut origin = None;
        if let Some((host, next)) = origin_id_at(line, cursor) {
            if timestamp_at(line, next, ctx).is_ok_and(|s| s.is_some()) {
                origin = Some(host);
                cursor = next;
            }
        }
        let stamp = match timestamp_at(line, cursor, ctx) {
            Ok(stamp) => stamp,
            // Without a PRI nothing says this is syslog, so a broken
            // timestamp means "not a header" rather than a bad header.
            Err(_) if pri.is_none() => return Ok(plain(whole)),
            Err(e) => return Err(e),
        };
        if sequence.is_none() && stamp.is_none() {
            break;
        }
        if stamp.is_none() && origin.is_none() && msg.timestamp_ns.is_some() {
            // A bare `123:` after a full header: Cisco behind a relay without
            // device timestamps. Take the number, then stop.
            msg.sequence = sequence.map(|(s, _)| s);
            pos = cursor;
            last_layer_had_host = false;
            break;
        }
        let mut host = origin;
        if let Some(stamp) = &stamp {
            cursor = stamp.next;
            if host.is_none() {
                if let Some((h, next)) = hostname_at(line, cursor) {
                    host = Some(h);
                    cursor = next;
                }
            }
        }
        // Merge the layer: the innermost layer is nearest the origin.
        if let Some((s, _)) = sequence {
            msg.sequence = Some(s);
        }
        if let Some(stamp) = stamp {
            if !(stamp.unsynced && msg.timestamp_ns.is_some()) {
                msg.timestamp_ns = Some(stamp.ns);
                msg.clock_unsynced = stamp.unsynced;
            }
        }
        if let Some(h) = host {
            msg.relay_hostname = msg.hostname.or(msg.relay_hostname);
            msg.hostname = Some(h);
        }
        pos = cursor;
        last_layer_had_host = host.is_some();
        if !last_layer_had_host {
            break;
        }
    }

    if last_layer_had_host {
        // `relay1 origin sshd[1]: ...`: a second hostname before the tag.
        if let Some((h, next)) = hostname_at(line, pos) {
            if tag_at(line, next).is_some() {
                msg.relay_hostname = msg.hostname;
                msg.hostname = Some(h);
                pos = next;
            }
        }
    }

    // An ASA puts a lone ` : ` between the hostname and the mnemonic.
    if line[pos..].starts_with(b": %") {
        pos += 2;
    }
    if let Some((mnemonic, next)) = mnemonic_at(line, pos) {
        msg.cisco_mnemonic = Some(mnemonic);
        pos = next;
    } else if pri.is_none() && msg.timestamp_ns.is_none() {
        // No PRI, no timestamp and no mnemonic: not a syslog header at all.
        return Ok(plain(whole));
    } else if let Some(tag) = tag_at(line, pos) {
        msg.app_name = Some(tag.app);
        msg.proc_id = tag.pid;
        pos = tag.next;
    }
    debug_assert!(pos <= line.len());
    msg.message = strip_bom(&whole[pos..]);
    Ok(msg)
}

/// Skips the single space that separates header tokens; the end of the line
/// also ends a token.
fn after_space(line: &[u8], pos: usize) -> Option<usize> {
    match line.get(pos) {
        None => Some(pos),
        Some(b' ') => Some(pos + 1),
        Some(_) => None,
    }
}

/// The line under parse, remembering where the last token it was asked
/// for ends: the header's readers ask for the token at one offset several
/// times (a tag is tried as a sequence number, an origin id, a hostname
/// and a tag; a hostname is also tried as a zone name after the time).
struct Line<'a> {
    bytes: &'a [u8],
    /// `(offset, length)` of the last token found.
    memo: Cell<(usize, usize)>,
}

impl<'a> Line<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Line {
            bytes,
            memo: Cell::new((usize::MAX, 0)),
        }
    }

    /// The token (up to the next space or the end) at `pos`.
    fn token(&self, pos: usize) -> &'a [u8] {
        let (at, len) = self.memo.get();
        if at == pos {
            return &self.bytes[pos..pos + len];
        }
        let Some(rest) = self.bytes.get(pos..) else {
            return b"";
        };
        let len = crate::decode::find_byte(b' ', rest).unwrap_or(rest.len());
        self.memo.set((pos, len));
        &rest[..len]
    }
}

impl std::ops::Deref for Line<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

/// `000123: ` — a leading sequence number; returns the digits and the
/// offset after the space.
fn sequence_at<'a>(line: &Line<'a>, pos: usize) -> Option<(&'a [u8], usize)> {
    let tok = line.token(pos);
    let digits = tok.strip_suffix(b":")?;
    if digits.is_empty()
        || digits.len() > SEQUENCE_DIGITS_MAX
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    Some((digits, after_space(line, pos + tok.len())?))
}

/// `router1: ` before a timestamp (Cisco origin id).
fn origin_id_at<'a>(line: &Line<'a>, pos: usize) -> Option<(&'a [u8], usize)> {
    let tok = line.token(pos);
    let host = tok.strip_suffix(b":")?;
    if !is_hostname(host) || host.contains(&b':') {
        return None;
    }
    Some((host, after_space(line, pos + tok.len())?))
}

fn is_hostname(tok: &[u8]) -> bool {
    !tok.is_empty()
        && tok.len() <= HOSTNAME_BYTES_MAX
        && tok
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

/// A hostname token at `pos` (see the module docs), and the offset after its
/// space. A token ending in `:` is a tag or sequence number, except an IPv6
/// address ending in `::`.
fn hostname_at<'a>(line: &Line<'a>, pos: usize) -> Option<(&'a [u8], usize)> {
    let tok = line.token(pos);
    if !is_hostname(tok) || (tok.ends_with(b":") && !tok.ends_with(b"::")) {
        return None;
    }
    Some((tok, after_space(line, pos + tok.len())?))
}

/// A parsed `prog[pid]: ` tag and the offset of the message after it.
struct Tag<'a> {
    app: &'a [u8],
    pid: Option<&'a [u8]>,
    next: usize,
}

/// `prog[pid]: ` or `prog: ` at `pos`.
fn tag_at<'a>(line: &Line<'a>, pos: usize) -> Option<Tag<'a>> {
    let tok = line.token(pos);
    let inner = tok.strip_suffix(b":")?;
    let (app, pid) = match inner.strip_suffix(b"]") {
        Some(head) => {
            let open = memchr(b'[', head)?;
            let pid = &head[open + 1..];
            if pid.is_empty() || pid.len() > PROC_ID_BYTES_MAX || pid.contains(&b'[') {
                return None;
            }
            (&head[..open], Some(pid))
        }
        None => (inner, None),
    };
    // A leading `%` is a (malformed) Cisco mnemonic, not a program name.
    if app.is_empty()
        || app[0] == b'%'
        || app.len() > TAG_BYTES_MAX
        || app
            .iter()
            .any(|&b| b < 33 || matches!(b, b':' | b'[' | b']'))
    {
        return None;
    }
    let next = after_space(line, pos + tok.len())?;
    Some(Tag { app, pid, next })
}

/// `%FAC-SEV-MNEMONIC: ` (also `%FAC-SUB-SEV-MNEMONIC`): at least three
/// dash-separated parts of letters, digits and `_`, the second-to-last a
/// single severity digit. Returns the mnemonic without `%` and `:`.
fn mnemonic_at<'a>(line: &Line<'a>, pos: usize) -> Option<(&'a [u8], usize)> {
    if line.get(pos) != Some(&b'%') {
        return None;
    }
    let tok = line.token(pos + 1);
    let mnemonic = tok.strip_suffix(b":")?;
    if mnemonic.len() > MNEMONIC_BYTES_MAX {
        return None;
    }
    let mut parts = 0;
    let mut severity_ok = false;
    let mut previous: &[u8] = b"";
    for part in mnemonic.split(|&b| b == b'-') {
        if part.is_empty() || !part.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        severity_ok = matches!(previous, [b'0'..=b'7']);
        previous = part;
        parts += 1;
    }
    if parts < 3 || !severity_ok {
        return None;
    }
    Some((mnemonic, after_space(line, pos + 1 + tok.len())?))
}

/// A timestamp at `pos` with an optional Cisco clock marker (`*`, `.`),
/// followed by an optional `:` and a space (or the end).
///
/// `Ok(None)`: no timestamp here. `Err`: timestamp-shaped but out of range.
fn timestamp_at(
    line: &Line<'_>,
    pos: usize,
    ctx: &ParseContext,
) -> Result<Option<Stamp>, ParseError> {
    let (unsynced, at) = match line.get(pos) {
        Some(b'*' | b'.') => (true, pos + 1),
        _ => (false, pos),
    };
    let parsed = if line.get(at).is_some_and(u8::is_ascii_digit) {
        iso_at(line, at, ctx)?
    } else {
        bsd_at(line, at, ctx)?
    };
    let Some((ns, mut next)) = parsed else {
        return Ok(None);
    };
    if line.get(next) == Some(&b':') {
        next += 1;
    }
    let Some(next) = after_space(line, next) else {
        return Ok(None);
    };
    Ok(Some(Stamp { ns, unsynced, next }))
}

/// RFC 3339 in the 3164 position, offset optional.
fn iso_at(line: &[u8], pos: usize, ctx: &ParseContext) -> Result<Option<(i64, usize)>, ParseError> {
    // Only a date shape counts as an attempt; anything else is no timestamp.
    if digits(line, pos, 4).is_none() || line.get(pos + 4) != Some(&b'-') {
        return Ok(None);
    }
    match parse_rfc3339(line, pos, false, ctx.default_offset_s) {
        Ok(found) => Ok(Some(found)),
        Err(at) if is_shape_complete(line, pos) => {
            Err(ParseError::new(ParseErrorReason::BadTimestamp, at))
        }
        Err(_) => Ok(None),
    }
}

/// Whether `YYYY-MM-DDThh:mm:ss` is fully present, so that a parse failure
/// is a range error rather than "not a timestamp".
fn is_shape_complete(line: &[u8], pos: usize) -> bool {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    line.get(pos..pos + shape.len()).is_some_and(|s| {
        s.iter().zip(shape).all(|(&b, &want)| match want {
            b'd' => b.is_ascii_digit(),
            _ => b.eq_ignore_ascii_case(&want),
        })
    })
}

/// `Mmm dd [yyyy ]hh:mm:ss[.fff][ ZONE]` at `pos`.
fn bsd_at(
    line: &Line<'_>,
    pos: usize,
    ctx: &ParseContext,
) -> Result<Option<(i64, usize)>, ParseError> {
    let Some(month) = line.get(pos..pos + 3).and_then(month_of) else {
        return Ok(None);
    };
    let mut at = pos + 3;
    if line.get(at) != Some(&b' ') {
        return Ok(None);
    }
    at += 1;
    if line.get(at) == Some(&b' ') {
        at += 1;
    }
    let (day, day_len) = match (digits(line, at, 2), digits(line, at, 1)) {
        (Some(d), _) => (d, 2),
        (None, Some(d)) => (d, 1),
        _ => return Ok(None),
    };
    at += day_len;
    if line.get(at) != Some(&b' ') {
        return Ok(None);
    }
    at += 1;
    let mut year = None;
    if let (Some(y), Some(b' ')) = (digits(line, at, 4), line.get(at + 4)) {
        year = Some(i64::from(y));
        at += 5;
    }
    let (Some(hour), Some(b':'), Some(minute), Some(b':'), Some(second)) = (
        digits(line, at, 2),
        line.get(at + 2),
        digits(line, at + 3, 2),
        line.get(at + 5),
        digits(line, at + 6, 2),
    ) else {
        return Ok(None);
    };
    at += 8;
    let Some((nanos, next)) = fraction(line, at) else {
        return Ok(None);
    };
    at = next;
    let mut offset_s = ctx.default_offset_s;
    if line.get(at) == Some(&b' ') {
        let zone = line.token(at + 1);
        let zone = zone.strip_suffix(b":").unwrap_or(zone);
        // Every zone name is three or four capitals; most tokens here are
        // hostnames, refused before the list is searched.
        let known = (matches!(zone.len(), 3 | 4) && zone[0].is_ascii_uppercase())
            .then(|| ZONES.iter().find(|(name, _)| *name == zone))
            .flatten();
        if let Some((name, offset)) = known {
            offset_s = *offset;
            at += 1 + name.len();
        }
    }
    // `Aug 24 05:34:00 CST 1987` (RFC 3164 section 5.4): a year after the
    // time. A four-digit hostname would be misread; none is known.
    if year.is_none() && line.get(at) == Some(&b' ') {
        if let (Some(y), true) = (digits(line, at + 1, 4), after_space(line, at + 5).is_some()) {
            year = Some(i64::from(y));
            at += 5;
        }
    }
    let bad = ParseError::new(ParseErrorReason::BadTimestamp, pos);
    let wall = time::WallTime {
        year: year.unwrap_or(2000),
        month: month as u32 + 1,
        day,
        hour,
        minute,
        second,
        nanos,
    };
    let ns = match year {
        Some(_) => wall.to_unix_ns(i64::from(offset_s)),
        None => time::infer_year_ns(wall, i64::from(offset_s), ctx.now_ns),
    };
    ns.map(|ns| Some((ns, at))).ok_or(bad)
}

#[cfg(test)]
mod tests {
    use super::super::{parse, time::NS_PER_S, Format, ParseContext, ParseErrorReason};

    const NOW_S: i64 = 1_795_780_800; // 2026-11-27T12:00:00Z
    const CTX: ParseContext = ParseContext {
        now_ns: NOW_S * NS_PER_S,
        default_offset_s: 0,
    };

    #[test]
    fn month_names_in_any_case_and_nothing_else() {
        use super::month_of;
        for (i, name) in super::MONTHS.iter().enumerate() {
            assert_eq!(month_of(&name[..]), Some(i));
            assert_eq!(month_of(&name.to_ascii_uppercase()), Some(i));
            let mut title = **name;
            title[0] = title[0].to_ascii_uppercase();
            assert_eq!(month_of(&title), Some(i));
        }
        // Every three-byte string that is no month name in any case: the
        // OR trick must not let a non-letter through (`@` | 0x20 is a
        // backquote, `J` | 0x20 is `j`).
        let mut hits = 0;
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in b"nbrylgptvcNBRYLGPTVC@.\x0e".iter().copied() {
                    let text = [a, b, c];
                    let want = super::MONTHS
                        .iter()
                        .position(|m| text.eq_ignore_ascii_case(&m[..]));
                    assert_eq!(month_of(&text), want, "{text:?}");
                    hits += usize::from(want.is_some());
                }
            }
        }
        assert_eq!(hits, 12 * 8);
        assert_eq!(month_of(b"ja"), None);
        assert_eq!(month_of(b"janu"), None);
    }

    fn s(b: Option<&[u8]>) -> Option<&str> {
        b.map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn classic_line() {
        let m = parse(b"<38>Nov 27 11:59:58 host1 sshd[42]: Accepted", &CTX).unwrap();
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.timestamp_ns, Some((NOW_S - 2) * NS_PER_S));
        assert_eq!(s(m.hostname), Some("host1"));
        assert_eq!(s(m.app_name), Some("sshd"));
        assert_eq!(s(m.proc_id), Some("42"));
        assert_eq!(m.message, b"Accepted");
    }

    #[test]
    fn relay_innermost_wins() {
        let m = parse(
            b"<13>Feb  5 17:32:18 relay1 Feb  5 17:32:17 origin sshd[1]: x",
            &CTX,
        )
        .unwrap();
        assert_eq!(s(m.hostname), Some("origin"));
        assert_eq!(s(m.relay_hostname), Some("relay1"));
        let m = parse(b"<13>Feb  5 17:32:18 relay1 origin sshd[1]: x", &CTX).unwrap();
        assert_eq!(s(m.hostname), Some("origin"));
        assert_eq!(s(m.relay_hostname), Some("relay1"));
    }

    #[test]
    fn cisco_forms() {
        let m = parse(
            b"<189>29: *Mar  1 00:13:03.711: %SYS-5-CONFIG_I: Configured",
            &CTX,
        )
        .unwrap();
        assert_eq!(s(m.sequence), Some("29"));
        assert!(m.clock_unsynced);
        assert_eq!(s(m.cisco_mnemonic), Some("SYS-5-CONFIG_I"));
        assert_eq!(m.message, b"Configured");
        assert_eq!(m.timestamp_ns.map(|t| t % NS_PER_S), Some(711_000_000));
    }

    #[test]
    fn errors_and_plain() {
        let e = parse(b"<13>Feb 30 10:00:00 h x", &CTX).unwrap_err();
        assert_eq!((e.reason, e.offset), (ParseErrorReason::BadTimestamp, 4));
        let m = parse(b"Feb 30 10:00:00 h x", &CTX).unwrap();
        assert_eq!(m.format, Format::Plain);
        let m = parse(b"hello world", &CTX).unwrap();
        assert_eq!((m.format, m.message), (Format::Plain, &b"hello world"[..]));
    }
}
