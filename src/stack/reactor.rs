//! The reactor task: receive a batch, have the endpoint route each segment and carry out
//! its decision (deliver, make the connection a SYN asked for, answer with a RST), fire due
//! timers, transmit what every touched connection has due and report each one's status
//! back to the endpoint, send the batch, sleep until the next packet or deadline (or the
//! watchdog's, while tasks wait to receive: see [`super::rx`]).
//!
//! Receiving and delivering ([`receive`], [`deliver`]) and transmitting ([`Out`]) are free
//! of the reactor itself: an application task that waits for packets runs them too.

use super::rx::{RxState, LINGER, WATCHDOG};
use super::table::{Claim, ConnId, Entry, Waiting};
use super::{Direction, Inner, Shared, TapEvent};
use crate::datapath::Batch;
use crate::proto::endpoint::{Accept, Route};
use crate::proto::recv::SHARE_MIN;
use crate::proto::{Connection, Instant, SegmentKind, State};
use crate::wire::{self, TcpRepr, TCP_MAX_HEADER_LEN};
use bytes::Bytes;
use std::cmp::Reverse;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Packets per receive or send batch.
const BATCH: usize = 64;
/// Segments a connection sends in one turn of a transmit pass before the other connections
/// due get theirs (see [`Out::transmit_dirty`]): one reactor batch.
pub(crate) const TX_BUDGET: usize = BATCH;
/// Rounds of work before the reactor yields to other tasks on its runtime.
const ROUNDS_PER_POLL: usize = 16;
/// Largest IP packet the reactor handles (the UDP datapath's loopback maximum).
const MAX_PACKET: usize = 65_535;
/// A transmit slot: the largest packet plus room for headers written in front of it.
pub(crate) const SLOT: usize = MAX_PACKET + 40 + TCP_MAX_HEADER_LEN;

pub(crate) struct Reactor {
    shared: Arc<Shared>,
    tx: Batch,
    sleep: Pin<Box<tokio::time::Sleep>>,
    sleeping_until: Option<Instant>,
    /// When a hand-over last needed the watchdog (see [`super::rx`]).
    watched_at: Option<Instant>,
    /// When a round last received or sent something (read only with busy polling).
    active_at: Option<std::time::Instant>,
    /// When it last saw that a task had taken the sockets' readiness to its runtime
    /// received (`Shared::followed`).
    followed_at: Option<std::time::Instant>,
    /// The next round asks the datapath without readiness: a busy-polling round.
    polling: bool,
}

impl Reactor {
    pub fn new(shared: Arc<Shared>) -> Reactor {
        Reactor {
            shared,
            tx: Batch::new(BATCH, SLOT),
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            sleeping_until: None,
            watched_at: None,
            active_at: None,
            followed_at: None,
            polling: false,
        }
    }
}

