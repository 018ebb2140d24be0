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
* the built book stands alone: no link leaves ``docs/src`` (a source file the chapters
  point at is included in the appendix, ``sources.md``);
* every table and code pane fits its column at 1280 px and wider. Checked without a
  browser, against the numbers the stylesheet (``docs/theme/guide.css``) declares and
  lays the page out by: no included line is longer than ``--guide-code-columns`` (every
  code block may grow to the page's width, which holds that many columns at 1280 px), no
  line of a side-by-side pane longer than ``--guide-pane-columns`` (the panes stand side
  by side only when each gets that many), no table has more than
  ``--guide-table-columns`` columns, and the stylesheet keeps the rules that do the
  layout (checked by ``test_stylesheet_keeps_the_layout_rules``). A browser-free check
  was chosen so that the test runs wherever the suite does; ``tools/book_shots.py``
  takes the screenshots and measures the real layout in headless Chromium when one is
  installed;
* no generated table prints a negative zero (``-0``);
* with ``PYO3_ASYNC_BUILD_CHECKS=1``, ``tools/mdbook.sh`` builds the book and leaves no
  include unexpanded.

Run as a script (``python3 shared-tests/test_docs.py``) it prints the problems of the
checks that need no build and exits non-zero if there are any; ``tools/mdbook.sh`` does that
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
            if SRC not in destination.parents and destination != SRC:
                yield (
                    f"{where}: leaves the book (works only in a checkout); include the "
                    "file in sources.md and link there"
                )
                continue
            if fragment and destination.suffix == ".md" and fragment not in ids(destination, cache):
                yield f'{where}: no id="{fragment}" in {destination.relative_to(ROOT)}'


STYLESHEET = DOCS / "theme" / "guide.css"
SIDE_BY_SIDE = re.compile(r"""<div\s+class=["']side-by-side["']""")
DIV_OPEN = re.compile(r"<div\b")
DIV_CLOSE = re.compile(r"</div>")
TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
# The rules of guide.css that lay out code blocks, panes and tables (selector, property,
# value): without them, the column limits below would guarantee nothing.
LAYOUT_RULES = [
    (".content main pre", "max-width", "max(100%, var(--guide-page-width))"),
    (".content main pre", "width", "max-content"),
    (".content main pre > code", "overflow-x", "auto"),
    (".content main .table-wrapper", "max-width", "max(100%, var(--guide-page-width))"),
    (".content main .table-wrapper", "overflow-x", "auto"),
    (
        ".side-by-side",
        "grid-template-columns",
        "repeat(auto-fit, minmax(min(100%, var(--guide-pane-width)), 1fr))",
    ),
    (".content main .side-by-side pre", "max-width", "100%"),
    (".content main .compact table", "display", "grid"),
    (".content main .compact table", "grid-auto-flow", "column"),
]


def stylesheet_rules() -> dict[str, dict[str, str]]:
    """guide.css as {selector: {property: value}} (comments dropped, a selector list
    split, later declarations winning)."""
    text = re.sub(r"/\*.*?\*/", "", STYLESHEET.read_text(encoding="utf-8"), flags=re.S)
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        declarations = {}
        for declaration in body.split(";"):
            name, colon, value = declaration.partition(":")
            if colon:
                declarations[name.strip()] = " ".join(value.split())
        for selector in selectors.split(","):
            rules.setdefault(" ".join(selector.split()), {}).update(declarations)
    return rules


def layout_limit(name: str) -> int:
    """A column limit the stylesheet declares in ``:root`` (``--guide-...-columns``)."""
    return int(stylesheet_rules()[":root"][name])


def code_blocks(page: Path) -> Iterator[tuple[int, list[str], bool]]:
    """(line number, included lines, inside a side-by-side pane) of each fenced code
    block of a chapter that includes files."""
    stack: list[bool] = []  # one entry per open <div>: is it a side-by-side?
    fence = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            opened = FENCE.match(line)
            if opened:
                fence = opened.group(2)
                continue
            for _ in DIV_OPEN.findall(line):
                stack.append(bool(SIDE_BY_SIDE.search(line)))
            for _ in DIV_CLOSE.findall(line):
                if stack:
                    stack.pop()
            continue
        if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = None
            continue
        for match in INCLUDE.finditer(line):
            path, anchor = split_include(match.group(1))
            target = (page.parent / path).resolve()
            if not target.is_file():
                continue  # reported by include_problems
            text = target.read_text(encoding="utf-8")
            region = anchor_region(text, anchor) if anchor else text
            yield number, (region or "").splitlines(), any(stack)


def code_width_problems() -> Iterator[str]:
    code_columns = layout_limit("--guide-code-columns")
    pane_columns = layout_limit("--guide-pane-columns")
    for page in markdown_files():
        for number, lines, in_pane in code_blocks(page):
            limit = pane_columns if in_pane else code_columns
            for line in lines:
                if len(line.rstrip()) > limit:
                    where = "a side-by-side pane" if in_pane else "a code block"
                    yield (
                        f"{page.relative_to(ROOT)}:{number}: a line of {len(line.rstrip())} "
                        f"columns in {where} (at most {limit}): {line.strip()[:60]}"
                    )


def expanded(page: Path, depth: int = 0) -> str:
    """A page's text with its includes of Markdown files expanded (generated tables)."""
    text = page.read_text(encoding="utf-8")
    if depth > 3:
        return text

    def include(match: re.Match) -> str:
        path, anchor = split_include(match.group(1))
        target = (page.parent / path).resolve()
        if target.suffix != ".md" or anchor or not target.is_file():
            return match.group(0)
        return expanded(target, depth + 1)

    return INCLUDE.sub(include, text)


def table_columns(row: str) -> int:
    cells = re.split(r"(?<!\\)\|", row.strip())
    return len(cells) - 2  # the empty strings before the first and after the last |


def table_problems() -> Iterator[str]:
    limit = layout_limit("--guide-table-columns")
    for chapter in chapters():
        if not chapter.is_file():
            continue
        for row in expanded(chapter).splitlines():
            if TABLE_ROW.match(row) and table_columns(row) > limit:
                yield (
                    f"{chapter.relative_to(ROOT)}: a table of {table_columns(row)} columns "
                    f"(at most {limit}): {row.strip()[:60]}"
                )
                break


def stylesheet_problems() -> Iterator[str]:
    rules = stylesheet_rules()
    for selector, name, value in LAYOUT_RULES:
        found = rules.get(selector, {}).get(name)
        if found != value:
            yield f"guide.css: {selector} {{ {name}: {value} }} is missing (found {found!r})"
    root = rules.get(":root", {})
    for name in ("--guide-code-columns", "--guide-pane-columns", "--guide-table-columns"):
        if not root.get(name, "").isdigit():
            yield f"guide.css: :root lacks a whole number {name}"
    # A .compact table is shown transposed: a grid with one row per column of the table,
    # which needs a rule for each column count a table may have.
    for columns in range(2, int(root.get("--guide-table-columns", "0") or 0) + 1):
        selector = f".content main .compact table:has(thead th:nth-child({columns}):last-child)"
        found = rules.get(selector, {}).get("grid-template-rows")
        if found != f"repeat({columns}, auto)":
            yield f"guide.css: no transposing rule for a .compact table of {columns} columns"
    book = (DOCS / "book.toml").read_text(encoding="utf-8")
    if '"theme/guide.css"' not in book:
        yield "book.toml: additional-css does not load theme/guide.css"


def negative_zero_problems() -> Iterator[str]:
    for page in sorted((SRC / "generated").glob("*.md")):
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"(?<![\w.,])-0(?:\.0+)?(?![\d.,])", line):
                yield f"{page.relative_to(ROOT)}:{number}: a negative zero: {line.strip()[:80]}"


