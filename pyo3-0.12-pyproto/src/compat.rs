//! What differs between the Pythons this module runs on.
//!
//! [`not_awaitable_message`], [`bad_await_result_message`], [`throw_arity_message`],
//! [`warn_legacy_throw_signature`], [`unstarted_throw_converts_stop_iteration`] and
//! [`thrown_stop_iteration_returns_from_await`] reproduce what the running interpreter's
//! own coroutines do; [`init`] records the running version (the module is built per
//! interpreter, but asking at run time keeps one code path). [`stop_iteration`] raises a
//! returned value as CPython's coroutines do on every version.
//!
//! C-level checks that are a macro on some versions and a function on others, through
//! the declarations of [`crate::ffi`]: [`is_iterator`] (`PyIter_Check`, a function from
//! 3.8), and [`enter_recursive_call`] / [`leave_recursive_call`]
//! (`Py_EnterRecursiveCall`, a function from 3.9).
//!
//! The memory-layout repairs PyO3 0.12's type objects need on CPython 3.10+ are not
//! here but in `repair`; the sibling crate's `compat.rs` mirrors this file.

use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::{AsPyPointer, PyNativeType};

use crate::ffi;

/// `CO_ITERABLE_COROUTINE`: the code flag `types.coroutine` sets on a generator
/// function so that its generators may be awaited.
const CO_ITERABLE_COROUTINE: i64 = ffi::CO_ITERABLE_COROUTINE as i64;

/// `major << 8 | minor` of the running interpreter, recorded by [`init`].
static PYTHON_VERSION: AtomicU32 = AtomicU32::new(0);

/// Records the interpreter version. Called first thing in module init.
pub fn init(py: Python) -> PyResult<()> {
    let version_info = py.import("sys")?.getattr("version_info")?;
    let major: u32 = version_info.getattr("major")?.extract()?;
    let minor: u32 = version_info.getattr("minor")?.extract()?;
    PYTHON_VERSION.store(major << 8 | minor, Ordering::Relaxed);
    Ok(())
}

/// Whether the running interpreter is at least `major.minor`.
pub fn python_at_least(major: u32, minor: u32) -> bool {
    PYTHON_VERSION.load(Ordering::Relaxed) >= (major << 8 | minor)
}

/// `PyIter_Check(obj)`: the type has a `tp_iternext` that is not
/// `_PyObject_NextNotImplemented`.
///
/// CPython 3.8+ exports `PyIter_Check` as a function, which `crate::ffi` declares; on 3.7
/// it is PyO3 0.12's copy of the macro, which links `_PyObject_NextNotImplemented`, no
/// longer exported by 3.13 (`build.rs` sets `pyiter_check_is_function` for 3.8+).
pub fn is_iterator(obj: &PyAny) -> bool {
    // SAFETY: `PyIter_Check`, the function (3.8+, which `build.rs` checked) or PyO3's
    // macro (3.7), only reads the type of the live object `obj`; the GIL is held.
    unsafe { ffi::PyIter_Check(obj.as_ptr()) != 0 }
}

// ---------------------------------------------------------------------------------------
// Messages that follow the running interpreter.
// ---------------------------------------------------------------------------------------

/// `Py_TYPE(obj)->tp_name`, cut to 100 bytes as CPython's `%.100s` does.
pub fn type_name(obj: &PyAny) -> String {
    // SAFETY: `obj` is a live object (we hold a GIL-bound reference), so its type
    // object is live, and every type's `tp_name` is a NUL-terminated C string.
    let name = unsafe { CStr::from_ptr((*ffi::Py_TYPE(obj.as_ptr())).tp_name) };
    let bytes = name.to_bytes();
    let cut = &bytes[..bytes.len().min(100)];
    String::from_utf8_lossy(cut).into_owned()
}

/// The `TypeError` message of `await obj` for an object that is not awaitable.
///
/// 3.7–3.13: `object int can't be used in 'await' expression`;
/// 3.14+: `'int' object can't be awaited` (to be confirmed on 3.14/3.15 builds).
pub fn not_awaitable_message(obj: &PyAny) -> String {
    let name = type_name(obj);
    if python_at_least(3, 14) {
        format!("'{}' object can't be awaited", name)
    } else {
        format!("object {} can't be used in 'await' expression", name)
    }
}

/// A type's fully qualified name as CPython 3.13+ formats it in messages (`%T`):
/// `module.qualname`, with the module left out for `builtins` and `__main__`.
fn qualified_type_name(obj: &PyAny) -> PyResult<String> {
    let ty = obj.get_type();
    let module: String = ty.getattr("__module__")?.extract()?;
    let qualname: String = ty.getattr("__qualname__")?.extract()?;
    Ok(match module.as_str() {
        "builtins" | "__main__" => qualname,
        _ => format!("{}.{}", module, qualname),
    })
}

/// The `TypeError` message for an `__await__` that returned `result`, which is not an
/// iterator (`coroutine` says whether it is a coroutine instead), worded as the running
/// interpreter words it.
pub fn bad_await_result_message(
    awaitable: &PyAny,
    result: &PyAny,
    coroutine: bool,
) -> PyResult<String> {
    Ok(if python_at_least(3, 15) {
        format!(
            "{}.__await__() must return an iterator, not {}",
            qualified_type_name(awaitable)?,
            qualified_type_name(result)?
        )
    } else if coroutine {
        "__await__() returned a coroutine".to_owned()
    } else {
        format!(
            "__await__() returned non-iterator of type '{}'",
            type_name(result)
        )
    })
}

