//! The TUN datapath: the stack owns an address behind a TUN device, and the host's kernel
//! routes to it.
//!
//! A TUN device is a virtual network interface whose "wire" is a file descriptor: every IP
//! packet the kernel routes out of the interface can be read from the descriptor, and every
//! packet written to the descriptor reaches the kernel as if it had arrived on the interface.
//! [`TunDatapath`] opens one through `/dev/net/tun` (`IFF_TUN | IFF_NO_PI`: bare IPv4 and IPv6
//! packets, no framing) and puts the stack on the far side of it: the stack answers for its
//! own address ([`TunConfig::addr`], `10.77.0.2` by default), which the kernel does not own,
//! and the kernel reaches that address through the device. Applications on the host connect
//! to the stack (or accept its connections) with their ordinary kernel sockets.
//!
//! # What it changes on the host
//!
//! While a [`TunDatapath`] lives, the host has:
//! - a new network interface, named [`TunConfig::name`] (`rawtcp0` by default), up, with the
//!   configured MTU;
//! - the host address [`TunConfig::host_addr`] with the prefix (`10.77.0.1/24` by default)
//!   assigned to that interface, and so a connected route for the prefix
//!   (`10.77.0.0/24 dev rawtcp0`) through which the kernel reaches the stack's address;
//! - with [`TunConfig::addr6`], the same for IPv6 (an address on the interface and a connected
//!   route for its prefix).
//!
//! Nothing else: no forwarding, no NAT, no firewall rule, and the stack's own address is never
//! assigned to the kernel. Dropping the datapath closes the descriptor, and the kernel then
//! removes the interface with its addresses and routes. (A *persistent* TUN device of the same
//! name made beforehand, with `ip tuntap add`, is attached to instead of created, and is left
//! in place, with the addresses given to it, when the datapath goes.)
//!
//! # Offloads
//!
//! By default ([`TunConfig::offload`]) the device carries a virtio-net header on every
//! packet, with TCP segmentation offload both ways: a run of one connection's segments leaves
//! in one write of up to 64 KiB, which the kernel delivers to a local program as one large
//! segment or cuts into the original segments before another device, and the kernel's TCP
//! hands the stack up to 64 KiB per read (see `offload.rs`). `TunStats::trains_out` and
//! `large_in` count them.
//!
//! # Shards
//!
//! The device is made with `IFF_MULTI_QUEUE`, so a sharded stack
//! ([`StackBuilder::shards`](crate::StackBuilder::shards)) opens one queue per shard; see
//! [`Datapath::shard`] on [`TunDatapath`] for how the kernel's choice of queue and the
//! shards' ownership of connections are kept in step.
//!
//! # Privilege
//!
//! Creating a TUN device needs `CAP_NET_ADMIN` (running as root gives it) and the kernel's TUN
//! driver, reached through `/dev/net/tun`. Without either, [`TunDatapath::new`] fails at once
//! with an error that names what is missing; it never waits and never panics. No external
//! tool is run: the device is created and addressed with ioctls.
//!
//! # Environment
//!
//! With `RAWTCP_DATAPATH=tun`, [`TunConfig::from_env`] reads:
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `RAWTCP_TUN_NAME` | the interface name (at most 15 bytes; `%d` lets the kernel number it) | `rawtcp0` |
//! | `RAWTCP_TUN_ADDR` | the stack's IPv4 address and prefix, e.g. `10.77.0.2/24` | `10.77.0.2/24` |
//! | `RAWTCP_TUN_HOST_ADDR` | the host side's IPv4 address on the device | the first free address of the prefix (`10.77.0.1`) |
//! | `RAWTCP_TUN_MTU` | the interface MTU, 68 to 65535 (1280 or more with IPv6) | `1500` |
//! | `RAWTCP_TUN_ADDR6` | the stack's IPv6 address and prefix, e.g. `fd77::2/64` | none: no IPv6 |
//! | `RAWTCP_TUN_HOST_ADDR6` | the host side's IPv6 address on the device | the first free address of the prefix |
//! | `RAWTCP_TUN_OFFLOAD` | `on` or `off`: segmentation offloads (see [`TunConfig::offload`]) | `on` |
//!
//! A variable that is unset or empty keeps its default; a bad value is an `InvalidInput` error
//! naming the variable.
//!
//! ```no_run
//! use rawtcp::datapath::tun::{TunConfig, TunDatapath};
//!
//! # async fn demo() -> std::io::Result<()> {
//! // Inside a tokio runtime, as root:
//! let datapath = TunDatapath::new(TunConfig::from_env()?)?;
//! // The host now reaches the stack at 10.77.0.2 through `rawtcp0`; hand the datapath to a
//! // stack (`Stack::builder().datapath(datapath)`) and listen or connect there.
//! # drop(datapath);
//! # Ok(()) }
//! ```

