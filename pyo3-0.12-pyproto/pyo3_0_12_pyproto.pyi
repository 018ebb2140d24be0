"""Python awaitables written in Rust as PyO3 0.12 code was (#[pyproto])."""

# Parsed by the mypy of every supported Python, down to 3.7's (mypy 1.4): no `/` in
# signatures (positional-only parameters are spelled `__name`), no `X | Y`, no `type[...]`.
from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Coroutine,
    Generator,
    Generic,
    TypeVar,
    overload,
)

from typing_extensions import Final, Literal, final

__all__ = [
    "ERA",
    "Echo",
    "PYO3_VERSION",
    "RustAwait",
    "RustCoroutine",
    "RustFuture",
    "RustStream",
    "Semaphore",
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
        __typ: type[BaseException],
        __val: object = None,
        __tb: TracebackType | None = None,
    ) -> Any: ...
    @overload
    def throw(
        self, __typ: BaseException, __val: None = None, __tb: TracebackType | None = None
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

@final
class RustStream(AsyncIterator[int]):
    """A Rust stream, an async iterator for asyncio; made by `ticks` or `primes`."""

    def __aiter__(self) -> RustStream: ...
    def __anext__(self) -> RustFuture[int]: ...
    def aclose(self) -> RustFuture[None]:
        """An awaitable that drops the Rust stream (a worker stops) and gives None."""

    @property
    def _produced(self) -> int:
        """Test hook: how many items the producer has made or handed to its channel."""

def ticks(n: int, interval: float = 0.0) -> RustStream:
    """The ints 0 ... n-1, each `interval` seconds after the one before."""

def primes(n: int, buffer: int = 64) -> RustStream:
    """The primes below `n`, found on a worker thread without the GIL, at most `buffer`
    ahead of the consumer."""

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
    """A bounded semaphore that tasks of every event loop of the process may share."""

    def __new__(cls, value: int = 1) -> Semaphore: ...
    def acquire(self) -> RustFuture[Literal[True]]:
        """An awaitable that waits for a permit and gives True."""

    def release(self) -> None:
        """Gives a held permit back; ValueError if none is held."""

    def locked(self) -> bool:
        """Whether an acquire() would have to wait."""

    def __aenter__(self) -> RustFuture[None]: ...
    def __aexit__(self, __typ: Any, __val: Any, __tb: Any) -> RustFuture[None]: ...
