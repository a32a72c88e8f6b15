"""Bias, variance, MSE and cosine of gradient estimators against the exact gradient.

At fixed parameters, on ``n_batches`` fixed batches, in float64:

- ``g_b``: the exact gradient on batch b (``full``);
- ``ĝ_bk``: K samples of each estimator (one shared forward pass per batch).

Per batch, with ``r_k = ĝ_bk - g_b`` and ``tr Σ̂`` the unbiased total sample variance:

    bias²  = (‖Σ_k r_k‖² - Σ_k ‖r_k‖²) / (K (K-1))   (U-statistic: E = ‖E ĝ - g‖² exactly)
    var    = tr Σ̂
    mse    = mean_k ‖r_k‖² = bias² + var (exactly, for this bias² estimate)

each divided by ``‖g_b‖²`` and averaged over batches.  ``relative_bias`` is
``sqrt(max(bias², 0))``; the 95% interval of bias² is ±1.96 jackknife standard
errors (delete one sample, in closed form), so an unbiased estimator's interval
covers 0.
Deterministic estimators have one sample, no variance, and an exact bias.
Averaged over a window of W updates (independent estimator draws), the variance
shrinks as 1/W and a systematic bias does not: ``relative_mse_window`` is
``bias² + var / W`` (reason 2 at the scale of many updates; W = ``window``).  It takes
the bias as common to the window's batches, so it is an upper bound where part of the
bias changes from batch to batch and averages out as well.
Beside them, ``sgd_relative_variance``: the variance of the exact gradient across the
batches, relative to the squared norm of their mean — SGD's own noise at this batch
size, the scale against which estimator variance matters (reason 2).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ..engine import estimators as E

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _bias2_var(R):
    """Debiased squared bias and unbiased total variance from residuals R (K, P)."""
    K = R.shape[0]
    s = R.sum(axis=0)
    sq = np.einsum("kp,kp->", R, R)
    bias2 = (s @ s - sq) / (K * (K - 1))
    var = (sq - (s @ s) / K) / (K - 1)
    return bias2, var


def _jackknife_se(R):
    """Jackknife standard error of the debiased bias² from residuals R (K, P)."""
    K = R.shape[0]
    s = R.sum(axis=0)
    sq_i = np.einsum("kp,kp->k", R, R)
    ss, sq = s @ s, sq_i.sum()
    loo = (ss - 2.0 * (R @ s) + sq_i - (sq - sq_i)) / ((K - 1) * (K - 2))
    return float(np.sqrt((K - 1) / K * np.sum((loo - loo.mean()) ** 2)))


def estimator_stats(G_list, g_list):
    """Aggregate statistics of one estimator over batches.

    G_list  list over batches of (K, P) samples
    g_list  list over batches of (P,) exact gradients
    """
    rel_b2, rel_var, rel_mse, cos, se2 = [], [], [], [], []
    for G, g in zip(G_list, g_list):
        gg = g @ g
        R = G - g
        norms = np.linalg.norm(G, axis=1) * np.sqrt(gg)
        cos.append((G @ g) / np.where(norms > 0, norms, 1.0))
        rel_mse.append(np.mean(np.einsum("kp,kp->k", R, R)) / gg)
        if G.shape[0] == 1:  # deterministic: the bias is exact
            rel_b2.append((R[0] @ R[0]) / gg)
            rel_var.append(0.0)
            se2.append(0.0)
            continue
        b2, var = _bias2_var(R)
        rel_b2.append(b2 / gg)
        rel_var.append(var / gg)
        se2.append((_jackknife_se(R) / gg) ** 2 if G.shape[0] > 2 else np.nan)
    nb = len(g_list)
    cos = np.concatenate(cos)
    b2 = float(np.mean(rel_b2))
    half = 1.96 * float(np.sqrt(np.sum(se2))) / nb
    lo, hi = b2 - half, b2 + half
    out = {
        "relative_bias2": b2,
        "relative_bias2_lo": lo,
        "relative_bias2_hi": hi,
        "relative_bias": float(np.sqrt(max(b2, 0.0))),
        "relative_bias_lo": float(np.sqrt(max(lo, 0.0))),
        "relative_bias_hi": float(np.sqrt(max(hi, 0.0))),
        "relative_variance": float(np.mean(rel_var)),
        "relative_mse": float(np.mean(rel_mse)),
        "cosine_mean": float(cos.mean()),
    }
    for q, v in zip(QUANTILES, np.quantile(cos, QUANTILES)):
        out[f"cosine_q{int(q * 100):02d}"] = float(v)
    return out


def sgd_noise(g_list):
    """Relative variance of the exact gradient across batches: tr Cov(g_b) / ‖mean g‖²."""
    Gb = np.stack(g_list)
    mean = Gb.mean(0)
    var = np.sum((Gb - mean) ** 2) / (len(g_list) - 1)
    return float(var / (mean @ mean))


def describe(est):
    """Key columns of an estimator's row: its identity, as in the run tables."""
    identity = est.identity()
    del identity["schedule_params"]  # in the spec; a dict has no CSV cell
    return identity


