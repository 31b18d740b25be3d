//! The deterministic test corpus: a mixed background stream over a fixed set
//! of entities, with attack scenarios injected at known positions and the
//! ground truth written beside it.
//!
//! # What this module owns
//!
//! Generation (same [`GenConfig`] → same bytes), the scenario table, the
//! ground-truth format (`FILE.truth.json`), loading a corpus back, and the
//! header-timestamp rewriting that lets a recorded corpus be replayed "now".
//! It does no network IO and reads no clock: the start time is a parameter.
//!
//! # Why background never fires a rule
//!
//! Background rows that feed a stateful rule (ssh failures, invalid users,
//! sudo failures) go through a [`Budgets`] table that keeps, per entity and
//! per rule window, the count well below the rule's threshold; when a row
//! would exceed its budget the generator writes a harmless row instead. Rows
//! that would fire a single-event rule (a failed `su` to root) never appear
//! in the background. Scenario entities (attacker addresses from the
//! documentation and benchmark ranges, scenario users past the background
//! pool) are disjoint from background entities, so a scenario's alert fires
//! exactly on its own completing event and the truth index is exact.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::timefmt::{self, NS_PER_S};

/// Most events one corpus may hold; the corpus lives in memory while it is
/// sent, so this bounds the harness's memory to a few GiB.
pub const EVENTS_MAX: u64 = 20_000_000;
/// Most entities (users, hosts, client addresses) of each kind.
pub const ENTITIES_MAX: u32 = 1_000_000;
/// Most scenario instances in one corpus; attacker addresses and scenario
/// users are unique per instance up to this count.
pub const SCENARIO_INSTANCES_MAX: u32 = 100_000;
/// Longest line the loader accepts; longer lines are refused, not cut.
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// Ground-truth format version, bumped when its fields change meaning.
pub const TRUTH_FORMAT_VERSION: u32 = 1;
/// Default start of the corpus timeline: fixed so the default output is the
/// same file on every machine. `run` and `batch` shift it to the present.
pub const DEFAULT_START_NS: i64 = 1_795_996_800 * NS_PER_S; // 2026-11-30T00:00:00Z

/// How a line's syslog header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `<PRI>Mmm dd hh:mm:ss host tag[pid]: msg` (BSD syslog, no year).
    Rfc3164,
    /// `<PRI>1 TIMESTAMP host app procid msgid SD msg`.
    Rfc5424,
}

/// One event before rendering: everything but the timestamp text.
#[derive(Debug, Clone)]
pub struct LineSpec {
    pub header: Header,
    pub pri: u8,
    pub host: String,
    pub app: &'static str,
    pub pid: Option<u32>,
    /// RFC 5424 MSGID and STRUCTURED-DATA (`-` when absent).
    pub msgid: &'static str,
    pub sd: String,
    pub msg: String,
}

impl LineSpec {
    /// Appends the rendered line (no newline) at event time `time_ns`.
    pub fn render(&self, time_ns: i64, out: &mut String) {
        match self.header {
            Header::Rfc3164 => {
                let _ = write!(
                    out,
                    "<{}>{} {} ",
                    self.pri,
                    timefmt::rfc3164(time_ns),
                    self.host
                );
                if !self.app.is_empty() {
                    out.push_str(self.app);
                    if let Some(pid) = self.pid {
                        let _ = write!(out, "[{pid}]");
                    }
                    out.push_str(": ");
                }
            }
            Header::Rfc5424 => {
                let _ = write!(
                    out,
                    "<{}>1 {} {} {} ",
                    self.pri,
                    timefmt::rfc3339_us(time_ns),
                    self.host,
                    if self.app.is_empty() { "-" } else { self.app }
                );
                match self.pid {
                    Some(pid) => {
                        let _ = write!(out, "{pid} ");
                    }
                    None => out.push_str("- "),
                }
                let _ = write!(out, "{} {} ", self.msgid, self.sd);
            }
        }
        out.push_str(&self.msg);
    }
}

/// The fixed entity pools background and scenarios draw from.
#[derive(Debug, Clone)]
pub struct Entities {
    count: u32,
}

const FIRST_NAMES: [&str; 24] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "uma", "victor", "walter", "xena",
    "yusuf", "zoe", "quentin",
];
const HOST_ROLES: [&str; 8] = [
    "web", "db", "app", "cache", "batch", "build", "mail", "bastion",
];

impl Entities {
    pub fn new(count: u32) -> Entities {
        Entities {
            count: count.max(1),
        }
    }

    /// User `i`; names past the first list get a numeric suffix.
    pub fn user(&self, i: u32) -> String {
        let base = FIRST_NAMES[(i as usize) % FIRST_NAMES.len()];
        let round = i as usize / FIRST_NAMES.len();
        if round == 0 {
            base.to_string()
        } else {
            format!("{base}{round}")
        }
    }

    /// The uid that goes with user `i`, as `/etc/passwd` would assign it.
    pub fn uid(&self, i: u32) -> u32 {
        1000 + i
    }

    /// Internal host `i`.
    pub fn host(&self, i: u32) -> String {
        format!(
            "{}-{:02}",
            HOST_ROLES[(i as usize) % HOST_ROLES.len()],
            i / 8 + 1
        )
    }

    /// Internal client address `i` (10.0.0.0/8, never a scenario address).
    pub fn client_ip(&self, i: u32) -> String {
        let n = i + 256;
        format!(
            "10.{}.{}.{}",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            (n & 0xff).max(1)
        )
    }

    /// An outside address seen by the firewall (100.64.0.0/10, never a
    /// scenario address).
    pub fn outside_ip(&self, rng: &mut Rng) -> String {
        format!(
            "100.{}.{}.{}",
            64 + rng.below(64),
            rng.below(256),
            1 + rng.below(254)
        )
    }

    fn pick(&self, rng: &mut Rng) -> u32 {
        rng.below(u64::from(self.count)) as u32
    }

    /// Scenario instance `i`'s user: past the background pool, so background
    /// never counts toward a scenario's window.
    pub fn scenario_user(&self, i: u32) -> String {
        self.user(self.count + i)
    }

    /// Scenario instance `i`'s attacker address: TEST-NET-3 first, then the
    /// 198.18.0.0/15 benchmark range, neither of which the background uses.
    pub fn attacker_ip(&self, i: u32) -> String {
        if i < 254 {
            format!("203.0.113.{}", i + 1)
        } else {
            let n = i - 254;
            format!(
                "198.{}.{}.{}",
                18 + (n / 254 / 256) % 2,
                (n / 254) % 256,
                n % 254 + 1
            )
        }
    }
}

/// A per-entity sliding-window counter that keeps background below rule
/// thresholds.
#[derive(Debug, Default)]
pub struct Budgets {
    seen: HashMap<(u8, String), VecDeque<i64>>,
}

/// A background budget: which rule input it guards, its window and how many
/// events one key may have inside it.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub id: u8,
    pub window_ns: i64,
    pub per_key_max: usize,
}

/// Slack added to every window: RFC 3164 timestamps are whole seconds, so the
/// appliance may see two events up to a second closer than we placed them.
const BUDGET_SLACK_NS: i64 = 5 * NS_PER_S;

/// SSH failures per source address: the brute-force rule fires at 10 in
/// 5 minutes; background keeps at most 4.
pub const BUDGET_SSH_FAILURE: Budget = Budget {
    id: 0,
    window_ns: 300 * NS_PER_S,
    per_key_max: 4,
};
/// Invalid-user attempts per source: the enumeration rule fires at 5 in 10
/// minutes; background keeps at most 2.
pub const BUDGET_SSH_INVALID_USER: Budget = Budget {
    id: 1,
    window_ns: 600 * NS_PER_S,
    per_key_max: 2,
};
/// Sudo failures per user: the rule fires at 3 in 5 minutes; background
/// keeps at most 1.
pub const BUDGET_SUDO_FAILURE: Budget = Budget {
    id: 2,
    window_ns: 300 * NS_PER_S,
    per_key_max: 1,
};

impl Budgets {
    /// Takes one unit of `budget` for `key` at `time_ns` if it is free.
    /// Times must not go backwards per budget (the generator is in order).
    pub fn take(&mut self, budget: Budget, key: &str, time_ns: i64) -> bool {
        let times = self.seen.entry((budget.id, key.to_string())).or_default();
        let horizon = time_ns - budget.window_ns - BUDGET_SLACK_NS;
        while times.front().is_some_and(|&t| t < horizon) {
            times.pop_front();
        }
        if times.len() >= budget.per_key_max {
            return false;
        }
        times.push_back(time_ns);
        true
    }
}

/// What the background generator hands back for one event.
struct Background<'a> {
    rng: &'a mut Rng,
    ents: &'a Entities,
    budgets: &'a mut Budgets,
    time_ns: i64,
}

impl Background<'_> {
    fn header(&mut self, bsd_percent: u64) -> Header {
        if self.rng.chance(bsd_percent) {
            Header::Rfc3164
        } else {
            Header::Rfc5424
        }
    }

    fn line(&mut self, pri: u8, app: &'static str, msg: String, bsd_percent: u64) -> LineSpec {
        let host = self.ents.host(self.ents.pick(self.rng));
        LineSpec {
            header: self.header(bsd_percent),
            pri,
            host,
            app,
            pid: Some(self.rng.range(300, 65_000) as u32),
            msgid: "-",
            sd: "-".to_string(),
            msg,
        }
    }
}

