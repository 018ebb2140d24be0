//! `drive(awaitable)`: re-creating `await` in Rust, with no event loop.
//!
//! [`await_iter`] does what CPython's `GET_AWAITABLE` does (`_PyCoro_GetAwaitableIter`);
//! [`drive`] then steps the iterator until it stops, as `YIELD_FROM`/`SEND` would, and
//! returns `StopIteration.value`.

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::{ffi, wrap_pyfunction, AsPyPointer};

/// Runs `awaitable` to completion without an event loop and returns its result.
///
/// Steps that yield `None` (a bare `yield`, as `asyncio.sleep(0)` does) are resumed at
/// once, checking for signals in between (Ctrl-C stops an endless coroutine). A step that
/// yields anything else (an `asyncio.Future`, say) needs a running event loop: the
/// awaitable is closed and `RuntimeError` is raised. An exception raised by the
/// awaitable propagates as the same object, traceback intact.
///
/// The iterator is stepped by calling its type's `tp_iternext` slot directly, not with
/// PyO3's `PyIterator::next` / `PyIter_Next`: those treat `StopIteration` as the plain end
/// of an iteration and clear it, losing `StopIteration.value`, which is the result of
/// the awaitable.
#[pyfunction]
#[text_signature = "(awaitable)"]
pub fn drive(py: Python, awaitable: &PyAny) -> PyResult<PyObject> {
    let iter = await_iter(py, awaitable)?;
    // SAFETY: `iter` is live; `await_iter` checked that its type has a `tp_iternext`.
    let iternext = unsafe { (*ffi::Py_TYPE(iter.as_ptr())).tp_iternext }
        .expect("await_iter returns iterators only");
    loop {
        // SAFETY: `iternext` is the slot of `iter`'s own type, called with `iter` and the
        // GIL held; it returns a new reference, or NULL with or without an exception set.
        let step = unsafe { iternext(iter.as_ptr()) };
        if step.is_null() {
            return stopped(py);
        }
        // SAFETY: `step` is a new, non-null reference that we now own; `PyObject` (not a
        // GIL-pool `&PyAny`) so that an endless coroutine does not grow the pool.
        let yielded: PyObject = unsafe { PyObject::from_owned_ptr(py, step) };
        if yielded.is_none(py) {
            if let Err(interrupted) = py.check_signals() {
                return Err(close_after(py, iter, interrupted));
            }
            continue;
        }
        return Err(needs_event_loop(py, iter, yielded.as_ref(py)));
    }
}

/// The iterator that `await obj` steps, or the `TypeError` that `await obj` raises.
///
/// Like CPython: a generator-based coroutine (`types.coroutine`, `CO_ITERABLE_COROUTINE`)
/// is its own iterator; otherwise the type's `am_await` slot (`__await__`) is called
/// (native coroutines give their `coroutine_wrapper`) and must return an iterator that is
/// not itself a coroutine.
pub fn await_iter<'py>(py: Python<'py>, obj: &'py PyAny) -> PyResult<&'py PyAny> {
    if is_iterable_coroutine(obj)? {
        return Ok(obj);
    }
    // SAFETY: `obj` is live, so its type object is; `tp_as_async` is null or points to
    // the type's async table, whose first field (`am_await`) every CPython version has.
    let am_await = unsafe {
        let async_methods = (*ffi::Py_TYPE(obj.as_ptr())).tp_as_async;
        if async_methods.is_null() {
            None
        } else {
            (*async_methods).am_await
        }
    };
    let am_await = match am_await {
        Some(am_await) => am_await,
        None => {
            return Err(PyTypeError::new_err(crate::compat::not_awaitable_message(
                obj,
            )))
        }
    };
    // SAFETY: `am_await` is the slot of `obj`'s own type, called with `obj` and the GIL
    // held; it returns a new reference, or NULL with an exception set.
    let iter: &PyAny = unsafe { py.from_owned_ptr_or_err(am_await(obj.as_ptr()))? };
    if is_native_coroutine(iter) || is_iterable_coroutine(iter)? {
        return Err(PyTypeError::new_err("__await__() returned a coroutine"));
    }
    if !crate::compat::is_iterator(iter) {
        return Err(PyTypeError::new_err(format!(
            "__await__() returned non-iterator of type '{}'",
            crate::compat::type_name(iter)
        )));
    }
    Ok(iter)
}

