"""Bootstrap over calls: resample a run's calls with replacement and recompute each metric.

A resample is a row of counts (how many times each call was drawn), so one draw serves every
metric of a slice: ratios become weighted sums, percentiles are taken over the drawn calls'
pooled values (a call's turns stay together). Draws are seeded per run and slice, so the same
inputs give the same intervals, and adding a scenario does not move another scenario's.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from evaluation.compare.metrics import Metric, Parts

CHUNK = 256  # resamples drawn at once: bounds memory to CHUNK x calls (or values)


def draws(n_calls: int, resamples: int, seed: int, key: str) -> Iterator[np.ndarray]:
    """Count matrices (rows: resamples, columns: calls), CHUNK rows at a time."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    done = 0
    while done < resamples:
        m = min(CHUNK, resamples - done)
        picks = rng.integers(0, n_calls, size=(m, n_calls))
        rows = np.arange(m)[:, None] * n_calls
        yield np.bincount((picks + rows).ravel(), minlength=m * n_calls).reshape(m, n_calls)
        done += m


def statistic(metric: Metric, parts: Parts, counts: np.ndarray) -> np.ndarray:
    """The metric for each resample (row of counts); NaN where a resample has no data."""
    if parts.num is not None:
        num, den = counts @ parts.num, counts @ parts.den
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return pooled_percentile(parts.values, parts.owner, counts, metric.q)


def pooled_percentile(values: np.ndarray, owner: np.ndarray, counts: np.ndarray, q: float
                      ) -> np.ndarray:
    """np.percentile(method="linear") of the values the drawn calls pool, per resample,
    without materialising the pooled arrays: `values` sorted, `owner` the call of each."""
    out = np.full(counts.shape[0], np.nan)
    if values.size == 0:
        return out
    weights = counts[:, owner]  # how often each sorted value appears in each resample
    cum = np.cumsum(weights, axis=1)
    total = cum[:, -1]
    ok = total > 0
    h = (np.maximum(total, 1) - 1) * (q / 100.0)
    lo = np.floor(h)
    frac = h - lo
    hi = np.minimum(lo + 1, np.maximum(total - 1, 0))
    # The value at sorted position k of the pooled sample: the first with cum > k.
    at_lo = (cum <= lo[:, None]).sum(axis=1)
    at_hi = (cum <= hi[:, None]).sum(axis=1)
    last = values.size - 1
    v_lo, v_hi = values[np.minimum(at_lo, last)], values[np.minimum(at_hi, last)]
    out[ok] = (v_lo + frac * (v_hi - v_lo))[ok]
    return out


def resample(metrics: list[Metric], parts: dict[str, Parts], n_calls: int, resamples: int,
             seed: int, key: str) -> dict[str, np.ndarray]:
    """Every metric's value in each of `resamples` resamples of one run's calls."""
    out: dict[str, list[np.ndarray]] = {m.name: [] for m in metrics}
    if n_calls == 0:
        return {m.name: np.full(resamples, np.nan) for m in metrics}
    for counts in draws(n_calls, resamples, seed, key):
        for m in metrics:
            out[m.name].append(statistic(m, parts[m.name], counts))
    return {name: np.concatenate(chunks) for name, chunks in out.items()}
