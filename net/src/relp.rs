//! RELP, rsyslog's Reliable Event Logging Protocol: framing and the
//! messages both sides write (the ingest listener as a server; the RELP
//! forward output and the load harness as clients). Pure: no IO, no clock,
//! no session state beyond an optional TXNR sequence check.
//!
//! # Frame grammar
//!
//! ```text
//! FRAME   = TXNR SP COMMAND SP DATALEN [SP DATA] TRAILER
//! TXNR    = 1*9DIGIT          ; 1..999999999, wrapping to 1; 0 only on hints
//! COMMAND = 1*32ALPHA         ; case-sensitive: open, syslog, close, rsp, serverclose
//! DATALEN = 1*9DIGIT          ; octets of DATA; leading zeros allowed
//! DATA    = DATALEN octets    ; present, after one SP, only when DATALEN > 0
//! TRAILER = LF
//! ```
//!
//! `rsp` data is `STATUS SP TEXT [LF CMDDATA]`: three digits (200 OK, 500
//! error), a human-readable text (librelp reads at most 80 octets of it, up
//! to the LF) and, for `open`, the accepted offers. Offers are lines
//! `NAME[=VALUE*(,VALUE)]` separated by LF, without a trailing LF.
//!
//! # A session, as librelp (rsyslog's omrelp, tcpflood) runs it
//!
//! ```text
//! C: 1 open 86 relp_version=0\nrelp_software=librelp,1.13.0,http://librelp.adiscon.com\ncommands=syslog\n
//! S: 1 rsp 62 200 OK\nrelp_version=0\nrelp_software=shardwatch\ncommands=syslog\n
//! C: 2 syslog 16 <13>Jan 1 host x\n
//! S: 2 rsp 6 200 OK\n
//! C: 3 close 0\n
//! S: 3 rsp 6 200 OK\n
//! ```
//!
//! The server may also send the hint `0 serverclose 0\n` before it closes a
//! connection on its own; the client answers nothing and reconnects later.
//!
//! What the librelp client requires of the server (from its source):
//!
//! * The answer to `open` must carry `relp_version` with an integer no
//!   greater than its own protocol version, which is 0 (`relp_version=1`
//!   makes it give up), and `commands` listing `syslog`: omrelp marks
//!   `syslog` required and refuses a session without it. The server lists
//!   only the commands it supports ([`write_open_response`] always answers
//!   `commands=syslog`, whatever else the client offered).
//! * The status must be three digits then SP (`200` alone is refused).
//! * Each command is acknowledged with its own TXNR; the client keeps up to
//!   its window (128 by default) of unacknowledged frames and, when the
//!   window is full, waits up to its timeout (90 s by default) for answers
//!   before it declares the session broken. It reads answers only when it
//!   is about to send, so they may sit unread in the socket for long.
//! * On a broken session (timeout, connection closed, `serverclose`) it
//!   reconnects, sends `open` again with TXNR 1 and resends every
//!   unacknowledged frame with new TXNRs: a server sees duplicates of
//!   whatever it had received but not yet acknowledged.
//! * A non-200 answer to `syslog` drops that message from the client's
//!   resend list and fails the send (omrelp suspends the action): closing
//!   the connection without an answer is the way to get a frame resent.
//! * librelp's own server answers `close` with `N rsp 0\n` (no data), which
//!   its own client cannot parse as a status; answering `200 OK` is
//!   understood by both.
//!
//! Any framing error ends the connection (the spec: the peer that detects
//! it closes the TCP connection and must not wait for anything).
//!
//! # What this module owns
//!
//! A [`RelpFramer`] per connection cuts the byte stream, fed in arbitrary
//! pieces, into [`RelpFrame`]s. A frame that lies within one `feed` call is
//! handed out as a slice of the input; only a frame split across calls is
//! copied into the framer's buffer, which is reused and never holds more
//! than [`HEADER_LEN_MAX`] + `max_data` + 1 bytes. Whether the stream is fed
//! whole or in pieces, the same frames come out and the same error ends it.

use std::ops::Range;

use memchr::{memchr, memchr2, memchr_iter};

/// Largest TXNR (and DATALEN); the TXNR after it is 1.
pub const TXNR_MAX: u64 = 999_999_999;

/// Longest command name.
pub const COMMAND_LEN_MAX: usize = 32;

/// Most digits in TXNR and DATALEN.
const NUMBER_DIGITS_MAX: usize = 9;

/// Longest header, `TXNR SP COMMAND SP DATALEN` and the byte after it:
/// any 53 bytes either hold a complete header or show an error.
pub const HEADER_LEN_MAX: usize =
    NUMBER_DIGITS_MAX + 1 + COMMAND_LEN_MAX + 1 + NUMBER_DIGITS_MAX + 1;

