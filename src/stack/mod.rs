//! The runtime: a [`Stack`] owns one datapath and one background reactor task (one of each
//! per shard, see [`shards`]), and every listener and stream made from it.
//!
//! Applications and the reactor share one table of connections behind a mutex. Application
//! calls (read, write, shutdown) work on a connection's engine directly and, when output may
//! be due, send it themselves (an idle connection's write) or mark it dirty and wake the
//! reactor. Packets are received in batches — by the task that has waited longest for
//! something to arrive, else by the reactor (see [`rx`]) — and the sans-IO
//! [`Endpoint`](crate::proto::endpoint::Endpoint) routes each one (to a connection, a
//! listener's SYN queue, a RST, or nowhere); then every touched connection transmits what it
//! has due. The reactor also fires timers, and sleeps until the next packet or deadline — it
//! never polls on a tick.
//!
//! The public types in `crate::net` reach all this through the narrow interface of `api.rs`
//! (claim an address, open, listen, accept, let go; a connection's own entry by handle);
//! this module never names them.

mod api;
mod backlog;
mod capture;
mod connections;
mod reactor;
mod rx;
mod shards;
pub(crate) mod table;

pub use connections::{ConnectionEntry, Connections, Holder, ListenerEntry};

use crate::datapath::registered;
use crate::datapath::{self, Datapath};
use crate::proto::endpoint::Update;
pub use crate::proto::endpoint::{Limits, SynCookieMode};
use crate::proto::{Config, Instant, IsnGenerator, Sample, SegmentKind};
use crate::wire::TcpRepr;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use table::{ConnId, Table};

/// Locks `m`, whether or not a panic poisoned it: every structure of the stack stays
/// usable after a panic elsewhere (a panicking engine is poisoned on its own, see
/// [`Inner::poison`]).
pub(in crate::stack) fn unpoisoned<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which way a tapped segment travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the datapath.
    In,
    /// Sent to the datapath.
    Out,
}

/// One segment seen by a [`Tap`]: parsed header, addresses, and the whole IP packet.
#[derive(Debug)]
pub struct TapEvent<'a> {
    /// Received or sent.
    pub direction: Direction,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The TCP header.
    pub tcp: &'a TcpRepr,
    /// Payload bytes.
    pub payload_len: usize,
    /// The complete IP packet as it crossed the datapath.
    pub packet: &'a [u8],
    /// For a segment sent: control, new data, or a retransmission and its cause (timeout,
    /// fast recovery, tail loss probe). `None` for a segment received.
    pub kind: Option<SegmentKind>,
    /// For a segment a connection sent: its window, flight, SRTT and RTO at that moment,
    /// for graphs over time. `None` for segments received and stateless replies.
    pub sample: Option<Sample>,
}

/// A callback that sees every segment a stack sends and every valid segment it receives.
///
/// It runs while the stack's connection table is locked, on the reactor or on the
/// application task that is sending or receiving for the stack: keep it short, and do not
/// call back into the same stack from it (that would deadlock). Hand events to
/// another task through a channel for heavier work.
pub type Tap = Arc<dyn Fn(&TapEvent<'_>) + Send + Sync>;

/// Chooses initial sequence numbers: `(local, remote) -> ISN`. Overrides RFC 6528's keyed
/// hash, for tests and teaching.
pub type IsnFn = Arc<dyn Fn(SocketAddr, SocketAddr) -> u32 + Send + Sync>;

/// Requests to wake a stack's reactor, by cause ([`StackStats::reactor_wakes`]).
///
/// Application tasks send and receive for the stack themselves where they can (see
/// "Receiving where you wait" in the README); each of these is a case where they could not,
/// and the reactor's task (or thread) had to run. On a runtime of several workers, a
/// reactor woken while an application task runs is a second runnable task, which another
/// worker may take up: a flow whose reactor is woken often can run on two cores in turn.
///
/// ```
/// # async fn demo() -> std::io::Result<()> {
/// let stack = rawtcp::Stack::builder().build()?;
/// let w = stack.stats().reactor_wakes;
/// println!("{} arrivals no task waited for, {} transmit passes", w.arrivals, w.transmit_passes);
/// println!("all of them: {w}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReactorWakes {
    /// Packets arrived and no task waited to receive them.
    pub arrivals: u64,
    /// Packets were handed to a waiting task that may not take them up (its wait ended or
    /// grew stale), or while the reactor did not watch for hand-overs: the reactor was
    /// woken as well.
    pub backstops: u64,
    /// A connection had more to send than the calling task sends itself: a write on a
    /// connection with data already in flight or queued, more segments due than one inline
    /// batch holds, or a changed setting that may let something go.
    pub transmit_passes: u64,
    /// A timer was armed earlier than the reactor's next deadline.
    pub timers: u64,
    /// A task that received for the stack left packets behind (its rounds ran out, or
    /// packets were handed over after its last look).
    pub leftovers: u64,
    /// Work only the reactor does: RSTs of connections whose engine panicked, ports to
    /// give back, connections lingering in their close, segments waiting for room in the
    /// datapath, a new listening socket to ask.
    pub housekeeping: u64,
}

impl fmt::Display for ReactorWakes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arrivals nobody waited for {}, backstops {}, transmit passes {}, timers {}, \
             leftovers {}, housekeeping {}",
            self.arrivals,
            self.backstops,
            self.transmit_passes,
            self.timers,
            self.leftovers,
            self.housekeeping
        )
    }
}

impl ReactorWakes {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.arrivals
            + self.backstops
            + self.transmit_passes
            + self.timers
            + self.leftovers
            + self.housekeeping
    }

    fn add(&mut self, o: &ReactorWakes) {
        self.arrivals += o.arrivals;
        self.backstops += o.backstops;
        self.transmit_passes += o.transmit_passes;
        self.timers += o.timers;
        self.leftovers += o.leftovers;
        self.housekeeping += o.housekeeping;
    }
}

/// Counters of one stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackStats {
    /// IP packets received from the datapath.
    pub packets_in: u64,
    /// IP packets handed to the datapath.
    pub packets_out: u64,
    /// Packets dropped because they did not parse or their checksum failed.
    pub malformed: u64,
    /// RSTs sent for segments that reached no connection.
    pub resets_sent: u64,
    /// SYNs dropped because a listener's queues were full.
    pub syn_dropped: u64,
    /// SYNs answered with a SYN cookie instead of a place in a full SYN queue (RFC 4987
    /// §3.6; see [`StackBuilder::syn_cookies`]).
    pub cookies_sent: u64,
    /// ACKs whose valid cookie opened a connection.
    pub cookies_accepted: u64,
    /// ACKs whose cookie was stale or forged (answered with a RST).
    pub cookies_rejected: u64,
    /// Connections let go that were forgotten instead of entering TIME-WAIT, the TIME-WAIT
    /// table being full ([`Limits::max_time_wait`]).
    pub time_wait_overflows: u64,
    /// Connections let go that were reset instead of closed, too many orphans being in
    /// their close already ([`Limits::max_orphans`]).
    pub orphan_overflows: u64,
    /// Connections whose engine panicked: each was reset (its application sees
    /// `ConnectionAborted`, its peer a RST) and the stack went on serving the others.
    pub poisoned: u64,
    /// Send and receive buffer storage held by all connections now, in bytes.
    pub buffer_memory: usize,
    /// Times the stack went short of buffer memory ([`StackBuilder::max_buffer_memory`]).
    pub memory_pressure: u64,
    /// Connections in TIME-WAIT now.
    pub time_wait: usize,
    /// Connections the application let go that are still closing now.
    pub orphans: usize,
    /// ACKs that would have completed a handshake, dropped because the listener's accept
    /// queue was full (the connection stays in SYN-RECEIVED until `accept` makes room, as
    /// on Linux, whose `ListenOverflows` counts these with the SYNs dropped for that reason).
    pub listen_overflows: u64,
    /// Application calls whose segments the calling task sent itself, without waking the
    /// reactor, as the kernel sends from inside the system call: an idle connection's write,
    /// its SYN at `connect`, its FIN at `shutdown` or close, a window update after a read.
    pub inline_transmits: u64,
    /// Batches of arriving packets an application task received and delivered for the
    /// stack while it waited, instead of the reactor (which saves a hand-off between tasks
    /// per segment, as the kernel delivers in the interrupt that brings it).
    pub inline_receives: u64,
    /// Times the reactor task was polled: what the stack's own task costs, next to the work
    /// application tasks did themselves (`inline_transmits`, `inline_receives`).
    pub reactor_polls: u64,
    /// Why the reactor was asked to run, by cause: where its polls (`reactor_polls`) come
    /// from. Several requests may end in one poll.
    pub reactor_wakes: ReactorWakes,
    /// Rounds of the reactor that found packets handed to a task and not taken up for a
    /// millisecond or more (see "Receiving where you wait" in the README): its watchdog,
    /// or a wake-up meant for something else, found them left. Near zero in a healthy
    /// exchange.
    pub watchdog_rescues: u64,
    /// Rounds of the reactor's busy polling ([`StackBuilder::busy_poll`]) that found
    /// packets waiting: each took them without the wake-up a sleeping reactor would have
    /// needed.
    pub busy_polled: u64,
    /// Segments the datapath had no room for at first (a full socket buffer or device
    /// queue), kept and sent again a moment later rather than lost.
    pub send_deferred: u64,
    /// Segments dropped because the backlog of those waiting for room was full (1,024
    /// segments or 8 MiB); TCP repairs them as losses.
    pub send_dropped: u64,
    /// Connections currently in the table.
    pub connections: usize,
}

