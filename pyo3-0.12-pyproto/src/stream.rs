//! Rust streams as Python async iterators: `RustStream` (`__aiter__`/`__anext__` of
//! PyO3 0.12's `PyAsyncProtocol`, `aclose`), made by `ticks` (tokio's timer) and
//! `primes` (a worker thread and a bounded channel), and `live_streams`.
//!
//! Each `__anext__()` is a `RustFuture` (the bridge) that polls the stream on the loop
//! thread: a ready item costs no thread hop and no waiter. What keeps the stream whole:
//!
//! * One `__anext__` at a time: the first step of an `__anext__` awaitable marks the
//!   stream busy ([`Busy`]) until its item is collected, given back or never came; a
//!   second one awaited meanwhile raises `RuntimeError` and disturbs nothing.
//! * No item lost to a cancellation: the item travels to the awaiting Task as a Rust
//!   value ([`Delivery`]) and, if the Task is cancelled before it takes it, the bridge
//!   hands it back ([`Delivery::give_back`]) to the front of the stream, where the next
//!   `__anext__` finds it first. A timer or a channel being polled is not lost either:
//!   it lives in the stream, not in the `__anext__` future.
//! * Stopped promptly: `aclose()`, the end of the stream, and the last reference going
//!   (the garbage collector too) drop the Rust stream, which stops a `primes` worker.
//!
//! PyO3 0.12: the worker hands a panic over as its message, not as a `PyErr`: 0.12's
//! `new_err` takes the GIL and holds the exception type, which a thread that must not
//! touch Python could then drop without the GIL (a deferred decref, drained by PyO3
//! 0.12 inside a `tp_traverse`). The `PanicException` is made on the loop thread.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use pyo3::class::pyasync::IterANextOutput;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyValueError};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::{wrap_pyfunction, PyAsyncProtocol, PyObjectProtocol};

use crate::bridge::{runtime, Attempted, FirstStep, RustFuture};
use crate::protocol::{int_argument, panic_message, IntArg};
use crate::sieve::{Segments, MAX_BELOW, STREAM_SEGMENT};

/// What every stream of this module yields: `ticks` and `primes` give non-negative ints.
type Item = u64;

/// A Rust stream, boxed so that one class can hold any of them. An `Err` item is raised
/// by the `__anext__` that gets it (a worker's panic, say).
type BoxedStream = Pin<Box<dyn Stream<Item = PyResult<Item>> + Send>>;

static LIVE_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// How many Rust streams of this module are alive right now.
#[pyfunction]
#[text_signature = "()"]
pub fn live_streams() -> usize {
    LIVE_STREAMS.load(Ordering::SeqCst)
}

/// A Rust stream, counted by `live_streams()` while it exists.
struct Counted(BoxedStream);

