//! Loss recovery at WAN round-trip times, rawtcp next to the kernel's TCP, on the same
//! emulated path in the same run. Needs root and the tools `ip`, `ethtool`, `curl` and `nft`
//! (rawtcp's raw datapath), and `chrt` for `--rt`.
//!
//! ```text
//! cargo build --release --examples          # wan_loss runs the http_server example built next to it
//! sudo target/release/examples/wan_loss                          # cubic,bbr; RTT 20 ms; loss 0,0.1,1,5 %
//! sudo target/release/examples/wan_loss --rtt 20,100 --loss 1 --cc cubic,bbr,reno
//! sudo target/release/examples/wan_loss --rate 50M --queue-ms 40 --size 50M --reps 5
//! ```
//!
//! This machine's kernel has no netem, so the WAN is emulated in user space. What it owns:
//!
//! * **Topology.** Three network namespaces (names carry this process's id): A holds the two
//!   servers, B runs curl, R is the WAN box between them. A veth pair joins A to R
//!   (10.98.1.0/24) and another R to B (10.98.2.0/24); A and B route the other subnet via R,
//!   whose MAC addresses they know from static (permanent) neighbour entries, so no ARP
//!   crosses the WAN and IPv6 is off everywhere. Every veth end has segmentation, receive and
//!   checksum offloads off (tso gso gro tx rx): each frame on the wire is one segment with a
//!   complete checksum, as on a real link, and a frame copied by a packet socket is final.
//! * **The bridge.** R's kernel does not forward (`net.ipv4.ip_forward=0`, checked). This
//!   same binary, started as `ip netns exec R wan_loss --bridge ...`, opens an `AF_PACKET`
//!   socket bound to each of R's two interfaces (a classic BPF filter keeps the IPv4 frames
//!   addressed to R's MAC) and moves every frame to the other interface after the one-way
//!   delay (RTT/2 each way), rewriting the Ethernet addresses (source: R's interface, destination:
//!   the far end). On the data direction only (A to B: server to client), TCP frames are
//!   dropped at random with the configured probability. With `--rate`, each direction is a
//!   link of that many bytes/s: frames are serialised one after another and a frame that
//!   would wait longer than `--queue-ms` (default one RTT, at least 20 ms: about one BDP) is
//!   dropped (drop-tail). Frames wait in a FIFO per direction (the delay is constant, so the
//!   due times are in order); one thread per direction receives (arrival time = the kernel's
//!   receive timestamp), one sends when due (sleeping, then sending everything due: the delay
//!   error is printed). It counts what it forwards, drops (random loss, queue, socket
//!   overflow), how late it sent, its own CPU time, and per server port the data segments,
//!   the retransmissions (a segment below the highest sequence sent on that connection), the
//!   longest silence within a connection and how long the server took to answer a SYN. It
//!   is restarted for every RTT and loss rate, so its counters belong to one row; every
//!   restart reuses `--seed`, so rows with the same loss rate drop the same frame numbers
//!   (each congestion control meets the same loss sequence). With `--rt` it runs at
//!   real-time priority (`chrt -f 20`).
//! * **The comparison.** Two copies of `examples/http_server.rs` in namespace A: rawtcp on
//!   its raw datapath (`RAWTCP_DATAPATH=raw`, port 8080) and the kernel's TCP (`--kernel`,
//!   port 8081), the same HTTP application, both with the congestion control of `--cc` set on
//!   their listening sockets (the list runs each in turn; the servers restart for each). For
//!   each RTT and loss rate, curl in B downloads SIZE bytes from each server, alternately,
//!   REPS times each, every download bounded by `--max-time`; the bytes are checked against
//!   the `i % 251` pattern as they arrive, and the time is curl's `time_total` (connection
//!   set-up included). SIZE is capped, under loss, to what the Mathis bound carries in
//!   `--budget` seconds (at least 1 MB), so a slow row stays short.
//! * **`--receiver`.** The receiving stacks compared instead of the sending ones: both
//!   columns download from the kernel's server, the kernel column with curl, the rawtcp
//!   column with `examples/http_client.rs` on rawtcp's raw datapath in namespace B (its
//!   status line gives the total and connect times). The bridge's per-server rows then count
//!   both columns under the kernel's port.
//! * **`--both`.** rawtcp at both ends against the kernel at both ends: the rawtcp column's
//!   downloads are made by `http_client` (as with `--receiver`) from rawtcp's server.
//! * **`--no-timestamps`.** `net.ipv4.tcp_timestamps=0` in namespaces A and B: no kernel end
//!   offers or accepts TCP timestamps, so no connection of the run has them (rawtcp's ends
//!   offer them and are refused), as with a peer that does not use them; with `--both`
//!   rawtcp's two ends still agree on them between themselves. The Mathis column
//!   keeps its MSS of 1448, 0.8 % under the 1460 such a connection carries.
//!
//! It prints per congestion control a table: RTT, loss, size, the Mathis bound
//! (MSS/RTT × sqrt(3/2)/sqrt(p), MSS 1448, the configured RTT), each stack's goodput
//! (median, min–max, failures), rawtcp/kernel, and each stack's goodput over the bound;
//! then the bridge's counters per row. MB/s are 10^6 bytes/s.
//!
//! What it changes on the host: it creates the three namespaces (with their veths, addresses,
//! routes, neighbour entries and namespace sysctls) and removes them, with every process
//! inside, on every exit path, Ctrl-C and SIGTERM included (not SIGKILL: then
//! `ip netns del wana<pid> wanr<pid> wanb<pid>` by hand; the bridge itself ends when its
//! parent goes). Nothing outside them.
//!
//! Limits: the bridge is user space on the same machine as both endpoints, so at high rates
//! it competes with them for CPU; its counters (socket overflow drops, lateness, CPU time)
//! say when it fell behind; the drops of the veths and input backlogs are counted too. A
//! frame it sends also carries the receiving side's kernel processing (veth delivery runs
//! the receiver's softirq in the sender's context), so its CPU time includes some of the
//! endpoints'. Its timing is millisecond-grade (sleeps, no busy wait; on a loaded 2-CPU
//! machine a send is now and then a few ms late, rarely tens of ms: the table shows it):
//! fine for RTTs of 10 ms and more, not for sub-millisecond paths. Loss is uniform random (no
//! bursts), with no reordering and no jitter beyond that lateness; without `--rate` the path has no bottleneck queue, so at 0 %
//! loss the figures are whatever the endpoints and the bridge manage, not a link's speed.
//! IPv4 only.

#[path = "support/harness.rs"]
mod harness;

use harness::*;
use nix::sys::socket::{self as nsock, sockopt, ControlMessageOwned, MsgFlags};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str =
    "usage: wan_loss [--cc cubic,bbr] [--rtt 20] [--loss 0,0.1,1,5] [--size 20M] [--reps 3]
                [--max-time 60] [--budget 15] [--rate 0] [--queue-ms Q] [--seed N] [--rt]
                [--receiver | --both] [--no-timestamps]
  --cc        congestion controls, each run in turn on BOTH servers: cubic, bbr, reno
  --rtt       round-trip times in ms added by the bridge (half each way)
  --loss      loss rates in per cent of the servers' TCP frames (A to B only)
  --size      bytes per download (suffixes k, M, G, Ki, Mi, Gi); under loss capped to
              max(1 MB, Mathis bound x budget)
  --reps      downloads per server, RTT and loss rate
  --max-time  seconds allowed per download (curl --max-time)
  --budget    seconds a download takes at the Mathis bound, for the size cap
  --rate      bottleneck rate of each direction in bytes/s (suffixes as --size); 0 = none
  --queue-ms  drop-tail queue of the bottleneck, in ms at --rate (default max(RTT, 20))
  --seed      seed of the bridge's loss generator (default: from the clock)
  --rt        run the bridge at real-time priority (chrt -f 20): steadier delays, but at
              high rates it takes CPU from the user-space servers (rawtcp) first
  --receiver  compare the receiving stacks instead: both columns download from the
              kernel's server, the kernel column with curl, the rawtcp column with
              examples/http_client on rawtcp's raw datapath in namespace B
  --both      rawtcp at both ends: the rawtcp column is examples/http_client on rawtcp
              downloading from rawtcp's server, the kernel column curl from the kernel's
  --no-timestamps  the kernel in both end namespaces neither offers nor accepts TCP
              timestamps (net.ipv4.tcp_timestamps=0), so no connection of the run uses
              them, as with a peer that does not offer them (Windows by default); with
              --both, rawtcp's two ends still agree on them between themselves";

