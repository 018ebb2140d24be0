//! The hand-written bridge: any Rust `Future` as a Python awaitable, `RustFuture`.
//!
//! Where the future runs: on the event loop's own thread. Awaiting a `RustFuture` polls
//! its future right there; if it is ready at once, the value comes back with no thread
//! hop at all. If not, the awaiting Task is handed an asyncio future (a "waiter") to wait
//! on, and the Rust future keeps a `Waker`. Whoever wakes it (a tokio timer, a worker
//! thread) does not touch Python: the waker only queues the task in its loop's
//! `LoopWaker` and writes one byte to a socket the loop watches (`add_reader`). The loop
//! then calls back into Rust, which polls every queued future and completes the waiters
//! of those that are done. So runtime threads never take the GIL, one loop wake-up
//! serves any number of completions, and each loop (one per thread) gets its own results.
//! When to queue and when to notify is the protocol of [`crate::wake`], kept free of
//! Python so that a model checker can run it.
//!
//! A loop without `add_reader` (Windows' default Proactor loop raises
//! `NotImplementedError`) is notified with `call_soon_threadsafe` instead: still once
//! per batch, but the waking thread then takes the GIL for that one call (see
//! [`call_soon`]).
//!
//! Cancelling the awaiting Task throws `CancelledError` in, which drops the Rust future
//! at once, on the loop thread: `live_futures()` counts the futures still alive.
//!
//! An output nobody collects is handed back. A future may finish (its output waits in
//! the slot) and its Task be cancelled, closed or collected before it resumes to take
//! the output. For a sleep that loses nothing; for the next item of a stream or a
//! semaphore's permit it would lose the item or leak the permit. So a future made by
//! [`RustFuture::new_with_unclaimed`] keeps its output as a Rust value until the Task
//! collects it, and a `give_back` function receives it if it is dropped instead
//! (`throw`, `close`, an error, `__clear__`, or the object's own drop). Give-back needs
//! no Python: the value is converted only when collected (so, with PyO3 0.12, no
//! `PyObject` is ever dropped where its GIL count could be zero).
//!
//! PyO3 0.12 predates `async` support of any kind; nothing here needs it: a `Waker`,
//! `#[pyproto]` for the awaitable protocol and `#[call]` for the loop's callback.

use std::cell::RefCell;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::task::{Context, Poll, Wake, Waker};

use pyo3::exceptions::{PyNotImplementedError, PyRuntimeError};
use pyo3::once_cell::GILOnceCell;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{wrap_pyfunction, AsPyPointer, PyAsyncProtocol, PyIterProtocol, PyNativeType};
use pyo3::{PyGCProtocol, PyObjectProtocol, PyTraverseError, PyVisit};

use crate::ffi;
use crate::protocol::{
    already_executing, borrow_for_step, check_throw_arguments, error_is, escaping,
    just_started_error, panic_error, reuse_error, thrown_exception, IntoMethodResult, State, Step,
};
use crate::slots::Stepped;
use crate::wake::{TaskState, WakeQueue};

/// A Rust future producing an [`Output`], boxed so that one class can hold any of them.
type BoxedFuture = Pin<Box<dyn Future<Output = PyResult<Output>> + Send>>;

// ANCHOR: give_back
/// What a finished future leaves in its slot for the awaiting Task to collect.
enum Output {
    /// Converted already, on the loop thread ([`RustFuture::new`]).
    Object(PyObject),
    /// Still a Rust value: converted when collected, handed back if it is dropped
    /// instead ([`RustFuture::new_with_unclaimed`]).
    Unclaimed(Box<dyn Unclaimed>),
}

impl Output {
    /// The Task collects the output: as a Python object.
    fn claim(self, py: Python) -> PyResult<PyObject> {
        match self {
            Output::Object(value) => Ok(value),
            Output::Unclaimed(unclaimed) => unclaimed.claim(py),
        }
    }
}

/// A Rust value that gives itself back when dropped without being claimed.
trait Unclaimed: Send {
    /// The value as a Python object; after this, dropping gives nothing back.
    fn claim(self: Box<Self>, py: Python) -> PyResult<PyObject>;
}

/// A value and the function that takes it back if nobody claims it (both `Some` until
/// claimed or given back).
struct GiveBack<T, G: FnOnce(T)> {
    value: Option<T>,
    give_back: Option<G>,
}

impl<T, G> Unclaimed for GiveBack<T, G>
where
    T: IntoPy<PyObject> + Send,
    G: FnOnce(T) + Send,
{
    fn claim(mut self: Box<Self>, py: Python) -> PyResult<PyObject> {
        match self.value.take() {
            Some(value) => Ok(value.into_py(py)),
            None => Ok(py.None()), // unreachable: a value is claimed once
        }
    }
}

impl<T, G: FnOnce(T)> Drop for GiveBack<T, G> {
    /// Dropped unclaimed: the value goes back (a panic there is contained: a drop may run
    /// inside a type slot, where no panic may unwind).
    fn drop(&mut self) {
        if let (Some(value), Some(give_back)) = (self.value.take(), self.give_back.take()) {
            let _ = catch_unwind(AssertUnwindSafe(|| give_back(value)));
        }
    }
}
// ANCHOR_END: give_back

// ANCHOR: runtime
/// The process's one tokio runtime, started on first use, with two worker threads.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .thread_name("pyo3-async-guide")
            .build()
            .expect("cannot start the tokio runtime")
    })
}
// ANCHOR_END: runtime

