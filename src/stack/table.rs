//! The runtime's side of the connection table: each connection's engine and what the runtime
//! keeps beside it (wakers, its timer, where its packets go), indexed by the handles of the
//! [`Endpoint`], which owns the routing, the listen queues and every TCP rule about them; and
//! each listener's settings and waiting tasks.
//!
//! An entry is reached by handle only, never by 4-tuple: the endpoint routes, the table
//! stores. Each entry is behind a lock of its own (a [`Cell`]): the stack's lock is taken
//! to insert, remove and look up, and by the reactor's passes, which lock each entry they
//! touch in turn (the stack's lock first, then the entry's: never the other way round).
//! An application's read or write locks only its connection's entry, so its copy of the
//! data does not hold up the stack (see `net::handle`).

pub(crate) use crate::proto::endpoint::ListenerId;
use crate::proto::endpoint::{ConnectionHandle, Endpoint};
use crate::proto::{Config, Connection, Instant};
use crate::wire::TcpRepr;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

/// Spare cells a table keeps (see [`Table::recycle`]).
const SPARE_CELLS: usize = 16;

/// A connection's entry behind its own lock, shared by the table and the connection's
/// handle.
pub(crate) type Cell = Arc<Mutex<Entry>>;

/// Locks a connection's entry. A panic inside the engine is caught where the engine is
/// called (and the connection poisoned), so a poisoned lock's entry is still consistent.
pub(crate) fn lock(cell: &Mutex<Entry>) -> MutexGuard<'_, Entry> {
    cell.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection's handle: the endpoint's, whose generation makes a stale one harmless.
pub(crate) type ConnId = ConnectionHandle;

/// What a `TcpListener` holds: its listener's id and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ListenerKey {
    pub addr: SocketAddr,
    pub id: ListenerId,
}

/// The local address a connection claimed from the datapath, kept in a byte (an entry is
/// stored for every connection: see `conn_scale`) and read back with [`Claim::addr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Nothing: the address is a listener's, or shared with sockets that claimed it.
    None,
    /// Its own local address.
    Local,
    /// Its local port on every address (its socket was bound to the unspecified address).
    AnyIp,
}

impl Claim {
    /// What a connection whose local address is `local` claimed, from the address it
    /// claimed (`None`: nothing).
    pub(crate) fn of(claimed: Option<SocketAddr>, local: SocketAddr) -> Claim {
        match claimed {
            None => Claim::None,
            Some(c) if c == local => Claim::Local,
            Some(c) => {
                debug_assert!(c.ip().is_unspecified() && c.port() == local.port());
                Claim::AnyIp
            }
        }
    }

    /// The address claimed by a connection whose local address is `local`.
    pub(crate) fn addr(self, local: SocketAddr) -> Option<SocketAddr> {
        let any = match local {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        match self {
            Claim::None => None,
            Claim::Local => Some(local),
            Claim::AnyIp => Some(SocketAddr::new(any, local.port())),
        }
    }
}

/// Tasks waiting for one condition. Each waker is kept once. The first is kept inline: a
/// connection nearly always has one reader and one writer, and a `Vec` would hold 64 bytes
/// of heap for each long after the wait ended.
#[derive(Debug, Default)]
pub(crate) struct WakerSet {
    first: Option<Waker>,
    /// Boxed: 8 bytes in place of 24 in an entry stored for every connection, for a list
    /// that is nearly always empty.
    #[allow(clippy::box_collection, reason = "the box keeps the entry small")]
    more: Option<Box<Vec<Waker>>>,
}

impl WakerSet {
    pub fn register(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                let more = self.more.get_or_insert_default();
                if !more.iter().any(|w| w.will_wake(waker)) {
                    more.push(waker.clone());
                }
            }
        }
    }

    /// The waiting tasks, taken out (see [`Waiting`]).
    pub fn take(&mut self) -> WakerSet {
        std::mem::take(self)
    }

    /// Registers `waker`; whether it is now the first, newly kept (and not one kept
    /// already).
    fn register_first(&mut self, waker: &Waker) -> bool {
        let newly = self.first.is_none();
        self.register(waker);
        newly
    }

    /// Whether the first waker kept is `waker`'s task's.
    fn first_is(&self, waker: &Waker) -> bool {
        self.first.as_ref().is_some_and(|w| w.will_wake(waker))
    }

    /// Takes the first waker out (its task learns some other way).
    fn forget_first(&mut self) {
        self.first = None;
    }

    pub fn wake_all(&mut self) {
        if let Some(w) = self.first.take() {
            w.wake();
        }
        if let Some(more) = self.more.take() {
            for w in *more {
                w.wake();
            }
        }
    }
}

/// A connection's waiting tasks, taken out of its entry to be woken once the entry's lock
/// is let go: a task woken while it is held would wait for it first thing.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    pub readers: WakerSet,
    pub writers: WakerSet,
}

