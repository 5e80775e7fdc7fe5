"""Finite-difference checks of hand-written VJPs (blocks and primitive pairs)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._validate import as_rng, check_int, check_positive
from ..params import flatten
from ._blocks import as_tuple, call_forward, check_block, check_kinds

#: Bound on the round-off of one loss evaluation, in units of ``u * sum |c * o|``.
_ROUNDOFF_FACTOR = 64.0


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
        if not isinstance(tree, dict) or p not in tree:
            raise AssertionError(f"backward's grad_params lacks the entry {path!r} of params")
        tree = tree[p]
    return tree


def _is_float_input(x):
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


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


def check_vjp(layer, params, graph, inputs, *, rng=None, kinds: tuple | None = None,
              differentiable: tuple | None = None, eps: float = 1e-5,
              num_directions: int = 1) -> dict[str, float]:
    """Errors of ``layer.backward`` against central differences, per parameter leaf and input.

    Parameters
    ----------
    layer : block spec
    params : dict
    graph : Graph or None
        ``None`` for blocks that take no graph.
    inputs : tuple
        One entry per forward input; ``None`` entries (unused optional inputs) are skipped.
    rng : numpy.random.Generator or int, optional
    kinds : tuple of str, optional
        Input kinds (see :mod:`geomp_ref.cases`); ``"pose"`` inputs are perturbed on the group and
        ``"node_label"`` inputs are skipped.
    differentiable : tuple of bool, optional
        Overrides which inputs are checked.
    eps : float
        Step of the central differences.
    num_directions : int
        Random directions per leaf (the worst is reported).

    Returns
    -------
    dict
        ``{"param:<path>": err, "input:<k>": err}``; see the package docstring for the error.
    """
    rng = as_rng(rng, "rng") if rng is not None else np.random.default_rng(0)
    inputs = check_block(layer, inputs, graph)
    kinds = check_kinds(kinds, len(inputs), "kinds", "input")
    if differentiable is not None:
        differentiable = check_kinds(differentiable, len(inputs), "differentiable", "input")
    eps = check_positive(eps, "eps")
    num_directions = check_int(num_directions, "num_directions", minimum=1)
    out, cache = call_forward(layer, params, graph, inputs)
    outs = as_tuple(out)
    cots = tuple(None if o is None else rng.normal(size=np.shape(o)) for o in outs)
    grad_params, grad_inputs = layer.backward(
        params, cache, cots if isinstance(out, tuple) else cots[0])
    grad_inputs = as_tuple(grad_inputs)
    # inputs left to their defaults (trailing optional inputs, None) get None gradients
    if len(grad_inputs) < len(inputs) or any(g is not None for g in grad_inputs[len(inputs):]):
        raise AssertionError(
            f"backward returned {len(grad_inputs)} input gradients for {len(inputs)} inputs; it "
            "must return one entry per forward input (None where there is no gradient)"
        )

    def loss(p, xs):
        o = as_tuple(call_forward(layer, p, graph, xs)[0])
        return sum(float(np.sum(c * oo)) for c, oo in zip(cots, o) if c is not None)

    base = abs(loss(params, inputs))
    # Round-off of one loss evaluation is at most a modest multiple of u * sum |c * o| (the
    # forward's own error grows with depth, hence the generous factor); the stencil weights it by
    # 18 / (12 eps). A directional-derivative error below that floor cannot be resolved by finite
    # differences, so it is not counted (this is what lets an exactly-zero gradient pass).
    mag = sum(float(np.sum(np.abs(c * oo))) for c, oo in zip(cots, outs) if c is not None)
    noise = 1.5 * _ROUNDOFF_FACTOR * np.finfo(np.float64).eps * mag / eps
    errors: dict[str, float] = {}

    def directional(name, grad, make, d_for_analytic):
        gnorm = float(np.linalg.norm(grad))
        worst = 0.0
        for _ in range(num_directions):
            d, an = d_for_analytic()
            # fourth-order central stencil: truncation O(eps^4), rounding O(u |L| / eps)
            fd = (8.0 * (loss(*make(eps, d)) - loss(*make(-eps, d)))
                  - (loss(*make(2 * eps, d)) - loss(*make(-2 * eps, d)))) / (12.0 * eps)
            err = max(abs(fd - an) - noise, 0.0) / max(gnorm, 1e-8 * (base + 1.0))
            worst = max(worst, err if np.isfinite(err) else float("inf"))
        errors[name] = worst

    for path, leaf in flatten(params).items():
        leaf = np.asarray(leaf)
        if leaf.size == 0:
            continue
        grad = np.asarray(_get_leaf(grad_params, path))
        if grad.shape != leaf.shape:
            raise AssertionError(
                f"grad for param {path} has shape {grad.shape}, expected {leaf.shape}")

        def dir_param(grad=grad, leaf=leaf):
            d = rng.normal(size=leaf.shape)
            d /= np.linalg.norm(d)
            return d, float(np.sum(grad * d))

        def make_param(t, d, path=path, leaf=leaf):
            return _set_leaf(params, path, leaf + t * d), inputs

        directional(f"param:{path}", grad, make_param, dir_param)

    for k, (x, kind) in enumerate(zip(inputs, kinds)):
        if x is None:  # an unused optional input
            continue
        diff = differentiable[k] if differentiable is not None else (
            _is_float_input(x) and kind != "node_label")
        if not diff or np.size(x) == 0:
            continue
        grad = grad_inputs[k]
        if grad is None:
            raise AssertionError(f"backward returned None for differentiable input {k}")
        grad = np.asarray(grad)
        if grad.shape != np.shape(x):
            raise AssertionError(
                f"grad for input {k} has shape {grad.shape}, expected {np.shape(x)}")
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


def check_vjp_fn(fn: Callable, fn_vjp: Callable, inputs, *, rng=None,
                 differentiable: tuple | None = None, eps: float = 1e-5) -> dict[str, float]:
    """:func:`check_vjp` for a primitive pair: ``fn(*inputs)`` and ``fn_vjp(*inputs, grad_out)``
    (which returns a single gradient or a tuple in argument order)."""
    if not (callable(fn) and callable(fn_vjp)):
        raise TypeError("fn and fn_vjp must be callables: fn(*inputs), fn_vjp(*inputs, grad_out)")

    class _Wrap:
        def forward(self, params, *xs):
            return fn(*xs), xs

        def backward(self, params, cache, grad_out):
            g = fn_vjp(*cache, grad_out)
            return {}, (g if isinstance(g, tuple) else (g,))

    return check_vjp(_Wrap(), {}, None, inputs, rng=rng, differentiable=differentiable, eps=eps)


def check_case_vjp(case, rng, num_nodes: int = 6) -> dict[str, float]:
    """:func:`check_vjp` on a fresh random problem of a registered case."""
    rng = as_rng(rng, "rng")
    num_nodes = check_int(num_nodes, "num_nodes")
    graph, inputs = case.make_inputs(rng, num_nodes)
    params = case.layer.init(rng)
    return check_vjp(case.layer, params, graph, inputs, rng=rng, kinds=case.input_kinds,
                     eps=case.fd_eps)


def vjp(layer, params, graph, *inputs):
    """``(out, pullback)``: wraps the explicit forward/backward pair into a closure."""
    inputs = check_block(layer, inputs, graph)
    out, cache = call_forward(layer, params, graph, inputs)
    return out, (lambda grad_out: layer.backward(params, cache, grad_out))
