//! One TCP connection: the RFC 9293 state machine, driven without I/O or a clock.
//!
//! Inputs are "a segment arrived" ([`Connection::on_segment`]), the application's calls
//! ([`send`](Connection::send), [`recv`](Connection::recv), [`shutdown`](Connection::shutdown),
//! [`close`](Connection::close), [`abort`](Connection::abort)) and "the time is now"
//! ([`handle_timeout`](Connection::handle_timeout)). Outputs are segments to transmit
//! ([`poll_transmit`](Connection::poll_transmit)) and the next deadline
//! ([`poll_timeout`](Connection::poll_timeout)).
//!
//! Segment arrival lives in `input.rs`, segment generation in `output.rs`; this file holds the
//! state, the application interface and the timers.

mod ack;
mod cookie;
mod input;
mod output;

use super::cc::CongestionControl;
use super::recovery::{Prr, Rack, RateEstimator, SentQueue, Tlp};
use super::recv::RecvBuffer;
use super::rtt::RttEstimator;
use super::send::SendBuffer;
use super::{Config, Error, Instant, SeqNum, TcpInfo};
use crate::wire::TcpRepr;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The eleven connection states of RFC 9293 §3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection.
    Closed,
    /// Waiting for a SYN.
    Listen,
    /// SYN sent, waiting for SYN+ACK.
    SynSent,
    /// SYN received and SYN+ACK sent, waiting for the ACK.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We sent FIN; waiting for its ACK or the peer's FIN.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer sent FIN; we may still send.
    CloseWait,
    /// Both sent FIN at once; waiting for the ACK of ours.
    Closing,
    /// The peer closed first and we sent FIN; waiting for its ACK.
    LastAck,
    /// Both FINs acknowledged; waiting 2×MSL for stray segments.
    TimeWait,
}

impl State {
    /// Whether the handshake has completed in this state (RFC 9293 "synchronized states").
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// Whether the peer may still send data in this state.
    fn receives_data(self) -> bool {
        matches!(
            self,
            State::SynReceived | State::Established | State::FinWait1 | State::FinWait2
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        })
    }
}

/// A segment the engine wants sent: the header, how many payload bytes it copied into the
/// buffer given to [`Connection::poll_transmit`], and why it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The TCP header to emit (ports, numbers, flags, window, options).
    pub repr: TcpRepr,
    /// Payload bytes at the start of the caller's buffer.
    pub payload_len: usize,
    /// What the segment is: control, new data, or a retransmission and its cause.
    pub kind: SegmentKind,
}

/// A segment's payload left where the send buffer keeps it
/// ([`Connection::poll_transmit_shared`]): its pieces (boxed, so that what the engine
/// returns for every segment stays small) and their RFC 1071 sum, folded.
pub type SharedPayload = (Box<crate::wire::Pieces>, u16);

/// What a segment the engine sends is, for taps, captures and graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    /// Nothing new in sequence space: a pure ACK or window update, a RST, a keepalive or
    /// zero-window probe, or a SYN / SYN+ACK sent for the first time.
    Control,
    /// New data or FIN, sent for the first time.
    New,
    /// Sequence space sent before, sent again.
    Retransmission(RetransmitCause),
}

/// Why a segment is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetransmitCause {
    /// The retransmission timer expired (RFC 6298), or a SYN timed out.
    Timeout,
    /// Fast recovery: RACK (RFC 8985), SACK (RFC 6675) or duplicate ACKs (RFC 5681) deemed it
    /// lost.
    Fast,
    /// A tail loss probe (RFC 8985 §7).
    LossProbe,
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            SegmentKind::Control => "control",
            SegmentKind::New => "new",
            SegmentKind::Retransmission(RetransmitCause::Timeout) => "rto",
            SegmentKind::Retransmission(RetransmitCause::Fast) => "fast",
            SegmentKind::Retransmission(RetransmitCause::LossProbe) => "tlp",
        })
    }
}

/// A few of a connection's figures, cheap to take at every segment (for taps and graphs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Congestion window in force, bytes.
    pub cwnd: u32,
    /// Slow-start threshold, bytes.
    pub ssthresh: u32,
    /// Bytes in flight (RFC 6675 pipe).
    pub in_flight: u32,
    /// Smoothed RTT, once measured.
    pub srtt: Option<std::time::Duration>,
    /// Retransmission timeout, backoff included.
    pub rto: std::time::Duration,
    /// The peer's receive window, bytes.
    pub send_window: u32,
}

impl Transmit {
    /// The segment in ladder notation, e.g. `PSH+ACK  S:101 A:2001 len=100`.
    pub fn ladder(&self) -> impl fmt::Display + '_ {
        self.repr.ladder(self.payload_len)
    }
}

/// What a loss response changed, kept to undo it if it proves spurious: RFC 3522 Eifel
/// detection with timestamps, RFC 3708 detection with DSACK, RFC 4015 response.
#[derive(Debug, Clone, Copy)]
struct Undo {
    cwnd: u32,
    ssthresh: u32,
    /// TSval of the first retransmission, once it left, and the sequence number just past
    /// it: the first ACK covering it tells which copy arrived (RFC 3522 §3.2).
    tsval: Option<(u32, SeqNum)>,
    /// The response was a retransmission timeout.
    timeout: bool,
    /// SND.UNA when the response began: DSACKs below it are not about this episode.
    marker: SeqNum,
    /// Retransmissions of this episode not yet reported duplicate by a DSACK (RFC 3708
    /// §3: when every one is, none was needed).
    retrans_out: u32,
    /// Whether anything was retransmitted at all.
    retransmitted: bool,
}

/// Where the sender is in loss recovery (Linux's `tcp_ca_state`, in RFC terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// No loss outstanding.
    Open,
    /// Fast recovery (RFC 6675 §5, RFC 8985 §3.4) until SND.UNA passes `point`; the window
    /// follows PRR (RFC 6937).
    Fast { point: SeqNum },
    /// Resending after a retransmission timeout (RFC 5681 §3.1, RFC 6675 §5.1) until SND.UNA
    /// passes `point`; the window slow-starts from one segment.
    Timeout { point: SeqNum },
}

/// An event counter: 32 bits that stop at their maximum, as Linux's `tcp_info` keeps such
/// counts (segments included) in 32 bits. Seventeen of them are a sizeable share of an idle connection's memory
/// (the goal is 2 KiB per endpoint), so they are not 64 bits wide.
#[derive(Debug, Default, Clone, Copy)]
struct Count(u32);

impl std::ops::AddAssign<u32> for Count {
    fn add_assign(&mut self, n: u32) {
        self.0 = self.0.saturating_add(n);
    }
}

impl Count {
    fn get(self) -> u64 {
        u64::from(self.0)
    }
}

/// Counters behind [`TcpInfo`].
#[derive(Debug, Default, Clone)]
struct Stats {
    retransmissions: Count,
    timeouts: Count,
    fast_retransmits: Count,
    spurious_retransmits: Count,
    recoveries: Count,
    rack_lost: Count,
    tlp_probes: Count,
    tlp_recoveries: Count,
    dsacks_received: Count,
    dsacks_sent: Count,
    reneged: Count,
    bytes_sent: u64,
    bytes_acked: u64,
    bytes_received: u64,
    bytes_retransmitted: u64,
    segments_sent: Count,
    segments_received: Count,
    challenge_acks: Count,
    challenge_acks_skipped: Count,
    pressure_drops: Count,
    out_of_order_drops: Count,
}

/// Pending timers; `None` means not armed.
#[derive(Debug, Default, Clone)]
struct Timers {
    retransmit: Option<Instant>,
    /// RFC 8985 §7.2: the tail loss probe timeout (PTO).
    loss_probe: Option<Instant>,
    /// RFC 8985 §6.3: the RACK reordering timer.
    reorder: Option<Instant>,
    /// The pacing deadline of the next data segment.
    pacing: Option<Instant>,
    persist: Option<Instant>,
    delayed_ack: Option<Instant>,
    keepalive: Option<Instant>,
    time_wait: Option<Instant>,
    /// When buffers that emptied may give their storage back, if they stay empty.
    release: Option<Instant>,
}

