r"""Lesson 2: geometric message passing -- relative positions versus distances.

Lesson 1's layer ``m_ij = phi_m(f_i, f_j, a_ij)`` becomes *geometric* when the edge attribute
``a_ij`` is computed from the positions. Two natural choices (``layers/mpnn.py``)::

    DistanceMPNN:          a_ij = |x_j - x_i|^2
    RelativePositionMPNN:  a_ij = x_j - x_i

Both are translation invariant: ``(x_j + t) - (x_i + t) = x_j - x_i``. They differ under
rotations and reflections ``x -> Q x`` (Q orthogonal).

Claim 1: distances give E(3)-invariant layers, whatever the networks
--------------------------------------------------------------------
``|Q(x_j - x_i)|^2 = (x_j - x_i)^T Q^T Q (x_j - x_i) = |x_j - x_i|^2`` because ``Q^T Q = I``.
So every argument of ``phi_m`` is unchanged, every message is the same number, and so is the
output, for *any* ``phi_m`` and ``phi_f``. The proof uses orthogonality only (never
``det Q = +1``), so it covers reflections too: the layer is E(3)-invariant, not only
SE(3)-invariant. ``derive_distance_invariance`` runs this in SymPy with a symbolic 3 x 3 ``Q``
(``_symbolic_groups.py``) and undefined networks on a 3-node graph.

Claim 2 (the counter-example): relative positions break rotation equivariance
-----------------------------------------------------------------------------
With ``a_ij = x_j - x_i`` the first layer of ``phi_m`` computes ``z = ... + a_ij^T W_a``. After a
rotation it computes ``(Q a_ij)^T W_a = a_ij^T (Q^T W_a)``: the same messages for every ``a``
only if ``Q^T W_a = W_a``, i.e. if Q fixes every column of ``W_a``. For a generic weight matrix
and a generic rotation that fails, so messages, outputs and anything built on them change. No
choice of ``phi_f`` can repair it: the information "which direction" was mixed with the weights
in a frame-dependent way. ``derive_relative_counterexample`` shows symbolically that
``a^T (Q^T - I) W_a`` is a non-zero polynomial for a rotation about the z axis, and
``check_layers`` measures it on the library's layers: ``RelativePositionMPNN`` is translation
invariant to rounding but changes by O(1) under a rotation, while ``DistanceMPNN`` is invariant
under rotations, reflections and translations to rounding.

What the later lessons do instead
---------------------------------
Keeping direction information *and* the symmetry needs one of four ideas:

* use invariants only (distances): point convolutions with radial kernels and SchNet (lessons
  3-4) -- expressive enough for many tasks, blind to angles within one layer;
* multiply relative vectors by invariant scalars and sum them: EGNN's coordinate update
  (lesson 5), which is equivariant because it is linear in the vectors;
* express the relative position in a local frame attached to the receiver,
  ``R_i^T (x_j - x_i)``, so that rotating the input rotates the frame too: lifting to the group
  (lesson 6; LieConv's ``Log(g_i^-1 g_j)``, regular group convolutions, position-orientation);
* let the features themselves transform under rotations and combine them with spherical
  harmonics of the direction through Clebsch-Gordan products: steerable convolutions (lesson 7).

Run: ``python derivations/geometric_message_passing.py [--check]`` (a few seconds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _symbolic_groups import is_zero, symbolic_e3, transformed_sqnorm

from geomp_ref.graph import make_graph
from geomp_ref.layers import DistanceMPNN, RelativePositionMPNN
from geomp_ref.testing import random_orthogonal

TOL = 1e-12
EDGES = [(0, 1), (2, 1), (1, 0), (2, 0), (0, 2), (1, 2)]  # (j, i): sender j -> receiver i


def _layer(f, x, attr):
    """The general layer with undefined networks: ``phi_f(f_i, sum_j phi_m(f_i, f_j, a_ij))``."""
    phi_m, phi_f = sp.Function("phi_m"), sp.Function("phi_f")
    out = []
    for i in range(3):
        agg = sum((phi_m(f[i], f[j], *attr(j, i)) for j, i2 in EDGES if i2 == i), sp.Integer(0))
        out.append(phi_f(f[i], agg))
    return out


def derive_distance_invariance():
    """Claim 1 in SymPy: the distance layer on ``Q x + t`` equals the layer on ``x``."""
    Q, t = symbolic_e3()
    x = [sp.Matrix(sp.symbols(f"x{k}_0:3", real=True)) for k in range(3)]
    f = sp.symbols("f0:3", real=True)
    xt = [Q * xk + t for xk in x]
    out = _layer(f, x, lambda j, i: (((x[j] - x[i]).T * (x[j] - x[i]))[0, 0],))

    def transformed_attr(j, i):
        D = x[j] - x[i]
        assert is_zero((xt[j] - xt[i]) - Q * D)  # the translation cancels
        return (transformed_sqnorm(D, Q),)  # |Q D|^2 = D^T Q^T Q D = |D|^2

    out_t = _layer(f, x, transformed_attr)
    return {"f'(Qx + t) = f'(x) for every output node": all(
        is_zero(a - b) for a, b in zip(out_t, out))}


def derive_relative_counterexample():
    """Claim 2 in SymPy: ``a^T (Q^T - I) W`` is a non-zero polynomial for a rotation about z."""
    th = sp.Symbol("theta", real=True)
    Qz = sp.Matrix([[sp.cos(th), -sp.sin(th), 0], [sp.sin(th), sp.cos(th), 0], [0, 0, 1]])
    a = sp.Matrix(sp.symbols("a0:3", real=True))
    W = sp.Matrix(3, 2, sp.symbols("w0:6", real=True))
    change = ((Qz * a).T * W - a.T * W).applyfunc(sp.simplify)
    # translations still cancel exactly
    x_i, x_j, t = (sp.Matrix(sp.symbols(f"{n}0:3", real=True)) for n in ("xi", "xj", "t"))
    return {
        "translation: (x_j + t) - (x_i + t) - (x_j - x_i) = 0": is_zero(
            (x_j + t) - (x_i + t) - (x_j - x_i)),
        "rotation: (Q a)^T W - a^T W is not identically 0": not is_zero(change),
        "... and vanishes only where Q = I (theta = 0)": is_zero(change.subs(th, 0)),
    }


def check_layers():
    """Measured on the library: ``{name: (relative error, must be small)}``."""
    rng = np.random.default_rng(2)
    N, C = 8, 3
    pairs = [(j, i) for i in range(N) for j in range(N) if i != j]
    graph = make_graph(np.array(pairs).T, N)
    f, pos = rng.normal(size=(N, C)), rng.normal(size=(N, 3))
    Q = random_orthogonal(rng, 3, proper=False)  # a reflection times a rotation
    R = random_orthogonal(rng, 3, proper=True)
    t = rng.normal(size=3)
    out = {}
    for cls in (DistanceMPNN, RelativePositionMPNN):
        layer = cls(C, hidden=8, out_channels=4)
        p = layer.init(rng)
        y = layer(p, graph, f, pos)
        scale = np.abs(y).max()
        name = cls.__name__
        out[f"{name}: translation"] = (np.abs(layer(p, graph, f, pos + t) - y).max() / scale, True)
        is_dist = cls is DistanceMPNN
        out[f"{name}: rotation"] = (np.abs(layer(p, graph, f, pos @ R.T) - y).max() / scale,
                                    is_dist)
        out[f"{name}: reflection x rotation"] = (
            np.abs(layer(p, graph, f, pos @ Q.T) - y).max() / scale, is_dist)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    ok = True
    print("claim 1: distance messages are E(3)-invariant for any networks (SymPy)")
    for name, good in derive_distance_invariance().items():
        ok &= good
        print(f"  {name:56s} {'ok' if good else 'FAIL'}")
    print("claim 2: relative positions are not rotation-equivariant (SymPy)")
    for name, good in derive_relative_counterexample().items():
        ok &= good
        print(f"  {name:56s} {'ok' if good else 'FAIL'}")
    print("measured on the library's layers (relative output change)")
    for name, (err, small) in check_layers().items():
        good = err <= TOL if small else err > 1e-2
        ok &= good
        want = "invariant" if small else "changes: not invariant"
        print(f"  {name:44s} {err:.1e} ({want})  {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
