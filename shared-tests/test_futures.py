"""API reference, section 4 (docs/src/reference.md): Rust futures awaited from asyncio
(``RustFuture``)."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref

import pytest

from async_helpers import (
    collect_until,
    forget_the_last_loop,
    loop_factory_for,
    run,
    tasks_left_waiting,
)

# Part of the core that the *-valgrind tox environments run under memcheck (not the tests
# marked slow).
pytestmark = pytest.mark.valgrind

PRIMES_BELOW_20M = 1_270_607


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_factory(request):
    return loop_factory_for(request.param)


def test_sleep_returns_value_in_completion_order(era, loop_factory):
    finished = []

    async def timed(delay, label):
        value = await era.sleep(delay, label)
        finished.append(value)
        return value

    async def main():
        # Gaps of 100 ms or more: a loaded machine can hold the loop for tens of
        # milliseconds, and two timers that both fired meanwhile resume in either order.
        return await asyncio.gather(timed(0.25, "slow"), timed(0.0, "now"), timed(0.1, "mid"))

    assert run(main, loop_factory) == ["slow", "now", "mid"]
    assert finished == ["now", "mid", "slow"]


def test_sleep_takes_its_time(era):
    async def main():
        start = time.monotonic()
        assert await era.sleep(0.05) is None
        return time.monotonic() - start

    assert run(main) >= 0.045


def test_ten_thousand_concurrent_sleeps(era, loop_factory):
    before = era.live_futures()

    async def main():
        return await asyncio.gather(*(era.sleep(0.001 * (i % 5), i) for i in range(10_000)))

    assert run(main, loop_factory) == list(range(10_000))
    assert era.live_futures() == before


@pytest.mark.parametrize("seconds", [-1, -0.001, math.nan, math.inf, -math.inf])
def test_sleep_rejects_bad_durations(era, seconds):
    with pytest.raises(ValueError):
        era.sleep(seconds)


def test_count_primes(era):
    async def main():
        return await era.count_primes(100), await era.count_primes(0), await era.count_primes(3)

    assert run(main) == (25, 0, 1)
    with pytest.raises(ValueError):
        era.count_primes(-1)


@pytest.mark.slow  # counts 20 million numbers; timing-dependent under valgrind
# ANCHOR: ticking
def test_event_loop_keeps_ticking_during_count(era, loop_factory):
    async def main():
        ticks = 0
        count = asyncio.ensure_future(era.count_primes(20_000_000))
        while not count.done():
            ticks += 1
            await asyncio.sleep(0)
        return ticks, count.result()

    ticks, result = run(main, loop_factory)
    assert result == PRIMES_BELOW_20M
    assert ticks > 10  # the loop ran many times while the worker counted
    # ANCHOR_END: ticking


@pytest.mark.parametrize("loop_factory", ["asyncio", "uvloop", "no add_reader"], indirect=True)
# ANCHOR: cancellation
def test_cancellation_drops_the_future_at_once(era, loop_factory):
    before = era.live_futures()

    async def main():
        task = asyncio.ensure_future(era.sleep(60))
        await asyncio.sleep(0.01)
        assert era.live_futures() == before + 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Within one loop iteration of the cancellation.
        return era.live_futures()

    assert run(main, loop_factory) == before
    # ANCHOR_END: cancellation


def test_cancelled_count_stops_its_worker(era):
    async def main():
        task = asyncio.ensure_future(era.count_primes(2**40))  # minutes of work
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main)
    time.sleep(0.02)  # a few milliseconds for the worker to see its flag
    cpu = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - cpu < 0.1, "the worker thread is still counting"


def test_needs_a_running_loop(era):
    future = era.sleep(0.01)
    with pytest.raises(RuntimeError, match="event loop"):
        era.drive(future)
    with pytest.raises(RuntimeError, match="event loop"):
        era.sleep(0).send(None)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_has_no_running_loop(era):
    """In a child forked while a loop runs, asyncio sees no running loop (3.7-3.11 by
    comparing the process id, 3.12+ through an at-fork hook), and neither does the
    bridge, whose record of the running loop (3.7-3.11) is forgotten at the fork."""

    async def main():
        assert await era.sleep(0, "before") == "before"  # the running loop, recorded
        with warnings.catch_warnings():
            # 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks"
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: report through the exit status, never return
            status = 8  # unless the checks below finish
            try:
                try:
                    asyncio.get_running_loop()
                    status |= 1
                except RuntimeError:
                    pass
                try:
                    era.sleep(0).send(None)
                    status |= 2
                except RuntimeError as error:
                    if "event loop" not in str(error):
                        status |= 4
                status &= ~8
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        # The parent's loop is still its running loop.
        assert await era.sleep(0, "after") == "after"
        return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)

    # 1: asyncio saw a loop, 2: the bridge did, 4: another error, 8: the checks did
    # not finish, negative: the child died of that signal.
    assert run(main) == 0


@pytest.mark.skipif(
    sys.implementation.name != "cpython",
    reason="gc.is_tracked is CPython's (PyPy's gc module has none)",
)
def test_every_awaitable_is_tracked_by_the_collector(era):
    """A pending ``RustFuture`` is part of a cycle (its waiter holds the Task's wake-up
    callback, the Task holds it), so each one, also one made where an earlier one was
    freed, must be tracked by the cycle collector. PyO3 0.30.1's ``#[pyclass(freelist =
    N)]`` hands out reused objects untracked (fixed upstream by PyO3 pull request
    #6442): tried on these classes, the Tasks left waiting on a closed loop were never
    freed. The crates' own free lists (``slots.rs``) track each object they reuse."""
    for _ in range(3):
        made = [era.sleep(0) for _ in range(100)]
        made += [era.ticks(1, 0).__anext__() for _ in range(100)]
        made += [era.Semaphore(1).acquire() for _ in range(100)]
        assert all(gc.is_tracked(awaitable) for awaitable in made)
        del made


def test_awaited_twice(era):
    async def main():
        future = era.sleep(0, "once")
        assert await future == "once"
        with pytest.raises(RuntimeError, match="cannot reuse"):
            await future

    run(main)


def test_create_task_accepts_rust_futures(era):
    async def main():
        return await asyncio.create_task(era.sleep(0.001, "task"))

    assert run(main) == "task"


# ANCHOR: six_loops
def test_six_loops_in_six_threads(era):
    results = {}

    def worker(index):
        async def main():
            values = await asyncio.gather(
                *(era.sleep(0.0005 * (i % 4), (index, i)) for i in range(3000))
            )
            return values

        results[index] = asyncio.run(main())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == list(range(6))
    for index, values in results.items():
        assert values == [(index, i) for i in range(3000)]
    # ANCHOR_END: six_loops


@pytest.mark.skipif(
    not hasattr(sys, "getrefcount"), reason="needs sys.getrefcount (CPython's reference counts)"
)
def test_reference_counts_and_live_futures_stay_flat(era):
    value = object()
    before_live = era.live_futures()

    async def churn():
        for _ in range(200):
            await era.sleep(0, value)
            await era.sleep(0.0001, value)
            task = asyncio.ensure_future(era.sleep(10, value))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(churn)  # warm-up
    gc.collect()
    before = sys.getrefcount(value)
    for _ in range(3):
        run(churn)
    gc.collect()
    assert sys.getrefcount(value) == before
    assert era.live_futures() == before_live


def test_loop_closed_under_a_pending_future(era):
    """A future that completes after its loop closed is dropped quietly."""
    script = textwrap.dedent(
        f"""
        import asyncio, time, gc
        import {era.__name__} as era

        loop = asyncio.new_event_loop()
        tasks = [loop.create_task(era.sleep(0.05, i)) for i in range(100)]
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        time.sleep(0.2)  # the timers fire after the loop closed
        del tasks
        # PyPy runs the Tasks' finalisers in one collection and frees them in a later one.
        for _ in range(3):
            gc.collect()
        print("exited cleanly", era.live_futures())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exited cleanly 0"
    assert "Traceback" not in proc.stderr
    assert "Fatal Python error" not in proc.stderr
    # asyncio itself reports each destroyed pending task once; no storm beyond that.
    assert proc.stderr.count("\n") <= 100 * 4


def test_baselines_return_the_same_values(era):
    if era.ERA != "pymethods":
        pytest.skip("the baselines (PyO3 async fn, pyo3-async-runtimes) need today's PyO3")
    from pyo3_modern_pymethods import baselines

    async def main():
        return (
            await baselines.ready_async_fn("r"),
            await baselines.sleep_async_fn(0.001, "s"),
            await baselines.sleep_future_into_py(0.001, "f"),
            await baselines.sleep_async_fn(0),
            await era.sleep(0.001, "s"),
        )

    assert run(main) == ("r", "s", "f", None, "s")


def test_a_panic_in_a_rust_future_is_a_python_exception(era):
    """Never an abort: the awaiting task gets PyO3's PanicException, the loop goes on."""
    import importlib

    native = importlib.import_module(f"{era.__name__}.{era.__name__}")

    async def main():
        with pytest.raises(BaseException) as info:
            await native._panicking_future("boom in Rust")
        assert type(info.value).__name__ == "PanicException"
        assert "boom in Rust" in str(info.value)
        return await era.sleep(0.001, "still running")

    assert run(main) == "still running"
    assert era.live_futures() == 0


async def _awaiting(awaitable):
    return await awaitable


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "in_coroutine"])
@pytest.mark.parametrize("kind", ["rust_future", "delegate_future", "delegate_rust_future"])
def test_cancelled_tasks_are_freed(era, kind, wrapped):
    """Tasks cancelled while waiting on a Rust future, or on a Future through delegate(),
    are freed with their waiters, exceptions and tracebacks (on PyPy too, whose collector
    never frees a cycle through a C-level traceback: see compat::raise_object)."""

    def awaitable():
        if kind == "rust_future":
            return era.sleep(30)
        if kind == "delegate_future":
            return era.delegate(asyncio.get_running_loop().create_future())
        return era.delegate(era.sleep(30))

    freed: list[weakref.ref] = []

    async def main():
        tasks = [
            asyncio.ensure_future(_awaiting(awaitable()) if wrapped else awaitable())
            for _ in range(100)
        ]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        freed.extend(weakref.ref(task) for task in tasks)

    run(main)
    collect_until(lambda: all(ref() is None for ref in freed))
    assert sum(ref() is not None for ref in freed) == 0
    assert era.live_futures() == 0


