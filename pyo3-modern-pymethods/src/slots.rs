//! Type slots filled by hand: the hot path of stepping a coroutine written in Rust.
//!
//! PyO3 fills `am_await` from `__await__` and `tp_iternext` from `__next__` with its own
//! slot wrappers, and has no name at all for CPython 3.10's `am_send`. The wrappers are
//! correct but general: each step goes through PyO3's error state, and a returned value
//! is built as `StopIteration((value,))` and normalised. Here each class that is stepped
//! on every `await` (each [`Stepped`] class: `lib.rs` installs them) gets three small C
//! functions instead:
//!
//! * `am_await`: returns the object itself, as the `__await__` method does;
//! * `tp_iternext`: one step; a returned value leaves as CPython's own generators return
//!   one (`_PyGen_SetStopIterationValue`): `PyErr_SetObject(StopIteration, value)`, which
//!   up to 3.11 is not even instantiated when `await` takes the value back;
//! * `am_send` (3.10+): one step that returns its value through `*result` with
//!   `PYGEN_RETURN`, with no exception at all (asyncio's Task, and `await` on 3.10, 3.11
//!   and 3.15).
//!
//! The `#[pymethods]` stay as they are: they are what `type(coro).__next__` and
//! `coro.send(v)` call (a type's method wrappers keep the function they were made
//! with), and the semantics of both paths are those of the class's one step function.
//! `_FAST_SLOTS` in the module lists the installed functions by address, and a test
//! compares them with the type object's slots, so a silent fallback fails the suite.
//!
//! No panic unwinds out of these `extern "C"` functions: each body runs inside
//! `catch_unwind`, and a panic leaves as `PanicException` set as the Python error.
//! `_panic_next_step` (a module function) makes the next step panic, for the tests.
//!
//! Not on PyPy: there `next()`, `await`, `send` and asyncio's Task reach a C type's
//! steps through the method wrappers PyPy made from its slots when the type was created,
//! so slots filled afterwards are never called by PyPy itself; the crate's own steps go
//! through Python's `next()` there (`protocol::step_iter`). `install` fills nothing, and
//! `_FAST_SLOTS` is empty.
#![cfg_attr(PyPy, allow(dead_code))]

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict};
use pyo3::PyClass;

use crate::protocol::{self, Step};

// ANCHOR: stepped
/// A class whose instances are stepped through the slots of this module.
pub(crate) trait Stepped: PyClass {
    /// One step: what `send(sent)` does.
    fn step<'py>(slf: &Bound<'py, Self>, sent: &Bound<'py, PyAny>) -> PyResult<Step<'py>>;

    /// The class's own free list (a `static` of its impl: see [`free_list!`]).
    fn free_list() -> &'static FreeList;
}

/// The body of [`Stepped::free_list`]: a free list of the implementing class's own.
macro_rules! free_list {
    () => {
        fn free_list() -> &'static $crate::slots::FreeList {
            static FREE_LIST: $crate::slots::FreeList = $crate::slots::FreeList::new();
            &FREE_LIST
        }
    };
}
pub(crate) use free_list;
// ANCHOR_END: stepped

/// Runs the body of a slot function, the whole of it: a panic does not unwind out of the
/// `extern "C"` function (which would abort the process) but is set as the Python error,
/// `PanicException`, and the slot returns `failed`. (A panic while reporting a panic,
/// in PyO3's making of its exception type, would still abort: never a silent unwind.)
fn no_unwind<R>(py: Python<'_>, failed: R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        protocol::panic_error(payload).restore(py);
        failed
    })
}

/// Runs one step of the `T` at `slf`.
///
/// The slots take the thread as attached (`Python::assume_attached`) without telling
/// PyO3 (`Python::attach` would, at the price of a `PyGILState_Ensure`/`Release` pair
/// on every step: a fifth of a delegated step). What that means: a `Py` dropped during
/// the step is not released at once but queued in PyO3's reference pool, and released
/// the next time PyO3 is entered. Dropping `Bound`s is immediate either way, so the steps
/// release what they finish with through `Bound` (`RustAwait` its inner iterator, the
/// `StopIteration` an inner iterator returned with); only the type and message of an
/// error raised by the step itself go through the pool.
///
/// # Safety
/// The thread is attached; `slf` is a live instance of `T` (the slots are installed on
/// `T`'s type only, and `T` cannot be subclassed); `sent` is a live object or NULL (None).
unsafe fn step<'py, T: Stepped>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
    sent: *mut ffi::PyObject,
) -> PyResult<Step<'py>> {
    // SAFETY: as the caller guarantees: live borrowed references (a new reference to each
    // is taken), `slf` of exactly type `T`.
    let (slf, sent) = unsafe {
        let sent = if sent.is_null() { ffi::Py_None() } else { sent };
        (
            Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<T>(),
            Bound::from_borrowed_ptr(py, sent),
        )
    };
    T::step(&slf, &sent)
}

