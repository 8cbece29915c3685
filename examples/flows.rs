//! Parallel flows on loopback: rawtcp with one shard, rawtcp with several, and `tokio::net`
//! (the kernel's TCP), in one run, with the ratios.
//!
//! ```text
//! cargo run --release --example flows                          # 8 flows, 1 GB in all, 1 and 2 shards
//! cargo run --release --example flows -- --flows 8 --bytes 2G --shards 1,2,4 --reps 5
//! ```
//!
//! Each configuration opens FLOWS connections from client tasks to a listener in this
//! process (127.0.0.1), each carrying BYTES / FLOWS of a position-dependent pattern that the
//! server checks, and measures the aggregate throughput from the first connect to the last
//! byte received. rawtcp runs on the UDP datapath, a stack built with
//! `Stack::builder().shards(n)` whose reactors run on this program's tokio runtime (as many
//! worker threads as cores); client and server are the same stack, as in `examples/bulk`.
//! Configurations alternate, REPS rounds, and the median of each is reported: this
//! machine's other load moves single runs.
//!
//! A run that takes longer than 60 seconds is abandoned with an error.

use rawtcp::Stack;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const USAGE: &str = "usage: flows [--flows N] [--bytes SIZE] [--shards LIST] [--reps N]
  --flows   parallel connections (default 8)
  --bytes   total bytes over all flows (default 1G; suffixes k, M, G, Ki, Mi, Gi)
  --shards  comma-separated shard counts for rawtcp (default 1,2)
  --reps    rounds of every configuration (default 3)";
/// Size of each write and read.
const CHUNK: usize = 256 * 1024;
/// The pattern repeats every this many bytes.
const PERIOD: usize = 251;
/// One run may take at most this long.
const LIMIT: Duration = Duration::from_secs(60);

struct Args {
    flows: usize,
    bytes: u64,
    shards: Vec<usize>,
    reps: usize,
}

