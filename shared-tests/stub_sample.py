"""A program type-checked against each era's stubs (the test substitutes the module)."""

import asyncio
from typing import List  # the sample is also checked as Python 3.7 code

import ERA_MODULE as m

assert m.ERA in ("pyproto", "pymethods")
version: str = m.PYO3_VERSION


async def main() -> int:
    first: int = await m.ready(1)
    second: str = await m.countdown(2, "two")
    both = await asyncio.gather(m.ready(3), m.countdown(1, 4))
    echoed: str = await m.Echo("echo")
    return first + len(second) + sum(both) + len(echoed)


coro: "m.RustCoroutine[int]" = m.ready(5)
coro.close()
total: int = asyncio.run(main())
driven: object = m.drive(m.countdown(3, None))


async def streams_and_semaphore() -> "List[int]":
    ticked = [i async for i in m.ticks(3, interval=0.0)]
    stream: m.RustStream = m.primes(100, buffer=8)
    first: int = await stream.__anext__()
    await stream.aclose()
    sem = m.Semaphore(2)
    acquired: bool = await sem.acquire()
    sem.release()
    async with sem:
        locked: bool = sem.locked()
    return ticked + [first, m.live_streams(), int(acquired), int(locked)]


streamed: "List[int]" = asyncio.run(streams_and_semaphore())
