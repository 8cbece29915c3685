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
    if v6 {
        recv_with(
            &V6,
            |a: SockaddrIn6| SocketAddr::V6(a.into()),
            fd,
            batch,
            max,
            each,
        )
    } else {
        recv_with(
            &V4,
            |a: SockaddrIn| SocketAddr::V4(a.into()),
            fd,
            batch,
            max,
            each,
        )
    }
}

/// Runs `recv` (a [`recv_into`] on `sock`, which polled readable, returning how many
/// datagrams came and how many there was room for) inside tokio's readiness tracking. A
/// call that fills fewer slots than it offered found the socket empty: it is reported to
/// tokio as `WouldBlock`, which clears the readiness (unless a datagram came since) without
/// a further call to hear `EAGAIN`. Returns whether the socket was found empty (poll it
/// again, which registers the waker).
pub(crate) fn clearing_readiness(
    sock: &tokio::net::UdpSocket,
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

fn recv_with<S: Copy + SockaddrLike + 'static>(
    headers: &'static LocalKey<RefCell<Option<MultiHeaders<S>>>>,
    to_addr: fn(S) -> SocketAddr,
    fd: RawFd,
    batch: &mut Batch,
    max: usize,
    mut each: impl FnMut(&mut Batch, Datagram),
) -> io::Result<(usize, usize)> {
    let base = batch.len();
    // What each datagram was, gathered while the slots are lent to the system call.
    let mut seen = [(0usize, None::<SocketAddr>, false); MAX];
    let (got, room) = headers.with(|cell| -> io::Result<(usize, usize)> {
        let mut cell = cell.borrow_mut();
        let headers = cell.get_or_insert_with(|| MultiHeaders::preallocate(MAX, None));
        let mut free = batch.free_slots().take(max.min(MAX));
        let mut room = 0;
        let mut iov: [[IoSliceMut<'_>; 1]; MAX] = std::array::from_fn(|_| {
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
