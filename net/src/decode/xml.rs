//! XML event payloads: the Windows event schema (`<Event><System>...
//! </System><EventData><Data Name="...">...</Data></EventData></Event>`)
//! as Sysmon for Linux writes it to syslog and as Windows event forwarders
//! relay it, flattened into the same dotted fields a JSON rendering of the
//! event gives.
//!
//! # What this module owns
//!
//! The flattening rules:
//!
//! * Only a document whose root element is `Event` is claimed (an
//!   `<?xml ...?>` declaration and comments may come first); anything else
//!   is left to the other decoders.
//! * An element with text and no child elements gives a field named by its
//!   path from the root: `Event.System.EventID` = `1`. Whitespace-only text
//!   gives nothing; the text is trimmed of surrounding whitespace.
//! * A `Data` (or `Param`) element with a `Name` attribute is named by
//!   that attribute under its parent: `<EventData><Data Name="Image">`
//!   gives `Event.EventData.Image`. Unnamed `Data` elements are numbered
//!   under their parent (`Event.EventData.Data.0`, `.1`, ...).
//! * Attributes give `path.attribute`: `<Provider Name="Linux-Sysmon"/>`
//!   gives `Event.System.Provider.Name`. Namespace declarations
//!   (`xmlns`, `xmlns:*`) give nothing, and a prefix (`ns:Name`) is
//!   dropped from element and attribute names.
//! * Text and attribute values are unescaped: the five predefined entities
//!   and character references (`&#60;`, `&#x3C;`); an unknown entity is
//!   kept as written. `<![CDATA[...]]>` is text taken as is. Comments and
//!   processing instructions are skipped.
//! * A document type declaration (`<!DOCTYPE`), a close tag that does not
//!   match, an unterminated construct or anything but whitespace after the
//!   root is [`DecodeIssue::XmlInvalid`]: nothing is pushed and the line
//!   goes on to the other decoders as text.
//! * Elements nested deeper than [`XML_DEPTH_MAX`] are checked but give no
//!   fields, and the decode reports [`DecodeIssue::XmlTooDeep`] (partial,
//!   as for JSON); past [`XML_NESTING_MAX`] the document is invalid. Past [`crate::fields::FIELDS_MAX`] fields the rest are
//!   counted in `Fields::overflow`.
//!
//! Like the other decoders it must not allocate: names are built in the
//! caller's arena, and values are slices of the line unless unescaped.

use super::{key_text, Arena, DecodeIssue};
use crate::fields::Fields;

/// Deepest element nesting that gives fields (the root is depth 1).
/// Windows events go four deep (`Event.UserData.X.Y`).
pub const XML_DEPTH_MAX: usize = 8;

/// Deepest nesting accepted at all (the walk recurses per element):
/// deeper documents are [`DecodeIssue::XmlInvalid`].
pub const XML_NESTING_MAX: usize = 64;

/// Unnamed `Data` elements numbered per parent before the rest are left
/// out (counted as overflow).
pub const UNNAMED_DATA_MAX: usize = 32;

/// Whether `text` starts like a document this decoder claims: `<?xml`, or
/// `<Event` followed by whitespace, `>` or `/`.
pub fn looks_like_event(text: &[u8]) -> bool {
    text.starts_with(b"<?xml") || root_is_event(text)
}

/// Whether `text` opens an element named exactly `Event`.
fn root_is_event(text: &[u8]) -> bool {
    text.strip_prefix(b"<Event").is_some_and(|rest| {
        rest.first()
            .is_some_and(|&b| b == b'>' || b == b'/' || b.is_ascii_whitespace())
    })
}

/// Decodes `text` into `fields`. On `Err` nothing was pushed.
pub fn decode<'a>(
    text: &'a [u8],
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
) -> Result<Option<DecodeIssue>, DecodeIssue> {
    let start = fields.len();
    let overflow = fields.overflow;
    let mut walk = Walk {
        text,
        at: 0,
        arena,
        fields,
        path: [""; XML_DEPTH_MAX],
        unnamed: [0; XML_DEPTH_MAX],
        too_deep: false,
    };
    match walk.document() {
        Ok(()) => Ok(walk.too_deep.then_some(DecodeIssue::XmlTooDeep)),
        Err(()) => {
            walk.fields.truncate(start);
            walk.fields.overflow = overflow;
            Err(DecodeIssue::XmlInvalid)
        }
    }
}

