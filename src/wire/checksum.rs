//! The internet checksum (RFC 1071) and the TCP pseudo-headers it covers.
//!
//! This module owns the arithmetic only: the one's complement sum of big-endian 16-bit words
//! ([`sum`]), folding the carries back in ([`fold`]), the final complement ([`finish`]) and the
//! IPv4 and IPv6 pseudo-headers that the TCP checksum covers ([`pseudo_header`]).
//!
//! Sums are carried between calls as a `u32` accumulator that has not been folded, so a header
//! and a payload held in different buffers can be summed one after the other, as long as every
//! buffer but the last has an even length (RFC 1071 §2(B): the sum is associative and
//! commutative over whole 16-bit words).
//!
//! Verifying a received checksum: sum everything it covers, checksum field included, and the
//! result folds to `0xffff` (so [`finish`] returns `0`) exactly when the checksum is right.

use std::net::{IpAddr, Ipv6Addr};

/// Adds `data` to the running one's complement sum `initial` (RFC 1071 §4.1).
///
/// `data` is read as big-endian 16-bit words; an odd trailing byte is padded with a zero byte
/// on the right. The result is a partially folded 32-bit accumulator, congruent to the true sum
/// modulo `0xffff`; feed it to [`fold`] or [`finish`], or back into `sum` as `initial` for more
/// data. Any `initial` and any buffer an IP stack meets (anything below 16 GiB) are accepted
/// without overflow.
///
/// The bulk is summed as native-endian 64-bit words into four 128-bit accumulators, 32 bytes
/// per block (RFC 1071 §2(C), "deferred carries": a 64-bit word is four 16-bit words, and
/// the carries collect in each accumulator's upper half, to be folded once at the end), then
/// swapped into network byte order once (§2(B), "byte order independence"). A 128-bit add is
/// an add and an add-with-carry; four independent chains keep them overlapped. This runs
/// about a fifth faster than summing 32-bit words into a 64-bit accumulator, which
/// vectorises (measured on packets of 1,460 bytes), and twice as fast as big-endian words.
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    // 16 GiB of data is 2^29 words per accumulator, each below 2^64: far from overflow.
    let mut lanes = [0u128; 4];
    let mut blocks = data.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            // Always eight bytes: the conversion cannot fail and compiles away.
            *lane += u128::from(u64::from_ne_bytes(w.try_into().unwrap_or_default()));
        }
    }
    let mut wide: u128 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        wide += u128::from(u64::from_ne_bytes(w.try_into().unwrap_or_default()));
    }
    let mut tail = words.remainder().chunks_exact(4);
    for w in &mut tail {
        wide += u128::from(u32::from_ne_bytes(w.try_into().unwrap_or_default()));
    }
    // 128 bits to 64 with end-around carry. The upper half is below 2^32, so the add carries
    // at most once and adding that carry back cannot carry again.
    let (low, carry) = (wide as u64).overflowing_add((wide >> 64) as u64);
    let acc = low.wrapping_add(u64::from(carry));
    // Fold to 16 bits of native-order sum; its bytes in memory order are the network-order
    // sum's (RFC 1071 §2(B)).
    let mut native = (acc >> 32) + (acc & 0xffff_ffff);
    native = (native >> 32) + (native & 0xffff_ffff);
    native = (native >> 16) + (native & 0xffff);
    native = (native >> 16) + (native & 0xffff);
    native = (native >> 16) + (native & 0xffff);
    let native = u16::try_from(native).unwrap_or(u16::MAX);
    let mut total = u64::from(initial) + u64::from(u16::from_be_bytes(native.to_ne_bytes()));
    // The last 0 to 3 bytes start at an even offset: big-endian words, an odd byte padded.
    let mut rest = tail.remainder();
    if let Some((word, tail)) = rest.split_first_chunk::<2>() {
        total += u64::from(u16::from_be_bytes(*word));
        rest = tail;
    }
    if let Some(&last) = rest.first() {
        total += u64::from(last) << 8;
    }
    // Fold 64 bits into 32 with end-around carry. Two rounds suffice: after the first the value
    // is below 2^33, after the second below 2^32.
    let total = (total >> 32) + (total & 0xffff_ffff);
    let total = (total >> 32) + (total & 0xffff_ffff);
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Folds the carries of a 32-bit accumulator into 16 bits (RFC 1071 §4.1), without
/// complementing.
///
/// A non-zero accumulator never folds to `0`: a correct checksum verifies as `0xffff`.
pub fn fold(sum: u32) -> u16 {
    let s = (sum >> 16) + (sum & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    // After two rounds `s` is at most 0xffff.
    u16::try_from(s).unwrap_or(u16::MAX)
}

/// [`sum`] over bytes that lie in several pieces, as if they were one: a piece that starts
/// at an odd offset of the whole is summed on its own and its folded sum byte-swapped
/// (RFC 1071 §2(B), "byte order independence").
pub fn sum_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>, initial: u32) -> u32 {
    let mut total = fold(initial);
    let mut at = 0;
    for part in parts {
        total = add_at(total, fold(sum(part, 0)), at);
        at += part.len();
    }
    u32::from(total)
}