// ANCHOR: panic_hook
thread_local! {
    /// The message `_panic_next_step` armed on this thread, if any.
    static PANIC_NEXT_STEP: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// How many threads have a message armed: while none has, a step pays one atomic load
/// for the hook and never touches the thread-local.
static ARMED: AtomicUsize = AtomicUsize::new(0);

/// _panic_next_step(message) -> None: the next step of a `RustCoroutine` or `RustAwait`
/// through a hand-filled slot (`tp_iternext` or `am_send`) on this thread panics with
/// `message`, after the step itself, where the slot builds its result. For the tests of
/// the guarantee that no panic unwinds out of a slot.
#[pyfunction]
#[pyo3(name = "_panic_next_step")]
pub fn panic_next_step(message: String) {
    let was_armed = PANIC_NEXT_STEP.with_borrow_mut(|armed| armed.replace(message).is_some());
    if !was_armed {
        ARMED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Panics if `_panic_next_step` armed a message on this thread (disarming it).
fn panic_if_armed() {
    if ARMED.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(message) = PANIC_NEXT_STEP.with_borrow_mut(Option::take) {
        ARMED.fetch_sub(1, Ordering::Relaxed);
        panic!("{message}");
    }
}
// ANCHOR_END: panic_hook

// ANCHOR: slots
/// `am_await`: the object is its own iterator. (Nothing in it can panic.)
unsafe extern "C" fn await_self(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a live object and takes the new reference returned.
    unsafe { ffi::Py_IncRef(slf) };
    slf
}

/// `tp_iternext`: one step with `None`; a returned value raised as `StopIteration`.
unsafe extern "C" fn iternext<T: Stepped>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls slots on an attached thread (see `step` for why PyO3 is not
    // told).
    let py = unsafe { Python::assume_attached() };
    no_unwind(py, ptr::null_mut(), || {
        // SAFETY: attached; CPython passes a live instance of the type the slot is
        // installed on (`T`'s, see `install`).
        let stepped = unsafe { step::<T>(py, slf, ptr::null_mut()) };
        let stepped = match stepped {
            Ok(stepped) => stepped,
            Err(err) => {
                err.restore(py);
                return ptr::null_mut();
            }
        };
        panic_if_armed();
        match stepped {
            Step::Yield(value) => value.into_ptr(),
            // A return of `None` is signalled with no exception at all, as a generator's
            // `tp_iternext` does: `next()` and `await` read it as `StopIteration()`.
            Step::Return(value) if value.is_none() => ptr::null_mut(),
            Step::Return(value) => {
                raise_stop_iteration(&value);
                ptr::null_mut()
            }
        }
    })
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
fn raise_stop_iteration(value: &Bound<'_, PyAny>) {
    // SAFETY: attached (the caller holds a `Bound`); `value` is live, and so is the
    // `StopIteration` class (a static of the interpreter). `PyErr_SetObject` takes its
    // own references; the instance is released after it is set. On a failure its error
    // is left set, as CPython's own function leaves it.
    unsafe {
        let stop = ffi::PyExc_StopIteration;
        let v = value.as_ptr();
        if cfg!(not(Py_3_12))
            && ffi::PyTuple_Check(v) == 0
            && ffi::PyExceptionInstance_Check(v) == 0
        {
            ffi::PyErr_SetObject(stop, v);
            return;
        }
        let instance = new_stop_iteration(v);
        if !instance.is_null() {
            ffi::PyErr_SetObject(stop, instance);
            ffi::Py_DecRef(instance);
        }
    }
}

/// `StopIteration(value)`, made by the class's own `tp_new` and `tp_init`; a new
/// reference, or NULL with the error set.
///
/// # Safety
/// Attached; `value` is a live object.
unsafe fn new_stop_iteration(value: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: as the caller guarantees. `StopIteration` is a static, ready type whose
    // `tp_new` (`BaseException_new`) and `tp_init` (`StopIteration_init`) are never NULL
    // (were one, the `expect` would panic inside the slot's `catch_unwind`); both take the
    // argument tuple borrowed, and the tuple is released on every path.
    unsafe {
        let stop = ffi::PyExc_StopIteration.cast::<ffi::PyTypeObject>();
        let args = ffi::PyTuple_New(1);
        if args.is_null() {
            return ptr::null_mut();
        }
        ffi::Py_IncRef(value);
        ffi::PyTuple_SetItem(args, 0, value); // steals the reference; cannot fail here
        let (new, init) = (
            (*stop).tp_new.expect("tp_new"),
            (*stop).tp_init.expect("tp_init"),
        );
        let mut instance = new(stop, args, ptr::null_mut());
        if !instance.is_null() && init(instance, args, ptr::null_mut()) < 0 {
            ffi::Py_DecRef(instance);
            instance = ptr::null_mut();
        }
        ffi::Py_DecRef(args);
        instance
    }
}
// ANCHOR_END: raise_stop_iteration

/// `am_send` (CPython 3.10+): one step with `arg`; a returned value goes to `*result`.
/// On `PYGEN_ERROR`, `*result` is NULL (debug builds of CPython assert it).
#[cfg(Py_3_10)]
unsafe extern "C" fn am_send<T: Stepped>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    use ffi::PySendResult::{PYGEN_ERROR, PYGEN_NEXT, PYGEN_RETURN};
    // SAFETY: as in `iternext`.
    let py = unsafe { Python::assume_attached() };
    let (status, value) = no_unwind(py, (PYGEN_ERROR, ptr::null_mut()), || {
        // SAFETY: as in `iternext`; `arg` is a live object (or NULL, taken as None).
        let stepped = unsafe { step::<T>(py, slf, arg) };
        let stepped = match stepped {
            Ok(stepped) => stepped,
            Err(err) => {
                err.restore(py);
                return (PYGEN_ERROR, ptr::null_mut());
            }
        };
        panic_if_armed();
        match stepped {
            Step::Yield(value) => (PYGEN_NEXT, value.into_ptr()),
            Step::Return(value) => (PYGEN_RETURN, value.into_ptr()),
        }
    });
    // SAFETY: `result` is the out-pointer CPython passed, valid for a write; it takes the
    // new reference (or NULL, on an error).
    unsafe { *result = value };
    status
}
// ANCHOR_END: slots

// ANCHOR: free_list
/// How many freed objects of one class are kept for the next ones (CPython keeps 80
/// async generator `asend` objects, and asyncio 255 Future iterators).
const FREE_LIST_SIZE: usize = 64;

/// Freed objects of one class, kept whole (their memory, untracked by the collector,
/// holding no reference, not even to their type) for the next object of the class, as
/// CPython keeps its own coroutines' helper objects: making and freeing the awaitable of
/// every `await` is what is left between these classes and CPython's own.
///
/// PyO3's `#[pyclass(freelist = N)]` would do the same, but PyO3 0.30.1 hands a reused
/// object out without tracking it for the cycle collector (PyO3 pull request #6442): an
/// abandoned Task waiting on one would never be freed. These are `tp_alloc` and
/// `tp_free` of our own, filled by `install` like the steps; a reused object is tracked
/// as `PyType_GenericAlloc` tracks a new one.
///
/// Only with the GIL: the interpreter lock is what guards the list (each slot runs with
/// the thread attached, and the module is refused in a second interpreter). On a
/// free-threaded build (and on PyPy) nothing is installed.
pub(crate) struct FreeList {
    objects: std::cell::UnsafeCell<[*mut ffi::PyObject; FREE_LIST_SIZE]>,
    len: std::cell::Cell<usize>,
}

// SAFETY: the list is only touched by `alloc` and `free` below, which CPython calls with
// the thread attached, and which are installed only where the GIL is (not on a
// free-threaded build): one thread at a time. The pointers are freed objects that no
// other code references.
unsafe impl Sync for FreeList {}

impl FreeList {
    pub(crate) const fn new() -> Self {
        FreeList {
            objects: std::cell::UnsafeCell::new([ptr::null_mut(); FREE_LIST_SIZE]),
            len: std::cell::Cell::new(0),
        }
    }

    /// A kept object, if there is one.
    ///
    /// # Safety
    /// The GIL is held (see the type's documentation).
    unsafe fn pop(&self) -> Option<*mut ffi::PyObject> {
        let len = self.len.get().checked_sub(1)?;
        self.len.set(len);
        // SAFETY: the GIL is held, so no other reference to the array exists now.
        unsafe { (*self.objects.get()).get(len).copied() }
    }

    /// Keeps `object`, unless the list is full (then `object` is handed back).
    ///
    /// # Safety
    /// The GIL is held.
    unsafe fn push(&self, object: *mut ffi::PyObject) -> Result<(), *mut ffi::PyObject> {
        let len = self.len.get();
        // SAFETY: as in `pop`.
        let slot = unsafe { (*self.objects.get()).get_mut(len) }.ok_or(object)?;
        *slot = object;
        self.len.set(len + 1);
        Ok(())
    }
}

/// `tp_alloc`: a kept object if there is one (zeroed, its type and reference count set
/// by `PyObject_Init`, tracked by the collector), else `PyType_GenericAlloc`'s. Nothing
/// in it can panic.
#[cfg(not(any(PyPy, Py_GIL_DISABLED)))]
unsafe extern "C" fn alloc<T: Stepped>(
    subtype: *mut ffi::PyTypeObject,
    nitems: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls `tp_alloc` attached, with the GIL (see `FreeList`); `T`'s type
    // cannot be subclassed, so `subtype` is `T`'s own, whose instances are `tp_basicsize`
    // bytes (no items). A kept object is such an instance, freed: zeroing its body after
    // the object header gives what `PyType_GenericAlloc` gives (PyO3 writes its contents
    // next), `PyObject_Init` sets its type (a new reference to it) and its reference
    // count, and it is tracked as a new object is: it was untracked by PyO3's
    // `tp_dealloc` before `free` kept it. A debug build's `PyObject_GC_Track` also calls
    // `tp_traverse` on it, to validate it: PyO3 reads the zeroed borrow flag as unused and
    // calls `__traverse__`, which in each of these classes reads `Option` fields only (all
    // zeroes is `None`) and so visits nothing.
    unsafe {
        if nitems == 0 {
            if let Some(object) = T::free_list().pop() {
                let header = std::mem::size_of::<ffi::PyObject>();
                let size = usize::try_from((*subtype).tp_basicsize).unwrap_or(header);
                ptr::write_bytes(
                    object.cast::<u8>().add(header),
                    0,
                    size.saturating_sub(header),
                );
                ffi::PyObject_Init(object, subtype);
                ffi::PyObject_GC_Track(object.cast());
                return object;
            }
        }
        ffi::PyType_GenericAlloc(subtype, nitems)
    }
}

/// `tp_free`: keeps the object for the next one, or hands it to `PyObject_GC_Del` when
/// the list is full. Nothing in it can panic.
#[cfg(not(any(PyPy, Py_GIL_DISABLED)))]
unsafe extern "C" fn free<T: Stepped>(object: *mut std::ffi::c_void) {
    // SAFETY: CPython (through PyO3's `tp_dealloc`, which untracked the object, dropped
    // its contents and released its type) calls `tp_free` attached, with the GIL, on an
    // instance of `T` that nothing references any more; one that is not kept is freed as
    // the class's inherited `tp_free` (`PyObject_GC_Del`) would free it.
    unsafe {
        if let Err(object) = T::free_list().push(object.cast()) {
            ffi::PyObject_GC_Del(object.cast());
        }
    }
}
// ANCHOR_END: free_list

// ANCHOR: install
/// Fills `am_await`, `tp_iternext`, (3.10+) `am_send` and (with the GIL) `tp_alloc` and
/// `tp_free` of `T`'s type with the functions above; returns each installed slot's name
/// and the function's address, the entry of `T` in the module's `_FAST_SLOTS`.
pub(crate) fn install<T: Stepped>(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    if cfg!(PyPy) {
        return Ok(PyDict::new(py)); // no effect there: see the module's documentation
    }
    let class = py.get_type::<T>();
    let type_object = class.as_type_ptr();
    let mut installed = Vec::new();
    // SAFETY: a type object PyO3 made for `T` and keeps alive for the process; attached,
    // and (under free threading too) before the module that defines `T` is returned, so no
    // instance has been stepped yet. `tp_as_async` points into the type object's own
    // `PyAsyncMethods` (not NULL: `T` has `__await__`). Replacing a filled slot with a
    // function of the same meaning, or filling the empty `am_send`, is what
    // `PyType_FromSpec` would have done; `PyType_Modified` drops what CPython cached.
    unsafe {
        (*type_object).tp_iternext = Some(iternext::<T>);
        installed.push(("tp_iternext", iternext::<T> as *const () as usize));
        #[cfg(not(any(PyPy, Py_GIL_DISABLED)))]
        {
            // No instance exists yet, so none is freed by a `tp_free` it was not made for.
            (*type_object).tp_alloc = Some(alloc::<T>);
            installed.push(("tp_alloc", alloc::<T> as *const () as usize));
            (*type_object).tp_free = Some(free::<T>);
            installed.push(("tp_free", free::<T> as *const () as usize));
        }
        let methods = (*type_object).tp_as_async;
        if !methods.is_null() {
            (*methods).am_await = Some(await_self);
            installed.push(("am_await", await_self as *const () as usize));
            #[cfg(Py_3_10)]
            {
                (*methods).am_send = Some(am_send::<T>);
                installed.push(("am_send", am_send::<T> as *const () as usize));
            }
        }
        ffi::PyType_Modified(type_object);
    }
    installed.into_py_dict(py)
}
// ANCHOR_END: install