impl Future for Reactor {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shared = this.shared.clone();
        for _ in 0..ROUNDS_PER_POLL {
            // Packets handed to a task that has not taken them up for so long (counted
            // below).
            let rescue = shared.rx_wake.left_since(super::rx::STALE);
            shared.rx_wake.set_reactor(cx.waker());
            if shared.backlogged.load(std::sync::atomic::Ordering::SeqCst) {
                // Segments the datapath had no room for, and no task sent since.
                shared.retry_backlog();
            }
            // Receive everything waiting, up to one batch, unless an application task is
            // receiving for the stack right now (it registers for what comes next).
            let mut rx = shared.try_rx();
            // A busy-polling round takes what waits without asking tokio, whose readiness
            // is learnt only when this thread parks.
            let direct = std::mem::take(&mut this.polling);
            let (received, full) = rx
                .as_deref_mut()
                .map_or((false, false), |rx| receive(&shared, rx, direct, false));
            // The reactor runs on the stack's runtime.
            let now = shared.now_here();
            let next = {
                // The round's one turn at the stack's lock: a second, taken before the
                // receive for the bookkeeping below, was where the reactor most often found
                // the lock taken by a writer (a third of the times anyone did, on the
                // default stack's bulk transfer), and each such wait is two thread switches.
                let mut guard = shared.lock();
                let inner = &mut *guard;
                if inner.shutdown {
                    drop(rx);
                    this.shut_down(inner);
                    return Poll::Ready(());
                }
                inner.stats.reactor_polls += 1;
                inner.stats.watchdog_rescues += u64::from(rescue);
                match &inner.reactor {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => inner.reactor = Some(cx.waker().clone()),
                }
                // The reactor's own sends (the lock is held from here to the send): an
                // application task's do not keep it polling.
                let sent_before = inner.stats.packets_out;
                let mut out = Out::new(&shared, &mut this.tx);
                if let Some(rx) = rx.as_deref_mut() {
                    deliver(inner, rx, &mut out, now);
                }
                drop(rx);
                fire_timers(inner, now);
                out.transmit_dirty(inner, now);
                for (local, remote, carrier, rst) in std::mem::take(&mut inner.poisoned_resets) {
                    emit(
                        &shared,
                        &mut inner.stats,
                        out.batch,
                        (local, remote, carrier),
                        (64, 0),
                        &rst,
                    );
                    out.flush_if_full();
                }
                inner.release_lingering();
                let unbind = std::mem::take(&mut inner.unbind_later);
                // The deadline it will sleep until, the watchdog's included: a task that
                // arms a later timer need not wake it (see `wake_reactor_for_timers`).
                let mut next = this.with_watchdog(next_deadline(inner), now);
                if shared.backlogged.load(std::sync::atomic::Ordering::SeqCst) {
                    let retry = now + super::backlog::RETRY;
                    next = Some(next.map_or(retry, |t| t.min(retry)));
                }
                inner.reactor_deadline = next;
                if direct && received {
                    inner.stats.busy_polled += 1;
                }
                let sent = guard.stats.packets_out != sent_before || !this.tx.is_empty();
                shared.unlock_and_send(guard, &mut this.tx);
                (next, unbind, sent)
            };
            let (next, unbind, sent) = next;
            if shared.busy_poll.is_some() && (received || sent) {
                this.active_at = Some(std::time::Instant::now());
            }
            // Outside the lock: releasing a port may run a tool (the raw datapath's nft).
            for a in unbind {
                shared.datapath.unbind(a);
            }
            if received && full {
                // More may be waiting: go round again.
                continue;
            }
            if received && shared.rx_wake.handed_over() {
                // Packets came while it received and were handed to a task, which found the
                // receive state taken: receive them now rather than at the watchdog.
                continue;
            }
            match next {
                Some(t) if t <= this.shared.now_here() => continue,
                Some(t) => {
                    if this.sleeping_until != Some(t) {
                        this.sleeping_until = Some(t);
                        this.sleep.as_mut().reset(this.shared.to_tokio(t));
                    }
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.sleeping_until = None;
                        continue;
                    }
                    if this.keep_polling() {
                        continue;
                    }
                    return Poll::Pending;
                }
                None => {
                    this.sleeping_until = None;
                    if received || !this.shared.lock().dirty.is_empty() {
                        continue;
                    }
                    if this.keep_polling() {
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
        // Busy: let other tasks run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Reactor {
    /// Whether to go round again instead of sleeping: busy polling (see
    /// [`StackBuilder::busy_poll`](super::StackBuilder::busy_poll)) while the last work is
    /// more recent than its window. Yields the core first, so that any other thread
    /// runnable there goes ahead.
    ///
    /// Not while tasks that took the sockets' readiness to their runtime receive (until
    /// [`FOLLOWED_QUIET`] after the last): their runtime hears of arrivals without a
    /// wake-up of this thread, which the polling saved, and the polling thread only took
    /// a core from them. Measured on the default stack (`RAWTCP_BENCH_STACK=default bench
    /// runtime`, two runs alternating): `connections_from_main` 0.84–0.86 of `tokio::net`
    /// against 0.78–0.83 with the polling, the round trip 8.6–9.1 µs against 9.2–9.6,
    /// connections/s 1.49–1.51 against 1.39.
    fn keep_polling(&mut self) -> bool {
        let (Some(window), Some(at)) = (self.shared.busy_poll, self.active_at) else {
            return false;
        };
        let now = std::time::Instant::now();
        if self
            .shared
            .followed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.followed_at = Some(now);
        }
        if now.duration_since(at) >= window
            || self
                .followed_at
                .is_some_and(|t| now.duration_since(t) < FOLLOWED_QUIET)
        {
            self.active_at = None;
            return false;
        }
        std::thread::yield_now();
        self.polling = true;
        true
    }
}

/// How long after a task that took the sockets' readiness to its runtime last received the
/// reactor goes without busy polling.
const FOLLOWED_QUIET: std::time::Duration = std::time::Duration::from_secs(1);

impl Drop for Reactor {
    /// However the reactor ends — the last `Stack` handle dropped, its runtime shut down, a
    /// panic in a tap — nobody may be left waiting for it.
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if inner.stopped {
            return;
        }
        inner.stopped = true;
        for id in inner.table.ids() {
            let waiting = inner.table.get(id).map(|mut e| {
                if e.conn.error().is_none() && e.conn.state() != State::Closed {
                    e.conn.abort();
                }
                e.take_waiting()
            });
            if let Some(waiting) = waiting {
                waiting.wake();
            }
        }
        for l in inner.table.listeners.values_mut() {
            l.waiters.wake_all();
        }
    }
}

/// Where segments go out: a batch, sent through the datapath whenever it fills.
pub(crate) struct Out<'a> {
    shared: &'a Shared,
    pub batch: &'a mut Batch,
    /// The connection whose reader is the task delivering these packets, and that task's
    /// waker (see [`reading`](Self::reading)).
    reader: Option<(ConnId, &'a Waker)>,
}

impl<'a> Out<'a> {
    pub fn new(shared: &'a Shared, batch: &'a mut Batch) -> Out<'a> {
        Out {
            shared,
            batch,
            reader: None,
        }
    }

