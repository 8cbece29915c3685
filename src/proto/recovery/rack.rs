//! RACK-TLP (RFC 8985): the state of time-based loss detection and of tail loss probes.
//!
//! RACK remembers the most recently sent segment that was delivered; any segment sent
//! sufficiently earlier that is still undelivered is lost. "Sufficiently" is the RTT of that
//! delivered segment plus a reordering window that starts at a quarter of the minimum RTT,
//! drops to zero when no reordering was seen and the evidence is strong, and widens by a
//! quarter RTT for every round in which DSACKs (RFC 2883) show a loss was spurious. The
//! walk over segments lives in [`SentQueue::rack_detect_loss`](super::SentQueue::rack_detect_loss);
//! this file holds the rules that feed it. TLP sends one probe two RTTs after the last
//! transmission so that a lost tail is noticed by RACK rather than by the RTO.

use super::sent::Sent;
use crate::proto::{Instant, SeqNum};
use std::time::Duration;

/// RFC 8985 §6.2: DupThresh, the SACKed segments that make reordering implausible.
pub const DUP_THRESH: u32 = 3;
/// RFC 8985 §7.2: WCDelAckT, the worst-case delayed-ACK time a lone segment may wait.
pub const WC_DEL_ACK: Duration = Duration::from_millis(200);
/// The least PTO, for timer granularity (as Linux's `TCP_TIMEOUT_MIN`).
pub const MIN_PTO: Duration = Duration::from_millis(2);
/// RFC 8985 §6.2 step 4: recoveries without DSACK before the window multiplier resets.
const REO_WND_PERSIST: u32 = 16;

/// RACK's per-connection state (RFC 8985 §6.1).
#[derive(Debug, Clone)]
pub struct Rack {
    /// `RACK.xmit_ts` and `RACK.end_seq`: the most recently sent segment delivered so far.
    latest: Option<(Instant, SeqNum)>,
    /// `RACK.rtt`: the RTT of that segment.
    rtt: Duration,
    /// `RACK.fack`: the highest sequence number delivered.
    fack: Option<SeqNum>,
    /// `RACK.fack` before the acknowledgment being processed: a segment that one ACK
    /// delivers alongside higher ones was not reordered.
    prior_fack: Option<SeqNum>,
    /// `RACK.reordering_seen`.
    reordering_seen: bool,
    /// `RACK.dsack_round`: SND.NXT when the current DSACK round began.
    dsack_round: Option<SeqNum>,
    /// `RACK.reo_wnd_mult`.
    reo_wnd_mult: u32,
    /// `RACK.reo_wnd_persist`.
    reo_wnd_persist: u32,
}

impl Default for Rack {
    fn default() -> Rack {
        Rack {
            latest: None,
            rtt: Duration::ZERO,
            fack: None,
            prior_fack: None,
            reordering_seen: false,
            dsack_round: None,
            reo_wnd_mult: 1,
            reo_wnd_persist: REO_WND_PERSIST,
        }
    }
}

impl Rack {
    /// The most recently sent delivered segment: its send time and end.
    pub fn latest(&self) -> Option<(Instant, SeqNum)> {
        self.latest
    }

    /// `RACK.rtt`.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Whether reordering was observed.
    pub fn reordering_seen(&self) -> bool {
        self.reordering_seen
    }

    /// An acknowledgment begins to be processed: what it delivers is compared with what
    /// was delivered before it.
    pub fn begin_ack(&mut self) {
        self.prior_fack = self.fack;
    }

    /// RFC 8985 §6.2 steps 2 and 3 for one newly delivered segment. `tsecr` is the ACK's
    /// echoed timestamp (when timestamps are on) and `min_rtt` the smallest RTT seen.
    pub fn on_delivered(
        &mut self,
        now: Instant,
        seg: &Sent,
        tsecr: Option<u32>,
        min_rtt: Option<Duration>,
    ) {
        // Step 3: a never-retransmitted segment delivered below the highest one delivered
        // by an earlier ACK arrived out of order (as Linux compares with `prior_fack`).
        if let Some(fack) = self.prior_fack {
            if seg.end < fack && !seg.ever_retransmitted() {
                self.reordering_seen = true;
            }
        }
        if self.fack.is_none_or(|f| seg.end > f) {
            self.fack = Some(seg.end);
        }
        // Step 2: which copy of a retransmitted segment did the ACK answer? The original, if
        // the echoed timestamp predates the retransmission or the RTT is impossibly short.
        let rtt = now - seg.sent_at;
        if seg.ever_retransmitted() {
            if let Some(tsecr) = tsecr {
                if (tsecr.wrapping_sub(seg.tsval) as i32) < 0 {
                    return;
                }
            }
            if min_rtt.is_some_and(|m| rtt < m) {
                return;
            }
        }
        let newer = self
            .latest
            .is_none_or(|(at, end)| seg.sent_at > at || (seg.sent_at == at && seg.end > end));
        if newer {
            self.rtt = rtt;
            self.latest = Some((seg.sent_at, seg.end));
        }
    }

