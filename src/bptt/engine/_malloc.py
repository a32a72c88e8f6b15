"""Keep freed whole-sequence arrays in the heap instead of returning them to the OS.

The engine allocates a few arrays of T*B*H floats per gradient evaluation (states,
stored pre-activation gradients, outputs).  With glibc's defaults these arrays are
mmap'ed or trimmed back to the OS when freed, so the next evaluation page-faults them
in again; on the machines of this project that was a quarter of a training step at
d2l's H=32, B=1024, T=32 (measured with bench/peer.py).  Raising the mmap and trim
thresholds lets glibc reuse the freed memory.  The price is that the process keeps its
peak heap size.  Applied by the command-line entry point (``bptt.study.cli.main``) and the
benchmarks, never by importing the library: a program that imports ``bptt`` keeps its
own malloc settings.  Set ``BPTT_NO_MALLOC_TUNING=1`` to skip it.  A no-op where
glibc's ``mallopt`` is unavailable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum on 64-bit
TRIM_THRESHOLD = 1 * 2**30


def tune_malloc():
    """Return True if the thresholds were set."""
    if os.environ.get("BPTT_NO_MALLOC_TUNING"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return ok and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
