"""Helpers shared by the tests: native reference coroutines and outcome recording."""

from __future__ import annotations

import ctypes
import sys
import types


@types.coroutine
def bare_yield(value=None):
    """Suspend once, handing ``value`` to the runner (``None``: just let others run)."""
    return (yield value)


class _YieldNoneOnce:
    """An iterator that ignores what is sent and has no ``throw``/``close``: ``yield
    from`` over it raises a thrown exception in the delegating coroutine's own frame."""

    def __init__(self):
        self.done = False

    def __iter__(self):
        return self

    def __next__(self):
        if self.done:
            raise StopIteration
        self.done = True

    def send(self, _value):
        return self.__next__()


class suspend:
    """``await suspend()`` suspends once with ``None``; what is thrown in lands in the
    awaiting coroutine itself (not in a generator in between)."""

    def __await__(self):
        return _YieldNoneOnce()


async def native_countdown(n, value):
    """The native ``async def`` twin of ``countdown(n, value)``."""
    for _ in range(n):
        await suspend()
    return value


async def native_ready(value):
    return value


def outcome(action, *, stop_args=False):
    """Run ``action()`` and describe what happened, comparably across implementations
    (with ``stop_args``, a return also records the ``StopIteration``'s ``args``)."""
    try:
        result = action()
    except StopIteration as stop:
        return ("return", stop.value, stop.args) if stop_args else ("return", stop.value)
    except BaseException as exc:  # noqa: BLE001 - every outcome is recorded
        cause = exc.__cause__
        try:
            text = str(exc)
        except Exception:  # noqa: BLE001 - an exception whose __str__ raises
            text = "<str() failed>"
        return ("raise", type(exc), text, type(cause) if cause is not None else None)
    return ("yield", result)


class Marker(Exception):
    """An exception of the tests' own, to throw in."""


# The steps of the coroutine protocol the comparisons replay on two implementations:
# the methods, and the C slots the interpreter and asyncio step through — ``next`` of the
# ``__await__()`` iterator (``tp_iternext``) and, from 3.10, ``PyIter_Send`` (``am_send``).
OPERATIONS = [
    ("send", None),
    ("send", None),
    ("send", "v"),
    ("next",),
    ("throw", Marker("thrown")),
    ("throw", Marker),
    ("throw", GeneratorExit()),
    ("throw", KeyboardInterrupt()),
    ("close",),
]
if sys.version_info >= (3, 10) and sys.implementation.name == "cpython":
    OPERATIONS += [("pyiter_send", None), ("pyiter_send", "v")]


PYGEN_RETURN, PYGEN_NEXT = 0, 1


def pyiter_send_status(coro, value):
    """``PyIter_Send(coro, value)`` through ctypes, as asyncio's Task steps a coroutine:
    ``(PYGEN_NEXT, yielded)`` or ``(PYGEN_RETURN, returned)``; on ``PYGEN_ERROR`` the
    exception it set is raised."""
    send = ctypes.pythonapi.PyIter_Send
    send.restype = ctypes.c_int
    send.argtypes = [ctypes.py_object, ctypes.py_object, ctypes.POINTER(ctypes.py_object)]
    result = ctypes.py_object()
    status = send(coro, value, ctypes.byref(result))  # PYGEN_ERROR raises here
    return status, result.value


def pyiter_send(coro, value):
    """``pyiter_send_status`` as ``send`` reports it: a yielded value is returned, a
    returned one raised as ``StopIteration``."""
    status, result = pyiter_send_status(coro, value)
    if status == PYGEN_RETURN:
        raise StopIteration(result)
    return result


def random_operation(rng, *, stop_iteration=False):
    """One random step of the coroutine protocol, to replay on two implementations."""
    extra = [("throw", StopIteration("stop"))] if stop_iteration else []
    return rng.choice(OPERATIONS + extra)


def apply(coro, op):
    """Performs ``op`` (from ``random_operation``) on ``coro``; returns its outcome."""
    actions = {
        "send": lambda: coro.send(op[1]),
        "next": lambda: next(coro.__await__()),
        "pyiter_send": lambda: pyiter_send(coro, op[1]),
        "throw": lambda: coro.throw(fresh(op[1])),
        "close": coro.close,
    }
    return outcome(actions[op[0]], stop_args=op[0] != "pyiter_send")


def fresh(thrown):
    """A new instance like ``thrown`` if it is one (a class is thrown as it is).

    The instances of ``OPERATIONS`` are shared by every test: thrown as they are, each
    throw would add a traceback entry to the same object (keeping the frames alive), which
    a reference-leak hunt (``pytest-leaks``, ``-R``) reports as growth of the suite's own.
    """
    if isinstance(thrown, BaseException):
        return type(thrown)(*thrown.args)
    return thrown


# CPython's own debug builds 3.12+ abort (an assertion in the interpreter, gh-152685) when
# StopIteration is thrown into a native coroutine that has not started: the comparisons
# skip exactly those steps there.
UNSTARTED_STOP_ITERATION_ABORTS = (
    sys.implementation.name == "cpython"
    and sys.version_info >= (3, 12)
    and hasattr(sys, "gettotalrefcount")
)


def aborts_interpreter(native, op):
    """Whether ``op`` on the native coroutine ``native`` would abort this interpreter
    (``UNSTARTED_STOP_ITERATION_ABORTS``): the step is to be skipped on both sides."""
    import inspect

    return (
        UNSTARTED_STOP_ITERATION_ABORTS
        and op[0] == "throw"
        and isinstance(op[1], StopIteration)
        and inspect.getcoroutinestate(native) == inspect.CORO_CREATED
    )
