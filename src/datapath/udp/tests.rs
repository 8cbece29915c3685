use super::*;
use crate::datapath::shard_of;
use crate::wire::{emit_tcp_packet, parse_tcp_packet, TcpFlags, TcpRepr};
use std::future::poll_fn;
use std::sync::atomic::AtomicBool;
use std::task::{Wake, Waker};
use std::time::Duration;

const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const SLOT: usize = 65_535;

fn tcp(src_port: u16, dst_port: u16, seq: u32, flags: TcpFlags) -> TcpRepr {
    TcpRepr {
        src_port,
        dst_port,
        seq,
        flags,
        window: 65_535,
        ..TcpRepr::default()
    }
}

/// A checksummed IP+TCP packet from `src` to `dst`.
fn packet(src: SocketAddr, dst: SocketAddr, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; 60 + 60 + payload.len()];
    let repr = tcp(src.port(), dst.port(), seq, TcpFlags::SYN);
    let n = emit_tcp_packet(src.ip(), dst.ip(), 64, &repr, payload, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn one(packet: &[u8]) -> Batch {
    let mut b = Batch::new(1, SLOT);
    b.push(packet).unwrap();
    b
}

fn batch_of(packets: &[Vec<u8>]) -> Batch {
    let mut b = Batch::new(packets.len().max(1), SLOT);
    for p in packets {
        b.push(p).unwrap();
    }
    b
}

/// Receives until `batch` holds `want` packets or a second passes without one.
async fn recv(dp: &dyn Datapath, batch: &mut Batch, want: usize) -> usize {
    while batch.len() < want {
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            poll_fn(|cx| dp.poll_recv(cx, batch)),
        )
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("poll_recv failed: {e}"),
            Err(_) => break,
        }
    }
    batch.len()
}

fn ipv6_available() -> bool {
    match std::net::UdpSocket::bind((LO6, 0)) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("!!!!! SKIPPING IPv6 TEST: cannot bind UDP on [::1]: {e} !!!!!");
            false
        }
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A client datapath with a port reserved at `lo` and a server datapath listening there:
/// both, and the two addresses.
fn pair(lo: IpAddr) -> (UdpDatapath, UdpDatapath, SocketAddr, SocketAddr) {
    let client = UdpDatapath::new().unwrap();
    let server = UdpDatapath::new().unwrap();
    let c = client
        .bind(SocketAddr::new(lo, 0), BindKind::Connect)
        .unwrap();
    let s = server
        .bind(SocketAddr::new(lo, 0), BindKind::Listen)
        .unwrap();
    (client, server, c, s)
}

async fn exchange(lo: IpAddr) {
    let (client, server, c, s) = pair(lo);
    assert_eq!(c.ip(), lo);
    assert_eq!(s.ip(), lo);
    assert_ne!(c.port(), 0);
    assert_ne!(s.port(), 0);

    client
        .send(&batch_of(&[packet(c, s, 1000, b"hello")]))
        .unwrap();
    let mut got = Batch::new(8, SLOT);
    assert_eq!(recv(&server, &mut got, 1).await, 1);
    let (ip, repr, payload) = parse_tcp_packet(got.get(0), true).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (lo, lo));
    assert_eq!((repr.src_port, repr.dst_port), (c.port(), s.port()));
    assert_eq!(repr.seq, 1000);
    assert_eq!(payload, b"hello");
    // The packet came from the client's shared socket, not its reservation.
    let carrier = got.carrier(0).expect("a carrier address");
    assert_ne!(carrier, c);

    // The reply goes to the carrier the stack gives (the client's shared socket), not to
    // the reservation socket, which nobody reads.
    let mut reply = vec![0; 200];
    let mut r = tcp(s.port(), c.port(), 5000, TcpFlags::SYN | TcpFlags::ACK);
    r.ack = 1006;
    let n = emit_tcp_packet(lo, lo, 64, &r, b"world", &mut reply).unwrap();
    reply.truncate(n);
    let mut out = Batch::new(1, SLOT);
    out.next_slot().unwrap()[..n].copy_from_slice(&reply[..n]);
    out.commit_via(0, n, Some(carrier));
    server.send(&out).unwrap();
    let mut got = Batch::new(8, SLOT);
    assert_eq!(recv(&client, &mut got, 1).await, 1);
    let (_, repr, payload) = parse_tcp_packet(got.get(0), true).unwrap();
    assert_eq!((repr.src_port, repr.dst_port), (s.port(), c.port()));
    assert_eq!(repr.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(repr.ack, 1006);
    assert_eq!(payload, b"world");

    for dp in [&client, &server] {
        let st = dp.stats();
        assert_eq!((st.datagrams_sent, st.datagrams_received), (1, 1));
        assert_eq!((st.dropped_send, st.dropped_recv, st.malformed), (0, 0, 0));
    }
}