const NET_A: &str = "10.98.1";
const NET_B: &str = "10.98.2";
const ADDR_A: &str = "10.98.1.1";
const ADDR_B: &str = "10.98.2.1";
const ADDR_RA: &str = "10.98.1.254";
const ADDR_RB: &str = "10.98.2.254";
/// Locally administered MAC addresses of the four veth ends.
const MAC_A: [u8; 6] = [0x02, 0x98, 0, 0, 0x01, 0x01];
const MAC_RA: [u8; 6] = [0x02, 0x98, 0, 0, 0x01, 0xfe];
const MAC_RB: [u8; 6] = [0x02, 0x98, 0, 0, 0x02, 0xfe];
const MAC_B: [u8; 6] = [0x02, 0x98, 0, 0, 0x02, 0x01];
const RAWTCP_PORT: u16 = 8080;
const KERNEL_PORT: u16 = 8081;
/// The MSS of the Mathis bound: 1500 - 20 (IP) - 20 (TCP) - 12 (timestamps).
const MSS: f64 = 1448.0;
/// How long a freshly started server or bridge has to answer.
const STARTUP: Duration = Duration::from_secs(10);
/// Smallest download under loss, whatever the budget.
const MIN_CAPPED_SIZE: u64 = 1_000_000;
/// A silence this long inside one connection counts as a stall (Linux's minimum RTO).
const STALL: Duration = Duration::from_millis(200);

/// Set by SIGINT or SIGTERM (or, in the bridge, by the end of its stdin): every loop stops
/// and the guards clean up.
static STOP: AtomicBool = AtomicBool::new(false);

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

