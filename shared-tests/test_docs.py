"""The guide (docs/, an mdBook) includes only code that exists, and builds.

No era module is needed: these tests read files. What they hold the book to:

* every ``{{#include path:anchor}}`` in ``docs/src`` names an existing file (relative to
  the chapter), and the file has both ``ANCHOR: anchor`` and ``ANCHOR_END: anchor`` with
  something between them (mdBook silently includes nothing for a missing anchor, and only
  logs a missing file);
* code blocks of Rust, Python or TOML hold nothing but includes, so the book never shows
  code that is not built and tested;
* every chapter listed in ``SUMMARY.md`` exists and is more than a stub;
* relative links point at files that exist, and ``chapter.md#id`` links at an
  ``id="id"`` in that chapter;
* with ``PYO3_ASYNC_BUILD_CHECKS=1``, ``tools/mdbook.sh`` builds the book and leaves no
  include unexpanded.

Run as a script (``python3 shared-tests/test_docs.py``) it prints the problems of the
first four checks and exits non-zero if there are any; ``tools/mdbook.sh`` does that
before building.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = DOCS / "src"
SUMMARY = SRC / "SUMMARY.md"
MIN_CHAPTER_LINES = 40

# mdBook's own syntax: {{#include path}} or {{#include path:anchor}} (or line ranges).
INCLUDE = re.compile(r"\{\{\s*#include\s+([^}\s]+)\s*\}\}")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
CODE_LANGUAGES = {"rust", "python", "py", "toml"}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def chapters() -> list[Path]:
    """The chapter files SUMMARY.md lists, in order."""
    found = []
    for target in re.findall(r"\]\(([^)]+\.md)\)", SUMMARY.read_text(encoding="utf-8")):
        found.append(SRC / target)
    return found


def markdown_files() -> list[Path]:
    return sorted(SRC.rglob("*.md"))


def split_include(argument: str) -> tuple[str, str | None]:
    """``path:anchor`` -> (path, anchor); the anchor is None when absent."""
    if ":" not in argument:
        return argument, None
    path, rest = argument.split(":", 1)
    return path, rest


def anchor_region(text: str, anchor: str) -> str | None:
    """The lines between ``ANCHOR: anchor`` and ``ANCHOR_END: anchor``, as mdBook takes
    them (marker lines of other anchors excluded), or None if either marker is missing."""
    start = re.compile(r"ANCHOR:\s*" + re.escape(anchor) + r"(?![\w-])")
    end = re.compile(r"ANCHOR_END:\s*" + re.escape(anchor) + r"(?![\w-])")
    lines = text.splitlines()
    begin = next((i for i, line in enumerate(lines) if start.search(line)), None)
    if begin is None:
        return None
    finish = next((i for i in range(begin + 1, len(lines)) if end.search(lines[i])), None)
    if finish is None:
        return None
    inner = [line for line in lines[begin + 1 : finish] if not re.search(r"ANCHOR(_END)?:", line)]
    return "\n".join(inner)


def include_problems() -> Iterator[str]:
    for page in markdown_files():
        text = page.read_text(encoding="utf-8")
        for match in INCLUDE.finditer(text):
            where = f"{page.relative_to(ROOT)}: {{{{#include {match.group(1)}}}}}"
            path, anchor = split_include(match.group(1))
            target = (page.parent / path).resolve()
            if not target.is_file():
                yield f"{where}: no file {target}"
                continue
            if anchor is None:
                continue
            if re.fullmatch(r"[\d:]*", anchor):
                yield f"{where}: line numbers break silently when the file changes; use an anchor"
                continue
            region = anchor_region(target.read_text(encoding="utf-8"), anchor)
            if region is None:
                yield (
                    f"{where}: {target.relative_to(ROOT)} lacks "
                    f"ANCHOR: {anchor} / ANCHOR_END: {anchor}"
                )
            elif not region.strip():
                yield f"{where}: anchor {anchor} of {target.relative_to(ROOT)} is empty"


def code_block_problems() -> Iterator[str]:
    """Rust, Python and TOML blocks may hold only includes (and blank lines)."""
    for page in markdown_files():
        fence = None
        language = ""
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            opened = FENCE.match(line)
            if fence is None:
                if opened:
                    fence, language = opened.group(2), opened.group(3).lower()
                continue
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
                continue
            if language in CODE_LANGUAGES and line.strip() and not INCLUDE.fullmatch(line.strip()):
                yield (
                    f"{page.relative_to(ROOT)}:{number}: pasted {language} code; "
                    "include it from a tested file with an anchor instead"
                )


def chapter_problems() -> Iterator[str]:
    listed = chapters()
    if not listed:
        yield "SUMMARY.md lists no chapter"
    for chapter in listed:
        if not chapter.is_file():
            yield f"SUMMARY.md lists {chapter.relative_to(ROOT)}, which does not exist"
            continue
        lines = len(chapter.read_text(encoding="utf-8").splitlines())
        if lines <= MIN_CHAPTER_LINES:
            yield f"{chapter.relative_to(ROOT)} has {lines} lines: a stub, not a chapter"


def ids(page: Path, cache: dict[Path, set]) -> set:
    if page not in cache:
        cache[page] = set(
            re.findall(r"""\bid=["']([^"']+)["']""", page.read_text(encoding="utf-8"))
        )
    return cache[page]


def link_problems() -> Iterator[str]:
    cache: dict[Path, set] = {}
    for page in markdown_files():
        text = INCLUDE.sub("", page.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("mailto:"):
                continue  # an absolute URL
            path, _, fragment = target.partition("#")
            # Generated fragments are included into chapters of src/: their links are
            # relative to the including chapter.
            base = SRC if (SRC / "generated") in page.parents else page.parent
            destination = (base / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: link {target}"
            if not destination.exists():
                yield f"{where}: {destination} does not exist"
                continue
            if fragment and destination.suffix == ".md" and fragment not in ids(destination, cache):
                yield f'{where}: no id="{fragment}" in {destination.relative_to(ROOT)}'


def all_problems() -> list[str]:
    return [
        *include_problems(),
        *code_block_problems(),
        *chapter_problems(),
        *link_problems(),
    ]


# --- the tests -----------------------------------------------------------------------


def test_includes_resolve():
    problems = list(include_problems())
    assert not problems, "\n".join(problems)


def test_code_blocks_are_included_not_pasted():
    problems = list(code_block_problems())
    assert not problems, "\n".join(problems)


def test_chapters_exist_and_are_not_stubs():
    problems = list(chapter_problems())
    assert not problems, "\n".join(problems)


def test_links_resolve():
    problems = list(link_problems())
    assert not problems, "\n".join(problems)


def test_checks_catch_a_missing_anchor():
    """The anchor check itself: a missing, unterminated or empty anchor is found."""
    text = "// ANCHOR: good\nfn f() {}\n// ANCHOR_END: good\n// ANCHOR: open\nfn g() {}\n"
    assert anchor_region(text, "good") == "fn f() {}"
    assert anchor_region(text, "open") is None
    assert anchor_region(text, "missing") is None
    assert anchor_region(text, "goo") is None
    assert anchor_region("# ANCHOR: e\n# ANCHOR_END: e\n", "e") == ""


def test_mdbook_builds():
    if os.environ.get("PYO3_ASYNC_BUILD_CHECKS") != "1":
        import pytest  # not at the top: tools/mdbook.sh runs this file with no pytest

        pytest.skip("building the book installs mdBook; runs with PYO3_ASYNC_BUILD_CHECKS=1")
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "mdbook.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    pages = list((DOCS / "book").glob("*.html"))
    assert len(pages) > len(chapters()), "the book has fewer pages than chapters"
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "{{#include" not in html, f"unexpanded include in {page.name}"


if __name__ == "__main__":
    found = all_problems()
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
