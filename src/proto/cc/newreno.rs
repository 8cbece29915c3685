//! NewReno: slow start and congestion avoidance (RFC 5681 §3.1) with appropriate byte
//! counting (RFC 3465), fast retransmit and fast recovery (RFC 5681 §3.2) extended by
//! RFC 6582's partial-acknowledgment handling.

use super::{initial_window, AckEvent, CongestionControl};
use crate::proto::Instant;

/// The NewReno congestion controller.
///
/// ```
/// use rawtcp::proto::cc::{CongestionControl, NewReno};
/// let mut cc = NewReno::new(1000);
/// assert_eq!(cc.window(), 10_000); // RFC 6928 initial window
/// cc.on_enter_recovery(rawtcp::proto::Instant::ZERO, 10_000, 1000);
/// assert_eq!(cc.ssthresh(), 5_000);
/// ```
#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acknowledged since cwnd last grew in congestion avoidance (RFC 5681 §3.1).
    bytes_acked: u32,
}

impl NewReno {
    /// A controller for a connection whose MSS is `mss`.
    pub fn new(mss: u32) -> NewReno {
        NewReno {
            cwnd: initial_window(mss),
            ssthresh: u32::MAX,
            bytes_acked: 0,
        }
    }

    fn reduced_ssthresh(in_flight: u32, mss: u32) -> u32 {
        // RFC 5681 §3.1 equation (4): ssthresh = max(FlightSize / 2, 2 * SMSS).
        (in_flight / 2).max(2 * mss)
    }
}

