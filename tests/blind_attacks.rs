//! RFC 5961 blind attacks against a rawtcp server on the real wire. The server runs on the
//! raw-socket datapath on loopback; a kernel TCP client (tokio) connects to it; an attacker
//! forges segments with a raw IPv4 socket (`IP_HDRINCL`, packets built by
//! `rawtcp::wire::emit_tcp_packet`) that spoof the kernel client's address and port.
//!
//! This file owns the wire-level RFC 5961 tests: RSTs at every position around the receive
//! window (§3), SYNs on the established connection (§4), data and ACKs outside the window
//! (§5), a forged huge timestamp, and the challenge ACKs' rate limit (§7). The attacker
//! aims with what the stack shows: the tap's record of the segments the server sent (its
//! SND.NXT, RCV.NXT) and `Stack::connections()` (its receive window, challenge-ACK counters).
//! After each attack the connection must still carry an echo exactly; where the RFC asks
//! for a challenge ACK, one is seen leaving; only a RST exactly at RCV.NXT resets.
//!
//! Only 127.0.0.1 is used. The tests need root (raw sockets, nftables) and `nft`; without
//! them each says so loudly and skips — unless `CI=true`, where that is a failure.

mod privileged;

use rawtcp::datapath::raw::RawDatapath;
use rawtcp::wire::{emit_tcp_packet, TcpFlags, TcpOptions, TcpRepr};
use rawtcp::{Direction, Stack};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One test at a time: each owns a stack, an nftables table and a connection, and counts
/// the challenge ACKs it draws.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where a forgery aims: its sequence number's offset from RCV.NXT, given the window.
type Aim = fn(u32) -> u32;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// RFC 5961 §7 as the engine applies it: one challenge ACK per 500 ms per connection.
const CHALLENGE_INTERVAL: Duration = Duration::from_millis(600);

/// Whether this test can run; panics in CI when it cannot.
fn runnable(test: &str) -> bool {
    privileged::runnable("blind-attack test", test, &["nft"])
}

/// One segment the server sent or received, as the tap saw it.
#[derive(Debug, Clone)]
struct Seen {
    dir: Direction,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    len: usize,
    /// The TSval, if the segment carried timestamps (RFC 7323).
    tsval: Option<u32>,
}

/// A rawtcp server on the raw datapath, a kernel client connected to it, an echo task on
/// the server's side and a raw socket to forge segments with.
struct Rig {
    stack: Stack,
    client: tokio::net::TcpStream,
    /// The kernel client's address: every forgery claims to come from it.
    client_addr: SocketAddr,
    server_addr: SocketAddr,
    /// Segments between the two, in order, as the server's tap saw them.
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The echo task's end: the error that ended the server's side, if any.
    echo: tokio::task::JoinHandle<std::io::Result<()>>,
    raw: Socket,
    rounds: u32,
}

