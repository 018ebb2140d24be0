"""What the valgrind tests run: every awaitable path of an era module, in a fresh process.

Usage: python valgrind_workload.py MODULE_NAME
"""

import asyncio
import contextlib
import importlib
import sys

m = importlib.import_module(sys.argv[1])


async def native(value):
    await asyncio.sleep(0)
    return value


async def main():
    total = await m.ready(1) + await m.countdown(3, 2)
    total += sum(await asyncio.gather(*(m.countdown(i % 3, 1) for i in range(50))))
    total += await asyncio.create_task(m.countdown(2, 3))
    total += await m.delegate(native(4)) + await m.delegate(m.delegate(m.ready(5)))
    total += await m.sleep(0.001, 6) + await m.sleep(0, 7) + await m.count_primes(30)
    sleeper = asyncio.ensure_future(m.sleep(10))
    await asyncio.sleep(0.001)
    sleeper.cancel()
    await asyncio.gather(sleeper, return_exceptions=True)
    return total


assert asyncio.run(main()) == 56 + 4 + 5 + 6 + 7 + 10
assert m.live_futures() == 0
assert m.drive(native(4)) == 4
assert m.drive(m.countdown(5, 5)) == 5
coro = m.countdown(2, None)
coro.send(None)
with contextlib.suppress(ValueError):
    coro.throw(ValueError("x"))
coro.close()
print("workload ok")
