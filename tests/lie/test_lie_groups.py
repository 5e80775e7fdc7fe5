"""One battery over SO(2), SE(2), SO(3), SE(3): axioms, Jacobians by manifold perturbation (manif
style), VJPs by central differences, the pairwise-log derivative, batching and bad-input errors.

Independent routes: ``scipy.linalg.expm`` of ``hat`` for Exp, finite differences on the group for
Jacobians and VJPs, exact identities (``Jl = Ad Jr``, ``Jr⁻¹ Jr = I``) for consistency.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from geomp_ref.lie import GROUPS

NAMES = list(GROUPS)


@pytest.fixture(params=NAMES)
def G(request):
    return GROUPS[request.param]


def rand_tangent(G, rng, shape=(), scale=1.0):
    if G.DOF == 1:
        return scale * rng.uniform(-3.0, 3.0, shape)
    t = rng.standard_normal(shape + (G.DOF,))
    return scale * t


def tdot(G, a, b):
    return float(np.sum(a * b))


def mat(G, J):
    """Jacobian as a 2-D matrix (SO(2) Jacobians are scalars)."""
    return np.atleast_2d(J)


def tvec(G, v):
    return np.atleast_1d(v)


def short(G):
    return G.__name__.rsplit(".", 1)[-1]


def point_dim(G):
    return {"so2": 2, "se2": 2, "so3": 3, "se3": 3}[short(G)]


def homogeneous(G):
    return short(G) in ("se2", "se3")


# a few ulps: every entry of a product is a short dot product of rounded entries
EPS4 = 4 * np.finfo(float).eps


# --------------------------------------------------------------------------- axioms


def test_identity_and_inverse(G):
    rng = np.random.default_rng(0)
    g = G.random(rng, 5)
    e = G.identity()
    assert np.abs(G.compose(g, e) - g).max() == 0
    assert np.abs(G.compose(g, G.inverse(g)) - e).max() < 2 * EPS4
    assert np.abs(G.compose(G.inverse(g), g) - e).max() < 2 * EPS4
    assert np.abs(G.exp(np.zeros(() if G.DOF == 1 else (G.DOF,))) - e).max() == 0
    assert np.abs(G.log(e)).max() == 0


def test_associativity_and_homomorphism(G):
    rng = np.random.default_rng(1)
    a, b, c = G.random(rng, 3)
    assert np.abs(G.compose(G.compose(a, b), c) - G.compose(a, G.compose(b, c))).max() < 1e-14
    tau = rand_tangent(G, rng)
    # Exp(−τ) = Exp(τ)⁻¹ and Exp(sτ)Exp(tτ) = Exp((s+t)τ) (one-parameter subgroup)
    assert np.abs(G.exp(-tau) - G.inverse(G.exp(tau))).max() < 1e-15
    assert np.abs(G.compose(G.exp(0.3 * tau), G.exp(0.7 * tau)) - G.exp(tau)).max() < 1e-14


def test_exp_matches_expm_of_hat(G):
    rng = np.random.default_rng(2)
    for _ in range(5):
        tau = rand_tangent(G, rng, scale=2.0)
        assert np.abs(G.exp(tau) - scipy.linalg.expm(G.hat(tau))).max() < 1e-13
        assert np.abs(G.vee(G.hat(tau)) - tau).max() == 0


def test_act_matches_matrix_action(G):
    rng = np.random.default_rng(3)
    g = G.random(rng, 4)
    n = point_dim(G)
    x = rng.standard_normal((4, n))
    y = G.act(g, x)
    if homogeneous(G):
        xh = np.concatenate([x, np.ones((4, 1))], axis=-1)
        ref = np.einsum("bij,bj->bi", g, xh)[:, :n]
    else:
        ref = np.einsum("bij,bj->bi", g, x)
    assert np.abs(y - ref).max() < 1e-15
    # the action is a homomorphism: act(a b, x) = act(a, act(b, x))
    a, b = g[0], g[1]
    assert np.abs(G.act(G.compose(a, b), x) - G.act(a, G.act(b, x))).max() < 1e-14


def test_adjoint(G):
    """``g Exp(δ) g⁻¹ = Exp(Ad_g δ)`` and ``Jl(τ) = Ad_{Exp τ} Jr(τ)``."""
    rng = np.random.default_rng(4)
    g = G.random(rng, 1)[0]
    d = rand_tangent(G, rng)
    lhs = G.compose(G.compose(g, G.exp(d)), G.inverse(g))
    Ad = G.adjoint(g)
    assert np.abs(lhs - G.exp(mat(G, Ad) @ tvec(G, d) if G.DOF > 1 else Ad * d)).max() < 1e-14
    tau = rand_tangent(G, rng)
    Jl = mat(G, G.left_jacobian(tau))
    assert np.abs(Jl - mat(G, G.adjoint(G.exp(tau))) @ mat(G, G.right_jacobian(tau))).max() < 1e-14


def test_jacobian_identities(G):
    rng = np.random.default_rng(5)
    for scale in (1e-6, 0.5, 1.5):
        tau = rand_tangent(G, rng, scale=scale)
        Jr, Jl = mat(G, G.right_jacobian(tau)), mat(G, G.left_jacobian(tau))
        I = np.eye(Jr.shape[0])
        assert np.abs(mat(G, G.right_jacobian_inverse(tau)) @ Jr - I).max() < 1e-14
        assert np.abs(mat(G, G.left_jacobian_inverse(tau)) @ Jl - I).max() < 1e-14
        assert np.abs(Jl - mat(G, G.right_jacobian(-tau))).max() < 1e-15


# --------------------------------------------------------------------------- manif-style checks


@pytest.mark.parametrize("scale", [1e-3, 1.0, 2.5])
def test_jacobians_by_manifold_perturbation(G, scale):
    """``Log(Exp(τ)⁻¹ Exp(τ + hδ))/h → Jr δ`` and ``Log(Exp(τ + hδ) Exp(τ)⁻¹)/h → Jl δ``."""
    rng = np.random.default_rng(6)
    tau, d, h = rand_tangent(G, rng, scale=scale), rand_tangent(G, rng), 1e-6
    g_inv = G.inverse(G.exp(tau))
    num_r = (G.log(G.compose(g_inv, G.exp(tau + h * d)))
             - G.log(G.compose(g_inv, G.exp(tau - h * d)))) / (2 * h)
    num_l = (G.log(G.compose(G.exp(tau + h * d), g_inv))
             - G.log(G.compose(G.exp(tau - h * d), g_inv))) / (2 * h)
    assert np.abs(tvec(G, num_r) - mat(G, G.right_jacobian(tau)) @ tvec(G, d)).max() < 1e-8
    assert np.abs(tvec(G, num_l) - mat(G, G.left_jacobian(tau)) @ tvec(G, d)).max() < 1e-8
    # dLog: Log(g Exp(hδ)) ≈ Log(g) + Jr⁻¹(Log g) hδ
    g = G.exp(tau)
    num = (G.log(G.rplus(g, h * d)) - G.log(G.rplus(g, -h * d))) / (2 * h)
    ref = mat(G, G.right_jacobian_inverse(G.log(g))) @ tvec(G, d)
    assert np.abs(tvec(G, num) - ref).max() < 1e-8


def test_rplus_rminus_between(G):
    rng = np.random.default_rng(7)
    g = G.random(rng, 3)
    tau = rand_tangent(G, rng, (3,), scale=0.5)
    assert np.abs(G.rminus(G.rplus(g, tau), g) - tau).max() < 1e-14
    a, b = g[0], g[1]
    assert np.abs(G.between(a, b) - G.compose(G.inverse(a), b)).max() == 0
    assert np.abs(G.relative_log(a, b) - G.log(G.between(a, b))).max() == 0


# --------------------------------------------------------------------------- VJPs


def test_exp_vjp(G):
    rng = np.random.default_rng(8)
    tau = rand_tangent(G, rng, (2,))
    Gc = rng.standard_normal(G.exp(tau).shape)
    d, h = rand_tangent(G, rng, (2,)), 1e-6
    num = np.sum(Gc * (G.exp(tau + h * d) - G.exp(tau - h * d))) / (2 * h)
    assert abs(tdot(G, G.exp_vjp(tau, Gc), d) - num) < 1e-8 * max(1.0, abs(num))


def test_log_vjp_on_manifold(G):
    """⟨G, g hat(δ)⟩ equals the directional derivative of ⟨γ, Log⟩; G is tangent at g."""
    rng = np.random.default_rng(9)
    g = G.random(rng, 2)
    gamma = rand_tangent(G, rng, (2,))
    Gm = G.log_vjp(g, gamma)
    d, h = rand_tangent(G, rng, (2,)), 1e-6
    num = np.sum(gamma * (G.log(G.rplus(g, h * d)) - G.log(G.rplus(g, -h * d)))) / (2 * h)
    ana = np.sum(Gm * (g @ G.hat(d)))
    assert abs(ana - num) < 1e-8 * max(1.0, abs(num))
    # tangent: g⁻¹ G lies in the algebra (hat(vee(·)) reproduces it)
    A = np.linalg.inv(g) @ Gm
    assert np.abs(G.hat(G.vee(A)) - A).max() < 1e-14


def test_compose_vjp_ambient(G):
    """Ambient gradients: exact for arbitrary (also off-group) matrix directions."""
    rng = np.random.default_rng(10)
    a, b = G.random(rng, 2)
    a, b = a[None], b[None, None]  # broadcast (1,) with (1, 1) -> (1, 1)
    Gc = rng.standard_normal(np.broadcast_shapes(a.shape, b.shape))
    ga, gb = G.compose_vjp(a, b, Gc)
    assert ga.shape == a.shape and gb.shape == b.shape
    da, db = rng.standard_normal(a.shape), rng.standard_normal(b.shape)
    h = 1e-6
    def f(s):
        return np.sum(Gc * G.compose(a + s * da, b + s * db, tol=1.0))
    num = (f(h) - f(-h)) / (2 * h)
    assert abs(np.sum(ga * da) + np.sum(gb * db) - num) < 1e-8 * max(1.0, abs(num))


def test_act_vjp_broadcast(G):
    rng = np.random.default_rng(11)
    g = G.random(rng, 3)[:, None]  # (3, 1, n, n)
    n = point_dim(G)
    x = rng.standard_normal((1, 4, n))
    y = G.act(g, x)
    gy = rng.standard_normal(y.shape)
    gg, gx = G.act_vjp(g, x, gy)
    assert gg.shape == g.shape and gx.shape == x.shape
    dg, dx, h = rng.standard_normal(g.shape), rng.standard_normal(x.shape), 1e-6
    def f(s):
        return np.sum(gy * G.act(g + s * dg, x + s * dx, tol=1.0))
    num = (f(h) - f(-h)) / (2 * h)
    assert abs(np.sum(gg * dg) + np.sum(gx * dx) - num) < 1e-8 * max(1.0, abs(num))


def test_relative_log_vjp(G):
    """Derivative of Log(g_i⁻¹ g_j) w.r.t. both elements, by central differences on the group."""
    rng = np.random.default_rng(12)
    gi, gj = G.random(rng, 4), G.random(rng, 4)
    gamma = rand_tangent(G, rng, (4,))
    Gi, Gj = G.relative_log_vjp(gi, gj, gamma)
    di, dj, h = rand_tangent(G, rng, (4,)), rand_tangent(G, rng, (4,)), 1e-6
    def f(s):
        return np.sum(gamma * G.relative_log(G.rplus(gi, s * di), G.rplus(gj, s * dj)))
    num = (f(h) - f(-h)) / (2 * h)
    ana = np.sum(Gi * (gi @ G.hat(di))) + np.sum(Gj * (gj @ G.hat(dj)))
    assert abs(ana - num) < 1e-8 * max(1.0, abs(num))


@pytest.mark.parametrize("name", ["se2", "se3"])
def test_relative_log_vjp_positions(name):
    """Translation columns of the matrix gradients are ∂L/∂t_i, ∂L/∂t_j with R fixed; they sum to
    the translation-invariance identity only after rotating (t_i, t_j enter as R_iᵀ(t_j − t_i))."""
    G = GROUPS[name]
    rng = np.random.default_rng(13)
    gi, gj = G.random(rng, 3), G.random(rng, 3)
    gamma = rand_tangent(G, rng, (3,))
    Gi, Gj = G.relative_log_vjp(gi, gj, gamma)
    n = gi.shape[-1] - 1
    for which, Gm in ((0, Gi), (1, Gj)):
        dt, h = rng.standard_normal((3, n)), 1e-6
        def f(s, which=which, dt=dt):
            a, b = gi.copy(), gj.copy()
            (a if which == 0 else b)[..., :n, n] += s * dt
            return np.sum(gamma * G.relative_log(a, b))
        num = (f(h) - f(-h)) / (2 * h)
        assert abs(np.sum(Gm[..., :n, n] * dt) - num) < 1e-8 * max(1.0, abs(num))
    assert np.abs(Gi[..., n, :]).max() == 0 and np.abs(Gj[..., n, :]).max() == 0
    # translating both by the same vector does not change ξ: grad_t_i + grad_t_j = 0
    assert np.abs(Gi[..., :n, n] + Gj[..., :n, n]).max() < 1e-13


# --------------------------------------------------------------------------- batching, errors


def test_batch_shapes(G):
    rng = np.random.default_rng(14)
    tau = rand_tangent(G, rng, (2, 3))
    g = G.exp(tau)
    assert g.shape[:2] == (2, 3)
    assert G.log(g).shape == tau.shape
    one_by_one = np.stack([[G.log(g[i, j]) for j in range(3)] for i in range(2)])
    assert np.abs(G.log(g) - one_by_one).max() == 0
    J = G.right_jacobian(tau)
    assert J.shape == ((2, 3) if G.DOF == 1 else (2, 3, G.DOF, G.DOF))
    assert G.random(rng, 0).shape[0] == 0


def _bad_elements(G):
    homog = homogeneous(G)
    out = {}
    g = G.identity().copy()
    g[0, 1] = 1e-6  # non-orthogonal
    out["not orthogonal"] = g
    g = G.identity().copy()
    g[0, 0] = -1.0  # reflection
    out["det"] = g
    g = G.identity().copy()
    g[0, 0] = np.nan
    out["NaN"] = g
    if homog:
        g = G.identity().copy()
        g[-1, 0] = 0.5
        out["last row"] = g
    return out


def test_bad_elements_raise(G):
    for what, g in _bad_elements(G).items():
        with pytest.raises(ValueError, match="g") as info:
            G.log(g)
        msg = str(info.value)
        assert what in msg or (what == "not orthogonal" and "orthogonal" in msg)
        with pytest.raises(ValueError, match="a"):
            G.compose(g, G.identity())
        with pytest.raises(ValueError, match="g_j"):
            G.relative_log(G.identity(), g)


def test_tol_controls_orthogonality_check(G):
    g = G.identity().copy()
    g[0, 1] = 1e-7
    with pytest.raises(ValueError, match="tol"):
        G.log(g)
    G.log(g, tol=1e-6)  # accepted with a looser tolerance
    with pytest.raises(ValueError, match="tol"):
        G.log(G.identity(), tol=-1.0)


def test_bad_tangents_raise(G):
    with pytest.raises(ValueError, match="tau"):
        G.exp(np.full(() if G.DOF == 1 else (G.DOF,), np.nan))
    if G.DOF > 1:
        with pytest.raises(ValueError, match="tau"):
            G.exp(np.zeros(G.DOF + 1))
        with pytest.raises(ValueError, match="tau"):
            G.right_jacobian(np.zeros((2, G.DOF - 1)))
    with pytest.raises(ValueError, match="grad_g"):
        G.exp_vjp(np.zeros(() if G.DOF == 1 else (G.DOF,)), np.zeros((5, 5)))
    with pytest.raises(TypeError, match="rng"):
        G.random("0", 3)
    np.testing.assert_array_equal(G.random(5, 3), G.random(np.random.default_rng(5), 3))
    with pytest.raises(ValueError, match="x"):
        G.act(G.identity(), np.zeros(7))
