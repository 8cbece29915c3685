//! Scripted endpoint tests: the demultiplexer and listen backlog above the connections
//! (`proto::Endpoint`) — SYN and accept queues and their overflow (RFC 4987 §3.1, as Linux
//! behaves), duplicate SYNs, TIME-WAIT reuse (RFC 6191, RFC 7323 §5 PAWS), RSTs for segments
//! that reach no connection (RFC 9293 §3.10.7.1, §3.10.7.2), `SO_REUSEPORT` listeners.
//!
//! A small driver plays the runtime's part: it keeps the connections by handle, delivers
//! what the endpoint routes, and reports each touched connection's status back.

mod common;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use rawtcp::proto::endpoint::{
    syn_queue_limit, ConnectionHandle, DropReason, Endpoint, Limits, ListenerId, Owner, Route,
    SynCookieMode, Update,
};
use rawtcp::proto::{Config, Connection, Instant, SeqNum, State};
use rawtcp::wire::{TcpFlags, TcpRepr};
use std::collections::HashMap;
use std::net::SocketAddr;

/// The server's ISN for every connection it accepts.
const ISS: u32 = 2000;

/// An endpoint and the connections it routes to, with virtual time.
struct Host {
    ep: Endpoint,
    conns: HashMap<ConnectionHandle, Connection>,
    cfg: Config,
    now: Instant,
    buf: Vec<u8>,
    /// Listeners woken by a completed handshake, in order.
    accepted: Vec<ListenerId>,
}

impl Host {
    fn new(cfg: Config) -> Host {
        Host {
            ep: Endpoint::new(),
            conns: HashMap::new(),
            cfg,
            now: Instant::ZERO,
            buf: vec![0; 70_000],
            accepted: Vec::new(),
        }
    }

    /// A segment from `from` to `to` arrives: returns how the endpoint routed it and every
    /// segment sent in answer, in ladder notation.
    fn input(&mut self, from: SocketAddr, to: SocketAddr, seg: &TcpRepr) -> (Route, Vec<String>) {
        self.input_with(from, to, seg, &[])
    }

    fn input_with(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        seg: &TcpRepr,
        payload: &[u8],
    ) -> (Route, Vec<String>) {
        let route = self.ep.handle(to, from, seg, payload.len(), self.now);
        let mut out = Vec::new();
        match &route {
            Route::Connection(h) => {
                let c = self.conns.get_mut(h).expect("routed to a live connection");
                c.on_segment(self.now, seg, payload);
                out = self.settle(*h);
            }
            Route::Accept(a) => {
                if let Some(old) = a.replaced {
                    assert!(
                        self.conns.remove(&old).is_some(),
                        "replaced a live connection"
                    );
                }
                let c = Connection::accept(self.cfg.clone(), to, from, seg, SeqNum(ISS), self.now)
                    .expect("the endpoint routes only SYNs to a listener");
                self.conns.insert(a.handle, c);
                out = self.settle(a.handle);
            }
            Route::Reply(rst) => out.push(rst.ladder(0).to_string()),
            Route::SynCookie { iss, .. } => {
                let syn_ack =
                    Connection::cookie_syn_ack(self.cfg.clone(), to, from, seg, *iss, self.now)
                        .expect("the endpoint answers only SYNs with cookies");
                out.push(syn_ack.ladder(0).to_string());
            }
            Route::CookieAccept { accept, cookie } => {
                match Connection::accept_cookie(
                    self.cfg.clone(),
                    to,
                    from,
                    cookie,
                    seg,
                    payload,
                    self.now,
                ) {
                    Some(c) => {
                        self.conns.insert(accept.handle, c);
                        out = self.settle(accept.handle);
                    }
                    None => {
                        self.ep.remove(accept.handle);
                    }
                }
            }
            Route::Discard(_) => {}
        }
        (route, out)
    }

    /// Sends what `h` has due and reports its status to the endpoint.
    fn settle(&mut self, h: ConnectionHandle) -> Vec<String> {
        let Some(c) = self.conns.get_mut(&h) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(t) = c.poll_transmit(self.now, &mut self.buf) {
            out.push(t.repr.ladder(t.payload_len).to_string());
        }
        match self.ep.update(h, c.status()) {
            Update::None => {}
            Update::Accepted(l) => self.accepted.push(l),
            Update::Forget => {
                self.conns.remove(&h);
            }
        }
        out
    }

    /// Moves time to `t`, fires every due timer, returns what was sent.
    fn advance_to(&mut self, t: Instant) -> Vec<String> {
        self.now = t;
        let due: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|d| d <= t))
            .map(|(h, _)| *h)
            .collect();
        let mut out = Vec::new();
        for h in due {
            self.conns.get_mut(&h).unwrap().handle_timeout(t);
            out.extend(self.settle(h));
        }
        out
    }

    fn state(&self, h: ConnectionHandle) -> State {
        self.conns[&h].state()
    }
}

fn server() -> SocketAddr {
    addr(SERVER)
}

/// The client at `10.0.0.1:port`.
fn client(port: u16) -> SocketAddr {
    SocketAddr::new([10, 0, 0, 1].into(), port)
}

/// `seg` from the client port `port`.
fn from(port: u16, mut s: TcpRepr) -> TcpRepr {
    s.src_port = port;
    s
}

fn accepted(r: &Route) -> ConnectionHandle {
    match r {
        Route::Accept(a) => a.handle,
        other => panic!("expected a new connection, got {other:?}"),
    }
}

/// A listener at the server address with `backlog`, and one client (port 40000) through the
/// handshake into its accept queue: returns the host, listener and connection.
fn established(cfg: Config, backlog: usize) -> (Host, ListenerId, ConnectionHandle) {
    let mut host = Host::new(cfg);
    let l = host.ep.listen(server(), backlog, false).unwrap();
    let (r, out) = host.input(client(40000), server(), &seg("SYN", 100, 0));
    let h = accepted(&r);
    assert_eq!(out, ["SYN+ACK  S:2000 A:101"]);
    let (r, out) = host.input(client(40000), server(), &seg("ACK", 101, 2001));
    assert_eq!(r, Route::Connection(h));
    assert!(out.is_empty());
    assert_eq!(host.accepted, [l]);
    (host, l, h)
}

