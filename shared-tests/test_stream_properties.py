"""Property-based, contract section 5: hypothesis generates streams and sequences of the
operations a ``RustStream`` shares with an async generator (``__anext__``, a cancelled
``__anext__``, one under a timing-out ``wait_for``, ``aclose()``, ``anext`` with a
default), and the outcomes must be the API reference's."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed here")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from async_helpers import (  # noqa: E402
    ACLOSE,
    CANCELLING,
    DEFAULT,
    STREAM_OPS,
    contract_violation,
    native_ticks,
    run,
    run_stream_script,
    sieve,
)

SEQUENCES = st.lists(st.sampled_from(STREAM_OPS), max_size=12)
UNCANCELLED = st.lists(
    st.sampled_from([op for op in STREAM_OPS if op not in CANCELLING]), max_size=12
)
INTERVALS = st.sampled_from([0.0, 0.001, 0.003])
SETTINGS = settings(max_examples=80, deadline=None)


def delivered(outcomes):
    return [outcome[1] for outcome in outcomes if outcome[0] == "item"]


@SETTINGS
@given(n=st.integers(0, 8), interval=INTERVALS, ops=SEQUENCES)
def test_ticks_deliver_each_item_once_in_order(era, n, interval, ops):
    """The items delivered are a prefix of ``range(n)``: in order, no gap (a cancelled
    ``__anext__`` loses nothing), no duplicate; the full range once it says it stopped."""
    outcomes = run(lambda: run_stream_script(era.ticks(n, interval), ops))
    items = delivered(outcomes)
    assert items == list(range(len(items)))
    assert len(items) <= n
    violation = contract_violation(list(range(n)), ops, outcomes)
    assert violation is None, violation


@SETTINGS
@given(n=st.integers(0, 400), buffer=st.integers(1, 6), ops=SEQUENCES)
def test_primes_deliver_each_prime_once_in_order(era, n, buffer, ops):
    outcomes = run(lambda: run_stream_script(era.primes(n, buffer), ops))
    primes = sieve(n)
    items = delivered(outcomes)
    assert items == primes[: len(items)]
    violation = contract_violation(primes, ops, outcomes)
    assert violation is None, violation


@SETTINGS
@given(
    n=st.integers(0, 6),
    before=SEQUENCES,
    after=st.lists(st.sampled_from(STREAM_OPS), min_size=1, max_size=6),
)
def test_after_aclose_everything_stops(era, n, before, after):
    ops = [*before, ACLOSE, *after]
    outcomes = run(lambda: run_stream_script(era.ticks(n, 0.001), ops))
    stopped = {ACLOSE: ("closed", None), DEFAULT: ("default",)}
    assert outcomes[len(before)] == ("closed", None)
    for op, outcome in zip(after, outcomes[len(before) + 1 :]):
        assert outcome == stopped.get(op, ("stop",)), (ops, outcomes)


@SETTINGS
@given(n=st.integers(0, 6), interval=st.sampled_from([0.0, 0.001]), ops=UNCANCELLED)
def test_uncancelled_a_stream_is_an_async_generator(era, n, interval, ops):
    """Without cancellations, ``ticks`` and the native async generator are the same."""

    async def both():
        ours = await run_stream_script(era.ticks(n, interval), ops)
        return ours, await run_stream_script(native_ticks(n, interval), ops)

    ours, native = run(both)
    assert ours == native
