//! The FFI shim: PyO3 0.12's `ffi`, plus the C declarations it lacks.
//!
//! Everything of `pyo3::ffi` is re-exported, so the crate's modules write `ffi::X` for
//! both, as the modern crate does with today's PyO3. PyO3 0.12 (late 2020) knows
//! CPython up to 3.9; declared here:
//!
//! * `PyIter_Check`, an exported function since CPython 3.8 (`build.rs` sets
//!   `cfg(pyiter_check_is_function)`). It shadows PyO3 0.12's `ffi::PyIter_Check`, the
//!   3.7 macro, which links `_PyObject_NextNotImplemented`, a symbol CPython 3.13 no
//!   longer exports (importing the module would fail with "undefined symbol"). For 3.7
//!   the re-exported macro is the right one.
//! * `Py_EnterRecursiveCall` / `Py_LeaveRecursiveCall`: exported functions since 3.9
//!   (`cfg(py_enter_recursive_call_is_function)`), macros over the thread state on 3.7
//!   and 3.8, re-created here.
//! * [`Py_IsFinalizing`]: public since 3.13 (`cfg(py_is_finalizing_is_public)`), the
//!   same function as `_Py_IsFinalizing` of 3.7–3.12, which 3.13 no longer exports.
//! * [`sendfunc`], [`PySendResult`] and [`AsyncMethodsWithSend`]: CPython 3.10's
//!   `am_send` slot, its result codes, and the 4-field `PyAsyncMethods` that holds it
//!   (PyO3 0.12's has 3 fields).
//!
//! Declarations only: which of them runs on which version is `compat`'s business, the
//! 4-field table is installed by `repair` (fix (a)) and filled by `slots` (`am_send`).

use std::mem::size_of;
use std::os::raw::c_int;

pub use pyo3::ffi::*;

#[cfg(pyiter_check_is_function)]
extern "C" {
    /// `PyIter_Check(obj)`: the type has a `tp_iternext` that is not
    /// `_PyObject_NextNotImplemented` (an exported function since CPython 3.8).
    pub fn PyIter_Check(obj: *mut PyObject) -> c_int;
}

extern "C" {
    /// `Py_IsFinalizing()`: non-zero once the interpreter has begun to finalize. Any
    /// thread, with or without the GIL.
    #[cfg_attr(not(py_is_finalizing_is_public), link_name = "_Py_IsFinalizing")]
    pub fn Py_IsFinalizing() -> c_int;
}

#[cfg(py_enter_recursive_call_is_function)]
pub use self::recursion_functions::{Py_EnterRecursiveCall, Py_LeaveRecursiveCall};

#[cfg(not(py_enter_recursive_call_is_function))]
pub use self::recursion_macros::{Py_EnterRecursiveCall, Py_LeaveRecursiveCall};

/// CPython 3.9+ exports both as functions.
#[cfg(py_enter_recursive_call_is_function)]
mod recursion_functions {
    use std::os::raw::{c_char, c_int};

    extern "C" {
        /// Counts a nested call against the recursion limit; non-zero with
        /// `RecursionError` set when it is exceeded (`context` ends the message).
        pub fn Py_EnterRecursiveCall(context: *const c_char) -> c_int;
        /// Gives back what a successful `Py_EnterRecursiveCall` counted.
        pub fn Py_LeaveRecursiveCall();
    }
}

/// CPython 3.7 and 3.8 have only the macros of `ceval.h`, re-created here: they count
/// in the `recursion_depth` field of the thread state and call `_Py_CheckRecursiveCall`
/// (exported) once the depth passes `_Py_CheckRecursionLimit` (exported data).
#[cfg(not(py_enter_recursive_call_is_function))]
mod recursion_macros {
    use std::os::raw::{c_char, c_int, c_void};

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
        // SAFETY: only called by the two functions below, whose callers hold the GIL, so
        // this thread has a current thread state (`PyThreadState_Get` never returns NULL
        // then).
        unsafe { super::PyThreadState_Get() }.cast::<ThreadStateHead>()
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
    /// GIL held; `context` is a NUL-terminated string.
    #[allow(non_snake_case)] // the C name
    pub unsafe fn Py_EnterRecursiveCall(context: *const c_char) -> c_int {
        let tstate = thread_state();
        // SAFETY: `tstate` is this thread's live thread state, which starts with the
        // fields of `ThreadStateHead` on 3.7 and 3.8 (the only versions this module is
        // compiled for, see `build.rs`); the GIL serialises every access to it. The
        // limit is plain data of libpython, written only with the GIL held; `context`
        // is a C string, as the caller guarantees.
        unsafe {
            (*tstate).recursion_depth += 1;
            if (*tstate).recursion_depth > _Py_CheckRecursionLimit {
                return _Py_CheckRecursiveCall(context);
            }
        }
        0
    }

    /// `Py_LeaveRecursiveCall()`: `if (--tstate->recursion_depth < lower water mark)
    /// tstate->overflowed = 0`.
    ///
    /// # Safety
    /// GIL held, pairing a successful `Py_EnterRecursiveCall` on this thread.
    #[allow(non_snake_case)] // the C name
    pub unsafe fn Py_LeaveRecursiveCall() {
        let tstate = thread_state();
        // SAFETY: as in `Py_EnterRecursiveCall`.
        unsafe {
            (*tstate).recursion_depth -= 1;
            if (*tstate).recursion_depth < lower_water_mark(_Py_CheckRecursionLimit) {
                (*tstate).overflowed = 0;
            }
        }
    }
}

// ANCHOR: async_table
/// `sendfunc` of CPython 3.10+: `PySendResult (*)(PyObject *iter, PyObject *value, PyObject **result)`.
#[allow(non_camel_case_types)] // the C name, as PyO3's `unaryfunc`
pub type sendfunc = unsafe extern "C" fn(
    iter: *mut PyObject,
    value: *mut PyObject,
    result: *mut *mut PyObject,
) -> PySendResult;

/// CPython 3.10+'s `PySendResult` (a C enum, an `int`): how a `sendfunc` ended.
pub type PySendResult = c_int;
/// Finished: `*result` is the returned value.
pub const PYGEN_RETURN: PySendResult = 0;
/// Raised: an exception is set, and `*result` must be NULL.
pub const PYGEN_ERROR: PySendResult = -1;
/// Suspended: `*result` is the yielded value.
pub const PYGEN_NEXT: PySendResult = 1;

/// CPython 3.10+'s `PyAsyncMethods`, with the `am_send` that PyO3 0.12's lacks.
#[repr(C)]
pub struct AsyncMethodsWithSend {
    pub am_await: Option<unaryfunc>,
    pub am_aiter: Option<unaryfunc>,
    pub am_anext: Option<unaryfunc>,
    pub am_send: Option<sendfunc>,
}

// The first three fields must line up with PyO3's table, which they replace.
const _: () = assert!(size_of::<PyAsyncMethods>() == 3 * size_of::<usize>());
const _: () = assert!(size_of::<AsyncMethodsWithSend>() == 4 * size_of::<usize>());
// ANCHOR_END: async_table
