"""Gradient estimators: full, regular(τ), windowed(τ), randomized(schedule).

Each estimator is a *plan* for the shared backward recursion (``backprop.backward``):
edge multipliers (K, T), optional injection weights, and whether samples are summed.
K samples of any estimator share one forward pass; deterministic estimators are
computed once and repeated.

    >>> est = parse_estimator("randomized:power:8")
    >>> loss, G = sample(model, params, batch, est, K=64, rng=rng)   # G: (64, n_params)

An estimator also owns its identity (``identity()``): the ``spec`` that
``parse_estimator`` reads back, the ``strategy`` that names its runs and table rows
(``full``, ``regular``, ``windowed``, ``randomized-<schedule>``), ``tau`` (the truncation
length or the schedule's mean segment length; 0 for full), and the schedule's name and
parameters.  Training writes it into ``final.json``; nothing downstream parses a label.
"""

from __future__ import annotations

import numpy as np

from . import backprop as backward_module
from .backprop import backward
from .schedules import SCHEDULES, make_schedule


def strategy_name(kind, schedule=""):
    """The name of a strategy: the estimator kind, with the schedule for randomized."""
    return f"{kind}-{schedule}" if schedule else kind


def format_spec(kind, tau=None, schedule="", **params):
    """The spec ``parse_estimator`` reads: ``regular:8``, ``randomized:power:8:alpha=1.5``."""
    if kind == "full":
        return "full"
    head = f"{kind}:{schedule}:{_text(tau)}" if schedule else f"{kind}:{_text(tau)}"
    extra = ",".join(f"{k}={_text(v)}" for k, v in params.items())
    return f"{head}:{extra}" if extra else head


