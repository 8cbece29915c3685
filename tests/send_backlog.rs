//! A datapath whose send queue fills loses nothing (issue 9): the packets it has no room
//! for are kept and offered again, in order, before anything newer. The client stack runs
//! on a datapath that, every other call, takes only the first half of what it is given, as
//! a socket whose buffer fills part-way through a batch; 4 MB must arrive intact without a
//! single retransmission, and the stack must say how many segments waited.

#[macro_use]
mod forwarding;

use rawtcp::datapath::sim::{LinkConfig, SimDatapath, SimNetwork};
use rawtcp::datapath::{Batch, Datapath};
use rawtcp::Stack;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The simulated host, with a send queue that has room for half a batch every other call.
struct Cramped {
    inner: SimDatapath,
    calls: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl Datapath for Cramped {
    fn name(&self) -> &'static str {
        "cramped"
    }
    pass_on_addresses!();
    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        self.inner.poll_recv(cx, batch)
    }
    fn send(&self, batch: &Batch) -> io::Result<usize> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
            return self.inner.send(batch);
        }
        let room = batch.len() / 2;
        let mut part = Batch::new(room.max(1), batch.slot_size());
        for i in 0..room {
            let slot = part.next_slot().unwrap();
            let p = batch.get(i);
            slot[..p.len()].copy_from_slice(p);
            part.commit_via(0, p.len(), batch.carrier(i));
        }
        if room > 0 {
            self.inner.send(&part)?;
        }
        self.refused
            .fetch_add((batch.len() - room) as u64, Ordering::Relaxed);
        Ok(room)
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_send_queue_delays_segments_and_loses_none() {
    let (server_ip, client_ip): (IpAddr, IpAddr) =
        ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    let net = SimNetwork::new(5);
    net.set_link(
        server_ip,
        client_ip,
        LinkConfig::default().with_latency(Duration::from_millis(5)),
    );
    let refused = Arc::new(AtomicU64::new(0));
    let server = Stack::builder()
        .datapath(net.host(server_ip).unwrap())
        .build()
        .unwrap();
    let client = Stack::builder()
        .datapath(Cramped {
            inner: net.host(client_ip).unwrap(),
            calls: Arc::default(),
            refused: refused.clone(),
        })
        .build()
        .unwrap();
    let listener = server.bind(SocketAddr::new(server_ip, 80)).await.unwrap();
    const TOTAL: usize = 4_000_000;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::with_capacity(TOTAL);
        s.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut c = client
        .connect(SocketAddr::new(server_ip, 80))
        .await
        .unwrap();
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    c.write_all(&data).await.unwrap();
    let info = c.info().unwrap();
    c.shutdown().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the transfer ends")
        .unwrap();
    assert!(got == data, "every byte, in order");
    let stats = client.stats();
    assert!(refused.load(Ordering::Relaxed) > 0);
    assert!(
        stats.send_deferred >= refused.load(Ordering::Relaxed),
        "every packet refused was kept: {stats:?}"
    );
    assert_eq!(stats.send_dropped, 0);
    let info_end = c.info().unwrap();
    assert_eq!(
        info_end.retransmissions, 0,
        "nothing was lost, so nothing was sent twice (before the end of writing: {})",
        info.retransmissions
    );
}
