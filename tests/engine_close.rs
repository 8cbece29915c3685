//! Scripted segment tests for the end of a connection and its defences: closing (active,
//! passive, simultaneous, half-close, TIME-WAIT), RST and RFC 5961's challenge ACKs, abort and
//! close, urgent data, keepalive, the retransmission limits and PAWS.
//!
//! Each test reads "at time T this segment arrives; exactly these segments leave; the next
//! deadline is D". Unless a test is about an option, the engines run the `plain()` config with
//! fixed ISNs: the client under test uses ISN 100, its peer ISN 2000.

mod common;
use common::*;
use rawtcp::proto::{reset_for, Config, Error, Instant, Keepalive, State};
use rawtcp::wire::TcpRepr;
use std::time::Duration;

/// The empty ladder: nothing leaves.
const NOTHING: [&str; 0] = [];

/// The RTT of the hand-written handshake: the SYN+ACK arrives 100 ms after the SYN left.
const HANDSHAKE_RTT: Duration = Duration::from_millis(100);

/// The RTO after that single sample: SRTT + 4 × RTTVAR = 100 ms + 4 × 50 ms (RFC 6298 §2.2).
const RTO: Duration = Duration::from_millis(300);

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// One microsecond before `t`.
fn just_before(t: Instant) -> Instant {
    Instant::from_micros(t.as_micros() - 1)
}

/// A segment from the server's port to the client's: what the peer of a client under test
/// sends.
fn peer(f: &str, seq: u32, ack: u32) -> TcpRepr {
    let mut s = seg(f, seq, ack);
    std::mem::swap(&mut s.src_port, &mut s.dst_port);
    s
}

/// The peer's SYN+ACK (ISN 2000, MSS 1460) answering the client's SYN with ISN 100.
fn syn_ack() -> TcpRepr {
    let mut s = peer("SYN+ACK", 2000, 101);
    s.options.mss = Some(1460);
    s
}

/// Segments in ladder notation.
fn ladder_of(segments: &[(TcpRepr, Vec<u8>)]) -> Vec<String> {
    segments
        .iter()
        .map(|(r, p)| r.ladder(p.len()).to_string())
        .collect()
}

/// A client (ISN 100) whose handshake with a peer (ISN 2000) completed at 100 ms, one RTT
/// after its SYN left at 0: RCV.NXT = 2001, SND.NXT = SND.UNA = 101, RTO = 300 ms.
fn established_client(cfg: Config) -> Endpoint {
    let mut c = Endpoint::client(cfg, 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    c.advance_to(Instant::ZERO + HANDSHAKE_RTT);
    c.input(&syn_ack(), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::Established);
    assert_eq!(c.conn.info().rto, RTO);
    c
}

/// Moves a connection established by `established_client` to FIN-WAIT-2 at 1 s / 1.1 s.
fn fin_wait_2_client() -> Endpoint {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.conn.shutdown().unwrap();
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2001"]);
    c.advance_to(ms(1100));
    c.input(&peer("ACK", 2001, 102), &[]);
    assert_eq!(c.conn.state(), State::FinWait2);
    c
}

// ---- closing ---------------------------------------------------------------------------------

/// RFC 9293 §3.6 (case 1) and §3.10.7.4: CLOSE sends FIN (FIN-WAIT-1), its ACK leads to
/// FIN-WAIT-2, the peer's FIN is acknowledged and starts TIME-WAIT for 2 × MSL, after which
/// the connection is CLOSED.
#[test]
fn active_close_goes_through_fin_wait_and_time_wait() {
    let mut c = established_client(plain());
    assert_eq!(c.conn.poll_timeout(), None);

    // At 1 s the application shuts down: FIN leaves, timed by the retransmission timer.
    c.advance_to(ms(1000));
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::FinWait1);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1000) + RTO));

    // At 1.1 s the FIN's ACK arrives: FIN-WAIT-2, nothing to send, no timer.
    c.advance_to(ms(1100));
    c.input(&peer("ACK", 2001, 102), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::FinWait2);
    assert_eq!(c.conn.poll_timeout(), None);

    // At 1.2 s the peer's FIN arrives: it is acknowledged at once and TIME-WAIT begins.
    c.advance_to(ms(1200));
    c.input(&peer("FIN+ACK", 2001, 102), &[]);
    assert_eq!(c.ladder(), ["ACK      S:102 A:2002"]);
    assert_eq!(c.conn.state(), State::TimeWait);
    let deadline = ms(1200) + c.conn.config().time_wait;
    assert_eq!(deadline, ms(61_200));
    assert_eq!(c.conn.poll_timeout(), Some(deadline));
    assert!(!c.conn.is_closed());

    // One microsecond early, nothing happens.
    c.advance_to(just_before(deadline));
    assert_eq!(c.conn.state(), State::TimeWait);
    assert_eq!(c.ladder(), NOTHING);

    // At 2 × MSL the connection is gone, quietly and without error.
    c.advance_to(deadline);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.error(), None);
    assert_eq!(c.conn.poll_timeout(), None);
    assert_eq!(c.ladder(), NOTHING);
}

/// RFC 9293 §3.6 (case 1, the other side) and §3.10.7.4: the peer's FIN is acknowledged and
/// leads to CLOSE-WAIT, where reads report end of stream; our CLOSE sends FIN (LAST-ACK), and
/// its ACK closes the connection.
#[test]
fn passive_close_goes_through_close_wait_and_last_ack() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.input(&peer("FIN+ACK", 2001, 101), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2002"]);
    assert_eq!(c.conn.state(), State::CloseWait);
    assert_eq!(c.conn.poll_timeout(), None);
    let mut buf = [0u8; 64];
    assert_eq!(c.conn.recv(&mut buf), Ok(0));
    assert_eq!(c.conn.recv(&mut buf), Ok(0));

    c.advance_to(ms(1500));
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2002"]);
    assert_eq!(c.conn.state(), State::LastAck);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1500) + RTO));

    c.advance_to(ms(1600));
    c.input(&peer("ACK", 2002, 102), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.error(), None);
    assert_eq!(c.conn.poll_timeout(), None);
}