type BackgroundRow = fn(&mut Background<'_>) -> LineSpec;

/// The background mix: (name, weight, row). Weights are relative.
const BACKGROUND_ROWS: [(&str, u64, BackgroundRow); 16] = [
    ("sshd_accepted", 6, bg_ssh_accepted),
    ("sshd_failed", 2, bg_ssh_failed),
    ("sshd_invalid_user", 1, bg_ssh_invalid_user),
    ("sshd_session", 4, bg_ssh_session),
    ("sshd_disconnect", 3, bg_ssh_disconnect),
    ("sudo_command", 4, bg_sudo_command),
    ("sudo_session", 3, bg_sudo_session),
    ("sudo_failure", 1, bg_sudo_failure),
    ("su_session", 2, bg_su_session),
    ("cron", 5, bg_cron),
    ("cron_session", 3, bg_cron_session),
    ("netfilter", 8, bg_netfilter),
    ("cef_firewall", 6, bg_cef),
    ("key_value", 6, bg_key_value),
    ("rfc5424_app", 8, bg_app),
    ("cloud_audit_json", 5, bg_cloud_json),
];

fn bg_ssh_accepted(b: &mut Background<'_>) -> LineSpec {
    let u = b.ents.pick(b.rng);
    let ip = b.ents.client_ip(b.ents.pick(b.rng));
    let method = if b.rng.chance(70) {
        "publickey"
    } else {
        "password"
    };
    let port = b.rng.range(32_768, 60_999);
    let mut msg = format!(
        "Accepted {method} for {} from {ip} port {port} ssh2",
        b.ents.user(u)
    );
    if method == "publickey" {
        let _ = write!(
            msg,
            ": ED25519 SHA256:{:016x}{:016x}",
            b.rng.next_u64(),
            b.rng.next_u64()
        );
    }
    b.line(38, "sshd", msg, 70)
}

fn bg_ssh_failed(b: &mut Background<'_>) -> LineSpec {
    let ip = b.ents.client_ip(b.ents.pick(b.rng));
    if !b.budgets.take(BUDGET_SSH_FAILURE, &ip, b.time_ns) {
        return bg_ssh_accepted(b);
    }
    let user = b.ents.user(b.ents.pick(b.rng));
    let port = b.rng.range(32_768, 60_999);
    b.line(
        38,
        "sshd",
        format!("Failed password for {user} from {ip} port {port} ssh2"),
        70,
    )
}

fn bg_ssh_invalid_user(b: &mut Background<'_>) -> LineSpec {
    let ip = b.ents.client_ip(b.ents.pick(b.rng));
    if !b.budgets.take(BUDGET_SSH_INVALID_USER, &ip, b.time_ns) {
        return bg_ssh_session(b);
    }
    let name = *b
        .rng
        .pick(&["admin", "test", "oracle", "ubuntu", "git", "deploy"]);
    let port = b.rng.range(32_768, 60_999);
    b.line(
        38,
        "sshd",
        format!("Invalid user {name} from {ip} port {port}"),
        70,
    )
}

fn bg_ssh_session(b: &mut Background<'_>) -> LineSpec {
    let u = b.ents.pick(b.rng);
    let verb = if b.rng.chance(50) { "opened" } else { "closed" };
    let msg = if verb == "opened" {
        format!(
            "pam_unix(sshd:session): session opened for user {}(uid={}) by (uid=0)",
            b.ents.user(u),
            b.ents.uid(u)
        )
    } else {
        format!(
            "pam_unix(sshd:session): session closed for user {}",
            b.ents.user(u)
        )
    };
    b.line(86, "sshd", msg, 70)
}

fn bg_ssh_disconnect(b: &mut Background<'_>) -> LineSpec {
    let ip = b.ents.client_ip(b.ents.pick(b.rng));
    let port = b.rng.range(32_768, 60_999);
    let msg = if b.rng.chance(50) {
        format!("Received disconnect from {ip} port {port}:11: disconnected by user")
    } else {
        let user = b.ents.user(b.ents.pick(b.rng));
        format!("Disconnected from user {user} {ip} port {port}")
    };
    b.line(38, "sshd", msg, 70)
}

const COMMANDS: [&str; 8] = [
    "/usr/bin/systemctl restart nginx",
    "/usr/bin/journalctl -u postgresql --since today",
    "/usr/bin/apt-get update",
    "/bin/cat /var/log/auth.log",
    "/usr/bin/docker ps",
    "/usr/sbin/iptables -L -n",
    "/usr/bin/tail -f /var/log/syslog",
    "/bin/ls /root",
];

fn bg_sudo_command(b: &mut Background<'_>) -> LineSpec {
    let user = b.ents.user(b.ents.pick(b.rng));
    let tty = b.rng.below(8);
    let cmd = *b.rng.pick(&COMMANDS);
    let msg = format!("{user} : TTY=pts/{tty} ; PWD=/home/{user} ; USER=root ; COMMAND={cmd}");
    b.line(85, "sudo", msg, 80)
}

fn bg_sudo_session(b: &mut Background<'_>) -> LineSpec {
    let u = b.ents.pick(b.rng);
    let msg = format!(
        "pam_unix(sudo:session): session opened for user root(uid=0) by {}(uid={})",
        b.ents.user(u),
        b.ents.uid(u)
    );
    b.line(86, "sudo", msg, 80)
}

fn bg_sudo_failure(b: &mut Background<'_>) -> LineSpec {
    let u = b.ents.pick(b.rng);
    let user = b.ents.user(u);
    if !b.budgets.take(BUDGET_SUDO_FAILURE, &user, b.time_ns) {
        return bg_sudo_command(b);
    }
    let msg = format!(
        "pam_unix(sudo:auth): authentication failure; logname={user} uid={} euid=0 tty=/dev/pts/{} ruser={user} rhost=  user={user}",
        b.ents.uid(u),
        b.rng.below(8)
    );
    b.line(85, "sudo", msg, 80)
}

fn bg_su_session(b: &mut Background<'_>) -> LineSpec {
    let u = b.ents.pick(b.rng);
    let user = b.ents.user(u);
    let msg = match b.rng.below(3) {
        0 => format!("Successful su for root by {user}"),
        1 => format!("+ pts/{} {user}:root", b.rng.below(8)),
        _ => format!(
            "pam_unix(su:session): session opened for user root(uid=0) by {user}(uid={})",
            b.ents.uid(u)
        ),
    };
    b.line(86, "su", msg, 80)
}

fn bg_cron(b: &mut Background<'_>) -> LineSpec {
    let job = *b.rng.pick(&[
        "(root) CMD (/usr/lib/sysstat/sa1 1 1)",
        "(root) CMD (   cd / && run-parts --report /etc/cron.hourly)",
        "(postgres) CMD (/usr/local/bin/pg_backup.sh)",
        "(www-data) CMD (php /var/www/app/artisan schedule:run >> /dev/null 2>&1)",
    ]);
    b.line(78, "CRON", job.to_string(), 90)
}

fn bg_cron_session(b: &mut Background<'_>) -> LineSpec {
    let msg = if b.rng.chance(50) {
        "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
    } else {
        "pam_unix(cron:session): session closed for user root"
    };
    b.line(86, "CRON", msg.to_string(), 90)
}

fn bg_netfilter(b: &mut Background<'_>) -> LineSpec {
    let src = b.ents.outside_ip(b.rng);
    let dst = b.ents.client_ip(b.ents.pick(b.rng));
    let (proto, dpt) = *b.rng.pick(&[
        ("TCP", 22),
        ("TCP", 443),
        ("TCP", 3389),
        ("UDP", 53),
        ("TCP", 8080),
    ]);
    let uptime_us = b.rng.range(1_000_000, 9_999_999_999);
    let msg = format!(
        "[{}.{:06}] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL={} ID={} DF PROTO={proto} SPT={} DPT={dpt} WINDOW=64240 RES=0x00 SYN URGP=0",
        uptime_us / 1_000_000,
        uptime_us % 1_000_000,
        b.rng.range(40, 128),
        b.rng.below(65_536),
        b.rng.range(1024, 65_535),
    );
    let mut line = b.line(4, "kernel", msg, 90);
    line.pid = None;
    line
}

fn bg_cef(b: &mut Background<'_>) -> LineSpec {
    let src = b.ents.client_ip(b.ents.pick(b.rng));
    let dst = b.ents.outside_ip(b.rng);
    let user = b.ents.user(b.ents.pick(b.rng));
    let act = if b.rng.chance(85) { "allow" } else { "deny" };
    let msg = format!(
        "CEF:0|Palo Alto Networks|PAN-OS|10.2.4|TRAFFIC|end|3|rt={} src={src} dst={dst} spt={} dpt=443 proto=TCP act={act} suser=corp\\\\{user} cs1Label=Rule cs1=allow-web cnt=1",
        b.time_ns / 1_000_000,
        b.rng.range(32_768, 60_999)
    );
    let mut line = b.line(134, "", msg, 100);
    line.host = format!("fw-{:02}", b.rng.range(1, 2));
    line.pid = None;
    line
}

fn bg_key_value(b: &mut Background<'_>) -> LineSpec {
    let src = b.ents.client_ip(b.ents.pick(b.rng));
    let dst = b.ents.outside_ip(b.rng);
    let user = b.ents.user(b.ents.pick(b.rng));
    let msg = format!(
        "devname=\"fgt-edge\" devid=\"FG100F0000000001\" type=\"traffic\" subtype=\"forward\" level=\"notice\" srcip={src} srcport={} dstip={dst} dstport=443 proto=6 action=\"accept\" service=\"HTTPS\" user=\"{user}\" sentbyte={} rcvdbyte={}",
        b.rng.range(32_768, 60_999),
        b.rng.range(200, 90_000),
        b.rng.range(200, 900_000)
    );
    let mut line = b.line(189, "", msg, 100);
    line.host = "fgt-edge".to_string();
    line.pid = None;
    line
}

fn bg_app(b: &mut Background<'_>) -> LineSpec {
    let user = b.ents.user(b.ents.pick(b.rng));
    let ip = b.ents.client_ip(b.ents.pick(b.rng));
    let (method, path) = *b.rng.pick(&[
        ("GET", "/api/v1/orders"),
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/health"),
        ("PUT", "/api/v1/users/profile"),
        ("DELETE", "/api/v1/sessions"),
    ]);
    let status = *b.rng.pick(&[200, 200, 200, 201, 204, 302, 404, 500]);
    let msg = format!(
        "{method} {path} status={status} duration_ms={} user={user}",
        b.rng.range(1, 900)
    );
    let mut line = b.line(134, "orders-api", msg, 0);
    line.msgid = "ACCESS";
    line.sd = format!(
        "[req@32473 id=\"{:016x}\" client=\"{ip}\"][origin software=\"orders-api\" swVersion=\"2.14.1\"]",
        b.rng.next_u64()
    );
    line
}

fn bg_cloud_json(b: &mut Background<'_>) -> LineSpec {
    let user = b.ents.user(b.ents.pick(b.rng));
    let ip = b.ents.client_ip(b.ents.pick(b.rng));
    let (source, name) = *b.rng.pick(&[
        ("s3.amazonaws.com", "GetObject"),
        ("s3.amazonaws.com", "PutObject"),
        ("ec2.amazonaws.com", "DescribeInstances"),
        ("iam.amazonaws.com", "ListRoles"),
        ("sts.amazonaws.com", "AssumeRole"),
        ("signin.amazonaws.com", "ConsoleLogin"),
    ]);
    let msg = format!(
        "{{\"eventVersion\":\"1.08\",\"eventTime\":\"{}\",\"eventSource\":\"{source}\",\"eventName\":\"{name}\",\"awsRegion\":\"eu-west-1\",\"sourceIPAddress\":\"{ip}\",\"userIdentity\":{{\"type\":\"IAMUser\",\"userName\":\"{user}\",\"accountId\":\"123456789012\"}},\"requestID\":\"{:016x}\",\"readOnly\":{}}}",
        timefmt::rfc3339_us(b.time_ns),
        b.rng.next_u64(),
        name.starts_with("Get") || name.starts_with("Describe") || name.starts_with("List"),
    );
    let mut line = b.line(110, "cloudtrail", msg, 0);
    line.pid = None;
    line.host = "audit-collector".to_string();
    line
}

fn background_line(b: &mut Background<'_>) -> LineSpec {
    let total: u64 = BACKGROUND_ROWS.iter().map(|r| r.1).sum();
    let mut roll = b.rng.below(total);
    for (_, weight, row) in BACKGROUND_ROWS {
        if roll < weight {
            return row(b);
        }
        roll -= weight;
    }
    bg_cron(b)
}

/// One event of a scenario instance, placed `offset_ns` after its start.
#[derive(Debug, Clone)]
pub struct Step {
    pub offset_ns: i64,
    pub line: LineSpec,
}

/// A built scenario instance: its steps and which one completes the alert.
#[derive(Debug, Clone)]
pub struct Instance {
    pub group_value: String,
    pub steps: Vec<Step>,
    /// Index into `steps` of the event that makes the rule fire.
    pub completing_step: usize,
}

/// Where the rule an expected alert comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSource {
    /// The appliance's built-in rule pack, always loaded.
    Builtin,
    /// The harness's scenario rule file (`perf/rules/scenarios.yml`), passed
    /// to the appliance with `--rules`; when it is absent the expected alert
    /// is reported as `not loaded` instead of as a miss.
    ScenarioFile,
}

