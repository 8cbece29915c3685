//! `rawtcp::inspect`: graphs and ladders from a small hand-built capture (in every link type
//! the reader decodes), from a pcap rawtcp wrote during a lossy transfer over the simulated
//! network, from a live stack's tap, and from a capture of the echo example. The checks are
//! on what the picture must contain — data points, retransmission markers where losses were
//! caused, axis ranges — not on bytes of a golden file. Kernel captures are in
//! `tests/inspect_kernel.rs`.
#![cfg(feature = "graph")]

use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
use rawtcp::inspect::graph::{colors, TimeSequence};
use rawtcp::inspect::ladder::Ladder;
use rawtcp::inspect::{Capture, InspectError, Recorder, Side};
use rawtcp::proto::{Config, RetransmitCause};
use rawtcp::wire::{emit_tcp_packet, SackBlocks, TcpFlags, TcpOptions, TcpRepr};
use rawtcp::Stack;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rawtcp-inspect-{}-{name}", std::process::id()))
}

/// Elements of an SVG document of one kind (`circle`, `polyline`, `text`) whose attributes
/// contain `attr`.
fn svg_count(svg: &str, element: &str, attr: &str) -> usize {
    svg.split('<')
        .filter(|e| e.starts_with(element) && e.contains(attr))
        .count()
}

fn fill(c: plotters::style::RGBColor) -> String {
    format!("fill=\"{}\"", colors::hex(c))
}

// ---- a hand-built capture -------------------------------------------------------------

const CLIENT: &str = "10.1.0.2:40000";
const SERVER: &str = "10.1.0.1:80";

/// One segment of the scripted exchange: time in ms, from the client?, flags, seq, ack,
/// payload length, SACK blocks.
type Step = (
    u64,
    bool,
    &'static str,
    u32,
    u32,
    usize,
    &'static [(u32, u32)],
);

/// A request, four data segments of which the second is lost and repaired fast after two
/// duplicate ACKs with SACK, a fifth lost and repaired by a timeout, and the close.
const SCRIPT: &[Step] = &[
    (0, true, "SYN", 100, 0, 0, &[]),
    (10, false, "SYN+ACK", 2000, 101, 0, &[]),
    (20, true, "ACK", 101, 2001, 0, &[]),
    (21, true, "PSH+ACK", 101, 2001, 50, &[]),
    (30, false, "ACK", 2001, 151, 1000, &[]),
    (31, false, "ACK", 3001, 151, 1000, &[]),
    (32, false, "ACK", 4001, 151, 1000, &[]),
    (33, false, "PSH+ACK", 5001, 151, 1000, &[]),
    (40, true, "ACK", 151, 3001, 0, &[]),
    (41, true, "ACK", 151, 3001, 0, &[(4001, 5001)]),
    (42, true, "ACK", 151, 3001, 0, &[(4001, 6001)]),
    (43, false, "ACK", 3001, 151, 1000, &[]),
    (53, true, "ACK", 151, 6001, 0, &[]),
    (54, false, "PSH+ACK", 6001, 151, 1000, &[]),
    (400, false, "PSH+ACK", 6001, 151, 1000, &[]),
    (410, true, "ACK", 151, 7001, 0, &[]),
    (411, false, "FIN+ACK", 7001, 151, 0, &[]),
    (420, true, "FIN+ACK", 151, 7002, 0, &[]),
    (421, false, "ACK", 7002, 152, 0, &[]),
];

fn flags(s: &str) -> TcpFlags {
    s.split('+').fold(TcpFlags::NONE, |f, n| {
        f | match n {
            "SYN" => TcpFlags::SYN,
            "ACK" => TcpFlags::ACK,
            "FIN" => TcpFlags::FIN,
            "PSH" => TcpFlags::PSH,
            "RST" => TcpFlags::RST,
            other => panic!("flag {other}"),
        }
    })
}

