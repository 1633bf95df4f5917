"""Summarise bench/train_chess.py runs: per recipe, the mean and spread over seeds of the last
epoch's val (seen styles), val-style (choose by this) and val-heldout (report only), every epoch's
mean, and train img/s; then one ablation row per recipe against the first.

Each log is one `python bench/train_chess.py ... > LOG` run; name the recipe before a colon:
    python bench/chess_seeds.py base:base_s0.log base:base_s1.log base:base_s2.log \
        style:cb_s0.log style:cb_s1.log style:cb_s2.log
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

COLUMNS = ("val50", "val50-95", "style50", "style50-95", "held50", "held50-95")


def read_log(path: Path) -> list[dict[str, float]]:
    """The per-epoch rows of one bench log, as {column: value}."""
    header, rows = None, []
    for line in path.read_text().splitlines():
        words = line.split()
        if words[:2] == ["epoch", "epoch_s"]:
            header = words
        elif header and words and re.fullmatch(r"\d+", words[0]) and len(words) == len(header):
            rows.append({k: float(v) for k, v in zip(header, words)})
    if not rows:
        raise SystemExit(f"{path}: no epoch rows (is it a bench/train_chess.py log?)")
    return rows


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f}±{sd:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="RECIPE:LOG")
    args = ap.parse_args()
    recipes: dict[str, list[list[dict[str, float]]]] = defaultdict(list)
    for item in args.runs:
        recipe, sep, log = item.partition(":")
        if not sep:
            raise SystemExit(f"{item!r}: expected RECIPE:LOG")
        recipes[recipe].append(read_log(Path(log)))
    for recipe, runs in recipes.items():
        print(f"\n{recipe}: {len(runs)} seeds; mean per epoch")
        cols = [c for c in COLUMNS if all(c in r[0] for r in runs)]
        print(f"{'epoch':>5} " + " ".join(f"{c:>10}" for c in cols))
        for i in range(min(len(r) for r in runs)):
            print(f"{i + 1:>5} " + " ".join(f"{statistics.fmean(r[i][c] for r in runs):>10.3f}" for c in cols))
    print("\nlast epoch, mean±sd over seeds; img/s: mean over epochs and seeds")
    print(f"{'recipe':<12} {'seeds':>5} " + " ".join(f"{c:>12}" for c in COLUMNS) + f" {'img/s':>7}")
    base = None
    for recipe, runs in recipes.items():
        finals = {c: [r[-1][c] for r in runs if c in r[-1]] for c in COLUMNS}
        speed = statistics.fmean(row["img/s"] for r in runs for row in r)
        cells = " ".join(f"{spread(v) if v else '-':>12}" for v in finals.values())
        print(f"{recipe:<12} {len(runs):>5} {cells} {speed:>7.2f}")
        means = {c: statistics.fmean(v) for c, v in finals.items() if v}
        if base is None:
            base = (recipe, means, speed)
            continue
        delta = " ".join(f"{c} {means[c] - base[1][c]:+.3f}" for c in means if c in base[1])
        print(f"{'':<12} vs {base[0]}: {delta}, img/s {100 * (speed / base[2] - 1):+.1f}%")


if __name__ == "__main__":
    main()