/// State shared by the reactor and every handle.
pub(crate) struct Shared {
    pub(in crate::stack) inner: Mutex<Inner>,
    pub(in crate::stack) datapath: Arc<dyn Datapath>,
    /// Batches for segments that application tasks transmit themselves (see
    /// [`Shared::transmit_inline`]), kept for reuse.
    // Boxed: a batch taken out or put back moves as a pointer (see `inline_batch`).
    #[allow(clippy::vec_box)]
    pub(in crate::stack) tx_pool: Mutex<Vec<Box<datapath::Batch>>>,
    /// The order of sends: taken, while the stack is still locked, by every task that built
    /// segments under the lock and sends them after releasing it, and held until they are
    /// sent (see [`Shared::send_order`]).
    pub(in crate::stack) tx_order: Mutex<backlog::Backlog>,
    /// The send order's backlog holds packets (see [`backlog`]): the reactor offers them
    /// again within [`backlog::RETRY`].
    pub(in crate::stack) backlogged: AtomicBool,
    /// The receive batch, taken by whoever receives for the stack: the reactor, or an
    /// application task that waits for something to arrive (see [`rx`]).
    pub(in crate::stack) rx: Mutex<rx::RxState>,
    /// The waker the datapath's readiness is registered with.
    pub(in crate::stack) rx_wake: Arc<rx::RxWake>,
    /// `rx_wake` as a `Waker`.
    pub(in crate::stack) rx_waker: Waker,
    /// The reactor runs on a thread of its own (`StackBuilder::dedicated_thread`), whose
    /// runtime learns of arrivals unless a task takes the sockets' readiness to its own
    /// (see [`Shared::receives_directly`]).
    pub(in crate::stack) dedicated: bool,
    /// `dedicated`, and the datapath's readiness may move to a task's runtime
    /// (`Capabilities::readiness_follows`).
    pub(in crate::stack) follows: bool,
    /// A task that took the sockets' readiness to its runtime received since the reactor
    /// last looked: the reactor does not busy-poll meanwhile (see `Reactor::keep_polling`).
    pub(in crate::stack) followed: std::sync::atomic::AtomicBool,
    /// How long the reactor keeps asking the datapath after its last work before it sleeps
    /// (see [`StackBuilder::busy_poll`]); `None` where it does not (not `dedicated`, a
    /// datapath that cannot be asked without readiness, or set to 0).
    pub(in crate::stack) busy_poll: Option<std::time::Duration>,
    /// The datapath gives an address back quickly
    /// ([`Capabilities::quick_unbind`](datapath::Capabilities::quick_unbind)): a task that
    /// receives for the stack releases the addresses of the connections it finished
    /// itself, instead of waking the reactor for them.
    pub(in crate::stack) quick_unbind: bool,
    /// The datapath's `Pending` holds until it wakes the stack
    /// ([`Capabilities::pending_holds`](datapath::Capabilities::pending_holds)): tasks
    /// about to wait skip asking it again until then (see `RxWake::arm`).
    pub(in crate::stack) pending_holds: bool,
    /// Whether a large segment's payload is left in its send buffer and attached to the
    /// packet instead of copied into it ([`Capabilities::sends_attached`](datapath::Capabilities::sends_attached),
    /// and no tap, which is shown whole packets).
    pub(in crate::stack) sends_attached: bool,
    /// Whether connections whose carrier the datapath vouches for offer partial checksums
    /// (`Config::partial_checksums`): the datapath can vouch for loopback carriers, no tap
    /// or capture is set (they are shown full checksums), and `RAWTCP_PARTIAL_CHECKSUMS` is
    /// not `off`.
    pub(in crate::stack) partial_checksums: bool,
    /// Whether arrivals by a carrier the datapath vouches for skip the TCP checksum
    /// ([`Datapath::carrier_verified`]): unless `RAWTCP_PARTIAL_CHECKSUMS` is `off`.
    pub(in crate::stack) trust_carriers: bool,
    /// This shard's index and the stack's number of shards ((0, 1) for a stack of one).
    pub(in crate::stack) place: (usize, usize),
    /// The other shards of the stack (none for a stack of one), set once they all exist.
    pub(in crate::stack) siblings: OnceLock<Box<[std::sync::Weak<Shared>]>>,
    /// The runtime the reactor runs on. Its clock is the stack's clock: every reading of
    /// the time, from whatever task or thread, is taken inside it (see [`Shared::now`]).
    pub(crate) runtime: tokio::runtime::Handle,
    origin: tokio::time::Instant,
    pub(in crate::stack) config: Config,
    pub(in crate::stack) tap: Option<Tap>,
    pub(in crate::stack) isn_fn: Option<IsnFn>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("datapath", &self.datapath.name())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(in crate::stack) table: Table,
    pub(in crate::stack) dirty: std::collections::VecDeque<ConnId>,
    pub(in crate::stack) timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    pub(in crate::stack) reactor: Option<Waker>,
    pub(in crate::stack) shutdown: bool,
    /// The reactor has exited: nothing will be sent or received any more.
    pub(in crate::stack) stopped: bool,
    pub(in crate::stack) isn: IsnGenerator,
    pub(in crate::stack) stats: StackStats,
    /// Local addresses to give back to the datapath once the lock allows.
    pub(in crate::stack) unbind_later: Vec<SocketAddr>,
    /// Addresses of dropped listeners whose accepted connections still use them; released
    /// when the last of those connections is gone.
    pub(in crate::stack) lingering: Vec<SocketAddr>,
    /// A connection was forgotten since the lingering addresses were last checked.
    pub(in crate::stack) reaped: bool,
    /// The deadline the reactor sleeps until (`None`: it waits for packets only). A task
    /// that schedules an earlier timer must wake it.
    pub(in crate::stack) reactor_deadline: Option<Instant>,
    /// Local addresses claimed from the datapath for outgoing connections whose port the
    /// stack chose, with how many connections use each. Connections to different peers
    /// share them, as Linux shares a `connect` port (the 4-tuple stays unique).
    pub(in crate::stack) connect_ports: HashMap<SocketAddr, u32>,
    /// The same addresses in claim order, for choosing one to share.
    pub(in crate::stack) connect_order: Vec<SocketAddr>,
    /// For each recent destination, where the search for a port to share with it goes on
    /// from in `connect_order` (see [`share_connect_port`](Self::share_connect_port)).
    pub(in crate::stack) connect_cursors: HashMap<SocketAddr, usize>,
    /// RSTs owed to the peers of connections whose engine panicked, for the reactor to send:
    /// (local, remote, carrier, segment).
    pub(in crate::stack) poisoned_resets:
        Vec<(SocketAddr, SocketAddr, Option<SocketAddr>, TcpRepr)>,
    /// Send and receive buffer storage of every connection, as last counted.
    pub(in crate::stack) buffer_memory: usize,
    /// Above this, connections are told they are short of memory.
    pub(in crate::stack) max_buffer_memory: usize,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not wedge every connection: the table stays usable.
        unpoisoned(&self.inner)
    }

    /// Transmits what connection `id` has due from the calling task, instead of waking the
    /// reactor for it, as the kernel sends from inside `write`: the segments are built under
    /// the lock (`inner`) into a pooled batch, which the caller sends with
    /// [`Deferred::send`] once the lock is released. Saves a task switch per write, which is
    /// most of a round trip's cost between two stacks. When more is due than one batch holds,
    /// the reactor does the rest: woken at once, or, for a task of a multi-threaded runtime
    /// on a stack whose reactor has a thread of its own (`own_sender`, see
    /// [`sends_busy_writes`](Self::sends_busy_writes)), after the caller sent up to
    /// [`WRITER_BATCHES`] batches itself (`Deferred::send`): woken
    /// before, that thread built the next batch on another core and then waited for this
    /// one's system call to take its turn (`flows_8` on the default stack stayed where it
    /// was).
    fn transmit_inline(
        &self,
        inner: &mut Inner,
        id: table::ConnId,
        own_sender: bool,
    ) -> Deferred<'_> {
        let mut tx = self.inline_batch();
        inner.stats.inline_transmits += 1;
        let more = self.emit_from_task(inner, id, &mut tx);
        if more && !own_sender {
            inner.mark_dirty(id);
        }
        Deferred {
            order: self.send_order(&tx),
            shared: self,
            batch: tx,
            rest: (more && own_sender).then_some(id),
        }
    }

    /// Builds what connection `id` has due into `tx` from the calling task, on the stack's
    /// clock, then settles the connection (its waiting tasks, its report to the endpoint,
    /// its timer). Returns whether more was due than `tx` holds.
    fn emit_from_task(
        &self,
        inner: &mut Inner,
        id: table::ConnId,
        tx: &mut datapath::Batch,
    ) -> bool {
        // The tap (a pcap writer) reads the clock too: the stack's, not the caller's.
        let _clock = self.runtime.enter();
        let now = self.now_here();
        let more = reactor::emit_into(self, inner, id, now, tx);
        reactor::settle(inner, id, None);
        inner.wake_reactor_for_timers();
        more
    }

    /// For segments built under the stack's lock and sent after it is released: a place in
    /// the order of sends, taken while the lock is still held (`None` when `batch` is empty).
    ///
    /// Two tasks that build segments of one connection one after the other must put them on
    /// the wire in that order: a pure ACK overtaken by the FIN built after it arrives late,
    /// is answered as an old segment, and that answer draws a RST from a peer that has
    /// closed meanwhile (seen in a connect-and-close loop). Whoever holds the stack's lock
    /// takes this next; it is released once the batch is sent, and the stack's lock is free
    /// meanwhile, so the system call still happens outside it.
    pub(in crate::stack) fn send_order(
        &self,
        batch: &datapath::Batch,
    ) -> Option<MutexGuard<'_, backlog::Backlog>> {
        (!batch.is_empty()).then(|| unpoisoned(&self.tx_order))
    }

    /// Sends `batch` (emptying it) in its place in the order of sends, the stack's lock
    /// held by the caller.
    pub(in crate::stack) fn send_in_order(&self, batch: &mut datapath::Batch) {
        if let Some(mut order) = self.send_order(batch) {
            self.send_batch(&mut order, batch);
        }
    }

    /// Releases the stack's lock (`inner`) and sends `batch` (emptying it), keeping its
    /// place in the order of sends.
    pub(in crate::stack) fn unlock_and_send(
        &self,
        inner: MutexGuard<'_, Inner>,
        batch: &mut datapath::Batch,
    ) {
        let order = self.send_order(batch);
        drop(inner);
        if let Some(mut order) = order {
            self.send_batch(&mut order, batch);
        }
    }

    /// The receive state, unless another task or the reactor is receiving right now.
    pub(in crate::stack) fn try_rx(&self) -> Option<MutexGuard<'_, rx::RxState>> {
        match self.rx.try_lock() {
            Ok(rx) => Some(rx),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Sends `batch` (emptying it) through the datapath, on the stack's clock, holding the
    /// send order (`order`): what waits in the backlog goes first, and what the datapath
    /// has no room for waits there (see [`backlog`]).
    pub(in crate::stack) fn send_batch(
        &self,
        order: &mut backlog::Backlog,
        batch: &mut datapath::Batch,
    ) {
        if batch.is_empty() {
            return;
        }
        // A datapath may read the clock (the simulated network's link delays): the stack's,
        // not the calling task's.
        let _clock = self.runtime.enter();
        if !order.is_empty() {
            order.retry(&*self.datapath);
        }
        if !order.is_empty() {
            order.keep(batch, 0);
        } else {
            match self.datapath.send(batch) {
                Ok(done) if done < batch.len() => order.keep(batch, done),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "datapath send failed"),
            }
        }
        batch.clear();
        self.note_backlog(order);
    }

    /// Offers what waits in the backlog again (the reactor, when no task sent meanwhile).
    pub(in crate::stack) fn retry_backlog(&self) {
        let mut order = unpoisoned(&self.tx_order);
        if !order.is_empty() {
            let _clock = self.runtime.enter();
            order.retry(&*self.datapath);
        }
        self.note_backlog(&order);
    }

    /// Records whether the backlog holds packets; when it starts to, the reactor is woken
    /// to offer them again in a moment should no task send before.
    fn note_backlog(&self, order: &backlog::Backlog) {
        let waiting = !order.is_empty();
        if self.backlogged.swap(waiting, Ordering::SeqCst) != waiting && waiting {
            self.rx_wake.wake_reactor(rx::Cause::Housekeeping);
        }
    }

    /// What connection `id` has due after an application call (a write of `written` bytes,
    /// a SYN, a FIN, a window update after a read): built by the calling task into a batch it
    /// sends with [`Deferred::send`] once the lock is released, as the kernel sends from
    /// inside the system call, when no transmit pass is queued for the connection (whose
    /// segments the inline ones could overtake) and either nothing else of it may be on its
    /// way (no data queued or unacknowledged but what this call wrote) or the caller sends
    /// busy connections' writes too ([`sends_busy_writes`](Self::sends_busy_writes)); else
    /// queued for the reactor.
    pub fn output_due(
        &self,
        inner: &mut Inner,
        id: table::ConnId,
        written: usize,
    ) -> Option<Deferred<'_>> {
        // Asked here, outside the stack's runtime, which `transmit_inline` enters.
        let own_sender = self.caller_follows();
        let inline = !inner.stopped
            && inner.table.get(id).is_some_and(|e| {
                !e.dirty
                    && (e.conn.send_queue() == written
                        || (own_sender
                            && usize::from(e.conn.config().mss) >= BUSY_WRITE_MIN_MSS
                            && self.sends_busy_writes(inner)))
            });
        if inline {
            Some(self.transmit_inline(inner, id, own_sender))
        } else {
            inner.mark_dirty(id);
            None
        }
    }

    /// A batch for segments an application task transmits, from the pool.
    /// Boxed, as the batch moves between the pool, the task and the send order on every
    /// segment: a pointer moves, not the batch's bookkeeping.
    fn inline_batch(&self) -> Box<datapath::Batch> {
        unpoisoned(&self.tx_pool)
            .pop()
            .unwrap_or_else(|| Box::new(datapath::Batch::new(INLINE_BATCH, reactor::SLOT)))
    }

    /// Receives for the stack from the calling task, which waits for something to arrive
    /// (see [`rx`]): every packet waiting is delivered to its connection and what the
    /// connections then owe (ACKs, data the window now allows) is sent. Does nothing when
    /// another task or the reactor is receiving. Returns whether any packet was delivered.
    pub fn receive_inline(&self) -> bool {
        self.receive_inline_for(None)
    }

    /// [`receive_inline`](Self::receive_inline) by a task that reads connection `id`,
    /// registered with `waker`, and polls that read again when this returns true: data
    /// delivered to it does not wake the task (see `reactor::Out::reading`).
    pub fn receive_inline_for(&self, reading: Option<(table::ConnId, &Waker)>) -> bool {
        // A task that takes the sockets' readiness to its runtime is about to receive:
        // the reactor does not busy poll meanwhile (see `Reactor::keep_polling`). Noted
        // before anything can turn it away: a polling reactor holding the receive state
        // must still learn of it.
        let directly = self.receives_directly();
        if self.follows && !directly && !self.followed.load(std::sync::atomic::Ordering::Relaxed) {
            self.followed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if self.nothing_to_receive(directly) {
            return false;
        }
        let Some(mut rx) = self.try_rx() else {
            return false;
        };
        // A task of a multi-threaded runtime has the sockets it polls learn of arrivals on
        // its runtime from now on, not on the reactor's thread (see `registered::Follow`;
        // taken before the stack's runtime is entered, which hides the caller's), and then
        // trusts their readiness; any other caller on a stack whose reactor has a thread of
        // its own receives without waiting for readiness (see `receives_directly`).
        let follow = if self.follows {
            registered::Follow::caller()
        } else {
            None
        };
        let direct = self.dedicated && follow.is_none();
        // The datapath (the simulated network's delays) and the tap read the clock: the
        // stack's, not the caller's.
        let _clock = self.runtime.enter();
        let mut tx = self.inline_batch();
        let mut delivered = false;
        // Addresses of finished connections to give back once the stack is unlocked.
        let mut release = Vec::new();
        for round in 0..INLINE_RX_ROUNDS {
            let (received, full) = reactor::receive(self, &mut rx, direct, true);
            if !received {
                break;
            }
            delivered = true;
            // The stack's runtime was entered above.
            let now = self.now_here();
            let sent = {
                let mut inner = self.lock();
                if inner.stopped || inner.shutdown {
                    break;
                }
                inner.stats.inline_receives += 1;
                let sent_before = inner.stats.packets_out;
                let mut out = reactor::Out::new(self, &mut tx);
                if let Some((id, waker)) = reading {
                    out.reading(id, waker);
                }
                reactor::deliver(&mut inner, &mut rx, &mut out, now);
                out.transmit_dirty(&mut inner, now);
                // The reactor keeps the timers, the RSTs of poisoned connections and the
                // addresses to give back, but for those this task gives back itself below
                // when that is quick: in a connect-and-close loop, each finished connection
                // woke the reactor (another thread) just to close the socket holding its
                // port.
                inner.wake_reactor_for_timers();
                if self.quick_unbind {
                    release.append(&mut inner.unbind_later);
                }
                if !inner.poisoned_resets.is_empty()
                    || !inner.unbind_later.is_empty()
                    || (inner.reaped && !inner.lingering.is_empty())
                {
                    self.rx_wake.wake_reactor(rx::Cause::Housekeeping);
                }
                let sent = inner.stats.packets_out != sent_before;
                self.unlock_and_send(inner, &mut tx);
                for a in release.drain(..) {
                    self.datapath.unbind(a);
                }
                sent
            };
            // Go round again when more may be waiting: the batch was full; packets that came
            // meanwhile were handed to a waiting task, which found the receive state taken;
            // or, where this task receives without waiting for readiness, what it just sent
            // may be for this stack (a handshake between two of its connections completes
            // in one task, instead of a wake-up between threads per segment).
            let again = full || self.rx_wake.handed_over() || (direct && sent);
            if !again {
                break;
            }
            if round + 1 == INLINE_RX_ROUNDS {
                // Still more waiting: the reactor goes on.
                self.rx_wake.wake_reactor(rx::Cause::Leftover);
            }
        }
        drop(rx);
        if self.rx_wake.handed_over() {
            // Handed over after the last look, to a task that found the receive state
            // taken and went back to waiting: the reactor takes them up.
            self.rx_wake.wake_reactor(rx::Cause::Leftover);
        }
        self.recycle(tx);
        delivered
    }

    /// Whether a [`receive_inline`](Self::receive_inline) now could only find nothing, known
    /// without taking the receive state, entering the runtime or taking a batch: the
    /// caller only takes what the datapath reports ready (`directly`, what
    /// [`receives_directly`](Self::receives_directly) says of it, is false), its last
    /// `Pending` holds (`RxWake::armed`, which `reactor::receive` checks too), and nothing
    /// was handed over that a receive would take up. On a 64-byte ping-pong, two of the three receives
    /// a packet's reader made were such.
    fn nothing_to_receive(&self, directly: bool) -> bool {
        !directly && self.pending_holds && self.rx_wake.armed() && !self.rx_wake.handed_over()
    }

    /// The wait of `waker`'s task ended, on this shard and the others (see [`rx`]): it is
    /// marked done where it is queued, so that until it waits again a hand-over to it wakes
    /// the reactor too (it may end without calling on the stack again), and it receives
    /// what was handed to a task and not taken up, which may have been meant for it (what
    /// it waited for came some other way while it stayed queued).
    /// Without either, packets handed to a task whose wait had ended, or which had ended
    /// itself, waited for the reactor's watchdog: a connect-and-close loop from
    /// `#[tokio::main]`'s task, outside the runtime's workers, made 1,000 connections a
    /// second, a tenth of them taking over a millisecond.
    pub fn wait_ended(&self, waker: &Waker) {
        // `done` first, then the hand-over: a hand-over either finds the task marked (and
        // wakes the reactor too) or is seen here (see `RxWake::wake_by_ref`).
        self.on_every_shard(|shard| {
            shard.rx_wake.done(waker);
            if shard.rx_wake.handed_over() {
                shard.receive_inline();
            }
        });
    }

    /// The task of `waker` gave a wait on the stack up before it ended (see
    /// [`RxWake::forget`](rx::RxWake::forget)): on every shard, a hand-over to it wakes the
    /// reactor too.
    pub fn wait_given_up(&self, waker: &Waker) {
        self.on_every_shard(|shard| shard.rx_wake.forget(waker));
    }

    /// Runs `f` on this shard, then on each other shard of the stack that still exists.
    fn on_every_shard(&self, f: impl Fn(&Shared)) {
        f(self);
        for s in self.live_siblings() {
            f(&s);
        }
    }

    /// The other shards of the stack that still exist (none for a stack of one).
    fn live_siblings(&self) -> impl Iterator<Item = Arc<Shared>> + '_ {
        self.siblings
            .get()
            .into_iter()
            .flat_map(|s| s.iter())
            .filter_map(std::sync::Weak::upgrade)
    }

    /// Receives for the other shards of the stack whose arrivals were handed to a task that
    /// has not taken them up (see [`rx`]), from the calling task, which is about to wait:
    /// a task that waits on one shard may still be queued on another from an earlier wait
    /// (a proxy whose accepted connection and outgoing one are on different shards),
    /// and be handed that shard's packets; it takes them up here instead of leaving them to
    /// the other shard's reactor a millisecond or more later. Returns whether any packet was
    /// delivered.
    pub fn receive_handed_over(&self) -> bool {
        let mut delivered = false;
        for s in self.live_siblings() {
            if s.rx_wake.handed_over() {
                delivered |= s.receive_inline();
            }
        }
        delivered
    }

    /// Whether a task waiting in `accept` is queued to receive the stack's arrivals (see
    /// [`rx`]). Not where the caller receives directly (see
    /// [`receives_directly`](Self::receives_directly)): there the reactor's thread hears of
    /// every arrival first, and an accept loop (always the longest waiter in a server) took
    /// every other batch of a busy connection's ACKs onto a thread of its own, a wake-up
    /// each time. Measured on the default stack before its sockets' readiness could follow
    /// tasks, without it: connections/s 0.42–0.64 → 0.61–0.67 of `tokio::net` (five pairs
    /// of alternating runs), a 300 MB download over the raw datapath 357–368 → 361–385 MB/s
    /// with a tenth fewer thread switches. Elsewhere it stays: on a stack on the
    /// application's runtime connections/s fell from 0.57 to 0.34 without it, as the accept
    /// there completes handshakes in its own task.
    pub fn accept_receives(&self) -> bool {
        !self.receives_directly()
    }

    /// Whether the calling task receives for the stack without waiting for readiness
    /// ([`Datapath::recv_now`]): on a stack whose reactor has a thread of its own, a caller
    /// that is not a task of a multi-threaded runtime (`#[tokio::main]`'s own future, a
    /// current-thread runtime's task), whose runtime does not take the sockets' readiness
    /// (see `registered::Follow`), and every caller where the datapath's readiness does
    /// not move (`Capabilities::readiness_follows`: raw, TUN, the simulated network). A task of a
    /// multi-threaded runtime takes it and then waits for readiness, as on a stack on the
    /// application's runtime. Measured on the
    /// default stack over UDP loopback (`RAWTCP_BENCH_STACK=default bench runtime`, two
    /// runs alternating with the build where every caller there received directly and the
    /// sockets stayed with the reactor): connections/s 0.58–0.60 of `tokio::net` →
    /// 1.41–1.56, the 64-byte round trip 2.21–2.24 → 1.82–1.85, `connections_from_main`
    /// 0.84–0.87 → 0.82–0.92 (there `main`'s loop receives directly; waiting for readiness
    /// as well measured 0.58), bulk 0.85–0.87 → 0.77–0.81.
    fn receives_directly(&self) -> bool {
        self.dedicated && !self.caller_follows()
    }

    /// Whether the caller takes the readiness of this stack's sockets to its own runtime
    /// (see `registered::Follow`): the stack's datapath lets it (`follows`) and the caller
    /// is a task of a multi-threaded runtime. Ask it before entering the stack's runtime:
    /// inside it the caller's own runtime cannot be seen, and the answer is remembered for
    /// the thread.
    fn caller_follows(&self) -> bool {
        self.follows && registered::Follow::would_follow()
    }

    /// Whether a write on a busy connection (data already queued or in flight) is sent from
    /// the writing task too, one batch of it, rather than queued for the reactor's transmit
    /// pass: on a stack whose reactor has a thread of its own, for a task of a
    /// multi-threaded runtime (which takes the sockets' readiness where it can: see
    /// `registered::Follow`; `output_due` asks that, and that the connection's segments are
    /// large: [`BUSY_WRITE_MIN_MSS`]), while no other connection waits for a pass and no one
    /// is sending (the order of sends is free: taking a place in it means
    /// waiting, with the stack locked, for another task's system call). There each pass
    /// handed to the reactor woke another thread and carried the data written to another
    /// core. The writer sends up to [`WRITER_BATCHES`] batches, asking again before each;
    /// the rest is the reactor's, woken once the last is sent
    /// ([`transmit_inline`](Self::transmit_inline), `Deferred::send`).
    ///
    /// Measured on the default stack over UDP loopback (`RAWTCP_BENCH_STACK=default bench
    /// runtime`, five runs alternating with the build before): `flows_8` 1,655–1,776 MB/s
    /// on one shard and 1,891–2,118 on two, against 1,106–1,299 and 1,245–1,444 (one run
    /// 3,532), 0.88–1.04 of 2 cores busy against 0.67–0.73 in two of them; the reactor's
    /// transmit passes in the bulk group 9,000–9,900 against 25,000–25,500; one bulk flow
    /// within the noise (0.65–0.88 of `tokio::net` against 0.67–0.85, 2,366–2,664 MB/s
    /// against 2,209–2,560), and round trips and connections/s too. Tried and not kept:
    /// waking the reactor for the rest before the batch is sent (as for other callers) left
    /// `flows_8` where it was. A writer now sends up to [`WRITER_BATCHES`] of it, while these
    /// conditions hold; tried before the stalls it met were found (README, "A writer that
    /// sends more than one batch"), that cut 8 flows to 811–875 MB/s on one shard, against
    /// 1,089–1,221. On a stack whose reactor is a task of the application's
    /// runtime the reactor's pass already runs on the writer's own thread once it yields,
    /// and busy writes sent by the writer there (every one, without the conditions above)
    /// measured 1.01–1.02 of `tokio::net` on bulk against 1.07–1.17.
    fn sends_busy_writes(&self, inner: &Inner) -> bool {
        // A send that panicked poisons the order but leaves it usable (see `unpoisoned`).
        inner.dirty.is_empty()
            && !matches!(
                self.tx_order.try_lock(),
                Err(std::sync::TryLockError::WouldBlock)
            )
    }

    /// Queues the task of `waker` to receive for the stack when packets arrive (see [`rx`]).
    pub fn wait_to_receive(&self, waker: &Waker) {
        self.rx_wake.wait(waker);
    }

    /// Keeps an inline batch for reuse.
    fn recycle(&self, mut tx: Box<datapath::Batch>) {
        tx.clear();
        let mut pool = unpoisoned(&self.tx_pool);
        if pool.len() < INLINE_POOL {
            pool.push(tx);
        }
    }

    /// Engine time now, on the clock of the runtime the reactor runs on, whichever task
    /// asks: an application that pauses or advances its own runtime's clock while the
    /// reactor runs elsewhere (the default stack's thread) must not move the stack's time.
    pub fn now(&self) -> Instant {
        let _clock = self.runtime.enter();
        self.now_here()
    }

    /// [`now`](Self::now), from where the stack's runtime is the current one already (the
    /// reactor's task, or a task that entered it): entering it again costs about as much
    /// as reading the clock.
    pub(in crate::stack) fn now_here(&self) -> Instant {
        let d = tokio::time::Instant::now().saturating_duration_since(self.origin);
        Instant::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// The tokio instant of an engine instant.
    pub(in crate::stack) fn to_tokio(&self, t: Instant) -> tokio::time::Instant {
        self.origin + std::time::Duration::from_micros(t.as_micros())
    }

    /// The connection settings for a peer: the stack's template with the MSS the datapath
    /// allows towards `remote` (RFC 9293 §3.7.1: MTU minus IP and TCP headers).
    ///
    /// `carrier` is where the peer's packets come from: the remote address itself, or for
    /// a connection a SYN asked for, the carrier that SYN arrived by. The connection offers
    /// partial checksums (`Config::partial_checksums`, whatever the template says) only
    /// where the datapath vouches for that carrier.
    pub(in crate::stack) fn config_for(
        &self,
        template: &Config,
        remote: IpAddr,
        carrier: SocketAddr,
    ) -> Config {
        let ip_header = if remote.is_ipv4() { 20 } else { 40 };
        let mtu = self.datapath.mtu(remote);
        let mss = mtu.saturating_sub(ip_header + 20).clamp(64, 65_535 - 60) as u16;
        let mss = mss.min(template.mss.max(64));
        Config {
            mss,
            // Segments large enough to leave from the send buffer without a copy are
            // checksummed from sums kept as the bytes are written.
            send_sums: template.send_sums
                || (self.sends_attached && usize::from(mss) >= crate::proto::recv::SHARE_MIN),
            partial_checksums: self.partial_checksums && self.datapath.carrier_verified(carrier),
            ..template.clone()
        }
    }

    /// The ISN for a new connection.
    pub(in crate::stack) fn isn(
        &self,
        inner: &Inner,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> crate::proto::SeqNum {
        match &self.isn_fn {
            Some(f) => crate::proto::SeqNum(f(local, remote)),
            None => inner.isn.generate(local, remote, self.now()),
        }
    }
}

/// Segments an application task built under the stack's lock, with their place in the
/// order of sends ([`Shared::send_order`]): sent by [`send`](Self::send) once the lock is
/// released.
#[must_use = "the segments built are sent only by `send`; dropped, they are lost"]
pub(crate) struct Deferred<'a> {
    shared: &'a Shared,
    batch: Box<datapath::Batch>,
    order: Option<MutexGuard<'a, backlog::Backlog>>,
    /// The connection with more due than the batch held, a busy write's: sent in further
    /// batches by this task, up to [`WRITER_BATCHES`], then queued for the reactor's
    /// transmit pass (see [`Shared::transmit_inline`]).
    rest: Option<table::ConnId>,
}

