"""SEGNN's products of gathered node rows, evaluated weights first (``forward_gathered``).

On non-numpy backends the first message product of a SEGNN layer never forms the edge input
``[h_i, h_j, s_ij]``: its weight contraction runs on node rows and only the Clebsch–Gordan coupling
with the edge attribute runs per edge (``geomp_ref.o3._tp_split``, kernels in
``geomp_ref.backends.numba_tp``). Expected values come from independent routes: the literal
product of the concatenated rows (the NumPy oracle, itself checked against e3nn in the peer tests)
with ``np.add.at`` for the node sums, central finite differences, and plain NumPy formulas for the
coupling kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomp_ref import backends, make_graph, o3
from geomp_ref.backends import _nbjit
from geomp_ref.layers.segnn_blocks import O3TensorProduct, O3TensorProductGate
from geomp_ref.o3 import _tp_split

NB = backends.get("numba")
TOL = 1e-13


def _err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    if b.size == 0:
        return 0.0 if a.size == 0 else np.inf
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _graph(rng, n, e, isolated=0):
    """``e`` random edges among the first ``n - isolated`` nodes (the rest isolated)."""
    live = max(n - isolated, 1)
    src = rng.integers(0, live, size=e)
    dst = rng.integers(0, live, size=e)
    return make_graph(np.stack([src, dst]).astype(np.int64), n)


def _setup(rng, hid, add, attr, n, e, isolated=0, cls=O3TensorProductGate, order="dst-src"):
    hid_i = o3.Irreps(hid)
    add_i = o3.Irreps(add) if add else o3.Irreps("")
    msg_in = (hid_i + hid_i + add_i).simplify()
    kw = {"backend": "numba"} if cls is O3TensorProductGate else {}
    blk = cls(msg_in, hid, attr, **kw)
    params = blk.init(rng)
    g = _graph(rng, n, e, isolated)
    h = rng.normal(size=(n, hid_i.dim))
    a = rng.normal(size=(e, o3.Irreps(attr).dim))
    kinds = ("dst", "src") if order == "dst-src" else ("src", "dst")
    segs = [(k, h) for k in kinds]
    rows = [h[g.dst] if k == "dst" else h[g.src] for k in kinds]
    if add:
        s = rng.normal(size=(e, add_i.dim))
        segs.append(("edge", s))
        rows.append(s)
    return blk, params, g, segs, np.concatenate(rows, axis=1), a


def _gathered(blk, params, g, segs, a, backend="numba"):
    if isinstance(blk, O3TensorProductGate):
        return blk.forward_gathered(params, g, segs, a)
    return blk.forward_gathered(params, g, segs, a, backend)


def _node_sums(g, gx1, layout):
    """The literal backward's x1 gradient split per segment, node segments summed with add.at."""
    out, start = [], 0
    for kind, width in layout:
        part = gx1[:, start:start + width]
        start += width
        if kind != "edge":
            acc = np.zeros((g.num_nodes, width))
            np.add.at(acc, g.dst if kind == "dst" else g.src, part)
            part = acc
        out.append(part)
    return out


CONFIGS = [
    # hidden, extra message irreps, attribute irreps
    ("8x0e+4x1o", "1x0e", "1x0e+1x1o"),  # SEGNN's N-body layout, l <= 1
    ("6x0e+3x1o+2x2e", "2x0e", "1x0e+1x1o+1x2e"),  # l <= 2 attributes, two extra scalars
    ("6x0e", None, "1x0e+1x1o"),  # hid + hid merges into one block across the dst/src boundary
    ("5x0e+2x0o+3x1o+2x1e", "1x0e", "1x0e+1x1o"),  # pseudo-scalars and pseudo-vectors
]


