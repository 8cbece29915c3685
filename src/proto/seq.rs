//! Sequence numbers: 32-bit values compared modulo 2^32 (RFC 9293 §3.4).
//!
//! `a < b` means "b is ahead of a by less than 2^31", so comparisons keep working when the
//! sequence space wraps from 2^32 - 1 back to 0.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A TCP sequence (or acknowledgment) number with wrap-around arithmetic.
///
/// ```
/// use rawtcp::proto::SeqNum;
/// let a = SeqNum(u32::MAX - 1);
/// let b = a + 10u32; // wraps past zero
/// assert_eq!(b, SeqNum(8));
/// assert!(a < b);
/// assert_eq!(b - a, 10);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// The larger of two sequence numbers in modular order.
    pub fn max(self, other: SeqNum) -> SeqNum {
        if self > other {
            self
        } else {
            other
        }
    }

    /// The smaller of two sequence numbers in modular order.
    pub fn min(self, other: SeqNum) -> SeqNum {
        if self < other {
            self
        } else {
            other
        }
    }

    /// Whether `self` lies in `[start, start + len)`.
    pub fn in_window(self, start: SeqNum, len: u32) -> bool {
        self.0.wrapping_sub(start.0) < len
    }

    /// Whether `start <= self <= end` in modular order.
    pub fn between(self, start: SeqNum, end: SeqNum) -> bool {
        self.0.wrapping_sub(start.0) <= end.0.wrapping_sub(start.0)
    }
}

impl Add<u32> for SeqNum {
    type Output = SeqNum;
    fn add(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs))
    }
}

impl Add<usize> for SeqNum {
    type Output = SeqNum;
    fn add(self, rhs: usize) -> SeqNum {
        // Offsets handled by the engine are bounded by buffer sizes (< 2^31).
        SeqNum(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<u32> for SeqNum {
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl AddAssign<usize> for SeqNum {
    fn add_assign(&mut self, rhs: usize) {
        self.0 = self.0.wrapping_add(rhs as u32);
    }
}

impl Sub<u32> for SeqNum {
    type Output = SeqNum;
    fn sub(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs))
    }
}

/// The signed distance `self - rhs`, in `(-2^31, 2^31]`.
impl Sub<SeqNum> for SeqNum {
    type Output = i32;
    fn sub(self, rhs: SeqNum) -> i32 {
        self.0.wrapping_sub(rhs.0) as i32
    }
}

impl PartialOrd for SeqNum {
    fn partial_cmp(&self, other: &SeqNum) -> Option<Ordering> {
        Some((*self - *other).cmp(&0))
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordering_across_the_wrap() {
        let top = SeqNum(u32::MAX);
        let zero = SeqNum(0);
        assert!(top < zero);
        assert!(zero > top);
        assert_eq!(zero - top, 1);
        assert_eq!(top - zero, -1);
        assert_eq!(top + 1u32, zero);
        assert_eq!(zero - 1u32, top);
        assert_eq!(top.max(zero), zero);
        assert_eq!(top.min(zero), top);
        assert!(SeqNum(5).in_window(SeqNum(u32::MAX - 2), 10));
        assert!(!SeqNum(7).in_window(SeqNum(u32::MAX - 2), 10));
        assert!(SeqNum(2).between(SeqNum(u32::MAX), SeqNum(2)));
        assert!(!SeqNum(3).between(SeqNum(u32::MAX), SeqNum(2)));
    }

    #[test]
    fn half_space_boundary() {
        let a = SeqNum(0);
        assert!(a < a + (1u32 << 31) - 1u32);
        // Exactly 2^31 apart: the distance is i32::MIN, so b is "behind" a.
        let b = a + (1u32 << 31);
        assert!(b < a);
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(base: u32, off in 0u32..(1 << 31)) {
            let a = SeqNum(base);
            let b = a + off;
            prop_assert_eq!(b - a, off as i32);
            prop_assert!(a <= b);
            prop_assert!(b.between(a, b));
            prop_assert_eq!(a.max(b), b);
            if off > 0 {
                prop_assert!(a < b);
                prop_assert!(a.in_window(a, off));
                prop_assert!(!b.in_window(a, off));
            }
        }
    }
}