/// One TCP connection's complete state (the TCB of RFC 9293 §3.3.1).
///
/// ```
/// use rawtcp::proto::{Config, Connection, Instant, SeqNum, State};
/// let mut client = Connection::connect(
///     Config::default(),
///     "10.0.0.1:40000".parse().unwrap(),
///     "10.0.0.2:80".parse().unwrap(),
///     SeqNum(100),
///     Instant::ZERO,
/// );
/// let mut buf = [0u8; 1500];
/// let syn = client.poll_transmit(Instant::ZERO, &mut buf).unwrap();
/// assert_eq!(syn.ladder().to_string(), "SYN      S:100 A:0");
/// assert_eq!(client.state(), State::SynSent);
/// ```
pub struct Connection {
    /// Shared with every connection that has the same settings (see `config::intern`).
    cfg: std::sync::Arc<Config>,
    state: State,
    local: SocketAddr,
    remote: SocketAddr,
    /// Opened by a passive OPEN (LISTEN), not by connect.
    passive: bool,
    /// Made by [`Connection::accept`] for a listener the driver owns: a reset handshake
    /// ends it silently instead of returning it to LISTEN.
    spawned: bool,

    // Send sequence space (RFC 9293 §3.3.1).
    iss: SeqNum,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    /// Highest sequence number sent so far, plus one (SND.NXT before a go-back after RTO).
    snd_max: SeqNum,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    /// Shift applied to the peer's advertised window (RFC 7323).
    snd_wscale: u8,
    /// Payload bytes per full-sized segment we send.
    snd_mss: u32,
    /// End of the last sub-MSS segment sent, for Minshall's variant of Nagle.
    snd_sml: SeqNum,
    /// End of urgent data we were asked to send (RFC 6093 semantics).
    snd_up: Option<SeqNum>,
    send_buf: SendBuffer,
    /// Sequence number of `send_buf`'s first byte.
    buf_seq: SeqNum,
    /// The application shut down its write half: FIN follows the buffered data.
    fin_queued: bool,

    // Receive sequence space.
    irs: SeqNum,
    rcv_nxt: SeqNum,
    /// Right edge of the last window advertised.
    rcv_adv: SeqNum,
    rcv_wscale: u8,
    /// Largest payload seen from the peer, for delayed ACKs and SWS avoidance.
    rcv_mss: u32,
    recv_buf: RecvBuffer,
    /// Sequence number just past the peer's urgent data (RFC 6093).
    rcv_up: Option<SeqNum>,
    /// Sequence number of the peer's FIN, once seen (possibly ahead of a gap).
    fin_seq_rcvd: Option<SeqNum>,
    /// The peer's FIN has been consumed in order: reads end with EOF.
    fin_rcvd: bool,
    /// The application will not read again; new data is answered with RST (RFC 1122 §4.2.2.13).
    read_closed: bool,
    /// The application dropped the connection (see [`Connection::orphan`]).
    orphaned: bool,
    /// Zero-window probes sent since the application let go, answered or not. (This and
    /// the other counters of attempts are `u16`, saturating, and compared through [`past`],
    /// which takes a limit above 65,534 as 65,534; the two bytes each saves keep an idle
    /// connection under 2 KiB.)
    orphan_probes: u16,
    /// The driver is short of buffer memory: hold no out-of-order data, grow no buffer.
    memory_pressure: bool,
    /// Starts of the most recently received out-of-order segments, newest first: the SACK
    /// blocks to report first (RFC 2018 §4).
    sack_recent: [Option<SeqNum>; 4],
    /// A duplicate range received, to report in the next ACK's first SACK block (RFC 2883).
    dsack: Option<(SeqNum, SeqNum)>,

    // Negotiated options.
    /// Both SYNs carried window scale (RFC 7323 §2.2).
    wscale_ok: bool,
    sack_ok: bool,
    ts_ok: bool,
    /// Both SYNs carried the partial-checksum offer (`Config::partial_checksums`).
    partial_ok: bool,
    /// With timestamps, TS.Recent (RFC 7323 §4.3). Without them it would lie unused, so it
    /// holds when the window's round-trip timing began instead (see
    /// [`mark_recv_rtt`](Self::mark_recv_rtt)): milliseconds plus one, 0 while none is
    /// under way. Sharing it keeps the engine within its memory budget.
    ts_recent: u32,
    ts_offset: u32,
    last_ack_sent: SeqNum,

    // Retransmission and timers.
    timers: Timers,
    rtt: RttEstimator,
    /// The SYN's send time while it is the only thing in flight (its RTT sample).
    syn_sent_at: Option<Instant>,
    /// Consecutive retransmission timeouts without progress.
    retries: u16,
    /// Since when the oldest unacknowledged data has waited (RFC 5482 user timeout).
    unacked_since: Option<Instant>,
    /// Unanswered zero-window or keepalive probes.
    probes_out: u16,
    last_send: Instant,

    // Loss detection and recovery (RFC 6675, RFC 8985, RFC 6937).
    /// Every segment in flight: the scoreboard.
    sent: SentQueue,
    rack: Rack,
    tlp: Tlp,
    prr: Prr,
    /// The window PRR allows during fast recovery.
    prr_cwnd: u32,
    recovery: Recovery,
    /// Duplicate ACKs counted without SACK (RFC 5681 §2), each standing for one segment that
    /// left the network (as Linux's `tcp_add_reno_sack`).
    dupacks: u16,
    /// The last loss response, while it may still prove spurious.
    undo: Option<Undo>,
    /// RFC 6582 `recover`: the highest sequence number sent when loss was last detected.
    recover: Option<SeqNum>,
    /// A send was held back by the congestion window since the last ACK (RFC 7661).
    cwnd_blocked: bool,

    // Congestion control and pacing.
    cc: Box<dyn CongestionControl>,
    rate: RateEstimator,
    /// The newest delivery rate measured, bytes per second.
    delivery_rate: u64,
    /// When the next data segment may leave, when pacing.
    pacing_next: Option<Instant>,

    // Pending output.
    /// After a retransmission timeout, the first retransmission goes even into a zero window
    /// (RFC 9293 §3.8.6.1) and whatever the congestion window says.
    rto_probe: bool,
    /// Send a tail loss probe (RFC 8985 §7.3).
    tlp_now: bool,
    /// The cause recorded for the retransmission being built.
    rtx_cause: RetransmitCause,
    /// Send a probe (zero-window or keepalive): an ACK carrying SND.UNA - 1.
    probe_now: bool,
    /// Send what the window allows even if Nagle or SWS avoidance would wait.
    force_send: bool,
    ack_now: bool,
    /// The pending ACK reports a gap, a filled gap or a duplicate: it should leave before
    /// the next arrival is processed (RFC 5681 §4.2).
    ack_urgent: bool,
    /// In-order payload received since our last ACK.
    rcvd_since_ack: u32,
    /// The last in-order segment received since our last ACK was shorter than the largest
    /// seen (`rcv_mss`): the end of what the peer had to send, or a tail its Nagle test let
    /// go (see [`check_drain_ack`](Self::check_drain_ack)).
    short_tail: bool,
    /// In-order payload received since this connection last sent data, saturating: more
    /// than a full-sized segment means the peer streams to us, rather than asks something
    /// our answer will acknowledge.
    rcvd_since_sent: u32,
    /// When an out-of-window pure ACK was last answered.
    last_oow_ack: Option<Instant>,
    /// Send RST (abort) before anything else.
    rst_now: bool,
    /// The segment being processed was accepted as the peer's (see `on_segment`).
    accepted: bool,
    /// The latest time the driver passed in: an application call, which has no clock,
    /// arms timers from it.
    now_hint: Instant,
    /// Receive-buffer tuning (see [`tune_recv_buffer`](Self::tune_recv_buffer)): the least
    /// round trip measured from the timestamps the peer's data echoes, in milliseconds
    /// (`u16::MAX`: none yet), and where the current measuring period began: when, in
    /// milliseconds of the timestamp clock, and how many bytes the application had read
    /// (both wrap; a period is far shorter).
    rcv_rtt_ms: u16,
    rcv_period_ms: u32,
    rcv_period_read: u32,
    /// Without timestamps (see [`sample_recv_rtt_by_window`](Self::sample_recv_rtt_by_window)):
    /// the right edge whose offer is being timed (when: `ts_recent`).
    rcv_rtt_edge: SeqNum,
    /// An application call armed a timer: the driver should look at `poll_timeout` again.
    timer_changed: bool,
    /// A reply outside the connection's sequence space (RST to a bad ACK).
    reply: Option<Box<TcpRepr>>,

