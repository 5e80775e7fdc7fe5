"""Hostile input for the core (graphs, ops, backends, params, testing kit, molecules).

Every probe must end in a ``ValueError`` or ``TypeError`` whose message names the offending
argument as a word: never a crash, a hang, a NumPy error from deep inside, or a silent wrong
answer. The ops battery is generic: a table gives one valid call per public function of
``geomp_ref.ops`` (a test checks that the table covers ``ops.__all__``), and every float argument
of every call is then replaced by NaN, inf, a wrong shape, a string and ``None``.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from geomp_ref import (
    complete_graph,
    concat_graphs,
    edge_vectors,
    edge_vectors_vjp,
    make_graph,
    molecules,
    ops,
    radius_graph,
)
from geomp_ref.graph import Graph


def _named(fn, name, exc=(ValueError, TypeError)):
    """``fn()`` raises ``exc`` and the message names ``name`` as a word."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert re.search(rf"(^|[^\w]){re.escape(name)}([^\w]|$)", msg), f"{name!r} not in {msg!r}"
    return msg


# --- graphs -------------------------------------------------------------------------------------

EI = np.array([[0, 1, 2], [1, 2, 0]])


@pytest.mark.parametrize("edge_index, words", [
    (EI.astype(float), "edge_index[0] (senders)"),
    (EI + 0.5, "edge_index[0] (senders)"),
    (EI.astype(bool), "edge_index[0] (senders)"),
    (np.array([["a", "b"], ["c", "d"]]), "edge_index[0] (senders)"),
    (np.array([[0, 1, -1], [1, 2, 0]]), "negative"),
    (np.array([[0, 1, 3], [1, 2, 0]]), "out of range for num_nodes=3"),
    (np.array([[0, 1, 2], [1, 2, 10**12]]), "edge_index[1] (receivers)"),
    (np.array([[0, 1, 2], [1, 2, 2**63 - 1]], dtype=np.uint64), "edge_index[1] (receivers)"),
    (np.array([[0, 1, 2], [1, 2, 2**64 - 1]], dtype=np.uint64), "beyond the int64 range"),
    ([[0, 1, 2**70], [1, 2, 0]], "edge_index[0] (senders)"),
    ([[0, 1], [1, 2, 0]], "edge_index"),
    (EI.T, "pass edge_index.T"),
    (EI[None], "edge_index must have shape (2, E)"),
    (np.zeros(0), "edge_index must have shape (2, E)"),
    (None, "edge_index"),
])
def test_make_graph_refuses_bad_edge_index(edge_index, words):
    with pytest.raises((ValueError, TypeError)) as info:
        make_graph(edge_index, 3)
    assert words in str(info.value)


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_nodes=3.0), "num_nodes"),
    (dict(num_nodes=True), "num_nodes"),
    (dict(num_nodes=-3), "num_nodes"),
    (dict(num_nodes=2**62), "num_nodes"),
    (dict(num_nodes="3"), "num_nodes"),
    (dict(num_nodes=3, batch=[0, 1, 0]), "batch"),
    (dict(num_nodes=3, batch=[0.0, 0.0, 0.0]), "batch"),
    (dict(num_nodes=3, batch=[0, 0]), "batch"),
    (dict(num_nodes=3, batch=[[0, 0, 0]]), "batch"),
    (dict(num_nodes=3, batch=[-1, 0, 0]), "batch"),
    (dict(num_nodes=3, num_graphs=-1), "num_graphs"),
    (dict(num_nodes=3, num_graphs=0), "num_graphs"),
    (dict(num_nodes=3, num_graphs=1.0), "num_graphs"),
    (dict(num_nodes=3, batch=[0, 0, 1], num_graphs=1), "num_graphs"),
])
def test_make_graph_refuses_bad_sizes_and_batches(kwargs, name):
    _named(lambda: make_graph(EI, **kwargs), name)


