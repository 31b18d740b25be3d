//! JSON payloads (CloudTrail records, Winlogbeat and NXLog Windows events,
//! any JSON logger), parsed with simd-json into a reused tape and flattened
//! into fields.
//!
//! # What this module owns
//!
//! The flattening rules, and nothing about what the names mean:
//!
//! * Only an object at the top level is decoded; a top-level array or
//!   scalar is not claimed.
//! * Nested objects become dotted paths: `{"userIdentity":{"type":"Root"}}`
//!   gives `userIdentity.type` = `Root`. Keys are kept as written, dots
//!   included, so `{"a.b":1}` and `{"a":{"b":1}}` give the same name.
//! * Strings are their unescaped text. Numbers are re-rendered from
//!   simd-json's value: integers in decimal, floats in Rust's shortest
//!   round-trip form with a `.0` kept (`1.50` gives `1.5`, `1.0` stays
//!   `1.0`, `1e3` gives `1000.0`); integers beyond `u64` arrive as floats.
//!   Booleans are `true`/`false`. `null` gives no field (Sigma's `null`
//!   means "missing").
//! * An array gives its compact JSON text under its own name, plus
//!   `name.0`, `name.1`, ... for its first [`ARRAY_ELEMENTS_MAX`] scalar
//!   elements. Objects and arrays inside arrays appear only in the text.
//!   An empty array gives `[]`; an empty object gives no field.
//! * Objects nested deeper than [`JSON_DEPTH_MAX`] are left out and the
//!   decode reports [`DecodeIssue::JsonTooDeep`]: a partial decode, not an
//!   error, so the line still reaches the rules with the fields it has.
//! * Past [`crate::fields::FIELDS_MAX`] fields, the rest are counted in
//!   `Fields::overflow` (also a partial decode).
//!
//! It must not allocate once warm: the input copy simd-json works on and
//! every built name live in the caller's arena, and the tape and simd-json
//! buffers are kept in [`JsonScratch`] between lines.

use simd_json::{Node, StaticNode};

use super::{Arena, DecodeIssue};
use crate::fields::Fields;

/// Deepest object nesting decoded (the top-level object is depth 1).
/// Winlogbeat events go four deep (`winlog.event_data.X`); CloudTrail five.
pub const JSON_DEPTH_MAX: usize = 16;

/// Scalar elements of one array emitted as `name.N`.
pub const ARRAY_ELEMENTS_MAX: usize = 8;

/// simd-json's reused buffers and tape, plus what the last decode noted.
pub struct JsonScratch {
    buffers: simd_json::Buffers,
    tape: simd_json::tape::Tape<'static>,
    /// A partial-decode note from the last call ([`DecodeIssue::JsonTooDeep`]).
    pub(crate) issue: Option<DecodeIssue>,
}

impl Default for JsonScratch {
    fn default() -> Self {
        JsonScratch {
            buffers: simd_json::Buffers::new(4096),
            tape: simd_json::tape::Tape(Vec::new()),
            issue: None,
        }
    }
}

/// Decodes `text` (which starts with `{`) into `fields`. On `Err` nothing
/// was pushed.
pub fn decode<'a>(
    text: &'a [u8],
    arena: &mut Arena<'a>,
    scratch: &mut JsonScratch,
    fields: &mut Fields<'a>,
) -> Result<(), DecodeIssue> {
    scratch.issue = None;
    // simd-json unescapes strings in place, so it works on a copy.
    let copy = arena.take(text.len()).ok_or(DecodeIssue::ScratchFull)?;
    copy.copy_from_slice(text);
    let mut tape = std::mem::replace(&mut scratch.tape, simd_json::tape::Tape(Vec::new())).reset();
    let parsed = simd_json::fill_tape(copy, &mut scratch.buffers, &mut tape);
    let result = match parsed {
        Ok(()) => match tape.0.first() {
            Some(Node::Object { len, .. }) => {
                let mut walk = Walk {
                    arena,
                    fields,
                    path: [""; JSON_DEPTH_MAX],
                    too_deep: false,
                };
                walk.object(&tape.0, 0, *len, 0);
                if walk.too_deep {
                    scratch.issue = Some(DecodeIssue::JsonTooDeep);
                }
                Ok(())
            }
            _ => Err(DecodeIssue::JsonInvalid),
        },
        Err(_) => Err(DecodeIssue::JsonInvalid),
    };
    scratch.tape = tape.reset();
    result
}

