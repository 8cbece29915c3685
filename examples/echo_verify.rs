//! Sends N bytes to an echo server over rawtcp while reading the echo back, and checks every
//! byte. Exits non-zero on any difference.
//!
//! ```text
//! cargo run --example echo_verify -- 127.0.0.1:7000 10000000
//! socat TCP-LISTEN:7000,fork,reuseaddr EXEC:cat &   # a kernel echo server to check against
//! ```

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let total: u64 = args
        .next()
        .map(|n| n.parse().expect("BYTES must be a number"))
        .unwrap_or(10_000_000);
    let start = std::time::Instant::now();
    let stream = rawtcp::TcpStream::connect(&addr).await?;
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        while sent < total {
            let n = (total - sent).min(buf.len() as u64) as usize;
            for (k, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(sent + k as u64);
            }
            w.write_all(&buf[..n]).await?;
            sent += n as u64;
        }
        w.shutdown().await?;
        std::io::Result::Ok(w)
    });
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            if *b != pattern(got + k as u64) {
                eprintln!("MISMATCH at byte {}", got + k as u64);
                std::process::exit(1);
            }
        }
        got += n as u64;
    }
    let _w = writer.await.expect("writer task")?;
    if got != total {
        eprintln!("SHORT: sent {total}, echoed {got}");
        std::process::exit(1);
    }
    println!(
        "OK {total} bytes echoed byte-exact in {:.3} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