    /// Packets are delivered by the task that reads connection `id` (registered with
    /// `waker`) and polls that read again once they are delivered: data for it does not
    /// wake `waker` (see [`settle`]). Woken from within its own poll, the task was polled a
    /// second time for nothing, once per packet of a ping-pong.
    pub fn reading(&mut self, id: ConnId, waker: &'a Waker) {
        self.reader = Some((id, waker));
    }

    /// Sends what the batch holds, in its place in the order of sends (see
    /// [`Shared::send_order`]).
    pub fn flush(&mut self) {
        self.shared.send_in_order(self.batch);
    }

    /// Sends the batch if no slot is left.
    pub fn flush_if_full(&mut self) {
        if self.batch.is_full() {
            self.flush();
        }
    }

    /// Runs every dirty connection's transmit loop and settles its wakers, queues and timer.
    ///
    /// Each connection takes its turn in the order it became due and, once it has filled
    /// [`TX_BUDGET`] segments' worth of batches, queues again behind the others (a turn
    /// that starts in a partly filled batch may send up to a batch more). A bulk flow with
    /// a window of hundreds of segments therefore holds a latency-sensitive connection's
    /// segment back by a batch or two, not by its whole window.
    pub fn transmit_dirty(&mut self, inner: &mut Inner, now: Instant) {
        while let Some(id) = inner.dirty.pop_front() {
            if self.turn(inner, id, now, TX_BUDGET) {
                inner.queue_dirty(id);
            }
        }
    }

    /// Runs connection `id`'s transmit loop to the end and settles it.
    pub fn transmit(&mut self, inner: &mut Inner, id: ConnId, now: Instant) {
        self.turn(inner, id, now, usize::MAX);
    }

    /// Connection `id`'s turn: what it has due, up to `budget` (see
    /// [`emit_due`](Self::emit_due)), then it is settled. Returns whether more may be due.
    fn turn(&mut self, inner: &mut Inner, id: ConnId, now: Instant, budget: usize) -> bool {
        match inner.table.get(id) {
            Some(mut entry) => entry.dirty = false,
            None => return false,
        }
        let more = self.emit_due(inner, id, now, budget);
        let reader = self.reader.filter(|(r, _)| *r == id).map(|(_, w)| w);
        settle(inner, id, reader);
        more
    }

    /// Emits what connection `id` has due, sending full batches on the way, until nothing
    /// is due or `budget` segments' worth of batches were filled. Returns whether it
    /// stopped for the budget (more may be due).
    fn emit_due(&mut self, inner: &mut Inner, id: ConnId, now: Instant, mut budget: usize) -> bool {
        loop {
            let before = self.batch.len();
            let full = emit_into(self.shared, inner, id, now, self.batch);
            budget = budget.saturating_sub(self.batch.len() - before);
            if !full {
                return false;
            }
            self.flush();
            if budget == 0 {
                return true;
            }
        }
    }
}

