//! Goodput under random loss, next to the Mathis bound, for each congestion controller.
//!
//! ```text
//! cargo run --release --example loss_bench                          # the default grid
//! cargo run --release --example loss_bench -- --rtt 2 --loss 1      # one cell
//! cargo run --release --example loss_bench -- --cc newreno,cubic,bbr --duration 120
//! cargo run --release --example loss_bench -- --bandwidth none      # no bottleneck
//! ```
//!
//! This example owns the benchmark: for every RTT × loss cell and every congestion controller
//! it runs ONE bulk transfer (client to server) over the simulated network
//! (`rawtcp::datapath::sim`) on a current-thread runtime whose tokio clock is paused, so
//! network time is virtual and a minute of transfer costs only the CPU to move its bytes.
//! Goodput is the bytes the server application read (checked against a position-dependent
//! pattern) divided by the virtual time from the end of the handshake to the end of the
//! measurement, slow start included.
//!
//! The path: one-way latency RTT/2 each way, MTU 1500, a bottleneck of 1 Gbit/s each way with
//! a drop-tail queue (packets are serialised, so a window's segments arrive spread out as on
//! a real link), and random loss ON THE DATA DIRECTION ONLY (client to server); the ACK
//! direction loses nothing. Every cell uses the same simulator seed and fixed initial
//! sequence numbers, so every controller sees the same loss draws and a run repeats exactly.
//! Each figure is printed next to the Mathis bound for the path,
//! MSS/RTT × sqrt(3/2)/sqrt(p), where MSS is the sender's `info().send_mss` and RTT the
//! path's base RTT, with the sender's retransmissions, timeouts (RTOs) and fast retransmits
//! from `info()`.
//!
//! tokio's timer has a resolution of one millisecond, so packets due within the same
//! millisecond reach the receiving stack together, in one batch (at 1 Gbit/s, up to about 83
//! full-sized packets), much as interrupt coalescing or GRO hands a real host its packets;
//! `--bandwidth 10` (1.2 ms per 1500-byte packet) delivers them one at a time.
//!
//! Options (lists are comma-separated):
//!
//! - `--cc NAMES`: controllers (default: newreno, cubic, bbr);
//! - `--rtt MS`: round-trip times in milliseconds (default 1,20,100);
//! - `--loss PERCENT`: loss rates on the data direction in percent (default 0.1,1,5);
//! - `--mtu BYTES` (default 1500);
//! - `--bandwidth MBIT|none`: the bottleneck in Mbit/s each way (default 1000);
//! - `--queue MS|bdp|none`: the bottleneck's drop-tail queue as the longest wait, in ms;
//!   `bdp` (the default) is max(1 RTT, 20 ms), i.e. about one bandwidth-delay product;
//! - `--duration SECONDS`: virtual time per transfer (default 60; at least 200 RTTs);
//! - `--max-bytes BYTES`: stop a transfer early after this many bytes (default 10^10);
//! - `--seed N`: the simulator's seed (default 1);
//! - `--pcap PREFIX`: write each transfer's segments, as the sender saw them, to
//!   `PREFIX-<cc>-<rtt>ms-<loss>pct.pcap` (for tshark or Wireshark).
//!
//! With `LOSS_BENCH_DEBUG` set, the sender's whole `TcpInfo` is printed after each cell.
//!
//! While a cell runs, a progress bar on stderr (indicatif; hidden when stderr is not a
//! terminal) shows its virtual time, the goodput so far, and the sender's cwnd and
//! retransmissions from `Stack::connections()`.

use indicatif::{ProgressBar, ProgressStyle};
use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
use rawtcp::proto::cc::Algorithm;
use rawtcp::proto::Config;
use rawtcp::{Stack, TcpInfo};
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const USAGE: &str = "usage: loss_bench [--cc newreno,cubic,bbr] [--rtt 1,20,100] [--loss 0.1,1,5]
                  [--mtu 1500] [--bandwidth MBIT|none] [--queue MS|bdp|none]
                  [--duration SECONDS] [--max-bytes BYTES] [--seed N] [--pcap PREFIX]";
/// Every controller name the benchmark knows about, in column order.
const NAMES: [&str; 3] = ["newreno", "cubic", "bbr"];
/// Size of each write and read.
const CHUNK: usize = 256 * 1024;
/// The pattern repeats every this many bytes (a prime, so it does not line up with segments).
const PERIOD: usize = 251;
/// The longest the handshake may take (virtual time).
const CONNECT_LIMIT: Duration = Duration::from_secs(120);
/// A transfer lasts at least this many RTTs.
const MIN_RTTS: u32 = 200;