// ---- RSTs for strangers ------------------------------------------------------------------

/// RFC 9293 §3.10.7.1: a SYN to a port nobody listens on draws <SEQ=0><ACK=SEG.SEQ+1>
/// <CTL=RST,ACK>, and the endpoint creates nothing.
#[test]
fn syn_to_a_closed_port_draws_rst_ack() {
    let mut host = Host::new(plain());
    let (r, out) = host.input(client(40000), server(), &seg("SYN", 100, 0));
    assert!(matches!(r, Route::Reply(_)));
    assert_eq!(out, ["RST+ACK  S:0 A:101"]);
    let Route::Reply(rst) = r else { unreachable!() };
    assert_eq!((rst.src_port, rst.dst_port), (80, 40000), "addressed back");
    assert_eq!(host.ep.stats().resets_sent, 1);
    assert!(host.ep.is_empty());
    // A listener on another port, or on another address, changes nothing.
    host.ep.listen(addr("10.0.0.2:81"), 16, false).unwrap();
    host.ep.listen(addr("10.0.0.3:80"), 16, false).unwrap();
    let (_, out) = host.input(client(40000), server(), &seg("SYN", 100, 0));
    assert_eq!(out, ["RST+ACK  S:0 A:101"]);
}

/// RFC 9293 §3.10.7.1: a segment with an ACK that reaches no connection draws
/// <SEQ=SEG.ACK><CTL=RST>, whether or not a listener is at the address (§3.10.7.2: any ACK
/// in LISTEN is bad).
#[test]
fn ack_bearing_stranger_draws_rst_at_its_ack_number() {
    let mut host = Host::new(plain());
    let (_, out) = host.input_with(client(40000), server(), &seg("PSH+ACK", 10, 99), &[7; 5]);
    assert_eq!(out, ["RST      S:99 A:0"]);
    host.ep.listen(server(), 16, false).unwrap();
    let (_, out) = host.input(client(40000), server(), &seg("ACK", 10, 777));
    assert_eq!(out, ["RST      S:777 A:0"]);
    let (_, out) = host.input(client(40000), server(), &seg("SYN+ACK", 10, 555));
    assert_eq!(out, ["RST      S:555 A:0"], "a SYN+ACK to a listener");
    assert_eq!(host.ep.stats().resets_sent, 3);
    assert!(host.ep.is_empty());
}

/// RFC 9293 §3.10.7.1: without an ACK the RST acknowledges the whole segment,
/// SEG.SEQ+SEG.LEN (data and FIN count); a listener drops such a segment instead
/// (§3.10.7.2: without SYN it "must have an ACK").
#[test]
fn stranger_without_ack_draws_rst_ack_covering_it() {
    let mut host = Host::new(plain());
    let (_, out) = host.input_with(client(40000), server(), &seg("FIN+PSH", 300, 0), &[1; 50]);
    assert_eq!(out, ["RST+ACK  S:0 A:351"]);
    let (_, out) = host.input_with(client(40000), server(), &seg("PSH", 300, 0), &[1; 50]);
    assert_eq!(out, ["RST+ACK  S:0 A:350"]);
    host.ep.listen(server(), 16, false).unwrap();
    let (r, out) = host.input_with(client(40000), server(), &seg("PSH", 300, 0), &[1; 50]);
    assert_eq!(r, Route::Discard(DropReason::NotSyn));
    assert!(out.is_empty());
    assert_eq!(host.ep.stats().resets_sent, 2);
}

/// RFC 9293 §3.10.7.1: "An incoming segment containing a RST is discarded" — never answered
/// with a RST, with or without a listener.
#[test]
fn rst_for_no_connection_draws_nothing() {
    let mut host = Host::new(plain());
    for s in [seg("RST", 10, 0), seg("RST+ACK", 10, 20)] {
        let (r, out) = host.input(client(40000), server(), &s);
        assert_eq!(r, Route::Discard(DropReason::Reset));
        assert!(out.is_empty());
    }
    host.ep.listen(server(), 16, false).unwrap();
    let (r, out) = host.input(client(40000), server(), &seg("RST", 10, 0));
    assert_eq!(r, Route::Discard(DropReason::Reset));
    assert!(out.is_empty());
    assert_eq!(host.ep.stats().resets_sent, 0);
    assert_eq!(host.ep.stats().discarded, 3);
}

/// A connection that closed (here reset by its peer) while the application still holds it
/// has no TCB: segments for its 4-tuple are strangers' and a SYN may open a new connection.
#[test]
fn closed_connection_held_by_the_application_is_a_stranger() {
    let (mut host, l, h) = established(plain(), 16);
    assert_eq!(host.ep.accept(l), Some(h));
    let (r, out) = host.input(client(40000), server(), &seg("RST", 101, 0));
    assert_eq!(r, Route::Connection(h));
    assert!(out.is_empty());
    assert_eq!(host.state(h), State::Closed);
    assert!(
        host.conns.contains_key(&h),
        "held until the application lets go"
    );
    let (r, out) = host.input(client(40000), server(), &seg("ACK", 101, 2001));
    assert!(matches!(r, Route::Reply(_)));
    assert_eq!(out, ["RST      S:2001 A:0"]);
    let (r, _) = host.input(client(40000), server(), &seg("SYN", 900, 0));
    assert_ne!(accepted(&r), h);
    // Once the application lets go, the old one is forgotten.
    host.ep.orphan(h);
    assert_eq!(host.settle(h), Vec::<String>::new());
    assert!(!host.conns.contains_key(&h));
    assert_eq!(host.ep.connection(h), None);
}

// ---- the listen backlog ------------------------------------------------------------------

