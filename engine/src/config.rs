//! Configuration: a TOML file whose every key has an embedded default, with
//! command-line flags overriding the file.
//!
//! Precedence, lowest first: [`Config::default`] (the embedded defaults),
//! the file given with `--config`, then flags. `shardwatch run --print-config`
//! prints the merged result, so an operator can see what is in force.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub ingest: IngestConfig,
    pub engine: EngineConfig,
    pub storage: StorageConfig,
    pub rules: RulesConfig,
    pub output: OutputConfig,
    pub outputs: OutputsConfig,
    pub limits: LimitsConfig,
    pub normalize: NormalizeConfig,
    pub schemas: SchemasConfig,
    pub api: ApiConfig,
}

/// Field aliases (see `normalize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Use the built-in alias table.
    pub builtin: bool,
    /// Extra aliases, vendor name = common name; an empty common name
    /// removes a built-in alias.
    pub aliases: std::collections::BTreeMap<String, String>,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            builtin: true,
            aliases: Default::default(),
        }
    }
}

/// The schema registry's bounds (see `schema`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemasConfig {
    /// Keep the registry at all (it costs a little per event).
    pub enabled: bool,
    pub sources_max: usize,
    pub fields_per_source_max: usize,
    /// One event in this many, of a field set its source has shown
    /// before, is observed in full (field counts, types, clock lag); the
    /// others only bump the source's count. A line no rule can see has
    /// its payload decoded for its schema only for such an event. Higher
    /// costs less CPU and notices a changed field type, or a new field of
    /// a source no rule reads, later.
    pub sample_every: u64,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        SchemasConfig {
            enabled: true,
            sources_max: 4_096,
            fields_per_source_max: 512,
            sample_every: crate::schema::SAMPLE_EVERY,
        }
    }
}

/// Per-source admission of syslog senders (see `sources`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// CIDR ranges allowed to send; empty allows every source.
    pub allow: Vec<String>,
    /// CIDR ranges refused (wins over `allow`).
    pub deny: Vec<String>,
    /// Events per second per source address; 0 turns the limit off. UDP
    /// beyond it is dropped (counted); TCP is read more slowly.
    pub source_rate_eps: u64,
    /// Events a source may send at once before the rate applies.
    pub source_burst: u64,
    /// Source addresses tracked per core; beyond it idle ones are evicted.
    pub sources_max: usize,
    /// Bound on correlation and anomaly state for the whole node, in bytes
    /// (estimated; split evenly over the cores). About once a second (every
    /// tick above three quarters of it) each core turns its share into a
    /// cap on groups per shard from the bytes per group it holds, so a
    /// new group past the cap evicts the stalest at once (counted in
    /// `groups_evicted`). 0: only `engine.groups_per_shard_max` applies.
    pub state_memory_bytes_max: u64,
    /// Open TCP, RELP and TLS connections for the whole node; a connection
    /// accepted past it is closed at once (counted as `connections_max`).
    /// Each open connection may hold a 256 KiB read buffer and a partial
    /// frame of up to `ingest.frame_bytes_max`, so this bounds what many
    /// connections can take. 0: no bound.
    pub connections_max: usize,
    /// Open stream connections from one source address (wherever the
    /// kernel placed them), so that one sender cannot take every slot;
    /// past it a connection is closed at once (counted as
    /// `connections_per_source_max`). 0: no bound.
    pub connections_per_source_max: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            allow: Vec::new(),
            deny: Vec::new(),
            source_rate_eps: 0,
            source_burst: 10_000,
            sources_max: 65_536,
            state_memory_bytes_max: 1024 * 1024 * 1024,
            connections_max: 4096,
            connections_per_source_max: 1024,
        }
    }
}

