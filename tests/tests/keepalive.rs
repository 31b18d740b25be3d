//! TCP keepalive frees the connection slot of a sender that vanished
//! without closing (powered off, its NAT or firewall state lost), and
//! never closes a live sender that is only idle. The vanishing is real: the
//! sender runs in a network namespace of its own, joined to the node by a
//! veth pair, and its address is taken away mid-connection, so the node's
//! probes go unanswered and nothing resets the connection. Needs root and
//! iproute2 (`ip netns`); elsewhere it says so and checks nothing.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shardwatch_tests::{metric_sum, poll, Appliance};

/// A network namespace with one end of a veth pair in it; the other end
/// stays in this namespace. Removed on drop.
struct Netns {
    name: String,
    host_if: String,
    inner_if: String,
    host_ip: String,
    inner_ip: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    fn new() -> Option<Netns> {
        let id = std::process::id();
        let net = Netns {
            name: format!("swka-{id}"),
            host_if: format!("swh{id}"),
            inner_if: format!("swn{id}"),
            host_ip: format!("10.213.{}.1", id % 250),
            inner_ip: format!("10.213.{}.2", id % 250),
        };
        let host_cidr = format!("{}/30", net.host_ip);
        let inner_cidr = format!("{}/30", net.inner_ip);
        let ok = ip(&["netns", "add", &net.name])
            && ip(&[
                "link",
                "add",
                &net.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &net.inner_if,
            ])
            && ip(&["link", "set", &net.inner_if, "netns", &net.name])
            && ip(&["addr", "add", &host_cidr, "dev", &net.host_if])
            && ip(&["link", "set", &net.host_if, "up"])
            && ip(&[
                "netns",
                "exec",
                &net.name,
                "ip",
                "addr",
                "add",
                &inner_cidr,
                "dev",
                &net.inner_if,
            ])
            && ip(&[
                "netns",
                "exec",
                &net.name,
                "ip",
                "link",
                "set",
                &net.inner_if,
                "up",
            ]);
        ok.then_some(net)
    }

    /// The sender's address leaves its namespace: packets to it are
    /// dropped there, unanswered and unreset.
    fn vanish(&self) {
        let inner_cidr = format!("{}/30", self.inner_ip);
        assert!(ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "addr",
            "del",
            &inner_cidr,
            "dev",
            &self.inner_if
        ]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_if]);
        ip(&["netns", "del", &self.name]);
    }
}

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn keepalive_frees_the_slot_of_a_sender_gone_without_closing() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let Some(net) = root.then(Netns::new).flatten() else {
        println!("skipped: needs root and iproute2 network namespaces (ip netns)");
        return;
    };
    let listen = format!("{}:0", net.host_ip);
    let app = Appliance::start_configured(
        "keepalive",
        "[ingest]\ntcp_keepalive_s = 2\n",
        &["--cores", "1", "--quiet", "--tcp", &listen],
    )
    .unwrap();
    let tcp = app.tcp();
    // The sender in the namespace: one line, then silence (bash's
    // /dev/tcp, so nothing else need be installed).
    let _gone = Killed(
        Command::new("ip")
            .args(["netns", "exec", &net.name, "bash", "-c"])
            .arg(format!(
                "exec 3<>/dev/tcp/{}/{}; printf '<13>Dec  1 00:00:00 gone app: before the silence\\n' >&3; sleep 300",
                tcp.ip(),
                tcp.port()
            ))
            .spawn()
            .unwrap(),
    );
    // A live sender that only goes idle, from this namespace.
    let mut live = TcpStream::connect(tcp).unwrap();
    live.write_all(b"<13>Dec  1 00:00:00 live app: idle from now on\n")
        .unwrap();
    let open = |app: &Appliance| metric_sum(&app.metrics(), "shardwatch_tcp_connections_open", "");
    let both = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        let page = app.metrics();
        let parsed = metric_sum(&page, "shardwatch_events_parsed_total", "");
        let open = metric_sum(&page, "shardwatch_tcp_connections_open", "");
        ((open, parsed), open == 2.0 && parsed == 2.0)
    });
    assert_eq!(both, (2.0, 2.0), "both senders connected and sent a line");

    net.vanish();
    let vanished = std::time::Instant::now();
    // Idle 2 s, then a probe a second, six unanswered: about 8 s.
    let left = poll(Duration::from_secs(40), Duration::from_millis(200), || {
        let n = open(&app);
        (n, n <= 1.0)
    });
    assert_eq!(left, 1.0, "the vanished sender's connection was closed");
    assert_eq!(
        metric_sum(&app.metrics(), "shardwatch_tcp_connections_lost_total", ""),
        1.0,
        "counted as lost, not as a close"
    );
    println!("closed {:?} after the sender vanished", vanished.elapsed());
    // The idle live sender is still connected, well past its own probes,
    // and still heard.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(open(&app), 1.0, "an idle live sender is not closed");
    live.write_all(b"<13>Dec  1 00:00:09 live app: still here\n")
        .unwrap();
    let parsed = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        let n = metric_sum(&app.metrics(), "shardwatch_events_parsed_total", "");
        (n, n == 3.0)
    });
    assert_eq!(parsed, 3.0);
    drop(live);
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
}
