//! Read and write halves of a [`TcpStream`]: borrowed ([`ReadHalf`], [`WriteHalf`]) and
//! owned ([`OwnedReadHalf`], [`OwnedWriteHalf`]), as `tokio::net::tcp` has them.

use super::TcpStream;
use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};

/// The read half of [`TcpStream::split`]: reads and peeks while the [`WriteHalf`] writes.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let mut stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
/// let (mut rd, mut wr) = stream.split();
/// let mut buf = [0u8; 5];
/// let (w, r) = tokio::join!(wr.write_all(b"hello"), rd.read_exact(&mut buf));
/// w?;
/// r?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ReadHalf<'a>(&'a TcpStream);

/// The write half of [`TcpStream::split`]: writes while the [`ReadHalf`] reads.
/// `poll_shutdown` sends FIN; reading goes on.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use tokio::io::AsyncWriteExt;
///
/// let mut stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
/// let (rd, mut wr) = stream.split();
/// wr.write_all(b"bye").await?;
/// wr.shutdown().await?; // FIN
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WriteHalf<'a>(&'a TcpStream);

pub(crate) fn split(stream: &mut TcpStream) -> (ReadHalf<'_>, WriteHalf<'_>) {
    (ReadHalf(stream), WriteHalf(stream))
}

/// The read half of [`TcpStream::into_split`], which can move to a task of its own.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use tokio::io::AsyncReadExt;
///
/// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
/// let (mut rd, wr) = stream.into_split();
/// let reader = tokio::spawn(async move {
///     let mut all = Vec::new();
///     rd.read_to_end(&mut all).await.map(|_| all)
/// });
/// # let _ = reader; Ok(()) }
/// ```
#[derive(Debug)]
pub struct OwnedReadHalf {
    inner: Arc<TcpStream>,
}

/// The write half of [`TcpStream::into_split`], which can move to a task of its own.
///
/// Dropping it sends FIN (the peer reads end of stream), as
/// [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown) would, unless
/// [`forget`](Self::forget) was called.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use tokio::io::AsyncWriteExt;
///
/// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
/// let (rd, mut wr) = stream.into_split();
/// tokio::spawn(async move {
///     let _ = wr.write_all(b"hello").await;
///     // dropped here: FIN
/// });
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OwnedWriteHalf {
    inner: Arc<TcpStream>,
    shutdown_on_drop: bool,
}

pub(crate) fn split_owned(stream: TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) {
    let inner = Arc::new(stream);
    (
        OwnedReadHalf {
            inner: inner.clone(),
        },
        OwnedWriteHalf {
            inner,
            shutdown_on_drop: true,
        },
    )
}

fn reunite(read: OwnedReadHalf, mut write: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
    if !Arc::ptr_eq(&read.inner, &write.inner) {
        return Err(ReuniteError(read, write));
    }
    write.shutdown_on_drop = false;
    drop(write);
    Ok(Arc::try_unwrap(read.inner)
        .unwrap_or_else(|_| unreachable!("the two halves held the only references")))
}

/// [`OwnedReadHalf::reunite`] or [`OwnedWriteHalf::reunite`] was given halves of two
/// different streams; both are handed back.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let a = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
/// let b = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
/// let (ard, _awr) = a.into_split();
/// let (_brd, bwr) = b.into_split();
/// let rawtcp::tcp::ReuniteError(ard, bwr) = ard.reunite(bwr).unwrap_err();
/// # let _ = (ard, bwr); Ok(()) }
/// ```
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same socket")
    }
}

impl Error for ReuniteError {}

