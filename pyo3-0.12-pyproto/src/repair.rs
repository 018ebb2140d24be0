//! The repairs that let a PyO3 0.12 `#[pyproto]` class run on CPython 3.10 and newer
//! (fixes (a) to (c)), and on every version with a garbage collection during its
//! deallocation (fix (d)).
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
//!   4-field `#[repr(C)]` table, `ffi::AsyncMethodsWithSend` (declared in `crate::ffi`):
//!   `am_await`/`am_aiter`/`am_anext` copied from PyO3's table, `am_send` NULL, leaked
//!   so it lives as long as the type. With `am_send` NULL, `PyIter_Send` falls back to
//!   `tp_iternext` (for `None`) or the `send` method, as it does for any iterator
//!   ([`has_send_table`] then tells `lib.rs` that `slots` may fill it). This is done
//!   after `PyType_Ready`, which is safe: nothing reads `am_send` before an instance is
//!   awaited, the class has no subclasses that could have inherited the old pointer (it
//!   is not `subclass`), and `PyType_Modified` is called afterwards.
//! * (b) [`TypeObjectPadding`], the `#[global_allocator]`: while
//!   [`add_class_with_fixes`] creates the type object, a request with exactly
//!   `Layout::new::<ffi::PyTypeObject>()` gets a zeroed block of [`PADDED_SIZE`] (512)
//!   bytes, so `tp_watched`, `tp_versions_used` and whatever the newest CPython appends
//!   read as zero and can be written. The padded blocks are remembered (a few atomic
//!   slots), so `dealloc`/`realloc` always hand `System` the layout the block was
//!   allocated with, whenever they run. Every other allocation goes straight to
//!   `std::alloc::System` (`realloc` included); outside that window the allocator pads
//!   nothing, so no other 408-byte allocation of the process changes.
//!   The padding cannot be sure to reach the type object: arming it is process-wide, so
//!   another thread's allocation of the same layout meanwhile takes a slot, and when the
//!   slots have run out a request gets an unpadded block. So each type object is then
//!   checked to be one of the padded blocks; if it is not, the import fails with an
//!   `ImportError` naming the class (rather than let CPython read past its end).
//!   Alternatives considered: copying the type object into a bigger block after
//!   `PyType_Ready` is impossible (PyO3 caches its address in the `LazyStaticType` and
//!   CPython in `tp_subclasses` of `object`, the MRO and the module dict); padding every
//!   allocation with that layout at all times works too but touches unrelated `Vec`s.
//! * (c) `PYO3_0_12_PYPROTO_UNFIXED=1` in the environment, read by [`init`] at module
//!   import before the class exists, disables (a) and (b) to show the failure: valgrind
//!   (`PYTHONMALLOC=malloc`) reports the invalid reads on 3.10–3.13 (`am_send` in
//!   `PyIter_Send` everywhere, `tp_versions_used` on 3.13), and without valgrind awaiting
//!   a `RustCoroutine` under asyncio segfaults on 3.10–3.13. Its companion
//!   `PYO3_0_12_PYPROTO_EXHAUST_PADDING=1` takes every padded slot before the classes
//!   are created, to show the check of (b) refusing the import.
//! * (d) On every version, not only 3.10+: PyO3 0.12's `tp_dealloc` frees a garbage-
//!   collected object (`#[pyclass(gc)]`: `RustCoroutine`, `RustAwait`, `RustFuture`)
//!   without untracking it first; a collection started while its fields are dropped
//!   (by a `__del__`) then crashes. [`ready_type_with_fixes`] installs a `tp_dealloc`
//!   that untracks first ([`dealloc_untracked`]); the switch (c) leaves it on. It does
//!   what PyO3 0.12's `PyClassAlloc::dealloc` does except call
//!   `PyObject_CallFinalizerFromDealloc`, which a debug CPython 3.14+ lets run only on a
//!   tracked object (an assertion) and which does nothing for a type without
//!   `tp_finalize` (PyO3 0.12 never sets one; a type with one keeps PyO3's dealloc).
//!
//! Only `lib.rs` calls into this module. Free-threaded builds (3.13t+, `Py_GIL_DISABLED`)
//! are refused at build time by `build.rs`: PyO3 0.12's object header predates PEP 703.

use std::alloc::{GlobalAlloc, Layout, System};
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::PyImportError;
use pyo3::prelude::*;
use pyo3::type_object::{PyLayout, PyTypeInfo};
use pyo3::{PyCell, PyClass};

use crate::ffi;

// ANCHOR: unfixed_switch
/// Set to `1` to disable the fixes of this module (see the module documentation).
pub const UNFIXED_ENV: &str = "PYO3_0_12_PYPROTO_UNFIXED";

