//! The simulated network: an in-process network joining any number of hosts.
//!
//! This module owns [`SimNetwork`] (the network: its hosts, links, clock-driven queues and
//! counters) and [`SimDatapath`] (one host's attachment to it, a [`Datapath`]). Links between
//! hosts have latency, jitter, bandwidth, loss, duplication, reordering, corruption and an MTU
//! ([`LinkConfig`]). Time is tokio's clock, so under `tokio::time::pause()` a minute of network
//! time passes in milliseconds, and every random choice comes from a PRNG seeded at
//! [`SimNetwork::new`], so a run is reproduced by running it again with the same seed (on a
//! current-thread runtime, where the order of sends is itself deterministic).

use super::ports::{PortClaims, EPHEMERAL_COUNT};
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
/// How many spent packet buffers the network keeps for reuse.
const POOL_MAX: usize = 4096;

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
            ports: PortClaims::new(offset),
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

    /// No system calls: a whole batch each way per call.
    fn capabilities(&self) -> super::Capabilities {
        super::Capabilities {
            receive_batch: usize::MAX,
            send_batch: usize::MAX,
            receive_now: false,
            shards: false,
            replies_reach_the_shard: false,
            verify_checksums: self.verify_checksums(),
            partial_checksums: false,
            loopback_carriers_verified: false,
            // Unbinding: the simulated host's port table.
            quick_unbind: true,
            // Packets become due by the clock, and its timer may fire a little after.
            pending_holds: false,
            sends_attached: false,
            readiness_follows: false,
        }
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
        host.ports.claim(local).ok_or_else(|| in_use(local))
    }

    fn unbind(&self, local: SocketAddr) {
        let mut net = self.net.lock();
        let Some(host) = net.host_mut(self.id) else {
            return;
        };
        host.ports.release(local);
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

    fn send(&self, batch: &Batch) -> io::Result<usize> {
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
        Ok(batch.len())
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

mod link;
mod net;
#[cfg(test)]
mod tests;

pub use link::LinkConfig;
use link::*;
use net::*;
