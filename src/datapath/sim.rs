//! The simulated network: an in-process network joining any number of hosts.
//!
//! This module owns [`SimNetwork`] (the network: its hosts, links, clock-driven queues and
//! counters) and [`SimDatapath`] (one host's attachment to it, a [`Datapath`]). Links between
//! hosts have latency, jitter, bandwidth, loss, duplication, reordering, corruption and an MTU
//! ([`LinkConfig`]). Time is tokio's clock, so under `tokio::time::pause()` a minute of network
//! time passes in milliseconds, and every random choice comes from a PRNG seeded at
//! [`SimNetwork::new`], so a run is reproduced by running it again with the same seed (on a
//! current-thread runtime, where the order of sends is itself deterministic).

use super::{Batch, BindKind, Datapath};
use crate::wire::view::PacketView;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The MTU of the loopback link unless configured otherwise.
const LOOPBACK_MTU: usize = 65535;
/// The first port handed out for port 0 (IANA dynamic range, RFC 6335).
const EPHEMERAL_FIRST: u16 = 49152;
/// How many ephemeral ports there are (49152..=65535).
const EPHEMERAL_COUNT: u16 = 16384;
/// How many spent packet buffers the network keeps for reuse.
const POOL_MAX: usize = 4096;

/// The behaviour of one direction of a link between two addresses.
///
/// The default is a perfect link: no delay, no impairment, unlimited bandwidth, MTU 1500.
/// Build variations with the `with_*` helpers:
///
/// ```
/// use rawtcp::datapath::sim::LinkConfig;
/// use std::time::Duration;
/// let wan = LinkConfig::lossy(0.01)
///     .with_latency(Duration::from_millis(40))
///     .with_jitter(Duration::from_millis(5))
///     .with_bandwidth(1_250_000);
/// assert_eq!(wan.mtu, 1500);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay added to every packet.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` for every packet (and every duplicate).
    /// Non-zero jitter reorders packets sent closer together than the jitter.
    pub jitter: Duration,
    /// Bytes per second; `None` for unlimited. Packets are serialised one after another: a
    /// packet starts when the link is free and occupies it for `len / bandwidth` seconds, and
    /// its latency counts from its last byte. `Some(0)` is treated as one byte per second.
    pub bandwidth: Option<u64>,
    /// Probability that a packet is dropped.
    pub loss: f64,
    /// Probability that a packet is delivered twice (the copy has its own jitter).
    pub duplicate: f64,
    /// Probability that a packet is held back by an extra [`reorder_delay`](Self::reorder_delay).
    pub reorder: f64,
    /// The extra delay of reordered packets.
    pub reorder_delay: Duration,
    /// Probability that one random bit after the IP header is flipped (the stack's checksum
    /// check must catch it; routing still works).
    pub corrupt: f64,
    /// The largest IP packet the link carries; larger packets are dropped.
    pub mtu: usize,
    /// With a bandwidth limit, the longest a packet may wait for the link before it is dropped
    /// (a drop-tail queue measured in time); `None` for an unbounded queue.
    pub queue_limit: Option<Duration>,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: None,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            corrupt: 0.0,
            mtu: 1500,
            queue_limit: None,
        }
    }
}

impl LinkConfig {
    /// A perfect link with MTU 1500 (the default).
    pub fn perfect() -> LinkConfig {
        LinkConfig::default()
    }

    /// The default loopback link: perfect, MTU 65535.
    pub fn loopback() -> LinkConfig {
        LinkConfig::default().with_mtu(LOOPBACK_MTU)
    }

    /// A perfect link that drops packets with probability `loss`.
    pub fn lossy(loss: f64) -> LinkConfig {
        LinkConfig::default().with_loss(loss)
    }

    /// A link that drops everything (a partition).
    pub fn down() -> LinkConfig {
        LinkConfig::lossy(1.0)
    }

    /// Sets [`latency`](Self::latency).
    pub fn with_latency(mut self, latency: Duration) -> LinkConfig {
        self.latency = latency;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    pub fn with_jitter(mut self, jitter: Duration) -> LinkConfig {
        self.jitter = jitter;
        self
    }

    /// Sets [`bandwidth`](Self::bandwidth) in bytes per second.
    pub fn with_bandwidth(mut self, bytes_per_second: u64) -> LinkConfig {
        self.bandwidth = Some(bytes_per_second);
        self
    }

    /// Sets [`loss`](Self::loss).
    pub fn with_loss(mut self, probability: f64) -> LinkConfig {
        self.loss = probability;
        self
    }

    /// Sets [`duplicate`](Self::duplicate).
    pub fn with_duplicate(mut self, probability: f64) -> LinkConfig {
        self.duplicate = probability;
        self
    }

    /// Sets [`reorder`](Self::reorder) and [`reorder_delay`](Self::reorder_delay).
    pub fn with_reorder(mut self, probability: f64, delay: Duration) -> LinkConfig {
        self.reorder = probability;
        self.reorder_delay = delay;
        self
    }

    /// Sets [`corrupt`](Self::corrupt).
    pub fn with_corrupt(mut self, probability: f64) -> LinkConfig {
        self.corrupt = probability;
        self
    }

    /// Sets [`mtu`](Self::mtu).
    pub fn with_mtu(mut self, mtu: usize) -> LinkConfig {
        self.mtu = mtu;
        self
    }

    /// Sets [`queue_limit`](Self::queue_limit).
    pub fn with_queue_limit(mut self, limit: Duration) -> LinkConfig {
        self.queue_limit = Some(limit);
        self
    }
}

/// Counters of a [`SimNetwork`], totals over all its hosts since it was created.
///
/// Every packet given to `send` is counted in `sent` and then either dropped (exactly one of
/// the `dropped_*` counters or `lost`), still in flight (`in_flight`), or `delivered` (handed
/// to the receiver by `poll_recv`); duplicates add one to `duplicated` and one more copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Packets given to `send`.
    pub sent: u64,
    /// Packets handed to a receiving host by `poll_recv` (duplicates included).
    pub delivered: u64,
    /// Packets dropped by link loss.
    pub lost: u64,
    /// Packets that were delivered twice.
    pub duplicated: u64,
    /// Packet copies that had a bit flipped.
    pub corrupted: u64,
    /// Packets larger than the link MTU (or than the receiver's batch slots).
    pub dropped_mtu: u64,
    /// Packets whose destination no host owns.
    pub dropped_no_route: u64,
    /// Packets too short for their IP header or of an unknown IP version.
    pub dropped_malformed: u64,
    /// Packets dropped because the link's queue was longer than its `queue_limit`.
    pub dropped_queue: u64,
    /// Packets queued for delivery right now.
    pub in_flight: u64,
    /// Bytes given to `send`.
    pub bytes_sent: u64,
    /// Bytes handed to receiving hosts by `poll_recv`.
    pub bytes_delivered: u64,
}

