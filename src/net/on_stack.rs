//! Opening sockets on a [`Stack`]: the methods that make the public types, kept beside them
//! so that the runtime below never names them.

use super::{TcpListener, TcpSocket, TcpStream};
use crate::Stack;
use std::io;
use std::net::SocketAddr;
use tokio::net::ToSocketAddrs;

impl Stack {
    /// Listens on `addr` (every form tokio's `ToSocketAddrs` takes; each resolved address is
    /// tried in turn) with the default backlog of 1024.
    pub async fn bind(&self, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await? {
            let socket = match a {
                SocketAddr::V4(_) => self.socket_v4()?,
                SocketAddr::V6(_) => self.socket_v6()?,
            };
            // Like tokio's `TcpListener::bind`, which sets SO_REUSEADDR.
            socket.set_reuseaddr(true)?;
            match socket.bind(a).and_then(|()| socket.listen(1024)) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(no_addresses))
    }

    /// Opens a connection to `addr`, trying each resolved address in turn.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await? {
            let socket = match a {
                SocketAddr::V4(_) => self.socket_v4()?,
                SocketAddr::V6(_) => self.socket_v6()?,
            };
            match socket.connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(no_addresses))
    }

    /// A new IPv4 socket on this stack, to configure before `connect` or `listen`.
    pub fn socket_v4(&self) -> io::Result<TcpSocket> {
        Ok(TcpSocket::on_stack(self.clone(), false))
    }

    /// A new IPv6 socket on this stack.
    pub fn socket_v6(&self) -> io::Result<TcpSocket> {
        Ok(TcpSocket::on_stack(self.clone(), true))
    }
}

fn no_addresses() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "could not resolve to any address",
    )
}
