//! Datapaths: how IP packets leave and enter a [`Stack`](crate::Stack).
//!
//! A datapath moves batches of complete IP packets (IPv4 or IPv6 header, TCP header, payload)
//! between the stack and some network: an in-process simulated network ([`sim`]), UDP
//! datagrams between processes ([`udp`]), raw IP sockets ([`raw`]) and a TUN device (`tun`).
//! [`pcap`] records what crosses any of them. It knows
//! nothing about TCP state; the stack tells it which local addresses and ports it uses so
//! that it can claim them (bind a socket, install a filter) and release them.

#[cfg(target_os = "linux")]
mod mmsg;
pub mod pcap;
mod ports;
pub mod raw;
pub(crate) mod registered;
pub mod sim;
#[cfg(target_os = "linux")]
pub mod tun;
pub mod udp;

use crate::wire::Pieces;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

/// A reusable batch of packets: `capacity` slots of `slot_size` bytes each, in one
/// allocation.
///
/// Receiving fills slots from the front; sending reads them. Nothing is allocated per packet,
/// with one exception: a received packet can be [`share`](Self::share)d, so that a
/// connection keeps its payload in the slot it arrived in instead of copying it into its
/// receive buffer. The shared slot's storage is then the receiver's until it is read; the
/// batch takes it back for a later packet once nobody else holds it, or allocates another.
///
/// ```
/// use rawtcp::datapath::Batch;
/// let mut b = Batch::new(4, 1500);
/// b.push(&[0x45, 0, 0, 20]).unwrap();
/// assert_eq!(b.len(), 1);
/// assert_eq!(b.get(0), &[0x45, 0, 0, 20]);
/// b.clear();
/// assert!(b.is_empty());
/// ```
pub struct Batch {
    /// Each slot's storage: `slot_size` bytes, or empty after it was shared out until the
    /// slot is used again.
    slots: Vec<BytesMut>,
    /// The storage of packets shared out since the last [`clear`](Self::clear), by slot.
    shared: Vec<Option<Bytes>>,
    /// Whether any entry of `shared` is set.
    any_shared: bool,
    /// Storage shared out before, oldest first, taken back once unique.
    lent: VecDeque<Bytes>,
    /// Each packet's start within its slot and length.
    lens: Vec<(usize, usize)>,
    /// Each packet's carrier address, for datapaths that carry packets inside another
    /// protocol (UDP): where a received packet came from, where a sent one must go.
    carriers: Vec<Option<SocketAddr>>,
    /// Each packet's attached payload (see [`attached`](Batch::attached)); `None` for a
    /// packet that lies whole in its slot.
    attached: Vec<Option<Box<Pieces>>>,
    slot_size: usize,
    capacity: usize,
    /// Set by the `poll_recv` that last added packets when it also found every source empty
    /// (see [`set_drained`](Batch::set_drained)).
    drained: bool,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.lens.len())
            .field("capacity", &self.capacity)
            .field("slot_size", &self.slot_size)
            .field("lent", &self.lent.len())
            .finish()
    }
}

/// The attached payload of a packet that has none.
static NO_PIECES: Pieces = [const { Bytes::new() }; crate::wire::PIECES];

/// How many slots' worth of shared storage a batch remembers to take back: as many as it
/// has slots, so that what it holds when traffic stops is at most twice its own size.
const LENT_PER_SLOT: usize = 1;

/// How many remembered storages one refill looks at before allocating: the oldest are
/// read first, so a look further down the queue rarely finds a free one.
const RECLAIM_LOOKS: usize = 2;

