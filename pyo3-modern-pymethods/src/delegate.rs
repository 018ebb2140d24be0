//! `delegate`: `await` re-implemented in Rust, for use inside a running event loop.
//!
//! `await x` in a coroutine is PEP 380's `yield from x.__await__()`: until the inner
//! iterator finishes, everything the outer coroutine is asked to do is passed inward —
//! values it is sent, exceptions thrown into it, and closing — and everything the inner
//! iterator yields is passed outward to whoever steps the outer one (an asyncio Task).
//! `RustAwait` is a coroutine object whose one body is that `yield from`, so awaiting
//! `delegate(x)` behaves as awaiting `x`, cancellation included (a Task cancels by
//! throwing `CancelledError` in, which is forwarded like any other exception).

use pyo3::exceptions::{PyGeneratorExit, PyStopIteration};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::compat;
use crate::slots::{Sent, Stepped};
use crate::coroutine::{
    already_executing, check_throw_arguments, escaping, just_started_error, reuse_error,
    thrown_exception, State,
};
use crate::driver::{await_iter, step, Step};

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
        let Some(first) = self.inner.take() else { return };
        Python::attach(|py| {
            let mut next = Some(first);
            while let Some(inner) = next.take() {
                let inner = inner.into_bound(py);
                // Steal the inner iterator of a RustAwait only we hold, so that it is
                // dropped by this loop rather than by its own destructor.
                // SAFETY: reads the reference count of a live object we hold.
                if unsafe { pyo3::ffi::Py_REFCNT(inner.as_ptr()) } == 1 {
                    if let Ok(nested) = inner.cast::<RustAwait>() {
                        if let Ok(mut nested) = nested.try_borrow_mut() {
                            next = nested.inner.take();
                        }
                    }
                }
            }
        });
    }
}
// ANCHOR_END: drop

// ANCHOR: guarded
/// Runs `call`, which calls into Python code, counted against the recursion limit: a
/// chain of thousands of nested `delegate`s raises `RecursionError` instead of
/// overflowing the C stack.
fn guarded<T>(py: Python<'_>, call: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    // SAFETY: called while attached; the message is a static NUL-terminated string.
    if unsafe { ffi::Py_EnterRecursiveCall(c" while awaiting through delegate()".as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let result = call();
    // SAFETY: pairs the successful Py_EnterRecursiveCall above, on the same thread.
    unsafe { ffi::Py_LeaveRecursiveCall() };
    result
}
// ANCHOR_END: guarded

/// How one step ended, seen from the outer coroutine.
enum Outcome {
    Yield(Py<PyAny>),
    Return(Py<PyAny>),
    Raise(PyErr),
}

impl Outcome {
    /// The outcome of a call into the inner iterator (`send`/`throw`): a value is
    /// yielded, and a `StopIteration` means the inner iterator returned.
    fn of_call(py: Python<'_>, result: PyResult<Bound<'_, PyAny>>) -> Outcome {
        match result {
            Ok(value) => Outcome::Yield(value.unbind()),
            Err(err) if err.is_instance_of::<PyStopIteration>(py) => {
                match compat::stop_iteration_value(py, err) {
                    Ok(value) => Outcome::Return(value.unbind()),
                    Err(err) => Outcome::Raise(err),
                }
            }
            Err(err) => Outcome::Raise(err),
        }
    }

    fn of_step(result: PyResult<Step<'_>>) -> Outcome {
        match result {
            Ok(Step::Yielded(item)) => Outcome::Yield(item.unbind()),
            Ok(Step::Returned(value)) => Outcome::Return(value.unbind()),
            Err(err) => Outcome::Raise(err),
        }
    }
}

impl RustAwait {
    fn state(slf: &Bound<'_, Self>) -> State {
        slf.try_borrow().map_or(State::Running, |this| this.state)
    }

    /// Enters a step: marks the coroutine running and hands out its inner iterator.
    fn begin<'py>(slf: &Bound<'py, Self>) -> PyResult<(State, Option<Bound<'py, PyAny>>)> {
        let mut this = slf.try_borrow_mut().map_err(|_| already_executing())?;
        let before = this.state;
        match before {
            State::Finished => return Err(reuse_error()),
            State::Running => return Err(already_executing()),
            State::Created | State::Suspended => {}
        }
        this.state = State::Running;
        Ok((before, this.inner.as_ref().map(|inner| inner.bind(slf.py()).clone())))
    }

    /// Leaves a step the way it ended.
    fn end<'py>(slf: &Bound<'py, Self>, outcome: Outcome) -> PyResult<Sent<'py>> {
        let py = slf.py();
        let mut this = slf.borrow_mut();
        if let Outcome::Yield(value) = outcome {
            this.state = State::Suspended;
            return Ok(Sent::Yield(value.into_bound(py)));
        }
        this.state = State::Finished;
        // Released through a `Bound`, at once even on a step of `crate::slots`.
        let inner = this.inner.take().map(|inner| inner.into_bound(py));
        drop(this);
        drop(inner); // may run the inner iterator's finaliser: after the borrow is released
        match outcome {
            Outcome::Return(value) => Ok(Sent::Return(value.into_bound(py))),
            Outcome::Raise(err) => Err(err),
            Outcome::Yield(_) => unreachable!("handled above"),
        }
    }

    /// Raises the thrown exception in the outer coroutine itself (where `yield from`
    /// raises it when the inner iterator cannot take it).
    fn raise_here<'py>(
        slf: &Bound<'py, Self>,
        before: State,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Sent<'py>> {
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
            && compat::thrown_stop_iteration_returns_from_await(py)
            && err.is_instance_of::<PyStopIteration>(py)
        {
            return Self::end(slf, Outcome::of_call(py, Err(err)));
        }
        Self::end(slf, Outcome::Raise(escaping(py, err, suspended)))
    }
}

