//! Type slots filled by hand: the hot path of stepping a coroutine written in Rust.
//!
//! `#[pyproto]` fills `am_await` from `__await__` and `tp_iternext` from `__next__` with
//! PyO3 0.12's slot wrappers, and PyO3 0.12 knows nothing of CPython 3.10's `am_send`.
//! The wrappers are correct but general: each step goes through PyO3's error state, and
//! a returned value (`Step::Return`) is built as `StopIteration((value,))` from a boxed
//! lazy error. Here each class that is stepped on every `await` (any [`Stepped`] class:
//! `lib.rs` installs them on `RustCoroutine` and `RustAwait`) gets three small C
//! functions instead:
//!
//! * `am_await`: returns the object itself, as `__await__` does;
//! * `tp_iternext`: one step; a returned value leaves as CPython's own generators return
//!   one (`_PyGen_SetStopIterationValue`): `PyErr_SetObject(StopIteration, value)`, which
//!   up to 3.11 is not even instantiated when `await` takes the value back;
//! * `am_send` (3.10+): one step that returns its value through `*result` with
//!   `PYGEN_RETURN`, with no exception at all (asyncio's Task, and `await` on 3.10, 3.11
//!   and 3.15).
//!   It lives in the 4-field table (`ffi::AsyncMethodsWithSend`) that the repair of
//!   PyO3 0.12's type objects (fix (a)) gives the class.
//!
//! No panic unwinds out of these `extern "C"` functions: the body of `tp_iternext` and
//! `am_send` runs whole inside `catch_unwind` (`am_await`'s one increment cannot panic),
//! and a panic leaves as `PanicException` (`protocol::panic_error`) with the slot's error
//! return. `_panic_next_step(message)` ([`panic_next_step`]) makes the
//! next step through one of them panic, for the tests of exactly that.
//!
//! The `#[pyproto]` and `#[pymethods]` stay as they are: they are what
//! `type(coro).__next__` and `coro.send(v)` call (a type's method wrappers keep the
//! function they were made with), and both paths run the class's one step function.
//! `_FAST_SLOTS` in the module lists the installed functions by address, and a test
//! compares them with the type object's slots, so a silent fallback fails the suite.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::prelude::*;
use pyo3::{AsPyPointer, PyClass};

use crate::compat;
use crate::ffi;
use crate::protocol::{panic_error, Step};

// ANCHOR: stepped
/// A class whose instances are stepped through the slots of this module.
pub(crate) trait Stepped: PyClass {
    /// One step: what `send(sent)` does (`Step::Yield` when it suspends, `Step::Return`
    /// when it finishes).
    fn step(slf: &PyCell<Self>, sent: &PyAny) -> PyResult<Step>;

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

/// Runs `body`, the whole body of a slot function, with a `GILPool` for the references
/// it registers (PyO3 0.12 keeps owned references in it, as its own slot wrappers do).
/// A panic anywhere in it, the pool included, is caught and set as the Python error
/// (`PanicException`), and `failed` is returned instead.
///
/// # Safety
/// The GIL is held (CPython calls slots with it).
unsafe fn slot_body<R: Copy>(failed: R, body: impl FnOnce(Python) -> R) -> R {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the GIL is held, as the caller guarantees; the pool is dropped before
        // the slot returns, in the order it was made.
        let pool = unsafe { pyo3::GILPool::new() };
        let py = pool.python();
        match catch_unwind(AssertUnwindSafe(|| body(py))) {
            Ok(result) => result,
            Err(payload) => {
                restore_panic(py, payload); // under the pool, as the step was
                failed
            }
        }
    }));
    outcome.unwrap_or_else(|payload| {
        // SAFETY: the GIL is held, as the caller guarantees.
        let py = unsafe { Python::assume_gil_acquired() };
        restore_panic(py, payload);
        failed
    })
}

/// Sets the `PanicException` of a caught panic as the Python error. Making it runs PyO3
/// code too; should that panic as well, a `SystemError` is set instead, by hand.
fn restore_panic(py: Python, payload: Box<dyn std::any::Any + Send>) {
    let restored = catch_unwind(AssertUnwindSafe(|| panic_error(payload).restore(py)));
    if restored.is_err() {
        const MESSAGE: &[u8] = b"a Rust panic in a slot, and another while raising it\0";
        // SAFETY: the GIL is held (we have `py`); both arguments are live for the call:
        // a static exception class and a NUL-terminated string.
        unsafe { ffi::PyErr_SetString(ffi::PyExc_SystemError, MESSAGE.as_ptr().cast()) };
    }
}

