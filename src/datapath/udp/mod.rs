//! The UDP datapath: IP packets carried in UDP datagrams between processes.
//!
//! # Encapsulation
//!
//! Every UDP datagram carries exactly one complete IP packet (an IPv4 or IPv6 header followed
//! by a TCP segment) as its payload, nothing more. The TCP endpoints are the *inner* IP
//! addresses and TCP ports; UDP is only the carrier that moves the packet from one process to
//! another. The checksums inside the packet are those of real TCP/IP, and the stack verifies
//! them as it would for packets from a wire, except for datagrams from a loopback address,
//! which the kernel moved whole within the host ([`Datapath::carrier_verified`]); between
//! two rawtcp endpoints that both vouch for their carrier, segments leave with the
//! checksum left partial (`Config::partial_checksums`).
//!
//! # Listeners
//!
//! A listener claimed at `ip:port` ([`BindKind::Listen`]) binds a UDP socket at exactly
//! `ip:port` (port 0 lets the kernel choose, and the TCP port is then that same number). A
//! rawtcp listener at `127.0.0.1:8080` in one process is therefore reached by a rawtcp client
//! in another process that simply sends to UDP `127.0.0.1:8080`: plain addresses work across
//! processes, and two listeners on one address conflict (`AddrInUse`) as they would in the
//! kernel's TCP.
//!
//! # Outgoing connections: port reservations
//!
//! The local port of an outgoing connection ([`BindKind::Connect`]) must be unique on the
//! host across every process using this datapath. To get that from the kernel, the datapath
//! binds a *reservation* UDP socket at (local ip, requested port or 0) and uses that socket's
//! port as the TCP port. The reservation socket is never read; it only holds the number until
//! [`unbind`](Datapath::unbind). The traffic of outgoing connections goes through one shared
//! UDP socket per address family, bound to the unspecified address and an ephemeral port.
//!
//! # Choosing sockets and destinations
//!
//! To send a packet, the datapath reads its version, addresses and TCP ports (and nothing
//! else). The packet leaves through the listener socket bound at (source ip, source port) or
//! (unspecified, source port) if there is one, else through the shared socket of its family.
//! It goes to the packet's *carrier* address when the stack gives one (see
//! [`Batch::carrier`]), otherwise to the inner (destination ip, destination port) itself,
//! which is where a listener lives. A packet whose payload is attached ([`Batch::attached`]:
//! headers in the slot, payload where the stack's send buffer keeps it) leaves as one
//! datagram by one `sendmsg` of its pieces.
//!
//! Every packet received carries the UDP address it came from as its carrier. The stack
//! remembers it for a connection only once a segment from it was accepted — its checksum
//! verified (or its carrier vouched for), and then taken by the connection as in-window with an acceptable ACK, or as the
//! SYN a listener answers — and gives it back with that connection's packets, so that a
//! reply to a client reaches the client's shared socket rather than its reservation. The
//! datapath itself keeps no map of peers: a stranger's datagram claiming a connection's
//! addresses is parsed, rejected by the stack, and redirects nothing.
//!
//! # Packet sizes
//!
//! [`mtu`](Datapath::mtu) is the largest IP packet one UDP datagram carries: the largest UDP
//! payload without fragmentation (65507 bytes over IPv4; over IPv6, 65488: the 65536-byte loopback MTU less the outer IPv6 and UDP headers) for loopback remotes, so that the stack
//! uses large segments between processes of one host, and 1472 (IPv4) or 1452 (IPv6) for
//! other remotes (a 1500-byte link minus the outer IP and UDP headers).
//!
//! # Never blocking
//!
//! Sends are non-blocking system calls; a packet that cannot be queued (full socket buffer,
//! `ENOBUFS`, an error left by an earlier ICMP message) is dropped and counted, as a full
//! network interface would drop it, and TCP retransmits. Malformed packets and datagrams
//! (not IP, not TCP, truncated) are dropped and counted, never panicked on. See
//! [`UdpStats`].
//!
//! # Runtime
//!
//! The sockets are registered with tokio's reactor: [`UdpDatapath::new`] and
//! [`bind`](Datapath::bind) must be called from within a tokio runtime with IO enabled.

use crate::wire::view::PacketView;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use tokio::io::Interest;

use crate::datapath::registered::{RecvSocket, Watch};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::{Batch, BindKind, Datapath};
use crate::wire::{emit_tcp_packet, TcpRepr};

/// Receive and send buffer size asked for on the sockets that carry traffic.
const SOCKET_BUFFER: usize = 4 << 20;
/// Receive buffer size asked for on reservation sockets, which are never read (the kernel
/// rounds it up to its minimum).
const RESERVATION_BUFFER: usize = 1;
/// Largest IP packet carried over IPv4 to a loopback remote: the largest UDP payload.
const LOOPBACK_MTU_V4: usize = 65_507;
/// Largest IP packet carried over IPv6 to a loopback remote without fragmentation: the
/// 65536-byte loopback MTU less the outer IPv6 and UDP headers.
const LOOPBACK_MTU_V6: usize = 65_488;
/// Largest IP packet carried over IPv4 on a 1500-byte link.
const MTU_V4: usize = 1_472;
/// Largest IP packet carried over IPv6 on a 1500-byte link.
const MTU_V6: usize = 1_452;
/// Datagrams read (kept or dropped) by one `poll_recv` call at most, so that a flood of
/// garbage cannot hold the caller forever.
const RECV_BUDGET: usize = 1_024;