/// Native coroutines, and generators marked by `types.coroutine`: what `__await__`
/// must not return (PEP 492), and what `await` accepts without calling `__await__`.
pub fn is_coroutine(obj: &PyAny) -> PyResult<bool> {
    // SAFETY: type checks of a live object: they read only its type pointer, and take
    // the address of libpython's `PyCoro_Type` static without reading it (PyO3 0.12's
    // `ffi` has `PyCoro_Check` only, not `PyCoro_CheckExact`).
    let (coro, generator) = unsafe {
        (
            ffi::Py_TYPE(obj.as_ptr()) == ptr::addr_of_mut!(ffi::PyCoro_Type),
            ffi::PyGen_Check(obj.as_ptr()) != 0,
        )
    };
    Ok(coro || (generator && is_iterable_coroutine_generator(obj)?))
}

/// A generator made by a `types.coroutine` generator function.
pub fn is_iterable_coroutine_generator(obj: &PyAny) -> PyResult<bool> {
    // Through the attributes: the code object's C layout changed in 3.11.
    let flags: i64 = obj.getattr("gi_code")?.getattr("co_flags")?.extract()?;
    Ok(flags & CO_ITERABLE_COROUTINE != 0)
}

/// The `TypeError` message of `coro.throw(*args)` with a wrong number of arguments,
/// or `None` when `nargs` is within 1..=3.
pub fn throw_arity_message(nargs: usize) -> Option<String> {
    match nargs {
        0 if python_at_least(3, 8) => Some("throw expected at least 1 argument, got 0".into()),
        0 => Some("throw expected at least 1 arguments, got 0".into()),
        1..=3 => None,
        n => Some(format!("throw expected at most 3 arguments, got {}", n)),
    }
}

/// On 3.12+, `throw(type, value[, tb])` (more than one positional argument, even `None`)
/// emits a `DeprecationWarning`, as CPython's `gen.throw` does.
pub fn warn_legacy_throw_signature(py: Python, nargs: usize) -> PyResult<()> {
    if nargs > 1 && python_at_least(3, 12) {
        // PyO3 0.12's `exceptions` module has no warning categories.
        let category = py.import("builtins")?.getattr("DeprecationWarning")?;
        PyErr::warn(
            py,
            category,
            "the (type, exc, tb) signature of throw() is deprecated, \
             use the single-arg signature instead.",
            1,
        )?;
    }
    Ok(())
}

/// Whether a `StopIteration` thrown into a coroutine that has not started yet becomes
/// `RuntimeError` (PEP 479). Up to 3.11 it does; from 3.12 the exception is raised before
/// the frame reaches the code that converts it, and leaves unchanged.
pub fn unstarted_throw_converts_stop_iteration() -> bool {
    !python_at_least(3, 12)
}

/// The `StopIteration` a method raises for a returned `value`, as CPython's own
/// coroutines raise it: `StopIteration((value,))`, which is also what PyO3 0.12 makes of
/// `IterNextOutput::Return(value)`, except for `None`, which CPython raises as a bare
/// `StopIteration()` (no arguments; `.value` is `None` all the same).
pub fn stop_iteration(py: Python, value: PyObject) -> PyErr {
    if value.is_none(py) {
        PyStopIteration::new_err(())
    } else {
        PyStopIteration::new_err((value,))
    }
}

/// The value a finished iterator returned: `StopIteration.value`.
pub fn stop_iteration_value(py: Python, err: PyErr) -> PyResult<PyObject> {
    Ok(err.instance(py).getattr("value")?.into())
}

/// Whether a `StopIteration` thrown into a coroutine suspended in `await` (whose
/// awaited iterator has no `throw`) ends the `await`, with the exception's value as its
/// result. CPython 3.12's `CLEANUP_THROW` made it so; before, it left the coroutine as a
/// `RuntimeError` (PEP 479).
pub fn thrown_stop_iteration_returns_from_await() -> bool {
    python_at_least(3, 12)
}

/// Registers `cls` as a virtual subclass of `collections.abc.Coroutine`, which is what
/// `asyncio.iscoroutine` (and so `asyncio.run`, `create_task`, `ensure_future` and
/// `gather`) checks for.
pub fn register_coroutine_abc(cls: &PyType) -> PyResult<()> {
    let abc = cls.py().import("collections.abc")?.getattr("Coroutine")?;
    abc.call_method1("register", (cls,))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// `Py_EnterRecursiveCall` / `Py_LeaveRecursiveCall` (functions from 3.9, macros before;
// both declared in `crate::ffi`).
// ---------------------------------------------------------------------------------------

/// Counts a nested call into Python code against the recursion limit (and, on 3.14+,
/// against the real C stack): `Err(RecursionError)` when it is exceeded, else `Ok`, to
/// be paired with [`leave_recursive_call`]. `context` completes the message
/// ("maximum recursion depth exceeded" + `context`).
pub fn enter_recursive_call(py: Python, context: &CStr) -> PyResult<()> {
    // SAFETY: called with the GIL held (we have `py`); `context` is a NUL-terminated
    // string that outlives the call (CPython only formats it into the error message).
    if unsafe { ffi::Py_EnterRecursiveCall(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// Pairs a successful [`enter_recursive_call`], on the same thread, GIL held.
pub fn leave_recursive_call(_py: Python) {
    // SAFETY: the GIL is held (we have a `Python`), and the caller pairs a successful
    // `enter_recursive_call` on this thread, whose depth count this gives back.
    unsafe { ffi::Py_LeaveRecursiveCall() }
}
