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
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The shards of a stack; dropping it stops every shard's reactor.
pub(crate) struct Shards {
    owners: Vec<Owner>,
    /// The shard the next task to connect (without a bound port) is given.
    next: AtomicUsize,
    /// The shard each task that connected was given (see [`Stack::connect_shard`]).
    tasks: Mutex<HashMap<Caller, usize>>,
}

/// Who calls `connect`: a tokio task, or a thread outside any task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

/// Tasks whose shard is remembered at most.
const MAX_TASKS: usize = 4096;

impl Shards {
    pub(super) fn new(owners: Vec<Owner>) -> Shards {
        Shards {
            owners,
            next: AtomicUsize::new(0),
            tasks: Mutex::new(HashMap::new()),
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

/// How many shards a stack is to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Count {
    /// Exactly this many: a datapath that cannot steer is an error.
    Exactly(usize),
    /// This many, one per available core, where the datapath can steer; else one.
    Auto(usize),
}

impl Count {
    pub(super) fn get(self) -> usize {
        match self {
            Count::Exactly(n) | Count::Auto(n) => n,
        }
    }
}

/// Shards a stack has at most (the raw and TUN datapaths keep which shards hold an
/// address in one 64-bit word; a TUN device takes at most 256 queues).
pub(crate) const MAX_SHARDS: usize = 64;

/// One shard per available core, where the datapath can steer (at most [`MAX_SHARDS`]).
fn auto() -> Count {
    Count::Auto(
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_SHARDS),
    )
}

/// The number of shards `RAWTCP_SHARDS` asks for: a number, or `auto` (one per available
/// core where the datapath can steer, else one); `auto` when unset.
pub(super) fn from_env() -> io::Result<Count> {
    let Some(v) = std::env::var("RAWTCP_SHARDS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(auto());
    };
    let v = v.trim();
    if v.eq_ignore_ascii_case("auto") {
        return Ok(auto());
    }
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Count::Exactly(n)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("RAWTCP_SHARDS={v}: expected a number of shards (1 or more) or `auto`"),
        )),
    }
}

/// Whether the first shard's datapath could not be split and the stack goes on with one
/// shard, on the datapath itself (`count` was only a default).
fn stays_whole(count: Count, e: &io::Error) -> bool {
    matches!(count, Count::Auto(_)) && e.kind() == io::ErrorKind::Unsupported
}

/// The first shard's datapath and place, and the datapath the other shards are split from
/// (`None` when the stack has one shard).
struct First {
    datapath: Arc<dyn Datapath>,
    place: (usize, usize),
    origin: Option<Arc<dyn Datapath>>,
}

/// The first shard of a stack of `count` over `origin`: `origin` itself when there is one
/// shard, or when `count` was only a default and `origin` cannot steer; else split from it.
fn first_shard(origin: Arc<dyn Datapath>, count: Count) -> io::Result<First> {
    let whole = |datapath| First {
        datapath,
        place: (0, 1),
        origin: None,
    };
    let n = count.get();
    if n == 1 {
        return Ok(whole(origin));
    }
    match origin.shard(0, n) {
        Ok(datapath) => Ok(First {
            datapath,
            place: (0, n),
            origin: Some(origin),
        }),
        Err(e) if stays_whole(count, &e) => Ok(whole(origin)),
        Err(e) => Err(e),
    }
}

/// The name of shard `k`'s reactor thread in a stack of `n`.
fn thread_name(k: usize, n: usize) -> String {
    if n == 1 {
        "rawtcp-reactor".into()
    } else {
        format!("rawtcp-reactor-{k}")
    }
}

