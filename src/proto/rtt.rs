//! Round-trip time estimation and the retransmission timeout (RFC 6298).

use std::time::Duration;

/// SRTT, RTTVAR and RTO as RFC 6298 §2 defines them, with exponential backoff (§5.5).
///
/// Times are kept as nanoseconds in `u64`s (`NONE` for "not measured yet"), half the size of
/// `Duration`s: every connection carries one.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: u64,
    rttvar: u64,
    latest: u64,
    min_rtt: u64,
    base_rto: u64,
    min_rto: u64,
    max_rto: u64,
    backoff: u32,
}

/// No measurement yet.
const NONE: u64 = u64::MAX;

/// `d` in nanoseconds, saturating below `NONE` (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(NONE - 1)
        .min(NONE - 1)
}

fn dur(n: u64) -> Duration {
    Duration::from_nanos(n)
}

fn opt(n: u64) -> Option<Duration> {
    (n != NONE).then(|| dur(n))
}

/// Clock granularity G of RFC 6298 §2: the engine measures in microseconds, but timers in
/// the runtime fire with millisecond resolution.
const GRANULARITY: Duration = Duration::from_millis(1);

impl RttEstimator {
    /// An estimator before any measurement: RTO is `initial` (RFC 6298 §2.1).
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: NONE,
            rttvar: 0,
            latest: NONE,
            min_rtt: NONE,
            base_rto: nanos(initial.clamp(min_rto, max_rto)),
            min_rto: nanos(min_rto),
            max_rto: nanos(max_rto),
            backoff: 0,
        }
    }

    /// Feeds one RTT measurement (RFC 6298 §2.2 and §2.3, α = 1/8, β = 1/4).
    pub fn sample(&mut self, r: Duration) {
        self.latest = nanos(r);
        self.min_rtt = self.min_rtt.min(nanos(r));
        let srtt = match self.srtt() {
            None => {
                self.rttvar = nanos(r / 2);
                r
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = nanos((dur(self.rttvar) * 3 + delta) / 4);
                (srtt * 7 + r) / 8
            }
        };
        self.srtt = nanos(srtt);
        // RFC 6298 §2.3: RTO = SRTT + max(G, K*RTTVAR). The lower bound (§2.4) applies, as
        // Linux applies it, to the variance term rather than to the sum: samples arrive with
        // every ACK, RTTVAR shrinks to almost nothing on a steady path, and an RTO of
        // barely more than SRTT would fire at the first queueing delay. An upper bound of at
        // least 60 s (§2.5).
        let (min_rto, max_rto) = (dur(self.min_rto), dur(self.max_rto));
        let rto = srtt + GRANULARITY.max(dur(self.rttvar) * 4).max(min_rto);
        self.base_rto = nanos(rto.clamp(min_rto, max_rto));
        // A valid sample after a backoff collapses it (RFC 6298 §5.7 note, as Linux does).
        self.backoff = 0;
    }

    /// Before any measurement, raises the RTO to at least `floor` (RFC 6298 §5.7: 3 s once
    /// the SYN had to be retransmitted).
    pub fn raise_unmeasured(&mut self, floor: Duration) {
        if self.srtt == NONE {
            self.base_rto = self.base_rto.max(nanos(floor)).min(self.max_rto);
        }
    }

    /// The current retransmission timeout, backoff included, capped at the maximum.
    pub fn rto(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        dur(self.base_rto)
            .saturating_mul(factor)
            .min(dur(self.max_rto))
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
        opt(self.srtt)
    }

    /// RTT variation.
    pub fn rttvar(&self) -> Duration {
        dur(self.rttvar)
    }

    /// The most recent sample.
    pub fn latest(&self) -> Option<Duration> {
        opt(self.latest)
    }

    /// The smallest sample seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        opt(self.min_rtt)
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
