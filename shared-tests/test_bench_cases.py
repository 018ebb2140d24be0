"""The benchmark rows are what they say: each row that names an era runs that era's code,
and only it (``benchmarks/bench.py``; no timing here).

A row's callable is a closure; a late-binding lambda in a loop over the eras once made
both eras' rows of a group call the last era's module. This walks everything each row's
callable holds (closure cells, default arguments, bound arguments, and the functions,
modules and classes reachable from them) and checks that the era modules it reaches are
exactly the row's own: none for a native row.
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

from eras import MODULES

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_under_test", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def era_of(obj: object) -> str | None:
    """The era module an object belongs to (by its module's top-level name), if any."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    if not isinstance(name, str):
        return None
    top = name.split(".")[0]
    return top if top in MODULES else None


def reached_eras(root: object) -> set[str]:
    """Every era module whose objects ``root`` holds, through closures and defaults."""
    found: set[str] = set()
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        era = era_of(obj)
        if era is not None:
            found.add(era)
            continue
        if isinstance(obj, types.FunctionType):
            todo.extend(cell.cell_contents for cell in obj.__closure__ or ())
            todo.extend(obj.__defaults__ or ())
            todo.extend((obj.__kwdefaults__ or {}).values())
        elif isinstance(obj, (tuple, list)):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.values())
    return found


def all_rows(bench) -> list[tuple[str, str | None, object]]:
    """(name, era, callable) of every row: timed, memory and load."""
    eras = bench.load_eras()
    rows: list[tuple[str, str | None, object]] = [
        (f"{case.group} / {case.name}", case.era, case.run)
        for case in bench.benchmarks(eras, short=True)
    ]
    for table in [bench.pending_factories(eras), bench.coroutine_factories(eras)]:
        rows += [(name, era, factory) for name, (era, factory) in table.items()]
    rows += [(name, era, f) for name, (era, f, _) in bench.load_factories(eras).items()]
    return rows


def test_every_era_has_rows(bench):
    """Each importable era appears in the timed rows (both eras are really both eras)."""
    eras = bench.load_eras()
    assert eras, "no era module importable"
    cases = bench.benchmarks(eras, short=True)
    for name in eras:
        assert any(case.era == name for case in cases), name


def test_each_row_runs_its_own_era(bench):
    wrong = []
    for name, era, run in all_rows(bench):
        expected = set() if era is None else {era}
        reached = reached_eras(run)
        if reached != expected:
            wrong.append(f"{name}: labelled {era}, reaches {sorted(reached)}")
        if era is not None and not name.split(" / ")[-1].split("python loop over ")[-1].startswith(
            era
        ):
            wrong.append(f"{name}: its name does not start with its era {era}")
    assert not wrong, "\n".join(wrong)


def test_baselines_exist(bench):
    """Every row's baseline is a row of its group, measured in the same run."""
    cases = bench.benchmarks(bench.load_eras(), short=True)
    names = {(case.group, case.name) for case in cases}
    for case in cases:
        assert (case.group, case.baseline) in names, case


def test_late_binding_is_caught(bench):
    """The check itself finds the bug it is for: a lambda closing over the loop variable."""
    eras = bench.load_eras()
    if len(eras) < 2:
        pytest.skip("needs both eras")
    runs = {name: (lambda: m.ready(1)) for name, m in eras.items()}  # noqa: B023
    first = next(iter(eras))
    assert reached_eras(runs[first]) != {first}