/// What an element's content held, for its close.
#[derive(Default)]
struct Content<'a> {
    /// The first non-blank text segment (trimmed), raw or unescaped.
    text: Option<&'a [u8]>,
    had_child: bool,
}

/// One pass over a document.
struct Walk<'w, 'a> {
    text: &'a [u8],
    at: usize,
    arena: &'w mut Arena<'a>,
    fields: &'w mut Fields<'a>,
    /// Names of the open elements (as they name fields); `path[..depth]`
    /// prefixes a name.
    path: [&'a str; XML_DEPTH_MAX],
    /// Per depth: unnamed `Data` children numbered so far.
    unnamed: [usize; XML_DEPTH_MAX],
    too_deep: bool,
}

type Step<T = ()> = Result<T, ()>;

impl<'a> Walk<'_, 'a> {
    fn rest(&self) -> &'a [u8] {
        &self.text[self.at.min(self.text.len())..]
    }

    fn skip_whitespace(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    /// Moves past the next `end`, or fails at the end of the text.
    fn skip_past(&mut self, end: &[u8]) -> Step {
        let found = memchr::memmem::find(self.rest(), end).ok_or(())?;
        self.at += found + end.len();
        Ok(())
    }

    /// The prolog (declaration, comments, whitespace), the `Event` root,
    /// and only whitespace or comments after it.
    fn document(&mut self) -> Step {
        self.misc()?;
        if !root_is_event(self.rest()) {
            return Err(());
        }
        self.at += 1;
        self.element(0)?;
        self.misc()?;
        if self.at < self.text.len() {
            return Err(());
        }
        Ok(())
    }

    /// Whitespace, comments and processing instructions.
    fn misc(&mut self) -> Step {
        loop {
            self.skip_whitespace();
            let rest = self.rest();
            if rest.starts_with(b"<?") {
                self.skip_past(b"?>")?;
            } else if rest.starts_with(b"<!--") {
                self.at += 4;
                self.skip_past(b"-->")?;
            } else {
                return Ok(());
            }
        }
    }

    /// An XML name at the cursor (ASCII letters, digits, `_ - . :` and
    /// bytes past ASCII), advanced past.
    fn name(&mut self) -> Step<&'a [u8]> {
        let rest = self.rest();
        let len = rest
            .iter()
            .position(|&b| {
                !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':') || b >= 0x80)
            })
            .unwrap_or(rest.len());
        if len == 0 || rest[0].is_ascii_digit() || matches!(rest[0], b'-' | b'.') {
            return Err(());
        }
        self.at += len;
        Ok(&rest[..len])
    }

    /// The element whose name starts at the cursor (just past `<`), with
    /// `depth` elements open around it; the cursor ends past its close.
    fn element(&mut self, depth: usize) -> Step {
        if depth >= XML_NESTING_MAX {
            return Err(());
        }
        let raw_name = self.name()?;
        let local = local_name(raw_name);
        let fields_here = depth < XML_DEPTH_MAX;
        if !fields_here {
            self.too_deep = true;
        }
        // A Data element is named by its `Name` attribute (or numbered),
        // known only once its attributes are read; any other element by
        // its tag, so its attributes become fields as they are read.
        let data = depth > 0 && is_data(local);
        let mut own_name = if data || !fields_here {
            None
        } else {
            key_text(local)
        };
        if let Some(name) = own_name {
            self.path[depth] = name;
            self.unnamed[depth] = 0;
        }
        let mut data_name: Option<&'a [u8]> = None;
        let self_closing = loop {
            let before = self.at;
            self.skip_whitespace();
            let rest = self.rest();
            match rest.first() {
                None => return Err(()),
                Some(b'>') => {
                    self.at += 1;
                    break false;
                }
                Some(b'/') => {
                    if rest.get(1) != Some(&b'>') {
                        return Err(());
                    }
                    self.at += 2;
                    break true;
                }
                Some(_) => {
                    if self.at == before {
                        // Attributes must be separated by whitespace.
                        return Err(());
                    }
                    let (name, value) = self.attribute()?;
                    if data {
                        if local_name(name) == b"Name" {
                            data_name.get_or_insert(value);
                        }
                    } else if own_name.is_some() {
                        self.attribute_field(name, value, depth);
                    }
                }
            }
        };
        if data && fields_here {
            own_name = match data_name {
                Some(value) => self.unescape(value).and_then(key_text),
                None => {
                    // Unnamed Data elements: numbered per parent, within a
                    // bound.
                    let index = self.unnamed[depth - 1];
                    self.unnamed[depth - 1] += 1;
                    if index < UNNAMED_DATA_MAX {
                        self.numbered(local, index)
                    } else {
                        self.fields.count_overflow();
                        None
                    }
                }
            };
            if let Some(name) = own_name {
                self.path[depth] = name;
                self.unnamed[depth] = 0;
            }
        }
        if self_closing {
            return Ok(());
        }
        let content = self.content(depth)?;
        // The close tag must name this element.
        let close = self.name()?;
        if close != raw_name {
            return Err(());
        }
        self.skip_whitespace();
        if self.rest().first() != Some(&b'>') {
            return Err(());
        }
        self.at += 1;
        if let (Some(text), false, Some(_)) = (content.text, content.had_child, own_name) {
            let name = if depth == 0 {
                Some(self.path[0])
            } else {
                self.arena
                    .dotted(&self.path[..depth], self.path[depth], None)
            };
            match name {
                Some(name) if !self.fields.is_full() => {
                    self.fields.push(name, text);
                }
                _ => self.fields.count_overflow(),
            }
        }
        Ok(())
    }

    /// `local.index` as a name segment (in the arena).
    fn numbered(&mut self, local: &[u8], index: usize) -> Option<&'a str> {
        let local = key_text(local)?;
        let digits = self.arena.decimal(index as u64)?;
        self.arena.concat_str(&[local, ".", digits])
    }

    /// Pushes attribute `name` = `value` of the element at `depth` (whose
    /// name is `path[depth]`) as `path[..=depth].attribute`; namespace
    /// declarations give nothing.
    fn attribute_field(&mut self, name: &'a [u8], value: &'a [u8], depth: usize) {
        if name == b"xmlns" || name.starts_with(b"xmlns:") {
            return;
        }
        let Some(key) = key_text(local_name(name)) else {
            return;
        };
        if self.fields.is_full() {
            self.fields.count_overflow();
            return;
        }
        let Some(value) = self.unescape(value) else {
            return;
        };
        if let Some(name) = self.arena.dotted(&self.path[..=depth], key, None) {
            self.fields.push(name, value);
        }
    }

    /// `name = "value"` (or single quotes) at the cursor: the name and the
    /// raw value.
    fn attribute(&mut self) -> Step<(&'a [u8], &'a [u8])> {
        let name = self.name()?;
        self.skip_whitespace();
        if self.rest().first() != Some(&b'=') {
            return Err(());
        }
        self.at += 1;
        self.skip_whitespace();
        let quote = *self.rest().first().ok_or(())?;
        if quote != b'"' && quote != b'\'' {
            return Err(());
        }
        self.at += 1;
        let rest = self.rest();
        let len = memchr::memchr(quote, rest).ok_or(())?;
        let value = &rest[..len];
        if value.contains(&b'<') {
            return Err(());
        }
        self.at += len + 1;
        Ok((name, value))
    }

    /// The content of the element open at `depth`, up to and past the
    /// `</` of its close tag.
    fn content(&mut self, depth: usize) -> Step<Content<'a>> {
        let mut content = Content::default();
        loop {
            let rest = self.rest();
            let lt = memchr::memchr(b'<', rest).ok_or(())?;
            if lt > 0 && content.text.is_none() {
                let segment = trim(&rest[..lt]);
                if !segment.is_empty() {
                    content.text = Some(self.unescape(segment).ok_or(())?);
                }
            }
            self.at += lt;
            let rest = self.rest();
            if rest.starts_with(b"</") {
                self.at += 2;
                return Ok(content);
            } else if rest.starts_with(b"<!--") {
                self.at += 4;
                self.skip_past(b"-->")?;
            } else if rest.starts_with(b"<![CDATA[") {
                self.at += 9;
                let end = memchr::memmem::find(self.rest(), b"]]>").ok_or(())?;
                let data = &self.rest()[..end];
                if content.text.is_none() && !trim(data).is_empty() {
                    content.text = Some(data);
                }
                self.at += end + 3;
            } else if rest.starts_with(b"<?") {
                self.skip_past(b"?>")?;
            } else if rest.starts_with(b"<!") {
                // DOCTYPE and other declarations have no place in an event.
                return Err(());
            } else {
                self.at += 1;
                content.had_child = true;
                self.element(depth + 1)?;
            }
        }
    }

    /// `raw` with entities and character references replaced (in the
    /// arena), or `raw` itself when it has no `&`. `None` when the arena is
    /// full.
    fn unescape(&mut self, raw: &'a [u8]) -> Option<&'a [u8]> {
        if memchr::memchr(b'&', raw).is_none() {
            return Some(raw);
        }
        // Never longer: every reference is at least as long as the UTF-8
        // it stands for (`&#x10FFFF;` is 10 bytes for 4).
        self.arena.fill(raw.len(), |buf| {
            let mut out = 0;
            let mut i = 0;
            while i < raw.len() {
                if raw[i] == b'&' {
                    if let Some((text, used)) = reference(&raw[i..]) {
                        let bytes = text.as_bytes();
                        buf[out..out + bytes.len()].copy_from_slice(bytes);
                        out += bytes.len();
                        i += used;
                        continue;
                    }
                }
                buf[out] = raw[i];
                out += 1;
                i += 1;
            }
            Some(out)
        })
    }
}

