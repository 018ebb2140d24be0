"""The fast paths are the paths taken: a test fails if one silently falls back.

``RustCoroutine`` fills CPython 3.10+'s ``am_send`` slot itself, in both eras (PyO3 has
no ``#[pymethods]`` name for it; PyO3 0.12 has no such field at all, so the 0.12 crate
puts it in the 4-field table of its compat fixes): ``PyIter_Send`` — asyncio's Task on
every step, ``await`` on 3.10/3.11 — then gets a returned value without a
``StopIteration``. Here the slot is read straight from the type object with ctypes, and
``PyIter_Send`` is called on it.
"""

from __future__ import annotations

import ctypes
import importlib
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 10) or sys.implementation.name != "cpython",
    reason="am_send exists from CPython 3.10",
)

POINTER = ctypes.sizeof(ctypes.c_void_p)
# PyTypeObject: ob_refcnt, ob_type, ob_size, tp_name, tp_basicsize, tp_itemsize,
# tp_dealloc, tp_vectorcall_offset, tp_getattr, tp_setattr, then tp_as_async.
TP_AS_ASYNC = 10 * POINTER
AM_SEND = 3 * POINTER  # am_await, am_aiter, am_anext, then am_send


def am_send_slot(cls) -> int:
    methods = ctypes.c_void_p.from_address(id(cls) + TP_AS_ASYNC).value
    assert methods, "the type has no async methods table"
    return ctypes.c_void_p.from_address(methods + AM_SEND).value or 0


def claims_am_send(era) -> bool:
    """What the compiled module says it installed (``_AM_SEND``, a private attribute)."""
    return importlib.import_module(f"{era.__name__}.{era.__name__}")._AM_SEND


def test_both_eras_claim_the_fast_path(era):
    assert claims_am_send(era) is True


def test_rust_coroutine_has_am_send(era):
    assert claims_am_send(era)
    assert am_send_slot(era.RustCoroutine) != 0


def test_pyiter_send_returns_without_stop_iteration(era):
    send = ctypes.pythonapi.PyIter_Send
    send.restype = ctypes.c_int
    send.argtypes = [ctypes.py_object, ctypes.py_object, ctypes.POINTER(ctypes.py_object)]
    coro = era.countdown(1, "value")
    result = ctypes.py_object()
    assert send(coro, None, ctypes.byref(result)) == 1  # PYGEN_NEXT
    assert result.value is None
    assert send(coro, None, ctypes.byref(result)) == 0  # PYGEN_RETURN, no exception
    assert result.value == "value"
    # PYGEN_ERROR with the exception set, which ctypes.pythonapi raises.
    with pytest.raises(RuntimeError, match="cannot reuse"):
        send(coro, None, ctypes.byref(result))
