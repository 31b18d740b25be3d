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
    version,
    about = "Real-time detection appliance for syslog telemetry"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default when no command is given).
    Run(RunArgs),
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
    /// Rule set tools.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load every rule under PATH and report OK or why not, then totals.
    Check { path: PathBuf },
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
    let mut config = load_config(args.config.as_ref())?;
    if let Some(udp) = args.udp {
        config.ingest.udp = udp;
    }
    if let Some(tcp) = args.tcp {
        config.ingest.tcp = tcp;
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
    for line in input.split(b'\n') {
        let line = line?;
        rendered.clear();
        shardwatch_net::render::render_line(&line, &ctx, &mut rendered);
        writeln!(out, "{rendered}")?;
    }
    Ok(())
}

fn replay(file: PathBuf, rule_args: RuleArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = load_config(config.as_ref())?;
    apply_rule_args(&mut config, &rule_args);
    let (rules, errors) = shardwatch::ruleload::load(config.rules.builtin, &config.rules.paths)?;
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
        config.engine.shards,
        config.engine.groups_per_shard_max,
        config.ingest.default_utc_offset_s,
        input,
        |line| {
            let _ = writeln!(out, "{line}");
        },
    )?;
    eprintln!(
        "shardwatch: replay: lines={} quarantined={} alerts={}",
        summary.lines, summary.quarantined, summary.alerts
    );
    Ok(())
}

fn rules_check(path: PathBuf) -> anyhow::Result<bool> {
    let mut ok = 0usize;
    let mut failed = 0usize;
    for file in shardwatch::ruleload::rule_files(&path)? {
        let sources = shardwatch::ruleload::sources(false, std::slice::from_ref(&file))?;
        let (_rules, errors) = shardwatch_rules::RuleSet::compile_lenient(&sources);
        if errors.is_empty() {
            ok += 1;
            println!("OK     {}", file.display());
        } else {
            failed += 1;
            for error in errors {
                println!("FAILED {error}");
            }
        }
    }
    println!("total: {} files, {ok} ok, {failed} not loaded", ok + failed);
    Ok(failed == 0)
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Run(args) => run(args),
        Command::Parse { file } => parse(&file),
        Command::Replay {
            file,
            rules,
            config,
        } => replay(file, rules, config),
        Command::Rules {
            command: RulesCommand::Check { path },
        } => match rules_check(path) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => Err(e),
        },
    };
    if let Err(err) = result {
        eprintln!("shardwatch: error: {err:#}");
        std::process::exit(1);
    }
}
