//! What rawtcp makes of the tokio options that have a meaning in its stack, seen on the
//! packets themselves (through a stack's tap) over the simulated network under the paused
//! clock: the traffic class of `set_tos_v4`/`set_tclass_v6` is in every packet a connection
//! sends, a listener's in its SYN-ACKs and accepted connections; `set_quickack(true)` sends
//! the delayed ACK at once; `bind_device` on a datapath without interfaces is `Unsupported`.
//! (The compatibility suite, tests/compat_tokio.rs, checks the same methods' return values
//! against `tokio::net`.)

use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
use rawtcp::wire::ip::traffic_class;
use rawtcp::{Direction, Stack, TcpSocket};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// One packet a stack sent: when, from where, its flags in ladder spelling, its payload
/// length and its traffic class.
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    src: SocketAddr,
    flags: String,
    len: usize,
    class: u8,
}

type Log = Arc<Mutex<Vec<Sent>>>;

/// A server stack at `server` and a client stack at `client` on a simulated network with
/// 5 ms of latency each way; both record what they send.
fn stacks(server: IpAddr, client: IpAddr) -> (SimNetwork, Stack, Stack, Log) {
    let net = SimNetwork::new(7);
    net.set_link(
        server,
        client,
        LinkConfig::default().with_latency(Duration::from_millis(5)),
    );
    let log: Log = Arc::default();
    let build = |ip| {
        let log = log.clone();
        Stack::builder()
            .datapath(net.host(ip).unwrap())
            .tap(move |ev| {
                if ev.direction == Direction::Out {
                    log.lock().unwrap().push(Sent {
                        at: Instant::now(),
                        src: ev.src,
                        flags: ev.tcp.flags.to_string(),
                        len: ev.payload_len,
                        class: traffic_class(ev.packet).unwrap(),
                    });
                }
            })
            .build()
            .unwrap()
    };
    let (s, c) = (build(server), build(client));
    (net, s, c, log)
}

