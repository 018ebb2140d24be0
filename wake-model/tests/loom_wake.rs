//! The bridge's wake-up protocol (`src/wake.rs`, the same file in both era crates),
//! model-checked with loom: every interleaving, up to a bound of preemptions, of two
//! threads that wake tasks and the loop's thread that runs batches.
//!
//! Each model drives the protocol as `bridge.rs` does: a wake bumps the task's `sent`
//! counter (what a future's waker publishes: a timer fired, an item sent) and calls
//! `WakeQueue::wake`, notifying the loop when told to; the loop runs a batch only when it
//! is notified (the socket is readable, or a `call_soon_threadsafe` call is due), takes it
//! with `WakeQueue::take` (draining the notification first) and polls each entry after
//! `TaskState::begin_poll`. A poll reads `sent` with a relaxed load, so it sees a wake
//! only if the protocol itself orders the wake before the poll. After the threads end,
//! the loop runs while it is still notified, as a real loop would, and then:
//!
//! * no wake-up was lost: the last poll of every task saw every wake of it;
//! * no double queueing: no batch held a task twice;
//! * no poll after completion: a task that finished was never polled again, and one that
//!   was woken did finish;
//! * the protocol is back at rest: a new wake of an unfinished task queues it and notifies
//!   the loop; of a finished one does neither.
//!
//! Both notifications are modelled: a socket (one drain takes every byte written so far)
//! and `call_soon_threadsafe` (each call is one run of the batch).
//!
//! Run by `tools/wake_model.sh` (`RUSTFLAGS="--cfg loom" cargo test -p wake-model
//! --release`, preemptions bounded by `LOOM_MAX_PREEMPTIONS`, 2 unless set).
#![cfg(loom)]

#[allow(dead_code)]
#[path = "../../pyo3-0.12-pyproto/src/wake.rs"]
mod wake_pyproto;

#[allow(dead_code)]
#[path = "../../pyo3-modern-pymethods/src/wake.rs"]
mod wake_pymethods;

/// The preemption bound of every model: `LOOM_MAX_PREEMPTIONS`, else 2.
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder
}

