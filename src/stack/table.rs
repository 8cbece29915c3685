//! The stack's tables: connections by id and by 4-tuple, listeners by local address, and the
//! wakers of tasks waiting on them.

use crate::proto::{Config, Connection, Instant};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::task::Waker;

/// A connection's slot in the table; the generation makes a stale id harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ConnId {
    pub idx: u32,
    pub gen: u32,
}

/// Tasks waiting for one condition. Each waker is kept once. The first is kept inline: a
/// connection nearly always has one reader and one writer, and a `Vec` would hold 64 bytes
/// of heap for each long after the wait ended.
#[derive(Debug, Default)]
pub(crate) struct WakerSet {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl WakerSet {
    pub fn register(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                if !self.more.iter().any(|w| w.will_wake(waker)) {
                    self.more.push(waker.clone());
                }
            }
        }
    }

    pub fn wake_all(&mut self) {
        if let Some(w) = self.first.take() {
            w.wake();
        }
        if !self.more.is_empty() {
            for w in std::mem::take(&mut self.more) {
                w.wake();
            }
        }
    }
}

/// One listener: its address and an instance number (several share an address with
/// `SO_REUSEPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ListenerKey {
    pub addr: SocketAddr,
    pub instance: u32,
}

/// Who holds a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// In a listener's SYN queue or accept queue, not yet accepted.
    Listener(ListenerKey),
    /// A `TcpStream` (or its halves) holds it.
    User,
    /// The application dropped it; the stack finishes the close and then forgets it.
    Detached,
}

/// One connection and what the runtime keeps beside it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub conn: Connection,
    pub owner: Owner,
    pub readers: WakerSet,
    pub writers: WakerSet,
    /// Earliest deadline currently in the timer heap for this connection.
    pub scheduled: Option<Instant>,
    /// Queued for the reactor's transmit pass.
    pub dirty: bool,
    /// The local address claimed from the datapath for this connection (outgoing ones).
    pub claimed: Option<SocketAddr>,
    /// IP TTL / hop limit of outgoing packets.
    pub ttl: u8,
    /// IPv4 type of service or IPv6 traffic class of outgoing packets (`IP_TOS`,
    /// `IPV6_TCLASS`).
    pub tos: u8,
    /// Close with RST when the application drops it (zero linger).
    pub zero_linger: bool,
    /// `take_error` already reported the error.
    pub error_taken: bool,
    /// Whether it was accounted as established in its listener's SYN queue.
    pub established_seen: bool,
    /// Whether waiters were told that the handshake ended.
    pub handshake_seen: bool,
    /// Where the datapath must carry this connection's packets (the UDP address the peer
    /// speaks from), learned only from segments the connection accepted.
    pub route: Option<SocketAddr>,
}

/// A listening address.
#[derive(Debug)]
pub(crate) struct Listener {
    pub config: Config,
    /// Accept queue limit (`listen(backlog)`).
    pub backlog: usize,
    /// Connections in SYN-RECEIVED for this listener.
    pub syn_queue: usize,
    /// Established connections waiting for `accept`.
    pub accept_queue: VecDeque<ConnId>,
    pub waiters: WakerSet,
    pub ttl: u8,
    /// Traffic class of the connections it accepts (their SYN-ACK included).
    pub tos: u8,
    /// Whether other listeners may share the address (`SO_REUSEPORT`).
    pub reuseport: bool,
}

/// Slots of connections, reused through a free list.
#[derive(Debug, Default)]
pub(crate) struct Table {
    slots: Vec<(u32, Option<Entry>)>,
    free: Vec<u32>,
    pub by_tuple: HashMap<(SocketAddr, SocketAddr), ConnId>,
    pub listeners: HashMap<ListenerKey, Listener>,
    /// Listener instances per address.
    pub listen_addrs: HashMap<SocketAddr, Vec<u32>>,
    next_instance: u32,
}