impl Batch {
    /// A batch of `capacity` packets of at most `slot_size` bytes each.
    pub fn new(capacity: usize, slot_size: usize) -> Batch {
        // One zeroed allocation cut into the slots, as one `calloc`: a large one is mapped
        // fresh from the kernel, and its pages become resident only where packets are
        // written (a 64-slot batch of 64 KiB slots carrying small packets costs a page a
        // slot, not 4 MiB). Storage that replaces a shared slot is a slot's size alone.
        let mut region = BytesMut::zeroed(capacity * slot_size);
        Batch {
            slots: (0..capacity).map(|_| region.split_to(slot_size)).collect(),
            shared: vec![None; capacity],
            any_shared: false,
            lent: VecDeque::new(),
            lens: Vec::with_capacity(capacity),
            carriers: Vec::with_capacity(capacity),
            attached: Vec::with_capacity(capacity),
            slot_size,
            capacity,
            drained: false,
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Whether every slot is used.
    pub fn is_full(&self) -> bool {
        self.lens.len() == self.capacity
    }

    /// How many packets fit.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest packet a slot holds.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Tells the stack that the [`Datapath::poll_recv`] that is adding packets also found
    /// every source empty and registered the waker with each, as the `Pending` of one more
    /// call would have: the stack does not ask again until the waker is woken. That
    /// second call, answered `Pending`, cost about 5 % of the instructions a task spends on
    /// each packet of a 64-byte ping-pong over UDP. A datapath that does not say so is asked until it answers
    /// `Pending`. Cleared by [`clear`](Self::clear) and by [`take_drained`](Self::take_drained).
    /// A datapath that fills one batch from several inner ones calls `take_drained` after
    /// each and says drained only if every one did.
    pub fn set_drained(&mut self) {
        self.drained = true;
    }

    /// Whether the datapath said it is drained (see [`set_drained`](Self::set_drained))
    /// since the last call; clears it.
    pub fn take_drained(&mut self) -> bool {
        std::mem::take(&mut self.drained)
    }

    /// Forgets every packet. The storage stays, but for that of shared packets, which the
    /// batch takes back once their receivers let it go.
    pub fn clear(&mut self) {
        self.drained = false;
        self.lens.clear();
        self.carriers.clear();
        self.attached.clear();
        if self.any_shared {
            self.any_shared = false;
            for i in 0..self.capacity {
                if let Some(held) = self.shared[i].take() {
                    self.remember(held);
                }
            }
        }
    }

    /// Packet `i`'s carrier address: for a packet received, where the datagram that carried
    /// it came from; for a packet to send, where it must go. `None` when the datapath has no
    /// carrier or the packet's own destination decides.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn carrier(&self, i: usize) -> Option<SocketAddr> {
        self.carriers[i]
    }

    /// Packet `i`: its bytes in its slot. For a packet with a payload
    /// [`attached`](Self::attached), those are its headers, and the payload follows.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get(&self, i: usize) -> &[u8] {
        let (offset, len) = self.lens[i];
        match &self.shared[i] {
            Some(held) => &held[offset..offset + len],
            None => &self.slots[i][offset..offset + len],
        }
    }

