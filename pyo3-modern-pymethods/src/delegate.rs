//! `delegate`: `await` re-implemented in Rust, for use inside a running event loop.
//!
//! `await x` in a coroutine is PEP 380's `yield from x.__await__()`: until the inner
//! iterator finishes, everything the outer coroutine is asked to do is passed inward —
//! values it is sent, exceptions thrown into it, and closing — and everything the inner
//! iterator yields is passed outward to whoever steps the outer one (an asyncio Task).
//! `RustAwait` is a coroutine object whose one body is that `yield from`, so awaiting
//! `delegate(x)` behaves as awaiting `x`, cancellation included (a Task cancels by
//! throwing `CancelledError` in, which is forwarded like any other exception).

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyGeneratorExit, PyStopIteration};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::compat;
use crate::protocol::{
    already_executing, await_iter, borrow_for_step, check_throw_arguments, escaping,
    just_started_error, panic_error, reuse_error, step_iter, thrown_exception, State, Step,
};
use crate::slots::Stepped;

// ANCHOR: class
/// A coroutine whose body is `return (yield from inner)`.
#[pyclass(module = "pyo3_modern_pymethods")]
pub struct RustAwait {
    state: State,
    /// The iterator `await` delegates to; dropped once the coroutine finishes.
    inner: Option<Py<PyAny>>,
}
// ANCHOR_END: class

// ANCHOR: drop
/// Dropping a chain of nested `delegate`s one level at a time, the way CPython's
/// "trashcan" deallocates deeply nested containers: a recursive drop of a chain
/// hundreds of thousands deep would overflow the C stack.
impl Drop for RustAwait {
    fn drop(&mut self) {
        let Some(first) = self.inner.take() else {
            return;
        };
        // Cheap: the destructor runs inside `tp_dealloc`, where PyO3 already counts the
        // thread as attached. (The levels a step finishes are released by `end`, with
        // the step's own token, and reach this destructor with nothing left to drop.)
        Python::attach(|py| release(first.into_bound(py)));
    }
}

/// Drops `inner`, the iterator a `RustAwait` delegated to, taking apart the levels of a
/// chain of `RustAwait`s one at a time instead of one destructor inside the next.
///
/// Only a level we alone hold is taken apart (`compat::is_uniquely_referenced`: under
/// free threading CPython's own check, not a reference count of 1); a level something
/// else still holds is left to its owner.
fn release(inner: Bound<'_, PyAny>) {
    let mut next = Some(inner);
    while let Some(inner) = next.take() {
        // Steal the inner iterator of a RustAwait only we hold, so that it is dropped by
        // this loop rather than by its own destructor, which then finds nothing to do.
        if compat::is_uniquely_referenced(&inner) {
            if let Ok(nested) = inner.cast::<RustAwait>() {
                if let Ok(mut nested) = nested.try_borrow_mut() {
                    next = nested
                        .inner
                        .take()
                        .map(|taken| taken.into_bound(inner.py()));
                }
            }
        }
    }
}
// ANCHOR_END: drop

// ANCHOR: guarded
/// Runs `call`, which calls into Python code, counted against the recursion limit: a
/// chain of thousands of nested `delegate`s raises `RecursionError` instead of
/// overflowing the C stack.
///
/// A panic in `call` (PyO3 resumes one when it fetches the `PanicException` that a Rust
/// step further in raised) comes back as that `PanicException`: the recursion count
/// stays balanced, and the step ends, finishing the coroutine, as on any exception.
fn guarded<T>(py: Python<'_>, call: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    // SAFETY: called while attached; the message is a static NUL-terminated string.
    if unsafe { ffi::Py_EnterRecursiveCall(c" while awaiting through delegate()".as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let result = catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|p| Err(panic_error(p)));
    // SAFETY: pairs the successful Py_EnterRecursiveCall above, on the same thread.
    unsafe { ffi::Py_LeaveRecursiveCall() };
    result
}
// ANCHOR_END: guarded

/// The step a call into the inner iterator (`send`/`throw`) made: a value is yielded,
/// and a `StopIteration` means the inner iterator returned.
fn call_step<'py>(result: PyResult<compat::Called<'py>>) -> PyResult<Step<'py>> {
    Ok(match result? {
        compat::Called::Returned(value) => Step::Yield(value),
        compat::Called::Stopped(value) => Step::Return(value),
    })
}

