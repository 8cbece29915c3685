//! Scripted loss-recovery tests, one mechanism each: RACK's time-based loss marking and its
//! reordering window (RFC 8985 §6), a lost retransmission found without a timeout, tail loss
//! probes (RFC 8985 §7), PRR's sending rate (RFC 6937), undo by DSACK (RFC 3708), DSACK and
//! SACK generation on the receiving side (RFC 2883, RFC 2018), segments that shrink for the
//! SACK blocks they carry (RFC 6691), pacing deadlines, and giving up only after time without
//! progress.

mod common;
use common::*;
use rawtcp::proto::cc::Algorithm;
use rawtcp::proto::{Config, State};
use rawtcp::wire::TcpRepr;
use std::time::Duration;

/// A segment from the server (port 80) to the client, carrying SACK blocks.
fn ack_from_server(ack: u32, sack: &[(u32, u32)]) -> TcpRepr {
    let mut s = seg("ACK", 2001, ack);
    (s.src_port, s.dst_port) = (80, 40000);
    for &(l, r) in sack {
        s.options.sack.push(l, r);
    }
    s
}

/// Settings with SACK and 1000-byte segments, no timestamps or window scaling, so that the
/// numbers stay round.
fn sack_cfg(cc: Algorithm) -> Config {
    Config {
        mss: 1000,
        sack: true,
        congestion: cc,
        ..plain()
    }
}

/// A client (ISN 100) connected to a server (ISN 2000) that offered SACK, at time `at`; the
/// handshake took `rtt`, which is then the connection's SRTT.
fn established_with_sack(cfg: Config, rtt: Duration) -> Endpoint {
    let mut c = Endpoint::client(cfg, 100);
    c.drain();
    let mut synack = seg("SYN+ACK", 2000, 101);
    (synack.src_port, synack.dst_port) = (80, 40000);
    synack.options.mss = Some(1000);
    synack.options.sack_permitted = true;
    c.advance(rtt);
    c.input(&synack, &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert!(c.conn.info().sack);
    c
}

/// Sends `n` full segments at the current time; returns their ladders.
fn send_segments(c: &mut Endpoint, n: usize) -> Vec<String> {
    c.conn.send(&vec![7; n * 1000]).unwrap();
    let out = c.ladder();
    assert_eq!(out.len(), n, "{out:?}");
    out
}

/// RFC 8985 §6.2: once three segments above a hole are SACKed and no reordering was seen,
/// the reordering window is zero and the hole is lost at once — the segment sent before the
/// delivered ones has had its RTT.
#[test]
fn rack_marks_a_hole_lost_once_later_segments_are_sacked() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    send_segments(&mut c, 6);
    c.advance(Duration::from_millis(10));
    // Segment 1 (101..1101) is lost; 2, 3 and 4 arrive.
    c.input(&ack_from_server(101, &[(1101, 2101)]), &[]);
    c.input(&ack_from_server(101, &[(1101, 3101)]), &[]);
    assert_eq!(c.ladder(), Vec::<String>::new(), "two SACKed: wait");
    c.input(&ack_from_server(101, &[(1101, 4101)]), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1000"]);
    let info = c.conn.info();
    assert_eq!(
        (info.ca_state, info.recoveries, info.rack_lost),
        ("recovery", 1, 1000)
    );
    // The retransmission fills the hole; the ACK covering the recovery point ends recovery.
    c.input(&ack_from_server(6101, &[]), &[]);
    let info = c.conn.info();
    assert_eq!(
        (info.ca_state, info.timeouts, info.fast_retransmits),
        ("open", 0, 1)
    );
}

/// A driver may hand the engine a time older than one it has already used (a thread that
/// read the clock before it took the connection in turn): segments built then are stamped
/// no earlier than those sent before them, so that when the first segment is acknowledged
/// RACK does not take the flight sent after it for one sent before, and lost (RFC 8985
/// §6.2, `RACK_sent_after`).
#[test]
fn a_flight_built_with_an_older_time_is_not_deemed_sent_before_its_predecessor() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    send_segments(&mut c, 1);
    // Four more built with a time 5 ms older than the first one's.
    let stale = rawtcp::proto::Instant::from_millis(5);
    c.conn.send(&[7; 4000]).unwrap();
    let mut buf = vec![0u8; 2000];
    let mut sent = 0;
    while c.conn.poll_transmit(stale, &mut buf).is_some() {
        sent += 1;
    }
    assert_eq!(sent, 4);
    // The first is acknowledged one RTT later; the rest are on their way behind it.
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(1101, &[]), &[]);
    assert_eq!(c.ladder(), Vec::<String>::new(), "nothing resent");
    let info = c.conn.info();
    assert_eq!((info.rack_lost, info.retransmissions), (0, 0));
    c.input(&ack_from_server(5101, &[]), &[]);
    assert_eq!(c.conn.info().unacked, 0);
}