/// The IP packets of the script, with their times.
fn script_packets() -> Vec<(Duration, Vec<u8>)> {
    let c: SocketAddr = CLIENT.parse().unwrap();
    let s: SocketAddr = SERVER.parse().unwrap();
    SCRIPT
        .iter()
        .map(|&(ms, from_client, f, seq, ack, len, sack)| {
            let (src, dst) = if from_client { (c, s) } else { (s, c) };
            let mut blocks = SackBlocks::new();
            for &(l, r) in sack {
                blocks.push(l, r);
            }
            let repr = TcpRepr {
                src_port: src.port(),
                dst_port: dst.port(),
                seq,
                ack,
                flags: flags(f),
                window: 8192,
                urgent: 0,
                options: TcpOptions {
                    sack: blocks,
                    ..TcpOptions::default()
                },
            };
            let mut buf = vec![0u8; 2000];
            let payload = vec![0x61u8; len];
            let n = emit_tcp_packet(src.ip(), dst.ip(), 64, &repr, &payload, &mut buf).unwrap();
            buf.truncate(n);
            (Duration::from_millis(1_700_000_000_000 + ms), buf)
        })
        .collect()
}

/// A classic pcap file (little-endian, micro- or nanosecond stamps) with `link`-type frames.
fn pcap_bytes(link: u32, nanos: bool, frames: &[(Duration, Vec<u8>)], snaplen: u32) -> Vec<u8> {
    let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut out = Vec::new();
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&link.to_le_bytes());
    for (t, frame) in frames {
        let frac = if nanos {
            t.subsec_nanos()
        } else {
            t.subsec_micros()
        };
        let cap = frame.len().min(snaplen as usize);
        out.extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&frac.to_le_bytes());
        out.extend_from_slice(&(cap as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame[..cap]);
    }
    out
}

/// The frame of an IP packet under a link-layer header.
fn framed(link: u32, ip: &[u8]) -> Vec<u8> {
    let mut f = match link {
        101 => Vec::new(),
        // Ethernet: two MACs, ethertype IPv4.
        1 => [vec![2; 12], vec![0x08, 0x00]].concat(),
        // Linux cooked v1: packet type, ARPHRD, address length, address, protocol.
        113 => [vec![0, 0, 0, 1, 0, 6], vec![0; 8], vec![0x08, 0x00]].concat(),
        // Linux cooked v2: protocol, reserved, ifindex, ARPHRD, type, address length, address.
        276 => [
            vec![0x08, 0x00, 0, 0],
            vec![0, 0, 0, 2, 0, 1, 0, 6],
            vec![0; 8],
        ]
        .concat(),
        other => panic!("link {other}"),
    };
    f.extend_from_slice(ip);
    f
}

fn hand_built(link: u32, nanos: bool) -> Capture {
    let frames: Vec<_> = script_packets()
        .into_iter()
        .map(|(t, ip)| (t, framed(link, &ip)))
        .collect();
    Capture::from_reader(&pcap_bytes(link, nanos, &frames, 65535)[..]).unwrap()
}

#[test]
fn hand_built_capture_in_every_link_type_reads_the_same() {
    for (link, nanos) in [(101, false), (1, false), (113, true), (276, false)] {
        let cap = hand_built(link, nanos);
        assert_eq!(cap.packets.len(), SCRIPT.len(), "link type {link}");
        assert_eq!(cap.skipped, Default::default(), "link type {link}");
        assert_eq!(
            cap.packets[4].time - cap.packets[0].time,
            Duration::from_millis(30),
            "link type {link}"
        );
        let convs = cap.conversations();
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0].client, CLIENT.parse::<SocketAddr>().unwrap());
        assert_eq!(convs[0].server, SERVER.parse::<SocketAddr>().unwrap());
    }
}

