//! The sender's record of every segment in flight: its sequence range, when it was last
//! sent, whether the peer SACKed it, whether it is deemed lost and whether a retransmission
//! of it is out — the per-segment bookkeeping that RACK (RFC 8985), the RFC 6675 scoreboard
//! and pipe, PRR (RFC 6937) and delivery-rate sampling all read.
//!
//! The bytes themselves stay in the send buffer; a record only names a range of it. Records
//! are kept in sequence order (a `VecDeque`, reused, so no allocation per segment once warm),
//! and every transmission is also logged in time order, so that RACK walks segments by send
//! time without sorting (RFC 8985 §6.2 step 5).

use super::super::{Instant, SeqNum};
use std::collections::VecDeque;
use std::time::Duration;

/// Stale log entries a RACK pass may walk behind a live one before the log is compacted.
const STALE_COMPACT: usize = 32;

/// Whether some record of `segs` in `[start, end)` was last sent at `at` and RACK may still
/// judge it.
fn live_in(segs: &VecDeque<Sent>, start: SeqNum, end: SeqNum, at: Instant) -> bool {
    let i = segs.partition_point(|s| s.end <= start);
    segs.range(i..)
        .take_while(|s| s.start < end)
        .any(|s| s.sent_at == at && s.rack_candidate())
}

/// The delivery-rate snapshot taken when a segment is sent
/// (draft-cheng-iccrg-delivery-rate-estimation §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxState {
    /// `C.delivered` at send time.
    pub delivered: u64,
    /// `C.delivered_time` at send time.
    pub delivered_at: Instant,
    /// `C.first_sent_time` at send time.
    pub first_sent_at: Instant,
    /// `C.lost` at send time.
    pub lost: u64,
    /// Bytes in flight right after sending, this segment included.
    pub in_flight: u32,
    /// Whether the sender was application-limited.
    pub app_limited: bool,
}

/// The peer reported holding the segment (RFC 2018).
const SACKED: u8 = 1;
/// The segment is deemed lost and not yet delivered (RFC 6675 IsLost, RFC 8985).
const LOST: u8 = 2;
/// A retransmission of the segment is in flight (Linux's `TCPCB_SACKED_RETRANS`).
const RETRANS: u8 = 4;
/// The segment was retransmitted at least once: no RTT sample (Karn, RFC 6298 §3).
const EVER_RETRANS: u8 = 8;

/// One segment in flight: `[start, end)` of sequence space (a FIN counts as one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// First sequence number.
    pub start: SeqNum,
    /// Sequence number just past the segment.
    pub end: SeqNum,
    /// When it was last (re)transmitted.
    pub sent_at: Instant,
    /// The TSval of that transmission (RFC 7323), to tell which copy an ACK answers.
    pub tsval: u32,
    /// The delivery-rate snapshot of that transmission.
    pub tx: TxState,
    flags: u8,
}

impl Sent {
    /// Sequence-space length.
    pub fn len(&self) -> u32 {
        (self.end - self.start) as u32
    }

    /// Whether the range is empty (never, for a record in the queue).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the peer SACKed it.
    pub fn is_sacked(&self) -> bool {
        self.flags & SACKED != 0
    }

    /// Whether it is deemed lost.
    pub fn is_lost(&self) -> bool {
        self.flags & LOST != 0
    }

    /// Whether a retransmission of it is in flight.
    pub fn is_retrans_out(&self) -> bool {
        self.flags & RETRANS != 0
    }

    /// Whether it was ever retransmitted.
    pub fn ever_retransmitted(&self) -> bool {
        self.flags & EVER_RETRANS != 0
    }

    /// Lost and waiting to be sent again.
    fn needs_retransmit(&self) -> bool {
        self.flags & (SACKED | LOST | RETRANS) == LOST
    }

    /// Still unaccounted for at the peer and not given up: RACK may judge it.
    fn rack_candidate(&self) -> bool {
        self.flags & SACKED == 0 && !self.needs_retransmit()
    }
}

/// A segment newly delivered (cumulatively acknowledged or SACKed), as the ACK processing
/// reports it to RACK, RTT and rate sampling.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    /// The record as it was when delivered.
    pub seg: Sent,
    /// Bytes of it newly delivered.
    pub bytes: u32,
}