/// Counters of a [`UdpDatapath`], since its creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams handed to the kernel by [`send`](Datapath::send).
    pub datagrams_sent: u64,
    /// Datagrams received and delivered to the stack by [`poll_recv`](Datapath::poll_recv).
    pub datagrams_received: u64,
    /// Well-formed packets [`send`](Datapath::send) dropped: the socket could not queue them
    /// (full buffer, `ENOBUFS`, an error from an earlier ICMP message) or their family has no
    /// socket (IPv6 unavailable).
    pub dropped_send: u64,
    /// Received datagrams dropped because they were larger than a slot of the batch.
    pub dropped_recv: u64,
    /// Malformed packets dropped, in either direction: packets given to
    /// [`send`](Datapath::send) and datagrams received that are not a complete IPv4 or IPv6
    /// packet carrying a TCP header (empty, truncated, another protocol, another version).
    pub malformed: u64,
    /// System calls that sent a train of several datagrams at once (segmentation offload,
    /// see [`UdpDatapath::segmentation_offload`]).
    pub trains_sent: u64,
}

/// The UDP-encapsulation datapath: each UDP datagram carries one IP packet.
///
/// See the [module documentation](self) for the encapsulation and the port-reservation
/// scheme. Create it with [`UdpDatapath::new`] inside a tokio runtime.
pub struct UdpDatapath {
    /// The shared IPv4 socket (unspecified address, ephemeral port).
    v4: Arc<RecvSocket>,
    /// The shared IPv6 socket, when the host has IPv6.
    v6: Option<Arc<RecvSocket>>,
    /// Waits for ICMP errors queued on the shared sockets (`IP_RECVERR`): a datagram to a
    /// UDP port nobody bound means a TCP port nobody listens on.
    /// Each with the registration it waits on (see `RecvSocket::registration`).
    refusals: Mutex<[Option<(usize, ErrorWait)>; 2]>,
    /// The waits of `refusals`, polled through watches: a wait whose `Pending` holds is
    /// not polled again.
    refusal_watches: [Watch; 2],
    /// The runtime the datapath was made in, whose reactor watches the sockets it makes
    /// (until a task takes them to its own: see `registered::Follow`).
    runtime: tokio::runtime::Handle,
    /// Listener and reservation sockets.
    registry: RwLock<Registry>,
    /// (inner source ip, source TCP port) → UDP source address, from received datagrams.
    /// Where the next `poll_recv` starts, so that every socket gets its turn first.
    rotation: AtomicUsize,
    counters: Counters,
    /// Whether packets for one destination leave in trains (see [`gso`]).
    gso: AtomicBool,
    /// The listener groups of the shards made from this datapath (see [`shard`]).
    groups: Arc<shard::Groups>,
    /// This datapath's place among the shards of a stack; `None` for a stack of one.
    member: Option<shard::Member>,
    /// The receiving sockets (by place, the first 64) that have delivered a datagram: the
    /// only ones [`recv_now`](Datapath::recv_now) asks, which costs a system call per
    /// socket asked whether or not anything is there. A socket that never delivered (the
    /// shared IPv6 one of a stack that only speaks IPv4, a listener that is new) is left to
    /// the readiness path, which hears its first datagram. Listeners' places move when one
    /// goes: their marks are then forgotten and learnt again.
    heard: AtomicU64,
    /// How many datagrams a drain's first `recvmmsg` offers room for, per receiving socket
    /// (by its place, modulo the length: a hint, which a socket let go may leave to another).
    /// A bulk flow's data and its ACKs arrive on different sockets.
    #[cfg(target_os = "linux")]
    offers: [super::mmsg::Offer; 8],
}

/// Up to this many listeners, [`Registry::sender`] looks through them rather than hash.
const SCAN_LISTENERS: usize = 8;

/// The sockets claimed through [`Datapath::bind`].
#[derive(Default)]
struct Registry {
    /// Listener sockets in claim order (polled by `poll_recv`).
    listeners: Vec<((IpAddr, u16), Arc<RecvSocket>)>,
    /// The same listener sockets by claimed (ip, port), for choosing the sending socket.
    by_addr: HashMap<(IpAddr, u16), Arc<RecvSocket>>,
    /// Reservation sockets of outgoing connections' local ports, by claimed (ip, port).
    reservations: HashMap<(IpAddr, u16), Socket>,
}

impl Registry {
    /// Adds a listener socket, claimed at `key`: polled, and sending from its address.
    fn add_listener(&mut self, key: (IpAddr, u16), sock: Arc<RecvSocket>) {
        self.listeners.push((key, Arc::clone(&sock)));
        self.by_addr.insert(key, sock);
    }

