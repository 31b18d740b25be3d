//! shardwatch-net: sockets, RFC 6587 framing, syslog header parsing and
//! payload field extraction.
//!
//! The parsing half is grouped by protocol: [`framing`] cuts a TCP stream
//! into frames, [`syslog`] parses a frame's header, [`extract`] pulls fields
//! out of free-text messages, and [`render`] shows the result as JSON.
//! [`parse_and_extract`] is the one code path the engine and the golden
//! tests share. None of it allocates per event except `render`.

pub mod extract;
pub mod fields;
pub mod framing;
pub mod render;
pub mod syslog;
pub mod transport;

use fields::Fields;
use syslog::{ParseContext, ParseError, SyslogMessage};

/// A parsed line and the name of the extraction row that matched its
/// message, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedLine<'a> {
    pub syslog: SyslogMessage<'a>,
    pub rule: Option<&'static str>,
}

/// Parses `line` and extracts fields from its message into `fields` (keyed
/// on the app name, or the Cisco mnemonic). On error `fields` is untouched.
pub fn parse_and_extract<'a>(
    line: &'a [u8],
    ctx: &ParseContext,
    fields: &mut Fields<'a>,
) -> Result<ParsedLine<'a>, ParseError> {
    let syslog = syslog::parse(line, ctx)?;
    let rule = extract::extract(syslog.app_key(), syslog.message, fields);
    Ok(ParsedLine { syslog, rule })
}
