//! What every coroutine-like class of the crate shares: the coroutine protocol itself.
//!
//! * [`State`] and the errors CPython's own coroutines raise, worded as they word them:
//!   [`reuse_error`], [`just_started_error`], [`already_executing`].
//! * `throw`'s arguments, normalised as `gen.throw` normalises them:
//!   [`check_throw_arguments`], [`thrown_exception`], and [`escaping`] (PEP 479).
//! * [`Step`]: how one step ended when it did not raise (PyO3 0.12's own
//!   `IterNextOutput`), and [`IntoMethodResult::into_method_result`], which raises a
//!   return as `StopIteration` the way `compat` says.
//! * [`await_iter`] (the iterator `await obj` delegates to) and [`step_iter`] (one step
//!   of an iterator through its `tp_iternext` slot), which `drive` and `delegate` share;
//!   a `PanicException` the iterator raises stays an exception there (PyO3 0.12's
//!   `PyErr::fetch` would resume it as a panic).
//! * [`panic_error`]: a Rust panic caught at the border, as PyO3's `PanicException`.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::ptr;

use pyo3::class::iter::IterNextOutput;
use pyo3::exceptions::{
    PyOverflowError, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError,
};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeObject;
use pyo3::types::PyTuple;
use pyo3::{AsPyPointer, PyNativeType};

use crate::compat;
use crate::ffi;

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
    /// The state as `inspect.getcoroutinestate` names it (in the classes' `repr`).
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

/// What a finished coroutine raises when stepped again.
pub(crate) fn reuse_error() -> PyErr {
    PyRuntimeError::new_err("cannot reuse already awaited coroutine")
}

/// What a coroutine that has not started raises when sent something other than `None`.
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
pub(crate) fn borrow_for_step<T: pyo3::PyClass>(slf: &PyCell<T>) -> PyResult<PyRefMut<'_, T>> {
    slf.try_borrow_mut().map_err(|_| already_executing())
}

/// How one step ended when it did not raise: `Step::Yield(value)` when it suspended,
/// `Step::Return(value)` when it finished.
///
/// PyO3 0.12's own `IterNextOutput`, under the name both crates use: a `__next__` in
/// `#[pyproto]` returns it, and PyO3 raises `Return(value)` as `StopIteration((value,))`.
/// Owned `PyObject`s, not GIL-bound `&PyAny`s: those would stay in PyO3 0.12's pool of
/// owned references until the Python call returns, so an endless `drive` would grow it.
pub(crate) type Step = IterNextOutput<PyObject, PyObject>;

/// `Step::into_method_result` (a trait, since `Step` is PyO3's type).
pub(crate) trait IntoMethodResult {
    /// The step as a `send`/`__next__`/`throw` method returns it: a returned value is
    /// raised as the `StopIteration` CPython's coroutines raise ([`compat::stop_iteration`]:
    /// a bare `StopIteration()` for `None`).
    fn into_method_result(self, py: Python) -> PyResult<Step>;
}

impl IntoMethodResult for Step {
    fn into_method_result(self, py: Python) -> PyResult<Step> {
        match self {
            Step::Return(value) => Err(compat::stop_iteration(py, value)),
            yielded => Ok(yielded),
        }
    }
}

/// A Rust panic caught at the border (a slot, a future's poll) as the Python exception
/// PyO3 uses for panics, `PanicException`, with the panic's message as its message.
pub(crate) fn panic_error(payload: Box<dyn Any + Send>) -> PyErr {
    PanicException::new_err(panic_message(payload))
}

/// The message of a caught panic (no Python: for a thread that must not take the GIL,
/// as PyO3 0.12's `new_err` does): the payload's string, or "Rust code panicked".
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Rust code panicked".to_owned())
}

/// Whether `err` is a `T` (an instance of it or of a subclass): `err.is_instance::<T>(py)`
/// without its leak. PyO3 0.12 reads the type of an error fetched from CPython (its
/// `FfiTuple` state) through `AsPyPointer for Option<PyObject>`, whose `as_ptr` takes a
/// new reference that nothing releases: every check of a caught exception leaked a
/// reference to its type (found by `tools/refleaks.py`; fixed in later PyO3). Here the
/// error is normalised (as CPython normalises the exceptions it catches) and its type
/// read as a borrowed reference.
pub(crate) fn error_is<T: PyTypeObject>(py: Python, err: &PyErr) -> bool {
    let typ = err.ptype(py).as_ptr();
    // SAFETY: two live type objects, borrowed for the call; the GIL is held.
    unsafe { ffi::PyErr_GivenExceptionMatches(typ, T::type_object(py).as_ptr()) != 0 }
}

