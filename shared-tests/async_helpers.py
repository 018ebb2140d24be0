"""Helpers for the tests of the API reference's sections 5 (``RustStream``) and 6 (``Semaphore``):
running a coroutine on a chosen loop, the native async generator a ``ticks`` stream is
compared with, the stream operations the comparisons and the properties replay, the
reference's expected outcomes for them, and polling for things that happen asynchronously."""

from __future__ import annotations

import asyncio
import gc
import sys
import time

import pytest

# The builtins aiter()/anext() and contextlib.aclosing exist from Python 3.10.
HAS_ANEXT = sys.version_info >= (3, 10)


def run(coro_factory, loop_factory=None):
    """``asyncio.run(coro_factory())``, or the same on a loop made by ``loop_factory``
    (uvloop): its async generators finalized and the loop closed afterwards."""
    if loop_factory is None:
        return asyncio.run(coro_factory())
    loop = loop_factory()
    try:
        return loop.run_until_complete(coro_factory())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def uvloop_factory():
    uvloop = pytest.importorskip("uvloop", reason="uvloop does not install on this Python")
    return uvloop.new_event_loop


class NoReaderLoop(asyncio.SelectorEventLoop):
    """A selector loop with the answer of Windows' Proactor loop to ``add_reader``
    (``NotImplementedError``, as every ``asyncio.AbstractEventLoop`` method a loop does
    not implement raises), on which the bridge falls back to ``call_soon_threadsafe``.
    Counts the ``add_reader`` calls and the bridge's ``call_soon_threadsafe`` calls (the
    callable is its ``WakeReader``)."""

    def __init__(self):
        super().__init__()
        self.add_reader_calls = 0
        self.wake_calls = 0

    def add_reader(self, fd, callback, *args):
        self.add_reader_calls += 1
        raise NotImplementedError

    def remove_reader(self, fd):
        raise NotImplementedError

    def call_soon_threadsafe(self, callback, *args, **kwargs):
        if type(callback).__name__ == "WakeReader":
            self.wake_calls += 1  # several threads: a lost count only undercounts
        return super().call_soon_threadsafe(callback, *args, **kwargs)


def loop_factory_for(kind):
    """The ``loop_factory`` of ``run`` for ``"asyncio"``, ``"uvloop"`` or ``"no
    add_reader"`` (a ``NoReaderLoop``)."""
    if kind == "no add_reader":
        return NoReaderLoop
    return None if kind == "asyncio" else uvloop_factory()


def sieve(n):
    """The primes below ``n``, as a list (the reference for ``primes(n)``)."""
    if n < 3:
        return []
    flags = bytearray([1]) * n
    flags[0] = flags[1] = 0
    for p in range(2, int(n**0.5) + 1):
        if flags[p]:
            flags[p * p :: p] = bytearray(len(range(p * p, n, p)))
    return [i for i in range(n) if flags[i]]


async def native_ticks(n, interval=0.0):
    """The native async generator that ``ticks(n, interval)`` behaves like."""
    for i in range(n):
        await asyncio.sleep(interval)
        yield i


async def step(stream):
    """``await stream.__anext__()`` as a coroutine: ``create_task`` and ``ensure_future``
    want one (``__anext__()`` returns an awaitable, not necessarily a coroutine)."""
    return await stream.__anext__()


async def collect(stream, limit=None):
    """The items of ``stream`` by ``async for`` (the first ``limit`` of them, if given)."""
    items = []
    if limit == 0:
        return items
    async for item in stream:
        items.append(item)
        if limit is not None and len(items) == limit:
            break
    return items


async def close(stream):
    """``await stream.aclose()`` as a coroutine (for ``run``)."""
    return await stream.aclose()


async def outcome_of(make):
    """Awaits what ``make()`` returns (an exception from ``make`` itself counts too):
    ``("item", value)``, ``("stop",)`` or ``("raise", type, text)``."""
    try:
        return ("item", await make())
    except StopAsyncIteration:
        return ("stop",)
    except Exception as exc:  # noqa: BLE001 - every outcome is recorded
        return ("raise", type(exc), str(exc))


# --- stream operation scripts -----------------------------------------------------------
# The operations both a RustStream and a native async generator have (a RustStream has no
# asend/athrow): the next item; the next item from a Task cancelled once it is waiting; the
# next item under a wait_for with a tiny timeout; aclose(); anext() with a default (3.10+).
ANEXT, CANCEL, TIMEOUT, ACLOSE, DEFAULT = "anext", "cancel", "timeout", "aclose", "default"
STREAM_OPS = [ANEXT, CANCEL, TIMEOUT, ACLOSE] + ([DEFAULT] if HAS_ANEXT else [])
CANCELLING = (CANCEL, TIMEOUT)
TINY_TIMEOUT = 0.001
_SENTINEL = object()


