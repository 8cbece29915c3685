//! The receive buffer: in-order bytes waiting for the application, plus out-of-order bytes
//! held until the gap before them fills (RFC 9293 §3.10.7.4, "seventh, process the segment text").
//!
//! Offsets are relative to RCV.NXT. Bytes `[0, readable)` of the storage are in order and
//! readable; beyond them, out-of-order data sits at its offset and an ordered list of ranges
//! (the "assembler") says which of those bytes are valid. The same ranges give SACK blocks
//! (RFC 2018). Storage grows with the data actually held, never past the capacity.
//!
//! In-order data may also be kept where it arrived, without a copy: a driver that hands a
//! segment over with the buffer it lies in ([`RecvBuffer::insert_shared`]) lets a large
//! segment that arrives in order while the buffer holds nothing but such pieces be queued
//! as a piece of that buffer (a `Bytes` slice). Such pieces come before the bytes of the storage; reads take them
//! first. Everything else is copied as before.

use bytes::{Buf, Bytes};
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

/// The smallest segment kept in the buffer it arrived in rather than copied: a piece keeps
/// its whole arrival buffer alive, so it must be a large part of it (see
/// [`RecvBuffer::insert_shared`]), and below a few kilobytes a copy costs less than the
/// bookkeeping of a piece.
pub const SHARE_MIN: usize = 16 * 1024;

/// Received bytes: readable in-order data and reassembly state.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    /// Readable bytes kept in their arrival buffers, before those of `data`; boxed, so that
    /// a connection that never receives large segments pays one pointer for it.
    pieces: Option<Box<Pieces>>,
    /// The readable bytes that follow the pieces, then out-of-order data.
    data: VecDeque<u8>,
    /// Readable bytes in all: the pieces' and `data`'s.
    readable: usize,
    /// Out-of-order ranges `[start, end)` as offsets past the readable bytes, sorted, disjoint,
    /// not touching each other.
    ranges: Vec<(usize, usize)>,
    capacity: usize,
}