/// RFC 9293 §3.6 (case 2, figure 13): both sides close at once, the FINs cross, each side
/// goes FIN-WAIT-1 → CLOSING → TIME-WAIT, and both wait 2 × MSL.
#[test]
fn simultaneous_close_goes_through_closing() {
    let mut p = Pair::new(plain(), 100, plain(), 2000);
    p.settle();
    assert_eq!(
        p.take_log(),
        [
            "client -> server  SYN      S:100 A:0",
            "server -> client  SYN+ACK  S:2000 A:101",
            "client -> server  ACK      S:101 A:2001",
        ]
    );
    assert_eq!(p.client.conn.state(), State::Established);
    assert_eq!(p.server.conn.state(), State::Established);

    assert_eq!(p.client.conn.shutdown(), Ok(()));
    assert_eq!(p.server.conn.shutdown(), Ok(()));
    let client_fin = p.client.drain();
    let server_fin = p.server.drain();
    assert_eq!(ladder_of(&client_fin), ["FIN+ACK  S:101 A:2001"]);
    assert_eq!(ladder_of(&server_fin), ["FIN+ACK  S:2001 A:101"]);
    assert_eq!(p.client.conn.state(), State::FinWait1);
    assert_eq!(p.server.conn.state(), State::FinWait1);

    // The FINs cross: each acknowledges the other's and enters CLOSING.
    p.server.input(&client_fin[0].0, &[]);
    p.client.input(&server_fin[0].0, &[]);
    assert_eq!(p.client.conn.state(), State::Closing);
    assert_eq!(p.server.conn.state(), State::Closing);
    let client_ack = p.client.drain();
    let server_ack = p.server.drain();
    assert_eq!(ladder_of(&client_ack), ["ACK      S:102 A:2002"]);
    assert_eq!(ladder_of(&server_ack), ["ACK      S:2002 A:102"]);

    // The ACKs arrive 10 ms later: both enter TIME-WAIT.
    p.client.advance_to(ms(10));
    p.server.advance_to(ms(10));
    p.server.input(&client_ack[0].0, &[]);
    p.client.input(&server_ack[0].0, &[]);
    assert_eq!(p.client.conn.state(), State::TimeWait);
    assert_eq!(p.server.conn.state(), State::TimeWait);
    assert_eq!(p.client.ladder(), NOTHING);
    assert_eq!(p.server.ladder(), NOTHING);
    assert_eq!(p.client.conn.poll_timeout(), Some(ms(60_010)));
    assert_eq!(p.server.conn.poll_timeout(), Some(ms(60_010)));

    p.advance_to(ms(60_010));
    assert!(p.client.conn.is_closed());
    assert!(p.server.conn.is_closed());
    assert_eq!(p.take_log(), NOTHING);
}

/// RFC 9293 §3.10.4 (CLOSE in ESTABLISHED: "Data can still be received") and §3.10.2 (SEND
/// after CLOSE is an error): after our FIN we still receive and read the peer's data, while
/// sending fails with `BrokenPipe`.
#[test]
fn half_close_still_receives() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.conn.shutdown().unwrap();
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2001"]);
    assert_eq!(c.conn.send(b"late"), Err(Error::BrokenPipe));

    // At 1.1 s the peer acknowledges our FIN and sends 100 bytes: they are received, and
    // acknowledged within the delayed-ACK time.
    c.advance_to(ms(1100));
    c.input(&peer("PSH+ACK", 2001, 102), &[b'x'; 100]);
    assert_eq!(c.conn.state(), State::FinWait2);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1140)));
    assert_eq!(c.read_all(), vec![b'x'; 100]);
    assert_eq!(c.conn.send(b"late"), Err(Error::BrokenPipe));

    // The peer's FIN follows: one ACK covers data and FIN.
    c.input(&peer("FIN+ACK", 2101, 102), &[]);
    assert_eq!(c.ladder(), ["ACK      S:102 A:2102"]);
    assert_eq!(c.conn.state(), State::TimeWait);
    let mut buf = [0u8; 16];
    assert_eq!(c.conn.recv(&mut buf), Ok(0));
}

/// RFC 9293 §3.10.4 (CLOSE: "queue this until all preceding SENDs have been segmentized, then
/// form a FIN segment and send it"): the FIN does not wait for the ACK of data already sent,
/// and the retransmission timer started by that data keeps running.
#[test]
fn fin_follows_unacknowledged_data_at_once() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    assert_eq!(c.conn.send(&[b'd'; 100]), Ok(100));
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1000) + RTO));

    c.advance_to(ms(1050));
    c.conn.shutdown().unwrap();
    assert_eq!(c.ladder(), ["FIN+ACK  S:201 A:2001"]);
    assert_eq!(c.conn.state(), State::FinWait1);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1000) + RTO));

    c.advance_to(ms(1100));
    c.input(&peer("ACK", 2001, 202), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::FinWait2);
    assert_eq!(c.conn.poll_timeout(), None);
}

/// RFC 9293 §3.10.4 and §3.9.1 (the FIN occupies the sequence number after the last data
/// octet): data and FIN queued together leave with the FIN on the last data segment.
#[test]
fn fin_rides_on_the_last_data_segment() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    assert_eq!(c.conn.send(&[b'd'; 100]), Ok(100));
    c.conn.shutdown().unwrap();
    assert_eq!(c.ladder(), ["FIN+PSH+ACK S:101 A:2001 len=100"]);
    assert_eq!(c.conn.state(), State::FinWait1);
    c.advance_to(ms(1100));
    c.input(&peer("ACK", 2001, 202), &[]);
    assert_eq!(c.conn.state(), State::FinWait2);

    // More than one segment's worth: the FIN rides on the second, the last.
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    assert_eq!(c.conn.send(&[b'e'; 2000]), Ok(2000));
    c.conn.shutdown().unwrap();
    assert_eq!(
        c.ladder(),
        [
            "ACK      S:101 A:2001 len=1460",
            "FIN+PSH+ACK S:1561 A:2001 len=540"
        ]
    );
    c.advance_to(ms(1100));
    c.input(&peer("ACK", 2001, 2102), &[]);
    assert_eq!(c.conn.state(), State::FinWait2);
    assert_eq!(c.conn.poll_timeout(), None);
}

