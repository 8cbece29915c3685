//! What an acknowledgment does on the sending side (RFC 9293 §3.10.7.4, "fifth, check the
//! ACK field"), and the loss-recovery state machine around it:
//!
//! - the send window update (RFC 9293 §3.10.7.4);
//! - SACK blocks mark segments delivered (RFC 2018, RFC 6675), a DSACK block reports a
//!   duplicate (RFC 2883 §4);
//! - RTT samples per RFC 6298 with Karn's rule, delivery-rate samples for the congestion
//!   controller;
//! - loss detection: RACK (RFC 8985 §6) with SACK, duplicate ACKs (RFC 5681 §3.2, RFC 6582,
//!   RFC 5827) without;
//! - fast recovery entered on the first loss and left once the recovery point is
//!   acknowledged (RFC 6675 §5), with the window from PRR (RFC 6937);
//! - tail loss probes (RFC 8985 §7), retransmission timeouts (RFC 6298 §5) and their
//!   recovery (RFC 6675 §5.1);
//! - undoing a loss response that proves spurious: timestamps (RFC 3522), DSACK (RFC 3708),
//!   and the RFC 4015 response.

use super::{Connection, Recovery, Undo};
use crate::proto::cc::{AckEvent, CongestionEvent, CongestionKind};
use crate::proto::recovery::{rack::DUP_THRESH, ProbeOutcome, Prr, Tlp};
use crate::proto::{Instant, SeqNum};
use crate::wire::{TcpFlags, TcpRepr};
use std::time::Duration;

/// RFC 2883 §4: the first SACK block reports a duplicate (D-SACK) when it lies below the
/// cumulative acknowledgment or inside the second block.
fn is_dsack(blocks: &[(u32, u32)], ack: SeqNum) -> bool {
    let Some(&(l, r)) = blocks.first() else {
        return false;
    };
    let (l, r) = (SeqNum(l), SeqNum(r));
    if l >= r {
        return false;
    }
    if l < ack {
        return true;
    }
    blocks
        .get(1)
        .is_some_and(|&(l2, r2)| SeqNum(l2) <= l && r <= SeqNum(r2))
}

impl Connection {
    /// RFC 9293 §3.10.7.4 "fifth, check the ACK field" for ESTABLISHED and later.
    pub(super) fn process_ack(&mut self, now: Instant, seg: &TcpRepr, payload_len: usize) {
        let ack = SeqNum(seg.ack);
        let seq = SeqNum(seg.seq);
        let window = u32::from(seg.window) << self.snd_wscale;
        let mut window_changed = false;
        // Update the send window only from segments not older than the last update.
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            window_changed = self.snd_wnd != window;
            self.snd_wnd = window;
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            if window > 0 {
                self.timers.persist = None;
            }
        }
        // Any ACK shows the peer is alive (zero-window and keepalive probes are answered).
        self.probes_out = 0;

        let mss = self.snd_mss;
        let prior_una = self.snd_una;
        let prior_pipe = self.pipe();
        let prior_flight = self.flight_size();
        let tsecr = if self.ts_ok {
            seg.options.timestamps.map(|(_, ecr)| ecr)
        } else {
            None
        };
        let min_rtt = self.rtt.min_rtt();
        let blocks: &[(u32, u32)] = if self.sack_ok {
            seg.options.sack.as_slice()
        } else {
            &[]
        };
        let dsack = is_dsack(blocks, ack);
        self.rack.begin_ack();