    /// Packet `i`, writable. A packet already [`share`](Self::share)d is copied back into
    /// storage of the batch's own first (its receivers keep what they were given).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get_mut(&mut self, i: usize) -> &mut [u8] {
        let (offset, len) = self.lens[i];
        if let Some(held) = self.shared[i].take() {
            let mut own = self.fresh_storage();
            own[..held.len()].copy_from_slice(&held);
            self.slots[i] = own;
            self.remember(held);
        }
        &mut self.slots[i][offset..offset + len]
    }

    /// Packet `i`'s storage, shareable: the whole slot, of which the packet is
    /// `offset..offset + len` as [`get`](Self::get) gives it. A receiver keeps part of it
    /// without copying (`Bytes::slice_ref`); the batch does not write to that storage again
    /// while anyone holds it.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn share(&mut self, i: usize) -> Bytes {
        assert!(i < self.lens.len());
        if let Some(held) = &self.shared[i] {
            return held.clone();
        }
        let held = std::mem::take(&mut self.slots[i]).freeze();
        self.any_shared = true;
        self.shared[i] = Some(held.clone());
        held
    }

    /// Iterates over the packets held: each one's bytes in its slot, as [`get`](Self::get)
    /// gives them.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// The next free slot, whole, to be filled and then committed with [`commit`](Self::commit).
    /// `None` when the batch is full.
    pub fn next_slot(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let next = self.lens.len();
        self.fill(next);
        Some(&mut self.slots[next][..])
    }

    /// Records that the slot returned by [`next_slot`](Self::next_slot) now holds `len` bytes.
    ///
    /// # Panics
    /// If the batch is full or `len` exceeds the slot size.
    pub fn commit(&mut self, len: usize) {
        self.commit_at(0, len);
    }

    /// Records that the slot returned by [`next_slot`](Self::next_slot) holds a packet of
    /// `len` bytes starting `offset` bytes into it (headers written in front of a payload that
    /// was placed first).
    ///
    /// # Panics
    /// If the batch is full or the packet does not fit in the slot.
    pub fn commit_at(&mut self, offset: usize, len: usize) {
        self.commit_via(offset, len, None);
    }

    /// Like [`commit_at`](Self::commit_at), with the packet's carrier address (see
    /// [`carrier`](Self::carrier)).
    ///
    /// # Panics
    /// If the batch is full or the packet does not fit in the slot.
    pub fn commit_via(&mut self, offset: usize, len: usize, carrier: Option<SocketAddr>) {
        self.commit_with(offset, len, None, carrier);
    }

    /// Like [`commit_via`](Self::commit_via), for a packet whose slot holds `len` bytes of
    /// headers and whose payload is `payload`'s pieces, in order, kept where they are
    /// (see [`attached`](Self::attached)). The stack gives such packets only to a datapath
    /// whose [`Capabilities::sends_attached`] says it sends them.
    ///
    /// # Panics
    /// If the batch is full or the headers do not fit in the slot.
    pub fn commit_attached(
        &mut self,
        offset: usize,
        len: usize,
        payload: Box<Pieces>,
        carrier: Option<SocketAddr>,
    ) {
        self.commit_with(offset, len, Some(payload), carrier);
    }

    fn commit_with(
        &mut self,
        offset: usize,
        len: usize,
        payload: Option<Box<Pieces>>,
        carrier: Option<SocketAddr>,
    ) {
        assert!(!self.is_full() && offset + len <= self.slot_size);
        self.fill(self.lens.len());
        self.lens.push((offset, len));
        self.carriers.push(carrier);
        // Boxed: most packets have none, and a packet's bookkeeping stays a few words.
        self.attached.push(payload);
    }

    /// Packet `i`'s payload kept outside its slot, in pieces (the unused ones empty), to be
    /// sent after the slot's bytes ([`get`](Self::get)); all empty when the packet lies
    /// whole in its slot.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn attached(&self, i: usize) -> &Pieces {
        self.attached[i].as_deref().unwrap_or(&NO_PIECES)
    }

    /// Packet `i`, whole, in order: its bytes in its slot, then the pieces of its attached
    /// payload (empty ones when it has none).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn parts(&self, i: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let attached = self.attached(i).iter().map(|p| &p[..]);
        std::iter::once(self.get(i)).chain(attached)
    }

    /// Packet `i`'s length: its slot bytes and its attached payload.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn packet_len(&self, i: usize) -> usize {
        self.parts(i).map(<[u8]>::len).sum()
    }

    /// Copies packet `i`, attached payload included, into the next free slot of `to`;
    /// `Err(())` if `to` is full or the packet is larger than its slots.
    #[allow(clippy::result_unit_err)]
    pub fn copy_packet_to(&self, i: usize, to: &mut Batch) -> Result<(), ()> {
        let len = self.packet_len(i);
        if len > to.slot_size {
            return Err(());
        }
        let slot = to.next_slot().ok_or(())?;
        let mut at = 0;
        for part in self.parts(i) {
            slot[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        to.commit_via(0, len, self.carriers[i]);
        Ok(())
    }

    /// Copies `packet` into the next slot; `Err(())` if the batch is full or the packet too big.
    #[allow(clippy::result_unit_err)]
    pub fn push(&mut self, packet: &[u8]) -> Result<(), ()> {
        if packet.len() > self.slot_size {
            return Err(());
        }
        let slot = self.next_slot().ok_or(())?;
        slot[..packet.len()].copy_from_slice(packet);
        self.commit(packet.len());
        Ok(())
    }

    /// A free slot's bytes, by its index over all slots: what a receive of several packets
    /// at once (`recvmmsg`) put there, before [`commit_received`](Self::commit_received).
    /// Empty for a slot whose storage was [`share`](Self::share)d out and that has not been
    /// lent to a receive since.
    ///
    /// # Panics
    /// If `slot` is not a free slot.
    pub fn free_slot(&self, slot: usize) -> &[u8] {
        assert!(slot >= self.len() && slot < self.capacity);
        &self.slots[slot]
    }

    /// Keeps the `len` bytes at the start of free slot `slot` (an index over all slots, as
    /// [`free_slot`](Self::free_slot) takes) as the next packet, with its carrier. When
    /// slots before it were not kept (a datagram dropped), the slot takes the next free
    /// slot's place, so that packets stay in order and contiguous.
    ///
    /// # Panics
    /// If `slot` is not a free slot or `len` exceeds the slot size.
    pub fn commit_received(&mut self, slot: usize, len: usize, carrier: Option<SocketAddr>) {
        let next = self.lens.len();
        assert!(slot >= next && slot < self.capacity && len <= self.slot_size);
        if slot != next {
            self.slots.swap(slot, next);
        }
        self.commit_via(0, len, carrier);
    }

    /// Several mutable slots at once (for `recvmmsg`-style receives): all the free slots,
    /// each given its storage as the iterator reaches it.
    pub fn free_slots(&mut self) -> impl Iterator<Item = &mut [u8]> + '_ {
        let used = self.lens.len();
        let size = self.slot_size;
        let Batch { slots, lent, .. } = self;
        slots[used..].iter_mut().map(move |slot| {
            fill(slot, lent, size);
            &mut slot[..]
        })
    }

    /// Gives slot `i` its storage if it has none (shared out).
    fn fill(&mut self, i: usize) {
        fill(&mut self.slots[i], &mut self.lent, self.slot_size);
    }

    fn fresh_storage(&mut self) -> BytesMut {
        storage(&mut self.lent, self.slot_size)
    }

    /// Queues shared storage to be taken back; past the bound the oldest is forgotten (and
    /// freed when its receiver lets it go).
    fn remember(&mut self, held: Bytes) {
        if self.lent.len() >= self.capacity * LENT_PER_SLOT {
            self.lent.pop_front();
        }
        self.lent.push_back(held);
    }
}

