//! Zero-copy views of an IP packet's addressing, for the datapaths.
//!
//! A datapath routes, filters and classifies packets before the stack parses them: the raw
//! datapath picks a socket by the destination's family, the TUN datapath keeps only packets for
//! its addresses, the UDP datapath picks a carrier address by the TCP ports, the simulated
//! network delivers by destination. [`PacketView`] and [`TcpView`] are the one place those
//! header fields are read. They borrow the packet, copy nothing, verify no checksum (the stack
//! does that when it parses, in [`parse_tcp_packet`](super::parse_tcp_packet)) and never panic
//! on hostile bytes.
//!
//! ```
//! use rawtcp::wire::view::PacketView;
//! use rawtcp::wire::{emit_tcp_packet, TcpFlags, TcpRepr};
//!
//! let tcp = TcpRepr { src_port: 40000, dst_port: 80, seq: 100, flags: TcpFlags::SYN, ..Default::default() };
//! let mut buf = [0u8; 80];
//! let src = "10.0.0.1".parse().unwrap();
//! let dst = "10.0.0.2".parse().unwrap();
//! let n = emit_tcp_packet(src, dst, 64, &tcp, &[], &mut buf).unwrap();
//!
//! let view = PacketView::new(&buf[..n]).unwrap();
//! assert_eq!(view.dst(), dst);
//! let seg = view.tcp().unwrap();
//! assert_eq!((seg.src_port(), seg.dst_port(), seg.seq()), (40000, 80, 100));
//! ```

use super::ip::IPPROTO_TCP;
use super::tcp::{TcpFlags, TCP_HEADER_LEN};
use super::WireError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of an IPv4 header without options (RFC 791 §3.1).
const V4_HEADER: usize = 20;
/// Length of the IPv6 fixed header (RFC 8200 §3).
const V6_HEADER: usize = 40;

/// The addressing of an IPv4 or IPv6 packet, read in place.
///
/// [`new`](PacketView::new) checks only what locating the fields needs: a known version, the
/// fixed header present, and for IPv4 a header length (IHL) between 20 bytes and the buffer's
/// end. The length the header declares may exceed the bytes at hand (a packet cut short by a
/// snap length or an ICMP quote); [`declared_len`](PacketView::declared_len) reports it as
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketView<'a> {
    packet: &'a [u8],
    header_len: usize,
}

impl<'a> PacketView<'a> {
    /// Views `packet`.
    ///
    /// # Errors
    ///
    /// - [`WireError::Truncated`]: empty, or shorter than the fixed header.
    /// - [`WireError::BadVersion`]: neither 4 nor 6.
    /// - [`WireError::BadHeaderLength`]: an IPv4 IHL below 5 or past the buffer.
    pub fn new(packet: &'a [u8]) -> Result<PacketView<'a>, WireError> {
        let first = *packet.first().ok_or(WireError::Truncated)?;
        let header_len = match first >> 4 {
            4 => {
                if packet.len() < V4_HEADER {
                    return Err(WireError::Truncated);
                }
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < V4_HEADER || ihl > packet.len() {
                    return Err(WireError::BadHeaderLength);
                }
                ihl
            }
            6 => {
                if packet.len() < V6_HEADER {
                    return Err(WireError::Truncated);
                }
                V6_HEADER
            }
            _ => return Err(WireError::BadVersion),
        };
        Ok(PacketView { packet, header_len })
    }

    /// The whole packet.
    pub fn bytes(&self) -> &'a [u8] {
        self.packet
    }

    /// Whether this is IPv4 (else IPv6).
    pub fn is_ipv4(&self) -> bool {
        self.byte(0) >> 4 == 4
    }

    /// Length of the IP header: IHL words for IPv4, the 40-byte fixed header for IPv6
    /// (extension headers are not walked; see [`protocol`](PacketView::protocol)).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The source address.
    pub fn src(&self) -> IpAddr {
        if self.is_ipv4() {
            Ipv4Addr::from(self.array::<4>(12)).into()
        } else {
            Ipv6Addr::from(self.array::<16>(8)).into()
        }
    }

