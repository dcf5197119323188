"""SST2-like sentences for the sentiment pipeline example: short movie-review phrases with a
positive (1) or negative (0) label, generated from a seed so every run sees the same data.

The seed's pipeline downloads SST2; this example runs offline, so it writes sentences of the
same kind instead: a subject, an opinion word, sometimes a negation that flips it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SUBJECTS = [
    "the film",
    "this movie",
    "the plot",
    "the acting",
    "the script",
    "the soundtrack",
    "the director's vision",
    "the ending",
    "the cast",
    "the dialogue",
    "every scene",
    "the pacing",
    "the camera work",
    "the story",
]
POSITIVE = [
    "wonderful",
    "moving",
    "brilliant",
    "charming",
    "gripping",
    "delightful",
    "superb",
    "heartfelt",
    "funny",
    "beautifully made",
    "a joy to watch",
    "smart",
]
NEGATIVE = [
    "dull",
    "clumsy",
    "boring",
    "tedious",
    "a mess",
    "lifeless",
    "predictable",
    "awful",
    "painfully slow",
    "forgettable",
    "shallow",
    "irritating",
]
FILLERS = ["", "", "frankly, ", "honestly, ", "in the end, ", "for most of its length, "]


def sentence(rng: random.Random) -> tuple[str, int]:
    """One phrase and its label."""
    label = rng.randint(0, 1)
    negated = rng.random() < 0.2
    words = POSITIVE if label != negated else NEGATIVE
    verb = "is not" if negated else "is"
    text = f"{rng.choice(FILLERS)}{rng.choice(SUBJECTS)} {verb} {rng.choice(words)}"
    return text, label


def generate(rows: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(rows)]


def write_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "label"])
        writer.writerows(rows)


def read_csv(path: Path) -> list[tuple[str, int]]:
    with path.open(newline="") as handle:
        return [(row["sentence"], int(row["label"])) for row in csv.DictReader(handle)]
