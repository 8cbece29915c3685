//! The send buffer: bytes the application wrote that the peer has not acknowledged yet.
//!
//! The buffer is the retransmission queue as well: byte 0 is the oldest unacknowledged byte
//! (SND.UNA once the SYN is acknowledged), so retransmitting means taking from it again.
//! Storage grows as data is written, up to the configured capacity, and is not reserved up
//! front.
//!
//! Bytes live in one ring, copied into each segment, or, for a connection whose large
//! segments leave without a copy ([`SendBuffer::with_sums`]), in chunks (`bytes`): the
//! chunk being written, and before it chunks already frozen. A segment is then sent as
//! slices of frozen chunks ([`SendBuffer::pieces`]): a datapath that sends a packet from
//! several places (its headers, then the payload where this buffer keeps it) hands the
//! kernel the buffer's own bytes, and its checksum comes from sums kept as the bytes were
//! written ([`SendBuffer::range_sum`]). A frozen chunk's storage is freed once it is
//! acknowledged and no packet holds it, or kept for the next chunk.

use crate::wire::{checksum, Pieces};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;

/// The largest chunk allocated at once. A chunk is as large as the write that needs it or
/// the bytes already held, whichever is more, and at least [`MIN_CHUNK`]: a connection of
/// small writes keeps small chunks, a busy one large ones (fewer pieces per segment).
const MAX_CHUNK: usize = 128 * 1024;

/// The smallest chunk allocated.
const MIN_CHUNK: usize = 64;

/// Unacknowledged and unsent application bytes, in sequence order.
#[derive(Debug, Default)]
pub struct SendBuffer {
    store: Store,
    /// At most 4 GiB.
    capacity: u32,
    /// No block sums are kept ([`forget_sums`](Self::forget_sums)).
    sums_off: bool,
}

/// Where the bytes are kept.
#[derive(Debug)]
enum Store {
    /// One ring, copied out into each segment: for a connection whose segments never leave
    /// without a copy, the least memory and bookkeeping (a connection of small writes keeps
    /// a few bytes of storage).
    Ring(VecDeque<u8>),
    /// Chunks that segments can be sent from without a copy, with block sums; boxed, so
    /// that a connection that holds nothing pays one pointer for it.
    Chunks(Option<Box<Chunks>>),
}

impl Default for Store {
    fn default() -> Store {
        Store::Ring(VecDeque::new())
    }
}

#[derive(Debug, Default)]
struct Chunks {
    /// Frozen chunks, oldest first (the first one starts at byte 0 of the buffer).
    frozen: VecDeque<Bytes>,
    /// Bytes in `frozen`.
    frozen_len: usize,
    /// The chunk being written, after the frozen ones.
    tail: BytesMut,
    /// Storage of chunks read out and let go by every packet, kept for the next chunk:
    /// a new allocation of this size is fresh memory, faulted in page by page.
    spare: Vec<BytesMut>,
    /// RFC 1071 sums of the bytes written, by block of [`BLOCK`] bytes aligned to offsets
    /// in the whole stream: `sums[k]` covers block `first_block + k`, summed as if it
    /// started at an even offset. Computed as the bytes are written, while they are in the
    /// cache, so that a segment sent from the buffer later is summed without reading most
    /// of its bytes again.
    sums: VecDeque<u16>,
    first_block: u64,
    /// Stream offset of the buffer's byte 0.
    base: u64,
}

/// Bytes per stored sum.
const BLOCK: u64 = 2048;

/// Spare chunks a buffer keeps at most.
const SPARES: usize = 2;

impl Chunks {
    fn len(&self) -> usize {
        self.frozen_len + self.tail.len()
    }

    /// Adds `bytes`, written at stream offset `pos`, to the block sums.
    fn add_sums(&mut self, mut pos: u64, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let block = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = (BLOCK as usize - within).min(bytes.len());
            let k = (block - self.first_block) as usize;
            while self.sums.len() <= k {
                self.sums.push_back(0);
            }
            let sum = checksum::fold(checksum::sum(&bytes[..n], 0));
            self.sums[k] = checksum::add_at(self.sums[k], sum, within);
            pos += n as u64;
            bytes = &bytes[n..];
        }
    }

    /// Keeps the storage of a chunk read out, if no one else holds it (its packets were
    /// sent, and it is the last piece of its allocation) and there is room.
    fn keep_spare(&mut self, done: Bytes) {
        if self.spare.len() == SPARES {
            return;
        }
        if let Ok(mut storage) = done.try_into_mut() {
            // A view from where this piece began: cleared, it takes the whole allocation
            // back from its start (no allocation, no copy) if that is a full-sized chunk.
            // Smaller ones are let go.
            storage.clear();
            if storage.try_reclaim(MAX_CHUNK) {
                self.spare.push(storage);
            }
        }
    }

    /// Freezes what the tail holds; the tail keeps writing into the rest of its storage.
    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            let part = self.tail.split().freeze();
            self.frozen_len += part.len();
            self.frozen.push_back(part);
        }
    }
}

