//! The runtime (stacks, listeners, streams, sockets) over the simulated network, under tokio's
//! paused clock: minutes of network time pass in milliseconds, and every run of a seed is the
//! same. Each stack has its own host: the server 10.0.0.1, the client 10.0.0.2.

mod runtime_common;

use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
use rawtcp::proto::Config;
use rawtcp::{Stack, TcpListener};
use runtime_common::*;
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const SERVER: [u8; 4] = [10, 0, 0, 1];
const CLIENT: [u8; 4] = [10, 0, 0, 2];

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

/// A network with a server and a client host joined by `link`, and a stack on each.
fn sim_env(seed: u64, link: LinkConfig) -> (SimNetwork, Env) {
    sim_env_with(seed, link, Stack::builder())
}

/// Like [`sim_env`], with the client stack built from `client`.
fn sim_env_with(seed: u64, link: LinkConfig, client: rawtcp::StackBuilder) -> (SimNetwork, Env) {
    let net = SimNetwork::new(seed);
    net.set_link(ip(SERVER), ip(CLIENT), link);
    let server = Stack::builder()
        .datapath(net.host(ip(SERVER)).unwrap())
        .build()
        .unwrap();
    let client = client
        .datapath(net.host(ip(CLIENT)).unwrap())
        .build()
        .unwrap();
    let env = Env {
        server,
        client,
        bind: SocketAddr::new(ip(SERVER), 0),
        limit: Duration::from_secs(120),
        quiet: Duration::from_millis(500),
    };
    (net, env)
}

/// A link with a little latency, otherwise perfect.
fn lan() -> LinkConfig {
    LinkConfig::default().with_latency(Duration::from_millis(1))
}

/// Several tasks waiting in `accept` on one listener are all woken: 8 waiters, 8 connects,
/// 8 accepts complete.
#[tokio::test(start_paused = true)]
async fn every_pending_accept_is_woken() {
    let (_net, env) = sim_env(1, lan());
    accept_wakes_every_waiter(&env, 8).await;
}

/// `peek` returns bytes that a following `read` returns again.
#[tokio::test(start_paused = true)]
async fn peek_then_read() {
    let (_net, env) = sim_env(2, lan());
    runtime_common::peek_then_read(&env).await;
}

/// `try_read` is `WouldBlock` with nothing there; `try_write` runs into `WouldBlock` with a
/// small send buffer and a peer that does not read; the peer reading makes `writable()`
/// ready again.
#[tokio::test(start_paused = true)]
async fn try_write_until_would_block_then_writable() {
    let (_net, env) = sim_env(3, lan());
    try_write_until_would_block(&env).await;
}

/// The client writes a request and shuts down; the server reads to EOF, replies; the client
/// reads the whole reply.
#[tokio::test(start_paused = true)]
async fn half_close_then_reply() {
    let (_net, env) = sim_env(4, lan().with_latency(Duration::from_millis(10)));
    runtime_common::half_close_then_reply(&env).await;
}

/// Dropping the owned write half gives the peer EOF while the read half still receives.
#[tokio::test(start_paused = true)]
async fn dropping_owned_write_half_sends_eof() {
    let (_net, env) = sim_env(5, lan());
    owned_write_half_drop_sends_eof(&env).await;
}

/// `reunite` rejects foreign halves and rebuilds a working stream from its own halves.
#[tokio::test(start_paused = true)]
async fn reunite_rebuilds_the_stream() {
    let (_net, env) = sim_env(6, lan());
    reunite(&env).await;
}

/// `OwnedWriteHalf::forget` sends no FIN; dropping the read half afterwards closes.
#[tokio::test(start_paused = true)]
async fn forget_does_not_send_fin() {
    let (_net, env) = sim_env(7, lan());
    runtime_common::forget_does_not_send_fin(&env).await;
}

/// Zero linger then drop: the peer's read fails with `ConnectionReset`.
#[tokio::test(start_paused = true)]
async fn zero_linger_drop_resets_peer() {
    let (_net, env) = sim_env(8, lan());
    zero_linger_resets_peer(&env).await;
}

