//! What differs between the CPython versions this crate runs on (3.9 to 3.15), kept in
//! one place so that `protocol.rs` and the classes read as plain PEP 492 / PEP 380.
//!
//! Today's PyO3 lays out the type object and the async method table exactly as each
//! CPython version does (its `pyo3-ffi` is compiled per version), so unlike the 0.12
//! crate this module has no memory-layout repairs to make: it only holds the few
//! behaviours CPython itself changed between versions, and the C-level checks that
//! PyO3 has no safe wrapper for.

use std::ffi::CStr;

use pyo3::exceptions::{PyDeprecationWarning, PyStopIteration};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

/// `CO_ITERABLE_COROUTINE`: the code flag `types.coroutine` sets on a generator
/// function so that its generators may be awaited.
const CO_ITERABLE_COROUTINE: i64 = 0x100;

/// The C name of `obj`'s type (`tp_name`), which CPython's own messages use: for a
/// class defined in Python it is the bare class name, for a C or Rust type the dotted one.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    // SAFETY: `obj` is a live object, so its type is live; every type's `tp_name` is a
    // NUL-terminated string that lives as long as the type.
    let name = unsafe { CStr::from_ptr((*ffi::Py_TYPE(obj.as_ptr())).tp_name) };
    name.to_string_lossy().into_owned()
}

/// The message of the `TypeError` that `await obj` raises for a non-awaitable, worded
/// as the running interpreter words it.
pub(crate) fn not_awaitable_message(obj: &Bound<'_, PyAny>) -> String {
    let name = type_name(obj);
    if obj.py().version_info() >= (3, 14) {
        format!("'{name}' object can't be awaited")
    } else {
        format!("object {name} can't be used in 'await' expression")
    }
}

/// A type's fully qualified name as CPython 3.13+ formats it in messages (`%T`):
/// `module.qualname`, with the module left out for `builtins` and `__main__`.
fn qualified_type_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let ty = obj.get_type();
    let module: String = ty.getattr("__module__")?.extract()?;
    let qualname: String = ty.getattr("__qualname__")?.extract()?;
    Ok(match module.as_str() {
        "builtins" | "__main__" => qualname,
        _ => format!("{module}.{qualname}"),
    })
}

/// The `TypeError` message for an `__await__` that returned `result`, which is not an
/// iterator (`coroutine` says whether it is a coroutine instead), worded as the running
/// interpreter words it.
pub(crate) fn bad_await_result_message(
    awaitable: &Bound<'_, PyAny>,
    result: &Bound<'_, PyAny>,
    coroutine: bool,
) -> PyResult<String> {
    Ok(if awaitable.py().version_info() >= (3, 15) {
        format!(
            "{}.__await__() must return an iterator, not {}",
            qualified_type_name(awaitable)?,
            qualified_type_name(result)?
        )
    } else if coroutine && cfg!(PyPy) {
        "__await__() returned a coroutine (it must return an iterator instead, see PEP 492)"
            .to_owned()
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
pub(crate) fn is_coroutine(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(is_native_coroutine(obj) || (is_generator(obj) && is_iterable_coroutine_generator(obj)?))
}

// PyPy exports no type objects for its generators and coroutines (`ffi::PyGen_Check`
// and `ffi::PyCoro_CheckExact` read `PyGen_Type` and `PyCoro_Type`, undefined there:
// the module would not load); its C API has the checks as functions instead.
#[cfg(PyPy)]
unsafe extern "C" {
    #[link_name = "PyPyGen_Check"]
    fn pypy_gen_check(op: *mut ffi::PyObject) -> std::os::raw::c_int;
    #[link_name = "PyPyCoro_CheckExact"]
    fn pypy_coro_check_exact(op: *mut ffi::PyObject) -> std::os::raw::c_int;
}

/// `PyGen_Check`: a generator (of any generator function, `types.coroutine` or not).
pub(crate) fn is_generator(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a type check of a live object, attached: it reads only the object's type.
    #[cfg(not(PyPy))]
    let generator = unsafe { ffi::PyGen_Check(obj.as_ptr()) };
    // SAFETY: as above (PyPy's C API function of the same name and meaning).
    #[cfg(PyPy)]
    let generator = unsafe { pypy_gen_check(obj.as_ptr()) };
    generator != 0
}

/// `PyCoro_CheckExact`: a native coroutine (of an `async def`).
fn is_native_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a type check of a live object, attached: it reads only the object's type.
    #[cfg(not(PyPy))]
    let coro = unsafe { ffi::PyCoro_CheckExact(obj.as_ptr()) };
    // SAFETY: as above (PyPy's C API function of the same name and meaning).
    #[cfg(PyPy)]
    let coro = unsafe { pypy_coro_check_exact(obj.as_ptr()) };
    coro != 0
}

/// A generator made by a `types.coroutine` generator function.
pub(crate) fn is_iterable_coroutine_generator(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let flags: i64 = obj.getattr("gi_code")?.getattr("co_flags")?.extract()?;
    Ok(flags & CO_ITERABLE_COROUTINE != 0)
}

/// The value a finished iterator returned: `StopIteration.value`. (The exception is
/// released through a `Bound`, at once even where PyO3 is not told the thread is
/// attached: see `slots.rs`.)
pub(crate) fn stop_iteration_value<'py>(
    py: Python<'py>,
    err: PyErr,
) -> PyResult<Bound<'py, PyAny>> {
    err.into_value(py).into_bound(py).getattr("value")
}

