//! The endpoint: everything TCP decides above a single connection — which connection an
//! arriving segment belongs to, the listeners with their SYN and accept queues, whether a SYN
//! may reopen a connection lingering in TIME-WAIT, and the RST owed to a segment that
//! belongs to nothing.
//!
//! Like [`Connection`](super::Connection) it is sans-IO: segments come in as parsed
//! [`TcpRepr`]s with their addresses, decisions go out as values ([`Route`], [`Update`]),
//! and nothing here reads a clock, takes a lock, wakes a task or touches a socket.
//!
//! # Who owns the connections
//!
//! The endpoint does **not** own the [`Connection`](super::Connection) objects. It owns the
//! routing table (4-tuple → [`ConnectionHandle`]), the listeners and their queues, and a
//! little metadata per connection (its addresses, who holds it, whether its handshake
//! completed, and what a new SYN is judged against while it is in TIME-WAIT). The driver keeps
//! each connection wherever it likes, indexed by [`ConnectionHandle::index`], delivers the
//! segments [`Endpoint::handle`] routes to it, and after touching a connection reports its
//! [`ConnectionStatus`] through [`Endpoint::update`].
//!
//! This is quinn-proto's split, chosen for the same reason: a runtime can then keep each
//! connection behind a lock of its own while the endpoint — the only structure every
//! arriving segment must consult — is locked just long enough to route one segment, insert
//! or remove. Every decision here needs only the endpoint's own state, never a connection's:
//! the TIME-WAIT test runs on the [`TimeWait`] record the connection reported when it entered
//! that state, so routing a SYN never waits for a connection's lock.
//!
//! Handles are dense indices with a generation, so a stale handle (its connection forgotten,
//! its slot reused) is recognised rather than misdirected.

use super::syncookie::{Cookie, SynCookies};
use super::{Instant, SeqNum};
use crate::wire::{TcpFlags, TcpRepr};
use hashbrown::HashTable;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

/// One connection known to an [`Endpoint`]: a dense slot index and the slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionHandle {
    index: u32,
    generation: u32,
}

impl ConnectionHandle {
    /// The slot index: small, dense and reused after the connection is forgotten, so a
    /// driver can keep its per-connection state in a `Vec` indexed by it (checking the whole
    /// handle, which differs between uses of one slot).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// One listener of an [`Endpoint`]. Several may share an address (`SO_REUSEPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(u32);

/// Who holds a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Not yet accepted: in this listener's SYN queue, or in its accept queue once the
    /// handshake completed.
    Listener(ListenerId),
    /// The application (it connected, or accepted it).
    Application,
    /// The application let go; the connection finishes its close and is then forgotten
    /// (Linux's orphan).
    Orphan,
}

/// What a connection in TIME-WAIT judges a new SYN for its 4-tuple by: its RCV.NXT and, when
/// timestamps are in use, the last TSval it recorded (TS.Recent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWait {
    rcv_nxt: SeqNum,
    ts_recent: Option<u32>,
}

impl TimeWait {
    /// The record of a connection in TIME-WAIT whose RCV.NXT is `rcv_nxt`, with the
    /// TS.Recent it keeps if timestamps were negotiated.
    pub fn new(rcv_nxt: SeqNum, ts_recent: Option<u32>) -> TimeWait {
        TimeWait { rcv_nxt, ts_recent }
    }

    /// Whether `syn` may open a new incarnation of the connection (RFC 6191, after RFC 1122
    /// §4.2.2.13): a pure SYN whose TSval PAWS (RFC 7323 §5) does not reject as older, and
    /// which is new — its TSval newer than TS.Recent, or its sequence number beyond RCV.NXT —
    /// as Linux's `tcp_timewait_state_process` decides. Timestamps tick in milliseconds, so a
    /// peer reconnecting within one millisecond carries an equal TSval; its new ISN, which RFC
    /// 6528's clock moves every 4 µs, still tells the SYN is new.
    pub fn accepts_syn(&self, syn: &TcpRepr) -> bool {
        if !is_pure_syn(syn) {
            return false;
        }
        let ts = match (self.ts_recent, syn.options.timestamps) {
            (Some(recent), Some((tsval, _))) => Some(tsval.wrapping_sub(recent) as i32),
            _ => None,
        };
        if ts.is_some_and(|d| d < 0) {
            // RFC 7323 §5.3: an older TSval is a segment from the old incarnation.
            return false;
        }
        SeqNum(syn.seq) > self.rcv_nxt || ts.is_some_and(|d| d > 0)
    }
}

/// What the endpoint needs to know of a connection after the driver touched it (see
/// [`Connection::status`](super::Connection::status)). Small and `Copy`, so a driver can
/// take it under the connection's lock and report it after releasing that lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// The handshake completed (the connection is synchronized, RFC 9293 §3.3.2).
    pub established: bool,
    /// The connection is in CLOSED: it has no TCB any more, so segments for its 4-tuple are
    /// for no connection (RFC 9293 §3.10.7.1) even while the application still holds it.
    pub closed: bool,
    /// Closed with nothing left to send: once nobody holds it, it can be forgotten.
    pub finished: bool,
    /// In TIME-WAIT: what a new SYN for its 4-tuple is judged by.
    pub time_wait: Option<TimeWait>,
}

