//! `axum::serve` over rawtcp: an implementation of axum 0.8's [`axum::serve::Listener`] for
//! [`TcpListener`], behind the `axum` cargo feature.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use axum::{routing::get, Router};
//! let app: Router = Router::new().route("/", get(|| async { "hello from rawtcp\n" }));
//! let listener = rawtcp::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use crate::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

impl axum::serve::Listener for TcpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    /// Waits for the next connection. axum's listeners never fail: an accept error is logged
    /// and, like axum's own listener does for `tokio::net`, retried after a pause.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match TcpListener::accept(self).await {
                Ok(conn) => return conn,
                Err(e) => {
                    tracing::error!(error = %e, "rawtcp: accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        TcpListener::local_addr(self)
    }
}
