//! Sending a train of equal-sized datagrams in one system call: UDP generic segmentation
//! offload (Linux `UDP_SEGMENT`, since 4.18).
//!
//! One `sendmsg` carries up to [`MAX_SEGMENTS`] packets laid end to end (one `iovec` each,
//! read straight from the batch's slots) with a `UDP_SEGMENT` control message giving their
//! size; the kernel cuts the buffer into that many datagrams to one destination, all of that
//! size but the last, which may be shorter. The protocol work the kernel does once per call
//! (socket lookup, route, `sendmsg` entry and exit) is then paid once per train instead of
//! once per packet: for segments that fit a 1500-byte path that is most of what a send costs.
//! A device that segments in hardware cuts the train itself; otherwise the kernel does it in
//! software just before the device, still after the shared work.
//!
//! The stack's segments of one connection come out of the engine back to back and of one
//! size (the MSS) but for the last of a burst, which is exactly what a train needs. Loopback
//! remotes get 64 KiB segments, one per datagram, and gain nothing: trains matter off
//! loopback.
//!
//! Through nix's safe `sendmsg` (the crate forbids `unsafe`); quinn-udp wraps the same call
//! but takes one contiguous buffer, where the packets here sit in separate slots.

use nix::sys::socket::{getsockopt, sendmsg, sockopt, ControlMessage, MsgFlags, SockaddrStorage};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

/// Packets one train carries at most (the kernel's `UDP_MAX_SEGMENTS`).
pub(super) const MAX_SEGMENTS: usize = 64;
/// Bytes one train carries at most: one UDP datagram's worth of payload.
pub(super) const MAX_BYTES: usize = 65_507;
/// Packets at most this large travel in trains (the 64 KiB packets to loopback remotes go
/// alone).
pub(super) const MAX_SEGMENT: usize = 9_000;

/// Whether the kernel knows `UDP_SEGMENT` (asked on one of the datapath's sockets): reading
/// the option works exactly when setting it per message does.
pub(super) fn supported(sock: &impl AsFd) -> bool {
    getsockopt(sock, sockopt::UdpGsoSegment).is_ok()
}

/// A train being gathered: consecutive packets of one batch for one socket and destination,
/// all of one size but possibly the last.
#[derive(Debug, Default)]
pub(super) struct Train {
    /// Packets so far.
    pub count: usize,
    /// The size of every packet but possibly the last.
    pub size: usize,
    /// Bytes so far.
    pub bytes: usize,
    /// The last packet was shorter than `size`: nothing more may join.
    pub closed: bool,
}

impl Train {
    /// Starts a train with a packet of `len` bytes.
    pub fn start(len: usize) -> Train {
        Train {
            count: 1,
            size: len,
            bytes: len,
            closed: false,
        }
    }

    /// Adds the next packet if it may travel in this train: not more than the train's size
    /// (a shorter one closes it), within the kernel's limits.
    pub fn join(&mut self, len: usize) -> bool {
        if self.closed
            || len > self.size
            || len == 0
            || self.count == MAX_SEGMENTS
            || self.bytes + len > MAX_BYTES
        {
            return false;
        }
        self.count += 1;
        self.bytes += len;
        self.closed = len < self.size;
        true
    }
}

/// Sends `packets` (two or more, all of `size` bytes but possibly the last, which is not
/// larger) from `sock` to `dst` as one train. All are sent or none: the error says why.
pub(super) fn send_train(
    sock: &impl AsRawFd,
    dst: SocketAddr,
    size: usize,
    packets: &[&[u8]],
) -> io::Result<()> {
    let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS];
    let n = packets.len().min(MAX_SEGMENTS);
    for (slot, p) in iov.iter_mut().zip(packets) {
        *slot = IoSlice::new(p);
    }
    let segment = u16::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
    sendmsg(
        sock.as_raw_fd(),
        &iov[..n],
        &cmsg,
        MsgFlags::MSG_DONTWAIT,
        Some(&SockaddrStorage::from(dst)),
    )
    .map(|_| ())
    .map_err(io::Error::from)
}