    /// The listener socket that sends packets from `ip:port`: bound there exactly, or at the
    /// unspecified address of the family and `port`. Up to [`SCAN_LISTENERS`] listeners it
    /// compares their addresses in turn instead of hashing: asked for every packet sent, the
    /// map's keyed hash cost about 200 instructions a lookup, and a connection's own port
    /// (no listener's) missed twice.
    fn sender(&self, ip: IpAddr, port: u16) -> Option<&RecvSocket> {
        if self.listeners.len() <= SCAN_LISTENERS {
            let at = |ip: IpAddr| {
                self.listeners
                    .iter()
                    .find(|(k, _)| *k == (ip, port))
                    .map(|(_, s)| &**s)
            };
            return at(ip).or_else(|| at(unspecified(ip)));
        }
        self.by_addr
            .get(&(ip, port))
            .or_else(|| self.by_addr.get(&(unspecified(ip), port)))
            .map(|s| &**s)
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_send: AtomicU64,
    dropped_recv: AtomicU64,
    malformed: AtomicU64,
    trains: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for UdpDatapath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = read(&self.registry);
        f.debug_struct("UdpDatapath")
            .field("v4", &self.v4.local_addr().ok())
            .field("v6", &self.v6.as_ref().and_then(|s| s.local_addr().ok()))
            .field("listeners", &registry.listeners.len())
            .field("reservations", &registry.reservations.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl UdpDatapath {
    /// Creates the datapath and its shared sockets: one on `0.0.0.0` and, if the host has
    /// IPv6, one on `[::]`, both on ephemeral ports. Without IPv6 the datapath still works
    /// over IPv4; IPv6 binds then fail with `AddrNotAvailable` and IPv6 sends with an error.
    ///
    /// Must be called from within a tokio runtime with IO enabled (the sockets are
    /// registered with its reactor); outside a runtime this returns an error.
    pub fn new() -> io::Result<UdpDatapath> {
        let v4 = open(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SOCKET_BUFFER,
            false,
        )
        .and_then(report_icmp_errors)
        .and_then(register)
        .map_err(|e| context(e, "udp datapath: shared IPv4 socket"))?;
        let v6 = match open(
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            SOCKET_BUFFER,
            false,
        )
        .and_then(report_icmp_errors)
        .and_then(register)
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!("udp datapath: no IPv6 ({e}); continuing with IPv4 only");
                None
            }
        };
        let trains = gso::supported(&v4) && !gso_off_by_env();
        Ok(UdpDatapath {
            v4: Arc::new(v4),
            v6: v6.map(Arc::new),
            refusals: Mutex::new([None, None]),
            refusal_watches: Default::default(),
            runtime: tokio::runtime::Handle::current(),
            registry: RwLock::new(Registry::default()),
            gso: AtomicBool::new(trains),
            rotation: AtomicUsize::new(0),
            heard: AtomicU64::new(0),
            counters: Counters::default(),
            groups: Arc::default(),
            member: None,
            #[cfg(target_os = "linux")]
            offers: Default::default(),
        })
    }

    /// Whether packets for one destination leave in trains, several datagrams per system
    /// call (UDP segmentation offload, `UDP_SEGMENT`): on when the kernel supports it, unless
    /// `RAWTCP_UDP_GSO=off` was set when the datapath was made; it turns itself off if the
    /// kernel refuses a train (a route whose device cannot offload the UDP checksum). It
    /// matters for segments that fit a 1500-byte path, not for the 64 KiB segments to
    /// loopback remotes, which travel one per datagram.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let udp = rawtcp::datapath::udp::UdpDatapath::new()?;
    /// println!("trains: {}", udp.segmentation_offload());
    /// udp.set_segmentation_offload(false); // one datagram per system call, as before
    /// # Ok(()) }
    /// ```
    pub fn segmentation_offload(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Turns trains on or off (see [`segmentation_offload`](Self::segmentation_offload)); on
    /// only where the kernel supports them. Returns whether they are on.
    pub fn set_segmentation_offload(&self, on: bool) -> bool {
        let on = on && gso::supported(&*self.v4);
        self.gso.store(on, Ordering::Relaxed);
        on
    }

    /// The counters so far.
    pub fn stats(&self) -> UdpStats {
        let c = &self.counters;
        UdpStats {
            datagrams_sent: c.sent.load(Ordering::Relaxed),
            datagrams_received: c.received.load(Ordering::Relaxed),
            dropped_send: c.dropped_send.load(Ordering::Relaxed),
            dropped_recv: c.dropped_recv.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            trains_sent: c.trains.load(Ordering::Relaxed),
        }
    }

    /// The shared socket of `ip`'s family.
    fn shared(&self, ip: IpAddr) -> Option<&RecvSocket> {
        match ip {
            IpAddr::V4(_) => Some(&self.v4),
            IpAddr::V6(_) => self.v6.as_deref(),
        }
    }

    /// Turns "port unreachable" errors of the shared sockets into the RST a host without a
    /// listener would send (RFC 9293 §3.10.7.1), appended to `batch`; returns how many.
    ///
    /// The kernel queues the datagram that drew the ICMP error; it holds the IP packet (at
    /// least its headers) whose TCP segment found nobody listening. Also says whether every
    /// wait for errors ended `Pending` (the waker registered), which a drained datapath needs.
    fn poll_refusals(&self, cx: &mut Context<'_>, batch: &mut Batch) -> (usize, bool) {
        let mut waits = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let mut added = 0;
        let mut all_pending = true;
        for (i, sock) in [Some(&self.v4), self.v6.as_ref()].into_iter().enumerate() {
            let Some(sock) = sock else { continue };
            let mut registered = false;
            let mut pending = false;
            for _ in 0..RECV_BUDGET {
                if batch.is_full() {
                    // The errors wait in their queue; the caller makes room and asks again.
                    registered = true;
                    break;
                }
                // A new wait follows only one that answered `Ready`, so the watch's
                // `Pending` is always that of the wait it polls.
                let watch = &self.refusal_watches[i];
                if waits[i]
                    .as_ref()
                    .is_some_and(|(reg, _)| *reg != sock.registration())
                {
                    // The socket registered with another runtime (`registered::Follow`):
                    // the wait held the old registration, which would go on waking the
                    // reactor's thread.
                    waits[i] = None;
                    watch.forget();
                }
                let (_, wait) = waits[i].get_or_insert_with(|| {
                    (sock.registration(), Box::pin(sock.ready(Interest::ERROR)))
                });
                if watch.poll(cx, |cx| wait.as_mut().poll(cx)).is_pending() {
                    registered = true;
                    pending = true;
                    break;
                }
                waits[i] = None;
                let mut original = [0u8; 256];
                loop {
                    if batch.is_full() {
                        break;
                    }
                    let r = sock.try_io(Interest::ERROR, || read_error_queue(sock, &mut original));
                    let (n, refused) = match r {
                        Ok(r) => r,
                        Err(_) => break,
                    };
                    if !refused {
                        continue;
                    }
                    let Some(slot) = batch.next_slot() else { break };
                    if let Some(len) = original.get(..n).and_then(|o| refusal_reset(o, slot)) {
                        batch.commit(len);
                        added += 1;
                    }
                }
            }
            if !registered {
                // The budget ran out with errors still reported: nothing is registered to
                // wake the caller, so ask to be polled again rather than leave them.
                cx.waker().wake_by_ref();
            }
            all_pending &= pending;
        }
        (added, all_pending)
    }

    /// [`drain_socket`](Self::drain_socket), marking the socket heard when it delivered.
    fn drain(
        &self,
        cx: &mut Context<'_>,
        sock: (&RecvSocket, bool),
        index: usize,
        batch: &mut Batch,
        budget: &mut usize,
        tally: &mut RecvTally,
    ) -> Drain {
        let before = tally.received;
        let drained = self.drain_socket(cx, sock, index, batch, budget, tally);
        if tally.received > before {
            self.mark_heard(index);
        }
        drained
    }

    /// The bit of receiving socket `index` in `heard`; `None` past the 64th.
    fn heard_bit(index: usize) -> Option<u64> {
        u32::try_from(index).ok().and_then(|i| 1u64.checked_shl(i))
    }

    /// Marks receiving socket `index` as one that delivered (see `heard`).
    fn mark_heard(&self, index: usize) {
        if let Some(bit) = Self::heard_bit(index) {
            if self.heard.load(Ordering::Relaxed) & bit == 0 {
                self.heard.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// Whether receiving socket `index` delivered since its place last changed (sockets
    /// past the 64th always count as heard).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn was_heard(&self, index: usize) -> bool {
        Self::heard_bit(index).is_none_or(|bit| self.heard.load(Ordering::Relaxed) & bit != 0)
    }

    /// Forgets which listeners delivered: their places changed (one went).
    fn forget_heard_listeners(&self) {
        let shared = 1 + u32::from(self.v6.is_some());
        self.heard
            .fetch_and((1u64 << shared) - 1, Ordering::Relaxed);
    }

    /// Reads datagrams from `sock` into `batch` until it is full, the socket has nothing more
    /// (the waker is then registered), or the budget runs out.
    fn drain_socket(
        &self,
        cx: &mut Context<'_>,
        (sock, v6): (&RecvSocket, bool),
        index: usize,
        batch: &mut Batch,
        budget: &mut usize,
        tally: &mut RecvTally,
    ) -> Drain {
        #[cfg(not(target_os = "linux"))]
        let _ = index;
        loop {
            match sock.poll_recv_ready(cx) {
                Poll::Pending => return Drain::Pending,
                Poll::Ready(Err(e)) => return Drain::Error(e),
                Poll::Ready(Ok(())) => {}
            }
            #[cfg(target_os = "linux")]
            {
                let offer = &self.offers[index % self.offers.len()];
                match Self::drain_many((sock, v6), offer, batch, budget, tally) {
                    Some(Drain::Pending) => continue, // readiness cleared: poll it again
                    Some(stop) => return stop,
                    None => {}
                }
            }
            loop {
                if *budget == 0 {
                    return Drain::Budget;
                }
                let Some(slot) = batch.next_slot() else {
                    return Drain::Full;
                };
                let (n, from) = match sock.try_recv_from(&mut *slot) {
                    Ok(r) => r,
                    // Nothing more: poll readiness again, which registers the waker.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if transient(&e) => {
                        *budget -= 1;
                        continue;
                    }
                    Err(e) => return Drain::Error(e),
                };
                *budget -= 1;
                if let Some(len) = tally.keep(slot, n, false) {
                    // The carrier is only recorded; the stack decides whether to trust it.
                    batch.commit_via(0, len, Some(from));
                }
            }
        }
    }
}

impl UdpDatapath {
    /// Receives from a socket that polled readable with `recvmmsg`, a batch per system call
    /// (see [`super::mmsg`]), until the batch is full, the budget spent, or the socket empty.
    /// `Some(Drain::Pending)` when the socket is empty (its readiness cleared: the caller
    /// polls it again, which registers the waker); `None` when `recvmmsg` is not available,
    /// for the caller to receive one datagram at a time.
    #[cfg(target_os = "linux")]
    fn drain_many(
        (sock, v6): (&RecvSocket, bool),
        offer: &super::mmsg::Offer,
        batch: &mut Batch,
        budget: &mut usize,
        tally: &mut RecvTally,
    ) -> Option<Drain> {
        let mut room = offer.first();
        // Datagrams this drain took, for the next drain's first offer.
        let mut took = 0;
        loop {
            if *budget == 0 || batch.is_full() {
                // Stopped with the socket not found empty: more may wait.
                offer.learn(super::mmsg::MAX);
                return Some(if *budget == 0 {
                    Drain::Budget
                } else {
                    Drain::Full
                });
            }
            let want = (*budget).min(batch.capacity() - batch.len()).min(room);
            let r = super::mmsg::clearing_readiness(sock, || {
                let r = Self::recv_many((sock, v6), batch, want, budget, tally);
                if let Ok((n, _)) = r {
                    took += n;
                }
                r
            });
            match r {
                // Filled what it offered: more may wait, and the next call offers all.
                Ok(false) => room = super::mmsg::MAX,
                Ok(true) => {
                    offer.learn(took);
                    return Some(Drain::Pending);
                }
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSYS as i32) => {
                    return None
                }
                Err(e) if transient(&e) => *budget = budget.saturating_sub(1),
                Err(e) => return Some(Drain::Error(e)),
            }
        }
    }
}

impl UdpDatapath {
    /// One `recvmmsg` of up to `want` datagrams from `sock` (of family `v6`) into `batch`,
    /// each kept or dropped and counted; returns how many came and how many there was room
    /// for.
    #[cfg(target_os = "linux")]
    fn recv_many(
        (sock, v6): (&RecvSocket, bool),
        batch: &mut Batch,
        want: usize,
        budget: &mut usize,
        tally: &mut RecvTally,
    ) -> io::Result<(usize, usize)> {
        use std::os::fd::AsRawFd;
        super::mmsg::recv_into(sock.as_raw_fd(), v6, batch, want, |batch, d| {
            *budget = budget.saturating_sub(1);
            if let Some(len) = tally.keep(batch.free_slot(d.slot), d.len, d.truncated) {
                // The carrier is only recorded; the stack decides whether to trust it.
                batch.commit_received(d.slot, len, d.from);
            }
        })
    }

    /// How many sockets this datapath receives on (see [`receiving_socket`]).
    ///
    /// [`receiving_socket`]: Self::receiving_socket
    fn receiving_sockets(&self, registry: &Registry) -> usize {
        1 + usize::from(self.v6.is_some()) + registry.listeners.len()
    }

    /// Socket `i` of those this datapath receives on, with its family (`true` for IPv6):
    /// the shared ones first, then the listeners'.
    fn receiving_socket<'a>(
        &'a self,
        registry: &'a Registry,
        i: usize,
    ) -> Option<(&'a RecvSocket, bool)> {
        let shared = 1 + usize::from(self.v6.is_some());
        match (i, &self.v6) {
            (0, _) => Some((&self.v4, false)),
            (1, Some(v6)) => Some((v6, true)),
            _ => registry
                .listeners
                .get(i - shared)
                .map(|((ip, _), s)| (&**s, ip.is_ipv6())),
        }
    }
}

/// How [`UdpDatapath::drain`] stopped.
enum Drain {
    /// The socket has nothing; the waker is registered.
    Pending,
    /// The batch is full.
    Full,
    /// The receive budget is spent.
    Budget,
    /// The socket failed.
    Error(io::Error),
}

/// What one `poll_recv` call saw, added to the counters at its end.
#[derive(Default)]
struct RecvTally {
    received: u64,
    too_large: u64,
    malformed: u64,
}

impl RecvTally {
    /// Judges a datagram of `n` bytes received into `slot` (`truncated`: the kernel said it
    /// was larger than the slot): the length of the IP packet it carries, to keep, or
    /// `None`, counted as too large or malformed.
    fn keep(&mut self, slot: &[u8], n: usize, truncated: bool) -> Option<usize> {
        match slot.get(..n).and_then(parse_endpoints) {
            Some(ep) if ep.len <= n && !truncated => {
                self.received += 1;
                Some(ep.len)
            }
            // The header says more than the slot could hold: the kernel truncated it.
            Some(_) if truncated || n == slot.len() => {
                self.too_large += 1;
                None
            }
            _ => {
                self.malformed += 1;
                None
            }
        }
    }

