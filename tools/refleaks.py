"""Reference and memory-block leaks of the era modules, checked the way regrtest -R does.

    python tools/refleaks.py [--eras pyproto,pymethods] [-k SUBSTRING] [-v]

Needs a debug CPython (``Py_DEBUG``: ``sys.gettotalrefcount()``); ``tools/pythons.sh``
provides 3.11d, 3.14d and 3.15d, and the ``py3XXd-*`` tox environments run this after
the suite. Each workload below exercises one public path of an era module (``drive``,
``delegate`` through send/throw/close, ``RustCoroutine``, ``RustFuture`` with its
cancellation, ``RustStream``, ``Semaphore``) and is run ``WARMUPS`` times to warm up,
then 5 times measured: after each run the collector runs and the change of
``sys.gettotalrefcount()`` and of ``sys.getallocatedblocks()`` is recorded. As in
regrtest, a workload leaks when every measured change of either is positive (a
steady growth; noise goes up and down), in each of ``MEASUREMENTS`` measurements in a
row. Exit status 1 if any workload leaks.

The eras come from ``--eras`` or ``PYO3_ASYNC_ERAS`` (as for the shared suite).
``--junitxml PATH`` also writes a JUnit report (one case per era and workload, a leak a
failure) for the compatibility matrix (``tools/matrix.py`` shows it as the
``refleaks`` line of the environment's cell).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import os
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from types import ModuleType
from typing import Any, Callable, Coroutine, Generator

from eras import ERAS

# regrtest warms up 3 times; the timer and cancellation paths of RustFuture need more
# (in both eras): their block count grows in the first 10 to 20 runs, then stays flat
# (measured on 3.11d with 40 runs; references stay flat throughout).
WARMUPS = 20
RUNS = 5
# A workload whose measured runs all grow is measured again, up to this many times in
# all, and leaks only if every measurement says so: a growth of one object per run
# (a thread of Rust's blocking pool replaced under load, say) can go on for five runs
# by chance, and was seen to once in 3.15d's future workload, not again in a rerun;
# a leak per step (the 0.12 leaks fixed here: 20 to 120 per run) shows every time.
MEASUREMENTS = 3
# Each workload's body repeats its step this many times per run, so that a leak of one
# reference per step is a delta of REPEAT, well above the noise of a run.
REPEAT = 20


class Boom(Exception):
    """Raised by the workloads' own coroutines; a new instance each time."""