def test_radius_graph_refuses_junk():
    pos = np.random.default_rng(0).normal(size=(5, 3))
    for bad in ("no", 0, 1, None, "False"):
        _named(lambda bad=bad: radius_graph(pos, 1.0, self_loops=bad), "self_loops", TypeError)
    for cutoff in (0.0, -1.0, np.nan, np.inf, -np.inf):
        _named(lambda c=cutoff: radius_graph(pos, c), "cutoff", ValueError)
    for cutoff in ("1", None, [1.0], True):
        _named(lambda c=cutoff: radius_graph(pos, c), "cutoff", TypeError)
    for p in (np.full((3, 3), np.nan), np.zeros(3), np.zeros((3, 0)), "pos", np.zeros((2, 2, 2))):
        _named(lambda p=p: radius_graph(p, 1.0), "pos")
    _named(lambda: radius_graph(pos, 1.0, batch=[0, 0, 1, 0, 1]), "batch")
    _named(lambda: complete_graph(3, self_loops="yes"), "self_loops", TypeError)
    _named(lambda: complete_graph(3, batch=[1, 0, 0]), "batch")


def test_concat_graphs_refuses_junk():
    g = make_graph(EI, 3)
    for junk in (None, 3, "graphs", g, np.zeros((2, 3))):
        _named(lambda j=junk: concat_graphs(j), "graphs", TypeError)
    _named(lambda: concat_graphs([g, "x"]), "graphs[1]", TypeError)
    _named(lambda: concat_graphs([g, EI]), "graphs[1]", TypeError)
    bad = g._replace(edge_index=np.array([[0, 1, 9], [1, 2, 0]]))
    _named(lambda: concat_graphs([g, bad]), "graphs[1].edge_index[0]", ValueError)
    assert concat_graphs(iter([g, g])).num_nodes == 6  # any iterable of graphs


def test_graph_functions_refuse_junk():
    g = make_graph(EI, 3)
    _named(lambda: edge_vectors(g, np.zeros((4, 3))), "pos")
    _named(lambda: edge_vectors(g, np.full((3, 3), np.nan)), "pos")
    _named(lambda: edge_vectors(EI, np.zeros((3, 3))), "graph", TypeError)
    _named(lambda: edge_vectors_vjp(g, np.zeros((2, 3))), "grad_edge_vec")
    _named(lambda: edge_vectors_vjp(g, np.zeros(3)), "grad_edge_vec")
    hand = Graph(np.array([[0, 5, 1], [1, 2, 0]]), *g[1:8])
    _named(lambda: edge_vectors(hand, np.zeros((3, 3))), "graph.edge_index[0]", ValueError)
    _named(lambda: hand.reverse(), "graph.edge_index[0]", ValueError)


# --- ops: a generic battery over ops.__all__ ----------------------------------------------------


