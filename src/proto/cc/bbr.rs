//! BBR version 3 (draft-ietf-ccwg-bbr-06, "BBR Congestion Control"): a model of the path
//! (its bottleneck bandwidth `max_bw` and round-trip propagation time `min_rtt`, bounded
//! by what recent losses say is safe) drives a pacing rate and a congestion window.
//!
//! Section numbers below are those of draft-ietf-ccwg-bbr-06. The state machine is the
//! draft's (§5.1.1 "State Transition Diagram"):
//!
//! ```text
//! Startup -> Drain -> ProbeBW_DOWN -> ProbeBW_CRUISE -> ProbeBW_REFILL -> ProbeBW_UP -+
//!                          ^------------------------------------------------------------+
//! any state -> ProbeRTT -> ProbeBW_CRUISE (pipe was full) or Startup
//! ```
//!
//! How the draft maps onto the engine's hooks:
//!
//! * `on_ack` runs the per-ACK steps (§5.2.3 "Per-ACK Steps": `UpdateModelAndState` then
//!   `UpdateControlParameters`). The draft's per-packet `HandleLostPacket` (§5.2.4) is run
//!   once per acknowledgment that marked data lost, with that acknowledgment's rate sample
//!   (the engine reports losses per ACK, not per packet, as Linux does).
//! * Packet-timed rounds (§5.5.1) are counted here from `RateSample::prior_delivered` and
//!   `AckEvent::total_delivered`, not taken from `AckEvent::round_start`, because BBR restarts
//!   its round at chosen moments (`StartRound()`); `round_start` is only used for an ACK
//!   without a rate sample.
//! * `on_congestion_event(Loss)` is the draft's `OnEnterFastRecovery()` (§5.6.4.4) plus the
//!   one-round packet conservation of earlier BBR revisions
//!   (draft-cardwell-iccrg-bbr-congestion-control, "Modulating cwnd in Loss Recovery"),
//!   which Linux BBRv3 still applies; `on_timeout` is `OnEnterRTO()`; `on_recovery_end`,
//!   and the first ACK without `AckEvent::after_timeout` after a timeout, are
//!   `RestoreCwnd()` (§5.6.4.4: on leaving either kind of recovery); `undo` is
//!   `HandleSpuriousLossDetection()` (§5.5.11.2); `on_idle_restart` is
//!   `HandleRestartFromIdle()` (§5.4.1).
//!
//! Simplifications, each noted where it applies: the connection is assumed to have SACK
//! (`C.has_selective_acks`); Startup's "discontiguous lost ranges" are counted as ACKs that
//! marked loss; ProbeRTT's `MarkConnectionAppLimited()` is emulated by treating samples of
//! data sent before the mark as application-limited; the send quantum is only used for the
//! offload budget (the engine has no hook for it).

use super::{initial_window, min_window, AckEvent, CongestionControl, CongestionEvent};
use super::{CongestionKind, RateSample};
use crate::proto::Instant;
use std::time::Duration;

/// BBR.StartupPacingGain = 4 ln 2 (§2.5): the least gain that doubles the rate each round.
const STARTUP_PACING_GAIN: f64 = 2.77;
/// BBR.DrainPacingGain (§2.5, §5.3.2): 0.5 since draft-ietf-ccwg-bbr-05 (0.35 before).
const DRAIN_PACING_GAIN: f64 = 0.5;
/// ProbeBW_DOWN pacing gain (§5.3.3.1).
const PROBE_DOWN_PACING_GAIN: f64 = 0.90;
/// ProbeBW_UP pacing gain (§5.3.3.5).
const PROBE_UP_PACING_GAIN: f64 = 1.25;
/// BBR.DefaultCwndGain (§2.6).
const DEFAULT_CWND_GAIN: f64 = 2.0;
/// ProbeBW_UP cwnd gain (§5.3.3.5).
const PROBE_UP_CWND_GAIN: f64 = 2.25;
/// BBR.ProbeRTTCwndGain (§2.16.2).
const PROBE_RTT_CWND_GAIN: f64 = 0.5;
/// BBR.PacingMarginPercent (§2.5).
const PACING_MARGIN_PERCENT: f64 = 1.0;
/// BBR.LossThresh = 2 % (§2.8), as the fraction 1/50 so it can be tested in integers.
const LOSS_THRESH_INV: u128 = 50;
/// BBR.Beta (§2.8).
const BETA: f64 = 0.7;
/// BBR.Headroom (§2.8).
const HEADROOM: f64 = 0.15;
/// BBR.MinPipeCwnd, in segments (§2.8).
const MIN_PIPE_CWND_SEGMENTS: u32 = 4;
/// BBR.ExtraAckedFilterLen, in rounds (§2.12).
const EXTRA_ACKED_FILTER_LEN: u64 = 10;
/// BBR.MinRTTFilterLen (§2.9.2).
const MIN_RTT_FILTER_LEN: Duration = Duration::from_secs(10);
/// BBR.ProbeRTTDuration (§2.16.2).
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// BBR.ProbeRTTInterval (§2.16.2).
const PROBE_RTT_INTERVAL: Duration = Duration::from_secs(5);
/// BBRStartupFullLossCnt (§5.3.1.3).
const STARTUP_FULL_LOSS_CNT: u32 = 6;
/// Full-pipe detection: growth below 25 % for 3 rounds (§5.3.1.2).
const FULL_BW_GROWTH: f64 = 1.25;
const FULL_BW_COUNT: u32 = 3;
/// The Reno-coexistence bound on rounds between bandwidth probes (§5.3.3.8.2).
const RENO_ROUNDS_BOUND: u64 = 63;
/// The send quantum's bounds (§5.6.3).
const SEND_QUANTUM_MAX: u64 = 64 * 1024;
/// The largest window handed to the engine.
const MAX_CWND: u32 = u32::MAX / 2;
/// The largest MSS taken into account (TCP's MSS option is 16 bits; this is generous and
/// only keeps the window arithmetic far from overflow).
const MAX_MSS: u32 = 1 << 24;
/// "Infinity" for the bounds of the model (§5.2.1 initialises several to Infinity).
const INF: u64 = u64::MAX;

/// BBR.state (§5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Startup,
    Drain,
    ProbeBwDown,
    ProbeBwCruise,
    ProbeBwRefill,
    ProbeBwUp,
    ProbeRtt,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Startup => "startup",
            State::Drain => "drain",
            State::ProbeBwDown => "probe_bw:down",
            State::ProbeBwCruise => "probe_bw:cruise",
            State::ProbeBwRefill => "probe_bw:refill",
            State::ProbeBwUp => "probe_bw:up",
            State::ProbeRtt => "probe_rtt",
        }
    }

    /// IsInAProbeBWState() (§5.3.3.9).
    fn is_probe_bw(self) -> bool {
        matches!(
            self,
            State::ProbeBwDown | State::ProbeBwCruise | State::ProbeBwRefill | State::ProbeBwUp
        )
    }
}

/// BBR.ack_phase (§2.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckPhase {
    Init,
    Refilling,
    ProbeStarting,
    ProbeFeedback,
    ProbeStopping,
}

/// Which loss recovery the connection is in, as far as BBR is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    Fast,
    Timeout,
}

/// A windowed running maximum over a virtual time (rounds), after Kathleen Nichols'
/// algorithm that the draft points to for `UpdateWindowedMaxFilter()` (§5.5.5): the best,
/// second-best and third-best samples of the window, each younger than the one before.
#[derive(Debug, Clone, Copy, Default)]
struct MaxFilter {
    /// (time, value), best first.
    s: [(u64, u64); 3],
}

impl MaxFilter {
    fn reset(&mut self, t: u64, v: u64) -> u64 {
        self.s = [(t, v); 3];
        v
    }

    fn update(&mut self, t: u64, v: u64, window: u64) -> u64 {
        let sample = (t, v);
        // A new best, or nothing in the window is recent enough: start over.
        if v >= self.s[0].1 || t.saturating_sub(self.s[2].0) > window {
            return self.reset(t, v);
        }
        if v >= self.s[1].1 {
            self.s[1] = sample;
            self.s[2] = sample;
        } else if v >= self.s[2].1 {
            self.s[2] = sample;
        }
        // Age the window: drop the best once it is older than the window, and keep the
        // second and third choices spread over it.
        let age = t.saturating_sub(self.s[0].0);
        if age > window {
            self.s[0] = self.s[1];
            self.s[1] = self.s[2];
            self.s[2] = sample;
            if t.saturating_sub(self.s[0].0) > window {
                self.s[0] = self.s[1];
                self.s[1] = self.s[2];
            }
        } else if self.s[1].0 == self.s[0].0 && age > window / 4 {
            self.s[1] = sample;
            self.s[2] = sample;
        } else if self.s[2].0 == self.s[1].0 && age > window / 2 {
            self.s[2] = sample;
        }
        self.s[0].1
    }
}

/// The BBR (version 3) congestion controller.
///
/// ```
/// use rawtcp::proto::cc::{Bbr, CongestionControl};
/// let cc = Bbr::new(1000);
/// assert_eq!(cc.name(), "bbr");
/// assert!(cc.manages_recovery());
/// assert_eq!(cc.window(), 10_000); // RFC 6928 initial window until the model says more
/// // Before any RTT sample: 2.77 × initial window / 1 ms (draft-ietf-ccwg-bbr §5.6.2).
/// assert_eq!(cc.pacing_rate(), Some(27_700_000));
/// assert_eq!(cc.state(), "startup");
/// ```
#[derive(Debug, Clone)]
pub struct Bbr {
    /// C.SMSS.
    mss: u32,
    /// C.InitialCwnd.
    initial_cwnd: u32,
    /// C.cwnd.
    cwnd: u32,
    /// C.pacing_rate, bytes per second.
    pacing_rate: u64,
    /// C.send_quantum.
    send_quantum: u64,
    /// C.delivered as last reported.
    delivered: u64,

    state: State,
    pacing_gain: f64,
    cwnd_gain: f64,

    // Rounds (§5.5.1).
    round_count: u64,
    round_start: bool,
    next_round_delivered: u64,

    // Data rate model (§2.9.1, §2.11). max_bw's filter covers the current and the previous
    // ProbeBW cycle (BBR.MaxBwFilterLen = 2), so it is kept as two slots.
    max_bw_slots: [u64; 2],
    max_bw: u64,
    bw_shortterm: u64,
    bw: u64,
    cycle_count: u64,

    // RTT model and ProbeRTT scheduling (§2.16, §5.3.4.3). None is Infinity.
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    probe_rtt_min_delay: Option<Duration>,
    probe_rtt_min_stamp: Instant,
    probe_rtt_expired: bool,
    probe_rtt_done_stamp: Option<Instant>,
    probe_rtt_round_done: bool,
    /// Samples of data sent before C.delivered reached this are application-limited: the
    /// emulation of MarkConnectionAppLimited() in ProbeRTT (§5.3.4.3).
    app_limited_until: u64,

    // Data volume model (§2.9.2, §2.12).
    extra_acked: u64,
    extra_acked_filter: MaxFilter,
    extra_acked_interval_start: Instant,
    extra_acked_delivered: u64,
    offload_budget: u64,
    max_inflight: u64,
    inflight_longterm: u64,
    inflight_shortterm: u64,

    // Congestion signals (§2.10, §5.5.10).
    bw_latest: u64,
    inflight_latest: u64,
    loss_round_delivered: u64,
    loss_round_start: bool,
    is_loss_in_round: bool,
    /// ACKs that marked data lost in this loss round: the "discontiguous lost ranges" of
    /// §5.3.1.3, as far as the engine's per-ACK report shows them.
    loss_events_in_round: u32,

    // Startup (§2.13).
    full_bw_reached: bool,
    full_bw_now: bool,
    full_bw: u64,
    full_bw_count: u32,
    drain_start_round: u64,

    // ProbeBW (§2.14).
    ack_phase: AckPhase,
    is_bw_probe_sample: bool,
    bw_probe_up_acked: u64,
    probe_up_acked_per_inc: u64,
    bw_probe_up_rounds: u32,
    rounds_since_probe_up: u64,
    bw_probe_wait: Duration,
    cycle_stamp: Instant,
    prev_probe_too_high: bool,
    prev_probe_precautionary: bool,

