//! A user's hold on one connection in a stack: every stream operation goes through here,
//! calling the engine in the connection's entry and registering wakers.
//!
//! Reads, writes, readiness and options lock only the connection's own entry (see
//! `stack::table`), so one connection's copy of its data holds up neither the stack's
//! reactor nor any other connection. The stack's lock is taken afterwards, with the entry's
//! let go, only when the operation left something to send (the stack's order of sends and
//! its timers are the stack's), and not even then when the connection is already queued for
//! a transmit pass that will send it.
//! Opening, accepting and letting go are the stack's (`Shared::open`, `Shared::detach`).

use super::clock;
use crate::proto::{self, TcpInfo};
use crate::stack::table::{self, Cell, ConnId, Entry};
use crate::stack::Shared;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{Interest, ReadBuf, Ready};

pub(crate) struct ConnHandle {
    pub shared: Arc<Shared>,
    pub id: ConnId,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The connection's entry, locked on its own.
    cell: Cell,
    /// Options kept beside the engine, for reporting back.
    opts: Mutex<HandleOpts>,
}

#[derive(Default)]
struct HandleOpts {
    /// `SO_LINGER` as set, in whole seconds as the kernel keeps it; only zero changes the
    /// close (see [`ConnHandle::set_linger`]).
    linger: Option<Duration>,
    /// The delayed-ACK time `set_quickack(true)` put aside, for `set_quickack(false)`.
    delayed_ack: Option<Duration>,
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local)
            .field("peer", &self.remote)
            .finish()
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "rawtcp: the stack shut down",
    )
}

impl ConnHandle {
    /// A handle on connection `id`, whose entry is `cell`; `linger` is the `SO_LINGER` value
    /// it was made with.
    pub fn new(
        shared: Arc<Shared>,
        (id, cell): (ConnId, Cell),
        local: SocketAddr,
        remote: SocketAddr,
        linger: Option<Duration>,
    ) -> ConnHandle {
        ConnHandle {
            shared,
            id,
            local,
            remote,
            cell,
            opts: Mutex::new(HandleOpts {
                linger,
                delayed_ack: None,
            }),
        }
    }

