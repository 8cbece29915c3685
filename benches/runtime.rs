//! rawtcp against `tokio::net` (the kernel's TCP) on loopback, side by side.
//!
//! ```text
//! cargo bench --bench runtime
//! cargo bench --bench runtime -- latency     # one group only
//! ```
//!
//! One multi-threaded tokio runtime hosts both: a rawtcp `Stack` built inside it with
//! `Stack::builder().build()` (the datapath named by `RAWTCP_DATAPATH`, UDP encapsulation on
//! 127.0.0.1 by default) and `tokio::net` sockets on 127.0.0.1. Each criterion group measures
//! one metric with a `rawtcp` and a `tokio` bench, so the report shows them next to each
//! other:
//!
//! - `bulk_throughput`: one connection, 32 MiB per iteration (the receiver answers one byte
//!   when it has them all), `Throughput::Bytes`;
//! - `latency_64b`: one connection with Nagle off, a 64-byte ping answered by a 64-byte pong,
//!   time per round trip;
//! - `connections`: connect, accept, 1 byte from the client, the server reads it and closes,
//!   the client sees the end of the stream and closes; `Throughput::Elements`;
//! - `connections_from_main`: the same loop run by `block_on` itself, on a thread that is not
//!   one of the runtime's workers, as `#[tokio::main]` runs an application's `main` (every
//!   other group runs its loops in tasks of the runtime);
//! - `flows_8`: 8 connections from tasks of their own carrying 32 MiB in all per iteration in
//!   parallel, on rawtcp with one shard, rawtcp with two (`StackBuilder::shards`) and
//!   `tokio::net`, with the ratio two shards / one shard.
//!
//! With `RAWTCP_BENCH_STACK=default` the rawtcp side uses a stack built as the process-wide
//! default stack is (`dedicated_thread(true)`: its reactor on a thread and runtime of its
//! own), which is what `rawtcp::TcpStream::connect` and `TcpListener::bind` use.
//!
//! Every iteration is timed by this file (`iter_custom`); after each group it prints the
//! mean of the measured samples for both and the ratio rawtcp / tokio of the metric
//! (MB/s, microseconds per round trip, connections per second), the CPU time the process
//! spent per iteration on each side (user space and kernel, from `getrusage`, every thread
//! counted) with how many cores that kept busy, rawtcp's retransmission
//! counters, the stack's counters of who did the work (the reactor's polls and why it was
//! woken, `StackStats::reactor_wakes`), and for `connections` the median, 99th percentile
//! and maximum time of one connection, how many took over 100 ms, and how many TIME-WAIT
//! sockets the kernel held when it began (they slow the kernel's connects). Each batch of
//! iterations must finish within 60 seconds.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use rawtcp::Stack;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Runtime;

/// Samples per bench; the ratio is computed from the last `SAMPLES` batches (the measured
/// ones, after criterion's warm-up).
const SAMPLES: usize = 10;
/// Bytes per bulk iteration.
const BULK: usize = 32 << 20;
/// Size of each bulk write and read.
const CHUNK: usize = 256 << 10;
/// Ping and pong size.
const PING: usize = 64;
/// A connection that takes longer than this is counted as slow.
const SLOW_CONNECTION: Duration = Duration::from_millis(100);
/// The longest a batch of iterations may take.
const BATCH_LIMIT: Duration = Duration::from_secs(60);

/// A byte stream of either implementation.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}
type Conn = Box<dyn Io>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Imp {
    Rawtcp,
    Tokio,
}

impl Imp {
    fn name(self) -> &'static str {
        match self {
            Imp::Rawtcp => "rawtcp",
            Imp::Tokio => "tokio",
        }
    }
}

/// A listener of either implementation.
enum Listener {
    Rawtcp(rawtcp::TcpListener),
    Tokio(tokio::net::TcpListener),
}

impl Listener {
    async fn bind(imp: Imp, stack: &Stack) -> io::Result<Listener> {
        Ok(match imp {
            Imp::Rawtcp => Listener::Rawtcp(stack.bind("127.0.0.1:0").await?),
            Imp::Tokio => Listener::Tokio(tokio::net::TcpListener::bind("127.0.0.1:0").await?),
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Rawtcp(l) => l.local_addr(),
            Listener::Tokio(l) => l.local_addr(),
        }
    }

    async fn accept(&self, nodelay: bool) -> io::Result<Conn> {
        Ok(match self {
            Listener::Rawtcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(nodelay)?;
                Box::new(s)
            }
            Listener::Tokio(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(nodelay)?;
                Box::new(s)
            }
        })
    }
}