static LIVE_FUTURES: AtomicUsize = AtomicUsize::new(0);

/// How many Rust futures of this module are alive right now.
#[pyfunction]
#[text_signature = "()"]
pub fn live_futures() -> usize {
    LIVE_FUTURES.load(Ordering::SeqCst)
}

/// A Rust future, counted by `live_futures()` while it exists.
struct Counted(BoxedFuture);

impl Counted {
    fn new(future: BoxedFuture) -> Self {
        LIVE_FUTURES.fetch_add(1, Ordering::SeqCst);
        Counted(future)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE_FUTURES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a Rust future is: still running (with what wakes it and what the awaiting
/// Task waits on), finished (with its output, until the Task collects it), or gone.
enum Slot {
    Pending {
        future: Counted,
        /// The future's `Waker`, and the same `TaskWaker` typed (for its flags).
        waker: Option<(Waker, Arc<TaskWaker>)>,
        waiter: Option<PyObject>,
    },
    Ready(PyResult<Output>),
    Gone,
}

impl Slot {
    /// Replaces a slot for good (finished, or dropped): marks its task done first, so
    /// that no wake queues it any more (`wake::TaskState::complete`).
    fn end(&mut self, with: Slot) -> Slot {
        if let Slot::Pending {
            waker: Some((_, task_waker)),
            ..
        } = self
        {
            task_waker.state.complete();
        }
        std::mem::replace(self, with)
    }
}

/// What wakers and the `RustFuture` object share.
struct Task {
    slot: Mutex<Slot>,
}

/// A lock that survives a panic in another holder: the slot's data stays consistent
/// because every change to it is a single assignment.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Task {
    // ANCHOR: advance
    /// Polls the future once if it is pending and has a waker. Returns the waiter to
    /// complete if it finished. Whatever is dropped is dropped after the lock is released.
    /// A panic of the future is caught here and becomes its output
    /// (`protocol::panic_error`).
    fn poll_once(&self) -> Option<PyObject> {
        let mut slot = lock(&self.slot);
        let (future, waker) = match &mut *slot {
            Slot::Pending {
                future,
                waker: Some((waker, _)),
                ..
            } => (future, waker),
            _ => return None,
        };
        let mut context = Context::from_waker(waker);
        let _runtime = runtime().enter(); // tokio timers register with the runtime
        let output = match catch_unwind(AssertUnwindSafe(|| future.0.as_mut().poll(&mut context))) {
            Ok(Poll::Pending) => return None,
            Ok(Poll::Ready(output)) => output,
            Err(payload) => Err(panic_error(payload)),
        };
        let finished = slot.end(Slot::Ready(output));
        drop(slot);
        match finished {
            Slot::Pending { waiter, .. } => waiter,
            _ => None,
        }
    }
    // ANCHOR_END: advance

    /// Drops the future (and cancels the waiter), for `throw`, `close` and errors.
    fn discard(&self, py: Python) {
        let gone = lock(&self.slot).end(Slot::Gone);
        if let Slot::Pending {
            waiter: Some(waiter),
            ..
        } = &gone
        {
            let _ = waiter.call_method0(py, "cancel");
        }
        drop(gone);
    }
}

// ANCHOR: release
/// Completes the waiter a Task is blocked on, so the Task resumes the `RustFuture`.
fn release(py: Python, waiter: PyObject) {
    let waiter = waiter.as_ref(py);
    if let Ok(false) = waiter.call_method0("done").and_then(PyAny::is_true) {
        if let Err(err) = waiter.call_method1("set_result", (py.None(),)) {
            // PyO3 0.12's `PyErr` has no `write_unraisable`: the C API's, by hand.
            err.restore(py);
            // SAFETY: the GIL is held and `restore` just set the error to report;
            // `waiter` is a live object, only used as the context of the report.
            unsafe { ffi::PyErr_WriteUnraisable(waiter.as_ptr()) };
        }
    }
}
// ANCHOR_END: release

// ANCHOR: loop_waker
/// One per event loop: the queue of woken tasks, and how the loop hears of a batch.
struct LoopWaker {
    queue: WakeQueue<Weak<TaskWaker>>,
    notifier: Notifier,
}

/// How a loop is told that a batch of woken tasks waits (once per batch: `wake`).
enum Notifier {
    /// A socket pair whose receiving end the loop watches with `add_reader`: one byte.
    Socket {
        sender: UnixStream,
        receiver: UnixStream,
    },
    /// The loop has no `add_reader`: one `call_soon_threadsafe(WakeReader)` ([`call_soon`]).
    /// The loop is held through a `weakref.ref` (a reference from Rust would keep it
    /// alive unseen by the garbage collector), itself a [`HeldLoop`]: the last
    /// `TaskWaker` may be dropped on any thread.
    CallSoon { event_loop: HeldLoop },
}

/// The `Waker` of one task: queues it in its loop's `LoopWaker`. No GIL (except for the
/// one call of a [`Notifier::CallSoon`] loop).
struct TaskWaker {
    task: Weak<Task>,
    loop_waker: Arc<LoopWaker>,
    state: TaskState,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let loop_waker = &self.loop_waker;
        if loop_waker.queue.wake(&self.state, || Arc::downgrade(self)) {
            // The first wake of a batch, and no lock held: tell the loop.
            match &loop_waker.notifier {
                // A full buffer means a byte is waiting already.
                Notifier::Socket { sender, .. } => {
                    let _ = { sender }.write(&[1]);
                }
                Notifier::CallSoon { event_loop } => call_soon(loop_waker, event_loop),
            }
        }
    }
}
// ANCHOR_END: loop_waker

// ANCHOR: call_soon
/// Tells a loop without `add_reader` of a batch: `loop.call_soon_threadsafe(reader)`,
/// from whatever thread woke the first task of it. Unlike a byte on a socket this needs
/// the GIL, and taking the GIL on a runtime thread could deadlock if the loop's thread,
/// holding the GIL, waited for that thread. It cannot here:
///
/// * The waker holds no lock of the bridge while it waits for the GIL
///   (`WakeQueue::wake` has released the queue's before this runs), and takes it for
///   this one call only, never while the loop's thread could be waiting on it: the loop
///   thread never blocks on a runtime thread (it polls; it never `block_on`s), and
///   tokio wakes its wakers with its own locks released (timers, channels, semaphores,
///   join handles all collect wakers and wake them after unlocking).
/// * At most one call per batch: only the wake that set `notified` calls; the others of
///   the batch return at once, lock-free, so runtime threads do not queue up on the GIL.
///   The loop clears the flag when it takes the batch.
/// * On the loop's own thread (a future woken while it is polled, or `aclose()` waking a
///   stream) the GIL is held already: the call is an ordinary Python call.
/// * Never into a dying interpreter: not once it is finalizing or finalized (then the
///   wake-up is dropped, as the loop will never run again). PyO3 0.12's `acquire_gil`
///   would initialize an interpreter that is not, or crash on a finalized one.
///
/// A closed loop (asked first with `is_closed()`, or refusing with `RuntimeError`) is
/// skipped silently, as its tasks will never run again; `notified` stays set, so later
/// wakes of that loop do not try again, and the queue holds its tasks only weakly
/// (nothing leaks). Any other refusal is reported as unraisable. A panic is contained:
/// a `Waker` must not unwind into its caller.
fn call_soon(loop_waker: &Arc<LoopWaker>, event_loop: &HeldLoop) {
    let event_loop = match &event_loop.0 {
        Some(event_loop) => event_loop,
        None => return,
    };
    // SAFETY: both only read the runtime's state; callable from any thread, with or
    // without the GIL, at any time in the process's life.
    let usable = unsafe { ffi::Py_IsInitialized() != 0 && ffi::Py_IsFinalizing() == 0 };
    if !usable {
        return;
    }
    let _in_flight = match InFlight::enter() {
        Some(in_flight) => in_flight,
        None => return, // the interpreter is exiting: its loops will not run again
    };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let gil = Python::acquire_gil();
        let py = gil.python();
        let event_loop = match event_loop.as_ref(py).call0() {
            Ok(event_loop) if !event_loop.is_none() => event_loop,
            _ => return, // the loop is gone: nothing of it will run again
        };
        // Asked first, so that the usual refusal raises nothing: an exception raised and
        // dropped here, on the loop's own thread, kept the loop and its Tasks alive for
        // ever on PyPy. (Closed on another thread meanwhile: the call below refuses, and
        // that is handled too.)
        let closed = event_loop.call_method0("is_closed");
        if closed.and_then(PyAny::is_true).unwrap_or(false) {
            return;
        }
        let reader = WakeReader {
            loop_waker: loop_waker.clone(),
        };
        if let Err(err) = event_loop.call_method1("call_soon_threadsafe", (reader,)) {
            let closed = event_loop
                .call_method0("is_closed")
                .and_then(PyAny::is_true)
                .unwrap_or(true);
            if !closed {
                err.restore(py);
                // SAFETY: the GIL is held and `restore` just set the error to report;
                // `event_loop` is a live object, only used as the context of the report.
                unsafe { ffi::PyErr_WriteUnraisable(event_loop.as_ptr()) };
            }
        }
    }));
}
// ANCHOR_END: call_soon