impl Reactor {
    /// The deadline to sleep until: `next`, or sooner the watchdog's while arriving packets
    /// handed to a waiting task may not be taken up, and for a while after such a hand-over
    /// (see [`super::rx`]). A watchdog deadline already set is kept, so that the timer is not
    /// reset at every round.
    fn with_watchdog(&mut self, next: Option<Instant>, now: Instant) -> Option<Instant> {
        let linger = self.watched_at.is_some_and(|t| now < t + LINGER);
        if self.shared.rx_wake.watch(linger) {
            self.watched_at = Some(now);
        } else if !linger {
            return next;
        }
        let latest = now + WATCHDOG;
        let watchdog = match self.sleeping_until {
            Some(s) if s > now && s <= latest => s,
            _ => latest,
        };
        Some(next.map_or(watchdog, |t| t.min(watchdog)))
    }

    /// The last handle to the stack went: reset every connection, wake every waiter.
    fn shut_down(&mut self, inner: &mut Inner) {
        let now = self.shared.now();
        // Connections may share a claimed address: each is given back once.
        let mut release = std::collections::HashSet::new();
        for id in inner.table.ids() {
            if let Some(mut e) = inner.table.get(id) {
                e.conn.abort();
            }
            Out::new(&self.shared, &mut self.tx).emit_due(inner, id, now, usize::MAX);
            let waiting = inner.table.get(id).map(|mut e| {
                let local = e.conn.local_addr();
                release.extend(std::mem::replace(&mut e.claimed, Claim::None).addr(local));
                e.take_waiting()
            });
            if let Some(waiting) = waiting {
                waiting.wake();
            }
        }
        inner.connect_ports.clear();
        inner.connect_order.clear();
        inner.connect_cursors.clear();
        for a in release {
            self.shared.datapath.unbind(a);
        }
        for l in inner.table.listeners.values_mut() {
            l.waiters.wake_all();
        }
        // Listeners sharing an address (`SO_REUSEPORT`) share its claim: given back once.
        let addrs: std::collections::HashSet<_> = inner
            .table
            .endpoint
            .listeners()
            .map(|(_, l)| l.addr)
            .collect();
        for addr in addrs {
            self.shared.datapath.unbind(addr);
        }
        inner.stopped = true;
        Out::new(&self.shared, &mut self.tx).flush();
    }
}

/// Emits the segments connection `id` has due at `now` into `tx`, each built in place in its
/// slot (the engine copies the payload behind room for the largest headers, which are then
/// written in front of it: one copy per segment), or, where the datapath sends attached
/// payloads, a large segment's headers alone with its payload attached from the send
/// buffer (no copy). Returns true when `tx` filled up and more
/// may be due.
pub(crate) fn emit_into(
    shared: &Shared,
    inner: &mut Inner,
    id: ConnId,
    now: Instant,
    tx: &mut Batch,
) -> bool {
    let Some(mut entry) = inner.table.get(id) else {
        return false;
    };
    let (local, remote, ttl, tos, route) = (
        entry.conn.local_addr(),
        entry.conn.remote_addr(),
        entry.ttl,
        entry.tos,
        entry.route,
    );
    let ip_len = if remote.is_ipv4() { 20 } else { 40 };
    let room = ip_len + TCP_MAX_HEADER_LEN;
    // Both SYNs offered partial checksums: the payload is not summed (see
    // `Config::partial_checksums`).
    let unsummed = entry.conn.partial_checksums();
    // The headers of a packet whose payload lies behind them: with the payload's `sum`, or
    // with the checksum left partial (`None`).
    let headers = |head: &mut [u8], repr: &TcpRepr, payload_len: usize, sum: Option<u16>| {
        let (src, dst) = (local.ip(), remote.ip());
        match sum {
            Some(sum) => {
                wire::ip::emit_tcp_headers_summed(src, dst, ttl, repr, head, (payload_len, sum))
            }
            None => wire::ip::emit_tcp_headers_partial(src, dst, ttl, repr, head, payload_len),
        }
    };
    // A large payload stays in the send buffer, attached to its packet, where the datapath
    // sends a packet from several places.
    let share_min = if shared.sends_attached {
        SHARE_MIN
    } else {
        usize::MAX
    };
    loop {
        let Some(slot) = tx.next_slot() else {
            return true;
        };
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            entry
                .conn
                .poll_transmit_shared(now, &mut slot[room..], share_min)
        }));
        let t = match polled {
            Ok(Some((t, Some((pieces, sum))))) => {
                let start = room - t.repr.header_len() - ip_len;
                let head = &mut slot[start..room];
                let emitted = headers(head, &t.repr, t.payload_len, (!unsummed).then_some(sum))
                    .and_then(|len| with_traffic_class(head, len, tos));
                match emitted {
                    Ok(len) => {
                        tx.commit_attached(start, len, pieces, route);
                        inner.stats.packets_out += 1;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not emit segment"),
                }
                continue;
            }
            Ok(Some((t, None))) => t,
            Ok(None) => return false,
            Err(_) => {
                let p = entry.poison();
                drop(entry);
                inner.poisoned(id, p);
                return false;
            }
        };
        let start = room - t.repr.header_len() - ip_len;
        let packet = &mut slot[start..room + t.payload_len];
        let emitted = if unsummed {
            headers(&mut packet[..room - start], &t.repr, t.payload_len, None).map(|_| packet.len())
        } else {
            wire::emit_tcp_headers_in_place(local.ip(), remote.ip(), ttl, &t.repr, packet)
        }
        .and_then(|len| with_traffic_class(packet, len, tos));
        match emitted {
            Ok(len) => {
                if let Some(tap) = &shared.tap {
                    tap(&TapEvent {
                        direction: Direction::Out,
                        src: local,
                        dst: remote,
                        tcp: &t.repr,
                        payload_len: t.payload_len,
                        packet,
                        kind: Some(t.kind),
                        sample: Some(entry.conn.sample()),
                    });
                }
                tx.commit_via(start, len, route);
                inner.stats.packets_out += 1;
            }
            Err(e) => tracing::warn!(error = %e, "could not emit segment"),
        }
    }
}