/// Gives `slot` storage of `size` bytes if it has none (shared out).
fn fill(slot: &mut BytesMut, lent: &mut VecDeque<Bytes>, size: usize) {
    if slot.len() != size {
        *slot = storage(lent, size);
    }
}

/// A slot's storage: shared storage taken back, if one of the oldest is no longer held, or
/// else a new zeroed allocation.
fn storage(lent: &mut VecDeque<Bytes>, size: usize) -> BytesMut {
    for _ in 0..RECLAIM_LOOKS.min(lent.len()) {
        let Some(held) = lent.pop_front() else { break };
        match held.try_into_mut() {
            Ok(own) if own.len() == size => return own,
            Ok(_) => {}
            Err(held) => lent.push_back(held),
        }
    }
    BytesMut::zeroed(size)
}

/// What a local address is being claimed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    /// A listener: peers will send to this address.
    Listen,
    /// The local end of an outgoing connection.
    Connect,
}

/// Moves IP packets between a [`Stack`](crate::Stack) and a network.
///
/// Implementations are shared between the reactor task and the application's calls, so every
/// method takes `&self`. None of them may block: `send` drops what cannot be queued (as a full
/// network interface would; TCP retransmits), and `poll_recv` registers the waker and returns
/// `Pending` when nothing has arrived.
pub trait Datapath: Send + Sync + 'static {
    /// A short name for logs and errors (`"sim"`, `"udp"`, ...).
    fn name(&self) -> &'static str;

    /// The largest IP packet (header included) that reaches `remote` without fragmentation.
    /// The stack derives the MSS it announces from this.
    fn mtu(&self, remote: IpAddr) -> usize;

    /// The local address used to reach `remote` (a route lookup).
    fn local_ip_for(&self, remote: IpAddr) -> io::Result<IpAddr>;

    /// The local address to reach `remote` through the network interface `device` alone
    /// (`SO_BINDTODEVICE`): the route lookup of [`local_ip_for`](Self::local_ip_for)
    /// restricted to that interface. An error when the interface cannot reach `remote` or is
    /// not one this datapath sends through; `Unsupported` (the default) for a datapath that
    /// has no interfaces to choose from.
    fn local_ip_via(&self, device: &[u8], remote: IpAddr) -> io::Result<IpAddr> {
        let _ = (device, remote);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "rawtcp: the {} datapath has no network interfaces to bind to",
                self.name()
            ),
        ))
    }

    /// Claims `local` for the stack. A claim may add a source of packets (a socket); after
    /// every claim the stack no longer trusts the last `Pending` of
    /// [`poll_recv`](Self::poll_recv) (see [`Capabilities::pending_holds`]), and after a
    /// claim for listening it wakes its reactor, which polls it, so that the new source is
    /// watched. Port 0 asks the datapath to choose a free port; the
    /// claimed address is returned. `AddrInUse` if another owner holds it, `AddrNotAvailable`
    /// if the address is not one this datapath can use.
    fn bind(&self, local: SocketAddr, kind: BindKind) -> io::Result<SocketAddr>;

    /// Gives back an address claimed with [`bind`](Self::bind).
    fn unbind(&self, local: SocketAddr);

    /// Receives packets into `batch` (appending after what it holds). `Ready(Ok(()))` once at
    /// least one packet was added; `Pending` (with the waker registered) when none is waiting.
    /// A datapath that added packets and also found nothing more waiting anywhere, with the
    /// waker registered, says so with [`Batch::set_drained`]: the stack then does not call
    /// again just to hear `Pending`.
    /// A datapath that stops early (a budget spent on packets it dropped) and has registered
    /// nothing wakes the waker itself before answering `Pending`, as a future does when it
    /// yields.
    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>>;

    /// Receives packets already waiting into `batch` (appending), without looking at or
    /// registering readiness; returns whether any was added. For a task about to wait
    /// whose stack learns of arrivals on another thread (a reactor on a thread of its own,
    /// whose runtime polls the sockets): what the task's own peer just sent is taken at once
    /// instead of after two wake-ups between threads; and for a reactor that busy polls
    /// ([`StackBuilder::busy_poll`](crate::StackBuilder::busy_poll)), whose runtime learns of
    /// readiness only when its thread sleeps. Costs a system call per socket when nothing is
    /// there. The default receives nothing (and [`Capabilities::receive_now`] says so).
    fn recv_now(&self, batch: &mut Batch) -> bool {
        let _ = batch;
        false
    }

    /// Sends packets from the front of `batch`, in order, and returns how many it dealt
    /// with: sent, or dropped because they can never be sent (malformed, no route, a family
    /// without a socket; counted by the datapath). It stops early, returning fewer than
    /// `batch.len()`, at the first packet that finds no room (a full socket buffer or device
    /// queue: `EAGAIN`, `ENOBUFS`; see [`no_room`]): the stack keeps that packet and the
    /// rest and offers them again, before anything newer, a moment later, so a full queue
    /// delays segments instead of losing them (`StackStats::send_deferred`). An error means
    /// the datapath failed as a whole; the packets are dropped.
    fn send(&self, batch: &Batch) -> io::Result<usize>;

    /// Whether `local` is an address this stack owns through the datapath. A datapath that
    /// shares the host's addresses (raw sockets) answers from its claims, so the stack never
    /// answers — with a RST or anything else — a segment meant for another program.
    fn owns(&self, local: SocketAddr) -> bool {
        let _ = local;
        true
    }

    /// Whether arriving packets' checksums must be verified by the stack (false only for
    /// datapaths whose transport already guarantees integrity end to end).
    fn verify_checksums(&self) -> bool {
        true
    }

    /// Whether arriving packets may carry checksums the sending host left partial for
    /// offload (raw sockets and TUN devices see such packets from local and virtual
    /// interfaces); the stack then completes them before verifying (see
    /// [`complete_partial_checksum`](crate::wire::complete_partial_checksum)).
    fn partial_checksums(&self) -> bool {
        false
    }

    /// Whether a packet that arrived from `carrier` (see [`Batch::carrier`]) is known to
    /// be intact without its TCP checksum, so that the stack need not verify it. The UDP
    /// datapath says so for datagrams from a loopback address: they never left the host's
    /// memory, and the kernel moved them whole. The checksum is no defence against a
    /// stranger, who can compute it as easily as a peer; what keeps a stranger's segment
    /// out is the connection's own acceptance test (RFC 9293 §3.10.7.4), which every
    /// packet still passes. The default is `false`: every packet is verified. A stack set
    /// with `RAWTCP_PARTIAL_CHECKSUMS=off` verifies every packet whatever this says (for a
    /// host where a local relay forwards datagrams from elsewhere to loopback).
    fn carrier_verified(&self, carrier: SocketAddr) -> bool {
        let _ = carrier;
        false
    }

    /// What this datapath can do, in one place (see [`Capabilities`]). The default derives
    /// it from the hooks above and assumes one packet per system call each way, no
    /// receiving without readiness and no shards; a datapath that does better says so.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            receive_batch: 1,
            send_batch: 1,
            receive_now: false,
            shards: false,
            replies_reach_the_shard: false,
            verify_checksums: self.verify_checksums(),
            partial_checksums: self.partial_checksums(),
            loopback_carriers_verified: false,
            quick_unbind: false,
            pending_holds: false,
            sends_attached: false,
            readiness_follows: false,
        }
    }

    /// A datapath for shard `index` of `count` of one stack (see
    /// [`StackBuilder::shards`](crate::StackBuilder::shards)), with this one's settings,
    /// called inside the runtime of that shard's reactor. The datapaths made from one
    /// datapath share nothing on the data path, and the traffic arriving for them is
    /// steered so that the segments of a connection that arrives at a listener reach shard
    /// [`shard_of`]`(its local port, its remote port, count)`, and those of a connection a
    /// shard opened reach that shard. `Unsupported` (the default) for a datapath that cannot
    /// steer.
    fn shard(&self, index: usize, count: usize) -> io::Result<Arc<dyn Datapath>> {
        let _ = (index, count);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "rawtcp: the {} datapath cannot be split into shards (the udp, raw and tun datapaths can)",
                self.name()
            ),
        ))
    }
}

