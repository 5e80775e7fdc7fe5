"""Hostile input, driven by the registry: every block refuses bad input with a named error.

For every registered case this feeds the block's public ``init`` / ``forward`` / ``backward``
broken versions of a valid problem and requires a ``ValueError`` or ``TypeError`` whose message
names the offending argument (a raw NumPy broadcasting error, an ``AttributeError``, a ``KeyError``
or a silent NaN all fail). The argument names come from the block's own ``forward`` signature, so
a new block is covered the moment it registers a case.
"""

from __future__ import annotations

import inspect
import zlib

import numpy as np
import pytest

from geomp_ref import cases
from geomp_ref.params import flatten

BROKEN: list = []  # family modules that fail to import are reported by tests/test_cases.py
ALL = cases.cases(errors=BROKEN)
IDS = [c.name for c in ALL]


def _problem(case, salt=""):
    rng = np.random.default_rng(zlib.crc32((case.name + "hostile" + salt).encode()))
    graph, inputs = case.make_inputs(rng, 7)
    params = case.layer.init(rng)
    return rng, graph, tuple(inputs), params


def _forward(case, params, graph, inputs):
    if case.takes_graph:
        return case.layer.forward(params, graph, *inputs)
    return case.layer.forward(params, *inputs)


def _input_names(case):
    sig = inspect.signature(case.layer.forward)
    names = [p for p in sig.parameters if p not in ("self", "params", "graph")]
    return names[: len(case.input_kinds)]


def _set(tree, path, value):
    parts = path.split("/")
    new = dict(tree)
    new[parts[0]] = value if len(parts) == 1 else _set(tree[parts[0]], "/".join(parts[1:]), value)
    return new


def _drop(tree, path):
    parts = path.split("/")
    new = dict(tree)
    if len(parts) == 1:
        del new[parts[0]]
    else:
        new[parts[0]] = _drop(tree[parts[0]], "/".join(parts[1:]))
    return new


def _expect_named(fn, *needles):
    """``fn()`` raises ValueError/TypeError and the message contains one of ``needles``."""
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    msg = str(info.value)
    assert any(n in msg for n in needles), f"error does not name {needles}: {msg!r}"


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_bad_params_are_named(case):
    _, graph, inputs, params = _problem(case)
    leaves = list(flatten(params))
    if not leaves:
        pytest.skip("block has no parameters")
    path = leaves[len(leaves) // 2]
    key = path.split("/")[-1]
    bad = {
        "missing": _drop(params, path),
        "None": _set(params, path, None),
        "list": _set(params, path, [np.asarray(flatten(params)[path])]),
        "shape": _set(params, path, np.zeros(np.shape(flatten(params)[path]) + (2,))),
        "nan": _set(params, path, np.full(np.shape(flatten(params)[path]), np.nan)),
    }
    for p in bad.values():
        _expect_named(lambda p=p: _forward(case, p, graph, inputs), repr(key), key)
    _expect_named(lambda: _forward(case, None, graph, inputs), "params")
    _expect_named(lambda: _forward(case, [params], graph, inputs), "params")


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_bad_inputs_are_named(case):
    _, graph, inputs, params = _problem(case)
    names = _input_names(case)
    for k, (x, name) in enumerate(zip(inputs, names)):
        if not (isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.size):
            continue
        nan = x.copy()
        nan.flat[0] = np.nan
        # one row short (graph blocks) or one feature short (graph-free blocks, any batch size)
        short = x[:-1] if case.takes_graph else x[..., :-1]
        for bad in (nan, short, x.astype(complex), np.array("text")):
            xs = list(inputs)
            xs[k] = bad
            _expect_named(lambda xs=xs: _forward(case, params, graph, tuple(xs)), name)
    if case.takes_graph:
        _expect_named(lambda: case.layer.forward(params, graph.edge_index, *inputs), "graph")


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_backward_checks_grad_out_and_cache(case):
    _, graph, inputs, params = _problem(case)
    out, cache = _forward(case, params, graph, inputs)
    outs = out if isinstance(out, tuple) else (out,)
    for k, o in enumerate(outs):
        if o is None or np.ndim(o) == 0:
            continue
        wrong = [None if j != k else np.zeros(np.shape(o) + (2,)) for j in range(len(outs))]
        g = tuple(wrong) if isinstance(out, tuple) else wrong[0]
        _expect_named(lambda g=g: case.layer.backward(params, cache, g), "grad_out")
    good = tuple(np.zeros(np.shape(o)) if o is not None else None for o in outs)
    g = good if isinstance(out, tuple) else good[0]
    _expect_named(lambda: case.layer.backward(params, tuple(cache)[:-1], g), "cache")
    _expect_named(lambda: case.layer.backward(params, None, g), "cache")


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_init_takes_a_seed_and_refuses_junk(case):
    a = case.layer.init(np.random.default_rng(3))
    b = case.layer.init(3)  # an int seed means default_rng(seed)
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])
    _expect_named(lambda: case.layer.init("seed"), "rng")
    _expect_named(lambda: case.layer.init(None), "rng")


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_forward_and_backward_leave_inputs_alone(case):
    _, graph, inputs, params = _problem(case)
    before_in = [None if x is None else np.array(x, copy=True) for x in inputs]
    before_p = {k: np.array(v, copy=True) for k, v in flatten(params).items()}
    out, cache = _forward(case, params, graph, inputs)
    outs = out if isinstance(out, tuple) else (out,)
    cots = tuple(None if o is None else np.ones(np.shape(o)) for o in outs)
    case.layer.backward(params, cache, cots if isinstance(out, tuple) else cots[0])
    for x, b in zip(inputs, before_in):
        if b is not None:
            np.testing.assert_array_equal(x, b)
    for k, v in flatten(params).items():
        np.testing.assert_array_equal(v, before_p[k])


@pytest.mark.parametrize("case", [c for c in ALL if c.takes_graph],
                         ids=[c.name for c in ALL if c.takes_graph])
def test_tampered_graphs_are_named(case):
    """A graph not sealed by make_graph (``_replace``, hand-built) with an out-of-range, an
    off-by-one or a negative index, or with CSR caches that do not match, never reaches a kernel."""
    _, graph, inputs, params = _problem(case)
    if graph.num_edges == 0:
        pytest.skip("the problem has no edges")
    for value in (10**7, graph.num_nodes, -1):
        ei = np.array(graph.edge_index)
        ei[0, -1] = value
        _expect_named(lambda ei=ei: _forward(case, params, graph._replace(edge_index=ei), inputs),
                      "graph.edge_index")
    perm = np.array(graph.dst_perm)[::-1]
    if not np.array_equal(perm, graph.dst_perm):
        _expect_named(lambda: _forward(case, params, graph._replace(dst_perm=perm), inputs),
                      "graph.dst_perm")
