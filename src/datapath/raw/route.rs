//! The kernel's answers to "where does a packet to this address leave, and to which
//! link-layer address": one `RTM_GETROUTE` (what `ip route get` asks) and one `RTM_GETNEIGH`
//! (what `ip neigh get` asks) over a route netlink socket (Linux `rtnetlink(7)`).
//!
//! The raw datapath asks these to send trains of segments through a packet socket, which
//! needs the outgoing interface and the next hop's hardware address. The messages are a few
//! dozen bytes written and read by hand: a netlink crate would bring an async runtime or a
//! large message model for two requests.

use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Duration;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_MARK: u16 = 16;
const XFRM_MSG_NEWSPDINFO: u16 = 0x24;
const XFRM_MSG_GETSPDINFO: u16 = 0x25;
/// `XFRMA_SPD_INFO`: `struct xfrmu_spdinfo` (in, out, forward policy counts, then the
/// per-socket ones).
const XFRMA_SPD_INFO: u16 = 1;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// `RTN_UNICAST`: a route that leaves through a device (not local, not a blackhole).
const RTN_UNICAST: u8 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// Neighbour states whose hardware address may be used (`REACHABLE`, `STALE`, `DELAY`,
/// `PROBE`, `PERMANENT`; not `INCOMPLETE`, `FAILED` or `NOARP`).
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;
/// Bytes of `struct nlmsghdr`, `struct rtmsg` and `struct ndmsg`.
const NLMSG_HDR: usize = 16;
const RTMSG: usize = 12;
const NDMSG: usize = 12;

/// Where packets to an address leave: the interface and the next hop on it (the gateway,
/// or the address itself when it is on the link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Route {
    pub ifindex: u32,
    pub next_hop: IpAddr,
}

/// A route netlink socket that asks one question at a time.
pub(super) struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// A route netlink socket.
    pub fn new() -> io::Result<Rtnl> {
        Self::with_protocol(nix::libc::NETLINK_ROUTE)
    }

    /// An IPsec (xfrm) netlink socket, for [`ipsec_policies`](Self::ipsec_policies).
    pub fn xfrm() -> io::Result<Rtnl> {
        Self::with_protocol(nix::libc::NETLINK_XFRM)
    }

    fn with_protocol(protocol: i32) -> io::Result<Rtnl> {
        let sock = Socket::new(
            Domain::from(nix::libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(protocol)),
        )?;
        // The kernel answers at once; a bound on the wait keeps a lost answer from stalling
        // the sender that asked.
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; 8192],
        })
    }

    /// The route to `dst` (`None`: no unicast route through a device, a local address say).
    pub fn route(&mut self, dst: IpAddr) -> io::Result<Option<Route>> {
        let (family, bits) = family_of(dst);
        let mut body = [0u8; RTMSG];
        body[0] = family;
        body[1] = bits;
        // The raw socket's packets carry rawtcp's mark, which policy routing may match: ask
        // for the route such a packet takes.
        let mark = super::MARK.to_ne_bytes();
        let answer = self.ask(
            RTM_GETROUTE,
            &body,
            &[(RTA_DST, &octets(dst)), (RTA_MARK, &mark)],
        )?;
        Ok(answer.and_then(|m| parse_route(&m, dst)))
    }

    /// How many outbound IPsec policies the kernel holds (`XFRM_MSG_GETSPDINFO`, as
    /// `ip xfrm policy count` asks), on an xfrm socket ([`xfrm`](Self::xfrm)).
    pub fn ipsec_policies(&mut self) -> io::Result<u32> {
        let answer = self.ask(XFRM_MSG_GETSPDINFO, &0u32.to_ne_bytes(), &[])?;
        Ok(answer.map_or(0, |m| parse_spd_outbound(&m)))
    }

    /// The hardware address of `ip`'s neighbour entry on interface `ifindex`, when the entry
    /// is usable (`None` when there is none, or it is still being resolved or failed).
    pub fn neighbour(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<[u8; 6]>> {
        let (family, _) = family_of(ip);
        let mut body = [0u8; NDMSG];
        body[0] = family;
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        let answer = self.ask(RTM_GETNEIGH, &body, &[(NDA_DST, &octets(ip))])?;
        Ok(answer.and_then(|m| parse_neighbour(&m)))
    }

    /// Sends one request and returns the answer's message (type and payload after the
    /// header), or `None` when the kernel answered with an error such as `ENOENT`.
    fn ask(
        &mut self,
        kind: u16,
        body: &[u8],
        attrs: &[(u16, &[u8])],
    ) -> io::Result<Option<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let msg = request(kind, self.seq, body, attrs);
        self.sock.send(&msg)?;
        loop {
            let n = (&self.sock).read(&mut self.buf)?;
            // One answer per request; anything left from an earlier, timed-out request
            // carries an older sequence number and is skipped.
            for (kind, seq, payload) in messages(&self.buf[..n]) {
                if seq != self.seq {
                    continue;
                }
                if kind == NLMSG_ERROR {
                    let code = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    return match code {
                        0 => Ok(None),
                        c if -c == nix::libc::ENOENT
                            || -c == nix::libc::ENETUNREACH
                            || -c == nix::libc::EHOSTUNREACH =>
                        {
                            Ok(None)
                        }
                        c => Err(io::Error::from_raw_os_error(-c)),
                    };
                }
                return Ok(Some((kind, payload.to_vec())));
            }
        }
    }
}