use super::ports::{PortClaims, EPHEMERAL_COUNT};
use super::{Batch, BindKind, Datapath, ShardSet};
use crate::wire::view::PacketView;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use tun_rs::{AsyncDevice, DeviceBuilder};

/// The device node through which TUN devices are made.
const TUN_PATH: &str = "/dev/net/tun";
/// The smallest MTU of an IPv4 link (RFC 791).
const MIN_MTU_V4: u16 = 68;
/// The smallest MTU of an IPv6 link (RFC 8200 §5).
const MIN_MTU_V6: u16 = 1280;
/// Interface names are at most this many bytes (`IFNAMSIZ` less the NUL).
const MAX_NAME_LEN: usize = 15;
/// The bit of `CAP_NET_ADMIN` in the capability sets of `/proc/self/status`.
const CAP_NET_ADMIN_BIT: u32 = 12;

// Linux errno values met while creating the device.
const EPERM: i32 = 1;
const ENXIO: i32 = 6;
const EACCES: i32 = 13;
const EBUSY: i32 = 16;
const ENODEV: i32 = 19;
const EINVAL: i32 = 22;
const EBADFD: i32 = 77;
const EAFNOSUPPORT: i32 = 97;

const VAR_NAME: &str = "RAWTCP_TUN_NAME";
const VAR_ADDR: &str = "RAWTCP_TUN_ADDR";
const VAR_HOST_ADDR: &str = "RAWTCP_TUN_HOST_ADDR";
const VAR_MTU: &str = "RAWTCP_TUN_MTU";
const VAR_ADDR6: &str = "RAWTCP_TUN_ADDR6";
const VAR_HOST_ADDR6: &str = "RAWTCP_TUN_HOST_ADDR6";
const VAR_OFFLOAD: &str = "RAWTCP_TUN_OFFLOAD";

/// Counters of a [`TunDatapath`] since it was created.
///
/// Every packet read from the device is counted once: in `packets_in` (handed to the stack),
/// `not_for_us` or `dropped_in`. Every packet given to `send` is counted once: in
/// `packets_out` or `dropped_out`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunStats {
    /// Packets read from the device and handed to the stack.
    pub packets_in: u64,
    /// Bytes of those packets.
    pub bytes_in: u64,
    /// Packets written to the device.
    pub packets_out: u64,
    /// Bytes of those packets.
    pub bytes_out: u64,
    /// Packets read from the device whose destination is none of the stack's addresses
    /// (the kernel's own IPv6 router solicitations, traffic to other addresses of the prefix).
    pub not_for_us: u64,
    /// Packets read from the device and dropped: not IPv4 or IPv6, too short for their
    /// header, or larger than the receiving batch's slots.
    pub dropped_in: u64,
    /// Packets given to `send` and dropped: not IPv4 or IPv6, refused by the kernel, or
    /// finding the device's queue full.
    pub dropped_out: u64,
    /// Trains written: runs of segments of one connection written as one packet for the
    /// kernel to cut (see [`TunConfig::offload`]); their segments count in `packets_out`.
    pub trains_out: u64,
    /// Packets read that stand for several segments (the kernel's TSO toward the device),
    /// counted in `packets_in` once each.
    pub large_in: u64,
    /// Packets a shard's queue received for another shard and handed to it (see
    /// [`Datapath::shard`]); counted again in `packets_in` when that shard takes them.
    pub handed_over: u64,
}