impl Deferred<'_> {
    /// Sends the segments (call it without the stack's lock held) and keeps the batch for
    /// reuse; then sends or queues for the reactor what the batch did not hold.
    pub fn send(self) {
        let Deferred {
            shared,
            mut batch,
            order,
            mut rest,
        } = self;
        if let Some(mut order) = order {
            shared.send_batch(&mut order, &mut batch);
        }
        // A busy write's rest (see `Shared::sends_busy_writes`): further batches from this
        // task while the conditions still hold, then the reactor's.
        let mut more = WRITER_BATCHES - 1;
        while let Some(id) = rest {
            let mut inner = shared.lock();
            if more == 0
                || inner.stopped
                || inner.table.get(id).is_none_or(|e| e.dirty)
                || !shared.sends_busy_writes(&inner)
            {
                inner.mark_dirty(id);
                break;
            }
            more -= 1;
            if !shared.emit_from_task(&mut inner, id, &mut batch) {
                rest = None;
            }
            shared.unlock_and_send(inner, &mut batch);
        }
        shared.recycle(batch);
    }
}

/// Segments one inline transmit builds at most (a slot holds the largest packet, so a batch
/// is 4 × 64 KiB).
const INLINE_BATCH: usize = 4;
/// The default of [`StackBuilder::max_buffer_memory`].
const DEFAULT_MAX_BUFFER_MEMORY: usize = 1 << 30;
/// Batches a task that sends a busy connection's write (see
/// [`Shared::sends_busy_writes`]) sends at most before it leaves the rest to the reactor:
/// 1 MiB of 64 KiB segments, the send buffer's default size. More than one a write was
/// tried before and not kept, as it stalled `flows_8`; with those stalls gone (they were a
/// Nagle-held tail waiting for a delayed ACK: `Connection::check_drain_ack`), two runs
/// alternating with one batch on the default stack (`RAWTCP_BENCH_STACK=default bench
/// runtime`): bulk 3,173–3,229 MB/s (1.10–1.11 of `tokio::net`, kernel time per 32 MiB
/// 5.8–6.0 ms) against 2,532–2,540 (0.83–0.86, 9.9 ms); `flows_8` on two shards
/// 4,211–4,223 MB/s against 3,885–3,915, one shard alike; round trips and connections/s
/// within the noise. 2 and 8 batches measured the same as 4 in a sweep.
const WRITER_BATCHES: usize = 4;
/// Inline batches kept for reuse.
const INLINE_POOL: usize = 4;
/// The smallest MSS at which a busy connection's writes are sent by the writer (see
/// [`Shared::sends_busy_writes`]): with segments of a 1,500-byte path a batch is a few
/// kilobytes, and sent between the reactor's it broke up the trains the reactor sends in one
/// call (rawtcp at both ends of `wire_loss --datapath udp`'s veth pair, two rounds without
/// this limit: 148–336 MB/s at 0 % loss against 291–360 before; six rounds with it:
/// 255–350 against 219–371).
const BUSY_WRITE_MIN_MSS: usize = crate::proto::recv::SHARE_MIN;
/// Receive batches an application task handles at most before it leaves the rest to the
/// reactor.
const INLINE_RX_ROUNDS: usize = 4;

