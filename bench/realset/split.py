"""Seeded split of bench/realset/topics.txt into a tune half and a report half.

Run once before generating; its output (tune.txt, report.txt) is committed.
    python bench/realset/split.py
"""

from __future__ import annotations

import random
from pathlib import Path

SEED = 24  # issue 24
HERE = Path(__file__).parent


def main() -> None:
    topics = [line.strip() for line in (HERE / "topics.txt").read_text().splitlines() if line.strip()]
    order = list(topics)
    random.Random(SEED).shuffle(order)
    half = len(order) // 2
    tune, report = sorted(order[:half], key=topics.index), sorted(order[half:], key=topics.index)
    (HERE / "tune.txt").write_text("\n".join(tune) + "\n")
    (HERE / "report.txt").write_text("\n".join(report) + "\n")
    print(f"tune {len(tune)}, report {len(report)} (seed {SEED})")


if __name__ == "__main__":
    main()
