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
//! The protocol pieces `RustAwait` and `RustFuture` share (states, errors, building the
//! exception `throw` raises) live here too.

use pyo3::exceptions::{
    PyBaseException, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyTraceback, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::compat;
use crate::slots::{Sent, Stepped};

/// Where a coroutine is in its life (shared with `RustAwait` and `RustFuture`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    /// Made, never stepped: only `None` may be sent.
    Created,
    /// Stopped at a `yield`, waiting to be resumed.
    Suspended,
    /// Inside a step that runs Python code (`RustAwait` calling its inner iterator).
    Running,
    /// Returned, raised or closed: every further step fails.
    Finished,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Suspended => "suspended",
            State::Running => "running",
            State::Finished => "closed",
        }
    }
}

pub(crate) fn reuse_error() -> PyErr {
    PyRuntimeError::new_err("cannot reuse already awaited coroutine")
}

pub(crate) fn just_started_error() -> PyErr {
    PyTypeError::new_err("can't send non-None value to a just-started coroutine")
}

/// What a native coroutine raises when resumed while it is running.
pub(crate) fn already_executing() -> PyErr {
    PyValueError::new_err("coroutine already executing")
}

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
        RustCoroutine { kind, remaining, value: Some(value), state: State::Created }
    }

    // ANCHOR: step
    /// One step, as `coro.send(sent)` does: yields `None`, or returns the result.
    fn advance<'py>(&mut self, py: Python<'py>, sent_is_none: bool) -> PyResult<Sent<'py>> {
        match self.state {
            State::Finished => Err(reuse_error()),
            State::Running => Err(already_executing()),
            State::Created if !sent_is_none => Err(just_started_error()),
            _ if self.remaining > 0 => {
                self.remaining -= 1;
                self.state = State::Suspended;
                Ok(Sent::Yield(py.None().into_bound(py)))
            }
            _ => {
                let value = self.finish().unwrap_or_else(|| py.None());
                Ok(Sent::Return(value.into_bound(py)))
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

/// Borrows `slf` for a step; a second step while one runs is refused as CPython does.
fn begin<'py>(slf: &Bound<'py, RustCoroutine>) -> PyResult<PyRefMut<'py, RustCoroutine>> {
    slf.try_borrow_mut().map_err(|_| already_executing())
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
        begin(slf)?.advance(slf.py(), true)?.into_method_result()
    }

    /// send(value) -> yields None, or raises StopIteration(result) when finished.
    #[pyo3(signature = (value, /))]
    fn send(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        begin(slf)?.advance(slf.py(), value.is_none())?.into_method_result()
    }

    /// throw(typ[, val[, tb]]) -> raises the exception out of the coroutine and finishes it.
    #[pyo3(signature = (*args), text_signature = "($self, typ, val=None, tb=None, /)")]
    fn throw(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        check_throw_arguments(args)?;
        // Normalised before borrowing: instantiating the exception runs Python code.
        let thrown = thrown_exception(args)?;
        let mut this = begin(slf)?;
        let started = match this.state {
            State::Finished => return Err(reuse_error()),
            State::Running => return Err(already_executing()),
            State::Created => false,
            State::Suspended => true,
        };
        let value = this.finish();
        drop(this);
        drop(value); // may run arbitrary `__del__`: after the borrow is released
        Err(escaping(py, thrown, started))
    }

    /// close() -> None: finishes the coroutine (quietly if it already is).
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let value = begin(slf)?.finish();
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

// ANCHOR: thrown_exception
/// What `throw(*args)` checks on entry, before anything else: the argument count, and
/// CPython 3.12+'s deprecation of the three-argument form.
pub(crate) fn check_throw_arguments(args: &Bound<'_, PyTuple>) -> PyResult<()> {
    let py = args.py();
    if let Some(message) = compat::throw_arity_message(py, args.len()) {
        return Err(PyTypeError::new_err(message));
    }
    compat::warn_legacy_throw_signature(py, args.len())
}

