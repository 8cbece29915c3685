//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers, as far as a TCP endpoint needs them.
//!
//! This module owns the byte layout of the IP headers that carry TCP: [`Ipv4Repr`] and
//! [`Ipv6Repr`], the family-agnostic [`IpRepr`], and the whole-packet helpers
//! [`parse_tcp_packet`] and [`emit_tcp_packet`]. It does not reassemble fragments, and it emits
//! only atomic datagrams (RFC 6864): IPv4 with DF set and identification 0, IPv6 without
//! extension headers.

use super::checksum;
use super::tcp::{TcpRepr, TCP_HEADER_LEN};
use super::WireError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The protocol number of TCP (IANA "Assigned Internet Protocol Numbers").
pub const IPPROTO_TCP: u8 = 6;

/// IPv6 next-header values (IANA "IPv6 Extension Header Types", RFC 8200 §4).
mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const DESTINATION_OPTIONS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
    pub const EXPERIMENT_1: u8 = 253;
    pub const EXPERIMENT_2: u8 = 254;
}

/// The largest value of a 16-bit length field.
const MAX_LENGTH_FIELD: usize = 0xffff;

/// A parsed IPv4 header (RFC 791 §3.1): the fields a TCP endpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload ([`IPPROTO_TCP`] for TCP).
    pub protocol: u8,
    /// Length of the payload: total length less the header.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Length of the header [`emit`](Ipv4Repr::emit) writes: no options.
    pub const HEADER_LEN: usize = 20;

    /// Parses an IPv4 header, returning it and the payload.
    ///
    /// Options are skipped (the header is IHL words long). Bytes past the total length are
    /// link-layer padding and are left out of the payload. The header checksum is always
    /// verified (RFC 791 §3.1 "Header Checksum").
    ///
    /// # Errors
    ///
    /// - [`WireError::Truncated`]: fewer than 20 bytes.
    /// - [`WireError::BadVersion`]: the version is not 4.
    /// - [`WireError::BadHeaderLength`]: IHL below 5 or past the buffer.
    /// - [`WireError::BadLength`]: total length below the header or past the buffer.
    /// - [`WireError::BadChecksum`]: the header checksum does not verify.
    /// - [`WireError::Fragmented`]: MF set or a non-zero fragment offset (RFC 791 §2.3); this
    ///   stack does not reassemble.
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<(Ipv4Repr, &[u8]), WireError> {
        let first = *packet.first().ok_or(WireError::Truncated)?;
        if first >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let (h, _) = packet
            .split_first_chunk::<{ Ipv4Repr::HEADER_LEN }>()
            .ok_or(WireError::Truncated)?;
        let header_len = usize::from(first & 0x0f) * 4;
        if header_len < Ipv4Repr::HEADER_LEN || header_len > packet.len() {
            return Err(WireError::BadHeaderLength);
        }
        let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if total_len < header_len {
            return Err(WireError::BadLength);
        }
        let payload = packet
            .get(header_len..total_len)
            .ok_or(WireError::BadLength)?;
        let header = packet.get(..header_len).unwrap_or_default();
        if checksum::finish(checksum::sum(header, 0)) != 0 {
            return Err(WireError::BadChecksum);
        }
        let flags_fragment = u16::from_be_bytes([h[6], h[7]]);
        let more_fragments = flags_fragment & 0x2000 != 0;
        let fragment_offset = flags_fragment & 0x1fff;
        if more_fragments || fragment_offset != 0 {
            return Err(WireError::Fragmented);
        }
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
            dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
            protocol: h[9],
            payload_len: payload.len(),
            ttl: h[8],
        };
        Ok((repr, payload))
    }

    /// Writes a 20-byte header into the front of `buf` and returns 20.
    ///
    /// DSCP and ECN are 0, DF is set and the identification is 0, as RFC 6864 §4.1 allows for
    /// atomic datagrams; the total length is 20 + `payload_len` and the checksum is filled in.
    ///
    /// # Errors
    ///
    /// - [`WireError::BadLength`]: the total length exceeds 65535.
    /// - [`WireError::BufferTooSmall`]: `buf` is shorter than 20 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let total_len = Ipv4Repr::HEADER_LEN
            .checked_add(self.payload_len)
            .filter(|&n| n <= MAX_LENGTH_FIELD)
            .ok_or(WireError::BadLength)?;
        let h = buf
            .first_chunk_mut::<{ Ipv4Repr::HEADER_LEN }>()
            .ok_or(WireError::BufferTooSmall)?;
        h[0] = 0x45;
        h[1] = 0;
        // total_len was checked to fit in 16 bits.
        h[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
        h[4..6].copy_from_slice(&[0, 0]);
        h[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        // The header checksum (RFC 791 §3.1) from the fields' values rather than from the
        // bytes just written: reading those back as words would wait for the store buffer
        // to drain (see `TcpRepr::emit_header`). The identification is 0.
        let words = |a: std::net::Ipv4Addr| {
            let o = a.octets();
            u32::from(u16::from_be_bytes([o[0], o[1]]))
                + u32::from(u16::from_be_bytes([o[2], o[3]]))
        };
        let sum = 0x4500
            + total_len as u32
            + 0x4000
            + (u32::from(self.ttl) << 8 | u32::from(self.protocol))
            + words(self.src)
            + words(self.dst);
        h[10..12].copy_from_slice(&checksum::finish(sum).to_be_bytes());
        Ok(Ipv4Repr::HEADER_LEN)
    }
}

