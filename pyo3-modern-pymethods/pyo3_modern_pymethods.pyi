"""Python awaitables written in Rust with today's PyO3 (#[pymethods])."""

from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, final, overload

__all__ = ["ERA", "PYO3_VERSION", "RustCoroutine", "countdown", "drive", "ready"]

_T = TypeVar("_T")

PYO3_VERSION: Final[str]
ERA: Final[Literal["pymethods"]]

def drive(awaitable: Any) -> Any:
    """Run `awaitable` to completion without an event loop and return its result."""

@final
class RustCoroutine(Coroutine[None, None, _T], Generic[_T]):
    """A coroutine written in Rust, made by `ready` or `countdown`."""

    def __await__(self) -> Generator[None, None, _T]: ...
    def __iter__(self) -> Generator[None, None, _T]: ...
    def __next__(self) -> None: ...
    def send(self, value: None) -> None: ...
    @overload
    def throw(
        self, typ: type[BaseException], val: object = None, tb: TracebackType | None = None
    ) -> None: ...
    @overload
    def throw(self, typ: BaseException, val: None = None, tb: TracebackType | None = None) -> None: ...
    def close(self) -> None: ...

def ready(value: _T) -> RustCoroutine[_T]:
    """A coroutine that returns `value` on its first step."""

def countdown(n: int, value: _T) -> RustCoroutine[_T]:
    """A coroutine that yields None `n` times, then returns `value`."""