// ANCHOR: exit_gate
/// Runtime threads taking the GIL for [`call_soon`], and whether the interpreter is
/// exiting. The check above is not enough: a thread that checks, then waits for the GIL
/// while the interpreter starts to finalize, gets it when finalizing has begun, and
/// CPython 3.8 to 3.13 then end the thread with `pthread_exit`, a forced unwind through
/// Rust frames that aborts the process ("FATAL: exception not rethrown", seen at exit
/// with futures still completing). So `atexit` runs [`ExitGate`], which closes the gate
/// and waits, with the GIL released, until no thread is inside; Python runs `atexit`
/// callbacks before it marks itself finalizing, so a thread let in always finishes its
/// call. A wake-up after that is dropped: the loops will not run again.
struct ExitState {
    closing: bool,
    in_flight: usize,
}

static EXIT: Mutex<ExitState> = Mutex::new(ExitState {
    closing: false,
    in_flight: 0,
});
static EXIT_EMPTIED: Condvar = Condvar::new();

/// A thread let through the gate; leaving is dropping it.
struct InFlight;

impl InFlight {
    fn enter() -> Option<InFlight> {
        let mut state = lock(&EXIT);
        if state.closing {
            return None;
        }
        state.in_flight += 1;
        Some(InFlight)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = lock(&EXIT);
        state.in_flight -= 1;
        if state.in_flight == 0 {
            EXIT_EMPTIED.notify_all();
        }
    }
}

