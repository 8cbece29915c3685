//! A SYN flood against rawtcp and against Linux, side by side, with legitimate clients
//! fetching through it (root only; everything happens inside two network namespaces this
//! program creates and removes).
//!
//! ```text
//! sudo cargo run --release --example syn_flood                      # 100,000 SYNs over 10 s, both servers
//! sudo cargo run --release --example syn_flood -- --syns 300000 --secs 5 --only rawtcp
//! ```
//!
//! For each server (rawtcp on the raw datapath, then the kernel's TCP with
//! `net.ipv4.tcp_syncookies=1`, the same tiny HTTP responder on both):
//!
//! - namespace A holds the server, namespace B the attacker and the clients, joined by a veth
//!   pair; A routes 10.77.0.0/16 to B, where nothing answers, so the SYN+ACKs to the spoofed
//!   sources go nowhere;
//! - the attacker sends `--syns` SYNs from random 10.77.x.y addresses and ports over `--secs`
//!   seconds (as fast as it can when that is shorter);
//! - meanwhile curl in B fetches a page every 50 ms with a 3 s limit;
//! - the table reports SYNs sent and their rate, fetches that succeeded, the server's peak
//!   resident memory, and for rawtcp its SYN-cookie counters.
//!
//! `--serve` and `--flood` are the roles the program runs itself in inside the namespaces.

#[path = "support/harness.rs"]
mod harness;

use rawtcp::wire::{emit_tcp_packet, TcpFlags, TcpRepr};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USAGE: &str = "usage: syn_flood [--syns N] [--secs S] [--only rawtcp|kernel]";
const PORT: u16 = 8080;

struct Opts {
    syns: u64,
    secs: u64,
    only: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--serve") => return serve(&args[1], &args[2]),
        Some("--flood") => {
            return flood(
                args[1].parse().expect("target"),
                args[2].parse().expect("syns"),
                args[3].parse().expect("secs"),
            )
        }
        _ => {}
    }
    let mut o = Opts {
        syns: 100_000,
        secs: 10,
        only: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| panic!("{USAGE}"));
        match a.as_str() {
            "--syns" => o.syns = value().parse().expect(USAGE),
            "--secs" => o.secs = value().parse().expect(USAGE),
            "--only" => o.only = Some(value()),
            _ => panic!("{USAGE}"),
        }
    }
    if !harness::is_root() {
        eprintln!("syn_flood needs root (network namespaces and raw sockets)");
        std::process::exit(2);
    }
    println!(
        "{} spoofed SYNs over {} s; curl every 50 ms with a 3 s limit\n",
        o.syns, o.secs
    );
    println!(
        "{:<8} {:>10} {:>10} {:>12} {:>14} {:>30}",
        "server", "SYNs sent", "SYNs/s", "fetches ok", "peak RSS", "rawtcp counters"
    );
    for kind in ["rawtcp", "kernel"] {
        if o.only.as_deref().is_some_and(|k| k != kind) {
            continue;
        }
        let r = run(kind, &o);
        println!(
            "{:<8} {:>10} {:>10.0} {:>12} {:>11} KB {:>30}",
            kind,
            r.sent,
            r.sent as f64 / r.flood_secs.max(1e-9),
            format!("{}/{}", r.ok, r.tried),
            r.peak_rss_kb,
            r.counters
        );
    }
}

struct Outcome {
    sent: u64,
    flood_secs: f64,
    ok: usize,
    tried: usize,
    peak_rss_kb: u64,
    counters: String,
}

