//! A seeded sweep of impaired simulated networks: the public API (stacks, listener, streams,
//! split halves, half-close) moving byte-exact data both ways over links that lose,
//! duplicate, reorder and corrupt packets, with latency, jitter, MTU and bandwidth drawn per
//! case.
//!
//! This file owns the sweep: how a scenario is drawn from a seed ([`Scenario::draw`]), the
//! exchange every case runs ([`run_case`]), and the summary. Each case runs on a
//! current-thread tokio runtime with a paused clock (virtual time) and its own
//! [`SimNetwork`] seeded with the case's seed, so a case is the same every time it runs.
//!
//! The exchange: the server listens and the client connects; both write their bytes while
//! reading the other's (four spawned tasks, one per stream half); the client shuts down its
//! write half; the server reads to EOF, then writes a further chunk and shuts down; the client
//! reads everything and EOF. Every byte is checked against a position-dependent pattern (a
//! different stretch of it per direction). A case fails if any operation errors (`TimedOut`
//! in particular), a byte is wrong, missing or extra, or the case takes more than
//! [`VIRTUAL_LIMIT`] of virtual time; a case that takes longer than the real-time limit is
//! reported as a hang. All cases run; at the end a summary is printed (cases, failures by
//! kind, virtual time, retransmissions and timeouts from `info()`, the failing seeds with
//! their scenarios) and the test fails if any case failed.
//!
//! ```text
//! cargo test --test loss_sweep -- --nocapture                       # 500 cases (seeds 1..=500)
//! RAWTCP_SWEEP_CASES=10000 cargo test --release --test loss_sweep -- --nocapture
//! RAWTCP_SWEEP_SEED=5000 cargo test --test loss_sweep -- --nocapture   # seeds 5000, 5001, ...
//! RAWTCP_SWEEP_ONLY=17 cargo test --test loss_sweep -- --nocapture     # replay seed 17 alone
//! RAWTCP_SWEEP_ONLY=17 RAWTCP_SWEEP_PCAP=/tmp/17.pcap cargo test --test loss_sweep -- --nocapture
//! ```
//!
//! Other settings: `RAWTCP_SWEEP_THREADS` (cases run at once, one runtime each; default: the
//! number of CPUs), `RAWTCP_SWEEP_PCAP` (with `RAWTCP_SWEEP_ONLY`: a pcap file of every
//! segment the client stack sent and received), `RAWTCP_SWEEP_REAL_LIMIT` (seconds of real
//! time a case may take before it is reported as a hang; default 300), `RAWTCP_SWEEP_SHOW`
//! (failing cases listed in full; default 100).

mod runtime_common;

use rawtcp::datapath::sim::{LinkConfig, SimNetwork, SimStats};
use rawtcp::tcp::{OwnedReadHalf, OwnedWriteHalf};
use rawtcp::{Stack, TcpInfo};
use runtime_common::{fill, pattern};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Once};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

/// Cases run when `RAWTCP_SWEEP_CASES` is not set.
const DEFAULT_CASES: u64 = 500;
/// The first seed when `RAWTCP_SWEEP_SEED` is not set.
const DEFAULT_SEED: u64 = 1;
/// The most virtual time one case may take, from the first SYN to the last EOF.
const VIRTUAL_LIMIT: Duration = Duration::from_secs(3600);
/// The most real time one case may take before it is reported as a hang (its thread is then
/// abandoned), unless `RAWTCP_SWEEP_REAL_LIMIT` says otherwise.
const DEFAULT_REAL_LIMIT: Duration = Duration::from_secs(300);
/// After this many hangs the sweep stops starting cases (each hang may keep a CPU busy).
const MAX_HANGS: usize = 4;
/// Where the server→client stream starts in the pattern, so that bytes of one direction
/// never pass for bytes of the other.
const S2C_OFFSET: u64 = 1 << 40;
/// Failing seeds listed in the summary's one-line list.
const SEEDS_LISTED: usize = 300;
/// The server's port.
const PORT: u16 = 80;

// ---- randomness -----------------------------------------------------------------------------

/// A small seeded generator (SplitMix64): every choice of a scenario comes from it.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_1055_5eed_1055)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// Uniform in `0..100`.
    fn percent(&mut self) -> u64 {
        self.next() % 100
    }

    /// Log-uniform in `lo..=hi` (both positive).
    fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        ((l + (h - l) * self.unit()).exp() as u64).clamp(lo, hi)
    }
}

// ---- scenarios ------------------------------------------------------------------------------

