//! Congestion control: the trait every algorithm implements, and the algorithms.
//!
//! The connection owns loss *detection* and the recovery bookkeeping (the SACK scoreboard,
//! RACK-TLP, PRR, the RFC 6582 `recover` point, retransmission timeouts, undo); an algorithm
//! decides how the congestion window, the slow-start threshold and, if it wants one, the
//! pacing rate react to what the connection reports: acknowledgments with their delivery-rate
//! samples, congestion events and timeouts. This is the split Linux makes between
//! `tcp_input.c` and its `tcp_cong_ops` modules.
//!
//! During fast recovery the connection sends what Proportional Rate Reduction (RFC 6937)
//! allows, bringing the flight down to [`CongestionControl::ssthresh`]; an algorithm that
//! paces itself through recovery (BBR) opts out with
//! [`CongestionControl::manages_recovery`] and its [`window`](CongestionControl::window)
//! is used as is.
//!
//! A new algorithm is one new file here plus a variant of [`Algorithm`], or a user type
//! plugged in with [`Algorithm::Custom`].

mod bbr;
mod cubic;
mod newreno;

pub use bbr::Bbr;
pub use cubic::Cubic;
pub use newreno::NewReno;

use super::Instant;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A delivery-rate sample (draft-cheng-iccrg-delivery-rate-estimation §3.3): how fast the
/// path delivered data between the transmission of the newest segment this acknowledgment
/// covers and now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateSample {
    /// Bytes delivered over [`interval`](Self::interval).
    pub delivered: u64,
    /// The sampling interval: the longer of the send and the acknowledgment phases.
    pub interval: Duration,
    /// `delivered / interval`, bytes per second (0 for an empty interval).
    pub delivery_rate: u64,
    /// The connection's delivered count when that segment was sent (`P.delivered`).
    pub prior_delivered: u64,
    /// Whether the sender was application-limited when that segment was sent: the sample
    /// may then underestimate the path and should only raise a bandwidth estimate.
    pub is_app_limited: bool,
    /// Bytes in flight when that segment was sent, itself included.
    pub tx_in_flight: u32,
    /// Bytes marked lost between that segment's transmission and now.
    pub lost: u64,
    /// Round-trip time of that segment (never a retransmission).
    pub rtt: Option<Duration>,
}

/// What an algorithm learns from one acknowledgment that delivered data (cumulatively or by
/// SACK), inside or outside recovery.
#[derive(Debug, Clone, Copy)]
pub struct AckEvent {
    /// Bytes newly acknowledged cumulatively.
    pub acked: u32,
    /// Bytes newly delivered: cumulatively acknowledged plus newly SACKed (RFC 6937
    /// `DeliveredData`).
    pub delivered: u32,
    /// Bytes newly marked lost while processing this acknowledgment.
    pub lost: u32,
    /// Bytes in flight before this acknowledgment.
    pub prior_in_flight: u32,
    /// Bytes in flight after it (RFC 6675 `pipe`).
    pub in_flight: u32,
    /// The sender's maximum segment size (payload bytes).
    pub mss: u32,
    /// The newest RTT measured from this acknowledgment, when it gave one.
    pub rtt: Option<Duration>,
    /// The smoothed RTT so far.
    pub srtt: Option<Duration>,
    /// The smallest RTT seen so far.
    pub min_rtt: Option<Duration>,
    /// The delivery-rate sample, when this acknowledgment produced one.
    pub rate: Option<RateSample>,
    /// Total bytes delivered over the connection's life (`C.delivered`).
    pub total_delivered: u64,
    /// Whether this acknowledgment starts a new packet-timed round trip: it covers data
    /// sent after the acknowledgment that started the previous round arrived.
    pub round_start: bool,
    /// Whether the connection is in fast recovery: PRR (RFC 6937) sets the window, unless
    /// the algorithm [manages recovery](CongestionControl::manages_recovery) itself.
    pub in_recovery: bool,
    /// Whether the connection is resending after a retransmission timeout (Linux's "Loss"
    /// state): the window slow-starts from what [`CongestionControl::on_timeout`] left.
    pub after_timeout: bool,
    /// Whether the flight filled the congestion window before this acknowledgment (RFC 7661
    /// §4.1, Linux `tcp_is_cwnd_limited`): a window that was not used should not grow.
    pub cwnd_limited: bool,
}

