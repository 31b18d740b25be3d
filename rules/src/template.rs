//! Online log-template mining in the manner of Drain.
//!
//! This module owns [`TemplateMiner`]: it turns free-text messages into
//! templates (the constant words of a message with its variable parts
//! masked as `<*>`) as messages stream by, one miner per core. It must not
//! read a clock or do IO, and it must stay cheap once warm: the engine runs
//! [`TemplateMiner::mine`] on every event of the ingest path and adds
//! `template.id`, `template.text` and `template.new` to the event.
//!
//! ## Algorithm
//!
//! A message is split on ASCII whitespace into at most [`TOKENS_MAX`]
//! tokens. Each token is *masked* when it looks like a value rather than a
//! word (see [`is_variable`]): numbers, times and sizes (`1432`, `00:01`,
//! `<1`, `-12`), IPv4 and IPv6 addresses with or without a port, hex
//! numbers and ids (`0x1f`, `deadbeef01`), UUIDs, paths (`/var/log/x`),
//! `host:port`, and ids with a long digit run (`blk_-1608999`). A
//! `key=value` or `key:value` token whose value is variable keeps its key
//! (`port=<*>`). A parenthesised group that starts with a digit
//! (`(1.39 KB)`) is a derived annotation that some lines carry and others
//! do not, so it is dropped; a unit word (`sec`, `ms`, `KB`, ...) right
//! after a masked token belongs to that value and is absorbed by it.
//!
//! Candidates come from a fixed-depth parse tree: the token count, then the
//! first and second tokens (masked tokens go to the `<*>` branch, and a
//! node with [`MinerConfig::children_max`] children sends new words to
//! `<*>` too). Within the leaf, the cluster with the highest similarity
//! (share of positions whose template token is `<*>` or equal to the
//! message's token, ties broken by fewer `<*>`) is taken if its similarity
//! reaches [`MinerConfig::similarity_threshold`]; positions that differ
//! become `<*>`. Otherwise a new cluster starts with the message's tokens
//! as its template.
//!
//! ## Identity
//!
//! A template's id is xxh3-64 of its text, so two cores' miners (or a
//! miner before and after a restart) that arrive at the same template
//! agree on its id without talking. A template that generalises (a
//! position turns into `<*>`) gets a new id; [`TemplateMatch::new_template`]
//! says so.
//!
//! ## Bounds
//!
//! At most [`MinerConfig::clusters_max`] clusters: a new cluster beyond the
//! cap evicts the least recently matched one (found by a linear scan, which
//! only happens on a new template at the cap), counted in
//! [`TemplateMiner::evicted_total`]. Once warm, `mine` on a known template
//! allocates nothing: tokens are hashed into reused buffers and the
//! returned text borrows the cluster.

use std::collections::HashMap;

/// The event field the engine fills with [`TemplateMatch::id_hex`]; the
/// default field of `rare_template` rules.
pub const TEMPLATE_ID_FIELD: &str = "template.id";

/// The event field the engine fills with [`TemplateMatch::text`].
pub const TEMPLATE_TEXT_FIELD: &str = "template.text";

/// The event field the engine fills with `true` or `false` from
/// [`TemplateMatch::new_template`].
pub const TEMPLATE_NEW_FIELD: &str = "template.new";

/// The most tokens of a message that are mined; the rest become one `<*>`.
pub const TOKENS_MAX: usize = 128;

/// The longest message mined, in bytes; longer messages are cut there.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;

/// The token hash of a masked (variable) position.
const WILD: u64 = 0;

/// The text of a masked position.
const WILD_TEXT: &str = "<*>";

/// How long a numeric parenthesised group may be, in tokens, before it is
/// kept as ordinary tokens instead of dropped.
const PAREN_TOKENS_MAX: usize = 4;

/// Unit words that belong to the masked value before them.
const UNITS: &[&[u8]] = &[
    b"sec", b"secs", b"second", b"seconds", b"ms", b"us", b"ns", b"s", b"min", b"mins", b"B",
    b"KB", b"MB", b"GB", b"TB", b"kB", b"KiB", b"MiB", b"GiB",
];

/// Settings of a [`TemplateMiner`]. One configuration serves every log
/// source; the defaults are what `perf/scripts/template_eval.py` measures.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MinerConfig {
    /// The share of positions that must agree for a message to join a
    /// cluster, in `(0, 1]`.
    pub similarity_threshold: f64,
    /// The most children of one parse-tree node before new words go to the
    /// `<*>` child.
    pub children_max: u32,
    /// The most clusters held; see the module docs.
    pub clusters_max: u32,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            similarity_threshold: 0.8,
            children_max: 100,
            clusters_max: 10_000,
        }
    }
}