/// Everything one case does, drawn from its seed.
#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    v6: bool,
    /// Link from the client to the server.
    c2s: LinkConfig,
    /// Link from the server to the client.
    s2c: LinkConfig,
    /// Bytes the client sends.
    c2s_len: u64,
    /// Bytes the server sends while it is also reading.
    s2c_len: u64,
    /// Bytes the server sends after reading the client's EOF.
    tail_len: u64,
    /// Size of each write, client and server.
    client_chunk: usize,
    server_chunk: usize,
    /// Size of each read buffer, client and server.
    client_read: usize,
    server_read: usize,
    /// ISNs (client, server).
    isn: (u32, u32),
}

/// The impairments of one direction.
fn draw_impairments(r: &mut Rng, base: LinkConfig) -> LinkConfig {
    let loss = if r.chance(0.15) { 0.0 } else { r.unit() * 0.30 };
    let mut link = base.with_loss(loss);
    if r.chance(0.25) {
        link = link.with_duplicate(r.unit() * 0.05);
    }
    if r.chance(0.25) {
        let delay = Duration::from_micros(r.range(1_000, 50_000));
        link = link.with_reorder(r.unit() * 0.2, delay);
    }
    if r.chance(0.15) {
        link = link.with_corrupt(r.unit() * 0.02);
    }
    link
}

/// A transfer size: sometimes nothing, sometimes tiny, usually up to 300 KB, occasionally
/// up to 3 MB.
fn draw_len(r: &mut Rng) -> u64 {
    match r.percent() {
        0..=9 => 0,
        10..=19 => r.range(1, 2_000),
        20..=94 => r.range(1, 300_000),
        _ => r.range(300_000, 3_000_000),
    }
}

/// A write or read size: usually 512 B to 256 KB (log-uniform), sometimes small.
fn draw_chunk(r: &mut Rng, total: u64) -> usize {
    if total <= 300_000 && r.chance(0.1) {
        r.range(1, 512) as usize
    } else {
        r.log_range(512, 256 * 1024) as usize
    }
}

impl Scenario {
    fn draw(seed: u64) -> Scenario {
        let r = &mut Rng::new(seed);
        let v6 = r.chance(0.2);
        let mut mtu = match r.next() % 6 {
            0 => 576,
            1 => 1280,
            2 | 3 => 1500,
            4 => 9000,
            _ => r.range(576, 9000),
        } as usize;
        if v6 {
            mtu = mtu.max(1280); // the IPv6 minimum MTU (RFC 8200 §5)
        }
        let latency = if r.chance(0.1) {
            Duration::ZERO
        } else {
            Duration::from_micros(r.range(0, 100_000))
        };
        let mut base = LinkConfig::default().with_mtu(mtu).with_latency(latency);
        if r.chance(0.4) {
            base = base.with_jitter(Duration::from_micros(r.range(1, 20_000)));
        }
        if r.chance(0.35) {
            // 0.8 Mbit/s to 1 Gbit/s.
            let bandwidth = r.log_range(100_000, 125_000_000);
            base = base.with_bandwidth(bandwidth);
            if r.chance(0.5) {
                // A drop-tail queue of 5-500 ms, but at least four full packets long.
                let four = Duration::from_secs_f64(4.0 * mtu as f64 / bandwidth as f64);
                let limit = Duration::from_micros(r.range(5_000, 500_000)).max(four);
                base = base.with_queue_limit(limit);
            }
        }
        let c2s = draw_impairments(r, base);
        let s2c = if r.chance(0.5) {
            c2s
        } else {
            draw_impairments(r, base)
        };
        let c2s_len = draw_len(r);
        let s2c_len = draw_len(r);
        let tail_len = draw_len(r);
        let client_chunk = draw_chunk(r, c2s_len);
        let server_chunk = draw_chunk(r, s2c_len.max(tail_len));
        let client_read = draw_chunk(r, s2c_len + tail_len);
        let server_read = draw_chunk(r, c2s_len);
        let isn = if r.chance(0.25) {
            // Sequence numbers wrap past 2^32 during the transfer.
            let near = |r: &mut Rng, len: u64| {
                u32::MAX - u32::try_from(r.range(0, len.min(1 << 30))).unwrap_or(0)
            };
            (near(r, c2s_len), near(r, s2c_len + tail_len))
        } else {
            (r.next() as u32, r.next() as u32)
        };
        Scenario {
            seed,
            v6,
            c2s,
            s2c,
            c2s_len,
            s2c_len,
            tail_len,
            client_chunk,
            server_chunk,
            client_read,
            server_read,
            isn,
        }
    }

    /// The larger of the two directions' loss rates.
    fn max_loss(&self) -> f64 {
        self.c2s.loss.max(self.s2c.loss)
    }

    fn addrs(&self) -> (IpAddr, IpAddr) {
        if self.v6 {
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        } else {
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
        }
    }
}

/// One direction of a link, compactly.
struct Link<'a>(&'a LinkConfig);

