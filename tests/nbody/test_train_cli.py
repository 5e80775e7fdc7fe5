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
from geomp_ref.nbody import NBodyDataset
from geomp_ref.nbody.cli import main
from geomp_ref.train import load_checkpoint, mse_loss, standard_parametrization

#: the published learning rates (EGNN repository README commands, SEGNN repository README)
PUBLISHED_LR = {"linear": 5e-4, "gnn": 1e-3, "rf": 2e-4, "egnn": 5e-4, "segnn": 5e-4,
                "segnn-e3": 5e-4, "tfn": 1e-3, "tfn-se3": 1e-3, "ponita": 1e-3}


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
    # PONITA's Lightning script validates after the 2nd, 4th, ... epoch; the EGNN script after
    # epochs 0, 2, ...
    assert [r["epoch"] for r in evaluated] == (["1"] if model == "ponita" else ["0", "2"])
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
    if model == "ponita":  # 1e-10 on the weights of linear maps only
        wd = res["hyper"]["optimizer"]["weight_decay"]
        assert res["hyper"]["weight_decay"] == 1e-10
        assert wd["embed"]["W"] == wd["layers"]["0"]["mlp"]["W1"] == 1e-10
        assert wd["layers"]["0"]["conv"]["b"] == wd["layers"]["0"]["norm"]["gamma"] == 0.0
        assert wd["layers"]["0"]["layer_scale"] == wd["readout"]["0"]["b"] == 0.0
    else:
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


# --- --resume ---------------------------------------------------------------------------------

def _train_argv(out, epochs, *extra):
    return ["train", "--model", "egnn", "--data", "{tiny}", "--suffix", "t", "--epochs",
            str(epochs), "--batch-size", "2", "--eval-every", "3", "--seed", "7", "--out",
            str(out), "--quiet", *extra]


def _run(tiny, out, epochs, *extra):
    argv = [str(tiny) if a == "{tiny}" else a for a in _train_argv(out, epochs, *extra)]
    return main(argv)


def _stop_during_epoch(monkeypatch, stop_at):
    """Make the train partition's batches raise KeyboardInterrupt in epoch ``stop_at``."""
    original = NBodyDataset.batches
    calls = {"train": 0}

    def batches(self, *args, **kwargs):
        if self.partition == "train":
            calls["train"] += 1
            if calls["train"] == stop_at + 1:
                raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NBodyDataset, "batches", batches)
    return lambda: monkeypatch.setattr(NBodyDataset, "batches", original)


def _same_run(a, b):
    """Two run folders hold bit-identical results (timings aside)."""
    for name in ("last", "best"):
        ca, cb = load_checkpoint(a / name), load_checkpoint(b / name)
        assert ca.meta["epoch"] == cb.meta["epoch"]
        timing = ("seconds", "elapsed")
        assert ({k: v for k, v in ca.meta["metrics"].items() if k not in timing}
                == {k: v for k, v in cb.meta["metrics"].items() if k not in timing})
        assert ca.meta.get("batch_rng") == cb.meta.get("batch_rng")
        fa, fb = np.load(a / f"{name}.npz"), np.load(b / f"{name}.npz")
        assert sorted(fa.files) == sorted(fb.files)
        for key in fa.files:
            assert fa[key].tobytes() == fb[key].tobytes(), (name, key)
    rows = [[{k: v for k, v in r.items() if k not in ("seconds", "elapsed")}
             for r in csv.DictReader(open(folder / "metrics.csv"))] for folder in (a, b)]
    assert rows[0] == rows[1]
    ra, rb = (json.loads((f / "results.json").read_text()) for f in (a, b))
    for key in ("best_epoch", "best_val_mse", "test_mse_at_best", "epochs", "final_train"):
        assert ra[key] == rb[key], key