def all_problems() -> list[str]:
    return [
        *include_problems(),
        *code_block_problems(),
        *chapter_problems(),
        *link_problems(),
        *stylesheet_problems(),
        *code_width_problems(),
        *table_problems(),
        *negative_zero_problems(),
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


def test_stylesheet_keeps_the_layout_rules():
    problems = list(stylesheet_problems())
    assert not problems, "\n".join(problems)


def test_code_lines_fit_their_panes():
    problems = list(code_width_problems())
    assert not problems, "\n".join(problems)


def test_tables_have_at_most_the_columns_the_page_holds():
    problems = list(table_problems())
    assert not problems, "\n".join(problems)


def test_generated_tables_print_no_negative_zero():
    problems = list(negative_zero_problems())
    assert not problems, "\n".join(problems)


def test_layout_checks_catch_what_they_should(tmp_path, monkeypatch):
    """The checks themselves: a long line in a pane, a too-wide table, a lost rule."""
    assert table_columns("| a | b | c |") == 3
    assert table_columns("| a \\| b | c |") == 2
    rules = stylesheet_rules()
    assert int(rules[":root"]["--guide-pane-columns"]) <= int(
        rules[":root"]["--guide-code-columns"]
    )
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "code.rs").write_text("// ANCHOR: a\n" + "x" * 200 + "\n// ANCHOR_END: a\n")
    (src / "page.md").write_text(
        '<div class="side-by-side">\n<div>\n\n```rust\n{{#include ../code.rs:a}}\n```\n\n'
        "</div>\n</div>\n\n```rust\n{{#include ../code.rs:a}}\n```\n"
    )
    found = list(code_blocks(src / "page.md"))
    assert [(in_pane, len(lines[0])) for _, lines, in_pane in found] == [(True, 200), (False, 200)]
    monkeypatch.setattr(sys.modules[__name__], "markdown_files", lambda: [src / "page.md"])
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert len(list(code_width_problems())) == 2
    css = tmp_path / "guide.css"
    css.write_text(":root { --guide-code-columns: 110; }\n.side-by-side { display: grid; }\n")
    monkeypatch.setattr(sys.modules[__name__], "STYLESHEET", css)
    assert any("grid-template-columns" in p for p in stylesheet_problems())


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