    /// The destination address.
    pub fn dst(&self) -> IpAddr {
        if self.is_ipv4() {
            Ipv4Addr::from(self.array::<4>(16)).into()
        } else {
            Ipv6Addr::from(self.array::<16>(24)).into()
        }
    }

    /// The IPv4 protocol, or the IPv6 fixed header's next header: an IPv6 packet with
    /// extension headers answers with the first of them, so it is not taken for TCP here.
    pub fn protocol(&self) -> u8 {
        self.byte(if self.is_ipv4() { 9 } else { 6 })
    }

    /// The packet's length according to its header: IPv4's total length, IPv6's payload
    /// length plus 40. It may exceed [`bytes`](PacketView::bytes)' length.
    pub fn declared_len(&self) -> usize {
        if self.is_ipv4() {
            usize::from(u16::from_be_bytes(self.array::<2>(2)))
        } else {
            V6_HEADER + usize::from(u16::from_be_bytes(self.array::<2>(4)))
        }
    }

    /// Whether this is an IPv4 fragment other than the first (RFC 791 §3.2): it carries no
    /// TCP header.
    pub fn is_later_fragment(&self) -> bool {
        self.is_ipv4() && u16::from_be_bytes(self.array::<2>(6)) & 0x1fff != 0
    }

    /// The bytes after the IP header.
    pub fn payload(&self) -> &'a [u8] {
        self.packet.get(self.header_len..).unwrap_or_default()
    }

    /// The TCP header, when the packet carries TCP, is not a later fragment, declares room
    /// for a TCP header, and has its first 20 bytes at hand.
    pub fn tcp(&self) -> Option<TcpView<'a>> {
        if self.protocol() != IPPROTO_TCP
            || self.is_later_fragment()
            || self.declared_len() < self.header_len + TCP_HEADER_LEN
        {
            return None;
        }
        TcpView::new(self.payload())
    }

    fn byte(&self, at: usize) -> u8 {
        self.packet.get(at).copied().unwrap_or_default()
    }

    /// `N` bytes from `at`; `new` made sure the fixed header is present, so the zeros of the
    /// fallback are never seen.
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        self.packet
            .get(at..)
            .and_then(|b| b.first_chunk::<N>())
            .copied()
            .unwrap_or([0; N])
    }
}

/// The fixed part of a TCP header (RFC 9293 §3.1), read in place; options are not parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpView<'a> {
    header: &'a [u8; TCP_HEADER_LEN],
}