/// RFC 9293 §3.10.4 (CLOSE in FIN-WAIT-1/2, CLOSING, LAST-ACK, TIME-WAIT: "connection closing",
/// nothing more is sent): shutting down again sends no second FIN and restarts no timer.
#[test]
fn shutdown_is_idempotent() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2001"]);
    c.advance_to(ms(1050));
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::FinWait1);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1000) + RTO));

    c.advance_to(ms(1100));
    c.input(&peer("ACK", 2001, 102), &[]);
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::FinWait2);

    c.input(&peer("FIN+ACK", 2001, 102), &[]);
    assert_eq!(c.ladder(), ["ACK      S:102 A:2002"]);
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::TimeWait);
    assert_eq!(c.conn.poll_timeout(), Some(ms(61_100)));

    // And on the passive side: a second shutdown in LAST-ACK sends nothing.
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.input(&peer("FIN+ACK", 2001, 101), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2002"]);
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2002"]);
    assert_eq!(c.conn.shutdown(), Ok(()));
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::LastAck);
}

/// RFC 9293 §3.10.7.4 (TIME-WAIT, eighth: "The only thing that can arrive in this state is a
/// retransmission of the remote FIN. Acknowledge it, and restart the 2 MSL timeout").
#[test]
fn retransmitted_fin_in_time_wait_is_acked_and_restarts_the_timer() {
    let mut c = fin_wait_2_client();
    c.advance_to(ms(1200));
    c.input(&peer("FIN+ACK", 2001, 102), &[]);
    assert_eq!(c.ladder(), ["ACK      S:102 A:2002"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(61_200)));

    // 30 s later our ACK was evidently lost: the FIN comes again.
    c.advance_to(ms(31_200));
    assert_eq!(c.conn.state(), State::TimeWait);
    c.input(&peer("FIN+ACK", 2001, 102), &[]);
    assert_eq!(c.ladder(), ["ACK      S:102 A:2002"]);
    assert_eq!(c.conn.state(), State::TimeWait);
    assert_eq!(c.conn.poll_timeout(), Some(ms(91_200)));

    // The old deadline passes without effect; the new one closes.
    c.advance_to(ms(61_200));
    assert_eq!(c.conn.state(), State::TimeWait);
    c.advance_to(ms(91_200));
    assert!(c.conn.is_closed());
    assert_eq!(c.ladder(), NOTHING);
}

/// RFC 9293 §3.10.7.4 (seventh/eighth: segments are processed in sequence order, and "FIN
/// implies PUSH for any segment text not yet delivered"; a FIN past a hole cannot be
/// consumed): a FIN on a segment beyond a gap is taken only once the gap fills.
#[test]
fn fin_beyond_a_gap_is_consumed_when_the_gap_fills() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    // 2101..2201 and the FIN arrive; 2001..2101 is missing.
    c.input(&peer("FIN+PSH+ACK", 2101, 101), &[b'b'; 100]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::Established);
    let mut buf = [0u8; 512];
    assert_eq!(c.conn.recv(&mut buf), Err(Error::WouldBlock));
    assert!(!c.conn.can_recv());

    // The hole fills: data and FIN are consumed together and acknowledged at once.
    c.advance_to(ms(1010));
    c.input(&peer("PSH+ACK", 2001, 101), &[b'a'; 100]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2202"]);
    assert_eq!(c.conn.state(), State::CloseWait);
    let mut expected = vec![b'a'; 100];
    expected.extend_from_slice(&[b'b'; 100]);
    assert_eq!(c.read_all(), expected);
    assert_eq!(c.conn.recv(&mut buf), Ok(0));
}

/// RFC 9293 §3.8.1 / RFC 6298 §5.4–5.5: a FIN is retransmitted like data when its ACK is
/// lost, with the RTO doubled.
#[test]
fn fin_is_retransmitted_when_its_ack_is_lost() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.conn.shutdown().unwrap();
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2001"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1300)));

    c.advance_to(just_before(ms(1300)));
    assert_eq!(c.ladder(), NOTHING);
    c.advance_to(ms(1300));
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::FinWait1);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1900)));

    c.advance_to(ms(1400));
    c.input(&peer("ACK", 2001, 102), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::FinWait2);
    assert_eq!(c.conn.poll_timeout(), None);
}

// ---- RST ---------------------------------------------------------------------------------------

/// RFC 9293 §3.10.7.4 (second, ESTABLISHED: RECEIVEs and SENDs get "reset", queues are
/// flushed, CLOSED) with RFC 5961 §3.2 (a RST whose sequence number is exactly RCV.NXT).
#[test]
fn exact_rst_resets_an_established_connection() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.input(&peer("PSH+ACK", 2001, 101), &[b'x'; 100]);
    assert_eq!(c.conn.recv_queue(), 100);
    c.advance_to(ms(1010));
    c.input(&peer("RST", 2101, 0), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.error(), Some(Error::ConnectionReset));
    assert_eq!(c.conn.poll_timeout(), None);
    let mut buf = [0u8; 512];
    assert_eq!(c.conn.recv(&mut buf), Err(Error::ConnectionReset));
    assert_eq!(c.conn.send(b"x"), Err(Error::ConnectionReset));
}

