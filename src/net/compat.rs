//! `futures-io` [`AsyncRead`](futures_io::AsyncRead) and [`AsyncWrite`](futures_io::AsyncWrite)
//! for the stream types, behind the `futures-io` cargo feature, for code written against the
//! `futures` traits rather than tokio's.

use super::handle::ConnHandle;
use super::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, TcpStream, WriteHalf};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::ReadBuf;

/// The connection behind a stream or one of its halves.
fn handle(s: &impl AsRef<TcpStream>) -> &ConnHandle {
    &s.as_ref().h
}

fn read(h: &ConnHandle, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
    let mut rb = ReadBuf::new(buf);
    h.poll_read(cx, &mut rb).map_ok(|()| rb.filled().len())
}

macro_rules! futures_read {
    ($t:ty) => {
        impl futures_io::AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                read(&handle(&*self), cx, buf)
            }
        }
    };
}

macro_rules! futures_write {
    ($t:ty) => {
        impl futures_io::AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                handle(&*self).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                handle(&*self).poll_write_vectored(cx, bufs)
            }

            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Sends FIN (the write half closes; reading goes on).
            fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(handle(&*self).shutdown())
            }
        }
    };
}

futures_read!(TcpStream);
futures_write!(TcpStream);
futures_read!(OwnedReadHalf);
futures_write!(OwnedWriteHalf);
futures_read!(ReadHalf<'_>);
futures_write!(WriteHalf<'_>);