/// Alert outputs that read the alert log from their own cursor (see
/// `outputs`); each is off while its target is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputsConfig {
    /// `http://host:port/path` or `https://host:port/path` (port 80 or 443
    /// when left out): alerts POSTed as JSON arrays. `https` uses the
    /// `tls_*` keys below.
    pub webhook_url: String,
    /// Bearer token sent to the webhook.
    pub webhook_token: String,
    /// `host:port`: alerts forwarded as RFC 5424 over TCP, octet-counted.
    pub syslog_forward: String,
    /// Speak TLS to `syslog_forward` (RFC 5425: the same octet-counted
    /// frames inside TLS; 6514 is its usual port), with the `tls_*` keys.
    pub syslog_forward_tls: bool,
    /// `host:port`: alerts forwarded over RELP (rsyslog's `imrelp`), one
    /// `syslog` command per alert, each delivered when the receiver answers
    /// it `200 OK`.
    pub relp_forward: String,
    /// Speak TLS to `relp_forward` (rsyslog's `imrelp` with `tls="on"`),
    /// with the `tls_*` keys.
    pub relp_forward_tls: bool,
    /// Seconds the syslog and RELP forwards wait for a written batch to be
    /// acknowledged (the receiver's TCP, or its RELP answers) before they
    /// send it again on a new connection.
    pub forward_ack_timeout_s: u64,
    /// PEM file of the CA(s) that must have signed the certificate of a TLS
    /// output's receiver (the `https://` webhook, the TLS syslog and RELP
    /// forwards).
    /// Required for TLS outputs: the appliance has no built-in trust roots.
    pub tls_ca_file: String,
    /// PEM client certificate (chain) that TLS outputs present, for
    /// receivers that require mutual TLS; empty: none. Goes with
    /// `tls_client_key`.
    pub tls_client_cert: String,
    /// PEM private key of `tls_client_cert`.
    pub tls_client_key: String,
    /// The name a TLS output's receiver certificate must carry (DNS name or
    /// IP address); empty: the host part of `webhook_url`,
    /// `syslog_forward` or `relp_forward`.
    pub tls_server_name: String,
    /// A JSON-lines file that rotates by size.
    pub file_path: String,
    pub file_rotate_bytes: u64,
    pub file_keep: usize,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        OutputsConfig {
            webhook_url: String::new(),
            webhook_token: String::new(),
            syslog_forward: String::new(),
            syslog_forward_tls: false,
            relp_forward: String::new(),
            relp_forward_tls: false,
            forward_ack_timeout_s: crate::outputs::syslog::ACK_WAIT.as_secs(),
            tls_ca_file: String::new(),
            tls_client_cert: String::new(),
            tls_client_key: String::new(),
            tls_server_name: String::new(),
            file_path: String::new(),
            file_rotate_bytes: 100 * 1024 * 1024,
            file_keep: 5,
        }
    }
}

/// The HTTP API and metrics endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the HTTP API; empty disables it.
    pub listen: String,
    /// Bearer token required on every request except `/health`; required
    /// whenever `listen` is not a loopback address.
    pub token: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:9600".into(),
            token: String::new(),
        }
    }
}