impl fmt::Display for Link<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.0;
        write!(f, "loss {:.1}%", l.loss * 100.0)?;
        if l.duplicate > 0.0 {
            write!(f, " dup {:.1}%", l.duplicate * 100.0)?;
        }
        if l.reorder > 0.0 {
            write!(
                f,
                " reorder {:.1}%/{:?}",
                l.reorder * 100.0,
                l.reorder_delay
            )?;
        }
        if l.corrupt > 0.0 {
            write!(f, " corrupt {:.2}%", l.corrupt * 100.0)?;
        }
        Ok(())
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.c2s;
        write!(
            f,
            "{} mtu {} latency {:?}",
            if self.v6 { "v6" } else { "v4" },
            l.mtu,
            l.latency
        )?;
        if !l.jitter.is_zero() {
            write!(f, " jitter {:?}", l.jitter)?;
        }
        if let Some(bw) = l.bandwidth {
            write!(f, " bw {:.3} MB/s", bw as f64 / 1e6)?;
            if let Some(q) = l.queue_limit {
                write!(f, " queue {q:?}")?;
            }
        }
        write!(f, "; c2s [{}]", Link(&self.c2s))?;
        if self.s2c == self.c2s {
            write!(f, " s2c same")?;
        } else {
            write!(f, " s2c [{}]", Link(&self.s2c))?;
        }
        write!(
            f,
            "; bytes c2s {} s2c {}+{} tail; writes {}/{} reads {}/{} (client/server); isn {:#x}/{:#x}",
            self.c2s_len,
            self.s2c_len,
            self.tail_len,
            self.client_chunk,
            self.server_chunk,
            self.client_read,
            self.server_read,
            self.isn.0,
            self.isn.1
        )
    }
}

// ---- outcomes -------------------------------------------------------------------------------

/// Why a case failed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Bytes wrong, missing (early EOF) or extra.
    Mismatch,
    /// A task or the case panicked.
    Panic,
    /// An operation failed with `TimedOut` (the engine gave up).
    TimedOut,
    /// An operation failed with another error.
    Other(io::ErrorKind),
    /// Nothing failed, but the case was still running at [`VIRTUAL_LIMIT`].
    VirtualLimit,
    /// The case used more real time than allowed.
    Hang,
    /// A task stopped because another one failed (never the reason a case is counted as
    /// failed).
    Consequence,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Other(k) => write!(f, "Other({k:?})"),
            k => write!(f, "{k:?}"),
        }
    }
}

/// One failed operation.
#[derive(Clone, Debug)]
struct Failure {
    kind: Kind,
    /// Which operation: `connect`, `client write`, `server read`, ...
    what: &'static str,
    detail: String,
    /// Virtual time since the case started.
    at: Duration,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in {} at {:.3} s: {}",
            self.kind,
            self.what,
            self.at.as_secs_f64(),
            self.detail
        )
    }
}

/// What one case did.
struct CaseResult {
    scenario: Scenario,
    /// Every failed operation; the case failed if one is not a consequence.
    failures: Vec<Failure>,
    /// Virtual time from the start to the last task's end.
    virtual_time: Duration,
    real_time: Duration,
    client: Option<TcpInfo>,
    server: Option<TcpInfo>,
    net: SimStats,
}

impl CaseResult {
    /// The failure the case is counted under: the first by [`Kind`]'s order.
    fn primary(&self) -> Option<&Failure> {
        self.failures
            .iter()
            .filter(|f| f.kind != Kind::Consequence)
            .min_by(|a, b| a.kind.cmp(&b.kind).then(a.at.cmp(&b.at)))
    }

    fn sum(&self, field: impl Fn(&TcpInfo) -> u64) -> u64 {
        self.client
            .iter()
            .chain(self.server.iter())
            .map(field)
            .sum()
    }
}

/// The case's clock and deadline, shared by its tasks.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    deadline: Instant,
}

impl Clock {
    fn fail(&self, kind: Kind, what: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            what,
            detail: detail.into(),
            at: self.start.elapsed(),
        }
    }

    fn io(&self, what: &'static str, e: &io::Error) -> Failure {
        let kind = match e.kind() {
            io::ErrorKind::TimedOut => Kind::TimedOut,
            k => Kind::Other(k),
        };
        self.fail(kind, what, e.to_string())
    }

    /// Runs `fut` until the case's deadline.
    async fn bounded<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.fail(
                Kind::VirtualLimit,
                what,
                format!("still running after {VIRTUAL_LIMIT:?} of virtual time"),
            )),
        }
    }
}

// ---- one case -------------------------------------------------------------------------------

