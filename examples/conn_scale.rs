//! How many established connections one process holds, and what each costs: rawtcp over the
//! simulated network and over UDP on loopback, next to `tokio::net` (the kernel's TCP) on
//! loopback, in one run.
//!
//! ```text
//! cargo run --release --example conn_scale                      # 8,000 connections per stack
//! cargo run --release --example conn_scale -- --n 100000 --only rawtcp
//! ```
//!
//! For each stack it opens N connections from a client to a server in this process (both
//! ends count: 2 × N endpoints), sends one byte each way on every one so that both ends are
//! established and have moved data, lets them go idle for two seconds (rawtcp gives an idle
//! connection's buffers back after one), and measures the memory that appeared: the
//! process's resident set (`/proc/self/statm`) plus the kernel's slab caches
//! (`/proc/slabinfo`, readable as root; without it only RSS is counted and the table says
//! so). It prints bytes per established endpoint, how long opening took, and the file
//! descriptors the stack used.
//!
//! The limits of this machine: 20,000 open files per process. `tokio::net` needs one per
//! endpoint, so it stops below 10,000 connections. rawtcp over the sim needs none; over UDP
//! each local port an outgoing connection uses is a UDP socket, and connections to different
//! destinations share ports (as Linux's `connect` shares them), so the server listens on
//! `--ports` addresses (default: enough for N / 12,000 connections per client port).
//!
//! Every loop is bounded: a connection that is not established within 60 s aborts the run.

use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
use rawtcp::Stack;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USAGE: &str = "usage: conn_scale [--n N] [--only sim|udp|tokio|rawtcp] [--ports P]";

/// Bytes the heap has handed out and not yet taken back: what the program holds, apart from
/// what the allocator keeps around it (freed chunks between live ones still count in RSS).
static HEAP_LIVE: AtomicI64 = AtomicI64::new(0);

/// The system allocator, counting live bytes.
struct Counting;

// SAFETY: every call is passed to `System` unchanged; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP_LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP_LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Memory the process and the kernel hold, in bytes.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: u64,
    slab: Option<u64>,
    heap: i64,
}

impl Memory {
    fn now() -> Memory {
        let page = 4096u64;
        let rss = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |p| p * page);
        Memory {
            rss,
            slab: slab_bytes(),
            heap: HEAP_LIVE.load(Ordering::Relaxed),
        }
    }

    /// Bytes that appeared since `before`: RSS plus slab when both readings have it.
    fn since(self, before: Memory) -> (u64, bool) {
        let rss = self.rss.saturating_sub(before.rss);
        match (self.slab, before.slab) {
            (Some(a), Some(b)) => (rss + a.saturating_sub(b), true),
            _ => (rss, false),
        }
    }
}

/// The kernel's slab caches in use, summed (`/proc/slabinfo`: active objects × size).
fn slab_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let mut total = 0u64;
    for line in text.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 3 {
            let active: u64 = f[1].parse().ok()?;
            let size: u64 = f[3].parse().ok()?;
            total += active * size;
        }
    }
    Some(total)
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

struct Row {
    name: &'static str,
    n: usize,
    per_endpoint: f64,
    /// Live heap bytes per endpoint (the part of `per_endpoint` the program holds).
    heap_per_endpoint: f64,
    with_slab: bool,
    open_time: Duration,
    fds: usize,
}

/// Connects `n` clients round robin to the server addresses, one byte each way on each, and
/// returns every stream (client and server ends) so that they stay open.
async fn open_rawtcp(
    client: &Stack,
    server: &Stack,
    binds: &[SocketAddr],
    n: usize,
) -> io::Result<(Vec<rawtcp::TcpStream>, Vec<rawtcp::TcpStream>)> {
    let mut listeners = Vec::new();
    for b in binds {
        listeners.push(server.bind(*b).await?);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<io::Result<_>>()?;
    let mut clients = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    // Bounded batches: connects in flight at once, each accepted at once.
    const WAVE: usize = 256;
    let mut next = 0;
    while next < n {
        let wave = WAVE.min(n - next);
        let mut pending = Vec::with_capacity(wave);
        for i in next..next + wave {
            let c = client.clone();
            let to = addrs[i % addrs.len()];
            pending.push(tokio::spawn(async move {
                let mut s = c.connect(to).await?;
                s.write_all(&[1]).await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                io::Result::Ok(s)
            }));
        }
        for i in next..next + wave {
            let l = &listeners[i % listeners.len()];
            let (mut s, _) = tokio::time::timeout(Duration::from_secs(60), l.accept())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "accept"))??;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await?;
            s.write_all(&b).await?;
            servers.push(s);
        }
        for p in pending {
            let s = tokio::time::timeout(Duration::from_secs(60), p)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))?
                .map_err(io::Error::other)??;
            clients.push(s);
        }
        next += wave;
    }
    Ok((clients, servers))
}