/// How many claimed ports a `connect` tries to share before it claims a new one.
const SHARE_TRIES: usize = 8;
/// Destinations whose search position is remembered at most; past it, every search
/// starts again from the oldest port.
const MAX_CURSORS: usize = 1024;

impl Inner {
    /// Runs `f` on connection `id`'s entry. A panic inside the engine leaves the connection
    /// half-updated, so it is not resumed: the connection is [`poison`](Self::poison)ed and
    /// `None` returned, and the stack goes on serving the others.
    pub(in crate::stack) fn engine<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut table::Entry) -> R,
    ) -> Option<R> {
        let mut e = self.table.get(id)?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut e))) {
            Ok(r) => Some(r),
            Err(_) => {
                let p = e.poison();
                drop(e);
                self.poisoned(id, p);
                None
            }
        }
    }

    /// What a panic in connection `id`'s engine means: the engine is replaced by a closed
    /// one that reports `ConnectionAborted` to the application (whose waiting tasks are
    /// woken), the peer is sent `<SEQ=SND.NXT><CTL=RST>`, and the 4-tuple becomes a
    /// stranger's. Nothing else in the stack is touched.
    pub(crate) fn poison(&mut self, id: ConnId) {
        let Some(p) = self.table.get(id).map(|mut e| e.poison()) else {
            return;
        };
        self.poisoned(id, p);
    }

    /// The stack's part of a poisoning whose entry's part ([`table::Entry::poison`]) was
    /// done under the entry's lock, now let go: the RST queued, the endpoint told, the
    /// waiting tasks woken.
    pub(crate) fn poisoned(&mut self, id: ConnId, mut p: table::Poisoned) {
        let (local, remote) = p.addrs();
        if let Some((route, rst)) = p.take_reset() {
            self.poisoned_resets.push((local, remote, route, rst));
        }
        p.wake();
        self.stats.poisoned += 1;
        tracing::error!(%local, %remote, "rawtcp: the engine panicked; connection reset");
        self.report(id);
        self.mark_dirty(id);
        if let Some(w) = &self.reactor {
            w.wake_by_ref();
        }
    }

    /// Forgets connection `id` — the one place a connection leaves the stack: out of the
    /// endpoint and the table, its claim on a local address given up (the address queued
    /// for the datapath, to be released outside the lock, when nothing else uses it).
    pub(in crate::stack) fn forget(&mut self, id: ConnId) {
        self.table.endpoint.remove(id);
        let Some(cell) = self.table.take(id) else {
            return;
        };
        let (memory, claimed) = {
            let e = table::lock(&cell);
            (e.buffer_memory, e.claimed.addr(e.conn.local_addr()))
        };
        self.table.recycle(cell);
        self.buffer_memory = self.buffer_memory.saturating_sub(memory as usize);
        self.reaped = true;
        if let Some(a) = claimed.and_then(|c| self.drop_claim(c)) {
            self.unbind_later.push(a);
        }
    }

    /// Reports connection `id`'s status to the endpoint after it was touched, and acts on
    /// the answer: wakes the listener whose accept queue it joined, or forgets it. Returns
    /// whether it is still there.
    pub(in crate::stack) fn report(&mut self, id: ConnId) -> bool {
        let Some(status) = self.table.get(id).map(|e| e.conn.status()) else {
            return false;
        };
        match self.table.endpoint.update(id, status) {
            Update::None => true,
            Update::Accepted(l) => {
                if let Some(l) = self.table.listeners.get_mut(&l) {
                    l.waiters.wake_all();
                }
                true
            }
            Update::Forget => {
                self.forget(id);
                false
            }
        }
    }

    /// Gives up one connection's claim on `addr`; returns it when it is to be given back
    /// to the datapath (nothing else uses it).
    pub(in crate::stack) fn drop_claim(&mut self, addr: SocketAddr) -> Option<SocketAddr> {
        match self.connect_ports.get_mut(&addr) {
            Some(n) if *n > 1 => {
                *n -= 1;
                None
            }
            Some(_) => {
                self.connect_ports.remove(&addr);
                if let Some(i) = self.connect_order.iter().position(|a| *a == addr) {
                    self.connect_order.swap_remove(i);
                }
                Some(addr)
            }
            None => Some(addr),
        }
    }

    /// A local address already claimed for outgoing connections on `ip` that a connection to
    /// `remote` can share (their 4-tuples differ) and that `lands` accepts (see
    /// [`Shared::must_land`]), taking a reference to it. `exhaustive` looks at every one;
    /// otherwise a few, so that `connect` stays cheap.
    ///
    /// Each destination keeps its own place in the claim order and goes on from there, so
    /// its connections take the claimed ports one after another and a new port is claimed
    /// only when every port after its place serves it already: N connections spread over
    /// k destinations need about N / k ports. (One place shared by all destinations, moving
    /// round robin, left ports unused by some destinations: 100,000 connections to 9
    /// server ports took 15,100 ports where 11,112 do.)
    pub(in crate::stack) fn share_connect_port(
        &mut self,
        ip: IpAddr,
        remote: SocketAddr,
        exhaustive: bool,
        lands: impl Fn(u16) -> bool,
    ) -> Option<SocketAddr> {
        let n = self.connect_order.len();
        let tries = if exhaustive { n } else { n.min(SHARE_TRIES) };
        if self.connect_cursors.len() >= MAX_CURSORS && !self.connect_cursors.contains_key(&remote)
        {
            self.connect_cursors.clear();
        }
        let cursor = self.connect_cursors.entry(remote).or_insert(0);
        for _ in 0..tries {
            let i = *cursor % n;
            *cursor = i + 1;
            let addr = self.connect_order[i];
            if addr.ip() == ip
                && lands(addr.port())
                && self.table.endpoint.lookup(addr, remote).is_none()
            {
                *self.connect_ports.entry(addr).or_insert(0) += 1;
                return Some(addr);
            }
        }
        None
    }

    /// Records a local address just claimed for an outgoing connection, to share later.
    pub(in crate::stack) fn add_connect_port(&mut self, addr: SocketAddr) {
        if self.connect_ports.insert(addr, 1).is_none() {
            self.connect_order.push(addr);
        }
    }

    /// Releases the lingering listener addresses no connection uses any more.
    pub(in crate::stack) fn release_lingering(&mut self) {
        if !self.reaped || self.lingering.is_empty() {
            return;
        }
        self.reaped = false;
        let mut still = std::mem::take(&mut self.lingering);
        still.retain(|a| {
            let used = self.table.endpoint.address_in_use(*a);
            if !used {
                self.unbind_later.push(*a);
            }
            used
        });
        self.lingering = still;
    }

    /// Wakes the reactor if a connection's timer is now due before it would look: the
    /// reactor keeps the timers.
    pub(in crate::stack) fn wake_reactor_for_timers(&mut self) {
        let earliest = self.timers.peek().map(|r| r.0 .0);
        if earliest.is_some_and(|t| self.reactor_deadline.is_none_or(|d| t < d)) {
            if let Some(w) = &self.reactor {
                self.stats.reactor_wakes.timers += 1;
                w.wake_by_ref();
            }
        }
    }

    /// Queues a connection for the reactor's transmit pass and wakes the reactor.
    pub fn mark_dirty(&mut self, id: ConnId) {
        self.queue_dirty(id);
        if let Some(w) = &self.reactor {
            self.stats.reactor_wakes.transmit_passes += 1;
            w.wake_by_ref();
        }
    }

    /// Queues a connection for the transmit pass that the caller — the reactor, or a task
    /// receiving for the stack — runs before it lets go of the stack: no wake-up, which
    /// would set another thread going for nothing.
    pub(in crate::stack) fn queue_dirty(&mut self, id: ConnId) {
        if let Some(mut e) = self.table.get(id) {
            if !e.dirty {
                e.dirty = true;
                self.dirty.push_back(id);
            }
        }
    }
}