#[tokio::test]
async fn exchange_v4() {
    exchange(LO4).await;
}

#[tokio::test]
async fn exchange_v6() {
    if ipv6_available() {
        exchange(LO6).await;
    }
}

#[tokio::test]
async fn listen_conflicts_are_addr_in_use() {
    let a = UdpDatapath::new().unwrap();
    let b = UdpDatapath::new().unwrap();
    let s = a.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let same = |dp: &UdpDatapath, kind| dp.bind(s, kind).unwrap_err().kind();
    assert_eq!(same(&a, BindKind::Listen), io::ErrorKind::AddrInUse);
    assert_eq!(same(&b, BindKind::Listen), io::ErrorKind::AddrInUse);
    assert_eq!(same(&b, BindKind::Connect), io::ErrorKind::AddrInUse);
    let err = std::net::UdpSocket::bind(s).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    // Released by unbind.
    a.unbind(s);
    assert_eq!(b.bind(s, BindKind::Listen).unwrap(), s);
}

#[tokio::test]
async fn listen_port_zero_returns_the_kernels_port() {
    let dp = UdpDatapath::new().unwrap();
    let s = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    assert_eq!(s.ip(), LO4);
    assert_ne!(s.port(), 0);
    let registry = read(&dp.registry);
    let sock = registry.sender(LO4, s.port()).unwrap();
    assert_eq!(sock.local_addr().unwrap(), s);
}

/// The sending socket of an address is the same whether the listeners are few enough to
/// be looked through or many enough to be hashed: bound exactly, else bound to the
/// unspecified address of the port, else none.
#[tokio::test]
async fn the_sending_socket_is_found_among_few_listeners_and_many() {
    for count in [1, SCAN_LISTENERS, SCAN_LISTENERS + 3] {
        let dp = UdpDatapath::new().unwrap();
        let exact: Vec<SocketAddr> = (0..count)
            .map(|_| dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap())
            .collect();
        let any = dp
            .bind(
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
                BindKind::Listen,
            )
            .unwrap();
        let registry = read(&dp.registry);
        for s in &exact {
            let sock = registry.sender(LO4, s.port()).expect("an exact listener");
            assert_eq!(sock.local_addr().unwrap(), *s, "{count} listeners");
        }
        let sock = registry
            .sender(LO4, any.port())
            .expect("the unspecified listener");
        assert_eq!(
            sock.local_addr().unwrap().port(),
            any.port(),
            "{count} listeners"
        );
        assert!(sock.local_addr().unwrap().ip().is_unspecified());
        let free = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(
            registry.sender(LO4, free.port()).is_none(),
            "{count} listeners"
        );
    }
}

#[tokio::test]
async fn connect_reservations_are_distinct_and_released() {
    let a = UdpDatapath::new().unwrap();
    let b = UdpDatapath::new().unwrap();
    let ports: Vec<SocketAddr> = (0..8)
        .map(|i| {
            let dp = if i % 2 == 0 { &a } else { &b };
            dp.bind(SocketAddr::new(LO4, 0), BindKind::Connect).unwrap()
        })
        .collect();
    let mut distinct: Vec<u16> = ports.iter().map(|p| p.port()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len());
    let held = ports[0];
    assert_eq!(
        std::net::UdpSocket::bind(held).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    assert_eq!(
        b.bind(held, BindKind::Connect).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    a.unbind(held);
    assert_eq!(b.bind(held, BindKind::Connect).unwrap(), held);
    b.unbind(held);
    drop(std::net::UdpSocket::bind(held).unwrap());
}

#[tokio::test]
async fn a_batch_of_64_arrives() {
    let (client, server, c, s) = pair(LO4);
    let packets: Vec<Vec<u8>> = (0..64u32)
        .map(|i| packet(c, s, i, &i.to_be_bytes()))
        .collect();
    client.send(&batch_of(&packets)).unwrap();
    assert_eq!(client.stats().datagrams_sent, 64);
    let mut got = Batch::new(64, 2048);
    assert_eq!(recv(&server, &mut got, 64).await, 64);
    let mut seqs: Vec<u32> = got
        .iter()
        .map(|p| {
            let (_, repr, payload) = parse_tcp_packet(p, true).unwrap();
            assert_eq!(payload, repr.seq.to_be_bytes());
            repr.seq
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..64).collect::<Vec<u32>>());
    assert_eq!(server.stats().datagrams_received, 64);
}

#[tokio::test]
async fn malformed_packets_are_dropped_on_send() {
    let dp = UdpDatapath::new().unwrap();
    let sink = std::net::UdpSocket::bind((LO4, 0)).unwrap();
    sink.set_nonblocking(true).unwrap();
    let to = sink.local_addr().unwrap();
    let good = packet(SocketAddr::new(LO4, 40_000), to, 7, b"x");
    let mut ihl_too_small = good.clone();
    ihl_too_small[0] = 0x43;
    let mut udp_inside = good.clone();
    udp_inside[9] = 17;
    let mut long_claim = good.clone();
    long_claim[2..4].copy_from_slice(&60_000u16.to_be_bytes());
    let mut v6_not_tcp = vec![0u8; 60];
    v6_not_tcp[0] = 0x60;
    v6_not_tcp[5] = 20;
    v6_not_tcp[6] = 17;
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x45],
        good[..10].to_vec(),
        good[..30].to_vec(),
        vec![0x55; 60],
        vec![0x00; 60],
        vec![0x60; 39],
        v6_not_tcp,
        ihl_too_small,
        udp_inside,
        long_claim,
    ];
    let mut b = Batch::new(bad.len(), 128);
    for p in &bad {
        b.push(p).unwrap();
    }
    dp.send(&b).unwrap();
    let st = dp.stats();
    assert_eq!(st.malformed, bad.len() as u64);
    assert_eq!((st.datagrams_sent, st.dropped_send), (0, 0));
    let mut buf = [0u8; 256];
    assert_eq!(
        sink.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    // The good one still goes, to the plain socket standing in for a listener.
    dp.send(&one(&good)).unwrap();
    sink.set_nonblocking(false).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (n, _) = sink.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &good[..]);
}

