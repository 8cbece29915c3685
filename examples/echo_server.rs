//! An echo server on rawtcp: every connection gets back what it sends.
//!
//! ```text
//! cargo run --example echo_server                        # listens on 127.0.0.1:7000
//! cargo run --example echo_server -- 127.0.0.1:7000
//! cargo run --example echo_server -- 127.0.0.1:7000 --max-conns 3   # exit after 3 connections
//! ```
//!
//! Pair it with `cargo run --example echo_client -- 127.0.0.1:7000` in another terminal. Over
//! the default UDP datapath the two processes exchange real TCP/IP packets carried in UDP
//! datagrams on loopback.
//!
//! Each connection is served by a task of its own (a read/write loop). The log shows every accept and every close with both addresses, and, when a
//! connection ends, the engine's figures from `TcpStream::info()`: bytes, segments,
//! retransmissions and round-trip times.
//!
//! A connection that sends nothing for `--idle-secs` seconds (default 300) is closed.

use rawtcp::proto::State;
use rawtcp::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USAGE: &str =
    "usage: echo_server [ADDR] [--max-conns N] [--idle-secs S]  (ADDR defaults to 127.0.0.1:7000)";

struct Args {
    addr: String,
    max_conns: Option<u64>,
    idle: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:7000".into(),
        max_conns: None,
        idle: Duration::from_secs(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--max-conns" => {
                let v = it.next().ok_or("--max-conns needs a number")?;
                args.max_conns = Some(v.parse().map_err(|_| format!("bad --max-conns {v:?}"))?);
            }
            "--idle-secs" => {
                let v = it.next().ok_or("--idle-secs needs a number")?;
                let s: u64 = v.parse().map_err(|_| format!("bad --idle-secs {v:?}"))?;
                args.idle = Duration::from_secs(s.max(1));
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
    let start = Instant::now();
    let listener = TcpListener::bind(&args.addr).await?;
    log(
        start,
        format_args!(
            "listening on {} (rawtcp, {} datapath)",
            listener.local_addr()?,
            rawtcp::Stack::default_stack()?.datapath_name()
        ),
    );

    let ended = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut accepted = 0u64;
    loop {
        if args.max_conns.is_some_and(|m| accepted >= m) {
            break;
        }
        let (stream, peer) = listener.accept().await?;
        accepted += 1;
        let n = accepted;
        log(
            start,
            format_args!(
                "#{n} accept  {peer} -> {}",
                stream.local_addr().map_or("?".into(), |a| a.to_string())
            ),
        );
        let (ended, done, idle) = (ended.clone(), done.clone(), args.idle);
        tokio::spawn(async move {
            serve(start, n, stream, peer, idle).await;
            ended.fetch_add(1, Ordering::SeqCst);
            done.notify_one();
        });
    }
    // --max-conns reached: wait (bounded) for the last connections to finish.
    let deadline = tokio::time::Instant::now() + args.idle + Duration::from_secs(5);
    while ended.load(Ordering::SeqCst) < accepted {
        if tokio::time::timeout_at(deadline, done.notified())
            .await
            .is_err()
        {
            break;
        }
    }
    log(
        start,
        format_args!("served {accepted} connection(s); exiting"),
    );
    // Let the last ACKs leave before the process (and the stack's reactor) goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Echoes until the peer closes (or errs, or stays silent too long), closes, and logs the
/// connection's figures.
async fn serve(start: Instant, n: u64, mut stream: TcpStream, peer: SocketAddr, idle: Duration) {
    let opened = Instant::now();
    let result = echo(&mut stream, idle).await;
    let _ = stream.shutdown().await;
    // Give our last bytes and FIN a moment to be acknowledged so the figures are final.
    for _ in 0..50 {
        match stream.info() {
            Ok(i) if i.bytes_acked < i.bytes_sent || fin_unacked(i.state) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            _ => break,
        }
    }
    let how = match &result {
        Ok(bytes) => format!("peer closed after {bytes} bytes echoed"),
        Err(e) => format!("error: {e}"),
    };
    log(
        start,
        format_args!("#{n} close   {peer}: {how}, open {:.3?}", opened.elapsed()),
    );
    match stream.info() {
        Ok(i) => log(
            start,
            format_args!(
                "#{n}   info  state {}  bytes sent {} acked {} received {}  segments sent {} \
                 received {}  retransmissions {} (timeouts {}, fast {})  srtt {:?}  min_rtt \
                 {:?}  rto {:?}  cwnd {}  mss {}",
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
                i.rto,
                i.cwnd,
                i.send_mss
            ),
        ),
        Err(e) => log(start, format_args!("#{n}   info  unavailable: {e}")),
    }
}

/// The echo loop: read what arrived, write it back, until the peer's FIN. A read that waits
/// longer than `idle` ends the connection with `TimedOut`. Returns the bytes echoed.
async fn echo(stream: &mut TcpStream, idle: Duration) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut echoed = 0u64;
    loop {
        let n = match tokio::time::timeout(idle, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("idle for {idle:?} after {echoed} bytes echoed"),
                ))
            }
        };
        if n == 0 {
            return Ok(echoed);
        }
        stream.write_all(&buf[..n]).await?;
        echoed += n as u64;
    }
}

/// Whether our FIN may still be waiting for its acknowledgment.
fn fin_unacked(state: State) -> bool {
    matches!(state, State::FinWait1 | State::Closing | State::LastAck)
}

fn log(start: Instant, msg: std::fmt::Arguments<'_>) {
    println!("[{:>9.3}s] {msg}", start.elapsed().as_secs_f64());
}
