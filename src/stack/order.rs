//! The order of sends: segments built under the stack's lock leave in the order they were
//! built, though the system call that sends them happens after the lock is released.
//!
//! Whoever sends holds the send order (`Shared::tx_order`, with the [`backlog`]), taken
//! while the stack's lock is still held, so the order of taking it is the order of
//! building. Holding it across a `sendmsg` has a cost the kernel's TCP does not pay: the
//! send wakes the peer's thread, the scheduler often runs that thread at once on the
//! sender's core, and the sender is preempted at the end of its system call, the order still
//! held. A task that then wants to send (the peer answering on the same stack) would wait
//! for a thread that is not running, twice switching threads per packet.
//!
//! So a task that transmits inline and finds the order taken does not wait: it *hands its
//! batch over* ([`Handoff`]), with the ticket it drew under the stack's lock, and goes on.
//! Whoever holds the order sends the batches handed over with earlier tickets before its
//! own, and every one left before it lets go ([`Order`]'s drop), then looks again once it
//! has let go, so a batch handed over just as the holder let go is not left behind: either
//! the holder sees it, or its owner, trying the order after handing it over, finds the
//! order free and sends it (a fence on each side).
//!
//! [`backlog`]: super::backlog

use super::backlog::Backlog;
use super::Shared;
use crate::datapath::Batch;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Batches handed over by tasks that found the send order taken, in the order they were
/// built, each with its ticket.
#[derive(Default)]
pub(crate) struct Handoff {
    queue: Mutex<VecDeque<(u64, Box<Batch>)>>,
    /// How many wait in `queue`, read without its lock.
    waiting: AtomicUsize,
}

impl Handoff {
    /// Hands `batch` over, with the ticket drawn for it under the stack's lock.
    pub fn push(&self, ticket: u64, batch: Box<Batch>) {
        let mut queue = lock(&self.queue);
        queue.push_back((ticket, batch));
        self.waiting.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether nothing waits. Exact once every push is over; a push under way may be missed,
    /// which is why its task tries the order after pushing (`after_handing_over`) and a
    /// holder looks again after letting go, with a fence before each look.
    pub fn is_empty(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) == 0
    }

    /// The oldest batch handed over, if its ticket is below `below`.
    fn pop_before(&self, below: u64) -> Option<Box<Batch>> {
        let mut queue = lock(&self.queue);
        match queue.front() {
            Some(&(ticket, _)) if ticket < below => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                queue.pop_front().map(|(_, b)| b)
            }
            _ => None,
        }
    }
}

/// The send order, held: the backlog, and the place of whoever holds it (`ticket`: what
/// was handed over with a lower ticket goes first). Lets go by its drop, which first sends
/// everything handed over (see the module's notes).
pub(crate) struct Order<'a> {
    shared: &'a Shared,
    guard: Option<MutexGuard<'a, Backlog>>,
    ticket: u64,
}

