"""Check the layering of both crates: which module of ``src/`` may use which.

    python tools/layering.py [CRATE_DIR ...]    (default: both crates)

Both crates have the same layout (the same file names wherever the idea exists in both),
and their dependencies run one way::

    lib.rs  ->  feature modules  ->  slots.rs  ->  protocol.rs  ->  compat.rs
                                \\------------------> protocol.rs

- ``protocol`` holds what every coroutine-like class shares (states, the CPython-worded
  errors, ``Step``); ``slots`` fills C type slots for any class that can take one step,
  naming no concrete class; ``compat`` holds only what differs between CPython versions.
- The PyO3 0.12 crate alone has ``ffi`` (C declarations and shims PyO3 0.12 lacks), which
  every lower layer may use, and ``repair`` (the fixes of 0.12's type objects), which
  only ``lib`` calls.
- No feature module uses another, except where one is built on the other: the futures,
  the streams and the semaphore are built on ``bridge``, and the modern crate's
  ``baselines`` reuses it.
- ``sieve`` is plain Rust (the segmented sieve behind ``count_primes`` and ``primes``):
  it uses nothing of the crate, and the feature modules that count primes may use it.
- ``wake`` is plain Rust too (the bridge's wake-up protocol, which the workspace's
  ``wake-model`` crate model-checks with loom by including the file itself): it uses
  nothing of the crate, and only ``bridge`` uses it.
- ``lib`` is the one place that wires classes, slots and functions together: it may use
  everything, and nothing may use it (an item of the crate root, ``crate::NAME`` where
  NAME is no module, counts as ``lib``).

A dependency is a path through the crate root in code: ``use crate::X``, ``use
crate::{X, Y::Z}``, ``crate::X::item`` or ``$crate::X`` anywhere in a file, and
``super::X`` in a top-level module (where ``super`` is the crate root). Comments and
string literals are ignored. A file is the module of its path's first component under
``src/`` (``src/slots.rs`` and ``src/slots/mod.rs`` are both ``slots``).

Fails (exit 1) on every edge not allowed below, printing ``file:line``, and on a module
the rules do not know (add it here, with its edges, when it is added to a crate).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Iterator, NamedTuple

from eras import ERAS

ROOT = Path(__file__).resolve().parent.parent

LOWER = {"protocol", "slots", "compat", "ffi"}
SIEVE = {"sieve"}
# module -> the modules it may use. Modules of one crate only are filtered below by
# which files exist; a module missing here is an error.
ALLOWED: dict[str, set[str]] = {
    "ffi": set(),  # PyO3 0.12 only
    "sieve": set(),  # plain Rust, no Python
    "wake": set(),  # plain Rust, no Python: loom runs it (wake-model)
    "compat": {"ffi"},
    "protocol": {"compat", "ffi"},
    "slots": {"protocol", "compat", "ffi"},
    "repair": {"compat", "ffi"},  # PyO3 0.12 only
    "driver": LOWER,
    "coroutine": LOWER,
    "delegate": LOWER,
    "bridge": {"wake"} | LOWER,
    "futures": {"bridge"} | SIEVE | LOWER,
    "stream": {"bridge"} | SIEVE | LOWER,
    "semaphore": {"bridge"} | LOWER,
    "recipe": set(),  # the guide's first recipe: plain PyO3, nothing of the crate
    "baselines": {"bridge", "protocol", "compat"},  # modern only
    "lib": set(),  # everything: see allowed()
}

USE = re.compile(r"\buse\s+(?:\$?crate|(?P<super>super))\s*::\s*")
PATH = re.compile(r"(?<![\w:])\$?crate\s*::\s*(?P<name>[A-Za-z_]\w*)")
SUPER_PATH = re.compile(r"(?<![\w:])super\s*::\s*(?P<name>[A-Za-z_]\w*)")


class Violation(NamedTuple):
    path: Path
    line: int
    source: str
    target: str

    def __str__(self) -> str:
        return (
            f"{shown(self.path)}:{self.line}: {self.source} uses {self.target}, which the layering "
            f"does not allow ({self.source} may use: {describe(self.source)})"
        )


def shown(path: Path) -> Path:
    """``path`` relative to the current directory when it is under it."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def allowed(source: str, target: str) -> bool:
    if source == target or source == "lib":
        return True
    return target in ALLOWED.get(source, set())


def describe(source: str) -> str:
    if source == "lib":
        return "everything"
    return ", ".join(sorted(ALLOWED.get(source, set()))) or "nothing"


