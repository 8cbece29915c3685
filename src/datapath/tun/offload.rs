//! The TUN device's segmentation offloads: the virtio-net header (`IFF_VNET_HDR`) in front of
//! every packet, TCP segmentation offload (TSO) on the way out and large received segments
//! (the kernel's TSO toward the device) on the way in.
//!
//! With the offloads on, each packet read from or written to the device is preceded by a
//! 10-byte `struct virtio_net_hdr` (the legacy layout, in this host's byte order, as a TUN
//! device uses unless told otherwise; Linux `include/uapi/linux/virtio_net.h`):
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0 | `flags` | `NEEDS_CSUM`: the transport checksum is partial, to be completed from `csum_start` |
//! | 1 | `gso_type` | `NONE`, `TCPV4` or `TCPV6` (with the `ECN` bit): one segment, or many in one |
//! | 2–3 | `hdr_len` | length of the IP and TCP headers |
//! | 4–5 | `gso_size` | payload bytes per segment when cut |
//! | 6–7 | `csum_start` | where the checksummed part starts (the TCP header) |
//! | 8–9 | `csum_offset` | where, from `csum_start`, the checksum field is (16 for TCP) |
//!
//! **Out.** The stack's segments of one connection leave its engine back to back, of one
//! size but the last. [`train_len`] finds such a run in a batch, and [`TrainHeader`] writes
//! the one IP and TCP header that stands for all of them, with a virtio-net header asking the
//! kernel to cut it at `gso_size`. One `writev` then hands the kernel up to 64 KiB: the
//! header, then each segment's payload read in place from the batch. A kernel program on the
//! host receives it as one large segment (what GRO would have made of the run), and a packet
//! the kernel forwards elsewhere is cut into the original segments before its device (Linux
//! `tcp_gso_segment`): every segment but the last loses PSH and FIN, as here, and the IPv4
//! identification counts up from the first's.
//!
//! **In.** The kernel's own TCP sends through the device as it would to a NIC with TSO: up
//! to 64 KiB in one packet, its checksum left partial (`NEEDS_CSUM`). [`complete_checksum`]
//! finishes it, and the stack takes the packet as one segment, as a receiver takes a segment
//! that GRO merged.

use crate::wire::checksum;
use crate::wire::ip::refill_ipv4_checksum;
use crate::wire::view::{PacketView, TcpView};
use crate::wire::{TcpFlags, IPPROTO_TCP};
use std::io::IoSlice;
use std::net::IpAddr;

/// Bytes of the virtio-net header in front of every packet (`sizeof(struct virtio_net_hdr)`).
pub(in crate::datapath) const HDR_LEN: usize = 10;
/// Segments one train carries at most.
pub(in crate::datapath) const MAX_TRAIN: usize = 64;
/// Largest packet the device takes or gives (an IPv4 total length; IPv6 payload length).
const MAX_PACKET: usize = 65_535;
/// The largest IP and TCP headers (IPv6 40 or IPv4 60, TCP 60).
const MAX_HEADERS: usize = 60 + 60;
/// The largest link-layer header written before a train's IP header (Ethernet).
pub(in crate::datapath) const MAX_LINK_HEADER: usize = 14;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_ECN: u8 = 0x80;
/// The TCP checksum's place in the TCP header (RFC 9293 §3.1).
const TCP_CHECKSUM_AT: usize = 16;