/// Read-side methods shared by both read halves, delegating to the stream.
macro_rules! read_methods {
    ($stream:ident, $setup:literal) => {
        /// Receives into `buf` without consuming, as [`TcpStream::poll_peek`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\nuse std::future::poll_fn;\nuse tokio::io::ReadBuf;\n", $setup, "\nlet mut storage = [0u8; 16];\nlet mut buf = ReadBuf::new(&mut storage);\npoll_fn(|cx| rd.poll_peek(cx, &mut buf)).await?;\n# Ok(()) }\n```")]
        pub fn poll_peek(
            &mut self,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<usize>> {
            self.$stream().poll_peek(cx, buf)
        }

        /// Receives into `buf` without consuming, waiting until something is there, as
        /// [`TcpStream::peek`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nlet mut first = [0u8; 1];\nrd.peek(&mut first).await?;\n# Ok(()) }\n```")]
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: if the future is dropped before it completes, nothing was peeked
        /// and `buf` is untouched.
        pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.$stream().peek(buf).await
        }

        /// Waits until any of `interest` is ready, as [`TcpStream::ready`]. Asking for
        /// writability here is allowed and answers for the whole stream.
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\nuse tokio::io::Interest;\n", $setup, "\nlet ready = rd.ready(Interest::READABLE).await?;\nassert!(ready.is_readable());\n# Ok(()) }\n```")]
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: dropping the future loses nothing.
        pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
            self.$stream().ready(interest).await
        }

        /// Waits until a read would not block, as [`TcpStream::readable`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nrd.readable().await?;\nlet mut buf = [0u8; 64];\nlet n = rd.try_read(&mut buf)?;\n# let _ = n; Ok(()) }\n```")]
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: dropping the future loses nothing.
        pub async fn readable(&self) -> io::Result<()> {
            self.$stream().readable().await
        }

        /// Reads without waiting, as [`TcpStream::try_read`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nmatch rd.try_read(&mut [0u8; 64]) {\n    Ok(n) => println!(\"{n} bytes\"),\n    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => println!(\"nothing yet\"),\n    Err(e) => return Err(e),\n}\n# Ok(()) }\n```")]
        pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
            self.$stream().try_read(buf)
        }

        /// Reads into several buffers without waiting, as [`TcpStream::try_read_vectored`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\nuse std::io::IoSliceMut;\n", $setup, "\nlet (mut a, mut b) = ([0u8; 4], [0u8; 64]);\nlet n = rd.try_read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)]);\n# let _ = n; Ok(()) }\n```")]
        pub fn try_read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
            self.$stream().try_read_vectored(bufs)
        }

        /// Reads into the spare capacity of `buf` without waiting, as
        /// [`TcpStream::try_read_buf`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nlet mut buf = Vec::with_capacity(1024);\nlet n = rd.try_read_buf(&mut buf);\n# let _ = n; Ok(()) }\n```")]
        pub fn try_read_buf<B: bytes::BufMut>(&self, buf: &mut B) -> io::Result<usize> {
            self.$stream().try_read_buf(buf)
        }

        /// The peer's address, as [`TcpStream::peer_addr`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nprintln!(\"{}\", rd.peer_addr()?);\n# Ok(()) }\n```")]
        pub fn peer_addr(&self) -> io::Result<SocketAddr> {
            self.$stream().peer_addr()
        }

        /// Our address, as [`TcpStream::local_addr`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nprintln!(\"{}\", rd.local_addr()?);\n# Ok(()) }\n```")]
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.$stream().local_addr()
        }
    };
}

/// Write-side methods shared by both write halves, delegating to the stream.
macro_rules! write_methods {
    ($stream:ident, $setup:literal) => {
        /// Waits until any of `interest` is ready, as [`TcpStream::ready`]. Asking for
        /// readability here is allowed and answers for the whole stream.
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\nuse tokio::io::Interest;\n", $setup, "\nassert!(wr.ready(Interest::WRITABLE).await?.is_writable());\n# Ok(()) }\n```")]
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: dropping the future loses nothing.
        pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
            self.$stream().ready(interest).await
        }

        /// Waits until a write would not block, as [`TcpStream::writable`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nwr.writable().await?;\nlet n = wr.try_write(b\"hello\")?;\n# let _ = n; Ok(()) }\n```")]
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: dropping the future loses nothing.
        pub async fn writable(&self) -> io::Result<()> {
            self.$stream().writable().await
        }

        /// Writes without waiting, as [`TcpStream::try_write`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nlet n = wr.try_write(b\"hello\");\n# let _ = n; Ok(()) }\n```")]
        pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            self.$stream().try_write(buf)
        }

        /// Writes from several buffers without waiting, as
        /// [`TcpStream::try_write_vectored`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\nuse std::io::IoSlice;\n", $setup, "\nlet n = wr.try_write_vectored(&[IoSlice::new(b\"a\"), IoSlice::new(b\"b\")]);\n# let _ = n; Ok(()) }\n```")]
        pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            self.$stream().try_write_vectored(bufs)
        }

        /// The peer's address, as [`TcpStream::peer_addr`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nprintln!(\"{}\", wr.peer_addr()?);\n# Ok(()) }\n```")]
        pub fn peer_addr(&self) -> io::Result<SocketAddr> {
            self.$stream().peer_addr()
        }

        /// Our address, as [`TcpStream::local_addr`].
        ///
        #[doc = concat!("```no_run\n# #![allow(unused_mut)]\n# async fn demo() -> std::io::Result<()> {\n", $setup, "\nprintln!(\"{}\", wr.local_addr()?);\n# Ok(()) }\n```")]
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.$stream().local_addr()
        }
    };
}

