"""Progress lines for long work: done/total, rate, ETA, to stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total, label, unit="updates", every_seconds=2.0, quiet=False, stream=None):
        self.total, self.label, self.unit = total, label, unit
        self.every, self.quiet = every_seconds, quiet
        self.stream = stream or sys.stderr
        self.start = self.last = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.start

    def update(self, done, force=False, **fields):
        now = time.perf_counter()
        if self.quiet or (not force and now - self.last < self.every and done < self.total):
            return
        self.last = now
        el = now - self.start
        eta = el / done * (self.total - done) if done else float("nan")
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        print(f"[{self.label}] {done}/{self.total} {self.unit} {extra} "
              f"elapsed={el:.1f}s eta={eta:.1f}s", file=self.stream, flush=True)
