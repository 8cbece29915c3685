//! Trains: a run of one connection's segments handed to the kernel in one system call,
//! which cuts it back into those segments on the way out (generic segmentation offload).
//!
//! A raw IP socket takes one packet per message: each costs a route lookup, a socket
//! buffer and a pass through the IP output path, and that is most of what a bulk sender on
//! the raw datapath spends (the reactor spent about 80 % of its time inside `sendmmsg`).
//! The kernel's own TCP pays it once per 64 KiB. So the raw datapath sends a run of
//! back-to-back segments that [`train_len`] finds as one packet through an `AF_PACKET`
//! socket with `PACKET_VNET_HDR`: a virtio-net header asking for TCP segmentation at the
//! segments' size (the header TUN trains use, see `tun::offload`), an Ethernet header, the
//! first segment's IP and TCP headers, then every segment's payload in place. The device
//! cuts it if it has TSO; otherwise the kernel does before the device (`skb_gso_segment`).
//! Either way the wire carries the same segments as before, one by one, at the path's MTU.
//!
//! What a packet socket needs and a raw socket does not: the outgoing interface and the next
//! hop's hardware address. [`route`](super::route) asks the kernel (`RTM_GETROUTE`,
//! `RTM_GETNEIGH`), and the answer is kept for [`FRESH`]. Only Ethernet interfaces carry
//! trains; where the kernel has no resolved neighbour entry yet, or the route leaves by
//! loopback or a device without a link-layer header, segments go through the raw socket as
//! before (and a raw send is what makes the kernel resolve the neighbour).
//!
//! **What a train skips.** Packets of a packet socket enter the device's queue directly:
//! they pass the qdisc (so `tc` shaping still applies) and packet taps (`tcpdump` sees the
//! cut segments where the kernel cuts, the whole train on a device with TSO), but not the
//! IP output path, so the host's netfilter `output` and `postrouting` hooks, conntrack, NAT
//! and IPsec never see them (rawtcp's own nftables rule only concerns the kernel's RSTs).
//! So trains stay off while the host holds outbound IPsec policies, or while conntrack
//! tracks connections in the namespace strictly (see `Cache::barred`); where other rules
//! must see every segment, set `RAWTCP_RAW_TRAINS=off` or call
//! [`RawDatapath::set_trains`](super::RawDatapath::set_trains). The cut segments carry the
//! IPv4 identification counting up from the first one's, as the kernel's own TSO does.

use super::route::{Route, Rtnl};
use crate::datapath::tun::offload::TrainHeader;
use nix::sys::socket::{
    sendmsg, setsockopt, socket, sockopt, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType,
};
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// `PACKET_VNET_HDR` is not among nix's socket options; nix's own macro defines it (the
// `setsockopt` call it wraps lives in nix, so this crate still holds no `unsafe`).
use nix::{libc, setsockopt_impl, sockopt_impl};
sockopt_impl!(
    /// `PACKET_VNET_HDR`: every packet written starts with a `struct virtio_net_hdr`.
    PacketVnetHdr,
    SetOnly,
    libc::SOL_PACKET,
    libc::PACKET_VNET_HDR,
    bool
);

/// How long an answer about a destination (its interface and next hop's address, or that it
/// has none to use) is kept before the kernel is asked again.
pub(super) const FRESH: Duration = Duration::from_secs(1);
/// `ARPHRD_ETHER`: the interfaces whose link-layer header is written here.
const ARPHRD_ETHER: u16 = 1;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// How to put a train on the wire to one destination.
#[derive(Clone, Copy)]
struct Path {
    /// The interface, as the packet socket's destination address.
    link: LinkAddr,
    /// Destination and source hardware addresses; the EtherType is the packet's.
    macs: [u8; 12],
}

struct Known {
    path: Option<Path>,
    until: Instant,
}

#[derive(Default)]
struct Cache {
    rtnl: Option<Rtnl>,
    paths: HashMap<IpAddr, Known>,
    /// The host's interfaces that may carry trains (Ethernet, not VLAN), by index, and
    /// when they were read: one `getifaddrs` per [`FRESH`], not one per destination.
    links: HashMap<u32, LinkAddr>,
    links_until: Option<Instant>,
    /// Whether the host is in a state where trains must not go (IPsec policies, conntrack
    /// tracking connections strictly), and until when that answer holds.
    barred: Option<(bool, Instant)>,
    /// `RAWTCP_RAW_TRAINS=on`: conntrack does not bar trains (IPsec still does).
    forced: bool,
    /// The kernel cannot answer a neighbour question (`RTM_GETNEIGH` for one address came
    /// with Linux 5.0): no trains, and no more questions.
    unanswerable: bool,
}

