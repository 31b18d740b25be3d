//! What an appliance the harness did not start says of itself: `run
//! --appliance-api` reads its `GET /api/stats` before the load and after
//! the drain, and reports what the node did with the load (lines parsed,
//! quarantined, dropped) and what that cost it (the process's CPU, each
//! core thread's time on its CPU, its resident memory). `bench` reads the
//! same from `/proc` of the node it starts; an appliance on another
//! machine (`--allow-remote`) can only be asked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Connect, read and write timeout of one request.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of one answer read (a node with many cores answers a few
/// KiB per core).
const ANSWER_BYTES_MAX: u64 = 4 << 20;

/// Where the appliance's API is, and its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeApi {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

/// `GET /api/stats`: the answer's JSON, or why not.
pub fn fetch_stats(api: &NodeApi) -> anyhow::Result<Value> {
    let mut stream = TcpStream::connect_timeout(&api.addr, TIMEOUT)
        .with_context(|| format!("cannot connect to the appliance's API at {}", api.addr))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let auth = crate::sse::bearer_header(api.token.as_deref());
    write!(
        stream,
        "GET /api/stats HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n{auth}\r\n",
        api.addr
    )?;
    let mut answer = Vec::new();
    stream
        .take(ANSWER_BYTES_MAX)
        .read_to_end(&mut answer)
        .with_context(|| format!("no answer from the appliance's API at {}", api.addr))?;
    let Some(end) = memchr::memmem::find(&answer, b"\r\n\r\n") else {
        bail!(
            "the appliance's API at {} sent no complete answer",
            api.addr
        );
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let status = head.lines().next().unwrap_or_default();
    let body = &answer[end + 4..];
    if status.split(' ').nth(1) != Some("200") {
        bail!(
            "the appliance's API at {} answered `{status}` to GET /api/stats {}",
            api.addr,
            String::from_utf8_lossy(body).trim()
        );
    }
    serde_json::from_slice(body)
        .with_context(|| format!("the appliance's /api/stats at {} is not JSON", api.addr))
}

/// What `/api/stats` says at one moment, summed over the cores.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeCounts {
    pub received: u64,
    pub parsed: u64,
    pub quarantined: u64,
    pub dropped: u64,
    /// The process's user and system CPU time, seconds (None when the
    /// node does not report it: a build before it did).
    pub process_cpu_s: Option<f64>,
    /// The core threads' time on their CPUs, seconds (None when the node
    /// does not report it: a build before it did, or a kernel without
    /// schedstat).
    pub cores_cpu_s: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub cores: usize,
}

impl NodeCounts {
    /// Reads them from a `/api/stats` answer.
    pub fn from_stats(stats: &Value) -> anyhow::Result<NodeCounts> {
        let Some(cores) = stats["cores"].as_array() else {
            bail!("/api/stats has no `cores`");
        };
        let count = |core: &Value, key: &str| core[key].as_u64().unwrap_or(0);
        let by_reason = |core: &Value, key: &str| -> u64 {
            core[key]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
        };
        let mut counts = NodeCounts {
            cores: cores.len(),
            ..NodeCounts::default()
        };
        let mut cores_cpu = Some(0.0);
        for core in cores {
            // Every line that arrived: datagrams, and frames of the
            // stream transports (TLS and RELP frames count as tcp).
            counts.received += count(core, "udp_datagrams") + count(core, "tcp_frames");
            counts.parsed += count(core, "events_parsed");
            counts.quarantined += by_reason(core, "quarantined");
            counts.dropped += by_reason(core, "dropped");
            cores_cpu = cores_cpu
                .zip(core["cpu_seconds"].as_f64())
                .map(|(a, b)| a + b);
        }
        counts.cores_cpu_s = cores_cpu;
        let process = &stats["process"];
        counts.process_cpu_s = process["cpu_user_seconds"]
            .as_f64()
            .zip(process["cpu_system_seconds"].as_f64())
            .map(|(user, system)| user + system);
        counts.resident_bytes = process["resident_bytes"].as_u64();
        Ok(counts)
    }

