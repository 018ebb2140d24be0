"""API reference, section 3 (docs/src/reference.md): ``RustCoroutine``, a coroutine class
written in Rust."""

from __future__ import annotations

import asyncio
import collections.abc
import gc
import random
import sys
import warnings

import pytest

from helpers import aborts_interpreter, apply, native_countdown, outcome, random_operation

# Part of the core that the *-valgrind tox environments run under memcheck.
pytestmark = pytest.mark.valgrind

REUSE = "cannot reuse already awaited coroutine"
JUST_STARTED = "can't send non-None value to a just-started coroutine"


def test_is_a_coroutine(era):
    coro = era.ready(1)
    assert isinstance(coro, collections.abc.Coroutine)
    assert isinstance(coro, collections.abc.Awaitable)
    assert asyncio.iscoroutine(coro)
    assert coro.__await__() is coro
    assert iter(coro) is coro
    coro.close()


def test_not_constructible_from_python(era):
    with pytest.raises(TypeError):
        era.RustCoroutine()


def test_ready_returns_on_first_step(era):
    coro = era.ready("value")
    assert outcome(lambda: coro.send(None)) == ("return", "value")
    assert outcome(lambda: coro.send(None))[:3] == ("raise", RuntimeError, REUSE)


@pytest.mark.skipif(
    sys.implementation.name != "cpython",
    reason="gc.is_tracked is CPython's (PyPy's gc module has none)",
)
def test_every_coroutine_is_tracked_by_the_collector(era):
    """Also one made where an earlier one was freed (see
    ``test_futures.test_every_awaitable_is_tracked_by_the_collector``)."""
    for _ in range(3):
        made = [era.ready(i) for i in range(100)] + [era.countdown(1, i) for i in range(100)]
        assert all(gc.is_tracked(coroutine) for coroutine in made)
        for coroutine in made:
            coroutine.close()
        del made


def test_countdown_yields_none_n_times(era):
    coro = era.countdown(3, "end")
    assert [next(coro) for _ in range(3)] == [None, None, None]
    assert outcome(lambda: next(coro)) == ("return", "end")
    assert outcome(lambda: next(coro))[:3] == ("raise", RuntimeError, REUSE)


def test_countdown_rejects_negative(era):
    with pytest.raises(ValueError):
        era.countdown(-1, None)
    with pytest.raises(TypeError):
        era.countdown("3", None)


def test_send_non_none_before_start(era):
    coro = era.countdown(1, "v")
    assert outcome(lambda: coro.send(1))[:3] == ("raise", TypeError, JUST_STARTED)
    # Still unstarted: a proper start works, and later sends may carry values.
    assert coro.send(None) is None
    assert outcome(lambda: coro.send("anything")) == ("return", "v")


def test_throw_finishes_it(era):
    coro = era.countdown(5, None)
    coro.send(None)
    error = KeyError("thrown")
    with pytest.raises(KeyError) as info:
        coro.throw(error)
    assert info.value is error
    assert outcome(lambda: coro.send(None))[:3] == ("raise", RuntimeError, REUSE)


def test_close_is_quiet_and_final(era):
    coro = era.countdown(5, None)
    coro.send(None)
    assert coro.close() is None
    assert coro.close() is None
    assert outcome(lambda: coro.send(None))[:3] == ("raise", RuntimeError, REUSE)