/// Syslog listeners and frame limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// UDP syslog address; empty disables UDP.
    pub udp: String,
    /// TCP syslog address (RFC 6587 framing); empty disables TCP.
    pub tcp: String,
    /// RELP address (rsyslog's reliable protocol: a message is acknowledged
    /// once journaled); empty disables RELP.
    pub relp: String,
    /// TLS syslog address (RFC 5425, octet-counted or LF framing inside
    /// TLS); empty disables it. Needs `tls_cert` and `tls_key`.
    pub tls: String,
    /// PEM certificate chain and private key of the TLS listener.
    pub tls_cert: String,
    pub tls_key: String,
    /// PEM CA certificates; when set, client certificates are verified
    /// against them.
    pub tls_client_ca: String,
    /// Refuse TLS clients without a valid certificate (needs
    /// `tls_client_ca`).
    pub tls_require_client_cert: bool,
    /// Receive buffer asked for each core's UDP socket, in bytes: what
    /// absorbs a burst while a core is busy. Set past
    /// `net.core.rmem_max` with SO_RCVBUFFORCE when the process may
    /// (CAP_NET_ADMIN, e.g. root), else capped there (logged at start).
    /// 0 keeps the kernel's default.
    pub udp_recv_buffer_bytes: usize,
    /// Longest frame accepted; longer frames are cut here and counted.
    pub frame_bytes_max: usize,
    /// Timezone offset, in seconds east of UTC, for timestamps that carry
    /// none (RFC 3164).
    pub default_utc_offset_s: i32,
    /// Events whose time is further than this from their receive time are
    /// flagged (`event.time_skewed`) and counted.
    pub timestamp_skew_max_s: u64,
    /// Per sending host (the syslog HOSTNAME), the timezone of its
    /// timestamps that carry none, in seconds east of UTC; overrides
    /// `default_utc_offset_s` for that host.
    pub timezones: std::collections::BTreeMap<String, i32>,
    /// Quarantine lines without a syslog header (reason `missing_header`)
    /// instead of accepting them as plain messages.
    pub require_header: bool,
    /// TCP keepalive on syslog TCP, RELP and TLS connections: after this
    /// many idle seconds the kernel probes the sender every
    /// `max(idle / 6, 1)` s and, after 6 probes unanswered, the connection
    /// is closed and its slot freed (a sender gone without closing: powered
    /// off, a NAT or firewall that lost the connection's state). A live
    /// sender's kernel answers the probes, so an idle sender is never
    /// closed. 0 = off.
    pub tcp_keepalive_s: u32,
    /// Microseconds a core lets a TCP or TLS connection, or its UDP socket,
    /// gather lines after a read that emptied it, before reading again
    /// (the batch just read is processed and committed first, so only
    /// lines arriving meanwhile wait). 0 = read again at once: the lowest
    /// latency, but at a moderate steady rate every read then carries a
    /// few lines and the fixed cost of a read-process-commit cycle is paid
    /// for each few; a few hundred µs cuts the node's CPU at such rates by
    /// a third or more (BENCHMARKS.md).
    pub read_coalesce_us: u64,
    /// Decode the payload of every line. Off (the default), a line whose
    /// syslog header already rules out every loaded detection's log source
    /// (no rule could see it: a `cron` line when every rule reads `sshd`,
    /// `sudo` or `su`) is counted, journaled and given its event time
    /// without its payload being decoded; the schema registry still
    /// decodes the events it checks. On, every payload is decoded: the
    /// schema registry sees each event's field count at once, and payload
    /// decode issues (`json_too_deep`, ...) are flagged on every line.
    pub decode_all_payloads: bool,
}

/// Largest `ingest.read_coalesce_us`: beyond 10 ms the wait is latency
/// no detection goal allows.
pub const READ_COALESCE_US_MAX: u64 = 10_000;

/// The largest `engine.stall_probe_ms`.
pub const STALL_PROBE_MS_MAX: u64 = 1_000;
/// The largest `engine.idle_spin_us`.
pub const IDLE_SPIN_US_MAX: u64 = 10_000;

/// Executors, shards and queues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Executors (one per core, pinned); 0 means every online core.
    pub cores: usize,
    /// Virtual shards keys hash onto.
    pub shards: u32,
    /// Capacity, in batches, of each core-to-core channel. When full, UDP
    /// ingest drops the batch (counted) and TCP stops reading.
    pub route_queue_batches: usize,
    /// Cap on correlation groups held per shard; the oldest group is evicted
    /// (and counted) beyond it.
    pub groups_per_shard_max: usize,
    /// Cap on one rule's correlation groups per shard (at most
    /// `groups_per_shard_max` counts): a rule at it evicts its own stalest
    /// group (counted) for a new one. 0: no cap of its own, the shard's
    /// cap alone bounds it (and at that cap the rule holding the most
    /// groups gives one up).
    pub groups_per_rule_per_shard_max: usize,
    /// Log-template mining: `auto` (while a `rare_template` rule is
    /// loaded), `on` or `off`.
    pub templates: crate::pipeline::TemplatesMode,
    /// Microseconds a core with nothing to do keeps polling its sockets
    /// and channels before it sleeps (glommio's spin before park). 0: it
    /// sleeps at once. Spinning spends the idle CPU of a pinned core to
    /// skip the sleep and wake-up between bursts: lower latency and less
    /// CPU per line at a steady rate, a busy CPU while lines keep coming.
    /// Only for cores pinned to a CPU (it is ignored for an unpinned one).
    pub idle_spin_us: u64,
    /// Milliseconds between a core's stall probes: a timer whose lateness
    /// is recorded (`shardwatch_core_stall_seconds`), how long the core
    /// could not run its tasks. 0: no probe. At 10 an idle node spends
    /// about 0.6% of a CPU more (100 wake-ups a second per core).
    pub stall_probe_ms: u64,
}

