//! Reading captures: pcap and pcapng files through the `pcap-file` crate, link-layer headers
//! stripped here, IP and TCP decoded by [`crate::wire`].

use super::{Capture, InspectError, Packet};
use crate::wire::{self, WireError};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{PcapError, TsResolution};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::time::Duration;

/// Link types (tcpdump.org "Link-Layer Header Types").
mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_OPENBSD: u32 = 12;
    pub const RAW_BSD: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

/// Largest frame rebuilt to its original length when the capture cut it short.
const MAX_FRAME: usize = 65_535 + 64;

/// Whether this reader decodes a link type.
fn supported(link: u32) -> bool {
    use linktype::*;
    matches!(
        link,
        NULL | ETHERNET | RAW_OPENBSD | RAW_BSD | RAW | LOOP | LINUX_SLL | IPV4 | IPV6 | LINUX_SLL2
    )
}

/// The IP packet inside a frame, or `None` when the frame does not carry IPv4 or IPv6.
fn ip_payload(link: u32, frame: &[u8]) -> Option<&[u8]> {
    const ETH_IPV4: u16 = 0x0800;
    const ETH_IPV6: u16 = 0x86dd;
    const ETH_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
    let ethertype_ok = |t: u16| t == ETH_IPV4 || t == ETH_IPV6;
    let be16 = |b: &[u8], at: usize| -> Option<u16> {
        let s = b.get(at..at + 2)?;
        Some(u16::from_be_bytes([s[0], s[1]]))
    };
    match link {
        linktype::RAW | linktype::RAW_OPENBSD | linktype::RAW_BSD => Some(frame),
        linktype::IPV4 | linktype::IPV6 => Some(frame),
        // A 4-byte address family (host order for NULL, network order for LOOP); the IP
        // version nibble tells the rest.
        linktype::NULL | linktype::LOOP => frame.get(4..),
        linktype::ETHERNET => {
            let mut at = 12;
            let mut t = be16(frame, at)?;
            // 802.1Q / 802.1ad tags, at most two.
            for _ in 0..2 {
                if ETH_VLAN.contains(&t) {
                    at += 4;
                    t = be16(frame, at)?;
                }
            }
            ethertype_ok(t).then(|| frame.get(at + 2..)).flatten()
        }
        linktype::LINUX_SLL => {
            let t = be16(frame, 14)?;
            ethertype_ok(t).then(|| frame.get(16..)).flatten()
        }
        linktype::LINUX_SLL2 => {
            let t = be16(frame, 0)?;
            ethertype_ok(t).then(|| frame.get(20..)).flatten()
        }
        _ => None,
    }
}

/// Decodes one captured frame into the capture.
fn add_frame(cap: &mut Capture, link: u32, time: Duration, data: &[u8], orig_len: u32) {
    // A frame the capture cut short is rebuilt to its original length with zeros, so the IP
    // length fields agree; only headers are read, and checksums are not verified.
    let orig = (orig_len as usize).min(MAX_FRAME);
    let padded;
    let frame = if orig > data.len() {
        let mut v = data.to_vec();
        v.resize(orig, 0);
        padded = v;
        &padded[..]
    } else {
        data
    };
    let Some(ip) = ip_payload(link, frame) else {
        cap.skipped.not_tcp += 1;
        return;
    };
    match wire::parse_tcp_packet(ip, false) {
        Ok((ipr, tcp, payload)) => cap.packets.push(Packet {
            time,
            src: SocketAddr::new(ipr.src_addr(), tcp.src_port),
            dst: SocketAddr::new(ipr.dst_addr(), tcp.dst_port),
            tcp,
            payload_len: payload.len(),
            kind: None,
            sample: None,
        }),
        Err(WireError::NotTcp | WireError::BadVersion) => cap.skipped.not_tcp += 1,
        Err(_) => cap.skipped.malformed += 1,
    }
}

/// Reads a pcap or pcapng stream.
pub(super) fn read(reader: impl Read) -> Result<Capture, InspectError> {
    let mut r = BufReader::new(reader);
    let head = r.fill_buf()?;
    if head.len() < 4 {
        return Err(InspectError::Format(
            "shorter than a capture file header".into(),
        ));
    }
    if head[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        read_pcapng(r)
    } else {
        read_pcap(r)
    }
}

fn format_error(e: PcapError) -> InspectError {
    match e {
        PcapError::IoError(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
            InspectError::Io(e)
        }
        PcapError::IoError(_) | PcapError::IncompleteBuffer => {
            InspectError::Format("the file header is cut short".into())
        }
        other => InspectError::Format(other.to_string()),
    }
}