/// The congestion controller called `name` (as `TCP_CONGESTION` spells it).
fn algorithm(name: &str) -> Option<Algorithm> {
    name.parse::<Algorithm>().ok()
}

/// The bottleneck's queue.
#[derive(Clone, Copy, Debug)]
enum Queue {
    /// max(1 RTT, 20 ms) of waiting.
    Bdp,
    /// This much waiting at most.
    Fixed(Duration),
    /// Unbounded.
    None,
}

struct Args {
    ccs: Vec<(String, Algorithm)>,
    rtts: Vec<Duration>,
    /// Fractions, not percent.
    losses: Vec<f64>,
    mtu: usize,
    /// Bytes per second each way; `None` for no bottleneck.
    bandwidth: Option<u64>,
    queue: Queue,
    duration: Duration,
    max_bytes: u64,
    seed: u64,
    /// Where captures go, if anywhere.
    pcap: Option<String>,
}

fn list<T>(v: &str, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    let items: Option<Vec<T>> = v.split(',').map(|s| parse(s.trim())).collect();
    match items {
        Some(items) if !items.is_empty() => Ok(items),
        _ => Err(format!("bad {what} list {v:?}\n{USAGE}")),
    }
}

fn positive(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0)
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        ccs: Vec::new(),
        rtts: [1, 20, 100].map(Duration::from_millis).to_vec(),
        losses: vec![0.001, 0.01, 0.05],
        mtu: 1500,
        bandwidth: Some(125_000_000),
        queue: Queue::Bdp,
        duration: Duration::from_secs(60),
        max_bytes: 10_000_000_000,
        seed: 1,
        pcap: None,
    };
    let mut cc_names: Option<Vec<String>> = None;
    let mut it = std::env::args().skip(1);
    // Bounded by the number of arguments.
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--cc" => {
                let v = value()?;
                cc_names = Some(list(&v, "--cc", |s| Some(s.to_ascii_lowercase()))?);
            }
            "--rtt" => {
                let v = value()?;
                args.rtts = list(&v, "--rtt", |s| {
                    positive(s).map(|ms| Duration::from_secs_f64(ms / 1000.0))
                })?;
            }
            "--loss" => {
                let v = value()?;
                args.losses = list(&v, "--loss", |s| {
                    positive(s).filter(|p| *p < 100.0).map(|p| p / 100.0)
                })?;
            }
            "--mtu" => {
                let v = value()?;
                args.mtu = v
                    .parse()
                    .ok()
                    .filter(|m| (576..=65535).contains(m))
                    .ok_or(format!("bad --mtu {v:?} (576 to 65535)"))?;
            }
            "--bandwidth" => {
                let v = value()?;
                args.bandwidth = match v.as_str() {
                    "none" | "0" => None,
                    s => Some(
                        positive(s)
                            .map(|mbit| (mbit * 1e6 / 8.0) as u64)
                            .ok_or(format!("bad --bandwidth {v:?} (Mbit/s or none)"))?,
                    ),
                };
            }
            "--queue" => {
                let v = value()?;
                args.queue = match v.as_str() {
                    "bdp" => Queue::Bdp,
                    "none" => Queue::None,
                    s => Queue::Fixed(
                        positive(s)
                            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                            .ok_or(format!("bad --queue {v:?} (ms, bdp or none)"))?,
                    ),
                };
            }
            "--duration" => {
                let v = value()?;
                args.duration = positive(&v)
                    .map(Duration::from_secs_f64)
                    .ok_or(format!("bad --duration {v:?}"))?;
            }
            "--max-bytes" => {
                let v = value()?;
                args.max_bytes = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("bad --max-bytes {v:?}"))?;
            }
            "--seed" => {
                let v = value()?;
                args.seed = v.parse().map_err(|_| format!("bad --seed {v:?}"))?;
            }
            "--pcap" => args.pcap = Some(value()?),
            s => return Err(format!("unknown option {s}\n{USAGE}")),
        }
    }
    match cc_names {
        Some(names) => {
            for name in names {
                let a = algorithm(&name).ok_or(format!(
                    "unknown congestion controller {name:?} (this build knows: {})",
                    known().join(", ")
                ))?;
                args.ccs.push((name, a));
            }
        }
        None => {
            for name in known() {
                let a = algorithm(name).expect("known");
                args.ccs.push((name.to_string(), a));
            }
        }
    }
    Ok(args)
}