impl Table {
    pub fn insert(&mut self, entry: Entry) -> ConnId {
        let key = (entry.conn.local_addr(), entry.conn.remote_addr());
        let id = match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                slot.0 = slot.0.wrapping_add(1);
                slot.1 = Some(entry);
                ConnId { idx, gen: slot.0 }
            }
            None => {
                self.slots.push((0, Some(entry)));
                ConnId {
                    idx: (self.slots.len() - 1) as u32,
                    gen: 0,
                }
            }
        };
        self.by_tuple.insert(key, id);
        id
    }

    pub fn get(&self, id: ConnId) -> Option<&Entry> {
        match self.slots.get(id.idx as usize) {
            Some((gen, Some(e))) if *gen == id.gen => Some(e),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Entry> {
        match self.slots.get_mut(id.idx as usize) {
            Some((gen, Some(e))) if *gen == id.gen => Some(e),
            _ => None,
        }
    }

    pub fn remove(&mut self, id: ConnId) -> Option<Entry> {
        let slot = self.slots.get_mut(id.idx as usize)?;
        if slot.0 != id.gen {
            return None;
        }
        let e = slot.1.take()?;
        self.free.push(id.idx);
        let key = (e.conn.local_addr(), e.conn.remote_addr());
        if self.by_tuple.get(&key) == Some(&id) {
            self.by_tuple.remove(&key);
        }
        Some(e)
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Every live connection id.
    pub fn ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, (gen, e))| {
                e.as_ref().map(|_| ConnId {
                    idx: i as u32,
                    gen: *gen,
                })
            })
            .collect()
    }

    /// Adds a listener at `addr`; `AddrInUse` unless every listener already there and this
    /// one allow sharing it.
    pub fn add_listener(&mut self, addr: SocketAddr, l: Listener) -> std::io::Result<ListenerKey> {
        let shared_ok = l.reuseport;
        let instances = self.listen_addrs.entry(addr).or_default();
        let all_share = instances.iter().all(|i| {
            self.listeners
                .get(&ListenerKey { addr, instance: *i })
                .is_some_and(|o| o.reuseport)
        });
        if !(instances.is_empty() || shared_ok && all_share) {
            return Err(std::io::ErrorKind::AddrInUse.into());
        }
        self.next_instance = self.next_instance.wrapping_add(1);
        let key = ListenerKey {
            addr,
            instance: self.next_instance,
        };
        instances.push(key.instance);
        self.listeners.insert(key, l);
        Ok(key)
    }

    /// Removes a listener; also reports whether it was the last one at its address.
    pub fn remove_listener(&mut self, key: ListenerKey) -> Option<(Listener, bool)> {
        let l = self.listeners.remove(&key)?;
        let last = match self.listen_addrs.get_mut(&key.addr) {
            Some(v) => {
                v.retain(|i| *i != key.instance);
                v.is_empty()
            }
            None => true,
        };
        if last {
            self.listen_addrs.remove(&key.addr);
        }
        Some((l, last))
    }

    /// Whether some listener is at `addr` and all of them share it.
    pub fn listening_shared(&self, addr: SocketAddr) -> Option<bool> {
        let instances = self.listen_addrs.get(&addr)?;
        Some(instances.iter().all(|i| {
            self.listeners
                .get(&ListenerKey { addr, instance: *i })
                .is_some_and(|l| l.reuseport)
        }))
    }

    /// The listener that takes a SYN for `local` from `remote`: at the exact address, else at
    /// the wildcard address of the same family and port; among several sharing an address,
    /// one chosen by a hash of the remote address, so a peer always reaches the same one.
    pub fn listener_for(&self, local: SocketAddr, remote: SocketAddr) -> Option<ListenerKey> {
        let wildcard = SocketAddr::new(unspecified_like(local), local.port());
        for addr in [local, wildcard] {
            if let Some(instances) = self.listen_addrs.get(&addr).filter(|v| !v.is_empty()) {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                remote.hash(&mut h);
                let pick = instances[(h.finish() % instances.len() as u64) as usize];
                return Some(ListenerKey {
                    addr,
                    instance: pick,
                });
            }
        }
        None
    }
}

/// The unspecified address of `addr`'s family.
pub(crate) fn unspecified_like(addr: SocketAddr) -> std::net::IpAddr {
    match addr {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}
