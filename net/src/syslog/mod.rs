//! Syslog header parsing: RFC 5424, RFC 3164 and the real-world variants of
//! 3164, over raw bytes, with no heap allocation and no regex.
//!
//! # What this module owns
//!
//! It turns one already-framed line into a [`SyslogMessage`] whose fields are
//! slices of that line, or into a [`ParseError`] naming a reason (a metric
//! label and quarantine reason, see [`ParseErrorReason::as_str`]) and the byte
//! offset where parsing failed. It must not allocate, read a clock (the
//! receive time comes in [`ParseContext`]), decode payloads (JSON, CEF, ...)
//! or know about rules. Bytes are never required to be UTF-8.
//!
//! # Line hygiene
//!
//! Trailing `\r`, `\n` and NUL bytes are trimmed first; a line that is empty
//! after trimming is an [`ParseErrorReason::Empty`] error. A UTF-8 byte order
//! mark at the start of MSG is stripped.
//!
//! # Dispatch
//!
//! * `<PRI>` followed by `1 ` is RFC 5424 and parsed strictly: every header
//!   field is checked (PRINTUSASCII, RFC length limits, NILVALUE `-`), the
//!   timestamp is full RFC 3339 with up to 9 fractional digits and a
//!   mandatory `Z` or `±hh:mm`, and structured data is validated element by
//!   element (escapes `\"`, `\\`, `\]` in parameter values). Any violation is
//!   an error. `<PRI>` followed by another number, a space and a 5424-shaped
//!   timestamp is a `bad_version` error.
//! * Any other `<PRI>` line is RFC 3164, parsed leniently (below). Malformed
//!   PRI (`<>`, `<999>`, non-digits, no `>`) is a `bad_pri` error.
//! * A line without PRI is RFC 3164 if it starts with a recognizable 3164
//!   header (a timestamp, optionally after a `seq:` number, or a Cisco
//!   `%FAC-SEV-MNEMONIC:`). Otherwise it is [`Format::Plain`]: the whole line
//!   is the message and nothing is an error.
//!
//! # RFC 3164 variants
//!
//! The common header, `Mmm dd hh:mm:ss host app[pid]: ` (or a tag-less
//! payload after the hostname), is read in one pass; every other line, and
//! every line one token away from that shape, by the layered reader that
//! [`parse_layered`] runs alone. Both give the same result for every line.
//!
//! A 3164 header is read as up to [`HEADER_LAYERS_MAX`] layers, each
//! `[seq: ] [host: ] [*|.]TIMESTAMP[:] [HOSTNAME]`, followed by either a
//! Cisco `%FAC-SEV-MNEMONIC: ` or a tag `prog[pid]: ` / `prog: `:
//!
//! * Timestamps: `Mmm dd hh:mm:ss` (day padded with a space or a zero, or
//!   unpadded), optional fraction (`.711`), optional year before the time
//!   (`Mmm dd yyyy hh:mm:ss`), optional zone name (`UTC`, `GMT`, the US zones,
//!   `CET`/`CEST`), optional year after the time or zone (`Aug 24 05:34:00
//!   CST 1987`, RFC 3164 section 5.4), and RFC 3339 (`2026-11-27T12:00:00.5+01:00`, offset
//!   optional). Without an offset or zone, [`ParseContext::default_offset_s`]
//!   applies. A timestamp-shaped token with out-of-range values is a
//!   `bad_timestamp` error when the line has a PRI; without a PRI the line is
//!   Plain.
//! * Year inference: a year-less timestamp gets the most recent of the
//!   next, current and previous year (of [`ParseContext::now_ns`]) that does
//!   not put it more than [`time::YEAR_INFERENCE_FUTURE_S_MAX`] (7 days)
//!   after the receive time: closest to now, with the future discounted
//!   because log lines do not come from the future. So a `Dec 31` line
//!   received on Jan 1 lands in the previous year, a `Jan 1` line from a
//!   sender slightly ahead on Dec 31 in the next one, and a `Mar 1` line
//!   received in November in the current one. A date that exists in none
//!   of them (Feb 29) is a `bad_timestamp` error.
//! * Cisco: leading sequence numbers (`000123: `), the clock markers `*` (not
//!   synchronized) and `.` (synchronization lost), reported in
//!   [`SyslogMessage::clock_unsynced`], `router1: ` origin ids before the
//!   timestamp, and the mnemonic, stored without `%` and `:` in
//!   [`SyslogMessage::cisco_mnemonic`] (the message is the text after it). An
//!   ASA's lone ` : ` between hostname and mnemonic is skipped.
//! * Hostnames: the token after the timestamp if it is hostname-shaped
//!   (ASCII letters, digits, `.`, `-`, `_`, `:` for IPv6, at most 255
//!   bytes) and is not a tag (`prog:` / `prog[pid]:`), a `seq:` number or a
//!   mnemonic. So `Feb  5 17:32:18 sshd[1]: ...` has no hostname.
//! * Relays: when a layer with a hostname is followed by another layer (a
//!   relay prepended its own `TIMESTAMP HOST`), the innermost layer is
//!   closest to the origin and wins: its hostname becomes `hostname` and
//!   the outer one `relay_hostname`, and its timestamp wins unless it is
//!   marked unsynchronized (Cisco `*`/`.`), in which case the relay's clock
//!   is kept. An inner layer without a hostname (Cisco `host 123: *Mar 1
//!   ...: %...`) leaves the outer hostname as the hostname. Two
//!   hostname-shaped tokens in a row followed by a tag (`relay1 origin
//!   sshd[1]:`) are read the same way: the first is the relay. The cost of
//!   this rule: an untagged message whose first two words look like
//!   hostnames and whose third looks like a tag is misread.
//! * A `<PRI>` line with nothing recognizable after the PRI is 3164 with the
//!   rest as message (RFC 3164 section 4.3.3: the whole rest is CONTENT).

