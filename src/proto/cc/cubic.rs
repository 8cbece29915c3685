//! CUBIC (RFC 9438) with HyStart++ (RFC 9406) for the initial slow start, behaving like
//! Linux's `tcp_cubic` where the RFCs leave a choice.
//!
//! Units. The engine counts windows in bytes and gives the MSS with every event; RFC 9438
//! counts in segments (§4.1 allows bytes "factoring in the SMSS"). Here `cwnd`, `ssthresh`,
//! W_max, cwnd_prior and W_est are bytes, and the MSS enters only where the RFC's formulas
//! have segments: in C, whose unit is segments/s³ (so W_cubic(t) = C·MSS·(t − K)³ + W_max
//! bytes and K = ∛((W_max − cwnd_epoch) / (C·MSS))), and in the Reno-friendly increment.
//! The curve is evaluated in `f64`; every result is clamped into `MSS..=u32::MAX / 2`.
//!
//! The congestion-avoidance epoch (t_epoch, RFC 9438 §4.2) starts with the first
//! acknowledgment that grows the window in congestion avoidance after a reduction, a timeout,
//! the end of slow start or [`seed`](CongestionControl::seed). Time during which the window
//! was not in use does not count (§4.2, §5.8): an acknowledgment that finds the window not
//! filled, and the first one after an idle restart, move t_epoch forward by the time since
//! the previous acknowledgment — the shift Linux makes on `CA_EVENT_TX_START`.
//!
//! The connection runs recovery (PRR, RFC 6937): a congestion event only sets ssthresh and
//! W_max, and the window becomes ssthresh in
//! [`on_recovery_end`](CongestionControl::on_recovery_end).
//!
//! HyStart++ works on the packet-timed rounds the connection marks with
//! [`AckEvent::round_start`] and on the RTT samples of [`AckEvent::rtt`]; it runs in the
//! initial slow start only, while ssthresh is still "arbitrarily high" (RFC 9406 §4.3).

use super::{initial_window, min_window, AckEvent, CongestionControl, CongestionEvent};
use crate::proto::Instant;
use std::time::Duration;

/// β_cubic = 7/10, the multiplicative decrease factor (RFC 9438 §4.6: SHOULD be 0.7), kept
/// as a fraction so that window reductions are exact in integer bytes.
const BETA_CUBIC_NUM: u64 = 7;
const BETA_CUBIC_DEN: u64 = 10;
/// β_cubic as a number, for the formulas evaluated in floating point.
const BETA_CUBIC: f64 = BETA_CUBIC_NUM as f64 / BETA_CUBIC_DEN as f64;
/// C, in segments per second³ (RFC 9438 §5.1: SHOULD be 0.4).
const C: f64 = 0.4;
/// α_cubic = 3·(1 − β_cubic) / (1 + β_cubic) (RFC 9438 §4.3), about 0.53.
const ALPHA_CUBIC: f64 = 3.0 * (1.0 - BETA_CUBIC) / (1.0 + BETA_CUBIC);
/// The largest window this controller reaches, in bytes.
const MAX_WINDOW: u32 = u32::MAX / 2;

// HyStart++ constants, named and valued as RFC 9406 §4.3 recommends. L (the per-ACK growth
// cap of §4.2) is not used; see `slow_start`.
/// Lower bound of RttThresh.
const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
/// Upper bound of RttThresh.
const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
/// RttThresh is lastRoundMinRTT divided by this, then clamped.
const MIN_RTT_DIVISOR: u32 = 8;
/// RTT samples a round needs before its minimum is judged.
const N_RTT_SAMPLE: u32 = 8;
/// Conservative Slow Start grows the window this many times slower than slow start.
const CSS_GROWTH_DIVISOR: u32 = 4;
/// Rounds of Conservative Slow Start before congestion avoidance.
const CSS_ROUNDS: u32 = 5;

/// The CUBIC congestion controller (RFC 9438) with HyStart++ (RFC 9406).
///
/// ```
/// use rawtcp::proto::cc::{CongestionControl, CongestionEvent, CongestionKind, Cubic};
/// use rawtcp::proto::Instant;
/// let mut cc = Cubic::new(1000);
/// assert_eq!(cc.window(), 10_000); // RFC 6928 initial window
/// assert_eq!(cc.state(), "ss");
/// let loss = CongestionEvent { kind: CongestionKind::Loss, in_flight: 10_000, mss: 1000 };
/// cc.on_congestion_event(Instant::ZERO, &loss);
/// assert_eq!(cc.ssthresh(), 7_000); // β_cubic = 0.7 (RFC 9438 §4.6)
/// cc.on_recovery_end(Instant::ZERO, 1000);
/// assert_eq!(cc.window(), 7_000);
/// assert_eq!(cc.state(), "ca W_max=10seg"); // the curve starts with the next ACK
/// ```
#[derive(Debug, Clone)]
pub struct Cubic {
    cwnd: u32,
    ssthresh: u32,
    /// The latest MSS the connection reported.
    mss: u32,
    /// Growth not yet added to `cwnd`, less than one byte.
    carry: f64,
    /// W_max (RFC 9438 §4.1.2), bytes; 0 while undefined (before any congestion event, and
    /// after a timeout, the end of HyStart++ or `seed`, until the next epoch starts).
    w_max: u32,
    /// cwnd_prior (RFC 9438 §4.1.2): the window when ssthresh was last set, bytes.
    cwnd_prior: u32,
    /// The current congestion-avoidance epoch, once one has started.
    epoch: Option<Epoch>,
    hystart: HyStart,
    /// When the previous acknowledgment arrived.
    last_ack: Option<Instant>,
    /// The connection restarted after idling; the next acknowledgment's wait does not count.
    idle_restart: bool,
    /// A congestion event set ssthresh and the window has not come down to it yet.
    reducing: bool,
    /// The state before the last reduction, for [`undo`](CongestionControl::undo).
    saved: Option<Saved>,
}

/// One congestion-avoidance stage (RFC 9438 §4.2).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Epoch {
    /// t_epoch, moved forward by the time the window was not in use.
    start: Instant,
    /// K, seconds.
    k: f64,
    /// W_est (RFC 9438 §4.3), bytes.
    w_est: f64,
}

/// What a reduction changes beyond cwnd and ssthresh (RFC 9438 §4.9: cwnd_prior, W_max, K,
/// t_epoch and W_est; K, t_epoch and W_est live in the epoch).
#[derive(Debug, Clone, Copy)]
struct Saved {
    w_max: u32,
    cwnd_prior: u32,
    epoch: Option<Epoch>,
    hystart: HyStart,
}

/// HyStart++ state (RFC 9406 §4.2), with the RFC's variable names. `None` stands for the
/// RFC's "infinity".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HyStart {
    last_round_min_rtt: Option<Duration>,
    current_round_min_rtt: Option<Duration>,
    rtt_sample_count: u32,
    /// Set while in Conservative Slow Start (CSS).
    css_baseline_min_rtt: Option<Duration>,
    /// Which CSS round this is, from 1 (the round in which CSS began) to `CSS_ROUNDS`.
    css_round: u32,
}

