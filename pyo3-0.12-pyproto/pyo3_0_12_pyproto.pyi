"""Python awaitables written in Rust as PyO3 0.12 code was (#[pyproto])."""

# Parsed by the mypy of every supported Python, down to 3.7's (mypy 1.4): no `/` in
# signatures (positional-only parameters are spelled `__name`), no `X | Y`, no `type[...]`.
from types import TracebackType
from typing import (
    Any,
    Awaitable,
    Coroutine,
    Generator,
    Generic,
    Optional,
    Type,
    TypeVar,
    overload,
)

from typing_extensions import Final, Literal, final

__all__ = [
    "ERA",
    "PYO3_VERSION",
    "RustAwait",
    "RustCoroutine",
    "RustFuture",
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
ERA: Final[Literal["pyproto"]]

class _CoroutineProtocol(Coroutine[Any, Any, _T], Generic[_T]):
    """The coroutine protocol every awaitable of this module implements."""

    def __await__(self) -> Generator[Any, Any, _T]: ...
    def __iter__(self) -> Generator[Any, Any, _T]: ...
    def __next__(self) -> Any: ...
    def send(self, __value: Any) -> Any: ...
    @overload
    def throw(
        self,
        __typ: Type[BaseException],
        __val: object = None,
        __tb: Optional[TracebackType] = None,
    ) -> Any: ...
    @overload
    def throw(
        self, __typ: BaseException, __val: None = None, __tb: Optional[TracebackType] = None
    ) -> Any: ...
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
    """Count the primes below `n` on a worker thread, without the GIL."""

def live_futures() -> int:
    """How many Rust futures of this module are alive right now."""
