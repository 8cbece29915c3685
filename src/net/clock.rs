//! Applications that pause their runtime's clock while the stack's reactor runs on another
//! runtime (the default stack runs on a thread of its own).
//!
//! A current-thread runtime whose clock is paused (`tokio::time::pause`, `start_paused`)
//! moves the clock to its next timer whenever it has nothing to run. With the kernel's TCP on
//! loopback that is harmless: the peer's segments are processed inside the sending system
//! call, so by the time the application waits, what it waits for is already there or is far
//! away. With rawtcp, a reactor on another thread delivers a loopback answer some
//! microseconds later; in between, the application's runtime looks idle and would jump past
//! its own timeouts (`timeout(5s, connect)` failing at once).
//!
//! So when an operation is about to wait on such a runtime, the waker it registers is wrapped
//! and a blocking task is started on the application's runtime: tokio does not auto-advance a
//! paused clock while a blocking task runs (as for `spawn_blocking`). The blocking task ends
//! as soon as a wrapped waker fires — the task is then queued, so the runtime is not idle —
//! or after [`HOLD`] of real time: what the operation waits for is not local work (a remote
//! peer, a stack timer) and the clock may advance as it would with `tokio::net`.
//!
//! Nothing of this runs unless the calling runtime's clock is frozen and differs from the
//! stack's clock: a stack whose reactor runs on the paused runtime itself shares its clock,
//! and every other application never pays more than two clock readings on the way to
//! `Pending`.

use crate::stack::Shared;
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant as StdInstant};
use tokio::runtime::{Handle, RuntimeFlavor};

/// The longest a wait holds the application's paused clock, in real time: ample for the
/// reactor thread to deliver loopback traffic even on a loaded machine, short enough that a
/// wait for something remote costs little.
pub(crate) const HOLD: Duration = Duration::from_millis(100);

/// One blocking task's hold on a paused clock.
#[derive(Default)]
struct Hold {
    released: Mutex<bool>,
    cv: Condvar,
}

impl Hold {
    fn release(&self) {
        *self.released.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    fn is_released(&self) -> bool {
        *self.released.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until released or `until`.
    fn wait(&self, until: StdInstant) {
        let mut released = self.released.lock().unwrap_or_else(|p| p.into_inner());
        while !*released {
            let now = StdInstant::now();
            if now >= until {
                return;
            }
            released = match self.cv.wait_timeout(released, until - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// A task's waker that also ends the hold.
struct HoldWaker {
    hold: Arc<Hold>,
    task: Waker,
}

impl Wake for HoldWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The task first, so that it is queued before the clock may move again.
        self.task.wake_by_ref();
        self.hold.release();
    }
}

thread_local! {
    /// The hold of the runtime running on this thread, while it lasts.
    static CURRENT: RefCell<Option<(Arc<Hold>, StdInstant)>> = const { RefCell::new(None) };
}

/// Whether the calling task runs on a paused current-thread runtime whose clock is not the
/// stack's.
fn paused_elsewhere(shared: &Shared) -> Option<Handle> {
    let rt = Handle::try_current().ok()?;
    if rt.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return None;
    }
    let a = tokio::time::Instant::now();
    if tokio::time::Instant::now() != a {
        return None; // the clock runs
    }
    let stack = {
        let _clock = shared.runtime.enter();
        tokio::time::Instant::now()
    };
    (stack != a).then_some(rt)
}

/// The waker to register for an operation about to return `Pending`: `None` for the task's
/// own (the usual case), or a wrapped one holding the paused clock (see the module docs).
pub(crate) fn waker(shared: &Shared, cx: &Context<'_>) -> Option<Waker> {
    let rt = paused_elsewhere(shared)?;
    let hold = CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((h, until)) = &*c {
            if !h.is_released() && StdInstant::now() < *until {
                return h.clone();
            }
        }
        let h = Arc::new(Hold::default());
        let until = StdInstant::now() + HOLD;
        let held = h.clone();
        drop(rt.spawn_blocking(move || held.wait(until)));
        *c = Some((h.clone(), until));
        h
    });
    Some(Waker::from(Arc::new(HoldWaker {
        hold,
        task: cx.waker().clone(),
    })))
}
