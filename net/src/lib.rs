//! shardwatch-net: sockets, RFC 6587 framing, syslog header parsing and
//! payload field extraction.
//!
//! The parsing half is grouped by protocol: [`framing`] cuts a TCP stream
//! into frames, [`syslog`] parses a frame's header, [`decode`] picks a
//! payload decoder per message (JSON, CEF, LEEF, the free-text table in
//! [`extract`], CSV layouts, key=value) and reads RFC 5424 structured
//! data, [`value`] types values on demand, and [`render`] shows the result
//! as JSON. [`parse_and_extract`] is the one code path the engine and the
//! golden tests share. None of it allocates per event once its
//! [`DecodeScratch`] is warm, except `render`.
//!
//! - [`relp`]: RELP (rsyslog's reliable protocol) framing, open-offer
//!   checks and the server's answers; pure, no IO.
//!
//! Besides parsing: [`transport`] holds the sockets, and [`tls`] builds the
//! rustls configs of syslog over TLS (RFC 5425) and of the TLS alert
//! outputs from PEM files.

pub mod decode;
pub mod extract;
pub mod fields;
pub mod framing;
pub mod relp;
pub mod render;
pub mod syslog;
pub mod tls;
pub mod transport;
pub mod value;

#[cfg(test)]
pub(crate) mod test_texts;

pub use decode::{DecodeIssue, DecodeScratch, Decoder, Source};
use fields::Fields;
use syslog::{ParseContext, ParseError, SyslogMessage};

/// A parsed line and what decoded its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedLine<'a> {
    pub syslog: SyslogMessage<'a>,
    /// The decoder that produced the payload fields; `None` when no decoder
    /// claimed the message (plain text without a matching row or pairs).
    pub decoder: Option<Decoder>,
    /// The free-text row or CSV layout that matched, if any.
    pub rule: Option<&'static str>,
    /// For CEF and LEEF, the sending vendor and product from the header.
    pub source: Option<Source<'a>>,
    /// A partial decode, or a recognised format that did not decode; the
    /// line is still accepted.
    pub issue: Option<DecodeIssue>,
}

/// Parses `line`, adds its header parts as fields, then its RFC 5424
/// structured data (`sd.<id>.<param>`), then the fields of its payload
/// (see [`decode`] for how the decoder is chosen), all into `fields`.
///
/// Names and values that are not slices of `line` live in `scratch`, which
/// the caller reuses line after line (one per core); it is reset here, so
/// `fields` must not outlive the next call. On error `fields` is untouched.
pub fn parse_and_extract<'a>(
    line: &'a [u8],
    ctx: &ParseContext,
    scratch: &'a mut DecodeScratch,
    fields: &mut Fields<'a>,
) -> Result<ParsedLine<'a>, ParseError> {
    let syslog = syslog::parse(line, ctx)?;
    let payload = extract_payload(line, &syslog, scratch, fields);
    Ok(ParsedLine {
        syslog,
        decoder: payload.decoder,
        rule: payload.rule,
        source: payload.source,
        issue: payload.issue,
    })
}

/// The second half of [`parse_and_extract`], for a caller that parsed the
/// header of `line` itself (`syslog`, from [`syslog::parse`] of the same
/// line) and decided from it that the payload is wanted: adds the header
/// parts, the structured data and the payload's fields to `fields`, and
/// says what decoded the payload (`issue` also set when the scratch ran
/// out). The header is borrowed: it is about 200 bytes, and moving it in
/// and out again was two `memcpy` calls of every decoded line.
pub fn extract_payload<'a>(
    line: &'a [u8],
    syslog: &SyslogMessage<'a>,
    scratch: &'a mut DecodeScratch,
    fields: &mut Fields<'a>,
) -> decode::Payload<'a> {
    let (mut arena, json) = scratch.prepare(line.len());
    header_fields(syslog, fields);
    if let Some(sd) = syslog.structured_data {
        decode::sd::decode(sd, &mut arena, fields);
    }
    let mut payload = decode::payload(syslog.app_key(), syslog.message, &mut arena, json, fields);
    payload.issue = payload
        .issue
        .or(arena.full.then_some(DecodeIssue::ScratchFull));
    payload
}

/// The field names [`extract_payload`] can give a line's payload without
/// their text being in it: the CEF and LEEF headers', the free-text
/// extraction table's and the CSV layouts' (the header parts' are
/// [`HEADER_FIELD_NAMES`]).
/// Every other name a decoder gives is read from the line (a JSON key, an
/// XML element or attribute, a key=value, CEF or LEEF key, a CEF label,
/// an RFC 5424 `sd.<id>.<param>`), as `shardwatch_rules::PayloadNaming`
/// relies on; a decoder that made up names would have to list them here.
pub fn names_not_in_text() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = decode::cef::HEADER_NAMES
        .iter()
        .chain(decode::leef::HEADER_NAMES.iter())
        .chain(extract::field_names().iter())
        .copied()
        .chain(extract::csv::field_names())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The names [`header_fields`] gives the header's parts, in its order.
pub const HEADER_FIELD_NAMES: [&str; 4] = [
    "host.name",
    "process.name",
    "process.pid",
    "log.syslog.msgid",
];

/// The header's parts [`header_fields`] makes fields of, in
/// [`HEADER_FIELD_NAMES`] order (`None` where the header has none).
pub fn header_parts<'a>(message: &SyslogMessage<'a>) -> [Option<&'a [u8]>; 4] {
    [
        message.hostname,
        message.app_name,
        message.proc_id,
        message.msg_id,
    ]
}

/// Header parts as fields, under the names rules use: `host.name`,
/// `process.name`, `process.pid`, `log.syslog.msgid` (the first fields of
/// every parsed line, before any of its payload's).
pub fn header_fields<'a>(message: &SyslogMessage<'a>, fields: &mut Fields<'a>) {
    for (name, part) in HEADER_FIELD_NAMES.iter().zip(header_parts(message)) {
        if let Some(value) = part {
            fields.push(name, value);
        }
    }
}