#[derive(Default)]
struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    not_for_us: AtomicU64,
    dropped_in: AtomicU64,
    dropped_out: AtomicU64,
    trains_out: AtomicU64,
    large_in: AtomicU64,
    handed_over: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A [`Datapath`] over a TUN device that it creates: see the [module documentation](self)
/// for what it changes on the host.
///
/// It answers for the stack's addresses ([`TunConfig::addr`] and, if set, the first of
/// [`TunConfig::addr6`]); packets the kernel sends to any other address are dropped and
/// counted. Ports are claimed in a table of its own, as the kernel would: an exact address
/// and the unspecified address of the same family conflict on the same port, and port 0 picks
/// a free port from 49152 to 65535.
///
/// Dropping it removes the device (see the module documentation).
pub struct TunDatapath {
    /// The device queue this datapath reads, registered with tokio.
    reader: AsyncDevice,
    /// The same queue, duplicated: packets are written here directly. A TUN device is
    /// always writable, and tokio's view of write readiness (unknown until the runtime's
    /// next turn after registration) must not drop the first packets.
    writer: File,
    /// This datapath's shard and the number of shards (`(0, 1)` for a whole stack).
    place: (usize, usize),
    /// What every queue of the device shares.
    dev: Arc<Device>,
}

/// The device, as every shard's datapath sees it.
struct Device {
    name: String,
    config: TunConfig,
    /// Whether every packet carries a virtio-net header (the offloads are on).
    vnet: bool,
    /// Whether the device takes more queues (`IFF_MULTI_QUEUE`), which shards need.
    multi_queue: bool,
    /// Whether runs of segments leave as trains; cleared for good if the kernel refuses one.
    trains: AtomicBool,
    ports: Mutex<Claims>,
    counters: Counters,
    /// Each shard's inbox of packets another shard's queue received for it (see
    /// [`TunDatapath::shard`]); set by the first split.
    inboxes: OnceLock<Box<[Inbox]>>,
}

/// The addresses the device's stack claimed, and for a sharded stack which shards hold each.
struct Claims {
    table: PortClaims,
    /// The shards that claimed each address, on a sharded stack.
    shards: HashMap<SocketAddr, ShardSet>,
}

/// Packets handed to a shard by the others, and the waker of its receiver.
#[derive(Default)]
struct Inbox(Mutex<InboxState>);

#[derive(Default)]
struct InboxState {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
    waker: Option<Waker>,
}

/// Packets and bytes an inbox holds at most; past either, what arrives is dropped (counted
/// in `dropped_in`), as a full device queue drops, and TCP repairs it.
const MAX_INBOX: usize = 1024;
const MAX_INBOX_BYTES: usize = 4 << 20;

impl fmt::Debug for TunDatapath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunDatapath")
            .field("device", &self.dev.name)
            .field("place", &self.place)
            .field("config", &self.dev.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Device {
    fn stats(&self) -> TunStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TunStats {
            packets_in: get(&c.packets_in),
            bytes_in: get(&c.bytes_in),
            packets_out: get(&c.packets_out),
            bytes_out: get(&c.bytes_out),
            not_for_us: get(&c.not_for_us),
            dropped_in: get(&c.dropped_in),
            dropped_out: get(&c.dropped_out),
            trains_out: get(&c.trains_out),
            large_in: get(&c.large_in),
            handed_over: get(&c.handed_over),
        }
    }
}

