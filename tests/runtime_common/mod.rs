//! Scenarios shared by `runtime_sim.rs` and `runtime_udp.rs`: each one drives a server stack
//! and a client stack through one behaviour of the tokio-shaped API and checks what a tokio
//! user would expect. The callers choose the datapath (simulated network under a paused
//! clock, or UDP on loopback in real time) and the time limit of every wait.
#![allow(dead_code)]

use futures_core::Stream;
use rawtcp::{Direction, Stack, TapEvent, TcpListener, TcpStream};
use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A stack built by `b` on the UDP datapath (encapsulation on loopback).
pub fn udp_stack_with(b: rawtcp::StackBuilder) -> Stack {
    b.datapath(rawtcp::datapath::udp::UdpDatapath::new().expect("udp datapath"))
        .build()
        .expect("stack")
}

/// A server for connect-and-close loops: reads one byte from each connection `listener`
/// accepts, in a task of its own, and closes it (sending the first FIN). Runs until the
/// listener fails or the task is aborted.
pub fn serve_one_byte_each(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut one = [0u8; 1];
                let _ = s.read_exact(&mut one).await;
            });
        }
    })
}

/// Two stacks and where the server listens.
pub struct Env {
    /// The stack that listens.
    pub server: Stack,
    /// The stack that connects.
    pub client: Stack,
    /// The address listeners bind to (port 0).
    pub bind: SocketAddr,
    /// The longest any single wait may take before the test fails.
    pub limit: Duration,
    /// How long "nothing happens" is watched for (no EOF, not writable, ...).
    pub quiet: Duration,
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// The byte at position `pos` of a test stream: a hash of the position, so that a byte at
/// the wrong place (lost, duplicated, reordered) does not match.
pub fn pattern(pos: u64) -> u8 {
    let x = (pos / 8 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> (8 * (pos % 8))) as u8
}

/// Fills `buf` with the stream bytes at `pos..`.
pub fn fill(pos: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(pos + i as u64);
    }
}

/// Panics at the first byte of `buf` that is not the stream byte at its position.
pub fn verify(pos: u64, buf: &[u8]) {
    if let Some(i) = (0..buf.len()).find(|&i| buf[i] != pattern(pos + i as u64)) {
        panic!(
            "byte {} of the stream is {:#04x}, expected {:#04x}",
            pos + i as u64,
            buf[i],
            pattern(pos + i as u64)
        );
    }
}

/// Writes `len` pattern bytes in chunks of `chunk`.
pub async fn write_pattern<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    len: u64,
    chunk: usize,
) -> io::Result<()> {
    let mut buf = vec![0u8; chunk];
    let mut pos = 0u64;
    while pos < len {
        let n = chunk.min((len - pos) as usize);
        fill(pos, &mut buf[..n]);
        w.write_all(&buf[..n]).await?;
        pos += n as u64;
    }
    Ok(())
}

/// Reads to end of stream, checking every byte against the pattern; returns the count.
pub async fn read_pattern_to_end<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(pos);
        }
        verify(pos, &buf[..n]);
        pos += n as u64;
    }
}

/// A listener on the server stack, a connected client stream and the accepted server stream.
pub async fn connected(env: &Env) -> (TcpListener, TcpStream, TcpStream) {
    let listener = env.server.bind(env.bind).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = within(env.limit, "connect and accept", async {
        tokio::join!(env.client.connect(addr), listener.accept())
    })
    .await;
    let client = client.expect("connect");
    let (server, peer) = accepted.expect("accept");
    assert_eq!(peer, client.local_addr().unwrap());
    (listener, client, server)
}

/// Whether `fut` completes within `quiet`.
pub async fn completes_within<F: Future>(quiet: Duration, fut: F) -> Option<F::Output> {
    tokio::time::timeout(quiet, fut).await.ok()
}

/// A tap recording the TTL (hop limit) of every outgoing segment carrying data, with its
/// source port.
pub fn ttl_tap(log: Arc<Mutex<Vec<(u16, u8)>>>) -> impl Fn(&TapEvent<'_>) + Send + Sync {
    move |ev: &TapEvent<'_>| {
        if ev.direction != Direction::Out || ev.payload_len == 0 {
            return;
        }
        let ttl = match ev.packet.first().map(|b| b >> 4) {
            Some(4) => ev.packet[8],
            Some(6) => ev.packet[7],
            _ => return,
        };
        log.lock().unwrap().push((ev.src.port(), ttl));
    }
}

