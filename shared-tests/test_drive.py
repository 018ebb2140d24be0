"""API reference, section 1 (docs/src/reference.md): ``drive(awaitable)``, await from Rust
with no event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import types

import pytest

from helpers import bare_yield, native_countdown, native_ready

# Part of the core that the *-valgrind tox environments run under memcheck.
pytestmark = pytest.mark.valgrind


def native_await_error(obj) -> TypeError:
    """The TypeError this interpreter's own ``await`` raises for ``obj``."""

    async def awaiting():
        await obj

    coro = awaiting()
    with pytest.raises(TypeError) as info:
        coro.send(None)
    return info.value


class AwaitableObject:
    """An object whose type has ``__await__`` (a generator method)."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        yield
        return self.value


@types.coroutine
def generator_coroutine(value):
    yield
    yield
    return value


def test_native_coroutine(era):
    assert era.drive(native_countdown(5, "done")) == "done"
    assert era.drive(native_ready(None)) is None


def test_return_value_kept_exactly(era):
    """Values that StopIteration would mangle without care: tuples, exceptions, None."""
    for value in [(1, 2), (), ValueError("as a value"), None, [1], StopIteration(3)]:
        assert era.drive(native_ready(value)) is value
        assert era.drive(era.ready(value)) is value


def test_generator_based_coroutine(era):
    assert era.drive(generator_coroutine(42)) == 42


def test_object_with_dunder_await(era):
    assert era.drive(AwaitableObject("obj")) == "obj"


def test_rust_coroutines(era):
    assert era.drive(era.ready(7)) == 7
    assert era.drive(era.countdown(1000, "n")) == "n"


def test_asyncio_sleep_zero_needs_no_loop(era):
    async def napping():
        for _ in range(3):
            await asyncio.sleep(0)
        return "rested"

    assert era.drive(napping()) == "rested"


def test_exception_propagates_as_same_object(era):
    error = KeyError("inner")

    async def failing():
        await bare_yield()
        raise error

    with pytest.raises(KeyError) as info:
        era.drive(failing())
    assert info.value is error
    # The traceback still reaches the frame that raised it.
    names = [entry.name for entry in info.traceback]
    assert "failing" in names


@pytest.mark.parametrize("obj", [1, "text", None, object(), [1, 2]])
def test_non_awaitable_type_error_worded_like_cpython(era, obj):
    with pytest.raises(TypeError) as info:
        era.drive(obj)
    assert str(info.value) == str(native_await_error(obj))


def test_plain_generator_is_not_awaitable(era):
    def plain():
        yield

    gen = plain()
    with pytest.raises(TypeError) as info:
        era.drive(gen)
    assert str(info.value) == str(native_await_error(plain()))


def test_dunder_await_returning_non_iterator(era):
    class Bad:
        def __await__(self):
            return 5

    with pytest.raises(TypeError) as info:
        era.drive(Bad())
    assert str(info.value) == str(native_await_error(Bad()))


def test_dunder_await_returning_coroutine(era):
    inner = native_ready(1)

    class Bad:
        def __await__(self):
            return inner

    try:
        with pytest.raises(TypeError) as info:
            era.drive(Bad())
        assert str(info.value) == str(native_await_error(Bad()))
    finally:
        inner.close()  # never awaited, on purpose


def test_yielded_future_needs_event_loop(era):
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        finalized = []

        async def waits_for_future():
            try:
                await future
            finally:
                finalized.append(True)

        with pytest.raises(RuntimeError) as info:
            era.drive(waits_for_future())
        message = str(info.value)
        assert repr(future) in message
        assert "event loop" in message
        assert "await" in message
        # drive closed the awaitable: its finally block ran.
        assert finalized == [True]
    finally:
        loop.close()


def test_yielded_value_with_failing_repr(era):
    class NoRepr:
        def __repr__(self):
            raise ValueError("no repr")

    with pytest.raises(RuntimeError, match="NoRepr"):
        era.drive(bare_yield(NoRepr()))


def test_close_error_is_chained(era):
    async def refuses_to_close():
        try:
            await bare_yield("not none")
        except GeneratorExit:
            raise ValueError("refused") from None

    with pytest.raises(RuntimeError) as info:
        era.drive(refuses_to_close())
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_ctrl_c_stops_endless_drive(era):
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys, threading, time
        import {era.__name__} as era

        async def forever():
            while True:
                await asyncio.sleep(0)

        # Python leaves SIGINT alone if it starts ignored (as in a shell's background job).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            era.drive(forever())
        except KeyboardInterrupt:
            print("interrupted")
            sys.exit(0)
        sys.exit(3)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "interrupted"
