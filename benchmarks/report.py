"""Turn a benchmark JSON (bench.py) into a markdown table and a PNG chart.

    python benchmarks/report.py build/bench/results.json [--markdown OUT.md] [--png OUT.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def markdown(report: dict) -> str:
    eras = ", ".join(f"`{name}` (PyO3 {version})" for name, version in report["eras"].items())
    lines = [
        f"Python {report['python']} ({report['implementation']}, {report['machine']}); "
        f"{eras}; best of {report['rounds']} rounds"
        + (f" ({report['harness']})" if "harness" in report else "")
        + (" — **short mode: noisy figures**" if report["short"] else "") + ".",
        "",
        "| benchmark | implementation | ns per operation | ratio to baseline |",
        "|---|---|---:|---:|",
    ]
    for row in report["results"]:
        is_baseline = row["name"] == row["baseline"]
        ratio = "baseline" if is_baseline else f"{row['ratio']:.2f}×"
        lines.append(f"| {row['group']} | `{row['name']}` | {row['ns_per_op']:,.1f} | {ratio} |")
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if r["name"] != r["baseline"]]
    labels = [f"{r['group']}\n{r['name']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    bars = ax.barh(range(len(rows)), ratios, color=["#3b7" if x <= 1 else "#d64" for x in ratios])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time relative to the native baseline of the same run (log scale; < 1 is faster)")
    ax.set_title(f"Python {report['python']}: cost relative to native asyncio")
    ax.bar_label(bars, labels=[f"{x:.2f}×" for x in ratios], fontsize=7, padding=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    report = json.loads(args.results.read_text())
    text = markdown(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.png:
        chart(report, args.png)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
