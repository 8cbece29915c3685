//! Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation): how many bytes the
//! path delivered per second, sampled on every acknowledgment from the snapshot each segment
//! carries of the connection's delivery counters when it was sent; plus packet-timed round
//! trips (a round ends when data sent after its start is delivered), which BBR and HyStart++
//! count in.

use super::sent::{Delivered, TxState};
use crate::proto::cc::RateSample;
use crate::proto::Instant;
use std::time::Duration;

/// The connection-wide delivery counters (`C.*` in the draft) and the sample being built
/// from one acknowledgment.
#[derive(Debug, Default, Clone)]
pub struct RateEstimator {
    /// `C.delivered`: bytes delivered over the connection's life.
    delivered: u64,
    /// `C.delivered_time`.
    delivered_at: Instant,
    /// `C.first_sent_time`: send time of the newest segment delivered.
    first_sent_at: Instant,
    /// `C.app_limited`: the delivered count at which an application-limited period ends
    /// (0 when not application-limited).
    app_limited: u64,
    /// `C.lost`: bytes ever deemed lost.
    lost: u64,
    /// Rounds: the delivered count that ends the current round.
    next_round_delivered: u64,
    rounds: u64,
    /// The newest segment delivered by the acknowledgment being processed.
    newest: Option<Newest>,
}

#[derive(Debug, Clone, Copy)]
struct Newest {
    tx: TxState,
    sent_at: Instant,
    rtt: Option<Duration>,
}

/// What one acknowledgment yields: a rate sample (when valid) and the round bookkeeping.
#[derive(Debug, Clone, Copy, Default)]
pub struct AckSample {
    /// The delivery-rate sample, if the interval was long enough to trust.
    pub rate: Option<RateSample>,
    /// Whether a new round trip starts with this acknowledgment.
    pub round_start: bool,
}

impl RateEstimator {
    /// `C.delivered`.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Packet-timed rounds completed.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Whether the sender is in an application-limited period.
    pub fn is_app_limited(&self) -> bool {
        self.app_limited != 0
    }

    /// The snapshot for a segment sent now (draft §3.2 `OnPacketSent`). `idle` is true when
    /// nothing was in flight before it: the sampling intervals restart.
    pub fn on_send(&mut self, now: Instant, idle: bool, in_flight_after: u32) -> TxState {
        if idle {
            self.first_sent_at = now;
            self.delivered_at = now;
        }
        TxState {
            delivered: self.delivered,
            delivered_at: self.delivered_at,
            first_sent_at: self.first_sent_at,
            lost: self.lost,
            in_flight: in_flight_after,
            app_limited: self.app_limited != 0,
        }
    }

    /// Bytes were newly deemed lost.
    pub fn on_lost(&mut self, bytes: u32) {
        self.lost += u64::from(bytes);
    }

    /// A segment was newly delivered (draft §3.3 `UpdateRateSample`, per segment).
    pub fn on_delivered(&mut self, now: Instant, d: &Delivered) {
        self.delivered += u64::from(d.bytes);
        self.delivered_at = now;
        let seg = &d.seg;
        // The newest transmission delivered defines the sample (the highest P.delivered,
        // ties broken by send time).
        let newer = self.newest.is_none_or(|n| {
            seg.tx.delivered > n.tx.delivered
                || (seg.tx.delivered == n.tx.delivered && seg.sent_at >= n.sent_at)
        });
        if newer {
            self.newest = Some(Newest {
                tx: seg.tx,
                sent_at: seg.sent_at,
                rtt: (!seg.ever_retransmitted()).then(|| now - seg.sent_at),
            });
            self.first_sent_at = seg.sent_at;
        }
    }

    /// The sender has nothing more to send and does not fill its window (draft §3.4
    /// `OnApplicationLimited`): samples until this flight is delivered are app-limited.
    pub fn on_app_limited(&mut self, in_flight: u32) {
        self.app_limited = (self.delivered + u64::from(in_flight)).max(1);
    }

