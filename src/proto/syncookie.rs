//! SYN cookies (RFC 4987 §3.6): answering a SYN without keeping any state, and rebuilding
//! the connection from the ACK that completes the handshake.
//!
//! This module owns the cookie's format and its secrets. A listener whose SYN queue is full
//! sends a SYN+ACK whose initial sequence number is the cookie; a legitimate client's ACK
//! acknowledges cookie + 1 and carries its own ISN + 1, so everything needed to open the
//! connection comes back in that ACK.
//!
//! # The cookie
//!
//! ```text
//!  31      27 26  24 23                                   0
//! +----------+------+--------------------------------------+
//! |  tick    | mss  |  MAC(secret of tick; addresses,      |
//! | (5 bits) | (3)  |      ports, client ISN, tick, mss)   |
//! +----------+------+--------------------------------------+
//! ```
//!
//! - *tick* counts 64-second periods; a cookie is accepted during the tick it was made in and
//!   the next one (64 to 128 s), so a captured cookie goes stale.
//! - *mss* indexes [`MSS_TABLE`]: the largest entry not above the client's MSS.
//! - the MAC is SipHash-2-4, truncated to 24 bits, keyed with a random 128-bit secret that is
//!   replaced every two ticks; the previous secret is kept so cookies made just before a
//!   rotation still verify. A blind guess succeeds with probability 2⁻²⁴ per ACK.
//!
//! # Options in the timestamp
//!
//! A cookie has no room for the client's window scale and SACK-permitted option. When the SYN
//! carries timestamps (RFC 7323), they travel in the low 6 bits of the SYN+ACK's TSval, which
//! the client echoes in the TSecr of its ACK: 4 bits of window scale (shift + 1; 0 for none),
//! 1 bit of SACK-permitted, 1 bit spare. The TSval is rounded *down* to carry them, so it
//! never runs ahead of the connection's timestamp clock. Without timestamps the connection
//! opens without window scaling and without SACK, as Linux's does.

use super::{Instant, SeqNum};
use crate::wire::{TcpFlags, TcpRepr};
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::SocketAddr;

/// The MSS values a cookie can carry. The table favours the common Ethernet values, with room
/// for jumbo frames and loopback.
pub const MSS_TABLE: [u16; 8] = [536, 1220, 1380, 1440, 1460, 8948, 16344, 65000];

/// Seconds per tick of the cookie clock.
const TICK_SECS: u64 = 64;
/// Ticks a secret is used for before a fresh one replaces it.
const TICKS_PER_SECRET: u64 = 2;
/// Bits of the TSval that carry options.
const TS_OPTION_BITS: u32 = 6;
const TS_OPTION_MASK: u32 = (1 << TS_OPTION_BITS) - 1;
/// The SACK-permitted bit among them.
const TS_SACK: u32 = 1 << 4;

/// Why a cookie ACK was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// Not an ACK, or one carrying SYN or RST: it cannot complete a handshake.
    NotAnAck,
    /// Made more than one tick ago, or under a secret already forgotten.
    Stale,
    /// The MAC does not verify: a guess, or an ACK for something else.
    Forged,
}

/// What a valid cookie gives back: everything the listener would have kept about the SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    /// Our initial sequence number (the cookie itself).
    pub iss: SeqNum,
    /// The client's initial sequence number.
    pub irs: SeqNum,
    /// The client's MSS, rounded down to [`MSS_TABLE`].
    pub mss: u16,
    /// The client's window scale, if it offered one (timestamps only).
    pub window_scale: Option<u8>,
    /// Whether the client permitted SACK (timestamps only).
    pub sack_permitted: bool,
    /// Whether timestamps are in use; the client's latest TSval.
    pub timestamps: Option<u32>,
}