#[tokio::test]
async fn garbage_datagrams_are_dropped_and_counted() {
    let dp = UdpDatapath::new().unwrap();
    let s = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let from = std::net::UdpSocket::bind((LO4, 0)).unwrap();
    let good = packet(from.local_addr().unwrap(), s, 3, b"ok");
    let mut wrong_length = good.clone();
    wrong_length[2..4].copy_from_slice(&1000u16.to_be_bytes());
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x45],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff; 1000],
        vec![0x60; 50],
        good[..good.len() - 30].to_vec(),
        wrong_length,
    ];
    for g in &garbage {
        from.send_to(g, s).unwrap();
    }
    from.send_to(&good, s).unwrap();
    let mut got = Batch::new(16, 2048);
    assert_eq!(recv(&dp, &mut got, 1).await, 1);
    // Datagrams arrive in order on loopback, so the garbage was read first.
    assert_eq!(got.get(0), &good[..]);
    let st = dp.stats();
    assert_eq!(st.malformed, garbage.len() as u64);
    assert_eq!(st.datagrams_received, 1);
}

/// Datagrams dropped between good ones (garbage, too large for a slot) leave no gap: the
/// good ones arrive in order, each with its carrier, however many one receive call takes.
#[tokio::test]
async fn dropped_datagrams_between_good_ones_leave_no_gap() {
    let dp = UdpDatapath::new().unwrap();
    let s = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let from = std::net::UdpSocket::bind((LO4, 0)).unwrap();
    let c = from.local_addr().unwrap();
    let goods: Vec<Vec<u8>> = (0..5u8)
        .map(|i| packet(c, s, u32::from(i), &[i; 40]))
        .collect();
    for (i, g) in goods.iter().enumerate() {
        from.send_to(g, s).unwrap();
        match i {
            0 => from.send_to(b"not an IP packet", s).unwrap(),
            2 => from.send_to(&packet(c, s, 99, &[9; 1800]), s).unwrap(),
            3 => from.send_to(&[0x45], s).unwrap(),
            _ => 0,
        };
    }
    let mut got = Batch::new(16, 1500);
    assert_eq!(recv(&dp, &mut got, goods.len()).await, goods.len());
    for (i, g) in goods.iter().enumerate() {
        assert_eq!(got.get(i), &g[..], "packet {i}");
        assert_eq!(got.carrier(i), Some(c), "carrier of packet {i}");
    }
    let st = dp.stats();
    assert_eq!((st.malformed, st.dropped_recv), (2, 1));
}

#[tokio::test]
async fn too_large_for_a_slot_is_dropped_and_counted() {
    let (client, server, c, s) = pair(LO4);
    let big = packet(c, s, 1, &[7; 3000]);
    let small = packet(c, s, 2, b"s");
    client.send(&batch_of(&[big, small.clone()])).unwrap();
    let mut got = Batch::new(4, 1500);
    assert_eq!(recv(&server, &mut got, 1).await, 1);
    assert_eq!(got.get(0), &small[..]);
    assert_eq!(server.stats().dropped_recv, 1);
    assert_eq!(server.stats().malformed, 0);
}