/// A parsed IPv6 header (RFC 8200 §3) with its extension headers walked past.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The upper-layer protocol: after [`parse`](Ipv6Repr::parse), the one that follows the
    /// extension headers.
    pub next_header: u8,
    /// Length of the upper-layer data: after [`parse`](Ipv6Repr::parse), the bytes that follow
    /// the extension headers.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = 40;

    /// Parses an IPv6 header and walks its extension headers, returning the repr and the
    /// upper-layer payload.
    ///
    /// Hop-by-Hop Options (0), Routing (43) and Destination Options (60) headers are skipped by
    /// their length field, `(len + 1) * 8` bytes (RFC 8200 §4.3, §4.4, §4.6). Any other value
    /// that is not an extension header ends the walk and becomes `next_header`, including No
    /// Next Header (59), with whatever bytes follow as the payload. Bytes past the payload
    /// length are link-layer padding and are left out.
    ///
    /// # Errors
    ///
    /// - [`WireError::Truncated`]: fewer than 40 bytes, or an extension header running past
    ///   the payload.
    /// - [`WireError::BadVersion`]: the version is not 6.
    /// - [`WireError::BadLength`]: the payload length runs past the buffer.
    /// - [`WireError::UnsupportedExtension`]: a Fragment (44), ESP (50), AH (51), Mobility
    ///   (135), HIP (139), Shim6 (140) or experimental (253, 254) header, which this stack does
    ///   not walk.
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<(Ipv6Repr, &[u8]), WireError> {
        let first = *packet.first().ok_or(WireError::Truncated)?;
        if first >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        let (h, rest) = packet
            .split_first_chunk::<{ Ipv6Repr::HEADER_LEN }>()
            .ok_or(WireError::Truncated)?;
        let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let mut payload = rest.get(..payload_len).ok_or(WireError::BadLength)?;
        let mut next = h[6];
        loop {
            match next {
                next_header::HOP_BY_HOP
                | next_header::ROUTING
                | next_header::DESTINATION_OPTIONS => {
                    let (&following, rest) = payload.split_first().ok_or(WireError::Truncated)?;
                    let words = usize::from(*rest.first().ok_or(WireError::Truncated)?);
                    payload = payload.get((words + 1) * 8..).ok_or(WireError::Truncated)?;
                    next = following;
                }
                next_header::FRAGMENT
                | next_header::ESP
                | next_header::AH
                | next_header::MOBILITY
                | next_header::HIP
                | next_header::SHIM6
                | next_header::EXPERIMENT_1
                | next_header::EXPERIMENT_2 => return Err(WireError::UnsupportedExtension),
                _ => break,
            }
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        let repr = Ipv6Repr {
            src: Ipv6Addr::from(src),
            dst: Ipv6Addr::from(dst),
            next_header: next,
            payload_len: payload.len(),
            hop_limit: h[7],
        };
        Ok((repr, payload))
    }

    /// Writes the 40-byte fixed header into the front of `buf` and returns 40.
    ///
    /// Traffic class and flow label are 0; the payload length is `payload_len` and the next
    /// header `next_header`, with no extension headers.
    ///
    /// # Errors
    ///
    /// - [`WireError::BadLength`]: `payload_len` exceeds 65535 (jumbograms, RFC 2675, are not
    ///   supported).
    /// - [`WireError::BufferTooSmall`]: `buf` is shorter than 40 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| WireError::BadLength)?;
        let h = buf
            .first_chunk_mut::<{ Ipv6Repr::HEADER_LEN }>()
            .ok_or(WireError::BufferTooSmall)?;
        h[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
        h[4..6].copy_from_slice(&payload_len.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        Ok(Ipv6Repr::HEADER_LEN)
    }
}

/// An IPv4 or IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpRepr {
    /// IPv4.
    V4(Ipv4Repr),
    /// IPv6.
    V6(Ipv6Repr),
}

impl IpRepr {
    /// A header for `payload_len` bytes of `protocol` from `src` to `dst`.
    ///
    /// # Errors
    ///
    /// [`WireError::BadVersion`] when `src` and `dst` are of different families.
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        payload_len: usize,
        hop_limit: u8,
    ) -> Result<IpRepr, WireError> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Ok(IpRepr::V4(Ipv4Repr {
                src,
                dst,
                protocol,
                payload_len,
                ttl: hop_limit,
            })),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ok(IpRepr::V6(Ipv6Repr {
                src,
                dst,
                next_header: protocol,
                payload_len,
                hop_limit,
            })),
            _ => Err(WireError::BadVersion),
        }
    }

    /// Parses an IPv4 or IPv6 packet, chosen by the version nibble; see [`Ipv4Repr::parse`]
    /// and [`Ipv6Repr::parse`].
    ///
    /// # Errors
    ///
    /// [`WireError::Truncated`] for an empty buffer, [`WireError::BadVersion`] for a version
    /// other than 4 or 6, and those of the family's own parser.
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<(IpRepr, &[u8]), WireError> {
        let first = *packet.first().ok_or(WireError::Truncated)?;
        match first >> 4 {
            4 => Ipv4Repr::parse(packet).map(|(r, p)| (IpRepr::V4(r), p)),
            6 => Ipv6Repr::parse(packet).map(|(r, p)| (IpRepr::V6(r), p)),
            _ => Err(WireError::BadVersion),
        }
    }

    /// Writes the header into the front of `buf` and returns its length; see
    /// [`Ipv4Repr::emit`] and [`Ipv6Repr::emit`].
    ///
    /// # Errors
    ///
    /// [`WireError::BadLength`] when the payload is too long for the length field,
    /// [`WireError::BufferTooSmall`] when `buf` cannot hold the header.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        match self {
            IpRepr::V4(r) => r.emit(buf),
            IpRepr::V6(r) => r.emit(buf),
        }
    }

    /// Source address.
    pub fn src_addr(&self) -> IpAddr {
        match self {
            IpRepr::V4(r) => IpAddr::V4(r.src),
            IpRepr::V6(r) => IpAddr::V6(r.src),
        }
    }

    /// Destination address.
    pub fn dst_addr(&self) -> IpAddr {
        match self {
            IpRepr::V4(r) => IpAddr::V4(r.dst),
            IpRepr::V6(r) => IpAddr::V6(r.dst),
        }
    }

    /// Upper-layer protocol: IPv4 protocol or IPv6 (final) next header.
    pub fn protocol(&self) -> u8 {
        match self {
            IpRepr::V4(r) => r.protocol,
            IpRepr::V6(r) => r.next_header,
        }
    }

    /// Length of the upper-layer payload.
    pub fn payload_len(&self) -> usize {
        match self {
            IpRepr::V4(r) => r.payload_len,
            IpRepr::V6(r) => r.payload_len,
        }
    }

    /// Length of the header [`emit`](IpRepr::emit) writes: 20 or 40.
    #[inline]
    pub fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => Ipv4Repr::HEADER_LEN,
            IpRepr::V6(_) => Ipv6Repr::HEADER_LEN,
        }
    }

    /// IPv4 time to live or IPv6 hop limit.
    pub fn hop_limit(&self) -> u8 {
        match self {
            IpRepr::V4(r) => r.ttl,
            IpRepr::V6(r) => r.hop_limit,
        }
    }
}

