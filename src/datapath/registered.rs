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
//! A socket's registration can move to the runtime of the application task that receives
//! for a stack whose reactor has a thread of its own ([`Follow`]), and registers again
//! where it is polled when the runtime it was registered with shuts down.
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

    /// The source changed: its last `Pending` no longer holds.
    pub(crate) fn forget(&self) {
        self.flag.armed.store(false, Ordering::SeqCst);
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
///
/// Its registration may move between runtimes (see [`Follow`]); the socket itself (sends,
/// addresses) stays put.
#[derive(Debug)]
pub(crate) struct RecvSocket {
    sock: Arc<std::net::UdpSocket>,
    reg: Mutex<Arc<Registration>>,
    watch: Watch,
}

/// One registration of a [`RecvSocket`]'s descriptor with one runtime's reactor.
#[derive(Debug)]
struct Registration {
    fd: AsyncFd<Descriptor>,
    /// The runtime registered with.
    runtime: tokio::runtime::Id,
    /// Made for a [`Follow`]ing caller, on the runtime of the application's tasks.
    away: bool,
}

/// The descriptor a registration watches, kept open by the registration itself.
#[derive(Debug)]
struct Descriptor(Arc<std::net::UdpSocket>);

impl AsRawFd for Descriptor {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Registration {
    /// Registers `sock` with the reactor of `runtime`, which must be the current one.
    fn new(
        sock: &Arc<std::net::UdpSocket>,
        runtime: &tokio::runtime::Handle,
        away: bool,
    ) -> io::Result<Arc<Registration>> {
        // `with_interest` is deprecated because an `AsyncFd` over a type that does not own
        // its descriptor could outlive it. `Descriptor` keeps the socket open for as long as
        // the registration lives, and nothing closes or replaces it while registered, which
        // is what the unsafe `register_with_interest` asks a caller to promise; this crate
        // forbids `unsafe`, hence the deprecated twin.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(Descriptor(sock.clone()), Interest::READABLE)?;
        Ok(Arc::new(Registration {
            fd,
            runtime: runtime.id(),
            away,
        }))
    }

    /// Registers `sock` with `to`'s reactor, from inside any runtime or none. tokio panics
    /// when that runtime was built without IO (`enable_io`), which this cannot tell
    /// beforehand: the panic is caught, reported as an error, and the runtime remembered
    /// so that it is not tried again.
    fn new_on(
        sock: &Arc<std::net::UdpSocket>,
        to: &tokio::runtime::Handle,
        away: bool,
    ) -> io::Result<Arc<Registration>> {
        static WITHOUT_IO: Mutex<Vec<tokio::runtime::Id>> = Mutex::new(Vec::new());
        let without_io = || WITHOUT_IO.lock().unwrap_or_else(|p| p.into_inner());
        if without_io().contains(&to.id()) {
            return Err(io::Error::other("the runtime has no IO driver"));
        }
        let _there = to.enter();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Registration::new(sock, to, away)
        }))
        .unwrap_or_else(|_| {
            without_io().push(to.id());
            Err(io::Error::other("the runtime has no IO driver"))
        })
    }
}

thread_local! {
    /// The runtime of the application task receiving on this thread, while a [`Follow`]
    /// guard lives.
    static FOLLOW: std::cell::RefCell<Option<tokio::runtime::Handle>> =
        const { std::cell::RefCell::new(None) };
}

/// Moves the readiness of the sockets a task polls to that task's runtime.
///
/// A stack whose reactor has a thread of its own (the default stack's) registers its
/// sockets with that thread's runtime, whose thread alone then learns of arrivals: each
/// packet for an application task woke the reactor's thread, which woke the task's (two
/// wake-ups between threads per packet, where a socket of the application's own has one).
/// So while an application task receives for such a stack, it holds this guard, and each
/// socket it polls, still registered where it was made, registers with the task's runtime
/// instead (and leaves the other, whose thread then sleeps). Once, not back and forth: a
/// socket away stays with the first runtime that took it while that runtime lives, and
/// tasks of other runtimes are woken from there. When that runtime shuts down, the
/// registration reports so and the next poll registers the socket again, with its
/// caller's runtime (the reactor's, for the reactor or a task without this guard).
///
/// Only a task of a multi-threaded runtime (a blocking one, of `spawn_blocking`, included)
/// takes a socket, and not if that runtime already holds it (the stack was built there) or
/// has no IO driver: a current-thread runtime learns of arrivals only when its one thread
/// parks, and one whose thread blocks (a test calling blocking code) would leave every
/// connection of the stack waiting; a runtime's `block_on` future (`#[tokio::main]`'s own)
/// runs on a thread of its own, woken from the runtime's workers like any other.
pub(crate) struct Follow {
    before: Option<tokio::runtime::Handle>,
    /// A guard sets the thread-local of the thread it was made on: it must not cross an
    /// `.await` (the task may resume on another thread), so it is not `Send`.
    _here: std::marker::PhantomData<*const ()>,
}