/// librelp's default largest DATALEN (128 KiB).
pub const DATA_LEN_MAX_DEFAULT: usize = 128 * 1024;

/// Data of the answer to `open`.
const OPEN_RESPONSE: &[u8] = b"200 OK\nrelp_version=0\nrelp_software=shardwatch\ncommands=syslog";

/// Most octets of a status text that librelp reads.
const STATUS_TEXT_MAX: usize = 80;

/// The TXNR after `txnr`: 1, 2, ..., 999 999 999, 1, ...
pub fn next_txnr(txnr: u64) -> u64 {
    if txnr >= TXNR_MAX {
        1
    } else {
        txnr + 1
    }
}

/// One frame. `data` borrows from the input or from the framer's buffer and
/// is valid only during the callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelpFrame<'a> {
    pub txnr: u64,
    pub command: RelpCommand,
    pub data: &'a [u8],
}

/// A command name other than the ones this crate knows, kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandName {
    len: u8,
    bytes: [u8; COMMAND_LEN_MAX],
}

impl CommandName {
    /// `name` if it is 1 to 32 ASCII letters.
    pub fn new(name: &[u8]) -> Option<Self> {
        if name.is_empty()
            || name.len() > COMMAND_LEN_MAX
            || !name.iter().all(u8::is_ascii_alphabetic)
        {
            return None;
        }
        let mut bytes = [0; COMMAND_LEN_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Some(CommandName {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)])
            .expect("command names are ASCII letters")
    }
}

impl std::fmt::Debug for CommandName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A frame's command. Names are case-sensitive, as in librelp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelpCommand {
    Open,
    Syslog,
    Close,
    /// An answer (server to client).
    Rsp,
    /// The server's hint that it closes the connection (TXNR 0, no answer).
    ServerClose,
    /// Any other well-formed name (`starttls`, `abort`, typos): the caller
    /// decides; a server answers it with an error or closes.
    Other(CommandName),
}

impl RelpCommand {
    /// The command named `name`, if it is 1 to 32 ASCII letters.
    pub fn parse(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"syslog" => RelpCommand::Syslog,
            b"rsp" => RelpCommand::Rsp,
            b"open" => RelpCommand::Open,
            b"close" => RelpCommand::Close,
            b"serverclose" => RelpCommand::ServerClose,
            _ => RelpCommand::Other(CommandName::new(name)?),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            RelpCommand::Open => "open",
            RelpCommand::Syslog => "syslog",
            RelpCommand::Close => "close",
            RelpCommand::Rsp => "rsp",
            RelpCommand::ServerClose => "serverclose",
            RelpCommand::Other(name) => name.as_str(),
        }
    }
}

/// Why a stream was refused; the connection must then be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelpError {
    /// TXNR empty, over 9 digits, or not followed by SP (this includes any
    /// byte other than a digit where a frame should start).
    #[error("RELP frame: bad TXNR (expected 1 to 9 digits, then SP)")]
    BadTxnr,
    /// Command empty, over 32 bytes, or with a byte other than an ASCII
    /// letter before its SP.
    #[error("RELP frame: bad command (expected 1 to 32 ASCII letters, then SP)")]
    BadCommand,
    /// DATALEN empty, over 9 digits, or not followed by SP and data (LF when
    /// it is 0).
    #[error("RELP frame: bad DATALEN (expected 1 to 9 digits, then SP and data, or LF when 0)")]
    BadDatalen,
    /// DATALEN over the framer's `max_data`.
    #[error("RELP frame: DATALEN {datalen} over the limit of {max}")]
    DataTooLong { datalen: usize, max: usize },
    /// The byte after the data is not LF.
    #[error("RELP frame: no LF after the data")]
    MissingTrailer,
    /// A non-zero TXNR other than the one due (only with
    /// [`RelpFramer::check_sequence`]).
    #[error("RELP frame: TXNR {got} where {expected} was due")]
    TxnrOutOfSequence { expected: u64, got: u64 },
}

impl RelpError {
    /// Every reason name, for pre-registering counters.
    pub const REASONS: [&'static str; 6] = [
        "relp_bad_txnr",
        "relp_bad_command",
        "relp_bad_datalen",
        "relp_data_too_long",
        "relp_missing_trailer",
        "relp_txnr_out_of_sequence",
    ];

    /// Stable snake_case counter name.
    pub fn reason(&self) -> &'static str {
        match self {
            RelpError::BadTxnr => Self::REASONS[0],
            RelpError::BadCommand => Self::REASONS[1],
            RelpError::BadDatalen => Self::REASONS[2],
            RelpError::DataTooLong { .. } => Self::REASONS[3],
            RelpError::MissingTrailer => Self::REASONS[4],
            RelpError::TxnrOutOfSequence { .. } => Self::REASONS[5],
        }
    }
}

