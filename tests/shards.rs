//! Stacks split into shards (`StackBuilder::shards`) over the UDP datapath on loopback: every
//! connection lives on exactly one shard, every segment reaches the shard of its connection
//! (a segment at the wrong shard would find no connection there and draw a RST, so "no RST
//! sent" is the check), and the tokio-shaped API behaves as on a stack of one shard. Only
//! 127.0.0.1 is used.

mod runtime_common;

use rawtcp::datapath::shard_of;
use rawtcp::datapath::udp::UdpDatapath;
use rawtcp::wire::TcpFlags;
use rawtcp::{Direction, Stack, StackBuilder};
use runtime_common::*;
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHARDS: usize = 2;

fn sharded(b: StackBuilder) -> Stack {
    b.datapath(UdpDatapath::new().expect("udp datapath"))
        .shards(SHARDS)
        .build()
        .expect("sharded stack")
}

/// One segment a test's stacks sent that [`no_strays`] looks at: a SYN+ACK, a RST, or a
/// FIN.
#[derive(Clone, Copy)]
struct Seen {
    syn_ack: bool,
    rst: bool,
    /// The RST's sequence number.
    seq: u32,
    /// For a FIN: the sequence number just past it (what the peer's ACK of it carries).
    fin_end: Option<u32>,
    src: SocketAddr,
    dst: SocketAddr,
}

/// What the stacks of a test sent.
type Sent = Arc<Mutex<Vec<Seen>>>;

/// `b` with a tap recording what it sends into `sent`.
fn watched(b: StackBuilder, sent: &Sent) -> StackBuilder {
    let sent = sent.clone();
    b.tap(move |e| {
        if e.direction == Direction::Out {
            let f = e.tcp.flags;
            let syn_ack = f.contains(TcpFlags::SYN) && f.contains(TcpFlags::ACK);
            let rst = f.contains(TcpFlags::RST);
            let fin_end = f
                .contains(TcpFlags::FIN)
                .then(|| e.tcp.seq.wrapping_add(e.payload_len as u32 + 1));
            if syn_ack || rst || fin_end.is_some() {
                sent.lock().unwrap().push(Seen {
                    syn_ack,
                    rst,
                    seq: e.tcp.seq,
                    fin_end,
                    src: e.src,
                    dst: e.dst,
                });
            }
        }
    })
}

/// A sharded server and a sharded client, like two processes, and what they send.
fn env() -> (Env, Sent) {
    let sent = Sent::default();
    let env = Env {
        server: sharded(watched(Stack::builder(), &sent)),
        client: sharded(watched(Stack::builder(), &sent)),
        bind: "127.0.0.1:0".parse().unwrap(),
        limit: Duration::from_secs(20),
        quiet: Duration::from_millis(300),
    };
    (env, sent)
}

/// No shard of either stack answered a segment of this test's connections with a RST, as
/// one would a segment that reached a shard without its connection. (Other tests' stacks
/// in this process may still send late segments to a UDP port the kernel gave to this
/// test's stacks since, which draw RSTs that are nobody's fault: only RSTs to or from the
/// ports the server listened on count.) Nor does the RST that answers a late copy of the
/// ACK of a side's own FIN, after that side (the second to close) received the first copy
/// and closed: it holds no TIME-WAIT, so the copy finds only the listener, which answers
/// an ACK with a RST (RFC 9293 §3.10.7.2), as Linux's does. It happens when the FIN was
/// sent again (a tail loss probe, under load) and the peer in TIME-WAIT acknowledged it
/// again (§3.10.7.4). Its sequence number is the FIN's end.
fn no_strays(sent: &Sent) {
    let sent = sent.lock().unwrap();
    let listening: HashSet<u16> = sent
        .iter()
        .filter(|s| s.syn_ack)
        .map(|s| s.src.port())
        .collect();
    for r in sent.iter().filter(|s| s.rst) {
        let after_close = sent
            .iter()
            .any(|f| f.fin_end == Some(r.seq) && (f.src, f.dst) == (r.src, r.dst));
        assert!(
            after_close
                || !(listening.contains(&r.src.port()) || listening.contains(&r.dst.port())),
            "a RST {} -> {} in a conversation with a listener of the test",
            r.src,
            r.dst
        );
    }
}

