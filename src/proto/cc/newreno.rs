//! NewReno: slow start and congestion avoidance (RFC 5681 §3.1) with appropriate byte
//! counting (RFC 3465), and the multiplicative decrease of RFC 5681 §3.2 / RFC 6582 on a
//! congestion event. The connection runs recovery itself (PRR, RFC 6937), so the window
//! inflation and deflation of classic fast recovery are not needed here.

use super::{initial_window, min_window, AckEvent, CongestionControl, CongestionEvent};
use crate::proto::Instant;

/// The NewReno congestion controller.
///
/// ```
/// use rawtcp::proto::cc::{CongestionControl, CongestionEvent, CongestionKind, NewReno};
/// use rawtcp::proto::Instant;
/// let mut cc = NewReno::new(1000);
/// assert_eq!(cc.window(), 10_000); // RFC 6928 initial window
/// let loss = CongestionEvent { kind: CongestionKind::Loss, in_flight: 10_000, mss: 1000 };
/// cc.on_congestion_event(Instant::ZERO, &loss);
/// assert_eq!(cc.ssthresh(), 5_000);
/// cc.on_recovery_end(Instant::ZERO, 1000);
/// assert_eq!(cc.window(), 5_000);
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
        (in_flight / 2).max(min_window(mss))
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
        // No growth in recovery (RFC 6937 §3 sets the window there), and only for a window
        // that was in use (RFC 7661 §4.1): a sender limited by the application or the peer's
        // window learns nothing about the path, and an unused window would burst later.
        if ack.in_recovery || !ack.cwnd_limited || ack.acked == 0 {
            return;
        }
        let mss = ack.mss.max(1);
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

    fn on_congestion_event(&mut self, _now: Instant, ev: &CongestionEvent) {
        // RFC 6582 §3.2 step 2 / RFC 5681 §3.2 step 2.
        self.ssthresh = Self::reduced_ssthresh(ev.in_flight, ev.mss);
        self.bytes_acked = 0;
    }

    fn on_recovery_end(&mut self, _now: Instant, mss: u32) {
        // RFC 6937 §3: at the end of recovery cwnd = ssthresh.
        self.cwnd = self.ssthresh.max(min_window(mss));
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

    fn seed(&mut self, cwnd: u32, ssthresh: u32) {
        self.cwnd = cwnd;
        self.ssthresh = ssthresh;
        self.bytes_acked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::CongestionKind;
    use super::*;

    /// An acknowledgment of a fully used window.
    fn ack(acked: u32) -> AckEvent {
        AckEvent {
            acked,
            delivered: acked,
            lost: 0,
            prior_in_flight: u32::MAX / 2,
            in_flight: u32::MAX / 2,
            mss: 1000,
            rtt: None,
            srtt: None,
            min_rtt: None,
            rate: None,
            total_delivered: 0,
            round_start: false,
            in_recovery: false,
            after_timeout: false,
            cwnd_limited: true,
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
    fn an_unused_window_or_recovery_does_not_grow() {
        let mut cc = NewReno::new(1000);
        let idle = AckEvent {
            cwnd_limited: false,
            ..ack(2000)
        };
        cc.on_ack(Instant::ZERO, &idle);
        assert_eq!(cc.window(), 10_000);
        let recovering = AckEvent {
            in_recovery: true,
            ..ack(2000)
        };
        cc.on_ack(Instant::ZERO, &recovering);
        assert_eq!(cc.window(), 10_000);
        cc.on_ack(Instant::ZERO, &ack(2000));
        assert_eq!(cc.window(), 12_000);
    }

    #[test]
    fn loss_halves_then_recovery_end_sets_the_window() {
        let mut cc = NewReno::new(1000);
        let ev = CongestionEvent {
            kind: CongestionKind::Loss,
            in_flight: 20_000,
            mss: 1000,
        };
        cc.on_congestion_event(Instant::ZERO, &ev);
        assert_eq!((cc.window(), cc.ssthresh()), (10_000, 10_000));
        cc.on_recovery_end(Instant::ZERO, 1000);
        assert_eq!(cc.window(), 10_000);
        // A small flight still leaves two segments.
        let ev = CongestionEvent {
            in_flight: 1000,
            ..ev
        };
        cc.on_congestion_event(Instant::ZERO, &ev);
        cc.on_recovery_end(Instant::ZERO, 1000);
        assert_eq!(cc.window(), 2000);
        // A later timeout of the same series keeps ssthresh.
        cc.on_timeout(Instant::ZERO, 100_000, 1000, false);
        assert_eq!((cc.window(), cc.ssthresh()), (1000, 2000));
        cc.undo(10_000, 10_000);
        assert_eq!((cc.window(), cc.ssthresh()), (10_000, 10_000));
    }
}
