"""The d2l anchor: d2l's settings, and a record beside d2l's reported perplexity."""

import json

import pytest

from bptt.study.anchor import D2L_REPORTED, D2L_UPDATES, d2l_config
from bptt.study.cli import main
from bptt.study.data import make_task


def test_the_anchor_is_d2ls_run():
    cfg = d2l_config()
    assert (cfg.task, cfg.cell, cfg.hidden, cfg.batch_size, cfg.seq_len) == ("timemachine", "tanh", 32, 1024, 32)
    assert cfg.split == "d2l"  # d2l's blocks, whatever split the study's language model uses
    assert (cfg.estimator, cfg.optimizer, cfg.lr, cfg.clip) == ("full", "sgd", 1.0, 1.0)
    assert (cfg.init, cfg.init_scale, cfg.patience) == ("normal", 0.01, 0)
    # 100 epochs of d2l's 10,000 training windows in minibatches of 1024
    assert D2L_UPDATES == 1000 and make_task("timemachine").windows_per_epoch(32) == 10_000
    assert D2L_REPORTED == {"val_perplexity": 7.2, "train_perplexity": 6.2}


def test_anchor_command_writes_the_record(tmp_path, capsys):
    out = tmp_path / "anchor"
    assert main(["anchor", "--updates", "3", "--quiet", "--out", str(out)]) == 0
    record = json.loads((out / "anchor.json").read_text())
    final = json.loads((out / "final.json").read_text())
    assert record["d2l_val_perplexity"] == 7.2 and record["updates"] == 3
    assert record["epochs"] == pytest.approx(3 * 1024 / 10_000)
    assert record["val_perplexity"] == final["best_val_metric"]
    assert final["data"]["split"] == "d2l" and final["data"]["train_characters"] == 10_032
    # three SGD steps from N(0, 0.01²) weights: still close to uniform over 28 symbols
    for key in ("val_perplexity", "val_perplexity_every_offset", "train_perplexity", "test_perplexity"):
        assert 20 < record[key] < 28.5, key
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["d2l_val_perplexity"] == 7.2