impl TunDatapath {
    /// Creates the TUN device [`config.name`](TunConfig::name) (or attaches to a persistent
    /// one of that name), assigns it the host's address with the prefix (and the IPv6 one if
    /// set), sets its MTU and brings it up.
    ///
    /// Must be called inside a tokio runtime with IO enabled, which then drives the device.
    ///
    /// # Errors
    ///
    /// At once, and naming what is missing: `InvalidInput` for a configuration that
    /// [`validate`](TunConfig::validate) rejects; `Other` outside a tokio runtime; `NotFound`
    /// without `/dev/net/tun` or a TUN driver; `PermissionDenied` without `CAP_NET_ADMIN`;
    /// `ResourceBusy` when another process holds a device of that name; and the kernel's
    /// error, with what was being done, for anything else.
    pub fn new(config: TunConfig) -> io::Result<TunDatapath> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "rawtcp tun datapath: TunDatapath::new must be called inside a tokio runtime \
                 (with IO enabled), which drives the device",
            ));
        }
        preflight(&config.name, std::path::Path::new(TUN_PATH), cap_eff())?;
        not_taken(&config.name)?;
        let build = |offload: bool, multi_queue: bool| {
            DeviceBuilder::new()
                .name(config.name.clone())
                .ipv4(config.host_addr, config.prefix, None)
                .inherit_enable_state()
                .offload(offload)
                .multi_queue(multi_queue)
                .build_sync()
                .map_err(|e| creation_error(e, &config))
        };
        // Every device is asked for more queues (shards need them; with one queue nothing
        // changes) and for the offloads. A kernel that refuses the offloads, or a persistent
        // device made with one queue, gets a device without what it refused; a missing
        // privilege or a busy name fails every way, and says so.
        let mut tries = vec![(config.offload, true), (config.offload, false)];
        if config.offload {
            tries.extend([(false, true), (false, false)]);
        }
        let mut refused = None;
        let found = tries.into_iter().find_map(|(offload, multi_queue)| {
            match build(offload, multi_queue) {
                Ok(d) => Some((d, multi_queue)),
                Err(e) => {
                    tracing::debug!(error = %e, offload, multi_queue, "tun datapath: refused");
                    refused = Some(e);
                    None
                }
            }
        });
        let Some((device, multi_queue)) = found else {
            return Err(refused.unwrap_or_else(|| io::Error::other("no attempt")));
        };
        if let Some(e) = refused {
            tracing::warn!(error = %e, offload = device.tcp_gso(), multi_queue,
                "tun datapath: the kernel refused part of the set-up; going without it");
        }
        let vnet = device.tcp_gso();
        // The kernel's name for it differs from the one asked for when that holds a `%d`.
        let name = device.name().unwrap_or_else(|_| config.name.clone());
        let step = |what: String, ipv6: bool| {
            let name = name.clone();
            move |e: io::Error| {
                let hint = match e.raw_os_error() {
                    Some(EPERM) => " (needs CAP_NET_ADMIN)",
                    Some(EACCES) if ipv6 => {
                        " (IPv6 is disabled for new interfaces: net.ipv6.conf.default.disable_ipv6)"
                    }
                    Some(EAFNOSUPPORT) if ipv6 => " (IPv6 is disabled on this host)",
                    _ => "",
                };
                io::Error::new(
                    e.kind(),
                    format!("rawtcp tun datapath: {what} on TUN device {name}{hint}: {e}"),
                )
            }
        };
        device
            .set_mtu(config.mtu)
            .map_err(step(format!("setting MTU {}", config.mtu), false))?;
        if let Some((_, host6, prefix6)) = config.addr6 {
            device
                .add_address_v6(host6, prefix6)
                .map_err(step(format!("assigning {host6}/{prefix6}"), true))?;
        }
        device
            .enabled(true)
            .map_err(step("bringing the interface up".to_string(), false))?;
        let writer = device
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .map_err(step("duplicating the descriptor".to_string(), false))?;
        // Makes the descriptor (shared with `writer`) non-blocking and registers it.
        let reader = AsyncDevice::new(device).map_err(step(
            "registering the descriptor with tokio".to_string(),
            false,
        ))?;
        Ok(TunDatapath {
            reader,
            writer,
            place: (0, 1),
            dev: Arc::new(Device {
                name,
                config,
                vnet,
                multi_queue,
                trains: AtomicBool::new(vnet),
                ports: Mutex::new(Claims {
                    table: PortClaims::new(random_offset()),
                    shards: HashMap::new(),
                }),
                counters: Counters::default(),
                inboxes: OnceLock::new(),
            }),
        })
    }

    /// The configuration the device was set up with.
    pub fn config(&self) -> &TunConfig {
        &self.dev.config
    }

    /// The interface's name as the kernel has it (the configured one, with any `%d` filled in).
    pub fn device_name(&self) -> &str {
        &self.dev.name
    }

    /// The counters so far, of the whole device (every shard's queue).
    pub fn stats(&self) -> TunStats {
        self.dev.stats()
    }

    fn addr6(&self) -> Option<Ipv6Addr> {
        self.dev.config.addr6.map(|(a, _, _)| a)
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => a == self.dev.config.addr,
            IpAddr::V6(a) => Some(a) == self.addr6(),
        }
    }

    fn lock_ports(&self) -> MutexGuard<'_, Claims> {
        // Nothing under the lock can panic halfway through a change.
        self.dev.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io_error(&self, what: &str, e: io::Error) -> io::Error {
        // A descriptor whose interface was deleted (`ip link del`) answers EBADFD.
        let hint = if e.raw_os_error() == Some(EBADFD) {
            "; the interface was deleted"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!(
                "rawtcp tun datapath: {what} (TUN device {}{hint}): {e}",
                self.dev.name
            ),
        )
    }
}