    error: Option<Error>,
    stats: Stats,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("rcv_nxt", &self.rcv_nxt)
            .finish_non_exhaustive()
    }
}

/// The timestamp clock's offset for a 4-tuple (RFC 7323 §5.4): a keyed hash of the tuple, so
/// that it hides the host's clock and yet stays the same for successive connections on one
/// tuple — their timestamps keep increasing, which lets a SYN reopen a connection lingering in
/// TIME-WAIT (RFC 6191).
fn ts_offset(local: SocketAddr, remote: SocketAddr) -> u32 {
    static KEY: std::sync::OnceLock<super::IsnGenerator> = std::sync::OnceLock::new();
    KEY.get_or_init(super::IsnGenerator::new)
        .hash(local, remote, 1)
}

/// Largest window expressible with the largest shift (RFC 7323 §2.3).
const MAX_WINDOW: usize = 65_535 << 14;

/// Whether an attempt counter has gone past `limit`. The counters are `u16` and saturate,
/// so a limit above 65,534 counts as 65,534: a configured limit is always reached.
fn past(count: u16, limit: u32) -> bool {
    u32::from(count) > limit.min(u32::from(u16::MAX) - 1)
}

/// How long emptied buffers keep their storage before giving it back.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

impl Connection {
    fn new(cfg: Config, local: SocketAddr, remote: SocketAddr, iss: SeqNum, now: Instant) -> Self {
        let rcv_wscale = if cfg.window_scaling {
            let mut s = 0u8;
            // Room for the window the buffer may grow to (RFC 7323 §2.2: the scale is fixed
            // at the handshake).
            let most = cfg.recv_buffer.max(cfg.recv_buffer_max).min(MAX_WINDOW);
            while s < 14 && (most >> s) > 65_535 {
                s += 1;
            }
            s
        } else {
            0
        };
        let snd_mss = u32::from(cfg.mss.max(64));
        Connection {
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            cc: cfg.congestion.build(snd_mss),
            send_buf: SendBuffer::with_sums(cfg.send_buffer, cfg.send_sums),
            recv_buf: RecvBuffer::new(cfg.recv_buffer),
            rcv_mss: u32::from(cfg.mss).min(536),
            state: State::Closed,
            local,
            remote,
            passive: false,
            spawned: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: iss,
            snd_wscale: 0,
            snd_mss,
            snd_up: None,
            snd_sml: iss,
            buf_seq: iss + 1u32,
            fin_queued: false,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_adv: SeqNum(0),
            rcv_wscale,
            rcv_up: None,
            fin_seq_rcvd: None,
            fin_rcvd: false,
            read_closed: false,
            orphaned: false,
            orphan_probes: 0,
            memory_pressure: false,
            sack_recent: [None; 4],
            dsack: None,
            wscale_ok: false,
            sack_ok: false,
            ts_ok: false,
            partial_ok: false,
            ts_recent: 0,
            ts_offset: ts_offset(local, remote),
            last_ack_sent: SeqNum(0),
            timers: Timers::default(),
            syn_sent_at: None,
            retries: 0,
            unacked_since: None,
            probes_out: 0,
            last_send: now,
            sent: SentQueue::default(),
            rack: Rack::default(),
            tlp: Tlp::default(),
            prr: Prr::default(),
            prr_cwnd: 0,
            recovery: Recovery::Open,
            dupacks: 0,
            undo: None,
            recover: None,
            cwnd_blocked: false,
            rate: RateEstimator::default(),
            delivery_rate: 0,
            pacing_next: None,
            rto_probe: false,
            tlp_now: false,
            rtx_cause: RetransmitCause::Fast,
            probe_now: false,
            force_send: false,
            ack_now: false,
            ack_urgent: false,
            rcvd_since_ack: 0,
            short_tail: false,
            rcvd_since_sent: 0,
            last_oow_ack: None,
            rst_now: false,
            accepted: false,
            now_hint: now,
            rcv_rtt_ms: u16::MAX,
            rcv_period_ms: now.as_millis() as u32,
            rcv_period_read: 0,
            rcv_rtt_edge: SeqNum(0),
            timer_changed: false,
            reply: None,
            error: None,
            stats: Stats::default(),
            cfg: super::config::intern(cfg),
        }
    }

    /// Active OPEN (RFC 9293 §3.10.1): the connection starts in SYN-SENT and its first
    /// transmit is the SYN carrying `iss`.
    pub fn connect(
        cfg: Config,
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNum,
        now: Instant,
    ) -> Connection {
        let mut c = Connection::new(cfg, local, remote, iss, now);
        c.set_state(State::SynSent);
        c
    }

    /// Passive OPEN with the foreign socket fully specified (RFC 9293 §3.10.1): the
    /// connection waits in LISTEN for a SYN from `remote` and will answer with `iss`.
    pub fn listen(
        cfg: Config,
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNum,
        now: Instant,
    ) -> Connection {
        let mut c = Connection::new(cfg, local, remote, iss, now);
        c.passive = true;
        c.set_state(State::Listen);
        c
    }