// ANCHOR: panic_hook
thread_local! {
    /// The message `_panic_next_step` armed on this thread, if any.
    static PANIC_NEXT_STEP: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// How many threads have a message armed: while none has, a step pays one atomic load
/// for the hook and never touches the thread-local.
static ARMED: AtomicUsize = AtomicUsize::new(0);

/// `_panic_next_step(message)`, for the tests of the no-unwind guarantee: the next step
/// this thread runs through a hand-filled slot (`tp_iternext` or `am_send`) of any
/// [`Stepped`] class panics with `message`, inside the `extern "C"` function, after the
/// class's step returned, where the slot builds the `StopIteration` or the result. The
/// slot then returns its error value with `PanicException(message)` set.
pub(crate) fn panic_next_step(message: String) {
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
        std::panic::panic_any(message);
    }
}
// ANCHOR_END: panic_hook

/// Runs one step of the `T` at `slf`.
///
/// # Safety
/// The GIL is held; `slf` is a live instance of `T` (the slots are installed on `T`'s
/// type only, and `T` cannot be subclassed); `sent` is a live object or NULL (None).
unsafe fn step<T: Stepped>(
    py: Python,
    slf: *mut ffi::PyObject,
    sent: *mut ffi::PyObject,
) -> PyResult<Step> {
    // SAFETY: as the caller guarantees: live borrowed references, `slf` of exactly type
    // `T` (a `PyCell<T>`).
    let (slf, sent): (&PyCell<T>, &PyAny) = unsafe {
        let sent = if sent.is_null() { ffi::Py_None() } else { sent };
        (py.from_borrowed_ptr(slf), py.from_borrowed_ptr(sent))
    };
    T::step(slf, sent)
}

// ANCHOR: slots
/// `am_await`: the object is its own iterator. (Nothing in it can panic.)
unsafe extern "C" fn await_self(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a live object and takes the new reference returned.
    unsafe { ffi::Py_INCREF(slf) };
    slf
}

/// `tp_iternext`: one step with `None`; a returned value raised as `StopIteration`.
unsafe extern "C" fn iternext<T: Stepped>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let body = |py: Python| {
        // SAFETY: the GIL is held (CPython calls slots with it); CPython passes a live
        // instance of the type the slot is installed on (`T`'s, see `install`).
        let stepped = match unsafe { step::<T>(py, slf, ptr::null_mut()) } {
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
            Step::Return(value) if value.is_none(py) => ptr::null_mut(),
            Step::Return(value) => {
                raise_stop_iteration(py, &value);
                ptr::null_mut()
            }
        }
    };
    // SAFETY: CPython calls slots with the GIL held.
    unsafe { slot_body(ptr::null_mut(), body) }
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
        let (new, init) = (
            (*stop).tp_new.expect("tp_new"),
            (*stop).tp_init.expect("tp_init"),
        );
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

/// `am_send` (CPython 3.10+): one step with `arg`; a returned value goes to `*result`,
/// which is NULL on every error return (a debug CPython asserts it).
unsafe extern "C" fn am_send<T: Stepped>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: `result` is the out-pointer CPython passed, valid for a write; NULL until
    // the last step of a success.
    unsafe { *result = ptr::null_mut() };
    let body = |py: Python| {
        // SAFETY: the GIL is held (CPython calls slots with it); `slf` is a live instance
        // of `T` (as in `iternext`), `arg` a live object or NULL (taken as None).
        let stepped = match unsafe { step::<T>(py, slf, arg) } {
            Ok(stepped) => stepped,
            Err(err) => {
                err.restore(py);
                return ffi::PYGEN_ERROR;
            }
        };
        panic_if_armed();
        let (status, value) = match stepped {
            Step::Yield(value) => (ffi::PYGEN_NEXT, value),
            Step::Return(value) => (ffi::PYGEN_RETURN, value),
        };
        // SAFETY: as above; CPython takes the new reference.
        unsafe { *result = value.into_ptr() };
        status
    };
    // SAFETY: CPython calls slots with the GIL held.
    unsafe { slot_body(ffi::PYGEN_ERROR, body) }
}
// ANCHOR_END: slots

// ANCHOR: free_list
/// How many freed objects of one class are kept for the next ones (CPython keeps 80
/// async generator `asend` objects, and asyncio 255 Future iterators).
const FREE_LIST_SIZE: usize = 64;

/// Freed objects of one class, kept whole (their memory, untracked by the collector,
/// holding no reference) for the next object of the class, as CPython keeps its own
/// coroutines' helper objects: making and freeing the awaitable of every `await` is part
/// of what is left between these classes and CPython's own.
///
/// PyO3 0.12's `#[pyclass(freelist = N)]` would keep them too, but `tp_alloc` and
/// `tp_free` of our own keep the two eras' classes alike: the modern crate cannot use
/// PyO3 0.30.1's (a reused object is not tracked by the collector there). PyO3 0.12's
/// `tp_dealloc` does not untrack the object (`PyObject_GC_Del` would), so `free` does.
///
/// The GIL is what guards the list: each slot runs with it held, and PyO3 0.12 predates
/// free threading and sub-interpreters.
pub(crate) struct FreeList {
    objects: std::cell::UnsafeCell<[*mut ffi::PyObject; FREE_LIST_SIZE]>,
    len: std::cell::Cell<usize>,
}