/// Adds to the folded sum `total` the folded sum `piece` of bytes that lie `offset` bytes
/// into the whole: one's complement addition (RFC 1071 §2(A)), with `piece` byte-swapped
/// when it starts at an odd offset (§2(B)).
pub fn add_at(total: u16, piece: u16, offset: usize) -> u16 {
    let piece = if offset % 2 == 1 {
        piece.swap_bytes()
    } else {
        piece
    };
    let t = u32::from(total) + u32::from(piece);
    // At most 0x1fffe: one fold leaves it below 0x10000.
    ((t & 0xffff) + (t >> 16)) as u16
}

/// The checksum to write into a header: the one's complement of the folded sum
/// (RFC 1071 §1, RFC 9293 §3.1 "Checksum").
///
/// When the sum covers a received checksum field as well, `finish` returns `0` exactly when
/// the checksum verifies.
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The sum of the pseudo-header that the TCP checksum covers.
///
/// - Both addresses IPv4: source, destination, a zero byte, `protocol` and the 16-bit TCP length
///   (RFC 9293 §3.1, Figure 2).
/// - Both addresses IPv6: source, destination, the 32-bit upper-layer packet length, three zero
///   bytes and `protocol` as the next header (RFC 8200 §8.1).
///
/// `length` is the length of the TCP segment, header and data. For IPv4 it must fit in 16 bits;
/// a larger value is summed as two 16-bit words, which no valid IPv4 packet can carry.
///
/// Mixed families have no pseudo-header of their own. Rather than panic, the IPv4 address is
/// taken as its IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2) and the IPv6 pseudo-header is
/// summed. Because the mapping prefix adds `0xffff`, one's complement zero, the folded result is
/// the same as the IPv4 pseudo-header of the mapped address, up to the `0`/`0xffff` ambiguity.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, length: u32) -> u32 {
    // The IPv4 and IPv6 layouts add up to the same words beyond the addresses: the length as
    // one or two 16-bit words and the protocol in the low byte of a word.
    let tail = (length >> 16) + (length & 0xffff) + u32::from(protocol);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum(&d.octets(), sum(&s.octets(), tail)),
        (s, d) => sum(&to_v6(d).octets(), sum(&to_v6(s).octets(), tail)),
    }
}

