//! Receiving where the application waits.
//!
//! The kernel runs TCP's receive path inside the interrupt that brings a segment, and wakes
//! the waiting task once: one hand-off per segment. A reactor that alone receives adds a
//! second one (the datapath wakes the reactor, the reactor wakes the application), and on a
//! round trip those hand-offs between threads are most of the cost.
//!
//! So the datapath's readiness is registered with one waker of the stack's, [`RxWake`],
//! which wakes the task that has waited longest for something of its own to arrive (a read,
//! room to write, a handshake, a connection to accept) — or the reactor when no task waits.
//! That task receives the waiting packets itself and delivers them to every connection (its
//! own included) before it looks again at what it waits for. The oldest waiter goes first
//! because in a request-response exchange between two connections of one stack, the side
//! that sent last waits longest and is the one the next packet is for.
//!
//! The reactor is not woken beside it: measured on a 64-byte ping-pong, waking it as well
//! set a second thread going for every packet and cost more than the hand-off saved
//! (21 µs a round trip against 9 µs). But a woken task may not receive: its wait may have
//! been given up (a read dropped by `select!` or a timeout) while it stayed queued.
//! - A hand-over to a task that asked more than a millisecond ago, or whose wait ended
//!   since it asked (see below), wakes the reactor as well.
//! - While a hand-over is not taken up, the reactor keeps a watchdog deadline of
//!   [`WATCHDOG`] and receives whatever was left: packets are late by at most that, never
//!   lost. A hand-over while the reactor does not watch wakes it, to start; it goes on
//!   watching for [`LINGER`] after the last hand-over it saw, so that a busy stack does not
//!   pay that wake-up again and again.
//! - Tasks that merely wait arm nothing: an idle stack under a paused clock is not stepped
//!   through 10 ms deadlines.
//!
//! A task that got what it waited for some other way (delivered by another receiver) stays
//! queued, in its place: taking it out reordered the queue of a ping-pong, handing each
//! packet to the wrong side, and cost 24 µs a round trip against 10. But it is marked done
//! ([`RxWake::done`]) until it asks again, and a hand-over to a done task wakes the reactor
//! as well, as one to a stale task does: the task may have ended (a server's task for one
//! connection, after its last read), and a hand-over to a task that ended waited for the
//! watchdog. A done task that lives takes the packets up at its next call on the stack
//! (see `Shared::wait_ended`), usually before the reactor looks.
//! - Passing over a done task instead, and letting it go, cost it its place: a
//!   connect-and-close loop from `#[tokio::main]`'s task, done between one connection and
//!   the next, had its hand-overs go to the reactor, another thread, and ran at 0.79–0.80 of
//!   `tokio::net` against 1.13–1.14 this way (the median connection 137 µs against 64 µs).
//!
//! A task about to wait asks the datapath once more for what may have arrived, and a task
//! that received asks again until the datapath answers `Pending`. Each ask looks at every
//! socket (and, over UDP, at the ICMP errors of the shared ones). The datapath wakes
//! `RxWake` when packets arrive, so after a `Pending` and until the next wake (or a claim
//! that adds a socket) another ask can only find nothing: tasks skip it
//! ([`RxWake::arm`]), where the datapath says its `Pending` holds
//! (`Capabilities::pending_holds`). The reactor always asks.

use super::reactor::Parsed;
use super::unpoisoned as lock;
use crate::datapath::Batch;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant as StdInstant};

/// The longest packets wait when the task they were handed to does not receive them.
pub(crate) const WATCHDOG: Duration = Duration::from_millis(10);
/// A task that asked to receive longer ago than this may no longer wait: a hand-over to it
/// wakes the reactor too. In a busy exchange the answer comes within microseconds, so the
/// reactor stays asleep there.
pub(crate) const STALE: Duration = Duration::from_millis(1);
/// How long the reactor goes on watching after the last hand-over it saw.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// Tasks kept waiting to receive; past this, the oldest is let go (it is woken through its
/// connection as before, by whoever receives).
const MAX_WAITERS: usize = 8;