impl CongestionControl for NewReno {
    fn name(&self) -> &'static str {
        "newreno"
    }

    fn window(&self) -> u32 {
        self.cwnd
    }

    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    fn on_ack(&mut self, _now: Instant, ack: &AckEvent) {
        let mss = ack.mss.max(1);
        // Grow only a window that was in use (RFC 7661 §4.1, as Linux's
        // `tcp_is_cwnd_limited`): a sender limited by the application or the peer's window
        // learns nothing about the path, and an unused window would burst later.
        let in_use = if self.cwnd < self.ssthresh {
            ack.prior_in_flight.saturating_mul(2) >= self.cwnd
        } else {
            ack.prior_in_flight.saturating_add(mss) >= self.cwnd
        };
        if !in_use {
            return;
        }
        if self.cwnd < self.ssthresh {
            // Slow start with byte counting (RFC 3465). RFC 3465 caps one ACK's growth at
            // L = 2 * SMSS; like Linux we count every acknowledged byte instead, because the
            // runtime drains arrivals in batches and acknowledges a batch with one ACK, and
            // the cap would then slow growth to a crawl. Growth stops at ssthresh.
            let room = self.ssthresh - self.cwnd;
            self.cwnd = self.cwnd.saturating_add(ack.acked.min(room));
        } else {
            // Congestion avoidance: one SMSS per window of acknowledged bytes.
            self.bytes_acked = self.bytes_acked.saturating_add(ack.acked);
            if self.bytes_acked >= self.cwnd {
                self.bytes_acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(mss);
            }
        }
    }

    fn on_enter_recovery(&mut self, _now: Instant, in_flight: u32, mss: u32) {
        // RFC 6582 §3.2 step 2 / RFC 5681 §3.2 step 3: cwnd = ssthresh + 3 * SMSS.
        self.ssthresh = Self::reduced_ssthresh(in_flight, mss);
        self.cwnd = self.ssthresh + 3 * mss;
        self.bytes_acked = 0;
    }

    fn on_dup_ack_in_recovery(&mut self, mss: u32) {
        // RFC 5681 §3.2 step 4: inflate by one SMSS per further duplicate ACK.
        self.cwnd = self.cwnd.saturating_add(mss);
    }

    fn on_partial_ack(&mut self, acked: u32, mss: u32) {
        // RFC 6582 §3.2 step 5: deflate by the amount acknowledged, add back one SMSS if
        // that was at least one SMSS.
        self.cwnd = self.cwnd.saturating_sub(acked);
        if acked >= mss {
            self.cwnd += mss;
        }
        self.cwnd = self.cwnd.max(mss);
    }

    fn on_exit_recovery(&mut self, _now: Instant, in_flight: u32, mss: u32) {
        // RFC 6582 §3.2 step 6, option (1): cwnd = min(ssthresh, FlightSize + SMSS).
        self.cwnd = self.ssthresh.min(in_flight + mss).max(mss);
    }

    fn on_timeout(&mut self, _now: Instant, in_flight: u32, mss: u32, first: bool) {
        if first {
            self.ssthresh = Self::reduced_ssthresh(in_flight, mss);
        }
        // RFC 5681 §3.1: the loss window is one segment.
        self.cwnd = mss;
        self.bytes_acked = 0;
    }

    fn on_idle_restart(&mut self, mss: u32) {
        self.cwnd = self.cwnd.min(initial_window(mss));
    }

    fn undo(&mut self, cwnd: u32, ssthresh: u32) {
        self.cwnd = self.cwnd.max(cwnd);
        self.ssthresh = ssthresh;
        self.bytes_acked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acknowledgment of a fully used window.
    fn ack(acked: u32) -> AckEvent {
        AckEvent {
            acked,
            prior_in_flight: u32::MAX / 2,
            mss: 1000,
            rtt: None,
            srtt: None,
        }
    }

    #[test]
    fn slow_start_then_avoidance() {
        let mut cc = NewReno::new(1000);
        cc.on_ack(Instant::ZERO, &ack(5000)); // every acknowledged byte counts
        assert_eq!(cc.window(), 15_000);
        cc.on_timeout(Instant::ZERO, 12_000, 1000, true);
        assert_eq!((cc.window(), cc.ssthresh()), (1000, 6000));
        // Slow start stops exactly at ssthresh.
        cc.on_ack(Instant::ZERO, &ack(9000));
        assert_eq!(cc.window(), 6000);
        let mut cc = NewReno::new(1000);
        cc.on_timeout(Instant::ZERO, 12_000, 1000, true);
        for _ in 0..5 {
            cc.on_ack(Instant::ZERO, &ack(1000));
        }
        assert_eq!(cc.window(), 6000);
        // Avoidance: 6000 bytes acknowledged grow cwnd by one SMSS.
        for _ in 0..6 {
            cc.on_ack(Instant::ZERO, &ack(1000));
        }
        assert_eq!(cc.window(), 7000);
    }

    #[test]
    fn an_unused_window_does_not_grow() {
        let mut cc = NewReno::new(1000);
        let idle = AckEvent {
            prior_in_flight: 2000,
            ..ack(2000)
        };
        cc.on_ack(Instant::ZERO, &idle);
        assert_eq!(
            cc.window(),
            10_000,
            "2000 bytes in flight use a fifth of 10000"
        );
        let busy = AckEvent {
            prior_in_flight: 6000,
            ..ack(2000)
        };
        cc.on_ack(Instant::ZERO, &busy);
        assert_eq!(
            cc.window(),
            12_000,
            "in slow start half the window in flight counts"
        );
    }

    #[test]
    fn recovery_inflate_deflate_exit() {
        let mut cc = NewReno::new(1000);
        cc.on_enter_recovery(Instant::ZERO, 20_000, 1000);
        assert_eq!((cc.window(), cc.ssthresh()), (13_000, 10_000));
        cc.on_dup_ack_in_recovery(1000);
        assert_eq!(cc.window(), 14_000);
        cc.on_partial_ack(3000, 1000);
        assert_eq!(cc.window(), 12_000);
        cc.on_exit_recovery(Instant::ZERO, 4_000, 1000);
        assert_eq!(cc.window(), 5_000);
        // A later timeout of the same series keeps ssthresh.
        cc.on_timeout(Instant::ZERO, 100_000, 1000, false);
        assert_eq!((cc.window(), cc.ssthresh()), (1000, 10_000));
    }
}