/// A SYN that finds the SYN queue full is dropped without an answer and counted (RFC 4987
/// §3.1); the peer retries. A retransmitted SYN of a queued connection is not a new one.
#[test]
fn syn_queue_full_drops_the_syn() {
    let mut host = Host::new(plain());
    // Without SYN cookies (see the cookie tests below for the default).
    host.ep.set_syn_cookies(SynCookieMode::Off);
    let l = host.ep.listen(server(), 1, false).unwrap();
    let limit = syn_queue_limit(1);
    assert_eq!(limit, 128);
    for i in 0..limit as u16 {
        let (r, out) = host.input(
            client(1000 + i),
            server(),
            &from(1000 + i, seg("SYN", 100, 0)),
        );
        accepted(&r);
        assert_eq!(out, ["SYN+ACK  S:2000 A:101"]);
    }
    assert_eq!(host.ep.listener(l).unwrap().syn_queue, limit);
    let (r, out) = host.input(client(9000), server(), &from(9000, seg("SYN", 100, 0)));
    assert_eq!(r, Route::Discard(DropReason::SynQueueFull));
    assert!(out.is_empty(), "dropped, not refused");
    assert_eq!(host.ep.stats().syn_queue_full, 1);
    assert_eq!(host.ep.stats().resets_sent, 0);
    assert_eq!(host.ep.len(), limit);
    // A queued connection's retransmitted SYN reaches it, whatever the queue's state.
    let (r, out) = host.input(client(1000), server(), &from(1000, seg("SYN", 100, 0)));
    assert!(matches!(r, Route::Connection(_)));
    assert_eq!(out, ["SYN+ACK  S:2000 A:101"]);
    assert_eq!(host.ep.stats().syn_queue_full, 1);
    // A handshake completing makes room.
    let (r, _) = host.input(client(1000), server(), &from(1000, seg("ACK", 101, 2001)));
    assert!(matches!(r, Route::Connection(_)));
    assert_eq!(host.ep.listener(l).unwrap().syn_queue, limit - 1);
    assert_eq!(host.ep.listener(l).unwrap().accept_queue, 1);
    host.ep.accept(l).unwrap();
    let (r, _) = host.input(client(9000), server(), &from(9000, seg("SYN", 100, 0)));
    accepted(&r);
}

/// A SYN that finds the accept queue full is dropped (Linux: `ListenOverflows`), and so is
/// the ACK that would complete a handshake: the connection stays in SYN-RECEIVED,
/// retransmits its SYN+ACK, and completes once `accept` made room.
#[test]
fn accept_queue_full_keeps_the_handshake_in_syn_received() {
    let (mut host, _, _) = established(plain(), 1);
    // A waits in the accept queue, so B's SYN finds it full.
    let (r, out) = host.input(client(40001), server(), &from(40001, seg("SYN", 500, 0)));
    assert_eq!(r, Route::Discard(DropReason::AcceptQueueFull));
    assert!(out.is_empty());
    assert_eq!(host.ep.stats().accept_queue_full, 1);
    // Start again: B's SYN arrives while A is still in SYN-RECEIVED.
    let mut host = Host::new(plain());
    let l2 = host.ep.listen(server(), 1, false).unwrap();
    let a2 = accepted(&host.input(client(40000), server(), &seg("SYN", 100, 0)).0);
    let b = accepted(
        &host
            .input(client(40001), server(), &from(40001, seg("SYN", 500, 0)))
            .0,
    );
    host.input(client(40000), server(), &seg("ACK", 101, 2001));
    assert_eq!(host.ep.listener(l2).unwrap().accept_queue, 1);
    // B's final ACK (with data) finds the queue full: dropped, B stays in SYN-RECEIVED.
    let ack_b = from(40001, seg("PSH+ACK", 501, 2001));
    let (r, out) = host.input_with(client(40001), server(), &ack_b, b"hi");
    assert_eq!(r, Route::Discard(DropReason::ListenOverflow));
    assert!(out.is_empty());
    assert_eq!(host.state(b), State::SynReceived);
    assert_eq!(host.ep.stats().listen_overflows, 1);
    let info = host.ep.listener(l2).unwrap();
    assert_eq!((info.syn_queue, info.accept_queue), (1, 1));
    // A RST or a repeated SYN still reaches it: only the completing ACK is held back.
    let (r, out) = host.input(client(40001), server(), &from(40001, seg("SYN", 500, 0)));
    assert_eq!(r, Route::Connection(b));
    assert_eq!(out, ["SYN+ACK  S:2000 A:501"]);
    // B's SYN+ACK is retransmitted on its timer while the queue stays full.
    let rto = host.conns[&b].poll_timeout().unwrap();
    assert_eq!(host.advance_to(rto), ["SYN+ACK  S:2000 A:501"]);
    // The application accepts A; B's next ACK completes it.
    assert_eq!(host.ep.accept(l2), Some(a2));
    let (r, _) = host.input_with(client(40001), server(), &ack_b, b"hi");
    assert_eq!(r, Route::Connection(b));
    assert_eq!(host.state(b), State::Established);
    assert_eq!(host.accepted, [l2, l2]);
    assert_eq!(host.ep.accept(l2), Some(b));
}

/// With the accept queue full, every segment with an ACK for a connection still in
/// SYN-RECEIVED is held back, not only a bare ACK: here a SYN+ACK at the peer's ISN, which
/// the engine takes as completing the handshake. Found by `any_input_keeps_the_books` (the
/// accept queue grew past the backlog).
#[test]
fn accept_queue_full_holds_back_a_syn_with_ack_too() {
    let (mut host, l, _) = established(plain(), 1);
    host.ep.accept(l).unwrap();
    let b = accepted(
        &host
            .input(client(40001), server(), &from(40001, seg("SYN", 500, 0)))
            .0,
    );
    let c = accepted(
        &host
            .input(client(40002), server(), &from(40002, seg("SYN", 700, 0)))
            .0,
    );
    host.input(client(40001), server(), &from(40001, seg("ACK", 501, 2001)));
    assert_eq!(host.ep.listener(l).unwrap().accept_queue, 1);
    let (r, out) = host.input(
        client(40002),
        server(),
        &from(40002, seg("SYN+ACK", 700, 2001)),
    );
    assert_eq!(r, Route::Discard(DropReason::ListenOverflow));
    assert!(out.is_empty());
    assert_eq!(host.state(c), State::SynReceived);
    assert_eq!(host.ep.listener(l).unwrap().accept_queue, 1);
    assert_eq!(host.ep.accept(l), Some(b));
}

