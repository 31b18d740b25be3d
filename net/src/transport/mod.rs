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

/// Receive buffer asked of the kernel for each UDP socket. A burst larger
/// than this while a core is busy is lost in the kernel (counted by the
/// kernel as RcvbufErrors), so it is generous.
pub const UDP_RECV_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Binds `count` UDP sockets to the same address with SO_REUSEPORT. When the
/// port is 0 the first bind chooses it and the rest reuse it.
pub fn bind_udp_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    assert!(count > 0, "a socket group needs at least one socket");
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(bound), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        // The kernel may cap this at net.core.rmem_max; a smaller buffer is
        // not an error, only a larger risk of kernel drops under bursts.
        let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER_BYTES);
        socket.bind(&bound.into())?;
        let socket: std::net::UdpSocket = socket.into();
        bound = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
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
        let udp = bind_udp_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = udp[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(udp.iter().all(|s| s.local_addr().unwrap().port() == port));
        let tcp = bind_tcp_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = tcp[0].local_addr().unwrap().port();
        assert!(tcp.iter().all(|s| s.local_addr().unwrap().port() == port));
    }
}