/// The receive state a stack starts with.
pub(crate) fn rx_state() -> RxState {
    RxState {
        batch: Batch::new(BATCH, MAX_PACKET),
        parsed: Vec::with_capacity(BATCH),
    }
}

/// Receives what is waiting, up to one batch, registering the stack's receive waker
/// ([`RxWake`](super::rx::RxWake)) when nothing more is — first, when `direct`, what the
/// datapath has without asking for readiness ([`Datapath::recv_now`]); then parses and checksums every
/// packet — the costly, connection-independent part of a packet's processing, done before
/// the stack is locked. A `task` (not the reactor) does not ask a datapath whose last
/// `Pending` still holds (see `RxWake::arm`): the waker is registered already. Returns
/// whether anything came and whether the batch filled.
pub(crate) fn receive(shared: &Shared, rx: &mut RxState, direct: bool, task: bool) -> (bool, bool) {
    shared.rx_wake.receiving();
    rx.batch.clear();
    rx.parsed.clear();
    let mut cx = Context::from_waker(&shared.rx_waker);
    // A task about to wait takes what is there without waiting for readiness to be
    // reported (see `Datapath::recv_now`).
    let mut received = direct && shared.datapath.recv_now(&mut rx.batch);
    // A task skips a datapath that answered `Pending` and has not woken the stack since,
    // where such a `Pending` holds (`Capabilities::pending_holds`; see `RxWake::arm`): on
    // a round trip it is asked just after the task took the answer in and again as the
    // task goes to wait, and each ask looks at every socket. The reactor always asks.
    while !rx.batch.is_full() {
        if task && shared.pending_holds && shared.rx_wake.armed() {
            break;
        }
        let seen = shared.rx_wake.wakes();
        match shared.datapath.poll_recv(&mut cx, &mut rx.batch) {
            Poll::Ready(Ok(())) => {
                received = true;
                if rx.batch.take_drained() {
                    // Nothing more waits, and the waker is registered: as a `Pending`.
                    shared.rx_wake.arm(seen);
                    break;
                }
            }
            Poll::Ready(Err(e)) => {
                tracing::warn!(error = %e, "datapath receive failed");
                break;
            }
            Poll::Pending => {
                shared.rx_wake.arm(seen);
                break;
            }
        }
    }
    let partial = shared.datapath.partial_checksums();
    let verify = shared.datapath.verify_checksums();
    for i in 0..rx.batch.len() {
        if partial {
            wire::complete_partial_checksum(rx.batch.get_mut(i));
        }
        // A carrier the datapath vouches for (a UDP datagram from loopback) brought the
        // packet intact: summing its bytes again would prove nothing.
        let verify = verify
            && !(shared.trust_carriers
                && rx
                    .batch
                    .carrier(i)
                    .is_some_and(|c| shared.datapath.carrier_verified(c)));
        rx.parsed.push(Parsed::of(rx.batch.get(i), verify));
    }
    (received, rx.batch.is_full())
}

