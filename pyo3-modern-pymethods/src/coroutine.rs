//! `RustCoroutine`: a coroutine object written in Rust, with the state machine of a
//! native `async def` coroutine.
//!
//! A native coroutine is created, then suspended and resumed any number of times, and
//! ends exactly once: by returning, by raising (a thrown exception included) or by being
//! closed. Every later step raises `RuntimeError`. `__await__` returns the object
//! itself, and the object is its own iterator, so `await`, `yield from`, asyncio's Task
//! and `drive` can all step it.

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyTraceback, PyTuple, PyType};

use crate::compat;

/// Where a coroutine is in its life (shared with `RustAwait` and `RustFuture`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    /// Made, never stepped: only `send(None)` may start it.
    Created,
    /// Stopped at a `yield`, waiting to be resumed.
    Suspended,
    /// Inside a step that runs Python code (only `RustAwait` has such steps).
    Running,
    /// Returned, raised or closed: it can never run again.
    Finished,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Suspended => "suspended",
            State::Running => "running",
            State::Finished => "finished",
        }
    }
}

// ANCHOR: class
/// A coroutine written in Rust: yields `None` `remaining` times, then returns `value`.
#[pyclass(module = "pyo3_modern_pymethods")]
pub struct RustCoroutine {
    state: State,
    remaining: u64,
    /// Taken when the coroutine returns it, dropped when it ends any other way.
    value: Option<Py<PyAny>>,
}
// ANCHOR_END: class

impl RustCoroutine {
    fn new(remaining: u64, value: Py<PyAny>) -> Self {
        RustCoroutine { state: State::Created, remaining, value: Some(value) }
    }

    // ANCHOR: resume
    /// One step, resumed with `sent`: yields `None` or returns through `StopIteration`.
    fn resume(&mut self, py: Python<'_>, sent: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.state {
            State::Finished => Err(reuse_error()),
            State::Running => Err(already_executing()),
            State::Created if !sent.is_none() => Err(just_started_error()),
            _ if self.remaining > 0 => {
                self.remaining -= 1;
                self.state = State::Suspended;
                Ok(py.None())
            }
            _ => {
                self.state = State::Finished;
                let value = self.value.take().unwrap_or_else(|| py.None());
                Err(compat::stop_iteration(value))
            }
        }
    }
    // ANCHOR_END: resume

    /// Ends the coroutine for good and forgets its value.
    fn finish(&mut self) {
        self.state = State::Finished;
        self.value = None;
    }
}

pub(crate) fn reuse_error() -> PyErr {
    PyRuntimeError::new_err("cannot reuse already awaited coroutine")
}

pub(crate) fn just_started_error() -> PyErr {
    PyTypeError::new_err("can't send non-None value to a just-started coroutine")
}

/// What a native coroutine raises when resumed from inside its own step.
pub(crate) fn already_executing() -> PyErr {
    PyValueError::new_err("coroutine already executing")
}

// ANCHOR: thrown_exception
/// The exception `throw(typ, val, tb)` raises, built as `generator.throw` builds it.
pub(crate) fn thrown_exception<'py>(
    typ: &Bound<'py, PyAny>,
    val: Option<&Bound<'py, PyAny>>,
    tb: Option<&Bound<'py, PyAny>>,
) -> PyResult<PyErr> {
    let tb = match tb {
        Some(tb) if !tb.is_none() => {
            Some(tb.cast::<PyTraceback>().map_err(|_| {
                PyTypeError::new_err("throw() third argument must be a traceback object")
            })?)
        }
        _ => None,
    };
    let val = val.filter(|v| !v.is_none());
    let exception = if let Ok(cls) = typ.cast::<PyType>() {
        if !cls.is_subclass_of::<pyo3::exceptions::PyBaseException>()? {
            return Err(not_an_exception(typ));
        }
        match val {
            None => cls.call0()?,
            Some(v) if v.is_instance(cls)? => v.clone(),
            Some(v) => match v.cast::<PyTuple>() {
                Ok(args) => cls.call1(args)?,
                Err(_) => cls.call1((v,))?,
            },
        }
    } else if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        if val.is_some() {
            return Err(PyTypeError::new_err("instance exception may not have a separate value"));
        }
        typ.clone()
    } else {
        return Err(not_an_exception(typ));
    };
    if let Some(tb) = tb {
        exception.setattr("__traceback__", tb)?;
    }
    Ok(PyErr::from_value(exception))
}

/// PEP 479: a `StopIteration` raised inside a coroutine leaves it as `RuntimeError`.
pub(crate) fn escaping(py: Python<'_>, err: PyErr, started: bool) -> PyErr {
    let converts = started || compat::unstarted_throw_converts_stop_iteration(py);
    if converts && err.is_instance_of::<PyStopIteration>(py) {
        let converted = PyRuntimeError::new_err("coroutine raised StopIteration");
        converted.set_cause(py, Some(err));
        return converted;
    }
    err
}
// ANCHOR_END: thrown_exception

fn not_an_exception(typ: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "exceptions must be classes or instances deriving from BaseException, not {}",
        compat::type_name(typ)
    ))
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

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.resume(py, py.None().bind(py))
    }

    fn send(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.resume(py, value)
    }

    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw(
        slf: &Bound<'_, Self>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if val.is_some() || tb.is_some() {
            compat::warn_three_argument_throw(slf.py())?;
        }
        // Built before borrowing `slf`: building it runs Python code.
        let err = thrown_exception(typ, val, tb)?;
        let mut this = slf.try_borrow_mut().map_err(|_| already_executing())?;
        let started = match this.state {
            State::Finished => return Err(reuse_error()),
            State::Running => return Err(already_executing()),
            State::Created => false,
            State::Suspended => true,
        };
        this.finish();
        Err(escaping(slf.py(), err, started))
    }

    fn close(&mut self) {
        self.finish();
    }

    fn __repr__(&self) -> String {
        format!("<RustCoroutine {}, {} yield(s) left>", self.state.name(), self.remaining)
    }
}
// ANCHOR_END: pymethods

// ANCHOR: factories
/// A coroutine that returns `value` on its first step.
#[pyfunction]
pub fn ready(value: Py<PyAny>) -> RustCoroutine {
    RustCoroutine::new(0, value)
}

/// A coroutine that yields `None` `n` times, letting other tasks run, then returns `value`.
#[pyfunction]
pub fn countdown(n: i64, value: Py<PyAny>) -> PyResult<RustCoroutine> {
    let remaining = u64::try_from(n)
        .map_err(|_| PyValueError::new_err(format!("countdown() needs n >= 0, got {n}")))?;
    Ok(RustCoroutine::new(remaining, value))
}
// ANCHOR_END: factories
