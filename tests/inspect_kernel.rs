//! `rawtcp::inspect` on captures of kernel TCP: curl fetching a file from Python's HTTP
//! server across a veth pair between two network namespaces the test creates (and removes),
//! captured by `tcpdump -w` — once clean on the interface (Ethernet frames), once with an
//! nftables rule dropping some of the server's segments and the capture on `any` (Linux
//! cooked frames). Addresses live only inside those namespaces.
//!
//! These need root and the tools `ip`, `nft`, `tcpdump`, `curl`, `python3` and `tshark`
//! (`.ci/run` installs them). Without them each test says so loudly and skips — unless
//! `CI=true`, where that is a failure.
#![cfg(feature = "graph")]

mod privileged;

use rawtcp::inspect::graph::{colors, TimeSequence};
use rawtcp::inspect::ladder::Ladder;
use rawtcp::inspect::{Capture, Side};
use rawtcp::wire::TcpFlags;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

const TOOLS: [&str; 6] = ["ip", "nft", "tcpdump", "curl", "python3", "tshark"];

/// Whether this test can run; panics in CI when it cannot.
fn runnable(test: &str) -> bool {
    privileged::runnable("kernel capture test", test, &TOOLS)
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rawtcp-kcap-{}-{name}", std::process::id()))
}

/// A process ended (SIGTERM, then SIGKILL) when dropped.
struct Proc(Child);