impl RustAwait {
    fn state(slf: &Bound<'_, Self>) -> State {
        slf.try_borrow().map_or(State::Running, |this| this.state)
    }

    /// Enters a step: marks the coroutine running and hands out its inner iterator.
    fn begin<'py>(slf: &Bound<'py, Self>) -> PyResult<(State, Option<Bound<'py, PyAny>>)> {
        let mut this = borrow_for_step(slf)?;
        let before = this.state;
        match before {
            State::Finished => return Err(reuse_error()),
            State::Running => return Err(already_executing()),
            State::Created | State::Suspended => {}
        }
        this.state = State::Running;
        Ok((
            before,
            this.inner
                .as_ref()
                .map(|inner| inner.bind(slf.py()).clone()),
        ))
    }

    /// Leaves a step the way it ended: suspended on a yield, else finished, with the
    /// inner iterator released at once (through a `Bound`, so even on a step of
    /// `crate::slots`) and with this step's token (`release`), so that the destructor of
    /// a nested `RustAwait` finds nothing left to do.
    fn end<'py>(slf: &Bound<'py, Self>, stepped: PyResult<Step<'py>>) -> PyResult<Step<'py>> {
        let mut this = slf.borrow_mut();
        if let Ok(Step::Yield(_)) = stepped {
            this.state = State::Suspended;
            return stepped;
        }
        this.state = State::Finished;
        let inner = this.inner.take();
        drop(this);
        // May run the inner iterator's finaliser: after the borrow is released.
        if let Some(inner) = inner {
            release(inner.into_bound(slf.py()));
        }
        stepped
    }

    /// Raises the thrown exception in the outer coroutine itself (where `yield from`
    /// raises it when the inner iterator cannot take it).
    fn raise_here<'py>(
        slf: &Bound<'py, Self>,
        before: State,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Step<'py>> {
        let py = slf.py();
        let err = match thrown_exception(args) {
            Ok(err) => err,
            Err(bad_arguments) => {
                slf.borrow_mut().state = before; // nothing happened
                return Err(bad_arguments);
            }
        };
        let suspended = before == State::Suspended;
        if suspended && compat::thrown_stop_iteration_returns_from_await(py) && err.stop_iteration {
            let value = compat::stop_iteration_value(py, err.err);
            return Self::end(slf, value.map(Step::Return));
        }
        Self::end(slf, Err(escaping(py, err, suspended)))
    }
}

// ANCHOR: step
/// `yield from`'s send: `next(inner)` for `None`, else `inner.send(value)`. The
/// `send`/`__next__` methods and the hand-filled slots (`crate::slots`) all step here.
impl Stepped for RustAwait {
    crate::slots::free_list!();

    fn step<'py>(slf: &Bound<'py, Self>, value: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
        let py = slf.py();
        if !value.is_none() && Self::state(slf) == State::Created {
            return Err(just_started_error());
        }
        let (_, inner) = Self::begin(slf)?;
        let inner = inner.expect("an unfinished RustAwait has its inner iterator");
        let stepped = guarded(py, || {
            if value.is_none() {
                step_iter(&inner)
            } else {
                let send = inner.getattr("send")?;
                call_step(compat::call(&send, &PyTuple::new(py, [value])?))
            }
        });
        drop(inner); // `end` releases the last reference, the coroutine's own
        Self::end(slf, stepped)
    }
}
// ANCHOR_END: step