/// The number of tape nodes `node` spans, itself included.
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        Node::String(_) | Node::Static(_) => 1,
    }
}

/// One flattening pass over a tape.
struct Walk<'w, 'a> {
    arena: &'w mut Arena<'a>,
    fields: &'w mut Fields<'a>,
    /// Keys of the enclosing objects; `path[..depth]` prefixes a name.
    path: [&'a str; JSON_DEPTH_MAX],
    too_deep: bool,
}

impl<'a> Walk<'_, 'a> {
    /// Walks the object whose node is at `at`, with `len` keys, nested
    /// `depth` objects below the top; returns the index after it.
    fn object(&mut self, tape: &[Node<'a>], at: usize, len: usize, depth: usize) -> usize {
        debug_assert!(depth < JSON_DEPTH_MAX);
        let mut i = at + 1;
        for _ in 0..len {
            let Some(&Node::String(key)) = tape.get(i) else {
                // A well-formed tape always has a key here.
                debug_assert!(false, "object key expected");
                return tape.len();
            };
            i += 1;
            let Some(value) = tape.get(i) else {
                return tape.len();
            };
            match *value {
                Node::Object { len, .. } => {
                    if depth + 1 >= JSON_DEPTH_MAX {
                        self.too_deep = true;
                        i += span(value);
                    } else {
                        self.path[depth] = key;
                        i = self.object(tape, i, len, depth + 1);
                    }
                }
                Node::Array { len, .. } => {
                    self.array(tape, i, len, key, depth);
                    i += span(value);
                }
                Node::String(s) => {
                    self.leaf(key, depth, s.as_bytes());
                    i += 1;
                }
                Node::Static(StaticNode::Null) => i += 1,
                Node::Static(scalar) => {
                    if let Some(text) = self.scalar_text(scalar) {
                        self.leaf(key, depth, text);
                    }
                    i += 1;
                }
            }
        }
        i
    }

    /// Pushes `path[..depth].key` = `value`.
    fn leaf(&mut self, key: &'a str, depth: usize, value: &'a [u8]) {
        if let Some(name) = self.name(key, depth, None) {
            self.fields.push(name, value);
        }
    }

    /// Builds the dotted name for `key` under `path[..depth]`, with an
    /// optional array index; `None` (counted) when the list is full.
    fn name(&mut self, key: &'a str, depth: usize, index: Option<usize>) -> Option<&'a str> {
        if self.fields.is_full() {
            self.fields.count_overflow();
            return None;
        }
        if depth == 0 && index.is_none() {
            return Some(key);
        }
        self.arena.dotted(&self.path[..depth], key, index)
    }

    /// The array at `at` (with `len` elements) under `key`: its JSON text,
    /// then its first scalar elements.
    fn array(&mut self, tape: &[Node<'a>], at: usize, len: usize, key: &'a str, depth: usize) {
        let end = (at + span(&tape[at])).min(tape.len());
        let nodes = &tape[at..end];
        if let Some(name) = self.name(key, depth, None) {
            // The text's length is unknown until written: offer all that
            // is left and keep what was used.
            let left = self.arena.remaining();
            let text = self
                .arena
                .fill(left, |buf| write_json(nodes, buf).map(|(used, _)| used));
            if let Some(text) = text {
                self.fields.push(name, text);
            }
        }
        let mut i = at + 1;
        for index in 0..len.min(ARRAY_ELEMENTS_MAX) {
            let Some(node) = tape.get(i) else { return };
            let text = match *node {
                Node::String(s) => Some(s.as_bytes()),
                Node::Static(StaticNode::Null) => None,
                Node::Static(scalar) => self.scalar_text(scalar),
                Node::Object { .. } | Node::Array { .. } => None,
            };
            if let Some(text) = text {
                if let Some(name) = self.name(key, depth, Some(index)) {
                    self.fields.push(name, text);
                }
            }
            i += span(node);
        }
    }

    /// The text of a number or boolean.
    fn scalar_text(&mut self, scalar: StaticNode) -> Option<&'a [u8]> {
        match scalar {
            StaticNode::Bool(true) => Some(b"true"),
            StaticNode::Bool(false) => Some(b"false"),
            StaticNode::I64(v) if v >= 0 => self.arena.decimal(v.unsigned_abs()).map(str::as_bytes),
            StaticNode::I64(v) => self.arena.format(format_args!("{v}")).map(str::as_bytes),
            StaticNode::U64(v) => self.arena.decimal(v).map(str::as_bytes),
            StaticNode::F64(v) => self.arena.format(format_args!("{v:?}")).map(str::as_bytes),
            StaticNode::Null => None,
        }
    }
}

/// Writes the subtree starting at `nodes[0]` as compact JSON into `buf`;
/// returns the bytes written and the nodes consumed, or `None` when `buf`
/// is too small. Recursion is bounded by simd-json's own nesting, which the
/// caller's depth cap does not cover, so it is iterative.
fn write_json(nodes: &[Node<'_>], buf: &mut [u8]) -> Option<(usize, usize)> {
    let mut out = Out { buf, len: 0 };
    // Per open container: elements left to write (keys and values both
    // count in an object, so `:` and `,` alternate), and whether it is an
    // object.
    let mut open: [(usize, bool); 64] = [(0, false); 64];
    let mut depth = 0usize;
    let mut i = 0;
    loop {
        let node = nodes.get(i)?;
        i += 1;
        match *node {
            Node::Object { len, .. } | Node::Array { len, .. } => {
                let is_object = matches!(node, Node::Object { .. });
                if len == 0 {
                    out.push(if is_object { b"{}" } else { b"[]" })?;
                } else {
                    if depth == open.len() {
                        // Deeper than any log event needs: no text.
                        return None;
                    }
                    out.push(if is_object { b"{" } else { b"[" })?;
                    open[depth] = (if is_object { 2 * len } else { len }, is_object);
                    depth += 1;
                    continue;
                }
            }
            Node::String(s) => out.string(s)?,
            Node::Static(scalar) => out.scalar(scalar)?,
        }
        // A value is complete: close the containers it completes, then
        // write the separator before the next element.
        loop {
            if depth == 0 {
                return Some((out.len, i));
            }
            let (left, is_object) = &mut open[depth - 1];
            *left -= 1;
            if *left == 0 {
                out.push(if *is_object { b"}" } else { b"]" })?;
                depth -= 1;
                continue;
            }
            let separator: &[u8] = if *is_object && *left % 2 == 1 {
                b":"
            } else {
                b","
            };
            out.push(separator)?;
            break;
        }
    }
}

/// A bounded output buffer for [`write_json`].
struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out<'_> {
    fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn string(&mut self, s: &str) -> Option<()> {
        self.push(b"\"")?;
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escaped: Option<&[u8]> = match b {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'\n' => Some(b"\\n"),
                b'\r' => Some(b"\\r"),
                b'\t' => Some(b"\\t"),
                _ => None,
            };
            if let Some(escaped) = escaped {
                self.push(&bytes[start..i])?;
                self.push(escaped)?;
                start = i + 1;
            } else if b < 0x20 {
                self.push(&bytes[start..i])?;
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.push(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ])?;
                start = i + 1;
            }
        }
        self.push(&bytes[start..])?;
        self.push(b"\"")
    }