/// A `struct virtio_net_hdr` (legacy layout, host byte order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHeader {
    /// Reads one from the front of `bytes` (zeros where `bytes` is short).
    pub fn parse(bytes: &[u8]) -> VnetHeader {
        let mut b = [0u8; HDR_LEN];
        let n = bytes.len().min(HDR_LEN);
        b[..n].copy_from_slice(&bytes[..n]);
        let word = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        }
    }

    /// Its 10 bytes.
    pub fn bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [
            (2, self.hdr_len),
            (4, self.gso_size),
            (6, self.csum_start),
            (8, self.csum_offset),
        ] {
            b[i..i + 2].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// Whether the packet behind it stands for several segments.
    pub fn is_large(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    /// Whether the packet's transport checksum was left partial.
    pub fn needs_checksum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

/// Completes a checksum the kernel left partial (`NEEDS_CSUM`): the field at `start + offset`
/// holds the folded pseudo-header sum, and the one's complement sum of everything from
/// `start` to the end, that field included, is the checksum's complement (RFC 1071 §2).
/// False when the places lie outside the packet, which then stays as it was.
pub(super) fn complete_checksum(packet: &mut [u8], start: u16, offset: u16) -> bool {
    let (start, at) = (usize::from(start), usize::from(start) + usize::from(offset));
    if at + 2 > packet.len() {
        return false;
    }
    let full = checksum::finish(checksum::sum(&packet[start..], 0));
    packet[at..at + 2].copy_from_slice(&full.to_be_bytes());
    true
}

/// What must be the same in every segment of a train: an IP and TCP header without IPv4
/// options or IPv6 extension headers, and the places of what may differ.
#[derive(Debug, Clone, Copy)]
struct Shape {
    ip_len: usize,
    tcp_len: usize,
    v4: bool,
}

impl Shape {
    /// The shape of `packet`, when it is a TCP segment with a payload that may travel in a
    /// train: no SYN, RST, URG or CWR (CWR would be cut to the first segment), one whole
    /// packet (its declared length is its length; not a fragment).
    fn of(packet: &[u8]) -> Option<Shape> {
        let view = PacketView::new(packet).ok()?;
        let tcp = view.tcp()?;
        let ip_len = view.header_len();
        let tcp_len = tcp.header_len();
        let v4 = view.is_ipv4();
        let fragment = v4 && u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0;
        let banned = TcpFlags::SYN.0 | TcpFlags::RST.0 | TcpFlags::URG.0 | TcpFlags::CWR.0;
        if (v4 && ip_len != 20)
            || fragment
            || view.declared_len() != packet.len()
            || tcp_len < 20
            || ip_len + tcp_len >= packet.len()
            || tcp.flags().0 & banned != 0
        {
            return None;
        }
        Some(Shape {
            ip_len,
            tcp_len,
            v4,
        })
    }

    fn headers(&self) -> usize {
        self.ip_len + self.tcp_len
    }

    /// Whether `next` may follow `prev` (of this shape) in a train: the same headers but for
    /// the lengths, identification, checksums, sequence number and PSH/FIN, its sequence
    /// number right after `prev`'s payload, and `prev` without FIN.
    fn continues(&self, prev: &[u8], next: &[u8]) -> bool {
        let (ip, tcp) = (self.ip_len, self.tcp_len);
        if next.len() <= ip + tcp
            || PacketView::new(next).map(|v| v.declared_len()) != Ok(next.len())
        {
            return false;
        }
        let (Some(a), Some(b)) = (TcpView::new(&prev[ip..]), TcpView::new(&next[ip..])) else {
            return false;
        };
        let same = |r: std::ops::Range<usize>| prev.get(r.clone()) == next.get(r);
        let ip_same = if self.v4 {
            // Version and IHL, TOS; flags and fragment offset, TTL, protocol; addresses.
            same(0..2) && same(6..10) && same(12..20)
        } else {
            // Version, traffic class, flow label; next header, hop limit, addresses.
            same(0..4) && same(6..40)
        };
        let fin_psh = TcpFlags::FIN.0 | TcpFlags::PSH.0;
        let t = ip;
        ip_same
            // Ports; acknowledgment; data offset; window; urgent pointer; options.
            && same(t..t + 4)
            && same(t + 8..t + 13)
            && same(t + 14..t + 16)
            && same(t + 18..t + tcp)
            && !a.flags().contains(TcpFlags::FIN)
            && a.flags().0 & !fin_psh == b.flags().0 & !fin_psh
            && a.seq().wrapping_add((prev.len() - ip - tcp) as u32) == b.seq()
    }
}

/// How many packets from `packets[0]` on travel as one train: the longest run of segments
/// of one connection, back to back in sequence, with equal headers (see `Shape`), all with
/// the first's payload size but possibly the last (which is not larger), within
/// [`MAX_TRAIN`] segments and 64 KiB. 1 when the first cannot lead a train.
pub(in crate::datapath) fn train_len<'a>(packets: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let mut packets = packets.into_iter();
    let Some(first) = packets.next() else {
        return 0;
    };
    let Some(shape) = Shape::of(first) else {
        return 1;
    };
    let size = first.len() - shape.headers();
    let mut total = first.len();
    let (mut count, mut prev) = (1, first);
    for next in packets {
        let payload = next.len().saturating_sub(shape.headers());
        let ip_total = if shape.v4 {
            total
        } else {
            total - shape.ip_len
        };
        if count == MAX_TRAIN
            || prev.len() - shape.headers() < size
            || payload > size
            || ip_total + payload > MAX_PACKET
            || !shape.continues(prev, next)
        {
            break;
        }
        total += payload;
        count += 1;
        prev = next;
    }
    count
}

/// The headers written in front of a train's payloads: the virtio-net header, then (on a
/// packet socket) the link-layer header, then the first segment's IP and TCP headers with the
/// train's length, the last one's PSH and FIN, and the TCP checksum left partial for the
/// kernel.
pub(in crate::datapath) struct TrainHeader {
    bytes: [u8; HDR_LEN + MAX_LINK_HEADER + MAX_HEADERS],
    len: usize,
    /// Where each segment's payload starts in its packet (its IP and TCP headers' length).
    payload_at: usize,
}

impl TrainHeader {
    /// For the train `packets` (two or more, as [`train_len`] found them), written to a TUN
    /// device (no link-layer header).
    pub fn new(packets: &[&[u8]]) -> Option<TrainHeader> {
        Self::with_link(packets, &[])
    }

    /// For the train `packets` behind the link-layer header `link` (at most
    /// [`MAX_LINK_HEADER`] bytes), as a packet socket with `PACKET_VNET_HDR` takes it: the
    /// virtio-net header's offsets (`hdr_len`, `csum_start`) then count from the link
    /// header's first byte.
    pub fn with_link(packets: &[&[u8]], link: &[u8]) -> Option<TrainHeader> {
        if link.len() > MAX_LINK_HEADER {
            return None;
        }
        let (first, last) = (packets.first()?, packets.last()?);
        let shape = Shape::of(first)?;
        let (ip, tcp) = (shape.ip_len, shape.tcp_len);
        let headers = shape.headers();
        let payload: usize = packets.iter().map(|p| p.len() - headers).sum();
        let gso_size = u16::try_from(first.len() - headers).ok()?;
        let l = link.len();
        let mut out = TrainHeader {
            bytes: [0; HDR_LEN + MAX_LINK_HEADER + MAX_HEADERS],
            len: HDR_LEN + l + headers,
            payload_at: headers,
        };
        let vnet = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: if shape.v4 { GSO_TCPV4 } else { GSO_TCPV6 },
            hdr_len: (l + headers) as u16,
            gso_size,
            csum_start: (l + ip) as u16,
            csum_offset: TCP_CHECKSUM_AT as u16,
        };
        out.bytes[..HDR_LEN].copy_from_slice(&vnet.bytes());
        out.bytes[HDR_LEN..HDR_LEN + l].copy_from_slice(link);
        let h = &mut out.bytes[HDR_LEN + l..HDR_LEN + l + headers];
        h.copy_from_slice(&first[..headers]);
        let view = PacketView::new(first).ok()?;
        let (src, dst): (IpAddr, IpAddr) = (view.src(), view.dst());
        if shape.v4 {
            let total = u16::try_from(headers + payload).ok()?;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            refill_ipv4_checksum(&mut h[..ip]);
        } else {
            let len = u16::try_from(tcp + payload).ok()?;
            h[4..6].copy_from_slice(&len.to_be_bytes());
        }
        // The kernel cuts PSH and FIN from every segment but the last, which keeps the
        // header's: the last segment's own.
        let ends = TcpFlags::FIN.0 | TcpFlags::PSH.0;
        h[ip + 13] = (h[ip + 13] & !ends) | (last[ip + 13] & ends);
        // Partial: the pseudo-header's sum, folded, not complemented (the kernel adds the
        // rest and complements when it cuts the train, or trusts it when it delivers it).
        let pseudo = checksum::pseudo_header(src, dst, IPPROTO_TCP, (tcp + payload) as u32);
        let at = ip + TCP_CHECKSUM_AT;
        h[at..at + 2].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        Some(out)
    }

    /// The bytes to write before the payloads.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The train as one vectored write: these headers, then each of `packets`' payloads
    /// read in place (the first `packets.len() + 1` slices), and the bytes in all.
    pub fn slices<'a>(&'a self, packets: &[&'a [u8]]) -> ([IoSlice<'a>; MAX_TRAIN + 1], usize) {
        let mut iov = [IoSlice::new(&[]); MAX_TRAIN + 1];
        iov[0] = IoSlice::new(self.bytes());
        let mut len = self.len;
        for (slot, p) in iov[1..].iter_mut().zip(packets) {
            let payload = p.get(self.payload_at..).unwrap_or_default();
            *slot = IoSlice::new(payload);
            len += payload.len();
        }
        (iov, len)
    }
}

