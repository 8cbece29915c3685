//! [`TcpStream`]: a connection, with the methods of `tokio::net::TcpStream`.

use super::handle::ConnHandle;
use super::split::{split, split_owned, OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
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
/// It mirrors `tokio::net::TcpStream`: [`AsyncRead`] and [`AsyncWrite`], `try_*` methods that
/// return `WouldBlock`, readiness, `peek`, `split` and `into_split`, and the socket options.
/// Dropping it closes the connection gracefully: data already written is delivered, then FIN.
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

    /// Connects to `addr` on the default stack, trying each resolved address in turn.
    ///
    /// `ConnectionRefused` when a RST answers the SYN, `TimedOut` after the SYN retries.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        Stack::default_stack()?.connect(addr).await
    }

    /// Our address and port.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.h.local)
    }

    /// The peer's address and port.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.h.remote)
    }

    /// The engine's statistics for this connection (RTT, RTO, cwnd, retransmissions, ...).
    pub fn info(&self) -> io::Result<TcpInfo> {
        self.h.info()
    }

    /// Where urgent data ends in the bytes still to be read, if the peer sent any
    /// (RFC 6093: urgent data is delivered inline).
    pub fn urgent_mark(&self) -> io::Result<Option<usize>> {
        self.h.urgent_mark()
    }

    /// Waits until any of `interest` is ready.
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        poll_fn(|cx| self.h.poll_ready(cx, interest)).await
    }

    /// Waits until a read would not block: data, end of stream, or an error.
    pub async fn readable(&self) -> io::Result<()> {
        self.ready(Interest::READABLE).await.map(|_| ())
    }

    /// Waits until a write would not block.
    pub async fn writable(&self) -> io::Result<()> {
        self.ready(Interest::WRITABLE).await.map(|_| ())
    }

    /// Polls for read readiness.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_ready(cx, Interest::READABLE).map_ok(|_| ())
    }

    /// Polls for write readiness.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_ready(cx, Interest::WRITABLE).map_ok(|_| ())
    }

    /// Reads what is available without waiting; `WouldBlock` when nothing is.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.h.try_read(buf)
    }

    /// Like [`try_read`](Self::try_read), into several buffers in turn.
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

    /// Reads into the spare capacity of `buf` (a `Vec<u8>`, `BytesMut`, ...) without waiting.
    pub fn try_read_buf<B: bytes::BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        // Through a bounded stack buffer: filling `buf`'s uninitialised memory directly
        // would need `unsafe`, which this crate does not use.
        let mut chunk = [0u8; 16 * 1024];
        let room = buf.remaining_mut().min(chunk.len());
        let n = self.h.try_read(&mut chunk[..room])?;
        buf.put_slice(&chunk[..n]);
        Ok(n)
    }

    /// Writes what fits without waiting; `WouldBlock` when the send buffer is full.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.h.try_write_vectored(&[io::IoSlice::new(buf)])
    }

    /// Like [`try_write`](Self::try_write), from several buffers in turn.
    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.h.try_write_vectored(bufs)
    }

    /// Reads without consuming: the same bytes are read again later.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        poll_fn(|cx| self.h.poll_peek(cx, &mut rb)).await
    }

    /// Polls a [`peek`](Self::peek).
    pub fn poll_peek(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<usize>> {
        self.h.poll_peek(cx, buf)
    }

    /// The congestion-control algorithm in use (Linux's `TCP_CONGESTION`; CUBIC unless
    /// configured otherwise).
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
    /// [`str::parse`]: `"newreno"` (or `"reno"`), `"cubic"`, `"bbr"`.
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

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.h.nodelay()
    }

    /// Turns Nagle's algorithm off (`true`) or on (TCP_NODELAY).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.h.set_nodelay(nodelay)
    }

    /// `Some(0)` when dropping the stream resets it, `None` for the graceful close.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(self.h.zero_linger()?.then_some(Duration::ZERO))
    }

    /// With `true`, dropping the stream sends RST instead of FIN and discards unsent data;
    /// the peer sees `ConnectionReset`.
    pub fn set_zero_linger(&self, zero: bool) -> io::Result<()> {
        self.h.set_zero_linger(zero)
    }

    /// Like `SO_LINGER`: `Some(Duration::ZERO)` is [`set_zero_linger(true)`](Self::set_zero_linger);
    /// any other value keeps the graceful close, which never blocks the dropping task.
    pub fn set_linger(&self, dur: Option<Duration>) -> io::Result<()> {
        self.h.set_zero_linger(dur == Some(Duration::ZERO))
    }

    /// IP TTL (hop limit) of outgoing packets.
    pub fn ttl(&self) -> io::Result<u32> {
        self.h.ttl()
    }

    /// Sets the IP TTL (hop limit) of outgoing packets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.h.set_ttl(ttl)
    }

    /// Turns keepalive probing on with Linux's defaults (2 h idle, 75 s interval, 9 probes)
    /// or off.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.h
            .set_keepalive(on.then(crate::proto::Keepalive::default))
    }

    /// The connection's error, once (like `SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.h.take_error()
    }

    /// Borrowed read and write halves, usable concurrently.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        split(self)
    }

    /// Owned halves that can move to different tasks; [`OwnedWriteHalf`] sends FIN when
    /// dropped, and [`OwnedReadHalf::reunite`] puts them back together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split_owned(self)
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