mod rfc3164;
mod rfc5424;
pub mod time;

pub use time::write_rfc3339;

/// Most header layers (relay hops and Cisco origin headers) one 3164 line
/// may carry; further timestamps are left in the message.
pub const HEADER_LAYERS_MAX: usize = 3;

/// Largest PRI value: facility 23, severity 7.
pub const PRI_MAX: u8 = 191;

/// What the parser needs from outside: the receive time (for 3164 year
/// inference) and the timezone assumed for timestamps without an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ParseContext {
    /// Receive time, UTC nanoseconds since the epoch.
    pub now_ns: i64,
    /// Seconds east of UTC assumed for timestamps without an offset.
    pub default_offset_s: i32,
}

/// Which grammar a line was parsed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
    /// No PRI and no recognizable header: the whole line is the message.
    Plain,
}

impl Format {
    /// Stable lower-case name for output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
            Format::Plain => "plain",
        }
    }
}

/// One parsed syslog line; every slice borrows from the input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyslogMessage<'a> {
    pub format: Format,
    /// `facility * 8 + severity`, at most [`PRI_MAX`].
    pub pri: Option<u8>,
    /// UTC nanoseconds since the epoch.
    pub timestamp_ns: Option<i64>,
    /// The sender marked its clock as not synchronized (Cisco `*` or `.`).
    pub clock_unsynced: bool,
    pub hostname: Option<&'a [u8]>,
    /// The outer hostname when a relay prepended its own header.
    pub relay_hostname: Option<&'a [u8]>,
    pub app_name: Option<&'a [u8]>,
    pub proc_id: Option<&'a [u8]>,
    /// RFC 5424 MSGID.
    pub msg_id: Option<&'a [u8]>,
    /// Raw, validated RFC 5424 structured data (`[id k="v"]...`).
    pub structured_data: Option<&'a [u8]>,
    /// Leading sequence number (`000123: `), without the colon.
    pub sequence: Option<&'a [u8]>,
    /// Cisco `FAC-SEV-MNEMONIC`, without the `%` and the colon.
    pub cisco_mnemonic: Option<&'a [u8]>,
    /// MSG with a leading UTF-8 BOM stripped; may be empty.
    pub message: &'a [u8],
}

impl<'a> SyslogMessage<'a> {
    fn empty(format: Format, pri: Option<u8>, message: &'a [u8]) -> Self {
        SyslogMessage {
            format,
            pri,
            timestamp_ns: None,
            clock_unsynced: false,
            hostname: None,
            relay_hostname: None,
            app_name: None,
            proc_id: None,
            msg_id: None,
            structured_data: None,
            sequence: None,
            cisco_mnemonic: None,
            message,
        }
    }

    /// Facility (0-23) from PRI.
    pub fn facility(&self) -> Option<u8> {
        self.pri.map(|pri| pri >> 3)
    }

    /// Severity (0 emergency - 7 debug) from PRI.
    pub fn severity(&self) -> Option<u8> {
        self.pri.map(|pri| pri & 7)
    }

