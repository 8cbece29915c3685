//! Read and write halves of a [`TcpStream`]: borrowed ([`ReadHalf`], [`WriteHalf`]) and
//! owned ([`OwnedReadHalf`], [`OwnedWriteHalf`]), as `tokio::net::tcp` has them.

use super::handle::ConnHandle;
use super::TcpStream;
use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The read half of a borrowed [`TcpStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a>(pub(crate) &'a ConnHandle);

/// The write half of a borrowed [`TcpStream::split`]; `poll_shutdown` sends FIN.
#[derive(Debug)]
pub struct WriteHalf<'a>(pub(crate) &'a ConnHandle);

pub(crate) fn split(stream: &mut TcpStream) -> (ReadHalf<'_>, WriteHalf<'_>) {
    (ReadHalf(&stream.h), WriteHalf(&stream.h))
}

/// The read half of [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf {
    pub(crate) h: Arc<ConnHandle>,
}

/// The write half of [`TcpStream::into_split`]. Dropping it sends FIN (the peer reads end of
/// stream) unless [`forget`](Self::forget) was called.
#[derive(Debug)]
pub struct OwnedWriteHalf {
    pub(crate) h: Arc<ConnHandle>,
    shutdown_on_drop: bool,
}

pub(crate) fn split_owned(stream: TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) {
    let h = stream.h;
    (
        OwnedReadHalf { h: h.clone() },
        OwnedWriteHalf {
            h,
            shutdown_on_drop: true,
        },
    )
}

/// [`OwnedReadHalf::reunite`] was given halves of two different streams.
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same socket")
    }
}

impl Error for ReuniteError {}

impl OwnedReadHalf {
    /// Puts the halves back into a [`TcpStream`], if they belong together.
    pub fn reunite(self, mut other: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        if !Arc::ptr_eq(&self.h, &other.h) {
            return Err(ReuniteError(self, other));
        }
        other.shutdown_on_drop = false;
        drop(other);
        match Arc::try_unwrap(self.h) {
            Ok(h) => Ok(TcpStream { h: Arc::new(h) }),
            Err(h) => Ok(TcpStream { h }),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.h.remote)
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.h.local)
    }

    /// Reads without waiting.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.h.try_read(buf)
    }

    /// Waits until a read would not block.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.h.poll_ready(cx, tokio::io::Interest::READABLE))
            .await
            .map(|_| ())
    }

    /// Reads without consuming.
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        std::future::poll_fn(|cx| self.h.poll_peek(cx, &mut rb)).await
    }
}

impl OwnedWriteHalf {
    /// Puts the halves back into a [`TcpStream`].
    pub fn reunite(self, other: OwnedReadHalf) -> Result<TcpStream, ReuniteError> {
        other.reunite(self)
    }

    /// Drops this half without sending FIN.
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.h.remote)
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.h.local)
    }

    /// Writes without waiting.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.h.try_write_vectored(&[io::IoSlice::new(buf)])
    }

    /// Waits until a write would not block.
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.h.poll_ready(cx, tokio::io::Interest::WRITABLE))
            .await
            .map(|_| ())
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.h.shutdown();
        }
    }
}

macro_rules! impl_read {
    ($t:ty, $h:tt) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.$h.poll_read(cx, buf)
            }
        }
    };
}

macro_rules! impl_write {
    ($t:ty, $h:tt) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.$h.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.$h.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.$h.shutdown())
            }
        }
    };
}

impl_read!(ReadHalf<'_>, 0);
impl_write!(WriteHalf<'_>, 0);
impl_read!(OwnedReadHalf, h);
impl_write!(OwnedWriteHalf, h);
