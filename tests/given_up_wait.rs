//! A task whose wait on the stack is given up (its `accept`, `ready` or `connect` future
//! dropped unfinished: an aborted task, a `select!` branch that lost) is marked in the queue
//! of tasks that receive for the stack as no longer waiting (see `stack::rx`), and a
//! hand-over to it wakes the reactor too. Unmarked, the next packets were handed to a task
//! that would never take them up, and waited for the reactor's 10 ms watchdog: the first
//! connection after a benchmark aborted its accept loop took 10.5 ms.

mod runtime_common;

use rawtcp::Stack;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::Interest;
use tokio::sync::Notify;

/// The future it wraps, which tells `polled` once polled (and so queued to receive, if it
/// waits on the stack).
struct Polled<F> {
    inner: Pin<Box<F>>,
    polled: Arc<Notify>,
}

impl<F: Future> Future for Polled<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let r = self.inner.as_mut().poll(cx);
        self.polled.notify_one();
        r
    }
}

/// Spawns `f`, and returns once it has been polled.
async fn spawn_polled<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let polled = Arc::new(Notify::new());
    let task = tokio::spawn(Polled {
        inner: Box::pin(f),
        polled: polled.clone(),
    });
    tokio::time::timeout(Duration::from_secs(5), polled.notified())
        .await
        .expect("the task was not polled within 5 s");
    task
}

/// A stack on this runtime over UDP on loopback, one shard.
fn stack() -> Stack {
    runtime_common::udp_stack_with(Stack::builder().shards(1))
}

const ROUNDS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_accept_is_not_handed_the_next_packets() {
    let stack = stack();
    let listener = stack.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = Arc::new(listener);
    // A first connection: the stack is in a busy exchange, its reactor watching, and a
    // hand-over to a task that asked a moment ago wakes that task alone.
    let (c, a) = tokio::join!(stack.connect(addr), listener.accept());
    drop((c.expect("connect"), a.expect("accept")));
    for round in 0..ROUNDS {
        let l = listener.clone();
        // It asks to receive, and queues; then it is aborted, well within the millisecond
        // in which it still counts as waiting.
        let waiting = spawn_polled(async move { l.accept().await.map(|_| ()) }).await;
        waiting.abort();
        assert!(
            waiting.await.expect_err("aborted").is_cancelled(),
            "round {round}: the accept was not aborted"
        );
        // The SYN-ACK comes within the millisecond in which the aborted task still
        // counts as waiting.
        let c = tokio::time::timeout(Duration::from_secs(5), stack.connect(addr))
            .await
            .expect("connect took over 5 s")
            .expect("connect");
        let (a, _) = listener.accept().await.expect("accept");
        drop((c, a));
    }
    let rescues = stack.stats().watchdog_rescues;
    assert_eq!(
        rescues, 0,
        "packets waited for the watchdog {rescues} times in {ROUNDS} rounds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_dropped_by_select_is_not_handed_the_next_packets() {
    let stack = stack();
    let listener = stack.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (c, a) = tokio::join!(stack.connect(addr), listener.accept());
    let (c, (a, _)) = (c.expect("connect"), a.expect("accept"));
    a.set_nodelay(true).expect("nodelay");
    let c = Arc::new(c);
    for round in 0..ROUNDS {
        let cc = c.clone();
        // A task waits for `c` to become readable, and gives the wait up when told.
        let stop = Arc::new(Notify::new());
        let told = stop.clone();
        let gave_up = spawn_polled(async move {
            tokio::select! {
                biased;
                () = told.notified() => Ok(false),
                r = cc.ready(Interest::READABLE) => r.map(|_| true),
            }
        })
        .await;
        stop.notify_one();
        assert!(
            !gave_up.await.expect("task").expect("ready"),
            "round {round}: readable with nothing sent"
        );
        // The task has ended. Another reads two bytes, sent one at a time. The first
        // arrival goes to whichever task has waited longest (the last round's reader, done,
        // and the reactor with it); then the reader waits again, queued behind the task
        // that gave up: the second must go to the reader.
        let cc = c.clone();
        let (read_one, mut got_one) = tokio::sync::mpsc::unbounded_channel();
        let reader = spawn_polled(async move {
            let mut got = 0;
            while got < 2 {
                cc.ready(Interest::READABLE).await?;
                let mut b = [0u8; 4];
                match cc.try_read(&mut b) {
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
                let _ = read_one.send(());
            }
            Ok(got)
        })
        .await;
        for _ in 0..2 {
            a.try_write(b"x").expect("write");
            tokio::time::timeout(Duration::from_secs(5), got_one.recv())
                .await
                .expect("a byte took over 5 s to be read");
        }
        assert_eq!(reader.await.expect("reader task").expect("read"), 2);
    }
    let rescues = stack.stats().watchdog_rescues;
    assert_eq!(
        rescues, 0,
        "packets waited for the watchdog {rescues} times in {ROUNDS} rounds"
    );
}
