"""geomp_ref.train: Adam in lockstep with torch.optim.Adam, MSE, checkpoints, the fit loop."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from geomp_ref.params import flatten
from geomp_ref.train import (
    Adam,
    AdamState,
    Progress,
    fit,
    load_checkpoint,
    mse_loss,
    save_checkpoint,
)


def _tree(rng):
    return {"enc": {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)},
            "layers": {"0": {"w": rng.standard_normal((3, 3))},
                       "1": {"s": rng.standard_normal(())}},
            "out": rng.standard_normal((3, 2)) * 1e-3}


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("hyper", [
    {"lr": 1e-3},
    {"lr": 5e-4, "weight_decay": 1e-12},
    {"lr": 3e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
])
def test_adam_lockstep_with_torch(hyper, rng):
    torch = pytest.importorskip("torch")
    params = _tree(rng)
    names = list(flatten(params))
    tparams = [torch.tensor(flatten(params)[k], dtype=torch.float64, requires_grad=True)
               for k in names]
    topt = torch.optim.Adam(tparams, **hyper)
    opt = Adam(**hyper)
    state = opt.init(params)
    for _ in range(60):
        # a gradient that depends on the parameters, plus noise, so the runs can drift apart
        flat = flatten(params)
        gflat = {k: np.tanh(v) * 0.3 + rng.standard_normal(v.shape) for k, v in flat.items()}
        grads = {"enc": {"w": gflat["enc/w"], "b": gflat["enc/b"]},
                 "layers": {"0": {"w": gflat["layers/0/w"]}, "1": {"s": gflat["layers/1/s"]}},
                 "out": gflat["out"]}
        for t, k in zip(tparams, names):
            t.grad = torch.tensor(gflat[k])
        topt.step()
        params, state = opt.step(params, grads, state)
    flat = flatten(params)
    for t, k in zip(tparams, names):
        assert _rel(flat[k], t.detach().numpy()) <= 1e-13, k
        tstate = topt.state[t]
        assert _rel(flatten(state.exp_avg)[k], tstate["exp_avg"].numpy()) <= 1e-13
        assert _rel(flatten(state.exp_avg_sq)[k], tstate["exp_avg_sq"].numpy()) <= 1e-13
        assert int(tstate["step"]) == state.step == 60


def test_adam_first_step_by_hand():
    # step 1: m = (1 - b1) g, v = (1 - b2) g^2, p -= lr / (1 - b1) * m / (sqrt(v / (1 - b2)) + eps)
    p = {"a": np.array([1.0, -2.0])}
    g = {"a": np.array([0.5, 3.0])}
    opt = Adam(0.1, betas=(0.5, 0.75), eps=0.0, weight_decay=0.0)
    new, state = opt.step(p, g, opt.init(p))
    np.testing.assert_allclose(new["a"], [1.0 - 0.1, -2.0 - 0.1], rtol=1e-15)
    np.testing.assert_allclose(state.exp_avg["a"], [0.25, 1.5], rtol=1e-15)
    np.testing.assert_allclose(state.exp_avg_sq["a"], [0.0625, 2.25], rtol=1e-15)


def test_adam_weight_decay_is_l2_on_the_gradient():
    p = {"a": np.array([2.0])}
    zero = {"a": np.array([0.0])}
    opt = Adam(0.01, eps=0.0, weight_decay=0.5)
    new, state = opt.step(p, zero, opt.init(p))
    # the effective gradient is 0.5 * 2 = 1: the first step moves by lr * sign = 0.01
    np.testing.assert_allclose(new["a"], [1.99], rtol=1e-15)
    np.testing.assert_allclose(state.exp_avg["a"], [0.1], rtol=1e-15)


def test_adam_does_not_mutate_and_checks_structure(rng):
    params = _tree(rng)
    grads = _tree(rng)
    keep = {k: v.copy() for k, v in flatten(params).items()}
    keep_g = {k: v.copy() for k, v in flatten(grads).items()}
    opt = Adam(1e-3)
    state = opt.init(params)
    opt.step(params, grads, state)
    assert all(np.array_equal(flatten(params)[k], v) for k, v in keep.items())
    assert all(np.array_equal(flatten(grads)[k], v) for k, v in keep_g.items())
    assert all(not v.any() for v in flatten(state.exp_avg).values())
    bad = dict(grads, out=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"grads\['out'\] has shape \(2, 3\)"):
        opt.step(params, bad, state)
    with pytest.raises(ValueError, match="structure of params"):
        opt.step(params, {"enc": grads["enc"]}, state)
    with pytest.raises(ValueError, match="nan or inf"):
        opt.step(params, dict(grads, out=np.full((3, 2), np.nan)), state)
    with pytest.raises(TypeError, match="state must be the AdamState"):
        opt.step(params, grads, (0, {}, {}))


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"lr": -1.0}, ValueError, "Adam.lr must be a finite number >= 0"),
    ({"lr": "0.1"}, TypeError, "Adam.lr must be a real number"),
    ({"lr": 1e-3, "betas": (0.9, 1.0)}, ValueError, r"Adam.betas\[1\] must be in \[0, 1\)"),
    ({"lr": 1e-3, "betas": 0.9}, TypeError, "Adam.betas must be a pair"),
    ({"lr": 1e-3, "eps": math.inf}, ValueError, "Adam.eps"),
    ({"lr": 1e-3, "weight_decay": -1e-3}, ValueError, "Adam.weight_decay"),
])
def test_adam_bad_hyper_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Adam(**kwargs)


def test_mse_loss_matches_torch_and_finite_differences(rng):
    pred = rng.standard_normal((7, 3))
    target = rng.standard_normal((7, 3))
    loss, grad = mse_loss(pred, target)
    torch = pytest.importorskip("torch")
    tp = torch.tensor(pred, requires_grad=True)
    tl = torch.nn.MSELoss()(tp, torch.tensor(target))
    tl.backward()
    assert abs(loss - tl.item()) <= 1e-15 * tl.item()
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-14, atol=0)
    h = 1e-6
    for idx in [(0, 0), (3, 2), (6, 1)]:
        up, down = pred.copy(), pred.copy()
        up[idx] += h
        down[idx] -= h
        fd = (mse_loss(up, target)[0] - mse_loss(down, target)[0]) / (2 * h)
        assert abs(fd - grad[idx]) <= 1e-8


def test_mse_loss_errors():
    with pytest.raises(ValueError, match="same shape"):
        mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least one element"):
        mse_loss(np.zeros((0, 3)), np.zeros((0, 3)))


def test_checkpoint_round_trip_is_exact(tmp_path, rng):
    params = _tree(rng)
    opt = Adam(1e-3, weight_decay=1e-12)
    state = opt.init(params)
    params, state = opt.step(params, _tree(rng), state)
    npz, js = save_checkpoint(tmp_path / "ck" / "best.npz", params, state, epoch=7,
                              hyper={"lr": 1e-3, "opt": opt.hyper()},
                              metrics={"val": np.float64(0.1 + 0.2), "bad": math.nan})
    assert npz.endswith("best.npz") and js.endswith("best.json")
    back = load_checkpoint(tmp_path / "ck" / "best")
    for a, b in ((params, back.params), (state.exp_avg, back.opt_state.exp_avg),
                 (state.exp_avg_sq, back.opt_state.exp_avg_sq)):
        fa, fb = flatten(a), flatten(b)
        assert fa.keys() == fb.keys()
        assert all(fa[k].tobytes() == fb[k].tobytes() and fa[k].shape == fb[k].shape for k in fa)
    assert isinstance(back.opt_state, AdamState) and back.opt_state.step == 1
    assert back.meta["epoch"] == 7 and back.meta["metrics"]["val"] == 0.1 + 0.2
    assert back.meta["metrics"]["bad"] is None and back.meta["hyper"]["opt"]["name"] == "Adam"
    only = load_checkpoint(save_checkpoint(tmp_path / "p", params)[1])
    assert only.opt_state is None
    (tmp_path / "x.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a geomp_ref checkpoint"):
        load_checkpoint(tmp_path / "x")


def _regression(rng):
    """Least squares y = X w: loss and gradient in closed form, batches of rows."""
    x = rng.standard_normal((40, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.standard_normal(40)

    def loss_and_grad(params, rows):
        loss, g = mse_loss(x[rows] @ params["w"], y[rows])
        return loss, {"w": x[rows].T @ g}

    gen = np.random.default_rng(3)

    def batches(epoch):
        order = gen.permutation(40)
        return [order[k:k + 10] for k in range(0, 40, 10)]

    return loss_and_grad, batches


def test_fit_writes_metrics_results_and_checkpoints(tmp_path, rng):
    loss_and_grad, batches = _regression(rng)
    vals = iter([0.5, 0.3, 0.3, 0.4])  # strictly lower only at the second evaluation
    tests = iter([9.0, 8.0, 7.0, 6.0])
    res = fit({"w": np.zeros(3)}, Adam(0.05), loss_and_grad, batches, epochs=8, eval_every=2,
              evaluate=lambda p: {"val": next(vals), "test": next(tests)}, out_dir=tmp_path,
              hyper={"model": "lsq"}, loss_name="mse", progress=False)
    assert res.best_epoch == 2 and res.best == {"val": 0.3, "test": 8.0}
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(8))
    assert list(rows[0]) == ["epoch", "train_mse", "val_mse", "test_mse", "seconds", "elapsed"]
    assert rows[1]["val_mse"] == "" and float(rows[2]["val_mse"]) == 0.3
    train = [float(r["train_mse"]) for r in rows]
    assert all(math.isfinite(t) for t in train) and train[-1] < train[0]
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["best_epoch"] == 2 and summary["best_val_mse"] == 0.3
    assert summary["test_mse_at_best"] == 8.0 and summary["epochs"] == 8
    assert summary["hyper"]["model"] == "lsq" and summary["hyper"]["optimizer"]["lr"] == 0.05
    best = load_checkpoint(tmp_path / "best")
    assert best.meta["epoch"] == 2 and best.opt_state.step == 12
    np.testing.assert_array_equal(best.params["w"], res.best_params["w"])
    last = load_checkpoint(tmp_path / "last")
    assert last.meta["epoch"] == 7 and last.opt_state.step == 32
    np.testing.assert_array_equal(last.params["w"], res.params["w"])


def test_fit_is_deterministic_and_resumable(tmp_path, rng):
    loss_and_grad, _ = _regression(rng)

    def batches(epoch):  # a generator derived from the epoch: resuming replays the same batches
        order = np.random.default_rng(epoch).permutation(40)
        return [order[k:k + 10] for k in range(0, 40, 10)]

    run = [fit({"w": np.zeros(3)}, Adam(0.05), loss_and_grad, batches, epochs=6, progress=False)
           for _ in range(2)]
    assert run[0].params["w"].tobytes() == run[1].params["w"].tobytes()
    first = fit({"w": np.zeros(3)}, Adam(0.05), loss_and_grad, batches, epochs=3, progress=False,
                out_dir=tmp_path)
    second = fit(first.params, Adam(0.05), loss_and_grad, batches, epochs=3, start_epoch=3,
                 opt_state=first.opt_state, progress=False, out_dir=tmp_path)
    assert second.params["w"].tobytes() == run[0].params["w"].tobytes()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(6))


def test_fit_continues_from_an_earlier_best_and_elapsed_time(tmp_path, rng):
    loss_and_grad, batches = _regression(rng)
    vals = iter([0.5, 0.2, 0.25])
    res = fit({"w": np.zeros(3)}, Adam(0.05), loss_and_grad, batches, epochs=6, eval_every=2,
              evaluate=lambda p: {"val": next(vals), "test": 1.0}, out_dir=tmp_path,
              start_epoch=10, best=(4, {"val": 0.3, "test": 7.0}, {"w": np.ones(3)}),
              elapsed=100.0, checkpoint_extra=lambda: {"note": [1, 2]}, progress=False)
    # 0.5 does not beat the earlier 0.3; 0.2 (epoch 12) does
    assert res.best_epoch == 12 and res.best == {"val": 0.2, "test": 1.0}
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(10, 16))
    assert all(float(r["elapsed"]) > 100.0 for r in rows)
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["epochs"] == 16 and summary["start_epoch"] == 10
    assert summary["wall_time_s"] > 100.0 and res.wall_time < 100.0
    for name in ("best", "last"):
        meta = load_checkpoint(tmp_path / name).meta
        assert meta["note"] == [1, 2] and meta["elapsed"] > 100.0
    # nothing beats the earlier best: it is the one reported
    kept = fit({"w": np.zeros(3)}, Adam(0.05), loss_and_grad, batches, epochs=2, eval_every=1,
               evaluate=lambda p: {"val": 0.5}, best=(4, {"val": 0.3}, {"w": np.ones(3)}),
               progress=False)
    assert kept.best_epoch == 4 and kept.best == {"val": 0.3}
    assert kept.best_params["w"].tolist() == [1.0, 1.0, 1.0]


def test_fit_appends_rows_under_the_existing_header(tmp_path, rng):
    loss_and_grad, batches = _regression(rng)
    first = fit({"w": np.zeros(3)}, Adam(0.05), loss_and_grad, batches, epochs=3, eval_every=2,
                evaluate=lambda p: {"val": 1.0, "test": 2.0}, out_dir=tmp_path, loss_name="mse",
                progress=False)
    # the continuation ends before its next evaluation: its row still goes under the header
    fit(first.params, Adam(0.05), loss_and_grad, batches, epochs=1, start_epoch=3, eval_every=2,
        evaluate=lambda p: {"val": 1.0, "test": 2.0}, opt_state=first.opt_state,
        out_dir=tmp_path, loss_name="mse", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert rows[3]["val_mse"] == "" and rows[3]["test_mse"] == ""
    assert float(rows[3]["seconds"]) > 0 and float(rows[3]["elapsed"]) > 0
    assert None not in rows[3]  # no values beyond the header


@pytest.mark.parametrize("kwargs, match", [
    ({"best": (1, {"test": 0.1}, {})}, "metrics\\['val'\\]"),
    ({"best": 3}, "best must be"),
    ({"elapsed": -1.0}, "elapsed must be"),
    ({"elapsed": float("nan")}, "elapsed must be")])
def test_fit_rejects_bad_resume_arguments(kwargs, match, rng):
    loss_and_grad, batches = _regression(rng)
    with pytest.raises(ValueError, match=match):
        fit({"w": np.zeros(3)}, Adam(0.05), loss_and_grad, batches, epochs=1, progress=False,
            **kwargs)


def test_progress_lines_on_a_log_stream():
    out = io.StringIO()
    bar = Progress(4, "gen", "sims", stream=out, log_interval=0.0)
    bar.update(1, "train")
    bar.update(3)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("gen [######") and "1/4 sims" in lines[0] and "train" in lines[0]
    assert "100.0% 4/4 sims" in lines[-1]
    silent = io.StringIO()
    Progress(2, stream=silent, enabled=False).update(1)
    assert silent.getvalue() == ""
