use super::*;
use crate::datapath::ports::EPHEMERAL_FIRST;
use crate::wire::{emit_tcp_packet, parse_tcp_packet, TcpRepr};
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
const MS: Duration = Duration::from_millis(1);

/// A TCP packet from `src` to `dst` of `len` bytes in all whose payload starts with `id`.
fn packet(src: IpAddr, dst: IpAddr, id: u32, len: usize) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq: id,
        ..TcpRepr::default()
    };
    let header = if src.is_ipv4() { 20 } else { 40 } + 20;
    let mut payload = vec![0xa5; len.saturating_sub(header).max(4)];
    payload[..4].copy_from_slice(&id.to_be_bytes());
    let mut buf = vec![0; header + payload.len()];
    let n = emit_tcp_packet(src, dst, 64, &tcp, &payload, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn id_of(packet: &[u8]) -> u32 {
    let header = if packet[0] >> 4 == 4 { 20 } else { 40 } + 20;
    u32::from_be_bytes(packet[header..header + 4].try_into().unwrap())
}

fn send_all(dp: &SimDatapath, packets: &[Vec<u8>]) {
    let mut batch = Batch::new(64, 65535);
    for chunk in packets.chunks(64) {
        batch.clear();
        for p in chunk {
            batch.push(p).unwrap();
        }
        dp.send(&batch).unwrap();
    }
}

/// Everything `dp` receives until `deadline`, with its arrival time since `start`.
async fn recv_until(
    dp: &SimDatapath,
    start: Instant,
    deadline: Instant,
) -> Vec<(Duration, Vec<u8>)> {
    let mut got = Vec::new();
    let mut batch = Batch::new(16, 65535);
    loop {
        batch.clear();
        let recv = poll_fn(|cx| dp.poll_recv(cx, &mut batch));
        match tokio::time::timeout_at(deadline, recv).await {
            Ok(r) => r.unwrap(),
            Err(_) => return got,
        }
        let at = start.elapsed();
        got.extend(batch.iter().map(|p| (at, p.to_vec())));
    }
}

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn two_hosts(seed: u64, config: LinkConfig) -> (SimNetwork, SimDatapath, SimDatapath) {
    let net = SimNetwork::new(seed);
    let a = net.host(A).unwrap();
    let b = net.host(B).unwrap();
    net.set_link(A, B, config);
    (net, a, b)
}

#[tokio::test(start_paused = true)]
async fn delivers_after_exactly_the_latency() {
    let (net, a, b) = two_hosts(1, LinkConfig::default().with_latency(10 * MS));
    let start = Instant::now();
    send_all(&a, &[packet(A, B, 1, 100)]);
    let mut batch = Batch::new(4, 1500);
    let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let w = Waker::from(waker.clone());
    let mut cx = Context::from_waker(&w);
    assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
    tokio::time::advance(10 * MS - Duration::from_nanos(1)).await;
    assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert!(b.poll_recv(&mut cx, &mut batch).is_ready());
    assert_eq!(start.elapsed(), 10 * MS);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch.get(0), packet(A, B, 1, 100));
    // And awaiting it, the clock jumps exactly to the arrival.
    let start = Instant::now();
    send_all(&b, &[packet(B, A, 2, 100)]);
    let got = recv_until(&a, start, start + Duration::from_secs(1)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 10 * MS);
    let s = net.stats();
    assert_eq!((s.sent, s.delivered, s.in_flight), (2, 2, 0));
    assert_eq!(s.bytes_sent, 200);
    assert_eq!(s.bytes_delivered, 200);
}