/// A client connection of either implementation; the rawtcp one is also returned as such,
/// for its `info()`.
enum Client {
    Rawtcp(rawtcp::TcpStream),
    Tokio(tokio::net::TcpStream),
}

impl Client {
    async fn connect(
        imp: Imp,
        stack: &Stack,
        addr: SocketAddr,
        nodelay: bool,
    ) -> io::Result<Client> {
        Ok(match imp {
            Imp::Rawtcp => {
                let s = stack.connect(addr).await?;
                s.set_nodelay(nodelay)?;
                Client::Rawtcp(s)
            }
            Imp::Tokio => {
                let s = tokio::net::TcpStream::connect(addr).await?;
                s.set_nodelay(nodelay)?;
                Client::Tokio(s)
            }
        })
    }

    fn io(&mut self) -> &mut dyn Io {
        match self {
            Client::Rawtcp(s) => s,
            Client::Tokio(s) => s,
        }
    }

    fn tcp_info(&self) -> Option<rawtcp::TcpInfo> {
        match self {
            Client::Rawtcp(s) => s.info().ok(),
            Client::Tokio(_) => None,
        }
    }

    fn rawtcp_info(&self) -> Option<String> {
        self.tcp_info().map(|i| {
            format!(
                "retransmissions {} (timeouts {}, fast {}), srtt {:?}, min_rtt {:?}, mss {}",
                i.retransmissions,
                i.timeouts,
                i.fast_retransmits,
                i.srtt.unwrap_or_default(),
                i.min_rtt.unwrap_or_default(),
                i.send_mss
            )
        })
    }
}

/// One batch of iterations criterion asked for: how many, the time they took, and the
/// process's CPU time meanwhile.
struct Sample {
    iters: u64,
    wall: Duration,
    cpu: Cpu,
}

impl Sample {
    /// Runs a batch of `iters` iterations (`f` returns its result and the time the
    /// iterations took, timed around them alone) and keeps it in `samples` with the
    /// process's CPU time meanwhile. Returns the result and that time, for criterion.
    fn record<T>(
        samples: &mut Vec<Sample>,
        iters: u64,
        f: impl FnOnce() -> (T, Duration),
    ) -> (T, Duration) {
        let ((r, wall), cpu) = Cpu::measure(f);
        samples.push(Sample { iters, wall, cpu });
        (r, wall)
    }
}

/// CPU time the whole process used, in user space and in the kernel (`getrusage` with
/// `RUSAGE_SELF`): every thread's, so both ends of a connection, the runtime's workers and a
/// rawtcp reactor's thread of its own. Both implementations run in this one process, one
/// after the other, so a batch's figure is what that implementation cost.
#[derive(Clone, Copy, Default)]
struct Cpu {
    user: Duration,
    sys: Duration,
}

impl Cpu {
    fn now() -> Cpu {
        use nix::sys::resource::{getrusage, UsageWho};
        let time = |t: nix::sys::time::TimeVal| {
            Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
        };
        match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(u) => Cpu {
                user: time(u.user_time()),
                sys: time(u.system_time()),
            },
            Err(_) => Cpu::default(),
        }
    }

    /// The CPU time used since `start`.
    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(start.user),
            sys: self.sys.saturating_sub(start.sys),
        }
    }

    /// Runs `f` and returns its result with the CPU time it took.
    fn measure<T>(f: impl FnOnce() -> T) -> (T, Cpu) {
        let start = Cpu::now();
        let r = f();
        (r, Cpu::now().since(start))
    }
}

/// The batches of each implementation.
#[derive(Default)]
struct Record {
    rawtcp: Vec<Sample>,
    tokio: Vec<Sample>,
}

/// Means over the measured batches (the last `SAMPLES`, after criterion's warm-up).
struct Means {
    /// Time per iteration.
    wall: Duration,
    /// CPU time per iteration, user and kernel.
    user: Duration,
    sys: Duration,
    /// Cores busy on average: CPU time over time.
    cores: f64,
}

impl Means {
    fn of(batches: &[Sample]) -> Option<Means> {
        let measured = &batches[batches.len().saturating_sub(SAMPLES)..];
        let iters: u64 = measured.iter().map(|b| b.iters).sum();
        let wall: Duration = measured.iter().map(|b| b.wall).sum();
        let user: Duration = measured.iter().map(|b| b.cpu.user).sum();
        let sys: Duration = measured.iter().map(|b| b.cpu.sys).sum();
        (iters > 0 && !wall.is_zero()).then(|| Means {
            wall: wall.div_f64(iters as f64),
            user: user.div_f64(iters as f64),
            sys: sys.div_f64(iters as f64),
            cores: (user + sys).as_secs_f64() / wall.as_secs_f64(),
        })
    }

