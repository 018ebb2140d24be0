//! `drive`: awaiting a Python awaitable from Rust, with no event loop.
//!
//! `await x` inside a coroutine is `yield from x.__await__()`: get an iterator from the
//! awaitable, then step it until it stops, handing every yielded value up to whoever is
//! running the outermost coroutine (normally an asyncio Task). `drive` is that
//! outermost runner, so it sees the yielded values itself. A bare `yield` (yielded
//! `None`, as `asyncio.sleep(0)` does) only asks to let others run: there are no others,
//! so `drive` resumes at once. Anything else is a request to an event loop (an
//! `asyncio.Future` to wait for) that `drive` cannot serve.
//!
//! Finding the iterator and stepping it (`protocol::await_iter`, `protocol::step_iter`)
//! are shared with `delegate`.

use pyo3::exceptions::{PyAttributeError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::{wrap_pyfunction, PyNativeType};

use crate::compat;
use crate::protocol::{self, await_iter, set_cause, step_iter, Step};

/// Calls `iter.close()` if it has one. `Ok` also when it has none.
fn close(iter: &PyAny) -> PyResult<()> {
    match iter.getattr("close") {
        Ok(close) => close.call0().map(drop),
        Err(err) if protocol::error_is::<PyAttributeError>(iter.py(), &err) => Ok(()),
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
        set_cause(iter.py(), &err, close_error);
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
        match step_iter(iter)? {
            Step::Return(value) => return Ok(value),
            // A bare `yield`: resume at once, after letting Ctrl-C through.
            Step::Yield(item) if item.is_none(py) => {
                if let Err(interrupted) = py.check_signals() {
                    return Err(close_after(iter, interrupted));
                }
            }
            Step::Yield(item) => return Err(needs_event_loop(iter, item.as_ref(py))),
        }
    }
}
// ANCHOR_END: drive

/// Adds `drive` to the module (PyO3 0.12's `#[pyfunction]` wrapper is private to this file).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(drive, m)?)
}