    /// RFC 8985 §6.2 step 4, `RACK_update_reo_wnd`, for one ACK: `dsack` when it carried a
    /// DSACK block; `in_recovery` when fast or RTO recovery is under way; `segs_sacked`
    /// SACKed segments above SND.UNA.
    #[allow(clippy::too_many_arguments)]
    pub fn reo_wnd(
        &mut self,
        snd_una: SeqNum,
        snd_nxt: SeqNum,
        dsack: bool,
        in_recovery: bool,
        segs_sacked: u32,
        min_rtt: Option<Duration>,
        srtt: Option<Duration>,
    ) -> Duration {
        if self.dsack_round.is_some_and(|r| snd_una >= r) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() && dsack {
            // Grow the window once per round that sees DSACK.
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult = self.reo_wnd_mult.saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
        if !self.reordering_seen && (in_recovery || segs_sacked >= DUP_THRESH) {
            return Duration::ZERO;
        }
        let Some(min_rtt) = min_rtt else {
            return Duration::ZERO;
        };
        let wnd = (min_rtt / 4).saturating_mul(self.reo_wnd_mult);
        srtt.map_or(wnd, |s| wnd.min(s))
    }

    /// Fast or RTO recovery ended (RFC 8985 §6.2 step 4: the multiplier decays after 16
    /// recoveries without DSACK).
    pub fn on_recovery_end(&mut self) {
        self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
        if self.reo_wnd_persist == 0 {
            self.reo_wnd_mult = 1;
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
    }

    /// The current multiplier of the reordering window.
    pub fn reo_wnd_mult(&self) -> u32 {
        self.reo_wnd_mult
    }
}

/// The tail loss probe's state (RFC 8985 §7).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tlp {
    /// `TLP.end_seq`: SND.NXT when the probe went out; `None` when no probe is outstanding.
    pub end_seq: Option<SeqNum>,
    /// `TLP.is_retrans`: whether the probe was a retransmission.
    pub is_retrans: bool,
}

/// What an acknowledgment says about an outstanding probe (RFC 8985 §7.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// No probe outstanding, or the ACK does not reach it yet.
    Pending,
    /// The probe episode ended without evidence of a loss.
    NoLoss,
    /// The probe repaired a loss: the congestion window must come down once.
    RepairedLoss,
}

impl Tlp {
    /// RFC 8985 §7.2 `TLP_calc_PTO`: two smoothed RTTs, plus the worst-case delayed ACK
    /// when a single segment is in flight, and never past the RTO's expiry.
    pub fn pto(
        now: Instant,
        srtt: Option<Duration>,
        one_segment: bool,
        rto_at: Option<Instant>,
    ) -> Instant {
        let pto = match srtt {
            Some(srtt) => {
                let mut p = srtt * 2;
                if one_segment {
                    p += WC_DEL_ACK;
                }
                p.max(MIN_PTO)
            }
            None => Duration::from_secs(1),
        };
        let at = now + pto;
        rto_at.map_or(at, |r| at.min(r))
    }

