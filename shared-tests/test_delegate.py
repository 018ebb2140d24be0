"""API reference, section 2 (docs/src/reference.md): ``delegate(awaitable)``, ``await``
re-implemented in Rust (PEP 380)."""

from __future__ import annotations

import asyncio
import functools
import random
import sys

import pytest

from helpers import (
    Marker,
    aborts_interpreter,
    apply,
    native_countdown,
    native_ready,
    outcome,
    random_operation,
)

# Part of the core that the *-valgrind tox environments run under memcheck (not the tests
# marked slow).
pytestmark = pytest.mark.valgrind


def scripted(script, log):
    """An inner iterator that follows ``script`` and logs what it is sent or thrown.

    Each step is ``("yield", value, on_throw)`` with ``on_throw`` one of ``"catch"``
    (log it and go on), ``"reraise"``, ``"return"`` (return from the except block);
    ``("return", value)``; or ``("raise",)``.
    """
    for action in script:
        if action[0] == "return":
            return action[1]
        if action[0] == "raise":
            raise Marker("scripted failure")
        try:
            sent = yield action[1]
            log.append(("sent", sent))
        except GeneratorExit:
            log.append(("closed",))
            raise
        except BaseException as exc:
            log.append(("thrown", type(exc).__name__))
            if action[2] == "reraise":
                raise
            if action[2] == "return":
                return "returned after throw"
    return "end of script"


class ScriptedAwaitable:
    def __init__(self, script, log):
        self.script, self.log = script, log

    def __await__(self):
        return scripted(self.script, self.log)


class BareIterator:
    """An inner iterator with no send/throw/close."""

    def __init__(self, script, log):
        self.items = [a[1] for a in script if a[0] == "yield"]
        self.log = log

    def __iter__(self):
        return self

    def __next__(self):
        self.log.append(("next",))
        if not self.items:
            raise StopIteration("bare end")
        return self.items.pop(0)


class BareAwaitable(ScriptedAwaitable):
    def __await__(self):
        return BareIterator(self.script, self.log)


async def native_await(awaitable):
    return await awaitable


def random_script(rng):
    steps = [
        ("yield", rng.choice([None, 1, "y"]), rng.choice(["catch", "reraise", "return"]))
        for _ in range(rng.randrange(4))
    ]
    steps.append(rng.choice([("return", rng.choice([None, 0, (1, 2)])), ("raise",)]))
    return steps


@pytest.mark.parametrize("inner", [ScriptedAwaitable, BareAwaitable])
@pytest.mark.parametrize("seed", range(200))
def test_matches_yield_from(era, seed, inner):
    rng = random.Random(seed)
    script = random_script(rng)
    our_log, native_log = [], []
    ours = era.delegate(inner(script, our_log))
    native = native_await(inner(script, native_log))
    history = []
    try:
        for _ in range(rng.randrange(1, 8)):
            op = random_operation(rng, stop_iteration=True)
            if aborts_interpreter(native, op):
                continue  # gh-152685 on debug CPython 3.12+ (helpers.aborts_interpreter)
            history.append(op)
            assert apply(ours, op) == apply(native, op), (script, history)
            assert our_log == native_log, (script, history)
    finally:
        native.close()
        ours.close()


def test_non_awaitable_raises_at_call(era):
    with pytest.raises(TypeError, match="await"):
        era.delegate(3)


# ANCHOR: every_kind
def test_awaits_every_kind(era):
    async def main():
        return [
            await era.delegate(native_ready("native")),
            await era.delegate(asyncio.sleep(0.001, "sleep")),
            await era.delegate(era.countdown(3, "rust")),
            await era.delegate(era.delegate(era.ready("nested"))),
            await era.delegate(ScriptedAwaitable([("yield", None, "reraise"), ("return", 5)], [])),
        ]

    assert asyncio.run(main()) == ["native", "sleep", "rust", "nested", 5]
    # ANCHOR_END: every_kind


def test_is_a_coroutine_for_asyncio(era):
    async def main():
        return await asyncio.gather(
            era.delegate(native_countdown(3, 1)), era.delegate(era.ready(2))
        )

    assert asyncio.run(main()) == [1, 2]
    assert asyncio.run(era.delegate(asyncio.sleep(0, "run"))) == "run"


