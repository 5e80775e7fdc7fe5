r"""Operations written once for every group (manif's "deduced API"), and shared validation.

Each group module (``so2``, ``se2``, ``so3``, ``se3``) provides a minimal private core:
``_exp``, ``_log``, ``_compose``, ``_inverse``, ``_hat``, ``_hat_T``, ``_jr``, ``_jl``, ``_jr_inv``,
``_jl_inv``, ``_tmatvec`` (``Jᵀ v``), ``_check_element``, ``_check_tangent`` and the constant
``_METRIC``. This module derives from it

.. math::

    X \oplus \tau = X\,\mathrm{Exp}(\tau), \qquad
    Y \ominus X = \mathrm{Log}(X^{-1} Y), \qquad
    \mathrm{between}(X, Y) = X^{-1} Y, \qquad
    \xi_{ij} = \mathrm{Log}(g_i^{-1} g_j),

and the VJPs that go through a Jacobian (Solà et al. 2018, eqs. (41)-(44), (79)):

* ``exp_vjp``: ``dExp(τ) = Exp(τ) hat(Jr(τ) dτ)``, hence ``∂L/∂τ = Jr(τ)ᵀ hatᵀ(Exp(τ)ᵀ G)``,
  where ``hatᵀ`` is the transpose of ``hat`` as a linear map, ``⟨M, hat v⟩_F = v · hatᵀ(M)``.
* ``log_vjp``: under ``g → g Exp(δ)``, ``dLog = Jr⁻¹(Log g) δ``. Log is defined on the group
  only, so its ambient (matrix-entry) gradient is unique only up to components normal to the
  group; we return the unique one *tangent* to the group at ``g``, ``G = g hat(M⁻¹ Jr⁻ᵀ γ)``
  with ``M = _METRIC`` the Gram matrix ``⟨hat a, hat b⟩_F = a · M b``. It is the minimum-norm
  matrix gradient and gives the exact chain rule for every perturbation that stays on the group
  (any ``g`` produced by ``exp``/``compose``/a pose layer). For SE groups its last row is zero and
  its translation column is exactly ``∂L/∂t`` with ``R`` held fixed. Autograd through another Log
  formula differs only by a normal component: compare tangent projections ``hatᵀ(gᵀ G)``.
* ``relative_log_vjp``: ``∂ξ/∂δ_j = Jr⁻¹(ξ)``, ``∂ξ/∂δ_i = −Jl⁻¹(ξ)`` for right perturbations of
  each factor, lifted to matrices as above: to first order
  ``(g_i Exp(δ_i))⁻¹ g_j Exp(δ_j) = Exp(−δ_i) Exp(ξ) Exp(δ_j)``, and moving ``Exp(−δ_i)`` to the
  right side of ``Exp(ξ)`` turns it into ``Exp(−Ad_{Exp(−ξ)} δ_i)``, whence
  ``−Jr⁻¹(ξ) Ad_{Exp(−ξ)} = −Jl⁻¹(ξ)``.

The proofs are in ``derivations/so3.py``, ``derivations/se3.py`` and ``derivations/so2_se2.py``.

Hostile input. Every public function validates its arguments here (named errors for NaN/inf,
wrong shapes, batch shapes that do not broadcast, non-group matrices) and is wrapped by
:func:`guarded`, which refuses a result that overflowed float64 (an entry beyond ~1.8e308, e.g.
translations near the float64 limit) with an error instead of returning inf or NaN.
"""

from __future__ import annotations

import functools

import numpy as np

from .._validate import as_float64, as_rng, check_alloc, check_int

#: machine epsilon; angles within ``_SINGULAR_ULPS`` ulps (relative) of 2πk count as singular
_EPS = np.finfo(np.float64).eps
_SINGULAR_ULPS = 8.0