    /// RFC 8985 §7.4.2 `TLP_process_ack`, as Linux refines it: a DSACK means both copies
    /// arrived; an ACK beyond the probe means the probe repaired a loss; a pure duplicate ACK
    /// at the probe's end ends the episode without a loss; an ACK that reaches exactly the
    /// probe's end with news keeps it open, since it may answer the original.
    pub fn on_ack(
        &mut self,
        ack: SeqNum,
        dsack: bool,
        advanced: bool,
        sacked: bool,
    ) -> ProbeOutcome {
        let Some(end) = self.end_seq else {
            return ProbeOutcome::Pending;
        };
        if ack < end {
            return ProbeOutcome::Pending;
        }
        self.end_seq = None;
        if !self.is_retrans {
            // A probe of new data: it drew the ACK, nothing was retransmitted.
            return ProbeOutcome::NoLoss;
        }
        if dsack {
            return ProbeOutcome::NoLoss;
        }
        if ack > end {
            return ProbeOutcome::RepairedLoss;
        }
        if !advanced && !sacked {
            // A duplicate ACK for the probe itself: the original had arrived.
            return ProbeOutcome::NoLoss;
        }
        // An ACK of exactly TLP.end_seq may answer the original: wait for the probe's DSACK,
        // or an ACK beyond it (as Linux's `tcp_process_tlp_ack`).
        self.end_seq = Some(end);
        ProbeOutcome::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pto_is_two_rtts_plus_delayed_ack_for_one_segment() {
        let now = Instant::from_millis(100);
        let srtt = Some(Duration::from_millis(10));
        assert_eq!(Tlp::pto(now, srtt, false, None), Instant::from_millis(120));
        assert_eq!(Tlp::pto(now, srtt, true, None), Instant::from_millis(320));
        assert_eq!(
            Tlp::pto(now, srtt, true, Some(Instant::from_millis(300))),
            Instant::from_millis(300),
            "never after the RTO"
        );
        assert_eq!(Tlp::pto(now, None, false, None), Instant::from_millis(1100));
        assert_eq!(
            Tlp::pto(now, Some(Duration::from_micros(50)), false, None),
            Instant::from_millis(102)
        );
    }

    #[test]
    fn probe_outcomes() {
        let probe = Tlp {
            end_seq: Some(SeqNum(5000)),
            is_retrans: true,
        };
        let mut t = probe;
        assert_eq!(
            t.on_ack(SeqNum(4000), false, true, false),
            ProbeOutcome::Pending
        );
        assert_eq!(
            t.on_ack(SeqNum(6000), false, true, false),
            ProbeOutcome::RepairedLoss
        );
        let mut t = probe;
        assert_eq!(
            t.on_ack(SeqNum(5000), true, false, false),
            ProbeOutcome::NoLoss
        );
        let mut t = probe;
        assert_eq!(
            t.on_ack(SeqNum(5000), false, false, false),
            ProbeOutcome::NoLoss
        );
        // Exactly at the probe's end with progress: maybe the original's ACK; still open.
        let mut t = probe;
        assert_eq!(
            t.on_ack(SeqNum(5000), false, true, false),
            ProbeOutcome::Pending
        );
        assert_eq!(
            t.on_ack(SeqNum(5000), true, false, false),
            ProbeOutcome::NoLoss
        );
        let mut t = Tlp {
            is_retrans: false,
            ..probe
        };
        assert_eq!(
            t.on_ack(SeqNum(5000), false, true, false),
            ProbeOutcome::NoLoss
        );
        assert_eq!(t.end_seq, None);
    }

    #[test]
    fn reordering_window_rules() {
        let mut r = Rack::default();
        let min = Some(Duration::from_millis(40));
        let srtt = Some(Duration::from_millis(50));
        let (una, nxt) = (SeqNum(0), SeqNum(10_000));
        assert_eq!(
            r.reo_wnd(una, nxt, false, false, 1, min, srtt),
            Duration::from_millis(10)
        );
        assert_eq!(
            r.reo_wnd(una, nxt, false, true, 1, min, srtt),
            Duration::ZERO
        );
        assert_eq!(
            r.reo_wnd(una, nxt, false, false, 3, min, srtt),
            Duration::ZERO
        );
        r.reordering_seen = true;
        assert_eq!(
            r.reo_wnd(una, nxt, false, true, 5, min, srtt),
            Duration::from_millis(10)
        );
        // A DSACK widens the window once per round.
        assert_eq!(
            r.reo_wnd(una, nxt, true, true, 5, min, srtt),
            Duration::from_millis(20)
        );
        assert_eq!(
            r.reo_wnd(una, nxt, true, true, 5, min, srtt),
            Duration::from_millis(20)
        );
        assert_eq!(
            r.reo_wnd(SeqNum(10_000), SeqNum(20_000), true, true, 5, min, srtt),
            Duration::from_millis(30)
        );
        // Never more than SRTT.
        for i in 0..10u32 {
            let s = SeqNum(20_000 + i * 10_000);
            r.reo_wnd(s, s + 10_000u32, true, true, 5, min, srtt);
        }
        assert_eq!(
            r.reo_wnd(una, nxt, false, true, 5, min, srtt),
            Duration::from_millis(50)
        );
        // Sixteen recoveries without DSACK reset the multiplier.
        for _ in 0..16 {
            r.on_recovery_end();
        }
        assert_eq!(r.reo_wnd_mult(), 1);
    }
}
