//! `RustCoroutine`: a coroutine class written in Rust, today's PyO3 way.
//!
//! Every part of the coroutine protocol is an ordinary method in `#[pymethods]`: PyO3
//! fills the `am_await` slot from `__await__` and `tp_iter`/`tp_iternext` from
//! `__iter__`/`__next__`, and `send`/`throw`/`close` are plain methods. A step returns
//! its value by raising `StopIteration((value,))`, so a tuple or an exception instance
//! survives as `StopIteration.value` (`None` is raised as a bare `StopIteration()`, as
//! CPython does: `compat::stop_iteration`). The states follow a native coroutine's
//! (`inspect.getcoroutinestate`: created, suspended, closed).
//!
//! The protocol pieces it shares with `RustAwait` and `RustFuture` (states, errors,
//! building the exception `throw` raises) are in `crate::protocol`.

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::protocol::{
    already_executing, borrow_for_step, check_throw_arguments, escaping, just_started_error,
    reuse_error, thrown_exception, State, Step,
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
#[pyclass(module = "pyo3_modern_pymethods")]
pub struct RustCoroutine {
    kind: Kind,
    /// `None`s still to yield before returning.
    remaining: u64,
    /// The result; taken when the coroutine finishes.
    value: Option<Py<PyAny>>,
    state: State,
}
// ANCHOR_END: class

impl RustCoroutine {
    fn new(kind: Kind, remaining: u64, value: Py<PyAny>) -> Self {
        RustCoroutine {
            kind,
            remaining,
            value: Some(value),
            state: State::Created,
        }
    }

    // ANCHOR: step
    /// One step, as `coro.send(sent)` does: yields `None`, or returns the result.
    fn step<'py>(&mut self, py: Python<'py>, sent_is_none: bool) -> PyResult<Step<'py>> {
        match self.state {
            State::Finished => Err(reuse_error()),
            State::Running => Err(already_executing()),
            State::Created if !sent_is_none => Err(just_started_error()),
            _ if self.remaining > 0 => {
                self.remaining -= 1;
                self.state = State::Suspended;
                Ok(Step::Yield(py.None().into_bound(py)))
            }
            _ => {
                let value = self.finish().unwrap_or_else(|| py.None());
                Ok(Step::Return(value.into_bound(py)))
            }
        }
    }
    // ANCHOR_END: step

    /// Marks the coroutine finished and hands back its result, if still held.
    fn finish(&mut self) -> Option<Py<PyAny>> {
        self.state = State::Finished;
        self.value.take()
    }
}

// ANCHOR: pymethods
#[pymethods]
impl RustCoroutine {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// `send(None)`.
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        borrow_for_step(slf)?
            .step(slf.py(), true)?
            .into_method_result()
    }

    /// send(value) -> yields None, or raises StopIteration(result) when finished.
    #[pyo3(signature = (value, /))]
    fn send(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        borrow_for_step(slf)?
            .step(slf.py(), value.is_none())?
            .into_method_result()
    }

    /// throw(typ[, val[, tb]]) -> raises the exception out of the coroutine and finishes it.
    #[pyo3(signature = (*args), text_signature = "($self, typ, val=None, tb=None, /)")]
    fn throw(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
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
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let value = borrow_for_step(slf)?.finish();
        drop(value); // after the borrow is released, as in `throw`
        Ok(())
    }

    fn __repr__(&self) -> String {
        let kind = match self.kind {
            Kind::Ready => "ready".to_owned(),
            Kind::Countdown => format!("countdown(remaining={})", self.remaining),
        };
        format!("<RustCoroutine {} {}>", kind, self.state.name())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
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

    fn step<'py>(slf: &Bound<'py, Self>, sent: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
        borrow_for_step(slf)?.step(slf.py(), sent.is_none())
    }
}
// ANCHOR_END: fast_step

// ANCHOR: factories
/// ready(value) -> RustCoroutine that returns `value` on its first step.
#[pyfunction]
pub fn ready(value: Py<PyAny>) -> RustCoroutine {
    RustCoroutine::new(Kind::Ready, 0, value)
}

/// countdown(n, value) -> RustCoroutine that yields None `n` times, then returns `value`.
#[pyfunction]
pub fn countdown(n: i128, value: Py<PyAny>) -> PyResult<RustCoroutine> {
    if n < 0 {
        return Err(PyValueError::new_err(format!(
            "countdown() needs n >= 0, got {n}"
        )));
    }
    let n = u64::try_from(n)
        .map_err(|_| PyOverflowError::new_err(format!("countdown() needs n < 2**64, got {n}")))?;
    Ok(RustCoroutine::new(Kind::Countdown, n, value))
}
// ANCHOR_END: factories

/// Adds `ready` and `countdown` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(countdown, m)?)
}
