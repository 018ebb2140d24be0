//! `pyo3_0_12_pyproto`: Python awaitables in Rust, written as late-2020 PyO3 0.12 code
//! was — `#[pyclass]` + `#[pymethods]`, the `#[pyproto]` protocol traits
//! (`PyAsyncProtocol`, `PyIterProtocol`), GIL-bound `&PyAny` references.
//!
//! * [`driver`]: `drive(awaitable)`, `await` re-created in Rust without an event loop.
//! * [`coroutine`]: `RustCoroutine`, a coroutine class written in Rust (`ready`, `countdown`).
//! * [`compat`]: what differs between CPython versions, and the fixes that let PyO3 0.12's
//!   type objects run on CPython 3.10+ (`PYO3_0_12_PYPROTO_UNFIXED=1` turns them off).
//!
//! The Python-facing contract is shared with the `pyo3-modern-pymethods` crate
//! (`shared/CONTRACT.md`, sections 1 and 3).

pub mod compat;
pub mod coroutine;
pub mod driver;

use pyo3::prelude::*;

use crate::coroutine::RustCoroutine;

/// Python awaitables written in Rust as PyO3 0.12 code was (#[pyproto]).
#[pymodule]
fn pyo3_0_12_pyproto(py: Python, m: &PyModule) -> PyResult<()> {
    // First: reads PYO3_0_12_PYPROTO_UNFIXED before any class exists.
    compat::init(py)?;

    m.add("PYO3_VERSION", compat::PYO3_VERSION)?;
    m.add("ERA", "pyproto")?;
    driver::register(m)?; // drive
    coroutine::register(m)?; // ready, countdown

    // `m.add_class::<RustCoroutine>()`, plus the fixes for CPython 3.10+.
    compat::add_class_with_fixes::<RustCoroutine>(py, m)?;
    // asyncio.iscoroutine, create_task, ensure_future and gather accept it.
    py.import("collections.abc")?
        .getattr("Coroutine")?
        .call_method1("register", (py.get_type::<RustCoroutine>(),))?;
    // PyO3 0.12's `#[pymodule]` sets the docstring with `m.add("__doc__", ...)`, which also
    // lists "__doc__" in `__all__`; `from pyo3_0_12_pyproto import *` should not take it.
    m.index()?.call_method1("remove", ("__doc__",))?;
    Ok(())
}