/// One alert a scenario instance is expected to raise. All alerts of a row
/// complete on the instance's completing step.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Matches an alert when equal to its rule id or contained in its title
    /// (case-insensitive).
    pub rule: &'static str,
    /// The alert's group field (`""` for single-event rules, whose alerts
    /// carry no group and are matched by their sample line instead).
    pub group_field: &'static str,
    pub source: RuleSource,
    /// Fields the appliance must extract from the scenario's lines for the
    /// rule to see them. The harness asks the binary (`shardwatch parse`)
    /// before a run and reports the alert as `unsupported` when a field is
    /// missing, rather than counting a parser gap as a detection miss.
    pub needs_fields: &'static [&'static str],
}

/// One row of the scenario table. Adding an attack is adding a row with its
/// builder; the anomaly rows (`host_silent`, `new_network`,
/// `rare_template`) expect alerts of the rules in `perf/rules/anomaly.yml`.
#[derive(Debug, Clone, Copy)]
pub struct ScenarioDef {
    pub name: &'static str,
    /// The alerts one instance raises, each a ground-truth entry.
    pub expects: &'static [Expect],
    pub build: fn(&mut Rng, &Entities, u32) -> Instance,
}

const fn builtin(rule: &'static str, group_field: &'static str) -> Expect {
    Expect {
        rule,
        group_field,
        source: RuleSource::Builtin,
        needs_fields: &[],
    }
}

/// The id of `SSH Password Spraying From One Source` in the scenario file.
pub const RULE_PASSWORD_SPRAYING: &str = "3e1ce858-2186-400c-bce7-1c7ec4fbbd47";
/// The id of `Port Scan Of One Host` in the scenario file.
pub const RULE_PORT_SCAN: &str = "cdd52c56-fedd-4a69-ad67-476247cfa551";
/// The id of `Lateral Movement From Outside Login To Root` in the scenario
/// file.
pub const RULE_LATERAL_MOVEMENT: &str = "b125410b-488d-4b82-bf4e-77587f102f3b";

/// The id of `Host Went Silent` in the anomaly rule file.
pub const RULE_HOST_SILENT: &str = "6a0f3c2e-9b1d-4e7a-8c5f-2d4b6e8a1c37";
/// The id of `User Logged In From A New Network` in the anomaly rule file.
pub const RULE_NEW_NETWORK: &str = "2d7b9e41-5c3a-4f08-b6e2-8a1c0f4d7e95";
/// The id of `Rare Log Template On A Billing Host` in the anomaly rule file.
pub const RULE_RARE_TEMPLATE: &str = "9e3c1a57-0f2b-4d6e-a8b4-7c5d2e9f1b03";

/// The scenario table.
pub const SCENARIOS: [ScenarioDef; 9] = [
    ScenarioDef {
        name: "ssh_brute_force",
        expects: &[builtin("SSH Brute Force", "source.ip")],
        build: build_ssh_brute_force,
    },
    ScenarioDef {
        name: "sudo_failures",
        expects: &[builtin(
            "Repeated Sudo Authentication Failures",
            "user.name",
        )],
        build: build_sudo_failures,
    },
    ScenarioDef {
        name: "su_failure",
        expects: &[builtin("Failed Su To Root", "")],
        build: build_su_failure,
    },
    ScenarioDef {
        name: "password_spraying",
        // Ten distinct users within five minutes are also ten failures
        // from one source: the built-in brute-force correlation fires on
        // the same event, and a consumer would rightly see both.
        expects: &[
            Expect {
                rule: RULE_PASSWORD_SPRAYING,
                group_field: "source.ip",
                source: RuleSource::ScenarioFile,
                needs_fields: &["source.ip", "user.name"],
            },
            builtin("SSH Brute Force", "source.ip"),
        ],
        build: build_password_spraying,
    },
    ScenarioDef {
        name: "port_scan",
        expects: &[Expect {
            rule: RULE_PORT_SCAN,
            group_field: "SRC",
            source: RuleSource::ScenarioFile,
            needs_fields: &["IN", "SRC", "DST", "DPT"],
        }],
        build: build_port_scan,
    },
    ScenarioDef {
        name: "lateral_movement",
        expects: &[Expect {
            rule: RULE_LATERAL_MOVEMENT,
            group_field: "user.name",
            source: RuleSource::ScenarioFile,
            needs_fields: &["user.name"],
        }],
        build: build_lateral_movement,
    },
    ScenarioDef {
        name: "host_silent",
        expects: &[Expect {
            rule: RULE_HOST_SILENT,
            group_field: "host.name",
            source: RuleSource::ScenarioFile,
            needs_fields: &["host.name", "process.name"],
        }],
        build: build_host_silent,
    },
    ScenarioDef {
        name: "new_network",
        expects: &[Expect {
            rule: RULE_NEW_NETWORK,
            group_field: "user.name",
            source: RuleSource::ScenarioFile,
            needs_fields: &["user.name", "source.ip"],
        }],
        build: build_new_network,
    },
    ScenarioDef {
        name: "rare_template",
        expects: &[Expect {
            rule: RULE_RARE_TEMPLATE,
            group_field: "host.name",
            source: RuleSource::ScenarioFile,
            needs_fields: &["host.name", "process.name"],
        }],
        build: build_rare_template,
    },
];

/// Looks a scenario up by name.
pub fn scenario(name: &str) -> Option<&'static ScenarioDef> {
    SCENARIOS.iter().find(|s| s.name == name)
}

fn scenario_line(rng: &mut Rng, host: String, app: &'static str, pri: u8, msg: String) -> LineSpec {
    LineSpec {
        header: if rng.chance(70) {
            Header::Rfc3164
        } else {
            Header::Rfc5424
        },
        pri,
        host,
        app,
        pid: Some(rng.range(300, 65_000) as u32),
        msgid: "-",
        sd: "-".to_string(),
        msg,
    }
}

/// Ten to fourteen failed passwords from one attacker address against one
/// server, 0.5 to 3 seconds apart; the tenth completes the alert.
fn build_ssh_brute_force(rng: &mut Rng, ents: &Entities, instance: u32) -> Instance {
    let ip = ents.attacker_ip(instance);
    let host = ents.host(instance);
    let failures = rng.range(10, 14) as usize;
    let mut offset_ns = 0;
    let steps = (0..failures)
        .map(|_| {
            offset_ns += rng.range(500, 3_000) as i64 * 1_000_000;
            let user = *rng.pick(&["root", "admin", "ubuntu", "postgres", "git", "oracle"]);
            let msg = format!(
                "Failed password for {user} from {ip} port {} ssh2",
                rng.range(32_768, 60_999)
            );
            Step {
                offset_ns,
                line: scenario_line(rng, host.clone(), "sshd", 38, msg),
            }
        })
        .collect();
    Instance {
        group_value: ip,
        steps,
        completing_step: 9,
    }
}

