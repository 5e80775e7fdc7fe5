r"""Charged-particle N-body simulation, vectorised over simulations, bit for bit.

This module reproduces, float for float, the charged-particle simulator of the EGNN N-body
experiment (Satorras, Hoogeboom and Welling 2021, repository vgsatorras/egnn, file
``n_body_system/dataset/synthetic_sim.py``, class ``ChargedParticlesSim``; the same class is used
by Steerable-E3-GNN and PONITA). One simulation, with ``n`` particles in 3-D:

* charges :math:`q_i \in \{-1, +1\}`, each with probability 1/2 (drawn by
  ``RandomState.choice([-1, 0, 1], p=[1/2, 0, 1/2])``, so the value 0 is never picked);
* positions :math:`x \sim \mathcal N(0, \sigma^2)` with :math:`\sigma = (n/5)^{1/3}`; velocities
  drawn from :math:`\mathcal N(0, 1)` and rescaled per particle to norm 0.5 (1e-16 when the
  initial velocity is switched off);
* the initial state (only it) is reflected into the box :math:`[-5, 5]^3`: a coordinate above 5
  becomes :math:`10 - x` with a negative velocity, one below -5 becomes :math:`-10 - x` with a
  positive velocity. The simulation itself runs in open space;
* force on i: :math:`F_i = \sum_{j \ne i} q_i q_j (x_i - x_j) / r_{ij}^3`, where
  :math:`r_{ij}^2` is evaluated as :math:`|x_i|^2 + |x_j|^2 - 2 x_i \cdot x_j` (not from the
  difference), and each force component is clipped to :math:`\pm 100` (:math:`0.1 / \Delta t`);
* integration with :math:`\Delta t = 10^{-3}`: one kick :math:`v \mathrel{+}= \Delta t F(x)` at
  the start, then for steps :math:`s = 1, \dots, T-1`: drift :math:`x \mathrel{+}= \Delta t v`,
  store :math:`(x, v)` when :math:`s` is a multiple of the sample frequency, kick again. Frame
  :math:`k` therefore holds the state after :math:`(k+1)` sample periods, and its velocity is the
  one that produced its position;
* after the run, two arrays of standard normals of the trajectory's shape are drawn and added
  times ``noise_var = 0``: they change nothing but consume the random stream.

Why the result is bit-identical although many simulations advance together: every operation of
one step is elementwise over a leading simulation axis and keeps the per-simulation operand
order. The three places where an order could change were checked bit for bit against the
one-simulation code:

* :math:`|x_i|^2` is summed over the three coordinates left to right, as NumPy does for a
  3-element reduction;
* the Gram matrix :math:`x_i \cdot x_j` is computed by the same BLAS routine the one-simulation
  code reaches (``np.matmul`` of the stacked :math:`X^\top X`, a symmetric rank-k product for every
  simulation). Its rounding (fused multiply-adds or not) is the BLAS kernel's, so it follows the
  machine exactly as the published generator does;
* the force sum over j, which the one-simulation code evaluates as NumPy's sum over a contiguous
  row of length n, is rebuilt addend by addend in exactly NumPy's order (:func:`row_sum`: left to
  right below 8 addends, NumPy's eight-way pairwise scheme above), for all rows at once.

Two exact shortcuts save time without changing a bit: the force-size matrix
:math:`q_i q_j / r_{ij}^3` is exactly symmetric, so ``pow`` runs on the pairs i < j only, and the
j-th addend :math:`s_{ij}(x_i - x_j)` of every row is formed from row j of that matrix.

The random stream is a private ``np.random.RandomState(seed)``: the same Mersenne Twister and the
same legacy Gaussian generator (with its cached second variate) as the global state that
``np.random.seed`` sets, so every draw is reproduced without touching NumPy's global state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = [
    "BOX_SIZE",
    "CHARGE_PROB",
    "CHARGE_TYPES",
    "DT",
    "InitialState",
    "SimulationError",
    "draw_initial",
    "forces",
    "integrate",
    "loc_std_for",
    "pair_coupling",
    "reflect_into_box",
    "row_sum",
]

#: Possible charges and their probabilities (the value 0 has probability 0 and is never drawn).
CHARGE_TYPES = (-1.0, 0.0, 1.0)
CHARGE_PROB = (0.5, 0.0, 0.5)
#: Time step and half-width of the box used for the initial reflection.
DT = 0.001
BOX_SIZE = 5.0
#: Coupling constant of the Coulomb-like force.
INTERACTION_STRENGTH = 1.0
#: Each force component is clipped to +-MAX_F.
MAX_F = 0.1 / DT


class SimulationError(RuntimeError):
    """A simulation reached a state the published generator refuses (it stops there)."""


class InitialState(NamedTuple):
    """Random draws of a block of simulations, in the order the published generator makes them.

    Attributes
    ----------
    charges : ndarray, shape (S, n, 1)
    loc : ndarray, shape (S, 3, n)
        Initial positions (before the reflection into the box).
    vel : ndarray, shape (S, 3, n)
        Unnormalised initial velocities (standard normal draws).
    noise_loc, noise_vel : ndarray, shape (S, T_save, 3, n)
        The two noise draws made after each integration.
    """

    charges: np.ndarray
    loc: np.ndarray
    vel: np.ndarray
    noise_loc: np.ndarray
    noise_vel: np.ndarray


def loc_std_for(n_balls: int) -> float:
    """Standard deviation of the initial positions, ``1 * (n/5)**(1/3)`` in double precision."""
    return 1.0 * (float(n_balls) / 5.0) ** (1 / 3)


def draw_initial(rs: np.random.RandomState, n_sims: int, n_balls: int,
                 n_frames: int) -> InitialState:
    """Make the random draws of ``n_sims`` consecutive simulations from ``rs``.

    The integration consumes no random numbers, so drawing a block of simulations up front, each
    in the published per-simulation order (charges, positions, velocities, position noise,
    velocity noise), leaves ``rs`` exactly where the published loop leaves its global state.

    Parameters
    ----------
    rs : numpy.random.RandomState
        Advanced in place.
    n_sims, n_balls, n_frames : int
        Number of simulations, particles and stored frames ``T_save``.
    """
    types = np.array(CHARGE_TYPES)
    prob = list(CHARGE_PROB)
    std = loc_std_for(n_balls)
    charges = np.empty((n_sims, n_balls, 1))
    loc = np.empty((n_sims, 3, n_balls))
    vel = np.empty((n_sims, 3, n_balls))
    noise_loc = np.empty((n_sims, n_frames, 3, n_balls))
    noise_vel = np.empty((n_sims, n_frames, 3, n_balls))
    for s in range(n_sims):
        charges[s] = rs.choice(types, size=(n_balls, 1), p=prob)
        loc[s] = rs.randn(3, n_balls) * std
        vel[s] = rs.randn(3, n_balls)
        noise_loc[s] = rs.randn(n_frames, 3, n_balls)
        noise_vel[s] = rs.randn(n_frames, 3, n_balls)
    return InitialState(charges, loc, vel, noise_loc, noise_vel)


def _fail(mask: np.ndarray, first_sim: int, what: str) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        raise SimulationError(
            f"simulation {first_sim + int(bad[0])} (counted from 0 in its split) {what}; the "
            "published generator stops with an AssertionError there, so no dataset exists for "
            "these arguments (try another seed or fewer balls)"
        )


def reflect_into_box(loc: np.ndarray, vel: np.ndarray, first_sim: int = 0):
    """Reflect the initial state into ``[-5, 5]^3`` as the published ``_clamp`` does.

    Parameters
    ----------
    loc, vel : ndarray, shape (S, 3, n)
    first_sim : int
        Index of ``loc[0]`` in its split, for error messages only.

    Returns
    -------
    loc, vel : ndarray, shape (S, 3, n)
        New arrays.

    Raises
    ------
    SimulationError
        A coordinate outside ``(-15, 15)``, where one reflection cannot bring it back.
    """
    box = BOX_SIZE
    _fail(~np.all((loc < box * 3) & (loc > -box * 3), axis=(1, 2)), first_sim,
          f"starts with a coordinate outside (-{3 * box:g}, {3 * box:g})")
    over = loc > box
    loc = np.where(over, 2 * box - loc, loc)
    vel = np.where(over, -np.abs(vel), vel)
    under = loc < -box
    loc = np.where(under, -2 * box - loc, loc)
    vel = np.where(under, np.abs(vel), vel)
    return loc, vel


@functools.lru_cache(maxsize=32)
def _pairs(n: int):
    """Upper-triangle pairs i < j of n particles and their flat indices in an (n, n) matrix."""
    i, j = np.triu_indices(n, 1)
    return i, j, i * n + j, j * n + i


def pair_coupling(charges: np.ndarray) -> np.ndarray:
    """``INTERACTION_STRENGTH * q_i q_j`` for the pairs i < j, shape (S, n(n-1)/2).

    Parameters
    ----------
    charges : ndarray, shape (S, n, 1)
    """
    i, j, _, _ = _pairs(charges.shape[1])
    q = charges[:, :, 0]
    # products of +-1 are exact, whatever order the published dot product uses
    return INTERACTION_STRENGTH * (q[:, i] * q[:, j])


def row_sum(term, n: int):
    """Sum ``term(0) + ... + term(n-1)`` in the order NumPy sums a contiguous row of length n.

    NumPy's ``add.reduce`` starts from +0.0 and adds the row's pairwise sum: below 8 elements a
    left-to-right loop; up to 128 elements eight running sums over strides of 8, combined as
    ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then the remainder left to right; above 128 elements
    the two halves (the first one a multiple of 8 long) are summed that way and added.

    Parameters
    ----------
    term : callable
        ``term(k)`` returns the k-th addend (a new array, which may be modified in place).
    n : int
    """

    def pairwise(lo: int, count: int):
        if count < 8:
            acc = term(lo)
            for k in range(lo + 1, lo + count):
                acc += term(k)
            return acc
        if count <= 128:
            acc8 = [term(lo + k) for k in range(8)]
            full = count - count % 8
            for base in range(lo + 8, lo + full, 8):
                for k in range(8):
                    acc8[k] += term(base + k)
            acc = ((acc8[0] + acc8[1]) + (acc8[2] + acc8[3])) + (
                (acc8[4] + acc8[5]) + (acc8[6] + acc8[7]))
            for k in range(lo + full, lo + count):
                acc += term(k)
            return acc
        half = count // 2
        half -= half % 8
        return pairwise(lo, half) + pairwise(lo + half, count - half)

    return 0.0 + pairwise(0, n)


def forces(loc: np.ndarray, coupling: np.ndarray, *,
           check_first_sim: int | None = None) -> np.ndarray:
    r"""Clipped Coulomb forces of every simulation, in the published operation order.

    Parameters
    ----------
    loc : ndarray, shape (S, 3, n)
        Positions, coordinates first (the generator's layout).
    coupling : ndarray, shape (S, n(n-1)/2)
        :func:`pair_coupling` of the charges.
    check_first_sim : int, optional
        When given, refuse (like the published generator before its first kick) a pair whose
        force size :math:`|q_i q_j| / r^3` is not above 1e-10; the value is the split index of
        ``loc[0]`` for the message.

    Returns
    -------
    ndarray, shape (S, 3, n)

    Notes
    -----
    The published code evaluates the force size on the full n x n matrix and sets its diagonal
    to 0. That matrix is exactly symmetric (:math:`|x_i|^2 + |x_j|^2` is commutative and the Gram
    matrix is symmetric), so it is evaluated here on the pairs i < j only and mirrored, which
    leaves every value unchanged and saves the costly ``pow`` on the other half.
    """
    s_count, _, n = loc.shape
    iu, ju, up, low = _pairs(n)
    sq = np.square(loc)
    # |x_i|^2 summed x, y, z left to right (NumPy's order for a 3-element reduction)
    norm = (sq[:, 0] + sq[:, 1]) + sq[:, 2]
    # the stacked X^T X goes through the same BLAS symmetric product as one simulation's
    gram = np.matmul(loc.transpose(0, 2, 1), loc).reshape(s_count, n * n)
    dist2 = (norm[:, iu] + norm[:, ju]) - 2 * gram[:, up]
    with np.errstate(divide="ignore", invalid="ignore"):
        size_pairs = coupling / np.power(dist2, 1.5)
    if check_first_sim is not None:
        smallest = np.abs(size_pairs).min(axis=1)
        _fail(~(smallest > 1e-10), check_first_sim,
              "has a force size |q_i q_j| / r^3 <= 1e-10 (or nan) at its start")
    size = np.zeros((s_count, n * n))
    size[:, up] = size_pairs
    size[:, low] = size_pairs
    size = size.reshape(s_count, n, n)

    def term(k):
        # addend j = k of F_i = sum_j size_ij (x_i - x_j), for all i at once; size is symmetric,
        # so its column k is its contiguous row k; the j = i addend is 0 * (+0.0) as published
        out = loc - loc[:, :, k:k + 1]
        out *= size[:, None, k, :]
        return out

    f = row_sum(term, n)
    # replace only what compares beyond the bound, so a nan stays the same nan, as published
    np.copyto(f, MAX_F, where=f > MAX_F)
    np.copyto(f, -MAX_F, where=f < -MAX_F)
    return f


def integrate(loc: np.ndarray, vel: np.ndarray, charges: np.ndarray, length: int,
              sample_freq: int, *, first_sim: int = 0,
              progress: Callable[[int], None] | None = None):
    """Run the published integrator on a block of simulations.

    Parameters
    ----------
    loc, vel : ndarray, shape (S, 3, n)
        Initial state after :func:`reflect_into_box` and the velocity rescaling.
    charges : ndarray, shape (S, n, 1)
    length, sample_freq : int
        Number of steps ``T`` and storage period; ``T // sample_freq - 1`` frames are stored.
    first_sim : int
        Split index of the first simulation, for error messages.
    progress : callable, optional
        Called with the number of steps done, every ``sample_freq`` steps.

    Returns
    -------
    loc_frames, vel_frames : ndarray, shape (S, T_save, 3, n)
    """
    n_frames = length // sample_freq - 1
    s_count, _, n = loc.shape
    coupling = pair_coupling(charges)
    loc_frames = np.zeros((s_count, n_frames, 3, n))
    vel_frames = np.zeros((s_count, n_frames, 3, n))
    loc = loc.copy()
    vel = vel + DT * forces(loc, coupling, check_first_sim=first_sim)
    counter = 0
    for step in range(1, length):
        loc += DT * vel
        if step % sample_freq == 0:
            loc_frames[:, counter] = loc
            vel_frames[:, counter] = vel
            counter += 1
            if progress is not None:
                progress(step)
        vel += DT * forces(loc, coupling)
    return loc_frames, vel_frames
