//! Lenient RFC 3164 parsing and its real-world variants; the module docs of
//! `syslog` describe the accepted forms and the relay rule.

use std::cell::Cell;

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

/// Whether `word` is one of [`ZONES`]' names: three or four capitals,
/// which rules out nearly every hostname before the list is read.
fn is_zone_name(word: &[u8]) -> bool {
    matches!(word.len(), 3 | 4)
        && word[0].is_ascii_uppercase()
        && ZONES.iter().any(|(name, _)| *name == word)
}

/// One parsed timestamp: UTC ns, whether a Cisco clock marker said the
/// clock was unsynchronized, and the offset after it (and its separator).
struct Stamp {
    ns: i64,
    unsynced: bool,
    next: usize,
}

/// Parses a 3164-shaped line whose header starts at `start`: the common
/// shape in one pass ([`common_shape`]) when `shortcut` is set and the line
/// has it, else the layered reader ([`layered`]).
pub(super) fn parse<'a>(
    line: &'a [u8],
    pri: Option<u8>,
    start: usize,
    ctx: &ParseContext,
    shortcut: bool,
) -> Result<SyslogMessage<'a>, ParseError> {
    if shortcut {
        if let Some(msg) = common_shape(line, pri, start, ctx) {
            return Ok(msg);
        }
    }
    layered(line, pri, start, ctx)
}

/// The header nearly every sender writes, `Mmm dd hh:mm:ss host
/// app[pid]: msg` (or `app: msg`, or no tag before a structured payload),
/// read in one pass: a time without fraction, zone or year, a hostname, a
/// tag. `None` wherever the line strays from that shape in a way
/// [`layered`] could read differently (a zone or year after the time, a
/// leading sequence number, a relay's or Cisco origin's second header, a
/// mnemonic, a year it cannot place): [`layered`] then reads it. The two
/// agree on every line this accepts (the `rfc3164` fuzz target compares
/// them through [`super::parse_layered`]); the layered reader tries each
/// header token as a sequence number, origin id, timestamp, hostname and
/// tag in turn, which cost about 1,500 instructions for a plain sshd
/// header.
fn common_shape<'a>(
    line: &'a [u8],
    pri: Option<u8>,
    start: usize,
    ctx: &ParseContext,
) -> Option<SyslogMessage<'a>> {
    let head = line.get(start..)?;
    let month = month_of(head.get(..3)?)?;
    if head.get(3) != Some(&b' ') {
        return None;
    }
    let mut at = 4;
    if head.get(at) == Some(&b' ') {
        at += 1;
    }
    let (day, day_len) = match (digits(head, at, 2), digits(head, at, 1)) {
        (Some(d), _) => (d, 2),
        (None, Some(d)) => (d, 1),
        _ => return None,
    };
    at += day_len;
    // ` hh:mm:ss `: a year before the time (`Mmm dd yyyy hh:...`) puts a
    // digit where the first colon is, a fraction or a `:` a byte other
    // than the space after the seconds.
    let time = head.get(at..at + 10)?;
    if time[0] != b' ' || time[3] != b':' || time[6] != b':' || time[9] != b' ' {
        return None;
    }
    let (hour, minute, second) = (
        digits(time, 1, 2)?,
        digits(time, 4, 2)?,
        digits(time, 7, 2)?,
    );
    let host_at = start + at + 10;
    // The hostname, followed by a space: a tag comes next.
    let host_len = crate::decode::find_byte(b' ', &line[host_at..])?;
    let host = &line[host_at..host_at + host_len];
    if !is_hostname(host)
        || host.ends_with(b":")
        // A zone name or a year after the time (`... 05:34:00 CST`,
        // `... 05:34:00 1987`), where the layered reader reads them.
        || is_zone_name(host)
        || (host.len() == 4 && host.iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let tag_pos = host_at + host_len + 1;
    // A digit first could be a sequence number (`123: `), `*` or `.` a
    // Cisco clock marker before a second header's time, `%` or `: %` a
    // mnemonic.
    let first = *line.get(tag_pos)?;
    if first.is_ascii_digit() || matches!(first, b'*' | b'.' | b'%' | b':' | b' ') {
        return None;
    }
    let line_view = Line::new(line);
    let (app, pid, message_at) = match tag_at(&line_view, tag_pos) {
        Some(tag) => {
            // `router1: Mar  1 ...`: a bare name with a colon before a
            // time is a Cisco origin id, read as a second header.
            if tag.pid.is_none()
                && is_hostname(tag.app)
                && timestamp_at(&line_view, tag.next, ctx).is_ok_and(|stamp| stamp.is_some())
            {
                return None;
            }
            (Some(tag.app), tag.pid, tag.next)
        }
        None => {
            // No tag (`devname="fw1" ...`, `CEF:0|...`): the message
            // starts here, unless the token could be a relayed line's
            // second hostname or a tag's kin.
            let token = line_view.token(tag_pos);
            if is_hostname(token) || token.ends_with(b":") {
                return None;
            }
            (None, None, tag_pos)
        }
    };
    let wall = time::WallTime {
        year: 2000,
        month: month as u32 + 1,
        day,
        hour,
        minute,
        second,
        nanos: 0,
    };
    let ns = time::infer_year_ns(wall, i64::from(ctx.default_offset_s), ctx.now_ns)?;
    let mut msg = SyslogMessage::empty(Format::Rfc3164, pri, strip_bom(&line[message_at..]));
    msg.timestamp_ns = Some(ns);
    msg.hostname = Some(host);
    msg.app_name = app;
    msg.proc_id = pid;
    Some(msg)
}

