//! RFC 6587 TCP framing: octet-counting (`LEN SP MSG`) and LF-delimited
//! (`MSG LF`, also `MSG CR LF` and `MSG NUL`), detected per frame on one
//! connection.
//!
//! # What this module owns
//!
//! A [`Framer`] per connection turns a byte stream, fed in arbitrary pieces,
//! into frames. It must not parse syslog, do I/O or allocate beyond its one
//! carry-over buffer, which is reused and never grows past
//! `max_frame_bytes + 1` bytes.
//!
//! # Rules
//!
//! * The mode is detected per connection. At a frame boundary, a digit
//!   starts an octet count; anything else starts an LF frame. A connection
//!   whose first frame is LF-delimited, or whose count is malformed before
//!   any octet-counted frame was delivered, is locked to LF framing: from
//!   then on a line that begins with a digit (`081109 203615 INFO ...`) is
//!   an LF frame, not a count. Only the first such line of a connection can
//!   be lost to RFC 6587's ambiguity (counted as a malformed count). A
//!   connection that has delivered octet-counted frames keeps detecting per
//!   frame, so a trailing LF after a counted frame stays harmless.
//! * A count is `NONZERO-DIGIT *DIGIT` of at most [`MSG_LEN_DIGITS_MAX`]
//!   digits followed by one space. A count starting with `0`, with too many
//!   digits, or followed by anything but a space is counted by reason in
//!   [`FramerStats`], and the framer skips to the next LF (or NUL) and
//!   starts afresh after it. The byte that ended a count is itself examined
//!   for that LF, so `12\n<13>msg\n` loses only `12`.
//! * An LF frame ends at LF or NUL; one trailing CR is dropped. Empty LF
//!   frames (blank lines, an LF after an octet-counted frame) are skipped
//!   and counted, never delivered.
//! * A frame longer than `max_frame_bytes` is cut at the limit, delivered
//!   once with `truncated: true` and counted; the rest of it (up to its LF,
//!   or its remaining octets) is skipped and counted, never glued to the
//!   next frame.
//! * [`Framer::finish`] at EOF delivers a final unterminated LF frame (a
//!   normal frame, counted as unterminated), and delivers the bytes of an
//!   incomplete octet-counted frame with `truncated: true`.
//!
//! Frames are delivered zero-copy from the input when they lie within one
//! `feed` call, and from the carry-over buffer when they span calls.

use memchr::memchr2;

/// Default largest frame delivered; longer frames are truncated.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 64 * 1024;

/// Most digits in an octet count: counts up to 999 999 999 bytes are read
/// (and truncated to the limit); more digits are a malformed count.
pub const MSG_LEN_DIGITS_MAX: u32 = 9;

/// One frame; `bytes` is never longer than the framer's `max_frame_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub bytes: &'a [u8],
    /// The frame was longer than the limit (or incomplete at EOF) and these
    /// are only its first bytes.
    pub truncated: bool,
}

/// Per-connection counters; plain u64s so the transport can sum them into
/// its metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Octet-counted frames delivered (including truncated ones).
    pub frames_octet_counted: u64,
    /// LF-delimited frames delivered (including truncated ones and the
    /// unterminated final frame).
    pub frames_lf: u64,
    /// Frames cut at `max_frame_bytes`.
    pub frames_truncated: u64,
    /// Empty LF frames skipped.
    pub frames_empty: u64,
    /// Final LF frames without a terminator, delivered at EOF.
    pub frames_unterminated_eof: u64,
    /// Octet-counted frames cut short by EOF, delivered truncated.
    pub frames_incomplete_eof: u64,
    /// Counts starting with `0`.
    pub bad_count_zero: u64,
    /// Counts with more than [`MSG_LEN_DIGITS_MAX`] digits.
    pub bad_count_too_many_digits: u64,
    /// Counts followed by something other than a space.
    pub bad_count_no_space: u64,
    /// Bytes discarded: tails of truncated frames and resynchronisation.
    pub bytes_skipped: u64,
}