impl HyStart {
    fn in_css(&self) -> bool {
        self.css_baseline_min_rtt.is_some()
    }

    /// Takes one acknowledgment; returns true when CSS has lasted `CSS_ROUNDS` rounds and
    /// slow start must end.
    fn on_ack(&mut self, round_start: bool, rtt: Option<Duration>) -> bool {
        if round_start {
            if self.in_css() {
                // RFC 9406 §4.2: "If CSS_ROUNDS rounds are complete, enter congestion
                // avoidance". The round CSS began in counts as the first.
                if self.css_round >= CSS_ROUNDS {
                    return true;
                }
                self.css_round += 1;
            }
            // RFC 9406 §4.2: at the start of each round, in slow start and in CSS.
            self.last_round_min_rtt = self.current_round_min_rtt;
            self.current_round_min_rtt = None;
            self.rtt_sample_count = 0;
        }
        if let Some(rtt) = rtt {
            // RFC 9406 §4.2: the minimum RTT of the round, over every sample.
            self.current_round_min_rtt =
                Some(self.current_round_min_rtt.map_or(rtt, |m| m.min(rtt)));
            self.rtt_sample_count = self.rtt_sample_count.saturating_add(1);
        }
        // RFC 9406 §4.2: judge a round only once it has N_RTT_SAMPLE samples. The check runs
        // on every later acknowledgment too, but currentRoundMinRTT only falls during a round,
        // so the exit decision is in effect made on the minimum of the first eight samples.
        let Some(current) = self.current_round_min_rtt else {
            return false;
        };
        if self.rtt_sample_count < N_RTT_SAMPLE {
            return false;
        }
        match self.css_baseline_min_rtt {
            Some(baseline) => {
                // RFC 9406 §4.2: an RTT below the baseline means the exit was spurious:
                // resume slow start, HyStart++ included.
                if current < baseline {
                    self.css_baseline_min_rtt = None;
                    self.css_round = 0;
                }
            }
            None => {
                if let Some(last) = self.last_round_min_rtt {
                    // RFC 9406 §4.2: RttThresh = max(MIN_RTT_THRESH, min(lastRoundMinRTT /
                    // MIN_RTT_DIVISOR, MAX_RTT_THRESH)); a delay increase of at least that
                    // much leaves slow start for CSS.
                    let rtt_thresh = (last / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH, MAX_RTT_THRESH);
                    if current >= last.saturating_add(rtt_thresh) {
                        self.css_baseline_min_rtt = Some(current);
                        self.css_round = 1;
                    }
                }
            }
        }
        false
    }
}

/// The MSS as used in arithmetic: TCP's MSS option has 16 bits, and a zero would divide.
fn sane_mss(mss: u32) -> u32 {
    mss.clamp(1, 65_535)
}

impl Cubic {
    /// A controller for a connection whose MSS is `mss`, starting in slow start from the
    /// RFC 6928 initial window.
    pub fn new(mss: u32) -> Cubic {
        let mss = sane_mss(mss);
        Cubic {
            cwnd: initial_window(mss),
            ssthresh: u32::MAX,
            mss,
            carry: 0.0,
            w_max: 0,
            cwnd_prior: 0,
            epoch: None,
            hystart: HyStart::default(),
            last_ack: None,
            idle_restart: false,
            reducing: false,
            saved: None,
        }
    }

    /// W_cubic(t) (RFC 9438 §4.2, Figure 1) for the current epoch, in bytes.
    fn w_cubic(&self, epoch: &Epoch, t: f64) -> f64 {
        let d = t - epoch.k;
        C * f64::from(self.mss) * d * d * d + f64::from(self.w_max)
    }

    /// Adds `bytes` (fractions included) to the window.
    fn grow(&mut self, bytes: f64) {
        if bytes.is_nan() || bytes <= 0.0 {
            return;
        }
        self.carry += bytes;
        let whole = self.carry.floor();
        self.carry -= whole;
        let next = (f64::from(self.cwnd) + whole).min(f64::from(MAX_WINDOW));
        self.cwnd = next as u32;
    }

    /// Keeps the epoch's clock to the time the window was in use (RFC 9438 §4.2: "The
    /// elapsed time t in Figure 1 MUST NOT include periods during which cwnd has not been
    /// updated due to application-limited behavior", §5.8). The wait before an
    /// acknowledgment that found the window not filled, or before the first acknowledgment
    /// after an idle restart, moves t_epoch forward (as Linux does after idle, on
    /// `CA_EVENT_TX_START`).
    fn tick(&mut self, now: Instant, cwnd_limited: bool) {
        if let (Some(epoch), Some(last)) = (self.epoch.as_mut(), self.last_ack) {
            if self.idle_restart || !cwnd_limited {
                epoch.start = (epoch.start + now.saturating_since(last)).min(now);
            }
        }
        self.idle_restart = false;
        self.last_ack = Some(now);
    }

    /// Slow start (RFC 5681 §3.1 with byte counting, RFC 9406 §4.2 in CSS); returns the
    /// acknowledged bytes left over once the window reached ssthresh.
    fn slow_start(&mut self, acked: u32) -> u32 {
        if self.ssthresh == u32::MAX && self.hystart.in_css() {
            // RFC 9406 §4.2: in CSS, cwnd += min(N, L·SMSS) / CSS_GROWTH_DIVISOR.
            self.grow(f64::from(acked) / f64::from(CSS_GROWTH_DIVISOR));
            return 0;
        }
        // Every acknowledged byte counts, with no per-ACK cap: RFC 3465 §2.2 caps one ACK at
        // L = 2·SMSS and RFC 9406 at L = 8·SMSS when not paced, but the runtime drains
        // arrivals in batches and acknowledges a batch with one ACK, so a cap would starve
        // growth. Linux counts every byte too. Growth stops at ssthresh (RFC 5681 §3.1) and
        // the rest goes to congestion avoidance, as Linux's `tcp_slow_start` does.
        let add = acked.min(self.ssthresh - self.cwnd);
        self.cwnd = self.cwnd.saturating_add(add).min(MAX_WINDOW);
        acked - add
    }

    /// Starts a congestion-avoidance epoch at `now` with cwnd_epoch = cwnd.
    fn start_epoch(&mut self, now: Instant) -> Epoch {
        let cwnd = self.cwnd;
        let k = if self.w_max > cwnd {
            // RFC 9438 §4.2, Figure 2: K = ∛((W_max − cwnd_epoch) / C), in segments.
            (f64::from(self.w_max - cwnd) / f64::from(self.mss) / C).cbrt()
        } else {
            // W_max undefined: after HyStart++ (RFC 9438 §4.10) and after a timeout (§4.8),
            // K = 0 and W_max is the window at the start of the stage. A W_max below the
            // window (after `seed` or an undo) is treated the same way, as Linux restarts
            // its curve from the current window then.
            self.w_max = cwnd;
            0.0
        };
        if self.cwnd_prior == 0 {
            self.cwnd_prior = cwnd;
        }
        // RFC 9438 §4.3: W_est = cwnd_epoch at the start of the stage (§4.8 after a timeout).
        Epoch {
            start: now,
            k,
            w_est: f64::from(cwnd),
        }
    }

