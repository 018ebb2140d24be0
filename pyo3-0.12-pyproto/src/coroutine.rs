//! `RustCoroutine`: a coroutine class written in Rust, the PyO3 0.12 way.
//!
//! `send`/`throw`/`close` are ordinary `#[pymethods]`; `__await__`, `__iter__` and
//! `__next__` are slots filled through `#[pyproto]` (`PyAsyncProtocol`,
//! `PyIterProtocol`). A step returns `Step::Yield(value)` or `Step::Return(value)`
//! (PyO3 0.12's `IterNextOutput`), which the methods raise as `StopIteration((value,))`,
//! so a tuple or an exception instance survives as `StopIteration.value` (`None` is
//! raised as a bare `StopIteration()`, as CPython does: `compat::stop_iteration`). The
//! states follow a native coroutine's (`inspect.getcoroutinestate`: created, suspended,
//! closed).
//!
//! The protocol pieces `RustAwait` and `RustFuture` share too (states, errors, building
//! the exception `throw` raises) are in `protocol`; the hand-filled slots that step it on
//! every `await` are in `slots`, which this file feeds through `Stepped`.

use std::cmp::Ordering;

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{
    wrap_pyfunction, PyAsyncProtocol, PyGCProtocol, PyIterProtocol, PyNativeType, PyObjectProtocol,
    PyTraverseError, PyVisit,
};

use crate::protocol::{
    already_executing, borrow_for_step, check_throw_arguments, error_is, escaping,
    just_started_error, reuse_error, thrown_exception, IntoMethodResult, State, Step,
};
use crate::slots::Stepped;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ready,
    Countdown,
}

// ANCHOR: class
/// A coroutine implemented in Rust: made by `ready(value)` or `countdown(n, value)`.
///
/// It has no `#[new]`, so `RustCoroutine()` raises `TypeError`.
#[pyclass(module = "pyo3_0_12_pyproto", gc)]
pub struct RustCoroutine {
    kind: Kind,
    /// `None`s still to yield before returning.
    remaining: u64,
    /// The result; taken when the coroutine finishes.
    value: Option<PyObject>,
    state: State,
}
// ANCHOR_END: class

impl RustCoroutine {
    fn new(kind: Kind, remaining: u64, value: PyObject) -> Self {
        RustCoroutine {
            kind,
            remaining,
            value: Some(value),
            state: State::Created,
        }
    }

    // ANCHOR: step
    /// One step, as `coro.send(sent)` does: yields `None`, or returns the result
    /// (`Step::Return`, which the methods raise as `StopIteration`).
    fn step(&mut self, py: Python, sent_is_none: bool) -> PyResult<Step> {
        match self.state {
            State::Finished => Err(reuse_error()),
            State::Running => Err(already_executing()),
            State::Created if !sent_is_none => Err(just_started_error()),
            _ if self.remaining > 0 => {
                self.remaining -= 1;
                self.state = State::Suspended;
                Ok(Step::Yield(py.None()))
            }
            _ => {
                let value = self.finish().unwrap_or_else(|| py.None());
                Ok(Step::Return(value))
            }
        }
    }
    // ANCHOR_END: step

    /// Marks the coroutine finished and hands back its result, if still held.
    fn finish(&mut self) -> Option<PyObject> {
        self.state = State::Finished;
        self.value.take()
    }
}

// ANCHOR: pymethods
/// PyO3 0.12's `#[pymethods]` turns a `slf: &PyCell<Self>` receiver into an unsafe call
/// (`Python::from_borrowed_ptr`) outside any `unsafe` block, under the receiver's span,
/// in wrapper functions it generates next to the impl; `unsafe_op_in_unsafe_fn` (denied
/// for the workspace) would flag that code of PyO3's. This module holds the impl and
/// nothing else, so the allowance covers nothing of ours.
#[allow(unsafe_op_in_unsafe_fn)]
mod methods {
    use super::*;

    #[pymethods]
    impl RustCoroutine {
        /// send(value) -> yields None, or raises StopIteration(result) when finished.
        #[text_signature = "($self, value, /)"]
        fn send(slf: &PyCell<Self>, value: &PyAny) -> PyResult<Step> {
            let py = slf.py();
            borrow_for_step(slf)?
                .step(py, value.is_none())?
                .into_method_result(py)
        }

