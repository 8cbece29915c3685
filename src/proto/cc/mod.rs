//! Congestion control: the trait every algorithm implements, and the algorithms.
//!
//! The connection owns loss detection and recovery bookkeeping (duplicate ACKs, the
//! `recover` point of RFC 6582, retransmission timeouts); an algorithm only decides how the
//! congestion window and slow-start threshold react to those events. A new algorithm is one
//! new file here plus a variant of [`Algorithm`], or a user type plugged in with
//! [`Algorithm::Custom`].

mod newreno;

pub use newreno::NewReno;

use super::Instant;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What an algorithm learns about an acknowledgment of new data.
#[derive(Debug, Clone, Copy)]
pub struct AckEvent {
    /// Bytes newly acknowledged (cumulatively).
    pub acked: u32,
    /// Bytes in flight before this acknowledgment.
    pub prior_in_flight: u32,
    /// The sender's maximum segment size (payload bytes).
    pub mss: u32,
    /// An RTT measured from this acknowledgment, when it gave one.
    pub rtt: Option<Duration>,
    /// The smoothed RTT so far.
    pub srtt: Option<Duration>,
}

/// A congestion-control algorithm driving one connection's congestion window.
///
/// Window sizes are in bytes. Implement it to experiment with your own algorithm and
/// plug it in with [`Algorithm::Custom`].
pub trait CongestionControl: fmt::Debug + Send + Sync {
    /// A short name, as Linux's `tcp_congestion_control` would show it.
    fn name(&self) -> &'static str;
    /// The congestion window (cwnd), in bytes.
    fn window(&self) -> u32;
    /// The slow-start threshold (ssthresh), in bytes.
    fn ssthresh(&self) -> u32;
    /// New data was cumulatively acknowledged outside loss recovery (RFC 5681 §3.1).
    fn on_ack(&mut self, now: Instant, ack: &AckEvent);
    /// Loss was detected by duplicate acknowledgments: fast retransmit and enter fast recovery
    /// (RFC 5681 §3.2 steps 2-3, RFC 6582 §3.2 step 2).
    fn on_enter_recovery(&mut self, now: Instant, in_flight: u32, mss: u32);
    /// Another duplicate acknowledgment arrived during recovery (RFC 5681 §3.2 step 4).
    fn on_dup_ack_in_recovery(&mut self, mss: u32);
    /// A partial acknowledgment during recovery (RFC 6582 §3.2 step 5).
    fn on_partial_ack(&mut self, acked: u32, mss: u32);
    /// A full acknowledgment ended recovery (RFC 6582 §3.2 step 6).
    fn on_exit_recovery(&mut self, now: Instant, in_flight: u32, mss: u32);
    /// The retransmission timer expired. `first` is true for the first expiry of a series
    /// (RFC 5681 §3.1 equation 4 applies then only).
    fn on_timeout(&mut self, now: Instant, in_flight: u32, mss: u32, first: bool);
    /// The connection sent nothing for longer than an RTO and is about to send again
    /// (RFC 5681 §4.1): the window restarts from at most the initial window.
    fn on_idle_restart(&mut self, mss: u32);
    /// The last loss response was spurious (RFC 3522 Eifel detection; RFC 4015 response):
    /// go back to the window and threshold from before it.
    fn undo(&mut self, cwnd: u32, ssthresh: u32);
}

/// Which algorithm a connection uses.
#[derive(Clone, Default)]
pub enum Algorithm {
    /// NewReno (RFC 5681, RFC 6582). The default.
    #[default]
    NewReno,
    /// A user-supplied algorithm, made fresh for each connection from its MSS.
    Custom(Arc<dyn Fn(u32) -> Box<dyn CongestionControl> + Send + Sync>),
}

impl Algorithm {
    /// Builds the algorithm for a connection whose maximum segment size is `mss`.
    pub fn build(&self, mss: u32) -> Box<dyn CongestionControl> {
        match self {
            Algorithm::NewReno => Box::new(NewReno::new(mss)),
            Algorithm::Custom(make) => make(mss),
        }
    }
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Algorithm::NewReno => f.write_str("NewReno"),
            Algorithm::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// The initial window of RFC 6928 §2: min(10 × MSS, max(2 × MSS, 14600)).
pub fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14_600))
}
