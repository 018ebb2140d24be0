//! What every coroutine-like class of this crate shares (`RustCoroutine`, `RustAwait`,
//! `RustFuture`) and what stepping a Python iterator takes: the states and the
//! CPython-worded errors, how `throw`'s arguments become the exception thrown in, how a
//! Rust panic leaves as a Python exception, the one [`Step`] type for "how one step
//! ended", and the two C-level operations of `await`: finding the iterator
//! ([`await_iter`]) and stepping it once ([`step_iter`]).

use std::any::Any;
use std::fmt;

use pyo3::exceptions::{
    PyBaseException, PyOverflowError, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError,
};
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::False;
use pyo3::types::{PyTraceback, PyTuple, PyType};
use pyo3::{Borrowed, PyClass};

use crate::compat;

/// Where a coroutine is in its life (`RustCoroutine`, `RustAwait` and `RustFuture`).
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
    /// The state as `inspect.getcoroutinestate` names it (without the `CORO_` prefix).
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Suspended => "suspended",
            State::Running => "running",
            State::Finished => "closed",
        }
    }

    /// Whether a `throw` into a coroutine in this state finds it started (suspended at a
    /// yield) or not; a finished or running one refuses the throw, with CPython's errors.
    pub(crate) fn started_for_throw(self) -> PyResult<bool> {
        match self {
            State::Finished => Err(reuse_error()),
            State::Running => Err(already_executing()),
            State::Created => Ok(false),
            State::Suspended => Ok(true),
        }
    }
}

/// What a native coroutine raises when stepped after it finished.
pub(crate) fn reuse_error() -> PyErr {
    PyRuntimeError::new_err("cannot reuse already awaited coroutine")
}

/// What a native coroutine raises when sent a value other than `None` before it started.
pub(crate) fn just_started_error() -> PyErr {
    PyTypeError::new_err("can't send non-None value to a just-started coroutine")
}

/// What a native coroutine raises when resumed while it is running.
pub(crate) fn already_executing() -> PyErr {
    PyValueError::new_err("coroutine already executing")
}

/// Borrows a coroutine-like object for one step; a second step while one runs (a
/// `send` from inside the first) is refused with CPython's error, where PyO3's own
/// `&mut self` receivers would raise `RuntimeError: Already borrowed`.
pub(crate) fn borrow_for_step<'py, T: PyClass<Frozen = False>>(
    slf: &Bound<'py, T>,
) -> PyResult<PyRefMut<'py, T>> {
    slf.try_borrow_mut().map_err(|_| already_executing())
}

/// A Rust panic, caught at the border (a slot function, a future's poll), as the Python
/// exception PyO3 uses for panics: `PanicException` with the panic's message, or with
/// "Rust code panicked" when the payload is not a string.
pub(crate) fn panic_error(payload: Box<dyn Any + Send>) -> PyErr {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Rust code panicked".to_owned());
    PanicException::new_err(message)
}

/// An `int` argument as an `i64`, an int beyond the `i64` range clamped to its end, so
/// that a range check after this rejects it with the caller's own `ValueError` (not an
/// `OverflowError`). Not an int (no `__index__`): `TypeError`.
pub(crate) fn int_argument(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    match obj.extract::<i64>() {
        Err(err) if err.is_instance_of::<PyOverflowError>(obj.py()) => {
            Ok(if obj.lt(0)? { i64::MIN } else { i64::MAX })
        }
        extracted => extracted,
    }
}

/// [`int_argument`] as an argument type: a count or size parameter with a default in its
/// `signature`, so that an explicit `None` is a `TypeError` like any other non-int (an
/// `Option` parameter could not tell `None` from "not given"). Displayed as given, so a
/// range error names the caller's int, not the clamped one.
pub struct IntArg {
    /// The int, clamped to the `i64` range.
    pub value: i64,
    /// The int as given, when it lies beyond that range.
    beyond: Option<String>,
}

impl IntArg {
    /// A default in a `signature`.
    pub const fn of(value: i64) -> Self {
        IntArg {
            value,
            beyond: None,
        }
    }
}

impl fmt::Display for IntArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.beyond {
            Some(given) => f.write_str(given),
            None => write!(f, "{}", self.value),
        }
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for IntArg {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let value = int_argument(&obj)?;
        let beyond = match value {
            i64::MIN | i64::MAX => Some(obj.str()?.to_string()),
            _ => None,
        };
        Ok(IntArg { value, beyond })
    }
}