async fn large_packet(lo: IpAddr) {
    let (client, server, c, s) = pair(lo);
    let payload: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let p = packet(c, s, 9, &payload);
    assert!(p.len() <= client.mtu(lo));
    client.send(&one(&p)).unwrap();
    let mut got = Batch::new(2, SLOT);
    assert_eq!(recv(&server, &mut got, 1).await, 1);
    assert_eq!(got.get(0), &p[..]);
    let (_, _, data) = parse_tcp_packet(got.get(0), true).unwrap();
    assert_eq!(data, &payload[..]);

    // A packet of exactly `mtu` bytes fits one datagram.
    let headers = if lo.is_ipv4() { 40 } else { 60 };
    let p = packet(c, s, 10, &vec![3; client.mtu(lo) - headers]);
    assert_eq!(p.len(), client.mtu(lo));
    client.send(&one(&p)).unwrap();
    let mut got = Batch::new(2, SLOT);
    assert_eq!(recv(&server, &mut got, 1).await, 1);
    assert_eq!(got.get(0), &p[..]);
    assert_eq!(client.stats().dropped_send, 0);
}

#[tokio::test]
async fn large_packet_v4() {
    large_packet(LO4).await;
}

#[tokio::test]
async fn large_packet_v6() {
    if ipv6_available() {
        large_packet(LO6).await;
    }
}

#[tokio::test]
async fn pending_when_idle_and_woken_by_a_datagram() {
    let dp = UdpDatapath::new().unwrap();
    let s = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut got = Batch::new(4, 2048);
    assert!(dp.poll_recv(&mut cx, &mut got).is_pending());
    // Idle: still pending after the reactor has had a turn.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(dp.poll_recv(&mut cx, &mut got).is_pending());
    assert!(!flag.0.load(Ordering::SeqCst));

    let from = std::net::UdpSocket::bind((LO4, 0)).unwrap();
    let p = packet(from.local_addr().unwrap(), s, 1, b"wake");
    from.send_to(&p, s).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !flag.0.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "never woken");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(dp.poll_recv(&mut cx, &mut got).is_ready());
    assert_eq!(got.get(0), &p[..]);
}

