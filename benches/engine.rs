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

criterion_group!(benches, engine);
criterion_main!(benches);
