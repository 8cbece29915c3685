//! The endpoint's decisions seen through whole stacks over the simulated network, under a
//! paused clock: a SYN reopening a connection in TIME-WAIT (RFC 6191) and a full accept
//! queue holding handshakes back until `accept` makes room. `tests/engine_endpoint.rs`
//! scripts the same rules segment by segment; these check the reactor carries them out.

use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
use rawtcp::proto::Config;
use rawtcp::{Stack, TcpStream};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stacks(net: &SimNetwork) -> (Stack, Stack) {
    let server_ip = "10.0.0.1".parse().unwrap();
    let client_ip = "10.0.0.2".parse().unwrap();
    net.set_link(
        server_ip,
        client_ip,
        LinkConfig::default().with_latency(Duration::from_millis(1)),
    );
    let build = |ip| {
        Stack::builder()
            .tcp_config(Config::default())
            .datapath(net.host(ip).unwrap())
            .build()
            .unwrap()
    };
    (build(server_ip), build(client_ip))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Connects from `local` (bound with `SO_REUSEADDR`) to `remote`.
async fn connect_from(stack: &Stack, local: &str, remote: &str) -> std::io::Result<TcpStream> {
    let sock = stack.socket_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(addr(local))?;
    sock.connect(addr(remote)).await
}

/// The server closes first, so its side lingers in TIME-WAIT; the client reconnects from
/// the same port at once. Its SYN is newer (timestamps, and an ISN the RFC 6528 clock moved
/// on), so the server's endpoint reopens the 4-tuple: the handshake takes one round trip,
/// not the second a refused SYN and its retransmission would.
#[tokio::test(start_paused = true)]
async fn a_newer_syn_reopens_time_wait_at_once() {
    let net = SimNetwork::new(11);
    let (server, client) = stacks(&net);
    let listener = server.bind("10.0.0.1:80").await.unwrap();
    let mut c = connect_from(&client, "10.0.0.2:5555", "10.0.0.1:80")
        .await
        .unwrap();
    let (s, _) = listener.accept().await.unwrap();
    drop(s); // the server's FIN first: it ends in TIME-WAIT
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf).await.unwrap(), 0, "EOF");
    drop(c);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let states: Vec<_> = server
        .connections()
        .connections
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(states, [rawtcp::proto::State::TimeWait], "{states:?}");

    let start = tokio::time::Instant::now();
    let mut again = tokio::time::timeout(
        Duration::from_secs(5),
        connect_from(&client, "10.0.0.2:5555", "10.0.0.1:80"),
    )
    .await
    .expect("connect in time")
    .unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(100), "took {took:?}");
    let (mut s, peer) = listener.accept().await.unwrap();
    assert_eq!(peer, addr("10.0.0.2:5555"));
    again.write_all(b"ping").await.unwrap();
    s.read_exact(&mut buf[..4]).await.unwrap();
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(server.stats().resets_sent, 0);
}

