//! Errors the engine reports to the application.

use std::fmt;
use std::io;

/// Why a connection operation failed or why a connection ended.
///
/// Converts into [`std::io::Error`] with the [`io::ErrorKind`] tokio users match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A RST answered our SYN (RFC 9293 §3.10.7.3).
    ConnectionRefused,
    /// The peer reset an established connection.
    ConnectionReset,
    /// The connection was aborted locally (`abort`, `close` with unread data) or its stack
    /// shut down.
    ConnectionAborted,
    /// Retransmissions, SYN retries, keepalive probes or the user timeout ran out.
    TimedOut,
    /// The operation needs an established connection.
    NotConnected,
    /// Sending after this side shut down its write half, or after the connection closed.
    BrokenPipe,
    /// The operation is not valid in this state (e.g. connect on a listening connection).
    InvalidState,
    /// Nothing can be done right now: no data to read, or no room to write.
    WouldBlock,
}

impl Error {
    /// The matching [`io::ErrorKind`].
    pub fn kind(self) -> io::ErrorKind {
        match self {
            Error::ConnectionRefused => io::ErrorKind::ConnectionRefused,
            Error::ConnectionReset => io::ErrorKind::ConnectionReset,
            Error::ConnectionAborted => io::ErrorKind::ConnectionAborted,
            Error::TimedOut => io::ErrorKind::TimedOut,
            Error::NotConnected => io::ErrorKind::NotConnected,
            Error::BrokenPipe => io::ErrorKind::BrokenPipe,
            Error::InvalidState => io::ErrorKind::InvalidInput,
            Error::WouldBlock => io::ErrorKind::WouldBlock,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::ConnectionRefused => "connection refused",
            Error::ConnectionReset => "connection reset by peer",
            Error::ConnectionAborted => "connection aborted",
            Error::TimedOut => "connection timed out",
            Error::NotConnected => "not connected",
            Error::BrokenPipe => "broken pipe: write side is shut down",
            Error::InvalidState => "operation not valid in this connection state",
            Error::WouldBlock => "operation would block",
        })
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}