// ---- scenarios ------------------------------------------------------------------------------

/// `n` tasks wait in `accept` on one listener at once; `n` clients connect; every waiting
/// task gets a connection, and together they got exactly the clients.
pub async fn accept_wakes_every_waiter(env: &Env, n: usize) {
    let listener = Arc::new(env.server.bind(env.bind).await.expect("bind"));
    let addr = listener.local_addr().unwrap();
    let mut waiters = Vec::new();
    for _ in 0..n {
        let l = listener.clone();
        waiters.push(tokio::spawn(async move { l.accept().await }));
    }
    // Let every waiter reach `accept` and register before anyone connects.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut connects = Vec::new();
    for _ in 0..n {
        let c = env.client.clone();
        connects.push(tokio::spawn(async move { c.connect(addr).await }));
    }
    let mut clients = HashSet::new();
    let mut keep = Vec::new();
    for c in connects {
        let s = within(env.limit, "connect", c)
            .await
            .unwrap()
            .expect("connect");
        clients.insert(s.local_addr().unwrap());
        keep.push(s);
    }
    let mut peers = HashSet::new();
    for (i, w) in waiters.into_iter().enumerate() {
        let (s, peer) = within(env.limit, &format!("accept waiter {i} of {n}"), w)
            .await
            .unwrap()
            .expect("accept");
        assert_eq!(s.peer_addr().unwrap(), peer);
        peers.insert(peer);
        keep.push(s);
    }
    assert_eq!(peers, clients, "the waiters got exactly the clients");
}