/// Ends the reactor when the last [`Stack`] handle goes.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.shutdown = true;
        if let Some(w) = inner.reactor.take() {
            w.wake();
        }
    }
}

/// A user-space TCP stack: a datapath, a reactor task, and the connections over them; one
/// of each per shard, one shard per core by default where the datapath can steer (see
/// [`StackBuilder::shards`]).
///
/// Cloning gives another handle to the same stack. When the last handle is dropped the
/// reactor resets every connection and stops; streams and listeners made from it then report
/// errors. The free functions ([`TcpListener::bind`](crate::TcpListener::bind),
/// [`TcpStream::connect`](crate::TcpStream::connect)) use a default
/// stack that lives for the whole process.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use rawtcp::Stack;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let stack = Stack::builder().build()?; // datapath from RAWTCP_DATAPATH, UDP by default
/// let listener = stack.bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let mut client = stack.connect(addr).await?;
/// let (mut server, _) = listener.accept().await?;
/// client.write_all(b"hello").await?;
/// let mut buf = [0u8; 5];
/// server.read_exact(&mut buf).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Stack {
    shards: Arc<shards::Shards>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("datapath", &self.shared().datapath.name())
            .field("shards", &self.shard_count())
            .finish()
    }
}

/// Configures and starts a [`Stack`].
#[must_use]
pub struct StackBuilder {
    datapath: Option<Arc<dyn Datapath>>,
    config: Config,
    tap: Option<Tap>,
    isn_fn: Option<IsnFn>,
    dedicated_thread: bool,
    pcap: Option<PathBuf>,
    syn_cookies: Option<SynCookieMode>,
    limits: Option<Limits>,
    max_buffer_memory: Option<usize>,
    shards: Option<usize>,
    busy_poll: Option<std::time::Duration>,
    partial_checksums: Option<bool>,
}

