r"""Public testing kit: VJP checks, symmetry checks, backend agreement, random problems.

Users check their own layers with the same tools the library's suite uses.

* :func:`check_vjp` compares, for every parameter leaf and every differentiable input, the
  fourth-order central difference (stencil ±eps, ±2 eps) of :math:`L(\theta) = \langle \bar y, y(\theta)\rangle` along a random unit direction
  :math:`d` with :math:`\langle \nabla L, d \rangle` from the block's hand-written ``backward``.
  Inputs of kind ``"pose"`` are perturbed on the group, :math:`g \exp(t\,\xi)`, so they stay valid.
  The reported error is :math:`|fd - an| / \max(\lVert \nabla L \rVert, 10^{-8}(|L| + 1))`: the
  error of the directional derivative relative to the size of the gradient.
* :func:`assert_equivariant` transforms inputs by a random group element drawn for the case's
  ``group`` (orthogonal matrices *with* reflections for E(3)/O(3)), a translation, a node
  relabelling inside each graph and an edge reordering, and compares the output with the
  transformed output, each transformation separately so that a failure names its cause.
* :func:`assert_backends_agree` runs a block on every available backend and compares with NumPy
  (and checks that two runs are bit-identical).

Kinds and groups: see :mod:`geomp_ref.cases`. New kinds and groups can be added with
:func:`register_kind` and :func:`register_group`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

import numpy as np

from .graph import Graph, make_graph
from .params import flatten

__all__ = [
    "check_vjp",
    "check_case_vjp",
    "check_vjp_fn",
    "vjp",
    "symmetry_errors",
    "assert_equivariant",
    "assert_backends_agree",
    "backend_errors",
    "random_orthogonal",
    "random_points",
    "random_graph",
    "register_kind",
    "register_group",
    "graph_strategy",
]


# --- small helpers --------------------------------------------------------------------------


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _call_forward(layer, params, graph, inputs):
    if graph is None:
        return layer.forward(params, *inputs)
    return layer.forward(params, graph, *inputs)


def _leaves(tree):
    """``(path, leaf)`` pairs in sorted ``"a/b"`` order (the same walk as :func:`params.flatten`)."""
    return flatten(tree).items()


def _set_leaf(tree, path, value):
    parts = path.split("/")
    new = dict(tree)
    if len(parts) == 1:
        new[parts[0]] = value
    else:
        new[parts[0]] = _set_leaf(tree[parts[0]], "/".join(parts[1:]), value)
    return new


def _get_leaf(tree, path):
    for p in path.split("/"):
        tree = tree[p]
    return tree


def _is_float_input(x):
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def random_orthogonal(rng: np.random.Generator, dim: int = 3, *, proper: bool | None = None):
    """Haar-random orthogonal matrix; ``proper=True`` forces det +1, ``False`` det -1,
    ``None`` either with probability 1/2."""
    a = rng.normal(size=(dim, dim))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    want = proper if proper is not None else bool(rng.integers(2))
    if (np.linalg.det(q) > 0) != want:
        q[:, 0] = -q[:, 0]
    return q


def random_points(rng: np.random.Generator, n: int, dim: int = 3, *, min_dist: float = 0.7,
                  scale: float | None = None) -> np.ndarray:
    """``n`` points with pairwise distances >= ``min_dist`` (rejection sampling in a ball)."""
    scale = scale if scale is not None else max(1.0, 0.9 * n ** (1.0 / dim))
    pts = []
    tries = 0
    while len(pts) < n:
        p = rng.uniform(-scale, scale, size=dim)
        if all(np.linalg.norm(p - q) >= min_dist for q in pts):
            pts.append(p)
        tries += 1
        if tries > 200 * (n + 1):
            scale *= 1.2
            tries = 0
    return np.array(pts, dtype=np.float64).reshape(n, dim)


def random_graph(rng: np.random.Generator, num_nodes: int, *, num_graphs: int = 1,
                 avg_degree: float = 3.0, isolated: bool = True, multi_edges: bool = False,
                 self_loops: bool = False) -> Graph:
    """Random directed graph(s): nodes split into ``num_graphs`` contiguous graphs, random edges
    inside each, optionally leaving the last node of each graph isolated and duplicating edges."""
    sizes = np.full(num_graphs, num_nodes // max(num_graphs, 1))
    sizes[: num_nodes - sizes.sum()] += 1
    batch = np.repeat(np.arange(num_graphs), sizes)
    edges = []
    start = 0
    for s in sizes:
        usable = s - 1 if (isolated and s > 2) else s
        if usable >= 1:
            m = int(rng.poisson(avg_degree * usable))
            src = rng.integers(0, usable, size=m) + start
            dst = rng.integers(0, usable, size=m) + start
            keep = np.ones(m, bool) if self_loops else src != dst
            pairs = np.stack([src[keep], dst[keep]])
            if not multi_edges and pairs.size:
                pairs = np.unique(pairs, axis=1)
                pairs = pairs[:, rng.permutation(pairs.shape[1])]
            edges.append(pairs)
        start += s
    ei = np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), np.int64)
    return make_graph(ei.astype(np.int64), num_nodes, batch, num_graphs)


# --- VJP ------------------------------------------------------------------------------------


def _pose_direction(rng, g):
    """Random tangent at each pose ``g`` (..., D+1, D+1): returns ``xi`` (hat matrices)."""
    d = g.shape[-1] - 1
    xi = np.zeros(g.shape)
    a = rng.normal(size=g.shape[:-2] + (d, d))
    xi[..., :d, :d] = a - np.swapaxes(a, -1, -2)
    xi[..., :d, d] = rng.normal(size=g.shape[:-2] + (d,))
    return xi


def _expm_batch(m):
    from scipy.linalg import expm

    flat = m.reshape(-1, m.shape[-2], m.shape[-1])
    return np.stack([expm(x) for x in flat]).reshape(m.shape) if flat.shape[0] else m.copy()


def check_vjp(layer, params, graph, inputs, *, rng: np.random.Generator | None = None,
              kinds: tuple | None = None, differentiable: tuple | None = None, eps: float = 1e-5,
              num_directions: int = 1) -> dict[str, float]:
    """Errors of ``layer.backward`` against central differences, per parameter leaf and input.

    Parameters
    ----------
    layer : block spec
    params : dict
    graph : Graph or None
        ``None`` for blocks that take no graph.
    inputs : tuple of arrays
    kinds : tuple of str, optional
        Input kinds (see :mod:`geomp_ref.cases`); ``"pose"`` inputs are perturbed on the group and
        ``"node_label"`` inputs are skipped.
    differentiable : tuple of bool, optional
        Overrides which inputs are checked.

    Returns
    -------
    dict
        ``{"param:<path>": err, "input:<k>": err}``; see the module docstring for the error.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    inputs = tuple(inputs)
    kinds = tuple(kinds) if kinds is not None else (None,) * len(inputs)
    out, cache = _call_forward(layer, params, graph, inputs)
    outs = _as_tuple(out)
    cots = tuple(None if o is None else rng.normal(size=np.shape(o)) for o in outs)
    grad_params, grad_inputs = layer.backward(params, cache, cots if isinstance(out, tuple) else cots[0])
    grad_inputs = _as_tuple(grad_inputs)

    def loss(p, xs):
        o = _as_tuple(_call_forward(layer, p, graph, xs)[0])
        return sum(float(np.sum(c * oo)) for c, oo in zip(cots, o) if c is not None)

    base = abs(loss(params, inputs))
    errors: dict[str, float] = {}

    def directional(name, grad, make, d_for_analytic):
        if grad is None:
            raise AssertionError(f"backward returned None for differentiable {name}")
        gnorm = float(np.linalg.norm(grad))
        worst = 0.0
        for _ in range(num_directions):
            d, an = d_for_analytic()
            # fourth-order central stencil: truncation O(eps^4), rounding O(u |L| / eps)
            fd = (8.0 * (loss(*make(eps, d)) - loss(*make(-eps, d)))
                  - (loss(*make(2 * eps, d)) - loss(*make(-2 * eps, d)))) / (12.0 * eps)
            worst = max(worst, abs(fd - an) / max(gnorm, 1e-8 * (base + 1.0)))
        errors[name] = worst

    for path, leaf in _leaves(params):
        leaf = np.asarray(leaf)
        if leaf.size == 0:
            continue
        grad = np.asarray(_get_leaf(grad_params, path))
        if grad.shape != leaf.shape:
            raise AssertionError(f"grad for param {path} has shape {grad.shape}, expected {leaf.shape}")

        def dir_param(grad=grad, leaf=leaf):
            d = rng.normal(size=leaf.shape)
            d /= np.linalg.norm(d)
            return d, float(np.sum(grad * d))

        def make_param(t, d, path=path, leaf=leaf):
            return _set_leaf(params, path, leaf + t * d), inputs

        directional(f"param:{path}", grad, make_param, dir_param)

    for k, (x, kind) in enumerate(zip(inputs, kinds)):
        diff = differentiable[k] if differentiable is not None else (
            _is_float_input(x) and kind != "node_label")
        if not diff or np.size(x) == 0:
            continue
        grad = grad_inputs[k]
        if grad is None:
            raise AssertionError(f"backward returned None for differentiable input {k}")
        grad = np.asarray(grad)
        if grad.shape != np.shape(x):
            raise AssertionError(f"grad for input {k} has shape {grad.shape}, expected {np.shape(x)}")
        if kind == "pose":
            def dir_pose(x=x, grad=grad):
                xi = _pose_direction(rng, x)
                xi /= np.linalg.norm(xi)
                return xi, float(np.sum(grad * (x @ xi)))

            def make_pose(t, xi, k=k, x=x):
                xs = list(inputs)
                xs[k] = x @ _expm_batch(t * xi)
                return params, tuple(xs)

            directional(f"input:{k}", grad, make_pose, dir_pose)
        else:
            def dir_in(x=x, grad=grad):
                d = rng.normal(size=np.shape(x))
                d /= np.linalg.norm(d)
                return d, float(np.sum(grad * d))

            def make_in(t, d, k=k, x=x):
                xs = list(inputs)
                xs[k] = x + t * d
                return params, tuple(xs)

            directional(f"input:{k}", grad, make_in, dir_in)
    return errors


