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
//! own results.
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::IntoPyObjectExt;
use pyo3::{PyTraverseError, PyVisit};

use crate::protocol::{
    already_executing, check_throw_arguments, escaping, just_started_error, panic_error,
    reuse_error, thrown_exception, State, Step,
};
use crate::slots::Stepped;

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

/// Where a Rust future is: still running (with what wakes it and what the awaiting
/// Task waits on), finished (with its output, until the Task collects it), or gone.
enum Slot {
    Pending {
        future: Counted,
        waker: Option<Waker>,
        waiter: Option<Py<PyAny>>,
    },
    Ready(PyResult<Output>),
    Gone,
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
    fn poll_once(&self) -> Option<Py<PyAny>> {
        let mut slot = lock(&self.slot);
        let Slot::Pending {
            future,
            waker: Some(waker),
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
        let finished = std::mem::replace(&mut *slot, Slot::Ready(output));
        drop(slot);
        match finished {
            Slot::Pending { waiter, .. } => waiter,
            _ => None,
        }
    }
    // ANCHOR_END: advance

    /// Drops the future (and cancels the waiter), for `throw`, `close` and errors.
    fn discard(&self, py: Python<'_>) {
        let gone = std::mem::replace(&mut *lock(&self.slot), Slot::Gone);
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
fn release(py: Python<'_>, waiter: Py<PyAny>) {
    let waiter = waiter.bind(py);
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
/// One per event loop: the queue of woken tasks and the socket pair that signals it.
struct LoopWaker {
    queue: Mutex<Vec<Weak<TaskWaker>>>,
    signalled: AtomicBool,
    sender: UnixStream,
    receiver: UnixStream,
}

/// The `Waker` of one task: queues it in its loop's `LoopWaker`. No interpreter lock.
struct TaskWaker {
    task: Weak<Task>,
    loop_waker: Arc<LoopWaker>,
    queued: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return; // already queued, not yet polled
        }
        let loop_waker = &self.loop_waker;
        lock(&loop_waker.queue).push(Arc::downgrade(self));
        if !loop_waker.signalled.swap(true, Ordering::AcqRel) {
            // One byte per batch. A full buffer means a byte is already waiting.
            let _ = (&loop_waker.sender).write(&[1]);
        }
    }
}
// ANCHOR_END: loop_waker

impl LoopWaker {
    fn new() -> std::io::Result<Self> {
        let (sender, receiver) = UnixStream::pair()?;
        sender.set_nonblocking(true)?;
        receiver.set_nonblocking(true)?;
        Ok(LoopWaker {
            queue: Mutex::new(Vec::new()),
            signalled: AtomicBool::new(false),
            sender,
            receiver,
        })
    }

    // ANCHOR: run_woken
    /// Run by the loop when the socket is readable: polls every woken task.
    fn run_woken(&self, py: Python<'_>) {
        // Drain first, then clear the flag, then take the queue: a wake-up after the
        // drain either lands in this batch (flag still set, no byte written) or writes
        // a fresh byte once the flag is clear, so no wake-up is ever lost.
        let mut buffer = [0u8; 64];
        while matches!((&self.receiver).read(&mut buffer), Ok(n) if n > 0) {}
        self.signalled.store(false, Ordering::Release);
        let woken = std::mem::take(&mut *lock(&self.queue));
        for task_waker in woken.iter().filter_map(Weak::upgrade) {
            task_waker.queued.store(false, Ordering::Release);
            if let Some(waiter) = task_waker.task.upgrade().and_then(|task| task.poll_once()) {
                release(py, waiter);
            }
        }
    }
    // ANCHOR_END: run_woken
}

// ANCHOR: wake_reader
/// The callable the event loop runs when a `LoopWaker`'s socket is readable.
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
/// The `LoopWaker` of `event_loop`, registered with it on first use in this thread.
fn loop_waker_for(event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<LoopWaker>> {
    if let Some(known) = CURRENT.with_borrow(|current| match current {
        Some((known, waker)) if known.is(event_loop) => Some(waker.clone()),
        _ => None,
    }) {
        return Ok(known);
    }
    let waker = Arc::new(LoopWaker::new()?);
    let reader = WakeReader {
        loop_waker: waker.clone(),
    };
    event_loop.call_method1("add_reader", (waker.receiver.as_raw_fd(), reader))?;
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
}

/// The running event loop of this thread, or the error that says there is none.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<GetRunningLoop> = PyOnceLock::new();
    let get = GET_RUNNING_LOOP.get_or_try_init(py, || {
        let function = py.import("asyncio.events")?.getattr("_get_running_loop")?;
        Ok::<_, PyErr>(GetRunningLoop {
            direct: c_function_without_arguments(&function),
            function: function.unbind(),
        })
    })?;
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
        let waiter = match waiter {
            Some(waiter) if !waiter.call_method0(py, "done")?.is_truthy(py)? => waiter,
            _ => {
                let event_loop = match event_loop {
                    Some(event_loop) => event_loop.clone(),
                    None => running_loop(py)?,
                };
                let waiter = event_loop.call_method0("create_future")?;
                // What asyncio's own Future.__await__ sets before yielding itself.
                waiter.setattr("_asyncio_future_blocking", true)?;
                waiter.unbind()
            }
        };
        *lock(&task.slot) = Slot::Pending {
            future,
            waker,
            waiter: Some(waiter.clone_ref(py)),
        };
        self.state = State::Suspended;
        Ok(Step::Yield(waiter.into_bound(py)))
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
            queued: AtomicBool::new(false),
        });
        if let Slot::Pending { waker, .. } = &mut *lock(&task.slot) {
            *waker = Some(Waker::from(task_waker));
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
fn release_now(py: Python<'_>, waiter: Option<Py<PyAny>>) {
    drop(waiter.map(|waiter| waiter.into_bound(py)));
}

// ANCHOR: fast_step
/// The hand-filled slots (`slots.rs`): `await` steps a `RustFuture` with no PyO3 method
/// trampoline, and a returned value leaves as a generator's does.
impl Stepped for RustFuture {
    fn step<'py>(slf: &Bound<'py, Self>, sent: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
        let mut this = slf.try_borrow_mut().map_err(|_| already_executing())?;
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
        let mut this = slf.try_borrow_mut().map_err(|_| already_executing())?;
        this.step(py, py.None().bind(py))?.into_method_result()
    }

    #[pyo3(signature = (value, /))]
    fn send(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut this = slf.try_borrow_mut().map_err(|_| already_executing())?;
        this.step(slf.py(), value)?.into_method_result()
    }

    /// Throwing in (a Task's `CancelledError`, say) drops the Rust future at once.
    #[pyo3(signature = (*args), text_signature = "($self, typ, val=None, tb=None, /)")]
    fn throw(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        check_throw_arguments(args)?;
        let thrown = thrown_exception(args)?;
        let mut this = slf.try_borrow_mut().map_err(|_| already_executing())?;
        let started = this.state.started_for_throw()?;
        this.end(py);
        Err(escaping(py, thrown, started))
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let mut this = slf.try_borrow_mut().map_err(|_| already_executing())?;
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
                } => visit.call(waiter)?,
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
            let gone = std::mem::replace(&mut *lock(&task.slot), Slot::Gone);
            drop(gone);
        }
    }
}
// ANCHOR_END: pymethods