/// A complete header, as offsets into the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    txnr: u64,
    command: RelpCommand,
    /// Where the data starts (just after the SP that follows DATALEN), or
    /// where the trailer is when there is no data.
    data_start: usize,
    data_len: usize,
}

impl Header {
    /// The whole frame's length, trailer included.
    fn frame_len(&self) -> usize {
        self.data_start + self.data_len + 1
    }

    fn data(&self) -> Range<usize> {
        self.data_start..self.data_start + self.data_len
    }
}

/// Finds a field of 1 to `max` bytes, all `valid`, at `buf[start..]`,
/// ended by a byte that `find_end` finds. Returns the index of that end
/// byte, `None` while `buf` ends before anything wrong shows, or `err`.
fn field(
    buf: &[u8],
    start: usize,
    max: usize,
    valid: fn(&u8) -> bool,
    find_end: impl Fn(&[u8]) -> Option<usize>,
    err: RelpError,
) -> Result<Option<usize>, RelpError> {
    let window = &buf[start..buf.len().min(start + max + 1)];
    match find_end(window) {
        Some(end) if end > 0 && window[..end].iter().all(valid) => Ok(Some(start + end)),
        Some(_) => Err(err),
        None if window.len() <= max && window.iter().all(valid) => Ok(None),
        None => Err(err),
    }
}

/// Decimal value of at most 9 digits.
fn decimal(digits: &[u8]) -> u64 {
    digits.iter().fold(0, |v, d| v * 10 + u64::from(d - b'0'))
}

/// Parses the header at the start of `buf`: `Ok(None)` while it is
/// incomplete but valid so far (never for 53 bytes or more).
fn parse_header(buf: &[u8], max_data: usize) -> Result<Option<Header>, RelpError> {
    let digit: fn(&u8) -> bool = u8::is_ascii_digit;
    let space = |w: &[u8]| memchr(b' ', w);
    let Some(txnr_end) = field(buf, 0, NUMBER_DIGITS_MAX, digit, space, RelpError::BadTxnr)? else {
        return Ok(None);
    };
    let command_start = txnr_end + 1;
    let letter: fn(&u8) -> bool = u8::is_ascii_alphabetic;
    let Some(command_end) = field(
        buf,
        command_start,
        COMMAND_LEN_MAX,
        letter,
        space,
        RelpError::BadCommand,
    )?
    else {
        return Ok(None);
    };
    let len_start = command_end + 1;
    let space_or_lf = |w: &[u8]| memchr2(b' ', b'\n', w);
    let Some(len_end) = field(
        buf,
        len_start,
        NUMBER_DIGITS_MAX,
        digit,
        space_or_lf,
        RelpError::BadDatalen,
    )?
    else {
        return Ok(None);
    };
    let data_len = decimal(&buf[len_start..len_end]) as usize;
    // DATALEN 0 ends the frame right there; any other is followed by SP.
    if (data_len == 0) != (buf[len_end] == b'\n') {
        return Err(RelpError::BadDatalen);
    }
    if data_len > max_data {
        return Err(RelpError::DataTooLong {
            datalen: data_len,
            max: max_data,
        });
    }
    let command = RelpCommand::parse(&buf[command_start..command_end]).expect("validated above");
    Ok(Some(Header {
        txnr: decimal(&buf[..txnr_end]),
        command,
        data_start: if data_len == 0 { len_end } else { len_end + 1 },
        data_len,
    }))
}

/// Incremental RELP framer for one connection; see the module docs.
#[derive(Debug)]
pub struct RelpFramer {
    max_data: usize,
    /// The start of a frame split across `feed` calls.
    carry: Vec<u8>,
    /// The header of the frame in `carry`, once complete.
    carry_header: Option<Header>,
    /// The TXNR due next, when the sequence is checked.
    next_txnr: Option<u64>,
    /// The error that ended the stream; later feeds return it again.
    failed: Option<RelpError>,
}

impl Default for RelpFramer {
    fn default() -> Self {
        RelpFramer::new(DATA_LEN_MAX_DEFAULT)
    }
}

impl RelpFramer {
    /// A framer refusing frames whose DATALEN is over `max_data`.
    pub fn new(max_data: usize) -> Self {
        RelpFramer {
            max_data,
            carry: Vec::new(),
            carry_header: None,
            next_txnr: None,
            failed: None,
        }
    }

    /// Also refuses, as librelp's server does, non-zero TXNRs out of the
    /// sequence 1, 2, 3, ... (see [`next_txnr`]); TXNR 0 (hints) is exempt.
    /// For the server side: a client's answers need not follow it.
    pub fn check_sequence(mut self) -> Self {
        self.next_txnr = Some(1);
        self
    }

    pub fn max_data(&self) -> usize {
        self.max_data
    }

    /// Bytes held over from earlier `feed` calls (a frame in progress); at
    /// most [`HEADER_LEN_MAX`] + `max_data` + 1.
    pub fn pending_bytes(&self) -> usize {
        self.carry.len()
    }

