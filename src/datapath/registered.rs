//! A datagram socket (UDP, or raw IP) registered with tokio's reactor for readability alone.
//!
//! `tokio::net::UdpSocket` registers for writability as well, with edge-triggered epoll.
//! Linux then reports the socket writable each time a datagram it sent is freed
//! (`sock_wfree` → `sock_def_write_space`): one epoll event per packet sent, for nobody,
//! since the datapaths send with direct non-blocking calls and never wait to write. Each such
//! event wakes a parked runtime thread (on a 2-core machine, a context switch or two per
//! packet). RecvSocket for readability alone, the kernel still calls the socket's wait
//! queue, but epoll drops the event for want of interest, and nothing wakes.
//!
//! Errors (`EPOLLERR`, the ICMP errors the UDP datapath reads from the error queue) are
//! reported by epoll whatever the interest, and tokio turns them into `Ready::ERROR`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::task::{Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};

/// A non-blocking datagram socket in tokio's reactor, for readability and errors only.
#[derive(Debug)]
pub(crate) struct RecvSocket(AsyncFd<std::net::UdpSocket>);

impl RecvSocket {
    /// Registers `sock` (set non-blocking here) with the current runtime's reactor.
    pub(crate) fn new(sock: std::net::UdpSocket) -> io::Result<RecvSocket> {
        sock.set_nonblocking(true)?;
        // `with_interest` is deprecated because an `AsyncFd` over a type that does not own
        // its descriptor could outlive it. `std::net::UdpSocket` owns its descriptor, and
        // nothing here replaces or closes it while registered (no `get_mut`, no
        // `into_inner`), which is what the unsafe `register_with_interest` asks a caller to
        // promise; this crate forbids `unsafe`, hence the deprecated twin.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(sock, Interest::READABLE)?;
        Ok(RecvSocket(fd))
    }

    /// `Ready` once tokio's reactor saw the socket readable (the readiness is kept until an
    /// operation through [`try_io`](Self::try_io) meets `WouldBlock`); registers the waker
    /// otherwise.
    pub(crate) fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx).map_ok(drop)
    }

    /// One `recvfrom`, clearing the readiness when it finds nothing.
    pub(crate) fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.try_io(Interest::READABLE, |s| s.recv_from(buf))
    }

    /// Runs `f`, an operation on the descriptor, if tokio holds the socket ready for
    /// `interest`; a `WouldBlock` from `f` clears that readiness.
    pub(crate) fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        self.0.try_io(interest, |_| f())
    }

    /// Waits until the socket is ready for `interest`; returns the readiness seen.
    pub(crate) fn ready(&self, interest: Interest) -> impl Future<Output = io::Result<Ready>> + '_ {
        let ready = self.0.ready(interest);
        async move { ready.await.map(|guard| guard.ready()) }
    }

    /// The address the socket is bound to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

impl AsRawFd for RecvSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for RecvSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.get_ref().as_fd()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The event mask an epoll instance of this process watches `fd` with, from
    /// `/proc/self/fdinfo` (lines `tfd: <fd> events: <hex mask> ...`).
    fn epoll_events(fd: RawFd) -> Option<u32> {
        for entry in std::fs::read_dir("/proc/self/fdinfo").ok()?.flatten() {
            let Ok(info) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            for line in info.lines() {
                let mut words = line.split_whitespace();
                if words.next() != Some("tfd:") || words.next() != Some(&fd.to_string()) {
                    continue;
                }
                if words.next() == Some("events:") {
                    return u32::from_str_radix(words.next()?, 16).ok();
                }
            }
        }
        None
    }

    const EPOLLIN: u32 = 0x1;
    const EPOLLOUT: u32 = 0x4;

    #[tokio::test]
    async fn registered_for_reading_alone() {
        let ours = RecvSocket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let events = epoll_events(ours.as_raw_fd()).expect("registered with an epoll");
        assert_eq!(events & EPOLLIN, EPOLLIN, "events {events:#x}");
        assert_eq!(events & EPOLLOUT, 0, "events {events:#x}");
        // What the check tells apart: tokio's own socket watches writability too.
        let tokios = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let events = epoll_events(tokios.as_raw_fd()).expect("registered with an epoll");
        assert_eq!(events & EPOLLOUT, EPOLLOUT, "events {events:#x}");
    }

    #[tokio::test]
    async fn readable_after_a_datagram_and_cleared_by_would_block() {
        let sock = RecvSocket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"hello", sock.local_addr().unwrap()).unwrap();
        std::future::poll_fn(|cx| sock.poll_recv_ready(cx))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = sock.try_recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"hello"[..], peer.local_addr().unwrap())
        );
        let e = sock.try_recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // The readiness is cleared: a poll now waits.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(sock.poll_recv_ready(&mut cx).is_pending());
    }
}