/// A listener with a backlog of 1 that nobody accepts from: further handshakes are held
/// back (SYNs dropped, or completing ACKs dropped with the connection left in
/// SYN-RECEIVED), never refused, and every one completes once `accept` makes room.
#[tokio::test(start_paused = true)]
async fn a_full_accept_queue_holds_handshakes_back() {
    let net = SimNetwork::new(12);
    let (server, client) = stacks(&net);
    let sock = server.socket_v4().unwrap();
    sock.bind(addr("10.0.0.1:80")).unwrap();
    let listener = sock.listen(1).unwrap();
    let mut clients = Vec::new();
    for port in 6000..6004u16 {
        let client = client.clone();
        clients.push(tokio::spawn(async move {
            let local = format!("10.0.0.2:{port}");
            let mut c = connect_from(&client, &local, "10.0.0.1:80").await?;
            c.write_all(&port.to_be_bytes()).await?;
            let mut back = [0u8; 2];
            c.read_exact(&mut back).await?;
            assert_eq!(back, port.to_be_bytes());
            std::io::Result::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = server.stats();
    assert!(
        st.syn_dropped + st.listen_overflows > 0,
        "nothing held back: {st:?}"
    );
    assert_eq!(st.resets_sent, 0, "held back, not refused");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (mut s, peer) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
            .await
            .expect("accepted in time")
            .unwrap();
        let mut port = [0u8; 2];
        s.read_exact(&mut port).await.unwrap();
        assert_eq!(u16::from_be_bytes(port), peer.port());
        s.write_all(&port).await.unwrap();
        seen.push(peer.port());
        tokio::spawn(async move {
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
    }
    for c in clients {
        c.await.unwrap().unwrap();
    }
    seen.sort_unstable();
    assert_eq!(seen, [6000, 6001, 6002, 6003]);
}

/// A listener answering every SYN with a cookie (`SynCookieMode::Always`) keeps no
/// SYN-RECEIVED state, yet every client connects, negotiates its options through the
/// timestamp, and echoes data; the stack's counters say what happened. Clients with and
/// without timestamps.
#[tokio::test(start_paused = true)]
async fn cookie_handshakes_carry_whole_connections() {
    let net = SimNetwork::new(12);
    let (server, client) = stacks(&net);
    server.set_syn_cookies(rawtcp::SynCookieMode::Always);
    let plain_client = Stack::builder()
        .tcp_config(Config {
            timestamps: false,
            ..Config::default()
        })
        .datapath(net.host("10.0.0.3".parse().unwrap()).unwrap())
        .build()
        .unwrap();
    let listener = server.bind("10.0.0.1:80").await.unwrap();
    let echo = tokio::spawn(async move {
        for _ in 0..20 {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
            });
        }
    });
    let data: Vec<u8> = (0..300_000).map(|i| (i % 253) as u8).collect();
    for i in 0..20 {
        let stack = if i % 2 == 0 { &client } else { &plain_client };
        let mut c = stack.connect(addr("10.0.0.1:80")).await.unwrap();
        let info = c.info().unwrap();
        assert_eq!(info.sack, i % 2 == 0, "SACK only with timestamps");
        assert_eq!(
            info.send_wscale > 0,
            i % 2 == 0,
            "scaling only with timestamps"
        );
        let (mut r, mut w) = c.split();
        let mut back = vec![0u8; data.len()];
        tokio::join!(
            async {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            },
            async { r.read_exact(&mut back).await.unwrap() }
        );
        assert!(back == data, "echo {i} differs");
    }
    echo.await.unwrap();
    let stats = server.stats();
    assert_eq!(stats.cookies_sent, 20);
    assert_eq!(stats.cookies_accepted, 20);
    assert_eq!(stats.cookies_rejected, 0);
    assert_eq!(stats.syn_dropped, 0);
}

/// A stack whose orphan limit is reached resets the connections let go past it (the peer
/// reads `ConnectionReset`) instead of closing them, and counts them; those within the limit
/// close gracefully (the peer reads end of stream).
#[tokio::test(start_paused = true)]
async fn orphans_past_the_limit_are_reset() {
    let net = SimNetwork::new(13);
    let (server, client) = stacks(&net);
    server.set_limits(rawtcp::Limits {
        max_orphans: 2,
        ..rawtcp::Limits::default()
    });
    let listener = server.bind("10.0.0.1:80").await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(client.connect(addr("10.0.0.1:80")).await.unwrap());
        let (s, _) = listener.accept().await.unwrap();
        // Let go while the client keeps its side open: the orphan waits in FIN-WAIT-2.
        drop(s);
    }
    let mut eof = 0;
    let mut reset = 0;
    for mut c in clients {
        let mut buf = [0u8; 8];
        match c.read(&mut buf).await {
            Ok(0) => eof += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => reset += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((eof, reset), (2, 3));
    let stats = server.stats();
    assert_eq!(stats.orphan_overflows, 3);
    assert_eq!(
        stats.orphans, 2,
        "the two within the limit are still closing"
    );
}

/// Peers that send to applications that do not read cannot push the stack's buffer memory
/// far past `max_buffer_memory`: once it is reached, data is stored only in the room already
/// allocated and the rest is dropped for the peers to send again. Nothing is lost: once the
/// applications read, every byte arrives, in order.
#[tokio::test(start_paused = true)]
async fn buffer_memory_is_bounded_and_nothing_is_lost() {
    const LIMIT: usize = 512 << 10;
    const EACH: usize = 2 << 20;
    let net = SimNetwork::new(14);
    let server = Stack::builder()
        .tcp_config(Config::default())
        .datapath(net.host("10.0.0.1".parse().unwrap()).unwrap())
        .max_buffer_memory(LIMIT)
        .build()
        .unwrap();
    let client = Stack::builder()
        .tcp_config(Config::default())
        .datapath(net.host("10.0.0.2".parse().unwrap()).unwrap())
        .build()
        .unwrap();
    let listener = server.bind("10.0.0.1:80").await.unwrap();
    let mut accepted = Vec::new();
    let mut writers = Vec::new();
    for i in 0..8u8 {
        let mut c = client.connect(addr("10.0.0.1:80")).await.unwrap();
        accepted.push(listener.accept().await.unwrap().0);
        writers.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..EACH).map(|j| (j as u8).wrapping_add(i)).collect();
            c.write_all(&data).await.unwrap();
            c.shutdown().await.unwrap();
            c
        }));
    }
    // Nobody reads for a while: the peers fill what they may.
    let mut peak = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        peak = peak.max(server.stats().buffer_memory);
    }
    let stats = server.stats();
    assert!(stats.memory_pressure >= 1, "{stats:?}");
    // One step of a buffer's growth may overshoot before the pressure is seen.
    assert!(
        peak <= 2 * LIMIT,
        "peak {peak} B against a limit of {LIMIT} B"
    );
    // Then everything is read, byte for byte.
    for (i, mut s) in accepted.into_iter().enumerate() {
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), EACH);
        assert!(
            got.iter()
                .enumerate()
                .all(|(j, b)| *b == (j as u8).wrapping_add(i as u8)),
            "stream {i} differs"
        );
    }
    for w in writers {
        w.await.unwrap();
    }
}