def _table():
    g = make_graph(np.array([[0, 0, 2, 3, 1, 3], [1, 1, 1, 3, 0, 2]]), 5)
    rng = np.random.default_rng(7)
    E, N, C = g.num_edges, g.num_nodes, 3
    idx = np.array([1, 1, 3, 0, 3, 3])
    v = rng.normal(size=(6, C))
    x = rng.normal(size=(4, C))
    d = rng.uniform(0.2, 4.0, size=6)
    mu, gamma = ops.gaussian_centers(0.0, 5.0, 4)
    t = {
        # name: (function, {argument name: value} in call order)
        "gather": (ops.gather, dict(x=rng.normal(size=(N, C)), index=idx[:4])),
        "gather_vjp": (ops.gather_vjp, dict(x=rng.normal(size=(N, C)), index=idx,
                                            grad_out=rng.normal(size=(6, C)))),
        "scatter_softmax": (ops.scatter_softmax, dict(values=v, index=idx, num_segments=N)),
        "scatter_softmax_vjp": (ops.scatter_softmax_vjp, dict(values=v, index=idx,
                                                              num_segments=N, grad_out=v)),
        "aggregate": (ops.aggregate, dict(graph=g, m=rng.normal(size=(E, C)))),
        "aggregate_mean": (ops.aggregate_mean, dict(graph=g, m=rng.normal(size=(E, C)))),
        "weighted_aggregate": (ops.weighted_aggregate, dict(graph=g, f=rng.normal(size=(N, C)),
                                                            w=rng.normal(size=E))),
        "weighted_aggregate_vjp": (ops.weighted_aggregate_vjp, dict(
            graph=g, f=rng.normal(size=(N, C)), w=rng.normal(size=(E, C)),
            grad_out=rng.normal(size=(N, C)))),
        "edge_product": (ops.edge_product, dict(graph=g, g=rng.normal(size=(N, C)),
                                                f=rng.normal(size=(N, C)))),
        "linear": (ops.linear, dict(x=x, W=rng.normal(size=(C, 2)), b=rng.normal(size=2))),
        "linear_vjp": (ops.linear_vjp, dict(x=x, W=rng.normal(size=(C, 2)), b=rng.normal(size=2),
                                            grad_y=rng.normal(size=(4, 2)))),
        "layer_norm": (ops.layer_norm, dict(x=x, gamma=rng.normal(size=C),
                                            beta=rng.normal(size=C))),
        "layer_norm_vjp": (ops.layer_norm_vjp, dict(x=x, gamma=rng.normal(size=C),
                                                    beta=rng.normal(size=C),
                                                    grad_y=rng.normal(size=(4, C)))),
        "gaussian_centers": (ops.gaussian_centers, dict(start=0.0, stop=5.0, num=4)),
        "gaussian_rbf": (ops.gaussian_rbf, dict(d=d, mu=mu, gamma=gamma)),
        "gaussian_rbf_vjp": (ops.gaussian_rbf_vjp, dict(d=d, mu=mu, gamma=gamma,
                                                        grad_out=rng.normal(size=(6, 4)))),
        "bessel_rbf": (ops.bessel_rbf, dict(d=d, num=3, cutoff=5.0)),
        "bessel_rbf_vjp": (ops.bessel_rbf_vjp, dict(d=d, num=3, cutoff=5.0,
                                                    grad_out=rng.normal(size=(6, 3)))),
        "cosine_cutoff": (ops.cosine_cutoff, dict(d=d, cutoff=5.0)),
        "cosine_cutoff_vjp": (ops.cosine_cutoff_vjp, dict(d=d, cutoff=5.0, grad_out=d)),
        "polynomial_cutoff": (ops.polynomial_cutoff, dict(d=d, cutoff=5.0)),
        "polynomial_cutoff_vjp": (ops.polynomial_cutoff_vjp, dict(d=d, cutoff=5.0, grad_out=d)),
        "edge_length": (ops.edge_length, dict(edge_vec=x)),
        "edge_length_vjp": (ops.edge_length_vjp, dict(edge_vec=x, grad_d=rng.normal(size=4))),
        "edge_sqlength": (ops.edge_sqlength, dict(edge_vec=x)),
        "edge_sqlength_vjp": (ops.edge_sqlength_vjp, dict(edge_vec=x, grad_s=rng.normal(size=4))),
        "activate": (ops.activate, dict(name="silu", z=x, b=rng.normal(size=C))),
        "derivative": (ops.derivative, dict(name="softplus", z=x)),
        "filter_aggregate": (ops.filter_aggregate, dict(
            graph=g, f=rng.normal(size=(N, C)), w=rng.normal(size=(E, C)), s=d)),
        "filter_aggregate_vjp": (ops.filter_aggregate_vjp, dict(
            graph=g, f=rng.normal(size=(N, C)), w=rng.normal(size=(E, C)), s=d,
            grad_out=rng.normal(size=(N, C)))),
        "edge_vectors_vjp": (ops.edge_vectors_vjp, dict(graph=g,
                                                        grad_edge_vec=rng.normal(size=(E, 3)))),
        "edge_pairs": (ops.edge_pairs, dict(graph=g)),
    }
    for red in ("sum", "mean", "max"):
        t[f"scatter_{red}"] = (getattr(ops, f"scatter_{red}"),
                               dict(values=v, index=idx, num_segments=N))
        t[f"scatter_{red}_vjp"] = (getattr(ops, f"scatter_{red}_vjp"), dict(
            values=v, index=idx, num_segments=N, grad_out=rng.normal(size=(N, C))))
    for red in ("aggregate", "aggregate_mean"):
        t[f"{red}_vjp"] = (getattr(ops, f"{red}_vjp"), dict(graph=g, m=rng.normal(size=(E, C)),
                                                           grad_out=rng.normal(size=(N, C))))
    for name in ("silu", "softplus", "shifted_softplus", "sigmoid", "tanh", "relu", "identity",
                 "gelu"):
        t[name] = (getattr(ops, name), dict(x=x))
        t[f"{name}_vjp"] = (getattr(ops, f"{name}_vjp"), dict(x=x, grad_y=rng.normal(size=x.shape)))
    return t


TABLE = _table()


