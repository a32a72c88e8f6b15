"""The d2l anchor: d2l's own RNN language-model run, reproduced by this package.

*Dive into Deep Learning* §9.5 ("Recurrent Neural Network Implementation from
Scratch") trains ``RNNLMScratch(RNNScratch(num_inputs=28, num_hiddens=32), lr=1)`` on
``TimeMachine(batch_size=1024, num_steps=32)`` with ``Trainer(max_epochs=100,
gradient_clip_val=1)``: a tanh RNN, H = 32, SGD at lr 1 with gradient-norm clipping at
1, 100 epochs of its 10,000 training windows (10 minibatches of 1024, the last 784),
weights N(0, 0.01²) and zero biases, a zero state for every minibatch, full BPTT over
the 32 steps.  The book reports a validation perplexity of about 7.2 (training about
6.2).  If this package, on the same data split and settings, lands near those numbers,
its data pipeline, model and training loop are d2l's; the study's other numbers then
rest on the same ground.

The train block here is exactly d2l's 10,000 training windows at T = 32; d2l's
validation windows overlap its last 32 training characters, ours start after them
(``data.SPLIT_CHARS``).  The anchor always uses this split (``split="d2l"``), whatever
split the study's language-model runs use.  d2l averages the perplexity over validation
windows at every offset; the study evaluates non-overlapping windows.  Both are reported.
"""

from __future__ import annotations

import math

import numpy as np

from .io import write_json
from .train import RunConfig, train

D2L_URL = "https://d2l.ai/chapter_recurrent-neural-networks/rnn-scratch.html"
D2L_REPORTED = {"val_perplexity": 7.2, "train_perplexity": 6.2}
# 100 epochs of ceil(10,000 / 1024) = 10 minibatches
D2L_UPDATES = 100 * math.ceil(10_000 / 1024)


def d2l_config(updates=D2L_UPDATES, seed=0):
    """The RunConfig of d2l's run (``updates`` smaller only for quick checks)."""
    return RunConfig(task="timemachine", split="d2l", cell="tanh", hidden=32, seq_len=32,
                     batch_size=1024, estimator="full", optimizer="sgd", lr=1.0, clip=1.0,
                     updates=updates, eval_every=max(1, updates // 10), init="normal",
                     init_scale=0.01, seed=seed, dtype="float32")


def perplexity(task, model, theta, eval_set):
    X, Y, mask = eval_set
    fwd = model.forward(model.unflatten(theta), X)
    return float(np.exp(fwd.loss(Y, mask, model.loss)))


def run_anchor(out_dir, updates=D2L_UPDATES, seed=0, quiet=False):
    """Train d2l's run into ``out_dir`` (a run folder) and write ``anchor.json`` beside it.

    ``anchor.json``: the project's validation perplexity on whole-split windows and on
    d2l's every-offset windows, its training-split and test perplexities, the epochs
    done, and d2l's reported numbers.
    """
    cfg = d2l_config(updates, seed)
    final = train(cfg, out_dir, quiet=quiet)
    task, model, _ = cfg.build()
    with np.load(f"{out_dir}/params.npz") as z:
        theta = z["theta"]
    T = cfg.seq_len
    record = {
        "source": D2L_URL,
        "d2l_val_perplexity": D2L_REPORTED["val_perplexity"],
        "d2l_train_perplexity": D2L_REPORTED["train_perplexity"],
        "val_perplexity": final["best_val_metric"],
        "val_perplexity_every_offset": perplexity(task, model, theta, task.eval_set(T, None, "val", 1)),
        "train_perplexity": perplexity(task, model, theta, task.eval_set(T, None, "train")),
        "test_perplexity": final["test_metric"],
        "epochs": final["epochs_done"],
        "updates": final["updates_done"],
        "best_update": final["best_update"],
        "clip_fraction": final["clip_fraction"],
        "converged": final["converged"],
        "diverged": final["diverged"],
        "wall_time": final["wall_time"],
        "tokens_per_s": final["tokens_per_s"],
    }
    write_json(f"{out_dir}/anchor.json", record)
    return record