#[test]
fn hand_built_capture_ladder_in_the_seed_notation_with_annotations() {
    let cap = hand_built(1, false);
    let conv = &cap.conversations()[0];
    let ladder = Ladder::new(conv).to_string();
    let expected = "\
client -> server  SYN      S:100 A:0
server -> client  SYN+ACK  S:2000 A:101
client -> server  ACK      S:101 A:2001
client -> server  PSH+ACK  S:101 A:2001 len=50
server -> client  ACK      S:2001 A:151 len=1000
server -> client  ACK      S:3001 A:151 len=1000
server -> client  ACK      S:4001 A:151 len=1000
server -> client  PSH+ACK  S:5001 A:151 len=1000
client -> server  ACK      S:151 A:3001
client -> server  ACK      S:151 A:3001  [dup ACK #1]  [SACK 4001-5001]
client -> server  ACK      S:151 A:3001  [dup ACK #2]  [SACK 4001-6001]
server -> client  ACK      S:3001 A:151 len=1000  [retransmission: fast?]
client -> server  ACK      S:151 A:6001
server -> client  PSH+ACK  S:6001 A:151 len=1000
server -> client  PSH+ACK  S:6001 A:151 len=1000  [retransmission: rto?]
client -> server  ACK      S:151 A:7001
server -> client  FIN+ACK  S:7001 A:151
client -> server  FIN+ACK  S:151 A:7002
server -> client  ACK      S:7002 A:152
";
    assert_eq!(ladder, expected);
    let relative = Ladder::new(conv).relative(true).to_string();
    let lines: Vec<&str> = relative.lines().collect();
    assert_eq!(lines[1], "server -> client  SYN+ACK  S:0 A:1");
    assert_eq!(lines[4], "server -> client  ACK      S:1 A:51 len=1000");
    assert_eq!(
        lines[9],
        "client -> server  ACK      S:51 A:1001  [dup ACK #1]  [SACK 2001-3001]"
    );
    let timed = Ladder::new(conv).time(true).limit(2).to_string();
    assert_eq!(
        timed,
        "   0.000000  client -> server  SYN      S:100 A:0\n   \
         0.010000  server -> client  SYN+ACK  S:2000 A:101\n"
    );
}

#[test]
fn hand_built_capture_graph_has_every_point_marker_and_range() {
    let cap = hand_built(276, false);
    let conv = &cap.conversations()[0];
    let g = TimeSequence::new(conv);
    let d = g.data();
    assert_eq!(d.sender, Side::Server);
    assert_eq!(d.data_points(), 7);
    assert_eq!(d.retransmissions(RetransmitCause::Fast), 1);
    assert_eq!(d.retransmissions(RetransmitCause::Timeout), 1);
    assert_eq!(d.retransmissions(RetransmitCause::LossProbe), 0);
    assert!(d.inferred);
    assert_eq!(d.sacks.len(), 2);
    assert!((d.x_range.1 - 0.421 * 1.02).abs() < 1e-9, "{:?}", d.x_range);
    // Relative sequence from 0 to the ACK of the FIN (5002), padded by 1/25.
    assert_eq!(d.y_range, (0, 5002 + 200));

    let svg = g.render_svg().unwrap();
    let new = svg_count(&svg, "circle", &fill(colors::DATA));
    let fast = svg_count(&svg, "circle", &fill(colors::FAST));
    let rto = svg_count(&svg, "circle", &fill(colors::RTO));
    assert_eq!((new, fast, rto), (5, 1, 1));
    for text in [
        "time (s)",
        "sequence number (bytes, relative)",
        "cumulative ACK",
        "receive window",
        "SACK blocks",
        "retransmission: timeout (RTO), inferred",
        "retransmission: fast (RACK/SACK/dup ACKs), inferred",
        "0.000",
    ] {
        assert!(svg.contains(text), "the SVG lacks {text:?}");
    }
    // The client's direction has only the request.
    assert_eq!(
        TimeSequence::new(conv)
            .sender(Side::Client)
            .data()
            .data_points(),
        1
    );

    let png = tmp("hand.png");
    g.save(&png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    std::fs::remove_file(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(matches!(g.save(tmp("x.gif")), Err(InspectError::Render(_))));
}

#[test]
fn pcapng_and_short_snaplen_captures_read() {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
        .unwrap();
    for (t, ip) in script_packets() {
        let frame = framed(1, &ip);
        // No if_tsresol option: the counts are microseconds.
        let micros = t.as_micros() as u64;
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(micros),
            original_len: frame.len() as u32,
            data: frame.into(),
            options: vec![],
        })
        .unwrap();
    }
    let cap = Capture::from_reader(&w.into_inner()[..]).unwrap();
    assert_eq!(cap.packets.len(), SCRIPT.len());
    assert_eq!(
        cap.packets[14].time - cap.packets[0].time,
        Duration::from_millis(400)
    );

    // tcpdump -s 80: headers only; payload lengths still come from the IP header.
    let frames: Vec<_> = script_packets()
        .into_iter()
        .map(|(t, ip)| (t, framed(1, &ip)))
        .collect();
    let cap = Capture::from_reader(&pcap_bytes(1, false, &frames, 80)[..]).unwrap();
    assert_eq!(cap.packets.len(), SCRIPT.len());
    assert_eq!(cap.packets[4].payload_len, 1000);
    let conv = &cap.conversations()[0];
    assert_eq!(TimeSequence::new(conv).data().data_points(), 7);
}

#[test]
fn malformed_captures_are_errors_not_panics() {
    let frames: Vec<_> = script_packets()
        .into_iter()
        .map(|(t, ip)| (t, framed(1, &ip)))
        .collect();
    let good = pcap_bytes(1, false, &frames, 65535);
    // Cut anywhere: an error for a damaged header, the packets before the cut otherwise.
    let mut boundaries = vec![24];
    for (_, f) in &frames {
        boundaries.push(boundaries.last().unwrap() + 16 + f.len());
    }
    for cut in 0..=good.len() {
        match Capture::from_reader(&good[..cut]) {
            Ok(cap) => {
                let whole = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
                assert_eq!(cap.packets.len(), whole, "cut at {cut}");
                assert_eq!(
                    cap.skipped.truncated,
                    !boundaries.contains(&cut),
                    "cut at {cut}"
                );
            }
            Err(e) => assert!(cut < 24, "cut at {cut}: {e}"),
        }
    }
    // Every byte flipped in turn.
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0xff;
        if let Ok(cap) = Capture::from_reader(&bad[..]) {
            for conv in cap.conversations() {
                let _ = Ladder::new(&conv).to_string();
                let g = TimeSequence::new(&conv);
                let _ = g.data();
                if i % 32 == 0 {
                    let _ = g.render_svg();
                }
            }
        }
    }
    assert!(matches!(
        Capture::from_reader(&b"hello, world, not a capture"[..]),
        Err(InspectError::Format(_))
    ));
    assert!(matches!(
        Capture::from_reader(&pcap_bytes(147, false, &[], 65535)[..]),
        Err(InspectError::LinkType(147))
    ));
    let err = Capture::read_pcap("/nonexistent/x.pcap").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.pcap"), "{err}");
    // Frames that are not TCP are counted, not fatal.
    let arp = (
        Duration::from_secs(1),
        [vec![2; 12], vec![0x08, 0x06, 0, 1]].concat(),
    );
    let cap = Capture::from_reader(&pcap_bytes(1, false, &[arp], 65535)[..]).unwrap();
    assert_eq!((cap.packets.len(), cap.skipped.not_tcp), (0, 1));
}

// ---- rawtcp's own captures ------------------------------------------------------------

const SENDER: [u8; 4] = [10, 0, 0, 1];
const RECEIVER: [u8; 4] = [10, 0, 0, 2];

/// A transfer of `bytes` from a stack at 10.0.0.1 to one at 10.0.0.2 over a path that loses
/// `loss` of the data direction, in virtual time. The sender writes `pcap` and records into
/// `rec`. Returns the sender's final `TcpInfo`.
async fn lossy_transfer(
    bytes: usize,
    loss: f64,
    seed: u64,
    pcap: Option<PathBuf>,
    rec: &Recorder,
) -> rawtcp::TcpInfo {
    let net = SimNetwork::new(seed);
    let (s_ip, r_ip): (IpAddr, IpAddr) = (SENDER.into(), RECEIVER.into());
    let link = LinkConfig::default()
        .with_latency(Duration::from_millis(10))
        .with_bandwidth(2_500_000)
        .with_queue_limit(Duration::from_millis(40))
        .with_mtu(1500);
    net.set_path(s_ip, r_ip, link.with_loss(loss));
    net.set_path(r_ip, s_ip, link);
    let cfg = Config {
        mss: u16::MAX,
        ..Config::default()
    };
    let mut b = Stack::builder()
        .datapath(net.host(s_ip).unwrap())
        .tcp_config(cfg.clone())
        .tap(rec.tap());
    if let Some(p) = pcap {
        b = b.pcap(p);
    }
    let sender = b.build().unwrap();
    let receiver = Stack::builder()
        .datapath(net.host(r_ip).unwrap())
        .tcp_config(cfg)
        .build()
        .unwrap();
    let listener = sender.bind(SocketAddr::new(s_ip, 80)).await.unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(&vec![1u8; bytes]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.info().unwrap()
    });
    let mut c = receiver.connect(SocketAddr::new(s_ip, 80)).await.unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), bytes);
    c.shutdown().await.unwrap();
    let info = server.await.unwrap();
    assert!(net.stats().lost > 0, "the path lost nothing: no test");
    info
}

