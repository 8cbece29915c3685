//! Time-sequence graphs and textbook ladders for TCP conversations, from a pcap file or from
//! a live transfer over the simulated network.
//!
//! ```text
//! cargo run --example tcpgraph -- capture.pcap                         # list the connections
//! cargo run --example tcpgraph -- capture.pcap --conn 2 -o graph.svg   # graph connection 2 (or .png)
//! cargo run --example tcpgraph -- capture.pcap --port 8080 --ladder    # the ladder of the connection on port 8080
//! cargo run --example tcpgraph -- capture.pcap --conn 1 --ladder --relative --time
//! cargo run --example tcpgraph -- capture.pcap --port 8080 --pacing   # how each side's data left
//! cargo run --example tcpgraph -- --sim -o transfer.png                 # a live lossy transfer, with panels
//! ```
//!
//! Captures: rawtcp's own (`RAWTCP_PCAP`, `Stack::builder().pcap`) or `tcpdump -w` of any TCP
//! (link types RAW, Ethernet, Linux cooked v1/v2, loopback; pcap or pcapng).
//!
//! Without `--conn` or `--port` the connections are listed (and the only one is used when
//! there is just one). With a connection chosen and no `-o`, its ladder is printed.
//! `--pacing` prints instead how each side's data left (`inspect::pacing::Pacing`): the
//! median spacing of its data segments, its bursts (segments less than 10 µs apart), the
//! time it stood idle (gaps over 30 µs), the ACKs that came back, and how soon new data
//! followed an ACK — for two stacks on one path, captured at the receiver, this shows which
//! moves its window in smaller or slower pieces.
//!
//! `--sim` runs a transfer between two rawtcp stacks on the simulated network, in virtual
//! time, and draws it from the sending stack's tap: the retransmission causes are the
//! engine's own, and the panels show its cwnd, bytes in flight, SRTT and RTO.
//! `--loss PERCENT` (default 2, data direction), `--rtt MS` (default 40), `--bandwidth MBIT`
//! (default 20), `--bytes N` (default 3000000), `--cc newreno|cubic|bbr`, `--seed N` (default 7),
//! `--pcap FILE` also writes the sender's capture.

use rawtcp::datapath::sim::{LinkConfig, SimNetwork};
use rawtcp::inspect::graph::TimeSequence;
use rawtcp::inspect::ladder::Ladder;
use rawtcp::inspect::pacing::Pacing;
use rawtcp::inspect::{Capture, Conversation, Recorder, Side};
use rawtcp::proto::{Config, RetransmitCause};
use rawtcp::Stack;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Data segments closer than this to the one before belong to one burst (`--pacing`).
const BURST_GAP: Duration = Duration::from_micros(10);
/// Gaps between data segments longer than this count as idle time (`--pacing`).
const IDLE_GAP: Duration = Duration::from_micros(30);

const USAGE: &str = "usage: tcpgraph CAPTURE [--conn N | --port P] [-o OUT.svg|OUT.png] [--ladder]
                [--pacing] [--relative] [--time] [--sender client|server] [--panels] [--size WxH]
       tcpgraph --sim [-o OUT.svg|OUT.png] [--loss PERCENT] [--rtt MS] [--bandwidth MBIT]
                [--bytes N] [--cc NAME] [--seed N] [--pcap FILE] [--ladder]";

