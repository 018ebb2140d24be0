//! The hand-written bridge: any Rust `Future` as a Python awaitable, `RustFuture`.
//!
//! Where the future runs: on the event loop's own thread. Awaiting a `RustFuture` polls
//! its future right there; if it is ready at once, the value comes back with no thread
//! hop at all. If not, the awaiting Task is handed an asyncio future (a "waiter") to wait
//! on, and the Rust future keeps a `Waker`. Whoever wakes it (a tokio timer, a worker
//! thread) does not touch Python: the waker only queues the task in its loop's
//! `LoopWaker` and writes one byte to a socket the loop watches (`add_reader`). The loop
//! then calls back into Rust, which polls every queued future and completes the waiters
//! of those that are done. So runtime threads never take the interpreter lock, one loop
//! wake-up serves any number of completions, and each loop (one per thread) gets its
//! own results. When to queue and when to notify is the protocol of [`crate::wake`],
//! kept free of Python so that a model checker can run it.
//!
//! A loop without `add_reader` (Windows' default Proactor loop raises
//! `NotImplementedError`) is notified with `call_soon_threadsafe` instead: still once
//! per batch, but the waking thread then takes the interpreter lock for that one call
//! (see [`call_soon`]).
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
//! no Python: the value is converted only when collected.

use std::cell::RefCell;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::task::{Context, Poll, Wake, Waker};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use pyo3::{PyTraverseError, PyVisit};

use crate::protocol::{
    already_executing, borrow_for_step, check_throw_arguments, escaping, just_started_error,
    panic_error, reuse_error, thrown_exception, State, Step,
};
use crate::slots::Stepped;
use crate::wake::{TaskState, WakeQueue};

/// A Rust future producing an [`Output`], boxed so that one class can hold any of them.
type BoxedFuture = Pin<Box<dyn Future<Output = PyResult<Output>> + Send>>;

// ANCHOR: give_back
/// What a finished future leaves in its slot for the awaiting Task to collect.
enum Output {
    /// Converted already, on the loop thread ([`RustFuture::new`]).
    Object(Py<PyAny>),
    /// Still a Rust value: converted when collected, handed back if it is dropped
    /// instead ([`RustFuture::new_with_unclaimed`]).
    Unclaimed(Box<dyn Unclaimed>),
}

impl Output {
    /// The Task collects the output: as a Python object.
    fn claim(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Output::Object(value) => Ok(value),
            Output::Unclaimed(unclaimed) => unclaimed.claim(py),
        }
    }
}