impl Counted {
    fn new(stream: BoxedStream) -> Self {
        LIVE_STREAMS.fetch_add(1, Ordering::SeqCst);
        Counted(stream)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE_STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a `RustStream` and its `__anext__` futures share.
struct Shared {
    /// The Rust stream; `None` once exhausted or closed.
    stream: Option<Counted>,
    /// An item handed back by a cancelled `__anext__`: the next one takes it first.
    front: Option<Item>,
    /// An `__anext__` is under way (from its first step until its item is collected or
    /// given back).
    busy: bool,
    /// `aclose()` was awaited: nothing is given back any more.
    closed: bool,
    /// The waker of the pending `__anext__`, woken by `aclose()` so that it ends.
    waker: Option<Waker>,
}

/// A lock that survives a panic in another holder (every change is an assignment).
fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What `StopAsyncIteration` the awaitable of an exhausted or closed stream raises.
fn exhausted() -> PyErr {
    PyStopAsyncIteration::new_err(())
}

// ANCHOR: busy
/// The one `__anext__` under way: the stream is busy while this exists.
struct Busy(Arc<Mutex<Shared>>);

impl Busy {
    /// The first step of an `__anext__`, under one lock: the next item if one is ready
    /// (the one handed back first, else the stream's, polled with a waker that does
    /// nothing), and the stream is never marked busy; else the stream marked busy, and
    /// the guard to wait with. Fails as CPython's async generators do when one is busy.
    fn claim_unless_ready(shared: &Arc<Mutex<Shared>>) -> PyResult<Result<Item, Busy>> {
        let mut state = lock(shared);
        if state.busy {
            return Err(PyRuntimeError::new_err(
                "anext(): asynchronous generator is already running",
            ));
        }
        if let Some(item) = state.front.take() {
            return Ok(Ok(item));
        }
        let Some(stream) = state.stream.as_mut() else {
            return Err(exhausted());
        };
        match stream
            .0
            .as_mut()
            .poll_next(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Some(item)) => item.map(Ok),
            Poll::Ready(None) => {
                let ended = state.stream.take(); // live_streams() falls at the end
                drop(state);
                drop(ended);
                Err(exhausted())
            }
            Poll::Pending => {
                state.busy = true;
                drop(state);
                Ok(Err(Busy(shared.clone())))
            }
        }
    }

    /// The next item: the one handed back first, else the stream's.
    fn poll_item(&self, cx: &mut Context<'_>) -> Poll<PyResult<Item>> {
        let mut state = lock(&self.0);
        if let Some(item) = state.front.take() {
            return Poll::Ready(Ok(item));
        }
        let stream = match state.stream.as_mut() {
            Some(stream) => stream,
            None => return Poll::Ready(Err(exhausted())),
        };
        match stream.0.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(item),
            Poll::Ready(None) => {
                let ended = state.stream.take(); // live_streams() falls at the end
                drop(state);
                drop(ended);
                Poll::Ready(Err(exhausted()))
            }
            Poll::Pending => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.busy = false;
        state.waker = None;
    }
}
// ANCHOR_END: busy

// ANCHOR: give_back
/// An item on its way to the awaiting Task, as a Rust value. The stream stays busy until
/// the Task collects it (converted to an `int`) or the bridge gives it back.
struct Delivery {
    item: Item,
    busy: Busy,
}

impl Delivery {
    /// Not collected (the Task was cancelled after the item came): back to the front of
    /// the stream, unless it was closed meanwhile. Needs no GIL.
    fn give_back(self) {
        let Delivery { item, busy } = self;
        let mut state = lock(&busy.0);
        if !state.closed {
            state.front = Some(item);
        }
        drop(state);
        drop(busy); // after the lock is released (it takes it): the stream is free again
    }
}

impl IntoPy<PyObject> for Delivery {
    /// Collected: the item as a Python `int` (and the stream is free again).
    fn into_py(self, py: Python) -> PyObject {
        self.item.into_py(py)
    }
}
// ANCHOR_END: give_back

// ANCHOR: class
/// A Rust stream, an async iterator for asyncio.
#[pyclass(module = "pyo3_0_12_pyproto")]
pub struct RustStream {
    shared: Arc<Mutex<Shared>>,
    /// How many items the producer has made (`ticks`) or handed to the channel (`primes`).
    produced: Arc<AtomicU64>,
}
// ANCHOR_END: class

impl RustStream {
    fn new<S>(stream: S, produced: Arc<AtomicU64>) -> Self
    where
        S: Stream<Item = PyResult<Item>> + Send + 'static,
    {
        let shared = Shared {
            stream: Some(Counted::new(Box::pin(stream))),
            front: None,
            busy: false,
            closed: false,
            waker: None,
        };
        RustStream {
            shared: Arc::new(Mutex::new(shared)),
            produced,
        }
    }
}

/// Drops the Rust stream at once (a `primes` worker stops), forgets any handed-back
/// item, and wakes a pending `__anext__`, which then raises `StopAsyncIteration`.
fn close(shared: &Mutex<Shared>) {
    let mut state = lock(shared);
    state.closed = true;
    state.front = None;
    let stream = state.stream.take();
    let waker = state.waker.take();
    drop(state);
    drop(stream);
    if let Some(waker) = waker {
        waker.wake();
    }
}

// ANCHOR: anext
#[pyproto]
impl PyAsyncProtocol for RustStream {
    fn __aiter__(slf: PyRef<Self>) -> PyRef<Self> {
        slf
    }