#[tokio::test(start_paused = true)]
async fn keeps_fifo_order_without_jitter() {
    let (_net, a, b) = two_hosts(2, LinkConfig::default().with_latency(5 * MS));
    let start = Instant::now();
    let packets: Vec<_> = (0..200).map(|i| packet(A, B, i, 60)).collect();
    send_all(&a, &packets[..100]);
    tokio::time::advance(Duration::from_micros(1)).await;
    send_all(&a, &packets[100..]);
    let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
    let ids: Vec<u32> = got.iter().map(|(_, p)| id_of(p)).collect();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn jitter_reorders() {
    let cfg = LinkConfig::default()
        .with_latency(10 * MS)
        .with_jitter(5 * MS);
    let (net, a, b) = two_hosts(3, cfg);
    let start = Instant::now();
    for i in 0..200 {
        send_all(&a, &[packet(A, B, i, 60)]);
        tokio::time::advance(Duration::from_micros(100)).await;
    }
    let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
    let mut ids: Vec<u32> = got.iter().map(|(_, p)| id_of(p)).collect();
    assert!(ids.windows(2).any(|w| w[0] > w[1]), "no reordering");
    assert!(got.iter().all(|(at, _)| *at >= 10 * MS && *at <= 36 * MS));
    ids.sort_unstable();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    assert_eq!(net.stats().delivered, 200);
}

#[tokio::test(start_paused = true)]
async fn reorder_delays_some_packets() {
    let cfg = LinkConfig::default()
        .with_latency(MS)
        .with_reorder(0.2, 50 * MS);
    let (_net, a, b) = two_hosts(4, cfg);
    let start = Instant::now();
    let packets: Vec<_> = (0..1000).map(|i| packet(A, B, i, 60)).collect();
    send_all(&a, &packets);
    let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
    assert_eq!(got.len(), 1000);
    let late = got.iter().filter(|(at, _)| *at == 51 * MS).count();
    let on_time = got.iter().filter(|(at, _)| *at == MS).count();
    assert_eq!(late + on_time, 1000);
    assert!((150..=250).contains(&late), "{late} reordered");
}

async fn lossy_run(seed: u64) -> (usize, SimStats) {
    let (net, a, b) = two_hosts(seed, LinkConfig::lossy(0.1).with_latency(MS));
    let start = Instant::now();
    let packets: Vec<_> = (0..10_000).map(|i| packet(A, B, i, 60)).collect();
    send_all(&a, &packets);
    let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
    (got.len(), net.stats())
}

#[tokio::test(start_paused = true)]
async fn loses_about_the_configured_fraction() {
    let (received, stats) = lossy_run(5).await;
    assert!((8_800..=9_200).contains(&received), "{received} of 10000");
    assert_eq!(stats.lost as usize, 10_000 - received);
    assert_eq!(stats.delivered as usize, received);
    assert_eq!(lossy_run(5).await, (received, stats));
    assert_ne!(lossy_run(6).await.0, received);
}

#[tokio::test(start_paused = true)]
async fn duplicates() {
    let (net, a, b) = two_hosts(6, LinkConfig::default().with_duplicate(1.0));
    let start = Instant::now();
    let packets: Vec<_> = (0..50).map(|i| packet(A, B, i, 60)).collect();
    send_all(&a, &packets);
    let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
    assert_eq!(got.len(), 100);
    for i in 0..50 {
        assert_eq!(got.iter().filter(|(_, p)| id_of(p) == i).count(), 2);
    }
    let s = net.stats();
    assert_eq!((s.sent, s.duplicated, s.delivered), (50, 50, 100));

    net.set_link(A, B, LinkConfig::default().with_duplicate(0.5));
    let packets: Vec<_> = (0..1000).map(|i| packet(A, B, i, 60)).collect();
    send_all(&a, &packets);
    let got = recv_until(&b, start, Instant::now() + Duration::from_secs(1)).await;
    assert!((1400..=1600).contains(&got.len()), "{}", got.len());
}

#[tokio::test(start_paused = true)]
async fn corruption_flips_one_bit_after_the_ip_header() {
    let (net, a, b) = two_hosts(7, LinkConfig::default().with_corrupt(1.0));
    let six_a: IpAddr = "fd00::1".parse().unwrap();
    let six_b: IpAddr = "fd00::2".parse().unwrap();
    drop((a, b));
    let a = net.host_with(&[A, six_a]).unwrap();
    let b = net.host_with(&[B, six_b]).unwrap();
    net.set_link(six_a, six_b, LinkConfig::default().with_corrupt(1.0));
    let start = Instant::now();
    let mut sent: Vec<_> = (0..100).map(|i| packet(A, B, i, 200)).collect();
    sent.extend((100..200).map(|i| packet(six_a, six_b, i, 200)));
    send_all(&a, &sent);
    let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
    assert_eq!(got.len(), 200);
    for ((_, got), sent) in got.iter().zip(&sent) {
        let header = if sent[0] >> 4 == 4 { 20 } else { 40 };
        assert_eq!(got.len(), sent.len());
        assert_eq!(got[..header], sent[..header]);
        let flipped: u32 = got
            .iter()
            .zip(sent)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        assert_eq!(flipped, 1);
        assert!(parse_tcp_packet(got, true).is_err());
        assert!(parse_tcp_packet(sent, true).is_ok());
    }
    assert_eq!(net.stats().corrupted, 200);
}

#[tokio::test(start_paused = true)]
async fn drops_packets_above_the_mtu() {
    let (net, a, b) = two_hosts(8, LinkConfig::default().with_mtu(1000));
    assert_eq!(a.mtu(B), 1000);
    assert_eq!(a.mtu(C), 1500);
    assert_eq!(a.mtu(IpAddr::V4(Ipv4Addr::LOCALHOST)), 65535);
    assert_eq!(a.mtu(A), 65535);
    net.set_default_link(LinkConfig::default().with_mtu(9000));
    assert_eq!(a.mtu(C), 9000);
    let start = Instant::now();
    send_all(&a, &[packet(A, B, 1, 1001), packet(A, B, 2, 1000)]);
    let got = recv_until(&b, start, start + Duration::from_secs(1)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(id_of(&got[0].1), 2);
    assert_eq!(net.stats().dropped_mtu, 1);

    // A packet bigger than the receiver's slots is dropped, not truncated.
    send_all(&a, &[packet(A, B, 3, 900), packet(A, B, 4, 100)]);
    let mut small = Batch::new(4, 500);
    poll_fn(|cx| b.poll_recv(cx, &mut small)).await.unwrap();
    assert_eq!(small.len(), 1);
    assert_eq!(id_of(small.get(0)), 4);
    assert_eq!(net.stats().dropped_mtu, 2);
}

#[tokio::test(start_paused = true)]
async fn bandwidth_serialises_packets() {
    let (_net, a, b) = two_hosts(9, LinkConfig::default().with_bandwidth(10_000));
    let start = Instant::now();
    let packets: Vec<_> = (0..10).map(|i| packet(A, B, i, 1000)).collect();
    send_all(&a, &packets);
    let got = recv_until(&b, start, start + Duration::from_secs(5)).await;
    let times: Vec<Duration> = got.iter().map(|(at, _)| *at).collect();
    let expected: Vec<Duration> = (1..=10).map(|i| 100 * MS * i).collect();
    assert_eq!(times, expected);

    // The reverse direction has a link of its own.
    let start = Instant::now();
    send_all(&a, &[packet(A, B, 20, 1000)]);
    send_all(&b, &[packet(B, A, 21, 1000)]);
    let got = recv_until(&a, start, start + Duration::from_secs(5)).await;
    assert_eq!(got[0].0, 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn queue_limit_drops_the_tail() {
    let cfg = LinkConfig::default()
        .with_bandwidth(10_000)
        .with_queue_limit(250 * MS);
    let (net, a, b) = two_hosts(10, cfg);
    let start = Instant::now();
    let packets: Vec<_> = (0..10).map(|i| packet(A, B, i, 1000)).collect();
    send_all(&a, &packets);
    let got = recv_until(&b, start, start + Duration::from_secs(5)).await;
    // Packets waiting 0, 100, 200 ms get through; 300 ms and beyond do not.
    assert_eq!(got.len(), 3);
    assert_eq!(net.stats().dropped_queue, 7);
}

#[tokio::test(start_paused = true)]
async fn loopback_reaches_the_sender_only() {
    let net = SimNetwork::new(11);
    net.set_default_link(LinkConfig::default().with_latency(10 * MS));
    let six: IpAddr = "fd00::1".parse().unwrap();
    let a = net.host_with(&[A, six]).unwrap();
    let b = net.host(B).unwrap();
    let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let lo4b = IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3));
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(a.local_ip_for(lo4).unwrap(), lo4);
    assert_eq!(a.local_ip_for(lo6).unwrap(), lo6);
    assert_eq!(a.local_ip_for(B).unwrap(), A);
    assert_eq!(a.local_ip_for(A).unwrap(), A);
    assert_eq!(a.local_ip_for("fd00::9".parse().unwrap()).unwrap(), six);
    assert_eq!(
        b.local_ip_for(six).unwrap_err().kind(),
        io::ErrorKind::AddrNotAvailable
    );
    let start = Instant::now();
    send_all(
        &a,
        &[
            packet(lo4, lo4, 1, 60),
            packet(lo4, lo4b, 2, 60),
            packet(lo6, lo6, 3, 60000),
            packet(A, A, 4, 60),
        ],
    );
    send_all(&b, &[packet(lo4, lo4, 5, 60)]);
    let got_a = recv_until(&a, start, start + Duration::from_secs(1)).await;
    let ids: Vec<u32> = got_a.iter().map(|(_, p)| id_of(p)).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert!(got_a.iter().all(|(at, _)| at.is_zero()));
    let got_b = recv_until(&b, start, start + Duration::from_secs(1)).await;
    assert_eq!(got_b.len(), 1);
    assert_eq!(id_of(&got_b[0].1), 5);

    net.set_loopback_link(LinkConfig::loopback().with_latency(MS));
    let start = Instant::now();
    send_all(&a, &[packet(lo4, lo4, 6, 60)]);
    let got = recv_until(&a, start, start + Duration::from_secs(1)).await;
    assert_eq!(got[0].0, MS);
}

#[tokio::test(start_paused = true)]
async fn binds_like_the_kernel() {
    let net = SimNetwork::new(12);
    let six: IpAddr = "fd00::1".parse().unwrap();
    let a = net.host_with(&[A, six]).unwrap();
    let sa = |ip: IpAddr, port| SocketAddr::new(ip, port);
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let kind = BindKind::Listen;

    assert_eq!(a.bind(sa(A, 80), kind).unwrap(), sa(A, 80));
    let err = |r: io::Result<SocketAddr>| r.unwrap_err().kind();
    assert_eq!(err(a.bind(sa(A, 80), kind)), io::ErrorKind::AddrInUse);
    assert_eq!(err(a.bind(sa(any4, 80), kind)), io::ErrorKind::AddrInUse);
    assert_eq!(a.bind(sa(lo, 81), kind).unwrap(), sa(lo, 81));
    assert_eq!(a.bind(sa(any6, 80), kind).unwrap(), sa(any6, 80));
    assert_eq!(err(a.bind(sa(six, 80), kind)), io::ErrorKind::AddrInUse);
    assert_eq!(a.bind(sa(any4, 443), kind).unwrap(), sa(any4, 443));
    assert_eq!(err(a.bind(sa(A, 443), kind)), io::ErrorKind::AddrInUse);
    assert_eq!(err(a.bind(sa(lo, 443), kind)), io::ErrorKind::AddrInUse);
    assert_eq!(err(a.bind(sa(B, 1), kind)), io::ErrorKind::AddrNotAvailable);
    assert_eq!(
        err(a.bind(sa("fd00::2".parse().unwrap(), 1), kind)),
        io::ErrorKind::AddrNotAvailable
    );
    a.unbind(sa(A, 80));
    a.unbind(sa(any6, 80));
    assert_eq!(a.bind(sa(any4, 80), kind).unwrap(), sa(any4, 80));

    // Port 0: distinct ephemeral ports until the range is used up.
    let mut ports = std::collections::HashSet::new();
    for _ in 0..EPHEMERAL_COUNT {
        let got = a.bind(sa(A, 0), BindKind::Connect).unwrap();
        assert_eq!(got.ip(), A);
        assert!(got.port() >= EPHEMERAL_FIRST);
        assert!(ports.insert(got.port()));
    }
    assert_eq!(
        err(a.bind(sa(A, 0), BindKind::Connect)),
        io::ErrorKind::AddrInUse
    );
    // Every port is now claimed on A, so the v4 wildcard conflicts with all of them.
    assert_eq!(
        err(a.bind(sa(any4, 0), BindKind::Connect)),
        io::ErrorKind::AddrInUse
    );
    let v6 = a.bind(sa(six, 0), BindKind::Connect).unwrap();
    assert!(v6.port() >= EPHEMERAL_FIRST);
    a.unbind(sa(A, 50000));
    assert_eq!(a.bind(sa(A, 0), BindKind::Connect).unwrap(), sa(A, 50000));

    // Ephemeral ports start at a seeded point.
    let first = |seed| {
        let net = SimNetwork::new(seed);
        let h = net.host(A).unwrap();
        h.bind(sa(A, 0), BindKind::Connect).unwrap().port()
    };
    assert_eq!(first(1), first(1));
    assert_ne!(first(1), first(2));
}

#[test]
fn hosts_own_distinct_addresses() {
    let net = SimNetwork::new(13);
    let a = net.host(A).unwrap();
    assert_eq!(net.host(A).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    assert_eq!(
        net.host_with(&[B, A]).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    for bad in [
        &[][..],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        &[IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
        &[IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1))],
    ] {
        assert_eq!(
            net.host_with(bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
    assert_eq!(a.addr(), A);
    assert_eq!(a.addrs(), [A]);
    assert_eq!(a.name(), "sim");
    assert!(a.verify_checksums());
    drop(a);
    let again = net.host(A).unwrap();
    assert_eq!(again.network().stats(), SimStats::default());
}

#[tokio::test(start_paused = true)]
async fn pending_when_idle_and_woken_when_due() {
    let (_net, a, b) = two_hosts(14, LinkConfig::default().with_latency(50 * MS));
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let wakes = || counter.0.load(Ordering::SeqCst);
    let mut batch = Batch::new(8, 1500);

    assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
    assert!(!b.timer_armed());
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(wakes(), 0);

    // A send into an empty inbox wakes the receiver, which then arms its timer.
    send_all(&a, &[packet(A, B, 1, 60)]);
    assert_eq!(wakes(), 1);
    assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
    assert!(b.timer_armed());
    // A later packet does not move the head: no wake.
    tokio::time::advance(10 * MS).await;
    send_all(&a, &[packet(A, B, 2, 60)]);
    assert_eq!(wakes(), 1);
    tokio::time::advance(39 * MS).await;
    assert_eq!(wakes(), 1);
    tokio::time::advance(MS).await;
    assert_eq!(wakes(), 2);
    assert!(b.poll_recv(&mut cx, &mut batch).is_ready());
    assert_eq!(batch.len(), 1);
    // The second packet is due at 60 ms.
    assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
    tokio::time::advance(10 * MS).await;
    assert_eq!(wakes(), 3);
    assert!(b.poll_recv(&mut cx, &mut batch).is_ready());
    assert_eq!(batch.len(), 2);
    assert!(!b.timer_armed());
    assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(wakes(), 3);

    // A packet that overtakes the head wakes the receiver again.
    b.network()
        .set_path(A, B, LinkConfig::default().with_latency(100 * MS));
    send_all(&a, &[packet(A, B, 3, 60)]);
    assert_eq!(wakes(), 4);
    assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
    b.network()
        .set_path(A, B, LinkConfig::default().with_latency(10 * MS));
    send_all(&a, &[packet(A, B, 4, 60)]);
    assert_eq!(wakes(), 5);
    batch.clear();
    assert!(b.poll_recv(&mut cx, &mut batch).is_pending());
    tokio::time::advance(10 * MS).await;
    assert!(b.poll_recv(&mut cx, &mut batch).is_ready());
    assert_eq!(id_of(batch.get(0)), 4);
}

#[tokio::test(start_paused = true)]
async fn full_batch_leaves_the_rest_queued() {
    let (net, a, b) = two_hosts(15, LinkConfig::default());
    let packets: Vec<_> = (0..10).map(|i| packet(A, B, i, 60)).collect();
    send_all(&a, &packets);
    let mut batch = Batch::new(4, 1500);
    poll_fn(|cx| b.poll_recv(cx, &mut batch)).await.unwrap();
    assert_eq!(batch.len(), 4);
    assert_eq!(net.stats().in_flight, 6);
    batch.clear();
    poll_fn(|cx| b.poll_recv(cx, &mut batch)).await.unwrap();
    assert_eq!(id_of(batch.get(0)), 4);
}

#[tokio::test(start_paused = true)]
async fn counts_unroutable_and_malformed_packets_without_panicking() {
    let (net, a, b) = two_hosts(16, LinkConfig::default());
    let mut batch = Batch::new(64, 100);
    batch.push(&packet(A, C, 1, 60)).unwrap();
    batch
        .push(&packet(A, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1, 60))
        .unwrap();
    batch.push(&[]).unwrap();
    batch.push(&[0x45; 19]).unwrap();
    batch.push(&[0x44; 40]).unwrap(); // IHL 4
    batch.push(&[0x4f; 40]).unwrap(); // IHL 15: past the packet
    batch.push(&[0x60; 39]).unwrap();
    batch.push(&[0x70; 60]).unwrap();
    a.send(&batch).unwrap();
    let s = net.stats();
    assert_eq!((s.sent, s.dropped_no_route, s.dropped_malformed), (8, 2, 6));

    // Random bytes: routed or dropped, never a panic.
    let mut rng = Rng::new(99);
    let mut fuzz = Batch::new(64, 100);
    for _ in 0..200 {
        fuzz.clear();
        while !fuzz.is_full() {
            let len = rng.below(100) as usize;
            let slot = fuzz.next_slot().unwrap();
            for byte in &mut slot[..len] {
                *byte = rng.next() as u8;
            }
            if len > 0 && rng.chance(0.5) {
                slot[0] = if rng.chance(0.5) { 0x45 } else { 0x60 };
            }
            fuzz.commit(len);
        }
        b.send(&fuzz).unwrap();
    }
    let s = net.stats();
    assert_eq!(s.sent, 8 + 200 * 64);
    assert_eq!(
        s.sent,
        s.dropped_no_route + s.dropped_malformed + s.in_flight + s.delivered
    );

    // A removed host's address no longer routes.
    drop(b);
    a.send(&{
        let mut one = Batch::new(1, 100);
        one.push(&packet(A, B, 1, 60)).unwrap();
        one
    })
    .unwrap();
    assert_eq!(net.stats().dropped_no_route, s.dropped_no_route + 1);
}

#[test]
fn works_outside_a_runtime() {
    let (_net, a, b) = two_hosts(17, LinkConfig::default().with_latency(MS));
    send_all(&a, &[packet(A, B, 1, 60)]);
    let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
    let mut cx = Context::from_waker(&waker);
    let mut batch = Batch::new(1, 1500);
    match b.poll_recv(&mut cx, &mut batch) {
        Poll::Ready(Err(_)) => {}
        Poll::Ready(Ok(())) => assert_eq!(batch.len(), 1),
        Poll::Pending => panic!("pending with no runtime to wake it"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_the_real_clock() {
    let (_net, a, b) = two_hosts(18, LinkConfig::default().with_latency(5 * MS));
    let start = Instant::now();
    send_all(&a, &[packet(A, B, 1, 60)]);
    let receiver = tokio::spawn(async move {
        let mut batch = Batch::new(4, 1500);
        poll_fn(|cx| b.poll_recv(cx, &mut batch)).await.unwrap();
        batch.len()
    });
    let got = tokio::time::timeout(Duration::from_secs(5), receiver).await;
    assert_eq!(got.unwrap().unwrap(), 1);
    assert!(start.elapsed() >= 5 * MS);
}

/// Everything observable about one impaired run.
async fn impaired_run(seed: u64) -> (Vec<(Duration, Vec<u8>)>, SimStats, SocketAddr) {
    let cfg = LinkConfig::lossy(0.05)
        .with_latency(20 * MS)
        .with_jitter(10 * MS)
        .with_bandwidth(1_000_000)
        .with_duplicate(0.05)
        .with_reorder(0.05, 30 * MS)
        .with_corrupt(0.05);
    let (net, a, b) = two_hosts(seed, cfg);
    let port = b.bind(SocketAddr::new(B, 0), BindKind::Connect).unwrap();
    let start = Instant::now();
    for i in 0..300 {
        send_all(&a, &[packet(A, B, i, 100 + (i as usize * 7) % 1300)]);
        tokio::time::advance(Duration::from_micros(300)).await;
    }
    let got = recv_until(&b, start, start + Duration::from_secs(2)).await;
    (got, net.stats(), port)
}

#[tokio::test(start_paused = true)]
async fn same_seed_same_outcome() {
    let first = impaired_run(42).await;
    let second = impaired_run(42).await;
    assert!(first.1.lost > 0 && first.1.duplicated > 0 && first.1.corrupted > 0);
    assert!(first == second);
    let other = impaired_run(43).await;
    assert!(first.0 != other.0);
}
