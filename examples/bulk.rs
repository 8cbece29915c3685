//! Bulk transfer through rawtcp, with `tokio::net` on the same machine for comparison.
//!
//! ```text
//! cargo run --release --example bulk                  # 100 MB through rawtcp
//! cargo run --release --example bulk -- 1G            # 1 GB (suffixes k, M, G; Ki, Mi, Gi)
//! cargo run --release --example bulk -- 100M --tokio  # the same through tokio::net (the kernel's TCP)
//! cargo run --release --example bulk -- 100M --both   # both, then the ratio rawtcp / tokio
//! cargo run --release --example bulk -- 100M --mss 1460   # rawtcp with Ethernet-sized segments
//! RAWTCP_SHARDS=2 cargo run --release --example bulk -- 1G --both   # a stack of two shards
//! ```
//!
//! A server and a client run in this process on 127.0.0.1. The rawtcp run uses a `Stack`
//! built with `Stack::builder()` on the datapath named by `RAWTCP_DATAPATH` (UDP
//! encapsulation on loopback by default). The client sends BYTES of a position-dependent
//! pattern and closes; the server counts what arrives and checks every byte against the
//! pattern, so data that was lost, duplicated, reordered or corrupted stops the run. A
//! progress bar (indicatif) on stderr shows the live throughput and, for rawtcp, the
//! sender's cwnd, bytes in flight and retransmissions from `Stack::connections()`; it is
//! hidden when stderr is not a terminal.
//!
//! At the end it prints the throughput and duration, each side's retransmissions, timeouts
//! and fast retransmits from `TcpStream::info()`, the stack's `stats()` (with how often its
//! reactor ran, and why: `StackStats::reactor_wakes`) and, on the UDP datapath, the
//! datapath's own counters (datagrams dropped when a socket buffer was full).
//!
//! A run that makes no progress for 15 seconds is abandoned with an error.

use indicatif::{ProgressBar, ProgressStyle};
use rawtcp::datapath::udp::{UdpDatapath, UdpStats};
use rawtcp::datapath::{self, Batch, BindKind, Capabilities, Datapath};
use rawtcp::proto::Config;
use rawtcp::{Stack, TcpInfo};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const USAGE: &str = "usage: bulk [BYTES] [--tokio | --both] [--mss N]
  BYTES  defaults to 100M; suffixes k, M, G, Ki, Mi, Gi
  --mss  the largest MSS rawtcp uses (default: what the datapath's MTU allows, 65467 on UDP loopback)";
/// Size of each write and read.
const CHUNK: usize = 256 * 1024;
/// The largest transfer accepted.
const MAX_BYTES: u64 = 100_000_000_000;
/// No progress for this long abandons the run.
const STALL: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Rawtcp,
    Tokio,
    Both,
}

struct Args {
    bytes: u64,
    which: Which,
    /// An upper bound on rawtcp's MSS, below what the datapath's MTU allows.
    mss: Option<u16>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bytes: 100_000_000,
        which: Which::Rawtcp,
        mss: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--tokio" => args.which = Which::Tokio,
            "--both" => args.which = Which::Both,
            "--mss" => {
                let v = it.next().ok_or("--mss needs a number")?;
                let mss: u16 = v.parse().map_err(|_| format!("bad --mss {v:?}"))?;
                args.mss = Some(mss.max(64));
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => args.bytes = parse_size(s).ok_or_else(|| format!("bad size {s:?}\n{USAGE}"))?,
        }
    }
    if args.bytes == 0 || args.bytes > MAX_BYTES {
        return Err(format!("BYTES must be 1..={MAX_BYTES}"));
    }
    Ok(args)
}

/// `123`, `100k`, `100M`, `1G`, `64Mi`, `1GiB`, `100MB`...: decimal or binary multiples.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let suffix = suffix.strip_suffix(['B', 'b']).unwrap_or(suffix);
    let mult: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "m" | "M" => 1_000_000,
        "g" | "G" => 1_000_000_000,
        "Ki" | "ki" => 1 << 10,
        "Mi" | "mi" => 1 << 20,
        "Gi" | "gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[tokio::main]