impl fmt::Debug for StackBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackBuilder")
            .field("config", &self.config)
            .field("dedicated_thread", &self.dedicated_thread)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl StackBuilder {
    /// Uses `datapath` instead of the one named by `RAWTCP_DATAPATH`.
    pub fn datapath(mut self, datapath: impl Datapath) -> Self {
        self.datapath = Some(Arc::new(datapath));
        self
    }

    /// The connection settings every connection starts from. Its `mss` is an upper bound:
    /// each connection uses what the datapath's MTU towards the peer allows, at most that
    /// (the builder's default places no bound).
    pub fn tcp_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Calls `tap` for every segment sent and every valid segment received.
    pub fn tap(mut self, tap: impl Fn(&TapEvent<'_>) + Send + Sync + 'static) -> Self {
        self.tap = Some(Arc::new(tap));
        self
    }

    /// Chooses ISNs with `f(local, remote)` instead of RFC 6528's keyed hash.
    pub fn isn(
        mut self,
        f: impl Fn(SocketAddr, SocketAddr) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.isn_fn = Some(Arc::new(f));
        self
    }

    /// Writes every segment sent and received to a pcap file at `path` (see
    /// [`datapath::pcap`]). Without it, the stack writes the file `RAWTCP_PCAP` names, if
    /// set: the first stack of the process `path`, each further one `path` numbered
    /// `-2`, `-3`, ... before the extension.
    pub fn pcap(mut self, path: impl Into<PathBuf>) -> Self {
        self.pcap = Some(path.into());
        self
    }

    /// Runs the reactor on a thread of its own (with its own single-threaded tokio runtime)
    /// instead of spawning it on the current runtime, so the stack outlives the runtime that
    /// built it. The default stack runs this way.
    pub fn dedicated_thread(mut self, yes: bool) -> Self {
        self.dedicated_thread = yes;
        self
    }

    /// When listeners answer SYNs with SYN cookies (RFC 4987 §3.6), like Linux's
    /// `net.ipv4.tcp_syncookies`: by default ([`SynCookieMode::OnOverflow`]) once a
    /// listener's SYN queue is full, so that a SYN flood does not keep legitimate clients out.
    /// A cookie connection negotiates window scaling and SACK only when the client sent
    /// timestamps, as on Linux.
    pub fn syn_cookies(mut self, mode: SynCookieMode) -> Self {
        self.syn_cookies = Some(mode);
        self
    }

    /// Splits the stack into `n` shards, each with its own reactor (and, with
    /// [`dedicated_thread`](Self::dedicated_thread), its own thread), connection table,
    /// timers and datapath sockets, sharing nothing on the data path, so that connections
    /// spread over cores. Without it, `RAWTCP_SHARDS` sets the number, and without that a
    /// stack has one shard per available core where the datapath can steer, else one (a
    /// stack whose reactors run on the application's runtime, not on threads of their own,
    /// has at most one per worker thread: one on a current-thread runtime).
    ///
    /// A listener listens on every shard; the datapath steers each arriving connection to
    /// one of them by its ports (see [`datapath::shard_of`]), and `accept` takes from all.
    /// `connect` opens a connection on the calling task's shard (a task is given one at its
    /// first `connect`, the shards in turn, and keeps it; a socket bound to a port first,
    /// on the shard its ports steer to). Counters ([`Stack::stats`]) and the connection
    /// table ([`Stack::connections`]) cover every shard; [`Stack::shard_stats`] gives each.
    ///
    /// At most 64. Only datapaths that can steer support more than one shard: the UDP datapath (one
    /// `SO_REUSEPORT` group per listener address with a BPF program choosing the shard,
    /// and a shared socket per shard for outgoing connections), the raw datapath (raw
    /// sockets per shard whose BPF filters let through only that shard's segments) and the
    /// TUN datapath (a queue of a multi-queue device per shard; the kernel learns each
    /// flow's queue from the shard that writes it, and a shard hands the few packets that
    /// reach the wrong queue to their owner). With another, `build` fails with
    /// `Unsupported`. A listen backlog is divided between the shards.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let stack = rawtcp::Stack::builder().shards(2).build()?;
    /// let listener = stack.bind("127.0.0.1:0").await?;
    /// # let _ = listener; Ok(()) }
    /// ```
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Starts the stack. Without `dedicated_thread`, this must run inside a tokio runtime,
    /// which then hosts the reactor task.
    pub fn build(self) -> io::Result<Stack> {
        self.start()
    }

    /// The most send and receive buffer storage all connections together may hold, like
    /// Linux's `net.ipv4.tcp_mem` (default 1 GiB). Above it the stack is short of memory:
    /// arriving data is stored only in order and in storage already allocated (at least 4
    /// KiB a connection), the rest is dropped for the peer to send again, until reads and
    /// closes bring the total down. Each connection's own buffers stay bounded by its
    /// [`Config`] in any case.
    pub fn max_buffer_memory(mut self, bytes: usize) -> Self {
        self.max_buffer_memory = Some(bytes);
        self
    }

    /// How long a reactor on a thread of its own keeps asking the datapath for packets
    /// after its last work, before it sleeps until the next readiness event (default
    /// [`DEFAULT_BUSY_POLL`], 50 µs; `RAWTCP_BUSY_POLL=<microseconds>` sets it, 0 turns it
    /// off), as Linux's `net.core.busy_poll` does for a socket. A reactor that sleeps is
    /// woken by the kernel when the next packet arrives, and on a virtual machine that
    /// wake-up alone can take tens of microseconds: longer than a round trip on a fast
    /// path, and paid on every ACK of a flow whose window is small (a lossy one, say). It
    /// applies only where the datapath can be asked without readiness
    /// ([`Capabilities::receive_now`](datapath::Capabilities::receive_now): UDP and raw on
    /// Linux) and to reactors with a thread of their own
    /// ([`dedicated_thread`](Self::dedicated_thread), as the default stack's): spent on an
    /// application's runtime, it would hold up the application's tasks. The reactor yields
    /// its core between asks, so other runnable threads there go first; an idle stack does not
    /// spin at all.
    pub fn busy_poll(mut self, window: std::time::Duration) -> Self {
        self.busy_poll = Some(window);
        self
    }

    /// Whether to leave out TCP checksums where the datapath vouches for the carrier (on by
    /// default; `RAWTCP_PARTIAL_CHECKSUMS=off` sets the default to off): arrivals by such a
    /// carrier (a UDP datagram from loopback) are not summed, and connections to a peer
    /// that agrees send partial checksums (see [`Config::partial_checksums`]). Off, every
    /// segment carries a full checksum and every arrival is verified.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let stack = rawtcp::Stack::builder().partial_checksums(false).build()?;
    /// # drop(stack); Ok(()) }
    /// ```
    pub fn partial_checksums(mut self, on: bool) -> Self {
        self.partial_checksums = Some(on);
        self
    }

    /// Bounds on connections in TIME-WAIT and on connections the application let go that
    /// are still closing (defaults: [`Limits::default`]), as Linux's `tcp_max_tw_buckets`
    /// and `tcp_max_orphans`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    fn start(self) -> io::Result<Stack> {
        let StackBuilder {
            datapath,
            config,
            mut tap,
            isn_fn,
            dedicated_thread,
            pcap,
            syn_cookies,
            limits,
            max_buffer_memory,
            shards,
            busy_poll,
            partial_checksums,
        } = self;
        if let Some(path) = pcap.or_else(capture::path_from_env) {
            tap = Some(capture::pcap_tap(path, tap)?);
        }
        let busy_poll = match busy_poll {
            Some(d) => d,
            None => busy_poll_from_env()?,
        };
        let settings = Settings {
            config,
            tap,
            isn_fn,
            syn_cookies,
            limits,
            max_buffer_memory,
            busy_poll,
            partial_checksums: match partial_checksums {
                Some(on) => on,
                None => partial_checksums_from_env()?,
            },
        };
        let count = match shards {
            Some(n) => shards::Count::Exactly(n.max(1)),
            None => shards::from_env()?,
        };
        shards::start(datapath, settings, count, dedicated_thread)
    }

    /// Starts a reactor on a thread of its own named `name`, with the datapath `make` makes
    /// there (inside that thread's runtime) and its place among the stack's shards.
    fn build_on_thread(
        make: impl FnOnce() -> io::Result<(Arc<dyn Datapath>, (usize, usize))> + Send + 'static,
        settings: Settings,
        name: String,
    ) -> io::Result<Owner> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new().name(name).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let (datapath, place) = match make() {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let runtime = tokio::runtime::Handle::current();
                let (owner, reactor) = Self::assemble(datapath, settings, (runtime, true), place);
                let _ = tx.send(Ok(owner));
                reactor.await;
            });
        })?;
        rx.recv()
            .map_err(|_| io::Error::other("rawtcp: reactor thread failed to start"))?
    }

    /// Makes the stack's state, with every setting in place before anything can use it,
    /// and its reactor (for the caller to run).
    fn assemble(
        datapath: Arc<dyn Datapath>,
        settings: Settings,
        (runtime, dedicated): (tokio::runtime::Handle, bool),
        place: (usize, usize),
    ) -> (Owner, reactor::Reactor) {
        let mut table = Table::default();
        if let Some(mode) = settings.syn_cookies {
            table.endpoint.set_syn_cookies(mode);
        }
        if let Some(limits) = settings.limits {
            table.endpoint.set_limits(limits);
        }
        let rx_wake = Arc::new(rx::RxWake::default());
        let capabilities = datapath.capabilities();
        let datapath_receives_now = capabilities.receive_now;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                table,
                dirty: std::collections::VecDeque::new(),
                timers: BinaryHeap::new(),
                reactor: None,
                shutdown: false,
                stopped: false,
                isn: IsnGenerator::new(),
                stats: StackStats::default(),
                unbind_later: Vec::new(),
                lingering: Vec::new(),
                reaped: false,
                reactor_deadline: None,
                connect_ports: HashMap::new(),
                connect_order: Vec::new(),
                connect_cursors: HashMap::new(),
                poisoned_resets: Vec::new(),
                buffer_memory: 0,
                max_buffer_memory: settings
                    .max_buffer_memory
                    .unwrap_or(DEFAULT_MAX_BUFFER_MEMORY),
            }),
            quick_unbind: datapath.capabilities().quick_unbind,
            pending_holds: datapath.capabilities().pending_holds,
            // A tap (or a capture) is shown whole packets.
            sends_attached: datapath.capabilities().sends_attached && settings.tap.is_none(),
            partial_checksums: settings.partial_checksums
                && datapath.capabilities().loopback_carriers_verified
                && settings.tap.is_none(),
            trust_carriers: settings.partial_checksums,
            datapath,
            tx_pool: Mutex::new(Vec::new()),
            tx_order: Mutex::default(),
            backlogged: AtomicBool::new(false),
            rx: Mutex::new(reactor::rx_state()),
            rx_waker: Waker::from(rx_wake.clone()),
            rx_wake,
            dedicated,
            follows: dedicated && capabilities.readiness_follows,
            followed: std::sync::atomic::AtomicBool::new(false),
            busy_poll: (dedicated && datapath_receives_now && !settings.busy_poll.is_zero())
                .then_some(settings.busy_poll),
            place,
            siblings: OnceLock::new(),
            origin: {
                let _clock = runtime.enter();
                tokio::time::Instant::now()
            },
            runtime,
            config: settings.config,
            tap: settings.tap,
            isn_fn: settings.isn_fn,
        });
        let reactor = reactor::Reactor::new(shared.clone());
        (Owner { shared }, reactor)
    }
}

