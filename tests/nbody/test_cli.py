"""``geomp-ref nbody`` (``geomp_ref.nbody.cli.main``): generate, train, argument errors."""

from __future__ import annotations

import csv
import json
import math
import sys
import types

import numpy as np
import pytest

from geomp_ref.nbody import GeneratorConfig, write_dataset
from geomp_ref.nbody.cli import main

SMALL = ["--num-train", "3", "--num-valid", "2", "--num-test", "2", "--length", "300",
         "--length-test", "400", "--seed", "4"]


def test_generate_writes_the_library_files(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "cli"), *SMALL, "--sufix", "x",
                 "--block", "2"]) == 0
    assert "wrote 12 files" in capsys.readouterr().out
    paths = write_dataset(tmp_path / "lib", GeneratorConfig(
        num_train=3, num_valid=2, num_test=2, length=300, length_test=400, seed=4, suffix="x"))
    for p in paths:
        name = p.rsplit("/", 1)[1]
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes()


@pytest.mark.parametrize("argv, match", [
    (["generate"], "--out"),
    (["generate", "--out", "d", "--num-train", "0"], "num_train must be >= 1"),
    (["generate", "--out", "d", "--length", "250"], "multiple of sample_freq"),
    (["generate", "--out", "d", "--initial-vel", "2"], "invalid choice"),
    (["generate", "--out", "d", "--block", "0"], "--block must be >= 1"),
    (["train", "--model", "mlp", "--data", "d"], "invalid choice"),
    (["bogus"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_a_message(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["generate", "--help"]) == 0
    assert "--sample-freq" in capsys.readouterr().out


@pytest.fixture
def tiny_data(tmp_path):
    folder = tmp_path / "data"
    write_dataset(folder, GeneratorConfig(num_train=6, num_valid=3, num_test=2, length=300,
                                          length_test=300, suffix="t"))
    return folder


def test_train_without_models_exits_2(tiny_data, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "geomp_ref.models.nbody", types.ModuleType("nbody"))
    assert main(["train", "--model", "egnn", "--data", str(tiny_data)]) == 2
    assert "does not provide make_model" in capsys.readouterr().err


class _Shift:
    """Stand-in model: x + v @ W (3 x 3), with its hand VJP; enough to drive the CLI."""

    def init(self, rng):
        return {"w": 0.1 * rng.standard_normal((3, 3))}

    def forward(self, params, graph, x, v):
        return x + v @ params["w"], v

    def backward(self, params, cache, grad_out):
        return {"w": cache.T @ grad_out}, (grad_out, grad_out @ params["w"].T)


def _fake_models(names=("linear",)):
    module = types.ModuleType("geomp_ref.models.nbody")
    module.MODELS = names
    module.make_model = lambda name: _Shift()
    module.model_inputs = lambda name, batch: (batch.x, batch.v)
    return module


def test_train_runs_end_to_end_with_a_model(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "geomp_ref.models.nbody", _fake_models())
    out = tmp_path / "run"
    argv = ["train", "--model", "linear", "--data", str(tiny_data), "--suffix", "t", "--epochs",
            "6", "--batch-size", "2", "--eval-every", "2", "--out", str(out), "--quiet"]
    # the "t" files have 2 frames: the default frames are only known for the published suffixes
    assert main(argv) == 2
    assert "pass frames" in capsys.readouterr().err
    monkeypatch.setattr("geomp_ref.nbody.dataset.default_frames", lambda suffix: (0, 1))
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 6
    assert all(math.isfinite(float(r["train_mse"])) for r in rows)
    assert [r["epoch"] for r in rows if r["val_mse"]] == ["0", "2", "4"]
    results = json.loads((out / "results.json").read_text())
    assert math.isfinite(results["best_val_mse"]) and math.isfinite(results["test_mse_at_best"])
    assert results["hyper"]["lr"] == 5e-4 and results["hyper"]["optimizer"]["weight_decay"] == 1e-12
    first = np.load(out / "last.npz")["params/w"]
    assert main(argv) == 0  # same seed, same run, same bits
    assert np.load(out / "last.npz")["params/w"].tobytes() == first.tobytes()
    monkeypatch.setitem(sys.modules, "geomp_ref.models.nbody", _fake_models(("gnn",)))
    assert main(argv) == 2
    assert "provides: gnn" in capsys.readouterr().err
