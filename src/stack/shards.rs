//! A stack split into shards (`StackBuilder::shards`): each shard is a complete stack of
//! its own — reactor, connection table, timers, datapath sockets — and shards share nothing
//! on the data path. What spans them lives here: starting them, claiming a listener's
//! address and listening on every shard, choosing the shard of an outgoing connection, and
//! adding up their counters. A stack of one shard is exactly the stack it always was.

use super::table::ListenerKey;
use super::{
    current_runtime, default_datapath, Owner, Settings, Shared, Stack, StackBuilder, StackStats,
};
use crate::datapath::{self, Datapath};
use crate::proto::Config;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The shards of a stack; dropping it stops every shard's reactor.
pub(crate) struct Shards {
    owners: Vec<Owner>,
    /// The shard the next `connect` without a bound port goes to.
    next: AtomicUsize,
}

impl Shards {
    pub(super) fn new(owners: Vec<Owner>) -> Shards {
        Shards {
            owners,
            next: AtomicUsize::new(0),
        }
    }

    /// Shard `k`.
    pub(super) fn get(&self, k: usize) -> &Arc<Shared> {
        &self.owners[k].shared
    }

    /// Every shard, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<Shared>> + '_ {
        self.owners.iter().map(|o| &o.shared)
    }
}

/// The number of shards `RAWTCP_SHARDS` asks for: a number, or `auto` (one per available
/// core); 1 when unset.
pub(super) fn from_env() -> io::Result<usize> {
    let Some(v) = std::env::var("RAWTCP_SHARDS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(1);
    };
    let v = v.trim();
    if v.eq_ignore_ascii_case("auto") {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("RAWTCP_SHARDS={v}: expected a number of shards (1 or more) or `auto`"),
        )),
    }
}

/// Starts `count` shards (more than one) over datapaths split from `datapath` (or the one
/// `RAWTCP_DATAPATH` names), each reactor on a thread of its own with `dedicated`, else
/// spawned on the current runtime.
pub(super) fn start(
    datapath: Option<Arc<dyn Datapath>>,
    settings: Settings,
    count: usize,
    dedicated: bool,
) -> io::Result<Stack> {
    let mut owners = Vec::with_capacity(count);
    if dedicated {
        // The first shard's thread makes the datapath the others are split from, inside
        // its runtime (the UDP datapath registers sockets with the runtime it is made in).
        let (origin_tx, origin_rx) = std::sync::mpsc::channel();
        let make = move || {
            let origin = datapath.map(Ok).unwrap_or_else(default_datapath)?;
            let first = origin.shard(0, count);
            let _ = origin_tx.send(origin);
            first
        };
        owners.push(StackBuilder::build_on_thread(
            make,
            settings.clone(),
            "rawtcp-reactor-0".into(),
        )?);
        let origin = origin_rx
            .recv()
            .map_err(|_| io::Error::other("rawtcp: reactor thread failed to start"))?;
        for k in 1..count {
            let o = Arc::clone(&origin);
            owners.push(StackBuilder::build_on_thread(
                move || o.shard(k, count),
                settings.clone(),
                format!("rawtcp-reactor-{k}"),
            )?);
        }
    } else {
        let handle = current_runtime()?;
        let origin = match datapath {
            Some(d) => d,
            None => default_datapath()?,
        };
        for k in 0..count {
            let d = origin.shard(k, count)?;
            let (owner, reactor) =
                StackBuilder::assemble(d, settings.clone(), (handle.clone(), false));
            handle.spawn(reactor);
            owners.push(owner);
        }
    }
    Ok(Stack {
        shards: Arc::new(Shards::new(owners)),
    })
}

impl Stack {
    /// How many shards the stack has (see [`StackBuilder::shards`]).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let stack = rawtcp::Stack::builder().shards(2).build()?;
    /// assert_eq!(stack.shard_count(), 2);
    /// # Ok(()) }
    /// ```
    pub fn shard_count(&self) -> usize {
        self.shards.owners.len()
    }

    /// The counters of each shard, in shard order ([`stats`](Self::stats) adds them up).
    pub fn shard_stats(&self) -> Vec<StackStats> {
        self.shards.iter().map(|s| s.stats()).collect()
    }

    /// Shard `k`.
    pub(crate) fn shard(&self, k: usize) -> &Arc<Shared> {
        self.shards.get(k)
    }

