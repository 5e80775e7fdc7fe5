"""NBodySE3TFN against the published TFN baseline itself (vgsatorras/egnn ``OursTFN``, DGL).

The published TFN needs DGL and ``lie_learn`` with NumPy 1, which do not install next to this
package, so the check runs in two interpreters that exchange one pickle file:

1. ``python benchmarks/tfn_published_check.py ours --data DATA --work DIR`` (this package's
   environment): draws our initial weights (``--seed``), writes them to ``DIR/init.pkl`` with
   the forward output of a first batch, and trains ``--steps`` Adam steps (lr 1e-3, weight
   decay 1e-12, the first batches of 100 training systems in order, float64), printing the loss
   of every step.
2. ``python benchmarks/tfn_published_check.py published --data DATA --work DIR --peer
   EGNN_CHECKOUT`` (an environment with torch, DGL and the EGNN checkout's requirements):
   builds the published ``OurDynamics(model='tfn', nf=16, n_layers=4, num_degrees=2)`` as
   ``main_nbody.py --model tfn --nf 32 --degree 2`` does, copies our weights into it, prints
   the largest difference of its forward output from ours, then trains the same steps with
   ``torch.optim.Adam`` in float32 (as published) and prints its losses next to ours.

This script imports nothing of geomp_ref in the second mode, and nothing of the checkout in the
first.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import sys
from pathlib import Path

import numpy as np

LR, WD = 1e-3, 1e-12


def _batches(data, steps):
    d = Path(data)
    n = 100 * steps
    loc = np.load(d / "loc_train_charged5_initvel1small.npy")[:n]
    vel = np.load(d / "vel_train_charged5_initvel1small.npy")[:n]
    ch = np.load(d / "charges_train_charged5_initvel1small.npy")[:n].astype(np.float64)
    for b in range(steps):
        s = slice(100 * b, 100 * b + 100)
        flat = lambda a: a.transpose(0, 2, 1).reshape(-1, 3)  # noqa: E731
        yield flat(loc[s, 30]), flat(vel[s, 30]), ch[s].reshape(-1, 1), flat(loc[s, 40])


def ours(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from geomp_ref.graph import complete_graph
    from geomp_ref.models.nbody_steerable import NBodySE3TFN
    from geomp_ref.train import Adam, mse_loss

    model = NBodySE3TFN(backend="numba")
    params = model.init(args.seed)
    graph = complete_graph(500, np.repeat(np.arange(100), 5))
    batches = list(_batches(args.data, args.steps))
    x, v, q, _ = batches[0]
    first = model(params, graph, x, v, q)
    opt = Adam(LR, weight_decay=WD)
    state = opt.init(params)
    losses, p = [], params
    for x, v, q, y in batches:
        out, cache = model.forward(p, graph, x, v, q)
        loss, g = mse_loss(out, y)
        grads, _ = model.backward(p, cache, g)
        p, state = opt.step(p, grads, state)
        losses.append(float(loss))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "init.pkl", "wb") as fh:
        pickle.dump({"params": params, "first": first, "losses": losses}, fh)
    print("ours  ", " ".join(f"{v:.4f}" for v in losses))
    return 0


def _load_weights(model, p, T):
    import torch

    blocks = model.se3.block0
    with torch.no_grad():
        for k in range(len(p["conv"])):
            conv, pc = blocks[2 * k], p["conv"][str(k)]
            for key, rp in pc["radial"].items():
                l, kk = key.split(",")
                net = conv.kernel_unary[f"({l},{kk})"].rp.net
                for i, n in ((0, "1"), (3, "2"), (6, "3")):
                    net[i].weight.copy_(T(rp["W" + n].T))
                    net[i].bias.copy_(T(rp["b" + n]))
                for i, n in ((1, "ln1"), (4, "ln2")):
                    net[i].bn.weight.copy_(T(rp[n + "_gamma"]))
                    net[i].bn.bias.copy_(T(rp[n + "_beta"]))
            for kk, W in pc["self"].items():
                conv.kernel_self[kk].copy_(T(W[None]))
            if str(k) in p["norm"]:
                for l, pn in p["norm"][str(k)].items():
                    net = blocks[2 * k + 1].transform[l]
                    net[0].bn.weight.copy_(T(pn["ln_gamma"]))
                    net[0].bn.bias.copy_(T(pn["ln_beta"]))
                    net[2].weight.copy_(T(pn["W"].T))
                    net[2].bias.copy_(T(pn["b"]))


def published(args) -> int:
    import torch

    sys.path.insert(0, str(Path(args.peer).resolve()))
    from n_body_system.se3_dynamics.dynamics import OurDynamics

    with open(Path(args.work) / "init.pkl", "rb") as fh:
        saved = pickle.load(fh)
    with contextlib.redirect_stdout(io.StringIO()):  # the constructor prints the module list
        model = OurDynamics(n_particles=5, n_dimesnion=3, nf=16, n_layers=4, model="tfn",
                            num_degrees=2, div=1)
    T = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    _load_weights(model, saved["params"], T)
    batches = list(_batches(args.data, len(saved["losses"])))
    x, v, q, _ = batches[0]
    with torch.no_grad():
        out = model(T(x), T(v), T(q)).numpy()
    diff = np.max(np.abs(out - saved["first"]))
    print(f"forward: largest |published - ours| = {diff:.2e} on outputs up to "
          f"{np.max(np.abs(saved['first'])):.2f}")
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WD)
    losses = []
    for x, v, q, y in batches:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(T(x), T(v), T(q)), T(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    ours_l = np.array(saved["losses"])
    print("ours     ", " ".join(f"{v:.4f}" for v in ours_l))
    print("published", " ".join(f"{v:.4f}" for v in losses))
    rel = np.abs(np.array(losses) - ours_l) / ours_l
    print(f"largest relative loss difference over {len(losses)} steps: {rel.max():.1e} "
          f"(first 10 steps: {rel[:10].max():.1e})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("ours", "published"))
    ap.add_argument("--data", required=True, help="folder of the nbody_small files")
    ap.add_argument("--work", required=True, help="folder for the exchanged pickle")
    ap.add_argument("--peer", help="vgsatorras/egnn checkout (published mode)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    if args.mode == "published" and not args.peer:
        ap.error("published mode needs --peer EGNN_CHECKOUT")
    return ours(args) if args.mode == "ours" else published(args)


if __name__ == "__main__":
    raise SystemExit(main())
