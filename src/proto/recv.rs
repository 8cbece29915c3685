//! The receive buffer: in-order bytes waiting for the application, plus out-of-order bytes
//! held until the gap before them fills (RFC 9293 §3.10.7.4, "seventh, process the segment text").
//!
//! Offsets are relative to RCV.NXT. Bytes `[0, readable)` of the storage are in order and
//! readable; beyond them, out-of-order data sits at its offset and an ordered list of ranges
//! (the "assembler") says which of those bytes are valid. The same ranges give SACK blocks
//! (RFC 2018). Storage grows with the data actually held, never past the capacity.

use std::collections::VecDeque;

/// Most out-of-order ranges held at once; a segment that would need more is dropped
/// (the sender retransmits it), which bounds the work an attacker can cause (each insertion
/// is linear in the ranges held). Large enough for the holes random loss leaves in a
/// window of thousands of segments: with too few, every segment after the limit's worth of
/// holes is dropped until they fill, which turns one loss into a run of losses.
pub const MAX_RANGES: usize = 1024;

/// Storage an empty buffer may keep without counting as idle memory: none, so that an
/// idle connection holds no buffer at all (the memory goal is per idle endpoint, and there
/// may be a hundred thousand of them).
pub const RETAIN: usize = 0;

/// Storage a connection may always use for received data, even when its stack is short of
/// memory (Linux guarantees each socket `tcp_rmem[0]`, 4 KiB, likewise).
pub const PRESSURE_FLOOR: usize = 4096;

/// Received bytes: readable in-order data and reassembly state.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    data: VecDeque<u8>,
    readable: usize,
    /// Out-of-order ranges `[start, end)` as offsets past the readable bytes, sorted, disjoint,
    /// not touching each other.
    ranges: Vec<(usize, usize)>,
    capacity: usize,
}

/// What [`RecvBuffer::insert`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// Bytes that became readable (in-order data plus any gap this filled).
    pub advanced: usize,
    /// Whether the data could not be stored (too many ranges).
    pub dropped: bool,
}

impl RecvBuffer {
    /// An empty buffer that holds at most `capacity` bytes.
    pub fn new(capacity: usize) -> RecvBuffer {
        RecvBuffer {
            capacity,
            ..RecvBuffer::default()
        }
    }

    /// The most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity (only before data arrives).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// In-order bytes the application can read.
    pub fn readable(&self) -> usize {
        self.readable
    }

    /// Room past RCV.NXT: the receive window the buffer can honour.
    pub fn window(&self) -> usize {
        self.capacity.saturating_sub(self.readable)
    }

    /// Whether out-of-order data is held.
    pub fn has_out_of_order(&self) -> bool {
        !self.ranges.is_empty()
    }