/// The runtime `build` is called in, which hosts the reactor of a stack without a thread of
/// its own.
fn current_runtime() -> io::Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .map_err(|_| io::Error::other("rawtcp: Stack::build must be called inside a tokio runtime"))
}

/// What a stack is built with besides its datapath, taken from its builder (each shard of
/// a sharded stack gets a copy).
#[derive(Clone)]
struct Settings {
    config: Config,
    tap: Option<Tap>,
    isn_fn: Option<IsnFn>,
    syn_cookies: Option<SynCookieMode>,
    limits: Option<Limits>,
    max_buffer_memory: Option<usize>,
    busy_poll: std::time::Duration,
    /// `RAWTCP_PARTIAL_CHECKSUMS` is not `off`.
    partial_checksums: bool,
}

/// The default of [`StackBuilder::busy_poll`].
pub const DEFAULT_BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(50);

/// `RAWTCP_BUSY_POLL` (microseconds), else [`DEFAULT_BUSY_POLL`].
fn busy_poll_from_env() -> io::Result<std::time::Duration> {
    parse_busy_poll(std::env::var("RAWTCP_BUSY_POLL").ok().as_deref())
}

/// A `RAWTCP_BUSY_POLL` value: microseconds, 0 to 1,000,000 (unset or blank: the default).
fn parse_busy_poll(value: Option<&str>) -> io::Result<std::time::Duration> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_BUSY_POLL),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|&us| us <= 1_000_000)
            .map(std::time::Duration::from_micros)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("RAWTCP_BUSY_POLL={v}: expected microseconds, 0 to 1000000"),
                )
            }),
    }
}

