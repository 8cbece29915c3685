//! [`TcpListener`]: accepts connections, with the methods of `tokio::net::TcpListener`.

use super::handle::ConnHandle;
use super::TcpStream;
use crate::stack::table::ListenerKey;
use crate::stack::Shared;
use crate::Stack;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::net::ToSocketAddrs;

/// A listening socket. Connections complete their handshake in the stack's SYN queue (bounded
/// by the backlog) and wait in the accept queue until [`accept`](Self::accept) takes them.
///
/// It is also a [`futures_core::Stream`] of incoming connections.
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
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: ListenerKey,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.key.addr)
            .finish()
    }
}

impl TcpListener {
    /// Listens on `addr` on the default stack (every `ToSocketAddrs` form; each resolved
    /// address is tried in turn). The backlog is 1024.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        Stack::default_stack()?.bind(addr).await
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection. Every task waiting in `accept` is woken when one
    /// arrives.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let (id, local, remote) =
            ready!(self.shared.poll_accept(self.key, |w| w.register(cx.waker())))?;
        let stream = TcpStream::from_handle(ConnHandle {
            shared: self.shared.clone(),
            id,
            local,
            remote,
        });
        Poll::Ready(Ok((stream, remote)))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.key.addr)
    }

    /// The TTL of packets sent by connections it accepts.
    pub fn ttl(&self) -> io::Result<u32> {
        Ok(u32::from(self.shared.listener_ttl(self.key)))
    }

    /// Sets the TTL of packets sent by connections it accepts from now on.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = u8::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "TTL must be 1..=255"))?;
        self.shared.set_listener_ttl(self.key, ttl);
        Ok(())
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
        self.shared.close_listener(self.key);
    }
}