    /// What happened between `before` and `self` (later).
    pub fn since(&self, before: &NodeCounts) -> NodeCounts {
        NodeCounts {
            received: self.received.saturating_sub(before.received),
            parsed: self.parsed.saturating_sub(before.parsed),
            quarantined: self.quarantined.saturating_sub(before.quarantined),
            dropped: self.dropped.saturating_sub(before.dropped),
            process_cpu_s: self
                .process_cpu_s
                .zip(before.process_cpu_s)
                .map(|(a, b)| (a - b).max(0.0)),
            cores_cpu_s: self
                .cores_cpu_s
                .zip(before.cores_cpu_s)
                .map(|(a, b)| (a - b).max(0.0)),
            resident_bytes: self.resident_bytes,
            cores: self.cores,
        }
    }

    /// `self` and `other` together (two nodes' deltas): a CPU time or a
    /// memory size is summed only when both report it.
    fn plus(&self, other: &NodeCounts) -> NodeCounts {
        let both = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
        NodeCounts {
            received: self.received + other.received,
            parsed: self.parsed + other.parsed,
            quarantined: self.quarantined + other.quarantined,
            dropped: self.dropped + other.dropped,
            process_cpu_s: both(self.process_cpu_s, other.process_cpu_s),
            cores_cpu_s: both(self.cores_cpu_s, other.cores_cpu_s),
            resident_bytes: self
                .resident_bytes
                .zip(other.resident_bytes)
                .map(|(a, b)| a + b),
            cores: self.cores + other.cores,
        }
    }

    fn json(&self) -> serde_json::Map<String, Value> {
        let per_event = |cpu: Option<f64>| cpu.and_then(|s| us_per_event(s, self.parsed));
        let mut map = serde_json::Map::new();
        map.insert("cores".into(), json!(self.cores));
        map.insert("received".into(), json!(self.received));
        map.insert("parsed".into(), json!(self.parsed));
        map.insert("quarantined".into(), json!(self.quarantined));
        map.insert("dropped".into(), json!(self.dropped));
        map.insert("process_cpu_s".into(), json!(self.process_cpu_s));
        map.insert("cores_cpu_s".into(), json!(self.cores_cpu_s));
        map.insert(
            "process_cpu_us_per_event".into(),
            json!(per_event(self.process_cpu_s)),
        );
        map.insert(
            "cores_cpu_us_per_event".into(),
            json!(per_event(self.cores_cpu_s)),
        );
        map.insert("resident_bytes".into(), json!(self.resident_bytes));
        map
    }

    /// What the load did and cost, for a summary line; `sent`, when
    /// given, is what the harness sent to this node (or these nodes).
    fn describe(&self, sent: Option<u64>) -> String {
        let mut line = match sent {
            Some(sent) => format!("received {} of {sent} sent", self.received),
            None => format!("received {}", self.received),
        };
        line.push_str(&format!(
            ", parsed {}, quarantined {}, dropped {}",
            self.parsed, self.quarantined, self.dropped
        ));
        if let Some((cpu_s, us)) = self
            .process_cpu_s
            .and_then(|s| Some((s, us_per_event(s, self.parsed)?)))
        {
            line.push_str(&format!("; process CPU {cpu_s:.2} s, {us:.2} us per event"));
        }
        if let Some((cpu_s, us)) = self
            .cores_cpu_s
            .and_then(|s| Some((s, us_per_event(s, self.parsed)?)))
        {
            line.push_str(&format!(
                "; cores {cpu_s:.2} s on their CPUs, {us:.2} us per event"
            ));
        }
        if let Some(bytes) = self.resident_bytes {
            line.push_str(&format!(
                "; resident {:.1} MiB",
                bytes as f64 / (1 << 20) as f64
            ));
        }
        line
    }
}

/// Microseconds of `cpu_s` per event of `events`.
/// How often the nodes' counts are read while they catch up after the
/// load.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// Counts that have not moved for this long are taken as final (a node
/// that lost datagrams never receives them all).
const SETTLE_QUIET: Duration = Duration::from_millis(1_000);

/// How the reading after the load ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The nodes received every line sent and parsed, quarantined or
    /// dropped each.
    Accounted,
    /// Their counts stopped moving short of that (lines lost on the way,
    /// or counted under no reason the harness adds up).
    Quiet,
    /// The wait ran out with the counts still moving.
    StillMoving,
}