impl<'a> TcpView<'a> {
    /// Views the TCP header at the front of `segment`; `None` if fewer than 20 bytes.
    pub fn new(segment: &'a [u8]) -> Option<TcpView<'a>> {
        segment.first_chunk().map(|header| TcpView { header })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        let [a, b, ..] = *self.header;
        u16::from_be_bytes([a, b])
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        let [_, _, a, b, ..] = *self.header;
        u16::from_be_bytes([a, b])
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        let [_, _, _, _, a, b, c, d, ..] = *self.header;
        u32::from_be_bytes([a, b, c, d])
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        let [_, _, _, _, _, _, _, _, a, b, c, d, ..] = *self.header;
        u32::from_be_bytes([a, b, c, d])
    }

    /// Header length from the data offset, in bytes (not checked against anything).
    pub fn header_len(&self) -> usize {
        let [.., offset, _, _, _, _, _, _, _] = *self.header;
        usize::from(offset >> 4) * 4
    }

    /// The control bits.
    pub fn flags(&self) -> TcpFlags {
        let [.., flags, _, _, _, _, _, _] = *self.header;
        TcpFlags(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{emit_tcp_packet, TcpRepr};

    fn packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 1234,
            dst_port: 80,
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0d,
            flags: TcpFlags(TcpFlags::ACK.0 | TcpFlags::PSH.0),
            ..TcpRepr::default()
        };
        let mut buf = vec![0; 100 + payload.len()];
        let n = emit_tcp_packet(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            64,
            &tcp,
            payload,
            &mut buf,
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn reads_what_emit_wrote_for_both_families() {
        for (src, dst, header) in [("10.0.0.1", "10.0.0.2", 20), ("fd00::1", "fd00::2", 40)] {
            let p = packet(src, dst, b"hello");
            let v = PacketView::new(&p).unwrap();
            assert_eq!(v.is_ipv4(), header == 20);
            assert_eq!(v.src(), src.parse::<IpAddr>().unwrap());
            assert_eq!(v.dst(), dst.parse::<IpAddr>().unwrap());
            assert_eq!(v.header_len(), header);
            assert_eq!(v.declared_len(), p.len());
            assert_eq!(v.protocol(), IPPROTO_TCP);
            let t = v.tcp().unwrap();
            assert_eq!((t.src_port(), t.dst_port()), (1234, 80));
            assert_eq!((t.seq(), t.ack()), (0x0102_0304, 0x0a0b_0c0d));
            assert_eq!(t.header_len(), 20);
            assert!(t.flags().contains(TcpFlags::PSH));
            assert_eq!(&v.payload()[20..], b"hello");
        }
    }

    #[test]
    fn rejects_what_it_cannot_locate_fields_in() {
        assert_eq!(PacketView::new(&[]), Err(WireError::Truncated));
        assert_eq!(PacketView::new(&[0x45; 19]), Err(WireError::Truncated));
        assert_eq!(PacketView::new(&[0x60; 39]), Err(WireError::Truncated));
        assert_eq!(PacketView::new(&[0x55; 40]), Err(WireError::BadVersion));
        let mut p = packet("10.0.0.1", "10.0.0.2", b"");
        p[0] = 0x44; // IHL 4 words
        assert_eq!(PacketView::new(&p), Err(WireError::BadHeaderLength));
        p[0] = 0x4f; // IHL 60 bytes, past the 40 at hand
        assert_eq!(PacketView::new(&p), Err(WireError::BadHeaderLength));
    }

    #[test]
    fn finds_no_tcp_where_there_is_none() {
        let mut p = packet("10.0.0.1", "10.0.0.2", b"x");
        p[9] = 17;
        assert!(PacketView::new(&p).unwrap().tcp().is_none(), "UDP");
        let mut p = packet("10.0.0.1", "10.0.0.2", b"x");
        p[7] = 1; // fragment offset 8
        assert!(
            PacketView::new(&p).unwrap().tcp().is_none(),
            "later fragment"
        );
        let mut p = packet("fd00::1", "fd00::2", b"x");
        p[6] = 0; // hop-by-hop options first
        assert!(
            PacketView::new(&p).unwrap().tcp().is_none(),
            "extension header"
        );
        let p = packet("10.0.0.1", "10.0.0.2", b"");
        assert!(
            PacketView::new(&p[..30]).unwrap().tcp().is_none(),
            "cut short"
        );
        let mut p = packet("10.0.0.1", "10.0.0.2", b"");
        p[3] = 30; // declares a total length too short for TCP
        assert!(
            PacketView::new(&p).unwrap().tcp().is_none(),
            "declared too short"
        );
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte() {
        let base = packet("fd00::1", "fd00::2", b"data");
        let base4 = packet("10.0.0.1", "10.0.0.2", b"data");
        for p in [&base, &base4] {
            for cut in 0..=p.len() {
                for at in 0..cut.min(48) {
                    let mut q = p[..cut].to_vec();
                    q[at] ^= 0xff;
                    if let Ok(v) = PacketView::new(&q) {
                        let _ = (
                            v.src(),
                            v.dst(),
                            v.protocol(),
                            v.declared_len(),
                            v.payload(),
                        );
                        if let Some(t) = v.tcp() {
                            let _ = (t.seq(), t.ack(), t.flags(), t.header_len());
                        }
                    }
                }
            }
        }
    }
}