/// Connecting to a port nobody listens on is refused after one round trip (10 ms each way):
/// a RST answers the SYN.
#[tokio::test(start_paused = true)]
async fn connect_to_closed_port_is_refused() {
    let (net, env) = sim_env(
        9,
        LinkConfig::default().with_latency(Duration::from_millis(10)),
    );
    let took = connection_refused(
        &env,
        SocketAddr::new(ip(SERVER), 9),
        Duration::from_millis(100),
    )
    .await;
    assert!(took >= Duration::from_millis(20), "refused in {took:?}");
    assert_eq!(env.server.stats().resets_sent, 1);
    assert_eq!(net.stats().lost, 0);
}

/// Connecting to an address where no host is (packets dropped) fails with `TimedOut` after
/// the SYN and its 6 retries, 1 + 2 + 4 + ... + 32 + 60 (the RTO's 60 s ceiling) = 123 s of
/// virtual time, in milliseconds of real time.
#[tokio::test(start_paused = true)]
async fn connect_to_missing_host_times_out_after_syn_retries() {
    let (net, env) = sim_env(10, lan());
    let real = std::time::Instant::now();
    let start = tokio::time::Instant::now();
    let r = within(
        Duration::from_secs(300),
        "connect to a missing host",
        env.client.connect("10.0.0.99:80"),
    )
    .await;
    let took = start.elapsed();
    let e = r.expect_err("connect to a missing host");
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(
        took >= Duration::from_secs(122) && took <= Duration::from_secs(124),
        "virtual time {took:?}"
    );
    assert_eq!(net.stats().dropped_no_route, 7, "SYN + 6 retries");
    let real = real.elapsed();
    eprintln!("missing host: TimedOut after {took:?} virtual, {real:?} real");
    assert!(real < Duration::from_secs(5), "real time {real:?}");
    // The reactor forgets the failed connection (and gives its port back) on its next pass.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        env.client.stats().connections,
        0,
        "the failed connection is forgotten"
    );
}

/// With `syn_retries: 2` in the stack's `tcp_config`, the same failure comes after 1 + 2 + 4
/// = 7 s.
#[tokio::test(start_paused = true)]
async fn connect_times_out_sooner_with_fewer_syn_retries() {
    let cfg = Config {
        syn_retries: 2,
        ..Config::default()
    };
    let (net, env) = sim_env_with(11, lan(), Stack::builder().tcp_config(cfg));
    let start = tokio::time::Instant::now();
    let e = within(
        Duration::from_secs(60),
        "connect to a missing host",
        env.client.connect("10.0.0.99:80"),
    )
    .await
    .expect_err("connect to a missing host");
    let took = start.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_millis(7500),
        "virtual time {took:?}"
    );
    assert_eq!(net.stats().dropped_no_route, 3, "SYN + 2 retries");
}

/// 1000 clients connect at once to one listener (default backlog 1024), each exchanges a few
/// bytes; all are accepted.
#[tokio::test(start_paused = true)]
async fn thousand_concurrent_connections() {
    let (_net, env) = sim_env(12, lan());
    let real = std::time::Instant::now();
    many_connections(&env, 1000).await;
    eprintln!("1000 connections over sim: {:?} real", real.elapsed());
}