    // Loss recovery and undo (§2.15, §5.6.4.4).
    prior_cwnd: u32,
    undo_state: Option<State>,
    undo_bw_shortterm: u64,
    undo_inflight_shortterm: u64,
    undo_inflight_longterm: u64,
    recovery: Option<Recovery>,
    /// An ACK inside the current recovery was seen (so an ACK outside it means it ended).
    recovery_ack_seen: bool,
    packet_conservation: bool,
    /// C.delivered when fast recovery began: a sample of data sent after it closes the
    /// recovery's first round.
    recovery_start_delivered: u64,
    idle_restart: bool,
    aggregation_reset_pending: bool,
    /// The latest acknowledgment reported loss, and NoteLoss() saved the undo state before
    /// the loss response: a congestion event that follows it must not save again.
    loss_noted_by_last_ack: bool,

    // The latest acknowledgment, for the reactions that happen between ACKs.
    last_in_flight: u32,
    last_delivered: u32,
    last_now: Instant,
    started: bool,
    has_seen_rtt: bool,
    rng: u64,
}

impl Bbr {
    /// A controller for a connection whose MSS is `mss` (§5.2.1 "Initialization").
    pub fn new(mss: u32) -> Bbr {
        let mss = mss.clamp(1, MAX_MSS);
        let initial_cwnd = initial_window(mss);
        let mut bbr = Bbr {
            mss,
            initial_cwnd,
            cwnd: initial_cwnd,
            pacing_rate: 0,
            send_quantum: 2 * u64::from(mss),
            delivered: 0,
            state: State::Startup,
            pacing_gain: STARTUP_PACING_GAIN,
            cwnd_gain: DEFAULT_CWND_GAIN,
            round_count: 0,
            round_start: false,
            next_round_delivered: 0,
            max_bw_slots: [0; 2],
            max_bw: 0,
            bw_shortterm: INF,
            bw: 0,
            cycle_count: 0,
            min_rtt: None,
            min_rtt_stamp: Instant::ZERO,
            probe_rtt_min_delay: None,
            probe_rtt_min_stamp: Instant::ZERO,
            probe_rtt_expired: false,
            probe_rtt_done_stamp: None,
            probe_rtt_round_done: false,
            app_limited_until: 0,
            extra_acked: 0,
            extra_acked_filter: MaxFilter::default(),
            extra_acked_interval_start: Instant::ZERO,
            extra_acked_delivered: 0,
            offload_budget: 0,
            max_inflight: 0,
            inflight_longterm: INF,
            inflight_shortterm: INF,
            bw_latest: 0,
            inflight_latest: 0,
            loss_round_delivered: 0,
            loss_round_start: false,
            is_loss_in_round: false,
            loss_events_in_round: 0,
            full_bw_reached: false,
            full_bw_now: false,
            full_bw: 0,
            full_bw_count: 0,
            drain_start_round: 0,
            ack_phase: AckPhase::Init,
            is_bw_probe_sample: false,
            bw_probe_up_acked: 0,
            probe_up_acked_per_inc: INF,
            bw_probe_up_rounds: 0,
            rounds_since_probe_up: 0,
            bw_probe_wait: Duration::ZERO,
            cycle_stamp: Instant::ZERO,
            prev_probe_too_high: false,
            prev_probe_precautionary: false,
            prior_cwnd: 0,
            undo_state: None,
            undo_bw_shortterm: 0,
            undo_inflight_shortterm: 0,
            undo_inflight_longterm: 0,
            recovery: None,
            recovery_ack_seen: false,
            packet_conservation: false,
            recovery_start_delivered: 0,
            idle_restart: false,
            aggregation_reset_pending: false,
            loss_noted_by_last_ack: false,
            last_in_flight: 0,
            last_delivered: 0,
            last_now: Instant::ZERO,
            started: false,
            has_seen_rtt: false,
            // A deterministic generator for PickProbeWait(), seeded from the MSS here and
            // from the time of the first acknowledgment later: repeatable under a scripted
            // clock, different between connections under a real one.
            rng: splitmix64(u64::from(mss)) | 1,
        };
        bbr.init_pacing_rate(None);
        bbr.enter_startup();
        bbr
    }

    // ----- Small helpers -----

    /// BBR.MinPipeCwnd (§2.8).
    fn min_pipe_cwnd(&self) -> u64 {
        u64::from(MIN_PIPE_CWND_SEGMENTS) * u64::from(self.mss)
    }

    fn set_mss(&mut self, mss: u32) {
        if mss != 0 {
            self.mss = mss.min(MAX_MSS);
        }
    }

    /// The engine's clock, never allowed to run backwards here.
    fn clock(&mut self, now: Instant) -> Instant {
        let now = now.max(self.last_now);
        self.last_now = now;
        now
    }

    fn set_cwnd_bytes(&mut self, cwnd: u64, floor: u64) {
        let v = cwnd.max(floor).min(u64::from(MAX_CWND));
        self.cwnd = u32::try_from(v).unwrap_or(MAX_CWND);
    }

    fn random(&mut self) -> u64 {
        // xorshift64*.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// BBR.bdp = BBR.bw × BBR.min_rtt (§2.9.2), 0 while min_rtt is unknown.
    fn bdp(&self) -> u64 {
        match self.min_rtt {
            Some(rtt) => volume(self.bw, rtt),
            None => 0,
        }
    }

    /// BDPMultiple(gain) (§5.6.4.2), for a given bandwidth.
    fn bdp_multiple_with(&self, bw: u64, gain: f64) -> u64 {
        match self.min_rtt {
            // No valid RTT sample yet.
            None => u64::from(self.initial_cwnd),
            Some(rtt) => scale(volume(bw, rtt), gain),
        }
    }

    /// QuantizationBudget(inflight_cap) (§5.6.4.2).
    fn quantization_budget(&self, cap: u64) -> u64 {
        let mut cap = cap.max(self.offload_budget).max(self.min_pipe_cwnd());
        if self.state == State::ProbeBwUp {
            cap = cap.saturating_add(2 * u64::from(self.mss));
        }
        cap
    }

    /// Inflight(bw, gain) (§5.6.4.2).
    fn inflight_with(&self, bw: u64, gain: f64) -> u64 {
        self.quantization_budget(self.bdp_multiple_with(bw, gain))
    }

    /// InflightWithHeadroom() (§5.3.3.9): leave BBR.Headroom of inflight_longterm free for
    /// other flows.
    fn inflight_with_headroom(&self) -> u64 {
        if self.inflight_longterm == INF {
            return INF;
        }
        let headroom = scale(self.inflight_longterm, HEADROOM).max(u64::from(self.mss));
        self.inflight_longterm
            .saturating_sub(headroom)
            .max(self.min_pipe_cwnd())
    }

    /// TargetInflight() (§5.3.3.8.3): the BDP, unless congestion cut cwnd.
    fn target_inflight(&self) -> u64 {
        self.bdp().min(u64::from(self.cwnd))
    }

    /// The rate sample as BBR uses it: with ProbeRTT's application-limited marking.
    fn effective_sample(&self, ack: &AckEvent) -> Option<RateSample> {
        ack.rate.map(|mut rs| {
            if rs.prior_delivered < self.app_limited_until {
                rs.is_app_limited = true;
            }
            rs
        })
    }

    // ----- Initialization and state entry -----

    /// InitPacingRate() (§5.6.2): the initial window over srtt (1 ms before any sample),
    /// at the Startup gain.
    fn init_pacing_rate(&mut self, srtt: Option<Duration>) {
        let rtt = srtt
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(1));
        let nominal = rate(u64::from(self.initial_cwnd), rtt);
        self.pacing_rate = scale(nominal, STARTUP_PACING_GAIN).max(self.min_pacing_rate());
    }

    /// A floor that only keeps the pacing rate from reaching zero: one segment a second.
    fn min_pacing_rate(&self) -> u64 {
        u64::from(self.mss).max(1)
    }

    /// The first acknowledgment starts the clocks of §5.2.1 (the engine gives no time at
    /// construction).
    fn start(&mut self, now: Instant) {
        self.started = true;
        self.min_rtt_stamp = now;
        self.probe_rtt_min_stamp = now;
        self.extra_acked_interval_start = now;
        self.cycle_stamp = now;
        self.rng ^= splitmix64(now.as_micros());
        if self.rng == 0 {
            self.rng = 1;
        }
    }

    /// EnterStartup() (§5.3.1.1).
    fn enter_startup(&mut self) {
        self.state = State::Startup;
        self.pacing_gain = STARTUP_PACING_GAIN;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
    }

    /// EnterDrain() (§5.3.2).
    fn enter_drain(&mut self) {
        self.state = State::Drain;
        self.pacing_gain = DRAIN_PACING_GAIN;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
        self.drain_start_round = self.round_count;
    }

    /// EnterProbeBW() (§5.3.3.9).
    fn enter_probe_bw(&mut self, now: Instant) {
        self.cwnd_gain = DEFAULT_CWND_GAIN;
        self.start_probe_bw_down(now);
    }

    /// StartProbeBW_DOWN() (§5.3.3.9).
    fn start_probe_bw_down(&mut self, now: Instant) {
        self.reset_congestion_signals();
        // Not growing inflight_longterm.
        self.probe_up_acked_per_inc = INF;
        self.pick_probe_wait();
        self.cycle_stamp = now;
        self.ack_phase = AckPhase::ProbeStopping;
        self.start_round();
        self.state = State::ProbeBwDown;
        self.pacing_gain = PROBE_DOWN_PACING_GAIN;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
    }

    /// StartProbeBW_CRUISE() (§5.3.3.9).
    fn start_probe_bw_cruise(&mut self) {
        self.state = State::ProbeBwCruise;
        self.pacing_gain = 1.0;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
    }

    /// StartProbeBW_REFILL() (§5.3.3.9): forget the short-term model and refill the pipe
    /// at 1.0 × bw for one round (§5.3.3.3).
    fn start_probe_bw_refill(&mut self) {
        self.reset_short_term_model();
        self.bw_probe_up_rounds = 0;
        self.bw_probe_up_acked = 0;
        self.prev_probe_precautionary = false;
        self.ack_phase = AckPhase::Refilling;
        self.start_round();
        self.state = State::ProbeBwRefill;
        self.pacing_gain = 1.0;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
    }

    /// StartProbeBW_UP() (§5.3.3.9).
    fn start_probe_bw_up(&mut self, rs: Option<&RateSample>) {
        self.ack_phase = AckPhase::ProbeStarting;
        self.start_round();
        self.reset_full_bw();
        self.full_bw = rs.map_or(0, |rs| rs.delivery_rate);
        self.state = State::ProbeBwUp;
        self.pacing_gain = PROBE_UP_PACING_GAIN;
        self.cwnd_gain = PROBE_UP_CWND_GAIN;
        self.raise_inflight_longterm_slope();
    }

    /// EnterProbeRTT() (§5.3.4.3).
    fn enter_probe_rtt(&mut self) {
        self.state = State::ProbeRtt;
        self.pacing_gain = 1.0;
        self.cwnd_gain = PROBE_RTT_CWND_GAIN;
    }

    /// ExitProbeRTT() (§5.3.4.4): straight to CRUISE (inflight is already below the BDP),
    /// with the probing clock restarted as by ProbeBW_DOWN.
    fn exit_probe_rtt(&mut self, now: Instant) {
        self.reset_short_term_model();
        if self.full_bw_reached {
            self.start_probe_bw_down(now);
            self.start_probe_bw_cruise();
        } else {
            self.enter_startup();
        }
    }

    // ----- Rounds and the bandwidth model -----

    /// StartRound() (§5.5.1).
    fn start_round(&mut self) {
        self.next_round_delivered = self.delivered;
    }

    /// UpdateRound() (§5.5.1).
    fn update_round(&mut self, ack: &AckEvent, rs: Option<&RateSample>) {
        self.round_start = match rs {
            Some(rs) => rs.prior_delivered >= self.next_round_delivered,
            // Without a sample there is no P.delivered: trust the engine's own round count.
            None => ack.round_start,
        };
        if self.round_start {
            self.start_round();
            self.round_count = self.round_count.saturating_add(1);
            self.rounds_since_probe_up = self.rounds_since_probe_up.saturating_add(1);
        }
    }