impl Datapath for TunDatapath {
    fn name(&self) -> &'static str {
        "tun"
    }

    fn mtu(&self, _remote: IpAddr) -> usize {
        usize::from(self.dev.config.mtu)
    }

    fn local_ip_for(&self, remote: IpAddr) -> io::Result<IpAddr> {
        match remote {
            IpAddr::V4(_) => Ok(IpAddr::V4(self.dev.config.addr)),
            IpAddr::V6(_) => self.addr6().map(IpAddr::V6).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!(
                        "the tun datapath has no IPv6 address to reach {remote} from \
                         (set {VAR_ADDR6})"
                    ),
                )
            }),
        }
    }

    /// The stack sits behind its own device and nothing else: binding to that device is
    /// what every connection does anyway; another interface cannot reach the stack.
    fn local_ip_via(&self, device: &[u8], remote: IpAddr) -> io::Result<IpAddr> {
        if device != self.dev.name.as_bytes() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "rawtcp: the tun datapath sends through {} only, not {}",
                    self.dev.name,
                    String::from_utf8_lossy(device)
                ),
            ));
        }
        self.local_ip_for(remote)
    }

    fn bind(&self, local: SocketAddr, kind: BindKind) -> io::Result<SocketAddr> {
        let ip = local.ip();
        if !(ip.is_unspecified() || self.is_own(ip)) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "{ip} is not an address of the tun datapath (it has {}{})",
                    self.dev.config.addr,
                    self.addr6()
                        .map(|a| format!(" and {a}"))
                        .unwrap_or_default()
                ),
            ));
        }
        let mut claims = self.lock_ports();
        let (me, sharded) = (self.place.0, self.place.1 > 1);
        if sharded && local.port() != 0 && kind == BindKind::Listen {
            // Every shard of a stack claims a listener's address: the first claim holds it
            // for all, and it goes when the last shard lets it go. (A port one shard claimed
            // for its outgoing connections stays its own.)
            if let Some(shards) = claims.shards.get_mut(&local) {
                if !shards.join(me) {
                    return Err(in_use(local));
                }
                return Ok(local);
            }
        }
        let claimed = claims.table.claim(local).ok_or_else(|| in_use(local))?;
        if sharded {
            claims.shards.insert(claimed, ShardSet::of(me));
        }
        Ok(claimed)
    }

    fn unbind(&self, local: SocketAddr) {
        let mut claims = self.lock_ports();
        if let Some(shards) = claims.shards.get_mut(&local) {
            if !shards.leave(self.place.0) {
                return;
            }
            claims.shards.remove(&local);
        }
        claims.table.release(local);
    }

    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        let start = batch.len();
        self.take_handed_over(cx, batch);
        // Packets not for the stack do not end a call; this bounds how many one call reads.
        let budget = batch.capacity().saturating_mul(4).max(64);
        let addr6 = self.addr6();
        for _ in 0..budget {
            let Some(slot) = batch.next_slot() else {
                return Poll::Ready(Ok(()));
            };
            // Reads one packet, or registers the waker (for readability, and for the error
            // the kernel reports once the interface is deleted).
            let mut vnet = [0u8; offload::HDR_LEN];
            let n = match self.read_one(cx, &mut vnet, &mut *slot) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => {
                    if batch.len() > start {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Ready(Err(self.io_error("reading a packet", e)));
                }
                Poll::Pending => {
                    if batch.len() > start {
                        // The device read empty and the other shards' hand-overs were
                        // taken, both with the waker registered.
                        batch.set_drained();
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
            };
            // The kernel reports a packet's whole length even when the slot held less.
            let header = offload::VnetHeader::parse(&vnet);
            let verdict = match slot.get_mut(..n) {
                Some(packet) => {
                    let complete = !header.needs_checksum()
                        || offload::complete_checksum(
                            packet,
                            header.csum_start,
                            header.csum_offset,
                        );
                    if complete {
                        classify(packet, self.dev.config.addr, addr6)
                    } else {
                        Verdict::Malformed
                    }
                }
                None => Verdict::Malformed,
            };
            if verdict == Verdict::Deliver && header.is_large() {
                bump(&self.dev.counters.large_in, 1);
            }
            match verdict {
                Verdict::Deliver if self.hand_over(&slot[..n]) => {}
                Verdict::Deliver => {
                    batch.commit(n);
                    bump(&self.dev.counters.packets_in, 1);
                    bump(&self.dev.counters.bytes_in, n as u64);
                }
                Verdict::NotForUs => bump(&self.dev.counters.not_for_us, 1),
                Verdict::Malformed => bump(&self.dev.counters.dropped_in, 1),
            }
        }
        if batch.len() > start {
            return Poll::Ready(Ok(()));
        }
        // Only packets for others so far, and more waiting: let other tasks run, then come
        // back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn send(&self, batch: &Batch) -> io::Result<usize> {
        let mut failure = None;
        let mut i = 0;
        while i < batch.len() {
            let packet = batch.get(i);
            if !plausible(packet) {
                bump(&self.dev.counters.dropped_out, 1);
                i += 1;
                continue;
            }
            let count = if self.dev.trains.load(Ordering::Relaxed) {
                offload::train_len((i..batch.len()).map(|j| batch.get(j)))
            } else {
                1
            };
            let train = (count > 1).then(|| (offload::train_packets(batch, i, count), count));
            let written = match &train {
                Some((packets, count)) => self.write_train(&packets[..*count]),
                None => self.write_one(packet),
            };
            let count = count.max(1);
            let bytes = || {
                (i..i + count)
                    .map(|j| batch.get(j).len() as u64)
                    .sum::<u64>()
            };
            match written {
                Ok(()) => {
                    bump(&self.dev.counters.packets_out, count as u64);
                    bump(&self.dev.counters.bytes_out, bytes());
                    if train.is_some() {
                        bump(&self.dev.counters.trains_out, 1);
                    }
                    i += count;
                }
                // The device's queue is full: the stack offers this packet and the rest
                // again.
                Err(e) if super::no_room(&e) && failure.is_none() => return Ok(i),
                // A kernel that refuses a train: the same packets go one by one, and so
                // does everything after.
                Err(e) if train.is_some() && e.raw_os_error() == Some(EINVAL) => {
                    tracing::warn!(error = %e, device = %self.dev.name,
                        "tun datapath: the kernel refused a train; sending packets one by one");
                    self.dev.trains.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    bump(&self.dev.counters.dropped_out, count as u64);
                    failure.get_or_insert(e);
                    i += count;
                }
            }
        }
        match failure {
            None => Ok(batch.len()),
            Some(e) => Err(self.io_error("writing a packet", e)),
        }
    }

    fn capabilities(&self) -> super::Capabilities {
        super::Capabilities {
            receive_batch: 1,
            send_batch: if self.dev.trains.load(Ordering::Relaxed) {
                offload::MAX_TRAIN
            } else {
                1
            },
            receive_now: false,
            shards: self.dev.multi_queue,
            replies_reach_the_shard: false,
            verify_checksums: true,
            partial_checksums: false,
            loopback_carriers_verified: false,
            // Unbinding: the port table in memory.
            quick_unbind: true,
            pending_holds: true,
            sends_attached: false,
            readiness_follows: false,
        }
    }

    /// Another queue of the device, in the calling runtime, for shard `index` of `count`.
    ///
    /// The kernel picks a multi-queue TUN device's queue for each packet by flow: the queue
    /// that last wrote a packet of that flow (its table learns from every write, and
    /// forgets a flow idle for 3 s or beyond its 4,096 flows), else one by the flow's hash.
    /// The stack writes a connection's packets from the shard that owns it, so after the
    /// first exchange the kernel sends the connection's packets there; what still reaches
    /// another shard's queue (a SYN, the first packet after an idle spell) is handed to the
    /// owner, `shard_of(its ports)`, through an inbox, and counted in
    /// [`TunStats::handed_over`].
    fn shard(&self, index: usize, count: usize) -> io::Result<Arc<dyn Datapath>> {
        if !self.dev.multi_queue {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "rawtcp tun datapath: device {} has one queue (a persistent device made \
                     without multi_queue), so it cannot be split into shards",
                    self.dev.name
                ),
            ));
        }
        let inboxes = self
            .dev
            .inboxes
            .get_or_init(|| (0..count).map(|_| Inbox::default()).collect());
        if inboxes.len() != count || index >= count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "rawtcp tun datapath: shard {index} of {count}, but the device was split \
                     into {}",
                    inboxes.len()
                ),
            ));
        }
        let name = &self.dev.name;
        let queue = DeviceBuilder::new()
            .name(name.clone())
            .inherit_enable_state()
            .offload(self.dev.vnet)
            .multi_queue(true)
            .build_sync()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("rawtcp tun datapath: opening another queue of {name}: {e}"),
                )
            })?;
        if queue.tcp_gso() != self.dev.vnet {
            return Err(io::Error::other(format!(
                "rawtcp tun datapath: the new queue of {name} does not carry the first's \
                 virtio-net header"
            )));
        }
        let writer = queue.as_fd().try_clone_to_owned().map(File::from)?;
        let reader = AsyncDevice::new(queue)?;
        Ok(Arc::new(TunDatapath {
            reader,
            writer,
            place: (index, count),
            dev: Arc::clone(&self.dev),
        }))
    }
}