        // What this ACK delivers, cumulatively and by SACK (RFC 6937 DeliveredData), and the
        // send times RFC 6298 samples: the oldest newly acknowledged segment, unless a
        // retransmission was among them (Karn).
        let mut delivered = 0u32;
        let mut sacked_newly = 0u32;
        let mut oldest_acked: Option<Instant> = None;
        let mut oldest_sacked: Option<Instant> = None;
        let mut retrans_acked = false;
        let (sent, rack, rate) = (&mut self.sent, &mut self.rack, &mut self.rate);
        for (i, &(l, r)) in blocks.iter().enumerate() {
            if i == 0 && dsack {
                continue;
            }
            let (l, r) = (SeqNum(l), SeqNum(r));
            // Only what was sent and lies above the cumulative ACK can be SACKed (RFC 2018
            // §3); a block reaching down to it is nonsense, and would let a peer fake
            // reneging (below) without ever acknowledging anything.
            if !(l < r && r <= self.snd_max && l > ack.max(self.snd_una)) {
                continue;
            }
            sacked_newly += sent.sack(l, r, mss, |d| {
                rack.on_delivered(now, &d.seg, tsecr, min_rtt);
                rate.on_delivered(now, &d);
                if !d.seg.ever_retransmitted() {
                    oldest_sacked =
                        Some(oldest_sacked.map_or(d.seg.sent_at, |o| o.min(d.seg.sent_at)));
                }
            });
        }
        delivered += sacked_newly;

        let advanced = ack > self.snd_una;
        let mut acked = 0u32;
        if advanced {
            acked = (ack - self.snd_una) as u32;
            if ack > self.buf_seq {
                let data = ((ack - self.buf_seq) as usize).min(self.send_buf.len());
                self.send_buf.consume(data);
                self.buf_seq += data;
                self.stats.bytes_acked += data as u64;
            }
            sent.ack(ack, |d| {
                rack.on_delivered(now, &d.seg, tsecr, min_rtt);
                rate.on_delivered(now, &d);
                delivered += d.bytes;
                if d.seg.ever_retransmitted() {
                    retrans_acked = true;
                } else {
                    oldest_acked =
                        Some(oldest_acked.map_or(d.seg.sent_at, |o| o.min(d.seg.sent_at)));
                }
            });
            self.snd_una = ack;
            if self.snd_nxt < ack {
                self.snd_nxt = ack;
            }
            if self.snd_sml < ack {
                self.snd_sml = ack;
            }
            if self.snd_up.is_some_and(|up| up <= ack) {
                self.snd_up = None;
            }
            self.retries = 0;
            self.unacked_since = (ack < self.snd_max).then_some(now);
            self.rtt.reset_backoff();
            // Without SACK, the segments duplicate ACKs stood for are acknowledged now; the
            // first one acknowledged is the one they were waiting for (as Linux's
            // `tcp_remove_reno_sacks`).
            let segments = acked.div_ceil(mss.max(1));
            let stood_for = u16::try_from(segments.saturating_sub(1)).unwrap_or(u16::MAX);
            self.dupacks = self.dupacks.saturating_sub(stood_for);
        }

        if advanced && self.send_buf.is_empty() {
            self.note_idle_memory();
        }
        // RFC 6298 §2: one sample from what this ACK newly acknowledged.
        let rtt_sample = match (oldest_acked, retrans_acked) {
            (Some(t), false) => Some(now - t),
            (None, false) => oldest_sacked.map(|t| now - t),
            _ => None,
        };
        if let Some(r) = rtt_sample {
            self.rtt.sample(r);
        }

        if self
            .undo
            .is_some_and(|u| (self.snd_una - u.marker) as u32 > 1 << 30)
        {
            // Long past its episode: too old to undo, and its marker about to wrap.
            self.undo = None;
        }
        if dsack {
            self.on_dsack(blocks[0], prior_una);
        }
        if advanced {
            self.detect_spurious_by_timestamp(now, seg);
        }
        if self
            .undo
            .is_some_and(|u| u.retransmitted && u.retrans_out == 0)
        {
            // RFC 3708 §3: every retransmission of the episode was reported duplicate.
            self.undo_loss_response(now, "DSACK");
        }

