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
//!
//! A socket's readiness is polled through a [`Watch`], which remembers whether the
//! `Pending` it last saw still holds and then answers `Pending` itself. A datapath with
//! several sockets, woken because one of them has something, does not ask tokio about each
//! of the others again.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};

/// What a [`Watch`] registers in place of its caller's waker: it notes the wake, then
/// passes it on.
#[derive(Debug, Default)]
struct Flag {
    /// A poll through the watch answered `Pending` and registered this flag.
    armed: AtomicBool,
    /// Woken since the watch last cleared it.
    fired: AtomicBool,
    /// The caller's waker, woken in turn.
    outer: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::SeqCst);
        let outer = self.outer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = outer.as_ref() {
            w.wake_by_ref();
        }
    }
}

/// Polls one source of readiness (a socket's, a future's: always the same one, or a new one
/// only after the last answered `Ready`) with a waker of its own, which wakes the caller's
/// in turn, and so knows whether the `Pending` it last saw still holds: nothing woke it
/// since, and the caller's waker is the one it passes wakes on to. Polling the source
/// again could then only give `Pending` once more, and the watch answers so without it.
#[derive(Debug)]
pub(crate) struct Watch {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Default for Watch {
    fn default() -> Watch {
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        Watch { flag, waker }
    }
}

impl Watch {
    /// Polls the source with `poll`, handing it a context whose waker is this watch's, and
    /// remembers whether it answered `Pending`; answers `Pending` without polling while the
    /// last `Pending` holds for `cx`'s waker (see [`holds`](Self::holds)).
    pub(crate) fn poll<T>(
        &self,
        cx: &Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if self.holds(cx.waker()) {
            return Poll::Pending;
        }
        // Cleared before the poll: a wake from here on either shows in the poll's answer
        // (the readiness was set before the wake) or sets `fired` again.
        self.flag.armed.store(false, Ordering::SeqCst);
        self.flag.fired.store(false, Ordering::SeqCst);
        {
            let mut outer = self.flag.outer.lock().unwrap_or_else(|p| p.into_inner());
            if !outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *outer = Some(cx.waker().clone());
            }
        }
        let answer = poll(&mut Context::from_waker(&self.waker));
        if answer.is_pending() {
            self.flag.armed.store(true, Ordering::SeqCst);
        }
        answer
    }

    /// Whether the last poll answered `Pending`, nothing has woken the watch since, and a
    /// wake would reach `waker`: polling again now would answer `Pending` too.
    fn holds(&self, waker: &Waker) -> bool {
        if !self.flag.armed.load(Ordering::SeqCst) || self.flag.fired.load(Ordering::SeqCst) {
            return false;
        }
        let outer = self.flag.outer.lock().unwrap_or_else(|p| p.into_inner());
        outer.as_ref().is_some_and(|w| w.will_wake(waker))
    }
}

/// A non-blocking datagram socket in tokio's reactor, for readability and errors only.
#[derive(Debug)]
pub(crate) struct RecvSocket(AsyncFd<std::net::UdpSocket>, Watch);

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
        Ok(RecvSocket(fd, Watch::default()))
    }

    /// `Ready` once tokio's reactor saw the socket readable (the readiness is kept until an
    /// operation through [`try_io`](Self::try_io) meets `WouldBlock`); registers the waker
    /// otherwise (through the socket's [`Watch`]: every poll of its readiness goes through
    /// here, so tokio's one reader slot always holds the watch's waker). While nothing
    /// arrived since its last `Pending`, answers `Pending` without asking tokio.
    pub(crate) fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.1
            .poll(cx, |cx| self.0.poll_read_ready(cx))
            .map_ok(drop)
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

    /// Counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A socket's `Pending` holds until a datagram arrives, and only for the waker a wake
    /// would reach; the arrival wakes the caller's waker through the watch.
    #[tokio::test]
    async fn a_pending_holds_until_something_arrives() {
        let sock = RecvSocket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let other = Waker::from(Arc::new(Count(Default::default())));
        assert!(!sock.1.holds(&waker), "never polled");
        assert!(sock
            .poll_recv_ready(&mut Context::from_waker(&waker))
            .is_pending());
        assert!(sock.1.holds(&waker));
        assert!(!sock.1.holds(&other), "a wake would not reach it");
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"hello", sock.local_addr().unwrap()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while count.0.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the arrival woke no one"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(!sock.1.holds(&waker), "something arrived");
        assert!(sock
            .poll_recv_ready(&mut Context::from_waker(&waker))
            .is_ready());
        let mut buf = [0u8; 16];
        assert_eq!(sock.try_recv_from(&mut buf).unwrap().0, 5);
        assert!(sock.try_recv_from(&mut buf).is_err());
        assert!(sock
            .poll_recv_ready(&mut Context::from_waker(&waker))
            .is_pending());
        assert!(sock.1.holds(&waker), "drained and registered again");
    }

    /// While its last `Pending` holds, a watch answers `Pending` without polling the
    /// source; a wake, or another caller's waker, has it poll again.
    #[test]
    fn a_holding_watch_does_not_poll_its_source() {
        let watch = Watch::default();
        let waker = Waker::from(Arc::new(Count(Default::default())));
        let other = Waker::from(Arc::new(Count(Default::default())));
        let polls = std::cell::Cell::new(0);
        let pending = |_: &mut Context<'_>| {
            polls.set(polls.get() + 1);
            Poll::<()>::Pending
        };
        let cx = Context::from_waker(&waker);
        assert!(watch.poll(&cx, pending).is_pending());
        assert!(watch.poll(&cx, pending).is_pending());
        assert_eq!(polls.get(), 1, "polled while its Pending held");
        assert!(watch
            .poll(&Context::from_waker(&other), pending)
            .is_pending());
        assert_eq!(polls.get(), 2, "another waker's poll must reach the source");
        watch.waker.wake_by_ref();
        assert!(watch
            .poll(&Context::from_waker(&other), pending)
            .is_pending());
        assert_eq!(polls.get(), 3, "a wake must let the next poll through");
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