/// 64 connections, each moving its own 256 KiB pattern both ways at once: every byte arrives
/// intact and in order, the connections spread over both shards of each stack, each
/// accepted connection sits on the shard its ports steer to, each outgoing one on the shard
/// its ports steer to as well, and no segment strays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_reaches_the_shard_of_its_connection() {
    let (env, sent) = env();
    assert_eq!(env.server.shard_count(), SHARDS);
    let listener = env.server.bind(env.bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    const N: usize = 64;
    const LEN: u64 = 256 << 10;
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..N {
            let (s, _) = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let (got, sent) = tokio::join!(read_pattern_to_end(&mut r), async {
                    write_pattern(&mut w, LEN, 16 << 10).await?;
                    w.shutdown().await
                });
                sent.unwrap();
                got.unwrap()
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        (total, listener)
    });
    let mut clients = Vec::new();
    for _ in 0..N {
        let c = env.client.clone();
        clients.push(tokio::spawn(async move {
            let s = c.connect(addr).await?;
            let (mut r, mut w) = s.into_split();
            let (got, sent) = tokio::join!(read_pattern_to_end(&mut r), async {
                write_pattern(&mut w, LEN, 16 << 10).await?;
                w.shutdown().await
            });
            sent?;
            got
        }));
    }
    let client_total = within(env.limit, "every client", async {
        let mut total = 0;
        for c in clients {
            total += c.await.unwrap().expect("client connection");
        }
        total
    })
    .await;
    let (server_total, _listener) = within(env.limit, "every server task", server)
        .await
        .unwrap();
    assert_eq!(client_total, N as u64 * LEN);
    assert_eq!(server_total, N as u64 * LEN);

    for (who, stack) in [("server", &env.server), ("client", &env.client)] {
        for (k, s) in stack.shard_stats().iter().enumerate() {
            assert!(
                s.packets_in > 0 && s.packets_out > 0,
                "{who} shard {k} carried nothing: {s:?}"
            );
        }
    }
    let table = env.server.connections();
    for c in table
        .connections
        .iter()
        .filter(|c| c.local.port() == addr.port())
    {
        assert_eq!(
            c.shard,
            shard_of(c.local.port(), c.remote.port(), SHARDS),
            "{c:?}"
        );
    }
    // Over UDP the answers to a shard's outgoing connections come back to that shard's
    // own socket, so `connect` took any port for a peer that is another stack: the
    // connections spread over the client's shards by task, whatever their ports.
    assert!(env.client.datapath_capabilities().replies_reach_the_shard);
    let table = env.client.connections();
    assert!(!table.connections.is_empty());
    let on = |k: usize| table.connections.iter().filter(|c| c.shard == k).count();
    assert!(on(0) > 0 && on(1) > 0, "{table}");
    no_strays(&sent);
}