/// RFC 8985 §6.2 step 4 and §6.3: with a single segment SACKed the loss might be
/// reordering, so RACK waits a quarter of the minimum RTT (the reordering timer) before it
/// marks the hole lost.
#[test]
fn rack_waits_out_the_reordering_window_with_its_timer() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(40));
    send_segments(&mut c, 2);
    c.advance(Duration::from_millis(40));
    let sacked_at = c.now;
    c.input(&ack_from_server(101, &[(1101, 2101)]), &[]);
    assert_eq!(c.ladder(), Vec::<String>::new());
    // The timer: segment 1 was sent 40 ms ago, RACK.rtt is 40 ms, the window min_rtt/4 =
    // 10 ms: it expires 10 ms from now.
    assert_eq!(
        c.conn.poll_timeout(),
        Some(sacked_at + Duration::from_millis(10))
    );
    c.fire_next();
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1000"]);
    assert_eq!(c.conn.info().rack_lost, 1000);
    assert_eq!(c.conn.info().timeouts, 0);
}

/// RFC 8985 §2: RACK also finds a lost retransmission — when something sent after it is
/// delivered and its RTT has passed — where duplicate ACKs never can; no RTO is needed.
#[test]
fn a_lost_retransmission_is_recovered_without_a_timeout() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 5);
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(101, &[(1101, 4101)]), &[]);
    assert_eq!(
        c.ladder(),
        ["ACK      S:101 A:2001 len=1000"],
        "the fast retransmit"
    );
    // Segment 5 arrives too; new data goes out with the window PRR allows.
    c.input(&ack_from_server(101, &[(1101, 5101)]), &[]);
    c.conn.send(&[8; 1000]).unwrap();
    let new = c.ladder();
    assert_eq!(new, ["PSH+ACK  S:5101 A:2001 len=1000"]);
    // The retransmission is lost; the new segment, sent after it, is SACKed an RTT later.
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(101, &[(5101, 6101), (1101, 5101)]), &[]);
    assert_eq!(
        c.ladder(),
        ["ACK      S:101 A:2001 len=1000"],
        "the retransmission, retransmitted"
    );
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(6101, &[]), &[]);
    let info = c.conn.info();
    assert_eq!(
        (info.timeouts, info.retransmissions, info.bytes_in_flight),
        (0, 2, 0)
    );
    assert_eq!(info.ca_state, "open");
}

/// RFC 8985 §7.2 and §7.3: two smoothed RTTs after the last segment of a flight (plus the
/// worst-case delayed ACK when it is the only one, capped by the RTO), a probe retransmits
/// the last segment when there is nothing new; an ACK beyond the probe without a DSACK shows
/// it repaired a loss and brings the window down once (§7.4.2), without recovery or timeout.
#[test]
fn tail_loss_probe_retransmits_the_last_segment_and_repairs_the_tail() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(20));
    c.conn.set_nodelay(true);
    let sent_at = c.now;
    send_segments(&mut c, 3);
    assert_eq!(
        c.conn.poll_timeout(),
        Some(sent_at + Duration::from_millis(40)),
        "PTO = 2 x SRTT, before the 220 ms RTO"
    );
    // The first two are acknowledged; the last one (the tail) is lost.
    c.advance(Duration::from_millis(20));
    c.input(&ack_from_server(2101, &[]), &[]);
    let acked_at = c.now;
    assert_eq!(
        c.conn.poll_timeout(),
        Some(acked_at + Duration::from_millis(220)),
        "one segment left: PTO = 2 x SRTT + 200 ms = 240 ms, capped by the 220 ms RTO"
    );
    c.fire_next();
    assert_eq!(c.ladder(), ["PSH+ACK  S:2101 A:2001 len=1000"], "the probe");
    assert_eq!(c.conn.info().timeouts, 0, "the probe, not a timeout");
    // More data follows the probe; one ACK covers both, with no DSACK: the original tail was
    // lost and the probe repaired it.
    c.conn.send(&[3; 500]).unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:3101 A:2001 len=500"]);
    let before = c.conn.info().cwnd;
    c.input(&ack_from_server(3601, &[]), &[]);
    let info = c.conn.info();
    assert_eq!(
        (info.tlp_probes, info.tlp_recoveries, info.timeouts),
        (1, 1, 0)
    );
    assert!(
        info.cwnd < before,
        "the repaired loss reduces the window once"
    );
    assert_eq!(info.ca_state, "open");
}

