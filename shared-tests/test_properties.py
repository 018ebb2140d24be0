"""Property-based: hypothesis generates awaitable shapes and send/throw/close sequences,
and ``drive``, ``delegate`` and ``RustCoroutine`` must do what CPython does with them."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed here")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers import OPERATIONS, apply, native_countdown, outcome  # noqa: E402
from test_delegate import BareAwaitable, ScriptedAwaitable, native_await  # noqa: E402

SEQUENCES = st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=10)
YIELDS = st.tuples(
    st.just("yield"),
    st.sampled_from([None, 1, "y"]),
    st.sampled_from(["catch", "reraise", "return"]),
)
ENDINGS = st.one_of(
    st.tuples(st.just("return"), st.sampled_from([None, 0, (1, 2)])), st.just(("raise",))
)
SCRIPTS = st.builds(lambda steps, end: steps + [end], st.lists(YIELDS, max_size=4), ENDINGS)
SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(n=st.integers(0, 4), value=st.sampled_from([None, 0, "v", (1, 2)]), ops=SEQUENCES)
def test_rust_coroutine_is_a_native_coroutine(era, n, value, ops):
    ours, native = era.countdown(n, value), native_countdown(n, value)
    try:
        for op in ops:
            assert apply(ours, op) == apply(native, op)
    finally:
        native.close()
        ours.close()


@SETTINGS
@given(script=SCRIPTS, ops=SEQUENCES, bare=st.booleans())
def test_delegate_is_yield_from(era, script, ops, bare):
    make = BareAwaitable if bare else ScriptedAwaitable
    our_log, native_log = [], []
    ours, native = era.delegate(make(script, our_log)), native_await(make(script, native_log))
    try:
        for op in ops:
            assert apply(ours, op) == apply(native, op)
            assert our_log == native_log
    finally:
        native.close()
        ours.close()


@SETTINGS
@given(script=SCRIPTS)
def test_drive_is_await_without_a_loop(era, script):
    """Only ``None`` may be yielded without a loop; everything else must match ``await``."""
    loop_free = [s if s[0] != "yield" else ("yield", None, s[2]) for s in script]
    ours = outcome(lambda: era.drive(ScriptedAwaitable(loop_free, [])))
    native_coro = native_await(ScriptedAwaitable(loop_free, []))
    try:
        native = outcome(lambda: [native_coro.send(None) for _ in range(100)])
    finally:
        native_coro.close()
    if ours[0] == "yield":  # drive returned: the native coroutine returned the same
        ours = ("return",) + ours[1:]
    assert ours == native