def strip_comments_and_strings(text: str) -> str:
    """The text with comments and string/char literals blanked out (newlines kept, so
    line numbers stay right)."""
    out: list[str] = []
    i, n = 0, len(text)
    depth = 0  # nesting of /* */ comments
    while i < n:
        c = text[i]
        if depth:
            if text.startswith("/*", i):
                depth += 1
                i += 2
            elif text.startswith("*/", i):
                depth -= 1
                i += 2
            else:
                out.append("\n" if c == "\n" else " ")
                i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            depth = 1
            i += 2
            continue
        raw = re.match(r'b?r(#*)"', text[i:])
        if raw:
            end = text.find('"' + raw.group(1), i + raw.end())
            end = n if end < 0 else end + 1 + len(raw.group(1))
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i : j + 1]))
            i = j + 1
            continue
        char = re.match(r"'(\\.[^']*|[^'\\])'", text[i:])
        if char:  # a char literal, not a lifetime
            out.append(" " * char.end())
            i += char.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def use_targets(tree: str, offset: int = 0) -> Iterator[tuple[int, str]]:
    """(offset, first path segment) of each item of a use tree that follows ``crate::``
    (``{a, b::c}`` gives a and b); offsets count from the start of ``tree`` plus
    ``offset``."""
    lead = len(tree) - len(tree.lstrip())
    body = tree.strip()
    offset += lead
    if not body.startswith("{"):
        match = re.match(r"[A-Za-z_]\w*", body)
        if match and match.group(0) != "self":
            yield offset, match.group(0)
        return
    depth, start = 0, 1
    for i, c in enumerate(body):
        if c == "{":
            depth += 1
        elif c in ",}" and depth == 1:
            yield from use_targets(body[start:i], offset + start)
            start = i + 1
        if c == "}":
            depth -= 1
            if depth == 0:
                return


def dependencies(text: str) -> Iterator[tuple[int, str]]:
    """(line, module or crate-root item) for every path through the crate root."""
    code = strip_comments_and_strings(text)

    def line_of(offset: int) -> int:
        return code.count("\n", 0, offset) + 1

    for match in USE.finditer(code):
        end = code.find(";", match.end())
        tree = code[match.end() : end if end >= 0 else len(code)]
        for offset, name in use_targets(tree, match.end()):
            yield line_of(offset), ("super:" if match.group("super") else "") + name
    for match in PATH.finditer(code):
        # `use crate::X` was handled above (with its braces); here every other path.
        before = code[max(0, match.start() - 80) : match.start()]
        if re.search(r"\buse\s+$", before):
            continue
        yield line_of(match.start()), match.group("name")
    for match in SUPER_PATH.finditer(code):
        before = code[max(0, match.start() - 80) : match.start()]
        if re.search(r"\buse\s+$", before):
            continue
        yield line_of(match.start()), "super:" + match.group("name")


def module_of(src: Path, path: Path) -> str:
    first = path.relative_to(src).parts[0]
    return first[: -len(".rs")] if first.endswith(".rs") else first


def check_crate(crate: Path) -> tuple[list[Violation], list[str]]:
    """The disallowed edges of one crate, and its modules the rules do not know."""
    src = crate / "src"
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f) for f in files}
    first_file = {module_of(src, f): f for f in reversed(files)}
    unknown = sorted(m for m in modules if m not in ALLOWED)
    violations = []
    for path in files:
        source = module_of(src, path)
        top_level = path.parent == src
        for line, name in dependencies(path.read_text(encoding="utf-8")):
            if name.startswith("super:"):
                name = name[len("super:") :]
                # `super` is the crate root only in a top-level module, and then only a
                # module name is a dependency we track (`use super::*` in a `mod tests`
                # is the file's own module).
                if not top_level or name not in modules:
                    continue
            target = name if name in modules else "lib"
            if not allowed(source, target):
                violations.append(Violation(path, line, source, target))
    return violations, [
        f"{shown(first_file[m])}: module {m!r} has no layering rule (tools/layering.py)"
        for m in unknown
    ]


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    crates = [Path(a) for a in argv] or [ROOT / era.crate for era in ERAS.values()]
    failed = False
    for crate in crates:
        if not (crate / "src").is_dir():
            print(f"layering: {crate} has no src/ directory", file=sys.stderr)
            return 2
        violations, unknown = check_crate(crate)
        for problem in [*unknown, *map(str, violations)]:
            print(problem, file=sys.stderr)
        failed = failed or bool(violations or unknown)
        status = "FAILED" if violations or unknown else "ok"
        print(
            f"layering of {crate.name}: {status} ({len(violations)} disallowed use(s), "
            f"{len(unknown)} unknown module(s))",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