/// `peek` returns bytes without consuming them: a second peek and then a read return them
/// again.
pub async fn peek_then_read(env: &Env) {
    let (_l, mut client, mut server) = connected(env).await;
    client.write_all(b"peek-a-boo").await.unwrap();
    let mut p = [0u8; 64];
    let n = within(env.limit, "peek", server.peek(&mut p))
        .await
        .unwrap();
    assert!(n > 0 && n <= 10, "peeked {n} bytes");
    assert_eq!(&p[..n], &b"peek-a-boo"[..n]);
    let mut again = [0u8; 64];
    let m = server.peek(&mut again).await.unwrap();
    assert!(m >= n, "a second peek returns at least as much");
    assert_eq!(&again[..m], &b"peek-a-boo"[..m]);
    let mut all = [0u8; 10];
    within(env.limit, "read after peek", server.read_exact(&mut all))
        .await
        .unwrap();
    assert_eq!(&all, b"peek-a-boo");
    // Consumed now: nothing more to read.
    assert_eq!(
        server.try_read(&mut p).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

/// `try_read` is `WouldBlock` when nothing arrived; `try_write` fills the send buffer (small,
/// with a peer that does not read and has a small receive buffer) until `WouldBlock`, after
/// which `writable()` stays pending; the peer reading makes it ready again, and every byte
/// written arrives in order.
pub async fn try_write_until_would_block(env: &Env) {
    let ls = if env.bind.is_ipv4() {
        env.server.socket_v4()
    } else {
        env.server.socket_v6()
    }
    .unwrap();
    ls.set_recv_buffer_size(16 * 1024).unwrap();
    ls.bind(env.bind).unwrap();
    let listener = ls.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    let cs = if addr.is_ipv4() {
        env.client.socket_v4()
    } else {
        env.client.socket_v6()
    }
    .unwrap();
    cs.set_send_buffer_size(8 * 1024).unwrap();
    assert_eq!(cs.send_buffer_size().unwrap(), 8 * 1024);
    let (client, accepted) = within(env.limit, "connect and accept", async {
        tokio::join!(cs.connect(addr), listener.accept())
    })
    .await;
    let client = client.expect("connect");
    let (mut server, _) = accepted.expect("accept");

    let mut scratch = [0u8; 16];
    for (who, s) in [("client", &client), ("server", &server)] {
        let e = s.try_read(&mut scratch).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{who} try_read: {e}");
    }

    // Write without waiting until the buffers are full: WouldBlock and writable() stuck.
    let mut chunk = vec![0u8; 4096];
    let mut written = 0u64;
    let mut would_block = 0;
    loop {
        fill(written, &mut chunk);
        match client.try_write(&chunk) {
            Ok(n) => {
                assert!(n > 0);
                written += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                would_block += 1;
                if completes_within(env.quiet, client.writable())
                    .await
                    .is_none()
                {
                    break;
                }
            }
            Err(e) => panic!("try_write: {e}"),
        }
        assert!(
            written < 8 << 20,
            "try_write never blocked: {written} bytes taken with a peer that does not read"
        );
    }
    assert!(would_block > 0);
    eprintln!("try_write: {written} bytes taken before the buffers filled (send buffer 8 KiB, peer window 16 KiB)");
    assert!(
        written >= 8 * 1024,
        "at least the send buffer was taken ({written})"
    );
    // Still stuck a while later.
    assert!(completes_within(env.quiet, client.writable())
        .await
        .is_none());
    assert_eq!(
        client.try_write(&chunk).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );

    // The peer reads everything: writable() becomes ready meanwhile.
    let reader = async {
        let mut buf = vec![0u8; 8192];
        let mut pos = 0u64;
        while pos < written {
            let want = buf.len().min((written - pos) as usize);
            let n = server.read(&mut buf[..want]).await.unwrap();
            assert!(n > 0, "EOF after {pos} of {written} bytes");
            verify(pos, &buf[..n]);
            pos += n as u64;
        }
    };
    let (w, ()) = within(env.limit, "writable after the peer read", async {
        tokio::join!(client.writable(), reader)
    })
    .await;
    w.unwrap();
    let n = client.try_write(b"more").expect("try_write after writable");
    assert!(n > 0);
}

/// The client writes a request and shuts down its write half; the server reads to EOF,
/// replies and closes; the client reads the whole reply.
pub async fn half_close_then_reply(env: &Env) {
    let (_l, mut client, mut server) = connected(env).await;
    let request = b"GET / HTTP/1.0\r\n\r\n".repeat(100);
    let reply_len = 200_000u64;
    let srv = async {
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, request);
        // Writing still works after the peer's FIN.
        write_pattern(&mut server, reply_len, 10_000).await.unwrap();
        server.shutdown().await.unwrap();
    };
    let cli = async {
        client.write_all(&request).await.unwrap();
        client.shutdown().await.unwrap();
        // Shutdown is idempotent; writing after it is BrokenPipe.
        client.shutdown().await.unwrap();
        assert_eq!(
            client.write(b"x").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        read_pattern_to_end(&mut client).await.unwrap()
    };
    let ((), got) = within(env.limit, "request, half-close, reply", async {
        tokio::join!(srv, cli)
    })
    .await;
    assert_eq!(got, reply_len);
}

/// Dropping the owned write half of `into_split` sends FIN: the peer reads EOF, while the
/// read half keeps receiving what the peer sends afterwards.
pub async fn owned_write_half_drop_sends_eof(env: &Env) {
    let (_l, client, mut server) = connected(env).await;
    let (mut r, mut w) = client.into_split();
    assert_eq!(r.local_addr().unwrap(), w.local_addr().unwrap());
    assert_eq!(r.peer_addr().unwrap(), server.local_addr().unwrap());
    w.write_all(b"request").await.unwrap();
    drop(w);
    let mut got = Vec::new();
    within(
        env.limit,
        "server reads to EOF",
        server.read_to_end(&mut got),
    )
    .await
    .unwrap();
    assert_eq!(got, b"request");
    server.write_all(b"response").await.unwrap();
    server.shutdown().await.unwrap();
    let mut back = Vec::new();
    within(
        env.limit,
        "read half reads the reply",
        r.read_to_end(&mut back),
    )
    .await
    .unwrap();
    assert_eq!(back, b"response");
}

/// `reunite` refuses halves of two different streams (giving them back) and puts a stream's
/// own halves back together into a stream that still reads and writes (no FIN was sent).
pub async fn reunite(env: &Env) {
    let (_l1, c1, mut s1) = connected(env).await;
    let (_l2, c2, _s2) = connected(env).await;
    let (r1, w1) = c1.into_split();
    let (r2, w2) = c2.into_split();
    let rawtcp::ReuniteError(r1, w2) = r1.reunite(w2).expect_err("halves of different streams");
    let w2_local = w2.local_addr().unwrap();
    assert_eq!(w2_local, r2.local_addr().unwrap());
    let _c2 = w2.reunite(r2).expect("c2's own halves");
    let mut c1 = r1.reunite(w1).expect("c1's own halves");
    c1.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    within(env.limit, "server reads ping", s1.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"ping");
    // No FIN reached the server.
    assert!(
        completes_within(env.quiet, s1.read(&mut buf))
            .await
            .is_none(),
        "the server saw EOF or data after reunite"
    );
    s1.write_all(b"pong").await.unwrap();
    within(
        env.limit,
        "reunited stream reads pong",
        c1.read_exact(&mut buf),
    )
    .await
    .unwrap();
    assert_eq!(&buf, b"pong");
}

/// `OwnedWriteHalf::forget` drops the write half without FIN: the peer sees no EOF and the
/// read half still works; dropping the read half then closes the connection.
pub async fn forget_does_not_send_fin(env: &Env) {
    let (_l, client, mut server) = connected(env).await;
    let (mut r, mut w) = client.into_split();
    w.write_all(b"data").await.unwrap();
    w.forget();
    let mut buf = [0u8; 4];
    within(env.limit, "server reads data", server.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"data");
    assert!(
        completes_within(env.quiet, server.read(&mut buf))
            .await
            .is_none(),
        "the server saw EOF after forget"
    );
    server.write_all(b"still here").await.unwrap();
    let mut back = [0u8; 10];
    within(env.limit, "read half after forget", r.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(&back, b"still here");
    drop(r);
    let n = within(
        env.limit,
        "EOF once the read half is dropped",
        server.read(&mut buf),
    )
    .await
    .unwrap();
    assert_eq!(n, 0);
}

/// With zero linger, dropping a stream sends RST: the peer's read fails with
/// `ConnectionReset`.
pub async fn zero_linger_resets_peer(env: &Env) {
    let (_l, client, mut server) = connected(env).await;
    assert_eq!(client.linger().unwrap(), None);
    client.set_zero_linger().unwrap();
    assert_eq!(client.linger().unwrap(), Some(Duration::ZERO));
    drop(client);
    let mut buf = [0u8; 16];
    let e = within(
        env.limit,
        "read after the peer's RST",
        server.read(&mut buf),
    )
    .await
    .expect_err("read after RST");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
}

/// Connecting where nothing listens fails with `ConnectionRefused`, fast (a RST answers the
/// SYN, no retries); returns how long it took.
pub async fn connection_refused(env: &Env, addr: SocketAddr, fast: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    let e = within(
        env.limit,
        "connect to a closed port",
        env.client.connect(addr),
    )
    .await
    .expect_err("connect to a port nobody listens on");
    let took = start.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    assert!(took < fast, "refusal took {took:?}");
    took
}

/// `n` clients connect at once to one listener, each exchanges a few bytes with its own
/// server task and sees EOF; every connection is accepted.
pub async fn many_connections(env: &Env, n: usize) {
    let listener = env.server.bind(env.bind).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut handlers = Vec::with_capacity(n);
        for _ in 0..n {
            let (mut s, _) = listener.accept().await.expect("accept");
            handlers.push(tokio::spawn(async move {
                let mut buf = [0u8; 8];
                s.read_exact(&mut buf).await?;
                s.write_all(&buf).await?;
                s.write_all(b"bye").await?;
                io::Result::Ok(())
            }));
        }
        let mut ok = 0;
        for h in handlers {
            h.await.unwrap().expect("server side of a connection");
            ok += 1;
        }
        ok
    });
    let mut clients = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let c = env.client.clone();
        clients.push(tokio::spawn(async move {
            let mut s = c.connect(addr).await?;
            s.write_all(&i.to_be_bytes()).await?;
            let mut back = Vec::new();
            s.read_to_end(&mut back).await?;
            assert_eq!(&back[..8], &i.to_be_bytes(), "connection {i}");
            assert_eq!(&back[8..], b"bye", "connection {i}");
            io::Result::Ok(())
        }));
    }
    let done = within(env.limit, "every client", async {
        let mut done = 0;
        for (i, c) in clients.into_iter().enumerate() {
            if let Err(e) = c.await.unwrap() {
                panic!("client {i}: {e}");
            }
            done += 1;
        }
        done
    })
    .await;
    assert_eq!(done, n);
    let accepted = within(env.limit, "every accept", server).await.unwrap();
    assert_eq!(accepted, n);
    assert_eq!(env.server.stats().syn_dropped, 0);
}

