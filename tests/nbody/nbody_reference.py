"""Test double: a plain one-simulation-at-a-time charged N-body generator.

Written for the tests from the published generator's semantics (EGNN repository,
``n_body_system/dataset/synthetic_sim.py`` and ``generate_dataset.py``), with the operations that
decide the rounding in the same form: a private ``RandomState`` drawing charges, positions,
velocities and two noise arrays per simulation; squared distances as |a|^2 + |b|^2 - 2 a.b with
the Gram matrix from a matrix product of the positions with their own transpose; ``pow(., 1.5)``
on the full matrix; the force as the row sum of an (n, n) matrix per coordinate; clipping to
+-100; a kick, then drift / store / kick. Nothing here is vectorised over simulations, so it is
an independent route to the same bits as :mod:`geomp_ref.nbody`.
"""

from __future__ import annotations

import numpy as np

DT = 0.001
LIMIT = 100.0
BOX = 5.0


def _force(pos, qq):
    """Force on every particle, shape (3, n), from positions (3, n) and charge products (n, n)."""
    n = pos.shape[1]
    rows = pos.T  # (n, 3)
    norms = np.sum(rows ** 2, axis=1)
    gram = rows.dot(pos.T.T)  # a matrix times its own transpose, as the published code does
    r2 = norms.reshape(n, 1) + norms.reshape(1, n) - 2 * gram
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = qq / np.power(r2, 1.5)
    for i in range(n):
        strength[i, i] = 0.0
    force = np.empty((3, n))
    for d in range(3):
        pair_diff = pos[d][:, None] - pos[d][None, :]
        force[d] = np.sum(strength * pair_diff, axis=1)
    force[force > LIMIT] = LIMIT
    force[force < -LIMIT] = -LIMIT
    return force, strength


def one_simulation(rs, n, length, freq, speed):
    """One trajectory: (loc (T_save, 3, n), vel, qq (n, n), q (n, 1))."""
    frames = length // freq - 1
    q = rs.choice(np.array([-1.0, 0.0, 1.0]), size=(n, 1), p=[0.5, 0.0, 0.5])
    qq = q.dot(q.T)
    pos = rs.randn(3, n) * ((float(n) / 5.0) ** (1 / 3) * 1.0)
    vel = rs.randn(3, n)
    vel = vel * speed / np.sqrt(np.sum(vel ** 2, axis=0)).reshape(1, n)
    assert np.all(np.abs(pos) < 3 * BOX)
    for d in range(3):
        for i in range(n):
            if pos[d, i] > BOX:
                pos[d, i] = 2 * BOX - pos[d, i]
                vel[d, i] = -abs(vel[d, i])
            if pos[d, i] < -BOX:
                pos[d, i] = -2 * BOX - pos[d, i]
                vel[d, i] = abs(vel[d, i])
    locs = np.zeros((frames, 3, n))
    vels = np.zeros((frames, 3, n))
    force, strength = _force(pos, qq)
    off = ~np.eye(n, dtype=bool)
    assert np.abs(strength[off]).min() > 1e-10
    vel += DT * force
    stored = 0
    for step in range(1, length):
        pos += DT * vel
        if step % freq == 0:
            locs[stored] = pos
            vels[stored] = vel
            stored += 1
        vel += DT * _force(pos, qq)[0]
    locs += rs.randn(frames, 3, n) * 0.0
    vels += rs.randn(frames, 3, n) * 0.0
    return locs, vels, qq, q


def reference_dataset(num_train, num_valid, num_test, length, length_test, sample_freq, n_balls,
                      seed, initial_vel=True):
    """``{split: {kind: array}}`` for the three splits, one simulation at a time."""
    rs = np.random.RandomState(seed)
    speed = 0.5 if initial_vel else 1e-16
    out = {}
    for split, num, steps in (("train", num_train, length), ("valid", num_valid, length),
                              ("test", num_test, length_test)):
        sims = [one_simulation(rs, n_balls, steps, sample_freq, speed) for _ in range(num)]
        out[split] = {kind: np.stack([s[k] for s in sims])
                      for k, kind in enumerate(("loc", "vel", "edges", "charges"))}
    return out


def force_probe() -> bytes:
    """Bytes of forces on fixed random configurations (a fingerprint of BLAS/libm rounding)."""
    rs = np.random.RandomState(2024)
    chunks = []
    for _ in range(200):
        pos = rs.randn(3, 5) * 2.0
        q = rs.choice([-1.0, 1.0], size=(5, 1))
        chunks.append(_force(pos, q.dot(q.T))[0].tobytes())
    return b"".join(chunks)