async def native(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


async def raises() -> None:
    await asyncio.sleep(0)
    raise Boom("from native")


def yields(n: int) -> Generator[Any, Any, str]:
    """A generator-based awaitable that yields n times, for delegate's send/throw/close."""
    for _ in range(n):
        yield None
    return "done"


class Awaitable:
    def __init__(self, n: int) -> None:
        self.n = n

    def __await__(self) -> Generator[Any, Any, str]:
        return yields(self.n)


Workload = Callable[[ModuleType, asyncio.AbstractEventLoop], None]


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    return loop.run_until_complete(coro)


def w_ready_countdown(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        for i in range(REPEAT):
            assert await m.ready(i) == i
            assert await m.countdown(3, i) == i

    run(loop, main())


def w_countdown_big_int(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    for _ in range(REPEAT):
        for n in (2**80, -1):
            with contextlib.suppress(OverflowError, ValueError):
                m.countdown(n, None)
        assert m.drive(m.countdown(0, 1)) == 1


def w_drive(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    for i in range(REPEAT):
        assert m.drive(m.countdown(3, i)) == i
        assert m.drive(Awaitable(2)) == "done"
        with contextlib.suppress(Boom):
            m.drive(raises())


def w_coroutine_send_throw_close(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    for _ in range(REPEAT):
        coro = m.countdown(3, "v")
        coro.send(None)
        with contextlib.suppress(Boom):
            coro.throw(Boom("thrown"))
        coro.close()
        coro = m.countdown(3, "v")
        coro.send(None)
        with contextlib.suppress(Boom):
            coro.throw(Boom)
        coro = m.countdown(3, "v")
        coro.send(None)
        coro.close()
        coro = m.countdown(1, "v")
        coro.send(None)
        returned = None
        try:
            coro.send(None)
        except StopIteration as stop:
            returned = stop.value
        assert returned == "v"


def w_delegate(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        for i in range(REPEAT):
            assert await m.delegate(native(i)) == i
            assert await m.delegate(m.delegate(m.ready(i))) == i
            with contextlib.suppress(Boom):
                await m.delegate(raises())

    run(loop, main())


def w_delegate_send_throw_close(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    for _ in range(REPEAT):
        d = m.delegate(Awaitable(3))
        d.send(None)
        d.send("x")
        with contextlib.suppress(Boom):
            d.throw(Boom("in"))
        d = m.delegate(Awaitable(3))
        d.send(None)
        d.close()
        d = m.delegate(Awaitable(1))
        d.send(None)
        returned = None
        try:
            d.send(None)
        except StopIteration as stop:
            returned = stop.value
        assert returned == "done"


def w_future(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        for i in range(REPEAT):
            assert await m.sleep(0, i) == i
            assert await m.sleep(0.0001, i) == i
        assert await m.count_primes(30) == 10

    run(loop, main())


def w_future_cancel(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        for _ in range(REPEAT):
            task = asyncio.ensure_future(m.sleep(10))
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            task = asyncio.ensure_future(m.delegate(m.sleep(10)))
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert m.live_futures() == 0

    run(loop, main())


def w_stream(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        for _ in range(REPEAT // 4):
            assert [x async for x in m.ticks(5)] == list(range(5))
            assert [p async for p in m.primes(30)][-1] == 29
            stream = m.primes(1000, 4)
            await stream.__anext__()
            await stream.aclose()
        assert m.live_streams() == 0

    run(loop, main())


def w_semaphore(m: ModuleType, loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        sem = m.Semaphore(1)
        for _ in range(REPEAT):
            async with sem:
                assert sem.locked()
            await sem.acquire()
            waiter = asyncio.ensure_future(sem.acquire())
            await asyncio.sleep(0)
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            sem.release()

    run(loop, main())


WORKLOADS: dict[str, Workload] = {
    name[2:]: func for name, func in sorted(globals().items()) if name.startswith("w_")
}


def measure(
    m: ModuleType,
    workload: Workload,
    loop: asyncio.AbstractEventLoop,
    warmups: int = WARMUPS,
    runs: int = RUNS,
) -> tuple[list[int], list[int]]:
    """The reference and block deltas of the measured runs."""
    # The readings go into lists made beforehand, each replacing an int of its own (not a
    # cached small one), so that keeping them changes neither count.
    totals = [10**9 + i for i in range(warmups + runs + 1)]
    allocated = [10**9 + i for i in range(warmups + runs + 1)]
    gc.collect()
    totals[0], allocated[0] = sys.gettotalrefcount(), sys.getallocatedblocks()
    for i in range(1, warmups + runs + 1):
        workload(m, loop)
        gc.collect()
        totals[i], allocated[i] = sys.gettotalrefcount(), sys.getallocatedblocks()
    refs = [totals[i] - totals[i - 1] for i in range(warmups + 1, warmups + runs + 1)]
    blocks = [allocated[i] - allocated[i - 1] for i in range(warmups + 1, warmups + runs + 1)]
    return refs, blocks


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--eras", default=os.environ.get("PYO3_ASYNC_ERAS", ",".join(ERAS)))
    parser.add_argument(
        "-k", dest="only", default="", help="only the workloads with this in their name"
    )
    parser.add_argument("--warmups", type=int, default=WARMUPS)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--junitxml", metavar="PATH", help="also write a JUnit report here")
    parser.add_argument("-v", dest="verbose", action="store_true", help="print every delta")
    args = parser.parse_args(argv)
    if not hasattr(sys, "gettotalrefcount"):
        print("refleaks.py needs a debug build of CPython (sys.gettotalrefcount)", file=sys.stderr)
        return 2
    leaks = 0
    suite = ET.Element(
        "testsuite",
        name="refleaks",
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    for era in (e.strip() for e in args.eras.split(",") if e.strip()):
        m = importlib.import_module(ERAS[era].module)
        loop = asyncio.new_event_loop()
        try:
            for name, workload in WORKLOADS.items():
                if args.only not in name:
                    continue
                for _attempt in range(MEASUREMENTS):
                    refs, blocks = measure(m, workload, loop, args.warmups, args.runs)
                    leaked = all(d > 0 for d in refs) or all(d > 0 for d in blocks)
                    if not leaked:
                        break
                leaks += leaked
                case = ET.SubElement(suite, "testcase", classname=f"refleaks.{era}", name=name)
                if leaked:
                    failure = ET.SubElement(case, "failure", message="leak")
                    failure.text = f"references {refs} blocks {blocks}"
                if leaked or args.verbose:
                    verdict = "LEAK" if leaked else "ok"
                    print(f"{era:10} {name:28} {verdict:4} references {refs} blocks {blocks}")
        finally:
            loop.close()
    if args.junitxml:
        suite.set("tests", str(len(suite)))
        suite.set("failures", str(leaks))
        os.makedirs(os.path.dirname(os.path.abspath(args.junitxml)), exist_ok=True)
        root = ET.Element("testsuites")
        root.append(suite)
        ET.ElementTree(root).write(args.junitxml, encoding="utf-8", xml_declaration=True)
    total = sum(1 for name in WORKLOADS if args.only in name)
    print(
        f"refleaks.py: {leaks} leaking workload(s) of {total} per era, on {sys.version.split()[0]}"
    )
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