    /// Adds what was seen to the datapath's counters.
    fn record(self, counters: &Counters) {
        Counters::add(&counters.received, self.received);
        Counters::add(&counters.dropped_recv, self.too_large);
        Counters::add(&counters.malformed, self.malformed);
    }
}

impl Datapath for UdpDatapath {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn mtu(&self, remote: IpAddr) -> usize {
        match remote {
            IpAddr::V4(a) if a.is_loopback() => LOOPBACK_MTU_V4,
            IpAddr::V4(_) => MTU_V4,
            IpAddr::V6(a) if a.is_loopback() => LOOPBACK_MTU_V6,
            IpAddr::V6(_) => MTU_V6,
        }
    }

    fn local_ip_for(&self, remote: IpAddr) -> io::Result<IpAddr> {
        super::route_source(remote)
    }

    /// The kernel's choice for a socket bound to `device`: the host's interfaces are this
    /// datapath's. The packets themselves still leave as the datapath sends them.
    fn local_ip_via(&self, device: &[u8], remote: IpAddr) -> io::Result<IpAddr> {
        super::route_source_via(device, remote)
    }

    fn bind(&self, local: SocketAddr, kind: BindKind) -> io::Result<SocketAddr> {
        if local.is_ipv6() && self.v6.is_none() {
            return Err(no_ipv6());
        }
        if let (Some(member), BindKind::Listen) = (&self.member, kind) {
            // Registered with the runtime that made the datapath (the reactor's), not the
            // caller's: a listener must outlive the runtime of the task that bound it.
            let _runtime = self.runtime.enter();
            let (addr, sock) = member.claim(local)?;
            write(&self.registry).add_listener((addr.ip(), addr.port()), sock);
            return Ok(addr);
        }
        let what = match kind {
            BindKind::Listen => "listener",
            BindKind::Connect => "port reservation",
        };
        let buffer = match kind {
            BindKind::Listen => SOCKET_BUFFER,
            BindKind::Connect => RESERVATION_BUFFER,
        };
        let sock = open(local, buffer, false)
            .map_err(|e| context(e, &format!("udp datapath: {what} at {local}")))?;
        let port = port_of(&sock, local)?;
        let key = (local.ip(), port);
        match kind {
            BindKind::Listen => {
                // Registered with the runtime that made the datapath (the reactor's), not the
                // caller's: a listener must outlive the runtime of the task that bound it.
                let _runtime = self.runtime.enter();
                let sock = Arc::new(
                    register(sock)
                        .map_err(|e| context(e, &format!("udp datapath: {what} at {local}")))?,
                );
                write(&self.registry).add_listener(key, sock);
            }
            BindKind::Connect => {
                write(&self.registry).reservations.insert(key, sock);
            }
        }
        Ok(SocketAddr::new(local.ip(), port))
    }