    /// Feeds bytes read from the connection, calling `on_frame` for each
    /// frame they complete, in order. On a protocol violation returns the
    /// error (frames before it were delivered); the connection must then be
    /// closed, and every later call returns the same error.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut on_frame: impl FnMut(RelpFrame<'_>),
    ) -> Result<(), RelpError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let result = self.feed_inner(bytes, &mut on_frame);
        if let Err(err) = result {
            self.failed = Some(err);
            self.carry.clear();
            self.carry_header = None;
        }
        debug_assert!(self.carry.len() <= HEADER_LEN_MAX + self.max_data + 1);
        result
    }

    fn feed_inner(
        &mut self,
        mut input: &[u8],
        on_frame: &mut impl FnMut(RelpFrame<'_>),
    ) -> Result<(), RelpError> {
        if !self.carry.is_empty() {
            input = self.continue_carry(input, on_frame)?;
        }
        while !input.is_empty() {
            debug_assert!(self.carry.is_empty());
            let Some(header) = parse_header(input, self.max_data)? else {
                self.carry.extend_from_slice(input);
                return Ok(());
            };
            let len = header.frame_len();
            if input.len() < len {
                self.carry.extend_from_slice(input);
                self.carry_header = Some(header);
                return Ok(());
            }
            let (frame, rest) = input.split_at(len);
            deliver(frame, &header, &mut self.next_txnr, on_frame)?;
            input = rest;
        }
        Ok(())
    }

    /// Adds to the carried frame what `input` has of it, delivers it when
    /// complete, and returns the rest of `input`.
    fn continue_carry<'b>(
        &mut self,
        mut input: &'b [u8],
        on_frame: &mut impl FnMut(RelpFrame<'_>),
    ) -> Result<&'b [u8], RelpError> {
        let header = match self.carry_header {
            Some(header) => header,
            None => {
                // Top the header up to the longest a header can be, then
                // give back what lies past the frame's end.
                let take = input
                    .len()
                    .min(HEADER_LEN_MAX.saturating_sub(self.carry.len()));
                self.carry.extend_from_slice(&input[..take]);
                let Some(header) = parse_header(&self.carry, self.max_data)? else {
                    debug_assert_eq!(take, input.len());
                    return Ok(&[]);
                };
                let surplus = self.carry.len().saturating_sub(header.frame_len());
                self.carry.truncate(self.carry.len() - surplus);
                input = &input[take - surplus..];
                header
            }
        };
        let need = header.frame_len() - self.carry.len();
        if input.len() < need {
            self.carry.extend_from_slice(input);
            self.carry_header = Some(header);
            return Ok(&[]);
        }
        self.carry.extend_from_slice(&input[..need]);
        self.carry_header = None;
        let result = deliver(&self.carry, &header, &mut self.next_txnr, on_frame);
        self.carry.clear();
        result.map(|()| &input[need..])
    }
}

