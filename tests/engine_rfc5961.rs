//! Scripted segment tests for RFC 5961's defences that go beyond the single-segment cases in
//! `engine_close.rs`: the challenge ACKs' rate limit (§7) shared by RSTs (§3.2), SYNs (§4.2)
//! and unacceptable ACKs (§5.2), and a forged segment's timestamp, which must not move
//! TS.Recent (RFC 7323 §4.3) when the segment is then dropped.
//!
//! The client under test uses ISN 100, its peer ISN 2000; the handshake ends at 100 ms.

mod common;
use common::*;
use rawtcp::proto::{Config, Error, Instant, State};
use rawtcp::wire::TcpRepr;
use std::time::Duration;

const NOTHING: [&str; 0] = [];

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// A segment from the peer (the server's port) to the client under test.
fn peer(f: &str, seq: u32, ack: u32) -> TcpRepr {
    let mut s = seg(f, seq, ack);
    std::mem::swap(&mut s.src_port, &mut s.dst_port);
    s
}

/// A client established with the peer at 100 ms: RCV.NXT = 2001, SND.NXT = 101. With
/// `peer_ts`, timestamps are negotiated and the peer's SYN+ACK carries that TSval; the
/// client's own first TSval is returned alongside.
fn established(cfg: Config, peer_ts: Option<u32>) -> (Endpoint, u32) {
    let mut c = Endpoint::client(cfg, 100);
    let syn = c.drain();
    let our_ts = syn[0].0.options.timestamps.map_or(0, |t| t.0);
    c.advance_to(ms(100));
    let mut sa = peer("SYN+ACK", 2000, 101);
    sa.options.mss = Some(1460);
    sa.options.timestamps = peer_ts.map(|t| (t, our_ts));
    c.input(&sa, &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::Established);
    (c, our_ts)
}

