//! rawtcp: TCP in user space for tokio.
//!
//! Swap `use tokio::net::{TcpListener, TcpStream}` for `use rawtcp::{TcpListener, TcpStream}`
//! and keep working: every segment — handshake, sequence and acknowledgment numbers, windows,
//! retransmissions, congestion control, teardown — is built by this crate and leaves the
//! process through a [`datapath`]: UDP encapsulation (the default, unprivileged), raw IP
//! sockets (real TCP on the wire), a TUN device, or an in-process simulated network for
//! deterministic tests.
//!
//! Layers, each unaware of the one above it:
//! - [`wire`]: IPv4/IPv6/TCP headers, options and checksums; bytes in, typed headers out.
//! - [`proto`]: one connection's state machine, sans I/O: segments in, segments out, time
//!   passed in.
//! - [`Stack`], [`TcpListener`], [`TcpStream`], [`TcpSocket`] and [`datapath`]: the runtime — a
//!   reactor task, demultiplexing, timers, and the tokio-shaped API.
//! - `inspect` (cargo feature `graph`, on by default): captures read from pcap files or
//!   recorded from a stack's tap, the textbook ladder for any conversation, time-sequence
//!   graphs as SVG and PNG.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use rawtcp::{TcpListener, TcpStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (mut s, _) = listener.accept().await.unwrap();
//!     let mut buf = [0u8; 5];
//!     s.read_exact(&mut buf).await.unwrap();
//!     s.write_all(&buf).await.unwrap();
//! });
//! let mut c = TcpStream::connect(addr).await?;
//! c.write_all(b"hello").await?;
//! let mut echo = [0u8; 5];
//! c.read_exact(&mut echo).await?;
//! assert_eq!(&echo, b"hello");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
mod axum;
pub mod datapath;
#[cfg(feature = "graph")]
pub mod inspect;
mod net;
pub mod proto;
mod stack;
pub mod wire;

pub use net::{
    OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, TcpListener, TcpSocket, TcpStream,
    WriteHalf,
};
pub use proto::TcpInfo;
pub use stack::{
    ConnectionEntry, Connections, Direction, Holder, IsnFn, ListenerEntry, Stack, StackBuilder,
    StackStats, Tap, TapEvent,
};

/// The socket types under the module path tokio uses (`tokio::net::tcp`).
pub mod tcp {
    pub use crate::net::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
}
