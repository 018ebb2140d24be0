//! `pyo3_modern_pymethods.baselines`: the same `ready` and `sleep`, written the way the
//! ecosystem writes them today, for the guide and the benchmarks to compare the
//! hand-written bridge against. Both share this crate's one tokio runtime.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::bridge::runtime;

fn duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!(
            "sleep() needs a finite, non-negative number of seconds, got {seconds}"
        ))
    })
}

// ANCHOR: async_fn
/// PyO3's own `async fn` (feature `experimental-async`): returns `value` at once.
#[pyfunction]
pub async fn ready_async_fn(value: Py<PyAny>) -> Py<PyAny> {
    value
}

/// PyO3's `async fn` awaiting a tokio task that sleeps (PyO3's coroutine has no
/// runtime of its own, so the timer runs on the shared runtime).
#[pyfunction]
#[pyo3(signature = (seconds, value = None))]
pub async fn sleep_async_fn(seconds: f64, value: Option<Py<PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    let duration = duration(seconds)?;
    runtime()
        .spawn(async move {
            // Like `sleep`, a zero delay skips the timer (whose resolution is 1 ms):
            // what is left to measure is the bridge.
            if !duration.is_zero() {
                tokio::time::sleep(duration).await;
            }
        })
        .await
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    Ok(value)
}
// ANCHOR_END: async_fn

// ANCHOR: future_into_py
/// pyo3-async-runtimes: the future runs on tokio, its result is handed to an asyncio
/// future through `call_soon_threadsafe`.
#[pyfunction]
#[pyo3(signature = (seconds, value = None))]
pub fn sleep_future_into_py(
    py: Python<'_>,
    seconds: f64,
    value: Option<Py<PyAny>>,
) -> PyResult<Bound<'_, PyAny>> {
    let duration = duration(seconds)?;
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        if !duration.is_zero() {
            tokio::time::sleep(duration).await;
        }
        Ok(value)
    })
}
// ANCHOR_END: future_into_py

/// Builds the submodule, importable as `pyo3_modern_pymethods.baselines`, and hands the
/// crate's runtime to pyo3-async-runtimes.
pub fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime());
    let m = PyModule::new(py, "baselines")?;
    m.setattr("__name__", "pyo3_modern_pymethods.baselines")?;
    py.import("sys")?.getattr("modules")?.set_item("pyo3_modern_pymethods.baselines", &m)?;
    m.add_function(wrap_pyfunction!(ready_async_fn, &m)?)?;
    m.add_function(wrap_pyfunction!(sleep_async_fn, &m)?)?;
    m.add_function(wrap_pyfunction!(sleep_future_into_py, &m)?)?;
    Ok(m)
}
