"""Load and faults: many futures, many cancellations, shutdown, Ctrl-C."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap

import pytest


def rss_kib() -> int:
    """Resident memory of this process, in KiB (Linux)."""
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_a_hundred_thousand_concurrent_sleeps(era):
    async def main():
        return await asyncio.gather(*(era.sleep(0.002 * (i % 3), i) for i in range(100_000)))

    assert asyncio.run(main()) == list(range(100_000))
    assert era.live_futures() == 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_cancellation_rounds_do_not_grow(era):
    async def round_of_cancellations():
        tasks = [asyncio.ensure_future(era.sleep(30, i)) for i in range(1000)]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def main(rounds):
        for _ in range(rounds):
            await round_of_cancellations()

    asyncio.run(main(10))  # warm-up: allocator pools, the runtime's threads
    gc.collect()
    before = rss_kib()
    asyncio.run(main(100))
    gc.collect()
    assert era.live_futures() == 0
    assert rss_kib() - before < 8 * 1024, "resident memory grew by more than 8 MiB"


def run_script(body: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def test_shutdown_with_futures_pending(era):
    proc = run_script(
        f"""
        import asyncio, threading
        import {era.__name__} as era

        async def main():
            tasks = [asyncio.ensure_future(era.sleep(60)) for _ in range(100)]
            tasks.append(asyncio.ensure_future(era.count_primes(2**40)))
            await asyncio.sleep(0.05)
            return tasks

        loop = asyncio.new_event_loop()
        pending = loop.run_until_complete(main())
        print("exiting with", era.live_futures(), "futures pending")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "exiting with 101 futures pending" in proc.stdout
    assert "Fatal Python error" not in proc.stderr


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_ctrl_c_stops_an_awaited_count(era):
    proc = run_script(
        f"""
        import asyncio, os, signal, threading, time
        import {era.__name__} as era

        # Python leaves SIGINT alone if it starts ignored (as in a shell's background job).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            asyncio.run(era.count_primes(2**40))
        except KeyboardInterrupt:
            print("interrupted after", round(time.monotonic() - start, 1), "s")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("interrupted after"), proc.stdout + proc.stderr
    assert float(proc.stdout.split()[2]) < 5