    /// UpdateMaxBw() (§5.5.5): application-limited samples only count when they raise the
    /// estimate (§5.5.4).
    fn update_max_bw(&mut self, ack: &AckEvent, rs: Option<&RateSample>) {
        self.update_round(ack, rs);
        if let Some(rs) = rs {
            if rs.delivery_rate > 0 && (rs.delivery_rate >= self.max_bw || !rs.is_app_limited) {
                self.max_bw_slots[1] = self.max_bw_slots[1].max(rs.delivery_rate);
                self.max_bw = self.max_bw_slots[0].max(self.max_bw_slots[1]);
            }
        }
    }

    /// AdvanceMaxBwFilter() (§5.5.6): a new ProbeBW cycle starts a new slot of the filter.
    /// A cycle without any sample keeps the old slot, so that a quiet cycle does not erase
    /// the estimate.
    fn advance_max_bw_filter(&mut self) {
        self.cycle_count = self.cycle_count.wrapping_add(1);
        if self.max_bw_slots[1] == 0 {
            return;
        }
        self.max_bw_slots = [self.max_bw_slots[1], 0];
        self.max_bw = self.max_bw_slots[0];
    }

    /// BoundBWForModel() (§5.5.10.3).
    fn bound_bw_for_model(&mut self) {
        self.bw = self.max_bw.min(self.bw_shortterm);
    }

    /// UpdateACKAggregation() (§5.5.9): the data acknowledged beyond what bw explains,
    /// max-filtered over 10 rounds (1 in Startup).
    fn update_ack_aggregation(&mut self, now: Instant, ack: &AckEvent) {
        if self.aggregation_reset_pending {
            // HandleRestartFromIdle() restarts the interval (§5.4.1).
            self.aggregation_reset_pending = false;
            self.extra_acked_interval_start = now;
            self.extra_acked_delivered = 0;
        }
        if self.bw == 0 {
            // No model yet: every byte would count as "extra".
            return;
        }
        let interval = now.saturating_since(self.extra_acked_interval_start);
        let mut expected = volume(self.bw, interval);
        if self.extra_acked_delivered <= expected {
            // The ACK rate fell below bw: an aggregation episode ended.
            self.extra_acked_delivered = 0;
            self.extra_acked_interval_start = now;
            expected = 0;
        }
        self.extra_acked_delivered = self
            .extra_acked_delivered
            .saturating_add(u64::from(ack.delivered));
        let extra = (self.extra_acked_delivered - expected).min(u64::from(self.cwnd));
        let window = if self.full_bw_reached {
            EXTRA_ACKED_FILTER_LEN
        } else {
            1
        };
        self.extra_acked = self
            .extra_acked_filter
            .update(self.round_count, extra, window);
    }

    // ----- Startup and Drain -----

    /// ResetFullBW() (§5.3.1.2).
    fn reset_full_bw(&mut self) {
        self.full_bw = 0;
        self.full_bw_count = 0;
        self.full_bw_now = false;
    }