/// Where files go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Cap on the quarantine file; records past it are refused and counted.
    pub quarantine_bytes_max: u64,
    /// Journal every accepted line (per core, `<data_dir>/journal/core-N`)
    /// so a restart replays what the last checkpoint does not cover.
    pub journal: bool,
    /// `fdatasync` the journal after every batch (0) or at most this many
    /// milliseconds apart. Either way a batch is written (to the page
    /// cache, or the device with `journal_direct_io`: either survives the
    /// process being killed) before its routed records and alerts leave
    /// the core; RELP acknowledges only synced lines.
    pub journal_fsync_ms: u64,
    /// Write the journal with O_DIRECT instead of through the page cache.
    /// Off by default: on ext4 a direct write that extends the file
    /// blocks, and io_uring runs it on a kernel worker sharing the core's
    /// CPU (half the core's ingest rate in BENCHMARKS.md). Worth turning on
    /// where direct writes are asynchronous (XFS, preallocated files, NVMe)
    /// and the page cache should be left to other data.
    pub journal_direct_io: bool,
    /// After each `fdatasync`, hand the journal's synced page-cache pages
    /// back to the kernel (and a closed segment's all), so the journal
    /// keeps reusing a few recently freed pages instead of growing the
    /// page cache by everything it writes. On by default: on the dev VM
    /// (whose host takes back memory the guest leaves free) the copy into
    /// fresh page-cache pages grew to 38% of a core's time after ~1 GB of
    /// journal, and a 10 M-line flat-out run went from 0.56 to 1.06 M
    /// lines/s with this (BENCHMARKS.md). Off keeps the pages, and covered
    /// segments as spares to reuse (faster recovery reads while the pages
    /// last). Recovery reads dropped pages from the device.
    pub journal_drop_synced_pages: bool,
    /// A buffered journal that gives its pages back prepares its next
    /// segment off the core, with `journal_segment_bytes` preallocated
    /// past its end, so that its writes take no filesystem lock for block
    /// allocation and a roll creates no file: the core's `pwrite` had
    /// waited on ext4's `i_data_sem` (up to 11.8 ms seen) while a sync's
    /// writeback allocated blocks (BENCHMARKS.md, 2026-12-07 14:45 UTC),
    /// and flat out it showed no consistent cost (0.94–1.03 of the lines/s
    /// without it, within the VM's noise). Costs up to
    /// two segments of allocated blocks per core beyond the journal's
    /// counted size. On by default.
    pub journal_preallocate: bool,
    /// A journal segment is closed and the next started past this size.
    pub journal_segment_bytes: u64,
    /// Per core, journal segments beyond this total size, or older than
    /// `journal_retain_s`, are deleted once every checkpoint covers them.
    pub journal_retain_bytes: u64,
    pub journal_retain_s: u64,
    /// How often each core checkpoints its shard state; 0 turns
    /// checkpoints off (a restart then replays the whole retained journal).
    /// A core whose checkpoints take long (a large state, a slow core)
    /// spaces them at least ten times their duration apart.
    pub checkpoint_interval_ms: u64,
    /// Checkpoints kept per core (older ones are the fallback when the
    /// newest fails validation).
    pub checkpoints_keep: usize,
}

