"""The fast paths are the paths taken: a test fails if one silently falls back.

``RustCoroutine`` and ``RustAwait`` get hand-filled type slots in both eras (``slots.rs``):
``am_await``, ``tp_iternext`` and, from CPython 3.10, ``am_send`` (which PyO3 has no
``#[pymethods]`` name for, and PyO3 0.12 no field for: the 0.12 crate fills it in the
4-field table of its compat fixes), and ``tp_alloc`` and ``tp_free`` with free lists
of their own (not on a free-threaded build). Each module lists what it installed, by
address, in the private ``_FAST_SLOTS``; here the addresses are compared with the type
objects' slots read with ctypes, and the slots are called the way CPython calls them.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import sys
import sysconfig
import weakref

import pytest

from helpers import PYGEN_NEXT, PYGEN_RETURN, native_countdown, outcome, pyiter_send_status

pytestmark = [
    pytest.mark.skipif(sys.implementation.name != "cpython", reason="reads CPython's type objects"),
    # Part of the core that the *-valgrind tox environments run under memcheck.
    pytest.mark.valgrind,
]

POINTER = ctypes.sizeof(ctypes.c_void_p)
# PyTypeObject, one pointer-sized field each: ob_refcnt, ob_type, ob_size, tp_name,
# tp_basicsize, tp_itemsize, tp_dealloc, tp_vectorcall_offset, tp_getattr, tp_setattr,
# then tp_as_async (10) ... tp_iter (27), tp_iternext (28).
TP_AS_ASYNC = 10 * POINTER
TP_ITERNEXT = 28 * POINTER
# ... tp_methods (29) ... tp_init (37), tp_alloc (38), tp_new (39), tp_free (40).
TP_ALLOC = 38 * POINTER
TP_FREE = 40 * POINTER
# PyAsyncMethods: am_await, am_aiter, am_anext, then (3.10+) am_send.
AM_AWAIT = 0
AM_SEND = 3 * POINTER
HAS_AM_SEND = sys.version_info >= (3, 10)
CLASSES = ["RustCoroutine", "RustAwait"]


def fast_slots(era) -> dict:
    """What the compiled module says it installed (``_FAST_SLOTS``, a private attribute)."""
    return importlib.import_module(f"{era.__name__}.{era.__name__}")._FAST_SLOTS


def read_pointer(address: int) -> int:
    return ctypes.c_void_p.from_address(address).value or 0


def has_free_lists() -> bool:
    """Whether the classes keep freed objects (their own ``tp_alloc`` and ``tp_free``):
    where the GIL guards the lists (not on a free-threaded build)."""
    return not sysconfig.get_config_var("Py_GIL_DISABLED")


def type_slots(cls) -> dict:
    methods = read_pointer(id(cls) + TP_AS_ASYNC)
    assert methods, "the type has no async methods table"
    slots = {
        "tp_iternext": read_pointer(id(cls) + TP_ITERNEXT),
        "am_await": read_pointer(methods + AM_AWAIT),
    }
    if HAS_AM_SEND:
        slots["am_send"] = read_pointer(methods + AM_SEND)
    if has_free_lists():
        slots["tp_alloc"] = read_pointer(id(cls) + TP_ALLOC)
        slots["tp_free"] = read_pointer(id(cls) + TP_FREE)
    return slots


def make(era, name: str, value="value"):
    """A fresh instance that yields None once, then returns ``value``."""
    if name == "RustCoroutine":
        return era.countdown(1, value)
    return era.delegate(native_countdown(1, value))


@pytest.mark.parametrize("name", CLASSES)
def test_every_slot_is_claimed(era, name):
    expected = {"tp_iternext", "am_await"} | ({"am_send"} if HAS_AM_SEND else set())
    if has_free_lists():
        expected |= {"tp_alloc", "tp_free"}
    assert set(fast_slots(era)[name]) == expected


@pytest.mark.parametrize("name", CLASSES)
def test_the_type_object_holds_the_claimed_functions(era, name):
    claimed = fast_slots(era)[name]
    assert all(address != 0 for address in claimed.values())
    assert type_slots(getattr(era, name)) == claimed


@pytest.mark.parametrize("name", CLASSES)
def test_a_reused_object_starts_afresh(era, name):
    """The free lists hand out the last object freed: made in the same place, the next
    one is a new object all the same (tracked by the collector, unstarted, its own
    value), and a finished one in the list keeps nothing alive."""
    kept = Kept()
    first = make(era, name, kept)
    assert next(first) is None
    with pytest.raises(StopIteration):
        next(first)
    address, watched = id(first), weakref.ref(kept)
    del first, kept
    assert watched() is None
    second = make(era, name, "second")
    if has_free_lists():
        assert id(second) == address
    assert gc.is_tracked(second)
    assert next(second) is None
    with pytest.raises(StopIteration) as stop:
        next(second)
    assert stop.value.value == "second"


class Kept:
    """A value whose freeing can be watched."""


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("value", ["value", (1, 2), ValueError("as a value"), None])
def test_tp_iternext_returns_like_a_generator(era, name, value):
    """``next()`` calls ``tp_iternext``; a return is a ``StopIteration`` like a generator's."""
    coro = make(era, name, value)
    assert next(coro) is None
    with pytest.raises(StopIteration) as stop:
        next(coro)
    assert type(stop.value) is StopIteration
    assert stop.value.value is value
    assert stop.value.args == (() if value is None else (value,))
    with pytest.raises(RuntimeError, match="cannot reuse"):
        next(coro)


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("value", ["value", (1, 2), ValueError("as a value"), None])
@pytest.mark.parametrize("method", ["send", "__next__"])
def test_methods_return_like_a_native_coroutine(era, name, value, method):
    """``send``/``__next__`` raise the ``StopIteration`` a native coroutine raises:
    ``StopIteration(value)``, and a bare ``StopIteration()`` for ``None``."""

    def returned(coro):
        if method == "send":
            step = lambda: coro.send(None)  # noqa: E731
        else:  # the method wrapper, not the slot: what `type(x).__next__(x)` calls
            iterator = coro.__await__()
            step = lambda: type(iterator).__next__(iterator)  # noqa: E731
        step()
        with pytest.raises(StopIteration) as stop:
            step()
        return stop.value

    ours, native = returned(make(era, name, value)), returned(native_countdown(1, value))
    assert type(ours) is type(native) is StopIteration
    assert ours.args == native.args
    assert ours.value is native.value is value


