//! One direction of a simulated link: its settings ([`LinkConfig`]) and the impairments it
//! applies (corruption, serialisation time at a bandwidth), with the PRNG behind every random
//! choice.

use super::*;

/// The behaviour of one direction of a link between two addresses.
///
/// The default is a perfect link: no delay, no impairment, unlimited bandwidth, MTU 1500.
/// Build variations with the `with_*` helpers:
///
/// ```
/// use rawtcp::datapath::sim::LinkConfig;
/// use std::time::Duration;
/// let wan = LinkConfig::lossy(0.01)
///     .with_latency(Duration::from_millis(40))
///     .with_jitter(Duration::from_millis(5))
///     .with_bandwidth(1_250_000);
/// assert_eq!(wan.mtu, 1500);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay added to every packet.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` for every packet (and every duplicate).
    /// Non-zero jitter reorders packets sent closer together than the jitter.
    pub jitter: Duration,
    /// Bytes per second; `None` for unlimited. Packets are serialised one after another: a
    /// packet starts when the link is free and occupies it for `len / bandwidth` seconds, and
    /// its latency counts from its last byte. `Some(0)` is treated as one byte per second.
    pub bandwidth: Option<u64>,
    /// Probability that a packet is dropped.
    pub loss: f64,
    /// Probability that a packet is delivered twice (the copy has its own jitter).
    pub duplicate: f64,
    /// Probability that a packet is held back by an extra [`reorder_delay`](Self::reorder_delay).
    pub reorder: f64,
    /// The extra delay of reordered packets.
    pub reorder_delay: Duration,
    /// Probability that one random bit after the IP header is flipped (the stack's checksum
    /// check must catch it; routing still works).
    pub corrupt: f64,
    /// The largest IP packet the link carries; larger packets are dropped.
    pub mtu: usize,
    /// With a bandwidth limit, the longest a packet may wait for the link before it is dropped
    /// (a drop-tail queue measured in time); `None` for an unbounded queue.
    pub queue_limit: Option<Duration>,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: None,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            corrupt: 0.0,
            mtu: 1500,
            queue_limit: None,
        }
    }
}

impl LinkConfig {
    /// A perfect link with MTU 1500 (the default).
    pub fn perfect() -> LinkConfig {
        LinkConfig::default()
    }

    /// The default loopback link: perfect, MTU 65535.
    pub fn loopback() -> LinkConfig {
        LinkConfig::default().with_mtu(LOOPBACK_MTU)
    }

    /// A perfect link that drops packets with probability `loss`.
    pub fn lossy(loss: f64) -> LinkConfig {
        LinkConfig::default().with_loss(loss)
    }

    /// A link that drops everything (a partition).
    pub fn down() -> LinkConfig {
        LinkConfig::lossy(1.0)
    }

    /// Sets [`latency`](Self::latency).
    pub fn with_latency(mut self, latency: Duration) -> LinkConfig {
        self.latency = latency;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    pub fn with_jitter(mut self, jitter: Duration) -> LinkConfig {
        self.jitter = jitter;
        self
    }

    /// Sets [`bandwidth`](Self::bandwidth) in bytes per second.
    pub fn with_bandwidth(mut self, bytes_per_second: u64) -> LinkConfig {
        self.bandwidth = Some(bytes_per_second);
        self
    }

    /// Sets [`loss`](Self::loss).
    pub fn with_loss(mut self, probability: f64) -> LinkConfig {
        self.loss = probability;
        self
    }

    /// Sets [`duplicate`](Self::duplicate).
    pub fn with_duplicate(mut self, probability: f64) -> LinkConfig {
        self.duplicate = probability;
        self
    }

    /// Sets [`reorder`](Self::reorder) and [`reorder_delay`](Self::reorder_delay).
    pub fn with_reorder(mut self, probability: f64, delay: Duration) -> LinkConfig {
        self.reorder = probability;
        self.reorder_delay = delay;
        self
    }

    /// Sets [`corrupt`](Self::corrupt).
    pub fn with_corrupt(mut self, probability: f64) -> LinkConfig {
        self.corrupt = probability;
        self
    }

    /// Sets [`mtu`](Self::mtu).
    pub fn with_mtu(mut self, mtu: usize) -> LinkConfig {
        self.mtu = mtu;
        self
    }

    /// Sets [`queue_limit`](Self::queue_limit).
    pub fn with_queue_limit(mut self, limit: Duration) -> LinkConfig {
        self.queue_limit = Some(limit);
        self
    }
}

/// Flips one random bit of `data` after its first `header_len` bytes; false if there is none.
pub(super) fn flip_bit(data: &mut [u8], header_len: usize, rng: &mut Rng) -> bool {
    let bits = data.len().saturating_sub(header_len) as u64 * 8;
    if bits == 0 {
        return false;
    }
    let bit = rng.below(bits);
    let Ok(byte) = usize::try_from(bit / 8) else {
        return false;
    };
    match data.get_mut(header_len + byte) {
        Some(b) => {
            *b ^= 1 << (bit % 8);
            true
        }
        None => false,
    }
}

/// How long `len` bytes occupy a link of `bandwidth` bytes per second.
pub(super) fn transmission_time(len: usize, bandwidth: u64) -> Duration {
    let nanos = len as u128 * 1_000_000_000 / u128::from(bandwidth.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `t + d`, saturating at a far future instead of overflowing.
pub(super) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(t)
}

/// splitmix64 (Steele, Lea and Flood, 2014): small, fast, and good enough for impairments.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p` (never for NaN or `p <= 0`, always for `p >= 1`). Draws
    /// nothing when the outcome is certain.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        ((self.next() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `[0, max]`, to the nanosecond.
    pub(super) fn duration_upto(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(match nanos.checked_add(1) {
            Some(n) => self.below(n),
            None => self.next(),
        })
    }
}