/// Where an arriving segment goes, from [`Endpoint::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Deliver it to this connection.
    Connection(ConnectionHandle),
    /// A SYN a listener takes: the driver creates the connection with
    /// [`Connection::accept`](super::Connection::accept) under `handle`, or calls
    /// [`Endpoint::remove`] if that declines.
    Accept(Accept),
    /// Answer with this segment (a RST), addressed back to the segment's source; no
    /// connection is involved.
    Reply(TcpRepr),
    /// Answer the SYN with a cookie SYN+ACK whose ISN is `iss`, built from the listener's
    /// settings by [`Connection::cookie_syn_ack`](super::Connection::cookie_syn_ack), and
    /// keep nothing (RFC 4987 §3.6).
    SynCookie {
        /// The listener the SYN was for.
        listener: ListenerId,
        /// The cookie.
        iss: SeqNum,
    },
    /// An ACK carrying a valid cookie: the driver makes the connection with
    /// [`Connection::accept_cookie`](super::Connection::accept_cookie) under
    /// `accept.handle` (it counts in the listener's SYN queue until it reports itself
    /// established), or calls [`Endpoint::remove`] if that declines.
    CookieAccept {
        /// The listener and the handle, as for a SYN.
        accept: Accept,
        /// What the cookie gave back.
        cookie: Cookie,
    },
    /// Drop it, for this reason (counted in [`EndpointStats`]).
    Discard(DropReason),
}

/// A new connection in a listener's SYN queue; see [`Route::Accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    /// The listener whose SYN queue it joined.
    pub listener: ListenerId,
    /// The handle the endpoint gave it.
    pub handle: ConnectionHandle,
    /// A connection in TIME-WAIT that the SYN reopened (RFC 6191): the endpoint has forgotten
    /// it already, and the driver must drop it **before** storing the new one (they may share
    /// a slot index).
    pub replaced: Option<ConnectionHandle>,
}

/// Why [`Endpoint::handle`] dropped a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A SYN found its listener's SYN queue full (RFC 4987 §3.1: the backlog is bounded; the
    /// peer retries).
    SynQueueFull,
    /// A SYN found its listener's accept queue full, as Linux drops it.
    AcceptQueueFull,
    /// The ACK that would complete a handshake found the listener's accept queue full. As on
    /// Linux (without `tcp_abort_on_overflow`) the connection stays in SYN-RECEIVED and
    /// completes when a later ACK finds room, for instance the one answering its SYN+ACK
    /// retransmission.
    ListenOverflow,
    /// A RST for no connection: never answered (RFC 9293 §3.10.7.1).
    Reset,
    /// A segment for a listener with neither SYN, ACK nor RST (RFC 9293 §3.10.7.2: dropped).
    NotSyn,
}

/// When listeners answer SYNs with cookies instead of queueing them, like Linux's
/// `net.ipv4.tcp_syncookies` (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynCookieMode {
    /// Never: a SYN that finds the SYN queue full is dropped.
    Off,
    /// When a listener's SYN queue is full (the default, as Linux's 1): legitimate clients
    /// still get through a SYN flood.
    #[default]
    OnOverflow,
    /// For every SYN (Linux's 2): no SYN-RECEIVED state at all. For tests.
    Always,
}

/// Bounds on the state connections leave behind once the application is done with them, as
/// Linux bounds it (`net.ipv4.tcp_max_tw_buckets`, `net.ipv4.tcp_max_orphans`). A dead peer
/// or an attacker who makes a server close many connections cannot pile them up past these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections in TIME-WAIT. A connection the application let go that would enter
    /// TIME-WAIT past it is forgotten at once instead (Linux: "time wait bucket table
    /// overflow"); counted in [`EndpointStats::time_wait_overflows`].
    pub max_time_wait: usize,
    /// Most connections the application let go that are still closing (orphans). One let go
    /// past it is reset at once instead of closed gracefully (Linux: "too many orphaned
    /// sockets"); counted in [`EndpointStats::orphan_overflows`].
    pub max_orphans: usize,
}

impl Default for Limits {
    /// 65,536 of each: a connection costs about 2 KB here, so each limit bounds its state
    /// near 130 MB.
    fn default() -> Limits {
        Limits {
            max_time_wait: 65_536,
            max_orphans: 65_536,
        }
    }
}

/// How long after its last cookie a listener still checks ACKs for one; later, an ACK for
/// no connection is answered with a RST without the cost of a check (Linux's
/// `TCP_SYNCOOKIE_VALID`, two minutes). A cookie is never valid for longer.
const COOKIE_CHECK_WINDOW: std::time::Duration = std::time::Duration::from_secs(128);

/// What became of a connection after [`Endpoint::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Nothing the driver must act on.
    None,
    /// Its handshake completed and it moved to this listener's accept queue: wake whoever
    /// waits in `accept`.
    Accepted(ListenerId),
    /// It is finished and nobody holds it: the endpoint forgot it; the driver drops it too.
    Forget,
}

/// A listener's state, as [`Endpoint::listener`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The accept queue's limit (`listen(backlog)`).
    pub backlog: usize,
    /// Whether other listeners may share the address (`SO_REUSEPORT`).
    pub reuseport: bool,
    /// Connections in SYN-RECEIVED.
    pub syn_queue: usize,
    /// Connections established and waiting for `accept`.
    pub accept_queue: usize,
}

