"""Engine benchmark (single thread, float32): tokens/s and the K-sample sharing ratio.

    python bench/engine.py            # full measurement
    python bench/engine.py --quick    # smaller repetitions

Prints a table and writes results/bench/engine.csv.
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bptt import Model, estimators as E  # noqa: E402
from bptt.engine._malloc import tune_malloc  # noqa: E402
from timing import median_time  # noqa: E402


def problem(cell, H, B, T, V=28, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    model = Model(cell, V, H, V)
    params = model.init(rng, dtype)
    X = rng.integers(0, V, (T, B))  # token ids: one-hot inputs
    Y = rng.integers(0, V, (T, B))
    return model, params, (X, Y, np.ones((T, B)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (default: off)")
    ap.add_argument("--out", default="results/bench/engine.csv", help="CSV output (default: %(default)s)")
    args = ap.parse_args(argv)
    tune_malloc()  # measure the engine as the command line runs it
    reps = 3 if args.quick else 7
    rows = []
    print(f"{'workload':44s} {'time (s)':>10s} {'tokens/s':>12s}")
    for cell in ("tanh", "gru"):
        for H in (32, 256, 512):
            B, T = 32, 64
            model, params, batch = problem(cell, H, B, T)
            dt = median_time(lambda: E.sample(model, params, batch, E.Full()), reps)
            rows.append({"workload": f"fwd+bwd {cell} H={H} B={B} T={T}", "seconds": dt, "tokens_per_s": B * T / dt})
            print(f"{rows[-1]['workload']:44s} {dt:10.4f} {B * T / dt:12.0f}")
    H, B, T, K = 128, 32, 256, 64
    model, params, batch = problem("tanh", H, B, T)
    est = E.parse_estimator("randomized:constant:16")
    t_batched = median_time(lambda: E.sample(model, params, batch, est, K=K, rng=np.random.default_rng(0)), reps)
    t_one = median_time(lambda: E.sample(model, params, batch, E.Full()), reps)
    ratio = t_batched / (K * t_one)
    rows.append({"workload": f"K={K} randomized, one forward (tanh H={H} B={B} T={T})", "seconds": t_batched, "tokens_per_s": B * T / t_batched})
    rows.append({"workload": f"{K} x independent full fwd+bwd (tanh H={H} B={B} T={T})", "seconds": K * t_one, "tokens_per_s": B * T / t_one})
    for r in rows[-2:]:
        print(f"{r['workload']:44s} {r['seconds']:10.4f} {r['tokens_per_s']:12.0f}")
    print(f"sharing ratio (batched / independent) = {ratio:.3f}  (target <= 0.1)")
    rows.append({"workload": "sharing ratio", "seconds": ratio, "tokens_per_s": ""})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["workload", "seconds", "tokens_per_s"])
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
