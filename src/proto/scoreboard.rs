//! The sender's SACK scoreboard (RFC 6675 §3, RFC 2018): which bytes above SND.UNA the peer
//! reported holding, so that loss recovery resends only the holes and a retransmission after
//! a timeout skips what already arrived.

use super::SeqNum;

/// Most ranges tracked; the peer sends at most four blocks per ACK and holes beyond this
/// many are recovered by the cumulative ACK as usual.
const MAX_RANGES: usize = 64;

/// SACKed ranges `[left, right)` above SND.UNA: sorted, disjoint, never touching.
#[derive(Debug, Default, Clone)]
pub struct Scoreboard {
    ranges: Vec<(SeqNum, SeqNum)>,
}

impl Scoreboard {
    /// Forgets everything (after a retransmission timeout: the peer may have reneged,
    /// RFC 2018 §8).
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Records a SACK block, if it is plausible: inside `(una, max]` and not empty. Blocks at
    /// or below SND.UNA (D-SACK, stale) are ignored.
    pub fn add(&mut self, left: SeqNum, right: SeqNum, una: SeqNum, max: SeqNum) {
        if !(una < left && left < right && right <= max) {
            return;
        }
        let first = self.ranges.partition_point(|&(_, r)| r < left);
        let mut last = first;
        let (mut l, mut r) = (left, right);
        while last < self.ranges.len() && self.ranges[last].0 <= r {
            l = l.min(self.ranges[last].0);
            r = r.max(self.ranges[last].1);
            last += 1;
        }
        if first == last && self.ranges.len() >= MAX_RANGES {
            return;
        }
        self.ranges.splice(first..last, [(l, r)]);
    }

    /// SND.UNA moved to `una`: drop what it covers.
    pub fn advance(&mut self, una: SeqNum) {
        self.ranges.retain(|&(_, r)| r > una);
        if let Some(first) = self.ranges.first_mut() {
            if first.0 < una {
                first.0 = una;
            }
        }
    }

    /// The end of the SACKed range holding `seq`, if one does.
    pub fn covering(&self, seq: SeqNum) -> Option<SeqNum> {
        self.ranges
            .iter()
            .find(|&&(l, r)| l <= seq && seq < r)
            .map(|&(_, r)| r)
    }

    /// The start of the first SACKed range beginning after `seq`.
    pub fn next_start_after(&self, seq: SeqNum) -> Option<SeqNum> {
        self.ranges.iter().map(|&(l, _)| l).find(|&l| l > seq)
    }

    /// SACKed bytes at or above `seq`.
    pub fn sacked_above(&self, seq: SeqNum) -> u32 {
        self.ranges
            .iter()
            .filter(|&&(_, r)| r > seq)
            .map(|&(l, r)| (r - l.max(seq)) as u32)
            .sum()
    }

    /// The first hole `[start, end)` at or after `from` that lies below some SACKed byte.
    pub fn next_hole(&self, from: SeqNum) -> Option<(SeqNum, SeqNum)> {
        let start = self.covering(from).unwrap_or(from);
        let end = self.next_start_after(start)?;
        Some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNum {
        SeqNum(n)
    }

    #[test]
    fn merges_validates_and_finds_holes() {
        let mut b = Scoreboard::default();
        b.add(s(300), s(400), s(100), s(1000));
        b.add(s(500), s(600), s(100), s(1000));
        b.add(s(400), s(450), s(100), s(1000)); // touches: merges
        b.add(s(50), s(90), s(100), s(1000)); // below SND.UNA: ignored
        b.add(s(900), s(1100), s(100), s(1000)); // beyond SND.MAX: ignored
        assert_eq!(b.ranges, vec![(s(300), s(450)), (s(500), s(600))]);
        assert_eq!(b.next_hole(s(100)), Some((s(100), s(300))));
        assert_eq!(b.next_hole(s(300)), Some((s(450), s(500))));
        assert_eq!(b.next_hole(s(600)), None);
        assert_eq!(b.sacked_above(s(100)), 250);
        assert_eq!(b.sacked_above(s(420)), 130);
        assert_eq!(b.covering(s(310)), Some(s(450)));
        b.advance(s(320));
        assert_eq!(b.ranges, vec![(s(320), s(450)), (s(500), s(600))]);
        b.advance(s(600));
        assert!(b.is_empty());
    }

    #[test]
    fn works_across_the_wrap() {
        let mut b = Scoreboard::default();
        let una = s(u32::MAX - 100);
        b.add(s(u32::MAX - 10), s(50), una, s(500));
        assert_eq!(b.next_hole(una), Some((una, s(u32::MAX - 10))));
        assert_eq!(b.sacked_above(una), 61);
    }
}