/// Which rules run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Load the built-in rule pack.
    pub builtin: bool,
    /// Extra rule files or directories (searched for `*.yml` / `*.yaml`).
    pub paths: Vec<PathBuf>,
    /// How often rule files are checked for changes, which reloads the
    /// rules; 0 turns watching off (SIGHUP and the API still reload).
    pub watch_interval_ms: u64,
    /// Per rule and group, repeats of an alert within this window (event
    /// time) are folded into the first; 0 turns suppression off.
    pub suppress_window_ms: u64,
    /// Values of `|expand` placeholders: `%name%` in a rule value becomes
    /// each of the listed values. A rule using a placeholder not listed
    /// here is skipped as unsupported (`placeholder:<name>`).
    pub placeholders: std::collections::BTreeMap<String, Vec<String>>,
    /// Log source mappings tried before the built-in table
    /// (`rules/LOGSOURCES.md`): a rule whose product, category and service
    /// equal a mapping's sees only events that meet its conditions.
    pub logsources: Vec<LogsourceConfig>,
}

/// One `[[rules.logsources]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsourceConfig {
    /// The rule's `logsource.product` this applies to (absent: the rule
    /// has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Alternatives (OR), each a table of field = value or \[values\] (AND
    /// over its fields). Empty: the rule sees every event.
    pub conditions: Vec<std::collections::BTreeMap<String, OneOrMany>>,
}

/// A value or a list of values in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(value) => vec![value.clone()],
            OneOrMany::Many(values) => values.clone(),
        }
    }
}

impl RulesConfig {
    /// The compile options these settings give (placeholders, log source
    /// mappings; no payload sources, which [`Config::compile_options`]
    /// adds); refuses a mapping that cannot mean anything.
    pub fn compile_options(&self) -> anyhow::Result<shardwatch_rules::CompileOptions> {
        let mut logsources = Vec::with_capacity(self.logsources.len());
        for (at, entry) in self.logsources.iter().enumerate() {
            let what = || {
                format!(
                    "rules.logsources[{at}] (product={} category={} service={})",
                    entry.product.as_deref().unwrap_or("-"),
                    entry.category.as_deref().unwrap_or("-"),
                    entry.service.as_deref().unwrap_or("-")
                )
            };
            if entry.product.is_none() && entry.category.is_none() && entry.service.is_none() {
                bail!("{}: names no product, category or service", what());
            }
            let mut conditions = Vec::with_capacity(entry.conditions.len());
            for alternative in &entry.conditions {
                if alternative.is_empty() {
                    bail!("{}: an empty condition table would admit every event; leave `conditions` empty for that", what());
                }
                let mut all = Vec::with_capacity(alternative.len());
                for (field, values) in alternative {
                    let values = values.values();
                    if field.is_empty() || values.is_empty() {
                        bail!(
                            "{}: field {field:?} needs a name and at least one value",
                            what()
                        );
                    }
                    all.push((field.clone(), values));
                }
                conditions.push(all);
            }
            logsources.push(shardwatch_rules::LogsourceMapping {
                product: entry.product.clone(),
                category: entry.category.clone(),
                service: entry.service.clone(),
                conditions,
            });
        }
        for (name, values) in &self.placeholders {
            if values.is_empty() {
                bail!("rules.placeholders.{name} is empty: list at least one value");
            }
        }
        Ok(shardwatch_rules::CompileOptions {
            placeholders: self.placeholders.clone(),
            logsources,
            payload_naming: None,
        })
    }
}

