//! Receiving many datagrams in one system call (Linux `recvmmsg`), straight into the free
//! slots of the stack's receive batch: UDP datagrams carrying packets (the UDP datapath) and
//! IPv4 packets from a raw socket (the raw datapath); and sending many in one (`sendmmsg`),
//! straight from the slots of the stack's transmit batch (the raw datapath, through rustix:
//! nix's `sendmmsg` results iterator reads address fields a send leaves unwritten).
//!
//! A batch of arriving segments costs one system call instead of one each, and a call that
//! returns fewer datagrams than it had room for shows that the socket was empty at that
//! moment: the caller then clears the socket's readiness without the extra call that would
//! fail with `EAGAIN` (tokio keeps the readiness if a datagram arrived since).
//!
//! Through nix's safe `recvmmsg` (the crate forbids `unsafe`). Its message headers are kept
//! per thread and per address family rather than allocated at each call: the kernel writes
//! the sender's address length into them, which stays right for the next call only while
//! the family is the same (an IPv4 socket's senders are all `sockaddr_in`, an IPv6 socket's
//! all `sockaddr_in6`, IPv4-mapped ones included). quinn-udp's receive path reads into
//! buffers and metadata of its own, where the datagrams here must land in the batch's slots.

use crate::datapath::Batch;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6, SockaddrLike};
use std::cell::RefCell;
use std::io::IoSlice;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::LocalKey;

/// Datagrams one call receives at most (the stack's receive batch holds 64).
pub(crate) const MAX: usize = 64;

thread_local! {
    static V4: RefCell<Option<MultiHeaders<SockaddrIn>>> = const { RefCell::new(None) };
    static V6: RefCell<Option<MultiHeaders<SockaddrIn6>>> = const { RefCell::new(None) };
}

/// Sends `packets` (at most [`MAX`]), each to the matching address of `dsts`, from `fd`
/// in one system call, without blocking. Returns how many the kernel took: all of them,
/// or those before the first it refused (whose error a send of that one alone reports);
/// `Err` when it refused the first. Through rustix's safe `sendmmsg`.
pub(crate) fn send_each(
    fd: std::os::fd::BorrowedFd<'_>,
    packets: &[&[u8]],
    dsts: &[SocketAddr],
) -> io::Result<usize> {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags};
    let n = packets.len().min(dsts.len()).min(MAX);
    if n == 0 {
        return Ok(0);
    }
    let addrs: Vec<_> = dsts[..n].iter().map(|d| d.as_any()).collect();
    let iov: Vec<[IoSlice<'_>; 1]> = packets[..n].iter().map(|p| [IoSlice::new(p)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
        (0..n).map(|_| SendAncillaryBuffer::default()).collect();
    let mut msgs: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iov)
        .zip(controls.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    Ok(sendmmsg(fd, &mut msgs, SendFlags::DONTWAIT)?)
}

/// The fewest datagrams a first `recvmmsg` of a drain offers room for (see [`Offer`]).
const MIN_OFFER: usize = 4;

/// How many datagrams a drain's first `recvmmsg` offers room for: twice what the last drain
/// took (all, when it stopped before finding the socket empty), at least [`MIN_OFFER`], at
/// most [`MAX`]. The call's cost grows with the
/// room offered (a message header is filled in for each, by nix and by the kernel), and in a
/// request-response exchange one datagram is all there is: offering 64 each time cost
/// about 1,500 instructions of the 2,100 a call took, twice a round trip (callgrind). A
/// call that fills what it offered leaves the socket's readiness set; the next offers
/// [`MAX`].
#[derive(Debug)]
pub(crate) struct Offer(AtomicUsize);

impl Default for Offer {
    fn default() -> Offer {
        Offer(AtomicUsize::new(MAX))
    }
}