/// Registered with `atexit` when the first loop without `add_reader` is seen.
#[pyclass(module = "pyo3_0_12_pyproto")]
pub(crate) struct ExitGate {}

#[pymethods]
impl ExitGate {
    #[call]
    fn __call__(&self, py: Python) {
        lock(&EXIT).closing = true;
        py.allow_threads(|| {
            let mut state = lock(&EXIT);
            while state.in_flight > 0 {
                state = EXIT_EMPTIED
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        });
    }
}

/// `weakref.ref(object)`.
fn py_weakref(object: &PyAny) -> PyResult<PyObject> {
    let py = object.py();
    Ok(py
        .import("weakref")?
        .getattr("ref")?
        .call1((object,))?
        .into())
}

/// Registers [`ExitGate`] with `atexit`, once per process (under the GIL, so once).
fn register_exit_gate(py: Python) -> PyResult<()> {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.load(Ordering::Acquire) {
        let gate = Py::new(py, ExitGate {})?;
        py.import("atexit")?.call_method1("register", (gate,))?;
        REGISTERED.store(true, Ordering::Release);
    }
    Ok(())
}
// ANCHOR_END: exit_gate

impl LoopWaker {
    /// A waker notified through a fresh socket pair (to be watched with `add_reader`).
    fn socket() -> std::io::Result<Self> {
        let (sender, receiver) = UnixStream::pair()?;
        sender.set_nonblocking(true)?;
        receiver.set_nonblocking(true)?;
        Ok(LoopWaker {
            queue: WakeQueue::new(),
            notifier: Notifier::Socket { sender, receiver },
        })
    }

    // ANCHOR: run_woken
    /// Run by the loop when notified: polls every woken task. First the notification is
    /// taken (the socket drained; a `call_soon_threadsafe` call is one run), then the
    /// batch (`WakeQueue::take`, whose order keeps wake-ups from being lost).
    fn run_woken(&self, py: Python) {
        let woken = self.queue.take(|| {
            if let Notifier::Socket { receiver, .. } = &self.notifier {
                let mut buffer = [0u8; 64];
                while matches!({ receiver }.read(&mut buffer), Ok(n) if n > 0) {}
            }
        });
        for task_waker in woken.iter().filter_map(Weak::upgrade) {
            if !task_waker.state.begin_poll() {
                continue; // done meanwhile
            }
            if let Some(waiter) = task_waker.task.upgrade().and_then(|task| task.poll_once()) {
                release(py, waiter);
            }
        }
    }
    // ANCHOR_END: run_woken
}

// ANCHOR: wake_reader
/// The callable the event loop runs when a `LoopWaker`'s socket is readable (or, on a
/// loop without `add_reader`, the callable passed to `call_soon_threadsafe`).
#[pyclass(module = "pyo3_0_12_pyproto")]
pub(crate) struct WakeReader {
    loop_waker: Arc<LoopWaker>,
}

#[pymethods]
impl WakeReader {
    #[call]
    fn __call__(&self, py: Python) {
        self.loop_waker.run_woken(py);
    }
}
// ANCHOR_END: wake_reader

// ANCHOR: held_loop
/// The event loop the thread-local below holds, released carefully when the thread exits.
///
/// At thread exit the thread no longer holds the GIL, so dropping a `PyObject` would make
/// PyO3 0.12 queue the decref in its reference pool, and PyO3 0.12 drains that pool in
/// the `tp_traverse` of `gc` classes: the loop would be freed in the middle of a garbage
/// collection, corrupting the collector's lists (a segfault, seen with six loops in six
/// threads on 3.9). So every dropped loop is parked in [`ORPHANED_LOOPS`] instead, and
/// released by this module's own code, with the GIL held and outside any collection.
///
/// Always parked, never dropped here even when the thread seems to hold the GIL: what
/// decides between a decref and a queued one is PyO3's own per-thread GIL count, not the
/// interpreter's state, and at thread exit that count may be zero (or already destroyed)
/// while `PyGILState_Check` says 1 (it always says 1 once a sub-interpreter exists).
struct HeldLoop(Option<PyObject>);

impl Drop for HeldLoop {
    fn drop(&mut self) {
        if let Some(event_loop) = self.0.take() {
            lock(&ORPHANED_LOOPS).push(event_loop.into_ptr() as usize);
        }
    }
}

/// Owned references to loops whose threads ended (see [`HeldLoop`]).
static ORPHANED_LOOPS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Releases the loops parked by ended threads. The GIL must be held.
fn release_orphaned_loops(_py: Python) {
    let orphans = std::mem::take(&mut *lock(&ORPHANED_LOOPS));
    for pointer in orphans {
        // SAFETY: each entry is an owned reference parked by `HeldLoop::drop`, taken out
        // of the list once; the caller holds the GIL.
        unsafe { ffi::Py_DECREF(pointer as *mut ffi::PyObject) };
    }
}
// ANCHOR_END: held_loop

thread_local! {
    /// The running loop of this thread and its `LoopWaker`, from the last await.
    static CURRENT: RefCell<Option<(HeldLoop, Arc<LoopWaker>)>> = const { RefCell::new(None) };
}

// ANCHOR: loop_waker_for
/// The `LoopWaker` of `event_loop`, registered with it on first use in this thread: a
/// socket watched with `add_reader`, or, where the loop has none (`NotImplementedError`,
/// as Windows' Proactor loop), `call_soon_threadsafe`.
fn loop_waker_for(event_loop: &PyAny) -> PyResult<Arc<LoopWaker>> {
    release_orphaned_loops(event_loop.py());
    let known = CURRENT.with_borrow(|current| match current {
        Some((HeldLoop(Some(known)), waker)) if known.as_ptr() == event_loop.as_ptr() => {
            Some(waker.clone())
        }
        _ => None,
    });
    if let Some(known) = known {
        return Ok(known);
    }
    let mut waker = Arc::new(LoopWaker::socket()?);
    if let Notifier::Socket { receiver, .. } = &waker.notifier {
        let reader = WakeReader {
            loop_waker: waker.clone(),
        };
        match event_loop.call_method1("add_reader", (receiver.as_raw_fd(), reader)) {
            Ok(_) => {}
            Err(err) if error_is::<PyNotImplementedError>(event_loop.py(), &err) => {
                register_exit_gate(event_loop.py())?;
                waker = Arc::new(LoopWaker {
                    queue: WakeQueue::new(),
                    notifier: Notifier::CallSoon {
                        event_loop: HeldLoop(Some(py_weakref(event_loop)?)),
                    },
                });
            }
            Err(err) => return Err(err),
        }
    }
    let replaced = CURRENT.with_borrow_mut(|current| {
        current.replace((HeldLoop(Some(event_loop.into())), waker.clone()))
    });
    drop(replaced); // the previous loop: parked outside the `RefCell` borrow...
    release_orphaned_loops(event_loop.py()); // ...and released now, under the GIL
    Ok(waker)
}
// ANCHOR_END: loop_waker_for

// ANCHOR: running_loop
/// asyncio's `_get_running_loop`, and, when it is the C function of `_asyncio` (a
/// `METH_NOARGS` builtin), its C entry point and module, to call it with no call
/// machinery on every first step.
struct GetRunningLoop {
    function: PyObject,
    direct: Option<(ffi::PyCFunction, usize)>,
    /// Where asyncio's answer costs a system call (3.7–3.11): see [`LoopHolder`].
    holder: Option<LoopHolder>,
}

/// The running event loop of this thread, or the error that says there is none.
pub(crate) fn running_loop<'py>(py: Python<'py>) -> PyResult<&'py PyAny> {
    static GET_RUNNING_LOOP: GILOnceCell<GetRunningLoop> = GILOnceCell::new();
    let get = match GET_RUNNING_LOOP.get(py) {
        Some(get) => get,
        None => {
            let function = py.import("asyncio.events")?.getattr("_get_running_loop")?;
            let direct = c_function_without_arguments(function);
            let get = GetRunningLoop {
                holder: LoopHolder::new(py, direct.is_some()),
                direct,
                function: function.into(),
            };
            let _ = GET_RUNNING_LOOP.set(py, get);
            GET_RUNNING_LOOP.get(py).expect("just set")
        }
    };
    if let Some(event_loop) = get.holder.as_ref().and_then(|holder| holder.remembered(py)) {
        return Ok(event_loop);
    }
    let forks = LoopHolder::forks();
    let event_loop: &PyAny = match get.direct {
        // SAFETY: the GIL is held; `function` and `module` are what CPython's own call of
        // the builtin passes to a `METH_NOARGS` function (its module, and NULL); the
        // module is kept alive by the function object, which the static holds. The result
        // is a new reference (owned by the GIL pool), or NULL with the error set.
        Some((function, module)) => unsafe {
            py.from_owned_ptr_or_err(function(module as *mut _, std::ptr::null_mut()))?
        },
        None => get.function.as_ref(py).call0()?,
    };
    if event_loop.is_none() {
        return Err(PyRuntimeError::new_err(
            "a RustFuture needs a running asyncio event loop in this thread: await it \
             inside one (under asyncio.run, say); drive() cannot wait for Rust futures",
        ));
    }
    if let Some(holder) = &get.holder {
        holder.remember(event_loop, forks);
    }
    Ok(event_loop)
}