/// A repeated SYN for a connection in SYN-RECEIVED (our SYN+ACK was lost) reaches that
/// connection, which answers with the same SYN+ACK: no second connection, and the SYN queue
/// holds one.
#[test]
fn duplicate_syn_reaches_the_connection_in_syn_received() {
    let mut host = Host::new(plain());
    let l = host.ep.listen(server(), 16, false).unwrap();
    let (r, out) = host.input(client(40000), server(), &seg("SYN", 100, 0));
    let h = accepted(&r);
    assert_eq!(out, ["SYN+ACK  S:2000 A:101"]);
    let (r, out) = host.input(client(40000), server(), &seg("SYN", 100, 0));
    assert_eq!(r, Route::Connection(h));
    assert_eq!(out, ["SYN+ACK  S:2000 A:101"]);
    assert_eq!(host.ep.len(), 1);
    assert_eq!(host.ep.listener(l).unwrap().syn_queue, 1);
    assert_eq!(host.state(h), State::SynReceived);
}

/// A handshake that fails (the peer resets it) leaves the SYN queue and is forgotten.
#[test]
fn failed_handshake_leaves_the_syn_queue() {
    let mut host = Host::new(plain());
    let l = host.ep.listen(server(), 16, false).unwrap();
    let h = accepted(&host.input(client(40000), server(), &seg("SYN", 100, 0)).0);
    let (r, _) = host.input(client(40000), server(), &seg("RST", 101, 0));
    assert_eq!(r, Route::Connection(h));
    assert_eq!(host.ep.connection(h), None);
    assert!(!host.conns.contains_key(&h));
    assert_eq!(host.ep.listener(l).unwrap().syn_queue, 0);
    assert_eq!(host.ep.accept(l), None);
}

/// Closing a listener orphans the connections it had not handed out (the driver resets
/// them); accepted ones stay the application's.
#[test]
fn closing_a_listener_orphans_its_queues() {
    let (mut host, l, a) = established(plain(), 16);
    let b = accepted(
        &host
            .input(client(40001), server(), &from(40001, seg("SYN", 5, 0)))
            .0,
    );
    let c = accepted(
        &host
            .input(client(40002), server(), &from(40002, seg("SYN", 5, 0)))
            .0,
    );
    host.input(client(40002), server(), &from(40002, seg("ACK", 6, 2001)));
    assert_eq!(host.ep.accept(l), Some(a));
    let closed = host.ep.close_listener(l).unwrap();
    assert!(closed.last);
    let mut orphans = closed.orphans;
    orphans.sort();
    let mut expected = vec![b, c];
    expected.sort();
    assert_eq!(orphans, expected);
    assert_eq!(host.ep.connection(b).unwrap().owner, Owner::Orphan);
    assert_eq!(host.ep.connection(a).unwrap().owner, Owner::Application);
    // Aborted by the driver, they are forgotten.
    for h in [b, c] {
        host.conns.get_mut(&h).unwrap().abort();
        assert_eq!(host.settle(h), ["RST+ACK  S:2001 A:6"]);
        assert_eq!(host.ep.connection(h), None);
    }
    // Nothing listens any more: a SYN is refused.
    let (_, out) = host.input(client(40003), server(), &from(40003, seg("SYN", 5, 0)));
    assert_eq!(out, ["RST+ACK  S:0 A:6"]);
}

/// `SO_REUSEPORT`: listeners that all allow it share an address, and a peer always reaches
/// the same one (a hash of its address); one that does not allow it is refused. A listener
/// at the exact address is preferred to one at the unspecified address.
#[test]
fn reuseport_listeners_share_an_address() {
    let mut host = Host::new(plain());
    let a = host.ep.listen(server(), 16, true).unwrap();
    let b = host.ep.listen(server(), 16, true).unwrap();
    assert_eq!(host.ep.listen(server(), 16, false), None, "not sharing");
    assert_eq!(host.ep.listening_shared(server()), Some(true));
    let mut hits = HashMap::new();
    for port in 1000..1064u16 {
        let peer = client(port);
        let first = host.ep.listener_for(server(), peer).unwrap();
        assert_eq!(host.ep.listener_for(server(), peer), Some(first));
        let Route::Accept(acc) = host.input(peer, server(), &from(port, seg("SYN", 1, 0))).0 else {
            panic!("a listener takes it");
        };
        assert_eq!(acc.listener, first);
        *hits.entry(first).or_insert(0) += 1;
    }
    assert_eq!(hits.len(), 2, "both listeners take connections: {hits:?}");
    assert_eq!(hits[&a] + hits[&b], 64);
    // A lone listener at the address refuses a second one, shared or not.
    let mut host = Host::new(plain());
    host.ep.listen(server(), 16, false).unwrap();
    assert_eq!(host.ep.listen(server(), 16, true), None);
    // The unspecified address catches what no exact listener takes.
    let any = host.ep.listen(addr("0.0.0.0:80"), 16, false).unwrap();
    let exact = host.ep.listener_for(server(), client(1)).unwrap();
    assert_ne!(exact, any);
    assert_eq!(
        host.ep.listener_for(addr("10.0.0.9:80"), client(1)),
        Some(any)
    );
    let r = host
        .input(client(5), addr("10.0.0.9:80"), &from(5, seg("SYN", 1, 0)))
        .0;
    assert!(matches!(r, Route::Accept(acc) if acc.listener == any));
}