/// An `int` argument as an `i64`, an int beyond the `i64` range clamped to its end, so
/// that a range check after this rejects it with the caller's own `ValueError` (not an
/// `OverflowError`). Not an int (no `__index__`): `TypeError`.
pub(crate) fn int_argument(obj: &PyAny) -> PyResult<i64> {
    match obj.extract::<i64>() {
        Err(err) if error_is::<PyOverflowError>(obj.py(), &err) => {
            Ok(if obj.compare(0)? == Ordering::Less {
                i64::MIN
            } else {
                i64::MAX
            })
        }
        extracted => extracted,
    }
}

/// [`int_argument`] as an argument type: a count or size parameter with a default in its
/// `#[args]`, so that an explicit `None` is a `TypeError` like any other non-int (an
/// `Option` parameter could not tell `None` from "not given"). Displayed as given, so a
/// range error names the caller's int, not the clamped one.
pub struct IntArg {
    /// The int, clamped to the `i64` range.
    pub value: i64,
    /// The int as given, when it lies beyond that range.
    beyond: Option<String>,
}

impl IntArg {
    /// A default in an `#[args]`.
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

impl<'source> FromPyObject<'source> for IntArg {
    fn extract(obj: &'source PyAny) -> PyResult<Self> {
        let value = int_argument(obj)?;
        let beyond = match value {
            i64::MIN | i64::MAX => Some(obj.str()?.to_string()),
            _ => None,
        };
        Ok(IntArg { value, beyond })
    }
}

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
        let tb = tb.map_or(ptr::null_mut(), |tb| tb.to_object(py).into_ptr());
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
    if !converts || !error_is::<PyStopIteration>(py, &thrown) {
        return thrown;
    }
    let err = PyRuntimeError::new_err("coroutine raised StopIteration");
    set_cause(py, &err, thrown);
    err
}
// ANCHOR_END: thrown_exception

/// Sets `cause` as `err`'s `__cause__` (which also suppresses its context in tracebacks),
/// as `raise err from cause` does. PyO3 0.12's `PyErr` has no `set_cause` (PyO3 0.14).
pub(crate) fn set_cause(py: Python, err: &PyErr, cause: PyErr) {
    // Best effort: `err` is raised either way. `raise err from cause` inside an
    // `except` block sets both, as CPython's own PEP 479 conversion does.
    let instance = err.instance(py);
    let _ = instance.setattr("__cause__", cause.instance(py));
    let _ = instance.setattr("__context__", cause.instance(py));
}

// ANCHOR: await_iter
/// The iterator `await obj` delegates to, found the way CPython's `await` finds it.
pub(crate) fn await_iter(obj: &PyAny) -> PyResult<&PyAny> {
    let py = obj.py();
    // SAFETY: a type check of a live object: it only reads the object's type pointer.
    if unsafe { ffi::PyGen_Check(obj.as_ptr()) } != 0 {
        // A `types.coroutine` generator is its own iterator; a plain one is refused.
        if compat::is_iterable_coroutine_generator(obj)? {
            return Ok(obj);
        }
        return Err(PyTypeError::new_err(compat::not_awaitable_message(obj)));
    }
    // SAFETY: `obj` is live, so its type is; `tp_as_async` is NULL or points at a table
    // that lives as long as the type, whose first field (`am_await`) every CPython has.
    let am_await = unsafe {
        let methods = (*ffi::Py_TYPE(obj.as_ptr())).tp_as_async;
        if methods.is_null() {
            None
        } else {
            (*methods).am_await
        }
    };
    let am_await = match am_await {
        Some(am_await) => am_await,
        None => return Err(PyTypeError::new_err(compat::not_awaitable_message(obj))),
    };
    // SAFETY: the slot of `obj`'s own type, called with `obj` and the GIL held; it
    // returns a new reference, or NULL with an exception set.
    let iter: &PyAny = unsafe { py.from_owned_ptr_or_err(am_await(obj.as_ptr()))? };
    let coroutine = compat::is_coroutine(iter)?;
    if coroutine || !compat::is_iterator(iter) {
        let message = compat::bad_await_result_message(obj, iter, coroutine)?;
        return Err(PyTypeError::new_err(message));
    }
    Ok(iter)
}
// ANCHOR_END: await_iter

