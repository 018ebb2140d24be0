//! Rust futures to await from asyncio: `sleep` on tokio's timer, and `count_primes` on
//! a worker thread with the GIL released, stopped early when cancelled.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::wrap_pyfunction;

use crate::bridge::{runtime, RustFuture};
use crate::sieve::{for_each_prime_below, MAX_BELOW};

// ANCHOR: sleep
/// A Rust future that completes with `value` after `seconds`.
#[pyfunction(value = "None")]
#[text_signature = "(seconds, value=None)"]
pub fn sleep(seconds: f64, value: Option<PyObject>) -> PyResult<RustFuture> {
    let duration = Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!(
            "sleep() needs a finite, non-negative number of seconds, got {}",
            seconds
        ))
    })?;
    Ok(RustFuture::new(async move {
        if !duration.is_zero() {
            tokio::time::sleep(duration).await;
        }
        Ok(value)
    }))
}
// ANCHOR_END: sleep

/// A Rust future that panics with `message` when polled.
#[pyfunction]
pub fn panicking_future(message: String) -> RustFuture {
    RustFuture::new(async move {
        if !message.is_empty() {
            panic!("{}", message);
        }
        Ok(())
    })
}

/// Counts the primes below `n` (the sieve of `sieve.rs`), checking `cancelled` between
/// segments. `None` if cancelled.
fn primes_below(n: u64, cancelled: &AtomicBool) -> Option<u64> {
    let mut count = 0;
    let counted = for_each_prime_below(n, cancelled, |_| {
        count += 1;
        ControlFlow::Continue(())
    });
    counted.is_continue().then_some(count)
}

/// Sets the flag when dropped: the count's worker thread stops at its next check.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

// ANCHOR: count_primes
/// Counts the primes below `n` on a worker thread, without the GIL.
#[pyfunction]
#[text_signature = "(n)"]
pub fn count_primes(n: i64) -> PyResult<RustFuture> {
    let n = u64::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_BELOW)
        .ok_or_else(|| {
            PyValueError::new_err(format!("count_primes() needs 0 <= n <= 2**40, got {}", n))
        })?;
    let cancelled = Arc::new(AtomicBool::new(false));
    let on_drop = CancelOnDrop(cancelled.clone());
    Ok(RustFuture::new(async move {
        let _on_drop = on_drop; // dropping the future cancels the count
        let worker = runtime().spawn_blocking(move || primes_below(n, &cancelled));
        match worker.await {
            Ok(Some(count)) => Ok(count),
            Ok(None) => Err(PyRuntimeError::new_err("count_primes() was cancelled")),
            Err(failure) if failure.is_panic() => Err(pyo3::panic::PanicException::new_err(
                "count_primes() panicked",
            )),
            Err(failure) => Err(PyRuntimeError::new_err(failure.to_string())),
        }
    }))
}
// ANCHOR_END: count_primes

/// Adds `sleep`, `count_primes` and `live_futures` to the module.
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sleep, m)?)?;
    m.add_function(wrap_pyfunction!(count_primes, m)?)?;
    // Private (not in `__all__`): for the tests of what a panic in a Rust future becomes.
    m.setattr("_panicking_future", wrap_pyfunction!(panicking_future, m)?)?;
    crate::bridge::register(m) // live_futures
}
