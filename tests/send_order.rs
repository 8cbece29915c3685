//! The order of sends under contention: many connections of one stack writing at once,
//! each write sent by its own task (an idle connection's write is sent inline), so that a
//! task often finds another in the middle of a send and hands its segments over instead of
//! waiting (`StackStats::sends_handed_over`). Every message arrives, intact and in order,
//! on every connection.

use rawtcp::datapath::udp::UdpDatapath;
use rawtcp::Stack;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 8;
const MESSAGES: usize = 400;
const SIZE: usize = 100;

fn message(conn: usize, i: usize) -> [u8; SIZE] {
    let mut m = [0u8; SIZE];
    for (k, b) in m.iter_mut().enumerate() {
        *b = (conn * 31 + i * 7 + k) as u8;
    }
    m[..2].copy_from_slice(&(i as u16).to_be_bytes());
    m
}

/// One round: every connection sends `MESSAGES` messages, each echoed before the next,
/// and a last burst of them all at once; everything is checked.
async fn round(stack: &Stack) {
    let listener = stack.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let mut echoes = Vec::new();
        for _ in 0..CONNECTIONS {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            echoes.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.expect("server read");
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.expect("server write");
                }
            }));
        }
        for e in echoes {
            e.await.expect("echo");
        }
    });
    let mut clients = Vec::new();
    for conn in 0..CONNECTIONS {
        let mut c = stack.connect(addr).await.expect("connect");
        c.set_nodelay(true).expect("nodelay");
        clients.push(tokio::spawn(async move {
            let mut back = [0u8; SIZE];
            for i in 0..MESSAGES {
                c.write_all(&message(conn, i)).await.expect("write");
                c.read_exact(&mut back).await.expect("read");
                assert_eq!(back, message(conn, i), "connection {conn}, message {i}");
            }
            // A burst: segments queue behind each other on the way out and back.
            let burst: Vec<u8> = (0..MESSAGES).flat_map(|i| message(conn, i)).collect();
            let (mut r, mut w) = c.into_split();
            let send = async move {
                for m in burst.chunks(SIZE * 3) {
                    w.write_all(m).await.expect("burst write");
                }
                w.shutdown().await.expect("shutdown");
            };
            let receive = async move {
                let mut all = Vec::new();
                r.read_to_end(&mut all).await.expect("burst read");
                all
            };
            let ((), all) = tokio::join!(send, receive);
            assert_eq!(all.len(), MESSAGES * SIZE);
            for (i, m) in all.chunks(SIZE).enumerate() {
                assert_eq!(m, message(conn, i), "connection {conn}, burst message {i}");
            }
        }));
    }
    for c in clients {
        c.await.expect("client");
    }
    server.await.expect("server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contending_writers_hand_over_and_every_message_arrives_in_order() {
    let stack = Stack::builder()
        .datapath(UdpDatapath::new().expect("udp datapath"))
        .shards(1)
        .build()
        .expect("stack");
    // Hand-overs need two tasks to meet in a send; a few rounds make that all but certain.
    let mut rounds = 0;
    while rounds < 10 {
        tokio::time::timeout(Duration::from_secs(60), round(&stack))
            .await
            .expect("the round finishes");
        rounds += 1;
        if stack.stats().sends_handed_over > 0 && rounds >= 2 {
            break;
        }
    }
    let stats = stack.stats();
    eprintln!(
        "{rounds} rounds: {} inline transmits, {} handed over",
        stats.inline_transmits, stats.sends_handed_over
    );
    assert!(
        stats.sends_handed_over > 0,
        "no task ever found another sending"
    );
}