/// What [`Endpoint::close_listener`] leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedListener {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether it was the last listener at that address.
    pub last: bool,
    /// Its connections not yet accepted, now orphans: the driver aborts them (a listener's
    /// close resets its queued connections, as Linux's `inet_csk_listen_stop`).
    pub orphans: Vec<ConnectionHandle>,
}

/// A connection's entry, as [`Endpoint::connection`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// Who holds it.
    pub owner: Owner,
    /// Whether it is in TIME-WAIT (as last reported).
    pub time_wait: bool,
}

/// Counters of an [`Endpoint`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// RSTs answered to segments that belonged to no connection.
    pub resets_sent: u64,
    /// SYNs dropped: the SYN queue was full.
    pub syn_queue_full: u64,
    /// SYNs dropped: the accept queue was full.
    pub accept_queue_full: u64,
    /// Handshake-completing ACKs dropped: the accept queue was full (Linux's
    /// `ListenOverflows` counts these and the SYNs above).
    pub listen_overflows: u64,
    /// Connections in TIME-WAIT that a new SYN reopened.
    pub time_wait_reopened: u64,
    /// SYNs answered with a cookie instead of a place in the SYN queue.
    pub cookies_sent: u64,
    /// ACKs whose valid cookie opened a connection.
    pub cookies_accepted: u64,
    /// ACKs for a listener that sent cookies, whose cookie was stale or forged (answered
    /// with a RST, as any ACK for no connection).
    pub cookies_rejected: u64,
    /// Orphans forgotten instead of lingering in TIME-WAIT ([`Limits::max_time_wait`]).
    pub time_wait_overflows: u64,
    /// Connections reset when let go, because too many orphans were closing
    /// ([`Limits::max_orphans`]).
    pub orphan_overflows: u64,
    /// Connections in TIME-WAIT now.
    pub time_wait: usize,
    /// Orphans (connections let go and still closing) now.
    pub orphans: usize,
    /// Segments for no connection dropped without an answer (RSTs, and non-SYNs for a
    /// listener without ACK).
    pub discarded: u64,
}

/// The most SYN-RECEIVED connections a listener with this backlog keeps. Linux sizes the SYN
/// queue from the backlog too; the floor leaves room for a burst of handshakes behind a small
/// backlog, the ceiling bounds what a SYN flood costs (RFC 4987 §3.1).
pub fn syn_queue_limit(backlog: usize) -> usize {
    backlog.clamp(128, 4096)
}

/// The reply to a segment that reaches no connection (RFC 9293 §3.10.7.1): `None` for a
/// RST, otherwise a RST that the sender will accept — `<SEQ=SEG.ACK><CTL=RST>` when the
/// segment carries an ACK, else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
///
/// ```
/// use rawtcp::proto::reset_for;
/// use rawtcp::wire::{TcpFlags, TcpRepr};
/// let syn = TcpRepr { src_port: 5000, dst_port: 80, seq: 100, flags: TcpFlags::SYN, ..TcpRepr::default() };
/// let rst = reset_for(&syn, 0).unwrap();
/// assert_eq!(rst.ladder(0).to_string(), "RST+ACK  S:0 A:101");
/// ```
pub fn reset_for(seg: &TcpRepr, payload_len: usize) -> Option<TcpRepr> {
    if seg.flags.contains(TcpFlags::RST) {
        return None;
    }
    let mut rst = TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        ..TcpRepr::default()
    };
    if seg.flags.contains(TcpFlags::ACK) {
        rst.seq = seg.ack;
        rst.flags = TcpFlags::RST;
    } else {
        rst.seq = 0;
        rst.ack = seg.seq.wrapping_add(seg.segment_len(payload_len) as u32);
        rst.flags = TcpFlags::RST | TcpFlags::ACK;
    }
    Some(rst)
}

/// A SYN without ACK or RST: the only segment that opens a connection.
fn is_pure_syn(seg: &TcpRepr) -> bool {
    seg.flags.contains(TcpFlags::SYN) && !seg.flags.intersects(TcpFlags::ACK | TcpFlags::RST)
}

#[derive(Debug)]
struct Meta {
    local: SocketAddr,
    remote: SocketAddr,
    owner: Owner,
    established: bool,
    closed: bool,
    finished: bool,
    time_wait: Option<TimeWait>,
}

#[derive(Debug)]
struct Listener {
    addr: SocketAddr,
    backlog: usize,
    reuseport: bool,
    syn_queue: usize,
    accept_queue: VecDeque<ConnectionHandle>,
    /// When it last answered a SYN with a cookie.
    cookie_sent_at: Option<Instant>,
}

impl Listener {
    fn info(&self) -> ListenerInfo {
        ListenerInfo {
            addr: self.addr,
            backlog: self.backlog,
            reuseport: self.reuseport,
            syn_queue: self.syn_queue,
            accept_queue: self.accept_queue.len(),
        }
    }
}

