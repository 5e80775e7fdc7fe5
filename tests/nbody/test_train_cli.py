"""``geomp-ref nbody train`` with every real model on a tiny generated set (a few seconds).

Each run must finish with status 0 and write finite metrics: ``metrics.csv`` (one row per epoch,
validation and test at the evaluated epochs), ``results.json`` (best validation, test at the best
validation epoch, epochs, wall time, the model's published learning rate) and checkpoints that
reload into the same model. The tiny set has 300-step trajectories (two stored frames), so the
published frames 30 -> 40 are replaced by 0 -> 1 through the loader's ``default_frames``.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from geomp_ref.models.nbody import MODELS, make_model, model_inputs
from geomp_ref.nbody import GeneratorConfig, NBodyDataset, write_dataset
from geomp_ref.nbody.cli import main
from geomp_ref.train import load_checkpoint, mse_loss

#: the published learning rates (EGNN repository README commands, SEGNN repository README)
PUBLISHED_LR = {"linear": 5e-4, "gnn": 1e-3, "rf": 2e-4, "egnn": 5e-4, "segnn": 5e-4,
                "tfn": 1e-3, "tfn-se3": 1e-3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_dataset(folder, GeneratorConfig(num_train=6, num_valid=3, num_test=2, length=300,
                                          length_test=300, seed=43, suffix="t"))
    return folder


@pytest.fixture
def first_frames(monkeypatch):
    monkeypatch.setattr("geomp_ref.nbody.dataset.default_frames", lambda suffix: (0, 1))


def test_every_published_model_is_registered():
    assert set(MODELS) == set(PUBLISHED_LR)


@pytest.mark.parametrize("model", sorted(PUBLISHED_LR))
def test_train_writes_finite_metrics(model, tiny, tmp_path, first_frames, capsys):
    out = tmp_path / model
    argv = ["train", "--model", model, "--data", str(tiny), "--suffix", "t", "--epochs", "3",
            "--batch-size", "2", "--eval-every", "2", "--seed", "5", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "epochs" in capsys.readouterr().err  # the progress line
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    evaluated = [r for r in rows if r["val_mse"]]
    assert [r["epoch"] for r in evaluated] == ["0", "2"]
    for r in rows:
        assert math.isfinite(float(r["train_mse"])) and float(r["seconds"]) > 0
    for r in evaluated:
        assert math.isfinite(float(r["val_mse"])) and math.isfinite(float(r["test_mse"]))
    res = json.loads((out / "results.json").read_text())
    best = min(evaluated, key=lambda r: float(r["val_mse"]))
    assert res["best_val_mse"] == pytest.approx(float(best["val_mse"]), rel=1e-12)
    assert res["test_mse_at_best"] == pytest.approx(float(best["test_mse"]), rel=1e-12)
    assert res["epochs"] == 3 and res["wall_time_s"] > 0
    assert res["hyper"]["lr"] == PUBLISHED_LR[model]
    assert res["hyper"]["optimizer"]["weight_decay"] == 1e-12

    # the best checkpoint reloads into the model and reproduces the recorded test loss
    ckpt = load_checkpoint(out / "best")
    block = make_model(model)
    test_set = NBodyDataset(tiny, "test", suffix="t")
    batch = test_set.batch(np.arange(len(test_set)))
    pred, _ = block.forward(ckpt.params, batch.graph, *model_inputs(model, batch))
    assert mse_loss(pred, batch.target)[0] == pytest.approx(res["test_mse_at_best"], rel=1e-12)


def test_learning_curve_when_matplotlib_is_present(tiny, tmp_path, first_frames):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curve"
    assert main(["train", "--model", "rf", "--data", str(tiny), "--suffix", "t", "--epochs",
                 "2", "--batch-size", "3", "--eval-every", "1", "--out", str(out),
                 "--quiet"]) == 0
    assert (out / "curve.png").stat().st_size > 0