/// RFC 5961 §3.2 (2): a RST in the window but not at RCV.NXT draws a challenge ACK
/// `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>` and the connection stays. (Each arrives 500 ms
/// after the last: challenge ACKs are rate-limited, see `challenge_acks_are_rate_limited`.)
#[test]
fn inexact_rst_in_window_draws_a_challenge_ack() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    for seq in [2002, 3001, 2001 + 65_534] {
        c.advance(Duration::from_millis(500));
        c.input(&peer("RST", seq, 0), &[]);
        assert_eq!(c.ladder(), ["ACK      S:101 A:2001"], "RST at {seq}");
        assert_eq!(c.conn.state(), State::Established);
        assert_eq!(c.conn.error(), None);
    }
    // The genuine peer answers the challenge with the exact RST, which is taken.
    c.input(&peer("RST", 2001, 0), &[]);
    assert_eq!(c.conn.error(), Some(Error::ConnectionReset));
}

/// RFC 5961 §3.2 (1) and RFC 9293 §3.10.7.4 (first: an unacceptable RST is dropped): a RST
/// outside the receive window is ignored and nothing is sent.
#[test]
fn rst_outside_the_window_is_ignored() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    for seq in [2000, 1, 2001 + 65_535, 2001 + 1_000_000] {
        c.input(&peer("RST", seq, 0), &[]);
        assert_eq!(c.ladder(), NOTHING, "RST at {seq}");
        assert_eq!(c.conn.state(), State::Established);
        assert_eq!(c.conn.error(), None);
    }
    assert_eq!(c.conn.send(b"still"), Ok(5));
}

/// RFC 9293 §3.10.7.3 (SYN-SENT: a RST whose ACK acknowledges our SYN means the connection
/// was refused; with an unacceptable ACK it is dropped).
#[test]
fn rst_answering_our_syn_refuses_the_connection() {
    let mut c = Endpoint::client(plain(), 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    c.advance_to(ms(50));
    // SEG.ACK =< ISS: not for our SYN.
    c.input(&peer("RST+ACK", 0, 100), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::SynSent);

    c.input(&peer("RST+ACK", 0, 101), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.error(), Some(Error::ConnectionRefused));
    assert_eq!(c.conn.poll_timeout(), None);
    let mut buf = [0u8; 16];
    assert_eq!(c.conn.recv(&mut buf), Err(Error::ConnectionRefused));
    assert_eq!(c.conn.send(b"x"), Err(Error::ConnectionRefused));
}

/// RFC 9293 §3.10.7.3 (SYN-SENT: "If the ACK bit is off, drop the segment and return") and
/// RFC 5961 §3.2: a RST without ACK in SYN-SENT is ignored; the SYN timer runs on.
#[test]
fn rst_without_ack_in_syn_sent_is_ignored() {
    let mut c = Endpoint::client(plain(), 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1000)));
    c.advance_to(ms(50));
    c.input(&peer("RST", 0, 0), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::SynSent);
    assert_eq!(c.conn.error(), None);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1000)));

    // The real SYN+ACK still completes the handshake.
    c.advance_to(ms(100));
    c.input(&syn_ack(), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::Established);
}

/// RFC 9293 §3.10.7.4 (second, SYN-RECEIVED: "If this connection was initiated with a passive
/// OPEN (i.e., came from the LISTEN state), then return this connection to LISTEN state and
/// return. The user need not be informed.").
#[test]
fn rst_in_syn_received_after_passive_open_returns_to_listen() {
    let mut s = Endpoint::server(plain(), 2000);
    let mut syn = seg("SYN", 100, 0);
    syn.options.mss = Some(1460);
    s.input(&syn, &[]);
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    assert_eq!(s.conn.state(), State::SynReceived);
    assert_eq!(s.conn.poll_timeout(), Some(ms(1000)));

    s.advance_to(ms(100));
    s.input(&seg("RST", 101, 0), &[]);
    assert_eq!(s.ladder(), NOTHING);
    assert_eq!(s.conn.state(), State::Listen);
    assert_eq!(s.conn.error(), None);
    // "The retransmission queue should be flushed": no SYN+ACK is repeated.
    assert_eq!(s.conn.poll_timeout(), None);
}

/// RFC 9293 §3.10.7.4 (second, SYN-RECEIVED: "If this connection was initiated with an active
/// OPEN (i.e., came from SYN-SENT state), then the connection was refused").
#[test]
fn rst_in_syn_received_after_simultaneous_open_refuses() {
    let mut c = Endpoint::client(plain(), 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    c.advance_to(ms(50));
    c.input(&peer("SYN", 2000, 0), &[]);
    assert_eq!(c.conn.state(), State::SynReceived);
    assert_eq!(c.ladder(), ["SYN+ACK  S:100 A:2001"]);

    c.advance_to(ms(100));
    c.input(&peer("RST", 2001, 0), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.error(), Some(Error::ConnectionRefused));
    assert_eq!(c.conn.poll_timeout(), None);
}

/// RFC 5961 §4.2 (and RFC 9293 §3.10.7.4, fourth): a SYN in a synchronized state, whatever
/// its sequence number, draws a challenge ACK and is dropped; the connection stays.
#[test]
fn syn_in_established_draws_a_challenge_ack() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    for seq in [2001, 2501, 5] {
        c.advance(Duration::from_millis(500));
        c.input(&peer("SYN", seq, 0), &[]);
        assert_eq!(c.ladder(), ["ACK      S:101 A:2001"], "SYN at {seq}");
        assert_eq!(c.conn.state(), State::Established);
        assert_eq!(c.conn.error(), None);
    }
    assert_eq!(c.conn.recv_queue(), 0);
}

/// RFC 5961 §5.2 (and RFC 9293 §3.10.7.4, fifth: "If the ACK acks something not yet sent
/// (SEG.ACK > SND.NXT), then send an ACK, drop the segment, and return"): data carrying an
/// ACK for data never sent, or one older than SND.UNA - MAX.SND.WND, is not delivered.
#[test]
fn ack_for_data_never_sent_is_acked_and_dropped() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.input(&peer("PSH+ACK", 2001, 5000), &[b'x'; 100]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.recv_queue(), 0);
    let mut buf = [0u8; 512];
    assert_eq!(c.conn.recv(&mut buf), Err(Error::WouldBlock));

    // Far below SND.UNA - MAX.SND.WND (101 - 65535); half a second later, past the
    // challenge ACKs' rate limit (RFC 5961 §7).
    c.advance_to(ms(1500));
    c.input(
        &peer("PSH+ACK", 2001, 101u32.wrapping_sub(70_000)),
        &[b'y'; 100],
    );
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.recv_queue(), 0);
    assert_eq!(c.conn.state(), State::Established);

    // The same data with a sane ACK is taken.
    c.input(&peer("PSH+ACK", 2001, 101), &[b'z'; 100]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.read_all(), vec![b'z'; 100]);
}