/// 50 MB arrive byte for byte over a link that loses 5% of packets, reorders and duplicates
/// some, in both directions; then EOF. Virtual time, so it costs only CPU.
#[tokio::test(start_paused = true)]
async fn fifty_megabytes_byte_exact_over_lossy_link() {
    const LEN: u64 = 50 << 20;
    let link = LinkConfig::default()
        .with_latency(Duration::from_millis(5))
        .with_jitter(Duration::from_micros(200))
        .with_loss(0.05)
        .with_duplicate(0.02)
        .with_reorder(0.05, Duration::from_millis(3));
    let (net, mut env) = sim_env(13, link);
    env.limit = Duration::from_secs(3600);
    let real = std::time::Instant::now();
    let start = tokio::time::Instant::now();
    let (_l, mut client, mut server) = connected(&env).await;
    let reader = tokio::spawn(async move {
        let n = read_pattern_to_end(&mut server).await;
        (n, server)
    });
    within(
        env.limit,
        "write 50 MB",
        write_pattern(&mut client, LEN, 256 * 1024),
    )
    .await
    .unwrap();
    client.shutdown().await.unwrap();
    let (n, _server) = within(env.limit, "read 50 MB", reader).await.unwrap();
    assert_eq!(n.expect("read to EOF"), LEN);
    let info = client.info().unwrap();
    let stats = net.stats();
    eprintln!(
        "50 MB over sim (5% loss, 5% reorder, 2% dup): {:?} virtual, {:?} real; \
         retransmissions {}, timeouts {}, fast retransmits {}; network {:?}",
        start.elapsed(),
        real.elapsed(),
        info.retransmissions,
        info.timeouts,
        info.fast_retransmits,
        stats
    );
    assert!(stats.lost > 0 && stats.duplicated > 0, "{stats:?}");
    assert!(info.retransmissions > 0, "{info:?}");
    assert_eq!(info.bytes_sent, LEN);
}

/// The client's local address is the server's peer address and vice versa.
#[tokio::test(start_paused = true)]
async fn local_and_peer_addresses_agree() {
    let (_net, env) = sim_env(14, lan());
    addresses_agree(&env).await;
    let (_l, client, _server) = connected(&env).await;
    assert_eq!(client.local_addr().unwrap().ip(), ip(CLIENT));
}

/// `info()` counts the bytes of an exchange and measures the RTT: with 10 ms each way the
/// smoothed RTT is about 20 ms.
#[tokio::test(start_paused = true)]
async fn info_reports_bytes_and_srtt() {
    let (_net, env) = sim_env(
        15,
        LinkConfig::default().with_latency(Duration::from_millis(10)),
    );
    let srtt = info_after_exchange(&env).await;
    eprintln!("srtt with 10 ms each way: {srtt:?}");
    assert!(
        srtt >= Duration::from_millis(19) && srtt <= Duration::from_millis(25),
        "srtt {srtt:?}, expected about 20 ms"
    );
}

/// Dropping a stream right after writing 3 MB (more than its send buffer): the peer still
/// receives every byte, then EOF.
#[tokio::test(start_paused = true)]
async fn dropping_stream_delivers_written_data_then_eof() {
    let (_net, env) = sim_env(
        16,
        LinkConfig::default().with_latency(Duration::from_millis(5)),
    );
    drop_with_written_data_delivers_then_eof(&env, 3 << 20).await;
}

/// Dropping the last `Stack` handle resets its connections (the peer reads
/// `ConnectionReset`), and its streams and listeners return errors instead of hanging.
#[tokio::test(start_paused = true)]
async fn dropping_stack_resets_connections() {
    let (_net, env) = sim_env(17, lan());
    dropping_stack_resets(env).await;
}

/// `TcpListener` is a `futures_core::Stream` of connections.
#[tokio::test(start_paused = true)]
async fn listener_is_a_stream() {
    let (_net, env) = sim_env(18, lan());
    runtime_common::listener_is_a_stream(&env).await;
}

/// `set_ttl`/`ttl` round-trip and set the TTL of the packets sent.
#[tokio::test(start_paused = true)]
async fn ttl_round_trips() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (_net, env) = sim_env_with(19, lan(), Stack::builder().tap(ttl_tap(log.clone())));
    runtime_common::ttl_round_trips(&env, &log).await;
}

/// `set_nodelay`/`nodelay` round-trip.
#[tokio::test(start_paused = true)]
async fn nodelay_round_trips() {
    let (_net, env) = sim_env(20, lan());
    runtime_common::nodelay_round_trips(&env).await;
}

/// `take_error` after a reset returns `ConnectionReset` once.
#[tokio::test(start_paused = true)]
async fn take_error_returns_reset_once() {
    let (_net, env) = sim_env(21, lan());
    take_error_once(&env).await;
}

/// Binding the same address twice is `AddrInUse`.
#[tokio::test(start_paused = true)]
async fn binding_twice_is_addr_in_use() {
    let (_net, env) = sim_env(22, lan());
    bind_twice_addr_in_use(&env, None).await;
}

