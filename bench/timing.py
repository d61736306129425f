"""Timing for the benchmarks: warm-up runs excluded, then interleaved repeats of the candidate and its reference,
so both see the same machine state, and the ratio of medians."""
from __future__ import annotations

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


def compare(candidate: Callable[[], object], reference: Callable[[], object], device: str, repeats: int = 5, warmup: int = 1) -> dict:
    """Median seconds of each, measured alternately in one run, and reference/candidate (>1: candidate faster)."""
    for _ in range(warmup):
        candidate()
        reference()
    cand, ref = [], []
    for _ in range(repeats):
        cand.append(time_once(candidate, device))
        ref.append(time_once(reference, device))
    c, r = statistics.median(cand), statistics.median(ref)
    return {"candidate_s": c, "reference_s": r, "speedup": r / c, "spread": (max(cand) - min(cand)) / c}
