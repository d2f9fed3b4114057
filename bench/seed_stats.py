"""Mean and spread over seeds, one definition for every benchmark table: the sample standard deviation (ddof=1),
0 for a single seed."""

import numpy as np


def mean_sd(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def mean_sd_text(values) -> str:
    """ "mean ± sd" to four decimals."""
    mean, sd = mean_sd(values)
    return f"{mean:.4f} ± {sd:.4f}"