/// A receive that says the datapath is drained leaves the waker registered everywhere, as
/// a `Pending` would: the next datagram wakes it without another call. One that stopped
/// with the batch full does not say so.
#[tokio::test]
async fn drained_only_when_every_socket_was_found_empty() {
    let dp = UdpDatapath::new().unwrap();
    let s = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let _other = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut got = Batch::new(2, 2048);
    assert!(dp.poll_recv(&mut cx, &mut got).is_pending());
    let from = std::net::UdpSocket::bind((LO4, 0)).unwrap();
    let f = from.local_addr().unwrap();
    async fn woken(flag: &Flag) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !flag.0.swap(false, Ordering::SeqCst) {
            assert!(tokio::time::Instant::now() < deadline, "never woken");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    from.send_to(&packet(f, s, 1, b"one"), s).unwrap();
    woken(&flag).await;
    assert!(dp.poll_recv(&mut cx, &mut got).is_ready());
    assert_eq!(got.len(), 1);
    assert!(got.take_drained(), "one datagram, taken: drained");
    assert!(!got.take_drained(), "taken once");
    // Registered: the next datagram wakes the waker.
    from.send_to(&packet(f, s, 2, b"two"), s).unwrap();
    woken(&flag).await;
    got.clear();
    for i in 3..6 {
        from.send_to(&packet(f, s, i, b"more"), s).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(dp.poll_recv(&mut cx, &mut got).is_ready());
    assert!(got.is_full());
    assert!(
        !got.take_drained(),
        "stopped with the batch full: more waits"
    );
    got.clear();
    assert!(dp.poll_recv(&mut cx, &mut got).is_ready());
    assert_eq!(got.len(), 2);
    assert!(
        !got.take_drained(),
        "full again, as it happens, with nothing left"
    );
    got.clear();
    assert!(dp.poll_recv(&mut cx, &mut got).is_pending());
}

#[tokio::test]
async fn a_busy_socket_does_not_starve_another() {
    let dp = UdpDatapath::new().unwrap();
    let busy = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let quiet = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let from = std::net::UdpSocket::bind((LO4, 0)).unwrap();
    let f = from.local_addr().unwrap();
    for i in 0..100 {
        from.send_to(&packet(f, busy, i, b"b"), busy).unwrap();
    }
    let q = packet(f, quiet, 1_000_000, b"q");
    from.send_to(&q, quiet).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // One packet per call: the quiet socket must get its turn well before the busy one
    // is drained.
    let mut found = false;
    for _ in 0..10 {
        let mut got = Batch::new(1, 2048);
        assert_eq!(recv(&dp, &mut got, 1).await, 1);
        if got.get(0) == &q[..] {
            found = true;
            break;
        }
    }
    assert!(found, "the quiet listener was starved");
}

#[tokio::test]
async fn listener_socket_sends_and_the_carrier_is_used() {
    // A packet from a listener's address leaves through the listener socket, so its UDP
    // source is the listener's address.
    let dp = UdpDatapath::new().unwrap();
    let s = dp.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let peer = std::net::UdpSocket::bind((LO4, 0)).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let p = peer.local_addr().unwrap();
    dp.send(&batch_of(&[packet(s, p, 1, b"a")])).unwrap();
    let mut buf = [0u8; 256];
    let (_, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(from, s);

    // The peer now speaks as TCP endpoint 127.0.0.1:1 from its UDP address: the packet
    // arrives with that address as its carrier, and a packet given it as carrier goes
    // there. Without a carrier, a packet goes to its inner destination: the datapath
    // learns nothing by itself.
    let inner = SocketAddr::new(LO4, 1);
    peer.send_to(&packet(inner, s, 2, b"b"), s).unwrap();
    let mut got = Batch::new(2, 2048);
    assert_eq!(recv(&dp, &mut got, 1).await, 1);
    assert_eq!(got.carrier(0), Some(p));
    let reply = packet(s, inner, 3, b"c");
    let mut out = Batch::new(1, 2048);
    out.next_slot().unwrap()[..reply.len()].copy_from_slice(&reply);
    out.commit_via(0, reply.len(), Some(p));
    dp.send(&out).unwrap();
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(from, s);
    let (_, repr, _) = parse_tcp_packet(&buf[..n], true).unwrap();
    assert_eq!((repr.seq, repr.dst_port), (3, 1));
}

#[tokio::test]
async fn mtu_and_local_ip_on_loopback() {
    let dp = UdpDatapath::new().unwrap();
    assert_eq!(dp.name(), "udp");
    assert!(dp.verify_checksums());
    assert_eq!(dp.mtu(LO4), 65_507);
    assert_eq!(dp.mtu(LO6), 65_488);
    assert_eq!(dp.local_ip_for(LO4).unwrap(), LO4);
    assert_eq!(dp.local_ip_for(LO6).unwrap(), LO6);
}

#[test]
fn new_outside_a_runtime_is_an_error() {
    assert!(UdpDatapath::new().is_err());
}

#[test]
fn parse_endpoints_never_panics_on_prefixes() {
    let v4 = packet(
        SocketAddr::new(LO4, 1234),
        SocketAddr::new(LO4, 80),
        1,
        b"data",
    );
    let v6 = packet(
        SocketAddr::new(LO6, 1234),
        SocketAddr::new(LO6, 80),
        1,
        b"data",
    );
    for p in [&v4, &v6] {
        let ep = parse_endpoints(p).unwrap();
        assert_eq!((ep.src_port, ep.dst_port, ep.len), (1234, 80, p.len()));
        for cut in 0..p.len() {
            if let Some(ep) = parse_endpoints(&p[..cut]) {
                assert!(ep.len > cut);
            }
        }
    }
}

/// Sends `sizes` (payload bytes each, with sequence numbers 0, 1, ...) from a fresh client
/// to a fresh listener and checks that every packet arrives, intact and in order; returns
/// the client's counters.
async fn send_sizes(sizes: &[usize], trains: bool) -> UdpStats {
    let (client, server, c, s) = pair(LO4);
    client.set_segmentation_offload(trains);
    let packets: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| packet(c, s, i as u32, &vec![i as u8; n]))
        .collect();
    client.send(&batch_of(&packets)).unwrap();
    let mut got = Batch::new(packets.len(), 2048);
    assert_eq!(recv(&server, &mut got, packets.len()).await, packets.len());
    for (i, p) in got.iter().enumerate() {
        let (_, repr, payload) = parse_tcp_packet(p, true).unwrap();
        assert_eq!(repr.seq, i as u32, "packet {i} in order");
        assert_eq!(payload, &vec![i as u8; sizes[i]][..], "packet {i} intact");
    }
    client.stats()
}

/// Equal-sized packets for one destination leave in trains (UDP segmentation offload) and
/// arrive as the datagrams they were, in order: 150 of 1,000 bytes (trains of at most 64),
/// a shorter one that ends a train, more of 1,000, and a larger one that cannot join them
/// but starts a train of its own.
#[tokio::test]
async fn trains_arrive_as_separate_datagrams_in_order() {
    let mut sizes = vec![1000; 150];
    sizes.push(300);
    sizes.extend([1000; 20]);
    sizes.push(1200);
    sizes.extend([1000; 5]);
    let st = send_sizes(&sizes, true).await;
    assert_eq!(st.datagrams_sent, sizes.len() as u64);
    assert_eq!(st.dropped_send, 0);
    if UdpDatapath::new().unwrap().segmentation_offload() {
        // 64 | 64 | 22 and the short one | 20 | the larger one and one shorter | 4: six
        // calls carried more than one packet.
        assert_eq!(st.trains_sent, 6, "{st:?}");
    } else {
        eprintln!("!!!!! this kernel has no UDP_SEGMENT: packets went one by one !!!!!");
    }
    let st = send_sizes(&sizes, false).await;
    assert_eq!(st.trains_sent, 0);
    assert_eq!(st.datagrams_sent, sizes.len() as u64);
}

#[test]
fn a_train_takes_equal_packets_and_one_shorter_last() {
    let mut t = gso::Train::start(1000);
    assert!(t.join(1000));
    assert!(!t.join(1001), "larger than the train's size");
    assert!(t.join(10), "a shorter one ends it");
    assert!(!t.join(10), "nothing joins after a shorter one");
    assert_eq!((t.count, t.bytes), (3, 2010));
    let mut t = gso::Train::start(1);
    for _ in 1..gso::MAX_SEGMENTS {
        assert!(t.join(1));
    }
    assert!(!t.join(1), "at most the kernel's segment count");
    let mut t = gso::Train::start(9000);
    for _ in 0..6 {
        assert!(t.join(9000));
    }
    assert!(!t.join(9000), "at most one datagram's payload");
}

/// A train whose segments exceed the route's MTU is refused by the kernel (`EMSGSIZE`),
/// where each datagram alone would be fragmented and delivered: the packets then go one by
/// one, and none is lost. Run on a thread of its own network namespace whose loopback has
/// an MTU of 1,400 (root: `unshare`; the namespace goes with the thread).
#[test]
fn a_train_refused_by_the_route_goes_one_by_one() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    });
    if !root {
        let msg = "a_train_refused_by_the_route_goes_one_by_one needs root (a network namespace)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg} (CI=true: this is a failure, not a skip)");
        }
        eprintln!("\n!!!!! SKIPPED: {msg} !!!!!\n");
        return;
    }
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        // A child process starts in the namespace of the thread that spawns it.
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up", "mtu", "1400"])
            .status()
            .expect("ip");
        assert!(up.success());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // 1,400-byte payloads: 1,440-byte packets, above the loopback's 1,400.
            let sizes = vec![1400; 10];
            let st = send_sizes(&sizes, true).await;
            assert_eq!(st.datagrams_sent, 10, "{st:?}");
            assert_eq!(st.dropped_send, 0, "{st:?}");
            assert_eq!(st.trains_sent, 0, "the train was refused: {st:?}");
            // Trains stay on for what fits.
            let st = send_sizes(&[1000; 10], true).await;
            assert_eq!((st.datagrams_sent, st.trains_sent), (10, 1), "{st:?}");
        });
    })
    .join()
    .unwrap();
}