def guarded(fn):
    """Decorator: run ``fn`` with overflow warnings silenced and refuse a non-finite result.

    The group formulas never produce NaN or inf from finite input except by overflowing float64
    (entries beyond ~1.8e308); that is reported as a ``ValueError`` naming the function.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = fn(*args, **kwargs)
        for arr in out if isinstance(out, tuple) else (out,):
            if not np.all(np.isfinite(arr)):
                where = fn.__module__.rsplit(".", 1)[-1]
                raise ValueError(
                    f"{where}.{fn.__name__}: the result overflows float64 (an entry beyond "
                    "1.8e308) for these inputs; scale the translations or cotangents down"
                )
        return out

    return wrapper


def check_invertible(theta, name: str) -> None:
    """Refuse rotation angles at which ``Jr``/``Jl`` are singular: ``|θ| = 2πk``, ``k != 0``.

    ``Jr⁻¹`` grows like ``1/|θ − 2πk|``; where ``|θ − 2πk|`` is within ``8 ulp(θ)`` the value is
    set by how the caller rounded the angle (``2*np.pi`` itself is 2.4e-16 short of 2π), so there
    is no answer to give. Angles beyond ~1.1e15 are all within that distance of some ``2πk``.
    The distance is measured through ``|sin(θ/2)|``, which NumPy evaluates with an exact
    argument reduction for any finite ``θ``.
    """
    theta = np.abs(np.asarray(theta, dtype=np.float64))
    h = 0.5 * theta
    bad = (theta > np.pi) & (np.abs(np.sin(h)) <= _SINGULAR_ULPS * _EPS * h)
    if np.any(bad):
        t = float(theta[bad].flat[0])
        k = round(t / (2.0 * np.pi))
        raise ValueError(
            f"{name} has rotation angle {t:.17g}, within float64 rounding of 2*pi*k (k = {k:g}), "
            "where the Jacobian is singular: its inverse does not exist there (it grows like "
            "1/|angle - 2*pi*k|); reduce the angle to (-pi, pi] first if a principal log is meant"
        )


def check_broadcast(*named) -> tuple:
    """The broadcast batch shape of ``(name, batch_shape)`` pairs, or an error naming them."""
    try:
        return np.broadcast_shapes(*(shape for _, shape in named))
    except ValueError:
        desc = ", ".join(f"{n} {tuple(s)}" for n, s in named)
        raise ValueError(
            f"the batch shapes (leading axes) of {desc} do not broadcast; give them equal "
            "leading shapes or size-1 axes"
        ) from None

# ----------------------------------------------------------------------------------------------
# validation


def check_tangent(tau, name: str, dof: int | None):
    """float64 tangent of shape ``(...)`` (``dof is None``, SO(2)) or ``(..., dof)``; finite."""
    arr = as_float64(tau, name)
    arr = arr.reshape(np.shape(tau))  # as_float64 (ascontiguousarray) turns 0-d into 1-d
    if dof is not None and (arr.ndim == 0 or arr.shape[-1] != dof):
        raise ValueError(
            f"{name} must have shape (..., {dof}) (a batch of tangent vectors); got {arr.shape}"
        )
    return arr


def check_tol(tol) -> float:
    """``tol`` must be a finite positive real."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer)):
        raise TypeError(f"tol must be a real number; got {type(tol).__name__}")
    tol = float(tol)
    if not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a finite number > 0; got {tol}")
    return tol


def check_element(g, name: str, dim: int, homogeneous: bool, tol: float):
    """Validate a batch of SO(dim) matrices, or SE(dim) homogeneous matrices if ``homogeneous``.

    Checks shape ``(..., n, n)``, finiteness, ``max |RᵀR − I| <= tol``, ``det R > 0`` and, for SE,
    a last row ``[0, ..., 0, 1]`` within ``tol``. Raises ``ValueError`` naming ``name``.
    """
    tol = check_tol(tol)
    arr = as_float64(g, name)
    n = dim + 1 if homogeneous else dim
    group = f"{'SE' if homogeneous else 'SO'}({dim})"
    if arr.ndim < 2 or arr.shape[-2:] != (n, n):
        raise ValueError(
            f"{name} must have shape (..., {n}, {n}) ({group} elements as matrices); "
            f"got {arr.shape}"
        )
    if homogeneous:
        last = np.zeros(n)
        last[-1] = 1.0
        dev = np.abs(arr[..., -1, :] - last)
        if dev.size and dev.max() > tol:
            raise ValueError(
                f"{name} is not a homogeneous {group} matrix: its last row must be "
                f"[0, ..., 0, 1] (max deviation {dev.max():.3g} > tol={tol:g})"
            )
    R = arr[..., :dim, :dim]
    if R.size:
        err = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(dim)).max()
        if err > tol:
            raise ValueError(
                f"{name} is not orthogonal: max |R^T R - I| = {err:.3g} > tol={tol:g}; "
                "re-orthonormalize it (e.g. with an SVD) or pass a larger tol"
            )
        if (np.linalg.det(R) < 0).any():
            raise ValueError(
                f"{name} has det(R) = -1 (a reflection): it is in O({dim}) but not in {group}"
            )
    return arr