/// The general reader: header layers (a relay's header before the
/// origin's), sequence numbers, Cisco origin ids, clock markers and
/// mnemonics, zones and years after the time (the `syslog` module docs).
fn layered<'a>(
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
        && tok.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

/// The bytes of a hostname token: ASCII letters and digits, `. - _ :`.
static HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':');
        b += 1;
    }
    table
};

/// The bytes of a tag's program name: printable, not `: [ ]`.
static APP_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c >= 33 && !matches!(c, b':' | b'[' | b']');
        b += 1;
    }
    table
};

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

/// `prog[pid]: ` or `prog: ` at `pos`: a program name of [`APP_BYTES`]
/// (not starting with `%`, which is a malformed Cisco mnemonic), then
/// either the colon or a non-empty pid without `[` in brackets and the
/// colon.
fn tag_at<'a>(line: &Line<'a>, pos: usize) -> Option<Tag<'a>> {
    let tok = line.token(pos);
    let inner = tok.strip_suffix(b":")?;
    let app_len = inner
        .iter()
        .position(|&b| !APP_BYTES[usize::from(b)])
        .unwrap_or(inner.len());
    let app = &inner[..app_len];
    let pid = match inner.get(app_len) {
        None => None,
        Some(b'[') => {
            let pid = inner[app_len + 1..].strip_suffix(b"]")?;
            if pid.is_empty() || pid.len() > PROC_ID_BYTES_MAX || pid.contains(&b'[') {
                return None;
            }
            Some(pid)
        }
        Some(_) => return None,
    };
    if app.is_empty() || app[0] == b'%' || app.len() > TAG_BYTES_MAX {
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

    #[test]
    fn every_zone_passes_the_quick_zone_test() {
        for (name, _) in super::ZONES {
            assert!(super::is_zone_name(name), "{name:?}");
        }
        for word in [&b"web-01"[..], b"UTCX1", b"utc", b"UT", b"Cst", b"ABC"] {
            assert!(!super::is_zone_name(word), "{word:?}");
        }
    }

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

    /// Lines of the common shape, and lines one token away from it that the
    /// layered reader reads differently: the shortcut takes the first kind,
    /// leaves the second, and `parse` agrees with `parse_layered` on all.
    #[test]
    fn the_common_shape_is_read_in_one_pass_and_nothing_near_it_is() {
        use super::super::parse_layered;
        let taken: &[&[u8]] = &[
            b"<38>Nov 30 00:00:00 batch-21 sshd[60438]: Accepted publickey for dave6",
            b"<86>Nov  3 23:59:59 cache-15 sshd[4975]: pam_unix(sshd:session): closed",
            b"<78>Nov 3 00:00:00 web-10 CRON[50121]: (postgres) CMD (/usr/bin/x)",
            b"<4>nov 30 00:00:00 app-17 kernel: [2350.727703] [UFW BLOCK] IN=eth0",
            b"<13>Dec 31 23:59:59 h su:",
            b"Feb  5 17:32:18 host app: no PRI",
            b"<13>Feb  5 17:32:18 FW01 app: a capitalised hostname",
            b"<13>Feb  5 17:32:18 10.0.0.1 app[1]: an address",
            b"<13>Feb  5 17:32:18 h app: \xEF\xBB\xBFwith a BOM",
            b"<13>Feb  5 17:32:18 h app[7]: Feb  5 17:32:18 a time after a tag with a pid is text",
            b"<189>Nov 30 00:00:00 fgt-edge devname=\"fgt-edge\" srcip=10.0.1.192 srcport=59101",
            b"<134>Nov 30 00:00:00 fw CEF:0|Palo Alto Networks|PAN-OS|10.1|THREAT|x|5|src=1.2.3.4",
            b"<13>Feb  5 17:32:18 h {\"json\": true}",
        ];
        let left: &[&[u8]] = &[
            b"<13>Feb  5 17:32:18.123 h app: a fraction",
            b"<13>Feb  5 17:32:18: h app: a colon after the time",
            b"<13>Feb  5 2026 17:32:18 h app: a year before the time",
            b"<13>Feb  5 17:32:18 2026 h app: a year after the time",
            b"<13>Aug 24 05:34:00 CST h app: a zone",
            b"<13>Aug 24 05:34:00 CEST h app: a zone",
            b"<13>Feb  5 17:32:18 h 123: a sequence number after the header",
            b"<13>Feb  5 17:32:18 relay origin sshd[1]: a second hostname",
            b"<13>Feb  5 17:32:18 relay router1: *Mar  1 18:46:11 %SYS-5-CONFIG_I: x",
            b"<13>Feb  5 17:32:18 relay router1: Mar  1 18:46:11 r2 app: an origin id",
            b"<13>Feb  5 17:32:18 relay Feb  5 17:32:18 host app: a relayed header",
            b"<13>Feb  5 17:32:18 h %ASA-6-302013: a mnemonic",
            b"<13>Feb  5 17:32:18 h : %ASA-6-302013: an ASA's lone colon",
            b"<13>Feb  5 17:32:18 h:: app: a v6 hostname ending in two colons",
            b"<13>Feb  5 17:32:18 h",
            b"<13>Feb  5 17:32:18 h ",
            b"<13>Feb  5 17:32:18  h app: two spaces",
            b"<13>Feb 30 10:00:00 h app: no such day",
            b"<13>Feb  5 24:00:00 h app: no such hour",
            b"<13>Feb  5 17:32:18 h message without a tag",
            b"<13>Feb  5 17:32:18 h x]: a colon after no tag",
            b"<13>Feb  5 17:32:18 h  two spaces before the message",
            b"<13>Feb  5 17:32:18 fe80::1%eth0 app: a v6 zone is no hostname",
            b"<13>Feb  5 17:32:18 h .app: a clock marker",
            b"000123: Feb  5 17:32:18 h app: a leading sequence number",
        ];
        for (lines, want) in [(taken, true), (left, false)] {
            for &line in lines {
                let shown = String::from_utf8_lossy(line);
                let trimmed = super::super::trim_line_end(line);
                let (pri, start) = match trimmed.first() {
                    Some(b'<') => super::super::parse_pri(trimmed)
                        .map(|(p, at)| (Some(p), at))
                        .unwrap(),
                    _ => (None, 0),
                };
                let shortcut = super::common_shape(trimmed, pri, start, &CTX);
                assert_eq!(shortcut.is_some(), want, "{shown}");
                assert_eq!(parse(line, &CTX), parse_layered(line, &CTX), "{shown}");
                if let Some(msg) = shortcut {
                    assert_eq!(Ok(msg), parse_layered(line, &CTX), "{shown}");
                }
            }
        }
    }

    /// The tag reader against its definition, over every token of up to
    /// six bytes from an alphabet of each byte class it tells apart.
    #[test]
    fn tags_are_read_as_defined() {
        fn defined(tok: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
            let inner = tok.strip_suffix(b":")?;
            let (app, pid) = match inner.strip_suffix(b"]") {
                Some(head) => {
                    let open = head.iter().position(|&b| b == b'[')?;
                    let pid = &head[open + 1..];
                    if pid.is_empty() || pid.contains(&b'[') {
                        return None;
                    }
                    (&head[..open], Some(pid))
                }
                None => (inner, None),
            };
            let bad = |b: u8| b < 33 || matches!(b, b':' | b'[' | b']');
            if app.is_empty() || app[0] == b'%' || app.iter().any(|&b| bad(b)) {
                return None;
            }
            Some((app, pid))
        }
        let mut checked = 0;
        crate::test_texts::each_text(b"a%[]:1\t\x7f", 6, |tok| {
            let line = super::Line::new(tok);
            let read = super::tag_at(&line, 0).map(|t| (t.app, t.pid));
            assert_eq!(read, defined(tok), "{:?}", String::from_utf8_lossy(tok));
            checked += usize::from(read.is_some());
        });
        assert!(checked > 1000, "{checked} tags read");
    }
}