/// The demultiplexer and listen backlog of one TCP stack; see the [module docs](self).
///
/// A round trip through it, as a driver sees it:
///
/// ```
/// use rawtcp::proto::endpoint::{Endpoint, Route, Update};
/// use rawtcp::proto::{Config, Connection, Instant, SeqNum};
/// use rawtcp::wire::{TcpFlags, TcpRepr};
///
/// let mut ep = Endpoint::new();
/// let server = "10.0.0.2:80".parse().unwrap();
/// let client = "10.0.0.1:4000".parse().unwrap();
/// let listener = ep.listen(server, 16, false).unwrap();
/// let syn = TcpRepr { src_port: 4000, dst_port: 80, seq: 7, flags: TcpFlags::SYN, ..TcpRepr::default() };
/// let Route::Accept(a) = ep.handle(server, client, &syn, 0, Instant::ZERO) else { panic!() };
/// let conn = Connection::accept(Config::default(), server, client, &syn, SeqNum(1), Instant::ZERO).unwrap();
/// // ... the SYN+ACK leaves, the client's ACK arrives and is routed to `a.handle` ...
/// assert_eq!(ep.update(a.handle, conn.status()), Update::None); // still in SYN-RECEIVED
/// assert_eq!(ep.listener(listener).unwrap().syn_queue, 1);
/// ```
#[derive(Debug, Default)]
pub struct Endpoint {
    slots: Vec<(u32, Option<Meta>)>,
    free: Vec<u32>,
    by_tuple: Routes,
    listeners: HashMap<ListenerId, Listener>,
    /// Listeners per address, in the order they joined it.
    listen_addrs: HashMap<SocketAddr, Vec<ListenerId>>,
    next_listener: u32,
    stats: EndpointStats,
    cookies: SynCookies,
    cookie_mode: SynCookieMode,
    limits: Limits,
}

impl Endpoint {
    /// An endpoint with no connections and no listeners.
    pub fn new() -> Endpoint {
        Endpoint::default()
    }

    /// Counters since the endpoint was made.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// Changes the bounds on TIME-WAIT and orphaned connections (see [`Limits`]); those over
    /// a lowered bound are left to finish.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The bounds in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// When listeners answer SYNs with cookies (default [`SynCookieMode::OnOverflow`]).
    pub fn set_syn_cookies(&mut self, mode: SynCookieMode) {
        self.cookie_mode = mode;
    }

    // ---- segments ----------------------------------------------------------------------

    /// Routes a segment that arrived for `local` from `remote` at `now` (already parsed and
    /// checksummed), `payload_len` bytes of data after its header.
    pub fn handle(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr,
        payload_len: usize,
        now: Instant,
    ) -> Route {
        if let Some(h) = self.lookup(local, remote) {
            if let Some(meta) = self.meta(h) {
                if meta.time_wait.is_some_and(|tw| tw.accepts_syn(seg)) {
                    // RFC 6191: a new incarnation replaces the connection lingering in
                    // TIME-WAIT — when a listener is there to take it. Without one the SYN
                    // stays the old connection's to answer, as Linux falls back from
                    // TCP_TW_SYN to TCP_TW_ACK.
                    if let Some(l) = self.listener_for(local, remote) {
                        return self.open(l, (local, remote), seg, payload_len, Some(h), now);
                    }
                    return Route::Connection(h);
                }
                if !meta.closed {
                    if let Some(reason) = self.overflow(meta, seg) {
                        return self.discard(local, remote, reason);
                    }
                    return Route::Connection(h);
                }
                // A closed connection the application still holds has no TCB: the segment
                // is for no connection (RFC 9293 §3.10.7.1), and a SYN may open a new one.
            }
        }
        if let Some(l) = self.listener_for(local, remote) {
            // RFC 9293 §3.10.7.2, LISTEN: first a RST is ignored, second any ACK is answered
            // with <SEQ=SEG.ACK><CTL=RST>, third a SYN opens a connection, and anything else
            // is dropped.
            if seg.flags.contains(TcpFlags::RST) {
                return self.discard(local, remote, DropReason::Reset);
            }
            if seg.flags.contains(TcpFlags::ACK) {
                if !seg.flags.contains(TcpFlags::SYN) {
                    if let Some(route) = self.cookie_ack(l, (local, remote), seg, now) {
                        return route;
                    }
                }
                return self.reset(local, remote, seg, payload_len);
            }
            if seg.flags.contains(TcpFlags::SYN) {
                return self.open(l, (local, remote), seg, payload_len, None, now);
            }
            return self.discard(local, remote, DropReason::NotSyn);
        }
        // RFC 9293 §3.10.7.1: no connection and no listener.
        self.reset(local, remote, seg, payload_len)
    }

    /// Linux's rule for a full accept queue (`tcp_check_req` → `exit_overflow`): the ACK that
    /// would complete the handshake is dropped and the connection stays in SYN-RECEIVED.
    ///
    /// Every segment with an ACK may be that one — a SYN+ACK too, which the engine may take
    /// as completing the handshake — so all are held back but a RST (which may end the
    /// handshake, RFC 9293 §3.10.7.4) and a segment without ACK (a retransmitted SYN, which
    /// the connection answers with its SYN+ACK again).
    fn overflow(&self, meta: &Meta, seg: &TcpRepr) -> Option<DropReason> {
        let Owner::Listener(l) = meta.owner else {
            return None;
        };
        if meta.established
            || !seg.flags.contains(TcpFlags::ACK)
            || seg.flags.contains(TcpFlags::RST)
        {
            return None;
        }
        let listener = self.listeners.get(&l)?;
        (listener.accept_queue.len() >= listener.backlog).then_some(DropReason::ListenOverflow)
    }

