"""Train the `tfn` N-body network as e3nn's published torch model, for the results table.

Our ``tfn`` model (:class:`geomp_ref.models.nbody_steerable.NBodyTFN`) is the stack of
e3nn's ``gate_points_2101`` convolutions and gates: the network that e3nn publishes as
``e3nn.nn.models.gate_points_2101.Network``. This script trains that class itself, with
autograd and ``torch.optim.Adam``, under the N-body recipe of the EGNN repository's
``main_nbody.py`` (3 000 training systems, frames 30 -> 40, batch 100 reshuffled every epoch with
the incomplete batch dropped, ``nn.MSELoss``, Adam with weight decay 1e-12, validation and test
on 2 000 + 2 000 systems after epoch 0 and every 5th epoch), so that ``geomp-ref nbody train
--model tfn`` has a torch run of the same architecture to be compared with
(``benchmarks/nbody.py seeds --model tfn --peer tfn-e3nn``).

The network is ``Network(**make_model("tfn").e3nn_network_options())``: ``irreps_in="1x0e+1x1o"``,
``irreps_hidden="16x0e+16x1o"``, ``irreps_out="1x1o"``, no node attributes, harmonics up to
l = 2 as edge attributes, ``layers=3``, ``max_radius=20``, 20 Gaussians, radial network 2 x 32,
``num_neighbors=16``, ``reduce_output=False``; the input is ``[q, v]`` and the prediction
``x + output``, as in ``NBodyTFN``. One function of e3nn's module is stood in for:
``Network.forward`` builds its graph with the module's naive ``radius_graph``, which thresholds
``torch.cdist(pos, pos) > 0``, and ``cdist`` rounds some of the diagonal above 0 (58 spurious
self pairs in a first batch of 100 systems); during each call that function is replaced by one
returning the complete graph of the published N-body loader (the edges ``NBodyTFN`` sees), and
the rest of ``Network.forward`` runs unchanged. e3nn draws the
initial weights (``torch.manual_seed(--seed)``); float32 by default, as e3nn and the EGNN
repository run.

The output follows the published script's log lines (``==> val epoch E avg loss: X``, then
test), one line per training epoch with its seconds, and ``S s wall`` at the end, so that
``benchmarks/nbody.py`` reads it like a published log. Usage::

    python benchmarks/tfn_e3nn.py --data DIR --epochs 11 --seed 1 > RUNS/pub_tfn-e3nn_11_s1.log
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(model, torch_dtype=None):
    """e3nn's ``gate_points_2101.Network`` with the sizes of ``model`` (an ``NBodyTFN``)."""
    import torch
    from e3nn.nn.models.gate_points_2101 import Network

    old = torch.get_default_dtype()
    if torch_dtype is not None:
        torch.set_default_dtype(torch_dtype)  # e3nn builds its buffers in the default dtype
    try:
        return Network(**model.e3nn_network_options())
    finally:
        torch.set_default_dtype(old)


def predict(net, pos, vel, charges, edge_src, edge_dst):
    """``pos + net(...)``: ``Network.forward`` itself, with its stand-in ``radius_graph``
    replaced, for this call, by the given edges (row 0 senders, as e3nn's ``edge_src``)."""
    import torch
    from e3nn.nn.models import gate_points_2101 as gp

    edges = torch.stack([edge_src, edge_dst])
    saved = gp.radius_graph
    gp.radius_graph = lambda pos, r_max, batch: edges
    try:
        return pos + net({"pos": pos, "x": torch.cat([charges, vel], dim=1)})
    finally:
        gp.radius_graph = saved


def _tensors(batch, dtype):
    import torch

    t = lambda a: torch.tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    return (t(batch.x), t(batch.v), t(batch.charges), t(batch.target),
            torch.tensor(batch.graph.src, dtype=torch.long),
            torch.tensor(batch.graph.dst, dtype=torch.long))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of the nbody_small files")
    ap.add_argument("--suffix", default="small")
    ap.add_argument("--epochs", type=int, default=11)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-12)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--max-samples", type=int, default=3000)
    ap.add_argument("--test-interval", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from geomp_ref.models.nbody import make_model
    from geomp_ref.nbody import NBodyDataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    net = build(make_model("tfn"), dtype)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    mse = torch.nn.MSELoss()
    f32 = args.dtype == "float32"
    train = NBodyDataset(args.data, "train", suffix=args.suffix, max_samples=args.max_samples,
                         float32=f32)
    evals = {p: [_tensors(b, dtype) for b in
                 NBodyDataset(args.data, p, suffix=args.suffix, float32=f32).batches(
                     args.batch_size, shuffle=False)] for p in ("val", "test")}
    gen = torch.Generator().manual_seed(args.seed)
    n_batches = len(train) // args.batch_size
    print(f"e3nn gate_points_2101.Network, {sum(p.numel() for p in net.parameters())} "
          f"parameters, {args.dtype}, seed {args.seed}, lr {args.lr}", flush=True)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(train), generator=gen).numpy()
        total = 0.0
        for k in range(n_batches):
            b = train.batch(order[k * args.batch_size:(k + 1) * args.batch_size])
            x, v, q, target, src, dst = _tensors(b, dtype)
            opt.zero_grad()
            loss = mse(predict(net, x, v, q, src, dst), target)
            loss.backward()
            opt.step()
            total += loss.item()
        print(f"epoch {epoch} train loss {total / n_batches:.6f} "
              f"{time.perf_counter() - t0:.2f} s", flush=True)
        if epoch % args.test_interval == 0:
            net.eval()
            with torch.no_grad():
                for name, label in (("val", "val"), ("test", "test")):
                    s = c = 0.0
                    for x, v, q, target, src, dst in evals[name]:
                        s += mse(predict(net, x, v, q, src, dst), target).item() * x.shape[0]
                        c += x.shape[0]
                    print(f"==> {label} epoch {epoch} avg loss: {s / c:.8f}", flush=True)
    print(f"{time.perf_counter() - start:.1f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
