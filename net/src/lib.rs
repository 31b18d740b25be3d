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

/// Parses `line`, adds its header parts as fields, and extracts fields from
/// its message (keyed on the app name, or the Cisco mnemonic), all into
/// `fields`. On error `fields` is untouched.
pub fn parse_and_extract<'a>(
    line: &'a [u8],
    ctx: &ParseContext,
    fields: &mut Fields<'a>,
) -> Result<ParsedLine<'a>, ParseError> {
    let syslog = syslog::parse(line, ctx)?;
    header_fields(&syslog, fields);
    let rule = extract::extract(syslog.app_key(), syslog.message, fields);
    Ok(ParsedLine { syslog, rule })
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