impl<'a> Order<'a> {
    /// Takes the send order, waiting for it, for a batch with `ticket` (`u64::MAX` for a
    /// holder that sends no batch of its own: only the backlog, or nothing).
    pub fn take(shared: &'a Shared, ticket: u64) -> Order<'a> {
        Order {
            shared,
            guard: Some(lock(&shared.tx_order)),
            ticket,
        }
    }

    /// Takes the send order if no one holds it.
    pub fn try_take(shared: &'a Shared, ticket: u64) -> Option<Order<'a>> {
        try_lock(&shared.tx_order).map(|guard| Order {
            shared,
            guard: Some(guard),
            ticket,
        })
    }

    /// Sends what was handed over before this holder's place (before its own batch).
    pub fn send_earlier(&mut self) {
        let below = self.ticket;
        if let Some(guard) = self.guard.as_mut() {
            drain(self.shared, guard, below);
        }
    }
}

/// Sends every batch handed over with a ticket below `below`, in order, through the order
/// `guard` holds, and keeps the batches for reuse.
fn drain(shared: &Shared, guard: &mut Backlog, below: u64) {
    if shared.handoff.is_empty() {
        return;
    }
    while let Some(mut batch) = shared.handoff.pop_before(below) {
        shared.send_held(guard, &mut batch);
        shared.recycle(batch);
    }
}

impl Deref for Order<'_> {
    type Target = Backlog;
    fn deref(&self) -> &Backlog {
        // Present from `take` until the drop.
        self.guard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Order<'_> {
    fn deref_mut(&mut self) -> &mut Backlog {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Order<'_> {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        if std::thread::panicking() {
            // Sending others' batches while unwinding risks a second panic (an abort): they
            // wait for the next holder, or the reactor's next round.
            return;
        }
        loop {
            drain(self.shared, &mut guard, u64::MAX);
            drop(guard);
            // Pairs with the fence of a task that handed a batch over and then found the
            // order taken: one of the two sees the other.
            fence(Ordering::SeqCst);
            if self.shared.handoff.is_empty() {
                return;
            }
            match try_lock(&self.shared.tx_order) {
                Some(g) => guard = g,
                // Its holder sends what waits before it lets go, and looks again after.
                None => return,
            }
        }
    }
}

/// After handing a batch over: sends what waits if no one holds the order (its holder let
/// go after its last look).
pub(crate) fn after_handing_over(shared: &Shared) {
    fence(Ordering::SeqCst);
    // Taking it and letting go sends everything handed over.
    drop(Order::try_take(shared, u64::MAX));
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::{BindKind, Datapath};
    use crate::Stack;
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    /// A datapath that records the first byte of every packet it sends.
    struct Recorder {
        sent: Arc<Mutex<Vec<u8>>>,
    }

    impl Datapath for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn mtu(&self, _: IpAddr) -> usize {
            1500
        }
        fn local_ip_for(&self, _: IpAddr) -> io::Result<IpAddr> {
            Ok(IpAddr::from([10, 0, 0, 1]))
        }
        fn bind(&self, local: SocketAddr, _: BindKind) -> io::Result<SocketAddr> {
            Ok(local)
        }
        fn unbind(&self, _: SocketAddr) {}
        fn poll_recv(&self, _: &mut Context<'_>, _: &mut Batch) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn send(&self, batch: &Batch) -> io::Result<usize> {
            let mut sent = lock(&self.sent);
            sent.extend((0..batch.len()).map(|i| batch.get(i)[0]));
            Ok(batch.len())
        }
    }

    fn batch_of(tag: u8) -> Box<Batch> {
        let mut b = Box::new(Batch::new(4, 64));
        if let Some(slot) = b.next_slot() {
            slot[0] = tag;
        }
        b.commit(1);
        b
    }

    #[tokio::test]
    async fn handed_over_batches_go_in_ticket_order_and_none_is_left() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stack = Stack::builder()
            .datapath(Recorder { sent: sent.clone() })
            .shards(1)
            .build()
            .unwrap();
        let shared = stack.shared();
        let seen = || lock(&sent).clone();
        // A holder drew ticket 5; batches 3 and 7 are handed over while it holds the order.
        let mut holder = Order::try_take(shared, 5).unwrap();
        for ticket in [3, 7] {
            shared.handoff.push(ticket, batch_of(ticket as u8));
            after_handing_over(shared);
        }
        assert!(seen().is_empty(), "the order is held: nothing leaves");
        // The holder's own batch goes after what was built before it ...
        let mut own = batch_of(5);
        shared.send_batch(&mut holder, &mut own);
        assert_eq!(seen(), [3, 5]);
        // ... and what was built after it leaves when it lets go.
        drop(holder);
        assert_eq!(seen(), [3, 5, 7]);
        assert!(shared.handoff.is_empty());
        // Handed over while no one holds the order: its own task sends it at once.
        shared.handoff.push(9, batch_of(9));
        after_handing_over(shared);
        assert_eq!(seen(), [3, 5, 7, 9]);
        // A holder that sends nothing of its own still sends what waits when it lets go.
        let idle = Order::take(shared, u64::MAX);
        shared.handoff.push(11, batch_of(11));
        after_handing_over(shared);
        assert_eq!(seen(), [3, 5, 7, 9]);
        drop(idle);
        assert_eq!(seen(), [3, 5, 7, 9, 11]);
        // A holder unwinding from a panic sends nothing more; the next one does.
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _holder = Order::take(shared, u64::MAX);
            shared.handoff.push(13, batch_of(13));
            panic!("a send that panics");
        }));
        assert!(unwound.is_err());
        assert_eq!(seen(), [3, 5, 7, 9, 11]);
        after_handing_over(shared);
        assert_eq!(seen(), [3, 5, 7, 9, 11, 13]);
    }
}