impl Waiting {
    /// Wakes them all (with the entry's lock let go).
    pub fn wake(mut self) {
        self.readers.wake_all();
        self.writers.wake_all();
    }
}

/// One connection and what the runtime keeps beside it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub conn: Connection,
    pub readers: WakerSet,
    pub writers: WakerSet,
    /// Earliest deadline currently in the timer heap for this connection.
    pub(in crate::stack) scheduled: Option<Instant>,
    /// Queued for the reactor's transmit pass.
    pub(crate) dirty: bool,
    /// The local address claimed from the datapath for this connection (outgoing ones).
    pub(in crate::stack) claimed: Claim,
    /// IP TTL / hop limit of outgoing packets.
    pub ttl: u8,
    /// IPv4 type of service or IPv6 traffic class of outgoing packets (`IP_TOS`,
    /// `IPV6_TCLASS`).
    pub(in crate::stack) tos: u8,
    /// Close with RST when the application drops it (zero linger).
    pub zero_linger: bool,
    /// `take_error` already reported the error.
    pub error_taken: bool,
    /// Whether waiters were told that the handshake ended.
    pub(in crate::stack) handshake_seen: bool,
    /// The first of `readers` was registered by plain reads alone (see
    /// [`register_reader`](Self::register_reader)).
    pub(in crate::stack) reads_alone: bool,
    /// Where the datapath must carry this connection's packets (the UDP address the peer
    /// speaks from), learned only from segments the connection accepted.
    pub(in crate::stack) route: Option<SocketAddr>,
    /// The connection's buffer memory when it was last counted in the stack's total.
    pub(in crate::stack) buffer_memory: u32,
    /// Taken out of the table: the connection is gone, and a handle still holding the
    /// entry answers as for a stack that shut down.
    pub(crate) forgotten: bool,
}

/// What a panic in an entry's engine leaves for the stack to finish (see
/// [`Entry::poison`] and `Inner::poisoned`).
pub(crate) struct Poisoned {
    local: SocketAddr,
    remote: SocketAddr,
    /// `<SEQ=SND.NXT><CTL=RST>` for the peer, with where the datapath carries it.
    reset: Option<(Option<SocketAddr>, TcpRepr)>,
    waiting: Waiting,
}

impl Poisoned {
    /// The connection's addresses.
    pub(in crate::stack) fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// The RST owed to the peer and where the datapath carries it.
    pub(in crate::stack) fn take_reset(&mut self) -> Option<(Option<SocketAddr>, TcpRepr)> {
        self.reset.take()
    }

    /// Wakes the connection's waiting tasks (with its entry's lock let go).
    pub(in crate::stack) fn wake(self) {
        self.waiting.wake();
    }
}

impl Entry {
    /// A panic in the engine left it half-updated: done at once, under the entry's lock
    /// that the panicking caller still holds, so that nothing else reaches that engine — it
    /// is replaced by a closed one that reports `ConnectionAborted`, its timer is dropped
    /// and its waiting tasks are taken out to be woken. The rest (the RST, the endpoint,
    /// the counters) is the stack's, under its lock: `Inner::poisoned`.
    pub(crate) fn poison(&mut self) -> Poisoned {
        let (local, remote) = (self.conn.local_addr(), self.conn.remote_addr());
        let reset = self.conn.reset_segment().map(|rst| (self.route, rst));
        let cfg = Config::clone(self.conn.config());
        self.conn = Connection::aborted(cfg, local, remote);
        self.scheduled = None;
        Poisoned {
            local,
            remote,
            reset,
            waiting: self.take_waiting(),
        }
    }

    /// Registers `waker` to be woken when the connection becomes readable, by a plain read
    /// (`read`: `AsyncRead::poll_read`, in which one task at a time can be, as it takes the
    /// stream or its read half mutably) or another wait (a peek, `readable`, `ready`).
    pub(crate) fn register_reader(&mut self, waker: &Waker, read: bool) {
        if self.readers.register_first(waker) {
            self.reads_alone = read;
        } else if !read && self.readers.first_is(waker) {
            // The same task waits in some other way as well (`join!` of a read and a
            // `ready`, say), which a wake left out would miss.
            self.reads_alone = false;
        }
    }

    /// The readers, taken out to be woken, but for `reader`'s task when it registered the
    /// first by plain reads alone: that task polls its read again itself (see
    /// `reactor::Out::reading`). Another wait of the same task (a `ready` beside the read,
    /// in one `join!`) keeps its wake.
    pub(crate) fn take_readers(&mut self, reader: Option<&Waker>) -> WakerSet {
        let mut readers = self.readers.take();
        if self.reads_alone && reader.is_some_and(|w| readers.first_is(w)) {
            readers.forget_first();
        }
        readers
    }