    /// An awaitable giving the next item, or raising `StopAsyncIteration` at the end.
    /// Always `Yield(awaitable)`: even at the end the awaitable raises, so that
    /// `anext(stream, default)` gives its default.
    fn __anext__(slf: PyRef<Self>) -> PyResult<IterANextOutput<PyObject, PyObject>> {
        let py = slf.py();
        // Its first step polls the stream once with a waker that does nothing: an item
        // that is ready is returned by that step (no thread hop, no waker, no waiter, and
        // no moment in which a cancellation could lose it). Only a stream that is not
        // ready goes on the bridge, whose first poll hands the stream the loop's waker.
        let next = RustFuture::attempt_first_with(slf.shared.clone()); // `first_step`
        Ok(IterANextOutput::Yield(Py::new(py, next)?.into_py(py)))
    }
}

// ANCHOR: first_step
/// The first step of an `__anext__` awaitable (not the call: an `__anext__()` never
/// awaited takes nothing), taken by the stream's shared state itself, so that an
/// `__anext__` allocates nothing but its Python object.
impl FirstStep for Mutex<Shared> {
    fn first_step(self: Arc<Self>, py: Python) -> PyResult<Attempted> {
        match Busy::claim_unless_ready(&self)? {
            Ok(item) => Ok(Attempted::Ready(item.into_py(py))),
            Err(busy) => Ok(Attempted::Wait(RustFuture::new_with_unclaimed(
                async move {
                    let item = poll_fn(|cx| busy.poll_item(cx)).await?;
                    Ok(Delivery { item, busy })
                },
                Delivery::give_back,
            ))),
        }
    }
}
// ANCHOR_END: first_step

/// PyO3 0.12's `#[pymethods]` generates unsafe calls outside `unsafe` blocks in the
/// wrappers next to the impl (see `bridge::methods`); this module holds the impl and
/// nothing else, so the allowance covers nothing of ours.
#[allow(unsafe_op_in_unsafe_fn)]
mod methods {
    use super::*;

    #[pymethods]
    impl RustStream {
        /// An awaitable that drops the Rust stream when awaited, and gives `None`.
        #[text_signature = "($self)"]
        fn aclose(&self) -> RustFuture {
            let shared = self.shared.clone();
            RustFuture::attempt_first(move |py| {
                close(&shared);
                Ok(Attempted::Ready(py.None()))
            })
        }

        /// Test hook: how many items the producer has made or handed to its channel.
        #[getter]
        fn _produced(&self) -> u64 {
            self.produced.load(Ordering::SeqCst)
        }
    }
}

#[pyproto]
impl PyObjectProtocol for RustStream {
    fn __repr__(&self) -> String {
        let state = lock(&self.shared);
        let name = match (&state.stream, state.closed) {
            (_, true) => "closed",
            (None, false) => "exhausted",
            (Some(_), false) if state.busy => "running",
            (Some(_), false) => "suspended",
        };
        format!("<RustStream {}>", name)
    }
}
// ANCHOR_END: anext

// ANCHOR: ticks
/// The stream of `ticks`: `0 … n-1`, each `interval` after the one before (counted from
/// when it is asked for, as `await asyncio.sleep(interval)` before each `yield` does).
/// The timer lives here, not in the `__anext__` future: a cancelled `__anext__` leaves
/// it running for the next one.
struct Ticks {
    next: Item,
    end: Item,
    interval: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    produced: Arc<AtomicU64>,
}

impl Stream for Ticks {
    type Item = PyResult<Item>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.next >= this.end {
            return Poll::Ready(None);
        }
        if !this.interval.is_zero() {
            let interval = this.interval;
            let timer = this.timer.get_or_insert_with(|| {
                // The timer registers with the runtime: the first poll of an `__anext__`
                // runs outside it (only the bridge's polls enter it).
                let _runtime = runtime().enter();
                Box::pin(tokio::time::sleep(interval))
            });
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.timer = None;
        }
        let item = this.next;
        this.next += 1;
        this.produced.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(item)))
    }
}

