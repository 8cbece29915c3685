//! Round-trip time estimation and the retransmission timeout (RFC 6298).

use std::time::Duration;

/// SRTT, RTTVAR and RTO as RFC 6298 §2 defines them, with exponential backoff (§5.5).
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    latest: Option<Duration>,
    min_rtt: Option<Duration>,
    base_rto: Duration,
    backoff: u32,
    min_rto: Duration,
    max_rto: Duration,
}

/// Clock granularity G of RFC 6298 §2: the engine measures in microseconds, but timers in
/// the runtime fire with millisecond resolution.
const GRANULARITY: Duration = Duration::from_millis(1);

impl RttEstimator {
    /// An estimator before any measurement: RTO is `initial` (RFC 6298 §2.1).
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            latest: None,
            min_rtt: None,
            base_rto: initial.clamp(min_rto, max_rto),
            backoff: 0,
            min_rto,
            max_rto,
        }
    }

    /// Feeds one RTT measurement (RFC 6298 §2.2 and §2.3, α = 1/8, β = 1/4).
    pub fn sample(&mut self, r: Duration) {
        self.latest = Some(r);
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        // RFC 6298 §2.3: RTO = SRTT + max(G, K*RTTVAR). The lower bound (§2.4) applies, as
        // Linux applies it, to the variance term rather than to the sum: samples arrive with
        // every ACK, RTTVAR shrinks to almost nothing on a steady path, and an RTO of
        // barely more than SRTT would fire at the first queueing delay. An upper bound of at
        // least 60 s (§2.5).
        let rto = srtt + GRANULARITY.max(self.rttvar * 4).max(self.min_rto);
        self.base_rto = rto.clamp(self.min_rto, self.max_rto);
        // A valid sample after a backoff collapses it (RFC 6298 §5.7 note, as Linux does).
        self.backoff = 0;
    }

    /// Before any measurement, raises the RTO to at least `floor` (RFC 6298 §5.7: 3 s once
    /// the SYN had to be retransmitted).
    pub fn raise_unmeasured(&mut self, floor: Duration) {
        if self.srtt.is_none() {
            self.base_rto = self.base_rto.max(floor).min(self.max_rto);
        }
    }

    /// The current retransmission timeout, backoff included, capped at the maximum.
    pub fn rto(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        self.base_rto.saturating_mul(factor).min(self.max_rto)
    }

    /// Doubles the timeout after it expired (RFC 6298 §5.5).
    pub fn back_off(&mut self) {
        if self.backoff < 16 {
            self.backoff += 1;
        }
    }

    /// Forgets the backoff (new data was acknowledged).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// How many times the timeout has been doubled.
    pub fn backoff(&self) -> u32 {
        self.backoff
    }

    /// Smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// RTT variation.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The most recent sample.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }

    /// The smallest sample seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rfc6298_first_and_later_samples() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(120_000));
        assert_eq!(e.rto(), ms(1000));
        e.sample(ms(100));
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rttvar(), ms(50));
        // 100 + max(4 * 50, 200) = 300
        assert_eq!(e.rto(), ms(300));
        e.sample(ms(200));
        // rttvar = 3/4 * 50 + 1/4 * 100 = 62.5; srtt = 7/8 * 100 + 1/8 * 200 = 112.5
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(112_500 + 250_000));
        // A steady path: RTTVAR decays, the variance term stays at the 200 ms minimum.
        for _ in 0..200 {
            e.sample(ms(100));
        }
        assert!(e.rttvar() < ms(1));
        assert_eq!(e.rto().as_millis(), 300);
    }

    #[test]
    fn min_clamp_and_backoff_cap() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(5_000));
        e.sample(ms(1));
        assert_eq!(e.rto(), ms(201));
        e.back_off();
        assert_eq!(e.rto(), ms(402));
        for _ in 0..40 {
            e.back_off();
        }
        assert_eq!(e.rto(), ms(5_000));
        e.reset_backoff();
        assert_eq!(e.rto(), ms(201));
    }
}
