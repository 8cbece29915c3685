//! An echo server and client in one process, printing every segment as a ladder.
//!
//! ```text
//! cargo run --example echo                  # random ISNs (RFC 6528), default datapath
//! cargo run --example echo -- --seed-numbers  # ISNs 100 and 2000, a 100-byte request, a 500-byte answer
//! ```
//!
//! The ladder shows what crossed the datapath, one segment per line: who sent it, the flags,
//! `S:` the sequence number, `A:` the acknowledgment number, and `len=` the payload bytes.

use rawtcp::proto::Config;
use rawtcp::{Direction, Stack};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // `RUST_LOG=rawtcp=debug` shows the engine's events (state changes, recoveries,
    // timeouts) on stderr; `=trace` adds every retransmission and dropped packet.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let seed_numbers = std::env::args().any(|a| a == "--seed-numbers");
    let printing = Arc::new(AtomicBool::new(true));
    let server_port = Arc::new(AtomicU16::new(0));

    // 64 KiB receive buffers: the window a SYN+ACK can announce (it is never scaled) is then
    // the whole buffer, so reading the request owes no window update, and the ACK rides on
    // the answer every time, as in the textbook exchange. With a larger buffer the server
    // would announce the rest of its window once it read the request, and whether that
    // update went out on its own or with the answer would depend on timing.
    let mut builder = Stack::builder().tcp_config(Config {
        mss: u16::MAX,
        recv_buffer: 65_535,
        ..Config::default()
    });
    {
        let printing = printing.clone();
        let server_port = server_port.clone();
        builder = builder.tap(move |ev| {
            if ev.direction != Direction::Out || !printing.load(Ordering::Relaxed) {
                return;
            }
            let from_server = ev.src.port() == server_port.load(Ordering::Relaxed);
            let (from, to) = if from_server {
                ("server", "client")
            } else {
                ("client", "server")
            };
            println!("{from} -> {to}  {}", ev.tcp.ladder(ev.payload_len));
        });
    }
    if seed_numbers {
        let server_port = server_port.clone();
        builder = builder.isn(move |local, _remote| {
            if local.port() == server_port.load(Ordering::Relaxed) {
                2000
            } else {
                100
            }
        });
    }
    let stack = builder.build()?;
    let listener = stack.bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    server_port.store(addr.port(), Ordering::Relaxed);
    println!(
        "rawtcp echo over the {} datapath: server {addr}\n",
        stack.datapath_name()
    );

    // The server answers each request with 5 bytes per request byte (100 -> 500), and
    // echoes pings byte for byte.
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = read_some(&mut s, &mut buf, 100).await?;
        s.write_all(&vec![b'a'; n * 5]).await?;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).await?;
        }
        s.shutdown().await?;
        std::io::Result::Ok(())
    });

    let mut c = stack.connect(addr).await?;
    c.set_nodelay(true)?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.write_all(&[b'q'; 100]).await?;
    let mut answer = vec![0u8; 500];
    c.read_exact(&mut answer).await?;
    // Let the delayed ACK of the answer go out on its own, as in the textbook exchange.
    tokio::time::sleep(Duration::from_millis(100)).await;

    printing.store(false, Ordering::Relaxed);
    let mut rtts = Vec::new();
    let ping = [b'p'; 64];
    let mut back = [0u8; 64];
    for _ in 0..200 {
        let t = Instant::now();
        c.write_all(&ping).await?;
        c.read_exact(&mut back).await?;
        rtts.push(t.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    printing.store(true, Ordering::Relaxed);
    println!("   (200 64-byte pings, not shown)");

    c.shutdown().await?;
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await?;
    server.await.expect("server task")?;
    tokio::time::sleep(Duration::from_millis(50)).await;

    rtts.sort();
    let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
    let info = c.info()?;
    println!();
    println!(
        "round trips of 64 bytes: min {:?}  median {:?}  avg {:?}  max {:?}  (n={})",
        rtts[0],
        rtts[rtts.len() / 2],
        avg,
        rtts[rtts.len() - 1],
        rtts.len()
    );
    println!(
        "engine: srtt {:?}  rttvar {:?}  rto {:?}  segments sent {}  received {}  retransmissions {}",
        info.srtt.unwrap_or_default(),
        info.rttvar,
        info.rto,
        info.segments_sent,
        info.segments_received,
        info.retransmissions
    );
    Ok(())
}

/// Reads until `want` bytes arrived (or EOF); returns how many.
async fn read_some(
    s: &mut rawtcp::TcpStream,
    buf: &mut [u8],
    want: usize,
) -> std::io::Result<usize> {
    let mut got = 0;
    while got < want {
        let n = s.read(&mut buf[got..want]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}
