//! Partial checksums between two rawtcp endpoints over UDP on loopback
//! (`Config::partial_checksums`, `TcpOptions::partial_checksums`).
//!
//! Where both ends' datapaths vouch for the carrier (a UDP datagram from loopback), both SYNs
//! carry the offer and every segment leaves with the pseudo-header sum only: the payload is
//! never summed, by the sender or by the receiver, and nothing is lost or changed. Where
//! one end does not vouch (it verifies everything, like an older build would), neither
//! side leaves a checksum partial. With a tap, captures are shown full checksums.

#[macro_use]
mod forwarding;

use rawtcp::datapath::udp::UdpDatapath;
use rawtcp::datapath::{Batch, Capabilities, Datapath};
use rawtcp::wire::{complete_partial_checksum, parse_tcp_packet};
use rawtcp::{Direction, Stack};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Segments with a payload that one stack sent, by the state of their checksum.
#[derive(Default)]
struct Seen {
    full: AtomicU64,
    partial: AtomicU64,
}

/// The UDP datapath, vouching for loopback carriers or not, that looks at every segment
/// with a payload it sends (headers and attached payload put together).
struct Watched {
    inner: UdpDatapath,
    vouch: bool,
    seen: Arc<Seen>,
}

impl Datapath for Watched {
    fn name(&self) -> &'static str {
        "watched udp"
    }
    pass_on_addresses!();
    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        self.inner.poll_recv(cx, batch)
    }
    fn carrier_verified(&self, carrier: SocketAddr) -> bool {
        self.vouch && self.inner.carrier_verified(carrier)
    }
    fn capabilities(&self) -> Capabilities {
        let mut c = self.inner.capabilities();
        c.shards = false;
        c.loopback_carriers_verified = self.vouch;
        c
    }
    fn send(&self, batch: &Batch) -> io::Result<usize> {
        for i in 0..batch.len() {
            let mut packet = batch.get(i).to_vec();
            for piece in batch.attached(i).iter() {
                packet.extend_from_slice(piece);
            }
            let (_, _, payload) = parse_tcp_packet(&packet, false).expect("a TCP packet");
            if payload.is_empty() {
                continue;
            }
            if parse_tcp_packet(&packet, true).is_ok() {
                self.seen.full.fetch_add(1, Ordering::Relaxed);
            } else {
                // Not full: it must be exactly partial, and complete to a valid packet.
                assert!(
                    complete_partial_checksum(&mut packet),
                    "checksum neither full nor partial"
                );
                assert!(parse_tcp_packet(&packet, true).is_ok());
                self.seen.partial.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.inner.send(batch)
    }
}

fn stack(vouch: bool, seen: &Arc<Seen>) -> Stack {
    Stack::builder()
        .datapath(Watched {
            inner: UdpDatapath::new().expect("udp datapath"),
            vouch,
            seen: seen.clone(),
        })
        .shards(1)
        .build()
        .expect("stack")
}

const LEN: usize = 8 << 20;

fn byte(i: usize) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

/// `LEN` bytes each way between a client on `a` and a server on `b`, checked byte for byte;
/// returns whether each end says partial checksums are in use (client, server).
async fn exchange(a: &Stack, b: &Stack) -> (bool, bool) {
    let listener = b.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        let partial = s.info().expect("info").partial_checksums;
        let (mut r, mut w) = s.into_split();
        let echo = async {
            let mut buf = vec![0u8; 65_537];
            loop {
                let n = r.read(&mut buf).await.expect("server read");
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n]).await.expect("server write");
            }
            w.shutdown().await.expect("server shutdown");
        };
        echo.await;
        partial
    });
    let c = a.connect(addr).await.expect("connect");
    let client_partial = c.info().expect("info").partial_checksums;
    let (mut r, mut w) = c.into_split();
    let data: Vec<u8> = (0..LEN).map(byte).collect();
    let run = async {
        let send = async {
            // Odd sizes, so segments start anywhere in the send buffer's chunks.
            for piece in data.chunks(70_001) {
                w.write_all(piece).await.expect("write");
            }
            w.shutdown().await.expect("shutdown");
        };
        let receive = async {
            let mut buf = vec![0u8; 100_003];
            let mut at = 0;
            loop {
                let n = r.read(&mut buf).await.expect("read");
                if n == 0 {
                    return at;
                }
                for (k, &b) in buf[..n].iter().enumerate() {
                    assert_eq!(b, byte(at + k), "byte {} comes back intact", at + k);
                }
                at += n;
            }
        };
        let ((), got) = tokio::join!(send, receive);
        got
    };
    let got = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the exchange finishes");
    assert_eq!(got, LEN);
    let server_partial = server.await.expect("server");
    (client_partial, server_partial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_vouching_leave_every_payload_unsummed_and_lose_nothing() {
    let (sa, sb) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let (a, b) = (stack(true, &sa), stack(true, &sb));
    assert_eq!(exchange(&a, &b).await, (true, true));
    for (who, seen) in [("client", &sa), ("server", &sb)] {
        let (full, partial) = (
            seen.full.load(Ordering::Relaxed),
            seen.partial.load(Ordering::Relaxed),
        );
        eprintln!("{who}: {partial} segments with partial checksums, {full} full");
        assert!(partial > 50, "{who} sent {partial} partial");
        assert_eq!(full, 0, "{who} summed no payload");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_that_verifies_everything_gets_full_checksums_both_ways() {
    for (vouch_a, vouch_b) in [(true, false), (false, true)] {
        let (sa, sb) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let (a, b) = (stack(vouch_a, &sa), stack(vouch_b, &sb));
        assert_eq!(
            exchange(&a, &b).await,
            (false, false),
            "{vouch_a} {vouch_b}"
        );
        for seen in [&sa, &sb] {
            assert_eq!(seen.partial.load(Ordering::Relaxed), 0);
            assert!(seen.full.load(Ordering::Relaxed) > 50);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tapped_stack_shows_full_checksums() {
    let checked = Arc::new(AtomicU64::new(0));
    let counter = checked.clone();
    let tapped = Stack::builder()
        .datapath(UdpDatapath::new().expect("udp datapath"))
        .shards(1)
        .tap(move |ev| {
            if ev.direction == Direction::Out && ev.payload_len > 0 {
                assert!(parse_tcp_packet(ev.packet, true).is_ok(), "a full checksum");
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .expect("stack");
    let plain = Stack::builder()
        .datapath(UdpDatapath::new().expect("udp datapath"))
        .shards(1)
        .build()
        .expect("stack");
    assert_eq!(exchange(&tapped, &plain).await, (false, false));
    assert!(checked.load(Ordering::Relaxed) > 50);
}

/// A SYN with a wrong checksum, sent from a plain UDP socket on loopback to a listener: a
/// stack that trusts loopback carriers answers it (the checksum is not looked at); one
/// built with `partial_checksums(false)` verifies it, counts it malformed and says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turned_off_every_arrival_is_verified() {
    use rawtcp::wire::{emit_tcp_packet, TcpFlags, TcpRepr};
    for trust in [true, false] {
        let stack = Stack::builder()
            .datapath(UdpDatapath::new().expect("udp datapath"))
            .shards(1)
            .partial_checksums(trust)
            .build()
            .expect("stack");
        let listener = stack.bind("127.0.0.1:0").await.expect("bind");
        let to = listener.local_addr().expect("addr");
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        let from = udp.local_addr().expect("udp addr");
        let syn = TcpRepr {
            src_port: from.port(),
            dst_port: to.port(),
            seq: 1000,
            flags: TcpFlags::SYN,
            window: 65_535,
            ..TcpRepr::default()
        };
        let mut packet = [0u8; 64];
        let n = emit_tcp_packet(from.ip(), to.ip(), 64, &syn, &[], &mut packet).expect("emit");
        packet[20 + 16] ^= 0x5a; // the TCP checksum, wrong
        let before = stack.stats().malformed;
        udp.send_to(&packet[..n], to).await.expect("send");
        let mut reply = [0u8; 1500];
        let answered = tokio::time::timeout(Duration::from_millis(500), udp.recv_from(&mut reply))
            .await
            .is_ok();
        assert_eq!(answered, trust, "trusting loopback: {trust}");
        if !trust {
            assert_eq!(stack.stats().malformed, before + 1);
        }
    }
}
