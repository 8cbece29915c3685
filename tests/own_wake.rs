//! A task that receives for the stack while it reads (see `stack::rx`) is not woken by data
//! it delivered to its own read, which it polls again itself: a ping-pong's reader is polled
//! about once a round trip, not twice. (That a wake another wait of the same task needs is
//! never left out is tested with the connection's table entry, `stack::table`.)

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

/// A stack on this runtime over UDP on loopback, a connection to one of its listeners,
/// and the accepted end, both with Nagle off.
async fn pair() -> (Stack, TcpStream, TcpStream) {
    let stack = runtime_common::udp_stack_with(Stack::builder().shards(1));
    let listener = stack.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (c, a) = tokio::join!(stack.connect(addr), listener.accept());
    let (c, (a, _)) = (c.expect("connect"), a.expect("accept"));
    c.set_nodelay(true).expect("nodelay");
    a.set_nodelay(true).expect("nodelay");
    (stack, c, a)
}

const ROUND_TRIPS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_is_not_woken_by_what_it_delivered_itself() {
    let (stack, mut c, mut a) = pair().await;
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
    let per = polls.load(Ordering::Relaxed) as f64 / ROUND_TRIPS as f64;
    println!("client polls per round trip: {per:.2}; receives by waiting tasks: {inline}");
    // Woken by its own delivery, the client was polled twice a round trip.
    assert!(
        per < 1.5,
        "client polled {per:.2} times a round trip ({inline} receives by waiting tasks)"
    );
}
