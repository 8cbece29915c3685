//! The live connection table, printed like `ss -tin`: `Stack::connections()`.
//!
//! ```text
//! cargo run --example ss                 # one table
//! cargo run --example ss -- --watch 5    # five tables, a second apart, while data moves
//! ```
//!
//! It builds a stack (the datapath `RAWTCP_DATAPATH` names, UDP on loopback by default), a
//! listener, and connections in several states: one accepted and idle, one carrying a
//! transfer the client reads slowly (so the server's Send-Q fills), one waiting in the
//! listener's accept queue, and one the client closed (TIME-WAIT on its side). Then it
//! prints what `Stack::connections()` returns.

use rawtcp::Stack;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut watch = 1u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--watch" => {
                watch = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| (1..=3600).contains(n))
                    .ok_or_else(|| std::io::Error::other("--watch needs a count, 1..=3600"))?;
            }
            _ => {
                eprintln!("usage: ss [--watch N]");
                std::process::exit(2);
            }
        }
    }

    let stack = Stack::builder().build()?;
    let listener = stack.bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    // Accepted and idle.
    let _idle = stack.connect(addr).await?;
    let (_idle_server, _) = listener.accept().await?;

    // A transfer the client reads slowly: the server's send buffer stays full.
    let mut slow = stack.connect(addr).await?;
    let (mut busy_server, _) = listener.accept().await?;
    tokio::spawn(async move {
        let chunk = vec![7u8; 1 << 20];
        // Bounded: 64 MiB at most.
        for _ in 0..64 {
            if busy_server.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded by the 64 MiB the server sends.
        while let Ok(n) = slow.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    // Closed by the client: it waits in TIME-WAIT.
    let mut closed = stack.connect(addr).await?;
    let (mut closed_server, _) = listener.accept().await?;
    closed.shutdown().await?;
    let mut rest = Vec::new();
    closed_server.read_to_end(&mut rest).await?;
    closed_server.shutdown().await?;
    drop(closed_server);
    closed.read_to_end(&mut rest).await?;
    drop(closed);

    // Connected, not yet accepted: it sits in the listener's accept queue.
    let _pending = stack.connect(addr).await?;

    for i in 0..watch {
        tokio::time::sleep(Duration::from_millis(if i == 0 { 300 } else { 1000 })).await;
        if i > 0 {
            println!();
        }
        print!("{}", stack.connections());
    }
    Ok(())
}