/// The names in [`NAMES`] this build has.
fn known() -> Vec<&'static str> {
    NAMES
        .iter()
        .copied()
        .filter(|n| algorithm(n).is_some())
        .collect()
}

impl Args {
    fn queue_for(&self, rtt: Duration) -> Option<Duration> {
        match self.queue {
            Queue::Bdp => Some(rtt.max(Duration::from_millis(20))),
            Queue::Fixed(d) => Some(d),
            Queue::None => None,
        }
    }

    /// Send and receive buffers: two bandwidth-delay products, at least 1 MiB, so that
    /// buffers do not limit the window; 16 MiB without a bottleneck.
    fn buffer_for(&self, rtt: Duration) -> usize {
        match self.bandwidth {
            Some(bw) => {
                let bdp = bw as f64 * rtt.as_secs_f64();
                ((2.0 * bdp) as usize).clamp(1 << 20, 256 << 20)
            }
            None => 16 << 20,
        }
    }

    fn duration_for(&self, rtt: Duration) -> Duration {
        self.duration.max(rtt * MIN_RTTS)
    }
}

/// What one transfer measured.
struct Cell {
    bytes: u64,
    elapsed: Duration,
    info: Option<TcpInfo>,
    error: Option<String>,
}

impl Cell {
    fn mb_per_s(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// The pattern from position `pos % PERIOD` on, at least `CHUNK` bytes long.
fn pattern_table() -> Vec<u8> {
    (0..PERIOD + CHUNK).map(|i| (i % PERIOD) as u8).collect()
}

/// One bulk transfer, client to server, on the current (paused) runtime.
async fn transfer(
    args: &Args,
    rtt: Duration,
    loss: f64,
    (name, cc): (&str, &Algorithm),
) -> io::Result<Cell> {
    let net = SimNetwork::new(args.seed);
    let server_ip: IpAddr = "10.0.0.1".parse().expect("address");
    let client_ip: IpAddr = "10.0.0.2".parse().expect("address");
    let mut link = LinkConfig::default()
        .with_mtu(args.mtu)
        .with_latency(rtt / 2);
    if let Some(bw) = args.bandwidth {
        link = link.with_bandwidth(bw);
        if let Some(q) = args.queue_for(rtt) {
            link = link.with_queue_limit(q);
        }
    }
    net.set_path(client_ip, server_ip, link.with_loss(loss));
    net.set_path(server_ip, client_ip, link);
    let buffer = args.buffer_for(rtt);
    let config = Config {
        mss: u16::MAX, // what the MTU allows
        send_buffer: buffer,
        send_buffer_max: buffer, // the buffers chosen for the path, fixed
        recv_buffer: buffer,
        recv_buffer_max: buffer,
        congestion: cc.clone(),
        ..Config::default()
    };
    // Fixed initial sequence numbers (from the seed), so that a run is repeated exactly.
    let isn = (args.seed as u32).wrapping_mul(0x9e37_79b9);
    let server = Stack::builder()
        .datapath(net.host(server_ip)?)
        .tcp_config(config.clone())
        .isn(move |_, _| isn ^ 0x5555_5555)
        .build()?;
    let mut client = Stack::builder()
        .datapath(net.host(client_ip)?)
        .tcp_config(config)
        .isn(move |_, _| isn);
    if let Some(prefix) = &args.pcap {
        let ms = rtt.as_secs_f64() * 1000.0;
        client = client.pcap(format!("{prefix}-{name}-{ms}ms-{}pct.pcap", loss * 100.0));
    }
    let client = client.build()?;
    let addr = SocketAddr::new(server_ip, 5001);
    let listener = server.bind(addr).await?;
    let (c, a) = tokio::time::timeout(CONNECT_LIMIT, async {
        tokio::join!(client.connect(addr), listener.accept())
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake took too long"))?;
    let mut client_stream = c?;
    let (mut server_stream, _) = a?;

    let table = Arc::new(pattern_table());
    let delivered = Arc::new(AtomicU64::new(0));
    let max = args.max_bytes;
    let (t, d) = (table.clone(), delivered.clone());
    let mut reader = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        let mut pos = 0u64;
        // Bounded: each round reads at least one byte, and it stops at `max`.
        while pos < max {
            let n = server_stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let off = (pos % PERIOD as u64) as usize;
            if buf[..n] != t[off..off + n] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("wrong bytes at {pos}"),
                ));
            }
            pos += n as u64;
            d.store(pos, Ordering::Relaxed);
        }
        Ok::<_, io::Error>(pos)
    });

    let start = Instant::now();
    let end = start + args.duration_for(rtt);
    // The progress bar: virtual time against the cell's duration, with the goodput so far
    // and the sender's cwnd and retransmissions from the client stack's connection table.
    let bar = ProgressBar::new(args.duration_for(rtt).as_millis() as u64).with_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos:>6}/{len} ms (virtual)  {msg}")
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{name} {} {}%", fmt_ms(rtt), loss * 100.0));
    let watcher = {
        let (bar, client, delivered) = (bar.clone(), client.clone(), delivered.clone());
        tokio::spawn(async move {
            // Ends when aborted below, at the end of the cell.
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let t = start.elapsed();
                bar.set_position(t.as_millis() as u64);
                let rate = delivered.load(Ordering::Relaxed) as f64 / 1e6 / t.as_secs_f64();
                let conn = client
                    .connections()
                    .connections
                    .into_iter()
                    .find(|c| c.remote == addr);
                if let Some(c) = conn {
                    bar.set_message(format!(
                        "{rate:.3} MB/s  cwnd {} KB  retransmissions {}",
                        c.info.cwnd / 1000,
                        c.info.retransmissions
                    ));
                }
            }
        })
    };
    let write_all = async {
        let mut pos = 0u64;
        // Bounded by `max` bytes.
        while pos < max {
            let n = CHUNK.min(usize::try_from(max - pos).unwrap_or(CHUNK));
            let off = (pos % PERIOD as u64) as usize;
            client_stream.write_all(&table[off..off + n]).await?;
            pos += n as u64;
        }
        Ok::<_, io::Error>(())
    };
    let mut error = match tokio::time::timeout_at(end, write_all).await {
        Ok(Err(e)) => Some(format!("write: {e}")),
        _ => None,
    };
    if error.is_none() && Instant::now() < end {
        // Everything was written before the end: wait for the reader to get it all.
        match tokio::time::timeout_at(end, &mut reader).await {
            Ok(Ok(Err(e))) => error = Some(format!("read: {e}")),
            Ok(Err(e)) => error = Some(format!("reader: {e}")),
            _ => {}
        }
    } else if reader.is_finished() {
        if let Ok(Err(e)) = (&mut reader).await {
            error = Some(format!("read: {e}"));
        }
    }
    watcher.abort();
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    let bytes = delivered.load(Ordering::Relaxed);
    let info = client_stream.info().ok();
    if std::env::var_os("LOSS_BENCH_DEBUG").is_some() {
        eprintln!("{info:#?}");
    }
    reader.abort();
    Ok(Cell {
        bytes,
        elapsed,
        info,
        error,
    })
}

