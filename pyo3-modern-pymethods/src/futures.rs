//! Rust futures to await from asyncio: `sleep` on tokio's timer, and `count_primes` on
//! a worker thread with the interpreter lock released, stopped early when cancelled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::bridge::{runtime, RustFuture};

// ANCHOR: sleep
/// A Rust future that completes with `value` after `seconds`.
#[pyfunction]
#[pyo3(signature = (seconds, value = None))]
pub fn sleep(seconds: f64, value: Option<Py<PyAny>>) -> PyResult<RustFuture> {
    let duration = Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!(
            "sleep() needs a finite, non-negative number of seconds, got {seconds}"
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
            panic!("{message}");
        }
        Ok(())
    })
}

/// The largest `n` `count_primes` accepts: its sieve keeps the primes up to √n.
const MAX_PRIMES_BELOW: u64 = 1 << 40;

/// Counts the primes below `n` with a segmented sieve, checking `cancelled` between
/// segments (each takes well under a millisecond). `None` if cancelled.
pub(crate) fn primes_below(n: u64, cancelled: &AtomicBool) -> Option<u64> {
    if n < 3 {
        return Some(0);
    }
    let root = (n as f64).sqrt() as u64 + 1;
    let mut composite = vec![false; root as usize + 1];
    let mut base = Vec::new();
    for i in 2..=root {
        if !composite[i as usize] {
            base.push(i);
            let mut j = i * i;
            while j <= root {
                composite[j as usize] = true;
                j += i;
            }
        }
    }
    const SEGMENT: u64 = 1 << 15;
    let mut sieve = vec![false; SEGMENT as usize];
    let mut count = 0;
    let mut low = 0;
    while low < n {
        if cancelled.load(Ordering::Relaxed) {
            return None;
        }
        let high = (low + SEGMENT).min(n);
        sieve.iter_mut().for_each(|c| *c = false);
        for &p in base.iter().take_while(|&&p| p * p < high) {
            let mut multiple = (low.div_ceil(p) * p).max(p * p);
            while multiple < high {
                sieve[(multiple - low) as usize] = true;
                multiple += p;
            }
        }
        count += (low.max(2)..high).filter(|&i| !sieve[(i - low) as usize]).count() as u64;
        low = high;
    }
    Some(count)
}

/// Sets the flag when dropped: the count's worker thread stops at its next check.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

// ANCHOR: count_primes
/// Counts the primes below `n` on a worker thread, without the interpreter lock.
#[pyfunction]
pub fn count_primes(n: i64) -> PyResult<RustFuture> {
    let n = u64::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_PRIMES_BELOW)
        .ok_or_else(|| PyValueError::new_err(format!("count_primes() needs 0 <= n <= 2**40, got {n}")))?;
    let cancelled = Arc::new(AtomicBool::new(false));
    let on_drop = CancelOnDrop(cancelled.clone());
    Ok(RustFuture::new(async move {
        let _on_drop = on_drop; // dropping the future cancels the count
        let worker = runtime().spawn_blocking(move || primes_below(n, &cancelled));
        match worker.await {
            Ok(Some(count)) => Ok(count),
            Ok(None) => Err(PyRuntimeError::new_err("count_primes() was cancelled")),
            Err(failure) if failure.is_panic() => {
                Err(pyo3::panic::PanicException::new_err("count_primes() panicked"))
            }
            Err(failure) => Err(PyRuntimeError::new_err(failure.to_string())),
        }
    }))
}
// ANCHOR_END: count_primes

/// Adds `sleep`, `count_primes` and `live_futures` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sleep, m)?)?;
    m.add_function(wrap_pyfunction!(count_primes, m)?)?;
    // Private (not in `__all__`): for the tests of what a panic in a Rust future becomes.
    m.setattr("_panicking_future", wrap_pyfunction!(panicking_future, m)?)?;
    m.add_function(wrap_pyfunction!(crate::bridge::live_futures, m)?)
}
