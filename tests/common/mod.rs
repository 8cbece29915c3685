//! Helpers for driving engines by hand: segment builders, a two-endpoint harness that records
//! every segment in ladder notation, and virtual time.
#![allow(dead_code)]

use rawtcp::proto::{Config, Connection, Instant, SeqNum, Transmit};
use rawtcp::wire::{TcpFlags, TcpRepr};
use std::net::SocketAddr;
use std::time::Duration;

pub const CLIENT: &str = "10.0.0.1:40000";
pub const SERVER: &str = "10.0.0.2:80";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Flags from the ladder spelling, e.g. "SYN+ACK".
pub fn flags(s: &str) -> TcpFlags {
    let mut f = TcpFlags::NONE;
    for name in s.split('+') {
        f |= match name {
            "SYN" => TcpFlags::SYN,
            "ACK" => TcpFlags::ACK,
            "FIN" => TcpFlags::FIN,
            "RST" => TcpFlags::RST,
            "PSH" => TcpFlags::PSH,
            "URG" => TcpFlags::URG,
            other => panic!("unknown flag {other}"),
        };
    }
    f
}

/// A segment from the client's port to the server's, with a window of 65535.
pub fn seg(f: &str, seq: u32, ack: u32) -> TcpRepr {
    TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq,
        ack,
        flags: flags(f),
        window: 65535,
        ..TcpRepr::default()
    }
}

/// A configuration without options that change segment sizes or carry clocks, so that
/// scripts stay short: no timestamps, SACK or window scaling.
pub fn plain() -> Config {
    Config {
        timestamps: false,
        sack: false,
        window_scaling: false,
        ..Config::default()
    }
}

/// One endpoint under test, with virtual time.
pub struct Endpoint {
    pub conn: Connection,
    pub now: Instant,
    buf: Vec<u8>,
}

impl Endpoint {
    pub fn new(conn: Connection) -> Endpoint {
        Endpoint {
            conn,
            now: Instant::ZERO,
            buf: vec![0; 70_000],
        }
    }

    /// The client side: connect with `isn`.
    pub fn client(cfg: Config, isn: u32) -> Endpoint {
        Endpoint::new(Connection::connect(
            cfg,
            addr(CLIENT),
            addr(SERVER),
            SeqNum(isn),
            Instant::ZERO,
        ))
    }

    /// The server side: a fully specified passive open with `isn`.
    pub fn server(cfg: Config, isn: u32) -> Endpoint {
        Endpoint::new(Connection::listen(
            cfg,
            addr(SERVER),
            addr(CLIENT),
            SeqNum(isn),
            Instant::ZERO,
        ))
    }

    /// Every segment due now: (header, payload).
    pub fn drain(&mut self) -> Vec<(TcpRepr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(Transmit {
            repr, payload_len, ..
        }) = self.conn.poll_transmit(self.now, &mut self.buf)
        {
            out.push((repr, self.buf[..payload_len].to_vec()));
            assert!(out.len() < 10_000, "poll_transmit never returned None");
        }
        out
    }

    /// Every segment due now, in ladder notation.
    pub fn ladder(&mut self) -> Vec<String> {
        self.drain()
            .iter()
            .map(|(r, p)| r.ladder(p.len()).to_string())
            .collect()
    }

    /// Delivers a segment.
    pub fn input(&mut self, repr: &TcpRepr, payload: &[u8]) {
        self.conn.on_segment(self.now, repr, payload);
    }

    /// Moves time to `t` and fires due timers.
    pub fn advance_to(&mut self, t: Instant) {
        assert!(t >= self.now);
        self.now = t;
        self.conn.handle_timeout(t);
    }

    pub fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.advance_to(t);
    }

    /// Jumps to the next deadline (which must exist) and fires it.
    pub fn fire_next(&mut self) -> Instant {
        let t = self.conn.poll_timeout().expect("a timer is armed");
        self.advance_to(t.max(self.now));
        t
    }

    /// Reads everything readable.
    pub fn read_all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.conn.recv(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

/// Two endpoints joined back to back: what one sends, the other receives, and every
/// segment is recorded as `"client -> server  SYN      S:100 A:0"`.
pub struct Pair {
    pub client: Endpoint,
    pub server: Endpoint,
    pub log: Vec<String>,
}

impl Pair {
    /// A client that has sent nothing yet and a server in LISTEN.
    pub fn new(client_cfg: Config, client_isn: u32, server_cfg: Config, server_isn: u32) -> Pair {
        Pair {
            client: Endpoint::client(client_cfg, client_isn),
            server: Endpoint::server(server_cfg, server_isn),
            log: Vec::new(),
        }
    }

    /// Exchanges segments until neither side has anything to send now.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            let from_client = self.client.drain();
            let from_server = self.server.drain();
            if from_client.is_empty() && from_server.is_empty() {
                return;
            }
            for (r, p) in from_client {
                self.log
                    .push(format!("client -> server  {}", r.ladder(p.len())));
                self.server.input(&r, &p);
            }
            for (r, p) in from_server {
                self.log
                    .push(format!("server -> client  {}", r.ladder(p.len())));
                self.client.input(&r, &p);
            }
        }
        panic!("the endpoints never went quiet");
    }

    /// Sets both clocks to `t` and fires due timers, then settles.
    pub fn advance_to(&mut self, t: Instant) {
        self.client.advance_to(t);
        self.server.advance_to(t);
        self.settle();
    }

    /// The earlier of both endpoints' deadlines.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.client.conn.poll_timeout(),
            self.server.conn.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes the log recorded so far.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
}
