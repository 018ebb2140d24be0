"""Look at the built guide as a reader would: headless Chromium, every chapter, at the
widths readers use, with screenshots and a measurement of what does not fit.

    python tools/book_shots.py [--book docs/book] [--out build/book-shots] [--widths 1280,1920]
                               [--pages migration,compatibility] [--no-shots]

Needs the book built (``tools/mdbook.sh``) and Chromium (Debian: ``apt-get install
chromium``). For each chapter and width it

* measures the layout in the page itself (a probe script added to a copy of the book):
  every code block, side-by-side pane and table that is wider than the room it has (its
  content scrolls) or reaches past the window or under the sidebar is printed as a
  problem;
* takes a screenshot of the top of the page, and one of each table and side-by-side pair
  (the page scrolled to it), into ``--out``.

Exits 1 if any problem was found. ``shared-tests/test_docs.py`` holds the book to the
stylesheet's column limits without a browser; this is the check of what a reader sees.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEIGHT = 1000
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Runs in each page once its fonts are loaded: measures, writes the result into the DOM
# (read back with --dump-dom), and scrolls to the element named by ?shot=N.
PROBE = r"""
(function () {
  function measure() {
    var items = [];
    // The room the chapter has: mdBook's scrolling .content box (what sticks out of it
    // is clipped), which starts right of the sidebar.
    var content = document.querySelector('.content');
    var room = content.getBoundingClientRect();
    var left = room.left + content.clientLeft;
    var right = left + content.clientWidth;
    var nodes = document.querySelectorAll(
      '.content main pre, .content main .table-wrapper, .content main .side-by-side');
    nodes.forEach(function (el, index) {
      var box = el.getBoundingClientRect();
      var scroller = el.tagName === 'PRE' ? (el.querySelector('code') || el) : el;
      var kind = el.tagName === 'PRE' ? 'code' :
        (el.classList.contains('side-by-side') ? 'panes' : 'table');
      items.push({
        index: index,
        kind: kind,
        inPane: !!(el.closest && el.parentElement.closest('.side-by-side')),
        left: Math.round(box.left), right: Math.round(box.right),
        scrolls: Math.max(scroller.scrollWidth - scroller.clientWidth,
          kind === 'table' ? scroller.scrollHeight - scroller.clientHeight : 0),
        columns: kind === 'panes' ?
          getComputedStyle(el).gridTemplateColumns.split(' ').length : null,
        text: (el.innerText || '').slice(0, 60)
      });
    });
    var report = document.createElement('script');
    report.type = 'application/json';
    report.id = 'book-shots-report';
    report.textContent = JSON.stringify({left: left, right: right, items: items,
      height: document.documentElement.scrollHeight});
    document.body.appendChild(report);
    // A shot of one element: what comes before it in the chapter is hidden (scrolling
    // does not survive into a headless screenshot).
    var shot = /[?&]shot=(\d+)/.exec(location.search);
    var target = shot && nodes[Number(shot[1])];
    if (target) {
      var main = document.querySelector('.content main');
      var top = target;
      while (top.parentElement && top.parentElement !== main) { top = top.parentElement; }
      var previous = top.previousElementSibling;
      var kept = 0;
      while (previous) {
        // Keep the heading or paragraph just above, for context.
        if (kept < 1 && /^(H[1-6]|P)$/.test(previous.tagName)) { kept++; }
        else { previous.style.display = 'none'; }
        previous = previous.previousElementSibling;
      }
    }
  }
  window.addEventListener('load', function () {
    (document.fonts ? document.fonts.ready : Promise.resolve()).then(measure);
  });
})();
"""


def chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(browser: str, profile: Path, width: int, height: int, *args: str) -> str:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--virtual-time-budget=3000",
        *args,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return proc.stdout


def probe_copy(book: Path, into: Path) -> list[Path]:
    """A copy of the book with the probe in every page; the chapter pages, in order."""
    shutil.copytree(book, into)
    (into / "book_shots_probe.js").write_text(PROBE, encoding="utf-8")
    pages = []
    for page in sorted(into.glob("*.html")):
        html = page.read_text(encoding="utf-8")
        if page.name in ("404.html", "print.html", "toc.html"):
            continue
        page.write_text(
            html.replace("</body>", '<script src="book_shots_probe.js"></script></body>'),
            encoding="utf-8",
        )
        pages.append(page)
    return pages


def problems_of(report: dict[str, Any], width: int) -> list[str]:
    found = []
    for item in report["items"]:
        what = f"{item['kind']} #{item['index']} ({item['text'][:40]!r})"
        if item["scrolls"] > 1:
            found.append(f"{width}px: {what} scrolls by {item['scrolls']}px")
        if item["left"] < report["left"] - 1 or item["right"] > report["right"] + 1:
            found.append(
                f"{width}px: {what} spans {item['left']}–{item['right']}px, outside "
                f"{report['left']:.0f}–{report['right']}px"
            )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", type=Path, default=ROOT / "docs" / "book")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book-shots")
    parser.add_argument("--widths", default="1280,1920")
    parser.add_argument("--no-shots", action="store_true", help="measure only")
    parser.add_argument("--pages", default="", help="only these pages (names, comma-separated)")
    args = parser.parse_args()
    browser = chromium()
    if browser is None:
        print("no Chromium found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    if not (args.book / "index.html").is_file():
        print(f"no built book in {args.book}: run tools/mdbook.sh", file=sys.stderr)
        return 2
    widths = [int(w) for w in args.widths.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    problems = []
    with tempfile.TemporaryDirectory(prefix="book-shots-") as scratch:
        pages = probe_copy(args.book, Path(scratch) / "book")
        if args.pages:
            wanted = {name.removesuffix(".html") for name in args.pages.split(",")}
            pages = [page for page in pages if page.stem in wanted]
        for page in pages:
            for width in widths:
                profile = Path(scratch) / f"profile-{width}"
                dom = run_chromium(browser, profile, width, HEIGHT, "--dump-dom", page.as_uri())
                match = re.search(r'id="book-shots-report">(.*?)</script>', dom, re.S)
                if match is None:
                    problems.append(f"{page.name} {width}px: the probe did not report")
                    continue
                report = json.loads(match.group(1))
                problems += [f"{page.name} {p}" for p in problems_of(report, width)]
                if args.no_shots:
                    continue
                stem = f"{page.stem}-{width}"
                shots = [(f"{stem}-top.png", page.as_uri())]
                for item in report["items"]:
                    if item["kind"] == "table" or item["kind"] == "panes":
                        shots.append(
                            (
                                f"{stem}-{item['kind']}{item['index']}.png",
                                f"{page.as_uri()}?shot={item['index']}",
                            )
                        )
                for name, url in shots:
                    run_chromium(
                        browser, profile, width, HEIGHT, f"--screenshot={args.out / name}", url
                    )
            print(f"{page.name}: measured", file=sys.stderr)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s); screenshots in {args.out}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