/// An in-process network joining any number of hosts; a cheap, cloneable handle.
///
/// Each host ([`SimDatapath`]) owns one or more addresses and the loopback addresses
/// (127.0.0.0/8 and `::1`, which reach the sending host itself). Packets travel over links
/// described by [`LinkConfig`]: per direction with [`set_path`](Self::set_path), both ways with
/// [`set_link`](Self::set_link), otherwise the [default link](Self::set_default_link); a
/// host's packets to itself use the [loopback link](Self::set_loopback_link).
///
/// ```
/// use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
/// use rawtcp::datapath::{Batch, Datapath};
/// use rawtcp::wire::{emit_tcp_packet, TcpRepr};
/// use std::time::Duration;
///
/// let rt = tokio::runtime::Builder::new_current_thread()
///     .enable_time()
///     .start_paused(true) // virtual time: the 20 ms below take no real time
///     .build()?;
/// rt.block_on(async {
///     let net = SimNetwork::new(7);
///     let a = net.host("10.0.0.1".parse()?)?;
///     let b = net.host("10.0.0.2".parse()?)?;
///     let wan = LinkConfig::default().with_latency(Duration::from_millis(20));
///     net.set_link(a.addr(), b.addr(), wan);
///
///     let mut out = Batch::new(1, 1500);
///     let tcp = TcpRepr { src_port: 40000, dst_port: 80, ..TcpRepr::default() };
///     let slot = out.next_slot().ok_or("full")?;
///     let len = emit_tcp_packet(a.addr(), b.addr(), 64, &tcp, b"hello", slot)?;
///     out.commit(len);
///     let start = tokio::time::Instant::now();
///     a.send(&out)?;
///
///     let mut inbox = Batch::new(8, 1500);
///     std::future::poll_fn(|cx| b.poll_recv(cx, &mut inbox)).await?;
///     assert_eq!(start.elapsed(), Duration::from_millis(20));
///     assert_eq!(inbox.get(0), out.get(0));
///     assert_eq!(net.stats().delivered, 1);
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<Mutex<Net>>,
}

impl fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = self.lock();
        f.debug_struct("SimNetwork")
            .field("hosts", &net.hosts.iter().flatten().count())
            .field("stats", &net.snapshot())
            .finish()
    }
}

impl SimNetwork {
    /// An empty network whose random choices all derive from `seed`.
    pub fn new(seed: u64) -> SimNetwork {
        SimNetwork {
            inner: Arc::new(Mutex::new(Net {
                rng: Rng::new(seed),
                seq: 0,
                hosts: Vec::new(),
                owners: HashMap::new(),
                paths: HashMap::new(),
                default_link: LinkConfig::default(),
                loopback_link: LinkConfig::loopback(),
                busy: HashMap::new(),
                stats: SimStats::default(),
                pool: Vec::new(),
            })),
        }
    }

    /// Adds a host owning `addr`; see [`host_with`](Self::host_with).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if another host owns `addr`; `InvalidInput` if `addr` is unspecified,
    /// loopback or multicast.
    pub fn host(&self, addr: IpAddr) -> io::Result<SimDatapath> {
        self.host_with(&[addr])
    }

    /// Adds a host owning every address in `addrs` (the first is its [`addr`](SimDatapath::addr)).
    /// The host leaves the network, giving its addresses back, when the [`SimDatapath`] is
    /// dropped.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if another host owns one of the addresses; `InvalidInput` if `addrs` is
    /// empty or holds an unspecified, loopback or multicast address.
    pub fn host_with(&self, addrs: &[IpAddr]) -> io::Result<SimDatapath> {
        let mut own: Vec<IpAddr> = Vec::with_capacity(addrs.len());
        for &a in addrs {
            if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{a} cannot be a simulated host's address"),
                ));
            }
            if !own.contains(&a) {
                own.push(a);
            }
        }
        let Some(&first) = own.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a simulated host needs at least one address",
            ));
        };
        let mut net = self.lock();
        if let Some(a) = own.iter().find(|a| net.owners.contains_key(a)) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{a} already belongs to a simulated host"),
            ));
        }
        let id = net.hosts.len();
        for &a in &own {
            net.owners.insert(a, id);
        }
        // `below` keeps the offset under EPHEMERAL_COUNT, so the conversion cannot fail.
        let offset = u16::try_from(net.rng.below(u64::from(EPHEMERAL_COUNT))).unwrap_or(0);
        net.hosts.push(Some(Host {
            addrs: own,
            inbox: BinaryHeap::new(),
            waker: None,
            sleep: None,
            bound: HashMap::new(),
            next_port: EPHEMERAL_FIRST + offset,
        }));
        drop(net);
        Ok(SimDatapath {
            net: self.clone(),
            id,
            addr: first,
        })
    }

    /// Sets the link between addresses `a` and `b`, both directions.
    pub fn set_link(&self, a: IpAddr, b: IpAddr, config: LinkConfig) {
        let mut net = self.lock();
        net.paths.insert((a, b), config);
        net.paths.insert((b, a), config);
    }

    /// Sets the link for packets from `from` to `to` only.
    pub fn set_path(&self, from: IpAddr, to: IpAddr, config: LinkConfig) {
        self.lock().paths.insert((from, to), config);
    }

    /// Forgets the settings of both directions between `a` and `b`: they use the default
    /// link again.
    pub fn clear_link(&self, a: IpAddr, b: IpAddr) {
        let mut net = self.lock();
        net.paths.remove(&(a, b));
        net.paths.remove(&(b, a));
    }

    /// Sets the link used between addresses with no link of their own.
    pub fn set_default_link(&self, config: LinkConfig) {
        self.lock().default_link = config;
    }

    /// Sets the link every host uses to reach itself (its loopback addresses, and its own
    /// addresses unless a path from and to that address is set). Perfect with MTU 65535 unless
    /// set.
    pub fn set_loopback_link(&self, config: LinkConfig) {
        self.lock().loopback_link = config;
    }

    /// The link packets from `from` to `to` would take between two hosts (the default link
    /// when none is set for the pair).
    pub fn link(&self, from: IpAddr, to: IpAddr) -> LinkConfig {
        let net = self.lock();
        net.paths
            .get(&(from, to))
            .copied()
            .unwrap_or(net.default_link)
    }

    /// The network's counters.
    pub fn stats(&self) -> SimStats {
        self.lock().snapshot()
    }

    fn lock(&self) -> MutexGuard<'_, Net> {
        // Nothing under the lock can panic halfway through a change, so a poisoned lock
        // still guards consistent state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One host on a [`SimNetwork`]: the [`Datapath`] a stack uses to send and receive there.
