"""Run each of the guide's examples in both eras and print the results side by side.

    python tools/compare.py

Exits 1 if an example's results differ between the eras (``tools/dev compare`` runs it
after building both).
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from eras import MODULES

ROOT = Path(__file__).resolve().parent.parent


def guide_examples() -> list[Callable[[ModuleType], Any]]:
    """``EXAMPLES`` of ``examples/guide_examples.py``, imported from its path."""
    path = ROOT / "examples" / "guide_examples.py"
    spec = importlib.util.spec_from_file_location("guide_examples", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    examples: list[Callable[[ModuleType], Any]] = module.EXAMPLES
    return examples


def run(example: Callable[[ModuleType], Any], module: ModuleType) -> str:
    try:
        return f"returned {example(module)!r}"
    except BaseException as exc:  # noqa: BLE001 - the outcome is what we print
        return f"raised {type(exc).__name__}: {exc}"


def main() -> int:
    if len(sys.argv) > 1:
        print(__doc__, file=sys.stderr)
        return 0 if sys.argv[1] in ("-h", "--help") else 2
    examples = guide_examples()
    modules = {}
    for name in MODULES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            print(f"{name}: not importable ({exc})")
    width = max(60, shutil.get_terminal_size((120, 20)).columns)
    column = (width - 3) // 2
    print(f"Python {sys.version.split()[0]}")
    print(
        " | ".join(
            f"{n} (PyO3 {m.PYO3_VERSION}, {m.ERA})".ljust(column) for n, m in modules.items()
        )
    )
    differing = 0
    for example in examples:
        print("-" * width)
        print(f"{example.__name__}: {example.__doc__}")
        results = [run(example, m) for m in modules.values()]
        differing += len(set(results)) > 1
        cells = [textwrap.wrap(r, column) or [""] for r in results]
        for row in range(max(len(c) for c in cells)):
            print(" | ".join((c[row] if row < len(c) else "").ljust(column) for c in cells))
    print("-" * width)
    print(f"{len(examples)} examples, {differing} with differing results")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