@pytest.mark.parametrize("hid,add,attr", CONFIGS)
@pytest.mark.parametrize("cls", [O3TensorProductGate, O3TensorProduct])
def test_gathered_matches_the_literal_product_and_its_vjp(hid, add, attr, cls):
    rng = np.random.default_rng(abs(hash((hid, attr, cls.__name__))) % 2**32)
    blk, params, g, segs, x1, a = _setup(rng, hid, add, attr, n=23, e=170, isolated=4, cls=cls)
    layout = tuple((k, arr.shape[1]) for k, arr in segs)
    tp = blk.tp if isinstance(blk, O3TensorProductGate) else blk
    assert _tp_split.plan(tp.tp, layout) is not None  # these layouts take the split path
    want, c_ref = blk.forward(params, x1, a)
    got, c = _gathered(blk, params, g, segs, a)
    assert got.shape == want.shape and _err(got, want) <= TOL
    cot = rng.normal(size=want.shape)
    gp_ref, (gx1, ga_ref) = blk.backward(params, c_ref, cot)
    gp, (gsegs, ga) = blk.backward_gathered(params, c, cot)
    for k in gp_ref:
        assert _err(gp[k], gp_ref[k]) <= TOL, k
    assert _err(ga, ga_ref) <= TOL
    for n, (got_s, want_s) in enumerate(zip(gsegs, _node_sums(g, gx1, layout))):
        assert got_s.shape == want_s.shape
        assert _err(got_s, want_s) <= TOL, n
    # isolated nodes read by no edge get exactly zero gradient
    for (kind, _), gs in zip(layout, gsegs):
        if kind != "edge":
            assert not np.any(gs[-4:])


def test_gathered_vjp_against_central_differences():
    rng = np.random.default_rng(7)
    blk, params, g, segs, _, a = _setup(rng, "3x0e+2x1o", "1x0e", "1x0e+1x1o", n=6, e=14,
                                        isolated=1)
    segs = [(k, arr.copy()) for k, arr in segs]  # dst and src rows perturbed independently
    cot = rng.normal(size=(14, blk.irreps_out.dim))
    _, c = blk.forward_gathered(params, g, segs, a)
    gp, (gsegs, ga) = blk.backward_gathered(params, c, cot)

    def f(params, segs, a):
        return float(np.sum(blk.forward_gathered(params, g, segs, a)[0] * cot))

    eps = 1e-6
    checks = [("weight", params["weight"], gp["weight"]), ("bias", params["bias"], gp["bias"]),
              ("a", a, ga)] + [(f"seg{n}", arr, gs) for n, ((_, arr), gs) in
                               enumerate(zip(segs, gsegs))]
    for name, x, gx in checks:
        d = rng.normal(size=x.shape)
        x0 = x.copy()
        vals = []
        for sgn in (1, -1):
            x[...] = x0 + sgn * eps * d
            vals.append(f(params, [(k, arr) for k, arr in segs], a))
        x[...] = x0
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert fd == pytest.approx(np.sum(gx * d), rel=1e-7, abs=1e-9), name


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 12), e=st.integers(0, 40), seed=st.integers(0, 2**31 - 1),
       order=st.sampled_from(["dst-src", "src-dst"]))
def test_gathered_on_random_graphs_including_empty_ones(n, e, seed, order):
    rng = np.random.default_rng(seed)
    e = 0 if n == 0 else e
    blk, params, g, segs, x1, a = _setup(rng, "4x0e+2x1o", "1x0e", "1x0e+1x1o", n=n, e=e,
                                         order=order)
    want, c_ref = blk.forward(params, x1, a)
    got, c = blk.forward_gathered(params, g, segs, a)
    assert got.shape == want.shape and _err(got, want) <= TOL
    cot = rng.normal(size=want.shape)
    gp_ref, (gx1, ga_ref) = blk.backward(params, c_ref, cot)
    gp, (gsegs, ga) = blk.backward_gathered(params, c, cot)
    layout = tuple((k, arr.shape[1]) for k, arr in segs)
    assert all(_err(gp[k], gp_ref[k]) <= TOL for k in gp_ref)
    assert _err(ga, ga_ref) <= TOL
    assert all(_err(x, y) <= TOL for x, y in zip(gsegs, _node_sums(g, gx1, layout)))


def test_gathered_is_deterministic_and_numpy_backend_is_the_literal_product():
    rng = np.random.default_rng(3)
    blk, params, g, segs, x1, a = _setup(rng, "8x0e+4x1o", "1x0e", "1x0e+1x1o", n=30, e=200,
                                         cls=O3TensorProduct)
    runs = [blk.forward_gathered(params, g, segs, a, "numba")[0] for _ in range(3)]
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    lit, _ = blk.forward(params, x1, a)
    np.testing.assert_array_equal(blk.forward_gathered(params, g, segs, a, "numpy")[0], lit)