@pytest.mark.parametrize("how", ["stopped", "extended", "older checkpoint"])
def test_resume_continues_bit_for_bit(how, tiny, tmp_path, first_frames, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _run(tiny, straight, 8) == 0
    if how == "extended":  # a finished shorter run, continued
        assert _run(tiny, resumed, 5) == 0
    else:  # stopped in epoch 5: checkpoint at epoch 3, rows of epochs 0-4 in metrics.csv
        restore = _stop_during_epoch(monkeypatch, 5)
        with pytest.raises(KeyboardInterrupt):
            _run(tiny, resumed, 8)
        restore()
        rows = list(csv.DictReader(open(resumed / "metrics.csv")))
        assert [r["epoch"] for r in rows] == ["0", "1", "2", "3", "4"]
        assert load_checkpoint(resumed / "last").meta["epoch"] == 3
        assert not (resumed / "results.json").exists()
    if how == "older checkpoint":  # written before --resume: the draws are replayed, the
        # elapsed time comes from metrics.csv
        meta = json.loads((resumed / "last.json").read_text())
        del meta["batch_rng"], meta["elapsed"], meta["hyper"]["eval_every"]
        (resumed / "last.json").write_text(json.dumps(meta))
    assert _run(tiny, resumed, 8, "--resume") == 0
    _same_run(straight, resumed)
    res = json.loads((resumed / "results.json").read_text())
    assert res["start_epoch"] == (5 if how == "extended" else 4)
    elapsed = [float(r["elapsed"]) for r in csv.DictReader(open(resumed / "metrics.csv"))]
    assert elapsed == sorted(elapsed) and res["wall_time_s"] >= elapsed[-1] * 0.99


def test_resume_keeps_a_best_that_the_continuation_does_not_beat(tiny, tmp_path, first_frames):
    out = tmp_path / "run"
    assert _run(tiny, out, 4) == 0
    best = load_checkpoint(out / "best")
    # a recorded best that no later validation can beat
    meta = json.loads((out / "best.json").read_text())
    meta["metrics"]["val"] = -1.0
    (out / "best.json").write_text(json.dumps(meta))
    assert _run(tiny, out, 10, "--resume") == 0
    res = json.loads((out / "results.json").read_text())
    assert res["best_epoch"] == best.meta["epoch"] and res["best_val_mse"] == -1.0
    assert res["test_mse_at_best"] == best.meta["metrics"]["test"]
    assert res["epochs"] == 10 and res["start_epoch"] == 4


def test_resume_errors(tiny, tmp_path, first_frames, capsys):
    out = tmp_path / "run"
    assert _run(tiny, out, 2, "--resume") == 2
    assert "last.json not found" in capsys.readouterr().err
    assert _run(tiny, out, 2) == 0
    capsys.readouterr()
    assert _run(tiny, out, 4, "--resume", "--lr", "0.01") == 2
    err = capsys.readouterr().err
    assert "--lr 0.0005 (now 0.01)" in err and "same options" in err
    assert _run(tiny, out, 4, "--resume", "--seed", "8") == 2
    assert "--seed 7 (now 8)" in capsys.readouterr().err
    assert _run(tiny, out, 2, "--resume") == 0
    assert "nothing to do" in capsys.readouterr().out
    (out / "last.json").write_text("{}")
    assert _run(tiny, out, 4, "--resume") == 2
    assert "cannot read the checkpoint" in capsys.readouterr().err


# --- --parametrization ------------------------------------------------------------------------

def _tfn_argv(tiny, out, epochs, *extra):
    return ["train", "--model", "tfn", "--data", str(tiny), "--suffix", "t", "--epochs",
            str(epochs), "--batch-size", "2", "--eval-every", "2", "--seed", "3", "--out",
            str(out), "--quiet", *extra]


def test_standard_parametrization_trains_the_effective_weights(tiny, tmp_path, first_frames):
    std, native = tmp_path / "std", tmp_path / "native"
    assert main(_tfn_argv(tiny, std, 3, "--parametrization", "standard")) == 0
    assert main(_tfn_argv(tiny, native, 3)) == 0
    res = json.loads((std / "results.json").read_text())
    assert res["hyper"]["parametrization"] == "standard"
    assert json.loads((native / "results.json").read_text())["hyper"]["parametrization"] == \
        "native"
    # the same initial network (same seed), other steps: the first epoch's mean training loss
    # differs; the stored weights reload into the rescaled model and give the recorded test loss
    rows = {p: list(csv.DictReader(open(p / "metrics.csv"))) for p in (std, native)}
    assert rows[std][0]["train_mse"] != rows[native][0]["train_mse"]
    ckpt = load_checkpoint(std / "best")
    model = standard_parametrization(make_model("tfn"))
    test_set = NBodyDataset(tiny, "test", suffix="t")
    batch = test_set.batch(np.arange(len(test_set)))
    pred, _ = model.forward(ckpt.params, batch.graph, *model_inputs("tfn", batch))
    assert mse_loss(pred, batch.target)[0] == pytest.approx(res["test_mse_at_best"], rel=1e-12)


def test_standard_parametrization_resumes_bit_for_bit(tiny, tmp_path, first_frames):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_tfn_argv(tiny, straight, 5, "--parametrization", "standard")) == 0
    assert main(_tfn_argv(tiny, resumed, 3, "--parametrization", "standard")) == 0
    assert main(_tfn_argv(tiny, resumed, 5, "--parametrization", "standard", "--resume")) == 0
    _same_run(straight, resumed)


def test_parametrization_errors(tiny, tmp_path, first_frames, capsys):
    assert _run(tiny, tmp_path / "egnn", 1, "--parametrization", "standard") == 2
    err = capsys.readouterr().err
    assert "--parametrization standard: model 'egnn'" in err and "drop the option" in err
    out = tmp_path / "tfn"
    assert main(_tfn_argv(tiny, out, 2)) == 0
    assert main(_tfn_argv(tiny, out, 4, "--resume", "--parametrization", "standard")) == 2
    assert "--parametrization 'native' (now 'standard')" in capsys.readouterr().err
    # a run started before the option existed was native
    for name in ("last", "best"):
        meta = json.loads((out / f"{name}.json").read_text())
        del meta["hyper"]["parametrization"]
        (out / f"{name}.json").write_text(json.dumps(meta))
    assert main(_tfn_argv(tiny, out, 4, "--resume", "--parametrization", "standard")) == 2
    assert "--parametrization 'native' (now 'standard')" in capsys.readouterr().err
    assert main(_tfn_argv(tiny, out, 4, "--resume")) == 0
