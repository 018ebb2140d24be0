//! Python awaitables written in Rust with today's PyO3: `#[pymethods]` with the
//! coroutine protocol's magic methods, and the `Bound` API.
//!
//! The sibling crate `pyo3-0.12-pyproto` implements the same module with the PyO3 0.12
//! idioms of late 2020; each file here has a namesake there.

mod baselines;
mod bridge;
mod compat;
mod coroutine;
mod delegate;
mod driver;
mod futures;

use pyo3::prelude::*;

// ANCHOR: module
/// Python awaitables written in Rust with PyO3's #[pymethods].
#[pymodule(gil_used = false)]
fn pyo3_modern_pymethods(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("PYO3_VERSION", env!("PYO3_VERSION"))?;
    m.add("ERA", "pymethods")?;
    m.add_function(wrap_pyfunction!(driver::drive, m)?)?;
    m.add_class::<coroutine::RustCoroutine>()?;
    m.add_function(wrap_pyfunction!(coroutine::ready, m)?)?;
    m.add_function(wrap_pyfunction!(coroutine::countdown, m)?)?;
    m.add_class::<delegate::RustAwait>()?;
    m.add_function(wrap_pyfunction!(delegate::delegate, m)?)?;
    m.add_class::<bridge::RustFuture>()?;
    m.add_function(wrap_pyfunction!(futures::sleep, m)?)?;
    m.add_function(wrap_pyfunction!(futures::count_primes, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::live_futures, m)?)?;
    compat::register_coroutine_abc(&m.py().get_type::<coroutine::RustCoroutine>())?;
    compat::register_coroutine_abc(&m.py().get_type::<delegate::RustAwait>())?;
    compat::register_coroutine_abc(&m.py().get_type::<bridge::RustFuture>())?;
    m.add_submodule(&baselines::module(m.py())?)?;
    Ok(())
}
// ANCHOR_END: module