    fn unbind(&self, local: SocketAddr) {
        let key = (local.ip(), local.port());
        let mut registry = write(&self.registry);
        if registry.by_addr.remove(&key).is_some() {
            registry.listeners.retain(|(k, _)| *k != key);
            // Under the lock: a mark is made under its read side, so none lands on a
            // place that moved.
            self.forget_heard_listeners();
            drop(registry);
            if let Some(member) = &self.member {
                member.release(local);
            }
        } else {
            registry.reservations.remove(&key);
        }
    }

    /// A datagram from a loopback address (IPv4 127.0.0.0/8, `::1`, or either mapped) was
    /// moved by the kernel from one buffer of this host to another: it cannot have been
    /// damaged on the way, and its TCP checksum need not be verified. One from any other
    /// address is verified as a packet from a wire, since a sender may have sent it with no
    /// UDP checksum (IPv4 allows zero).
    fn carrier_verified(&self, carrier: SocketAddr) -> bool {
        match carrier.ip() {
            IpAddr::V4(ip) => ip.is_loopback(),
            IpAddr::V6(ip) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        }
    }

    /// `recvmmsg` and `UDP_SEGMENT` trains (when on) of up to 64 datagrams, receiving
    /// without readiness, shards.
    fn capabilities(&self) -> super::Capabilities {
        super::Capabilities {
            receive_batch: if cfg!(target_os = "linux") { 64 } else { 1 },
            send_batch: if self.segmentation_offload() {
                gso::MAX_SEGMENTS
            } else {
                1
            },
            receive_now: cfg!(target_os = "linux"),
            shards: true,
            replies_reach_the_shard: true,
            verify_checksums: true,
            partial_checksums: false,
            // A datagram from a loopback address never left memory.
            loopback_carriers_verified: true,
            // Unbinding: a reservation socket closed.
            quick_unbind: true,
            pending_holds: true,
            // A packet with an attached payload leaves by one `sendmsg` of its pieces.
            sends_attached: true,
            // Its sockets are `registered::RecvSocket`s.
            readiness_follows: true,
        }
    }