/// RFC 8985 §7.3: with unsent data the peer's window allows, the probe is new data, and a
/// DSACK for a retransmitted probe means both copies arrived: no reduction.
#[test]
fn tail_loss_probe_sends_new_data_first_and_a_dsack_means_no_loss() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(20));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 10);
    c.conn.send(&[1; 500]).unwrap();
    assert_eq!(
        c.ladder(),
        Vec::<String>::new(),
        "the initial window is full"
    );
    c.fire_next();
    assert_eq!(
        c.ladder(),
        ["PSH+ACK  S:10101 A:2001 len=500"],
        "a probe of new data, regardless of the congestion window"
    );
    // A probe that retransmits: the last segment again, and the peer had it (DSACK).
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(20));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 2);
    c.fire_next();
    assert_eq!(c.ladder(), ["PSH+ACK  S:1101 A:2001 len=1000"]);
    let before = c.conn.info().cwnd;
    c.input(&ack_from_server(2101, &[(1101, 2101)]), &[]);
    let info = c.conn.info();
    assert_eq!((info.tlp_recoveries, info.dsacks_received), (0, 1));
    assert_eq!(info.cwnd, before);
}

/// RFC 6937 §3: while the flight exceeds ssthresh, PRR sends in proportion to what is
/// delivered — NewReno halves the flight, so one segment goes for every two delivered — and
/// the flight ends at ssthresh.
#[test]
fn prr_sends_one_segment_for_every_two_delivered() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    // Grow the window to 20 segments: 10 acknowledged in slow start.
    send_segments(&mut c, 10);
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(10101, &[]), &[]);
    assert_eq!(c.conn.info().cwnd, 20_000);
    c.conn.send(&vec![2; 40_000]).unwrap();
    assert_eq!(c.ladder().len(), 20);
    // 10101..11101 is lost; the rest arrive one by one.
    c.advance(Duration::from_millis(10));
    let mut sent = Vec::new();
    for k in 1..=19u32 {
        c.input(&ack_from_server(10101, &[(11101, 11101 + 1000 * k)]), &[]);
        sent.push(c.ladder().len());
    }
    let info = c.conn.info();
    // Before recovery each SACKed segment left the network, making room for a new one
    // (RFC 6675 §5's pipe, the effect of limited transmit): the flight is 22 segments when
    // the third SACK starts recovery, and NewReno's ssthresh half of that.
    assert_eq!(&sent[..2], &[1, 1], "{sent:?}");
    assert_eq!(info.ssthresh, 11_000);
    // In recovery: the forced fast retransmit, then sends in proportion to deliveries,
    // ceil(prr_delivered * 11 / 22) - prr_out: one for every two delivered.
    assert_eq!(&sent[2..8], &[1, 0, 0, 1, 0, 1], "{sent:?}");
    assert_eq!(sent[2..].iter().sum::<usize>(), 9, "ceil(17 * 11 / 22)");
    assert_eq!(info.bytes_in_flight, 11_000, "the flight ends at ssthresh");
    assert_eq!(info.ca_state, "recovery");
}

/// RFC 3708 §3 with the RFC 4015 response: when a DSACK shows the only retransmission of a
/// recovery arrived twice (the original was merely reordered), the window comes back.
#[test]
fn dsack_of_every_retransmission_undoes_the_recovery() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 8);
    let before = c.conn.info().cwnd;
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(101, &[(1101, 4101)]), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1000"]);
    assert!(c.conn.info().ssthresh < u32::MAX);
    // The original arrives (reordered), then the retransmission: the peer reports it twice.
    c.input(&ack_from_server(8101, &[]), &[]);
    c.input(&ack_from_server(8101, &[(101, 1101)]), &[]);
    let info = c.conn.info();
    assert_eq!((info.dsacks_received, info.spurious_retransmits), (1, 1));
    assert!(
        info.cwnd >= before,
        "window restored: {} < {before}",
        info.cwnd
    );
    assert_eq!(info.ssthresh, u32::MAX, "threshold restored");
}

