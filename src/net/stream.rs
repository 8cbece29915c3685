//! [`TcpStream`]: a connection, with the methods of `tokio::net::TcpStream`.

use super::handle::ConnHandle;
use super::split::{split, split_owned, OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
use super::unsupported;
use crate::proto::cc::Algorithm;
use crate::proto::TcpInfo;
use crate::Stack;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};
use tokio::net::ToSocketAddrs;

/// A TCP connection whose segments are built by rawtcp.
///
/// It has the methods of `tokio::net::TcpStream` with the same signatures: [`AsyncRead`] and
/// [`AsyncWrite`], `try_*` methods that return `WouldBlock` instead of waiting, readiness
/// ([`ready`](Self::ready), [`readable`](Self::readable), [`writable`](Self::writable)),
/// [`peek`](Self::peek), [`split`](Self::split) and [`into_split`](Self::into_split), and
/// the socket options. What has no meaning without a kernel socket
/// ([`from_std`](Self::from_std), [`into_std`](Self::into_std),
/// `TryFrom<std::net::TcpStream>`) fails with [`io::ErrorKind::Unsupported`].
///
/// Dropping it closes the connection gracefully: data already written is delivered, then
/// FIN (RST instead after [`set_zero_linger`](Self::set_zero_linger)).
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use rawtcp::TcpStream;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let mut stream = TcpStream::connect("127.0.0.1:8080").await?;
/// stream.write_all(b"hello").await?;
/// let mut reply = vec![0; 5];
/// stream.read_exact(&mut reply).await?;
/// println!("srtt {:?}", stream.info()?.srtt);
/// # Ok(()) }
/// ```
pub struct TcpStream {
    pub(crate) h: Arc<ConnHandle>,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.h.fmt(f)
    }
}

impl TcpStream {
    pub(crate) fn from_handle(h: ConnHandle) -> TcpStream {
        TcpStream { h: Arc::new(h) }
    }