/// A packet socket that sends trains, and what it knows of the destinations.
pub(super) struct Trains {
    sock: OwnedFd,
    cache: Mutex<Cache>,
    on: AtomicBool,
}

/// What became of a train.
pub(super) enum Sent {
    /// On its way.
    Done,
    /// No path for trains to this destination: send the segments one by one.
    NoPath,
    /// The kernel refused it for want of room (`EAGAIN`, `ENOBUFS`): offer it again later.
    NoRoom,
}

impl Trains {
    /// The packet socket, or why there is none (no `CAP_NET_RAW`, no `PACKET_VNET_HDR`).
    /// `forced` (`RAWTCP_RAW_TRAINS=on`): trains go even where conntrack tracks
    /// connections (see [`Cache::barred`]).
    pub fn new(forced: bool) -> io::Result<Trains> {
        // Protocol 0: the socket sends and never receives, so no arrival is copied to it.
        let sock = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        setsockopt(&sock, PacketVnetHdr, &true)?;
        // Room for many 64 KiB trains; a full buffer is `EAGAIN`, and the stack offers the
        // train again.
        if setsockopt(&sock, sockopt::SndBufForce, &(8 << 20)).is_err() {
            let _ = setsockopt(&sock, sockopt::SndBuf, &(8 << 20));
        }
        let _ = setsockopt(&sock, sockopt::Mark, &super::MARK);
        Ok(Trains {
            sock,
            cache: Mutex::new(Cache {
                forced,
                ..Cache::default()
            }),
            on: AtomicBool::new(true),
        })
    }

    pub fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// Sends `packets` (a run [`train_len`](crate::datapath::tun::offload::train_len) found,
    /// two or more, to `dst`) as one train.
    pub fn send(&self, dst: IpAddr, packets: &[&[u8]]) -> Sent {
        let Some(path) = self.path(dst) else {
            return Sent::NoPath;
        };
        let mut eth = [0u8; 14];
        eth[..12].copy_from_slice(&path.macs);
        let kind = if dst.is_ipv4() { ETH_P_IP } else { ETH_P_IPV6 };
        eth[12..].copy_from_slice(&kind.to_be_bytes());
        let Some(header) = TrainHeader::with_link(packets, &eth) else {
            return Sent::NoPath;
        };
        let (iov, len) = header.slices(packets);
        let iov = &iov[..=packets.len()];
        let mut r = sendmsg(
            self.sock.as_raw_fd(),
            iov,
            &[],
            MsgFlags::MSG_DONTWAIT,
            Some(&path.link),
        );
        if r == Err(nix::errno::Errno::EINTR) {
            r = sendmsg(
                self.sock.as_raw_fd(),
                iov,
                &[],
                MsgFlags::MSG_DONTWAIT,
                Some(&path.link),
            );
        }
        match r {
            Ok(n) if n == len => Sent::Done,
            Ok(n) => {
                // What left, left: sending the segments again would duplicate them (TCP
                // repairs whatever is missing). No more trains from a kernel that does this.
                tracing::warn!(
                    sent = n,
                    len,
                    "raw datapath: a train was cut short; trains off"
                );
                self.set_on(false);
                Sent::Done
            }
            Err(e) if crate::datapath::no_room(&io::Error::from(e)) => Sent::NoRoom,
            Err(e @ (nix::errno::Errno::EINVAL | nix::errno::Errno::EOPNOTSUPP)) => {
                // A kernel that will not cut such a packet: every segment goes alone from
                // now on.
                tracing::warn!(error = %e, "raw datapath: the kernel refused a train; trains off");
                self.set_on(false);
                Sent::NoPath
            }
            Err(e) => {
                // The interface went down or away, or a filter refused: no trains to `dst`
                // until the kernel is asked again, and these go through the raw socket,
                // whose own error (if any) decides.
                tracing::debug!(error = %e, %dst, "raw datapath: a train failed");
                self.no_path_for_now(dst);
                Sent::NoPath
            }
        }
    }

    fn no_path_for_now(&self, dst: IpAddr) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.paths.insert(
            dst,
            Known {
                path: None,
                until: Instant::now() + FRESH,
            },
        );
    }

    /// The path to `dst`, from the cache while fresh, else from the kernel.
    fn path(&self, dst: IpAddr) -> Option<Path> {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.paths.get(&dst) {
            if k.until > now {
                return k.path;
            }
        }
        let path = if cache.barred(now) {
            None
        } else {
            cache.look_up(dst, now)
        };
        if cache.paths.len() >= 4096 {
            cache.paths.retain(|_, k| k.until > now);
        }
        cache.paths.insert(
            dst,
            Known {
                path,
                until: now + FRESH,
            },
        );
        path
    }
}