/// RFC 2883 §4: data received twice is reported in the first SACK block of the next ACK,
/// which leaves at once; out-of-order blocks follow the most recent arrival first (RFC 2018
/// §4).
#[test]
fn the_receiver_reports_duplicates_and_recent_blocks_first() {
    let mut c = established_with_sack(sack_cfg(Algorithm::Cubic), Duration::from_millis(10));
    let from = |seq: u32| {
        let mut s = seg("ACK", seq, 101);
        (s.src_port, s.dst_port) = (80, 40000);
        s
    };
    c.input(&from(2001), &[1; 100]);
    c.input(&from(2001), &[1; 100]);
    let out = c.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0.options.sack.as_slice(),
        &[(2001, 2101)],
        "a D-SACK"
    );
    assert!(!c.conn.ack_urgent());
    assert_eq!(c.conn.info().dsacks_sent, 1);
    // Two holes; the latest arrival's block comes first.
    c.input(&from(2301), &[2; 100]);
    assert!(
        c.conn.ack_urgent(),
        "an out-of-order arrival is acknowledged at once"
    );
    c.drain();
    c.input(&from(2601), &[3; 100]);
    let out = c.drain();
    assert_eq!(
        out[0].0.options.sack.as_slice(),
        &[(2601, 2701), (2301, 2401)]
    );
    c.input(&from(2301), &[2; 100]);
    let out = c.drain();
    assert_eq!(
        out[0].0.options.sack.as_slice(),
        &[(2301, 2401), (2301, 2401), (2601, 2701)],
        "a duplicate of held data: the D-SACK, then the block holding it"
    );
}

