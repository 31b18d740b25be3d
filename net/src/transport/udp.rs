//! Batched UDP receive on a glommio executor.
//!
//! glommio reads one datagram per call. Under load that is one io_uring
//! round trip per message, so [`UdpBatchReceiver`] waits for the first
//! datagram through glommio (which parks the task properly when the socket is
//! idle) and then drains up to [`UDP_BATCH_MAX`] more with one non-blocking
//! `recvmmsg(2)`. The batch is only as large as what is already queued, so an
//! idle link sees per-datagram latency and a busy one sees batches.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};

/// Most datagrams read in one batch.
pub const UDP_BATCH_MAX: usize = 64;
/// Room for one datagram: the largest UDP payload fits, so the kernel never
/// truncates one behind our back.
pub const DATAGRAM_BYTES_MAX: usize = 65_536;

/// One core's UDP socket with reusable batch buffers.
pub struct UdpBatchReceiver {
    socket: glommio::net::UdpSocket,
    buf: Vec<u8>,
    lens: [usize; UDP_BATCH_MAX],
    peers: [SocketAddr; UDP_BATCH_MAX],
    count: usize,
    /// Datagrams the kernel reported as truncated (MSG_TRUNC).
    pub truncated_total: u64,
}

impl UdpBatchReceiver {
    /// Adopts a bound std socket into the current glommio executor. Must be
    /// called on the executor that will read it.
    pub fn adopt(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        // SAFETY: the fd comes from into_raw_fd, so it is open, owned, and
        // handed over exactly once.
        let socket = unsafe { glommio::net::UdpSocket::from_raw_fd(socket.into_raw_fd()) };
        let unspecified = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        Ok(UdpBatchReceiver {
            socket,
            buf: vec![0; UDP_BATCH_MAX * DATAGRAM_BYTES_MAX],
            lens: [0; UDP_BATCH_MAX],
            peers: [unspecified; UDP_BATCH_MAX],
            count: 0,
            truncated_total: 0,
        })
    }

    /// Makes `recv_batch` give up with `TimedOut` after `timeout` without
    /// data, so the caller can check for shutdown.
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.socket
            .set_read_timeout(timeout)
            .map_err(io::Error::from)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr().map_err(io::Error::from)
    }

    /// Waits for at least one datagram, then takes what else is queued, up
    /// to [`UDP_BATCH_MAX`]. Returns how many datagrams the batch holds.
    pub async fn recv_batch(&mut self) -> io::Result<usize> {
        // What is already queued is taken with one non-blocking recvmmsg:
        // a socket with datagrams waiting (any steady stream, since they
        // arrive while the last batch is processed) is read without
        // arming an io_uring poll, its timeout and the timeout's cancel.
        self.count = 0;
        self.drain_queued();
        if self.count > 0 {
            return Ok(self.count);
        }
        let (len, peer) = self
            .socket
            .recv_from(&mut self.buf[..DATAGRAM_BYTES_MAX])
            .await
            .map_err(io::Error::from)?;
        self.lens[0] = len;
        self.peers[0] = peer;
        self.count = 1;
        self.drain_queued();
        Ok(self.count)
    }

    /// Takes what is already queued, up to [`UDP_BATCH_MAX`], without
    /// waiting (0 when the socket is empty): for draining the socket at
    /// shutdown, when nothing more is awaited.
    pub fn recv_queued(&mut self) -> usize {
        self.count = 0;
        self.drain_queued();
        self.count
    }

    /// Datagram `i` of the current batch and its sender.
    pub fn datagram(&self, i: usize) -> (&[u8], SocketAddr) {
        assert!(
            i < self.count,
            "datagram {i} is outside the batch of {}",
            self.count
        );
        let start = i * DATAGRAM_BYTES_MAX;
        (&self.buf[start..start + self.lens[i]], self.peers[i])
    }

    /// Reads whatever else is queued with one non-blocking recvmmsg.
    fn drain_queued(&mut self) {
        let room = UDP_BATCH_MAX - self.count;
        if room == 0 {
            return;
        }
        let mut names: [MaybeUninit<libc::sockaddr_storage>; UDP_BATCH_MAX] =
            [MaybeUninit::uninit(); UDP_BATCH_MAX];
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut iovecs: [libc::iovec; UDP_BATCH_MAX] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; UDP_BATCH_MAX] = unsafe { std::mem::zeroed() };
        let base = self.buf.as_mut_ptr();
        for k in 0..room {
            let slot = self.count + k;
            // SAFETY: slot < UDP_BATCH_MAX, so the slot lies inside `buf`.
            iovecs[k].iov_base = unsafe { base.add(slot * DATAGRAM_BYTES_MAX) }.cast();
            iovecs[k].iov_len = DATAGRAM_BYTES_MAX;
            headers[k].msg_hdr.msg_iov = &mut iovecs[k];
            headers[k].msg_hdr.msg_iovlen = 1;
            headers[k].msg_hdr.msg_name = names[k].as_mut_ptr().cast();
            headers[k].msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: headers, iovecs and names outlive the call; every iovec
        // points into `buf` with its true length; `room` bounds the array.
        let got = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                headers.as_mut_ptr(),
                room as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got <= 0 {
            // EAGAIN (nothing queued) is the common case; any other error
            // resurfaces on the next awaited recv_from, which reports it.
            return;
        }
        for (k, header) in headers.iter().enumerate().take(got as usize) {
            let slot = self.count + k;
            self.lens[slot] = header.msg_len as usize;
            if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated_total += 1;
            }
            // SAFETY: the kernel filled msg_namelen bytes of names[k].
            self.peers[slot] =
                unsafe { sockaddr_to_std(names[k].assume_init_ref()) }.unwrap_or(self.peers[0]);
        }
        self.count += got as usize;
        debug_assert!(self.count <= UDP_BATCH_MAX);
    }
}

/// Converts a kernel socket address to std's, for IPv4 and IPv6.
fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;

    #[test]
    fn a_burst_arrives_as_one_batch_with_senders() {
        let sockets = super::super::bind_udp_group("127.0.0.1:0".parse().unwrap(), 1, 1 << 20)
            .unwrap()
            .sockets;
        let addr = sockets[0].local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender_addr = sender.local_addr().unwrap();
        for i in 0..10 {
            sender.send_to(format!("msg {i}").as_bytes(), addr).unwrap();
        }
        let socket = sockets.into_iter().next().unwrap();
        let handle = LocalExecutorBuilder::default()
            .spawn(move || async move {
                let mut rx = UdpBatchReceiver::adopt(socket).unwrap();
                let mut seen = Vec::new();
                while seen.len() < 10 {
                    let n = rx.recv_batch().await.unwrap();
                    for i in 0..n {
                        let (bytes, peer) = rx.datagram(i);
                        assert_eq!(peer, sender_addr);
                        seen.push(String::from_utf8(bytes.to_vec()).unwrap());
                    }
                }
                seen
            })
            .unwrap();
        let seen = handle.join().unwrap();
        let expected: Vec<String> = (0..10).map(|i| format!("msg {i}")).collect();
        assert_eq!(seen, expected);
    }
}