impl Rig {
    async fn new() -> Rig {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let tap_seen = seen.clone();
        let port_of_server = Arc::new(std::sync::atomic::AtomicU16::new(0));
        let tap_port = port_of_server.clone();
        let stack = Stack::builder()
            .datapath(RawDatapath::new().expect("raw datapath (root, nft)"))
            .tap(move |e| {
                let port = tap_port.load(std::sync::atomic::Ordering::Relaxed);
                let ours = match e.direction {
                    Direction::In => e.dst.port() == port,
                    Direction::Out => e.src.port() == port,
                };
                if ours {
                    tap_seen.lock().unwrap().push(Seen {
                        dir: e.direction,
                        seq: e.tcp.seq,
                        ack: e.tcp.ack,
                        flags: e.tcp.flags,
                        window: e.tcp.window,
                        len: e.payload_len,
                        tsval: e.tcp.options.timestamps.map(|t| t.0),
                    });
                }
            })
            .build()
            .expect("stack");
        let listener = stack.bind((LOOPBACK, 0)).await.expect("bind");
        let server_addr = listener.local_addr().unwrap();
        port_of_server.store(server_addr.port(), std::sync::atomic::Ordering::Relaxed);
        let client = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(server_addr),
        )
        .await
        .expect("connect in time")
        .expect("kernel client connects to the rawtcp server");
        client.set_nodelay(true).unwrap();
        let client_addr = client.local_addr().unwrap();
        let (mut conn, peer) = listener.accept().await.expect("accept");
        assert_eq!(peer, client_addr);
        let echo = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                conn.write_all(&buf[..n]).await?;
            }
        });
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
            .expect("raw IPPROTO_RAW socket");
        raw.set_header_included_v4(true).unwrap();
        let mut rig = Rig {
            stack,
            client,
            client_addr,
            server_addr,
            seen,
            echo,
            raw,
            rounds: 0,
        };
        rig.echo_round().await;
        rig
    }

    /// Writes a fresh pattern through the connection and checks that exactly it comes back.
    async fn echo_round(&mut self) {
        self.rounds += 1;
        let n = 1000 + (self.rounds as usize * 37) % 3000;
        let data: Vec<u8> = (0..n)
            .map(|i| (i as u32).wrapping_mul(31).wrapping_add(self.rounds * 7) as u8)
            .collect();
        let mut back = vec![0u8; n];
        let r = tokio::time::timeout(Duration::from_secs(10), async {
            self.client.write_all(&data).await?;
            self.client.read_exact(&mut back).await
        })
        .await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("echo round {} failed: {e}", self.rounds),
            Err(_) => panic!("echo round {} timed out", self.rounds),
        }
        assert!(back == data, "echo round {} corrupted", self.rounds);
        // The client's ACK of the echo arrives; the server owes nothing after it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// The server's SND.NXT and RCV.NXT, from the last segment it sent (once quiet, that
    /// segment acknowledges everything received), and its receive window from its
    /// connection table entry.
    fn aim(&self) -> (u32, u32, u32) {
        let seen = self.seen.lock().unwrap();
        let last = seen
            .iter()
            .rev()
            .find(|s| s.dir == Direction::Out && s.flags.contains(TcpFlags::ACK))
            .expect("the server sent something");
        let snd_nxt = last.seq.wrapping_add(last.len as u32);
        let rcv_nxt = last.ack;
        let info = self.info();
        let wnd = info.recv_window;
        assert!(
            wnd >= u32::from(last.window),
            "the table's window {wnd} and the last segment's {} disagree",
            last.window
        );
        (snd_nxt, rcv_nxt, wnd)
    }

    fn info(&self) -> rawtcp::TcpInfo {
        let table = self.stack.connections();
        let e = table
            .connections
            .iter()
            .find(|c| c.local == self.server_addr && c.remote == self.client_addr)
            .expect("the connection is in the table");
        e.info.clone()
    }

    fn mark(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Forges a segment from the kernel client to the server.
    fn forge(&self, flags: TcpFlags, seq: u32, ack: u32, payload: &[u8], options: TcpOptions) {
        let tcp = TcpRepr {
            src_port: self.client_addr.port(),
            dst_port: self.server_addr.port(),
            seq,
            ack,
            flags,
            window: 512,
            urgent: 0,
            options,
        };
        let mut buf = vec![0u8; 128 + payload.len()];
        let n = emit_tcp_packet(
            self.client_addr.ip(),
            self.server_addr.ip(),
            64,
            &tcp,
            payload,
            &mut buf,
        )
        .expect("emit");
        let to = SockAddr::from(SocketAddr::new(self.server_addr.ip(), 0));
        self.raw.send_to(&buf[..n], &to).expect("raw send");
    }

    /// What the tap saw since `mark`, after a moment for it to arrive: the forgeries the
    /// server received (`In` with this `seq`) and the pure ACKs it sent.
    async fn after(&self, mark: usize, seq: u32) -> (usize, Vec<Seen>) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let seen = self.seen.lock().unwrap();
        let new = &seen[mark..];
        let arrived = new
            .iter()
            .filter(|s| s.dir == Direction::In && s.seq == seq)
            .count();
        let acks = new
            .iter()
            .filter(|s| s.dir == Direction::Out && s.flags == TcpFlags::ACK && s.len == 0)
            .cloned()
            .collect();
        (arrived, acks)
    }

    /// The connection is alive on the server's side: no error ended its echo task.
    fn assert_alive(&self, what: &str) {
        assert!(
            !self.echo.is_finished(),
            "{what}: the server's connection ended"
        );
        let info = self.info();
        assert_eq!(info.state, rawtcp::proto::State::Established, "{what}");
    }

    /// Sends one forgery, checks it arrived, whether a challenge ACK
    /// `<SEQ=SND.NXT><ACK=RCV.NXT>` left (`challenge`), and that an echo still works.
    #[allow(clippy::too_many_arguments)]
    async fn attack(
        &mut self,
        what: &str,
        flags: TcpFlags,
        seq: u32,
        ack: u32,
        payload: &[u8],
        options: TcpOptions,
        challenge: bool,
    ) {
        // Past the rate limit of the previous challenge.
        tokio::time::sleep(CHALLENGE_INTERVAL).await;
        let (snd_nxt, rcv_nxt, _) = self.aim();
        let before = self.info();
        let mark = self.mark();
        self.forge(flags, seq, ack, payload, options);
        let (arrived, acks) = self.after(mark, seq).await;
        assert_eq!(arrived, 1, "{what}: the forgery never reached the stack");
        let after = self.info();
        if challenge {
            assert_eq!(
                acks.len(),
                1,
                "{what}: one challenge ACK expected, saw {acks:?}"
            );
            assert_eq!(
                (acks[0].seq, acks[0].ack),
                (snd_nxt, rcv_nxt),
                "{what}: the challenge ACK is <SEQ=SND.NXT><ACK=RCV.NXT>"
            );
            assert_eq!(
                after.challenge_acks,
                before.challenge_acks + 1,
                "{what}: counted as a challenge"
            );
        } else {
            assert_eq!(
                after.challenge_acks, before.challenge_acks,
                "{what}: no challenge"
            );
        }
        self.assert_alive(what);
        assert_eq!(
            after.bytes_received, before.bytes_received,
            "{what}: no data taken"
        );
        self.echo_round().await;
        self.assert_alive(what);
    }
}

