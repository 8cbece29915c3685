//! Engine throughput: two connections back to back through the in-memory network of
//! `tests/netem`, with no delay, so that the figures measure the engines (segment generation
//! and processing, buffers, timers) and the harness, not a simulated path.
//!
//! Each iteration is a whole connection: handshake, 16 MB client → server, FIN exchange.
//! The `bytes` group reports application bytes per second, the `segments` group the segments
//! the sending engine emitted per second. The lossy case drops 1 % of segments each way.
//! The measured runs neither generate nor check the stream's contents (a run that does is
//! made once per case beforehand), so what remains is the engines' work plus the harness's
//! queueing and copying of segments.
//!
//! The comparison with smoltcp doing the same work (complete IPv4 packets with checksums, the
//! ratio printed) is `benches/engine_vs_smoltcp.rs`, a binary of its own because it counts
//! allocations with a global allocator.

#[path = "../tests/netem/mod.rs"]
mod netem;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netem::{transfer, Link, Opts, Outcome};
use std::hint::black_box;
use std::time::Duration;

const BYTES: u64 = 16 << 20;

/// The cases: a name and the link used both ways.
fn cases() -> [(&'static str, Link); 2] {
    [
        ("lossless", Link::ideal()),
        (
            "loss_1pct",
            Link {
                loss: 0.01,
                ..Link::ideal()
            },
        ),
    ]
}

/// The measured runs: no trace, and the stream contents neither generated nor checked.
fn opts(link: &Link) -> Opts {
    let mut o = Opts::new(0x5eed, BYTES).link(link.clone());
    o.trace_len = 0;
    o.verify_data = false;
    o
}

/// Two runs outside the measurement: one checking every byte, one as measured. Both must
/// succeed and emit the same segments (runs are deterministic), whose count is returned.
fn reference(link: &Link) -> Outcome {
    let checked = transfer(&Opts {
        verify_data: true,
        ..opts(link)
    });
    let measured = transfer(&opts(link));
    for out in [&checked, &measured] {
        if let Err(e) = out.check() {
            panic!("benchmark transfer failed: {e}");
        }
    }
    assert!(checked.verified);
    assert_eq!(checked.client.segments, measured.client.segments);
    assert_eq!(checked.elapsed, measured.elapsed);
    measured
}

fn engine(c: &mut Criterion) {
    let runs: Vec<_> = cases()
        .into_iter()
        .map(|(name, link)| {
            let out = reference(&link);
            (name, link, out)
        })
        .collect();

    let mut bytes = c.benchmark_group("bytes");
    bytes
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(BYTES));
    for (name, link, _) in &runs {
        let o = opts(link);
        bytes.bench_with_input(BenchmarkId::new("transfer_16MB", name), &o, |b, o| {
            b.iter(|| black_box(transfer(black_box(o))))
        });
    }
    bytes.finish();

    let mut segments = c.benchmark_group("segments");
    segments
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, link, out) in &runs {
        let o = opts(link);
        segments.throughput(Throughput::Elements(out.client.segments));
        segments.bench_with_input(BenchmarkId::new("sender_segments", name), &o, |b, o| {
            b.iter(|| black_box(transfer(black_box(o))))
        });
    }
    segments.finish();
}

/// What answering one SYN costs the engine: the packet parsed and its checksum verified, the
/// SYN+ACK built and emitted with its checksum. `cookie` keeps nothing (a SYN cookie,
/// `proto::syncookie`); `syn_queue` is the ordinary passive open, the connection dropped
/// afterwards. Reported as SYNs per second on one core (the goal: 100,000 and more).
fn syn(c: &mut Criterion) {
    use rawtcp::proto::syncookie::SynCookies;
    use rawtcp::proto::{Config, Connection, Instant};
    use rawtcp::wire::{emit_tcp_packet, parse_tcp_packet, TcpFlags, TcpRepr};
    use std::net::SocketAddr;

    let server: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let mut syn = TcpRepr {
        src_port: client.port(),
        dst_port: server.port(),
        seq: 12345,
        flags: TcpFlags::SYN,
        window: 64240,
        ..TcpRepr::default()
    };
    syn.options.mss = Some(1460);
    syn.options.window_scale = Some(7);
    syn.options.sack_permitted = true;
    syn.options.timestamps = Some((99, 0));
    let mut packet = [0u8; 128];
    let n = emit_tcp_packet(client.ip(), server.ip(), 64, &syn, &[], &mut packet).unwrap();
    let packet = &packet[..n];
    let cfg = Config::default();
    let now = Instant::from_secs(100);
    let mut out = [0u8; 128];

    let mut g = c.benchmark_group("syn");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let mut cookies = SynCookies::new();
    g.bench_function("cookie", |b| {
        b.iter(|| {
            let (_, seg, _) = parse_tcp_packet(black_box(packet), true).unwrap();
            let iss = cookies.make(server, client, &SynCookies::clamp(&seg), now);
            let reply =
                Connection::cookie_syn_ack(cfg.clone(), server, client, &seg, iss, now).unwrap();
            emit_tcp_packet(server.ip(), client.ip(), 64, &reply, &[], &mut out).unwrap()
        })
    });
    g.bench_function("syn_queue", |b| {
        b.iter(|| {
            let (_, seg, _) = parse_tcp_packet(black_box(packet), true).unwrap();
            let mut conn = Connection::accept(
                cfg.clone(),
                server,
                client,
                &seg,
                rawtcp::proto::SeqNum(777),
                now,
            )
            .unwrap();
            let reply = conn.poll_transmit(now, &mut []).unwrap().repr;
            emit_tcp_packet(server.ip(), client.ip(), 64, &reply, &[], &mut out).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, engine, syn);
criterion_main!(benches);
