//! An in-memory network between two engines, deterministic from a `u64` seed: each direction
//! delays segments (a base delay plus random jitter, so that segments reorder), loses and
//! duplicates them at configured rates and optionally serialises them at a fixed bandwidth.
//!
//! [`transfer`] drives a client and a server through a complete connection over such a
//! network: handshake, a stream of position-dependent bytes in one or both directions
//! (checked byte for byte on arrival), the FIN exchange, and an [`Outcome`] with the figures
//! and everything needed to diagnose a failure. Virtual time jumps from event to event, so a
//! transfer that takes minutes of virtual time runs as fast as the engines allow. The loop is
//! bounded by a step count and by virtual time and reports failure instead of hanging.
//!
//! Checksums and corruption are the wire layer's business; this network carries parsed
//! [`TcpRepr`]s and their payloads unchanged.
#![allow(dead_code)]

use rawtcp::proto::{reset_for, Config, Connection, Error, Instant, SeqNum, State, TcpInfo};
use rawtcp::wire::TcpRepr;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The client's address.
pub const CLIENT_ADDR: &str = "10.0.0.1:40000";
/// The server's address.
pub const SERVER_ADDR: &str = "10.0.0.2:80";

/// Bytes of IP and TCP header charged per segment when a link has a bandwidth.
pub const HEADER_OVERHEAD: u64 = 40;

/// The splitmix64 finaliser: a fast, well-mixed 64-bit hash.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic pseudo-random generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A uniform value in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A uniform value in `[0, n]`.
    pub fn up_to(&mut self, n: u64) -> u64 {
        if n == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (n + 1)
        }
    }
}

/// Length of a [`Pattern`]'s table: a prime, so that no segment, window or buffer size
/// divides it.
pub const PATTERN_PERIOD: usize = 1_048_573;

/// The bytes of one data stream, a function of the position: a table of random bytes,
/// XORed with a byte that changes every time the stream wraps around the table. Data
/// delivered at the wrong position (reordering, duplication, an off-by-one in the engine)
/// differs from what is expected there, and producing or checking the stream costs little
/// more than a copy.
#[derive(Debug, Clone)]
pub struct Pattern {
    key: u64,
    table: Vec<u8>,
}

impl Pattern {
    /// The stream named by `key`.
    pub fn new(key: u64) -> Pattern {
        let mut table = Vec::with_capacity(PATTERN_PERIOD + 8);
        let mut i = 0u64;
        while table.len() < PATTERN_PERIOD {
            table
                .extend_from_slice(&mix(key ^ i.wrapping_mul(0xd6e8_feb8_6659_fd93)).to_le_bytes());
            i += 1;
        }
        table.truncate(PATTERN_PERIOD);
        Pattern { key, table }
    }

    /// Fills `buf` with the stream's bytes at positions `pos..pos + buf.len()`.
    pub fn fill(&self, pos: u64, buf: &mut [u8]) {
        let period = PATTERN_PERIOD as u64;
        let mut pos = pos;
        let mut buf = buf;
        while !buf.is_empty() {
            let off = (pos % period) as usize;
            let n = (PATTERN_PERIOD - off).min(buf.len());
            let (now, rest) = buf.split_at_mut(n);
            now.copy_from_slice(&self.table[off..off + n]);
            let lap = mix(self.key.wrapping_add(pos / period)) as u8;
            now.iter_mut().for_each(|b| *b ^= lap);
            buf = rest;
            pos += n as u64;
        }
    }

    /// The offset in `data` of the first byte that differs from the stream at `pos`, using
    /// `scratch` (at least as long as `data`) for the expected bytes.
    pub fn first_mismatch(&self, pos: u64, data: &[u8], scratch: &mut [u8]) -> Option<usize> {
        let expect = &mut scratch[..data.len()];
        self.fill(pos, expect);
        if expect == data {
            return None;
        }
        (0..data.len()).find(|&i| expect[i] != data[i])
    }
}

/// One direction of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Fixed one-way propagation delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per segment; segments reorder when it
    /// exceeds the gap between them.
    pub jitter: Duration,
    /// Probability that a segment is lost.
    pub loss: f64,
    /// Probability that a segment is delivered twice (the copy gets its own jitter).
    pub duplicate: f64,
    /// Bytes per second; segments (payload plus [`HEADER_OVERHEAD`]) are serialised one
    /// after another before the delay applies. `None`: infinitely fast.
    pub bandwidth: Option<u64>,
}