fn no_options() -> TcpOptions {
    TcpOptions::default()
}

/// RFC 5961 §3.2: RSTs below RCV.NXT, inside the window, at its right edge and beyond it.
/// Outside the window: dropped silently. Inside but not exactly RCV.NXT: a challenge ACK.
/// Then the one RST that is accepted, exactly at RCV.NXT, resets the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_positions_around_the_window() {
    if !runnable("rst_positions_around_the_window") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::new().await;
    let rst = TcpFlags::RST;
    let rst_ack = TcpFlags::RST | TcpFlags::ACK;
    // (name, offset from RCV.NXT as a function of the window, expect a challenge)
    let positions: [(&str, Aim, bool); 9] = [
        ("far below RCV.NXT", |_| 0u32.wrapping_sub(1 << 30), false),
        ("one window below", |w| 0u32.wrapping_sub(w), false),
        ("just below RCV.NXT", |_| u32::MAX, false),
        ("RCV.NXT + 1", |_| 1, true),
        ("middle of the window", |w| w / 2, true),
        ("last byte of the window", |w| w - 1, true),
        ("the right edge", |w| w, false),
        ("just beyond the window", |w| w + 1, false),
        ("far beyond", |_| 1 << 30, false),
    ];
    for (k, (name, offset, challenge)) in positions.iter().enumerate() {
        let (snd_nxt, rcv_nxt, wnd) = rig.aim();
        let flags = if k % 2 == 0 { rst } else { rst_ack };
        let seq = rcv_nxt.wrapping_add(offset(wnd));
        rig.attack(name, flags, seq, snd_nxt, &[], no_options(), *challenge)
            .await;
    }

    // The exact match resets (RFC 5961 §3.2 (1)): the server's side ends with an error.
    tokio::time::sleep(CHALLENGE_INTERVAL).await;
    let (snd_nxt, rcv_nxt, _) = rig.aim();
    rig.forge(rst, rcv_nxt, snd_nxt, &[], no_options());
    let ended = tokio::time::timeout(Duration::from_secs(5), &mut rig.echo)
        .await
        .expect("the exact RST ends the server's connection");
    let err = ended.unwrap().expect_err("reset, not a clean end");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