/// The C entry point and `self` (the module) of a builtin function that takes no
/// arguments; `None` for anything else (asyncio without its C accelerator).
fn c_function_without_arguments(function: &PyAny) -> Option<(ffi::PyCFunction, usize)> {
    // SAFETY: the GIL is held; `function` is live; the accessors are called only on an
    // exact builtin function object, as they require.
    unsafe {
        let f = function.as_ptr();
        if ffi::PyCFunction_Check(f) != 0
            && ffi::PyCFunction_GetFlags(f) & !ffi::METH_COEXIST == ffi::METH_NOARGS
        {
            return ffi::PyCFunction_GetFunction(f)
                .map(|c| (c, ffi::PyCFunction_GetSelf(f) as usize));
        }
    }
    None
}
// ANCHOR_END: running_loop

// ANCHOR: loop_holder
/// Asyncio's answer on CPython 3.7–3.11, without its system call.
///
/// There, the C `_get_running_loop` calls `getpid()` on every call while a loop runs (so
/// that a forked child sees no running loop): a system call per first step of every
/// Rust future and every stream item, longer than a native async generator's whole step
/// on a virtual machine. What it reads is a holder object in the thread state's dict
/// (`__asyncio_running_event_loop__`), which `_set_running_loop` replaces each time a
/// loop starts or stops running in the thread, and whose loop never changes. So while
/// that dict still holds the holder asyncio answered from last time, and the process has
/// not forked since, the answer is the same loop. 3.12 dropped both the `getpid()` call
/// and the holder; there, and without the C accelerator, this is never made.
struct LoopHolder {
    /// The thread state dict's key.
    key: PyObject,
}

