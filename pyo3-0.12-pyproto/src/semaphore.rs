//! An async context manager: `Semaphore`, a bounded semaphore on tokio's (fair, first come
//! first served, and `Sync`): every event loop of the process, in any thread, can share
//! one, which `asyncio.Semaphore` cannot. Each waiting Task is woken through its own
//! loop by the bridge. `__aenter__`/`__aexit__` are the last two methods of PyO3 0.12's
//! `PyAsyncProtocol` (methods, not slots: CPython has no slot for them).
//!
//! A permit travels to the acquiring Task as a tokio permit ([`Acquired`]); only when the
//! Task collects it is it forgotten into the count of held permits. If the Task is
//! cancelled (or collected) before it takes a permit that was ready, the bridge drops
//! the `Acquired`, and the permit goes back: a cancelled acquire takes none.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::{PyAsyncProtocol, PyObjectProtocol};
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

impl IntoPy<PyObject> for Acquired {
    fn into_py(self, py: Python) -> PyObject {
        self.permit.forget();
        self.permits.held.fetch_add(1, Ordering::SeqCst);
        if self.gives_true {
            true.into_py(py)
        } else {
            py.None()
        }
    }
}
// ANCHOR_END: give_back

// ANCHOR: class
/// A bounded semaphore that tasks of every event loop of the process may share.
#[pyclass(module = "pyo3_0_12_pyproto")]
#[text_signature = "(value=1)"]
pub struct Semaphore {
    permits: Arc<Permits>,
}
// ANCHOR_END: class

impl Semaphore {
    /// An awaitable that waits for a permit (first come, first served).
    ///
    /// Its first step takes a free permit if there is one and returns at once, with
    /// nothing of the bridge made; tokio hands a released permit straight to the first
    /// waiter, so a free permit means nobody waits and taking it jumps no queue.
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
                    return Ok(Attempted::Ready(acquired.into_py(py)));
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

/// PyO3 0.12's `#[pymethods]` generates unsafe calls outside `unsafe` blocks in the
/// wrappers next to the impl (see `bridge::methods`); this module holds the impl and
/// nothing else, so the allowance covers nothing of ours.
#[allow(unsafe_op_in_unsafe_fn)]
mod methods {
    use super::*;

    #[pymethods]
    impl Semaphore {
        #[new]
        #[args(value = "IntArg::of(1)")]
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
                    PyValueError::new_err(format!("Semaphore initial value must be <= {}", max))
                })?;
            Ok(Semaphore {
                permits: Arc::new(Permits {
                    free: Arc::new(tokio::sync::Semaphore::new(value)),
                    held: AtomicUsize::new(0),
                }),
            })
        }

        /// An awaitable that waits for a permit and gives `True`.
        #[text_signature = "($self)"]
        fn acquire(&self) -> RustFuture {
            self.acquiring(true)
        }

        /// Gives a held permit back; `ValueError` if none is held (bounded).
        #[text_signature = "($self)"]
        pub(super) fn release(&self) -> PyResult<()> {
            self.permits
                .held
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                    held.checked_sub(1)
                })
                .map_err(|_| PyValueError::new_err("BoundedSemaphore released too many times"))?;
            self.permits.free.add_permits(1);
            Ok(())
        }

        /// Whether an `acquire()` would have to wait: no permit free (tokio hands a
        /// released permit straight to the first waiter, so waiters alone also make it
        /// locked).
        #[text_signature = "($self)"]
        pub(super) fn locked(&self) -> bool {
            self.permits.free.available_permits() == 0
        }
    }
}

// ANCHOR: aenter_aexit
#[pyproto]
impl PyAsyncProtocol for Semaphore {
    /// `async with sem:` waits for a permit (the awaitable gives `None`).
    fn __aenter__(&'p mut self) -> RustFuture {
        self.acquiring(false)
    }

    /// Leaving `async with`: releases the permit now, and returns an awaitable giving
    /// `None` (falsy, so an exception raised in the block propagates unchanged).
    fn __aexit__(
        &'p mut self,
        typ: Option<&'p PyAny>,
        val: Option<&'p PyAny>,
        tb: Option<&'p PyAny>,
    ) -> PyResult<RustFuture> {
        let _ = (typ, val, tb);
        self.release()?;
        Ok(RustFuture::attempt_first(|py| {
            Ok(Attempted::Ready(py.None()))
        }))
    }
}
// ANCHOR_END: aenter_aexit

#[pyproto]
impl PyObjectProtocol for Semaphore {
    fn __repr__(&self) -> String {
        let state = if self.locked() { "locked" } else { "unlocked" };
        let free = self.permits.free.available_permits();
        format!("<Semaphore [{}, value:{}]>", state, free)
    }
}