/// Writes the pattern bytes `offset + from .. offset + to` in writes of `chunk`.
async fn write_range(
    w: &mut OwnedWriteHalf,
    offset: u64,
    from: u64,
    to: u64,
    chunk: usize,
    clock: &Clock,
    what: &'static str,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; chunk];
    let mut pos = from;
    // Bounded: every round moves `pos` forward by at least one byte or returns.
    while pos < to {
        let n = chunk.min(usize::try_from(to - pos).unwrap_or(chunk));
        fill(offset + pos, &mut buf[..n]);
        w.write_all(&buf[..n])
            .await
            .map_err(|e| clock.io(what, &e))?;
        pos += n as u64;
    }
    Ok(())
}

/// Reads to EOF with a buffer of `buf_len`, checking that exactly the pattern bytes
/// `offset .. offset + expect` arrive.
async fn read_exactly_to_eof(
    r: &mut OwnedReadHalf,
    offset: u64,
    expect: u64,
    buf_len: usize,
    clock: &Clock,
    what: &'static str,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; buf_len];
    let mut pos = 0u64;
    // Bounded: every round reads at least one byte (at most `expect + 1` rounds before the
    // length check fails) or returns at EOF.
    loop {
        let n = r.read(&mut buf).await.map_err(|e| clock.io(what, &e))?;
        if n == 0 {
            if pos != expect {
                return Err(clock.fail(
                    Kind::Mismatch,
                    what,
                    format!("EOF after {pos} of {expect} bytes"),
                ));
            }
            return Ok(());
        }
        if pos + n as u64 > expect {
            return Err(clock.fail(
                Kind::Mismatch,
                what,
                format!("{} bytes arrived, {expect} were sent", pos + n as u64),
            ));
        }
        if let Some(i) = (0..n).find(|&i| buf[i] != pattern(offset + pos + i as u64)) {
            let at = pos + i as u64;
            return Err(clock.fail(
                Kind::Mismatch,
                what,
                format!(
                    "byte {at} is {:#04x}, expected {:#04x}",
                    buf[i],
                    pattern(offset + at)
                ),
            ));
        }
        pos += n as u64;
    }
}

/// A task's failure, or its panic.
fn joined<T>(
    clock: &Clock,
    what: &'static str,
    r: Result<T, tokio::task::JoinError>,
) -> Result<T, Failure> {
    r.map_err(|e| {
        let detail = if e.is_panic() {
            let p = e.into_panic();
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into())
        } else {
            e.to_string()
        };
        clock.fail(Kind::Panic, what, detail)
    })
}

/// Runs one scenario on the current (paused, current-thread) runtime.
async fn run_case(sc: &Scenario, pcap: Option<String>) -> CaseResult {
    let real = std::time::Instant::now();
    let start = Instant::now();
    let clock = Clock {
        start,
        deadline: start + VIRTUAL_LIMIT,
    };
    let net = SimNetwork::new(sc.seed);
    let (server_ip, client_ip) = sc.addrs();
    net.set_path(client_ip, server_ip, sc.c2s);
    net.set_path(server_ip, client_ip, sc.s2c);
    let mut result = CaseResult {
        scenario: sc.clone(),
        failures: Vec::new(),
        virtual_time: Duration::ZERO,
        real_time: Duration::ZERO,
        client: None,
        server: None,
        net: SimStats::default(),
    };
    let stacks = (|| -> io::Result<(Stack, Stack)> {
        let (client_isn, server_isn) = sc.isn;
        let server = Stack::builder()
            .datapath(net.host(server_ip)?)
            .isn(move |_, _| server_isn)
            .build()?;
        let mut client = Stack::builder()
            .datapath(net.host(client_ip)?)
            .isn(move |_, _| client_isn);
        if let Some(path) = pcap {
            client = client.pcap(path);
        }
        Ok((server, client.build()?))
    })();
    let (server, client) = match stacks {
        Ok(s) => s,
        Err(e) => {
            result.failures.push(clock.io("build stacks", &e));
            return result;
        }
    };
    let exchange = exchange(sc, &server, &client, server_ip, &clock).await;
    result.failures = exchange.0;
    result.client = exchange.1;
    result.server = exchange.2;
    result.virtual_time = start.elapsed();
    result.real_time = real.elapsed();
    result.net = net.stats();
    result
}

/// A spawned task ending with its stream half and its result.
type Task<H> = tokio::task::JoinHandle<(H, Result<(), Failure>)>;
/// A [`Task`] awaited until the guard time.
type Joined<H> =
    Result<Result<(H, Result<(), Failure>), tokio::task::JoinError>, tokio::time::error::Elapsed>;