// ANCHOR: thrown_exception
/// The `TypeError` message of `coro.throw(*args)` with a wrong number of arguments,
/// or `None` when `nargs` is within 1..=3 (worded alike on every CPython from 3.8).
fn throw_arity_message(nargs: usize) -> Option<String> {
    match nargs {
        0 => Some("throw expected at least 1 argument, got 0".into()),
        1..=3 => None,
        n => Some(format!("throw expected at most 3 arguments, got {n}")),
    }
}

/// What `throw(*args)` checks on entry, before anything else: the argument count, and
/// CPython 3.12+'s deprecation of the three-argument form.
pub(crate) fn check_throw_arguments(args: &Bound<'_, PyTuple>) -> PyResult<()> {
    if let Some(message) = throw_arity_message(args.len()) {
        return Err(PyTypeError::new_err(message));
    }
    compat::warn_legacy_throw_signature(args.py(), args.len())
}

/// The exception `coro.throw(*args)` raises, normalised as CPython's `gen.throw` does
/// (`_gen_throw` + `PyErr_NormalizeException`).
///
/// `Err` for invalid arguments (the coroutine's state is left alone); `Ok(thrown)` for
/// the exception to throw in, which is the error of instantiating the exception class if
/// that raised (CPython throws that one in instead).
pub(crate) fn thrown_exception(args: &Bound<'_, PyTuple>) -> PyResult<Thrown> {
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
            Err(err) => {
                let stop_iteration = err.is_instance_of::<PyStopIteration>(args.py());
                return Ok(Thrown {
                    err,
                    stop_iteration,
                });
            }
        }
    } else if typ.is_instance_of::<PyBaseException>() {
        if val.is_some() {
            return Err(PyTypeError::new_err(
                "instance exception may not have a separate value",
            ));
        }
        typ
    } else {
        return Err(not_an_exception(&typ));
    };
    if let Some(tb) = tb {
        exception.setattr("__traceback__", tb)?;
    }
    Ok(Thrown {
        stop_iteration: exception.is_instance_of::<PyStopIteration>(),
        err: compat::raise_object(exception),
    })
}

/// The exception thrown in, and whether it is a `StopIteration` (known without asking
/// the error, which on PyPy would materialise its traceback: see `compat::raise_object`).
pub(crate) struct Thrown {
    pub(crate) err: PyErr,
    pub(crate) stop_iteration: bool,
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
pub(crate) fn escaping(py: Python<'_>, thrown: Thrown, started: bool) -> PyErr {
    let converts = started || compat::unstarted_throw_converts_stop_iteration(py);
    if !converts || !thrown.stop_iteration {
        return thrown.err;
    }
    let thrown = thrown.err;
    let err = PyRuntimeError::new_err("coroutine raised StopIteration");
    // As CPython's own conversion: the StopIteration is both cause and context.
    let _ = err.value(py).setattr("__context__", thrown.value(py));
    err.set_cause(py, Some(thrown));
    err
}
// ANCHOR_END: thrown_exception

// ANCHOR: await_iter
/// The iterator `await obj` delegates to, found the way CPython's `await` finds it.
pub(crate) fn await_iter<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    if compat::is_generator(obj) {
        // A `types.coroutine` generator is its own iterator; a plain one is refused.
        if compat::is_iterable_coroutine_generator(obj)? {
            return Ok(obj.clone());
        }
        return Err(PyTypeError::new_err(compat::not_awaitable_message(obj)));
    }
    // SAFETY: `obj` is live, so its type is; `tp_as_async` is NULL or points at a table
    // that lives as long as the type.
    let am_await = unsafe {
        let methods = (*ffi::Py_TYPE(obj.as_ptr())).tp_as_async;
        if methods.is_null() {
            None
        } else {
            (*methods).am_await
        }
    };
    let Some(am_await) = am_await else {
        return Err(PyTypeError::new_err(compat::not_awaitable_message(obj)));
    };
    // SAFETY: the slot of `obj`'s own type, called with `obj` while attached to the
    // interpreter; it returns a new reference, or NULL with an exception set.
    let iter = unsafe { Bound::from_owned_ptr_or_err(py, am_await(obj.as_ptr()))? };
    let coroutine = compat::is_coroutine(&iter)?;
    // SAFETY: a slot check of a live object.
    if coroutine || unsafe { ffi::PyIter_Check(iter.as_ptr()) } == 0 {
        let message = compat::bad_await_result_message(obj, &iter, coroutine)?;
        return Err(PyTypeError::new_err(message));
    }
    Ok(iter)
}
// ANCHOR_END: await_iter