    /// A SYN for listener `l`: a new connection in its SYN queue unless a queue is full
    /// (RFC 4987 §3.1: a bounded backlog; the excess SYN is dropped and the peer retries).
    fn open(
        &mut self,
        l: ListenerId,
        (local, remote): (SocketAddr, SocketAddr),
        syn: &TcpRepr,
        payload_len: usize,
        replaces: Option<ConnectionHandle>,
        now: Instant,
    ) -> Route {
        let Some(listener) = self.listeners.get(&l) else {
            // `l` came from `listener_for`, so this does not happen; were it to, no listener
            // means no connection (RFC 9293 §3.10.7.1).
            return self.reset(local, remote, syn, payload_len);
        };
        if listener.accept_queue.len() >= listener.backlog {
            return self.discard(local, remote, DropReason::AcceptQueueFull);
        }
        let full = listener.syn_queue >= syn_queue_limit(listener.backlog);
        match self.cookie_mode {
            SynCookieMode::Always => return self.send_cookie(l, (local, remote), syn, now),
            SynCookieMode::OnOverflow if full => {
                return self.send_cookie(l, (local, remote), syn, now)
            }
            _ if full => return self.discard(local, remote, DropReason::SynQueueFull),
            _ => {}
        }
        let replaced = replaces.filter(|h| self.remove(*h));
        if replaced.is_some() {
            self.stats.time_wait_reopened += 1;
            tracing::debug!(%local, %remote, "SYN reopens a connection in TIME-WAIT");
        }
        let handle = self.insert(local, remote, Owner::Listener(l));
        if let Some(listener) = self.listeners.get_mut(&l) {
            listener.syn_queue += 1;
        }
        Route::Accept(Accept {
            listener: l,
            handle,
            replaced,
        })
    }

    /// A SYN answered with a cookie: nothing is kept but the time, so that the ACKs that
    /// follow are checked for one (RFC 4987 §3.6).
    fn send_cookie(
        &mut self,
        l: ListenerId,
        (local, remote): (SocketAddr, SocketAddr),
        syn: &TcpRepr,
        now: Instant,
    ) -> Route {
        let iss = self
            .cookies
            .make(local, remote, &SynCookies::clamp(syn), now);
        if let Some(listener) = self.listeners.get_mut(&l) {
            listener.cookie_sent_at = Some(now);
        }
        self.stats.cookies_sent += 1;
        Route::SynCookie { listener: l, iss }
    }

    /// An ACK for listener `l` that matches no connection: if the listener sent cookies
    /// lately, a valid one opens the connection (or is held back while the accept queue is
    /// full, as a handshake's ACK is); `None` when the ACK is for no connection after all.
    fn cookie_ack(
        &mut self,
        l: ListenerId,
        (local, remote): (SocketAddr, SocketAddr),
        ack: &TcpRepr,
        now: Instant,
    ) -> Option<Route> {
        let listener = self.listeners.get(&l)?;
        let recent = listener
            .cookie_sent_at
            .is_some_and(|t| now.saturating_since(t) <= COOKIE_CHECK_WINDOW);
        if !recent {
            return None;
        }
        let full = listener.accept_queue.len() >= listener.backlog;
        let cookie = match self.cookies.check(local, remote, ack, now) {
            Ok(cookie) => cookie,
            Err(e) => {
                self.stats.cookies_rejected += 1;
                tracing::debug!(%local, %remote, error = ?e, "cookie ACK rejected");
                return None;
            }
        };
        if full {
            // The client thinks it is connected and will send again: its next segment
            // carries the same cookie, valid until the next tick ends.
            return Some(self.discard(local, remote, DropReason::ListenOverflow));
        }
        self.stats.cookies_accepted += 1;
        let handle = self.insert(local, remote, Owner::Listener(l));
        if let Some(listener) = self.listeners.get_mut(&l) {
            listener.syn_queue += 1;
        }
        Some(Route::CookieAccept {
            accept: Accept {
                listener: l,
                handle,
                replaced: None,
            },
            cookie,
        })
    }

    fn reset(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr,
        payload_len: usize,
    ) -> Route {
        tracing::trace!(%local, %remote, flags = %seg.flags, "segment for no connection");
        match reset_for(seg, payload_len) {
            Some(rst) => {
                self.stats.resets_sent += 1;
                Route::Reply(rst)
            }
            // RFC 9293 §3.10.7.1: "An incoming segment containing a RST is discarded."
            None => self.discard(local, remote, DropReason::Reset),
        }
    }

    fn discard(&mut self, local: SocketAddr, remote: SocketAddr, reason: DropReason) -> Route {
        match reason {
            DropReason::SynQueueFull => self.stats.syn_queue_full += 1,
            DropReason::AcceptQueueFull => self.stats.accept_queue_full += 1,
            DropReason::ListenOverflow => self.stats.listen_overflows += 1,
            DropReason::Reset | DropReason::NotSyn => self.stats.discarded += 1,
        }
        if matches!(
            reason,
            DropReason::SynQueueFull | DropReason::AcceptQueueFull | DropReason::ListenOverflow
        ) {
            tracing::debug!(%local, %remote, ?reason, "segment dropped: the listener's queues are full");
        }
        Route::Discard(reason)
    }

    // ---- connections -------------------------------------------------------------------