/// Connects, runs the four halves, and returns the failures and both ends' `info()`.
///
/// The client's tasks start as soon as `connect` returns and the server's as soon as
/// `accept` does, as applications would: the client's first segment may be what completes
/// the handshake at the server.
async fn exchange(
    sc: &Scenario,
    server: &Stack,
    client: &Stack,
    server_ip: IpAddr,
    clock: &Clock,
) -> (Vec<Failure>, Option<TcpInfo>, Option<TcpInfo>) {
    let addr = SocketAddr::new(server_ip, PORT);
    let listener = match server.bind(addr).await {
        Ok(l) => l,
        Err(e) => return (vec![clock.io("bind", &e)], None, None),
    };
    let c = *clock;
    let accept = tokio::spawn(async move {
        c.bounded("accept", async {
            let (s, _) = listener.accept().await.map_err(|e| c.io("accept", &e))?;
            Ok(s)
        })
        .await
    });
    let mut failures = Vec::new();
    let connected = clock
        .bounded("connect", async {
            client
                .connect(addr)
                .await
                .map_err(|e| clock.io("connect", &e))
        })
        .await;
    let client_tasks = match connected {
        Ok(stream) => Some(spawn_client(sc, stream, clock)),
        Err(f) => {
            failures.push(f);
            None
        }
    };
    // Every task ends by the deadline; the extra minute only guards against one that does
    // not.
    let guard = clock.deadline + Duration::from_secs(60);
    let accepted = match timeout_at(guard, accept).await {
        Ok(j) => joined(clock, "accept", j).and_then(|r| r),
        Err(_) => Err(clock.fail(Kind::VirtualLimit, "accept", "task outlived the deadline")),
    };
    let server_tasks = match accepted {
        Ok(stream) => Some(spawn_server(sc, stream, clock)),
        Err(f) => {
            failures.push(f);
            None
        }
    };
    let f = &mut failures;
    let client_info = match client_tasks {
        Some((writer, reader)) => {
            let cw = half(clock, f, "client write", timeout_at(guard, writer).await);
            let cr = half(clock, f, "client read", timeout_at(guard, reader).await);
            info(clock, f, "client, after its tasks", cr, cw)
        }
        None => None,
    };
    let server_info = match server_tasks {
        Some((reader, writer)) => {
            let sr = half(clock, f, "server read", timeout_at(guard, reader).await);
            let sw = half(clock, f, "server write", timeout_at(guard, writer).await);
            info(clock, f, "server, after its tasks", sr, sw)
        }
        None => None,
    };
    (failures, client_info, server_info)
}

/// `info()` of the stream the two halves make up; an error the connection ended with that
/// no operation reported (it gave up after the application's last call returned, say) is
/// added to `failures`.
fn info(
    clock: &Clock,
    failures: &mut Vec<Failure>,
    what: &'static str,
    r: Option<OwnedReadHalf>,
    w: Option<OwnedWriteHalf>,
) -> Option<TcpInfo> {
    let stream = r.zip(w).and_then(|(r, w)| r.reunite(w).ok())?;
    if let Ok(Some(e)) = stream.take_error() {
        let f = clock.io(what, &e);
        let side = what.split(',').next().unwrap_or(what);
        if !failures
            .iter()
            .any(|g| g.kind == f.kind && g.what.starts_with(side))
        {
            failures.push(f);
        }
    }
    stream.info().ok()
}

/// The client's two tasks: write everything then shut down; read everything to EOF.
fn spawn_client(
    sc: &Scenario,
    stream: rawtcp::TcpStream,
    clock: &Clock,
) -> (Task<OwnedWriteHalf>, Task<OwnedReadHalf>) {
    let (mut cr, mut cw) = stream.into_split();
    let c = *clock;
    let (len, chunk) = (sc.c2s_len, sc.client_chunk);
    let writer = tokio::spawn(async move {
        let r = c
            .bounded("client write", async {
                write_range(&mut cw, 0, 0, len, chunk, &c, "client write").await?;
                cw.shutdown().await.map_err(|e| c.io("client shutdown", &e))
            })
            .await;
        (cw, r)
    });
    let (expect, buf) = (sc.s2c_len + sc.tail_len, sc.client_read);
    let reader = tokio::spawn(async move {
        let what = "client read";
        let read = read_exactly_to_eof(&mut cr, S2C_OFFSET, expect, buf, &c, what);
        let r = c.bounded(what, read).await;
        (cr, r)
    });
    (writer, reader)
}