async fn open_tokio(
    n: usize,
) -> io::Result<(Vec<tokio::net::TcpStream>, Vec<tokio::net::TcpStream>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let mut clients = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        let (c, a) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        let (mut c, mut s) = (c?, a?.0);
        c.write_all(&[1]).await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        s.write_all(&b).await?;
        c.read_exact(&mut b).await?;
        clients.push(c);
        servers.push(s);
    }
    Ok((clients, servers))
}

fn report(name: &'static str, n: usize, before: Memory, fds_before: usize, t: Duration) -> Row {
    let now = Memory::now();
    let (bytes, with_slab) = now.since(before);
    Row {
        name,
        n,
        per_endpoint: bytes as f64 / (2 * n) as f64,
        heap_per_endpoint: (now.heap - before.heap) as f64 / (2 * n) as f64,
        with_slab,
        open_time: t,
        fds: open_fds().saturating_sub(fds_before),
    }
}

fn sim_row(n: usize, ports: usize) -> io::Result<Row> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    rt.block_on(async {
        let before = Memory::now();
        let fds = open_fds();
        let net = SimNetwork::new(1);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        net.set_default_link(LinkConfig::default().with_latency(Duration::from_micros(50)));
        let server = Stack::builder().datapath(net.host(a)?).build()?;
        let client = Stack::builder().datapath(net.host(b)?).build()?;
        let binds: Vec<SocketAddr> = (0..ports).map(|_| SocketAddr::new(a, 0)).collect();
        let t = std::time::Instant::now();
        let held = open_rawtcp(&client, &server, &binds, n).await?;
        let open = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let row = report("rawtcp, sim", n, before, fds, open);
        drop(held);
        Ok(row)
    })
}

fn udp_row(n: usize, ports: usize) -> io::Result<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let before = Memory::now();
        let fds = open_fds();
        let dp = |()| rawtcp::datapath::udp::UdpDatapath::new();
        let server = Stack::builder().datapath(dp(())?).build()?;
        let client = Stack::builder().datapath(dp(())?).build()?;
        let binds: Vec<SocketAddr> = (0..ports).map(|_| "127.0.0.1:0".parse().unwrap()).collect();
        let t = Instant::now();
        let held = open_rawtcp(&client, &server, &binds, n).await?;
        let open = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let row = report("rawtcp, udp", n, before, fds, open);
        drop(held);
        Ok(row)
    })
}

fn tokio_row(n: usize) -> io::Result<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let before = Memory::now();
        let fds = open_fds();
        let t = Instant::now();
        let held = open_tokio(n).await?;
        let open = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let row = report("tokio::net", n, before, fds, open);
        drop(held);
        Ok(row)
    })
}

fn main() {
    let mut n = 8_000usize;
    let mut only: Option<String> = None;
    let mut ports: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{USAGE}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--n" => n = value().parse().unwrap_or(n).clamp(1, 1_000_000),
            "--only" => only = Some(value()),
            "--ports" => ports = value().parse().ok(),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    // Each client port serves one connection per server address: enough addresses that
    // every client port is shared across destinations well below the file limit.
    let ports = ports.unwrap_or(n.div_ceil(12_000).max(1));
    println!(
        "$ conn_scale --n {n} --ports {ports}{}",
        only.as_deref()
            .map_or(String::new(), |o| format!(" --only {o}"))
    );
    let wants = |k: &str| match only.as_deref() {
        None => true,
        Some("rawtcp") => k != "tokio",
        Some(o) => o == k,
    };
    let mut rows = Vec::new();
    if wants("sim") {
        rows.push(sim_row(n, ports));
    }
    if wants("udp") {
        rows.push(udp_row(n, ports));
    }
    if wants("tokio") {
        // Two descriptors per connection and a 20,000-file limit.
        let limit = 9_000;
        if n > limit {
            println!(
                "tokio::net: {n} connections need {} file descriptors; measuring {limit}",
                2 * n
            );
        }
        rows.push(tokio_row(n.min(limit)));
    }
    println!(
        "\n{:<14} {:>9} {:>20} {:>10} {:>12} {:>8}",
        "stack", "conns", "bytes per endpoint", "live heap", "open time", "fds"
    );
    let mut kernel = None;
    for r in &rows {
        match r {
            Ok(r) => {
                println!(
                    "{:<14} {:>9} {:>12.0} {:>7} {:>10.0} {:>12.2?} {:>8}",
                    r.name,
                    r.n,
                    r.per_endpoint,
                    if r.with_slab { "(+slab)" } else { "(RSS)" },
                    r.heap_per_endpoint,
                    r.open_time,
                    r.fds
                );
                if r.name == "tokio::net" {
                    kernel = Some(r.per_endpoint);
                }
            }
            Err(e) => println!("failed: {e}"),
        }
    }
    if let Some(k) = kernel {
        for r in rows.iter().flatten().filter(|r| r.name != "tokio::net") {
            println!(
                "{} / tokio::net memory per endpoint: {:.2}",
                r.name,
                r.per_endpoint / k
            );
        }
    }
}