impl FramerStats {
    /// Malformed counts by reason, with stable snake_case labels.
    pub fn bad_counts(&self) -> [(&'static str, u64); 3] {
        [
            ("count_zero", self.bad_count_zero),
            ("count_too_many_digits", self.bad_count_too_many_digits),
            ("count_no_space", self.bad_count_no_space),
        ]
    }

    /// Adds another connection's counters (for per-core totals).
    pub fn add(&mut self, other: &FramerStats) {
        self.frames_octet_counted += other.frames_octet_counted;
        self.frames_lf += other.frames_lf;
        self.frames_truncated += other.frames_truncated;
        self.frames_empty += other.frames_empty;
        self.frames_unterminated_eof += other.frames_unterminated_eof;
        self.frames_incomplete_eof += other.frames_incomplete_eof;
        self.bad_count_zero += other.bad_count_zero;
        self.bad_count_too_many_digits += other.bad_count_too_many_digits;
        self.bad_count_no_space += other.bad_count_no_space;
        self.bytes_skipped += other.bytes_skipped;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a frame boundary.
    Start,
    /// Reading an octet count.
    Count { value: usize, digits: u32 },
    /// Collecting `want` bytes of an octet-counted frame into `carry`;
    /// `excess` more bytes of it follow and will be skipped.
    Octets { want: usize, excess: usize },
    /// Collecting an LF frame into `carry`.
    Lf,
    /// Skipping to the next LF or NUL (tail of a truncated LF frame, or
    /// resynchronisation after a malformed count).
    SkipToLf,
    /// Skipping the rest of a truncated octet-counted frame.
    SkipOctets { remaining: usize },
}

/// RFC 6587 framer for one connection; see the module docs.
#[derive(Debug)]
pub struct Framer {
    max_frame_bytes: usize,
    carry: Vec<u8>,
    state: State,
    /// The connection has shown it is not octet-counting (its first frame
    /// was LF-delimited, or a count was malformed before any good one):
    /// from then on every frame is LF-delimited, so lines that begin with a
    /// digit are not misread as counts.
    lf_only: bool,
    pub stats: FramerStats,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(FRAME_BYTES_MAX_DEFAULT)
    }
}

impl Framer {
    /// A framer delivering frames of at most `max_frame_bytes` (at least 1).
    pub fn new(max_frame_bytes: usize) -> Self {
        assert!(max_frame_bytes > 0, "max_frame_bytes must be positive");
        Framer {
            max_frame_bytes,
            carry: Vec::new(),
            state: State::Start,
            lf_only: false,
            stats: FramerStats::default(),
        }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Locks the connection to LF framing unless it has already delivered an
    /// octet-counted frame (then each frame is still detected on its own).
    fn lock_lf_if_unproven(&mut self) {
        if self.stats.frames_octet_counted == 0 {
            self.lf_only = true;
        }
    }

    /// Bytes held over from earlier `feed` calls (a frame in progress).
    pub fn pending_bytes(&self) -> usize {
        self.carry.len()
    }

    /// Feeds the next bytes of the stream, calling `on_frame` for every frame
    /// completed by them, in order.
    pub fn feed(&mut self, mut input: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        while !input.is_empty() {
            input = self.step(input, &mut on_frame);
        }
        debug_assert!(self.carry.len() <= self.max_frame_bytes + 1);
    }

    /// Like [`Framer::feed`], but stops after the first frame for which
    /// `on_frame` breaks, and returns how many bytes of `input` it
    /// consumed (all of them unless it stopped). The rest is fed later, so
    /// a caller can act between one frame and the next (commit and send
    /// what that frame raised) without cutting the input blindly.
    pub fn feed_until(
        &mut self,
        input: &[u8],
        mut on_frame: impl FnMut(Frame<'_>) -> std::ops::ControlFlow<()>,
    ) -> usize {
        let mut rest = input;
        // Each step delivers at most one frame.
        while !rest.is_empty() {
            let mut stop = false;
            rest = self.step(rest, &mut |frame: Frame<'_>| {
                stop = on_frame(frame).is_break();
            });
            if stop {
                break;
            }
        }
        debug_assert!(self.carry.len() <= self.max_frame_bytes + 1);
        input.len() - rest.len()
    }

    /// Ends the stream: delivers what is left (see the module docs) and
    /// resets the framer for reuse.
    pub fn finish(&mut self, mut on_frame: impl FnMut(Frame<'_>)) {
        match self.state {
            State::Lf => {
                let frame = strip_cr(&self.carry);
                if frame.is_empty() {
                    self.stats.frames_empty += 1;
                } else {
                    let (bytes, truncated) = self.cut(frame.len());
                    self.stats.frames_lf += 1;
                    self.stats.frames_unterminated_eof += 1;
                    on_frame(Frame {
                        bytes: &self.carry[..bytes],
                        truncated,
                    });
                }
            }
            State::Octets { .. } => {
                self.stats.frames_incomplete_eof += 1;
                if !self.carry.is_empty() {
                    self.stats.frames_octet_counted += 1;
                    on_frame(Frame {
                        bytes: &self.carry,
                        truncated: true,
                    });
                }
            }
            State::Count { .. } => self.stats.bad_count_no_space += 1,
            _ => {}
        }
        self.carry.clear();
        self.state = State::Start;
    }

    /// Whether a frame of `len` bytes must be cut; returns the length to
    /// deliver and the truncated flag, counting the truncation.
    fn cut(&mut self, len: usize) -> (usize, bool) {
        if len > self.max_frame_bytes {
            self.stats.frames_truncated += 1;
            (self.max_frame_bytes, true)
        } else {
            (len, false)
        }
    }

    /// Consumes a prefix of `input` (at least one byte) and returns the rest.
    fn step<'b>(&mut self, input: &'b [u8], on_frame: &mut impl FnMut(Frame<'_>)) -> &'b [u8] {
        debug_assert!(!input.is_empty());
        match self.state {
            State::Start => {
                debug_assert!(self.carry.is_empty());
                if self.lf_only {
                    self.state = State::Lf;
                    return input;
                }
                match input[0] {
                    b'0' => {
                        self.stats.bad_count_zero += 1;
                        self.lock_lf_if_unproven();
                        self.stats.bytes_skipped += 1;
                        self.state = State::SkipToLf;
                        &input[1..]
                    }
                    b @ b'1'..=b'9' => {
                        self.state = State::Count {
                            value: usize::from(b - b'0'),
                            digits: 1,
                        };
                        &input[1..]
                    }
                    _ => {
                        self.lock_lf_if_unproven();
                        self.state = State::Lf;
                        input
                    }
                }
            }
            State::Count { value, digits } => match input[0] {
                b @ b'0'..=b'9' => {
                    if digits == MSG_LEN_DIGITS_MAX {
                        self.stats.bad_count_too_many_digits += 1;
                        self.lock_lf_if_unproven();
                        self.stats.bytes_skipped += u64::from(digits) + 1;
                        self.state = State::SkipToLf;
                    } else {
                        self.state = State::Count {
                            value: value * 10 + usize::from(b - b'0'),
                            digits: digits + 1,
                        };
                    }
                    &input[1..]
                }
                b' ' => {
                    let want = value.min(self.max_frame_bytes);
                    self.state = State::Octets {
                        want,
                        excess: value - want,
                    };
                    &input[1..]
                }
                _ => {
                    // Not consumed: it may be the LF that resynchronises.
                    self.stats.bad_count_no_space += 1;
                    self.lock_lf_if_unproven();
                    self.stats.bytes_skipped += u64::from(digits);
                    self.state = State::SkipToLf;
                    input
                }
            },
            State::Octets { want, excess } => {
                debug_assert!(want > 0 && want <= self.max_frame_bytes);
                debug_assert!(self.carry.len() < want);
                let need = want - self.carry.len();
                if input.len() < need {
                    self.carry.extend_from_slice(input);
                    return b"";
                }
                let truncated = excess > 0;
                if truncated {
                    self.stats.frames_truncated += 1;
                }
                self.stats.frames_octet_counted += 1;
                if self.carry.is_empty() {
                    on_frame(Frame {
                        bytes: &input[..need],
                        truncated,
                    });
                } else {
                    self.carry.extend_from_slice(&input[..need]);
                    on_frame(Frame {
                        bytes: &self.carry,
                        truncated,
                    });
                    self.carry.clear();
                }
                self.state = if truncated {
                    State::SkipOctets { remaining: excess }
                } else {
                    State::Start
                };
                &input[need..]
            }
            State::SkipOctets { remaining } => {
                let n = remaining.min(input.len());
                self.stats.bytes_skipped += n as u64;
                self.state = if n == remaining {
                    State::Start
                } else {
                    State::SkipOctets {
                        remaining: remaining - n,
                    }
                };
                &input[n..]
            }
            State::SkipToLf => match memchr2(b'\n', 0, input) {
                Some(i) => {
                    // The terminator itself is not counted as skipped.
                    self.stats.bytes_skipped += i as u64;
                    self.state = State::Start;
                    &input[i + 1..]
                }
                None => {
                    self.stats.bytes_skipped += input.len() as u64;
                    b""
                }
            },
            State::Lf => self.step_lf(input, on_frame),
        }
    }

    fn step_lf<'b>(&mut self, input: &'b [u8], on_frame: &mut impl FnMut(Frame<'_>)) -> &'b [u8] {
        // The carry may hold one byte over the limit: a CR that may turn out
        // to be the CR of a CR LF trailer.
        let limit = self.max_frame_bytes + 1;
        debug_assert!(self.carry.len() <= limit);
        match memchr2(b'\n', 0, input) {
            Some(i) => {
                let held = self.carry.len();
                let last = if i > 0 {
                    input.get(i - 1)
                } else {
                    self.carry.last()
                };
                let len = held + i - usize::from(last == Some(&b'\r'));
                if len == 0 {
                    self.stats.frames_empty += 1;
                } else {
                    let (deliver, truncated) = self.cut(len);
                    self.stats.frames_lf += 1;
                    if truncated {
                        // Everything after the cut, a trailing CR included,
                        // so the count does not depend on how input was split.
                        self.stats.bytes_skipped += (held + i - deliver) as u64;
                    }
                    if held == 0 {
                        on_frame(Frame {
                            bytes: &input[..deliver],
                            truncated,
                        });
                    } else {
                        if deliver > held {
                            self.carry.extend_from_slice(&input[..deliver - held]);
                        }
                        on_frame(Frame {
                            bytes: &self.carry[..deliver],
                            truncated,
                        });
                    }
                }
                self.carry.clear();
                self.state = State::Start;
                &input[i + 1..]
            }
            None if self.carry.len() + input.len() <= limit => {
                self.carry.extend_from_slice(input);
                b""
            }
            None => {
                // Over the limit with no end in sight: deliver the first
                // `max_frame_bytes` and skip the rest of the frame.
                let held = self.carry.len();
                let take = self.max_frame_bytes.saturating_sub(held);
                self.carry.extend_from_slice(&input[..take]);
                self.carry.truncate(self.max_frame_bytes);
                self.stats.frames_truncated += 1;
                self.stats.frames_lf += 1;
                self.stats.bytes_skipped += (held + input.len() - self.max_frame_bytes) as u64;
                on_frame(Frame {
                    bytes: &self.carry,
                    truncated: true,
                });
                self.carry.clear();
                self.state = State::SkipToLf;
                b""
            }
        }
    }
}

fn strip_cr(frame: &[u8]) -> &[u8] {
    frame.strip_suffix(b"\r").unwrap_or(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as owned (bytes, truncated) pairs, for comparison.
    type Owned = Vec<(Vec<u8>, bool)>;

    fn run(framer: &mut Framer, pieces: &[&[u8]]) -> Owned {
        let mut out = Vec::new();
        for piece in pieces {
            framer.feed(piece, |f| out.push((f.bytes.to_vec(), f.truncated)));
        }
        framer.finish(|f| out.push((f.bytes.to_vec(), f.truncated)));
        out
    }

    /// Frames of `stream` fed whole, and asserts that every split into two
    /// pieces and byte-by-byte feeding give the same frames and stats.
    fn frames(max: usize, stream: &[u8]) -> (Owned, FramerStats) {
        let mut whole = Framer::new(max);
        let expected = run(&mut whole, &[stream]);
        for frame in &expected {
            assert!(frame.0.len() <= max);
        }
        for cut in 0..=stream.len() {
            let mut split = Framer::new(max);
            let got = run(&mut split, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(got, expected, "split at {cut}");
            assert_eq!(split.stats, whole.stats, "stats, split at {cut}");
        }
        let mut bytewise = Framer::new(max);
        let pieces: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&mut bytewise, &pieces), expected, "byte by byte");
        assert_eq!(bytewise.stats, whole.stats);
        // Fed to a caller that stops after every frame.
        let mut stepping = Framer::new(max);
        let mut got = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let before = got.len();
            let used = stepping.feed_until(rest, |f| {
                got.push((f.bytes.to_vec(), f.truncated));
                std::ops::ControlFlow::Break(())
            });
            assert!(got.len() - before <= 1, "fed on after a stop");
            assert!(
                got.len() > before || used == rest.len(),
                "stopped without a frame"
            );
            rest = &rest[used..];
        }
        stepping.finish(|f| got.push((f.bytes.to_vec(), f.truncated)));
        assert_eq!(got, expected, "one frame at a time");
        assert_eq!(stepping.stats, whole.stats);
        (expected, whole.stats)
    }

    fn ok(bytes: &[u8]) -> (Vec<u8>, bool) {
        (bytes.to_vec(), false)
    }

    fn cut(bytes: &[u8]) -> (Vec<u8>, bool) {
        (bytes.to_vec(), true)
    }

    #[test]
    fn octet_counted_connection_accepts_lf_frames_between_counts() {
        let (got, stats) = frames(64, b"9 <13>c\nd e\n<13>f\0\n\r\n5 <13>g");
        assert_eq!(got, vec![ok(b"<13>c\nd e"), ok(b"<13>f"), ok(b"<13>g")]);
        assert_eq!(stats.frames_lf, 1);
        assert_eq!(stats.frames_octet_counted, 2);
        assert_eq!(stats.frames_empty, 3);
        assert_eq!(stats.frames_unterminated_eof, 0);
    }

    #[test]
    fn lf_connection_stays_lf_for_lines_that_start_with_digits() {
        let (got, stats) = frames(64, b"<13>a\n<13>b\r\n9 <13>c\n081109 203615 INFO x\n");
        assert_eq!(
            got,
            vec![
                ok(b"<13>a"),
                ok(b"<13>b"),
                ok(b"9 <13>c"),
                ok(b"081109 203615 INFO x")
            ]
        );
        assert_eq!(stats.frames_lf, 4);
        assert_eq!(stats.frames_octet_counted, 0);
        assert_eq!(stats.bad_count_zero, 0);
    }

    #[test]
    fn unterminated_final_frame_is_flushed() {
        let (got, stats) = frames(64, b"<13>a\n<13>tail");
        assert_eq!(got, vec![ok(b"<13>a"), ok(b"<13>tail")]);
        assert_eq!(stats.frames_unterminated_eof, 1);
    }

    #[test]
    fn long_lf_frame_is_cut_and_its_rest_skipped() {
        let (got, stats) = frames(4, b"abcdefgh\nxy\nabcd\r\nabcde\r\nabcd\r");
        assert_eq!(
            got,
            vec![
                cut(b"abcd"),
                ok(b"xy"),
                ok(b"abcd"),
                cut(b"abcd"),
                ok(b"abcd")
            ]
        );
        assert_eq!(stats.frames_truncated, 2);
        assert_eq!(stats.bytes_skipped, 4 + 2);
    }

    #[test]
    fn long_octet_frame_is_cut_and_its_rest_skipped() {
        let (got, stats) = frames(4, b"6 abcdef4 wxyz2 ab");
        assert_eq!(got, vec![cut(b"abcd"), ok(b"wxyz"), ok(b"ab")]);
        assert_eq!(stats.frames_truncated, 1);
        assert_eq!(stats.bytes_skipped, 2);
    }

    #[test]
    fn bad_counts_resync_at_next_lf() {
        // On a connection that has delivered octet-counted frames, each
        // malformed count is counted and skipped up to the next LF.
        let (got, stats) = frames(64, b"2 ok0 x\n1234567890 y\n12x z\n12\n<13>ok\n3 abc");
        assert_eq!(got, vec![ok(b"ok"), ok(b"<13>ok"), ok(b"abc")]);
        assert_eq!(stats.bad_count_zero, 1);
        assert_eq!(stats.bad_count_too_many_digits, 1);
        assert_eq!(stats.bad_count_no_space, 2);
        assert_eq!(stats.frames_lf + stats.frames_octet_counted, 3);
    }

    #[test]
    fn a_bad_first_count_locks_the_connection_to_lf() {
        let (got, stats) = frames(64, b"081109 first\n081109 second\n12 third\n");
        assert_eq!(got, vec![ok(b"081109 second"), ok(b"12 third")]);
        assert_eq!(stats.bad_count_zero, 1);
        assert_eq!(stats.frames_lf, 2);
    }

    #[test]
    fn incomplete_octet_frame_at_eof_is_truncated() {
        let (got, stats) = frames(64, b"10 abc");
        assert_eq!(got, vec![cut(b"abc")]);
        assert_eq!(stats.frames_incomplete_eof, 1);
        let (got, stats) = frames(64, b"10 ");
        assert!(got.is_empty());
        assert_eq!(stats.frames_incomplete_eof, 1);
    }

    #[test]
    fn carry_stays_bounded() {
        let mut framer = Framer::new(8);
        let big = vec![b'a'; 1000];
        let mut n = 0;
        for _ in 0..10 {
            framer.feed(&big, |f| {
                assert_eq!(f.bytes.len(), 8);
                n += 1;
            });
            assert!(framer.pending_bytes() <= 9);
        }
        framer.feed(b"\nnext\n", |f| assert_eq!(f.bytes, b"next"));
        assert_eq!(n, 1);
        assert_eq!(framer.stats.frames_truncated, 1);
    }
}
