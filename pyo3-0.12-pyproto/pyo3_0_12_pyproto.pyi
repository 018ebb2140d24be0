"""Python awaitables written in Rust as PyO3 0.12 code was (#[pyproto])."""

from types import TracebackType
from typing import Awaitable, Coroutine, Generator, Generic, Optional, Type, TypeVar, overload

from typing_extensions import Final, Literal, final

__all__ = ["ERA", "PYO3_VERSION", "RustCoroutine", "countdown", "drive", "ready"]

_T = TypeVar("_T")

PYO3_VERSION: Final[str]
ERA: Final[Literal["pyproto"]]

def drive(awaitable: Awaitable[_T]) -> _T:
    """Run `awaitable` to completion without an event loop and return its result."""

@final
class RustCoroutine(Coroutine[None, None, _T], Generic[_T]):
    """A coroutine written in Rust, made by `ready` or `countdown`."""

    def __await__(self) -> Generator[None, None, _T]: ...
    def __iter__(self) -> Generator[None, None, _T]: ...
    def __next__(self) -> None: ...
    def send(self, value: None) -> None: ...
    # Positional-only, like a native coroutine's throw (it takes `*args` in Rust).
    @overload
    def throw(
        self,
        typ: Type[BaseException],
        val: object = None,
        tb: Optional[TracebackType] = None,
        /,
    ) -> None: ...
    @overload
    def throw(
        self, typ: BaseException, val: None = None, tb: Optional[TracebackType] = None, /
    ) -> None: ...
    def close(self) -> None: ...

def ready(value: _T) -> RustCoroutine[_T]:
    """A coroutine that returns `value` on its first step."""

def countdown(n: int, value: _T) -> RustCoroutine[_T]:
    """A coroutine that yields None `n` times, then returns `value`."""
