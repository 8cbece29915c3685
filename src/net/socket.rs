//! [`TcpSocket`]: a socket configured before it connects or listens, like
//! `tokio::net::TcpSocket`.

use super::handle::ConnHandle;
use super::{os_error, unsupported, TcpListener, TcpStream};
use crate::proto::cc::Algorithm;
use crate::proto::{Config, Keepalive};
use crate::Stack;
use nix::errno::Errno;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

struct Options {
    bound: Option<SocketAddr>,
    /// `bound` belongs to listeners this socket joins (`SO_REUSEPORT`), not to this socket.
    joined: bool,
    config: Config,
    reuseaddr: bool,
    reuseport: bool,
    /// `SO_LINGER` in whole seconds; zero closes with RST.
    linger: Option<Duration>,
    /// `IP_TOS`, ECN bits cleared as Linux keeps it for TCP.
    tos: u8,
    /// `IPV6_TCLASS`, likewise.
    tclass: u8,
    /// `SO_BINDTODEVICE`.
    device: Option<Vec<u8>>,
}

/// A socket to configure (addresses, buffer sizes, keepalive, Nagle, linger, traffic class,
/// interface) before [`connect`](Self::connect) or [`listen`](Self::listen), with the
/// methods of `tokio::net::TcpSocket`.
///
/// The send and receive buffer sizes set the engine's buffers, so the receive buffer is the
/// largest window this side advertises. The traffic class ([`set_tos_v4`](Self::set_tos_v4),
/// [`set_tclass_v6`](Self::set_tclass_v6)) is written into every packet the connection
/// sends. [`from_std_stream`](Self::from_std_stream) cannot adopt a kernel socket: the
/// socket it returns fails every call with [`io::ErrorKind::Unsupported`].
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
    /// `None` for a socket made by [`TcpSocket::from_std_stream`], which cannot be used.
    stack: Option<Stack>,
    v6: bool,
    opts: Mutex<Options>,
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.opts();
        f.debug_struct("TcpSocket")
            .field("v6", &self.v6)
            .field("bound", &o.bound)
            .field("from_std_stream", &self.stack.is_none())
            .finish()
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl TcpSocket {
    /// A new IPv4 socket on the default stack.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.bind("127.0.0.1:0".parse().unwrap())?;
    /// let listener = socket.listen(128)?;
    /// # let _ = listener; Ok(()) }
    /// ```
    pub fn new_v4() -> io::Result<TcpSocket> {
        Stack::default_stack()?.socket_v4()
    }

    /// A new IPv6 socket on the default stack.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v6()?;
    /// let stream = socket.connect("[::1]:8080".parse().unwrap()).await?;
    /// # let _ = stream; Ok(()) }
    /// ```
    pub fn new_v6() -> io::Result<TcpSocket> {
        Stack::default_stack()?.socket_v6()
    }

    pub(crate) fn on_stack(stack: Stack, v6: bool) -> TcpSocket {
        let config = stack.shared().socket_config();
        TcpSocket {
            stack: Some(stack),
            v6,
            opts: Mutex::new(Options {
                bound: None,
                joined: false,
                config,
                reuseaddr: false,
                reuseport: false,
                linger: None,
                tos: 0,
                tclass: 0,
                device: None,
            }),
        }
    }

    /// Unsupported: rawtcp cannot take over a kernel socket (its connections are built in
    /// user space). The signature promises a socket, so it returns one, of the standard
    /// stream's address family, on which every method fails with
    /// [`io::ErrorKind::Unsupported`]; the standard stream is dropped (closed). Make the
    /// socket with [`new_v4`](Self::new_v4) or [`new_v6`](Self::new_v6) instead.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let std = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let socket = rawtcp::TcpSocket::from_std_stream(std);
    /// let err = socket.set_nodelay(true).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    /// # }
    /// ```
    pub fn from_std_stream(std_stream: std::net::TcpStream) -> TcpSocket {
        let v6 = std_stream.local_addr().is_ok_and(|a| a.is_ipv6());
        drop(std_stream);
        TcpSocket {
            stack: None,
            v6,
            opts: Mutex::new(Options {
                bound: None,
                joined: false,
                config: Config::default(),
                reuseaddr: false,
                reuseport: false,
                linger: None,
                tos: 0,
                tclass: 0,
                device: None,
            }),
        }
    }

    fn stack(&self) -> io::Result<&Stack> {
        self.stack
            .as_ref()
            .ok_or_else(|| unsupported("TcpSocket::from_std_stream"))
    }

    /// The options, for a socket that can be used.
    fn opts_checked(&self) -> io::Result<MutexGuard<'_, Options>> {
        self.stack()?;
        Ok(self.opts())
    }

    fn opts(&self) -> MutexGuard<'_, Options> {
        self.opts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_family(&self, addr: SocketAddr) -> io::Result<()> {
        if addr.is_ipv6() != self.v6 {
            // As the kernel answers an address of the other family.
            return Err(os_error(Errno::EAFNOSUPPORT));
        }
        Ok(())
    }

    /// Claims a local address; port 0 lets the stack choose.
    ///
    /// `AddrInUse` if another socket holds it (with [`set_reuseaddr`](Self::set_reuseaddr),
    /// connections lingering in TIME-WAIT on it are given up first), `AddrNotAvailable` if
    /// it is not an address of this host, `InvalidInput` if the socket is already bound,
    /// and the kernel's `EAFNOSUPPORT` for an address of the other family.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.bind("127.0.0.1:8080".parse().unwrap())?;
    /// assert_eq!(socket.local_addr()?.port(), 8080);
    /// # Ok(()) }
    /// ```
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        let stack = self.stack()?;
        self.check_family(addr)?;
        let mut o = self.opts();
        if o.bound.is_some() {
            return Err(invalid("socket is already bound"));
        }
        let (claimed, joined) = stack.bind_local(addr, o.reuseaddr, o.reuseport)?;
        o.joined = joined;
        o.bound = Some(claimed);
        Ok(())
    }

    /// The bound address; the unspecified address and port 0 of the socket's family before
    /// [`bind`](Self::bind), as the kernel answers.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert_eq!(socket.local_addr()?, "0.0.0.0:0".parse().unwrap());
    /// socket.bind("127.0.0.1:0".parse().unwrap())?;
    /// assert_ne!(socket.local_addr()?.port(), 0);
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self
            .opts_checked()?
            .bound
            .unwrap_or_else(|| self.unspecified()))
    }

    fn unspecified(&self) -> SocketAddr {
        let ip: IpAddr = if self.v6 {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        SocketAddr::new(ip, 0)
    }

    /// The pending error of the socket (`SO_ERROR`): always `None`, as a socket that has not
    /// connected has none; a connection's errors are reported by the stream.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert!(socket.take_error()?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.stack()?;
        Ok(None)
    }

    /// Opens a connection to `addr` with the options set, consuming the socket.
    ///
    /// `ConnectionRefused` when a RST answers the SYN, `TimedOut` after the SYN retries,
    /// `AddrNotAvailable` when no local port is left for this peer, the kernel's
    /// `EAFNOSUPPORT` for an address of the other family, and the route's error when the
    /// socket is bound to an interface that cannot reach `addr`.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_nodelay(true)?;
    /// let stream = socket.connect("127.0.0.1:8080".parse().unwrap()).await?;
    /// assert!(stream.nodelay()?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe in the sense that matters: dropping the future abandons the
    /// connection being opened (it is reset and its port released).
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stack = self.stack()?.clone();
        // The route is every shard's: the first shard answers for all.
        let shared = stack.shared().clone();
        self.check_family(addr)?;
        let (fixed, auto_ip, cfg, linger, tos) = {
            let mut o = self.opts();
            let joined = std::mem::take(&mut o.joined);
            let device = o.device.clone();
            let source = |remote: IpAddr| shared.source_ip(device.as_deref(), remote);
            let (fixed, auto_ip) = match o.bound.take() {
                Some(b) if b.ip().is_unspecified() => {
                    let ip = source(addr.ip())?;
                    // An address joined from sharing listeners stays theirs to release.
                    (
                        Some((SocketAddr::new(ip, b.port()), (!joined).then_some(b))),
                        ip,
                    )
                }
                Some(b) => (Some((b, (!joined).then_some(b))), b.ip()),
                None => (None, source(addr.ip())?),
            };
            let tos = if self.v6 { o.tclass } else { o.tos };
            (fixed, auto_ip, o.config.clone(), o.linger, tos)
        };
        let zero_linger = linger == Some(Duration::ZERO);
        let k = stack.connect_shard(fixed.map(|f| f.0), addr);
        if let Some((_, Some(claim))) = fixed {
            // Claimed on every shard by `bind`: the connection's shard keeps its claim.
            stack.release_bound(claim, Some(k));
        }
        let shared = stack.shard(k).clone();
        let (id, cell, local) = shared.open(fixed, auto_ip, addr, &cfg, zero_linger, tos)?;
        let handle = ConnHandle::new(shared, (id, cell), local, addr, linger);
        // If this future is dropped, or the handshake fails, dropping the handle closes the
        // connection and releases the port.
        handle.until_ready(|cx| handle.poll_connected(cx)).await?;
        Ok(TcpStream::from_handle(handle))
    }

    /// Starts listening with an accept queue of `backlog` connections (at least 1),
    /// consuming the socket. Unbound, it listens on the unspecified address and a port the
    /// stack chooses. The connections it accepts inherit its TTL and traffic class.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_reuseaddr(true)?;
    /// socket.bind("127.0.0.1:8080".parse().unwrap())?;
    /// let listener = socket.listen(1024)?;
    /// # let _ = listener; Ok(()) }
    /// ```
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        let stack = self.stack()?.clone();
        let mut o = self.opts();
        let tos = if self.v6 { o.tclass } else { o.tos };
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
                stack.bind_local(any, false, false)?.0
            }
        };
        let parts = stack.listen(addr, &o.config, backlog as usize, o.reuseport, tos)?;
        drop(o);
        Ok(TcpListener::new(parts))
    }

    /// Turns keepalive probing (`SO_KEEPALIVE`) on, with Linux's defaults (2 h idle, 75 s
    /// interval, 9 probes), or off, for the connection made from this socket.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_keepalive(true)?;
    /// assert!(socket.keepalive()?);
    /// # Ok(()) }
    /// ```
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.opts_checked()?.config.keepalive = keepalive.then(Keepalive::default);
        Ok(())
    }

    /// Keepalive probing with explicit timing, or off. Not in `tokio::net`.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use rawtcp::proto::Keepalive;
    /// use std::time::Duration;
    ///
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_keepalive_params(Some(Keepalive {
    ///     idle: Duration::from_secs(30),
    ///     ..Keepalive::default()
    /// }))?;
    /// # Ok(()) }
    /// ```
    pub fn set_keepalive_params(&self, keepalive: Option<Keepalive>) -> io::Result<()> {
        self.opts_checked()?.config.keepalive = keepalive;
        Ok(())
    }

    /// Whether keepalive is on.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert!(!socket.keepalive()?);
    /// # Ok(()) }
    /// ```
    pub fn keepalive(&self) -> io::Result<bool> {
        Ok(self.opts_checked()?.config.keepalive.is_some())
    }

    /// `SO_REUSEADDR`: [`bind`](Self::bind) may take a port held only by connections in
    /// TIME-WAIT (or by the accepted connections of a listener that is gone).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_reuseaddr(true)?;
    /// socket.bind("127.0.0.1:8080".parse().unwrap())?;
    /// # Ok(()) }
    /// ```
    pub fn set_reuseaddr(&self, reuseaddr: bool) -> io::Result<()> {
        self.opts_checked()?.reuseaddr = reuseaddr;
        Ok(())
    }

    /// Whether `SO_REUSEADDR` is set.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert!(!socket.reuseaddr()?);
    /// # Ok(()) }
    /// ```
    pub fn reuseaddr(&self) -> io::Result<bool> {
        Ok(self.opts_checked()?.reuseaddr)
    }

    /// `SO_REUSEPORT`: several listeners of this stack may share one address; each peer is
    /// sent to one of them by a hash of its address.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let mut listeners = Vec::new();
    /// for _ in 0..4 {
    ///     let socket = rawtcp::TcpSocket::new_v4()?;
    ///     socket.set_reuseport(true)?;
    ///     socket.bind("127.0.0.1:8080".parse().unwrap())?;
    ///     listeners.push(socket.listen(1024)?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn set_reuseport(&self, reuseport: bool) -> io::Result<()> {
        self.opts_checked()?.reuseport = reuseport;
        Ok(())
    }

    /// Whether `SO_REUSEPORT` is set.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert!(!socket.reuseport()?);
    /// # Ok(()) }
    /// ```
    pub fn reuseport(&self) -> io::Result<bool> {
        Ok(self.opts_checked()?.reuseport)
    }

    /// The send buffer size (`SO_SNDBUF`): how much written data may wait for
    /// acknowledgment before writes stop being ready. Kept as given (the kernel doubles it),
    /// and fixed: as in Linux, a socket whose buffer was set does not grow it by itself
    /// (see [`Config::send_buffer_max`](crate::proto::Config::send_buffer_max)).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_send_buffer_size(1 << 20)?;
    /// assert_eq!(socket.send_buffer_size()?, 1 << 20);
    /// # Ok(()) }
    /// ```
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        let config = &mut self.opts_checked()?.config;
        config.send_buffer = (size as usize).max(1);
        config.send_buffer_max = config.send_buffer;
        Ok(())
    }

    /// The send buffer size.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// println!("{}", socket.send_buffer_size()?);
    /// # Ok(()) }
    /// ```
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        Ok(self
            .opts_checked()?
            .config
            .send_buffer
            .min(u32::MAX as usize) as u32)
    }

    /// The receive buffer size (`SO_RCVBUF`): the largest window advertised (and the window
    /// scale chosen from it). Kept as given (the kernel doubles it), and fixed: as in
    /// Linux, a socket whose buffer was set does not grow it by itself (see
    /// [`Config::recv_buffer_max`](crate::proto::Config::recv_buffer_max)).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_recv_buffer_size(4 << 20)?;
    /// assert_eq!(socket.recv_buffer_size()?, 4 << 20);
    /// # Ok(()) }
    /// ```
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        let config = &mut self.opts_checked()?.config;
        config.recv_buffer = (size as usize).max(1);
        config.recv_buffer_max = config.recv_buffer;
        Ok(())
    }

    /// The receive buffer size.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// println!("{}", socket.recv_buffer_size()?);
    /// # Ok(()) }
    /// ```
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        Ok(self
            .opts_checked()?
            .config
            .recv_buffer
            .min(u32::MAX as usize) as u32)
    }

    /// Sets `SO_LINGER` for the connection made from this socket, in whole seconds as the
    /// kernel keeps it (less than a second is zero). Zero is
    /// [`set_zero_linger`](Self::set_zero_linger); any other value is reported back by
    /// [`linger`](Self::linger) and keeps the graceful close, which in rawtcp never blocks
    /// the dropping thread.
    ///
    /// ```no_run
    /// # #![allow(deprecated)]
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::time::Duration;
    ///
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_linger(Some(Duration::from_millis(1500)))?;
    /// assert_eq!(socket.linger()?, Some(Duration::from_secs(1)));
    /// # Ok(()) }
    /// ```
    #[deprecated = "`SO_LINGER` blocks the thread on drop with kernel sockets; use `set_zero_linger` for an abortive close"]
    pub fn set_linger(&self, dur: Option<Duration>) -> io::Result<()> {
        self.opts_checked()?.linger = dur.map(|d| Duration::from_secs(d.as_secs()));
        Ok(())
    }

    /// Makes the connection made from this socket close abortively when dropped: RST
    /// instead of FIN, unsent data discarded, no TIME-WAIT.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::time::Duration;
    ///
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_zero_linger()?;
    /// assert_eq!(socket.linger()?, Some(Duration::ZERO));
    /// # Ok(()) }
    /// ```
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.opts_checked()?.linger = Some(Duration::ZERO);
        Ok(())
    }

    /// The linger setting: `None` for the graceful close, `Some(Duration::ZERO)` for RST.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert_eq!(socket.linger()?, None);
    /// # Ok(()) }
    /// ```
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts_checked()?.linger)
    }

    /// Turns Nagle's algorithm off (`true`) or on (`TCP_NODELAY`).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_nodelay(true)?;
    /// assert!(socket.nodelay()?);
    /// # Ok(()) }
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.opts_checked()?.config.nodelay = nodelay;
        Ok(())
    }

    /// Whether Nagle's algorithm is off.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert!(!socket.nodelay()?);
    /// # Ok(()) }
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.opts_checked()?.config.nodelay)
    }

    /// The IPv6 traffic class of the packets a connection from this socket sends
    /// (`IPV6_TCLASS`). On an IPv4 socket the kernel's `EOPNOTSUPP`, as on Linux.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v6()?;
    /// assert_eq!(socket.tclass_v6()?, 0);
    /// # Ok(()) }
    /// ```
    pub fn tclass_v6(&self) -> io::Result<u32> {
        let o = self.opts_checked()?;
        if !self.v6 {
            return Err(os_error(Errno::EOPNOTSUPP));
        }
        Ok(u32::from(o.tclass))
    }

    /// Sets the IPv6 traffic class written into every packet the connection sends (the
    /// SYN-ACKs and connections of a listener made from this socket too).
    ///
    /// As Linux does for TCP, the two ECN bits are cleared (they belong to congestion
    /// signalling), `u32::MAX` (the kernel's -1) restores the default 0, other values
    /// above 255 are `InvalidInput`, and an IPv4 socket answers the kernel's `ENOPROTOOPT`.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v6()?;
    /// socket.set_tclass_v6(0xb8)?; // DSCP EF
    /// assert_eq!(socket.tclass_v6()?, 0xb8);
    /// # Ok(()) }
    /// ```
    pub fn set_tclass_v6(&self, tclass: u32) -> io::Result<()> {
        let mut o = self.opts_checked()?;
        if !self.v6 {
            return Err(os_error(Errno::ENOPROTOOPT));
        }
        o.tclass = match tclass {
            u32::MAX => 0,
            0..=0xff => tclass as u8 & !ECN_MASK,
            _ => return Err(os_error(Errno::EINVAL)),
        };
        Ok(())
    }

    /// The IPv4 type of service of the packets a connection from this socket sends
    /// (`IP_TOS`).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert_eq!(socket.tos_v4()?, 0);
    /// # Ok(()) }
    /// ```
    pub fn tos_v4(&self) -> io::Result<u32> {
        Ok(u32::from(self.opts_checked()?.tos))
    }

    /// Deprecated name of [`tos_v4`](Self::tos_v4).
    #[deprecated(
        note = "`tos` related methods have been renamed `tos_v4` since they are IPv4-specific."
    )]
    #[doc(hidden)]
    pub fn tos(&self) -> io::Result<u32> {
        self.tos_v4()
    }

    /// Sets the IPv4 type of service written into every packet the connection sends (the
    /// SYN-ACKs and connections of a listener made from this socket too).
    ///
    /// As Linux keeps it for TCP, the value is truncated to its low byte and the two ECN
    /// bits are cleared. On an IPv6 socket it is kept and reported but changes nothing:
    /// rawtcp's IPv6 sockets send IPv6 packets only (the kernel would use it for
    /// IPv4-mapped peers).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_tos_v4(0x10)?; // low delay
    /// assert_eq!(socket.tos_v4()?, 0x10);
    /// # Ok(()) }
    /// ```
    pub fn set_tos_v4(&self, tos: u32) -> io::Result<()> {
        self.opts_checked()?.tos = tos as u8 & !ECN_MASK;
        Ok(())
    }

    /// Deprecated name of [`set_tos_v4`](Self::set_tos_v4).
    #[deprecated(
        note = "`tos` related methods have been renamed `tos_v4` since they are IPv4-specific."
    )]
    #[doc(hidden)]
    pub fn set_tos(&self, tos: u32) -> io::Result<()> {
        self.set_tos_v4(tos)
    }

    /// The interface set with [`bind_device`](Self::bind_device) (`SO_BINDTODEVICE`).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// assert_eq!(socket.device()?, None);
    /// # Ok(()) }
    /// ```
    pub fn device(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.opts_checked()?.device.clone())
    }

    /// Binds the connection made from this socket to a network interface of the host
    /// (`SO_BINDTODEVICE`); `None` or an empty name removes the binding. An interface that
    /// does not exist is the kernel's `ENODEV`.
    ///
    /// What it does depends on the datapath:
    /// - **udp** and **raw** (the host's addresses): [`connect`](Self::connect) takes the
    ///   source address the kernel chooses for a socket bound to that interface, and fails
    ///   with the kernel's error (`ENETUNREACH`, ...) when the interface has no route to the
    ///   peer. The packets still leave as the datapath sends them: the UDP datapath's shared
    ///   socket and the raw socket are not bound to the interface.
    /// - **tun**: the stack sits behind its own device; binding to it changes nothing, any
    ///   other interface makes `connect` fail with `AddrNotAvailable`.
    /// - **sim**: no interfaces; `connect` fails with `Unsupported`.
    ///
    /// A listener made from the socket is not narrowed to the interface: it accepts
    /// connections arriving through any.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.bind_device(Some(b"lo"))?;
    /// let stream = socket.connect("127.0.0.1:8080".parse().unwrap()).await?;
    /// # let _ = stream; Ok(()) }
    /// ```
    pub fn bind_device(&self, interface: Option<&[u8]>) -> io::Result<()> {
        let mut o = self.opts_checked()?;
        match interface.filter(|name| !name.is_empty()) {
            None => o.device = None,
            Some(name) => {
                let exists = std::ffi::CString::new(name)
                    .ok()
                    .and_then(|c| nix::net::if_::if_nametoindex(c.as_c_str()).ok())
                    .is_some();
                if !exists {
                    return Err(os_error(Errno::ENODEV));
                }
                o.device = Some(name.to_vec());
            }
        }
        Ok(())
    }

    /// The congestion-control algorithm connections from this socket use (Linux's
    /// `TCP_CONGESTION`): `"newreno"`, `"cubic"` (the default) or `"bbr"`, parsed with
    /// [`str::parse`], or your own through [`Algorithm::Custom`]. Not in `tokio::net`.
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
        self.opts_checked()?.config.congestion = algorithm;
        Ok(())
    }

    /// The congestion-control algorithm connections from this socket will use. Not in
    /// `tokio::net`.
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// println!("{}", socket.congestion()?.name());
    /// # Ok(()) }
    /// ```
    pub fn congestion(&self) -> io::Result<Algorithm> {
        Ok(self.opts_checked()?.config.congestion.clone())
    }

    /// The engine settings connections from this socket start with (buffer sizes, timers,
    /// congestion control...), for settings tokio has no method for. Not in `tokio::net`.
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// use std::time::Duration;
    ///
    /// let socket = rawtcp::TcpSocket::new_v4()?;
    /// socket.set_tcp_config(rawtcp::proto::Config {
    ///     delayed_ack: Duration::ZERO,
    ///     ..rawtcp::proto::Config::default()
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn set_tcp_config(&self, config: Config) -> io::Result<()> {
        self.opts_checked()?.config = config;
        Ok(())
    }
}

/// The ECN field of the IPv4 TOS byte and the IPv6 traffic class (RFC 3168 §5).
const ECN_MASK: u8 = 0b11;

impl Drop for TcpSocket {
    fn drop(&mut self) {
        let Some(stack) = &self.stack else {
            return;
        };
        if let Some(b) = self.opts().bound.take() {
            stack.release_bound(b, None);
        }
    }
}