/// The server's two tasks: read everything to EOF; write the first part, then (once the
/// reader saw EOF) the tail, then shut down.
fn spawn_server(
    sc: &Scenario,
    stream: rawtcp::TcpStream,
    clock: &Clock,
) -> (Task<OwnedReadHalf>, Task<OwnedWriteHalf>) {
    let (mut sr, mut sw) = stream.into_split();
    let (eof_tx, eof_rx) = oneshot::channel::<()>();
    let c = *clock;
    let (expect, buf) = (sc.c2s_len, sc.server_read);
    let reader = tokio::spawn(async move {
        let what = "server read";
        let r = c
            .bounded(what, read_exactly_to_eof(&mut sr, 0, expect, buf, &c, what))
            .await;
        if r.is_ok() {
            let _ = eof_tx.send(());
        }
        (sr, r)
    });
    let (end, tail_end, chunk) = (sc.s2c_len, sc.s2c_len + sc.tail_len, sc.server_chunk);
    let writer = tokio::spawn(async move {
        let r = c
            .bounded("server write", async {
                write_range(&mut sw, S2C_OFFSET, 0, end, chunk, &c, "server write").await?;
                let what = "server write (tail)";
                if eof_rx.await.is_err() {
                    let why = "the server's reader failed, so no tail was sent";
                    return Err(c.fail(Kind::Consequence, what, why));
                }
                write_range(&mut sw, S2C_OFFSET, end, tail_end, chunk, &c, what).await?;
                sw.shutdown().await.map_err(|e| c.io("server shutdown", &e))
            })
            .await;
        (sw, r)
    });
    (reader, writer)
}

/// What a task ended with: its stream half (unless it panicked), its failure added to
/// `failures`.
fn half<H>(
    clock: &Clock,
    failures: &mut Vec<Failure>,
    what: &'static str,
    joined_by_guard: Joined<H>,
) -> Option<H> {
    let r = match joined_by_guard {
        Ok(r) => joined(clock, what, r),
        Err(_) => Err(clock.fail(Kind::VirtualLimit, what, "task outlived the deadline")),
    };
    match r {
        Ok((h, Ok(()))) => Some(h),
        Ok((h, Err(f))) => {
            failures.push(f);
            Some(h)
        }
        Err(f) => {
            failures.push(f);
            None
        }
    }
}

thread_local! {
    /// Panics seen on this thread while it runs a case (the reactor's included: tokio turns a
    /// panic in a task into a `JoinError` nobody reads, and the stack then just stops).
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Installs, once, a panic hook that records panics on threads running a case (and prints
/// them only when a single seed is replayed), and behaves as before everywhere else.
fn record_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        let replay = std::env::var_os("RAWTCP_SWEEP_ONLY").is_some();
        std::panic::set_hook(Box::new(move |info| {
            let recorded = PANICS.with(|p| match p.borrow_mut().as_mut() {
                Some(list) => {
                    let payload = info.payload();
                    let msg = payload
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| payload.downcast_ref::<&str>().copied())
                        .unwrap_or("panic");
                    let at = info.location().map(|l| l.to_string()).unwrap_or_default();
                    list.push(format!("{at}: {}", msg.replace('\n', " ")));
                    true
                }
                None => false,
            });
            if !recorded || replay {
                previous(info);
            }
        }));
    });
}

/// Runs one case on a fresh current-thread runtime with a paused clock.
fn run_case_blocking(sc: &Scenario, pcap: Option<String>) -> CaseResult {
    record_panics();
    PANICS.with(|p| *p.borrow_mut() = Some(Vec::new()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let mut r = rt.block_on(run_case(sc, pcap));
    drop(rt);
    let panics = PANICS.with(|p| p.borrow_mut().take()).unwrap_or_default();
    for msg in panics {
        r.failures.push(Failure {
            kind: Kind::Panic,
            what: "a task or a stack's reactor",
            detail: msg,
            at: r.virtual_time,
        });
    }
    r
}

// ---- the sweep ------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

/// How a case thread reports back.
enum Msg {
    Done(Box<CaseResult>),
    Panicked(u64, String),
}

/// Runs the seeds `base .. base + cases`, `threads` at a time, each on a thread of its own;
/// a case running longer than `real_limit` is reported as a hang and its thread abandoned.
fn sweep(base: u64, cases: u64, threads: usize, real_limit: Duration) -> Vec<CaseResult> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut running: BTreeMap<u64, std::time::Instant> = BTreeMap::new();
    let mut results = Vec::with_capacity(usize::try_from(cases).unwrap_or(0));
    let mut next = 0u64;
    let mut hangs = 0usize;
    // Bounded: each round either starts a case, finishes one, or declares one hung, and there
    // are `cases` of each at most.
    loop {
        while running.len() < threads && next < cases && hangs < MAX_HANGS {
            let seed = base + next;
            next += 1;
            let tx = tx.clone();
            running.insert(seed, std::time::Instant::now());
            std::thread::Builder::new()
                .name(format!("sweep-{seed}"))
                .spawn(move || {
                    let sc = Scenario::draw(seed);
                    let r = std::panic::catch_unwind(|| run_case_blocking(&sc, None));
                    let _ = tx.send(match r {
                        Ok(r) => Msg::Done(Box::new(r)),
                        Err(p) => Msg::Panicked(
                            seed,
                            p.downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "panic".into()),
                        ),
                    });
                })
                .expect("spawn a case thread");
        }
        if running.is_empty() {
            break;
        }
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Msg::Done(r)) => {
                running.remove(&r.scenario.seed);
                results.push(*r);
            }
            Ok(Msg::Panicked(seed, msg)) => {
                let real = running
                    .remove(&seed)
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                results.push(outside_failure(seed, Kind::Panic, msg, real));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
        }
        let hung: Vec<u64> = running
            .iter()
            .filter(|(_, t)| t.elapsed() > real_limit)
            .map(|(s, _)| *s)
            .collect();
        for seed in hung {
            running.remove(&seed);
            hangs += 1;
            let msg = format!("still running after {real_limit:?} of real time; thread abandoned");
            results.push(outside_failure(seed, Kind::Hang, msg, real_limit));
        }
    }
    if next < cases {
        eprintln!(
            "loss_sweep: stopped after {MAX_HANGS} hangs; {} cases not run",
            cases - next
        );
    }
    results.sort_by_key(|r| r.scenario.seed);
    results
}