    /// A datapath for shard `index` of `count`, with this one's settings: its own shared
    /// sockets, and listeners opened as one `SO_REUSEPORT` group per address with every
    /// sibling made from this datapath, steered by TCP ports (see `StackBuilder::shards`).
    fn shard(&self, index: usize, count: usize) -> io::Result<Arc<dyn Datapath>> {
        let mut dp = UdpDatapath::new()?;
        dp.gso = AtomicBool::new(self.segmentation_offload());
        dp.groups = Arc::clone(&self.groups);
        dp.member = Some(shard::Member {
            index,
            count,
            groups: Arc::clone(&self.groups),
        });
        Ok(Arc::new(dp))
    }

    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        if batch.is_full() {
            // Nothing can be added; the caller must make room first.
            return Poll::Ready(Ok(()));
        }
        let (refused, mut drained) = self.poll_refusals(cx, batch);
        let registry = read(&self.registry);
        let total = self.receiving_sockets(&registry);
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % total;
        let mut budget = RECV_BUDGET;
        let mut tally = RecvTally::default();
        let mut error = None;
        let mut spent = false;
        for k in 0..total {
            let index = (start + k) % total;
            let Some(sock) = self.receiving_socket(&registry, index) else {
                continue;
            };
            let drain = self.drain(cx, sock, index, batch, &mut budget, &mut tally);
            drained &= matches!(drain, Drain::Pending);
            match drain {
                Drain::Pending => {}
                Drain::Full => break,
                Drain::Budget => {
                    spent = true;
                    break;
                }
                Drain::Error(e) => {
                    tracing::debug!("udp datapath: receive failed: {e}");
                    error.get_or_insert(e);
                }
            }
        }
        drop(registry);
        let received = tally.received;
        tally.record(&self.counters);
        if received > 0 || refused > 0 {
            if drained {
                // Every socket and error queue answered `Pending` on the way.
                batch.set_drained();
            }
            Poll::Ready(Ok(()))
        } else if let Some(e) = error {
            Poll::Ready(Err(e))
        } else {
            if spent {
                // Only garbage so far, and more waiting: yield instead of holding the caller.
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    #[cfg(target_os = "linux")]
    fn recv_now(&self, batch: &mut Batch) -> bool {
        let mut budget = RECV_BUDGET;
        let mut tally = RecvTally::default();
        let registry = read(&self.registry);
        'sockets: for i in 0..self.receiving_sockets(&registry) {
            if !self.was_heard(i) {
                continue;
            }
            let Some(sock) = self.receiving_socket(&registry, i) else {
                continue;
            };
            // Room offered as a drain's (see `mmsg::Offer`).
            let offer = &self.offers[i % self.offers.len()];
            let (mut room, mut took) = (offer.first(), 0);
            loop {
                if batch.is_full() || budget == 0 {
                    offer.learn(super::mmsg::MAX);
                    break 'sockets;
                }
                let want = budget.min(batch.capacity() - batch.len()).min(room);
                match Self::recv_many(sock, batch, want, &mut budget, &mut tally) {
                    Ok((got, offered)) if got == offered => {
                        took += got;
                        room = super::mmsg::MAX;
                    }
                    Ok((got, _)) => {
                        offer.learn(took + got);
                        break;
                    }
                    Err(e) if transient(&e) => budget = budget.saturating_sub(1),
                    // Nothing waiting (or a failure the readiness path will report).
                    Err(_) => {
                        offer.learn(took);
                        break;
                    }
                }
            }
        }
        drop(registry);
        let received = tally.received;
        tally.record(&self.counters);
        received > 0
    }

    fn send(&self, batch: &Batch) -> io::Result<usize> {
        let mut tally = SendTally::default();
        let done = {
            let registry = read(&self.registry);
            self.send_packets(&registry, batch, &mut tally)
        };
        let no_v6 = tally.no_v6;
        tally.record(&self.counters);
        if no_v6 > 0 {
            return Err(no_ipv6());
        }
        Ok(done)
    }
}

impl UdpDatapath {
    /// Sends `batch`'s packets in order, gathering trains (see [`gso`]); returns how many
    /// were dealt with: all, or the index of the first packet (alone or leading a train)
    /// that found its socket's buffer full.
    fn send_packets(&self, registry: &Registry, batch: &Batch, tally: &mut SendTally) -> usize {
        let trains = self.gso.load(Ordering::Relaxed);
        // The train being gathered, and its packets.
        let mut train: Option<Gathered<'_>> = None;
        let mut parts: [&[u8]; gso::MAX_SEGMENTS] = [&[]; gso::MAX_SEGMENTS];
        for (i, packet) in batch.iter().enumerate() {
            let Some(Route {
                sock,
                dst,
                packet,
                ports,
            }) = self.route(registry, batch, i, packet, tally)
            else {
                continue;
            };
            let attached = batch.attached(i);
            if !attached[0].is_empty() {
                // Headers here, payload where the stack's send buffer keeps it: one datagram
                // from several places, never part of a train (such segments are large).
                if let Some(g) = train.take() {
                    if let Err(at) = self.send_gathered(&g, &parts[..g.train.count], tally) {
                        return at;
                    }
                }
                if Self::send_pieces(sock, dst, packet, attached, tally).is_err() {
                    return i;
                }
                continue;
            }
            let may_join = trains && packet.len() <= gso::MAX_SEGMENT;
            if let Some(g) = train.as_mut().filter(|_| may_join) {
                // One connection per train: a receiver whose listener is split into shards
                // steers a train by its first packet (see `shard`).
                if std::ptr::eq(g.sock, sock)
                    && g.dst == dst
                    && g.ports == ports
                    && g.train.join(packet.len())
                {
                    parts[g.train.count - 1] = packet;
                    continue;
                }
            }
            // Whatever was gathered goes before this packet.
            if let Some(g) = train.take() {
                if let Err(at) = self.send_gathered(&g, &parts[..g.train.count], tally) {
                    return at;
                }
            }
            if may_join {
                train = Some(Gathered {
                    train: gso::Train::start(packet.len()),
                    first: i,
                    sock,
                    dst,
                    ports,
                });
                parts[0] = packet;
            } else if Self::send_one(sock, dst, packet, tally).is_err() {
                return i;
            }
        }
        if let Some(g) = train.take() {
            if let Err(at) = self.send_gathered(&g, &parts[..g.train.count], tally) {
                return at;
            }
        }
        batch.len()
    }