async fn main() {
    let Args { bytes, which, mss } = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut rates = Vec::new();
    if which != Which::Tokio {
        match run_rawtcp(bytes, mss).await {
            Ok(r) => rates.push(r),
            Err(e) => {
                eprintln!("rawtcp run failed: {e}");
                std::process::exit(1);
            }
        }
    }
    if which != Which::Rawtcp {
        match run_tokio(bytes).await {
            Ok(r) => rates.push(r),
            Err(e) => {
                eprintln!("tokio::net run failed: {e}");
                std::process::exit(1);
            }
        }
    }
    if let [rawtcp, tokio] = rates[..] {
        println!();
        println!(
            "rawtcp / tokio::net throughput: {:.3}  ({:.1} MB/s vs {:.1} MB/s; tokio::net is {:.1}x faster)",
            rawtcp / tokio,
            rawtcp,
            tokio,
            tokio / rawtcp
        );
    }
}

/// The rawtcp run. Returns MB/s.
async fn run_rawtcp(bytes: u64, mss: Option<u16>) -> io::Result<f64> {
    let mut builder = Stack::builder();
    if let Some(mss) = mss {
        builder = builder.tcp_config(Config {
            mss,
            ..Config::default()
        });
    }
    // On the UDP datapath, keep a handle on the datapath to read its counters afterwards.
    let (stack, udp) = match datapath::Kind::from_env()? {
        datapath::Kind::Udp => {
            let udp = Arc::new(UdpDatapath::new()?);
            (builder.datapath(Shared(udp.clone())).build()?, Some(udp))
        }
        _ => (builder.build()?, None),
    };
    let listener = stack.bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!(
        "rawtcp ({} datapath, {} shard(s), MSS {}): sending {} to {addr}",
        stack.datapath_name(),
        stack.shard_count(),
        mss.map_or_else(
            || "from the datapath's MTU".to_string(),
            |m| format!("at most {m}")
        ),
        mb(bytes)
    );
    println!("  datapath: {:?}", stack.datapath_capabilities());
    let progress = Arc::new(Progress::new(bytes));

    let server = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let (mut s, client) = listener.accept().await?;
            let got = receive(&mut s, bytes, &progress).await?;
            let done = Instant::now();
            s.shutdown().await?;
            settle(|| s.info()).await;
            io::Result::Ok((got, done, client, s.info()?))
        })
    };
    let transfer = async {
        let start = Instant::now();
        let mut c = stack.connect(addr).await?;
        send(&mut c, bytes).await?;
        c.shutdown().await?;
        let (got, done, client, server_info) = server.await.map_err(io::Error::other)??;
        // The server closes after the last byte: its FIN ends our stream.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no FIN from the server"))??;
        settle(|| c.info()).await;
        io::Result::Ok((got, done - start, client, c.info()?, server_info))
    };
    // Live figures for the bar: the sending connection (the one to the server's address) in
    // the stack's connection table.
    let live = || {
        stack
            .connections()
            .connections
            .into_iter()
            .find(|c| c.remote == addr)
            .map(|c| c.info)
    };
    let (got, elapsed, client, client_info, server_info) =
        with_progress(transfer, &progress, Some(&live)).await?;
    let rate = report(bytes, got, elapsed);
    println!("  connection {client} -> {addr}");
    print_info("client", &client_info);
    print_info("server", &server_info);
    let st = stack.stats();
    println!(
        "  stack: packets in {}  out {}  malformed {}  resets sent {}  SYNs dropped {}  connections {}",
        st.packets_in, st.packets_out, st.malformed, st.resets_sent, st.syn_dropped, st.connections
    );
    println!(
        "  reactor: polled {} times; wake-ups asked for: {}; writes sent by the writer {}, \
         receive batches taken by a waiting task {}",
        st.reactor_polls, st.reactor_wakes, st.inline_transmits, st.inline_receives
    );
    if let Some(udp) = udp.filter(|_| stack.shard_count() == 1) {
        let UdpStats {
            datagrams_sent,
            datagrams_received,
            dropped_send,
            dropped_recv,
            malformed,
            trains_sent,
        } = udp.stats();
        println!(
            "  udp datapath: datagrams sent {datagrams_sent} (in {trains_sent} trains and alone)  \
             received {datagrams_received}  dropped on send {dropped_send}  \
             dropped on receive {dropped_recv}  malformed {malformed}"
        );
    }
    Ok(rate)
}