    /// The name extraction rows are keyed on: the app name, or for Cisco
    /// lines the mnemonic (they carry no tag).
    pub fn app_key(&self) -> &'a [u8] {
        self.app_name.or(self.cisco_mnemonic).unwrap_or(b"")
    }
}

/// Why a line was refused; `as_str` gives the stable snake_case label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseErrorReason {
    /// Nothing left after trimming trailing CR, LF and NUL.
    Empty,
    /// `<` without a valid `<0>`..`<191>` PRI.
    BadPri,
    /// RFC 5424-shaped line whose VERSION is not 1.
    BadVersion,
    /// A timestamp that is malformed or out of range.
    BadTimestamp,
    /// RFC 5424 header field missing, empty or with bytes outside PRINTUSASCII.
    BadHeader,
    /// RFC 5424 header field longer than the RFC allows.
    FieldTooLong,
    /// RFC 5424 structured data that does not follow the grammar.
    BadStructuredData,
}

impl ParseErrorReason {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [ParseErrorReason; 7] = [
        ParseErrorReason::Empty,
        ParseErrorReason::BadPri,
        ParseErrorReason::BadVersion,
        ParseErrorReason::BadTimestamp,
        ParseErrorReason::BadHeader,
        ParseErrorReason::FieldTooLong,
        ParseErrorReason::BadStructuredData,
    ];

    /// Stable snake_case name: a metric label and a quarantine reason.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorReason::Empty => "empty",
            ParseErrorReason::BadPri => "bad_pri",
            ParseErrorReason::BadVersion => "bad_version",
            ParseErrorReason::BadTimestamp => "bad_timestamp",
            ParseErrorReason::BadHeader => "bad_header",
            ParseErrorReason::FieldTooLong => "field_too_long",
            ParseErrorReason::BadStructuredData => "bad_structured_data",
        }
    }
}

impl std::fmt::Display for ParseErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused line: the reason and the byte offset (into the line as given)
/// where parsing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("syslog parse error {reason} at byte {offset}")]
pub struct ParseError {
    pub reason: ParseErrorReason,
    pub offset: usize,
}

impl ParseError {
    pub(crate) fn new(reason: ParseErrorReason, offset: usize) -> Self {
        ParseError { reason, offset }
    }
}

/// UTF-8 byte order mark, allowed before an RFC 5424 MSG.
const BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) fn strip_bom(message: &[u8]) -> &[u8] {
    message.strip_prefix(BOM).unwrap_or(message)
}

/// Drops trailing CR, LF and NUL, which framing and senders leave behind.
pub fn trim_line_end(line: &[u8]) -> &[u8] {
    let keep = line
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n' | 0))
        .map_or(0, |i| i + 1);
    &line[..keep]
}

/// Parses one syslog line; see the module docs for the grammar and the
/// variants accepted.
pub fn parse<'a>(line: &'a [u8], ctx: &ParseContext) -> Result<SyslogMessage<'a>, ParseError> {
    parse_with(line, ctx, true)
}

/// [`parse`] without the one-pass reading of the common RFC 3164 header:
/// every 3164-shaped line goes through the layered reader. The result is
/// the same for every line; this is the reference that the shortcut is
/// checked against (tests, the `rfc3164` fuzz target).
pub fn parse_layered<'a>(
    line: &'a [u8],
    ctx: &ParseContext,
) -> Result<SyslogMessage<'a>, ParseError> {
    parse_with(line, ctx, false)
}

fn parse_with<'a>(
    line: &'a [u8],
    ctx: &ParseContext,
    shortcut: bool,
) -> Result<SyslogMessage<'a>, ParseError> {
    let line = trim_line_end(line);
    if line.is_empty() {
        return Err(ParseError::new(ParseErrorReason::Empty, 0));
    }
    if line[0] != b'<' {
        return rfc3164::parse(line, None, 0, ctx, shortcut);
    }
    let (pri, pos) = parse_pri(line)?;
    debug_assert!(pri <= PRI_MAX && pos <= line.len());
    if rfc5424::looks_like(line, pos) {
        rfc5424::parse(line, pri, pos, ctx)
    } else {
        rfc3164::parse(line, Some(pri), pos, ctx, shortcut)
    }
}