/// Set to `1` to take every padded slot of fix (b) before the classes are created, so
/// that the check of their type objects refuses the import (for its test). Without
/// effect when [`UNFIXED_ENV`] is set.
pub const EXHAUST_PADDING_ENV: &str = "PYO3_0_12_PYPROTO_EXHAUST_PADDING";

/// Whether fixes (a) and (b) are applied; decided once by [`init`].
static FIXES_ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether [`EXHAUST_PADDING_ENV`] took the padded slots (named in the import error).
static EXHAUSTED_ON_PURPOSE: AtomicBool = AtomicBool::new(false);

/// Reads the environment switches. Called first thing in module init, before any class
/// is created.
pub fn init() {
    let unfixed = env_switch(UNFIXED_ENV);
    FIXES_ENABLED.store(!unfixed, Ordering::SeqCst);
    if !unfixed && env_switch(EXHAUST_PADDING_ENV) {
        while !ALLOCATOR.alloc_padded().is_null() {} // each block leaked, its slot taken
        EXHAUSTED_ON_PURPOSE.store(true, Ordering::SeqCst);
    }
}

/// Whether the environment variable `name` is set to something other than "" or "0".
fn env_switch(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}
// ANCHOR_END: unfixed_switch

/// Whether the compatibility fixes are on (that is, `PYO3_0_12_PYPROTO_UNFIXED` is unset).
pub fn fixes_enabled() -> bool {
    FIXES_ENABLED.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------
// Fix (b): type objects padded past PyO3 0.12's `PyTypeObject`.
// ---------------------------------------------------------------------------------------

/// Bytes allocated for a type object while the padding is armed: CPython 3.13's
/// `PyTypeObject` is 416 bytes; 512 leaves room for what newer versions append.
pub const PADDED_SIZE: usize = 512;

const _: () = assert!(size_of::<ffi::PyTypeObject>() <= PADDED_SIZE);

/// How many padded blocks can be alive at once (one per class created while armed: six
/// today, the rest a margin for other threads' allocations of the same size meanwhile).
const PADDED_SLOTS: usize = 16;

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

/// Whether `type_object` is one of the padded blocks (the check of fix (b)).
fn is_padded(type_object: *mut ffi::PyTypeObject) -> bool {
    let address = type_object.cast::<u8>();
    PADDED_BLOCKS
        .iter()
        .any(|slot| slot.load(Ordering::Acquire) == address)
}

/// The `ImportError` for a class whose type object missed the padding of fix (b).
fn unpadded_error<T: PyClass>() -> PyErr {
    let why = if EXHAUSTED_ON_PURPOSE.load(Ordering::SeqCst) {
        format!(
            "all {} padded blocks were taken on purpose ({}=1)",
            PADDED_SLOTS, EXHAUST_PADDING_ENV
        )
    } else {
        format!(
            "all {} padded blocks were in use (other threads' allocations of the same \
             size take them while the padding is armed), or the type object was created \
             before the padding was armed",
            PADDED_SLOTS
        )
    };
    PyImportError::new_err(format!(
        "pyo3_0_12_pyproto: the type object of class {} was allocated without the \
         padding of fix (b): {}; CPython 3.12+ would read and write past the end of \
         PyO3 0.12's {}-byte PyTypeObject, so the module refuses to import",
        <T as PyTypeInfo>::NAME,
        why,
        size_of::<ffi::PyTypeObject>()
    ))
}

// ANCHOR: apply_fixes
/// `m.add_class::<T>()`, with the fixes applied to `T`'s type object: (a) and (b)
/// unless [`fixes_enabled`] is false, (d) always.
pub fn add_class_with_fixes<T: PyClass>(py: Python, m: &PyModule) -> PyResult<()> {
    ready_type_with_fixes::<T>(py)?;
    m.add_class::<T>()
}

/// Creates `T`'s type object now, with the fixes, for a class the module uses but does
/// not export (PyO3 0.12 would otherwise create it, unfixed, on first use). Without
/// [`fixes_enabled`], (a) and (b) are left out; (d) is applied always. `Err` (an
/// `ImportError`) if the type object did not get the padding of (b).
pub fn ready_type_with_fixes<T: PyClass>(py: Python) -> PyResult<()> {
    let type_object = {
        // Fix (b): PyO3 creates (and `PyType_Ready`s) the type object on first use, in
        // `LazyStaticType::get_or_init`, with `Box::new(ffi::PyTypeObject_INIT)`: that
        // allocation is padded. (Already created, e.g. by a second module init: no-op.)
        let _armed = fixes_enabled().then(ArmedPadding::arm);
        T::type_object_raw(py)
    };
    // Fix (b)'s check: the padding is not sure to reach the type object.
    if fixes_enabled() && !is_padded(type_object) {
        return Err(unpadded_error::<T>());
    }
    // Fix (d).
    // SAFETY: `type_object` is `T`'s live, ready type object; the GIL is held, and no
    // instance of `T` exists yet that could be deallocated through the old slot.
    unsafe { untrack_before_dealloc::<T>(type_object) };
    if !fixes_enabled() {
        return Ok(());
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
            return Ok(());
        }
        let table = Box::leak(Box::new(ffi::AsyncMethodsWithSend {
            am_await: (*old).am_await,
            am_aiter: (*old).am_aiter,
            am_anext: (*old).am_anext,
            am_send: None,
        }));
        let table: *mut ffi::AsyncMethodsWithSend = table;
        lock_tables().push(table as usize);
        (*type_object).tp_as_async = table.cast::<ffi::PyAsyncMethods>();
        ffi::PyType_Modified(type_object);
    }
    Ok(())
}