/// The receive batch and the headers parsed from it, shared by the reactor and every task
/// that receives for the stack (one at a time).
pub(crate) struct RxState {
    pub batch: Batch,
    pub parsed: Vec<Parsed>,
}

/// The waker the datapath is polled with: wakes the task that has waited longest to
/// receive, or the reactor.
pub(crate) struct RxWake {
    reactor: Mutex<Option<Waker>>,
    /// Each waiting task with when it last asked and whether its wait ended since.
    waiters: Mutex<VecDeque<Waiter>>,
    /// Packets were handed to a waiting task, and nobody has received since.
    handed_over: AtomicBool,
    /// When packets were first handed over since someone last received, in nanoseconds
    /// since [`base`](Self::base) (see [`left_since`](Self::left_since)).
    handed_at: AtomicU64,
    /// Tasks queued (`waiters.len()`), kept beside the queue so that [`done`](Self::done)
    /// need not lock an empty one.
    queued: AtomicUsize,
    /// The origin of `handed_at`.
    base: StdInstant,
    /// Packets were handed to a waiting task since the reactor last looked (taken up or
    /// not): the stack is in a busy exchange, and the reactor keeps watching.
    recent: AtomicBool,
    /// The reactor sleeps with the watchdog deadline set.
    watching: AtomicBool,
    /// Every wake of this waker, and every new source of packets, counted (see
    /// [`arm`](Self::arm)).
    wakes: AtomicU64,
    /// The count of [`wakes`](Self::wakes) when the datapath last answered `Pending` to a
    /// poll with this waker; `u64::MAX` when unknown.
    armed_at: AtomicU64,
    /// [`STALE`], but for tests.
    stale: Duration,
    /// Wake-ups of the reactor asked for here, by [`Cause`].
    caused: [AtomicU64; 4],
}

/// Why a task or the datapath asked the reactor to run, for the wake-ups counted here
/// (the others are counted under the stack's lock; see [`ReactorWakes`](super::ReactorWakes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Packets arrived and no task waited to receive them.
    Arrival,
    /// Packets were handed to a task that may not take them up, or while the reactor did
    /// not watch: the reactor is woken as well.
    Backstop,
    /// A receiving task left packets behind: its rounds ran out, or packets were handed
    /// over after its last look.
    Leftover,
    /// Work only the reactor does: RSTs of poisoned connections, ports to give back,
    /// lingering connections, the send backlog, a listener's new socket to ask.
    Housekeeping,
}

/// A task queued to receive.
struct Waiter {
    waker: Waker,
    /// When it last asked.
    asked: StdInstant,
    /// Its wait ended since it last asked (see [`RxWake::done`]).
    done: bool,
}

impl Default for RxWake {
    fn default() -> RxWake {
        RxWake {
            reactor: Mutex::default(),
            waiters: Mutex::default(),
            handed_over: AtomicBool::new(false),
            handed_at: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            base: StdInstant::now(),
            recent: AtomicBool::new(false),
            watching: AtomicBool::new(false),
            wakes: AtomicU64::new(0),
            armed_at: AtomicU64::new(u64::MAX),
            stale: STALE,
            caused: Default::default(),
        }
    }
}

impl RxWake {
    /// The reactor's current waker.
    pub fn set_reactor(&self, waker: &Waker) {
        let mut r = lock(&self.reactor);
        match &*r {
            Some(w) if w.will_wake(waker) => {}
            _ => *r = Some(waker.clone()),
        }
    }