///
/// Dropping it removes the host: its addresses become free and packets to them are no longer
/// routed. Its `poll_recv` needs a tokio runtime with time enabled, the same one while packets
/// are queued for it (its timer belongs to the runtime that first waited on it).
pub struct SimDatapath {
    net: SimNetwork,
    id: usize,
    addr: IpAddr,
}

impl fmt::Debug for SimDatapath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDatapath")
            .field("addrs", &self.addrs())
            .finish()
    }
}

impl SimDatapath {
    /// The network this host is on.
    pub fn network(&self) -> SimNetwork {
        self.net.clone()
    }

    /// The host's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Every address the host owns (loopback addresses aside).
    pub fn addrs(&self) -> Vec<IpAddr> {
        let net = self.net.lock();
        net.host(self.id)
            .map(|h| h.addrs.clone())
            .unwrap_or_default()
    }

    #[cfg(test)]
    fn timer_armed(&self) -> bool {
        let net = self.net.lock();
        net.host(self.id).is_some_and(|h| h.sleep.is_some())
    }
}

impl Drop for SimDatapath {
    fn drop(&mut self) {
        let mut net = self.net.lock();
        let id = self.id;
        if let Some(slot) = net.hosts.get_mut(id) {
            *slot = None;
        }
        net.owners.retain(|_, owner| *owner != id);
        net.busy.retain(|&(from, to), _| from != id && to != id);
    }
}

impl Datapath for SimDatapath {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn mtu(&self, remote: IpAddr) -> usize {
        let net = self.net.lock();
        if remote.is_loopback() {
            return net.loopback_link.mtu;
        }
        let Some(host) = net.host(self.id) else {
            return net.default_link.mtu;
        };
        let Ok(local) = local_ip(host, remote) else {
            return net.default_link.mtu;
        };
        let fallback = if net.owners.get(&remote) == Some(&self.id) {
            net.loopback_link
        } else {
            net.default_link
        };
        net.paths.get(&(local, remote)).unwrap_or(&fallback).mtu
    }

    fn local_ip_for(&self, remote: IpAddr) -> io::Result<IpAddr> {
        let net = self.net.lock();
        let host = net.host(self.id).ok_or_else(gone)?;
        local_ip(host, remote)
    }

    fn bind(&self, local: SocketAddr, _kind: BindKind) -> io::Result<SocketAddr> {
        let mut net = self.net.lock();
        let host = net.host_mut(self.id).ok_or_else(gone)?;
        let ip = local.ip();
        if !(ip.is_unspecified() || ip.is_loopback() || host.addrs.contains(&ip)) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{ip} is not an address of this simulated host"),
            ));
        }
        if local.port() != 0 {
            if host.conflicts(ip, local.port()) {
                return Err(in_use(local));
            }
            host.bound.entry(local.port()).or_default().push(ip);
            return Ok(local);
        }
        for _ in 0..EPHEMERAL_COUNT {
            let port = host.next_port;
            host.next_port = port.checked_add(1).unwrap_or(EPHEMERAL_FIRST);
            if !host.conflicts(ip, port) {
                host.bound.entry(port).or_default().push(ip);
                let mut claimed = local;
                claimed.set_port(port);
                return Ok(claimed);
            }
        }
        Err(in_use(local))
    }

    fn unbind(&self, local: SocketAddr) {
        let mut net = self.net.lock();
        let Some(host) = net.host_mut(self.id) else {
            return;
        };
        if let Some(ips) = host.bound.get_mut(&local.port()) {
            if let Some(i) = ips.iter().position(|&ip| ip == local.ip()) {
                ips.swap_remove(i);
            }
            if ips.is_empty() {
                host.bound.remove(&local.port());
            }
        }
    }

    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        let mut net = self.net.lock();
        let Net {
            hosts, stats, pool, ..
        } = &mut *net;
        let Some(host) = hosts.get_mut(self.id).and_then(Option::as_mut) else {
            return Poll::Ready(Err(gone()));
        };
        // Normally one round; more only if the timer fires for a deadline the clock has
        // reached between our reading of it and the timer's.
        for _ in 0..4 {
            let now = Instant::now();
            let mut moved = false;
            while !batch.is_full() {
                match host.inbox.peek() {
                    Some(Reverse(head)) if head.at <= now => {}
                    _ => break,
                }
                let Some(Reverse(packet)) = host.inbox.pop() else {
                    break;
                };
                if batch.push(&packet.data).is_ok() {
                    stats.delivered += 1;
                    stats.bytes_delivered += packet.data.len() as u64;
                    moved = true;
                } else {
                    stats.dropped_mtu += 1;
                }
                if pool.len() < POOL_MAX {
                    pool.push(packet.data);
                }
            }
            if host.inbox.is_empty() {
                // No timer may stay armed with nothing to wait for: under a paused clock it
                // would make the runtime jump ahead to it.
                host.sleep = None;
            }
            if moved || batch.is_full() {
                return Poll::Ready(Ok(()));
            }
            match &mut host.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            let Some(Reverse(head)) = host.inbox.peek() else {
                return Poll::Pending;
            };
            let at = head.at;
            let sleep = match &mut host.sleep {
                Some(sleep) => {
                    if sleep.deadline() != at {
                        sleep.as_mut().reset(at);
                    }
                    sleep
                }
                slot => {
                    if tokio::runtime::Handle::try_current().is_err() {
                        return Poll::Ready(Err(io::Error::other(
                            "the simulated network is driven by a tokio runtime with time enabled",
                        )));
                    }
                    slot.insert(Box::pin(tokio::time::sleep_until(at)))
                }
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn send(&self, batch: &Batch) -> io::Result<()> {
        let mut wake = Vec::new();
        {
            let mut net = self.net.lock();
            let now = Instant::now();
            for packet in batch.iter() {
                net.route(self.id, packet, now, &mut wake);
            }
        }
        for w in wake {
            w.wake();
        }
        Ok(())
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "simulated host removed")
}

fn in_use(local: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("{local} is already claimed on this simulated host"),
    )
}

