//! Segments the datapath had no room for: a full socket buffer or device queue (`EAGAIN`,
//! `ENOBUFS`; see [`Datapath::send`]). They are kept in order and offered again before
//! anything newer, by the next task that sends or by the reactor a moment later, so local
//! congestion delays segments instead of losing them, as the kernel's TCP keeps a segment
//! its device would not take and sends it again rather than count it lost.
//!
//! The backlog lives inside the stack's send order (`Shared::tx_order`): whoever holds the
//! order may send, and sends what waits here first, so segments still leave in the order
//! they were built.

use crate::datapath::{Batch, Datapath};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// Packets kept at most; past it, what does not fit is dropped (counted), as a full queue
/// drops, and TCP repairs it.
const MAX_PACKETS: usize = 1024;
/// Bytes kept at most.
const MAX_BYTES: usize = 8 << 20;
/// Packets offered per `send` call when retrying.
const RETRY_BATCH: usize = 64;
/// How soon the reactor offers kept packets again when no task sends meanwhile.
pub(crate) const RETRY: Duration = Duration::from_millis(1);

/// The packets waiting for room, oldest first, with their carriers.
#[derive(Default)]
pub(crate) struct Backlog {
    packets: VecDeque<(Vec<u8>, Option<SocketAddr>)>,
    bytes: usize,
    /// Packets that had to wait here, since the stack began.
    pub deferred: u64,
    /// Packets dropped because it was full.
    pub overflow: u64,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Keeps packets `from..` of `batch`, behind what waits already.
    pub fn keep(&mut self, batch: &Batch, from: usize) {
        for i in from..batch.len() {
            let len = batch.packet_len(i);
            if self.packets.len() == MAX_PACKETS || self.bytes + len > MAX_BYTES {
                self.overflow += (batch.len() - i) as u64;
                tracing::debug!(
                    dropped = batch.len() - i,
                    "send backlog full: packets dropped"
                );
                return;
            }
            // Whole, with any attached payload (`Batch::attached`): the retry sends it from
            // its own slot.
            let mut packet = Vec::with_capacity(len);
            for part in batch.parts(i) {
                packet.extend_from_slice(part);
            }
            self.bytes += len;
            self.deferred += 1;
            self.packets.push_back((packet, batch.carrier(i)));
        }
    }

    /// Offers the waiting packets to `datapath` again, oldest first, and forgets those it
    /// dealt with; stops when it has no room again.
    pub fn retry(&mut self, datapath: &dyn Datapath) {
        while !self.packets.is_empty() {
            let n = self.packets.len().min(RETRY_BATCH);
            let size = self.packets.iter().take(n).map(|(p, _)| p.len()).max();
            let mut batch = Batch::new(n, size.unwrap_or(0));
            for (packet, carrier) in self.packets.iter().take(n) {
                if let Some(slot) = batch.next_slot() {
                    slot[..packet.len()].copy_from_slice(packet);
                    batch.commit_via(0, packet.len(), *carrier);
                }
            }
            let done = match datapath.send(&batch) {
                Ok(done) => done.min(n),
                Err(e) => {
                    // The datapath failed as a whole: the packets are lost to it anyway.
                    tracing::debug!(error = %e, "datapath send failed");
                    n
                }
            };
            for _ in 0..done {
                if let Some((p, _)) = self.packets.pop_front() {
                    self.bytes -= p.len();
                }
            }
            if done < n {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::sim::SimNetwork;

    #[test]
    fn keeps_in_order_up_to_its_bound() {
        let mut b = Backlog::default();
        let mut batch = Batch::new(3, 8);
        for p in [&[1u8][..], &[2, 2], &[3, 3, 3]] {
            batch.push(p).unwrap();
        }
        b.keep(&batch, 1);
        assert_eq!(b.deferred, 2);
        let kept: Vec<Vec<u8>> = b.packets.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(kept, vec![vec![2, 2], vec![3, 3, 3]]);
        assert_eq!(b.bytes, 5);
        let mut many = Batch::new(MAX_PACKETS, 1);
        for _ in 0..MAX_PACKETS {
            many.push(&[9]).unwrap();
        }
        b.keep(&many, 0);
        assert_eq!(b.packets.len(), MAX_PACKETS);
        assert_eq!(b.overflow, 2, "what does not fit is dropped and counted");
    }

    #[tokio::test]
    async fn retry_hands_everything_to_a_datapath_with_room() {
        let net = SimNetwork::new(1);
        let host = net.host("10.0.0.1".parse().unwrap()).unwrap();
        let mut b = Backlog::default();
        let mut batch = Batch::new(100, 64);
        for i in 0..100u8 {
            batch.push(&[i; 40]).unwrap();
        }
        b.keep(&batch, 0);
        b.retry(&host);
        assert!(b.is_empty());
        assert_eq!(b.bytes, 0);
    }
}