impl Link {
    /// No delay, no jitter, no loss, no duplication, no bandwidth limit.
    pub fn ideal() -> Link {
        Link {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            bandwidth: None,
        }
    }

    /// A lossless link with a fixed delay.
    pub fn delayed(delay: Duration) -> Link {
        Link {
            delay,
            ..Link::ideal()
        }
    }
}

impl Default for Link {
    fn default() -> Link {
        Link::ideal()
    }
}

/// An application that reads at a fixed pace instead of whenever data arrives, so that
/// receive windows fill and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowReader {
    /// Most bytes read per turn.
    pub bytes: u64,
    /// Virtual time between turns.
    pub every: Duration,
}

/// Everything that defines one [`transfer`].
#[derive(Debug, Clone)]
pub struct Opts {
    /// Seeds the network's randomness and the byte patterns; equal options give equal runs.
    pub seed: u64,
    /// The client's settings.
    pub client_cfg: Config,
    /// The server's settings.
    pub server_cfg: Config,
    /// The client's initial send sequence number.
    pub client_isn: u32,
    /// The server's initial send sequence number.
    pub server_isn: u32,
    /// Bytes the client writes before shutting down its write half.
    pub client_bytes: u64,
    /// Bytes the server writes; it shuts down after writing them and reading the client's EOF.
    pub server_bytes: u64,
    /// The client-to-server direction.
    pub to_server: Link,
    /// The server-to-client direction.
    pub to_client: Link,
    /// Largest single `send` call the applications make.
    pub write_chunk: usize,
    /// Buffer size the applications `recv` into.
    pub read_chunk: usize,
    /// Makes both applications slow readers; `None`: they read everything readable
    /// whenever their connection has had an input.
    pub slow_reader: Option<SlowReader>,
    /// Generate the streams' contents and check every byte read. Off, the applications
    /// write zeros and only count bytes, which leaves mostly the engines' cost to measure.
    pub verify_data: bool,
    /// Give up once virtual time passes this.
    pub max_virtual_time: Duration,
    /// Give up after this many steps (segment deliveries, timer firings and loop turns).
    pub max_steps: u64,
    /// How many of the most recent network events to keep for diagnostics (0: none, which
    /// saves formatting every segment).
    pub trace_len: usize,
    /// Run on until the client leaves TIME-WAIT as well, instead of stopping as soon as
    /// the client is in TIME-WAIT and the server is closed.
    pub wait_time_wait: bool,
}

impl Opts {
    /// A client sending `client_bytes` to a server over ideal links, default configurations.
    pub fn new(seed: u64, client_bytes: u64) -> Opts {
        Opts {
            seed,
            client_cfg: Config::default(),
            server_cfg: Config::default(),
            client_isn: 1000,
            server_isn: 5000,
            client_bytes,
            server_bytes: 0,
            to_server: Link::ideal(),
            to_client: Link::ideal(),
            write_chunk: 64 * 1024,
            read_chunk: 64 * 1024,
            slow_reader: None,
            verify_data: true,
            max_virtual_time: Duration::from_secs(600),
            max_steps: 20_000_000,
            trace_len: 64,
            wait_time_wait: false,
        }
    }

    /// Uses `link` for both directions.
    pub fn link(mut self, link: Link) -> Opts {
        self.to_server = link.clone();
        self.to_client = link;
        self
    }
}

/// What one endpoint did, as seen at the end of a [`transfer`].
#[derive(Debug, Clone)]
pub struct EndReport {
    /// Final RFC 9293 state.
    pub state: State,
    /// The connection's error, if it ended with one.
    pub error: Option<Error>,
    /// The first unexpected error an application call returned.
    pub app_error: Option<Error>,
    /// The engine's statistics at the end.
    pub info: TcpInfo,
    /// Bytes the application handed to `send`.
    pub written: u64,
    /// Bytes the application read.
    pub received: u64,
    /// Whether the application read end of stream.
    pub eof: bool,
    /// Stream offset of the first byte read that differed from what the peer wrote.
    pub mismatch: Option<u64>,
    /// Whether the application called `shutdown`.
    pub shut_down: bool,
    /// Segments this endpoint emitted (retransmissions and harness RSTs included).
    pub segments: u64,
    /// Of those, segments carrying payload.
    pub data_segments: u64,
    /// Segments of this endpoint's the network lost.
    pub lost: u64,
    /// Segments of this endpoint's the network duplicated.
    pub duplicated: u64,
    /// Segments of this endpoint's that arrived after one it sent later (reordering).
    pub reordered: u64,
    /// Segments delivered to this endpoint.
    pub delivered: u64,
    /// The states the connection went through, in order, each once per visit.
    pub states: Vec<State>,
    /// RSTs the harness sent on this endpoint's behalf after it closed (what a host does
    /// for a segment that reaches no connection).
    pub resets: u64,
}