    /// Congestion avoidance (RFC 9438 §4.2–§4.5) for `acked` newly acknowledged bytes.
    fn congestion_avoidance(&mut self, now: Instant, acked: u32, rtt: Duration) {
        let mut epoch = match self.epoch {
            Some(epoch) => epoch,
            None => self.start_epoch(now),
        };
        let cwnd = f64::from(self.cwnd);
        let acked = f64::from(acked);
        // RFC 9438 §4.3, Figure 4: W_est += α_cubic · segments_acked / cwnd, in segments;
        // in bytes, W_est += α_cubic · acked · MSS / cwnd. α_cubic becomes 1 once W_est has
        // reached cwnd_prior.
        let alpha = if epoch.w_est >= f64::from(self.cwnd_prior) {
            1.0
        } else {
            ALPHA_CUBIC
        };
        epoch.w_est =
            (epoch.w_est + alpha * acked * f64::from(self.mss) / cwnd).min(f64::from(MAX_WINDOW));
        let t = now.saturating_since(epoch.start).as_secs_f64();
        if self.w_cubic(&epoch, t) < epoch.w_est {
            // RFC 9438 §4.3: W_cubic(t) < W_est is the Reno-friendly region, where cwnd
            // SHOULD be set to W_est (never lowered: cwnd may be ahead of W_est after
            // following the curve).
            self.carry = 0.0;
            self.cwnd = self.cwnd.max(epoch.w_est as u32).min(MAX_WINDOW);
        } else {
            // RFC 9438 §4.2: target = W_cubic(t + RTT) within [cwnd, 1.5·cwnd], RTT being the
            // smoothed round-trip time; §4.4 (concave, cwnd < W_max) and §4.5 (convex)
            // both add (target − cwnd) / cwnd.
            let target = self
                .w_cubic(&epoch, t + rtt.as_secs_f64())
                .max(cwnd)
                .min(1.5 * cwnd);
            // The RFC adds that "for each received new ACK", written for one ACK per
            // segment; like Linux, and like Figure 4's segments_acked, it is applied here
            // per acknowledged segment (per byte, scaled), so that delayed and batched
            // ACKs grow the window as fast as one ACK per segment would. The bytes are
            // AckEvent::acked, those cumulatively acknowledged — the RFC's "new ACK" counts
            // cumulatively acknowledged data — rather than `delivered`: SACKed bytes are
            // counted once, when the cumulative acknowledgment passes them.
            self.grow((target - cwnd) / cwnd * acked);
        }
        self.epoch = Some(epoch);
    }

    /// Sets ssthresh, cwnd_prior and W_max for a congestion event or a timeout (RFC 9438
    /// §4.6, §4.7, §4.8) and ends the epoch.
    fn reduce(&mut self, mss: u32) {
        let cwnd = self.cwnd;
        // RFC 9438 §4.7, fast convergence (SHOULD be implemented; Linux enables it): a
        // window below the previous W_max means the flow's share shrank, so release more:
        // W_max = cwnd · (1 + β_cubic) / 2.
        self.w_max = if cwnd < self.w_max {
            (u64::from(cwnd) * (BETA_CUBIC_DEN + BETA_CUBIC_NUM) / (2 * BETA_CUBIC_DEN)) as u32
        } else {
            cwnd
        };
        // RFC 9438 §4.6: cwnd_prior = cwnd; ssthresh = max(cwnd · β_cubic, 2 segments).
        // The RFC writes flight_size; like Linux we use cwnd, which §4.6 allows when "other
        // measures" keep cwnd from growing while the flight is smaller: the window only grows
        // on AckEvent::cwnd_limited acknowledgments (RFC 7661), so an application-limited
        // flow's cwnd stays a window that was actually used.
        self.cwnd_prior = cwnd;
        self.ssthresh =
            ((u64::from(cwnd) * BETA_CUBIC_NUM / BETA_CUBIC_DEN) as u32).max(min_window(mss));
        self.epoch = None;
        self.carry = 0.0;
        // A reduction ends the initial slow start, and HyStart++ with it (RFC 9406 §4.2).
        self.hystart = HyStart::default();
    }

    fn save(&self) -> Saved {
        Saved {
            w_max: self.w_max,
            cwnd_prior: self.cwnd_prior,
            epoch: self.epoch,
            hystart: self.hystart,
        }
    }

    /// The window comes down to ssthresh at the end of recovery (RFC 6937 §3).
    fn finish_reduction(&mut self, mss: u32) {
        if self.reducing {
            self.cwnd = self.ssthresh.max(min_window(mss)).min(MAX_WINDOW);
            self.carry = 0.0;
            self.reducing = false;
        }
    }

    /// Window sizes in segments, rounded, for diagnostics.
    fn segments(&self, bytes: u32) -> u32 {
        (bytes + self.mss / 2) / self.mss
    }
}

