//! The public socket types, shaped like `tokio::net`'s: [`TcpListener`], [`TcpStream`] with
//! its halves, and [`TcpSocket`] for setting options before connecting or listening.

mod clock;
#[cfg(feature = "futures-io")]
mod compat;
mod handle;
mod listener;
mod socket;
mod split;
mod stream;

pub use listener::TcpListener;
pub use socket::TcpSocket;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use stream::TcpStream;