/// Three pam_unix sudo authentication failures by one user, then sudo's own
/// summary line; the third pam_unix line completes the alert and the summary
/// opens a fresh window that stays below threshold.
fn build_sudo_failures(rng: &mut Rng, ents: &Entities, instance: u32) -> Instance {
    let user = ents.scenario_user(instance);
    let uid = 5000 + instance;
    let host = ents.host(instance.wrapping_mul(7));
    let tty = rng.below(8);
    let mut offset_ns = 0;
    let mut steps: Vec<Step> = (0..3)
        .map(|_| {
            offset_ns += rng.range(2_000, 10_000) as i64 * 1_000_000;
            let msg = format!(
                "pam_unix(sudo:auth): authentication failure; logname={user} uid={uid} euid=0 tty=/dev/pts/{tty} ruser={user} rhost=  user={user}"
            );
            Step {
                offset_ns,
                line: scenario_line(rng, host.clone(), "sudo", 85, msg),
            }
        })
        .collect();
    let msg = format!(
        "{user} : 3 incorrect password attempts ; TTY=pts/{tty} ; PWD=/home/{user} ; USER=root ; COMMAND=/bin/ls /root"
    );
    steps.push(Step {
        offset_ns: offset_ns + 1_000_000,
        line: scenario_line(rng, host, "sudo", 85, msg),
    });
    Instance {
        group_value: user,
        steps,
        completing_step: 2,
    }
}

/// One failed `su` to root: a single-event rule, so the only step completes.
fn build_su_failure(rng: &mut Rng, ents: &Entities, instance: u32) -> Instance {
    let user = ents.scenario_user(instance);
    let host = ents.host(instance.wrapping_mul(3));
    let msg = format!("FAILED su for root by {user}");
    Instance {
        group_value: user,
        steps: vec![Step {
            offset_ns: 0,
            line: scenario_line(rng, host, "su", 86, msg),
        }],
        completing_step: 0,
    }
}

/// Account names a sprayer tries: common service and default accounts,
/// none of them the background's or another scenario's users.
const SPRAY_USERS: [&str; 16] = [
    "admin", "test", "guest", "info", "user", "support", "backup", "ftp", "deploy", "operator",
    "www", "mysql", "jenkins", "ansible", "pi", "student",
];

/// Draws `n` distinct items of `pool` (n at most its length), in a random
/// order: a partial Fisher-Yates shuffle of the indexes.
fn distinct<T: Copy>(rng: &mut Rng, pool: &[T], n: usize) -> Vec<T> {
    let mut order: Vec<usize> = (0..pool.len()).collect();
    let n = n.min(pool.len());
    for i in 0..n {
        let j = i + rng.below((pool.len() - i) as u64) as usize;
        order.swap(i, j);
    }
    order[..n].iter().map(|&i| pool[i]).collect()
}

/// One attacker address tries one password against ten to fourteen distinct
/// accounts on one server, 2 to 15 seconds apart (at most 210 s, inside the
/// 5-minute window); the tenth distinct account completes the spraying
/// alert, and being the tenth failure it also completes the built-in
/// brute-force alert.
fn build_password_spraying(rng: &mut Rng, ents: &Entities, instance: u32) -> Instance {
    let ip = ents.attacker_ip(instance);
    let host = ents.host(instance.wrapping_mul(5));
    let tries = rng.range(10, 14) as usize;
    let users = distinct(rng, &SPRAY_USERS, tries);
    let mut offset_ns = 0;
    let steps = users
        .iter()
        .map(|user| {
            offset_ns += rng.range(2_000, 15_000) as i64 * 1_000_000;
            let msg = format!(
                "Failed password for {user} from {ip} port {} ssh2",
                rng.range(32_768, 60_999)
            );
            Step {
                offset_ns,
                line: scenario_line(rng, host.clone(), "sshd", 38, msg),
            }
        })
        .collect();
    Instance {
        group_value: ip,
        steps,
        completing_step: 9,
    }
}

/// Ports a scanner probes: well-known services first, as nmap's top ports.
const SCAN_PORTS: [u16; 32] = [
    21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 199, 443, 445, 587, 993, 995, 1025, 1433,
    1723, 2049, 3306, 3389, 5060, 5432, 5900, 6379, 8000, 8080, 8443, 9200, 27017,
];

/// One attacker address sends SYNs to twenty to thirty distinct ports of one
/// internal host, 50 to 400 ms apart (at most 12 s, inside the one-minute
/// window), each logged by the host's netfilter rules; the twentieth
/// distinct port completes the alert.
fn build_port_scan(rng: &mut Rng, ents: &Entities, instance: u32) -> Instance {
    let src = ents.attacker_ip(instance);
    let target = instance.wrapping_mul(11) % ents.count;
    let dst = ents.client_ip(target);
    let host = ents.host(target);
    let probes = rng.range(20, 30) as usize;
    let ports = distinct(rng, &SCAN_PORTS, probes);
    let spt = rng.range(33_000, 60_000);
    let mut offset_ns = 0;
    let steps = ports
        .iter()
        .map(|dpt| {
            offset_ns += rng.range(50, 400) as i64 * 1_000_000;
            let uptime_us = 86_400_000_000 + offset_ns / 1_000;
            let msg = format!(
                "[{}.{:06}] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={src} DST={dst} LEN=44 TOS=0x00 PREC=0x00 TTL={} ID={} PROTO=TCP SPT={spt} DPT={dpt} WINDOW=1024 RES=0x00 SYN URGP=0",
                uptime_us / 1_000_000,
                uptime_us % 1_000_000,
                rng.range(37, 58),
                rng.below(65_536),
            );
            let mut line = scenario_line(rng, host.clone(), "kernel", 4, msg);
            line.pid = None;
            Step { offset_ns, line }
        })
        .collect();
    Instance {
        group_value: src,
        steps,
        completing_step: 19,
    }
}