    /// CheckFullBWReached() (§5.3.1.2): three non-application-limited rounds without 25 %
    /// growth of the delivery rate.
    fn check_full_bw_reached(&mut self, rs: Option<&RateSample>) {
        let Some(rs) = rs else { return };
        if self.full_bw_now || !self.round_start || rs.is_app_limited {
            return;
        }
        if rs.delivery_rate as f64 >= self.full_bw as f64 * FULL_BW_GROWTH {
            // Still growing: a new baseline.
            self.reset_full_bw();
            self.full_bw = rs.delivery_rate;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_now = self.full_bw_count >= FULL_BW_COUNT;
        if self.full_bw_now {
            self.full_bw_reached = true;
        }
    }

    /// CheckStartupDone() (§5.3.1.1).
    fn check_startup_done(&mut self, rs: Option<&RateSample>) {
        self.check_startup_high_loss(rs);
        if self.state == State::Startup && self.full_bw_reached {
            self.enter_drain();
        }
    }

    /// CheckStartupHighLoss() (§5.3.1.3): at the end of a loss round, after at least one
    /// full round of fast recovery, with a loss rate above BBR.LossThresh and at least
    /// BBRStartupFullLossCnt loss events in the round, the pipe is full; inflight_longterm
    /// becomes max(bdp, inflight_latest).
    fn check_startup_high_loss(&mut self, rs: Option<&RateSample>) {
        if self.state != State::Startup || self.full_bw_reached || !self.loss_round_start {
            return;
        }
        let Some(rs) = rs else { return };
        // A full round of fast recovery: this sample's data was sent after it began.
        let recovery_round = self.recovery == Some(Recovery::Fast)
            && rs.prior_delivered >= self.recovery_start_delivered;
        if recovery_round
            && self.loss_events_in_round >= STARTUP_FULL_LOSS_CNT
            && is_inflight_too_high(rs)
        {
            self.undo_state = Some(State::Startup);
            self.full_bw_reached = true;
            self.full_bw_now = true;
            self.inflight_longterm = self.bdp().max(self.inflight_latest);
        }
    }

    /// CheckDrainDone() (§5.3.2): the queue is drained once inflight is down to the BDP,
    /// or after 3 rounds in any case.
    fn check_drain_done(&mut self, now: Instant, ack: &AckEvent) {
        if self.state == State::Drain
            && (u64::from(ack.in_flight) <= self.inflight_with(self.bw, 1.0)
                || self.round_count > self.drain_start_round.saturating_add(3))
        {
            self.enter_probe_bw(now);
        }
    }

    // ----- ProbeBW -----

    /// PickProbeWait() (§5.3.3.8.3): 0 or 1 extra round for the Reno bound, 2–3 s of wall
    /// clock for the BBR-native bound.
    fn pick_probe_wait(&mut self) {
        self.rounds_since_probe_up = self.random() & 1;
        let jitter_us = self.random() % 1_000_000;
        self.bw_probe_wait = Duration::from_secs(2) + Duration::from_micros(jitter_us);
    }

    /// HasElapsedInPhase() (§5.3.3.9).
    fn has_elapsed_in_phase(&self, now: Instant, interval: Duration) -> bool {
        now > self.cycle_stamp + interval
    }

    /// IsRenoCoexistenceProbeTime() (§5.3.3.8.3): TargetInflight() in segments, at most 63
    /// rounds.
    fn is_reno_coexistence_probe_time(&self) -> bool {
        let reno_rounds = self.target_inflight() / u64::from(self.mss.max(1));
        self.rounds_since_probe_up >= reno_rounds.min(RENO_ROUNDS_BOUND)
    }

    /// IsTimeToProbeBW() (§5.3.3.8.3).
    fn is_time_to_probe_bw(&mut self, now: Instant) -> bool {
        if self.has_elapsed_in_phase(now, self.bw_probe_wait)
            || self.is_reno_coexistence_probe_time()
        {
            self.start_probe_bw_refill();
            return true;
        }
        false
    }

    /// IsTimeToCruise() (§5.3.3.9): DOWN ends once inflight leaves the headroom free and is
    /// no more than the BDP.
    fn is_time_to_cruise(&self, ack: &AckEvent) -> bool {
        let in_flight = u64::from(ack.in_flight);
        in_flight <= self.inflight_with_headroom()
            && in_flight <= self.inflight_with(self.max_bw, 1.0)
    }

    /// IsTimeToGoDown() (§5.3.3.9, §5.3.3.7). C.inflight is taken before the ACK here: the
    /// window is capped at inflight_longterm in UP, so only the flight as sent can reach it.
    fn is_time_to_go_down(&mut self, ack: &AckEvent, rs: Option<&RateSample>) -> bool {
        // Precautionary Bandwidth Probing: Deceleration (§5.3.3.6).
        if self.prev_probe_too_high && u64::from(ack.prior_in_flight) >= self.inflight_longterm {
            self.prev_probe_precautionary = true;
            return true;
        }
        if ack.cwnd_limited && u64::from(self.cwnd) >= self.inflight_longterm {
            // bw is limited by inflight_longterm: the plateau says nothing.
            self.reset_full_bw();
            self.full_bw = rs.map_or(0, |rs| rs.delivery_rate);
        } else if self.full_bw_now {
            // The path's bandwidth is fully used.
            return true;
        }
        false
    }

    /// RaiseInflightLongtermSlope() (§5.3.3.9): 1, 2, 4, ... segments per round.
    fn raise_inflight_longterm_slope(&mut self) {
        let growth_this_round = 1u64 << self.bw_probe_up_rounds;
        self.bw_probe_up_rounds = (self.bw_probe_up_rounds + 1).min(30);
        self.probe_up_acked_per_inc =
            (u64::from(self.cwnd) / growth_this_round).max(u64::from(self.mss));
    }

    /// ProbeInflightLongtermUpward() (§5.3.3.9).
    fn probe_inflight_longterm_upward(&mut self, ack: &AckEvent) {
        if !ack.cwnd_limited || u64::from(self.cwnd) < self.inflight_longterm {
            // Not fully using inflight_longterm, so do not grow it.
            return;
        }
        self.bw_probe_up_acked = self
            .bw_probe_up_acked
            .saturating_add(u64::from(ack.delivered));
        let per_inc = self.probe_up_acked_per_inc.max(1);
        if self.bw_probe_up_acked >= per_inc {
            let delta = self.bw_probe_up_acked / per_inc;
            self.bw_probe_up_acked -= delta * per_inc;
            self.inflight_longterm = self
                .inflight_longterm
                .saturating_add(delta.saturating_mul(u64::from(self.mss)));
        }
        if self.round_start {
            self.raise_inflight_longterm_slope();
        }
    }

    /// AdaptLongTermModel() (§5.3.3.9). Returns whether it decided a state transition.
    fn adapt_long_term_model(&mut self, ack: &AckEvent, rs: Option<&RateSample>) -> bool {
        if self.ack_phase == AckPhase::ProbeStarting && self.round_start {
            // Starting to get bandwidth-probing samples.
            self.ack_phase = AckPhase::ProbeFeedback;
        }
        if self.ack_phase == AckPhase::ProbeStopping && self.round_start {
            // The end of the samples from the bandwidth probe.
            self.is_bw_probe_sample = false;
            self.ack_phase = AckPhase::Init;
            let app_limited = !matches!(rs, Some(rs) if !rs.is_app_limited);
            if self.state.is_probe_bw() && !app_limited {
                self.advance_max_bw_filter();
            }
            // Precautionary Bandwidth Probing: Acceleration (§5.3.3.6).
            if self.state.is_probe_bw()
                && self.prev_probe_precautionary
                && !self.prev_probe_too_high
            {
                self.start_probe_bw_refill();
                return true;
            }
        }
        let Some(rs) = rs else { return false };
        if !is_inflight_too_high(rs) {
            // The loss rate is safe: adjust the upper bounds upward.
            if self.inflight_longterm == INF {
                return false;
            }
            if u64::from(rs.tx_in_flight) > self.inflight_longterm {
                self.inflight_longterm = u64::from(rs.tx_in_flight);
            }
            if self.state == State::ProbeBwUp {
                self.probe_inflight_longterm_upward(ack);
            }
        }
        false
    }

    /// UpdateProbeBWCyclePhase() (§5.3.3.9).
    fn update_probe_bw_cycle_phase(
        &mut self,
        now: Instant,
        ack: &AckEvent,
        rs: Option<&RateSample>,
    ) {
        if !self.full_bw_reached {
            return;
        }
        if self.adapt_long_term_model(ack, rs) {
            return;
        }
        match self.state {
            State::ProbeBwDown => {
                if self.is_time_to_probe_bw(now) {
                    return;
                }
                if self.is_time_to_cruise(ack) {
                    self.start_probe_bw_cruise();
                }
            }
            State::ProbeBwCruise => {
                self.is_time_to_probe_bw(now);
            }
            State::ProbeBwRefill => {
                // After one round of REFILL, start UP.
                if self.round_start {
                    self.is_bw_probe_sample = true;
                    self.start_probe_bw_up(rs);
                }
            }
            State::ProbeBwUp => {
                if self.is_time_to_go_down(ack, rs) {
                    // No high loss (yet).
                    self.prev_probe_too_high = false;
                    self.start_probe_bw_down(now);
                }
            }
            State::Startup | State::Drain | State::ProbeRtt => {}
        }
    }

    // ----- ProbeRTT and min_rtt -----

    /// UpdateMinRTT() (§5.3.4.3).
    fn update_min_rtt(&mut self, now: Instant, rtt: Option<Duration>) {
        self.probe_rtt_expired = now > self.probe_rtt_min_stamp + PROBE_RTT_INTERVAL;
        if let Some(rtt) = rtt {
            let lower = match self.probe_rtt_min_delay {
                Some(d) => rtt < d,
                None => true,
            };
            if lower || self.probe_rtt_expired {
                self.probe_rtt_min_delay = Some(rtt);
                self.probe_rtt_min_stamp = now;
            }
        }
        let min_rtt_expired = now > self.min_rtt_stamp + MIN_RTT_FILTER_LEN;
        if let Some(delay) = self.probe_rtt_min_delay {
            let lower = match self.min_rtt {
                Some(m) => delay < m,
                None => true,
            };
            if lower || min_rtt_expired {
                self.min_rtt = Some(delay);
                self.min_rtt_stamp = self.probe_rtt_min_stamp;
            }
        }
    }

    /// ProbeRTTCwnd() (§5.6.4.5): half the BDP, at least BBR.MinPipeCwnd.
    fn probe_rtt_cwnd(&self) -> u64 {
        self.bdp_multiple_with(self.bw, PROBE_RTT_CWND_GAIN)
            .max(self.min_pipe_cwnd())
    }

    /// CheckProbeRTT() (§5.3.4.3).
    fn check_probe_rtt(&mut self, now: Instant, ack: &AckEvent) {
        if self.state != State::ProbeRtt && self.probe_rtt_expired && !self.idle_restart {
            self.enter_probe_rtt();
            self.save_cwnd();
            self.probe_rtt_done_stamp = None;
            self.ack_phase = AckPhase::ProbeStopping;
            self.start_round();
        }
        if self.state == State::ProbeRtt {
            self.handle_probe_rtt(now, ack);
        }
        if ack.delivered > 0 {
            self.idle_restart = false;
        }
    }

    /// HandleProbeRTT() (§5.3.4.3): hold inflight at ProbeRTTCwnd() for 200 ms and a round.
    fn handle_probe_rtt(&mut self, now: Instant, ack: &AckEvent) {
        // MarkConnectionAppLimited(): samples of what is sent now say nothing of the path.
        self.app_limited_until = self
            .delivered
            .saturating_add(u64::from(ack.in_flight))
            .max(1);
        if self.probe_rtt_done_stamp.is_none() && u64::from(ack.in_flight) <= self.probe_rtt_cwnd()
        {
            self.probe_rtt_done_stamp = Some(now + PROBE_RTT_DURATION);
            self.probe_rtt_round_done = false;
            self.start_round();
        } else if self.probe_rtt_done_stamp.is_some() {
            if self.round_start {
                self.probe_rtt_round_done = true;
            }
            if self.probe_rtt_round_done {
                self.check_probe_rtt_done(now);
            }
        }
    }

    /// CheckProbeRTTDone() (§5.3.4.3).
    fn check_probe_rtt_done(&mut self, now: Instant) {
        if self.probe_rtt_done_stamp.is_some_and(|done| now > done) {
            // Schedule the next ProbeRTT.
            self.probe_rtt_min_stamp = now;
            self.restore_cwnd();
            self.exit_probe_rtt(now);
        }
    }

    // ----- Loss -----

    /// ResetCongestionSignals() (§5.5.10.3).
    fn reset_congestion_signals(&mut self) {
        self.is_loss_in_round = false;
        self.bw_latest = 0;
        self.inflight_latest = 0;
    }

    /// ResetShortTermModel() (§5.5.10.3).
    fn reset_short_term_model(&mut self) {
        self.bw_shortterm = INF;
        self.inflight_shortterm = INF;
    }

    /// NoteLoss() (§5.5.10.2): the first loss of a round starts a loss round and saves what
    /// an undo would restore.
    fn note_loss(&mut self) {
        if !self.is_loss_in_round {
            self.loss_round_delivered = self.delivered;
            self.save_state_upon_loss();
        }
        self.is_loss_in_round = true;
    }

    /// The loss signal of a recovery episode's start (OnEnterFastRecovery() and
    /// OnEnterRTO(), §5.6.4.4): SaveStateUponLoss() and a loss in this round. If the ACK
    /// that revealed the loss was processed first, it already saved the state, before its
    /// loss response changed the model, and that state is kept.
    fn note_recovery_loss(&mut self) {
        if !self.loss_noted_by_last_ack {
            self.save_state_upon_loss();
            if !self.is_loss_in_round {
                self.loss_round_delivered = self.delivered;
            }
            self.is_loss_in_round = true;
        }
        self.loss_noted_by_last_ack = false;
    }

    /// HandleLostPacket() (§5.5.10.2), once per ACK that marked data lost, judged on that
    /// ACK's rate sample.
    fn handle_lost(&mut self, now: Instant, rs: Option<&RateSample>) {
        self.note_loss();
        self.loss_noted_by_last_ack = true;
        self.loss_events_in_round = self.loss_events_in_round.saturating_add(1);
        if !self.is_bw_probe_sample {
            // Not data sent while probing bandwidth.
            return;
        }
        if let Some(rs) = rs {
            if is_inflight_too_high(rs) {
                self.handle_inflight_too_high(now, rs);
            }
        }
    }

    /// HandleInflightTooHigh() (§5.5.10.2): inflight_longterm = max(tx_in_flight,
    /// BBR.Beta × TargetInflight()), and a probe in UP ends.
    fn handle_inflight_too_high(&mut self, now: Instant, rs: &RateSample) {
        self.prev_probe_too_high = true;
        // Only react once per bandwidth probe.
        self.is_bw_probe_sample = false;
        if !rs.is_app_limited {
            self.inflight_longterm =
                u64::from(rs.tx_in_flight).max(scale(self.target_inflight(), BETA));
        }
        if self.state == State::ProbeBwUp {
            self.undo_state = Some(State::ProbeBwUp);
            self.start_probe_bw_down(now);
        }
    }

    /// UpdateLatestDeliverySignals() (§5.5.10.3).
    fn update_latest_delivery_signals(&mut self, rs: Option<&RateSample>) {
        self.loss_round_start = false;
        let Some(rs) = rs else { return };
        self.bw_latest = self.bw_latest.max(rs.delivery_rate);
        self.inflight_latest = self.inflight_latest.max(rs.delivered);
        if rs.prior_delivered >= self.loss_round_delivered {
            self.loss_round_delivered = self.delivered;
            self.loss_round_start = true;
        }
    }

    /// AdvanceLatestDeliverySignals() (§5.5.10.3).
    fn advance_latest_delivery_signals(&mut self, rs: Option<&RateSample>) {
        if self.loss_round_start {
            if let Some(rs) = rs {
                self.bw_latest = rs.delivery_rate;
                self.inflight_latest = rs.delivered;
            }
            self.loss_events_in_round = 0;
        }
    }

    /// UpdateCongestionSignals() (§5.5.10.3).
    fn update_congestion_signals(&mut self, ack: &AckEvent, rs: Option<&RateSample>) {
        self.update_max_bw(ack, rs);
        if !self.loss_round_start {
            // Wait until the end of the round trip.
            return;
        }
        self.adapt_lower_bounds_from_congestion();
        self.is_loss_in_round = false;
    }

    /// IsProbingBW() (§5.3.3.9).
    fn is_probing_bw(&self) -> bool {
        matches!(
            self.state,
            State::Startup | State::ProbeBwRefill | State::ProbeBwUp
        )
    }

    /// AdaptLowerBoundsFromCongestion() (§5.5.10.3): once per round with loss, outside
    /// bandwidth probing, bw_shortterm and inflight_shortterm move towards the latest
    /// delivery process, by at most BBR.Beta.
    fn adapt_lower_bounds_from_congestion(&mut self) {
        if self.is_probing_bw() || !self.is_loss_in_round {
            return;
        }
        // InitLowerBounds(). In recovery, cwnd is the one modulated for recovery (one
        // segment after a timeout); start from the last known good one instead.
        if self.bw_shortterm == INF {
            self.bw_shortterm = self.max_bw;
        }
        if self.inflight_shortterm == INF {
            let cwnd = if self.recovery.is_some() {
                self.cwnd.max(self.prior_cwnd)
            } else {
                self.cwnd
            };
            self.inflight_shortterm = u64::from(cwnd);
        }
        // LossLowerBounds().
        self.bw_shortterm = self.bw_latest.max(scale(self.bw_shortterm, BETA));
        self.inflight_shortterm = self
            .inflight_latest
            .max(scale(self.inflight_shortterm, BETA));
    }

    // ----- Recovery, undo -----

    /// SaveCwnd() (§5.6.4.4): the last known good cwnd, unmodulated by loss recovery or
    /// ProbeRTT.
    fn save_cwnd(&mut self) {
        if self.recovery.is_none() && self.state != State::ProbeRtt {
            self.prior_cwnd = self.cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
        }
    }

    /// RestoreCwnd() (§5.6.4.4).
    fn restore_cwnd(&mut self) {
        self.cwnd = self.cwnd.max(self.prior_cwnd).min(MAX_CWND);
    }

    /// SaveStateUponLoss() (§5.5.11.1).
    fn save_state_upon_loss(&mut self) {
        self.save_cwnd();
        self.undo_state = None;
        self.undo_bw_shortterm = self.bw_shortterm;
        self.undo_inflight_shortterm = self.inflight_shortterm;
        self.undo_inflight_longterm = self.inflight_longterm;
    }

    /// Loss recovery ended (§5.6.4.4): back to the last known good cwnd, within the model.
    fn exit_recovery(&mut self) {
        self.recovery = None;
        self.recovery_ack_seen = false;
        self.packet_conservation = false;
        self.restore_cwnd();
        self.bound_cwnd_for_probe_rtt();
        self.bound_cwnd_for_model();
    }

    /// Follows the engine's recovery flags. A timeout's recovery has no end callback: the
    /// first ACK without `after_timeout` ends it. Fast recovery ends with `on_recovery_end`,
    /// or, should that not come, with an ACK outside it after ACKs inside it.
    fn track_recovery(&mut self, ack: &AckEvent) {
        match self.recovery {
            Some(Recovery::Timeout) if !ack.after_timeout => self.exit_recovery(),
            Some(Recovery::Fast) if ack.in_recovery => self.recovery_ack_seen = true,
            Some(Recovery::Fast) if self.recovery_ack_seen && !ack.after_timeout => {
                self.exit_recovery();
            }
            _ => {}
        }
    }

    // ----- Control parameters -----

    /// SetPacingRateWithGain() (§5.6.2): gain × bw less the 1 % margin; before the pipe is
    /// full the rate only grows.
    fn set_pacing_rate_with_gain(&mut self, gain: f64) {
        let rate = scale(self.bw, gain * (100.0 - PACING_MARGIN_PERCENT) / 100.0);
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
        self.pacing_rate = self.pacing_rate.max(self.min_pacing_rate());
    }

    /// SetSendQuantum() (§5.6.3), and the TCP offload budget it implies (§5.5.8.1).
    fn set_send_quantum(&mut self) {
        self.send_quantum = (self.pacing_rate / 1000)
            .min(SEND_QUANTUM_MAX)
            .max(2 * u64::from(self.mss));
        self.offload_budget = self.send_quantum.saturating_mul(3);
    }

    /// UpdateMaxInflight() (§5.6.4.2).
    fn update_max_inflight(&mut self) {
        let cap = self
            .bdp_multiple_with(self.bw, self.cwnd_gain)
            .saturating_add(self.extra_acked);
        self.max_inflight = self.quantization_budget(cap);
    }

    /// SetCwnd() (§5.6.4.6), with packet conservation in the first round of fast recovery.
    fn set_cwnd(&mut self, ack: &AckEvent, rs: Option<&RateSample>) {
        self.update_max_inflight();
        if self.packet_conservation {
            let round_over = match rs {
                Some(rs) => rs.prior_delivered >= self.recovery_start_delivered,
                None => ack.round_start,
            };
            if round_over {
                self.packet_conservation = false;
            }
        }
        let cwnd = u64::from(self.cwnd);
        let acked = u64::from(ack.delivered);
        if self.packet_conservation {
            // Send one segment per segment that left the network: lost data leaves the
            // window, delivered data may be replaced.
            let conserved = u64::from(ack.in_flight).saturating_add(acked);
            let cwnd = cwnd.saturating_sub(u64::from(ack.lost)).max(conserved);
            self.set_cwnd_bytes(cwnd, u64::from(min_window(self.mss)));
        } else {
            let cwnd = if self.full_bw_reached {
                cwnd.saturating_add(acked).min(self.max_inflight)
            } else if cwnd < self.max_inflight || self.delivered < u64::from(self.initial_cwnd) {
                cwnd.saturating_add(acked)
            } else {
                cwnd
            };
            self.set_cwnd_bytes(cwnd, self.min_pipe_cwnd());
        }
        self.bound_cwnd_for_probe_rtt();
        self.bound_cwnd_for_model();
    }

    /// BoundCwndForProbeRTT() (§5.6.4.5).
    fn bound_cwnd_for_probe_rtt(&mut self) {
        if self.state == State::ProbeRtt {
            let cap = self.probe_rtt_cwnd();
            if u64::from(self.cwnd) > cap {
                self.set_cwnd_bytes(cap, 0);
            }
        }
    }

    /// BoundCwndForModel() (§5.6.4.7): inflight_longterm while probing bandwidth, with
    /// headroom in CRUISE and ProbeRTT, and inflight_shortterm everywhere.
    fn bound_cwnd_for_model(&mut self) {
        let mut cap = INF;
        if self.state.is_probe_bw() && self.state != State::ProbeBwCruise {
            cap = self.inflight_longterm;
        } else if matches!(self.state, State::ProbeRtt | State::ProbeBwCruise) {
            cap = self.inflight_with_headroom();
        }
        cap = cap.min(self.inflight_shortterm).max(self.min_pipe_cwnd());
        if u64::from(self.cwnd) > cap {
            self.set_cwnd_bytes(cap, 0);
        }
    }
}

impl CongestionControl for Bbr {
    fn name(&self) -> &'static str {
        "bbr"
    }