impl TunDatapath {
    /// The inboxes of a sharded device (`None` for a whole one).
    fn inboxes(&self) -> Option<&[Inbox]> {
        if self.place.1 > 1 {
            self.dev.inboxes.get().map(|b| &b[..])
        } else {
            None
        }
    }

    /// Moves what the other shards handed to this one into `batch`, and leaves the waker
    /// for more.
    fn take_handed_over(&self, cx: &mut Context<'_>, batch: &mut Batch) {
        let Some(inbox) = self.inboxes().and_then(|b| b.get(self.place.0)) else {
            return;
        };
        let mut state = inbox.0.lock().unwrap_or_else(|e| e.into_inner());
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        while let Some(packet) = state.packets.front() {
            if batch.push(packet).is_err() {
                break;
            }
            bump(&self.dev.counters.packets_in, 1);
            bump(&self.dev.counters.bytes_in, packet.len() as u64);
            state.bytes -= packet.len();
            state.packets.pop_front();
        }
    }

    /// Hands `packet` to the shard that owns it, `shard_of` its ports, when that is another
    /// one; false when it is this shard's (or not TCP, which this shard answers).
    fn hand_over(&self, packet: &[u8]) -> bool {
        let Some(inboxes) = self.inboxes() else {
            return false;
        };
        let Some(tcp) = PacketView::new(packet).ok().and_then(|v| v.tcp()) else {
            return false;
        };
        let owner = super::shard_of(tcp.dst_port(), tcp.src_port(), self.place.1);
        if owner == self.place.0 {
            return false;
        }
        let Some(inbox) = inboxes.get(owner) else {
            return false;
        };
        let mut state = inbox.0.lock().unwrap_or_else(|e| e.into_inner());
        if state.packets.len() >= MAX_INBOX || state.bytes + packet.len() > MAX_INBOX_BYTES {
            drop(state);
            bump(&self.dev.counters.dropped_in, 1);
            return true;
        }
        state.bytes += packet.len();
        state.packets.push_back(packet.to_vec());
        let waker = state.waker.take();
        drop(state);
        bump(&self.dev.counters.handed_over, 1);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Reads one packet into `slot`, and its virtio-net header into `vnet` when the device
    /// has one, or registers the waker (for readability, and for the error the kernel
    /// reports once the interface is deleted). The packet's length as the kernel gives it.
    fn read_one(
        &self,
        cx: &mut Context<'_>,
        vnet: &mut [u8; offload::HDR_LEN],
        slot: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let header_len = if self.dev.vnet { offload::HDR_LEN } else { 0 };
        loop {
            let mut iov = [
                IoSliceMut::new(&mut vnet[..header_len]),
                IoSliceMut::new(slot),
            ];
            match self.reader.try_recv_vectored(&mut iov) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.reader.poll_readable(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Ok(n) if n < header_len => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a read shorter than the virtio-net header",
                    )))
                }
                other => return Poll::Ready(other.map(|n| n - header_len)),
            }
        }
    }

    /// Writes one packet (after a virtio-net header saying its checksums are complete, when
    /// the device has one). The descriptor is non-blocking: one write is one packet.
    fn write_one(&self, packet: &[u8]) -> io::Result<()> {
        let header: &[u8] = if self.dev.vnet { &offload::PLAIN } else { &[] };
        self.write_all_of(
            &[IoSlice::new(header), IoSlice::new(packet)],
            header.len() + packet.len(),
        )
    }

    /// Writes `packets` (a run [`offload::train_len`] found) as one train: the headers that
    /// stand for all of them, then each one's payload, read in place.
    fn write_train(&self, packets: &[&[u8]]) -> io::Result<()> {
        let header = offload::TrainHeader::new(packets)
            .ok_or_else(|| io::Error::from_raw_os_error(EINVAL))?;
        let (iov, len) = header.slices(packets);
        self.write_all_of(&iov[..=packets.len()], len)
    }

    fn write_all_of(&self, iov: &[IoSlice<'_>], len: usize) -> io::Result<()> {
        let mut written = (&self.writer).write_vectored(iov);
        if matches!(&written, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
            written = (&self.writer).write_vectored(iov);
        }
        match written? {
            n if n == len => Ok(()),
            n => Err(io::Error::other(format!(
                "the device took {n} of a packet's {len} bytes"
            ))),
        }
    }
}