    /// An active open from `local` to `remote` (RFC 9293 §3.10.1), held by the application:
    /// its handle, or `None` when a connection already has that 4-tuple.
    pub fn connect(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<ConnectionHandle> {
        if self.lookup(local, remote).is_some() {
            return None;
        }
        Some(self.insert(local, remote, Owner::Application))
    }

    fn insert(&mut self, local: SocketAddr, remote: SocketAddr, owner: Owner) -> ConnectionHandle {
        let meta = Meta {
            local,
            remote,
            owner,
            established: false,
            closed: false,
            finished: false,
            time_wait: None,
        };
        let handle = match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.0 = slot.0.wrapping_add(1);
                slot.1 = Some(meta);
                ConnectionHandle {
                    index,
                    generation: slot.0,
                }
            }
            None => {
                self.slots.push((0, Some(meta)));
                ConnectionHandle {
                    index: (self.slots.len() - 1) as u32,
                    generation: 0,
                }
            }
        };
        self.by_tuple.insert(&self.slots, handle.index);
        handle
    }

    fn meta(&self, h: ConnectionHandle) -> Option<&Meta> {
        match self.slots.get(h.index()) {
            Some((generation, Some(m))) if *generation == h.generation => Some(m),
            _ => None,
        }
    }

    fn meta_mut(&mut self, h: ConnectionHandle) -> Option<&mut Meta> {
        match self.slots.get_mut(h.index()) {
            Some((generation, Some(m))) if *generation == h.generation => Some(m),
            _ => None,
        }
    }

    /// Takes in what the driver just saw of connection `h` (after a segment, a timer, or an
    /// application call): a completed handshake moves it from its listener's SYN queue to the
    /// accept queue; a finished connection nobody holds is forgotten.
    pub fn update(&mut self, h: ConnectionHandle, status: ConnectionStatus) -> Update {
        let Some(meta) = self.meta_mut(h) else {
            return Update::None;
        };
        meta.closed = status.closed;
        meta.finished = status.finished;
        let entered_time_wait = meta.time_wait.is_none() && status.time_wait.is_some();
        let left_time_wait = meta.time_wait.is_some() && status.time_wait.is_none();
        meta.time_wait = status.time_wait;
        let owner = meta.owner;
        if left_time_wait {
            self.stats.time_wait = self.stats.time_wait.saturating_sub(1);
        }
        if entered_time_wait {
            self.stats.time_wait += 1;
            if owner == Owner::Orphan && self.stats.time_wait > self.limits.max_time_wait {
                // Linux's `inet_twsk_alloc` refusal: the connection closes without lingering.
                self.stats.time_wait_overflows += 1;
                tracing::debug!(?h, "TIME-WAIT table full: connection forgotten at once");
                self.remove(h);
                return Update::Forget;
            }
        }
        let Some(meta) = self.meta_mut(h) else {
            return Update::None;
        };
        if let Owner::Listener(l) = owner {
            if status.established && !meta.established {
                meta.established = true;
                if let Some(listener) = self.listeners.get_mut(&l) {
                    listener.syn_queue = listener.syn_queue.saturating_sub(1);
                    listener.accept_queue.push_back(h);
                }
                return Update::Accepted(l);
            }
            // A handshake that failed (a RST, or SYN+ACK retries run out) leaves the SYN
            // queue and is forgotten; an established connection waits for `accept` even
            // after it closed, so the application sees how it ended.
            if status.finished && !meta.established {
                self.remove(h);
                return Update::Forget;
            }
            return Update::None;
        }
        if status.established {
            meta.established = true;
        }
        if status.finished && owner == Owner::Orphan {
            self.remove(h);
            return Update::Forget;
        }
        Update::None
    }

    /// The next connection in listener `l`'s accept queue, now held by the application.
    pub fn accept(&mut self, l: ListenerId) -> Option<ConnectionHandle> {
        loop {
            let h = self.listeners.get_mut(&l)?.accept_queue.pop_front()?;
            if let Some(meta) = self.meta_mut(h) {
                meta.owner = Owner::Application;
                return Some(h);
            }
        }
    }

    /// The application let go of connection `h`: it is an orphan from now on, forgotten once
    /// finished (see [`update`](Self::update)).
    ///
    /// Returns `false` when too many orphans are closing already ([`Limits::max_orphans`]):
    /// the driver then resets the connection instead of closing it gracefully.
    pub fn orphan(&mut self, h: ConnectionHandle) -> bool {
        let Some(meta) = self.meta_mut(h) else {
            return true;
        };
        if meta.owner == Owner::Orphan {
            return true;
        }
        meta.owner = Owner::Orphan;
        self.stats.orphans += 1;
        if self.stats.orphans > self.limits.max_orphans {
            self.stats.orphan_overflows += 1;
            tracing::debug!(?h, "too many orphans: connection reset");
            return false;
        }
        true
    }

    /// Forgets connection `h`: its 4-tuple routes nowhere, and its place in a listener's
    /// queue is given up. Returns whether it was known.
    pub fn remove(&mut self, h: ConnectionHandle) -> bool {
        let Some((generation, slot)) = self.slots.get_mut(h.index()) else {
            return false;
        };
        if *generation != h.generation {
            return false;
        }
        let Some(meta) = slot.take() else {
            return false;
        };
        self.free.push(h.index);
        self.by_tuple.remove((meta.local, meta.remote), h.index);
        if meta.time_wait.is_some() {
            self.stats.time_wait = self.stats.time_wait.saturating_sub(1);
        }
        if meta.owner == Owner::Orphan {
            self.stats.orphans = self.stats.orphans.saturating_sub(1);
        }
        if let Owner::Listener(l) = meta.owner {
            if let Some(listener) = self.listeners.get_mut(&l) {
                if meta.established {
                    listener.accept_queue.retain(|q| *q != h);
                } else {
                    listener.syn_queue = listener.syn_queue.saturating_sub(1);
                }
            }
        }
        true
    }

    /// The connection a segment for `local` from `remote` would reach, if any.
    pub fn lookup(&self, local: SocketAddr, remote: SocketAddr) -> Option<ConnectionHandle> {
        let index = self.by_tuple.get(&self.slots, (local, remote))?;
        Some(ConnectionHandle {
            index,
            generation: self.slots[index as usize].0,
        })
    }

    /// Connection `h`'s entry.
    pub fn connection(&self, h: ConnectionHandle) -> Option<ConnectionInfo> {
        self.meta(h).map(|m| ConnectionInfo {
            local: m.local,
            remote: m.remote,
            owner: m.owner,
            time_wait: m.time_wait.is_some(),
        })
    }

    /// Every connection's handle.
    pub fn handles(&self) -> impl Iterator<Item = ConnectionHandle> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, (generation, m))| {
                m.as_ref().map(|_| ConnectionHandle {
                    index: i as u32,
                    generation: *generation,
                })
            })
    }

    /// How many connections it knows.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether it knows no connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a connection still uses the local address `addr` (for an unspecified
    /// address: its port on any address).
    pub fn address_in_use(&self, addr: SocketAddr) -> bool {
        self.slots.iter().filter_map(|(_, m)| m.as_ref()).any(|m| {
            m.local.port() == addr.port()
                && (addr.ip().is_unspecified() || m.local.ip() == addr.ip())
        })
    }

    // ---- listeners ---------------------------------------------------------------------

    /// Listens at `addr` with an accept queue of `backlog` (at least 1): `None` when
    /// listeners are there already and they or this one do not allow sharing the address
    /// (`SO_REUSEPORT`).
    pub fn listen(
        &mut self,
        addr: SocketAddr,
        backlog: usize,
        reuseport: bool,
    ) -> Option<ListenerId> {
        if self
            .listening_shared(addr)
            .is_some_and(|shared| !(shared && reuseport))
        {
            return None;
        }
        self.next_listener = self.next_listener.wrapping_add(1);
        let id = ListenerId(self.next_listener);
        self.listen_addrs.entry(addr).or_default().push(id);
        self.listeners.insert(
            id,
            Listener {
                addr,
                backlog: backlog.max(1),
                reuseport,
                syn_queue: 0,
                accept_queue: VecDeque::new(),
                cookie_sent_at: None,
            },
        );
        Some(id)
    }

    /// Stops listener `l`. Its connections not yet accepted become orphans for the driver to
    /// reset.
    pub fn close_listener(&mut self, l: ListenerId) -> Option<ClosedListener> {
        let listener = self.listeners.remove(&l)?;
        let addr = listener.addr;
        let last = match self.listen_addrs.get_mut(&addr) {
            Some(v) => {
                v.retain(|i| *i != l);
                v.is_empty()
            }
            None => true,
        };
        if last {
            self.listen_addrs.remove(&addr);
        }
        let mut orphans = Vec::new();
        for (i, (generation, slot)) in self.slots.iter_mut().enumerate() {
            if let Some(meta) = slot.as_mut().filter(|m| m.owner == Owner::Listener(l)) {
                meta.owner = Owner::Orphan;
                orphans.push(ConnectionHandle {
                    index: i as u32,
                    generation: *generation,
                });
            }
        }
        Some(ClosedListener {
            addr,
            last,
            orphans,
        })
    }

    /// Listener `l`'s address and queues.
    pub fn listener(&self, l: ListenerId) -> Option<ListenerInfo> {
        self.listeners.get(&l).map(Listener::info)
    }

    /// Every listener.
    pub fn listeners(&self) -> impl Iterator<Item = (ListenerId, ListenerInfo)> + '_ {
        self.listeners.iter().map(|(id, l)| (*id, l.info()))
    }

    /// Whether listeners are at exactly `addr` (`None` if not), and whether all of them
    /// share it.
    pub fn listening_shared(&self, addr: SocketAddr) -> Option<bool> {
        let ids = self.listen_addrs.get(&addr).filter(|v| !v.is_empty())?;
        Some(
            ids.iter()
                .all(|l| self.listeners.get(l).is_some_and(|l| l.reuseport)),
        )
    }

    /// The listener that takes a SYN for `local` from `remote`: at the exact address, else at
    /// the unspecified address of the same family and port; among several sharing an address,
    /// one chosen by a hash of the remote address, so a peer always reaches the same one.
    pub fn listener_for(&self, local: SocketAddr, remote: SocketAddr) -> Option<ListenerId> {
        let wildcard = SocketAddr::new(unspecified_like(local), local.port());
        for addr in [local, wildcard] {
            if let Some(ids) = self.listen_addrs.get(&addr).filter(|v| !v.is_empty()) {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                remote.hash(&mut h);
                return Some(ids[(h.finish() % ids.len() as u64) as usize]);
            }
        }
        None
    }
}

