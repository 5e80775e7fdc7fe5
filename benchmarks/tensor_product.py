"""Fully connected tensor product, forward + backward, against e3nn on the CPU (float64).

Problem: ``FullyConnectedTensorProduct("16x0e+16x1o+16x2e", "0e+1o+2e", "16x0e+16x1o+16x2e")``
(e3nn's component/element normalisation, shared internal weights) on N samples (default 1e4),
``L = <g, out>`` with a fixed random cotangent ``g``:

* ours: ``spec.forward`` then ``spec.backward`` (gradients for x1, x2 and the weight);
* e3nn: module call then ``out.backward(g)`` (torch autograd, ``torch.set_num_threads(2)``,
  module built after ``torch.set_default_dtype(torch.float64)``).

Methods are interleaved (each repeat times every method once) and the table shows medians.
A second table compares the Clebsch–Gordan tables for every triple with l <= 8: ours loaded from
the shipped file (``geomp_ref/o3/tables``) versus e3nn's ``wigner_3j`` construction, each in a
fresh interpreter (cold caches; the interpreter start-up and imports are not counted).

Usage::

    python3 benchmarks/tensor_product.py            # N = 1e4, 7 repeats
    python3 benchmarks/tensor_product.py --n 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # noqa: E402  (benchmarks/ is the script folder)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geomp_ref.o3.tensor_product import FullyConnectedTensorProduct  # noqa: E402  (after the path setup)

IRREPS = ("16x0e+16x1o+16x2e", "0e+1o+2e", "16x0e+16x1o+16x2e")


def machine() -> str:
    cpu = cpu_name()
    try:
        import torch

        tv = torch.__version__
    except ImportError:
        tv = "absent"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
        f"NumPy {np.__version__}, torch {tv} (2 threads)"
    )


def bench_tp(n: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    ours = FullyConnectedTensorProduct(*IRREPS)
    params = ours.init(rng)
    x1 = rng.standard_normal((n, ours.irreps_in1.dim))
    x2 = rng.standard_normal((n, ours.irreps_in2.dim))
    g = rng.standard_normal((n, ours.irreps_out.dim))

    def run_ours():
        _, cache = ours.forward(params, x1, x2)
        ours.backward(params, cache, g)

    methods = {"geomp_ref (NumPy)": run_ours}
    try:
        import torch
        from e3nn import o3

        torch.set_num_threads(2)
        torch.set_default_dtype(torch.float64)
        theirs = o3.FullyConnectedTensorProduct(*IRREPS)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(params["weight"]))
        X1 = torch.tensor(x1, requires_grad=True)
        X2 = torch.tensor(x2, requires_grad=True)
        G = torch.tensor(g)

        def run_e3nn():
            X1.grad = X2.grad = theirs.weight.grad = None
            theirs(X1, X2).backward(G)

        methods["e3nn 0.6 (torch CPU)"] = run_e3nn
        # same numbers first (the benchmark compares equal work)
        out = ours(params, x1, x2)
        ref = theirs(X1, X2).detach().numpy()
        print(f"max |ours - e3nn| on the output: {np.max(np.abs(out - ref)):.1e}")
    except ImportError:
        print("e3nn/torch not installed: timing ours only")
    times = {k: [] for k in methods}
    for f in methods.values():  # warm-up (allocations, e3nn's codegen caches)
        f()
    for _ in range(repeats):
        for k, f in methods.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


_OURS = """
import sys, time
sys.path.insert(0, {root!r})
from geomp_ref.o3 import wigner
t = time.perf_counter()
for l1 in range(9):
    for l2 in range(9):
        for l3 in range(abs(l1 - l2), min(l1 + l2, 8) + 1):
            wigner.wigner_3j(l1, l2, l3)
print(time.perf_counter() - t)
"""
_E3NN = """
import time, torch
torch.set_default_dtype(torch.float64)
from e3nn.o3 import wigner_3j
t = time.perf_counter()
for l1 in range(9):
    for l2 in range(9):
        for l3 in range(abs(l1 - l2), min(l1 + l2, 8) + 1):
            wigner_3j(l1, l2, l3)
print(time.perf_counter() - t)
"""


def bench_tables() -> dict:
    out = {}
    for name, code in (("geomp_ref: load shipped table", _OURS), ("e3nn: build wigner_3j", _E3NN)):
        r = subprocess.run(
            [sys.executable, "-c", code.format(root=str(ROOT))],
            capture_output=True,
            text=True,
            check=False,
        )
        out[name] = float(r.stdout.strip()) if r.returncode == 0 else float("nan")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-tables", action="store_true")
    args = ap.parse_args(argv)
    print(machine())
    print(
        f"\nFCTP {IRREPS[0]} x {IRREPS[1]} -> {IRREPS[2]}, N = {args.n}, forward + backward, "
        f"median of {args.repeats}"
    )
    res = bench_tp(args.n, args.repeats)
    base = res.get("e3nn 0.6 (torch CPU)")
    print(f"{'method':<24}{'seconds':>10}{'vs e3nn':>10}")
    for k, v in res.items():
        ratio = f"{v / base:.2f}x" if base else "-"
        print(f"{k:<24}{v:>10.4f}{ratio:>10}")
    if not args.skip_tables:
        print("\nCG tensors, every triple with l1, l2, l3 <= 8 (fresh interpreter, cold cache)")
        tab = bench_tables()
        base = tab.get("e3nn: build wigner_3j")
        for k, v in tab.items():
            print(f"{k:<32}{v:>10.3f} s{v / base:>9.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
