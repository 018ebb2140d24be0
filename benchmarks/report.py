"""Turn a benchmark JSON (bench.py) into markdown tables and a PNG chart.

python benchmarks/report.py build/bench/results.json [--markdown OUT.md] [--png OUT.png]

With neither option, the markdown goes to standard output; with either, only the paths
written are printed (``bench.py`` has printed the table already).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import verdict  # one wording for the console table and the markdown

# One colour per era (and grey for rows that run Python only), in the chart.
COLOURS = ["#d95f02", "#1b9e77", "#7570b3"]
NATIVE_COLOUR = "#888888"


def fmt_ns(ns: float) -> str:
    """A time per operation, in the unit that suits it."""
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:,.1f} µs"
    return f"{ns:,.0f} ns"


def md(text: str) -> str:
    """Text for a markdown table cell, outside code spans (``10**7`` is no emphasis)."""
    return text.replace("*", "\\*")


def header_line(report: dict) -> str:
    eras = ", ".join(f"`{name}` (PyO3 {version})" for name, version in report["eras"].items())
    return (
        f"Python {report['python']} ({report['implementation']}) on {report['machine']}, "
        f"{report.get('cpus', '?')} CPUs, load average {report.get('loadavg', '?')} at the start "
        f"and {report.get('loadavg_end', '?')} at the end; {eras}; median of "
        f"{report['rounds']} rounds after one warm-up"
        + (f" ({report['harness']})" if "harness" in report else "")
        + (" — **short mode: noisy figures**" if report["short"] else "")
        + "."
    )


def markdown(report: dict) -> str:
    threshold = report.get("noisy_threshold", 0.10)
    lines = [
        header_line(report),
        "",
        "Spread: the interquartile range (IQR) of the rounds. The ratio is of medians; its "
        "range is the row's IQR against the baseline's (q1 / baseline q3 to q3 / baseline "
        "q1): a row is called faster or slower only when that whole range is on one side "
        f"of 1. *noisy*: an IQR wider than {threshold:.0%} of the median (the row's or its "
        "baseline's).",
        "",
        "| implementation | per operation (median) | IQR | min – max | ratio (range) | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    group = None
    for row in report["results"]:
        if row["group"] != group:
            group = row["group"]
            lines.append(f"| **{md(group)}** | | | | | |")
        is_baseline = row["name"] == row["baseline"]
        ratio = (
            "baseline"
            if is_baseline
            else f"{row['ratio']:.2f}× ({row['ratio_lo']:.2f}–{row['ratio_hi']:.2f})"
        )
        note = verdict(row) + (", *noisy*" if row["noisy"] else "")
        lines.append(
            f"| `{row['name']}` | {fmt_ns(row['ns_per_op'])} | "
            f"{fmt_ns(row['q1'])} – {fmt_ns(row['q3'])} | "
            f"{fmt_ns(row['min'])} – {fmt_ns(row['max'])} | {ratio} | {note} |"
        )
    if report.get("memory"):
        lines += [
            "",
            f"Memory, in bytes per object: each figure the median (and min–max) of "
            f"{report.get('memory_processes', 3)} fresh processes, each with "
            f"{report['memory'][0]['n']:,} objects. *Pending*: that many Tasks, each a "
            "coroutine suspended on one awaitable that stays pending for an hour (so every "
            "row includes a Task and its coroutine); tracemalloc sees Python's allocator "
            "only, RSS also Rust's heap and tokio's timers and tasks. *Size*: that many "
            "coroutine objects, created and not started.",
            "",
            "| kind | object | tracemalloc, B | RSS, B |",
            "|---|---|---:|---:|",
        ]
        for row in report["memory"]:
            cells = []
            for method in ["tracemalloc", "rss"]:
                figure = row[method]
                cells.append(f"{figure['median']:,.0f} ({figure['min']:,.0f}–{figure['max']:,.0f})")
            lines.append(f"| {row['kind']} | `{row['name']}` | {cells[0]} | {cells[1]} |")
    if report.get("load"):
        lines += [
            "",
            f"Load: {report['load_n']:,} futures at once, each awaited by its own Task, "
            "delays uniform in 0–10 ms (seeded); median (min–max) of "
            f"{report['load'][0]['rounds']} rounds. *Late*: from the `await` starting, plus "
            "the delay, to the Task resuming (what the awaiting code sees; tokio's timer "
            "rounds a delay up to the next millisecond, asyncio's does not). *Wake → resume*: "
            "from the moment the tokio task completes the future (`time.time_ns()` in Rust) "
            "to its Task resuming, for the futures that report it (the same future behind "
            "the three bridges). Both include waiting behind the loop's other work, "
            "starting the other Tasks included; a bridge that holds up the runtime's "
            "threads also delays the wake-ups themselves, which only *late* sees.",
            "",
            "| future | completed per second | late p50 | late p99 | wake → resume p50 "
            "| wake → resume p99 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in report["load"]:
            rate = row["per_second"]
            cells = [f"{rate['median']:,.0f} ({rate['min']:,.0f}–{rate['max']:,.0f})"]
            for key in ["late_p50_us", "late_p99_us", "p50_us", "p99_us"]:
                if key in row:
                    figure = row[key]
                    cells.append(
                        f"{figure['median'] / 1e3:,.1f} ms "
                        f"({figure['min'] / 1e3:,.1f}–{figure['max'] / 1e3:,.1f})"
                    )
                else:
                    cells.append("—")
            lines.append(f"| `{row['name']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eras = list(report["eras"])
    colour = {era: COLOURS[i % len(COLOURS)] for i, era in enumerate(eras)}

    def short(name: str) -> str:
        """A row's name without its era's module (the bar's colour says the era)."""
        for era in eras:
            name = name.replace(f"{era}.", "")
        return name

    # y slots: a title line per group, then its non-baseline rows.
    slots: list[tuple[str, dict | None]] = []
    group = None
    for row in report["results"]:
        if row["group"] != group:
            group = row["group"]
            bases = sorted({r["baseline"] for r in report["results"] if r["group"] == group})
            slots.append((f"{group}  [1.0 = {' / '.join(map(short, bases))}]", None))
        if row["name"] != row["baseline"]:
            slots.append((short(row["name"]), row))
    fig, ax = plt.subplots(figsize=(11, 0.26 * len(slots) + 1.6))
    rows = [(i, r) for i, (_, r) in enumerate(slots) if r is not None]
    highest = max(max(r["ratio_hi"], r["ratio"]) for _, r in rows)
    lowest = min(min(r["ratio_lo"], r["ratio"]) for _, r in rows)
    for i, row in rows:
        c = colour.get(row.get("era") or "", NATIVE_COLOUR)
        ax.barh(i, row["ratio"] - 1.0, left=1.0, color=c, height=0.7)
        ax.errorbar(
            row["ratio"],
            i,
            xerr=[[row["ratio"] - row["ratio_lo"]], [row["ratio_hi"] - row["ratio"]]],
            fmt="none",
            ecolor="black",
            elinewidth=0.7,
            capsize=2,
        )
        label = f"{row['ratio']:.2f}×  {fmt_ns(row['ns_per_op'])}" + (
            "  noisy" if row["noisy"] else ""
        )
        ax.text(max(row["ratio_hi"], 1.0) * 1.06, i, label, va="center", fontsize=7)
    ax.set_yticks(range(len(slots)))
    ax.set_yticklabels([text if row else "" for text, row in slots], fontsize=7)
    for i, (text, row) in enumerate(slots):
        if row is None:  # a group's title, across the plot, above its rows
            ax.text(
                0.005,
                i,
                text,
                transform=ax.get_yaxis_transform(),
                fontsize=7.5,
                fontweight="bold",
                va="center",
            )
    ax.set_ylim(len(slots) - 0.5, -0.5)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    # Room on the right for the labels (ratio and absolute time), none clipped.
    ax.set_xlim(min(lowest, 1.0) / 1.4, highest * 12)
    ax.set_xlabel(
        "time relative to the group's baseline, same run (log scale; bars start at 1.0; "
        "< 1 is faster); whiskers: the ratio's range (IQRs)"
    )
    ax.set_title(
        f"Python {report['python']} on {report['machine']}: each row against its group's "
        "baseline (named in the group's title)"
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[e]) for e in eras]
    handles.append(plt.Rectangle((0, 0), 1, 1, color=NATIVE_COLOUR))
    ax.legend(
        handles,
        [*eras, "Python only"],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="era (bar colour)",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


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
        print(f"wrote {args.markdown} (the table, with its spread)")
    if args.png:
        chart(report, args.png)
        print(f"wrote {args.png} (the chart)")
    if not args.markdown and not args.png:
        print(text)
    print(f"raw figures: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
