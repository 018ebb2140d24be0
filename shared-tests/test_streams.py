"""API reference (docs/src/reference.md), section 5: Rust streams as Python async
iterators (``RustStream``): ``ticks``, ``primes`` and ``live_streams``.

Where the API reference is silent a ``RustStream`` does what a native async generator does,
and several tests run the same scenario on both. The exception is cancellation: a
cancelled ``__anext__`` of an async generator throws into its frame and ends it, while a
``RustStream`` keeps the item for the next ``__anext__``; there the expected outcomes are
modelled explicitly (``async_helpers.contract_violation``).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import functools
import gc
import math
import random
import sys
import threading
import time
import warnings

import pytest

from async_helpers import (
    ACLOSE,
    CANCELLING,
    HAS_ANEXT,
    STREAM_OPS,
    cancel_once_its_wait_is_over,
    close,
    collect,
    contract_violation,
    cpu_while_sleeping,
    eventually,
    loop_factory_for,
    native_ticks,
    outcome_of,
    run,
    run_stream_script,
    sieve,
    step,
    wait_until,
    wait_until_async,
)

# A primes stream with this much room in its queue keeps its worker busy for a while
# when nobody consumes: a worker that does not stop shows as CPU time.
BUSY_BUFFER = 2**20
FIRST_PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
PRODUCED_HOOK = (
    "the private hook RustStream._produced is missing: the number of items the producer "
    "has handed to the stream's channel so far (counted once each send has completed), "
    "readable at any time, also after aclose()"
)
needs_anext = pytest.mark.skipif(not HAS_ANEXT, reason="aiter()/anext() are builtins from 3.10")


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_factory(request):
    return loop_factory_for(request.param)


def live_before(era):
    """``live_streams()`` with nothing of earlier tests left to collect."""
    gc.collect()
    return era.live_streams()


def first_step(iterator):
    """One step of an ``__await__()`` iterator, as a Task takes it."""
    send = getattr(iterator, "send", None)
    return send(None) if send is not None else next(iterator)


# --- arguments ------------------------------------------------------------------------


@pytest.mark.valgrind
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1,), ValueError),
        ((-(2**64),), ValueError),
        ((3, -0.001), ValueError),
        ((3, -1), ValueError),
        ((3, math.nan), ValueError),
        ((3, math.inf), ValueError),
        ((3, -math.inf), ValueError),
        (("3",), TypeError),
        ((3.0,), TypeError),
        ((None,), TypeError),
        ((3, "0.1"), TypeError),
    ],
)
def test_ticks_rejects_bad_arguments(era, args, error):
    before = live_before(era)
    with pytest.raises(error):
        era.ticks(*args)
    assert era.live_streams() == before


@pytest.mark.valgrind
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1,), ValueError),
        ((2**40 + 1,), ValueError),
        ((2**64,), ValueError),
        ((10, 0), ValueError),
        ((10, -1), ValueError),
        (("10",), TypeError),
        ((10.0,), TypeError),
        ((None,), TypeError),
    ],
)
def test_primes_rejects_bad_arguments(era, args, error):
    before = live_before(era)
    with pytest.raises(error):
        era.primes(*args)
    assert era.live_streams() == before


@pytest.mark.parametrize(
    ("make", "given"),
    [
        (lambda era, i: era.ticks(i), -(2**70)),
        (lambda era, i: era.primes(i), 2**64),
        (lambda era, i: era.primes(i), -(2**64)),
        (lambda era, i: era.primes(10, i), 2**64),
        (lambda era, i: era.primes(10, i), -(2**64)),
        (lambda era, i: era.primes(10, i), 0),
    ],
)
def test_range_errors_name_the_int_given(era, make, given):
    # Ints beyond 64 bits are clamped before the range check: the message must still
    # show the caller's value, not the clamped one.
    with pytest.raises(ValueError, match=rf"got {given}$"):
        make(era, given)


def test_primes_accepts_its_bounds(era):
    async def main():
        results = []
        for args in [(2**40,), (2**40, 1), (0, 1), (10, 10**6)]:
            stream = era.primes(*args)
            results.append(await collect(stream, 5))
            await stream.aclose()
        return results

    assert run(main) == [FIRST_PRIMES[:5], FIRST_PRIMES[:5], [], [2, 3, 5, 7]]


# --- the async iterator protocol (ticks without interval: no timer, no thread) ---------


@pytest.mark.valgrind
def test_is_an_async_iterator(era):
    stream = era.ticks(1)
    assert isinstance(stream, era.RustStream)
    assert isinstance(stream, collections.abc.AsyncIterator)
    assert isinstance(stream, collections.abc.AsyncIterable)
    assert stream.__aiter__() is stream
    if HAS_ANEXT:
        assert aiter(stream) is stream  # noqa: F821 - builtin from 3.10
    with pytest.raises(TypeError):
        era.RustStream()


def test_primes_streams_are_rust_streams(era):
    stream = era.primes(10)
    assert type(stream) is era.RustStream
    assert stream.__aiter__() is stream
    run(lambda: close(stream))


@pytest.mark.valgrind
@pytest.mark.parametrize("n", [0, 1, 2, 10, 100])
def test_ticks_without_interval_yield_range(era, n):
    items = run(lambda: collect(era.ticks(n)))
    assert items == list(range(n))
    assert all(type(item) is int for item in items)
    assert run(lambda: collect(era.ticks(n, 0))) == list(range(n))


@pytest.mark.valgrind
def test_stop_async_iteration_at_the_end_and_after(era):
    async def scenario(stream):
        return [await outcome_of(stream.__anext__) for _ in range(5)]

    expected = [("item", 0), ("item", 1), ("stop",), ("stop",), ("stop",)]
    assert run(lambda: scenario(era.ticks(2))) == expected
    assert run(lambda: scenario(native_ticks(2))) == expected


def stream_makers():
    return [
        pytest.param(lambda era: era.ticks(3), [0, 1, 2], id="ticks", marks=pytest.mark.valgrind),
        pytest.param(lambda era: era.ticks(3, 0.01), [0, 1, 2], id="ticks-interval"),
        pytest.param(lambda era: era.primes(6, 1), [2, 3, 5], id="primes"),
    ]


@pytest.mark.parametrize(("make", "items"), stream_makers())
def test_anext_needs_a_running_loop(era, make, items):
    stream = make(era)
    with pytest.raises(RuntimeError, match="event loop"):
        era.drive(stream.__anext__())
    iterator = stream.__anext__().__await__()
    with pytest.raises(RuntimeError, match="event loop"):
        first_step(iterator)
    # Nothing was taken: inside a loop the stream starts at its first item.
    assert run(lambda: collect(stream)) == items


@pytest.mark.valgrind
def test_an_anext_never_awaited_takes_nothing(era):
    """As with an async generator, ``__anext__()`` does nothing until awaited. (Dropping
    an ``asend`` never awaited warns from CPython 3.13; a warning is neither required nor
    forbidden here.)"""

    async def scenario(stream):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stream.__anext__()
            unawaited = stream.__anext__()
            del unawaited
            gc.collect()
        return await collect(stream)

    assert run(lambda: scenario(era.ticks(3))) == [0, 1, 2]
    assert run(lambda: scenario(native_ticks(3))) == [0, 1, 2]


@needs_anext
@pytest.mark.valgrind
def test_anext_builtin_with_and_without_default(era):
    async def scenario(stream):
        return [
            await anext(stream),  # noqa: F821 - builtin from 3.10
            await anext(stream, "end"),  # noqa: F821
            await anext(stream, "end"),  # noqa: F821
            await outcome_of(lambda: anext(stream)),  # noqa: F821
            await anext(stream, None),  # noqa: F821
        ]

    expected = [0, 1, "end", ("stop",), None]
    assert run(lambda: scenario(era.ticks(2))) == expected
    assert run(lambda: scenario(native_ticks(2))) == expected


@pytest.mark.valgrind
def test_async_for_break_then_aclose(era):
    async def scenario(stream):
        seen = []
        async for item in stream:
            seen.append(item)
            if item == 3:
                break
        closed = await stream.aclose()
        return seen, closed, await outcome_of(stream.__anext__), await collect(stream)

    expected = ([0, 1, 2, 3], None, ("stop",), [])
    assert run(lambda: scenario(era.ticks(10))) == expected
    assert run(lambda: scenario(native_ticks(10))) == expected


@pytest.mark.valgrind
@pytest.mark.parametrize("taken", [0, 1, 3])
def test_aclose_then_anext_and_aclose_twice(era, taken):
    async def scenario(stream):
        outcomes = [await outcome_of(stream.__anext__) for _ in range(taken)]
        outcomes.append(("closed", await stream.aclose()))
        outcomes.append(("closed", await stream.aclose()))
        outcomes += [await outcome_of(stream.__anext__) for _ in range(2)]
        outcomes.append(("closed", await stream.aclose()))
        return outcomes

    ours = run(lambda: scenario(era.ticks(3)))
    assert ours == run(lambda: scenario(native_ticks(3)))
    items = [("item", i) for i in range(min(taken, 3))] + [("stop",)] * max(taken - 3, 0)
    assert ours == items + [("closed", None)] * 2 + [("stop",)] * 2 + [("closed", None)]


@needs_anext
@pytest.mark.valgrind
def test_contextlib_aclosing(era):
    async def scenario(make):
        seen = []
        async with contextlib.aclosing(make(5)) as stream:  # 3.10+
            async for item in stream:
                seen.append(item)
                if item == 2:
                    break
        return seen, await outcome_of(stream.__anext__)

    expected = ([0, 1, 2], ("stop",))
    assert run(lambda: scenario(era.ticks)) == expected
    assert run(lambda: scenario(native_ticks)) == expected


# --- with a timer: order, cancel-safety, one __anext__ at a time -------------------------


def test_ticks_with_interval_arrive_in_order(era, loop_factory):
    n, interval = 5, 0.02

    async def main():
        start = time.monotonic()
        items = await collect(era.ticks(n, interval))
        return items, time.monotonic() - start

    items, elapsed = run(main, loop_factory)
    assert items == list(range(n))
    # Only a sanity check: each item comes about ``interval`` after the one before.
    assert elapsed >= (n - 1) * interval * 0.5


def test_wait_for_timeouts_lose_no_item(era, loop_factory):
    """Every timed-out ``wait_for`` cancels a pending ``__anext__``; the stream keeps the
    item and the next ``__anext__`` gives it (an async generator would be finished)."""

    async def main():
        stream = era.ticks(3, 0.1)
        items, timeouts = [], 0
        while True:
            try:
                items.append(await asyncio.wait_for(stream.__anext__(), 0.01))
            except asyncio.TimeoutError:
                timeouts += 1
            except StopAsyncIteration:
                break
        return items, timeouts

    items, timeouts = run(main, loop_factory)
    assert items == [0, 1, 2]
    assert timeouts >= 3  # each item took ten times the timeout


def test_cancelled_tasks_lose_no_item(era, loop_factory):
    async def main():
        stream = era.ticks(3, 0.05)
        items, cancellations = [], 0
        while True:
            task = asyncio.ensure_future(step(stream))
            await asyncio.sleep(0.01)
            if not task.done():
                task.cancel()
                cancellations += 1
            try:
                items.append(await task)
            except asyncio.CancelledError:
                pass
            except StopAsyncIteration:
                break
        return items, cancellations

    items, cancellations = run(main, loop_factory)
    assert items == [0, 1, 2]
    assert cancellations >= 3


def test_cancelled_between_item_ready_and_delivery_loses_nothing(era, loop_factory):
    """The hard case of cancel-safety: the item is there (the future the Task waits on is
    done), but the cancellation reaches the Task before it resumes. The ``__anext__``
    must give the item back to the stream, not drop it."""

    async def main():
        stream = era.ticks(3, 0.02)
        items, windows, cancel = [], 0, True
        for _ in range(20):
            task = asyncio.ensure_future(step(stream))
            hit = cancel and await cancel_once_its_wait_is_over(task)
            windows += hit
            try:
                items.append(await task)
            except asyncio.CancelledError:
                pass
            except StopAsyncIteration:
                break
            cancel = not hit  # the retry after a cancellation in the window is let be
        await stream.aclose()
        return items, windows

    items, windows = run(main, loop_factory)
    assert items == [0, 1, 2]
    if windows == 0:
        pytest.skip("the Task never waited on a future that was done before it resumed")


def test_one_anext_at_a_time(era):
    """A second ``__anext__`` while one is pending raises ``RuntimeError`` (as an async
    generator's does) and leaves the first undisturbed."""

    async def scenario(stream):
        first = asyncio.ensure_future(step(stream))
        await asyncio.sleep(0.02)
        pending = not first.done()
        second = await outcome_of(stream.__anext__)
        undisturbed = not first.done()
        items = [await first] + await collect(stream)
        await stream.aclose()
        return pending, second[:2], undisturbed, items

    expected = (True, ("raise", RuntimeError), True, [0, 1, 2])
    assert run(lambda: scenario(era.ticks(3, 0.1))) == expected
    if sys.version_info >= (3, 8):  # 3.7's async generators let the second one run
        assert run(lambda: scenario(native_ticks(3, 0.1))) == expected


# --- primes ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 10, 100, 1000, 10**5])
def test_primes_below_n(era, n, loop_factory):
    assert run(lambda: collect(era.primes(n)), loop_factory) == sieve(n)


@pytest.mark.parametrize("seed", range(4))
def test_primes_random_bounds_and_buffers(era, seed):
    rng = random.Random(seed)
    cases = [(rng.randrange(20_000), rng.choice([1, 2, 3, 7, 64, 1000])) for _ in range(8)]

    async def main():
        return [await collect(era.primes(n, buffer)) for n, buffer in cases]

    assert run(main) == [sieve(n) for n, _ in cases]


def test_slow_consumer_blocks_the_worker(era):
    """Backpressure seen from outside: with a full queue the worker waits (no CPU time),
    instead of running on towards 2**40."""
    stream = era.primes(2**40, 4)
    assert run(lambda: collect(stream, 10)) == FIRST_PRIMES
    time.sleep(0.1)  # the worker fills the queue, then must block
    used = cpu_while_sleeping(0.3)
    run(lambda: close(stream))
    assert used < 0.1, f"{used:.2f} s of CPU in 0.3 s: the worker does not wait for the consumer"


@pytest.mark.parametrize("buffer", [1, 4, 64])
def test_private_hook_produced_never_more_than_buffer_ahead(era, buffer):
    """Backpressure exactly, through the private hook ``RustStream._produced`` (items the
    producer has handed to the channel so far): never more than ``buffer`` ahead of the
    items delivered. The worker refills when the queue falls to its low-water mark (a
    quarter of the buffer taken, at least one item): taking fewer leaves it asleep, and
    reaching the mark fills the queue to exactly ``buffer`` again."""
    low = buffer - max(1, buffer // 4)

    async def at_rest(stream, delivered):
        await asyncio.sleep(0.02)  # room to run further ahead, if it could
        ahead = stream._produced - delivered
        assert low < ahead <= buffer
        return ahead

    async def take(stream, count, delivered):
        for _ in range(count):
            await stream.__anext__()
            delivered += 1
            assert stream._produced <= delivered + buffer
        return delivered

    async def main():
        stream = era.primes(2**40, buffer)
        assert hasattr(stream, "_produced"), PRODUCED_HOOK
        delivered = 0
        try:
            for _ in range(4):
                filled = await wait_until_filled(stream, delivered + buffer)
                assert filled, f"_produced is {stream._produced}, never {delivered + buffer}"
                assert await at_rest(stream, delivered) == buffer
                # Short of the mark: the worker is not woken.
                delivered = await take(stream, buffer - low - 1, delivered)
                assert await at_rest(stream, delivered) == buffer - (buffer - low - 1)
                # At the mark: it refills to the brim (checked at the loop's top).
                delivered = await take(stream, 1, delivered)
        finally:
            await stream.aclose()
        return delivered

    assert run(main) == 4 * (buffer - low)


async def wait_until_filled(stream, target, timeout=10.0):
    deadline = time.monotonic() + timeout
    while stream._produced < target:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


def test_private_hook_produced_counts_every_prime(era):
    stream = era.primes(1000, 4)
    assert hasattr(stream, "_produced"), PRODUCED_HOOK
    assert run(lambda: collect(stream)) == sieve(1000)
    assert stream._produced == len(sieve(1000))
    run(lambda: close(stream))
    assert stream._produced == len(sieve(1000))


# --- the worker stops: aclose, break, cancellation, garbage collection -------------------


def assert_dropped(era, fell, record_testsuite_property, event):
    """``fell``: the seconds ``live_streams()`` took to fall back after ``event`` (``None``:
    not within 1 s). Allowed 1 s, for a loaded machine; recorded in the JUnit report (a
    test-suite property: per-test ones do not suit JUnit's xunit2) against the API reference's
    "at once" and 100 ms."""
    assert fell is not None, f"live_streams() did not fall within 1 s of {event}"
    name = f"{era.ERA}_live_streams_fell_after_{event}_seconds"
    record_testsuite_property(name, round(fell, 4))


def assert_worker_idle(event):
    """No worker burns CPU any more, 100 ms (the API reference's bound) after ``event``."""
    time.sleep(0.1)
    used = cpu_while_sleeping(0.3)
    assert used < 0.1, f"{used:.2f} s of CPU in 0.3 s after {event}: the worker still runs"


def test_aclose_stops_the_worker(era, record_testsuite_property):
    """``aclose()`` drops the Rust stream at once, while the Python object lives on."""
    before = live_before(era)

    async def main():
        stream = era.primes(2**40, BUSY_BUFFER)
        assert era.live_streams() == before + 1
        items = await collect(stream, 10)
        assert await stream.aclose() is None
        fell = await wait_until_async(lambda: era.live_streams() == before)
        return items, fell, stream

    items, fell, stream = run(main)
    assert items == FIRST_PRIMES
    assert_dropped(era, fell, record_testsuite_property, "aclose")
    assert_worker_idle("aclose")
    del stream


def test_break_then_aclose_stops_the_worker(era, record_testsuite_property):
    before = live_before(era)

    async def main():
        stream = era.primes(2**40, BUSY_BUFFER)
        async for prime in stream:
            if prime > 100:
                break
        assert era.live_streams() == before + 1  # ``break`` alone leaves it open
        await stream.aclose()
        fell = await wait_until_async(lambda: era.live_streams() == before)
        return await outcome_of(stream.__anext__), fell

    after, fell = run(main)
    assert after == ("stop",)
    assert_dropped(era, fell, record_testsuite_property, "break_aclose")
    assert_worker_idle("break_aclose")


@needs_anext
def test_break_out_of_aclosing_stops_the_worker(era, record_testsuite_property):
    before = live_before(era)

    async def main():
        async with contextlib.aclosing(era.primes(2**40, BUSY_BUFFER)) as stream:
            async for prime in stream:
                if prime > 100:
                    break
        return await wait_until_async(lambda: era.live_streams() == before), stream

    fell, stream = run(main)
    assert_dropped(era, fell, record_testsuite_property, "aclosing")
    assert_worker_idle("aclosing")
    del stream


def test_a_cancelled_consumer_leaves_the_stream_open_until_aclose(era, record_testsuite_property):
    """Cancelling a Task that iterates cancels its pending ``__anext__`` only: the stream
    stays open and usable (the API reference stops the worker on aclose or collection)."""
    before = live_before(era)

    async def main():
        stream = era.primes(2**40, 16)
        seen = []

        async def consumer():
            async for prime in stream:
                seen.append(prime)
                await asyncio.sleep(0)

        task = asyncio.ensure_future(consumer())
        # Some items in (not a fixed sleep: the worker may start late on a loaded machine).
        for _ in range(1000):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.01)
        assert seen, "the consumer received no item in 10 s"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert era.live_streams() == before + 1
        following = await stream.__anext__()
        assert following > seen[-1]
        assert following == sieve(following + 1)[len(seen)]  # none lost, none repeated
        await stream.aclose()
        return await wait_until_async(lambda: era.live_streams() == before), stream

    fell, stream = run(main)
    assert_dropped(era, fell, record_testsuite_property, "cancel_aclose")
    assert_worker_idle("cancel_aclose")
    del stream


@pytest.mark.parametrize("kind", ["primes", "ticks"])
def test_a_collected_stream_stops_its_worker(era, kind, record_testsuite_property):
    before = live_before(era)
    stream = era.primes(2**40, BUSY_BUFFER) if kind == "primes" else era.ticks(100, 0.01)
    expected = FIRST_PRIMES[:3] if kind == "primes" else [0, 1, 2]
    assert run(functools.partial(collect, stream, 3)) == expected
    assert era.live_streams() == before + 1
    del stream
    gc.collect()
    fell = wait_until(lambda: era.live_streams() == before)
    assert_dropped(era, fell, record_testsuite_property, f"collection_of_{kind}")
    assert_worker_idle("collection")


@pytest.mark.valgrind
def test_live_streams_counts_the_streams_alive(era):
    before = live_before(era)
    a, b, c = era.ticks(1), era.ticks(2), era.ticks(3)
    assert era.live_streams() == before + 3
    run(functools.partial(close, a))
    assert eventually(lambda: era.live_streams() == before + 2)
    del b
    gc.collect()
    assert eventually(lambda: era.live_streams() == before + 1)
    assert run(functools.partial(collect, c)) == [0, 1, 2]
    del c, a
    gc.collect()
    assert eventually(lambda: era.live_streams() == before)


# --- many streams, several loops, several threads ----------------------------------------


def test_many_streams_at_once(era, loop_factory):
    before = live_before(era)

    async def main():
        streams = [era.ticks(20, 0.001 * (i % 3)) for i in range(300)]
        streams += [era.primes(3000, 1 + i % 8) for i in range(20)]
        assert era.live_streams() == before + 320
        results = await asyncio.gather(*(collect(stream) for stream in streams))
        for stream in streams:
            await stream.aclose()
        return results

    results = run(main, loop_factory)
    assert results[:300] == [list(range(20))] * 300
    assert results[300:] == [sieve(3000)] * 20
    assert eventually(lambda: era.live_streams() == before)


def test_streams_in_four_loops_in_four_threads(era):
    before = live_before(era)
    results, errors = {}, []

    def worker(index):
        async def main():
            streams = [era.ticks(10, 0.001 * (i % 2)) for i in range(50)] + [era.primes(500, 3)]
            return await asyncio.gather(*(collect(stream) for stream in streams))

        try:
            results[index] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(results) == [0, 1, 2, 3]
    for values in results.values():
        assert values == [list(range(10))] * 50 + [sieve(500)]
    assert eventually(lambda: era.live_streams() == before)


def test_one_stream_from_several_loops_in_turn(era, loop_factory):
    """A ``RustStream`` belongs to no loop: it goes on where it was in the next loop
    (uvloop or asyncio), in another thread too. (A native async generator is finalized
    by ``asyncio.run`` through the asyncgen hooks; a ``RustStream`` has none.)"""
    stream = era.ticks(8, 0.001)
    parts = [run(lambda: collect(stream, 2))]
    parts.append(run(lambda: collect(stream, 2), loop_factory))

    def in_a_thread():
        parts.append(run(lambda: collect(stream, 2)))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(30)
    parts.append(run(lambda: collect(stream)))
    assert parts == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_pending_anext_of_a_finished_loop_loses_no_item(era):
    """``asyncio.run`` cancels the Task still waiting for item 0 when its main coroutine
    returns; the item is there for the next loop."""
    stream = era.ticks(2, 0.2)

    async def abandon():
        asyncio.ensure_future(step(stream))
        await asyncio.sleep(0.01)

    run(abandon)
    assert run(lambda: collect(stream)) == [0, 1]


# --- randomized: against a native async generator, and against the API reference ---------------


def random_ops(rng, length):
    weights = {op: (1 if op == ACLOSE else 4) for op in STREAM_OPS}
    return rng.choices(list(weights), weights=list(weights.values()), k=length)


@pytest.mark.parametrize("seed", range(40))
def test_ticks_match_a_native_async_generator(era, seed):
    """The same operations on ``ticks(n, interval)`` and on the native generator give the
    same outcomes, up to the first cancelled ``__anext__``; all along, the outcomes are
    the API reference's (a cancelled ``__anext__`` leaves its item for the next one)."""
    rng = random.Random(seed)
    n = rng.randrange(6)
    interval = rng.choice([0.0, 0.0, 0.002, 0.01])
    ops = random_ops(rng, rng.randrange(1, 12))
    cancelling = [i for i, op in enumerate(ops) if op in CANCELLING]
    prefix = ops[: cancelling[0]] if cancelling else ops

    async def main():
        ours = await run_stream_script(era.ticks(n, interval), ops)
        native = await run_stream_script(native_ticks(n, interval), prefix)
        return ours, native

    ours, native = run(main)
    assert ours[: len(prefix)] == native, (n, interval, ops)
    violation = contract_violation(list(range(n)), ops, ours)
    assert violation is None, violation


@pytest.mark.parametrize("seed", range(20))
def test_primes_scripts_follow_the_contract(era, seed):
    rng = random.Random(1000 + seed)
    n = rng.randrange(60)
    buffer = rng.choice([1, 2, 5, 64])
    ops = random_ops(rng, rng.randrange(1, 14))
    outcomes = run(lambda: run_stream_script(era.primes(n, buffer), ops))
    violation = contract_violation(sieve(n), ops, outcomes)
    assert violation is None, violation
