"""N-body training: seconds per epoch against the published torch code, and the results table.

Two subcommands:

``speed``
    Seconds per training epoch of the "nbody_small" setting (30 batches of 100 five-body systems,
    plus validation and test on 2 000 + 2 000 systems every 5 epochs, i.e. 8 forward batches per
    epoch on average) for every model: ours with the ``numpy`` and ``numba`` backends (forward,
    MSE, hand backward, :class:`geomp_ref.train.Adam` step; float64) and the published torch
    code (forward, ``nn.MSELoss``, autograd, ``torch.optim.Adam``; float32 as published). The
    published classes are loaded from checkouts whose paths you give: ``--egnn-peer`` (a
    vgsatorras/egnn checkout: ``Linear``, ``GNN``, ``RF_vel``, ``EGNN_vel`` of
    ``n_body_system/model.py``) and ``--segnn-peer`` (RobDHess/Steerable-E3-GNN: ``SEGNN`` of
    ``models/segnn/segnn.py`` in the README's N-body configuration; its inputs come from our
    :class:`~geomp_ref.layers.segnn_nbody.NBodyAttributes` in the published ``reference`` mode,
    which is data preparation there, outside autograd). ``tfn`` is timed against e3nn's own
    ``gate_points_2101.Network`` of the same architecture (``benchmarks/tfn_e3nn.py``; needs
    only e3nn). The published TFN needs DGL and
    ``lie_learn`` (NumPy 1) and is timed from its training log instead (``table``). Methods run
    interleaved per round on the same batches; medians over rounds.

``table``
    Reads finished runs from a folder: ``ours_<model>_<E>/metrics.csv`` (written by ``geomp-ref
    nbody train``) and ``pub_<model>_<E>.log`` (the published scripts' stdout), and prints, for
    every budget B in ``--budgets`` that a run covers, the test MSE at the best validation MSE
    among the evaluations of epochs < B, which is what a run of B epochs reports (no schedule
    depends on the total), next to the paper's Table 2. ``tfn-se3`` (the published TFN's own
    architecture) is compared with the published TFN's logs, ``pub_tfn_<E>.log``.

``seeds``
    The same budgets over many runs of one model: every ``ours_<model>_*/metrics.csv`` and
    every published log ``pub_<model>_*.log`` found in the ``--runs`` folders (any suffix after
    the model name, e.g. ``ours_tfn-se3_11_s3``), each read at the budgets it covers; prints the
    runs' values, the mean and standard deviation of each side and the ratio of the means.
    ``--peer`` names other published runs: ``--model tfn --peer tfn-e3nn`` compares our ``tfn``
    with e3nn's own ``Network`` of the same architecture trained by ``benchmarks/tfn_e3nn.py``
    (logs ``pub_tfn-e3nn_<E>_s<S>.log``).

``ponita``
    PONITA's schedule spans the whole run (cosine over ``--epochs``), so a run of E epochs is
    read at E only. Reads ``ours_ponita_<E>_s<S>/`` (``geomp-ref nbody train --model ponita
    --epochs E --seed S``) and ``pub_ponita_<E>_s<S>.csv`` (the Lightning ``metrics.csv`` of
    ``benchmarks/ponita_published.py --epochs E --seed S``), and prints per budget the test MSE at
    the best validation of every run, the means, standard deviations, their ratio and the median
    seconds per training epoch of each side.

Usage::

    python benchmarks/nbody.py speed --data DIR --egnn-peer EGNN_CHECKOUT \\
        --segnn-peer SEGNN_CHECKOUT [--rounds 3]
    python benchmarks/nbody.py table --runs RUNS_DIR [--budgets 10,50,100,1000]
    python benchmarks/nbody.py seeds --model tfn-se3 --runs DIR [DIR ...] [--budgets 6,11]
    python benchmarks/nbody.py seeds --model tfn --peer tfn-e3nn --runs DIR [--budgets 6,11]
    python benchmarks/nbody.py ponita --runs DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geomp_ref.models.nbody import MODELS, make_model, model_inputs  # noqa: E402
from geomp_ref.nbody import NBodyDataset  # noqa: E402
from geomp_ref.train import Adam, mse_loss  # noqa: E402

#: EGNN paper, Table 2 (test MSE, charged 5-body, 3 000 training systems, 10 000 epochs)
PAPER = {"linear": 0.0819, "se3_transformer": 0.0244, "tfn": 0.0155, "tfn-se3": 0.0155,
         "gnn": 0.0107, "rf": 0.0104, "egnn": 0.0071, "segnn": 0.0043, "segnn-e3": 0.0043,
         "ponita": 0.0043}
LR = {"linear": 5e-4, "gnn": 1e-3, "rf": 2e-4, "egnn": 5e-4, "segnn": 5e-4, "segnn-e3": 5e-4,
      "tfn": 1e-3, "tfn-se3": 1e-3, "ponita": 1e-3}
#: the published run each model is compared with (both TFNs against the published TFN, both
#: SEGNNs against the published SEGNN: there is no published equivariant-centring run)
PEER_RUN = {"tfn-se3": "tfn", "segnn-e3": "segnn"}
TRAIN_BATCHES, EVAL_BATCHES = 30, 8  # per epoch: 3000 / 100; (2000 + 2000) / 100 / 5


# --- speed --------------------------------------------------------------------------------------


def _ours(name, backend):
    block = make_model(name) if name == "linear" else make_model(name, backend=backend)
    params = block.init(0)
    opt = Adam(LR[name], weight_decay=1e-12)
    state = [params, opt.init(params)]

    def train(batch):
        pred, cache = block.forward(state[0], batch.graph, *model_inputs(name, batch))
        _, grad = mse_loss(pred, batch.target)
        grads, _ = block.backward(state[0], cache, grad)
        state[0], state[1] = opt.step(state[0], grads, state[1])

    def evaluate(batch):
        block.forward(state[0], batch.graph, *model_inputs(name, batch))

    return train, evaluate


def _load(path, module):
    # both checkouts have a top-level package "models": forget one before loading the other
    for key in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
        del sys.modules[key]
    # and this folder has a models.py, which would shadow a namespace package "models"
    saved = list(sys.path)
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(path)] + [p for p in saved if Path(p or ".").resolve() != here]
    try:
        return importlib.import_module(module)
    finally:
        sys.path[:] = saved


def _torch_egnn_repo(name, path):
    import torch

    m = _load(path, "n_body_system.model")
    silu = torch.nn.SiLU()
    model = {"linear": lambda: m.Linear(6, 3, device="cpu"),
             "gnn": lambda: m.GNN(input_dim=6, hidden_nf=64, n_layers=4, device="cpu",
                                  recurrent=True),
             "rf": lambda: m.RF_vel(hidden_nf=64, edge_attr_nf=2, device="cpu", act_fn=silu,
                                    n_layers=4),
             "egnn": lambda: m.EGNN_vel(in_node_nf=1, in_edge_nf=2, hidden_nf=64, device="cpu",
                                        n_layers=4, recurrent=True)}[name]()

    def call(b):
        t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        x, v = t(b.x), t(b.v)
        edges = [torch.tensor(b.graph.dst), torch.tensor(b.graph.src)]  # published [rows, cols]
        a = t(b.edge_attr)
        if name == "linear":
            return model(torch.cat([x, v], 1))
        if name == "gnn":
            return model(torch.cat([x, v], 1), edges, a)
        d2 = ((x[edges[0]] - x[edges[1]]) ** 2).sum(1, keepdim=True)
        speed = torch.sqrt((v ** 2).sum(1, keepdim=True))
        # RF_vel(vel_norm, x, edges, vel, edge_attr), EGNN_vel(|v|, x, edges, vel, edge_attr)
        return model(speed, x, edges, v, torch.cat([a, d2], 1))

    return model, call


def _torch_segnn_repo(path):
    import torch
    from e3nn.o3 import Irreps
    from torch_geometric.data import Data

    m = _load(path, "models.segnn.segnn")
    sh = Irreps.spherical_harmonics(1)
    model = m.SEGNN(Irreps("2x1o+1x0e"), Irreps("32x0e+32x1o"), Irreps("1x1o"), sh, sh,
                    num_layers=4, norm="none", pool="avg", task="node",
                    additional_message_irreps=Irreps("2x0e"))
    prep = make_model("segnn").attributes  # the published transform, reference mode

    def call(b):
        (f, ea, na, s), _ = prep.forward({}, b.graph, b.x, b.v, b.charges)
        t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        g = Data(x=t(f), pos=t(b.x), edge_index=torch.tensor(np.stack([b.graph.src,
                                                                         b.graph.dst])),
                 edge_attr=t(ea), node_attr=t(na), additional_message_features=t(s),
                 batch=torch.tensor(b.graph.batch))
        return g.pos + model(g)

    return model, call


def _torch_e3nn_tfn():
    import tfn_e3nn  # benchmarks/tfn_e3nn.py: e3nn's own Network in the `tfn` configuration
    import torch

    model = tfn_e3nn.build(make_model("tfn"), torch.float32)

    def call(b):
        t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        return tfn_e3nn.predict(model, t(b.x), t(b.v), t(b.charges),
                                torch.tensor(b.graph.src), torch.tensor(b.graph.dst))

    return model, call


def _torch(name, args):
    import torch

    if name == "tfn":
        model, call = _torch_e3nn_tfn()
    elif name == "segnn":
        model, call = _torch_segnn_repo(args.segnn_peer)
    else:
        model, call = _torch_egnn_repo(name, args.egnn_peer)
    opt = torch.optim.Adam(model.parameters(), lr=LR[name], weight_decay=1e-12)
    loss_fn = torch.nn.MSELoss()

    def train(b):
        opt.zero_grad()
        loss = loss_fn(call(b), torch.tensor(b.target, dtype=torch.float32))
        loss.backward()
        opt.step()

    def evaluate(b):
        with torch.no_grad():
            call(b)

    return train, evaluate


def speed(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    data = NBodyDataset(args.data, "train", max_samples=100 * args.batches)
    batches = list(data.batches(100, np.random.default_rng(0)))
    models = args.models.split(",")
    print("| model | method | train batch s | eval batch s | s/epoch (30 train + 8 eval) |")
    print("|---|---|---:|---:|---:|")
    for name in models:
        methods = {f"ours ({b})": _ours(name, b) for b in ("numpy", "numba")}
        peer = args.segnn_peer if name == "segnn" else args.egnn_peer
        # the published TFN needs DGL, PONITA Lightning (both timed from their logs); the
        # equivariant-centring SEGNN has no published code; `tfn` is e3nn's own Network
        if name == "tfn" and importlib.util.find_spec("e3nn") is not None:
            methods["e3nn torch (Network)"] = _torch(name, args)
        elif name not in ("tfn", "tfn-se3", "segnn-e3", "ponita") and peer:
            methods["published torch"] = _torch(name, args)
        times = {k: ([], []) for k in methods}
        for train, evaluate in methods.values():  # warm-up (numba compilation)
            train(batches[0])
            evaluate(batches[0])
        for _ in range(args.rounds):
            for k, (train, evaluate) in methods.items():
                for b in batches:
                    t0 = time.perf_counter()
                    train(b)
                    t1 = time.perf_counter()
                    evaluate(b)
                    times[k][0].append(t1 - t0)
                    times[k][1].append(time.perf_counter() - t1)
        for k, (tr, ev) in times.items():
            a, e = statistics.median(tr), statistics.median(ev)
            print(f"| {name} | {k} | {a:.4f} | {e:.4f} | "
                  f"{TRAIN_BATCHES * a + EVAL_BATCHES * e:.2f} |", flush=True)
    return 0


# --- table --------------------------------------------------------------------------------------


def _ours_evals(path):
    """[(epoch, val, test)] and the seconds of every epoch from a metrics.csv."""
    evals, seconds = [], []
    with open(path) as fh:
        for row in csv.DictReader(fh):
            seconds.append(float(row["seconds"]))
            if row.get("val_mse"):
                evals.append((int(row["epoch"]), float(row["val_mse"]), float(row["test_mse"])))
    return evals, seconds


_VAL = re.compile(r"==> val epoch (\d+) avg loss: ([0-9.eE+-]+)")
_TEST = re.compile(r"==> test epoch (\d+) avg loss: ([0-9.eE+-]+)")
_WALL = re.compile(r"^([0-9.]+) s wall", re.M)


def _pub_evals(path):
    """[(epoch, val, test)] and the wall time (None if the run was stopped) from a published log
    (both scripts print ``==> val epoch E avg loss: X`` then the same for test)."""
    text = Path(path).read_text(errors="replace")
    vals = {int(e): float(v) for e, v in _VAL.findall(text)}
    tests = {int(e): float(v) for e, v in _TEST.findall(text)}
    wall = _WALL.search(text)
    return ([(e, vals[e], tests[e]) for e in sorted(vals) if e in tests],
            float(wall.group(1)) if wall else None)


def _at_budget(evals, budget):
    """Test MSE at the best validation among evaluations of epochs < budget (first best wins,
    as both training scripts keep a strictly lower validation)."""
    best = None
    for epoch, val, test in evals:
        if epoch < budget and (best is None or val < best[1]):
            best = (epoch, val, test)
    return best


def table(args) -> int:
    runs = Path(args.runs)
    budgets = [int(b) for b in args.budgets.split(",")]
    print("| model | budget (epochs) | ours test MSE | published code test MSE | ours / published"
          " | paper (10 000 epochs) | ours s/epoch | published s/epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in (m for m in MODELS if m != "ponita"):  # ponita: the `ponita` subcommand
        ours_runs = sorted(runs.glob(f"ours_{name}_*/metrics.csv"))
        pub_runs = sorted(runs.glob(f"pub_{PEER_RUN.get(name, name)}_*.log"))
        ours = [(int(p.parent.name.rsplit("_", 1)[1]), *_ours_evals(p)) for p in ours_runs]
        pub = [(int(p.stem.rsplit("_", 1)[1]), *_pub_evals(p)) for p in pub_runs]
        for budget in budgets:
            o = [(_at_budget(ev, budget), sec) for n, ev, sec in ours
                 if n >= budget and len(sec) >= budget]
            p = [(_at_budget(ev, budget), wall / n if wall else None) for n, ev, wall in pub
                 if n >= budget and any(e >= budget - 5 for e, _, _ in ev)]
            if not o and not p:
                continue
            ot = o[0][0][2] if o and o[0][0] else math.nan
            pt = p[0][0][2] if p and p[0][0] else math.nan
            osec = f"{statistics.median(o[0][1][:budget]):.1f}" if o else "-"
            psec = f"{p[0][1]:.1f}" if p and p[0][1] else "-"
            ratio = f"{ot / pt:.2f}" if math.isfinite(ot) and math.isfinite(pt) else "-"
            fmt = lambda v: f"{v:.4f}" if math.isfinite(v) else "-"  # noqa: E731
            print(f"| {name} | {budget} | {fmt(ot)} | {fmt(pt)} | {ratio} | {PAPER[name]} | "
                  f"{osec} | {psec} |")
    return 0


def _covers(evals, budget):
    return bool(evals) and max(e for e, _, _ in evals) >= budget - 5


def seeds(args) -> int:
    name = args.model
    peer = args.peer or PEER_RUN.get(name, name)
    ours, pub = [], []
    for folder in map(Path, args.runs):
        for p in sorted(folder.glob(f"ours_{name}_*/metrics.csv")):
            ours.append((p.parent.name, _ours_evals(p)[0]))
        for p in sorted(folder.glob(f"pub_{peer}_*.log")):
            pub.append((p.stem, _pub_evals(p)[0]))
    print("| budget | side | runs | mean | sd | ours / published (means) |")
    print("|---:|---|---|---:|---:|---:|")
    for budget in (int(b) for b in args.budgets.split(",")):
        means = {}
        for side, runs in (("ours", ours), ("published", pub)):
            vals = [(n, _at_budget(ev, budget)[2]) for n, ev in runs if _covers(ev, budget)]
            if not vals:
                continue
            v = [x for _, x in vals]
            means[side] = statistics.mean(v)
            sd = f"{statistics.stdev(v):.4f}" if len(v) > 1 else "-"
            listed = ", ".join(f"{x:.4f}" for _, x in vals)
            ratio = (f"{means['ours'] / means['published']:.2f}"
                     if side == "published" and "ours" in means else "")
            print(f"| {budget} | {side} | {listed} | {means[side]:.4f} | {sd} | {ratio} |")
    return 0


def _pub_ponita(path):
    """(best validation, test MSE at it, median train-epoch seconds) of a Lightning metrics.csv."""
    vals, tests, secs = [], [], []
    with open(path) as fh:
        for row in csv.DictReader(fh):
            if row.get("valid MSE"):
                vals.append(float(row["valid MSE"]))
            if row.get("test MSE"):
                tests.append(float(row["test MSE"]))
            if row.get("train epoch time"):
                secs.append(float(row["train epoch time"]))
    if not vals or not tests:
        return None
    return min(vals), tests[-1], statistics.median(secs) if secs else math.nan


def ponita(args) -> int:
    runs = {}
    for folder in map(Path, args.runs):
        for p in sorted(folder.glob("ours_ponita_*/results.json")):
            res = json.loads(p.read_text())
            _, secs = _ours_evals(p.parent / "metrics.csv")
            runs.setdefault(int(res["epochs"]), {}).setdefault("ours", []).append(
                (p.parent.name, res["test_mse_at_best"], statistics.median(secs)))
        for p in sorted(folder.glob("pub_ponita_*.csv")):
            got = _pub_ponita(p)
            if got is not None:
                budget = int(p.stem.split("_")[2])
                runs.setdefault(budget, {}).setdefault("published", []).append(
                    (p.stem, got[1], got[2]))
    print("| budget | side | runs (test MSE at best val) | mean | sd | s/train epoch | "
          "ours / published (means) |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for budget in sorted(runs):
        means = {}
        for side in ("ours", "published"):
            got = runs[budget].get(side)
            if not got:
                continue
            v = [t for _, t, _ in got]
            means[side] = statistics.mean(v)
            sd = f"{statistics.stdev(v):.4f}" if len(v) > 1 else "-"
            sec = statistics.median(s for _, _, s in got)
            ratio = (f"{means['ours'] / means['published']:.2f}"
                     if side == "published" and "ours" in means else "")
            print(f"| {budget} | {side} | {', '.join(f'{t:.4f}' for t in v)} | "
                  f"{means[side]:.4f} | {sd} | {sec:.1f} | {ratio} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--data", required=True, help="folder of the nbody_small files")
    sp.add_argument("--models", default=",".join(MODELS))
    sp.add_argument("--egnn-peer", default=None, help="vgsatorras/egnn checkout")
    sp.add_argument("--segnn-peer", default=None, help="RobDHess/Steerable-E3-GNN checkout")
    sp.add_argument("--batches", type=int, default=2)
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--threads", type=int, default=1)
    tp = sub.add_parser("table")
    tp.add_argument("--runs", required=True)
    tp.add_argument("--budgets", default="10,50,100,1000")
    ep = sub.add_parser("seeds")
    ep.add_argument("--model", required=True, choices=MODELS)
    ep.add_argument("--runs", required=True, nargs="+")
    ep.add_argument("--budgets", default="6,11")
    ep.add_argument("--peer", default=None,
                    help="the published runs' name in pub_<peer>_*.log (default: the model's "
                         "published run; tfn-e3nn for benchmarks/tfn_e3nn.py)")
    pp = sub.add_parser("ponita")
    pp.add_argument("--runs", required=True, nargs="+")
    args = ap.parse_args(argv)
    return {"speed": speed, "table": table, "seeds": seeds, "ponita": ponita}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