/// The template a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateMatch<'a> {
    /// xxh3-64 of `text`: stable across miners and restarts.
    pub id: u64,
    /// The template: tokens joined by one space, variables as `<*>`.
    pub text: &'a str,
    /// Whether this message created the template or changed its text
    /// (so `id` was not this miner's answer before).
    pub new_template: bool,
    /// The cluster's slot in this miner: stable while the cluster lives,
    /// reused after an eviction. For evaluation and debugging; unlike
    /// `id`, it means nothing to another miner.
    pub cluster: u32,
}

impl TemplateMatch<'_> {
    /// `id` as 16 lowercase hex digits, without allocating: the form the
    /// engine should put in the event's `template.id` field, so that
    /// `rare_template` rules (which read that field) and alert readers see
    /// one spelling everywhere.
    pub fn id_hex(&self) -> [u8; 16] {
        id_hex(self.id)
    }
}

/// A template id as 16 lowercase hex digits (see [`TemplateMatch::id_hex`]).
pub fn id_hex(id: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (position, byte) in out.iter_mut().enumerate() {
        let shift = 60 - 4 * position;
        // Lossless: masked to four bits.
        *byte = DIGITS[((id >> shift) & 0xf) as usize];
    }
    out
}

/// One template and its bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Cluster {
    /// Per position, the token hash or [`WILD`].
    tokens: Vec<u64>,
    /// The template text (tokens joined by spaces).
    text: String,
    /// xxh3-64 of `text`.
    id: u64,
    /// The tick of the last message that matched.
    last_used: u64,
    /// How many messages matched.
    size: u64,
    /// The parse-tree leaf that lists this cluster.
    leaf: LeafKey,
}

/// A parse-tree leaf: token count and the first two tokens' branches.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Hash, PartialEq, Eq))]
struct LeafKey {
    length: u32,
    first: u64,
    second: u64,
}

/// An online template miner; see the module docs.
#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TemplateMiner {
    config: MinerConfig,
    /// Cluster slots; `None` is a free slot (after an eviction).
    clusters: Vec<Option<Cluster>>,
    free: Vec<u32>,
    /// Leaf to the slots of its clusters, in creation order.
    leaves: HashMap<LeafKey, Vec<u32>>,
    /// Children counts of the first two tree levels: `(length, first)` for
    /// level two and `(length, WILD)` for level one (first tokens per
    /// length); used only to apply `children_max`.
    level_one: HashMap<u32, Vec<u64>>,
    level_two: HashMap<(u32, u64), Vec<u64>>,
    tick: u64,
    live: u64,
    evicted_total: u64,
    /// Scratch: token hashes of the message being mined.
    scratch_tokens: Vec<u64>,
    /// Scratch: how to render each token of the message being mined.
    scratch_spans: Vec<Piece>,
}

impl Default for TemplateMiner {
    fn default() -> Self {
        TemplateMiner::new(MinerConfig::default())
    }
}