def estimator_rng(seed, estimator):
    """The estimator's own random stream, keyed by its label (e.g. randomized-power(8)).

    Keyed by name rather than by position, so that the numbers of one estimator do not
    change when others are added, removed or reordered (e.g. the keys of ``schedules``).
    """
    digest = hashlib.sha256(estimator.label.encode()).digest()
    key = tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,) + key))


def gradient_stats(task, model, params, estimators, seq_len, batch_size, K=64, n_batches=8,
                   seed=0, progress=None, cut_pattern="per_sequence", window=1):
    """Tidy DataFrame, one row per estimator (plus ``full`` as the reference row).

    ``cut_pattern`` as in training: randomized samples draw one cut pattern per
    sequence (``per_sequence``) or one per batch (``per_batch``), so that the variance
    measured is that of the estimator the runs used.  ``window`` W: the relative MSE of
    the average of W independent draws is also reported (``relative_mse_window``, see
    the module doc).
    """
    if cut_pattern not in ("per_sequence", "per_batch"):
        raise ValueError(f"unknown cut_pattern {cut_pattern!r}; valid: per_sequence, per_batch")
    if int(window) != window or window < 1:
        raise ValueError(f"gradstats window must be an integer >= 1, got {window}")
    if n_batches < 2:
        raise ValueError("gradstats needs at least 2 batches (SGD noise is a variance across batches)")
    if K < 2:
        raise ValueError("gradstats needs K >= 2 samples per estimator")
    params = {k: v.astype(np.float64) for k, v in params.items()}
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    est_rngs = {e.label: estimator_rng(seed, e) for e in estimators}
    B = task.batch_size or batch_size
    g_list, samples = [], {e.label: [] for e in estimators}
    for b in range(n_batches):
        X, Y, mask = task.batch(data_rng, B, seq_len)
        fwd = model.forward(params, X)
        _, s, ro = model.loss_and_seed(params, fwd, Y, mask)
        g = E.gradients_from_forward(model, params, fwd, s, ro, E.Full())[0]
        g_list.append(g)
        for e in estimators:
            samples[e.label].append(
                E.gradients_from_forward(model, params, fwd, s, ro, e, 1 if e.deterministic else K,
                                         est_rngs[e.label], per_sequence=cut_pattern == "per_sequence")
            )
        if progress:
            progress.update(b + 1)
    noise = sgd_noise(g_list)
    gnorm = float(np.mean([np.linalg.norm(g) for g in g_list]))
    rows = []
    for e in [E.Full()] + [e for e in estimators if e.kind != "full"]:
        G_list = samples.get(e.label) or [g[None, :] for g in g_list]
        row = describe(e)
        row.update(estimator_stats(G_list, g_list))
        row["window"] = int(window)
        row["relative_mse_window"] = row["relative_bias2"] + row["relative_variance"] / window
        row.update({"samples": G_list[0].shape[0], "batches": n_batches, "cut_pattern": cut_pattern,
                    "sgd_relative_variance": noise, "grad_norm": gnorm})
        rows.append(row)
    return pd.DataFrame(rows)
