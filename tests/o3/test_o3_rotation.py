"""Rotations: elementary matrices, Y-X-Y Euler angles, axis-angle, Haar sampling, VJPs."""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref.o3 import (
    angles_to_matrix,
    angles_to_matrix_vjp,
    axis_angle_to_matrix,
    axis_angle_to_matrix_vjp,
    matrix_to_angles,
    matrix_x,
    matrix_y,
    matrix_z,
    random_orthogonal,
    random_rotation,
)


def test_elementary_matrices_right_handed():
    t = np.pi / 2
    e_x, e_y, e_z = np.eye(3)
    np.testing.assert_allclose(matrix_x(t) @ e_y, e_z, atol=1e-16)
    np.testing.assert_allclose(matrix_y(t) @ e_z, e_x, atol=1e-16)
    np.testing.assert_allclose(matrix_z(t) @ e_x, e_y, atol=1e-16)
    c, s = np.cos(0.3), np.sin(0.3)
    np.testing.assert_array_equal(matrix_y(0.3), [[c, 0, s], [0, 1, 0], [-s, 0, c]])
    assert matrix_x(np.zeros(4)).shape == (4, 3, 3)


def test_angles_to_matrix_is_yxy(rng):
    a, b, c = rng.uniform(-4, 4, (3, 5))
    np.testing.assert_allclose(
        angles_to_matrix(a, b, c), matrix_y(a) @ matrix_x(b) @ matrix_y(c), atol=0
    )
    # R(alpha, beta, 0) e_y has polar angle beta from +y and azimuth alpha from +z towards +x
    v = angles_to_matrix(0.4, 0.9, 0.0) @ np.array([0.0, 1.0, 0.0])
    expected = [np.sin(0.9) * np.sin(0.4), np.cos(0.9), np.sin(0.9) * np.cos(0.4)]
    np.testing.assert_allclose(v, expected, atol=1e-16)


def test_matrix_to_angles_round_trip(rng):
    R = random_rotation(rng, 50)
    a, b, c = matrix_to_angles(R)
    assert np.all((b >= 0) & (b <= np.pi))
    np.testing.assert_allclose(angles_to_matrix(a, b, c), R, atol=1e-15)
    a2, b2, c2 = matrix_to_angles(angles_to_matrix(0.3, 1.2, -2.5))
    np.testing.assert_allclose([a2, b2, c2], [0.3, 1.2, -2.5], atol=1e-15)


@pytest.mark.parametrize(
    "R",
    [
        np.eye(3),
        np.diag([-1.0, 1.0, -1.0]),  # pi about y: beta = 0, all in alpha + gamma
        np.diag([-1.0, -1.0, 1.0]),  # pi about z: beta = pi
        matrix_x(np.pi),
        matrix_x(1e-9) @ matrix_y(0.3),
        matrix_x(np.pi - 1e-9) @ matrix_y(-2.0),
        matrix_z(1e-12),
    ],
)
def test_matrix_to_angles_hard_cases(R):
    a, b, c = matrix_to_angles(R)
    assert np.shape(a) == () and 0 <= b <= np.pi
    np.testing.assert_allclose(angles_to_matrix(a, b, c), R, atol=2e-15)


def test_axis_angle(rng):
    np.testing.assert_allclose(axis_angle_to_matrix([0, 2.0, 0], 0.7), matrix_y(0.7), atol=1e-16)
    np.testing.assert_allclose(axis_angle_to_matrix([1.0, 0, 0], -1.1), matrix_x(-1.1), atol=1e-16)
    # independent route: exp of the skew matrix of theta * n (scipy)
    from scipy.linalg import expm

    axis, angle = rng.normal(size=(4, 3)), rng.normal(size=4) * 3
    R = axis_angle_to_matrix(axis, angle)
    for i in range(4):
        n = axis[i] / np.linalg.norm(axis[i])
        K = np.array([[0, -n[2], n[1]], [n[2], 0, -n[0]], [-n[1], n[0], 0]])
        np.testing.assert_allclose(R[i], expm(angle[i] * K), atol=1e-14)
    np.testing.assert_allclose(R[0] @ axis[0], axis[0], atol=1e-14)  # the axis is fixed


