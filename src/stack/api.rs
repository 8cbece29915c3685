//! The narrow interface the public types in `net` use: claim an address, open a connection,
//! listen, accept, let go. `net` holds handles ([`ConnId`], [`ListenerKey`]) and a
//! connection's own entry, locked on its own ([`Inner::entry_cell`]); the endpoint, the
//! listeners and the port bookkeeping stay inside `stack`.

use super::table::{Cell, Claim, ConnId, Entry, Listener, ListenerKey, WakerSet};
use super::{Inner, Shared};
use crate::datapath::BindKind;
use crate::proto::endpoint::Owner;
use crate::proto::{Config, Connection, State};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::MutexGuard;
use std::task::Poll;

/// The range a sharded stack picks the ports of its outgoing connections from (Linux's
/// default `ip_local_port_range`).
const EPHEMERAL: (u16, u16) = (32_768, 60_999);
/// Ports a sharded stack tries for an outgoing connection before it takes any.
const LAND_TRIES: usize = 64;

fn shut_down() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "rawtcp: the stack shut down",
    )
}

impl Inner {
    /// Connection `id`'s entry — its engine, wakers and per-connection settings — for its
    /// handle to lock on its own (see [`super::table`]).
    pub(crate) fn entry_cell(&self, id: ConnId) -> Option<super::table::Cell> {
        self.table.cell(id)
    }
}

impl Shared {
    /// Releases the addresses forgotten connections gave back, after unlocking (releasing a
    /// port may run a tool: the raw datapath's nft).
    fn unlock_and_unbind(&self, mut inner: MutexGuard<'_, Inner>) {
        let addrs = std::mem::take(&mut inner.unbind_later);
        drop(inner);
        for a in addrs {
            self.datapath.unbind(a);
        }
    }

    /// The settings a new socket starts from (the stack's, from `StackBuilder::tcp_config`).
    pub(crate) fn socket_config(&self) -> Config {
        self.config.clone()
    }

    /// The source address for packets to `remote`: through interface `device` when the
    /// socket is bound to one (`SO_BINDTODEVICE`), else the datapath's route.
    pub(crate) fn source_ip(&self, device: Option<&[u8]>, remote: IpAddr) -> io::Result<IpAddr> {
        match device {
            Some(d) => self.datapath.local_ip_via(d, remote),
            None => self.datapath.local_ip_for(remote),
        }
    }

    /// Claims `addr` for a socket's `bind` (or for `listen` without one: the unspecified
    /// address, port 0). Returns the address claimed (with the port the
    /// datapath chose for port 0) and whether it was joined from listeners that share it
    /// (`SO_REUSEPORT`), in which case the claim stays theirs. With `reuseaddr`, a dropped
    /// listener's lingering address is taken over and connections lingering in TIME-WAIT on
    /// the port are given up first, as `SO_REUSEADDR` allows on Linux.
    pub(crate) fn bind_local(
        &self,
        addr: SocketAddr,
        reuseaddr: bool,
        reuseport: bool,
    ) -> io::Result<(SocketAddr, bool)> {
        let mut inner = self.lock();
        if addr.port() != 0
            && reuseport
            && inner.table.endpoint.listening_shared(addr) == Some(true)
        {
            return Ok((addr, true));
        }
        if let Some(i) = inner.lingering.iter().position(|a| *a == addr) {
            if reuseaddr {
                inner.lingering.swap_remove(i);
                return Ok((addr, false));
            }
        }
        if reuseaddr && addr.port() != 0 {
            for id in inner.table.ids() {
                let orphan = inner
                    .table
                    .endpoint
                    .connection(id)
                    .is_some_and(|c| c.owner == Owner::Orphan);
                let lingers = inner.table.get(id).is_some_and(|e| {
                    e.conn.state() == State::TimeWait
                        && e.claimed
                            .addr(e.conn.local_addr())
                            .is_some_and(|c| c.port() == addr.port())
                });
                if orphan && lingers {
                    inner.forget(id);
                }
            }
        }
        self.unlock_and_unbind(inner);
        // Claimed as a listening address: it serves `listen` as it is, and `connect` from a
        // bound address just as well.
        Ok((self.claim(addr, BindKind::Listen)?, false))
    }

