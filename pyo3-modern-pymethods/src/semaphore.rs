//! An async context manager: `Semaphore`, a bounded semaphore on tokio's (fair, first come
//! first served, and `Sync`): every event loop of the process, in any thread, can share
//! one, which `asyncio.Semaphore` cannot. Each waiting Task is woken through its own
//! loop by the bridge.
//!
//! A permit travels to the acquiring Task as a tokio permit ([`Acquired`]); only when the
//! Task collects it is it forgotten into the count of held permits. If the Task is
//! cancelled (or collected) before it takes a permit that was ready, the bridge drops
//! the `Acquired`, and the permit goes back: a cancelled acquire takes none.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;
use pyo3::IntoPyObjectExt;
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError};

use crate::bridge::{Attempted, RustFuture};
use crate::protocol::IntArg;

/// What a `Semaphore` and its acquire futures share.
struct Permits {
    /// The permits not held (tokio's semaphore queues the waiters fairly).
    free: Arc<tokio::sync::Semaphore>,
    /// The permits acquired and not yet released: `release()` refuses when none is.
    held: AtomicUsize,
}

// ANCHOR: give_back
/// A permit on its way to the acquiring Task. Collected, it is forgotten into the held
/// count and becomes `True` (`acquire`) or `None` (`__aenter__`); dropped instead (the
/// bridge's give-back), the tokio permit returns itself to the semaphore.
struct Acquired {
    permit: OwnedSemaphorePermit,
    permits: Arc<Permits>,
    gives_true: bool,
}

impl<'py> IntoPyObject<'py> for Acquired {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.permit.forget();
        self.permits.held.fetch_add(1, Ordering::SeqCst);
        Ok(if self.gives_true {
            PyBool::new(py, true).to_owned().into_any()
        } else {
            py.None().into_bound(py)
        })
    }
}
// ANCHOR_END: give_back

// ANCHOR: class
/// A bounded semaphore that tasks of every event loop of the process may share.
#[pyclass(module = "pyo3_modern_pymethods", frozen)]
pub struct Semaphore {
    permits: Arc<Permits>,
}
// ANCHOR_END: class

impl Semaphore {
    /// An awaitable that waits for a permit (first come, first served). Its first step
    /// takes a free permit if there is one and returns at once, with nothing of the
    /// bridge made; tokio hands a released permit straight to the first waiter, so a
    /// free permit means nobody waits and taking it jumps no queue.
    fn acquiring(&self, gives_true: bool) -> RustFuture {
        let permits = self.permits.clone();
        RustFuture::attempt_first(move |py| {
            match permits.free.clone().try_acquire_owned() {
                Ok(permit) => {
                    let acquired = Acquired {
                        permit,
                        permits,
                        gives_true,
                    };
                    return acquired.into_py_any(py).map(Attempted::Ready);
                }
                Err(TryAcquireError::NoPermits) => {}
                Err(TryAcquireError::Closed) => return Err(closed()),
            }
            Ok(Attempted::Wait(RustFuture::new_with_unclaimed(
                async move {
                    let permit = permits
                        .free
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| closed())?;
                    Ok(Acquired {
                        permit,
                        permits,
                        gives_true,
                    })
                },
                drop, // an uncollected permit returns itself
            )))
        })
    }
}

/// The error of an acquire on a closed tokio semaphore (ours is never closed).
fn closed() -> PyErr {
    PyRuntimeError::new_err("the semaphore was closed")
}

#[pymethods]
impl Semaphore {
    #[new]
    #[pyo3(signature = (value = IntArg::of(1)), text_signature = "(value=1)")]
    fn new(value: IntArg) -> PyResult<Self> {
        let value = value.value;
        if value < 0 {
            // asyncio's wording
            return Err(PyValueError::new_err(
                "Semaphore initial value must be >= 0",
            ));
        }
        let max = tokio::sync::Semaphore::MAX_PERMITS;
        let value = usize::try_from(value)
            .ok()
            .filter(|&value| value <= max)
            .ok_or_else(|| {
                PyValueError::new_err(format!("Semaphore initial value must be <= {max}"))
            })?;
        Ok(Semaphore {
            permits: Arc::new(Permits {
                free: Arc::new(tokio::sync::Semaphore::new(value)),
                held: AtomicUsize::new(0),
            }),
        })
    }

    /// An awaitable that waits for a permit and gives `True`.
    fn acquire(&self) -> RustFuture {
        self.acquiring(true)
    }

    /// Gives a held permit back; `ValueError` if none is held (bounded).
    fn release(&self) -> PyResult<()> {
        self.permits
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                held.checked_sub(1)
            })
            .map_err(|_| PyValueError::new_err("BoundedSemaphore released too many times"))?;
        self.permits.free.add_permits(1);
        Ok(())
    }

    /// Whether an `acquire()` would have to wait: no permit free (tokio hands a released
    /// permit straight to the first waiter, so waiters alone also make it locked).
    fn locked(&self) -> bool {
        self.permits.free.available_permits() == 0
    }

    // ANCHOR: aenter_aexit
    /// `async with sem:` waits for a permit (the awaitable gives `None`).
    fn __aenter__(&self) -> RustFuture {
        self.acquiring(false)
    }

    /// Leaving `async with`: releases the permit now, and returns an awaitable giving
    /// `None` (falsy, so an exception raised in the block propagates unchanged).
    #[pyo3(signature = (typ, val, tb))]
    fn __aexit__(
        &self,
        typ: &Bound<'_, PyAny>,
        val: &Bound<'_, PyAny>,
        tb: &Bound<'_, PyAny>,
    ) -> PyResult<RustFuture> {
        let _ = (typ, val, tb);
        self.release()?;
        Ok(RustFuture::attempt_first(|py| {
            Ok(Attempted::Ready(py.None()))
        }))
    }
    // ANCHOR_END: aenter_aexit

    fn __repr__(&self) -> String {
        let state = if self.locked() { "locked" } else { "unlocked" };
        let free = self.permits.free.available_permits();
        format!("<Semaphore [{state}, value:{free}]>")
    }
}
