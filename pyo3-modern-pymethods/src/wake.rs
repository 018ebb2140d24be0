//! The bridge's wake-up protocol, without Python: which wake queues a task, which wake
//! tells the loop, and what the loop does before it polls.
//!
//! `bridge.rs` supplies the rest: the queue's entries (weak references to
//! its `TaskWaker`s), the notification (one byte on a socket the loop watches, or one
//! `call_soon_threadsafe` on a loop without `add_reader`) and the polling. Wakers run on
//! any thread and take no lock but the queue's; the loop side runs on the loop's thread.
//!
//! What the protocol guarantees (and the `wake-model` crate of the workspace checks, with
//! `loom`, over every interleaving of two waking threads and the loop, for this file of
//! both crates):
//!
//! * **No wake-up is lost.** A wake either queues its task and, if it is the first of a
//!   batch, notifies the loop; or finds the task queued already, not yet polled, so the
//!   poll to come starts after this wake and sees what the waker did before it.
//! * **No double queueing.** A task is in the queue at most once.
//! * **No poll after completion.** Once [`TaskState::complete`] ran, a wake does not queue
//!   the task and a queued entry of it is skipped.
//! * **One notification per batch.** Only the wake that finds the loop not yet notified
//!   notifies it; the loop takes the notification before it clears that flag.
//!
//! The module uses nothing of the crate. Under `cfg(loom)` its atomics and lock are
//! loom's, so the model checker runs this very code; the two crates' copies are the same
//! file, byte for byte.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering};
#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

/// The task is in its loop's queue and has not been taken for a poll yet.
const QUEUED: u8 = 1;
/// The task's future finished or was dropped: never polled again.
const DONE: u8 = 2;

// ANCHOR: task_state
/// The flags of one task: queued (woken, waiting in its loop's queue) and done.
pub(crate) struct TaskState(AtomicU8);

impl TaskState {
    pub(crate) fn new() -> Self {
        TaskState(AtomicU8::new(0))
    }

    /// A wake: marks the task queued. True if the caller must put it in the queue (it was
    /// neither queued already nor done). A release: what the waker did before the wake
    /// is seen by the poll that [`begin_poll`](Self::begin_poll) starts.
    fn schedule(&self) -> bool {
        self.0.fetch_or(QUEUED, Ordering::AcqRel) == 0
    }

    /// The loop, about to poll a task it took from the queue: clears `queued` before the
    /// poll, so that a wake during the poll queues the task again. An acquire of every
    /// wake up to now, the ones that found the task queued included (they are in this
    /// read-modify-write's release sequence). False if the task is done: no poll.
    pub(crate) fn begin_poll(&self) -> bool {
        self.0.fetch_and(!QUEUED, Ordering::AcqRel) & DONE == 0
    }

    /// The future finished or was dropped (on the loop's thread): wakes from now on are
    /// ignored, and an entry still queued is skipped.
    pub(crate) fn complete(&self) {
        self.0.fetch_or(DONE, Ordering::AcqRel);
    }
}
// ANCHOR_END: task_state

// ANCHOR: wake_queue
/// One per event loop: the woken tasks' entries and whether the loop was notified of them.
pub(crate) struct WakeQueue<T> {
    entries: Mutex<Vec<T>>,
    /// A notification is on its way to the loop, or the loop has not taken this batch yet.
    notified: AtomicBool,
}

impl<T> WakeQueue<T> {
    pub(crate) fn new() -> Self {
        WakeQueue {
            entries: Mutex::new(Vec::new()),
            notified: AtomicBool::new(false),
        }
    }

    /// A wake of `task`, any thread: queues `entry()` unless the task is queued or done
    /// already. True when the caller must notify the loop (the first wake of a batch);
    /// it does so after this returned, so with no lock of this module held.
    pub(crate) fn wake(&self, task: &TaskState, entry: impl FnOnce() -> T) -> bool {
        if !task.schedule() {
            return false; // already queued, not yet polled (or done)
        }
        lock(&self.entries).push(entry());
        !self.notified.swap(true, Ordering::AcqRel)
    }

    /// The loop, notified: takes the notification (`consume`: drains the socket), then
    /// clears `notified`, then takes the batch, in that order. A wake after `consume`
    /// either finds `notified` still set, and its entry is in the batch taken below, or
    /// finds it clear and notifies again, which makes the loop come back. Clearing first
    /// would let a notification sent in between be consumed while the flag stays set,
    /// and no wake would notify the loop again; taking the batch first would strand an
    /// entry pushed in between behind a flag that is cleared without a notification.
    pub(crate) fn take(&self, consume: impl FnOnce()) -> Vec<T> {
        consume();
        // A swap, not a plain store: it reads the flag's latest value, so it is ordered
        // after every wake's swap (for a store that takes the atomicity of the wakes'
        // swaps, which loom does not model: it reports a lost wake-up there).
        self.notified.swap(false, Ordering::AcqRel);
        std::mem::take(&mut *lock(&self.entries))
    }
}
// ANCHOR_END: wake_queue

/// A lock that survives a panic in another holder (every change is one push or take).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