/// Every segment sent and not yet cumulatively acknowledged, with the RFC 6675 counters.
#[derive(Debug, Default)]
pub struct SentQueue {
    segs: VecDeque<Sent>,
    /// Transmissions in time order: range and send time. An entry is stale once its range
    /// was acknowledged, SACKed, declared lost or sent again.
    log: VecDeque<(SeqNum, SeqNum, Instant)>,
    /// Sequence-space bytes recorded.
    total: u32,
    /// Of those, SACKed.
    sacked: u32,
    /// Not SACKed and deemed lost (a retransmission may be out).
    lost: u32,
    /// Not SACKed, with a retransmission in flight.
    retrans: u32,
    /// Deemed lost and not yet sent again.
    pending: u32,
    /// No record below this needs a retransmission (a hint for [`next_lost`](Self::next_lost)).
    hint: Option<SeqNum>,
}

impl SentQueue {
    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The records, in sequence order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Sent> {
        self.segs.iter()
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// Bytes SACKed above the cumulative acknowledgment.
    pub fn sacked_bytes(&self) -> u32 {
        self.sacked
    }

    /// Bytes deemed lost (including those whose retransmission is out).
    pub fn lost_bytes(&self) -> u32 {
        self.lost
    }

    /// Bytes deemed lost and not yet retransmitted.
    pub fn pending_bytes(&self) -> u32 {
        self.pending
    }

    /// RFC 6675 `pipe`: bytes believed to be in the network — sent, neither SACKed nor
    /// deemed lost, plus retransmissions in flight.
    pub fn pipe(&self) -> u32 {
        (self.total - self.sacked - self.lost).saturating_add(self.retrans)
    }

    /// The highest record (the last one sent for the first time).
    pub fn last(&self) -> Option<&Sent> {
        self.segs.back()
    }

    /// The record holding `seq`.
    pub fn get(&self, seq: SeqNum) -> Option<&Sent> {
        self.index_of(seq).map(|i| &self.segs[i])
    }

    fn index_of(&self, seq: SeqNum) -> Option<usize> {
        let i = self.segs.partition_point(|s| s.end <= seq);
        (i < self.segs.len() && self.segs[i].start <= seq).then_some(i)
    }

    /// Records a first transmission of `[start, end)`, which must continue the last record.
    ///
    /// The delivery-rate snapshot is taken by `tx` once room for the record is made: built
    /// straight into the record rather than held across the queue's growth (where it was
    /// spilled to the stack and read back wider than written, a stall on every segment).
    pub fn push(
        &mut self,
        start: SeqNum,
        end: SeqNum,
        now: Instant,
        tsval: u32,
        tx: impl FnOnce() -> TxState,
    ) {
        debug_assert!(self.segs.back().is_none_or(|l| l.end == start));
        debug_assert!(start < end);
        if self.segs.len() == self.segs.capacity() {
            self.segs.reserve(1);
        }
        let tx = tx();
        self.segs.push_back(Sent {
            start,
            end,
            sent_at: now,
            tsval,
            tx,
            flags: 0,
        });
        self.total += (end - start) as u32;
        self.log.push_back((start, end, now));
    }

    /// The cumulative acknowledgment reached `una`: drops what it covers, reporting each
    /// segment newly delivered (not SACKed before) to `on_delivered`.
    pub fn ack(&mut self, una: SeqNum, mut on_delivered: impl FnMut(Delivered)) {
        while let Some(front) = self.segs.front().copied() {
            if front.start >= una {
                break;
            }
            if front.end <= una {
                self.segs.pop_front();
                self.forget(&front, front.len());
                if !front.is_sacked() {
                    on_delivered(Delivered {
                        seg: front,
                        bytes: front.len(),
                    });
                }
            } else {
                // Part of a segment: the peer took fewer bytes than we sent (a probe, or a
                // window that shrank). The rest stays, with the same history.
                let cut = (una - front.start) as u32;
                self.forget(&front, cut);
                self.segs[0].start = una;
                if !front.is_sacked() {
                    on_delivered(Delivered {
                        seg: front,
                        bytes: cut,
                    });
                }
                break;
            }
        }
        if self.hint.is_some_and(|h| h < una) {
            self.hint = Some(una);
        }
        self.trim_log(una);
    }

    /// Takes `len` bytes of `seg`'s flags out of the counters (it was acknowledged).
    fn forget(&mut self, seg: &Sent, len: u32) {
        self.total -= len;
        if seg.is_sacked() {
            self.sacked -= len;
        } else {
            if seg.is_lost() {
                self.lost -= len;
            }
            if seg.is_retrans_out() {
                self.retrans -= len;
            }
            if seg.needs_retransmit() {
                self.pending -= len;
            }
        }
    }

    /// Marks what `[left, right)` covers as SACKed and reports each newly SACKed segment.
    /// Returns the bytes newly SACKed.
    ///
    /// A record is split only at whole segments of `mss` bytes from its start (as Linux's
    /// `tcp_match_skb_to_sack`): a block edge inside a segment leaves that segment unSACKed,
    /// so a peer naming arbitrary edges cannot shred records into single bytes (each of which
    /// would be retransmitted on its own, at linear cost per split).
    pub fn sack(
        &mut self,
        left: SeqNum,
        right: SeqNum,
        mss: u32,
        mut on_delivered: impl FnMut(Delivered),
    ) -> u32 {
        let Some(first) = self.segs.front() else {
            return 0;
        };
        let (left, right) = (
            left.max(first.start),
            right.min(self.segs[self.segs.len() - 1].end),
        );
        if left >= right {
            return 0;
        }
        let mss = mss.max(1);
        let mut i = self.segs.partition_point(|s| s.end <= left);
        let mut newly = 0;
        while i < self.segs.len() && self.segs[i].start < right {
            if self.segs[i].is_sacked() {
                i += 1;
                continue;
            }
            // The part of the record the block covers, rounded inwards to whole segments.
            let (s, e) = (self.segs[i].start, self.segs[i].end);
            let lo = if left > s {
                s + ((left - s) as u32).div_ceil(mss).saturating_mul(mss)
            } else {
                s
            };
            let hi = if right < e {
                s + ((right - s) as u32) / mss * mss
            } else {
                e
            };
            if !(s <= lo && lo < hi && hi <= e) {
                i += 1;
                continue;
            }
            if lo > s {
                self.split(i, lo);
                i += 1;
            }
            if self.segs[i].end > hi {
                self.split(i, hi);
            }
            let seg = self.segs[i];
            let len = seg.len();
            self.forget(&seg, len);
            self.total += len;
            self.sacked += len;
            self.segs[i].flags = (seg.flags | SACKED) & !(LOST | RETRANS);
            newly += len;
            on_delivered(Delivered { seg, bytes: len });
            i += 1;
        }
        newly
    }

    /// Splits record `i` at `at` (strictly inside it); both halves keep the history.
    fn split(&mut self, i: usize, at: SeqNum) {
        let mut tail = self.segs[i];
        debug_assert!(tail.start < at && at < tail.end);
        tail.start = at;
        self.segs[i].end = at;
        self.segs.insert(i + 1, tail);
    }

    /// Declares the record holding `seq` lost (RFC 8985 §6.2, RFC 6675 §5 step 4, RFC 5681
    /// §3.2 step 2). A lost retransmission is lost again. Returns the bytes newly marked.
    pub fn mark_lost(&mut self, seq: SeqNum) -> u32 {
        match self.index_of(seq) {
            Some(i) => self.mark_lost_at(i),
            None => 0,
        }
    }

    fn mark_lost_at(&mut self, i: usize) -> u32 {
        let seg = &mut self.segs[i];
        let len = seg.len();
        if seg.flags & SACKED != 0 || seg.needs_retransmit() {
            return 0;
        }
        if seg.flags & RETRANS != 0 {
            self.retrans -= len;
        }
        if seg.flags & LOST == 0 {
            self.lost += len;
        }
        seg.flags = (seg.flags | LOST) & !RETRANS;
        self.pending += len;
        let start = seg.start;
        if self.hint.is_none_or(|h| start < h) {
            self.hint = Some(start);
        }
        len
    }

    /// After a retransmission timeout: everything not SACKed is lost (RFC 6675 §5.1,
    /// RFC 5681 §3.1 go-back). Returns the bytes newly marked.
    pub fn mark_all_lost(&mut self) -> u32 {
        (0..self.segs.len()).map(|i| self.mark_lost_at(i)).sum()
    }

    /// A loss response proved spurious: nothing not yet resent is lost after all
    /// (RFC 4015 §3 response, Linux's `tcp_undo_cwnd_reduction`).
    pub fn unmark_lost(&mut self) {
        for seg in &mut self.segs {
            if seg.flags & (LOST | SACKED) == LOST {
                let len = seg.len();
                self.lost -= len;
                if seg.flags & RETRANS == 0 {
                    self.pending -= len;
                }
                seg.flags &= !LOST;
            }
        }
        self.hint = None;
    }

    /// The peer discarded data it had SACKed (RFC 2018 §8 reneging): forget every SACK.
    pub fn clear_sacked(&mut self) {
        for seg in &mut self.segs {
            if seg.flags & SACKED != 0 {
                seg.flags &= !SACKED;
            }
        }
        self.sacked = 0;
    }

    /// The lowest record deemed lost and not yet sent again: its start and length
    /// (RFC 6675 §4 NextSeg rule 1).
    pub fn next_lost(&mut self) -> Option<(SeqNum, u32)> {
        if self.pending == 0 {
            self.hint = None;
            return None;
        }
        let from = self.hint.unwrap_or(self.segs.front()?.start);
        let mut i = self.segs.partition_point(|s| s.end <= from);
        while i < self.segs.len() {
            let s = &self.segs[i];
            if s.needs_retransmit() {
                self.hint = Some(s.start);
                return Some((s.start, s.len()));
            }
            i += 1;
        }
        debug_assert!(false, "pending bytes but no lost record");
        self.hint = None;
        None
    }

    /// Records a retransmission of the first `len` bytes of the record starting at `start`,
    /// splitting the record when only part of it goes. Returns whether it was deemed lost.
    pub fn retransmitted(
        &mut self,
        start: SeqNum,
        len: u32,
        now: Instant,
        tsval: u32,
        tx: TxState,
    ) -> bool {
        let Some(i) = self.index_of(start) else {
            return false;
        };
        if self.segs[i].start < start {
            self.split(i, start);
            return self.retransmitted(start, len, now, tsval, tx);
        }
        if self.segs[i].is_sacked() {
            return false;
        }
        if len > 0 && len < self.segs[i].len() {
            self.split(i, start + len);
        }
        let seg = &mut self.segs[i];
        let len = seg.len();
        let was_lost = seg.flags & LOST != 0;
        if seg.needs_retransmit() {
            self.pending -= len;
        }
        if seg.flags & (RETRANS | SACKED) == 0 {
            self.retrans += len;
        }
        seg.flags |= RETRANS | EVER_RETRANS;
        seg.sent_at = now;
        seg.tsval = tsval;
        seg.tx = tx;
        let end = seg.end;
        self.log.push_back((start, end, now));
        was_lost
    }

    /// Drops log entries that no longer stand for a segment in flight.
    fn trim_log(&mut self, una: SeqNum) {
        if self.sacked == 0 && self.lost == 0 && self.retrans == 0 {
            // Nothing SACKed, lost or resent: every entry above SND.UNA is its segment's one
            // transmission, so only the acknowledged ones can go (the common case, without
            // a search per entry).
            while self.log.front().is_some_and(|&(_, end, _)| end <= una) {
                self.log.pop_front();
            }
            return;
        }
        while let Some(&(start, end, at)) = self.log.front() {
            if end <= una || !self.log_entry_live(start, end, at) {
                self.log.pop_front();
            } else {
                break;
            }
        }
    }

    /// Whether some record in `[start, end)` was last sent at `at` and RACK may still judge it.
    fn log_entry_live(&self, start: SeqNum, end: SeqNum, at: Instant) -> bool {
        live_in(&self.segs, start, end, at)
    }

    /// RFC 8985 §6.2 step 5, `RACK_detect_loss`: every segment sent before the most recently
    /// delivered one (`rack_xmit`, `rack_end`) and not delivered within `wait` of its
    /// transmission is lost. Walks transmissions in time order and stops at the first sent
    /// after that segment. Returns the bytes newly deemed lost and, if some segment may
    /// still be lost once its wait runs out, how long until then (the RACK reordering timer).
    pub fn rack_detect_loss(
        &mut self,
        now: Instant,
        rack_xmit: Instant,
        rack_end: SeqNum,
        wait: Duration,
    ) -> (u32, Option<Duration>) {
        let mut newly = 0;
        let mut timeout: Option<Duration> = None;
        let mut e = 0;
        // Entries behind a live one that stand for nothing any more (SACKed, resent or just
        // deemed lost): walked again by every ACK until the live one goes.
        let mut stale_behind = 0usize;
        while e < self.log.len() {
            let (start, end, at) = self.log[e];
            // RFC 8985 RACK_sent_after: later, or at the same time but higher in sequence.
            if at > rack_xmit || (at == rack_xmit && end > rack_end) {
                break;
            }
            let mut live = false;
            let mut i = self.segs.partition_point(|s| s.end <= start);
            while i < self.segs.len() && self.segs[i].start < end {
                let s = self.segs[i];
                if s.sent_at == at && s.rack_candidate() {
                    let deadline = at + wait;
                    if deadline <= now {
                        newly += self.mark_lost_at(i);
                    } else {
                        live = true;
                        let remaining = deadline - now;
                        timeout = Some(timeout.map_or(remaining, |t| t.max(remaining)));
                    }
                }
                i += 1;
            }
            if !live && e == 0 {
                self.log.pop_front();
            } else {
                stale_behind += usize::from(!live);
                e += 1;
            }
        }
        if stale_behind > STALE_COMPACT && stale_behind * 2 > e {
            // Mostly stale: drop them once, so that later ACKs walk only live entries
            // (Linux unlinks SACKed segments from its time-sorted list for the same reason).
            let segs = &self.segs;
            self.log
                .retain(|&(start, end, at)| live_in(segs, start, end, at));
        }
        (newly, timeout)
    }

    /// Gives back the storage of an empty queue (an idle connection keeps none).
    pub fn release(&mut self) {
        if self.segs.is_empty() {
            self.segs = VecDeque::new();
            self.log = VecDeque::new();
        }
    }

    /// Forgets everything (the connection closed).
    pub fn clear(&mut self) {
        self.segs.clear();
        self.log.clear();
        (
            self.total,
            self.sacked,
            self.lost,
            self.retrans,
            self.pending,
        ) = (0, 0, 0, 0, 0);
        self.hint = None;
    }

    /// Checks the counters against the records (tests and debug builds).
    #[cfg(any(test, debug_assertions))]
    pub fn check_invariants(&self) {
        let (mut total, mut sacked, mut lost, mut retrans, mut pending) = (0, 0, 0, 0, 0);
        let mut prev: Option<SeqNum> = None;
        for s in &self.segs {
            assert!(s.start < s.end, "empty record {s:?}");
            if let Some(p) = prev {
                assert_eq!(p, s.start, "records not contiguous");
            }
            prev = Some(s.end);
            let len = s.len();
            total += len;
            if s.is_sacked() {
                sacked += len;
                assert!(
                    !s.is_lost() && !s.is_retrans_out(),
                    "SACKed and lost: {s:?}"
                );
            } else {
                if s.is_lost() {
                    lost += len;
                }
                if s.is_retrans_out() {
                    retrans += len;
                }
                if s.needs_retransmit() {
                    pending += len;
                }
            }
        }
        assert_eq!(
            (total, sacked, lost, retrans, pending),
            (
                self.total,
                self.sacked,
                self.lost,
                self.retrans,
                self.pending
            )
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNum {
        SeqNum(n)
    }

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Ten 100-byte segments from 1000, sent 1 ms apart.
    fn ten() -> SentQueue {
        let mut q = SentQueue::default();
        for i in 0..10u32 {
            q.push(
                s(1000 + i * 100),
                s(1100 + i * 100),
                t(u64::from(i)),
                0,
                TxState::default,
            );
        }
        q
    }

    #[test]
    fn sack_splits_at_block_edges_and_counts() {
        let mut q = ten();
        let mut seen = Vec::new();
        // A block starting and ending inside segments.
        let n = q.sack(s(1150), s(1350), 1, |d| seen.push((d.seg.start, d.bytes)));
        assert_eq!(n, 200);
        assert_eq!(seen, [(s(1150), 50), (s(1200), 100), (s(1300), 50)]);
        assert_eq!(q.len(), 12);
        q.check_invariants();
        // The same block again delivers nothing new.
        assert_eq!(q.sack(s(1150), s(1350), 1, |_| panic!("already SACKed")), 0);
        assert_eq!(q.pipe(), 800);
        // A block beyond what was sent is clipped.
        assert_eq!(q.sack(s(1950), s(5000), 1, |_| {}), 50);
        q.check_invariants();
    }

    #[test]
    fn cumulative_ack_skips_sacked_and_trims_partial() {
        let mut q = ten();
        q.sack(s(1100), s(1200), 1, |_| {});
        let mut seen = Vec::new();
        q.ack(s(1250), |d| seen.push((d.seg.start, d.bytes)));
        // 1000..1100 delivered; 1100..1200 was SACKed already; half of 1200..1300.
        assert_eq!(seen, [(s(1000), 100), (s(1200), 50)]);
        assert_eq!(q.iter().next().unwrap().start, s(1250));
        assert_eq!(q.pipe(), 750);
        q.check_invariants();
    }

    #[test]
    fn lost_retransmitted_and_lost_again() {
        let mut q = ten();
        assert_eq!(q.mark_lost(s(1050)), 100);
        assert_eq!(q.mark_lost(s(1010)), 0, "already lost");
        assert_eq!(q.pipe(), 900);
        assert_eq!(q.next_lost(), Some((s(1000), 100)));
        assert!(q.retransmitted(s(1000), 100, t(20), 0, TxState::default()));
        assert_eq!(q.pipe(), 1000, "the retransmission is in flight");
        assert_eq!(q.next_lost(), None);
        // The retransmission is lost too.
        assert_eq!(q.mark_lost(s(1000)), 100);
        assert_eq!(q.pipe(), 900);
        assert_eq!(q.next_lost(), Some((s(1000), 100)));
        // A partial retransmission splits the record.
        q.retransmitted(s(1000), 40, t(30), 0, TxState::default());
        assert_eq!(q.next_lost(), Some((s(1040), 60)));
        q.check_invariants();
        // A timeout deems everything lost, the retransmission out included.
        q.mark_all_lost();
        assert_eq!(q.pipe(), 0);
        q.unmark_lost();
        assert_eq!(q.pipe(), 1000);
        q.check_invariants();
    }

    #[test]
    fn rack_marks_by_send_time_and_reports_the_wait() {
        let mut q = ten();
        // The segment sent at 5 ms was delivered at 12 ms; RTT 7 ms, no reordering window.
        q.sack(s(1500), s(1600), 1, |_| {});
        let (lost, timeout) = q.rack_detect_loss(t(12), t(5), s(1600), Duration::from_millis(7));
        // Sent at 0..=4 ms: deadlines 7..=11 ms have passed.
        assert_eq!(lost, 500);
        assert_eq!(timeout, None);
        // With a 2 ms reordering window segments sent at 4 ms wait until 13 ms.
        let mut q = ten();
        q.sack(s(1500), s(1600), 1, |_| {});
        let (lost, timeout) = q.rack_detect_loss(t(12), t(5), s(1600), Duration::from_millis(9));
        assert_eq!(lost, 400, "sent at 0..=3 ms");
        assert_eq!(timeout, Some(Duration::from_millis(1)));
        q.check_invariants();
        // A retransmission is judged by its own send time.
        q.retransmitted(s(1000), 100, t(20), 0, TxState::default());
        let (lost, _) = q.rack_detect_loss(t(30), t(5), s(1600), Duration::from_millis(9));
        assert_eq!(
            lost, 100,
            "the segment sent at 4 ms; the retransmission is newer"
        );
        // Once something sent at 21 ms is delivered, everything older that waited 9 ms is
        // lost: the originals sent at 6..=9 ms and the retransmission sent at 20 ms.
        let (lost, _) = q.rack_detect_loss(t(40), t(21), s(1100), Duration::from_millis(9));
        assert_eq!(lost, 500);
        q.check_invariants();
    }

    #[test]
    fn reneging_clears_sacks() {
        let mut q = ten();
        q.sack(s(1200), s(1400), 1, |_| {});
        q.clear_sacked();
        assert_eq!(q.pipe(), 1000);
        q.check_invariants();
    }

    /// Any sequence of operations, with arbitrary SACK blocks, acknowledgments near the
    /// wrap, losses, retransmissions and RACK passes, keeps the counters, the records and
    /// the retransmission hint consistent.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Push(u16),
            Sack(u32, u32),
            Ack(u32),
            MarkLost(u32),
            MarkAllLost,
            Unmark,
            ClearSacked,
            Retransmit(u16),
            Rack(u8, u32, u8),
            Tick(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (1u16..3000).prop_map(Op::Push),
                6 => (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Op::Sack(a, b)),
                3 => any::<u32>().prop_map(Op::Ack),
                2 => any::<u32>().prop_map(Op::MarkLost),
                1 => Just(Op::MarkAllLost),
                1 => Just(Op::Unmark),
                1 => Just(Op::ClearSacked),
                4 => (0u16..3000).prop_map(Op::Retransmit),
                3 => (any::<u8>(), any::<u32>(), any::<u8>()).prop_map(|(a, b, c)| Op::Rack(a, b, c)),
                3 => (0u8..50).prop_map(Op::Tick),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(5000))]
            #[test]
            fn sent_queue_stays_consistent(
                base in any::<u32>(),
                ops in proptest::collection::vec(op(), 1..200),
            ) {
                let mut q = SentQueue::default();
                // Sequence numbers close to the wrap as often as not.
                let una0 = SeqNum(base);
                let mut una = una0;
                let mut nxt = una0;
                let mut now = 0u64;
                for op in ops {
                    match op {
                        Op::Push(n) => {
                            q.push(nxt, nxt + u32::from(n), t(now), 0, TxState::default);
                            nxt += u32::from(n);
                        }
                        Op::Sack(a, b) => {
                            // Either arbitrary, or relative to the window.
                            let span = ((nxt - una) as u32).max(1);
                            let (l, r) = if a & 1 == 0 {
                                (SeqNum(a), SeqNum(b))
                            } else {
                                (una + (a >> 1) % (span + 100) - 50u32, una + (b % (span + 100)))
                            };
                            // The connection passes only una < l < r <= snd_max.
                            if l < r && r <= nxt && l > una {
                                q.sack(l, r, [1, 100, 1000][(b % 3) as usize], |_| {});
                            }
                        }
                        Op::Ack(a) => {
                            let span = (nxt - una) as u32;
                            if span > 0 {
                                let new = una + 1u32 + a % span;
                                q.ack(new, |_| {});
                                una = new;
                            }
                        }
                        Op::MarkLost(a) => {
                            let span = ((nxt - una) as u32).max(1);
                            q.mark_lost(una + a % span);
                        }
                        Op::MarkAllLost => { q.mark_all_lost(); }
                        Op::Unmark => q.unmark_lost(),
                        Op::ClearSacked => q.clear_sacked(),
                        Op::Retransmit(n) => {
                            if let Some((start, len)) = q.next_lost() {
                                let n = if n == 0 { len } else { u32::from(n).min(len) };
                                q.retransmitted(start, n, t(now), 0, TxState::default());
                            }
                        }
                        Op::Rack(back, off, wait) => {
                            let span = ((nxt - una) as u32).max(1);
                            let xmit = t(now.saturating_sub(u64::from(back) % 60));
                            q.rack_detect_loss(t(now), xmit, una + off % span,
                                Duration::from_millis(u64::from(wait % 20)));
                        }
                        Op::Tick(d) => now += u64::from(d),
                    }
                    q.check_invariants();
                    let lowest = q.segs.iter().find(|s| s.needs_retransmit()).map(|s| (s.start, s.len()));
                    prop_assert_eq!(q.next_lost(), lowest);
                    if let Some(f) = q.iter().next() {
                        prop_assert_eq!(f.start, una);
                    }
                    prop_assert!(q.log.len() <= 100_000);
                }
            }
        }
    }
}
