//! `Echo`: the guide's first recipe, the smallest class Python can `await`, written with
//! today's PyO3 (`#[pymethods]` magic methods).
//!
//! `await Echo(text)` gives the event loop one turn (one bare `yield`, as
//! `asyncio.sleep(0)` does) and then returns `text`. It is deliberately bare: no
//! `send`/`throw`/`close`, no states, nothing for the garbage collector to visit (it
//! holds only Rust data). `RustCoroutine` (`coroutine`) is the full protocol.
//! Its namesake in `pyo3-0.12-pyproto` is the same class with PyO3 0.12's `#[pyproto]`.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

// ANCHOR: recipe
/// Echo(text): awaiting it yields to the event loop once, then returns `text`.
#[pyclass(module = "pyo3_modern_pymethods")]
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

    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf // the awaitable is its own iterator
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(mut slf: PyRefMut<'_, Self>) -> PyResult<Py<PyAny>> {
        if slf.yielded {
            return Err(PyStopIteration::new_err((slf.text.clone(),))); // StopIteration(text)
        }
        slf.yielded = true;
        Ok(slf.py().None()) // a bare `yield` (not `()`: an empty tuple since PyO3 0.23)
    }
}
// ANCHOR_END: recipe
