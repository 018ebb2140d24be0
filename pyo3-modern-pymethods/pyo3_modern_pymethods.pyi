"""Python awaitables written in Rust with today's PyO3 (#[pymethods])."""

from collections.abc import Awaitable, Coroutine, Generator
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, final, overload

__all__ = [
    "ERA",
    "PYO3_VERSION",
    "RustAwait",
    "RustCoroutine",
    "countdown",
    "delegate",
    "drive",
    "ready",
]

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

@final
class RustAwait(Coroutine[Any, Any, _T], Generic[_T]):
    """`await inner`, implemented in Rust (PEP 380 delegation); made by `delegate`."""

    def __await__(self) -> Generator[Any, Any, _T]: ...
    def __iter__(self) -> Generator[Any, Any, _T]: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...
    @overload
    def throw(
        self, typ: type[BaseException], val: object = None, tb: TracebackType | None = None
    ) -> Any: ...
    @overload
    def throw(self, typ: BaseException, val: None = None, tb: TracebackType | None = None) -> Any: ...
    def close(self) -> None: ...

def delegate(awaitable: Awaitable[_T]) -> RustAwait[_T]:
    """An object that, awaited, behaves exactly as awaiting `awaitable`."""
