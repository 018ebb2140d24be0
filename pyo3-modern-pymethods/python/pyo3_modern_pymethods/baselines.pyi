"""The same awaitables written as the ecosystem writes them: PyO3 `async fn`, and
pyo3-async-runtimes' `future_into_py` on tokio."""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar, overload

__all__ = ["ready_async_fn", "sleep_async_fn", "sleep_future_into_py"]

_T = TypeVar("_T")

def ready_async_fn(value: _T) -> Coroutine[Any, Any, _T]: ...
@overload
def sleep_async_fn(seconds: float) -> Coroutine[Any, Any, None]: ...
@overload
def sleep_async_fn(seconds: float, value: _T) -> Coroutine[Any, Any, _T]: ...
@overload
def sleep_future_into_py(seconds: float) -> asyncio.Future[None]: ...
@overload
def sleep_future_into_py(seconds: float, value: _T) -> asyncio.Future[_T]: ...
