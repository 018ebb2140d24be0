//! `Echo`: the guide's first recipe, the smallest class Python can `await`, written the
//! PyO3 0.12 way (`#[pyproto]`'s `PyAsyncProtocol` and `PyIterProtocol`).
//!
//! `await Echo(text)` gives the event loop one turn (one bare `yield`, as
//! `asyncio.sleep(0)` does) and then returns `text`. It is deliberately bare: no
//! `send`/`throw`/`close`, no states, nothing for the garbage collector to visit (it
//! holds only Rust data). `RustCoroutine` (`coroutine`) is the full protocol.
//! Its namesake in `pyo3-modern-pymethods` is the same class with today's PyO3.

use pyo3::class::iter::IterNextOutput;
use pyo3::prelude::*;
use pyo3::{PyAsyncProtocol, PyIterProtocol};

// ANCHOR: recipe
/// Echo(text): awaiting it yields to the event loop once, then returns `text`.
#[pyclass(module = "pyo3_0_12_pyproto")]
pub struct Echo {
    text: String,
    yielded: bool,
}

#[pymethods]
impl Echo {
    #[new]
    fn new(text: String) -> Self {
        Echo {
            text,
            yielded: false,
        }
    }
}

#[pyproto]
impl PyAsyncProtocol for Echo {
    fn __await__(slf: PyRef<Self>) -> PyRef<Self> {
        slf // the awaitable is its own iterator
    }
}

#[pyproto]
impl PyIterProtocol for Echo {
    fn __iter__(slf: PyRef<Self>) -> PyRef<Self> {
        slf
    }

    fn __next__(mut slf: PyRefMut<Self>) -> IterNextOutput<(), String> {
        if slf.yielded {
            return IterNextOutput::Return(slf.text.clone()); // StopIteration(text)
        }
        slf.yielded = true;
        IterNextOutput::Yield(()) // a bare `yield`: the loop runs other tasks
    }
}
// ANCHOR_END: recipe