/// The exception `coro.throw(*args)` raises, normalised as CPython's `gen.throw` does
/// (`_gen_throw` + `PyErr_NormalizeException`).
///
/// `Err` for invalid arguments (the coroutine's state is left alone); `Ok(err)` for the
/// exception to throw in, which is the error of instantiating the exception class if that
/// raised (CPython throws that one in instead).
pub(crate) fn thrown_exception(args: &Bound<'_, PyTuple>) -> PyResult<PyErr> {
    let typ = args.get_item(0)?;
    let optional = |index: usize| args.get_item(index).ok().filter(|arg| !arg.is_none());
    let (val, tb) = (optional(1), optional(2));
    let tb = match tb {
        Some(tb) => Some(tb.cast_into::<PyTraceback>().map_err(|_| {
            PyTypeError::new_err("throw() third argument must be a traceback object")
        })?),
        None => None,
    };
    let exception = if let Ok(class) = typ.cast::<PyType>() {
        if !class.is_subclass_of::<PyBaseException>()? {
            return Err(not_an_exception(&typ));
        }
        match instantiate(class, val.as_ref()) {
            Ok(exception) => exception,
            Err(err) => return Ok(err),
        }
    } else if typ.is_instance_of::<PyBaseException>() {
        if val.is_some() {
            return Err(PyTypeError::new_err("instance exception may not have a separate value"));
        }
        typ
    } else {
        return Err(not_an_exception(&typ));
    };
    if let Some(tb) = tb {
        exception.setattr("__traceback__", tb)?;
    }
    Ok(PyErr::from_value(exception))
}

/// An instance of the exception class `class` made from `val`: `val` itself if it is an
/// instance of (a subclass of) `class`, else `class()`, `class(*val)` or `class(val)`.
fn instantiate<'py>(
    class: &Bound<'py, PyType>,
    val: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let exception = match val {
        None => class.call0()?,
        Some(val) if val.is_instance_of::<PyBaseException>() && val.is_instance(class)? => {
            val.clone()
        }
        Some(val) => match val.cast::<PyTuple>() {
            Ok(args) => class.call1(args)?,
            Err(_) => class.call1((val,))?,
        },
    };
    if !exception.is_instance_of::<PyBaseException>() {
        return Err(PyTypeError::new_err(format!(
            "calling {} should have returned an instance of BaseException, not {}",
            class.repr()?,
            exception.get_type().repr()?
        )));
    }
    Ok(exception)
}

fn not_an_exception(typ: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "exceptions must be classes or instances deriving from BaseException, not {}",
        compat::type_name(typ)
    ))
}

/// The exception that leaves the coroutine when `thrown` is raised inside it: itself,
/// except that `StopIteration` becomes `RuntimeError("coroutine raised StopIteration")`
/// caused by it (PEP 479), as it does for a native coroutine — which, before its first
/// step, converts it only up to CPython 3.11.
pub(crate) fn escaping(py: Python<'_>, thrown: PyErr, started: bool) -> PyErr {
    let converts = started || compat::unstarted_throw_converts_stop_iteration(py);
    if !converts || !thrown.is_instance_of::<PyStopIteration>(py) {
        return thrown;
    }
    let err = PyRuntimeError::new_err("coroutine raised StopIteration");
    // As CPython's own conversion: the StopIteration is both cause and context.
    let _ = err.value(py).setattr("__context__", thrown.value(py));
    err.set_cause(py, Some(thrown));
    err
}
// ANCHOR_END: thrown_exception

// ANCHOR: fast_step
/// The step the hand-filled slots (`crate::slots`) call: the same as `send`'s.
impl Stepped for RustCoroutine {
    fn send_step<'py>(slf: &Bound<'py, Self>, sent: &Bound<'py, PyAny>) -> PyResult<Sent<'py>> {
        begin(slf)?.advance(slf.py(), sent.is_none())
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
        return Err(PyValueError::new_err(format!("countdown() needs n >= 0, got {n}")));
    }
    let n = u64::try_from(n).map_err(|_| {
        pyo3::exceptions::PyOverflowError::new_err(format!("countdown() needs n < 2**64, got {n}"))
    })?;
    Ok(RustCoroutine::new(Kind::Countdown, n, value))
}
// ANCHOR_END: factories

/// Adds `ready` and `countdown` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(countdown, m)?)
}