/// Client and server agree on the addresses: the client's local address is the server's
/// peer address and the other way round, and the server's local address is the listener's.
pub async fn addresses_agree(env: &Env) {
    let (l, client, server) = connected(env).await;
    let la = l.local_addr().unwrap();
    assert_ne!(la.port(), 0);
    assert_eq!(la.ip(), env.bind.ip());
    assert_eq!(client.peer_addr().unwrap(), la);
    assert_eq!(server.local_addr().unwrap(), la);
    assert_eq!(client.local_addr().unwrap(), server.peer_addr().unwrap());
    assert_eq!(server.local_addr().unwrap(), client.peer_addr().unwrap());
    assert_ne!(client.local_addr().unwrap().port(), 0);
    assert_eq!(client.local_addr().unwrap().is_ipv4(), la.is_ipv4());
}

/// After a 1000-byte request and reply, `info()` counts the bytes on both ends and has an
/// RTT estimate; returns the client's srtt.
pub async fn info_after_exchange(env: &Env) -> Duration {
    let (_l, mut client, mut server) = connected(env).await;
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    for round in 0..5u64 {
        let mut req = vec![0u8; 1000];
        fill(round * 1000, &mut req);
        client.write_all(&req).await.unwrap();
        let mut got = vec![0u8; 1000];
        within(env.limit, "server reads", server.read_exact(&mut got))
            .await
            .unwrap();
        server.write_all(&got).await.unwrap();
        within(env.limit, "client reads", client.read_exact(&mut got))
            .await
            .unwrap();
        verify(round * 1000, &got);
    }
    // Let the last acknowledgments arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ci = client.info().unwrap();
    let si = server.info().unwrap();
    assert_eq!(ci.state, rawtcp::proto::State::Established);
    assert_eq!(ci.bytes_sent, 5000, "{ci:?}");
    assert_eq!(ci.bytes_acked, 5000, "{ci:?}");
    assert_eq!(ci.bytes_received, 5000, "{ci:?}");
    assert_eq!(si.bytes_received, 5000, "{si:?}");
    assert_eq!(si.bytes_sent, 5000, "{si:?}");
    assert_eq!(si.bytes_acked, 5000, "{si:?}");
    assert!(ci.segments_sent >= 6 && ci.segments_received >= 6, "{ci:?}");
    assert_eq!(ci.bytes_in_flight, 0, "{ci:?}");
    let srtt = ci.srtt.expect("client srtt measured");
    assert!(srtt > Duration::ZERO, "{ci:?}");
    assert!(si.srtt.is_some_and(|s| s > Duration::ZERO), "{si:?}");
    srtt
}