/// Connections a sharded stack opens to its own listener use ports that land on the
/// connecting shard, so that both ends of each share a shard; to another stack's listener,
/// any port (the client's shard gets the answers on its own socket), so one port serves
/// connections to every remote port, as on one shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_ports_land_only_where_they_must() {
    let (env, sent) = env();
    let mut own = Vec::new();
    let mut other = Vec::new();
    for _ in 0..4 {
        own.push(env.client.bind("127.0.0.1:0").await.unwrap());
        other.push(env.server.bind("127.0.0.1:0").await.unwrap());
    }
    let mut streams = Vec::new();
    for (i, l) in own.iter().chain(&other).enumerate() {
        let addr = l.local_addr().unwrap();
        for _ in 0..8 {
            let s = within(env.limit, "connect", env.client.connect(addr))
                .await
                .unwrap();
            streams.push((i < own.len(), s));
        }
    }
    let mut remotes_of_port: std::collections::HashMap<u16, HashSet<u16>> = Default::default();
    let mut landing = 0;
    for (to_own, s) in &streams {
        let (local, peer) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
        let table = env.client.connections();
        let c = table
            .connections
            .iter()
            .find(|c| c.local == local && c.remote == peer)
            .expect("listed");
        let lands = c.shard == shard_of(local.port(), peer.port(), SHARDS);
        if *to_own {
            assert!(lands, "{c:?}");
        } else {
            landing += usize::from(lands);
            remotes_of_port
                .entry(local.port())
                .or_default()
                .insert(peer.port());
        }
    }
    // To the other stack's four listeners: ports that do not land (about half), and ports
    // shared between remote ports.
    assert!(
        landing < 32,
        "every one of 32 ports landed: landing was enforced"
    );
    assert!(
        remotes_of_port.values().any(|r| r.len() > 1),
        "no port served two remote ports: {remotes_of_port:?}"
    );
    drop(streams);
    no_strays(&sent);
}

/// A socket bound to a port first connects on the shard its ports steer to, so the peer's
/// answers (which arrive at that port's group of sockets) reach it; at least eight such
/// sockets, and more until they have covered both shards (the kernel's ports steered eight
/// times in a row to one shard in 1 run of 42: a chance of 1 in 128).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_socket_connects_on_the_shard_its_ports_steer_to() {
    let (env, sent) = env();
    let listener = env.server.bind(env.bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut shards_used = [false; SHARDS];
    for i in 0..32u8 {
        if i >= 8 && shards_used.iter().all(|u| *u) {
            break;
        }
        let socket = env.client.socket_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let local = socket.local_addr().unwrap();
        shards_used[shard_of(local.port(), addr.port(), SHARDS)] = true;
        let (client, accepted) = within(env.limit, "connect and accept", async {
            tokio::join!(socket.connect(addr), listener.accept())
        })
        .await;
        let mut client = client.unwrap();
        let (mut server, peer) = accepted.unwrap();
        assert_eq!(peer, local);
        client.write_all(&[i; 1000]).await.unwrap();
        let mut buf = [0u8; 1000];
        within(env.limit, "read", server.read_exact(&mut buf))
            .await
            .unwrap();
        assert_eq!(buf, [i; 1000]);
        server.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        within(env.limit, "read back", client.read_exact(&mut back))
            .await
            .unwrap();
        assert_eq!(&back, b"back");
    }
    assert!(
        shards_used.iter().filter(|u| **u).count() > 1,
        "32 bound ports all steered to one shard: {shards_used:?}"
    );
    no_strays(&sent);
}

/// A sharded listener's address is held until every shard let it go, and can be bound
/// again afterwards; a second bind while it is held is `AddrInUse`, also from another
/// stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_listener_address_is_claimed_and_released_whole() {
    let (env, _) = env();
    let other = sharded(Stack::builder());
    bind_twice_addr_in_use(&env, Some(&other)).await;
    let plain = Stack::builder()
        .datapath(UdpDatapath::new().unwrap())
        .build()
        .unwrap();
    let l = env.server.bind(env.bind).await.unwrap();
    let e = plain
        .bind(l.local_addr().unwrap())
        .await
        .expect_err("a stack of one shard binding a sharded listener's address");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
}

/// Accepted connections outlive their sharded listener: the shard that holds one keeps
/// its socket of the listener's group, and the group stays whole meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_connections_outlive_their_sharded_listener() {
    let (env, sent) = env();
    accepted_stream_outlives_listener(&env).await;
    no_strays(&sent);
}

/// The shared scenarios of the API, on sharded stacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_behaves_as_on_one_shard() {
    let (env, sent) = env();
    many_connections(&env, 200).await;
    accept_wakes_every_waiter(&env, 16).await;
    peek_then_read(&env).await;
    half_close_then_reply(&env).await;
    addresses_agree(&env).await;
    listener_is_a_stream(&env).await;
    drop_with_written_data_delivers_then_eof(&env, 1 << 20).await;
    family_mismatch_afnosupport(&env.client).await;
    no_strays(&sent);
    let table = env.server.connections();
    assert!(table.listeners.is_empty(), "{table}");
}