/// RFC 9293 §3.10.7.2 (LISTEN, second: "Any acknowledgment is bad if it arrives on a
/// connection still in the LISTEN state. An acceptable reset segment should be formed for any
/// arriving ACK-bearing segment. The RST should be formatted as follows: <SEQ=SEG.ACK><CTL=RST>").
#[test]
fn ack_in_listen_draws_a_rst_from_its_ack() {
    let mut s = Endpoint::server(plain(), 2000);
    s.input(&seg("ACK", 100, 5555), &[]);
    let out = s.drain();
    assert_eq!(ladder_of(&out), ["RST      S:5555 A:0"]);
    assert_eq!((out[0].0.src_port, out[0].0.dst_port), (80, 40000));
    assert_eq!(s.conn.state(), State::Listen);
    assert_eq!(s.conn.poll_timeout(), None);
}

/// RFC 9293 §3.10.7.1 (CLOSED: a segment without ACK gets `<SEQ=0><ACK=SEG.SEQ+SEG.LEN>
/// <CTL=RST,ACK>`): the reset for a SYN acknowledges the SYN.
#[test]
fn reset_for_a_syn() {
    let rst = reset_for(&seg("SYN", 100, 0), 0).unwrap();
    assert_eq!(rst.ladder(0).to_string(), "RST+ACK  S:0 A:101");
    assert_eq!((rst.src_port, rst.dst_port), (80, 40000));
}

/// RFC 9293 §3.10.7.1 (CLOSED: a segment with ACK gets `<SEQ=SEG.ACK><CTL=RST>`).
#[test]
fn reset_for_an_ack() {
    let rst = reset_for(&seg("ACK", 100, 7777), 0).unwrap();
    assert_eq!(rst.ladder(0).to_string(), "RST      S:7777 A:0");
    assert_eq!((rst.src_port, rst.dst_port), (80, 40000));
    // With data, still SEG.ACK.
    let rst = reset_for(&seg("PSH+ACK", 100, 7777), 30).unwrap();
    assert_eq!(rst.ladder(0).to_string(), "RST      S:7777 A:0");
}

/// RFC 9293 §3.10.7.1 (CLOSED: SEG.LEN counts the payload and the FIN).
#[test]
fn reset_for_data_with_fin_covers_payload_and_fin() {
    let rst = reset_for(&seg("FIN+PSH", 300, 0), 50).unwrap();
    assert_eq!(rst.ladder(0).to_string(), "RST+ACK  S:0 A:351");
    let rst = reset_for(&seg("PSH", 300, 0), 50).unwrap();
    assert_eq!(rst.ladder(0).to_string(), "RST+ACK  S:0 A:350");
}

/// RFC 9293 §3.10.7.1 ("An incoming segment containing a RST is discarded"): never a reset
/// for a reset.
#[test]
fn reset_for_a_rst_is_none() {
    assert_eq!(reset_for(&seg("RST", 100, 0), 0), None);
    assert_eq!(reset_for(&seg("RST+ACK", 100, 200), 0), None);
}

// ---- abort and close ---------------------------------------------------------------------------

/// RFC 9293 §3.10.5 (ABORT in a synchronized state: "Send a reset segment:
/// <SEQ=SND.NXT><CTL=RST>", queues flushed, CLOSED): exactly one RST, no timers left.
#[test]
fn abort_sends_exactly_one_rst() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.conn.send(&[b'd'; 100]).unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    c.conn.abort();
    assert_eq!(c.conn.state(), State::Closed);
    assert_eq!(c.ladder(), ["RST+ACK  S:201 A:2001"]);
    assert_eq!(c.ladder(), NOTHING);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.poll_timeout(), None);
    assert_eq!(c.conn.error(), Some(Error::ConnectionAborted));
    assert_eq!(c.conn.send(b"x"), Err(Error::ConnectionAborted));
    let mut buf = [0u8; 16];
    assert_eq!(c.conn.recv(&mut buf), Err(Error::ConnectionAborted));
    // A second abort sends nothing more.
    c.conn.abort();
    assert_eq!(c.ladder(), NOTHING);
    // Nor does any later timer.
    c.advance_to(ms(100_000));
    assert_eq!(c.ladder(), NOTHING);
}

/// RFC 1122 §4.2.2.13 ("If such a host issues a CLOSE call while received data is still
/// pending in TCP ... its TCP SHOULD send a RST to show that data was lost").
#[test]
fn close_with_unread_data_sends_rst() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.input(&peer("PSH+ACK", 2001, 101), &[b'x'; 100]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.recv_queue(), 100);
    c.conn.close();
    assert_eq!(c.ladder(), ["RST+ACK  S:101 A:2101"]);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.poll_timeout(), None);
}

/// RFC 1122 §4.2.2.13 ("... or if new data is received after CLOSE is called, its TCP SHOULD
/// send a RST"): a graceful close (FIN) turns into a reset when data arrives afterwards.
#[test]
fn data_after_close_draws_rst() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    c.conn.close();
    assert_eq!(c.ladder(), ["FIN+ACK  S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::FinWait1);

    c.advance_to(ms(1100));
    c.input(&peer("PSH+ACK", 2001, 102), &[b'x'; 100]);
    assert_eq!(c.ladder(), ["RST+ACK  S:102 A:2001"]);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.poll_timeout(), None);
}

// ---- urgent data -------------------------------------------------------------------------------