/// `RAWTCP_PARTIAL_CHECKSUMS`: `off` keeps full checksums on every segment and verifies every
/// arrival, even where the carrier vouches for its packets; unset, blank or `on`, arrivals by
/// such a carrier are not summed and partial checksums are offered there.
fn partial_checksums_from_env() -> io::Result<bool> {
    parse_partial_checksums(std::env::var("RAWTCP_PARTIAL_CHECKSUMS").ok().as_deref())
}

/// A `RAWTCP_PARTIAL_CHECKSUMS` value (unset or blank: on).
fn parse_partial_checksums(value: Option<&str>) -> io::Result<bool> {
    match value.map(str::trim) {
        None | Some("") => Ok(true),
        Some(v) => datapath::switch(v).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("RAWTCP_PARTIAL_CHECKSUMS={v}: expected on or off"),
            )
        }),
    }
}

fn default_datapath() -> io::Result<Arc<dyn Datapath>> {
    Ok(match datapath::Kind::from_env()? {
        datapath::Kind::Udp => Arc::new(datapath::udp::UdpDatapath::new()?),
        datapath::Kind::Sim => {
            let net = datapath::sim::SimNetwork::new(0);
            Arc::new(net.host(IpAddr::from([10, 0, 0, 1]))?)
        }
        datapath::Kind::Raw => Arc::new(datapath::raw::RawDatapath::new()?),
        #[cfg(target_os = "linux")]
        datapath::Kind::Tun => Arc::new(datapath::tun::TunDatapath::new(
            datapath::tun::TunConfig::from_env()?,
        )?),
        #[cfg(not(target_os = "linux"))]
        datapath::Kind::Tun => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "RAWTCP_DATAPATH=tun: TUN devices are supported on Linux only",
            ))
        }
    })
}

static DEFAULT: OnceLock<Stack> = OnceLock::new();
static DEFAULT_INIT: Mutex<()> = Mutex::new(());

impl Stack {
    /// A builder for a stack with explicit settings.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            datapath: None,
            // The MSS is then what the datapath's MTU allows (65 KB on UDP loopback).
            config: Config {
                mss: u16::MAX,
                ..Config::default()
            },
            tap: None,
            isn_fn: None,
            dedicated_thread: false,
            pcap: None,
            syn_cookies: None,
            limits: None,
            max_buffer_memory: None,
            shards: None,
            busy_poll: None,
            partial_checksums: None,
        }
    }

    /// The process-wide stack behind [`TcpListener::bind`](crate::TcpListener::bind) and
    /// [`TcpStream::connect`](crate::TcpStream::connect): its
    /// datapath comes from `RAWTCP_DATAPATH` (`udp` when unset) and its reactor runs on a
    /// thread of its own, so it keeps working across tokio runtimes. With `RAWTCP_PCAP=path`
    /// it captures every segment to that pcap file (numbered if another stack took the name
    /// first, see [`StackBuilder::pcap`]); `RAWTCP_CC=newreno|cubic|bbr` chooses its
    /// congestion control (CUBIC when unset).
    pub fn default_stack() -> io::Result<Stack> {
        if let Some(s) = DEFAULT.get() {
            return Ok(s.clone());
        }
        let _guard = unpoisoned(&DEFAULT_INIT);
        if let Some(s) = DEFAULT.get() {
            return Ok(s.clone());
        }
        // `build` honours RAWTCP_PCAP, as for every stack without a pcap of its own.
        let mut builder = Stack::builder().dedicated_thread(true);
        if let Some(name) = std::env::var("RAWTCP_CC").ok().filter(|n| !n.is_empty()) {
            let congestion = name.parse().map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("RAWTCP_CC: {e}"))
            })?;
            builder = builder.tcp_config(Config {
                congestion,
                ..Config::default()
            });
        }
        let stack = builder.build()?;
        Ok(DEFAULT.get_or_init(|| stack).clone())
    }

    /// The first shard (the only one of a stack of one).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        self.shards.get(0)
    }

    /// The datapath's name (`"udp"`, `"sim"`, ...).
    pub fn datapath_name(&self) -> &'static str {
        self.shared().datapath.name()
    }

    /// Changes the bounds on TIME-WAIT and orphaned connections; see
    /// [`StackBuilder::limits`]. Each shard of a sharded stack applies them to its own
    /// connections.
    pub fn set_limits(&self, limits: Limits) {
        for s in self.shards.iter() {
            s.lock().table.endpoint.set_limits(limits);
        }
    }

    /// Changes when listeners answer SYNs with cookies; see [`StackBuilder::syn_cookies`].
    pub fn set_syn_cookies(&self, mode: SynCookieMode) {
        for s in self.shards.iter() {
            s.lock().table.endpoint.set_syn_cookies(mode);
        }
    }

    /// Counters of this stack: of all its shards together.
    pub fn stats(&self) -> StackStats {
        let mut total = StackStats::default();
        for s in self.shards.iter() {
            total.add(&s.stats());
        }
        total
    }
}

impl Shared {
    /// Counters of this stack (of this shard, in a sharded stack).
    pub(crate) fn stats(&self) -> StackStats {
        let inner = self.lock();
        // Taken after the stack's lock, as every sender takes it.
        let backlog = unpoisoned(&self.tx_order);
        let ep = inner.table.endpoint.stats();
        let mut reactor_wakes = inner.stats.reactor_wakes;
        self.rx_wake.add_caused(&mut reactor_wakes);
        StackStats {
            reactor_wakes,
            connections: inner.table.len(),
            resets_sent: ep.resets_sent,
            syn_dropped: ep.syn_queue_full + ep.accept_queue_full,
            listen_overflows: ep.listen_overflows,
            cookies_sent: ep.cookies_sent,
            cookies_accepted: ep.cookies_accepted,
            cookies_rejected: ep.cookies_rejected,
            time_wait_overflows: ep.time_wait_overflows,
            orphan_overflows: ep.orphan_overflows,
            time_wait: ep.time_wait,
            orphans: ep.orphans,
            buffer_memory: inner.buffer_memory,
            send_deferred: backlog.deferred,
            send_dropped: backlog.overflow,
            ..inner.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn partial_checksum_setting_reads_on_and_off() {
        assert!(parse_partial_checksums(None).unwrap());
        assert!(parse_partial_checksums(Some(" ")).unwrap());
        assert!(parse_partial_checksums(Some("on")).unwrap());
        assert!(!parse_partial_checksums(Some("OFF")).unwrap());
        assert!(!parse_partial_checksums(Some("0")).unwrap());
        let e = parse_partial_checksums(Some("maybe")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("RAWTCP_PARTIAL_CHECKSUMS"));
    }

    #[test]
    fn busy_poll_setting_reads_microseconds() {
        assert_eq!(parse_busy_poll(None).unwrap(), DEFAULT_BUSY_POLL);
        assert_eq!(parse_busy_poll(Some(" ")).unwrap(), DEFAULT_BUSY_POLL);
        assert_eq!(parse_busy_poll(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(
            parse_busy_poll(Some(" 200 ")).unwrap(),
            Duration::from_micros(200)
        );
        for bad in ["-1", "50us", "1000001", "x"] {
            let e = parse_busy_poll(Some(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("RAWTCP_BUSY_POLL"), "{e}");
        }
    }
}
