r"""The charged N-body dataset, file for file and bit for bit the published generator's.

:func:`write_dataset` writes what the EGNN repository's
``n_body_system/dataset/generate_dataset.py`` (with ``synthetic_sim.py``) writes for the same
arguments: twelve ``.npy`` files named ``{kind}_{split}_charged{n}_initvel{0|1}{suffix}.npy`` for
``kind`` in loc, vel, edges, charges and ``split`` in train, valid, test, with

* ``loc``, ``vel``: float64 (S, T_save, 3, n), ``T_save = length // sample_freq - 1``;
* ``edges``: float64 (S, n, n), :math:`q_i q_j` (diagonal included);
* ``charges``: float64 (S, n, 1).

Published defaults: 10 000 / 2 000 / 2 000 simulations, length 5 000 steps (the test split has its
own length, 5 000 by default, which ``--length`` does not change), sample frequency 100, 5 balls,
initial velocity on, seed 42, empty suffix. The "nbody_small" set of the EGNN, SEGNN and PONITA
papers is ``--num-train 10000 --seed 43 --suffix small``.

One random stream, seeded once, feeds the splits in the order train, valid, test. How the
vectorised simulation stays bit-identical is explained in :mod:`geomp_ref.nbody.simulate`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .._validate import check_alloc, check_bool, check_int
from . import simulate

__all__ = [
    "KINDS",
    "SPLITS",
    "GeneratorConfig",
    "dataset_suffix",
    "file_name",
    "generate",
    "simulate_split",
    "write_dataset",
]

SPLITS = ("train", "valid", "test")
KINDS = ("loc", "vel", "edges", "charges")
#: Simulations integrated together; larger blocks amortise NumPy's per-call cost, smaller ones
#: keep the temporaries (S * 3 * n * n floats) in cache.
DEFAULT_BLOCK = 1000


@dataclass(frozen=True)
class GeneratorConfig:
    """Arguments of the published generator (same names, same defaults).

    Attributes
    ----------
    num_train, num_valid, num_test : int
        Simulations per split (>= 1; the published script cannot stack an empty split).
    length, length_test : int
        Steps of the train/valid trajectories and of the test trajectories; each a multiple of
        ``sample_freq`` and at least ``2 * sample_freq`` (one stored frame).
    sample_freq : int
    n_balls : int
        Particles per simulation (>= 2).
    seed : int
        In ``[0, 2**32)``, the range of ``np.random.seed``.
    initial_vel : bool
        Initial speed 0.5 per particle when true, 1e-16 when false.
    suffix : str
        Appended to the file names (the published option is spelled ``--sufix``).
    """

    num_train: int = 10000
    num_valid: int = 2000
    num_test: int = 2000
    length: int = 5000
    length_test: int = 5000
    sample_freq: int = 100
    n_balls: int = 5
    seed: int = 42
    initial_vel: bool = True
    suffix: str = ""

    def __post_init__(self):
        for name in ("num_train", "num_valid", "num_test"):
            check_int(getattr(self, name), f"GeneratorConfig.{name}", minimum=1)
        freq = check_int(self.sample_freq, "GeneratorConfig.sample_freq", minimum=1)
        for name in ("length", "length_test"):
            value = check_int(getattr(self, name), f"GeneratorConfig.{name}", minimum=1)
            if value % freq or value < 2 * freq:
                raise ValueError(
                    f"GeneratorConfig.{name} must be a multiple of sample_freq={freq} and at "
                    f"least 2 * sample_freq (so that one frame is stored); got {value}"
                )
        check_int(self.n_balls, "GeneratorConfig.n_balls", minimum=2)
        check_int(self.seed, "GeneratorConfig.seed", minimum=0, maximum=2**32 - 1)
        check_bool(self.initial_vel, "GeneratorConfig.initial_vel")
        if not isinstance(self.suffix, str):
            raise TypeError(
                f"GeneratorConfig.suffix must be a str; got {type(self.suffix).__name__}")
        if any(c in self.suffix for c in "/\\\0") or self.suffix in (".", ".."):
            raise ValueError(
                f"GeneratorConfig.suffix becomes part of a file name and must not contain '/', "
                f"'\\' or NUL; got {self.suffix!r}"
            )

    @property
    def vel_norm(self) -> float:
        """Initial speed of every particle."""
        return 0.5 if self.initial_vel else 1e-16

    def split_sizes(self) -> dict:
        """``{split: (num_sims, length)}`` in generation order."""
        return {"train": (self.num_train, self.length), "valid": (self.num_valid, self.length),
                "test": (self.num_test, self.length_test)}


def dataset_suffix(n_balls: int = 5, initial_vel: bool = True, suffix: str = "") -> str:
    """The published file-name suffix, e.g. ``"_charged5_initvel1small"``."""
    return f"_charged{int(n_balls)}_initvel{int(bool(initial_vel))}{suffix}"


def file_name(kind: str, split: str, n_balls: int = 5, initial_vel: bool = True,
              suffix: str = "") -> str:
    """File name, e.g. ``"loc_train_charged5_initvel1small.npy"`` for loc, train, "small"."""
    return f"{kind}_{split}{dataset_suffix(n_balls, initial_vel, suffix)}.npy"


def simulate_split(rs: np.random.RandomState, num_sims: int, length: int, sample_freq: int,
                   n_balls: int, vel_norm: float, *, block: int = DEFAULT_BLOCK,
                   progress=None) -> dict:
    """Simulate one split, drawing from ``rs`` exactly as the published loop does.

    Parameters
    ----------
    rs : numpy.random.RandomState
        Advanced in place by the split's draws.
    num_sims, length, sample_freq, n_balls : int
    vel_norm : float
    block : int
        Simulations integrated together (any value gives the same bits).
    progress : Progress, optional
        Receives ``update(k)`` in units of simulations.

    Returns
    -------
    dict
        ``loc``, ``vel`` (num_sims, T_save, 3, n), ``edges`` (num_sims, n, n),
        ``charges`` (num_sims, n, 1), all float64.
    """
    n_frames = length // sample_freq - 1
    check_alloc((num_sims, n_frames, 3, n_balls), "num_sims")
    out = {
        "loc": np.empty((num_sims, n_frames, 3, n_balls)),
        "vel": np.empty((num_sims, n_frames, 3, n_balls)),
        "edges": np.empty((num_sims, n_balls, n_balls)),
        "charges": np.empty((num_sims, n_balls, 1)),
    }
    for start in range(0, num_sims, block):
        count = min(block, num_sims - start)
        draws = simulate.draw_initial(rs, count, n_balls, n_frames)
        # speed rescaling: |v| summed x, y, z left to right, then v * vel_norm / |v|
        sq = np.square(draws.vel)
        speed = np.sqrt((sq[:, 0] + sq[:, 1]) + sq[:, 2])
        vel = draws.vel * vel_norm / speed[:, None, :]
        loc, vel = simulate.reflect_into_box(draws.loc, vel, first_sim=start)

        def tick(step, _count=count):
            if progress is not None:
                progress.update(_count * sample_freq / length)

        loc_frames, vel_frames = simulate.integrate(
            loc, vel, draws.charges, length, sample_freq, first_sim=start, progress=tick)
        # the published noise (times noise_var = 0) is added too: x + 0 * z keeps the bits of x
        # except that -0.0 becomes 0.0, and the draws must be consumed anyway
        out["loc"][start:start + count] = loc_frames + draws.noise_loc * 0.0
        out["vel"][start:start + count] = vel_frames + draws.noise_vel * 0.0
        out["edges"][start:start + count] = draws.charges * draws.charges.transpose(0, 2, 1)
        out["charges"][start:start + count] = draws.charges
        if progress is not None:  # account for the kick-only steps that stored no frame
            progress.update(count * (length - sample_freq * n_frames) / length)
    return out


def generate(config: GeneratorConfig | None = None, *, block: int = DEFAULT_BLOCK,
             progress=None) -> dict:
    """All three splits in memory: ``{split: {kind: array}}`` (see :func:`simulate_split`)."""
    config = GeneratorConfig() if config is None else config
    if not isinstance(config, GeneratorConfig):
        raise TypeError(f"config must be a GeneratorConfig; got {type(config).__name__}")
    block = check_int(block, "block", minimum=1)
    rs = np.random.RandomState(config.seed)
    result = {}
    for split, (num, length) in config.split_sizes().items():
        if progress is not None:
            progress.note = split
        result[split] = simulate_split(rs, num, length, config.sample_freq, config.n_balls,
                                       config.vel_norm, block=block, progress=progress)
    return result


def write_dataset(out_dir, config: GeneratorConfig | None = None, *, block: int = DEFAULT_BLOCK,
                  progress=None) -> list:
    """Generate and write the twelve ``.npy`` files into ``out_dir`` (created if missing).

    Returns
    -------
    list of str
        The written paths, in the order train, valid, test and loc, vel, edges, charges.
    """
    config = GeneratorConfig() if config is None else config
    if not isinstance(config, GeneratorConfig):
        raise TypeError(f"config must be a GeneratorConfig; got {type(config).__name__}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"out_dir {out_dir!r} exists and is not a directory")
    data = generate(config, block=block, progress=progress)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for split in SPLITS:
        for kind in KINDS:
            path = os.path.join(out_dir, file_name(kind, split, config.n_balls,
                                                   config.initial_vel, config.suffix))
            np.save(path, data[split][kind])
            paths.append(path)
    return paths