    /// Every task waiting on the connection, taken out (see [`Waiting`]).
    pub(crate) fn take_waiting(&mut self) -> Waiting {
        Waiting {
            readers: self.readers.take(),
            writers: self.writers.take(),
        }
    }

    /// Whether what an application call left in the engine needs the stack now: a segment
    /// owed (an ACK or a window update), or a timer armed earlier than any the stack holds
    /// for the connection. A later one needs nothing yet: the stack finds it when the
    /// earlier one fires and the connection is settled again.
    pub(crate) fn needs_stack(&self) -> bool {
        self.conn.ack_owed()
            || (self.conn.needs_driver()
                && self
                    .conn
                    .poll_timeout()
                    .is_some_and(|d| self.scheduled.is_none_or(|s| d < s)))
    }

    /// A new connection's entry: no wakers, no timer, nothing claimed.
    pub(in crate::stack) fn new(conn: Connection, ttl: u8) -> Entry {
        Entry {
            conn,
            readers: WakerSet::default(),
            writers: WakerSet::default(),
            scheduled: None,
            dirty: false,
            claimed: Claim::None,
            ttl,
            tos: 0,
            zero_linger: false,
            error_taken: false,
            handshake_seen: false,
            reads_alone: false,
            route: None,
            buffer_memory: 0,
            forgotten: false,
        }
    }
}

/// A listener's settings and the tasks waiting in `accept`; its queues are the endpoint's.
#[derive(Debug)]
pub(in crate::stack) struct Listener {
    /// The settings its connections start from.
    pub(in crate::stack) config: Config,
    pub(in crate::stack) waiters: WakerSet,
    /// IP TTL of the connections it accepts.
    pub(in crate::stack) ttl: u8,
    /// Traffic class of the connections it accepts (their SYN-ACK included).
    pub(in crate::stack) tos: u8,
}

/// The endpoint, the connections' entries by handle index, and the listeners' settings.
#[derive(Debug, Default)]
pub(in crate::stack) struct Table {
    pub(in crate::stack) endpoint: Endpoint,
    entries: Vec<Option<(ConnId, Cell)>>,
    count: usize,
    /// Cells of forgotten connections that nothing else held, for new connections to reuse
    /// (see [`recycle`](Self::recycle)).
    spare: Vec<Cell>,
    pub(in crate::stack) listeners: HashMap<ListenerId, Listener>,
}

impl Table {
    /// Stores connection `id`'s entry (the endpoint has just given it the handle).
    pub(in crate::stack) fn put(&mut self, id: ConnId, entry: Entry) {
        let i = id.index();
        if self.entries.len() <= i {
            self.entries.resize_with(i + 1, || None);
        }
        // The endpoint reuses a slot only after the connection in it was forgotten, and the
        // driver forgets its entry first (see `Accept::replaced`).
        debug_assert!(self.entries[i].is_none(), "slot {i} still taken");
        let cell = self.cell_for(entry);
        if self.entries[i].replace((id, cell)).is_none() {
            self.count += 1;
        }
    }

    /// A cell holding `entry`: a spare one if there is one (the forgotten connection it
    /// held is dropped here), else a new allocation.
    fn cell_for(&mut self, entry: Entry) -> Cell {
        if let Some(mut cell) = self.spare.pop() {
            if let Some(held) = Arc::get_mut(&mut cell) {
                *held.get_mut().unwrap_or_else(|p| p.into_inner()) = entry;
                return cell;
            }
        }
        Arc::new(Mutex::new(entry))
    }

    /// Keeps a forgotten connection's cell for a new connection when nothing else holds it
    /// (its handle is gone) and its engine holds no buffer. An entry is over a kilobyte,
    /// beyond the allocator's per-thread caches: allocated on one thread and freed on
    /// another for every connection, it cost a connect-and-close loop 7 % of its time in
    /// the kernel zeroing the pages the heap grew by.
    pub(in crate::stack) fn recycle(&mut self, mut cell: Cell) {
        let reusable = self.spare.len() < SPARE_CELLS
            && Arc::get_mut(&mut cell).is_some_and(|held| {
                held.get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .conn
                    .buffer_memory()
                    == 0
            });
        if reusable {
            self.spare.push(cell);
        }
    }