macro_rules! protocol_model {
    ($model:ident, $wake:ident) => {
        mod $model {
            use super::$wake::{TaskState, WakeQueue};
            use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
            use loom::sync::{Arc, Mutex};
            use loom::thread;

            /// How the loop takes a notification.
            #[derive(Clone, Copy, Debug)]
            enum Notification {
                /// A byte per notification on a socket; one drain takes them all.
                Socket,
                /// A `call_soon_threadsafe` per notification; each call is one run.
                CallSoon,
            }

            struct Task {
                id: usize,
                state: TaskState,
                /// Wakes made so far (a waker bumps it, relaxed, before it wakes).
                sent: AtomicUsize,
                /// What the last poll saw of `sent`.
                seen: AtomicUsize,
                /// The task finishes at the first poll that sees a wake.
                finishes: bool,
                finished: AtomicBool,
            }

            impl Task {
                fn new(id: usize, finishes: bool) -> Arc<Task> {
                    Arc::new(Task {
                        id,
                        state: TaskState::new(),
                        sent: AtomicUsize::new(0),
                        seen: AtomicUsize::new(0),
                        finishes,
                        finished: AtomicBool::new(false),
                    })
                }

                /// `Task::poll_once` of the bridge, for a future that sees the wakes.
                fn poll(&self) {
                    assert!(
                        !self.finished.load(Relaxed),
                        "task {} polled after completion",
                        self.id
                    );
                    let sent = self.sent.load(Relaxed);
                    self.seen.store(sent, Relaxed);
                    if self.finishes && sent > 0 {
                        self.finished.store(true, Relaxed);
                        self.state.complete(); // `Slot::end` of the bridge
                    }
                }
            }

            struct Loop {
                queue: WakeQueue<Arc<Task>>,
                notification: Notification,
                /// Notifications not yet taken: bytes on the socket, or calls due.
                pending: Mutex<usize>,
            }

            impl Loop {
                fn new(notification: Notification) -> Arc<Loop> {
                    Arc::new(Loop {
                        queue: WakeQueue::new(),
                        notification,
                        pending: Mutex::new(0),
                    })
                }

                /// `TaskWaker::wake_by_ref` of the bridge, after what the waker publishes.
                fn wake(&self, task: &Arc<Task>) {
                    task.sent.fetch_add(1, Relaxed);
                    let n = self.queue.wake(&task.state, || task.clone());
                    if n {
                        *self.pending.lock().unwrap() += 1;
                    }
                }

                /// One turn of the loop: `LoopWaker::run_woken` of the bridge if the loop
                /// is notified; false if it is not.
                fn turn(&self) -> bool {
                    if *self.pending.lock().unwrap() == 0 {
                        return false;
                    }
                    let batch = self.queue.take(|| {
                        let mut pending = self.pending.lock().unwrap();
                        match self.notification {
                            Notification::Socket => *pending = 0,
                            Notification::CallSoon => *pending -= 1,
                        }
                    });
                    let mut ids: Vec<usize> = batch.iter().map(|task| task.id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    assert_eq!(ids.len(), batch.len(), "a task queued twice: {ids:?}");
                    for task in batch {
                        if task.state.begin_poll() {
                            task.poll();
                        }
                    }
                    true
                }
            }

            /// Runs `wakes` (one list of task indices per waking thread) against a loop
            /// thread taking `turns` turns, then checks the outcome.
            fn check(
                notification: Notification,
                finishes: &[bool],
                wakes: &[&[usize]],
                turns: usize,
            ) {
                let finishes = finishes.to_vec();
                let wakes: Vec<Vec<usize>> = wakes.iter().map(|w| w.to_vec()).collect();
                super::builder().check(move || {
                    let event_loop = Loop::new(notification);
                    let tasks: Vec<Arc<Task>> = finishes
                        .iter()
                        .enumerate()
                        .map(|(id, &finishes)| Task::new(id, finishes))
                        .collect();
                    let wakers: Vec<_> = wakes
                        .iter()
                        .map(|order| {
                            let (event_loop, tasks, order) =
                                (event_loop.clone(), tasks.clone(), order.clone());
                            thread::spawn(move || {
                                for index in order {
                                    event_loop.wake(&tasks[index]);
                                }
                            })
                        })
                        .collect();
                    let looper = {
                        let event_loop = event_loop.clone();
                        thread::spawn(move || {
                            for _ in 0..turns {
                                if !event_loop.turn() {
                                    thread::yield_now();
                                }
                            }
                        })
                    };
                    for waker in wakers {
                        waker.join().unwrap();
                    }
                    looper.join().unwrap();
                    // The loop goes on while it is notified (each turn takes one
                    // notification at least, so this ends).
                    while event_loop.turn() {}
                    for task in &tasks {
                        let (sent, seen) = (task.sent.load(Relaxed), task.seen.load(Relaxed));
                        if task.finishes {
                            assert_eq!(
                                task.finished.load(Relaxed),
                                sent > 0,
                                "task {} woken {sent} times, not finished: a wake-up lost",
                                task.id
                            );
                        } else {
                            assert_eq!(
                                seen, sent,
                                "task {}: its last poll saw {seen} of {sent} wakes: a wake-up lost",
                                task.id
                            );
                        }
                    }
                    // At rest: each new wake of an unfinished task queues it and notifies.
                    for task in &tasks {
                        let finished = task.finished.load(Relaxed);
                        let notify = event_loop.queue.wake(&task.state, || task.clone());
                        assert_eq!(notify, !finished, "task {}: not at rest", task.id);
                        if notify {
                            *event_loop.pending.lock().unwrap() += 1;
                        }
                        assert_eq!(event_loop.turn(), !finished);
                        assert!(!event_loop.turn());
                    }
                });
            }

            /// Two threads wake one task while the loop runs batches.
            #[test]
            fn socket_two_wakers_one_task() {
                check(Notification::Socket, &[false], &[&[0], &[0]], 2);
            }

            #[test]
            fn call_soon_two_wakers_one_task() {
                check(Notification::CallSoon, &[false], &[&[0], &[0]], 2);
            }

            /// Repeated wakes of one task, some during its polls, and two tasks in
            /// opposite orders.
            #[test]
            fn socket_two_tasks_repeated() {
                check(
                    Notification::Socket,
                    &[false, false],
                    &[&[0, 1], &[1, 0]],
                    2,
                );
            }

            #[test]
            fn call_soon_two_tasks_repeated() {
                check(
                    Notification::CallSoon,
                    &[false, false],
                    &[&[0, 1], &[1, 0]],
                    2,
                );
            }

            #[test]
            fn socket_one_task_woken_twice() {
                check(Notification::Socket, &[false], &[&[0, 0]], 3);
            }

            /// A task that finishes at its first poll after a wake, woken again after.
            #[test]
            fn socket_completion() {
                check(Notification::Socket, &[true, false], &[&[0, 0], &[1, 0]], 2);
            }

            #[test]
            fn call_soon_completion() {
                check(
                    Notification::CallSoon,
                    &[true, false],
                    &[&[0, 0], &[1, 0]],
                    2,
                );
            }
        }
    };
}

protocol_model!(pyproto, wake_pyproto);
protocol_model!(pymethods, wake_pymethods);