fn read_pcap(r: impl Read) -> Result<Capture, InspectError> {
    let mut reader = PcapReader::new(r).map_err(format_error)?;
    let header = reader.header();
    let link = u32::from(header.datalink);
    if !supported(link) {
        return Err(InspectError::LinkType(link));
    }
    let nanos = header.ts_resolution == TsResolution::NanoSecond;
    let mut cap = Capture::default();
    while let Some(rec) = reader.next_raw_packet() {
        match rec {
            Ok(raw) => {
                // Lenient where pcap-file's validated packets are strict: a snap length
                // below the original length is what `tcpdump -s` produces.
                let frac = if nanos {
                    u64::from(raw.ts_frac)
                } else {
                    u64::from(raw.ts_frac) * 1000
                };
                let time = Duration::from_secs(u64::from(raw.ts_sec)) + Duration::from_nanos(frac);
                add_frame(&mut cap, link, time, &raw.data, raw.orig_len);
            }
            Err(PcapError::IoError(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                return Err(InspectError::Io(e))
            }
            Err(_) => {
                // A record cut short (a capture whose writer was killed) or damaged: keep
                // what came before it.
                cap.skipped.truncated = true;
                break;
            }
        }
    }
    Ok(cap)
}

/// Time of a pcapng timestamp. pcap-file hands the raw 64-bit count as nanoseconds; its
/// unit is the interface's `if_tsresol` (microseconds when absent).
fn pcapng_time(raw: Duration, tsresol: Option<u8>) -> Duration {
    let ticks = u64::try_from(raw.as_nanos()).unwrap_or(u64::MAX);
    let r = tsresol.unwrap_or(6);
    if r & 0x80 != 0 {
        let shift = u32::from(r & 0x7f).min(63);
        let secs = ticks >> shift;
        let frac = ticks & ((1u64 << shift) - 1);
        Duration::from_secs(secs) + Duration::from_secs_f64(frac as f64 / (1u64 << shift) as f64)
    } else {
        let exp = u32::from(r).min(19);
        let per_sec = 10u64.pow(exp);
        let secs = ticks / per_sec;
        let frac = ticks % per_sec;
        let nanos = if exp <= 9 {
            frac * 10u64.pow(9 - exp)
        } else {
            frac / 10u64.pow(exp - 9)
        };
        Duration::from_secs(secs) + Duration::from_nanos(nanos)
    }
}

fn read_pcapng(r: impl Read) -> Result<Capture, InspectError> {
    let mut reader = PcapNgReader::new(r).map_err(format_error)?;
    let mut cap = Capture::default();
    loop {
        let (iface, time, data, orig) = match reader.next_block() {
            None => break,
            Some(Ok(Block::EnhancedPacket(p))) => (
                p.interface_id as usize,
                Some(p.timestamp),
                p.data.to_vec(),
                p.original_len,
            ),
            Some(Ok(Block::SimplePacket(p))) => (0, None, p.data.to_vec(), p.original_len),
            Some(Ok(_)) => continue,
            Some(Err(PcapError::IoError(e))) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                return Err(InspectError::Io(e))
            }
            Some(Err(_)) => {
                cap.skipped.truncated = true;
                break;
            }
        };
        let Some(desc) = reader.interfaces().get(iface) else {
            cap.skipped.malformed += 1;
            continue;
        };
        let link = u32::from(desc.linktype);
        if !supported(link) {
            if cap.packets.is_empty() && reader.interfaces().len() == 1 {
                return Err(InspectError::LinkType(link));
            }
            cap.skipped.not_tcp += 1;
            continue;
        }
        let tsresol = desc.options.iter().find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
            _ => None,
        });
        let time = time.map_or(Duration::ZERO, |t| pcapng_time(t, tsresol));
        add_frame(&mut cap, link, time, &data, orig);
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(
            pcapng_time(Duration::from_nanos(1_500_000), None),
            Duration::from_millis(1500)
        );
        assert_eq!(
            pcapng_time(Duration::from_nanos(1_500_000_000), Some(9)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            pcapng_time(Duration::from_nanos(3 << 10), Some(0x80 | 10)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn link_headers() {
        let ip = [0x45u8, 0, 0, 20];
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0, 1, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_eq!(ip_payload(linktype::ETHERNET, &eth), Some(&ip[..]));
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        assert_eq!(ip_payload(linktype::ETHERNET, &arp), None);
        let mut sll2 = vec![0x86, 0xdd];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(ip_payload(linktype::LINUX_SLL2, &sll2), Some(&ip[..]));
        assert_eq!(ip_payload(linktype::LINUX_SLL, &[0; 10]), None);
    }
}