/// Delivers every packet [`receive`]d: each routed by the endpoint and handed to its
/// connection (or answered, or made into a connection a SYN asked for).
pub(crate) fn deliver(inner: &mut Inner, rx: &mut RxState, out: &mut Out<'_>, now: Instant) {
    let shared = out.shared;
    for i in 0..rx.batch.len() {
        // A large payload may stay where it arrived: its connection keeps a slice of the
        // slot instead of copying it (`RecvBuffer::insert_shared`), and the batch takes the
        // slot's storage back once that slice is read.
        let arrival = match &rx.parsed[i] {
            Parsed::Tcp { payload, .. }
                if payload.len() >= SHARE_MIN && payload.len() * 2 >= rx.batch.slot_size() =>
            {
                Some(rx.batch.share(i))
            }
            _ => None,
        };
        let urgent = handle_packet(
            shared,
            inner,
            out.batch,
            now,
            (rx.batch.get(i), &rx.parsed[i], arrival.as_ref()),
            rx.batch.carrier(i),
        );
        if let Some(id) = urgent {
            // An ACK reporting a gap or a duplicate goes before the next arrival is
            // processed, so each out-of-order segment gets its own (RFC 5681 §4.2);
            // in-order data is acknowledged once per batch.
            out.transmit(inner, id, now);
        }
        out.flush_if_full();
    }
}

/// An arriving packet's headers, parsed and checksummed (or why it did not parse); its
/// payload stays in the receive batch, at `payload`.
pub(crate) enum Parsed {
    Tcp {
        ip: wire::IpRepr,
        tcp: TcpRepr,
        payload: std::ops::Range<usize>,
    },
    Malformed(wire::WireError),
}

impl Parsed {
    fn of(packet: &[u8], verify_checksum: bool) -> Parsed {
        match wire::parse_tcp_packet(packet, verify_checksum) {
            Ok((ip, tcp, payload)) => {
                // The payload is a subslice of `packet`: its place, by address.
                let start = payload.as_ptr() as usize - packet.as_ptr() as usize;
                Parsed::Tcp {
                    ip,
                    tcp,
                    payload: start..start + payload.len(),
                }
            }
            Err(e) => Parsed::Malformed(e),
        }
    }
}

/// Demultiplexes and delivers one arriving packet (its bytes and its parsed headers).
/// Returns the connection it went to when that connection owes an acknowledgment that
/// should leave at once.
fn handle_packet(
    shared: &Shared,
    inner: &mut Inner,
    tx: &mut Batch,
    now: Instant,
    (packet, parsed, arrival): (&[u8], &Parsed, Option<&Bytes>),
    carrier: Option<SocketAddr>,
) -> Option<ConnId> {
    inner.stats.packets_in += 1;
    let (ip, tcp, payload) = match parsed {
        Parsed::Tcp { ip, tcp, payload } => (ip, *tcp, packet.get(payload.clone())?),
        Parsed::Malformed(e) => {
            inner.stats.malformed += 1;
            tracing::trace!(error = %e, "dropped malformed packet");
            return None;
        }
    };
    let local = SocketAddr::new(ip.dst_addr(), tcp.dst_port);
    let remote = SocketAddr::new(ip.src_addr(), tcp.src_port);
    if let Some(tap) = &shared.tap {
        tap(&TapEvent {
            direction: Direction::In,
            src: remote,
            dst: local,
            tcp: &tcp,
            payload_len: payload.len(),
            packet,
            kind: None,
            sample: None,
        });
    }
    if !shared.datapath.owns(local) {
        // Another program's segment (raw sockets share the host's addresses): not ours to
        // answer.
        return None;
    }
    match inner
        .table
        .endpoint
        .handle(local, remote, &tcp, payload.len(), now)
    {
        Route::Connection(id) => {
            let urgent = inner.engine(id, |e| {
                let accepted = e.conn.on_segment_shared(now, &tcp, payload, arrival);
                if accepted && carrier.is_some() {
                    // Only a segment the connection accepted says where the peer is.
                    e.route = carrier;
                }
                e.conn.ack_urgent()
            })?;
            inner.queue_dirty(id);
            // Reported before the next segment is routed, which the endpoint judges by what
            // this one did: a completed handshake has joined the accept queue, a reset
            // connection's 4-tuple is a stranger's (RFC 9293 §3.10.7.1), one entering
            // TIME-WAIT left the record a new SYN is judged by (RFC 6191). One that finished
            // here has nothing left to send and is forgotten at once.
            inner.report(id);
            urgent.then_some(id)
        }
        Route::Accept(accept) => {
            accept_syn(shared, inner, accept, (local, remote, carrier), &tcp, now);
            None
        }
        Route::Reply(rst) => {
            emit(
                shared,
                &mut inner.stats,
                tx,
                (local, remote, carrier),
                (64, 0),
                &rst,
            );
            None
        }
        Route::SynCookie { listener, iss } => {
            // RFC 4987 §3.6: the SYN+ACK carries the state; nothing is kept.
            let l = inner.table.listeners.get(&listener)?;
            // A cookie's SYN+ACK never offers partial checksums (the cookie cannot hold it);
            // the same settings as the connection its ACK makes (`store_accepted`).
            let cfg = shared.config_for(&l.config, remote.ip(), carrier.unwrap_or(remote));
            let (ttl, tos) = (l.ttl, l.tos);
            if let Some(syn_ack) = Connection::cookie_syn_ack(cfg, local, remote, &tcp, iss, now) {
                emit(
                    shared,
                    &mut inner.stats,
                    tx,
                    (local, remote, carrier),
                    (ttl, tos),
                    &syn_ack,
                );
            }
            None
        }
        Route::CookieAccept { accept, cookie } => {
            // The handshake completed with this ACK: reported at once, so the connection
            // joins the accept queue.
            let made = store_accepted(shared, inner, accept, (remote, carrier), |cfg| {
                Connection::accept_cookie(cfg, local, remote, &cookie, &tcp, payload, now)
            });
            if made {
                inner.report(accept.handle);
            }
            None
        }
        Route::Discard(_) => None,
    }
}

