//! A task about to wait does not ask a datapath whose last `Pending` still holds
//! (`Capabilities::pending_holds`, `RxWake::arm`): in a 64-byte ping-pong over UDP on
//! loopback, the datapath is polled markedly less often per round trip than when every
//! waiting task asks, and every answer still arrives. Nor is a datapath asked again after
//! a receive that said it found every source empty (`Batch::set_drained`).

#[macro_use]
mod forwarding;

use rawtcp::datapath::udp::UdpDatapath;
use rawtcp::datapath::{Batch, Capabilities, Datapath};
use rawtcp::Stack;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The UDP datapath, counting calls of `poll_recv`, saying `holds` of its `Pending`, and
/// hiding that a receive drained it unless `drains`.
struct Counting {
    inner: UdpDatapath,
    polls: Arc<AtomicU64>,
    holds: bool,
    drains: bool,
}

impl Datapath for Counting {
    fn name(&self) -> &'static str {
        "counting udp"
    }
    pass_on_addresses!();
    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.poll_recv(cx, batch);
        if !self.drains {
            batch.take_drained();
        }
        r
    }
    fn send(&self, batch: &Batch) -> io::Result<usize> {
        self.inner.send(batch)
    }
    fn verify_checksums(&self) -> bool {
        self.inner.verify_checksums()
    }
    fn capabilities(&self) -> Capabilities {
        let mut c = self.inner.capabilities();
        c.pending_holds = self.holds;
        c.shards = false;
        c
    }
}

const PING: usize = 64;
const ROUND_TRIPS: u64 = 2_000;

/// Polls of the datapath per round trip of a ping-pong between two connections of one
/// stack on this runtime, after a warm-up.
async fn polls_per_round_trip(holds: bool, drains: bool) -> f64 {
    let polls = Arc::new(AtomicU64::new(0));
    let dp = Counting {
        inner: UdpDatapath::new().expect("udp datapath"),
        polls: polls.clone(),
        holds,
        drains,
    };
    let stack = Stack::builder()
        .datapath(dp)
        .shards(1)
        .build()
        .expect("stack");
    let listener = stack.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut b = [0u8; PING];
        while s.read_exact(&mut b).await.is_ok() {
            if s.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let mut c = stack.connect(addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let run = async {
        for i in 0..100 + ROUND_TRIPS {
            if i == 100 {
                polls.store(0, Ordering::Relaxed);
            }
            let ping = [i as u8; PING];
            c.write_all(&ping).await.expect("ping");
            let mut pong = [0u8; PING];
            c.read_exact(&mut pong).await.expect("pong");
            assert_eq!(pong, ping, "every answer arrives, intact");
        }
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the ping-pong finishes");
    let per = polls.load(Ordering::Relaxed) as f64 / ROUND_TRIPS as f64;
    drop(c);
    let _ = server.await;
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_do_not_ask_a_datapath_whose_pending_holds() {
    let skipping = polls_per_round_trip(true, true).await;
    let asking = polls_per_round_trip(false, true).await;
    println!("datapath polls per round trip: {skipping:.2} trusting its Pending, {asking:.2} asking every time");
    assert!(
        skipping < asking * 0.8,
        "polls per round trip: {skipping:.2} trusting the Pending, {asking:.2} asking each time"
    );
}

/// After a receive that found every socket empty, the stack does not ask again just to hear
/// `Pending`: about one poll a packet instead of two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_datapath_is_not_asked_again() {
    let told = polls_per_round_trip(true, true).await;
    let hidden = polls_per_round_trip(true, false).await;
    println!("datapath polls per round trip: {told:.2} told it was drained, {hidden:.2} not told");
    assert!(
        told < hidden * 0.8,
        "polls per round trip: {told:.2} told it was drained, {hidden:.2} not told"
    );
}
