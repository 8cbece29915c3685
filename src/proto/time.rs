//! Engine time: a monotonic instant passed in by whoever drives the engine.
//!
//! The engine never reads a clock. The runtime converts its clock (tokio's, which may be
//! paused in tests) into an [`Instant`]; scripted tests simply count microseconds.

use std::fmt;
use std::num::NonZeroU64;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time, in microseconds since an origin chosen by the driver.
///
/// ```
/// use rawtcp::proto::Instant;
/// use std::time::Duration;
/// let t = Instant::from_millis(5) + Duration::from_micros(250);
/// assert_eq!(t.as_micros(), 5_250);
/// assert_eq!(t - Instant::from_millis(5), Duration::from_micros(250));
/// ```
///
/// Stored as microseconds plus one in a `NonZeroU64`, so that an `Option<Instant>` (a timer
/// that may be unarmed, of which a connection has many) takes 8 bytes, not 16. Instants
/// saturate one microsecond short of `u64::MAX`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(NonZeroU64);

impl Default for Instant {
    fn default() -> Instant {
        Instant::ZERO
    }
}

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant::from_micros(0);

    /// An instant `us` microseconds after the origin.
    pub const fn from_micros(us: u64) -> Instant {
        match NonZeroU64::new(us.saturating_add(1)) {
            Some(v) => Instant(v),
            None => unreachable!(),
        }
    }

    /// An instant `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Instant {
        Instant::from_micros(ms.saturating_mul(1000))
    }

    /// An instant `s` seconds after the origin.
    pub const fn from_secs(s: u64) -> Instant {
        Instant::from_micros(s.saturating_mul(1_000_000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0.get() - 1
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.as_micros() / 1000
    }

    /// The time since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.get().saturating_sub(earlier.0.get()))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(self.as_micros().saturating_add(us))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.as_micros();
        write!(f, "{}.{:06}s", us / 1_000_000, us % 1_000_000)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unarmed_timer_costs_no_more_than_an_armed_one() {
        assert_eq!(std::mem::size_of::<Option<Instant>>(), 8);
    }

    #[test]
    fn the_origin_and_the_far_end_round_trip() {
        assert_eq!(Instant::ZERO.as_micros(), 0);
        assert_eq!(Instant::default(), Instant::ZERO);
        let far = Instant::from_micros(u64::MAX);
        assert_eq!(far.as_micros(), u64::MAX - 1);
        assert_eq!(far + Duration::from_secs(1), far);
        assert!(Instant::from_micros(3) < Instant::from_micros(4));
        assert_eq!(
            Instant::from_micros(3) - Instant::from_micros(4),
            Duration::ZERO
        );
        assert_eq!(format!("{:?}", Instant::from_micros(5_250)), "0.005250s");
    }
}