// ANCHOR: step
/// How one step of a coroutine or iterator ended when it did not raise (a raise is the
/// `Err` of a `PyResult<Step>`), keeping what PyO3's own iteration discards.
pub(crate) enum Step<'py> {
    /// Suspended, handing this value out.
    Yield(Bound<'py, PyAny>),
    /// Finished, returning this value (`StopIteration.value`).
    Return(Bound<'py, PyAny>),
}

impl Step<'_> {
    /// The step as a `send`/`__next__` method returns it: a returned value is raised as
    /// `StopIteration` (`compat::stop_iteration`).
    pub(crate) fn into_method_result(self) -> PyResult<Py<PyAny>> {
        match self {
            Step::Yield(value) => Ok(value.unbind()),
            Step::Return(value) => Err(compat::stop_iteration(value)),
        }
    }
}

/// The `tp_iternext` slot of `iter`'s type: what makes it an iterator.
fn next_slot(iter: &Bound<'_, PyAny>) -> Option<ffi::iternextfunc> {
    // SAFETY: `iter` is live, so its type object is, and reading a slot is plain data.
    unsafe { (*ffi::Py_TYPE(iter.as_ptr())).tp_iternext }
}

/// Steps `iter` once through its `tp_iternext` slot.
///
/// Not `PyIterator::next`: like `PyIter_Next` underneath it, that swallows the
/// `StopIteration` and with it the awaitable's return value. The slot reports the end
/// either with no exception at all (a return value of `None`) or with a
/// `StopIteration` whose `.value` is the result.
pub(crate) fn step_iter<'py>(iter: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
    let Some(next) = next_slot(iter) else {
        let name = compat::type_name(iter);
        return Err(PyTypeError::new_err(format!(
            "'{name}' object is not an iterator"
        )));
    };
    // On PyPy the step goes through Python's `next()`, so that an exception comes back
    // as an object (`compat::call`): fetched by PyO3, a RecursionError from a chain of
    // 100,000 native coroutines would hand its 100,000-entry traceback to PyPy's C layer,
    // which converts it entry by entry, recursively (measured: a segfault, or "Fatal error
    // in cpyext... PyErr_Fetch was not supposed to fail", once the JIT has compiled the
    // chain; fine with --jit off). Python-level `next()` also never reaches the slots
    // `crate::slots` fills, which PyPy's own calls ignore too (see there).
    #[cfg(PyPy)]
    {
        let _ = next;
        let py = iter.py();
        static NEXT: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let builtin_next = NEXT.import(py, "builtins", "next")?;
        Ok(
            match compat::call(builtin_next, &PyTuple::new(py, [iter])?)? {
                compat::Called::Returned(item) => Step::Yield(item),
                compat::Called::Stopped(value) => Step::Return(value),
            },
        )
    }
    #[cfg(not(PyPy))]
    step_with_slot(iter, next)
}

/// One step through the `tp_iternext` slot `next` of `iter`'s type.
#[cfg(not(PyPy))]
fn step_with_slot<'py>(iter: &Bound<'py, PyAny>, next: ffi::iternextfunc) -> PyResult<Step<'py>> {
    let py = iter.py();
    // SAFETY: the slot of `iter`'s own type, called with `iter` while attached; it
    // returns a new reference, or NULL with or without an exception set.
    let item = unsafe { next(iter.as_ptr()) };
    if !item.is_null() {
        // SAFETY: a non-NULL result of `tp_iternext` is a new (owned) reference.
        return Ok(Step::Yield(unsafe { Bound::from_owned_ptr(py, item) }));
    }
    match PyErr::take(py) {
        None => Ok(Step::Return(py.None().into_bound(py))),
        Some(err) if err.is_instance_of::<PyStopIteration>(py) => {
            Ok(Step::Return(compat::stop_iteration_value(py, err)?))
        }
        Some(err) => Err(err),
    }
}
// ANCHOR_END: step
