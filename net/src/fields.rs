//! A fixed-capacity list of extracted fields, borrowed from the input line.
//!
//! Parsing and extraction fill one of these per event without touching the
//! heap: names are `'static` (from the extractor table and decoders),
//! borrowed from the input (JSON keys, CEF/LEEF/kv keys), or built in the
//! caller's [`crate::DecodeScratch`] arena (dotted JSON paths, `sd.*`
//! names); values are slices of the input line, `'static` constants, or
//! arena text (unescaped values, re-rendered numbers). When the capacity is
//! reached further fields are refused and counted in `overflow`, never
//! silently lost. Names may repeat (RFC 5424 allows repeated parameters);
//! [`Fields::get`] returns the first.

/// Most fields one event can carry; the rest are counted in `Fields::overflow`.
///
/// JSON events (Winlogbeat, CloudTrail) carry 50 to 100 leaf fields, so the
/// list holds 128; at 32 bytes a slot that is 4 KiB of uninitialised stack.
pub const FIELDS_MAX: usize = 128;

/// One extracted field: a name and the raw bytes of its value.
pub type Field<'a> = (&'a str, &'a [u8]);

/// Fixed-capacity field list; see the module docs.
///
/// The slots start uninitialised: a new list costs nothing, which matters
/// because one is made per event. `len` counts the initialised prefix.
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    items: [std::mem::MaybeUninit<Field<'a>>; FIELDS_MAX],
    len: usize,
    /// Fields refused because the list was full.
    pub overflow: u32,
}

impl Default for Fields<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_map();
        for (name, value) in self.as_slice() {
            list.entry(name, &String::from_utf8_lossy(value));
        }
        list.finish()
    }
}

impl<'a> Fields<'a> {
    pub const fn new() -> Self {
        Fields {
            items: [const { std::mem::MaybeUninit::uninit() }; FIELDS_MAX],
            len: 0,
            overflow: 0,
        }
    }

    /// Appends a field; returns false (and counts it) when the list is full.
    pub fn push(&mut self, name: &'a str, value: &'a [u8]) -> bool {
        if self.len == FIELDS_MAX {
            self.overflow = self.overflow.saturating_add(1);
            return false;
        }
        self.items[self.len].write((name, value));
        self.len += 1;
        true
    }

    /// The first value stored under `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.as_slice()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    pub fn as_slice(&self) -> &[Field<'a>] {
        debug_assert!(self.len <= FIELDS_MAX);
        // SAFETY: slots 0..len were written by `push` and are never
        // uninitialised again (`clear` only resets `len`); MaybeUninit<T>
        // has the same layout as T.
        unsafe { std::slice::from_raw_parts(self.items.as_ptr().cast::<Field<'a>>(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the next `push` would be refused.
    pub fn is_full(&self) -> bool {
        self.len == FIELDS_MAX
    }

    /// Counts a field that was refused without being built (decoders skip
    /// building a name once the list is full).
    pub fn count_overflow(&mut self) {
        self.overflow = self.overflow.saturating_add(1);
    }

    /// Drops the fields after the first `len` (a decoder undoing what it
    /// pushed when the payload turns out not to be its format).
    pub(crate) fn truncate(&mut self, len: usize) {
        debug_assert!(len <= self.len);
        self.len = self.len.min(len);
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.overflow = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_until_full_then_count_overflow() {
        let mut fields = Fields::new();
        for _ in 0..FIELDS_MAX {
            assert!(fields.push("a", b"1"));
        }
        assert!(!fields.push("b", b"2"));
        assert_eq!(fields.len(), FIELDS_MAX);
        assert_eq!(fields.overflow, 1);
        assert_eq!(fields.get("a"), Some(&b"1"[..]));
        assert_eq!(fields.get("b"), None);
    }
}