/// RFC 9293 §3.8.5 and RFC 6093 §2–3 (the urgent pointer points to the octet following the
/// urgent data; urgent data is delivered inline): the mark counts the bytes before the end of
/// the urgent data and shrinks as they are read.
#[test]
fn urgent_mark_counts_down_as_bytes_are_read() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    assert_eq!(c.conn.urgent_mark(), None);
    let mut s = peer("URG+PSH+ACK", 2001, 101);
    s.urgent = 10;
    let data: Vec<u8> = (0..20).collect();
    c.input(&s, &data);
    assert_eq!(c.conn.recv_queue(), 20);
    assert_eq!(c.conn.urgent_mark(), Some(10));

    let mut buf = [0u8; 4];
    assert_eq!(c.conn.recv(&mut buf), Ok(4));
    assert_eq!(buf, [0, 1, 2, 3]);
    assert_eq!(c.conn.urgent_mark(), Some(6));
    let mut buf = [0u8; 6];
    assert_eq!(c.conn.recv(&mut buf), Ok(6));
    assert_eq!(buf, [4, 5, 6, 7, 8, 9]);
    assert_eq!(c.conn.urgent_mark(), None);
    assert_eq!(c.read_all(), (10..20).collect::<Vec<u8>>());
    assert_eq!(c.conn.urgent_mark(), None);
}

/// RFC 9293 §3.8.5 and RFC 6093 §4: segments sent while urgent data is outstanding carry URG
/// and a pointer to the octet after the urgent data, until it is acknowledged.
#[test]
fn send_urgent_sets_urg_and_points_past_the_urgent_data() {
    let mut c = established_client(plain());
    c.advance_to(ms(1000));
    assert_eq!(c.conn.send_urgent(&[b'u'; 2000]), Ok(2000));
    // Both segments point to 2101, the octet after the urgent data: 2000 octets ahead of the
    // first (beyond its own data), 540 ahead of the second.
    let out = c.drain();
    assert_eq!(
        ladder_of(&out),
        [
            "URG+ACK  S:101 A:2001 len=1460",
            "URG+PSH+ACK S:1561 A:2001 len=540"
        ]
    );
    assert_eq!(out[0].0.urgent, 2000);
    assert_eq!(out[1].0.urgent, 540);
    // The urgent data itself is sent inline, unchanged.
    assert_eq!(out[0].1, vec![b'u'; 1460]);
    assert_eq!(out[1].1, vec![b'u'; 540]);

    // A retransmission of the second segment while the first is acknowledged still points
    // to 2101.
    c.advance_to(ms(1100));
    c.input(&peer("ACK", 2001, 1561), &[]);
    assert_eq!(c.ladder(), NOTHING);
    c.advance_to(ms(1400));
    let out = c.drain();
    assert_eq!(ladder_of(&out), ["URG+PSH+ACK S:1561 A:2001 len=540"]);
    assert_eq!(out[0].0.urgent, 540);

    // After the urgent data is acknowledged, normal data carries no URG.
    c.advance_to(ms(1500));
    c.input(&peer("ACK", 2001, 2101), &[]);
    assert_eq!(c.conn.send(b"plain"), Ok(5));
    let out = c.drain();
    assert_eq!(ladder_of(&out), ["PSH+ACK  S:2101 A:2001 len=5"]);
    assert_eq!(out[0].0.urgent, 0);
}

// ---- keepalive ---------------------------------------------------------------------------------

fn keepalive_config() -> Config {
    Config {
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(2),
            retries: 3,
        }),
        ..plain()
    }
}

/// RFC 1122 §4.2.3.6 (a keep-alive is sent only after `idle` without anything received, as a
/// segment with SEG.SEQ = SND.NXT - 1): the probe leaves at exactly idle, and an answer
/// restarts the idle time.
#[test]
fn keepalive_probes_at_idle_and_an_answer_resets_it() {
    let mut c = established_client(keepalive_config());
    assert_eq!(c.conn.poll_timeout(), Some(ms(10_100)));
    c.advance_to(just_before(ms(10_100)));
    assert_eq!(c.ladder(), NOTHING);

    c.advance_to(ms(10_100));
    assert_eq!(c.ladder(), ["ACK      S:100 A:2001"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(12_100)));

    // The peer answers at 10.2 s: no more probes until 20.2 s.
    c.advance_to(ms(10_200));
    c.input(&peer("ACK", 2001, 101), &[]);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.poll_timeout(), Some(ms(20_200)));
    c.advance_to(ms(12_100));
    assert_eq!(c.ladder(), NOTHING);

    c.advance_to(ms(20_200));
    assert_eq!(c.ladder(), ["ACK      S:100 A:2001"]);
    assert_eq!(c.conn.state(), State::Established);
    assert_eq!(c.conn.poll_timeout(), Some(ms(22_200)));
}

/// RFC 1122 §4.2.3.6 (the connection is dropped after unanswered keep-alives): `retries`
/// probes `interval` apart, then CLOSED with `TimedOut`.
#[test]
fn unanswered_keepalives_time_out() {
    let mut c = established_client(keepalive_config());
    for t in [10_100, 12_100, 14_100] {
        assert_eq!(c.conn.poll_timeout(), Some(ms(t)));
        c.advance_to(ms(t));
        assert_eq!(c.ladder(), ["ACK      S:100 A:2001"], "probe at {t} ms");
        assert_eq!(c.conn.state(), State::Established);
    }
    assert_eq!(c.conn.poll_timeout(), Some(ms(16_100)));
    c.advance_to(ms(16_100));
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.error(), Some(Error::TimedOut));
    assert_eq!(c.conn.poll_timeout(), None);
}

// ---- retransmission limits ------------------------------------------------------------------

