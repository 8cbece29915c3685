//! Scripted data-transfer tests: sequence and acknowledgment numbers, PSH, delayed ACKs,
//! Nagle, windows and silly-window avoidance, zero-window probing, retransmission timeouts,
//! fast retransmit with NewReno recovery, and SACK generation.

mod common;
use common::*;
use rawtcp::proto::cc::Algorithm;
use rawtcp::proto::{Config, Error, Instant, State};
use rawtcp::wire::TcpRepr;
use std::time::Duration;

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// A segment from the server to the client.
fn from_server(f: &str, seq: u32, ack: u32, window: u16) -> TcpRepr {
    let mut s = seg(f, seq, ack);
    (s.src_port, s.dst_port) = (80, 40000);
    s.window = window;
    s
}

/// A client with ISN 100 connected at time 0 to a server with ISN 2000 whose window is
/// `window`. The handshake's RTT is zero, so the RTO sits at its 200 ms minimum.
fn established(cfg: Config, window: u16) -> Endpoint {
    let peer_mss = cfg.mss;
    let mut c = Endpoint::client(cfg, 100);
    c.drain();
    let mut synack = from_server("SYN+ACK", 2000, 101, window);
    synack.options.mss = Some(peer_mss);
    c.input(&synack, &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::Established);
    c
}

fn mss(n: u16) -> Config {
    Config { mss: n, ..plain() }
}

/// NewReno's arithmetic (RFC 5681, RFC 6582), for the tests that check it.
fn newreno(cfg: Config) -> Config {
    Config {
        congestion: Algorithm::NewReno,
        ..cfg
    }
}