/// A stream of the ints `0 … n-1`, `interval` seconds apart (0: all ready at once).
#[pyfunction(interval = "0.0")]
#[text_signature = "(n, interval=0.0)"]
pub fn ticks(n: &PyAny, interval: f64) -> PyResult<RustStream> {
    let end = u64::try_from(int_argument(n)?)
        .map_err(|_| PyValueError::new_err(format!("ticks() needs n >= 0, got {}", n)))?;
    if !(interval.is_finite() && interval >= 0.0) {
        return Err(PyValueError::new_err(format!(
            "ticks() needs a finite, non-negative interval, got {:?}",
            interval
        )));
    }
    // Finite but beyond a `Duration` (centuries): as good as forever.
    let interval = Duration::try_from_secs_f64(interval).unwrap_or(Duration::MAX);
    let produced = Arc::new(AtomicU64::new(0));
    let stream = Ticks {
        next: 0,
        end,
        interval,
        timer: None,
        produced: produced.clone(),
    };
    Ok(RustStream::new(stream, produced))
}
// ANCHOR_END: ticks

// ANCHOR: primes
/// The bounded channel between the `primes` worker and its stream, built for batches:
/// the worker hands primes over as many at a time as there is room for (one lock), the
/// consumer takes them one at a time with no thread hop. A worker that finds the buffer
/// full sieves its next segment if it has not yet, then watches the buffer for up to
/// `SPIN` (50 µs), then sleeps until the consumer has taken a quarter of it (the
/// low-water mark), and refills it in one go. Waking it at the first free slot made the
/// two threads trade one item and one futex call per prime; sleeping at once let a fast
/// consumer empty the buffer before the worker was even running again. A consumer that
/// found it empty is woken once, by the next batch.
struct Channel {
    state: Mutex<ChannelState>,
    /// The worker waits here while the buffer is full.
    space: Condvar,
    /// How many items the buffer holds, as last seen under the lock: what a spinning
    /// worker watches without taking the lock. On a cache line of its own: the
    /// consumer's lock would otherwise move that line between the two threads per item.
    queued: Padded<AtomicUsize>,
}

/// A value on a cache line of its own.
#[repr(align(128))]
struct Padded<T>(T);

struct ChannelState {
    /// Plain primes, eight to a cache line: each line the worker fills is one the
    /// consumer's thread must fetch, and a `Result` per prime took three times as many.
    items: VecDeque<Item>,
    /// The message of the worker's panic (no `PyErr` on a thread that never takes the
    /// GIL; see the module documentation): raised after the primes it sent before it.
    failed: Option<String>,
    capacity: usize,
    /// The low-water mark: a quarter of `capacity` below it (`capacity - 1` at most).
    low: usize,
    /// The worker sleeps on `space`.
    worker_waiting: bool,
    /// The worker finished: nothing more comes after `items`.
    done: bool,
    /// The stream is gone: the worker stops.
    dropped: bool,
    /// The waker of a stream that found the buffer empty.
    consumer: Option<Waker>,
}

fn lock_channel(channel: &Channel) -> MutexGuard<'_, ChannelState> {
    channel
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Releases the channel's lock, then wakes the consumer that found the buffer empty, if
/// there is one (after the release: its poll takes the lock at once).
fn wake_consumer(mut state: MutexGuard<'_, ChannelState>) {
    let consumer = state.consumer.take();
    drop(state);
    if let Some(consumer) = consumer {
        consumer.wake();
    }
}

/// The stream of `primes`: the receiving end of the worker's channel. Dropping it stops
/// the worker: a waiting worker is woken to stop, and the flag stops it between segments.
struct Primes {
    channel: Arc<Channel>,
    _stop: StopOnDrop,
}

