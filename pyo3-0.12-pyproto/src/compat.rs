//! What differs between the Pythons this module runs on, and the fixes that let a
//! PyO3 0.12 `#[pyproto]` class run on CPython 3.10 and newer.
//!
//! # Why PyO3 0.12 breaks on newer CPython
//!
//! PyO3 0.12.4 (late 2020) knows CPython up to 3.9. Two of its `ffi` structs are
//! shorter than what newer interpreters read, and PyO3 itself allocates both:
//!
//! * `ffi::PyAsyncMethods` has 3 fields (`am_await`, `am_aiter`, `am_anext`, 24 bytes).
//!   **CPython 3.10** added a 4th, `am_send`, read by `PyIter_Send` (used by the `SEND`
//!   / `YIELD_FROM` path of `await` and by asyncio's C `Task`). PyO3 0.12 stores the
//!   table in its own `Box` (`PyProtoRegistry::set_async_methods` in
//!   `src/class/proto_methods.rs`), so `am_send` is read 8 bytes past a 24-byte heap
//!   block: garbage, then a jump through it. 3.10 to 3.13 segfault when asyncio awaits
//!   a `RustCoroutine` (its C `Task` calls `PyIter_Send`); 3.15 reads it the same way.
//! * `ffi::PyTypeObject` ends at `tp_vectorcall` (408 bytes; 400 on 3.7, built without
//!   `tp_vectorcall`). PyO3 0.12 allocates it with `Box::new(ffi::PyTypeObject_INIT)` in
//!   `LazyStaticType::get_or_init` (`src/type_object.rs`), i.e. through the Rust global
//!   allocator with exactly `Layout::new::<ffi::PyTypeObject>()`, fills it in
//!   `initialize_type_object` (`src/pyclass.rs`, which calls `PyType_Ready`) and leaks it.
//!   **CPython 3.12** added `tp_watched` (`u8`, offset 408), read by `PyType_Modified`
//!   once the type holds a version tag (not reached by our workloads on 3.12.1, but the
//!   block is short all the same). **CPython 3.13** added `tp_versions_used` (`u16`,
//!   offset 410), which `assign_version_tag` reads (and counts up) on the first cached
//!   attribute lookup: "Invalid read of size 2 ... 2 bytes after a block of size 408".
//!   **3.14 and 3.15** read those 2 bytes at offset 410 already in `PyType_Ready`
//!   ("2 bytes after a block of size 408" under valgrind); a class with both the
//!   iterator and the async protocols then aborts (3.14, heap corruption) or crashes in
//!   `PyIter_Send` (3.15, the `am_send` read above).
//!
//! (3.8 CPython has a deprecated `tp_print` after `tp_vectorcall` that nothing reads.)
//!
//! # The fixes (our code only; PyO3 is neither edited nor vendored)
//!
//! * (a) [`add_class_with_fixes`] points the finished type's `tp_as_async` at our own
//!   4-field `#[repr(C)]` table, [`AsyncMethodsWithSend`]: `am_await`/`am_aiter`/`am_anext`
//!   copied from PyO3's table, `am_send` NULL, leaked so it lives as long as the type.
//!   With `am_send` NULL, `PyIter_Send` falls back to `tp_iternext` (for `None`) or the
//!   `send` method, as it does for any iterator. This is done after `PyType_Ready`, which
//!   is safe: nothing reads `am_send` before an instance is awaited, the class has no
//!   subclasses that could have inherited the old pointer (it is not `subclass`), and
//!   `PyType_Modified` is called afterwards.
//! * (b) [`TypeObjectPadding`], the `#[global_allocator]`: while
//!   [`add_class_with_fixes`] creates the type object, a request with exactly
//!   `Layout::new::<ffi::PyTypeObject>()` gets a zeroed block of [`PADDED_SIZE`] (512)
//!   bytes, so `tp_watched`, `tp_versions_used` and whatever the newest CPython appends
//!   read as zero and can be written. The padded blocks are remembered (a few atomic
//!   slots), so `dealloc`/`realloc` always hand `System` the layout the block was
//!   allocated with, whenever they run. Every other allocation goes straight to
//!   `std::alloc::System` (`realloc` included); outside that window the allocator pads
//!   nothing, so no other 408-byte allocation of the process changes.
//!   Alternatives considered: copying the type object into a bigger block after
//!   `PyType_Ready` is impossible (PyO3 caches its address in the `LazyStaticType` and
//!   CPython in `tp_subclasses` of `object`, the MRO and the module dict); padding every
//!   allocation with that layout at all times works too but touches unrelated `Vec`s.
//! * (c) `PYO3_0_12_PYPROTO_UNFIXED=1` in the environment, read by [`init`] at module
//!   import before the class exists, disables (a) and (b) to show the failure: valgrind
//!   (`PYTHONMALLOC=malloc`) reports the invalid reads on 3.10–3.13 (`am_send` in
//!   `PyIter_Send` everywhere, `tp_versions_used` on 3.13), and without valgrind awaiting
//!   a `RustCoroutine` under asyncio segfaults on 3.10–3.13.
//! * (d) On every version, not only 3.10+: PyO3 0.12's `tp_dealloc` frees a garbage-
//!   collected object (`#[pyclass(gc)]`: `RustCoroutine`, `RustAwait`, `RustFuture`)
//!   without untracking it first; a collection started while its fields are dropped
//!   (by a `__del__`) then crashes. [`ready_type_with_fixes`] installs a `tp_dealloc`
//!   that untracks first ([`dealloc_untracked`]); the switch (c) leaves it on.
//!
//! Free-threaded builds (3.13t+, `Py_GIL_DISABLED`) are refused at build time by
//! `build.rs`: PyO3 0.12's object header predates PEP 703.
//!
//! # Wording that differs between versions
//!
//! [`not_awaitable_message`], [`bad_await_result_message`], [`throw_arity_message`],
//! [`warn_legacy_throw_signature`], [`unstarted_throw_converts_stop_iteration`] and
//! [`thrown_stop_iteration_returns_from_await`] reproduce what the running interpreter's
//! own coroutines do; [`init`] records the running version (the module is built per
//! interpreter, but asking at run time keeps one code path).
//!
//! # C-level checks PyO3 0.12 has no wrapper for
//!
//! [`is_iterator`] (`PyIter_Check`), [`is_coroutine`], and [`enter_recursive_call`] /
//! [`leave_recursive_call`] (`Py_EnterRecursiveCall`, a macro before CPython 3.9).