/// RFC 9293 §3.8.6.3: a lone segment is acknowledged within the delayed-ACK time, exactly.
#[test]
fn delayed_ack_fires_after_its_timer() {
    let mut c = established(plain(), 65535);
    c.advance_to(ms(10));
    c.input(&from_server("PSH+ACK", 2001, 101, 65535), &[7; 100]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    assert_eq!(c.conn.poll_timeout(), Some(ms(50)), "40 ms delayed ACK");
    c.fire_next();
    assert_eq!(c.ladder(), ["ACK      S:101 A:2101"]);
    assert_eq!(c.conn.poll_timeout(), None);
}

/// RFC 5681 §4.2: an ACK at least for every second full-sized segment.
#[test]
fn every_second_full_segment_is_acked_at_once() {
    let mut c = established(plain(), 65535);
    c.input(&from_server("ACK", 2001, 101, 65535), &[1; 1460]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    c.input(&from_server("ACK", 3461, 101, 65535), &[2; 1460]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:4921"]);
    assert_eq!(
        c.conn.poll_timeout(),
        None,
        "the delayed ACK timer is cancelled"
    );
    // A zero delayed-ACK time acknowledges every segment.
    let mut c = established(
        Config {
            delayed_ack: Duration::ZERO,
            ..plain()
        },
        65535,
    );
    c.input(&from_server("PSH+ACK", 2001, 101, 65535), &[1; 10]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2011"]);
}

/// A read that empties the receive buffer acknowledges at once when the data ended with a
/// short segment from a peer that streams (more than a full-sized segment since this side
/// last sent): the sender may hold its next short segment behind it (Nagle) and have
/// nothing else to send. Not before the buffer is empty, and not in a request-response
/// exchange, where the answer carries the ACK.
#[test]
fn a_read_that_drains_a_streamed_short_tail_acks_at_once() {
    let mut c = established(plain(), 65535);
    c.input(&from_server("ACK", 2001, 101, 65535), &[1; 1460]);
    c.input(&from_server("ACK", 3461, 101, 65535), &[2; 1460]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:4921"]);
    c.input(&from_server("ACK", 4921, 101, 65535), &[3; 1460]);
    c.input(&from_server("PSH+ACK", 6381, 101, 65535), &[4; 81]);
    assert_eq!(c.ladder(), Vec::<String>::new(), "1,541 bytes: delayed");
    let mut buf = [0u8; 1000];
    assert_eq!(c.conn.recv(&mut buf), Ok(1000));
    assert_eq!(c.ladder(), Vec::<String>::new(), "not drained yet");
    assert_eq!(c.read_all().len(), 3 * 1460 + 81 - 1000);
    assert_eq!(c.ladder(), ["ACK      S:101 A:6462"], "drained: at once");

    // The same tail after full segments that were read as they came, without being
    // acknowledged yet: still a stream.
    let mut c = established(plain(), 65535);
    c.input(&from_server("ACK", 2001, 101, 65535), &[1; 1460]);
    c.read_all();
    assert_eq!(c.ladder(), Vec::<String>::new());
    c.input(&from_server("PSH+ACK", 3461, 101, 65535), &[2; 81]);
    c.read_all();
    assert_eq!(c.ladder(), ["ACK      S:101 A:3542"]);

    // A request answered: the reply's reader drains a short segment but delays, for the
    // next request to carry the ACK.
    let mut c = established(plain(), 65535);
    c.conn.send(b"GET").unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=3"]);
    c.input(&from_server("PSH+ACK", 2001, 104, 65535), &[5; 100]);
    assert_eq!(c.read_all().len(), 100);
    assert_eq!(c.ladder(), Vec::<String>::new(), "an answer: delayed");
    assert!(
        c.conn.poll_timeout().is_some(),
        "the delayed ACK timer runs"
    );

    // Only full-sized segments, the last one unacknowledged: delayed as before.
    let mut c = established(plain(), 65535);
    for (i, seq) in [2001, 3461, 4921].into_iter().enumerate() {
        c.input(&from_server("ACK", seq, 101, 65535), &[i as u8; 1460]);
    }
    c.ladder();
    c.read_all();
    assert_eq!(c.ladder(), Vec::<String>::new(), "no short tail: delayed");
}

/// A bulk writer whose writes each leave a short tail (Nagle holds the next behind it),
/// then waits for an answer: with a reader that reads what arrives, every byte is
/// acknowledged without waiting for a delayed-ACK timer, so the writer is never left
/// holding data it may not send.
#[test]
fn nagled_tails_of_a_bulk_writer_are_not_left_for_the_delayed_ack() {
    let mut p = Pair::new(plain(), 100, plain(), 2000);
    p.settle();
    let chunk = vec![0x5a_u8; 1460 + 81];
    let mut read = 0;
    for _ in 0..64 {
        p.client.conn.send(&chunk).unwrap();
        p.settle();
        read += p.server.read_all().len();
        p.settle();
    }
    assert_eq!(read, 64 * chunk.len(), "everything sent came through");
    let info = p.client.conn.info();
    assert_eq!(
        (info.bytes_acked, info.unacked),
        (read as u64, 0),
        "everything acknowledged, the clock never advanced"
    );
}

/// `TCP_QUICKACK` as `set_delayed_ack(ZERO)`: an ACK being delayed goes at once, and so does
/// the ACK of every segment after it; a delay set again delays again.
#[test]
fn delayed_ack_switched_off_and_on() {
    let mut c = established(plain(), 65535);
    c.advance_to(ms(10));
    c.input(&from_server("PSH+ACK", 2001, 101, 65535), &[7; 100]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    c.conn.set_delayed_ack(Duration::ZERO);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2101"]);
    assert_eq!(c.conn.poll_timeout(), None, "no delayed-ACK timer left");
    c.input(&from_server("PSH+ACK", 2101, 101, 65535), &[8; 10]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2111"]);
    c.conn.set_delayed_ack(Duration::from_millis(40));
    assert_eq!(c.conn.config().delayed_ack, Duration::from_millis(40));
    c.input(&from_server("PSH+ACK", 2111, 101, 65535), &[9; 10]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    assert_eq!(c.conn.poll_timeout(), Some(ms(50)));
}

/// Out-of-order data draws an immediate duplicate ACK; filling the hole draws an immediate
/// ACK of everything (RFC 5681 §4.2), and the bytes come out in order.
#[test]
fn out_of_order_then_gap_fill() {
    let mut c = established(plain(), 65535);
    c.input(&from_server("ACK", 2101, 101, 65535), b"world");
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(
        c.conn.recv(&mut [0; 10]),
        Err(rawtcp::proto::Error::WouldBlock)
    );
    c.input(&from_server("ACK", 2001, 101, 65535), &[b'-'; 100]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2106"]);
    let got = c.read_all();
    assert_eq!(got.len(), 105);
    assert_eq!(&got[100..], b"world");
}

/// With SACK negotiated, ACKs name the out-of-order blocks, most recent first (RFC 2018 §4).
#[test]
fn sack_blocks_most_recent_first() {
    let cfg = Config {
        sack: true,
        ..plain()
    };
    let mut c = Endpoint::client(cfg, 100);
    c.drain();
    let mut synack = from_server("SYN+ACK", 2000, 101, 65535);
    synack.options.sack_permitted = true;
    c.input(&synack, &[]);
    c.drain();
    c.input(&from_server("ACK", 2101, 101, 65535), &[0; 100]);
    c.input(&from_server("ACK", 2301, 101, 65535), &[0; 100]);
    let acks = c.drain();
    let last = &acks.last().unwrap().0;
    assert_eq!(last.ack, 2001);
    assert_eq!(last.options.sack.as_slice(), &[(2301, 2401), (2101, 2201)]);
    c.input(&from_server("ACK", 2201, 101, 65535), &[0; 100]);
    let a = c.drain().pop().unwrap().0;
    assert_eq!(a.options.sack.as_slice(), &[(2101, 2401)]);
    c.input(&from_server("ACK", 2001, 101, 65535), &[0; 100]);
    let a = c.drain().pop().unwrap().0;
    assert_eq!(a.ack, 2401);
    assert!(a.options.sack.is_empty());
}

/// The seed's rule: the next SEQ is the previous SEQ plus the bytes sent; PSH marks the
/// segment that empties the send buffer; full segments in between carry only ACK.
#[test]
fn segmentation_and_psh() {
    let mut c = established(plain(), 65535);
    assert_eq!(c.conn.send(&[0; 3000]), Ok(3000));
    assert_eq!(
        c.ladder(),
        [
            "ACK      S:101 A:2001 len=1460",
            "ACK      S:1561 A:2001 len=1460",
            "PSH+ACK  S:3021 A:2001 len=80",
        ]
    );
    assert_eq!(c.conn.info().bytes_in_flight, 3000);
    c.input(&from_server("ACK", 2001, 3101, 65535), &[]);
    assert_eq!(c.conn.info().bytes_in_flight, 0);
    assert_eq!(
        c.conn.poll_timeout(),
        Some(c.now + Duration::from_secs(1)),
        "nothing outstanding: no retransmission timer, only the emptied buffer's idle release"
    );
}

/// Nagle (RFC 1122 §4.2.3.4): while a small segment is unacknowledged another small
/// segment waits for the ACK; with nodelay it goes at once.
#[test]
fn nagle_holds_small_segments_until_acked() {
    let mut c = established(plain(), 65535);
    c.conn.send(b"first").unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=5"]);
    c.conn.send(b"second").unwrap();
    c.conn.send(b"third").unwrap();
    assert_eq!(c.ladder(), Vec::<String>::new());
    c.input(&from_server("ACK", 2001, 106, 65535), &[]);
    assert_eq!(c.ladder(), ["PSH+ACK  S:106 A:2001 len=11"]);

    let mut c = established(plain(), 65535);
    c.conn.set_nodelay(true);
    c.conn.send(b"first").unwrap();
    c.ladder();
    c.conn.send(b"second").unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:106 A:2001 len=6"]);
}

/// The peer's window bounds what is in flight, and the sender does not send slivers into a
/// small window (RFC 9293 §3.8.6.2.1): it waits for a useful window.
#[test]
fn peer_window_and_sender_sws_avoidance() {
    let mut c = established(plain(), 2000);
    c.conn.send(&[0; 5000]).unwrap();
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1460"]);
    // 540 bytes of window remain: less than an MSS and less than half the largest window.
    c.input(&from_server("ACK", 2001, 101, 2000), &[]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    c.input(&from_server("ACK", 2001, 1561, 2000), &[]);
    assert_eq!(c.ladder(), ["ACK      S:1561 A:2001 len=1460"]);
    c.input(&from_server("ACK", 2001, 3021, 4000), &[]);
    assert_eq!(
        c.ladder(),
        [
            "ACK      S:3021 A:2001 len=1460",
            "PSH+ACK  S:4481 A:2001 len=620",
        ]
    );
}

/// A zero window is probed at the RTO with backoff (RFC 9293 §3.8.6.1), with an ACK that
/// carries an old sequence number; when the window opens, data flows.
#[test]
fn zero_window_probing() {
    let mut c = established(plain(), 0);
    c.conn.send(&[9; 100]).unwrap();
    assert_eq!(c.ladder(), Vec::<String>::new());
    assert_eq!(c.conn.poll_timeout(), Some(ms(200)));
    c.fire_next();
    assert_eq!(c.ladder(), ["ACK      S:100 A:2001"]);
    assert_eq!(
        c.conn.poll_timeout(),
        Some(ms(600)),
        "backed off to 2 × RTO"
    );
    // The peer answers, still closed: probing goes on.
    c.input(&from_server("ACK", 2001, 101, 0), &[]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    c.fire_next();
    assert_eq!(c.ladder(), ["ACK      S:100 A:2001"]);
    c.input(&from_server("ACK", 2001, 101, 1000), &[]);
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
}

/// A connection the application let go stops probing a zero window after
/// `orphan_retries` probes even though the peer answers every one (Linux's
/// `tcp_orphan_retries`); one the application still holds probes on as long as the peer
/// answers.
#[test]
fn an_orphan_gives_up_a_window_that_never_opens() {
    let cfg = Config {
        orphan_retries: 3,
        ..plain()
    };
    for orphaned in [false, true] {
        let mut c = established(cfg.clone(), 0);
        c.conn.send(&[9; 100]).unwrap();
        if orphaned {
            c.conn.orphan(c.now);
        }
        assert_eq!(c.ladder(), Vec::<String>::new(), "the window is shut");
        let mut probes = 0;
        while probes < 20 && c.conn.state() != State::Closed {
            c.fire_next();
            probes += c.drain().len();
            // Every probe is answered, the window still shut.
            c.input(&from_server("ACK", 2001, 101, 0), &[]);
        }
        if orphaned {
            assert_eq!(probes, 3, "three probes, then it gives up");
            assert_eq!(c.conn.state(), State::Closed);
            assert_eq!(c.conn.error(), Some(Error::TimedOut));
        } else {
            assert_eq!(
                probes, 20,
                "an answered probe keeps a held connection alive"
            );
            assert_ne!(c.conn.state(), State::Closed);
        }
    }
}

/// Out-of-order data is held in at most `max_out_of_order` ranges; a segment that would
/// open another is dropped (not acknowledged, counted) and arrives again later; one that
/// extends a held range is still taken. Under memory pressure nothing out of order is held.
#[test]
fn out_of_order_holding_is_bounded() {
    let cfg = Config {
        max_out_of_order: 2,
        ..plain()
    };
    let mut c = established(cfg, 65535);
    for seq in [2101, 2201] {
        c.input(&from_server("ACK", seq, 101, 65535), &[1; 10]);
    }
    c.input(&from_server("ACK", 2301, 101, 65535), &[1; 10]);
    assert_eq!(c.conn.info().out_of_order_drops, 1);
    c.input(&from_server("ACK", 2111, 101, 65535), &[1; 10]);
    assert_eq!(c.conn.info().out_of_order_drops, 1, "extends a held range");
    // Filling the first hole delivers the first two ranges; the third never was held.
    c.input(&from_server("ACK", 2001, 101, 65535), &[1; 100]);
    assert_eq!(c.read_all().len(), 120);
    c.drain();

    let mut c = established(plain(), 65535);
    c.conn.set_memory_pressure(true);
    c.input(&from_server("ACK", 2101, 101, 65535), &[1; 10]);
    assert_eq!(c.conn.info().pressure_drops, 1);
    c.input(&from_server("ACK", 2001, 101, 65535), &[2; 100]);
    assert_eq!(c.read_all(), vec![2; 100], "in order is still taken");
}

/// The receive window shrinks as data waits unread, reaches zero, and a read that frees
/// enough space sends a window update at once; a sliver does not (RFC 9293 §3.8.6.2.2).
#[test]
fn receive_window_and_window_update() {
    let cfg = Config {
        recv_buffer: 4000,
        ..plain()
    };
    let mut c = established(cfg, 65535);
    c.input(&from_server("ACK", 2001, 101, 65535), &[1; 1460]);
    c.input(&from_server("ACK", 3461, 101, 65535), &[2; 1460]);
    let a = c.drain().pop().unwrap().0;
    assert_eq!((a.ack, a.window), (4921, 4000 - 2920));
    c.input(&from_server("PSH+ACK", 4921, 101, 65535), &[3; 1080]);
    c.fire_next();
    let a = c.drain().pop().unwrap().0;
    assert_eq!((a.ack, a.window), (6001, 0));
    // Beyond the window: not accepted, answered with an ACK.
    c.input(&from_server("PSH+ACK", 6001, 101, 65535), &[4; 10]);
    let a = c.drain().pop().unwrap().0;
    assert_eq!((a.ack, a.window), (6001, 0));
    // Reading 100 bytes frees less than an MSS: no update.
    let mut buf = [0u8; 100];
    assert_eq!(c.conn.recv(&mut buf), Ok(100));
    assert_eq!(c.ladder(), Vec::<String>::new());
    // Reading the rest opens the window fully: an update goes out at once.
    let rest = c.read_all();
    assert_eq!(rest.len(), 3900);
    let a = c.drain().pop().unwrap().0;
    assert_eq!((a.ack, a.window), (6001, 4000));
}

/// Retransmission timeout (RFC 6298): the oldest unacknowledged segment is resent at the RTO,
/// the RTO doubles, and an ACK stops the timer.
#[test]
fn retransmission_timeout_and_backoff() {
    let mut c = established(newreno(plain()), 65535);
    c.conn.send(&[5; 100]).unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(200)));
    c.fire_next();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(600)));
    c.fire_next();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1400)));
    let info = c.conn.info();
    assert_eq!(info.cwnd, 1460, "the loss window is one segment");
    assert_eq!(info.ssthresh, 2 * 1460);
    c.input(&from_server("ACK", 2001, 201, 65535), &[]);
    assert_eq!(
        c.conn.poll_timeout(),
        Some(c.now + Duration::from_secs(1)),
        "the retransmission timer stopped; the emptied buffer's idle release remains"
    );
    let info = c.conn.info();
    assert_eq!((info.retransmissions, info.timeouts), (2, 2));
}

/// After a timeout the sender goes back to SND.UNA and resends, one segment at first, and
/// grows from there as ACKs return (RFC 5681 §3.1).
#[test]
fn go_back_after_timeout() {
    let mut c = established(mss(1000), 65535);
    c.conn.send(&[0; 4000]).unwrap();
    assert_eq!(c.ladder().len(), 4);
    c.fire_next();
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1000"]);
    c.input(&from_server("ACK", 2001, 1101, 65535), &[]);
    assert_eq!(
        c.ladder(),
        [
            "ACK      S:1101 A:2001 len=1000",
            "ACK      S:2101 A:2001 len=1000",
        ]
    );
    // The peer had the rest already: one ACK covers everything.
    c.input(&from_server("ACK", 2001, 4101, 65535), &[]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    assert_eq!(c.conn.info().bytes_in_flight, 0);
}

/// Without SACK: fast retransmit on the third duplicate ACK (RFC 5681 §3.2), NewReno's
/// partial-ACK rule (RFC 6582 §3.2 step 5), and PRR (RFC 6937) for how much is sent in
/// recovery; the full ACK ends recovery with cwnd = ssthresh.
#[test]
fn fast_retransmit_and_prr_recovery_without_sack() {
    let mut c = established(newreno(mss(1000)), 65535);
    c.conn.send(&[0; 8000]).unwrap();
    assert_eq!(c.ladder().len(), 8);
    // Segments 1 and 3 are lost; 2, 4.. arrive and each draws a duplicate ACK.
    c.input(&from_server("ACK", 2001, 101, 65535), &[]);
    c.input(&from_server("ACK", 2001, 101, 65535), &[]);
    assert_eq!(
        c.ladder(),
        Vec::<String>::new(),
        "limited transmit has nothing new to send"
    );
    c.input(&from_server("ACK", 2001, 101, 65535), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1000"]);
    let info = c.conn.info();
    assert_eq!(info.ssthresh, 4000, "half the flight");
    assert_eq!(info.ca_state, "recovery");
    // Eight sent, one lost, three left the network: 4000 in flight, which is ssthresh, so
    // PRR's slow-start bound allows only the forced fast retransmit.
    assert_eq!((info.cwnd, info.bytes_in_flight), (5000, 5000));
    // A fourth duplicate: one more segment left, PRR sends nothing (the flight is at
    // ssthresh and nothing new is waiting).
    c.input(&from_server("ACK", 2001, 101, 65535), &[]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    assert_eq!(c.conn.info().cwnd, 4000);
    // Partial ACK up to the second hole: retransmit it at once.
    c.input(&from_server("ACK", 2001, 2101, 65535), &[]);
    assert_eq!(c.ladder(), ["ACK      S:2101 A:2001 len=1000"]);
    // Full ACK: recovery ends at ssthresh (RFC 6937 §3), and the 6000 bytes this ACK
    // covers then grow it by one segment in congestion avoidance (RFC 5681 §3.1).
    c.input(&from_server("ACK", 2001, 8101, 65535), &[]);
    let info = c.conn.info();
    assert_eq!(info.ca_state, "open");
    assert_eq!(info.cwnd, 5000);
    assert_eq!(info.fast_retransmits, 2);
    assert_eq!((info.timeouts, info.recoveries), (0, 1));
}

/// Duplicate data (an old segment repeated) is trimmed and answered with an ACK at once.
#[test]
fn duplicate_data_is_acked_not_delivered_twice() {
    let mut c = established(plain(), 65535);
    c.input(&from_server("PSH+ACK", 2001, 101, 65535), b"abc");
    c.fire_next();
    c.ladder();
    c.input(&from_server("PSH+ACK", 2001, 101, 65535), b"abc");
    assert_eq!(c.ladder(), ["ACK      S:101 A:2004"]);
    // Overlapping: only the new part is taken.
    c.input(&from_server("PSH+ACK", 2002, 101, 65535), b"bcdef");
    assert_eq!(c.read_all(), b"abcdef");
}

/// `peek` leaves bytes in place; `recv` takes them.
#[test]
fn peek_then_read() {
    let mut c = established(plain(), 65535);
    c.input(&from_server("PSH+ACK", 2001, 101, 65535), b"hello");
    let mut buf = [0u8; 3];
    assert_eq!(c.conn.peek(&mut buf), Ok(3));
    assert_eq!(&buf, b"hel");
    assert_eq!(c.conn.recv_queue(), 5);
    assert_eq!(c.read_all(), b"hello");
}

/// The send buffer bounds what the application may queue (here one that does not grow).
#[test]
fn send_buffer_full_would_block() {
    let cfg = Config {
        send_buffer: 3000,
        send_buffer_max: 3000,
        ..plain()
    };
    let mut c = established(cfg, 65535);
    assert_eq!(c.conn.send(&[0; 5000]), Ok(3000));
    assert_eq!(c.conn.send(&[0; 1]), Err(rawtcp::proto::Error::WouldBlock));
    assert!(!c.conn.can_send());
    c.drain();
    c.input(&from_server("ACK", 2001, 1561, 65535), &[]);
    assert!(c.conn.can_send());
    assert_eq!(c.conn.send_capacity(), 1460);
}

/// The send buffer grows when an ACK finds both windows beyond it, on a path whose
/// bandwidth-delay product is more than half the buffer: to twice the smaller window, up
/// to `send_buffer_max`. Not while the stack is short of buffer memory, not past the
/// maximum, not where the peer's window is within it, not where the buffer already holds
/// twice the product, and not once the application fixed the size.
#[test]
fn send_buffer_grows_when_both_windows_exceed_it() {
    const RTT: Duration = Duration::from_millis(50);
    // Connected after a 50 ms handshake; `sent` bytes in flight, acknowledged `acked` of
    // them after `rtt`, with the peer's window `window`.
    let run = |window: u16, setup: &dyn Fn(&mut Endpoint), acked: u32, rtt: Duration| {
        let cfg = Config {
            send_buffer: 3000,
            send_buffer_max: 12_000,
            ..plain()
        };
        let mut c = Endpoint::client(cfg, 100);
        c.drain();
        c.advance(RTT);
        let mut synack = from_server("SYN+ACK", 2000, 101, window);
        synack.options.mss = Some(1460);
        c.input(&synack, &[]);
        c.drain();
        setup(&mut c);
        let sent = c.conn.send(&[0; 5000]).unwrap();
        assert!(sent <= 3000);
        c.drain();
        assert_eq!(c.conn.info().send_buffer, 3000);
        c.advance(rtt);
        c.input(&from_server("ACK", 2001, 101 + acked, window), &[]);
        c
    };
    let none = |_: &mut Endpoint| {};
    // 3,000 bytes a 50 ms round trip: a product of 3,000. The initial window (10 segments)
    // and the peer's 65,535 both exceed the buffer, and twice the smaller is past the
    // maximum.
    let c = run(65535, &none, 3000, RTT);
    assert_eq!(c.conn.send_buffer_size(), 12_000);
    assert_eq!(c.conn.info().send_buffer, 12_000);
    assert_eq!(c.conn.send_capacity(), 12_000);
    // A peer window of 2,500 holds the flight below the buffer: it stays.
    let c = run(2500, &none, 2500, RTT);
    assert_eq!(c.conn.send_buffer_size(), 3000);
    // The same bytes in a twentieth of the round trip: the product is 150 bytes, and the
    // buffer already holds many times that.
    let c = run(65535, &none, 3000, RTT / 20);
    assert_eq!(c.conn.send_buffer_size(), 3000);
    // Short of memory: it stays.
    let c = run(65535, &|c| c.conn.set_memory_pressure(true), 3000, RTT);
    assert_eq!(c.conn.send_buffer_size(), 3000);
    // Fixed by the application: it stays.
    let c = run(65535, &|c| c.conn.set_send_buffer_size(3000), 3000, RTT);
    assert_eq!(c.conn.send_buffer_size(), 3000);
}

/// Early retransmit (RFC 5827): with two segments outstanding and nothing new to send, the
/// one duplicate ACK the second segment draws is enough to resend the first; three could
/// never come.
#[test]
fn early_retransmit_with_a_small_flight() {
    let mut c = established(mss(1000), 65535);
    c.conn.send(&[0; 2000]).unwrap();
    assert_eq!(c.ladder().len(), 2);
    c.input(&from_server("ACK", 2001, 101, 65535), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1000"]);
    assert_eq!(c.conn.info().fast_retransmits, 1);
    assert_eq!(c.conn.info().timeouts, 0);

    // With new data waiting that the window allows, it keeps the usual threshold (and
    // limited transmit sends the new data instead).
    let mut c = established(mss(1000), 65535);
    c.conn.set_nodelay(true);
    c.conn.send(&[0; 2000]).unwrap();
    c.ladder();
    c.conn.send(&[0; 500]).unwrap();
    c.input(&from_server("ACK", 2001, 101, 65535), &[]);
    assert_eq!(c.conn.info().fast_retransmits, 0);
}

/// Eifel (RFC 3522, RFC 4015): when the ACK after a fast retransmit echoes the original
/// segment's timestamp, the original arrived (it was only reordered): the window comes back.
/// When it echoes the retransmission's, the loss was real and the window stays reduced.
#[test]
fn spurious_fast_retransmit_is_undone_by_timestamps() {
    for echo_original in [true, false] {
        let cfg = Config {
            mss: 1000,
            timestamps: true,
            ..plain()
        };
        let mut c = Endpoint::client(cfg, 100);
        c.drain();
        let mut synack = from_server("SYN+ACK", 2000, 101, 65535);
        synack.options.mss = Some(1000);
        synack.options.timestamps = Some((500, 0));
        c.input(&synack, &[]);
        c.drain();
        c.advance_to(ms(10));
        // Timestamps take 12 bytes of each 1000-byte segment: four segments of 988.
        c.conn.send(&[0; 3952]).unwrap();
        let sent = c.drain();
        assert_eq!(sent.len(), 4);
        let original = sent[0].0.options.timestamps.unwrap().0;
        let ts = |tsecr| {
            let mut a = from_server("ACK", 2001, 101, 65535);
            a.options.timestamps = Some((501, tsecr));
            a
        };
        let before = c.conn.info().cwnd;
        c.advance_to(ms(60));
        for _ in 0..3 {
            c.input(&ts(original), &[]);
        }
        let rtx = c.drain();
        assert_eq!(
            rtx[0].0.ladder(rtx[0].1.len()).to_string(),
            "ACK      S:101 A:2001 len=988"
        );
        let retransmission = rtx[0].0.options.timestamps.unwrap().0;
        assert!(retransmission > original);
        assert!(c.conn.info().cwnd < before);
        let mut all = ts(if echo_original {
            original
        } else {
            retransmission
        });
        all.ack = 101 + 3952;
        c.input(&all, &[]);
        let info = c.conn.info();
        if echo_original {
            assert_eq!(info.spurious_retransmits, 1);
            assert_eq!(info.cwnd, before, "window restored");
        } else {
            assert_eq!(info.spurious_retransmits, 0);
            assert!(info.cwnd < before, "a real loss keeps the reduction");
        }
    }
}

/// A busy connection keeps its buffers' storage across empty/full cycles (no free and
/// regrow, no page faults on the hot path); one that stays idle for a second gives it back.
#[test]
fn buffers_are_kept_while_busy_and_released_when_idle() {
    let mut c = established(
        Config {
            delayed_ack: Duration::ZERO,
            ..plain()
        },
        65535,
    );
    let from = |seq: u32| from_server("ACK", seq, 101, 65535);
    let mut seq = 2001u32;
    for round in 0..3 {
        // 40 segments of 1460, within the 64 KiB window, then read.
        for _ in 0..40 {
            c.input(&from(seq), &[round; 1460]);
            seq += 1460;
        }
        c.drain();
        assert_eq!(c.read_all().len(), 40 * 1460);
        assert!(
            c.conn.buffer_memory() >= 40 * 1460,
            "round {round}: the storage is kept while busy"
        );
        c.advance(Duration::from_millis(100));
    }
    c.drain();
    let deadline = c
        .conn
        .poll_timeout()
        .expect("the idle release is scheduled");
    assert!(deadline <= c.now + Duration::from_secs(1));
    c.advance_to(deadline);
    assert_eq!(c.conn.buffer_memory(), 0, "idle: nothing held");
}

/// `plain()` with a receive buffer of `bytes` that never grows.
fn fixed_recv_buffer(bytes: usize) -> Config {
    Config {
        recv_buffer: bytes,
        recv_buffer_max: bytes,
        ..plain()
    }
}

/// A client with `cfg` (ISN 100) connected to a server with ISN 2000 whose SYN+ACK carries
/// `peer_ts` and arrives `handshake` after the client's SYN, or, with `syn_again`, after
/// its SYN was sent a second time, so that the handshake measures no round trip (RFC 6298
/// §3, Karn). Its ACK, which offers the first right edge of its window, is drained.
fn receiving_client(
    cfg: Config,
    syn_again: bool,
    handshake: Duration,
    peer_ts: Option<(u32, u32)>,
) -> Endpoint {
    let mut c = Endpoint::client(cfg, 100);
    c.drain();
    if syn_again {
        c.fire_next();
        assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    }
    c.advance(handshake);
    let mut synack = from_server("SYN+ACK", 2000, 101, 65535);
    synack.options.timestamps = peer_ts;
    c.input(&synack, &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    c
}

/// Without timestamps the receiving side times a newly offered window (Linux's
/// `tcp_rcv_rtt_measure`): from the ACK that first offers a right edge to the data that
/// reaches it. Data within an edge offered before does not end a measurement, the least
/// sample stands, and the handshake's round trip stands in where it is less.
#[test]
fn recv_rtt_without_timestamps_times_a_newly_offered_window() {
    let cfg = fixed_recv_buffer(4000);
    // A peer that offers timestamps to a side configured without them; the handshake's
    // ACK offers the first right edge, 2001 + 4000.
    let connect = |syn_again: bool, handshake: Duration| {
        let c = receiving_client(cfg.clone(), syn_again, handshake, Some((77, 0)));
        assert!(!c.conn.info().timestamps);
        assert_eq!(c.conn.info().recv_window, 4000);
        c
    };
    let data = |c: &mut Endpoint, seq: u32, len: usize| {
        c.input(&from_server("PSH+ACK", seq, 101, 65535), &vec![7; len]);
    };

    let mut c = connect(true, Duration::from_millis(5));
    assert_eq!(c.conn.info().min_rtt, None);
    c.advance(Duration::from_millis(30));
    data(&mut c, 2001, 2000);
    c.drain();
    // Half the window came: not yet a round trip's worth of evidence.
    assert_eq!(c.conn.info().recv_rtt, None);
    c.advance(Duration::from_millis(15));
    data(&mut c, 4001, 2000);
    // The edge reached 45 ms after it was offered.
    assert_eq!(c.conn.info().recv_rtt, Some(Duration::from_millis(45)));
    c.drain();
    // Reading offers a new edge now; it fills 30 ms later.
    assert_eq!(c.read_all().len(), 4000);
    assert_eq!(c.ladder(), ["ACK      S:101 A:6001"]);
    c.advance(Duration::from_millis(30));
    data(&mut c, 6001, 4000);
    assert_eq!(c.conn.info().recv_rtt, Some(Duration::from_millis(30)));
    c.drain();
    // A slower one does not replace it.
    assert_eq!(c.read_all().len(), 4000);
    c.drain();
    c.advance(Duration::from_millis(60));
    data(&mut c, 10_001, 4000);
    assert_eq!(c.conn.info().recv_rtt, Some(Duration::from_millis(30)));

    // A handshake that measured 20 ms: a window that took longer gives way to it.
    let mut c = connect(false, Duration::from_millis(20));
    assert_eq!(c.conn.info().min_rtt, Some(Duration::from_millis(20)));
    c.advance(Duration::from_millis(45));
    data(&mut c, 2001, 4000);
    assert_eq!(c.conn.info().recv_rtt, Some(Duration::from_millis(20)));

    // With timestamps, only their echoes measure: no window timing.
    let ts = Config {
        timestamps: true,
        ..cfg.clone()
    };
    let mut c = receiving_client(ts, true, Duration::ZERO, Some((1, 0)));
    c.advance(Duration::from_millis(45));
    let mut seg = from_server("PSH+ACK", 2001, 101, 65535);
    seg.options.timestamps = Some((2, 0));
    c.input(&seg, &[7; 4000]);
    assert!(c.conn.info().timestamps);
    assert_eq!(c.conn.info().recv_rtt, None);
}

/// The window's timing starts only from an edge no earlier offer reached: an ACK that
/// offers again an edge offered while another measurement ran starts none, since the peer
/// may have sent up to that edge already (Linux's timing, from the edge offered last,
/// would measure 29 ms below).
#[test]
fn recv_rtt_without_timestamps_never_times_an_edge_offered_before() {
    let cfg = fixed_recv_buffer(4000);
    // The handshake measures nothing; its ACK offers 6001.
    let mut c = receiving_client(cfg, true, Duration::from_millis(5), None);
    let data = |c: &mut Endpoint, seq: u32| {
        c.input(&from_server("PSH+ACK", seq, 101, 65535), &[7; 1000]);
    };
    c.advance(Duration::from_millis(30));
    data(&mut c, 2001);
    data(&mut c, 3001);
    c.drain();
    assert_eq!(c.read_all().len(), 2000);
    // Offers 8001 while 6001 is being timed.
    assert_eq!(c.ladder(), ["ACK      S:101 A:4001"]);
    assert_eq!(c.conn.info().recv_window, 4000);
    c.advance(Duration::from_millis(1));
    // Sent under the offer of 6001, which is reached 31 ms after it.
    data(&mut c, 4001);
    data(&mut c, 5001);
    assert_eq!(c.conn.info().recv_rtt, Some(Duration::from_millis(31)));
    // This ACK offers 8001 again: the peer may be sending up to it already.
    assert_eq!(c.ladder(), ["ACK      S:101 A:6001"]);
    c.advance(Duration::from_millis(29));
    // Sent under the offer of 8001, made 30 ms ago.
    data(&mut c, 6001);
    data(&mut c, 7001);
    assert_eq!(c.conn.info().recv_rtt, Some(Duration::from_millis(31)));
}

/// A passive open that went back to LISTEN (a RST in SYN-RECEIVED) and then took a SYN
/// without timestamps starts its window timing from nothing: not from the first SYN's
/// TSval, which would have ended a measurement that never began with a value the peer
/// chose.
#[test]
fn recv_rtt_without_timestamps_after_a_return_to_listen() {
    let cfg = Config {
        timestamps: true,
        ..fixed_recv_buffer(4000)
    };
    let mut s = Endpoint::server(cfg, 2000);
    let mut syn = seg("SYN", 100, 0);
    syn.options.timestamps = Some((44, 0));
    s.input(&syn, &[]);
    s.drain();
    s.input(&seg("RST", 101, 0), &[]);
    assert_eq!(s.conn.state(), State::Listen);
    s.input(&seg("SYN", 500, 0), &[]);
    s.drain();
    s.advance(Duration::from_millis(40));
    s.input(&seg("ACK", 501, 2001), &[]);
    assert_eq!(s.conn.state(), State::Established);
    assert!(!s.conn.info().timestamps);
    s.advance(Duration::from_millis(5));
    s.input(&seg("PSH+ACK", 501, 2001), &[7; 1000]);
    // Nothing timed yet: no edge was offered since the handshake's.
    assert_eq!(s.conn.info().recv_rtt, None);
}

/// A peer that sent past the edge offered (accepted where the buffer had room: here the
/// window field without scaling offers 65,535 of a 100,000-byte buffer) may already have
/// sent up to the next edge offered: that offer starts no timing.
#[test]
fn recv_rtt_without_timestamps_ignores_a_peer_past_the_window() {
    let cfg = fixed_recv_buffer(100_000);
    // The handshake measures nothing; its ACK offers 2001 + 65,535.
    let mut c = receiving_client(cfg, true, Duration::ZERO, None);
    c.advance(Duration::from_millis(10));
    for i in 0..7 {
        c.input(
            &from_server("PSH+ACK", 2001 + i * 10_000, 101, 65535),
            &[7; 10_000],
        );
    }
    // The offered edge was reached (and passed) 10 ms after it was offered.
    assert_eq!(c.conn.info().recv_rtt, Some(Duration::from_millis(10)));
    c.drain(); // offers 72,001 + 28,000
    c.advance(Duration::from_millis(1));
    for i in 0..3 {
        c.input(
            &from_server("PSH+ACK", 72_001 + i * 10_000, 101, 65535),
            &[7; 10_000],
        );
    }
    assert_eq!(c.conn.info().recv_rtt, Some(Duration::from_millis(10)));
}