def test_table_covers_every_public_op():
    functions = {n for n in ops.__all__
                 if callable(getattr(ops, n)) and not isinstance(getattr(ops, n), type)}
    assert functions == set(TABLE)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_op_valid_call_is_deterministic_and_leaves_inputs_alone(name):
    fn, args = TABLE[name]
    before = {k: np.array(v, copy=True) for k, v in args.items() if isinstance(v, np.ndarray)}
    a = fn(*args.values())
    b = fn(*args.values())
    for k, v in before.items():
        np.testing.assert_array_equal(args[k], v)
    for p, q in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        if p is not None:
            assert np.all(np.isfinite(p))
            np.testing.assert_array_equal(p, q)


#: Forward arguments whose shape another argument fixes: (rows, trailing dimensions). Other
#: forward arguments are shape-free (pointwise ops, leading batch dimensions, trailing channels).
SHAPED = {
    "scatter_sum": {"values": "rows"}, "scatter_mean": {"values": "rows"},
    "scatter_max": {"values": "rows"}, "scatter_softmax": {"values": "rows"},
    "aggregate": {"m": "rows"}, "aggregate_mean": {"m": "rows"},
    "weighted_aggregate": {"f": "both", "w": "both"}, "edge_product": {"g": "both", "f": "both"},
    "linear": {"W": "both", "b": "both"},
    "layer_norm": {"gamma": "both", "beta": "both"},
    "activate": {"b": "both"},
    "filter_aggregate": {"f": "both", "w": "both", "s": "both"},
    "gather_vjp": {"x": "trailing"},  # fewer rows of x is still valid while index fits
}


def _variants(value, shape: str | None):
    """Broken versions of one float argument; ``shape`` says which shape changes must fail."""
    nan = np.array(value, dtype=float, copy=True)
    nan.flat[0] = np.nan
    inf = np.array(value, dtype=float, copy=True)
    inf.flat[-1] = -np.inf
    out = {"nan": nan, "inf": inf, "text": np.array(["a"] * max(np.size(value), 1)),
           "complex": np.asarray(value) + 1j, "object": np.array([None, 1.0], dtype=object)}
    if shape in ("rows", "both") and np.ndim(value) >= 1:
        out["short"] = np.asarray(value)[:-1]
    if shape in ("trailing", "both"):
        out["extra-dim"] = np.asarray(value)[..., None, None]
    return out


@pytest.mark.parametrize("name", sorted(TABLE))
def test_op_broken_float_arguments_are_named(name):
    """NaN, inf, text, complex and object arrays always fail naming the argument; shape changes
    fail where another argument fixes the shape (a VJP may blame its cotangent instead)."""
    fn, args = TABLE[name]
    cot = list(args)[-1] if name.endswith("_vjp") else None
    for arg, value in args.items():
        if not (isinstance(value, np.ndarray) and value.dtype.kind == "f"):
            continue
        shape = SHAPED.get(name, {}).get(arg, "both" if cot else None)
        for what, bad in _variants(value, shape).items():
            call = dict(args, **{arg: bad})
            names = [arg] + ([cot] if cot and what in ("short", "extra-dim") else [])
            with pytest.raises((ValueError, TypeError)) as info:
                fn(*call.values())
            msg = str(info.value)
            assert any(re.search(rf"(^|[^\w]){re.escape(n)}([^\w]|$)", msg) for n in names), (
                f"{name}({arg}={what}) does not name {names}: {msg!r}")


@pytest.mark.parametrize("name", sorted(n for n in TABLE if "graph" in TABLE[n][1]))
def test_op_refuses_non_graphs(name):
    fn, args = TABLE[name]
    g = args["graph"]
    for junk in (g.edge_index, None, "graph", tuple(g)[:8]):
        _named(lambda j=junk: fn(*dict(args, graph=j).values()), "graph", TypeError)


@pytest.mark.parametrize("name", sorted(n for n in TABLE if "num_segments" in TABLE[n][1]))
def test_op_refuses_bad_segment_counts(name):
    fn, args = TABLE[name]
    for bad in (-1, 2.0, True, "5", None):
        _named(lambda b=bad: fn(*dict(args, num_segments=b).values()), "num_segments")
    _named(lambda: fn(*dict(args, num_segments=2).values()), "index", ValueError)
    _named(lambda: fn(*dict(args, index=args["index"].astype(float)).values()), "index",
           TypeError)
    _named(lambda: fn(*dict(args, index=-args["index"] - 1).values()), "index", ValueError)