    /// Sends a gathered train; `Err` with the batch index of the first of its packets that
    /// found no room.
    fn send_gathered(
        &self,
        g: &Gathered<'_>,
        packets: &[&[u8]],
        tally: &mut SendTally,
    ) -> Result<(), usize> {
        self.send_train(g.sock, g.dst, &g.train, packets, tally)
            .map_err(|Full(went)| g.first + went)
    }

    /// Where packet `i` of `batch` goes. `None` (counted) for a malformed packet or one of a
    /// family the host has no socket for.
    fn route<'a>(
        &'a self,
        registry: &'a Registry,
        batch: &Batch,
        i: usize,
        packet: &'a [u8],
        tally: &mut SendTally,
    ) -> Option<Route<'a>> {
        let Some(ep) = parse_endpoints(packet) else {
            tally.malformed += 1;
            return None;
        };
        // A packet with an attached payload has its headers here (see `Batch::attached`).
        let outside = batch.packet_len(i) - packet.len();
        let Some(packet) = ep
            .len
            .checked_sub(outside)
            .filter(|_| outside == 0 || ep.len == batch.packet_len(i))
            .and_then(|here| packet.get(..here))
        else {
            tally.malformed += 1;
            return None;
        };
        let Some(sock) = registry
            .sender(ep.src, ep.src_port)
            .or_else(|| self.shared(ep.src))
        else {
            tally.no_v6 += 1;
            return None;
        };
        let dst = batch
            .carrier(i)
            .filter(|c| c.is_ipv4() == ep.dst.is_ipv4())
            .unwrap_or(SocketAddr::new(ep.dst, ep.dst_port));
        Some(Route {
            sock,
            dst,
            packet,
            ports: (ep.src_port, ep.dst_port),
        })
    }

    /// [`send_one`](Self::send_one) for a packet in pieces (headers, then its attached
    /// payload): one `sendmsg` of them all.
    fn send_pieces(
        sock: &RecvSocket,
        dst: SocketAddr,
        head: &[u8],
        payload: &crate::wire::Pieces,
        tally: &mut SendTally,
    ) -> Result<(), Full> {
        let mut bufs = [std::io::IoSlice::new(head); 1 + crate::wire::PIECES];
        for (buf, piece) in bufs[1..].iter_mut().zip(payload) {
            *buf = std::io::IoSlice::new(piece);
        }
        let sent = SockRef::from(sock).send_to_vectored(&bufs, &SockAddr::from(dst));
        Self::tally_one(sent, dst, tally)
    }

    /// Sends one packet in a datagram of its own; `Err(Full(0))` when the socket's buffer
    /// has no room (the caller keeps the packet), any other failure drops it (counted).
    fn send_one(
        sock: &RecvSocket,
        dst: SocketAddr,
        packet: &[u8],
        tally: &mut SendTally,
    ) -> Result<(), Full> {
        // A direct non-blocking system call: tokio's readiness tracking would report
        // `WouldBlock` for a socket its reactor has not polled yet.
        let sent = SockRef::from(sock).send_to(packet, &SockAddr::from(dst));
        Self::tally_one(sent, dst, tally)
    }

    /// Counts what became of one datagram sent: `Err(Full(0))` when the socket's buffer had
    /// no room (the caller keeps the packet); any other failure drops it (counted).
    fn tally_one(
        sent: io::Result<usize>,
        dst: SocketAddr,
        tally: &mut SendTally,
    ) -> Result<(), Full> {
        match sent {
            Ok(_) => tally.sent += 1,
            Err(e) if super::no_room(&e) => return Err(Full(0)),
            Err(e) => {
                tracing::trace!("udp datapath: packet to {dst} dropped: {e}");
                tally.dropped += 1;
            }
        }
        Ok(())
    }

