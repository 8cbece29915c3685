//! Engine against engine: rawtcp's sans-IO [`Connection`] and smoltcp's TCP socket doing the
//! same work in one process, one thread, and the ratio of their throughputs (issue 8).
//!
//! # The work, identical on both sides
//!
//! Two endpoints, a client at 10.0.0.1:40000 and a server at 10.0.0.2:5000, joined by an
//! in-memory link ([`Link`]): a FIFO of complete IPv4 packets each way, no loss, no delay,
//! no reordering. Packet buffers come from a pool the link recycles, and one link serves
//! every transfer at an MTU, so the harness allocates nothing once warm and both engines get
//! the same buffers. Each
//! iteration is a whole connection: the handshake, then `RAWTCP_BENCH_MIB` MiB (default 64)
//! client → server; it ends when the server application has read the last byte (no FIN).
//!
//! One loop turn, the same order on both sides:
//! 1. read the clock (real monotonic time in microseconds, shared by both endpoints);
//! 2. the client application writes as much of the stream as the send buffer takes;
//! 3. the client endpoint takes every packet queued for it, then sends what it has due;
//! 4. the server endpoint does the same;
//! 5. the server application reads everything readable into its 256 KiB buffer.
//!
//! Every packet is built as bytes and parsed from bytes, with the IPv4 header checksum and
//! the TCP checksum computed on emission and verified on arrival, on both sides:
//! - **rawtcp**: what `stack::reactor` does around the engine. The engine copies the payload
//!   into the packet buffer behind room for the headers ([`Connection::poll_transmit`]), then
//!   [`wire::emit_tcp_headers_in_place`] writes the IP and TCP headers in front of it;
//!   arrivals go through [`wire::parse_tcp_packet`]`(packet, true)`, a check of the four
//!   addresses and ports (the demultiplexing; one connection, so no table), then
//!   [`Connection::on_segment`]. An acknowledgment the engine calls urgent
//!   ([`Connection::ack_urgent`]) leaves before the next arrival is processed, as in the
//!   reactor; otherwise the endpoint transmits once its arrivals are processed, after firing
//!   due timers ([`Connection::poll_timeout`], [`Connection::handle_timeout`]).
//! - **smoltcp**: one [`Interface`] per endpoint (`Medium::Ip`, checksums computed and
//!   verified in software: `ChecksumCapabilities::default()`), each with its own
//!   [`SocketSet`] holding one socket, each on its own [`Device`] ([`Port`]) over the shared
//!   link. `Interface::poll` does step 3 or 4: every queued packet in, then everything due
//!   out. Two interfaces rather than one loopback interface with two sockets, because that is
//!   what the rawtcp side is — two hosts, each parsing and demultiplexing what the other
//!   emitted. smoltcp's own `Loopback` device would not do: it allocates a `Vec` per packet
//!   and turns checksums off.
//!
//! Both applications use the copying calls (`send`/`recv` against `send_slice`/`recv_slice`)
//! on the same source and destination buffers. Settings, the same on both sides:
//! - 256 KiB send and receive buffers (window scaling on, as both negotiate it by default);
//! - Nagle off (`Config::nodelay`, `set_nagle_enabled(false)`);
//! - delayed ACK off (`Config::delayed_ack = 0`, `set_ack_delay(None)`);
//! - MSS = MTU − 40: `Config::mss` for rawtcp, the device's `max_transmission_unit` for
//!   smoltcp; MTU 1500 and 65535;
//! - no TCP timestamps: smoltcp sends none unless given a TSval generator, so rawtcp's
//!   `Config::timestamps` is off too and both carry the same payload per packet. SACK is
//!   negotiated on both (smoltcp offers it by default), and with no loss neither sends a
//!   block;
//! - congestion control of the same family, chosen by `RAWTCP_BENCH_CC`: `reno` (default:
//!   rawtcp's NewReno against smoltcp's `socket-tcp-reno`), `cubic` (rawtcp's CUBIC with
//!   HyStart++ against smoltcp's `socket-tcp-cubic`), or `none` (smoltcp without a
//!   controller against rawtcp with a fixed 1 GiB window). With 256 KiB of receive window
//!   and no loss, the controller only shapes the first few round trips.
//!
//! # What is not the same
//!
//! - Each engine decides on its own when to acknowledge and to update the window (both ACK
//!   at least every second segment with delayed ACK off; what they coalesce within one turn
//!   differs), so the packet counts each way differ; the summary prints them.
//! - rawtcp runs RTT estimation, RACK-TLP and SACK scoreboard bookkeeping, delivery-rate
//!   sampling and PRR that smoltcp does not have. That is part of what the engine costs and
//!   is measured, not removed.
//! - smoltcp's sockets preallocate their 256 KiB rings (inside the iteration, on both sides
//!   the setup is timed); rawtcp's buffers grow with the data held.
//!
//! # What it prints
//!
//! A verification run per side and MTU before anything is timed: every byte the server
//! reads is compared with the stream written, the total must be exact, and rawtcp must have
//! retransmitted nothing. Then criterion's groups `mtu1500` and `mtu65535` (bytes per second,
//! decimal units), then a summary per MTU measured outside criterion in the same run: both
//! sides alternately, the median of seven transfers each, the ratio rawtcp / smoltcp, the
//! packets each way, and the heap allocations per transfer counted by this binary's global
//! allocator (all of them, and those after the first 256 KiB arrived: the steady state).
//! `--profile-time`, `--list` and `--test` skip the summary, `--profile-time` and `--list` the
//! verification.
//!
//! To profile one side: `cargo bench --bench engine_vs_smoltcp -- mtu1500/rawtcp
//! --profile-time 10` under `perf record --call-graph dwarf` (with
//! `CARGO_PROFILE_BENCH_DEBUG=true` for symbols and line numbers).