/// The `tp_iternext` slot of `iter`'s type: what makes it an iterator.
fn next_slot(iter: &PyAny) -> Option<ffi::iternextfunc> {
    // SAFETY: `iter` is live, so its type object is, and reading a slot is plain data.
    unsafe { (*ffi::Py_TYPE(iter.as_ptr())).tp_iternext }
}

// ANCHOR: step
/// Steps `iter` once through its `tp_iternext` slot.
///
/// Not `PyIterator::next`: like `PyIter_Next` underneath it, that swallows the
/// `StopIteration` and with it the awaitable's return value. The slot reports the end
/// either with no exception at all (a return value of `None`) or with a
/// `StopIteration` whose `.value` is the result.
pub(crate) fn step_iter(iter: &PyAny) -> PyResult<Step> {
    let py = iter.py();
    let next = match next_slot(iter) {
        Some(next) => next,
        None => {
            let name = compat::type_name(iter);
            return Err(PyTypeError::new_err(format!(
                "'{}' object is not an iterator",
                name
            )));
        }
    };
    // SAFETY: the slot of `iter`'s own type, called with `iter` and the GIL held; it
    // returns a new reference, or NULL with or without an exception set.
    let item = unsafe { next(iter.as_ptr()) };
    if !item.is_null() {
        // SAFETY: a non-NULL result of `tp_iternext` is a new (owned) reference.
        return Ok(Step::Yield(unsafe { PyObject::from_owned_ptr(py, item) }));
    }
    if !PyErr::occurred(py) {
        return Ok(Step::Return(py.None()));
    }
    let err = fetch_error(py);
    if error_is::<PyStopIteration>(py, &err) {
        Ok(Step::Return(compat::stop_iteration_value(py, err)?))
    } else {
        // `fetch` kept the exception's type, value and traceback; raising `err` restores them.
        Err(err)
    }
}
// ANCHOR_END: step

/// The error the interpreter holds, taken out as `PyErr::fetch` takes it, except that a
/// `PanicException` (a Rust panic under the iterator, caught at a border such as a slot
/// of this crate's) stays an exception of the iterator, which ends whoever delegates to
/// it as any other exception does. PyO3 0.12's `fetch` would resume it as a panic here,
/// unwinding through the delegating step (which would then never end its coroutine) and,
/// from CPython 3.12 (which keeps only the normalised exception), losing its message.
///
/// An error must be set (the caller checked `PyErr::occurred`).
fn fetch_error(py: Python) -> PyErr {
    let panic_type = py.get_type::<PanicException>().as_ptr();
    // SAFETY: the GIL is held and an error is set; the check only compares its type.
    if unsafe { ffi::PyErr_ExceptionMatches(panic_type) } == 0 {
        return PyErr::fetch(py);
    }
    let (mut ptype, mut pvalue, mut ptraceback) =
        (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    // SAFETY: the GIL is held. `PyErr_Fetch` hands over one reference to each of the
    // three (or NULL) and clears the error; normalising replaces them with references of
    // the same kind. The traceback is stored in the instance (which takes its own
    // reference), then our references to it and to the type are released, and the one to
    // the instance is handed to the pool, which `from_instance` takes new ones from.
    unsafe {
        ffi::PyErr_Fetch(&mut ptype, &mut pvalue, &mut ptraceback);
        ffi::PyErr_NormalizeException(&mut ptype, &mut pvalue, &mut ptraceback);
        if !pvalue.is_null() && !ptraceback.is_null() {
            ffi::PyException_SetTraceback(pvalue, ptraceback);
        }
        ffi::Py_XDECREF(ptype);
        ffi::Py_XDECREF(ptraceback);
        match py.from_owned_ptr_or_opt::<PyAny>(pvalue) {
            Some(exception) => PyErr::from_instance(exception),
            None => PanicException::new_err("Rust code panicked"),
        }
    }
}
