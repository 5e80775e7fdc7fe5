"""SEGNN layer, forward + backward, against the e3nn-built torch version on the CPU (float64).

Problem: ``SEGNNLayer("32x0e+32x1o", lmax_attr=1)`` (the N-body hidden irreps), N nodes with
E = 10 N random edges (default E = 1e4), ``L = <g, out>`` with a fixed random cotangent ``g``:

* ours: ``layer.forward`` then ``layer.backward`` (gradients for every weight, h and pos);
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

from geomp_ref.graph import make_graph
from geomp_ref.layers.segnn import SEGNNLayer


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
        _segnn_layer_torch,
        _segnn_layer_torch_forward,
        _t,
    )

    rng = np.random.default_rng(0)
    n = max(args.edges // 10, 2)
    src = rng.integers(0, n, size=args.edges)
    dst = (src + rng.integers(1, n, size=args.edges)) % n  # no self-loops
    graph = make_graph(np.stack([src, dst]).astype(np.int64), n)
    pos = rng.normal(size=(n, 3)) * 3.0
    lay = SEGNNLayer(args.hidden, lmax_attr=1, mode="reference")
    params = lay.init(rng)
    h = rng.normal(size=(n, lay.irreps_hidden.dim))
    cot = rng.normal(size=h.shape)
    mods = _segnn_layer_torch(lay, params)

    def ours():
        _out, cache = lay.forward(params, graph, h, pos)
        lay.backward(params, cache, cot)

    def theirs():
        ht, pt = _t(h, True), _t(pos, True)
        out = _segnn_layer_torch_forward(lay, mods, graph, ht, pt)
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
    print(f"# SEGNNLayer({args.hidden}, lmax_attr=1): N = {n}, E = {args.edges}, forward + "
          f"backward, median of {args.repeats}")
    base = statistics.median(times["torch + e3nn"])
    print(f"{'method':<16} {'seconds':>10} {'ratio':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<16} {med:>10.4f} {med / base:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