impl Cache {
    /// Whether the host bars trains now (asked once per [`FRESH`]):
    /// - IPsec: outbound xfrm policies exist. The route a train takes comes from a lookup
    ///   that applies no IPsec policy, so a segment a policy would encrypt could leave in the
    ///   clear. Trains stay off while any policy exists (as `ip xfrm policy count` shows).
    /// - conntrack: the namespace tracks connections (`nf_conntrack_count` above zero)
    ///   and not liberally (`nf_conntrack_tcp_be_liberal` 0). Conntrack sees the raw
    ///   socket's segments (they pass the IP output path) but not the trains', so the peer's
    ///   ACKs for train data would look out of window to it, be marked INVALID, and be
    ///   dropped by the common "drop invalid" rule before the raw socket gets them.
    ///   `RAWTCP_RAW_TRAINS=on` sends trains anyway.
    fn barred(&mut self, now: Instant) -> bool {
        if let Some((barred, until)) = self.barred {
            if until > now {
                return barred;
            }
        }
        let conntrack = !self.forced && strict_conntrack();
        let ipsec = match Rtnl::xfrm().and_then(|mut x| x.ipsec_policies()) {
            Ok(n) => n > 0,
            // No xfrm in this kernel: no policy can exist.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPROTONOSUPPORT) => false,
            Err(e) => {
                tracing::debug!(error = %e, "raw datapath: cannot count IPsec policies; no trains");
                true
            }
        };
        if conntrack || ipsec {
            tracing::debug!(conntrack, ipsec, "raw datapath: trains barred for now");
        }
        self.barred = Some((conntrack || ipsec, now + FRESH));
        conntrack || ipsec
    }

    /// Asks the kernel how `dst` is reached: an Ethernet interface and a resolved next hop.
    fn look_up(&mut self, dst: IpAddr, now: Instant) -> Option<Path> {
        if self.unanswerable {
            return None;
        }
        if self.rtnl.is_none() {
            match Rtnl::new() {
                Ok(r) => self.rtnl = Some(r),
                Err(e) => {
                    tracing::debug!(error = %e, "raw datapath: no route netlink socket");
                    return None;
                }
            }
        }
        let rtnl = self.rtnl.as_mut()?;
        let asked = rtnl.route(dst).and_then(|route| match route {
            Some(Route { ifindex, next_hop }) => {
                Ok(rtnl.neighbour(ifindex, next_hop)?.map(|mac| (ifindex, mac)))
            }
            None => Ok(None),
        });
        let (ifindex, mac) = match asked {
            Ok(found) => found?,
            Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {
                tracing::warn!(error = %e, "raw datapath: the kernel answers no neighbour questions (Linux 5.0 or later needed); no trains");
                self.unanswerable = true;
                return None;
            }
            Err(e) => {
                // A socket that lost its way (a timed-out answer): a new one next time.
                tracing::debug!(error = %e, %dst, "raw datapath: route question failed");
                self.rtnl = None;
                return None;
            }
        };
        if self.links_until.is_none_or(|t| t <= now) {
            self.links = ethernet_links();
            self.links_until = Some(now + FRESH);
        }
        let link = *self.links.get(&ifindex)?;
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&mac);
        macs[6..].copy_from_slice(&link.addr()?);
        Some(Path { link, macs })
    }
}

/// Whether conntrack tracks connections in this network namespace, strictly (see
/// [`Cache::barred`]).
fn strict_conntrack() -> bool {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}"))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    read("nf_conntrack_count").is_some_and(|n| n > 0)
        && read("nf_conntrack_tcp_be_liberal") != Some(1)
}

/// The interfaces trains may leave by, by index: Ethernet ones whose link-layer header is
/// Ethernet's 14 bytes. A VLAN device is left out: on a lower device without VLAN offload
/// its header is 18 bytes, and a packet socket places the IP header after the device's
/// header length, where a 14-byte header would put it 4 bytes off.
fn ethernet_links() -> HashMap<u32, LinkAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return HashMap::new();
    };
    addrs
        .filter_map(|ifa| {
            let link = *ifa.address.as_ref()?.as_link_addr()?;
            let vlan =
                std::fs::read_to_string(format!("/sys/class/net/{}/uevent", ifa.interface_name))
                    .map_or(true, |u| u.lines().any(|l| l == "DEVTYPE=vlan"));
            let ifindex = u32::try_from(link.ifindex()).ok()?;
            (link.hatype() == ARPHRD_ETHER && link.halen() == 6 && !vlan).then_some((ifindex, link))
        })
        .collect()
}
