//! `pyo3_0_12_pyproto`: Python awaitables in Rust, written as late-2020 PyO3 0.12 code
//! was — `#[pyclass]` + `#[pymethods]`, the `#[pyproto]` protocol traits
//! (`PyAsyncProtocol`, `PyIterProtocol`), GIL-bound `&PyAny` references.
//!
//! * [`driver`]: `drive(awaitable)`, `await` re-created in Rust without an event loop.
//! * [`coroutine`]: `RustCoroutine`, a coroutine class written in Rust (`ready`, `countdown`).
//! * [`delegate`]: `delegate(awaitable)`, `await` re-implemented in Rust inside a loop.
//! * [`bridge`] and [`futures`]: Rust futures as Python awaitables (`RustFuture`,
//!   `sleep`, `count_primes`, `live_futures`); [`wake`]: the bridge's wake-up protocol,
//!   plain Rust (model-checked with loom by the workspace's `wake-model` crate).
//! * [`stream`]: Rust streams as Python async iterators (`RustStream`, `ticks`, `primes`,
//!   `live_streams`), and [`semaphore`]: an async context manager (`Semaphore`), both
//!   built on `bridge`; [`sieve`]: the prime sieve `count_primes` and `primes` share.
//! * [`recipe`]: `Echo`, the guide's first recipe: the smallest awaitable class.
//! * [`slots`]: the type slots filled by hand, the hot path of every step.
//! * [`protocol`]: what every coroutine-like class shares (states, errors, `throw`'s
//!   arguments, `Step`, stepping an iterator).
//! * [`compat`]: what differs between CPython versions.
//! * [`repair`]: the fixes that let PyO3 0.12's type objects run on CPython 3.10+
//!   (`PYO3_0_12_PYPROTO_UNFIXED=1` turns them off), and its global allocator.
//! * [`ffi`]: PyO3 0.12's `ffi`, plus the C declarations it lacks.
//!
//! Dependencies run one way: this file wires everything; the feature modules use
//! `slots`, `protocol`, `compat` and `ffi` (`futures`, `stream` and `semaphore` are built
//! on `bridge`; `sieve` is plain Rust that anything may use); only this file calls into
//! `repair`.
//!
//! Each file has a namesake in the sibling crate `pyo3-modern-pymethods`, which builds
//! the same module with today's PyO3 (and a `baselines` submodule this one lacks: the
//! ecosystem's async bridges never supported PyO3 0.12), except `repair` and `ffi`, which
//! only PyO3 0.12 needs.

pub mod bridge;
pub mod compat;
pub mod coroutine;
pub mod delegate;
pub mod driver;
pub mod ffi;
pub mod futures;
pub mod protocol;
pub mod recipe;
pub mod repair;
pub mod semaphore;
pub mod sieve;
pub mod slots;
pub mod stream;
pub mod wake;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::wrap_pyfunction;

use crate::bridge::{ExitGate, RustFuture, WakeReader};
use crate::coroutine::RustCoroutine;
use crate::delegate::RustAwait;
use crate::recipe::Echo;
use crate::semaphore::Semaphore;
use crate::slots::Stepped;
use crate::stream::RustStream;

// ANCHOR: module
/// Python awaitables written in Rust as PyO3 0.12 code was (#[pyproto]).
#[pymodule]
fn pyo3_0_12_pyproto(py: Python, m: &PyModule) -> PyResult<()> {
    // First, before any class exists: the interpreter version, and the environment
    // switches of the repairs (PYO3_0_12_PYPROTO_UNFIXED, ..._EXHAUST_PADDING).
    compat::init(py)?;
    repair::init();

    m.add("PYO3_VERSION", env!("PYO3_VERSION"))?;
    m.add("ERA", "pyproto")?;
    driver::register(m)?; // drive
    coroutine::register(m)?; // ready, countdown
    delegate::register(m)?; // delegate
    futures::register(m)?; // sleep, count_primes, live_futures
    stream::register(m)?; // ticks, primes, live_streams

    // Private (not in `__all__`): the test hook of the slots' no-unwind guarantee.
    m.setattr("_panic_next_step", wrap_pyfunction!(panic_next_step, m)?)?;

    // `m.add_class::<T>()`, plus the fixes for CPython 3.10+ (and PyO3 0.12's GC dealloc);
    // an `ImportError` if a type object missed its padding.
    repair::add_class_with_fixes::<RustCoroutine>(py, m)?;
    repair::add_class_with_fixes::<RustAwait>(py, m)?;
    repair::add_class_with_fixes::<RustFuture>(py, m)?;
    repair::add_class_with_fixes::<RustStream>(py, m)?;
    repair::add_class_with_fixes::<Semaphore>(py, m)?;
    repair::add_class_with_fixes::<Echo>(py, m)?;
    // The hand-filled slots of each step (`slots`): a test checks they are the ones used.
    let fast_slots = PyDict::new(py);
    fast_slots.set_item("RustCoroutine", install_slots::<RustCoroutine>(py)?)?;
    fast_slots.set_item("RustAwait", install_slots::<RustAwait>(py)?)?;
    fast_slots.set_item("RustFuture", install_slots::<RustFuture>(py)?)?;
    m.setattr("_FAST_SLOTS", fast_slots)?;
    // Not exported (the event loop's callback for Rust futures, and the `atexit` gate of
    // the `call_soon_threadsafe` wake-up), but fixed all the same.
    repair::ready_type_with_fixes::<WakeReader>(py)?;
    repair::ready_type_with_fixes::<ExitGate>(py)?;
    // asyncio.iscoroutine, create_task, ensure_future and gather accept them.
    for class in [
        py.get_type::<RustCoroutine>(),
        py.get_type::<RustAwait>(),
        py.get_type::<RustFuture>(),
    ] {
        compat::register_coroutine_abc(class)?;
    }
    // PyO3 0.12's `#[pymodule]` sets the docstring with `m.add("__doc__", ...)`, which also
    // lists "__doc__" in `__all__`; `from pyo3_0_12_pyproto import *` should not take it.
    m.index()?.call_method1("remove", ("__doc__",))?;
    Ok(())
}
// ANCHOR_END: module

/// `slots::install::<T>` as the `dict` `_FAST_SLOTS` lists for `T` (`{"tp_iternext":
/// address, ...}`). Nothing is installed with the repairs switched off: the crate is then
/// PyO3 0.12 as it stands.
fn install_slots<T: Stepped>(py: Python<'_>) -> PyResult<&PyDict> {
    let slots = PyDict::new(py);
    if !repair::fixes_enabled() {
        return Ok(slots);
    }
    let table_has_am_send = repair::has_send_table::<T>(py);
    // SAFETY: `T`'s type object was made ready by `add_class_with_fixes` just before, and
    // the module is not returned yet, so no instance exists;
    // `has_send_table` checked that its `tp_as_async` is one of repair's 4-field tables.
    let installed = unsafe { slots::install::<T>(py, table_has_am_send) };
    for (slot, address) in installed {
        slots.set_item(slot, address)?;
    }
    Ok(slots)
}

/// _panic_next_step(message) -> None: the next step run through a hand-filled slot of
/// `RustCoroutine` or `RustAwait` on this thread panics with `message` (a test hook).
#[pyfunction]
#[name = "_panic_next_step"]
fn panic_next_step(message: String) {
    slots::panic_next_step(message);
}
