//! Large segments over UDP on loopback leave with their payload attached (headers from the
//! stack's batch, payload from the connection's send buffer, one `sendmsg`;
//! `Capabilities::sends_attached`). A datapath between the stack and UDP that loses some of
//! those packets, or refuses part of a batch as a full socket buffer does, loses no byte:
//! the segments are retransmitted from the send buffer's pieces, and what waited in the
//! backlog is sent whole, in order.

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

/// What the wrapper does to packets with an attached payload.
#[derive(Clone, Copy)]
enum Trouble {
    /// Every `n`th one is lost.
    Lose(u64),
    /// Every other call takes only the first half of its batch.
    Cramp,
}

/// The UDP datapath, with some trouble.
struct Troubled {
    inner: UdpDatapath,
    trouble: Trouble,
    calls: AtomicU64,
    attached: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
}

impl Datapath for Troubled {
    fn name(&self) -> &'static str {
        "troubled udp"
    }
    pass_on_addresses!();
    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        self.inner.poll_recv(cx, batch)
    }
    fn verify_checksums(&self) -> bool {
        self.inner.verify_checksums()
    }
    fn capabilities(&self) -> Capabilities {
        let mut c = self.inner.capabilities();
        c.shards = false;
        c
    }
    fn send(&self, batch: &Batch) -> io::Result<usize> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let take = match self.trouble {
            Trouble::Cramp if call % 2 == 1 => batch.len() / 2,
            _ => batch.len(),
        };
        // Forwarded as they came: attached payloads stay attached.
        let mut part = Batch::new(batch.len().max(1), batch.slot_size());
        for i in 0..take {
            let attached = batch.attached(i);
            if !attached[0].is_empty() {
                let n = self.attached.fetch_add(1, Ordering::Relaxed);
                if let Trouble::Lose(every) = self.trouble {
                    if n % every == every / 2 {
                        self.lost.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            let head = batch.get(i);
            part.next_slot().unwrap()[..head.len()].copy_from_slice(head);
            part.commit_attached(0, head.len(), Box::new(attached.clone()), batch.carrier(i));
        }
        if !part.is_empty() {
            let done = self.inner.send(&part)?;
            assert_eq!(done, part.len(), "loopback had room");
        }
        Ok(take)
    }
}

const LEN: usize = 24 << 20;

fn byte(i: usize) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

/// `LEN` bytes from a stack on the troubled datapath to a plain one; returns how many
/// packets went with an attached payload and how many of those were lost.
async fn transfer(trouble: Trouble) -> (u64, u64, u64) {
    let attached = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let sender = Stack::builder()
        .datapath(Troubled {
            inner: UdpDatapath::new().expect("udp datapath"),
            trouble,
            calls: AtomicU64::new(0),
            attached: attached.clone(),
            lost: lost.clone(),
        })
        .shards(1)
        .build()
        .expect("stack");
    let receiver = Stack::builder()
        .datapath(UdpDatapath::new().expect("udp datapath"))
        .shards(1)
        .build()
        .expect("stack");
    let listener = receiver.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 100_003];
        let mut at = 0;
        loop {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                return at;
            }
            for (k, &b) in buf[..n].iter().enumerate() {
                assert_eq!(b, byte(at + k), "byte {} arrives intact", at + k);
            }
            at += n;
        }
    });
    let mut c = sender.connect(addr).await.expect("connect");
    let data: Vec<u8> = (0..LEN).map(byte).collect();
    let run = async {
        // Writes of odd sizes, so that segments start anywhere in the send buffer's chunks.
        for piece in data.chunks(77_777) {
            c.write_all(piece).await.expect("write");
        }
        c.shutdown().await.expect("shutdown");
        reader.await.expect("reader")
    };
    let got = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the transfer finishes");
    assert_eq!(got, LEN);
    let retransmitted = c.info().expect("info").retransmissions;
    (
        attached.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
        retransmitted,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_segments_lost_are_sent_again_intact() {
    let (attached, lost, retransmitted) = transfer(Trouble::Lose(9)).await;
    eprintln!("attached {attached}, lost {lost}, retransmissions {retransmitted}");
    assert!(attached > 100, "large segments went attached: {attached}");
    assert!(lost > 0 && retransmitted >= lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_segments_refused_wait_and_arrive_in_order() {
    let (attached, _, _) = transfer(Trouble::Cramp).await;
    assert!(attached > 100, "large segments went attached: {attached}");
}