// ANCHOR: send_step
/// `yield from`'s send: `next(inner)` for `None`, else `inner.send(value)`. The
/// `send`/`__next__` methods and the hand-filled slots (`crate::slots`) all step here.
impl Stepped for RustAwait {
    fn send_step<'py>(slf: &Bound<'py, Self>, value: &Bound<'py, PyAny>) -> PyResult<Sent<'py>> {
        let py = slf.py();
        if !value.is_none() && Self::state(slf) == State::Created {
            return Err(just_started_error());
        }
        let (_, inner) = Self::begin(slf)?;
        let inner = inner.expect("an unfinished RustAwait has its inner iterator");
        let outcome = guarded(py, || {
            Ok(if value.is_none() {
                Outcome::of_step(step(&inner))
            } else {
                Outcome::of_call(py, inner.call_method1("send", (value,)))
            })
        });
        Self::end(slf, outcome.unwrap_or_else(Outcome::Raise))
    }
}
// ANCHOR_END: send_step

impl RustAwait {
    /// `yield from`'s throw: `GeneratorExit` closes the inner iterator and is raised
    /// here; anything else goes to `inner.throw` where there is one, else is raised here.
    fn throw_step<'py>(slf: &Bound<'py, Self>, args: &Bound<'py, PyTuple>) -> PyResult<Sent<'py>> {
        let py = slf.py();
        check_throw_arguments(args)?;
        let (before, inner) = Self::begin(slf)?;
        let inner = match (before, inner) {
            (State::Suspended, Some(inner)) => inner,
            _ => return Self::raise_here(slf, before, args),
        };
        let typ = args.get_item(0)?;
        let is_generator_exit = match typ.cast::<PyType>() {
            Ok(class) => class.is_subclass_of::<PyGeneratorExit>().unwrap_or(false),
            Err(_) => typ.is_instance_of::<PyGeneratorExit>(),
        };
        if is_generator_exit {
            return match guarded(py, || close_inner(&inner)) {
                Ok(()) => Self::raise_here(slf, before, args),
                Err(close_error) => Self::end(slf, Outcome::Raise(close_error)),
            };
        }
        let method = match inner.getattr_opt("throw") {
            Ok(Some(method)) => method,
            Ok(None) => return Self::raise_here(slf, before, args),
            Err(err) => return Self::end(slf, Outcome::Raise(err)),
        };
        let result = guarded(py, || method.call1(args));
        Self::end(slf, Outcome::of_call(py, result))
    }
}

/// `close()` of a delegated-to iterator, as `yield from` does it: only if it has one.
fn close_inner(inner: &Bound<'_, PyAny>) -> PyResult<()> {
    match inner.getattr_opt("close")? {
        Some(close) => close.call0().map(drop),
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
        Self::send_step(slf, slf.py().None().bind(slf.py()))?.into_method_result()
    }

    /// `yield from`'s send: `next(inner)` for `None`, else `inner.send(value)`.
    #[pyo3(signature = (value, /))]
    fn send(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::send_step(slf, value)?.into_method_result()
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
        let _ = Self::end(slf, Outcome::Raise(PyGeneratorExit::new_err(())));
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
    Ok(RustAwait { state: State::Created, inner: Some(inner.unbind()) })
}
// ANCHOR_END: delegate

/// Adds `delegate` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(delegate, m)?)
}