use criterion::{Criterion, SamplingMode, Throughput};
use rawtcp::proto::cc::{AckEvent, Algorithm, CongestionControl, CongestionEvent};
use rawtcp::proto::{self, Config, Connection, SeqNum};
use rawtcp::wire::{self, TCP_MAX_HEADER_LEN};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self as sphy, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

// ---- allocation counting ----------------------------------------------------------------

/// The system allocator, counting allocations (`alloc`, `alloc_zeroed`, `realloc`) and the
/// bytes they asked for.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

fn count(bytes: usize) {
    ALLOCS.fetch_add(1, Relaxed);
    ALLOC_BYTES.fetch_add(bytes as u64, Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (allocations, bytes) so far.
fn allocations() -> (u64, u64) {
    (ALLOCS.load(Relaxed), ALLOC_BYTES.load(Relaxed))
}

// ---- settings ---------------------------------------------------------------------------

/// Send and receive buffer of every endpoint, and the application's read buffer.
const BUFFER: usize = 256 << 10;
const MTUS: [usize; 2] = [1500, 65535];
/// The stream's bytes repeat with this period (a prime, so segment boundaries never line up
/// with it).
const PERIOD: usize = 251;
/// Room in front of a payload for the largest IPv4 and TCP headers.
const HEADROOM: usize = 20 + TCP_MAX_HEADER_LEN;
/// A run that has not finished after this long is stuck.
const STALL: Duration = Duration::from_secs(60);

const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5000);

/// Bytes per transfer: `RAWTCP_BENCH_MIB` MiB, 64 by default.
fn transfer_bytes() -> usize {
    std::env::var("RAWTCP_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(64)
        << 20
}

/// The congestion-control family both sides use.
#[derive(Clone, Copy, Debug)]
enum Cc {
    Reno,
    Cubic,
    None,
}

impl Cc {
    fn from_env() -> Cc {
        match std::env::var("RAWTCP_BENCH_CC").as_deref() {
            Ok("cubic") => Cc::Cubic,
            Ok("none") => Cc::None,
            Ok("reno") | Err(_) => Cc::Reno,
            Ok(other) => panic!("RAWTCP_BENCH_CC={other}: expected reno, cubic or none"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Cc::Reno => "reno (rawtcp NewReno, smoltcp Reno)",
            Cc::Cubic => "cubic (rawtcp CUBIC, smoltcp Cubic)",
            Cc::None => "none (rawtcp fixed 1 GiB window, smoltcp no controller)",
        }
    }

    fn rawtcp(self) -> Algorithm {
        match self {
            Cc::Reno => Algorithm::NewReno,
            Cc::Cubic => Algorithm::Cubic,
            Cc::None => Algorithm::Custom(Arc::new(|_| Box::new(Unlimited))),
        }
    }

    fn smoltcp(self) -> tcp::CongestionControl {
        match self {
            Cc::Reno => tcp::CongestionControl::Reno,
            Cc::Cubic => tcp::CongestionControl::Cubic,
            Cc::None => tcp::CongestionControl::None,
        }
    }
}

/// rawtcp's stand-in for smoltcp's "no congestion control": a window no flow here reaches,
/// so only the peer's window limits the sender.
#[derive(Debug)]
struct Unlimited;

impl CongestionControl for Unlimited {
    fn name(&self) -> &'static str {
        "unlimited"
    }
    fn window(&self) -> u32 {
        1 << 30
    }
    fn ssthresh(&self) -> u32 {
        1 << 30
    }
    fn on_ack(&mut self, _: proto::Instant, _: &AckEvent) {}
    fn on_congestion_event(&mut self, _: proto::Instant, _: &CongestionEvent) {}
    fn on_recovery_end(&mut self, _: proto::Instant, _: u32) {}
    fn on_timeout(&mut self, _: proto::Instant, _: u32, _: u32, _: bool) {}
    fn on_idle_restart(&mut self, _: u32) {}
    fn undo(&mut self, _: u32, _: u32) {}
    fn seed(&mut self, _: u32, _: u32) {}
}

// ---- the link ---------------------------------------------------------------------------

/// One packet: `buf[start..start + len]` is the IP packet.
struct Packet {
    buf: Box<[u8]>,
    start: usize,
    len: usize,
}

impl Packet {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

/// The wire between the two endpoints (0 the client, 1 the server): a FIFO each way and a
/// pool of packet buffers, each `HEADROOM + mtu` bytes. One link serves every transfer at an
/// MTU, so after the first its pool and queues are warm and the harness allocates nothing.
struct Link {
    mtu: usize,
    /// Packets in flight, by the endpoint that sent them.
    queues: [RefCell<VecDeque<Packet>>; 2],
    free: RefCell<Vec<Packet>>,
    /// Packets and bytes sent, by sender.
    sent: [Cell<(u64, u64)>; 2],
}

impl Link {
    fn new(mtu: usize) -> Link {
        Link {
            mtu,
            queues: Default::default(),
            free: RefCell::new(Vec::new()),
            sent: Default::default(),
        }
    }

    /// A buffer from the pool (a new one while the pool is still filling up).
    fn take(&self) -> Packet {
        self.free.borrow_mut().pop().unwrap_or_else(|| Packet {
            buf: vec![0; HEADROOM + self.mtu].into_boxed_slice(),
            start: 0,
            len: 0,
        })
    }

    fn recycle(&self, p: Packet) {
        self.free.borrow_mut().push(p);
    }

    fn send(&self, from: usize, p: Packet) {
        assert!(
            p.len <= self.mtu,
            "a {}-byte packet on a link of MTU {}",
            p.len,
            self.mtu
        );
        let (n, b) = self.sent[from].get();
        self.sent[from].set((n + 1, b + p.len as u64));
        self.queues[from].borrow_mut().push_back(p);
    }

    /// The next packet for endpoint `to`.
    fn recv(&self, to: usize) -> Option<Packet> {
        self.queues[1 - to].borrow_mut().pop_front()
    }

    /// Ready for the next transfer: packets still in flight back to the pool, counts zeroed.
    fn reset(&self) {
        for q in &self.queues {
            while let Some(p) = q.borrow_mut().pop_front() {
                self.recycle(p);
            }
        }
        for s in &self.sent {
            s.set((0, 0));
        }
    }
}

// ---- the applications -------------------------------------------------------------------

/// The two applications: the client writes the stream, the server reads it and, when
/// verifying, checks every byte.
struct App {
    total: usize,
    /// The stream from any offset: byte `i` of the stream is `i % PERIOD`, and
    /// `src[sent % PERIOD..]` continues it for at least a buffer's length.
    src: Vec<u8>,
    dst: Vec<u8>,
    sent: usize,
    received: usize,
    verify: bool,
}

impl App {
    fn new(total: usize, verify: bool) -> App {
        App {
            total,
            src: (0..PERIOD + BUFFER).map(|i| (i % PERIOD) as u8).collect(),
            dst: vec![0; BUFFER],
            sent: 0,
            received: 0,
            verify,
        }
    }

    fn reset(&mut self) {
        self.sent = 0;
        self.received = 0;
    }

    /// The next bytes of the stream to write (at most a buffer's worth).
    fn to_send(&self) -> &[u8] {
        let at = self.sent % PERIOD;
        &self.src[at..at + (self.total - self.sent).min(BUFFER)]
    }

    /// The server read `n` bytes into `dst`.
    fn got(&mut self, n: usize) {
        if self.verify {
            let at = self.received % PERIOD;
            assert!(
                self.dst[..n] == self.src[at..at + n],
                "stream corrupted in the {n} bytes after offset {}",
                self.received
            );
        }
        self.received += n;
        assert!(self.received <= self.total, "more bytes than were sent");
    }

    fn done(&self) -> bool {
        self.received == self.total
    }
}

/// Microseconds since the transfer began, plus one second (neither engine likes time zero).
struct Clock(std::time::Instant);

impl Clock {
    fn start() -> Clock {
        Clock(std::time::Instant::now())
    }

    fn micros(&self) -> u64 {
        let elapsed = self.0.elapsed();
        assert!(elapsed < STALL, "the transfer stalled");
        1_000_000 + elapsed.as_micros() as u64
    }
}

/// What one transfer did.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    /// Packets and bytes sent by the client and by the server.
    sent: [(u64, u64); 2],
    /// Allocations and bytes allocated during the whole transfer, setup included (the
    /// harness's link and applications are made beforehand and allocate nothing).
    allocs: (u64, u64),
    /// Allocations after the first `BUFFER` bytes were read: the steady state.
    steady_allocs: (u64, u64),
    /// Segments the sender retransmitted (rawtcp only, when verifying; smoltcp does not
    /// count them).
    retransmissions: Option<u64>,
}

fn since(start: (u64, u64)) -> (u64, u64) {
    let now = allocations();
    (now.0 - start.0, now.1 - start.1)
}

// ---- rawtcp -----------------------------------------------------------------------------

fn rawtcp_config(mtu: usize, cc: Cc) -> Config {
    Config {
        mss: u16::try_from(mtu - 40).expect("MSS fits 16 bits"),
        send_buffer: BUFFER,
        send_buffer_max: BUFFER, // smoltcp's buffers are fixed: the same work
        recv_buffer: BUFFER,
        recv_buffer_max: BUFFER,
        nodelay: true,
        delayed_ack: Duration::ZERO,
        timestamps: false,
        congestion: cc.rawtcp(),
        ..Config::default()
    }
}

/// One rawtcp endpoint and what the reactor does for it.
struct RawEnd {
    conn: Connection,
    local: SocketAddr,
    remote: SocketAddr,
    side: usize,
}

impl RawEnd {
    /// Every packet queued for this endpoint in, due timers, then everything due out.
    fn poll(&mut self, link: &Link, now: proto::Instant) {
        while let Some(p) = link.recv(self.side) {
            let (ip, tcp, payload) = wire::parse_tcp_packet(p.bytes(), true)
                .expect("every packet on the link parses and its checksums verify");
            assert!(
                ip.dst_addr() == self.local.ip()
                    && tcp.dst_port == self.local.port()
                    && ip.src_addr() == self.remote.ip()
                    && tcp.src_port == self.remote.port(),
                "a packet for another connection"
            );
            self.conn.on_segment(now, &tcp, payload);
            link.recycle(p);
            if self.conn.ack_urgent() {
                self.transmit(link, now);
            }
        }
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        self.transmit(link, now);
    }

    fn transmit(&mut self, link: &Link, now: proto::Instant) {
        loop {
            let mut p = link.take();
            let Some(t) = self.conn.poll_transmit(now, &mut p.buf[HEADROOM..]) else {
                link.recycle(p);
                return;
            };
            let start = HEADROOM - t.repr.header_len() - 20;
            let packet = &mut p.buf[start..HEADROOM + t.payload_len];
            let len = wire::emit_tcp_headers_in_place(
                self.local.ip(),
                self.remote.ip(),
                64,
                &t.repr,
                packet,
            )
            .expect("headers fit in front of the payload");
            p.start = start;
            p.len = len;
            link.send(self.side, p);
        }
    }
}

fn transfer_rawtcp(link: &Link, cc: Cc, app: &mut App) -> Outcome {
    app.reset();
    link.reset();
    let allocs = allocations();
    let clock = Clock::start();
    let now = proto::Instant::from_micros(clock.micros());
    let cfg = rawtcp_config(link.mtu, cc);
    let mut client = RawEnd {
        conn: Connection::connect(cfg.clone(), CLIENT, SERVER, SeqNum(1_000), now),
        local: CLIENT,
        remote: SERVER,
        side: 0,
    };
    let mut server = RawEnd {
        conn: Connection::listen(cfg, SERVER, CLIENT, SeqNum(3_000_000_000), now),
        local: SERVER,
        remote: CLIENT,
        side: 1,
    };
    let mut steady = None;
    loop {
        let now = proto::Instant::from_micros(clock.micros());
        while app.sent < app.total {
            match client.conn.send(app.to_send()) {
                Ok(n) => app.sent += n,
                Err(proto::Error::WouldBlock) => break,
                Err(e) => panic!("rawtcp send: {e}"),
            }
        }
        client.poll(link, now);
        server.poll(link, now);
        loop {
            match server.conn.recv(&mut app.dst) {
                Ok(0) => panic!("rawtcp: end of stream before the last byte"),
                Ok(n) => app.got(n),
                Err(proto::Error::WouldBlock) => break,
                Err(e) => panic!("rawtcp recv: {e}"),
            }
        }
        if steady.is_none() && app.received >= BUFFER {
            steady = Some(allocations());
        }
        if app.done() {
            break;
        }
    }
    let mut out = Outcome {
        sent: [link.sent[0].get(), link.sent[1].get()],
        allocs: since(allocs),
        steady_allocs: since(steady.unwrap_or(allocs)),
        retransmissions: None,
    };
    if app.verify {
        // `info` allocates (a string): outside the counts, and only when verifying.
        out.retransmissions = Some(client.conn.info().retransmissions);
    }
    out
}

// ---- smoltcp ----------------------------------------------------------------------------

/// Endpoint `side`'s network device: receives what the other endpoint sent.
struct Port<'a> {
    link: &'a Link,
    side: usize,
}

struct Rx<'a> {
    link: &'a Link,
    packet: Packet,
}