    /// "5.31µs user + 3.52µs kernel, 1.00 cores".
    fn cpu(&self) -> String {
        format!(
            "{:.2?} user + {:.2?} kernel, {:.2} cores",
            self.user, self.sys, self.cores
        )
    }
}

impl Record {
    fn of(&mut self, imp: Imp) -> &mut Vec<Sample> {
        match imp {
            Imp::Rawtcp => &mut self.rawtcp,
            Imp::Tokio => &mut self.tokio,
        }
    }

    /// Prints both means and the ratio of the metric, rawtcp / tokio, then the CPU time each
    /// took per iteration. `per_iter` turns a mean time per iteration into the metric's value
    /// and unit.
    fn print_ratio(&self, group: &str, per_iter: impl Fn(Duration) -> (f64, &'static str)) {
        let (Some(r), Some(t)) = (Means::of(&self.rawtcp), Means::of(&self.tokio)) else {
            return;
        };
        let ((rv, unit), (tv, _)) = (per_iter(r.wall), per_iter(t.wall));
        println!(
            "{group}: rawtcp {rv:.2} {unit} ({:.2?}/iter), tokio {tv:.2} {unit} ({:.2?}/iter) \
             => ratio rawtcp/tokio {:.3} ({unit})",
            r.wall,
            t.wall,
            rv / tv
        );
        println!(
            "{group}: CPU per iteration (the whole process): rawtcp {}; tokio {}",
            r.cpu(),
            t.cpu()
        );
    }
}

/// Runs `f` in `block_on` itself, outside the runtime's workers, as `#[tokio::main]` runs
/// `main`, and fails the bench if it outlasts `BATCH_LIMIT`.
fn run_here<T>(rt: &Runtime, what: &str, f: impl Future<Output = T>) -> T {
    rt.block_on(async {
        tokio::time::timeout(BATCH_LIMIT, f)
            .await
            .unwrap_or_else(|_| panic!("{what}: no result within {BATCH_LIMIT:?}"))
    })
}

/// Runs `f` on the runtime's workers and fails the bench if it outlasts `BATCH_LIMIT`.
fn run<T: Send + 'static>(
    rt: &Runtime,
    what: &str,
    f: impl Future<Output = T> + Send + 'static,
) -> T {
    rt.block_on(async {
        match tokio::time::timeout(BATCH_LIMIT, tokio::spawn(f)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("{what}: task failed: {e}"),
            Err(_) => panic!("{what}: no result within {BATCH_LIMIT:?}"),
        }
    })
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// One connection per implementation; each iteration sends `BULK` bytes and waits for the
/// receiver's one-byte answer.
fn bulk_throughput(c: &mut Criterion, rt: &Runtime, stack: &Stack) {
    let mut record = Record::default();
    let mut group = c.benchmark_group("bulk_throughput");
    configure(&mut group);
    group
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(BULK as u64));
    for imp in [Imp::Rawtcp, Imp::Tokio] {
        let stack = stack.clone();
        let mut client = Some(run(rt, "bulk setup", async move {
            let listener = Listener::bind(imp, &stack).await.expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            let server = tokio::spawn(async move {
                let s = listener.accept(false).await.expect("accept");
                bulk_receiver(s).await
            });
            let c = Client::connect(imp, &stack, addr, false)
                .await
                .expect("connect");
            drop(server); // runs until the client closes
            c
        }));
        let samples = record.of(imp);
        group.bench_function(imp.name(), |b| {
            b.iter_custom(|iters| {
                let mut c = client.take().expect("client");
                let (c, dt) = Sample::record(samples, iters, || {
                    run(rt, "bulk", async move {
                        let data = vec![0x5a_u8; CHUNK];
                        let mut ack = [0u8; 1];
                        let t = Instant::now();
                        for _ in 0..iters {
                            let s = c.io();
                            for _ in 0..BULK / CHUNK {
                                s.write_all(&data).await.expect("bulk write");
                            }
                            s.read_exact(&mut ack).await.expect("bulk answer");
                        }
                        (c, t.elapsed())
                    })
                });
                client = Some(c);
                dt
            })
        });
        if let Some(line) = client.as_ref().and_then(Client::rawtcp_info) {
            println!("bulk_throughput/{}: sender {line}", imp.name());
        }
        drop(client);
    }
    group.finish();
    record.print_ratio("bulk_throughput", |t| {
        (BULK as f64 / 1e6 / t.as_secs_f64(), "MB/s")
    });
    let st = stack.stats();
    println!(
        "rawtcp stack after the bulk group: packets in {} out {}, reactor polls {} ({})",
        st.packets_in,
        st.packets_out,
        st.reactor_polls,
        wakes(&st.reactor_wakes)
    );
}