    fn scalar(&mut self, scalar: StaticNode) -> Option<()> {
        use std::io::Write;
        match scalar {
            StaticNode::Null => self.push(b"null"),
            StaticNode::Bool(true) => self.push(b"true"),
            StaticNode::Bool(false) => self.push(b"false"),
            StaticNode::I64(v) => self.formatted(|w| write!(w, "{v}")),
            StaticNode::U64(v) => self.formatted(|w| write!(w, "{v}")),
            StaticNode::F64(v) => self.formatted(|w| write!(w, "{v:?}")),
        }
    }

    fn formatted(
        &mut self,
        write: impl FnOnce(&mut &mut [u8]) -> std::io::Result<()>,
    ) -> Option<()> {
        let rest = self.buf.get_mut(self.len..)?;
        let before = rest.len();
        let mut cursor = rest;
        write(&mut cursor).ok()?;
        self.len += before - cursor.len();
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Decoded = (
        Result<(), DecodeIssue>,
        Vec<(String, String)>,
        Option<DecodeIssue>,
    );

    fn run(text: &str) -> Decoded {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut arena = Arena::over(&mut buffer);
        let mut scratch = JsonScratch::default();
        let mut fields = Fields::new();
        let result = decode(text.as_bytes(), &mut arena, &mut scratch, &mut fields);
        let list = fields
            .as_slice()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        (result, list, scratch.issue)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flattens_nested_objects_and_scalars() {
        let (r, f, issue) = run(
            r#"{"a":"x","n":{"b":1,"c":{"d":-2.5,"e":true,"z":null}},"u":18446744073709551615,"f":1.0,"s":"q\"\u00e9"}"#,
        );
        assert_eq!((r, issue), (Ok(()), None));
        assert_eq!(
            f,
            pairs(&[
                ("a", "x"),
                ("n.b", "1"),
                ("n.c.d", "-2.5"),
                ("n.c.e", "true"),
                ("u", "18446744073709551615"),
                ("f", "1.0"),
                ("s", "q\"é"),
            ])
        );
    }

    #[test]
    fn arrays_as_text_and_capped_elements() {
        let (_, f, _) = run(r#"{"r":[1,"a\"b",{"k":[null,false]},[],2.5],"e":[],"o":{"l":["x"]}}"#);
        assert_eq!(
            f,
            pairs(&[
                ("r", r#"[1,"a\"b",{"k":[null,false]},[],2.5]"#),
                ("r.0", "1"),
                ("r.1", "a\"b"),
                ("r.4", "2.5"),
                ("e", "[]"),
                ("o.l", r#"["x"]"#),
                ("o.l.0", "x"),
            ])
        );
        let many = format!(
            "{{\"m\":[{}]}}",
            (0..20).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        );
        let (_, f, _) = run(&many);
        assert_eq!(f.len(), 1 + ARRAY_ELEMENTS_MAX);
    }

    #[test]
    fn depth_cap_is_a_partial_decode() {
        let mut deep = String::from(r#"{"top":1,"#);
        for _ in 0..JSON_DEPTH_MAX + 2 {
            deep.push_str(r#""k":{"#);
        }
        deep.push_str(r#""leaf":1"#);
        for _ in 0..JSON_DEPTH_MAX + 3 {
            deep.push('}');
        }
        let (r, f, issue) = run(&deep);
        assert_eq!(r, Ok(()));
        assert_eq!(issue, Some(DecodeIssue::JsonTooDeep));
        assert_eq!(f, pairs(&[("top", "1")]));
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        assert_eq!(run(r#"{"a":"#).0, Err(DecodeIssue::JsonInvalid));
        assert_eq!(run("[1]").0, Err(DecodeIssue::JsonInvalid));
        assert_eq!(run("{} x").0, Err(DecodeIssue::JsonInvalid));
        assert!(run("{}").1.is_empty());
    }

    #[test]
    fn field_cap_counts_the_rest() {
        let body: Vec<String> = (0..200).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{}}}", body.join(","));
        let mut buffer = vec![0u8; 64 * 1024];
        let mut arena = Arena::over(&mut buffer);
        let mut scratch = JsonScratch::default();
        let mut fields = Fields::new();
        decode(text.as_bytes(), &mut arena, &mut scratch, &mut fields).unwrap();
        assert_eq!(fields.len(), crate::fields::FIELDS_MAX);
        assert_eq!(fields.overflow as usize, 200 - crate::fields::FIELDS_MAX);
    }
}