// ---- TIME-WAIT reuse ---------------------------------------------------------------------

/// A client segment with the timestamp option (TSval `tsval`) when `ts` is on.
fn stamped(mut s: TcpRepr, ts: bool, tsval: u32) -> TcpRepr {
    if ts {
        s.options.timestamps = Some((tsval, 0));
    }
    s
}

/// A server connection in TIME-WAIT (the server closed first, and dropped its stream),
/// with a listener still at its address; with timestamps the client's last TSval was 500.
fn in_time_wait(ts: bool) -> (Host, ListenerId, ConnectionHandle) {
    let cfg = Config {
        timestamps: ts,
        ..plain()
    };
    let mut host = Host::new(cfg);
    let l = host.ep.listen(server(), 16, false).unwrap();
    let h = accepted(
        &host
            .input(
                client(40000),
                server(),
                &stamped(seg("SYN", 100, 0), ts, 100),
            )
            .0,
    );
    host.input(
        client(40000),
        server(),
        &stamped(seg("ACK", 101, 2001), ts, 200),
    );
    assert_eq!(host.ep.accept(l), Some(h));
    host.conns.get_mut(&h).unwrap().shutdown().unwrap();
    assert_eq!(host.settle(h), ["FIN+ACK  S:2001 A:101"]);
    host.ep.orphan(h);
    host.input(
        client(40000),
        server(),
        &stamped(seg("ACK", 101, 2002), ts, 300),
    );
    let (r, out) = host.input(
        client(40000),
        server(),
        &stamped(seg("FIN+ACK", 101, 2002), ts, 500),
    );
    assert_eq!(r, Route::Connection(h));
    assert_eq!(out, ["ACK      S:2002 A:102"]);
    assert_eq!(host.state(h), State::TimeWait);
    assert!(host.ep.connection(h).unwrap().time_wait);
    (host, l, h)
}

/// Without timestamps a SYN whose sequence number lies beyond RCV.NXT reopens the 4-tuple:
/// the connection in TIME-WAIT is replaced by a new one in the listener's SYN queue
/// (RFC 6191's fallback, RFC 1122 §4.2.2.13).
#[test]
fn time_wait_reopened_by_a_newer_sequence_number() {
    let (mut host, l, old) = in_time_wait(false);
    let (r, out) = host.input(client(40000), server(), &seg("SYN", 5000, 0));
    let Route::Accept(a) = r else {
        panic!("expected the SYN to reopen the 4-tuple, got {r:?}")
    };
    assert_eq!((a.listener, a.replaced), (l, Some(old)));
    assert_eq!(out, ["SYN+ACK  S:2000 A:5001"]);
    assert_eq!(host.ep.connection(old), None);
    assert_eq!(host.ep.lookup(server(), client(40000)), Some(a.handle));
    assert_eq!(host.ep.stats().time_wait_reopened, 1);
    assert_eq!(host.ep.len(), 1);
}

/// Without timestamps a SYN at or behind RCV.NXT is the old incarnation's: it reaches the
/// connection in TIME-WAIT (which answers it) and opens nothing.
#[test]
fn time_wait_keeps_an_old_sequence_number() {
    let (mut host, _, old) = in_time_wait(false);
    for seq in [50, 102] {
        let (r, _) = host.input(client(40000), server(), &seg("SYN", seq, 0));
        assert_eq!(r, Route::Connection(old), "SYN at {seq}");
        assert_eq!(host.state(old), State::TimeWait);
    }
    assert_eq!(host.ep.stats().time_wait_reopened, 0);
    assert_eq!(host.ep.len(), 1);
}

/// With timestamps: a newer TSval reopens even with an old sequence number; an equal TSval
/// reopens with a new sequence number (a reconnect within one timestamp tick); an equal
/// TSval with an old sequence number does not; an older TSval is rejected by PAWS
/// (RFC 7323 §5) whatever the sequence number.
#[test]
fn time_wait_reuse_with_timestamps_as_linux() {
    let cases = [
        (50, 501, true, "newer TSval"),
        (5000, 500, true, "equal TSval, new sequence number"),
        (50, 500, false, "equal TSval, old sequence number"),
        (5000, 499, false, "older TSval: PAWS"),
        (
            5000,
            500u32.wrapping_sub(1 << 31),
            false,
            "TSval 2^31 behind: PAWS",
        ),
    ];
    for (seq, tsval, reopens, what) in cases {
        let (mut host, l, old) = in_time_wait(true);
        let syn = stamped(seg("SYN", seq, 0), true, tsval);
        let (r, _) = host.input(client(40000), server(), &syn);
        match r {
            Route::Accept(a) if reopens => {
                assert_eq!((a.listener, a.replaced), (l, Some(old)), "{what}");
                assert_eq!(host.state(a.handle), State::SynReceived, "{what}");
            }
            Route::Connection(h) if !reopens => {
                assert_eq!(h, old, "{what}");
                assert_eq!(host.state(old), State::TimeWait, "{what}");
            }
            other => panic!("{what}: got {other:?}"),
        }
        assert_eq!(
            host.ep.stats().time_wait_reopened,
            u64::from(reopens),
            "{what}"
        );
    }
}

/// A SYN that would reopen a connection in TIME-WAIT but finds no listener stays the old
/// connection's to answer (Linux falls back from TCP_TW_SYN to an ACK from TIME-WAIT); and
/// one that finds the listener's queue full is dropped and leaves TIME-WAIT alone.
#[test]
fn time_wait_reuse_needs_a_listener_with_room() {
    let (mut host, l, old) = in_time_wait(false);
    host.ep.close_listener(l).unwrap();
    let (r, _) = host.input(client(40000), server(), &seg("SYN", 5000, 0));
    assert_eq!(r, Route::Connection(old));
    assert_eq!(host.state(old), State::TimeWait);

    let (mut host, l, old) = in_time_wait(false);
    // Fill the listener's accept queue (backlog 16).
    for port in 0..16u16 {
        let p = 2000 + port;
        host.input(client(p), server(), &from(p, seg("SYN", 1, 0)));
        host.input(client(p), server(), &from(p, seg("ACK", 2, 2001)));
    }
    assert_eq!(host.ep.listener(l).unwrap().accept_queue, 16);
    let (r, _) = host.input(client(40000), server(), &seg("SYN", 5000, 0));
    assert_eq!(r, Route::Discard(DropReason::AcceptQueueFull));
    assert_eq!(host.ep.connection(old).map(|c| c.time_wait), Some(true));
    assert_eq!(host.ep.stats().time_wait_reopened, 0);
}

