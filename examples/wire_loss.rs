//! Loss recovery on a real wire, rawtcp next to the kernel's TCP, on the same path in the
//! same run. Needs root and the tools `ip`, `nft`, `ethtool` and `curl`.
//!
//! ```text
//! cargo build --release --examples          # wire_loss runs the http_server example built next to it
//! sudo target/release/examples/wire_loss                                  # 20M, 5 reps, loss 0,1,5 %
//! sudo target/release/examples/wire_loss --loss 0,1,5 --size 20M --reps 5 --max-time 60
//! sudo target/release/examples/wire_loss --datapath udp --loss 0 --size 50M   # UDP encapsulation
//! sudo target/release/examples/wire_loss --datapath tun --loss 0 --size 50M   # behind a TUN device
//! sudo target/release/examples/wire_loss --loss 1 --reps 1 --capture /tmp/wl.pcap   # then: tcpgraph /tmp/wl.pcap --port 8080 --pacing
//! ```
//!
//! It creates two network namespaces joined by a veth pair (names carry this process's id),
//! turns segmentation and receive offloads off on both ends, UDP segmentation included (so
//! each packet on the wire is one segment, as on a real link), and starts two copies of `examples/http_server.rs` in
//! namespace A: one on rawtcp's raw datapath (port 8080) and one on the kernel's TCP
//! (`--kernel`, port 8081) — the same HTTP application, only the TCP stack differs. Both run
//! the congestion control named by `--cc` (CUBIC by default: rawtcp's default and Linux's
//! stock one), set on each server's listening socket.
//!
//! For each loss rate an nftables table in namespace B drops that fraction of the segments
//! the two servers send, as they arrive off the wire (prerouting hook, `numgen random`; see
//! `LossRule` for why not the servers' output hook). curl in namespace B then downloads SIZE
//! bytes from each server in turn, REPS times each, every download bounded by `--max-time`;
//! the bytes are checked against the servers' `i % 251` pattern as they arrive. The time is
//! curl's `time_total` (connection set-up included).
//!
//! With `--datapath udp` the rawtcp server runs on the UDP datapath instead, which only
//! another rawtcp stack speaks: its downloads are made by `examples/http_client.rs` (rawtcp,
//! UDP datapath) in namespace B, which writes the body to the same checker and reports the
//! time from the start of its connect to the last byte, as curl does. The loss rule then
//! drops the server's UDP datagrams (each one segment) as well. Both ends of the rawtcp
//! download are user-space stacks there, against curl and the kernel on both ends of the
//! other: the same path, the same bytes.
//!
//! With `--datapath tun` the rawtcp server runs on the TUN datapath: it creates a TUN device
//! in namespace A (`wlt` and this process's id, host side `10.97.0.1`) and answers for
//! `10.97.0.2:8080` behind it. Namespace A forwards between the veth and the TUN device
//! (`net.ipv4.ip_forward=1` there), and namespace B routes `10.97.0.0/24` via A's veth
//! address, so curl's path to rawtcp is B → veth → A's kernel, forwarding → TUN device →
//! rawtcp, against B → veth → A's kernel TCP for the kernel's server (still at
//! `10.96.0.1:8081`): rawtcp's path has one more hop, a forwarding pass through A's kernel.
//! The loss rule is the same (the server's segments, as they arrive in B). `RAWTCP_TUN_OFFLOAD`,
//! when set in this program's environment, reaches the rawtcp server unchanged (it switches the
//! TUN device's virtio-net offloads); the header shows its value and the device's offload
//! features as the kernel reports them.
//!
//! It prints a table: goodput of each stack (median, min–max, failed downloads) and the ratio
//! rawtcp / kernel per loss rate, then how much goodput each stack keeps under loss (median at
//! N % / median at 0 %). With `--capture FILE`, `tcpdump` in namespace B records the
//! headers of every segment of every download (needs `tcpdump`); `tcpgraph FILE --port 8080
//! --pacing` (or `--port 8081`, the kernel's server) then shows how each server's data left.
//! Exit status: 0 when every download completed byte-exact, 1 when some
//! failed (or the run was interrupted), 2 when the set-up failed. The namespaces, processes
//! and nftables table are removed on every exit path, Ctrl-C and SIGTERM included.