/// A Rust value that gives itself back when dropped without being claimed.
trait Unclaimed: Send {
    /// The value as a Python object; after this, dropping gives nothing back.
    fn claim(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

/// A value and the function that takes it back if nobody claims it (both `Some` until
/// claimed or given back).
struct GiveBack<T, G: FnOnce(T)> {
    value: Option<T>,
    give_back: Option<G>,
}

impl<T, G> Unclaimed for GiveBack<T, G>
where
    T: for<'py> IntoPyObject<'py> + Send,
    G: FnOnce(T) + Send,
{
    fn claim(mut self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.value.take() {
            Some(value) => value.into_py_any(py),
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

// ANCHOR: waiter
/// The asyncio future the awaiting Task waits on. Its done-callbacks hold the Task, the
/// Task holds this `RustFuture`: a cycle through an extension object. CPython's collector
/// sees it through `__traverse__`. PyPy's never frees a cycle through an extension
/// object that holds a Python object with a `__del__` (asyncio's Future and Task have
/// one), so a Task abandoned with its loop closed would be kept for ever, with its Rust
/// future (and a semaphore permit it holds). There the waiter is held weakly: the Task
/// holds it strongly (`_fut_waiter`) for as long as it waits on it, and a waiter nobody
/// else holds has no Task left to wake.
struct Waiter {
    #[cfg(not(PyPy))]
    future: Py<PyAny>,
    #[cfg(PyPy)]
    future: Py<pyo3::types::PyWeakrefReference>,
}

impl Waiter {
    fn new(future: &Bound<'_, PyAny>) -> PyResult<Self> {
        #[cfg(not(PyPy))]
        let future = future.clone().unbind();
        #[cfg(PyPy)]
        let future = pyo3::types::PyWeakrefReference::new(future)?.unbind();
        Ok(Waiter { future })
    }

    /// The future, unless (on PyPy) it is gone with its Task.
    fn get<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        #[cfg(not(PyPy))]
        {
            Some(self.future.bind(py).clone())
        }
        #[cfg(PyPy)]
        {
            use pyo3::types::PyWeakrefMethods;
            self.future.bind(py).upgrade()
        }
    }
}
// ANCHOR_END: waiter

/// Where a Rust future is: still running (with what wakes it and what the awaiting
/// Task waits on), finished (with its output, until the Task collects it), or gone.
enum Slot {
    Pending {
        future: Counted,
        /// The future's `Waker`, and the same `TaskWaker` typed (for its flags).
        waker: Option<(Waker, Arc<TaskWaker>)>,
        waiter: Option<Waiter>,
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
    fn poll_once(&self) -> Option<Waiter> {
        let mut slot = lock(&self.slot);
        let Slot::Pending {
            future,
            waker: Some((waker, _)),
            ..
        } = &mut *slot
        else {
            return None;
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
    fn discard(&self, py: Python<'_>) {
        let gone = lock(&self.slot).end(Slot::Gone);
        if let Slot::Pending {
            waiter: Some(waiter),
            ..
        } = &gone
        {
            if let Some(waiter) = waiter.get(py) {
                let _ = waiter.call_method0("cancel");
            }
        }
        drop(gone);
    }
}

// ANCHOR: release
/// Completes the waiter a Task is blocked on, so the Task resumes the `RustFuture`.
fn release(py: Python<'_>, waiter: Waiter) {
    let Some(waiter) = waiter.get(py) else {
        return; // gone with its Task (PyPy): nobody waits
    };
    let waiter = &waiter;
    if let Ok(false) = waiter
        .call_method0("done")
        .and_then(|done| done.is_truthy())
    {
        if let Err(err) = waiter.call_method1("set_result", (py.None(),)) {
            err.write_unraisable(py, Some(waiter));
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
    /// The loop is held through a `weakref.ref`: a reference from Rust would keep it
    /// alive unseen by the garbage collector (on PyPy, for ever).
    CallSoon { event_loop: Py<PyAny> },
}

/// The `Waker` of one task: queues it in its loop's `LoopWaker`. No interpreter lock
/// (except for the one call of a [`Notifier::CallSoon`] loop).
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
/// the interpreter, and taking the interpreter lock on a runtime thread could deadlock
/// if the loop's thread, holding the lock, waited for that thread. It cannot here:
///
/// * The waker holds no lock of the bridge while it waits for the interpreter
///   (`WakeQueue::wake` has released the queue's before this runs), and takes it for
///   this one call only, never while the loop's thread could be waiting on it: the loop
///   thread never blocks on a runtime thread (it polls; it never `block_on`s), and
///   tokio wakes its wakers with its own locks released (timers, channels, semaphores,
///   join handles all collect wakers and wake them after unlocking).
/// * At most one call per batch: only the wake that set `notified` calls; the others of
///   the batch return at once, lock-free, so runtime threads do not queue up on the
///   interpreter lock. The loop clears the flag when it takes the batch.
/// * On the loop's own thread (a future woken while it is polled, or `aclose()` waking a
///   stream) the thread is attached already: the call is an ordinary Python call.
/// * Never into a dying interpreter: `try_attach` declines while it finalizes (then the
///   wake-up is dropped, as the loop will never run again).
///
/// A closed loop (asked first with `is_closed()`, or refusing with `RuntimeError`) is
/// skipped silently, as its tasks will never run again; `notified` stays set, so later
/// wakes of that loop do not try again, and the queue holds its tasks only weakly
/// (nothing leaks). Any other refusal is reported as unraisable. A panic is contained:
/// a `Waker` must not unwind into its caller.
fn call_soon(loop_waker: &Arc<LoopWaker>, event_loop: &Py<PyAny>) {
    let Some(_in_flight) = InFlight::enter() else {
        return; // the interpreter is exiting: its loops will not run again
    };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        Python::try_attach(|py| {
            let event_loop = match event_loop.bind(py).call0() {
                Ok(event_loop) if !event_loop.is_none() => event_loop,
                _ => return, // the loop is gone: nothing of it will run again
            };
            let event_loop = &event_loop;
            // Asked first, so that the usual refusal raises nothing: an exception raised
            // and dropped here, on the loop's own thread, kept the loop and its Tasks
            // alive for ever on PyPy. (Closed on another thread meanwhile: the call
            // below refuses, and that is handled too.)
            let closed = event_loop.call_method0("is_closed");
            if closed
                .and_then(|closed| closed.is_truthy())
                .unwrap_or(false)
            {
                return;
            }
            let reader = WakeReader {
                loop_waker: loop_waker.clone(),
            };
            if let Err(err) = event_loop.call_method1("call_soon_threadsafe", (reader,)) {
                let closed = event_loop
                    .call_method0("is_closed")
                    .and_then(|closed| closed.is_truthy())
                    .unwrap_or(true);
                if !closed {
                    err.write_unraisable(py, Some(event_loop));
                }
            }
        })
    }));
}
// ANCHOR_END: call_soon

// ANCHOR: exit_gate
/// Runtime threads taking the interpreter lock for [`call_soon`], and whether the
/// interpreter is exiting. `try_attach` alone is not enough: a thread that checks, then
/// waits for the lock while the interpreter starts to finalize, gets it when finalizing
/// has begun, and CPython 3.8 to 3.13 then end the thread with `pthread_exit`, a forced
/// unwind through Rust frames that aborts the process ("FATAL: exception not rethrown",
/// seen at exit with futures still completing). So `atexit` runs [`ExitGate`], which
/// closes the gate and waits, with the lock released, until no thread is inside; Python
/// runs `atexit` callbacks before it marks itself finalizing, so a thread let in always
/// finishes its call. A wake-up after that is dropped: the loops will not run again.
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
#[pyclass(module = "pyo3_modern_pymethods", frozen)]
struct ExitGate;

#[pymethods]
impl ExitGate {
    fn __call__(&self, py: Python<'_>) {
        lock(&EXIT).closing = true;
        py.detach(|| {
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
fn py_weakref(object: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = object.py();
    Ok(py
        .import("weakref")?
        .getattr("ref")?
        .call1((object,))?
        .unbind())
}

/// Registers [`ExitGate`] with `atexit`, once per process.
fn register_exit_gate(py: Python<'_>) -> PyResult<()> {
    static REGISTERED: PyOnceLock<()> = PyOnceLock::new();
    REGISTERED
        .get_or_try_init(py, || {
            py.import("atexit")?
                .call_method1("register", (Bound::new(py, ExitGate)?,))
                .map(drop)
        })
        .map(drop)
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
    fn run_woken(&self, py: Python<'_>) {
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
#[pyclass(module = "pyo3_modern_pymethods", frozen)]
struct WakeReader {
    loop_waker: Arc<LoopWaker>,
}

#[pymethods]
impl WakeReader {
    fn __call__(&self, py: Python<'_>) {
        self.loop_waker.run_woken(py);
    }
}
// ANCHOR_END: wake_reader

thread_local! {
    /// The running loop of this thread and its `LoopWaker`, from the last await.
    static CURRENT: RefCell<Option<(Py<PyAny>, Arc<LoopWaker>)>> = const { RefCell::new(None) };
}

// ANCHOR: loop_waker_for
/// The `LoopWaker` of `event_loop`, registered with it on first use in this thread: a
/// socket watched with `add_reader`, or, where the loop has none (`NotImplementedError`,
/// as Windows' Proactor loop), `call_soon_threadsafe`.
fn loop_waker_for(event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<LoopWaker>> {
    if let Some(known) = CURRENT.with_borrow(|current| match current {
        Some((known, waker)) if known.is(event_loop) => Some(waker.clone()),
        _ => None,
    }) {
        return Ok(known);
    }
    let mut waker = Arc::new(LoopWaker::socket()?);
    if let Notifier::Socket { receiver, .. } = &waker.notifier {
        let reader = WakeReader {
            loop_waker: waker.clone(),
        };
        let add_reader = event_loop.getattr("add_reader")?;
        let args = (receiver.as_raw_fd(), reader).into_pyobject(event_loop.py())?;
        // `None`: NotImplementedError, a loop without `add_reader`.
        if crate::compat::call_unless_not_implemented(&add_reader, &args)?.is_none() {
            register_exit_gate(event_loop.py())?;
            waker = Arc::new(LoopWaker {
                queue: WakeQueue::new(),
                notifier: Notifier::CallSoon {
                    event_loop: py_weakref(event_loop)?,
                },
            });
        }
    }
    CURRENT
        .with_borrow_mut(|current| *current = Some((event_loop.clone().unbind(), waker.clone())));
    Ok(waker)
}
// ANCHOR_END: loop_waker_for

// ANCHOR: running_loop
/// asyncio's `_get_running_loop`, and, when it is the C function of `_asyncio` (a
/// `METH_NOARGS` builtin), its C entry point and module, to call it with no call
/// machinery on every first step.
struct GetRunningLoop {
    function: Py<PyAny>,
    direct: Option<(pyo3::ffi::PyCFunction, usize)>,
    /// Where asyncio's answer costs a system call (3.9–3.11): see [`LoopHolder`].
    holder: Option<LoopHolder>,
}

/// The running event loop of this thread, or the error that says there is none.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<GetRunningLoop> = PyOnceLock::new();
    let get = GET_RUNNING_LOOP.get_or_try_init(py, || {
        let function = py.import("asyncio.events")?.getattr("_get_running_loop")?;
        let direct = c_function_without_arguments(&function);
        Ok::<_, PyErr>(GetRunningLoop {
            holder: LoopHolder::new(py, direct.is_some()),
            direct,
            function: function.unbind(),
        })
    })?;
    if let Some(event_loop) = get.holder.as_ref().and_then(|holder| holder.remembered(py)) {
        return Ok(event_loop);
    }
    let forks = LoopHolder::forks();
    let event_loop = match get.direct {
        // SAFETY: attached; `function` and `module` are what CPython's own call of the
        // builtin passes to a `METH_NOARGS` function (its module, and NULL); the module is
        // kept alive by the function object, which the static holds. The result is a new
        // reference, or NULL with the error set.
        Some((function, module)) => unsafe {
            Bound::from_owned_ptr_or_err(py, function(module as *mut _, std::ptr::null_mut()))?
        },
        None => get.function.bind(py).call0()?,
    };
    if event_loop.is_none() {
        return Err(PyRuntimeError::new_err(
            "a RustFuture needs a running asyncio event loop in this thread: await it \
             inside one (under asyncio.run, say); drive() cannot wait for Rust futures",
        ));
    }
    if let Some(holder) = &get.holder {
        holder.remember(&event_loop, forks);
    }
    Ok(event_loop)
}

/// The C entry point and `self` (the module) of a builtin function that takes no
/// arguments; `None` for anything else (asyncio without its C accelerator, PyPy).
fn c_function_without_arguments(
    function: &Bound<'_, PyAny>,
) -> Option<(pyo3::ffi::PyCFunction, usize)> {
    #[cfg(not(PyPy))]
    // SAFETY: attached; `function` is live; the accessors are called only on an exact
    // builtin function object, as they require.
    unsafe {
        use pyo3::ffi;
        let f = function.as_ptr();
        if ffi::PyCFunction_CheckExact(f) != 0
            && ffi::PyCFunction_GetFlags(f) & !ffi::METH_COEXIST == ffi::METH_NOARGS
        {
            return ffi::PyCFunction_GetFunction(f)
                .map(|c| (c, ffi::PyCFunction_GetSelf(f) as usize));
        }
    }
    let _ = function;
    None
}
// ANCHOR_END: running_loop

// ANCHOR: loop_holder
/// Asyncio's answer on CPython 3.9–3.11, without its system call.
///
/// There, the C `_get_running_loop` calls `getpid()` on every call while a loop runs (so
/// that a forked child sees no running loop): a system call per first step of every
/// Rust future and every stream item, longer than a native async generator's whole step
/// on a virtual machine. What it reads is a holder object in the thread state's dict
/// (`__asyncio_running_event_loop__`), which `_set_running_loop` replaces each time a
/// loop starts or stops running in the thread, and whose loop never changes. So while
/// that dict still holds the holder asyncio answered from last time, and the process has
/// not forked since, the answer is the same loop. 3.12 dropped both the `getpid()` call
/// and the holder; there, on PyPy and without the C accelerator, this is never made.
struct LoopHolder {
    /// The thread state dict's key.
    key: Py<PyString>,
}

/// The last answer of this thread: the holder (a strong reference, so that no other
/// object can take its address while it is compared), its loop, and [`FORKS`] then. Kept
/// until the thread's next new answer, like [`CURRENT`].
struct Remembered {
    holder: Py<PyAny>,
    event_loop: Py<PyAny>,
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
    fn new(py: Python<'_>, c_function: bool) -> Option<Self> {
        if cfg!(PyPy) || !c_function || py.version_info() >= (3, 12) {
            return None;
        }
        static AT_FORK: OnceLock<bool> = OnceLock::new();
        // SAFETY: registers a handler for the child only, which bumps an atomic counter:
        // async-signal-safe, and it cannot panic (no unwinding out of `extern "C"`).
        let registered = *AT_FORK
            .get_or_init(|| unsafe { libc::pthread_atfork(None, None, Some(count_fork)) } == 0);
        registered.then(|| LoopHolder {
            key: PyString::intern(py, "__asyncio_running_event_loop__").unbind(),
        })
    }

    fn forks() -> usize {
        FORKS.load(Ordering::Relaxed)
    }

    /// The holder the thread state's dict has now (borrowed), or null.
    fn current(&self, _py: Python<'_>) -> *mut pyo3::ffi::PyObject {
        // SAFETY: attached; `PyThreadState_GetDict` returns this thread's dict (borrowed)
        // or NULL with no error set, and `PyDict_GetItem` a borrowed reference or NULL,
        // never leaving an error set; the key is a live `str`.
        unsafe {
            let dict = pyo3::ffi::PyThreadState_GetDict();
            if dict.is_null() {
                return std::ptr::null_mut();
            }
            pyo3::ffi::PyDict_GetItem(dict, self.key.as_ptr())
        }
    }

    /// The loop asyncio would answer, when it is the one remembered.
    fn remembered<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let holder = self.current(py);
        REMEMBERED.with_borrow(|remembered| match remembered {
            Some(last) if last.holder.as_ptr() == holder && last.forks == LoopHolder::forks() => {
                Some(last.event_loop.bind(py).clone())
            }
            _ => None,
        })
    }

    /// Remembers `event_loop`, asyncio's answer, made when the process had forked
    /// `forks` times.
    fn remember(&self, event_loop: &Bound<'_, PyAny>, forks: usize) {
        let py = event_loop.py();
        let holder = self.current(py);
        if holder.is_null() {
            return;
        }
        let new = Remembered {
            // SAFETY: attached; `holder` is the dict's live (borrowed) reference, of
            // which this takes a new one.
            holder: unsafe { Bound::from_borrowed_ptr(py, holder) }.unbind(),
            event_loop: event_loop.clone().unbind(),
            forks,
        };
        let last = REMEMBERED.with_borrow_mut(|remembered| remembered.replace(new));
        drop(last); // outside the borrow: releasing a loop may run Python code
    }
}
// ANCHOR_END: loop_holder

// ANCHOR: class
/// A Rust future, awaitable from asyncio.
#[pyclass(module = "pyo3_modern_pymethods")]
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
    Ready(Py<PyAny>),
    /// Not ready: this future goes on the bridge (made with `new`/`new_with_unclaimed`).
    Wait(RustFuture),
}

/// A first attempt, run once on the loop thread (the running loop already checked):
/// a closure, or a shared object that takes the step itself (no allocation per future).
enum Attempt {
    Closure(Box<dyn FnOnce(Python<'_>) -> PyResult<Attempted> + Send + Sync>),
    Shared(Arc<dyn FirstStep>),
}

/// What an `Arc` the awaitable holds anyway (a stream's shared state) implements to be
/// its first attempt: [`RustFuture::attempt_first_with`] boxes nothing.
pub(crate) trait FirstStep: Send + Sync {
    fn first_step(self: Arc<Self>, py: Python<'_>) -> PyResult<Attempted>;
}
// ANCHOR_END: attempt

impl RustFuture {
    // ANCHOR: new
    /// Wraps any Rust future whose output converts to a Python object.
    pub fn new<F, T>(future: F) -> Self
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        RustFuture::from_boxed(Box::pin(async move {
            let value = future.await?;
            Python::attach(|py| value.into_py_any(py)).map(Output::Object)
        }))
    }
    // ANCHOR_END: new

    // ANCHOR: new_with_unclaimed
    /// Wraps a Rust future whose output must not be lost: if the output is ready but the
    /// awaiting Task never collects it (cancelled, closed or collected first),
    /// `give_back(output)` runs instead, with or without the interpreter lock.
    pub fn new_with_unclaimed<F, T, G>(future: F, give_back: G) -> Self
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + Send + 'static,
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
        A: FnOnce(Python<'_>) -> PyResult<Attempted> + Send + Sync + 'static,
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
    fn settle<'py>(
        &mut self,
        py: Python<'py>,
        event_loop: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Step<'py>> {
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
                let value = output.and_then(|output| output.claim(py))?;
                return Ok(Step::Return(value.into_bound(py)));
            }
            Slot::Gone => {
                self.state = State::Finished;
                return Err(reuse_error());
            }
        };
        let waiter = match waiter.and_then(|waiter| waiter.get(py)) {
            Some(waiter) if !waiter.call_method0("done")?.is_truthy()? => waiter,
            _ => {
                let event_loop = match event_loop {
                    Some(event_loop) => event_loop.clone(),
                    None => running_loop(py)?,
                };
                let waiter = event_loop.call_method0("create_future")?;
                // What asyncio's own Future.__await__ sets before yielding itself.
                waiter.setattr("_asyncio_future_blocking", true)?;
                waiter
            }
        };
        let held = match Waiter::new(&waiter) {
            Ok(held) => held,
            Err(err) => {
                *lock(&task.slot) = Slot::Pending {
                    future,
                    waker,
                    waiter: None,
                };
                return Err(err);
            }
        };
        *lock(&task.slot) = Slot::Pending {
            future,
            waker,
            waiter: Some(held),
        };
        self.state = State::Suspended;
        Ok(Step::Yield(waiter))
    }
    // ANCHOR_END: settle

    /// First step: find the loop, make the attempt if there is one, else (or if it
    /// waits) give the future its waker and poll it.
    fn start<'py>(&mut self, py: Python<'py>) -> PyResult<Step<'py>> {
        let event_loop = running_loop(py)?;
        if let Some(attempt) = self.first.take() {
            let attempted = match attempt {
                Attempt::Closure(attempt) => attempt(py)?,
                Attempt::Shared(attempt) => attempt.first_step(py)?,
            };
            match attempted {
                Attempted::Ready(value) => {
                    self.state = State::Finished;
                    return Ok(Step::Return(value.into_bound(py)));
                }
                Attempted::Wait(RustFuture { task, .. }) => self.task = task,
            }
        }
        let task = self.task()?.clone();
        let task_waker = Arc::new(TaskWaker {
            task: Arc::downgrade(&task),
            loop_waker: loop_waker_for(&event_loop)?,
            state: TaskState::new(),
        });
        if let Slot::Pending { waker, .. } = &mut *lock(&task.slot) {
            *waker = Some((Waker::from(task_waker.clone()), task_waker));
        }
        release_now(py, task.poll_once());
        self.settle(py, Some(&event_loop))
    }

    fn step<'py>(&mut self, py: Python<'py>, sent: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
        let result = match self.state {
            State::Finished => return Err(reuse_error()),
            State::Running => return Err(already_executing()),
            State::Created if !sent.is_none() => return Err(just_started_error()),
            State::Created => self.start(py),
            State::Suspended => {
                // A resume without a wake-up costs one poll.
                release_now(py, self.task()?.poll_once());
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

    fn end(&mut self, py: Python<'_>) {
        self.state = State::Finished;
        self.first = None;
        if let Some(task) = &self.task {
            task.discard(py);
        }
    }
}

/// Releases a waiter a poll returned (nobody waits on it any more: the Task is right
/// here) through a `Bound`, at once even inside a hand-filled slot (see `slots.rs`).
fn release_now(py: Python<'_>, waiter: Option<Waiter>) {
    drop(waiter.map(|waiter| waiter.future.into_bound(py)));
}

// ANCHOR: fast_step
/// The hand-filled slots (`slots.rs`): `await` steps a `RustFuture` with no PyO3 method
/// trampoline, and a returned value leaves as a generator's does.
impl Stepped for RustFuture {
    crate::slots::free_list!();

    fn step<'py>(slf: &Bound<'py, Self>, sent: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
        let mut this = borrow_for_step(slf)?;
        this.step(slf.py(), sent)
    }
}
// ANCHOR_END: fast_step

// ANCHOR: pymethods
#[pymethods]
impl RustFuture {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut this = borrow_for_step(slf)?;
        this.step(py, py.None().bind(py))?.into_method_result()
    }

    #[pyo3(signature = (value, /))]
    fn send(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut this = borrow_for_step(slf)?;
        this.step(slf.py(), value)?.into_method_result()
    }

    /// Throwing in (a Task's `CancelledError`, say) drops the Rust future at once.
    #[pyo3(signature = (*args), text_signature = "($self, typ, val=None, tb=None, /)")]
    fn throw(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        check_throw_arguments(args)?;
        let thrown = thrown_exception(args)?;
        let mut this = borrow_for_step(slf)?;
        let started = this.state.started_for_throw()?;
        this.end(py);
        Err(escaping(py, thrown, started))
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let mut this = borrow_for_step(slf)?;
        this.end(slf.py());
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("<RustFuture {}>", self.state.name())
    }

    /// The waiter's done-callbacks reference the awaiting Task, which references this
    /// object: the garbage collector must see that edge to free an abandoned Task.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(task) = &self.task else {
            return Ok(());
        };
        if let Ok(slot) = task.slot.try_lock() {
            match &*slot {
                Slot::Pending {
                    waiter: Some(waiter),
                    ..
                } => visit.call(&waiter.future)?,
                Slot::Ready(Ok(Output::Object(value))) => visit.call(value)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.state = State::Finished;
        self.first = None;
        if let Some(task) = &self.task {
            // `try_lock`: a collection may run inside `poll_once` (a poll that allocates, or
            // calls `call_soon_threadsafe`), which holds the lock. Not clearing then only
            // keeps the cycle for a later collection.
            let gone = match task.slot.try_lock() {
                Ok(mut slot) => slot.end(Slot::Gone),
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().end(Slot::Gone),
                Err(TryLockError::WouldBlock) => return,
            };
            drop(gone);
        }
    }
}
// ANCHOR_END: pymethods
