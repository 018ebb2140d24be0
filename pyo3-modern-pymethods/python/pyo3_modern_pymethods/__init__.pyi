"""Python awaitables written in Rust with today's PyO3 (#[pymethods])."""

from collections.abc import Awaitable, Coroutine, Generator
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, final, overload

from . import baselines as baselines

__all__ = [
    "ERA",
    "PYO3_VERSION",
    "RustAwait",
    "RustCoroutine",
    "RustFuture",
    "baselines",
    "count_primes",
    "countdown",
    "delegate",
    "drive",
    "live_futures",
    "ready",
    "sleep",
]

_T = TypeVar("_T")

PYO3_VERSION: Final[str]
ERA: Final[Literal["pymethods"]]

class _CoroutineProtocol(Coroutine[Any, Any, _T], Generic[_T]):
    """The coroutine protocol every awaitable of this module implements."""

    def __await__(self) -> Generator[Any, Any, _T]: ...
    def __iter__(self) -> Generator[Any, Any, _T]: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any, /) -> Any: ...
    @overload
    def throw(
        self, typ: type[BaseException], val: object = None, tb: TracebackType | None = None, /
    ) -> Any: ...
    @overload
    def throw(self, typ: BaseException, val: None = None, tb: TracebackType | None = None, /) -> Any: ...
    def close(self) -> None: ...

def drive(awaitable: Awaitable[_T]) -> _T:
    """Run `awaitable` to completion without an event loop and return its result."""

@final
class RustCoroutine(_CoroutineProtocol[_T]):
    """A coroutine written in Rust, made by `ready` or `countdown`."""

def ready(value: _T) -> RustCoroutine[_T]:
    """A coroutine that returns `value` on its first step."""

def countdown(n: int, value: _T) -> RustCoroutine[_T]:
    """A coroutine that yields None `n` times, then returns `value`."""

@final
class RustAwait(_CoroutineProtocol[_T]):
    """`await inner`, implemented in Rust (PEP 380 delegation); made by `delegate`."""

def delegate(awaitable: Awaitable[_T]) -> RustAwait[_T]:
    """An object that, awaited, behaves exactly as awaiting `awaitable`."""

@final
class RustFuture(_CoroutineProtocol[_T]):
    """A Rust future, awaitable from a running asyncio event loop."""

@overload
def sleep(seconds: float) -> RustFuture[None]: ...
@overload
def sleep(seconds: float, value: _T) -> RustFuture[_T]: ...
def count_primes(n: int) -> RustFuture[int]:
    """Count the primes below `n` on a worker thread, without the interpreter lock."""

def live_futures() -> int:
    """How many Rust futures of this module are alive right now."""