impl RustAwait {
    /// `yield from`'s throw: `GeneratorExit` closes the inner iterator and is raised
    /// here; anything else goes to `inner.throw` where there is one, else is raised here.
    fn throw_step<'py>(slf: &Bound<'py, Self>, args: &Bound<'py, PyTuple>) -> PyResult<Step<'py>> {
        let py = slf.py();
        check_throw_arguments(args)?;
        let (before, inner) = Self::begin(slf)?;
        let inner = match (before, inner) {
            (State::Suspended, Some(inner)) => inner,
            (_, inner) => {
                drop(inner); // as in `step`
                return Self::raise_here(slf, before, args);
            }
        };
        let typ = args.get_item(0)?;
        let is_generator_exit = match typ.cast::<PyType>() {
            Ok(class) => class.is_subclass_of::<PyGeneratorExit>().unwrap_or(false),
            Err(_) => typ.is_instance_of::<PyGeneratorExit>(),
        };
        if is_generator_exit {
            return match guarded(py, || close_inner(&inner)) {
                Ok(()) => Self::raise_here(slf, before, args),
                Err(close_error) => Self::end(slf, Err(close_error)),
            };
        }
        let method = match inner.getattr_opt("throw") {
            Ok(Some(method)) => method,
            Ok(None) => return Self::raise_here(slf, before, args),
            Err(err) => return Self::end(slf, Err(err)),
        };
        let stepped = guarded(py, || call_step(compat::call(&method, args)));
        Self::end(slf, stepped)
    }
}

/// `close()` of a delegated-to iterator, as `yield from` does it: only if it has one.
fn close_inner(inner: &Bound<'_, PyAny>) -> PyResult<()> {
    match inner.getattr_opt("close")? {
        // A `StopIteration` from `close()` is raised as before (made again from its value).
        Some(close) => match compat::call(&close, &PyTuple::empty(close.py()))? {
            compat::Called::Returned(_) => Ok(()),
            compat::Called::Stopped(value) => Err(compat::stop_iteration(value)),
        },
        None => Ok(()),
    }
}

// ANCHOR: pymethods
#[pymethods]
impl RustAwait {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Self::step(slf, slf.py().None().bind(slf.py()))?.into_method_result()
    }

    /// `yield from`'s send: `next(inner)` for `None`, else `inner.send(value)`.
    #[pyo3(signature = (value, /))]
    fn send(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::step(slf, value)?.into_method_result()
    }

    /// `yield from`'s throw: `GeneratorExit` closes the inner iterator and is raised
    /// here; anything else goes to `inner.throw` where there is one, else is raised here.
    #[pyo3(signature = (*args), text_signature = "($self, typ, val=None, tb=None, /)")]
    fn throw(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        Self::throw_step(slf, args)?.into_method_result()
    }

    /// `yield from`'s close: close the inner iterator, then finish quietly.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if Self::state(slf) == State::Finished {
            return Ok(());
        }
        let (before, inner) = Self::begin(slf)?;
        let closed = match (before, inner) {
            (State::Suspended, Some(inner)) => guarded(py, || close_inner(&inner)),
            _ => Ok(()),
        };
        // Finishing drops the inner iterator; the GeneratorExit itself is swallowed.
        let _ = Self::end(slf, Err(PyGeneratorExit::new_err(())));
        match closed {
            Err(err)
                if !err.is_instance_of::<PyGeneratorExit>(py)
                    && !err.is_instance_of::<PyStopIteration>(py) =>
            {
                Err(err)
            }
            _ => Ok(()),
        }
    }

    fn __repr__(&self) -> String {
        format!("<RustAwait {}>", self.state.name())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
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
pub fn delegate(awaitable: &Bound<'_, PyAny>) -> PyResult<RustAwait> {
    let inner = await_iter(awaitable)?;
    Ok(RustAwait {
        state: State::Created,
        inner: Some(inner.unbind()),
    })
}
// ANCHOR_END: delegate

/// Adds `delegate` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(delegate, m)?)
}