impl ReadHalf<'_> {
    fn stream(&self) -> &TcpStream {
        self.0
    }

    read_methods!(stream, "let mut stream = rawtcp::TcpStream::connect(\"127.0.0.1:8080\").await?;\nlet (mut rd, mut wr) = stream.split();");
}

impl WriteHalf<'_> {
    fn stream(&self) -> &TcpStream {
        self.0
    }

    write_methods!(stream, "let mut stream = rawtcp::TcpStream::connect(\"127.0.0.1:8080\").await?;\nlet (mut rd, mut wr) = stream.split();");
}

impl OwnedReadHalf {
    fn stream(&self) -> &TcpStream {
        &self.inner
    }

    /// Puts the halves back into the [`TcpStream`] they came from; [`ReuniteError`] (with
    /// both halves) when they came from different streams.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let (rd, wr) = stream.into_split();
    /// let stream = rd.reunite(wr).expect("same stream");
    /// # let _ = stream; Ok(()) }
    /// ```
    pub fn reunite(self, other: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        reunite(self, other)
    }

    read_methods!(stream, "let stream = rawtcp::TcpStream::connect(\"127.0.0.1:8080\").await?;\nlet (mut rd, mut wr) = stream.into_split();");
}

impl OwnedWriteHalf {
    fn stream(&self) -> &TcpStream {
        &self.inner
    }

    /// Puts the halves back into the [`TcpStream`] they came from; [`ReuniteError`] (with
    /// both halves) when they came from different streams.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let (rd, wr) = stream.into_split();
    /// let stream = wr.reunite(rd).expect("same stream");
    /// # let _ = stream; Ok(()) }
    /// ```
    pub fn reunite(self, other: OwnedReadHalf) -> Result<TcpStream, ReuniteError> {
        reunite(other, self)
    }

    /// Drops this half without sending FIN: the connection stays open for writing until
    /// the read half is dropped too (which then closes it as dropping a stream does).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let (rd, wr) = stream.into_split();
    /// wr.forget(); // no FIN yet
    /// drop(rd); // now the connection closes
    /// # Ok(()) }
    /// ```
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
        drop(self);
    }

    write_methods!(stream, "let stream = rawtcp::TcpStream::connect(\"127.0.0.1:8080\").await?;\nlet (mut rd, mut wr) = stream.into_split();");
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.inner.h.shutdown();
        }
    }
}

impl AsRef<TcpStream> for ReadHalf<'_> {
    fn as_ref(&self) -> &TcpStream {
        self.0
    }
}

impl AsRef<TcpStream> for WriteHalf<'_> {
    fn as_ref(&self) -> &TcpStream {
        self.0
    }
}

impl AsRef<TcpStream> for OwnedReadHalf {
    fn as_ref(&self) -> &TcpStream {
        &self.inner
    }
}

impl AsRef<TcpStream> for OwnedWriteHalf {
    fn as_ref(&self) -> &TcpStream {
        &self.inner
    }
}

macro_rules! impl_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.stream().h.poll_read(cx, buf)
            }
        }
    };
}

macro_rules! impl_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.stream().h.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.stream().h.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Sends FIN after the data written so far; reading goes on.
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.stream().h.shutdown())
            }
        }
    };
}

impl_read!(ReadHalf<'_>);
impl_write!(WriteHalf<'_>);
impl_read!(OwnedReadHalf);
impl_write!(OwnedWriteHalf);