    fn window(&self) -> u32 {
        self.cwnd
    }

    fn ssthresh(&self) -> u32 {
        // BBR has no slow-start threshold; the connection skips PRR for it.
        u32::MAX
    }

    fn on_ack(&mut self, now: Instant, ack: &AckEvent) {
        let now = self.clock(now);
        self.set_mss(ack.mss);
        if !self.started {
            self.start(now);
        }
        self.delivered = self.delivered.max(ack.total_delivered);
        self.last_in_flight = ack.in_flight;
        self.last_delivered = ack.delivered;
        if !self.has_seen_rtt {
            if let Some(srtt) = ack.srtt.filter(|d| !d.is_zero()) {
                // The first RTT sample refines the initial pacing rate (§5.6.2).
                self.has_seen_rtt = true;
                if self.max_bw == 0 {
                    self.init_pacing_rate(Some(srtt));
                }
            }
        }
        self.track_recovery(ack);
        self.loss_noted_by_last_ack = false;
        let rs = self.effective_sample(ack);
        let rs = rs.as_ref();
        if ack.lost > 0 {
            self.handle_lost(now, rs);
        }

        // UpdateModelAndState() (§5.2.3).
        self.update_latest_delivery_signals(rs);
        self.update_congestion_signals(ack, rs);
        self.update_ack_aggregation(now, ack);
        self.check_full_bw_reached(rs);
        self.check_startup_done(rs);
        self.check_drain_done(now, ack);
        self.update_probe_bw_cycle_phase(now, ack, rs);
        // The RTT of the most recently sent data this ACK covers (§5.5.7.1).
        self.update_min_rtt(now, rs.and_then(|rs| rs.rtt).or(ack.rtt));
        self.check_probe_rtt(now, ack);
        self.advance_latest_delivery_signals(rs);
        self.bound_bw_for_model();

        // UpdateControlParameters() (§5.2.3).
        self.set_pacing_rate_with_gain(self.pacing_gain);
        self.set_send_quantum();
        self.set_cwnd(ack, rs);
    }

    fn on_congestion_event(&mut self, now: Instant, ev: &CongestionEvent) {
        self.clock(now);
        self.set_mss(ev.mss);
        match ev.kind {
            CongestionKind::Loss => {
                match self.recovery {
                    Some(Recovery::Fast) => {
                        self.note_loss();
                        return;
                    }
                    // Fast recovery out of a timeout's: its state was saved then already.
                    Some(Recovery::Timeout) => self.note_loss(),
                    // OnEnterFastRecovery() (§5.6.4.4): SaveCwnd(), SaveStateUponLoss().
                    None => self.note_recovery_loss(),
                }
                self.recovery = Some(Recovery::Fast);
                self.recovery_ack_seen = false;
                // Packet conservation for the first round: what is in flight plus what the
                // latest ACK delivered.
                self.packet_conservation = true;
                self.recovery_start_delivered = self.delivered;
                if !self.started {
                    // No acknowledgment yet: nothing to conserve against.
                    return;
                }
                let conserved =
                    u64::from(self.last_in_flight).saturating_add(u64::from(self.last_delivered));
                let cwnd = conserved.min(u64::from(self.cwnd));
                self.set_cwnd_bytes(cwnd, u64::from(min_window(self.mss)));
            }
            CongestionKind::ProbeRepairedLoss => {
                // A loss, repaired: a congestion signal for the short-term model (§5.5.10.3
                // applies "whether in fast recovery, RTO recovery, TLP recovery"), but no
                // recovery and no window change.
                self.note_loss();
            }
        }
    }

    fn on_recovery_end(&mut self, now: Instant, mss: u32) {
        self.clock(now);
        self.set_mss(mss);
        if self.recovery.is_some() {
            self.exit_recovery();
        }
    }

    fn on_timeout(&mut self, now: Instant, _in_flight: u32, mss: u32, _first: bool) {
        self.clock(now);
        self.set_mss(mss);
        // OnEnterRTO() (§5.6.4.4): SaveCwnd(), SaveStateUponLoss(), cwnd = C.inflight + 1.
        // `_in_flight` is the flight before the timeout (RFC 5681 FlightSize); the timeout
        // marks all of it lost, so C.inflight is now zero and the window one segment.
        // A later expiry of the same series keeps the first one's saved window (SaveCwnd()
        // takes the max in recovery).
        self.save_cwnd();
        self.note_recovery_loss();
        self.recovery = Some(Recovery::Timeout);
        self.recovery_ack_seen = false;
        self.packet_conservation = false;
        self.set_cwnd_bytes(u64::from(self.mss), 1);
    }

    fn on_idle_restart(&mut self, mss: u32) {
        self.set_mss(mss);
        // HandleRestartFromIdle() (§5.4.1): the window stays as is.
        self.idle_restart = true;
        self.aggregation_reset_pending = true;
        if self.state.is_probe_bw() {
            // Pace at exactly bw to get back to a full pipe within a round.
            self.set_pacing_rate_with_gain(1.0);
        } else if self.state == State::ProbeRtt && self.probe_rtt_done_stamp.is_some() {
            // The connection went idle after inflight reached ProbeRTT's target, and then
            // stayed idle for more than an RTO: the queue is drained, which is what
            // CheckProbeRTTDone() waits for (the engine gives no time here; the latest one
            // known stands in for it).
            let now = self.last_now;
            self.probe_rtt_min_stamp = now;
            self.restore_cwnd();
            self.exit_probe_rtt(now);
        }
    }

    fn undo(&mut self, cwnd: u32, _ssthresh: u32) {
        // HandleSpuriousLossDetection() (§5.5.11.2).
        self.recovery = None;
        self.recovery_ack_seen = false;
        self.packet_conservation = false;
        self.prior_cwnd = self.prior_cwnd.max(cwnd);
        self.restore_cwnd();
        self.is_loss_in_round = false;
        self.reset_full_bw();
        self.bw_shortterm = self.bw_shortterm.max(self.undo_bw_shortterm);
        self.inflight_shortterm = self.inflight_shortterm.max(self.undo_inflight_shortterm);
        self.inflight_longterm = self.inflight_longterm.max(self.undo_inflight_longterm);
        // A probe that the loss ended resumes.
        if self.undo_state == Some(State::Startup) && self.state != State::Startup {
            self.full_bw_reached = false;
            if self.state != State::ProbeRtt {
                self.enter_startup();
            }
        } else if self.undo_state == Some(State::ProbeBwUp)
            && !matches!(self.state, State::ProbeBwUp | State::ProbeRtt)
        {
            self.start_probe_bw_refill();
        }
        self.undo_state = None;
        self.bound_bw_for_model();
        self.bound_cwnd_for_probe_rtt();
        self.bound_cwnd_for_model();
    }

    fn seed(&mut self, cwnd: u32, _ssthresh: u32) {
        // Continue from the previous algorithm's window (§5.6.4.1 leaves the window before
        // any measurement to the transport).
        self.set_cwnd_bytes(u64::from(cwnd), self.min_pipe_cwnd());
        self.prior_cwnd = self.cwnd;
    }

    fn pacing_rate(&self) -> Option<u64> {
        Some(self.pacing_rate.max(1))
    }

    fn manages_recovery(&self) -> bool {
        true
    }

    fn state(&self) -> String {
        if self.max_bw == 0 {
            return self.state.name().to_string();
        }
        let mut s = format!(
            "{} bw={} min_rtt={}",
            self.state.name(),
            fmt_rate(self.bw),
            self.min_rtt.map_or_else(|| "?".to_string(), fmt_duration)
        );
        if self.inflight_longterm != INF {
            s.push_str(&format!(" inflight_longterm={}", self.inflight_longterm));
        }
        if self.inflight_shortterm != INF {
            s.push_str(&format!(" inflight_shortterm={}", self.inflight_shortterm));
        }
        s
    }
}

/// IsInflightTooHigh() (§5.5.10.2): more than BBR.LossThresh of the flight lost. (With
/// SACK; a connection without it would react to any loss.)
fn is_inflight_too_high(rs: &RateSample) -> bool {
    u128::from(rs.lost) * LOSS_THRESH_INV > u128::from(rs.tx_in_flight)
}

/// bytes/s × time, in bytes, saturating.
fn volume(bw: u64, d: Duration) -> u64 {
    match u128::from(bw).checked_mul(d.as_nanos()) {
        Some(v) => u64::try_from(v / 1_000_000_000).unwrap_or(u64::MAX),
        None => u64::MAX,
    }
}

/// bytes / time, in bytes per second, saturating.
fn rate(bytes: u64, d: Duration) -> u64 {
    let ns = d.as_nanos().max(1);
    u64::try_from(u128::from(bytes) * 1_000_000_000 / ns).unwrap_or(u64::MAX)
}