/// Starts a stack of `count` shards over datapaths split from `datapath` (or the one
/// `RAWTCP_DATAPATH` names; with one shard, over that datapath itself), each reactor on a
/// thread of its own with `dedicated`, else spawned on the current runtime. A default count
/// on a datapath that cannot steer gives a stack of one shard.
pub(super) fn start(
    datapath: Option<Arc<dyn Datapath>>,
    settings: Settings,
    count: Count,
    dedicated: bool,
) -> io::Result<Stack> {
    let n = count.get();
    if n > MAX_SHARDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("rawtcp: {n} shards asked for; a stack has at most {MAX_SHARDS}"),
        ));
    }
    let mut owners = Vec::with_capacity(n);
    if dedicated {
        // The first shard's thread makes the datapath the others are split from, inside
        // its runtime (the UDP datapath registers sockets with the runtime it is made in).
        let (origin_tx, origin_rx) = std::sync::mpsc::channel();
        let make = move || {
            let origin = datapath.map(Ok).unwrap_or_else(default_datapath)?;
            let first = first_shard(origin, count)?;
            let _ = origin_tx.send(first.origin);
            Ok((first.datapath, first.place))
        };
        owners.push(StackBuilder::build_on_thread(
            make,
            settings.clone(),
            thread_name(0, n),
        )?);
        let origin = origin_rx
            .recv()
            .map_err(|_| io::Error::other("rawtcp: reactor thread failed to start"))?;
        if let Some(origin) = origin {
            for k in 1..n {
                let o = Arc::clone(&origin);
                owners.push(StackBuilder::build_on_thread(
                    move || Ok((o.shard(k, n)?, (k, n))),
                    settings.clone(),
                    thread_name(k, n),
                )?);
            }
        }
    } else {
        let handle = current_runtime()?;
        // Reactors on the application's runtime: more than it has worker threads would
        // only take turns (a current-thread runtime has one).
        let count = match count {
            Count::Auto(n) => Count::Auto(n.min(match handle.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::CurrentThread => 1,
                _ => handle.metrics().num_workers().max(1),
            })),
            exact => exact,
        };
        let n = count.get();
        let origin = match datapath {
            Some(d) => d,
            None => default_datapath()?,
        };
        let mut spawn = |d, place| {
            let (owner, reactor) =
                StackBuilder::assemble(d, settings.clone(), (handle.clone(), false), place);
            handle.spawn(reactor);
            owners.push(owner);
        };
        let first = first_shard(origin, count)?;
        spawn(first.datapath, first.place);
        if let Some(origin) = first.origin {
            for k in 1..n {
                spawn(origin.shard(k, n)?, (k, n));
            }
        }
    }
    for (k, o) in owners.iter().enumerate() {
        let others = owners
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(_, p)| Arc::downgrade(&p.shared))
            .collect();
        let _ = o.shared.siblings.set(others);
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

    /// What the stack's datapath can do (see [`datapath::Capabilities`]); a sharded stack's
    /// shards all have the same.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let stack = rawtcp::Stack::builder().build()?;
    /// println!("{:?}", stack.datapath_capabilities());
    /// # Ok(()) }
    /// ```
    pub fn datapath_capabilities(&self) -> datapath::Capabilities {
        self.shared().datapath.capabilities()
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
    /// calling task's. A task is given a shard at its first `connect`, the shards in turn,
    /// and keeps it (outside a task, the calling thread does).
    ///
    /// Measured on two shards: a task whose connections took the shards in turn ran a
    /// connect-and-close loop at 0.36–0.60 of `tokio::net` (one shard: 0.62–0.75), a few
    /// connections in a hundred waiting 1–10 ms for arrivals that the shard it had left
    /// handed to it; a task kept to its shard, 0.62–0.73. A shard chosen from the task
    /// alone did not spread: by its waker's address (reused by tasks spawned and awaited
    /// one after another) or its id (consecutive tasks alternating with the server's), 8
    /// flows landed mostly on one shard.
    pub(crate) fn connect_shard(&self, bound: Option<SocketAddr>, remote: SocketAddr) -> usize {
        let n = self.shard_count();
        if n == 1 {
            return 0;
        }
        if let Some(b) = bound {
            return datapath::shard_of(b.port(), remote.port(), n);
        }
        let next = || self.shards.next.fetch_add(1, Ordering::Relaxed) % n;
        // Outside a task (`block_on`, a plain thread), the thread is the caller.
        let task = match tokio::task::try_id() {
            Some(id) => Caller::Task(id),
            None => Caller::Thread(std::thread::current().id()),
        };
        let mut tasks = self.shards.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.len() >= MAX_TASKS && !tasks.contains_key(&task) {
            // Bounded: the tasks that connected long ago (most are gone) start over.
            tasks.clear();
        }
        *tasks.entry(task).or_insert_with(next)
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
            reactor_wakes,
            watchdog_rescues,
            busy_polled,
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
        self.reactor_wakes.add(reactor_wakes);
        self.watchdog_rescues += watchdog_rescues;
        self.busy_polled += busy_polled;
        self.send_deferred += send_deferred;
        self.send_dropped += send_dropped;
        self.connections += connections;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::sim::SimNetwork;
    use crate::datapath::udp::UdpDatapath;

    fn settings() -> Settings {
        Settings {
            config: Config::default(),
            tap: None,
            isn_fn: None,
            syn_cookies: None,
            limits: None,
            max_buffer_memory: None,
            busy_poll: super::super::DEFAULT_BUSY_POLL,
            partial_checksums: true,
        }
    }

    /// `auto` splits a datapath that can steer (on the runtime, into no more shards than
    /// it has workers) and leaves one that cannot whole; an exact count on one that cannot
    /// is an error, on a reactor thread or on the runtime alike.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auto_splits_what_can_be_split() {
        for dedicated in [false, true] {
            let udp: Arc<dyn Datapath> = Arc::new(UdpDatapath::new().unwrap());
            let s = start(Some(udp), settings(), Count::Auto(3), dedicated).unwrap();
            assert_eq!(s.shard_count(), if dedicated { 3 } else { 2 });
            let udp: Arc<dyn Datapath> = Arc::new(UdpDatapath::new().unwrap());
            let s = start(Some(udp), settings(), Count::Exactly(3), dedicated).unwrap();
            assert_eq!(s.shard_count(), 3, "an exact count is kept");
            let net = SimNetwork::new(1);
            let sim: Arc<dyn Datapath> = Arc::new(net.host([10, 0, 0, 1].into()).unwrap());
            let s = start(Some(sim), settings(), Count::Auto(3), dedicated).unwrap();
            assert_eq!(s.shard_count(), 1);
            assert_eq!(s.datapath_name(), "sim");
            let sim: Arc<dyn Datapath> = Arc::new(net.host([10, 0, 0, 2].into()).unwrap());
            let e = start(Some(sim), settings(), Count::Exactly(3), dedicated).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        }
    }

    /// More than [`MAX_SHARDS`] shards is refused, saying why.
    #[tokio::test]
    async fn at_most_64_shards() {
        let udp: Arc<dyn Datapath> = Arc::new(UdpDatapath::new().unwrap());
        let e = start(Some(udp), settings(), Count::Exactly(65), true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("at most 64"), "{e}");
    }

    /// On a current-thread runtime, `auto` gives one shard: more would only take turns.
    #[tokio::test]
    async fn auto_on_one_thread_is_one_shard() {
        let udp: Arc<dyn Datapath> = Arc::new(UdpDatapath::new().unwrap());
        let s = start(Some(udp), settings(), Count::Auto(4), false).unwrap();
        assert_eq!(s.shard_count(), 1);
        let udp: Arc<dyn Datapath> = Arc::new(UdpDatapath::new().unwrap());
        let s = start(Some(udp), settings(), Count::Auto(4), true).unwrap();
        assert_eq!(
            s.shard_count(),
            4,
            "threads of their own are not the runtime's"
        );
    }
}