/// The same transfer through `tokio::net`. Returns MB/s.
async fn run_tokio(bytes: u64) -> io::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("tokio::net (kernel TCP): sending {} to {addr}", mb(bytes));
    let progress = Arc::new(Progress::new(bytes));
    let server = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let got = receive(&mut s, bytes, &progress).await?;
            let done = Instant::now();
            s.shutdown().await?;
            io::Result::Ok((got, done))
        })
    };
    let transfer = async {
        let start = Instant::now();
        let mut c = tokio::net::TcpStream::connect(addr).await?;
        send(&mut c, bytes).await?;
        c.shutdown().await?;
        let (got, done) = server.await.map_err(io::Error::other)??;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no FIN from the server"))??;
        io::Result::Ok((got, done - start))
    };
    let (got, elapsed) = with_progress(transfer, &progress, None).await?;
    Ok(report(bytes, got, elapsed))
}

/// Prints the throughput line; returns MB/s.
fn report(bytes: u64, got: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = got as f64 / 1e6 / secs;
    println!(
        "  {} received and checked in {:.3} s: {:.1} MB/s ({:.2} Gbit/s){}",
        mb(got),
        secs,
        rate,
        rate * 8.0 / 1000.0,
        if got == bytes { "" } else { "  INCOMPLETE" }
    );
    rate
}

fn print_info(side: &str, i: &TcpInfo) {
    println!(
        "  {side}: retransmissions {}  timeouts {}  fast retransmits {}  | state {}  srtt {:?}  \
         min_rtt {:?}  rto {:?}  cwnd {}  ssthresh {}  mss {}  segments sent {} received {}  \
         bytes sent {} received {}",
        i.retransmissions,
        i.timeouts,
        i.fast_retransmits,
        i.state,
        i.srtt.unwrap_or_default(),
        i.min_rtt.unwrap_or_default(),
        i.rto,
        i.cwnd,
        if i.ssthresh == u32::MAX {
            "-".to_string()
        } else {
            i.ssthresh.to_string()
        },
        i.send_mss,
        i.segments_sent,
        i.segments_received,
        i.bytes_sent,
        i.bytes_received
    );
}

/// Waits (at most half a second) until a connection has nothing unacknowledged left, so
/// that its figures are final.
async fn settle(info: impl Fn() -> io::Result<TcpInfo>) {
    for _ in 0..50 {
        match info() {
            Ok(i) if i.bytes_in_flight > 0 || i.bytes_acked < i.bytes_sent => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            _ => return,
        }
    }
}

/// Writes `bytes` of the pattern.
async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: u64) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < bytes {
        let n = (bytes - pos).min(CHUNK as u64) as usize;
        fill(pos, &mut buf[..n]);
        s.write_all(&buf[..n]).await?;
        pos += n as u64;
    }
    Ok(())
}

/// Reads to the end of the stream, checking every byte against the pattern and counting.
async fn receive<S: AsyncRead + Unpin>(
    s: &mut S,
    bytes: u64,
    progress: &Progress,
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut expected = vec![0u8; CHUNK];
    let mut pos = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(pos);
        }
        if pos + n as u64 > bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("received more than the {bytes} bytes sent"),
            ));
        }
        fill(pos, &mut expected[..n]);
        if buf[..n] != expected[..n] {
            let at = buf[..n]
                .iter()
                .zip(&expected[..n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "corrupt stream at byte {}: got {:#04x}, expected {:#04x}",
                    pos + at as u64,
                    buf[at],
                    expected[at]
                ),
            ));
        }
        pos += n as u64;
        progress.done.store(pos, Ordering::Relaxed);
    }
}

/// The pattern: byte `p` of the stream is byte `p % 8` of a 64-bit mix of `p / 8`, so any
/// shift, repeat or gap shows.
fn fill(mut pos: u64, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() && pos % 8 != 0 {
        out[i] = (word(pos / 8) >> (8 * (pos % 8))) as u8;
        i += 1;
        pos += 1;
    }
    let mut words = out[i..].chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&word(pos / 8).to_le_bytes());
        pos += 8;
    }
    for b in words.into_remainder() {
        *b = (word(pos / 8) >> (8 * (pos % 8))) as u8;
        pos += 1;
    }
}

/// SplitMix64's finaliser.
fn word(w: u64) -> u64 {
    let mut z = w.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bytes received so far, for the progress bar and the stall watchdog.
struct Progress {
    total: u64,
    done: AtomicU64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            done: AtomicU64::new(0),
        }
    }
}