/// Whether `T`'s `tp_as_async` is one of the 4-field tables of fix (a), whose `am_send`
/// may be filled (by `slots::install`). False with the fixes off: `T` then still has
/// PyO3's 3-field table.
pub fn has_send_table<T: PyClass>(py: Python) -> bool {
    let type_object = T::type_object_raw(py);
    // SAFETY: `type_object` is `T`'s live type object (never freed) and the GIL is held;
    // reading a slot is plain data.
    let table = unsafe { (*type_object).tp_as_async };
    fixes_enabled() && !table.is_null() && is_our_table(table)
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
        if ffi::PyType_HasFeature(type_object, ffi::Py_TPFLAGS_HAVE_GC) == 0
            || (*type_object).tp_finalize.is_some()
        {
            return;
        }
        (*type_object).tp_dealloc = Some(dealloc_untracked::<T>);
        ffi::PyType_Modified(type_object);
    }
}

/// `tp_dealloc` of a GC class `T` without `tp_finalize`: untrack, then what PyO3 0.12's
/// own `tp_dealloc` does (`pyo3::pyclass::tp_dealloc`, `PyClassAlloc::dealloc`): a
/// `GILPool` for the references the drop creates, the value dropped, the object freed.
/// Left out: its `PyObject_CallFinalizerFromDealloc`, which calls nothing for a type
/// without `tp_finalize` (checked by [`untrack_before_dealloc`]) and which a debug
/// CPython 3.14+ lets run only on a tracked object (`assert`, an abort).
///
/// A panic of the value's `Drop` does not unwind into CPython: it is reported as an
/// unraisable `SystemError` (the object is then leaked, not freed).
unsafe extern "C" fn dealloc_untracked<T: PyClass>(obj: *mut ffi::PyObject) {
    // SAFETY: CPython calls `tp_dealloc` with the GIL held, on an instance of `T` (which
    // cannot be subclassed) whose reference count reached zero; it is still tracked, as
    // `PyType_GenericAlloc` tracks every GC object.
    unsafe { ffi::PyObject_GC_UnTrack(obj.cast()) };
    let freed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as above: `obj` is a `PyCell<T>` (the layout of every `PyClass`), its
        // value initialised and dropped nowhere else; after `py_drop` nothing reads it.
        // The type is a GC type, so its `tp_free` (inherited from `object` by
        // `PyType_Ready`) is `PyObject_GC_Del`; PyO3's fallback for a null `tp_free`
        // (`tp_free_fallback`) is repeated, with the reference a heap type's instance
        // holds to its type.
        unsafe {
            let pool = pyo3::GILPool::new();
            (*obj.cast::<PyCell<T>>()).py_drop(pool.python());
            let ty = ffi::Py_TYPE(obj);
            match (*ty).tp_free {
                Some(free) => free(obj.cast()),
                None => {
                    ffi::PyObject_GC_Del(obj.cast());
                    if ffi::PyType_HasFeature(ty, ffi::Py_TPFLAGS_HEAPTYPE) != 0 {
                        ffi::Py_DECREF(ty.cast());
                    }
                }
            }
        }
    }));
    if freed.is_err() {
        const MESSAGE: &[u8] = b"a Rust panic while deallocating a pyo3_0_12_pyproto object\0";
        // SAFETY: the GIL is held; a static exception class and a NUL-terminated string,
        // then a report with no object (the one being deallocated is half-dropped).
        unsafe {
            ffi::PyErr_SetString(ffi::PyExc_SystemError, MESSAGE.as_ptr().cast());
            ffi::PyErr_WriteUnraisable(ptr::null_mut());
        }
    }
}