/// The shard of `count` that owns the connection between TCP ports `a` and `b` (either
/// order) when it arrives at a listener of a sharded stack: `a ^ b`, mixed by a
/// multiplicative hash (its upper 16 of 32 bits), modulo `count`. The UDP datapath's
/// steering program and the raw datapath's socket filters compute the same in the kernel.
/// The mixing matters: Linux gives the ports of outgoing connections one parity, so
/// `(a ^ b) % 2` put every kernel client of an even listener port on one shard.
///
/// ```
/// use rawtcp::datapath::shard_of;
/// assert_eq!(shard_of(8080, 40001, 2), shard_of(40001, 8080, 2));
/// assert_eq!(shard_of(8080, 40001, 1), 0);
/// // Even client ports of one listener still spread.
/// let on_0 = (40_000..40_100).step_by(2).filter(|p| shard_of(8080, *p, 2) == 0).count();
/// assert!((15..=35).contains(&on_0), "{on_0}");
/// ```
pub fn shard_of(a: u16, b: u16, count: usize) -> usize {
    let mixed = u32::from(a ^ b).wrapping_mul(STEER_MULTIPLIER) >> 16;
    mixed as usize % count.max(1)
}

/// The multiplier of [`shard_of`]'s hash (Knuth's, 2^32 / φ).
const STEER_MULTIPLIER: u32 = 0x9E37_79B1;

