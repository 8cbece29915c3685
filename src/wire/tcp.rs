//! The TCP header (RFC 9293 §3.1) and its options (RFC 9293 §3.2, RFC 7323, RFC 2018).
//!
//! This module owns the byte layout of a TCP segment's header: [`TcpRepr::parse`] turns bytes
//! into a [`TcpRepr`] and the payload slice, [`TcpRepr::emit`] and [`TcpRepr::emit_header`]
//! turn a [`TcpRepr`] back into bytes with the checksum filled in. It also owns the "ladder"
//! notation used to log segments ([`TcpFlags`]'s `Display` and [`TcpRepr::ladder`]).

use super::checksum;
use super::ip::IPPROTO_TCP;
use super::WireError;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Largest TCP header: data offset 15 words.
pub const TCP_MAX_HEADER_LEN: usize = 60;
/// Most option bytes a header can carry.
const MAX_OPTIONS_LEN: usize = TCP_MAX_HEADER_LEN - TCP_HEADER_LEN;

/// Option kinds (RFC 9293 §3.2, RFC 7323, RFC 2018).
mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
    /// An experimental option (RFC 6994 §3): kind 253, then a 16-bit experiment identifier.
    pub const EXPERIMENT: u8 = 253;
}

/// The experiment identifier (RFC 6994 §3) of rawtcp's partial-checksum option (see
/// [`TcpOptions::partial_checksums`]): "RT". Not registered with IANA, as RFC 6994 §3 asks of
/// an experiment deployed on the Internet: this one never leaves a host, as it is offered
/// only in SYNs carried in UDP between processes of one host. A stack that does not know it
/// skips the option by its length (RFC 9293 §3.1).
pub const PARTIAL_CHECKSUMS_EXID: u16 = 0x5254;

/// The TCP control bits (RFC 9293 §3.1, RFC 3168 for ECE and CWR).
///
/// A set of flags: combine with `|`, test with [`contains`](TcpFlags::contains). `Display`
/// writes the names joined by `+` in the order SYN, FIN, RST, URG, PSH, ACK, ECE, CWR
/// (`SYN+ACK`, `FIN+PSH+ACK`), or `none`, and honours width and alignment (`{:<8}`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168 §6.1).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168 §6.1).
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// The empty set.
    pub const NONE: TcpFlags = TcpFlags(0);

    /// The flags in ladder order, with their names.
    const NAMED: [(TcpFlags, &'static str); 8] = [
        (TcpFlags::SYN, "SYN"),
        (TcpFlags::FIN, "FIN"),
        (TcpFlags::RST, "RST"),
        (TcpFlags::URG, "URG"),
        (TcpFlags::PSH, "PSH"),
        (TcpFlags::ACK, "ACK"),
        (TcpFlags::ECE, "ECE"),
        (TcpFlags::CWR, "CWR"),
    ];

    /// The raw control-bits byte (byte 13 of the header).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag in `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag in `other` is set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Sets every flag in `other`.
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }

    /// Clears every flag in `other`.
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl BitAndAssign for TcpFlags {
    fn bitand_assign(&mut self, rhs: TcpFlags) {
        self.0 &= rhs.0;
    }
}