fn family_of(ip: IpAddr) -> (u8, u8) {
    match ip {
        IpAddr::V4(_) => (AF_INET, 32),
        IpAddr::V6(_) => (AF_INET6, 128),
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A request: header, fixed body, attributes (each padded to 4 bytes).
fn request(kind: u16, seq: u32, body: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; NLMSG_HDR];
    m.extend_from_slice(body);
    for (t, v) in attrs {
        m.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&t.to_ne_bytes());
        m.extend_from_slice(v);
        m.resize(m.len().next_multiple_of(4), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

/// The messages in one datagram: (type, sequence number, payload after the header).
/// Stops at the first whose length does not fit.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDR {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDR || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let payload = &buf[NLMSG_HDR..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, seq, payload))
    })
}

/// The attributes after a fixed body of `skip` bytes: (type, value).
fn attributes(payload: &[u8], skip: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = payload.get(skip..).unwrap_or_default();
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        if len < 4 || len > rest.len() {
            return None;
        }
        // The top bits are the nested and byte-order flags.
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        let value = &rest[4..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        Some((kind, value))
    })
}

fn address(family: u8, v: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => <[u8; 4]>::try_from(v).ok().map(IpAddr::from),
        AF_INET6 => <[u8; 16]>::try_from(v).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A `RTM_NEWROUTE` answer for `dst`: its output interface and gateway, for a unicast route.
fn parse_route((kind, m): &(u16, Vec<u8>), dst: IpAddr) -> Option<Route> {
    if *kind != RTM_NEWROUTE || m.len() < RTMSG || m[7] != RTN_UNICAST {
        return None;
    }
    let family = m[0];
    let (mut ifindex, mut gateway) = (None, None);
    for (t, v) in attributes(m, RTMSG) {
        match t {
            RTA_OIF => ifindex = <[u8; 4]>::try_from(v).ok().map(u32::from_ne_bytes),
            RTA_GATEWAY => gateway = address(family, v),
            _ => {}
        }
    }
    Some(Route {
        ifindex: ifindex?,
        next_hop: gateway.unwrap_or(dst),
    })
}

/// A `XFRM_MSG_NEWSPDINFO` answer (after its 4-byte flags): the outbound policy count.
fn parse_spd_outbound((kind, m): &(u16, Vec<u8>)) -> u32 {
    if *kind != XFRM_MSG_NEWSPDINFO {
        return 0;
    }
    attributes(m, 4)
        .find(|&(t, _)| t == XFRMA_SPD_INFO)
        .and_then(|(_, v)| v.get(4..8))
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// A `RTM_NEWNEIGH` answer: the hardware address, when the entry is usable and Ethernet's.
fn parse_neighbour((kind, m): &(u16, Vec<u8>)) -> Option<[u8; 6]> {
    if *kind != RTM_NEWNEIGH || m.len() < NDMSG {
        return None;
    }
    let state = u16::from_ne_bytes([m[8], m[9]]);
    if state & NUD_USABLE == 0 {
        return None;
    }
    attributes(m, NDMSG)
        .find(|&(t, _)| t == NDA_LLADDR)
        .and_then(|(_, v)| <[u8; 6]>::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(kind: u16, seq: u32, body: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = request(kind, seq, body, attrs);
        m[6..8].copy_from_slice(&0u16.to_ne_bytes());
        m
    }

    #[test]
    fn a_route_answer_gives_interface_and_gateway() {
        let dst: IpAddr = "10.1.2.3".parse().unwrap();
        let mut body = [0u8; RTMSG];
        body[0] = AF_INET;
        body[7] = RTN_UNICAST;
        let gw = [10u8, 1, 2, 254];
        let raw = answer(
            RTM_NEWROUTE,
            7,
            &body,
            &[
                (RTA_DST, &[10, 1, 2, 3]),
                (RTA_OIF, &9u32.to_ne_bytes()),
                (RTA_GATEWAY, &gw),
            ],
        );
        let (kind, seq, payload) = messages(&raw).next().unwrap();
        assert_eq!((kind, seq), (RTM_NEWROUTE, 7));
        let route = parse_route(&(kind, payload.to_vec()), dst).unwrap();
        assert_eq!(route.ifindex, 9);
        assert_eq!(route.next_hop, IpAddr::from(gw));
        // On the link: the address itself is the next hop.
        let raw = answer(RTM_NEWROUTE, 8, &body, &[(RTA_OIF, &2u32.to_ne_bytes())]);
        let (kind, _, payload) = messages(&raw).next().unwrap();
        let route = parse_route(&(kind, payload.to_vec()), dst).unwrap();
        assert_eq!((route.ifindex, route.next_hop), (2, dst));
        // A local route (type 2) is not one to send trains on.
        body[7] = 2;
        let raw = answer(RTM_NEWROUTE, 9, &body, &[(RTA_OIF, &1u32.to_ne_bytes())]);
        let (kind, _, payload) = messages(&raw).next().unwrap();
        assert_eq!(parse_route(&(kind, payload.to_vec()), dst), None);
    }

    #[test]
    fn a_neighbour_answer_is_used_only_when_resolved() {
        let mac = [2u8, 0, 0, 0, 0, 9];
        let entry = |state: u16| {
            let mut body = [0u8; NDMSG];
            body[0] = AF_INET6;
            body[8..10].copy_from_slice(&state.to_ne_bytes());
            let raw = answer(
                RTM_NEWNEIGH,
                1,
                &body,
                &[(NDA_DST, &[0xfd; 16]), (NDA_LLADDR, &mac)],
            );
            let (kind, _, payload) = messages(&raw).next().unwrap();
            parse_neighbour(&(kind, payload.to_vec()))
        };
        assert_eq!(entry(0x02), Some(mac)); // REACHABLE
        assert_eq!(entry(0x04), Some(mac)); // STALE
        assert_eq!(entry(0x01), None); // INCOMPLETE
        assert_eq!(entry(0x20), None); // FAILED
    }

    #[test]
    fn the_outbound_ipsec_policy_count_is_read() {
        let mut info = Vec::new();
        for count in [3u32, 2, 0, 0, 0, 0] {
            info.extend_from_slice(&count.to_ne_bytes());
        }
        let raw = answer(
            XFRM_MSG_NEWSPDINFO,
            4,
            &0u32.to_ne_bytes(),
            &[(XFRMA_SPD_INFO, &info)],
        );
        let (kind, _, payload) = messages(&raw).next().unwrap();
        assert_eq!(parse_spd_outbound(&(kind, payload.to_vec())), 2);
        // Another answer, or one without the attribute: none counted.
        let raw = answer(XFRM_MSG_NEWSPDINFO, 4, &0u32.to_ne_bytes(), &[]);
        let (kind, _, payload) = messages(&raw).next().unwrap();
        assert_eq!(parse_spd_outbound(&(kind, payload.to_vec())), 0);
    }

    #[test]
    fn truncated_answers_are_not_read_past_their_end() {
        let mut body = [0u8; RTMSG];
        body[7] = RTN_UNICAST;
        let mut raw = answer(RTM_NEWROUTE, 1, &body, &[(RTA_OIF, &3u32.to_ne_bytes())]);
        // The header claims more than the datagram holds.
        raw[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(messages(&raw).count(), 0);
        // An attribute that claims more than its message holds ends the attributes.
        let bad = [8u8, 0, 4, 0, 1, 2];
        assert_eq!(attributes(&bad, 0).count(), 0);
    }

    /// The kernel's own answers: loopback's route is local (no trains), and a question
    /// about an address without a neighbour entry gets `None`.
    #[test]
    fn the_kernel_answers_for_loopback() {
        let Ok(mut rtnl) = Rtnl::new() else {
            eprintln!("no route netlink socket here: skipped");
            return;
        };
        assert_eq!(rtnl.route("127.0.0.1".parse().unwrap()).unwrap(), None);
        assert_eq!(
            rtnl.neighbour(1, "127.0.0.9".parse().unwrap())
                .unwrap_or(None),
            None
        );
    }
}