/// Two datapaths split from one share a listener address as one `SO_REUSEPORT` group, and the
/// kernel hands every datagram to the one of the shard its inner TCP ports steer to
/// ([`shard_of`]), over IPv4 and IPv6; trains carry one connection each.
#[tokio::test]
async fn a_sharded_listener_steers_by_tcp_ports() {
    let origin = UdpDatapath::new().unwrap();
    let shards: Vec<_> = (0..2).map(|k| origin.shard(k, 2).unwrap()).collect();
    let addr = shards[0]
        .bind(SocketAddr::new(LO4, 0), BindKind::Listen)
        .unwrap();
    assert_eq!(
        shards[1].bind(addr, BindKind::Listen).unwrap(),
        addr,
        "the second shard joins the first one's address"
    );
    assert_eq!(
        shards[1].bind(addr, BindKind::Listen).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut expect = [0usize; 2];
    for src_port in 40_000..40_040u16 {
        let p = packet(
            SocketAddr::new(LO4, src_port),
            addr,
            u32::from(src_port),
            b"x",
        );
        peer.send_to(&p, addr).unwrap();
        expect[shard_of(src_port, addr.port(), 2)] += 1;
    }
    assert!(expect[0] > 0 && expect[1] > 0);
    for (k, dp) in shards.iter().enumerate() {
        let mut batch = Batch::new(64, SLOT);
        assert_eq!(recv(&**dp, &mut batch, expect[k]).await, expect[k]);
        for p in batch.iter() {
            let view = PacketView::new(p).unwrap();
            let tcp = view.tcp().unwrap();
            assert_eq!(shard_of(tcp.src_port(), tcp.dst_port(), 2), k);
        }
    }
    // Let go by one shard, the address stays the group's until the other lets go too.
    shards[0].unbind(addr);
    assert!(std::net::UdpSocket::bind(addr).is_err());
    shards[1].unbind(addr);
    drop(std::net::UdpSocket::bind(addr).expect("the address is free again"));

    if std::net::UdpSocket::bind("[::1]:0").is_ok() {
        let addr = shards[0]
            .bind(SocketAddr::new(LO6, 0), BindKind::Listen)
            .unwrap();
        shards[1].bind(addr, BindKind::Listen).unwrap();
        let peer = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let mut expect = [0usize; 2];
        for src_port in 50_000..50_020u16 {
            let p = packet(SocketAddr::new(LO6, src_port), addr, 1, b"y");
            peer.send_to(&p, addr).unwrap();
            expect[shard_of(src_port, addr.port(), 2)] += 1;
        }
        for (k, dp) in shards.iter().enumerate() {
            let mut batch = Batch::new(64, SLOT);
            assert_eq!(recv(&**dp, &mut batch, expect[k]).await, expect[k]);
        }
    }
}

/// A train gathers only packets of one connection (a sharded receiver steers a whole train
/// by its first packet).
#[tokio::test]
async fn a_train_carries_one_connection() {
    let dp = UdpDatapath::new().unwrap();
    if !dp.segmentation_offload() {
        eprintln!("!!!!!!!! no UDP_SEGMENT on this kernel: SKIPPING a_train_carries_one_connection !!!!!!!!");
        return;
    }
    let rx = UdpDatapath::new().unwrap();
    let to = rx.bind(SocketAddr::new(LO4, 0), BindKind::Listen).unwrap();
    let payload = [7u8; 1000];
    let packets: Vec<_> = (0..8u16)
        .map(|i| {
            packet(
                SocketAddr::new(LO4, 30_000 + i % 2),
                to,
                u32::from(i),
                &payload,
            )
        })
        .collect();
    dp.send(&batch_of(&packets)).unwrap();
    assert_eq!(
        dp.stats().trains_sent,
        0,
        "alternating connections never form a train"
    );
    let mut batch = Batch::new(16, SLOT);
    assert_eq!(recv(&rx, &mut batch, 8).await, 8);
}

/// The datapath reports what it does: batches of 64 each way (trains only while on), taking
/// what is there without readiness, shards; and nothing of that for a datapath that says
/// nothing (the trait's default).
#[tokio::test]
async fn capabilities_follow_the_settings() {
    let dp = UdpDatapath::new().unwrap();
    let caps = dp.capabilities();
    assert_eq!(caps.receive_batch, 64);
    assert!(caps.shards && caps.receive_now && caps.verify_checksums);
    assert!(!caps.partial_checksums);
    dp.set_segmentation_offload(false);
    assert_eq!(dp.capabilities().send_batch, 1);
    if dp.set_segmentation_offload(true) {
        assert_eq!(dp.capabilities().send_batch, 64);
    }

    struct Plain;
    impl Datapath for Plain {
        fn name(&self) -> &'static str {
            "plain"
        }
        fn mtu(&self, _: IpAddr) -> usize {
            1500
        }
        fn local_ip_for(&self, _: IpAddr) -> io::Result<IpAddr> {
            Ok(LO4)
        }
        fn bind(&self, local: SocketAddr, _: BindKind) -> io::Result<SocketAddr> {
            Ok(local)
        }
        fn unbind(&self, _: SocketAddr) {}
        fn poll_recv(&self, _: &mut Context<'_>, _: &mut Batch) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn send(&self, batch: &Batch) -> io::Result<usize> {
            Ok(batch.len())
        }
        fn verify_checksums(&self) -> bool {
            false
        }
    }
    let plain = Plain.capabilities();
    assert_eq!((plain.receive_batch, plain.send_batch), (1, 1));
    assert!(!plain.shards && !plain.receive_now && !plain.verify_checksums);
    assert_eq!(
        Plain.shard(0, 2).err().map(|e| e.kind()),
        Some(io::ErrorKind::Unsupported)
    );
}