/// The last answer of this thread: the holder (a strong reference, so that no other
/// object can take its address while it is compared), its loop, and [`FORKS`] then. Kept
/// until the thread's next new answer, like [`CURRENT`], and released as carefully
/// (both are [`HeldLoop`]s).
struct Remembered {
    holder: HeldLoop,
    event_loop: HeldLoop,
    forks: usize,
}

thread_local! {
    static REMEMBERED: RefCell<Option<Remembered>> = const { RefCell::new(None) };
}

/// How many times the process forked, counted in the child (a `pthread_atfork` handler,
/// run by every `fork()`, `os.fork()` or not), so no loop remembered before a fork is
/// the answer after it.
static FORKS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

impl LoopHolder {
    /// `Some` on CPython before 3.12 when `_get_running_loop` is the C function, and once
    /// the fork handler is registered.
    fn new(py: Python, c_function: bool) -> Option<Self> {
        if !c_function || crate::compat::python_at_least(3, 12) {
            return None;
        }
        static AT_FORK: OnceLock<bool> = OnceLock::new();
        // SAFETY: registers a handler for the child only, which bumps an atomic counter:
        // async-signal-safe, and it cannot panic (no unwinding out of `extern "C"`).
        let registered = *AT_FORK
            .get_or_init(|| unsafe { libc::pthread_atfork(None, None, Some(count_fork)) } == 0);
        if !registered {
            return None;
        }
        let key = pyo3::types::PyString::new(py, "__asyncio_running_event_loop__");
        Some(LoopHolder { key: key.into() })
    }

    fn forks() -> usize {
        FORKS.load(Ordering::Relaxed)
    }

    /// The holder the thread state's dict has now (borrowed), or null.
    fn current(&self, _py: Python) -> *mut ffi::PyObject {
        // SAFETY: the GIL is held; `PyThreadState_GetDict` returns this thread's dict
        // (borrowed) or NULL with no error set, and `PyDict_GetItem` a borrowed reference
        // or NULL, never leaving an error set; the key is a live `str`.
        unsafe {
            let dict = ffi::PyThreadState_GetDict();
            if dict.is_null() {
                return std::ptr::null_mut();
            }
            ffi::PyDict_GetItem(dict, self.key.as_ptr())
        }
    }

    /// The loop asyncio would answer, when it is the one remembered.
    fn remembered<'py>(&self, py: Python<'py>) -> Option<&'py PyAny> {
        let holder = self.current(py);
        REMEMBERED.with_borrow(|remembered| match remembered {
            Some(Remembered {
                holder: HeldLoop(Some(last)),
                event_loop: HeldLoop(Some(event_loop)),
                forks,
            }) if last.as_ptr() == holder && *forks == LoopHolder::forks() => {
                Some(event_loop.clone_ref(py).into_ref(py))
            }
            _ => None,
        })
    }

    /// Remembers `event_loop`, asyncio's answer, made when the process had forked
    /// `forks` times.
    fn remember(&self, event_loop: &PyAny, forks: usize) {
        let py = event_loop.py();
        let holder = self.current(py);
        if holder.is_null() {
            return;
        }
        let new = Remembered {
            // SAFETY: the GIL is held; `holder` is the dict's live (borrowed) reference,
            // of which this takes a new one.
            holder: HeldLoop(Some(unsafe { PyObject::from_borrowed_ptr(py, holder) })),
            event_loop: HeldLoop(Some(event_loop.into())),
            forks,
        };
        let last = REMEMBERED.with_borrow_mut(|remembered| remembered.replace(new));
        drop(last); // parked outside the borrow...
        release_orphaned_loops(py); // ...and released now, under the GIL
    }
}
// ANCHOR_END: loop_holder

// ANCHOR: class
/// A Rust future, awaitable from asyncio.
///
/// Garbage-collected (`gc`): a pending Task holds its `RustFuture`, whose waiter holds
/// the Task's wake-up callback. When the loop closes under it, only the collector can
/// free that cycle, and with it the Rust future.
#[pyclass(module = "pyo3_0_12_pyproto", gc)]
pub struct RustFuture {
    state: State,
    /// Made by [`RustFuture::attempt_first`]: tried on the first step, before a waker,
    /// the runtime or a waiter is made.
    first: Option<Attempt>,
    /// The Rust future on the bridge (`None` while only an attempt is there).
    task: Option<Arc<Task>>,
}
// ANCHOR_END: class

// ANCHOR: attempt
/// What a first attempt found: the output at once, or a Rust future to wait on.
pub(crate) enum Attempted {
    /// Done on the first step: `await` returns this with no thread hop, waker or waiter.
    Ready(PyObject),
    /// Not ready: this future goes on the bridge (made with `new`/`new_with_unclaimed`).
    Wait(RustFuture),
}

/// A first attempt, run once on the loop thread (the running loop already checked):
/// a closure, or a shared object that takes the step itself (no allocation per future).
enum Attempt {
    Closure(Box<dyn FnOnce(Python) -> PyResult<Attempted> + Send>),
    Shared(Arc<dyn FirstStep>),
}

/// What an `Arc` the awaitable holds anyway (a stream's shared state) implements to be
/// its first attempt: [`RustFuture::attempt_first_with`] boxes nothing.
pub(crate) trait FirstStep: Send + Sync {
    fn first_step(self: Arc<Self>, py: Python) -> PyResult<Attempted>;
}
// ANCHOR_END: attempt

