//! Type slots filled by hand: the hot path of stepping a coroutine written in Rust.
//!
//! `#[pyproto]` fills `am_await` from `__await__` and `tp_iternext` from `__next__` with
//! PyO3 0.12's slot wrappers, and PyO3 0.12 knows nothing of CPython 3.10's `am_send`.
//! The wrappers are correct but general: each step goes through PyO3's error state, and
//! a returned value (`IterNextOutput::Return`) is built as `StopIteration((value,))` from
//! a boxed lazy error. Here each class that is stepped on every `await`
//! ([`RustCoroutine`](crate::coroutine::RustCoroutine) and
//! [`RustAwait`](crate::delegate::RustAwait)) gets three small C functions instead:
//!
//! * `am_await`: returns the object itself, as `__await__` does;
//! * `tp_iternext`: one step; a returned value leaves as CPython's own generators return
//!   one (`_PyGen_SetStopIterationValue`): `PyErr_SetObject(StopIteration, value)`, which
//!   up to 3.11 is not even instantiated when `await` takes the value back;
//! * `am_send` (3.10+): one step that returns its value through `*result` with
//!   `PYGEN_RETURN`, with no exception at all (asyncio's Task, and `await` on 3.10, 3.11
//!   and 3.15).
//!   It lives in the 4-field table of `compat`'s fix (a).
//!
//! The `#[pyproto]` and `#[pymethods]` stay as they are: they are what
//! `type(coro).__next__` and `coro.send(v)` call (a type's method wrappers keep the
//! function they were made with), and both paths run the class's one step function.
//! `_FAST_SLOTS` in the module lists the installed functions by address, and a test
//! compares them with the type object's slots, so a silent fallback fails the suite.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::class::iter::{IterNextOutput, PyIterNextOutput};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{ffi, AsPyPointer, PyClass};

use crate::compat;

// ANCHOR: stepped
/// A class whose instances are stepped through the slots of this module.
pub(crate) trait Stepped: PyClass {
    /// One step: what `send(sent)` does (`IterNextOutput::Yield` when it suspends,
    /// `IterNextOutput::Return` when it finishes).
    fn send_step(slf: &PyCell<Self>, sent: &PyAny) -> PyResult<PyIterNextOutput>;
}
// ANCHOR_END: stepped

/// Runs one step of the `T` at `slf`, catching a panic.
///
/// # Safety
/// The GIL is held, with a `GILPool` for the references the step registers; `slf` is a
/// live instance of `T` (the slots are installed on `T`'s type only, and `T` cannot be
/// subclassed); `sent` is a live object or NULL (None).
unsafe fn step<T: Stepped>(
    py: Python,
    slf: *mut ffi::PyObject,
    sent: *mut ffi::PyObject,
) -> Option<PyIterNextOutput> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as the caller guarantees: live borrowed references, `slf` of exactly
        // type `T` (a `PyCell<T>`).
        let (slf, sent): (&PyCell<T>, &PyAny) = unsafe {
            let sent = if sent.is_null() { ffi::Py_None() } else { sent };
            (py.from_borrowed_ptr(slf), py.from_borrowed_ptr(sent))
        };
        T::send_step(slf, sent)
    }));
    match outcome {
        Ok(Ok(output)) => Some(output),
        Ok(Err(err)) => {
            err.restore(py);
            None
        }
        Err(payload) => {
            crate::bridge::panic_error(payload).restore(py);
            None
        }
    }
}

// ANCHOR: slots
/// `am_await`: the object is its own iterator.
unsafe extern "C" fn await_self(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a live object and takes the new reference returned.
    unsafe { ffi::Py_INCREF(slf) };
    slf
}

/// `tp_iternext`: one step with `None`; a returned value raised as `StopIteration`.
unsafe extern "C" fn iternext<T: Stepped>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls slots with the GIL held. The pool releases the references
    // the step registers (PyO3 0.12 keeps owned references in it), as PyO3's own slot
    // wrappers do; `slf` is a live instance of the type the slot is installed on.
    unsafe {
        let pool = pyo3::GILPool::new();
        let py = pool.python();
        match step::<T>(py, slf, ptr::null_mut()) {
            Some(IterNextOutput::Yield(value)) => value.into_ptr(),
            // A return of `None` is signalled with no exception at all, as a generator's
            // `tp_iternext` does: `next()` and `await` read it as `StopIteration()`.
            Some(IterNextOutput::Return(value)) if value.is_none(py) => ptr::null_mut(),
            Some(IterNextOutput::Return(value)) => {
                raise_stop_iteration(py, &value);
                ptr::null_mut()
            }
            None => ptr::null_mut(),
        }
    }
}