impl Offer {
    /// Room for a drain's first call.
    pub fn first(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// A drain ended, having taken `took` datagrams ([`MAX`] when it stopped before the
    /// socket was empty). A drain that took nothing (readiness left set after `recv_now`
    /// emptied the socket, or a socket polled that had nothing) teaches nothing.
    pub fn learn(&self, took: usize) {
        if took > 0 {
            self.0.store(
                took.saturating_mul(2).clamp(MIN_OFFER, MAX),
                Ordering::Relaxed,
            );
        }
    }
}

/// One datagram received into a batch slot.
pub(crate) struct Datagram {
    /// The slot, counted over all of the batch's slots (at or after its first free one).
    pub slot: usize,
    /// Bytes received (at most the slot's size).
    pub len: usize,
    /// Where it came from.
    pub from: Option<SocketAddr>,
    /// The datagram was larger than the slot (`MSG_TRUNC`).
    pub truncated: bool,
}

/// Receives up to `max` datagrams (at most [`MAX`], at most the free slots) from `fd`, a
/// socket of family `v6`, without blocking, each into the next free slot of `batch` in
/// turn, and calls `each` for every one in order. The slots are not committed: `each` keeps
/// a datagram with [`Batch::commit_received`]. Returns how many datagrams came and how many
/// there was room for; `WouldBlock` when none was waiting.
pub(crate) fn recv_into(
    fd: RawFd,
    v6: bool,
    batch: &mut Batch,
    max: usize,
    each: impl FnMut(&mut Batch, Datagram),
) -> io::Result<(usize, usize)> {
    // The arrays a call lends the kernel are sized for the room offered: a few when few
    // are expected (see [`Offer`]), else all.
    let v4 = |a: SockaddrIn| SocketAddr::V4(a.into());
    let v6_addr = |a: SockaddrIn6| SocketAddr::V6(a.into());
    match (v6, max <= MIN_OFFER * 2) {
        (true, true) => recv_with::<_, { MIN_OFFER * 2 }>(&V6, v6_addr, fd, batch, max, each),
        (true, false) => recv_with::<_, MAX>(&V6, v6_addr, fd, batch, max, each),
        (false, true) => recv_with::<_, { MIN_OFFER * 2 }>(&V4, v4, fd, batch, max, each),
        (false, false) => recv_with::<_, MAX>(&V4, v4, fd, batch, max, each),
    }
}

/// Runs `recv` (a [`recv_into`] on `sock`, which polled readable, returning how many
/// datagrams came and how many there was room for) inside tokio's readiness tracking. A
/// call that fills fewer slots than it offered found the socket empty: it is reported to
/// tokio as `WouldBlock`, which clears the readiness (unless a datagram came since) without
/// a further call to hear `EAGAIN`. Returns whether the socket was found empty (poll it
/// again, which registers the waker).
pub(crate) fn clearing_readiness(
    sock: &super::registered::RecvSocket,
    recv: impl FnOnce() -> io::Result<(usize, usize)>,
) -> io::Result<bool> {
    let r = sock.try_io(tokio::io::Interest::READABLE, || {
        let (got, room) = recv()?;
        if got < room {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match r {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
        Err(e) => Err(e),
    }
}

fn recv_with<S: Copy + SockaddrLike + 'static, const N: usize>(
    headers: &'static LocalKey<RefCell<Option<MultiHeaders<S>>>>,
    to_addr: fn(S) -> SocketAddr,
    fd: RawFd,
    batch: &mut Batch,
    max: usize,
    mut each: impl FnMut(&mut Batch, Datagram),
) -> io::Result<(usize, usize)> {
    let base = batch.len();
    // What each datagram was, gathered while the slots are lent to the system call.
    let mut seen = [(0usize, None::<SocketAddr>, false); N];
    let (got, room) = headers.with(|cell| -> io::Result<(usize, usize)> {
        let mut cell = cell.borrow_mut();
        let headers = cell.get_or_insert_with(|| MultiHeaders::preallocate(MAX, None));
        let mut free = batch.free_slots().take(max.min(N));
        let mut room = 0;
        let mut iov: [[IoSliceMut<'_>; 1]; N] = std::array::from_fn(|_| {
            [IoSliceMut::new(match free.next() {
                Some(slot) => {
                    room += 1;
                    slot
                }
                None => &mut [],
            })]
        });
        if room == 0 {
            return Ok((0, 0));
        }
        let results = recvmmsg(
            fd,
            headers,
            iov[..room].iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        let mut got = 0;
        for (i, msg) in results.enumerate() {
            seen[i] = (
                msg.bytes,
                msg.address.map(to_addr),
                msg.flags.contains(MsgFlags::MSG_TRUNC),
            );
            got = i + 1;
        }
        Ok((got, room))
    })?;
    for (i, &(len, from, truncated)) in seen[..got].iter().enumerate() {
        each(
            batch,
            Datagram {
                slot: base + i,
                len: len.min(batch.slot_size()),
                from,
                truncated,
            },
        );
    }
    Ok((got, room))
}