/// Two namespaces joined by a veth pair; removed with their processes when dropped.
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn new() -> Namespaces {
        let tag = std::process::id() % 100_000;
        let ns = Namespaces {
            a: format!("sfa{tag}"),
            b: format!("sfb{tag}"),
        };
        let (a, b) = (&ns.a, &ns.b);
        sh(&format!(
            "ip netns add {a} && ip netns add {b} && \
             ip link add sva{tag} type veth peer name svb{tag} && \
             ip link set sva{tag} netns {a} && ip link set svb{tag} netns {b} && \
             ip -n {a} addr add 10.66.0.1/24 dev sva{tag} && \
             ip -n {b} addr add 10.66.0.2/24 dev svb{tag} && \
             ip -n {a} link set lo up && ip -n {b} link set lo up && \
             ip -n {a} link set sva{tag} up && ip -n {b} link set svb{tag} up && \
             ip -n {a} route add 10.77.0.0/16 via 10.66.0.2 && \
             ip netns exec {a} sysctl -qw net.ipv4.tcp_syncookies=1"
        ));
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("sh")
                .args([
                    "-c",
                    &format!("ip netns pids {ns} | xargs -r kill -9; ip netns del {ns}"),
                ])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

fn curl(ns: &str, url: &str, limit: &str) -> Child {
    in_ns(ns, "curl")
        .args(["-s", "-o", "/dev/null", "--fail", "--max-time", limit, url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl (apt-get install curl)")
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn run(kind: &str, o: &Opts) -> Outcome {
    let ns = Namespaces::new();
    let me = std::env::current_exe().expect("own path");
    let target = format!("10.66.0.1:{PORT}");
    let url = format!("http://{target}/");
    let mut server = in_ns(&ns.a, me.to_str().unwrap())
        .args(["--serve", kind, &target])
        .env("RAWTCP_DATAPATH", "raw")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server");
    let start = Instant::now();
    loop {
        if curl(&ns.b, &url, "1").wait().is_ok_and(|s| s.success()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the {kind} server never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let flooder = in_ns(&ns.b, me.to_str().unwrap())
        .args(["--flood", &target, &o.syns.to_string(), &o.secs.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("flooder");
    let mut fetches = Vec::new();
    let until = Instant::now() + Duration::from_secs(o.secs);
    while Instant::now() < until {
        fetches.push(curl(&ns.b, &url, "3"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let flood_out = flooder.wait_with_output().expect("flooder");
    let line = String::from_utf8_lossy(&flood_out.stdout);
    let mut words = line.split_whitespace();
    let sent: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let flood_secs: f64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0.0);
    let tried = fetches.len();
    let ok = fetches
        .into_iter()
        .filter_map(|mut c| c.wait().ok())
        .filter(|s| s.success())
        .count();
    let peak_rss_kb = peak_rss_kb(server.id());
    // The server prints its counters once a second; the last line is the latest.
    let _ = server.kill();
    let mut counters = String::new();
    if let Some(out) = server.stdout.take() {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            counters = l;
        }
    }
    let _ = server.wait();
    Outcome {
        sent,
        flood_secs,
        ok,
        tried,
        peak_rss_kb,
        counters,
    }
}

/// The server role: a minimal HTTP responder over rawtcp (the raw datapath, from
/// `RAWTCP_DATAPATH`) or the kernel, printing rawtcp's counters once a second.
fn serve(kind: &str, addr: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr: SocketAddr = addr.parse().unwrap();
        if kind == "kernel" {
            let l = tokio::net::TcpListener::bind(addr).await.unwrap();
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(answer(s));
            }
        } else {
            let stack = rawtcp::Stack::builder().build().unwrap();
            let l = stack.bind(addr).await.unwrap();
            let s2 = stack.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let st = s2.stats();
                    println!(
                        "cookies {} sent {} ok {} bad, {} conns",
                        st.cookies_sent, st.cookies_accepted, st.cookies_rejected, st.connections
                    );
                }
            });
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(answer(s));
            }
        }
    });
}

async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let _ = s
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        .await;
    let _ = s.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
}

/// The attacker role: `syns` SYNs to `target` from random 10.77.x.y sources over `secs`
/// seconds at most; prints how many were sent and in how many seconds.
fn flood(target: SocketAddr, syns: u64, secs: u64) {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).expect("raw socket");
    let dst = SockAddr::from(target);
    let per_sec = syns as f64 / secs.max(1) as f64;
    let start = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut packet = [0u8; 80];
    let mut sent = 0u64;
    while sent < syns && start.elapsed() < Duration::from_secs(secs) {
        // Pace to the rate asked for (as fast as possible when behind).
        let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
        if sent > due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let r = next();
        let src = Ipv4Addr::new(10, 77, (r >> 8) as u8, r as u8);
        let mut syn = TcpRepr {
            src_port: 1024 + (r >> 16) as u16 % 60000,
            dst_port: target.port(),
            seq: (r >> 32) as u32,
            flags: TcpFlags::SYN,
            window: 64240,
            ..TcpRepr::default()
        };
        syn.options.mss = Some(1460);
        syn.options.sack_permitted = true;
        syn.options.window_scale = Some(7);
        syn.options.timestamps = Some(((r >> 20) as u32, 0));
        let n = emit_tcp_packet(IpAddr::V4(src), target.ip(), 64, &syn, &[], &mut packet)
            .expect("emit");
        if sock.send_to(&packet[..n], &dst).is_ok() {
            sent += 1;
        }
    }
    println!("{sent} {:.3}", start.elapsed().as_secs_f64());
}