#[tokio::test(start_paused = true)]
async fn graph_from_a_lossy_sim_pcap_marks_every_retransmission() {
    let pcap = tmp("sim.pcap");
    let rec = Recorder::new();
    let info = lossy_transfer(400_000, 0.03, 11, Some(pcap.clone()), &rec).await;
    assert!(info.retransmissions > 0);
    let cap = Capture::read_pcap(&pcap).unwrap();
    std::fs::remove_file(&pcap).unwrap();
    assert_eq!(cap.skipped, Default::default());
    let convs = cap.conversations();
    assert_eq!(convs.len(), 1);
    let conv = &convs[0];
    assert_eq!(conv.server, SocketAddr::new(SENDER.into(), 80));
    let g = TimeSequence::new(conv);
    let d = g.data();
    assert_eq!(d.sender, Side::Server);
    // Every payload byte sent once is on the graph as new data, and every retransmission
    // the engine counted is marked (the capture is the sender's own).
    let new_bytes: i64 = d
        .marks
        .iter()
        .filter(|m| m.class == rawtcp::inspect::graph::MarkClass::New)
        .map(|m| m.end - m.seq)
        .sum();
    assert_eq!(new_bytes as u64, info.bytes_sent);
    assert_eq!(d.all_retransmissions() as u64, info.retransmissions);
    assert_eq!(
        d.data_points() as u64,
        info.bytes_sent.div_ceil(u64::from(info.send_mss)) + info.retransmissions,
        "full-sized segments plus retransmissions"
    );
    assert!(d.inferred);
    // The axes: from the first packet to the last; sequence over the whole transfer.
    let last = conv.packets.last().unwrap().time - conv.packets[0].time;
    assert!((d.x_range.1 - last.as_secs_f64() * 1.02).abs() < 1e-6);
    assert!(d.y_range.0 == 0 && d.y_range.1 > 400_000 && d.y_range.1 < 420_000);

    let svg = g.render_svg().unwrap();
    let marked: usize = [colors::FAST, colors::RTO, colors::TLP]
        .into_iter()
        .map(|c| svg_count(&svg, "circle", &fill(c)))
        .sum();
    assert_eq!(marked as u64, info.retransmissions);
    assert_eq!(
        svg_count(&svg, "circle", &fill(colors::DATA)),
        d.data_points() - d.all_retransmissions()
    );

    // The same transfer from the live tap: the causes are the engine's own.
    let live = rec.capture();
    let lconv = &live.conversations()[0];
    let ld = TimeSequence::new(lconv).data();
    assert!(!ld.inferred);
    assert_eq!(ld.all_retransmissions() as u64, info.retransmissions);
    assert_eq!(
        ld.retransmissions(RetransmitCause::LossProbe) as u64,
        info.tlp_probes
            .min(ld.retransmissions(RetransmitCause::LossProbe) as u64)
    );
    // The inferred causes agree with the engine's for most retransmissions.
    let truth: Vec<_> = lconv
        .segments()
        .into_iter()
        .filter_map(|s| s.retransmission.map(|r| (s.seq, r.cause)))
        .collect();
    let guess: Vec<_> = conv
        .segments()
        .into_iter()
        .filter_map(|s| s.retransmission.map(|r| (s.seq, r.cause)))
        .collect();
    assert_eq!(truth.len(), guess.len());
    let agree = truth.iter().zip(&guess).filter(|(a, b)| a == b).count();
    assert!(
        agree * 10 >= truth.len() * 8,
        "inferred causes agree on {agree} of {}: {truth:?} vs {guess:?}",
        truth.len()
    );
}

