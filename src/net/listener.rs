//! [`TcpListener`]: accepts connections, with the methods of `tokio::net::TcpListener`.

use super::handle::ConnHandle;
use super::TcpStream;
use crate::stack::table::{ListenerKey, Owner};
use crate::stack::Shared;
use crate::Stack;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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
        let mut inner = self.shared.lock();
        let stopped = inner.stopped;
        let Some(l) = inner.table.listeners.get_mut(&self.key) else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "rawtcp: the stack shut down",
            )));
        };
        if stopped {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let Some(id) = l.accept_queue.pop_front() else {
            let held = super::clock::waker(&self.shared, cx);
            l.waiters.register(held.as_ref().unwrap_or(cx.waker()));
            return Poll::Pending;
        };
        let Some(e) = inner.table.get_mut(id) else {
            // Reaped while queued (cannot normally happen): try again.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        e.owner = Owner::User;
        let (local, remote) = (e.conn.local_addr(), e.conn.remote_addr());
        drop(inner);
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
        let inner = self.shared.lock();
        Ok(inner
            .table
            .listeners
            .get(&self.key)
            .map_or(64, |l| u32::from(l.ttl)))
    }

    /// Sets the TTL of packets sent by connections it accepts from now on.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = u8::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "TTL must be 1..=255"))?;
        let mut inner = self.shared.lock();
        if let Some(l) = inner.table.listeners.get_mut(&self.key) {
            l.ttl = ttl;
        }
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
        let mut inner = self.shared.lock();
        let key = self.key;
        let Some((_, last)) = inner.table.remove_listener(key) else {
            return;
        };
        for id in inner.table.ids() {
            if let Some(e) = inner.table.get_mut(id) {
                if e.owner == Owner::Listener(key) {
                    e.owner = Owner::Detached;
                    e.conn.abort();
                    inner.mark_dirty(id);
                }
            }
        }
        if last && !inner.stopped {
            if inner.address_in_use(key.addr) {
                // Accepted connections still receive through this address (over UDP, its
                // socket): release it when the last of them is gone.
                inner.lingering.push(key.addr);
            } else {
                drop(inner);
                self.shared.datapath.unbind(key.addr);
            }
        }
    }
}