impl Stream for Primes {
    type Item = PyResult<Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = lock_channel(&self.channel);
        let Some(item) = state.items.pop_front() else {
            if let Some(message) = state.failed.take() {
                // Polled on the loop thread, with the GIL: the panic becomes its exception.
                return Poll::Ready(Some(Err(PanicException::new_err(message))));
            }
            if state.done {
                return Poll::Ready(None);
            }
            state.consumer = Some(cx.waker().clone());
            return Poll::Pending;
        };
        if state.items.len() <= state.low {
            // Only at the mark: a store per item would bounce the cache line between
            // this thread and a spinning worker.
            self.channel
                .queued
                .0
                .store(state.items.len(), Ordering::Relaxed);
        }
        // At the mark (for a buffer of 1: empty), the worker, if it sleeps, refills.
        let wake_worker = state.worker_waiting && state.items.len() <= state.low;
        if wake_worker {
            state.worker_waiting = false;
        }
        drop(state);
        if wake_worker {
            self.channel.space.notify_one();
        }
        Poll::Ready(Some(Ok(item)))
    }
}

impl Drop for Primes {
    fn drop(&mut self) {
        let mut state = lock_channel(&self.channel);
        state.dropped = true;
        state.items.clear();
        drop(state);
        self.channel.space.notify_one();
    }
}

/// How long a worker that found the buffer full watches it before sleeping.
const SPIN: Duration = Duration::from_micros(50);

/// The worker's end of the channel; dropped (the worker finished, or panicked), it tells
/// the stream that nothing more comes.
struct Sender(Arc<Channel>);

impl Sender {
    /// Hands over as many of `items` as fit, under one lock, without waiting: how many it
    /// took, or `Break` if the stream is gone.
    fn offer(&self, items: &[Item], produced: &AtomicU64) -> ControlFlow<(), usize> {
        let mut state = lock_channel(&self.0);
        if state.dropped {
            return ControlFlow::Break(());
        }
        let taken = (state.capacity - state.items.len()).min(items.len());
        if taken == 0 {
            return ControlFlow::Continue(0);
        }
        state.items.extend(&items[..taken]);
        self.0.queued.0.store(state.items.len(), Ordering::Relaxed);
        produced.fetch_add(taken as u64, Ordering::SeqCst);
        wake_consumer(state);
        ControlFlow::Continue(taken)
    }

