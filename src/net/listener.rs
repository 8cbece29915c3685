//! [`TcpListener`]: accepts connections, with the methods of `tokio::net::TcpListener`.

use super::handle::ConnHandle;
use super::{unsupported, TcpStream};
use crate::stack::table::ListenerKey;
use crate::stack::Shared;
use crate::Stack;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::ToSocketAddrs;

/// A listening socket, with the methods of `tokio::net::TcpListener`. Connections complete
/// their handshake in the stack's SYN queue (bounded by the backlog) and wait in the accept
/// queue until [`accept`](Self::accept) takes them.
///
/// Conversions from and to the kernel's listener ([`from_std`](Self::from_std),
/// [`into_std`](Self::into_std), `TryFrom<std::net::TcpListener>`) fail with
/// [`io::ErrorKind::Unsupported`]: rawtcp's listener is not a kernel socket. Unlike tokio's,
/// it is also a [`futures_core::Stream`] of incoming connections.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use rawtcp::TcpListener;
/// use tokio::io::AsyncWriteExt;
///
/// let listener = TcpListener::bind("127.0.0.1:8080").await?;
/// loop {
///     let (mut stream, peer) = listener.accept().await?;
///     tokio::spawn(async move {
///         let _ = stream.write_all(b"hello\n").await;
///         println!("served {peer}");
///     });
/// }
/// # }
/// ```
pub struct TcpListener {
    /// Its listener on each shard of the stack (one, unless the stack is sharded).
    parts: Box<[(Arc<Shared>, ListenerKey)]>,
    /// The shard whose accept queue is looked at first by the next `poll_accept`, so that
    /// no shard's connections wait behind another's.
    next: AtomicUsize,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.parts[0].1.addr)
            .finish()
    }
}

impl TcpListener {
    /// The listener made of `parts`, one per shard (at least one).
    pub(crate) fn new(parts: Vec<(Arc<Shared>, ListenerKey)>) -> TcpListener {
        assert!(
            !parts.is_empty(),
            "a listener listens on at least one shard"
        );
        TcpListener {
            parts: parts.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// Listens on `addr` on the default stack (every `ToSocketAddrs` form; each resolved
    /// address is tried in turn until one binds). The backlog is 1024 and `SO_REUSEADDR` is
    /// set, as tokio does: a port held only by connections in TIME-WAIT can be bound again.
    ///
    /// `AddrInUse` when another listener holds the address, `AddrNotAvailable` when it is
    /// not an address of this host.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = rawtcp::TcpListener::bind("127.0.0.1:0").await?;
    /// println!("listening on {}", listener.local_addr()?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the only wait is for name resolution; a dropped future binds nothing.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        Stack::default_stack()?.bind(addr).await
    }

    /// Waits for the next connection and returns it with the peer's address.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = rawtcp::TcpListener::bind("127.0.0.1:8080").await?;
    /// loop {
    ///     let (stream, peer) = listener.accept().await?;
    ///     println!("{peer} connected");
    ///     tokio::spawn(async move { drop(stream) });
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection is taken from the accept queue only by the poll that
    /// returns it, so dropping the future (in a `select!` branch that lost) loses none.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        // Every part is a shard of one stack: giving the wait up on one gives it up on all.
        super::handle::until_ready(&self.parts[0].0, |cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection: `Ready` with it when one is queued, otherwise
    /// `Pending` with the task registered. Unlike tokio, where only the most recent task is
    /// sure to be woken, every task waiting here is woken when a connection arrives.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::future::poll_fn;
    ///
    /// let listener = rawtcp::TcpListener::bind("127.0.0.1:8080").await?;
    /// let (stream, peer) = poll_fn(|cx| listener.poll_accept(cx)).await?;
    /// # let _ = (stream, peer); Ok(()) }
    /// ```
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let n = self.parts.len();
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        for k in 0..n {
            let (shared, key) = &self.parts[(start + k) % n];
            let queue = shared.accept_receives();
            let accepted = ConnHandle::wait_inline_as(shared, cx, queue, None, |cx| {
                shared.poll_accept(*key, |waiters| {
                    let held = super::clock::waker(shared, cx);
                    waiters.register(held.as_ref().unwrap_or(cx.waker()));
                })
            });
            let (id, cell, local, remote) = match accepted {
                Poll::Ready(r) => r?,
                Poll::Pending => continue,
            };
            let handle = ConnHandle::new(Arc::clone(shared), (id, cell), local, remote, None);
            return Poll::Ready(Ok((TcpStream::from_handle(handle), remote)));
        }
        Poll::Pending
    }

    /// Unsupported: a rawtcp listener is built in user space, so there is no kernel socket
    /// to adopt. Always fails with [`io::ErrorKind::Unsupported`]; the standard listener is
    /// dropped (closed). Use [`bind`](Self::bind) or [`TcpSocket::listen`](crate::TcpSocket::listen).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let err = rawtcp::TcpListener::from_std(std).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    /// # }
    /// ```
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        drop(listener);
        Err(unsupported("TcpListener::from_std"))
    }

    /// Unsupported: the listener lives in rawtcp's stack, not in the kernel, so there is no
    /// `std::net::TcpListener` to hand out. Always fails with [`io::ErrorKind::Unsupported`];
    /// the listener is consumed and stops listening, as if dropped.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = rawtcp::TcpListener::bind("127.0.0.1:0").await?;
    /// assert_eq!(listener.into_std().unwrap_err().kind(), std::io::ErrorKind::Unsupported);
    /// # Ok(()) }
    /// ```
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        drop(self);
        Err(unsupported("TcpListener::into_std"))
    }

    /// The address it listens on (with the port the stack chose when bound to port 0).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = rawtcp::TcpListener::bind("127.0.0.1:0").await?;
    /// assert_ne!(listener.local_addr()?.port(), 0);
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.parts[0].1.addr)
    }

    /// The IP TTL (hop limit) of the packets of connections it accepts; 64 by default.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = rawtcp::TcpListener::bind("127.0.0.1:0").await?;
    /// assert_eq!(listener.ttl()?, 64);
    /// # Ok(()) }
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        let (shared, key) = &self.parts[0];
        Ok(u32::from(shared.listener_ttl(*key)))
    }

    /// Sets the IP TTL (hop limit) of connections it accepts from now on (their SYN-ACK
    /// included); `InvalidInput` outside 1..=255, as the kernel answers.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = rawtcp::TcpListener::bind("127.0.0.1:0").await?;
    /// listener.set_ttl(100)?;
    /// assert_eq!(listener.ttl()?, 100);
    /// # Ok(()) }
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = u8::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "TTL must be 1..=255"))?;
        for (shared, key) in self.parts.iter() {
            shared.set_listener_ttl(*key, ttl);
        }
        Ok(())
    }
}

impl TryFrom<std::net::TcpListener> for TcpListener {
    type Error = io::Error;

    /// Unsupported, as [`TcpListener::from_std`]: always [`io::ErrorKind::Unsupported`].
    fn try_from(listener: std::net::TcpListener) -> Result<Self, Self::Error> {
        Self::from_std(listener)
    }
}

impl futures_core::Stream for TcpListener {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_accept(cx).map(|r| Some(r.map(|(s, _)| s)))
    }
}

impl Drop for TcpListener {
    /// Stops listening: connections not yet accepted are reset, and the address is released
    /// once no listener shares it and no accepted connection uses it.
    fn drop(&mut self) {
        for (shared, key) in self.parts.iter() {
            shared.close_listener(*key);
        }
    }
}