impl CongestionControl for Cubic {
    fn name(&self) -> &'static str {
        "cubic"
    }

    fn window(&self) -> u32 {
        self.cwnd
    }

    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    fn on_ack(&mut self, now: Instant, ack: &AckEvent) {
        self.mss = sane_mss(ack.mss);
        self.tick(now, ack.cwnd_limited);
        // No growth in recovery: PRR (RFC 6937 §3) sets the flight there.
        if ack.in_recovery {
            return;
        }
        // The contract ends a reduction with on_recovery_end; if an acknowledgment outside
        // recovery comes first, finish it now so the window cannot stay unreduced.
        self.finish_reduction(self.mss);
        // HyStart++ in the initial slow start only (RFC 9406 §4.3: "when the ssthresh is at
        // its initial value of arbitrarily high"). It follows rounds and RTT samples whether
        // or not the window was filled: the samples are valid either way.
        if self.ssthresh == u32::MAX && self.hystart.on_ack(ack.round_start, ack.rtt) {
            // RFC 9406 §4.2: after CSS_ROUNDS rounds of CSS, ssthresh = cwnd. RFC 9438
            // §4.10: no congestion event, so cwnd_prior = cwnd and the first stage has
            // W_max = cwnd_epoch and K = 0 (Linux likewise starts its curve at the current
            // window with no previous maximum): W_max is left undefined until then.
            self.ssthresh = self.cwnd;
            self.cwnd_prior = self.cwnd;
            self.w_max = 0;
            self.epoch = None;
            self.hystart = HyStart::default();
        }
        // RFC 9438 §5.8 / RFC 7661 §4.1: a window that was not filled does not grow; nor does
        // anything without newly acknowledged data.
        if !ack.cwnd_limited || ack.acked == 0 {
            return;
        }
        let mut acked = ack.acked;
        if self.cwnd < self.ssthresh {
            acked = self.slow_start(acked);
        }
        if acked > 0 && self.cwnd >= self.ssthresh {
            let rtt = ack.srtt.or(ack.rtt).or(ack.min_rtt).unwrap_or_default();
            self.congestion_avoidance(now, acked, rtt);
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, event: &CongestionEvent) {
        let mss = sane_mss(event.mss);
        self.mss = mss;
        // One reduction per recovery: the window has not come down yet, so a second
        // computation would give the same ssthresh and only disturb W_max.
        if self.reducing {
            return;
        }
        // RFC 9438 §4.9: keep what undo needs.
        self.saved = Some(self.save());
        // RFC 9438 §4.6, §4.7. The window itself is not reduced here: the connection brings
        // the flight down to ssthresh with PRR and calls on_recovery_end.
        self.reduce(mss);
        self.reducing = true;
    }

    fn on_recovery_end(&mut self, _now: Instant, mss: u32) {
        self.mss = sane_mss(mss);
        // RFC 6937 §3 / RFC 9438 §4.6: cwnd = ssthresh, at least two segments. The next
        // acknowledgment in congestion avoidance starts the epoch (t_epoch) from this window.
        // Outside a reduction (after a timeout, whose window restarts from one segment in
        // slow start) there is nothing to apply.
        self.finish_reduction(self.mss);
    }

    fn on_timeout(&mut self, _now: Instant, _in_flight: u32, mss: u32, first: bool) {
        let mss = sane_mss(mss);
        self.mss = mss;
        // RFC 9438 §4.8: ssthresh as for a congestion event (§4.6), for the first expiry of a
        // series only (RFC 5681 §3.1). A timeout during fast recovery keeps the reduction
        // already made from the same window, and the state saved before it.
        if (first || self.ssthresh == u32::MAX) && !self.reducing {
            self.saved = Some(self.save());
            self.reduce(mss);
        }
        self.reducing = false;
        // RFC 9438 §4.8: the first congestion-avoidance stage after a timeout has K = 0 and
        // W_max = cwnd_epoch (Linux too forgets its maximum on entering loss state).
        self.w_max = 0;
        self.epoch = None;
        self.carry = 0.0;
        self.hystart = HyStart::default();
        // RFC 5681 §3.1: the loss window is one segment; slow start follows.
        self.cwnd = mss;
    }

    fn on_idle_restart(&mut self, mss: u32) {
        let mss = sane_mss(mss);
        self.mss = mss;
        // RFC 5681 §4.1: restart from at most the initial window.
        self.cwnd = self.cwnd.min(initial_window(mss)).max(mss);
        // RFC 9438 §5.8: the idle time must not count in t; `tick` skips it at the next ACK.
        self.idle_restart = true;
    }

    fn undo(&mut self, cwnd: u32, ssthresh: u32) {
        // RFC 9438 §4.9: restore only if the window is still below cwnd_prior (or still
        // coming down to ssthresh); a detection that comes after the window regrew keeps the
        // current values.
        let reduced = self.reducing || self.cwnd < self.cwnd_prior;
        self.reducing = false;
        let saved = self.saved.take();
        if !reduced {
            return;
        }
        self.cwnd = self.cwnd.max(cwnd).clamp(self.mss, MAX_WINDOW);
        self.ssthresh = ssthresh;
        self.carry = 0.0;
        // RFC 9438 §4.9: W_max, cwnd_prior, K, t_epoch and W_est as they were; HyStart++ too
        // when the reduction interrupted the initial slow start.
        if let Some(saved) = saved {
            self.w_max = saved.w_max;
            self.cwnd_prior = saved.cwnd_prior;
            self.epoch = saved.epoch;
            self.hystart = saved.hystart;
        } else {
            self.epoch = None;
        }
    }

    fn seed(&mut self, cwnd: u32, ssthresh: u32) {
        self.cwnd = cwnd.clamp(self.mss, MAX_WINDOW);
        self.ssthresh = ssthresh;
        // No history: the next stage starts its curve at the window (K = 0), and this
        // window counts as the one at which ssthresh was set.
        self.w_max = 0;
        self.cwnd_prior = self.cwnd;
        self.epoch = None;
        self.carry = 0.0;
        self.hystart = HyStart::default();
        self.idle_restart = false;
        self.reducing = false;
        self.saved = None;
    }

    /// `"ss"` in slow start, `"css round 2/5"` in HyStart++'s Conservative Slow Start,
    /// `"recovery W_max=…seg"` while the window comes down, `"ca W_max=123seg K=1.20s"` in
    /// congestion avoidance (`"ca W_max=…seg"` until the epoch's first acknowledgment; W_max in
    /// segments of the current MSS).
    fn state(&self) -> String {
        if self.reducing {
            return format!("recovery W_max={}seg", self.segments(self.w_max));
        }
        if self.cwnd < self.ssthresh {
            return match self.hystart.css_baseline_min_rtt {
                Some(_) if self.ssthresh == u32::MAX => {
                    format!("css round {}/{}", self.hystart.css_round, CSS_ROUNDS)
                }
                _ => "ss".to_string(),
            };
        }
        match (self.epoch, self.w_max) {
            (Some(epoch), w_max) => {
                format!("ca W_max={}seg K={:.2}s", self.segments(w_max), epoch.k)
            }
            (None, 0) => "ca".to_string(),
            (None, w_max) => format!("ca W_max={}seg", self.segments(w_max)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::CongestionKind;
    use super::*;

    const MSS: u32 = 1000;

    /// An acknowledgment of `acked` bytes of a fully used window, with an RTT sample.
    fn ack(acked: u32, rtt: Duration) -> AckEvent {
        AckEvent {
            acked,
            delivered: acked,
            lost: 0,
            prior_in_flight: u32::MAX / 2,
            in_flight: u32::MAX / 2,
            mss: MSS,
            rtt: Some(rtt),
            srtt: Some(rtt),
            min_rtt: Some(rtt),
            rate: None,
            total_delivered: 0,
            round_start: false,
            in_recovery: false,
            after_timeout: false,
            cwnd_limited: true,
        }
    }

    fn loss(mss: u32) -> CongestionEvent {
        CongestionEvent {
            kind: CongestionKind::Loss,
            in_flight: 0,
            mss,
        }
    }

    /// A controller in congestion avoidance just after a loss at `w_max` segments: the
    /// window is β_cubic·W_max and the epoch starts with the next acknowledgment.
    fn after_loss_at(w_max: u32) -> Cubic {
        let mut cc = Cubic::new(MSS);
        cc.seed(w_max * MSS, u32::MAX);
        cc.on_congestion_event(Instant::ZERO, &loss(MSS));
        cc.on_recovery_end(Instant::ZERO, MSS);
        cc
    }

    /// One round trip of a window-limited flow with a constant RTT: the window's worth of
    /// data is acknowledged one segment at a time, evenly over the RTT.
    fn round(cc: &mut Cubic, now: &mut Instant, rtt: Duration) {
        let window = cc.window();
        let acks = window.div_ceil(MSS);
        let step = rtt / acks;
        let mut left = window;
        for i in 0..acks {
            *now += step;
            let bytes = left.min(MSS);
            left -= bytes;
            let ev = AckEvent {
                round_start: i == 0,
                ..ack(bytes, rtt)
            };
            cc.on_ack(*now, &ev);
        }
    }

    /// One slow-start round: `acks` acknowledgments, each of 1/`acks` of the window, all
    /// with the RTT sample `rtt`.
    fn ss_round(cc: &mut Cubic, now: &mut Instant, rtt: Duration, acks: u32) {
        let each = cc.window() / acks;
        for i in 0..acks {
            *now += rtt / acks;
            let ev = AckEvent {
                round_start: i == 0,
                ..ack(each, rtt)
            };
            cc.on_ack(*now, &ev);
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// RFC 9438 §4.2 Figures 1 and 2 against hand-computed values: W_max = 100 segments and
    /// cwnd_epoch = 70 give K = ∛(30 / 0.4) = ∛75 = 4.2172 s, W(0) = 70, W(K) = 100,
    /// W(2) = 100 − 0.4·2.2172³ = 95.640 (concave), W(6) = 100 + 0.4·1.7828³ = 102.267
    /// (convex).
    #[test]
    fn k_and_w_cubic_match_rfc_9438() {
        let mut cc = after_loss_at(100);
        assert_eq!((cc.window(), cc.ssthresh()), (70_000, 70_000));
        cc.on_ack(Instant::from_secs(1), &ack(MSS, ms(100)));
        let epoch = cc
            .epoch
            .expect("the first ACK in congestion avoidance starts the epoch");
        assert_eq!(epoch.start, Instant::from_secs(1));
        assert!((epoch.k - 4.2172).abs() < 1e-4, "K = {}", epoch.k);
        let segs = |t: f64| cc.w_cubic(&epoch, t) / f64::from(MSS);
        assert!((segs(0.0) - 70.0).abs() < 1e-9);
        assert!((segs(epoch.k) - 100.0).abs() < 1e-9);
        assert!((segs(2.0) - 95.640).abs() < 1e-3, "{}", segs(2.0));
        assert!((segs(6.0) - 102.267).abs() < 1e-3, "{}", segs(6.0));
        assert_eq!(cc.state(), "ca W_max=100seg K=4.22s");
    }

    /// RFC 9438 §4.2, §4.4, §4.5: after a loss at 100 segments, a window-limited flow with a
    /// 200 ms RTT follows W_cubic(t) — concave up to W_max, a plateau around t = K, convex
    /// after — within half a segment. (At this RTT the Reno-friendly estimate stays below the
    /// curve: W_est(8 s) ≈ 70 + 0.53·40 = 91 segments.)
    #[test]
    fn congestion_avoidance_follows_the_cubic_curve() {
        let rtt = ms(200);
        let mut cc = after_loss_at(100);
        let mut now = Instant::from_secs(10);
        let mut samples = Vec::new();
        // The first acknowledgment (a quarter way into the first round) starts the epoch.
        let start = now + rtt / 70;
        while now < start + Duration::from_secs(10) {
            let t = now.saturating_since(start).as_secs_f64();
            samples.push((t, f64::from(cc.window()) / f64::from(MSS)));
            round(&mut cc, &mut now, rtt);
        }
        assert_eq!(
            cc.epoch.unwrap().start,
            start,
            "cwnd-limited: no time skipped"
        );
        let k = (30.0f64 / 0.4).cbrt();
        let w = |t: f64| 0.4 * (t - k).powi(3) + 100.0;
        let at = |t: f64| {
            samples
                .iter()
                .copied()
                .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
                .unwrap()
        };
        for t in [1.0, 2.0, 3.0, k, 5.0, 6.0, 7.0, 8.0, 9.0] {
            let (ts, cwnd) = at(t);
            assert!(
                (cwnd - w(ts)).abs() <= 0.5,
                "t = {ts}: cwnd {cwnd} vs W_cubic {}",
                w(ts)
            );
        }
        // Concave: growth slows towards W_max; plateau: little growth around K; convex:
        // growth speeds up again.
        let grown = |a: f64, b: f64| at(b).1 - at(a).1;
        assert!(grown(0.0, 1.0) > grown(1.0, 2.0) && grown(1.0, 2.0) > grown(2.0, 3.0));
        assert!(grown(k - 0.6, k + 0.6) <= 1.0);
        assert!(grown(6.0, 7.0) < grown(7.0, 8.0) && grown(7.0, 8.0) < grown(8.0, 9.0));
        assert!(at(3.0).1 < 100.0 && at(8.0).1 > 115.0);
    }

    /// RFC 9438 §4.3: with a small window and a short RTT (W_max = 10 segments, 10 ms) Reno
    /// grows faster than the curve, and CUBIC follows the AIMD estimate W_est: α_cubic per
    /// RTT until W_est reaches cwnd_prior, then one segment per RTT.
    #[test]
    fn reno_friendly_region_dominates_small_windows_and_short_rtts() {
        let rtt = ms(10);
        let mut cc = after_loss_at(10);
        let mut now = Instant::ZERO;
        let mut aimd = 7.0f64;
        for _ in 0..100 {
            round(&mut cc, &mut now, rtt);
            aimd += if aimd >= 10.0 { 1.0 } else { ALPHA_CUBIC };
        }
        let cwnd = f64::from(cc.window()) / f64::from(MSS);
        assert!((cwnd - aimd).abs() <= 1.5, "cwnd {cwnd} vs AIMD {aimd}");
        // The curve alone would still be below W_max = 10 after one second (K = 1.96 s).
        let epoch = cc.epoch.unwrap();
        let t = now.saturating_since(epoch.start).as_secs_f64();
        assert!(cc.w_cubic(&epoch, t + 0.01) < f64::from(10 * MSS));
        assert!(cwnd > 100.0);
    }

    /// RFC 9438 §4.6 and §4.7: ssthresh = 0.7·cwnd and W_max = cwnd; a second loss below
    /// W_max lowers W_max to cwnd·(1 + β)/2 (fast convergence); ssthresh never goes below two
    /// segments; the window itself comes down only when recovery ends.
    #[test]
    fn multiplicative_decrease_with_and_without_fast_convergence() {
        let mut cc = Cubic::new(MSS);
        cc.seed(100_000, u32::MAX);
        cc.on_congestion_event(Instant::ZERO, &loss(MSS));
        // PRR brings the flight down; the window is unchanged until recovery ends.
        assert_eq!((cc.window(), cc.ssthresh()), (100_000, 70_000));
        assert_eq!((cc.w_max, cc.cwnd_prior), (100_000, 100_000));
        assert_eq!(cc.state(), "recovery W_max=100seg");
        // A second event in the same recovery changes nothing.
        cc.on_congestion_event(Instant::ZERO, &loss(MSS));
        assert_eq!((cc.ssthresh(), cc.w_max), (70_000, 100_000));
        cc.on_recovery_end(Instant::ZERO, MSS);
        assert_eq!(cc.window(), 70_000);
        // As if congestion avoidance had grown the window back to 80 segments, below
        // W_max = 100, and a loss came: fast convergence.
        cc.cwnd = 80_000;
        cc.on_congestion_event(Instant::ZERO, &loss(MSS));
        assert_eq!(
            (cc.ssthresh(), cc.w_max, cc.cwnd_prior),
            (56_000, 68_000, 80_000)
        );
        cc.on_recovery_end(Instant::ZERO, MSS);
        // K = ∛((68 − 56) / 0.4) = ∛30 = 3.107 s.
        cc.on_ack(Instant::from_secs(1), &ack(MSS, ms(50)));
        assert!((cc.epoch.unwrap().k - 3.1072).abs() < 1e-4);
        // Above the old W_max (68 segments) there is no fast convergence.
        cc.cwnd = 90_000;
        cc.on_congestion_event(Instant::ZERO, &loss(MSS));
        assert_eq!((cc.ssthresh(), cc.w_max), (63_000, 90_000));
        cc.on_recovery_end(Instant::ZERO, MSS);
        // A probe-repaired loss reduces the same way, once.
        let probe = CongestionEvent {
            kind: CongestionKind::ProbeRepairedLoss,
            ..loss(MSS)
        };
        cc.on_congestion_event(Instant::ZERO, &probe);
        cc.on_recovery_end(Instant::ZERO, MSS);
        assert_eq!((cc.window(), cc.ssthresh()), (44_100, 44_100));
        // Two segments at least (RFC 9438 §4.6).
        cc.seed(2_500, 10_000);
        cc.on_congestion_event(Instant::ZERO, &loss(MSS));
        cc.on_recovery_end(Instant::ZERO, MSS);
        assert_eq!((cc.window(), cc.ssthresh()), (2_000, 2_000));
    }

    /// RFC 9438 §4.8: a timeout sets ssthresh like a congestion event, the window restarts
    /// at one segment in slow start, and the first congestion-avoidance stage after it has
    /// K = 0 and W_max = cwnd_epoch. Later expiries of the series keep ssthresh.
    #[test]
    fn timeout_restarts_slow_start() {
        let mut cc = Cubic::new(MSS);
        cc.seed(100_000, u32::MAX);
        cc.on_timeout(Instant::ZERO, 50_000, MSS, true);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 70_000));
        assert_eq!(cc.state(), "ss");
        cc.on_timeout(Instant::ZERO, 50_000, MSS, false);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 70_000));
        let mut now = Instant::from_secs(1);
        for _ in 0..69 {
            now += ms(1);
            cc.on_ack(now, &ack(MSS, ms(50)));
        }
        assert_eq!(cc.window(), 70_000);
        now += ms(1);
        cc.on_ack(now, &ack(MSS, ms(50)));
        let epoch = cc.epoch.unwrap();
        assert_eq!((epoch.k, cc.w_max, epoch.start), (0.0, 70_000, now));
        assert!(cc.window() > 70_000);
        // A timeout during fast recovery keeps the reduction made from the same window.
        let mut cc = Cubic::new(MSS);
        cc.seed(100_000, u32::MAX);
        cc.on_congestion_event(Instant::ZERO, &loss(MSS));
        cc.on_timeout(Instant::ZERO, 50_000, MSS, true);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 70_000));
        // ... and a stray recovery end after a timeout does not raise the window.
        cc.on_recovery_end(Instant::ZERO, MSS);
        assert_eq!(cc.window(), 1_000);
    }

    /// RFC 9438 §4.9: undo restores cwnd, ssthresh, W_max, cwnd_prior, K, t_epoch and W_est
    /// from before the reduction, during recovery, after it, and after a timeout; a late
    /// undo, once the window regrew past cwnd_prior, keeps the current state.
    #[test]
    fn undo_restores_the_state_before_the_reduction() {
        let snapshot = |cc: &Cubic| (cc.cwnd, cc.ssthresh, cc.w_max, cc.cwnd_prior, cc.epoch);
        let mut cc = after_loss_at(100);
        let mut now = Instant::from_secs(1);
        for _ in 0..10 {
            round(&mut cc, &mut now, ms(100));
        }
        let before = snapshot(&cc);
        // Undo after recovery ended.
        cc.on_congestion_event(now, &loss(MSS));
        cc.on_recovery_end(now, MSS);
        assert!(cc.window() < before.0 && cc.epoch.is_none());
        cc.undo(before.0, before.1);
        assert_eq!(snapshot(&cc), before);
        // Undo during recovery.
        cc.on_congestion_event(now, &loss(MSS));
        cc.undo(before.0, before.1);
        assert_eq!(snapshot(&cc), before);
        assert!(cc.state().starts_with("ca W_max=100seg K="));
        // Undo of a timeout.
        cc.on_timeout(now, 0, MSS, true);
        cc.undo(before.0, before.1);
        assert_eq!(snapshot(&cc), before);
        // The restored epoch keeps counting from its t_epoch.
        round(&mut cc, &mut now, ms(100));
        assert_eq!(cc.epoch.unwrap().start, before.4.unwrap().start);
        // A late undo: the window has regrown past cwnd_prior, so nothing is restored.
        let mut cc = after_loss_at(100);
        cc.cwnd = 101_000;
        let now_state = (cc.window(), cc.ssthresh(), cc.w_max);
        cc.undo(100_000, u32::MAX);
        assert_eq!((cc.window(), cc.ssthresh(), cc.w_max), now_state);
        // An undo of a loss in the initial slow start resumes it, HyStart++ included.
        let mut cc = Cubic::new(MSS);
        let mut now = Instant::ZERO;
        ss_round(&mut cc, &mut now, ms(50), 16);
        ss_round(&mut cc, &mut now, ms(60), 16);
        assert_eq!(cc.state(), "css round 1/5");
        let cwnd = cc.window();
        cc.on_congestion_event(now, &loss(MSS));
        assert_eq!(cc.ssthresh(), cwnd * 7 / 10);
        cc.undo(cwnd, u32::MAX);
        assert_eq!((cc.window(), cc.ssthresh()), (cwnd, u32::MAX));
        assert_eq!(cc.state(), "css round 1/5");
    }

    /// RFC 9406 §4.2: a round whose minimum RTT is at least RttThresh = lastRoundMinRTT / 8
    /// (within 4..=16 ms) above the previous round's enters Conservative Slow Start, where the window grows four times slower; after
    /// CSS_ROUNDS = 5 rounds of it slow start ends with ssthresh = cwnd, and congestion
    /// avoidance starts from W_max = cwnd with K = 0 (RFC 9438 §4.10).
    #[test]
    fn hystart_delay_increase_enters_css_and_css_ends_slow_start() {
        let mut cc = Cubic::new(MSS);
        let mut now = Instant::ZERO;
        for _ in 0..3 {
            ss_round(&mut cc, &mut now, ms(50), 16);
        }
        assert_eq!((cc.window(), cc.state().as_str()), (80_000, "ss"));
        // 56 ms < 50 + 50/8 = 56.25 ms: below the threshold.
        ss_round(&mut cc, &mut now, ms(56), 16);
        assert_eq!((cc.window(), cc.state().as_str()), (160_000, "ss"));
        // 62 ms < 56 + 56/8 = 63 ms: still below.
        ss_round(&mut cc, &mut now, ms(62), 16);
        assert_eq!((cc.window(), cc.state().as_str()), (320_000, "ss"));
        // 70 ms >= 62 + 62/8 = 69.75 ms: CSS from the eighth sample of the round on.
        ss_round(&mut cc, &mut now, ms(70), 16);
        assert_eq!(cc.state(), "css round 1/5");
        // Seven ACKs of 20 000 bytes at full growth, nine at a quarter.
        assert_eq!(cc.window(), 320_000 + 7 * 20_000 + 9 * 5_000);
        assert_eq!(cc.ssthresh(), u32::MAX);
        // CSS: a quarter of the acknowledged bytes.
        let w = cc.window();
        ss_round(&mut cc, &mut now, ms(70), 16);
        assert_eq!(cc.window(), w + w / 16 * 16 / 4);
        assert_eq!(cc.state(), "css round 2/5");
        for n in 3..=5 {
            ss_round(&mut cc, &mut now, ms(70), 16);
            assert_eq!(cc.state(), format!("css round {n}/5"));
        }
        // The first ACK of the next round ends slow start: ssthresh = cwnd.
        let w = cc.window();
        let ev = AckEvent {
            round_start: true,
            ..ack(0, ms(70))
        };
        now += ms(1);
        cc.on_ack(now, &ev);
        assert_eq!((cc.window(), cc.ssthresh()), (w, w));
        assert_eq!(cc.cwnd_prior, w);
        cc.on_ack(now + ms(1), &ack(MSS, ms(70)));
        let epoch = cc.epoch.unwrap();
        assert_eq!((epoch.k, cc.w_max), (0.0, w));
        assert!(cc.state().starts_with("ca W_max="));
    }

    /// RFC 9406 §4.2: in CSS, a round whose minimum RTT (over at least N_RTT_SAMPLE samples)
    /// drops below cssBaselineMinRtt shows the exit was spurious: back to slow start.
    #[test]
    fn hystart_rtt_drop_in_css_resumes_slow_start() {
        let mut cc = Cubic::new(MSS);
        let mut now = Instant::ZERO;
        ss_round(&mut cc, &mut now, ms(50), 16);
        ss_round(&mut cc, &mut now, ms(60), 16);
        assert_eq!(cc.state(), "css round 1/5");
        ss_round(&mut cc, &mut now, ms(60), 16);
        assert_eq!(cc.state(), "css round 2/5");
        // Seven samples below the baseline are not enough...
        let w = cc.window();
        let each = w / 16;
        for i in 0..7 {
            now += ms(3);
            let ev = AckEvent {
                round_start: i == 0,
                ..ack(each, ms(50))
            };
            cc.on_ack(now, &ev);
        }
        assert_eq!(cc.state(), "css round 3/5");
        assert!((cc.window() - w).abs_diff(7 * each / 4) <= 1);
        // ... the eighth is: slow start again, with full growth.
        now += ms(3);
        cc.on_ack(now, &ack(each, ms(50)));
        assert_eq!(cc.state(), "ss");
        let w = cc.window();
        cc.on_ack(now, &ack(each, ms(50)));
        assert_eq!(cc.window(), w + each);
        assert_eq!(cc.ssthresh(), u32::MAX);
    }

    /// RFC 9406 §4.2: with a flat RTT, slow start never exits by delay; rounds with fewer
    /// than N_RTT_SAMPLE samples are not judged; RttThresh is clamped to 4..=16 ms.
    #[test]
    fn hystart_no_exit_without_a_delay_increase() {
        let mut cc = Cubic::new(MSS);
        let mut now = Instant::ZERO;
        for _ in 0..12 {
            ss_round(&mut cc, &mut now, ms(50), 16);
        }
        assert_eq!((cc.window(), cc.ssthresh()), (10_000 << 12, u32::MAX));
        assert_eq!(cc.state(), "ss");
        // Seven samples of a much larger RTT: not judged.
        let mut cc = Cubic::new(MSS);
        ss_round(&mut cc, &mut now, ms(50), 16);
        ss_round(&mut cc, &mut now, ms(500), 7);
        assert_eq!(cc.state(), "ss");
        // RttThresh clamps: 200 ms / 8 = 25 ms → 16 ms; 10 ms / 8 → 4 ms.
        for (last, below, at) in [(200, 215, 216), (10, 13, 14)] {
            let mut cc = Cubic::new(MSS);
            ss_round(&mut cc, &mut now, ms(last), 16);
            ss_round(&mut cc, &mut now, ms(below), 16);
            assert_eq!(cc.state(), "ss", "{last} → {below}");
            let mut cc = Cubic::new(MSS);
            ss_round(&mut cc, &mut now, ms(last), 16);
            ss_round(&mut cc, &mut now, ms(at), 16);
            assert_eq!(cc.state(), "css round 1/5", "{last} → {at}");
        }
    }

    /// RFC 9406 §4.3: HyStart++ runs in the initial slow start only; the slow start after a
    /// timeout ends at ssthresh, whatever the RTT does.
    #[test]
    fn hystart_only_in_the_initial_slow_start() {
        let mut cc = Cubic::new(MSS);
        cc.seed(100_000, u32::MAX);
        cc.on_timeout(Instant::ZERO, 0, MSS, true);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 70_000));
        let mut now = Instant::ZERO;
        for (i, rtt) in [50, 100, 200, 400, 800, 1600].into_iter().enumerate() {
            // Eight samples a round: enough for HyStart++ to judge, were it running.
            ss_round(&mut cc, &mut now, ms(rtt), 8);
            assert_eq!((cc.window(), cc.state().as_str()), (2_000 << i, "ss"));
        }
        ss_round(&mut cc, &mut now, ms(3200), 8);
        assert!(cc.window() > 70_000 && cc.state().starts_with("ca W_max=70seg"));
    }

    /// RFC 9438 §5.8 and RFC 7661 §4.1: no growth when the window was not filled, none in
    /// recovery; in slow start and in congestion avoidance. The application-limited time
    /// does not count in t (§4.2).
    #[test]
    fn no_growth_when_not_cwnd_limited_or_in_recovery() {
        let idle = |bytes| AckEvent {
            cwnd_limited: false,
            ..ack(bytes, ms(50))
        };
        let recovering = |bytes| AckEvent {
            in_recovery: true,
            ..ack(bytes, ms(50))
        };
        let mut cc = Cubic::new(MSS);
        cc.on_ack(Instant::ZERO, &idle(5_000));
        cc.on_ack(Instant::ZERO, &recovering(5_000));
        assert_eq!(cc.window(), 10_000);
        cc.on_ack(Instant::ZERO, &ack(5_000, ms(50)));
        assert_eq!(cc.window(), 15_000);
        // Congestion avoidance.
        let mut cc = after_loss_at(100);
        cc.on_ack(Instant::from_secs(1), &ack(MSS, ms(50)));
        let start = cc.epoch.unwrap().start;
        let w = cc.window();
        cc.on_ack(Instant::from_secs(3), &idle(5_000));
        assert_eq!(cc.window(), w);
        // The two seconds before the application-limited ACK do not count.
        assert_eq!(cc.epoch.unwrap().start, start + Duration::from_secs(2));
        cc.on_ack(Instant::from_secs(4), &recovering(5_000));
        assert_eq!(cc.window(), w);
        cc.on_ack(Instant::from_secs(4), &ack(MSS, ms(50)));
        assert!(cc.window() > w);
    }

    /// RFC 5681 §4.1 and RFC 9438 §5.8: after idling, the window restarts from at most the
    /// initial window and the idle time does not advance the curve.
    #[test]
    fn idle_restart_caps_the_window_and_skips_the_idle_time() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::from_secs(1);
        round(&mut cc, &mut now, ms(100));
        let start = cc.epoch.unwrap().start;
        let last = now;
        cc.on_idle_restart(MSS);
        assert_eq!(cc.window(), 10_000);
        now += Duration::from_secs(30);
        cc.on_ack(now, &ack(MSS, ms(100)));
        assert_eq!(cc.epoch.unwrap().start, start + (now - last));
        // Back in slow start below ssthresh, on the same curve.
        assert_eq!(cc.window(), 11_000);
        assert_eq!(cc.state(), "ss");
    }

    /// Slow start counts every acknowledged byte (no RFC 3465 per-ACK cap), stops at
    /// ssthresh and hands the rest of the acknowledgment to congestion avoidance.
    #[test]
    fn slow_start_counts_every_byte_up_to_ssthresh() {
        let mut cc = Cubic::new(MSS);
        cc.seed(10_000, 30_000);
        cc.on_ack(Instant::ZERO, &ack(15_000, ms(50)));
        assert_eq!(cc.window(), 25_000);
        cc.on_ack(Instant::ZERO, &ack(15_000, ms(50)));
        assert!(cc.window() > 30_000 && cc.window() < 31_000);
        assert!(cc.epoch.is_some());
    }

    /// `seed` takes the window and threshold as they are and starts a fresh epoch.
    #[test]
    fn seed_takes_the_window_and_threshold() {
        let mut cc = after_loss_at(100);
        cc.on_ack(Instant::from_secs(1), &ack(MSS, ms(50)));
        cc.seed(50_000, 40_000);
        assert_eq!(
            (cc.window(), cc.ssthresh(), cc.epoch),
            (50_000, 40_000, None)
        );
        assert_eq!(
            (cc.name(), cc.pacing_rate(), cc.manages_recovery()),
            ("cubic", None, false)
        );
        cc.on_ack(Instant::from_secs(2), &ack(MSS, ms(50)));
        assert_eq!((cc.epoch.unwrap().k, cc.w_max), (0.0, 50_000));
    }

    /// No panic, overflow or out-of-range window for extreme inputs: MSS 1 and 65 535 (and
    /// 0), windows near u32::MAX, zero and huge RTTs, time going backwards.
    #[test]
    fn extreme_inputs_stay_in_range() {
        for mss in [0, 1, 536, 65_535, u32::MAX] {
            let mut cc = Cubic::new(mss);
            let m = sane_mss(mss);
            let check = |cc: &Cubic| {
                assert!(
                    cc.window() >= m && cc.window() <= MAX_WINDOW,
                    "{mss}: {cc:?}"
                );
            };
            let mut now = Instant::from_secs(1_000);
            let times = [0, 1, u64::MAX / 4, 5, u64::MAX, 0];
            for (i, &us) in times.iter().enumerate() {
                for rtt in [Duration::ZERO, Duration::from_secs(1 << 40), Duration::MAX] {
                    let ev = AckEvent {
                        acked: u32::MAX,
                        delivered: u32::MAX,
                        mss,
                        rtt: Some(rtt),
                        srtt: Some(rtt),
                        round_start: i % 2 == 0,
                        ..ack(0, rtt)
                    };
                    cc.on_ack(now, &ev);
                    check(&cc);
                    now = Instant::from_micros(us);
                }
                let _ = cc.state();
                match i {
                    0 => cc.on_congestion_event(now, &loss(mss)),
                    1 => cc.on_recovery_end(now, mss),
                    2 => cc.on_timeout(now, u32::MAX, mss, true),
                    3 => cc.undo(u32::MAX, u32::MAX),
                    4 => cc.seed(u32::MAX, 0),
                    _ => cc.on_idle_restart(mss),
                }
                check(&cc);
            }
            cc.seed(0, 0);
            check(&cc);
            cc.undo(0, 0);
            check(&cc);
        }
    }

    /// The same, for a long pseudo-random sequence of calls with arbitrary arguments
    /// (a fixed xorshift seed, so failures reproduce).
    #[test]
    fn random_calls_stay_in_range() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cc = Cubic::new(1448);
        let mut now = Instant::ZERO;
        for _ in 0..200_000 {
            let r = next();
            let pick = |bits: u32| r.rotate_left(bits) as u32;
            let mss = [1, 536, 1448, 9000, 65_535][(r % 5) as usize];
            let small = (r >> 8) % 4 != 0;
            let rtt = Duration::from_micros(
                u64::from(pick(7)) % if small { 300_000 } else { u64::from(u32::MAX) },
            );
            // Mostly forwards in small steps, sometimes backwards or far ahead.
            now = match (r >> 20) % 16 {
                0 => Instant::from_micros(now.as_micros().saturating_sub(u64::from(pick(3)))),
                1 => Instant::from_micros(now.as_micros().saturating_add(u64::from(pick(5)) << 20)),
                _ => now + Duration::from_micros(u64::from(pick(11) % 20_000)),
            };
            let amount = if small {
                pick(13) % (64 * mss)
            } else {
                pick(13)
            };
            match (r >> 32) % 16 {
                0 => cc.on_congestion_event(
                    now,
                    &CongestionEvent {
                        kind: if r & 1 == 0 {
                            CongestionKind::Loss
                        } else {
                            CongestionKind::ProbeRepairedLoss
                        },
                        in_flight: amount,
                        mss,
                    },
                ),
                1 => cc.on_recovery_end(now, mss),
                2 => cc.on_timeout(now, amount, mss, r & 2 == 0),
                3 => cc.on_idle_restart(mss),
                4 => cc.undo(amount, pick(17)),
                5 if r & 0xff == 0 => cc.seed(amount, pick(19)),
                _ => {
                    let ev = AckEvent {
                        acked: amount,
                        delivered: amount,
                        mss,
                        rtt: (r & 4 == 0).then_some(rtt),
                        srtt: (r & 8 == 0).then_some(rtt),
                        round_start: r & 16 == 0,
                        in_recovery: r & 32 == 0 && r & 64 == 0,
                        cwnd_limited: r & 128 != 0,
                        ..ack(0, rtt)
                    };
                    cc.on_ack(now, &ev);
                }
            }
            assert!(cc.window() >= 1 && cc.window() <= MAX_WINDOW, "{cc:?}");
            assert!(!cc.state().is_empty());
        }
    }
}
