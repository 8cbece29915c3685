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
    /// Bytes sent but not yet acknowledged.
    pub bytes_in_flight: u32,
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
    /// Fast retransmits (three duplicate ACKs, or partial ACKs in recovery).
    pub fast_retransmits: u64,
    /// Loss responses undone because timestamps showed the original segment had arrived
    /// (RFC 3522).
    pub spurious_retransmits: u64,
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
    /// Window scale shift we apply to the peer's window (RFC 7323).
    pub send_wscale: u8,
    /// Window scale shift we announced.
    pub recv_wscale: u8,
    /// Whether SACK was negotiated.
    pub sack: bool,
    /// Whether timestamps were negotiated.
    pub timestamps: bool,
}