/// The shards of a stack holding one claimed address (the raw and TUN datapaths): every
/// shard claims a listener's address, and it is given back when the last lets go. One bit
/// per shard (a stack has at most 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardSet(u64);

impl ShardSet {
    /// Shard `index` alone.
    pub(crate) fn of(index: usize) -> ShardSet {
        ShardSet(Self::bit(index))
    }

    /// Adds shard `index`; false (and nothing changes) when it holds the address already.
    pub(crate) fn join(&mut self, index: usize) -> bool {
        let bit = Self::bit(index);
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }

    /// Removes shard `index`; true when no shard holds the address any more.
    pub(crate) fn leave(&mut self, index: usize) -> bool {
        self.0 &= !Self::bit(index);
        self.0 == 0
    }

    fn bit(index: usize) -> u64 {
        1 << (index % 64)
    }
}

/// [`shard_of`]'s arithmetic as classic BPF instructions, `(code, k)` each: with the two
/// ports in A and X, it leaves their shard of `count` in A (32-bit arithmetic, as
/// `shard_of`'s). The UDP datapath's steering program and the raw datapath's socket filters
/// both use it, so the kernel steers exactly as `shard_of` computes.
pub(crate) fn steering_ops(count: usize) -> [(u16, u32); 4] {
    const XOR_X: u16 = 0xac; // BPF_ALU | BPF_XOR | BPF_X
    const MUL_K: u16 = 0x24; // BPF_ALU | BPF_MUL | BPF_K
    const RSH_K: u16 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
    const MOD_K: u16 = 0x94; // BPF_ALU | BPF_MOD | BPF_K
    let n = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    [
        (XOR_X, 0),
        (MUL_K, STEER_MULTIPLIER),
        (RSH_K, 16),
        (MOD_K, n),
    ]
}