    /// Wakes the reactor only, counting why.
    pub fn wake_reactor(&self, cause: Cause) {
        self.caused[cause as usize].fetch_add(1, Ordering::Relaxed);
        let w = lock(&self.reactor).clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Wake-ups of the reactor asked for here so far, by cause, added to `wakes`.
    pub fn add_caused(&self, wakes: &mut super::ReactorWakes) {
        let n = |c: Cause| self.caused[c as usize].load(Ordering::Relaxed);
        wakes.arrivals += n(Cause::Arrival);
        wakes.backstops += n(Cause::Backstop);
        wakes.leftovers += n(Cause::Leftover);
        wakes.housekeeping += n(Cause::Housekeeping);
    }

    /// How many times this waker was woken; read before polling the datapath, for
    /// [`arm`](Self::arm).
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::SeqCst)
    }

    /// The datapath answered `Pending` to a poll made when [`wakes`](Self::wakes) read
    /// `seen`: it holds this waker and will wake it when packets arrive, so until it does
    /// a task about to wait need not poll it again ([`armed`](Self::armed)). A wake during
    /// the poll leaves the count past `seen`, and nothing is skipped.
    pub fn arm(&self, seen: u64) {
        self.armed_at.store(seen, Ordering::SeqCst);
    }

    /// Whether the datapath was polled with this waker, answered `Pending`, and has not
    /// woken it since: nothing has arrived, and polling again would only find that out.
    pub fn armed(&self) -> bool {
        self.armed_at.load(Ordering::SeqCst) == self.wakes.load(Ordering::SeqCst)
    }

    /// Forgets that the datapath is armed: it gained a source of packets (a claimed port's
    /// socket) that no poll has registered the waker with yet. Counted as a wake, so that
    /// a poll begun before the claim (which did not see the new source) does not arm it.
    pub fn disarm(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }

    /// Queues `waker`'s task to receive when packets arrive (once, however often it asks).
    pub fn wait(&self, waker: &Waker) {
        let now = StdInstant::now();
        let mut q = lock(&self.waiters);
        if let Some(entry) = q.iter_mut().find(|e| e.waker.will_wake(waker)) {
            // Asking again shows it still waits: it keeps its place, fresh.
            entry.asked = now;
            entry.done = false;
            return;
        }
        if q.len() == MAX_WAITERS {
            q.pop_front();
        }
        q.push_back(Waiter {
            waker: waker.clone(),
            asked: now,
            done: false,
        });
        self.queued.store(q.len(), Ordering::SeqCst);
    }

    /// The wait of `waker`'s task ended (what it waited for came): it keeps its place, but
    /// until it asks again a hand-over to it wakes the reactor too. Returns whether the task
    /// was queued (and is now marked).
    pub fn done(&self, waker: &Waker) -> bool {
        // A hand-over empties the queue only after setting `handed_over`, which the caller
        // checks next: nothing is missed by not looking at an empty queue.
        if self.queued.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let mut q = lock(&self.waiters);
        match q.iter_mut().find(|e| e.waker.will_wake(waker)) {
            Some(entry) => {
                entry.done = true;
                true
            }
            None => false,
        }
    }

    /// The task of `waker` gave its wait up (the future that waited was dropped before it
    /// completed: an aborted task, a `select!` branch that lost): it is marked done, as a
    /// task whose wait ended is, so that a hand-over to it wakes the reactor too. Unmarked,
    /// it could be handed packets within the millisecond in which it still counts as
    /// waiting, and they waited for the watchdog. Packets handed over and not taken up yet,
    /// perhaps to it, wake the reactor now.
    ///
    /// It keeps its place, as a done task does: a task that drops one wait of a `select!`
    /// and waits again at once asks again in its place, and a ping-pong between two such
    /// tasks keeps its order (see the module's notes on taking done tasks out).
    pub fn forget(&self, waker: &Waker) {
        // Found and marked, it was not handed anything since it last asked (a hand-over
        // takes it out of the queue), and a hand-over from now on wakes the reactor itself.
        // Not found, it may have been handed the packets that wait: `handed_over` was set
        // before the hand-over let the queue's lock go.
        if !self.done(waker) && self.handed_over() {
            self.wake_reactor(Cause::Backstop);
        }
    }

    /// Whether packets were handed to a waiting task that has not received yet.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::SeqCst)
    }

    /// Whether packets were handed over and have waited for at least `age` without being
    /// taken up (what [`StackStats::watchdog_rescues`](super::StackStats) counts).
    pub fn left_since(&self, age: Duration) -> bool {
        let at = Duration::from_nanos(self.handed_at.load(Ordering::SeqCst));
        self.handed_over() && self.base.elapsed().saturating_sub(at) >= age
    }

    /// Someone is receiving: whatever was handed over is taken up.
    pub fn receiving(&self) {
        self.handed_over.store(false, Ordering::SeqCst);
    }

    /// Called by the reactor before it sleeps: whether it must wake by the watchdog
    /// deadline, because a hand-over is not taken up yet or happened since it last looked
    /// (the stack is in a busy exchange: the reactor goes on watching, as the caller's
    /// `linger` then says) — or because `linger` says to keep watching anyway (hand-overs
    /// happened a moment ago and will again: each would otherwise wake the reactor to
    /// start watching). Returns whether watching is needed now, and leaves the reactor
    /// watching if it is or if `linger`.
    ///
    /// A hand-over already taken up counts: the task it went to usually receives before
    /// the reactor it woke looks. Counting only those still waiting left the reactor never
    /// lingering in a busy exchange, woken again by every hand-over: once per connection of
    /// a connect-and-close loop.
    pub fn watch(&self, linger: bool) -> bool {
        let recent = self.recent.swap(false, Ordering::SeqCst);
        if linger {
            self.watching.store(true, Ordering::SeqCst);
            return recent || self.needs_watching();
        }
        // Cleared first, then checked: a task queued meanwhile either is seen here or sees
        // the reactor not watching and wakes it.
        self.watching.store(false, Ordering::SeqCst);
        let needed = recent || self.needs_watching();
        if needed {
            self.watching.store(true, Ordering::SeqCst);
        }
        needed
    }

    fn needs_watching(&self) -> bool {
        self.handed_over.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.waiters).len()
    }
}