/// The routing table: 4-tuple → slot index. It keeps only the index (4 bytes a connection,
/// where a map keyed by the tuple would keep 68 more); the tuple itself is read from the
/// slot's [`Meta`] to compare and to rehash. A tuple has at most one entry: a connection
/// that replaces another (a SYN for a closed connection the application still holds) takes
/// the entry over.
#[derive(Debug, Default)]
struct Routes {
    table: HashTable<u32>,
    hasher: std::collections::hash_map::RandomState,
}

type Slots = [(u32, Option<Meta>)];

fn tuple_of(slots: &Slots, index: u32) -> Option<(SocketAddr, SocketAddr)> {
    slots
        .get(index as usize)
        .and_then(|(_, m)| m.as_ref())
        .map(|m| (m.local, m.remote))
}

/// The hash of a 4-tuple under `hasher` (a keyed SipHash, so that a peer cannot choose
/// tuples that collide): the tuple packed into one write, as SipHash's cost is mostly per
/// call. Hashing the tuple field by field (its derived `Hash`: a family tag, an address and
/// a port, each a call of its own) cost about 500 instructions a packet, a quarter of that
/// packed. Equal tuples pack alike; tuples that differ only in an IPv6 flow label or scope
/// share a hash, and the comparison tells them apart.
fn route_hash(
    hasher: &std::collections::hash_map::RandomState,
    tuple: (SocketAddr, SocketAddr),
) -> u64 {
    use std::hash::Hasher;
    let mut h = hasher.build_hasher();
    match tuple {
        (SocketAddr::V4(l), SocketAddr::V4(r)) => h.write_u128(
            u128::from(l.ip().to_bits()) << 64
                | u128::from(r.ip().to_bits()) << 32
                | u128::from(l.port()) << 16
                | u128::from(r.port()),
        ),
        (l, r) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
                IpAddr::V6(ip) => ip.octets(),
            };
            let mut key = [0u8; 36];
            key[..16].copy_from_slice(&v6(l));
            key[16..32].copy_from_slice(&v6(r));
            key[32..34].copy_from_slice(&l.port().to_be_bytes());
            key[34..].copy_from_slice(&r.port().to_be_bytes());
            h.write(&key);
        }
    }
    h.finish()
}