impl Cookie {
    /// The SYN this cookie stands for, to replay into a passive open
    /// ([`Connection::accept`](super::Connection::accept)).
    pub fn syn(&self, ack: &TcpRepr) -> TcpRepr {
        let mut syn = TcpRepr {
            src_port: ack.src_port,
            dst_port: ack.dst_port,
            seq: self.irs.0,
            flags: TcpFlags::SYN,
            window: ack.window,
            ..TcpRepr::default()
        };
        syn.options.mss = Some(self.mss);
        syn.options.window_scale = self.window_scale;
        syn.options.sack_permitted = self.sack_permitted;
        syn.options.timestamps = self.timestamps.map(|tsval| (tsval, 0));
        syn
    }
}

/// One secret and the epoch (pair of ticks) it signs.
#[derive(Clone, Copy)]
struct Secret {
    epoch: u64,
    key: [u8; 16],
}

/// Makes and checks SYN cookies; see the module documentation.
///
/// ```
/// use rawtcp::proto::syncookie::SynCookies;
/// use rawtcp::proto::{Instant, SeqNum};
/// use rawtcp::wire::{TcpFlags, TcpRepr};
///
/// let mut cookies = SynCookies::new();
/// let server = "10.0.0.2:80".parse().unwrap();
/// let client = "10.0.0.1:40000".parse().unwrap();
/// let mut syn = TcpRepr { src_port: 40000, dst_port: 80, seq: 100, flags: TcpFlags::SYN, ..Default::default() };
/// syn.options.mss = Some(1460);
/// let iss = cookies.make(server, client, &SynCookies::clamp(&syn), Instant::from_secs(1000));
///
/// // The client's ACK: S:101 A:iss+1.
/// let ack = TcpRepr { src_port: 40000, dst_port: 80, seq: 101, ack: (iss + 1u32).0, flags: TcpFlags::ACK, ..Default::default() };
/// let cookie = cookies.check(server, client, &ack, Instant::from_secs(1001)).unwrap();
/// assert_eq!((cookie.iss, cookie.irs, cookie.mss), (iss, SeqNum(100), 1460));
/// ```
#[derive(Clone)]
pub struct SynCookies {
    current: Option<Secret>,
    /// The secret before `current`, while cookies it signed may still be fresh.
    previous: Option<Secret>,
    /// The key the first secret will use, when given (reproducible tests).
    seeded: Option<[u8; 16]>,
}

impl std::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SynCookies { secrets: <secret> }")
    }
}

impl Default for SynCookies {
    fn default() -> Self {
        Self::new()
    }
}

impl SynCookies {
    /// Cookies with fresh random secrets.
    pub fn new() -> SynCookies {
        SynCookies {
            current: None,
            previous: None,
            seeded: None,
        }
    }

    /// Cookies whose first secret is `key` (reproducible runs); later secrets are random.
    pub fn with_key(key: [u8; 16]) -> SynCookies {
        SynCookies {
            seeded: Some(key),
            ..SynCookies::new()
        }
    }

    /// `syn` as a cookie can carry it: the MSS rounded down to [`MSS_TABLE`], no
    /// partial-checksum offer and, without timestamps, no window scale and no
    /// SACK-permitted. The SYN+ACK carrying a cookie must
    /// answer this SYN, not the original, or the two ends would disagree on the options
    /// (RFC 7323 §2.2: scaling is on only if both SYNs carry it).
    pub fn clamp(syn: &TcpRepr) -> TcpRepr {
        let mut s = *syn;
        let peer_mss = syn.options.mss.unwrap_or(536);
        s.options.mss = MSS_TABLE.get(mss_index(peer_mss) as usize).copied();
        s.options.partial_checksums = false;
        if s.options.timestamps.is_none() {
            s.options.window_scale = None;
            s.options.sack_permitted = false;
        }
        s
    }

