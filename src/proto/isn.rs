//! Initial sequence numbers (RFC 6528 §3): ISN = M + F(local, remote, secret), where M is a
//! 4-microsecond timer and F a keyed hash (SipHash-2-4 with a random 128-bit key).

use super::{Instant, SeqNum};
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::SocketAddr;

/// Produces ISNs that are unpredictable to off-path attackers and increase over time for
/// any one 4-tuple, so old duplicates of an earlier incarnation are unlikely to be accepted.
///
/// ```
/// use rawtcp::proto::{IsnGenerator, Instant};
/// let g = IsnGenerator::with_key([7; 16]);
/// let a = "10.0.0.1:1000".parse().unwrap();
/// let b = "10.0.0.2:80".parse().unwrap();
/// let early = g.generate(a, b, Instant::from_secs(1));
/// let later = g.generate(a, b, Instant::from_secs(2));
/// assert_eq!(later - early, 250_000); // one second of 4 µs ticks
/// ```
#[derive(Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
}

impl std::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IsnGenerator { key: <secret> }")
    }
}

impl Default for IsnGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl IsnGenerator {
    /// A generator with a fresh random key.
    ///
    /// The key comes from the standard library's randomly keyed hasher, which is seeded from
    /// the operating system's entropy source, so no extra dependency is needed.
    pub fn new() -> IsnGenerator {
        IsnGenerator { key: random_key() }
    }

    /// A generator with a fixed key (reproducible runs).
    pub fn with_key(key: [u8; 16]) -> IsnGenerator {
        IsnGenerator { key }
    }

    /// The ISN for a connection between `local` and `remote` opened at `now`.
    pub fn generate(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> SeqNum {
        let f = self.keyed(local, remote, 0);
        let m = (now.as_micros() / 4) as u32;
        SeqNum(f.wrapping_add(m))
    }

    /// A 32-bit keyed hash of the 4-tuple, for per-connection secrets such as the
    /// timestamp offset (RFC 7323 §5.4).
    pub fn hash(&self, local: SocketAddr, remote: SocketAddr, salt: u8) -> u32 {
        self.keyed(local, remote, salt.wrapping_add(1))
    }

    fn keyed(&self, local: SocketAddr, remote: SocketAddr, salt: u8) -> u32 {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write_u8(salt);
        write_tuple(&mut h, local, remote);
        h.finish() as u32
    }
}

/// Feeds a connection's 4-tuple into a keyed hash: the addresses' octets and the ports.
pub(crate) fn write_tuple(h: &mut impl Hasher, local: SocketAddr, remote: SocketAddr) {
    for addr in [local, remote] {
        match addr {
            SocketAddr::V4(a) => h.write(&a.ip().octets()),
            SocketAddr::V6(a) => h.write(&a.ip().octets()),
        }
        h.write_u16(addr.port());
    }
}

/// A random 128-bit key from the standard library's randomly keyed hasher, which is seeded
/// from the operating system's entropy source, so no extra dependency is needed.
pub(crate) fn random_key() -> [u8; 16] {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    let mut key = [0u8; 16];
    for (i, half) in key.chunks_mut(8).enumerate() {
        let word = RandomState::new().hash_one(i as u64 ^ 0x5eed_0f15_0000_0000);
        half.copy_from_slice(&word.to_le_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_per_tuple_and_per_key() {
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.2:81".parse().unwrap();
        let g = IsnGenerator::with_key([1; 16]);
        let t = Instant::from_secs(3);
        assert_ne!(g.generate(a, b, t), g.generate(a, c, t));
        assert_eq!(g.generate(a, b, t), g.generate(a, b, t));
        assert_ne!(
            g.generate(a, b, t),
            IsnGenerator::with_key([2; 16]).generate(a, b, t)
        );
        assert_ne!(IsnGenerator::new().key, IsnGenerator::new().key);
    }
}