/// A user's password is used from outside the internal network on a
/// bastion (host A); the session opens, the same user hops to an internal
/// host B with a key from A's address, and runs a root shell there through
/// sudo. Steps are seconds to a minute apart (at most about 2.5 minutes,
/// inside the 10-minute window); the sudo completes the alert.
fn build_lateral_movement(rng: &mut Rng, ents: &Entities, instance: u32) -> Instance {
    let user = ents.scenario_user(instance);
    let uid = 5000 + instance;
    let outside = ents.attacker_ip(instance);
    let a = instance.wrapping_mul(13) % ents.count;
    let b = (a + 1 + rng.below(u64::from(ents.count.max(2) - 1)) as u32) % ents.count.max(2);
    let (host_a, host_b) = (ents.host(a), ents.host(b));
    let a_ip = ents.client_ip(a);
    let plan: [(u64, u64, &str, &'static str, u8, String); 4] = [
        (
            0,
            1,
            &host_a,
            "sshd",
            38,
            format!(
                "Accepted password for {user} from {outside} port {} ssh2",
                rng.range(32_768, 60_999)
            ),
        ),
        (
            50,
            500,
            &host_a,
            "sshd",
            86,
            format!("pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)"),
        ),
        (
            10_000,
            60_000,
            &host_b,
            "sshd",
            38,
            format!(
                "Accepted publickey for {user} from {a_ip} port {} ssh2: ED25519 SHA256:{:016x}",
                rng.range(32_768, 60_999),
                rng.next_u64()
            ),
        ),
        (
            5_000,
            60_000,
            &host_b,
            "sudo",
            85,
            format!(
                "{user} : TTY=pts/{} ; PWD=/home/{user} ; USER=root ; COMMAND=/bin/bash",
                rng.below(8)
            ),
        ),
    ];
    let mut offset_ns = 0;
    let steps = plan
        .into_iter()
        .map(|(lo_ms, hi_ms, host, app, pri, msg)| {
            offset_ns += rng.range(lo_ms, hi_ms) as i64 * 1_000_000;
            Step {
                offset_ns,
                line: scenario_line(rng, host.to_string(), app, pri, msg),
            }
        })
        .collect();
    Instance {
        group_value: user,
        steps,
        completing_step: 3,
    }
}

/// How long an anomaly scenario's entity behaves normally before the
/// anomaly: longer than the rules' ten-minute (or ten-bucket) learning
/// periods plus one partial bucket.
pub const ANOMALY_STEADY_NS: i64 = 13 * 60 * NS_PER_S;
/// How long a silent host stays silent: four one-minute buckets, so at
/// least three close empty whatever the bucket alignment.
pub const SILENCE_NS: i64 = 4 * 60 * NS_PER_S;

/// One orders-api access line from a scenario host, in the background's
/// RFC 5424 form.
fn orders_api_line(
    rng: &mut Rng,
    host: &str,
    pid: u32,
    msgid: &'static str,
    msg: String,
) -> LineSpec {
    LineSpec {
        header: Header::Rfc5424,
        pri: 134,
        host: host.to_string(),
        app: "orders-api",
        pid: Some(pid),
        msgid,
        sd: format!(
            "[req@32473 id=\"{:016x}\"][origin software=\"orders-api\" swVersion=\"2.14.1\"]",
            rng.next_u64()
        ),
        msg,
    }
}

/// A dedicated orders-api host (`shop-NNNN`, a name the background never
/// uses) serves about one request every two seconds (1.5 to 2.5 s apart,
/// about 30 lines a minute) for [`ANOMALY_STEADY_NS`], goes silent for
/// [`SILENCE_NS`], then comes back with a restart line. The restart line is
/// the completing step: it is the host's next event, which closes the
/// silent buckets in the appliance when event time runs ahead of the wall
/// clock (the harness default). `shardwatch replay` closes them earlier,
/// on the event time of other hosts' lines.
fn build_host_silent(rng: &mut Rng, _ents: &Entities, instance: u32) -> Instance {
    let host = format!("shop-{instance:04}");
    let pid = rng.range(300, 65_000) as u32;
    let mut offset_ns = 0;
    let mut steps = Vec::new();
    while offset_ns < ANOMALY_STEADY_NS {
        offset_ns += rng.range(1_500, 2_500) as i64 * 1_000_000;
        let (method, path) = *rng.pick(&[
            ("GET", "/api/v1/orders"),
            ("POST", "/api/v1/orders"),
            ("GET", "/api/v1/health"),
        ]);
        let status = *rng.pick(&[200, 200, 201, 204]);
        let msg = format!(
            "{method} {path} status={status} duration_ms={} user=checkout",
            rng.range(1, 300)
        );
        steps.push(Step {
            offset_ns,
            line: orders_api_line(rng, &host, pid, "ACCESS", msg),
        });
    }
    offset_ns += SILENCE_NS;
    let msg = "orders-api 2.14.1 starting: listening on 0.0.0.0:8080".to_string();
    let restarted = rng.range(300, 65_000) as u32;
    steps.push(Step {
        offset_ns,
        line: orders_api_line(rng, &host, restarted, "START", msg),
    });
    Instance {
        group_value: host,
        completing_step: steps.len() - 1,
        steps,
    }
}

/// A scenario user logs in over SSH every 40 to 100 seconds from one
/// internal /24 of their own (10.64.0.0/10, never the background's
/// 10.0.0.0/16) for [`ANOMALY_STEADY_NS`], then 30 to 90 seconds later
/// logs in with a password from an outside address: the new network
/// completes the alert, past the rule's ten-minute learning period.
fn build_new_network(rng: &mut Rng, ents: &Entities, instance: u32) -> Instance {
    let user = ents.scenario_user(instance);
    let home = format!("10.{}.{}", 64 + ((instance >> 8) & 63), instance & 255);
    let host = ents.host(instance.wrapping_mul(17) % ents.count);
    let mut offset_ns = 0;
    let mut steps = Vec::new();
    while offset_ns < ANOMALY_STEADY_NS {
        let msg = format!(
            "Accepted publickey for {user} from {home}.{} port {} ssh2: ED25519 SHA256:{:016x}",
            rng.range(2, 250),
            rng.range(32_768, 60_999),
            rng.next_u64()
        );
        steps.push(Step {
            offset_ns,
            line: scenario_line(rng, host.clone(), "sshd", 38, msg),
        });
        offset_ns += rng.range(40_000, 100_000) as i64 * 1_000_000;
    }
    offset_ns += rng.range(30_000, 90_000) as i64 * 1_000_000;
    let msg = format!(
        "Accepted password for {user} from {} port {} ssh2",
        ents.attacker_ip(instance),
        rng.range(32_768, 60_999)
    );
    steps.push(Step {
        offset_ns,
        line: scenario_line(rng, host, "sshd", 38, msg),
    });
    Instance {
        group_value: user,
        completing_step: steps.len() - 1,
        steps,
    }
}

/// A dedicated billing-worker host (`billing-NNNN`, never in the
/// background) logs its three usual message shapes, one every 3 to 6
/// seconds, for [`ANOMALY_STEADY_NS`] (the first three lines are one of
/// each, so the host learns all of them at once), then a message shape it
/// never logged before: a circuit breaker opening. That line completes
/// the alert; two usual lines follow it.
fn build_rare_template(rng: &mut Rng, _ents: &Entities, instance: u32) -> Instance {
    let host = format!("billing-{instance:04}");
    let mut offset_ns = 0;
    let mut steps = Vec::new();
    let usual = |rng: &mut Rng, n: usize| match n % 3 {
        0 => format!(
            "invoice batch {} processed: {} invoices in {} ms",
            rng.range(10_000, 99_999),
            rng.range(1, 200),
            rng.range(5, 900)
        ),
        1 => format!(
            "payment {} captured amount={}.{:02} currency=EUR",
            rng.range(100_000, 999_999),
            rng.range(1, 500),
            rng.below(100)
        ),
        _ => format!(
            "heartbeat queue_depth={} workers={}",
            rng.below(50),
            rng.range(4, 8)
        ),
    };
    let mut n = 0;
    while offset_ns < ANOMALY_STEADY_NS {
        offset_ns += rng.range(3_000, 6_000) as i64 * 1_000_000;
        let shape = if n < 3 { n } else { rng.below(3) as usize };
        let msg = usual(rng, shape);
        n += 1;
        steps.push(Step {
            offset_ns,
            line: scenario_line(rng, host.clone(), "billing-worker", 30, msg),
        });
    }
    offset_ns += rng.range(3_000, 6_000) as i64 * 1_000_000;
    let msg = format!(
        "ledger client: circuit breaker opened after {} consecutive failures to ledger-db:5432 (last error: connection reset by peer)",
        rng.range(5, 9)
    );
    steps.push(Step {
        offset_ns,
        line: scenario_line(rng, host.clone(), "billing-worker", 27, msg),
    });
    let completing_step = steps.len() - 1;
    for shape in 0..2 {
        offset_ns += rng.range(3_000, 6_000) as i64 * 1_000_000;
        let msg = usual(rng, shape);
        steps.push(Step {
            offset_ns,
            line: scenario_line(rng, host.clone(), "billing-worker", 30, msg),
        });
    }
    Instance {
        group_value: host,
        steps,
        completing_step,
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub events: u64,
    pub entities: u32,
    pub seed: u64,
    pub start_ns: i64,
    /// Background events per second of event time; the corpus spans
    /// `events / event_rate` seconds of event time.
    pub event_rate: f64,
    /// Scenario rows and how many instances of each.
    pub scenarios: Vec<(&'static ScenarioDef, u32)>,
}

/// Fewest instances per scenario row when no count is given.
pub const SCENARIO_COUNT_MIN: u32 = 3;
/// Background events per scenario instance when no count is given: enough
/// instances in a long run for latency percentiles to mean something,
/// while scenario traffic stays a small share of the corpus.
pub const EVENTS_PER_SCENARIO_INSTANCE: u64 = 10_000;

/// Instances per row when none is given: one per
/// [`EVENTS_PER_SCENARIO_INSTANCE`] events, at least [`SCENARIO_COUNT_MIN`].
pub fn default_count(events: u64) -> u32 {
    let n = (events / EVENTS_PER_SCENARIO_INSTANCE).min(u64::from(SCENARIO_INSTANCES_MAX) / 16);
    (n as u32).max(SCENARIO_COUNT_MIN)
}

/// The default scenario mix for a small corpus: every row, three instances.
#[cfg(test)]
pub fn default_scenarios() -> Vec<(&'static ScenarioDef, u32)> {
    SCENARIOS.iter().map(|s| (s, SCENARIO_COUNT_MIN)).collect()
}

/// Parses `name[=count],...` (or `all`, `none`) into scenario rows; a row
/// without a count gets `default`.
pub fn parse_scenarios(
    text: &str,
    default: u32,
) -> anyhow::Result<Vec<(&'static ScenarioDef, u32)>> {
    let text = text.trim();
    if text.is_empty() || text == "none" {
        return Ok(Vec::new());
    }
    if text == "all" {
        return Ok(SCENARIOS.iter().map(|s| (s, default)).collect());
    }
    let mut out = Vec::new();
    for item in text.split(',') {
        let (name, count) = match item.split_once('=') {
            Some((name, count)) => (
                name.trim(),
                count
                    .trim()
                    .parse::<u32>()
                    .with_context(|| format!("bad scenario count in {item:?}"))?,
            ),
            None => (item.trim(), default),
        };
        let Some(def) = scenario(name) else {
            let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            bail!("unknown scenario {name:?}; known: {}", known.join(", "));
        };
        out.push((def, count));
    }
    Ok(out)
}

/// One expected alert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthEntry {
    pub scenario: String,
    pub instance: u32,
    pub rule: String,
    pub group_field: String,
    pub group_value: String,
    /// Index (0-based line number) of the event that completes the pattern.
    pub completing_index: u64,
    /// Event time of that line, UTC nanoseconds.
    pub completing_time_ns: i64,
    /// The completing line's MSG part, to match single-event alerts by
    /// their sample.
    pub completing_message: String,
    pub first_index: u64,
}

/// Corpus parameters recorded beside the truth.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CorpusMeta {
    pub format_version: u32,
    pub seed: u64,
    pub events: u64,
    pub entities: u32,
    pub event_rate: f64,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// The ground truth file (`FILE.truth.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Truth {
    pub corpus: CorpusMeta,
    pub expected: Vec<TruthEntry>,
}

/// A corpus in memory: lines back to back (no separators) with their
/// starts, their event times and the truth.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub data: Vec<u8>,
    /// `starts[i]..starts[i + 1]` is line `i`; one longer than the line count.
    pub starts: Vec<usize>,
    pub times_ns: Vec<i64>,
    pub truth: Truth,
}

impl Corpus {
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn line(&self, i: usize) -> &[u8] {
        &self.data[self.starts[i]..self.starts[i + 1]]
    }

    fn push(&mut self, line: &[u8], time_ns: i64) {
        self.data.extend_from_slice(line);
        self.starts.push(self.data.len());
        self.times_ns.push(time_ns);
    }