/// Runs one cell on a fresh current-thread runtime with tokio's clock paused.
fn run_cell(args: &Args, rtt: Duration, loss: f64, cc: (&str, &Algorithm)) -> Cell {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let r = rt.block_on(async {
        tokio::time::pause();
        transfer(args, rtt, loss, cc).await
    });
    r.unwrap_or_else(|e| Cell {
        bytes: 0,
        elapsed: Duration::ZERO,
        info: None,
        error: Some(e.to_string()),
    })
}

/// The Mathis et al. bound: MSS/RTT × sqrt(3/2)/sqrt(p), in MB/s.
fn mathis(mss: u32, rtt: Duration, loss: f64) -> f64 {
    f64::from(mss) / rtt.as_secs_f64() * (1.5f64).sqrt() / loss.sqrt() / 1e6
}

fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms.fract() == 0.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms} ms")
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let command: Vec<String> = std::env::args().collect();
    println!("$ {}", command.join(" "));
    println!(
        "loss_bench: one bulk transfer (client -> server) per cell over rawtcp's simulated network, in virtual time (tokio clock paused)"
    );
    let missing: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| algorithm(n).is_none())
        .collect();
    println!(
        "controllers: {}{}",
        args.ccs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if missing.is_empty() {
            String::new()
        } else {
            format!(" (not in this build: {})", missing.join(", "))
        }
    );
    let bottleneck = match args.bandwidth {
        Some(bw) => format!(
            "{:.0} Mbit/s = {:.1} MB/s each way, drop-tail queue {}",
            bw as f64 * 8.0 / 1e6,
            bw as f64 / 1e6,
            match args.queue {
                Queue::Bdp => "max(1 RTT, 20 ms) of waiting (about 1 BDP)".to_string(),
                Queue::Fixed(d) => format!("{} of waiting", fmt_ms(d)),
                Queue::None => "unbounded".to_string(),
            }
        ),
        None => "none (no bandwidth limit)".to_string(),
    };
    println!(
        "path: MTU {}, one-way latency RTT/2 each way, bottleneck {bottleneck}",
        args.mtu
    );
    if let Some(bw) = args.bandwidth {
        println!(
            "      (tokio's timer ticks every 1 ms: packets due in the same ms arrive as one batch, here up to {:.0} full-sized packets)",
            (bw as f64 / 1000.0 / args.mtu as f64).max(1.0)
        );
    }
    println!(
        "loss: random, on the DATA direction only (client -> server); the ACK direction loses nothing; simulator seed {}",
        args.seed
    );
    println!(
        "each transfer: {:.0} s of virtual time (at least {MIN_RTTS} RTTs), at most {} bytes; buffers max(1 MiB, 2 BDP); goodput = bytes read by the server / virtual time, slow start included; MB = 10^6 bytes",
        args.duration.as_secs_f64(),
        args.max_bytes
    );
    println!(
        "Mathis = MSS/RTT x sqrt(3/2)/sqrt(p), MSS = the sender's info().send_mss, RTT = the path's measured minimum (the senders' smallest min_rtt: at 1 ms the\n  simulator's millisecond timer rounds each one-way delay up, so the path's RTT is 2 ms); retx/RTO/fast = the sender's info() retransmissions, timeouts, fast_retransmits"
    );
    println!();

    let mut header = format!(
        "{:>8} {:>8} {:>6} {:>6} {:>10}",
        "RTT", "min RTT", "loss", "MSS", "Mathis"
    );
    let mut unit = format!("{:>8} {:>8} {:>6} {:>6} {:>10}", "", "", "", "", "MB/s");
    for (name, _) in &args.ccs {
        header += &format!(" | {:^42}", name);
        unit += &format!(
            " | {:>8} {:>8} {:>7} {:>6} {:>7}",
            "MB/s", "xMathis", "retx", "RTO", "fast"
        );
    }
    println!("{header}");
    println!("{unit}");
    let real = std::time::Instant::now();
    let mut errors = Vec::new();
    // Bounded: one transfer per cell and controller, each bounded in virtual time and bytes.
    for &rtt in &args.rtts {
        for &loss in &args.losses {
            let cells: Vec<Cell> = args
                .ccs
                .iter()
                .map(|(name, cc)| run_cell(&args, rtt, loss, (name, cc)))
                .collect();
            let mss = cells
                .iter()
                .find_map(|c| c.info.as_ref().map(|i| i.send_mss))
                .unwrap_or(0);
            let path_rtt = cells
                .iter()
                .filter_map(|c| c.info.as_ref().and_then(|i| i.min_rtt))
                .min()
                .unwrap_or(rtt)
                .max(rtt);
            let bound = mathis(mss, path_rtt, loss);
            let mut line = format!(
                "{:>8} {:>8} {:>5}% {:>6} {:>10.3}",
                fmt_ms(rtt),
                fmt_ms(path_rtt),
                loss * 100.0,
                mss,
                bound
            );
            for ((name, _), cell) in args.ccs.iter().zip(&cells) {
                let (retx, rto, fast) = cell.info.as_ref().map_or((0, 0, 0), |i| {
                    (i.retransmissions, i.timeouts, i.fast_retransmits)
                });
                let mark = if cell.error.is_some() { "!" } else { "" };
                line += &format!(
                    " | {:>7.3}{mark:1} {:>8.3} {:>7} {:>6} {:>7}",
                    cell.mb_per_s(),
                    cell.mb_per_s() / bound,
                    retx,
                    rto,
                    fast
                );
                if let Some(e) = &cell.error {
                    errors.push(format!(
                        "{name} at RTT {} loss {}%: {e} after {:.1} s, {} bytes",
                        fmt_ms(rtt),
                        loss * 100.0,
                        cell.elapsed.as_secs_f64(),
                        cell.bytes
                    ));
                }
                if let Some(i) = &cell.info {
                    if i.send_mss != mss {
                        errors.push(format!(
                            "{name} at RTT {} loss {}%: send_mss {} differs from the {mss} the bound uses",
                            fmt_ms(rtt),
                            loss * 100.0,
                            i.send_mss
                        ));
                    }
                }
            }
            println!("{line}");
            let _ = io::stdout().flush();
        }
    }
    println!();
    for e in &errors {
        println!("! {e}");
    }
    println!("{:.1} s real time", real.elapsed().as_secs_f64());
}