/// RFC 6298 §2.1 (RTO = 1 s before any RTT sample) and §5.5 (back off by doubling), with
/// RFC 9293 §3.8.3 (R2 for a SYN): SYNs at 0, 1 s and 3 s, then give up at 7 s.
#[test]
fn syn_retransmissions_start_at_one_second_and_double() {
    let cfg = Config {
        syn_retries: 2,
        ..plain()
    };
    let mut c = Endpoint::client(cfg, 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1000)));
    c.advance_to(ms(1000));
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(3000)));
    c.advance_to(ms(3000));
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(7000)));
    c.advance_to(ms(7000));
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Closed);
    assert_eq!(c.conn.error(), Some(Error::TimedOut));
    assert_eq!(c.conn.poll_timeout(), None);
}

/// RFC 6298 §5.7 ("If the timer expires awaiting the ACK of a SYN segment and the TCP
/// implementation is using an RTO less than 3 seconds, the RTO MUST be re-initialized to 3
/// seconds when data transmission begins"): after a retransmitted SYN (no RTT sample, by
/// Karn's rule) the first data RTO is 3 s.
#[test]
fn rto_is_three_seconds_after_a_syn_timeout() {
    let mut c = Endpoint::client(plain(), 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    c.advance_to(ms(1000));
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    c.advance_to(ms(1500));
    c.input(&syn_ack(), &[]);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.state(), State::Established);
    assert_eq!(c.conn.poll_timeout(), None);

    c.advance_to(ms(2000));
    c.conn.send(&[b'd'; 100]).unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(5000)));
}

/// RFC 6298 §5.7, on the passive side: the SYN+ACK was retransmitted, so the handshake gave
/// no RTT sample, and the first data RTO is 3 s.
#[test]
fn rto_is_three_seconds_after_a_syn_ack_timeout() {
    let mut s = Endpoint::server(plain(), 2000);
    let mut syn = seg("SYN", 100, 0);
    syn.options.mss = Some(1460);
    s.input(&syn, &[]);
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    assert_eq!(s.conn.poll_timeout(), Some(ms(1000)));
    s.advance_to(ms(1000));
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    s.advance_to(ms(1500));
    s.input(&seg("ACK", 101, 2001), &[]);
    assert_eq!(s.ladder(), NOTHING);
    assert_eq!(s.conn.state(), State::Established);
    assert_eq!(s.conn.poll_timeout(), None);

    s.advance_to(ms(2000));
    s.conn.send(&[b'd'; 100]).unwrap();
    assert_eq!(s.ladder(), ["PSH+ACK  S:2001 A:101 len=100"]);
    assert_eq!(s.conn.poll_timeout(), Some(ms(5000)));
}

/// RFC 6298 §5.4–5.5 (retransmit the earliest unacknowledged segment, double the RTO) and
/// RFC 9293 §3.8.3 / RFC 1122 §4.2.3.5 (close the connection after R2): with
/// `max_retries = 3`, three retransmissions at RTO, 2×RTO, 4×RTO, then CLOSED with `TimedOut`.
#[test]
fn data_retransmissions_double_the_rto_then_time_out() {
    let cfg = Config {
        max_retries: 3,
        ..plain()
    };
    let mut c = established_client(cfg);
    c.advance_to(ms(1000));
    c.conn.send(&[b'd'; 100]).unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    // RTO 300 ms, then 600 ms, 1.2 s, 2.4 s.
    for (at, next) in [(1300, 1900), (1900, 3100), (3100, 5500)] {
        assert_eq!(c.conn.poll_timeout(), Some(ms(at)));
        c.advance_to(just_before(ms(at)));
        assert_eq!(c.ladder(), NOTHING);
        c.advance_to(ms(at));
        assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"], "at {at} ms");
        assert_eq!(c.conn.poll_timeout(), Some(ms(next)));
    }
    assert_eq!(c.conn.state(), State::Established);
    c.advance_to(ms(5500));
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Closed);
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.error(), Some(Error::TimedOut));
    assert_eq!(c.conn.poll_timeout(), None);
    assert_eq!(c.conn.send(b"x"), Err(Error::TimedOut));
    let mut buf = [0u8; 16];
    assert_eq!(c.conn.recv(&mut buf), Err(Error::TimedOut));
}

/// RFC 9293 §3.10.8 (USER TIMEOUT) and RFC 5482 §2 ("the maximum amount of time that
/// transmitted data may remain unacknowledged before TCP will forcefully close the
/// connection"): data sent at 1 s with a 2 s user timeout is given up at exactly 3 s.
#[test]
fn user_timeout_gives_up_when_it_elapses() {
    let cfg = Config {
        user_timeout: Some(Duration::from_secs(2)),
        ..plain()
    };
    let mut c = established_client(cfg);
    c.advance_to(ms(1000));
    c.conn.send(&[b'd'; 100]).unwrap();
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1300)));
    c.advance_to(ms(1300));
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1900)));
    c.advance_to(ms(1900));
    assert_eq!(c.ladder(), ["PSH+ACK  S:101 A:2001 len=100"]);
    // The next backoff would fire at 3.1 s; the user timeout ends everything at 3 s.
    assert_eq!(c.conn.poll_timeout(), Some(ms(3000)));
    c.advance_to(ms(3000));
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.state(), State::Closed);
    assert_eq!(c.conn.error(), Some(Error::TimedOut));
    assert_eq!(c.conn.poll_timeout(), None);
}

// ---- PAWS --------------------------------------------------------------------------------------