    /// The out-of-order ranges, as offsets past RCV.NXT.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges
    }

    /// The first part of `[offset, offset + len)` (offsets past RCV.NXT) already held out of
    /// order, if any: data received twice.
    pub fn held_overlap(&self, offset: usize, len: usize) -> Option<(usize, usize)> {
        let end = offset + len;
        self.ranges
            .iter()
            .find(|&&(s, e)| s < end && offset < e)
            .map(|&(s, e)| (s.max(offset), e.min(end)))
    }

    /// Stores `payload` at `offset` bytes past RCV.NXT, holding at most [`MAX_RANGES`]
    /// out-of-order ranges. The caller has trimmed it to the window.
    pub fn insert(&mut self, offset: usize, payload: &[u8]) -> Inserted {
        self.insert_limited(offset, payload, MAX_RANGES)
    }

    /// [`insert`](Self::insert), holding at most `max_ranges` out-of-order ranges: a
    /// segment that would need more is dropped (`Inserted::dropped`).
    pub fn insert_limited(&mut self, offset: usize, payload: &[u8], max_ranges: usize) -> Inserted {
        let mut result = Inserted {
            advanced: 0,
            dropped: false,
        };
        let room = self.window();
        if payload.is_empty() || offset >= room {
            return result;
        }
        let payload = &payload[..payload.len().min(room - offset)];
        if offset == 0 && self.ranges.is_empty() && self.data.len() == self.readable {
            // In order with nothing held beyond it, the common case: append, no zero-filling
            // and no reassembly bookkeeping.
            self.data.extend(payload);
            self.readable += payload.len();
            result.advanced = payload.len();
            return result;
        }
        let (start, end) = (offset, offset + payload.len());
        if start > 0 && !self.can_add_range(start, end, max_ranges) {
            result.dropped = true;
            return result;
        }
        let needed = self.readable + end;
        if self.data.len() < needed {
            self.data.resize(needed, 0);
        }
        self.write_at(self.readable + start, payload);
        self.add_range(start, end);
        if let Some(&(0, first_end)) = self.ranges.first() {
            self.ranges.remove(0);
            for r in &mut self.ranges {
                r.0 -= first_end;
                r.1 -= first_end;
            }
            self.readable += first_end;
            result.advanced = first_end;
        }
        result
    }

    fn can_add_range(&self, start: usize, end: usize, max_ranges: usize) -> bool {
        // Adding a range that merges with an existing one never grows the list.
        self.ranges.len() < max_ranges || self.ranges.iter().any(|&(s, e)| start <= e && end >= s)
    }

    fn add_range(&mut self, start: usize, end: usize) {
        let mut start = start;
        let mut end = end;
        // Remove every range that overlaps or touches [start, end) and widen to cover them.
        let first = self.ranges.partition_point(|&(_, e)| e < start);
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].0 <= end {
            start = start.min(self.ranges[last].0);
            end = end.max(self.ranges[last].1);
            last += 1;
        }
        self.ranges.splice(first..last, [(start, end)]);
    }

    fn write_at(&mut self, pos: usize, src: &[u8]) {
        let (a, b) = self.data.as_mut_slices();
        let mut pos = pos;
        let mut src = src;
        for part in [a, b] {
            if src.is_empty() {
                break;
            }
            if pos >= part.len() {
                pos -= part.len();
                continue;
            }
            let n = (part.len() - pos).min(src.len());
            part[pos..pos + n].copy_from_slice(&src[..n]);
            src = &src[n..];
            pos = 0;
        }
    }

    /// Copies readable bytes into `dst` without consuming them.
    pub fn peek(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.readable);
        let (a, b) = self.data.as_slices();
        let from_a = n.min(a.len());
        dst[..from_a].copy_from_slice(&a[..from_a]);
        dst[from_a..n].copy_from_slice(&b[..n - from_a]);
        n
    }

    /// Moves readable bytes into `dst`.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = self.peek(dst);
        self.consume(n);
        n
    }

    /// Drops `n` readable bytes.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.readable);
        self.data.drain(..n);
        self.readable -= n;
    }

    /// Whether the buffer is empty but still holds more than [`RETAIN`] bytes of storage: a
    /// busy connection keeps it (freeing and regrowing it on every empty/full cycle would
    /// cost allocations and page faults), an idle one should [`release`](Self::release) it.
    pub fn holds_idle_memory(&self) -> bool {
        self.data.is_empty() && self.data.capacity() > RETAIN
    }

    /// How far past RCV.NXT data can be stored without growing the storage (at least
    /// [`PRESSURE_FLOOR`] bytes of it), for a stack short of memory.
    pub fn room_without_growth(&self) -> usize {
        self.data
            .capacity()
            .max(PRESSURE_FLOOR)
            .saturating_sub(self.readable)
    }

    /// Bytes of storage allocated.
    pub fn allocated(&self) -> usize {
        self.data.capacity()
    }

    /// Gives the storage back if the buffer is empty.
    pub fn release(&mut self) {
        if self.data.is_empty() {
            self.data = VecDeque::new();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.data = VecDeque::new();
        self.readable = 0;
        self.ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_then_gap_fill() {
        let mut r = RecvBuffer::new(100);
        assert_eq!(r.insert(0, b"abc").advanced, 3);
        assert_eq!(r.insert(3, b"ghi").advanced, 0); // offset 3 past rcv_nxt: bytes 6..9
        assert_eq!(r.ranges(), &[(3, 6)]);
        assert_eq!(r.insert(0, b"def").advanced, 6);
        assert!(!r.has_out_of_order());
        let mut out = [0u8; 20];
        let n = r.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghi");
    }

    #[test]
    fn window_trims_and_range_limit_drops() {
        let mut r = RecvBuffer::new(10);
        assert_eq!(r.insert(8, b"xyz1").advanced, 0);
        assert_eq!(r.ranges(), &[(8, 10)]);
        let mut r = RecvBuffer::new(10_000);
        for i in 0..MAX_RANGES {
            assert!(!r.insert(2 + i * 3, b"a").dropped);
        }
        assert!(r.insert(2 + MAX_RANGES * 3, b"a").dropped);
        // Merging with an existing range is still allowed.
        assert!(!r.insert(3, b"b").dropped);
    }

    proptest! {
        /// Any order of (possibly overlapping, duplicated) pieces reassembles the original bytes.
        #[test]
        fn reassembles_any_order(
            len in 1usize..3000,
            cuts in proptest::collection::vec((0usize..3000, 1usize..400), 1..60),
            seed: u64,
        ) {
            let original: Vec<u8> = (0..len).map(|i| (i as u64 * 31 + seed) as u8).collect();
            let mut r = RecvBuffer::new(4096);
            let mut pieces: Vec<(usize, usize)> = cuts
                .into_iter()
                .map(|(s, l)| (s % len, ((s % len) + l).min(len)))
                .collect();
            // Guarantee full coverage at the end.
            pieces.push((0, len));
            let mut delivered = Vec::new();
            let mut base = 0usize; // absolute offset of RCV.NXT
            for (s, e) in pieces {
                // Trim what was already delivered, as the engine does.
                let s2 = s.max(base);
                if s2 >= e { continue; }
                let ins = r.insert(s2 - base, &original[s2..e]);
                base += ins.advanced;
                let mut buf = vec![0u8; r.readable()];
                let n = r.read(&mut buf);
                delivered.extend_from_slice(&buf[..n]);
            }
            prop_assert_eq!(delivered, original);
        }
    }
}