// SAFETY: the list is only touched by `alloc` and `free` below, which CPython calls with
// the GIL held: one thread at a time. The pointers are freed objects that no other code
// references.
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
    /// The GIL is held.
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
unsafe extern "C" fn alloc<T: Stepped>(
    subtype: *mut ffi::PyTypeObject,
    nitems: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls `tp_alloc` with the GIL held; `T`'s type cannot be subclassed,
    // so `subtype` is `T`'s own (a static type: no reference to it is counted), whose
    // instances are `tp_basicsize` bytes. A kept object is such an instance, freed and
    // untracked: zeroing its body after the object header gives what
    // `PyType_GenericAlloc` gives (PyO3 writes its contents next), `PyObject_Init` sets
    // its type and reference count, and it is tracked as a new object is. A debug build's
    // `PyObject_GC_Track` also calls `tp_traverse` on it, to validate it: PyO3 0.12 reads
    // the zeroed borrow flag as unused and calls `__traverse__`, which in each of these
    // classes reads `Option` fields only (all zeroes is `None`) and so visits nothing.
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

/// `tp_free`: untracks the object and keeps it for the next one, or hands it to
/// `PyObject_GC_Del` when the list is full. Nothing in it can panic.
unsafe extern "C" fn free<T: Stepped>(object: *mut std::ffi::c_void) {
    // SAFETY: PyO3 0.12's `tp_dealloc` calls `tp_free` with the GIL held, on an instance
    // of `T` whose contents it dropped and that nothing references any more (still
    // tracked: untracking an object twice is harmless); one that is not kept is freed
    // as the class's inherited `tp_free` (`PyObject_GC_Del`) would free it.
    unsafe {
        ffi::PyObject_GC_UnTrack(object);
        if let Err(object) = T::free_list().push(object.cast()) {
            ffi::PyObject_GC_Del(object.cast());
        }
    }
}
// ANCHOR_END: free_list

// ANCHOR: install
/// Fills `am_await`, `tp_iternext`, (3.10+, where `T`'s async table has the field)
/// `am_send`, `tp_alloc` and `tp_free` of `T`'s type with the functions above; returns
/// each installed slot's name and the function's address (what `_FAST_SLOTS` lists for
/// `T`).
///
/// # Safety
/// `T`'s type object is ready, no instance of `T` exists yet, and if
/// `table_has_am_send` is true, its `tp_as_async` points to a live
/// `ffi::AsyncMethodsWithSend` (4 fields) rather than PyO3 0.12's 3-field table.
pub(crate) unsafe fn install<T: Stepped>(
    py: Python,
    table_has_am_send: bool,
) -> Vec<(&'static str, usize)> {
    let mut installed = Vec::new();
    let type_object = T::type_object_raw(py);
    // SAFETY: the type object PyO3 made for `T` (never freed), ready, and the GIL is held,
    // before any instance exists (as the caller guarantees): none is freed by a `tp_free`
    // it was not made for. `tp_as_async`, if
    // not NULL, points to an async table whose first field is `am_await`, and to a
    // 4-field one when `table_has_am_send` says so (the caller guarantees it); `am_send`
    // is written only where CPython reads it (3.10+). Replacing a filled slot with a
    // function of the same meaning is what `PyType_Ready` would have done;
    // `PyType_Modified` drops what CPython cached.
    unsafe {
        (*type_object).tp_iternext = Some(iternext::<T>);
        installed.push(("tp_iternext", iternext::<T> as *const () as usize));
        (*type_object).tp_alloc = Some(alloc::<T>);
        installed.push(("tp_alloc", alloc::<T> as *const () as usize));
        (*type_object).tp_free = Some(free::<T>);
        installed.push(("tp_free", free::<T> as *const () as usize));
        let methods = (*type_object).tp_as_async;
        if !methods.is_null() {
            (*methods).am_await = Some(await_self);
            installed.push(("am_await", await_self as *const () as usize));
            if table_has_am_send && compat::python_at_least(3, 10) {
                let methods = methods.cast::<ffi::AsyncMethodsWithSend>();
                (*methods).am_send = Some(am_send::<T>);
                installed.push(("am_send", am_send::<T> as *const () as usize));
            }
        }
        ffi::PyType_Modified(type_object);
    }
    installed
}
// ANCHOR_END: install