/// RFC 5961 §7: challenge ACKs are throttled — at most one per 500 ms per connection (as
/// Linux's per-socket `tcp_invalid_ratelimit`), whichever of §3.2, §4.2 and §5.2 asked for
/// it. The segments are dropped all the same, counted in `TcpInfo`, and the one RST the RFC
/// accepts, exactly at RCV.NXT, still resets during the quiet period.
#[test]
fn challenge_acks_are_rate_limited() {
    let (mut c, _) = established(plain(), None);
    c.advance_to(ms(1000));
    c.input(&peer("RST", 3001, 0), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"], "first challenge");

    // Within 500 ms: an in-window RST, SYNs in and out of the window, data acknowledging
    // data never sent: all dropped, none answered.
    c.advance_to(ms(1200));
    c.input(&peer("RST", 2002, 0), &[]);
    c.input(&peer("SYN", 2001, 0), &[]);
    c.input(&peer("SYN", 900_000, 0), &[]);
    c.input(&peer("PSH+ACK", 2001, 99_999), &[b'x'; 10]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.recv_queue(), 0);
    assert_eq!(c.conn.state(), State::Established);
    let info = c.conn.info();
    assert_eq!((info.challenge_acks, info.challenge_acks_skipped), (1, 4));

    c.advance_to(Instant::from_micros(ms(1500).as_micros() - 1));
    c.input(&peer("SYN", 2500, 0), &[]);
    assert_eq!(c.ladder(), NOTHING, "still within 500 ms");

    // 500 ms after the first: the next one goes.
    c.advance_to(ms(1500));
    c.input(&peer("SYN", 2500, 0), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.info().challenge_acks, 2);

    // Data outside the window is not a challenge (RFC 9293 §3.10.7.4: always acknowledged).
    c.input(&peer("PSH+ACK", 1001, 101), &[b'o'; 10]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);

    // The exact RST is not rate-limited: it resets.
    c.advance_to(ms(1600));
    c.input(&peer("RST", 2001, 0), &[]);
    assert_eq!(c.conn.error(), Some(Error::ConnectionReset));
}

/// RFC 5961 §4.2: a SYN outside the window is answered like one inside it — a challenge
/// ACK, under the same limit — and never resets.
#[test]
fn out_of_window_syn_draws_a_throttled_challenge() {
    let (mut c, _) = established(plain(), None);
    c.advance_to(ms(1000));
    c.input(&peer("SYN", 2001u32.wrapping_sub(70_000), 0), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    c.input(&peer("SYN", 2001 + 3_000_000, 0), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Established);
    assert_eq!(c.conn.error(), None);
}

/// A forged segment that reaches the timestamp step and is then dropped — a SYN (§4.2), an
/// ACK for data never sent or far too old (§5.2) — must not record its TSval: with RCV.NXT
/// guessed and a huge TSval it would otherwise make PAWS (RFC 7323 §5.3) discard every
/// genuine segment from then on, a blind denial of service. TS.Recent moves only for a
/// segment that passed the ACK check (as Linux does since it added RFC 5961).
#[test]
fn forged_segments_do_not_move_ts_recent() {
    let cfg = Config {
        timestamps: true,
        ..plain()
    };
    let (mut c, our_ts) = established(cfg, Some(5000));
    let forged_ts = 5000u32.wrapping_add(1 << 30);
    // (segment, payload length)
    let forgeries = [
        (peer("SYN+ACK", 2001, 101), 0),
        (peer("PSH+ACK", 2001, 50_000), 20),
        (peer("PSH+ACK", 2001, 101u32.wrapping_sub(200_000)), 20),
        (peer("ACK", 2001, 7_777_777), 0),
    ];
    for (i, (mut f, len)) in forgeries.into_iter().enumerate() {
        c.advance_to(ms(1000 + 600 * i as u64));
        f.options.timestamps = Some((forged_ts, our_ts));
        c.input(&f, &vec![b'F'; len]);
        let out = c.drain();
        assert_eq!(out.len(), 1, "forgery {i}: one challenge ACK");
        assert_eq!(
            out[0].0.options.timestamps.map(|t| t.1),
            Some(5000),
            "forgery {i}: the challenge echoes the genuine TSval"
        );
        assert_eq!(c.conn.recv_queue(), 0);
    }

    // The genuine peer's next segment, with its own clock, is still accepted.
    c.advance_to(ms(5000));
    let mut d = peer("PSH+ACK", 2001, 101);
    d.options.timestamps = Some((5100, our_ts));
    c.input(&d, b"genuine");
    assert_eq!(c.read_all(), b"genuine");
    assert_eq!(c.conn.state(), State::Established);
}

/// RFC 5961 §3.2 through a pair of engines: a blind RST at every offset of the window but
/// RCV.NXT leaves the transfer intact; the challenge ACK it draws reaches the genuine peer,
/// whose data keeps flowing and arrives exactly.
#[test]
fn blind_rsts_across_the_window_leave_a_transfer_intact() {
    let mut p = Pair::new(plain(), 100, plain(), 2000);
    p.settle();
    let mut sent = Vec::new();
    let mut got = Vec::new();
    for round in 0u32..40 {
        let chunk: Vec<u8> = (0..700u32).map(|i| (i * 7 + round) as u8).collect();
        let n = p.client.conn.send(&chunk).unwrap();
        sent.extend_from_slice(&chunk[..n]);
        p.settle();
        // Blind RSTs spoofing the client towards the server, across its window.
        let rcv_nxt = p.server.conn.rcv_nxt();
        let wnd = p.server.conn.rcv_wnd();
        for off in [
            1,
            wnd / 3,
            wnd.saturating_sub(1),
            wnd,
            wnd + 1,
            u32::MAX / 2,
        ] {
            if off == 0 {
                continue;
            }
            let mut rst = seg("RST", (rcv_nxt + off).0, 0);
            rst.window = 0;
            p.server.input(&rst, &[]);
            p.settle();
            assert_eq!(p.server.conn.state(), State::Established, "RST at +{off}");
        }
        got.extend(p.server.read_all());
        let t = p.client.now + Duration::from_millis(100);
        p.advance_to(t);
    }
    got.extend(p.server.read_all());
    assert_eq!(got, sent);
    // One challenge per 500 ms of the 4 s: the rest were throttled (RFC 5961 §7).
    let info = p.server.conn.info();
    assert!(info.challenge_acks >= 7, "{info:?}");
    assert!(info.challenge_acks_skipped > 100, "{info:?}");
}

/// The sequence check RFC 5961 builds on, at the right edge: a peer whose data filled our
/// window exactly and was lost sends its pure ACKs at SND.NXT = RCV.NXT + RCV.WND. They are
/// taken (as Linux's `tcp_sequence` does), so its acknowledgments and keepalive answers still
/// count while its retransmission timer backs off — found by `fuzz_engine`, where a
/// keepalive with one retry gave up on a peer that kept answering. A RST there is still
/// dropped (RFC 5961 §3.2), and data there still is not acceptable.
#[test]
fn pure_ack_at_the_right_edge_is_taken() {
    let cfg = Config {
        recv_buffer: 1000,
        ..plain()
    };
    let mut s = Endpoint::server(cfg, 2000);
    s.input(&seg("SYN", 100, 0), &[]);
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    s.input(&seg("ACK", 101, 2001), &[]);
    assert_eq!(s.conn.state(), State::Established);
    assert_eq!(s.conn.rcv_wnd(), 1000);
    s.conn.send(b"hello").unwrap();
    assert_eq!(s.ladder(), ["PSH+ACK  S:2001 A:101 len=5"]);

    // The client sent 1000 bytes (lost) and acknowledges our data from the right edge.
    s.advance_to(ms(100));
    s.input(&seg("RST", 1101, 0), &[]);
    assert_eq!(
        s.ladder(),
        NOTHING,
        "a RST at the edge is outside the window"
    );
    s.input(&seg("ACK", 1101, 2006), &[]);
    assert_eq!(s.conn.snd_una().0, 2006, "the ACK at the edge counts");
    assert_eq!(s.conn.state(), State::Established);
    s.input(&seg("PSH+ACK", 1101, 2006), b"x");
    assert_eq!(
        s.ladder(),
        ["ACK      S:2006 A:101"],
        "data at the edge is not"
    );
    assert_eq!(s.conn.recv_queue(), 0);
}

/// Found by `fuzz_engine`: the SYN+ACK's retransmission timer fired (SND.NXT went back to
/// the ISS to repeat it) and the client's ACK arrived before the repeat left. The connection
/// was established with SND.NXT below SND.UNA (RFC 9293 §3.3.1 wants SND.UNA =< SND.NXT).
/// It now resumes from SND.UNA: no stale SYN+ACK, and data starts at ISS + 1.
#[test]
fn ack_overtaking_a_handshake_retransmission() {
    let mut s = Endpoint::server(plain(), 2000);
    s.input(&seg("SYN", 100, 0), &[]);
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    s.advance_to(ms(1000));
    s.input(&seg("ACK", 101, 2001), &[]);
    assert_eq!(s.conn.state(), State::Established);
    assert!(s.conn.snd_una() <= s.conn.snd_nxt());
    assert_eq!(s.ladder(), NOTHING);
    s.conn.send(b"data").unwrap();
    assert_eq!(s.ladder(), ["PSH+ACK  S:2001 A:101 len=4"]);

    // The same on the active side: the SYN's timer fired, then the SYN+ACK arrived.
    let mut c = Endpoint::client(plain(), 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    c.advance_to(ms(1000));
    let mut sa = peer("SYN+ACK", 2000, 101);
    sa.options.mss = Some(1460);
    c.input(&sa, &[]);
    assert_eq!(c.conn.state(), State::Established);
    assert!(c.conn.snd_una() <= c.conn.snd_nxt());
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
}

/// Found by `fuzz_engine`: both sides sent into windows they believed closed, both peers
/// took it, and each side's pure ACKs then carried a sequence number below the other's
/// RCV.NXT — each dropped the other's acknowledgments forever. A pure ACK just left of the
/// window that acknowledges new data is now taken for its acknowledgment (as FreeBSD does);
/// one that acknowledges nothing new, one far below, and data or a FIN below are not.
#[test]
fn pure_ack_left_of_the_window_is_taken_when_it_acknowledges_new_data() {
    let (mut c, _) = established(plain(), None);
    c.advance_to(ms(1000));
    c.input(&peer("PSH+ACK", 2001, 101), &[b'p'; 100]);
    assert_eq!(c.read_all(), vec![b'p'; 100]);
    c.conn.send(&[b'c'; 300]).unwrap();
    let out = c.drain();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(c.conn.snd_una().0, 101);

    // Below RCV.NXT (2101): data and a FIN are not taken, nor an ACK of nothing new, nor
    // one from farther below than a receive buffer.
    c.advance_to(ms(1100));
    c.input(&peer("PSH+ACK", 2001, 201), &[b'x'; 50]);
    assert_eq!(c.conn.snd_una().0, 101, "data below the window");
    c.input(&peer("FIN+ACK", 2050, 201), &[]);
    assert_eq!(c.conn.snd_una().0, 101, "a FIN below the window");
    c.input(&peer("ACK", 2050, 101), &[]);
    assert_eq!(c.conn.snd_una().0, 101);
    c.input(&peer("ACK", 2101u32.wrapping_sub(2_000_000), 201), &[]);
    assert_eq!(c.conn.snd_una().0, 101, "far below");

    // The pure ACK at 2050 acknowledging 100 new bytes is taken, and the ACK is RFC 5961
    // §5.2-checked like any other: one of data never sent is not.
    c.input(&peer("ACK", 2050, 201), &[]);
    assert_eq!(c.conn.snd_una().0, 201);
    c.input(&peer("ACK", 2050, 9_999), &[]);
    assert_eq!(c.conn.snd_una().0, 201);
    assert_eq!(c.conn.state(), State::Established);
    assert_eq!(c.conn.recv_queue(), 0);
}