/// Why the window must come down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CongestionKind {
    /// Loss detected by SACK, RACK or duplicate acknowledgments: fast recovery begins
    /// (RFC 5681 §3.2, RFC 6675 §5).
    Loss,
    /// A tail loss probe repaired a loss (RFC 8985 §7.4.2): reduce once, no recovery.
    ProbeRepairedLoss,
}

/// A congestion event reported to the algorithm.
#[derive(Debug, Clone, Copy)]
pub struct CongestionEvent {
    /// What happened.
    pub kind: CongestionKind,
    /// Bytes in flight when it was detected (RFC 5681 FlightSize).
    pub in_flight: u32,
    /// The sender's maximum segment size.
    pub mss: u32,
}

/// A congestion-control algorithm driving one connection's congestion window.
///
/// Window sizes are in bytes. Implement it to experiment with your own algorithm and
/// plug it in with [`Algorithm::Custom`]:
///
/// ```
/// use rawtcp::proto::cc::{AckEvent, Algorithm, CongestionControl, CongestionEvent};
/// use rawtcp::proto::{Config, Instant};
/// use std::sync::Arc;
///
/// /// A fixed window of 20 segments that never reacts to anything.
/// #[derive(Debug)]
/// struct Fixed(u32);
/// impl CongestionControl for Fixed {
///     fn name(&self) -> &'static str { "fixed" }
///     fn window(&self) -> u32 { self.0 }
///     fn ssthresh(&self) -> u32 { self.0 }
///     fn on_ack(&mut self, _: Instant, _: &AckEvent) {}
///     fn on_congestion_event(&mut self, _: Instant, _: &CongestionEvent) {}
///     fn on_recovery_end(&mut self, _: Instant, _: u32) {}
///     fn on_timeout(&mut self, _: Instant, _: u32, _: u32, _: bool) {}
///     fn on_idle_restart(&mut self, _: u32) {}
///     fn undo(&mut self, _: u32, _: u32) {}
///     fn seed(&mut self, _: u32, _: u32) {}
/// }
/// let cfg = Config {
///     congestion: Algorithm::Custom(Arc::new(|mss| Box::new(Fixed(20 * mss)))),
///     ..Config::default()
/// };
/// assert_eq!(cfg.congestion.build(1000).window(), 20_000);
/// ```
pub trait CongestionControl: fmt::Debug + Send + Sync {
    /// A short name, as Linux's `tcp_congestion_control` would show it.
    fn name(&self) -> &'static str;
    /// The congestion window (cwnd), in bytes.
    fn window(&self) -> u32;
    /// The slow-start threshold (ssthresh), in bytes: during fast recovery, the flight PRR
    /// steers towards.
    fn ssthresh(&self) -> u32;
    /// An acknowledgment delivered data. Called in and out of recovery; algorithms that grow
    /// the window only outside recovery check [`AckEvent::in_recovery`].
    fn on_ack(&mut self, now: Instant, ack: &AckEvent);
    /// A congestion event: set ssthresh for the reduction (RFC 5681 §3.2 step 2, RFC 9438
    /// §4.6). For [`CongestionKind::Loss`] the connection then runs PRR down to ssthresh and
    /// calls [`on_recovery_end`](Self::on_recovery_end) when recovery ends; for
    /// [`CongestionKind::ProbeRepairedLoss`] it calls `on_recovery_end` at once.
    fn on_congestion_event(&mut self, now: Instant, event: &CongestionEvent);
    /// Recovery ended (RFC 6582 §3.2 step 6, RFC 6937 §3): the window becomes ssthresh.
    fn on_recovery_end(&mut self, now: Instant, mss: u32);
    /// The retransmission timer expired. `first` is true for the first expiry of a series
    /// (RFC 5681 §3.1 equation 4 applies then only).
    fn on_timeout(&mut self, now: Instant, in_flight: u32, mss: u32, first: bool);
    /// The connection sent nothing for longer than an RTO and is about to send again
    /// (RFC 5681 §4.1): the window restarts from at most the initial window.
    fn on_idle_restart(&mut self, mss: u32);
    /// The last loss response was spurious (RFC 3522 and RFC 3708 detection; RFC 4015
    /// response): go back to the window and threshold from before it (`cwnd`, `ssthresh`
    /// are the values the connection saved then).
    fn undo(&mut self, cwnd: u32, ssthresh: u32);
    /// Start from this window and threshold: the connection switched algorithm mid-way and
    /// the new one continues where the old one was (as Linux keeps `snd_cwnd`).
    fn seed(&mut self, cwnd: u32, ssthresh: u32);
    /// The rate to pace transmissions at, bytes per second, or `None` to send as the window
    /// allows.
    fn pacing_rate(&self) -> Option<u64> {
        None
    }
    /// Whether the algorithm bounds its own flight during recovery (like Linux modules with
    /// `cong_control`): the connection then skips PRR and uses [`window`](Self::window).
    fn manages_recovery(&self) -> bool {
        false
    }
    /// A short description of the algorithm's internal state for diagnostics (BBR's mode,
    /// CUBIC's W_max), shown by [`TcpInfo`](crate::proto::TcpInfo).
    fn state(&self) -> String {
        String::new()
    }
}