/// The local address a host uses to reach `remote`.
fn local_ip(host: &Host, remote: IpAddr) -> io::Result<IpAddr> {
    match remote {
        IpAddr::V4(a) if a.is_loopback() => return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(a) if a.is_loopback() => return Ok(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => {}
    }
    if host.addrs.contains(&remote) {
        return Ok(remote);
    }
    host.addrs
        .iter()
        .copied()
        .find(|a| a.is_ipv4() == remote.is_ipv4())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("this simulated host has no address of the family of {remote}"),
            )
        })
}

/// The network's state, behind one lock.
struct Net {
    rng: Rng,
    /// Orders packets due at the same instant: first sent, first delivered.
    seq: u64,
    /// Indexed by host id; ids are never reused, removed hosts leave `None`.
    hosts: Vec<Option<Host>>,
    owners: HashMap<IpAddr, usize>,
    paths: HashMap<(IpAddr, IpAddr), LinkConfig>,
    default_link: LinkConfig,
    loopback_link: LinkConfig,
    /// When the link from one host to another is free again (bandwidth-limited links only).
    busy: HashMap<(usize, usize), Instant>,
    stats: SimStats,
    /// Spent packet buffers, reused by `send`.
    pool: Vec<Vec<u8>>,
}

impl Net {
    fn host(&self, id: usize) -> Option<&Host> {
        self.hosts.get(id).and_then(Option::as_ref)
    }

    fn host_mut(&mut self, id: usize) -> Option<&mut Host> {
        self.hosts.get_mut(id).and_then(Option::as_mut)
    }

    fn snapshot(&self) -> SimStats {
        let mut stats = self.stats;
        stats.in_flight = self
            .hosts
            .iter()
            .flatten()
            .map(|h| h.inbox.len() as u64)
            .sum();
        stats
    }

    /// Sends one packet from host `from`, queueing it (and any duplicate) in the receiver's
    /// inbox; wakers of receivers whose next delivery moved earlier go to `wake`.
    fn route(&mut self, from: usize, packet: &[u8], now: Instant, wake: &mut Vec<Waker>) {
        let len = packet.len();
        self.stats.sent += 1;
        self.stats.bytes_sent += len as u64;
        let Ok(view) = PacketView::new(packet) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let (src, dst, header_len) = (view.src(), view.dst(), view.header_len());
        let (to, config) = if dst.is_loopback() {
            (from, self.loopback_link)
        } else {
            match self.owners.get(&dst) {
                Some(&to) => {
                    let fallback = if to == from {
                        self.loopback_link
                    } else {
                        self.default_link
                    };
                    (to, self.paths.get(&(src, dst)).copied().unwrap_or(fallback))
                }
                None => {
                    self.stats.dropped_no_route += 1;
                    return;
                }
            }
        };
        if len > config.mtu {
            self.stats.dropped_mtu += 1;
            return;
        }
        let mut departs = now;
        if let Some(bandwidth) = config.bandwidth {
            let busy = self.busy.entry((from, to)).or_insert(now);
            let start = (*busy).max(now);
            if config
                .queue_limit
                .is_some_and(|limit| start.saturating_duration_since(now) > limit)
            {
                self.stats.dropped_queue += 1;
                return;
            }
            departs = later(start, transmission_time(len, bandwidth));
            *busy = departs;
        }
        if self.rng.chance(config.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(config.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = config
                .latency
                .saturating_add(self.rng.duration_upto(config.jitter));
            if self.rng.chance(config.reorder) {
                delay = delay.saturating_add(config.reorder_delay);
            }
            let at = later(departs, delay);
            let mut data = self.pool.pop().unwrap_or_default();
            data.clear();
            data.extend_from_slice(packet);
            if self.rng.chance(config.corrupt) && flip_bit(&mut data, header_len, &mut self.rng) {
                self.stats.corrupted += 1;
            }
            self.seq += 1;
            let seq = self.seq;
            let Some(host) = self.hosts.get_mut(to).and_then(Option::as_mut) else {
                self.stats.dropped_no_route += 1;
                return;
            };
            let earlier = host.inbox.peek().is_none_or(|Reverse(head)| at < head.at);
            host.inbox.push(Reverse(Queued { at, seq, data }));
            if earlier {
                if let Some(w) = host.waker.take() {
                    wake.push(w);
                }
            }
        }
    }
}

/// One host's state.
struct Host {
    addrs: Vec<IpAddr>,
    /// Packets on their way here, earliest (then first sent) on top.
    inbox: BinaryHeap<Reverse<Queued>>,
    /// The task that last found nothing due.
    waker: Option<Waker>,
    /// Armed for the inbox's head while the receiver waits for it; `None` when the inbox is
    /// empty.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Claimed ports and the addresses claimed on each.
    bound: HashMap<u16, Vec<IpAddr>>,
    /// Where the search for a free ephemeral port starts.
    next_port: u16,
}

impl Host {
    /// Whether claiming `ip:port` clashes with a claim already made (the kernel's rules without
    /// SO_REUSEADDR: the same address, or either side the wildcard of the same family).
    fn conflicts(&self, ip: IpAddr, port: u16) -> bool {
        self.bound.get(&port).is_some_and(|ips| {
            ips.iter().any(|&b| {
                b.is_ipv4() == ip.is_ipv4()
                    && (b == ip || b.is_unspecified() || ip.is_unspecified())
            })
        })
    }
}

/// A packet in an inbox.
struct Queued {
    at: Instant,
    seq: u64,
    data: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Queued) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Queued) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Flips one random bit of `data` after its first `header_len` bytes; false if there is none.
fn flip_bit(data: &mut [u8], header_len: usize, rng: &mut Rng) -> bool {
    let bits = data.len().saturating_sub(header_len) as u64 * 8;
    if bits == 0 {
        return false;
    }
    let bit = rng.below(bits);
    let Ok(byte) = usize::try_from(bit / 8) else {
        return false;
    };
    match data.get_mut(header_len + byte) {
        Some(b) => {
            *b ^= 1 << (bit % 8);
            true
        }
        None => false,
    }
}