#![warn(unsafe_op_in_unsafe_fn)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::mem::{align_of, size_of};
use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::{AsPyPointer, PyClass, PyNativeType};

/// `CO_ITERABLE_COROUTINE`: the code flag `types.coroutine` sets on a generator
/// function so that its generators may be awaited.
const CO_ITERABLE_COROUTINE: i64 = ffi::CO_ITERABLE_COROUTINE as i64;

/// The PyO3 release this module was compiled against, as resolved in `Cargo.lock`
/// (exported by `build.rs`).
pub const PYO3_VERSION: &str = env!("PYO3_0_12_PYPROTO_PYO3_VERSION");

// ANCHOR: unfixed_switch
/// Set to `1` to disable the fixes of this module (see the module documentation).
pub const UNFIXED_ENV: &str = "PYO3_0_12_PYPROTO_UNFIXED";

/// Whether fixes (a) and (b) are applied; decided once by [`init`].
static FIXES_ENABLED: AtomicBool = AtomicBool::new(true);

/// `major << 8 | minor` of the running interpreter, recorded by [`init`].
static PYTHON_VERSION: AtomicU32 = AtomicU32::new(0);

/// Reads the environment switch and the interpreter version. Called first thing in
/// module init, before the class is created.
pub fn init(py: Python) -> PyResult<()> {
    let unfixed = std::env::var_os(UNFIXED_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    FIXES_ENABLED.store(!unfixed, Ordering::SeqCst);

    let version_info = py.import("sys")?.getattr("version_info")?;
    let major: u32 = version_info.getattr("major")?.extract()?;
    let minor: u32 = version_info.getattr("minor")?.extract()?;
    PYTHON_VERSION.store(major << 8 | minor, Ordering::Relaxed);
    Ok(())
}
// ANCHOR_END: unfixed_switch

/// Whether the running interpreter is at least `major.minor`.
pub fn python_at_least(major: u32, minor: u32) -> bool {
    PYTHON_VERSION.load(Ordering::Relaxed) >= (major << 8 | minor)
}

/// Whether the compatibility fixes are on (that is, `PYO3_0_12_PYPROTO_UNFIXED` is unset).
pub fn fixes_enabled() -> bool {
    FIXES_ENABLED.load(Ordering::SeqCst)
}

/// `PyIter_Check(obj)`: the type has a `tp_iternext` that is not
/// `_PyObject_NextNotImplemented`.
///
/// CPython 3.8+ exports `PyIter_Check` as a function; 3.7 has only the macro, which PyO3
/// 0.12's `ffi::PyIter_Check` copies, and which links `_PyObject_NextNotImplemented`, no
/// longer exported by 3.13. `build.rs` sets `pyiter_check_is_function` for 3.8+.
pub fn is_iterator(obj: &PyAny) -> bool {
    #[cfg(pyiter_check_is_function)]
    {
        extern "C" {
            fn PyIter_Check(obj: *mut ffi::PyObject) -> c_int;
        }
        // SAFETY: `PyIter_Check` (exported since CPython 3.8, which `build.rs` checked)
        // only reads the type of the live object `obj`; the GIL is held.
        unsafe { PyIter_Check(obj.as_ptr()) != 0 }
    }
    #[cfg(not(pyiter_check_is_function))]
    {
        // SAFETY: PyO3's macro version only reads the type of the live object `obj`.
        unsafe { ffi::PyIter_Check(obj.as_ptr()) != 0 }
    }
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

/// A step's output as a method returns it, raised the way CPython's own coroutines raise
/// it: PyO3 0.12 turns `IterNextOutput::Return(value)` into `StopIteration((value,))`,
/// which CPython does too, except for `None`, which it returns as a bare
/// `StopIteration()` (no arguments; `.value` is `None` all the same).
pub fn returned(
    py: Python,
    output: pyo3::class::iter::PyIterNextOutput,
) -> PyResult<pyo3::class::iter::PyIterNextOutput> {
    use pyo3::class::iter::IterNextOutput;
    match output {
        IterNextOutput::Return(value) if value.is_none(py) => {
            Err(pyo3::exceptions::PyStopIteration::new_err(()))
        }
        output => Ok(output),
    }
}

/// The value a finished iterator returned: `StopIteration.value`.
pub fn stop_iteration_value(py: Python, err: PyErr) -> PyResult<PyObject> {
    Ok(err.instance(py).getattr("value")?.into())
}

/// Sets `cause` as `err`'s `__cause__` (which also suppresses its context in tracebacks),
/// as `raise err from cause` does. PyO3 0.12's `PyErr` has no `set_cause`.
pub fn set_cause(py: Python, err: &PyErr, cause: PyErr) {
    // Best effort: `err` is raised either way. `raise err from cause` inside an
    // `except` block sets both, as CPython's own PEP 479 conversion does.
    let instance = err.instance(py);
    let _ = instance.setattr("__cause__", cause.instance(py));
    let _ = instance.setattr("__context__", cause.instance(py));
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
// `Py_EnterRecursiveCall` / `Py_LeaveRecursiveCall`, which PyO3 0.12's `ffi` lacks.
// ---------------------------------------------------------------------------------------

/// Counts a nested call into Python code against the recursion limit (and, on 3.14+,
/// against the real C stack): `Err(RecursionError)` when it is exceeded, else `Ok`, to
/// be paired with [`leave_recursive_call`]. `context` completes the message
/// ("maximum recursion depth exceeded" + `context`).
pub fn enter_recursive_call(py: Python, context: &CStr) -> PyResult<()> {
    // SAFETY: called with the GIL held (we have `py`); `context` is a NUL-terminated
    // string that outlives the call (CPython only formats it into the error message).
    if unsafe { recursion::enter(context) } != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// Pairs a successful [`enter_recursive_call`], on the same thread, GIL held.
pub fn leave_recursive_call(_py: Python) {
    // SAFETY: the GIL is held (we have a `Python`), and the caller pairs a successful
    // `enter_recursive_call` on this thread, whose depth count this gives back.
    unsafe { recursion::leave() }
}

/// CPython 3.9+ exports both as functions.
#[cfg(py_enter_recursive_call_is_function)]
mod recursion {
    use std::ffi::CStr;
    use std::os::raw::{c_char, c_int};

    extern "C" {
        fn Py_EnterRecursiveCall(context: *const c_char) -> c_int;
        fn Py_LeaveRecursiveCall();
    }

    /// # Safety
    /// GIL held.
    pub(super) unsafe fn enter(context: &CStr) -> c_int {
        // SAFETY: the caller holds the GIL; `context` is a live C string.
        unsafe { Py_EnterRecursiveCall(context.as_ptr()) }
    }

    /// # Safety
    /// GIL held, pairing a successful `enter` on this thread.
    pub(super) unsafe fn leave() {
        // SAFETY: as the caller guarantees.
        unsafe { Py_LeaveRecursiveCall() }
    }
}

/// CPython 3.7 and 3.8 have only the macros of `ceval.h`, re-created here: they count
/// in the `recursion_depth` field of the thread state and call `_Py_CheckRecursiveCall`
/// (exported) once the depth passes `_Py_CheckRecursionLimit` (exported data).
#[cfg(not(py_enter_recursive_call_is_function))]
mod recursion {
    use std::ffi::CStr;
    use std::os::raw::{c_char, c_int, c_void};

    use pyo3::ffi;

    /// The first fields of `struct _ts` (`PyThreadState`), identical in CPython 3.7
    /// (`pystate.h`) and 3.8 (`cpython/pystate.h`).
    #[repr(C)]
    #[allow(dead_code)] // only the layout matters: the fields before `recursion_depth`
    struct ThreadStateHead {
        prev: *mut c_void,
        next: *mut c_void,
        interp: *mut c_void,
        frame: *mut c_void,
        recursion_depth: c_int,
        overflowed: c_char,
        recursion_critical: c_char,
    }

    extern "C" {
        static _Py_CheckRecursionLimit: c_int;
        fn _Py_CheckRecursiveCall(context: *const c_char) -> c_int;
    }

    fn thread_state() -> *mut ThreadStateHead {
        // SAFETY: only called by `enter`/`leave`, whose callers hold the GIL, so this
        // thread has a current thread state (`PyThreadState_Get` never returns NULL then).
        unsafe { ffi::PyThreadState_Get() }.cast::<ThreadStateHead>()
    }

    /// `_Py_RecursionLimitLowerWaterMark(limit)`.
    fn lower_water_mark(limit: c_int) -> c_int {
        if limit > 200 {
            limit - 50
        } else {
            3 * (limit >> 2)
        }
    }

    /// `Py_EnterRecursiveCall(context)`:
    /// `++tstate->recursion_depth > _Py_CheckRecursionLimit && _Py_CheckRecursiveCall(context)`.
    ///
    /// # Safety
    /// GIL held.
    pub(super) unsafe fn enter(context: &CStr) -> c_int {
        let tstate = thread_state();
        // SAFETY: `tstate` is this thread's live thread state, which starts with the
        // fields of `ThreadStateHead` on 3.7 and 3.8 (the only versions this module is
        // compiled for, see `build.rs`); the GIL serialises every access to it. The
        // limit is plain data of libpython, written only with the GIL held.
        unsafe {
            (*tstate).recursion_depth += 1;
            if (*tstate).recursion_depth > _Py_CheckRecursionLimit {
                return _Py_CheckRecursiveCall(context.as_ptr());
            }
        }
        0
    }

    /// `Py_LeaveRecursiveCall()`: `if (--tstate->recursion_depth < lower water mark)
    /// tstate->overflowed = 0`.
    ///
    /// # Safety
    /// GIL held, pairing a successful `enter` on this thread.
    pub(super) unsafe fn leave() {
        let tstate = thread_state();
        // SAFETY: as in `enter`.
        unsafe {
            (*tstate).recursion_depth -= 1;
            if (*tstate).recursion_depth < lower_water_mark(_Py_CheckRecursionLimit) {
                (*tstate).overflowed = 0;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fix (a): a 4-field async table.
// ---------------------------------------------------------------------------------------

// ANCHOR: async_table
/// `sendfunc` of CPython 3.10+: `PySendResult (*)(PyObject *iter, PyObject *value, PyObject **result)`.
pub type SendFunc = unsafe extern "C" fn(
    iter: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> c_int;

/// CPython 3.10+'s `PyAsyncMethods`, with the `am_send` that PyO3 0.12's lacks.
#[repr(C)]
pub struct AsyncMethodsWithSend {
    pub am_await: Option<ffi::unaryfunc>,
    pub am_aiter: Option<ffi::unaryfunc>,
    pub am_anext: Option<ffi::unaryfunc>,
    pub am_send: Option<SendFunc>,
}

// The first three fields must line up with PyO3's table, which they replace.
const _: () = assert!(size_of::<ffi::PyAsyncMethods>() == 3 * size_of::<usize>());
const _: () = assert!(size_of::<AsyncMethodsWithSend>() == 4 * size_of::<usize>());
// ANCHOR_END: async_table

// ---------------------------------------------------------------------------------------
// Fix (b): type objects padded past PyO3 0.12's `PyTypeObject`.
// ---------------------------------------------------------------------------------------

/// Bytes allocated for a type object while the padding is armed: CPython 3.13's
/// `PyTypeObject` is 416 bytes; 512 leaves room for what newer versions append.
pub const PADDED_SIZE: usize = 512;

const _: () = assert!(size_of::<ffi::PyTypeObject>() <= PADDED_SIZE);

/// How many padded blocks can be alive at once (one per class created while armed).
const PADDED_SLOTS: usize = 8;

/// Whether type-object-sized allocations are padded right now; on only inside
/// [`add_class_with_fixes`].
static PADDING_ARMED: AtomicBool = AtomicBool::new(false);

/// Addresses of the live padded blocks, so that `dealloc`/`realloc` can tell them apart
/// from unpadded blocks of the same layout.
static PADDED_BLOCKS: [AtomicPtr<u8>; PADDED_SLOTS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; PADDED_SLOTS];

fn type_object_layout() -> Layout {
    Layout::new::<ffi::PyTypeObject>()
}

fn padded_layout() -> Layout {
    // `PADDED_SIZE` is a small multiple of every power-of-two alignment up to 512.
    Layout::from_size_align(PADDED_SIZE, align_of::<ffi::PyTypeObject>()).expect("valid layout")
}

// ANCHOR: padded_alloc
/// The global allocator: `System`, except for padded type objects (fix (b)).
pub struct TypeObjectPadding;

#[global_allocator]
static ALLOCATOR: TypeObjectPadding = TypeObjectPadding;

impl TypeObjectPadding {
    /// A zeroed [`PADDED_SIZE`] block recorded in `PADDED_BLOCKS`, or null when all slots
    /// are taken or `System` fails (the caller then allocates unpadded).
    fn alloc_padded(&self) -> *mut u8 {
        // SAFETY: `padded_layout()` has a non-zero size.
        let block = unsafe { System.alloc_zeroed(padded_layout()) };
        if block.is_null() {
            return block;
        }
        for slot in PADDED_BLOCKS.iter() {
            if slot
                .compare_exchange(ptr::null_mut(), block, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return block;
            }
        }
        // SAFETY: `block` came from `System.alloc_zeroed` with this very layout.
        unsafe { System.dealloc(block, padded_layout()) };
        ptr::null_mut()
    }

    /// Removes `block` from `PADDED_BLOCKS`; true if it was a padded block.
    fn forget_padded(&self, block: *mut u8) -> bool {
        PADDED_BLOCKS.iter().any(|slot| {
            slot.compare_exchange(block, ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    fn should_pad(layout: Layout) -> bool {
        layout == type_object_layout() && PADDING_ARMED.load(Ordering::Acquire)
    }
}

// SAFETY: every block handed out comes from `System` and is given back to `System` with
// the layout it was allocated with: padded blocks (recorded in `PADDED_BLOCKS` until they
// are freed) with `padded_layout()`, which is at least as large and as aligned as the
// caller's layout; all others with the caller's own layout. `realloc` of a block that
// is or may become padded goes through `alloc` + copy + `dealloc` with those rules.
unsafe impl GlobalAlloc for TypeObjectPadding {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::should_pad(layout) {
            let block = self.alloc_padded();
            if !block.is_null() {
                return block;
            }
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::should_pad(layout) {
            let block = self.alloc_padded(); // already zeroed
            if !block.is_null() {
                return block;
            }
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract for `layout`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if layout == type_object_layout() && self.forget_padded(block) {
            // SAFETY: `block` was recorded by `alloc_padded`, so `System` allocated it with
            // `padded_layout()`; it was removed from the table, so it is freed only once.
            unsafe { System.dealloc(block, padded_layout()) };
        } else {
            // SAFETY: not a padded block, so `System` allocated it with `layout` (the
            // caller guarantees `layout` is the one `alloc` was given).
            unsafe { System.dealloc(block, layout) };
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_could_pad = new_size == type_object_layout().size()
            && layout.align() == type_object_layout().align();
        if layout != type_object_layout() && !new_could_pad {
            // SAFETY: neither the old nor the new block is padded: plain `System` block,
            // and the caller upholds `GlobalAlloc::realloc`'s contract.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size` is non-zero and, rounded up to
        // `layout.align()`, does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size.
        let new_block = unsafe { self.alloc(new_layout) };
        if !new_block.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct;
            // `block` is then freed with the layout it was allocated with.
            unsafe {
                ptr::copy_nonoverlapping(block, new_block, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        new_block
    }
}
// ANCHOR_END: padded_alloc

/// Disarms the padding when dropped, also on early return or panic.
struct ArmedPadding;

impl ArmedPadding {
    fn arm() -> Self {
        PADDING_ARMED.store(true, Ordering::Release);
        ArmedPadding
    }
}

impl Drop for ArmedPadding {
    fn drop(&mut self) {
        PADDING_ARMED.store(false, Ordering::Release);
    }
}

// ANCHOR: apply_fixes
/// `m.add_class::<T>()`, with the fixes applied to `T`'s type object: (a) and (b)
/// unless [`fixes_enabled`] is false, (d) always.
pub fn add_class_with_fixes<T: PyClass>(py: Python, m: &PyModule) -> PyResult<()> {
    ready_type_with_fixes::<T>(py);
    m.add_class::<T>()
}

/// Creates `T`'s type object now, with the fixes, for a class the module uses but does
/// not export (PyO3 0.12 would otherwise create it, unfixed, on first use). Without
/// [`fixes_enabled`], (a) and (b) are left out; (d) is applied always.
pub fn ready_type_with_fixes<T: PyClass>(py: Python) {
    let type_object = {
        // Fix (b): PyO3 creates (and `PyType_Ready`s) the type object on first use, in
        // `LazyStaticType::get_or_init`, with `Box::new(ffi::PyTypeObject_INIT)`: that
        // allocation is padded. (Already created, e.g. by a second module init: no-op.)
        let _armed = fixes_enabled().then(ArmedPadding::arm);
        T::type_object_raw(py)
    };
    // Fix (d).
    // SAFETY: `type_object` is `T`'s live, ready type object; the GIL is held, and no
    // instance of `T` exists yet that could be deallocated through the old slot.
    unsafe { untrack_before_dealloc::<T>(type_object) };
    if !fixes_enabled() {
        return;
    }

    // Fix (a).
    // SAFETY: `type_object` is the live, ready type object PyO3 created for `T` (it is
    // never freed); we hold the GIL, so nothing else reads or writes it meanwhile.
    // `tp_as_async`, when not null, points to PyO3's leaked 3-field table (or to ours,
    // installed by an earlier call). The new table is leaked, so it lives as long as the
    // type. No instance of `T` exists yet and `T` has no subclasses, so no other type
    // holds the old pointer; `PyType_Modified` drops whatever CPython cached about it.
    unsafe {
        let old = (*type_object).tp_as_async;
        if old.is_null() || is_our_table(old) {
            return;
        }
        let table = Box::leak(Box::new(AsyncMethodsWithSend {
            am_await: (*old).am_await,
            am_aiter: (*old).am_aiter,
            am_anext: (*old).am_anext,
            am_send: None,
        }));
        let table: *mut AsyncMethodsWithSend = table;
        lock_tables().push(table as usize);
        (*type_object).tp_as_async = table.cast::<ffi::PyAsyncMethods>();
        ffi::PyType_Modified(type_object);
    }
}

/// Fills the `am_send` slot of `T`'s table (installed by fix (a)) with `send`, so that
/// `PyIter_Send` gets a returned value without a `StopIteration`. Returns whether it is
/// installed: only on CPython 3.10+ (older versions have no such slot) and with the
/// fixes on (without them, `T` still has PyO3's 3-field table).
pub fn install_am_send<T: PyClass>(py: Python, send: SendFunc) -> bool {
    if !fixes_enabled() || !python_at_least(3, 10) {
        return false;
    }
    let type_object = T::type_object_raw(py);
    // SAFETY: `type_object` is `T`'s live, ready type object and the GIL is held. Its
    // `tp_as_async` is checked to be one of our leaked 4-field tables before the write,
    // which fills a slot CPython reads only when an instance is sent to;
    // `PyType_Modified` drops whatever CPython cached about the type.
    unsafe {
        let table = (*type_object).tp_as_async;
        if table.is_null() || !is_our_table(table) {
            return false;
        }
        (*table.cast::<AsyncMethodsWithSend>()).am_send = Some(send);
        ffi::PyType_Modified(type_object);
    }
    true
}

/// The tables installed by [`ready_type_with_fixes`] (a re-import finds them in place).
static OUR_TABLES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn lock_tables() -> std::sync::MutexGuard<'static, Vec<usize>> {
    OUR_TABLES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_our_table(table: *mut ffi::PyAsyncMethods) -> bool {
    lock_tables().contains(&(table as usize))
}
// ANCHOR_END: apply_fixes

// ---------------------------------------------------------------------------------------
// Fix (d): untrack a garbage-collected object before freeing it.
// ---------------------------------------------------------------------------------------

/// Points the `tp_dealloc` of `T`, if it is a garbage-collected class (`#[pyclass(gc)]`),
/// at [`dealloc_untracked`].
///
/// PyO3 0.12's `tp_dealloc` drops the Rust value and frees the object without first
/// calling `PyObject_GC_UnTrack`, which CPython requires of every GC type: if dropping a
/// field runs Python code that starts a collection (a `__del__` that allocates, say),
/// the collector still finds the half-destroyed object in its lists, traverses fields
/// that are being freed, and the process crashes. (Today's PyO3 untracks first, in
/// its own `tp_dealloc`.)
///
/// # Safety
/// `type_object` is `T`'s ready type object, the GIL is held, and no instance of `T` is
/// being deallocated meanwhile.
unsafe fn untrack_before_dealloc<T: PyClass>(type_object: *mut ffi::PyTypeObject) {
    // SAFETY: as the caller guarantees: a live type object, read and written under the GIL.
    unsafe {
        if ffi::PyType_HasFeature(type_object, ffi::Py_TPFLAGS_HAVE_GC) == 0 {
            return;
        }
        (*type_object).tp_dealloc = Some(dealloc_untracked::<T>);
        ffi::PyType_Modified(type_object);
    }
}

/// `tp_dealloc` of a GC class `T`: untrack, then what PyO3 0.12's own `tp_dealloc` does.
unsafe extern "C" fn dealloc_untracked<T: PyClass>(obj: *mut ffi::PyObject) {
    // SAFETY: CPython calls `tp_dealloc` with the GIL held, on an instance of `T` (which
    // cannot be subclassed) whose reference count reached zero; it is still tracked, as
    // `PyType_GenericAlloc` tracks every GC object. The rest is PyO3 0.12's own
    // `tp_dealloc` (`pyo3::pyclass::tp_dealloc`): a `GILPool` for the references the drop
    // creates, and `PyClassAlloc::dealloc`, which drops the value and frees the object.
    unsafe {
        ffi::PyObject_GC_UnTrack(obj.cast());
        let pool = pyo3::GILPool::new();
        <T as pyo3::pyclass::PyClassAlloc>::dealloc(pool.python(), obj.cast());
    }
}