    /// Writes the corpus (LF-terminated lines) and its truth beside it.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity(self.data.len() + self.len());
        for i in 0..self.len() {
            bytes.extend_from_slice(self.line(i));
            bytes.push(b'\n');
        }
        std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
        let truth_path = truth_path(path);
        let json = serde_json::to_vec_pretty(&self.truth)?;
        std::fs::write(&truth_path, json)
            .with_context(|| format!("cannot write {}", truth_path.display()))?;
        Ok(())
    }

    /// Loads a corpus and its truth file. Each line's event time is read from
    /// its header; lines without a readable one take the previous line's.
    pub fn load(path: &Path) -> anyhow::Result<Corpus> {
        let truth_path = truth_path(path);
        let truth: Truth = serde_json::from_slice(
            &std::fs::read(&truth_path)
                .with_context(|| format!("cannot read ground truth {}", truth_path.display()))?,
        )
        .with_context(|| format!("bad ground truth in {}", truth_path.display()))?;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut corpus = Corpus {
            data: Vec::with_capacity(bytes.len()),
            starts: vec![0],
            times_ns: Vec::new(),
            truth,
        };
        let mut last_ns = corpus.truth.corpus.start_ns;
        for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line.len() > LINE_BYTES_MAX {
                bail!(
                    "{}:{}: line longer than {LINE_BYTES_MAX} bytes",
                    path.display(),
                    number + 1
                );
            }
            if corpus.len() as u64 >= EVENTS_MAX {
                bail!("{} has more than {EVENTS_MAX} lines", path.display());
            }
            if let Some((_, ns)) = header_time(line, last_ns) {
                last_ns = ns;
            }
            corpus.push(line, last_ns);
        }
        Ok(corpus)
    }

    /// Moves every header timestamp by `shift_ns` rounded down to whole
    /// seconds, keeping the spacing of events, so a recorded corpus can be
    /// sent as if it happened now (RFC 3164 stamps carry no year, which the
    /// appliance infers from its clock, and it flags stamps a day off as
    /// skewed). Whole seconds because RFC 3164 stamps have no
    /// fraction: a fractional shift moved a line's true time (and its truth
    /// entry) past a second its rewritten stamp did not reach, so a
    /// scheduled search ending on that second searched the line but was not
    /// credited with its alert (the batch comparison's recall 0.905 in one
    /// of each ~15 starts). Lines whose header is not one the generator
    /// writes are left as they are; returns how many were.
    pub fn retime(&mut self, shift_ns: i64) -> u64 {
        let shift_ns = shift_ns.div_euclid(NS_PER_S) * NS_PER_S;
        let mut skipped = 0;
        let mut data = Vec::with_capacity(self.data.len() + 64);
        let mut starts = Vec::with_capacity(self.starts.len());
        starts.push(0);
        let mut previous_ns = self.truth.corpus.start_ns;
        for i in 0..self.len() {
            let line = self.line(i);
            match rewrite_header_time(line, shift_ns, previous_ns) {
                Some((rewritten, ns)) => {
                    previous_ns = ns;
                    data.extend_from_slice(&rewritten);
                }
                None => {
                    skipped += 1;
                    data.extend_from_slice(line);
                }
            }
            starts.push(data.len());
            self.times_ns[i] = self.times_ns[i].saturating_add(shift_ns);
        }
        self.data = data;
        self.starts = starts;
        let meta = &mut self.truth.corpus;
        meta.start_ns = meta.start_ns.saturating_add(shift_ns);
        meta.end_ns = meta.end_ns.saturating_add(shift_ns);
        for entry in &mut self.truth.expected {
            entry.completing_time_ns = entry.completing_time_ns.saturating_add(shift_ns);
        }
        skipped
    }
}

/// `FILE.truth.json` beside `FILE`.
pub fn truth_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".truth.json");
    PathBuf::from(name)
}

fn pri_end(line: &[u8]) -> Option<usize> {
    if line.first() != Some(&b'<') {
        return None;
    }
    let close = line.iter().take(5).position(|&b| b == b'>')?;
    if close < 2 || !line[1..close].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(close + 1)
}

/// Finds the header timestamp of a generated line: its byte range and UTC
/// nanoseconds. RFC 3164 stamps have no year; it is taken from `near_ns`,
/// choosing the year that puts the stamp closest to it.
pub fn header_time(line: &[u8], near_ns: i64) -> Option<(std::ops::Range<usize>, i64)> {
    let at = pri_end(line)?;
    let rest = &line[at..];
    if rest.starts_with(b"1 ") {
        let start = at + 2;
        let len = line[start..].iter().position(|&b| b == b' ')?;
        let text = std::str::from_utf8(&line[start..start + len]).ok()?;
        let ns = timefmt::parse_rfc3339(text)?;
        return Some((start..start + len, ns));
    }
    let text = std::str::from_utf8(rest.get(..15)?).ok()?;
    let year = timefmt::Civil::from_ns(near_ns).year;
    let best = [year - 1, year, year + 1]
        .into_iter()
        .filter_map(|y| timefmt::parse_rfc3164(text, y))
        .min_by_key(|ns| (ns - near_ns).unsigned_abs())?;
    Some((at..at + 15, best))
}

/// Rewrites a generated line's header timestamp, shifted by `shift_ns`, in
/// the same form. Returns the new line and its new time.
pub fn rewrite_header_time(line: &[u8], shift_ns: i64, near_ns: i64) -> Option<(Vec<u8>, i64)> {
    let (range, ns) = header_time(line, near_ns)?;
    let shifted = ns.checked_add(shift_ns)?;
    let text = if range.len() == 15 && !line[range.start..].starts_with(b"1") {
        timefmt::rfc3164(shifted)
    } else {
        timefmt::rfc3339_us(shifted)
    };
    let mut out = Vec::with_capacity(line.len() + 8);
    out.extend_from_slice(&line[..range.start]);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&line[range.end..]);
    Some((out, ns))
}

struct Pending {
    time_ns: i64,
    /// Tie-breaker that keeps the merge deterministic.
    order: u64,
    line: LineSpec,
    /// (truth entries of the instance, is completing step) for scenario
    /// events.
    truth: Option<(std::ops::Range<usize>, bool)>,
}