#[tokio::test(start_paused = true)]
async fn live_graph_has_panels_from_the_engine_samples() {
    let rec = Recorder::new();
    let info = lossy_transfer(200_000, 0.05, 3, None, &rec).await;
    let cap = rec.capture();
    let conv = &cap.conversations()[0];
    let g = TimeSequence::new(conv).panels(true);
    let d = g.data();
    assert!(!d.samples.is_empty());
    assert!(d.samples.iter().any(|(_, s)| s.srtt.is_some()));
    let max_cwnd = d.samples.iter().map(|(_, s)| s.cwnd).max().unwrap();
    assert!(max_cwnd >= info.cwnd);
    let svg = g.render_svg().unwrap();
    for text in [
        "window (KB)",
        "time (ms)",
        "cwnd",
        "bytes in flight",
        "SRTT",
        "RTO",
    ] {
        assert!(svg.contains(text), "the SVG lacks {text:?}");
    }
    assert!(!svg.contains("inferred"));
    let png = tmp("live.png");
    g.save(&png).unwrap();
    std::fs::remove_file(&png).unwrap();
}

/// A built example binary (cargo test builds the examples next to the test binaries).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let p = dir.join("examples").join(name);
    assert!(p.exists(), "example {name} not built at {}", p.display());
    p
}