/// Parses an IP packet carrying TCP: the IP header, the TCP header and the TCP payload.
///
/// The TCP checksum is verified against the packet's own addresses when `verify_checksum` is
/// set; the IPv4 header checksum always is.
///
/// # Errors
///
/// Those of [`IpRepr::parse`], [`WireError::NotTcp`] when the (final) protocol is not TCP,
/// and those of [`TcpRepr::parse`].
#[inline]
pub fn parse_tcp_packet(
    packet: &[u8],
    verify_checksum: bool,
) -> Result<(IpRepr, TcpRepr, &[u8]), WireError> {
    let (ip, segment) = IpRepr::parse(packet)?;
    if ip.protocol() != IPPROTO_TCP {
        return Err(WireError::NotTcp);
    }
    let (tcp, payload) = TcpRepr::parse(segment, ip.src_addr(), ip.dst_addr(), verify_checksum)?;
    Ok((ip, tcp, payload))
}

/// Completes a TCP checksum that the sending host left *partial*, and reports whether it did.
///
/// A kernel that offloads checksumming (`CHECKSUM_PARTIAL`: veth pairs, loopback, bridges)
/// sends segments whose checksum field holds only the folded pseudo-header sum, expecting
/// hardware to finish it; raw sockets on the same host see them that way. Such a segment —
/// and no other, but for a 1 in 65536 chance — has a checksum field equal to the folded
/// pseudo-header sum; this function then writes the real checksum. Anything else (a valid
/// checksum, a corrupt segment, a packet that does not parse) is left as it is.
pub fn complete_partial_checksum(packet: &mut [u8]) -> bool {
    let Ok((ip, segment)) = IpRepr::parse(packet) else {
        return false;
    };
    if ip.protocol() != IPPROTO_TCP || segment.len() < TCP_HEADER_LEN {
        return false;
    }
    let seg_len = segment.len();
    let offset = packet.len() - seg_len;
    let pseudo = checksum::pseudo_header(ip.src_addr(), ip.dst_addr(), IPPROTO_TCP, seg_len as u32);
    let Some(&[hi, lo]) = packet.get(offset + 16..offset + 18) else {
        return false;
    };
    let stored = u16::from_be_bytes([hi, lo]);
    let partial = checksum::fold(pseudo);
    if stored != partial && !(stored == 0 && partial == 0xffff) {
        return false;
    }
    let Some(seg) = packet.get_mut(offset..) else {
        return false;
    };
    if let Some(f) = seg.get_mut(16..18) {
        f.copy_from_slice(&[0, 0]);
    }
    let full = checksum::finish(checksum::sum(seg, pseudo));
    if let Some(f) = seg.get_mut(16..18) {
        f.copy_from_slice(&full.to_be_bytes());
    }
    true
}

/// Writes a whole IP packet carrying `tcp` and `payload` from `src` to `dst` into the front of
/// `buf` and returns its length.
///
/// The IP header is that of [`IpRepr::new`] and [`IpRepr::emit`]; the segment is that of
/// [`TcpRepr::emit`].
///
/// # Errors
///
/// - [`WireError::BadVersion`]: `src` and `dst` are of different families.
/// - [`WireError::BufferTooSmall`]: `buf` cannot hold the packet.
/// - [`WireError::BadLength`]: the packet is too long for the IP length field.
pub fn emit_tcp_packet(
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    tcp: &TcpRepr,
    payload: &[u8],
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let segment_len = tcp.header_len() + payload.len();
    let ip = IpRepr::new(src, dst, IPPROTO_TCP, segment_len, hop_limit)?;
    let header_len = ip.header_len();
    let total = header_len + segment_len;
    let packet = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
    ip.emit(packet)?;
    let segment = packet
        .get_mut(header_len..)
        .ok_or(WireError::BufferTooSmall)?;
    tcp.emit(segment, payload, src, dst)?;
    Ok(total)
}

/// Writes the IP and TCP headers in front of a payload that is already in place, with no copy
/// of the payload: `packet` holds exactly IP header + TCP header + payload, the payload at
/// its end. Returns `packet.len()`.
///
/// # Errors
///
/// As [`emit_tcp_packet`]; [`WireError::BufferTooSmall`] when `packet` cannot even hold the
/// two headers.
pub fn emit_tcp_headers_in_place(
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    tcp: &TcpRepr,
    packet: &mut [u8],
) -> Result<usize, WireError> {
    let ip_len = match src {
        IpAddr::V4(_) => Ipv4Repr::HEADER_LEN,
        IpAddr::V6(_) => Ipv6Repr::HEADER_LEN,
    };
    let segment_len = packet
        .len()
        .checked_sub(ip_len)
        .filter(|n| *n >= tcp.header_len())
        .ok_or(WireError::BufferTooSmall)?;
    let ip = IpRepr::new(src, dst, IPPROTO_TCP, segment_len, hop_limit)?;
    ip.emit(packet)?;
    let segment = packet.get_mut(ip_len..).ok_or(WireError::BufferTooSmall)?;
    tcp.emit_header(segment, src, dst)?;
    Ok(packet.len())
}

/// [`emit_tcp_headers_in_place`] for a packet whose payload lies elsewhere: `headers` is
/// exactly the IP and TCP headers, and the payload is `payload`'s pieces in order, which the
/// IP length and the TCP checksum cover. For a datapath that sends a packet from several
/// places. Returns the headers' length.
///
/// # Errors
///
/// [`WireError::BufferTooSmall`] when `headers` is not the headers' size,
/// [`WireError::BadLength`] when the packet would be too long for its IP header.
pub fn emit_tcp_headers_for(
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    tcp: &TcpRepr,
    headers: &mut [u8],
    payload: &[&[u8]],
) -> Result<usize, WireError> {
    let payload_len: usize = payload.iter().map(|p| p.len()).sum();
    let sum = checksum::fold(checksum::sum_parts(payload.iter().copied(), 0));
    emit_tcp_headers_summed(src, dst, hop_limit, tcp, headers, (payload_len, sum))
}

/// [`emit_tcp_headers_for`] with the payload's length and RFC 1071 sum (folded) given
/// instead of its bytes.
///
/// # Errors
///
/// As [`emit_tcp_headers_for`].
pub fn emit_tcp_headers_summed(
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    tcp: &TcpRepr,
    headers: &mut [u8],
    (payload_len, payload_sum): (usize, u16),
) -> Result<usize, WireError> {
    let ip_len = match src {
        IpAddr::V4(_) => Ipv4Repr::HEADER_LEN,
        IpAddr::V6(_) => Ipv6Repr::HEADER_LEN,
    };
    if headers.len() != ip_len + tcp.header_len() {
        return Err(WireError::BufferTooSmall);
    }
    let segment_len = tcp.header_len() + payload_len;
    let length = u32::try_from(segment_len).map_err(|_| WireError::BadLength)?;
    let ip = IpRepr::new(src, dst, IPPROTO_TCP, segment_len, hop_limit)?;
    ip.emit(headers)?;
    let pseudo = checksum::pseudo_header(src, dst, IPPROTO_TCP, length);
    let payload_sum = pseudo + u32::from(payload_sum);
    let segment = headers.get_mut(ip_len..).ok_or(WireError::BufferTooSmall)?;
    tcp.emit_header_summed(segment, payload_sum)?;
    Ok(headers.len())
}

