"""PONITA on the N-body task: the model's own properties (self loops, calibration, the fixed
grid), the pieces of PONITA's training recipe against torch and PyTorch Lightning's semantics
(parameter-group weight decay, a learning rate set per epoch, gradient-norm clipping, the cosine
warm-up schedule, validation after every 5th epoch), and ``geomp-ref nbody train --model
ponita``.

Gradients, E(3) equivariance (grid moved with the data), permutations and backends of
:class:`NBodyPONITA` are checked by the registered cases (``geomp_ref/cases/nbody_ponita.py``).
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from geomp_ref.cases.nbody import _systems
from geomp_ref.graph import complete_graph, make_graph
from geomp_ref.models.nbody_ponita import NBodyPONITA, with_self_loops
from geomp_ref.nbody.cli import main
from geomp_ref.o3.rotation import random_rotation
from geomp_ref.params import flatten
from geomp_ref.train import Adam, CosineWarmup, clip_grad_norm, fit, load_checkpoint

SMALL = {"hidden": 4, "num_layers": 3, "num_ori": 6, "basis_dim": 5, "widening": 2}


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# --- the model -----------------------------------------------------------------------------------

def test_self_loops_are_added_once_and_other_edges_kept():
    ei = np.array([[0, 1, 2, 2, 1, 1], [1, 0, 2, 2, 2, 1]])  # node 2 twice, node 1 once
    g = with_self_loops(make_graph(ei, 4))
    src, dst = g.edge_index
    loops = src == dst
    assert sorted(src[loops]) == [0, 1, 2, 3]
    assert sorted(zip(src[~loops], dst[~loops])) == [(0, 1), (1, 0), (1, 2)]
    empty = with_self_loops(make_graph(np.zeros((2, 0), int), 0))
    assert empty.num_edges == 0


def test_fixed_grid_is_the_grid_input_and_only_approximately_equivariant(rng):
    m = NBodyPONITA(**SMALL, layer_scale=0.5)
    p = m.init(rng)
    graph, x, v, q = _systems(rng, 10)
    y_fixed, _ = m.forward(p, graph, x, v, q)
    y_given, _ = m.forward(p, graph, x, v, q, m.ori)
    assert y_fixed.tobytes() == y_given.tobytes()
    R = random_rotation(rng)
    y_rot, _ = m.forward(p, graph, x @ R.T, v @ R.T, q)
    err = np.max(np.abs(y_rot - y_fixed @ R.T))
    assert 1e-8 < err  # a finite grid that does not move is not exactly equivariant
    y_both, _ = m.forward(p, graph, x @ R.T, v @ R.T, q, m.ori @ R.T)
    assert np.max(np.abs(y_both - y_fixed @ R.T)) < 1e-12


def test_the_input_graph_may_already_hold_self_loops(rng):
    m = NBodyPONITA(**SMALL)
    p = m.init(rng)
    _, x, v, q = _systems(rng, 5)
    plain = complete_graph(5)
    looped = complete_graph(5, self_loops=True)
    a, _ = m.forward(p, plain, x, v, q)
    b, _ = m.forward(p, looped, x, v, q)
    assert np.max(np.abs(a - b)) < 1e-14


def test_calibration_normalises_the_first_layer_and_scales_kernels_only(rng):
    """After calibration the first convolution (whose input does not change) has
    std(y1) = std(f) and std(y) = std(y1), the statistics PONITA's rescaling targets; every
    kernel is multiplied by one positive number and nothing else changes."""
    m = NBodyPONITA(**SMALL)
    p = m.init(rng)
    graph, x, v, q = _systems(rng, 15)
    pc = m.calibrate(p, graph, x, v, q)
    _, cache = m.forward(pc, graph, x, v, q)
    conv0 = cache.layers[0].conv
    f, y1, y = conv0.f, conv0.fiber.y1, conv0.y
    assert np.std(y1, ddof=1) == pytest.approx(np.std(f, ddof=1), rel=1e-12)
    assert np.std(y, ddof=1) == pytest.approx(np.std(y1, ddof=1), rel=1e-12)
    before, after = flatten(p), flatten(pc)
    for key in before:
        if "/conv/kernel/" in key or "/conv/fiber_kernel/" in key:
            ratio = after[key] / before[key]
            assert np.all(ratio > 0) and np.ptp(ratio) <= 1e-14 * ratio.max(), key
            assert abs(ratio.flat[0] - 1) > 1e-6, key
        else:
            assert after[key].tobytes() == before[key].tobytes(), key


def test_bad_grid_and_fields_are_named(rng):
    m = NBodyPONITA(**SMALL)
    p = m.init(rng)
    graph, x, v, q = _systems(rng, 5)
    with pytest.raises(ValueError, match="ori"):
        m.forward(p, graph, x, v, q, np.ones((4, 3)))
    with pytest.raises(ValueError, match="ori"):
        m.forward(p, graph, x, v, q, np.full((6, 3), np.nan))
    with pytest.raises(ValueError, match="layer_scale"):
        NBodyPONITA(layer_scale=-1.0)
    with pytest.raises(ValueError, match="num_layers"):
        NBodyPONITA(num_layers=0)


# --- the recipe's pieces against torch -------------------------------------------------------

def test_parameter_group_decay_and_per_epoch_lr_follow_torch(rng):
    torch = pytest.importorskip("torch")
    params = {"lin": {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)},
              "norm": {"gamma": rng.standard_normal(3)}}
    decay = {"lin": {"W": 0.1, "b": 0.0}, "norm": {"gamma": 0.0}}
    keys = ["lin/W", "lin/b", "norm/gamma"]
    t = {k: torch.tensor(flatten(params)[k], requires_grad=True) for k in keys}
    topt = torch.optim.Adam([{"params": [t["lin/W"]], "weight_decay": 0.1},
                             {"params": [t["lin/b"], t["norm/gamma"]], "weight_decay": 0.0}],
                            lr=1e-2)
    opt = Adam(1e-2, weight_decay=decay)
    state = opt.init(params)
    for step in range(40):
        lr = 1e-2 * (0.5 + 0.5 * math.cos(step / 7))  # torch: the groups' lr set before a step
        for group in topt.param_groups:
            group["lr"] = lr
        flat = flatten(params)
        g = {k: np.sin(flat[k]) + rng.standard_normal(flat[k].shape) for k in keys}
        for k in keys:
            t[k].grad = torch.tensor(g[k])
        topt.step()
        grads = {"lin": {"W": g["lin/W"], "b": g["lin/b"]}, "norm": {"gamma": g["norm/gamma"]}}
        params, state = opt.step(params, grads, state, lr=lr)
    for k in keys:
        assert _rel(flatten(params)[k], t[k].detach().numpy()) <= 1e-13, k
    with pytest.raises(ValueError, match="weight_decay"):
        Adam(1e-3, weight_decay={"lin": {"W": 0.1}}).step(params, grads, state)
    with pytest.raises(ValueError, match="weight_decay"):
        Adam(1e-3, weight_decay={"lin": -1.0})
    with pytest.raises(ValueError, match="lr"):
        opt.step(params, grads, state, lr=float("nan"))


def test_clip_grad_norm_matches_torch(rng):
    torch = pytest.importorskip("torch")
    for scale in (1e-3, 1.0, 50.0):  # below, near and above the threshold
        grads = {"a": rng.standard_normal((3, 4)) * scale, "b": {"c": rng.standard_normal(5)}}
        ts = [torch.zeros(3, 4, dtype=torch.float64, requires_grad=True),
              torch.zeros(5, dtype=torch.float64, requires_grad=True)]
        ts[0].grad, ts[1].grad = torch.tensor(grads["a"]), torch.tensor(grads["b"]["c"])
        total_t = torch.nn.utils.clip_grad_norm_(ts, 0.5)
        clipped, total = clip_grad_norm(grads, 0.5)
        assert total == pytest.approx(float(total_t), rel=1e-14)
        assert _rel(clipped["a"], ts[0].grad.numpy()) <= 1e-15
        assert _rel(clipped["b"]["c"], ts[1].grad.numpy()) <= 1e-15
        assert grads["a"] is not clipped["a"]
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(grads, -1.0)


def test_cosine_warmup_is_ponitas_scheduler():
    """A double of PONITA's ``CosineWarmupScheduler`` (torch ``_LRScheduler``, stepped once per
    epoch by Lightning), written from its equations."""
    torch = pytest.importorskip("torch")

    class Double(torch.optim.lr_scheduler.LRScheduler):
        def __init__(self, optimizer, warmup, max_iters):
            self.warmup, self.max_num_iters = warmup, max_iters
            super().__init__(optimizer)

        def get_lr(self):
            e = self.last_epoch
            f = 0.5 * (1 + np.cos(np.pi * e / self.max_num_iters))
            if e <= self.warmup:
                f *= (e + 1e-6) / (self.warmup + 1e-6)
            return [base * f for base in self.base_lrs]

    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = Double(opt, 10, 37)
    ours = CosineWarmup(10, 37)
    for epoch in range(37):
        assert ours.lr(1e-3, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-14)
        opt.step()
        sched.step()
    assert ours.hyper() == {"name": "CosineWarmup", "warmup": 10, "total": 37}
    with pytest.raises(ValueError, match="total"):
        CosineWarmup(10, 0)


def test_fit_eval_phase_and_schedule(tmp_path, rng):
    """``eval_phase = eval_every - 1`` evaluates after the 5th, 10th, ... epoch (Lightning's
    ``check_val_every_n_epoch``); the schedule's rate reaches the optimizer and the CSV."""
    seen = []

    class Recorder(Adam):
        def step(self, params, grads, state, *, lr=None):
            seen.append(lr)
            return super().step(params, grads, state, lr=lr)

    params = {"w": rng.standard_normal(3)}
    result = fit(params, Recorder(1.0), lambda p, b: (float(p["w"] @ p["w"]), {"w": 2 * p["w"]}),
                 lambda epoch: range(2), epochs=12, eval_every=5, eval_phase=4,
                 evaluate=lambda p: {"val": float(p["w"] @ p["w"])}, out_dir=tmp_path,
                 lr_schedule=lambda e: 0.1 / (e + 1), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["epoch"] for r in rows if r["val_loss"]] == ["4", "9"]
    assert seen == [0.1 / (e + 1) for e in range(12) for _ in range(2)]
    assert [float(r["lr"]) for r in rows] == [0.1 / (e + 1) for e in range(12)]
    assert result.best_epoch in (4, 9)
    with pytest.raises(ValueError, match="eval_phase"):
        fit(params, Adam(1.0), lambda p, b: (0.0, {"w": p["w"]}), lambda e: [], epochs=1,
            eval_every=5, eval_phase=5)