        /// throw(typ[, val[, tb]]) -> raises the exception out of the coroutine and finishes it.
        #[args(args = "*")]
        #[text_signature = "($self, typ, val=None, tb=None, /)"]
        fn throw(slf: &PyCell<Self>, args: &PyTuple) -> PyResult<PyObject> {
            let py = slf.py();
            check_throw_arguments(args)?;
            // Normalised before borrowing: instantiating the exception runs Python code.
            let thrown = thrown_exception(args)?;
            let mut this = borrow_for_step(slf)?;
            let started = this.state.started_for_throw()?;
            let value = this.finish();
            drop(this);
            drop(value); // may run arbitrary `__del__`: after the borrow is released
            Err(escaping(py, thrown, started))
        }

        /// close() -> None: finishes the coroutine (quietly if it already is).
        #[text_signature = "($self)"]
        fn close(slf: &PyCell<Self>) -> PyResult<()> {
            let value = borrow_for_step(slf)?.finish();
            drop(value); // after the borrow is released, as in `throw`
            Ok(())
        }
    }
}

#[pyproto]
impl PyAsyncProtocol for RustCoroutine {
    fn __await__(slf: PyRef<Self>) -> PyRef<Self> {
        slf
    }
}

#[pyproto]
impl PyIterProtocol for RustCoroutine {
    fn __iter__(slf: PyRef<Self>) -> PyRef<Self> {
        slf
    }

    /// `send(None)`.
    fn __next__(slf: &PyCell<Self>) -> PyResult<Step> {
        let py = slf.py();
        borrow_for_step(slf)?.step(py, true)?.into_method_result(py)
    }
}

#[pyproto]
impl PyObjectProtocol for RustCoroutine {
    fn __repr__(&self) -> String {
        let kind = match self.kind {
            Kind::Ready => "ready".to_owned(),
            Kind::Countdown => format!("countdown(remaining={})", self.remaining),
        };
        format!("<RustCoroutine {} {}>", kind, self.state.name())
    }
}

#[pyproto]
impl PyGCProtocol for RustCoroutine {
    fn __traverse__(&self, visit: PyVisit) -> Result<(), PyTraverseError> {
        if let Some(value) = &self.value {
            visit.call(value)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.value = None;
    }
}
// ANCHOR_END: pymethods

// ANCHOR: fast_step
/// The step the hand-filled slots (`crate::slots`) call: the same as `send`'s.
impl Stepped for RustCoroutine {
    crate::slots::free_list!();

    fn step(slf: &PyCell<Self>, sent: &PyAny) -> PyResult<Step> {
        borrow_for_step(slf)?.step(slf.py(), sent.is_none())
    }
}
// ANCHOR_END: fast_step

// ANCHOR: factories
/// ready(value) -> RustCoroutine that returns `value` on its first step.
#[pyfunction]
#[text_signature = "(value)"]
pub fn ready(value: PyObject) -> RustCoroutine {
    RustCoroutine::new(Kind::Ready, 0, value)
}

/// countdown(n, value) -> RustCoroutine that yields None `n` times, then returns `value`.
///
/// `n` is taken as an object, not as PyO3 0.12's `i128` (the modern crate's type): that
/// conversion leaks its argument (the `__index__` result), one reference per call.
#[pyfunction]
#[text_signature = "(n, value)"]
pub fn countdown(n: &PyAny, value: PyObject) -> PyResult<RustCoroutine> {
    let py = n.py();
    let count = match n.extract::<u64>() {
        Ok(count) => count,
        Err(err) if error_is::<PyOverflowError>(py, &err) => {
            return Err(if n.compare(0)? == Ordering::Less {
                PyValueError::new_err(format!("countdown() needs n >= 0, got {}", n))
            } else {
                PyOverflowError::new_err(format!("countdown() needs n < 2**64, got {}", n))
            });
        }
        Err(err) => return Err(err),
    };
    Ok(RustCoroutine::new(Kind::Countdown, count, value))
}
// ANCHOR_END: factories

/// Adds `ready` and `countdown` to the module (PyO3 0.12's `#[pyfunction]` wrappers are
/// private to this file).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(countdown, m)?)
}