/// A drain that last found a lone datagram offers room for a few (see `mmsg::Offer`); a
/// burst waiting behind them is still taken by the same poll, whole and in order, and the
/// next drain offers room for all.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn after_a_lone_datagram_a_burst_arrives_in_one_poll_in_order() {
    let (client, server, c, s) = pair(LO4);
    client.send(&one(&packet(c, s, 0, b"x"))).unwrap();
    let mut got = Batch::new(64, 2048);
    assert_eq!(recv(&server, &mut got, 1).await, 1);
    // The socket it came on (the listener's) offers a few next.
    let socket = server
        .offers
        .iter()
        .position(|o| o.first() == 4)
        .expect("one came: a few are offered next");
    let packets: Vec<Vec<u8>> = (1..=64u32)
        .map(|i| packet(c, s, i, &i.to_be_bytes()))
        .collect();
    client.send(&batch_of(&packets)).unwrap();
    // Let the runtime's driver see the socket readable, then poll once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut burst = Batch::new(64, 2048);
    let r = poll_fn(|cx| Poll::Ready(server.poll_recv(cx, &mut burst))).await;
    assert!(matches!(r, Poll::Ready(Ok(()))));
    assert_eq!(burst.len(), 64, "the whole burst in one poll");
    let seqs: Vec<u32> = burst
        .iter()
        .map(|p| parse_tcp_packet(p, true).unwrap().1.seq)
        .collect();
    assert_eq!(seqs, (1..=64).collect::<Vec<u32>>(), "in the order sent");
    assert_eq!(
        server.offers[socket].first(),
        64,
        "many came: all is offered next"
    );
}

