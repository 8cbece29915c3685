//! The send buffer: bytes the application wrote that the peer has not acknowledged yet.
//!
//! The buffer is the retransmission queue as well: byte 0 is the oldest unacknowledged byte
//! (SND.UNA once the SYN is acknowledged), so retransmitting means copying out of it again.
//! Storage grows as data is written, up to the configured capacity, and is not reserved up front.

use std::collections::VecDeque;

/// Unacknowledged and unsent application bytes, in sequence order.
#[derive(Debug, Default)]
pub struct SendBuffer {
    data: VecDeque<u8>,
    capacity: usize,
}

impl SendBuffer {
    /// An empty buffer that will hold at most `capacity` bytes.
    pub fn new(capacity: usize) -> SendBuffer {
        SendBuffer {
            data: VecDeque::new(),
            capacity,
        }
    }

    /// The most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity; bytes already held stay even if they exceed it.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Bytes held (unacknowledged plus unsent).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Room left for the application.
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.data.len())
    }

    /// Appends as much of `src` as fits; returns how much was taken.
    pub fn write(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.free());
        self.data.extend(&src[..n]);
        n
    }

    /// Copies bytes starting `offset` bytes into the buffer into `dst`; returns how many.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> usize {
        let (a, b) = self.data.as_slices();
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
        copied
    }

    /// Drops the first `n` bytes (they were acknowledged).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
    }

    /// Whether the buffer is empty but still holds more than [`RETAIN`](super::recv::RETAIN)
    /// bytes of storage: a busy connection keeps it, an idle one should
    /// [`release`](Self::release) it (DESIGN: memory is proportional).
    pub fn holds_idle_memory(&self) -> bool {
        self.data.is_empty() && self.data.capacity() > super::recv::RETAIN
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

    /// Drops everything (the connection was reset or aborted).
    pub fn clear(&mut self) {
        self.data = VecDeque::new();
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
}