def test_random_rotation_and_orthogonal(rng):
    R = random_rotation(rng, 2000)
    assert R.shape == (2000, 3, 3)
    np.testing.assert_allclose(
        R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-15
    )
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-14)
    # Haar: E[R] = 0 and E[R_ij^2] = 1/3 (standard error ~0.013 and ~0.007 here)
    assert np.abs(R.mean(0)).max() < 0.07
    np.testing.assert_allclose((R**2).mean(0), 1 / 3, atol=0.04)
    assert random_rotation(rng).shape == (3, 3)
    Q = random_orthogonal(rng, 200)
    det = np.linalg.det(Q)
    np.testing.assert_allclose(np.abs(det), 1.0, atol=1e-14)
    assert 40 < np.sum(det < 0) < 160
    assert random_orthogonal(rng).shape == (3, 3)
    # deterministic given the generator's state
    a = random_orthogonal(np.random.default_rng(5), 3)
    np.testing.assert_array_equal(a, random_orthogonal(np.random.default_rng(5), 3))


def test_angles_to_matrix_vjp(rng):
    a, b, c = rng.uniform(-3, 3, (3, 4))
    G = rng.normal(size=(4, 3, 3))
    ga, gb, gc = angles_to_matrix_vjp(a, b, c, G)
    h = 1e-6
    for grad, k in ((ga, 0), (gb, 1), (gc, 2)):
        d = np.zeros((3, 4))
        d[k] = h
        fd = (
            np.sum(G * angles_to_matrix(*(np.array([a, b, c]) + d)), axis=(-2, -1))
            - np.sum(G * angles_to_matrix(*(np.array([a, b, c]) - d)), axis=(-2, -1))
        ) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


def test_axis_angle_to_matrix_vjp(rng):
    axis, angle = rng.normal(size=(5, 3)), rng.normal(size=5) * 2
    G = rng.normal(size=(5, 3, 3))
    g_axis, g_angle = axis_angle_to_matrix_vjp(axis, angle, G)
    assert g_axis.shape == axis.shape and g_angle.shape == angle.shape
    da, dt = rng.normal(size=(5, 3)), rng.normal(size=5)
    h = 1e-6

    def f(s):
        return np.sum(G * axis_angle_to_matrix(axis + s * da, angle + s * dt))

    fd = (f(h) - f(-h)) / (2 * h)
    np.testing.assert_allclose(np.sum(g_axis * da) + np.sum(g_angle * dt), fd, rtol=1e-7)
    # broadcasting: one axis, several angles -> gradients summed to the axis' shape
    g1, g2 = axis_angle_to_matrix_vjp(axis[0], angle, G)
    assert g1.shape == (3,) and g2.shape == (5,)
    np.testing.assert_allclose(g2, axis_angle_to_matrix_vjp(axis[[0] * 5], angle, G)[1], atol=0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="R is not orthogonal"):
        matrix_to_angles(np.eye(3) * 2)
    with pytest.raises(ValueError, match="R has determinant -1"):
        matrix_to_angles(-np.eye(3))
    with pytest.raises(ValueError, match="axis holds a zero vector"):
        axis_angle_to_matrix([0.0, 0, 0], 1.0)
    with pytest.raises(ValueError, match="axis must have shape"):
        axis_angle_to_matrix([1.0, 0], 1.0)
    with pytest.raises(ValueError, match="beta contains NaN"):
        angles_to_matrix(0.0, np.nan, 0.0)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        random_rotation("0")
    np.testing.assert_array_equal(random_rotation(3), random_rotation(np.random.default_rng(3)))
    with pytest.raises(ValueError, match="n must be >= 0"):
        random_orthogonal(np.random.default_rng(0), -1)
    with pytest.raises(ValueError, match="grad_R must have shape"):
        angles_to_matrix_vjp(0.0, 0.0, 0.0, np.ones((2, 3, 3)))