/// The README's `RAWTCP_PCAP=/tmp/echo.pcap cargo run --example echo`, run as a new user
/// would (with `--seed-numbers`): the file exists, and its ladder is the seed's.
#[test]
fn echo_capture_reproduces_the_seed_ladder() {
    let pcap = tmp("echo.pcap");
    let out = std::process::Command::new(example("echo"))
        .arg("--seed-numbers")
        .env("RAWTCP_PCAP", &pcap)
        .env_remove("RAWTCP_DATAPATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cap = Capture::read_pcap(&pcap).unwrap();
    std::fs::remove_file(&pcap).unwrap();
    let convs = cap.conversations();
    assert_eq!(convs.len(), 1, "one connection, each segment captured once");
    let ladder = Ladder::new(&convs[0]).limit(6).to_string();
    assert_eq!(
        ladder,
        "\
client -> server  SYN      S:100 A:0
server -> client  SYN+ACK  S:2000 A:101
client -> server  ACK      S:101 A:2001
client -> server  PSH+ACK  S:101 A:2001 len=100
server -> client  PSH+ACK  S:2001 A:201 len=500
client -> server  ACK      S:201 A:2501
"
    );
    // Nothing is flagged in a clean exchange, and the close is there.
    let full = Ladder::new(&convs[0]).to_string();
    assert!(!full.contains('['), "{full}");
    let s = convs[0].summary();
    assert!(s.opened && s.closed && !s.reset);
    assert_eq!(
        (s.bytes_to_server, s.bytes_to_client),
        (100 + 200 * 64, 500 + 200 * 64)
    );
}

/// tcpgraph as the README runs it: the listing, the ladder and the graph.
#[test]
fn tcpgraph_example_lists_prints_and_draws() {
    let pcap = tmp("tcpgraph.pcap");
    let frames: Vec<_> = script_packets()
        .into_iter()
        .map(|(t, ip)| (t, framed(1, &ip)))
        .collect();
    std::fs::write(&pcap, pcap_bytes(1, false, &frames, 65535)).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(example("tcpgraph"))
            .arg(&pcap)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = run(&[]);
    assert!(list.contains("10.1.0.2:40000 -> 10.1.0.1:80"), "{list}");
    let ladder = run(&["--port", "80", "--ladder"]);
    assert!(
        ladder.contains("server -> client  SYN+ACK  S:2000 A:101"),
        "{ladder}"
    );
    let svg = tmp("tcpgraph.svg");
    run(&["--conn", "1", "-o", svg.to_str().unwrap()]);
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(svg_count(&doc, "circle", &fill(colors::RTO)), 1);
    std::fs::remove_file(&svg).unwrap();
    let out = std::process::Command::new(example("tcpgraph"))
        .arg(&pcap)
        .args(["--conn", "9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_file(&pcap).unwrap();
}