/// The TIME-WAIT record follows the connection: out of TIME-WAIT (after 2 MSL it is
/// forgotten) nothing is reopened — the SYN is simply a new one for the listener.
#[test]
fn time_wait_ends_and_is_forgotten() {
    let (mut host, _, old) = in_time_wait(false);
    let t = host.conns[&old].poll_timeout().unwrap();
    host.advance_to(t);
    assert_eq!(
        host.ep.connection(old),
        None,
        "orphan forgotten after TIME-WAIT"
    );
    assert!(!host.conns.contains_key(&old));
    let (r, _) = host.input(client(40000), server(), &seg("SYN", 50, 0));
    let Route::Accept(a) = r else { panic!("{r:?}") };
    assert_eq!(a.replaced, None);
}

/// Closes the accepted connection from client port `port` from the server's side, lets it
/// go and completes the exchange of FINs: it enters TIME-WAIT, unless the table is full.
fn close_first(host: &mut Host, l: ListenerId, port: u16) -> ConnectionHandle {
    let c = client(port);
    let h = accepted(&host.input(c, server(), &from(port, seg("SYN", 100, 0))).0);
    host.input(c, server(), &from(port, seg("ACK", 101, 2001)));
    assert_eq!(host.ep.accept(l), Some(h));
    host.conns.get_mut(&h).unwrap().shutdown().unwrap();
    host.settle(h);
    assert!(host.ep.orphan(h));
    host.input(c, server(), &from(port, seg("FIN+ACK", 101, 2002)));
    h
}

/// Past `max_time_wait`, a connection the application let go is forgotten instead of
/// lingering in TIME-WAIT (Linux's "time wait bucket table overflow"), and counted.
#[test]
fn time_wait_is_bounded() {
    let mut host = Host::new(plain());
    host.ep.set_limits(Limits {
        max_time_wait: 2,
        ..Limits::default()
    });
    let l = host.ep.listen(server(), 16, false).unwrap();
    let kept: Vec<_> = (0..2)
        .map(|i| close_first(&mut host, l, 40000 + i))
        .collect();
    for h in &kept {
        assert!(host.ep.connection(*h).unwrap().time_wait);
    }
    let third = close_first(&mut host, l, 40002);
    assert_eq!(host.ep.connection(third), None, "forgotten at once");
    assert!(!host.conns.contains_key(&third));
    assert_eq!(host.ep.stats().time_wait, 2);
    assert_eq!(host.ep.stats().time_wait_overflows, 1);
    // When they end (both at once: they entered together), there is room again.
    let t = host.conns[&kept[0]].poll_timeout().unwrap();
    host.advance_to(t);
    assert_eq!(host.ep.stats().time_wait, 0);
    let fourth = close_first(&mut host, l, 40003);
    assert!(host.ep.connection(fourth).unwrap().time_wait);
}

/// Past `max_orphans`, letting a connection go answers `false`: the driver resets it
/// instead of closing it gracefully (Linux's "too many orphaned sockets").
#[test]
fn orphans_are_bounded() {
    let mut host = Host::new(plain());
    host.ep.set_limits(Limits {
        max_orphans: 1,
        ..Limits::default()
    });
    let l = host.ep.listen(server(), 16, false).unwrap();
    let mut handles = Vec::new();
    for port in [40000, 40001] {
        let c = client(port);
        let h = accepted(&host.input(c, server(), &from(port, seg("SYN", 100, 0))).0);
        host.input(c, server(), &from(port, seg("ACK", 101, 2001)));
        assert_eq!(host.ep.accept(l), Some(h));
        handles.push(h);
    }
    assert!(host.ep.orphan(handles[0]));
    assert!(host.ep.orphan(handles[0]), "letting go twice is one orphan");
    assert!(!host.ep.orphan(handles[1]), "over the limit");
    assert_eq!(host.ep.stats().orphans, 2);
    assert_eq!(host.ep.stats().orphan_overflows, 1);
    // The driver resets it; once closed it is forgotten and the count falls.
    host.conns.get_mut(&handles[1]).unwrap().abort();
    assert_eq!(host.settle(handles[1]), ["RST+ACK  S:2001 A:101"]);
    assert_eq!(host.ep.connection(handles[1]), None);
    assert_eq!(host.ep.stats().orphans, 1);
}

/// An active open takes its 4-tuple; a second one for the same 4-tuple is refused, another
/// remote port is fine.
#[test]
fn connect_takes_a_free_four_tuple_only() {
    let mut ep = Endpoint::new();
    let local = addr(CLIENT);
    let h = ep.connect(local, server()).unwrap();
    assert_eq!(ep.connect(local, server()), None);
    assert!(ep.connect(local, addr("10.0.0.2:81")).is_some());
    assert_eq!(ep.lookup(local, server()), Some(h));
    assert_eq!(ep.connection(h).unwrap().owner, Owner::Application);
    assert!(ep.address_in_use(local));
    assert!(ep.address_in_use(addr("0.0.0.0:40000")));
    assert!(!ep.address_in_use(addr("10.0.0.1:40001")));
    assert!(ep.remove(h));
    assert!(!ep.remove(h), "a stale handle is recognised");
    let again = ep.connect(local, server()).unwrap();
    assert_eq!(again.index(), h.index(), "the slot is reused");
    assert_ne!(again, h);
    assert_eq!(ep.connection(h), None);
}