impl Follow {
    /// The guard for an application task about to receive for the stack, outside the
    /// stack's runtime; `None` when the caller is not a task of a multi-threaded runtime.
    pub(crate) fn caller() -> Option<Follow> {
        let here = Self::runtime()?;
        Some(Follow {
            before: FOLLOW.with(|f| f.replace(Some(here))),
            _here: std::marker::PhantomData,
        })
    }

    /// Whether [`caller`](Self::caller) would give a guard. Asked before every receive, so
    /// the runtime's flavour is remembered per thread: a thread that runs tasks of a
    /// multi-threaded runtime is one of its workers or blocking threads, and runs no other
    /// runtime's tasks. Ask it before entering the stack's runtime: inside, the caller's
    /// runtime cannot be seen, and a thread first asked there would be remembered as not
    /// following.
    pub(crate) fn would_follow() -> bool {
        thread_local! {
            static MULTI_THREADED: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
        }
        tokio::task::try_id().is_some()
            && MULTI_THREADED.with(|m| {
                *m.get().get_or_insert_with(|| {
                    let multi = Self::runtime().is_some();
                    m.set(Some(multi));
                    multi
                })
            })
    }

    /// The caller's runtime, if the caller is a task of a multi-threaded one.
    fn runtime() -> Option<tokio::runtime::Handle> {
        tokio::task::try_id()?;
        tokio::runtime::Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let before = self.before.take();
        FOLLOW.with(|f| *f.borrow_mut() = before);
    }
}

impl RecvSocket {
    /// Registers `sock` (set non-blocking here) with the current runtime's reactor.
    pub(crate) fn new(sock: std::net::UdpSocket) -> io::Result<RecvSocket> {
        sock.set_nonblocking(true)?;
        let sock = Arc::new(sock);
        let here = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let reg = Registration::new(&sock, &here, false)?;
        Ok(RecvSocket {
            sock,
            reg: Mutex::new(reg),
            watch: Watch::default(),
        })
    }

    /// The registration in use.
    fn reg(&self) -> Arc<Registration> {
        self.reg.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the registration `old` (if it is still the one in use) with one on `to`'s
    /// runtime (`away`: a [`Follow`]ing caller's); the watch's `Pending`, which was `old`'s,
    /// no longer holds. On failure `old` stays in use.
    fn register_again(
        &self,
        old: &Arc<Registration>,
        to: &tokio::runtime::Handle,
        away: bool,
    ) -> io::Result<Arc<Registration>> {
        let mut reg = self.reg.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::ptr_eq(&reg, old) {
            *reg = Registration::new_on(&self.sock, to, away)?;
            self.watch.forget();
        }
        Ok(reg.clone())
    }

    /// The registration to use: first moved to a [`Follow`]ing caller's runtime if it is
    /// still where the socket was made (and that is another runtime). A move that fails
    /// (that runtime shutting down, or without IO) leaves it where it is.
    fn reg_for_caller(&self) -> Arc<Registration> {
        let reg = self.reg();
        if reg.away {
            return reg;
        }
        let Some(to) = FOLLOW.with(|f| f.borrow().clone()) else {
            return reg;
        };
        if to.id() == reg.runtime {
            return reg;
        }
        self.register_again(&reg, &to, true).unwrap_or(reg)
    }

    /// `Ready` once tokio's reactor saw the socket readable (the readiness is kept until an
    /// operation through [`try_io`](Self::try_io) meets `WouldBlock`); registers the waker
    /// otherwise (through the socket's [`Watch`]: every poll of its readiness goes through
    /// here, so tokio's one reader slot always holds the watch's waker). While nothing
    /// arrived since its last `Pending`, answers `Pending` without asking tokio.
    ///
    /// Moves the registration to a [`Follow`]ing caller's runtime, and registers again
    /// where the runtime registered with has shut down: with the following caller's
    /// runtime, else the current one.
    pub(crate) fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let reg = self.reg_for_caller();
        match self.watch.poll(cx, |cx| reg.fd.poll_read_ready(cx)) {
            Poll::Ready(Err(gone)) => {
                // The only error tokio reports here: the runtime is gone.
                let to = FOLLOW.with(|f| f.borrow().clone());
                let reg = to
                    .and_then(|to| self.register_again(&reg, &to, true).ok())
                    .map_or_else(
                        || match tokio::runtime::Handle::try_current() {
                            Ok(here) => self.register_again(&reg, &here, false),
                            Err(_) => Err(gone),
                        },
                        Ok,
                    )?;
                self.watch
                    .poll(cx, |cx| reg.fd.poll_read_ready(cx))
                    .map_ok(drop)
            }
            other => other.map_ok(drop),
        }
    }