impl SendBuffer {
    /// An empty buffer that will hold at most `capacity` bytes.
    pub fn new(capacity: usize) -> SendBuffer {
        SendBuffer::with_sums(capacity, false)
    }

    /// An empty buffer of at most `capacity` bytes (4 GiB at most). With `sums` it keeps
    /// its bytes in chunks that [`pieces`](Self::pieces) hands out without a copy, and the
    /// RFC 1071 sums of what is written by block of 2 KiB, computed as the bytes are
    /// written, for [`range_sum`](Self::range_sum); without, in one ring.
    pub fn with_sums(capacity: usize, sums: bool) -> SendBuffer {
        SendBuffer {
            store: if sums {
                Store::Chunks(None)
            } else {
                Store::default()
            },
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
            sums_off: false,
        }
    }

    /// Stops keeping block sums, and drops those kept: for a connection whose segments
    /// leave with partial checksums, which never ask [`range_sum`](Self::range_sum). The
    /// bytes stay in chunks that [`pieces`](Self::pieces) hands out; `range_sum` still
    /// answers, from the bytes.
    pub fn forget_sums(&mut self) {
        self.sums_off = true;
        if let Store::Chunks(Some(chunks)) = &mut self.store {
            chunks.sums.clear();
        }
    }

    /// The most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Changes the capacity (4 GiB at most); bytes already held stay even if they exceed it.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
    }

    /// Bytes held (unacknowledged plus unsent).
    pub fn len(&self) -> usize {
        match &self.store {
            Store::Ring(ring) => ring.len(),
            Store::Chunks(chunks) => chunks.as_ref().map_or(0, |c| c.len()),
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room left for the application.
    pub fn free(&self) -> usize {
        self.capacity().saturating_sub(self.len())
    }

    /// Appends as much of `src` as fits; returns how much was taken.
    pub fn write(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.free());
        let mut src = &src[..n];
        let chunks = match &mut self.store {
            Store::Ring(ring) => {
                ring.extend(src);
                return n;
            }
            Store::Chunks(chunks) => chunks.get_or_insert_with(Box::default),
        };
        while !src.is_empty() {
            let spare = chunks.tail.capacity() - chunks.tail.len();
            if spare == 0 {
                let size = src.len().max(chunks.len()).clamp(MIN_CHUNK, MAX_CHUNK);
                if chunks.tail.is_empty() {
                    // Nothing in it waits: its storage is taken again from the start where
                    // no packet holds part of it, else new storage (small segments are
                    // copied, so a connection of small writes keeps one chunk).
                    chunks.tail.reserve(size);
                    continue;
                }
                chunks.freeze_tail();
                chunks.tail = match chunks.spare.pop() {
                    Some(spare) if spare.capacity() >= size => spare,
                    _ => BytesMut::with_capacity(size),
                };
                continue;
            }
            let k = spare.min(src.len());
            let pos = chunks.base + chunks.len() as u64;
            chunks.tail.extend_from_slice(&src[..k]);
            if !self.sums_off {
                chunks.add_sums(pos, &src[..k]);
            }
            src = &src[k..];
        }
        n
    }

    /// The parts of the buffer in order, from `offset` on.
    fn parts_from(&self, offset: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let (ring, chunks) = match &self.store {
            Store::Ring(ring) => (Some(ring.as_slices()), None),
            Store::Chunks(chunks) => (None, chunks.as_deref()),
        };
        let ring = ring.into_iter().flat_map(|(a, b)| [a, b]);
        let chunks = chunks
            .into_iter()
            .flat_map(|c| c.frozen.iter().map(|b| &b[..]).chain([&c.tail[..]]));
        let mut skip = offset;
        ring.chain(chunks).filter_map(move |part| {
            if skip >= part.len() {
                skip -= part.len();
                return None;
            }
            let from = skip;
            skip = 0;
            Some(&part[from..])
        })
    }

    /// Copies bytes starting `offset` bytes into the buffer into `dst`; returns how many.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> usize {
        if let Store::Ring(ring) = &self.store {
            // Every segment of a copying connection comes through here: the ring's two
            // halves directly, without the general walk over parts.
            let (a, b) = ring.as_slices();
            let mut copied = 0;
            let mut offset = offset;
            for part in [a, b] {
                if copied == dst.len() {
                    break;
                }
                if offset >= part.len() {
                    offset -= part.len();
                    continue;
                }
                let n = (part.len() - offset).min(dst.len() - copied);
                dst[copied..copied + n].copy_from_slice(&part[offset..offset + n]);
                copied += n;
                offset = 0;
            }
            return copied;
        }
        if let Store::Chunks(Some(chunks)) = &self.store {
            if chunks.frozen.is_empty() {
                // A connection of small segments never freezes: all in the tail.
                let from = chunks.tail.get(offset..).unwrap_or_default();
                let n = from.len().min(dst.len());
                dst[..n].copy_from_slice(&from[..n]);
                return n;
            }
        }
        let mut copied = 0;
        for part in self.parts_from(offset) {
            if copied == dst.len() {
                break;
            }
            let n = part.len().min(dst.len() - copied);
            dst[copied..copied + n].copy_from_slice(&part[..n]);
            copied += n;
        }
        copied
    }

    /// Bytes `offset..offset + len` as slices of the buffer's own storage, without a copy:
    /// one piece, or more where the range crosses from one chunk into the next, up to
    /// [`PIECES`](crate::wire::PIECES) (the rest empty). `None` when the range is not all
    /// held or would take more pieces.
    /// Bytes still in the chunk being written are frozen first; later writes go on after
    /// them.
    pub fn pieces(&mut self, offset: usize, len: usize) -> Option<Pieces> {
        let Store::Chunks(Some(chunks)) = &mut self.store else {
            return None;
        };
        if len == 0 || offset + len > chunks.len() {
            return None;
        }
        if offset + len > chunks.frozen_len {
            chunks.freeze_tail();
        }
        let mut skip = offset;
        let mut want = len;
        let mut out = Pieces::default();
        let mut found = 0;
        for chunk in &chunks.frozen {
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            if found == out.len() {
                return None;
            }
            let k = (chunk.len() - skip).min(want);
            out[found] = chunk.slice(skip..skip + k);
            found += 1;
            want -= k;
            skip = 0;
            if want == 0 {
                return Some(out);
            }
        }
        None
    }

    /// Drops the first `n` bytes (they were acknowledged).
    pub fn consume(&mut self, n: usize) {
        let chunks = match &mut self.store {
            Store::Ring(ring) => {
                ring.drain(..n.min(ring.len()));
                return;
            }
            Store::Chunks(None) => return,
            Store::Chunks(Some(chunks)) => chunks,
        };
        let taken = n.min(chunks.len());
        let mut left = taken;
        while left > 0 {
            let Some(front) = chunks.frozen.front_mut() else {
                break;
            };
            let k = front.len().min(left);
            chunks.frozen_len -= k;
            left -= k;
            if k == front.len() {
                if let Some(done) = chunks.frozen.pop_front() {
                    chunks.keep_spare(done);
                }
            } else {
                front.advance(k);
            }
        }
        chunks.tail.advance(left);
        chunks.base += taken as u64;
        while (chunks.first_block + 1) * BLOCK <= chunks.base && !chunks.sums.is_empty() {
            chunks.sums.pop_front();
            chunks.first_block += 1;
        }
    }

    /// The RFC 1071 sum (folded) of bytes `offset..offset + len`, from the block sums where
    /// a whole block lies in the range and from the bytes themselves at its ends (and
    /// everywhere, for a buffer without sums).
    pub fn range_sum(&self, offset: usize, len: usize) -> u16 {
        let (Store::Chunks(Some(chunks)), false) = (&self.store, self.sums_off) else {
            return self.sum_bytes(offset, len);
        };
        let start = chunks.base + offset as u64;
        let end = start + len as u64;
        let mut total = 0u16;
        let mut pos = start;
        while pos < end {
            let block = pos / BLOCK;
            let block_end = (block + 1) * BLOCK;
            let n = block_end.min(end) - pos;
            let stored = (pos == block * BLOCK && block_end <= end)
                .then(|| chunks.sums.get((block - chunks.first_block) as usize))
                .flatten();
            let sum = match stored {
                Some(&s) => s,
                None => self.sum_bytes((pos - chunks.base) as usize, n as usize),
            };
            total = checksum::add_at(total, sum, (pos - start) as usize);
            pos += n;
        }
        total
    }

    /// The RFC 1071 sum (folded) of bytes `offset..offset + len`, read from the bytes.
    fn sum_bytes(&self, offset: usize, len: usize) -> u16 {
        let mut want = len;
        let parts = self.parts_from(offset).map_while(|p| {
            (want > 0).then(|| {
                let k = p.len().min(want);
                want -= k;
                &p[..k]
            })
        });
        checksum::fold(checksum::sum_parts(parts, 0))
    }

    /// Whether the buffer is empty but still holds storage: a busy connection keeps it, an
    /// idle one should [`release`](Self::release) it (DESIGN: memory is proportional).
    pub fn holds_idle_memory(&self) -> bool {
        self.is_empty()
            && match &self.store {
                Store::Ring(ring) => ring.capacity() > super::recv::RETAIN,
                Store::Chunks(chunks) => chunks.is_some(),
            }
    }

    /// Bytes of storage allocated: the ring's; or the chunk being written, the bytes of
    /// frozen ones and the spare chunks (what a chunk's acknowledged front still holds
    /// while the rest of it is in use goes uncounted: at most one chunk's size).
    pub fn allocated(&self) -> usize {
        match &self.store {
            Store::Ring(ring) => ring.capacity(),
            Store::Chunks(chunks) => chunks.as_ref().map_or(0, |c| {
                c.frozen_len
                    + c.tail.capacity()
                    + c.spare.iter().map(BytesMut::capacity).sum::<usize>()
            }),
        }
    }

    /// Gives the storage back if the buffer is empty.
    pub fn release(&mut self) {
        if self.is_empty() {
            self.clear();
        }
    }

    /// Drops everything (the connection was reset or aborted).
    pub fn clear(&mut self) {
        match &mut self.store {
            Store::Ring(ring) => *ring = VecDeque::new(),
            Store::Chunks(chunks) => *chunks = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_copy_consume_across_the_ring_seam() {
        let mut b = SendBuffer::new(8);
        assert_eq!(b.write(b"abcdef"), 6);
        b.consume(4);
        assert_eq!(b.write(b"ghijklmn"), 6); // only 6 fit
        assert_eq!(b.len(), 8);
        assert_eq!(b.free(), 0);
        let mut out = [0u8; 8];
        assert_eq!(b.copy_out(0, &mut out), 8);
        assert_eq!(&out, b"efghijkl");
        let mut out = [0u8; 3];
        assert_eq!(b.copy_out(6, &mut out), 2);
        assert_eq!(&out[..2], b"kl");
        assert_eq!(b.copy_out(9, &mut out), 0);
        b.consume(100);
        assert!(b.is_empty());
    }

    #[test]
    fn pieces_are_the_buffers_own_bytes_across_chunks() {
        let mut b = SendBuffer::with_sums(1 << 20, true);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(b.write(&data), data.len());
        // Crosses the first chunk's end: two pieces.
        let [p, q, r, _] = b.pieces(130_000, 2_000).unwrap();
        assert_eq!((p.len() + q.len(), r.len()), (2_000, 0));
        assert!(!q.is_empty());
        assert_eq!([&p[..], &q[..]].concat(), &data[130_000..132_000]);
        // Past the end: none.
        assert!(b.pieces(199_999, 2).is_none());
        // A piece outlives its bytes being acknowledged and the storage being written again.
        let [held, ..] = b.pieces(0, 1000).unwrap();
        b.consume(200_000);
        assert!(b.is_empty());
        b.write(&[0xee; 100_000]);
        assert_eq!(&held[..], &data[..1000]);
    }

    fn chunks(b: &SendBuffer) -> &Chunks {
        match &b.store {
            Store::Chunks(Some(c)) => c,
            _ => panic!("no chunks"),
        }
    }

    #[test]
    fn chunks_read_out_come_back_whole() {
        let mut b = SendBuffer::with_sums(1 << 20, true);
        let data = vec![7u8; 3 * MAX_CHUNK];
        b.write(&data);
        // Sent as pieces (frozen), then acknowledged: the chunks' storage is kept.
        let mut at = 0;
        while let Some(pieces) = b.pieces(at, 50_000.min(b.len() - at)) {
            at += pieces.iter().map(Bytes::len).sum::<usize>();
            if at == b.len() {
                break;
            }
        }
        b.consume(3 * MAX_CHUNK);
        let spare = &chunks(&b).spare;
        assert_eq!(spare.len(), SPARES);
        assert!(spare
            .iter()
            .all(|s| s.capacity() >= MAX_CHUNK && s.is_empty()));
        let kept: Vec<*const u8> = spare.iter().map(|s| s.as_ptr()).collect();
        // The next chunks are those.
        b.write(&data[..2 * MAX_CHUNK + 1]);
        let chunks = chunks(&b);
        assert!(chunks.spare.is_empty());
        let mut used: Vec<*const u8> = chunks.frozen.iter().map(|f| f.as_ptr()).collect();
        used.push(chunks.tail.as_ptr());
        assert!(
            kept.iter().all(|k| used.contains(k)),
            "{kept:?} in {used:?}"
        );
    }

    #[test]
    fn writes_after_a_freeze_follow_the_frozen_bytes() {
        let mut b = SendBuffer::with_sums(1 << 20, true);
        b.write(b"hello ");
        let [p, q, ..] = b.pieces(0, 6).unwrap();
        assert_eq!((&p[..], q.len()), (&b"hello "[..], 0));
        b.write(b"world");
        let mut out = [0u8; 11];
        assert_eq!(b.copy_out(0, &mut out), 11);
        assert_eq!(&out, b"hello world");
        let pieces = b.pieces(3, 8).unwrap();
        assert_eq!(pieces.concat(), b"lo world");
        b.consume(4);
        assert_eq!(b.copy_out(0, &mut out), 7);
        assert_eq!(&out[..7], b"o world");
        assert!(b.allocated() >= 7);
        b.consume(7);
        assert!(b.holds_idle_memory());
        b.release();
        assert_eq!(b.allocated(), 0);
        assert!(!b.holds_idle_memory());
    }

    proptest::proptest! {
        /// Any sequence of writes, acknowledgments, copies and pieces agrees with a plain
        /// queue of bytes, and so do the pieces' sums, with block sums kept or not, or
        /// forgotten part of the way.
        #[test]
        fn agrees_with_a_queue(
            ops in proptest::collection::vec((0u8..6, 0usize..100_000, 0usize..100_000), 1..60),
            sums: bool,
        ) {
            let mut b = SendBuffer::with_sums(300_000, sums);
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut next = 0u32;
            let mut held = Vec::new();
            for (op, x, y) in ops {
                match op {
                    0 => {
                        let src: Vec<u8> = (0..x).map(|i| (next.wrapping_add(i as u32) % 253) as u8).collect();
                        next = next.wrapping_add(x as u32);
                        let n = b.write(&src);
                        proptest::prop_assert_eq!(n, x.min(300_000 - model.len()));
                        model.extend(&src[..n]);
                    }
                    1 => {
                        let n = x.min(model.len());
                        b.consume(x);
                        model.drain(..n);
                    }
                    2 => {
                        let off = x.min(model.len());
                        let mut dst = vec![0u8; y.min(70_000)];
                        let n = b.copy_out(off, &mut dst);
                        let want: Vec<u8> = model.iter().skip(off).take(dst.len()).copied().collect();
                        proptest::prop_assert_eq!(&dst[..n], &want[..]);
                    }
                    3 => {
                        // Gives the storage back only when empty; the next write starts anew.
                        b.release();
                    }
                    4 if x % 8 == 0 => b.forget_sums(),
                    _ => {
                        let off = x % (model.len() + 1);
                        let len = y % 70_000;
                        if let Some(pieces) = b.pieces(off, len) {
                            let want: Vec<u8> = model.iter().skip(off).take(len).copied().collect();
                            proptest::prop_assert_eq!(pieces.concat(), want.clone());
                            let norm = |x: u16| if x == 0xffff { 0 } else { x };
                            proptest::prop_assert_eq!(
                                norm(b.range_sum(off, len)),
                                norm(crate::wire::checksum::fold(crate::wire::checksum::sum(&want, 0)))
                            );
                            held.push((pieces, want));
                        }
                    }
                }
                proptest::prop_assert_eq!(b.len(), model.len());
            }
            // Pieces taken earlier never change.
            for (pieces, want) in held {
                proptest::prop_assert_eq!(pieces.concat(), want);
            }
        }
    }
}