/// RFC 7323 §5.3 (R1: "If SEG.TSval < TS.Recent ... then treat the arriving segment as not
/// acceptable: send an acknowledgment in reply ... and drop the segment"): with timestamps
/// negotiated, a segment with an older TSval is answered with an ACK echoing TS.Recent and its
/// data is not delivered.
#[test]
fn paws_drops_a_segment_with_an_old_timestamp() {
    let cfg = Config {
        timestamps: true,
        ..plain()
    };
    let mut c = Endpoint::client(cfg, 100);
    let syn = c.drain();
    assert_eq!(ladder_of(&syn), ["SYN      S:100 A:0"]);
    let (our_ts, _) = syn[0].0.options.timestamps.expect("SYN offers timestamps");
    c.advance_to(ms(100));
    let mut sa = syn_ack();
    sa.options.timestamps = Some((5000, our_ts));
    c.input(&sa, &[]);
    let out = c.drain();
    assert_eq!(ladder_of(&out), ["ACK      S:101 A:2001"]);
    assert_eq!(out[0].0.options.timestamps.map(|t| t.1), Some(5000));
    assert!(c.conn.info().timestamps);

    // Data with TSval 5100 is accepted (and acknowledged by the delayed ACK).
    c.advance_to(ms(1000));
    let mut d = peer("PSH+ACK", 2001, 101);
    d.options.timestamps = Some((5100, our_ts));
    c.input(&d, &[b'a'; 100]);
    assert_eq!(c.conn.recv_queue(), 100);
    assert_eq!(c.ladder(), NOTHING);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1040)));
    c.advance_to(ms(1040));
    assert_eq!(c.ladder(), ["ACK      S:101 A:2101"]);

    // New data, in sequence, but with TSval 5050 < TS.Recent: dropped and answered at once.
    c.advance_to(ms(1100));
    let mut old = peer("PSH+ACK", 2101, 101);
    old.options.timestamps = Some((5050, our_ts));
    c.input(&old, &[b'o'; 100]);
    let out = c.drain();
    assert_eq!(ladder_of(&out), ["ACK      S:101 A:2101"]);
    assert_eq!(out[0].0.options.timestamps.map(|t| t.1), Some(5100));
    assert_eq!(c.conn.recv_queue(), 100);
    assert_eq!(c.conn.state(), State::Established);

    // The same bytes with a current timestamp are taken.
    let mut fresh = peer("PSH+ACK", 2101, 101);
    fresh.options.timestamps = Some((5200, our_ts));
    c.input(&fresh, &[b'n'; 100]);
    let mut expected = vec![b'a'; 100];
    expected.extend_from_slice(&[b'n'; 100]);
    assert_eq!(c.read_all(), expected);
}

/// RFC 6191: a SYN for a connection lingering in TIME-WAIT may start a new incarnation when
/// its sequence number lies beyond RCV.NXT (without timestamps) or its timestamp is newer.
#[test]
fn time_wait_accepts_a_newer_syn_only() {
    let mut p = Pair::new(plain(), 100, plain(), 2000);
    p.settle();
    // The server closes first and so lingers in TIME-WAIT.
    p.server.conn.shutdown().unwrap();
    p.settle();
    p.client.conn.shutdown().unwrap();
    p.settle();
    assert_eq!(p.server.conn.state(), rawtcp::proto::State::TimeWait);
    let old_syn = seg("SYN", 50, 0);
    assert!(!p.server.conn.accepts_new_syn(&old_syn), "behind RCV.NXT");
    let new_syn = seg("SYN", 5000, 0);
    assert!(p.server.conn.accepts_new_syn(&new_syn));
    assert!(!p.server.conn.accepts_new_syn(&seg("SYN+ACK", 5000, 1)));
    assert!(!p.client.conn.accepts_new_syn(&new_syn), "not in TIME-WAIT");

    // With timestamps (RFC 6191, as Linux decides): a newer TSval reopens; so does a new
    // sequence number with an equal TSval (a reconnect within the timestamp clock's
    // millisecond); an older TSval is rejected by PAWS whatever the sequence number.
    let ts = Config {
        timestamps: true,
        ..plain()
    };
    let mut p = Pair::new(ts.clone(), 100, ts, 2000);
    p.settle();
    p.server.conn.shutdown().unwrap();
    p.settle();
    p.client.conn.shutdown().unwrap();
    // The client's FIN carries the last TSval the server records.
    let mut recent = 0;
    for (repr, payload) in p.client.drain() {
        recent = repr.options.timestamps.expect("timestamps").0;
        p.server.input(&repr, &payload);
    }
    p.settle();
    assert_eq!(p.server.conn.state(), rawtcp::proto::State::TimeWait);
    let syn = |seq: u32, tsval: u32| {
        let mut s = seg("SYN", seq, 0);
        s.options.timestamps = Some((tsval, 0));
        s
    };
    assert!(
        p.server
            .conn
            .accepts_new_syn(&syn(50, recent.wrapping_add(1))),
        "newer TSval"
    );
    assert!(
        p.server.conn.accepts_new_syn(&syn(5000, recent)),
        "equal TSval, new ISN"
    );
    assert!(
        !p.server.conn.accepts_new_syn(&syn(50, recent)),
        "equal TSval, old ISN"
    );
    assert!(
        !p.server
            .conn
            .accepts_new_syn(&syn(5000, recent.wrapping_sub(1))),
        "PAWS"
    );
}

/// A connection the application dropped waits in FIN-WAIT-2 at most `fin_wait2_timeout`
/// (Linux's `tcp_fin_timeout`) for a peer that never sends its FIN; one still held by the
/// application waits as long as the peer likes (half-close is legitimate).
#[test]
fn orphaned_fin_wait_2_times_out() {
    use std::time::Duration;
    let cfg = Config {
        fin_wait2_timeout: Duration::from_secs(30),
        ..plain()
    };
    let mut p = Pair::new(cfg.clone(), 100, cfg, 2000);
    p.settle();
    let now = p.client.now;
    p.client.conn.orphan(now);
    p.settle();
    assert_eq!(p.client.conn.state(), rawtcp::proto::State::FinWait2);
    assert!(p.client.conn.is_write_closed());
    assert_eq!(
        p.client.conn.poll_timeout(),
        Some(now + Duration::from_secs(30))
    );
    p.client.fire_next();
    assert!(p.client.conn.is_closed());

    let mut p = Pair::new(plain(), 100, plain(), 2000);
    p.settle();
    p.client.conn.shutdown().unwrap();
    p.settle();
    assert_eq!(p.client.conn.state(), rawtcp::proto::State::FinWait2);
    assert_eq!(
        p.client.conn.poll_timeout(),
        None,
        "a half-closed connection waits"
    );
}