/// A SYN the endpoint gave to a listener's SYN queue: the connection is made and stored
/// under the handle the endpoint chose, or given up if the engine declines the SYN.
fn accept_syn(
    shared: &Shared,
    inner: &mut Inner,
    accept: Accept,
    (local, remote, carrier): (SocketAddr, SocketAddr, Option<SocketAddr>),
    syn: &TcpRepr,
    now: Instant,
) {
    if let Some(old) = accept.replaced {
        // The incarnation in TIME-WAIT goes first: the new one may take its slot.
        inner.forget(old);
    }
    let iss = shared.isn(inner, local, remote);
    store_accepted(shared, inner, accept, (remote, carrier), |cfg| {
        Connection::accept(cfg, local, remote, syn, iss, now)
    });
}

/// Makes a connection for listener `accept.listener` with `make` (given the listener's
/// settings for the peer at `remote`) and stores it under the handle the endpoint chose, with the
/// listener's TTL and traffic class. If the engine declines, the endpoint's record goes the
/// one way every connection leaves. Returns whether the connection was made.
fn store_accepted(
    shared: &Shared,
    inner: &mut Inner,
    accept: Accept,
    (remote, carrier): (SocketAddr, Option<SocketAddr>),
    make: impl FnOnce(crate::proto::Config) -> Option<Connection>,
) -> bool {
    let made = inner.table.listeners.get(&accept.listener).and_then(|l| {
        let conn = make(shared.config_for(&l.config, remote.ip(), carrier.unwrap_or(remote)))?;
        Some(Entry {
            route: carrier,
            tos: l.tos,
            ..Entry::new(conn, l.ttl)
        })
    });
    match made {
        Some(entry) => {
            inner.table.put(accept.handle, entry);
            inner.queue_dirty(accept.handle);
            true
        }
        None => {
            inner.forget(accept.handle);
            false
        }
    }
}

/// After a connection was touched: wake waiters (but `reader`, the task delivering while it
/// reads this connection: see [`Out::reading`]), report it to the endpoint (which moves it
/// through its listener's queues, or has it forgotten once finished), schedule its timer.
pub(crate) fn settle(inner: &mut Inner, id: ConnId, reader: Option<&Waker>) {
    {
        let Some(mut e) = inner.table.get(id) else {
            return;
        };
        let mut waiting = Waiting::default();
        if e.conn.can_recv() {
            waiting.readers = e.take_readers(reader);
        }
        let handshake_over = !matches!(e.conn.state(), State::SynSent | State::SynReceived);
        if e.conn.can_send() || (handshake_over && !e.handshake_seen) {
            // Writers wait for room; a connecting task waits for the handshake to end.
            e.handshake_seen |= handshake_over;
            waiting.writers = e.writers.take();
        }
        drop(e);
        waiting.wake();
    }
    if !inner.report(id) {
        return;
    }
    let Some(mut e) = inner.table.get(id) else {
        return;
    };
    // The stack's buffer memory, counted as each connection is touched; above the limit,
    // connections store no more than they have room for (as Linux under `tcp_mem`).
    let mem = u32::try_from(e.conn.buffer_memory()).unwrap_or(u32::MAX);
    let before = std::mem::replace(&mut e.buffer_memory, mem);
    let total = (inner.buffer_memory + mem as usize).saturating_sub(before as usize);
    let was_short = inner.buffer_memory > inner.max_buffer_memory;
    inner.buffer_memory = total;
    let short = total > inner.max_buffer_memory;
    if short && !was_short {
        inner.stats.memory_pressure += 1;
        tracing::debug!(total, "rawtcp: short of buffer memory");
    }
    e.conn.set_memory_pressure(short);
    let deadline = e.conn.poll_timeout();
    if let Some(d) = deadline {
        if e.scheduled.is_none_or(|s| d < s) {
            e.scheduled = Some(d);
            inner.timers.push(Reverse((d, id)));
        }
    }
}