    fn opts(&self) -> MutexGuard<'_, HandleOpts> {
        self.opts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on this connection's entry with only the entry's lock held. A panic inside
    /// (a bug in the engine, met by the application's call) does not leave the connection
    /// half-updated for the stack to trip on: it is poisoned — reset, its peer sent a RST,
    /// `ConnectionAborted` from then on — and the panic goes on in the calling task, whose
    /// call it was. A connection the stack has forgotten (it shut down) is an error.
    fn own<R>(&self, f: impl FnOnce(&mut Entry) -> R) -> io::Result<R> {
        let mut e = table::lock(&self.cell);
        if e.forgotten {
            return Err(gone());
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut e))) {
            Ok(r) => Ok(r),
            Err(panic) => {
                let p = e.poison();
                drop(e);
                self.shared.lock().poisoned(self.id, p);
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// What the operation just made due: sent from the calling task when nothing else of
    /// the connection may be on its way, else queued for the reactor (see
    /// [`Shared::output_due`]); `written` is what the operation added to the send queue.
    /// Takes the stack's lock: called with the entry's let go.
    fn send_due(&self, written: usize) {
        let tx = {
            let mut inner = self.shared.lock();
            let due = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.shared.output_due(&mut inner, self.id, written)
            }));
            match due {
                Ok(tx) => tx,
                Err(panic) => {
                    // A panic while building what is due (a tap's, say): the connection is
                    // poisoned as for one in the engine, and the panic goes on in the
                    // calling task.
                    inner.poison(self.id);
                    drop(inner);
                    std::panic::resume_unwind(panic)
                }
            }
        };
        if let Some(tx) = tx {
            tx.send();
        }
    }

    /// Queues the connection for the reactor's transmit pass (a changed setting may let
    /// something go). Takes the stack's lock: called with the entry's let go.
    fn mark_dirty(&self) {
        self.shared.lock().mark_dirty(self.id);
    }

    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.poll_read_inner(cx, buf, false)
    }

    pub fn poll_peek(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<usize>> {
        self.poll_read_inner(cx, buf, true)
            .map_ok(|()| buf.filled().len())
    }

    /// Polls `attempt`; while it is pending, this task receives for the stack (see
    /// `stack::rx`): once now — what it waits for may be waiting in the datapath — and, queued,
    /// when the next packets arrive.
    pub fn wait_inline<T>(
        shared: &Shared,
        cx: &mut Context<'_>,
        attempt: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        Self::wait_inline_as(shared, cx, true, None, attempt)
    }

    /// [`wait_inline`](Self::wait_inline), queued to receive only when `queue` says so (an
    /// accept, on a stack that hands arrivals to accepts: see
    /// [`Shared::accept_receives`]); it receives what is there either way. `reading` names
    /// the connection `attempt` reads: data delivered to it does not wake this task, which
    /// polls `attempt` again after any delivery (see `reactor::Out::reading`).
    pub fn wait_inline_as<T>(
        shared: &Shared,
        cx: &mut Context<'_>,
        queue: bool,
        reading: Option<ConnId>,
        mut attempt: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let mut result = attempt(cx);
        if result.is_pending() {
            let reading = reading.map(|id| (id, cx.waker()));
            // Both run: `|` does not stop at the first.
            if shared.receive_inline_for(reading) | shared.receive_handed_over() {
                result = attempt(cx);
            }
        }
        if result.is_ready() {
            // The task may still be queued to receive (on other shards, or here if something
            // else woke it while another task was handed the packets).
            shared.wait_ended(cx.waker());
        } else if queue {
            shared.wait_to_receive(cx.waker());
        }
        result
    }

    /// [`until_ready`] on this connection's stack.
    pub async fn until_ready<T>(&self, poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
        until_ready(&self.shared, poll).await
    }

    fn poll_read_inner(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        peek: bool,
    ) -> Poll<io::Result<()>> {
        Self::wait_inline_as(&self.shared, cx, true, Some(self.id), |cx| {
            self.poll_read_once(cx, buf, peek)
        })
    }

    fn poll_read_once(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        peek: bool,
    ) -> Poll<io::Result<()>> {
        let read = self.own(|e| {
            let dst = buf.initialize_unfilled();
            let r = if peek {
                e.conn.peek(dst)
            } else {
                e.conn.recv(dst)
            };
            match r {
                Ok(n) => {
                    buf.advance(n);
                    Poll::Ready(Ok(e.needs_stack()))
                }
                Err(proto::Error::WouldBlock) => {
                    let held = clock::waker(&self.shared, cx);
                    e.register_reader(held.as_ref().unwrap_or(cx.waker()), !peek);
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err.into())),
            }
        })?;
        read.map_ok(|due| {
            if due {
                // A window update, sent from here as the kernel does from `recv`.
                self.send_due(0);
            }
        })
    }

    /// Reads without waiting: `WouldBlock` when nothing is readable.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, due) = self.own(|e| -> io::Result<(usize, bool)> {
            if buf.is_empty() && !e.conn.can_recv() {
                // As `recv` with no room answers when nothing is readable.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = e.conn.recv(buf)?;
            Ok((n, e.needs_stack()))
        })??;
        if due {
            self.send_due(0);
        }
        Ok(n)
    }

    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    pub fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A full send buffer empties as ACKs arrive: receive them here.
        Self::wait_inline(&self.shared, cx, |cx| self.write_vectored(bufs, Some(cx)))
    }

    /// Writes without waiting: `WouldBlock` when the send buffer is full.
    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self.write_vectored(bufs, None) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Queues as much of `bufs` as fits; `Pending` (registering `cx`'s waker) when nothing
    /// fits.
    fn write_vectored(
        &self,
        bufs: &[io::IoSlice<'_>],
        cx: Option<&Context<'_>>,
    ) -> Poll<io::Result<usize>> {
        // What was queued, and whether the connection must still be given to a transmit
        // pass (it is not queued for one already).
        let written = self.own(|e| {
            let mut total = 0;
            for b in bufs.iter().filter(|b| !b.is_empty()) {
                match e.conn.send(b) {
                    Ok(n) => {
                        total += n;
                        if n < b.len() {
                            break;
                        }
                    }
                    Err(proto::Error::WouldBlock) if total == 0 => {
                        if let Some(cx) = cx {
                            let held = clock::waker(&self.shared, cx);
                            e.writers.register(held.as_ref().unwrap_or(cx.waker()));
                        }
                        return Poll::Pending;
                    }
                    Err(err) if total == 0 => return Poll::Ready(Err(err.into())),
                    Err(_) => break,
                }
            }
            if total == 0 {
                // Nothing to write still reports errors (a reset or shutdown connection).
                if let Err(err) = e.conn.send(&[]) {
                    return Poll::Ready(Err(err.into()));
                }
            }
            // Queued for a transmit pass, which has not begun on this connection (it
            // unqueues it under this lock first): the pass sends what was just written.
            Poll::Ready(Ok((total, total > 0 && !e.dirty)))
        })?;
        written.map_ok(|(total, due)| {
            if due {
                // An idle connection sends from this task, as the kernel does from `write`;
                // a busy one (data already queued or in flight) leaves it to the reactor, in
                // order.
                self.send_due(total);
            }
            total
        })
    }

    /// Sends FIN after the data written so far. Idempotent; succeeds after a reset.
    pub fn shutdown(&self) -> io::Result<()> {
        self.own(|e| e.conn.shutdown())??;
        self.send_due(0);
        Ok(())
    }

    /// The readiness of `interest` now, in the kernel's terms (`epoll` as tokio maps it):
    /// `READABLE` when a read would not block (data, end of stream, an error); `READ_CLOSED`
    /// once the peer's FIN arrived (with data still queued too) or the connection failed;
    /// `WRITABLE` when a write would not block (room, or an error to report, or after our
    /// own shutdown: the write fails at once); `WRITE_CLOSED` once both directions are
    /// closed or the connection failed (the kernel's hang-up); `ERROR` while an error is
    /// pending that `take_error` has not taken; `PRIORITY` while urgent data is unread.
    fn ready_now(e: &Entry, interest: Interest) -> Ready {
        let c = &e.conn;
        let failed = c.error().is_some();
        let fin_in = failed
            || matches!(
                c.state(),
                proto::State::CloseWait
                    | proto::State::LastAck
                    | proto::State::Closing
                    | proto::State::TimeWait
                    | proto::State::Closed
            );
        let mut ready = Ready::EMPTY;
        if interest.is_readable() {
            if c.can_recv() {
                ready |= Ready::READABLE;
            }
            if fin_in {
                ready |= Ready::READ_CLOSED;
            }
        }
        if interest.is_writable() {
            if c.can_send() {
                ready |= Ready::WRITABLE;
            }
            if failed || (fin_in && c.is_write_closed()) {
                ready |= Ready::WRITE_CLOSED;
            }
        }
        if interest.is_error() && failed && !e.error_taken {
            ready |= Ready::ERROR;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if interest.is_priority() {
            if c.urgent_mark().is_some() {
                ready |= Ready::PRIORITY;
            }
            if fin_in {
                ready |= Ready::READ_CLOSED;
            }
        }
        ready
    }

    /// The readiness of `interest` now, without waiting (see [`Self::ready_now`]).
    pub fn readiness(&self, interest: Interest) -> io::Result<Ready> {
        self.own(|e| Self::ready_now(e, interest))
    }

    /// Ready when any of `interest` is (see [`Self::ready_now`]).
    pub fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<Ready>> {
        Self::wait_inline(&self.shared, cx, |cx| self.poll_ready_once(cx, interest))
    }

    fn poll_ready_once(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<Ready>> {
        match self.own(|e| {
            let ready = Self::ready_now(e, interest);
            if ready.is_empty() {
                Self::register(&self.shared, e, cx, interest);
            }
            ready
        }) {
            Ok(ready) if ready.is_empty() => Poll::Pending,
            r => Poll::Ready(r),
        }
    }

    /// Registers `cx` to be woken at the next change of the connection's readiness for
    /// `interest`, whatever it is now.
    pub fn register_next(&self, cx: &mut Context<'_>, interest: Interest) -> io::Result<()> {
        self.own(|e| Self::register(&self.shared, e, cx, interest))
    }

    fn register(shared: &Shared, e: &mut Entry, cx: &mut Context<'_>, interest: Interest) {
        let held = clock::waker(shared, cx);
        let waker = held.as_ref().unwrap_or(cx.waker());
        if interest.is_readable() || interest.is_error() || is_priority(interest) {
            e.register_reader(waker, false);
        }
        if interest.is_writable() || interest.is_error() {
            e.writers.register(waker);
        }
    }

    /// Ready once the handshake finished; the connection's error if it failed.
    pub fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Self::wait_inline(&self.shared, cx, |cx| self.poll_connected_once(cx))
    }

    fn poll_connected_once(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let connected = self.own(|e| {
            if let Some(err) = e.conn.error() {
                return Poll::Ready(Err(err.into()));
            }
            match e.conn.state() {
                proto::State::SynSent | proto::State::SynReceived => {
                    let held = clock::waker(&self.shared, cx);
                    e.writers.register(held.as_ref().unwrap_or(cx.waker()));
                    Poll::Pending
                }
                proto::State::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
                _ => Poll::Ready(Ok(())),
            }
        });
        connected.unwrap_or_else(|e| Poll::Ready(Err(e)))
    }

    pub fn info(&self) -> io::Result<TcpInfo> {
        self.own(|e| e.conn.info())
    }

    pub fn nodelay(&self) -> io::Result<bool> {
        self.own(|e| e.conn.nodelay())
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        let queued = self.own(|e| {
            e.conn.set_nodelay(nodelay);
            e.conn.send_queue() > 0
        })?;
        // Data Nagle held back may go now; with nothing queued there is nothing to send
        // and no reason to wake the reactor (a new connection sets this first thing).
        if nodelay && queued {
            self.mark_dirty();
        }
        Ok(())
    }

    pub fn congestion(&self) -> io::Result<proto::cc::Algorithm> {
        self.own(|e| e.conn.congestion().clone())
    }

    pub fn set_congestion(&self, algorithm: proto::cc::Algorithm) -> io::Result<()> {
        self.own(|e| e.conn.set_congestion(algorithm))?;
        self.mark_dirty();
        Ok(())
    }

    pub fn ttl(&self) -> io::Result<u32> {
        self.own(|e| u32::from(e.ttl))
    }

    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = u8::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "TTL must be 1..=255"))?;
        self.own(|e| e.ttl = ttl)
    }

    /// `SO_LINGER` as set.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.own(|_| ())?;
        Ok(self.opts().linger)
    }

    /// `SO_LINGER`: kept in whole seconds, as the kernel keeps it, so that less than a second
    /// is zero; zero makes dropping the stream reset it. Other values keep the graceful
    /// close, which never blocks.
    pub fn set_linger(&self, dur: Option<Duration>) -> io::Result<()> {
        let linger = dur.map(|d| Duration::from_secs(d.as_secs()));
        self.own(|e| e.zero_linger = linger == Some(Duration::ZERO))?;
        self.opts().linger = linger;
        Ok(())
    }

    /// Whether every segment is acknowledged at once (no delayed ACK).
    pub fn quickack(&self) -> io::Result<bool> {
        self.own(|e| e.conn.config().delayed_ack.is_zero())
    }

    /// `TCP_QUICKACK`: `true` turns the delayed ACK off (an ACK being delayed leaves now);
    /// `false` turns it back on with the time it had (40 ms when it had none).
    pub fn set_quickack(&self, quickack: bool) -> io::Result<()> {
        let mut opts = self.opts();
        let flush = self.own(|e| {
            let current = e.conn.config().delayed_ack;
            if quickack {
                if !current.is_zero() {
                    opts.delayed_ack = Some(current);
                    e.conn.set_delayed_ack(Duration::ZERO);
                    return true;
                }
            } else if current.is_zero() {
                let delay = opts
                    .delayed_ack
                    .take()
                    .unwrap_or(proto::Config::default().delayed_ack);
                e.conn.set_delayed_ack(delay);
            }
            false
        })?;
        if flush {
            // An ACK being delayed leaves now.
            self.mark_dirty();
        }
        Ok(())
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.own(|e| {
            if e.error_taken {
                return None;
            }
            e.conn.error().map(|err| {
                e.error_taken = true;
                err.into()
            })
        })
    }

    pub fn urgent_mark(&self) -> io::Result<Option<usize>> {
        self.own(|e| e.conn.urgent_mark())
    }

    pub fn set_keepalive(&self, keepalive: Option<proto::Keepalive>) -> io::Result<()> {
        let now = self.shared.now();
        self.own(|e| e.conn.set_keepalive(keepalive, now))?;
        self.mark_dirty();
        Ok(())
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.shared.detach(self.id);
    }
}