    /// The shard a connection from `bound` (a port the socket was bound to) to `remote`
    /// opens on: the one the datapath steers their ports to; without a bound port, the
    /// shards in turn (the connection's packets then leave and return through its shard's
    /// own sockets).
    pub(crate) fn connect_shard(&self, bound: Option<SocketAddr>, remote: SocketAddr) -> usize {
        let n = self.shard_count();
        if n == 1 {
            return 0;
        }
        match bound {
            Some(b) => datapath::shard_of(b.port(), remote.port(), n),
            None => self.shards.next.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// Claims `addr` on every shard (see [`Shared::bind_local`]): the first shard's claim
    /// chooses the port, the others claim the same address. All or none.
    pub(crate) fn bind_local(
        &self,
        addr: SocketAddr,
        reuseaddr: bool,
        reuseport: bool,
    ) -> io::Result<(SocketAddr, bool)> {
        let (claimed, joined) = self.shared().bind_local(addr, reuseaddr, reuseport)?;
        for (k, s) in self.shards.iter().enumerate().skip(1) {
            if let Err(e) = s.bind_local(claimed, reuseaddr, reuseport) {
                if !joined {
                    for s in self.shards.iter().take(k) {
                        s.release_bound(claimed);
                    }
                }
                return Err(e);
            }
        }
        Ok((claimed, joined))
    }

    /// Gives back `addr`, claimed by [`bind_local`](Self::bind_local), on every shard but
    /// `except` (the shard a connection from it opened on keeps its claim).
    pub(crate) fn release_bound(&self, addr: SocketAddr, except: Option<usize>) {
        for (k, s) in self.shards.iter().enumerate() {
            if Some(k) != except {
                s.release_bound(addr);
            }
        }
    }

    /// Listens at `addr`, claimed on every shard already, on every shard (see
    /// [`Shared::listen`]), the backlog divided between them. All or none.
    pub(crate) fn listen(
        &self,
        addr: SocketAddr,
        config: &Config,
        backlog: usize,
        reuseport: bool,
        tos: u8,
    ) -> io::Result<Vec<(Arc<Shared>, ListenerKey)>> {
        let n = self.shard_count();
        let each = if n == 1 {
            backlog
        } else {
            backlog.div_ceil(n).max(1)
        };
        let mut parts = Vec::with_capacity(n);
        for (k, s) in self.shards.iter().enumerate() {
            match s.listen(addr, config.clone(), each, reuseport, tos) {
                Ok(key) => parts.push((Arc::clone(s), key)),
                Err(e) => {
                    // Shard `k` gave its claim back; the listeners made give theirs back as
                    // they close, and the shards after `k` still hold theirs.
                    for (s, key) in parts {
                        s.close_listener(key);
                    }
                    for s in self.shards.iter().skip(k + 1) {
                        s.release_bound(addr);
                    }
                    return Err(e);
                }
            }
        }
        Ok(parts)
    }
}

impl StackStats {
    /// Adds `other`'s counts to these (the shards of one stack).
    pub(super) fn add(&mut self, other: &StackStats) {
        let StackStats {
            packets_in,
            packets_out,
            malformed,
            resets_sent,
            syn_dropped,
            cookies_sent,
            cookies_accepted,
            cookies_rejected,
            time_wait_overflows,
            orphan_overflows,
            poisoned,
            buffer_memory,
            memory_pressure,
            time_wait,
            orphans,
            listen_overflows,
            inline_transmits,
            inline_receives,
            reactor_polls,
            send_deferred,
            send_dropped,
            connections,
        } = other;
        self.packets_in += packets_in;
        self.packets_out += packets_out;
        self.malformed += malformed;
        self.resets_sent += resets_sent;
        self.syn_dropped += syn_dropped;
        self.cookies_sent += cookies_sent;
        self.cookies_accepted += cookies_accepted;
        self.cookies_rejected += cookies_rejected;
        self.time_wait_overflows += time_wait_overflows;
        self.orphan_overflows += orphan_overflows;
        self.poisoned += poisoned;
        self.buffer_memory += buffer_memory;
        self.memory_pressure += memory_pressure;
        self.time_wait += time_wait;
        self.orphans += orphans;
        self.listen_overflows += listen_overflows;
        self.inline_transmits += inline_transmits;
        self.inline_receives += inline_receives;
        self.reactor_polls += reactor_polls;
        self.send_deferred += send_deferred;
        self.send_dropped += send_dropped;
        self.connections += connections;
    }
}
