//! Scripted SYN-cookie handshakes (RFC 4987 §3.6): a server that keeps no state between the
//! SYN and the ACK rebuilds the connection from the cookie, agrees with the client on every
//! option, and then moves data both ways as any connection does.

mod common;
use common::*;
use rawtcp::proto::syncookie::{CookieError, SynCookies};
use rawtcp::proto::{Config, Connection, Instant, State};
use rawtcp::wire::TcpRepr;

/// The cookie SYN+ACK a stateless listener sends for `syn`.
fn cookie_syn_ack(cookies: &mut SynCookies, cfg: &Config, syn: &TcpRepr, now: Instant) -> TcpRepr {
    let iss = cookies.make(addr(SERVER), addr(CLIENT), &SynCookies::clamp(syn), now);
    Connection::cookie_syn_ack(cfg.clone(), addr(SERVER), addr(CLIENT), syn, iss, now)
        .expect("a SYN opens")
}

/// A client and a server joined by a cookie handshake at `now`; the server side kept nothing
/// but the cookie secrets.
fn cookie_pair(client_cfg: Config, server_cfg: Config, now: Instant) -> Pair {
    let mut cookies = SynCookies::new();
    let mut client = Endpoint::client(client_cfg, 100);
    client.advance_to(now);
    let (syn, _) = client.drain().remove(0);
    let syn_ack = cookie_syn_ack(&mut cookies, &server_cfg, &syn, now);
    client.input(&syn_ack, &[]);
    assert_eq!(client.conn.state(), State::Established);
    let mut from_client = client.drain();
    assert_eq!(from_client.len(), 1, "the handshake's ACK");
    let (ack, payload) = from_client.remove(0);
    let cookie = cookies
        .check(addr(SERVER), addr(CLIENT), &ack, now)
        .expect("the client's ACK carries a valid cookie");
    let conn = Connection::accept_cookie(
        server_cfg,
        addr(SERVER),
        addr(CLIENT),
        &cookie,
        &ack,
        &payload,
        now,
    )
    .expect("the cookie ACK completes the handshake");
    assert_eq!(conn.state(), State::Established);
    let mut server = Endpoint::new(conn);
    server.now = now;
    Pair {
        client,
        server,
        log: Vec::new(),
    }
}

/// Sends `n` bytes each way and checks every byte arrived in order.
fn exchange(p: &mut Pair, n: usize) {
    let up: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    let down: Vec<u8> = (0..n).map(|i| (i * 13 % 241) as u8).collect();
    let (mut sent_up, mut sent_down) = (0, 0);
    let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
    for _ in 0..100_000 {
        if sent_up < n {
            sent_up += p.client.conn.send(&up[sent_up..]).unwrap_or(0);
        }
        if sent_down < n {
            sent_down += p.server.conn.send(&down[sent_down..]).unwrap_or(0);
        }
        p.settle();
        got_up.extend(p.server.read_all());
        got_down.extend(p.client.read_all());
        if got_up.len() == n && got_down.len() == n {
            break;
        }
        if let Some(t) = p.next_deadline() {
            p.advance_to(t.max(p.client.now));
        }
    }
    assert!(
        got_up == up,
        "client to server: {} of {n} bytes",
        got_up.len()
    );
    assert!(
        got_down == down,
        "server to client: {} of {n} bytes",
        got_down.len()
    );
}

#[test]
fn with_timestamps_both_ends_agree_on_scale_sack_and_mss() {
    let mut p = cookie_pair(
        Config::default(),
        Config::default(),
        Instant::from_secs(5000),
    );
    let (c, s) = (p.client.conn.info(), p.server.conn.info());
    assert!(c.sack && s.sack, "SACK-permitted travelled in the TSval");
    assert_eq!(
        c.send_wscale, s.recv_wscale,
        "client's view of the server's scale"
    );
    assert_eq!(
        c.recv_wscale, s.send_wscale,
        "server's view of the client's scale"
    );
    assert!(c.recv_wscale > 0, "the default buffers need a scale");
    assert_eq!(
        s.send_mss,
        1460 - 12,
        "the client's MSS, rounded down to the table, less the timestamps option"
    );
    assert_eq!(
        s.srtt, None,
        "no round-trip sample from a SYN+ACK sent without state"
    );
    exchange(&mut p, 3 << 20);
}

#[test]
fn without_timestamps_no_scale_and_no_sack_on_either_end() {
    let client = Config {
        timestamps: false,
        ..Config::default()
    };
    let mut p = cookie_pair(client, Config::default(), Instant::from_secs(77));
    let (c, s) = (p.client.conn.info(), p.server.conn.info());
    assert!(!c.sack && !s.sack);
    assert_eq!((c.send_wscale, c.recv_wscale), (0, 0));
    assert_eq!((s.send_wscale, s.recv_wscale), (0, 0));
    exchange(&mut p, 1 << 20);
}

#[test]
fn a_plain_client_gets_a_plain_connection() {
    let mut p = cookie_pair(plain(), plain(), Instant::from_secs(1));
    assert_eq!(
        p.take_log(),
        Vec::<String>::new(),
        "nothing left over from the handshake"
    );
    exchange(&mut p, 200_000);
    p.client.conn.close();
    p.settle();
    assert_eq!(p.server.read_all(), b"");
    p.server.conn.close();
    p.settle();
    assert!(matches!(
        p.client.conn.state(),
        State::TimeWait | State::Closed
    ));
}

#[test]
fn stale_forged_and_replayed_elsewhere_acks_open_nothing() {
    let mut cookies = SynCookies::new();
    let mut client = Endpoint::client(Config::default(), 100);
    let t0 = Instant::from_secs(64 * 500);
    client.advance_to(t0);
    let (syn, _) = client.drain().remove(0);
    let syn_ack = cookie_syn_ack(&mut cookies, &Config::default(), &syn, t0);
    client.input(&syn_ack, &[]);
    let (ack, _) = client.drain().remove(0);
    // Two ticks (at least 128 s) later the cookie is stale.
    let late = Instant::from_secs(64 * 502);
    assert_eq!(
        cookies.check(addr(SERVER), addr(CLIENT), &ack, late),
        Err(CookieError::Stale)
    );
    // The same ACK from another client address verifies nothing.
    assert_eq!(
        cookies.check(addr(SERVER), addr("10.0.0.9:40000"), &ack, t0),
        Err(CookieError::Forged)
    );
    // A guessed acknowledgment number fails.
    let mut guess = ack;
    guess.ack = guess.ack.wrapping_add(1);
    assert!(cookies
        .check(addr(SERVER), addr(CLIENT), &guess, t0)
        .is_err());
    // The genuine one still opens the connection within its tick.
    assert!(cookies.check(addr(SERVER), addr(CLIENT), &ack, t0).is_ok());
}
