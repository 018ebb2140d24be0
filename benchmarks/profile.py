"""Where the instructions of one `await` go: a callgrind profile, native vs each era.

    python benchmarks/profile.py [3.11 3.12 ...]    (default: 3.11 and 3.12)

For each version, the venv of ``across.py`` (``build/bench/venv-X.Y``, both eras freshly
built) runs each workload twice under ``valgrind --tool=callgrind``: ``N`` operations,
and zero. The difference, divided by ``N``, is what one operation costs, function by
function (instructions executed, not time: exact and repeatable). The workloads are the
benchmarks "await of a ready value" (``await factory(1)``, stepped with no event loop)
and "one suspension, delegated, stepped from C".
Functions are sorted into a few buckets by name (self cost), the `StopIteration` round
trip is added up from the inclusive cost of its two ends, and each version's table goes to
``docs/src/generated/profile-WORKLOAD-X.Y.md`` for the guide's performance chapter.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from across import ROOT, venv_for  # this script's directory, first on sys.path
from bench import ERAS

N = 20_000
DEFAULT = ["3.11", "3.12"]
GENERATED = ROOT / "docs" / "src" / "generated"

WORKLOADS = {
    # "await of a ready value": `await factory(1)`, stepped by `send(None)`.
    "ready": """
import importlib, sys
name, n = sys.argv[1], int(sys.argv[2])
if name == "native":
    async def factory(value):
        return value
else:
    factory = importlib.import_module(name).ready
async def loop():
    for _ in range(n):
        await factory(1)
coro = loop()
try:
    coro.send(None)
except StopIteration:
    pass
""",
    # "one suspension, delegated, stepped from C": a `for` loop over `__await__()`.
    "delegate": """
import importlib, sys, types
name, n = sys.argv[1], int(sys.argv[2])
@types.coroutine
def yields(n):
    for _ in range(n):
        yield
    return n
if name == "native":
    async def wrapper(awaitable):
        return await awaitable
else:
    wrapper = importlib.import_module(name).delegate
def main():
    for _ in wrapper(yields(n)).__await__():
        pass