/// [`emit_tcp_headers_summed`] with the TCP checksum left *partial*: the field holds the
/// folded pseudo-header sum only, as a kernel that offloads checksumming leaves it
/// (`CHECKSUM_PARTIAL`), and the payload is not read. For a connection whose peer agreed that
/// its carrier guarantees integrity ([`TcpOptions::partial_checksums`](crate::wire::TcpOptions::partial_checksums)); any receiver that
/// must verify completes it with [`complete_partial_checksum`], and capture tools show it as
/// they show offloaded segments.
///
/// # Errors
///
/// As [`emit_tcp_headers_for`].
pub fn emit_tcp_headers_partial(
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    tcp: &TcpRepr,
    headers: &mut [u8],
    payload_len: usize,
) -> Result<usize, WireError> {
    let n = emit_tcp_headers_summed(src, dst, hop_limit, tcp, headers, (payload_len, 0))?;
    let ip_len = n - tcp.header_len();
    let length = u32::try_from(tcp.header_len() + payload_len).map_err(|_| WireError::BadLength)?;
    let partial = checksum::fold(checksum::pseudo_header(src, dst, IPPROTO_TCP, length));
    headers
        .get_mut(ip_len + 16..ip_len + 18)
        .ok_or(WireError::BufferTooSmall)?
        .copy_from_slice(&partial.to_be_bytes());
    Ok(n)
}

/// Sets the traffic class of an IP packet already written: the IPv4 type-of-service byte
/// (DSCP and ECN, RFC 2474 §3 and RFC 3168 §5), whose header checksum is then recomputed,
/// or the IPv6 traffic class (RFC 8200 §7). The headers [`emit_tcp_packet`] and
/// [`emit_tcp_headers_in_place`] write carry 0; a sender with a class of its own (`IP_TOS`,
/// `IPV6_TCLASS`) sets it afterwards.
///
/// # Errors
///
/// [`WireError::BadVersion`] when the packet is neither IPv4 nor IPv6,
/// [`WireError::Truncated`] or [`WireError::BadHeaderLength`] when the header is not all
/// there.
///
/// ```
/// use rawtcp::wire::{emit_tcp_packet, ip, TcpRepr};
/// let (src, dst) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
/// let mut buf = [0u8; 64];
/// let n = emit_tcp_packet(src, dst, 64, &TcpRepr::default(), b"", &mut buf).unwrap();
/// ip::set_traffic_class(&mut buf[..n], 0xb8).unwrap(); // DSCP EF
/// assert_eq!(ip::traffic_class(&buf[..n]), Some(0xb8));
/// assert!(rawtcp::wire::parse_tcp_packet(&buf[..n], true).is_ok()); // checksum still right
/// ```
pub fn set_traffic_class(packet: &mut [u8], class: u8) -> Result<(), WireError> {
    let first = *packet.first().ok_or(WireError::Truncated)?;
    match first >> 4 {
        4 => {
            let header_len = usize::from(first & 0x0f) * 4;
            if header_len < Ipv4Repr::HEADER_LEN {
                return Err(WireError::BadHeaderLength);
            }
            let h = packet
                .get_mut(..header_len)
                .ok_or(WireError::BadHeaderLength)?;
            if let Some(b) = h.get_mut(1) {
                *b = class;
            }
            refill_ipv4_checksum(h);
            Ok(())
        }
        6 => {
            let h = packet
                .get_mut(..Ipv6Repr::HEADER_LEN)
                .ok_or(WireError::Truncated)?;
            if let [b0, b1, ..] = h {
                *b0 = 0x60 | (class >> 4);
                *b1 = (class << 4) | (*b1 & 0x0f);
            }
            Ok(())
        }
        _ => Err(WireError::BadVersion),
    }
}

/// Recomputes an IPv4 header's checksum (RFC 791 §3.1) in place after an edit; `header` is
/// the whole header, options included. One shorter than 20 bytes is left as it is.
pub(crate) fn refill_ipv4_checksum(header: &mut [u8]) {
    let Some(field) = header.get_mut(10..12) else {
        return;
    };
    field.copy_from_slice(&[0, 0]);
    let sum = checksum::finish(checksum::sum(header, 0));
    if let Some(field) = header.get_mut(10..12) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
}