    /// One `recvfrom`, clearing the readiness when it finds nothing.
    pub(crate) fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.reg()
            .fd
            .try_io(Interest::READABLE, |s| s.0.recv_from(buf))
    }

    /// Runs `f`, an operation on the descriptor, if tokio holds the socket ready for
    /// `interest`; a `WouldBlock` from `f` clears that readiness.
    pub(crate) fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        self.reg().fd.try_io(interest, |_| f())
    }

    /// Waits until the socket is ready for `interest`; returns the readiness seen. The
    /// future holds the registration it waits on: a caller keeping it across polls drops
    /// it when [`registration`](Self::registration) changes.
    pub(crate) fn ready(&self, interest: Interest) -> impl Future<Output = io::Result<Ready>> {
        let reg = self.reg();
        async move { reg.fd.ready(interest).await.map(|guard| guard.ready()) }
    }

    /// Which registration is in use (equal only to itself), after a move to a
    /// [`Follow`]ing caller's runtime (see [`poll_recv_ready`](Self::poll_recv_ready)).
    pub(crate) fn registration(&self) -> usize {
        Arc::as_ptr(&self.reg_for_caller()) as usize
    }

    /// The address the socket is bound to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }
}

impl AsRawFd for RecvSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for RecvSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
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

    /// How many epoll instances of this process watch `fd`'s socket (matched by inode:
    /// an epoll can still list a closed descriptor's number for a file that lives on).
    fn epoll_watchers(fd: RawFd) -> usize {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let link = link.to_string_lossy();
        let ino: u64 = link
            .strip_prefix("socket:[")
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
            .expect("a socket");
        // An epoll instance can have several descriptors (mio duplicates its own): counted
        // once, by its inode.
        let mut epolls = std::collections::HashSet::new();
        for entry in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
            let Ok(info) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let watches = info.lines().any(|l| {
                let mut words = l.split_whitespace();
                words.next() == Some("tfd:")
                    && words.next() == Some(&fd.to_string())
                    && words
                        .find(|w| w.starts_with("ino:"))
                        .and_then(|w| u64::from_str_radix(&w[4..], 16).ok())
                        == Some(ino)
            });
            let own = info.lines().find_map(|l| l.strip_prefix("ino:"));
            if let (true, Some(own)) = (watches, own) {
                epolls.insert(own.trim().to_string());
            }
        }
        epolls.len()
    }

    /// Waits (at most 5 s) until `sock` polls readable for the caller, following its
    /// runtime when `follow`.
    async fn readable(sock: &RecvSocket, follow: bool) {
        let wait = std::future::poll_fn(|cx| {
            let _guard = follow.then(Follow::caller).flatten();
            sock.poll_recv_ready(cx)
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("an arrival must wake the waiting task")
            .unwrap();
    }

    /// Receives what waits, until the socket is empty (its readiness cleared).
    fn drain(sock: &RecvSocket) -> usize {
        let mut buf = [0u8; 64];
        let mut n = 0;
        while sock.try_recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    /// A socket made on one runtime (as on a dedicated reactor's thread) moves its
    /// registration to a task of a multi-threaded runtime that follows, leaving the first
    /// runtime's epoll, and arrivals wake that task from its own runtime (the first one is
    /// not even running); once that runtime is shut down, the next poll registers the
    /// socket again where it is polled, and arrivals wake again. Without the move, the
    /// registration stays; without the re-registration, the poll after the shutdown fails.
    #[test]
    fn readiness_follows_a_task_and_returns_when_its_runtime_ends() {
        let home = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sock = Arc::new(
            home.block_on(async {
                RecvSocket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            })
            .unwrap(),
        );
        let fd = sock.as_raw_fd();
        let addr = sock.local_addr().unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(epoll_watchers(fd), 1);
        let at_home = sock.registration();
        assert!(Follow::caller().is_none(), "not in a runtime");
        let app = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        assert!(
            app.block_on(async { Follow::caller().is_none() }),
            "a runtime's block_on future is not one of its tasks"
        );
        assert!(
            home.block_on(async { tokio::spawn(async { Follow::caller().is_none() }).await })
                .unwrap(),
            "a task of a current-thread runtime does not take the socket"
        );
        let s = sock.clone();
        let moved = app
            .block_on(app.spawn(async move {
                readable_after(&s, &peer, addr, true).await;
                (s.registration(), peer)
            }))
            .unwrap();
        let (away, peer) = moved;
        assert_ne!(away, at_home, "the registration did not move");
        assert_eq!(
            epoll_watchers(fd),
            1,
            "the first registration was left behind"
        );
        // A second task of the same runtime, or another's, does not move it again.
        let s = sock.clone();
        app.block_on(app.spawn(async move {
            let _guard = Follow::caller();
            let _ = s.poll_recv_ready(&mut Context::from_waker(Waker::noop()));
            assert_eq!(s.registration(), away);
        }))
        .unwrap();
        drop(app);
        let s = sock.clone();
        home.block_on(async move {
            readable_after(&s, &peer, addr, false).await;
        });
        assert_ne!(sock.registration(), away, "not registered again");
        assert_eq!(epoll_watchers(fd), 1);
    }

    /// A socket made on the runtime whose task follows stays registered there (registering
    /// it a second time with the same epoll would fail), and one whose follower's runtime
    /// has no IO driver stays where it was (tokio panics registering there: caught, and
    /// the task goes on); both still wake their task.
    #[test]
    fn readiness_stays_where_it_cannot_move() {
        let app = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (made_here, peer) = app
            .block_on(app.spawn(async move {
                let sock =
                    RecvSocket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
                let addr = sock.local_addr().unwrap();
                let before = sock.registration();
                readable_after(&sock, &peer, addr, true).await;
                assert_eq!(sock.registration(), before, "moved within its own runtime");
                (sock, peer)
            }))
            .unwrap();
        let made_here = Arc::new(made_here);
        let without_io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let s = made_here.clone();
        let before = s.registration();
        for _ in 0..2 {
            let s = s.clone();
            without_io
                .block_on(without_io.spawn(async move {
                    let _guard = Follow::caller().expect("a task of a multi-threaded runtime");
                    let _ = s.poll_recv_ready(&mut Context::from_waker(Waker::noop()));
                    assert_eq!(s.registration(), before, "moved to a runtime without IO");
                }))
                .unwrap();
        }
        // Its own runtime still hears of arrivals.
        let addr = made_here.local_addr().unwrap();
        app.block_on(async move {
            readable_after(&made_here, &peer, addr, false).await;
        });
    }

    /// Sends a datagram to `addr` from `peer` after the caller's first poll of `sock`, and
    /// waits until it wakes the caller; drains it.
    async fn readable_after(
        sock: &RecvSocket,
        peer: &std::net::UdpSocket,
        addr: SocketAddr,
        follow: bool,
    ) {
        {
            let _guard = follow.then(Follow::caller).flatten();
            if follow {
                assert!(_guard.is_some(), "a task of a multi-threaded runtime");
            }
            let first = sock.poll_recv_ready(&mut Context::from_waker(Waker::noop()));
            assert!(first.is_pending(), "nothing sent yet: {first:?}");
        }
        peer.send_to(b"hello", addr).unwrap();
        readable(sock, follow).await;
        assert_eq!(drain(sock), 1);
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
        assert!(!sock.watch.holds(&waker), "never polled");
        assert!(sock
            .poll_recv_ready(&mut Context::from_waker(&waker))
            .is_pending());
        assert!(sock.watch.holds(&waker));
        assert!(!sock.watch.holds(&other), "a wake would not reach it");
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
        assert!(!sock.watch.holds(&waker), "something arrived");
        assert!(sock
            .poll_recv_ready(&mut Context::from_waker(&waker))
            .is_ready());
        let mut buf = [0u8; 16];
        assert_eq!(sock.try_recv_from(&mut buf).unwrap().0, 5);
        assert!(sock.try_recv_from(&mut buf).is_err());
        assert!(sock
            .poll_recv_ready(&mut Context::from_waker(&waker))
            .is_pending());
        assert!(sock.watch.holds(&waker), "drained and registered again");
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