    /// Connects to `addr` on the default stack, trying each resolved address in turn until
    /// one answers.
    ///
    /// `ConnectionRefused` when a RST answers the SYN, `TimedOut` after the SYN retries; the
    /// error of the last address tried when none connects.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("localhost:8080").await?;
    /// println!("connected from {}", stream.local_addr()?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe in the sense that matters: dropping the future abandons the
    /// connection being opened (it is reset and its port released), and a later call starts
    /// a new one.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        Stack::default_stack()?.connect(addr).await
    }

    /// Unsupported: a rawtcp stream is built in user space, so there is no kernel socket to
    /// adopt. Always fails with [`io::ErrorKind::Unsupported`]; the standard stream is
    /// dropped (closed). Open the connection with [`connect`](Self::connect) or accept it
    /// from a [`TcpListener`](crate::TcpListener) instead.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let std = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let err = rawtcp::TcpStream::from_std(std).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    /// # }
    /// ```
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        drop(stream);
        Err(unsupported("TcpStream::from_std"))
    }

    /// Unsupported: the connection lives in rawtcp's stack, not in the kernel, so there is
    /// no `std::net::TcpStream` to hand out. Always fails with
    /// [`io::ErrorKind::Unsupported`]; the stream is consumed and closes gracefully, as if
    /// dropped.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// assert_eq!(stream.into_std().unwrap_err().kind(), std::io::ErrorKind::Unsupported);
    /// # Ok(()) }
    /// ```
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        drop(self);
        Err(unsupported("TcpStream::into_std"))
    }

    /// The local address and port of the connection.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// assert!(stream.local_addr()?.ip().is_loopback());
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.h.local)
    }

    /// The error that ended the connection (`ConnectionReset`, `TimedOut`, ...), reported
    /// once, like `SO_ERROR`; `None` while there is none or after it was taken.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// if let Some(e) = stream.take_error()? {
    ///     eprintln!("connection failed: {e}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.h.take_error()
    }

    /// The peer's address and port.
    ///
    /// Unlike the kernel, which answers `NotConnected` once the connection has been reset
    /// or fully closed, rawtcp reports the peer for the whole life of the stream.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// assert_eq!(stream.peer_addr()?, "127.0.0.1:8080".parse().unwrap());
    /// # Ok(()) }
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.h.remote)
    }

    /// The engine's statistics for this connection (RTT, RTO, cwnd, retransmissions, ...),
    /// like Linux's `TCP_INFO`. Not in `tokio::net`.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let info = stream.info()?;
    /// println!("{:?} rto {:?} cwnd {}", info.state, info.rto, info.cwnd);
    /// # Ok(()) }
    /// ```
    pub fn info(&self) -> io::Result<TcpInfo> {
        self.h.info()
    }

    /// Where urgent data ends in the bytes still to be read, if the peer sent any
    /// (RFC 6093: urgent data is delivered inline). Not in `tokio::net`.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// if let Some(n) = stream.urgent_mark()? {
    ///     println!("the next {n} bytes end with urgent data");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn urgent_mark(&self) -> io::Result<Option<usize>> {
        self.h.urgent_mark()
    }

    /// Receives into `buf` without consuming: the same bytes are read again by the next
    /// read or peek. Registers the task to be woken when nothing is there yet; returns the
    /// number of bytes peeked (0 at end of stream).
    ///
    /// Only the task of the most recent call to `poll_peek` or `poll_read` is sure to be
    /// woken.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::future::poll_fn;
    /// use tokio::io::ReadBuf;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let mut storage = [0u8; 16];
    /// let mut buf = ReadBuf::new(&mut storage);
    /// let n = poll_fn(|cx| stream.poll_peek(cx, &mut buf)).await?;
    /// assert_eq!(n, buf.filled().len());
    /// # Ok(()) }
    /// ```
    pub fn poll_peek(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<usize>> {
        self.h.poll_peek(cx, buf)
    }

    /// Waits until any of `interest` is ready and returns what is.
    ///
    /// Readiness is rawtcp's own, computed from the connection's state each time rather than
    /// remembered from an event, in the kernel's terms: `READABLE` when a read would not
    /// block (data, end of stream, or an error), `READ_CLOSED` once the peer's FIN arrived,
    /// `WRITABLE` when a write would not block (room in the send buffer, or an error it would
    /// report), `WRITE_CLOSED` once both directions are closed or the connection failed,
    /// `ERROR` while an error is pending that [`take_error`](Self::take_error) has not
    /// taken, `PRIORITY` while urgent data is unread. A stale readiness is therefore
    /// impossible: after `ready` says readable, a `try_read` succeeds unless another task
    /// read first.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use tokio::io::Interest;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let ready = stream.ready(Interest::READABLE | Interest::WRITABLE).await?;
    /// if ready.is_readable() {
    ///     let mut buf = [0u8; 1024];
    ///     match stream.try_read(&mut buf) {
    ///         Ok(n) => println!("read {n} bytes"),
    ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// if ready.is_writable() {
    ///     let _ = stream.try_write(b"ping");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes loses nothing, and a later call
    /// sees the same readiness.
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        self.h
            .until_ready(|cx| self.h.poll_ready(cx, interest))
            .await
    }

    /// Waits until a read would not block: data, end of stream, or an error.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let mut buf = [0u8; 4096];
    /// loop {
    ///     stream.readable().await?;
    ///     match stream.try_read(&mut buf) {
    ///         Ok(0) => break, // end of stream
    ///         Ok(n) => println!("{n} bytes"),
    ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`ready`](Self::ready).
    pub async fn readable(&self) -> io::Result<()> {
        self.ready(Interest::READABLE).await.map(|_| ())
    }

    /// Polls for read readiness: `Ready(Ok(()))` when a read would not block, otherwise
    /// `Pending` with the task registered to be woken.
    ///
    /// Only the task of the most recent call is sure to be woken.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::future::poll_fn;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// poll_fn(|cx| stream.poll_read_ready(cx)).await?;
    /// # Ok(()) }
    /// ```
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_ready(cx, Interest::READABLE).map_ok(|_| ())
    }

    /// Reads what is there into `buf` without waiting: the number of bytes read, `Ok(0)` at
    /// end of stream, `WouldBlock` when nothing is readable yet.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.readable().await?;
    /// let mut buf = [0u8; 1024];
    /// let n = stream.try_read(&mut buf)?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.h.try_read(buf)
    }

    /// Like [`try_read`](Self::try_read), filling several buffers in turn.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::io::IoSliceMut;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.readable().await?;
    /// let (mut head, mut body) = ([0u8; 4], [0u8; 1024]);
    /// let n = stream.try_read_vectored(&mut [IoSliceMut::new(&mut head), IoSliceMut::new(&mut body)])?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub fn try_read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        let mut total = 0;
        for b in bufs.iter_mut().filter(|b| !b.is_empty()) {
            match self.h.try_read(b) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    if n < b.len() {
                        break;
                    }
                }
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(total)
    }

    /// Reads into the spare capacity of `buf` (a `Vec<u8>`, `BytesMut`, ...) without
    /// waiting, advancing it by the bytes read.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.readable().await?;
    /// let mut buf = Vec::with_capacity(4096);
    /// let n = stream.try_read_buf(&mut buf)?;
    /// assert_eq!(buf.len(), n);
    /// # Ok(()) }
    /// ```
    pub fn try_read_buf<B: bytes::BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        // Through a bounded stack buffer: filling `buf`'s uninitialised memory directly
        // would need `unsafe`, which this crate does not use.
        let mut chunk = [0u8; 16 * 1024];
        let room = buf.remaining_mut().min(chunk.len());
        let n = self.h.try_read(&mut chunk[..room])?;
        buf.put_slice(&chunk[..n]);
        Ok(n)
    }

    /// Waits until a write would not block: room in the send buffer, or an error to report.
    ///
    /// A full send buffer is simply not writable: readiness comes back when the peer
    /// acknowledges data and room opens.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let mut data: &[u8] = b"hello";
    /// while !data.is_empty() {
    ///     stream.writable().await?;
    ///     match stream.try_write(data) {
    ///         Ok(n) => data = &data[n..],
    ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`ready`](Self::ready).
    pub async fn writable(&self) -> io::Result<()> {
        self.ready(Interest::WRITABLE).await.map(|_| ())
    }

    /// Polls for write readiness: `Ready(Ok(()))` when a write would not block, otherwise
    /// `Pending` with the task registered to be woken.
    ///
    /// Only the task of the most recent call is sure to be woken.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::future::poll_fn;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// poll_fn(|cx| stream.poll_write_ready(cx)).await?;
    /// # Ok(()) }
    /// ```
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_ready(cx, Interest::WRITABLE).map_ok(|_| ())
    }

    /// Queues as much of `buf` as the send buffer takes, without waiting; `WouldBlock` when
    /// it takes nothing.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.writable().await?;
    /// let n = stream.try_write(b"hello")?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.h.try_write_vectored(&[io::IoSlice::new(buf)])
    }

    /// Like [`try_write`](Self::try_write), from several buffers in turn.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::io::IoSlice;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.writable().await?;
    /// let n = stream.try_write_vectored(&[IoSlice::new(b"head "), IoSlice::new(b"body")])?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.h.try_write_vectored(bufs)
    }

    /// Runs `f` if the stream is ready for `interest` now; otherwise returns `WouldBlock`
    /// without calling it.
    ///
    /// With `tokio::net`, `f` would make a system call on the socket. A rawtcp stream has no
    /// descriptor: `f` does its work through the stream's own non-blocking methods
    /// ([`try_read`](Self::try_read), [`try_write`](Self::try_write), ...), which is safe
    /// here because rawtcp's readiness is computed from the connection each time, never
    /// cached. A `WouldBlock` from `f` is returned as it is.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use tokio::io::Interest;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.readable().await?;
    /// let mut buf = [0u8; 512];
    /// let n = stream.try_io(Interest::READABLE, || stream.try_read(&mut buf))?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        if self.h.readiness(interest)?.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        f()
    }

    /// Waits until the stream is ready for `interest`, then runs `f`; when `f` returns
    /// `WouldBlock`, waits for the connection's next change of readiness and runs it again,
    /// until it returns anything else.
    ///
    /// As with [`try_io`](Self::try_io), `f` works through the stream's own non-blocking
    /// methods. Like tokio, a `WouldBlock` from `f` is taken to mean "not ready after all":
    /// `f` runs again only after the stack reports a change (data, room, a state change), so
    /// a closure that returns `WouldBlock` for reasons of its own waits for the connection.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use tokio::io::Interest;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let mut buf = [0u8; 512];
    /// let n = stream.async_io(Interest::READABLE, || stream.try_read(&mut buf)).await?;
    /// # let _ = n; Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe as far as rawtcp is concerned (nothing is lost while it waits); whether
    /// `f` already ran when the future is dropped is for `f` to tell.
    pub async fn async_io<R>(
        &self,
        interest: Interest,
        mut f: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        let mut retry = false;
        loop {
            if retry {
                // The closure found the stream not ready: wait for the next change.
                let mut registered = false;
                poll_fn(|cx| {
                    if registered {
                        return Poll::Ready(Ok::<(), io::Error>(()));
                    }
                    registered = true;
                    self.h.register_next(cx, interest)?;
                    Poll::Pending
                })
                .await?;
            }
            self.ready(interest).await?;
            match f() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => retry = true,
                r => return r,
            }
        }
    }

    /// Receives into `buf` without consuming, waiting until something is there: the same
    /// bytes come again from the next read or peek. Returns the number of bytes peeked, 0 at
    /// end of stream.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use tokio::io::AsyncReadExt;
    ///
    /// let mut stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let mut peeked = [0u8; 8];
    /// let n = stream.peek(&mut peeked).await?;
    /// let mut read = [0u8; 8];
    /// stream.read_exact(&mut read[..n]).await?;
    /// assert_eq!(peeked[..n], read[..n]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, nothing was peeked and
    /// `buf` is untouched.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        self.h.until_ready(|cx| self.h.poll_peek(cx, &mut rb)).await
    }

    /// The congestion-control algorithm in use (Linux's `TCP_CONGESTION`; CUBIC unless
    /// configured otherwise). Not in `tokio::net`.
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// assert_eq!(stream.congestion()?.name(), "cubic");
    /// # Ok(()) }
    /// ```
    pub fn congestion(&self) -> io::Result<Algorithm> {
        self.h.congestion()
    }

    /// Switches the congestion-control algorithm, as `setsockopt(TCP_CONGESTION)` does on
    /// Linux: the new one continues from the current window. Names parse with
    /// [`str::parse`]: `"newreno"` (or `"reno"`), `"cubic"`, `"bbr"`. Not in `tokio::net`.
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.set_congestion("bbr".parse().unwrap())?;
    /// assert!(stream.info()?.pacing_rate.is_some());
    /// # Ok(()) }
    /// ```
    pub fn set_congestion(&self, algorithm: Algorithm) -> io::Result<()> {
        self.h.set_congestion(algorithm)
    }

    /// Whether Nagle's algorithm is off (`TCP_NODELAY`).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// assert!(!stream.nodelay()?);
    /// # Ok(()) }
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.h.nodelay()
    }

    /// Turns Nagle's algorithm off (`true`: small writes leave at once) or on (`false`: a
    /// small segment waits while earlier data is unacknowledged), like `TCP_NODELAY`.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.set_nodelay(true)?;
    /// # Ok(()) }
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.h.set_nodelay(nodelay)
    }

    /// Whether segments are acknowledged at once rather than by the delayed ACK
    /// (`TCP_QUICKACK`).
    ///
    /// rawtcp reports its switch: `false` while ACKs may be delayed (the default, 40 ms),
    /// `true` after [`set_quickack(true)`](Self::set_quickack) or with delayed ACKs
    /// configured off. Linux reports its own transient quick-ACK mode, which is on for a
    /// fresh connection and goes off by itself.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.set_quickack(true)?;
    /// assert!(stream.quickack()?);
    /// # Ok(()) }
    /// ```
    pub fn quickack(&self) -> io::Result<bool> {
        self.h.quickack()
    }

    /// `true` turns the delayed ACK off for this connection: an acknowledgment being held
    /// leaves now and every later segment is acknowledged when it arrives. `false` turns it
    /// back on, with the delay it had (40 ms when it had none). Unlike Linux, which may
    /// leave quick-ACK mode on its own, the setting stays until changed.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.set_quickack(true)?; // request/response: no 40 ms ACK delay
    /// # Ok(()) }
    /// ```
    pub fn set_quickack(&self, quickack: bool) -> io::Result<()> {
        self.h.set_quickack(quickack)
    }

    /// The linger setting (`SO_LINGER`): `None` for the graceful close, `Some(Duration::ZERO)`
    /// when dropping the stream resets it, or the whole seconds set with
    /// [`set_linger`](Self::set_linger).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// assert_eq!(stream.linger()?, None);
    /// # Ok(()) }
    /// ```
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.h.linger()
    }

    /// Sets `SO_LINGER`, kept in whole seconds as the kernel keeps it (so less than a second
    /// is zero).
    ///
    /// Zero is [`set_zero_linger`](Self::set_zero_linger). Any other value is reported back
    /// by [`linger`](Self::linger) and changes nothing else: rawtcp's close never blocks the
    /// dropping thread (the reason tokio deprecates this method); the stack goes on
    /// delivering in the background as with `None`.
    ///
    /// ```no_run
    /// # #![allow(deprecated)]
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::time::Duration;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.set_linger(Some(Duration::from_secs(5)))?;
    /// assert_eq!(stream.linger()?, Some(Duration::from_secs(5)));
    /// # Ok(()) }
    /// ```
    #[deprecated = "`SO_LINGER` blocks the thread on drop with kernel sockets; use `set_zero_linger` for an abortive close"]
    pub fn set_linger(&self, dur: Option<Duration>) -> io::Result<()> {
        self.h.set_linger(dur)
    }

    /// Makes dropping the stream an abortive close: RST instead of FIN, unsent data
    /// discarded, no TIME-WAIT; the peer's next read fails with `ConnectionReset`.
    /// [`linger`](Self::linger) then reports `Some(Duration::ZERO)`.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::time::Duration;
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.set_zero_linger()?;
    /// assert_eq!(stream.linger()?, Some(Duration::ZERO));
    /// drop(stream); // RST
    /// # Ok(()) }
    /// ```
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.h.set_linger(Some(Duration::ZERO))
    }

    /// The IP TTL (IPv6 hop limit) of the packets this connection sends; 64 by default.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// assert_eq!(stream.ttl()?, 64);
    /// # Ok(()) }
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        self.h.ttl()
    }

    /// Sets the IP TTL (IPv6 hop limit) of the packets this connection sends from now on;
    /// `InvalidInput` outside 1..=255, as the kernel answers.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.set_ttl(16)?;
    /// assert_eq!(stream.ttl()?, 16);
    /// # Ok(()) }
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.h.set_ttl(ttl)
    }

    /// Turns keepalive probing on with Linux's defaults (2 h idle, 75 s interval, 9 probes)
    /// or off. Not on tokio's stream (tokio has it on [`TcpSocket`](crate::TcpSocket)).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// stream.set_keepalive(true)?;
    /// # Ok(()) }
    /// ```
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.h
            .set_keepalive(on.then(crate::proto::Keepalive::default))
    }

    /// Borrowed read and write halves, usable concurrently in one task (for example with
    /// `tokio::join!`) without locking.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let mut stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let (mut rd, mut wr) = stream.split();
    /// tokio::io::copy(&mut rd, &mut wr).await?; // echo
    /// # Ok(()) }
    /// ```
    #[allow(clippy::needless_lifetimes)]
    pub fn split<'a>(&'a mut self) -> (ReadHalf<'a>, WriteHalf<'a>) {
        split(self)
    }

    /// Owned halves that can move to different tasks. Dropping the [`OwnedWriteHalf`] sends
    /// FIN (shuts down writing, as [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown)
    /// does), and [`OwnedReadHalf::reunite`] puts the halves back together.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let stream = rawtcp::TcpStream::connect("127.0.0.1:8080").await?;
    /// let (mut rd, mut wr) = stream.into_split();
    /// tokio::spawn(async move { wr.write_all(b"hello").await });
    /// let mut buf = Vec::new();
    /// rd.read_to_end(&mut buf).await?;
    /// # Ok(()) }
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split_owned(self)
    }
}

impl TryFrom<std::net::TcpStream> for TcpStream {
    type Error = io::Error;

    /// Unsupported, as [`TcpStream::from_std`]: always [`io::ErrorKind::Unsupported`].
    fn try_from(stream: std::net::TcpStream) -> Result<Self, Self::Error> {
        Self::from_std(stream)
    }
}

impl AsRef<TcpStream> for TcpStream {
    fn as_ref(&self) -> &TcpStream {
        self
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.h.poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.h.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.h.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Written data is already in the stack's hands: nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends FIN after the data written so far. Idempotent, and succeeds after a reset.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.h.shutdown())
    }
}