// ANCHOR: raise_stop_iteration
/// Raises `StopIteration` carrying `value`, as a generator's `return value` does
/// (CPython's `_PyGen_SetStopIterationValue`).
///
/// Up to 3.11 the value itself is set as the exception's argument, uninstantiated, which
/// `await` (`_PyGen_FetchStopIterationValue`) takes back without ever making the
/// exception object; a tuple or an exception would be taken apart or mistaken for the
/// exception, so those are wrapped in an instance first. From 3.12 an exception is always
/// an instance, so one is made straight away: `StopIteration.__new__` and `__init__` with
/// the argument tuple `(value,)`, which is what calling the class does, minus the call.
fn raise_stop_iteration(py: Python, value: &PyObject) {
    let _ = py; // proof that the GIL is held
    // SAFETY: the GIL is held; `value` is live, and so is the `StopIteration` class (a
    // static of the interpreter). `PyErr_SetObject` takes its own references; the
    // instance is released after it is set. On a failure its error is left set, as
    // CPython's own function leaves it.
    unsafe {
        let stop = ffi::PyExc_StopIteration;
        let v = value.as_ptr();
        if !compat::python_at_least(3, 12)
            && ffi::PyTuple_Check(v) == 0
            && ffi::PyExceptionInstance_Check(v) == 0
        {
            ffi::PyErr_SetObject(stop, v);
            return;
        }
        let instance = new_stop_iteration(v);
        if !instance.is_null() {
            ffi::PyErr_SetObject(stop, instance);
            ffi::Py_DECREF(instance);
        }
    }
}

/// `StopIteration(value)`, made by the class's own `tp_new` and `tp_init`; a new
/// reference, or NULL with the error set.
///
/// # Safety
/// The GIL is held; `value` is a live object.
unsafe fn new_stop_iteration(value: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: as the caller guarantees. `StopIteration` is a static, ready type whose
    // `tp_new` (`BaseException_new`) and `tp_init` (`StopIteration_init`) are never NULL
    // (both sit before the fields PyO3 0.12's shorter `PyTypeObject` lacks); both take
    // the argument tuple borrowed, and the tuple is released on every path.
    unsafe {
        let stop = ffi::PyExc_StopIteration.cast::<ffi::PyTypeObject>();
        let args = ffi::PyTuple_New(1);
        if args.is_null() {
            return ptr::null_mut();
        }
        ffi::Py_INCREF(value);
        ffi::PyTuple_SetItem(args, 0, value); // steals the reference; cannot fail here
        let (new, init) = ((*stop).tp_new.expect("tp_new"), (*stop).tp_init.expect("tp_init"));
        let mut instance = new(stop, args, ptr::null_mut());
        if !instance.is_null() && init(instance, args, ptr::null_mut()) < 0 {
            ffi::Py_DECREF(instance);
            instance = ptr::null_mut();
        }
        ffi::Py_DECREF(args);
        instance
    }
}
// ANCHOR_END: raise_stop_iteration

/// `am_send` (CPython 3.10+): one step with `arg`; a returned value goes to `*result`.
unsafe extern "C" fn am_send<T: Stepped>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> c_int {
    const PYGEN_RETURN: c_int = 0;
    const PYGEN_ERROR: c_int = -1;
    const PYGEN_NEXT: c_int = 1;
    // SAFETY: as in `iternext`; `arg` is a live object (or NULL, taken as None), and
    // `result` the out-pointer CPython passed, which takes the new reference.
    unsafe {
        let pool = pyo3::GILPool::new();
        let (status, value) = match step::<T>(pool.python(), slf, arg) {
            Some(IterNextOutput::Yield(value)) => (PYGEN_NEXT, value),
            Some(IterNextOutput::Return(value)) => (PYGEN_RETURN, value),
            None => return PYGEN_ERROR,
        };
        *result = value.into_ptr();
        status
    }
}
// ANCHOR_END: slots

// ANCHOR: install
/// Fills `am_await`, `tp_iternext` and (3.10+) `am_send` of `T`'s type with the
/// functions above; returns each installed slot's name and the function's address.
/// Nothing is installed with `compat`'s fixes switched off: the crate is then PyO3 0.12
/// as it stands.
pub(crate) fn install<T: Stepped>(py: Python) -> Vec<(&'static str, usize)> {
    let mut installed = Vec::new();
    if !compat::fixes_enabled() {
        return installed;
    }
    let type_object = T::type_object_raw(py);
    // SAFETY: the type object PyO3 made for `T` (never freed), ready, and the GIL is held,
    // before the module that defines `T` is returned, so no instance has been stepped yet.
    // `tp_as_async` points to the async table of fix (a) (not NULL: `T` has
    // `__await__`). Replacing a filled slot with a function of the same meaning is what
    // `PyType_Ready` would have done; `PyType_Modified` drops what CPython cached.
    unsafe {
        (*type_object).tp_iternext = Some(iternext::<T>);
        installed.push(("tp_iternext", iternext::<T> as *const () as usize));
        let methods = (*type_object).tp_as_async;
        if !methods.is_null() {
            (*methods).am_await = Some(await_self);
            installed.push(("am_await", await_self as *const () as usize));
        }
        ffi::PyType_Modified(type_object);
    }
    if compat::install_am_send::<T>(py, am_send::<T>) {
        installed.push(("am_send", am_send::<T> as *const () as usize));
    }
    installed
}
// ANCHOR_END: install

/// `install` for every stepped class of the module, as the `dict` the module exposes as
/// `_FAST_SLOTS` (`{"RustCoroutine": {"tp_iternext": address, ...}, ...}`).
pub fn install_all(py: Python<'_>) -> PyResult<&PyDict> {
    let all = PyDict::new(py);
    for (name, installed) in [
        ("RustCoroutine", install::<crate::coroutine::RustCoroutine>(py)),
        ("RustAwait", install::<crate::delegate::RustAwait>(py)),
    ] {
        let slots = PyDict::new(py);
        for (slot, address) in installed {
            slots.set_item(slot, address)?;
        }
        all.set_item(name, slots)?;
    }
    Ok(all)
}
