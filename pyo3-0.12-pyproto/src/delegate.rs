//! `delegate`: `await` re-implemented in Rust, for use inside a running event loop.
//!
//! `await x` in a coroutine is PEP 380's `yield from x.__await__()`: until the inner
//! iterator finishes, everything the outer coroutine is asked to do is passed inward —
//! values it is sent, exceptions thrown into it, and closing — and everything the inner
//! iterator yields is passed outward to whoever steps the outer one (an asyncio Task).
//! `RustAwait` is a coroutine object whose one body is that `yield from`, so awaiting
//! `delegate(x)` behaves as awaiting `x`, cancellation included (a Task cancels by
//! throwing `CancelledError` in, which is forwarded like any other exception).
//!
//! Finding and stepping the inner iterator (`protocol::await_iter`,
//! `protocol::step_iter`) is shared with `drive`; the hand-filled slots of `slots` step
//! `RustAwait` through `Stepped`.

use std::ffi::CStr;

use pyo3::exceptions::{PyAttributeError, PyGeneratorExit, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use pyo3::{
    wrap_pyfunction, PyAsyncProtocol, PyGCProtocol, PyIterProtocol, PyNativeType, PyObjectProtocol,
    PyTraverseError, PyVisit,
};

use crate::compat;
use crate::protocol::{
    already_executing, await_iter, borrow_for_step, check_throw_arguments, error_is, escaping,
    just_started_error, reuse_error, step_iter, thrown_exception, IntoMethodResult, State, Step,
};
use crate::slots::Stepped;

// ANCHOR: class
/// A coroutine whose body is `return (yield from inner)`.
#[pyclass(module = "pyo3_0_12_pyproto", gc)]
pub struct RustAwait {
    state: State,
    /// The iterator `await` delegates to; dropped once the coroutine finishes.
    inner: Option<PyObject>,
}
// ANCHOR_END: class

// ANCHOR: drop
/// Dropping a chain of nested `delegate`s one level at a time, the way CPython's
/// "trashcan" deallocates deeply nested containers: a recursive drop of a chain
/// hundreds of thousands deep would overflow the C stack.
impl Drop for RustAwait {
    fn drop(&mut self) {
        let first = match self.inner.take() {
            Some(first) => first,
            None => return,
        };
        // Cheap: `tp_dealloc` (where a `RustAwait` is dropped) already holds the GIL.
        let gil = Python::acquire_gil();
        let py = gil.python();
        let mut next = Some(first);
        while let Some(inner) = next.take() {
            // Steal the inner iterator of a RustAwait only we hold, so that it is
            // dropped by this loop rather than by its own destructor.
            if inner.get_refcnt(py) == 1 {
                if let Ok(nested) = inner.as_ref(py).downcast::<PyCell<RustAwait>>() {
                    if let Ok(mut nested) = nested.try_borrow_mut() {
                        next = nested.inner.take();
                    }
                }
            }
            // `inner` is released here, with the GIL held: at once.
        }
    }
}
// ANCHOR_END: drop

// ANCHOR: guarded
/// Runs `call`, which calls into Python code, counted against the recursion limit: a
/// chain of thousands of nested `delegate`s raises `RecursionError` instead of
/// overflowing the C stack.
fn guarded<T>(py: Python, call: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    const CONTEXT: &[u8] = b" while awaiting through delegate()\0";
    let context = CStr::from_bytes_with_nul(CONTEXT).expect("NUL-terminated");
    compat::enter_recursive_call(py, context)?;
    let result = call();
    compat::leave_recursive_call(py);
    result
}
// ANCHOR_END: guarded

/// How a call into the inner iterator (`send`/`throw`) ended, seen from the outer
/// coroutine: a value is yielded, and a `StopIteration` means the inner iterator
/// returned.
fn called(py: Python, result: PyResult<&PyAny>) -> PyResult<Step> {
    match result {
        Ok(value) => Ok(Step::Yield(value.into())),
        Err(err) if error_is::<PyStopIteration>(py, &err) => {
            Ok(Step::Return(compat::stop_iteration_value(py, err)?))
        }
        Err(err) => Err(err),
    }
}

impl RustAwait {
    fn state(slf: &PyCell<Self>) -> State {
        slf.try_borrow().map_or(State::Running, |this| this.state)
    }

    /// Enters a step: marks the coroutine running and hands out its inner iterator.
    fn begin(slf: &PyCell<Self>) -> PyResult<(State, Option<PyObject>)> {
        let py = slf.py();
        let mut this = borrow_for_step(slf)?;
        let before = this.state;
        match before {
            State::Finished => return Err(reuse_error()),
            State::Running => return Err(already_executing()),
            State::Created | State::Suspended => {}
        }
        this.state = State::Running;
        // A new reference, owned rather than put in the GIL pool (a pooled reference per
        // step would make every step's `GILPool` release one): it outlives the borrow.
        let inner = this.inner.as_ref().map(|inner| inner.clone_ref(py));
        Ok((before, inner))
    }

    /// Leaves a step the way it ended.
    fn end(slf: &PyCell<Self>, outcome: PyResult<Step>) -> PyResult<Step> {
        let mut this = slf.borrow_mut();
        if let Ok(Step::Yield(value)) = outcome {
            this.state = State::Suspended;
            return Ok(Step::Yield(value));
        }
        this.state = State::Finished;
        let inner = this.inner.take();
        drop(this);
        drop(inner); // may run arbitrary `__del__`: after the borrow is released
        outcome
    }

    /// Raises the thrown exception in the outer coroutine itself (where `yield from`
    /// raises it when the inner iterator cannot take it).
    fn raise_here(slf: &PyCell<Self>, before: State, args: &PyTuple) -> PyResult<Step> {
        let py = slf.py();
        let err = match thrown_exception(args) {
            Ok(err) => err,
            Err(bad_arguments) => {
                slf.borrow_mut().state = before; // nothing happened
                return Err(bad_arguments);
            }
        };
        let suspended = before == State::Suspended;
        if suspended
            && compat::thrown_stop_iteration_returns_from_await()
            && error_is::<PyStopIteration>(py, &err)
        {
            return Self::end(slf, called(py, Err(err)));
        }
        Self::end(slf, Err(escaping(py, err, suspended)))
    }
}

// ANCHOR: step
/// `yield from`'s send: `next(inner)` for `None`, else `inner.send(value)`. The
/// `send`/`__next__` methods and the hand-filled slots (`crate::slots`) all step here.
impl Stepped for RustAwait {
    crate::slots::free_list!();

    fn step(slf: &PyCell<Self>, value: &PyAny) -> PyResult<Step> {
        let py = slf.py();
        if !value.is_none() && Self::state(slf) == State::Created {
            return Err(just_started_error());
        }
        let (_, inner) = Self::begin(slf)?;
        let inner = inner.expect("an unfinished RustAwait has its inner iterator");
        let inner = inner.as_ref(py);
        let outcome = guarded(py, || {
            if value.is_none() {
                step_iter(inner)
            } else {
                called(py, inner.call_method1("send", (value,)))
            }
        });
        Self::end(slf, outcome)
    }
}
// ANCHOR_END: step

impl RustAwait {
    /// `yield from`'s throw: `GeneratorExit` closes the inner iterator and is raised
    /// here; anything else goes to `inner.throw` where there is one, else is raised here.
    fn throw_step(slf: &PyCell<Self>, args: &PyTuple) -> PyResult<Step> {
        let py = slf.py();
        check_throw_arguments(args)?;
        let (before, inner) = Self::begin(slf)?;
        let inner = match (before, inner) {
            (State::Suspended, Some(inner)) => inner,
            _ => return Self::raise_here(slf, before, args),
        };
        let inner = inner.as_ref(py);
        let typ = args.get_item(0);
        let is_generator_exit = match typ.downcast::<PyType>() {
            Ok(class) => class.is_subclass::<PyGeneratorExit>().unwrap_or(false),
            Err(_) => py.is_instance::<PyGeneratorExit, _>(typ).unwrap_or(false),
        };
        if is_generator_exit {
            return match guarded(py, || close_inner(inner)) {
                Ok(()) => Self::raise_here(slf, before, args),
                Err(close_error) => Self::end(slf, Err(close_error)),
            };
        }
        let method = match getattr_opt(inner, "throw") {
            Ok(Some(method)) => method,
            Ok(None) => return Self::raise_here(slf, before, args),
            Err(err) => return Self::end(slf, Err(err)),
        };
        let result = guarded(py, || method.call1(args));
        Self::end(slf, called(py, result))
    }
}

/// An attribute of `obj`, `None` if it has none (PyO3 0.12 has no `getattr_opt`).
fn getattr_opt<'py>(obj: &'py PyAny, name: &str) -> PyResult<Option<&'py PyAny>> {
    match obj.getattr(name) {
        Ok(attr) => Ok(Some(attr)),
        Err(err) if error_is::<PyAttributeError>(obj.py(), &err) => Ok(None),
        Err(err) => Err(err),
    }
}