        // Loss detection.
        let mut newly_lost = 0;
        if self.sack_ok {
            newly_lost += self.rack_detect_loss(now, dsack);
        } else {
            let duplicate = !advanced
                && ack == self.snd_una
                && self.snd_max > self.snd_una
                && payload_len == 0
                && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::FIN)
                && !window_changed;
            if duplicate {
                // A duplicate ACK (RFC 5681 §2): one segment left the network (RFC 6937 §3
                // counts it as one SMSS delivered).
                self.dupacks = self.dupacks.saturating_add(1);
                delivered += mss.min(self.flight_size());
            }
            newly_lost += self.dupack_detect_loss(ack, advanced);
        }
        if newly_lost > 0 {
            self.rate.on_lost(newly_lost);
        }

        // Recovery ends once the recovery point is acknowledged (RFC 6675 §5, RFC 6582 §3.2
        // step 6), and begins at the first loss (RFC 8985 §3.4, RFC 6675 §5 step 4).
        match self.recovery {
            Recovery::Fast { point } | Recovery::Timeout { point } if self.snd_una >= point => {
                self.end_recovery(now);
            }
            _ => {}
        }
        if self.sent.pending_bytes() > 0 && self.recovery == Recovery::Open {
            self.enter_fast_recovery(now);
        }
        if matches!(self.recovery, Recovery::Fast { .. }) {
            // RFC 6937 §3: on every ACK during recovery.
            let pipe = self.pipe();
            let sndcnt = self.prr.on_ack(
                delivered,
                pipe,
                self.cc.ssthresh(),
                mss,
                self.sent.pending_bytes() > 0,
            );
            self.prr_cwnd = pipe.saturating_add(sndcnt);
        }

        if delivered > 0 || advanced {
            let sample = self.rate.finish(min_rtt);
            if let Some(r) = sample.rate {
                self.delivery_rate = r.delivery_rate;
            }
            let cwnd = self.cc.window().max(1);
            let slow_start = cwnd < self.cc.ssthresh();
            // RFC 7661 §4.1: was the window in use — did a send wait for it, or did the
            // flight fill it? Half of it counts in slow start, which doubles it each round.
            let cwnd_limited = self.cwnd_blocked
                || if slow_start {
                    prior_flight.saturating_mul(2) >= cwnd
                } else {
                    prior_flight.saturating_add(mss) >= cwnd
                };
            let ev = AckEvent {
                acked,
                delivered,
                lost: newly_lost,
                prior_in_flight: prior_pipe,
                in_flight: self.pipe(),
                mss,
                rtt: rtt_sample,
                srtt: self.rtt.srtt(),
                min_rtt: self.rtt.min_rtt(),
                rate: sample.rate,
                total_delivered: self.rate.delivered(),
                round_start: sample.round_start,
                in_recovery: matches!(self.recovery, Recovery::Fast { .. }),
                after_timeout: matches!(self.recovery, Recovery::Timeout { .. }),
                cwnd_limited,
            };
            self.cc.on_ack(now, &ev);
            self.cwnd_blocked = false;
        }
        if advanced {
            self.tune_send_buffer();
        }

        // RFC 6298 §5.2 and §5.3.
        if advanced {
            if self.snd_una == self.snd_max {
                self.timers.retransmit = None;
                self.timers.reorder = None;
            } else {
                self.arm_retransmit(now);
            }
        }
        // RFC 2018 §8: the cumulative ACK moved, and stopped at a segment the peer had
        // SACKed, so it discarded what it reported holding. Forget every SACK and let the
        // retransmission timer, brought forward, resend from SND.UNA (as Linux does). Only an
        // advancing ACK can show it: otherwise a peer could defer the RTO for ever (Linux's
        // 2022 fix of the same hole).
        if advanced && self.sent.iter().next().is_some_and(|s| s.is_sacked()) {
            self.sent.clear_sacked();
            self.stats.reneged += 1;
            let delay = self.rtt.srtt().map_or(Duration::from_millis(10), |s| {
                (s / 4).max(Duration::from_millis(10))
            });
            self.timers.retransmit = Some(now + delay);
            tracing::debug!(local = %self.local, remote = %self.remote, "peer reneged on SACKed data");
        }
        match self.tlp.on_ack(ack, dsack, advanced, sacked_newly > 0) {
            ProbeOutcome::RepairedLoss => self.probe_repaired_loss(now, prior_flight),
            ProbeOutcome::NoLoss | ProbeOutcome::Pending => {}
        }
        if advanced {
            // RFC 8985 §7.2: restart the PTO on an ACK of new data.
            self.arm_loss_probe(now);
        }
    }

    /// RFC 8985 §6.2 steps 4 and 5 after an ACK or when the reordering timer fires: marks
    /// what RACK deems lost, arms the reordering timer for what it may yet deem lost.
    /// Returns the bytes newly marked.
    fn rack_detect_loss(&mut self, now: Instant, dsack: bool) -> u32 {
        let Some((xmit, end)) = self.rack.latest() else {
            return 0;
        };
        let segs_sacked = self.sent.sacked_bytes() / self.snd_mss.max(1);
        let reo_wnd = self.rack.reo_wnd(
            self.snd_una,
            self.snd_max,
            dsack,
            self.recovery != Recovery::Open,
            segs_sacked,
            self.rtt.min_rtt(),
            self.rtt.srtt(),
        );
        let (lost, timeout) = self
            .sent
            .rack_detect_loss(now, xmit, end, self.rack.rtt() + reo_wnd);
        self.timers.reorder = timeout.map(|t| now + t);
        self.stats.rack_lost += lost;
        lost
    }

    /// Loss detection by duplicate ACKs, without SACK: the third (or, for a small flight,
    /// fewer, RFC 5827) marks the oldest segment lost unless it predates the last recovery
    /// (RFC 6582 §3.2 step 2); in recovery, a partial ACK marks the next one (step 5).
    fn dupack_detect_loss(&mut self, ack: SeqNum, advanced: bool) -> u32 {
        match self.recovery {
            Recovery::Open
                if self.dupacks > 0
                    && u32::from(self.dupacks) >= self.dupthresh()
                    && self.recover.is_none_or(|r| ack - 1u32 > r) =>
            {
                self.sent.mark_lost(self.snd_una)
            }
            Recovery::Open if advanced && self.recover.is_some_and(|r| ack > r) => {
                // Past the old recovery point: forget it before sequence numbers wrap.
                self.recover = None;
                0
            }
            Recovery::Fast { point } if advanced && self.snd_una < point => {
                self.sent.mark_lost(self.snd_una)
            }
            _ => 0,
        }
    }

    /// Duplicate ACKs that signal a loss: three (RFC 5681 §3.2), or fewer when fewer than
    /// four segments are outstanding and nothing new can be sent, since then three can never
    /// arrive — early retransmit, byte-based (RFC 5827 §3.2): ceil(FlightSize / SMSS) - 1.
    fn dupthresh(&self) -> u32 {
        let mss = self.snd_mss.max(1);
        let flight = self.flight_size();
        let outstanding = flight.div_ceil(mss);
        let unsent = (self.data_end() - self.snd_max).max(0) as u32;
        let window_room = self.snd_wnd.min(self.cc.window()).saturating_sub(flight);
        let can_send_new = unsent > 0 && window_room >= unsent.min(mss);
        // A single outstanding segment cannot be reported lost by duplicate ACKs at all.
        if (2..4).contains(&outstanding) && !can_send_new {
            outstanding - 1
        } else {
            DUP_THRESH
        }
    }

    /// A DSACK block arrived (RFC 2883): count it, and if it reports a retransmission of the
    /// current loss episode, that retransmission was not needed (RFC 3708 §3). Only
    /// duplicates of data already acknowledged before this ACK and sent since the episode
    /// began count (as Linux's `tcp_check_dsack`): a duplicate of an original segment, which
    /// the network may make, says nothing about a retransmission.
    fn on_dsack(&mut self, (l, r): (u32, u32), prior_una: SeqNum) {
        self.stats.dsacks_received += 1;
        let (l, r) = (SeqNum(l), SeqNum(r));
        if let Some(u) = self.undo.as_mut() {
            if u.retransmitted && l >= u.marker && l < r && r <= prior_una {
                let segments = ((r - l).max(0) as u32).div_ceil(self.snd_mss.max(1)).max(1);
                u.retrans_out = u.retrans_out.saturating_sub(segments);
            }
        }
    }

    /// Eifel detection (RFC 3522 §3): the first ACK that covers the first retransmission
    /// echoes the TSval of whichever copy arrived; an older one than the retransmission's
    /// means the original made it and the loss response was spurious.
    fn detect_spurious_by_timestamp(&mut self, now: Instant, seg: &TcpRepr) {
        let Some(undo) = self.undo.as_mut() else {
            return;
        };
        let (Some((sent, end)), Some((_, tsecr))) = (undo.tsval, seg.options.timestamps) else {
            return;
        };
        if SeqNum(seg.ack) < end {
            return;
        }
        // Only the first ACK after the retransmission decides; DSACKs may still undo later.
        undo.tsval = None;
        if (tsecr.wrapping_sub(sent) as i32) >= 0 || tsecr == 0 {
            return;
        }
        self.undo_loss_response(now, "timestamps");
    }

    /// Undoes the last loss response (RFC 4015): the window and threshold from before it,
    /// nothing left marked lost, recovery over.
    fn undo_loss_response(&mut self, now: Instant, how: &'static str) {
        let Some(undo) = self.undo.take() else {
            return;
        };
        self.cc.undo(undo.cwnd, undo.ssthresh);
        self.sent.unmark_lost();
        if self.recovery != Recovery::Open {
            self.rack.on_recovery_end();
            self.recovery = Recovery::Open;
        }
        self.dupacks = 0;
        self.rto_probe = false;
        self.stats.spurious_retransmits += 1;
        self.arm_loss_probe(now);
        tracing::debug!(local = %self.local, remote = %self.remote, how, timeout = undo.timeout, "spurious loss response undone");
    }

    /// Remembers the window before a loss response, to undo it if it proves spurious.
    fn save_undo(&mut self, timeout: bool) {
        self.undo = Some(Undo {
            cwnd: self.cc.window(),
            ssthresh: self.cc.ssthresh(),
            tsval: None,
            timeout,
            marker: self.snd_una,
            retrans_out: 0,
            retransmitted: false,
        });
    }

    /// Loss detected while no recovery was under way: fast recovery (RFC 6675 §5 step 4,
    /// RFC 8985 §3.4), the congestion controller told once, PRR from the current flight.
    fn enter_fast_recovery(&mut self, now: Instant) {
        let flight = self.flight_size();
        self.recovery = Recovery::Fast {
            point: self.snd_max,
        };
        self.recover = Some(self.snd_max - 1u32);
        self.save_undo(false);
        self.cc.on_congestion_event(
            now,
            &CongestionEvent {
                kind: CongestionKind::Loss,
                in_flight: flight,
                mss: self.snd_mss,
            },
        );
        self.prr = Prr::start(flight);
        self.prr_cwnd = self.pipe();
        // RFC 8985 §7.2: no loss probes during recovery; RACK and the RTO take over.
        self.tlp = Tlp::default();
        self.timers.loss_probe = None;
        self.stats.recoveries += 1;
        tracing::debug!(local = %self.local, remote = %self.remote, una = %self.snd_una, flight, "fast recovery");
    }

    /// The recovery point was acknowledged.
    fn end_recovery(&mut self, now: Instant) {
        if matches!(self.recovery, Recovery::Fast { .. }) {
            // RFC 6937 §3: the window ends at ssthresh.
            self.cc.on_recovery_end(now, self.snd_mss);
        }
        self.rack.on_recovery_end();
        self.recovery = Recovery::Open;
        self.dupacks = 0;
    }

    /// A tail loss probe repaired a loss (RFC 8985 §7.4.2): reduce the window once, from the
    /// flight before the acknowledgment that showed it.
    fn probe_repaired_loss(&mut self, now: Instant, flight: u32) {
        self.stats.tlp_recoveries += 1;
        if self.recovery != Recovery::Open {
            return;
        }
        self.cc.on_congestion_event(
            now,
            &CongestionEvent {
                kind: CongestionKind::ProbeRepairedLoss,
                in_flight: flight,
                mss: self.snd_mss,
            },
        );
        self.cc.on_recovery_end(now, self.snd_mss);
    }

    /// The retransmission timer expired with data outstanding (RFC 6298 §5.4-5.6): the
    /// controller's loss window, everything not SACKed deemed lost (RFC 6675 §5.1; the
    /// scoreboard is kept), resent from the oldest.
    pub(super) fn enter_timeout_recovery(&mut self, now: Instant, first: bool) {
        if first && (self.recovery == Recovery::Open || self.undo.is_none()) {
            self.save_undo(true);
        }
        self.cc
            .on_timeout(now, self.flight_size(), self.snd_mss, first);
        // RFC 6582 §3.2 step 1 after a timeout: recover = highest sequence sent.
        self.recover = Some(self.snd_max - 1u32);
        if self.recovery != Recovery::Open {
            self.rack.on_recovery_end();
        }
        self.recovery = Recovery::Timeout {
            point: self.snd_max,
        };
        let lost = self.sent.mark_all_lost();
        self.rate.on_lost(lost);
        self.dupacks = 0;
        self.tlp = Tlp::default();
        self.timers.loss_probe = None;
        self.timers.reorder = None;
        self.rto_probe = true;
        self.rtt.back_off();
    }

    /// The RACK reordering timer expired (RFC 8985 §6.3): segments that waited out their
    /// reordering window are lost.
    pub(super) fn on_reorder_timeout(&mut self, now: Instant) {
        if !self.state.is_synchronized() || self.sent.is_empty() {
            return;
        }
        let lost = self.rack_detect_loss(now, false);
        if lost == 0 {
            return;
        }
        self.rate.on_lost(lost);
        if self.recovery == Recovery::Open {
            self.enter_fast_recovery(now);
        }
        if matches!(self.recovery, Recovery::Fast { .. }) {
            let pipe = self.pipe();
            let sndcnt = self
                .prr
                .on_ack(0, pipe, self.cc.ssthresh(), self.snd_mss, true);
            self.prr_cwnd = pipe.saturating_add(sndcnt);
        }
        if self.timers.retransmit.is_none() {
            self.arm_retransmit(now);
        }
    }

    /// The PTO expired (RFC 8985 §7.3): send a probe if one is still due; the RTO restarts
    /// from the probe.
    pub(super) fn on_loss_probe_timeout(&mut self, now: Instant) {
        if self.loss_probe_allowed() {
            self.tlp_now = true;
            self.arm_retransmit(now);
        }
    }

    /// RFC 8985 §7.2: a probe may be scheduled with SACK, outside recovery, with data in
    /// flight and no probe outstanding.
    pub(super) fn loss_probe_allowed(&self) -> bool {
        self.sack_ok
            && self.state.is_synchronized()
            && self.recovery == Recovery::Open
            && self.snd_max > self.snd_una
            && self.tlp.end_seq.is_none()
    }

    /// (Re)arms the PTO after new data went out or new data was acknowledged.
    pub(super) fn arm_loss_probe(&mut self, now: Instant) {
        if !self.loss_probe_allowed() {
            self.timers.loss_probe = None;
            return;
        }
        let one_segment = self.sent.len() <= 1;
        self.timers.loss_probe = Some(Tlp::pto(
            now,
            self.rtt.srtt(),
            one_segment,
            self.timers.retransmit,
        ));
    }

    /// An RTT sample from the handshake: the SYN (or SYN+ACK) was acknowledged, and it was
    /// never retransmitted (Karn, RFC 6298 §3).
    pub(super) fn syn_rtt_sample(&mut self, now: Instant) {
        if let Some(sent) = self.syn_sent_at.take() {
            self.rtt.sample(now - sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsack_recognition() {
        // Below the cumulative ACK.
        assert!(is_dsack(&[(100, 200)], SeqNum(300)));
        // Inside the second block.
        assert!(is_dsack(&[(500, 600), (400, 700)], SeqNum(300)));
        // An ordinary block.
        assert!(!is_dsack(&[(500, 600), (800, 900)], SeqNum(300)));
        assert!(!is_dsack(&[], SeqNum(300)));
        // Nonsense is not a DSACK.
        assert!(!is_dsack(&[(600, 500)], SeqNum(700)));
    }
}
