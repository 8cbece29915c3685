//! Per-connection statistics, in the spirit of Linux's `TCP_INFO`.

use super::State;
use std::time::Duration;

/// A snapshot of one connection's state and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpInfo {
    /// The RFC 9293 state.
    pub state: State,
    /// Smoothed round-trip time (RFC 6298), once measured.
    pub srtt: Option<Duration>,
    /// Round-trip time variation.
    pub rttvar: Duration,
    /// Smallest round-trip time seen.
    pub min_rtt: Option<Duration>,
    /// Current retransmission timeout, backoff included.
    pub rto: Duration,
    /// Congestion window, bytes.
    pub cwnd: u32,
    /// Slow-start threshold, bytes (`u32::MAX` until the first loss).
    pub ssthresh: u32,
    /// Name of the congestion-control algorithm.
    pub congestion_control: &'static str,
    /// The algorithm's own state, for diagnostics (BBR's mode, CUBIC's W_max, ...).
    pub congestion_state: String,
    /// Where loss recovery stands, as Linux's `tcpi_ca_state` names it: `"open"`,
    /// `"recovery"` (fast recovery) or `"loss"` (after a retransmission timeout).
    pub ca_state: &'static str,
    /// The pacing rate in bytes per second, when the algorithm paces.
    pub pacing_rate: Option<u64>,
    /// The most recent delivery-rate sample, bytes per second
    /// (draft-cheng-iccrg-delivery-rate-estimation).
    pub delivery_rate: u64,
    /// Bytes delivered to the peer over the connection's life (acknowledged or SACKed).
    pub delivered: u64,
    /// Bytes believed in the network (RFC 6675 `pipe`): sent, neither acknowledged, SACKed
    /// nor deemed lost, plus retransmissions in flight.
    pub bytes_in_flight: u32,
    /// Sequence space sent and not cumulatively acknowledged (RFC 5681 FlightSize).
    pub unacked: u32,
    /// Bytes SACKed above the cumulative acknowledgment.
    pub sacked: u32,
    /// Bytes deemed lost and not yet acknowledged.
    pub lost: u32,
    /// The peer's receive window, bytes (scaled).
    pub send_window: u32,
    /// Our advertised receive window, bytes.
    pub recv_window: u32,
    /// Payload bytes per segment we send.
    pub send_mss: u32,
    /// Largest payload seen from the peer.
    pub recv_mss: u32,
    /// Segments retransmitted (timeouts, fast retransmits and probes of lost data).
    pub retransmissions: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// Retransmissions in fast recovery: segments deemed lost by RACK, SACK or duplicate
    /// ACKs rather than by a timeout.
    pub fast_retransmits: u64,
    /// Loss responses undone because timestamps (RFC 3522) or DSACKs (RFC 3708) showed
    /// the retransmissions were not needed.
    pub spurious_retransmits: u64,
    /// Fast-recovery episodes entered.
    pub recoveries: u64,
    /// Bytes RACK deemed lost (RFC 8985).
    pub rack_lost: u64,
    /// Tail loss probes sent (RFC 8985 §7).
    pub tlp_probes: u64,
    /// Tail loss probes that repaired a loss.
    pub tlp_recoveries: u64,
    /// DSACK blocks received (RFC 2883): the peer got something twice.
    pub dsacks_received: u64,
    /// DSACK blocks sent: we got something twice.
    pub dsacks_sent: u64,
    /// Times the peer discarded data it had SACKed (RFC 2018 §8).
    pub reneged: u64,
    /// Whether RACK has seen the path reorder segments.
    pub reordering_seen: bool,
    /// RACK's reordering-window multiplier, raised by DSACKs (RFC 8985 §6.2).
    pub reorder_window_mult: u32,
    /// Payload bytes retransmitted.
    pub bytes_retransmitted: u64,
    /// Application bytes sent for the first time.
    pub bytes_sent: u64,
    /// Application bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Application bytes received in order.
    pub bytes_received: u64,
    /// Segments sent, retransmissions included.
    pub segments_sent: u64,
    /// Segments received, including ones that were dropped.
    pub segments_received: u64,
    /// Challenge ACKs sent (RFC 5961 §3.2, §4.2, §5.2: answers to a RST in the window but
    /// not at RCV.NXT, a SYN on a synchronized connection, an unacceptable ACK).
    pub challenge_acks: u64,
    /// Challenge ACKs not sent because one had just been (RFC 5961 §7 rate limit).
    pub challenge_acks_skipped: u64,
    /// Segments whose data was dropped, wholly or in part, because the stack was short of
    /// buffer memory ([`Connection::set_memory_pressure`](super::Connection::set_memory_pressure)).
    pub pressure_drops: u64,
    /// Out-of-order segments dropped because the connection held
    /// [`Config::max_out_of_order`](super::Config::max_out_of_order) ranges already.
    pub out_of_order_drops: u64,
    /// Window scale shift we apply to the peer's window (RFC 7323).
    pub send_wscale: u8,
    /// Window scale shift we announced.
    pub recv_wscale: u8,
    /// Whether SACK was negotiated.
    pub sack: bool,
    /// Whether timestamps were negotiated.
    pub timestamps: bool,
    /// Whether partial checksums were negotiated (both SYNs carried
    /// [`TcpOptions::partial_checksums`](crate::wire::TcpOptions::partial_checksums)): the
    /// segments this side sends carry only the pseudo-header sum.
    pub partial_checksums: bool,
    /// The send buffer's size now: what was configured, or more where it grew because
    /// the windows outran it ([`Config::send_buffer_max`](super::Config::send_buffer_max);
    /// Linux's `sk_sndbuf`, `ss -m`'s `tb`).
    pub send_buffer: u32,
    /// The receive buffer's size now, the most the window offers: what was configured, or
    /// more where reads outran it on a long path
    /// ([`Config::recv_buffer_max`](super::Config::recv_buffer_max); Linux's `sk_rcvbuf`,
    /// `ss -m`'s `rb`).
    pub recv_buffer: u32,
    /// The round trip the receiving side measured, the least seen, to the millisecond:
    /// from the timestamps the peer's data echoes, or, without timestamps, from the time a
    /// newly offered window takes to fill, or the handshake's round trip where that is
    /// less (Linux's `tcpi_rcv_rtt`). The receive buffer's tuning runs on it. `None` until
    /// data measured one.
    pub recv_rtt: Option<Duration>,
}