    /// Connection `id`'s entry, locked (the stack's lock must be held, or no other entry's).
    pub(in crate::stack) fn get(&self, id: ConnId) -> Option<MutexGuard<'_, Entry>> {
        self.cell_ref(id).map(|c| lock(c))
    }

    /// Connection `id`'s entry, for a handle to keep.
    pub(crate) fn cell(&self, id: ConnId) -> Option<Cell> {
        self.cell_ref(id).cloned()
    }

    fn cell_ref(&self, id: ConnId) -> Option<&Cell> {
        match self.entries.get(id.index()) {
            Some(Some((h, c))) if *h == id => Some(c),
            _ => None,
        }
    }

    /// Takes connection `id`'s entry out (the endpoint's record is the caller's to remove),
    /// marked forgotten for a handle that still holds it.
    pub(in crate::stack) fn take(&mut self, id: ConnId) -> Option<Cell> {
        let slot = self.entries.get_mut(id.index())?;
        if slot.as_ref().is_some_and(|(h, _)| *h == id) {
            self.count -= 1;
            let cell = slot.take().map(|(_, c)| c)?;
            lock(&cell).forgotten = true;
            Some(cell)
        } else {
            None
        }
    }

    /// How many connections have entries.
    pub(in crate::stack) fn len(&self) -> usize {
        self.count
    }

    /// Every connection with an entry.
    pub(in crate::stack) fn ids(&self) -> Vec<ConnId> {
        self.entries.iter().flatten().map(|(h, _)| *h).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SeqNum;

    fn open(t: &mut Table, local: &str, remote: &str) -> ConnId {
        let (local, remote) = (local.parse().unwrap(), remote.parse().unwrap());
        let id = t.endpoint.connect(local, remote).expect("a free 4-tuple");
        let conn = Connection::connect(Config::default(), local, remote, SeqNum(1), Instant::ZERO);
        t.put(id, Entry::new(conn, 64));
        id
    }

    /// Counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(Default::default()));
        (c.clone(), Waker::from(c))
    }

    fn entry() -> Entry {
        let (local, remote) = (
            "10.0.0.1:1000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        Entry::new(
            Connection::connect(Config::default(), local, remote, SeqNum(1), Instant::ZERO),
            64,
        )
    }

    /// Wakes what `take_readers` leaves for `reader`; how often `waker`'s task was woken.
    fn woken(e: &mut Entry, reader: &Waker, count: &Count) -> usize {
        e.take_readers(Some(reader)).wake_all();
        count.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The delivering task's own wake is left out only where plain reads alone registered
    /// it: a `ready` of the same task, before or after the read, keeps it, and so does
    /// another task's read.
    #[test]
    fn a_readers_own_wake_is_left_out_only_for_reads_alone() {
        let (count, w) = counted();
        let mut e = entry();
        e.register_reader(&w, true);
        e.register_reader(&w, true);
        assert_eq!(woken(&mut e, &w, &count), 0, "reads alone");
        e.register_reader(&w, true);
        e.register_reader(&w, false);
        assert_eq!(woken(&mut e, &w, &count), 1, "a ready after the read");
        e.register_reader(&w, false);
        e.register_reader(&w, true);
        assert_eq!(woken(&mut e, &w, &count), 2, "a ready before the read");
        e.register_reader(&w, true);
        assert_eq!(
            woken(&mut e, &w, &count),
            2,
            "reads alone again, once taken"
        );
        let (other_count, other) = counted();
        e.register_reader(&other, true);
        e.register_reader(&w, true);
        assert_eq!(woken(&mut e, &w, &count), 3, "the first is another task's");
        assert_eq!(other_count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        e.register_reader(&w, true);
        e.take_readers(None).wake_all();
        assert_eq!(
            count.0.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "no reader named"
        );
    }

    fn forget(t: &mut Table, id: ConnId) -> Cell {
        t.endpoint.remove(id);
        t.take(id).expect("stored")
    }

    /// A forgotten connection's cell goes to the next connection only when nothing else
    /// holds it: a handle that still does keeps seeing its own connection, forgotten.
    #[test]
    fn a_cell_nothing_else_holds_is_reused() {
        let mut t = Table::default();
        let a = open(&mut t, "10.0.0.1:1000", "10.0.0.2:80");
        let held = t.cell(a).expect("stored");
        let cell = forget(&mut t, a);
        assert!(lock(&held).forgotten);
        t.recycle(cell);
        let b = open(&mut t, "10.0.0.1:1001", "10.0.0.2:80");
        let b_cell = t.cell(b).expect("stored");
        assert!(!Arc::ptr_eq(&b_cell, &held), "a held cell was reused");
        assert!(lock(&held).forgotten);
        assert_eq!(lock(&held).conn.local_addr().port(), 1000);
        drop((held, b_cell));

        let cell = forget(&mut t, b);
        let spare = Arc::as_ptr(&cell);
        t.recycle(cell);
        let c = open(&mut t, "10.0.0.1:1002", "10.0.0.2:80");
        let c_cell = t.cell(c).expect("stored");
        assert_eq!(Arc::as_ptr(&c_cell), spare, "the spare cell was not reused");
        let e = lock(&c_cell);
        assert!(!e.forgotten);
        assert_eq!(e.conn.local_addr().port(), 1002);
    }
}