struct Tx<'a> {
    link: &'a Link,
    side: usize,
}

impl sphy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(self.packet.bytes());
        self.link.recycle(self.packet);
        r
    }
}

impl sphy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = self.link.take();
        p.start = 0;
        p.len = len;
        let r = f(&mut p.buf[..len]);
        self.link.send(self.side, p);
        r
    }
}

impl Device for Port<'_> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let packet = self.link.recv(self.side)?;
        Some((
            Rx {
                link: self.link,
                packet,
            },
            Tx {
                link: self.link,
                side: self.side,
            },
        ))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx {
            link: self.link,
            side: self.side,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        // Checksums: the default, computed on emission and verified on arrival.
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.link.mtu;
        caps
    }
}

/// One smoltcp host: an interface with the endpoint's address, its socket set, its device.
struct SmolEnd<'a> {
    iface: Interface,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    port: Port<'a>,
}

impl<'a> SmolEnd<'a> {
    fn new(
        link: &'a Link,
        side: usize,
        addr: SocketAddr,
        cc: Cc,
        now: smoltcp::time::Instant,
    ) -> Self {
        let mut port = Port { link, side };
        let mut config = smoltcp::iface::Config::new(HardwareAddress::Ip);
        config.random_seed = 0x5eed + side as u64;
        let mut iface = Interface::new(config, &mut port, now);
        let IpAddr::V4(v4) = addr.ip() else {
            unreachable!("IPv4 endpoints")
        };
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(v4), 24))
                .expect("room for one address");
        });
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUFFER]),
            tcp::SocketBuffer::new(vec![0; BUFFER]),
        );
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        socket.set_congestion_control(cc.smoltcp());
        let mut sockets = SocketSet::new(Vec::new());
        let handle = sockets.add(socket);
        SmolEnd {
            iface,
            sockets,
            handle,
            port,
        }
    }

    fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.handle)
    }

    fn poll(&mut self, now: smoltcp::time::Instant) {
        self.iface.poll(now, &mut self.port, &mut self.sockets);
    }
}