impl Wake for RxWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // First: a task that looks at `armed` from now on polls the datapath.
        self.wakes.fetch_add(1, Ordering::SeqCst);
        let waiter = {
            let mut q = lock(&self.waiters);
            let waiter = q.pop_front();
            if waiter.is_some() {
                // Set before the task leaves the queue's lock: a task whose wait ends
                // meanwhile is either marked done while still queued (and the reactor is
                // woken below) or, marking nothing, sees the hand-over and takes it up
                // (`Shared::wait_ended`).
                if !self.handed_over.swap(true, Ordering::SeqCst) {
                    let at = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    self.handed_at.store(at, Ordering::SeqCst);
                }
                self.queued.store(q.len(), Ordering::SeqCst);
            }
            waiter
        };
        match waiter {
            Some(Waiter {
                waker: w,
                asked,
                done,
            }) => {
                self.recent.store(true, Ordering::SeqCst);
                w.wake();
                // Set first, then checked: a reactor that stops watching meanwhile sees the
                // hand-over in `watch` and keeps watching, or is woken here to start. A
                // task that asked long ago may have given its wait up (its future dropped
                // by a timeout or `select!`), and one whose wait ended may have ended
                // itself: the reactor is woken too, rather than leave the packets to the
                // watchdog.
                if done || !self.watching.load(Ordering::SeqCst) || asked.elapsed() > self.stale {
                    self.wake_reactor(Cause::Backstop);
                }
            }
            None => self.wake_reactor(Cause::Arrival),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    /// An `RxWake` with its reactor's wake counter, where no hand-over is stale however
    /// slowly the test runs.
    fn never_stale() -> (Arc<RxWake>, Arc<Count>) {
        let rx = Arc::new(RxWake {
            stale: Duration::from_secs(3600),
            ..RxWake::default()
        });
        let (reactor, rw) = counter();
        rx.set_reactor(&rw);
        (rx, reactor)
    }

    #[test]
    fn wakes_the_oldest_waiter_else_the_reactor() {
        let (rx, reactor) = never_stale();
        let (a, aw) = counter();
        let (b, bw) = counter();
        rx.wait(&aw);
        rx.wait(&bw);
        rx.wait(&aw); // already queued: kept once, in its place
        assert_eq!(rx.waiting(), 2);
        assert!(!rx.watch(false), "waiting alone arms no watchdog");
        assert_eq!(reactor.0.load(Ordering::SeqCst), 0);
        // A hand-over while the reactor does not watch wakes it too, to start watching.
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 0);
        assert_eq!(reactor.0.load(Ordering::SeqCst), 1);
        assert!(rx.watch(false), "a hand-over not taken up");
        // Watching: the next hand-over wakes the waiter alone.
        Waker::from(rx.clone()).wake();
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(reactor.0.load(Ordering::SeqCst), 1);
        rx.receiving();
        assert!(
            rx.watch(true),
            "taken up, but one came since it looked: it goes on"
        );
        assert!(
            !rx.watch(true),
            "none since: lingering alone keeps it watching"
        );
        rx.wait(&aw);
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(a.0.load(Ordering::SeqCst), 2);
        assert_eq!(
            reactor.0.load(Ordering::SeqCst),
            1,
            "still watching: not woken"
        );
        rx.receiving();
        assert!(rx.watch(false), "one came since it looked");
        assert!(
            !rx.watch(false),
            "none since, and no lingering: it stops watching"
        );
        // Nobody waiting: the reactor.
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(reactor.0.load(Ordering::SeqCst), 2);
        assert_eq!(a.0.load(Ordering::SeqCst) + b.0.load(Ordering::SeqCst), 3);
    }

    /// The task a hand-over went to usually receives before the reactor it woke looks: the
    /// reactor starts watching all the same, so the next hand-over does not wake it again.
    #[test]
    fn a_hand_over_taken_up_before_the_reactor_looks_still_starts_its_watch() {
        let (rx, reactor) = never_stale();
        let (a, aw) = counter();
        rx.wait(&aw);
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(
            reactor.0.load(Ordering::SeqCst),
            1,
            "woken to start watching"
        );
        rx.receiving(); // the task took the packets up first
        assert!(rx.watch(false), "the reactor watches");
        rx.wait(&aw);
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(a.0.load(Ordering::SeqCst), 2);
        assert_eq!(
            reactor.0.load(Ordering::SeqCst),
            1,
            "watching: not woken again"
        );
    }

    #[test]
    fn a_hand_over_to_a_task_that_asked_long_ago_wakes_the_reactor_too() {
        let rx = Arc::new(RxWake::default());
        let (reactor, rw) = counter();
        let (a, aw) = counter();
        rx.set_reactor(&rw);
        rx.wait(&aw);
        // Watching, so a fresh hand-over would not wake the reactor.
        Waker::from(rx.clone()).wake_by_ref();
        assert!(rx.watch(false));
        let before = reactor.0.load(Ordering::SeqCst);
        rx.wait(&aw);
        std::thread::sleep(STALE * 2);
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(a.0.load(Ordering::SeqCst), 2);
        assert_eq!(reactor.0.load(Ordering::SeqCst), before + 1);
    }

    /// A task whose wait ended keeps its place; asking again before the next hand-over (a
    /// ping-pong) unmarks it, and a hand-over to it while it is done wakes the reactor too
    /// (the task may have ended).
    #[test]
    fn a_hand_over_to_a_task_whose_wait_ended_wakes_the_reactor_too() {
        let (rx, reactor) = never_stale();
        let (a, aw) = counter();
        let (b, bw) = counter();
        rx.wait(&aw);
        rx.wait(&bw);
        // Lingering: the reactor watches, and fresh hand-overs alone do not wake it.
        rx.watch(true);
        // A's wait ends and it asks again: it keeps its place, first, and is not done.
        rx.done(&aw);
        rx.wait(&aw);
        assert_eq!(rx.waiting(), 2);
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 0);
        assert_eq!(reactor.0.load(Ordering::SeqCst), 0);
        // B's wait ends and it does not ask again: it keeps its place and gets the next
        // hand-over, and the reactor is woken with it.
        rx.done(&bw);
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(reactor.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.waiting(), 0);
        // Marking a task that is not queued changes nothing.
        rx.done(&bw);
        assert_eq!(rx.waiting(), 0);
    }

    /// A task that gave its wait up keeps its place but is marked done: a hand-over to it
    /// wakes the reactor too. One that gives up after packets were handed over, perhaps to
    /// it, wakes the reactor to take them up.
    #[test]
    fn a_task_that_gave_up_is_marked_done() {
        let (rx, reactor) = never_stale();
        let (a, aw) = counter();
        let (b, bw) = counter();
        rx.wait(&aw);
        rx.wait(&bw);
        rx.watch(true);
        rx.forget(&aw);
        assert_eq!(rx.waiting(), 2, "it keeps its place");
        assert_eq!(
            reactor.0.load(Ordering::SeqCst),
            0,
            "nothing was handed over"
        );
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            reactor.0.load(Ordering::SeqCst),
            1,
            "handed to a task that gave up: the reactor too"
        );
        rx.receiving();
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(reactor.0.load(Ordering::SeqCst), 1, "a fresh waiter alone");
        // B was handed the packets and gives up before it took them up.
        rx.forget(&bw);
        assert_eq!(reactor.0.load(Ordering::SeqCst), 2);
        rx.receiving();
        rx.forget(&bw);
        assert_eq!(
            reactor.0.load(Ordering::SeqCst),
            2,
            "nothing left to take up"
        );
        // A task that gave up and asks again is waiting again, in its place.
        rx.wait(&aw);
        rx.wait(&bw);
        rx.forget(&aw);
        rx.wait(&aw);
        Waker::from(rx.clone()).wake_by_ref();
        assert_eq!(a.0.load(Ordering::SeqCst), 2);
        assert_eq!(reactor.0.load(Ordering::SeqCst), 2, "asked again: not done");
        // Packets handed to A, not taken up yet; B, still queued, gives up: they were not
        // B's, and the reactor is left alone.
        assert!(rx.handed_over());
        rx.forget(&bw);
        assert_eq!(
            reactor.0.load(Ordering::SeqCst),
            2,
            "handed to another task"
        );
    }

    /// A datapath that answered `Pending` is trusted until it wakes the stack, or gains a
    /// source of packets; a poll during which a wake came arms nothing.
    #[test]
    fn armed_until_a_wake_or_a_claim() {
        let (rx, _reactor) = never_stale();
        assert!(!rx.armed(), "nothing polled yet");
        let seen = rx.wakes();
        rx.arm(seen);
        assert!(rx.armed());
        Waker::from(rx.clone()).wake_by_ref();
        assert!(!rx.armed(), "woken: packets arrived");
        // A wake while the poll ran: what it reported may not have been seen.
        let seen = rx.wakes();
        Waker::from(rx.clone()).wake_by_ref();
        rx.arm(seen);
        assert!(!rx.armed(), "a wake during the poll");
        let seen = rx.wakes();
        rx.arm(seen);
        assert!(rx.armed());
        rx.disarm();
        assert!(!rx.armed(), "a new source no poll registered with");
        // A poll begun before the claim does not arm it either.
        let seen = rx.wakes();
        rx.disarm();
        rx.arm(seen);
        assert!(!rx.armed(), "a poll that did not see the claim");
    }

    #[test]
    fn keeps_a_bounded_queue_dropping_the_oldest() {
        let rx = RxWake::default();
        let counters: Vec<_> = (0..MAX_WAITERS + 3).map(|_| counter()).collect();
        for (_, w) in &counters {
            rx.wait(w);
        }
        assert_eq!(rx.waiting(), MAX_WAITERS);
        let rx = Arc::new(rx);
        for _ in 0..MAX_WAITERS + 3 {
            Waker::from(rx.clone()).wake_by_ref();
        }
        let woken: Vec<usize> = counters
            .iter()
            .map(|(c, _)| c.0.load(Ordering::SeqCst))
            .collect();
        assert_eq!(&woken[..3], &[0, 0, 0], "the oldest three were let go");
        assert!(woken[3..].iter().all(|&n| n == 1));
    }
}