/// Why the reactor was asked to run, in words.
fn wakes(w: &rawtcp::ReactorWakes) -> String {
    format!("wake-ups asked for: {w}")
}

/// Reads `BULK` bytes at a time and answers each with one byte, until the end of the stream.
async fn bulk_receiver(s: Conn) {
    answering_receiver(s, BULK).await
}

/// Reads `per` bytes at a time and answers each with one byte, until the end of the stream.
async fn answering_receiver(mut s: Conn, per: usize) {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got += n,
        }
        while got >= per {
            got -= per;
            if s.write_all(&[1]).await.is_err() {
                return;
            }
        }
    }
}

/// One connection per implementation, Nagle off; each iteration is one 64-byte round trip.
fn latency_64b(c: &mut Criterion, rt: &Runtime, stack: &Stack) {
    let mut record = Record::default();
    let mut group = c.benchmark_group("latency_64b");
    configure(&mut group);
    for imp in [Imp::Rawtcp, Imp::Tokio] {
        let stack = stack.clone();
        let mut client = Some(run(rt, "latency setup", async move {
            let listener = Listener::bind(imp, &stack).await.expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            let server = tokio::spawn(async move {
                let mut s = listener.accept(true).await.expect("accept");
                let mut buf = [0u8; PING];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
            let c = Client::connect(imp, &stack, addr, true)
                .await
                .expect("connect");
            drop(server);
            c
        }));
        let samples = record.of(imp);
        group.bench_function(imp.name(), |b| {
            b.iter_custom(|iters| {
                let mut c = client.take().expect("client");
                let (c, dt) = Sample::record(samples, iters, || {
                    run(rt, "latency", async move {
                        let ping = [0x70_u8; PING];
                        let mut pong = [0u8; PING];
                        let t = Instant::now();
                        for _ in 0..iters {
                            let s = c.io();
                            s.write_all(&ping).await.expect("ping");
                            s.read_exact(&mut pong).await.expect("pong");
                        }
                        (c, t.elapsed())
                    })
                });
                client = Some(c);
                dt
            })
        });
        if let Some(line) = client.as_ref().and_then(Client::rawtcp_info) {
            println!("latency_64b/{}: client {line}", imp.name());
        }
        drop(client);
    }
    group.finish();
    record.print_ratio("latency_64b", |t| {
        (t.as_secs_f64() * 1e6, "us per round trip")
    });
    let st = stack.stats();
    println!(
        "rawtcp stack after the latency group: packets in {} out {}, writes sent by the writer \
         itself {}, receive batches handled by a waiting task {}, reactor polls {} ({})",
        st.packets_in,
        st.packets_out,
        st.inline_transmits,
        st.inline_receives,
        st.reactor_polls,
        wakes(&st.reactor_wakes)
    );
}

/// A listener per implementation whose server reads one byte from each connection and
/// closes it; each iteration connects, writes one byte, waits for the end of the stream and
/// closes.
fn connections(c: &mut Criterion, rt: &Runtime, stack: &Stack, from_main: bool) {
    let name = if from_main {
        "connections_from_main"
    } else {
        "connections"
    };
    let mut record = Record::default();
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    for imp in [Imp::Rawtcp, Imp::Tokio] {
        let s = stack.clone();
        let (addr, server) = run(rt, "connections setup", async move {
            let listener = Listener::bind(imp, &s).await.expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            let server = tokio::spawn(async move {
                loop {
                    let Ok(mut s) = listener.accept(true).await else {
                        return;
                    };
                    tokio::spawn(async move {
                        let mut one = [0u8; 1];
                        let _ = s.read_exact(&mut one).await;
                        // Dropping closes: the server sends the first FIN.
                    });
                }
            });
            (addr, server)
        });
        let samples = record.of(imp);
        // The kernel's connects slow down with the TIME-WAIT sockets earlier runs left
        // (tokio's side only: rawtcp keeps its own in its table), so the figure is printed
        // beside the result.
        let kernel_tw_before = kernel_time_wait();
        // How long each connection took, warm-up included.
        let mut each: Vec<Duration> = Vec::new();
        group.bench_function(imp.name(), |b| {
            b.iter_custom(|iters| {
                let stack = stack.clone();
                let connect_loop = async move {
                    let mut rest = [0u8; 1];
                    let mut times = Vec::with_capacity(iters as usize);
                    let t = Instant::now();
                    for _ in 0..iters {
                        let t1 = Instant::now();
                        let mut c = Client::connect(imp, &stack, addr, true)
                            .await
                            .expect("connect");
                        let s = c.io();
                        s.write_all(&[1]).await.expect("write");
                        let n = s.read(&mut rest).await.expect("read");
                        assert_eq!(n, 0, "the server sends nothing");
                        times.push(t1.elapsed());
                    }
                    (times, t.elapsed())
                };
                let (times, dt) = Sample::record(samples, iters, || {
                    if from_main {
                        run_here(rt, name, connect_loop)
                    } else {
                        run(rt, name, connect_loop)
                    }
                });
                each.extend(times);
                dt
            })
        });
        each.sort();
        if let (Some(median), Some(p99), Some(max)) = (
            each.get(each.len() / 2),
            each.get(each.len() * 99 / 100),
            each.last(),
        ) {
            let slow = each.iter().filter(|t| **t > SLOW_CONNECTION).count();
            let tw = kernel_tw_before.map_or_else(|| "unknown".to_string(), |n| n.to_string());
            println!(
                "{name}/{}: {} connections (warm-up included): median {median:.2?}, \
                 p99 {p99:.2?}, max {max:.2?}; {slow} took over {SLOW_CONNECTION:?}; \
                 kernel TIME-WAIT sockets at the start: {tw}",
                imp.name(),
                each.len()
            );
        }
        server.abort();
    }
    group.finish();
    record.print_ratio(name, |t| (1.0 / t.as_secs_f64(), "connections/s"));
    let st = stack.stats();
    println!(
        "rawtcp stack after the {name} group: connections in table {}, packets in {} out {}, \
         sent by writers themselves {}, receive batches handled by a waiting task {}, reactor \
         polls {} ({}), hand-overs the reactor found left 1 ms or more {}, resets sent {}, SYNs dropped {}, malformed {}",
        st.connections,
        st.packets_in,
        st.packets_out,
        st.inline_transmits,
        st.inline_receives,
        st.reactor_polls,
        wakes(&st.reactor_wakes),
        st.watchdog_rescues,
        st.resets_sent,
        st.syn_dropped,
        st.malformed
    );
}

/// The kernel's TCP sockets in TIME-WAIT (`tw` in `/proc/net/sockstat`), where Linux says.
fn kernel_time_wait() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let tcp = stat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = tcp.split_whitespace();
    words.find(|w| *w == "tw")?;
    words.next()?.parse().ok()
}

/// Parallel flows in `flows_8`.
const FLOWS: usize = 8;

/// `FLOWS` connections on one stack (or `tokio::net`) carrying `BULK` bytes in all per
/// iteration, `BULK / FLOWS` each, in parallel: rawtcp with one shard, rawtcp with two,
/// `tokio::net`. Prints the aggregate throughput of each and the ratios two shards / one
/// shard and two shards / tokio (goal of issue 9: two shards ≥ 1.5× one).
fn flows_8(c: &mut Criterion, rt: &Runtime, dedicated: bool) {
    let mut group = c.benchmark_group("flows_8");
    configure(&mut group);
    group
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(BULK as u64));
    let per = BULK / FLOWS;
    let mut means = Vec::new();
    for (name, shards) in [
        ("rawtcp_1_shard", Some(1)),
        ("rawtcp_2_shards", Some(2)),
        ("tokio", None),
    ] {
        let stack = {
            let _in_runtime = rt.enter();
            Stack::builder()
                .dedicated_thread(dedicated)
                .shards(shards.unwrap_or(1))
                .build()
                .expect("rawtcp stack")
        };
        let imp = if shards.is_some() {
            Imp::Rawtcp
        } else {
            Imp::Tokio
        };
        let s = stack.clone();
        let mut clients = Some(run(rt, "flows setup", async move {
            let listener = Listener::bind(imp, &s).await.expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            let server = tokio::spawn(async move {
                for _ in 0..FLOWS {
                    let conn = listener.accept(false).await.expect("accept");
                    tokio::spawn(answering_receiver(conn, per));
                }
            });
            let mut clients = Vec::with_capacity(FLOWS);
            for _ in 0..FLOWS {
                // Each from a task of its own, as separate clients connect: a sharded
                // stack opens a task's connections on that task's shard.
                let s = s.clone();
                let c = tokio::spawn(async move { Client::connect(imp, &s, addr, false).await })
                    .await
                    .expect("connect task")
                    .expect("connect");
                clients.push(c);
            }
            server.await.expect("accepts");
            clients
        }));
        let mut samples = Vec::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let cs = clients.take().expect("clients");
                let (cs, dt) = Sample::record(&mut samples, iters, || {
                    run(rt, "flows", async move {
                        let t = Instant::now();
                        let tasks: Vec<_> = cs
                            .into_iter()
                            .map(|mut c| {
                                tokio::spawn(async move {
                                    let data = vec![0x5a_u8; CHUNK.min(per)];
                                    let mut ack = [0u8; 1];
                                    for _ in 0..iters {
                                        let s = c.io();
                                        for _ in 0..per / data.len() {
                                            s.write_all(&data).await.expect("flow write");
                                        }
                                        s.read_exact(&mut ack).await.expect("flow answer");
                                    }
                                    c
                                })
                            })
                            .collect();
                        let mut cs = Vec::with_capacity(FLOWS);
                        for t in tasks {
                            cs.push(t.await.expect("flow task"));
                        }
                        (cs, t.elapsed())
                    })
                });
                clients = Some(cs);
                dt
            })
        });
        if let Some(cs) = clients.take().filter(|_| shards.is_some()) {
            // What the senders' loss detection did on a path that loses nothing.
            let infos: Vec<_> = cs.iter().filter_map(Client::tcp_info).collect();
            let sum = |f: fn(&rawtcp::TcpInfo) -> u64| infos.iter().map(f).sum::<u64>();
            println!(
                "flows_8 {name}: the writers' retransmissions {} (spurious {}), tail loss \
                 probes {}, lost by RACK {}, reordering seen on {} of {}",
                sum(|i| i.retransmissions),
                sum(|i| i.spurious_retransmits),
                sum(|i| i.tlp_probes),
                sum(|i| i.rack_lost),
                infos.iter().filter(|i| i.reordering_seen).count(),
                infos.len()
            );
        }
        if shards.is_some() {
            let st = stack.stats();
            println!(
                "flows_8 {name}: packets in {} out {}, inline receives {}, reactor polls {}, \
                 watchdog rescues {} ({})",
                st.packets_in,
                st.packets_out,
                st.inline_receives,
                st.reactor_polls,
                st.watchdog_rescues,
                wakes(&st.reactor_wakes)
            );
        }
        means.push((name, Means::of(&samples)));
    }
    group.finish();
    let rate = |m: &Means| BULK as f64 / 1e6 / m.wall.as_secs_f64();
    if let [(_, Some(one)), (_, Some(two)), (_, Some(kernel))] = &means[..] {
        let (r1, r2, rk) = (rate(one), rate(two), rate(kernel));
        println!(
            "flows_8: rawtcp 1 shard {r1:.0} MB/s, 2 shards {r2:.0} MB/s, tokio {rk:.0} MB/s \
             => 2 shards / 1 shard {:.2}, 2 shards / tokio {:.3}, 1 shard / tokio {:.3}",
            r2 / r1,
            r2 / rk,
            r1 / rk
        );
        println!(
            "flows_8: CPU per iteration (the whole process): rawtcp 1 shard {}; 2 shards {}; tokio {}",
            one.cpu(),
            two.cpu(),
            kernel.cpu()
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dedicated = std::env::var("RAWTCP_BENCH_STACK").is_ok_and(|v| v == "default");
    let stack = {
        let _in_runtime = rt.enter();
        Stack::builder()
            .dedicated_thread(dedicated)
            .build()
            .expect("rawtcp stack")
    };
    println!(
        "rawtcp on the {} datapath (reactor {}), tokio::net on the kernel's TCP; {} worker threads",
        stack.datapath_name(),
        if dedicated {
            "on a thread of its own, as the default stack's"
        } else {
            "on the benchmark's runtime"
        },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    bulk_throughput(&mut c, &rt, &stack);
    latency_64b(&mut c, &rt, &stack);
    connections(&mut c, &rt, &stack, false);
    connections(&mut c, &rt, &stack, true);
    drop(stack);
    flows_8(&mut c, &rt, dedicated);
    c.final_summary();
}