/// The traffic class set on the client socket and on the listener's socket is in every
/// packet of each side — the SYN, the SYN-ACK, data, ACKs, FINs — and the ECN bits are
/// kept clear, as Linux keeps them for TCP. A socket without one sends 0.
async fn traffic_class_on_the_wire(server: IpAddr, client: IpAddr, set: fn(&TcpSocket, u32)) {
    let (_net, s, c, log) = stacks(server, client);
    let v6 = server.is_ipv6();
    let socket = |stack: &Stack| {
        if v6 {
            stack.socket_v6().unwrap()
        } else {
            stack.socket_v4().unwrap()
        }
    };
    let ls = socket(&s);
    set(&ls, 0x28); // DSCP AF11
    ls.bind(SocketAddr::new(server, 80)).unwrap();
    let listener = ls.listen(8).unwrap();
    let cs = socket(&c);
    set(&cs, 0xbb); // DSCP EF with both ECN bits, which are cleared
    let mut client_stream = cs.connect(SocketAddr::new(server, 80)).await.unwrap();
    let (mut server_stream, _) = listener.accept().await.unwrap();
    client_stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    server_stream.read_exact(&mut buf).await.unwrap();
    server_stream.write_all(b"pong").await.unwrap();
    client_stream.read_exact(&mut buf).await.unwrap();
    drop(client_stream);
    drop(server_stream);
    // A plain connection from the same client stack: class 0.
    let mut plain = c.connect(SocketAddr::new(server, 80)).await.unwrap();
    let (_srv, _) = listener.accept().await.unwrap();
    plain.write_all(b"x").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = log.lock().unwrap().clone();
    let from_server: Vec<_> = log.iter().filter(|p| p.src.ip() == server).collect();
    let from_client: Vec<_> = log
        .iter()
        .filter(|p| p.src.ip() == client && p.src.port() != plain_port)
        .collect();
    let from_plain: Vec<_> = log.iter().filter(|p| p.src.port() == plain_port).collect();
    assert!(from_client.iter().any(|p| p.flags == "SYN"), "{log:?}");
    assert!(
        from_client.iter().any(|p| p.flags.contains("FIN")),
        "{log:?}"
    );
    assert!(from_server.iter().any(|p| p.flags == "SYN+ACK"), "{log:?}");
    assert!(from_server.iter().any(|p| p.len == 4), "{log:?}");
    for p in &from_client {
        assert_eq!(p.class, 0xb8, "{p:?}");
    }
    for p in &from_server {
        // The plain connection's server side was accepted by the same listener.
        assert_eq!(p.class, 0x28, "{p:?}");
    }
    assert!(!from_plain.is_empty());
    for p in &from_plain {
        assert_eq!(p.class, 0, "{p:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn tos_v4_on_every_packet() {
    traffic_class_on_the_wire(
        IpAddr::from([10, 0, 0, 1]),
        IpAddr::from([10, 0, 0, 2]),
        |s, v| s.set_tos_v4(v).unwrap(),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn tclass_v6_on_every_packet() {
    traffic_class_on_the_wire(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        |s, v| s.set_tclass_v6(v).unwrap(),
    )
    .await;
}

/// Sends `label` from `client` to `srv` and returns how long after the data segment arrived
/// the server's pure ACK of it left (`srv` reads it only afterwards).
async fn ack_delay(
    client: &mut rawtcp::TcpStream,
    srv: &mut rawtcp::TcpStream,
    log: &Log,
    server: IpAddr,
    label: &str,
) -> Duration {
    tokio::time::sleep(Duration::from_millis(200)).await;
    log.lock().unwrap().clear();
    client.write_all(label.as_bytes()).await.unwrap();
    // Not read yet: an application reading at once may draw a window update, which
    // carries the ACK as well.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut buf = vec![0u8; label.len()];
    srv.read_exact(&mut buf).await.unwrap();
    let log = log.lock().unwrap().clone();
    let data = log
        .iter()
        .find(|p| p.src.ip() != server && p.len > 0)
        .expect("the data segment");
    let ack = log
        .iter()
        .find(|p| p.src.ip() == server && p.len == 0 && p.flags == "ACK")
        .expect("the server's ACK");
    // The data takes 5 ms to arrive.
    ack.at - data.at - Duration::from_millis(5)
}

/// With delayed ACKs, a lone small segment is acknowledged 40 ms after it arrived; with
/// `set_quickack(true)` on the receiving stream, at once; `set_quickack(false)` brings the
/// delay back.
#[tokio::test(start_paused = true)]
async fn quickack_sends_the_ack_at_once() {
    let server: IpAddr = IpAddr::from([10, 0, 0, 1]);
    let (_net, s, c, log) = stacks(server, IpAddr::from([10, 0, 0, 2]));
    let listener = s.bind(SocketAddr::new(server, 80)).await.unwrap();
    let mut client = c.connect(SocketAddr::new(server, 80)).await.unwrap();
    let (mut srv, _) = listener.accept().await.unwrap();
    assert!(!srv.quickack().unwrap());
    assert_eq!(
        ack_delay(&mut client, &mut srv, &log, server, "delayed").await,
        Duration::from_millis(40)
    );
    srv.set_quickack(true).unwrap();
    assert!(srv.quickack().unwrap());
    assert_eq!(
        ack_delay(&mut client, &mut srv, &log, server, "quick").await,
        Duration::ZERO
    );
    assert_eq!(
        ack_delay(&mut client, &mut srv, &log, server, "quick again").await,
        Duration::ZERO,
        "it stays on"
    );
    srv.set_quickack(false).unwrap();
    assert_eq!(
        ack_delay(&mut client, &mut srv, &log, server, "delayed again").await,
        Duration::from_millis(40)
    );
}

/// An acknowledgment being delayed when quick-ACK is turned on leaves at that moment.
#[tokio::test(start_paused = true)]
async fn quickack_releases_a_delayed_ack() {
    let server: IpAddr = IpAddr::from([10, 0, 0, 1]);
    let (_net, s, c, log) = stacks(server, IpAddr::from([10, 0, 0, 2]));
    let listener = s.bind(SocketAddr::new(server, 80)).await.unwrap();
    let mut client = c.connect(SocketAddr::new(server, 80)).await.unwrap();
    let (mut srv, _) = listener.accept().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    log.lock().unwrap().clear();
    client.write_all(b"hold").await.unwrap();
    // Arrived after 5 ms; its ACK would leave at 45 ms.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let switched = Instant::now();
    srv.set_quickack(true).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut buf = [0u8; 4];
    srv.read_exact(&mut buf).await.unwrap();
    let log = log.lock().unwrap().clone();
    let ack = log
        .iter()
        .find(|p| p.src.ip() == server && p.flags == "ACK")
        .expect("the server's ACK");
    assert_eq!(ack.at, switched, "{log:?}");
}

/// The simulated network has no interfaces: binding to one makes `connect` `Unsupported`.
/// (On UDP, `lo` works and an unknown name is `ENODEV`: see tests/compat_tokio.rs.)
#[tokio::test(start_paused = true)]
async fn bind_device_without_interfaces() {
    let server: IpAddr = IpAddr::from([10, 0, 0, 1]);
    let (_net, s, c, _log) = stacks(server, IpAddr::from([10, 0, 0, 2]));
    let _listener = s.bind(SocketAddr::new(server, 80)).await.unwrap();
    let socket = c.socket_v4().unwrap();
    socket.bind_device(Some(b"lo")).unwrap();
    let e = socket
        .connect(SocketAddr::new(server, 80))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    // Without the binding, the same connect works.
    let socket = c.socket_v4().unwrap();
    socket.bind_device(Some(b"lo")).unwrap();
    socket.bind_device(None).unwrap();
    socket.connect(SocketAddr::new(server, 80)).await.unwrap();
}