    /// Opens a connection to `remote` held by the application: SYN-SENT, its SYN queued,
    /// every packet carrying traffic class `tos`.
    ///
    /// `fixed` is the bound local address, with the claim the connection takes over (`None`
    /// when the claim belongs to listeners sharing the address). Without one the stack
    /// chooses the port on `auto_ip`: one already claimed for connections elsewhere if the
    /// 4-tuple is free, else a new claim from the datapath, else — every port taken for this
    /// peer — `AddrNotAvailable` at once, as Linux's `connect` fails with `EADDRNOTAVAIL`.
    /// The choice and the table entry are made under one lock, so that concurrent connects
    /// never pick one 4-tuple twice.
    pub(crate) fn open(
        &self,
        fixed: Option<(SocketAddr, Option<SocketAddr>)>,
        auto_ip: IpAddr,
        remote: SocketAddr,
        config: &Config,
        zero_linger: bool,
        tos: u8,
    ) -> io::Result<(ConnId, Cell, SocketAddr)> {
        let release = |claimed: Option<SocketAddr>| {
            if let Some(c) = claimed {
                self.datapath.unbind(c);
            }
        };
        let mut fresh: Option<SocketAddr> = None;
        let mut exhausted = false;
        loop {
            let mut inner = self.lock();
            if inner.shutdown || inner.stopped {
                drop(inner);
                release(fixed.and_then(|f| f.1).or(fresh));
                return Err(shut_down());
            }
            let (local, claimed) = match fixed {
                Some(f) => f,
                None => {
                    if let Some(a) = fresh.take() {
                        inner.add_connect_port(a);
                        (a, Some(a))
                    } else if let Some(a) = {
                        let must = self.must_land(&inner, remote);
                        inner.share_connect_port(auto_ip, remote, exhausted, |p| {
                            !must || self.lands(p, remote)
                        })
                    } {
                        (a, Some(a))
                    } else if exhausted {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrNotAvailable,
                            format!(
                                "rawtcp: no local port left on {auto_ip} for a connection to {remote}"
                            ),
                        ));
                    } else {
                        let must = self.must_land(&inner, remote);
                        drop(inner);
                        match self.claim_connect_port(auto_ip, remote, must) {
                            Ok(a) => fresh = Some(a),
                            Err(e) if e.kind() == io::ErrorKind::AddrInUse => exhausted = true,
                            Err(e) => return Err(e),
                        }
                        continue;
                    }
                }
            };
            let Some(id) = inner.table.endpoint.connect(local, remote) else {
                let give_back = claimed.and_then(|c| inner.drop_claim(c));
                drop(inner);
                release(give_back);
                return Err(io::ErrorKind::AddrInUse.into());
            };
            let iss = self.isn(&inner, local, remote);
            let cfg = self.config_for(config, remote.ip(), remote);
            let conn = Connection::connect(cfg, local, remote, iss, self.now());
            inner.table.put(
                id,
                Entry {
                    claimed: Claim::of(claimed, local),
                    zero_linger,
                    tos,
                    ..Entry::new(conn, 64)
                },
            );
            let Some(cell) = inner.entry_cell(id) else {
                return Err(shut_down());
            };
            let tx = self.output_due(&mut inner, id, 0);
            drop(inner);
            if let Some(tx) = tx {
                tx.send();
            }
            return Ok((id, cell, local));
        }
    }

    /// Whether a connection to `remote` that this shard opens must use a port that
    /// [`lands`](Self::lands) here: on a sharded stack whose datapath steers the answers
    /// to outgoing connections by their ports (raw, TUN), always; where the answers reach
    /// the shard whatever the port (UDP: its own socket), only when `remote` is one of
    /// this stack's own listeners, so that both ends share a shard. Otherwise any port
    /// will do, and a port is shared between connections to every remote port, as on one
    /// shard: 100,000 connections to 9 server ports over UDP need no more descriptors
    /// than with one shard (with landing ports, more than the 20,000 allowed).
    pub(crate) fn must_land(&self, inner: &Inner, remote: SocketAddr) -> bool {
        self.place.1 > 1
            && (!self.datapath.capabilities().replies_reach_the_shard
                || inner.table.endpoint.listener_for(remote, remote).is_some())
    }

    /// Whether a connection from local port `port` to `remote` lands on this shard: the
    /// shard a sharded peer's listener (this stack's own, in particular) steers it to
    /// ([`shard_of`](crate::datapath::shard_of)) is this one's index, so that the two ends of
    /// a connection within one stack share a shard — what one end sends, the task that sent
    /// it takes up for the other end in the same pass, as on a stack of one shard. Measured:
    /// a 64-byte round trip between two connections of one 2-shard stack took 11 µs with
    /// both ends on one shard, 24 µs on two (each arrival then waits for the other shard's
    /// readiness from the kernel). Always true for a stack of one shard.
    pub(crate) fn lands(&self, port: u16, remote: SocketAddr) -> bool {
        let (index, count) = self.place;
        count == 1 || crate::datapath::shard_of(port, remote.port(), count) == index
    }

    /// A new local address on `ip` for connections to `remote`, claimed from the datapath.
    /// On a stack of one shard, the port the datapath chooses. On a sharded one, a port
    /// that [`lands`](Self::lands) on this shard: ports of the ephemeral range picked at
    /// random among those that land, each claimed by number until one is free. (Asking the
    /// datapath for port 0 until one lands does not work: Linux gives a TCP socket bound to
    /// port 0 an odd port while it has any, so over the raw datapath a shard whose ports
    /// must be even never got one, and each refused port cost two runs of `nft`.) After
    /// [`LAND_TRIES`] ports taken, `AddrInUse`. Without `must` (see
    /// [`must_land`](Self::must_land)), the port the datapath chooses.
    fn claim_connect_port(
        &self,
        ip: IpAddr,
        remote: SocketAddr,
        must: bool,
    ) -> io::Result<SocketAddr> {
        if must {
            use std::hash::{BuildHasher, Hasher};
            let mut random = std::collections::hash_map::RandomState::new().build_hasher();
            let (low, high) = EPHEMERAL;
            for attempt in 0..LAND_TRIES {
                random.write_usize(attempt);
                let r = random.finish();
                let start = low + (r % u64::from(high - low)) as u16;
                // Step up to the next port that lands: about one of every `count` does.
                let Some(port) = (start..=high).find(|p| self.lands(*p, remote)) else {
                    continue;
                };
                match self.claim(SocketAddr::new(ip, port), BindKind::Connect) {
                    Ok(a) => return Ok(a),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                    Err(e) => return Err(e),
                }
            }
            // A port that does not land would take the answers to another shard, which
            // has no such connection: the caller looks through the ports it holds, then
            // fails with `AddrNotAvailable`.
            return Err(io::ErrorKind::AddrInUse.into());
        }
        self.claim(SocketAddr::new(ip, 0), BindKind::Connect)
    }

    /// Claims `local` from the datapath. A claim may add a source of packets (a listener's
    /// socket, over UDP) that no poll has registered the stack's waker with: tasks about to
    /// wait ask the datapath again instead of trusting its last `Pending` (see
    /// `RxWake::arm`), and for a listening address the reactor is woken to ask: a task
    /// that connects to it next may find the receive state taken by a reactor whose round
    /// asked before the claim, and without it the answer would wait for the next wake
    /// (the SYN's retransmission, a second later).
    fn claim(&self, local: SocketAddr, kind: BindKind) -> io::Result<SocketAddr> {
        let claimed = self.datapath.bind(local, kind);
        self.rx_wake.disarm();
        if kind == BindKind::Listen && claimed.is_ok() {
            self.rx_wake.wake_reactor(super::rx::Cause::Housekeeping);
        }
        claimed
    }

    /// Listens at `addr`, which the socket claimed (or joined) already, with an accept queue
    /// of `backlog`; its connections (their SYN+ACK included) carry traffic class `tos`. `AddrInUse` unless every listener already there and this one allow
    /// sharing it; the claim is then given back unless it was joined.
    pub(crate) fn listen(
        &self,
        addr: SocketAddr,
        config: Config,
        backlog: usize,
        reuseport: bool,
        tos: u8,
    ) -> io::Result<ListenerKey> {
        let mut inner = self.lock();
        let joining = inner.table.endpoint.listening_shared(addr).is_some();
        let Some(id) = inner.table.endpoint.listen(addr, backlog, reuseport) else {
            drop(inner);
            if !joining {
                self.datapath.unbind(addr);
            }
            return Err(io::ErrorKind::AddrInUse.into());
        };
        inner.table.listeners.insert(
            id,
            Listener {
                config,
                waiters: WakerSet::default(),
                ttl: 64,
                tos,
            },
        );
        // The datapath may have opened a new source of packets (a UDP socket for this port):
        // the reactor must poll it once to register interest.
        if let Some(w) = &inner.reactor {
            w.wake_by_ref();
        }
        Ok(ListenerKey { addr, id })
    }

    /// The next connection in the accept queue of `key`'s listener, now the application's:
    /// its handle, local and remote address. When there is none, `register` is given the
    /// listener's waiters to join, under the same lock that found the queue empty.
    pub(crate) fn poll_accept(
        &self,
        key: ListenerKey,
        register: impl FnOnce(&mut WakerSet),
    ) -> Poll<io::Result<(ConnId, Cell, SocketAddr, SocketAddr)>> {
        let mut inner = self.lock();
        if inner.stopped || !inner.table.listeners.contains_key(&key.id) {
            return Poll::Ready(Err(shut_down()));
        }
        loop {
            let Some(id) = inner.table.endpoint.accept(key.id) else {
                if let Some(l) = inner.table.listeners.get_mut(&key.id) {
                    register(&mut l.waiters);
                }
                return Poll::Pending;
            };
            if let Some(cell) = inner.table.cell(id) {
                let (local, remote) = {
                    let e = super::table::lock(&cell);
                    (e.conn.local_addr(), e.conn.remote_addr())
                };
                return Poll::Ready(Ok((id, cell, local, remote)));
            }
        }
    }

    /// The TTL of the connections `key`'s listener accepts.
    pub(crate) fn listener_ttl(&self, key: ListenerKey) -> u8 {
        self.lock()
            .table
            .listeners
            .get(&key.id)
            .map_or(64, |l| l.ttl)
    }

    /// Sets the TTL of the connections `key`'s listener accepts from now on.
    pub(crate) fn set_listener_ttl(&self, key: ListenerKey, ttl: u8) {
        if let Some(l) = self.lock().table.listeners.get_mut(&key.id) {
            l.ttl = ttl;
        }
    }

    /// Stops `key`'s listener: connections it had not handed out are reset, and the address
    /// is released once no listener shares it and no accepted connection uses it.
    pub(crate) fn close_listener(&self, key: ListenerKey) {
        let mut inner = self.lock();
        inner.table.listeners.remove(&key.id);
        let Some(closed) = inner.table.endpoint.close_listener(key.id) else {
            return;
        };
        for id in closed.orphans {
            let found = inner.table.get(id).map(|mut e| e.conn.abort()).is_some();
            if found {
                inner.mark_dirty(id);
            }
        }
        if closed.last && !inner.stopped {
            if inner.table.endpoint.address_in_use(key.addr) {
                // Accepted connections still receive through this address (over UDP, its
                // socket): release it when the last of them is gone.
                inner.lingering.push(key.addr);
            } else {
                drop(inner);
                self.datapath.unbind(key.addr);
            }
        }
    }

    /// A socket that claimed `addr` and neither connected nor listened lets it go (unless
    /// listeners share it: then the claim is theirs).
    pub(crate) fn release_bound(&self, addr: SocketAddr) {
        if self.lock().table.endpoint.listening_shared(addr).is_none() {
            self.datapath.unbind(addr);
        }
    }

    /// The application let go of connection `id`: it closes — gracefully, with its
    /// buffered data delivered and a bounded FIN-WAIT-2, or with RST under zero linger — and
    /// is forgotten once closed.
    pub(crate) fn detach(&self, id: ConnId) {
        let mut inner = self.lock();
        let now = self.now();
        if inner.table.get(id).is_none() {
            return;
        }
        // Past the orphan limit the connection is reset rather than left to close.
        let room = inner.table.endpoint.orphan(id);
        let Some(mut e) = inner.table.get(id) else {
            return;
        };
        if e.zero_linger || !room {
            e.conn.abort();
        } else {
            // RFC 1122 §4.2.2.13: unread data discarded on close draws a RST.
            e.conn.orphan(now);
        }
        e.readers = WakerSet::default();
        e.writers = WakerSet::default();
        drop(e);
        if inner.stopped {
            // No reactor to finish the close: forget it now.
            inner.forget(id);
            self.unlock_and_unbind(inner);
        } else if let Some(tx) = self.output_due(&mut inner, id, 0) {
            drop(inner);
            tx.send();
        }
    }
}
