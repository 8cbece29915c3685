//! The public socket types, shaped like `tokio::net`'s: [`TcpListener`], [`TcpStream`] with
//! its halves, and [`TcpSocket`] for setting options before connecting or listening.
//!
//! The deprecations are tokio's, so that an application sees the same warnings. Checked
//! here: each deprecated call fails to compile under `deny(deprecated)`...
//!
//! ```compile_fail
//! #![deny(deprecated)]
//! fn f(s: &rawtcp::TcpStream) { let _ = s.set_linger(None); }
//! ```
//! ```compile_fail
//! #![deny(deprecated)]
//! fn f(s: &rawtcp::TcpSocket) { let _ = s.set_linger(None); }
//! ```
//! ```compile_fail
//! #![deny(deprecated)]
//! fn f(s: &rawtcp::TcpSocket) { let _ = s.tos(); }
//! ```
//! ```compile_fail
//! #![deny(deprecated)]
//! fn f(s: &rawtcp::TcpSocket) { let _ = s.set_tos(0); }
//! ```
//!
//! ...and the same code compiles when deprecations are allowed (so the failures above are
//! the deprecations and nothing else):
//!
//! ```
//! #![allow(deprecated)]
//! fn f(a: &rawtcp::TcpStream, b: &rawtcp::TcpSocket) {
//!     let _ = a.set_linger(None);
//!     let _ = b.set_linger(None);
//!     let _ = b.tos();
//!     let _ = b.set_tos(0);
//! }
//! ```

mod clock;
#[cfg(feature = "futures-io")]
mod compat;
mod handle;
mod listener;
mod on_stack;
mod socket;
mod split;
mod stream;

pub use listener::TcpListener;
pub use socket::TcpSocket;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use stream::TcpStream;

use std::io;

/// The error of the conversions between rawtcp's sockets and the kernel's: rawtcp's
/// connections live in user space, so there is no descriptor to take over or to hand out.
pub(crate) fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "rawtcp: {what} is unsupported: rawtcp's TCP runs in user space, not in the \
             kernel, so there is no kernel socket to convert from or to"
        ),
    )
}

/// An error with the kernel's `errno`, for conditions where rawtcp answers as the kernel
/// does (so that `raw_os_error` and `kind` match `tokio::net`'s).
pub(crate) fn os_error(errno: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}