/// The reference at the start of `text` (which starts with `&`): what it
/// stands for (as UTF-8 in a small buffer) and its length.
fn reference(text: &[u8]) -> Option<(Utf8Char, usize)> {
    let end = text.iter().take(12).position(|&b| b == b';')?;
    let body = &text[1..end];
    let ch = match body {
        b"lt" => '<',
        b"gt" => '>',
        b"amp" => '&',
        b"quot" => '"',
        b"apos" => '\'',
        _ => {
            let digits = body.strip_prefix(b"#")?;
            let (digits, radix) = match digits.strip_prefix(b"x").or(digits.strip_prefix(b"X")) {
                Some(hex) => (hex, 16),
                None => (digits, 10),
            };
            let text = std::str::from_utf8(digits).ok()?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            char::from_u32(u32::from_str_radix(text, radix).ok()?)?
        }
    };
    Some((Utf8Char::new(ch), end + 1))
}

/// One `char` encoded as UTF-8 on the stack.
struct Utf8Char {
    bytes: [u8; 4],
    len: usize,
}

impl Utf8Char {
    fn new(ch: char) -> Self {
        let mut bytes = [0u8; 4];
        let len = ch.encode_utf8(&mut bytes).len();
        Utf8Char { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `name` without a namespace prefix.
fn local_name(name: &[u8]) -> &[u8] {
    match memchr::memrchr(b':', name) {
        Some(at) => &name[at + 1..],
        None => name,
    }
}

/// Elements named by their `Name` attribute (event data and parameters).
fn is_data(local: &[u8]) -> bool {
    local == b"Data" || local == b"Param"
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |at| at + 1);
    &bytes[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned fields of a decode, and its partial-decode note.
    type Decoded = (Vec<(String, String)>, Option<DecodeIssue>);

    fn decode_owned(text: &str) -> Result<Decoded, DecodeIssue> {
        let mut buffer = vec![0u8; text.len() * 4 + 1024];
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        let issue = decode(text.as_bytes(), &mut arena, &mut fields)?;
        Ok((
            fields
                .as_slice()
                .iter()
                .map(|(n, v)| ((*n).to_owned(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            issue,
        ))
    }

    fn get<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A Sysmon for Linux process creation, as it writes it to syslog.
    const SYSMON_LINUX: &str = r#"<Event><System><Provider Name="Linux-Sysmon" Guid="{ff032593-a8d3-4f13-b0d6-01fc615a0f97}"/><EventID>1</EventID><Version>5</Version><Level>4</Level><Task>1</Task><Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime="2026-12-03T10:01:02.123456000Z"/><EventRecordID>42</EventRecordID><Correlation/><Execution ProcessID="812" ThreadID="812"/><Channel>Linux-Sysmon/Operational</Channel><Computer>web1</Computer><Security UserId="0"/></System><EventData><Data Name="RuleName">-</Data><Data Name="UtcTime">2026-12-03 10:01:02.125</Data><Data Name="ProcessGuid">{3b6a1c2d-0000-0000-0000-000000000000}</Data><Data Name="ProcessId">4242</Data><Data Name="Image">/usr/bin/base64</Data><Data Name="CommandLine">base64 -d /tmp/p.b64</Data><Data Name="CurrentDirectory">/tmp</Data><Data Name="User">www-data</Data><Data Name="ParentImage">/usr/bin/bash</Data></EventData></Event>"#;

    #[test]
    fn sysmon_for_linux_flattens_like_its_json_form() {
        let (fields, issue) = decode_owned(SYSMON_LINUX).unwrap();
        assert_eq!(issue, None);
        assert_eq!(get(&fields, "Event.System.EventID"), Some("1"));
        assert_eq!(
            get(&fields, "Event.System.Channel"),
            Some("Linux-Sysmon/Operational")
        );
        assert_eq!(get(&fields, "Event.System.Computer"), Some("web1"));
        assert_eq!(
            get(&fields, "Event.System.Provider.Name"),
            Some("Linux-Sysmon")
        );
        assert_eq!(
            get(&fields, "Event.System.TimeCreated.SystemTime"),
            Some("2026-12-03T10:01:02.123456000Z")
        );
        assert_eq!(
            get(&fields, "Event.System.Execution.ProcessID"),
            Some("812")
        );
        assert_eq!(
            get(&fields, "Event.EventData.Image"),
            Some("/usr/bin/base64")
        );
        assert_eq!(
            get(&fields, "Event.EventData.CommandLine"),
            Some("base64 -d /tmp/p.b64")
        );
        assert_eq!(get(&fields, "Event.EventData.RuleName"), Some("-"));
        // Empty elements and the Data elements' own Name give nothing.
        assert_eq!(get(&fields, "Event.System.Correlation"), None);
        assert!(fields
            .iter()
            .all(|(n, _)| !n.ends_with(".Name") || n.contains("Provider")));
    }

    #[test]
    fn windows_event_xml_with_namespace_entities_and_cdata() {
        let text = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- forwarded -->\n\
            <Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'>\
            <System><Provider Name='Microsoft-Windows-Security-Auditing'/>\
            <EventID Qualifiers=''>4688</EventID><Channel>Security</Channel></System>\
            <EventData><Data Name='NewProcessName'>C:\\Windows\\System32\\cmd.exe</Data>\
            <Data Name='CommandLine'>cmd.exe /c \"echo &lt;x&gt; &amp;&amp; dir\" &#x41;&#66;</Data>\
            <Data Name='Note'><![CDATA[a <raw> & text]]></Data>\
            <Data>first</Data><Data>second</Data></EventData>\
            <RenderingInfo Culture='en-US'><Message>  A new process\n has been created.  </Message></RenderingInfo>\
            </Event>\n";
        let (fields, issue) = decode_owned(text).unwrap();
        assert_eq!(issue, None);
        assert_eq!(get(&fields, "Event.System.EventID"), Some("4688"));
        assert_eq!(get(&fields, "Event.System.EventID.Qualifiers"), Some(""));
        assert_eq!(get(&fields, "Event.xmlns"), None);
        assert_eq!(
            get(&fields, "Event.EventData.CommandLine"),
            Some("cmd.exe /c \"echo <x> && dir\" AB")
        );
        assert_eq!(get(&fields, "Event.EventData.Note"), Some("a <raw> & text"));
        assert_eq!(get(&fields, "Event.EventData.Data.0"), Some("first"));
        assert_eq!(get(&fields, "Event.EventData.Data.1"), Some("second"));
        assert_eq!(
            get(&fields, "Event.RenderingInfo.Message"),
            Some("A new process\n has been created.")
        );
        assert_eq!(get(&fields, "Event.RenderingInfo.Culture"), Some("en-US"));
    }

    #[test]
    fn malformed_documents_push_nothing() {
        for text in [
            "<Event><System><EventID>1</EventID></System>",
            "<Event><System><EventID>1</Eventid></System></Event>",
            "<Event><System a=1/></Event>",
            "<Event><System a=\"1\"b=\"2\"/></Event>",
            "<Event><System a=\"1/></Event>",
            "<Event><!DOCTYPE x></Event>",
            "<Event><System/></Event> trailing",
            "<Event><!-- open </Event>",
            "<Event><![CDATA[ open </Event>",
            "<Events><System/></Events>",
            "<?xml version=\"1.0\"?><Other/>",
            "<Event><1x/></Event>",
            "<Event",
            "",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([format!(
            "<Event>{}{}</Event>",
            "<a>".repeat(XML_NESTING_MAX),
            "</a>".repeat(XML_NESTING_MAX)
        )]) {
            let text = text.as_str();
            let mut buffer = vec![0u8; 4096];
            let mut arena = Arena::over(&mut buffer);
            let mut fields = Fields::new();
            fields.push("host.name", b"h");
            assert_eq!(
                decode(text.as_bytes(), &mut arena, &mut fields),
                Err(DecodeIssue::XmlInvalid),
                "{text:?}"
            );
            assert_eq!(fields.len(), 1, "{text:?}: {fields:?}");
        }
    }

    #[test]
    fn deep_documents_are_partial_and_unknown_entities_kept() {
        let mut text = String::from("<Event><A>a &unknown; &#xZZ; &#1114112;</A>");
        for i in 0..12 {
            text.push_str(&format!("<L{i}>"));
        }
        text.push_str("deep");
        for i in (0..12).rev() {
            text.push_str(&format!("</L{i}>"));
        }
        text.push_str("</Event>");
        let (fields, issue) = decode_owned(&text).unwrap();
        assert_eq!(issue, Some(DecodeIssue::XmlTooDeep));
        assert_eq!(
            get(&fields, "Event.A"),
            Some("a &unknown; &#xZZ; &#1114112;")
        );
        assert!(fields.iter().all(|(_, v)| v != "deep"), "{fields:?}");
    }

    #[test]
    fn the_field_list_bound_is_counted() {
        let mut text = String::from("<Event><EventData>");
        for i in 0..200 {
            text.push_str(&format!("<Data Name=\"F{i}\">{i}</Data>"));
        }
        text.push_str("</EventData></Event>");
        let mut buffer = vec![0u8; 64 * 1024];
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        assert_eq!(decode(text.as_bytes(), &mut arena, &mut fields), Ok(None));
        assert_eq!(fields.len(), crate::fields::FIELDS_MAX);
        assert_eq!(fields.overflow as usize, 200 - crate::fields::FIELDS_MAX);
    }

    #[test]
    fn only_event_documents_are_claimed() {
        assert!(looks_like_event(b"<Event><System/></Event>"));
        assert!(looks_like_event(b"<Event xmlns='x'/>"));
        assert!(looks_like_event(b"<?xml version='1.0'?><Event/>"));
        assert!(!looks_like_event(b"<Events/>"));
        assert!(!looks_like_event(b"<html><body/></html>"));
        assert!(!looks_like_event(b"Event <Event>"));
    }
}
