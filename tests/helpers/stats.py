"""Statistics for tests of random processes (loss, duplication). A test that fails by chance is a flaky
test, so intervals are wide enough that chance alone fails one run in ten thousand, and the tests use
enough packets that a real error (a wrong rate, a broken state machine) still falls outside them."""

from __future__ import annotations

import numpy as np
from scipy import stats

LEVEL = 0.9999  # central interval: a correct implementation falls outside it once in 10,000 runs


def binomial_interval(n: int, p: float, level: float = LEVEL) -> tuple[int, int]:
    """The central ``level`` interval [low, high] of Binomial(n, p) counts (exact)."""
    tail = (1 - level) / 2
    low, high = stats.binom.ppf([tail, 1 - tail], n, p)
    return int(low), int(high)


def rate_interval(n: int, p: float, level: float = LEVEL) -> tuple[float, float]:
    """The same interval as a rate (count / n)."""
    low, high = binomial_interval(n, p, level)
    return low / n, high / n


def loss_bursts(lost: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive losses in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], lost.astype(int), [0]))))
    return edges[1::2] - edges[::2]