def check_vjp_fn(fn: Callable, fn_vjp: Callable, inputs, *, rng: np.random.Generator | None = None,
                 differentiable: tuple | None = None, eps: float = 1e-5) -> dict[str, float]:
    """:func:`check_vjp` for a Rule-A primitive pair: ``fn(*inputs)`` and
    ``fn_vjp(*inputs, grad_out)`` (a single gradient or a tuple in argument order)."""

    class _Wrap:
        def forward(self, params, *xs):
            return fn(*xs), xs

        def backward(self, params, cache, grad_out):
            g = fn_vjp(*cache, grad_out)
            return {}, (g if isinstance(g, tuple) else (g,))

    return check_vjp(_Wrap(), {}, None, tuple(inputs), rng=rng, differentiable=differentiable, eps=eps)


def check_case_vjp(case, rng: np.random.Generator, num_nodes: int = 6) -> dict[str, float]:
    """:func:`check_vjp` on a fresh random problem of a registered case."""
    graph, inputs = case.make_inputs(rng, num_nodes)
    params = case.layer.init(rng)
    return check_vjp(case.layer, params, graph, inputs, rng=rng, kinds=case.input_kinds, eps=case.fd_eps)


def vjp(layer, params, graph, *inputs):
    """``(out, pullback)``: wraps the explicit forward/backward pair into a closure."""
    out, cache = _call_forward(layer, params, graph, inputs)
    return out, (lambda grad_out: layer.backward(params, cache, grad_out))


