//! A task that receives for the stack while it reads (see `stack::rx`) is not woken by data
//! it delivered to its own read, which it polls again itself: a ping-pong's reader is polled
//! about once a round trip, not twice. (That a wake another wait of the same task needs is
//! never left out is tested with the connection's table entry, `stack::table`.)
//!
//! The client and the server live on two stacks, so each stack's arrivals are all for its
//! one reading task. On one stack, which of the two waiting tasks is handed an arrival is a
//! matter of the order they first queued in (see the README's "The older failure of
//! `own_wake`"): handed the packets meant for the other side, the client is polled a
//! second time a round trip for a reason other than its own delivery, and the count said
//! nothing about what this test is for (it failed about 1 run in 40 that way).

mod runtime_common;

use rawtcp::{Stack, TcpStream};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts the polls of the future it wraps.
struct Polls<F> {
    inner: Pin<Box<F>>,
    count: Arc<AtomicU64>,
}

impl<F: Future> Future for Polls<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

/// Two stacks on this runtime over UDP on loopback, each with one shard: a connection
/// from the first (the client's) to a listener of the second, and the accepted end, both
/// with Nagle off.
async fn pair() -> (Stack, Stack, TcpStream, TcpStream) {
    let client = runtime_common::udp_stack_with(Stack::builder().shards(1));
    let server = runtime_common::udp_stack_with(Stack::builder().shards(1));
    let listener = server.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (c, a) = tokio::join!(client.connect(addr), listener.accept());
    let (c, (a, _)) = (c.expect("connect"), a.expect("accept"));
    c.set_nodelay(true).expect("nodelay");
    a.set_nodelay(true).expect("nodelay");
    (client, server, c, a)
}

const ROUND_TRIPS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_is_not_woken_by_what_it_delivered_itself() {
    let (stack, _server_stack, mut c, mut a) = pair().await;
    let server = tokio::spawn(async move {
        let mut b = [0u8; 64];
        while a.read_exact(&mut b).await.is_ok() {
            if a.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let polls = Arc::new(AtomicU64::new(0));
    let client = Polls {
        inner: Box::pin(async move {
            let mut b = [7u8; 64];
            for _ in 0..ROUND_TRIPS {
                c.write_all(&b).await.expect("write");
                c.read_exact(&mut b).await.expect("read");
            }
            c
        }),
        count: polls.clone(),
    };
    let c = tokio::time::timeout(Duration::from_secs(60), tokio::spawn(client))
        .await
        .expect("the ping-pong took over a minute")
        .expect("client task");
    drop(c);
    let _ = server.await;
    let inline = stack.stats().inline_receives;
    let polls = polls.load(Ordering::Relaxed);
    println!(
        "client polls per round trip: {:.2}; receives by waiting tasks: {inline}",
        polls as f64 / ROUND_TRIPS as f64
    );
    // Otherwise the reactor delivered, and there was no delivery of its own to be woken by.
    // (Fewer than one a round trip where the answer was in before the client read.)
    assert!(
        inline >= ROUND_TRIPS / 4,
        "the client received for its stack only {inline} times in {ROUND_TRIPS} round trips"
    );
    // Woken by its own delivery, the client was polled once a round trip plus once for
    // each receive of its own: 1.91 a round trip with 1,905 such receives, where it is
    // 1.00 with 2,000.
    assert!(
        polls < ROUND_TRIPS + inline / 2,
        "client polled {polls} times in {ROUND_TRIPS} round trips, with {inline} receives \
         by waiting tasks"
    );
}