/// The `count` packets of `batch` from `i` on (a run [`train_len`] found), as a train's
/// writer takes them.
pub(in crate::datapath) fn train_packets(
    batch: &crate::datapath::Batch,
    i: usize,
    count: usize,
) -> [&[u8]; MAX_TRAIN] {
    let mut packets = [&[][..]; MAX_TRAIN];
    for (k, p) in packets.iter_mut().take(count).enumerate() {
        *p = batch.get(i + k);
    }
    packets
}

/// The header in front of a packet that travels alone, its checksums complete.
pub(super) const PLAIN: [u8; HDR_LEN] = [0; HDR_LEN];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{emit_tcp_packet, parse_tcp_packet, TcpRepr};

    const SRC: &str = "10.77.0.2";
    const DST: &str = "10.77.0.1";

    fn segment(src: &str, dst: &str, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 8080,
            dst_port: 40000,
            seq,
            ack: 777,
            window: 512,
            flags: TcpFlags(flags),
            ..TcpRepr::default()
        };
        let (src, dst) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut buf = vec![0; 100 + payload.len()];
        let len = emit_tcp_packet(src, dst, 64, &tcp, payload, &mut buf);
        buf.truncate(len.unwrap());
        buf
    }

    const ACK: u8 = TcpFlags::ACK.0;
    const PSH: u8 = TcpFlags::PSH.0;
    const FIN: u8 = TcpFlags::FIN.0;

    fn run(sizes: &[usize], flags: &[u8]) -> Vec<Vec<u8>> {
        let mut seq = 1000u32;
        sizes
            .iter()
            .zip(flags)
            .map(|(&n, &f)| {
                let payload: Vec<u8> = (0..n).map(|i| (seq as usize + i) as u8).collect();
                let p = segment(SRC, DST, seq, f, &payload);
                seq = seq.wrapping_add(n as u32);
                p
            })
            .collect()
    }

    fn len_of(packets: &[Vec<u8>]) -> usize {
        train_len(packets.iter().map(|p| p.as_slice()))
    }

    /// The header of the train `packets` make.
    fn header_of(packets: &[Vec<u8>]) -> TrainHeader {
        let refs: Vec<&[u8]> = packets.iter().map(|p| p.as_slice()).collect();
        TrainHeader::new(&refs).unwrap()
    }

    /// Cuts a train back into segments as the kernel's `tcp_gso_segment` does, and checks
    /// each against the original.
    fn recut(header: &[u8], payloads: &[u8]) -> Vec<Vec<u8>> {
        let vnet = VnetHeader::parse(header);
        let h = &header[HDR_LEN..];
        let hl = usize::from(vnet.hdr_len);
        assert_eq!(hl, h.len());
        let ip = usize::from(vnet.csum_start);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = payloads.chunks(usize::from(vnet.gso_size)).collect();
        let mut seq = TcpView::new(&h[ip..]).unwrap().seq();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut p = h.to_vec();
            p.extend_from_slice(chunk);
            let last = i + 1 == chunks.len();
            if !last {
                p[ip + 13] &= !(FIN | PSH);
            }
            p[ip + 4..ip + 8].copy_from_slice(&seq.to_be_bytes());
            seq = seq.wrapping_add(chunk.len() as u32);
            if p[0] >> 4 == 4 {
                let total = p.len() as u16;
                p[2..4].copy_from_slice(&total.to_be_bytes());
                refill_ipv4_checksum(&mut p[..ip]);
            } else {
                let len = (p.len() - 40) as u16;
                p[4..6].copy_from_slice(&len.to_be_bytes());
            }
            let view = PacketView::new(&p).unwrap();
            let pseudo = checksum::pseudo_header(view.src(), view.dst(), 6, (p.len() - ip) as u32);
            p[ip + 16..ip + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
            assert!(complete_checksum(&mut p, ip as u16, 16));
            out.push(p);
        }
        out
    }

    fn payloads(packets: &[Vec<u8>]) -> Vec<u8> {
        let hl = 40;
        packets.iter().flat_map(|p| p[hl..].to_vec()).collect()
    }

    /// Behind a link-layer header (a packet socket's train), the virtio-net offsets count
    /// from the link header's first byte, and what follows it is the TUN train's header.
    #[test]
    fn a_train_behind_a_link_header_counts_its_offsets_from_it() {
        let packets = run(&[1460, 1460, 900], &[ACK, ACK, ACK | PSH]);
        let refs: Vec<&[u8]> = packets.iter().map(|p| p.as_slice()).collect();
        let plain = TrainHeader::new(&refs).unwrap();
        let eth = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00];
        let linked = TrainHeader::with_link(&refs, &eth).unwrap();
        let (a, b) = (
            VnetHeader::parse(plain.bytes()),
            VnetHeader::parse(linked.bytes()),
        );
        assert_eq!(
            (b.hdr_len, b.csum_start),
            (a.hdr_len + 14, a.csum_start + 14)
        );
        assert_eq!(
            (b.gso_type, b.gso_size, b.csum_offset),
            (a.gso_type, a.gso_size, a.csum_offset)
        );
        assert_eq!(&linked.bytes()[HDR_LEN..HDR_LEN + 14], &eth);
        assert_eq!(&linked.bytes()[HDR_LEN + 14..], &plain.bytes()[HDR_LEN..]);
        assert!(TrainHeader::with_link(&refs, &[0; MAX_LINK_HEADER + 1]).is_none());
    }

    #[test]
    fn a_run_of_one_connection_becomes_one_train_that_cuts_back_exactly() {
        let packets = run(&[1460, 1460, 1460, 700], &[ACK, ACK, ACK | PSH, ACK | PSH]);
        assert_eq!(len_of(&packets), 4);
        let header = header_of(&packets);
        let vnet = VnetHeader::parse(header.bytes());
        assert_eq!(
            (vnet.gso_type, vnet.gso_size, vnet.hdr_len),
            (GSO_TCPV4, 1460, 40)
        );
        assert!(vnet.needs_checksum() && vnet.is_large());
        let cut = recut(header.bytes(), &payloads(&packets));
        assert_eq!(cut.len(), 4);
        for (i, (c, p)) in cut.iter().zip(&packets).enumerate() {
            // The kernel drops PSH from every segment but the last; the rest is identical.
            let mut expect = p.clone();
            if i < 3 {
                expect[20 + 13] &= !PSH;
                let view = PacketView::new(&expect).unwrap();
                let pseudo =
                    checksum::pseudo_header(view.src(), view.dst(), 6, (expect.len() - 20) as u32);
                expect[36..38].copy_from_slice(&[0, 0]);
                let s = checksum::finish(checksum::sum(&expect[20..], pseudo));
                expect[36..38].copy_from_slice(&s.to_be_bytes());
            }
            assert_eq!(c, &expect, "segment {i}");
            parse_tcp_packet(c, true).unwrap();
        }
    }

    #[test]
    fn the_train_ends_with_the_last_segments_push_and_fin() {
        let packets = run(&[1000, 1000], &[ACK | PSH, ACK]);
        let header = header_of(&packets);
        assert_eq!(
            header.bytes()[HDR_LEN + 20 + 13],
            ACK,
            "PSH only where the last had it"
        );
        let packets = run(&[1000, 500], &[ACK, ACK | PSH | FIN]);
        let header = header_of(&packets);
        assert_eq!(header.bytes()[HDR_LEN + 20 + 13], ACK | PSH | FIN);
    }

    #[test]
    fn the_whole_train_parses_as_one_large_segment() {
        let packets = run(&[1000, 1000, 1000], &[ACK, ACK, ACK | FIN]);
        assert_eq!(len_of(&packets), 3);
        let header = header_of(&packets);
        let mut whole = header.bytes()[HDR_LEN..].to_vec();
        whole.extend_from_slice(&payloads(&packets));
        // What a kernel receiving it sees once the partial checksum is completed.
        assert!(complete_checksum(&mut whole, 20, 16));
        let (_, tcp, payload) = parse_tcp_packet(&whole, true).unwrap();
        assert_eq!(tcp.seq, 1000);
        assert!(tcp.flags.contains(TcpFlags::FIN));
        assert_eq!(payload, &payloads(&packets)[..]);
    }

    #[test]
    fn ipv6_trains_carry_the_payload_length() {
        let mut seq = 5u32;
        let packets: Vec<Vec<u8>> = (0..3)
            .map(|_| {
                let p = segment("fd77::2", "fd77::1", seq, ACK, &[9; 1200]);
                seq += 1200;
                p
            })
            .collect();
        assert_eq!(len_of(&packets), 3);
        let header = header_of(&packets);
        let vnet = VnetHeader::parse(header.bytes());
        assert_eq!(
            (vnet.gso_type, vnet.csum_start, vnet.hdr_len),
            (GSO_TCPV6, 40, 60)
        );
        let h = &header.bytes()[HDR_LEN..];
        assert_eq!(u16::from_be_bytes([h[4], h[5]]), 20 + 3600);
        let cut = recut(
            header.bytes(),
            &packets
                .iter()
                .flat_map(|p| p[60..].to_vec())
                .collect::<Vec<_>>(),
        );
        assert_eq!(cut, packets);
    }

    #[test]
    fn what_may_not_travel_together_is_split() {
        // A gap in sequence.
        let mut packets = run(&[1000, 1000], &[ACK, ACK]);
        packets[1] = segment(SRC, DST, 1000 + 1001, ACK, &[0; 1000]);
        assert_eq!(len_of(&packets), 1);
        // A larger segment after a smaller one, or after a shorter last.
        assert_eq!(len_of(&run(&[1000, 1200], &[ACK, ACK])), 1);
        assert_eq!(len_of(&run(&[1000, 500, 500], &[ACK, ACK, ACK])), 2);
        // FIN ends a train; SYN, RST, URG and CWR never ride in one.
        assert_eq!(len_of(&run(&[1000, 1000, 1000], &[ACK, ACK | FIN, ACK])), 2);
        for bad in [
            TcpFlags::SYN.0,
            TcpFlags::RST.0,
            TcpFlags::URG.0,
            TcpFlags::CWR.0,
        ] {
            assert_eq!(
                len_of(&run(&[1000, 1000], &[ACK | bad, ACK])),
                1,
                "{bad:#x}"
            );
            assert_eq!(
                len_of(&run(&[1000, 1000], &[ACK, ACK | bad])),
                1,
                "{bad:#x}"
            );
        }
        // Pure ACKs have no payload to carry.
        assert_eq!(len_of(&run(&[0, 0], &[ACK, ACK])), 1);
        // Another connection, another acknowledgment, another window.
        let a = segment(SRC, DST, 1000, ACK, &[0; 1000]);
        let mut b = segment(SRC, DST, 2000, ACK, &[0; 1000]);
        b[20 + 2] ^= 1;
        assert_eq!(len_of(&[a.clone(), b]), 1);
        for at in [20 + 8, 20 + 14] {
            let mut b = segment(SRC, DST, 2000, ACK, &[0; 1000]);
            b[at] ^= 1;
            assert_eq!(len_of(&[a.clone(), b]), 1, "byte {at}");
        }
        // Another address.
        let b = segment(SRC, "10.77.0.3", 2000, ACK, &[0; 1000]);
        assert_eq!(len_of(&[a.clone(), b]), 1);
        // At most MAX_TRAIN segments and 64 KiB.
        let many = run(&[100; 70], &[ACK; 70]);
        assert_eq!(len_of(&many), MAX_TRAIN);
        let big = run(&[16_000; 5], &[ACK; 5]);
        assert_eq!(len_of(&big), 4);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let good = segment(SRC, DST, 1, ACK, &[1; 100]);
        for cut in 0..good.len() {
            let short = &good[..cut];
            assert!(train_len([short, &good[..]]) <= 1);
            assert!(train_len([&good[..], short]) <= 2);
            let mut p = short.to_vec();
            let _ = complete_checksum(&mut p, 20, 16);
            let _ = complete_checksum(&mut p, u16::MAX, u16::MAX);
            let _ = VnetHeader::parse(short);
        }
        let mut lie = good.clone();
        lie[2..4].copy_from_slice(&60_000u16.to_be_bytes());
        assert_eq!(train_len([&lie[..], &good[..]]), 1);
    }

    #[test]
    fn a_partial_checksum_completes_to_the_full_one() {
        let mut p = segment(SRC, DST, 42, ACK | PSH, b"hello, offload");
        let full = [p[36], p[37]];
        let view = PacketView::new(&p).unwrap();
        let pseudo = checksum::pseudo_header(view.src(), view.dst(), 6, (p.len() - 20) as u32);
        p[36..38].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        let vnet = VnetHeader {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHeader::default()
        };
        assert_eq!(VnetHeader::parse(&vnet.bytes()), vnet);
        assert!(complete_checksum(&mut p, vnet.csum_start, vnet.csum_offset));
        assert_eq!([p[36], p[37]], full);
    }
}
