//! `RustCoroutine`: a coroutine class written in Rust, the PyO3 0.12 way.
//!
//! `send`/`throw`/`close` are ordinary `#[pymethods]`; `__await__`, `__iter__` and
//! `__next__` are slots filled through `#[pyproto]` (`PyAsyncProtocol`,
//! `PyIterProtocol`). A step returns `IterNextOutput::Yield(value)` or
//! `IterNextOutput::Return(value)`, which PyO3 turns into `StopIteration((value,))`, so a
//! tuple or an exception instance survives as `StopIteration.value` (`None` is raised as
//! a bare `StopIteration()`, as CPython does: `compat::returned`). The states follow a
//! native coroutine's (`inspect.getcoroutinestate`: created, suspended, closed).
//!
//! The protocol pieces `RustAwait` and `RustFuture` share (states, errors, building the
//! exception `throw` raises) live here too.

use pyo3::class::iter::{IterNextOutput, PyIterNextOutput};
use pyo3::exceptions::{
    PyOverflowError, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::pycell::PyRefMut;
use pyo3::types::PyTuple;
use pyo3::{
    ffi, wrap_pyfunction, AsPyPointer, PyAsyncProtocol, PyGCProtocol, PyIterProtocol, PyNativeType,
    PyObjectProtocol, PyTraverseError, PyVisit,
};

use crate::compat;
use crate::slots::Stepped;

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
    /// (`IterNextOutput::Return`, which PyO3 raises as `StopIteration`).
    fn step(&mut self, py: Python, sent_is_none: bool) -> PyResult<PyIterNextOutput> {
        match self.state {
            State::Finished => Err(reuse_error()),
            State::Running => Err(already_executing()),
            State::Created if !sent_is_none => Err(just_started_error()),
            _ if self.remaining > 0 => {
                self.remaining -= 1;
                self.state = State::Suspended;
                Ok(IterNextOutput::Yield(py.None()))
            }
            _ => {
                let value = self.finish().unwrap_or_else(|| py.None());
                Ok(IterNextOutput::Return(value))
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

/// Borrows `slf` for a step; a second step while one runs is refused as CPython does
/// (PyO3 0.12's own `&mut self` receivers would raise `RuntimeError: Already borrowed`).
fn begin(slf: &PyCell<RustCoroutine>) -> PyResult<PyRefMut<'_, RustCoroutine>> {
    slf.try_borrow_mut().map_err(|_| already_executing())
}

// ANCHOR: pymethods
#[pymethods]
impl RustCoroutine {
    /// send(value) -> yields None, or raises StopIteration(result) when finished.
    #[text_signature = "($self, value, /)"]
    fn send(slf: &PyCell<Self>, value: &PyAny) -> PyResult<PyIterNextOutput> {
        let py = slf.py();
        begin(slf)?.step(py, value.is_none()).and_then(|output| compat::returned(py, output))
    }

    /// throw(typ[, val[, tb]]) -> raises the exception out of the coroutine and finishes it.
    #[args(args = "*")]
    #[text_signature = "($self, typ, val=None, tb=None, /)"]
    fn throw(slf: &PyCell<Self>, args: &PyTuple) -> PyResult<PyObject> {
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
    #[text_signature = "($self)"]
    fn close(slf: &PyCell<Self>) -> PyResult<()> {
        let value = begin(slf)?.finish();
        drop(value); // after the borrow is released, as in `throw`
        Ok(())
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
    fn __next__(slf: &PyCell<Self>) -> PyResult<PyIterNextOutput> {
        let py = slf.py();
        begin(slf)?.step(py, true).and_then(|output| compat::returned(py, output))
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

// ANCHOR: thrown_exception
/// What `throw(*args)` checks on entry, before anything else: the argument count, and
/// CPython 3.12+'s deprecation of the three-argument form.
pub(crate) fn check_throw_arguments(args: &PyTuple) -> PyResult<()> {
    if let Some(message) = compat::throw_arity_message(args.len()) {
        return Err(PyTypeError::new_err(message));
    }
    compat::warn_legacy_throw_signature(args.py(), args.len())
}

/// The exception `coro.throw(*args)` raises, normalised as CPython's `gen.throw` does
/// (`_gen_throw` + `PyErr_NormalizeException`).
///
/// `Err` for invalid arguments (the coroutine's state is left alone); `Ok(err)` for the
/// exception to throw in, which is the error of instantiating the exception class if that
/// raised (CPython throws that one in instead).
pub(crate) fn thrown_exception(args: &PyTuple) -> PyResult<PyErr> {
    let py = args.py();
    let typ = args.get_item(0);
    // `get_item` panics out of range in PyO3 0.12 (no `Result`).
    let optional = |index: usize| {
        (args.len() > index)
            .then(|| args.get_item(index))
            .filter(|arg| !arg.is_none())
    };
    let (val, tb) = (optional(1), optional(2));
    if let Some(tb) = tb {
        // SAFETY: `tb` is a live object; the check only reads its type.
        if unsafe { ffi::PyTraceBack_Check(tb.as_ptr()) } == 0 {
            return Err(PyTypeError::new_err(
                "throw() third argument must be a traceback object",
            ));
        }
    }
    // SAFETY: `typ` is a live object; the checks only read its type and flags.
    let (is_class, is_instance) = unsafe {
        (
            ffi::PyExceptionClass_Check(typ.as_ptr()) != 0,
            ffi::PyExceptionInstance_Check(typ.as_ptr()) != 0,
        )
    };
    if is_class {
        return Ok(match instantiate(py, typ, val) {
            Ok(exception) => with_traceback(py, exception, tb),
            Err(err) => err,
        });
    }
    if is_instance {
        if val.is_some() {
            return Err(PyTypeError::new_err(
                "instance exception may not have a separate value",
            ));
        }
        let tb = match tb {
            Some(tb) => Some(tb),
            None => Some(typ.getattr("__traceback__")?).filter(|t| !t.is_none()),
        };
        return Ok(with_traceback(py, typ, tb));
    }
    Err(not_an_exception(typ))
}

/// An instance of the exception class `typ` made from `val`: `val` itself if it is an
/// instance of (a subclass of) `typ`, else `typ()`, `typ(*val)` or `typ(val)`.
fn instantiate<'py>(
    py: Python<'py>,
    typ: &'py PyAny,
    val: Option<&'py PyAny>,
) -> PyResult<&'py PyAny> {
    let exception = match val {
        None => typ.call0()?,
        Some(val) => {
            // SAFETY: `val` and `typ` are live; `PyExceptionInstance_Class` returns a
            // borrowed reference to `val`'s class, used only during this call.
            let already = unsafe {
                ffi::PyExceptionInstance_Check(val.as_ptr()) != 0
                    && match ffi::PyObject_IsSubclass(
                        ffi::PyExceptionInstance_Class(val.as_ptr()),
                        typ.as_ptr(),
                    ) {
                        -1 => return Err(PyErr::fetch(py)),
                        result => result == 1,
                    }
            };
            if already {
                val
            } else if let Ok(tuple) = val.downcast::<PyTuple>() {
                typ.call1(tuple)?
            } else {
                typ.call1((val,))?
            }
        }
    };
    // SAFETY: `exception` is a live object; the check only reads its type.
    if unsafe { ffi::PyExceptionInstance_Check(exception.as_ptr()) } == 0 {
        return Err(PyTypeError::new_err(format!(
            "calling {} should have returned an instance of BaseException, not {}",
            typ.repr()?,
            exception.get_type().repr()?
        )));
    }
    Ok(exception)
}

fn not_an_exception(typ: &PyAny) -> PyErr {
    PyTypeError::new_err(format!(
        "exceptions must be classes or instances deriving from BaseException, not {}",
        compat::type_name(typ)
    ))
}

/// A `PyErr` that raises the exception instance `exception` with traceback `tb`, the way
/// `PyErr_Restore(type, value, tb)` in CPython's `gen.throw` does (PyO3 0.12 has no public
/// constructor taking a traceback, so the error is restored and fetched back).
fn with_traceback(py: Python, exception: &PyAny, tb: Option<&PyAny>) -> PyErr {
    // SAFETY: `exception` is a live exception instance and `tb`, if any, a live traceback
    // (checked by the caller). `PyErr_Restore` steals one reference to each argument, so
    // each gets a new one (`Py_INCREF` of the class, `into_ptr` of the others). The GIL is
    // held and no other error is set (ours were returned as `Err` earlier), so `fetch`
    // takes back exactly this triple.
    unsafe {
        let class = ffi::PyExceptionInstance_Class(exception.as_ptr());
        ffi::Py_INCREF(class);
        let tb = tb.map_or(std::ptr::null_mut(), |tb| tb.to_object(py).into_ptr());
        ffi::PyErr_Restore(class, exception.to_object(py).into_ptr(), tb);
    }
    PyErr::fetch(py)
}

/// The exception that leaves the coroutine when `thrown` is raised inside it: itself,
/// except that `StopIteration` becomes `RuntimeError("coroutine raised StopIteration")`
/// caused by it (PEP 479), as it does for a native coroutine — which, before its first
/// step, converts it only up to CPython 3.11.
pub(crate) fn escaping(py: Python, thrown: PyErr, started: bool) -> PyErr {
    let converts = started || compat::unstarted_throw_converts_stop_iteration();
    if !converts || !thrown.is_instance::<PyStopIteration>(py) {
        return thrown;
    }
    let err = PyRuntimeError::new_err("coroutine raised StopIteration");
    compat::set_cause(py, &err, thrown);
    err
}
// ANCHOR_END: thrown_exception

// ANCHOR: fast_step
/// The step the hand-filled slots (`crate::slots`) call: the same as `send`'s.
impl Stepped for RustCoroutine {
    fn send_step(slf: &PyCell<Self>, sent: &PyAny) -> PyResult<PyIterNextOutput> {
        begin(slf)?.step(slf.py(), sent.is_none())
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
#[pyfunction]
#[text_signature = "(n, value)"]
pub fn countdown(n: i128, value: PyObject) -> PyResult<RustCoroutine> {
    if n < 0 {
        return Err(PyValueError::new_err(format!(
            "countdown() needs n >= 0, got {}",
            n
        )));
    }
    let n = u64::try_from(n)
        .map_err(|_| PyOverflowError::new_err(format!("countdown() needs n < 2**64, got {}", n)))?;
    Ok(RustCoroutine::new(Kind::Countdown, n, value))
}
// ANCHOR_END: factories

/// Adds `ready` and `countdown` to the module (PyO3 0.12's `#[pyfunction]` wrappers are
/// private to this file).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(countdown, m)?)
}
