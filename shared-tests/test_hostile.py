"""Hostile and odd input: a clear Python exception, as CPython raises it, never a crash."""

from __future__ import annotations

import sys
import threading

import pytest

from helpers import native_ready, outcome


def native_outcome(awaitable):
    """What a native coroutine doing ``return await awaitable`` does on its first step."""

    async def awaiting():
        return await awaitable

    coro = awaiting()
    try:
        return outcome(lambda: coro.send(None))
    finally:
        coro.close()


class AwaitRaises:
    def __await__(self):
        raise KeyError("from __await__")


class AwaitNotCallable:
    __await__ = 5


class AwaitReturnsNone:
    def __await__(self):
        return None


class MyStop(StopIteration):
    pass


class NextRaisesStopSubclass:
    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise MyStop("sub")


class BadStr(Exception):
    def __str__(self):
        raise ValueError("no str")


class NextRaisesBadStr(NextRaisesStopSubclass):
    def __next__(self):
        raise BadStr


HOSTILE = [
    AwaitRaises,
    AwaitNotCallable,
    AwaitReturnsNone,
    NextRaisesStopSubclass,
    NextRaisesBadStr,
]


@pytest.mark.parametrize("make", HOSTILE, ids=lambda c: c.__name__)
def test_drive_matches_native_await(era, make):
    ours = outcome(lambda: era.drive(make()))
    if ours[0] == "yield":  # drive returned: the native coroutine returns the same
        ours = ("return",) + ours[1:]
    native = native_outcome(make())
    assert ours[:2] == native[:2]
    if ours[0] == "raise" and make is not NextRaisesBadStr:
        assert ours[2] == native[2]


@pytest.mark.parametrize("make", HOSTILE, ids=lambda c: c.__name__)
def test_delegate_matches_native_await(era, make):
    def ours():
        return era.delegate(make()).send(None)

    result = outcome(ours)
    native = native_outcome(make())
    assert result[:2] == native[:2]


def test_methods_replaced_by_non_callables(era):
    class Iterator:
        def __iter__(self):
            return self

        def __next__(self):
            return None

        send = 5
        throw = "no"
        close = None

    class Awaitable:
        def __await__(self):
            return Iterator()

    awaitable = era.delegate(Awaitable())
    assert awaitable.send(None) is None
    with pytest.raises(TypeError):
        awaitable.send(1)
    awaitable = era.delegate(Awaitable())
    awaitable.send(None)
    with pytest.raises(TypeError):
        awaitable.throw(ValueError)
    awaitable = era.delegate(Awaitable())
    awaitable.send(None)
    with pytest.raises(TypeError):
        awaitable.close()


def test_exhausted_iterator_that_keeps_returning(era):
    class Stubborn:
        def __await__(self):
            return iter([None, None])

    assert era.drive(Stubborn()) is None
    wrapped = era.delegate(Stubborn())
    assert [wrapped.send(None), wrapped.send(None)] == [None, None]
    assert outcome(lambda: wrapped.send(None)) == ("return", None)


@pytest.mark.skipif(
    sys.implementation.name != "cpython",
    reason="CPython's recursion limit counts frames; PyPy's guards the stack's depth instead",
)
def test_drive_of_a_deep_native_chain_raises_recursion_error(era):
    async def chain(depth):
        if depth == 0:
            return "bottom"
        return await chain(depth - 1)

    limit = sys.getrecursionlimit()
    with pytest.raises(RecursionError):
        era.drive(chain(limit + 100))


@pytest.mark.slow
def test_drive_of_a_100_000_deep_native_chain_three_times(era):
    """Regression (PyPy): the RecursionError's 100,000-entry traceback must not be handed
    to the C layer (PyPy converted it recursively and crashed, once the JIT had compiled
    the chain; see protocol.rs, ``step_iter``)."""

    async def chain(depth):
        if depth == 0:
            return "bottom"
        return await chain(depth - 1)

    for _ in range(3):
        with pytest.raises(RecursionError):
            era.drive(chain(100_000))


def test_drive_from_several_threads(era):
    results, errors = [], []

    def worker(i):
        try:
            for _ in range(200):
                assert era.drive(era.countdown(50, i)) == i
                assert era.drive(native_ready(i)) == i
            results.append(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(results) == list(range(6))
