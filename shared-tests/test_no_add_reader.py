"""API reference, sections 4-6 (docs/src/reference.md) on a loop without ``add_reader``.

The bridge is notified of completions through a socket the loop watches with
``add_reader``. Windows' default loop (the Proactor loop) has no ``add_reader``: it
raises ``NotImplementedError``, as every ``asyncio.AbstractEventLoop`` method a loop does
not implement does. On such a loop the bridge falls back to
``loop.call_soon_threadsafe``, once per batch of completions. These tests run the
futures, the streams and the semaphore on a selector loop whose ``add_reader`` and
``remove_reader`` raise ``NotImplementedError``, as the Proactor loop's do
(``async_helpers.NoReaderLoop``), and check that the fallback is what ran; the
cancellation test of ``test_futures`` runs on that loop too.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import weakref

import pytest

from async_helpers import (
    NoReaderLoop,
    collect_until,
    eventually,
    forget_the_last_loop,
    run,
    sieve,
    tasks_left_waiting,
)

pytestmark = pytest.mark.valgrind

PRIMES_BELOW_20M = 1_270_607


def run_without_reader(coro_factory):
    """``coro_factory()`` run to completion on a fresh ``NoReaderLoop``; the result and
    the loop (closed)."""
    loop = NoReaderLoop()
    return run(coro_factory, lambda: loop), loop


def assert_fell_back(loop):
    assert loop.add_reader_calls == 1  # tried once, on the first await
    assert loop.wake_calls >= 1


def test_sleep_wakes_through_call_soon_threadsafe(era):
    before = era.live_futures()

    async def main():
        return await era.sleep(0.01, "slept"), await era.sleep(0, "again")

    result, loop = run_without_reader(main)
    assert result == ("slept", "again")
    assert_fell_back(loop)
    assert era.live_futures() == before


def test_gathered_sleeps_complete_in_order_one_call_per_batch(era):
    before = era.live_futures()

    async def main():
        return await asyncio.gather(*(era.sleep(0.001 * (i % 7), i) for i in range(3000)))

    result, loop = run_without_reader(main)
    assert result == list(range(3000))
    assert_fell_back(loop)
    # Each future is woken once, and only the first wake of a batch calls the loop.
    assert loop.wake_calls <= 3000
    assert era.live_futures() == before


def test_count_primes_woken_from_a_worker_thread(era):
    # Long enough (tens of milliseconds) that the count is still running when it is
    # first polled: its completion then has to wake the loop from the worker thread.
    async def main():
        return await asyncio.gather(era.count_primes(20_000_000), era.count_primes(10))

    result, loop = run_without_reader(main)
    assert result == [PRIMES_BELOW_20M, 4]
    assert_fell_back(loop)


def test_streams(era):
    before = era.live_streams()

    async def main():
        ticks = [item async for item in era.ticks(20, 0.001)]
        primes = [item async for item in era.primes(2_000, 8)]
        return ticks, primes

    (ticks, primes), loop = run_without_reader(main)
    assert ticks == list(range(20))
    assert primes == sieve(2_000)
    assert_fell_back(loop)
    assert era.live_streams() == before


def test_semaphore_waiters_are_woken(era):
    async def main():
        semaphore = era.Semaphore(2)
        inside = []

        async def worker(i):
            async with semaphore:
                inside.append(i)
                await era.sleep(0.001)
                inside.remove(i)
            return i

        return await asyncio.gather(*(worker(i) for i in range(20)))

    result, loop = run_without_reader(main)
    assert result == list(range(20))
    assert_fell_back(loop)


def closed_loop_with_a_waiting_task(make_awaitable):
    """A ``NoReaderLoop`` on which a Task waits for ``make_awaitable()``, then closed
    (its handler silences asyncio's "Task was destroyed but it is pending"); the loop,
    the Task, and what the loop was asked from then on: ``"is_closed"``, and the name of
    each callable ``call_soon_threadsafe`` was called with."""
    loop = NoReaderLoop()
    [task] = tasks_left_waiting(loop, make_awaitable)
    attempts = []

    def counting(callback, *args, **kwargs):
        attempts.append(type(callback).__name__)
        return NoReaderLoop.call_soon_threadsafe(loop, callback, *args, **kwargs)

    def asked():
        attempts.append("is_closed")
        return NoReaderLoop.is_closed(loop)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    loop.is_closed = asked  # type: ignore[method-assign]
    return loop, task, attempts


@pytest.mark.parametrize("waker", ["tokio timer thread", "loop thread"])
def test_wake_after_the_loop_closed(era, waker, capfd):
    """A future woken after its loop was closed, on a tokio thread (a timer) or on this
    one (a semaphore released): the bridge asks ``is_closed()`` and calls nothing (a
    refused ``call_soon_threadsafe`` raised ``RuntimeError``, and on PyPy that exception,
    raised and dropped on the loop's own thread, kept the loop and its Task for ever).
    Nothing is reported, nothing crashes, and the future, its Task and the loop are
    freed with the program's references."""
    before = era.live_futures()
    unraisable: list = []
    # sys.unraisablehook is 3.8+; 3.7 prints an unraisable error to stderr.
    old_hook = getattr(sys, "unraisablehook", None)
    if old_hook is not None:
        sys.unraisablehook = unraisable.append
    try:
        if waker == "loop thread":
            semaphore = era.Semaphore(1)

            async def second_acquire():
                await semaphore.acquire()
                await semaphore.acquire()  # waits

            loop, task, attempts = closed_loop_with_a_waiting_task(second_acquire)
            semaphore.release()  # wakes the waiting acquire here and now
            assert attempts == ["is_closed"]
        else:
            loop, task, attempts = closed_loop_with_a_waiting_task(lambda: era.sleep(0.05))
            assert eventually(lambda: attempts == ["is_closed"], timeout=10.0)
        gone = weakref.ref(loop)
        del task, loop
        # The abandoned Task and its RustFuture (and so the Rust future).
        gc.collect()
        forget_the_last_loop(era)
        collect_until(lambda: gone() is None and era.live_futures() == before)
        assert gone() is None
        assert era.live_futures() == before
    finally:
        if old_hook is not None:
            sys.unraisablehook = old_hook
    assert unraisable == []
    assert "Exception ignored" not in capfd.readouterr().err


def test_interpreter_exit_while_futures_complete(era):
    """Futures completing while the interpreter finalizes (a loop without
    ``add_reader``, left running futures): the waking threads must not enter a dying
    interpreter. The process exits cleanly."""
    script = textwrap.dedent(
        f"""
        import asyncio, {era.__name__} as era

        class NoReaderLoop(asyncio.SelectorEventLoop):
            def add_reader(self, fd, callback, *args):
                raise NotImplementedError

        loop = NoReaderLoop()
        for i in range(2000):
            loop.create_task(era.sleep(0.0001 * (i % 50)))
        loop.run_until_complete(asyncio.sleep(0.002))
        print("exiting", flush=True)
        """
    )
    # A race with the interpreter's finalization: before the `atexit` gate of the bridge,
    # about one exit in ten aborted on 3.8 ("FATAL: exception not rethrown").
    for _ in range(5):
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        noise = ("Task was destroyed", "task: ")  # asyncio's word on the abandoned Tasks
        told = [line for line in proc.stderr.splitlines() if not line.startswith(noise)]
        assert proc.returncode == 0, "\n".join(told)[-3000:]
        assert proc.stdout == "exiting\n"
        assert "Fatal" not in proc.stderr
        assert "FATAL" not in proc.stderr
        assert "panicked" not in proc.stderr