impl TemplateMiner {
    /// An empty miner. Out-of-range settings are clamped: the threshold to
    /// `[0.01, 1]`, the caps to at least one.
    pub fn new(mut config: MinerConfig) -> Self {
        if !config.similarity_threshold.is_finite() {
            config.similarity_threshold = MinerConfig::default().similarity_threshold;
        }
        config.similarity_threshold = config.similarity_threshold.clamp(0.01, 1.0);
        config.children_max = config.children_max.max(1);
        config.clusters_max = config.clusters_max.max(1);
        TemplateMiner {
            config,
            clusters: Vec::new(),
            free: Vec::new(),
            leaves: HashMap::new(),
            level_one: HashMap::new(),
            level_two: HashMap::new(),
            tick: 0,
            live: 0,
            evicted_total: 0,
            scratch_tokens: Vec::with_capacity(TOKENS_MAX),
            scratch_spans: Vec::with_capacity(TOKENS_MAX),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// How many templates are held.
    pub fn template_count(&self) -> usize {
        // Lossless: at most `clusters_max` (a u32) are live.
        self.live as usize
    }

    /// How many templates were evicted at the cap.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Mines one message: finds or creates its template and returns it.
    /// Never panics; an empty message has the empty template.
    pub fn mine(&mut self, message: &[u8]) -> TemplateMatch<'_> {
        let message = &message[..message.len().min(MESSAGE_BYTES_MAX)];
        self.tick += 1;
        let mut tokens = std::mem::take(&mut self.scratch_tokens);
        let mut spans = std::mem::take(&mut self.scratch_spans);
        tokenize(message, &mut tokens, &mut spans);
        debug_assert_eq!(tokens.len(), spans.len());
        debug_assert!(tokens.len() <= TOKENS_MAX);
        let leaf = self.leaf_for(&tokens);
        let slot = self.best_in_leaf(&leaf, &tokens);
        let (slot, new_template) = match slot {
            Some(slot) => {
                let changed = self.merge(slot, &tokens);
                (slot, changed)
            }
            None => (self.create(leaf, message, &tokens, &spans), true),
        };
        self.scratch_tokens = tokens;
        self.scratch_spans = spans;
        let tick = self.tick;
        match self.clusters.get_mut(slot as usize) {
            Some(Some(cluster)) => {
                cluster.last_used = tick;
                cluster.size += 1;
                TemplateMatch {
                    id: cluster.id,
                    text: &cluster.text,
                    new_template,
                    cluster: slot,
                }
            }
            // Unreachable: `slot` was just found or filled.
            _ => TemplateMatch {
                id: template_id(""),
                text: "",
                new_template,
                cluster: slot,
            },
        }
    }

    /// The leaf a message's tokens belong to, registering new branches
    /// where the children caps allow.
    fn leaf_for(&mut self, tokens: &[u64]) -> LeafKey {
        // Lossless: tokens.len() <= TOKENS_MAX.
        let length = tokens.len() as u32;
        let cap = self.config.children_max as usize;
        let first = tokens.first().copied().unwrap_or(WILD);
        let first = branch(self.level_one.entry(length).or_default(), first, cap);
        let second = tokens.get(1).copied().unwrap_or(WILD);
        let second = branch(
            self.level_two.entry((length, first)).or_default(),
            second,
            cap,
        );
        LeafKey {
            length,
            first,
            second,
        }
    }

    /// The most similar cluster of the leaf, if it reaches the threshold.
    fn best_in_leaf(&self, leaf: &LeafKey, tokens: &[u64]) -> Option<u32> {
        let slots = self.leaves.get(leaf)?;
        let mut best: Option<(f64, usize, u32)> = None;
        for &slot in slots {
            let Some(Some(cluster)) = self.clusters.get(slot as usize) else {
                continue;
            };
            if cluster.tokens.len() != tokens.len() {
                continue;
            }
            let (similarity, wild) = similarity(&cluster.tokens, tokens);
            let better = match best {
                None => true,
                Some((s, w, _)) => similarity > s || (similarity == s && wild < w),
            };
            if better {
                best = Some((similarity, wild, slot));
            }
        }
        let (similarity, _, slot) = best?;
        (similarity >= self.config.similarity_threshold).then_some(slot)
    }

    /// Turns the positions where `tokens` differ into `<*>`; returns whether
    /// the template changed.
    fn merge(&mut self, slot: u32, tokens: &[u64]) -> bool {
        let Some(Some(cluster)) = self.clusters.get_mut(slot as usize) else {
            return false;
        };
        let changed = cluster
            .tokens
            .iter()
            .zip(tokens)
            .any(|(t, m)| *t != WILD && t != m);
        if !changed {
            return false;
        }
        let mut text = String::with_capacity(cluster.text.len());
        for (position, (word, template)) in cluster
            .text
            .split(' ')
            .zip(cluster.tokens.iter_mut())
            .enumerate()
        {
            if position > 0 {
                text.push(' ');
            }
            if *template != WILD && Some(&*template) != tokens.get(position) {
                *template = WILD;
            }
            text.push_str(if *template == WILD { WILD_TEXT } else { word });
        }
        cluster.id = template_id(&text);
        cluster.text = text;
        true
    }

    /// Creates a cluster for the message, evicting the least recently used
    /// one at the cap; returns its slot.
    fn create(&mut self, leaf: LeafKey, message: &[u8], tokens: &[u64], spans: &[Piece]) -> u32 {
        if self.live >= u64::from(self.config.clusters_max) {
            self.evict_least_recent();
        }
        let mut text = String::with_capacity(message.len());
        for (position, span) in spans.iter().enumerate() {
            if position > 0 {
                text.push(' ');
            }
            match span {
                Piece::Word(start, end) | Piece::Key(start, end) => {
                    let bytes = message.get(*start as usize..*end as usize).unwrap_or(&[]);
                    text.push_str(&String::from_utf8_lossy(bytes));
                    if matches!(span, Piece::Key(..)) {
                        text.push_str(WILD_TEXT);
                    }
                }
                Piece::Wild => text.push_str(WILD_TEXT),
            }
        }
        let cluster = Cluster {
            tokens: tokens.to_vec(),
            id: template_id(&text),
            text,
            last_used: self.tick,
            size: 0,
            leaf,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(entry) = self.clusters.get_mut(slot as usize) {
                    *entry = Some(cluster);
                }
                slot
            }
            None => {
                // Lossless: at most clusters_max (a u32) slots exist.
                let slot = self.clusters.len() as u32;
                self.clusters.push(Some(cluster));
                slot
            }
        };
        self.leaves.entry(leaf).or_default().push(slot);
        self.live += 1;
        debug_assert!(self.live <= u64::from(self.config.clusters_max));
        slot
    }