/// Dropping a stream right after writing does not lose data: the peer receives every byte,
/// then EOF.
pub async fn drop_with_written_data_delivers_then_eof(env: &Env, len: u64) {
    let (_l, mut client, mut server) = connected(env).await;
    let reader = tokio::spawn(async move { read_pattern_to_end(&mut server).await });
    within(
        env.limit,
        "write everything",
        write_pattern(&mut client, len, 64 * 1024),
    )
    .await
    .unwrap();
    drop(client);
    let got = within(env.limit, "peer reads to EOF", reader)
        .await
        .unwrap()
        .expect("read to EOF");
    assert_eq!(got, len);
}

/// Dropping the last handle of the client's stack resets its connections: the peer reads
/// `ConnectionReset`; the orphaned stream's reads, writes and readiness return errors (or
/// EOF) instead of hanging. Dropping the server's stack makes a pending `accept` fail.
pub async fn dropping_stack_resets(env: Env) {
    let Env {
        server: server_stack,
        client: client_stack,
        bind,
        limit,
        ..
    } = env;
    let listener = server_stack.bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = within(limit, "connect and accept", async {
        tokio::join!(client_stack.connect(addr), listener.accept())
    })
    .await;
    let mut client = client.unwrap();
    let (mut server, _) = accepted.unwrap();
    client.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    within(limit, "read hi", server.read_exact(&mut buf))
        .await
        .unwrap();

    drop(client_stack);
    let e = within(
        limit,
        "peer reads after the stack went",
        server.read(&mut buf),
    )
    .await
    .expect_err("read after the peer's stack went");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");

    let r = within(
        limit,
        "local read after the stack went",
        client.read(&mut buf),
    )
    .await;
    assert!(r.is_err(), "read on a stream of a dropped stack: {r:?}");
    let w = within(limit, "local write after the stack went", async {
        client.write_all(b"more").await
    })
    .await;
    assert!(w.is_err(), "write on a stream of a dropped stack: {w:?}");
    within(limit, "readable after the stack went", client.readable())
        .await
        .ok();
    within(limit, "shutdown after the stack went", client.shutdown())
        .await
        .ok();
    drop(client);

    // A task waiting in accept when the server's stack goes gets an error.
    let listener = Arc::new(listener);
    let l = listener.clone();
    let waiter = tokio::spawn(async move { l.accept().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(server_stack);
    let r = within(limit, "accept after the stack went", waiter)
        .await
        .unwrap();
    assert!(r.is_err(), "accept on a dropped stack: {r:?}");
    let e = within(limit, "server stream read after its stack went", async {
        server.read(&mut buf).await
    })
    .await;
    assert!(e.is_err(), "{e:?}");
}

/// `TcpListener` is a `futures_core::Stream` of incoming connections.
pub async fn listener_is_a_stream(env: &Env) {
    let mut listener = env.server.bind(env.bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            within(env.limit, "connect", env.client.connect(addr))
                .await
                .unwrap(),
        );
    }
    let mut peers = HashSet::new();
    for _ in 0..3 {
        let s = within(
            env.limit,
            "next connection from the stream",
            poll_fn(|cx| Pin::new(&mut listener).poll_next(cx)),
        )
        .await
        .expect("the stream never ends")
        .expect("accept");
        peers.insert(s.peer_addr().unwrap());
    }
    let want: HashSet<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    assert_eq!(peers, want);
    assert_eq!(listener.size_hint(), (0, None));
}

/// `set_ttl`/`ttl` round-trip on streams and listeners, reject 0 and 256, and the TTL set is
/// the one outgoing data segments carry (seen by the client stack's tap).
pub async fn ttl_round_trips(env: &Env, client_ttls: &Mutex<Vec<(u16, u8)>>) {
    let (l, mut client, mut server) = connected(env).await;
    assert_eq!(l.ttl().unwrap(), 64);
    l.set_ttl(99).unwrap();
    assert_eq!(l.ttl().unwrap(), 99);
    assert_eq!(
        l.set_ttl(0).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(client.ttl().unwrap(), 64);
    client.set_ttl(17).unwrap();
    assert_eq!(client.ttl().unwrap(), 17);
    for bad in [0, 256] {
        assert_eq!(
            client.set_ttl(bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput,
            "ttl {bad}"
        );
    }
    assert_eq!(client.ttl().unwrap(), 17);
    client.write_all(b"ttl").await.unwrap();
    let mut buf = [0u8; 3];
    within(env.limit, "read", server.read_exact(&mut buf))
        .await
        .unwrap();
    let port = client.local_addr().unwrap().port();
    let seen: Vec<u8> = client_ttls
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| *p == port)
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(seen, vec![17], "TTL of the client's data segments");
}

/// `set_nodelay`/`nodelay` round-trip, starting from the stack's default (off).
pub async fn nodelay_round_trips(env: &Env) {
    let (l, client, server) = connected(env).await;
    for s in [&client, &server] {
        assert!(!s.nodelay().unwrap());
        s.set_nodelay(true).unwrap();
        assert!(s.nodelay().unwrap());
        s.set_nodelay(false).unwrap();
        assert!(!s.nodelay().unwrap());
    }
    // From a socket.
    let addr = l.local_addr().unwrap();
    let sock = if addr.is_ipv4() {
        env.client.socket_v4()
    } else {
        env.client.socket_v6()
    }
    .unwrap();
    sock.set_nodelay(true).unwrap();
    assert!(sock.nodelay().unwrap());
    let c2 = within(env.limit, "connect", sock.connect(addr))
        .await
        .unwrap();
    assert!(c2.nodelay().unwrap());
}

/// `take_error` is `None` on a healthy stream and, after the peer reset it, returns
/// `ConnectionReset` once and then `None`.
pub async fn take_error_once(env: &Env) {
    let (_l, client, server) = connected(env).await;
    assert!(server.take_error().unwrap().is_none());
    client.set_zero_linger().unwrap();
    drop(client);
    within(env.limit, "readable after reset", server.readable())
        .await
        .unwrap();
    let e = server
        .take_error()
        .unwrap()
        .expect("take_error after a reset");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    assert!(
        server.take_error().unwrap().is_none(),
        "take_error returns the error once"
    );
}

/// Binding an address twice fails with `AddrInUse` (on the same stack, and on another stack
/// of the same host when `other` is given); the address is free again once the first
/// listener is dropped.
pub async fn bind_twice_addr_in_use(env: &Env, other: Option<&Stack>) {
    let l = env.server.bind(env.bind).await.unwrap();
    let addr = l.local_addr().unwrap();
    let e = env.server.bind(addr).await.expect_err("second bind");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    let s = env.server.socket_v4().unwrap();
    let e = s.bind(addr).expect_err("socket bind");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    if let Some(other) = other {
        let e = other.bind(addr).await.expect_err("bind from another stack");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    }
    drop(l);
    let again = env.server.bind(addr).await.expect("bind after drop");
    assert_eq!(again.local_addr().unwrap(), addr);
}

/// A v4 socket refuses v6 addresses (bind and connect) and a v6 socket v4 ones, with the
/// kernel's `EAFNOSUPPORT`, as `tokio::net` answers.
pub async fn family_mismatch_afnosupport(stack: &Stack) {
    let afnosupport = |e: io::Error| assert_eq!(e.raw_os_error(), Some(97), "{e}");
    let v4 = stack.socket_v4().unwrap();
    afnosupport(v4.bind("[::1]:0".parse().unwrap()).unwrap_err());
    let v4 = stack.socket_v4().unwrap();
    afnosupport(v4.connect("[::1]:80".parse().unwrap()).await.unwrap_err());
    let v6 = stack.socket_v6().unwrap();
    afnosupport(v6.bind("127.0.0.1:0".parse().unwrap()).unwrap_err());
    let v6 = stack.socket_v6().unwrap();
    afnosupport(
        v6.connect("127.0.0.1:80".parse().unwrap())
            .await
            .unwrap_err(),
    );
}

/// Dropping a listener leaves the connections it accepted alone (as with tokio): after the
/// drop the client's data still reaches the server, and the server's reply the client.
pub async fn accepted_stream_outlives_listener(env: &Env) {
    let (listener, mut client, mut server) = connected(env).await;
    client.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    within(
        env.limit,
        "read before the listener drop",
        server.read_exact(&mut buf),
    )
    .await
    .unwrap();
    // Let every acknowledgment so far go out: the connection is idle when the listener goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(listener);
    // The client speaks first after the drop, while the server has nothing to send.
    let len = 100_000u64;
    let srv = async {
        let n = read_pattern_to_end(&mut server).await.unwrap();
        server.write_all(b"done").await.unwrap();
        server.shutdown().await.unwrap();
        n
    };
    let cli = async {
        write_pattern(&mut client, len, 10_000).await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        back
    };
    let (n, back) = within(env.limit, "exchange after the listener drop", async {
        tokio::join!(srv, cli)
    })
    .await;
    assert_eq!(n, len);
    assert_eq!(back, b"done");
}