    /// The cookie answering `syn` from `remote` to `local` at `now`: the ISN of the SYN+ACK.
    /// `syn` should be [`clamp`](SynCookies::clamp)ed already.
    pub fn make(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        syn: &TcpRepr,
        now: Instant,
    ) -> SeqNum {
        let tick = tick_of(now);
        let key = self.key_for(tick, true).unwrap_or_default();
        let mss_index = mss_index(syn.options.mss.unwrap_or(536));
        let mac = mac(&key, local, remote, SeqNum(syn.seq), tick, mss_index);
        SeqNum(((tick as u32 & 0x1f) << 27) | (mss_index << 24) | (mac & 0x00ff_ffff))
    }

    /// The TSval for a cookie SYN+ACK answering `syn`, in place of `tsval`, the one the
    /// connection's clock gives: rounded down to carry the client's window scale and
    /// SACK-permitted in its low 6 bits, so it never runs ahead of that clock (the peer's
    /// PAWS check, RFC 7323 §5, sees the next TSval as newer).
    pub fn timestamp(syn: &TcpRepr, tsval: u32) -> u32 {
        let scale = syn
            .options
            .window_scale
            .map_or(0, |s| u32::from(s.min(14)) + 1);
        let sack = if syn.options.sack_permitted {
            TS_SACK
        } else {
            0
        };
        let ts = (tsval & !TS_OPTION_MASK) | scale | sack;
        if ts > tsval {
            ts.wrapping_sub(1 << TS_OPTION_BITS)
        } else {
            ts
        }
    }

    /// Checks the ACK that may complete a cookie handshake from `remote` to `local`.
    ///
    /// # Errors
    ///
    /// [`CookieError::NotAnAck`] for a segment that is not a plain ACK, [`CookieError::Stale`]
    /// for a cookie older than one tick or signed by a forgotten secret,
    /// [`CookieError::Forged`] when the MAC does not verify.
    pub fn check(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        ack: &TcpRepr,
        now: Instant,
    ) -> Result<Cookie, CookieError> {
        if !ack.flags.contains(TcpFlags::ACK) || ack.flags.intersects(TcpFlags::SYN | TcpFlags::RST)
        {
            return Err(CookieError::NotAnAck);
        }
        let iss = SeqNum(ack.ack.wrapping_sub(1));
        let irs = SeqNum(ack.seq.wrapping_sub(1));
        let cookie = iss.0;
        let now_tick = tick_of(now);
        let made = (0..=1u64)
            .filter_map(|age| now_tick.checked_sub(age))
            .find(|t| *t as u32 & 0x1f == cookie >> 27)
            .ok_or(CookieError::Stale)?;
        let key = self.key_for(made, false).ok_or(CookieError::Stale)?;
        let mss_index = (cookie >> 24) & 0x7;
        if mac(&key, local, remote, irs, made, mss_index) & 0x00ff_ffff != cookie & 0x00ff_ffff {
            return Err(CookieError::Forged);
        }
        let mut c = Cookie {
            iss,
            irs,
            mss: MSS_TABLE.get(mss_index as usize).copied().unwrap_or(536),
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
        };
        if let Some((tsval, tsecr)) = ack.options.timestamps {
            let options = tsecr & TS_OPTION_MASK;
            let scale = options & 0xf;
            c.window_scale = (scale > 0).then(|| (scale - 1) as u8);
            c.sack_permitted = options & TS_SACK != 0;
            c.timestamps = Some(tsval);
        }
        Ok(c)
    }

    /// The secret for `tick`. With `rotate`, a tick past the current secret's epoch starts a
    /// fresh secret: only making cookies moves the secrets on, so a flood of forged ACKs
    /// cannot.
    fn key_for(&mut self, tick: u64, rotate: bool) -> Option<[u8; 16]> {
        let epoch = tick / TICKS_PER_SECRET;
        if rotate && self.current.is_none_or(|c| epoch > c.epoch) {
            // The old secret survives only while it signs the epoch just before.
            self.previous = self.current.take().filter(|c| c.epoch + 1 == epoch);
            let key = self.seeded.take().unwrap_or_else(super::isn::random_key);
            self.current = Some(Secret { epoch, key });
        }
        [self.current, self.previous]
            .into_iter()
            .flatten()
            .find(|s| s.epoch == epoch)
            .map(|s| s.key)
    }
}