/// Generates a corpus. Deterministic: the same config gives the same bytes.
pub fn generate(config: &GenConfig) -> anyhow::Result<Corpus> {
    if config.events == 0 || config.events > EVENTS_MAX {
        bail!("--events must be between 1 and {EVENTS_MAX}");
    }
    if config.entities == 0 || config.entities > ENTITIES_MAX {
        bail!("--entities must be between 1 and {ENTITIES_MAX}");
    }
    if !(config.event_rate.is_finite() && config.event_rate > 0.0 && config.event_rate <= 1e9) {
        bail!("--event-rate must be a positive number of events per second");
    }
    let ents = Entities::new(config.entities);
    let mut rng = Rng::new(config.seed);
    let period_ns = (1e9 / config.event_rate).max(1.0) as i64;

    // Every instance is built first, so that the background's size (the
    // events left beside the scenarios) is known before any is placed.
    let mut built = Vec::new();
    let mut instance_total = 0u32;
    for (def, count) in &config.scenarios {
        for n in 0..*count {
            instance_total += 1;
            if instance_total > SCENARIO_INSTANCES_MAX {
                bail!("more than {SCENARIO_INSTANCES_MAX} scenario instances");
            }
            // Instances of one row get distinct entities; rows share the
            // numbering so two rows never reuse one user or address.
            built.push((*def, n, (def.build)(&mut rng, &ents, instance_total - 1)));
        }
    }
    let scenario_events: u64 = built.iter().map(|(_, _, i)| i.steps.len() as u64).sum();
    if scenario_events > config.events {
        bail!(
            "--events {} is smaller than the {scenario_events} scenario events",
            config.events
        );
    }
    let background_events = config.events - scenario_events;
    // The background's span at the event rate: scenarios are placed inside
    // it, so each has background around it. (Placed over the whole
    // corpus's span instead, those falling past the background's end were
    // sent back to back at the end of a run: a paced run's last 10 ms held
    // 20 times its share of detections, up to a third of its slowest 1%.)
    let span_ns = (background_events.max(1) as f64 / config.event_rate * 1e9) as i64;

    let mut pending: Vec<Pending> = Vec::new();
    let mut expected: Vec<TruthEntry> = Vec::new();
    let mut order = 0u64;
    for (def, n, mut instance) in built {
        let duration_ns = instance.steps.last().map_or(0, |s| s.offset_ns);
        // A scenario longer than half the corpus is squeezed to fit, so
        // short corpora still carry every scenario inside their span.
        if duration_ns > span_ns / 2 && duration_ns > 0 {
            let scale = (span_ns / 2) as f64 / duration_ns as f64;
            for step in &mut instance.steps {
                step.offset_ns = (step.offset_ns as f64 * scale) as i64;
            }
        }
        let duration_ns = instance.steps.last().map_or(0, |s| s.offset_ns);
        let slack_ns = (span_ns - duration_ns).max(1);
        // Keep scenarios off the first and last 5% so that they sit
        // inside the background rather than at its edges.
        let lo = slack_ns / 20;
        let hi = slack_ns - slack_ns / 20;
        let start_ns = config.start_ns + rng.range(lo as u64, hi.max(lo) as u64) as i64;
        let first_truth = expected.len();
        let Some(completing) = instance.steps.get(instance.completing_step).cloned() else {
            bail!("scenario {} built no completing step", def.name);
        };
        for expect in def.expects {
            expected.push(TruthEntry {
                scenario: def.name.to_string(),
                instance: n,
                rule: expect.rule.to_string(),
                group_field: expect.group_field.to_string(),
                group_value: instance.group_value.clone(),
                completing_index: 0,
                completing_time_ns: start_ns + completing.offset_ns,
                completing_message: completing.line.msg.clone(),
                first_index: 0,
            });
        }
        let truth = first_truth..expected.len();
        for (i, step) in instance.steps.into_iter().enumerate() {
            order += 1;
            pending.push(Pending {
                time_ns: start_ns + step.offset_ns,
                order,
                line: step.line,
                truth: Some((truth.clone(), i == instance.completing_step)),
            });
        }
    }
    let mut budgets = Budgets::default();
    for i in 0..background_events {
        let time_ns = config.start_ns + i as i64 * period_ns + rng.below(period_ns as u64) as i64;
        let mut b = Background {
            rng: &mut rng,
            ents: &ents,
            budgets: &mut budgets,
            time_ns,
        };
        let line = background_line(&mut b);
        order += 1;
        pending.push(Pending {
            time_ns,
            order,
            line,
            truth: None,
        });
    }
    pending.sort_by_key(|p| (p.time_ns, p.order));

    let mut corpus = Corpus {
        data: Vec::with_capacity(pending.len() * 160),
        starts: vec![0],
        times_ns: Vec::with_capacity(pending.len()),
        truth: Truth {
            corpus: CorpusMeta {
                format_version: TRUTH_FORMAT_VERSION,
                seed: config.seed,
                events: config.events,
                entities: config.entities,
                event_rate: config.event_rate,
                start_ns: config.start_ns,
                end_ns: pending.last().map_or(config.start_ns, |p| p.time_ns),
            },
            expected,
        },
    };
    let mut first_seen = vec![false; corpus.truth.expected.len()];
    let mut text = String::with_capacity(512);
    for (index, p) in pending.iter().enumerate() {
        text.clear();
        p.line.render(p.time_ns, &mut text);
        corpus.push(text.as_bytes(), p.time_ns);
        if let Some((entries, completing)) = &p.truth {
            for t in entries.clone() {
                let entry = &mut corpus.truth.expected[t];
                if !first_seen[t] {
                    first_seen[t] = true;
                    entry.first_index = index as u64;
                }
                if *completing {
                    entry.completing_index = index as u64;
                    debug_assert_eq!(entry.completing_time_ns, p.time_ns);
                }
            }
        }
    }
    assert_eq!(corpus.len() as u64, config.events);
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn config(events: u64, seed: u64) -> GenConfig {
        GenConfig {
            events,
            entities: 50,
            seed,
            start_ns: DEFAULT_START_NS,
            event_rate: 100.0,
            scenarios: default_scenarios(),
        }
    }

    #[test]
    fn scenarios_sit_inside_the_background_not_after_it() {
        // Scenario lines a large share of the corpus: each must still have
        // background after it (none sent back to back at a run's end).
        let mut c = config(100_000, 7);
        c.scenarios = SCENARIOS.iter().map(|s| (s, 40)).collect();
        let corpus = generate(&c).unwrap();
        let last = corpus
            .truth
            .expected
            .iter()
            .map(|t| t.completing_index)
            .max()
            .unwrap();
        // Scenarios keep off the last 5% of the background's span.
        assert!(
            last < corpus.len() as u64 * 97 / 100,
            "the last completing line is {last} of {}",
            corpus.len()
        );
    }

    #[test]
    fn same_seed_gives_same_bytes_and_other_seeds_differ() {
        let a = generate(&config(5_000, 42)).unwrap();
        let b = generate(&config(5_000, 42)).unwrap();
        let c = generate(&config(5_000, 43)).unwrap();
        assert_eq!(a.data, b.data);
        assert_eq!(a.starts, b.starts);
        assert_eq!(a.truth, b.truth);
        assert_ne!(a.data, c.data);
        let dir = std::env::temp_dir().join(format!("sw-perf-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pa, pb) = (dir.join("a.log"), dir.join("b.log"));
        a.write(&pa).unwrap();
        b.write(&pb).unwrap();
        assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        assert_eq!(
            std::fs::read(truth_path(&pa)).unwrap(),
            std::fs::read(truth_path(&pb)).unwrap()
        );
        let loaded = Corpus::load(&pa).unwrap();
        assert_eq!(loaded.data, a.data);
        assert_eq!(loaded.truth, a.truth);
        // 3164 stamps lose their fraction; everything else is exact.
        for i in 0..a.len() {
            assert!((loaded.times_ns[i] - a.times_ns[i]).abs() < NS_PER_S);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truth_points_at_the_completing_lines() {
        let corpus = generate(&config(20_000, 1)).unwrap();
        let per_instance: usize = SCENARIOS.iter().map(|s| s.expects.len()).sum();
        assert_eq!(
            corpus.truth.expected.len(),
            per_instance * SCENARIO_COUNT_MIN as usize
        );
        for entry in &corpus.truth.expected {
            let line = String::from_utf8_lossy(corpus.line(entry.completing_index as usize));
            assert!(line.ends_with(&entry.completing_message), "{line}");
            assert!(line.contains(&entry.group_value));
            assert!(entry.first_index <= entry.completing_index);
            assert_eq!(
                corpus.times_ns[entry.completing_index as usize],
                entry.completing_time_ns
            );
        }
        let times = &corpus.times_ns;
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn both_header_forms_are_generated_and_read_back() {
        let corpus = generate(&config(2_000, 9)).unwrap();
        let mut forms = [0u32; 2];
        for i in 0..corpus.len() {
            let line = corpus.line(i);
            let (_, ns) = header_time(line, corpus.times_ns[i]).expect("generated header");
            assert!((ns - corpus.times_ns[i]).abs() < NS_PER_S);
            forms[usize::from(line.contains_slice(b">1 "))] += 1;
        }
        assert!(forms[0] > 100 && forms[1] > 100, "{forms:?}");
    }

    #[test]
    fn retime_shifts_headers_and_truth_together() {
        let mut corpus = generate(&config(3_000, 5)).unwrap();
        let before = corpus.clone();
        // The fraction is dropped: the corpus moves by whole seconds.
        let shift = 86_400 * NS_PER_S;
        assert_eq!(corpus.retime(shift + 999_999_999), 0);
        for i in 0..corpus.len() {
            let (_, was) = header_time(before.line(i), before.times_ns[i]).unwrap();
            let (_, ns) = header_time(corpus.line(i), corpus.times_ns[i]).unwrap();
            assert_eq!(
                ns,
                was + shift,
                "{i}: {} -> {}",
                String::from_utf8_lossy(before.line(i)),
                String::from_utf8_lossy(corpus.line(i)),
            );
            assert_eq!(corpus.times_ns[i], before.times_ns[i] + shift);
        }
        for (entry, was) in corpus.truth.expected.iter().zip(&before.truth.expected) {
            assert_eq!(entry.completing_time_ns, was.completing_time_ns + shift);
            // The completing line's stamp is in the same second as its true
            // time, so a search ending on a whole second sees both or
            // neither.
            let line = corpus.line(entry.completing_index as usize);
            let (_, stamp) = header_time(line, entry.completing_time_ns).unwrap();
            assert_eq!(
                stamp.div_euclid(NS_PER_S),
                entry.completing_time_ns.div_euclid(NS_PER_S)
            );
            let text = String::from_utf8_lossy(line);
            assert!(text.ends_with(&entry.completing_message));
        }
    }

    #[test]
    fn bad_configs_and_scenario_lists_are_refused() {
        assert!(generate(&config(0, 1)).is_err());
        assert!(
            generate(&config(5, 1)).is_err(),
            "fewer events than scenario steps"
        );
        assert!(parse_scenarios("ssh_brute_force=x", 3).is_err());
        assert!(parse_scenarios("nope", 3).is_err());
        assert_eq!(parse_scenarios("none", 3).unwrap().len(), 0);
        assert_eq!(parse_scenarios("all", 9).unwrap()[2].1, 9);
        assert_eq!((default_count(5_000), default_count(500_000)), (3, 50));
        let rows = parse_scenarios("su_failure=7, ssh_brute_force", 3).unwrap();
        assert_eq!((rows[0].0.name, rows[0].1), ("su_failure", 7));
        assert_eq!((rows[1].0.name, rows[1].1), ("ssh_brute_force", 3));
    }

    /// An independent reading of the built-in and scenario rules over
    /// rendered lines:
    /// text patterns only, sliding windows on whole-second event time (what
    /// the appliance sees from RFC 3164 stamps). It shares no code with the
    /// generator's budgets, so a budget bug shows up here.
    fn reference_alerts(corpus: &Corpus) -> Vec<String> {
        let rules: [(&str, i64, usize); 3] = [
            ("ssh_failure", 300, 10),
            ("ssh_invalid_user", 600, 5),
            ("sudo_failure", 300, 3),
        ];
        let mut windows: HashMap<(usize, String), VecDeque<i64>> = HashMap::new();
        let mut distinct_windows: HashMap<(usize, String), VecDeque<(i64, String)>> =
            HashMap::new();
        let mut outside_logins: HashMap<String, i64> = HashMap::new();
        let mut alerts = Vec::new();
        for i in 0..corpus.len() {
            let line = String::from_utf8_lossy(corpus.line(i)).to_string();
            let t = corpus.times_ns[i] / NS_PER_S;
            let lower = line.to_ascii_lowercase();
            let word_after = |key: &str| -> Option<String> {
                let at = line.find(key)? + key.len();
                Some(line[at..].split([' ', ';']).next()?.to_string())
            };
            let mut hits: Vec<(usize, String)> = Vec::new();
            if line.contains("Failed password for ") || line.contains("Failed publickey for ") {
                hits.push((0, word_after(" from ").unwrap_or_default()));
            }
            if lower.contains("invalid user") {
                hits.push((1, word_after(" from ").unwrap_or_default()));
            }
            if line.contains("pam_unix(sudo:auth): authentication failure") {
                hits.push((2, word_after(" user=").unwrap_or_default()));
            }
            if line.contains("incorrect password attempt") {
                let before = &line[..line.find(" : ").unwrap_or(0)];
                hits.push((2, before.rsplit(' ').next().unwrap_or("").to_string()));
            }
            if line.contains("FAILED su for root") {
                alerts.push(format!("su_failure at {i}"));
            }
            // Scenario-file rules: spraying (distinct users per source in
            // 5 min), port scan (distinct ports per source and destination
            // in 1 min), lateral movement (outside login, then sudo to root
            // by the same user within 10 min).
            if line.contains("Failed password for ") || line.contains("Failed publickey for ") {
                let ip = word_after(" from ").unwrap_or_default();
                let user = word_after(" for ").unwrap_or_default();
                let seen = distinct_windows.entry((0, ip.clone())).or_default();
                seen.push_back((t, user));
                while seen.front().is_some_and(|(old, _)| *old < t - 300) {
                    seen.pop_front();
                }
                let users: HashSet<&String> = seen.iter().map(|(_, u)| u).collect();
                if users.len() >= 10 {
                    alerts.push(format!("password_spraying for {ip} at line {i}"));
                    seen.clear();
                }
            }
            if line.contains(" IN=") && line.contains(" DPT=") {
                let key = format!(
                    "{}>{}",
                    word_after(" SRC=").unwrap_or_default(),
                    word_after(" DST=").unwrap_or_default()
                );
                let port = word_after(" DPT=").unwrap_or_default();
                let seen = distinct_windows.entry((1, key.clone())).or_default();
                seen.push_back((t, port));
                while seen.front().is_some_and(|(old, _)| *old < t - 60) {
                    seen.pop_front();
                }
                let ports: HashSet<&String> = seen.iter().map(|(_, p)| p).collect();
                if ports.len() >= 20 {
                    alerts.push(format!("port_scan for {key} at line {i}"));
                    seen.clear();
                }
            }
            if line.contains("sshd") && line.contains("Accepted ") {
                let ip = word_after(" from ").unwrap_or_default();
                if !ip.starts_with("10.") {
                    outside_logins.insert(word_after(" for ").unwrap_or_default(), t);
                }
            }
            if line.contains(" ; USER=root ; COMMAND=") && !line.contains("incorrect password") {
                let before = &line[..line.find(" : ").unwrap_or(0)];
                let user = before.rsplit(' ').next().unwrap_or("").to_string();
                if outside_logins
                    .get(&user)
                    .is_some_and(|&at| at <= t && t - at <= 600)
                {
                    outside_logins.remove(&user);
                    alerts.push(format!("lateral_movement for {user} at line {i}"));
                }
            }
            for (rule, key) in hits {
                let (name, span_s, threshold) = rules[rule];
                let window = windows.entry((rule, key.clone())).or_default();
                window.push_back(t);
                while window.front().is_some_and(|&old| old < t - span_s) {
                    window.pop_front();
                }
                if window.len() >= threshold {
                    alerts.push(format!("{name} for {key} at line {i}"));
                    window.clear();
                }
            }
        }
        alerts
    }

    #[test]
    fn background_alone_reaches_no_rule_threshold() {
        // Dense and sparse timelines, few and many entities: the budgets
        // must hold when every entity is hot and when the corpus is long.
        for (events, entities, rate) in [(60_000, 3, 50.0), (60_000, 40, 2_000.0), (30_000, 1, 5.0)]
        {
            let mut c = config(events, 77);
            c.entities = entities;
            c.event_rate = rate;
            c.scenarios = Vec::new();
            let corpus = generate(&c).unwrap();
            let alerts = reference_alerts(&corpus);
            assert!(
                alerts.is_empty(),
                "background fired: {:?}",
                &alerts[..alerts.len().min(5)]
            );
            // The background does carry rule inputs, just below threshold.
            let text = String::from_utf8_lossy(&corpus.data);
            assert!(text.contains("Failed password for "));
            assert!(text.contains("pam_unix(sudo:auth): authentication failure"));
        }
    }

    /// The rows whose rules are anomaly detectors (`perf/rules/anomaly.yml`).
    /// They need tens of minutes of event time, which these short corpora
    /// squeeze out of shape, and the reference detector does not model
    /// them; `anomaly_scenarios_have_their_shape` and
    /// `tests/scenarios_replay.rs` cover them.
    const ANOMALY_ROWS: [&str; 3] = ["host_silent", "new_network", "rare_template"];

    #[test]
    fn reference_detector_sees_exactly_the_injected_scenarios() {
        for (seed, entities) in [(3, 50), (4, 1), (5, 3)] {
            let mut c = config(20_000, seed);
            c.entities = entities;
            c.scenarios
                .retain(|(def, _)| !ANOMALY_ROWS.contains(&def.name));
            let corpus = generate(&c).unwrap();
            let alerts = reference_alerts(&corpus);
            assert_eq!(alerts.len(), corpus.truth.expected.len(), "{alerts:?}");
            // Every truth entry's completing line is where the reference
            // detector fired for it.
            for e in &corpus.truth.expected {
                let at = format!("line {}", e.completing_index);
                let single = format!("at {}", e.completing_index);
                assert!(
                    alerts
                        .iter()
                        .any(|a| a.ends_with(&at) || a.ends_with(&single)),
                    "{} {} {}: {alerts:?}",
                    e.scenario,
                    e.rule,
                    e.completing_index
                );
            }
        }
    }

    #[test]
    fn new_scenarios_have_their_shape() {
        let mut rng = Rng::new(11);
        let ents = Entities::new(40);
        for i in 0..50 {
            let spray = build_password_spraying(&mut rng, &ents, i);
            let users: HashSet<String> = spray
                .steps
                .iter()
                .map(|s| s.line.msg.split(' ').nth(3).unwrap_or("").to_string())
                .collect();
            assert_eq!(users.len(), spray.steps.len());
            assert!(spray.steps.last().unwrap().offset_ns < 300 * NS_PER_S);
            let scan = build_port_scan(&mut rng, &ents, i);
            assert!(scan.steps.len() >= 20);
            assert!(scan.steps.last().unwrap().offset_ns < 60 * NS_PER_S);
            let lateral = build_lateral_movement(&mut rng, &ents, i);
            assert_ne!(lateral.steps[0].line.host, lateral.steps[3].line.host);
            assert!(lateral.steps[3].offset_ns < 600 * NS_PER_S);
        }
    }

    #[test]
    fn anomaly_scenarios_have_their_shape() {
        let mut rng = Rng::new(12);
        let ents = Entities::new(40);
        for i in 0..20 {
            // Host going silent: steady (at least 25 lines in every whole
            // minute), then a gap of SILENCE_NS before the restart line.
            let silent = build_host_silent(&mut rng, &ents, i);
            let steps = &silent.steps;
            assert_eq!(silent.completing_step, steps.len() - 1);
            let last_steady = steps[steps.len() - 2].offset_ns;
            assert!(last_steady >= ANOMALY_STEADY_NS);
            assert_eq!(steps[steps.len() - 1].offset_ns - last_steady, SILENCE_NS);
            for minute in 0..(ANOMALY_STEADY_NS / (60 * NS_PER_S)) {
                let (lo, hi) = (minute * 60 * NS_PER_S, (minute + 1) * 60 * NS_PER_S);
                let n = steps
                    .iter()
                    .filter(|s| s.offset_ns >= lo && s.offset_ns < hi)
                    .count();
                assert!(n >= 25, "minute {minute}: {n}");
            }
            assert!(steps.iter().all(|s| s.line.host == silent.group_value));
            // New network: one home /24 until past the ten-minute warm-up,
            // then an outside address.
            let login = build_new_network(&mut rng, &ents, i);
            let nets: HashSet<String> = login.steps[..login.completing_step]
                .iter()
                .map(|s| {
                    let ip = s.line.msg.split(' ').nth(5).unwrap_or("");
                    ip.rsplit_once('.').map_or("", |(net, _)| net).to_string()
                })
                .collect();
            assert_eq!(nets.len(), 1, "{nets:?}");
            let last = &login.steps[login.completing_step];
            assert!(last.offset_ns > 10 * 60 * NS_PER_S);
            assert!(last.line.msg.contains(&ents.attacker_ip(i)));
            // Rare template: the three usual shapes first, the new one
            // after the warm-up.
            let rare = build_rare_template(&mut rng, &ents, i);
            let first: Vec<&str> = rare.steps[..3]
                .iter()
                .map(|s| s.line.msg.split(' ').next().unwrap_or(""))
                .collect();
            assert_eq!(first, ["invoice", "payment", "heartbeat"]);
            let new = &rare.steps[rare.completing_step];
            assert!(new.offset_ns > 10 * 60 * NS_PER_S);
            assert!(new.line.msg.starts_with("ledger client: circuit breaker"));
        }
    }

    #[test]
    fn background_stays_clear_of_the_anomaly_rules() {
        // The anomaly rules read orders-api lines per host (at most a few
        // a minute per background host), billing-worker lines (none in
        // the background) and accepted logins per user, whose /24 is
        // 10.0.1.0 for every background client while entities <= 256.
        let mut c = config(60_000, 21);
        c.entities = 200;
        c.scenarios = Vec::new();
        let corpus = generate(&c).unwrap();
        let text = String::from_utf8_lossy(&corpus.data);
        assert!(!text.contains("billing-worker") && !text.contains(" shop-"));
        let mut per_host_minute: HashMap<(String, i64), u32> = HashMap::new();
        for i in 0..corpus.len() {
            let line = String::from_utf8_lossy(corpus.line(i));
            if let Some(at) = line.find(" from ") {
                if line.contains("Accepted ") {
                    assert!(line[at..].starts_with(" from 10.0.1."), "{line}");
                }
            }
            if line.contains(" orders-api ") {
                let host = line.split(' ').nth(2).unwrap_or("").to_string();
                let minute = corpus.times_ns[i] / (60 * NS_PER_S);
                *per_host_minute.entry((host, minute)).or_default() += 1;
            }
        }
        // A drop needs the host's mean to be 4 x 3 = 12 lines above the
        // bucket: follow each host's mean as the rule does (an exact mean
        // at first, then an EWMA with alpha 0.3) over every minute,
        // empty ones included.
        let first = corpus.times_ns[0] / (60 * NS_PER_S);
        let last = corpus.times_ns[corpus.len() - 1] / (60 * NS_PER_S);
        let hosts: HashSet<&String> = per_host_minute.keys().map(|(h, _)| h).collect();
        let mut highest: f64 = 0.0;
        for host in hosts {
            let mut mean = 0.0;
            for (n, minute) in (first..=last).enumerate() {
                let x = f64::from(
                    per_host_minute
                        .get(&(host.clone(), minute))
                        .copied()
                        .unwrap_or(0),
                );
                let weight = (1.0 / (n + 1) as f64).max(0.3);
                mean += weight * (x - mean);
                highest = highest.max(mean);
            }
        }
        assert!(highest < 12.0, "{highest}");
    }

    trait ContainsSlice {
        fn contains_slice(&self, needle: &[u8]) -> bool;
    }
    impl ContainsSlice for [u8] {
        fn contains_slice(&self, needle: &[u8]) -> bool {
            self.windows(needle.len()).any(|w| w == needle)
        }
    }
}
