//! A transmit pass shares the wire between connections (issue 9): a connection with a
//! whole window due sends one batch's worth, then waits behind the others due in the same
//! pass. Seen on the packets (through the client stack's tap) over the simulated network.

use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
use rawtcp::{Direction, Stack};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The data segments a stack sent, in order: (source port, payload length).
type Log = Arc<Mutex<Vec<(u16, usize)>>>;

/// Bytes acknowledged by the peer are all there were: nothing in flight or queued.
async fn drained(s: &rawtcp::TcpStream) {
    for _ in 0..2_000 {
        let i = s.info().unwrap();
        if i.unacked == 0 && i.bytes_in_flight == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the connection never drained: {:?}", s.info().unwrap());
}

#[tokio::test(flavor = "current_thread")]
async fn a_window_due_does_not_hold_back_another_connection() {
    let (server_ip, client_ip): (IpAddr, IpAddr) =
        ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    let net = SimNetwork::new(3);
    net.set_link(
        server_ip,
        client_ip,
        LinkConfig::default().with_latency(Duration::from_micros(200)),
    );
    let log: Log = Arc::default();
    let tap_log = log.clone();
    let server = Stack::builder()
        .datapath(net.host(server_ip).unwrap())
        .build()
        .unwrap();
    let client = Stack::builder()
        .datapath(net.host(client_ip).unwrap())
        .tap(move |ev| {
            if ev.direction == Direction::Out && ev.payload_len > 0 {
                tap_log
                    .lock()
                    .unwrap()
                    .push((ev.src.port(), ev.payload_len));
            }
        })
        .build()
        .unwrap();
    let listener = server.bind(SocketAddr::new(server_ip, 80)).await.unwrap();
    // The server reads and discards whatever each connection sends.
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            });
        }
    });
    let to = SocketAddr::new(server_ip, 80);
    let mut bulk = client.connect(to).await.unwrap();
    let mut small = client.connect(to).await.unwrap();
    bulk.set_nodelay(true).unwrap();
    small.set_nodelay(true).unwrap();
    // Slow start opens the bulk connection's window wide over a few megabytes.
    let chunk = vec![7u8; 256 * 1024];
    for _ in 0..24 {
        bulk.write_all(&chunk).await.unwrap();
    }
    drained(&bulk).await;
    let cwnd = bulk.info().unwrap().cwnd as usize;
    let mss = bulk.info().unwrap().send_mss as usize;
    assert!(
        cwnd / mss >= 300,
        "the window must span several batches for this test: {cwnd} bytes"
    );
    log.lock().unwrap().clear();
    // No await from here to the sleep: both connections become due in one pass. The small
    // connection's first byte leaves at once (it is idle); its second waits for the
    // reactor, as the bulk connection's window does.
    small.write_all(b"1").await.unwrap();
    let n = bulk.write(&vec![8u8; cwnd]).await.unwrap();
    small.write_all(b"2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = log.lock().unwrap().clone();
    let small_port = small.local_addr().unwrap().port();
    let bulk_port = bulk.local_addr().unwrap().port();
    let singles: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, (port, _))| *port == small_port)
        .map(|(i, _)| i)
        .collect();
    let bulk_segments = log.iter().filter(|(port, _)| *port == bulk_port).count();
    assert!(
        bulk_segments >= n / mss,
        "the bulk window went out: {bulk_segments} segments for {n} bytes"
    );
    assert_eq!(singles.len(), 2, "{log:?}");
    // Before the second byte: the first byte, the bulk write's inline segments and at most
    // two turns of the bulk connection (one batch each, the first possibly shared).
    assert!(
        singles[1] <= 1 + 4 + 2 * 64,
        "the small connection's byte waited behind {} bulk segments of {bulk_segments}",
        singles[1] - 1
    );
}