/// How a `send`/`__next__` method returns `value`: a `StopIteration` carrying it, as
/// CPython's own coroutines raise it. Passing the value inside a 1-tuple keeps tuples and
/// exception instances intact as `.value`; `None` is returned as a bare `StopIteration()`
/// (no arguments; `.value` is `None` all the same).
pub(crate) fn stop_iteration(value: Bound<'_, PyAny>) -> PyErr {
    if value.is_none() {
        return PyStopIteration::new_err(());
    }
    PyStopIteration::new_err((value.unbind(),))
}

/// On 3.12+, `throw(type, value[, tb])` (more than one positional argument, even `None`)
/// emits a `DeprecationWarning`, as CPython's `gen.throw` does.
pub(crate) fn warn_legacy_throw_signature(py: Python<'_>, nargs: usize) -> PyResult<()> {
    if nargs > 1 && py.version_info() >= (3, 12) {
        PyErr::warn(
            py,
            &py.get_type::<PyDeprecationWarning>(),
            c"the (type, exc, tb) signature of throw() is deprecated, use the single-arg signature instead.",
            1,
        )?;
    }
    Ok(())
}

// ANCHOR: pep479
/// Whether a `StopIteration` thrown into a coroutine that has not started yet becomes
/// `RuntimeError` (PEP 479). Up to 3.11 it does; from 3.12 the exception is raised before
/// the frame reaches the code that converts it, and leaves unchanged.
pub(crate) fn unstarted_throw_converts_stop_iteration(py: Python<'_>) -> bool {
    py.version_info() < (3, 12)
}

/// Whether a `StopIteration` thrown into a coroutine suspended in `await` (whose
/// awaited iterator has no `throw`) ends the `await`, with the exception's value as its
/// result. CPython 3.12's `CLEANUP_THROW` made it so; before, it left the coroutine as a
/// `RuntimeError` (PEP 479). PyPy's `yield from` (3.11) already ends the `await` so.
pub(crate) fn thrown_stop_iteration_returns_from_await(py: Python<'_>) -> bool {
    cfg!(PyPy) || py.version_info() >= (3, 12)
}
// ANCHOR_END: pep479

/// Whether the caller's reference to `obj` is its only one, so that no other code (no
/// other thread either) can reach `obj` while the caller takes it apart.
///
/// From 3.14 CPython answers that itself (`PyUnstable_Object_IsUniquelyReferenced`):
/// under free threading a reference count of 1 proves nothing on its own, since another
/// thread may be taking a new reference from a borrowed one at that moment; the function
/// also checks that the object belongs to this thread and has no shared references.
/// Before 3.14 the reference count is the answer, because the interpreter lock keeps
/// every other thread still meanwhile: PyO3 0.30 builds for free-threaded CPython from
/// 3.14 only, so no lock-free build below 3.14 reaches this code.
pub(crate) fn is_uniquely_referenced(obj: &Bound<'_, PyAny>) -> bool {
    #[cfg(Py_3_14)]
    // SAFETY: attached (the caller holds a `Bound`), and `obj` is a live object.
    let unique = unsafe { ffi::PyUnstable_Object_IsUniquelyReferenced(obj.as_ptr()) } != 0;
    #[cfg(not(any(Py_3_14, Py_GIL_DISABLED)))]
    // SAFETY: reads the reference count of a live object; the interpreter lock keeps
    // every other thread from changing it meanwhile.
    let unique = unsafe { ffi::Py_REFCNT(obj.as_ptr()) } == 1;
    unique
}

// ANCHOR: coroutine_abc
/// Registers `cls` as a virtual subclass of `collections.abc.Coroutine`, which is what
/// `asyncio.iscoroutine` (and so `asyncio.run`, `create_task`, `ensure_future` and
/// `gather`) checks for.
pub(crate) fn register_coroutine_abc(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let abc = cls.py().import("collections.abc")?.getattr("Coroutine")?;
    abc.call_method1("register", (cls,))?;
    Ok(())
}
// ANCHOR_END: coroutine_abc

