"""No Rust panic unwinds out of a hand-filled slot (``slots.rs``, both eras).

A panic that reached the ``extern "C"`` boundary of ``tp_iternext`` or ``am_send`` would
abort the process (or, with older Rust, unwind through CPython's C frames). Each slot
body runs inside ``catch_unwind`` instead, and a panic leaves as PyO3's
``PanicException`` with the panic's message, set as the Python error of a failed step.

Each module has a private hook for this, ``_panic_next_step(message)``: the next step
through a hand-filled slot on this thread panics with ``message`` inside the slot
function, after the class's own step returned, where the slot builds the
``StopIteration`` or the result. These tests arm it, check that the step raises
``PanicException('boom')``, that the interpreter goes on, and that the following step
behaves normally.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import subprocess
import sys
import textwrap

import pytest

from helpers import PYGEN_NEXT, PYGEN_RETURN, native_countdown, outcome, pyiter_send_status

pytestmark = [
    pytest.mark.skipif(sys.implementation.name != "cpython", reason="the slots are CPython's"),
    # Part of the core that the *-valgrind tox environments run under memcheck.
    pytest.mark.valgrind,
]

HAS_AM_SEND = sys.version_info >= (3, 10)


def panic_next_step(era, message="boom"):
    """Arms the compiled module's private hook (it is not in ``__all__``)."""
    native = importlib.import_module(f"{era.__name__}.{era.__name__}")
    native._panic_next_step(message)


def assert_panic(info, message="boom"):
    assert type(info.value).__name__ == "PanicException"
    assert str(info.value) == message


def pyiter_send_error(coro, value):
    """``PyIter_Send`` that is expected to fail (``PYGEN_ERROR``), with ``*result``
    filled beforehand: returns the exception raised and whether the slot set
    ``*result`` to NULL, as CPython requires on an error (debug builds assert it)."""
    send = ctypes.pythonapi.PyIter_Send
    send.restype = ctypes.c_int
    send.argtypes = [ctypes.py_object, ctypes.py_object, ctypes.POINTER(ctypes.py_object)]
    result = ctypes.py_object("not written")
    with pytest.raises(BaseException) as info:
        send(coro, value, ctypes.byref(result))
    try:
        result.value  # noqa: B018 - reading is the check
    except ValueError:  # "PyObject is NULL"
        return info, True
    return info, False


def test_the_interpreter_survives_a_panic_in_a_slot(era):
    """In a fresh interpreter, so that a panic reaching the C boundary (an abort) fails
    this test rather than ending the test run."""
    script = textwrap.dedent(
        """
        import importlib, sys
        era = importlib.import_module(sys.argv[1])
        importlib.import_module(f"{sys.argv[1]}.{sys.argv[1]}")._panic_next_step("boom")
        try:
            next(era.ready(1).__await__())
        except BaseException as exc:
            print(type(exc).__name__, exc)
        print(era.drive(era.countdown(3, "alive")))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, era.__name__],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["PanicException boom", "alive"]


def test_tp_iternext(era):
    panic_next_step(era)
    with pytest.raises(BaseException) as info:
        next(era.ready(1).__await__())
    assert_panic(info)
    assert outcome(lambda: next(era.ready(2).__await__())) == ("return", 2)


def test_tp_iternext_then_the_same_coroutine_goes_on(era):
    """The panic comes after the step: the coroutine yielded, and resumes normally."""
    coro = era.countdown(1, "value")
    panic_next_step(era)
    with pytest.raises(BaseException) as info:
        next(coro)
    assert_panic(info)
    assert outcome(lambda: next(coro)) == ("return", "value")
    assert outcome(lambda: next(coro))[:2] == ("raise", RuntimeError)


def test_tp_iternext_of_a_delegate(era):
    """The panic in ``RustAwait``'s own slot, after it stepped a native coroutine."""
    coro = era.delegate(native_countdown(1, "value"))
    panic_next_step(era)
    with pytest.raises(BaseException) as info:
        next(coro)
    assert_panic(info)
    assert outcome(lambda: next(coro)) == ("return", "value")


def test_tp_iternext_inside_a_delegate(era):
    """The panic in the slot of the ``RustCoroutine`` a ``RustAwait`` steps: it leaves
    the outer step as ``PanicException``, which ends the ``RustAwait`` as any exception
    ends a coroutine (it is neither left running nor taken apart)."""
    coro = era.delegate(era.countdown(1, "value"))
    panic_next_step(era)
    with pytest.raises(BaseException) as info:
        next(coro)
    assert_panic(info)
    assert outcome(lambda: next(coro))[:3] == (
        "raise",
        RuntimeError,
        "cannot reuse already awaited coroutine",
    )
    assert outcome(lambda: next(era.delegate(era.ready(3)))) == ("return", 3)


@pytest.mark.skipif(not HAS_AM_SEND, reason="am_send exists from CPython 3.10")
@pytest.mark.parametrize("kind", ["coroutine", "delegate"])
def test_am_send(era, kind):
    def make():
        if kind == "coroutine":
            return era.countdown(1, "value")
        return era.delegate(native_countdown(1, "value"))

    coro = make()
    panic_next_step(era)
    info, result_is_null = pyiter_send_error(coro, None)
    assert_panic(info)
    assert result_is_null
    assert pyiter_send_status(coro, None) == (PYGEN_RETURN, "value")
    fresh = make()
    assert pyiter_send_status(fresh, None) == (PYGEN_NEXT, None)
    assert pyiter_send_status(fresh, None) == (PYGEN_RETURN, "value")


@pytest.mark.skipif(not HAS_AM_SEND, reason="am_send exists from CPython 3.10")
@pytest.mark.parametrize("kind", ["coroutine", "delegate"])
def test_am_send_sets_result_to_null_on_any_error(era, kind):
    """Not only for a panic: ``PYGEN_ERROR`` always comes with ``*result == NULL``."""
    coro = era.ready(1) if kind == "coroutine" else era.delegate(era.ready(1))
    coro.close()
    info, result_is_null = pyiter_send_error(coro, None)
    assert type(info.value) is RuntimeError
    assert result_is_null


def test_await_inside_asyncio_run(era):
    """``await`` steps through the slots too (``tp_iternext``, or ``am_send`` where the
    interpreter sends that way): the awaiting coroutine catches the ``PanicException``
    and goes on, and so does the loop."""

    async def main():
        caught = []
        for awaitable in (
            lambda: era.ready(1),
            lambda: era.countdown(2, 1),
            lambda: era.delegate(native_countdown(1, 1)),
            lambda: era.delegate(era.ready(1)),
        ):
            panic_next_step(era)
            try:
                await awaitable()
            except BaseException as exc:  # noqa: BLE001 - compared below
                caught.append((type(exc).__name__, str(exc)))
        await asyncio.sleep(0)
        after = (
            await era.ready("ready"),
            await era.countdown(2, "countdown"),
            await era.delegate(era.countdown(1, "delegate")),
        )
        return caught, after

    caught, after = asyncio.run(main())
    assert caught == [("PanicException", "boom")] * 4
    assert after == ("ready", "countdown", "delegate")
