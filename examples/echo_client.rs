//! An echo client on rawtcp: sends messages, prints each echo and its round-trip time.
//!
//! ```text
//! cargo run --example echo_client -- 127.0.0.1:7000              # lines typed on stdin
//! cargo run --example echo_client -- 127.0.0.1:7000 --count 10   # 10 generated messages
//! ```
//!
//! Start `cargo run --example echo_server -- 127.0.0.1:7000` first (ADDR defaults to
//! 127.0.0.1:7000 in both). The client prints its `local_addr` and `peer_addr` first: they
//! are the addresses the server logs for this connection, the other way round.
//!
//! Each message is sent whole (Nagle off), then the client waits for the same number of bytes
//! to come back and checks them. At the end it closes its side, waits for the server's FIN,
//! and prints the round-trip figures next to the engine's own (`TcpStream::info()`).
//! Every round trip is bounded by `--timeout-secs` (default 10).

use rawtcp::TcpStream;
use std::io;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const USAGE: &str =
    "usage: echo_client [ADDR] [--count N] [--timeout-secs S]  (ADDR defaults to 127.0.0.1:7000)";

struct Args {
    addr: String,
    count: Option<u64>,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:7000".into(),
        count: None,
        timeout: Duration::from_secs(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--count" | "-n" => {
                let v = it.next().ok_or("--count needs a number")?;
                args.count = Some(v.parse().map_err(|_| format!("bad --count {v:?}"))?);
            }
            "--timeout-secs" => {
                let v = it.next().ok_or("--timeout-secs needs a number")?;
                let s: u64 = v.parse().map_err(|_| format!("bad --timeout-secs {v:?}"))?;
                args.timeout = Duration::from_secs(s.max(1));
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => args.addr = s.to_string(),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let t = Instant::now();
    let mut stream = tokio::time::timeout(args.timeout, TcpStream::connect(&args.addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    println!(
        "connected in {:.3?}: local_addr {}  peer_addr {}",
        t.elapsed(),
        stream.local_addr()?,
        stream.peer_addr()?
    );

    let mut rtts = Vec::new();
    let mut echo = Vec::new();
    match args.count {
        Some(count) => {
            for i in 1..=count {
                let msg = format!("message {i} of {count} from {}\n", stream.local_addr()?);
                let rtt = round_trip(&mut stream, msg.as_bytes(), &mut echo, args.timeout).await?;
                print_echo(&echo, rtt);
                rtts.push(rtt);
            }
        }
        None => {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Some(line) = lines.next_line().await? {
                let msg = format!("{line}\n");
                let rtt = round_trip(&mut stream, msg.as_bytes(), &mut echo, args.timeout).await?;
                print_echo(&echo, rtt);
                rtts.push(rtt);
            }
        }
    }

    // Close our side and wait for the server's FIN: nothing more may arrive.
    stream.shutdown().await?;
    let mut rest = Vec::new();
    tokio::time::timeout(args.timeout, stream.read_to_end(&mut rest))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no FIN from the server"))??;
    if !rest.is_empty() {
        println!("unexpected {} bytes after the last echo", rest.len());
    }

    if !rtts.is_empty() {
        let mut sorted = rtts.clone();
        sorted.sort();
        let avg = sorted.iter().sum::<Duration>() / sorted.len() as u32;
        println!(
            "{} round trips: min {:?}  median {:?}  avg {:?}  max {:?}",
            sorted.len(),
            sorted[0],
            sorted[sorted.len() / 2],
            avg,
            sorted[sorted.len() - 1]
        );
    }
    let i = stream.info()?;
    println!(
        "info: state {}  bytes sent {} acked {} received {}  segments sent {} received {}  \
         retransmissions {} (timeouts {}, fast {})  srtt {:?}  min_rtt {:?}  rto {:?}",
        i.state,
        i.bytes_sent,
        i.bytes_acked,
        i.bytes_received,
        i.segments_sent,
        i.segments_received,
        i.retransmissions,
        i.timeouts,
        i.fast_retransmits,
        i.srtt.unwrap_or_default(),
        i.min_rtt.unwrap_or_default(),
        i.rto
    );
    drop(stream);
    // The stack's reactor runs on a thread of its own: give it a moment to send the final
    // ACK of the server's FIN before the process exits.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Sends `msg` and reads exactly as many bytes back into `echo`; checks they are the same.
async fn round_trip(
    stream: &mut TcpStream,
    msg: &[u8],
    echo: &mut Vec<u8>,
    limit: Duration,
) -> io::Result<Duration> {
    echo.clear();
    echo.resize(msg.len(), 0);
    let t = Instant::now();
    let exchange = async {
        stream.write_all(msg).await?;
        stream.read_exact(echo).await
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no echo within {limit:?}"),
            ))
        }
    };
    let rtt = t.elapsed();
    if echo.as_slice() != msg {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "echo differs: sent {:?}, got {:?}",
                String::from_utf8_lossy(msg),
                String::from_utf8_lossy(echo)
            ),
        ));
    }
    Ok(rtt)
}

fn print_echo(echo: &[u8], rtt: Duration) {
    let text = String::from_utf8_lossy(echo);
    println!("echo ({:>9.3?}): {}", rtt, text.trim_end_matches('\n'));
}