    /// Completes the sample of one acknowledgment (draft §3.3 `GenerateRateSample`).
    /// `min_rtt` guards against intervals too short to mean anything.
    pub fn finish(&mut self, min_rtt: Option<Duration>) -> AckSample {
        if self.app_limited != 0 && self.delivered > self.app_limited {
            self.app_limited = 0;
        }
        let Some(p) = self.newest.take() else {
            return AckSample::default();
        };
        let round_start = p.tx.delivered >= self.next_round_delivered;
        if round_start {
            self.next_round_delivered = self.delivered;
            self.rounds += 1;
        }
        let send_elapsed = p.sent_at - p.tx.first_sent_at;
        let ack_elapsed = self.delivered_at - p.tx.delivered_at;
        let interval = send_elapsed.max(ack_elapsed);
        let delivered = self.delivered - p.tx.delivered;
        // An interval shorter than the minimum RTT comes from a spurious retransmission or
        // ACK compression and would overestimate the rate (draft §3.3).
        let valid = !interval.is_zero() && min_rtt.is_none_or(|m| interval >= m);
        let rate = valid.then(|| RateSample {
            delivered,
            interval,
            delivery_rate: (u128::from(delivered) * 1_000_000 / interval.as_micros().max(1))
                .min(u128::from(u64::MAX)) as u64,
            prior_delivered: p.tx.delivered,
            is_app_limited: p.tx.app_limited,
            tx_in_flight: p.tx.in_flight,
            lost: self.lost - p.tx.lost,
            rtt: p.rtt,
        });
        AckSample { rate, round_start }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sent::SentQueue;
    use super::*;
    use crate::proto::SeqNum;

    /// A path delivering 1000-byte segments every millisecond (1 MB/s) with a 10 ms RTT.
    #[test]
    fn a_steady_path_measures_its_rate_and_rounds() {
        let mut est = RateEstimator::default();
        let mut q = SentQueue::default();
        let ms = Instant::from_millis;
        let mut seq = 0u32;
        let mut samples = Vec::new();
        let mut rounds = 0;
        for t in 0..100u64 {
            // Send one segment per millisecond.
            let idle = q.is_empty();
            let tx = est.on_send(ms(t), idle, q.pipe() + 1000);
            q.push(SeqNum(seq), SeqNum(seq + 1000), ms(t), 0, || tx);
            seq += 1000;
            // The segment sent 10 ms ago is acknowledged now.
            if t >= 10 {
                let una = SeqNum((t as u32 - 9) * 1000);
                q.ack(una, |d| est.on_delivered(ms(t), &d));
                let s = est.finish(Some(Duration::from_millis(10)));
                rounds += u32::from(s.round_start);
                if let Some(r) = s.rate {
                    samples.push(r);
                }
            }
        }
        let last = samples.last().unwrap();
        assert!(
            (950_000..=1_050_000).contains(&last.delivery_rate),
            "{last:?}"
        );
        assert_eq!(last.rtt, Some(Duration::from_millis(10)));
        // 90 ms of acknowledgments at a 10 ms RTT: about nine rounds.
        assert!((8..=10).contains(&rounds), "{rounds}");
    }

    #[test]
    fn app_limited_marks_samples_until_the_flight_is_delivered() {
        let mut est = RateEstimator::default();
        let mut q = SentQueue::default();
        let ms = Instant::from_millis;
        let tx = est.on_send(ms(0), true, 1000);
        q.push(SeqNum(0), SeqNum(1000), ms(0), 0, || tx);
        est.on_app_limited(1000);
        let tx = est.on_send(ms(1), false, 2000);
        q.push(SeqNum(1000), SeqNum(2000), ms(1), 0, || tx);
        q.ack(SeqNum(2000), |d| est.on_delivered(ms(20), &d));
        let s = est.finish(None).rate.unwrap();
        assert!(s.is_app_limited);
        assert!(
            !est.is_app_limited(),
            "the app-limited flight was delivered"
        );
    }
}