/// `close()` of a delegated-to iterator, as `yield from` does it: only if it has one.
fn close_inner(inner: &PyAny) -> PyResult<()> {
    match getattr_opt(inner, "close")? {
        Some(close) => close.call0().map(drop),
        None => Ok(()),
    }
}

// ANCHOR: pymethods
/// PyO3 0.12's `#[pymethods]` turns a `slf: &PyCell<Self>` receiver into an unsafe call
/// (`Python::from_borrowed_ptr`) outside any `unsafe` block, under the receiver's span,
/// in wrapper functions it generates next to the impl; `unsafe_op_in_unsafe_fn` (denied
/// for the workspace) would flag that code of PyO3's. This module holds the impl and
/// nothing else, so the allowance covers nothing of ours.
#[allow(unsafe_op_in_unsafe_fn)]
mod methods {
    use super::*;

    #[pymethods]
    impl RustAwait {
        /// `yield from`'s send: `next(inner)` for `None`, else `inner.send(value)`.
        #[text_signature = "($self, value, /)"]
        fn send(slf: &PyCell<Self>, value: &PyAny) -> PyResult<Step> {
            let py = slf.py();
            <Self as Stepped>::step(slf, value)?.into_method_result(py)
        }

        /// `yield from`'s throw: `GeneratorExit` closes the inner iterator and is raised
        /// here; anything else goes to `inner.throw` where there is one, else is raised here.
        #[args(args = "*")]
        #[text_signature = "($self, typ, val=None, tb=None, /)"]
        fn throw(slf: &PyCell<Self>, args: &PyTuple) -> PyResult<Step> {
            let py = slf.py();
            Self::throw_step(slf, args)?.into_method_result(py)
        }