    /// A listener received `syn` from `remote`: a new connection in SYN-RECEIVED whose first
    /// transmit is the SYN+ACK. `None` if the segment does not open a connection (for an
    /// ACK the caller answers with [`reset_for`](super::reset_for)).
    pub fn accept(
        cfg: Config,
        local: SocketAddr,
        remote: SocketAddr,
        syn: &TcpRepr,
        iss: SeqNum,
        now: Instant,
    ) -> Option<Connection> {
        use crate::wire::TcpFlags;
        if !syn.flags.contains(TcpFlags::SYN) || syn.flags.intersects(TcpFlags::ACK | TcpFlags::RST)
        {
            return None;
        }
        let mut c = Connection::listen(cfg, local, remote, iss, now);
        c.spawned = true;
        c.on_segment(now, syn, &[]);
        (c.state == State::SynReceived).then_some(c)
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            tracing::debug!(
                local = %self.local,
                remote = %self.remote,
                from = %self.state,
                to = %state,
                "tcp state"
            );
            self.state = state;
        }
    }

    // ---- accessors -------------------------------------------------------------------

    /// The RFC 9293 state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our address and port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The peer's address and port.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Whether both SYNs offered partial checksums (`Config::partial_checksums`): the
    /// segments this connection sends may then carry the pseudo-header sum only
    /// ([`emit_tcp_headers_partial`](crate::wire::ip::emit_tcp_headers_partial)).
    pub fn partial_checksums(&self) -> bool {
        self.partial_ok
    }

    /// The settings this connection runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// SND.UNA (RFC 9293 §3.3.1): the oldest sequence number sent and not acknowledged.
    /// Read-only, for tests and diagnostics.
    pub fn snd_una(&self) -> SeqNum {
        self.snd_una
    }

    /// SND.NXT (RFC 9293 §3.3.1): the next sequence number to send. It moves back to
    /// SND.UNA when a retransmission timeout goes back over what is in flight; always
    /// `snd_una() <= snd_nxt() <= snd_max()`.
    pub fn snd_nxt(&self) -> SeqNum {
        self.snd_nxt
    }

    /// The highest sequence number sent so far, plus one: the SND.NXT that RFC 5961 §5.2's
    /// ACK check compares with.
    pub fn snd_max(&self) -> SeqNum {
        self.snd_max
    }

    /// RCV.NXT (RFC 9293 §3.3.1): the next sequence number expected from the peer.
    pub fn rcv_nxt(&self) -> SeqNum {
        self.rcv_nxt
    }

    /// RCV.WND as last advertised: the receive window runs from [`rcv_nxt`](Self::rcv_nxt)
    /// for this many sequence numbers (RFC 9293 §3.3.1; RFC 5961 §3 aims its checks at it).
    pub fn rcv_wnd(&self) -> u32 {
        (self.rcv_adv - self.rcv_nxt).max(0) as u32
    }

    /// Whether the handshake completed (the connection is or was open).
    pub fn is_established(&self) -> bool {
        self.state.is_synchronized()
    }

    /// Whether the connection is finished and has nothing left to transmit: the driver may
    /// forget it.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed && !self.rst_now && self.reply.is_none()
    }

    /// The error that ended the connection, if one did.
    pub fn error(&self) -> Option<Error> {
        self.error
    }

    /// Whether a [`recv`](Self::recv) would return something other than `WouldBlock`:
    /// data, end of stream, or an error.
    pub fn can_recv(&self) -> bool {
        self.recv_buf.readable() > 0
            || self.fin_rcvd
            || self.error.is_some()
            || self.state == State::Closed
    }

    /// Whether a [`send`](Self::send) would return something other than `WouldBlock`:
    /// room in the buffer, or an error.
    pub fn can_send(&self) -> bool {
        match self.state {
            State::SynSent | State::SynReceived | State::Listen => false,
            State::Established | State::CloseWait if !self.fin_queued => self.send_buf.free() > 0,
            _ => true,
        }
    }

    /// Whether an acknowledgment (or window update) is owed: the driver should call
    /// [`poll_transmit`](Self::poll_transmit) soon.
    pub fn ack_pending(&self) -> bool {
        self.ack_now
    }

    /// Whether the pending acknowledgment carries loss information — a gap, a filled gap or
    /// a duplicate — and should be sent before the next arriving segment is processed
    /// (RFC 5681 §4.2: "immediately"), rather than coalesced with later ones.
    pub fn ack_urgent(&self) -> bool {
        self.ack_now && self.ack_urgent
    }

    /// Whether `syn` may open a new incarnation of this connection while it lingers in
    /// TIME-WAIT: [`TimeWait::accepts_syn`](super::endpoint::TimeWait::accepts_syn) on this
    /// connection's [`time_wait`](Self::time_wait) record (`false` outside TIME-WAIT). The
    /// [`Endpoint`](super::endpoint::Endpoint) applies the rule when it routes a SYN.
    pub fn accepts_new_syn(&self, syn: &TcpRepr) -> bool {
        self.time_wait().is_some_and(|tw| tw.accepts_syn(syn))
    }

    /// In TIME-WAIT, what a new SYN for this 4-tuple is judged by: RCV.NXT and, with
    /// timestamps, TS.Recent (RFC 6191). `None` in every other state.
    pub fn time_wait(&self) -> Option<super::endpoint::TimeWait> {
        (self.state == State::TimeWait).then(|| {
            super::endpoint::TimeWait::new(self.rcv_nxt, self.ts_ok.then_some(self.ts_recent))
        })
    }

    /// What the [`Endpoint`](super::endpoint::Endpoint) needs to know of this connection
    /// now; the driver reports it through
    /// [`Endpoint::update`](super::endpoint::Endpoint::update) after touching it.
    pub fn status(&self) -> super::endpoint::ConnectionStatus {
        super::endpoint::ConnectionStatus {
            established: self.is_established(),
            closed: self.state == State::Closed,
            finished: self.is_closed(),
            time_wait: self.time_wait(),
        }
    }

    /// Bytes waiting to be read.
    pub fn recv_queue(&self) -> usize {
        self.recv_buf.readable()
    }

    /// Bytes of buffer storage the connection holds (send and receive buffers).
    pub fn buffer_memory(&self) -> usize {
        self.send_buf.allocated() + self.recv_buf.allocated()
    }

    /// Tells the connection whether its driver is short of buffer memory. While it is,
    /// arriving data is stored only in order and within the storage already allocated (at
    /// least [`PRESSURE_FLOOR`](super::recv::PRESSURE_FLOOR) bytes); the rest is dropped
    /// and the peer sends it again (counted in [`TcpInfo::pressure_drops`]).
    pub fn set_memory_pressure(&mut self, on: bool) {
        self.memory_pressure = on;
    }

    /// Bytes written and not yet acknowledged.
    pub fn send_queue(&self) -> usize {
        self.send_buf.len()
    }

    /// Room in the send buffer.
    pub fn send_capacity(&self) -> usize {
        self.send_buf.free()
    }

    /// Whether Nagle's algorithm is off (TCP_NODELAY).
    pub fn nodelay(&self) -> bool {
        self.cfg.nodelay
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        if self.cfg.nodelay != nodelay {
            self.update_config(|c| c.nodelay = nodelay);
        }
    }

    /// Changes this connection's settings: a copy of the shared ones with `change` made,
    /// shared in turn with connections that made the same change.
    fn update_config(&mut self, change: impl FnOnce(&mut Config)) {
        let mut cfg = Config::clone(&self.cfg);
        change(&mut cfg);
        self.cfg = super::config::intern(cfg);
    }

    /// Changes keepalive probing; takes effect from now.
    pub fn set_keepalive(&mut self, keepalive: Option<super::Keepalive>, now: Instant) {
        self.update_config(|c| c.keepalive = keepalive);
        self.probes_out = 0;
        self.arm_keepalive(now);
    }

    /// Changes the delayed-ACK time (`TCP_QUICKACK` turns it to zero: every segment is
    /// acknowledged at once). An acknowledgment being delayed when it becomes zero is due now.
    pub fn set_delayed_ack(&mut self, delay: std::time::Duration) {
        self.update_config(|c| c.delayed_ack = delay);
        if delay.is_zero() && self.timers.delayed_ack.take().is_some() {
            self.ack_now = true;
        }
    }

    /// Changes the user timeout (RFC 9293 §3.10.3).
    pub fn set_user_timeout(&mut self, timeout: Option<std::time::Duration>) {
        self.update_config(|c| c.user_timeout = timeout);
    }

    /// The congestion-control algorithm in use (`TCP_CONGESTION`).
    pub fn congestion(&self) -> &super::cc::Algorithm {
        &self.cfg.congestion
    }

    /// Switches the congestion-control algorithm (`setsockopt(TCP_CONGESTION)`). The new
    /// algorithm continues from the current window and threshold, as Linux keeps
    /// `snd_cwnd` across a switch.
    pub fn set_congestion(&mut self, algorithm: super::cc::Algorithm) {
        let (cwnd, ssthresh) = (self.cc.window(), self.cc.ssthresh());
        self.cc = algorithm.build(self.snd_mss);
        self.update_config(|c| c.congestion = algorithm);
        if self.state.is_synchronized() {
            self.cc.seed(cwnd, ssthresh);
        }
        if self.cc.pacing_rate().is_none() {
            self.pacing_next = None;
            self.timers.pacing = None;
        }
    }

    /// Changes the send buffer size, and fixes it there (`SO_SNDBUF`: no growth by itself,
    /// see [`Config::send_buffer_max`]).
    pub fn set_send_buffer_size(&mut self, size: usize) {
        self.update_config(|c| {
            c.send_buffer = size;
            c.send_buffer_max = size;
        });
        self.send_buf.set_capacity(size);
    }

    /// The send buffer's size now: the configured one, or more where it grew.
    pub fn send_buffer_size(&self) -> usize {
        self.send_buf.capacity()
    }

    /// Grows the send buffer where it alone holds the flight back, as an ACK makes room
    /// (after Linux's `tcp_sndbuf_expand`): when the congestion window and the peer's window
    /// both exceed it, to twice the smaller of the two, up to [`Config::send_buffer_max`],
    /// so that the application can write the next window while this one is in flight.
    ///
    /// Unlike Linux, only while the buffer is less than twice the path's bandwidth-delay
    /// product (the latest delivery rate times the least RTT): a flight beyond that only
    /// waits in queues, and on a path of a few tens of microseconds a buffer grown to 4 MiB
    /// would hold data that goes cold in the cache before it is sent (see the README's "The
    /// flight and the caches"). Where the buffer is the limit, the flight fills it and the
    /// product comes to about the buffer's size. Never under buffer-memory pressure.
    fn tune_send_buffer(&mut self) {
        let cap = self.send_buf.capacity();
        let max = self.cfg.send_buffer_max;
        if cap >= max || self.memory_pressure {
            return;
        }
        let reach = self.cc.window().min(self.snd_wnd) as usize;
        if reach <= cap {
            return;
        }
        let Some(min_rtt) = self.rtt.min_rtt() else {
            return;
        };
        let bdp = u128::from(self.delivery_rate) * min_rtt.as_nanos() / 1_000_000_000;
        if (cap as u128) < bdp * 2 {
            let to = reach.saturating_mul(2).min(max);
            tracing::debug!(local = %self.local, remote = %self.remote, from = cap, to, bdp = bdp as u64, "send buffer grown");
            self.send_buf.set_capacity(to);
        }
    }

    /// How many readable bytes precede the end of the peer's urgent data, if urgent data is
    /// pending (RFC 6093: urgent data is delivered inline; this is where it ends).
    pub fn urgent_mark(&self) -> Option<usize> {
        let up = self.rcv_up?;
        let read_seq = self.rcv_nxt - self.recv_buf.readable() as u32 - u32::from(self.fin_rcvd);
        let ahead = up - read_seq;
        (ahead > 0).then_some(ahead as usize)
    }

    /// The figures a graph plots over time: window, flight, RTT, RTO. Cheaper than
    /// [`info`](Self::info).
    pub fn sample(&self) -> Sample {
        Sample {
            cwnd: self.cwnd(),
            ssthresh: self.cc.ssthresh(),
            in_flight: self.pipe(),
            srtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            send_window: self.snd_wnd,
        }
    }

    /// A snapshot of the connection's statistics.
    pub fn info(&self) -> TcpInfo {
        TcpInfo {
            state: self.state,
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            min_rtt: self.rtt.min_rtt(),
            rto: self.rtt.rto(),
            cwnd: self.cwnd(),
            ssthresh: self.cc.ssthresh(),
            congestion_control: self.cc.name(),
            congestion_state: self.cc.state(),
            pacing_rate: self.cc.pacing_rate(),
            delivery_rate: self.delivery_rate,
            bytes_in_flight: self.pipe(),
            unacked: self.flight_size(),
            sacked: self.sent.sacked_bytes(),
            lost: self.sent.lost_bytes(),
            ca_state: match self.recovery {
                Recovery::Open => "open",
                Recovery::Fast { .. } => "recovery",
                Recovery::Timeout { .. } => "loss",
            },
            reordering_seen: self.rack.reordering_seen(),
            reorder_window_mult: self.rack.reo_wnd_mult(),
            delivered: self.rate.delivered(),
            send_window: self.snd_wnd,
            recv_window: (self.rcv_adv - self.rcv_nxt).max(0) as u32,
            send_mss: self.snd_mss,
            recv_mss: self.rcv_mss,
            retransmissions: self.stats.retransmissions.get(),
            timeouts: self.stats.timeouts.get(),
            fast_retransmits: self.stats.fast_retransmits.get(),
            spurious_retransmits: self.stats.spurious_retransmits.get(),
            recoveries: self.stats.recoveries.get(),
            rack_lost: self.stats.rack_lost.get(),
            tlp_probes: self.stats.tlp_probes.get(),
            tlp_recoveries: self.stats.tlp_recoveries.get(),
            dsacks_received: self.stats.dsacks_received.get(),
            dsacks_sent: self.stats.dsacks_sent.get(),
            reneged: self.stats.reneged.get(),
            bytes_retransmitted: self.stats.bytes_retransmitted,
            bytes_sent: self.stats.bytes_sent,
            bytes_acked: self.stats.bytes_acked,
            bytes_received: self.stats.bytes_received,
            segments_sent: self.stats.segments_sent.get(),
            segments_received: self.stats.segments_received.get(),
            challenge_acks: self.stats.challenge_acks.get(),
            challenge_acks_skipped: self.stats.challenge_acks_skipped.get(),
            pressure_drops: self.stats.pressure_drops.get(),
            out_of_order_drops: self.stats.out_of_order_drops.get(),
            send_wscale: self.snd_wscale,
            recv_wscale: self.rcv_wscale,
            sack: self.sack_ok,
            timestamps: self.ts_ok,
            partial_checksums: self.partial_ok,
            send_buffer: self.send_buf.capacity().min(u32::MAX as usize) as u32,
            recv_buffer: self.recv_buf.capacity().min(u32::MAX as usize) as u32,
            recv_rtt: (self.rcv_rtt_ms != u16::MAX)
                .then(|| Duration::from_millis(self.rcv_rtt_ms.into())),
        }
    }

    /// Sequence-space bytes sent and not acknowledged (RFC 5681 FlightSize).
    fn flight_size(&self) -> u32 {
        (self.snd_max - self.snd_una).max(0) as u32
    }

    /// Bytes believed to be in the network (RFC 6675 `pipe`): sent and neither acknowledged,
    /// SACKed nor deemed lost, plus retransmissions in flight. Without SACK each duplicate
    /// ACK stands for a segment that left the network (RFC 6675 §5 of a sort, as Linux
    /// counts them), and the SYN counts while unacknowledged.
    fn pipe(&self) -> u32 {
        if self.sent.is_empty() {
            return self.flight_size();
        }
        let pipe = self.sent.pipe();
        if self.sack_ok {
            pipe
        } else {
            pipe.saturating_sub(u32::from(self.dupacks).saturating_mul(self.snd_mss))
        }
    }

    /// The congestion window in force: PRR's during fast recovery (RFC 6937), the
    /// algorithm's otherwise.
    fn cwnd(&self) -> u32 {
        match self.recovery {
            Recovery::Fast { .. } if !self.cc.manages_recovery() => self.prr_cwnd,
            _ => self.cc.window(),
        }
    }

    /// Sequence number just past the last byte the application wrote.
    fn data_end(&self) -> SeqNum {
        self.buf_seq + self.send_buf.len()
    }

    /// Whether our FIN has been sent (at least once).
    fn fin_sent(&self) -> bool {
        self.fin_queued && self.snd_max == self.data_end() + 1u32
    }

    /// Whether our FIN has been acknowledged.
    fn fin_acked(&self) -> bool {
        self.fin_sent() && self.snd_una == self.snd_max
    }

    // ---- application calls -------------------------------------------------------------

    /// Queues `data` for sending; returns how many bytes were taken.
    ///
    /// Errors: `WouldBlock` when the send buffer is full (or the handshake is still under way),
    /// `BrokenPipe` after [`shutdown`](Self::shutdown), the connection's error after it failed.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.check_send()?;
        if data.is_empty() {
            return Ok(0);
        }
        match self.send_buf.write(data) {
            0 => Err(Error::WouldBlock),
            n => Ok(n),
        }
    }

    /// Like [`send`](Self::send), and marks the end of `data` as the end of urgent data:
    /// segments carry URG and the urgent pointer until it is acknowledged (RFC 9293 §3.8.5,
    /// RFC 6093).
    pub fn send_urgent(&mut self, data: &[u8]) -> Result<usize, Error> {
        let n = self.send(data)?;
        if n > 0 {
            self.snd_up = Some(self.data_end());
        }
        Ok(n)
    }

    fn check_send(&self) -> Result<(), Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.fin_queued {
            return Err(Error::BrokenPipe);
        }
        match self.state {
            State::Established | State::CloseWait => Ok(()),
            State::SynSent | State::SynReceived => Err(Error::WouldBlock),
            State::Listen | State::Closed => Err(Error::NotConnected),
            _ => Err(Error::BrokenPipe),
        }
    }

    /// Reads received bytes into `buf`. `Ok(0)` means end of stream (the peer sent FIN and
    /// everything before it was read) or an empty `buf`.
    ///
    /// Errors: `WouldBlock` when nothing is readable yet, `ConnectionReset` after a RST,
    /// the connection's error after it failed, `NotConnected` before a connection exists.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.peek(buf)?;
        if n > 0 {
            self.consume(n);
        }
        Ok(n)
    }

    /// Like [`recv`](Self::recv) but leaves the bytes in place.
    pub fn peek(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.recv_buf.readable() > 0 {
            return Ok(self.recv_buf.peek(buf));
        }
        if self.fin_rcvd {
            return Ok(0);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::Listen => Err(Error::NotConnected),
            State::Closed => Ok(0),
            _ => Err(Error::WouldBlock),
        }
    }

    /// Discards up to `n` readable bytes (for callers that read straight from
    /// [`peek`](Self::peek)).
    pub fn consume(&mut self, n: usize) {
        let before = self.recv_buf.readable();
        self.recv_buf.consume(n);
        self.tune_recv_buffer(before - self.recv_buf.readable());
        self.check_window_update();
        if n > 0 {
            self.check_drain_ack();
        }
        self.note_idle_memory();
    }

    /// A buffer emptied: if it keeps a large allocation, let it go once the connection has
    /// been idle for [`IDLE_RELEASE`] — a busy connection keeps its storage (no
    /// free-and-regrow on every empty/full cycle), an idle one holds no large buffer.
    fn note_idle_memory(&mut self) {
        // A direction that is over needs no storage again: give it back at once.
        if self.fin_queued && self.send_buf.is_empty() {
            self.send_buf.release();
        }
        if self.fin_rcvd && self.recv_buf.readable() == 0 {
            self.recv_buf.release();
        }
        if self.timers.release.is_none()
            && (self.recv_buf.holds_idle_memory() || self.send_buf.holds_idle_memory())
        {
            self.timers.release = Some(self.now_hint + IDLE_RELEASE);
            self.timer_changed = true;
        }
    }

    /// Whether the driver should run [`poll_transmit`](Self::poll_transmit) and read
    /// [`poll_timeout`](Self::poll_timeout) again after an application call: an
    /// acknowledgment or window update is owed, or a timer was armed.
    pub fn needs_driver(&self) -> bool {
        self.ack_now || self.timer_changed
    }

    /// Whether an acknowledgment or window update is owed now (the part of
    /// [`needs_driver`](Self::needs_driver) that sends a segment).
    pub fn ack_owed(&self) -> bool {
        self.ack_now
    }

    /// Shuts down the write half: FIN is sent after the data already written (RFC 9293
    /// §3.10.4 CLOSE, for the sending direction). Reading continues. Idempotent.
    pub fn shutdown(&mut self) -> Result<(), Error> {
        match self.state {
            State::Closed => match self.error {
                Some(Error::ConnectionReset) | None => Ok(()),
                Some(e) => Err(e),
            },
            State::Listen => {
                self.set_state(State::Closed);
                Ok(())
            }
            State::SynSent | State::SynReceived => {
                // Queued until the connection is established (RFC 9293 §3.10.4).
                self.fin_queued = true;
                Ok(())
            }
            State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1);
                Ok(())
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The application is done with the connection: it will neither write nor read again.
    /// Unread data, or data arriving later, resets the connection (RFC 1122 §4.2.2.13);
    /// otherwise this is a graceful [`shutdown`](Self::shutdown).
    pub fn close(&mut self) {
        self.read_closed = true;
        match self.state {
            State::Listen | State::SynSent => {
                self.clear_timers();
                self.set_state(State::Closed);
            }
            _ if self.recv_buf.readable() > 0 => self.abort(),
            _ => {
                let _ = self.shutdown();
            }
        }
    }

    /// The application dropped the connection: [`close`](Self::close) it, and since nobody
    /// will ever read or wait on it again, bound its FIN-WAIT-2 by
    /// [`Config::fin_wait2_timeout`] so a peer that never sends FIN cannot keep it forever.
    pub fn orphan(&mut self, now: Instant) {
        self.orphaned = true;
        self.close();
        self.arm_orphan_timeout(now);
    }

    /// Whether writing is over for good: shut down, reset, aborted, timed out or closed.
    pub fn is_write_closed(&self) -> bool {
        self.error.is_some()
            || self.fin_queued
            || !matches!(
                self.state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
    }

    fn arm_orphan_timeout(&mut self, now: Instant) {
        if self.orphaned && self.state == State::FinWait2 && self.timers.time_wait.is_none() {
            // Shares the timer that ends TIME-WAIT: both end the connection when they fire.
            self.timers.time_wait = Some(now + self.cfg.fin_wait2_timeout);
        }
    }

    /// Aborts the connection: RST to the peer if it is synchronized, buffers dropped
    /// (RFC 9293 §3.10.5). Later calls report `ConnectionAborted`.
    pub fn abort(&mut self) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            self.rst_now = true;
        }
        if self.state != State::Closed && self.error.is_none() {
            self.error = Some(Error::ConnectionAborted);
        }
        self.enter_closed();
    }

    /// Ends the connection with `err` (timeouts, resets).
    fn fail(&mut self, err: Error) {
        tracing::debug!(local = %self.local, remote = %self.remote, error = %err, "tcp connection failed");
        self.error = Some(err);
        self.enter_closed();
    }

    fn enter_closed(&mut self) {
        self.send_buf.clear();
        if self.error.is_some_and(|e| e != Error::TimedOut) {
            // RFC 9293 §3.10.7.4: on reset, all segment queues are flushed.
            self.recv_buf.clear();
        }
        self.clear_timers();
        self.sent.clear();
        self.rto_probe = false;
        self.tlp_now = false;
        self.probe_now = false;
        self.ack_now = false;
        self.set_state(State::Closed);
    }

    fn clear_timers(&mut self) {
        self.timers = Timers::default();
    }

    /// Samples the round trip from a data segment's timestamp echo (RFC 7323 §4.1): the
    /// time since we sent the TSval it echoes, which the peer took from our latest ACK
    /// (Linux's `tcp_rcv_rtt_measure_ts`). Only the least is kept: a stale echo (a sender
    /// that was idle) only ever measures more.
    pub(super) fn sample_recv_rtt(&mut self, now: Instant, tsecr: u32) {
        if tsecr == 0 {
            return;
        }
        let sent = tsecr.wrapping_sub(self.ts_offset);
        self.note_recv_rtt((now.as_millis() as u32).wrapping_sub(sent));
    }

    /// Samples the round trip without timestamps (Linux's `tcp_rcv_rtt_measure`): the time
    /// from offering a new right edge of the window to receiving the data that reaches it.
    /// The bytes just below that edge lay beyond every earlier offer, so the peer sent them
    /// only after our offer reached it: from a peer that keeps to the window the sample is
    /// never less than a round trip (unlike Linux's, which starts from the edge offered
    /// last, perhaps long before), and about one where the window is what limits the
    /// sender, the only case the tuning is for.
    /// Where it measures more (a sender held back by its congestion window), the least
    /// round trip our own RTT estimator saw (the handshake's, on a connection that only
    /// receives) stands in: it is a round trip too.
    fn sample_recv_rtt_by_window(&mut self) {
        if self.ts_ok || self.ts_recent == 0 || self.rcv_nxt < self.rcv_rtt_edge {
            return;
        }
        let since = self.ts_recent - 1;
        self.ts_recent = 0;
        let mut rtt = (self.now_hint.as_millis() as u32).wrapping_sub(since);
        if let Some(min) = self.rtt.min_rtt() {
            rtt = rtt.min(u32::try_from(min.as_millis()).unwrap_or(u32::MAX));
        }
        self.note_recv_rtt(rtt);
    }

    /// Starts a measurement of [`sample_recv_rtt_by_window`](Self::sample_recv_rtt_by_window)
    /// as the window's right edge moves to `edge` (from `rcv_adv`, the largest offered
    /// before), where timestamps do not measure and none is under way.
    fn mark_recv_rtt(&mut self, edge: SeqNum) {
        // A peer that sent past the edge offered before (accepted where the buffer had
        // room) may already have sent up to the new one: no measurement then.
        if !self.ts_ok && self.ts_recent == 0 && self.rcv_nxt <= self.rcv_adv {
            self.rcv_rtt_edge = edge;
            // A start at the clock's last millisecond (once in 49 days) reads one later.
            self.ts_recent = (self.now_hint.as_millis() as u32).wrapping_add(1).max(1);
        }
    }

    /// Keeps `rtt` (milliseconds) if it is the least receive-side round trip yet: a stale
    /// echo (a sender that was idle) or a sender slower than its window only ever measure
    /// more.
    fn note_recv_rtt(&mut self, rtt: u32) {
        // One from the future, or from over a minute ago, is no measurement (nor anything
        // a genuine peer makes us measure).
        if rtt < 60_000 && (rtt as u16) < self.rcv_rtt_ms {
            self.rcv_rtt_ms = rtt as u16;
        }
    }

    /// Receive-buffer auto-tuning, after Linux's dynamic right-sizing
    /// (`tcp_rcv_space_adjust`): once per measured round trip, the bytes the application
    /// read in it (scaled to one round trip where reads were further apart) show the rate
    /// the path delivers and the reader keeps up with; a window of
    /// twice that (plus 16 segments) lets the sender double its flight in the next round
    /// trip. Where that exceeds the buffer, the buffer grows to it, up to
    /// [`Config::recv_buffer_max`] and what the window scale can express. Never under
    /// buffer-memory pressure, never smaller.
    ///
    /// Only on paths of about a millisecond or more (the timestamp clock's tick; one of
    /// 0.9 ms can measure a tick): on a shorter one a 1 MiB window already covers more
    /// than a gigabyte a second, and a larger flight would only wait in queues, its bytes
    /// going cold in the cache (see the README's "The flight and the caches"). Without
    /// timestamps the round trip is timed by a window's worth of data instead
    /// ([`sample_recv_rtt_by_window`](Self::sample_recv_rtt_by_window)). A reader that
    /// took no more than half the buffer in a round trip grows nothing; the window is all
    /// the slack it needs.
    fn tune_recv_buffer(&mut self, read: usize) {
        self.rcv_period_read = self.rcv_period_read.wrapping_add(read as u32);
        let rtt = u32::from(self.rcv_rtt_ms);
        if rtt == 0 || self.rcv_rtt_ms == u16::MAX {
            return;
        }
        let now = self.now_hint.as_millis() as u32;
        let elapsed = now.wrapping_sub(self.rcv_period_ms);
        if elapsed < rtt {
            return;
        }
        // Read per round trip: a reader that took its bytes in one gulp after a pause
        // (where Linux counts the gulp whole) shows the rate it really keeps.
        let copied =
            (u64::from(self.rcv_period_read) * u64::from(rtt) / u64::from(elapsed)) as usize;
        self.rcv_period_ms = now;
        self.rcv_period_read = 0;
        let max = self.cfg.recv_buffer_max.min(self.largest_window());
        let cap = self.recv_buf.capacity();
        if cap >= max || self.memory_pressure {
            return;
        }
        // Only a reader that took more than half the buffer in a round trip is held back
        // by it (Linux grows only past its last measurement): a slow reader keeps even a
        // small buffer.
        if copied.saturating_mul(2) > cap {
            let to = copied
                .saturating_mul(2)
                .saturating_add(16 * self.rcv_mss as usize)
                .min(max);
            tracing::debug!(local = %self.local, remote = %self.remote, from = cap, to, rtt_ms = rtt, "receive buffer grown");
            self.recv_buf.set_capacity(to);
        }
    }

    /// The largest window the window field can express with our scale (RFC 7323 §2.3).
    fn largest_window(&self) -> usize {
        MAX_WINDOW.min(0xffff << self.rcv_wscale)
    }

    /// A read emptied the receive buffer: the ACK being delayed goes now if the data it
    /// covers ended with a short segment from a peer that streams to us.
    ///
    /// A sender whose Nagle test (RFC 1122 §4.2.3.4) holds its next short segment until the
    /// one in flight is acknowledged, and whose application then waits to read (a bulk
    /// writer's last writes, then a wait for the answer), sends nothing until that ACK: a
    /// delayed one (RFC 1122 §4.2.3.2) leaves both sides idle for the whole delayed-ACK
    /// time. Measured on `flows_8` (8 flows of 4 MiB, each written in 64 KiB writes that a
    /// 65,455-byte MSS leaves an 81-byte tail of), that was a 40 ms stall in most
    /// iterations and about a third of the run. The receiver that emptied its buffer has
    /// nothing to wait for either, so it acknowledges at once, as Linux does when a read
    /// drains a queue that ended in a pushed short segment.
    ///
    /// Not in a request-response exchange, where the answer the application is about to
    /// write carries the ACK: a connection that has received no more than one full-sized
    /// segment since it last sent data delays as before (in a 64-byte ping-pong each side
    /// has sent since the other's last message).
    fn check_drain_ack(&mut self) {
        if self.short_tail
            && self.recv_buf.readable() == 0
            && self.timers.delayed_ack.is_some()
            && self.rcvd_since_sent > self.rcv_mss
        {
            self.ack_now = true;
        }
    }

    /// After the application read: announce a window that opened substantially (RFC 9293
    /// §3.8.6.2.2 receiver SWS avoidance, with Linux's "at least doubled" rule).
    fn check_window_update(&mut self) {
        if !self.state.receives_data() || !self.state.is_synchronized() {
            return;
        }
        // Only what the window field can express counts (RFC 7323 §2.3).
        let free = self.recv_buf.window().min(self.largest_window()) as u32;
        let current = (self.rcv_adv - self.rcv_nxt).max(0) as u32;
        let threshold = ((self.recv_buf.capacity() / 2) as u32)
            .min(self.rcv_mss)
            .max(1);
        if free > current && free - current >= threshold && free >= 2 * current {
            self.ack_now = true;
        }
    }

    // ---- timers ---------------------------------------------------------------------------

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        [
            t.retransmit,
            t.release,
            t.loss_probe,
            t.reorder,
            t.pacing,
            t.persist,
            t.delayed_ack,
            t.keepalive,
            t.time_wait,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The engine's time for a call made at `now`: never earlier than a time an earlier call
    /// gave it. A driver whose threads read the clock before they take the connection in
    /// turn can hand it an instant older than one it has already used (the stack's reactor
    /// reads it once per round, then may wait for a writer that read it later). Transmission
    /// times must follow the order of sending: RACK takes a segment sent before one that was
    /// delivered as lost once that one's RTT has passed (RFC 8985 §6.2, `RACK_sent_after`),
    /// and a flight stamped before the segment sent ahead of it was all deemed lost the
    /// moment that segment was acknowledged (measured on `flows_8`: about 1,000
    /// retransmissions and 180 recoveries a run on a path that dropped 15 packets).
    fn clock(&mut self, now: Instant) -> Instant {
        self.now_hint = self.now_hint.max(now);
        self.now_hint
    }

    /// Fires every timer due at `now`. Segments they cause come out of
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        if self.timers.release.is_some_and(|t| t <= now) {
            self.timers.release = None;
            self.send_buf.release();
            self.recv_buf.release();
            self.sent.release();
        }
        if self.timers.time_wait.is_some_and(|t| t <= now) {
            self.timers.time_wait = None;
            self.enter_closed();
            return;
        }
        // The PTO goes first: when it is due with the RTO (it is capped at the RTO's expiry,
        // RFC 8985 §7.2), the probe is sent and the RTO restarts, as Linux's one timer does.
        if self.timers.loss_probe.is_some_and(|t| t <= now) {
            self.timers.loss_probe = None;
            self.on_loss_probe_timeout(now);
        }
        if self.timers.retransmit.is_some_and(|t| t <= now) {
            self.timers.retransmit = None;
            self.on_retransmit_timeout(now);
        }
        if self.timers.reorder.is_some_and(|t| t <= now) {
            self.timers.reorder = None;
            self.on_reorder_timeout(now);
        }
        if self.timers.pacing.is_some_and(|t| t <= now) {
            // Nothing to do but transmit: `poll_transmit` sends what pacing now allows.
            self.timers.pacing = None;
        }
        if self.timers.persist.is_some_and(|t| t <= now) {
            self.timers.persist = None;
            self.on_persist_timeout(now);
        }
        if self.timers.delayed_ack.is_some_and(|t| t <= now) {
            self.timers.delayed_ack = None;
            self.ack_now = true;
        }
        if self.timers.keepalive.is_some_and(|t| t <= now) {
            self.timers.keepalive = None;
            self.on_keepalive_timeout(now);
        }
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        match self.state {
            State::SynSent | State::SynReceived => {
                self.retries = self.retries.saturating_add(1);
                self.stats.timeouts += 1;
                if past(self.retries, self.cfg.syn_retries) {
                    self.fail(Error::TimedOut);
                    return;
                }
                self.rtt.back_off();
                self.syn_sent_at = None;
                self.snd_nxt = self.iss;
                tracing::debug!(local = %self.local, remote = %self.remote, retries = self.retries, "SYN retransmission timeout");
            }
            s if s.is_synchronized() && self.snd_max > self.snd_una => {
                let first = self.retries == 0;
                let start = self.unacked_since.unwrap_or(now);
                self.retries = self.retries.saturating_add(1);
                self.stats.timeouts += 1;
                // With a zero window the retransmission is a window probe (RFC 9293
                // §3.8.6.1): the peer is alive as long as it answers, so only unanswered
                // probes count towards giving up.
                let zero_window = self.snd_wnd == 0;
                if zero_window {
                    self.probes_out = self.probes_out.saturating_add(1);
                    if self.orphan_probe_limit_reached() {
                        self.fail(Error::TimedOut);
                        return;
                    }
                }
                // Giving up counts time without progress, as Linux does
                // (`tcp_retries2` becomes the time 15 backed-off minimum RTOs take): a path
                // that delivers, however slowly, resets the clock with every ACK.
                let gave_up = match self.cfg.user_timeout {
                    Some(limit) => now - start >= limit,
                    None if zero_window => past(self.probes_out, self.cfg.max_retries),
                    None => now - start >= self.give_up_after(),
                };
                if gave_up {
                    self.fail(Error::TimedOut);
                    return;
                }
                self.enter_timeout_recovery(now, first);
                tracing::debug!(local = %self.local, remote = %self.remote, retries = self.retries, rto = ?self.rtt.rto(), "retransmission timeout");
            }
            _ => {}
        }
    }

    /// Counts a zero-window probe of an orphan and says whether it is one too many: answers
    /// do not reset this count, as Linux's `tcp_probe_timer` counts an orphan's probes by
    /// its backoff.
    fn orphan_probe_limit_reached(&mut self) -> bool {
        if !self.orphaned {
            return false;
        }
        self.orphan_probes = self.orphan_probes.saturating_add(1);
        past(self.orphan_probes, self.cfg.orphan_retries)
    }

    fn on_persist_timeout(&mut self, now: Instant) {
        if !self.state.is_synchronized() || self.snd_nxt >= self.data_end() {
            return;
        }
        if self.snd_wnd == 0 {
            // RFC 9293 §3.8.6.1: probe the zero window, backing off, giving up only after as
            // many unanswered probes as data retransmissions.
            self.probes_out = self.probes_out.saturating_add(1);
            if past(self.probes_out, self.cfg.max_retries) || self.orphan_probe_limit_reached() {
                self.fail(Error::TimedOut);
                return;
            }
            self.probe_now = true;
            let backoff = 1u32 << self.probes_out.min(16);
            self.timers.persist =
                Some(now + self.rtt.rto().saturating_mul(backoff).min(self.cfg.max_rto));
        } else {
            // RFC 9293 §3.8.6.2.1 (d): the SWS-avoidance override timeout.
            self.force_send = true;
        }
    }

    fn on_keepalive_timeout(&mut self, now: Instant) {
        let Some(ka) = self.cfg.keepalive else {
            return;
        };
        if !matches!(self.state, State::Established | State::CloseWait) {
            return;
        }
        if self.snd_max != self.snd_una {
            // Data in flight: the retransmission timer watches the peer instead.
            self.timers.keepalive = Some(now + ka.idle);
            return;
        }
        if past(self.probes_out.saturating_add(1), ka.retries) {
            self.fail(Error::TimedOut);
            return;
        }
        self.probes_out = self.probes_out.saturating_add(1);
        self.probe_now = true;
        self.timers.keepalive = Some(now + ka.interval);
    }

    fn arm_keepalive(&mut self, now: Instant) {
        self.timers.keepalive = match self.cfg.keepalive {
            Some(ka) if self.state.is_synchronized() && self.state != State::TimeWait => {
                Some(now + ka.idle)
            }
            _ => None,
        };
    }

    /// How long data may wait for an acknowledgment before the connection gives up: the
    /// time the original transmission and `max_retries` retransmissions would take to time
    /// out if the RTO started at its minimum and doubled up to 120 s (Linux's
    /// `tcp_model_timeout` with `TCP_RTO_MAX`: 924.6 s with the defaults). It is a time
    /// budget, not a count: a smaller [`Config::max_rto`] means more attempts within it.
    fn give_up_after(&self) -> Duration {
        const MODEL_RTO_MAX: Duration = Duration::from_secs(120);
        let (base, cap) = (self.cfg.min_rto, MODEL_RTO_MAX.max(self.cfg.min_rto));
        let mut total = Duration::ZERO;
        let mut rto = base;
        for _ in 0..=self.cfg.max_retries.min(64) {
            total += rto;
            rto = (rto * 2).min(cap);
        }
        total
    }

    fn arm_retransmit(&mut self, now: Instant) {
        let mut at = now + self.rtt.rto();
        if let (Some(limit), Some(start)) = (self.cfg.user_timeout, self.unacked_since) {
            at = at.min(start + limit);
        }
        self.timers.retransmit = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::past;

    /// A limit is reached at its count plus one, and one beyond what a `u16` counter can
    /// count is still reached when the counter saturates.
    #[test]
    fn attempt_limits_are_always_reached() {
        assert!(!past(8, 8));
        assert!(past(9, 8));
        assert!(!past(0, 0) && past(1, 0));
        assert!(past(u16::MAX, 100_000));
        assert!(past(u16::MAX, u32::MAX));
        assert!(!past(u16::MAX - 1, u32::MAX));
    }
}