#[derive(Default)]
struct Args {
    capture: Option<String>,
    conn: Option<usize>,
    port: Option<u16>,
    out: Option<String>,
    ladder: bool,
    pacing: bool,
    relative: bool,
    time: bool,
    sender: Option<Side>,
    panels: bool,
    size: Option<(u32, u32)>,
    sim: bool,
    loss: f64,
    rtt_ms: u64,
    bandwidth_mbit: f64,
    bytes: usize,
    cc: Option<String>,
    seed: u64,
    pcap: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        loss: 2.0,
        rtt_ms: 40,
        bandwidth_mbit: 20.0,
        bytes: 3_000_000,
        seed: 7,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let num = |v: String, name: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or(format!("bad {name} {v:?}"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--conn" => a.conn = Some(num(value("--conn")?, "--conn")? as usize),
            "--port" => {
                let v = value("--port")?;
                a.port = Some(v.parse().map_err(|_| format!("bad --port {v:?}"))?);
            }
            "-o" | "--out" => a.out = Some(value("-o")?),
            "--ladder" => a.ladder = true,
            "--pacing" => a.pacing = true,
            "--relative" => a.relative = true,
            "--time" => a.time = true,
            "--panels" => a.panels = true,
            "--sender" => {
                a.sender = Some(match value("--sender")?.as_str() {
                    "client" => Side::Client,
                    "server" => Side::Server,
                    other => return Err(format!("--sender is client or server, not {other:?}")),
                })
            }
            "--size" => {
                let v = value("--size")?;
                let (w, h) = v.split_once('x').ok_or(format!("bad --size {v:?}"))?;
                a.size = Some((
                    w.parse().map_err(|_| format!("bad --size {v:?}"))?,
                    h.parse().map_err(|_| format!("bad --size {v:?}"))?,
                ));
            }
            "--sim" => a.sim = true,
            "--loss" => a.loss = num(value("--loss")?, "--loss")?.min(100.0),
            "--rtt" => a.rtt_ms = num(value("--rtt")?, "--rtt")? as u64,
            "--bandwidth" => a.bandwidth_mbit = num(value("--bandwidth")?, "--bandwidth")?,
            "--bytes" => a.bytes = num(value("--bytes")?, "--bytes")?.min(1e9) as usize,
            "--cc" => a.cc = Some(value("--cc")?),
            "--seed" => a.seed = num(value("--seed")?, "--seed")? as u64,
            "--pcap" => a.pcap = Some(value("--pcap")?),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s if a.capture.is_none() => a.capture = Some(s.to_string()),
            s => return Err(format!("one capture at a time ({s:?})\n{USAGE}")),
        }
    }
    if a.sim == a.capture.is_some() {
        return Err(format!("give a capture file or --sim\n{USAGE}"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    // `RUST_LOG=rawtcp=debug` shows the engine's events (state changes, recoveries,
    // timeouts) on stderr; `=trace` adds every retransmission and dropped packet.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.sim {
        sim(&args)
    } else {
        from_file(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpgraph: {e}");
            ExitCode::FAILURE
        }
    }
}

fn from_file(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let path = args.capture.as_deref().unwrap_or_default();
    let capture = Capture::read_pcap(path)?;
    let s = &capture.skipped;
    if s.not_tcp + s.malformed > 0 || s.truncated {
        eprintln!(
            "{path}: {} TCP packets; skipped {} not TCP, {} malformed{}",
            capture.packets.len(),
            s.not_tcp,
            s.malformed,
            if s.truncated {
                "; the file ends in a damaged or cut-short record"
            } else {
                ""
            }
        );
    }
    let convs = capture.conversations();
    if convs.is_empty() {
        return Err(format!("{path}: no TCP connections in the capture").into());
    }
    let chosen: Vec<&Conversation> = match (args.conn, args.port) {
        (Some(n), _) => convs.iter().filter(|c| c.number == n).collect(),
        (None, Some(p)) => convs
            .iter()
            .filter(|c| c.client.port() == p || c.server.port() == p)
            .collect(),
        (None, None) => {
            println!("connections in {path}:");
            for c in &convs {
                println!("{}", c.summary());
            }
            if convs.len() > 1 {
                println!("choose one with --conn N or --port P");
                return Ok(());
            }
            println!();
            convs.iter().collect()
        }
    };
    let conv = match chosen.as_slice() {
        [] => {
            return Err(
                "no such connection in the capture (run without --conn/--port to list them)".into(),
            )
        }
        [one] => *one,
        [first, ..] => {
            eprintln!(
                "{} connections use that port; using number {} (choose with --conn N)",
                chosen.len(),
                first.number
            );
            first
        }
    };
    show(args, conv)
}

/// Prints the ladder, the pacing of each side's data and/or writes the graph of one
/// conversation.
fn show(args: &Args, conv: &Conversation) -> Result<(), Box<dyn std::error::Error>> {
    if args.pacing {
        for side in [Side::Client, Side::Server] {
            let p = Pacing::of(conv, side, BURST_GAP, IDLE_GAP);
            if p.data_segments > 0 {
                println!("{p}");
            }
        }
    }
    if args.ladder || (args.out.is_none() && !args.pacing) {
        let ladder = Ladder::new(conv).relative(args.relative).time(args.time);
        let mut out = std::io::stdout().lock();
        let printed = writeln!(out, "client {}  server {}", conv.client, conv.server)
            .and_then(|()| write!(out, "{ladder}"))
            .and_then(|()| out.flush());
        match printed {
            // `| head` closed the pipe: not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    if let Some(out) = &args.out {
        let mut g = TimeSequence::new(conv).panels(args.panels || args.sim);
        if let Some(side) = args.sender {
            g = g.sender(side);
        }
        if let Some((w, h)) = args.size {
            g = g.size(w, h);
        }
        if args.sim {
            g = g.title(format!(
                "rawtcp over the simulated network: {} MB, RTT {} ms, {} % loss, {} Mbit/s",
                args.bytes as f64 / 1e6,
                args.rtt_ms,
                args.loss,
                args.bandwidth_mbit
            ));
        }
        let d = g.data();
        g.save(out)?;
        eprintln!(
            "{out}: {} -> {}, {} data segments, {} retransmissions (fast {}, tlp {}, rto {}){}, time 0..{:.3} s, sequence {}..{}",
            d.from,
            d.to,
            d.data_points(),
            d.all_retransmissions(),
            d.retransmissions(RetransmitCause::Fast),
            d.retransmissions(RetransmitCause::LossProbe),
            d.retransmissions(RetransmitCause::Timeout),
            if d.inferred { " (causes inferred)" } else { "" },
            d.x_range.1,
            d.y_range.0,
            d.y_range.1
        );
    }
    Ok(())
}

/// A transfer over the simulated network, recorded from the sender's tap.
fn sim(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    let capture = rt.block_on(sim_transfer(args))?;
    let convs = capture.conversations();
    let conv = convs.first().ok_or("the transfer recorded no connection")?;
    show(args, conv)
}

async fn sim_transfer(args: &Args) -> std::io::Result<Capture> {
    let net = SimNetwork::new(args.seed);
    let sender_ip: IpAddr = [10, 0, 0, 1].into();
    let receiver_ip: IpAddr = [10, 0, 0, 2].into();
    let rate = (args.bandwidth_mbit * 1e6 / 8.0) as u64;
    let link = LinkConfig::default()
        .with_latency(Duration::from_millis(args.rtt_ms / 2))
        .with_mtu(1500)
        .with_bandwidth(rate.max(1000))
        .with_queue_limit(Duration::from_millis(args.rtt_ms.max(20)));
    net.set_path(sender_ip, receiver_ip, link.with_loss(args.loss / 100.0));
    net.set_path(receiver_ip, sender_ip, link);
    let mut config = Config {
        mss: u16::MAX,
        ..Config::default()
    };
    if let Some(cc) = &args.cc {
        config.congestion = cc.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--cc: {e}"))
        })?;
    }
    let recorder = Recorder::new();
    let mut sender = Stack::builder()
        .datapath(net.host(sender_ip)?)
        .tcp_config(config.clone())
        .tap(recorder.tap());
    if let Some(p) = &args.pcap {
        sender = sender.pcap(p);
    }
    let sender = sender.build()?;
    let receiver = Stack::builder()
        .datapath(net.host(receiver_ip)?)
        .tcp_config(config)
        .build()?;
    let listener = sender.bind(SocketAddr::new(sender_ip, 8080)).await?;
    let bytes = args.bytes;
    let serve = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.write_all(&vec![0x5a; bytes]).await?;
        s.shutdown().await?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        std::io::Result::Ok(())
    });
    let mut c = receiver.connect(SocketAddr::new(sender_ip, 8080)).await?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(600), c.read_to_end(&mut got))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "transfer took over 600 s")
        })??;
    c.shutdown().await?;
    serve.await.map_err(std::io::Error::other)??;
    if got.len() != bytes {
        return Err(std::io::Error::other(format!(
            "received {} of {bytes} bytes",
            got.len()
        )));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(recorder.capture())
}