def test_products_that_do_not_split_fall_back_to_the_concatenated_rows():
    rng = np.random.default_rng(4)
    # two copies of the 0e attribute (m2 = 2): no weights-first plan
    blk, params, g, segs, x1, a = _setup(rng, "4x0e+2x1o", "1x0e", "2x0e+1x1o", n=9, e=30)
    layout = tuple((k, arr.shape[1]) for k, arr in segs)
    assert _tp_split.plan(blk.tp.tp, layout) is None
    want, c_ref = blk.forward(params, x1, a)
    got, c = blk.forward_gathered(params, g, segs, a)
    np.testing.assert_array_equal(got, want)
    cot = rng.normal(size=want.shape)
    _, (gx1, _) = blk.backward(params, c_ref, cot)
    _, (gsegs, _) = blk.backward_gathered(params, c, cot)
    assert all(_err(x, y) <= TOL for x, y in zip(gsegs, _node_sums(g, gx1, layout)))


def test_gathered_input_errors_name_the_argument():
    rng = np.random.default_rng(5)
    blk, params, g, segs, _, a = _setup(rng, "4x0e+2x1o", "1x0e", "1x0e+1x1o", n=9, e=30)
    with pytest.raises(ValueError, match="kind"):
        blk.forward_gathered(params, g, [("node", segs[0][1])] + segs[1:], a)
    with pytest.raises(ValueError, match=r"segments\[1\]"):
        blk.forward_gathered(params, g, [segs[0], ("src", segs[1][1][:-1])] + segs[2:], a)
    bad = segs[2][1].copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"segments\[2\].*NaN"):
        blk.forward_gathered(params, g, segs[:2] + [("edge", bad)], a)
    with pytest.raises(ValueError, match="columns"):
        blk.forward_gathered(params, g, segs[:2], a)
    with pytest.raises(ValueError, match="x2"):
        blk.forward_gathered(params, g, segs, a[:, :2])
    with pytest.raises(TypeError, match="segments"):
        blk.forward_gathered(params, g, [], a)


# --- the coupling kernels ------------------------------------------------------------------------


@pytest.fixture(params=["serial", "parallel"])
def twin(request, monkeypatch):
    if request.param == "parallel":
        monkeypatch.setattr(_nbjit, "PARALLEL_MIN_WORK", 0)
    return request.param


@pytest.mark.parametrize("z,d1,mo,do", [(37, 1, 9, 1), (37, 3, 8, 1), (37, 3, 5, 3),
                                        (11, 5, 4, 3), (0, 3, 4, 3)])
def test_coupling_kernels_against_numpy(twin, z, d1, mo, do):
    rng = np.random.default_rng(z * 100 + d1 * 10 + do)
    Y = rng.normal(size=(z, d1, mo))
    t = rng.normal(size=(z, d1, do))
    out0 = rng.normal(size=(z, mo, do))
    out = out0.copy()
    NB.tp_couple(Y, t, out)
    want = out0.copy()
    for i in range(d1):  # the same accumulation, one i after the other
        want += Y[:, i, :, None] * t[:, i, None, :]
    np.testing.assert_array_equal(out, want)
    g = rng.normal(size=(z, mo, do))
    gY = np.zeros_like(Y)
    gt = NB.tp_couple_vjp(Y, t, g, gY)
    assert _err(gY, np.einsum("zwk,zik->ziw", g, t)) <= 1e-15
    assert _err(gt, np.einsum("ziw,zwk->zik", Y, g)) <= TOL
    # adjoint identity: <couple(Y, t), g> = <Y, gY> = <t, gt>
    if z:
        lhs = np.sum(np.einsum("ziw,zik->zwk", Y, t) * g)
        assert lhs == pytest.approx(np.sum(Y * gY), rel=1e-12)
        assert lhs == pytest.approx(np.sum(t * gt), rel=1e-12)


def test_coupling_kernels_refuse_misfit_arrays():
    Y, t, o = np.zeros((4, 3, 5)), np.zeros((4, 3, 3)), np.zeros((4, 5, 3))
    with pytest.raises(ValueError, match="fit"):
        NB.tp_couple(Y, t, np.zeros((4, 5, 2)))
    with pytest.raises(TypeError, match="contiguous"):
        NB.tp_couple(Y[:, :, ::2], t, o)
    with pytest.raises(TypeError, match="float64"):
        NB.tp_couple(Y.astype(np.float32), t, o)
    with pytest.raises(ValueError, match="gY"):
        NB.tp_couple_vjp(Y, t, o, np.zeros((4, 3, 4)))