        /// `yield from`'s close: close the inner iterator, then finish quietly.
        #[text_signature = "($self)"]
        fn close(slf: &PyCell<Self>) -> PyResult<()> {
            let py = slf.py();
            if Self::state(slf) == State::Finished {
                return Ok(());
            }
            let (before, inner) = Self::begin(slf)?;
            let closed = match (before, inner) {
                (State::Suspended, Some(inner)) => guarded(py, || close_inner(inner.as_ref(py))),
                _ => Ok(()),
            };
            // Finishing drops the inner iterator; the GeneratorExit itself is swallowed.
            let _ = Self::end(slf, Err(PyGeneratorExit::new_err(())));
            match closed {
                Err(err)
                    if !error_is::<PyGeneratorExit>(py, &err)
                        && !error_is::<PyStopIteration>(py, &err) =>
                {
                    Err(err)
                }
                _ => Ok(()),
            }
        }
    }
}

#[pyproto]
impl PyAsyncProtocol for RustAwait {
    fn __await__(slf: PyRef<Self>) -> PyRef<Self> {
        slf
    }
}

#[pyproto]
impl PyIterProtocol for RustAwait {
    fn __iter__(slf: PyRef<Self>) -> PyRef<Self> {
        slf
    }

    fn __next__(slf: &PyCell<Self>) -> PyResult<Step> {
        let py = slf.py();
        <Self as Stepped>::step(slf, py.None().as_ref(py))?.into_method_result(py)
    }
}

#[pyproto]
impl PyObjectProtocol for RustAwait {
    fn __repr__(&self) -> String {
        format!("<RustAwait {}>", self.state.name())
    }
}

#[pyproto]
impl PyGCProtocol for RustAwait {
    fn __traverse__(&self, visit: PyVisit) -> Result<(), PyTraverseError> {
        if let Some(inner) = &self.inner {
            visit.call(inner)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.inner = None;
    }
}
// ANCHOR_END: pymethods

// ANCHOR: delegate
/// `await awaitable`, as a Rust object: `await delegate(x)` is `await x`.
#[pyfunction]
#[text_signature = "(awaitable)"]
pub fn delegate(awaitable: &PyAny) -> PyResult<RustAwait> {
    let inner = await_iter(awaitable)?;
    Ok(RustAwait {
        state: State::Created,
        inner: Some(inner.into()),
    })
}
// ANCHOR_END: delegate

/// Adds `delegate` to the module (PyO3 0.12's `#[pyfunction]` wrapper is private to this file).
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(delegate, m)?)
}