/// An address as IPv6, mapping IPv4 into `::ffff:0:0/96`.
fn to_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {

    proptest::proptest! {
        /// The sum of a buffer cut anywhere, pieces summed apart, is the sum of the whole.
        #[test]
        fn parts_sum_as_the_whole(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(0usize..3000, 0..5),
            initial in 0u32..0x0100_0000,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                parts.push(&data[at..c]);
                at = c;
            }
            proptest::prop_assert_eq!(
                fold(sum_parts(parts, initial)),
                fold(sum(&data, initial))
            );
        }
    }
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// RFC 1071's definition, word by word, with a 64-bit accumulator folded at the end.
    fn reference_fold(data: &[u8], initial: u32) -> u16 {
        let mut acc = u64::from(initial);
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]);
            let lo = u64::from(*pair.get(1).unwrap_or(&0));
            acc += (hi << 8) | lo;
        }
        while acc > 0xffff {
            acc = (acc >> 16) + (acc & 0xffff);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 2ddf0, which folds to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let s = sum(&data, 0);
        assert_eq!(fold(s), 0xddf2);
        assert_eq!(finish(s), !0xddf2);
        // Byte order independence (RFC 1071 §2(B)): swapping the bytes swaps the result.
        let swapped = [0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6];
        assert_eq!(fold(sum(&swapped, 0)), 0xf2dd);
    }

    #[test]
    fn odd_length_pads_on_the_right() {
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn empty_and_zero() {
        assert_eq!(sum(&[], 0), 0);
        assert_eq!(fold(0), 0);
        assert_eq!(finish(0), 0xffff);
        assert_eq!(fold(sum(&[], 0x1_2345)), 0x2346);
    }

    #[test]
    fn no_overflow_on_large_inputs() {
        // Well past 64 KiB of all-ones words, starting from the largest accumulator.
        let data = vec![0xffu8; 200_003];
        assert_eq!(fold(sum(&data, u32::MAX)), reference_fold(&data, u32::MAX));
        assert_eq!(fold(u32::MAX), 0xffff);
    }

    #[test]
    fn ipv4_pseudo_header() {
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        // 0a00 + 0001 + 0a00 + 0002 + 0006 + 0028 = 0x1431
        assert_eq!(fold(pseudo_header(src, dst, 6, 40)), 0x1431);
    }

    #[test]
    fn ipv6_pseudo_header() {
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let dst: IpAddr = "2001:db8::2".parse().unwrap();
        // 2 * (2001 + 0db8) + 1 + 2 + length words (0001, 0000) + 6
        let expected = 2 * (0x2001 + 0x0db8) + 1 + 2 + 1 + 6;
        assert_eq!(
            u32::from(fold(pseudo_header(src, dst, 6, 0x1_0000))),
            expected
        );
    }

    #[test]
    fn mixed_families_map_v4_into_v6() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        let v6: IpAddr = "2001:db8::9".parse().unwrap();
        let mixed = pseudo_header(IpAddr::V4(v4), v6, 6, 100);
        let mapped = pseudo_header(IpAddr::V6(v4.to_ipv6_mapped()), v6, 6, 100);
        assert_eq!(fold(mixed), fold(mapped));
        let mixed = pseudo_header(v6, IpAddr::V4(v4), 6, 100);
        let mapped = pseudo_header(v6, IpAddr::V6(v4.to_ipv6_mapped()), 6, 100);
        assert_eq!(fold(mixed), fold(mapped));
    }

    #[test]
    fn a_whole_jumbo_packet_matches_the_reference() {
        let data: Vec<u8> = (0..65_535u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for len in [65_535, 65_472, 9_000, 1_471] {
            for initial in [0, 1, 0xffff, u32::MAX] {
                assert_eq!(
                    fold(sum(&data[..len], initial)),
                    reference_fold(&data[..len], initial)
                );
            }
        }
        // All ones: the largest values the accumulators meet.
        let ones = vec![0xffu8; 65_535];
        assert_eq!(fold(sum(&ones, u32::MAX)), reference_fold(&ones, u32::MAX));
    }

    proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(any::<u8>(), 0..600), initial: u32) {
            prop_assert_eq!(fold(sum(&data, initial)), reference_fold(&data, initial));
        }

        #[test]
        fn sums_chain_over_even_splits(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            split in 0usize..150,
        ) {
            let split = (split * 2).min(data.len() & !1);
            let (a, b) = data.split_at(split);
            prop_assert_eq!(fold(sum(b, sum(a, 0))), fold(sum(&data, 0)));
        }

        #[test]
        fn inserted_checksum_verifies(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut data = data;
            if data.len() % 2 == 1 {
                data.push(0);
            }
            data.extend_from_slice(&[0, 0]);
            let n = data.len();
            let c = finish(sum(&data, 0));
            data[n - 2..].copy_from_slice(&c.to_be_bytes());
            prop_assert_eq!(finish(sum(&data, 0)), 0);
        }
    }
}