/// How long `len` bytes occupy a link of `bandwidth` bytes per second.
fn transmission_time(len: usize, bandwidth: u64) -> Duration {
    let nanos = len as u128 * 1_000_000_000 / u128::from(bandwidth.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `t + d`, saturating at a far future instead of overflowing.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(t)
}

/// splitmix64 (Steele, Lea and Flood, 2014): small, fast, and good enough for impairments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p` (never for NaN or `p <= 0`, always for `p >= 1`). Draws
    /// nothing when the outcome is certain.
    fn chance(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        ((self.next() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `[0, max]`, to the nanosecond.
    fn duration_upto(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(match nanos.checked_add(1) {
            Some(n) => self.below(n),
            None => self.next(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{emit_tcp_packet, parse_tcp_packet, TcpRepr};
    use std::future::poll_fn;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
    const MS: Duration = Duration::from_millis(1);

    /// A TCP packet from `src` to `dst` of `len` bytes in all whose payload starts with `id`.
    fn packet(src: IpAddr, dst: IpAddr, id: u32, len: usize) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: id,
            ..TcpRepr::default()
        };
        let header = if src.is_ipv4() { 20 } else { 40 } + 20;
        let mut payload = vec![0xa5; len.saturating_sub(header).max(4)];
        payload[..4].copy_from_slice(&id.to_be_bytes());
        let mut buf = vec![0; header + payload.len()];
        let n = emit_tcp_packet(src, dst, 64, &tcp, &payload, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn id_of(packet: &[u8]) -> u32 {
        let header = if packet[0] >> 4 == 4 { 20 } else { 40 } + 20;
        u32::from_be_bytes(packet[header..header + 4].try_into().unwrap())
    }

    fn send_all(dp: &SimDatapath, packets: &[Vec<u8>]) {
        let mut batch = Batch::new(64, 65535);
        for chunk in packets.chunks(64) {
            batch.clear();
            for p in chunk {
                batch.push(p).unwrap();
            }
            dp.send(&batch).unwrap();
        }
    }

    /// Everything `dp` receives until `deadline`, with its arrival time since `start`.
    async fn recv_until(
        dp: &SimDatapath,
        start: Instant,
        deadline: Instant,
    ) -> Vec<(Duration, Vec<u8>)> {
        let mut got = Vec::new();
        let mut batch = Batch::new(16, 65535);
        loop {
            batch.clear();
            let recv = poll_fn(|cx| dp.poll_recv(cx, &mut batch));
            match tokio::time::timeout_at(deadline, recv).await {
                Ok(r) => r.unwrap(),
                Err(_) => return got,
            }
            let at = start.elapsed();
            got.extend(batch.iter().map(|p| (at, p.to_vec())));
        }
    }

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn two_hosts(seed: u64, config: LinkConfig) -> (SimNetwork, SimDatapath, SimDatapath) {
        let net = SimNetwork::new(seed);
        let a = net.host(A).unwrap();
        let b = net.host(B).unwrap();
        net.set_link(A, B, config);
        (net, a, b)
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_after_exactly_the_latency() {
        let (net, a, b) = two_hosts(1, LinkConfig::default().with_latency(10 * MS));
        let start = Instant::now();
        send_all(&a, &[packet(A, B, 1, 100)]);
        let mut batch = Batch::new(4, 1500);
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let w = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&w);
        assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
        tokio::time::advance(10 * MS - Duration::from_nanos(1)).await;
        assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
        tokio::time::advance(Duration::from_nanos(1)).await;
        assert!(b.poll_recv(&mut cx, &mut batch).is_ready());
        assert_eq!(start.elapsed(), 10 * MS);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.get(0), packet(A, B, 1, 100));
        // And awaiting it, the clock jumps exactly to the arrival.
        let start = Instant::now();
        send_all(&b, &[packet(B, A, 2, 100)]);
        let got = recv_until(&a, start, start + Duration::from_secs(1)).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 10 * MS);
        let s = net.stats();
        assert_eq!((s.sent, s.delivered, s.in_flight), (2, 2, 0));
        assert_eq!(s.bytes_sent, 200);
        assert_eq!(s.bytes_delivered, 200);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_fifo_order_without_jitter() {
        let (_net, a, b) = two_hosts(2, LinkConfig::default().with_latency(5 * MS));
        let start = Instant::now();
        let packets: Vec<_> = (0..200).map(|i| packet(A, B, i, 60)).collect();
        send_all(&a, &packets[..100]);
        tokio::time::advance(Duration::from_micros(1)).await;
        send_all(&a, &packets[100..]);
        let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
        let ids: Vec<u32> = got.iter().map(|(_, p)| id_of(p)).collect();
        assert_eq!(ids, (0..200).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_reorders() {
        let cfg = LinkConfig::default()
            .with_latency(10 * MS)
            .with_jitter(5 * MS);
        let (net, a, b) = two_hosts(3, cfg);
        let start = Instant::now();
        for i in 0..200 {
            send_all(&a, &[packet(A, B, i, 60)]);
            tokio::time::advance(Duration::from_micros(100)).await;
        }
        let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
        let mut ids: Vec<u32> = got.iter().map(|(_, p)| id_of(p)).collect();
        assert!(ids.windows(2).any(|w| w[0] > w[1]), "no reordering");
        assert!(got.iter().all(|(at, _)| *at >= 10 * MS && *at <= 36 * MS));
        ids.sort_unstable();
        assert_eq!(ids, (0..200).collect::<Vec<_>>());
        assert_eq!(net.stats().delivered, 200);
    }

    #[tokio::test(start_paused = true)]
    async fn reorder_delays_some_packets() {
        let cfg = LinkConfig::default()
            .with_latency(MS)
            .with_reorder(0.2, 50 * MS);
        let (_net, a, b) = two_hosts(4, cfg);
        let start = Instant::now();
        let packets: Vec<_> = (0..1000).map(|i| packet(A, B, i, 60)).collect();
        send_all(&a, &packets);
        let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
        assert_eq!(got.len(), 1000);
        let late = got.iter().filter(|(at, _)| *at == 51 * MS).count();
        let on_time = got.iter().filter(|(at, _)| *at == MS).count();
        assert_eq!(late + on_time, 1000);
        assert!((150..=250).contains(&late), "{late} reordered");
    }

    async fn lossy_run(seed: u64) -> (usize, SimStats) {
        let (net, a, b) = two_hosts(seed, LinkConfig::lossy(0.1).with_latency(MS));
        let start = Instant::now();
        let packets: Vec<_> = (0..10_000).map(|i| packet(A, B, i, 60)).collect();
        send_all(&a, &packets);
        let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
        (got.len(), net.stats())
    }

    #[tokio::test(start_paused = true)]
    async fn loses_about_the_configured_fraction() {
        let (received, stats) = lossy_run(5).await;
        assert!((8_800..=9_200).contains(&received), "{received} of 10000");
        assert_eq!(stats.lost as usize, 10_000 - received);
        assert_eq!(stats.delivered as usize, received);
        assert_eq!(lossy_run(5).await, (received, stats));
        assert_ne!(lossy_run(6).await.0, received);
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates() {
        let (net, a, b) = two_hosts(6, LinkConfig::default().with_duplicate(1.0));
        let start = Instant::now();
        let packets: Vec<_> = (0..50).map(|i| packet(A, B, i, 60)).collect();
        send_all(&a, &packets);
        let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
        assert_eq!(got.len(), 100);
        for i in 0..50 {
            assert_eq!(got.iter().filter(|(_, p)| id_of(p) == i).count(), 2);
        }
        let s = net.stats();
        assert_eq!((s.sent, s.duplicated, s.delivered), (50, 50, 100));

        net.set_link(A, B, LinkConfig::default().with_duplicate(0.5));
        let packets: Vec<_> = (0..1000).map(|i| packet(A, B, i, 60)).collect();
        send_all(&a, &packets);
        let got = recv_until(&b, start, Instant::now() + Duration::from_secs(1)).await;
        assert!((1400..=1600).contains(&got.len()), "{}", got.len());
    }

    #[tokio::test(start_paused = true)]
    async fn corruption_flips_one_bit_after_the_ip_header() {
        let (net, a, b) = two_hosts(7, LinkConfig::default().with_corrupt(1.0));
        let six_a: IpAddr = "fd00::1".parse().unwrap();
        let six_b: IpAddr = "fd00::2".parse().unwrap();
        drop((a, b));
        let a = net.host_with(&[A, six_a]).unwrap();
        let b = net.host_with(&[B, six_b]).unwrap();
        net.set_link(six_a, six_b, LinkConfig::default().with_corrupt(1.0));
        let start = Instant::now();
        let mut sent: Vec<_> = (0..100).map(|i| packet(A, B, i, 200)).collect();
        sent.extend((100..200).map(|i| packet(six_a, six_b, i, 200)));
        send_all(&a, &sent);
        let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
        assert_eq!(got.len(), 200);
        for ((_, got), sent) in got.iter().zip(&sent) {
            let header = if sent[0] >> 4 == 4 { 20 } else { 40 };
            assert_eq!(got.len(), sent.len());
            assert_eq!(got[..header], sent[..header]);
            let flipped: u32 = got
                .iter()
                .zip(sent)
                .map(|(x, y)| (x ^ y).count_ones())
                .sum();
            assert_eq!(flipped, 1);
            assert!(parse_tcp_packet(got, true).is_err());
            assert!(parse_tcp_packet(sent, true).is_ok());
        }
        assert_eq!(net.stats().corrupted, 200);
    }

    #[tokio::test(start_paused = true)]
    async fn drops_packets_above_the_mtu() {
        let (net, a, b) = two_hosts(8, LinkConfig::default().with_mtu(1000));
        assert_eq!(a.mtu(B), 1000);
        assert_eq!(a.mtu(C), 1500);
        assert_eq!(a.mtu(IpAddr::V4(Ipv4Addr::LOCALHOST)), 65535);
        assert_eq!(a.mtu(A), 65535);
        net.set_default_link(LinkConfig::default().with_mtu(9000));
        assert_eq!(a.mtu(C), 9000);
        let start = Instant::now();
        send_all(&a, &[packet(A, B, 1, 1001), packet(A, B, 2, 1000)]);
        let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
        assert_eq!(got.len(), 1);
        assert_eq!(id_of(&got[0].1), 2);
        assert_eq!(net.stats().dropped_mtu, 1);

        // A packet bigger than the receiver's slots is dropped, not truncated.
        send_all(&a, &[packet(A, B, 3, 900), packet(A, B, 4, 100)]);
        let mut small = Batch::new(4, 500);
        poll_fn(|cx| b.poll_recv(cx, &mut small)).await.unwrap();
        assert_eq!(small.len(), 1);
        assert_eq!(id_of(small.get(0)), 4);
        assert_eq!(net.stats().dropped_mtu, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_serialises_packets() {
        let (_net, a, b) = two_hosts(9, LinkConfig::default().with_bandwidth(10_000));
        let start = Instant::now();
        let packets: Vec<_> = (0..10).map(|i| packet(A, B, i, 1000)).collect();
        send_all(&a, &packets);
        let got = recv_until(&b, start, start + Duration::from_secs(5)).await;
        let times: Vec<Duration> = got.iter().map(|(at, _)| *at).collect();
        let expected: Vec<Duration> = (1..=10).map(|i| 100 * MS * i).collect();
        assert_eq!(times, expected);

        // The reverse direction has a link of its own.
        let start = Instant::now();
        send_all(&a, &[packet(A, B, 20, 1000)]);
        send_all(&b, &[packet(B, A, 21, 1000)]);
        let got = recv_until(&a, start, start + Duration::from_secs(5)).await;
        assert_eq!(got[0].0, 100 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_limit_drops_the_tail() {
        let cfg = LinkConfig::default()
            .with_bandwidth(10_000)
            .with_queue_limit(250 * MS);
        let (net, a, b) = two_hosts(10, cfg);
        let start = Instant::now();
        let packets: Vec<_> = (0..10).map(|i| packet(A, B, i, 1000)).collect();
        send_all(&a, &packets);
        let got = recv_until(&b, start, start + Duration::from_secs(5)).await;
        // Packets waiting 0, 100, 200 ms get through; 300 ms and beyond do not.
        assert_eq!(got.len(), 3);
        assert_eq!(net.stats().dropped_queue, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn loopback_reaches_the_sender_only() {
        let net = SimNetwork::new(11);
        net.set_default_link(LinkConfig::default().with_latency(10 * MS));
        let six: IpAddr = "fd00::1".parse().unwrap();
        let a = net.host_with(&[A, six]).unwrap();
        let b = net.host(B).unwrap();
        let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let lo4b = IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3));
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(a.local_ip_for(lo4).unwrap(), lo4);
        assert_eq!(a.local_ip_for(lo6).unwrap(), lo6);
        assert_eq!(a.local_ip_for(B).unwrap(), A);
        assert_eq!(a.local_ip_for(A).unwrap(), A);
        assert_eq!(a.local_ip_for("fd00::9".parse().unwrap()).unwrap(), six);
        assert_eq!(
            b.local_ip_for(six).unwrap_err().kind(),
            io::ErrorKind::AddrNotAvailable
        );
        let start = Instant::now();
        send_all(
            &a,
            &[
                packet(lo4, lo4, 1, 60),
                packet(lo4, lo4b, 2, 60),
                packet(lo6, lo6, 3, 60000),
                packet(A, A, 4, 60),
            ],
        );
        send_all(&b, &[packet(lo4, lo4, 5, 60)]);
        let got_a = recv_until(&a, start, start + Duration::from_secs(1)).await;
        let ids: Vec<u32> = got_a.iter().map(|(_, p)| id_of(p)).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        assert!(got_a.iter().all(|(at, _)| at.is_zero()));
        let got_b = recv_until(&b, start, start + Duration::from_secs(1)).await;
        assert_eq!(got_b.len(), 1);
        assert_eq!(id_of(&got_b[0].1), 5);

        net.set_loopback_link(LinkConfig::loopback().with_latency(MS));
        let start = Instant::now();
        send_all(&a, &[packet(lo4, lo4, 6, 60)]);
        let got = recv_until(&a, start, start + Duration::from_secs(1)).await;
        assert_eq!(got[0].0, MS);
    }

    #[tokio::test(start_paused = true)]
    async fn binds_like_the_kernel() {
        let net = SimNetwork::new(12);
        let six: IpAddr = "fd00::1".parse().unwrap();
        let a = net.host_with(&[A, six]).unwrap();
        let sa = |ip: IpAddr, port| SocketAddr::new(ip, port);
        let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let kind = BindKind::Listen;

        assert_eq!(a.bind(sa(A, 80), kind).unwrap(), sa(A, 80));
        let err = |r: io::Result<SocketAddr>| r.unwrap_err().kind();
        assert_eq!(err(a.bind(sa(A, 80), kind)), io::ErrorKind::AddrInUse);
        assert_eq!(err(a.bind(sa(any4, 80), kind)), io::ErrorKind::AddrInUse);
        assert_eq!(a.bind(sa(lo, 81), kind).unwrap(), sa(lo, 81));
        assert_eq!(a.bind(sa(any6, 80), kind).unwrap(), sa(any6, 80));
        assert_eq!(err(a.bind(sa(six, 80), kind)), io::ErrorKind::AddrInUse);
        assert_eq!(a.bind(sa(any4, 443), kind).unwrap(), sa(any4, 443));
        assert_eq!(err(a.bind(sa(A, 443), kind)), io::ErrorKind::AddrInUse);
        assert_eq!(err(a.bind(sa(lo, 443), kind)), io::ErrorKind::AddrInUse);
        assert_eq!(err(a.bind(sa(B, 1), kind)), io::ErrorKind::AddrNotAvailable);
        assert_eq!(
            err(a.bind(sa("fd00::2".parse().unwrap(), 1), kind)),
            io::ErrorKind::AddrNotAvailable
        );
        a.unbind(sa(A, 80));
        a.unbind(sa(any6, 80));
        assert_eq!(a.bind(sa(any4, 80), kind).unwrap(), sa(any4, 80));

        // Port 0: distinct ephemeral ports until the range is used up.
        let mut ports = std::collections::HashSet::new();
        for _ in 0..EPHEMERAL_COUNT {
            let got = a.bind(sa(A, 0), BindKind::Connect).unwrap();
            assert_eq!(got.ip(), A);
            assert!(got.port() >= EPHEMERAL_FIRST);
            assert!(ports.insert(got.port()));
        }
        assert_eq!(
            err(a.bind(sa(A, 0), BindKind::Connect)),
            io::ErrorKind::AddrInUse
        );
        // Every port is now claimed on A, so the v4 wildcard conflicts with all of them.
        assert_eq!(
            err(a.bind(sa(any4, 0), BindKind::Connect)),
            io::ErrorKind::AddrInUse
        );
        let v6 = a.bind(sa(six, 0), BindKind::Connect).unwrap();
        assert!(v6.port() >= EPHEMERAL_FIRST);
        a.unbind(sa(A, 50000));
        assert_eq!(a.bind(sa(A, 0), BindKind::Connect).unwrap(), sa(A, 50000));

        // Ephemeral ports start at a seeded point.
        let first = |seed| {
            let net = SimNetwork::new(seed);
            let h = net.host(A).unwrap();
            h.bind(sa(A, 0), BindKind::Connect).unwrap().port()
        };
        assert_eq!(first(1), first(1));
        assert_ne!(first(1), first(2));
    }

    #[test]
    fn hosts_own_distinct_addresses() {
        let net = SimNetwork::new(13);
        let a = net.host(A).unwrap();
        assert_eq!(net.host(A).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            net.host_with(&[B, A]).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        for bad in [
            &[][..],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            &[IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
            &[IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1))],
        ] {
            assert_eq!(
                net.host_with(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        assert_eq!(a.addr(), A);
        assert_eq!(a.addrs(), [A]);
        assert_eq!(a.name(), "sim");
        assert!(a.verify_checksums());
        drop(a);
        let again = net.host(A).unwrap();
        assert_eq!(again.network().stats(), SimStats::default());
    }

    #[tokio::test(start_paused = true)]
    async fn pending_when_idle_and_woken_when_due() {
        let (_net, a, b) = two_hosts(14, LinkConfig::default().with_latency(50 * MS));
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let wakes = || counter.0.load(Ordering::SeqCst);
        let mut batch = Batch::new(8, 1500);

        assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
        assert!(!b.timer_armed());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(wakes(), 0);

        // A send into an empty inbox wakes the receiver, which then arms its timer.
        send_all(&a, &[packet(A, B, 1, 60)]);
        assert_eq!(wakes(), 1);
        assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
        assert!(b.timer_armed());
        // A later packet does not move the head: no wake.
        tokio::time::advance(10 * MS).await;
        send_all(&a, &[packet(A, B, 2, 60)]);
        assert_eq!(wakes(), 1);
        tokio::time::advance(39 * MS).await;
        assert_eq!(wakes(), 1);
        tokio::time::advance(MS).await;
        assert_eq!(wakes(), 2);
        assert!(b.poll_recv(&mut cx, &mut batch).is_ready());
        assert_eq!(batch.len(), 1);
        // The second packet is due at 60 ms.
        assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
        tokio::time::advance(10 * MS).await;
        assert_eq!(wakes(), 3);
        assert!(b.poll_recv(&mut cx, &mut batch).is_ready());
        assert_eq!(batch.len(), 2);
        assert!(!b.timer_armed());
        assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(wakes(), 3);

        // A packet that overtakes the head wakes the receiver again.
        b.network()
            .set_path(A, B, LinkConfig::default().with_latency(100 * MS));
        send_all(&a, &[packet(A, B, 3, 60)]);
        assert_eq!(wakes(), 4);
        assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
        b.network()
            .set_path(A, B, LinkConfig::default().with_latency(10 * MS));
        send_all(&a, &[packet(A, B, 4, 60)]);
        assert_eq!(wakes(), 5);
        batch.clear();
        assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
        tokio::time::advance(10 * MS).await;
        assert!(b.poll_recv(&mut cx, &mut batch).is_ready());
        assert_eq!(id_of(batch.get(0)), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn full_batch_leaves_the_rest_queued() {
        let (net, a, b) = two_hosts(15, LinkConfig::default());
        let packets: Vec<_> = (0..10).map(|i| packet(A, B, i, 60)).collect();
        send_all(&a, &packets);
        let mut batch = Batch::new(4, 1500);
        poll_fn(|cx| b.poll_recv(cx, &mut batch)).await.unwrap();
        assert_eq!(batch.len(), 4);
        assert_eq!(net.stats().in_flight, 6);
        batch.clear();
        poll_fn(|cx| b.poll_recv(cx, &mut batch)).await.unwrap();
        assert_eq!(id_of(batch.get(0)), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn counts_unroutable_and_malformed_packets_without_panicking() {
        let (net, a, b) = two_hosts(16, LinkConfig::default());
        let mut batch = Batch::new(64, 100);
        batch.push(&packet(A, C, 1, 60)).unwrap();
        batch
            .push(&packet(A, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1, 60))
            .unwrap();
        batch.push(&[]).unwrap();
        batch.push(&[0x45; 19]).unwrap();
        batch.push(&[0x44; 40]).unwrap(); // IHL 4
        batch.push(&[0x4f; 40]).unwrap(); // IHL 15: past the packet
        batch.push(&[0x60; 39]).unwrap();
        batch.push(&[0x70; 60]).unwrap();
        a.send(&batch).unwrap();
        let s = net.stats();
        assert_eq!((s.sent, s.dropped_no_route, s.dropped_malformed), (8, 2, 6));

        // Random bytes: routed or dropped, never a panic.
        let mut rng = Rng::new(99);
        let mut fuzz = Batch::new(64, 100);
        for _ in 0..200 {
            fuzz.clear();
            while !fuzz.is_full() {
                let len = rng.below(100) as usize;
                let slot = fuzz.next_slot().unwrap();
                for byte in &mut slot[..len] {
                    *byte = rng.next() as u8;
                }
                if len > 0 && rng.chance(0.5) {
                    slot[0] = if rng.chance(0.5) { 0x45 } else { 0x60 };
                }
                fuzz.commit(len);
            }
            b.send(&fuzz).unwrap();
        }
        let s = net.stats();
        assert_eq!(s.sent, 8 + 200 * 64);
        assert_eq!(
            s.sent,
            s.dropped_no_route + s.dropped_malformed + s.in_flight + s.delivered
        );

        // A removed host's address no longer routes.
        drop(b);
        a.send(&{
            let mut one = Batch::new(1, 100);
            one.push(&packet(A, B, 1, 60)).unwrap();
            one
        })
        .unwrap();
        assert_eq!(net.stats().dropped_no_route, s.dropped_no_route + 1);
    }

    #[test]
    fn works_outside_a_runtime() {
        let (_net, a, b) = two_hosts(17, LinkConfig::default().with_latency(MS));
        send_all(&a, &[packet(A, B, 1, 60)]);
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let mut batch = Batch::new(1, 1500);
        match b.poll_recv(&mut cx, &mut batch) {
            Poll::Ready(Err(_)) => {}
            Poll::Ready(Ok(())) => assert_eq!(batch.len(), 1),
            Poll::Pending => panic!("pending with no runtime to wake it"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_on_the_real_clock() {
        let (_net, a, b) = two_hosts(18, LinkConfig::default().with_latency(5 * MS));
        let start = Instant::now();
        send_all(&a, &[packet(A, B, 1, 60)]);
        let receiver = tokio::spawn(async move {
            let mut batch = Batch::new(4, 1500);
            poll_fn(|cx| b.poll_recv(cx, &mut batch)).await.unwrap();
            batch.len()
        });
        let got = tokio::time::timeout(Duration::from_secs(5), receiver).await;
        assert_eq!(got.unwrap().unwrap(), 1);
        assert!(start.elapsed() >= 5 * MS);
    }

    /// Everything observable about one impaired run.
    async fn impaired_run(seed: u64) -> (Vec<(Duration, Vec<u8>)>, SimStats, SocketAddr) {
        let cfg = LinkConfig::lossy(0.05)
            .with_latency(20 * MS)
            .with_jitter(10 * MS)
            .with_bandwidth(1_000_000)
            .with_duplicate(0.05)
            .with_reorder(0.05, 30 * MS)
            .with_corrupt(0.05);
        let (net, a, b) = two_hosts(seed, cfg);
        let port = b.bind(SocketAddr::new(B, 0), BindKind::Connect).unwrap();
        let start = Instant::now();
        for i in 0..300 {
            send_all(&a, &[packet(A, B, i, 100 + (i as usize * 7) % 1300)]);
            tokio::time::advance(Duration::from_micros(300)).await;
        }
        let got = recv_until(&b, start, start + Duration::from_secs(2)).await;
        (got, net.stats(), port)
    }

    #[tokio::test(start_paused = true)]
    async fn same_seed_same_outcome() {
        let first = impaired_run(42).await;
        let second = impaired_run(42).await;
        assert!(first.1.lost > 0 && first.1.duplicated > 0 && first.1.corrupted > 0);
        assert!(first == second);
        let other = impaired_run(43).await;
        assert!(first.0 != other.0);
    }
}