# --- geomp-ref nbody train --model ponita ----------------------------------------------------

def _argv(tiny, out, epochs, *extra):
    return ["train", "--model", "ponita", "--data", str(tiny), "--suffix", "t", "--epochs",
            str(epochs), "--batch-size", "2", "--eval-every", "2", "--seed", "3", "--out",
            str(out), "--quiet", *extra]


def test_ponita_recipe_in_the_training_command(tiny, tmp_path, first_frames):
    out = tmp_path / "run"
    assert main(_argv(tiny, out, 4)) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows if r["val_mse"]] == ["1", "3"]
    # PONITA's schedule over --epochs with 10 warm-up epochs, written from its equation
    for r in rows:
        e = int(r["epoch"])
        f = 0.5 * (1 + math.cos(math.pi * e / 4)) * (e + 1e-6) / (10 + 1e-6)
        assert float(r["lr"]) == pytest.approx(1e-3 * f, rel=1e-14)
    res = json.loads((out / "results.json").read_text())
    assert res["hyper"]["recipe"]["clip_grad_norm"] == 0.5
    # epoch 0 runs at lr ~1e-10: the stored weights are the calibrated initial ones, whose
    # kernels differ from the plain initialisation by one factor per kernel
    block = NBodyPONITA()
    init = flatten(block.init(np.random.default_rng(3)))
    assert main(_argv(tiny, tmp_path / "one", 1)) == 0
    after = flatten(load_checkpoint(tmp_path / "one" / "last").params)
    k = "layers/0/conv/kernel/W0"
    ratio = after[k] / init[k]
    assert abs(np.median(ratio) - 1) > 1e-3 and np.ptp(ratio) < 1e-5 * abs(np.median(ratio))
    assert np.max(np.abs(after["embed/W"] - init["embed/W"])) < 1e-8


def test_ponita_resume_is_bit_for_bit(tiny, tmp_path, first_frames, monkeypatch):
    from geomp_ref.nbody import NBodyDataset

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_argv(tiny, straight, 4)) == 0
    original = NBodyDataset.batches
    calls = {"train": 0}

    def batches(self, *args, **kwargs):  # stop in epoch 3 (the checkpoint is at epoch 1)
        if self.partition == "train":
            calls["train"] += 1
            if calls["train"] == 4:
                raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NBodyDataset, "batches", batches)
    with pytest.raises(KeyboardInterrupt):
        main(_argv(tiny, resumed, 4))
    monkeypatch.setattr(NBodyDataset, "batches", original)
    assert main(_argv(tiny, resumed, 4, "--resume")) == 0
    for name in ("last", "best"):
        a, b = np.load(straight / f"{name}.npz"), np.load(resumed / f"{name}.npz")
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert a[key].tobytes() == b[key].tobytes(), (name, key)