impl Routes {
    fn hash(&self, tuple: (SocketAddr, SocketAddr)) -> u64 {
        route_hash(&self.hasher, tuple)
    }

    fn get(&self, slots: &Slots, tuple: (SocketAddr, SocketAddr)) -> Option<u32> {
        self.table
            .find(self.hash(tuple), |&i| tuple_of(slots, i) == Some(tuple))
            .copied()
    }

    /// Routes the tuple of slot `index` (already filled) to it.
    fn insert(&mut self, slots: &Slots, index: u32) {
        let Some(tuple) = tuple_of(slots, index) else {
            return;
        };
        let hash = self.hash(tuple);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            // The slot a stale entry names may hold another tuple by now; `remove` keeps
            // that from happening, and an entry that does not match is just not this one.
            |&i| i == index || tuple_of(slots, i) == Some(tuple),
            |&i| tuple_of(slots, i).map_or(0, |t| route_hash(hasher, t)),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = index,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(index);
            }
        }
    }

    /// Stops routing `tuple` to slot `index` (if it still routes there).
    fn remove(&mut self, tuple: (SocketAddr, SocketAddr), index: u32) {
        if let Ok(e) = self.table.find_entry(self.hash(tuple), |&i| i == index) {
            e.remove();
        }
    }
}

/// The unspecified address of `addr`'s family.
pub fn unspecified_like(addr: SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every field of the tuple reaches the packed hash: tuples that differ in one field
    /// alone (either address, either port, in either family) hash apart, and a tuple
    /// hashes alike every time.
    #[test]
    fn the_packed_route_hash_sees_every_field() {
        let hasher = std::collections::hash_map::RandomState::new();
        let t = |l: String, r: String| (l.parse::<SocketAddr>().unwrap(), r.parse().unwrap());
        let s = |x: &str| x.to_string();
        let tuples: HashSet<(SocketAddr, SocketAddr)> = (0..200u16)
            .flat_map(|i| {
                let (hi, lo) = (i >> 8, i & 255);
                [
                    t(format!("10.0.{hi}.{lo}:80"), s("10.1.0.1:4000")),
                    t(s("10.0.0.1:80"), format!("10.1.{hi}.{lo}:4000")),
                    t(format!("10.0.0.1:{}", 1000 + i), s("10.1.0.1:4000")),
                    t(s("10.0.0.1:80"), format!("10.1.0.1:{}", 1000 + i)),
                    t(format!("[fd00::{i:x}]:80"), s("[fd01::1]:4000")),
                    t(s("[fd00::1]:80"), format!("[fd01::{i:x}]:4000")),
                    t(format!("[fd00::1]:{}", 1000 + i), s("[fd01::1]:4000")),
                    t(s("[fd00::1]:80"), format!("[fd01::1]:{}", 1000 + i)),
                ]
            })
            .collect();
        let hashes: HashSet<u64> = tuples.iter().map(|&x| route_hash(&hasher, x)).collect();
        assert_eq!(
            hashes.len(),
            tuples.len(),
            "tuples that differ hashed alike"
        );
        for &x in &tuples {
            assert_eq!(route_hash(&hasher, x), route_hash(&hasher, x));
        }
    }
}
