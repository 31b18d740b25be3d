//! TCP listeners and connections on a glommio executor.
//!
//! Each core accepts on its own SO_REUSEPORT listener and serves the
//! connections it accepted, so a connection's bytes are read, framed and
//! parsed on one core. Reading is plain `AsyncRead` into a reusable buffer;
//! framing lives in [`crate::framing`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

/// Bytes asked of the socket per read. Large reads amortise the syscall;
/// the framer handles frames that straddle reads.
pub const TCP_READ_BYTES: usize = 256 * 1024;

/// Adopts a bound, listening std listener into the current glommio executor.
pub fn adopt_listener(listener: std::net::TcpListener) -> io::Result<glommio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    // SAFETY: the fd comes from into_raw_fd, so it is open, owned, and handed
    // over exactly once.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) })
}

/// Accepts one connection the kernel already completed on `listener` (a
/// non-blocking clone of a listener adopted with [`adopt_listener`], so
/// both share one accept queue) without waiting: `Ok(None)` when none is
/// pending. For shutdown, when the executor's own accept is no longer
/// awaited: a connection left in the queue would be reset with the
/// listener, its acknowledged bytes unread.
pub fn accept_pending(
    listener: &std::net::TcpListener,
) -> io::Result<Option<glommio::net::TcpStream>> {
    match listener.accept() {
        Ok((stream, _)) => {
            stream.set_nonblocking(true)?;
            // SAFETY: as in `adopt_listener`: an fd just accepted and owned,
            // handed over once.
            Ok(Some(unsafe {
                glommio::net::TcpStream::from_raw_fd(stream.into_raw_fd())
            }))
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(err) => Err(err),
    }
}

/// The longest keepalive idle time Linux takes (`TCP_KEEPIDLE`), seconds.
pub const KEEPALIVE_IDLE_MAX_S: u32 = 32_767;

/// Unanswered keepalive probes after which the kernel drops a connection.
pub const KEEPALIVE_PROBES: u32 = 6;

/// Turns on TCP keepalive for `stream`: probes after `idle_s` idle
/// seconds, then every `max(idle_s / 6, 1)` s; after
/// [`KEEPALIVE_PROBES`] unanswered the kernel drops the connection and a
/// read returns `ETIMEDOUT` (or the ICMP error the probes met).
pub fn set_keepalive(stream: &glommio::net::TcpStream, idle_s: u32) -> io::Result<()> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::time::Duration;
    let idle = idle_s.clamp(1, KEEPALIVE_IDLE_MAX_S);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(u64::from(idle)))
        .with_interval(Duration::from_secs(u64::from((idle / 6).max(1))))
        .with_retries(KEEPALIVE_PROBES);
    // SAFETY: the descriptor is the stream's own, open for as long as the
    // borrow of `stream`, which outlives this call.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    socket2::SockRef::from(&fd).set_tcp_keepalive(&keepalive)
}

/// The peer address of an accepted stream, or the unspecified address when
/// the kernel no longer knows it (the peer already reset).
pub fn peer_of(stream: &glommio::net::TcpStream) -> SocketAddr {
    stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