#[path = "support/harness.rs"]
mod harness;

use harness::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: wire_loss [--datapath raw] [--cc cubic] [--loss 0,1,5] [--size 20M] [--reps 5] [--max-time 60]
  --datapath  rawtcp's datapath: raw (default; curl downloads), udp (rawtcp's http_client downloads)
              or tun (curl downloads from 10.97.0.2 behind a TUN device in A, forwarded by A's
              kernel: one hop more than the kernel server's path; RAWTCP_TUN_OFFLOAD, if set,
              is passed on to the rawtcp server)
  --cc        congestion control of BOTH servers: cubic (default), bbr or reno
  --loss      loss rates in per cent of the servers' segments (resolution 0.1 %)
  --size      bytes per download; suffixes k, M, G, Ki, Mi, Gi
  --reps      downloads per server and loss rate
  --max-time  seconds allowed per download (curl --max-time)
  --capture   FILE: tcpdump in curl's namespace writes every download's segments there
              (headers only; read with tcpgraph FILE --port 8080 --pacing)";

const ADDR_A: &str = "10.96.0.1";
const ADDR_B: &str = "10.96.0.2";
const RAWTCP_PORT: u16 = 8080;
const KERNEL_PORT: u16 = 8081;
/// rawtcp's address behind its TUN device in namespace A (`--datapath tun`), with the prefix;
/// the device's host side takes the prefix's first free address, 10.97.0.1.
const TUN_ADDR: &str = "10.97.0.2";
const TUN_PREFIX_LEN: u8 = 24;
const TUN_NET: &str = "10.97.0.0/24";
/// The variable that switches the TUN datapath's offloads, passed on from this environment.
const TUN_OFFLOAD_VAR: &str = "RAWTCP_TUN_OFFLOAD";
/// How long a freshly started server has to answer.
const STARTUP: Duration = Duration::from_secs(10);

/// Set by SIGINT or SIGTERM: every loop stops and the guards clean up.
static STOP: AtomicBool = AtomicBool::new(false);

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

struct Args {
    /// rawtcp's datapath: `raw`, `udp` or `tun`.
    datapath: String,
    /// The congestion control both stacks run (the kernel's name).
    cc: String,
    losses: Vec<f64>,
    size: u64,
    reps: u32,
    max_time: u32,
    /// Where `tcpdump` in namespace B writes a capture of every download (`--capture`).
    capture: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        datapath: "raw".into(),
        cc: "cubic".into(),
        losses: vec![0.0, 1.0, 5.0],
        size: 20_000_000,
        reps: 5,
        max_time: 60,
        capture: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--datapath" => {
                args.datapath = match value()?.as_str() {
                    "raw" => "raw".into(),
                    "udp" => "udp".into(),
                    "tun" => "tun".into(),
                    other => {
                        return Err(format!("--datapath must be raw, udp or tun, not {other:?}"))
                    }
                }
            }
            "--cc" => {
                args.cc = match value()?.as_str() {
                    "cubic" => "cubic".into(),
                    "bbr" => "bbr".into(),
                    "reno" | "newreno" => "reno".into(),
                    other => return Err(format!("--cc must be cubic, bbr or reno, not {other:?}")),
                }
            }
            "--loss" => args.losses = parse_losses(&value()?)?,
            "--size" => {
                let v = value()?;
                args.size = parse_size(&v).ok_or(format!("bad --size {v:?}"))?;
            }
            "--reps" => args.reps = parse_in(&value()?, "--reps", 1..=1000)?,
            "--max-time" => args.max_time = parse_in(&value()?, "--max-time", 1..=3600)?,
            "--capture" => args.capture = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.size == 0 || args.size > 100_000_000_000 {
        return Err("--size must be 1 byte to 100G".into());
    }
    Ok(args)
}

fn parse_losses(v: &str) -> Result<Vec<f64>, String> {
    v.split(',')
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or(format!("bad loss rate {s:?}: per cent, 0 to 100"))
        })
        .collect()
}

/// Sets `STOP` on SIGINT or SIGTERM. The handlers are installed before this returns.
fn stop_on_signals() -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("signal runtime: {e}"))?;
    let (mut int, mut term) = {
        let _in_rt = rt.enter();
        let int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
        let term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
        (int, term)
    };
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("\ninterrupted: cleaning up");
        STOP.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// What this program needs on `datapath` and does not have, if anything.