/// The result of a case that did not report back itself.
fn outside_failure(seed: u64, kind: Kind, detail: String, real: Duration) -> CaseResult {
    CaseResult {
        scenario: Scenario::draw(seed),
        failures: vec![Failure {
            kind,
            what: "case",
            detail,
            at: Duration::ZERO,
        }],
        virtual_time: Duration::ZERO,
        real_time: real,
        client: None,
        server: None,
        net: SimStats::default(),
    }
}

/// One line about a case.
fn describe(r: &CaseResult) -> String {
    let mut s = format!(
        "seed {}: {:.3} s virtual, {:.2} s real, retx {} rto {} fast {}; packets sent {} lost {} over-MTU {}",
        r.scenario.seed,
        r.virtual_time.as_secs_f64(),
        r.real_time.as_secs_f64(),
        r.sum(|i| i.retransmissions),
        r.sum(|i| i.timeouts),
        r.sum(|i| i.fast_retransmits),
        r.net.sent,
        r.net.lost,
        r.net.dropped_mtu,
    );
    if let Some(p) = r.primary() {
        s += &format!("\n    FAILED: {p}");
        for f in r.failures.iter().filter(|f| !std::ptr::eq(*f, p)) {
            s += &format!("\n    also: {f}");
        }
    }
    s += &format!("\n    scenario: {}", r.scenario);
    s
}