# --- molecules ------------------------------------------------------------------------------------


def test_molecules_by_name():
    for name, formula in (("water", "H2O"), ("Ethanol", "CH3CH2OH"), ("CH3CH2OH", "CH3CH2OH"),
                          ("c6h6", "C6H6"), ("BENZENE", "C6H6"), (" pyrrole ", "C4H4NH")):
        assert molecules.load(name).name == formula
    eth = molecules.load("ethanol")
    assert eth.z.tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    np.testing.assert_array_equal(eth.pos, next(m.pos for m in molecules.load()
                                                if m.name == "CH3CH2OH"))
    msg = _named(lambda: molecules.load("gold"), "name", ValueError)
    assert "ethanol" in msg and "H2O" in msg
    _named(lambda: molecules.load(3), "name", TypeError)
    assert len(molecules.load()) == 12 and len(molecules.names()) == 12


# --- params files and the testing kit ------------------------------------------------------------
# (the detailed probes live in tests/test_params.py and tests/test_testing_kit.py)


def _registry():
    from geomp_ref import cases

    return cases.cases(errors=[])


@pytest.mark.parametrize("case", _registry(), ids=lambda c: c.name)
def test_every_blocks_params_round_trip_through_a_file(case, tmp_path):
    from geomp_ref import params as P

    tree = case.layer.init(3)
    P.save(tmp_path / "p", tree)
    back = P.load(tmp_path / "p")
    P.tree_map2(np.testing.assert_array_equal, tree, back)  # same structure (empty dicts too)
    graph, inputs = case.make_inputs(np.random.default_rng(0), 5)
    args = (back,) + (() if graph is None else (graph,)) + tuple(inputs)
    out_a = case.layer.forward(*args)[0]
    out_b = case.layer.forward(tree, *args[1:])[0]
    for a, b in zip(out_a if isinstance(out_a, tuple) else (out_a,),
                    out_b if isinstance(out_b, tuple) else (out_b,)):
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_testing_kit_refuses_junk():
    from geomp_ref import testing

    g = make_graph(EI, 3)
    _named(lambda: testing.check_vjp_fn(None, None, (np.ones(2),)), "fn", TypeError)
    _named(lambda: testing.check_vjp_fn(ops.silu, ops.silu_vjp, np.ones(2)), "inputs", TypeError)
    _named(lambda: testing.check_vjp_fn(ops.silu, ops.silu_vjp, (np.ones(2),), eps=-1.0), "eps")
    _named(lambda: testing.random_graph(None, 3), "rng", TypeError)
    _named(lambda: testing.random_points(0, 3, min_dist=float("nan")), "min_dist", ValueError)
    _named(lambda: testing.symmetry_errors(object(), {}, g, (), (), (), "E3"), "layer", TypeError)
    _named(lambda: testing.backend_errors(object(), {}, g, ()), "layer", TypeError)


@pytest.mark.parametrize("shape", [(7,), (40, 9), (3, 0), (0,)])
def test_finiteness_check_finds_every_nan_and_inf_and_only_those(shape):
    """The check sums first (one read) and tests elementwise only when the sum is not finite:
    finite values whose sum overflows must pass, a single NaN or inf anywhere must not."""
    from geomp_ref._validate import check_finite

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    check_finite(x, "x")
    if x.size == 0:
        return
    huge = np.full(shape, np.finfo(np.float64).max / 2)  # the sum overflows to inf
    huge.flat[::2] *= -1 if x.size > 3 else 1  # and mixed signs: partial sums inf and -inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid array raises no overflow warning either
        check_finite(huge, "huge")
    for bad in (np.nan, np.inf, -np.inf):
        for pos in (0, x.size // 2, x.size - 1):
            y = x.copy()
            y.flat[pos] = bad
            with pytest.raises(ValueError, match=r"y contains NaN or inf \(first at index"):
                check_finite(y, "y")
            z = huge.copy()
            z.flat[pos] = bad
            with pytest.raises(ValueError, match="z contains NaN or inf"):
                check_finite(z, "z")
    view = np.asarray(rng.normal(size=(6, 8)))[:, ::3]  # strided views are checked too
    view[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"v contains NaN or inf \(first at index \(2, 1\)\)"):
        check_finite(view, "v")