fn smol_now(clock: &Clock) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(clock.micros() as i64)
}

fn transfer_smoltcp(link: &Link, cc: Cc, app: &mut App) -> Outcome {
    app.reset();
    link.reset();
    let allocs = allocations();
    let clock = Clock::start();
    let now = smol_now(&clock);
    let mut client = SmolEnd::new(link, 0, CLIENT, cc, now);
    let mut server = SmolEnd::new(link, 1, SERVER, cc, now);
    server
        .socket()
        .listen(SERVER.port())
        .expect("the server listens");
    let IpAddr::V4(server_ip) = SERVER.ip() else {
        unreachable!("IPv4 endpoints")
    };
    let socket = client.sockets.get_mut::<tcp::Socket>(client.handle);
    socket
        .connect(
            client.iface.context(),
            (IpAddress::Ipv4(server_ip), SERVER.port()),
            CLIENT.port(),
        )
        .expect("the client connects");
    let mut steady = None;
    loop {
        let now = smol_now(&clock);
        let socket = client.socket();
        while app.sent < app.total && socket.can_send() {
            match socket.send_slice(app.to_send()) {
                Ok(0) => break,
                Ok(n) => app.sent += n,
                Err(e) => panic!("smoltcp send: {e}"),
            }
        }
        client.poll(now);
        server.poll(now);
        let socket = server.socket();
        while socket.can_recv() {
            match socket.recv_slice(&mut app.dst) {
                Ok(n) => app.got(n),
                Err(e) => panic!("smoltcp recv: {e}"),
            }
        }
        if steady.is_none() && app.received >= BUFFER {
            steady = Some(allocations());
        }
        if app.done() {
            break;
        }
    }
    Outcome {
        sent: [link.sent[0].get(), link.sent[1].get()],
        allocs: since(allocs),
        steady_allocs: since(steady.unwrap_or(allocs)),
        retransmissions: None,
    }
}

