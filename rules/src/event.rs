//! The event model that rules see.
//!
//! An `Event` is a borrowed view: the engine parses a syslog line into header
//! fields and extracted fields that all point into the received bytes, and
//! hands rules a slice of `(name, value)` pairs. Nothing here owns or copies
//! the line, so evaluating rules costs no heap allocation per event.
//!
//! Values are raw bytes: non-UTF-8 input is kept as it arrived and compared
//! byte-wise (ASCII case folding for Sigma's case-insensitive matching).

/// One field of an event: its name and raw value.
pub type Field<'a> = (&'a str, &'a [u8]);

/// What a rule evaluates. See the module docs.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    /// Event time in UTC nanoseconds since the Unix epoch. Streaming and
    /// replay both use this (the header timestamp, or the receive time where
    /// the header has none), so both raise the same alerts.
    pub time_ns: i64,
    /// Header and extracted fields, in the order they were found. A name may
    /// repeat; lookups take the first.
    pub fields: &'a [Field<'a>],
    /// The free-text message part, searched by Sigma keyword selections.
    pub message: &'a [u8],
    /// The whole line as received.
    pub raw: &'a [u8],
}

impl<'a> Event<'a> {
    /// The first value stored under `name`. Names are compared with word
    /// loads rather than a library `memcmp` per same-length name.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|(n, _)| crate::field::short_eq(n.as_bytes(), name.as_bytes()))
            .map(|(_, v)| *v)
    }
}