impl RustFuture {
    // ANCHOR: new
    /// Wraps any Rust future whose output converts to a Python object.
    pub fn new<F, T>(future: F) -> Self
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: IntoPy<PyObject> + Send + 'static,
    {
        RustFuture::from_boxed(Box::pin(async move {
            let value = future.await?;
            // Polled on the loop thread, which holds the GIL already: this is cheap.
            let gil = Python::acquire_gil();
            Ok(Output::Object(value.into_py(gil.python())))
        }))
    }
    // ANCHOR_END: new

    // ANCHOR: new_with_unclaimed
    /// Wraps a Rust future whose output must not be lost: if the output is ready but the
    /// awaiting Task never collects it (cancelled, closed or collected first),
    /// `give_back(output)` runs instead, with or without the GIL.
    pub fn new_with_unclaimed<F, T, G>(future: F, give_back: G) -> Self
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: IntoPy<PyObject> + Send + 'static,
        G: FnOnce(T) + Send + 'static,
    {
        RustFuture::from_boxed(Box::pin(async move {
            let value = future.await?;
            let unclaimed = GiveBack {
                value: Some(value),
                give_back: Some(give_back),
            };
            Ok(Output::Unclaimed(Box::new(unclaimed)))
        }))
    }
    // ANCHOR_END: new_with_unclaimed

    // ANCHOR: attempt_first
    /// An awaitable whose first step runs `attempt` (on the loop thread, after the check
    /// for a running loop) before anything of the bridge is made: a result that is there
    /// already (a stream's next item, a free permit) is returned by that very step, with
    /// no boxed future, waker, runtime or waiter; otherwise the attempt hands over the
    /// future to wait on, which goes on the bridge in the same step.
    pub(crate) fn attempt_first<A>(attempt: A) -> Self
    where
        A: FnOnce(Python) -> PyResult<Attempted> + Send + 'static,
    {
        RustFuture {
            state: State::Created,
            first: Some(Attempt::Closure(Box::new(attempt))),
            task: None,
        }
    }

    /// [`RustFuture::attempt_first`] with a shared object as the attempt.
    pub(crate) fn attempt_first_with(attempt: Arc<dyn FirstStep>) -> Self {
        RustFuture {
            state: State::Created,
            first: Some(Attempt::Shared(attempt)),
            task: None,
        }
    }
    // ANCHOR_END: attempt_first

    fn from_boxed(boxed: BoxedFuture) -> Self {
        let slot = Slot::Pending {
            future: Counted::new(boxed),
            waker: None,
            waiter: None,
        };
        RustFuture {
            state: State::Created,
            first: None,
            task: Some(Arc::new(Task {
                slot: Mutex::new(slot),
            })),
        }
    }

    /// The bridged task; a future with an attempt only has none until the attempt waits.
    fn task(&self) -> PyResult<&Arc<Task>> {
        self.task.as_ref().ok_or_else(reuse_error)
    }

    // ANCHOR: settle
    /// Ends the coroutine with the future's output, or suspends on a waiter. The slot's
    /// lock is not held while Python code runs.
    fn settle(&mut self, py: Python, event_loop: Option<&PyAny>) -> PyResult<Step> {
        let task = self.task()?.clone();
        let taken = std::mem::replace(&mut *lock(&task.slot), Slot::Gone);
        let (future, waker, waiter) = match taken {
            Slot::Pending {
                future,
                waker,
                waiter,
            } => (future, waker, waiter),
            Slot::Ready(output) => {
                self.state = State::Finished;
                return output.and_then(|output| output.claim(py)).map(Step::Return);
            }
            Slot::Gone => {
                self.state = State::Finished;
                return Err(reuse_error());
            }
        };
        let waiter = match waiter {
            Some(waiter) if !waiter.call_method0(py, "done")?.is_true(py)? => waiter,
            _ => {
                let event_loop = match event_loop {
                    Some(event_loop) => event_loop,
                    None => running_loop(py)?,
                };
                let waiter = event_loop.call_method0("create_future")?;
                // What asyncio's own Future.__await__ sets before yielding itself.
                waiter.setattr("_asyncio_future_blocking", true)?;
                waiter.into()
            }
        };
        *lock(&task.slot) = Slot::Pending {
            future,
            waker,
            waiter: Some(waiter.clone_ref(py)),
        };
        self.state = State::Suspended;
        Ok(Step::Yield(waiter))
    }
    // ANCHOR_END: settle

    /// First step: find the loop, make the attempt if there is one, else (or if it
    /// waits) give the future its waker and poll it.
    fn start(&mut self, py: Python) -> PyResult<Step> {
        let event_loop = running_loop(py)?;
        if let Some(attempt) = self.first.take() {
            let attempted = match attempt {
                Attempt::Closure(attempt) => attempt(py)?,
                Attempt::Shared(attempt) => attempt.first_step(py)?,
            };
            match attempted {
                Attempted::Ready(value) => {
                    self.state = State::Finished;
                    return Ok(Step::Return(value));
                }
                Attempted::Wait(RustFuture { task, .. }) => self.task = task,
            }
        }
        let task = self.task()?.clone();
        let task_waker = Arc::new(TaskWaker {
            task: Arc::downgrade(&task),
            loop_waker: loop_waker_for(event_loop)?,
            state: TaskState::new(),
        });
        if let Slot::Pending { waker, .. } = &mut *lock(&task.slot) {
            *waker = Some((Waker::from(task_waker.clone()), task_waker));
        }
        task.poll_once();
        self.settle(py, Some(event_loop))
    }