/// Where alerts go besides `<data_dir>/alerts.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Print each alert as a JSON line on stdout.
    pub stdout: bool,
    /// Capacity of the queue from the cores to the alert writer.
    pub alert_queue_max: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            udp: "0.0.0.0:5514".into(),
            tcp: "0.0.0.0:5514".into(),
            relp: String::new(),
            tls: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            tls_require_client_cert: false,
            udp_recv_buffer_bytes: shardwatch_net::transport::UDP_RECV_BUFFER_BYTES,
            frame_bytes_max: 64 * 1024,
            default_utc_offset_s: 0,
            timestamp_skew_max_s: 86_400,
            timezones: Default::default(),
            require_header: false,
            decode_all_payloads: false,
            tcp_keepalive_s: 60,
            read_coalesce_us: 0,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cores: 0,
            shards: crate::shardmap::SHARDS_DEFAULT,
            route_queue_batches: 32,
            groups_per_shard_max: 10_000,
            groups_per_rule_per_shard_max: 0,
            templates: crate::pipeline::TemplatesMode::Auto,
            idle_spin_us: 0,
            stall_probe_ms: 10,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./shardwatch-data"),
            quarantine_bytes_max: shardwatch_storage::quarantine::QUARANTINE_BYTES_MAX_DEFAULT,
            journal: true,
            journal_fsync_ms: 50,
            journal_direct_io: false,
            journal_drop_synced_pages: true,
            journal_preallocate: true,
            journal_segment_bytes: 64 * 1024 * 1024,
            journal_retain_bytes: 1024 * 1024 * 1024,
            journal_retain_s: 7 * 86_400,
            checkpoint_interval_ms: 10_000,
            checkpoints_keep: 3,
        }
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            builtin: true,
            paths: Vec::new(),
            watch_interval_ms: 1_000,
            suppress_window_ms: 0,
            placeholders: Default::default(),
            logsources: Vec::new(),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            stdout: true,
            alert_queue_max: 65_536,
        }
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Config {
    fn default() -> Self {
        Config {
            ingest: IngestConfig::default(),
            engine: EngineConfig::default(),
            storage: StorageConfig::default(),
            rules: RulesConfig::default(),
            output: OutputConfig::default(),
            outputs: OutputsConfig::default(),
            limits: LimitsConfig::default(),
            normalize: NormalizeConfig::default(),
            schemas: SchemasConfig::default(),
            api: ApiConfig::default(),
        }
    }
}

impl Config {
    /// The compile options of the rules (`[rules]`, see
    /// [`RulesConfig::compile_options`]), with how a payload names its
    /// fields under the alias table (`[normalize]`), for the header gate.
    pub fn compile_options(&self) -> anyhow::Result<shardwatch_rules::CompileOptions> {
        Ok(shardwatch_rules::CompileOptions {
            payload_naming: Some(crate::normalize::payload_naming(
                self.normalize.builtin,
                &self.normalize.aliases,
            )),
            ..self.rules.compile_options()?
        })
    }

