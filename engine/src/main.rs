//! The `shardwatch` command line.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use shardwatch::config::Config;

#[derive(Parser)]
#[command(
    name = "shardwatch",
    version = shardwatch::BUILD_VERSION,
    about = "Real-time detection appliance for syslog telemetry"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default when no command is given).
    Run(Box<RunArgs>),
    /// Print what the appliance sees in each line, as one JSON object per line.
    Parse {
        /// A file of syslog lines, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Run the rules over a log file using event timestamps; alerts on stdout.
    Replay {
        file: PathBuf,
        #[command(flatten)]
        rules: RuleArgs,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The schema registry of a log file (or, with --api, of a running
    /// node): per source, fields, types, versions and conflicts, as JSON.
    Schemas {
        /// A log file to infer schemas from.
        file: Option<PathBuf>,
        /// Ask a running node instead (GET /api/schemas).
        #[arg(long)]
        api: Option<String>,
        #[arg(long)]
        api_token: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Mine log templates from a file with the online miner and print CSV
    /// `LineId,EventId,EventTemplate` (the template each line ended up in).
    Templates {
        /// One message per line; syslog headers are parsed off first.
        file: PathBuf,
    },
    /// List quarantined lines, oldest first, as JSON lines.
    Quarantine {
        /// The node's data directory.
        #[arg(long, default_value = "./shardwatch-data")]
        data_dir: PathBuf,
        /// Only records with this reason (e.g. bad_pri).
        #[arg(long)]
        reason: Option<String>,
        /// Only records from this source address (IP or IP:port).
        #[arg(long)]
        source: Option<String>,
        /// At most this many records (the newest ones).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Rule set tools.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Event journal tools (read-only; safe while a node runs).
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Validate every core's journal and report segments, records and
    /// what is torn or corrupt.
    Check {
        #[arg(long, default_value = "./shardwatch-data")]
        data_dir: PathBuf,
    },
    /// Print the journaled lines, one per line, in receive order over all
    /// cores (the input `shardwatch replay` takes).
    Dump {
        #[arg(long, default_value = "./shardwatch-data")]
        data_dir: PathBuf,
        /// Only this core's journal.
        #[arg(long)]
        core: Option<usize>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load every rule under PATH and report OK or why not, then totals.
    Check {
        path: PathBuf,
        /// Take `rules.placeholders` and `rules.logsources` from this
        /// configuration file, as a node started with it would.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Ask a running node to reload its rules (POST /api/rules/reload).
    Reload {
        /// The node's API address.
        #[arg(long, default_value = "127.0.0.1:9600")]
        api: String,
        /// Bearer token, if the node's API needs one.
        #[arg(long)]
        api_token: Option<String>,
    },
}

#[derive(Args, Default)]
struct RuleArgs {
    /// Extra rule file or directory (repeatable).
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Leave out the built-in rule pack.
    #[arg(long)]
    no_builtin_rules: bool,
}

#[derive(Args, Default)]
struct RunArgs {
    /// TOML configuration file; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP syslog address (empty string disables UDP).
    #[arg(long, value_name = "ADDR")]
    udp: Option<String>,
    /// TCP syslog address (empty string disables TCP).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// RELP address (empty string disables RELP).
    #[arg(long, value_name = "ADDR")]
    relp: Option<String>,
    /// TLS syslog address (RFC 5425); needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    tls: Option<String>,
    /// PEM certificate chain of the TLS listener.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<String>,
    /// PEM private key of the TLS listener.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<String>,
    /// PEM CA that signs client certificates (verified when given).
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<String>,
    /// Refuse TLS clients without a certificate.
    #[arg(long)]
    tls_require_client_cert: bool,
    /// Do not journal received lines (no replay after a crash).
    #[arg(long)]
    no_journal: bool,
    /// Journal fsync interval in ms (0: after every batch).
    #[arg(long, value_name = "MS")]
    journal_fsync_ms: Option<u64>,
    /// Checkpoint interval in ms (0: no checkpoints).
    #[arg(long, value_name = "MS")]
    checkpoint_ms: Option<u64>,
    /// HTTP API address (empty string disables the API).
    #[arg(long, value_name = "ADDR")]
    api: Option<String>,
    /// Bearer token for the HTTP API (required off loopback).
    #[arg(long, value_name = "TOKEN")]
    api_token: Option<String>,
    /// Data directory (alerts.jsonl, quarantine.jsonl).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Executors, one per core; 0 means all online cores.
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
    /// Virtual shard count.
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
    /// Do not print alerts on stdout (they still go to alerts.jsonl).
    #[arg(long)]
    quiet: bool,
    /// Print the merged configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    rules: RuleArgs,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::from_file(path),
        None => Ok(Config::default()),
    }
}

fn apply_rule_args(config: &mut Config, args: &RuleArgs) {
    config.rules.paths.extend(args.rules.iter().cloned());
    if args.no_builtin_rules {
        config.rules.builtin = false;
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    // A write past the process's file size limit (`ulimit -f`,
    // RLIMIT_FSIZE) then fails with EFBIG, which the journal, the alert log
    // and the quarantine count and recover from as from a full disk,
    // instead of SIGXFSZ ending the process: left at its default, the alert
    // writer's first write past the limit did (the durability test of an
    // alert log that cannot be written, run with the default disposition).
    // SAFETY: setting a signal's disposition to "ignore" runs no handler
    // code; nothing else in the process installs one for SIGXFSZ.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let mut config = load_config(args.config.as_ref())?;
    if let Some(udp) = args.udp {
        config.ingest.udp = udp;
    }
    if let Some(tcp) = args.tcp {
        config.ingest.tcp = tcp;
    }
    if let Some(relp) = args.relp {
        config.ingest.relp = relp;
    }
    if let Some(tls) = args.tls {
        config.ingest.tls = tls;
    }
    if let Some(cert) = args.tls_cert {
        config.ingest.tls_cert = cert;
    }
    if let Some(key) = args.tls_key {
        config.ingest.tls_key = key;
    }
    if let Some(ca) = args.tls_client_ca {
        config.ingest.tls_client_ca = ca;
    }
    if args.tls_require_client_cert {
        config.ingest.tls_require_client_cert = true;
    }
    if args.no_journal {
        config.storage.journal = false;
    }
    if let Some(ms) = args.journal_fsync_ms {
        config.storage.journal_fsync_ms = ms;
    }
    if let Some(ms) = args.checkpoint_ms {
        config.storage.checkpoint_interval_ms = ms;
    }
    if let Some(api) = args.api {
        config.api.listen = api;
    }
    if let Some(token) = args.api_token {
        config.api.token = token;
    }
    if let Some(dir) = args.data_dir {
        config.storage.data_dir = dir;
    }
    if let Some(cores) = args.cores {
        config.engine.cores = cores;
    }
    if let Some(shards) = args.shards {
        config.engine.shards = shards;
    }
    if args.quiet {
        config.output.stdout = false;
    }
    apply_rule_args(&mut config, &args.rules);
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let reports = shardwatch::app::run(config)?;
    eprintln!("shardwatch: stats {}", serde_json::to_string(&reports)?);
    Ok(())
}

fn parse(file: &str) -> anyhow::Result<()> {
    let input: Box<dyn BufRead> = if file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?,
        ))
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let ctx = shardwatch_net::syslog::ParseContext {
        now_ns: shardwatch::timefmt::now_ns(),
        default_offset_s: 0,
    };
    let mut rendered = String::new();
    let mut scratch = shardwatch_net::DecodeScratch::new();
    for line in input.split(b'\n') {
        let line = line?;
        rendered.clear();
        shardwatch_net::render::render_line(&line, &ctx, &mut scratch, &mut rendered);
        writeln!(out, "{rendered}")?;
    }
    Ok(())
}

/// `shardwatch templates FILE`: the online miner over each line's message
/// (the syslog header parsed off; a line without one is all message). The
/// miner generalises templates as it goes, so each line is printed with
/// the final template of the cluster it joined.
fn templates(file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let ctx = shardwatch_net::syslog::ParseContext {
        now_ns: shardwatch::timefmt::now_ns(),
        default_offset_s: 0,
    };
    let mut miner = shardwatch_rules::TemplateMiner::default();
    let mut clusters = Vec::new();
    let mut finals: std::collections::HashMap<u32, (String, String)> = Default::default();
    for line in text.split(|&b| b == b'\n') {
        let line = shardwatch_net::syslog::trim_line_end(line);
        if line.is_empty() {
            continue;
        }
        let message = match shardwatch_net::syslog::parse(line, &ctx) {
            Ok(parsed) => parsed.message,
            Err(_) => line,
        };
        let found = miner.mine(message);
        clusters.push(found.cluster);
        let id = String::from_utf8_lossy(&found.id_hex()).into_owned();
        finals.insert(found.cluster, (id, found.text.to_owned()));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "LineId,EventId,EventTemplate")?;
    for (i, cluster) in clusters.iter().enumerate() {
        if let Some((id, template)) = finals.get(cluster) {
            writeln!(out, "{},{id},\"{}\"", i + 1, template.replace('"', "\"\""))?;
        }
    }
    eprintln!(
        "shardwatch: templates: {} lines, {} templates",
        clusters.len(),
        miner.template_count()
    );
    Ok(())
}

/// `shardwatch schemas`: from a file (the same pipeline as replay) or from
/// a running node's API.
fn schemas(
    file: Option<PathBuf>,
    api: Option<String>,
    token: Option<String>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(api) = api {
        let body = http_request(&api, "GET", "/api/schemas", token.as_deref())?;
        println!("{body}");
        return Ok(());
    }
    let Some(file) = file else {
        anyhow::bail!("give a log FILE, or --api ADDR of a running node");
    };
    let config = load_config(config.as_ref())?;
    let (rules, _) = shardwatch::ruleload::load(
        config.rules.builtin,
        &config.rules.paths,
        &config.compile_options()?,
    )?;
    let input = BufReader::new(
        std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut registry = Vec::new();
    shardwatch::replay::replay(Arc::new(rules), &config, input, |_| {}, Some(&mut registry))?;
    println!("{}", serde_json::to_string_pretty(&registry)?);
    Ok(())
}

/// `shardwatch quarantine`: the quarantine files of a data directory,
/// oldest first, filtered, as JSON lines; a summary by reason on stderr.
fn quarantine(
    data_dir: &std::path::Path,
    reason: Option<&str>,
    source: Option<&str>,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let mut matching = Vec::new();
    let mut by_reason = std::collections::BTreeMap::<String, u64>::new();
    // Lines that are not a whole record: a write cut by a crash or a full
    // disk (possibly inside a UTF-8 sequence). Skipped and reported, so
    // one torn line does not hide the file.
    let mut unreadable = 0u64;
    for name in [
        shardwatch_storage::quarantine::ROTATED_FILE,
        shardwatch_storage::quarantine::CURRENT_FILE,
    ] {
        let path = data_dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(record) = serde_json::from_slice::<serde_json::Value>(line) else {
                unreadable += 1;
                continue;
            };
            let line = String::from_utf8_lossy(line);
            let r = record["reason"].as_str().unwrap_or_default();
            let s = record["source"].as_str().unwrap_or_default();
            if reason.is_some_and(|want| want != r) {
                continue;
            }
            if source.is_some_and(|want| s != want && !s.starts_with(&format!("{want}:"))) {
                continue;
            }
            *by_reason.entry(r.to_string()).or_default() += 1;
            matching.push(line.to_string());
        }
    }
    let skip = limit.map_or(0, |l| matching.len().saturating_sub(l));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in &matching[skip..] {
        writeln!(out, "{line}")?;
    }
    eprintln!(
        "shardwatch: quarantine: {} records {by_reason:?}{}",
        matching.len(),
        if unreadable > 0 {
            format!(", {unreadable} unreadable lines skipped (torn by a crash or a full disk)")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn replay(file: PathBuf, rule_args: RuleArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = load_config(config.as_ref())?;
    apply_rule_args(&mut config, &rule_args);
    let (rules, errors) = shardwatch::ruleload::load(
        config.rules.builtin,
        &config.rules.paths,
        &config.compile_options()?,
    )?;
    for error in &errors {
        eprintln!("shardwatch: rule not loaded: {error}");
    }
    let input = BufReader::new(
        std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let summary = shardwatch::replay::replay(
        Arc::new(rules),
        &config,
        input,
        |line| {
            let _ = writeln!(out, "{line}");
        },
        None,
    )?;
    eprintln!(
        "shardwatch: replay: lines={} quarantined={} alerts={} suppressed={}",
        summary.lines, summary.quarantined, summary.alerts, summary.suppressed
    );
    Ok(())
}

/// Line number (1-based) where YAML document `document` (0-based) of
/// `text` starts, counting `---` separator lines.
fn document_line(text: &str, document: usize) -> usize {
    if document == 0 {
        return 1;
    }
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            seen += 1;
            if seen == document {
                return i + 2;
            }
        }
    }
    1
}

/// `shardwatch rules check PATH`: compiles every rule file under PATH as
/// one set (so correlations may refer to rules in other files), then prints
/// one line per rule — OK, UNSUPPORTED with the feature, or ERROR with file
/// and line — and the totals. Returns true when every rule loaded.
fn rules_check(path: PathBuf, config: Option<PathBuf>) -> anyhow::Result<bool> {
    let options = load_config(config.as_ref())?.compile_options()?;
    // The built-in pack is compiled alongside (rules may refer to its base
    // rules by name, as they can in a running node) but not reported.
    let sources = shardwatch::ruleload::sources(true, std::slice::from_ref(&path))?;
    let (rules, errors) = shardwatch_rules::RuleSet::compile_with(&sources, &options);
    let builtin = |origin: &str| origin.starts_with("builtin:");
    let text_of: std::collections::HashMap<&str, &str> = sources
        .iter()
        .map(|s| (s.origin.as_str(), s.text.as_str()))
        .collect();
    let mut ok = 0usize;
    for i in 0..rules.detection_count() {
        let meta = rules.detection(i);
        if builtin(&meta.origin) {
            continue;
        }
        println!("OK          {}  {} ({})", meta.origin, meta.title, meta.id);
        ok += 1;
    }
    for i in 0..rules.correlation_count() {
        let meta = rules.correlation(i);
        if builtin(&meta.origin) {
            continue;
        }
        println!("OK          {}  {} ({})", meta.origin, meta.title, meta.id);
        ok += 1;
    }
    let mut unsupported: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failed = 0usize;
    for error in errors.iter().filter(|e| !builtin(&e.origin)) {
        let line = text_of
            .get(error.origin.as_str())
            .map_or(1, |text| document_line(text, error.document));
        let what = error.title.as_deref().unwrap_or("(untitled)");
        match &error.kind {
            shardwatch_rules::RuleErrorKind::Unsupported { feature } => {
                // Group features by their first word (e.g. "logsource").
                let family = feature
                    .split([' ', ':'])
                    .next()
                    .unwrap_or(feature)
                    .to_string();
                *unsupported.entry(family).or_default() += 1;
                println!("UNSUPPORTED {}:{line}  {what}: {feature}", error.origin);
            }
            kind => {
                failed += 1;
                println!("ERROR       {}:{line}  {what}: {kind}", error.origin);
            }
        }
    }
    let unsupported_total: usize = unsupported.values().sum();
    println!(
        "total: {} rules, {ok} ok, {unsupported_total} unsupported, {failed} errors",
        ok + unsupported_total + failed
    );
    for (feature, count) in &unsupported {
        println!("  unsupported {feature}: {count}");
    }
    Ok(unsupported_total == 0 && failed == 0)
}

/// `shardwatch rules reload`: one HTTP POST to the node's API.
fn rules_reload(api: &str, token: Option<&str>) -> anyhow::Result<()> {
    let body = http_request(api, "POST", "/api/rules/reload", token)?;
    println!("{body}");
    Ok(())
}

/// One HTTP/1.1 request to a node's API; the body of a 200 answer, or an
/// error naming the status.
fn http_request(
    api: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<String> {
    use std::io::Read;
    let addr: std::net::SocketAddr = api
        .parse()
        .with_context(|| format!("--api {api:?} is not an IP:port address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
        .with_context(|| format!("cannot reach the shardwatch API at {addr}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let ok = head.starts_with("HTTP/1.1 200");
    // The body may be chunked; keep what a person needs: the JSON.
    let json = body
        .lines()
        .find(|l| {
            let l = l.trim_start();
            l.starts_with('{') || l.starts_with('[')
        })
        .unwrap_or(body)
        .to_string();
    if !ok {
        anyhow::bail!(
            "{method} {path}: {} {json}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(json)
}

/// The core journal directories under `data_dir`, by core.
fn journal_cores(data_dir: &std::path::Path, only: Option<usize>) -> Vec<(usize, PathBuf)> {
    (0..)
        .map(|core| (core, shardwatch::durable::journal_dir(data_dir, core)))
        .take_while(|(_, dir)| dir.exists())
        .filter(|(core, _)| only.is_none_or(|o| o == *core))
        .collect()
}

fn journal_check(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let cores = journal_cores(data_dir, None);
    if cores.is_empty() {
        anyhow::bail!("no journal under {}", data_dir.join("journal").display());
    }
    let mut clean = true;
    for (core, dir) in cores {
        let report = shardwatch_storage::journal::scan(&dir, 0, |_| {})?;
        println!(
            "core {core}: {} segments, {} records, sequences {}..={}, torn tails {} ({} bytes), corrupt stretches {} ({} bytes skipped), bad segments {}",
            report.segments,
            report.records,
            report.first_seq.unwrap_or(0),
            report.last_seq.unwrap_or(0),
            report.torn_tails,
            report.torn_bytes,
            report.corrupt_stretches,
            report.skipped_bytes,
            report.bad_segments
        );
        for problem in &report.problems {
            println!("  {problem}");
        }
        clean &= report.problems.is_empty();
    }
    if !clean {
        std::process::exit(2);
    }
    Ok(())
}

fn journal_dump(data_dir: &std::path::Path, only: Option<usize>) -> anyhow::Result<()> {
    let mut lines: Vec<(i64, usize, u64, Vec<u8>)> = Vec::new();
    for (core, dir) in journal_cores(data_dir, only) {
        let report = shardwatch_storage::journal::scan(&dir, 0, |entry| {
            lines.push((entry.received_ns, core, entry.seq, entry.line.to_vec()));
        })?;
        for problem in &report.problems {
            eprintln!("shardwatch: journal core {core}: {problem}");
        }
    }
    lines.sort_by_key(|(received, core, seq, _)| (*received, *core, *seq));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (_, _, _, line) in lines {
        out.write_all(&line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(Box::default())) {
        Command::Run(args) => run(*args),
        Command::Parse { file } => parse(&file),
        Command::Templates { file } => templates(&file),
        Command::Schemas {
            file,
            api,
            api_token,
            config,
        } => schemas(file, api, api_token, config),
        Command::Quarantine {
            data_dir,
            reason,
            source,
            limit,
        } => quarantine(&data_dir, reason.as_deref(), source.as_deref(), limit),
        Command::Replay {
            file,
            rules,
            config,
        } => replay(file, rules, config),
        Command::Rules {
            command: RulesCommand::Check { path, config },
        } => match rules_check(path, config) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => Err(e),
        },
        Command::Rules {
            command: RulesCommand::Reload { api, api_token },
        } => rules_reload(&api, api_token.as_deref()),
        Command::Journal {
            command: JournalCommand::Check { data_dir },
        } => journal_check(&data_dir),
        Command::Journal {
            command: JournalCommand::Dump { data_dir, core },
        } => journal_dump(&data_dir, core),
    };
    if let Err(err) = result {
        eprintln!("shardwatch: error: {err:#}");
        std::process::exit(1);
    }
}