/// In-order data kept in the buffers it arrived in.
#[derive(Debug, Default)]
struct Pieces {
    /// Each piece, with the size of the arrival buffer it keeps alive.
    queue: VecDeque<(Bytes, usize)>,
    /// Bytes in `queue`.
    len: usize,
    /// The arrival buffers' sizes, summed: the memory the pieces hold.
    pinned: usize,
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
        self.insert_shared(offset, payload, None, max_ranges)
    }

    /// [`insert_limited`](Self::insert_limited), with the buffer `payload` lies in when it
    /// can be shared: a segment of at least [`SHARE_MIN`] bytes that is at least half of
    /// `arrival`, arriving in order when nothing but such pieces is held, is kept as a slice
    /// of `arrival` instead of being copied. Any other segment (or a `payload` that does not
    /// lie in `arrival`) is copied.
    pub fn insert_shared(
        &mut self,
        offset: usize,
        payload: &[u8],
        arrival: Option<&Bytes>,
        max_ranges: usize,
    ) -> Inserted {
        let mut result = Inserted {
            advanced: 0,
            dropped: false,
        };
        let room = self.window();
        if payload.is_empty() || offset >= room {
            return result;
        }
        let payload = &payload[..payload.len().min(room - offset)];
        if offset == 0 && self.data.is_empty() {
            if let Some(piece) = arrival.and_then(|a| shareable(a, payload)) {
                let pinned = arrival.map_or(0, Bytes::len);
                let pieces = self.pieces.get_or_insert_with(Box::default);
                pieces.len += piece.len();
                pieces.pinned += pinned;
                pieces.queue.push_back((piece, pinned));
                self.readable += payload.len();
                result.advanced = payload.len();
                return result;
            }
        }
        let in_data = self.readable - self.pieced();
        if offset == 0 && self.ranges.is_empty() && self.data.len() == in_data {
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
        let needed = in_data + end;
        if self.data.len() < needed {
            self.data.resize(needed, 0);
        }
        self.write_at(in_data + start, payload);
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

    /// Readable bytes held as pieces.
    fn pieced(&self) -> usize {
        self.pieces.as_ref().map_or(0, |p| p.len)
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
        let mut done = 0;
        if let Some(pieces) = &self.pieces {
            for (piece, _) in &pieces.queue {
                if done == n {
                    break;
                }
                let k = piece.len().min(n - done);
                dst[done..done + k].copy_from_slice(&piece[..k]);
                done += k;
            }
        }
        let rest = n - done;
        let (a, b) = self.data.as_slices();
        let from_a = rest.min(a.len());
        dst[done..done + from_a].copy_from_slice(&a[..from_a]);
        dst[done + from_a..n].copy_from_slice(&b[..rest - from_a]);
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
        self.readable -= n;
        let mut left = n;
        if let Some(pieces) = &mut self.pieces {
            while left > 0 {
                let Some((front, pinned)) = pieces.queue.front_mut() else {
                    break;
                };
                let k = front.len().min(left);
                pieces.len -= k;
                left -= k;
                if k == front.len() {
                    // Read out: its arrival buffer can go back to the datapath.
                    pieces.pinned -= *pinned;
                    pieces.queue.pop_front();
                } else {
                    front.advance(k);
                }
            }
        }
        self.data.drain(..left);
    }

    /// Whether the buffer is empty but still holds more than [`RETAIN`] bytes of storage: a
    /// busy connection keeps it (freeing and regrowing it on every empty/full cycle would
    /// cost allocations and page faults), an idle one should [`release`](Self::release) it.
    pub fn holds_idle_memory(&self) -> bool {
        self.data.is_empty()
            && self.pieced() == 0
            && (self.data.capacity() > RETAIN || self.pieces.is_some())
    }

    /// How far past RCV.NXT data can be stored without growing the storage (at least
    /// [`PRESSURE_FLOOR`] bytes of it), for a stack short of memory.
    pub fn room_without_growth(&self) -> usize {
        self.data
            .capacity()
            .max(PRESSURE_FLOOR)
            .saturating_sub(self.readable - self.pieced())
    }

    /// Bytes of storage allocated: `data`'s, and the arrival buffers the pieces keep alive.
    pub fn allocated(&self) -> usize {
        self.data.capacity() + self.pieces.as_ref().map_or(0, |p| p.pinned)
    }

    /// Gives the storage back if the buffer is empty.
    pub fn release(&mut self) {
        if self.data.is_empty() {
            self.data = VecDeque::new();
        }
        if self.pieced() == 0 {
            self.pieces = None;
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.pieces = None;
        self.data = VecDeque::new();
        self.readable = 0;
        self.ranges.clear();
    }
}

/// `payload` as a piece of `arrival`, if it lies in it and is large enough to keep it.
fn shareable(arrival: &Bytes, payload: &[u8]) -> Option<Bytes> {
    let outer = arrival.as_ptr() as usize..arrival.as_ptr() as usize + arrival.len();
    let inner = payload.as_ptr() as usize;
    let inside = outer.contains(&inner) && inner + payload.len() <= outer.end;
    let large = payload.len() >= SHARE_MIN && payload.len() * 2 >= arrival.len();
    // `slice_ref` panics on a slice from elsewhere: checked first.
    (inside && large).then(|| arrival.slice_ref(payload))
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

    /// An arrival buffer with `payload` at `at`.
    fn arrival(at: usize, payload: &[u8], size: usize) -> Bytes {
        let mut b = vec![0u8; size];
        b[at..at + payload.len()].copy_from_slice(payload);
        Bytes::from(b)
    }

    #[test]
    fn large_in_order_segments_stay_where_they_arrived() {
        let big: Vec<u8> = (0..SHARE_MIN + 100).map(|i| i as u8).collect();
        let a = arrival(60, &big, SHARE_MIN + 200);
        let mut r = RecvBuffer::new(1 << 20);
        let payload = &a[60..60 + big.len()];
        assert_eq!(
            r.insert_shared(0, payload, Some(&a), MAX_RANGES).advanced,
            big.len()
        );
        // Kept as a slice of the arrival buffer: nothing copied, no storage grown.
        assert_eq!(
            r.pieces.as_ref().unwrap().queue[0].0.as_ptr(),
            payload.as_ptr()
        );
        assert_eq!(r.data.capacity(), 0);
        assert_eq!(r.allocated(), a.len());
        // Short of memory, the floor of copied storage is still there.
        assert_eq!(r.room_without_growth(), PRESSURE_FLOOR);
        // A small segment is copied; a large one after copied bytes is copied too, to keep
        // the order.
        assert_eq!(r.insert(0, b"tail").advanced, 4);
        let b = arrival(0, &big, big.len());
        r.insert_shared(0, &b, Some(&b), MAX_RANGES);
        assert_eq!(r.pieces.as_ref().unwrap().queue.len(), 1);
        let mut want = big.clone();
        want.extend_from_slice(b"tail");
        want.extend_from_slice(&big);
        assert_eq!(r.readable(), want.len());
        // Read in odd sizes, across the piece's end.
        let mut got = Vec::new();
        let mut chunk = [0u8; 7_001];
        while r.readable() > 0 {
            let n = r.read(&mut chunk);
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, want);
        assert!(r.holds_idle_memory());
        r.release();
        assert!(r.pieces.is_none() && r.allocated() == 0 && !r.holds_idle_memory());
    }

    #[test]
    fn only_large_parts_of_their_arrival_buffer_and_only_from_it_are_kept() {
        let big = vec![9u8; SHARE_MIN];
        // Less than half of its arrival buffer: copied.
        let a = arrival(0, &big, 3 * SHARE_MIN);
        let mut r = RecvBuffer::new(1 << 20);
        r.insert_shared(0, &a[..SHARE_MIN], Some(&a), MAX_RANGES);
        assert!(r.pieces.is_none());
        // Not inside the buffer offered: copied, not a panic.
        let elsewhere = arrival(0, &big, SHARE_MIN);
        let mut r = RecvBuffer::new(1 << 20);
        r.insert_shared(0, &big, Some(&elsewhere), MAX_RANGES);
        assert!(r.pieces.is_none());
        assert_eq!(r.readable(), SHARE_MIN);
        // Out of order: copied, and the piece before it keeps its place.
        let mut r = RecvBuffer::new(1 << 20);
        r.insert_shared(0, &elsewhere, Some(&elsewhere), MAX_RANGES);
        let later = arrival(0, &[5u8; SHARE_MIN], SHARE_MIN);
        assert_eq!(
            r.insert_shared(10, &later, Some(&later), MAX_RANGES)
                .advanced,
            0
        );
        assert_eq!(r.pieces.as_ref().unwrap().queue.len(), 1);
        assert_eq!(r.insert(0, &[1u8; 10]).advanced, 10 + SHARE_MIN);
        let mut out = vec![0u8; 3 * SHARE_MIN];
        let n = r.read(&mut out);
        assert_eq!(n, 2 * SHARE_MIN + 10);
        assert!(out[..SHARE_MIN].iter().all(|&x| x == 9));
        assert!(out[SHARE_MIN..SHARE_MIN + 10].iter().all(|&x| x == 1));
        assert!(out[SHARE_MIN + 10..n].iter().all(|&x| x == 5));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A stream cut into segments of every size, each in an arrival buffer of its own,
        /// mostly in order but with neighbours swapped and some sent twice, and read in
        /// pieces of any size, reassembles the original bytes.
        #[test]
        fn reassembles_shared_arrivals(
            sizes in proptest::collection::vec(1usize..70_000, 1..24),
            swaps in proptest::collection::vec(0usize..24, 0..6),
            twice in proptest::collection::vec(0usize..24, 0..4),
            reads in proptest::collection::vec(1usize..90_000, 1..20),
            slack in 0usize..20_000,
        ) {
            let len: usize = sizes.iter().sum();
            let original: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut segments = Vec::new();
            let mut at = 0;
            for size in &sizes {
                segments.push((at, at + size));
                at += size;
            }
            for &k in &swaps {
                if k + 1 < segments.len() {
                    segments.swap(k, k + 1);
                }
            }
            for &k in &twice {
                if k < segments.len() {
                    segments.insert(k, segments[k]);
                }
            }
            let mut r = RecvBuffer::new(4 << 20);
            let mut delivered = Vec::new();
            let mut base = 0usize;
            for (k, (s, e)) in segments.into_iter().enumerate() {
                let s2 = s.max(base);
                if s2 < e {
                    let a = arrival(slack / 2, &original[s2..e], e - s2 + slack);
                    let payload = &a[slack / 2..slack / 2 + e - s2];
                    base += r.insert_shared(s2 - base, payload, Some(&a), MAX_RANGES).advanced;
                }
                let mut buf = vec![0u8; reads[k % reads.len()]];
                let n = r.read(&mut buf);
                delivered.extend_from_slice(&buf[..n]);
            }
            let mut rest = vec![0u8; r.readable()];
            let n = r.read(&mut rest);
            delivered.extend_from_slice(&rest[..n]);
            prop_assert_eq!(delivered, original);
            prop_assert_eq!(r.readable(), 0);
        }
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