    /// Sends a gathered train (see [`gso`]): one packet alone; several in one call.
    /// `Err(Full)` when the socket's buffer has no room for the train, or for one of its
    /// packets sent one by one (those before it went). Any other refusal sends the packets one by one instead, so nothing is lost to
    /// a train that could not be: the route's MTU below the segments' size (`EMSGSIZE`: a
    /// datagram alone is fragmented, a train is refused), an error an earlier ICMP message
    /// left on the socket (reported once, by whichever call comes next), a destination a
    /// train cannot take (`EINVAL`). A kernel or device without the offload at all (`EIO`
    /// when the route cannot offload the UDP checksum, `ENOPROTOOPT`, `EOPNOTSUPP`) also
    /// turns trains off for this datapath.
    fn send_train(
        &self,
        sock: &RecvSocket,
        dst: SocketAddr,
        train: &gso::Train,
        packets: &[&[u8]],
        tally: &mut SendTally,
    ) -> Result<(), Full> {
        if let [packet] = packets {
            return Self::send_one(sock, dst, packet, tally);
        }
        let e = match gso::send_train(sock, dst, train.size, packets) {
            Ok(()) => {
                tally.sent += packets.len() as u64;
                tally.trains += 1;
                return Ok(());
            }
            Err(e) if super::no_room(&e) => return Err(Full(0)),
            Err(e) => e,
        };
        use nix::errno::Errno;
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
        if matches!(errno, Errno::EIO | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP) {
            tracing::debug!("udp datapath: segmentation offload refused ({e}); trains off");
            self.gso.store(false, Ordering::Relaxed);
        } else {
            tracing::trace!("udp datapath: a train to {dst} refused ({e}); sent one by one");
        }
        for (k, packet) in packets.iter().enumerate() {
            if Self::send_one(sock, dst, packet, tally).is_err() {
                return Err(Full(k));
            }
        }
        Ok(())
    }
}

/// A train being gathered by [`UdpDatapath::send_packets`]: its rules and size, the batch
/// index of its first packet, and the socket, destination and TCP ports all its packets
/// share.
struct Gathered<'a> {
    train: gso::Train,
    first: usize,
    sock: &'a RecvSocket,
    dst: SocketAddr,
    ports: (u16, u16),
}

/// Where one packet goes (see [`UdpDatapath::route`]).
struct Route<'a> {
    /// The socket it leaves through.
    sock: &'a RecvSocket,
    /// The UDP destination.
    dst: SocketAddr,
    /// The packet, trimmed to its IP length.
    packet: &'a [u8],
    /// Its TCP source and destination ports.
    ports: (u16, u16),
}

/// A socket's buffer had no room: of the packets offered (one, or a train), this many
/// went before it; the rest were not sent and may be offered again.
struct Full(usize);

/// What one `send` call did, added to the counters at its end.
#[derive(Default)]
struct SendTally {
    sent: u64,
    dropped: u64,
    malformed: u64,
    no_v6: u64,
    trains: u64,
}

impl SendTally {
    fn record(self, counters: &Counters) {
        Counters::add(&counters.sent, self.sent);
        Counters::add(&counters.dropped_send, self.dropped + self.no_v6);
        Counters::add(&counters.malformed, self.malformed);
        Counters::add(&counters.trains, self.trains);
    }
}

/// The addresses, ports and length of an IP packet carrying TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Endpoints {
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    /// The packet's length according to its IP header (which may exceed the bytes at hand).
    len: usize,
}

/// Reads the endpoints of an IP packet carrying TCP, or `None` if it is not one: not IPv4 or
/// IPv6, not TCP (IPv6 extension headers included), an IPv4 fragment past the first, or too
/// short for the IP header and a TCP header. Never panics.
fn parse_endpoints(packet: &[u8]) -> Option<Endpoints> {
    let view = PacketView::new(packet).ok()?;
    let tcp = view.tcp()?;
    Some(Endpoints {
        src: view.src(),
        dst: view.dst(),
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        len: view.declared_len(),
    })
}

/// A non-blocking UDP socket bound at `addr`: no address reuse (so that conflicts are
/// reported) but, with `reuse_port`, the `SO_REUSEPORT` group of a sharded listener (see
/// [`shard`]); IPv6-only on IPv6, buffers of `buffer` bytes asked for.
fn open(addr: SocketAddr, buffer: usize, reuse_port: bool) -> io::Result<Socket> {
    // Non-blocking from the start (`SOCK_NONBLOCK`, where there is one): a connect costs
    // a port reservation, and each system call saved here is one fewer per connection
    // (SO_REUSEADDR is off on a new socket already).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let kind = Type::DGRAM.nonblocking();
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let kind = Type::DGRAM;
    let sock = Socket::new(Domain::for_address(addr), kind, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    sock.set_nonblocking(true)?;
    // Best effort: the kernel caps these at its configured maximum.
    if let Err(e) = sock.set_recv_buffer_size(buffer) {
        tracing::debug!("udp datapath: SO_RCVBUF {buffer}: {e}");
    }
    if buffer > RESERVATION_BUFFER {
        if let Err(e) = sock.set_send_buffer_size(buffer) {
            tracing::debug!("udp datapath: SO_SNDBUF {buffer}: {e}");
        }
    }
    sock.bind(&SockAddr::from(addr))?;
    Ok(sock)
}

/// The port `sock`, bound to `asked`, is bound to: `asked`'s own, or the kernel's choice
/// when that was 0 (read back only then).
fn port_of(sock: &Socket, asked: SocketAddr) -> io::Result<u16> {
    match asked.port() {
        0 => bound_port(sock),
        port => Ok(port),
    }
}

/// The port `sock` is bound to (the kernel's choice, when it was bound to port 0).
fn bound_port(sock: &Socket) -> io::Result<u16> {
    sock.local_addr()?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("udp datapath: socket has no IP address"))
}

/// Hands `sock` to the current tokio runtime's reactor.
fn register(sock: Socket) -> io::Result<RecvSocket> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "udp datapath: must be used from within a tokio runtime",
        ));
    }
    RecvSocket::new(sock.into())
}

/// Whether `RAWTCP_UDP_GSO` asks for trains to be off (`off`, `0`, `false`, `no`).
fn gso_off_by_env() -> bool {
    std::env::var("RAWTCP_UDP_GSO").is_ok_and(|v| super::switch(&v) == Some(false))
}

/// The unspecified address of `ip`'s family.
fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Errors of a receive that do not concern the socket itself.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// The error for IPv6 use on a host without IPv6.
fn no_ipv6() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "udp datapath: IPv6 is unavailable on this host (no IPv6 UDP socket could be created)",
    )
}

/// `e` with `what` in front of its message, its kind kept.
fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

mod gso;
mod icmp;
mod shard;
#[cfg(test)]
mod tests;

use icmp::*;
