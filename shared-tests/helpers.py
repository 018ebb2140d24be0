"""Helpers shared by the tests: native reference coroutines and outcome recording."""

from __future__ import annotations

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


def outcome(action):
    """Run ``action()`` and describe what happened, comparably across implementations."""
    try:
        result = action()
    except StopIteration as stop:
        return ("return", stop.value)
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


# The steps of the coroutine protocol the comparisons replay on two implementations.
OPERATIONS = [
    ("send", None),
    ("send", None),
    ("send", "v"),
    ("throw", Marker("thrown")),
    ("throw", Marker),
    ("throw", GeneratorExit()),
    ("throw", KeyboardInterrupt()),
    ("close",),
]


def random_operation(rng, *, stop_iteration=False):
    """One random step of the coroutine protocol, to replay on two implementations."""
    extra = [("throw", StopIteration("stop"))] if stop_iteration else []
    return rng.choice(OPERATIONS + extra)


def apply(coro, op):
    """Performs ``op`` (from ``random_operation``) on ``coro``; returns its outcome."""
    if op[0] == "send":
        return outcome(lambda: coro.send(op[1]))
    if op[0] == "throw":
        return outcome(lambda: coro.throw(op[1]))
    return outcome(coro.close)