/// x × gain, saturating (an `as` cast from f64 saturates).
fn scale(x: u64, gain: f64) -> u64 {
    if x == INF {
        return INF;
    }
    (x as f64 * gain) as u64
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fmt_rate(bw: u64) -> String {
    let b = bw as f64;
    if b >= 1e9 {
        format!("{:.1}GB/s", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1}MB/s", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1}kB/s", b / 1e3)
    } else {
        format!("{bw}B/s")
    }
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us >= 10_000 {
        format!("{}ms", us / 1000)
    } else {
        format!("{:.2}ms", us as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::CongestionKind;
    use super::*;
    use std::collections::VecDeque;

    const MSS: u32 = 1000;
    /// Bottleneck bandwidth of the model path, bytes per second.
    const B: u64 = 5_000_000;
    /// Base RTT of the model path.
    const R_MS: u64 = 40;
    const NS: u64 = 1_000_000_000;

    fn secs(s: f64) -> u64 {
        (s * NS as f64) as u64
    }

    /// One segment in flight in the model path.
    #[derive(Debug, Clone)]
    struct Pkt {
        seq: u64,
        size: u32,
        sent: u64,
        delivered: u64,
        delivered_time: u64,
        first_sent_time: u64,
        app_limited: bool,
        tx_in_flight: u32,
        lost_at_send: u64,
        /// When its acknowledgment arrives; None if the bottleneck dropped it.
        acked_at: Option<u64>,
    }

    /// A path with one FIFO bottleneck of `bw` bytes/s and `buffer` bytes of queue, and a
    /// base RTT, driven by a sender that obeys the window and the pacing rate. Every
    /// segment is acknowledged on its own; a dropped segment is marked lost when a later
    /// one is acknowledged. Rate samples follow draft-cheng-iccrg-delivery-rate-estimation.
    /// Times are in nanoseconds.
    struct Sim {
        cc: Bbr,
        now: u64,
        bw: u64,
        base_rtt: u64,
        buffer: u64,
        link_free: u64,
        next_send: u64,
        pkts: VecDeque<Pkt>,
        seq: u64,
        in_flight: u32,
        delivered: u64,
        delivered_time: u64,
        first_sent_time: u64,
        lost: u64,
        app_limited_until: u64,
        /// Bytes per second the application supplies (None: always has data).
        app_rate: Option<u64>,
        app_start: u64,
        app_sent: u64,
        /// Drop one segment in this many (0: only overflow drops).
        drop_every: u64,
        drop_count: u64,
        next_round_delivered: u64,
        min_rtt_seen: u64,
        srtt: Option<u64>,
        /// Fast recovery ends when this segment is acknowledged.
        recovery_until: Option<u64>,
        /// Timeout recovery ends when this segment is acknowledged.
        rto_until: Option<u64>,
        /// State changes: (time, new state).
        trace: Vec<(u64, State)>,
        timeouts: u32,
    }

    impl Sim {
        fn new(bw: u64, rtt_ms: u64, buffer: u64) -> Sim {
            Sim {
                cc: Bbr::new(MSS),
                now: secs(1.0),
                bw,
                base_rtt: rtt_ms * 1_000_000,
                buffer,
                link_free: 0,
                next_send: 0,
                pkts: VecDeque::new(),
                seq: 0,
                in_flight: 0,
                delivered: 0,
                delivered_time: 0,
                first_sent_time: 0,
                lost: 0,
                app_limited_until: 0,
                app_rate: None,
                app_start: 0,
                app_sent: 0,
                drop_every: 0,
                drop_count: 0,
                next_round_delivered: 0,
                min_rtt_seen: u64::MAX,
                srtt: None,
                recovery_until: None,
                rto_until: None,
                trace: vec![(secs(1.0), State::Startup)],
                timeouts: 0,
            }
        }

        /// The BDP of the path: bandwidth × (base RTT + one segment's service time).
        fn bdp(&self) -> u64 {
            self.bw * (self.base_rtt + u64::from(MSS) * NS / self.bw) / NS
        }

        fn instant(&self) -> Instant {
            Instant::from_micros(self.now / 1000)
        }

        fn limit_app(&mut self, rate: Option<u64>) {
            self.app_rate = rate;
            self.app_start = self.now;
            self.app_sent = 0;
        }

        /// When the sender may send next: window room, then pacing, then application data.
        fn send_time(&self) -> Option<(u64, bool)> {
            if self.in_flight + MSS > self.cc.window() {
                return None;
            }
            let paced = self.next_send.max(self.now);
            match self.app_rate {
                None => Some((paced, false)),
                Some(r) => {
                    let ready = self.app_start + (self.app_sent + u64::from(MSS)) * NS / r;
                    Some((paced.max(ready), ready > paced))
                }
            }
        }

        fn send(&mut self, app_limited: bool) {
            let size = MSS;
            if app_limited {
                // The application, not the window or the pacing, held this segment back.
                self.app_limited_until = (self.delivered + u64::from(self.in_flight)).max(1);
            }
            if self.in_flight == 0 {
                self.first_sent_time = self.now;
                self.delivered_time = self.now;
            }
            let queue = self.link_free.saturating_sub(self.now) * self.bw / NS;
            let mut drop = queue + u64::from(size) > self.buffer;
            if self.drop_every > 0 {
                self.drop_count += 1;
                if self.drop_count >= self.drop_every {
                    self.drop_count = 0;
                    drop = true;
                }
            }
            let acked_at = if drop {
                None
            } else {
                let depart = self.now.max(self.link_free) + u64::from(size) * NS / self.bw;
                self.link_free = depart;
                Some(depart + self.base_rtt)
            };
            self.pkts.push_back(Pkt {
                seq: self.seq,
                size,
                sent: self.now,
                delivered: self.delivered,
                delivered_time: self.delivered_time,
                first_sent_time: self.first_sent_time,
                app_limited: self.app_limited_until != 0,
                tx_in_flight: self.in_flight + size,
                lost_at_send: self.lost,
                acked_at,
            });
            self.seq += 1;
            self.app_sent += u64::from(size);
            self.in_flight += size;
            let pacing = self.cc.pacing_rate().unwrap();
            self.next_send = self.now + u64::from(size) * NS / pacing;
        }

        fn ack(&mut self, at: u64) {
            self.now = at;
            let prior_in_flight = self.in_flight;
            let mut lost_now = 0;
            while self.pkts.front().is_some_and(|p| p.acked_at.is_none()) {
                let p = self.pkts.pop_front().unwrap();
                self.lost += u64::from(p.size);
                self.in_flight -= p.size;
                lost_now += p.size;
            }
            let p = self.pkts.pop_front().unwrap();
            self.in_flight -= p.size;
            self.delivered += u64::from(p.size);
            self.delivered_time = self.now;
            if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
                self.app_limited_until = 0;
            }
            let rtt = self.now - p.sent;
            self.min_rtt_seen = self.min_rtt_seen.min(rtt);
            let srtt = match self.srtt {
                None => rtt,
                Some(s) => (7 * s + rtt) / 8,
            };
            self.srtt = Some(srtt);
            let send_elapsed = p.sent - p.first_sent_time;
            let ack_elapsed = self.delivered_time - p.delivered_time;
            self.first_sent_time = p.sent;
            let interval = send_elapsed.max(ack_elapsed);
            let rs_delivered = self.delivered - p.delivered;
            let rate = (interval >= self.min_rtt_seen).then(|| RateSample {
                delivered: rs_delivered,
                interval: Duration::from_nanos(interval),
                delivery_rate: rs_delivered * NS / interval,
                prior_delivered: p.delivered,
                is_app_limited: p.app_limited,
                tx_in_flight: p.tx_in_flight,
                lost: self.lost - p.lost_at_send,
                rtt: Some(Duration::from_nanos(rtt)),
            });
            let round_start = p.delivered >= self.next_round_delivered;
            if round_start {
                self.next_round_delivered = self.delivered;
            }
            let now = self.instant();
            if lost_now > 0 && self.recovery_until.is_none() && self.rto_until.is_none() {
                self.recovery_until = Some(self.seq - 1);
                let ev = CongestionEvent {
                    kind: CongestionKind::Loss,
                    in_flight: prior_in_flight,
                    mss: MSS,
                };
                self.cc.on_congestion_event(now, &ev);
            }
            if self.rto_until.is_some_and(|s| p.seq > s) {
                self.rto_until = None;
            }
            let ev = AckEvent {
                acked: p.size,
                delivered: p.size,
                lost: lost_now,
                prior_in_flight,
                in_flight: self.in_flight,
                mss: MSS,
                rtt: Some(Duration::from_nanos(rtt)),
                srtt: Some(Duration::from_nanos(srtt)),
                min_rtt: Some(Duration::from_nanos(self.min_rtt_seen)),
                rate,
                total_delivered: self.delivered,
                round_start,
                in_recovery: self.recovery_until.is_some(),
                after_timeout: self.rto_until.is_some(),
                cwnd_limited: prior_in_flight + MSS > self.cc.window(),
            };
            self.cc.on_ack(now, &ev);
            if self.recovery_until.is_some_and(|s| p.seq >= s) {
                self.recovery_until = None;
                self.cc.on_recovery_end(now, MSS);
            }
        }

        /// Everything in flight was lost: the retransmission timer fires.
        fn timeout(&mut self) {
            self.now += 200_000_000;
            let flight = self.in_flight;
            for p in self.pkts.drain(..) {
                self.lost += u64::from(p.size);
            }
            self.in_flight = 0;
            self.rto_until = Some(self.seq.saturating_sub(1));
            self.recovery_until = None;
            let now = self.instant();
            self.timeouts += 1;
            self.cc.on_timeout(now, flight, MSS, true);
            assert_eq!(self.cc.window(), MSS);
        }

        /// Runs until `end` (ns) or until `stop` holds after an acknowledgment.
        fn run(&mut self, end: u64, mut stop: impl FnMut(&Sim) -> bool) -> bool {
            while self.now < end {
                let ack_at = self.pkts.iter().find_map(|p| p.acked_at);
                let send = self.send_time();
                match (ack_at, send) {
                    (Some(a), Some((s, _))) if a <= s => self.ack(a),
                    (Some(a), None) => self.ack(a),
                    (_, Some((s, app_limited))) => {
                        self.now = s;
                        self.send(app_limited);
                        continue;
                    }
                    (None, None) => {
                        self.timeout();
                        continue;
                    }
                }
                let state = self.cc.state;
                if self.trace.last().map(|&(_, s)| s) != Some(state) {
                    self.trace.push((self.now, state));
                }
                if stop(self) {
                    return true;
                }
            }
            false
        }

        fn run_for(&mut self, d: f64, stop: impl FnMut(&Sim) -> bool) -> bool {
            let end = self.now + secs(d);
            self.run(end, stop)
        }

        /// States entered at or after `from` (ns).
        fn states_since(&self, from: u64) -> Vec<State> {
            self.trace
                .iter()
                .filter(|&&(t, _)| t >= from)
                .map(|&(_, s)| s)
                .collect()
        }
    }

    fn deep_path() -> Sim {
        let mut sim = Sim::new(B, R_MS, 0);
        sim.buffer = 10 * sim.bdp();
        sim
    }

    /// A path past Startup and Drain, at the start of its first ProbeBW cruise.
    fn cruising() -> Sim {
        let mut sim = deep_path();
        assert!(sim.run_for(5.0, |s| s.cc.state == State::ProbeBwCruise));
        sim
    }

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= expected.abs() * tolerance
    }

    /// An acknowledgment without a rate sample, for driving the controller by hand.
    fn ack(sim: &Sim, in_flight: u32, delivered: u32, lost: u32, in_recovery: bool) -> AckEvent {
        ack_with(sim, in_flight, delivered, lost, in_recovery, false)
    }

    fn ack_with(
        sim: &Sim,
        in_flight: u32,
        delivered: u32,
        lost: u32,
        in_recovery: bool,
        after_timeout: bool,
    ) -> AckEvent {
        AckEvent {
            acked: delivered,
            delivered,
            lost,
            prior_in_flight: in_flight + delivered + lost,
            in_flight,
            mss: MSS,
            rtt: None,
            srtt: Some(Duration::from_millis(R_MS)),
            min_rtt: Some(Duration::from_millis(R_MS)),
            rate: None,
            total_delivered: sim.delivered + u64::from(delivered),
            round_start: false,
            in_recovery,
            after_timeout,
            cwnd_limited: false,
        }
    }

    #[test]
    fn initial_window_and_pacing_rate() {
        let mut cc = Bbr::new(1000);
        assert_eq!((cc.window(), cc.ssthresh()), (10_000, u32::MAX));
        // InitPacingRate(): 2.77 × InitialCwnd / 1 ms before any RTT sample...
        assert_eq!(cc.pacing_rate(), Some(27_700_000));
        // ... and over the first srtt once there is one.
        let sim = Sim::new(B, R_MS, 0);
        let mut first = ack(&sim, 9000, 1000, 0, false);
        first.srtt = Some(Duration::from_millis(100));
        cc.on_ack(Instant::from_millis(100), &first);
        assert_eq!(cc.pacing_rate(), Some(277_000));
        // Startup then paces at 2.77 × max_bw × 0.99 once that is higher.
        let mut second = ack(&sim, 9000, 1000, 0, false);
        second.rate = Some(RateSample {
            delivered: 10_000,
            interval: Duration::from_millis(10),
            delivery_rate: 1_000_000,
            prior_delivered: 0,
            tx_in_flight: 10_000,
            rtt: Some(Duration::from_millis(100)),
            ..RateSample::default()
        });
        cc.on_ack(Instant::from_millis(110), &second);
        assert_eq!(cc.pacing_rate(), Some(2_742_300));
        assert_eq!(cc.state(), "startup bw=1.0MB/s min_rtt=100ms");
    }

    #[test]
    fn startup_fills_the_pipe_then_drains_into_probe_bw() {
        let mut sim = deep_path();
        let mut startup_pacing_ok = true;
        assert!(sim.run_for(3.0, |s| {
            if s.cc.state == State::Startup && s.cc.max_bw > 0 {
                let floor = STARTUP_PACING_GAIN * 0.99 * s.cc.max_bw as f64;
                startup_pacing_ok &= s.cc.pacing_rate as f64 >= floor - 1.0;
            }
            s.cc.state != State::Startup
        }));
        assert!(startup_pacing_ok, "Startup paces at 2.77 × max_bw or more");
        // The plateau ended Startup: max_bw within 2 % of the bottleneck, no loss bound.
        assert_eq!(sim.cc.state, State::Drain);
        assert!(
            close(sim.cc.max_bw as f64, B as f64, 0.02),
            "{}",
            sim.cc.max_bw
        );
        assert!(sim.cc.full_bw_reached && sim.cc.full_bw_count >= FULL_BW_COUNT);
        assert_eq!(sim.cc.inflight_longterm, INF);
        // Drain paces at 0.5 × bw less the margin.
        let drain = 0.5 * 0.99 * sim.cc.bw as f64;
        assert!(close(sim.cc.pacing_rate as f64, drain, 0.001));
        assert!(sim.run_for(2.0, |s| s.cc.state.is_probe_bw()));
        let states = sim.states_since(0);
        assert_eq!(states[..2], [State::Startup, State::Drain]);
        // ProbeBW starts in DOWN, and goes on to CRUISE as soon as the flight is below
        // the BDP (here on the same ACK, the queue being already drained).
        assert!(matches!(
            states[2],
            State::ProbeBwDown | State::ProbeBwCruise
        ));
        // The RTT model is the path's.
        let min_rtt = sim.cc.min_rtt.unwrap().as_nanos() as u64;
        assert_eq!(min_rtt, sim.min_rtt_seen);
    }

    #[test]
    fn probe_bw_cycles_with_the_draft_gains() {
        let mut sim = cruising();
        let start = sim.now;
        // (min, max) of pacing_rate / B in each phase, and of cwnd / BDP in cruise.
        let mut ratio = [(f64::MAX, 0.0f64); 4];
        let mut cruise_cwnd = (u64::MAX, 0u64);
        sim.run_for(12.0, |s| {
            let idx = match s.cc.state {
                State::ProbeBwDown => 0,
                State::ProbeBwCruise => 1,
                State::ProbeBwRefill => 2,
                State::ProbeBwUp => 3,
                _ => return false,
            };
            let r = s.cc.pacing_rate as f64 / B as f64;
            ratio[idx] = (ratio[idx].0.min(r), ratio[idx].1.max(r));
            if s.cc.state == State::ProbeBwCruise {
                let c = u64::from(s.cc.cwnd);
                cruise_cwnd = (cruise_cwnd.0.min(c), cruise_cwnd.1.max(c));
            }
            false
        });
        let expected = [0.90 * 0.99, 0.99, 0.99, 1.25 * 0.99];
        for (i, &(lo, hi)) in ratio.iter().enumerate() {
            assert!(
                close(lo, expected[i], 0.02) && close(hi, expected[i], 0.02),
                "phase {i}: pacing/B in [{lo}, {hi}], expected {}",
                expected[i]
            );
        }
        // cwnd = 2 × BDP plus a little aggregation allowance.
        let bdp = sim.bdp() as f64;
        assert!(
            cruise_cwnd.0 as f64 >= 2.0 * bdp * 0.98,
            "{cruise_cwnd:?} vs {bdp}"
        );
        assert!(
            cruise_cwnd.1 as f64 <= 2.0 * bdp * 1.05,
            "{cruise_cwnd:?} vs {bdp}"
        );
        assert!(close(sim.cc.max_bw as f64, B as f64, 0.02));
        // The cycle: DOWN, CRUISE, REFILL, UP, and a probe every 2 to 3 seconds or so
        // (ProbeRTT, once in 5 s, restarts the cycle in CRUISE).
        let trace: Vec<(u64, State)> = sim
            .trace
            .iter()
            .copied()
            .filter(|&(t, _)| t >= start)
            .collect();
        let mut probes = 0;
        for w in trace.windows(2) {
            let (t0, s0) = w[0];
            let (t1, s1) = w[1];
            let next = match s0 {
                State::ProbeBwDown => State::ProbeBwCruise,
                State::ProbeBwCruise => State::ProbeBwRefill,
                State::ProbeBwRefill => State::ProbeBwUp,
                State::ProbeRtt => State::ProbeBwCruise,
                _ => State::ProbeBwDown,
            };
            assert!(s1 == next || s1 == State::ProbeRtt, "{trace:?}");
            if s0 == State::ProbeBwRefill {
                probes += 1;
                // From the start of DOWN (the cycle's clock) to REFILL.
                let down = trace
                    .iter()
                    .rev()
                    .find(|&&(t, s)| t < t0 && matches!(s, State::ProbeBwDown | State::ProbeRtt));
                if let Some(&(td, State::ProbeBwDown)) = down {
                    let wait = (t0 - td) as f64 / NS as f64;
                    assert!(
                        (1.9..3.1).contains(&wait),
                        "probed after {wait} s: {trace:?}"
                    );
                }
                assert!(t1 - t0 < secs(0.5));
            }
        }
        assert!(probes >= 3, "{trace:?}");
    }

    #[test]
    fn probe_rtt_after_five_seconds_for_200_ms() {
        let mut sim = cruising();
        let mut stamp = sim.cc.probe_rtt_min_stamp;
        let mut cwnd_before = 0;
        assert!(sim.run_for(10.0, |s| {
            if s.cc.state == State::ProbeRtt {
                return true;
            }
            stamp = s.cc.probe_rtt_min_stamp;
            cwnd_before = s.cc.cwnd;
            false
        }));
        // Entered once the RTT sample was 5 s old (the path's RTT never got lower).
        let entered = sim.now;
        let age = sim.instant() - stamp;
        assert!(age > PROBE_RTT_INTERVAL, "{age:?}");
        assert!(
            age < PROBE_RTT_INTERVAL + Duration::from_millis(2 * R_MS),
            "{age:?}"
        );
        // The window is half the BDP (at least 4 segments) throughout.
        let cap = (sim.cc.bdp() / 2).max(4 * u64::from(MSS));
        let mut max_cwnd = 0;
        assert!(sim.run_for(2.0, |s| {
            if s.cc.state != State::ProbeRtt {
                return true;
            }
            max_cwnd = max_cwnd.max(u64::from(s.cc.cwnd));
            false
        }));
        assert!(max_cwnd <= cap + u64::from(MSS), "{max_cwnd} > {cap}");
        let held = Duration::from_nanos(sim.now - entered);
        assert!(held > PROBE_RTT_DURATION, "{held:?}");
        assert!(
            held < PROBE_RTT_DURATION + Duration::from_millis(4 * R_MS),
            "{held:?}"
        );
        // Back to cruising with the window from before.
        assert_eq!(sim.cc.state, State::ProbeBwCruise);
        assert!(sim.cc.cwnd as f64 >= 0.95 * f64::from(cwnd_before));
        assert!(sim.instant() - sim.cc.probe_rtt_min_stamp < Duration::from_millis(1));
    }

    /// A controller in ProbeBW_UP, from a clean path.
    fn probing_up() -> Sim {
        let mut sim = cruising();
        assert!(sim.run_for(5.0, |s| s.cc.state == State::ProbeBwUp));
        sim
    }

    /// An acknowledgment reporting new loss, with a sample sent at `tx_in_flight` that saw
    /// `lost` bytes lost since.
    fn lossy_ack(sim: &Sim, tx_in_flight: u32, lost: u64) -> AckEvent {
        // A flight above the BDP still: DOWN has a queue to drain.
        let mut ev = ack(sim, 2 * sim.bdp() as u32, MSS, MSS, false);
        ev.rate = Some(RateSample {
            delivered: u64::from(tx_in_flight),
            interval: Duration::from_millis(R_MS),
            delivery_rate: B,
            prior_delivered: sim.delivered - 1,
            is_app_limited: false,
            tx_in_flight,
            lost,
            rtt: Some(Duration::from_millis(R_MS)),
        });
        ev
    }

    #[test]
    fn high_loss_in_probe_up_sets_inflight_longterm_and_ends_the_probe() {
        let sim = probing_up();
        assert!(sim.cc.is_bw_probe_sample);
        let target = sim.cc.bdp().min(u64::from(sim.cc.cwnd));
        // 3 % of a large flight lost: inflight_longterm = that flight.
        let mut cc = sim.cc.clone();
        let big = 300_000;
        cc.on_ack(sim.instant(), &lossy_ack(&sim, big, 9_000));
        assert_eq!(cc.state, State::ProbeBwDown);
        assert_eq!(cc.inflight_longterm, u64::from(big));
        assert!(cc.prev_probe_too_high);
        // Of a small flight: no less than Beta × the BDP.
        let mut cc = sim.cc.clone();
        cc.on_ack(sim.instant(), &lossy_ack(&sim, 50_000, 1_500));
        assert_eq!(cc.state, State::ProbeBwDown);
        assert_eq!(cc.inflight_longterm, scale(target, BETA));
        assert!(close(
            cc.inflight_longterm as f64,
            0.7 * sim.bdp() as f64,
            0.03
        ));
        assert!(u64::from(cc.window()) <= cc.inflight_longterm);
        // 2 % is tolerated.
        let mut cc = sim.cc.clone();
        cc.on_ack(sim.instant(), &lossy_ack(&sim, 300_000, 6_000));
        assert_eq!((cc.state, cc.inflight_longterm), (State::ProbeBwUp, INF));
    }

    #[test]
    fn loss_while_probing_then_a_precautionary_probe() {
        let mut sim = probing_up();
        // The bottleneck drops one segment in ten until the probe ends.
        sim.drop_every = 10;
        let before = sim.cc.cwnd;
        assert!(sim.run_for(1.0, |s| s.cc.state != State::ProbeBwUp));
        sim.drop_every = 0;
        assert_eq!(sim.cc.state, State::ProbeBwDown);
        let longterm = sim.cc.inflight_longterm;
        assert!(longterm < u64::from(before), "{longterm} vs {before}");
        assert!(sim.cc.prev_probe_too_high);
        // Cruise keeps 15 % of inflight_longterm free.
        assert!(sim.run_for(4.0, |s| s.cc.state == State::ProbeBwCruise));
        assert!(sim.run_for(4.0, |s| s.cc.state != State::ProbeBwCruise));
        // The next probe stops as soon as the flight reaches inflight_longterm, and after
        // a round without loss probes again, skipping CRUISE.
        let from = sim.now;
        assert!(sim.run_for(6.0, |s| s.cc.prev_probe_precautionary));
        assert!(sim.run_for(6.0, |s| s.cc.state == State::ProbeBwUp
            && !s.cc.prev_probe_precautionary
            && s.trace.last().is_some_and(|&(t, _)| t > from)));
        let states = sim.states_since(from);
        let n = states.len();
        assert!(n >= 4, "{states:?}");
        assert_eq!(
            states[n - 4..],
            [
                State::ProbeBwUp,
                State::ProbeBwDown,
                State::ProbeBwRefill,
                State::ProbeBwUp
            ]
        );
    }

    #[test]
    fn high_loss_ends_startup() {
        // A buffer of an eighth of the BDP: Startup's overshoot loses heavily.
        let mut sim = Sim::new(B, R_MS, 0);
        sim.buffer = sim.bdp() / 8;
        assert!(sim.run_for(5.0, |s| s.cc.state != State::Startup));
        assert_eq!(sim.cc.state, State::Drain);
        assert!(sim.cc.full_bw_reached);
        // Loss, not the plateau, ended it, and bounded the flight.
        assert!(sim.cc.full_bw_count < FULL_BW_COUNT);
        assert_ne!(sim.cc.inflight_longterm, INF);
        assert!(sim.cc.inflight_longterm >= sim.cc.bdp());
        assert_eq!(sim.cc.undo_state, Some(State::Startup));
        // And the flow settles in ProbeBW with its bandwidth close to the path's.
        assert!(sim.run_for(10.0, |s| s.cc.state == State::ProbeBwCruise));
        sim.run_for(3.0, |_| false);
        assert!(
            close(sim.cc.max_bw as f64, B as f64, 0.05),
            "{}",
            sim.cc.max_bw
        );
    }

    #[test]
    fn application_limited_samples_do_not_lower_max_bw() {
        let mut sim = cruising();
        let max_bw = sim.cc.max_bw;
        // The application supplies a quarter of the path for 12 s: several cycles.
        sim.limit_app(Some(B / 4));
        sim.run_for(12.0, |_| false);
        assert_eq!(sim.cc.max_bw, max_bw);
        assert!(close(sim.cc.bw as f64, B as f64, 0.02));
        // An application-limited sample above the estimate raises it.
        let mut ev = ack(&sim, sim.in_flight, MSS, 0, false);
        ev.rate = Some(RateSample {
            delivery_rate: 2 * max_bw,
            prior_delivered: sim.delivered - 1,
            is_app_limited: true,
            tx_in_flight: 10_000,
            ..RateSample::default()
        });
        sim.cc.on_ack(sim.instant(), &ev);
        assert_eq!(sim.cc.max_bw, 2 * max_bw);
    }

    #[test]
    fn an_application_limited_startup_does_not_end() {
        let mut sim = Sim::new(B, R_MS, 0);
        sim.buffer = 10 * sim.bdp();
        sim.limit_app(Some(B / 4));
        assert!(!sim.run_for(4.5, |s| s.cc.state != State::Startup));
        // While the window was small the application's data queued up, and that backlog
        // went out faster than the application's rate: max_bw is above B/4 but well below
        // the path's rate, and Startup goes on (draft Appendix A.7).
        let max_bw = sim.cc.max_bw;
        assert!((B / 4..B * 3 / 4).contains(&max_bw), "{max_bw}");
        assert!(!sim.cc.full_bw_reached);
    }

    #[test]
    fn max_bw_follows_a_lower_bottleneck_within_two_cycles() {
        let mut sim = cruising();
        sim.bw = B / 2;
        sim.run_for(10.0, |_| false);
        assert!(
            close(sim.cc.max_bw as f64, B as f64 / 2.0, 0.03),
            "{}",
            sim.cc.max_bw
        );
    }

    #[test]
    fn recovery_conserves_packets_then_restores_the_window() {
        let sim = cruising();
        let mut cc = sim.cc.clone();
        let now = sim.instant();
        cc.on_ack(now, &ack(&sim, 100_000, 2000, 0, false));
        let c0 = cc.window();
        let ev = CongestionEvent {
            kind: CongestionKind::Loss,
            in_flight: 102_000,
            mss: MSS,
        };
        cc.on_congestion_event(now, &ev);
        // First round of recovery: what is in flight plus what was delivered.
        assert_eq!(cc.window(), 102_000);
        cc.on_ack(now, &ack(&sim, 95_000, 1000, 3000, true));
        assert_eq!(cc.window(), 99_000);
        cc.on_ack(now, &ack(&sim, 95_000, 4000, 0, true));
        assert_eq!(cc.window(), 99_000);
        // Recovery ends: the window from before it.
        cc.on_recovery_end(now, MSS);
        assert_eq!(cc.window(), c0);
        assert_eq!(cc.recovery, None);
        // A probe repairing a loss changes nothing by itself.
        let tlp = CongestionEvent {
            kind: CongestionKind::ProbeRepairedLoss,
            ..ev
        };
        cc.on_congestion_event(now, &tlp);
        cc.on_recovery_end(now, MSS);
        assert_eq!(cc.window(), c0);
        // In the simulator: the first round of recovery keeps the flight from growing.
        let mut sim = cruising();
        sim.drop_every = 50;
        let mut checked = 0;
        sim.run_for(1.0, |s| {
            if s.cc.packet_conservation {
                checked += 1;
                assert!(s.cc.cwnd <= s.in_flight + MSS + 2 * MSS);
            }
            false
        });
        assert!(checked > 0);
    }

    #[test]
    fn timeout_then_restore_when_recovery_ends() {
        let sim = cruising();
        let mut cc = sim.cc.clone();
        let c0 = cc.window();
        let now = sim.instant();
        cc.on_timeout(now, 300_000, MSS, true);
        // Everything in flight is lost: room for one segment.
        assert_eq!(cc.window(), MSS);
        cc.on_timeout(now, 0, MSS, false);
        assert_eq!(cc.window(), MSS);
        // ACKs after the timeout grow it from there (at least BBR.MinPipeCwnd).
        cc.on_ack(now, &ack_with(&sim, 0, 1000, 0, false, true));
        assert_eq!(cc.window(), 4 * MSS);
        cc.on_ack(now, &ack_with(&sim, 0, 3000, 0, false, true));
        assert_eq!(cc.window(), 7 * MSS);
        // The first ACK without `after_timeout` restores the window from before.
        cc.on_ack(now, &ack(&sim, 0, 1000, 0, false));
        assert!(cc.window() >= c0 && u64::from(cc.window()) <= cc.max_inflight);
        assert_eq!(cc.recovery, None);
        // A whole flight lost in the simulator: the flow recovers and keeps going.
        let mut sim = cruising();
        sim.buffer = 0;
        sim.run_for(0.1, |_| false);
        sim.buffer = 10 * sim.bdp();
        // (The simulator does not retransmit: its timeout recovery ends with the first ACK.)
        assert!(sim.run_for(5.0, |s| s.timeouts > 0));
        assert!(sim.run_for(5.0, |s| s.cc.recovery.is_none() && s.cc.cwnd >= c0 / 2));
        assert!(sim.run_for(5.0, |s| s.cc.state == State::ProbeBwCruise));
        assert!(close(sim.cc.max_bw as f64, B as f64, 0.02));
    }

    #[test]
    fn undo_restores_the_window_and_the_probe() {
        let sim = probing_up();
        let mut cc = sim.cc.clone();
        let c0 = cc.window();
        cc.on_ack(sim.instant(), &lossy_ack(&sim, 150_000, 6_000));
        assert_eq!(cc.state, State::ProbeBwDown);
        assert_ne!(cc.inflight_longterm, INF);
        cc.on_congestion_event(
            sim.instant(),
            &CongestionEvent {
                kind: CongestionKind::Loss,
                in_flight: 150_000,
                mss: MSS,
            },
        );
        assert!(cc.window() < c0);
        cc.undo(c0, u32::MAX);
        assert_eq!(cc.inflight_longterm, INF);
        assert_eq!(cc.state, State::ProbeBwRefill);
        assert_eq!(cc.window(), c0);
        assert_eq!(cc.recovery, None);
    }

    #[test]
    fn idle_restart_paces_at_bw_and_keeps_the_window() {
        let mut sim = cruising();
        assert!(sim.run_for(5.0, |s| s.cc.state == State::ProbeBwDown));
        let mut cc = sim.cc.clone();
        let cwnd = cc.window();
        cc.on_idle_restart(MSS);
        assert_eq!(cc.window(), cwnd);
        assert_eq!(cc.pacing_rate(), Some(scale(cc.bw, 0.99)));
        assert!(cc.idle_restart);
    }

    #[test]
    fn seed_and_state() {
        let mut cc = Bbr::new(1448);
        cc.seed(100_000, 50_000);
        assert_eq!(cc.window(), 100_000);
        cc.seed(1, 1);
        assert_eq!(cc.window(), 4 * 1448);
        assert_eq!(cc.name(), "bbr");
        let sim = cruising();
        assert_eq!(
            sim.cc.state(),
            format!("probe_bw:cruise bw={} min_rtt=40ms", fmt_rate(sim.cc.bw))
        );
        assert!(sim.cc.state().starts_with("probe_bw:cruise bw=5.0MB/s"));
    }

    #[test]
    fn windowed_max_filter() {
        let mut f = MaxFilter::default();
        assert_eq!(f.update(0, 10, 10), 10);
        assert_eq!(f.update(3, 7, 10), 10);
        assert_eq!(f.update(8, 5, 10), 10);
        // The best expires after the window; the next best takes over.
        assert_eq!(f.update(11, 4, 10), 7);
        assert_eq!(f.update(30, 1, 10), 1);
        assert_eq!(f.update(31, 9, 10), 9);
    }

    #[test]
    fn no_panic_and_bounded_outputs_for_any_input() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let pick = |r: u64, v: &[u64]| v[(r % v.len() as u64) as usize];
        for round in 0..200 {
            let mss = pick(next(), &[0, 1, 536, 1448, 9000, u64::from(u32::MAX)]) as u32;
            let mut cc = Bbr::new(mss);
            let mut t = next() % 1_000_000;
            for _ in 0..300 {
                let r = next();
                t = match r % 5 {
                    0 => t.saturating_sub(next() % 1_000_000),
                    1 => u64::MAX - next() % 1000,
                    _ => t.saturating_add(next() % 100_000),
                };
                let now = Instant::from_micros(t);
                let big = |x: u64| pick(x, &[0, 1, 1000, 1 << 20, u64::from(u32::MAX), u64::MAX]);
                let dur = |x: u64| match x % 4 {
                    0 => Duration::ZERO,
                    1 => Duration::MAX,
                    _ => Duration::from_micros(x % 1_000_000),
                };
                match next() % 10 {
                    0 => cc.on_congestion_event(
                        now,
                        &CongestionEvent {
                            kind: if next() % 2 == 0 {
                                CongestionKind::Loss
                            } else {
                                CongestionKind::ProbeRepairedLoss
                            },
                            in_flight: next() as u32,
                            mss,
                        },
                    ),
                    1 => cc.on_recovery_end(now, mss),
                    2 => cc.on_timeout(now, next() as u32, mss, next() % 2 == 0),
                    3 => cc.on_idle_restart(mss),
                    4 => cc.undo(next() as u32, next() as u32),
                    5 => cc.seed(big(next()) as u32, next() as u32),
                    _ => {
                        let rate = (next() % 3 != 0).then(|| RateSample {
                            delivered: big(next()),
                            interval: dur(next()),
                            delivery_rate: big(next()),
                            prior_delivered: big(next()),
                            is_app_limited: next() % 2 == 0,
                            tx_in_flight: big(next()) as u32,
                            lost: big(next()),
                            rtt: (next() % 2 == 0).then(|| dur(next())),
                        });
                        let ev = AckEvent {
                            acked: big(next()) as u32,
                            delivered: big(next()) as u32,
                            lost: big(next()) as u32,
                            prior_in_flight: big(next()) as u32,
                            in_flight: big(next()) as u32,
                            mss,
                            rtt: (next() % 2 == 0).then(|| dur(next())),
                            srtt: (next() % 2 == 0).then(|| dur(next())),
                            min_rtt: (next() % 2 == 0).then(|| dur(next())),
                            rate,
                            total_delivered: big(next()),
                            round_start: next() % 2 == 0,
                            in_recovery: next() % 3 == 0,
                            after_timeout: next() % 3 == 0,
                            cwnd_limited: next() % 2 == 0,
                        };
                        cc.on_ack(now, &ev);
                        if cc.recovery.is_none() {
                            let floor = 4 * u64::from(cc.mss);
                            assert!(u64::from(cc.window()) >= floor.min(u64::from(MAX_CWND)));
                        }
                    }
                }
                assert!(cc.window() >= 1 && cc.window() <= MAX_CWND, "round {round}");
                assert!(cc.pacing_rate().is_some_and(|r| r > 0));
                assert!(!cc.state().is_empty());
            }
        }
    }
}