/// `PyCoro_CheckExact(obj)` (PyO3 0.12's `ffi` has only `PyCoro_Check`).
fn is_native_coroutine(obj: &PyAny) -> bool {
    // SAFETY: `obj` is a live object, so reading its type is sound; `PyCoro_Type` is a
    // static of libpython that we only take the address of.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyCoro_Type) }
}

/// Is `obj` a generator whose code has `CO_ITERABLE_COROUTINE` (`@types.coroutine`)?
fn is_iterable_coroutine(obj: &PyAny) -> PyResult<bool> {
    // SAFETY: `obj` is a live object; the check only reads its type.
    if unsafe { ffi::PyGen_CheckExact(obj.as_ptr()) } == 0 {
        return Ok(false);
    }
    // Through the attributes: the code object's C layout changed in 3.11.
    let flags: i64 = obj.getattr("gi_code")?.getattr("co_flags")?.extract()?;
    Ok(flags & i64::from(ffi::CO_ITERABLE_COROUTINE) != 0)
}

/// The result of a step that returned NULL: `None` if no exception is set,
/// `StopIteration.value` for `StopIteration` (or a subclass), else the exception itself.
fn stopped(py: Python) -> PyResult<PyObject> {
    if !PyErr::occurred(py) {
        return Ok(py.None());
    }
    let err = PyErr::fetch(py);
    if err.is_instance::<PyStopIteration>(py) {
        Ok(err.instance(py).getattr("value")?.into())
    } else {
        // `fetch` kept the exception's type, value and traceback; raising `err` restores them.
        Err(err)
    }
}

/// Calls `iter.close()` if it has one. `Ok` also when it has none.
fn close(iter: &PyAny) -> PyResult<()> {
    match iter.getattr("close") {
        Ok(close) => close.call0().map(drop),
        Err(_) => Ok(()),
    }
}

/// Closes `iter` after `err` (the `KeyboardInterrupt` of a signal, say) and returns the
/// error to raise: `err`, or, as in `except: iter.close(); raise`, the error of `close()`
/// with `err` as its `__context__`.
fn close_after(py: Python, iter: &PyAny, err: PyErr) -> PyErr {
    match close(iter) {
        Ok(()) => err,
        Err(close_err) => {
            // Best effort: the error of close() is raised either way.
            let _ = close_err
                .instance(py)
                .setattr("__context__", err.instance(py));
            close_err
        }
    }
}

/// `iter` yielded `value`, which is not `None`: it wants an event loop. Closes `iter` and
/// returns the `RuntimeError` to raise (with the error of `close()`, if any, as its
/// `__context__` and `__cause__`).
fn needs_event_loop(py: Python, iter: &PyAny, value: &PyAny) -> PyErr {
    let shown = match value.repr() {
        Ok(repr) => repr.to_string_lossy().into_owned(),
        // `repr` fetched (and so cleared) its error.
        Err(_) => crate::compat::type_name(value),
    };
    let closed = close(iter);
    let err = PyRuntimeError::new_err(format!(
        "drive() cannot run {}: it needs a running event loop; \
         await it inside an event loop (e.g. asyncio.run) instead",
        shown
    ));
    if let Err(close_err) = closed {
        let instance = err.instance(py);
        let close_instance = close_err.instance(py);
        // Best effort: the RuntimeError is raised either way.
        let _ = instance.setattr("__context__", close_instance);
        let _ = instance.setattr("__cause__", close_instance);
    }
    err
}

/// Adds `drive` to the module (PyO3 0.12's `#[pyfunction]` wrapper is private to this file).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(drive, m)?)
}