/// RFC 5961 §4.2: a SYN on the established connection — at RCV.NXT, inside the window,
/// outside it, with or without ACK — draws a challenge ACK and never resets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syn_on_an_established_connection() {
    if !runnable("syn_on_an_established_connection") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::new().await;
    let cases: [(&str, Aim, TcpFlags); 5] = [
        ("SYN at RCV.NXT", |_| 0, TcpFlags::SYN),
        ("SYN inside the window", |w| w / 3, TcpFlags::SYN),
        (
            "SYN+ACK inside the window",
            |w| w / 2,
            TcpFlags::SYN | TcpFlags::ACK,
        ),
        (
            "SYN below the window",
            |_| 0u32.wrapping_sub(100_000),
            TcpFlags::SYN,
        ),
        ("SYN beyond the window", |w| w + 12_345, TcpFlags::SYN),
    ];
    for (name, offset, flags) in cases {
        let (snd_nxt, rcv_nxt, wnd) = rig.aim();
        let seq = rcv_nxt.wrapping_add(offset(wnd));
        rig.attack(name, flags, seq, snd_nxt, &[], no_options(), true)
            .await;
    }
}

/// RFC 5961 §5 (and RFC 9293 §3.10.7.4): data whose ACK acknowledges data never sent, or is
/// older than SND.UNA - MAX.SND.WND, is dropped with a challenge ACK; data wholly outside
/// the window is dropped and acknowledged; data without ACK is dropped. None of it is
/// delivered: the echo afterwards returns exactly its own bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_acks_outside_the_window() {
    if !runnable("data_and_acks_outside_the_window") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::new().await;
    let junk = [0xA5u8; 300];
    let data = TcpFlags::PSH | TcpFlags::ACK;

    let (snd_nxt, rcv_nxt, _) = rig.aim();
    rig.attack(
        "data at RCV.NXT acknowledging data never sent",
        data,
        rcv_nxt,
        snd_nxt.wrapping_add(100_000),
        &junk,
        no_options(),
        true,
    )
    .await;

    let (snd_nxt, rcv_nxt, _) = rig.aim();
    rig.attack(
        "data at RCV.NXT with an ACK too old for any window",
        data,
        rcv_nxt,
        snd_nxt.wrapping_sub(1 << 31).wrapping_add(1),
        &junk,
        no_options(),
        true,
    )
    .await;

    let (snd_nxt, rcv_nxt, _) = rig.aim();
    rig.attack(
        "pure ACK of data never sent",
        TcpFlags::ACK,
        rcv_nxt,
        snd_nxt.wrapping_add(5000),
        &[],
        no_options(),
        true,
    )
    .await;

    // Wholly outside the window: not a challenge (the duplicate ACK RFC 9293 asks for is
    // allowed, not required to be seen here), and never delivered.
    let (snd_nxt, rcv_nxt, wnd) = rig.aim();
    rig.attack(
        "data beyond the window",
        data,
        rcv_nxt.wrapping_add(wnd).wrapping_add(1000),
        snd_nxt,
        &junk,
        no_options(),
        false,
    )
    .await;
    let (snd_nxt, rcv_nxt, _) = rig.aim();
    rig.attack(
        "data below RCV.NXT",
        data,
        rcv_nxt.wrapping_sub(50_000),
        snd_nxt,
        &junk,
        no_options(),
        false,
    )
    .await;
    let (snd_nxt, rcv_nxt, _) = rig.aim();
    rig.attack(
        "data at RCV.NXT without ACK",
        TcpFlags::PSH,
        rcv_nxt,
        snd_nxt,
        &junk,
        no_options(),
        false,
    )
    .await;
}