// ---- the runs ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Rawtcp,
    Smoltcp,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Rawtcp => "rawtcp",
            Side::Smoltcp => "smoltcp",
        }
    }

    fn transfer(self, link: &Link, cc: Cc, app: &mut App) -> Outcome {
        match self {
            Side::Rawtcp => transfer_rawtcp(link, cc, app),
            Side::Smoltcp => transfer_smoltcp(link, cc, app),
        }
    }
}

const SIDES: [Side; 2] = [Side::Rawtcp, Side::Smoltcp];

/// Outside any timing: each side delivers exactly the stream, byte for byte, and rawtcp
/// retransmits nothing on the lossless link.
fn verify(cc: Cc, total: usize) {
    let mut app = App::new(total, true);
    for mtu in MTUS {
        let link = Link::new(mtu);
        for side in SIDES {
            let out = side.transfer(&link, cc, &mut app);
            assert_eq!(app.received, total, "{} at MTU {mtu}", side.name());
            if side == Side::Rawtcp {
                assert_eq!(
                    out.retransmissions,
                    Some(0),
                    "rawtcp retransmitted on a lossless link"
                );
            }
            println!(
                "verified: {} MTU {mtu}: {} bytes delivered intact; packets client→server {}, server→client {}",
                side.name(),
                app.received,
                out.sent[0].0,
                out.sent[1].0,
            );
        }
    }
}