/// The result of a [`transfer`], with its figures and diagnostics.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why the driver stopped early (step or time limit, nothing left to happen, an engine
    /// that never stopped transmitting), if it did.
    pub failure: Option<String>,
    /// Virtual time from the SYN to the end of the run.
    pub elapsed: Duration,
    /// Steps taken.
    pub steps: u64,
    /// The client's side.
    pub client: EndReport,
    /// The server's side.
    pub server: EndReport,
    /// Bytes the client was to send.
    pub client_bytes: u64,
    /// Bytes the server was to send.
    pub server_bytes: u64,
    /// Segments still travelling when the run ended.
    pub in_flight: usize,
    /// When either side last put a segment on the wire: long before the end of a run
    /// that hit the time limit, the connection hung.
    pub last_segment_at: Instant,
    /// Whether the client's connection was in TIME-WAIT to be waited out.
    pub wait_time_wait: bool,
    /// Whether the bytes read were checked against the bytes written ([`Opts::verify_data`]).
    pub verified: bool,
    /// The most recent network events, oldest first.
    pub trace: Vec<String>,
}

impl Outcome {
    /// Retransmissions by both engines.
    pub fn retransmissions(&self) -> u64 {
        self.client.info.retransmissions + self.server.info.retransmissions
    }

    /// Checks that the run went through cleanly: no early stop, no errors, every byte
    /// delivered exactly once and in order both ways (the contents only if they were
    /// [`verified`](Self::verified), the counts always), end of stream seen both ways, the
    /// client in TIME-WAIT (or CLOSED after it) and the server CLOSED.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(f) = &self.failure {
            problems.push(format!("driver stopped: {f}"));
        }
        for (name, end, expect_in) in [
            ("client", &self.client, self.server_bytes),
            ("server", &self.server, self.client_bytes),
        ] {
            if let Some(e) = end.error {
                problems.push(format!("{name} connection error: {e:?}"));
            }
            if let Some(e) = end.app_error {
                problems.push(format!("{name} application call failed: {e:?}"));
            }
            if let Some(at) = end.mismatch {
                problems.push(format!("{name} read a wrong byte at stream offset {at}"));
            }
            if end.received != expect_in {
                problems.push(format!("{name} read {} bytes of {expect_in}", end.received));
            }
            if !end.eof {
                problems.push(format!("{name} never read end of stream"));
            }
            if !end.shut_down {
                problems.push(format!("{name} never shut down"));
            }
        }
        if self.client.written != self.client_bytes || self.server.written != self.server_bytes {
            problems.push("not everything was written".to_string());
        }
        let client_ok = if self.wait_time_wait {
            self.client.state == State::Closed
        } else {
            matches!(self.client.state, State::TimeWait | State::Closed)
        };
        if !client_ok {
            problems.push(format!("client ended in {}", self.client.state));
        }
        if self.server.state != State::Closed {
            problems.push(format!("server ended in {}", self.server.state));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\n{self}", problems.join("; ")))
        }
    }

    /// Panics with the diagnostics unless [`check`](Self::check) passes.
    pub fn assert_clean(&self) {
        if let Err(e) = self.check() {
            panic!("transfer failed: {e}");
        }
    }
}

