//! [`TcpSocket`]: a socket configured before it connects or listens, like
//! `tokio::net::TcpSocket`.

use super::handle::ConnHandle;
use super::{TcpListener, TcpStream};
use crate::datapath::BindKind;
use crate::proto::cc::Algorithm;
use crate::proto::{Config, Connection, Keepalive, State};
use crate::stack::table::{Entry, Listener, Owner};
use crate::Stack;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

struct Options {
    bound: Option<SocketAddr>,
    /// `bound` belongs to listeners this socket joins (`SO_REUSEPORT`), not to this socket.
    joined: bool,
    config: Config,
    reuseaddr: bool,
    reuseport: bool,
    zero_linger: bool,
}

/// A socket to configure (addresses, buffer sizes, keepalive, Nagle, linger) before
/// [`connect`](Self::connect) or [`listen`](Self::listen).
///
/// The send and receive buffer sizes set the engine's buffers, so the receive buffer is the
/// largest window this side advertises.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use rawtcp::TcpSocket;
/// let socket = TcpSocket::new_v4()?;
/// socket.set_recv_buffer_size(4 << 20)?;
/// socket.set_nodelay(true)?;
/// let stream = socket.connect("127.0.0.1:8080".parse().unwrap()).await?;
/// # Ok(()) }
/// ```
pub struct TcpSocket {
    stack: Stack,
    v6: bool,
    opts: Mutex<Options>,
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSocket")
            .field("v6", &self.v6)
            .field("bound", &self.opts().bound)
            .finish()
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl TcpSocket {
    /// An IPv4 socket on the default stack.
    pub fn new_v4() -> io::Result<TcpSocket> {
        Stack::default_stack()?.socket_v4()
    }

    /// An IPv6 socket on the default stack.
    pub fn new_v6() -> io::Result<TcpSocket> {
        Stack::default_stack()?.socket_v6()
    }

    pub(crate) fn on_stack(stack: Stack, v6: bool) -> TcpSocket {
        let config = stack.shared().config.clone();
        TcpSocket {
            stack,
            v6,
            opts: Mutex::new(Options {
                bound: None,
                joined: false,
                config,
                reuseaddr: false,
                reuseport: false,
                zero_linger: false,
            }),
        }
    }

    fn opts(&self) -> MutexGuard<'_, Options> {
        self.opts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_family(&self, addr: SocketAddr) -> io::Result<()> {
        if addr.is_ipv6() != self.v6 {
            return Err(invalid("address family does not match the socket"));
        }
        Ok(())
    }

    /// Claims a local address. Port 0 lets the stack choose. `AddrInUse` if taken (with
    /// `reuseaddr`, connections lingering in TIME-WAIT on it are given up first).
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.check_family(addr)?;
        let mut o = self.opts();
        if o.bound.is_some() {
            return Err(invalid("socket is already bound"));
        }
        let shared = self.stack.shared();
        let mut released = Vec::new();
        {
            let mut inner = shared.lock();
            if addr.port() != 0 && o.reuseport && inner.table.listening_shared(addr) == Some(true) {
                // Joining listeners that share this address: the datapath claim is theirs.
                o.bound = Some(addr);
                o.joined = true;
                return Ok(());
            }
            if let Some(i) = inner.lingering.iter().position(|a| *a == addr) {
                if o.reuseaddr {
                    // A dropped listener's address, kept for its accepted connections: like
                    // SO_REUSEADDR on Linux, a new socket may take it over.
                    inner.lingering.swap_remove(i);
                    o.bound = Some(addr);
                    return Ok(());
                }
            }
            if o.reuseaddr && addr.port() != 0 {
                // SO_REUSEADDR: connections in TIME-WAIT do not keep the port.
                for id in inner.table.ids() {
                    let Some(e) = inner.table.get_mut(id) else {
                        continue;
                    };
                    if e.conn.state() == State::TimeWait
                        && e.owner == Owner::Detached
                        && e.claimed.is_some_and(|c| c.port() == addr.port())
                    {
                        released.extend(inner.forget(id));
                    }
                }
            }
        }
        // Outside the lock: releasing a port may run a tool (the raw datapath's nft).
        for c in released {
            shared.datapath.unbind(c);
        }
        // Claimed as a listening address: it serves `listen` as it is, and `connect` from a
        // bound address just as well.
        let claimed = shared.datapath.bind(addr, BindKind::Listen)?;
        o.bound = Some(claimed);
        Ok(())
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.opts()
            .bound
            .ok_or_else(|| invalid("socket is not bound"))
    }

