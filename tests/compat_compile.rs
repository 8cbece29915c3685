//! A compile-only check: code that names every item of `tokio::net`'s TCP API — each type,
//! each method with its exact signature (as a function pointer of the written-out type),
//! each trait impl, the `tcp` module path, `ToSocketAddrs` and `lookup_host` — written once
//! and compiled twice, with `use tokio::net as net;` and with `use rawtcp as net;`. If it
//! compiles, an application can swap the one `use` line.
//!
//! Nothing here touches the network; the only test just makes sure both instances are
//! linked in.

#![allow(dead_code, clippy::type_complexity)]

macro_rules! every_item {
    ($($net:ident)::+) => {
        use $($net)::+ as net;
        use net::tcp::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
        use net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
        use std::fmt::Debug;
        use std::io::{self, IoSlice, IoSliceMut};
        use std::net::SocketAddr;
        use std::task::{Context, Poll};
        use std::time::Duration;
        use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};

        fn assert_traits<T: Debug + Send + Sync + Unpin + 'static>() {}
        fn assert_read<T: AsyncRead + AsRef<TcpStream> + Debug + Send + Sync + Unpin>() {}
        fn assert_write<T: AsyncWrite + AsRef<TcpStream> + Debug + Send + Sync + Unpin>() {}

        /// Every trait the types implement in tokio (but `AsRawFd`/`AsFd`: see the README).
        pub fn traits() {
            assert_traits::<TcpListener>();
            assert_traits::<TcpStream>();
            assert_traits::<TcpSocket>();
            assert_traits::<OwnedReadHalf>();
            assert_traits::<OwnedWriteHalf>();
            assert_traits::<ReuniteError>();
            assert_read::<TcpStream>();
            assert_write::<TcpStream>();
            assert_read::<ReadHalf<'static>>();
            assert_write::<WriteHalf<'static>>();
            assert_read::<OwnedReadHalf>();
            assert_write::<OwnedWriteHalf>();
            fn error<E: std::error::Error + std::fmt::Display>() {}
            error::<ReuniteError>();
            fn stream_from<T: TryFrom<std::net::TcpStream, Error = io::Error>>() {}
            stream_from::<TcpStream>();
            fn listener_from<T: TryFrom<std::net::TcpListener, Error = io::Error>>() {}
            listener_from::<TcpListener>();
            // ReuniteError's fields are public.
            let _: fn(ReuniteError) -> (OwnedReadHalf, OwnedWriteHalf) = |e| (e.0, e.1);
        }

        /// Every synchronous method, by its exact signature.
        pub fn signatures() {
            // TcpListener
            let _: fn(&TcpListener, &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> =
                TcpListener::poll_accept;
            let _: fn(std::net::TcpListener) -> io::Result<TcpListener> = TcpListener::from_std;
            let _: fn(TcpListener) -> io::Result<std::net::TcpListener> = TcpListener::into_std;
            let _: fn(&TcpListener) -> io::Result<SocketAddr> = TcpListener::local_addr;
            let _: fn(&TcpListener) -> io::Result<u32> = TcpListener::ttl;
            let _: fn(&TcpListener, u32) -> io::Result<()> = TcpListener::set_ttl;

            // TcpStream
            let _: fn(std::net::TcpStream) -> io::Result<TcpStream> = TcpStream::from_std;
            let _: fn(TcpStream) -> io::Result<std::net::TcpStream> = TcpStream::into_std;
            let _: fn(&TcpStream) -> io::Result<SocketAddr> = TcpStream::local_addr;
            let _: fn(&TcpStream) -> io::Result<Option<io::Error>> = TcpStream::take_error;
            let _: fn(&TcpStream) -> io::Result<SocketAddr> = TcpStream::peer_addr;
            let _: fn(&TcpStream, &mut Context<'_>, &mut ReadBuf<'_>) -> Poll<io::Result<usize>> =
                TcpStream::poll_peek;
            let _: fn(&TcpStream, &mut Context<'_>) -> Poll<io::Result<()>> = TcpStream::poll_read_ready;
            let _: fn(&TcpStream, &mut [u8]) -> io::Result<usize> = TcpStream::try_read;
            let _: fn(&TcpStream, &mut [IoSliceMut<'_>]) -> io::Result<usize> = TcpStream::try_read_vectored;
            let _: fn(&TcpStream, &mut Vec<u8>) -> io::Result<usize> = TcpStream::try_read_buf::<Vec<u8>>;
            let _: fn(&TcpStream, &mut Context<'_>) -> Poll<io::Result<()>> = TcpStream::poll_write_ready;
            let _: fn(&TcpStream, &[u8]) -> io::Result<usize> = TcpStream::try_write;
            let _: fn(&TcpStream, &[IoSlice<'_>]) -> io::Result<usize> = TcpStream::try_write_vectored;
            let _: fn(&TcpStream) -> io::Result<bool> = TcpStream::nodelay;
            let _: fn(&TcpStream, bool) -> io::Result<()> = TcpStream::set_nodelay;
            let _: fn(&TcpStream) -> io::Result<bool> = TcpStream::quickack;
            let _: fn(&TcpStream, bool) -> io::Result<()> = TcpStream::set_quickack;
            let _: fn(&TcpStream) -> io::Result<Option<Duration>> = TcpStream::linger;
            #[allow(deprecated)]
            let _: fn(&TcpStream, Option<Duration>) -> io::Result<()> = TcpStream::set_linger;
            let _: fn(&TcpStream) -> io::Result<()> = TcpStream::set_zero_linger;
            let _: fn(&TcpStream) -> io::Result<u32> = TcpStream::ttl;
            let _: fn(&TcpStream, u32) -> io::Result<()> = TcpStream::set_ttl;
            let _: fn(&mut TcpStream) -> (ReadHalf<'_>, WriteHalf<'_>) = TcpStream::split;
            let _: fn(TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) = TcpStream::into_split;

            // TcpSocket
            let _: fn() -> io::Result<TcpSocket> = TcpSocket::new_v4;
            let _: fn() -> io::Result<TcpSocket> = TcpSocket::new_v6;
            let _: fn(&TcpSocket, bool) -> io::Result<()> = TcpSocket::set_keepalive;
            let _: fn(&TcpSocket) -> io::Result<bool> = TcpSocket::keepalive;
            let _: fn(&TcpSocket, bool) -> io::Result<()> = TcpSocket::set_reuseaddr;
            let _: fn(&TcpSocket) -> io::Result<bool> = TcpSocket::reuseaddr;
            let _: fn(&TcpSocket, bool) -> io::Result<()> = TcpSocket::set_reuseport;
            let _: fn(&TcpSocket) -> io::Result<bool> = TcpSocket::reuseport;
            let _: fn(&TcpSocket, u32) -> io::Result<()> = TcpSocket::set_send_buffer_size;
            let _: fn(&TcpSocket) -> io::Result<u32> = TcpSocket::send_buffer_size;
            let _: fn(&TcpSocket, u32) -> io::Result<()> = TcpSocket::set_recv_buffer_size;
            let _: fn(&TcpSocket) -> io::Result<u32> = TcpSocket::recv_buffer_size;
            #[allow(deprecated)]
            let _: fn(&TcpSocket, Option<Duration>) -> io::Result<()> = TcpSocket::set_linger;
            let _: fn(&TcpSocket) -> io::Result<()> = TcpSocket::set_zero_linger;
            let _: fn(&TcpSocket) -> io::Result<Option<Duration>> = TcpSocket::linger;
            let _: fn(&TcpSocket, bool) -> io::Result<()> = TcpSocket::set_nodelay;
            let _: fn(&TcpSocket) -> io::Result<bool> = TcpSocket::nodelay;
            let _: fn(&TcpSocket) -> io::Result<u32> = TcpSocket::tclass_v6;
            let _: fn(&TcpSocket, u32) -> io::Result<()> = TcpSocket::set_tclass_v6;
            let _: fn(&TcpSocket) -> io::Result<u32> = TcpSocket::tos_v4;
            let _: fn(&TcpSocket, u32) -> io::Result<()> = TcpSocket::set_tos_v4;
            #[allow(deprecated)]
            let _: fn(&TcpSocket) -> io::Result<u32> = TcpSocket::tos;
            #[allow(deprecated)]
            let _: fn(&TcpSocket, u32) -> io::Result<()> = TcpSocket::set_tos;
            let _: fn(&TcpSocket) -> io::Result<Option<Vec<u8>>> = TcpSocket::device;
            let _: fn(&TcpSocket, Option<&[u8]>) -> io::Result<()> = TcpSocket::bind_device;
            let _: fn(&TcpSocket) -> io::Result<SocketAddr> = TcpSocket::local_addr;
            let _: fn(&TcpSocket) -> io::Result<Option<io::Error>> = TcpSocket::take_error;
            let _: fn(&TcpSocket, SocketAddr) -> io::Result<()> = TcpSocket::bind;
            let _: fn(TcpSocket, u32) -> io::Result<TcpListener> = TcpSocket::listen;
            let _: fn(std::net::TcpStream) -> TcpSocket = TcpSocket::from_std_stream;

            // The borrowed halves
            let _: fn(&mut ReadHalf<'static>, &mut Context<'_>, &mut ReadBuf<'_>) -> Poll<io::Result<usize>> =
                ReadHalf::poll_peek;
            let _: fn(&ReadHalf<'static>, &mut [u8]) -> io::Result<usize> = ReadHalf::try_read;
            let _: fn(&ReadHalf<'static>, &mut [IoSliceMut<'_>]) -> io::Result<usize> = ReadHalf::try_read_vectored;
            let _: fn(&ReadHalf<'static>, &mut Vec<u8>) -> io::Result<usize> = ReadHalf::try_read_buf::<Vec<u8>>;
            let _: fn(&ReadHalf<'static>) -> io::Result<SocketAddr> = ReadHalf::peer_addr;
            let _: fn(&ReadHalf<'static>) -> io::Result<SocketAddr> = ReadHalf::local_addr;
            let _: fn(&WriteHalf<'static>, &[u8]) -> io::Result<usize> = WriteHalf::try_write;
            let _: fn(&WriteHalf<'static>, &[IoSlice<'_>]) -> io::Result<usize> = WriteHalf::try_write_vectored;
            let _: fn(&WriteHalf<'static>) -> io::Result<SocketAddr> = WriteHalf::peer_addr;
            let _: fn(&WriteHalf<'static>) -> io::Result<SocketAddr> = WriteHalf::local_addr;

            // The owned halves
            let _: fn(OwnedReadHalf, OwnedWriteHalf) -> Result<TcpStream, ReuniteError> = OwnedReadHalf::reunite;
            let _: fn(&mut OwnedReadHalf, &mut Context<'_>, &mut ReadBuf<'_>) -> Poll<io::Result<usize>> =
                OwnedReadHalf::poll_peek;
            let _: fn(&OwnedReadHalf, &mut [u8]) -> io::Result<usize> = OwnedReadHalf::try_read;
            let _: fn(&OwnedReadHalf, &mut [IoSliceMut<'_>]) -> io::Result<usize> = OwnedReadHalf::try_read_vectored;
            let _: fn(&OwnedReadHalf, &mut Vec<u8>) -> io::Result<usize> = OwnedReadHalf::try_read_buf::<Vec<u8>>;
            let _: fn(&OwnedReadHalf) -> io::Result<SocketAddr> = OwnedReadHalf::peer_addr;
            let _: fn(&OwnedReadHalf) -> io::Result<SocketAddr> = OwnedReadHalf::local_addr;
            let _: fn(OwnedWriteHalf, OwnedReadHalf) -> Result<TcpStream, ReuniteError> = OwnedWriteHalf::reunite;
            let _: fn(OwnedWriteHalf) = OwnedWriteHalf::forget;
            let _: fn(&OwnedWriteHalf, &[u8]) -> io::Result<usize> = OwnedWriteHalf::try_write;
            let _: fn(&OwnedWriteHalf, &[IoSlice<'_>]) -> io::Result<usize> = OwnedWriteHalf::try_write_vectored;
            let _: fn(&OwnedWriteHalf) -> io::Result<SocketAddr> = OwnedWriteHalf::peer_addr;
            let _: fn(&OwnedWriteHalf) -> io::Result<SocketAddr> = OwnedWriteHalf::local_addr;
        }

        /// Every asynchronous and generic method, called with the argument types tokio
        /// takes and its results bound to the types tokio returns. Compiled, never run.
        pub async fn calls(
            std_listener: std::net::TcpListener,
            std_stream: std::net::TcpStream,
        ) -> io::Result<()> {
            let listener: TcpListener = TcpListener::bind("127.0.0.1:0").await?;
            let listener2: TcpListener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let _: Result<TcpListener, io::Error> = TcpListener::try_from(std_listener);
            let (mut stream, _peer): (TcpStream, SocketAddr) = listener.accept().await?;
            let _: TcpStream = TcpStream::connect(listener2.local_addr()?).await?;
            let _: TcpStream = TcpStream::connect(String::from("localhost:80")).await?;
            let _: Result<TcpStream, io::Error> = TcpStream::try_from(std_stream);
            let _: Ready = stream.ready(Interest::READABLE | Interest::WRITABLE).await?;
            let _: () = stream.readable().await?;
            let _: () = stream.writable().await?;
            let mut buf = [0u8; 8];
            let _: usize = stream.peek(&mut buf).await?;
            let _: usize = stream.try_io(Interest::READABLE, || Ok(0usize))?;
            let _: usize = stream.async_io(Interest::WRITABLE, || Ok(0usize)).await?;
            {
                let (mut rd, wr): (ReadHalf<'_>, WriteHalf<'_>) = stream.split();
                let _: usize = rd.peek(&mut buf).await?;
                let _: Ready = rd.ready(Interest::READABLE).await?;
                let _: () = rd.readable().await?;
                let _: Ready = wr.ready(Interest::WRITABLE).await?;
                let _: () = wr.writable().await?;
                let _: &TcpStream = rd.as_ref();
                let _: &TcpStream = wr.as_ref();
            }
            let (mut rd, wr): (OwnedReadHalf, OwnedWriteHalf) = stream.into_split();
            let _: usize = rd.peek(&mut buf).await?;
            let _: Ready = rd.ready(Interest::READABLE).await?;
            let _: () = rd.readable().await?;
            let _: Ready = wr.ready(Interest::WRITABLE).await?;
            let _: () = wr.writable().await?;
            let _: &TcpStream = rd.as_ref();
            let _: &TcpStream = wr.as_ref();
            let stream: TcpStream = rd.reunite(wr).map_err(|e: ReuniteError| io::Error::other(e))?;
            let _: &TcpStream = stream.as_ref();
            let socket = TcpSocket::new_v4()?;
            let _: TcpStream = socket.connect(listener.local_addr()?).await?;
            let _: TcpSocket = TcpSocket::from_std_stream(std::net::TcpStream::connect("127.0.0.1:1")?);
            let _: Vec<SocketAddr> = net::lookup_host("localhost:80").await?.collect();
            Ok(())
        }

        /// Code generic over the module's `ToSocketAddrs`.
        pub async fn generic<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
            TcpStream::connect(addr).await
        }

        /// The `tcp` path and the root path name the same types.
        pub fn paths(
            a: net::tcp::OwnedReadHalf,
            b: net::tcp::OwnedWriteHalf,
        ) -> (OwnedReadHalf, OwnedWriteHalf) {
            (a, b)
        }
    };
}

/// With tokio's module: the reference.
mod with_tokio_net {
    every_item!(tokio::net);
}

/// With rawtcp swapped in: the same code.
mod with_rawtcp {
    every_item!(rawtcp);
}

/// The import the issue found failing: `use rawtcp::{TcpStream, ToSocketAddrs};`.
mod named_imports {
    use rawtcp::{TcpStream, ToSocketAddrs};

    pub async fn open<A: ToSocketAddrs>(addr: A) -> std::io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }
}

#[test]
fn both_instances_compile() {
    with_tokio_net::traits();
    with_rawtcp::traits();
    with_tokio_net::signatures();
    with_rawtcp::signatures();
    // The async ones are only compiled (they would need servers).
    let _ = with_tokio_net::calls;
    let _ = with_rawtcp::calls;
    let _ = with_tokio_net::generic::<&str>;
    let _ = with_rawtcp::generic::<&str>;
    let _ = named_imports::open::<&str>;
}
