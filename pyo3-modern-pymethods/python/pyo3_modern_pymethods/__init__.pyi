"""Python awaitables written in Rust with today's PyO3 (#[pymethods])."""

from collections.abc import AsyncIterator, Awaitable, Coroutine, Generator
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, final, overload

from . import baselines as baselines

__all__ = [
    "ERA",
    "Echo",
    "PYO3_VERSION",
    "RustAwait",
    "RustCoroutine",
    "RustFuture",
    "RustStream",
    "Semaphore",
    "baselines",
    "count_primes",
    "countdown",
    "delegate",
    "drive",
    "live_futures",
    "live_streams",
    "primes",
    "ready",
    "sleep",
    "ticks",
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
    def throw(
        self, typ: BaseException, val: None = None, tb: TracebackType | None = None, /
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
    """Count the primes below `n` on a worker thread, without the interpreter lock."""

def live_futures() -> int:
    """How many Rust futures of this module are alive right now."""

@final
class RustStream(AsyncIterator[int]):
    """A Rust stream, an async iterator for asyncio; made by `ticks` or `primes`.

    One `__anext__` at a time: awaiting a second while one is pending raises
    RuntimeError. A cancelled `__anext__` loses no item: the next one gives it.
    """

    def __aiter__(self) -> RustStream: ...
    def __anext__(self) -> RustFuture[int]:
        """An awaitable giving the next item, or raising StopAsyncIteration at the end."""

    def aclose(self) -> RustFuture[None]:
        """An awaitable that, awaited, drops the Rust stream at once (its worker stops)."""

def ticks(n: int, interval: float = 0.0) -> RustStream:
    """A stream of the ints 0 ... n-1, each `interval` seconds after the one before."""

def primes(n: int, buffer: int = 64) -> RustStream:
    """A stream of the primes below `n` (at most 2**40), found on a worker thread without
    the interpreter lock, never more than `buffer` primes ahead of the consumer."""

def live_streams() -> int:
    """How many Rust streams of this module are alive right now."""

@final
class Echo:
    """Echo(text): awaiting it yields to the event loop once, then returns `text`.

    The guide's first recipe: its own iterator, with no send/throw/close.
    """

    def __new__(cls, text: str) -> Echo: ...
    def __await__(self) -> Generator[None, Any, str]: ...
    def __iter__(self) -> Generator[None, Any, str]: ...
    def __next__(self) -> None: ...

@final
class Semaphore:
    """A bounded semaphore that tasks of every event loop of the process may share.

    First come, first served; a task cancelled while waiting takes no permit.
    """

    def __new__(cls, value: int = 1) -> Semaphore: ...
    def acquire(self) -> RustFuture[Literal[True]]:
        """An awaitable that waits for a permit and gives True."""

    def release(self) -> None:
        """Give a permit back: ValueError if none is held."""

    def locked(self) -> bool:
        """Whether an acquire() would have to wait."""

    def __aenter__(self) -> RustFuture[None]:
        """An awaitable that waits for a permit (`async with sem:`)."""

    def __aexit__(
        self,
        typ: type[BaseException] | None,
        val: BaseException | None,
        tb: TracebackType | None,
    ) -> RustFuture[None]:
        """Release the permit; the awaitable gives None (exceptions propagate)."""