    fn evict_least_recent(&mut self) {
        let victim = self
            .clusters
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| c.as_ref().map(|c| (c.last_used, slot)))
            .min();
        let Some((_, slot)) = victim else {
            return;
        };
        let Some(cluster) = self.clusters.get_mut(slot).and_then(Option::take) else {
            return;
        };
        // Lossless: slots are numbered with u32.
        let slot = slot as u32;
        if let Some(list) = self.leaves.get_mut(&cluster.leaf) {
            list.retain(|&s| s != slot);
            if list.is_empty() {
                self.leaves.remove(&cluster.leaf);
            }
        }
        self.free.push(slot);
        self.live -= 1;
        self.evicted_total += 1;
    }
}

/// The stable id of a template text.
pub fn template_id(text: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// The branch a token takes at a node whose known children are `children`:
/// itself if known or if there is room, else `<*>`.
fn branch(children: &mut Vec<u64>, token: u64, cap: usize) -> u64 {
    if token == WILD || children.contains(&token) {
        return token;
    }
    if children.len() < cap {
        children.push(token);
        return token;
    }
    WILD
}

/// `(share of the template's constant positions that the message agrees
/// with, count of <*> in the template)`. Positions already masked say
/// nothing about whether the message belongs, so they are left out: a
/// template that is mostly variables must still agree on its words.
fn similarity(template: &[u64], tokens: &[u64]) -> (f64, usize) {
    let mut same = 0usize;
    let mut wild = 0usize;
    for (t, m) in template.iter().zip(tokens) {
        if *t == WILD {
            wild += 1;
        } else if t == m {
            same += 1;
        }
    }
    let constants = template.len() - wild;
    if constants == 0 {
        return (1.0, wild);
    }
    (same as f64 / constants as f64, wild)
}

/// Splits a message into token hashes and spans; see the module docs.
fn tokenize(message: &[u8], tokens: &mut Vec<u64>, spans: &mut Vec<Piece>) {
    tokens.clear();
    spans.clear();
    let mut words = message
        .split(|b| b.is_ascii_whitespace())
        .enumerate()
        .filter(|(_, w)| !w.is_empty())
        .peekable();
    // Byte offsets: recompute from the slice pointers, which are inside
    // `message` by construction of `split`.
    let base = message.as_ptr() as usize;
    let offset = |word: &[u8]| (word.as_ptr() as usize).saturating_sub(base);
    let mut skip_paren = 0usize;
    while let Some((_, word)) = words.next() {
        if skip_paren > 0 {
            skip_paren -= 1;
            if word.last() == Some(&b')') {
                skip_paren = 0;
            }
            continue;
        }
        if word.len() > 1 && word[0] == b'(' && word[1].is_ascii_digit() {
            // A numeric parenthesised group: drop it if it closes soon.
            if word.last() == Some(&b')') {
                continue;
            }
            let closes = words
                .clone()
                .take(PAREN_TOKENS_MAX)
                .any(|(_, w)| w.last() == Some(&b')'));
            if closes {
                skip_paren = PAREN_TOKENS_MAX;
                continue;
            }
        }
        if tokens.len() + 1 >= TOKENS_MAX {
            tokens.push(WILD);
            spans.push(Piece::Wild);
            break;
        }
        let start = offset(word);
        let end = start + word.len();
        match variable_key(word) {
            Masked::Word => {
                tokens.push(xxhash_rust::xxh3::xxh3_64(word).max(1));
                // Lossless: MESSAGE_BYTES_MAX fits u32.
                spans.push(Piece::Word(start as u32, end as u32));
            }
            Masked::Whole => {
                tokens.push(WILD);
                spans.push(Piece::Wild);
                if words
                    .peek()
                    .is_some_and(|(_, next)| UNITS.contains(&trim_punct(next)))
                {
                    words.next();
                }
            }
            Masked::Key(key_len) => {
                // `key=<*>`: hash the key with its separator and a marker.
                let mut hasher = xxhash_rust::xxh3::Xxh3::new();
                hasher.update(&word[..key_len]);
                hasher.update(WILD_TEXT.as_bytes());
                tokens.push(hasher.digest().max(1));
                spans.push(Piece::Key(start as u32, (start + key_len) as u32));
            }
        }
    }
    debug_assert_eq!(tokens.len(), spans.len());
}

/// How one token of a message renders in a new template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum Piece {
    /// The bytes `start..end` of the message, as written.
    Word(u32, u32),
    /// `<*>`.
    Wild,
    /// The key bytes `start..end` (separator included), then `<*>`.
    Key(u32, u32),
}