// ANCHOR: raise_object
/// The error that raises `exception` (an exception instance) as it is.
///
/// On PyPy, PyO3's `PyErr::from_value` (as every error it fetches, below Python 3.12)
/// takes the exception's traceback as a C object at once, and PyPy's C layer (cpyext)
/// converts it, entry by entry, into C-level proxies holding C references to the next
/// entry and to the frame, which its garbage collector cannot see through. Two cases
/// are measured to go wrong, and are raised there as lazy errors instead
/// (`PyErr_SetObject` with the instance: the traceback never reaches C; PyPy then
/// starts the exception's traceback afresh, a loss the other exceptions do not take):
///
/// * asyncio's `CancelledError`: `Task.__step`'s frame, in its traceback, holds it, a
///   cycle PyPy never frees: every cancelled Task was kept, with its waiter, the
///   exception, the traceback and its frames (about 4 KiB each);
/// * `RecursionError`: from a chain of 100,000 native coroutines its traceback is as
///   deep, and converting it recursively crashed PyPy once the JIT had compiled the
///   chain (a segfault, or "Fatal error in cpyext... PyErr_Fetch was not supposed to
///   fail"; fine with --jit off).
pub(crate) fn raise_object(exception: Bound<'_, PyAny>) -> PyErr {
    #[cfg(PyPy)]
    {
        use pyo3::exceptions::PyRecursionError;
        use pyo3::sync::PyOnceLock;
        use pyo3::types::PyType;
        static CANCELLED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        let py = exception.py();
        let cancelled = CANCELLED
            .import(py, "asyncio", "CancelledError")
            .is_ok_and(|class| exception.is_instance(class).unwrap_or(false));
        if cancelled || exception.is_instance_of::<PyRecursionError>() {
            return PyErr::from_type(exception.get_type(), exception.unbind());
        }
    }
    PyErr::from_value(exception)
}
// ANCHOR_END: raise_object

// ANCHOR: call
/// What a call of an iterator's `send`, `throw` or `close` (or of `next`) did, when it
/// did not raise: returned a value, or raised `StopIteration` (with this `.value`).
pub(crate) enum Called<'py> {
    Returned(Bound<'py, PyAny>),
    Stopped(Bound<'py, PyAny>),
}

/// `f(*args)`, a `StopIteration` taken apart. On PyPy an exception `f` raises is caught
/// in Python and comes back as an object, raised again by [`raise_object`], which decides
/// whether its traceback may reach PyPy's C layer: fetched by PyO3 (`PyErr_Fetch`), it
/// always would (measured: every Task cancelled while `delegate` waited on a Future,
/// kept with its `CancelledError`'s traceback and frames).
pub(crate) fn call<'py>(
    f: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Called<'py>> {
    #[cfg(PyPy)]
    {
        let (how, value) = pypy_call(f, args)?;
        match how {
            0 => Ok(Called::Returned(value)),
            1 => Ok(Called::Stopped(value)),
            _ => Err(raise_object(value)),
        }
    }
    #[cfg(not(PyPy))]
    {
        match f.call1(args) {
            Ok(value) => Ok(Called::Returned(value)),
            Err(err) if err.is_instance_of::<PyStopIteration>(f.py()) => {
                Ok(Called::Stopped(stop_iteration_value(f.py(), err)?))
            }
            Err(err) => Err(err),
        }
    }
}

/// `f(*args)`, or `None` when it raised `NotImplementedError` (an event loop without
/// `add_reader`). On PyPy that exception is dropped without its traceback reaching the C
/// layer (see [`call`]): fetched there, it kept the loop (the frame of its `add_reader`)
/// and the Task that awaited (the frames below) for ever.
pub(crate) fn call_unless_not_implemented<'py>(
    f: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    use pyo3::exceptions::PyNotImplementedError;
    #[cfg(PyPy)]
    {
        let (how, value) = pypy_call(f, args)?;
        match how {
            2 if value.is_instance_of::<PyNotImplementedError>() => Ok(None),
            2 => Err(raise_object(value)),
            _ => Ok(Some(value)), // (1, a StopIteration's value: not from these callables)
        }
    }
    #[cfg(not(PyPy))]
    {
        match f.call1(args) {
            Ok(value) => Ok(Some(value)),
            Err(err) if err.is_instance_of::<PyNotImplementedError>(f.py()) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// On PyPy: `f(*args)` called from Python, the outcome as `(0, returned value)`,
/// `(1, StopIteration's value)` or `(2, the exception raised)`.
#[cfg(PyPy)]
fn pypy_call<'py>(
    f: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<(u8, Bound<'py, PyAny>)> {
    use pyo3::sync::PyOnceLock;
    use pyo3::types::PyModule;
    static CALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = f.py();
    let call = CALL.get_or_try_init(py, || {
        let code = c"def call(f, args):
    try:
        return 0, f(*args)
    except StopIteration as stop:
        return 1, stop.value
    except BaseException as exception:
        return 2, exception
";
        PyModule::from_code(py, code, c"<pyo3_modern_pymethods>", c"_pypy_call")?
            .getattr("call")
            .map(Bound::unbind)
    })?;
    call.bind(py).call1((f, args))?.extract()
}
// ANCHOR_END: call