    fn step(&mut self, py: Python, sent: &PyAny) -> PyResult<Step> {
        let result = match self.state {
            State::Finished => return Err(reuse_error()),
            State::Running => return Err(already_executing()),
            State::Created if !sent.is_none() => return Err(just_started_error()),
            State::Created => self.start(py),
            State::Suspended => {
                self.task()?.poll_once(); // a resume without a wake-up costs one poll
                self.settle(py, None)
            }
        };
        // A returned value is `Ok(Step::Return)`, not a `StopIteration` to recognise: an
        // `Err` here is always a real error (and no exception is normalised per step).
        if result.is_err() {
            self.end(py);
        }
        result
    }

    fn end(&mut self, py: Python) {
        self.state = State::Finished;
        self.first = None;
        if let Some(task) = &self.task {
            task.discard(py);
        }
    }
}

// ANCHOR: fast_step
/// The hand-filled slots (`slots.rs`): `await` steps a `RustFuture` with no PyO3 slot
/// wrapper, and a returned value leaves as a generator's does.
impl Stepped for RustFuture {
    crate::slots::free_list!();

    fn step(slf: &PyCell<Self>, sent: &PyAny) -> PyResult<Step> {
        borrow_for_step(slf)?.step(slf.py(), sent)
    }
}
// ANCHOR_END: fast_step

// ANCHOR: pymethods
/// PyO3 0.12's `#[pymethods]` turns a `slf: &PyCell<Self>` receiver into an unsafe call
/// (`Python::from_borrowed_ptr`) outside any `unsafe` block, under the receiver's span,
/// in wrapper functions it generates next to the impl; `unsafe_op_in_unsafe_fn` (denied
/// for the workspace) would flag that code of PyO3's. This module holds the impl and
/// nothing else, so the allowance covers nothing of ours.
#[allow(unsafe_op_in_unsafe_fn)]
mod methods {
    use super::*;

    #[pymethods]
    impl RustFuture {
        #[text_signature = "($self, value, /)"]
        fn send(slf: &PyCell<Self>, value: &PyAny) -> PyResult<Step> {
            let py = slf.py();
            borrow_for_step(slf)?
                .step(py, value)?
                .into_method_result(py)
        }

        /// Throwing in (a Task's `CancelledError`, say) drops the Rust future at once.
        #[args(args = "*")]
        #[text_signature = "($self, typ, val=None, tb=None, /)"]
        fn throw(slf: &PyCell<Self>, args: &PyTuple) -> PyResult<PyObject> {
            let py = slf.py();
            check_throw_arguments(args)?;
            let thrown = thrown_exception(args)?;
            let mut this = borrow_for_step(slf)?;
            let started = this.state.started_for_throw()?;
            this.end(py);
            Err(escaping(py, thrown, started))
        }

        #[text_signature = "($self)"]
        fn close(slf: &PyCell<Self>) -> PyResult<()> {
            borrow_for_step(slf)?.end(slf.py());
            Ok(())
        }
    }
}

#[pyproto]
impl PyAsyncProtocol for RustFuture {
    fn __await__(slf: PyRef<Self>) -> PyRef<Self> {
        slf
    }
}

#[pyproto]
impl PyIterProtocol for RustFuture {
    fn __iter__(slf: PyRef<Self>) -> PyRef<Self> {
        slf
    }

    fn __next__(slf: &PyCell<Self>) -> PyResult<Step> {
        let py = slf.py();
        borrow_for_step(slf)?
            .step(py, py.None().as_ref(py))?
            .into_method_result(py)
    }
}

#[pyproto]
impl PyObjectProtocol for RustFuture {
    fn __repr__(&self) -> String {
        format!("<RustFuture {}>", self.state.name())
    }
}

#[pyproto]
impl PyGCProtocol for RustFuture {
    fn __traverse__(&self, visit: PyVisit) -> Result<(), PyTraverseError> {
        // `try_lock`: a collection may start inside `poll_once` (a poll that allocates),
        // which holds the lock. Skipping the visit then only keeps the objects alive.
        let Some(task) = &self.task else {
            return Ok(());
        };
        let slot = match task.slot.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(()),
        };
        match &*slot {
            Slot::Pending {
                waiter: Some(waiter),
                ..
            } => visit.call(waiter),
            Slot::Ready(Ok(Output::Object(value))) => visit.call(value),
            _ => Ok(()),
        }
    }

    fn __clear__(&mut self) {
        self.state = State::Finished;
        self.first = None;
        if let Some(task) = &self.task {
            // `try_lock`, as `__traverse__`: a collection may run inside `poll_once` (a poll
            // that allocates, or calls `call_soon_threadsafe`), which holds the lock. Not
            // clearing then only keeps the cycle for a later collection.
            let gone = match task.slot.try_lock() {
                Ok(mut slot) => slot.end(Slot::Gone),
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().end(Slot::Gone),
                Err(TryLockError::WouldBlock) => return,
            };
            drop(gone); // the waiter, and the Rust future
        }
    }
}
// ANCHOR_END: pymethods

/// Adds `live_futures` to the module (PyO3 0.12's `#[pyfunction]` wrapper is private to
/// this file, so `futures::register` calls this).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(live_futures, m)?)
}
