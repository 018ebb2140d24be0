"""Run each of the guide's examples in both eras and print the results side by side."""

from __future__ import annotations

import importlib
import shutil
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from guide_examples import EXAMPLES  # noqa: E402

ERAS = ["pyo3_0_12_pyproto", "pyo3_modern_pymethods"]


def run(example, module) -> str:
    try:
        return f"returned {example(module)!r}"
    except BaseException as exc:  # noqa: BLE001 - the outcome is what we print
        return f"raised {type(exc).__name__}: {exc}"


def main() -> int:
    modules = {}
    for name in ERAS:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            print(f"{name}: not importable ({exc})")
    width = max(60, shutil.get_terminal_size((120, 20)).columns)
    column = (width - 3) // 2
    print(f"Python {sys.version.split()[0]}")
    print(" | ".join(
        f"{n} (PyO3 {m.PYO3_VERSION}, {m.ERA})".ljust(column) for n, m in modules.items()))
    differing = 0
    for example in EXAMPLES:
        print("-" * width)
        print(f"{example.__name__}: {example.__doc__}")
        results = [run(example, m) for m in modules.values()]
        differing += len(set(results)) > 1
        cells = [textwrap.wrap(r, column) or [""] for r in results]
        for row in range(max(len(c) for c in cells)):
            print(" | ".join((c[row] if row < len(c) else "").ljust(column) for c in cells))
    print("-" * width)
    print(f"{len(EXAMPLES)} examples, {differing} with differing results")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
