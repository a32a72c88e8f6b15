"""Timing helpers shared by the benchmarks."""

import time

import numpy as np


def median_time(fn, reps, warmup=1):
    """Median wall time of ``fn()`` over ``reps`` calls, after ``warmup`` calls."""
    return interleaved_times([fn], reps, warmup)[0]


def interleaved_times(fns, reps, warmup=1, clock=time.perf_counter):
    """Median time of each function, measured in rotation so that the machine's
    fluctuations (shared cores) hit every implementation alike. ``clock``:
    ``time.perf_counter`` (wall) or ``time.process_time`` (this process's CPU)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = clock()
            fn()
            times[i].append(clock() - t0)
    return [float(np.median(t)) for t in times]