// ---- whatever arrives --------------------------------------------------------------------

/// One step of the property test: a segment from one of a few client ports, or what the
/// application and the clock do.
#[derive(Debug, Clone)]
enum Step {
    /// Flags (an index into `FLAGS`), client port (40000 + n), sequence and
    /// acknowledgment numbers near the ones in play, payload length.
    Segment(usize, u16, u32, u32, usize),
    /// The application accepts from the listener.
    Accept,
    /// The application drops the oldest connection it holds (graceful close).
    Drop,
    /// Time moves on by this many milliseconds.
    Advance(u64),
}

const FLAGS: [&str; 10] = [
    "SYN", "ACK", "SYN+ACK", "RST", "RST+ACK", "FIN+ACK", "PSH+ACK", "FIN", "PSH", "SYN+RST",
];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Mostly the numbers a handshake with this host uses (the client's ISN 100, the
        // host's 2000), so that handshakes complete and queues fill; sometimes others.
        8 => (
            prop_oneof![3 => Just(0usize), 3 => Just(1), 2 => 0..FLAGS.len()],
            0u16..5,
            prop_oneof![2 => Just(100u32), 2 => Just(101), 1 => 95u32..110],
            prop_oneof![3 => Just(2001u32), 1 => 1995u32..2010],
            0usize..4,
        )
            .prop_map(|(f, p, s, a, n)| Step::Segment(f, p, s, a, n)),
        1 => Just(Step::Accept),
        1 => Just(Step::Drop),
        1 => (1u64..70_000).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any sequence of segments, accepts, drops and time never panics, and the endpoint's
    /// books stay right: it knows exactly the connections the driver keeps, a listener's
    /// queues hold at most what it knows and the accept queue never exceeds the backlog, and
    /// it never answers a RST (RFC 9293 §3.10.7.1) nor answers anything but with a RST.
    #[test]
    fn any_input_keeps_the_books(steps in proptest::collection::vec(step(), 1..60)) {
        let mut host = Host::new(plain());
        let l = host.ep.listen(server(), 2, false).unwrap();
        let mut held: Vec<ConnectionHandle> = Vec::new();
        for s in steps {
            match s {
                Step::Segment(f, p, seq, ack, n) => {
                    let seg = from(40000 + p, seg(FLAGS[f], seq, ack));
                    let (r, out) = host.input_with(client(40000 + p), server(), &seg, &[7; 3][..n]);
                    if let Route::Reply(rst) = &r {
                        prop_assert!(!seg.flags.contains(TcpFlags::RST), "a RST answered: {seg:?}");
                        prop_assert!(rst.flags.contains(TcpFlags::RST));
                        prop_assert_eq!(out.len(), 1);
                    }
                }
                Step::Accept => {
                    if let Some(h) = host.ep.accept(l) {
                        prop_assert!(host.conns.contains_key(&h), "accepted a connection the driver lacks");
                        held.push(h);
                    }
                }
                Step::Drop => {
                    if !held.is_empty() {
                        let h = held.remove(0);
                        host.ep.orphan(h);
                        let now = host.now;
                        if let Some(c) = host.conns.get_mut(&h) {
                            c.orphan(now);
                        }
                        host.settle(h);
                    }
                }
                Step::Advance(ms) => {
                    let t = host.now + std::time::Duration::from_millis(ms);
                    host.advance_to(t);
                }
            }
            prop_assert_eq!(host.ep.len(), host.conns.len(), "endpoint and driver disagree");
            for h in host.conns.keys() {
                prop_assert!(host.ep.connection(*h).is_some(), "the endpoint lost {:?}", h);
            }
            let info = host.ep.listener(l).unwrap();
            // The listener's queues, counted from the connections it holds: those still in
            // SYN-RECEIVED are its SYN queue, the others (established, maybe closed since)
            // wait in its accept queue. A failed handshake is gone from both.
            let queued: Vec<State> = host
                .conns
                .iter()
                .filter(|(h, _)| host.ep.connection(**h).unwrap().owner == Owner::Listener(l))
                .map(|(_, c)| c.state())
                .collect();
            let syn = queued.iter().filter(|s| **s == State::SynReceived).count();
            prop_assert_eq!((info.syn_queue, info.accept_queue), (syn, queued.len() - syn));
            prop_assert!(info.syn_queue + info.accept_queue <= host.ep.len());
            prop_assert!(info.accept_queue <= info.backlog, "{info:?}");
        }
    }
}

// ---- SYN cookies (RFC 4987 §3.6) -----------------------------------------------------------

/// The SYN+ACK's ISN from its ladder line ("SYN+ACK  S:n A:m").
fn isn_of(ladder: &str) -> u32 {
    let s = ladder.split("S:").nth(1).unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

/// A listener whose SYN queue a flood of half-open handshakes filled (clients on ports
/// 1000..): returns the host and the listener.
fn flooded(cfg: Config, backlog: usize) -> (Host, ListenerId) {
    let mut host = Host::new(cfg);
    let l = host.ep.listen(server(), backlog, false).unwrap();
    for i in 0..syn_queue_limit(backlog) {
        let port = 1000 + i as u16;
        let (r, _) = host.input(client(port), server(), &from(port, seg("SYN", 100, 0)));
        accepted(&r);
    }
    assert_eq!(
        host.ep.listener(l).unwrap().syn_queue,
        syn_queue_limit(backlog)
    );
    (host, l)
}

/// With its SYN queue full, a listener answers a SYN with a cookie and keeps nothing; the
/// client's ACK rebuilds the connection, which joins the accept queue like any other.
#[test]
fn a_full_syn_queue_answers_with_cookies_and_the_ack_opens_the_connection() {
    let (mut host, l) = flooded(plain(), 16);
    let conns = host.ep.len();
    let (r, out) = host.input(client(50000), server(), &from(50000, seg("SYN", 700, 0)));
    assert!(matches!(r, Route::SynCookie { listener, .. } if listener == l));
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("SYN+ACK"), "{out:?}");
    assert!(out[0].ends_with("A:701"), "{out:?}");
    assert_eq!(host.ep.len(), conns, "nothing kept for the SYN");
    assert_eq!(host.ep.stats().cookies_sent, 1);
    assert_eq!(host.ep.stats().syn_queue_full, 0, "not dropped");

    let iss = isn_of(&out[0]);
    host.now = Instant::from_millis(30);
    let (r, out) = host.input_with(
        client(50000),
        server(),
        &from(50000, seg("PSH+ACK", 701, iss.wrapping_add(1))),
        b"hello",
    );
    let Route::CookieAccept { accept, cookie } = r else {
        panic!("expected the cookie to open a connection, got {r:?}")
    };
    assert_eq!(cookie.irs, SeqNum(700));
    assert!(out.is_empty(), "the data's ACK is delayed: {out:?}");
    assert_eq!(host.state(accept.handle), State::Established);
    assert_eq!(host.accepted, [l]);
    assert_eq!(host.ep.accept(l), Some(accept.handle));
    let mut buf = [0u8; 16];
    let c = host.conns.get_mut(&accept.handle).unwrap();
    assert_eq!(c.recv(&mut buf), Ok(5), "the data the cookie ACK carried");
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(host.ep.stats().cookies_accepted, 1);
}