/// The summary of a sweep, and whether every case passed.
fn summary(
    results: &[CaseResult],
    base: u64,
    cases: u64,
    threads: usize,
    real: Duration,
) -> (String, bool) {
    let mut out = String::new();
    let failed: Vec<&CaseResult> = results.iter().filter(|r| r.primary().is_some()).collect();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_what: BTreeMap<String, usize> = BTreeMap::new();
    for r in &failed {
        let p = r.primary().expect("failed");
        *by_kind.entry(p.kind.to_string()).or_default() += 1;
        *by_what
            .entry(format!("{} in {}", p.kind, p.what))
            .or_default() += 1;
    }
    let total = |f: &dyn Fn(&CaseResult) -> u64| -> u64 { results.iter().map(f).sum() };
    let virt: f64 = results.iter().map(|r| r.virtual_time.as_secs_f64()).sum();
    let passed: Vec<&CaseResult> = results.iter().filter(|r| r.primary().is_none()).collect();
    let passed_virt: Vec<f64> = passed
        .iter()
        .map(|r| r.virtual_time.as_secs_f64())
        .collect();
    let max_real = results
        .iter()
        .map(|r| r.real_time)
        .max()
        .unwrap_or_default();
    out += &format!(
        "loss_sweep: {} cases (seeds {}..={}), {} failed, {} passed; {} threads, {:.1} s real (slowest case {:.1} s)\n",
        results.len(),
        base,
        base + cases.saturating_sub(1),
        failed.len(),
        passed.len(),
        threads,
        real.as_secs_f64(),
        max_real.as_secs_f64(),
    );
    out += "  failures by kind:";
    for kind in ["TimedOut", "Mismatch", "VirtualLimit", "Panic", "Hang"] {
        out += &format!(" {kind} {}", by_kind.get(kind).copied().unwrap_or(0));
    }
    let other: usize = by_kind
        .iter()
        .filter(|(k, _)| k.starts_with("Other"))
        .map(|(_, n)| n)
        .sum();
    out += &format!(" Other {other}");
    for (k, n) in by_kind.iter().filter(|(k, _)| k.starts_with("Other")) {
        out += &format!(" [{k} {n}]");
    }
    out += "\n";
    if !by_what.is_empty() {
        out += "  failures by operation:";
        for (w, n) in &by_what {
            out += &format!(" {w}: {n};");
        }
        out += "\n";
    }
    out += &format!(
        "  virtual time: {:.0} s over all cases; passed cases mean {:.2} s, max {:.2} s\n",
        virt,
        passed_virt.iter().sum::<f64>() / passed_virt.len().max(1) as f64,
        passed_virt.iter().copied().fold(0.0, f64::max),
    );
    out += &format!(
        "  from info(), both ends, all cases: retransmissions {}, timeouts (RTOs) {}, fast retransmits {}, spurious {}\n",
        total(&|r| r.sum(|i| i.retransmissions)),
        total(&|r| r.sum(|i| i.timeouts)),
        total(&|r| r.sum(|i| i.fast_retransmits)),
        total(&|r| r.sum(|i| i.spurious_retransmits)),
    );
    out += &format!(
        "  network: packets sent {}, lost {}, duplicated {}, corrupted {}, queue drops {}, dropped as larger than the MTU {}\n",
        total(&|r| r.net.sent),
        total(&|r| r.net.lost),
        total(&|r| r.net.duplicated),
        total(&|r| r.net.corrupted),
        total(&|r| r.net.dropped_queue),
        total(&|r| r.net.dropped_mtu),
    );
    let oversize = |rs: &[&CaseResult]| rs.iter().filter(|r| r.net.dropped_mtu > 0).count();
    out += &format!(
        "  cases where the network dropped packets larger than the MTU: {} of {} failed, {} of {} passed\n",
        oversize(&failed),
        failed.len(),
        oversize(&passed),
        passed.len(),
    );
    out += "  failed / cases by the larger direction's loss:";
    for (lo, hi) in [
        (0.0, 1e-9),
        (1e-9, 0.05),
        (0.05, 0.10),
        (0.10, 0.20),
        (0.20, 0.31),
    ] {
        let in_bucket: Vec<&CaseResult> = results
            .iter()
            .filter(|r| (lo..hi).contains(&r.scenario.max_loss()))
            .collect();
        let bad = in_bucket.iter().filter(|r| r.primary().is_some()).count();
        out += &format!(
            " [{:.0}-{:.0}%) {}/{};",
            lo * 100.0,
            hi * 100.0,
            bad,
            in_bucket.len()
        );
    }
    out += "\n";
    if !failed.is_empty() {
        let show = env_u64("RAWTCP_SWEEP_SHOW").unwrap_or(100) as usize;
        let seeds: Vec<String> = failed.iter().map(|r| r.scenario.seed.to_string()).collect();
        let listed = seeds.len().min(SEEDS_LISTED);
        out += &format!("failing seeds: {}", seeds[..listed].join(" "));
        if listed < seeds.len() {
            out += &format!(" ... and {} more", seeds.len() - listed);
        }
        out += "\n";
        // The rarest kinds of failure first: they are the easiest to miss.
        let mut failed = failed.clone();
        failed.sort_by_key(|r| {
            let kind = r.primary().expect("failed").kind.to_string();
            (by_kind.get(&kind).copied().unwrap_or(0), r.scenario.seed)
        });
        out += &format!(
            "replay one with: RAWTCP_SWEEP_ONLY=<seed> cargo test --test loss_sweep -- --nocapture\n\
             {} failing cases, the rarest kinds of failure first:\n",
            show.min(failed.len())
        );
        for r in failed.iter().take(show) {
            out += &format!("  {}\n", describe(r));
        }
    }
    (out, failed.is_empty())
}

/// The sweep: `RAWTCP_SWEEP_CASES` cases from seed `RAWTCP_SWEEP_SEED`, or the one seed
/// `RAWTCP_SWEEP_ONLY`.
#[test]
fn loss_sweep() {
    if let Some(seed) = env_u64("RAWTCP_SWEEP_ONLY") {
        let sc = Scenario::draw(seed);
        eprintln!("loss_sweep: replaying seed {seed}\n  scenario: {sc}");
        let pcap = std::env::var("RAWTCP_SWEEP_PCAP").ok();
        let r = run_case_blocking(&sc, pcap);
        eprintln!("  {}", describe(&r));
        eprintln!("  client info: {:?}", r.client);
        eprintln!("  server info: {:?}", r.server);
        eprintln!("  network: {:?}", r.net);
        if let Some(p) = r.primary() {
            panic!("seed {seed} failed: {p}");
        }
        return;
    }
    let cases = env_u64("RAWTCP_SWEEP_CASES").unwrap_or(DEFAULT_CASES);
    let base = env_u64("RAWTCP_SWEEP_SEED").unwrap_or(DEFAULT_SEED);
    let threads = env_u64("RAWTCP_SWEEP_THREADS")
        .map(|n| n.max(1) as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let real_limit = env_u64("RAWTCP_SWEEP_REAL_LIMIT")
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_REAL_LIMIT);
    let real = std::time::Instant::now();
    let results = sweep(base, cases, threads, real_limit);
    let (text, ok) = summary(&results, base, cases, threads, real.elapsed());
    eprintln!("{text}");
    assert!(ok, "some cases failed; the summary is above");
}
