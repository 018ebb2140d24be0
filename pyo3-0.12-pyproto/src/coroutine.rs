//! `RustCoroutine`: a coroutine class written in Rust, the PyO3 0.12 way.
//!
//! `send`/`throw`/`close` are ordinary `#[pymethods]`; `__await__`, `__iter__` and
//! `__next__` are slots filled through `#[pyproto]` (`PyAsyncProtocol`,
//! `PyIterProtocol`). `__next__` returns `IterNextOutput::Return(value)`, which PyO3 turns
//! into `StopIteration((value,))`, so a tuple or an exception instance survives as
//! `StopIteration.value`. The states follow a native coroutine's
//! (`inspect.getcoroutinestate`: created, suspended, closed).

use pyo3::class::iter::IterNextOutput;
use pyo3::exceptions::{
    PyOverflowError, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{
    ffi, wrap_pyfunction, AsPyPointer, PyAsyncProtocol, PyGCProtocol, PyIterProtocol, PyNativeType,
    PyObjectProtocol, PyTraverseError, PyVisit,
};

use crate::compat;

/// What a step of the coroutine does: yield a value, or return one (`StopIteration`).
type Step = IterNextOutput<PyObject, PyObject>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not stepped yet: only `None` may be sent.
    Created,
    /// Yielded at least once.
    Suspended,
    /// Returned, closed, or had an exception thrown in: every further step fails.
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ready,
    Countdown,
}

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

impl RustCoroutine {
    fn new(kind: Kind, remaining: u64, value: PyObject) -> Self {
        RustCoroutine {
            kind,
            remaining,
            value: Some(value),
            state: State::Created,
        }
    }

    /// One step, as `coro.send(sent)` does; `sent_is_none` says whether `sent` is `None`.
    fn step(&mut self, py: Python, sent_is_none: bool) -> PyResult<Step> {
        match self.state {
            State::Finished => Err(reuse_error()),
            State::Created if !sent_is_none => Err(PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            )),
            _ if self.remaining > 0 => {
                self.remaining -= 1;
                self.state = State::Suspended;
                Ok(IterNextOutput::Yield(py.None()))
            }
            _ => Ok(IterNextOutput::Return(
                self.finish().unwrap_or_else(|| py.None()),
            )),
        }
    }

    /// Marks the coroutine finished and hands back its result, if still held.
    fn finish(&mut self) -> Option<PyObject> {
        self.state = State::Finished;
        self.value.take()
    }
}

fn reuse_error() -> PyErr {
    PyRuntimeError::new_err("cannot reuse already awaited coroutine")
}

#[pymethods]
impl RustCoroutine {
    /// send(value) -> yields None, or raises StopIteration(result) when finished.
    #[text_signature = "($self, value)"]
    fn send(&mut self, py: Python, value: &PyAny) -> PyResult<Step> {
        self.step(py, value.is_none())
    }

    /// throw(typ[, val[, tb]]) -> raises the exception out of the coroutine and finishes it.
    #[args(args = "*")]
    #[text_signature = "($self, typ, val=None, tb=None, /)"]
    fn throw(slf: &PyCell<Self>, args: &PyTuple) -> PyResult<PyObject> {
        let py = slf.py();
        if let Some(message) = compat::throw_arity_message(args.len()) {
            return Err(PyTypeError::new_err(message));
        }
        compat::warn_legacy_throw_signature(py, args.len())?;
        // Normalised without holding a borrow: instantiating the exception runs Python code.
        let thrown = thrown_exception(py, args)?;
        let mut this = slf.try_borrow_mut()?;
        if this.state == State::Finished {
            return Err(reuse_error());
        }
        let started = this.state == State::Suspended;
        let value = this.finish();
        drop(this);
        drop(value); // may run arbitrary `__del__`: after the borrow is released
        Err(escaping(py, thrown, started))
    }

    /// close() -> None: finishes the coroutine (quietly if it already is).
    #[text_signature = "($self)"]
    fn close(slf: &PyCell<Self>) -> PyResult<()> {
        let value = slf.try_borrow_mut()?.finish();
        drop(value); // after the borrow is released, as in `throw`
        Ok(())
    }
}

/// The exception `coro.throw(*args)` raises, normalised as CPython's `gen.throw` does
/// (`_gen_throw` + `PyErr_NormalizeException`).
///
/// `Err` for invalid arguments (the coroutine's state is left alone); `Ok(err)` for the
/// exception to throw in, which is the error of instantiating the exception class if that
/// raised (CPython throws that one in instead).
fn thrown_exception(py: Python, args: &PyTuple) -> PyResult<PyErr> {
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
    Err(PyTypeError::new_err(format!(
        "exceptions must be classes or instances deriving from BaseException, not {}",
        compat::type_name(typ)
    )))
}

/// The exception that leaves the coroutine when `thrown` is raised inside it: itself,
/// except that `StopIteration` becomes `RuntimeError("coroutine raised StopIteration")`
/// caused by it (PEP 479), as it does for a native coroutine — which, before its first
/// step, converts it only up to CPython 3.11.
fn escaping(py: Python, thrown: PyErr, started: bool) -> PyErr {
    let converts = started || compat::unstarted_throw_converts_stop_iteration();
    if !converts || !thrown.is_instance::<PyStopIteration>(py) {
        return thrown;
    }
    let err = PyRuntimeError::new_err("coroutine raised StopIteration");
    let instance = err.instance(py);
    let cause = thrown.instance(py);
    // Best effort: the RuntimeError is raised either way.
    let _ = instance.setattr("__cause__", cause);
    let _ = instance.setattr("__context__", cause);
    err
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

    /// `send(None)`. Returning `IterNextOutput::Return(v)` raises `StopIteration(v)`.
    fn __next__(slf: &PyCell<Self>) -> PyResult<Step> {
        let py = slf.py();
        slf.try_borrow_mut()?.step(py, true)
    }
}

#[pyproto]
impl PyObjectProtocol for RustCoroutine {
    fn __repr__(&self) -> String {
        let kind = match self.kind {
            Kind::Ready => "ready".to_owned(),
            Kind::Countdown => format!("countdown(remaining={})", self.remaining),
        };
        let state = match self.state {
            State::Created => "created",
            State::Suspended => "suspended",
            State::Finished => "closed",
        };
        format!("<RustCoroutine {} {}>", kind, state)
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

/// Adds `ready` and `countdown` to the module (PyO3 0.12's `#[pyfunction]` wrappers are
/// private to this file).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(countdown, m)?)
}