    /// Opens a connection to `addr`. `ConnectionRefused` when a RST answers the SYN,
    /// `TimedOut` after the SYN retries.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        self.check_family(addr)?;
        let shared = self.stack.shared().clone();
        let (fixed, auto_ip, cfg, zero_linger) = {
            let mut o = self.opts();
            let joined = std::mem::take(&mut o.joined);
            let (fixed, auto_ip) = match o.bound.take() {
                Some(b) if b.ip().is_unspecified() => {
                    let ip = shared.datapath.local_ip_for(addr.ip())?;
                    // An address joined from sharing listeners stays theirs to release.
                    (
                        Some((SocketAddr::new(ip, b.port()), (!joined).then_some(b))),
                        ip,
                    )
                }
                Some(b) => (Some((b, (!joined).then_some(b))), b.ip()),
                None => (None, shared.datapath.local_ip_for(addr.ip())?),
            };
            (fixed, auto_ip, o.config.clone(), o.zero_linger)
        };
        let release = |claimed: Option<SocketAddr>| {
            if let Some(c) = claimed {
                shared.datapath.unbind(c);
            }
        };
        // Without a bound address the stack chooses the port (see `Inner::share_connect_port`):
        // one already claimed for connections elsewhere if the 4-tuple is free, else a new
        // claim from the datapath, else — every port taken for this peer — `AddrNotAvailable`
        // at once, as Linux's `connect` fails with `EADDRNOTAVAIL`. The choice and the
        // table entry are made under one lock, so that concurrent connects never pick one
        // 4-tuple twice.
        let mut fresh: Option<SocketAddr> = None;
        let mut exhausted = false;
        let (id, local) = loop {
            let mut inner = shared.lock();
            if inner.shutdown || inner.stopped {
                drop(inner);
                release(fixed.and_then(|f| f.1).or(fresh));
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "rawtcp: the stack shut down",
                ));
            }
            let (local, claimed) = match fixed {
                Some(f) => f,
                None => {
                    if let Some(a) = fresh.take() {
                        inner.add_connect_port(a);
                        (a, Some(a))
                    } else if let Some(a) = inner.share_connect_port(auto_ip, addr, exhausted) {
                        (a, Some(a))
                    } else if exhausted {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrNotAvailable,
                            format!("rawtcp: no local port left on {auto_ip} for a connection to {addr}"),
                        ));
                    } else {
                        drop(inner);
                        match shared
                            .datapath
                            .bind(SocketAddr::new(auto_ip, 0), BindKind::Connect)
                        {
                            Ok(a) => fresh = Some(a),
                            Err(e) if e.kind() == io::ErrorKind::AddrInUse => exhausted = true,
                            Err(e) => return Err(e),
                        }
                        continue;
                    }
                }
            };
            if inner.table.by_tuple.contains_key(&(local, addr)) {
                let give_back = claimed.and_then(|c| inner.drop_claim(c));
                drop(inner);
                release(give_back);
                return Err(io::ErrorKind::AddrInUse.into());
            }
            let iss = shared.isn(&inner, local, addr);
            let cfg = shared.config_for(&cfg, addr.ip());
            let conn = Connection::connect(cfg, local, addr, iss, shared.now());
            let id = inner.table.insert(Entry {
                conn,
                owner: Owner::User,
                readers: Default::default(),
                writers: Default::default(),
                scheduled: None,
                dirty: false,
                claimed,
                ttl: 64,
                tos: 0,
                zero_linger,
                error_taken: false,
                established_seen: false,
                handshake_seen: false,
                route: None,
            });
            inner.mark_dirty(id);
            break (id, local);
        };
        let handle = ConnHandle {
            shared,
            id,
            local,
            remote: addr,
        };
        // If this future is dropped, or the handshake fails, dropping the handle closes the
        // connection and releases the port.
        poll_fn(|cx| handle.poll_connected(cx)).await?;
        Ok(TcpStream::from_handle(handle))
    }

    /// Starts listening with an accept queue of `backlog` connections.
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        let shared = self.stack.shared().clone();
        let mut o = self.opts();
        let addr = match o.bound.take() {
            Some(a) => a,
            None => {
                let any = SocketAddr::new(
                    if self.v6 {
                        std::net::Ipv6Addr::UNSPECIFIED.into()
                    } else {
                        std::net::Ipv4Addr::UNSPECIFIED.into()
                    },
                    0,
                );
                shared.datapath.bind(any, BindKind::Listen)?
            }
        };
        let mut inner = shared.lock();
        let joining = inner.table.listening_shared(addr).is_some();
        let listener = Listener {
            config: o.config.clone(),
            backlog: (backlog as usize).max(1),
            syn_queue: 0,
            accept_queue: Default::default(),
            waiters: Default::default(),
            ttl: 64,
            tos: 0,
            reuseport: o.reuseport,
        };
        let key = match inner.table.add_listener(addr, listener) {
            Ok(k) => k,
            Err(e) => {
                if !joining {
                    drop(inner);
                    shared.datapath.unbind(addr);
                }
                return Err(e);
            }
        };
        // The datapath may have opened a new source of packets (a UDP socket for this port):
        // the reactor must poll it once to register interest.
        if let Some(w) = &inner.reactor {
            w.wake_by_ref();
        }
        drop(inner);
        Ok(TcpListener { shared, key })
    }

    /// Keepalive probing with Linux's defaults (2 h idle, 75 s interval, 9 probes), or off.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.opts().config.keepalive = on.then(Keepalive::default);
        Ok(())
    }

    /// Keepalive probing with explicit timing.
    pub fn set_keepalive_params(&self, keepalive: Option<Keepalive>) -> io::Result<()> {
        self.opts().config.keepalive = keepalive;
        Ok(())
    }

    /// Whether keepalive is on.
    pub fn keepalive(&self) -> io::Result<bool> {
        Ok(self.opts().config.keepalive.is_some())
    }

    /// `SO_REUSEADDR`: binding may take a port held only by connections in TIME-WAIT.
    pub fn set_reuseaddr(&self, reuseaddr: bool) -> io::Result<()> {
        self.opts().reuseaddr = reuseaddr;
        Ok(())
    }

    /// Whether `SO_REUSEADDR` is set.
    pub fn reuseaddr(&self) -> io::Result<bool> {
        Ok(self.opts().reuseaddr)
    }

    /// `SO_REUSEPORT`: several listeners of this stack may share one address; each peer is
    /// sent to one of them by a hash of its address.
    pub fn set_reuseport(&self, reuseport: bool) -> io::Result<()> {
        self.opts().reuseport = reuseport;
        Ok(())
    }

    /// Whether `SO_REUSEPORT` is set.
    pub fn reuseport(&self) -> io::Result<bool> {
        Ok(self.opts().reuseport)
    }

    /// The send buffer size: how much written data may wait for acknowledgment.
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.opts().config.send_buffer = (size as usize).max(1);
        Ok(())
    }

    /// The send buffer size.
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        Ok(self.opts().config.send_buffer.min(u32::MAX as usize) as u32)
    }

    /// The receive buffer size: the largest window advertised (and the window scale chosen).
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.opts().config.recv_buffer = (size as usize).max(1);
        Ok(())
    }

    /// The receive buffer size.
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        Ok(self.opts().config.recv_buffer.min(u32::MAX as usize) as u32)
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.opts().config.nodelay = nodelay;
        Ok(())
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.opts().config.nodelay)
    }

    /// `Some(Duration::ZERO)`: close with RST; anything else: the graceful close.
    pub fn set_linger(&self, dur: Option<Duration>) -> io::Result<()> {
        self.opts().zero_linger = dur == Some(Duration::ZERO);
        Ok(())
    }

    /// With `true`, the stream made from this socket closes with RST when dropped.
    pub fn set_zero_linger(&self, zero: bool) -> io::Result<()> {
        self.opts().zero_linger = zero;
        Ok(())
    }

    /// The linger setting.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts().zero_linger.then_some(Duration::ZERO))
    }

    /// The congestion-control algorithm connections from this socket use (Linux's
    /// `TCP_CONGESTION`): `"newreno"`, `"cubic"` (the default) or `"bbr"`, parsed with
    /// [`str::parse`], or your own through [`Algorithm::Custom`].
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_congestion("bbr".parse().unwrap())?;
    /// let stream = socket.connect("127.0.0.1:8080".parse().unwrap()).await?;
    /// assert_eq!(stream.info()?.congestion_control, "bbr");
    /// # Ok(()) }
    /// ```
    pub fn set_congestion(&self, algorithm: Algorithm) -> io::Result<()> {
        self.opts().config.congestion = algorithm;
        Ok(())
    }

    /// The congestion-control algorithm connections from this socket will use.
    pub fn congestion(&self) -> io::Result<Algorithm> {
        Ok(self.opts().config.congestion.clone())
    }

    /// The engine settings connections from this socket start with (buffer sizes, timers,
    /// congestion control...), for settings tokio has no method for.
    pub fn set_tcp_config(&self, config: Config) -> io::Result<()> {
        self.opts().config = config;
        Ok(())
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        if let Some(b) = self.opts().bound.take() {
            let shared = self.stack.shared();
            if shared.lock().table.listening_shared(b).is_none() {
                shared.datapath.unbind(b);
            }
        }
    }
}