/// The traffic class of an IP packet: the IPv4 type-of-service byte or the IPv6 traffic
/// class; `None` when it is neither IPv4 nor IPv6 or too short to tell.
pub fn traffic_class(packet: &[u8]) -> Option<u8> {
    match packet {
        [b0, b1, ..] if b0 >> 4 == 4 => Some(*b1),
        [b0, b1, ..] if b0 >> 4 == 6 => Some((b0 << 4) | (b1 >> 4)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::tests::{arb_addr_pair, arb_tcp_repr};
    use crate::wire::tcp::{TcpFlags, TcpOptions};

    proptest::proptest! {
        /// Headers written for a payload in pieces are the headers of the same packet
        /// written whole.
        #[test]
        fn headers_for_a_payload_elsewhere_match_the_whole_packet(
            (src, dst) in arb_addr_pair(),
            repr in arb_tcp_repr(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            cut in 0usize..3000,
        ) {
            let mut whole = vec![0u8; 60 + 40 + payload.len()];
            let n = emit_tcp_packet(src, dst, 64, &repr, &payload, &mut whole).unwrap();
            let ip_len = if src.is_ipv4() { 20 } else { 40 };
            let head_len = ip_len + repr.header_len();
            let mut head = vec![0u8; head_len];
            let cut = cut.min(payload.len());
            let parts = [&payload[..cut], &payload[cut..]];
            let m = emit_tcp_headers_for(src, dst, 64, &repr, &mut head, &parts).unwrap();
            proptest::prop_assert_eq!(m, head_len);
            proptest::prop_assert_eq!(&head[..], &whole[..head_len]);
            proptest::prop_assert_eq!(n, head_len + payload.len());
        }
    }
    use proptest::prelude::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn traffic_class_round_trips_and_keeps_the_checksum() {
        let tcp = TcpRepr::default();
        for (src, dst) in [
            (v4(10, 0, 0, 1), v4(10, 0, 0, 2)),
            (v6("fd00::1"), v6("fd00::2")),
        ] {
            let mut buf = [0u8; 128];
            let n = emit_tcp_packet(src, dst, 64, &tcp, b"abc", &mut buf).unwrap();
            assert_eq!(traffic_class(&buf[..n]), Some(0));
            for class in [0xb8, 0x01, 0xff, 0x00] {
                set_traffic_class(&mut buf[..n], class).unwrap();
                assert_eq!(traffic_class(&buf[..n]), Some(class));
                let (ip, parsed, payload) = parse_tcp_packet(&buf[..n], true).unwrap();
                assert_eq!(
                    (ip.src_addr(), ip.dst_addr(), payload),
                    (src, dst, &b"abc"[..])
                );
                assert_eq!(parsed.seq, tcp.seq);
            }
        }
        // The IPv6 flow label is kept.
        let mut buf = [0u8; 128];
        let n = emit_tcp_packet(v6("::1"), v6("::2"), 64, &tcp, b"", &mut buf).unwrap();
        buf[1] |= 0x0a;
        buf[2] = 0xbc;
        set_traffic_class(&mut buf[..n], 0x5d).unwrap();
        assert_eq!(&buf[..3], &[0x65, 0xda, 0xbc]);
        assert_eq!(set_traffic_class(&mut [], 1), Err(WireError::Truncated));
        assert_eq!(
            set_traffic_class(&mut [0x45, 0], 1),
            Err(WireError::BadHeaderLength)
        );
        assert_eq!(
            set_traffic_class(&mut [0x60, 0], 1),
            Err(WireError::Truncated)
        );
        assert_eq!(
            set_traffic_class(&mut [0x75, 0], 1),
            Err(WireError::BadVersion)
        );
        assert_eq!(traffic_class(&[0x45]), None);
    }

    /// A valid 20-byte IPv4 header for `payload_len` bytes of `protocol`, checksum filled.
    fn ipv4_header(protocol: u8, payload_len: usize) -> Vec<u8> {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
            protocol,
            payload_len,
            ttl: 64,
        };
        let mut buf = vec![0u8; 20];
        repr.emit(&mut buf).unwrap();
        buf
    }

    /// A 40-byte IPv6 header with the given next header and payload length.
    fn ipv6_header(next_header: u8, payload_len: u16) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&payload_len.to_be_bytes());
        h[6] = next_header;
        h[7] = 64;
        h
    }

    #[test]
    fn ipv4_checksum_known_answer() {
        // A UDP datagram from 192.168.0.1 to 192.168.0.199, header checksum 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum::finish(checksum::sum(&zeroed, 0)), 0xb861);

        let mut packet = header.to_vec();
        packet.resize(0x73, 0);
        let (repr, payload) = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src: Ipv4Addr::new(192, 168, 0, 1),
                dst: Ipv4Addr::new(192, 168, 0, 199),
                protocol: 17,
                payload_len: 0x73 - 20,
                ttl: 64,
            }
        );
        assert_eq!(payload.len(), 0x73 - 20);

        // emit writes the same header: DF, identification 0.
        let mut out = [0u8; 20];
        assert_eq!(repr.emit(&mut out), Ok(20));
        assert_eq!(out, header);
    }

    #[test]
    fn ipv4_emit_known_answer() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IPPROTO_TCP,
            payload_len: 40,
            ttl: 64,
        };
        let mut out = [0u8; 20];
        repr.emit(&mut out).unwrap();
        assert_eq!(
            out,
            [
                0x45, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x26, 0xba, 0x0a, 0x00,
                0x00, 0x01, 0x0a, 0x00, 0x00, 0x02
            ]
        );
    }

    #[test]
    fn ipv6_with_hop_by_hop_known_answer() {
        let packet: Vec<u8> = [
            // Fixed header: payload length 34, next header Hop-by-Hop, hop limit 64.
            &[0x60, 0, 0, 0, 0x00, 0x22, 0x00, 0x40][..],
            &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            // Hop-by-Hop: next header TCP, length 0 (8 bytes), PadN of 4.
            &[6, 0, 1, 4, 0, 0, 0, 0],
            // SYN+ACK 80 -> 41668, MSS 1440, checksum 0x8e34, then "hi".
            &[
                0x00, 0x50, 0xa2, 0xc4, 0x00, 0x00, 0x0b, 0xb8, 0x3b, 0x1a, 0x5c, 0x2f,
            ],
            &[
                0x60, 0x12, 0xff, 0xff, 0x8e, 0x34, 0x00, 0x00, 0x02, 0x04, 0x05, 0xa0,
            ],
            b"hi",
        ]
        .concat();
        let (ip, tcp, payload) = parse_tcp_packet(&packet, true).unwrap();
        assert_eq!(
            ip,
            IpRepr::V6(Ipv6Repr {
                src: "2001:db8::1".parse().unwrap(),
                dst: "2001:db8::2".parse().unwrap(),
                next_header: IPPROTO_TCP,
                payload_len: 26,
                hop_limit: 64,
            })
        );
        assert_eq!(
            tcp,
            TcpRepr {
                src_port: 80,
                dst_port: 41668,
                seq: 3000,
                ack: 0x3b1a_5c2f,
                flags: TcpFlags::SYN | TcpFlags::ACK,
                window: 0xffff,
                urgent: 0,
                options: TcpOptions {
                    mss: Some(1440),
                    ..Default::default()
                },
            }
        );
        assert_eq!(payload, b"hi");
        assert_eq!(ip.header_len(), 40);
        assert_eq!(ip.protocol(), IPPROTO_TCP);
        assert_eq!(ip.hop_limit(), 64);
    }

    #[test]
    fn ipv6_walks_routing_and_destination_options() {
        // Destination Options (16 bytes) -> Routing (8 bytes) -> protocol 17.
        let mut packet = ipv6_header(60, 24 + 3);
        packet.extend_from_slice(&[43, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(b"udp");
        let (repr, payload) = Ipv6Repr::parse(&packet).unwrap();
        assert_eq!(repr.next_header, 17);
        assert_eq!(repr.payload_len, 3);
        assert_eq!(payload, b"udp");
        assert_eq!(parse_tcp_packet(&packet, true), Err(WireError::NotTcp));
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let (src, dst) = (v4(10, 0, 0, 1), v4(10, 0, 0, 2));
        let tcp = TcpRepr {
            flags: TcpFlags::ACK,
            ..Default::default()
        };
        let mut buf = [0u8; 100];
        let n = emit_tcp_packet(src, dst, 64, &tcp, b"abc", &mut buf).unwrap();
        // Ethernet pads short frames with zeros; the payload stops at the total length.
        let (_, parsed, payload) = parse_tcp_packet(&buf[..n + 7], true).unwrap();
        assert_eq!(parsed, tcp);
        assert_eq!(payload, b"abc");

        let (src, dst) = (v6("fe80::1"), v6("fe80::2"));
        let n = emit_tcp_packet(src, dst, 64, &tcp, b"abc", &mut buf).unwrap();
        let (_, _, payload) = parse_tcp_packet(&buf[..n + 5], true).unwrap();
        assert_eq!(payload, b"abc");
    }

    #[test]
    fn ipv4_options_are_skipped() {
        // IHL 6: one word of options (NOP NOP NOP END).
        let mut packet = ipv4_header(IPPROTO_TCP, 4);
        packet[0] = 0x46;
        packet[3] += 4;
        packet.splice(20..20, [1, 1, 1, 0]);
        refill_ipv4_checksum(&mut packet[..24]);
        packet.extend_from_slice(b"data");
        let (repr, payload) = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(repr.payload_len, 4);
        assert_eq!(payload, b"data");
    }

    #[test]
    fn ip_repr_accessors() {
        let ip = IpRepr::new(v4(1, 2, 3, 4), v4(5, 6, 7, 8), 17, 100, 32).unwrap();
        assert_eq!(ip.src_addr(), v4(1, 2, 3, 4));
        assert_eq!(ip.dst_addr(), v4(5, 6, 7, 8));
        assert_eq!(ip.protocol(), 17);
        assert_eq!(ip.payload_len(), 100);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.hop_limit(), 32);
        let ip = IpRepr::new(v6("::1"), v6("::2"), 6, 7, 255).unwrap();
        assert_eq!(ip.src_addr(), v6("::1"));
        assert_eq!(ip.dst_addr(), v6("::2"));
        assert_eq!(ip.protocol(), 6);
        assert_eq!(ip.payload_len(), 7);
        assert_eq!(ip.header_len(), 40);
        assert_eq!(ip.hop_limit(), 255);
    }

    #[test]
    fn error_truncated() {
        assert_eq!(IpRepr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(Ipv4Repr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(Ipv6Repr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(
            Ipv4Repr::parse(&ipv4_header(6, 0)[..19]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Ipv6Repr::parse(&ipv6_header(6, 0)[..39]),
            Err(WireError::Truncated)
        );
        // A Hop-by-Hop header claiming 16 bytes with only 8 in the payload.
        let mut packet = ipv6_header(0, 8);
        packet.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ipv6Repr::parse(&packet), Err(WireError::Truncated));
        // A Routing header with no room for its first two bytes.
        let mut packet = ipv6_header(43, 1);
        packet.push(6);
        assert_eq!(Ipv6Repr::parse(&packet), Err(WireError::Truncated));
        // TCP too short inside a valid IP packet.
        let mut packet = ipv4_header(IPPROTO_TCP, 10);
        packet.extend_from_slice(&[0; 10]);
        assert_eq!(parse_tcp_packet(&packet, false), Err(WireError::Truncated));
    }

    #[test]
    fn error_bad_version() {
        assert_eq!(IpRepr::parse(&[0x50; 40]), Err(WireError::BadVersion));
        assert_eq!(IpRepr::parse(&[0x00]), Err(WireError::BadVersion));
        assert_eq!(
            Ipv4Repr::parse(&ipv6_header(6, 0)),
            Err(WireError::BadVersion)
        );
        assert_eq!(
            Ipv6Repr::parse(&ipv4_header(6, 20)),
            Err(WireError::BadVersion)
        );
        assert_eq!(
            IpRepr::new(v4(1, 1, 1, 1), v6("::1"), 6, 0, 64),
            Err(WireError::BadVersion)
        );
        let mut buf = [0u8; 100];
        assert_eq!(
            emit_tcp_packet(
                v6("::1"),
                v4(1, 1, 1, 1),
                64,
                &TcpRepr::default(),
                &[],
                &mut buf
            ),
            Err(WireError::BadVersion)
        );
    }

    #[test]
    fn error_bad_header_length() {
        let mut packet = ipv4_header(6, 0);
        packet[0] = 0x44;
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::BadHeaderLength));
        // IHL 15 is 60 bytes, past a 20-byte buffer.
        packet[0] = 0x4f;
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::BadHeaderLength));
    }

    #[test]
    fn error_bad_length() {
        // Total length 19, below the header.
        let mut packet = ipv4_header(6, 0);
        packet[2..4].copy_from_slice(&19u16.to_be_bytes());
        refill_ipv4_checksum(&mut packet);
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::BadLength));
        // Total length past the buffer.
        let packet = ipv4_header(6, 1);
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::BadLength));
        // IPv6 payload length past the buffer.
        assert_eq!(
            Ipv6Repr::parse(&ipv6_header(6, 1)),
            Err(WireError::BadLength)
        );
        // Emitting more than a length field can hold.
        let mut buf = [0u8; 40];
        let ip = IpRepr::new(v4(1, 1, 1, 1), v4(2, 2, 2, 2), 6, 65_516, 64).unwrap();
        assert_eq!(ip.emit(&mut buf), Err(WireError::BadLength));
        let ip = IpRepr::new(v4(1, 1, 1, 1), v4(2, 2, 2, 2), 6, 65_515, 64).unwrap();
        assert_eq!(ip.emit(&mut buf), Ok(20));
        let ip = IpRepr::new(v6("::1"), v6("::2"), 6, 65_536, 64).unwrap();
        assert_eq!(ip.emit(&mut buf), Err(WireError::BadLength));
        let ip = IpRepr::new(v6("::1"), v6("::2"), 6, usize::MAX, 64).unwrap();
        assert_eq!(ip.emit(&mut buf), Err(WireError::BadLength));
        let ip = IpRepr::new(v4(1, 1, 1, 1), v4(2, 2, 2, 2), 6, usize::MAX, 64).unwrap();
        assert_eq!(ip.emit(&mut buf), Err(WireError::BadLength));
        let mut big = vec![0u8; 70_000];
        let payload = vec![0u8; 65_536];
        assert_eq!(
            emit_tcp_packet(
                v6("::1"),
                v6("::2"),
                64,
                &TcpRepr::default(),
                &payload,
                &mut big
            ),
            Err(WireError::BadLength)
        );
    }

    #[test]
    fn error_bad_checksum() {
        let mut packet = ipv4_header(6, 0);
        packet[8] ^= 0x01;
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::BadChecksum));
        // A bad TCP checksum through the whole-packet parser.
        let mut buf = [0u8; 100];
        let (src, dst) = (v6("::1"), v6("::2"));
        let n = emit_tcp_packet(src, dst, 64, &TcpRepr::default(), b"x", &mut buf).unwrap();
        buf[n - 1] ^= 0x80;
        assert_eq!(
            parse_tcp_packet(&buf[..n], true),
            Err(WireError::BadChecksum)
        );
        assert!(parse_tcp_packet(&buf[..n], false).is_ok());
    }

    #[test]
    fn error_not_tcp() {
        let mut packet = ipv4_header(17, 8);
        packet.extend_from_slice(&[0; 8]);
        assert_eq!(parse_tcp_packet(&packet, true), Err(WireError::NotTcp));
        // No Next Header after a Hop-by-Hop header.
        let mut packet = ipv6_header(0, 8);
        packet.extend_from_slice(&[59, 0, 1, 4, 0, 0, 0, 0]);
        let (repr, payload) = Ipv6Repr::parse(&packet).unwrap();
        assert_eq!((repr.next_header, payload.len()), (59, 0));
        assert_eq!(parse_tcp_packet(&packet, true), Err(WireError::NotTcp));
    }

    #[test]
    fn error_fragmented() {
        // More fragments.
        let mut packet = ipv4_header(6, 0);
        packet[6] |= 0x20;
        refill_ipv4_checksum(&mut packet);
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Fragmented));
        // Last fragment: offset non-zero.
        let mut packet = ipv4_header(6, 0);
        packet[6..8].copy_from_slice(&0x4001u16.to_be_bytes());
        refill_ipv4_checksum(&mut packet);
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Fragmented));
        assert_eq!(parse_tcp_packet(&packet, true), Err(WireError::Fragmented));
    }

    #[test]
    fn error_unsupported_extension() {
        for next in [44, 50, 51, 135, 139, 140, 253, 254] {
            let mut packet = ipv6_header(next, 8);
            packet.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(
                Ipv6Repr::parse(&packet),
                Err(WireError::UnsupportedExtension)
            );
            assert_eq!(
                parse_tcp_packet(&packet, true),
                Err(WireError::UnsupportedExtension)
            );
        }
        // Behind a header that is walked.
        let mut packet = ipv6_header(0, 16);
        packet.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0, 6, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Repr::parse(&packet),
            Err(WireError::UnsupportedExtension)
        );
    }

    #[test]
    fn error_buffer_too_small() {
        let ip = IpRepr::new(v4(1, 1, 1, 1), v4(2, 2, 2, 2), 6, 0, 64).unwrap();
        assert_eq!(ip.emit(&mut [0u8; 19]), Err(WireError::BufferTooSmall));
        let ip = IpRepr::new(v6("::1"), v6("::2"), 6, 0, 64).unwrap();
        assert_eq!(ip.emit(&mut [0u8; 39]), Err(WireError::BufferTooSmall));
        let tcp = TcpRepr::default();
        let mut buf = [0u8; 62];
        assert_eq!(
            emit_tcp_packet(v6("::1"), v6("::2"), 64, &tcp, b"abc", &mut buf),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(
            emit_tcp_packet(v6("::1"), v6("::2"), 64, &tcp, b"ab", &mut buf),
            Ok(62)
        );
    }

    fn arb_ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0usize..=65_515,
            any::<u8>(),
        )
            .prop_map(|(src, dst, protocol, payload_len, ttl)| Ipv4Repr {
                src: src.into(),
                dst: dst.into(),
                protocol,
                payload_len,
                ttl,
            })
    }

    fn arb_ipv6_repr() -> impl Strategy<Value = Ipv6Repr> {
        let extension = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>().prop_filter("an extension header", move |n| !extension.contains(n)),
            0usize..=65_535,
            any::<u8>(),
        )
            .prop_map(|(src, dst, next_header, payload_len, hop_limit)| Ipv6Repr {
                src: src.into(),
                dst: dst.into(),
                next_header,
                payload_len,
                hop_limit,
            })
    }

    proptest! {
        #[test]
        fn ipv4_roundtrip(repr in arb_ipv4_repr()) {
            let mut buf = vec![0u8; 20 + repr.payload_len];
            prop_assert_eq!(repr.emit(&mut buf), Ok(20));
            prop_assert_eq!(checksum::finish(checksum::sum(&buf[..20], 0)), 0);
            let (parsed, payload) = Ipv4Repr::parse(&buf).unwrap();
            prop_assert_eq!(parsed, repr);
            prop_assert_eq!(payload.len(), repr.payload_len);
            prop_assert_eq!(IpRepr::parse(&buf).unwrap().0, IpRepr::V4(repr));
        }

        #[test]
        fn ipv6_roundtrip(repr in arb_ipv6_repr()) {
            let mut buf = vec![0u8; 40 + repr.payload_len];
            prop_assert_eq!(repr.emit(&mut buf), Ok(40));
            let (parsed, payload) = Ipv6Repr::parse(&buf).unwrap();
            prop_assert_eq!(parsed, repr);
            prop_assert_eq!(payload.len(), repr.payload_len);
            prop_assert_eq!(IpRepr::parse(&buf).unwrap().0, IpRepr::V6(repr));
        }

        #[test]
        fn tcp_packet_roundtrip(
            tcp in arb_tcp_repr(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
            (src, dst) in arb_addr_pair(),
            hop_limit: u8,
        ) {
            let mut buf = vec![0u8; 40 + 60 + payload.len()];
            let n = emit_tcp_packet(src, dst, hop_limit, &tcp, &payload, &mut buf).unwrap();
            let ip_len = if src.is_ipv4() { 20 } else { 40 };
            prop_assert_eq!(n, ip_len + tcp.header_len() + payload.len());

            let (ip, parsed, parsed_payload) = parse_tcp_packet(&buf[..n], true).unwrap();
            prop_assert_eq!(ip.src_addr(), src);
            prop_assert_eq!(ip.dst_addr(), dst);
            prop_assert_eq!(ip.protocol(), IPPROTO_TCP);
            prop_assert_eq!(ip.hop_limit(), hop_limit);
            prop_assert_eq!(ip.payload_len(), tcp.header_len() + payload.len());
            prop_assert_eq!(parsed, tcp);
            prop_assert_eq!(parsed_payload, &payload[..]);

            // The TCP checksum verifies by RFC 1071 over the pseudo-header.
            let segment = &buf[ip_len..n];
            let pseudo = checksum::pseudo_header(src, dst, IPPROTO_TCP, segment.len() as u32);
            prop_assert_eq!(checksum::finish(checksum::sum(segment, pseudo)), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Ipv4Repr::parse(&bytes);
            let _ = Ipv6Repr::parse(&bytes);
            let _ = IpRepr::parse(&bytes);
            let _ = parse_tcp_packet(&bytes, true);
            let _ = parse_tcp_packet(&bytes, false);
        }

        #[test]
        fn plausible_headers_never_panic(
            version in prop_oneof![Just(0x45u8), Just(0x46), Just(0x4f), Just(0x60)],
            next in prop_oneof![Just(0u8), Just(6), Just(43), Just(44), Just(59), Just(60), any::<u8>()],
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            // Arbitrary bytes behind a version nibble and next header that lead deeper.
            let mut bytes = bytes;
            bytes.insert(0, version);
            if let Some(b) = bytes.get_mut(6) {
                *b = next;
            }
            let _ = IpRepr::parse(&bytes);
            let _ = parse_tcp_packet(&bytes, true);
            let _ = parse_tcp_packet(&bytes, false);
        }

        #[test]
        fn mutated_packets_never_panic(
            tcp in arb_tcp_repr(),
            (src, dst) in arb_addr_pair(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = [0u8; 120];
            let n = emit_tcp_packet(src, dst, 64, &tcp, b"payload", &mut buf).unwrap();
            for (at, byte) in edits {
                buf[at.index(n)] = byte;
            }
            let packet = &buf[..=cut.index(n)];
            if let Ok((ip, parsed, payload)) = parse_tcp_packet(packet, false) {
                // Whatever parses can be emitted and parses back the same, but for SACK
                // blocks that no longer fit beside the other options.
                let mut out = [0u8; 200];
                let (src, dst, hop_limit) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
                let m = emit_tcp_packet(src, dst, hop_limit, &parsed, payload, &mut out).unwrap();
                let (ip2, again, again_payload) = parse_tcp_packet(&out[..m], true).unwrap();
                prop_assert_eq!((ip2.src_addr(), ip2.dst_addr(), ip2.hop_limit()), (src, dst, hop_limit));
                prop_assert_eq!(again_payload, payload);
                let kept = again.options.sack.as_slice();
                prop_assert_eq!(kept, &parsed.options.sack.as_slice()[..kept.len()]);
                let mut expected = parsed;
                expected.options.sack = again.options.sack;
                prop_assert_eq!(again, expected);
            }
            let _ = parse_tcp_packet(packet, true);
        }
    }

    #[test]
    fn partial_checksums_are_completed_and_nothing_else_changes() {
        let src: IpAddr = "10.7.0.2".parse().unwrap();
        let dst: IpAddr = "10.7.0.1".parse().unwrap();
        let tcp = TcpRepr {
            src_port: 5000,
            dst_port: 80,
            seq: 7,
            ..TcpRepr::default()
        };
        let mut buf = [0u8; 100];
        let n = emit_tcp_packet(src, dst, 64, &tcp, b"payload", &mut buf).unwrap();
        let good = buf[..n].to_vec();
        // A valid packet is left alone.
        let mut p = good.clone();
        assert!(!complete_partial_checksum(&mut p));
        assert_eq!(p, good);
        // The offloading sender's form: the field holds the folded pseudo-header sum.
        let pseudo = checksum::pseudo_header(src, dst, IPPROTO_TCP, (n - 20) as u32);
        let mut p = good.clone();
        p[36..38].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        assert!(parse_tcp_packet(&p, true).is_err());
        assert!(complete_partial_checksum(&mut p));
        assert_eq!(p, good);
        // A corrupt packet stays corrupt.
        let mut p = good.clone();
        p[45] ^= 1;
        assert!(!complete_partial_checksum(&mut p));
        assert!(parse_tcp_packet(&p, true).is_err());
        // Garbage does not panic.
        for len in 0..60 {
            let mut junk = vec![0x45u8; len];
            let _ = complete_partial_checksum(&mut junk);
        }
    }

    #[test]
    fn partial_headers_complete_to_the_full_packet() {
        for (src, dst) in [("10.7.0.2", "10.7.0.1"), ("fd00::2", "fd00::1")] {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let tcp = TcpRepr {
                src_port: 5000,
                dst_port: 80,
                seq: 7,
                flags: TcpFlags::ACK | TcpFlags::PSH,
                ..TcpRepr::default()
            };
            let payload = b"odd-length payload";
            let mut buf = [0u8; 200];
            let n = emit_tcp_packet(src, dst, 64, &tcp, payload, &mut buf).unwrap();
            let full = buf[..n].to_vec();
            let head = n - payload.len();
            let mut p = vec![0u8; n];
            p[head..].copy_from_slice(payload);
            let h = emit_tcp_headers_partial(src, dst, 64, &tcp, &mut p[..head], payload.len());
            assert_eq!(h, Ok(head));
            assert_ne!(p, full);
            assert!(parse_tcp_packet(&p, true).is_err());
            assert!(parse_tcp_packet(&p, false).is_ok());
            assert!(complete_partial_checksum(&mut p));
            assert_eq!(p, full);
        }
    }

    proptest! {
        /// Headers written in front of a payload already in place make the same packet as
        /// copying the payload.
        #[test]
        fn in_place_matches_copying((src, dst) in arb_addr_pair(), tcp in arb_tcp_repr(),
                                    payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut copied = vec![0u8; 2000];
            let n = emit_tcp_packet(src, dst, 64, &tcp, &payload, &mut copied).unwrap();
            let header = n - payload.len();
            let mut in_place = vec![0u8; n];
            in_place[header..].copy_from_slice(&payload);
            prop_assert_eq!(emit_tcp_headers_in_place(src, dst, 64, &tcp, &mut in_place).unwrap(), n);
            prop_assert_eq!(&in_place[..], &copied[..n]);
        }
    }
}