/// Awaits `poll` (which waits inline: see [`ConnHandle::wait_inline`]) as one of the stack's
/// futures: `accept`, `ready`, `peek`, `connect`. Dropped before it completes (an aborted
/// task, a `select!` branch that lost), its task is marked in the stack's receive queue as
/// no longer waiting (`Shared::wait_given_up`), so that packets handed to it wake the
/// reactor too rather than wait for a task that may never take them up. A `read` through
/// `AsyncRead` has no future of the stack's to tell it has been given up: a hand-over to it
/// wakes the reactor as well once it is a millisecond old, and its watchdog takes up what
/// is left within 10 ms.
pub(crate) async fn until_ready<T>(
    shared: &Shared,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> T {
    /// The waker of the last poll that left the task waiting.
    struct Waiting<'a> {
        shared: &'a Shared,
        waker: Option<std::task::Waker>,
    }
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            if let Some(w) = &self.waker {
                self.shared.wait_given_up(w);
            }
        }
    }
    let mut waiting = Waiting {
        shared,
        waker: None,
    };
    std::future::poll_fn(|cx| {
        let r = poll(cx);
        if r.is_ready() {
            waiting.waker = None;
        } else if !waiting
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            // Polled with another waker (the future moved to another task): the wait
            // queued under the old one is given up.
            if let Some(old) = waiting.waker.replace(cx.waker().clone()) {
                waiting.shared.wait_given_up(&old);
            }
        }
        r
    })
    .await
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_priority(interest: Interest) -> bool {
    interest.is_priority()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_priority(_: Interest) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use crate::datapath::udp::UdpDatapath;
    use crate::Stack;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// With the stack's lock held (as the reactor holds it through a batch), a connection's
    /// readiness, a read of what is there, a peek of it and its options are still answered:
    /// they lock only the connection's own entry. Before entries had locks of their own,
    /// each of these waited for the batch to end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_and_readiness_do_not_wait_for_the_stack() {
        let stack = Stack::builder()
            .datapath(UdpDatapath::new().expect("udp datapath"))
            .shards(1)
            .build()
            .expect("stack");
        let listener = stack.bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let (client, accepted) = tokio::join!(stack.connect(addr), listener.accept());
        let (mut client, (mut server, _)) = (client.expect("connect"), accepted.expect("accept"));
        // A first exchange arms what a read arms once (the timer that gives an idle
        // connection's buffers back), which is the stack's to schedule.
        client.write_all(b"first").await.expect("write");
        let mut first = [0u8; 5];
        server.read_exact(&mut first).await.expect("read");
        client.write_all(b"hello").await.expect("write");
        server.readable().await.expect("readable");

        let shared = std::sync::Arc::clone(stack.shared());
        let held = shared.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut cx = Context::from_waker(Waker::noop());
            let ready = matches!(server.poll_read_ready(&mut cx), Poll::Ready(Ok(())));
            let mut peeked = [0u8; 5];
            let peek = match server.poll_peek(&mut cx, &mut tokio::io::ReadBuf::new(&mut peeked)) {
                Poll::Ready(Ok(n)) => Some(n),
                _ => None,
            };
            let mut buf = [0u8; 5];
            let read = server.try_read(&mut buf).ok();
            let options = (server.nodelay().is_ok(), server.info().is_ok());
            let no_error = server.take_error().is_ok_and(|e| e.is_none());
            tx.send((ready, peek, read, buf, options, no_error))
                .expect("send");
            server
        });
        let got = rx.recv_timeout(Duration::from_secs(10));
        drop(held);
        let (ready, peek, read, buf, options, no_error) =
            got.expect("an operation on one connection waited for the stack's lock");
        assert!(ready, "readable");
        assert_eq!(peek, Some(5));
        assert_eq!(read, Some(5));
        assert_eq!(&buf, b"hello");
        assert_eq!(options, (true, true));
        assert!(no_error);
        drop(reader.join().expect("reader"));
    }
}