async def apply_stream_op(stream, op):
    """Performs ``op`` on ``stream``; returns its outcome: ``("item", value)``,
    ``("stop",)``, ``("default",)``, ``("cancelled",)`` (the Task was cancelled or the
    wait_for timed out before an item came), ``("closed", result of aclose)`` or
    ``("raise", type, text)``."""
    try:
        if op == ANEXT:
            return ("item", await stream.__anext__())
        if op == DEFAULT:
            value = await anext(stream, _SENTINEL)  # noqa: F821 - builtin from 3.10
            return ("default",) if value is _SENTINEL else ("item", value)
        if op == ACLOSE:
            return ("closed", await stream.aclose())
        if op == TIMEOUT:
            return ("item", await asyncio.wait_for(stream.__anext__(), TINY_TIMEOUT))
        if op == CANCEL:
            task = asyncio.ensure_future(step(stream))
            await asyncio.sleep(0)  # the task starts: its __anext__ is pending, or done
            task.cancel()
            return ("item", await task)
        raise AssertionError(f"unknown operation {op!r}")
    except StopAsyncIteration:
        return ("stop",)
    except asyncio.TimeoutError:
        return ("cancelled",)
    except asyncio.CancelledError:
        return ("cancelled",)
    except Exception as exc:  # noqa: BLE001 - every outcome is recorded
        return ("raise", type(exc), str(exc))


async def run_stream_script(stream, ops):
    """The outcomes of ``ops`` applied in turn to ``stream``, which is closed afterwards."""
    outcomes = []
    try:
        for op in ops:
            outcomes.append(await apply_stream_op(stream, op))
    finally:
        await stream.aclose()
    return outcomes


def contract_violation(items, ops, outcomes):
    """Checks ``outcomes`` (of ``ops`` on a stream over ``items``) against the API reference;
    returns ``None`` or a description of the first step that breaks it.

    The stream delivers ``items`` in order, each once, none skipped: every cancelled
    ``__anext__`` (a Task cancelled, a ``wait_for`` timing out) either got its item before
    the cancellation landed, or left it for the next ``__anext__``. Once exhausted or
    closed it raises ``StopAsyncIteration`` (``anext`` gives the default); after
    ``aclose()``, which gives ``None``, always."""
    position, closed = 0, False
    for index, (op, got) in enumerate(zip(ops, outcomes)):
        finished = closed or position == len(items)
        if op == ACLOSE:
            allowed = [("closed", None)]
            closed = True
        elif finished:
            allowed = [("default",) if op == DEFAULT else ("stop",)]
            if op in CANCELLING and not closed:  # the end may take a moment to show
                allowed.append(("cancelled",))
        else:
            allowed = [("item", items[position])]
            if op in CANCELLING:
                allowed.append(("cancelled",))
        if got not in allowed:
            return (
                f"step {index} ({op}) of {ops}: got {got!r}, the API reference allows {allowed!r} "
                f"(outcomes so far: {outcomes[:index]})"
            )
        if got[0] == "item":
            position += 1
    if len(outcomes) != len(ops):
        return f"{len(outcomes)} outcomes for {len(ops)} operations"
    return None


# --- polling ------------------------------------------------------------------------------


async def cancel_once_its_wait_is_over(task, timeout=2.0):
    """Cancels ``task`` at the moment the future it waits on is done but before it has
    resumed (asyncio's ``Task._fut_waiter``): the result is there, the cancellation lands
    first. That is the race a cancel-safe awaitable must survive. ``True`` if that moment
    came and ``task`` was cancelled in it; ``False`` if the task finished first (or
    ``timeout`` passed)."""
    loop = asyncio.get_running_loop()
    hit = loop.create_future()
    deadline = loop.time() + timeout

    def poll():
        waiter = getattr(task, "_fut_waiter", None)
        if task.done() or loop.time() > deadline:
            hit.set_result(False)
        elif waiter is not None and waiter.done():
            task.cancel()
            hit.set_result(True)
        else:
            loop.call_soon(poll)

    poll()  # at once too: a release may have completed the waiter just now
    return await hit


def tasks_left_waiting(loop, make_awaitable, n=1):
    """``n`` Tasks of ``make_awaitable()`` on ``loop``, each run to its first wait, then
    the loop closed under them (its handler silencing asyncio's "Task was destroyed but
    it is pending"): the Tasks."""
    loop.set_exception_handler(lambda loop, context: None)
    tasks = [loop.create_task(make_awaitable()) for _ in range(n)]
    loop.run_until_complete(asyncio.sleep(0))  # each Task's first step: they wait now
    assert not any(task.done() for task in tasks)
    loop.close()
    return tasks


def forget_the_last_loop(era):
    """Awaits on another loop: the bridge's thread-local keeps the last loop used on this
    thread (and its waker) until another one is, and the 0.12 bridge releases a loop
    dropped without the GIL on the next await."""
    assert run(lambda: era.sleep(0, "next")) == "next"


def collect_until(predicate, rounds=10):
    """``gc.collect()`` until ``predicate()`` holds, ``rounds`` times at most: PyPy frees
    an object with a finaliser, and each level of C-level proxies that refer to objects,
    one collection later."""
    for _ in range(rounds):
        gc.collect()
        if predicate():
            return


def eventually(predicate, timeout=1.0):
    """Whether ``predicate`` becomes true within ``timeout`` seconds (polled)."""
    return wait_until(predicate, timeout) is not None


def wait_until(predicate, timeout=1.0, pause=0.002):
    """Polls ``predicate`` for up to ``timeout`` seconds: the seconds it took to become
    true, or ``None`` if it did not."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(pause)


async def wait_until_async(predicate, timeout=1.0):
    """``wait_until`` inside a running loop (the loop keeps running meanwhile)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        await asyncio.sleep(0.001)


def cpu_while_sleeping(seconds=0.3):
    """CPU seconds the process (all its threads) used while this thread slept ``seconds``."""
    cpu = time.process_time()
    time.sleep(seconds)
    return time.process_time() - cpu