/// Which algorithm a connection uses. Parsed from the names Linux uses for
/// `TCP_CONGESTION`:
///
/// ```
/// use rawtcp::proto::cc::Algorithm;
/// let bbr: Algorithm = "bbr".parse().unwrap();
/// assert_eq!(bbr.build(1448).name(), "bbr");
/// assert_eq!(Algorithm::default().name(), "cubic");
/// assert!("vegas".parse::<Algorithm>().is_err());
/// ```
#[derive(Clone, Default)]
pub enum Algorithm {
    /// NewReno (RFC 5681, RFC 6582).
    NewReno,
    /// CUBIC (RFC 9438) with HyStart++ (RFC 9406). The default, as on Linux.
    #[default]
    Cubic,
    /// BBR (draft-ietf-ccwg-bbr, version 3): a model of the path's bandwidth and round-trip
    /// time, paced.
    Bbr,
    /// A user-supplied algorithm, made fresh for each connection from its MSS.
    Custom(Arc<dyn Fn(u32) -> Box<dyn CongestionControl> + Send + Sync>),
}

impl Algorithm {
    /// Builds the algorithm for a connection whose maximum segment size is `mss`.
    pub fn build(&self, mss: u32) -> Box<dyn CongestionControl> {
        match self {
            Algorithm::NewReno => Box::new(NewReno::new(mss)),
            Algorithm::Cubic => Box::new(Cubic::new(mss)),
            Algorithm::Bbr => Box::new(Bbr::new(mss)),
            Algorithm::Custom(make) => make(mss),
        }
    }

    /// The name, as `TCP_CONGESTION` spells it (`"custom"` for a user algorithm).
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::NewReno => "newreno",
            Algorithm::Cubic => "cubic",
            Algorithm::Bbr => "bbr",
            Algorithm::Custom(_) => "custom",
        }
    }

    /// The built-in algorithms.
    pub fn builtin() -> [Algorithm; 3] {
        [Algorithm::NewReno, Algorithm::Cubic, Algorithm::Bbr]
    }
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a congestion-control name that is not built in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlgorithm(pub String);

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown congestion control {:?} (known: newreno, reno, cubic, bbr)",
            self.0
        )
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Algorithm, UnknownAlgorithm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "newreno" | "reno" => Ok(Algorithm::NewReno),
            "cubic" => Ok(Algorithm::Cubic),
            "bbr" | "bbr3" | "bbrv3" => Ok(Algorithm::Bbr),
            _ => Err(UnknownAlgorithm(s.to_string())),
        }
    }
}

/// The initial window of RFC 6928 §2: min(10 × MSS, max(2 × MSS, 14600)).
pub fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14_600))
}

/// The smallest window any algorithm goes down to outside a timeout: two segments
/// (RFC 5681 §3.1 equation 4).
pub fn min_window(mss: u32) -> u32 {
    2 * mss
}