main()
""",
}
TITLES = {
    "ready": ("`await factory(1)`", "awaits", "ready"),
    "delegate": (
        "one step of `delegate(x)` against `await x`, stepped from C",
        "steps",
        "delegate",
    ),
}

IMPLEMENTATIONS = ["native", *ERAS]
LABELS = {"native": "native", **{name: f"`{name}`" for name in ERAS}}

# (bucket, pattern over the function's name); the first match wins.
BUCKETS = [
    (
        "returning the value as `StopIteration` (make, raise, match, fetch, free)",
        r"StopIteration|BaseException|PyErr|_PyErr_|FetchStopIterationValue|GetRaisedException"
        r"|ExceptionMatches|raise_stop_iteration|new_stop_iteration|PyException|IsSubclass"
        r"|PyType_IsSubtype|GetTopmostException",
    ),
    (
        "allocating, initialising and freeing objects (the awaitable, and any exception)",
        r"GenericAlloc|GC_|_Py_MakeCoro|gen_dealloc|tp_dealloc|tp_alloc|create_class_object"
        r"|into_new_object|Malloc|_PyObject_Free|PyObject_Free|memset|_Py_NewReference|_PyFrame_"
        r"|CallFinalizer|_PyTrash|object_new|_Py_Dealloc|InitializeDict|PyClassAlloc|dealloc",
    ),
    ("tuples (arguments, `StopIteration.args`)", r"[Tt]uple"),
    (
        "calling into Rust: PyO3's wrappers, argument parsing, thread-locals",
        r"pyo3|extract_argument|trampoline|__tls_get_addr|MakeTpCall|cfunction|vectorcall"
        r"|_Py_CheckFunctionResult|GILPool|gil::|slots::|catch_unwind|PyGILState|Py_IncRef"
        r"|Py_DecRef|PyIter_Check|PyObject_Call",
    ),
    (
        "the interpreter loop (frames, `await` bytecodes)",
        r"_PyEval|EvalFrame|_PyThreadState_|GetAwaitableIter|_PyCoro|gen_",
    ),
]
OTHER = "everything else (ints, refcounts, ...)"
ROUND_TRIP_ROW = "the `StopIteration` round trip, all in (raise, catch, `.value`, free)"


# Functions whose inclusive cost (with everything they call) is the `StopIteration` round
# trip: raising it in the slot, and `await` catching it, taking `.value` and freeing it.
ROUND_TRIP = r"(slots::raise_stop_iteration|_PyGen_FetchStopIterationValue)$"


def callgrind(python: str, workload: str, name: str, n: int) -> dict[str, int]:
    """Cost (instructions) per function of one run of the workload: self cost, plus
    ``"inclusive:" + name`` for the functions of ``ROUND_TRIP``."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                python,
                "-c",
                WORKLOADS[workload],
                name,
                str(n),
            ],
            check=True,
            capture_output=True,
        )
        costs: dict[str, int] = {}
        for inclusive in ("no", "yes"):
            text = subprocess.run(
                ["callgrind_annotate", f"--inclusive={inclusive}", "--threshold=100", str(out)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for function, cost in parse(text):
                if inclusive == "yes":
                    if not re.search(ROUND_TRIP, function):
                        continue
                    function = "inclusive:" + function
                costs[function] = costs.get(function, 0) + cost
    return costs


def parse(text: str):
    """(function, cost) of each line of ``callgrind_annotate``'s output."""
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S.*?)(?: \[.*\])?$", line)
        if not match or ":" not in match.group(2):
            continue
        function = match.group(2).split(":", 1)[1]
        function = re.sub(r"'\d+$", "", function)  # recursion levels are one function
        yield function, int(match.group(1).replace(",", ""))


def per_operation(python: str, workload: str, name: str) -> dict[str, float]:
    """Instructions of one operation, per function: (N iterations - 0 iterations) / N."""
    base, loaded = callgrind(python, workload, name, 0), callgrind(python, workload, name, N)
    return {f: (loaded.get(f, 0) - base.get(f, 0)) / N for f in set(base) | set(loaded)}


def bucket_of(function: str) -> str:
    for bucket, pattern in BUCKETS:
        if re.search(pattern, function):
            return bucket
    return OTHER


def instructions(count: float) -> str:
    """A per-operation instruction count as the tables print it: rounded to a whole
    number with thousands separators. Rounding goes through ``round`` (an ``int``), so a
    small negative difference of two runs prints ``0``, not ``-0`` as ``f"{-0.3:,.0f}"``
    would."""
    return f"{round(count):,}"


def table(python: str, version: str, workload: str) -> str:
    columns = {}
    for name in IMPLEMENTATIONS:
        costs = per_operation(python, workload, name)
        buckets: dict[str, float] = {}
        for function, cost in costs.items():
            bucket = ROUND_TRIP_ROW if function.startswith("inclusive:") else bucket_of(function)
            buckets[bucket] = buckets.get(bucket, 0) + cost
        columns[name] = buckets
    names = [b for b, _ in BUCKETS] + [OTHER]
    total = {n: sum(c for b, c in columns[n].items() if b != ROUND_TRIP_ROW) for n in columns}
    what, unit, _ = TITLES[workload]
    lines = [
        f"Instructions per {what} on CPython {version} (callgrind, "
        f"{N:,} {unit} minus an empty loop; generated by `benchmarks/profile.py`):",
        "",
        "| where | " + " | ".join(LABELS[n] for n in IMPLEMENTATIONS) + " |",
        "|---|" + "---:|" * len(IMPLEMENTATIONS),
    ]
    for bucket in names:
        cells = [instructions(columns[n].get(bucket, 0)) for n in IMPLEMENTATIONS]
        lines.append(f"| {bucket} | " + " | ".join(cells) + " |")
    totals = [total[n] for n in IMPLEMENTATIONS]
    lines.append("| **total** | " + " | ".join(f"**{instructions(t)}**" for t in totals) + " |")
    lines.append(
        "| ratio to native | " + " | ".join(f"{t / total['native']:.2f}×" for t in totals) + " |"
    )
    cells = [instructions(columns[n].get(ROUND_TRIP_ROW, 0)) for n in IMPLEMENTATIONS]
    lines.append(f"| of the total: {ROUND_TRIP_ROW} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    versions = sys.argv[1:] or DEFAULT
    for version in versions:
        python = venv_for(version)
        if python is None:
            continue
        actual = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for workload in WORKLOADS:
            text = table(python, actual, workload)
            (GENERATED / f"profile-{workload}-{version}.md").write_text(
                "<!-- generated by benchmarks/profile.py -->\n" + text
            )
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
