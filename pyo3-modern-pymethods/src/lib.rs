//! `pyo3_modern_pymethods`: Python awaitables in Rust, written with today's PyO3 —
//! `#[pyclass]` + `#[pymethods]` with the coroutine protocol's magic methods
//! (`__await__`, `__iter__`, `__next__`) next to `send`/`throw`/`close`, and the `Bound` API.
//!
//! * [`driver`]: `drive(awaitable)`, `await` re-created in Rust without an event loop.
//! * [`coroutine`]: `RustCoroutine`, a coroutine class written in Rust (`ready`, `countdown`).
//! * [`delegate`]: `delegate(awaitable)`, `await` re-implemented in Rust inside a loop.
//! * [`bridge`] and [`futures`]: Rust futures as Python awaitables (`RustFuture`,
//!   `sleep`, `count_primes`, `live_futures`); [`wake`]: the bridge's wake-up protocol,
//!   plain Rust (model-checked with loom by the workspace's `wake-model` crate).
//! * [`stream`]: Rust streams as Python async iterators (`RustStream`, `ticks`, `primes`,
//!   `live_streams`), and [`semaphore`]: an async context manager (`Semaphore`), both
//!   built on `bridge`; [`sieve`]: the prime sieve `count_primes` and `primes` share.
//! * [`baselines`]: the same futures as the ecosystem writes them (PyO3 `async fn`,
//!   pyo3-async-runtimes), to compare against.
//! * [`recipe`]: `Echo`, the guide's first recipe: the smallest awaitable class.
//! * [`slots`]: the type slots filled by hand, the hot path of every step.
//! * [`protocol`]: what every coroutine-like class shares (states, errors, `throw`'s
//!   exception, panics, [`protocol::Step`], `await`'s iterator and one step of it).
//! * [`compat`]: what differs between CPython versions.
//!
//! The dependencies run one way: this file wires everything; the feature modules use
//! `slots`, `protocol` and `compat` (`futures`, `stream`, `semaphore` and `baselines` are
//! built on `bridge`; `sieve` is plain Rust that anything may use);
//! `slots` uses `protocol`, which uses `compat`. Each file has a namesake in the sibling
//! crate `pyo3-0.12-pyproto`, which builds the same module with the PyO3 0.12 idioms of
//! late 2020.

pub mod baselines;
pub mod bridge;
pub mod compat;
pub mod coroutine;
pub mod delegate;
pub mod driver;
pub mod futures;
pub mod protocol;
pub mod recipe;
pub mod semaphore;
pub mod sieve;
pub mod slots;
pub mod stream;
pub mod wake;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::RustFuture;
use crate::coroutine::RustCoroutine;
use crate::delegate::RustAwait;
use crate::recipe::Echo;
use crate::semaphore::Semaphore;
use crate::stream::RustStream;

// ANCHOR: module
/// Python awaitables written in Rust with PyO3's #[pymethods].
#[pymodule(gil_used = false)]
fn pyo3_modern_pymethods(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("PYO3_VERSION", env!("PYO3_VERSION"))?;
    m.add("ERA", "pymethods")?;
    driver::register(m)?; // drive
    coroutine::register(m)?; // ready, countdown
    delegate::register(m)?; // delegate
    futures::register(m)?; // sleep, count_primes, live_futures
    stream::register(m)?; // ticks, primes, live_streams
    m.add_submodule(&baselines::module(m.py())?)?;

    m.add_class::<RustCoroutine>()?;
    m.add_class::<RustAwait>()?;
    m.add_class::<RustFuture>()?;
    m.add_class::<RustStream>()?;
    m.add_class::<Semaphore>()?;
    m.add_class::<Echo>()?;
    // The hand-filled slots of each step (`slots`): a test checks they are the ones used.
    let fast_slots = PyDict::new(m.py());
    fast_slots.set_item("RustCoroutine", slots::install::<RustCoroutine>(m.py())?)?;
    fast_slots.set_item("RustAwait", slots::install::<RustAwait>(m.py())?)?;
    fast_slots.set_item("RustFuture", slots::install::<RustFuture>(m.py())?)?;
    m.setattr("_FAST_SLOTS", fast_slots)?;
    // Private (not in `__all__`): the tests' way to make the next slot step panic.
    m.setattr(
        "_panic_next_step",
        wrap_pyfunction!(slots::panic_next_step, m)?,
    )?;
    // asyncio.iscoroutine, create_task, ensure_future and gather accept them.
    for class in [
        m.py().get_type::<RustCoroutine>(),
        m.py().get_type::<RustAwait>(),
        m.py().get_type::<RustFuture>(),
    ] {
        compat::register_coroutine_abc(&class)?;
    }
    Ok(())
}
// ANCHOR_END: module