@pytest.mark.parametrize("name", CLASSES)
def test_await_goes_through_am_await(era, name):
    """``await`` (``GET_AWAITABLE``) calls ``am_await``; the method wrapper agrees."""
    coro = make(era, name)
    assert coro.__await__() is coro

    async def outer():
        return await coro

    stepped = outer()
    assert outcome(lambda: stepped.send(None)) == ("yield", None)
    assert outcome(lambda: stepped.send(None)) == ("return", "value")


@pytest.mark.skipif(not HAS_AM_SEND, reason="am_send exists from CPython 3.10")
@pytest.mark.parametrize("name", CLASSES)
def test_pyiter_send_returns_without_stop_iteration(era, name):
    coro = make(era, name)
    assert pyiter_send_status(coro, None) == (PYGEN_NEXT, None)
    assert pyiter_send_status(coro, None) == (PYGEN_RETURN, "value")  # no exception
    # PYGEN_ERROR with the exception set, which ctypes.pythonapi raises.
    with pytest.raises(RuntimeError, match="cannot reuse"):
        pyiter_send_status(coro, None)


@pytest.mark.parametrize("step", ["next", "pyiter_send"])
def test_a_finished_delegate_releases_its_inner_iterator_at_once(era, step):
    """Stepped through the slots, a finishing ``RustAwait`` frees what it delegated to
    before the step returns, as ``yield from`` does (nothing waits in a pool)."""
    if step == "pyiter_send" and not HAS_AM_SEND:
        pytest.skip("am_send exists from CPython 3.10")
    inner = native_countdown(1, "value")
    alive = weakref.ref(inner)
    outer = era.delegate(inner)
    del inner
    if step == "next":
        assert next(outer) is None
        with pytest.raises(StopIteration):
            next(outer)
    else:
        assert pyiter_send_status(outer, None) == (PYGEN_NEXT, None)
        assert pyiter_send_status(outer, None) == (PYGEN_RETURN, "value")
    assert alive() is None