impl fmt::Display for EndReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.info;
        writeln!(
            f,
            "    state {} error {:?} app_error {:?} shut_down {} eof {}",
            self.state, self.error, self.app_error, self.shut_down, self.eof
        )?;
        let states: Vec<String> = self.states.iter().map(|s| s.to_string()).collect();
        writeln!(f, "    states {}", states.join(" > "))?;
        writeln!(
            f,
            "    written {} read {} first mismatch {:?}",
            self.written, self.received, self.mismatch
        )?;
        writeln!(
            f,
            "    segments emitted {} (data {}), lost {}, duplicated {}, reordered {}, delivered to it {}, harness RSTs {}",
            self.segments,
            self.data_segments,
            self.lost,
            self.duplicated,
            self.reordered,
            self.delivered,
            self.resets
        )?;
        writeln!(
            f,
            "    info: bytes sent {} acked {} received {}; segments sent {} received {}",
            i.bytes_sent, i.bytes_acked, i.bytes_received, i.segments_sent, i.segments_received
        )?;
        writeln!(
            f,
            "    info: retransmissions {} timeouts {} fast retransmits {}; cwnd {} ssthresh {} in flight {}",
            i.retransmissions, i.timeouts, i.fast_retransmits, i.cwnd, i.ssthresh, i.bytes_in_flight
        )?;
        writeln!(
            f,
            "    info: srtt {:?} rto {:?} snd_wnd {} rcv_wnd {} mss {}/{} wscale {}/{} sack {} ts {}",
            i.srtt,
            i.rto,
            i.send_window,
            i.recv_window,
            i.send_mss,
            i.recv_mss,
            i.send_wscale,
            i.recv_wscale,
            i.sack,
            i.timestamps
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  after {:?} virtual, {} steps, {} segments in flight, last segment sent at {}; failure: {:?}",
            self.elapsed, self.steps, self.in_flight, self.last_segment_at, self.failure
        )?;
        writeln!(f, "  client (to send {}):", self.client_bytes)?;
        write!(f, "{}", self.client)?;
        writeln!(f, "  server (to send {}):", self.server_bytes)?;
        write!(f, "{}", self.server)?;
        if !self.trace.is_empty() {
            writeln!(f, "  last {} network events:", self.trace.len())?;
            for line in &self.trace {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

/// A segment on its way.
struct InFlight {
    at: Instant,
    /// Send order; segments due at the same instant arrive in the order they were sent.
    id: u64,
    dst: usize,
    repr: TcpRepr,
    payload: Vec<u8>,
}

/// The segments on their way, earliest first: a heap of small keys over a slab of segments.
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    slab: Vec<Option<InFlight>>,
    free: Vec<usize>,
}

impl Queue {
    fn push(&mut self, seg: InFlight) {
        let key = (seg.at, seg.id);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot] = Some(seg);
                slot
            }
            None => {
                self.slab.push(Some(seg));
                self.slab.len() - 1
            }
        };
        self.heap.push(Reverse((key.0, key.1, slot)));
    }

    /// When the earliest segment arrives.
    fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest segment, if it arrives by `now`.
    fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        if self.next_at()? > now {
            return None;
        }
        let Reverse((_, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        self.slab[slot].take()
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Per-direction counters, indexed by the sending side.
#[derive(Debug, Default, Clone, Copy)]
struct DirStats {
    emitted: u64,
    data: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    /// Highest send-order id delivered so far.
    max_delivered_id: u64,
    resets: u64,
}

const NAMES: [&str; 2] = ["client", "server"];
const ARROWS: [&str; 2] = ["c>s", "s>c"];

/// Both directions of the network.
struct Net {
    links: [Link; 2],
    /// When each direction's transmitter is free again, in nanoseconds.
    busy_until_ns: [u64; 2],
    queue: Queue,
    next_id: u64,
    rng: Rng,
    stats: [DirStats; 2],
    pool: Vec<Vec<u8>>,
    trace: VecDeque<String>,
    trace_len: usize,
    last_send: Instant,
}

impl Net {
    fn note(&mut self, f: impl FnOnce() -> String) {
        if self.trace_len == 0 {
            return;
        }
        if self.trace.len() == self.trace_len {
            self.trace.pop_front();
        }
        self.trace.push_back(f());
    }

    /// `src` puts a segment on the wire at `now`.
    fn send(&mut self, src: usize, now: Instant, repr: TcpRepr, payload: &[u8]) {
        self.last_send = now;
        let s = &mut self.stats[src];
        s.emitted += 1;
        if !payload.is_empty() {
            s.data += 1;
        }
        let link = &self.links[src];
        let mut depart = now;
        if let Some(bw) = link.bandwidth {
            let bytes = payload.len() as u64 + HEADER_OVERHEAD;
            let tx_ns = (u128::from(bytes) * 1_000_000_000 / u128::from(bw.max(1))) as u64;
            let start = self.busy_until_ns[src].max(now.as_micros() * 1000);
            self.busy_until_ns[src] = start + tx_ns;
            depart = Instant::from_micros(self.busy_until_ns[src].div_ceil(1000));
        }
        let (loss, duplicate, delay, jitter) = (
            link.loss,
            link.duplicate,
            link.delay,
            link.jitter.as_micros() as u64,
        );
        if self.rng.chance(loss) {
            self.stats[src].lost += 1;
            self.note(|| format!("{now} {} {}  LOST", ARROWS[src], repr.ladder(payload.len())));
            return;
        }
        let copies = if self.rng.chance(duplicate) {
            self.stats[src].duplicated += 1;
            2
        } else {
            1
        };
        for copy in 0..copies {
            let at = depart + delay + Duration::from_micros(self.rng.up_to(jitter));
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(payload);
            self.queue.push(InFlight {
                at,
                id: self.next_id,
                dst: 1 - src,
                repr,
                payload: buf,
            });
            self.next_id += 1;
            self.note(|| {
                format!(
                    "{now} {} {}  arrives {at}{}",
                    ARROWS[src],
                    repr.ladder(payload.len()),
                    if copy == 1 { " (duplicate)" } else { "" }
                )
            });
        }
    }
}

/// One endpoint and the application on top of it.
struct Peer {
    conn: Connection,
    to_write: u64,
    written: u64,
    /// The chunk being written and how much of it `send` took.
    pending: Vec<u8>,
    pending_off: usize,
    received: u64,
    eof: bool,
    mismatch: Option<u64>,
    /// Shut down only after reading end of stream (the server).
    shutdown_after_eof: bool,
    shut_down: bool,
    app_error: Option<Error>,
    delivered: u64,
    /// The slow reader's next turn.
    next_read: Option<Instant>,
    /// The states seen so far.
    states: Vec<State>,
}

impl Peer {
    /// Records the connection's state if it changed (called after every input).
    fn note_state(&mut self) {
        let state = self.conn.state();
        if self.states.last() != Some(&state) {
            self.states.push(state);
        }
    }

    fn report(&self, stats: DirStats) -> EndReport {
        EndReport {
            state: self.conn.state(),
            error: self.conn.error(),
            app_error: self.app_error,
            info: self.conn.info(),
            written: self.written,
            received: self.received,
            eof: self.eof,
            mismatch: self.mismatch,
            shut_down: self.shut_down,
            segments: stats.emitted,
            data_segments: stats.data,
            lost: stats.lost,
            duplicated: stats.duplicated,
            reordered: stats.reordered,
            delivered: self.delivered,
            resets: stats.resets,
            states: self.states.clone(),
        }
    }

    /// Whether this side has nothing left to do in the run: its connection is over and the
    /// application has read to the end.
    fn finished(&self, wait_time_wait: bool) -> bool {
        let over = match self.conn.state() {
            State::Closed => true,
            State::TimeWait => !wait_time_wait,
            _ => false,
        };
        over && (self.eof || self.conn.error().is_some())
    }
}

/// The simulation: both peers, the network and the scratch buffers.
struct Sim {
    now: Instant,
    peers: [Peer; 2],
    net: Net,
    write_chunk: usize,
    slow_reader: Option<SlowReader>,
    verify_data: bool,
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
    expect_buf: Vec<u8>,
    failure: Option<String>,
    /// What each side writes, indexed like `peers`.
    streams: [Pattern; 2],
}

impl Sim {
    /// The application on `side` reads up to `budget` bytes, writes what `send` accepts and
    /// shuts down when its part is done.
    fn app(&mut self, side: usize, budget: u64) {
        let p = &mut self.peers[side];
        if p.conn.state() == State::Listen {
            // A listening socket is not the application's yet.
            return;
        }
        let mut budget = budget;
        while budget > 0 {
            let want = budget.min(self.rx_buf.len() as u64) as usize;
            match p.conn.recv(&mut self.rx_buf[..want]) {
                Ok(0) => {
                    p.eof = true;
                    break;
                }
                Ok(n) => {
                    if self.verify_data && p.mismatch.is_none() {
                        let stream = &self.streams[1 - side];
                        let data = &self.rx_buf[..n];
                        if let Some(i) =
                            stream.first_mismatch(p.received, data, &mut self.expect_buf)
                        {
                            p.mismatch = Some(p.received + i as u64);
                        }
                    }
                    p.received += n as u64;
                    budget -= n as u64;
                }
                Err(Error::WouldBlock) => break,
                Err(e) => {
                    p.app_error.get_or_insert(e);
                    break;
                }
            }
        }
        while p.written < p.to_write && p.app_error.is_none() {
            if p.pending_off == p.pending.len() {
                let len = (p.to_write - p.written).min(self.write_chunk as u64) as usize;
                p.pending.resize(len, 0);
                if self.verify_data {
                    self.streams[side].fill(p.written, &mut p.pending);
                }
                p.pending_off = 0;
            }
            match p.conn.send(&p.pending[p.pending_off..]) {
                Ok(n) => {
                    p.pending_off += n;
                    p.written += n as u64;
                }
                Err(Error::WouldBlock) => break,
                Err(e) => {
                    p.app_error.get_or_insert(e);
                    break;
                }
            }
        }
        if p.written == p.to_write && !p.shut_down && (p.eof || !p.shutdown_after_eof) {
            p.shut_down = true;
            if let Err(e) = p.conn.shutdown() {
                p.app_error.get_or_insert(e);
            }
        }
    }

    /// Hands everything `side` wants to transmit now to the network.
    fn drain(&mut self, side: usize) {
        let mut n = 0u32;
        while let Some(t) = self.peers[side]
            .conn
            .poll_transmit(self.now, &mut self.tx_buf)
        {
            self.net
                .send(side, self.now, t.repr, &self.tx_buf[..t.payload_len]);
            n += 1;
            if n == 100_000 {
                self.failure.get_or_insert_with(|| {
                    format!("{} poll_transmit never returned None", NAMES[side])
                });
                return;
            }
        }
    }

    /// After an input to `side`: the application acts (reading only if it is not a slow
    /// reader), then transmissions drain.
    fn react(&mut self, side: usize) {
        let budget = if self.slow_reader.is_some() {
            0
        } else {
            u64::MAX
        };
        self.app(side, budget);
        self.peers[side].note_state();
        self.drain(side);
    }

    /// When the slow reader on `side` reads next, if it still has something to read.
    fn next_read(&self, side: usize) -> Option<Instant> {
        let p = &self.peers[side];
        let pending = !p.eof && p.app_error.is_none() && p.conn.error().is_none();
        self.slow_reader.and(p.next_read).filter(|_| pending)
    }

    fn deliver(&mut self, seg: InFlight) {
        let dst = seg.dst;
        let payload_len = seg.payload.len();
        self.net.note(|| {
            format!(
                "{} {} {}  delivered",
                seg.at,
                ARROWS[1 - dst],
                seg.repr.ladder(payload_len)
            )
        });
        let s = &mut self.net.stats[1 - dst];
        if seg.id < s.max_delivered_id {
            s.reordered += 1;
        }
        s.max_delivered_id = s.max_delivered_id.max(seg.id);
        let p = &mut self.peers[dst];
        p.delivered += 1;
        if p.conn.is_closed() {
            // No connection: the host answers as RFC 9293 §3.10.7.1 says.
            if let Some(rst) = reset_for(&seg.repr, payload_len) {
                self.net.stats[dst].resets += 1;
                self.net.send(dst, self.now, rst, &[]);
            }
        } else {
            p.conn.on_segment(self.now, &seg.repr, &seg.payload);
            p.note_state();
            self.react(dst);
        }
        self.net.pool.push(seg.payload);
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// Runs one complete connection through the network described by `opts` and reports what
/// happened. Never panics on engine misbehaviour short of an engine panic: stalls, limits
/// and wrong data all end up in the [`Outcome`] (see [`Outcome::check`]).
pub fn transfer(opts: &Opts) -> Outcome {
    let now = Instant::ZERO;
    let client = Connection::connect(
        opts.client_cfg.clone(),
        addr(CLIENT_ADDR),
        addr(SERVER_ADDR),
        SeqNum(opts.client_isn),
        now,
    );
    let server = Connection::listen(
        opts.server_cfg.clone(),
        addr(SERVER_ADDR),
        addr(CLIENT_ADDR),
        SeqNum(opts.server_isn),
        now,
    );
    let stream = |bytes: u64, key: u64| {
        if bytes == 0 || !opts.verify_data {
            Pattern {
                key,
                table: Vec::new(),
            }
        } else {
            Pattern::new(key)
        }
    };
    let streams = [
        stream(opts.client_bytes, mix(opts.seed ^ 0xc11e_47c1_1e47_c11e)),
        stream(opts.server_bytes, mix(opts.seed ^ 0x5e7e_75e7_e75e_7e75)),
    ];
    let peer = |conn, to_write, shutdown_after_eof| Peer {
        conn,
        to_write,
        written: 0,
        pending: Vec::new(),
        pending_off: 0,
        received: 0,
        eof: false,
        mismatch: None,
        shutdown_after_eof,
        shut_down: false,
        app_error: None,
        delivered: 0,
        next_read: opts.slow_reader.map(|r| now + r.every),
        states: Vec::new(),
    };
    let mut sim = Sim {
        now,
        peers: [
            peer(client, opts.client_bytes, false),
            peer(server, opts.server_bytes, true),
        ],
        streams,
        net: Net {
            links: [opts.to_server.clone(), opts.to_client.clone()],
            busy_until_ns: [0; 2],
            queue: Queue::default(),
            next_id: 0,
            rng: Rng::new(mix(opts.seed)),
            stats: [DirStats::default(); 2],
            pool: Vec::new(),
            trace: VecDeque::new(),
            trace_len: opts.trace_len,
            last_send: now,
        },
        write_chunk: opts.write_chunk.max(1),
        slow_reader: opts.slow_reader,
        verify_data: opts.verify_data,
        tx_buf: vec![0; 65_536],
        rx_buf: vec![0; opts.read_chunk.max(1)],
        expect_buf: vec![0; opts.read_chunk.max(1)],
        failure: None,
    };
    let limit = Instant::ZERO + opts.max_virtual_time;
    let mut steps = 0u64;

    sim.react(0);
    sim.react(1);
    loop {
        if sim.failure.is_some() {
            break;
        }
        let [c, s] = &sim.peers;
        if c.conn.error().is_some() || s.conn.error().is_some() {
            break;
        }
        if c.finished(opts.wait_time_wait) && s.finished(opts.wait_time_wait) {
            break;
        }
        steps += 1;
        if steps > opts.max_steps {
            sim.failure = Some(format!("step limit {} reached", opts.max_steps));
            break;
        }
        let next = [
            sim.net.queue.next_at(),
            c.conn.poll_timeout(),
            s.conn.poll_timeout(),
            sim.next_read(0),
            sim.next_read(1),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            sim.failure = Some("stalled: nothing in flight and no timer armed".to_string());
            break;
        };
        if next > limit {
            sim.failure = Some(format!(
                "virtual time limit {:?} reached (next event at {next})",
                opts.max_virtual_time
            ));
            break;
        }
        sim.now = sim.now.max(next);
        while let Some(seg) = sim.net.queue.pop_due(sim.now) {
            sim.deliver(seg);
            steps += 1;
            if sim.failure.is_some() || steps > opts.max_steps {
                break;
            }
        }
        for (side, name) in NAMES.into_iter().enumerate() {
            if sim.peers[side]
                .conn
                .poll_timeout()
                .is_some_and(|t| t <= sim.now)
            {
                let now = sim.now;
                sim.net.note(|| format!("{now} timer fires at the {name}"));
                sim.peers[side].conn.handle_timeout(now);
                sim.peers[side].note_state();
                sim.react(side);
                steps += 1;
            }
        }
        if let Some(slow) = sim.slow_reader {
            for side in 0..2 {
                if sim.next_read(side).is_some_and(|t| t <= sim.now) {
                    sim.app(side, slow.bytes);
                    sim.peers[side].note_state();
                    sim.drain(side);
                    sim.peers[side].next_read = Some(sim.now + slow.every);
                    steps += 1;
                }
            }
        }
    }

    let stats = sim.net.stats;
    Outcome {
        failure: sim.failure,
        elapsed: sim.now - Instant::ZERO,
        steps,
        client: sim.peers[0].report(stats[0]),
        server: sim.peers[1].report(stats[1]),
        client_bytes: opts.client_bytes,
        server_bytes: opts.server_bytes,
        in_flight: sim.net.queue.len(),
        last_segment_at: sim.net.last_send,
        wait_time_wait: opts.wait_time_wait,
        verified: opts.verify_data,
        trace: sim.net.trace.into_iter().collect(),
    }
}
