"""Accuracy of geomp_ref.lie against 50-digit mpmath truth (measures: tests/lie/lie_mp_truth.py).

Prints, per group and function, the maximum error over the hard-case list plus a log-uniform
sweep of ``--n`` angles in [1e-12, 1] ∪ [1, π] (Exp and Jacobians also over |θ| ∈ (π, 10]), the
scalar coefficients B..F over (0, π], and the exact-π elements. Goals: 1e-15 (group round trip
2e-15, coefficients 2e-15).

Run: ``python3 benchmarks/lie_accuracy.py [--n 2000] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lie"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lie_mp_truth as T
import mpmath as mp

from geomp_ref.lie import GROUPS, _series


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="sweep angles per group and function")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(f"# numpy {np.__version__}, mpmath {mp.__version__}, {platform.platform()}, "
          f"{platform.processor() or platform.machine()}")
    print(f"# sweep: {args.n} angles + {len(T.HARD_ANGLES)} hard cases, seed {args.seed}")
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    angles = T.HARD_ANGLES + T.sweep_angles(args.n, rng)
    print(f"{'group':6s} {'function':20s} {'max error':>10s}  {'goal':>7s}  worst case")
    for name, G in GROUPS.items():
        taus = T.tangents(name, angles, rng)
        big = T.tangents(name, T.LARGE_ANGLES * 5, rng)
        for what in T.WHATS:
            err, arg = T.measure(G, name, taus, what)
            goal = 2e-15 if what == "group_round_trip" else 1e-15
            where = np.array2string(np.asarray(arg), precision=6, max_line_width=200)
            print(f"{name:6s} {what:20s} {err:10.2e}  {goal:7.0e}  {where}")
            if what in ("exp", "jr", "jl"):
                err, arg = T.measure(G, name, big, what)
                print(f"{name:6s} {what + ' |θ|≤10':20s} {err:10.2e}  {goal:7.0e}")
        worst = 0.0
        for g, xi in T.exact_pi_elements(name):
            worst = max(worst, T.tangent_error_twins(name, G.log(g), xi))
        print(f"{name:6s} {'log at exact π':20s} {worst:10.2e}  {1e-15:7.0e}")
    ths = [t for t in T.sweep_angles(args.n, rng) if t > 0]
    for i, c in enumerate("ABCDEF"):
        f = getattr(_series, c)
        err = max(abs(mp.mpf(float(f(t))) - T.coeffs(mp.mpf(t))[i]) / T.coeffs(mp.mpf(t))[i]
                  for t in ths)
        print(f"{'coef':6s} {c:20s} {float(err):10.2e}  {2e-15:7.0e}")
    print(f"# {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