impl Proc {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        // Bounded: 50 × 100 ms.
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two namespaces joined by a veth pair without offloads (segments on the wire as a NIC
/// would send them): server side `a` at 10.98.N.1, client side `b` at 10.98.N.2. Removed,
/// with every process inside, when dropped.
struct Net {
    a: String,
    b: String,
    n: u32,
    dev_a: String,
}

impl Net {
    fn new() -> Net {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 200;
        let tag = format!("{}k{n}", std::process::id() % 100_000);
        let net = Net {
            a: format!("rka{tag}"),
            b: format!("rkb{tag}"),
            n,
            dev_a: format!("ka{tag}"),
        };
        let (a, b) = (&net.a, &net.b);
        sh(&format!(
            "ip netns add {a} && ip netns add {b} && \
             ip link add ka{tag} type veth peer name kb{tag} && \
             ip link set ka{tag} netns {a} && ip link set kb{tag} netns {b} && \
             ip -n {a} addr add 10.98.{n}.1/24 dev ka{tag} && \
             ip -n {b} addr add 10.98.{n}.2/24 dev kb{tag} && \
             ip -n {a} link set lo up && ip -n {b} link set lo up && \
             ip -n {a} link set ka{tag} up && ip -n {b} link set kb{tag} up"
        ));
        if privileged::have("ethtool") {
            for (ns, dev) in [(a, format!("ka{tag}")), (b, format!("kb{tag}"))] {
                let _ = Command::new("ip")
                    .args(["netns", "exec", ns, "ethtool", "-K", &dev])
                    .args(["tso", "off", "gso", "off", "gro", "off"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        net
    }

    fn server(&self) -> String {
        format!("10.98.{}.1", self.n)
    }

    fn spawn(&self, ns: &str, args: &[&str]) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        Proc(child)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("sh")
                .args([
                    "-c",
                    &format!("ip netns pids {ns} | xargs -r kill -9; ip netns del {ns}"),
                ])
                .status();
        }
    }
}

/// Serves a `size`-byte file from namespace `a` with Python's HTTP server, fetches it with
/// curl from `b` while tcpdump captures in namespace `ns` on `iface`, and returns the
/// capture's path.
fn capture_curl(net: &Net, size: usize, ns: &str, iface: &str, name: &str) -> PathBuf {
    let dir = tmp(&format!("{name}-www"));
    std::fs::create_dir_all(&dir).unwrap();
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("file"), &body).unwrap();
    let _server = net.spawn(
        &net.a,
        &[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            &net.server(),
            "--directory",
            dir.to_str().unwrap(),
        ],
    );
    let url = format!("http://{}:8000/file", net.server());
    // Bounded: 100 tries of 100 ms until the server answers (not captured yet).
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Command::new("ip")
            .args(["netns", "exec", &net.b, "curl", "-s", "-o", "/dev/null"])
            .args(["--max-time", "1", &format!("http://{}:8000/", net.server())])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(up, "python3 -m http.server did not come up");
    let pcap = tmp(&format!("{name}.pcap"));
    let mut dump = net.spawn(
        ns,
        &[
            "tcpdump",
            "-i",
            iface,
            "-U",
            "-B",
            "32768",
            "-Z",
            "root",
            "-n",
            "-w",
            pcap.to_str().unwrap(),
            "tcp port 8000",
        ],
    );
    // tcpdump says "listening on" once it captures; give it a moment.
    std::thread::sleep(Duration::from_millis(700));
    let out = tmp(&format!("{name}.out"));
    let start = Instant::now();
    let status = Command::new("ip")
        .args(["netns", "exec", &net.b, "curl", "-sS", "--fail"])
        // Paced, so tcpdump keeps up and drops nothing.
        .args(["--limit-rate", "10M", "--max-time", "60"])
        .args(["-o", out.to_str().unwrap(), &url])
        .status()
        .unwrap();
    assert!(status.success(), "curl failed after {:?}", start.elapsed());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        body,
        "curl's download differs"
    );
    std::thread::sleep(Duration::from_millis(500));
    dump.stop();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_dir_all(&dir);
    pcap
}

/// Counts tshark finds in a capture with a display filter.
fn tshark_count(pcap: &std::path::Path, filter: &str) -> usize {
    sh(&format!(
        "tshark -r {} -Y '{filter}' 2>/dev/null | wc -l",
        pcap.display()
    ))
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn kernel_curl_capture_obeys_the_seq_ack_rules_and_graphs() {
    if !runnable("kernel_curl_capture_obeys_the_seq_ack_rules_and_graphs") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let net = Net::new();
    // Captured on the server's side: every segment it sends is seen, even one a busy
    // receiver then drops (its retransmission is annotated and kept out of the rule).
    let pcap = capture_curl(&net, 1_000_000, &net.a, &net.dev_a, "clean");
    let cap = Capture::read_pcap(&pcap).unwrap();
    let convs = cap.conversations();
    assert_eq!(convs.len(), 1, "one connection in the capture");
    let conv = &convs[0];
    assert_eq!(conv.server.port(), 8000);

    // The seed's rules, segment by segment.
    let p = &conv.packets;
    let (syn, synack, ack) = (&p[0].tcp, &p[1].tcp, &p[2].tcp);
    assert_eq!(syn.flags, TcpFlags::SYN);
    assert_eq!(syn.ack, 0, "SYN carries A:0");
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(synack.ack, syn.seq.wrapping_add(1), "SYN+ACK: A = ISN + 1");
    assert_eq!(ack.flags, TcpFlags::ACK);
    assert_eq!(ack.seq, syn.seq.wrapping_add(1), "ACK: S = ISN + 1");
    assert_eq!(
        ack.ack,
        synack.seq.wrapping_add(1),
        "ACK: A = peer's ISN + 1"
    );
    let segs = conv.segments();
    let mut next = [0i64; 2];
    let mut ends: [Vec<i64>; 2] = [vec![0], vec![0]];
    for s in &segs {
        let me = usize::from(s.side == Side::Server);
        assert!(
            !s.out_of_order && s.missed_before == 0,
            "the sender's capture misses nothing: {s:?}"
        );
        if s.end > s.seq && s.retransmission.is_none() {
            assert_eq!(
                s.seq, next[me],
                "next SEQ = previous SEQ + bytes sent: {s:?}"
            );
            next[me] = s.end;
            ends[me].push(s.end);
        }
        if let Some(a) = s.ack {
            // An ACK is a received SEQ plus its size: the end of a segment the peer sent.
            assert!(ends[1 - me].contains(&a), "ACK {a} ends no segment: {s:?}");
        }
    }
    let ladder = Ladder::new(conv).to_string();
    assert!(ladder
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("server -> client  SYN+ACK  S:"));

    // The graph's points are the server's data packets, as tshark counts them.
    let d = TimeSequence::new(conv).data();
    assert_eq!(d.sender, Side::Server);
    let tshark = tshark_count(&pcap, "tcp.srcport == 8000 && tcp.len > 0");
    assert_eq!(d.data_points(), tshark);
    assert!(d.y_range.1 > 1_000_000 && d.y_range.0 == 0);
    let svg = TimeSequence::new(conv).render_svg().unwrap();
    assert_eq!(
        svg.split('<')
            .filter(|e| e.starts_with("circle")
                && e.contains(&format!("fill=\"{}\"", colors::hex(colors::DATA))))
            .count(),
        tshark - d.all_retransmissions()
    );
    std::fs::remove_file(&pcap).unwrap();
}

#[test]
fn kernel_capture_with_losses_shows_retransmissions() {
    if !runnable("kernel_capture_with_losses_shows_retransmissions") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let net = Net::new();
    // 3 % of the server's segments are dropped on their way into curl's namespace, after
    // tcpdump saw them.
    sh(&format!(
        "printf '%s\\n' 'table inet loss {{' \
           'chain in {{ type filter hook input priority 0; policy accept;' \
           'tcp sport 8000 tcp flags & (syn | fin | rst) == 0 ip length > 200 numgen random mod 100 < 3 counter drop' \
           '}}' '}}' | ip netns exec {} nft -f -",
        net.b
    ));
    let pcap = capture_curl(&net, 3_000_000, &net.b, "any", "lossy");
    // `-i any` writes Linux cooked frames (v2, or v1 from older tcpdumps).
    let header = std::fs::read(&pcap).unwrap();
    let link = u32::from_le_bytes(header[20..24].try_into().unwrap());
    assert!(matches!(link, 113 | 276), "link type {link}");
    let cap = Capture::read_pcap(&pcap).unwrap();
    let convs = cap.conversations();
    assert_eq!(convs.len(), 1);
    let d = TimeSequence::new(&convs[0]).data();
    // tshark calls a resent segment "out of order" when it comes within its own estimate of
    // a round trip, even when the capture holds the original; count all three of its labels.
    let tshark_retx = tshark_count(
        &pcap,
        "tcp.srcport == 8000 && (tcp.analysis.retransmission || \
         tcp.analysis.fast_retransmission || tcp.analysis.out_of_order)",
    );
    let tshark_data = tshark_count(&pcap, "tcp.srcport == 8000 && tcp.len > 0");
    assert_eq!(d.data_points(), tshark_data);
    assert!(
        d.all_retransmissions() > 0,
        "losses were caused: markers expected"
    );
    assert!(d.inferred);
    // Every segment the rule dropped was resent, and the capture (taken before the rule)
    // holds both copies: about that many retransmissions. Not exactly: the kernel may resend
    // the data of two dropped segments in one (GSO), so a few percent fewer are allowed (a
    // run saw 71 for 72 drops). tshark labels them by its own rules (and some of ours, resent
    // after a loss the capture saw, as out of order), so ours are at most its three labels
    // together.
    let listing = sh(&format!("ip netns exec {} nft list table inet loss", net.b));
    let dropped: usize = listing
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {listing}"));
    assert!(dropped > 0, "the rule dropped nothing: no test");
    let ours = d.all_retransmissions();
    assert!(
        ours + dropped / 20 + 1 >= dropped && ours <= tshark_retx + 5,
        "retransmissions: ours {ours}, dropped {dropped}, tshark {tshark_retx}"
    );
    let svg = TimeSequence::new(&convs[0]).render_svg().unwrap();
    let marks: usize = [colors::FAST, colors::RTO, colors::TLP]
        .iter()
        .map(|c| {
            let f = format!("fill=\"{}\"", colors::hex(*c));
            svg.split('<')
                .filter(|e| e.starts_with("circle") && e.contains(&f))
                .count()
        })
        .sum();
    assert_eq!(marks, d.all_retransmissions());
    assert!(svg.contains("inferred"));
    let ladder = Ladder::new(&convs[0]).to_string();
    assert!(ladder.contains("[retransmission: "), "{ladder}");
    assert!(ladder.contains("[dup ACK #"));
    std::fs::remove_file(&pcap).unwrap();
}
