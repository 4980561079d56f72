"""Benchmark: the scenario and router-template loaders under 10,000 (or more) damaged files: how many
loaded, how many failed with the input error, and every escape (another exception, an input error that
is not one located line, a hang), each saved for replay. Usage:
  .venv/bin/python bench/fuzz.py [--count 10000] [--seed 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.fuzz import damaged_file, try_load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=Path("fuzz-escapes"), help="where escapes are saved")
    args = parser.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    escapes = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        for index in range(args.count):
            rng = random.Random(args.seed * 1_000_003 + index)
            kind, text = damaged_file(rng)
            outcome = try_load(kind, text, Path(tmp))
            counts[outcome.kind] += 1
            if outcome.kind == "escape":
                escapes.append((index, kind, text, outcome.detail))
    elapsed = time.perf_counter() - started
    print(
        f"{args.count} inputs in {elapsed:.0f} s (seed {args.seed}): "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
    )
    print(f"escapes: {len(escapes)}")
    if escapes:
        args.keep.mkdir(parents=True, exist_ok=True)
        for index, kind, text, detail in escapes:
            (args.keep / f"{index}-{kind}.yaml").write_text(text, errors="surrogateescape")
            print(f"--- input {index} ({kind}), saved in {args.keep}:\n{detail}")
        sys.exit(1)


if __name__ == "__main__":
    main()
