//! Sockets: binding with SO_REUSEPORT and batched reads on glommio.
//!
//! The appliance binds one UDP socket and one TCP listener per core on the
//! same address. Sockets are created here with plain `socket2` calls on the
//! main thread, so that port 0 resolves once and every core shares the same
//! real port; each core then adopts its socket into its own glommio reactor.
//!
//! This module owns the socket calls and nothing above them: it does not
//! frame, parse, or know about rules or shards.

pub mod tcp;
pub mod udp;

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog for each core's TCP listener. With SO_REUSEPORT every core has
/// its own queue, so a node accepts `cores * TCP_BACKLOG` pending handshakes.
pub const TCP_BACKLOG: i32 = 1024;

/// Receive buffer asked of the kernel for each UDP socket by default
/// (`ingest.udp_recv_buffer_bytes`). A burst larger than the buffer while
/// a core is busy is lost in the kernel (counted by the kernel as
/// RcvbufErrors, and by the appliance as `shardwatch_udp_kernel_drops_total`),
/// so it is generous: at the loopback sender's ceiling (~340 k datagrams/s)
/// 12 of 12 runs lost nothing with 32 MiB, against 5 of 6 with 16 MiB and
/// 2 of 6 with 4 MiB (BENCHMARKS.md). The price: under a sustained flood a
/// full buffer is also a queue that fresh datagrams wait behind once the
/// flood stops (seconds for a throttled core).
pub const UDP_RECV_BUFFER_BYTES: usize = 32 * 1024 * 1024;

/// A bound UDP socket group and the receive buffer each socket got.
#[derive(Debug)]
pub struct UdpGroup {
    pub sockets: Vec<std::net::UdpSocket>,
    /// What the kernel reports for SO_RCVBUF (it doubles the asked size
    /// for its own accounting) on the first socket.
    pub recv_buffer_bytes: usize,
    /// Whether the asked size was cut to `net.core.rmem_max` (the process
    /// lacks CAP_NET_ADMIN, which SO_RCVBUFFORCE needs).
    pub capped: bool,
}

/// Binds `count` UDP sockets to the same address with SO_REUSEPORT, each
/// with a receive buffer of `recv_buffer_bytes`. When the port is 0 the
/// first bind chooses it and the rest reuse it.
///
/// The buffer is set with SO_RCVBUFFORCE first (allowed with CAP_NET_ADMIN,
/// e.g. as root: not bounded by `net.core.rmem_max`), then with SO_RCVBUF,
/// which the kernel silently caps at `net.core.rmem_max`; the result says
/// which happened.
pub fn bind_udp_group(
    addr: SocketAddr,
    count: usize,
    recv_buffer_bytes: usize,
) -> io::Result<UdpGroup> {
    assert!(count > 0, "a socket group needs at least one socket");
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    let mut capped = false;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(bound), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        if recv_buffer_bytes > 0 && !force_recv_buffer(&socket, recv_buffer_bytes) {
            // A smaller buffer is not an error, only a larger risk of
            // kernel drops under bursts; `capped` reports it.
            let _ = socket.set_recv_buffer_size(recv_buffer_bytes);
            capped = true;
        }
        socket.bind(&bound.into())?;
        let socket: std::net::UdpSocket = socket.into();
        bound = socket.local_addr()?;
        sockets.push(socket);
    }
    let recv_buffer_bytes = socket2::SockRef::from(&sockets[0]).recv_buffer_size()?;
    Ok(UdpGroup {
        sockets,
        recv_buffer_bytes,
        capped,
    })
}

/// SO_RCVBUFFORCE: whether the kernel took `bytes` past `net.core.rmem_max`
/// (it refuses with EPERM without CAP_NET_ADMIN).
fn force_recv_buffer(socket: &Socket, bytes: usize) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(value) = libc::c_int::try_from(bytes) else {
        return false;
    };
    // SAFETY: a valid socket descriptor, and a pointer to a c_int that
    // lives across the call with its size passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Binds `count` TCP listeners to the same address with SO_REUSEPORT.
pub fn bind_tcp_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    assert!(count > 0, "a socket group needs at least one socket");
    let mut listeners = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        socket.bind(&bound.into())?;
        socket.listen(TCP_BACKLOG)?;
        let listener: std::net::TcpListener = socket.into();
        bound = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_the_whole_group() {
        let udp = bind_udp_group("127.0.0.1:0".parse().unwrap(), 3, 1 << 20)
            .unwrap()
            .sockets;
        let port = udp[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(udp.iter().all(|s| s.local_addr().unwrap().port() == port));
        let tcp = bind_tcp_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = tcp[0].local_addr().unwrap().port();
        assert!(tcp.iter().all(|s| s.local_addr().unwrap().port() == port));
    }

    /// The asked receive buffer is what the kernel reports (doubled for
    /// its accounting) where SO_RCVBUFFORCE is allowed, and at most
    /// `net.core.rmem_max` (doubled) where it is not; `capped` says which.
    #[test]
    fn the_receive_buffer_is_forced_past_rmem_max_when_allowed() {
        let asked = 48 << 20;
        let group = bind_udp_group("127.0.0.1:0".parse().unwrap(), 2, asked).unwrap();
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        for socket in &group.sockets {
            let got = socket2::SockRef::from(socket).recv_buffer_size().unwrap();
            assert_eq!(got, group.recv_buffer_bytes);
        }
        if group.capped {
            assert!(group.recv_buffer_bytes <= 2 * rmem_max, "{group:?}");
        } else {
            assert_eq!(group.recv_buffer_bytes, 2 * asked, "{group:?}");
        }
        // Zero leaves the kernel's default.
        let default = bind_udp_group("127.0.0.1:0".parse().unwrap(), 1, 0).unwrap();
        assert!(!default.capped);
        assert!(default.recv_buffer_bytes < 2 * asked);
    }
}
