//! `drive`: awaiting a Python awaitable from Rust, with no event loop.
//!
//! `await x` inside a coroutine is `yield from x.__await__()`: get an iterator from the
//! awaitable, then step it until it stops, handing every yielded value up to whoever is
//! running the outermost coroutine (normally an asyncio Task). `drive` is that
//! outermost runner, so it sees the yielded values itself. A bare `yield` (yielded
//! `None`, as `asyncio.sleep(0)` does) only asks to let others run: there are no others,
//! so `drive` resumes at once. Anything else is a request to an event loop (an
//! `asyncio.Future` to wait for) that `drive` cannot serve.

use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::{ffi, wrap_pyfunction, AsPyPointer, PyNativeType};

use crate::compat;

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

/// One step of an iterator, keeping what PyO3's own iteration discards.
///
/// Owned `PyObject`s, not GIL-bound `&PyAny`s: those would stay in PyO3 0.12's pool of
/// owned references until the Python call returns, so an endless `drive` would grow it.
pub(crate) enum Step {
    /// The iterator suspended, handing this value out.
    Yielded(PyObject),
    /// The iterator finished, returning this value (`StopIteration.value`).
    Returned(PyObject),
}

// ANCHOR: step
/// Steps `iter` once through its `tp_iternext` slot.
///
/// Not `PyIterator::next`: like `PyIter_Next` underneath it, that swallows the
/// `StopIteration` and with it the awaitable's return value. The slot reports the end
/// either with no exception at all (a return value of `None`) or with a
/// `StopIteration` whose `.value` is the result.
pub(crate) fn step(iter: &PyAny) -> PyResult<Step> {
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
        return Ok(Step::Yielded(unsafe { PyObject::from_owned_ptr(py, item) }));
    }
    if !PyErr::occurred(py) {
        return Ok(Step::Returned(py.None()));
    }
    let err = PyErr::fetch(py);
    if err.is_instance::<PyStopIteration>(py) {
        Ok(Step::Returned(compat::stop_iteration_value(py, err)?))
    } else {
        // `fetch` kept the exception's type, value and traceback; raising `err` restores them.
        Err(err)
    }
}
// ANCHOR_END: step

/// Calls `iter.close()` if it has one. `Ok` also when it has none.
fn close(iter: &PyAny) -> PyResult<()> {
    match iter.getattr("close") {
        Ok(close) => close.call0().map(drop),
        Err(err) if err.is_instance::<PyAttributeError>(iter.py()) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Closes `iter` after `err` (the `KeyboardInterrupt` of a signal, say) and returns the
/// error to raise: `err`, or, as in `except: iter.close(); raise`, the error of `close()`
/// with `err` as its `__context__`.
fn close_after(iter: &PyAny, err: PyErr) -> PyErr {
    match close(iter) {
        Ok(()) => err,
        Err(close_error) => {
            let py = iter.py();
            // Best effort: the error of close() is raised either way.
            let _ = close_error
                .instance(py)
                .setattr("__context__", err.instance(py));
            close_error
        }
    }
}

/// `iter` yielded `item`, which is not `None`: it wants an event loop. Closes `iter` and
/// returns the `RuntimeError` to raise (caused by the error of `close()`, if any).
fn needs_event_loop(iter: &PyAny, item: &PyAny) -> PyErr {
    let shown = match item.repr() {
        Ok(repr) => repr.to_string_lossy().into_owned(),
        // `repr` fetched (and so cleared) its error.
        Err(_) => compat::type_name(item),
    };
    let closed = close(iter);
    let err = PyRuntimeError::new_err(format!(
        "drive() got {} from the awaitable, which needs a running event loop; \
         await it inside an event loop (e.g. under asyncio.run) instead",
        shown
    ));
    if let Err(close_error) = closed {
        compat::set_cause(iter.py(), &err, close_error);
    }
    err
}

// ANCHOR: drive
/// Runs `awaitable` to completion with no event loop and returns its result.
#[pyfunction]
#[text_signature = "(awaitable)"]
pub fn drive(py: Python, awaitable: &PyAny) -> PyResult<PyObject> {
    let iter = await_iter(awaitable)?;
    loop {
        match step(iter)? {
            Step::Returned(value) => return Ok(value),
            // A bare `yield`: resume at once, after letting Ctrl-C through.
            Step::Yielded(item) if item.is_none(py) => {
                if let Err(interrupted) = py.check_signals() {
                    return Err(close_after(iter, interrupted));
                }
            }
            Step::Yielded(item) => return Err(needs_event_loop(iter, item.as_ref(py))),
        }
    }
}
// ANCHOR_END: drive

/// Adds `drive` to the module (PyO3 0.12's `#[pyfunction]` wrapper is private to this file).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(drive, m)?)
}