/// Whether `total` (the nodes' counts since before the load) holds every
/// one of the `sent` lines: received, and parsed, quarantined or dropped.
fn accounted(total: &NodeCounts, sent: u64) -> bool {
    total.received >= sent && total.parsed + total.quarantined + total.dropped >= total.received
}

/// Reads every node's counts (`read`, each difference from its `before`)
/// after the load until together they hold the `sent` lines
/// ([`Settled::Accounted`]), or stop moving for [`SETTLE_QUIET`], or
/// `wait` has passed. A node still working through its sockets when the
/// sender finished (nothing else waits for it when no alerts are read)
/// would otherwise be read short. A node that cannot be read is left out
/// of the totals (its error is in its place).
pub fn read_settled(
    apis: &[NodeApi],
    before: &[NodeCounts],
    sent: u64,
    wait: Duration,
    read: impl Fn(&NodeApi) -> anyhow::Result<NodeCounts>,
) -> (Vec<anyhow::Result<NodeCounts>>, Settled) {
    if apis.is_empty() {
        // No node to ask: nothing to wait for.
        return (Vec::new(), Settled::Quiet);
    }
    let started = std::time::Instant::now();
    let mut quiet_since = started;
    let mut last: Option<Vec<(u64, u64)>> = None;
    loop {
        let now: Vec<anyhow::Result<NodeCounts>> = apis
            .iter()
            .zip(before)
            .map(|(api, before)| read(api).map(|after| after.since(before)))
            .collect();
        let total = now
            .iter()
            .filter_map(|n| n.as_ref().ok().copied())
            .reduce(|a, b| a.plus(&b))
            .unwrap_or_default();
        if accounted(&total, sent) {
            return (now, Settled::Accounted);
        }
        let progress: Vec<(u64, u64)> = now
            .iter()
            .map(|n| {
                n.as_ref().map_or((0, 0), |n| {
                    (n.received, n.parsed + n.quarantined + n.dropped)
                })
            })
            .collect();
        if last.as_ref() != Some(&progress) {
            quiet_since = std::time::Instant::now();
            last = Some(progress);
        } else if quiet_since.elapsed() >= SETTLE_QUIET {
            return (now, Settled::Quiet);
        }
        if started.elapsed() >= wait {
            return (now, Settled::StillMoving);
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

fn us_per_event(cpu_s: f64, events: u64) -> Option<f64> {
    (events > 0).then(|| cpu_s * 1e6 / events as f64)
}

/// Every node's counts summed.
fn total(nodes: &[(NodeApi, NodeCounts)]) -> NodeCounts {
    nodes
        .iter()
        .map(|(_, delta)| *delta)
        .reduce(|a, b| a.plus(&b))
        .unwrap_or_default()
}

/// The report's `appliance_api` section from each node's API and what the
/// load did and cost it (its reading after [`NodeCounts::since`] the one
/// before): the nodes' total, and each node under `nodes`.
pub fn report_json(nodes: &[(NodeApi, NodeCounts)]) -> Value {
    let mut doc = total(nodes).json();
    let each: Vec<Value> = nodes
        .iter()
        .map(|(api, delta)| {
            let mut node = delta.json();
            node.insert("api".into(), json!(api.addr.to_string()));
            Value::Object(node)
        })
        .collect();
    doc.insert("nodes".into(), Value::Array(each));
    Value::Object(doc)
}

/// The summary's lines for them, beside what the harness sent: one per
/// node, and their total when there are several.
pub fn summary_lines(nodes: &[(NodeApi, NodeCounts)], sent: u64) -> Vec<String> {
    let one = nodes.len() == 1;
    let mut lines: Vec<String> = nodes
        .iter()
        .map(|(api, delta)| {
            format!(
                "appliance (its API at {}, {} core(s)): {}",
                api.addr,
                delta.cores,
                delta.describe(one.then_some(sent))
            )
        })
        .collect();
    if nodes.len() > 1 {
        let total = total(nodes);
        lines.push(format!(
            "appliances ({} nodes, {} cores): {}",
            nodes.len(),
            total.cores,
            total.describe(Some(sent))
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn stats(parsed: u64, cpu: f64, core_cpu: Option<f64>) -> Value {
        let core = |i: u64| {
            let mut c = json!({
                "core": i,
                "udp_datagrams": 0,
                "tcp_frames": parsed / 2 + 1,
                "events_parsed": parsed / 2,
                "quarantined": {"bad_header": 1},
                "dropped": {},
            });
            if let Some(s) = core_cpu {
                c["cpu_seconds"] = json!(s / 2.0);
            }
            c
        };
        json!({
            "process": {"cpu_user_seconds": cpu * 0.75, "cpu_system_seconds": cpu * 0.25, "resident_bytes": 64u64 << 20},
            "cores": [core(0), core(1)],
        })
    }

    /// The reading after the load waits for a node still working through
    /// its sockets, stops once the lines are all held, takes counts that
    /// stopped moving as final, and gives up at the wait.
    #[test]
    fn the_reading_after_the_load_waits_for_the_nodes_to_settle() {
        use std::cell::Cell;
        let api = |port| NodeApi {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            token: None,
        };
        let apis = [api(1), api(2)];
        let before = [
            NodeCounts::default(),
            NodeCounts {
                received: 5,
                parsed: 5,
                ..NodeCounts::default()
            },
        ];
        let counts = |received, parsed| NodeCounts {
            received,
            parsed,
            ..NodeCounts::default()
        };
        let wait = Duration::from_secs(10);
        // Each read moves both nodes on by 20 lines, up to 50 each: 100
        // sent, held after three rounds of reads.
        let reads = Cell::new(0u64);
        let (after, settled) = read_settled(&apis, &before, 100, wait, |a| {
            reads.set(reads.get() + 1);
            let n = (reads.get().div_ceil(2) * 20).min(50);
            Ok(if a.addr.port() == 1 {
                counts(n, n)
            } else {
                counts(n + 5, n + 5)
            })
        });
        assert_eq!(settled, Settled::Accounted);
        assert_eq!(reads.get(), 6);
        let parsed: Vec<u64> = after.iter().map(|n| n.as_ref().unwrap().parsed).collect();
        assert_eq!(parsed, vec![50, 50]);
        // 10 of 100 lost on the way: final once quiet.
        let started = std::time::Instant::now();
        let (after, settled) = read_settled(&apis, &before, 100, wait, |a| {
            Ok(if a.addr.port() == 1 {
                counts(45, 45)
            } else {
                counts(50, 50)
            })
        });
        assert_eq!(settled, Settled::Quiet);
        assert!(started.elapsed() >= SETTLE_QUIET && started.elapsed() < wait);
        assert_eq!(after[1].as_ref().unwrap().received, 45);
        // Received but not yet parsed is not held; a node that cannot be
        // read counts for nothing; still moving at the wait's end.
        reads.set(0);
        let (after, settled) = read_settled(&apis, &before, 100, Duration::from_millis(200), |a| {
            reads.set(reads.get() + 1);
            if a.addr.port() == 2 {
                bail!("refused");
            }
            Ok(counts(100, reads.get()))
        });
        assert_eq!(settled, Settled::StillMoving);
        assert!(after[1].is_err());
        assert!(after[0].as_ref().unwrap().parsed < 100);
        // No node given: no wait.
        let started = std::time::Instant::now();
        let (after, _) = read_settled(&[], &[], 100, wait, |_| bail!("not asked"));
        assert!(after.is_empty() && started.elapsed() < SETTLE_POLL);
    }

    #[test]
    fn counts_are_summed_over_cores_and_differenced() {
        let before = NodeCounts::from_stats(&stats(1000, 1.0, Some(0.5))).unwrap();
        let after = NodeCounts::from_stats(&stats(201_000, 1.5, Some(0.9))).unwrap();
        assert_eq!(
            (after.received, after.parsed, after.quarantined),
            (201_002, 201_000, 2)
        );
        let delta = after.since(&before);
        assert_eq!(
            (delta.received, delta.parsed, delta.quarantined),
            (200_000, 200_000, 0)
        );
        assert!((delta.process_cpu_s.unwrap() - 0.5).abs() < 1e-9);
        assert!((delta.cores_cpu_s.unwrap() - 0.4).abs() < 1e-9);
        let api = NodeApi {
            addr: "10.0.0.5:9600".parse().unwrap(),
            token: None,
        };
        let nodes = [(api.clone(), delta)];
        let doc = report_json(&nodes);
        assert_eq!(doc["parsed"], 200_000);
        assert_eq!(doc["nodes"][0]["api"], "10.0.0.5:9600");
        assert!((doc["process_cpu_us_per_event"].as_f64().unwrap() - 2.5).abs() < 1e-9);
        assert!((doc["cores_cpu_us_per_event"].as_f64().unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(
            summary_lines(&nodes, 200_000),
            ["appliance (its API at 10.0.0.5:9600, 2 core(s)): received 200000 of 200000 sent, parsed 200000, quarantined 0, dropped 0; process CPU 0.50 s, 2.50 us per event; cores 0.40 s on their CPUs, 2.00 us per event; resident 64.0 MiB"]
        );
        // Two nodes (a cluster): a line each, and their total against
        // what was sent to them all.
        let other = NodeApi {
            addr: "10.0.0.6:9600".parse().unwrap(),
            token: None,
        };
        let two = [(api.clone(), delta), (other, delta)];
        let lines = summary_lines(&two, 400_000);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[1].starts_with(
                "appliance (its API at 10.0.0.6:9600, 2 core(s)): received 200000, parsed"
            ),
            "{lines:?}"
        );
        assert_eq!(
            lines[2],
            "appliances (2 nodes, 4 cores): received 400000 of 400000 sent, parsed 400000, quarantined 0, dropped 0; process CPU 1.00 s, 2.50 us per event; cores 0.80 s on their CPUs, 2.00 us per event; resident 128.0 MiB"
        );
        let doc = report_json(&two);
        assert_eq!(
            (doc["parsed"].as_u64(), doc["cores"].as_u64()),
            (Some(400_000), Some(4))
        );
        assert_eq!(doc["nodes"].as_array().unwrap().len(), 2);
        // A node that does not report its cores' CPU: the rest still.
        let old = NodeCounts::from_stats(&stats(1000, 1.0, None)).unwrap();
        assert_eq!(old.cores_cpu_s, None);
        let line = &summary_lines(&[(api.clone(), after.since(&old))], 1)[0];
        assert!(!line.contains("on their CPUs"), "{line}");
        // One that reports no CPU at all (a build before it did): no CPU
        // is claimed, rather than zero, for it or for a total with it.
        let mut older = stats(1000, 1.0, None);
        older.as_object_mut().unwrap().remove("process");
        let older = NodeCounts::from_stats(&older).unwrap();
        assert_eq!(older.process_cpu_s, None);
        let mixed = [(api.clone(), older.since(&older)), (api.clone(), delta)];
        let lines = summary_lines(&mixed, 1000);
        assert!(
            !lines[0].contains("CPU") && !lines[2].contains("CPU"),
            "{lines:?}"
        );
        assert_eq!(report_json(&mixed)["process_cpu_us_per_event"], Value::Null);
        assert!(NodeCounts::from_stats(&json!({"error": 1})).is_err());
    }

    /// One canned answer from a listener on loopback; returns the request.
    fn answer_once(answer: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while memchr::memmem::find(&request, b"\r\n\r\n").is_none() {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, handle)
    }

    #[test]
    fn fetches_the_stats_with_the_token_and_says_why_not() {
        let (addr, server) =
            answer_once("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"cores\": []}");
        let api = NodeApi {
            addr,
            token: Some("t0ken".into()),
        };
        assert_eq!(fetch_stats(&api).unwrap(), json!({"cores": []}));
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /api/stats HTTP/1.0\r\n"),
            "{request}"
        );
        assert!(
            request.contains("Authorization: Bearer t0ken\r\n"),
            "{request}"
        );
        let (addr, server) = answer_once("HTTP/1.1 401 Unauthorized\r\n\r\nmissing or wrong token");
        let err = fetch_stats(&NodeApi { addr, token: None })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("answered `HTTP/1.1 401 Unauthorized`"),
            "{err}"
        );
        assert!(err.contains("missing or wrong token"), "{err}");
        server.join().unwrap();
        let (addr, server) = answer_once("HTTP/1.1 200 OK\r\n\r\nnot json");
        let err = fetch_stats(&NodeApi { addr, token: None })
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not JSON"), "{err}");
        server.join().unwrap();
    }
}