# --- symmetry -------------------------------------------------------------------------------

_KINDS: dict[str, Callable] = {}
_GROUPS: dict[str, Callable] = {}


def register_kind(prefix: str, transform: Callable) -> None:
    """Register ``transform(x, kind, Q, t) -> x'`` for kinds equal to or starting with ``prefix``."""
    _KINDS[prefix] = transform


def register_group(name: str, sampler: Callable) -> None:
    """Register ``sampler(rng, dim, trial) -> (Q, t)`` for a group name (regex allowed)."""
    _GROUPS[name] = sampler


def _kind_transform(kind):
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
    from . import o3

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
    if group in _GROUPS:
        return _GROUPS[group]
    m = re.fullmatch(r"C(\d+)xT2", group)
    if m:
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


def _rel_err(a, b) -> float:
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    scale = float(np.max(np.abs(b)))
    diff = float(np.max(np.abs(a - b)))
    return diff / scale if scale > 0 else diff


def symmetry_errors(layer, params, graph, inputs, input_kinds, output_kinds, group: str, *,
                    rng: np.random.Generator | None = None, trials: int = 2) -> dict[str, float]:
    """Max relative output errors under the group (``"transform"``), under node relabelling and
    edge reordering (``"permutation"``), and both at once (``"combined"``)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    inputs = tuple(inputs)
    out = _as_tuple(_call_forward(layer, params, graph, inputs)[0])
    dim = _group_dim(group, inputs, input_kinds)
    sampler = _group_sampler(group)
    errs = {"transform": 0.0, "permutation": 0.0, "combined": 0.0}
    for trial in range(trials):
        Q, t = sampler(rng, dim, trial)
        tin = tuple(None if x is None else _kind_transform(k)(x, k, Q, t)
                    for x, k in zip(inputs, input_kinds))
        tout = _as_tuple(_call_forward(layer, params, graph, tin)[0])
        want = tuple(None if o is None else _kind_transform(k)(o, k, Q, t)
                     for o, k in zip(out, output_kinds))
        errs["transform"] = max(errs["transform"], max(_rel_err(a, b) for a, b in zip(tout, want)))
        if graph is None:
            perm = rng.permutation(np.shape(inputs[0])[0])
            pin = tuple(None if x is None else x[perm] for x in inputs)
            pout = _as_tuple(_call_forward(layer, params, None, pin)[0])
            pwant = tuple(None if o is None else o[perm] for o in out)
            errs["permutation"] = max(errs["permutation"], max(_rel_err(a, b) for a, b in zip(pout, pwant)))
            continue
        perm, eperm, pgraph = _permutations(rng, graph)
        pin = tuple(_permute(x, k, perm, eperm) for x, k in zip(inputs, input_kinds))
        pout = _as_tuple(_call_forward(layer, params, pgraph, pin)[0])
        pwant = tuple(_permute(o, k, perm, eperm) for o, k in zip(out, output_kinds))
        errs["permutation"] = max(errs["permutation"], max(_rel_err(a, b) for a, b in zip(pout, pwant)))
        cin = tuple(_permute(x, k, perm, eperm) for x, k in zip(tin, input_kinds))
        cout = _as_tuple(_call_forward(layer, params, pgraph, cin)[0])
        cwant = tuple(_permute(o, k, perm, eperm) for o, k in zip(want, output_kinds))
        errs["combined"] = max(errs["combined"], max(_rel_err(a, b) for a, b in zip(cout, cwant)))
    return errs


def assert_equivariant(layer, params, graph, inputs, input_kinds, output_kinds, group: str, *,
                       rng: np.random.Generator | None = None, atol: float = 1e-12,
                       trials: int = 2) -> dict[str, float]:
    """Raise ``AssertionError`` if any symmetry error exceeds ``atol``; return the errors."""
    errs = symmetry_errors(layer, params, graph, inputs, input_kinds, output_kinds, group,
                           rng=rng, trials=trials)
    bad = {k: v for k, v in errs.items() if not v <= atol}
    if bad:
        raise AssertionError(f"{type(layer).__name__} is not {group}-equivariant: errors {bad} > {atol}")
    return errs


# --- backends -------------------------------------------------------------------------------


def _flat_arrays(obj):
    if obj is None:
        return []
    if isinstance(obj, dict):
        return [a for _, a in _leaves(obj)]
    if isinstance(obj, (tuple, list)):
        out = []
        for o in obj:
            out.extend(_flat_arrays(o))
        return out
    return [np.asarray(obj)]


def backend_errors(layer, params, graph, inputs, *, backends=None,
                   rng: np.random.Generator | None = None) -> dict[str, float]:
    """Max relative difference of outputs and all gradients of each backend against NumPy.

    Also runs each backend twice and reports ``inf`` if the two runs are not bit-identical.
    Blocks without a ``backend`` field report ``{}``.
    """
    from . import backends as _backends

    if not (dataclasses.is_dataclass(layer) and any(f.name == "backend" for f in dataclasses.fields(layer))):
        return {}
    rng = rng if rng is not None else np.random.default_rng(0)
    names = [b for b in (backends if backends is not None else _backends.available()) if b != "numpy"]

    def run(b):
        lay = dataclasses.replace(layer, backend=b)
        out, cache = _call_forward(lay, params, graph, inputs)
        cot_rng = np.random.default_rng(1234)
        cots = tuple(None if o is None else cot_rng.normal(size=np.shape(o)) for o in _as_tuple(out))
        gp, gi = lay.backward(params, cache, cots if isinstance(out, tuple) else cots[0])
        return _flat_arrays(out) + _flat_arrays(gp) + _flat_arrays(gi)

    ref = run("numpy")
    errs = {}
    for b in names:
        r1 = run(b)
        r2 = run(b)
        same = all(np.array_equal(x, y) for x, y in zip(r1, r2))
        errs[b] = max((_rel_err(x, y) for x, y in zip(r1, ref)), default=0.0) if same else float("inf")
    return errs


def assert_backends_agree(layer, params, graph, inputs, *, backends=None, rtol: float = 1e-13):
    """Raise ``AssertionError`` unless every backend matches NumPy within ``rtol`` (relative to
    each array's scale) and repeats bit-identically."""
    errs = backend_errors(layer, params, graph, inputs, backends=backends)
    bad = {k: v for k, v in errs.items() if not v <= rtol}
    if bad:
        raise AssertionError(f"backends disagree with NumPy: {bad} (rtol {rtol})")
    return errs


# --- hypothesis ------------------------------------------------------------------------------


def graph_strategy(max_nodes: int = 8, max_edges: int = 20, max_graphs: int = 3, *,
                   self_loops: bool = False):
    """Hypothesis strategy for :class:`Graph`: N and E from 0, isolated nodes, multi-edges,
    several graphs in a batch (some possibly empty). Needs the ``test`` extra (hypothesis)."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        sizes = draw(st.lists(st.integers(0, max_nodes), min_size=1, max_size=max_graphs))
        batch = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
        n = int(sum(sizes))
        edges = []
        start = 0
        for s in sizes:
            if s:
                pairs = draw(st.lists(st.tuples(st.integers(0, s - 1), st.integers(0, s - 1)),
                                      max_size=max_edges // len(sizes)))
                for a, b in pairs:
                    if self_loops or a != b:
                        edges.append((start + a, start + b))
            start += s
        ei = np.array(edges, dtype=np.int64).T.reshape(2, -1)
        return make_graph(ei, n, batch, len(sizes))

    return build()