/// A forged or stale cookie ACK opens nothing and is answered as any ACK for no connection
/// (RFC 9293 §3.10.7.2); without recent cookies, ACKs are not even checked.
#[test]
fn forged_and_stale_cookie_acks_draw_rsts() {
    let mut host = Host::new(plain());
    host.ep.listen(server(), 16, false).unwrap();
    // No cookie sent yet: a stranger's ACK is not checked.
    let (_, out) = host.input(client(40000), server(), &seg("ACK", 101, 12345));
    assert_eq!(out, ["RST      S:12345 A:0"]);
    assert_eq!(host.ep.stats().cookies_rejected, 0);

    host.ep.set_syn_cookies(SynCookieMode::Always);
    let (r, out) = host.input(client(40000), server(), &seg("SYN", 100, 0));
    assert!(matches!(r, Route::SynCookie { .. }));
    let iss = isn_of(&out[0]);
    // A guess one off, and the right number from another client.
    let (r, out) = host.input(
        client(40000),
        server(),
        &seg("ACK", 101, iss.wrapping_add(2)),
    );
    assert!(matches!(r, Route::Reply(_)), "{r:?}");
    assert_eq!(out, [format!("RST      S:{} A:0", iss.wrapping_add(2))]);
    let (r, _) = host.input(
        client(40001),
        server(),
        &from(40001, seg("ACK", 101, iss + 1)),
    );
    assert!(matches!(r, Route::Reply(_)), "{r:?}");
    // Two ticks of the cookie clock later (128 s), the genuine ACK is stale.
    host.now = Instant::from_secs(128);
    let (r, _) = host.input(client(40000), server(), &seg("ACK", 101, iss + 1));
    assert!(matches!(r, Route::Reply(_)), "{r:?}");
    assert_eq!(host.ep.stats().cookies_rejected, 3);
    assert_eq!(host.ep.stats().cookies_accepted, 0);
    assert!(host.ep.is_empty());
}

/// `Off` drops the SYN a full queue cannot take, as before cookies; `Always` answers every
/// SYN with one and keeps no SYN-RECEIVED state at all.
#[test]
fn cookie_modes() {
    let (mut host, _) = flooded(plain(), 16);
    host.ep.set_syn_cookies(SynCookieMode::Off);
    let (r, out) = host.input(client(50000), server(), &from(50000, seg("SYN", 700, 0)));
    assert_eq!(r, Route::Discard(DropReason::SynQueueFull));
    assert!(out.is_empty());
    assert_eq!(host.ep.stats().syn_queue_full, 1);

    let mut host = Host::new(plain());
    host.ep.set_syn_cookies(SynCookieMode::Always);
    let l = host.ep.listen(server(), 16, false).unwrap();
    let (r, out) = host.input(client(40000), server(), &seg("SYN", 100, 0));
    assert!(matches!(r, Route::SynCookie { .. }));
    assert_eq!(host.ep.listener(l).unwrap().syn_queue, 0);
    let (r, _) = host.input(
        client(40000),
        server(),
        &seg("ACK", 101, isn_of(&out[0]).wrapping_add(1)),
    );
    assert!(matches!(r, Route::CookieAccept { .. }), "{r:?}");
    assert_eq!(host.ep.listener(l).unwrap().accept_queue, 1);
}

/// A valid cookie ACK that finds the accept queue full is held back like any handshake's
/// ACK (Linux's ListenOverflows); the client's next segment, with the same cookie, gets in
/// once `accept` made room.
#[test]
fn a_cookie_ack_waits_for_room_in_the_accept_queue() {
    let mut host = Host::new(plain());
    host.ep.set_syn_cookies(SynCookieMode::Always);
    let l = host.ep.listen(server(), 1, false).unwrap();
    let mut isns = Vec::new();
    for port in [40000, 40001] {
        let (_, out) = host.input(client(port), server(), &from(port, seg("SYN", 100, 0)));
        isns.push(isn_of(&out[0]));
    }
    let (r, _) = host.input(client(40000), server(), &seg("ACK", 101, isns[0] + 1));
    let Route::CookieAccept { accept, .. } = r else {
        panic!("{r:?}")
    };
    let second = from(40001, seg("ACK", 101, isns[1] + 1));
    let (r, _) = host.input(client(40001), server(), &second);
    assert_eq!(r, Route::Discard(DropReason::ListenOverflow));
    assert_eq!(host.ep.accept(l), Some(accept.handle));
    let (r, _) = host.input(client(40001), server(), &second);
    assert!(matches!(r, Route::CookieAccept { .. }), "{r:?}");
    assert_eq!(host.ep.stats().cookies_accepted, 2);
}
