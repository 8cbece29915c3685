//! The wire layer: bytes in, typed headers out, and back.
//!
//! This module owns the formats of IPv4 (RFC 791), IPv6 (RFC 8200) and TCP (RFC 9293 §3.1)
//! headers, the TCP options of RFC 9293, RFC 7323 and RFC 2018, and the internet checksum
//! (RFC 1071) with its pseudo-headers. It knows nothing of connection state, time or sockets.
//! Every malformed input is a typed [`WireError`], never a panic.

// Hostile bytes must never panic: no indexing or slicing that could go out of bounds.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod checksum;
pub mod ip;
pub mod tcp;
pub mod view;

/// How many pieces a payload kept outside its packet may lie in ([`Pieces`]).
pub const PIECES: usize = 4;

/// A payload kept where it lies rather than copied into its packet: up to [`PIECES`]
/// slices in order, the unused ones empty. The stack's send buffer hands these out, and a
/// datapath that sends a packet from several places sends them after the headers.
pub type Pieces = [bytes::Bytes; PIECES];

pub use ip::{
    complete_partial_checksum, emit_tcp_headers_for, emit_tcp_headers_in_place, emit_tcp_packet,
    parse_tcp_packet, IpRepr, Ipv4Repr, Ipv6Repr, IPPROTO_TCP,
};
pub use tcp::{
    Ladder, SackBlocks, TcpFlags, TcpOptions, TcpRepr, PARTIAL_CHECKSUMS_EXID, TCP_HEADER_LEN,
    TCP_MAX_HEADER_LEN,
};

use std::fmt;

/// Why a buffer could not be parsed (or emitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer is shorter than the header (or the lengths inside it) require.
    Truncated,
    /// The IP version nibble is neither 4 nor 6 (or not the one asked for).
    BadVersion,
    /// The IPv4 IHL is below 5 or points past the packet.
    BadHeaderLength,
    /// Length fields disagree with each other or with the buffer.
    BadLength,
    /// The TCP data offset is below 5 or points past the segment.
    BadDataOffset,
    /// A TCP option's length byte is invalid (below 2, past the header, or wrong for its kind).
    BadOption,
    /// The checksum does not verify.
    BadChecksum,
    /// The packet does not carry TCP.
    NotTcp,
    /// The IPv4 packet is a fragment, which this stack does not reassemble.
    Fragmented,
    /// An IPv6 extension header this stack does not walk (or a chain that does not end in TCP).
    UnsupportedExtension,
    /// The output buffer is too small for what is being emitted.
    BufferTooSmall,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            WireError::Truncated => "truncated packet",
            WireError::BadVersion => "bad IP version",
            WireError::BadHeaderLength => "bad IPv4 header length",
            WireError::BadLength => "inconsistent length fields",
            WireError::BadDataOffset => "bad TCP data offset",
            WireError::BadOption => "malformed TCP option",
            WireError::BadChecksum => "bad checksum",
            WireError::NotTcp => "not a TCP packet",
            WireError::Fragmented => "IPv4 fragment",
            WireError::UnsupportedExtension => "unsupported IPv6 extension header",
            WireError::BufferTooSmall => "output buffer too small",
        };
        f.write_str(s)
    }
}

impl std::error::Error for WireError {}
