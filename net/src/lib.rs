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
    let (mut arena, json) = scratch.prepare(line.len());
    header_fields(&syslog, fields);
    if let Some(sd) = syslog.structured_data {
        decode::sd::decode(sd, &mut arena, fields);
    }
    let payload = decode::payload(syslog.app_key(), syslog.message, &mut arena, json, fields);
    let issue = payload
        .issue
        .or(arena.full.then_some(DecodeIssue::ScratchFull));
    Ok(ParsedLine {
        syslog,
        decoder: payload.decoder,
        rule: payload.rule,
        source: payload.source,
        issue,
    })
}

/// Header parts as fields, under the names rules use: `host.name`,
/// `process.name`, `process.pid`, `log.syslog.msgid`.
pub fn header_fields<'a>(message: &SyslogMessage<'a>, fields: &mut Fields<'a>) {
    if let Some(host) = message.hostname {
        fields.push("host.name", host);
    }
    if let Some(app) = message.app_name {
        fields.push("process.name", app);
    }
    if let Some(pid) = message.proc_id {
        fields.push("process.pid", pid);
    }
    if let Some(msg_id) = message.msg_id {
        fields.push("log.syslog.msgid", msg_id);
    }
}