/// Checks the trailer and the sequence of the complete `frame`, then hands
/// it out.
fn deliver(
    frame: &[u8],
    header: &Header,
    due: &mut Option<u64>,
    on_frame: &mut impl FnMut(RelpFrame<'_>),
) -> Result<(), RelpError> {
    debug_assert_eq!(frame.len(), header.frame_len());
    if frame.last() != Some(&b'\n') {
        return Err(RelpError::MissingTrailer);
    }
    if let Some(expected) = due {
        if header.txnr != 0 {
            if header.txnr != *expected {
                return Err(RelpError::TxnrOutOfSequence {
                    expected: *expected,
                    got: header.txnr,
                });
            }
            *expected = next_txnr(*expected);
        }
    }
    on_frame(RelpFrame {
        txnr: header.txnr,
        command: header.command,
        data: &frame[header.data()],
    });
    Ok(())
}

/// Checks a client's `open` offers: a `relp_version` with a numeric value
/// (any version is accepted; the answer downgrades to 0) and `syslog`
/// among the `commands`. Unknown offers are ignored, as librelp does. The
/// error is a counter name.
pub fn open_offers_ok(data: &[u8]) -> Result<(), &'static str> {
    let mut version = None;
    let mut syslog = false;
    let mut line_start = 0;
    let ends = memchr_iter(b'\n', data).chain(std::iter::once(data.len()));
    for line_end in ends {
        let line = &data[line_start..line_end];
        line_start = line_end + 1;
        let (name, values) = match memchr(b'=', line) {
            Some(eq) => (&line[..eq], &line[eq + 1..]),
            None => (line, &b""[..]),
        };
        let mut values = values.split(|&b| b == b',').filter(|v| !v.is_empty());
        match name {
            b"relp_version" => {
                let numeric =
                    |v: &[u8]| v.len() <= NUMBER_DIGITS_MAX && v.iter().all(u8::is_ascii_digit);
                version = Some(values.next().is_some_and(numeric));
            }
            b"commands" => syslog |= values.any(|v| v == b"syslog"),
            _ => {}
        }
    }
    match version {
        None => Err("relp_open_no_version"),
        Some(false) => Err("relp_open_bad_version"),
        Some(true) if !syslog => Err("relp_open_no_syslog"),
        Some(true) => Ok(()),
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends one frame. `command` must be 1 to 32 ASCII letters, `txnr` at
/// most [`TXNR_MAX`] and `data` at most 999 999 999 bytes (checked in debug
/// builds only).
pub fn write_frame(txnr: u64, command: &str, data: &[u8], out: &mut Vec<u8>) {
    debug_assert!(txnr <= TXNR_MAX, "TXNR over 9 digits");
    debug_assert!(
        RelpCommand::parse(command.as_bytes()).is_some(),
        "bad RELP command {command:?}"
    );
    debug_assert!(data.len() as u64 <= TXNR_MAX, "DATALEN over 9 digits");
    out.reserve(command.len() + data.len() + 24);
    push_decimal(out, txnr);
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    push_decimal(out, data.len() as u64);
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// Appends the answer to an accepted `open`:
/// `TXNR rsp 62 200 OK\nrelp_version=0\nrelp_software=shardwatch\ncommands=syslog\n`.
pub fn write_open_response(txnr: u64, out: &mut Vec<u8>) {
    write_frame(txnr, "rsp", OPEN_RESPONSE, out);
}

/// Appends the positive answer to a command: `TXNR rsp 6 200 OK\n`.
pub fn write_ok(txnr: u64, out: &mut Vec<u8>) {
    write_frame(txnr, "rsp", b"200 OK", out);
}

/// Appends a negative answer, `TXNR rsp LEN CODE SP MESSAGE\n`, e.g. code
/// 500. `code` must have three digits; the message is cut to the 80 bytes
/// librelp reads and an LF in it becomes SP (LF would start command data).
pub fn write_error(txnr: u64, code: u16, message: &str, out: &mut Vec<u8>) {
    debug_assert!(
        (100..=999).contains(&code),
        "status {code} is not three digits"
    );
    let message = &message.as_bytes()[..message.len().min(STATUS_TEXT_MAX)];
    let mut data = [0u8; 4 + STATUS_TEXT_MAX];
    data[..3].copy_from_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
    data[3] = b' ';
    for (to, &from) in data[4..].iter_mut().zip(message) {
        *to = if from == b'\n' { b' ' } else { from };
    }
    write_frame(txnr, "rsp", &data[..4 + message.len()], out);
}

/// Appends the server's closing hint: `0 serverclose 0\n`.
pub fn write_serverclose(out: &mut Vec<u8>) {
    write_frame(0, "serverclose", b"", out);
}

/// The status of a `rsp` frame's data: three digits followed by SP, as
/// librelp requires; `None` otherwise (librelp's server answers `close`
/// with empty data, which gives `None`).
pub fn rsp_status(data: &[u8]) -> Option<u16> {
    match data {
        [a, b, c, b' ', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as owned parts, for comparison.
    type Owned = (u64, String, Vec<u8>);

    fn owned(f: RelpFrame<'_>) -> Owned {
        (f.txnr, f.command.as_str().to_string(), f.data.to_vec())
    }

    fn run(framer: &mut RelpFramer, pieces: &[&[u8]]) -> (Vec<Owned>, Result<(), RelpError>) {
        let mut out = Vec::new();
        let mut result = Ok(());
        for piece in pieces {
            result = framer.feed(piece, |f| out.push(owned(f)));
            if result.is_err() {
                break;
            }
        }
        (out, result)
    }

    /// Frames and outcome of `stream` fed whole, after checking that every
    /// split into two pieces and byte-by-byte feeding give the same.
    fn frames(max: usize, stream: &[u8]) -> (Vec<Owned>, Result<(), RelpError>) {
        let expected = run(&mut RelpFramer::new(max), &[stream]);
        for cut in 0..=stream.len() {
            let got = run(&mut RelpFramer::new(max), &[&stream[..cut], &stream[cut..]]);
            assert_eq!(got, expected, "split at {cut}");
        }
        for cuts in [(1, 2), (3, 17), (10, 60)] {
            let (a, b) = (cuts.0.min(stream.len()), cuts.1.min(stream.len()));
            let got = run(
                &mut RelpFramer::new(max),
                &[&stream[..a], &stream[a..b], &stream[b..]],
            );
            assert_eq!(got, expected, "three pieces at {cuts:?}");
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        let mut framer = RelpFramer::new(max);
        let got = run(&mut framer, &bytewise);
        assert_eq!(got, expected, "byte by byte");
        if got.1.is_ok() {
            assert!(framer.pending_bytes() <= HEADER_LEN_MAX + max + 1);
        }
        expected
    }

    fn frame(txnr: u64, command: &str, data: &[u8]) -> Owned {
        (txnr, command.to_string(), data.to_vec())
    }

    /// What omrelp (librelp 1.13.0) sends to open a session: its offers,
    /// built in reverse as librelp's offer lists are, without a final LF.
    const LIBRELP_OPEN: &[u8] =
        b"1 open 86 relp_version=0\nrelp_software=librelp,1.13.0,http://librelp.adiscon.com\ncommands=syslog\n";

    /// A message in omrelp's default RSYSLOG_ForwardFormat template.
    const LIBRELP_SYSLOG: &[u8] =
        b"2 syslog 70 <13>2024-05-01T10:00:00.123456+02:00 web01 app[42]: user login ok id=7\n";

    const LIBRELP_CLOSE: &[u8] = b"3 close 0\n";

    #[test]
    fn librelp_session_bytes() {
        let stream = [LIBRELP_OPEN, LIBRELP_SYSLOG, LIBRELP_CLOSE].concat();
        let (got, result) = frames(DATA_LEN_MAX_DEFAULT, &stream);
        assert_eq!(result, Ok(()));
        assert_eq!(
            got,
            vec![
                frame(
                    1,
                    "open",
                    b"relp_version=0\nrelp_software=librelp,1.13.0,http://librelp.adiscon.com\ncommands=syslog"
                ),
                frame(
                    2,
                    "syslog",
                    b"<13>2024-05-01T10:00:00.123456+02:00 web01 app[42]: user login ok id=7"
                ),
                frame(3, "close", b""),
            ]
        );
        assert_eq!(open_offers_ok(&got[0].2), Ok(()));

        let mut framer = RelpFramer::new(DATA_LEN_MAX_DEFAULT).check_sequence();
        let mut commands = Vec::new();
        framer.feed(&stream, |f| commands.push(f.command)).unwrap();
        assert_eq!(
            commands,
            [RelpCommand::Open, RelpCommand::Syslog, RelpCommand::Close]
        );
        assert_eq!(framer.pending_bytes(), 0);
    }

    #[test]
    fn whole_frames_are_not_copied() {
        let mut framer = RelpFramer::new(100);
        let range = LIBRELP_SYSLOG.as_ptr_range();
        let mut seen = 0;
        framer
            .feed(LIBRELP_SYSLOG, |f| {
                let p = f.data.as_ptr_range();
                assert!(range.start <= p.start && p.end <= range.end);
                seen += 1;
            })
            .unwrap();
        assert_eq!((seen, framer.pending_bytes()), (1, 0));
    }

    #[test]
    fn server_answers_are_exact() {
        let mut out = Vec::new();
        write_open_response(1, &mut out);
        assert_eq!(
            out,
            b"1 rsp 62 200 OK\nrelp_version=0\nrelp_software=shardwatch\ncommands=syslog\n"
        );
        out.clear();
        write_ok(2, &mut out);
        assert_eq!(out, b"2 rsp 6 200 OK\n");
        out.clear();
        write_error(
            999_999_999,
            500,
            "required command not supported by client",
            &mut out,
        );
        assert_eq!(
            out,
            b"999999999 rsp 44 500 required command not supported by client\n"
        );
        out.clear();
        write_serverclose(&mut out);
        assert_eq!(out, b"0 serverclose 0\n");
        out.clear();
        write_error(4, 500, "two\nlines", &mut out);
        assert_eq!(out, b"4 rsp 13 500 two lines\n");
        out.clear();
        write_error(5, 500, &"x".repeat(200), &mut out);
        assert_eq!(out.len(), "5 rsp 84 500 \n".len() + 80);
    }

    #[test]
    fn answers_parse_as_a_client_reads_them() {
        let mut stream = Vec::new();
        write_open_response(1, &mut stream);
        write_ok(2, &mut stream);
        write_error(3, 500, "command disabled", &mut stream);
        write_serverclose(&mut stream);
        let (got, result) = frames(1000, &stream);
        assert_eq!(result, Ok(()));
        let statuses: Vec<_> = got
            .iter()
            .map(|f| (f.0, f.1.as_str(), rsp_status(&f.2)))
            .collect();
        assert_eq!(
            statuses,
            [
                (1, "rsp", Some(200)),
                (2, "rsp", Some(200)),
                (3, "rsp", Some(500)),
                (0, "serverclose", None)
            ]
        );
        // The offers after the status line satisfy our own open check.
        let offers = &got[0].2[memchr(b'\n', &got[0].2).unwrap() + 1..];
        assert_eq!(open_offers_ok(offers), Ok(()));
    }

    #[test]
    fn rsp_status_is_strict() {
        assert_eq!(rsp_status(b"200 OK"), Some(200));
        assert_eq!(rsp_status(b"500 "), Some(500));
        assert_eq!(rsp_status(b"200"), None);
        assert_eq!(rsp_status(b"200\nOK"), None);
        assert_eq!(rsp_status(b""), None);
        assert_eq!(rsp_status(b"2x0 OK"), None);
    }

    #[test]
    fn write_frame_round_trips() {
        let mut out = Vec::new();
        write_frame(7, "syslog", b"<13>hi", &mut out);
        write_frame(8, "starttls", b"", &mut out);
        assert_eq!(out, b"7 syslog 6 <13>hi\n8 starttls 0\n");
        let (got, result) = frames(10, &out);
        assert_eq!(result, Ok(()));
        assert_eq!(
            got,
            vec![frame(7, "syslog", b"<13>hi"), frame(8, "starttls", b"")]
        );
        let mut framer = RelpFramer::new(10);
        let mut commands = Vec::new();
        framer.feed(&out, |f| commands.push(f.command)).unwrap();
        assert!(matches!(commands[1], RelpCommand::Other(name) if name.as_str() == "starttls"));
    }

    #[test]
    fn zero_length_data() {
        let (got, result) = frames(0, b"1 close 0\n2 syslog 000\n0 serverclose 0\n");
        assert_eq!(result, Ok(()));
        assert_eq!(
            got,
            vec![
                frame(1, "close", b""),
                frame(2, "syslog", b""),
                frame(0, "serverclose", b"")
            ]
        );
        // A SP after DATALEN 0, or LF after a positive one, contradicts it.
        assert_eq!(frames(10, b"1 close 0 \n").1, Err(RelpError::BadDatalen));
        assert_eq!(
            frames(10, b"1 syslog 3\nabc\n").1,
            Err(RelpError::BadDatalen)
        );
    }

    #[test]
    fn max_data_is_enforced() {
        let (got, result) = frames(5, b"1 syslog 5 hello\n2 syslog 6 hello!\n");
        assert_eq!(got, vec![frame(1, "syslog", b"hello")]);
        assert_eq!(result, Err(RelpError::DataTooLong { datalen: 6, max: 5 }));
        // Refused on the header alone, before any data arrives.
        let mut framer = RelpFramer::new(1000);
        assert_eq!(
            framer.feed(b"1 syslog 999999999 ", |_| panic!()),
            Err(RelpError::DataTooLong {
                datalen: 999_999_999,
                max: 1000
            })
        );
        assert_eq!(framer.pending_bytes(), 0);
    }

    #[test]
    fn every_error_reason() {
        let cases: &[(&[u8], RelpError)] = &[
            (b"x 1 syslog 0\n", RelpError::BadTxnr),
            (b"\n", RelpError::BadTxnr),
            (b" 1 close 0\n", RelpError::BadTxnr),
            (b"1234567890 close 0\n", RelpError::BadTxnr),
            (b"12a close 0\n", RelpError::BadTxnr),
            (b"1  0\n", RelpError::BadCommand),
            (b"1 clo5e 0\n", RelpError::BadCommand),
            (b"1 close\n", RelpError::BadCommand),
            (
                b"1 abcdefghijklmnopqrstuvwxyzabcdefg 0\n",
                RelpError::BadCommand,
            ),
            (b"1 close \n", RelpError::BadDatalen),
            (b"1 close x\n", RelpError::BadDatalen),
            (b"1 syslog 1234567890 x\n", RelpError::BadDatalen),
            (b"1 syslog -1 x\n", RelpError::BadDatalen),
            (b"1 syslog 2 abc\n", RelpError::MissingTrailer),
            (b"1 syslog 2 ab\r\n", RelpError::MissingTrailer),
            (b"1 close 0\n\n", RelpError::BadTxnr),
            (
                b"1 syslog 11 hello",
                RelpError::DataTooLong {
                    datalen: 11,
                    max: 10,
                },
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (stream, err) in cases {
            let (_, result) = frames(10, stream);
            assert_eq!(result, Err(*err), "{:?}", String::from_utf8_lossy(stream));
            seen.insert(err.reason());
        }
        let mut framer = RelpFramer::new(10).check_sequence();
        let mut got = Vec::new();
        let result = framer.feed(
            b"1 open 0\n0 serverclose 0\n2 syslog 0\n4 syslog 0\n",
            |f| got.push(f.txnr),
        );
        assert_eq!(got, [1, 0, 2]);
        let err = RelpError::TxnrOutOfSequence {
            expected: 3,
            got: 4,
        };
        assert_eq!(result, Err(err));
        seen.insert(err.reason());
        assert_eq!(seen, RelpError::REASONS.into_iter().collect());
        // The longest header is fine.
        let longest = b"999999999 abcdefghijklmnopqrstuvwxyzabcdef 000000001 x\n";
        assert_eq!(longest.len(), HEADER_LEN_MAX + 2);
        assert_eq!(frames(1, longest).0.len(), 1);
    }

    #[test]
    fn errors_stick_and_drop_pending_bytes() {
        let mut framer = RelpFramer::new(10);
        framer.feed(b"1 syslog 3 a", |_| {}).unwrap();
        assert_eq!(framer.pending_bytes(), 12);
        assert_eq!(framer.feed(b"bcX", |_| {}), Err(RelpError::MissingTrailer));
        assert_eq!(framer.pending_bytes(), 0);
        assert_eq!(
            framer.feed(b"2 close 0\n", |_| panic!("delivered after an error")),
            Err(RelpError::MissingTrailer)
        );
    }

    #[test]
    fn incomplete_input_is_carried() {
        let mut framer = RelpFramer::new(10);
        for piece in [&b"12"[..], b"3 sys", b"log 4", b" ab"] {
            framer.feed(piece, |_| panic!("early frame")).unwrap();
        }
        assert_eq!(framer.pending_bytes(), 15);
        let mut got = Vec::new();
        framer
            .feed(b"cd\n7 rsp 6 200 OK\n8", |f| got.push(owned(f)))
            .unwrap();
        assert_eq!(
            got,
            vec![frame(123, "syslog", b"abcd"), frame(7, "rsp", b"200 OK")]
        );
        assert_eq!(framer.pending_bytes(), 1);
    }

    #[test]
    fn a_frame_split_at_every_position() {
        // Every pair of cut points over a stream with each frame shape.
        let stream = b"1 open 14 relp_version=0\n2 syslog 3 a\nb\n3 close 0\n0 serverclose 0\n";
        let expected = run(&mut RelpFramer::new(64), &[stream]);
        assert_eq!(expected.1, Ok(()));
        assert_eq!(expected.0.len(), 4);
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                let got = run(
                    &mut RelpFramer::new(64),
                    &[&stream[..a], &stream[a..b], &stream[b..]],
                );
                assert_eq!(got, expected, "cuts at {a} and {b}");
            }
        }
        let _ = frames(64, stream);
    }

    #[test]
    fn txnr_sequence_wraps() {
        assert_eq!(next_txnr(1), 2);
        assert_eq!(next_txnr(TXNR_MAX), 1);
        let mut framer = RelpFramer::new(0).check_sequence();
        framer.next_txnr = Some(TXNR_MAX);
        let mut got = Vec::new();
        framer
            .feed(b"999999999 syslog 0\n1 syslog 0\n", |f| got.push(f.txnr))
            .unwrap();
        assert_eq!(got, [TXNR_MAX, 1]);
    }

    #[test]
    fn open_offers() {
        assert_eq!(open_offers_ok(b"relp_version=0\ncommands=syslog"), Ok(()));
        assert_eq!(
            open_offers_ok(b"commands=eventlog,syslog\nrelp_version=1\n"),
            Ok(())
        );
        assert_eq!(
            open_offers_ok(b"commands=syslog"),
            Err("relp_open_no_version")
        );
        assert_eq!(open_offers_ok(b""), Err("relp_open_no_version"));
        assert_eq!(
            open_offers_ok(b"relp_version\ncommands=syslog"),
            Err("relp_open_bad_version")
        );
        assert_eq!(
            open_offers_ok(b"relp_version=x\ncommands=syslog"),
            Err("relp_open_bad_version")
        );
        assert_eq!(
            open_offers_ok(b"relp_version=0"),
            Err("relp_open_no_syslog")
        );
        assert_eq!(
            open_offers_ok(b"relp_version=0\ncommands="),
            Err("relp_open_no_syslog")
        );
        assert_eq!(
            open_offers_ok(b"relp_version=0\ncommands=sysl"),
            Err("relp_open_no_syslog")
        );
        // The 65-value offer of librelp's invalid-open test is harmless here.
        let many = [&b"relp_version=0\ncommands="[..], &b"syslog,".repeat(65)].concat();
        assert_eq!(open_offers_ok(&many), Ok(()));
    }

    #[test]
    fn command_names() {
        assert_eq!(RelpCommand::parse(b"syslog"), Some(RelpCommand::Syslog));
        assert_eq!(RelpCommand::parse(b"Syslog").unwrap().as_str(), "Syslog");
        assert!(matches!(
            RelpCommand::parse(b"Syslog"),
            Some(RelpCommand::Other(_))
        ));
        assert_eq!(RelpCommand::parse(b""), None);
        assert_eq!(RelpCommand::parse(&[b'a'; 33]), None);
        assert_eq!(RelpCommand::parse(&[b'a'; 32]).unwrap().as_str().len(), 32);
        assert_eq!(
            format!("{:?}", RelpCommand::parse(b"abort").unwrap()),
            "Other(\"abort\")"
        );
    }
}