/// Runs `transfer` while drawing the progress bar (indicatif, on stderr; hidden when stderr
/// is not a terminal) with the live throughput and, for rawtcp, the sender's cwnd, bytes in
/// flight and retransmissions; fails if the transfer stalls.
async fn with_progress<T>(
    transfer: impl std::future::Future<Output = io::Result<T>>,
    progress: &Progress,
    live: Option<&(dyn Fn() -> Option<TcpInfo> + Sync)>,
) -> io::Result<T> {
    let bar = ProgressBar::new(progress.total).with_style(
        ProgressStyle::with_template(
            "[{bar:40}] {percent:>3}%  {decimal_bytes:>10} / {decimal_total_bytes:<10} {decimal_bytes_per_sec:>12}  {msg}",
        )
        .expect("progress template")
        .progress_chars("=> "),
    );
    let draw = async {
        let mut last = (0u64, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done = progress.done.load(Ordering::Relaxed);
            bar.set_position(done);
            if let Some(i) = live.and_then(|f| f()) {
                bar.set_message(format!(
                    "cwnd {} KB  in flight {} KB  retransmissions {}",
                    i.cwnd / 1000,
                    i.bytes_in_flight / 1000,
                    i.retransmissions
                ));
            }
            if done != last.0 {
                last = (done, Instant::now());
            } else if last.1.elapsed() > STALL {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no progress for {STALL:?} at {}", mb(done)),
                );
            }
        }
    };
    let r = tokio::select! {
        r = transfer => r,
        e = draw => Err(e),
    };
    bar.set_position(progress.done.load(Ordering::Relaxed));
    bar.finish();
    r
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The UDP datapath behind an `Arc`, so that this program keeps a handle on it to read its
/// counters while the stack owns it.
struct Shared(Arc<UdpDatapath>);

impl Datapath for Shared {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn mtu(&self, remote: IpAddr) -> usize {
        self.0.mtu(remote)
    }
    fn local_ip_for(&self, remote: IpAddr) -> io::Result<IpAddr> {
        self.0.local_ip_for(remote)
    }
    fn bind(&self, local: SocketAddr, kind: BindKind) -> io::Result<SocketAddr> {
        self.0.bind(local, kind)
    }
    fn unbind(&self, local: SocketAddr) {
        self.0.unbind(local)
    }
    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        self.0.poll_recv(cx, batch)
    }
    fn send(&self, batch: &Batch) -> io::Result<usize> {
        self.0.send(batch)
    }
    fn verify_checksums(&self) -> bool {
        self.0.verify_checksums()
    }
    // Everything else the datapath says of itself is passed on too, so that a stack of one
    // shard (which uses this wrapper itself) runs as it would on the bare datapath: the
    // trait's defaults would turn off its receive without readiness, its batching
    // capabilities and its trust in loopback carriers (partial checksums).
    fn local_ip_via(&self, device: &[u8], remote: IpAddr) -> io::Result<IpAddr> {
        self.0.local_ip_via(device, remote)
    }
    fn recv_now(&self, batch: &mut Batch) -> bool {
        self.0.recv_now(batch)
    }
    fn owns(&self, local: SocketAddr) -> bool {
        self.0.owns(local)
    }
    fn partial_checksums(&self) -> bool {
        self.0.partial_checksums()
    }
    fn carrier_verified(&self, carrier: SocketAddr) -> bool {
        self.0.carrier_verified(carrier)
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    /// With `RAWTCP_SHARDS`: the shards' datapaths are split from this one (their counters
    /// are their own, not shown).
    fn shard(&self, index: usize, count: usize) -> io::Result<Arc<dyn Datapath>> {
        self.0.shard(index, count)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pattern_is_position_dependent_and_consistent() {
        let mut whole = vec![0u8; 1000];
        super::fill(3, &mut whole);
        for start in [0usize, 1, 5, 8, 13, 500] {
            let mut part = vec![0u8; 1000 - start];
            super::fill(3 + start as u64, &mut part);
            assert_eq!(part, whole[start..]);
        }
        let mut shifted = vec![0u8; 1000];
        super::fill(4, &mut shifted);
        let same = shifted.iter().zip(&whole).filter(|(a, b)| a == b).count();
        assert!(same < 20, "{same}");
    }
}