fn missing_requirements(datapath: &str, capture: bool) -> Option<String> {
    let tun_tools: &[&str] = if datapath == "tun" { &["sysctl"] } else { &[] };
    let capture_tools: &[&str] = if capture { &["tcpdump"] } else { &[] };
    let mut missing: Vec<&str> = ["ip", "nft", "ethtool", "curl"]
        .iter()
        .chain(tun_tools)
        .chain(capture_tools)
        .copied()
        .filter(|t| !on_path(t))
        .collect();
    if !is_root() {
        missing.insert(0, "root privileges");
    }
    (!missing.is_empty()).then(|| format!("wire_loss needs {}", missing.join(", ")))
}

/// Two namespaces joined by a veth pair, A at `ADDR_A`, B at `ADDR_B`, offloads off on both
/// ends. Removed, with every process inside, when dropped.
struct Wire {
    a: String,
    b: String,
    /// The TUN device rawtcp's server makes in A with `--datapath tun` (at most 15 bytes: a
    /// pid has at most 7 digits). It goes with the server, or with the namespace.
    tun: String,
}

impl Wire {
    fn create() -> Result<Wire, String> {
        let id = std::process::id();
        let wire = Wire {
            a: format!("wla{id}"),
            b: format!("wlb{id}"),
            tun: format!("wlt{id}"),
        };
        let (a, b) = (&wire.a, &wire.b);
        let (dev_a, dev_b) = (format!("wva{id}"), format!("wvb{id}"));
        // Each step's namespace is remembered before the next can fail, so Drop removes it.
        run(Command::new("ip").args(["netns", "add", a]))?;
        run(Command::new("ip").args(["netns", "add", b]))?;
        run(Command::new("ip")
            .args(["link", "add", &dev_a, "netns", a])
            .args(["type", "veth", "peer", "name", &dev_b, "netns", b]))?;
        for (ns, dev, addr) in [(a, &dev_a, ADDR_A), (b, &dev_b, ADDR_B)] {
            run(wire
                .exec(ns, "ip")
                .args(["addr", "add", &format!("{addr}/24"), "dev", dev]))?;
            run(wire
                .exec(ns, "ethtool")
                .args(["-K", dev, "tso", "off", "gso", "off", "gro", "off"]))?;
            // UDP trains (rawtcp's UDP datapath) are cut into datagrams before the device,
            // as on a NIC without the offload, so that each datagram on the wire is one
            // segment and the loss rule drops segments, not whole trains.
            run(wire
                .exec(ns, "ethtool")
                .args(["-K", dev, "tx-udp-segmentation", "off"]))?;
            run(wire.exec(ns, "ip").args(["link", "set", "lo", "up"]))?;
            run(wire.exec(ns, "ip").args(["link", "set", dev, "up"]))?;
        }
        Ok(wire)
    }

    /// For `--datapath tun`: namespace A forwards between the veth and the TUN device, and B
    /// reaches the TUN device's prefix through A.
    fn route_to_tun(&self) -> Result<(), String> {
        run(self
            .exec(&self.a, "sysctl")
            .args(["-w", "net.ipv4.ip_forward=1"]))?;
        run(self
            .exec(&self.b, "ip")
            .args(["route", "add", TUN_NET, "via", ADDR_A]))?;
        Ok(())
    }

