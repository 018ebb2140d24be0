//! `pyo3_modern_pymethods.baselines`: the same `ready` and `sleep`, written the way the
//! ecosystem writes them today, for the guide and the benchmarks to compare the
//! hand-written bridge against. Both share this crate's one tokio runtime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::bridge::{runtime, RustFuture};

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

// The benchmarks' private submodule, `baselines._bench` (no stub: a leading underscore
// keeps it out of the API): the same Rust future behind each of the three bridges, so
// that the benchmarks compare bridges and not futures (benchmarks/bench.py).

/// Now, in nanoseconds on the clock of Python's `time.time_ns()`.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// The waiting future of the benchmarks: at its first poll it spawns a task on the shared
/// runtime that sleeps `delay` on tokio's timer (no timer for 0) and then completes a
/// oneshot with the time it did so; the future waits for that oneshot, so it is always
/// woken from a runtime thread. Its output is the wake-up time (`time.time_ns()`).
async fn woken(delay: Duration) -> PyResult<u64> {
    let (done, wait) = tokio::sync::oneshot::channel();
    runtime().spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let _ = done.send(now_ns());
    });
    wait.await
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The hand-written bridge (`RustFuture`) around a future ready at its first poll.
#[pyfunction]
fn ready_bridge(value: Py<PyAny>) -> RustFuture {
    RustFuture::new(async move { Ok(value) })
}

/// pyo3-async-runtimes around a future ready at its first poll (it spawns it on tokio
/// and hands the result back through `call_soon_threadsafe`, as it must).
#[pyfunction]
fn ready_future_into_py(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(value) })
}

/// The hand-written bridge around [`woken`].
#[pyfunction]
fn woken_bridge(delay: f64) -> PyResult<RustFuture> {
    Ok(RustFuture::new(woken(duration(delay)?)))
}

/// PyO3's `async fn` around [`woken`] (polled on the loop thread, no extra spawn).
#[pyfunction]
async fn woken_async_fn(delay: f64) -> PyResult<u64> {
    woken(duration(delay)?).await
}

/// pyo3-async-runtimes around [`woken`].
#[pyfunction]
fn woken_future_into_py(py: Python<'_>, delay: f64) -> PyResult<Bound<'_, PyAny>> {
    pyo3_async_runtimes::tokio::future_into_py(py, woken(duration(delay)?))
}

/// The benchmarks' submodule, `pyo3_modern_pymethods.baselines._bench`.
fn bench_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "_bench")?;
    m.setattr("__name__", "pyo3_modern_pymethods.baselines._bench")?;
    m.add_function(wrap_pyfunction!(ready_bridge, &m)?)?;
    m.add_function(wrap_pyfunction!(ready_future_into_py, &m)?)?;
    m.add_function(wrap_pyfunction!(woken_bridge, &m)?)?;
    m.add_function(wrap_pyfunction!(woken_async_fn, &m)?)?;
    m.add_function(wrap_pyfunction!(woken_future_into_py, &m)?)?;
    Ok(m)
}

/// Builds the submodule, importable as `pyo3_modern_pymethods.baselines`, and hands the
/// crate's runtime to pyo3-async-runtimes.
pub fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime());
    let m = PyModule::new(py, "baselines")?;
    m.setattr("__name__", "pyo3_modern_pymethods.baselines")?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("pyo3_modern_pymethods.baselines", &m)?;
    m.add_function(wrap_pyfunction!(ready_async_fn, &m)?)?;
    m.add_function(wrap_pyfunction!(sleep_async_fn, &m)?)?;
    m.add_function(wrap_pyfunction!(sleep_future_into_py, &m)?)?;
    // An attribute, not `add`: kept out of `__all__` (and so out of the stubs).
    m.setattr("_bench", bench_module(py)?)?;
    Ok(m)
}
