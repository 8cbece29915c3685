//! rawtcp: TCP in user space for tokio.
//!
//! Swap `use tokio::net::{TcpListener, TcpStream}` for `use rawtcp::{TcpListener, TcpStream}`
//! (or `use tokio::net;` for `use rawtcp as net;`) and keep working: every segment — handshake, sequence and acknowledgment numbers, windows,
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
//!   reactor task, demultiplexing, timers, and the tokio-shaped API: every item of
//!   `tokio::net`'s TCP API with the same signature ([`tcp`], [`ToSocketAddrs`] and
//!   [`lookup_host`] included). What needs a kernel socket (`from_std`, `into_std`,
//!   `TryFrom<std::net::...>`, `TcpSocket::from_std_stream`) fails with
//!   `io::ErrorKind::Unsupported`, and `AsRawFd`/`AsFd` are not implemented: there is no
//!   descriptor.
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

/// Resolves a host name and port to socket addresses: tokio's own function, re-exported so
/// that `use rawtcp as net;` leaves `net::lookup_host` working. Names are resolved by the
/// system's resolver on a blocking thread, exactly as with `tokio::net`; rawtcp has no
/// resolver of its own.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// for addr in rawtcp::lookup_host("localhost:8080").await? {
///     println!("{addr}");
/// }
/// # Ok(()) }
/// ```
pub use tokio::net::lookup_host;

pub use proto::TcpInfo;
pub use stack::{
    ConnectionEntry, Connections, Direction, Holder, IsnFn, Limits, ListenerEntry, ReactorWakes,
    Stack, StackBuilder, StackStats, SynCookieMode, Tap, TapEvent, DEFAULT_BUSY_POLL,
};
/// Everything that names socket addresses for [`TcpListener::bind`], [`TcpStream::connect`]
/// and [`Stack::bind`]/[`Stack::connect`]: tokio's own trait, re-exported, so that code
/// generic over `A: net::ToSocketAddrs` compiles unchanged with `use rawtcp as net;` and
/// `use rawtcp::{TcpStream, ToSocketAddrs};`.
///
/// ```no_run
/// use rawtcp::{TcpStream, ToSocketAddrs};
///
/// async fn open(addr: impl ToSocketAddrs) -> std::io::Result<TcpStream> {
///     TcpStream::connect(addr).await
/// }
/// ```
pub use tokio::net::ToSocketAddrs;

/// The halves of a split stream and the reunite error, under the module path tokio uses
/// (`tokio::net::tcp`), so that `net::tcp::OwnedReadHalf` names the same type with
/// `use rawtcp as net;`.
pub mod tcp {
    pub use crate::net::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
}