# ANCHOR: cancellation
def test_cancellation_reaches_inner(era):
    seen = []

    async def inner():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main():
        task = asyncio.ensure_future(era.delegate(inner()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled"]
    # ANCHOR_END: cancellation


def test_reuse_after_finish(era):
    awaitable = era.delegate(native_ready(1))
    assert outcome(lambda: awaitable.send(None)) == ("return", 1)
    assert outcome(lambda: awaitable.send(None))[:2] == ("raise", RuntimeError)


def test_resumed_from_inside_its_own_step(era):
    holder = []

    class Reentrant:
        def __iter__(self):
            return self

        def __next__(self):
            return holder[0].send(None)

    class Awaitable:
        def __await__(self):
            return Reentrant()

    holder.append(era.delegate(Awaitable()))
    with pytest.raises(ValueError, match="already executing"):
        holder[0].send(None)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [10_000, 300_000])
def test_deep_nesting_never_overflows_the_c_stack(era, depth):
    """Each level steps the next from C. Up to 3.13 the recursion limit stops the chain
    early; from 3.14 CPython guards the real C stack instead, so 10,000 levels may
    simply work, but 300,000 must still end in RecursionError, never a crash."""
    awaitable = era.ready(1)
    for _ in range(depth):
        awaitable = era.delegate(awaitable)
    try:
        result = outcome(functools.partial(awaitable.send, None))
        if depth > 10_000 or sys.version_info < (3, 14):
            assert result[:2] == ("raise", RecursionError)
        else:
            assert result in [("return", 1)] or result[:2] == ("raise", RecursionError)
    finally:
        del awaitable


def test_resumed_from_another_thread_while_running(era):
    """Two threads at once: the second gets what a native coroutine gives, ValueError."""
    import threading
    import time

    entered = threading.Event()

    class Slow:
        def __iter__(self):
            return self

        def __next__(self):
            entered.set()
            time.sleep(0.2)  # releases the interpreter lock mid-step
            return None

    class Awaitable:
        def __await__(self):
            return Slow()

    def race(coro):
        errors = []

        def step():
            try:
                coro.send(None)
            except BaseException as exc:  # noqa: BLE001 - compared below
                errors.append(exc)

        entered.clear()
        first = threading.Thread(target=step)
        first.start()
        entered.wait(5)
        step()  # while the first thread is inside the step
        first.join(5)
        return errors

    async def native():
        return await Awaitable()

    native_coro = native()
    native_errors = race(native_coro)
    native_coro.close()
    ours = era.delegate(Awaitable())
    our_errors = race(ours)
    ours.close()
    assert [type(e) for e in our_errors] == [type(e) for e in native_errors] == [ValueError]
    assert "already executing" in str(our_errors[0])


async def _raises_at_once():
    raise Marker("raised")


# Regression (both eras): on an exception, the `am_send` slot returned PYGEN_ERROR but
# left `*result` as it was; a debug CPython 3.11 aborts at `assert(retval == NULL)` in
# its eval loop on exactly this `await`. On every build the slot is also called directly,
# with `*result` set beforehand, to see it cleared.
def test_await_delegate_of_a_raising_coroutine(era):
    async def main():
        with pytest.raises(Marker, match="raised"):
            await era.delegate(_raises_at_once())
        return "survived"

    assert asyncio.run(main()) == "survived"


@pytest.mark.skipif(
    sys.version_info < (3, 10) or sys.implementation.name != "cpython",
    reason="PyIter_Send (am_send) is CPython 3.10+",
)
@pytest.mark.parametrize("make", ["delegate", "countdown"])
def test_am_send_error_clears_result(era, make):
    import ctypes

    send = ctypes.pythonapi.PyIter_Send
    send.restype = ctypes.c_int
    send.argtypes = [ctypes.py_object, ctypes.py_object, ctypes.POINTER(ctypes.c_void_p)]
    if make == "delegate":
        coro = era.delegate(_raises_at_once())
        value = None
    else:
        coro = era.countdown(1, None)
        value = "not None into a just-started coroutine"  # a TypeError
    result = ctypes.c_void_p(id(coro))  # not NULL: the slot must clear it
    with pytest.raises((Marker, TypeError)):
        send(coro, value, ctypes.byref(result))
    assert result.value is None
    coro.close()
