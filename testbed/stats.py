"""Order statistics for few replicates: the interval of a median that sweeps and baselines report.

The sorted values' j-th lowest and j-th highest bound the median with coverage 1 - 2 F(j-1; n, 1/2)
(F the binomial distribution function): no assumption about the values' distribution, which MOS over a
handful of repetitions does not meet. j is the largest whose coverage reaches the level asked (95 %);
that needs 6 values, and with fewer j = 1 (the range) and the interval says the level it reaches:
2 values 50 %, 3 values 75 %, 5 values 93.75 %.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from testbed.results.sweep import Interval

LEVEL = 0.95


def median_interval(values: Sequence[float], level: float = LEVEL) -> Interval | None:
    """The order-statistics interval of the median of ``values`` (None with fewer than 2)."""
    from scipy import stats as scipy_stats  # on first use: its import costs half a second of every command

    n = len(values)
    if n < 2:
        return None
    ordered = np.sort(np.asarray(values, dtype=float))
    ranks = np.arange(1, n // 2 + 1)
    coverage = 1.0 - 2.0 * scipy_stats.binom.cdf(ranks - 1, n, 0.5)
    reaching = ranks[coverage >= level]
    j = int(reaching[-1]) if reaching.size else 1
    return Interval(
        low=round(float(ordered[j - 1]), 4),
        high=round(float(ordered[n - j]), 4),
        level=round(float(1.0 - 2.0 * scipy_stats.binom.cdf(j - 1, n, 0.5)), 4),
    )


def median(values: Sequence[float]) -> float | None:
    return round(float(np.median(values)), 4) if len(values) else None