impl Not for TcpFlags {
    type Output = TcpFlags;
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.pad("none");
        }
        // Eight names of three letters and seven separators: 31 bytes at most.
        let mut buf = [0u8; 32];
        let mut len = 0;
        for (flag, name) in TcpFlags::NAMED {
            if !self.contains(flag) {
                continue;
            }
            let sep: &[u8] = if len == 0 { b"" } else { b"+" };
            for &b in sep.iter().chain(name.as_bytes()) {
                if let Some(slot) = buf.get_mut(len) {
                    *slot = b;
                    len += 1;
                }
            }
        }
        let text = buf.get(..len).unwrap_or_default();
        f.pad(std::str::from_utf8(text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

/// Up to four SACK blocks (RFC 2018 §3), each `[left, right)` in sequence space.
///
/// Only the first `len` entries of `blocks` are meaningful; equality and hashing look at those
/// alone. A hand-built value with `len > 4` is treated as holding four blocks.
#[derive(Clone, Copy, Default, Debug)]
pub struct SackBlocks {
    /// How many entries of `blocks` are in use.
    pub len: u8,
    /// The blocks, `(left edge, right edge)`, the first `len` of them in use.
    pub blocks: [(u32, u32); 4],
}

impl SackBlocks {
    /// Most blocks a SACK option can carry (RFC 2018 §3).
    pub const CAPACITY: usize = 4;

    /// No blocks.
    pub const fn new() -> Self {
        SackBlocks {
            len: 0,
            blocks: [(0, 0); 4],
        }
    }

    /// Appends the block `[left, right)`; returns `false`, changing nothing, when already full.
    pub fn push(&mut self, left: u32, right: u32) -> bool {
        let n = self.len();
        match self.blocks.get_mut(n) {
            Some(slot) => {
                *slot = (left, right);
                self.len = n as u8 + 1;
                true
            }
            None => false,
        }
    }

    /// The blocks in use.
    pub fn as_slice(&self) -> &[(u32, u32)] {
        self.blocks.get(..self.len()).unwrap_or_default()
    }

    /// How many blocks are in use, at most [`CAPACITY`](SackBlocks::CAPACITY).
    pub fn len(&self) -> usize {
        usize::from(self.len).min(Self::CAPACITY)
    }

    /// Whether no block is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every block.
    pub fn clear(&mut self) {
        *self = SackBlocks::new();
    }
}

impl PartialEq for SackBlocks {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl Hash for SackBlocks {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

/// The options a TCP header can carry that this stack understands.
///
/// Unknown options are skipped by their length on parse and never emitted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2), only meaningful on SYN.
    pub mss: Option<u16>,
    /// Window scale shift (kind 3, RFC 7323 §2), only meaningful on SYN.
    pub window_scale: Option<u8>,
    /// SACK-permitted (kind 4, RFC 2018 §2), only meaningful on SYN.
    pub sack_permitted: bool,
    /// SACK blocks (kind 5, RFC 2018 §3).
    pub sack: SackBlocks,
    /// Timestamps (kind 8, RFC 7323 §3): `(TSval, TSecr)`.
    pub timestamps: Option<(u32, u32)>,
    /// rawtcp's partial-checksum option, only meaningful on SYN: an experimental option
    /// (kind 253, length 4, identifier [`PARTIAL_CHECKSUMS_EXID`], RFC 6994) by which a
    /// rawtcp endpoint says that the carrier bringing it the peer's segments already
    /// guarantees their integrity (a UDP datagram between two processes of one host), so
    /// the peer may leave each segment's checksum *partial*, as a kernel that offloads
    /// checksumming does: the folded pseudo-header sum only. Used when both SYNs carry it.
    pub partial_checksums: bool,
}

impl TcpOptions {
    /// Bytes taken by everything but SACK blocks, as [`TcpOptions::write`] lays it out.
    fn fixed_len(&self) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        let ts_sack_ok = match (self.timestamps.is_some(), self.sack_permitted) {
            (true, _) => 12,
            (false, true) => 4,
            (false, false) => 0,
        };
        let ws = if self.window_scale.is_some() { 4 } else { 0 };
        let partial = if self.partial_checksums { 4 } else { 0 };
        mss + ts_sack_ok + ws + partial
    }

    /// How many SACK blocks are emitted: those held, clamped to what fits after the other
    /// options in 40 bytes (RFC 2018 §3: three with timestamps, four without).
    fn emitted_sack_blocks(&self) -> usize {
        let room = MAX_OPTIONS_LEN.saturating_sub(self.fixed_len() + 4) / 8;
        self.sack.len().min(room)
    }

    /// Length of the options as emitted, a multiple of 4 and at most 40.
    #[inline]
    fn emitted_len(&self) -> usize {
        let n = self.emitted_sack_blocks();
        self.fixed_len() + if n > 0 { 4 + 8 * n } else { 0 }
    }

    /// Writes the options into `out` (at least [`emitted_len`](Self::emitted_len) bytes), each
    /// group NOP-padded to 4-byte alignment:
    ///
    /// MSS; SACK-permitted and timestamps, or NOP NOP timestamps, or NOP NOP SACK-permitted;
    /// NOP window scale; partial checksums; NOP NOP SACK. Returns the bytes written.
    fn write(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer { out, at: 0 };
        if let Some(mss) = self.mss {
            w.put(&[kind::MSS, 4])?;
            w.put(&mss.to_be_bytes())?;
        }
        match (self.timestamps, self.sack_permitted) {
            (Some(ts), sack_ok) => {
                if sack_ok {
                    w.put(&[kind::SACK_PERMITTED, 2])?;
                } else {
                    w.put(&[kind::NOP, kind::NOP])?;
                }
                w.put(&[kind::TIMESTAMPS, 10])?;
                w.put(&ts.0.to_be_bytes())?;
                w.put(&ts.1.to_be_bytes())?;
            }
            (None, true) => w.put(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2])?,
            (None, false) => {}
        }
        if let Some(shift) = self.window_scale {
            w.put(&[kind::NOP, kind::WINDOW_SCALE, 3, shift])?;
        }
        if self.partial_checksums {
            w.put(&[kind::EXPERIMENT, 4])?;
            w.put(&PARTIAL_CHECKSUMS_EXID.to_be_bytes())?;
        }
        let n = self.emitted_sack_blocks();
        if n > 0 {
            // 2 + 8n is at most 34.
            w.put(&[kind::NOP, kind::NOP, kind::SACK, (2 + 8 * n) as u8])?;
            for &(left, right) in self.sack.as_slice().iter().take(n) {
                w.put(&left.to_be_bytes())?;
                w.put(&right.to_be_bytes())?;
            }
        }
        Ok(w.at)
    }

    /// Decodes the option bytes of a header (RFC 9293 §3.2).
    ///
    /// END stops parsing, NOP is skipped, unknown kinds are skipped by their length. A length
    /// below 2, past the end, or wrong for a known kind is [`WireError::BadOption`]. When an
    /// option appears twice the last one wins.
    fn parse(mut bytes: &[u8]) -> Result<TcpOptions, WireError> {
        let mut opts = TcpOptions::default();
        while let Some((&k, rest)) = bytes.split_first() {
            match k {
                kind::END => break,
                kind::NOP => {
                    bytes = rest;
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*rest.first().ok_or(WireError::BadOption)?);
            if len < 2 {
                return Err(WireError::BadOption);
            }
            let body = bytes.get(2..len).ok_or(WireError::BadOption)?;
            match k {
                kind::MSS => {
                    let b: [u8; 2] = body.try_into().map_err(|_| WireError::BadOption)?;
                    opts.mss = Some(u16::from_be_bytes(b));
                }
                kind::WINDOW_SCALE => {
                    let [shift]: [u8; 1] = body.try_into().map_err(|_| WireError::BadOption)?;
                    opts.window_scale = Some(shift);
                }
                kind::SACK_PERMITTED => {
                    if !body.is_empty() {
                        return Err(WireError::BadOption);
                    }
                    opts.sack_permitted = true;
                }
                kind::SACK => {
                    if body.is_empty() || body.len() % 8 != 0 || body.len() > 32 {
                        return Err(WireError::BadOption);
                    }
                    let mut sack = SackBlocks::new();
                    let mut blocks = body;
                    while let Some((block, tail)) = blocks.split_first_chunk::<8>() {
                        let [a, b, c, d, e, f, g, h] = *block;
                        sack.push(
                            u32::from_be_bytes([a, b, c, d]),
                            u32::from_be_bytes([e, f, g, h]),
                        );
                        blocks = tail;
                    }
                    opts.sack = sack;
                }
                kind::TIMESTAMPS => {
                    let b: [u8; 8] = body.try_into().map_err(|_| WireError::BadOption)?;
                    let [a, b, c, d, e, f, g, h] = b;
                    opts.timestamps = Some((
                        u32::from_be_bytes([a, b, c, d]),
                        u32::from_be_bytes([e, f, g, h]),
                    ));
                }
                // Another experiment's identifier, or a longer body: not ours, skipped.
                kind::EXPERIMENT if body == PARTIAL_CHECKSUMS_EXID.to_be_bytes() => {
                    opts.partial_checksums = true;
                }
                _ => {}
            }
            bytes = bytes.get(len..).unwrap_or_default();
        }
        Ok(opts)
    }
}

/// Appends bytes to a buffer, failing rather than panicking when it runs out.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let end = self.at + bytes.len();
        self.out
            .get_mut(self.at..end)
            .ok_or(WireError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
}

/// A parsed TCP header: every field, options decoded. The payload travels beside it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number, significant only with [`TcpFlags::ACK`].
    pub ack: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Receive window, unscaled as on the wire.
    pub window: u16,
    /// Urgent pointer, significant only with [`TcpFlags::URG`].
    pub urgent: u16,
    /// Decoded options.
    pub options: TcpOptions,
}

impl TcpRepr {
    /// Parses a TCP segment (RFC 9293 §3.1), returning the header and the payload.
    ///
    /// `src` and `dst` are the IP addresses the segment travelled between; they enter the
    /// checksum through the pseudo-header ([`checksum::pseudo_header`]) and are not used
    /// otherwise. With `verify_checksum` false the checksum field is ignored (for segments
    /// whose checksum a NIC already verified).
    ///
    /// The four reserved bits between the data offset and CWR are ignored. Options are decoded
    /// as described on [`TcpOptions`]; window scale values are stored as received, even above
    /// the limit of 14 (RFC 7323 §2.3), which is the engine's to apply.
    ///
    /// # Errors
    ///
    /// - [`WireError::Truncated`]: fewer than 20 bytes.
    /// - [`WireError::BadDataOffset`]: data offset below 5 or past the segment.
    /// - [`WireError::BadChecksum`]: `verify_checksum` and the checksum does not verify.
    /// - [`WireError::BadOption`]: an option length below 2, running past the header, or wrong
    ///   for its kind (MSS 4, window scale 3, SACK-permitted 2, timestamps 10, SACK 2 + 8n with
    ///   n from 1 to 4).
    #[inline]
    pub fn parse(
        segment: &[u8],
        src: IpAddr,
        dst: IpAddr,
        verify_checksum: bool,
    ) -> Result<(TcpRepr, &[u8]), WireError> {
        let (h, _) = segment
            .split_first_chunk::<TCP_HEADER_LEN>()
            .ok_or(WireError::Truncated)?;
        let header_len = usize::from(h[12] >> 4) * 4;
        if header_len < TCP_HEADER_LEN {
            return Err(WireError::BadDataOffset);
        }
        let (header, payload) = segment
            .split_at_checked(header_len)
            .ok_or(WireError::BadDataOffset)?;
        if verify_checksum {
            let length = u32::try_from(segment.len()).map_err(|_| WireError::BadLength)?;
            let pseudo = checksum::pseudo_header(src, dst, IPPROTO_TCP, length);
            if checksum::finish(checksum::sum(segment, pseudo)) != 0 {
                return Err(WireError::BadChecksum);
            }
        }
        let options = TcpOptions::parse(header.get(TCP_HEADER_LEN..).unwrap_or_default())?;
        let repr = TcpRepr {
            src_port: u16::from_be_bytes([h[0], h[1]]),
            dst_port: u16::from_be_bytes([h[2], h[3]]),
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            flags: TcpFlags(h[13]),
            window: u16::from_be_bytes([h[14], h[15]]),
            urgent: u16::from_be_bytes([h[18], h[19]]),
            options,
        };
        Ok((repr, payload))
    }

    /// Length of the header [`emit`](TcpRepr::emit) writes: 20 bytes plus the options, a
    /// multiple of 4 and at most 60 (RFC 9293 §3.1 "Data Offset").
    #[inline]
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options.emitted_len()
    }

    /// Writes the header into the front of `segment` and fills in the checksum.
    ///
    /// `segment` must be exactly the whole segment: [`header_len`](TcpRepr::header_len) bytes
    /// of room for the header followed by the payload, already in place. The checksum covers
    /// the pseudo-header of `src` and `dst` (RFC 9293 §3.1) and all of `segment`.
    ///
    /// Options are laid out NOP-padded to 4-byte alignment: MSS; SACK-permitted with
    /// timestamps (or either alone after two NOPs); NOP and window scale; the
    /// partial-checksum option (kind 253, four bytes); two NOPs and SACK.
    /// SACK blocks beyond what fits in the 40 option bytes are left out (RFC 2018 §3), so
    /// three fit beside timestamps and four without. Reserved bits are sent as zero.
    ///
    /// # Errors
    ///
    /// - [`WireError::BufferTooSmall`]: `segment` is shorter than the header.
    /// - [`WireError::BadLength`]: `segment` is longer than a length field can describe.
    pub fn emit_header(
        &self,
        segment: &mut [u8],
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<(), WireError> {
        let header_len = self.header_len();
        let length = u32::try_from(segment.len()).map_err(|_| WireError::BadLength)?;
        // The payload is summed before the header is written, and the header after: the
        // header's bytes, written one field at a time and read back as words, cannot be
        // forwarded from the store buffer, and such a read waits for every store before it.
        // Written last, that is only the header; written first, it would also be whatever
        // copy put the payload in place, often just before (RFC 1071 §2(B): the pieces may
        // be summed in any order).
        let pseudo = checksum::pseudo_header(src, dst, IPPROTO_TCP, length);
        let payload_sum = checksum::sum(segment.get(header_len..).unwrap_or_default(), pseudo);
        self.emit_header_summed(segment, payload_sum)
    }

    /// Writes the header at the start of `segment` (which may hold just the header) with a
    /// checksum that covers it and `payload_sum`: the sum of the pseudo-header and the
    /// payload, wherever that lies ([`checksum::sum_parts`]). The pseudo-header's length
    /// must count the payload.
    ///
    /// # Errors
    ///
    /// [`WireError::BufferTooSmall`] when `segment` cannot hold the header.
    pub fn emit_header_summed(
        &self,
        segment: &mut [u8],
        payload_sum: u32,
    ) -> Result<(), WireError> {
        let header_len = self.header_len();
        let (h, rest) = segment
            .split_first_chunk_mut::<TCP_HEADER_LEN>()
            .ok_or(WireError::BufferTooSmall)?;
        let options = rest
            .get_mut(..header_len - TCP_HEADER_LEN)
            .ok_or(WireError::BufferTooSmall)?;
        self.options.write(options)?;

        h[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        h[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        h[4..8].copy_from_slice(&self.seq.to_be_bytes());
        h[8..12].copy_from_slice(&self.ack.to_be_bytes());
        // header_len is at most 60, so the data offset fits in the high nibble.
        h[12] = ((header_len / 4) as u8) << 4;
        h[13] = self.flags.0;
        h[14..16].copy_from_slice(&self.window.to_be_bytes());
        h[16..18].copy_from_slice(&[0, 0]);
        h[18..20].copy_from_slice(&self.urgent.to_be_bytes());

        let header = segment.get(..header_len).unwrap_or_default();
        let sum = checksum::finish(checksum::sum(header, payload_sum));
        if let Some(field) = segment.get_mut(16..18) {
            field.copy_from_slice(&sum.to_be_bytes());
        }
        Ok(())
    }

    /// Writes the whole segment, header then `payload`, into the front of `buf` and returns
    /// its length, `header_len() + payload.len()`. See [`emit_header`](TcpRepr::emit_header).
    ///
    /// # Errors
    ///
    /// - [`WireError::BufferTooSmall`]: `buf` cannot hold the segment.
    /// - [`WireError::BadLength`]: the segment is longer than a length field can describe.
    pub fn emit(
        &self,
        buf: &mut [u8],
        payload: &[u8],
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<usize, WireError> {
        let header_len = self.header_len();
        let total = header_len + payload.len();
        let segment = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
        segment
            .get_mut(header_len..)
            .ok_or(WireError::BufferTooSmall)?
            .copy_from_slice(payload);
        self.emit_header(segment, src, dst)?;
        Ok(total)
    }

    /// Sequence space the segment occupies (RFC 9293 §3.4): the payload, plus one for SYN and
    /// one for FIN.
    pub fn segment_len(&self, payload_len: usize) -> usize {
        payload_len
            + usize::from(self.flags.contains(TcpFlags::SYN))
            + usize::from(self.flags.contains(TcpFlags::FIN))
    }

    /// The segment in ladder notation, for logs: flags padded to 8 columns, then
    /// `S:{seq} A:{ack}`, then ` len={payload_len}` when there is a payload.
    ///
    /// ```
    /// use rawtcp::wire::{TcpFlags, TcpRepr};
    ///
    /// let repr = TcpRepr { flags: TcpFlags::PSH | TcpFlags::ACK, seq: 101, ack: 2001, ..Default::default() };
    /// assert_eq!(repr.ladder(100).to_string(), "PSH+ACK  S:101 A:2001 len=100");
    /// ```
    ///
    /// The acknowledgment field is printed as received even without ACK.
    pub fn ladder(&self, payload_len: usize) -> Ladder {
        Ladder {
            flags: self.flags,
            seq: self.seq,
            ack: self.ack,
            payload_len,
        }
    }
}

/// A segment in ladder notation, as returned by [`TcpRepr::ladder`]: `SYN+ACK  S:2000 A:101`,
/// `PSH+ACK  S:101 A:2001 len=100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ladder {
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    payload_len: usize,
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<8} S:{} A:{}", self.flags, self.seq, self.ack)?;
        if self.payload_len > 0 {
            write!(f, " len={}", self.payload_len)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    /// RFC 1071's definition, written out on its own: the complement of the one's complement
    /// sum of 16-bit words, odd byte padded with zero.
    fn reference_checksum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut acc: u64 = 0;
        for pair in bytes.chunks(2) {
            acc += u64::from(pair[0]) << 8 | u64::from(*pair.get(1).unwrap_or(&0));
        }
        while acc > 0xffff {
            acc = (acc >> 16) + (acc & 0xffff);
        }
        !(acc as u16)
    }

    fn ipv4_pseudo(src: [u8; 4], dst: [u8; 4], len: u16) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0, 6]);
        p.extend_from_slice(&len.to_be_bytes());
        p
    }

    /// A SYN as Linux sends it: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7,
    /// from 10.0.0.1:41668 to 10.0.0.2:80.
    const LINUX_SYN: [u8; 40] = [
        0xa2, 0xc4, 0x00, 0x50, // ports 41668 -> 80
        0x3b, 0x1a, 0x5c, 0x2e, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // data offset 10, SYN, window 64240
        0x84, 0x32, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, 0x08, 0x0a, // SACK-permitted, timestamps...
        0x00, 0x5e, 0x7a, 0x1f, // TSval
        0x00, 0x00, 0x00, 0x00, // TSecr
        0x01, 0x03, 0x03, 0x07, // NOP, window scale 7
    ];

    fn linux_syn_repr() -> TcpRepr {
        TcpRepr {
            src_port: 41668,
            dst_port: 80,
            seq: 0x3b1a_5c2e,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64240,
            urgent: 0,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                sack: SackBlocks::new(),
                timestamps: Some((0x005e_7a1f, 0)),
                partial_checksums: false,
            },
        }
    }

    /// A 20-byte header with the given data offset and flags, checksum not filled in.
    fn bare_header(data_offset: u8) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[12] = data_offset << 4;
        h
    }

    /// A segment whose header carries `options` (padded with END to a multiple of 4).
    fn with_options(options: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        while opts.len() % 4 != 0 {
            opts.push(0);
        }
        let mut seg = bare_header((5 + opts.len() / 4) as u8);
        seg.extend_from_slice(&opts);
        seg
    }

    #[test]
    fn linux_syn_known_answer() {
        // The checksum in LINUX_SYN agrees with RFC 1071 over the pseudo-header and segment.
        let mut zeroed = LINUX_SYN;
        zeroed[16] = 0;
        zeroed[17] = 0;
        let pseudo = ipv4_pseudo([10, 0, 0, 1], [10, 0, 0, 2], 40);
        assert_eq!(reference_checksum(&[&pseudo, &zeroed]), 0x8432);

        let (repr, payload) = TcpRepr::parse(&LINUX_SYN, A, B, true).unwrap();
        assert_eq!(repr, linux_syn_repr());
        assert!(payload.is_empty());

        // The emit layout is Linux's, byte for byte.
        assert_eq!(repr.header_len(), 40);
        let mut buf = [0u8; 60];
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert_eq!(buf[..n], LINUX_SYN);
    }

    #[test]
    fn partial_checksum_option_round_trips_and_foreign_experiments_are_skipped() {
        let mut repr = TcpRepr {
            flags: TcpFlags::SYN,
            options: TcpOptions {
                mss: Some(65_000),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((5, 0)),
                partial_checksums: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut buf = [0u8; 60];
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert_eq!(n, 20 + 24);
        assert_eq!(&buf[40..44], &[253, 4, 0x52, 0x54]);
        let (back, _) = TcpRepr::parse(&buf[..n], A, B, true).unwrap();
        assert_eq!(back, repr);

        // The same kind with another identifier, or a longer body, is another experiment.
        for foreign in [
            [253u8, 4, 0x12, 0x34, 1, 1, 1, 1],
            [253, 6, 0x52, 0x54, 0, 0, 1, 1],
        ] {
            let mut seg = [0u8; 28];
            seg[12] = 7 << 4;
            seg[20..].copy_from_slice(&foreign);
            let (parsed, _) = TcpRepr::parse(&seg, A, B, false).unwrap();
            assert!(!parsed.options.partial_checksums, "{foreign:?}");
        }

        // With every other option and SACK blocks, the option still fits and SACK gives way.
        repr.flags = TcpFlags::ACK;
        repr.options.sack.push(1, 2);
        repr.options.sack.push(3, 4);
        repr.options.sack.push(5, 6);
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert!(n <= 60);
        let (back, _) = TcpRepr::parse(&buf[..n], A, B, true).unwrap();
        assert!(back.options.partial_checksums);
        assert_eq!(back.options.sack.len(), 1);
    }

    #[test]
    fn emit_layouts() {
        let mut repr = TcpRepr::default();
        let mut buf = [0u8; 60];

        repr.options.timestamps = Some((1, 2));
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert_eq!(&buf[20..n], &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);

        repr.options = TcpOptions {
            sack_permitted: true,
            ..Default::default()
        };
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert_eq!(&buf[20..n], &[1, 1, 4, 2]);

        repr.options = TcpOptions {
            window_scale: Some(14),
            ..Default::default()
        };
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert_eq!(&buf[20..n], &[1, 3, 3, 14]);

        repr.options = TcpOptions::default();
        repr.options.sack.push(0x0102_0304, 0x0506_0708);
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert_eq!(&buf[20..n], &[1, 1, 5, 10, 1, 2, 3, 4, 5, 6, 7, 8]);

        repr.options = TcpOptions::default();
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert_eq!(n, 20);
        assert_eq!(buf[12], 0x50);
    }

    #[test]
    fn sack_blocks_are_clamped_to_fit() {
        let mut sack = SackBlocks::new();
        for i in 0..4 {
            assert!(sack.push(i * 10, i * 10 + 5));
        }
        assert!(!sack.push(100, 200));
        assert_eq!(sack.len(), 4);

        // Four blocks alone: 4 + 32 = 36 option bytes.
        let mut repr = TcpRepr::default();
        repr.options.sack = sack;
        assert_eq!(repr.header_len(), 56);

        // With timestamps only three fit: 12 + 4 + 24 = 40.
        repr.options.timestamps = Some((7, 8));
        assert_eq!(repr.header_len(), 60);
        let mut buf = [0u8; 60];
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        assert_eq!(n, 60);
        let (parsed, _) = TcpRepr::parse(&buf[..n], A, B, true).unwrap();
        assert_eq!(parsed.options.sack.as_slice(), &sack.as_slice()[..3]);
        assert_eq!(parsed.options.timestamps, Some((7, 8)));

        // With every SYN option, two fit: 20 + 4 + 16 = 40.
        repr.options.mss = Some(1460);
        repr.options.window_scale = Some(7);
        repr.options.sack_permitted = true;
        assert_eq!(repr.header_len(), 60);
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        let (parsed, _) = TcpRepr::parse(&buf[..n], A, B, true).unwrap();
        assert_eq!(parsed.options.sack.as_slice(), &sack.as_slice()[..2]);
    }

    #[test]
    fn sack_blocks_guard_a_bad_len() {
        let mut sack = SackBlocks {
            len: 200,
            blocks: [(1, 2), (3, 4), (5, 6), (7, 8)],
        };
        assert_eq!(sack.len(), 4);
        assert_eq!(sack.as_slice().len(), 4);
        assert!(!sack.push(9, 10));
        let mut repr = TcpRepr::default();
        repr.options.sack = sack;
        let mut buf = [0u8; 60];
        let n = repr.emit(&mut buf, &[], A, B).unwrap();
        let (parsed, _) = TcpRepr::parse(&buf[..n], A, B, true).unwrap();
        assert_eq!(parsed.options.sack.as_slice(), sack.as_slice());

        // Unused entries take no part in equality.
        let mut a = SackBlocks::new();
        a.push(1, 2);
        let b = SackBlocks {
            len: 1,
            blocks: [(1, 2), (9, 9), (9, 9), (9, 9)],
        };
        assert_eq!(a, b);
        assert!(SackBlocks::new().is_empty());
        a.clear();
        assert!(a.is_empty());
    }

    #[test]
    fn parse_skips_unknown_and_stops_at_end() {
        // NOP, an unknown kind 30 of length 4, MSS, END, then bytes that would be invalid.
        let seg = with_options(&[1, 30, 4, 0xff, 0xff, 2, 4, 0x05, 0xb4, 0, 2, 1, 0xee]);
        let (repr, _) = TcpRepr::parse(&seg, A, B, false).unwrap();
        assert_eq!(repr.options.mss, Some(1460));
        assert_eq!(repr.options.window_scale, None);
    }

    #[test]
    fn parse_ignores_reserved_bits_and_keeps_big_window_scale() {
        let mut seg = with_options(&[3, 3, 15]);
        seg[12] |= 0x0f;
        seg[13] = 0xff;
        let (repr, _) = TcpRepr::parse(&seg, A, B, false).unwrap();
        assert_eq!(repr.options.window_scale, Some(15));
        assert_eq!(repr.flags, TcpFlags(0xff));
    }

    #[test]
    fn parse_returns_the_payload() {
        let mut seg = bare_header(5);
        seg.extend_from_slice(b"hello");
        let (_, payload) = TcpRepr::parse(&seg, A, B, false).unwrap();
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn emit_header_matches_emit() {
        let repr = linux_syn_repr();
        let payload = b"payload bytes";
        let mut a = [0u8; 100];
        let n = repr.emit(&mut a, payload, A, B).unwrap();
        let mut b = vec![0u8; repr.header_len()];
        b.extend_from_slice(payload);
        repr.emit_header(&mut b, A, B).unwrap();
        assert_eq!(&a[..n], &b[..]);
    }

    #[test]
    fn error_truncated() {
        assert_eq!(
            TcpRepr::parse(&[0; 19], A, B, false),
            Err(WireError::Truncated)
        );
        assert_eq!(TcpRepr::parse(&[], A, B, true), Err(WireError::Truncated));
    }

    #[test]
    fn error_bad_data_offset() {
        assert_eq!(
            TcpRepr::parse(&bare_header(4), A, B, false),
            Err(WireError::BadDataOffset)
        );
        assert_eq!(
            TcpRepr::parse(&bare_header(0), A, B, false),
            Err(WireError::BadDataOffset)
        );
        // Offset 6 needs 24 bytes.
        assert_eq!(
            TcpRepr::parse(&bare_header(6), A, B, false),
            Err(WireError::BadDataOffset)
        );
    }

    #[test]
    fn error_bad_option() {
        // Each set of option bytes makes up the whole option space of its header.
        let bad: &[&[u8]] = &[
            &[30, 0, 1, 1],                        // length below 2
            &[1, 30, 1, 1],                        // length below 2
            &[30, 9, 0, 0],                        // past the header
            &[1, 1, 1, 2],                         // length byte past the header
            &[2, 3, 0, 0],                         // MSS of length 3
            &[2, 5, 0, 0, 0, 0, 0, 0],             // MSS of length 5
            &[3, 2, 1, 1],                         // window scale of length 2
            &[3, 4, 0, 0],                         // window scale of length 4
            &[4, 3, 0, 0],                         // SACK-permitted of length 3
            &[8, 8, 0, 0, 0, 0, 0, 0],             // timestamps of length 8
            &[8, 10, 0, 0, 0, 0, 0, 0],            // timestamps past the header
            &[5, 2, 1, 1],                         // SACK with no block
            &[5, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // SACK not 2 + 8n
        ];
        for opts in bad {
            let seg = with_options(opts);
            assert_eq!(seg.len(), 20 + opts.len());
            assert_eq!(
                TcpRepr::parse(&seg, A, B, false),
                Err(WireError::BadOption),
                "options {opts:?}"
            );
        }
        // Four SACK blocks fill 34 of the 40 option bytes; a fifth can never fit.
        let mut four = vec![1, 1, 5, 34];
        four.resize(36, 0);
        let (repr, _) = TcpRepr::parse(&with_options(&four), A, B, false).unwrap();
        assert_eq!(repr.options.sack.len(), 4);
        let mut five = vec![5, 42];
        five.resize(40, 0);
        assert_eq!(
            TcpRepr::parse(&with_options(&five), A, B, false),
            Err(WireError::BadOption)
        );
    }

    #[test]
    fn error_bad_checksum() {
        let mut seg = LINUX_SYN;
        seg[16] ^= 0x01;
        assert_eq!(
            TcpRepr::parse(&seg, A, B, true),
            Err(WireError::BadChecksum)
        );
        // A wrong address breaks the pseudo-header.
        let c = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(
            TcpRepr::parse(&LINUX_SYN, A, c, true),
            Err(WireError::BadChecksum)
        );
        // Not verifying accepts it.
        assert!(TcpRepr::parse(&seg, A, B, false).is_ok());
    }

    #[test]
    fn error_buffer_too_small() {
        let repr = linux_syn_repr();
        let mut buf = [0u8; 45];
        assert_eq!(
            repr.emit(&mut buf, &[0; 6], A, B),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(
            repr.emit(&mut buf[..39], &[], A, B),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(
            repr.emit_header(&mut buf[..39], A, B),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(
            repr.emit_header(&mut buf[..10], A, B),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(repr.emit(&mut buf, &[0; 5], A, B), Ok(45));
    }

    #[test]
    fn flags_ops() {
        let mut f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN));
        assert!(f.contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(f.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert!(!f.intersects(TcpFlags::FIN | TcpFlags::RST));
        f.remove(TcpFlags::SYN);
        assert_eq!(f, TcpFlags::ACK);
        f.insert(TcpFlags::FIN);
        assert_eq!(f, TcpFlags::FIN | TcpFlags::ACK);
        f |= TcpFlags::PSH;
        assert_eq!(f.bits(), 0x19);
        assert_eq!(f & TcpFlags::PSH, TcpFlags::PSH);
        f &= !TcpFlags::PSH;
        assert_eq!(f, TcpFlags::FIN | TcpFlags::ACK);
        assert!(TcpFlags::NONE.is_empty());
        assert!(TcpFlags::default().is_empty());
        assert!(f.contains(TcpFlags::NONE));
    }

    #[test]
    fn flags_display() {
        let cases = [
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::SYN | TcpFlags::ACK, "SYN+ACK"),
            (TcpFlags::PSH | TcpFlags::ACK, "PSH+ACK"),
            (TcpFlags::FIN | TcpFlags::ACK, "FIN+ACK"),
            (TcpFlags::RST | TcpFlags::ACK, "RST+ACK"),
            (TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK, "FIN+PSH+ACK"),
            (TcpFlags::URG | TcpFlags::ECE | TcpFlags::CWR, "URG+ECE+CWR"),
            (TcpFlags(0xff), "SYN+FIN+RST+URG+PSH+ACK+ECE+CWR"),
            (TcpFlags::NONE, "none"),
        ];
        for (flags, text) in cases {
            assert_eq!(flags.to_string(), text);
        }
        assert_eq!(format!("{:<8}|", TcpFlags::SYN), "SYN     |");
        assert_eq!(
            format!("{:>8}|", TcpFlags::SYN | TcpFlags::ACK),
            " SYN+ACK|"
        );
        assert_eq!(
            format!("{:<4}|", TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK),
            "FIN+PSH+ACK|"
        );
        assert_eq!(format!("{:?}", TcpFlags::RST), "TcpFlags(RST)");
    }

    #[test]
    fn ladder_display() {
        let synack = TcpRepr {
            flags: TcpFlags::SYN | TcpFlags::ACK,
            seq: 2000,
            ack: 101,
            ..Default::default()
        };
        assert_eq!(synack.ladder(0).to_string(), "SYN+ACK  S:2000 A:101");
        let data = TcpRepr {
            flags: TcpFlags::PSH | TcpFlags::ACK,
            seq: 101,
            ack: 2001,
            ..Default::default()
        };
        assert_eq!(
            data.ladder(100).to_string(),
            "PSH+ACK  S:101 A:2001 len=100"
        );
        let syn = TcpRepr {
            flags: TcpFlags::SYN,
            seq: 100,
            ..Default::default()
        };
        assert_eq!(syn.ladder(0).to_string(), "SYN      S:100 A:0");
        let fin = TcpRepr {
            flags: TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK,
            seq: 5,
            ack: 6,
            ..Default::default()
        };
        assert_eq!(fin.ladder(1).to_string(), "FIN+PSH+ACK S:5 A:6 len=1");
    }

    #[test]
    fn segment_len_counts_syn_and_fin() {
        let mut repr = TcpRepr::default();
        assert_eq!(repr.segment_len(0), 0);
        assert_eq!(repr.segment_len(10), 10);
        repr.flags = TcpFlags::SYN;
        assert_eq!(repr.segment_len(0), 1);
        repr.flags = TcpFlags::SYN | TcpFlags::FIN;
        assert_eq!(repr.segment_len(3), 5);
        repr.flags = TcpFlags::FIN | TcpFlags::ACK;
        assert_eq!(repr.segment_len(3), 4);
    }

    /// Arbitrary addresses of one family.
    pub(crate) fn arb_addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<[u8; 4]>())
                .prop_map(|(s, d)| (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into())),
            (any::<[u8; 16]>(), any::<[u8; 16]>())
                .prop_map(|(s, d)| (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())),
        ]
    }

    /// Arbitrary options, with no more SACK blocks than fit beside the others.
    pub(crate) fn arb_options() -> impl Strategy<Value = TcpOptions> {
        (
            any::<Option<u16>>(),
            any::<Option<u8>>(),
            any::<bool>(),
            any::<Option<(u32, u32)>>(),
            proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
            any::<bool>(),
        )
            .prop_map(
                |(mss, window_scale, sack_permitted, timestamps, blocks, partial)| {
                    let fixed = 4 * usize::from(mss.is_some())
                        + 4 * usize::from(partial)
                        + if timestamps.is_some() {
                            12
                        } else {
                            4 * usize::from(sack_permitted)
                        }
                        + 4 * usize::from(window_scale.is_some());
                    let room = (40 - fixed - 4) / 8;
                    let mut sack = SackBlocks::new();
                    for &(l, r) in blocks.iter().take(room) {
                        sack.push(l, r);
                    }
                    TcpOptions {
                        mss,
                        window_scale,
                        sack_permitted,
                        sack,
                        timestamps,
                        partial_checksums: partial,
                    }
                },
            )
    }

    /// Arbitrary headers whose options all fit.
    pub(crate) fn arb_tcp_repr() -> impl Strategy<Value = TcpRepr> {
        (any::<(u16, u16, u32, u32, u8, u16, u16)>(), arb_options()).prop_map(
            |((src_port, dst_port, seq, ack, flags, window, urgent), options)| TcpRepr {
                src_port,
                dst_port,
                seq,
                ack,
                flags: TcpFlags(flags),
                window,
                urgent,
                options,
            },
        )
    }

    proptest! {
        #[test]
        fn emit_parse_roundtrip(
            repr in arb_tcp_repr(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            (src, dst) in arb_addr_pair(),
        ) {
            let header_len = repr.header_len();
            prop_assert!(header_len % 4 == 0 && (20..=60).contains(&header_len));
            let mut buf = vec![0u8; 60 + payload.len()];
            let n = repr.emit(&mut buf, &payload, src, dst).unwrap();
            prop_assert_eq!(n, header_len + payload.len());
            prop_assert_eq!(usize::from(buf[12] >> 4) * 4, header_len);

            // The checksum verifies by RFC 1071 as well as by parse.
            let seg = &buf[..n];
            let pseudo = checksum::pseudo_header(src, dst, 6, n as u32);
            prop_assert_eq!(checksum::finish(checksum::sum(seg, pseudo)), 0);

            let (parsed, parsed_payload) = TcpRepr::parse(seg, src, dst, true).unwrap();
            prop_assert_eq!(parsed, repr);
            prop_assert_eq!(parsed_payload, &payload[..]);
        }

        #[test]
        fn clamped_sack_still_roundtrips_the_rest(
            repr in arb_tcp_repr(),
            blocks in proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
        ) {
            let mut repr = repr;
            repr.options.sack = SackBlocks::new();
            for (l, r) in blocks {
                repr.options.sack.push(l, r);
            }
            let mut buf = [0u8; 60];
            let n = repr.emit(&mut buf, &[], A, B).unwrap();
            prop_assert_eq!(n, repr.header_len());
            prop_assert!(n <= 60);
            let (parsed, _) = TcpRepr::parse(&buf[..n], A, B, true).unwrap();
            let kept = parsed.options.sack.len();
            prop_assert_eq!(parsed.options.sack.as_slice(), &repr.options.sack.as_slice()[..kept]);
            let mut expected = repr;
            expected.options.sack = parsed.options.sack;
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn any_single_bit_flip_is_caught(
            repr in arb_tcp_repr(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            (src, dst) in arb_addr_pair(),
            bit in any::<prop::sample::Index>(),
        ) {
            let mut buf = vec![0u8; 60 + payload.len()];
            let n = repr.emit(&mut buf, &payload, src, dst).unwrap();
            let seg = &mut buf[..n];
            let bit = bit.index(n * 8);
            seg[bit / 8] ^= 1 << (bit % 8);
            match TcpRepr::parse(seg, src, dst, true) {
                Err(_) => {}
                Ok((parsed, parsed_payload)) => {
                    prop_assert!(parsed != repr || parsed_payload != &payload[..]);
                }
            }
            // A single-bit error always changes the one's complement sum.
            prop_assert!(TcpRepr::parse(seg, src, dst, true).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            (src, dst) in arb_addr_pair(),
        ) {
            let _ = TcpRepr::parse(&bytes, src, dst, true);
            let _ = TcpRepr::parse(&bytes, src, dst, false);
        }

        #[test]
        fn mutated_segments_never_panic(
            repr in arb_tcp_repr(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = [0u8; 60];
            let n = repr.emit(&mut buf, &[], A, B).unwrap();
            for (at, byte) in edits {
                buf[at.index(n)] = byte;
            }
            let seg = &buf[..=cut.index(n)];
            if let Ok((parsed, _)) = TcpRepr::parse(seg, A, B, false) {
                // Whatever parses can be emitted again.
                let mut out = [0u8; 100];
                prop_assert!(parsed.emit(&mut out, &[], A, B).is_ok());
            }
            let _ = TcpRepr::parse(seg, A, B, true);
        }
    }
}