/// Fires every due timer.
fn fire_timers(inner: &mut Inner, now: Instant) {
    while let Some(&Reverse((t, id))) = inner.timers.peek() {
        if t > now {
            break;
        }
        inner.timers.pop();
        let current = inner.table.get(id).is_some_and(|mut e| {
            // Else superseded by an earlier deadline that already fired.
            let current = e.scheduled == Some(t);
            if current {
                e.scheduled = None;
            }
            current
        });
        if !current {
            continue;
        }
        inner.engine(id, |e| e.conn.handle_timeout(now));
        inner.queue_dirty(id);
    }
    shrink_timers(inner);
}

/// Gives back the timer heap's storage once it is mostly unused: a burst of connections
/// leaves it sized for their peak (several entries each), which would otherwise stay with
/// the stack for good.
fn shrink_timers(inner: &mut Inner) {
    let (len, cap) = (inner.timers.len(), inner.timers.capacity());
    if cap > 4096 && len < cap / 4 {
        inner.timers.shrink_to(len * 2);
    }
}

/// Writes traffic class `tos` into the IP header of the `len`-byte packet just emitted
/// (zero, the default, leaves the header as emitted); returns `len`.
fn with_traffic_class(packet: &mut [u8], len: usize, tos: u8) -> Result<usize, wire::WireError> {
    if tos != 0 {
        wire::ip::set_traffic_class(packet, tos)?;
    }
    Ok(len)
}

/// The earliest live deadline.
fn next_deadline(inner: &mut Inner) -> Option<Instant> {
    while let Some(&Reverse((t, id))) = inner.timers.peek() {
        match inner.table.get(id) {
            Some(e) if e.scheduled == Some(t) => return Some(t),
            _ => {
                inner.timers.pop();
            }
        }
    }
    None
}

/// Builds the IP packet for a segment no connection sends (a RST for a stranger, a cookie
/// SYN+ACK) into the next batch slot. `to` is (local address, remote address, carrier: where
/// the datapath carries it, see [`Batch::carrier`]); `(ttl, tos)` the IP header's TTL and
/// traffic class.
pub(crate) fn emit(
    shared: &Shared,
    stats: &mut super::StackStats,
    tx: &mut Batch,
    to: (SocketAddr, SocketAddr, Option<SocketAddr>),
    (ttl, tos): (u8, u8),
    repr: &TcpRepr,
) {
    let (local, remote, carrier) = to;
    let src = if local.ip().is_unspecified() {
        match shared.datapath.local_ip_for(remote.ip()) {
            Ok(ip) => ip,
            Err(_) => return,
        }
    } else {
        local.ip()
    };
    let Some(slot) = tx.next_slot() else {
        return;
    };
    let emitted = wire::emit_tcp_packet(src, remote.ip(), ttl, repr, &[], slot)
        .and_then(|len| with_traffic_class(&mut slot[..len], len, tos));
    match emitted {
        Ok(len) => {
            if let Some(tap) = &shared.tap {
                tap(&TapEvent {
                    direction: Direction::Out,
                    src: SocketAddr::new(src, local.port()),
                    dst: remote,
                    tcp: repr,
                    payload_len: 0,
                    packet: &slot[..len],
                    kind: Some(SegmentKind::Control),
                    sample: None,
                });
            }
            tx.commit_via(0, len, carrier);
            stats.packets_out += 1;
        }
        Err(e) => tracing::warn!(error = %e, "could not emit segment"),
    }
}