fn parse_size(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match suffix.strip_suffix(['B', 'b']).unwrap_or(suffix) {
        "" => 1,
        "k" | "K" => 1_000,
        "M" | "m" => 1_000_000,
        "G" | "g" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        flows: 8,
        bytes: 1_000_000_000,
        shards: vec![1, 2],
        reps: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--flows" => a.flows = value()?.parse().map_err(|e| format!("--flows: {e}"))?,
            "--bytes" => a.bytes = parse_size(&value()?).ok_or("bad --bytes")?,
            "--reps" => a.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--shards" => {
                a.shards = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--shards: {e}"))?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if a.flows == 0 || a.reps == 0 || a.bytes < a.flows as u64 || a.shards.contains(&0) {
        return Err(format!(
            "flows, reps, bytes and shards must be positive\n{USAGE}"
        ));
    }
    Ok(a)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Config {
    Rawtcp(usize),
    Tokio,
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Config::Rawtcp(1) => write!(f, "rawtcp, 1 shard"),
            Config::Rawtcp(n) => write!(f, "rawtcp, {n} shards"),
            Config::Tokio => write!(f, "tokio::net (kernel)"),
        }
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} flows, {:.0} MB in all, {} rounds, {cores} cores, udp datapath on loopback",
        args.flows,
        args.bytes as f64 / 1e6,
        args.reps
    );
    let mut configs: Vec<Config> = args.shards.iter().map(|&n| Config::Rawtcp(n)).collect();
    configs.push(Config::Tokio);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for round in 0..args.reps {
        for (i, c) in configs.iter().enumerate() {
            match tokio::time::timeout(LIMIT, run(*c, args.flows, args.bytes)).await {
                Ok(Ok(r)) => {
                    println!("  round {}: {c}: {r:.0} MB/s", round + 1);
                    rates[i].push(r);
                }
                Ok(Err(e)) => {
                    eprintln!("{c} failed: {e}");
                    std::process::exit(1);
                }
                Err(_) => {
                    eprintln!("{c}: no result within {LIMIT:?}");
                    std::process::exit(1);
                }
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = rates.iter_mut().map(median).collect();
    let tokio = medians[medians.len() - 1];
    let one = configs
        .iter()
        .position(|c| *c == Config::Rawtcp(1))
        .map(|i| medians[i]);
    println!();
    println!(
        "{:<24} {:>10} {:>12} {:>12}",
        "median", "MB/s", "/ tokio::net", "/ 1 shard"
    );
    for (c, m) in configs.iter().zip(&medians) {
        let vs_one = match (c, one) {
            (Config::Rawtcp(_), Some(one)) => format!("{:.2}", m / one),
            _ => "-".into(),
        };
        println!(
            "{:<24} {:>10.0} {:>12.2} {:>12}",
            c.to_string(),
            m,
            m / tokio,
            vs_one
        );
    }
}

/// One run of `config`: `flows` connections carrying `bytes` in all. Returns MB/s.
async fn run(config: Config, flows: usize, bytes: u64) -> io::Result<f64> {
    let each = bytes / flows as u64;
    match config {
        Config::Rawtcp(shards) => {
            let udp = rawtcp::datapath::udp::UdpDatapath::new()?;
            let stack = Stack::builder().datapath(udp).shards(shards).build()?;
            let listener = stack.bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let start = Instant::now();
            let server = tokio::spawn(async move {
                let mut tasks = Vec::new();
                for _ in 0..flows {
                    let (s, _) = listener.accept().await?;
                    tasks.push(tokio::spawn(async move {
                        let mut s = s;
                        receive(&mut s, each).await
                    }));
                }
                join(tasks).await
            });
            let clients = (0..flows)
                .map(|_| {
                    let stack = stack.clone();
                    tokio::spawn(async move {
                        let mut c = stack.connect(addr).await?;
                        send(&mut c, each).await
                    })
                })
                .collect();
            finish(start, clients, server, each * flows as u64).await
        }
        Config::Tokio => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr: SocketAddr = listener.local_addr()?;
            let start = Instant::now();
            let server = tokio::spawn(async move {
                let mut tasks = Vec::new();
                for _ in 0..flows {
                    let (mut s, _) = listener.accept().await?;
                    tasks.push(tokio::spawn(async move { receive(&mut s, each).await }));
                }
                join(tasks).await
            });
            let clients = (0..flows)
                .map(|_| {
                    tokio::spawn(async move {
                        let mut c = tokio::net::TcpStream::connect(addr).await?;
                        send(&mut c, each).await
                    })
                })
                .collect();
            finish(start, clients, server, each * flows as u64).await
        }
    }
}

/// Waits for the senders and the receivers; checks the total and returns MB/s.
async fn finish(
    start: Instant,
    clients: Vec<tokio::task::JoinHandle<io::Result<u64>>>,
    server: tokio::task::JoinHandle<io::Result<u64>>,
    total: u64,
) -> io::Result<f64> {
    join(clients).await?;
    let got = server.await.map_err(io::Error::other)??;
    let secs = start.elapsed().as_secs_f64();
    if got != total {
        return Err(io::Error::other(format!("received {got} of {total} bytes")));
    }
    Ok(total as f64 / secs / 1e6)
}

async fn join(tasks: Vec<tokio::task::JoinHandle<io::Result<u64>>>) -> io::Result<u64> {
    let mut sum = 0;
    for t in tasks {
        sum += t.await.map_err(io::Error::other)??;
    }
    Ok(sum)
}

/// The pattern, long enough for a chunk starting anywhere in its period.
fn pattern() -> Vec<u8> {
    (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

/// Writes `len` bytes of the pattern and closes the sending side.
async fn send<W: AsyncWrite + Unpin>(w: &mut W, len: u64) -> io::Result<u64> {
    let pat = pattern();
    let mut pos = 0u64;
    while pos < len {
        let n = CHUNK.min((len - pos) as usize);
        let at = (pos % PERIOD as u64) as usize;
        w.write_all(&pat[at..at + n]).await?;
        pos += n as u64;
    }
    w.shutdown().await?;
    Ok(pos)
}

/// Reads to the end, checking every byte against the pattern; returns how many came.
async fn receive<R: AsyncRead + Unpin>(r: &mut R, want: u64) -> io::Result<u64> {
    let pat = pattern();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let at = (pos % PERIOD as u64) as usize;
        if buf[..n] != pat[at..at + n] {
            return Err(io::Error::other(format!(
                "corrupt data in the {n} bytes at {pos}"
            )));
        }
        pos += n as u64;
    }
    if pos != want {
        return Err(io::Error::other(format!("{pos} of {want} bytes arrived")));
    }
    Ok(pos)
}
