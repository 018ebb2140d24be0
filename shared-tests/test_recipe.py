"""The guide's first recipe (docs/src/introduction.md, "A minimal recipe"): ``Echo``, the
smallest class Python can ``await``, written once per era (``src/recipe.rs``).

``await Echo(text)`` gives the event loop one turn, then returns ``text``."""

from __future__ import annotations

import asyncio

import pytest

from async_helpers import run

pytestmark = pytest.mark.valgrind


def test_await_returns_the_text(era):
    async def main():
        return await era.Echo("hello")

    assert run(main) == "hello"


def test_it_gives_the_loop_one_turn(era):
    """Another task runs between the start of the await and its result."""
    order = []

    async def other():
        order.append("other")

    async def main():
        task = asyncio.ensure_future(other())
        order.append("before")
        order.append(await era.Echo("echo"))
        await task
        return order

    assert run(main) == ["before", "other", "echo"]


def test_the_protocol_step_by_step(era):
    echo = era.Echo("text")
    iterator = echo.__await__()
    assert iterator is echo
    assert iter(echo) is echo
    assert next(iterator) is None  # the one bare yield
    with pytest.raises(StopIteration) as stopped:
        next(iterator)
    assert stopped.value.value == "text"


def test_drive_runs_it_without_a_loop(era):
    assert era.drive(era.Echo("driven")) == "driven"


def test_many_echoes_gathered(era):
    async def main():
        return await asyncio.gather(*(era.Echo(str(i)) for i in range(100)))

    assert run(main) == [str(i) for i in range(100)]


@pytest.mark.parametrize("bad", [1, None, b"bytes"])
def test_text_must_be_a_str(era, bad):
    with pytest.raises(TypeError):
        era.Echo(bad)


def test_not_a_coroutine(era):
    """No send/throw/close: ensure_future wraps it, create_task refuses it."""
    echo = era.Echo("x")
    assert not hasattr(echo, "send")
    assert not asyncio.iscoroutine(echo)

    async def main():
        with pytest.raises(TypeError):
            asyncio.get_running_loop().create_task(era.Echo("refused"))
        return await asyncio.ensure_future(era.Echo("wrapped"))

    assert run(main) == "wrapped"