struct Args {
    /// Congestion controls (the kernel's names), one after another.
    ccs: Vec<String>,
    rtts_ms: Vec<f64>,
    losses: Vec<f64>,
    size: u64,
    reps: u32,
    max_time: u32,
    budget: f64,
    /// Bytes/s of each direction; 0 = no bottleneck.
    rate: u64,
    queue_ms: Option<f64>,
    seed: u64,
    /// Run the bridge at real-time priority (`chrt -f`).
    rt: bool,
    /// `--receiver`: the rawtcp column's downloads are made by this `http_client` (rawtcp,
    /// raw datapath, in namespace B) from the kernel's server.
    receiver: Option<std::path::PathBuf>,
    /// `--both`: that `http_client` downloads from rawtcp's server instead.
    both: bool,
    /// `--no-timestamps`: `net.ipv4.tcp_timestamps=0` in namespaces A and B.
    no_timestamps: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        ccs: vec!["cubic".into(), "bbr".into()],
        rtts_ms: vec![20.0],
        losses: vec![0.0, 0.1, 1.0, 5.0],
        size: 20_000_000,
        reps: 3,
        max_time: 60,
        budget: 15.0,
        rate: 0,
        queue_ms: None,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        rt: false,
        receiver: None,
        both: false,
        no_timestamps: false,
    };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--cc" => {
                args.ccs = value()?
                    .split(',')
                    .map(|c| match c.trim() {
                        "cubic" => Ok("cubic".to_string()),
                        "bbr" => Ok("bbr".to_string()),
                        "reno" | "newreno" => Ok("reno".to_string()),
                        other => Err(format!("--cc takes cubic, bbr or reno, not {other:?}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--rtt" => args.rtts_ms = parse_list(&value()?, "--rtt", 0.0..=2000.0)?,
            "--loss" => args.losses = parse_list(&value()?, "--loss", 0.0..=100.0)?,
            "--size" => {
                let v = value()?;
                args.size = parse_size(&v).ok_or(format!("bad --size {v:?}"))?;
            }
            "--reps" => args.reps = parse_in(&value()?, "--reps", 1..=1000)?,
            "--max-time" => args.max_time = parse_in(&value()?, "--max-time", 1..=3600)?,
            "--budget" => args.budget = parse_one(&value()?, "--budget", 1.0..=3600.0)?,
            "--rate" => {
                let v = value()?;
                args.rate = parse_size(&v).ok_or(format!("bad --rate {v:?}"))?;
            }
            "--queue-ms" => {
                args.queue_ms = Some(parse_one(&value()?, "--queue-ms", 0.1..=10_000.0)?)
            }
            "--rt" => args.rt = true,
            "--receiver" => args.receiver = Some(example_binary("http_client")?),
            "--both" => {
                args.receiver = Some(example_binary("http_client")?);
                args.both = true;
            }
            "--no-timestamps" => args.no_timestamps = true,
            "--seed" => {
                let v = value()?;
                args.seed = v.parse().map_err(|_| format!("bad --seed {v:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.size == 0 || args.size > 100_000_000_000 {
        return Err("--size must be 1 byte to 100G".into());
    }
    if args.ccs.is_empty() || args.rtts_ms.is_empty() || args.losses.is_empty() {
        return Err("--cc, --rtt and --loss need at least one value".into());
    }
    Ok(args)
}

fn parse_one(v: &str, what: &str, range: std::ops::RangeInclusive<f64>) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| range.contains(x))
        .ok_or(format!("{what}: {v:?} is not a number in {range:?}"))
}

fn parse_list(
    v: &str,
    what: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Vec<f64>, String> {
    v.split(',')
        .map(|s| parse_one(s, what, range.clone()))
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
        STOP.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// What this program needs and does not have, if anything.
fn missing_requirements() -> Option<String> {
    let mut missing: Vec<&str> = ["ip", "ethtool", "curl", "nft"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    if !is_root() {
        missing.insert(0, "root privileges");
    }
    (!missing.is_empty()).then(|| {
        format!(
            "wan_loss needs {} (nft for rawtcp's raw datapath)",
            missing.join(", ")
        )
    })
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here; USER_HZ is 100.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

// ---------------------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------------------

/// Namespaces A, R and B, veth A<->R and R<->B, addresses, routes via R, static neighbours,
/// offloads off. Removed, with every process inside, when dropped.
struct Wan {
    a: String,
    r: String,
    b: String,
    /// R's interface towards A, and towards B.
    dev_ra: String,
    dev_rb: String,
    /// A's interface, and B's.
    dev_a: String,
    dev_b: String,
}

impl Wan {
    fn create() -> Result<Wan, String> {
        let id = std::process::id();
        let wan = Wan {
            a: format!("wana{id}"),
            r: format!("wanr{id}"),
            b: format!("wanb{id}"),
            dev_ra: format!("wra{id}"),
            dev_rb: format!("wrb{id}"),
            dev_a: format!("wa{id}"),
            dev_b: format!("wb{id}"),
        };
        let (dev_a, dev_b) = (&wan.dev_a, &wan.dev_b);
        // Each namespace is created before the next step can fail, so Drop removes it.
        for ns in [&wan.a, &wan.r, &wan.b] {
            run(Command::new("ip").args(["netns", "add", ns]))?;
        }
        for (ns, dev, mac, rdev, rmac) in [
            (&wan.a, dev_a, MAC_A, &wan.dev_ra, MAC_RA),
            (&wan.b, dev_b, MAC_B, &wan.dev_rb, MAC_RB),
        ] {
            run(Command::new("ip")
                .args(["link", "add", dev, "address", &fmt_mac(&mac), "netns", ns])
                .args(["type", "veth", "peer", "name", rdev])
                .args(["address", &fmt_mac(&rmac), "netns", &wan.r]))?;
        }
        for ns in [&wan.a, &wan.r, &wan.b] {
            for key in [
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ] {
                run(wan.exec(ns, "sysctl").args(["-q", "-w", key]))?;
            }
            run(wan.exec(ns, "ip").args(["link", "set", "lo", "up"]))?;
        }
        // R: the kernel must not forward; the bridge does.
        for key in ["net.ipv4.ip_forward=0", "net.ipv4.conf.all.forwarding=0"] {
            run(wan.exec(&wan.r, "sysctl").args(["-q", "-w", key]))?;
        }
        let fwd = run(wan.exec(&wan.r, "cat").arg("/proc/sys/net/ipv4/ip_forward"))?;
        if fwd.trim() != "0" {
            return Err(format!("ip_forward in {} is {fwd:?}, not 0", wan.r));
        }
        let ends = [
            (&wan.a, dev_a, format!("{ADDR_A}/24")),
            (&wan.r, &wan.dev_ra, format!("{ADDR_RA}/24")),
            (&wan.r, &wan.dev_rb, format!("{ADDR_RB}/24")),
            (&wan.b, dev_b, format!("{ADDR_B}/24")),
        ];
        for (ns, dev, addr) in &ends {
            run(wan.exec(ns, "ip").args(["addr", "add", addr, "dev", dev]))?;
            run(wan.exec(ns, "ethtool").args([
                "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off",
            ]))?;
            run(wan.exec(ns, "ip").args(["link", "set", dev, "up"]))?;
        }
        for (ns, dev, gw, gw_mac, far) in [
            (&wan.a, dev_a, ADDR_RA, MAC_RA, NET_B),
            (&wan.b, dev_b, ADDR_RB, MAC_RB, NET_A),
        ] {
            run(wan.exec(ns, "ip").args([
                "neigh",
                "replace",
                gw,
                "lladdr",
                &fmt_mac(&gw_mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ]))?;
            run(wan.exec(ns, "ip").args([
                "route",
                "add",
                &format!("{far}.0/24"),
                "via",
                gw,
                "dev",
                dev,
            ]))?;
        }
        Ok(wan)
    }

    /// `program` run inside namespace `ns`.
    fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Frames dropped so far where the bridge cannot see them: by the four veth ends (rx and
    /// tx drops) and by the kernel's per-CPU input backlogs (`/proc/net/softnet_stat`, which
    /// is machine-wide).
    fn path_drops(&self) -> f64 {
        let mut total = 0.0;
        for (ns, dev) in [
            (&self.a, &self.dev_a),
            (&self.r, &self.dev_ra),
            (&self.r, &self.dev_rb),
            (&self.b, &self.dev_b),
        ] {
            let files = ["rx_dropped", "tx_dropped"]
                .map(|f| format!("/sys/class/net/{dev}/statistics/{f}"));
            if let Ok(out) = run(self.exec(ns, "cat").args(files)) {
                total += out
                    .split_whitespace()
                    .filter_map(|n| n.parse::<f64>().ok())
                    .sum::<f64>();
            }
        }
        if let Ok(softnet) = std::fs::read_to_string("/proc/net/softnet_stat") {
            total += softnet
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|d| u64::from_str_radix(d, 16).ok())
                .sum::<u64>() as f64;
        }
        total
    }

    /// A file under /proc/sys in namespace `ns`, for the header.
    fn sysctl(&self, ns: &str, key: &str) -> String {
        run(self
            .exec(ns, "cat")
            .arg(format!("/proc/sys/{}", key.replace('.', "/"))))
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        for ns in [&self.a, &self.r, &self.b] {
            let pids = run(Command::new("ip").args(["netns", "pids", ns])).unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = run(Command::new("kill").args(["-9", pid]));
            }
        }
        for ns in [&self.a, &self.r, &self.b] {
            let _ = run(Command::new("ip").args(["netns", "del", ns]));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The bridge (runs in namespace R as `wan_loss --bridge ...`)
// ---------------------------------------------------------------------------------------

/// What the bridge is told.
#[derive(Clone)]
struct BridgeConfig {
    /// R's interface towards A, and towards B.
    dev_a: String,
    dev_b: String,
    /// The MAC of A's end (destination of frames towards A), and of B's end.
    mac_a: [u8; 6],
    mac_b: [u8; 6],
    /// One-way delay, each direction.
    delay: Duration,
    /// Loss of A-to-B TCP frames, per million.
    loss_ppm: u32,
    /// Bytes/s of each direction; 0 = unlimited.
    rate: u64,
    /// The longest a frame may wait for the link (with `rate`).
    queue: Duration,
    seed: u64,
    /// The servers' ports, counted separately.
    ports: [u16; 2],
    /// The bridge gives up after this long whatever happens.
    max_life: Duration,
}

impl BridgeConfig {
    fn to_args(&self) -> Vec<String> {
        vec![
            "--bridge".into(),
            self.dev_a.clone(),
            self.dev_b.clone(),
            fmt_mac(&self.mac_a),
            fmt_mac(&self.mac_b),
            self.delay.as_micros().to_string(),
            self.loss_ppm.to_string(),
            self.rate.to_string(),
            self.queue.as_micros().to_string(),
            self.seed.to_string(),
            format!("{},{}", self.ports[0], self.ports[1]),
            self.max_life.as_secs().to_string(),
        ]
    }

    fn from_args(a: &[String]) -> Result<BridgeConfig, String> {
        let [dev_a, dev_b, mac_a, mac_b, delay, loss, rate, queue, seed, ports, life] = a else {
            return Err(format!("--bridge takes 11 arguments, not {a:?}"));
        };
        let num = |s: &String| s.parse::<u64>().map_err(|_| format!("bad number {s:?}"));
        let mac = |s: &String| parse_mac(s).ok_or(format!("bad MAC {s:?}"));
        let ports: Vec<u16> = ports
            .split(',')
            .map(|p| p.parse().map_err(|_| format!("bad port {p:?}")))
            .collect::<Result<_, _>>()?;
        Ok(BridgeConfig {
            dev_a: dev_a.clone(),
            dev_b: dev_b.clone(),
            mac_a: mac(mac_a)?,
            mac_b: mac(mac_b)?,
            delay: Duration::from_micros(num(delay)?),
            loss_ppm: u32::try_from(num(loss)?).map_err(|_| "bad loss")?,
            rate: num(rate)?,
            queue: Duration::from_micros(num(queue)?),
            seed: num(seed)?,
            ports: ports.try_into().map_err(|_| "two ports")?,
            max_life: Duration::from_secs(num(life)?),
        })
    }
}

/// A packet socket bound to one interface: every IPv4 frame addressed to that interface's
/// MAC arrives on it, and what is sent on it leaves through that interface.
struct Port {
    sock: Socket,
    mac: [u8; 6],
}

/// Classic BPF (linux/filter.h): BPF_LD (0) | BPF_H or BPF_B | BPF_ABS, BPF_JMP | BPF_JEQ |
/// BPF_K, BPF_RET | BPF_K; and the ancillary offset of the packet type, SKF_AD_OFF + 4.
const BPF_LD_H_ABS: u16 = 0x08 | 0x20;
const BPF_LD_B_ABS: u16 = 0x10 | 0x20;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_RET_K: u16 = 0x06;
const SKF_AD_PKTTYPE: u32 = (-0x1000i32) as u32 + 4;
const PACKET_HOST: u32 = 0;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u32 = 0x0800;

impl Port {
    /// Opens and binds the packet socket of interface `dev`. No unsafe code: the interface's
    /// link-level address (`sockaddr_ll`: index and MAC) comes from `getifaddrs`, and binding
    /// to it with protocol 0 keeps the socket's protocol (ETH_P_ALL).
    fn open(dev: &str) -> Result<Port, String> {
        let ifaddrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("getifaddrs: {e}"))?;
        let link = ifaddrs
            .filter(|ia| ia.interface_name == dev)
            .find_map(|ia| ia.address.and_then(|a| a.as_link_addr().copied()))
            .ok_or(format!("no link address for {dev}"))?;
        let mac = link.addr().ok_or(format!("{dev} has no MAC"))?;
        let proto = Protocol::from(i32::from(ETH_P_ALL.to_be()));
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(proto))
            .map_err(|e| format!("AF_PACKET socket: {e}"))?;
        // Only IPv4 frames sent to this host's MAC: no outgoing copies, no ARP, nothing else.
        // Attached before bind, so nothing unfiltered is ever queued.
        let filter = [
            SockFilter::new(BPF_LD_H_ABS, 0, 0, 12),
            SockFilter::new(BPF_JEQ_K, 0, 3, ETH_P_IP),
            SockFilter::new(BPF_LD_B_ABS, 0, 0, SKF_AD_PKTTYPE),
            SockFilter::new(BPF_JEQ_K, 0, 1, PACKET_HOST),
            SockFilter::new(BPF_RET_K, 0, 0, 0xffff),
            SockFilter::new(BPF_RET_K, 0, 0, 0),
        ];
        sock.attach_filter(&filter)
            .map_err(|e| format!("BPF filter: {e}"))?;
        nsock::bind(sock.as_raw_fd(), &link).map_err(|e| format!("bind to {dev}: {e}"))?;
        // Room for ~100 ms at 1 GB/s, beyond net.core.rmem_max (we are root).
        let _ = nsock::setsockopt(&sock, sockopt::RcvBufForce, &(64 << 20));
        let _ = nsock::setsockopt(&sock, sockopt::SndBufForce, &(16 << 20));
        nsock::setsockopt(&sock, sockopt::RxqOvfl, &1).map_err(|e| format!("SO_RXQ_OVFL: {e}"))?;
        nsock::setsockopt(&sock, sockopt::ReceiveTimestampns, &true)
            .map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        Ok(Port { sock, mac })
    }
}

/// splitmix64: the loss decisions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A frame on its way, and when it is due out.
struct Frame {
    due: Instant,
    data: Vec<u8>,
}

/// One server port's traffic from A to B, as the bridge saw it (before its loss).
#[derive(Default)]
struct PortCount {
    frames: u64,
    /// Frames carrying data, their payload bytes, and those below the highest sequence
    /// already sent on their connection (retransmissions).
    data_segs: u64,
    payload: u64,
    retx_segs: u64,
    /// Dropped by the bridge: at random or by the queue; and of those, by the queue.
    lost: u64,
    queue_drops: u64,
    /// Connections seen (by client port), the longest silence inside one, and the silences
    /// of `STALL` or more.
    flows: u64,
    max_gap: Duration,
    stalls: u64,
    /// The current connection: client port, highest sequence end sent, last frame.
    flow: Option<(u16, u32, Instant)>,
    /// The server's answers to SYNs: how many, their total and longest time (from the SYN
    /// due out of the bridge towards A to the SYN+ACK arriving from A: the server's time to
    /// answer, plus the bridge's lateness in sending the SYN).
    synacks: u64,
    synack_sum: Duration,
    synack_max: Duration,
}

impl PortCount {
    fn see(&mut self, client_port: u16, seq: u32, seg_len: u32, payload: u32, at: Instant) {
        self.frames += 1;
        if payload > 0 {
            self.data_segs += 1;
            self.payload += u64::from(payload);
        }
        let end = seq.wrapping_add(seg_len);
        match &mut self.flow {
            Some((port, high, last)) if *port == client_port => {
                let gap = at.saturating_duration_since(*last);
                self.max_gap = self.max_gap.max(gap);
                if gap >= STALL {
                    self.stalls += 1;
                }
                *last = at;
                if seg_len > 0 {
                    if (end.wrapping_sub(*high) as i32) <= 0 {
                        if payload > 0 {
                            self.retx_segs += 1;
                        }
                    } else {
                        *high = end;
                    }
                }
            }
            _ => {
                self.flows += 1;
                self.flow = Some((client_port, end, at));
            }
        }
    }
}

/// What one direction's receiving thread counted.
#[derive(Default)]
struct RxCount {
    frames: u64,
    bytes: u64,
    lost: u64,
    queue_drops: u64,
    overflow_drops: u64,
    /// The kernel's count of frames the socket had no room for (SO_RXQ_OVFL).
    socket_drops: u32,
    /// Longest a frame waited in the socket before the bridge read it.
    max_rx_wait: Duration,
    /// Longest a frame waited for the link (with a rate).
    max_queue: Duration,
    errors: u64,
    ports: [PortCount; 2],
}

/// What one direction's sending thread counted.
#[derive(Default)]
struct TxCount {
    frames: u64,
    errors: u64,
    /// Lateness of each send after its due time.
    max_late: Duration,
    sum_late: Duration,
    late_over_1ms: u64,
}

/// Frames waiting in one direction, to bound memory whatever the rate.
const MAX_WAITING: usize = 200_000;
/// Frames due within this are sent at once rather than after a sleep.
const EARLY_OK: Duration = Duration::from_micros(20);

/// What the two directions share.
#[derive(Default)]
struct Shared {
    /// Frames waiting to leave, per direction.
    waiting: [AtomicUsize; 2],
    /// When the last SYN to each server port arrived from B.
    syn_at: [std::sync::Mutex<Option<Instant>>; 2],
}

struct Direction {
    /// 0: A to B (lossy; the servers' segments are counted), 1: B to A.
    index: usize,
    /// Destination MAC after the bridge (the far end), source MAC (R's outgoing interface).
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
}

fn receive_loop(
    port: &Port,
    dir: &Direction,
    cfg: &BridgeConfig,
    shared: &Shared,
    out: mpsc::Sender<Frame>,
    deadline: Instant,
) -> RxCount {
    let waiting = &shared.waiting[dir.index];
    let rng_seed = cfg.seed ^ (dir.index as u64).wrapping_mul(0x5851_f42d_4c95_7f2d);
    let mut c = RxCount::default();
    let mut rng = Rng(rng_seed);
    let mut buf = vec![0u8; 65_536];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec, u32);
    let fd = port.sock.as_raw_fd();
    let mut link_free = Instant::now();
    let byte_time = (cfg.rate > 0).then(|| 1e9 / cfg.rate as f64);
    while !stopped() && Instant::now() < deadline {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let (n, stamp, drops) =
            match nsock::recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
                Ok(msg) => {
                    let mut stamp = None;
                    let mut drops = None;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for m in cmsgs {
                            match m {
                                ControlMessageOwned::ScmTimestampns(t) => {
                                    stamp =
                                        Some(Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
                                }
                                ControlMessageOwned::RxqOvfl(d) => drops = Some(d),
                                _ => {}
                            }
                        }
                    }
                    (msg.bytes, stamp, drops)
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    c.errors += 1;
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
        let now = Instant::now();
        // Arrival: the kernel's receive timestamp (realtime clock), mapped onto `now`.
        let wait = stamp
            .and_then(|s| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .ok()?
                    .checked_sub(s)
            })
            .unwrap_or_default()
            .min(Duration::from_secs(1));
        let arrival = now.checked_sub(wait).unwrap_or(now);
        c.max_rx_wait = c.max_rx_wait.max(wait);
        if let Some(d) = drops {
            c.socket_drops = c.socket_drops.max(d);
        }
        if n < 14 + 20 {
            continue;
        }
        c.frames += 1;
        c.bytes += n as u64;
        let frame = &buf[..n];
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let is_tcp = ip[9] == 6 && ip.len() >= ihl + 20;
        let mut server_port = None;
        if is_tcp && dir.index == 1 {
            // A SYN from curl: the handshake clock of that server starts.
            let tcp = &ip[ihl..];
            let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
            if let Some(i) = cfg.ports.iter().position(|&p| p == dport) {
                if tcp[13] & 0x12 == 0x02 {
                    if let Ok(mut at) = shared.syn_at[i].lock() {
                        *at = Some(arrival);
                    }
                }
            }
        }
        if is_tcp && dir.index == 0 {
            let tcp = &ip[ihl..];
            let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
            if let Some(i) = cfg.ports.iter().position(|&p| p == sport) {
                let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
                let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
                let doff = usize::from(tcp[12] >> 4) * 4;
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
                let payload = total.saturating_sub(ihl + doff) as u32;
                let flags = tcp[13];
                let seg_len = payload + u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0);
                c.ports[i].see(dport, seq, seg_len, payload, arrival);
                if flags & 0x12 == 0x12 {
                    // Its SYN+ACK: how long the server took to answer the SYN.
                    if let Some(syn) = shared.syn_at[i].lock().ok().and_then(|mut a| a.take()) {
                        // Less the SYN's own trip through the bridge.
                        let t = arrival.saturating_duration_since(syn + cfg.delay);
                        c.ports[i].synack_max = c.ports[i].synack_max.max(t);
                        c.ports[i].synack_sum += t;
                        c.ports[i].synacks += 1;
                    }
                }
                server_port = Some(i);
            }
        }
        if dir.index == 0
            && is_tcp
            && cfg.loss_ppm > 0
            && rng.next() % 1_000_000 < u64::from(cfg.loss_ppm)
        {
            c.lost += 1;
            if let Some(i) = server_port {
                c.ports[i].lost += 1;
            }
            continue;
        }
        let leaves = match byte_time {
            Some(ns_per_byte) => {
                let start = link_free.max(arrival);
                let queued = start - arrival;
                if queued > cfg.queue {
                    c.queue_drops += 1;
                    if let Some(i) = server_port {
                        c.ports[i].lost += 1;
                        c.ports[i].queue_drops += 1;
                    }
                    continue;
                }
                c.max_queue = c.max_queue.max(queued);
                link_free = start + Duration::from_nanos((n as f64 * ns_per_byte) as u64);
                link_free
            }
            None => arrival,
        };
        if waiting.load(Ordering::Relaxed) >= MAX_WAITING {
            c.overflow_drops += 1;
            continue;
        }
        waiting.fetch_add(1, Ordering::Relaxed);
        let mut data = frame.to_vec();
        data[0..6].copy_from_slice(&dir.dst_mac);
        data[6..12].copy_from_slice(&dir.src_mac);
        if out
            .send(Frame {
                due: leaves + cfg.delay,
                data,
            })
            .is_err()
        {
            break;
        }
    }
    c
}

fn send_loop(port: &Port, waiting: &AtomicUsize, from: mpsc::Receiver<Frame>) -> TxCount {
    let mut c = TxCount::default();
    // Ends when the receiving side has stopped and every frame it queued is out (or dropped:
    // after STOP nothing waits).
    loop {
        let f = match from.recv_timeout(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        waiting.fetch_sub(1, Ordering::Relaxed);
        // Even after STOP: what was received still leaves when due (at most RTT/2 later), so
        // the closing segments of the last connection are not lost with the bridge.
        let now = Instant::now();
        if f.due > now + EARLY_OK {
            std::thread::sleep(f.due - now);
        }
        let late = Instant::now().saturating_duration_since(f.due);
        c.max_late = c.max_late.max(late);
        c.sum_late += late;
        if late > Duration::from_millis(1) {
            c.late_over_1ms += 1;
        }
        match port.sock.send(&f.data) {
            Ok(_) => c.frames += 1,
            Err(_) => c.errors += 1,
        }
    }
    c
}

/// The bridge's main: forwards until its stdin ends (or a signal, or `max_life`), then
/// prints its counters as one `stats key=value...` line.
fn bridge_main(args: &[String]) -> ExitCode {
    let cfg = match BridgeConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bridge: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = stop_on_signals() {
        eprintln!("bridge: {e}");
        return ExitCode::from(2);
    }
    let ports = match (Port::open(&cfg.dev_a), Port::open(&cfg.dev_b)) {
        (Ok(a), Ok(b)) => Arc::new([a, b]),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let cpu_before = cpu_seconds("self").unwrap_or(0.0);
    let deadline = started + cfg.max_life;
    // Stdin's end (the parent is done, or gone) stops the bridge.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        STOP.store(true, Ordering::Relaxed);
    });
    let directions = [
        // A to B: the servers' data, lossy.
        (
            0usize,
            1usize,
            Direction {
                index: 0,
                dst_mac: cfg.mac_b,
                src_mac: ports[1].mac,
            },
        ),
        // B to A: curl's requests and ACKs.
        (
            1,
            0,
            Direction {
                index: 1,
                dst_mac: cfg.mac_a,
                src_mac: ports[0].mac,
            },
        ),
    ];
    let shared = Arc::new(Shared::default());
    let mut handles = Vec::new();
    for (input, output, dir) in directions {
        let (tx, rx) = mpsc::channel();
        let (p, sh, c) = (ports.clone(), shared.clone(), cfg.clone());
        let rx_thread =
            std::thread::spawn(move || receive_loop(&p[input], &dir, &c, &sh, tx, deadline));
        let (p, sh) = (ports.clone(), shared.clone());
        let tx_thread = std::thread::spawn(move || send_loop(&p[output], &sh.waiting[input], rx));
        handles.push((rx_thread, tx_thread));
    }
    println!(
        "ready {} {} {} {}",
        cfg.dev_a,
        fmt_mac(&ports[0].mac),
        cfg.dev_b,
        fmt_mac(&ports[1].mac)
    );
    let mut out = vec![];
    for ((rx, tx), name) in handles.into_iter().zip(["a2b", "b2a"]) {
        let r = rx.join().unwrap_or_default();
        let t = tx.join().unwrap_or_default();
        let mean_late = if t.frames > 0 {
            t.sum_late.as_secs_f64() / t.frames as f64
        } else {
            0.0
        };
        out.push(format!(
            "{name}_rx={} {name}_bytes={} {name}_lost={} {name}_queue_drops={} {name}_overflow={} \
             {name}_socket_drops={} {name}_rx_errors={} {name}_tx={} {name}_tx_errors={} \
             {name}_max_late_ms={:.3} {name}_mean_late_ms={:.4} {name}_late_over_1ms={} \
             {name}_max_rx_wait_ms={:.3} {name}_max_queue_ms={:.3}",
            r.frames,
            r.bytes,
            r.lost,
            r.queue_drops,
            r.overflow_drops,
            r.socket_drops,
            r.errors,
            t.frames,
            t.errors,
            t.max_late.as_secs_f64() * 1e3,
            mean_late * 1e3,
            t.late_over_1ms,
            r.max_rx_wait.as_secs_f64() * 1e3,
            r.max_queue.as_secs_f64() * 1e3,
        ));
        if name == "a2b" {
            for (p, port) in r.ports.iter().zip(cfg.ports) {
                out.push(format!(
                    "p{port}_frames={} p{port}_data={} p{port}_payload={} p{port}_retx={} \
                     p{port}_lost={} p{port}_qdrops={} p{port}_flows={} p{port}_max_gap_ms={:.1} \
                     p{port}_stalls={} \
                     p{port}_synack_mean_ms={:.2} p{port}_synack_max_ms={:.2}",
                    p.frames,
                    p.data_segs,
                    p.payload,
                    p.retx_segs,
                    p.lost,
                    p.queue_drops,
                    p.flows,
                    p.max_gap.as_secs_f64() * 1e3,
                    p.stalls,
                    p.synack_sum.as_secs_f64() * 1e3 / p.synacks.max(1) as f64,
                    p.synack_max.as_secs_f64() * 1e3,
                ));
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self").unwrap_or(0.0) - cpu_before;
    println!("stats {} cpu_s={cpu:.2} wall_s={wall:.2}", out.join(" "));
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------
// The parent's view of the bridge, the servers and the downloads
// ---------------------------------------------------------------------------------------

/// A bridge process in namespace R. Killed when dropped; `finish` ends it politely and
/// returns its counters.
struct Bridge {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Bridge {
    fn start(wan: &Wan, cfg: &BridgeConfig, rt: bool) -> Result<Bridge, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        // With `--rt`, real-time priority (SCHED_FIFO) for the bridge's threads: they sleep or
        // block between frames, and then run before curl and the servers.
        let mut cmd = if rt {
            let mut c = wan.exec(&wan.r, "chrt");
            c.args(["-f", "20"]).arg(&exe);
            c
        } else {
            wan.exec(&wan.r, &exe.to_string_lossy())
        };
        let mut child = cmd
            .args(cfg.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("bridge: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("bridge has no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let bridge = Bridge {
            child,
            stdin,
            lines,
        };
        match bridge.lines.recv_timeout(STARTUP) {
            Ok(l) if l.starts_with("ready") => Ok(bridge),
            Ok(l) => Err(format!("bridge said {l:?}")),
            Err(_) => Err("the bridge did not start".into()),
        }
    }

    /// Ends the bridge and parses its `stats` line.
    fn finish(mut self) -> Result<HashMap<String, f64>, String> {
        self.stdin.take();
        let line = loop {
            match self.lines.recv_timeout(Duration::from_secs(5)) {
                Ok(l) if l.starts_with("stats ") => break l,
                Ok(_) => continue,
                Err(_) => return Err("no counters from the bridge".into()),
            }
        };
        let _ = wait_bounded(&mut self.child, Duration::from_secs(5));
        Ok(line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(wan: &Wan, binary: &Path, kernel: bool, cc: &str) -> Result<Server, String> {
        let port = if kernel { KERNEL_PORT } else { RAWTCP_PORT };
        let mut cmd = wan.exec(&wan.a, &binary.to_string_lossy());
        if kernel {
            cmd.arg("--kernel");
        } else {
            cmd.env("RAWTCP_DATAPATH", "raw");
        }
        let child = cmd
            .args(["--cc", cc])
            .arg(format!("{ADDR_A}:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let mut server = Server {
            child,
            url: format!("http://{ADDR_A}:{port}"),
        };
        server.wait_until_answering(wan)?;
        Ok(server)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Polls `GET /` from namespace B for at most `STARTUP`.
    fn wait_until_answering(&mut self, wan: &Wan) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < STARTUP && !stopped() {
            let answered = wan
                .exec(&wan.b, "curl")
                .args(["-s", "-o", "/dev/null", "--max-time", "2", "--fail"])
                .arg(format!("{}/", self.url))
                .status()
                .is_ok_and(|s| s.success());
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

/// A completed download: curl's total time and connect time (about one RTT), seconds.
struct Done {
    total: f64,
    connect: f64,
}

/// One download of `size` bytes from `url` in namespace B, by curl or (`rawtcp`) by
/// `examples/http_client.rs` on rawtcp's raw datapath, or why it failed.
fn download(
    wan: &Wan,
    url: &str,
    size: u64,
    max_time: u32,
    rawtcp: Option<&Path>,
) -> Result<Done, String> {
    let url = format!("{url}/bytes/{size}");
    let mut cmd = match rawtcp {
        None => {
            let mut c = wan.exec(&wan.b, "curl");
            c.args(["-sS", "--fail", "--max-time", &max_time.to_string()])
                .args([
                    "-w",
                    "%{stderr}time_total=%{time_total}\\ntime_connect=%{time_connect}\\n",
                    "-o",
                    "-",
                ])
                .arg(url);
            c
        }
        Some(client) => {
            // It says `status 200 bytes N in T s (R MB/s), connected in C s`; the bound
            // on its time is `wait_bounded`'s below.
            let mut c = wan.exec(&wan.b, &client.to_string_lossy());
            c.env("RAWTCP_DATAPATH", "raw").arg(url).args(["-o", "-"]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("curl: {e}"))?;
    let stdout = child.stdout.take().ok_or("curl has no stdout")?;
    let reader = std::thread::spawn(move || read_pattern(stdout));
    let status = wait_bounded(&mut child, Duration::from_secs(u64::from(max_time) + 5));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let received = reader
        .join()
        .unwrap_or_else(|_| Err("pattern reader panicked".into()));
    let (times, said) = split_times(&err);
    match (status, received) {
        (Err(e), _) => Err(e),
        (Ok(false), Ok(n)) => Err(format!("curl failed after {n} bytes: {said}")),
        (Ok(false), Err(e)) => Err(format!("curl failed: {said}; {e}")),
        (Ok(true), Err(e)) => Err(e),
        (Ok(true), Ok(n)) if n != size => Err(format!("{n} bytes received, not {size}")),
        (Ok(true), Ok(_)) => match (times.get("time_total"), times.get("time_connect")) {
            (Some(&total), Some(&connect)) => Ok(Done { total, connect }),
            _ => Err(format!("no times from curl: {said}")),
        },
    }
}

/// curl's `name=seconds` lines (or http_client's status line, read as the same two
/// times), and the rest of what it said.
fn split_times(stderr: &str) -> (HashMap<String, f64>, String) {
    let mut times = HashMap::new();
    let mut rest = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("status 200 bytes ") {
            if let Some((total, Some(connect))) = http_client_times(line) {
                times.insert("time_total".to_string(), total);
                times.insert("time_connect".to_string(), connect);
                continue;
            }
        }
        match line.split_once('=') {
            Some((k, v)) if k.starts_with("time_") => {
                if let Ok(t) = v.trim().parse() {
                    times.insert(k.to_string(), t);
                }
            }
            _ => rest.push(line.trim()),
        }
    }
    (times, rest.join("; "))
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
            Err(e) => return Err(format!("waiting: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Measurements and tables
// ---------------------------------------------------------------------------------------

/// The downloads of one stack in one row.
#[derive(Default)]
struct Samples {
    /// Goodput of each completed download, MB/s.
    mbps: Vec<f64>,
    /// curl's connect time of each, ms.
    connect_ms: Vec<f64>,
    failed: u32,
    /// CPU seconds the server used during the row.
    cpu: f64,
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

impl Samples {
    fn median(&self) -> Option<f64> {
        median(&self.mbps)
    }

    /// `median (min–max)`, or `-` when nothing completed.
    fn summary(&self) -> String {
        let Some(med) = self.median() else {
            return "-".into();
        };
        let min = self.mbps.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.mbps.iter().copied().fold(0.0, f64::max);
        format!("{} ({}–{})", fig(med), fig(min), fig(max))
    }
}

/// A figure with three significant digits or so.
fn fig(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// One congestion control, RTT and loss rate.
struct Row {
    rtt_ms: f64,
    loss: f64,
    size: u64,
    kernel: Samples,
    rawtcp: Samples,
    bridge: Option<HashMap<String, f64>>,
    /// Frames the veths or the kernel's input backlogs dropped during the row.
    path_drops: f64,
    wall: f64,
}

/// The Mathis et al. bound in MB/s: MSS/RTT × sqrt(3/2)/sqrt(p); None at 0 % or RTT 0.
fn mathis(rtt_ms: f64, loss_pct: f64) -> Option<f64> {
    (loss_pct > 0.0 && rtt_ms > 0.0)
        .then(|| MSS / (rtt_ms / 1e3) * (1.5f64).sqrt() / (loss_pct / 100.0).sqrt() / 1e6)
}

/// The bytes each download of a row moves: SIZE, capped under loss.
fn size_for(args: &Args, rtt_ms: f64, loss: f64) -> u64 {
    match mathis(rtt_ms, loss) {
        Some(m) => {
            let cap = ((m * 1e6 * args.budget) as u64).max(MIN_CAPPED_SIZE) / 1000 * 1000;
            args.size.min(cap)
        }
        None => args.size,
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

fn print_table(cc: &str, rows: &[Row], reps: u32) {
    println!(
        "\n== cc {cc}: goodput, {reps} downloads per stack and row (MB/s = 10^6 B/s; median (min–max); Mathis = 1448 B/RTT × sqrt(3/2)/sqrt(p))\n"
    );
    println!(
        "{:>5} {:>6} {:>6} {:>7}  {:<22} {:>4}  {:<22} {:>4}  {:>8} {:>8} {:>8}",
        "RTT",
        "loss%",
        "size",
        "Mathis",
        "kernel MB/s",
        "fail",
        "rawtcp MB/s",
        "fail",
        "raw/kern",
        "kern/M",
        "raw/M"
    );
    for r in rows {
        let m = mathis(r.rtt_ms, r.loss);
        println!(
            "{:>5} {:>6} {:>6} {:>7}  {:<22} {:>4}  {:<22} {:>4}  {:>8} {:>8} {:>8}",
            format!("{}ms", r.rtt_ms),
            r.loss,
            format!("{}M", fig(r.size as f64 / 1e6)),
            m.map_or("-".into(), fig),
            r.kernel.summary(),
            r.kernel.failed,
            r.rawtcp.summary(),
            r.rawtcp.failed,
            ratio(r.rawtcp.median(), r.kernel.median()),
            ratio(r.kernel.median(), m),
            ratio(r.rawtcp.median(), m),
        );
    }
}

fn print_bridge_table(cc: &str, rows: &[Row]) {
    println!(
        "\n   cc {cc}, the bridge per row: frames A→B forwarded / randomly lost (realised %) / dropped by queue / by socket overflow / by veths and input backlogs (not by the bridge); B→A forwarded; lateness of sends (max, mean; frames > 1 ms late); longest socket wait; bridge and server CPU over the row's wall time\n"
    );
    println!(
        "{:>5} {:>6}  {:>9} {:>14} {:>5} {:>5} {:>5}  {:>8}  {:>17} {:>6}  {:>7}  {:>22}",
        "RTT",
        "loss%",
        "A→B fwd",
        "lost (real %)",
        "queue",
        "sock",
        "veth",
        "B→A fwd",
        "late max/mean ms",
        ">1ms",
        "rxwait",
        "CPU s bridge/kern/raw"
    );
    for r in rows {
        let Some(b) = &r.bridge else {
            println!(
                "{:>5} {:>6}  (no counters)",
                format!("{}ms", r.rtt_ms),
                r.loss
            );
            continue;
        };
        let g = |k: &str| b.get(k).copied().unwrap_or(f64::NAN);
        let rx = g("a2b_rx");
        println!(
            "{:>5} {:>6}  {:>9} {:>14} {:>5} {:>5} {:>5}  {:>8}  {:>17} {:>6}  {:>7}  {:>22}",
            format!("{}ms", r.rtt_ms),
            r.loss,
            g("a2b_tx"),
            format!(
                "{} ({:.2})",
                g("a2b_lost"),
                100.0 * g("a2b_lost") / rx.max(1.0)
            ),
            g("a2b_queue_drops") + g("b2a_queue_drops"),
            g("a2b_socket_drops") + g("b2a_socket_drops") + g("a2b_overflow") + g("b2a_overflow"),
            r.path_drops,
            g("b2a_tx"),
            format!(
                "{:.2}/{:.3} {:.2}/{:.3}",
                g("a2b_max_late_ms"),
                g("a2b_mean_late_ms"),
                g("b2a_max_late_ms"),
                g("b2a_mean_late_ms")
            ),
            g("a2b_late_over_1ms") + g("b2a_late_over_1ms"),
            format!(
                "{:.2}",
                g("a2b_max_rx_wait_ms").max(g("b2a_max_rx_wait_ms"))
            ),
            format!(
                "{:.1}/{:.1}/{:.1} of {:.0}",
                g("cpu_s"),
                r.kernel.cpu,
                r.rawtcp.cpu,
                r.wall
            ),
        );
    }
    println!(
        "\n   cc {cc}, each server's segments as the bridge saw them (before its loss): data segments, retransmitted (below the connection's highest sequence), lost by the bridge (at random or by its queue) and of those by its queue, retransmissions per loss, longest silence inside a connection and silences ≥ 200 ms; curl's median connect time (≈ RTT); the server's answer to a SYN as the bridge saw it (mean, max)\n"
    );
    println!(
        "{:>5} {:>6}  {:<6} {:>9} {:>8} {:>7} {:>6} {:>9} {:>10} {:>7} {:>9} {:>17}",
        "RTT",
        "loss%",
        "stack",
        "data segs",
        "retx",
        "lost",
        "queue",
        "retx/lost",
        "max gap ms",
        "stalls",
        "connect",
        "SYN→SYN+ACK ms"
    );
    for r in rows {
        let Some(b) = &r.bridge else { continue };
        let g = |k: String| b.get(&k).copied().unwrap_or(f64::NAN);
        for (name, port, s) in [
            ("kernel", KERNEL_PORT, &r.kernel),
            ("rawtcp", RAWTCP_PORT, &r.rawtcp),
        ] {
            let lost = g(format!("p{port}_lost"));
            let retx = g(format!("p{port}_retx"));
            println!(
                "{:>5} {:>6}  {:<6} {:>9} {:>8} {:>7} {:>6} {:>9} {:>10} {:>7} {:>9} {:>17}",
                format!("{}ms", r.rtt_ms),
                r.loss,
                name,
                g(format!("p{port}_data")),
                retx,
                lost,
                g(format!("p{port}_qdrops")),
                if lost > 0.0 {
                    format!("{:.2}", retx / lost)
                } else {
                    "-".into()
                },
                g(format!("p{port}_max_gap_ms")),
                g(format!("p{port}_stalls")),
                median(&s.connect_ms).map_or("-".into(), |c| format!("{c:.1}ms")),
                format!(
                    "{:.2} (max {:.2})",
                    g(format!("p{port}_synack_mean_ms")),
                    g(format!("p{port}_synack_max_ms"))
                ),
            );
        }
    }
}

/// Runs every download of one row, kernel and rawtcp alternately, through a fresh bridge.
fn measure(
    wan: &Wan,
    servers: [&Server; 2],
    cfg: &BridgeConfig,
    row: (f64, f64),
    args: &Args,
) -> Result<Row, String> {
    let (rtt_ms, loss) = row;
    let size = size_for(args, rtt_ms, loss);
    let mut r = Row {
        rtt_ms,
        loss,
        size,
        kernel: Samples::default(),
        rawtcp: Samples::default(),
        bridge: None,
        path_drops: 0.0,
        wall: 0.0,
    };
    let bridge = Bridge::start(wan, cfg, args.rt)?;
    let drops0 = wan.path_drops();
    let started = Instant::now();
    let cpu0: Vec<f64> = servers
        .iter()
        .map(|s| cpu_seconds(&s.pid()).unwrap_or(0.0))
        .collect();
    'reps: for rep in 1..=args.reps {
        for (name, server) in ["kernel", "rawtcp"].into_iter().zip(servers) {
            if stopped() {
                break 'reps;
            }
            let samples = if name == "kernel" {
                &mut r.kernel
            } else {
                &mut r.rawtcp
            };
            // With --receiver, rawtcp's column downloads from the kernel's server too; with
            // --both, from rawtcp's.
            let (url, client) = match (&args.receiver, name) {
                (Some(client), "rawtcp") if args.both => (&server.url, Some(client.as_path())),
                (Some(client), "rawtcp") => (&servers[0].url, Some(client.as_path())),
                _ => (&server.url, None),
            };
            match download(wan, url, size, args.max_time, client) {
                Ok(d) => {
                    let mbps = size as f64 / d.total.max(1e-6) / 1e6;
                    eprintln!(
                        "  rtt {rtt_ms} ms loss {loss} %  {name} {rep}/{}: {:.3} s  {} MB/s  (connect {:.1} ms)",
                        args.reps,
                        d.total,
                        fig(mbps),
                        d.connect * 1e3
                    );
                    samples.mbps.push(mbps);
                    samples.connect_ms.push(d.connect * 1e3);
                }
                Err(_) if stopped() => break 'reps,
                Err(e) => {
                    eprintln!(
                        "  rtt {rtt_ms} ms loss {loss} %  {name} {rep}/{}: FAILED: {e}",
                        args.reps
                    );
                    samples.failed += 1;
                }
            }
        }
    }
    for (i, s) in [&mut r.kernel, &mut r.rawtcp].into_iter().enumerate() {
        s.cpu = cpu_seconds(&servers[i].pid()).unwrap_or(0.0) - cpu0[i];
    }
    r.wall = started.elapsed().as_secs_f64();
    r.path_drops = wan.path_drops() - drops0;
    settle(rtt_ms);
    match bridge.finish() {
        Ok(b) => r.bridge = Some(b),
        Err(e) => eprintln!("  bridge: {e}"),
    }
    Ok(r)
}

/// Waits two RTTs and a bit, so the last connection's closing handshake gets through the
/// bridge before it is replaced.
fn settle(rtt_ms: f64) {
    let until = Instant::now() + Duration::from_secs_f64(2.0 * rtt_ms / 1e3 + 0.1);
    while Instant::now() < until && !stopped() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The bridge's settings for one row.
fn bridge_config(wan: &Wan, args: &Args, rtt_ms: f64, loss: f64) -> BridgeConfig {
    let queue_ms = args.queue_ms.unwrap_or(rtt_ms.max(20.0));
    let per_download = u64::from(args.max_time) + 10;
    BridgeConfig {
        dev_a: wan.dev_ra.clone(),
        dev_b: wan.dev_rb.clone(),
        mac_a: MAC_A,
        mac_b: MAC_B,
        delay: Duration::from_secs_f64(rtt_ms / 2.0 / 1e3),
        loss_ppm: (loss * 10_000.0).round() as u32,
        rate: args.rate,
        queue: Duration::from_secs_f64(queue_ms / 1e3),
        seed: args.seed,
        ports: [KERNEL_PORT, RAWTCP_PORT],
        max_life: Duration::from_secs(120 + per_download * 2 * u64::from(args.reps)),
    }
}

/// Sets up the WAN, and per congestion control the servers and every row; the rows.
fn run_all(args: &Args) -> Result<Vec<(String, Vec<Row>)>, String> {
    let binary = http_server_binary()?;
    let wan = Wan::create()?;
    if args.no_timestamps {
        // Each end's kernel then answers a SYN that offers timestamps without them, and
        // offers none itself: rawtcp's ends meet a kernel peer either way.
        for ns in [&wan.a, &wan.b] {
            run(wan
                .exec(ns, "sysctl")
                .args(["-q", "-w", "net.ipv4.tcp_timestamps=0"]))?;
        }
    }
    println!(
        "path: {} ({ADDR_A}, servers) <-veth-> {} (user-space bridge, ip_forward={}) <-veth-> {} ({ADDR_B}, curl); tso/gso/gro/tx/rx offloads off on all four ends; MTU 1500",
        wan.a,
        wan.r,
        wan.sysctl(&wan.r, "net.ipv4.ip_forward"),
        wan.b
    );
    println!(
        "kernel {}; namespace A: tcp_wmem {}, default cc {}, tcp_timestamps {}; namespace B (curl): tcp_rmem {}, tcp_timestamps {}; rawtcp send buffer {} B (Config default)",
        run(Command::new("uname").arg("-r")).unwrap_or_default().trim(),
        wan.sysctl(&wan.a, "net.ipv4.tcp_wmem"),
        wan.sysctl(&wan.a, "net.ipv4.tcp_congestion_control"),
        wan.sysctl(&wan.a, "net.ipv4.tcp_timestamps"),
        wan.sysctl(&wan.b, "net.ipv4.tcp_rmem"),
        wan.sysctl(&wan.b, "net.ipv4.tcp_timestamps"),
        rawtcp::proto::Config::default().send_buffer,
    );
    println!(
        "servers: {} --kernel --cc CC {ADDR_A}:{KERNEL_PORT}  and  RAWTCP_DATAPATH=raw {} --cc CC {ADDR_A}:{RAWTCP_PORT}",
        binary.display(),
        binary.display()
    );
    if let (Some(client), true) = (&args.receiver, args.both) {
        println!(
            "--both: the rawtcp column is RAWTCP_DATAPATH=raw {} -o - in {}, downloading from rawtcp's server: rawtcp at both ends, the kernel at both ends of the kernel column",
            client.display(),
            wan.b
        );
    } else if let Some(client) = &args.receiver {
        println!(
            "--receiver: the rawtcp column is RAWTCP_DATAPATH=raw {} -o - in {}, downloading from the kernel's server (so the bridge's per-server rows count both columns under the kernel's port)",
            client.display(),
            wan.b
        );
    }
    let mut all = Vec::new();
    for cc in &args.ccs {
        if stopped() {
            break;
        }
        println!("-- cc {cc}: starting the servers");
        // Any bridge will do while the servers start: they are polled through it.
        let first = bridge_config(&wan, args, args.rtts_ms[0], 0.0);
        let (kernel, rawtcp) = {
            let bridge = Bridge::start(&wan, &first, args.rt)?;
            let kernel = Server::start(&wan, &binary, true, cc)?;
            let rawtcp = Server::start(&wan, &binary, false, cc)?;
            settle(args.rtts_ms[0]);
            let _ = bridge.finish();
            (kernel, rawtcp)
        };
        let mut rows = Vec::new();
        for &rtt in &args.rtts_ms {
            for &loss in &args.losses {
                if stopped() {
                    break;
                }
                let cfg = bridge_config(&wan, args, rtt, loss);
                eprintln!(
                    "cc {cc} rtt {rtt} ms loss {loss} %: {} bytes per download",
                    size_for(args, rtt, loss)
                );
                rows.push(measure(&wan, [&kernel, &rawtcp], &cfg, (rtt, loss), args)?);
            }
        }
        all.push((cc.clone(), rows));
    }
    Ok(all)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--bridge") {
        return bridge_main(&argv[1..]);
    }
    println!("$ {}", command_line());
    let args = match parse_args(argv.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "parameters: cc {} | RTT {:?} ms | loss {:?} % (A→B TCP frames only) | size {} B, capped under loss to max(1 MB, Mathis × {} s) | reps {} per stack, alternating | max-time {} s | rate {} | queue {} | seed {} | bridge priority {}",
        args.ccs.join(","),
        args.rtts_ms,
        args.losses,
        args.size,
        args.budget,
        args.reps,
        args.max_time,
        if args.rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{} B/s", args.rate)
        },
        match (args.rate, args.queue_ms) {
            (0, _) => "none".to_string(),
            (_, Some(q)) => format!("{q} ms"),
            (_, None) => "max(RTT, 20 ms)".to_string(),
        },
        args.seed,
        if args.rt { "SCHED_FIFO 20" } else { "normal" }
    );
    if args.rt && !on_path("chrt") {
        eprintln!("--rt needs chrt");
        return ExitCode::from(2);
    }
    if let Some(missing) = missing_requirements() {
        eprintln!("{missing}");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let all = match stop_on_signals().and_then(|()| run_all(&args)) {
        Ok(all) => all,
        Err(e) => {
            eprintln!("wan_loss: {e}");
            return ExitCode::from(2);
        }
    };
    for (cc, rows) in &all {
        print_table(cc, rows, args.reps);
        print_bridge_table(cc, rows);
    }
    if stopped() {
        println!("\n(interrupted: the last row is incomplete)");
    }
    let rows = all.iter().flat_map(|(_, r)| r);
    let (mut done, mut failed) = (0, 0);
    for r in rows {
        done += r.kernel.mbps.len() + r.rawtcp.mbps.len();
        failed += r.kernel.failed + r.rawtcp.failed;
    }
    println!(
        "\ndownloads: {done} byte-exact, {failed} failed; run time {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 || stopped() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
