//! Busy polling (`StackBuilder::busy_poll`): a reactor on a thread of its own keeps asking
//! the datapath for a while after its last work instead of sleeping until the kernel wakes
//! it, and finds the packets that arrive meanwhile; with the window at zero it never does.

use rawtcp::Stack;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A stack of one shard on the datapath `RAWTCP_DATAPATH` names, its reactor on a thread
/// of its own with busy polling `window`.
fn polling_stack(window: Duration) -> Stack {
    Stack::builder()
        .dedicated_thread(true)
        .shards(1)
        .busy_poll(window)
        .build()
        .expect("stack")
}

/// A 4 MB transfer between two stacks on the datapath `RAWTCP_DATAPATH` names (UDP over
/// loopback by default), each reactor on a
/// thread of its own with busy polling `window`; the bytes arrive intact. Returns what the
/// two stacks' `busy_polled` counters say.
async fn transfer(window: Duration) -> u64 {
    let (server, client) = (polling_stack(window), polling_stack(window));
    let listener = server.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    const LEN: usize = 4 << 20;
    let sender = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let mut c = client.connect(addr).await.unwrap();
    let mut got = Vec::with_capacity(LEN);
    c.read_to_end(&mut got).await.unwrap();
    sender.await.unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    server.stats().busy_polled + client.stats().busy_polled
}

/// Run from a current-thread runtime, whose tasks leave the sockets' readiness with the
/// reactor (see `no_polling_while_tasks_hear_arrivals` for tasks that take it) and leave
/// a busy connection's sends to the reactor too: the reactor has the work, and keeps asking.
#[tokio::test]
async fn a_polling_reactor_finds_packets_without_sleeping() {
    // A window far longer than any gap between this transfer's packets.
    let polled = tokio::time::timeout(Duration::from_secs(60), transfer(Duration::from_millis(20)))
        .await
        .expect("transfer within a minute");
    eprintln!("{polled} polling rounds found packets");
    assert!(polled > 0, "no polling round found a packet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_never_polls() {
    let polled = tokio::time::timeout(Duration::from_secs(60), transfer(Duration::ZERO))
        .await
        .expect("transfer within a minute");
    assert_eq!(polled, 0);
}

/// With both ends in tasks of a multi-threaded runtime, which take the UDP sockets'
/// readiness to that runtime and hear of arrivals there, the reactors do not busy poll (a
/// polling thread would only take a core from them): once the tasks have received, no
/// polling round finds a packet of a 4 MB transfer (without the rule, 20–27 rounds did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_polling_while_tasks_hear_arrivals() {
    if std::env::var("RAWTCP_DATAPATH").is_ok_and(|d| d != "udp") {
        eprintln!("only the UDP datapath's readiness follows tasks: skipped");
        return;
    }
    let window = Duration::from_millis(20);
    let (server, client) = (polling_stack(window), polling_stack(window));
    let listener = server.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    const LEN: usize = 4 << 20;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let sender = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        ready_rx.await.unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let polled = |stacks: &[&Stack]| stacks.iter().map(|s| s.stats().busy_polled).sum::<u64>();
    let (srv, cli) = (server.clone(), client.clone());
    let receiver = tokio::spawn(async move {
        let mut c = cli.connect(addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut hello = [0u8; 5];
        c.read_exact(&mut hello).await.unwrap();
        let before = polled(&[&srv, &cli]);
        ready_tx.send(()).unwrap();
        let mut got = Vec::with_capacity(LEN);
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), LEN);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        polled(&[&srv, &cli]) - before
    });
    let polled = tokio::time::timeout(Duration::from_secs(60), receiver)
        .await
        .expect("transfer within a minute")
        .unwrap();
    sender.await.unwrap();
    eprintln!("{polled} polling rounds found packets during the transfer");
    assert!(polled <= 2, "{polled} polling rounds found packets");
    drop((server, client));
}