/// How a token is masked.
enum Masked {
    /// A constant word.
    Word,
    /// The whole token is a value.
    Whole,
    /// `key=value` or `key:value` with a variable value: the key and its
    /// separator (this many bytes) stay.
    Key(usize),
}

fn trim_punct(word: &[u8]) -> &[u8] {
    let is_punct = |b: &u8| b"()[]{},;\"'.".contains(b);
    let start = word.iter().position(|b| !is_punct(b)).unwrap_or(word.len());
    let end = word
        .iter()
        .rposition(|b| !is_punct(b))
        .map_or(start, |e| e + 1);
    &word[start..end.max(start)]
}

fn variable_key(word: &[u8]) -> Masked {
    if is_variable(word) {
        return Masked::Whole;
    }
    // key=value or key:value with a purely alphabetic key.
    if let Some(separator) = word.iter().position(|&b| b == b'=' || b == b':') {
        let key = &word[..separator];
        let value = &word[separator + 1..];
        if !key.is_empty()
            && key
                .iter()
                .all(|b| b.is_ascii_alphabetic() || *b == b'_' || *b == b'.' || *b == b'-')
            && !value.is_empty()
            && is_variable(value)
        {
            return Masked::Key(separator + 1);
        }
    }
    Masked::Word
}

/// Whether a token looks like a value rather than a word: see the module
/// docs for the shapes.
pub fn is_variable(word: &[u8]) -> bool {
    let core = trim_punct(word);
    let Some(&first) = core.first() else {
        return false;
    };
    let digits = core.iter().filter(|b| b.is_ascii_digit()).count();
    // Numbers, times, sizes, IPv4 and dotted versions, signed or bounded.
    if first.is_ascii_digit() {
        return true;
    }
    if matches!(first, b'-' | b'+' | b'<' | b'>' | b'~' | b'#' | b'$')
        && core.get(1).is_some_and(u8::is_ascii_digit)
    {
        return true;
    }
    // Paths.
    if first == b'/' && core.len() > 1 {
        return true;
    }
    if digits == 0 {
        return false;
    }
    // Hex numbers.
    if core.len() > 2 && (core.starts_with(b"0x") || core.starts_with(b"0X")) {
        return true;
    }
    let hexish = core
        .iter()
        .all(|b| b.is_ascii_hexdigit() || *b == b'-' || *b == b':' || *b == b'.');
    // Hex ids, UUIDs, IPv6 (with digits, only hex and separators).
    if hexish && core.len() >= 8 {
        return true;
    }
    if hexish && core.iter().filter(|&&b| b == b':').count() >= 2 {
        return true;
    }
    // host:port.
    if let Some(colon) = core.iter().rposition(|&b| b == b':') {
        let port = &core[colon + 1..];
        if !port.is_empty() && port.iter().all(u8::is_ascii_digit) && colon > 0 {
            return core[..colon].contains(&b'.') || core[..colon].iter().any(u8::is_ascii_digit);
        }
    }
    // Ids with a long digit run (`blk_-1608`, `attempt_2008`, `part-00296`).
    let mut run = 0usize;
    for b in core {
        if b.is_ascii_digit() {
            run += 1;
            if run >= 3 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_not_words() {
        for value in [
            "1432",
            "00:01",
            "<1",
            "10.0.0.1",
            "10.0.0.1:22",
            "fe80::1",
            "0x1f",
            "deadbeef01",
            "123e4567-e89b-12d3-a456-426614174000",
            "/var/log/x",
            "proxy.example.com:5070",
            "blk_-1608999687919862906",
            "(12)",
        ] {
            assert!(is_variable(value.as_bytes()), "{value}");
        }
        for word in ["SOCKS5", "HTTPS", "close,", "IPv4", "bytes", "error"] {
            assert!(!is_variable(word.as_bytes()), "{word}");
        }
    }

    #[test]
    fn merges_and_keeps_ids_stable() {
        let mut miner = TemplateMiner::default();
        let a = miner.mine(b"login for user alice from 10.0.0.1");
        assert!(a.new_template);
        assert_eq!(a.text, "login for user alice from <*>");
        let first_id = a.id;
        let b = miner.mine(b"login for user bob from 10.0.0.2");
        assert!(b.new_template);
        assert_eq!(b.text, "login for user <*> from <*>");
        let c = miner.mine(b"login for user carol from 10.0.0.3");
        assert!(!c.new_template);
        assert_eq!(c.id, template_id("login for user <*> from <*>"));
        assert_ne!(c.id, first_id);
        // Another miner reaching the same text agrees on the id.
        let mut other = TemplateMiner::default();
        let _ = other.mine(b"login for user x from 1.1.1.1");
        let d = other.mine(b"login for user y from 1.1.1.2");
        assert_eq!(d.id, c.id);
    }

    #[test]
    fn parentheses_and_units() {
        let mut miner = TemplateMiner::default();
        let a = miner
            .mine(b"h:80 close, 10 bytes (1.2 KB) sent, 0 bytes received, lifetime <1 sec")
            .id;
        let b = miner
            .mine(b"h:81 close, 10 bytes sent, 5 bytes (5 MB) received, lifetime 00:01")
            .id;
        assert_eq!(a, b);
        let c = miner.mine(b"h:80 open through proxy p:1 HTTPS").id;
        let d = miner.mine(b"h:80 open through proxy p:1 SOCKS5").id;
        assert_ne!(c, d);
    }

    #[test]
    fn hex_ids() {
        assert_eq!(&id_hex(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        assert_eq!(&id_hex(0), b"0000000000000000");
    }

    #[test]
    fn cap_evicts_least_recent_and_counts() {
        let mut miner = TemplateMiner::new(MinerConfig {
            clusters_max: 2,
            ..MinerConfig::default()
        });
        let _ = miner.mine(b"alpha one");
        let _ = miner.mine(b"beta two three");
        let _ = miner.mine(b"alpha one");
        let _ = miner.mine(b"gamma four five six");
        assert_eq!(miner.template_count(), 2);
        assert_eq!(miner.evicted_total(), 1);
        // alpha was used more recently than beta, so it survived.
        assert!(!miner.mine(b"alpha one").new_template);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let mut miner = TemplateMiner::default();
        let long = vec![b'a'; MESSAGE_BYTES_MAX * 2];
        let _ = miner.mine(&long);
        let many = "x ".repeat(1000);
        let m = miner.mine(many.as_bytes());
        assert!(m.text.split(' ').count() <= TOKENS_MAX);
        let _ = miner.mine(b"");
        let _ = miner.mine(b"   ");
        let _ = miner.mine(&[0xff, 0xfe, b' ', b'(', b'1']);
        let _ = miner.mine(b"(1 (2 (3 (4 (5 (6");
    }

    #[test]
    fn rkyv_round_trip() {
        let mut miner = TemplateMiner::default();
        let _ = miner.mine(b"user alice logged in from 10.0.0.1");
        let bytes = match rkyv::to_bytes::<rkyv::rancor::Error>(&miner) {
            Ok(bytes) => bytes,
            Err(error) => panic!("serialize: {error}"),
        };
        let mut restored = match rkyv::from_bytes::<TemplateMiner, rkyv::rancor::Error>(&bytes) {
            Ok(restored) => restored,
            Err(error) => panic!("deserialize: {error}"),
        };
        let a = miner.mine(b"user bob logged in from 10.0.0.2");
        let b = restored.mine(b"user bob logged in from 10.0.0.2");
        assert_eq!(a, b);
    }
}
