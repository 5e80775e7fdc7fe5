r"""Equivariance error of the grid layers under continuous rotations, versus grid size.

The grid layers (``LiftingConv``, ``GroupConv``, ``PositionOrientationConv`` with a fixed grid)
are exactly equivariant only for the grid's own rotation group. For a Haar-random rotation Q and
translation t this script measures the invariance error of the grid-mean output

.. math::

    err = \frac{\max_{n,c} |\bar y_{n,c}(Qx + t) - \bar y_{n,c}(x)|}{\max_{n,c} |\bar y_{n,c}(x)|},
    \qquad \bar y_n = \frac1G \sum_k out_n(R_k),

(the grid mean of an exactly equivariant signal is exactly invariant), for scalar inputs lifted to
the grid, and prints its median and maximum over random problems (random graphs of 8 nodes,
random weights, ``--trials`` draws). The column ``exact`` is the same error for a rotation of the
grid's own group (it must be at round-off level).

Run: ``python3 benchmarks/group_conv_equivariance.py [--trials 10]`` (a few seconds).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geomp_ref import testing
from geomp_ref.layers.group_conv import GroupConv, LiftingConv
from geomp_ref.layers.position_orientation import PositionOrientationConv
from geomp_ref.lie import grids


def _rot2(a):
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _net(kind, grid, rng):
    """(forward(f, pos, graph) -> grid-mean output, dim, exact rotation sampler)."""
    if kind in ("lift", "lift+group"):
        lift = LiftingConv(2, 3, grid=grid, hidden=8)
        p1 = lift.init(rng)
        conv = GroupConv(3, 3, grid=grid, hidden=8)
        p2 = conv.init(rng)
        R = lift.rotations

        def fwd(f, pos, graph):
            y = lift(p1, graph, f, pos)
            if kind == "lift+group":
                y = conv(p2, graph, y, pos)
            return y.mean(axis=1)

        return fwd, lift.dim, (lambda r: R[int(r.integers(1, len(R)))])
    dim = 3 if kind == "po3" else 2
    name, num = grid
    layer = PositionOrientationConv(2, 3, dim=dim, grid=name, num_ori=num, hidden=8, pool=True)
    p = layer.init(rng)
    G = layer.ori.shape[0]

    def fwd(f, pos, graph):
        return layer(p, graph, np.repeat(f[:, None, :], G, axis=1), pos)

    if name == "uniform":
        def exact(r):
            return _rot2(2 * np.pi * int(r.integers(1, num)) / num)
    elif name in ("octahedron", "icosahedron"):
        Rg = grids.so3_polyhedral("octa" if name == "octahedron" else "icosa")

        def exact(r):
            return Rg[int(r.integers(1, len(Rg)))]
    else:
        exact = None
    return fwd, dim, exact


def measure(kind, grid, trials: int, seed: int = 0):
    cont, ex = [], []
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial])
        fwd, dim, exact = _net(kind, grid, rng)
        graph = testing.random_graph(rng, 8, avg_degree=4.0, isolated=False)
        pos = testing.random_points(rng, 8, dim)
        f = rng.normal(size=(8, 2))
        t = rng.normal(size=dim)
        out = fwd(f, pos, graph)
        Q = (
            _rot2(rng.uniform(0, 2 * np.pi))
            if dim == 2
            else testing.random_orthogonal(rng, 3, proper=True)
        )
        cont.append(_err(fwd(f, pos @ Q.T + t, graph), out))
        if exact is not None:
            Qe = exact(rng)
            ex.append(_err(fwd(f, pos @ Qe.T + t, graph), out))
    return np.median(cont), np.max(cont), (np.max(ex) if ex else float("nan"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)
    print(
        f"# {platform.platform()}; Python {platform.python_version()}; NumPy {np.__version__}; "
        f"{args.trials} random problems per row (8 nodes, random weights)"
    )
    rows = []
    for n in (4, 8, 16, 32, 64):
        rows.append(("LiftingConv", "SO(2)", f"SO2_{n}", n, "lift", f"SO2_{n}"))
    for n in (4, 8, 16, 32):
        rows.append(("Lifting+GroupConv", "SO(2)", f"SO2_{n}", n, "lift+group", f"SO2_{n}"))
    for name, size in (("tetra", 12), ("octa", 24), ("icosa", 60)):
        rows.append(("LiftingConv", "SO(3)", f"SO3_{name}", size, "lift", f"SO3_{name}"))
        rows.append(
            ("Lifting+GroupConv", "SO(3)", f"SO3_{name}", size, "lift+group", f"SO3_{name}")
        )
    for n in (4, 8, 16, 32):
        rows.append(
            ("PositionOrientationConv", "SO(2)", f"S1 uniform {n}", n, "po2", ("uniform", n))
        )
    rows.append(("PositionOrientationConv", "SO(3)", "S2 octahedron", 6, "po3", ("octahedron", 6)))
    rows.append(
        ("PositionOrientationConv", "SO(3)", "S2 icosahedron", 12, "po3", ("icosahedron", 12))
    )
    for n in (8, 16, 32, 64, 128):
        rows.append(
            ("PositionOrientationConv", "SO(3)", f"S2 fibonacci {n}", n, "po3", ("fibonacci", n))
        )
    print(
        f"{'layer':24s} {'rotations':9s} {'grid':18s} {'G':>4s} {'median err':>11s} "
        f"{'max err':>9s} {'exact':>9s} {'time':>6s}"
    )
    for layer, group, gname, size, kind, grid in rows:
        t0 = time.perf_counter()
        med, mx, ex = measure(kind, grid, args.trials)
        dt = time.perf_counter() - t0
        exs = "-" if np.isnan(ex) else f"{ex:.1e}"
        print(
            f"{layer:24s} {group:9s} {gname:18s} {size:4d} {med:11.2e} {mx:9.2e} {exs:>9s} "
            f"{dt:5.1f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
