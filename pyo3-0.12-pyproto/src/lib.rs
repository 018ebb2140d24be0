//! `pyo3_0_12_pyproto`: Python awaitables in Rust, written as late-2020 PyO3 0.12 code
//! was — `#[pyclass]` + `#[pymethods]`, the `#[pyproto]` protocol traits
//! (`PyAsyncProtocol`, `PyIterProtocol`), GIL-bound `&PyAny` references.
//!
//! * [`driver`]: `drive(awaitable)`, `await` re-created in Rust without an event loop.
//! * [`coroutine`]: `RustCoroutine`, a coroutine class written in Rust (`ready`, `countdown`).
//! * [`delegate`]: `delegate(awaitable)`, `await` re-implemented in Rust inside a loop.
//! * [`bridge`] and [`futures`]: Rust futures as Python awaitables (`RustFuture`,
//!   `sleep`, `count_primes`, `live_futures`).
//! * [`slots`]: the type slots filled by hand, the hot path of every step.
//! * [`compat`]: what differs between CPython versions, and the fixes that let PyO3 0.12's
//!   type objects run on CPython 3.10+ (`PYO3_0_12_PYPROTO_UNFIXED=1` turns them off).
//!
//! Each file has a namesake in the sibling crate `pyo3-modern-pymethods`, which builds
//! the same module with today's PyO3 (and a `baselines` submodule this one lacks: the
//! ecosystem's async bridges never supported PyO3 0.12).

pub mod bridge;
pub mod compat;
pub mod coroutine;
pub mod delegate;
pub mod driver;
pub mod futures;
pub mod slots;

use pyo3::prelude::*;

use crate::bridge::{RustFuture, WakeReader};
use crate::coroutine::RustCoroutine;
use crate::delegate::RustAwait;

// ANCHOR: module
/// Python awaitables written in Rust as PyO3 0.12 code was (#[pyproto]).
#[pymodule]
fn pyo3_0_12_pyproto(py: Python, m: &PyModule) -> PyResult<()> {
    // First: reads PYO3_0_12_PYPROTO_UNFIXED before any class exists.
    compat::init(py)?;

    m.add("PYO3_VERSION", compat::PYO3_VERSION)?;
    m.add("ERA", "pyproto")?;
    driver::register(m)?; // drive
    coroutine::register(m)?; // ready, countdown
    delegate::register(m)?; // delegate
    futures::register(m)?; // sleep, count_primes, live_futures

    // `m.add_class::<T>()`, plus the fixes for CPython 3.10+ (and PyO3 0.12's GC dealloc).
    compat::add_class_with_fixes::<RustCoroutine>(py, m)?;
    compat::add_class_with_fixes::<RustAwait>(py, m)?;
    compat::add_class_with_fixes::<RustFuture>(py, m)?;
    // The hand-filled slots of each step (`slots`): a test checks they are the ones used.
    m.setattr("_FAST_SLOTS", slots::install_all(py)?)?;
    // Not exported (the event loop's callback for Rust futures), but fixed all the same.
    compat::ready_type_with_fixes::<WakeReader>(py);
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
