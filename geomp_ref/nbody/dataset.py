r"""Loading the charged N-body files and batching them into graphs.

Semantics of the EGNN repository's ``NBodyDataset`` (``n_body_system/dataset_nbody.py``) and of
its training script (``main_nbody.py``):

* partitions ``"train"``, ``"val"`` (files named ``valid``) and ``"test"``;
* ``max_samples`` keeps the first simulations of a file (the script passes 3 000 for train only);
* positions and velocities are transposed from the files' (S, T, 3, n) to (S, T, n, 3);
* a sample is one simulation: input positions and velocities at frame ``frame_0``, the target
  positions at frame ``frame_T``: frames 30 -> 40 for the suffix ``"small"`` ("nbody_small",
  1 000 integration steps ahead), 6 -> 8 for the empty suffix ("nbody", sample frequency 500);
* the graph is complete without self loops, receiver-major: for i = 0..n-1 the edges from every
  j != i in increasing j, graphs of a batch one after the other with node ids offset by n. In this
  library's convention (row 0 senders) that is ``edge_index = [[j...], [i...]]``;
* the edge attribute is :math:`q_i q_j` (read from the ``edges`` file), shape (E, 1); the
  ``charges`` (n, 1) are returned per node too.

The published loader converts everything to float32 (``torch.Tensor``); here arrays stay float64
unless ``float32=True``, which rounds the values to float32 (still stored as float64) so that a
model sees exactly the published inputs.

Batching: the published script uses torch's ``DataLoader`` with ``shuffle=True, drop_last=True``
for training (a fresh uniform random permutation every epoch, cut into consecutive batches, the
incomplete last batch dropped) and ``shuffle=False, drop_last=False`` for validation and test.
:meth:`NBodyDataset.batches` does the same with an explicit ``np.random.Generator``
(``rng.permutation``): the same distribution of batches and fully deterministic for a seed, but
not torch's own permutation (that would need torch's random stream).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .._validate import as_rng, check_bool, check_choice, check_int
from ..graph import Graph, make_graph
from .generate import file_name

__all__ = ["PARTITIONS", "Batch", "NBodyDataset", "complete_edges", "default_frames"]

#: Partition name -> split name in the file names.
PARTITIONS = {"train": "train", "val": "valid", "test": "test"}


def default_frames(suffix: str) -> tuple[int, int]:
    """Input and target frame of the published sets: ``"small"`` -> (30, 40), ``""`` -> (6, 8)."""
    table = {"small": (30, 40), "": (6, 8)}
    if suffix not in table:
        raise ValueError(
            f"no published frames for suffix {suffix!r} (known: 'small' -> frames 30 -> 40, "
            "'' -> frames 6 -> 8); pass frames=(input_frame, target_frame)"
        )
    return table[suffix]


def complete_edges(n: int, num_graphs: int = 1) -> np.ndarray:
    """Edge list of ``num_graphs`` complete graphs of n nodes in the published order.

    Returns
    -------
    ndarray, shape (2, num_graphs * n * (n - 1)), int64
        Row 0 senders j, row 1 receivers i; receiver-major, senders increasing, graphs
        consecutive with node offsets ``n * b``.
    """
    recv, send = np.nonzero(~np.eye(n, dtype=bool))  # row-major: i-major, j increasing
    offsets = (np.arange(num_graphs, dtype=np.int64) * n)[:, None]
    senders = (send[None] + offsets).ravel()
    receivers = (recv[None] + offsets).ravel()
    return np.stack([senders, receivers]).astype(np.int64)


class Batch(NamedTuple):
    """A batch of B simulations as one graph of B * n nodes.

    Attributes
    ----------
    graph : Graph
        B complete graphs (``graph.batch`` = simulation of each node).
    x, v : ndarray, shape (B * n, 3)
        Positions and velocities at the input frame.
    charges : ndarray, shape (B * n, 1)
    edge_attr : ndarray, shape (B * n * (n - 1), 1)
        :math:`q_i q_j` per edge, in the graph's edge order.
    target : ndarray, shape (B * n, 3)
        Positions at the target frame.
    index : ndarray, shape (B,), int64
        Simulation indices in the dataset.
    """

    graph: Graph
    x: np.ndarray
    v: np.ndarray
    charges: np.ndarray
    edge_attr: np.ndarray
    target: np.ndarray
    index: np.ndarray


class NBodyDataset:
    """One partition of a generated charged N-body dataset (see the module docstring).

    Parameters
    ----------
    data_dir : str or path
        Folder with the ``.npy`` files of :func:`geomp_ref.nbody.write_dataset`.
    partition : {"train", "val", "test"}
    suffix : str
        File-name suffix (``"small"`` for "nbody_small").
    max_samples : int, optional
        Keep the first ``max_samples`` simulations (all when None).
    frames : (int, int), optional
        Input and target frame; default :func:`default_frames` of ``suffix``.
    n_balls : int
    initial_vel : bool
        Select the file names (``_charged5_initvel1``).
    float32 : bool
        Round every value to float32 as the published loader does.

    Attributes
    ----------
    x, v, target : ndarray, shape (S, n, 3)
    charges : ndarray, shape (S, n, 1)
    edge_attr : ndarray, shape (S, n * (n - 1), 1)
    """

    def __init__(self, data_dir, partition: str = "train", *, suffix: str = "small",
                 max_samples: int | None = None, frames: tuple | None = None, n_balls: int = 5,
                 initial_vel: bool = True, float32: bool = False):
        self.partition = check_choice(partition, "partition", tuple(PARTITIONS))
        if not isinstance(suffix, str):
            raise TypeError(f"suffix must be a str; got {type(suffix).__name__}")
        self.suffix = suffix
        n_balls = check_int(n_balls, "n_balls", minimum=2)
        check_bool(initial_vel, "initial_vel")
        self.float32 = check_bool(float32, "float32")
        if max_samples is not None:
            max_samples = check_int(max_samples, "max_samples", minimum=1)
        self.max_samples = max_samples
        split = PARTITIONS[partition]
        arrays = {}
        for kind in ("loc", "vel", "edges", "charges"):
            path = os.path.join(os.fspath(data_dir), file_name(kind, split, n_balls, initial_vel,
                                                               suffix))
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} not found: generate the data first (geomp-ref nbody generate --out "
                    f"{os.fspath(data_dir)} ...) or check data_dir / suffix"
                )
            arrays[kind] = np.load(path, mmap_mode="r")[:max_samples]
        loc, vel, edges, charges = (arrays[k] for k in ("loc", "vel", "edges", "charges"))
        if loc.ndim != 4 or loc.shape[2] != 3 or loc.shape[3] != n_balls or vel.shape != loc.shape:
            raise ValueError(f"loc/vel files must have shape (S, T, 3, {n_balls}); got "
                             f"{loc.shape}, {vel.shape}")
        num = loc.shape[0]
        if edges.shape != (num, n_balls, n_balls) or charges.shape != (num, n_balls, 1):
            raise ValueError(f"edges/charges files must have shapes (S, n, n), (S, n, 1) with "
                             f"S={num}, n={n_balls}; got {edges.shape}, {charges.shape}")
        f0, f1 = default_frames(suffix) if frames is None else frames
        num_frames = loc.shape[1]
        f0 = check_int(f0, "frames[0]", maximum=num_frames - 1)
        f1 = check_int(f1, "frames[1]", maximum=num_frames - 1)
        self.frames = (f0, f1)
        self.n_balls = n_balls
        cast = self._cast
        self.x = cast(loc[:, f0].transpose(0, 2, 1))
        self.v = cast(vel[:, f0].transpose(0, 2, 1))
        self.target = cast(loc[:, f1].transpose(0, 2, 1))
        self.charges = cast(charges)
        recv, send = np.nonzero(~np.eye(n_balls, dtype=bool))
        self.edge_attr = cast(np.asarray(edges)[:, recv, send][:, :, None])
        self._graphs: dict[int, Graph] = {}

    def _cast(self, a) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.float64)
        return a.astype(np.float32).astype(np.float64) if self.float32 else a

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (f"NBodyDataset(partition={self.partition!r}, suffix={self.suffix!r}, "
                f"samples={len(self)}, frames={self.frames})")

    def graph(self, num_graphs: int) -> Graph:
        """The batched complete graph of ``num_graphs`` simulations (cached per size)."""
        num_graphs = check_int(num_graphs, "num_graphs", minimum=1)
        if num_graphs not in self._graphs:
            n = self.n_balls
            batch = np.repeat(np.arange(num_graphs, dtype=np.int64), n)
            self._graphs[num_graphs] = make_graph(complete_edges(n, num_graphs), n * num_graphs,
                                                  batch, num_graphs)
        return self._graphs[num_graphs]

    def batch(self, index) -> Batch:
        """The simulations ``index`` (in that order) as one :class:`Batch`."""
        index = np.asarray(index)
        if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"index must be a non-empty 1-D integer array; got {index!r}")
        if index.min() < 0 or index.max() >= len(self):
            raise IndexError(f"index must lie in [0, {len(self)}); got "
                             f"{index.min()}..{index.max()}")
        index = index.astype(np.int64)
        return Batch(self.graph(index.size), self.x[index].reshape(-1, 3),
                     self.v[index].reshape(-1, 3), self.charges[index].reshape(-1, 1),
                     self.edge_attr[index].reshape(-1, 1), self.target[index].reshape(-1, 3),
                     index)

    def batches(self, batch_size: int = 100, rng=None, *, shuffle: bool | None = None,
                drop_last: bool | None = None):
        """Iterate over one epoch of batches.

        Parameters
        ----------
        batch_size : int
        rng : numpy.random.Generator or int, optional
            Source of the epoch's permutation; required when shuffling.
        shuffle, drop_last : bool, optional
            Default: both true for the train partition, false otherwise (the published loaders).

        Yields
        ------
        Batch
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        train = self.partition == "train"
        shuffle = train if shuffle is None else check_bool(shuffle, "shuffle")
        drop_last = train if drop_last is None else check_bool(drop_last, "drop_last")
        if shuffle:
            if rng is None:
                raise ValueError("batches(shuffle=True) needs rng (a np.random.Generator or a "
                                 "seed): shuffling is explicit so that runs are reproducible")
            order = as_rng(rng, "rng").permutation(len(self))
        else:
            order = np.arange(len(self))
        stop = len(self) - len(self) % batch_size if drop_last else len(self)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start:start + batch_size])

    def num_batches(self, batch_size: int = 100, *, drop_last: bool | None = None) -> int:
        """Batches per epoch for :meth:`batches` with the same arguments."""
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        drop_last = (self.partition == "train") if drop_last is None else drop_last
        full, rest = divmod(len(self), batch_size)
        return full + (1 if rest and not drop_last else 0)
