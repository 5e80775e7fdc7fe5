"""Symmetry checks: how each kind of array transforms, the groups' samplers, and the check.

A kind names how an input or output transforms under ``(Q, t)`` (an orthogonal matrix and a
translation); a group names how ``(Q, t)`` is drawn. Both registries are open:
:func:`register_kind` and :func:`register_group` add entries (case modules do so for their grids).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from .._validate import as_rng, check_int
from ..graph import Graph, make_graph
from ._blocks import as_tuple, call_forward, check_block, check_kinds, max_rel_err
from ._random import random_orthogonal

_KINDS: dict[str, Callable] = {}
_GROUPS: dict[str, Callable] = {}


def register_kind(prefix: str, transform: Callable) -> None:
    """Register ``transform(x, kind, Q, t) -> x'`` for kinds equal to ``prefix``, or starting
    with it when ``prefix`` ends with ``":"``."""
    if not isinstance(prefix, str) or not prefix:
        raise TypeError(f"prefix must be a non-empty str; got {prefix!r}")
    if not callable(transform):
        raise TypeError(
            f"transform must be callable(x, kind, Q, t); got {type(transform).__name__}")
    _KINDS[prefix] = transform


def register_group(name: str, sampler: Callable) -> None:
    """Register ``sampler(rng, dim, trial) -> (Q, t)`` for a group name (a regex is allowed)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str; got {name!r}")
    if not callable(sampler):
        raise TypeError(f"sampler must be callable(rng, dim, trial); got {type(sampler).__name__}")
    _GROUPS[name] = sampler


def _kind_transform(kind):
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a str (see geomp_ref.cases); got {kind!r}")
    if kind in _KINDS:
        return _KINDS[kind]
    for prefix, fn in _KINDS.items():
        if prefix.endswith(":") and kind.startswith(prefix):
            return fn
    raise ValueError(f"unknown kind {kind!r}; known: {sorted(_KINDS)}")


def _invariant(x, kind, Q, t):
    return x


def _position(x, kind, Q, t):
    return x @ Q.T + t


def _vector(x, kind, Q, t):
    return x @ Q.T


def _irreps(x, kind, Q, t):
    from .. import o3

    D = o3.Irreps(kind.split(":", 1)[1]).D_from_matrix(Q)
    return x @ D.T


def _pose(x, kind, Q, t):
    d = Q.shape[0]
    T = np.eye(d + 1)
    T[:d, :d] = Q
    T[:d, d] = t
    return T @ x


for _k in ("node_scalar", "node_label", "edge_scalar", "graph_scalar"):
    register_kind(_k, _invariant)
register_kind("position", _position)
register_kind("vector", _vector)
register_kind("edge_vector", _vector)
register_kind("irreps:", _irreps)
register_kind("pose", _pose)


def _sampler(rotation: str, translate: bool):
    def sample(rng, dim, trial):
        if rotation == "none":
            Q = np.eye(dim)
        elif rotation == "proper":
            Q = random_orthogonal(rng, dim, proper=True)
        else:  # alternate proper / improper so both are always exercised
            Q = random_orthogonal(rng, dim, proper=(trial % 2 == 0))
        t = rng.normal(size=dim) * 3.0 if translate else np.zeros(dim)
        return Q, t

    return sample


for _g, (_rot, _tr) in {
    "E3": ("full", True), "SE3": ("proper", True), "T3": ("none", True), "O3": ("full", False),
    "SO3": ("proper", False), "E2": ("full", True), "SE2": ("proper", True), "T2": ("none", True),
    "O2": ("full", False), "SO2": ("proper", False), "none": ("none", False),
}.items():
    register_group(_g, _sampler(_rot, _tr))


def _cyclic_sampler(rng, dim, trial, n, translate=True):
    k = int(rng.integers(1, n)) if n > 1 else 0
    a = 2 * np.pi * k / n
    Q = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    t = rng.normal(size=2) * 3.0 if translate else np.zeros(2)
    return Q, t


def _group_sampler(group: str):
    if not isinstance(group, str):
        raise TypeError(f"group must be a str such as 'E3' (see geomp_ref.cases); got {group!r}")
    if group in _GROUPS:
        return _GROUPS[group]
    m = re.fullmatch(r"C(\d+)xT2", group)
    if m and int(m.group(1)) >= 1:
        n = int(m.group(1))
        return lambda rng, dim, trial: _cyclic_sampler(rng, dim, trial, n)
    for name, fn in _GROUPS.items():
        if re.fullmatch(name, group):
            return fn
    raise ValueError(f"unknown group {group!r}; known: {sorted(_GROUPS)} and C<n>xT2")


