//! Scripted handshake tests (RFC 9293 §3.5): active and passive open, retransmission of SYN
//! and SYN+ACK, simultaneous open, option negotiation (RFC 7323, RFC 2018), and the
//! replies to segments that do not fit the handshake.

mod common;
use common::*;
use rawtcp::proto::{Config, Connection, Error, Instant, SeqNum, State};
use rawtcp::wire::{TcpOptions, TcpRepr};
use std::time::Duration;

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// Active open: SYN (S=ISN A=0); SYN+ACK (A=ISN+1) completes it with ACK (S=ISN+1,
/// A=peer ISN+1) and nothing is left pending.
#[test]
fn active_open() {
    let mut c = Endpoint::client(plain(), 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    assert_eq!(c.conn.state(), State::SynSent);
    assert_eq!(c.conn.poll_timeout(), Some(ms(1000)), "initial RTO of 1 s");
    c.advance_to(ms(30));
    let mut synack = seg("SYN+ACK", 2000, 101);
    synack.src_port = 80;
    synack.dst_port = 40000;
    c.input(&synack, &[]);
    assert_eq!(c.conn.state(), State::Established);
    assert_eq!(c.ladder(), ["ACK      S:101 A:2001"]);
    assert_eq!(c.conn.poll_timeout(), None);
    // The SYN was not retransmitted, so it gave an RTT sample of 30 ms.
    assert_eq!(c.conn.info().srtt, Some(Duration::from_millis(30)));
}

/// SYN retransmission with exponential backoff (RFC 6298 §5.5) and give-up after
/// `syn_retries` with TimedOut.
#[test]
fn syn_retransmission_backoff_and_give_up() {
    let cfg = Config {
        syn_retries: 3,
        ..plain()
    };
    let mut c = Endpoint::client(cfg, 100);
    assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    let mut expected_at = 0;
    for rto in [1000, 2000, 4000] {
        expected_at += rto;
        assert_eq!(c.fire_next(), ms(expected_at));
        assert_eq!(c.ladder(), ["SYN      S:100 A:0"]);
    }
    expected_at += 8000;
    assert_eq!(c.fire_next(), ms(expected_at));
    assert_eq!(c.ladder(), Vec::<String>::new());
    assert_eq!(c.conn.state(), State::Closed);
    assert_eq!(c.conn.error(), Some(Error::TimedOut));
    assert_eq!(c.conn.recv(&mut [0; 4]), Err(Error::TimedOut));
    assert_eq!(c.conn.info().retransmissions, 3);
}

/// Passive open: LISTEN + SYN → SYN+ACK; the ACK completes it. A repeated SYN (our SYN+ACK
/// was lost) is answered with the same SYN+ACK, and so is the retransmission timeout.
#[test]
fn passive_open_with_lost_syn_ack() {
    let mut s = Endpoint::server(plain(), 2000);
    assert_eq!(s.conn.state(), State::Listen);
    assert_eq!(s.ladder(), Vec::<String>::new());
    s.input(&seg("SYN", 100, 0), &[]);
    assert_eq!(s.conn.state(), State::SynReceived);
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    s.advance_to(ms(500));
    s.input(&seg("SYN", 100, 0), &[]);
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    assert_eq!(s.fire_next(), ms(1000));
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    assert_eq!(s.conn.poll_timeout(), Some(ms(3000)), "backed off to 2 s");
    s.input(&seg("ACK", 101, 2001), &[]);
    assert_eq!(s.conn.state(), State::Established);
    assert_eq!(s.ladder(), Vec::<String>::new());
    assert_eq!(s.conn.poll_timeout(), None);
}

/// `Connection::accept` is LISTEN plus the SYN; it refuses segments that are not a SYN.
#[test]
fn accept_only_takes_a_syn() {
    let now = Instant::ZERO;
    let (l, r) = (addr(SERVER), addr(CLIENT));
    let iss = SeqNum(7);
    assert!(Connection::accept(plain(), l, r, &seg("ACK", 1, 1), iss, now).is_none());
    assert!(Connection::accept(plain(), l, r, &seg("SYN+ACK", 1, 1), iss, now).is_none());
    assert!(Connection::accept(plain(), l, r, &seg("RST", 1, 0), iss, now).is_none());
    let c = Connection::accept(plain(), l, r, &seg("SYN", 1, 0), iss, now).unwrap();
    assert_eq!(c.state(), State::SynReceived);
}

/// An ACK arriving in LISTEN draws <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.2).
#[test]
fn ack_in_listen_draws_reset() {
    let mut s = Endpoint::server(plain(), 2000);
    s.input(&seg("ACK", 5, 777), &[]);
    assert_eq!(s.ladder(), ["RST      S:777 A:0"]);
    assert_eq!(s.conn.state(), State::Listen);
}

/// In SYN-RECEIVED an ACK that does not acknowledge our SYN draws a RST (RFC 9293 §3.10.7.4).
#[test]
fn bad_ack_in_syn_received_draws_reset() {
    let mut s = Endpoint::server(plain(), 2000);
    s.input(&seg("SYN", 100, 0), &[]);
    s.ladder();
    s.input(&seg("ACK", 101, 5000), &[]);
    assert_eq!(s.ladder(), ["RST      S:5000 A:0"]);
    assert_eq!(s.conn.state(), State::SynReceived);
}

/// In SYN-SENT: an ACK outside (ISS, SND.NXT] draws a RST; a RST acknowledging our SYN
/// refuses the connection; a RST without ACK is ignored (RFC 9293 §3.10.7.3, RFC 5961 §3).
#[test]
fn syn_sent_acceptability() {
    let mut c = Endpoint::client(plain(), 100);
    c.ladder();
    let mut bad = seg("SYN+ACK", 2000, 300);
    (bad.src_port, bad.dst_port) = (80, 40000);
    c.input(&bad, &[]);
    assert_eq!(c.ladder(), ["RST      S:300 A:0"]);
    assert_eq!(c.conn.state(), State::SynSent);
    let mut rst = seg("RST", 0, 0);
    (rst.src_port, rst.dst_port) = (80, 40000);
    c.input(&rst, &[]);
    assert_eq!(c.conn.state(), State::SynSent);
    let mut refused = seg("RST+ACK", 0, 101);
    (refused.src_port, refused.dst_port) = (80, 40000);
    c.input(&refused, &[]);
    assert_eq!(c.conn.state(), State::Closed);
    assert_eq!(c.conn.error(), Some(Error::ConnectionRefused));
    assert!(c.conn.is_closed());
}

/// Simultaneous open (RFC 9293 §3.5 figure 8): both send SYN, each answers SYN+ACK with its
/// own ISN, and both reach ESTABLISHED.
#[test]
fn simultaneous_open() {
    let mut a = Endpoint::client(plain(), 100);
    let mut b = Endpoint::new(Connection::connect(
        plain(),
        addr(SERVER),
        addr(CLIENT),
        SeqNum(300),
        Instant::ZERO,
    ));
    let syn_a = a.drain();
    let syn_b = b.drain();
    assert_eq!(syn_a[0].0.ladder(0).to_string(), "SYN      S:100 A:0");
    assert_eq!(syn_b[0].0.ladder(0).to_string(), "SYN      S:300 A:0");
    a.input(&syn_b[0].0, &[]);
    b.input(&syn_a[0].0, &[]);
    assert_eq!(a.conn.state(), State::SynReceived);
    assert_eq!(b.conn.state(), State::SynReceived);
    let sa = a.drain();
    let sb = b.drain();
    assert_eq!(sa[0].0.ladder(0).to_string(), "SYN+ACK  S:100 A:301");
    assert_eq!(sb[0].0.ladder(0).to_string(), "SYN+ACK  S:300 A:101");
    a.input(&sb[0].0, &[]);
    b.input(&sa[0].0, &[]);
    assert_eq!(a.conn.state(), State::Established);
    assert_eq!(b.conn.state(), State::Established);
    // Data flows both ways afterwards.
    a.conn.send(b"ping").unwrap();
    let d = a.drain();
    assert_eq!(d[0].0.ladder(4).to_string(), "PSH+ACK  S:101 A:301 len=4");
    b.input(&d[0].0, &d[0].1);
    assert_eq!(b.read_all(), b"ping");
}

fn syn_options(c: &mut Endpoint) -> TcpOptions {
    c.drain()[0].0.options
}

/// Options on the SYN exchange: MSS, window scale, SACK-permitted and timestamps are offered
/// by the opener, echoed only when offered, and each used only when both sides sent it.
#[test]
fn option_negotiation() {
    let cfg = Config {
        mss: 1400,
        recv_buffer: 1 << 20,
        ..Config::default()
    };
    let mut c = Endpoint::client(cfg.clone(), 100);
    let o = syn_options(&mut c);
    assert_eq!(o.mss, Some(1400));
    assert_eq!(
        o.window_scale,
        Some(7),
        "1 MiB that may grow to 6 MiB (recv_buffer_max) needs a shift of 7"
    );
    let fixed = Config {
        recv_buffer_max: 1 << 20,
        ..cfg.clone()
    };
    let o = syn_options(&mut Endpoint::client(fixed, 100));
    assert_eq!(o.window_scale, Some(5), "1 MiB fixed needs a shift of 5");
    assert!(o.sack_permitted);
    assert_eq!(o.timestamps.map(|t| t.1), Some(0), "TSecr is zero on a SYN");

    // A peer offering nothing: no options echoed, the RFC default MSS of 536 applies.
    let mut s = Endpoint::server(cfg.clone(), 2000);
    s.input(&seg("SYN", 100, 0), &[]);
    let synack = syn_options(&mut s);
    assert_eq!(synack.mss, Some(1400));
    assert_eq!(synack.window_scale, None);
    assert!(!synack.sack_permitted);
    assert_eq!(synack.timestamps, None);
    let info = s.conn.info();
    assert_eq!(
        (info.send_mss, info.send_wscale, info.recv_wscale),
        (536, 0, 0)
    );
    assert!(!info.sack && !info.timestamps);

    // A peer offering everything: all used; timestamps cost 12 bytes of every segment.
    let mut s = Endpoint::server(cfg, 2000);
    let mut syn = seg("SYN", 100, 0);
    syn.options = TcpOptions {
        mss: Some(9000),
        window_scale: Some(20), // larger than 14: treated as 14 (RFC 7323 §2.3)
        sack_permitted: true,
        timestamps: Some((555, 0)),
        ..TcpOptions::default()
    };
    s.input(&syn, &[]);
    let synack = syn_options(&mut s);
    assert_eq!(synack.window_scale, Some(7));
    assert!(synack.sack_permitted);
    assert_eq!(
        synack.timestamps.map(|t| t.1),
        Some(555),
        "TSecr echoes the SYN's TSval"
    );
    let info = s.conn.info();
    assert_eq!((info.send_mss, info.send_wscale), (1400 - 12, 14));
    assert!(info.sack && info.timestamps);
}

/// The window in a SYN is never scaled; afterwards the peer's window is shifted by its
/// announced scale (RFC 7323 §2.2).
#[test]
fn window_scaling_applies_after_the_syn() {
    let cfg = Config {
        timestamps: false,
        ..Config::default()
    };
    let mut c = Endpoint::client(cfg, 100);
    let syn = c.drain().remove(0).0;
    assert_eq!(
        syn.window, 65535,
        "1 MiB buffer, capped to 16 bits on the SYN"
    );
    let mut synack = seg("SYN+ACK", 2000, 101);
    (synack.src_port, synack.dst_port) = (80, 40000);
    synack.window = 100;
    synack.options.window_scale = Some(3);
    c.input(&synack, &[]);
    assert_eq!(c.conn.info().send_window, 100, "unscaled on the SYN+ACK");
    let ack = c.drain().remove(0).0;
    assert_eq!(
        ack.window,
        ((1u32 << 20) >> 7) as u16,
        "our window, scaled by 7 (room for the 6 MiB it may grow to)"
    );
    let mut upd = seg("ACK", 2001, 101);
    (upd.src_port, upd.dst_port) = (80, 40000);
    upd.window = 100;
    c.input(&upd, &[]);
    assert_eq!(c.conn.info().send_window, 800);
}

/// A SYN carrying data: the SYN is accepted, the data is not acknowledged (no TCP Fast Open),
/// so the peer sends it again.
#[test]
fn data_on_syn_is_not_acknowledged() {
    let mut s = Endpoint::server(plain(), 2000);
    s.input(&seg("SYN", 100, 0), b"early");
    assert_eq!(s.ladder(), ["SYN+ACK  S:2000 A:101"]);
    s.input(&seg("PSH+ACK", 101, 2001), b"early");
    assert_eq!(s.conn.state(), State::Established);
    assert_eq!(s.read_all(), b"early");
}

/// ISNs come from the keyed hash of RFC 6528 when the runtime asks for them; the engine
/// takes whatever it is given, including one just below the wrap.
#[test]
fn isn_near_the_wrap() {
    let mut p = Pair::new(plain(), u32::MAX, plain(), u32::MAX - 1);
    p.settle();
    assert_eq!(
        p.take_log(),
        [
            "client -> server  SYN      S:4294967295 A:0",
            "server -> client  SYN+ACK  S:4294967294 A:0",
            "client -> server  ACK      S:0 A:4294967295",
        ]
    );
    p.client.conn.send(b"x").unwrap();
    p.settle();
    assert_eq!(p.server.read_all(), b"x");
}

/// A segment for a connection that does not exist gets the RST of RFC 9293 §3.10.7.1.
#[test]
fn reset_for_unknown_connection() {
    use rawtcp::proto::reset_for;
    let rst = reset_for(&seg("PSH+ACK", 10, 99), 5).unwrap();
    assert_eq!(rst.ladder(0).to_string(), "RST      S:99 A:0");
    assert_eq!((rst.src_port, rst.dst_port), (80, 40000));
    let rst = reset_for(&seg("SYN", 10, 0), 0).unwrap();
    assert_eq!(rst.ladder(0).to_string(), "RST+ACK  S:0 A:11");
    assert!(reset_for(&seg("RST", 10, 0), 0).is_none());
    let _unused: TcpRepr = rst;
}