def _text(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


class Estimator:
    kind = "base"
    deterministic = True
    tau = 0  # truncation length or mean segment length; 0: no truncation

    def plans(self, T, rngs, B=None):
        """One-gradient plans (K = 1) of R runs trained as a group, one per rng (the runs'
        estimator streams): the list ``[self.plan(T, 1, rng, B) for rng in rngs]``."""
        return [self.plan(T, 1, rng, B) for rng in rngs]

    def plan(self, T, K, rng, B=None):
        """Return ``(multipliers (K', T) or (K', B, T), inject (K', T) | None, reduce)``.

        ``B`` (the batch size) asks for one cut pattern per sequence: an estimator whose
        cuts are random then returns multipliers (K', B, T); deterministic estimators
        cut every sequence alike and return (K', T) whatever B.
        """
        raise NotImplementedError

    @property
    def label(self):
        return self.kind

    @property
    def schedule_name(self):
        return ""

    @property
    def schedule_params(self):
        return {}

    @property
    def strategy(self):
        return strategy_name(self.kind, self.schedule_name)

    @property
    def spec(self):
        return format_spec(self.kind, self.tau, self.schedule_name, **self.schedule_params)

    def identity(self):
        """The fields that name this estimator in final.json and in every table."""
        return {"estimator": self.label, "spec": self.spec, "kind": self.kind,
                "strategy": self.strategy, "tau": self.tau, "schedule": self.schedule_name,
                "schedule_params": self.schedule_params}

    def __repr__(self):
        return self.label


class Full(Estimator):
    """Exact gradient: every edge kept."""

    kind = "full"

    def plan(self, T, K, rng, B=None):
        return np.ones((1, T)), None, False


def _check_tau(tau):
    if int(tau) != tau or tau < 1:
        raise ValueError(f"truncation length tau must be an integer >= 1, got {tau}")
    return int(tau)


class Regular(Estimator):
    """d2l's truncation: chunks of τ, state carried but detached (TBPTT(τ, τ))."""

    kind = "regular"

    def __init__(self, tau):
        self.tau = _check_tau(tau)

    @property
    def label(self):
        return f"regular({self.tau})"

    def plan(self, T, K, rng, B=None):
        t = np.arange(T)
        m = np.where((t > 0) & (t % self.tau == 0), 0.0, 1.0)
        return m[None, :], None, False


class Windowed(Estimator):
    """Each loss l_t backpropagates exactly τ steps (TBPTT(1, τ)); cost O(T τ).

    Slot r carries the gradient of the losses at steps t ≡ r (mod τ); at step s the
    slot of the loss entering the window is reset, which drops the loss leaving it.
    """

    kind = "windowed"

    def __init__(self, tau):
        self.tau = _check_tau(tau)

    @property
    def label(self):
        return f"windowed({self.tau})"

    def plan(self, T, K, rng, B=None):
        slots = min(self.tau, T)
        r = np.arange(slots)[:, None]
        t = np.arange(T)[None, :]
        inject = (t % slots == r).astype(np.float64)
        if self.tau < T:
            # edge into step t drops the loss at step t-1+τ from slot (t-1) mod τ
            m = np.where((t > 0) & ((t - 1) % slots == r), 0.0, 1.0)
        else:
            m = np.ones((slots, T))
        return m, inject, True


class Randomized(Estimator):
    """Tallec & Ollivier's unbiased randomized truncation under a schedule."""

    kind = "randomized"
    deterministic = False

    def __init__(self, schedule):
        self.schedule = schedule

    @property
    def tau(self):
        mean = self.schedule.mean
        return int(mean) if float(mean).is_integer() else mean

    @property
    def schedule_name(self):
        return self.schedule.name

    @property
    def schedule_params(self):
        return self.schedule.params()

    @property
    def label(self):
        return f"{self.strategy}({self.schedule.mean:g})"

    def plan(self, T, K, rng, B=None):
        """K cut patterns shared by the batch (B None), or K·B, one per sequence (K, B, T)."""
        if rng is None:
            raise ValueError("randomized estimator needs an rng")
        cuts = self.schedule.sample_cuts(T, rng, size=K if B is None else (K, B))
        return self.schedule.multipliers(cuts), None, False

    def plans(self, T, rngs, B=None):
        """One-gradient plans of R runs, each from its own rng: exactly
        ``[self.plan(T, 1, rng, B) for rng in rngs]``, with one sampling loop for all."""
        if any(rng is None for rng in rngs):
            raise ValueError("randomized estimator needs an rng")
        shape = (1, T) if B is None else (1, B, T)
        m = self.schedule.multipliers(self.schedule.cuts_from_uniforms(np.stack([rng.random(shape) for rng in rngs])))
        return [(row, None, False) for row in m]


KINDS = ("full", "regular", "windowed", "randomized")


def make_estimator(kind, tau=None, schedule=None, **schedule_params):
    """Build an estimator. ``tau`` is the truncation length or the schedule's mean."""
    if kind == "full":
        return Full()
    if kind in ("regular", "windowed"):
        if tau is None:
            raise ValueError(f"{kind} needs tau")
        return Regular(tau) if kind == "regular" else Windowed(tau)
    if kind == "randomized":
        if schedule is None or tau is None:
            raise ValueError(
                f"randomized needs a schedule ({', '.join(SCHEDULES)}) and its mean tau"
            )
        return Randomized(make_schedule(schedule, tau, **schedule_params))
    raise ValueError(f"unknown estimator {kind!r}; valid estimators: {', '.join(KINDS)}")


def parse_estimator(spec):
    """``full`` | ``regular:8`` | ``windowed:8`` | ``randomized:<schedule>:<mean>[:k=v,...]``."""
    parts = spec.split(":")
    kind = parts[0]
    if kind == "full" and len(parts) == 1:
        return Full()
    if kind in ("regular", "windowed") and len(parts) == 2:
        return make_estimator(kind, tau=_number(parts[1], spec))
    if kind == "randomized" and len(parts) in (3, 4):
        extra = {}
        if len(parts) == 4 and parts[3]:
            for kv in parts[3].split(","):
                k, _, v = kv.partition("=")
                extra[k] = _number(v, spec)
        return make_estimator(kind, tau=_number(parts[2], spec), schedule=parts[1], **extra)
    if kind not in KINDS:
        raise ValueError(f"unknown estimator {kind!r}; valid estimators: {', '.join(KINDS)}")
    raise ValueError(
        f"bad estimator spec {spec!r}; expected full, regular:TAU, windowed:TAU or "
        f"randomized:SCHEDULE:MEAN[:key=value,...]"
    )


def _number(text, spec):
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"bad number {text!r} in estimator spec {spec!r}") from None
    return int(v) if v.is_integer() else v


