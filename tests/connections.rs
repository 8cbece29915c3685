//! `Stack::connections()`: every connection's addresses, state and statistics, and every
//! listener's queues, over the simulated network in virtual time.

use rawtcp::datapath::sim::SimNetwork;
use rawtcp::proto::State;
use rawtcp::{Holder, Stack};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(start_paused = true)]
async fn the_table_shows_connections_listeners_and_queues() {
    let net = SimNetwork::new(1);
    let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
    let server = Stack::builder()
        .datapath(net.host(a).unwrap())
        .build()
        .unwrap();
    let client = Stack::builder()
        .datapath(net.host(b).unwrap())
        .build()
        .unwrap();
    let addr = SocketAddr::new(a, 80);
    let listener = server.bind(addr).await.unwrap();
    assert_eq!(server.connections().connections.len(), 0);

    let mut c1 = client.connect(addr).await.unwrap();
    let (mut s1, _) = listener.accept().await.unwrap();
    let _c2 = client.connect(addr).await.unwrap(); // left in the accept queue
    c1.write_all(&[9u8; 3000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let t = server.connections();
    assert_eq!(t.listeners.len(), 1);
    let l = &t.listeners[0];
    assert_eq!(
        (l.local, l.accept_queue, l.syn_queue, l.backlog),
        (addr, 1, 0, 1024)
    );
    assert_eq!(t.connections.len(), 2);
    let accepted = t
        .connections
        .iter()
        .find(|c| c.remote == c1.local_addr().unwrap())
        .unwrap();
    assert_eq!(accepted.state, State::Established);
    assert_eq!(accepted.holder, Holder::Application);
    assert_eq!(accepted.recv_queue, 3000, "received, not yet read");
    assert_eq!(accepted.info.bytes_received, 3000);
    let pending = t
        .connections
        .iter()
        .find(|c| c.remote != c1.local_addr().unwrap())
        .unwrap();
    assert_eq!(pending.holder, Holder::Listener(addr));

    let mut buf = [0u8; 3000];
    s1.read_exact(&mut buf).await.unwrap();
    assert_eq!(server.connections().connections[0].recv_queue, 0);

    // The client closes: its side goes to TIME-WAIT, held by no application.
    c1.shutdown().await.unwrap();
    s1.shutdown().await.unwrap();
    let mut rest = Vec::new();
    c1.read_to_end(&mut rest).await.unwrap();
    drop(c1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = client.connections();
    let closed = t
        .connections
        .iter()
        .find(|c| c.state == State::TimeWait)
        .unwrap();
    assert_eq!(closed.holder, Holder::Orphan);

    let text = server.connections().to_string();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("State       Recv-Q  Send-Q  Local Address:Port"));
    assert!(
        text.contains("LISTEN      1       1024    10.0.0.1:80"),
        "{text}"
    );
    assert!(text.contains("cubic wscale:"), "{text}");
    // The accepted side received data whose timestamps measured its round trip.
    assert!(text.contains("rcv_rtt:"), "{text}");
    assert!(text.contains("(not yet accepted)"), "{text}");
}
