//! Per-source limits: a denied sender is refused and counted, a noisy
//! sender is rate limited and counted, and a quiet sender beside it still
//! gets everything through. Stream connections are held to the node's
//! bound.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use shardwatch_tests::{metric_sum, poll, total, Appliance};

fn dropped(stats: &[serde_json::Value], reason: &str) -> u64 {
    stats
        .iter()
        .filter_map(|c| c["dropped"][reason].as_u64())
        .sum()
}

#[test]
fn denied_and_noisy_sources_do_not_starve_the_rest() {
    let app = Appliance::start_configured(
        "limits",
        "[limits]\ndeny = [\"127.0.0.2/32\"]\nsource_rate_eps = 100\nsource_burst = 50\n",
        &["--cores", "2", "--quiet"],
    )
    .unwrap();
    let denied = UdpSocket::bind("127.0.0.2:0").unwrap();
    let noisy = UdpSocket::bind("127.0.0.3:0").unwrap();
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20 {
        denied
            .send_to(
                format!("<13>Nov 27 10:00:00 h app: denied {i}").as_bytes(),
                app.udp(),
            )
            .unwrap();
    }
    for i in 0..500 {
        noisy
            .send_to(
                format!("<13>Nov 27 10:00:00 h app: noisy {i}").as_bytes(),
                app.udp(),
            )
            .unwrap();
        if i % 25 == 0 {
            quiet
                .send_to(
                    format!("<13>Nov 27 10:00:00 h app: quiet {i}").as_bytes(),
                    app.udp(),
                )
                .unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    assert_eq!(dropped(&stopped.stats, "source_denied"), 20);
    let limited = dropped(&stopped.stats, "source_rate_limited");
    let parsed = total(&stopped.stats, "events_parsed");
    // The noisy source gets its burst (50) plus what the rate refills while
    // it sends; the quiet one (20 lines) gets everything.
    assert_eq!(parsed + limited, 520, "every datagram is parsed or counted");
    assert!(
        limited >= 400,
        "the noisy source was held to its rate: {limited}"
    );
    assert!(parsed >= 70, "burst of 50 plus the quiet 20: {parsed}");
}

/// Polls the node's metrics until `name` (samples whose labels contain
/// `label`) sums to `want`; returns the last sum.
fn wait_metric(app: &Appliance, name: &str, label: &str, want: f64) -> f64 {
    poll(Duration::from_secs(20), Duration::from_millis(20), || {
        let sum = metric_sum(&app.metrics(), name, label);
        (sum, sum == want)
    })
}

/// A TCP connection to `to` from loopback address `from`.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("the node listens on IPv4 loopback");
    };
    let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, bound and connected with valid sockaddr_in
    // values of the given length; its descriptor is handed to the
    // TcpStream, which owns it from then on (or closed on failure).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let local = sockaddr(from, 0);
        let remote = sockaddr(to.ip().octets(), to.port());
        if libc::bind(fd, (&raw const local).cast(), len) != 0
            || libc::connect(fd, (&raw const remote).cast(), len) != 0
        {
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect from {from:?} to {to}: {err}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

fn send_line(stream: &mut TcpStream, text: &str) {
    stream
        .write_all(format!("<13>Nov 27 10:00:00 h app: {text}\n").as_bytes())
        .unwrap();
}

/// Whether the node closed `stream` (unread) within 20 s.
fn closed_by_node(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    match stream.read(&mut [0u8; 16]) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn connections_past_the_node_or_source_bound_are_closed_and_counted_and_the_open_ones_keep_working()
{
    // Two cores: the bounds are the node's, wherever the kernel places a
    // connection.
    let mut app = Appliance::start_configured(
        "connections-max",
        "[limits]\nconnections_max = 3\nconnections_per_source_max = 2\n",
        &["--cores", "2", "--quiet"],
    )
    .unwrap();
    let parsed = "shardwatch_events_parsed_total";
    let refused = "shardwatch_events_dropped_total";
    let per_source = "reason=\"connections_per_source_max\"";
    let node = "reason=\"connections_max\"";
    let mut a1 = connect_from([127, 0, 0, 1], app.tcp());
    let mut a2 = connect_from([127, 0, 0, 1], app.tcp());
    send_line(&mut a1, "a1");
    send_line(&mut a2, "a2");
    assert_eq!(wait_metric(&app, parsed, "", 2.0), 2.0, "both lines parsed");

    // A third from the same source is closed unread; another source's is not.
    let mut a3 = connect_from([127, 0, 0, 1], app.tcp());
    assert!(closed_by_node(&mut a3), "past the source's bound: closed");
    assert_eq!(wait_metric(&app, refused, per_source, 1.0), 1.0);
    assert!(
        app.wait_stderr("limits.connections_per_source_max", Duration::from_secs(10))
            .is_some(),
        "the refusal is logged"
    );
    let mut b1 = connect_from([127, 0, 0, 2], app.tcp());
    send_line(&mut b1, "b1");
    assert_eq!(
        wait_metric(&app, parsed, "", 3.0),
        3.0,
        "another source gets in"
    );

    // The node's bound: three open, a fourth source is closed.
    let mut c1 = connect_from([127, 0, 0, 3], app.tcp());
    assert!(closed_by_node(&mut c1), "past the node's bound: closed");
    assert_eq!(wait_metric(&app, refused, node, 1.0), 1.0);

    // The open ones still work; once one ends, a new one gets in.
    send_line(&mut a1, "a1 again");
    assert_eq!(wait_metric(&app, parsed, "", 4.0), 4.0);
    drop(a2);
    assert_eq!(
        wait_metric(&app, "shardwatch_tcp_connections_open", "", 2.0),
        2.0,
        "the closed connection is no longer open"
    );
    let mut c2 = connect_from([127, 0, 0, 3], app.tcp());
    send_line(&mut c2, "c2");
    assert_eq!(
        wait_metric(&app, parsed, "", 5.0),
        5.0,
        "the new one is read"
    );
    let page = app.metrics();
    assert_eq!(metric_sum(&page, refused, node), 1.0);
    assert_eq!(metric_sum(&page, refused, per_source), 1.0);

    drop((a1, a3, b1, c1, c2));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    assert_eq!(dropped(&stopped.stats, "connections_max"), 1);
    assert_eq!(dropped(&stopped.stats, "connections_per_source_max"), 1);
}