    /// Waits while the buffer is full; `Break` if the stream is gone.
    fn wait_for_room(&self) -> ControlFlow<()> {
        let mut state = lock_channel(&self.0);
        let mut spun = false;
        while state.items.len() >= state.capacity && !state.dropped {
            if !spun {
                // Full: watch the buffer for a short while before sleeping, so a consumer
                // that keeps taking finds it refilled without waiting for this thread to
                // be woken (which takes longer than the buffer lasts).
                spun = true;
                let low = state.low;
                drop(state);
                let deadline = std::time::Instant::now() + SPIN;
                while self.0.queued.0.load(Ordering::Relaxed) > low
                    && std::time::Instant::now() < deadline
                {
                    std::hint::spin_loop();
                }
                state = lock_channel(&self.0);
                continue;
            }
            state.worker_waiting = true;
            state = self
                .0
                .space
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.dropped {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Sender {
    /// Ends the stream with the message of the worker's panic, raised once the primes
    /// sent before it are taken.
    fn fail(&self, message: String, produced: &AtomicU64) {
        let mut state = lock_channel(&self.0);
        if state.dropped {
            return;
        }
        state.failed = Some(message);
        produced.fetch_add(1, Ordering::SeqCst);
        wake_consumer(state);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = lock_channel(&self.0);
        state.done = true;
        wake_consumer(state);
    }
}

/// Sets the flag when dropped: the worker stops at its next check.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The worker: sieves on its own thread, never touching Python (so never holding the
/// interpreter lock), and sends each prime through the channel, waiting while it is
/// full: it is never more than the channel's capacity ahead of the consumer (it keeps
/// at most the primes of two segments of its own: the one it is sending, and the next).
fn sieve_into(n: u64, sender: Sender, stop: &AtomicBool, produced: &AtomicU64) {
    let sieved = catch_unwind(AssertUnwindSafe(|| {
        let mut segments = Segments::with_segment(n, STREAM_SEGMENT);
        // Sieves the next segment into `primes`; false if there is none, or if the stream
        // was stopped.
        let mut sieve = |primes: &mut Vec<Item>| {
            primes.clear();
            if segments.is_done() || stop.load(Ordering::Relaxed) {
                return false;
            }
            primes.extend(segments.sieve_next());
            true
        };
        // The segment being handed over (from `at`), and the next one when it was
        // sieved while the buffer was full: the consumer does not wait for a segment
        // to be sieved once the one before it is taken.
        let (mut current, mut next, mut next_ready, mut at) = (Vec::new(), Vec::new(), false, 0);
        loop {
            if at == current.len() {
                if next_ready {
                    std::mem::swap(&mut current, &mut next);
                    next_ready = false;
                } else if !sieve(&mut current) {
                    return;
                }
                at = 0;
                continue;
            }
            match sender.offer(&current[at..], produced) {
                ControlFlow::Break(()) => return, // the stream was dropped
                ControlFlow::Continue(taken) => at += taken,
            }
            if at < current.len() {
                // Full: the next segment first, if it is not sieved yet; then wait.
                if !next_ready && sieve(&mut next) {
                    next_ready = true;
                } else if sender.wait_for_room().is_break() {
                    return;
                }
            }
        }
    }));
    if let Err(payload) = sieved {
        sender.fail(panic_message(payload), produced);
    }
}

/// A stream of the primes below `n`, found on a worker thread without the GIL, at most
/// `buffer` primes ahead of the consumer.
#[pyfunction(buffer = "IntArg::of(64)")]
#[text_signature = "(n, buffer=64)"]
pub fn primes(n: &PyAny, buffer: IntArg) -> PyResult<RustStream> {
    let below = u64::try_from(int_argument(n)?)
        .ok()
        .filter(|&n| n <= MAX_BELOW)
        .ok_or_else(|| {
            PyValueError::new_err(format!("primes() needs 0 <= n <= 2**40, got {}", n))
        })?;
    // The bound tokio's channels have (2**61 - 1 on 64 bits), kept as the limit.
    let capacity = usize::try_from(buffer.value)
        .ok()
        .filter(|&b| (1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&b))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "primes() needs 1 <= buffer <= {}, got {}",
                tokio::sync::Semaphore::MAX_PERMITS,
                buffer
            ))
        })?;
    let channel = Arc::new(Channel {
        state: Mutex::new(ChannelState {
            items: VecDeque::new(),
            failed: None,
            capacity,
            low: capacity - (capacity / 4).max(1),
            worker_waiting: false,
            done: false,
            dropped: false,
            consumer: None,
        }),
        space: Condvar::new(),
        queued: Padded(AtomicUsize::new(0)),
    });
    let sender = Sender(channel.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let (worker_stop, worker_produced) = (stop.clone(), produced.clone());
    std::thread::Builder::new()
        .name("pyo3-async-guide-primes".into())
        .spawn(move || sieve_into(below, sender, &worker_stop, &worker_produced))
        .map_err(|err| {
            PyRuntimeError::new_err(format!("primes() cannot start its worker: {}", err))
        })?;
    let stream = Primes {
        channel,
        _stop: StopOnDrop(stop),
    };
    Ok(RustStream::new(stream, produced))
}
// ANCHOR_END: primes

/// Adds `ticks`, `primes` and `live_streams` to the module (PyO3 0.12's `#[pyfunction]`
/// wrappers are private to this file).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ticks, m)?)?;
    m.add_function(wrap_pyfunction!(primes, m)?)?;
    m.add_function(wrap_pyfunction!(live_streams, m)?)
}
