//! Runtime behaviours found in review, over the simulated network under a paused clock.

use rawtcp::datapath::sim::SimNetwork;
use rawtcp::proto::Config;
use rawtcp::Stack;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stacks(net: &SimNetwork, cfg: Config) -> (Stack, Stack) {
    let server = Stack::builder()
        .tcp_config(cfg.clone())
        .datapath(net.host("10.0.0.1".parse().unwrap()).unwrap())
        .build()
        .unwrap();
    let client = Stack::builder()
        .tcp_config(cfg)
        .datapath(net.host("10.0.0.2".parse().unwrap()).unwrap())
        .build()
        .unwrap();
    (server, client)
}

/// A server restarts its listener while a connection it accepted is still open: like
/// tokio's `TcpListener::bind` (SO_REUSEADDR), the address can be bound again at once.
#[tokio::test(start_paused = true)]
async fn listener_rebinds_while_an_accepted_connection_lives() {
    let net = SimNetwork::new(3);
    let (server, client) = stacks(&net, Config::default());
    let listener = server.bind("10.0.0.1:80").await.unwrap();
    let mut c = client.connect("10.0.0.1:80").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    drop(listener);
    let listener = server.bind("10.0.0.1:80").await.expect("rebind");
    // The old connection still works, and the new listener accepts.
    c.write_all(b"old").await.unwrap();
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"old");
    let _c2 = client.connect("10.0.0.1:80").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("accept")
        .unwrap();
}

/// A dropped stream whose FIN was acknowledged does not wait forever for a peer that never
/// closes: it is forgotten after `fin_wait2_timeout`, and its port with it.
#[tokio::test(start_paused = true)]
async fn dropped_stream_leaves_fin_wait_2() {
    let net = SimNetwork::new(4);
    let cfg = Config {
        fin_wait2_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    let (server, client) = stacks(&net, cfg);
    let listener = server.bind("10.0.0.1:80").await.unwrap();
    let c = client.connect("10.0.0.1:80").await.unwrap();
    let (_s, _) = listener.accept().await.unwrap(); // never closes
    assert_eq!(client.stats().connections, 1);
    drop(c);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(client.stats().connections, 1, "still in FIN-WAIT-2");
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(client.stats().connections, 0, "forgotten after the timeout");
}

/// A connection reset while the application still holds it does not black-hole its
/// 4-tuple: a new SYN from the same port is accepted.
#[tokio::test(start_paused = true)]
async fn held_closed_connection_does_not_block_its_tuple() {
    let net = SimNetwork::new(5);
    let (server, client) = stacks(&net, Config::default());
    let listener = server.bind("10.0.0.1:80").await.unwrap();
    let sock = client.socket_v4().unwrap();
    sock.bind("10.0.0.2:5555".parse().unwrap()).unwrap();
    let c = sock.connect("10.0.0.1:80".parse().unwrap()).await.unwrap();
    let (mut held, _) = listener.accept().await.unwrap();
    c.set_zero_linger().unwrap();
    drop(c);
    let mut buf = [0u8; 1];
    assert!(held.read(&mut buf).await.is_err(), "reset");
    // Same tuple again while `held` is still alive.
    let sock = client.socket_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind("10.0.0.2:5555".parse().unwrap()).unwrap();
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        sock.connect("10.0.0.1:80".parse().unwrap()),
    )
    .await
    .expect("connect in time");
    assert!(again.is_ok(), "{again:?}");
}
