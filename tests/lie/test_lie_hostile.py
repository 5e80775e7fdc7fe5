"""Hostile input for every public Lie-group function, and the maps on huge and singular angles.

* every public function of SO(2), SE(2), SO(3), SE(3), fed NaN, inf, wrong shapes, strings, None,
  complex numbers, huge and tiny values in each argument: it returns a finite result or raises a
  ``ValueError``/``TypeError`` naming an argument (never another exception, never NaN or inf);
* Exp and the Jacobians at huge angles (up to 1e300, and vectors whose squared norm overflows)
  against 50-digit mpmath (axis-aligned tangents, so the angle is the exact float input);
* the unit-axis forms used beyond 1e8 against the ordinary forms where both apply;
* ``Jr⁻¹``/``Jl⁻¹`` refuse angles within rounding of ``2πk`` and stay accurate just outside.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lie_mp_truth as T

from geomp_ref.lie import GROUPS, se3, so3

NAMES = list(GROUPS)


def _dof_shape(G):
    return () if G.DOF == 1 else (G.DOF,)


def _valid(G, rng):
    """Valid arguments of every public function (batch of 2)."""
    tau = rng.normal(size=(2,) + _dof_shape(G))
    g = G.exp(tau)
    h = G.random(rng, 2)
    n = g.shape[-1]
    d = n - 1 if G.__name__.endswith(("se2", "se3")) else n
    x = rng.normal(size=(2, d))
    return {
        "exp": (tau,), "hat": (tau,), "vee": (G.hat(tau),), "log": (g,), "inverse": (g,),
        "adjoint": (g,), "right_jacobian": (tau,), "left_jacobian": (tau,),
        "right_jacobian_inverse": (tau,), "left_jacobian_inverse": (tau,),
        "compose": (g, h), "between": (g, h), "rminus": (g, h), "relative_log": (g, h),
        "act": (g, x), "rplus": (g, tau), "exp_vjp": (tau, rng.normal(size=g.shape)),
        "log_vjp": (g, rng.normal(size=tau.shape)), "compose_vjp": (g, h, rng.normal(size=g.shape)),
        "act_vjp": (g, x, rng.normal(size=x.shape)),
        "relative_log_vjp": (g, h, rng.normal(size=tau.shape)),
    }


def _variants(x):
    x = np.asarray(x, dtype=float)
    out = {
        "nan": np.full(x.shape, np.nan), "inf": np.full(x.shape, np.inf),
        "huge": np.full(x.shape, 1e300), "max": np.full(x.shape, 1.7e308),
        "tiny": np.full(x.shape, 1e-300), "denormal": np.full(x.shape, 5e-324),
        "scalar": np.float64(1.0), "string": "text", "none": None,
        "complex": x.astype(complex), "list-of-arrays": [x, x],
        "extra axis": x[..., None], "short last axis": x[..., :-1] if x.ndim else x,
        "bad batch": np.concatenate([x, x, x]) if x.ndim else x,
        "object": np.array([object()], dtype=object),
    }
    if x.ndim >= 2 and x.shape[-1] == x.shape[-2]:
        bad = x.copy()
        bad[..., 0, 0] += 0.1
        out["not in group"] = bad
        flip = x.copy()
        flip[..., :, 0] *= -1
        out["reflection"] = flip
        last = x.copy()
        last[..., -1, 0] = 0.3
        out["last row"] = last
    return out


@pytest.mark.parametrize("name", NAMES)
def test_every_public_function_refuses_or_returns_finite(name):
    G = GROUPS[name]
    rng = np.random.default_rng(0)
    probes = 0
    for fn_name, args in _valid(G, rng).items():
        fn = getattr(G, fn_name)
        out = fn(*args)  # the valid call works
        for k, arg in enumerate(args):
            for what, bad in _variants(arg).items():
                new = list(args)
                new[k] = bad
                probes += 1
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    try:
                        out = fn(*new)
                    except (ValueError, TypeError) as exc:
                        assert str(exc), (fn_name, k, what)
                        continue
                for o in out if isinstance(out, tuple) else (out,):
                    assert np.all(np.isfinite(o)), (fn_name, k, what)
    assert probes > 400


@pytest.mark.parametrize("name", NAMES)
def test_random_and_tol_arguments(name):
    G = GROUPS[name]
    np.testing.assert_array_equal(G.random(3, 4), G.random(np.random.default_rng(3), 4))
    for bad, err in (("3", TypeError), (None, TypeError), (-1, TypeError)):
        with pytest.raises(err, match="rng"):
            G.random(bad, 2)
    for n, err in ((-1, ValueError), (2.0, TypeError), (True, TypeError), (2**62, ValueError)):
        with pytest.raises(err, match="n"):
            G.random(0, n)
    for tol in (0.0, -1.0, np.nan, "1e-9", True):
        with pytest.raises((ValueError, TypeError), match="tol"):
            G.log(G.identity(), tol=tol)


def test_named_errors_for_mismatched_batches():
    a, b = so3.random(0, 2), so3.random(1, 5)
    with pytest.raises(ValueError, match="a .* b .* do not broadcast"):
        so3.compose(a, b)
    with pytest.raises(ValueError, match="g_i .* g_j"):
        se3.relative_log(se3.random(0, 2), se3.random(1, 3))
    with pytest.raises(ValueError, match="g .* x"):
        so3.act(a, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="grad_tau"):
        se3.relative_log_vjp(se3.random(0, 2), se3.random(1, 2), np.zeros((3, 6)))
    with pytest.raises(ValueError, match="g .* tau"):
        so3.rplus(a, np.zeros((5, 3)))


def test_overflowing_results_are_refused():
    g = se3.identity().copy()
    g[:3, 3] = 1.7e308
    g[:3, :3] = so3.exp(np.array([0.0, 0.0, 3.0]))
    with pytest.raises(ValueError, match="overflows float64"):
        se3.log(g)
    with pytest.raises(ValueError, match="overflows float64"):
        so3.exp_vjp(np.array([0.1, 0.2, 0.3]), np.full((3, 3), 1.7e308))


# --- huge angles against mpmath ------------------------------------------------------------------

HUGE = [1e8 * 1.5, 1e9, 1e12, 1e20, 1e100, 1.3e154, 1e200, 1e300, 1.7e308]


def _mp_err(got, ref):
    ref = T.to_float(ref) if not isinstance(ref, np.ndarray) else ref
    return float(np.max(np.abs(got - ref)) / max(1.0, np.max(np.abs(ref))))


@pytest.mark.parametrize("theta", HUGE)
@pytest.mark.parametrize("axis", [0, 2])
def test_so3_huge_angles_against_mpmath(theta, axis):
    w = np.zeros(3)
    w[axis] = theta  # an exact float angle: the truth is the rotation by this float
    R = so3.exp(w)
    assert _mp_err(R, T.so3_exp(T.mpf_vec(w))) <= 2e-16
    for kind, fn in (("jl", so3.left_jacobian), ("jr", so3.right_jacobian)):
        assert _mp_err(fn(w), T.jacobian("so3", w, kind)) <= 4e-16, kind
    # ω ωᵀ overflows for these: the rescaled norm keeps the direction
    w3 = np.array([theta, -theta, 0.5 * theta]) / 1.5
    R3 = so3.exp(w3)
    assert np.abs(R3.T @ R3 - np.eye(3)).max() < 1e-15
    np.testing.assert_allclose(R3 @ (w3 / np.abs(w3).max()), w3 / np.abs(w3).max(), atol=1e-15)


@pytest.mark.parametrize("theta", HUGE)
def test_se3_huge_angles_against_mpmath(theta):
    tau = np.array([0.3, -1.2, 2.0, 0.0, theta, 0.0])
    g = se3.exp(tau)
    ref = T.exp("se3", tau)
    assert _mp_err(g, ref) <= 4e-16
    for kind, fn in (("jl", se3.left_jacobian), ("jr", se3.right_jacobian)):
        assert _mp_err(fn(tau), T.jacobian("se3", tau, kind)) <= 4e-16, kind


@pytest.mark.parametrize("theta", [1e9, 1e30, 1e154, 1e300])
def test_se2_huge_angles_against_mpmath(theta):
    from geomp_ref.lie import se2

    tau = np.array([0.7, -1.1, theta])
    assert _mp_err(se2.exp(tau), T.exp("se2", tau)) <= 4e-16
    assert _mp_err(se2.right_jacobian(tau), T.jacobian("se2", tau, "jr")) <= 4e-16


@pytest.mark.parametrize("theta", [3.5, 7.0, 40.0, 1e4, 9e7])
def test_unit_axis_forms_agree_with_the_ordinary_ones(theta):
    """The rewrites used beyond 1e8, evaluated where the ordinary forms are accurate too."""
    rng = np.random.default_rng(int(theta))
    k = rng.normal(size=3)
    k /= np.linalg.norm(k)
    w, th = theta * k, np.array([theta])
    t = np.array(theta)
    ordinary = {
        "exp": np.eye(3) + so3.A(t) * so3._hat(w) + so3.B(t) * so3._sq(w, t),
        "jl": np.eye(3) + so3.B(t) * so3._hat(w) + so3.C(t) * so3._sq(w, t),
        "jl_inv": np.eye(3) - 0.5 * so3._hat(w) + so3.D(t) * so3._sq(w, t),
    }
    big = {"exp": so3._exp_big, "jl": so3._jl_big, "jl_inv": so3._jl_inv_big}
    for key, fn in big.items():
        got = fn(k[None], th)[0]
        scale = max(1.0, np.abs(ordinary[key]).max())
        assert np.abs(got - ordinary[key]).max() <= 8e-16 * scale * max(1.0, theta / 10), key
    rho = rng.normal(size=3)
    q_big = se3._Q_big(rho[None], k[None], th)[0]
    q_ord = se3._Q_normal(rho, w, t)
    assert np.abs(q_big - q_ord).max() <= 1e-15 * max(1.0, np.abs(q_ord).max()) * max(1.0, theta)


# --- singular Jacobian inverses ---------------------------------------------------------------


@pytest.mark.parametrize("theta", [2 * np.pi, -2 * np.pi, 4 * np.pi, np.nextafter(2 * np.pi, 7),
                                   2 * np.pi * 1e6, 1e15 * 1.2, 1e300])
def test_jacobian_inverse_refuses_singular_angles(theta):
    from geomp_ref.lie import se2

    w = np.array([0.0, 0.0, theta])
    for fn in (so3.right_jacobian_inverse, so3.left_jacobian_inverse):
        with pytest.raises(ValueError, match=r"tau has rotation angle .* 2\*pi\*k"):
            fn(w)
    with pytest.raises(ValueError, match="tau"):
        se3.right_jacobian_inverse(np.concatenate([[1.0, 2.0, 3.0], w]))
    with pytest.raises(ValueError, match="tau"):
        se2.left_jacobian_inverse(np.array([1.0, 2.0, theta]))


@pytest.mark.parametrize("offset", [1e-10, 1e-6, -1e-3, 0.5])
def test_jacobian_inverse_near_singular_is_accurate(offset):
    """Just outside the refused band Jr⁻¹ is huge but well defined, and accurate."""
    w = np.array([0.0, 2 * np.pi + offset, 0.0])
    for kind, fn in (("jr_inv", so3.right_jacobian_inverse), ("jl_inv", so3.left_jacobian_inverse)):
        ref = T.to_float(T.jacobian("so3", w, kind))
        got = fn(w)
        assert np.abs(got - ref).max() <= 1e-14 * np.abs(ref).max(), (kind, offset)
        np.testing.assert_allclose(got @ so3.right_jacobian(w) if kind == "jr_inv"
                                   else got @ so3.left_jacobian(w), np.eye(3),
                                   atol=1e-15 * np.abs(ref).max() * 4)


def test_mp_truth_handles_huge_angles():
    """The truth itself: mpmath reduces sin(1e300) exactly (checked at two precisions)."""
    with mp.workdps(50):
        a = mp.sin(mp.mpf(1e300))
    with mp.workdps(80):
        b = mp.sin(mp.mpf(1e300))
    assert abs(a - b) < mp.mpf(10) ** -45
    assert float(a) == np.sin(1e300)