/// A v4 socket with a v6 address (and the reverse) is the kernel's `EAFNOSUPPORT`.
#[tokio::test(start_paused = true)]
async fn family_mismatch_is_afnosupport() {
    let (_net, env) = sim_env(23, lan());
    family_mismatch_afnosupport(&env.client).await;
}

/// Writes after the peer reset fail, and keep failing (sanity check on the sim clock: no
/// hang even though nothing is ever read).
#[tokio::test(start_paused = true)]
async fn write_after_peer_reset_fails() {
    let (_net, env) = sim_env(24, lan());
    let (_l, client, mut server) = connected(&env).await;
    client.set_zero_linger().unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = within(env.limit, "write after reset", server.write_all(b"x"))
        .await
        .expect_err("write after reset");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
}

/// Dropping the listener does not disturb the connections it accepted: the client still
/// reaches the server afterwards (the client speaking first), and the server the client.
#[tokio::test(start_paused = true)]
async fn accepted_stream_outlives_its_listener() {
    let (_net, env) = sim_env(25, lan());
    accepted_stream_outlives_listener(&env).await;
}

/// Accepts on `l` for as long as it is open, holding every accepted stream open.
fn accept_all(l: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    })
}

/// Connections spread over several destinations pack into as few local ports as the
/// 4-tuples allow: 180 connections to 9 server ports, taking the ports in turn, use 20
/// local ports (each destination goes on through the claimed ports from where it left
/// off, and a port is claimed only when no earlier one is free for it).
#[tokio::test(start_paused = true)]
async fn connections_to_many_destinations_pack_into_few_ports() {
    let (_net, env) = sim_env(14, lan());
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..9 {
        let l = env.server.bind(env.bind).await.expect("bind");
        addrs.push(l.local_addr().unwrap());
        servers.push(accept_all(l));
    }
    let mut streams = Vec::new();
    for round in 0..20 {
        for a in &addrs {
            let s = within(env.limit, "connect", env.client.connect(*a))
                .await
                .unwrap_or_else(|e| panic!("round {round} to {a}: {e}"));
            streams.push(s);
        }
    }
    let ports: HashSet<u16> = streams
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    assert_eq!(ports.len(), 20, "180 connections to 9 destinations");
}

/// Outgoing connections share local ports across destinations, as Linux's `connect` does,
/// and when every port is taken for a destination `connect` fails at once with
/// `AddrNotAvailable` instead of hanging: a host with one address holds 16,384 connections
/// to one server port (the whole ephemeral range), the next fails, and a connection to
/// another port of the server still gets one of the ports already in use.
#[tokio::test(start_paused = true)]
async fn ports_are_shared_across_destinations_and_exhaustion_fails_at_once() {
    let (_net, env) = sim_env(13, lan());
    let first = env.server.bind(env.bind).await.expect("bind");
    let second = env.server.bind(env.bind).await.expect("bind");
    let (a, b) = (first.local_addr().unwrap(), second.local_addr().unwrap());
    let _servers = (accept_all(first), accept_all(second));
    const PORTS: usize = 16_384;
    let mut streams = Vec::with_capacity(PORTS);
    let real = std::time::Instant::now();
    for i in 0..PORTS {
        let s = within(env.limit, "connect", env.client.connect(a))
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        streams.push(s);
    }
    let ports: HashSet<u16> = streams
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    assert_eq!(
        ports.len(),
        PORTS,
        "every connection to one destination has its own port"
    );
    let e = within(
        Duration::from_secs(1),
        "the connect that finds no port",
        env.client.connect(a),
    )
    .await
    .expect_err("no port is left for this destination");
    assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable, "{e}");
    let other = within(env.limit, "connect elsewhere", env.client.connect(b))
        .await
        .expect("a port shared with a connection to the other destination");
    assert!(ports.contains(&other.local_addr().unwrap().port()));
    eprintln!(
        "{PORTS} connections and the exhaustion check: {:?} real",
        real.elapsed()
    );
}