fn bench(c: &mut Criterion, cc: Cc, total: usize) {
    let mut app = App::new(total, false);
    for mtu in MTUS {
        let link = Link::new(mtu);
        let mut group = c.benchmark_group(format!("mtu{mtu}"));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
            .throughput(Throughput::BytesDecimal(total as u64));
        for side in SIDES {
            group.bench_function(side.name(), |b| {
                b.iter(|| black_box(side.transfer(&link, cc, &mut app)))
            });
        }
        group.finish();
    }
}

/// Thousands separators.
fn sep(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Both sides alternately, seven transfers each per MTU: median throughput, the ratio, and
/// what the last transfer of each side allocated and sent.
fn summary(cc: Cc, total: usize) {
    const ROUNDS: usize = 7;
    let mut app = App::new(total, false);
    println!(
        "\nengine_vs_smoltcp summary: {} MiB per transfer, congestion control {}, median of {ROUNDS}",
        total >> 20,
        cc.describe()
    );
    for mtu in MTUS {
        let link = Link::new(mtu);
        // Warm the link's pool and the allocator, outside the figures.
        for side in SIDES {
            side.transfer(&link, cc, &mut app);
        }
        let mut rates: [Vec<f64>; 2] = Default::default();
        let mut outs = [Outcome::default(); 2];
        for _ in 0..ROUNDS {
            for (i, side) in SIDES.into_iter().enumerate() {
                let t = std::time::Instant::now();
                outs[i] = black_box(side.transfer(&link, cc, &mut app));
                rates[i].push(total as f64 / t.elapsed().as_secs_f64() / 1e6);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let raw = median(&mut rates[0]);
        let smol = median(&mut rates[1]);
        println!(
            "MTU {mtu:>5}: rawtcp {} MB/s, smoltcp {} MB/s, ratio rawtcp/smoltcp {:.2}x",
            sep(raw as u64),
            sep(smol as u64),
            raw / smol
        );
        for (i, side) in SIDES.into_iter().enumerate() {
            let o = &outs[i];
            println!(
                "  {:<7} allocations {} ({:.1} MB), after the first 256 KiB {} ({:.1} MB); packets client→server {}, server→client {}",
                side.name(),
                sep(o.allocs.0),
                o.allocs.1 as f64 / 1e6,
                sep(o.steady_allocs.0),
                o.steady_allocs.1 as f64 / 1e6,
                sep(o.sent[0].0),
                sep(o.sent[1].0),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| {
        args.iter()
            .any(|a| a == f || a.starts_with(&format!("{f}=")))
    };
    let cc = Cc::from_env();
    let total = transfer_bytes();
    // A profile (`--profile-time`) sees the timed loop only.
    if !(flag("--list") || flag("--profile-time")) {
        verify(cc, total);
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, cc, total);
    c.final_summary();
    if !(flag("--list") || flag("--test") || flag("--profile-time")) {
        summary(cc, total);
    }
}
