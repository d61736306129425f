"""Timing for the benchmarks: warm-up runs excluded, then interleaved repeats of the candidate and its reference, so
both see the same machine state, and the ratio of their median times with a bootstrap interval. On a shared 2-core
machine one run can take 20% longer than the next for the same work, so the interval says how sure the ratio is."""

from __future__ import annotations

import random
import statistics
import time
from typing import Callable


def sync(device: str) -> None:
    """Wait for queued GPU work so the clock measures it."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_once(fn: Callable[[], object], device: str) -> float:
    """Seconds one call of `fn` takes, GPU work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def ratio_interval(
    candidate: list[float], reference: list[float], level: float = 0.9, draws: int = 2000
) -> tuple[float, float]:
    """Bootstrap interval of median(reference) / median(candidate): resample both lists, keep the middle `level`."""
    rng = random.Random(0)
    ratios = sorted(
        statistics.median(rng.choices(reference, k=len(reference)))
        / statistics.median(rng.choices(candidate, k=len(candidate)))
        for _ in range(draws)
    )
    tail = (1 - level) / 2
    return ratios[round(tail * draws)], ratios[round((1 - tail) * draws) - 1]


def compare(
    candidate: Callable[[], object], reference: Callable[[], object], device: str, repeats: int = 5, warmup: int = 1
) -> dict:
    """Median seconds of each, measured alternately in one run; reference/candidate (>1: candidate faster) and its
    90% bootstrap interval."""
    for _ in range(warmup):
        candidate()
        reference()
    cand, ref = [], []
    for _ in range(repeats):
        cand.append(time_once(candidate, device))
        ref.append(time_once(reference, device))
    c, r = statistics.median(cand), statistics.median(ref)
    return {"candidate_s": c, "reference_s": r, "speedup": r / c, "interval": ratio_interval(cand, ref)}