    /// Reads a TOML file over the embedded defaults.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Checks values that the types alone do not.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.rules.compile_options()?;
        if self.ingest.udp.is_empty()
            && self.ingest.tcp.is_empty()
            && self.ingest.relp.is_empty()
            && self.ingest.tls.is_empty()
        {
            bail!("ingest.udp, ingest.tcp, ingest.relp and ingest.tls are all empty: nothing would listen");
        }
        for (name, addr) in [
            ("udp", &self.ingest.udp),
            ("tcp", &self.ingest.tcp),
            ("relp", &self.ingest.relp),
            ("tls", &self.ingest.tls),
        ] {
            if !addr.is_empty() {
                addr.parse::<SocketAddr>().with_context(|| {
                    format!("ingest.{name} = {addr:?} is not an IP:port address")
                })?;
            }
        }
        if !self.ingest.tls.is_empty()
            && (self.ingest.tls_cert.is_empty() || self.ingest.tls_key.is_empty())
        {
            bail!("ingest.tls is set, so ingest.tls_cert and ingest.tls_key must name PEM files");
        }
        if self.ingest.tls_require_client_cert && self.ingest.tls_client_ca.is_empty() {
            bail!("ingest.tls_require_client_cert needs ingest.tls_client_ca (the CA that signs client certificates)");
        }
        if self.schemas.sample_every == 0 {
            bail!("schemas.sample_every must be at least 1 (1 observes every event in full)");
        }
        if self.storage.journal_segment_bytes < 64 * 1024 {
            bail!("storage.journal_segment_bytes must be at least 64 KiB");
        }
        if self.ingest.udp_recv_buffer_bytes > 1 << 30 {
            bail!(
                "ingest.udp_recv_buffer_bytes must be at most 1 GiB (0 keeps the kernel's default)"
            );
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.ingest.frame_bytes_max) {
            bail!("ingest.frame_bytes_max must be between 1 KiB and 16 MiB");
        }
        if self.ingest.tcp_keepalive_s > shardwatch_net::transport::tcp::KEEPALIVE_IDLE_MAX_S {
            bail!(
                "ingest.tcp_keepalive_s must be at most {} (Linux's TCP_KEEPIDLE bound; 0 = off)",
                shardwatch_net::transport::tcp::KEEPALIVE_IDLE_MAX_S
            );
        }
        if !self.api.listen.is_empty() {
            let addr: SocketAddr = self.api.listen.parse().with_context(|| {
                format!(
                    "api.listen = {:?} is not an IP:port address",
                    self.api.listen
                )
            })?;
            if !addr.ip().is_loopback() && self.api.token.is_empty() {
                bail!(
                    "api.listen = {addr} is not a loopback address, so api.token must be set \
                     (clients then send `Authorization: Bearer <token>`)"
                );
            }
        }
        crate::sources::Admission::new(
            &self.limits.allow,
            &self.limits.deny,
            self.limits.source_rate_eps,
            self.limits.source_burst,
            self.limits.sources_max,
        )?;
        if self.engine.shards == 0 || self.engine.shards > crate::shardmap::SHARDS_MAX {
            bail!("engine.shards must be in 1..=65536");
        }
        if self.engine.route_queue_batches == 0 {
            bail!("engine.route_queue_batches must be at least 1");
        }
        if self.engine.idle_spin_us > IDLE_SPIN_US_MAX {
            bail!("engine.idle_spin_us must be at most {IDLE_SPIN_US_MAX} (10 ms; 0 = off)");
        }
        if self.engine.stall_probe_ms > STALL_PROBE_MS_MAX {
            bail!("engine.stall_probe_ms must be at most {STALL_PROBE_MS_MAX} (0 = no probe)");
        }
        if self.engine.groups_per_shard_max == 0 {
            bail!("engine.groups_per_shard_max must be at least 1");
        }
        if self.output.alert_queue_max == 0 {
            bail!("output.alert_queue_max must be at least 1");
        }
        if self.ingest.read_coalesce_us > READ_COALESCE_US_MAX {
            bail!(
                "ingest.read_coalesce_us must be at most {READ_COALESCE_US_MAX} (10 ms; 0 = off)"
            );
        }
        if !(1..=3600).contains(&self.outputs.forward_ack_timeout_s) {
            bail!("outputs.forward_ack_timeout_s must be between 1 and 3600");
        }
        Ok(())
    }

    /// The UDP address, if UDP is enabled.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.ingest.udp.parse().ok()
    }

    pub fn relp_addr(&self) -> Option<SocketAddr> {
        self.ingest.relp.parse().ok()
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.ingest.tls.parse().ok()
    }

    /// The pipeline options this configuration asks for.
    pub fn pipeline_options(&self, keep_schemas: bool) -> crate::pipeline::PipelineOptions {
        crate::pipeline::PipelineOptions {
            default_utc_offset_s: self.ingest.default_utc_offset_s,
            timestamp_skew_max_ns: i64::try_from(self.ingest.timestamp_skew_max_s)
                .unwrap_or(i64::MAX / 1_000_000_000)
                .saturating_mul(1_000_000_000),
            aliases: std::sync::Arc::new(crate::normalize::Aliases::new(
                self.normalize.builtin,
                &self.normalize.aliases,
            )),
            schemas: keep_schemas.then_some(crate::pipeline::SchemaOptions {
                sources_max: self.schemas.sources_max,
                fields_max: self.schemas.fields_per_source_max,
                sample_every: self.schemas.sample_every,
            }),
            templates: self.engine.templates,
            timezones: self
                .ingest
                .timezones
                .iter()
                .map(|(host, offset)| (host.as_bytes().to_vec(), *offset))
                .collect(),
            require_header: self.ingest.require_header,
            decode_all_payloads: self.ingest.decode_all_payloads,
            receive_times_are_arrivals: true,
        }
    }

    /// The API address, if the API is enabled.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.listen.parse().ok()
    }

    /// The TCP address, if TCP is enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.ingest.tcp.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_embedded_defaults() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config, Config::default());
        config.validate().unwrap();
        assert_eq!(config.engine.shards, 4096);
        assert_eq!(config.ingest.udp, "0.0.0.0:5514");
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let config: Config = toml::from_str("[engine]\ncores = 3\n").unwrap();
        assert_eq!(config.engine.cores, 3);
        assert_eq!(config.engine.shards, 4096);
        assert_eq!(config.ingest, IngestConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<Config>("[engine]\ncorez = 3\n").is_err());
        let mut config = Config::default();
        config.ingest.udp = "nonsense".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("ingest.udp"), "{err}");
        let mut config = Config::default();
        config.api.listen = "0.0.0.0:9600".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("api.token"), "{err}");
        config.api.token = "secret".into();
        config.validate().unwrap();
        let mut config = Config::default();
        config.ingest.tcp_keepalive_s = 32_768;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("ingest.tcp_keepalive_s"), "{err}");
        config.ingest.tcp_keepalive_s = 32_767;
        config.validate().unwrap();
        config.ingest.read_coalesce_us = 10_001;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("ingest.read_coalesce_us"), "{err}");
        config.ingest.read_coalesce_us = 10_000;
        config.validate().unwrap();
        config.engine.idle_spin_us = 10_001;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("engine.idle_spin_us"), "{err}");
        config.engine.idle_spin_us = 10_000;
        config.validate().unwrap();
        config.engine.stall_probe_ms = 1_001;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("engine.stall_probe_ms"), "{err}");
        config.engine.stall_probe_ms = 1_000;
        config.validate().unwrap();
        for (timeout, ok) in [(0, false), (1, true), (3600, true), (3601, false)] {
            config.outputs.forward_ack_timeout_s = timeout;
            let result = config.validate();
            assert_eq!(result.is_ok(), ok, "{timeout}: {result:?}");
        }
    }

    #[test]
    fn placeholders_and_log_sources_become_compile_options() {
        let config: Config = toml::from_str(
            r#"
[rules.placeholders]
admins = ["alice", "root"]

[[rules.logsources]]
product = "aws"
service = "cloudtrail"
conditions = [ { "process.name" = "cloudtrail" }, { "event.provider" = ["a", "b"], "x" = "y" } ]

[[rules.logsources]]
category = "antivirus"
conditions = []
"#,
        )
        .unwrap();
        config.validate().unwrap();
        let options = config.rules.compile_options().unwrap();
        assert_eq!(options.placeholders["admins"], ["alice", "root"]);
        assert_eq!(options.logsources.len(), 2);
        let trail = &options.logsources[0];
        assert_eq!(trail.product.as_deref(), Some("aws"));
        assert_eq!(trail.category, None);
        assert_eq!(
            trail.conditions,
            vec![
                vec![("process.name".to_owned(), vec!["cloudtrail".to_owned()])],
                vec![
                    (
                        "event.provider".to_owned(),
                        vec!["a".to_owned(), "b".to_owned()]
                    ),
                    ("x".to_owned(), vec!["y".to_owned()]),
                ],
            ]
        );
        assert!(options.logsources[1].conditions.is_empty());

        // Entries that cannot mean anything are refused, named.
        for (text, needle) in [
            (
                "[[rules.logsources]]
conditions = []
",
                "names no product",
            ),
            (
                "[[rules.logsources]]
product = \"p\"
conditions = [ {} ]
",
                "empty condition table",
            ),
            (
                "[[rules.logsources]]
product = \"p\"
conditions = [ { f = [] } ]
",
                "at least one value",
            ),
            (
                "[rules.placeholders]
admins = []
",
                "rules.placeholders.admins",
            ),
        ] {
            let config: Config = toml::from_str(text).unwrap();
            let err = format!("{:#}", config.validate().unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(toml::from_str::<Config>(
            "[[rules.logsources]]
product = \"p\"
"
        )
        .is_err());
    }
}