/// Parses `<PRI>` at the start of `line` (which starts with `<`) and returns
/// it with the offset just after `>`.
fn parse_pri(line: &[u8]) -> Result<(u8, usize), ParseError> {
    debug_assert_eq!(line.first(), Some(&b'<'));
    let mut value: u32 = 0;
    let mut pos = 1;
    loop {
        match line.get(pos) {
            Some(b'>') if pos > 1 => break,
            Some(b) if b.is_ascii_digit() && pos <= 3 => {
                value = value * 10 + u32::from(b - b'0');
                pos += 1;
            }
            _ => return Err(ParseError::new(ParseErrorReason::BadPri, pos)),
        }
    }
    match u8::try_from(value) {
        Ok(pri) if pri <= PRI_MAX => Ok((pri, pos + 1)),
        _ => Err(ParseError::new(ParseErrorReason::BadPri, 1)),
    }
}

/// The Plain result: the whole (trimmed) line is the message.
fn plain(line: &[u8]) -> SyslogMessage<'_> {
    SyslogMessage::empty(Format::Plain, None, line)
}

/// Parses exactly `n` ASCII digits at `pos`.
pub(crate) fn digits(line: &[u8], pos: usize, n: usize) -> Option<u32> {
    let bytes = line.get(pos..pos.checked_add(n)?)?;
    let mut value = 0u32;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    Some(value)
}

/// Parses an RFC 3339 timestamp at `pos` (`YYYY-MM-DDThh:mm:ss[.f{1,9}][Z|±hh:mm]`).
///
/// Returns the UTC nanoseconds and the offset just after it. `Err(offset)`
/// means the text is not an RFC 3339 timestamp (or is out of range), with
/// the offset of the first offending byte. `require_offset` makes a missing
/// `Z`/`±hh:mm` an error (RFC 5424); otherwise `default_offset_s` applies.
pub(crate) fn parse_rfc3339(
    line: &[u8],
    pos: usize,
    require_offset: bool,
    default_offset_s: i32,
) -> Result<(i64, usize), usize> {
    let (year, month, day, hour, minute, second) = match date_time_at(line, pos) {
        Some(fields) => fields,
        None => date_time_exact(line, pos)?,
    };
    let mut at = pos + 19;
    let (nanos, next) = fraction(line, at).ok_or(at)?;
    at = next;
    let expect = |at: usize, byte: u8| expect_byte(line, at, byte);
    let offset_s = match line.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let hh = digits(line, at + 1, 2).ok_or(at + 1)?;
            expect(at + 3, b':')?;
            let mm = digits(line, at + 4, 2).ok_or(at + 4)?;
            if hh > 23 || mm > 59 {
                return Err(at + 1);
            }
            let magnitude = i64::from(hh * 3600 + mm * 60);
            at += 6;
            if sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        _ if require_offset => return Err(at),
        _ => i64::from(default_offset_s),
    };
    let wall = time::WallTime {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    };
    let ns = wall.to_unix_ns(offset_s).ok_or(pos)?;
    Ok((ns, at))
}

/// `Ok` when the byte at `at` is `byte` (in either ASCII case), else the
/// offset as the error.
fn expect_byte(line: &[u8], at: usize, byte: u8) -> Result<(), usize> {
    match line.get(at) {
        Some(b) if b.eq_ignore_ascii_case(&byte) => Ok(()),
        _ => Err(at),
    }
}

/// Year, month, day, hour, minute and second of the
/// `YYYY-MM-DDThh:mm:ss` at `pos`.
type DateTime = (u32, u32, u32, u32, u32, u32);