/// Dropping a sharded stack resets its connections on every shard, as a stack of one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_sharded_stack_resets_its_connections() {
    dropping_stack_resets(env().0).await;
}

/// Shards with reactors on threads of their own, like the default stack with
/// `RAWTCP_SHARDS=2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_on_threads_of_their_own() {
    let sent = Sent::default();
    let threaded = |_| {
        watched(Stack::builder(), &sent)
            .shards(SHARDS)
            .dedicated_thread(true)
            .datapath(UdpDatapath::new().unwrap())
            .build()
            .unwrap()
    };
    let env = Env {
        server: threaded(0),
        client: threaded(1),
        bind: "127.0.0.1:0".parse().unwrap(),
        limit: Duration::from_secs(20),
        quiet: Duration::from_millis(300),
    };
    many_connections(&env, 100).await;
    no_strays(&sent);
}

/// A datapath that cannot steer refuses to be split, with a message naming it.
#[tokio::test]
async fn a_datapath_that_cannot_steer_refuses_shards() {
    let net = rawtcp::datapath::sim::SimNetwork::new(1);
    let host = net.host([10, 0, 0, 1].into()).unwrap();
    let e = Stack::builder()
        .datapath(host)
        .shards(2)
        .build()
        .expect_err("sim with two shards");
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("sim"), "{e}");
    let one = Stack::builder()
        .datapath(net.host([10, 0, 0, 2].into()).unwrap())
        .shards(1)
        .build()
        .unwrap();
    assert_eq!(one.shard_count(), 1);
}

/// A task keeps to one shard: its connections all open there (so that it waits to receive
/// on one shard only); tasks are given the shards in turn, so that eight of them use both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_keeps_to_its_shard_and_tasks_take_turns() {
    let (env, sent) = env();
    let listener = env.server.bind(env.bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let shard_of_conn = |stack: &Stack, local: std::net::SocketAddr| {
        stack
            .connections()
            .connections
            .iter()
            .find(|c| c.local == local)
            .map(|c| c.shard)
            .expect("the connection in the table")
    };
    let mut mine = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let s = env.client.connect(addr).await.unwrap();
        mine.push(shard_of_conn(&env.client, s.local_addr().unwrap()));
        streams.push(s);
    }
    assert!(
        mine.iter().all(|k| *k == mine[0]),
        "one task, one shard: {mine:?}"
    );
    let mut theirs = Vec::new();
    for _ in 0..8 {
        let c = env.client.clone();
        let s = tokio::spawn(async move { c.connect(addr).await.unwrap() })
            .await
            .unwrap();
        theirs.push(shard_of_conn(&env.client, s.local_addr().unwrap()));
        streams.push(s);
    }
    for k in 0..SHARDS {
        assert_eq!(
            theirs.iter().filter(|s| **s == k).count(),
            8 / SHARDS,
            "tasks take the shards in turn: {theirs:?}"
        );
    }
    server.abort();
    no_strays(&sent);
}

/// Sharded listeners at port 0 each get a port of their own, also across stacks: the
/// kernel's choice for a `SO_REUSEPORT` socket may be a port where another group of the
/// same user is, which would join the two groups (and steer one stack's segments to the
/// other's sockets), so a group's port is never left to that choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_listeners_at_port_zero_never_share_a_port() {
    let (env, _) = env();
    const EACH: usize = 300;
    let mut ports = HashSet::new();
    let mut held = Vec::new();
    for _ in 0..EACH {
        for stack in [&env.server, &env.client] {
            let l = stack.bind(env.bind).await.expect("bind at port 0");
            let port = l.local_addr().unwrap().port();
            assert!(
                ports.insert(port),
                "port {port} given to two sharded listeners (after {} binds)",
                ports.len()
            );
            held.push(l);
        }
    }
}