# PyPy's collector does not follow references held by C-level objects (cpyext never
# calls tp_traverse: pypy/pypy issue 3848), so a cycle that passes through one is never
# freed. delegate() must hold the Future it waits for, the Future holds the Task's
# wake-up callback, and the Task holds the delegate: only cancelling the Task (or the
# Future completing) breaks that cycle, and a closed loop does neither.
PYPY_KEEPS_CYCLES_THROUGH_EXTENSIONS = pytest.mark.xfail(
    sys.implementation.name == "pypy",
    reason="PyPy's collector never frees a cycle through a C extension object "
    "(pypy/pypy#3848): Task -> delegate -> Future -> Task's callback",
    strict=True,
)


@pytest.mark.parametrize(
    "kind",
    [
        "rust_future",
        pytest.param("delegate_future", marks=PYPY_KEEPS_CYCLES_THROUGH_EXTENSIONS),
        "delegate_rust_future",
    ],
)
def test_tasks_left_waiting_on_a_closed_loop_are_freed(era, kind):
    """Tasks still waiting (never cancelled) when their loop is closed and dropped are
    freed with it: nothing in Rust keeps the Task, its waiter or the loop alive."""

    async def body():
        if kind == "rust_future":
            return await era.sleep(30)
        if kind == "delegate_future":
            return await era.delegate(asyncio.get_running_loop().create_future())
        return await era.delegate(era.sleep(30))

    loop = asyncio.new_event_loop()
    tasks = tasks_left_waiting(loop, body, 50)
    freed = [weakref.ref(task) for task in tasks] + [weakref.ref(loop)]
    del tasks, loop
    forget_the_last_loop(era)
    collect_until(lambda: all(ref() is None for ref in freed) and era.live_futures() == 0)
    assert sum(ref() is not None for ref in freed) == 0
    assert era.live_futures() == 0