/// RFC 6691 / RFC 9293 §3.7.1: a data segment carries less payload when it also carries
/// SACK blocks, so that the packet still fits the MTU the MSS came from.
#[test]
fn segments_shrink_for_the_sack_blocks_they_carry() {
    let mut c = established_with_sack(sack_cfg(Algorithm::Cubic), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    let mut from = seg("ACK", 2101, 101);
    (from.src_port, from.dst_port) = (80, 40000);
    c.input(&from, &[9; 100]); // out of order: a SACK block is now owed
    c.conn.send(&[0; 3000]).unwrap();
    let out = c.drain();
    let sizes: Vec<(usize, usize)> = out
        .iter()
        .map(|(r, p)| (r.options.sack.len(), p.len()))
        .collect();
    // One block takes 4 + 8 bytes of options: 988 bytes of payload in a 1000-byte MSS.
    assert_eq!(sizes, [(1, 988), (1, 988), (1, 988), (1, 36)]);
    for (r, p) in &out {
        assert!(
            r.header_len() - 20 + p.len() <= 1000,
            "{} + {}",
            r.header_len(),
            p.len()
        );
    }
}

/// Pacing (BBR): data segments leave no faster than the pacing rate, the connection's
/// next deadline saying when the next one may go.
#[test]
fn pacing_spaces_segments_by_the_pacing_rate() {
    let mut c = established_with_sack(sack_cfg(Algorithm::Bbr), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    let rate = c.conn.info().pacing_rate.expect("BBR paces");
    c.conn.send(&[0; 20_000]).unwrap();
    // The first burst: what the 1 ms of credit allows, at least one segment.
    let first = c.ladder().len();
    assert!(first >= 1);
    let gap = Duration::from_nanos(1000 * 1_000_000_000 / rate);
    let deadline = c.conn.poll_timeout().expect("a pacing deadline");
    assert!(deadline > c.now, "the next segment waits");
    assert!(
        deadline - c.now <= gap + Duration::from_micros(1),
        "{:?} > {gap:?}",
        deadline - c.now
    );
    c.advance_to(deadline);
    let next = c.ladder();
    assert!(!next.is_empty(), "the deadline lets the next segment go");
}

/// Giving up counts time without progress (Linux's `tcp_retries2` as a time, 924.6 s): a
/// connection whose data is acknowledged now and then never times out, however many RTOs
/// it has, and one that hears nothing gives up after that time.
#[test]
fn giving_up_counts_time_without_progress() {
    let cfg = sack_cfg(Algorithm::Cubic);
    let mut c = established_with_sack(cfg.clone(), Duration::from_millis(10));
    c.conn.send(&[0; 1000]).unwrap();
    c.drain();
    let start = c.now;
    while c.conn.state() == State::Established {
        c.fire_next();
        c.drain();
        assert!(c.now - start < Duration::from_secs(2000), "never gave up");
    }
    let took = c.now - start;
    assert!(
        took >= Duration::from_millis(924_600) && took < Duration::from_secs(1000),
        "{took:?}"
    );
    assert_eq!(c.conn.error(), Some(rawtcp::proto::Error::TimedOut));

    // Progress now and then keeps it alive through any number of timeouts.
    let mut c = established_with_sack(cfg, Duration::from_millis(10));
    let mut una = 101u32;
    for _ in 0..40 {
        c.conn.send(&[0; 1000]).unwrap();
        c.drain();
        // Five timeouts (other timers, like the idle release of buffers, may fire between).
        let target = c.conn.info().timeouts + 5;
        while c.conn.info().timeouts < target {
            c.fire_next();
            c.drain();
        }
        una += 1000;
        c.input(&ack_from_server(una, &[]), &[]);
    }
    let info = c.conn.info();
    assert_eq!(info.state, State::Established);
    assert!(info.timeouts >= 200, "{}", info.timeouts);
}

// Regressions found in review.

/// Reneging (RFC 2018 §8) is judged only on ACKs that advance SND.UNA, and a SACK block must
/// lie above the cumulative ACK: a peer repeating `ACK 101, SACK 101-1101` cannot defer the
/// RTO for ever (Linux fixed the same hole in 2022).
#[test]
fn sack_reneging_without_progress_cannot_defer_the_rto() {
    let mut c = established_with_sack(sack_cfg(Algorithm::Cubic), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 3);
    let start = c.now;
    while c.now - start < Duration::from_secs(2000) {
        c.advance(Duration::from_millis(5));
        c.input(&ack_from_server(101, &[(101, 1101)]), &[]);
        c.drain();
        if c.conn.state() != State::Established {
            break;
        }
    }
    let info = c.conn.info();
    assert!(
        info.timeouts > 0 && c.conn.state() == State::Closed,
        "2000 s without progress: timeouts {} retransmissions {} state {} reneged {}",
        info.timeouts,
        info.retransmissions,
        c.conn.state(),
        info.reneged
    );
}

/// RFC 8985 §7.4.2: an ACK reaching exactly the probe's end may be the late ACK of the
/// original; the probe's DSACK that follows shows nothing was lost, and the window stays.
#[test]
fn a_late_ack_of_the_original_tail_is_not_a_repaired_loss() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(20));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 3);
    c.advance(Duration::from_millis(20));
    c.input(&ack_from_server(2101, &[]), &[]);
    c.fire_next();
    assert_eq!(c.ladder(), ["PSH+ACK  S:2101 A:2001 len=1000"], "the probe");
    let before = c.conn.info().cwnd;
    c.input(&ack_from_server(3101, &[]), &[]);
    c.input(&ack_from_server(3101, &[(2101, 3101)]), &[]);
    let info = c.conn.info();
    assert_eq!((info.tlp_recoveries, info.cwnd), (0, before));
}

/// RFC 3708 §3: only DSACKs for retransmissions count towards undoing a recovery; a
/// network-duplicated original (reported inside the second block, RFC 2883 §4) above SND.UNA
/// must not undo the response to a real loss.
#[test]
fn a_duplicated_original_does_not_undo_a_real_loss() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 8);
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(101, &[(1101, 4101)]), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1000"]);
    assert_eq!(c.conn.info().ca_state, "recovery");
    c.input(&ack_from_server(101, &[(2101, 3101), (1101, 4101)]), &[]);
    let info = c.conn.info();
    assert_eq!((info.spurious_retransmits, info.ca_state), (0, "recovery"));
}