def test_throw_bad_arguments(era):
    coro = era.countdown(2, None)
    with pytest.raises(TypeError, match="deriving from BaseException"):
        coro.throw(1)
    with pytest.raises(TypeError, match="deriving from BaseException"):
        coro.throw(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(TypeError, match="may not have a separate value"):
            coro.throw(ValueError("x"), 1)
        with pytest.raises(TypeError, match="traceback"):
            coro.throw(ValueError, None, "not a traceback")
    # Bad arguments leave it runnable.
    assert coro.send(None) is None


def test_three_argument_throw(era):
    coro = era.countdown(2, None)
    coro.send(None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as info:
            coro.throw(ValueError, ("a", "b"))
    assert info.value.args == ("a", "b")
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecated) == (1 if sys.version_info >= (3, 12) else 0)


# --- randomized comparison against a native async def coroutine ----------------------


# ANCHOR: stop_iteration
def test_throw_stop_iteration(era):
    """PEP 479: a StopIteration thrown into a suspended coroutine leaves it as
    RuntimeError. Into a just-started one, CPython 3.12+ lets it out unchanged (the frame
    has not reached the code that converts it); the Rust coroutine follows each version."""
    started = era.countdown(2, None)
    started.send(None)
    assert outcome(lambda: started.throw(StopIteration("s"))) == (
        "raise",
        RuntimeError,
        "coroutine raised StopIteration",
        StopIteration,
    )
    with pytest.raises(RuntimeError) as info:
        again = era.countdown(2, None)
        again.send(None)
        again.throw(StopIteration("x"))
    assert info.value.__context__ is info.value.__cause__
    native = native_countdown(2, None)
    try:
        if not aborts_interpreter(native, ("throw", StopIteration("s"))):
            # (Skipped on CPython's debug builds 3.12+, which abort: gh-152685.)
            assert outcome(lambda: era.countdown(2, None).throw(StopIteration("s"))) == outcome(
                lambda: native.throw(StopIteration("s"))
            )
    finally:
        native.close()
    # ANCHOR_END: stop_iteration


@pytest.mark.parametrize("seed", range(300))
def test_matches_native_coroutine(era, seed):
    rng = random.Random(seed)
    n = rng.randrange(4)
    value = rng.choice([None, 0, "v", (1, 2)])
    ours, native = era.countdown(n, value), native_countdown(n, value)
    history = []
    try:
        for _ in range(rng.randrange(1, 8)):
            op = random_operation(rng)
            history.append(op)
            assert apply(ours, op) == apply(native, op), history
    finally:
        native.close()
        ours.close()


# --- under asyncio ------------------------------------------------------------------


def test_asyncio_run(era):
    assert asyncio.run(era.ready(1)) == 1
    assert asyncio.run(era.countdown(10, "ten")) == "ten"


def test_awaited_in_async_def(era):
    async def main():
        return await era.ready(5) + await era.countdown(3, 6)

    assert asyncio.run(main()) == 11


def test_create_task_and_ensure_future(era):
    async def main():
        task = asyncio.create_task(era.countdown(3, "task"))
        future = asyncio.ensure_future(era.ready("future"))
        return await task, await future

    assert asyncio.run(main()) == ("task", "future")


def test_countdowns_interleave_with_other_tasks(era):
    order = []

    async def native(label):
        for i in range(3):
            order.append((label, i))
            await asyncio.sleep(0)

    async def main():
        rust = asyncio.ensure_future(era.countdown(3, "rust"))
        await asyncio.gather(native("a"), rust)
        return rust.result()

    assert asyncio.run(main()) == "rust"
    assert order == [("a", 0), ("a", 1), ("a", 2)]


def test_gather_a_thousand_countdowns(era):
    async def main():
        return await asyncio.gather(*(era.countdown(i % 7, i) for i in range(1000)))

    assert asyncio.run(main()) == list(range(1000))


def test_cancelled_task(era):
    async def main():
        task = asyncio.create_task(era.countdown(1000, None))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.mark.skipif(not hasattr(sys, "getrefcount"), reason="needs sys.getrefcount")
def test_reference_counts_return_to_start(era):
    value = object()

    async def many():
        for _ in range(1000):
            await era.ready(value)
            await era.countdown(2, value)
        return value

    era.drive(many())  # warm-up
    before = sys.getrefcount(value)
    for _ in range(5):
        assert era.drive(many()) is value
        assert asyncio.run(many()) is value
    assert sys.getrefcount(value) == before
