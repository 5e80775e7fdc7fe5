r"""Rotation matrices, e3nn's Y-X-Y Euler angles, axis-angle, random (Haar) rotations, and VJPs.

.. math::

    R_x(t) = \begin{pmatrix}1&0&0\\0&c&-s\\0&s&c\end{pmatrix},\quad
    R_y(t) = \begin{pmatrix}c&0&s\\0&1&0\\-s&0&c\end{pmatrix},\quad
    R_z(t) = \begin{pmatrix}c&-s&0\\s&c&0\\0&0&1\end{pmatrix}

(active, right-handed), and the Euler convention of e3nn >= 0.2.2

.. math:: R(\alpha, \beta, \gamma) = R_y(\alpha)\, R_x(\beta)\, R_y(\gamma)

(:math:`\gamma` applied first), so that :math:`R(\alpha, \beta, 0)\, e_y` has polar angle
:math:`\beta` from :math:`+y` and azimuth :math:`\alpha` measured from :math:`+z` towards
:math:`+x`. Axis-angle (Rodrigues): :math:`R = I + \sin\theta\, K + (1 - \cos\theta) K^2`,
:math:`K = [\hat n]_\times`. These are e3nn's conventions (>= 0.2.2), so angles and matrices
copy across unchanged.

References
----------
M. Geiger, T. Smidt, "e3nn: Euclidean neural networks", arXiv:2207.09453 (2022).
K. Shoemake, "Uniform random rotations", Graphics Gems III (1992) 124-132.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float64, as_rng, check_alloc, check_int

__all__ = [
    "angles_to_matrix",
    "angles_to_matrix_vjp",
    "axis_angle_to_matrix",
    "axis_angle_to_matrix_vjp",
    "matrix_to_angles",
    "matrix_x",
    "matrix_y",
    "matrix_z",
    "random_orthogonal",
    "random_rotation",
]

_TOL = 1e-9


def _elementary(t, axis: int, name: str) -> np.ndarray:
    t = as_float64(t, name)
    c, s = np.cos(t), np.sin(t)
    R = np.zeros(t.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]  # the rotated plane, oriented right-handedly
    R[..., axis, axis] = 1.0
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def matrix_x(angle) -> np.ndarray:
    """Rotation by ``angle`` about +x, shape ``(..., 3, 3)``."""
    return _elementary(angle, 0, "angle")


def matrix_y(angle) -> np.ndarray:
    """Rotation by ``angle`` about +y, shape ``(..., 3, 3)``."""
    return _elementary(angle, 1, "angle")


def matrix_z(angle) -> np.ndarray:
    """Rotation by ``angle`` about +z, shape ``(..., 3, 3)``."""
    return _elementary(angle, 2, "angle")


def _angles(alpha, beta, gamma):
    a = as_float64(alpha, "alpha")
    b = as_float64(beta, "beta")
    c = as_float64(gamma, "gamma")
    return np.broadcast_arrays(a, b, c)


def angles_to_matrix(alpha, beta, gamma) -> np.ndarray:
    r"""Rotation matrix :math:`R_y(\alpha) R_x(\beta) R_y(\gamma)`.

    Parameters
    ----------
    alpha, beta, gamma : float or ndarray, float64
        Euler angles, broadcast together to shape ``(...)``.

    Returns
    -------
    R : ndarray, shape (..., 3, 3), float64

    Notes
    -----
    Equal to ``e3nn.o3.angles_to_matrix``; ``wigner_D(1, alpha, beta, gamma)`` is the same
    matrix. VJP: :func:`angles_to_matrix_vjp`.
    """
    a, b, c = _angles(alpha, beta, gamma)
    return matrix_y(a) @ matrix_x(b) @ matrix_y(c)


def angles_to_matrix_vjp(alpha, beta, gamma, grad_R):
    r"""VJP of :func:`angles_to_matrix`: ``(grad_alpha, grad_beta, grad_gamma)``.

    With :math:`R = ABC` and :math:`A' = A G_y` etc. (:math:`G_k` the 3x3 generators),
    :math:`\bar\alpha = \langle \bar R, A G_y B C\rangle`,
    :math:`\bar\beta = \langle \bar R, A B G_x C\rangle`,
    :math:`\bar\gamma = \langle \bar R, A B C G_y\rangle` (Frobenius products).
    """
    a, b, c = _angles(alpha, beta, gamma)
    grad_R = as_float64(grad_R, "grad_R")
    if grad_R.shape != a.shape + (3, 3):
        raise ValueError(f"grad_R must have shape {a.shape + (3, 3)}; got {grad_R.shape}")
    gx = np.array([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    gy = np.array([[0.0, 0, 1], [0, 0, 0], [-1, 0, 0]])
    A, B, C = matrix_y(a), matrix_x(b), matrix_y(c)
    d_a = A @ gy @ B @ C
    d_b = A @ B @ gx @ C
    d_c = A @ B @ C @ gy
    return tuple(np.sum(grad_R * d, axis=(-2, -1)) for d in (d_a, d_b, d_c))


def _check_rotation(R, name: str) -> np.ndarray:
    from .wigner import _check_orthogonal

    R = _check_orthogonal(R, name)
    det = np.linalg.det(R)
    if np.any(det < 0):
        raise ValueError(
            f"{name} has determinant -1 (a reflection); Euler angles describe rotations only: "
            f"pass -{name} and account for the inversion separately"
        )
    return R


def matrix_to_angles(R):
    r"""Euler angles (Y-X-Y) of a rotation matrix, as e3nn.

    Parameters
    ----------
    R : ndarray, shape (..., 3, 3), float64
        Rotation (orthogonal to 1e-9, det +1).

    Returns
    -------
    alpha, beta, gamma : ndarray, shape (...), float64
        :math:`\beta \in [0, \pi]`, :math:`\alpha, \gamma \in (-\pi, \pi]`, with
        ``angles_to_matrix(alpha, beta, gamma) == R``.

    Raises
    ------
    ValueError
        If ``R`` is not orthogonal or is a reflection (the message names ``R``).

    Notes
    -----
    :math:`v = R e_y`, :math:`\alpha = \mathrm{atan2}(v_x, v_z)`,
    :math:`\beta = \mathrm{atan2}(\sqrt{v_x^2 + v_z^2}, v_y)` (e3nn uses ``arccos(v_y)``, the same
    angle, but ill-conditioned near the poles), then
    :math:`\gamma = \mathrm{atan2}(R'_{02}, R'_{00})` with :math:`R' = R(\alpha,\beta,0)^T R`.
    Gimbal lock (:math:`\beta \in \{0, \pi\}`): :math:`\alpha = \mathrm{atan2}(0, \pm 0)` and
    :math:`\gamma` absorbs the rest, so the round trip still reproduces ``R``.
    """
    R = _check_rotation(R, "R")
    v = R[..., :, 1]
    alpha = np.arctan2(v[..., 0], v[..., 2])
    beta = np.arctan2(np.hypot(v[..., 0], v[..., 2]), v[..., 1])
    Rp = np.swapaxes(angles_to_matrix(alpha, beta, np.zeros_like(alpha)), -1, -2) @ R
    gamma = np.arctan2(Rp[..., 0, 2], Rp[..., 0, 0])
    return alpha, beta, gamma


def _hat(n: np.ndarray) -> np.ndarray:
    K = np.zeros(n.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -n[..., 2], n[..., 1]
    K[..., 1, 0], K[..., 1, 2] = n[..., 2], -n[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -n[..., 1], n[..., 0]
    return K


def _axis_angle(axis, angle):
    axis = as_float64(axis, "axis")
    if axis.ndim == 0 or axis.shape[-1] != 3:
        raise ValueError(f"axis must have shape (..., 3); got {axis.shape}")
    angle = as_float64(angle, "angle")
    # scale first (divide by the largest component): |axis|^2 never overflows nor underflows
    m = np.max(np.abs(axis), axis=-1)
    if np.any(m == 0):
        raise ValueError("axis holds a zero vector: the rotation axis is undefined")
    y = axis / m[..., None]
    ny = np.sqrt(np.sum(y * y, axis=-1))
    batch = np.broadcast_shapes(axis.shape[:-1], angle.shape)
    n = np.broadcast_to(y / ny[..., None], batch + (3,))
    # |axis| = m * ny, kept as the two factors so that dividing by it cannot overflow
    return n, (np.broadcast_to(m, batch), np.broadcast_to(ny, batch)), np.broadcast_to(angle, batch)


def axis_angle_to_matrix(axis, angle) -> np.ndarray:
    r"""Rotation by ``angle`` about ``axis`` (right-hand rule), Rodrigues' formula.

    Parameters
    ----------
    axis : ndarray, shape (..., 3), float64
        Rotation axis; only its direction matters (must be non-zero).
    angle : float or ndarray, shape (...), float64

    Returns
    -------
    R : ndarray, shape (..., 3, 3), float64

    Notes
    -----
    ``axis_angle_to_matrix(e_y, t) == matrix_y(t)``; equal to ``e3nn.o3.axis_angle_to_matrix``.
    VJP: :func:`axis_angle_to_matrix_vjp`.
    """
    n, _, t = _axis_angle(axis, angle)
    K = _hat(n)
    s, c = np.sin(t)[..., None, None], np.cos(t)[..., None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def axis_angle_to_matrix_vjp(axis, angle, grad_R):
    r"""VJP of :func:`axis_angle_to_matrix`: ``(grad_axis, grad_angle)``.

    .. math::

        \bar K = \sin\theta\,\bar R + (1-\cos\theta)(\bar R K^T + K^T \bar R),\quad
        \bar\theta = \langle \bar R, \cos\theta\, K + \sin\theta\, K^2\rangle,

    :math:`\bar n = \mathrm{vee}(\bar K - \bar K^T)` (the adjoint of ``hat``), and through
    :math:`n = a/|a|`: :math:`\bar a = (\bar n - n (n\cdot\bar n))/|a|`. Gradients are summed over
    broadcast dimensions so that they have the shapes of ``axis`` and ``angle``.
    """
    n, norm, t = _axis_angle(axis, angle)
    axis_shape, angle_shape = np.shape(axis), np.shape(angle)
    grad_R = as_float64(grad_R, "grad_R")
    if grad_R.shape != n.shape[:-1] + (3, 3):
        raise ValueError(f"grad_R must have shape {n.shape[:-1] + (3, 3)}; got {grad_R.shape}")
    K = _hat(n)
    s, c = np.sin(t)[..., None, None], np.cos(t)[..., None, None]
    # reverses R = I + s K + (1 - c) K K
    grad_t = np.sum(grad_R * (c * K + s * (K @ K)), axis=(-2, -1))
    Kt = np.swapaxes(K, -1, -2)
    gK = s * grad_R + (1 - c) * (grad_R @ Kt + Kt @ grad_R)
    # reverses K = hat(n)
    grad_n = np.stack(
        [
            gK[..., 2, 1] - gK[..., 1, 2],
            gK[..., 0, 2] - gK[..., 2, 0],
            gK[..., 1, 0] - gK[..., 0, 1],
        ],
        axis=-1,
    )
    # reverses n = axis / |axis| (|axis| = m * ny, divided in two steps)
    m, ny = norm
    grad_a = ((grad_n - n * np.sum(n * grad_n, axis=-1, keepdims=True)) / ny[..., None]) / m[
        ..., None
    ]
    return _unbroadcast(grad_a, axis_shape), _unbroadcast(grad_t, angle_shape)


def _unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, s in enumerate(shape):
        if s == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def random_rotation(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    r"""Rotation matrices drawn from the Haar (uniform) measure on SO(3).

    Parameters
    ----------
    rng : numpy.random.Generator or int
        A generator, or a seed for ``np.random.default_rng``.
    n : int, optional
        Number of matrices; ``None`` returns a single ``(3, 3)`` matrix.

    Returns
    -------
    R : ndarray, shape (3, 3) or (n, 3, 3), float64
        Orthogonal to ~1e-16, det +1.

    Notes
    -----
    A standard normal 4-vector, normalised, is a uniform unit quaternion; its rotation matrix
    is Haar distributed (Shoemake 1992).
    """
    rng = as_rng(rng, "rng")
    count = 1 if n is None else check_int(n, "n")
    check_alloc((count, 3, 3), "n")
    q = rng.standard_normal((count, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q.T
    R = np.empty((count, 3, 3))
    R[:, 0, 0] = 1 - 2 * (y * y + z * z)
    R[:, 0, 1] = 2 * (x * y - z * w)
    R[:, 0, 2] = 2 * (x * z + y * w)
    R[:, 1, 0] = 2 * (x * y + z * w)
    R[:, 1, 1] = 1 - 2 * (x * x + z * z)
    R[:, 1, 2] = 2 * (y * z - x * w)
    R[:, 2, 0] = 2 * (x * z - y * w)
    R[:, 2, 1] = 2 * (y * z + x * w)
    R[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return R[0] if n is None else R


def random_orthogonal(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    r"""Orthogonal matrices drawn from the Haar measure on O(3): det +1 or -1 with probability 1/2.

    ``Q = s R`` with ``R`` from :func:`random_rotation` and an independent sign ``s = +-1``
    (``-I`` is the inversion, so ``s = -1`` gives the reflections).

    Returns
    -------
    Q : ndarray, shape (3, 3) or (n, 3, 3), float64
    """
    rng = as_rng(rng, "rng")
    R = random_rotation(rng, 1 if n is None else n)
    s = rng.choice(np.array([-1.0, 1.0]), size=R.shape[0])
    Q = s[:, None, None] * R
    return Q[0] if n is None else Q