/// What a datapath can do ([`Datapath::capabilities`]), for the stack and for people looking
/// at it: how many packets a system call moves each way, whether it takes packets without
/// waiting for readiness, whether it splits into shards, and what it needs done to arriving
/// checksums.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use rawtcp::datapath::{sim::SimNetwork, Datapath};
/// let net = SimNetwork::new(1);
/// let caps = net.host("10.0.0.1".parse().unwrap())?.capabilities();
/// assert!(!caps.shards);
/// assert!(caps.verify_checksums);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Packets one receiving system call takes at most (`recvmmsg`: 64; 1 when each packet
    /// costs a call; for the simulated network, which has no system calls, a whole batch).
    pub receive_batch: usize,
    /// Packets one sending system call carries at most (UDP trains: 64; 1 when each packet
    /// costs a call).
    pub send_batch: usize,
    /// Whether [`Datapath::recv_now`] takes what is waiting without readiness.
    pub receive_now: bool,
    /// Whether [`Datapath::shard`] splits it into shards that traffic is steered between.
    pub shards: bool,
    /// Whether the answers to a shard's outgoing connections reach that shard whatever
    /// their ports (the UDP datapath: they come back to the shard's own socket). Otherwise
    /// (raw, TUN) they are steered by [`shard_of`] their ports, and an outgoing connection
    /// must use a port that steers to its shard.
    pub replies_reach_the_shard: bool,
    /// [`Datapath::verify_checksums`].
    pub verify_checksums: bool,
    /// [`Datapath::partial_checksums`].
    pub partial_checksums: bool,
    /// Whether [`Datapath::carrier_verified`] holds for carriers at loopback addresses
    /// (the UDP datapath: the kernel moved those datagrams from memory to memory).
    pub loopback_carriers_verified: bool,
    /// Whether [`Datapath::unbind`] is quick (it runs no external tool), so that a task
    /// that finished a connection may give its address back itself instead of waking the
    /// reactor to do it.
    pub quick_unbind: bool,
    /// Whether a `Pending` from [`Datapath::poll_recv`] holds until the waker is woken:
    /// the waker is registered with every source of packets, and any packet that becomes
    /// receivable later wakes it (sources added by [`Datapath::bind`] aside: the stack asks
    /// again after every claim). A task about to wait then skips asking again until the
    /// wake; the reactor always asks. Without it (the default, and the simulated network,
    /// whose packets become due by the clock a moment before its timer fires), tasks ask
    /// every time.
    pub pending_holds: bool,
    /// Whether [`Datapath::send`] sends packets with a payload
    /// [`attached`](Batch::attached): the slot's bytes, then the payload's pieces, in one
    /// datagram (a `sendmsg` of several buffers). The stack then leaves a large segment's
    /// payload where its send buffer keeps it instead of copying it into the slot. Without
    /// it (the default) every packet lies whole in its slot. A datapath that wraps another
    /// and says what the inner one says must pass attached payloads on: hand the same
    /// batch on, or copy packets with [`Batch::copy_packet_to`] (a packet rebuilt from
    /// [`Batch::get`] alone would be its headers only).
    pub sends_attached: bool,
    /// Whether the readiness of the datapath's descriptors may move to the runtime of the
    /// application task that receives (the UDP datapath's sockets): on a stack
    /// whose reactor has a thread of its own, the first task of a multi-threaded runtime
    /// that receives then has its runtime hear of arrivals instead of the reactor's, and
    /// waits for readiness there. Without it (the default) such a stack's tasks receive
    /// without waiting for readiness, where [`receive_now`](Self::receive_now) allows.
    pub readiness_follows: bool,
}

/// An on/off setting's value (`on`, `1`, `true`, `yes` or `off`, `0`, `false`, `no`, in
/// any case, around white space); `None` for anything else.
pub(crate) fn switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" | "yes" => Some(true),
        "off" | "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Whether a send failed only for lack of room in a socket buffer or device queue
/// (`EAGAIN`/`EWOULDBLOCK`, `ENOBUFS`): the packet may be offered again (see
/// [`Datapath::send`]).
pub fn no_room(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(nix::libc::ENOBUFS)
}

/// The local address the kernel's routing table picks to reach `remote` (a connected UDP
/// socket; connecting sends nothing). Loopback remotes answer themselves.
pub(crate) fn route_source(remote: IpAddr) -> io::Result<IpAddr> {
    if remote.is_loopback() {
        return Ok(remote);
    }
    let unspecified: IpAddr = match remote {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let probe = std::net::UdpSocket::bind((unspecified, 0))?;
    probe.connect((remote, 9))?;
    Ok(probe.local_addr()?.ip())
}

/// The local address the kernel picks to reach `remote` from a socket bound to the
/// interface `device` (`SO_BINDTODEVICE` on a connected UDP probe; connecting sends
/// nothing): the kernel's own errors when the interface does not exist or has no route.
pub(crate) fn route_source_via(device: &[u8], remote: IpAddr) -> io::Result<IpAddr> {
    let domain = match remote {
        IpAddr::V4(_) => socket2::Domain::IPV4,
        IpAddr::V6(_) => socket2::Domain::IPV6,
    };
    let probe = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
    probe.bind_device(Some(device))?;
    probe.connect(&SocketAddr::new(remote, 9).into())?;
    probe
        .local_addr()?
        .as_socket()
        .map(|a| a.ip())
        .ok_or_else(|| io::Error::other("rawtcp: route probe has no IP address"))
}

/// Which datapath a stack uses when none is given: the value of `RAWTCP_DATAPATH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UDP encapsulation (the default).
    Udp,
    /// The in-process simulated network.
    Sim,
    /// Raw IP sockets: real TCP on the wire (needs root).
    Raw,
    /// A TUN device owned by the stack (needs root).
    Tun,
}