/// `YYYY-MM-DDThh:mm:ss` at `pos` read from one 19-byte piece, or `None`
/// when anything in it is out of place ([`date_time_exact`] then finds
/// where).
#[inline]
fn date_time_at(line: &[u8], pos: usize) -> Option<DateTime> {
    let piece: &[u8; 19] = line.get(pos..pos.checked_add(19)?)?.try_into().ok()?;
    let digit = |i: usize| {
        let d = piece[i].wrapping_sub(b'0');
        (d < 10).then_some(u32::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    if piece[4] != b'-'
        || piece[7] != b'-'
        || piece[10] | 0x20 != b't'
        || piece[13] != b':'
        || piece[16] != b':'
    {
        return None;
    }
    Some((
        two(0)? * 100 + two(2)?,
        two(5)?,
        two(8)?,
        two(11)?,
        two(14)?,
        two(17)?,
    ))
}

/// [`date_time_at`] a field at a time, each error the offset of the byte
/// or field that is out of place.
#[cold]
fn date_time_exact(line: &[u8], pos: usize) -> Result<DateTime, usize> {
    let year = digits(line, pos, 4).ok_or(pos)?;
    let expect = |at: usize, byte: u8| expect_byte(line, at, byte);
    expect(pos + 4, b'-')?;
    let month = digits(line, pos + 5, 2).ok_or(pos + 5)?;
    expect(pos + 7, b'-')?;
    let day = digits(line, pos + 8, 2).ok_or(pos + 8)?;
    expect(pos + 10, b'T')?;
    let hour = digits(line, pos + 11, 2).ok_or(pos + 11)?;
    expect(pos + 13, b':')?;
    let minute = digits(line, pos + 14, 2).ok_or(pos + 14)?;
    expect(pos + 16, b':')?;
    let second = digits(line, pos + 17, 2).ok_or(pos + 17)?;
    Ok((year, month, day, hour, minute, second))
}

/// Most fractional-second digits accepted (nanoseconds).
const FRACTION_DIGITS_MAX: usize = 9;

/// Parses an optional `.d{1,9}` fraction at `pos`: `Some((0, pos))` when
/// absent, `None` when malformed (a dot without digits, or too many digits).
pub(crate) fn fraction(line: &[u8], pos: usize) -> Option<(u32, usize)> {
    if line.get(pos) != Some(&b'.') {
        return Some((0, pos));
    }
    let mut nanos = 0u32;
    let mut n = 0;
    while let Some(b) = line.get(pos + 1 + n).filter(|b| b.is_ascii_digit()) {
        if n == FRACTION_DIGITS_MAX {
            return None;
        }
        nanos = nanos * 10 + u32::from(b - b'0');
        n += 1;
    }
    if n == 0 {
        return None;
    }
    for _ in n..FRACTION_DIGITS_MAX {
        nanos *= 10;
    }
    Some((nanos, pos + 1 + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: ParseContext = ParseContext {
        now_ns: 1_795_780_800 * time::NS_PER_S,
        default_offset_s: 0,
    };

    fn err(line: &[u8]) -> (ParseErrorReason, usize) {
        let e = parse(line, &NOW).unwrap_err();
        (e.reason, e.offset)
    }

    #[test]
    fn pri_errors_name_reason_and_offset() {
        use ParseErrorReason::*;
        assert_eq!(err(b""), (Empty, 0));
        assert_eq!(err(b"\r\n\0"), (Empty, 0));
        assert_eq!(err(b"<>x"), (BadPri, 1));
        assert_eq!(err(b"<999>x"), (BadPri, 1));
        assert_eq!(err(b"<192>x"), (BadPri, 1));
        assert_eq!(err(b"<1a>x"), (BadPri, 2));
        assert_eq!(err(b"<1234>x"), (BadPri, 4));
        assert_eq!(err(b"<13"), (BadPri, 3));
        assert_eq!(err(b"<"), (BadPri, 1));
    }

    #[test]
    fn pri_accepts_range() {
        assert_eq!(parse(b"<0>x", &NOW).unwrap().pri, Some(0));
        let m = parse(b"<191>x", &NOW).unwrap();
        assert_eq!((m.facility(), m.severity()), (Some(23), Some(7)));
    }

    #[test]
    fn fraction_digits() {
        assert_eq!(fraction(b".5", 0), Some((500_000_000, 2)));
        assert_eq!(fraction(b".123456789", 0), Some((123_456_789, 10)));
        assert_eq!(fraction(b".1234567890", 0), None);
        assert_eq!(fraction(b".", 0), None);
        assert_eq!(fraction(b"x", 0), Some((0, 0)));
    }

    #[test]
    fn trims_only_the_end() {
        assert_eq!(trim_line_end(b" a \r\n\0"), b" a ");
        assert_eq!(trim_line_end(b"\n"), b"");
    }

    /// The 19-byte read of a date and time against the field-by-field one:
    /// a valid stamp with each byte replaced by each byte class, and cut at
    /// each length.
    #[test]
    fn date_and_time_read_in_one_piece_as_field_by_field() {
        let stamp = b"2026-11-30T23:59:58.5Z";
        let mut checked = 0;
        for at in 0..stamp.len() {
            for byte in *b"09-:Tt/ x\xff" {
                let mut line = stamp.to_vec();
                line[at] = byte;
                for end in 0..=line.len() {
                    let line = &line[..end];
                    for pos in [0, 1] {
                        let exact = date_time_exact(line, pos);
                        assert_eq!(date_time_at(line, pos), exact.ok(), "{line:?} at {pos}");
                        checked += usize::from(exact.is_ok());
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }
}