def sum_to_shape(x: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``x`` over the axes that broadcasting added to an array of ``shape``."""
    if x.shape == tuple(shape):
        return x
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead > 0 else x
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def check_rng(rng, n):
    """``rng`` must be a ``np.random.Generator`` and ``n`` an int >= 0 (used by ``grids``)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
            f"got {type(rng).__name__}"
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int; got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    return int(n)


def rng_and_count(rng, n, item_shape=()):
    """``(Generator, n)``: ``rng`` a Generator or an int seed (``default_rng(seed)``); ``n`` an
    int >= 0 whose ``(n, *item_shape)`` output (and the draws behind it) fit in memory."""
    rng = as_rng(rng, "rng")
    n = check_int(n, "n")
    check_alloc((n, 4) + tuple(item_shape), "n")
    return rng, n


# ----------------------------------------------------------------------------------------------
# deduced API (``G`` is a group module)


def _batch(G, x, tangent: bool):
    """Leading (batch) shape of an element or a tangent of ``G``."""
    if tangent:
        return x.shape if G.DOF == 1 else x.shape[:-1]
    return x.shape[:-2]


def check_pair(G, a, name_a, b, name_b, tol):
    """Two elements, validated, whose batch shapes broadcast."""
    a = G._check_element(a, name_a, tol)
    b = G._check_element(b, name_b, tol)
    check_broadcast((name_a, _batch(G, a, False)), (name_b, _batch(G, b, False)))
    return a, b


def rplus(G, g, tau, tol):
    """``g ⊕ τ = g Exp(τ)``."""
    g = G._check_element(g, "g", tol)
    tau = G._check_tangent(tau, "tau")
    check_broadcast(("g", _batch(G, g, False)), ("tau", _batch(G, tau, True)))
    return G._compose(g, G._exp(tau))


def rminus(G, y, x, tol):
    """``y ⊖ x = Log(x⁻¹ y)``."""
    y, x = check_pair(G, y, "y", x, "x", tol)
    return G._log(G._compose(G._inverse(x), y))


def between(G, a, b, tol):
    """``a⁻¹ b``."""
    a, b = check_pair(G, a, "a", b, "b", tol)
    return G._compose(G._inverse(a), b)


def relative_log(G, g_i, g_j, tol):
    """``ξ_ij = Log(g_i⁻¹ g_j)`` (receiver ``i``, sender ``j``)."""
    g_i, g_j = check_pair(G, g_i, "g_i", g_j, "g_j", tol)
    return G._log(G._compose(G._inverse(g_i), g_j))


def _lift(G, g, w):
    """Tangent matrix gradient at ``g`` whose right-trivialised pairing is ``w``:
    ``g hat(M⁻¹w)``."""
    return g @ G._hat(G._metric_solve(w))


def relative_log_vjp(G, g_i, g_j, grad_tau, tol):
    """VJP of :func:`relative_log`: ``(G_i, G_j)`` tangent matrix gradients."""
    g_i, g_j = check_pair(G, g_i, "g_i", g_j, "g_j", tol)
    xi = G._log(G._compose(G._inverse(g_i), g_j))
    grad_tau = G._check_tangent(grad_tau, "grad_tau")
    if grad_tau.shape != xi.shape:
        raise ValueError(
            f"grad_tau must have the shape of relative_log(g_i, g_j), {xi.shape}; "
            f"got {grad_tau.shape}"
        )
    # ∂ξ/∂δ_j = Jr⁻¹(ξ), ∂ξ/∂δ_i = −Jl⁻¹(ξ)   (derivations/so3.py, se3.py, so2_se2.py)
    w_j = G._tmatvec(G._jr_inv(xi), grad_tau)
    w_i = -G._tmatvec(G._jl_inv(xi), grad_tau)
    grad_g_i = sum_to_shape(_lift(G, g_i, w_i), g_i.shape)
    grad_g_j = sum_to_shape(_lift(G, g_j, w_j), g_j.shape)
    return grad_g_i, grad_g_j


def exp_vjp(G, tau, grad_g):
    """``∂L/∂τ = Jr(τ)ᵀ hatᵀ(Exp(τ)ᵀ ∂L/∂g)``."""
    tau = G._check_tangent(tau, "tau")
    grad_g = as_float64(grad_g, "grad_g")
    g = G._exp(tau)
    if grad_g.shape != g.shape:
        raise ValueError(f"grad_g must have the shape of exp(tau), {g.shape}; got {grad_g.shape}")
    # dg = g hat(Jr dτ): pair the cotangent with the right-trivialised tangent, then pull back
    w = G._hat_T(np.swapaxes(g, -1, -2) @ grad_g)
    return G._tmatvec(G._jr(tau), w)


def log_vjp(G, g, grad_tau, tol):
    """Tangent matrix gradient ``g hat(M⁻¹ Jr⁻¹(Log g)ᵀ γ)`` (see the module docstring)."""
    g = G._check_element(g, "g", tol)
    tau = G._log(g)
    grad_tau = G._check_tangent(grad_tau, "grad_tau")
    if grad_tau.shape != tau.shape:
        raise ValueError(
            f"grad_tau must have the shape of log(g), {tau.shape}; got {grad_tau.shape}"
        )
    # dLog = Jr⁻¹(τ) δ under g -> g Exp(δ)
    return _lift(G, g, G._tmatvec(G._jr_inv(tau), grad_tau))


def compose_vjp(G, a, b, grad_c, tol):
    """``c = a b``: ``(G bᵀ, aᵀ G)`` reduced to the shapes of ``a`` and ``b`` (ambient, exact)."""
    a, b = check_pair(G, a, "a", b, "b", tol)
    grad_c = as_float64(grad_c, "grad_c")
    c_shape = np.broadcast_shapes(a.shape, b.shape)
    if grad_c.shape != c_shape:
        raise ValueError(
            f"grad_c must have the shape of compose(a, b), {c_shape}; got {grad_c.shape}"
        )
    grad_a = grad_c @ np.swapaxes(b, -1, -2)
    grad_b = np.swapaxes(a, -1, -2) @ grad_c
    return sum_to_shape(grad_a, a.shape), sum_to_shape(grad_b, b.shape)


# ----------------------------------------------------------------------------------------------
# matrix-level operations shared by SO(n) and SE(n) (``G._DIM``, ``G._HOMOGENEOUS``)


def inverse_core(G, g):
    """``Rᵀ`` for SO(n); ``[[Rᵀ, −Rᵀ t], [0, 1]]`` for SE(n)."""
    if not G._HOMOGENEOUS:
        return np.swapaxes(g, -1, -2).copy()
    n = G._DIM
    out = np.zeros_like(g)
    Rt = np.swapaxes(g[..., :n, :n], -1, -2)
    out[..., :n, :n] = Rt
    out[..., :n, n] = -np.einsum("...ij,...j->...i", Rt, g[..., :n, n])
    out[..., n, n] = 1.0
    return out


def act(G, g, x, tol):
    """``y = R x`` (SO) or ``y = R x + t`` (SE), broadcasting over leading axes."""
    g = G._check_element(g, "g", tol)
    x = _check_points(G, x)
    check_broadcast(("g", g.shape[:-2]), ("x", x.shape[:-1]))
    n = G._DIM
    y = np.einsum("...ij,...j->...i", g[..., :n, :n], x)
    return y + g[..., :n, n] if G._HOMOGENEOUS else y


def act_vjp(G, g, x, grad_y, tol):
    """``(grad_g, grad_x)``: ``grad_R = γ xᵀ``, ``grad_t = γ``, ``grad_x = Rᵀ γ`` (ambient,
    exact)."""
    g = G._check_element(g, "g", tol)
    x = _check_points(G, x)
    n = G._DIM
    y_shape = check_broadcast(("g", g.shape[:-2]), ("x", x.shape[:-1])) + (n,)
    grad_y = as_float64(grad_y, "grad_y")
    if grad_y.shape != y_shape:
        raise ValueError(f"grad_y must have the shape of act(g, x), {y_shape}; got {grad_y.shape}")
    grad_g = np.zeros(y_shape[:-1] + g.shape[-2:])
    grad_g[..., :n, :n] = grad_y[..., :, None] * x[..., None, :]
    if G._HOMOGENEOUS:
        grad_g[..., :n, n] = grad_y
    grad_x = np.einsum("...ji,...j->...i", g[..., :n, :n], grad_y)
    return sum_to_shape(grad_g, g.shape), sum_to_shape(grad_x, x.shape)


def _check_points(G, x):
    x = as_float64(x, "x")
    if x.ndim == 0 or x.shape[-1] != G._DIM:
        raise ValueError(f"x must have shape (..., {G._DIM}) (points); got {x.shape}")
    return x