/// `recv_now` asks only sockets that have delivered before (each ask is a system call
/// whether or not anything is there): a listener's first datagram is left to the readiness
/// path, which marks it, and from then on `recv_now` takes what it holds. A listener that
/// goes moves the others' places: their marks are forgotten.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn recv_now_asks_only_sockets_that_delivered() {
    /// `recv_now` into `batch` until it takes something or two seconds pass.
    async fn now_within(dp: &UdpDatapath, batch: &mut Batch) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if dp.recv_now(batch) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
    let (client, server, c, s) = pair(LO4);
    client.send(&one(&packet(c, s, 1, b"a"))).unwrap();
    let mut got = Batch::new(8, 2048);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !server.recv_now(&mut got),
        "the listener never delivered: not asked"
    );
    // It was there all along: asked, it is taken.
    let marks = server.heard.swap(u64::MAX, Ordering::Relaxed);
    assert!(now_within(&server, &mut got).await, "waiting, only skipped");
    server.heard.store(marks, Ordering::Relaxed);
    client.send(&one(&packet(c, s, 2, b"b"))).unwrap();
    let mut ready = Batch::new(8, 2048);
    assert_eq!(
        recv(&server, &mut ready, 1).await,
        1,
        "the readiness path takes it"
    );
    client.send(&one(&packet(c, s, 3, b"c"))).unwrap();
    let mut now = Batch::new(8, 2048);
    assert!(now_within(&server, &mut now).await, "heard before: asked");
    assert_eq!(parse_tcp_packet(now.get(0), true).unwrap().1.seq, 3);
    // A listener that goes forgets the marks of those after the shared sockets.
    let other = server
        .bind(SocketAddr::new(LO4, 0), BindKind::Listen)
        .unwrap();
    server.unbind(other);
    client.send(&one(&packet(c, s, 4, b"d"))).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut after = Batch::new(8, 2048);
    assert!(!server.recv_now(&mut after), "marks forgotten");
    assert_eq!(recv(&server, &mut after, 1).await, 1);
}

/// The marks of `recv_now` by place: the shared sockets come first (one without IPv6), the
/// listeners after them; forgetting the listeners keeps the shared sockets' marks, and
/// places past the 64th always count as heard.
#[test]
fn heard_marks_keep_the_shared_sockets_and_count_places_past_64() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in = rt.enter();
    let mut dp = UdpDatapath::new().unwrap();
    dp.v6 = None;
    for place in 0..3 {
        dp.mark_heard(place);
    }
    assert!(dp.was_heard(0) && dp.was_heard(1) && dp.was_heard(2));
    assert!(!dp.was_heard(3));
    dp.forget_heard_listeners();
    assert!(dp.was_heard(0), "the shared IPv4 socket keeps its mark");
    assert!(
        !dp.was_heard(1),
        "without IPv6 the listeners start at place 1"
    );
    assert!(!dp.was_heard(2));
    assert!(
        dp.was_heard(64) && dp.was_heard(1_000),
        "past the mask: always asked"
    );
    dp.mark_heard(70); // nothing to mark, and no panic
}