/// RFC 7323 §4.3 with RFC 5961: a forged segment at exactly RCV.NXT with a TSval far ahead,
/// dropped for its SYN or its unacceptable ACK, must not become TS.Recent — or PAWS would
/// then drop every genuine segment of the kernel client. The echo afterwards proves it did
/// not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_timestamps_do_not_stall_the_connection() {
    if !runnable("forged_timestamps_do_not_stall_the_connection") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::new().await;
    assert!(
        rig.info().timestamps,
        "the kernel client negotiated timestamps"
    );
    // A TSval 2^30 ahead of the kernel client's latest: newer by RFC 7323's arithmetic,
    // so PAWS does not drop it first, and far enough that, were it recorded, every genuine
    // segment would look 2^30 ticks old.
    let ts = |rig: &Rig| {
        let latest = rig
            .seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|s| (s.dir == Direction::In).then_some(s.tsval).flatten())
            .expect("the kernel client sends timestamps");
        TcpOptions {
            timestamps: Some((latest.wrapping_add(1 << 30), 0)),
            ..TcpOptions::default()
        }
    };
    let (snd_nxt, rcv_nxt, _) = rig.aim();
    let opts = ts(&rig);
    rig.attack(
        "SYN at RCV.NXT with a far TSval",
        TcpFlags::SYN,
        rcv_nxt,
        snd_nxt,
        &[],
        opts,
        true,
    )
    .await;
    let (snd_nxt, rcv_nxt, _) = rig.aim();
    let opts = ts(&rig);
    rig.attack(
        "ACK of unsent data at RCV.NXT with a far TSval",
        TcpFlags::ACK | TcpFlags::PSH,
        rcv_nxt,
        snd_nxt.wrapping_add(70_000),
        &[1, 2, 3],
        opts,
        true,
    )
    .await;
}

/// RFC 5961 §7: a burst of in-window RSTs and SYNs draws one challenge ACK, not one each;
/// the rest are counted as skipped, and the connection carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_acks_are_rate_limited_on_the_wire() {
    if !runnable("challenge_acks_are_rate_limited_on_the_wire") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::new().await;
    tokio::time::sleep(CHALLENGE_INTERVAL).await;
    let (snd_nxt, rcv_nxt, wnd) = rig.aim();
    let before = rig.info();
    let mark = rig.mark();
    const BURST: u32 = 50;
    for k in 0..BURST {
        let seq = rcv_nxt.wrapping_add(1 + k * (wnd / BURST).max(1));
        let flags = if k % 2 == 0 {
            TcpFlags::RST
        } else {
            TcpFlags::SYN
        };
        rig.forge(flags, seq, snd_nxt, &[], no_options());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (arrived, acks) = {
        let seen = rig.seen.lock().unwrap();
        let new = &seen[mark..];
        (
            new.iter().filter(|s| s.dir == Direction::In).count(),
            new.iter()
                .filter(|s| s.dir == Direction::Out && s.flags == TcpFlags::ACK && s.len == 0)
                .count(),
        )
    };
    assert_eq!(arrived, BURST as usize, "every forgery reached the stack");
    assert_eq!(acks, 1, "one challenge ACK for the whole burst");
    let after = rig.info();
    assert_eq!(after.challenge_acks, before.challenge_acks + 1);
    assert_eq!(
        after.challenge_acks_skipped,
        before.challenge_acks_skipped + u64::from(BURST) - 1
    );
    rig.assert_alive("after the burst");
    rig.echo_round().await;
    rig.assert_alive("after the burst's echo");
}