def _group_dim(group: str, inputs, kinds) -> int:
    for x, k in zip(inputs, kinds):
        if x is None:
            continue
        if k in ("position", "vector", "edge_vector"):
            return np.shape(x)[-1]
        if k == "pose":
            return np.shape(x)[-1] - 1
    return 2 if group.endswith("2") or group.startswith("C") else 3


def _permute(x, kind, node_perm, edge_perm):
    if x is None:  # an optional input left out (blocks take explicit None)
        return None
    if kind.startswith("edge_"):
        return x[edge_perm]
    if kind.startswith("graph_"):
        return x
    return x[node_perm]


def _permutations(rng, graph: Graph):
    n = graph.num_nodes
    perm = np.arange(n)
    if n:
        bounds = np.concatenate([[0], np.cumsum(graph.nodes_per_graph())])
        for a, b in zip(bounds[:-1], bounds[1:]):
            perm[a:b] = a + rng.permutation(b - a)
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    eperm = rng.permutation(graph.num_edges)
    new_ei = inv[graph.edge_index][:, eperm] if graph.num_edges else graph.edge_index
    new_graph = make_graph(new_ei, n, graph.batch, graph.num_graphs)
    return perm, eperm, new_graph


def symmetry_errors(layer, params, graph, inputs, input_kinds, output_kinds, group: str, *,
                    rng=None, trials: int = 2) -> dict[str, float]:
    """Max relative output errors under the group (``"transform"``), under node relabelling and
    edge reordering (``"permutation"``), and both at once (``"combined"``).

    ``input_kinds`` and ``output_kinds`` have one entry per forward input / output (see
    :mod:`geomp_ref.cases`); ``None`` inputs and outputs are left alone.
    """
    rng = as_rng(rng, "rng") if rng is not None else np.random.default_rng(0)
    inputs = check_block(layer, inputs, graph)
    input_kinds = check_kinds(input_kinds, len(inputs), "input_kinds", "input")
    for k in input_kinds:
        _kind_transform(k)
    sampler = _group_sampler(group)
    trials = check_int(trials, "trials", minimum=1)
    out = as_tuple(call_forward(layer, params, graph, inputs)[0])
    output_kinds = check_kinds(output_kinds, len(out), "output_kinds", "output")
    for k in output_kinds:
        _kind_transform(k)
    dim = _group_dim(group, inputs, input_kinds)
    errs = {"transform": 0.0, "permutation": 0.0, "combined": 0.0}

    def run(g, xs):
        return as_tuple(call_forward(layer, params, g, xs)[0])

    for trial in range(trials):
        Q, t = sampler(rng, dim, trial)
        tin = tuple(None if x is None else _kind_transform(k)(x, k, Q, t)
                    for x, k in zip(inputs, input_kinds))
        want = tuple(None if o is None else _kind_transform(k)(o, k, Q, t)
                     for o, k in zip(out, output_kinds))
        errs["transform"] = max(errs["transform"], max_rel_err(run(graph, tin), want))
        if graph is None:
            first = next((x for x in inputs if x is not None), None)
            if first is None or np.ndim(first) == 0:
                continue
            perm = rng.permutation(np.shape(first)[0])
            pin = tuple(None if x is None else x[perm] for x in inputs)
            pwant = tuple(None if o is None else o[perm] for o in out)
            errs["permutation"] = max(errs["permutation"], max_rel_err(run(None, pin), pwant))
            continue
        perm, eperm, pgraph = _permutations(rng, graph)
        pin = tuple(_permute(x, k, perm, eperm) for x, k in zip(inputs, input_kinds))
        pwant = tuple(_permute(o, k, perm, eperm) for o, k in zip(out, output_kinds))
        errs["permutation"] = max(errs["permutation"], max_rel_err(run(pgraph, pin), pwant))
        cin = tuple(_permute(x, k, perm, eperm) for x, k in zip(tin, input_kinds))
        cwant = tuple(_permute(o, k, perm, eperm) for o, k in zip(want, output_kinds))
        errs["combined"] = max(errs["combined"], max_rel_err(run(pgraph, cin), cwant))
    return errs


def assert_equivariant(layer, params, graph, inputs, input_kinds, output_kinds, group: str, *,
                       rng=None, atol: float = 1e-12, trials: int = 2) -> dict[str, float]:
    """Raise ``AssertionError`` if any symmetry error exceeds ``atol``; return the errors."""
    errs = symmetry_errors(layer, params, graph, inputs, input_kinds, output_kinds, group,
                           rng=rng, trials=trials)
    bad = {k: v for k, v in errs.items() if not v <= atol}
    if bad:
        raise AssertionError(
            f"{type(layer).__name__} is not {group}-equivariant: errors {bad} > {atol}")
    return errs
