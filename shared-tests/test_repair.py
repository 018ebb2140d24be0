"""The PyO3 0.12 era's repairs check themselves (``repair.rs``).

Fix (b) pads the type objects PyO3 0.12 allocates, through the crate's global allocator,
while it is armed around their creation. Arming is process-wide and the padded slots
are few: another thread's allocation of the same size can take one, and once they have
run out a type object is allocated unpadded, too short for CPython 3.12+. So the module
checks that each type object it created is a padded block, and refuses to import
(``ImportError`` naming the class) if one is not.

``PYO3_0_12_PYPROTO_EXHAUST_PADDING=1`` takes every padded slot at import, before the
classes are created, to show that check firing. The padding is armed on every Python
version the era supports (whenever ``PYO3_0_12_PYPROTO_UNFIXED`` is unset, which these
tests make sure of), so the check must fire on every version.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXHAUST = "PYO3_0_12_PYPROTO_EXHAUST_PADDING"
UNFIXED = "PYO3_0_12_PYPROTO_UNFIXED"


def import_in_subprocess(module: str, **env: str) -> subprocess.CompletedProcess:
    """``python -c "import module"`` with the repairs on, plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if k not in (EXHAUST, UNFIXED)}
    return subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.ERA)"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, **env},
    )


@pytest.fixture
def pyproto(era):
    if era.ERA != "pyproto":
        pytest.skip("only the PyO3 0.12 era pads its type objects")
    return era


def test_imports_with_the_padding(pyproto):
    proc = import_in_subprocess(pyproto.__name__)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["pyproto"]


@pytest.mark.parametrize("value", ["0", ""])
def test_the_switch_off_is_no_switch(pyproto, value):
    proc = import_in_subprocess(pyproto.__name__, **{EXHAUST: value})
    assert proc.returncode == 0, proc.stderr


def test_an_unpadded_type_object_fails_the_import(pyproto):
    proc = import_in_subprocess(pyproto.__name__, **{EXHAUST: "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: "), proc.stderr
    # The first class the module creates, and why.
    assert "type object of class RustCoroutine" in last
    assert "without the padding of fix (b)" in last
    assert f"taken on purpose ({EXHAUST}=1)" in last
    assert "Traceback" in proc.stderr
    assert proc.stdout == ""


# Fix (d) and debug CPython: its `tp_dealloc` untracks the object before dropping it;
# PyO3 0.12's own then called `PyObject_CallFinalizerFromDealloc`, which a debug build of
# CPython 3.14+ lets run only on a tracked object (an assertion: the process aborted at
# the first `RustCoroutine` freed). Each GC class is freed here in a fresh interpreter,
# both by reference count and by the collector (a cycle), with an `await` finished, one
# left suspended and one never started. On a release build this checks the same frees.
DEALLOC_SCRIPT = """
import asyncio, gc, sys
m = __import__(sys.argv[1])

async def native():
    await asyncio.sleep(0)

async def main():
    await m.countdown(2, None)
    await m.delegate(native())
    await m.sleep(0)

asyncio.run(main())
for make in (lambda: m.countdown(2, None), lambda: m.delegate(native()), lambda: m.sleep(0)):
    obj = make()          # never started
    del obj
    obj = make()
    try:
        obj.send(None)    # suspended
    except (StopIteration, RuntimeError):  # RustFuture: no running loop here
        pass
    del obj
    holder = [make()]
    holder.append(holder) # a cycle, freed by the collector
    del holder
    gc.collect()
print("freed")
"""


def test_gc_classes_free_on_every_build(era):
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", DEALLOC_SCRIPT, era.__name__],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["freed"]