/// Whether `packet` may be an IP packet: a version the device carries and room for its header.
/// The kernel drops anything else, so it is not written.
fn plausible(packet: &[u8]) -> bool {
    PacketView::new(packet).is_ok()
}

/// What becomes of a packet read from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// For one of the stack's addresses: handed to the stack.
    Deliver,
    /// For another address: dropped and counted.
    NotForUs,
    /// Not an IP packet this datapath can read the destination of.
    Malformed,
}

/// Reads the destination straight from the IP header; the stack parses the rest.
fn classify(packet: &[u8], addr: Ipv4Addr, addr6: Option<Ipv6Addr>) -> Verdict {
    let Ok(view) = PacketView::new(packet) else {
        return Verdict::Malformed;
    };
    let ours = match view.dst() {
        IpAddr::V4(a) => a == addr,
        IpAddr::V6(a) => Some(a) == addr6,
    };
    if ours {
        Verdict::Deliver
    } else {
        Verdict::NotForUs
    }
}

fn in_use(local: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("{local} is already claimed on the tun datapath"),
    )
}

/// A random start for the ephemeral port search (RFC 6056 §3.3.1 in spirit).
fn random_offset() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    (h.finish() % u64::from(EPHEMERAL_COUNT)) as u16
}

mod config;
pub(in crate::datapath) mod offload;
mod preflight;
#[cfg(test)]
mod tests;

pub use config::TunConfig;
use preflight::*;
