"""SEGNN layer, forward + backward, against the e3nn-built torch version on the CPU (float64).

Problem: one SEGNN layer with hidden irreps ``32x0e+32x1o`` (the N-body hidden irreps) and
``l <= 1`` attributes computed from positions (harmonics, their mean, the squared distance), N
nodes with E = 10 N random edges (default E = 1e4), ``L = <g, out>`` with a fixed random
cotangent ``g``:

* ours: the attributes (:func:`geomp_ref.layers.segnn_attributes.segnn_attributes`),
  ``SEGNNLayer.forward`` then ``.backward`` and the attributes' VJP (gradients for every weight,
  h and pos);
* torch: the same layer assembled from e3nn modules (FullyConnectedTensorProduct, Gate,
  spherical_harmonics; the construction of tests/peers/test_e3nn_steerable.py), then
  ``out.backward(g)`` (autograd), ``torch.set_num_threads(2)``, built under float64.

Repeats interleave the two methods; the table shows medians and the ratio ours / torch, with the
machine description.

Usage::

    python3 benchmarks/steerable.py                # E = 1e4, 5 repeats
    python3 benchmarks/steerable.py --edges 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "peers"))

from geomp_ref.graph import make_graph  # noqa: E402  (after the path setup)
from geomp_ref.layers.segnn import SEGNN  # noqa: E402
from geomp_ref.layers.segnn_attributes import segnn_attributes, segnn_attributes_vjp  # noqa: E402


def machine() -> str:
    import os

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"{platform.platform()}, Python {platform.python_version()}, numpy {np.__version__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hidden", default="32x0e+32x1o")
    args = ap.parse_args(argv)
    import torch

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(2)
    from test_e3nn_steerable import (  # the e3nn-built reference of the peer tests
        _t,
        _torch_attributes,
        _torch_layer,
        _torch_layer_forward,
    )

    rng = np.random.default_rng(0)
    n = max(args.edges // 10, 2)
    src = rng.integers(0, n, size=args.edges)
    dst = (src + rng.integers(1, n, size=args.edges)) % n  # no self-loops
    graph = make_graph(np.stack([src, dst]).astype(np.int64), n)
    pos = rng.normal(size=(n, 3)) * 3.0
    net = SEGNN(args.hidden, args.hidden, args.hidden, num_layers=1, lmax_attr=1, task="node",
                mode="reference")  # holds the attribute options; its layer is the one timed
    lay = net.layer
    params = lay.init(rng)
    h = rng.normal(size=(n, lay.irreps_hidden.dim))
    cot = rng.normal(size=h.shape)
    mods = _torch_layer(lay, params)

    def ours():
        (a_ij, a_i, s_ij), att = segnn_attributes(net, graph, pos, None, None, None)
        _out, cache = lay.forward(params, graph, h, a_ij, a_i, s_ij)
        _, (_, g_aij, g_ai, g_s) = lay.backward(params, cache, cot)
        segnn_attributes_vjp(net, att, g_aij, g_ai, g_s)

    def theirs():
        ht, pt = _t(h, True), _t(pos, True)
        ea, na, sq = _torch_attributes(net, graph, pt)
        out = _torch_layer_forward(mods, graph, ht, ea, na, sq)
        out.backward(_t(cot))
        for m in mods.values():
            m.zero_grad(set_to_none=True)

    times = {"ours (numpy)": [], "torch + e3nn": []}
    ours(), theirs()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("ours (numpy)", ours), ("torch + e3nn", theirs)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    print(f"# machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"# SEGNNLayer({args.hidden}, l <= 1 attributes): N = {n}, E = {args.edges}, forward + "
          f"backward, median of {args.repeats}")
    base = statistics.median(times["torch + e3nn"])
    print(f"{'method':<16} {'seconds':>10} {'ratio':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<16} {med:>10.4f} {med / base:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