# -- sampling ------------------------------------------------------------------

# Upper bound on the bytes of stored pre-activation gradients per backward call;
# larger K is processed in chunks that still share the one forward pass.
MAX_STORE_BYTES = 512 * 2**20


def gradients_from_plan(model, params, fwd, seed, readout_grads, m, inject, reduce):
    """(K', n_params) gradients for explicit multipliers (K', T) and injection weights."""
    T, B, _ = seed.shape
    width = sum(model.rnn.grad_widths(model.hidden_size))
    per_sample = T * B * width * seed.dtype.itemsize
    chunk = m.shape[0] if reduce else max(1, int(MAX_STORE_BYTES // per_sample))
    parts = []
    for lo in range(0, m.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        g = backward(model, params, fwd, seed, m[sl], None if inject is None else inject[sl], reduce)
        k = g[next(iter(g))].shape[0]
        for name, val in readout_grads.items():
            g[name] = np.broadcast_to(val, (k,) + val.shape)
        parts.append(model.flatten(g, K=k))
    return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def gradients_from_forward(model, params, fwd, seed, readout_grads, estimator, K=1, rng=None,
                           per_sequence=False):
    """(K, n_params) gradient samples of ``estimator`` given a shared forward pass.

    A deterministic estimator is computed once and repeated K times. ``per_sequence``:
    every sequence of the batch draws its own cut pattern in every sample (as training
    with ``cut_pattern: per_sequence`` does); else the batch shares one per sample.
    """
    T, B = seed.shape[:2]
    m, inject, reduce = estimator.plan(T, 1 if estimator.deterministic else K, rng,
                                       B if per_sequence else None)
    G = gradients_from_plan(model, params, fwd, seed, readout_grads, m, inject, reduce)
    return np.repeat(G, K, axis=0) if G.shape[0] != K else G


def sample(model, params, batch, estimator, K=1, rng=None):
    """One forward pass on ``batch = (X, Y, mask)``; return ``(loss, (K, n_params))``."""
    X, Y, mask = batch
    fwd = model.forward(params, X)
    loss, seed, ro = model.loss_and_seed(params, fwd, Y, mask)
    return loss, gradients_from_forward(model, params, fwd, seed, ro, estimator, K, rng)


def sample_many(model, params, batch, estimators, K=1, rng=None):
    """Several estimators from one shared forward pass: ``(loss, {label: (K, P)})``."""
    X, Y, mask = batch
    fwd = model.forward(params, X)
    loss, seed, ro = model.loss_and_seed(params, fwd, Y, mask)
    return loss, {
        e.label: gradients_from_forward(model, params, fwd, seed, ro, e, K, rng) for e in estimators
    }


# -- groups of replicas ----------------------------------------------------------


def _group_inputs(X, Y, mask, R):
    """(X, Y, mask) with a leading replica axis; inputs without it (``mask`` (T, B)) are
    shared by all replicas and broadcast (views)."""
    mask = np.asarray(mask)
    if mask.ndim == 2:
        return tuple(np.broadcast_to(a, (R,) + np.shape(a)) for a in (X, Y, mask))
    if mask.shape[0] != R:
        raise ValueError(f"mask has {mask.shape[0]} replicas, thetas has {R}")
    return np.asarray(X), np.asarray(Y), mask


def _check_thetas(model, thetas):
    thetas = np.asarray(thetas)
    if thetas.ndim != 2 or thetas.shape[1] != model.n_params:
        raise ValueError(f"thetas must have shape (R, {model.n_params}), got {thetas.shape}")
    return thetas


def _plan_groups(plans):
    """Replicas whose plans have the same shape share one stacked recursion:
    ``[(replica indices, m (n, K, [B,] T), inject | None, reduce)]``."""
    groups = {}
    for r, (m, inject, reduce) in enumerate(plans):
        m = np.asarray(m)
        if not reduce and m.shape[0] != 1:
            raise ValueError(f"plan of replica {r} yields {m.shape[0]} gradients; need one (K=1)")
        groups.setdefault((m.shape, np.shape(inject) if inject is not None else None, bool(reduce)), []).append(r)
    out = []
    for (_, inject_shape, reduce), idx in groups.items():
        ms = np.stack([np.asarray(plans[r][0]) for r in idx])
        inject = None if inject_shape is None else np.stack([np.asarray(plans[r][1]) for r in idx])
        out.append((np.array(idx), ms, inject, reduce))
    return out


def group_loss_and_gradients(model, thetas, X, Y, mask, plans):
    """Loss and one gradient per replica of a group trained in lockstep.

    thetas  (R, n_params) flat parameters (``model.flatten`` order), float32 or float64
    X       (R, T, B) token ids or (R, T, B, D) floats; Y (R, T, B) or (R, T, B, V); mask (R, T, B)
    plans   R tuples ``(m (K_r, T), inject (K_r, T) | None, reduce)`` from ``Estimator.plan``
            with K = 1, so that each plan yields one gradient; m may also be (K_r, B, T)
    Returns ``losses (R,) float64, grads (R, n_params)`` in the dtype of ``thetas``.

    One forward pass and one backward recursion for all replicas (one per distinct plan
    shape, e.g. windowed(τ)'s τ slots beside K = 1 plans).  Replica r's numbers are
    bitwise those of ``model.forward`` + ``model.loss_and_seed`` +
    ``gradients_from_plan(...)[0]`` on replica r alone; a non-finite replica yields
    non-finite numbers for itself only (floating-point warnings are silenced: a
    diverging replica is data).
    """
    thetas = _check_thetas(model, thetas)
    R = thetas.shape[0]
    if len(plans) != R:
        raise ValueError(f"need one plan per replica: {len(plans)} plans for {R} replicas")
    X, Y, mask = _group_inputs(X, Y, mask, R)
    groups = _plan_groups(plans)
    names = model.param_shapes()
    grads = np.empty_like(thetas)
    with np.errstate(all="ignore"):
        params = model.unflatten(thetas)
        fwd = model.forward_group(params, X)
        losses, seed, readout = model.loss_and_seed_group(params, fwd, Y, mask)
        for idx, m, inject, reduce in groups:
            if len(groups) == 1:
                p, f, s = params, fwd, seed
            else:
                p, f, s = {k: v[idx] for k, v in params.items()}, fwd.take(idx), seed[idx]
            g = backward_module.group_backward(model, p, f, s, m, inject, reduce)
            g.update({k: v[idx, None] for k, v in readout.items()})
            grads[idx] = np.concatenate([g[n].reshape(len(idx), -1) for n in names], axis=1)
    return losses, grads


def group_evaluate(model, thetas, X, Y, mask):
    """Evaluation loss and outputs per replica, from one stacked forward pass.

    thetas (R, n_params); X, Y, mask with a leading R axis, or without it (shared by all
    replicas, the usual evaluation set).  Returns ``losses (R,) float64`` and
    ``outputs_cm (R, V, T*B)``: replica r's class-major outputs, as ``Forward.outputs_cm``,
    so that ``task.metric(losses[r], outputs_cm[r], Y_r, mask_r)`` scores replica r.
    """
    thetas = _check_thetas(model, thetas)
    X, Y, mask = _group_inputs(X, Y, mask, thetas.shape[0])
    with np.errstate(all="ignore"):
        fwd = model.forward_group(model.unflatten(thetas), X)
        return fwd.loss(Y, mask, model.loss), fwd.outputs_cm