/// The index of the largest [`MSS_TABLE`] entry not above `mss` (the smallest entry when
/// none is).
fn mss_index(mss: u16) -> u32 {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

/// The cookie clock's tick at `now`.
fn tick_of(now: Instant) -> u64 {
    now.as_millis() / 1000 / TICK_SECS
}

fn mac(
    key: &[u8; 16],
    local: SocketAddr,
    remote: SocketAddr,
    irs: SeqNum,
    tick: u64,
    mss_index: u32,
) -> u32 {
    let mut h = SipHasher24::new_with_key(key);
    super::isn::write_tuple(&mut h, local, remote);
    h.write_u32(irs.0);
    h.write_u64(tick);
    h.write_u32(mss_index);
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TcpFlags;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "10.0.0.2:80".parse().unwrap(),
            "10.0.0.1:40000".parse().unwrap(),
        )
    }

    fn syn(mss: u16, scale: Option<u8>, sack: bool, ts: bool) -> TcpRepr {
        let mut s = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 0xfffff000,
            flags: TcpFlags::SYN,
            ..TcpRepr::default()
        };
        s.options.mss = Some(mss);
        s.options.window_scale = scale;
        s.options.sack_permitted = sack;
        s.options.timestamps = ts.then_some((777, 0));
        s
    }

    fn ack_for(syn: &TcpRepr, iss: SeqNum, ts: Option<u32>) -> TcpRepr {
        let mut a = TcpRepr {
            src_port: syn.src_port,
            dst_port: syn.dst_port,
            seq: syn.seq.wrapping_add(1),
            ack: (iss + 1u32).0,
            flags: TcpFlags::ACK,
            ..TcpRepr::default()
        };
        a.options.timestamps = ts.map(|t| (778, t));
        a
    }

    #[test]
    fn round_trips_mss_scale_sack_and_timestamps() {
        let (local, remote) = addrs();
        let mut c = SynCookies::with_key([1; 16]);
        let now = Instant::from_secs(10_000);
        for (mss, want) in [
            (1460, 1460),
            (1400, 1380),
            (65495, 65000),
            (100, 536),
            (9000, 8948),
        ] {
            for scale in [None, Some(0), Some(7), Some(14)] {
                for sack in [false, true] {
                    let s = syn(mss, scale, sack, true);
                    let iss = c.make(local, remote, &SynCookies::clamp(&s), now);
                    let ts = SynCookies::timestamp(&s, 123_456_789);
                    assert!(ts <= 123_456_789 && 123_456_789 - ts < 64, "never ahead");
                    let got = c
                        .check(local, remote, &ack_for(&s, iss, Some(ts)), now)
                        .unwrap();
                    assert_eq!(got.iss, iss);
                    assert_eq!(got.irs, SeqNum(s.seq));
                    assert_eq!(got.mss, want);
                    assert_eq!(got.window_scale, scale);
                    assert_eq!(got.sack_permitted, sack);
                    assert_eq!(got.timestamps, Some(778));
                    let replay = got.syn(&ack_for(&s, iss, Some(ts)));
                    assert_eq!(replay.seq, s.seq);
                    assert_eq!(replay.options.window_scale, scale);
                }
            }
        }
    }

    #[test]
    fn a_cookie_drops_the_partial_checksum_offer() {
        for ts in [false, true] {
            let mut s = syn(1460, Some(7), true, ts);
            s.options.partial_checksums = true;
            assert!(!SynCookies::clamp(&s).options.partial_checksums);
        }
    }

    #[test]
    fn without_timestamps_no_scale_and_no_sack() {
        let (local, remote) = addrs();
        let mut c = SynCookies::new();
        let now = Instant::from_secs(50);
        let s = syn(1460, Some(7), true, false);
        let clamped = SynCookies::clamp(&s);
        assert_eq!(clamped.options.window_scale, None);
        assert!(!clamped.options.sack_permitted);
        let iss = c.make(local, remote, &clamped, now);
        let got = c
            .check(local, remote, &ack_for(&s, iss, None), now)
            .unwrap();
        assert_eq!(
            (got.window_scale, got.sack_permitted, got.timestamps),
            (None, false, None)
        );
    }

    #[test]
    fn rejects_forged_and_misdirected_acks() {
        let (local, remote) = addrs();
        let mut c = SynCookies::new();
        let now = Instant::from_secs(99);
        let s = syn(1460, None, false, false);
        let iss = c.make(local, remote, &s, now);
        let good = ack_for(&s, iss, None);
        assert!(c.check(local, remote, &good, now).is_ok());
        let mut wrong_isn = good;
        wrong_isn.seq = wrong_isn.seq.wrapping_add(1);
        assert_eq!(
            c.check(local, remote, &wrong_isn, now),
            Err(CookieError::Forged)
        );
        let other: SocketAddr = "10.0.0.3:40000".parse().unwrap();
        assert_eq!(c.check(local, other, &good, now), Err(CookieError::Forged));
        let mut mss_flipped = good;
        mss_flipped.ack ^= 1 << 24;
        assert!(c.check(local, remote, &mss_flipped, now).is_err());
        let mut syn_ack = good;
        syn_ack.flags = TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0);
        assert_eq!(
            c.check(local, remote, &syn_ack, now),
            Err(CookieError::NotAnAck)
        );
        let mut rst = good;
        rst.flags = TcpFlags(TcpFlags::RST.0 | TcpFlags::ACK.0);
        assert_eq!(
            c.check(local, remote, &rst, now),
            Err(CookieError::NotAnAck)
        );
        // Blind guesses: about one in 2^24 verifies; 100,000 guesses should all fail.
        let mut forged = 0;
        for guess in 0..100_000u32 {
            let mut a = ack_for(&s, SeqNum(guess.wrapping_mul(2_654_435_761)), None);
            a.ack = a.ack & 0x07ff_ffff | (iss.0 & 0xf800_0000);
            forged += usize::from(c.check(local, remote, &a, now).is_ok());
        }
        assert!(forged <= 1, "{forged} guesses verified");
    }

    #[test]
    fn goes_stale_after_a_tick_and_survives_rotation() {
        let (local, remote) = addrs();
        let mut c = SynCookies::new();
        let s = syn(1460, None, false, false);
        let tick = |t: u64, sec: u64| Instant::from_secs(64 * t + sec);
        // Tick 1001 is the second tick of epoch 500; tick 1002 starts epoch 501.
        let iss = c.make(local, remote, &s, tick(1001, 63));
        let ack = ack_for(&s, iss, None);
        let _ = c.make(local, remote, &s, tick(1002, 1)); // rotates the secret
        assert!(c.current.is_some_and(|k| k.epoch == 501));
        assert!(
            c.check(local, remote, &ack, tick(1002, 1)).is_ok(),
            "one tick old"
        );
        assert_eq!(
            c.check(local, remote, &ack, tick(1003, 0)),
            Err(CookieError::Stale)
        );
        // 32 ticks later the 5-bit tick matches again, but under another secret and tick.
        let _ = c.make(local, remote, &s, tick(1033, 0));
        assert!(c.check(local, remote, &ack, tick(1033, 0)).is_err());
        // A fresh instance that never made a cookie verifies none.
        assert_eq!(
            SynCookies::new().check(local, remote, &ack, tick(1001, 63)),
            Err(CookieError::Stale)
        );
    }

    #[test]
    fn secrets_differ_between_instances() {
        let (local, remote) = addrs();
        let s = syn(1460, None, false, false);
        let now = Instant::from_secs(1);
        let a = SynCookies::new().make(local, remote, &s, now);
        let b = SynCookies::new().make(local, remote, &s, now);
        assert_ne!(a, b);
    }
}