impl Kind {
    /// Reads `RAWTCP_DATAPATH` (`udp` when unset).
    pub fn from_env() -> io::Result<Kind> {
        match std::env::var("RAWTCP_DATAPATH") {
            Err(_) => Ok(Kind::Udp),
            Ok(v) => v.parse(),
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "udp" => Ok(Kind::Udp),
            "sim" => Ok(Kind::Sim),
            "raw" => Ok(Kind::Raw),
            "tun" => Ok(Kind::Tun),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("RAWTCP_DATAPATH={other:?}: unknown datapath (known: udp, sim, raw, tun)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_packet_is_never_written_while_held() {
        let mut b = Batch::new(2, 64);
        b.push(b"first packet").unwrap();
        let held = b.share(0);
        assert_eq!(&held[..12], b"first packet");
        assert_eq!(b.get(0), b"first packet");
        let piece = held.slice_ref(&held[6..12]);
        drop(held);
        // Many refills of every slot, through each way of filling one.
        for round in 0..10u8 {
            b.clear();
            b.push(&[round; 64]).unwrap();
            for slot in b.free_slots() {
                slot.fill(0xee);
            }
            b.commit_received(1, 64, None);
            assert!(b.is_full());
        }
        assert_eq!(&piece[..], b"packet");
    }

    #[test]
    fn shared_storage_comes_back_once_let_go() {
        let mut b = Batch::new(2, 64);
        b.push(b"abc").unwrap();
        let held = b.share(0);
        // Sharing twice gives the same storage.
        assert_eq!(b.share(0).as_ptr(), held.as_ptr());
        b.clear();
        // Still held: the slot gets storage of its own.
        let own = b.next_slot().unwrap().as_ptr();
        assert_ne!(own, held.as_ptr());
        b.commit(3);
        assert_eq!(b.share(0).as_ptr(), own);
        b.clear();
        // Let go: the next refill takes it back (the first slot's storage, part of the
        // batch's one allocation and still held, is passed over).
        assert_eq!(b.next_slot().unwrap().as_ptr(), own);
        assert_eq!(&held[..3], b"abc");
    }

    #[test]
    fn writing_a_shared_packet_copies_it_back_first() {
        let mut b = Batch::new(1, 16);
        b.push(b"abcd").unwrap();
        let held = b.share(0);
        b.get_mut(0)[0] = b'x';
        assert_eq!(b.get(0), b"xbcd");
        assert_eq!(&held[..4], b"abcd");
    }

    #[test]
    fn remembered_storage_is_bounded_by_the_slots() {
        let mut b = Batch::new(2, 8);
        let mut kept = Vec::new();
        for _ in 0..10 {
            b.clear();
            b.push(b"x").unwrap();
            b.push(b"y").unwrap();
            kept.push(b.share(0));
            kept.push(b.share(1));
        }
        b.clear();
        assert_eq!(b.lent.len(), 2 * LENT_PER_SLOT);
    }

    #[test]
    fn an_attached_payload_follows_the_slot_bytes() {
        let mut b = Batch::new(3, 16);
        b.next_slot().unwrap()[..4].copy_from_slice(b"head");
        let payload = Pieces::default();
        let mut pieces = payload.clone();
        pieces[0] = Bytes::from_static(b"pay");
        pieces[1] = Bytes::from_static(b"load");
        b.commit_attached(0, 4, Box::new(pieces), None);
        b.push(b"whole").unwrap();
        assert_eq!((b.get(0), b.packet_len(0)), (&b"head"[..], 11));
        assert_eq!(&b.attached(0)[1][..], b"load");
        assert!(b.attached(1).iter().all(Bytes::is_empty));
        assert_eq!(b.packet_len(1), 5);
        let mut to = Batch::new(2, 16);
        b.copy_packet_to(0, &mut to).unwrap();
        b.copy_packet_to(1, &mut to).unwrap();
        assert_eq!((to.get(0), to.get(1)), (&b"headpayload"[..], &b"whole"[..]));
        assert!(b.copy_packet_to(0, &mut to).is_err(), "full");
        let mut small = Batch::new(1, 8);
        assert!(b.copy_packet_to(0, &mut small).is_err(), "too large");
        b.clear();
        b.push(b"x").unwrap();
        assert!(b.attached(0).iter().all(Bytes::is_empty));
    }
}