    /// The TUN device's offload features as the kernel reports them (`ethtool -k`), for the
    /// header.
    fn tun_offloads(&self) -> String {
        let features = [
            ("tx-checksumming", "tx-csum"),
            ("tcp-segmentation-offload", "tso"),
            ("generic-segmentation-offload", "gso"),
            ("generic-receive-offload", "gro"),
        ];
        match run(self.exec(&self.a, "ethtool").args(["-k", &self.tun])) {
            Ok(out) => features
                .iter()
                .map(|(feature, short)| {
                    let state = out
                        .lines()
                        .find_map(|l| l.trim().strip_prefix(feature)?.strip_prefix(':'))
                        .and_then(|v| v.split_whitespace().next())
                        .unwrap_or("?");
                    format!("{short} {state}")
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// `program` run inside namespace `ns`.
    fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// The kernel's congestion control in namespace A, for the header.
    fn kernel_cc(&self) -> String {
        run(self
            .exec(&self.a, "cat")
            .arg("/proc/sys/net/ipv4/tcp_congestion_control"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let pids = run(Command::new("ip").args(["netns", "pids", ns])).unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = run(Command::new("kill").args(["-9", pid]));
            }
            let _ = run(Command::new("ip").args(["netns", "del", ns]));
        }
    }
}

/// The nftables table in namespace B that drops a fraction of both servers' segments as they
/// arrive from the wire (prerouting), before curl's TCP sees them. Deleted when dropped.
///
/// Not in namespace A's output hook: a segment dropped there fails the kernel's own transmit
/// call, so the kernel's TCP keeps it queued and sends it again at once — it never sees a
/// loss — while rawtcp's raw socket counts it as sent. Dropped in B, both stacks lose the
/// same segments the way a real link loses them.
struct LossRule<'w> {
    wire: &'w Wire,
    table: String,
}

impl<'w> LossRule<'w> {
    fn new(wire: &'w Wire) -> LossRule<'w> {
        // Not `rawtcp_…`: the raw datapath removes such tables of processes that are gone.
        let table = format!("wire_loss_{}", std::process::id());
        LossRule { wire, table }
    }

    /// Replaces the table atomically: `permille` of every thousand segments are dropped.
    fn set(&self, permille: u32) -> Result<(), String> {
        let t = &self.table;
        let rule = if permille > 0 {
            format!(
                "tcp sport {{ {RAWTCP_PORT}, {KERNEL_PORT} }} numgen random mod 1000 < {permille} drop\n    \
                 udp sport {RAWTCP_PORT} numgen random mod 1000 < {permille} drop"
            )
        } else {
            String::new()
        };
        let script = format!(
            "add table inet {t}\ndelete table inet {t}\ntable inet {t} {{\n  chain wire {{\n    \
             type filter hook prerouting priority 0; policy accept;\n    {rule}\n  }}\n}}\n"
        );
        self.nft(&script)
    }

    fn nft(&self, script: &str) -> Result<(), String> {
        let mut child = self
            .wire
            .exec(&self.wire.b, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("nft stdin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft failed: {}\n{script}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for LossRule<'_> {
    fn drop(&mut self) {
        let _ = self.nft(&format!("delete table inet {}\n", self.table));
    }
}

/// The address rawtcp's server answers at on `datapath`: behind its TUN device, or A's
/// veth address.
fn rawtcp_addr(datapath: &str) -> &'static str {
    if datapath == "tun" {
        TUN_ADDR
    } else {
        ADDR_A
    }
}

/// Who downloads from a server in namespace B.
enum Client {
    /// curl, over the kernel's TCP (the kernel server, and rawtcp's on the raw and TUN
    /// datapaths).
    Curl,
    /// `examples/http_client.rs` on rawtcp's UDP datapath (rawtcp's server on that datapath).
    Rawtcp(PathBuf),
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    url: String,
    client: Client,
}

impl Server {
    /// The kernel's server (`datapath` `None`) or rawtcp's on `datapath`.
    fn start(
        wire: &Wire,
        binary: &Path,
        datapath: Option<&str>,
        cc: &str,
    ) -> Result<Server, String> {
        let (addr, port) = match datapath {
            None => (ADDR_A, KERNEL_PORT),
            Some(dp) => (rawtcp_addr(dp), RAWTCP_PORT),
        };
        // The process environment is inherited (`ip netns exec` keeps it), RAWTCP_TUN_OFFLOAD
        // included.
        let mut cmd = wire.exec(&wire.a, &binary.to_string_lossy());
        let client = match datapath {
            None => {
                cmd.arg("--kernel");
                Client::Curl
            }
            Some(dp) => {
                cmd.env("RAWTCP_DATAPATH", dp);
                if dp == "tun" {
                    cmd.env("RAWTCP_TUN_NAME", &wire.tun)
                        .env("RAWTCP_TUN_ADDR", format!("{TUN_ADDR}/{TUN_PREFIX_LEN}"));
                }
                if dp == "udp" {
                    Client::Rawtcp(example_binary("http_client")?)
                } else {
                    Client::Curl
                }
            }
        };
        cmd.args(["--cc", cc]);
        let child = cmd
            .arg(format!("{addr}:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let mut server = Server {
            child,
            url: format!("http://{addr}:{port}"),
            client,
        };
        server.wait_until_answering(wire)?;
        Ok(server)
    }

    /// Polls `GET /` from namespace B for at most `STARTUP`.
    fn wait_until_answering(&mut self, wire: &Wire) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < STARTUP && !stopped() {
            let answered = match &self.client {
                Client::Curl => wire
                    .exec(&wire.b, "curl")
                    .args(["-s", "-o", "/dev/null", "--max-time", "1", "--fail"])
                    .arg(format!("{}/", self.url))
                    .status()
                    .is_ok_and(|s| s.success()),
                Client::Rawtcp(client) => wire
                    .exec(&wire.b, &client.to_string_lossy())
                    .env("RAWTCP_DATAPATH", "udp")
                    .arg(format!("{}/", self.url))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| wait_bounded(&mut c, Duration::from_secs(1)))
                    .unwrap_or(false),
            };
            if answered {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "server for {} exited ({status}): {}",
                    self.url,
                    err.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if stopped() {
            return Err("interrupted".into());
        }
        Err(format!("{} did not answer within {STARTUP:?}", self.url))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One download of `size` bytes from `server` by its client in namespace B: its time, or
/// why it failed.
fn download(wire: &Wire, server: &Server, size: u64, max_time: u32) -> Result<f64, String> {
    let url = format!("{}/bytes/{size}", server.url);
    let mut cmd = match &server.client {
        Client::Curl => {
            let mut c = wire.exec(&wire.b, "curl");
            c.args(["-sS", "--fail", "--max-time", &max_time.to_string()])
                .args(["-w", "%{stderr}time_total=%{time_total}\\n", "-o", "-"])
                .arg(url);
            c
        }
        Client::Rawtcp(client) => {
            let mut c = wire.exec(&wire.b, &client.to_string_lossy());
            c.env("RAWTCP_DATAPATH", "udp").arg(url).args(["-o", "-"]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("client: {e}"))?;
    let stdout = child.stdout.take().ok_or("the client has no stdout")?;
    let reader = std::thread::spawn(move || read_pattern(stdout));
    let status = wait_bounded(&mut child, Duration::from_secs(u64::from(max_time) + 5));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let received = reader
        .join()
        .unwrap_or_else(|_| Err("pattern reader panicked".into()));
    let (time, said) = split_time(&err);
    match (status, received) {
        (Err(e), _) => Err(e),
        // A byte off the pattern stops the reader, and the client then fails writing.
        (_, Err(e)) => Err(e),
        (Ok(false), _) => Err(format!("the client failed: {said}")),
        (Ok(true), Ok(n)) if n != size => Err(format!("{n} bytes received, not {size}")),
        (Ok(true), Ok(_)) => time.ok_or(format!("no time from the client: {said}")),
    }
}

/// The download's time as the client said it (curl's `time_total=` line, http_client's
/// `status 200 bytes N in T s ...`), and the rest of what it said.
fn split_time(stderr: &str) -> (Option<f64>, String) {
    let mut time = None;
    let mut rest = Vec::new();
    for line in stderr.lines() {
        let said = match line.strip_prefix("time_total=") {
            Some(t) => t.trim().parse().ok(),
            None => http_client_times(line).map(|(total, _)| total),
        };
        match said {
            Some(t) => time = Some(t),
            None => rest.push(line.trim()),
        }
    }
    (time, rest.join("; "))
}

/// Waits for `child` at most `limit` (killing it after), or until interrupted. Whether it
/// succeeded.
fn wait_bounded(child: &mut Child, limit: Duration) -> Result<bool, String> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.success()),
            Ok(None) if stopped() || start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(if stopped() {
                    "interrupted".into()
                } else {
                    format!("no end after {limit:?}: killed")
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for curl: {e}")),
        }
    }
}

/// The downloads of one stack at one loss rate.
#[derive(Default)]
struct Samples {
    /// Goodput of each completed download, MB/s.
    mbps: Vec<f64>,
    failed: u32,
}

impl Samples {
    fn median(&self) -> Option<f64> {
        let mut v = self.mbps.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }

    /// `median (min–max)`, or `—` when nothing completed.
    fn summary(&self) -> String {
        let Some(med) = self.median() else {
            return "—".into();
        };
        let min = self.mbps.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.mbps.iter().copied().fold(0.0, f64::max);
        format!("{med:.1} ({min:.1}–{max:.1})")
    }
}

/// One loss rate's results.
struct Row {
    loss: f64,
    kernel: Samples,
    rawtcp: Samples,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
        _ => "—".into(),
    }
}

fn print_table(rows: &[Row], size: u64, reps: u32) {
    println!("\ngoodput of {size}-byte downloads, {reps} per stack and loss rate (MB/s = 10^6 bytes/s):\n");
    println!(
        "{:>6}  {:<26} {:>6}  {:<26} {:>6}  {:>13}",
        "loss %",
        "kernel MB/s med (min–max)",
        "failed",
        "rawtcp MB/s med (min–max)",
        "failed",
        "rawtcp/kernel"
    );
    for r in rows {
        println!(
            "{:>6}  {:<26} {:>6}  {:<26} {:>6}  {:>13}",
            r.loss,
            r.kernel.summary(),
            r.kernel.failed,
            r.rawtcp.summary(),
            r.rawtcp.failed,
            ratio(r.rawtcp.median(), r.kernel.median())
        );
    }
}

fn print_kept(rows: &[Row]) {
    let Some(base) = rows.iter().find(|r| r.loss == 0.0) else {
        println!("\nkept under loss: needs loss rate 0 in --loss");
        return;
    };
    println!("\ngoodput kept under loss (median at N % / median at 0 %, same path, same run):\n");
    println!("{:>6}  {:>8}  {:>8}", "loss %", "kernel", "rawtcp");
    for r in rows.iter().filter(|r| r.loss != 0.0) {
        println!(
            "{:>6}  {:>8}  {:>8}",
            r.loss,
            ratio(r.kernel.median(), base.kernel.median()),
            ratio(r.rawtcp.median(), base.rawtcp.median())
        );
    }
}

/// `tcpdump` in namespace B writing every TCP segment's headers (128 bytes of each packet)
/// to a file, from before the first download to the end; `tcpgraph FILE --port 8080
/// --pacing` then shows how each server's data left. Stopped with SIGTERM when dropped, so
/// that it writes out what it holds.
struct Tcpdump {
    child: Child,
}

impl Tcpdump {
    fn start(wire: &Wire, path: &Path) -> Result<Tcpdump, String> {
        let _ = std::fs::remove_file(path);
        let child = wire
            .exec(&wire.b, "tcpdump")
            .args(["-i", "any", "-s", "128", "-B", "16384", "-w"])
            .arg(path)
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("tcpdump: {e}"))?;
        let mut dump = Tcpdump { child };
        // tcpdump creates the file once it listens.
        let start = Instant::now();
        while !path.exists() {
            if let Ok(Some(status)) = dump.child.try_wait() {
                return Err(format!("tcpdump ended at once ({status})"));
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err("tcpdump did not start within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        println!(
            "capture: tcpdump in {} writing {} (read it with: tcpgraph {} --port {RAWTCP_PORT} --pacing, or --port {KERNEL_PORT})",
            wire.b,
            path.display(),
            path.display()
        );
        Ok(dump)
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        // `ip netns exec` runs tcpdump in its own process: the child is tcpdump.
        let _ = run(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        // Killed after 5 s without an end.
        let _ = wait_bounded(&mut self.child, Duration::from_secs(5));
    }
}

/// Runs every download of one loss rate, kernel and rawtcp alternately.
fn measure(wire: &Wire, servers: [&Server; 2], loss: f64, args: &Args) -> Row {
    let mut row = Row {
        loss,
        kernel: Samples::default(),
        rawtcp: Samples::default(),
    };
    for rep in 1..=args.reps {
        for (name, server) in ["kernel", "rawtcp"].into_iter().zip(servers) {
            if stopped() {
                return row;
            }
            let samples = if name == "kernel" {
                &mut row.kernel
            } else {
                &mut row.rawtcp
            };
            match download(wire, server, args.size, args.max_time) {
                Ok(secs) => {
                    let mbps = args.size as f64 / secs.max(1e-6) / 1e6;
                    eprintln!(
                        "loss {loss} %  {name} {rep}/{}: {secs:.3} s  {mbps:.1} MB/s",
                        args.reps
                    );
                    samples.mbps.push(mbps);
                }
                Err(_) if stopped() => return row,
                Err(e) => {
                    eprintln!("loss {loss} %  {name} {rep}/{}: FAILED: {e}", args.reps);
                    samples.failed += 1;
                }
            }
        }
    }
    row
}

/// Sets up the wire and the servers, measures every loss rate; the rows measured.
fn run_all(args: &Args) -> Result<Vec<Row>, String> {
    let binary = http_server_binary()?;
    let wire = Wire::create()?;
    println!(
        "path: veth {} ({ADDR_A}, servers) <-> {} ({ADDR_B}, curl), tso/gso/gro off on both ends",
        wire.a, wire.b
    );
    println!(
        "servers: {} --kernel --cc {} {ADDR_A}:{KERNEL_PORT} (kernel TCP; namespace default {}) and RAWTCP_DATAPATH={} --cc {} {}:{RAWTCP_PORT}",
        binary.display(),
        args.cc,
        wire.kernel_cc(),
        args.datapath,
        args.cc,
        rawtcp_addr(&args.datapath),
    );
    if args.datapath == "udp" {
        println!(
            "clients: curl for the kernel's server, http_client (RAWTCP_DATAPATH=udp) for rawtcp's"
        );
    }
    if args.datapath == "tun" {
        wire.route_to_tun()?;
        let offload = match std::env::var(TUN_OFFLOAD_VAR) {
            Ok(v) => format!("{TUN_OFFLOAD_VAR}={v:?} (passed on)"),
            Err(_) => format!("{TUN_OFFLOAD_VAR} unset (the datapath's default)"),
        };
        println!(
            "tun: rawtcp at {TUN_ADDR}:{RAWTCP_PORT} behind TUN device {} in {} (RAWTCP_TUN_ADDR={TUN_ADDR}/{TUN_PREFIX_LEN}), \
             forwarded by {}'s kernel (ip_forward=1); {} routes {TUN_NET} via {ADDR_A}; {offload}",
            wire.tun, wire.a, wire.a, wire.b
        );
    }
    let kernel = Server::start(&wire, &binary, None, &args.cc)?;
    let rawtcp = Server::start(&wire, &binary, Some(&args.datapath), &args.cc)?;
    if args.datapath == "tun" {
        println!("tun device {} offloads: {}", wire.tun, wire.tun_offloads());
    }
    // Dropped before the wire (declared after it), so that tcpdump ends cleanly.
    let _capture = match &args.capture {
        Some(path) => Some(Tcpdump::start(&wire, path)?),
        None => None,
    };
    let rule = LossRule::new(&wire);
    let mut rows = Vec::new();
    for &loss in &args.losses {
        if stopped() {
            break;
        }
        rule.set((loss * 10.0).round() as u32)?;
        rows.push(measure(&wire, [&kernel, &rawtcp], loss, args));
    }
    Ok(rows)
}

fn main() -> ExitCode {
    println!("$ {}", command_line());
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(missing) = missing_requirements(&args.datapath, args.capture.is_some()) {
        eprintln!("{missing}");
        return ExitCode::from(2);
    }
    let rows = match stop_on_signals().and_then(|()| run_all(&args)) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("wire_loss: {e}");
            return ExitCode::from(2);
        }
    };
    print_table(&rows, args.size, args.reps);
    if stopped() {
        println!("(interrupted: the last loss rate is incomplete)");
    }
    print_kept(&rows);
    let failed: u32 = rows.iter().map(|r| r.kernel.failed + r.rawtcp.failed).sum();
    let done: usize = rows
        .iter()
        .map(|r| r.kernel.mbps.len() + r.rawtcp.mbps.len())
        .sum();
    println!("\ndownloads: {done} byte-exact, {failed} failed");
    if failed > 0 || stopped() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
