"""The guide's examples, each a function of an era module ``m``.

``tools/compare.py`` runs every example against both eras and prints what each returned
or raised, side by side; the shared suite runs them too. The guide includes them by anchor.
"""

from __future__ import annotations

import asyncio
import types

EXAMPLES = []


def example(returns=None, raises=None):
    """Registers an example with what it must return, or the exception it must raise
    (checked by shared-tests/test_examples.py in every era)."""

    def register(func):
        func.returns, func.raises = returns, raises
        EXAMPLES.append(func)
        return func

    return register


# ANCHOR: drive_native
async def add(a, b):
    await asyncio.sleep(0)  # a bare `yield`: "let others run"
    return a + b


@example(returns=3)
def drive_a_native_coroutine(m):
    """`drive` runs an `async def` to completion with no event loop."""
    return m.drive(add(1, 2))
    # ANCHOR_END: drive_native


# ANCHOR: drive_kinds
@types.coroutine
def old_style():
    yield
    return "generator-based"


class HasAwait:
    def __await__(self):
        yield
        return "__await__"


@example(returns=["ab", "generator-based", "__await__", "rust"])
def drive_every_kind_of_awaitable(m):
    """Native coroutines, `types.coroutine` generators, `__await__` objects, Rust coroutines."""
    return [
        m.drive(add("a", "b")),
        m.drive(old_style()),
        m.drive(HasAwait()),
        m.drive(m.countdown(3, "rust")),
    ]
    # ANCHOR_END: drive_kinds


@example(raises=TypeError)
def drive_a_non_awaitable(m):
    """What `await 42` would raise, raised by `drive(42)`."""
    return m.drive(42)


# ANCHOR: drive_needs_loop
@example(raises=RuntimeError)
def drive_something_that_needs_a_loop(m):
    """An awaitable that yields an asyncio Future needs an event loop."""
    loop = asyncio.new_event_loop()
    try:

        async def wait_for_future():
            await loop.create_future()

        return m.drive(wait_for_future())
    finally:
        loop.close()
    # ANCHOR_END: drive_needs_loop


# ANCHOR: asyncio_run
@example(returns="hello from Rust")
def run_a_rust_coroutine(m):
    """A `RustCoroutine` is a `collections.abc.Coroutine`: `asyncio.run` takes it."""
    return asyncio.run(m.ready("hello from Rust"))


@example(returns=["rust", 42])
def gather_rust_and_native(m):
    """Rust coroutines interleave with native ones in one event loop."""

    async def main():
        return await asyncio.gather(m.countdown(2, "rust"), add(20, 22))

    return asyncio.run(main())
    # ANCHOR_END: asyncio_run


# ANCHOR: protocol
@example(returns=[None, None, "StopIteration('done')"])
def step_by_hand(m):
    """The coroutine protocol, one call at a time."""
    coro = m.countdown(2, "done")
    steps = [coro.send(None), coro.send(None)]
    try:
        coro.send(None)
    except StopIteration as stop:
        steps.append(f"StopIteration({stop.value!r})")
    return steps


@example(raises=RuntimeError)
def reuse_a_finished_coroutine(m):
    """Like a native coroutine, a finished one cannot run again."""
    coro = m.ready(1)
    asyncio.run(coro)
    return coro.send(None)


@example(raises=TypeError)
def send_a_value_before_starting(m):
    """Like a native coroutine, the first step must send None."""
    return m.ready(1).send("too early")


@example(raises=ValueError)
def throw_into_a_coroutine(m):
    """`throw` raises the exception out of the coroutine and finishes it."""
    coro = m.countdown(5, None)
    coro.send(None)
    return coro.throw(ValueError("thrown in"))
    # ANCHOR_END: protocol