/// SACK blocks with edges inside segments do not split them (as Linux's
/// `tcp_match_skb_to_sack`): a peer SACKing every other byte cannot shred 10 segments into
/// thousands of records, each later retransmitted as a 1-byte segment.
#[test]
fn sack_blocks_cannot_shred_segments_into_single_bytes() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 10);
    c.advance(Duration::from_millis(10));
    let mut blocks: Vec<(u32, u32)> = (0..5000u32).map(|k| (102 + 2 * k, 103 + 2 * k)).collect();
    blocks.reverse();
    for chunk in blocks.chunks(4) {
        c.input(&ack_from_server(101, chunk), &[]);
        c.drain();
    }
    let mut sizes = Vec::new();
    for _ in 0..20 {
        c.fire_next();
        for (_, p) in c.drain() {
            sizes.push(p.len());
        }
        if sizes.len() >= 20 {
            break;
        }
    }
    let tiny = sizes.iter().filter(|&&n| n < 100).count();
    assert!(
        tiny < 5,
        "retransmission sizes: {:?}",
        &sizes[..sizes.len().min(20)]
    );
    assert_eq!(c.conn.info().sacked, 0, "no whole segment was SACKed");
}

/// A FIN queued while the last data segment waits to be resent goes out once, recorded as
/// new data, so the peer's ACK of it is accepted.
#[test]
fn a_fin_first_sent_on_a_retransmission_is_recorded() {
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    send_segments(&mut c, 3);
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(101, &[(1101, 2101)]), &[]);
    c.fire_next(); // the reordering window
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001 len=1000"]);
    // The retransmission arrives, after which the last segment, sent before it, is lost.
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(2101, &[]), &[]);
    c.conn.shutdown().unwrap();
    let out = c.ladder();
    assert!(
        out.iter()
            .any(|s| s.contains("S:2101") && s.contains("len=1000")),
        "{out:?}"
    );
    assert_eq!(
        out.iter().filter(|s| s.starts_with("FIN")).count(),
        1,
        "the FIN is sent once: {out:?}"
    );
    c.advance(Duration::from_millis(10));
    c.input(&ack_from_server(3102, &[]), &[]);
    assert_eq!(c.conn.state(), State::FinWait2);
}

/// Every transmitted segment says what it is: new data, control, or a retransmission with
/// its cause — what taps, captures and graphs show.
#[test]
fn transmissions_say_why_they_are_sent() {
    use rawtcp::proto::{RetransmitCause, SegmentKind};
    fn kinds(c: &mut Endpoint) -> Vec<SegmentKind> {
        let mut buf = vec![0u8; 70_000];
        let mut out = Vec::new();
        while let Some(t) = c.conn.poll_transmit(c.now, &mut buf) {
            out.push(t.kind);
        }
        out
    }
    let mut c = established_with_sack(sack_cfg(Algorithm::NewReno), Duration::from_millis(10));
    c.conn.set_nodelay(true);
    c.conn.send(&[0; 4000]).unwrap();
    assert_eq!(kinds(&mut c), [SegmentKind::New; 4]);
    c.advance(Duration::from_millis(10));
    // Segment 1 lost, 2..4 SACKed: a fast retransmission.
    c.input(&ack_from_server(101, &[(1101, 4101)]), &[]);
    assert_eq!(
        kinds(&mut c),
        [SegmentKind::Retransmission(RetransmitCause::Fast)]
    );
    // Nothing more arrives: the timer resends it.
    c.fire_next();
    assert_eq!(
        kinds(&mut c),
        [SegmentKind::Retransmission(RetransmitCause::Timeout)]
    );
    c.input(&ack_from_server(4101, &[]), &[]);
    // A lone segment whose ACK does not come: the tail loss probe.
    c.conn.send(&[0; 1000]).unwrap();
    assert_eq!(kinds(&mut c), [SegmentKind::New]);
    c.fire_next();
    assert_eq!(
        kinds(&mut c),
        [SegmentKind::Retransmission(RetransmitCause::LossProbe)]
    );
    // A bare ACK is control.
    let mut data = seg("ACK", 2001, 5101);
    (data.src_port, data.dst_port) = (80, 40000);
    c.input(&data, &[1; 1000]);
    c.input(&data, &[1; 1000]);
    assert_eq!(kinds(&mut c), [SegmentKind::Control]);
}
