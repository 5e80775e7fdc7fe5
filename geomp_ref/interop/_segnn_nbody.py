r"""The PyG ``Data`` that Steerable-E3-GNN's N-body pipeline builds, from raw N-body inputs.

The published N-body training loop (``nbody/train_nbody.py``) puts positions ``pos``, velocities
``vel`` and charges ``charges`` (gravity: masses ``mass``) of a batch of systems into one
``Data`` with the dataset's fully connected edge list and ``batch``, and its ``O3Transform``
adds, for :math:`x_{ij} = x_j - x_i` (``edge_index[0]`` is the sender j, ``edge_index[1]`` the
receiver i):

.. math::

    \texttt{x}_i &= [\,x_i - \tfrac13 \textstyle\sum_k x_{ik},\ v_i,\ \lVert v_i\rVert\,],\qquad
    \texttt{edge\_attr}_{ij} = Y(x_{ij}/\lVert x_{ij}\rVert),\\
    \texttt{node\_attr}_i &= \frac{1}{|N(i)|}\sum_{j \in N(i)} Y(x_{ij}/\lVert x_{ij}\rVert)
    + Y(v_i/\lVert v_i\rVert),\qquad
    \texttt{additional\_message\_features}_{ij} = [\,\lVert x_{ij}\rVert,\ q_i q_j\,],

with :math:`Y` the real spherical harmonics up to ``lmax_attr`` in e3nn's ``'integral'``
normalisation (a mean over no edges is 0). :func:`nbody_data` computes these with the oracle's
:class:`~geomp_ref.layers.segnn_nbody.NBodyAttributes` in ``mode="reference"`` (which also
centres each position on its own coordinate mean, as published) and returns the ``Data``. The one
difference of ``NBodyAttributes`` from the transform, column 0 of the node attribute (set to 1
there, as the published network does on every forward), is undone here: the Data holds the
transform's :math:`Y^0 (1 + [\,|N(i)| > 0\,])`, so it is exactly what the published transform
builds (with a row for every node; the transform's scatter has none for trailing nodes without
incoming edges).
"""

from __future__ import annotations

import math

import numpy as np

from .. import make_graph
from .._validate import as_float64, check_choice
from ..layers.segnn_nbody import NBodyAttributes
from ._torch import import_peer, np64

__all__ = ["nbody_data", "nbody_edges"]


def nbody_edges(batch) -> np.ndarray:
    """The published N-body edge list for a batch: in each system (consecutive equal ``batch``
    ids), every ordered pair ``(i, j)`` with ``i != j``, ``i``-major, as ``[rows, cols]``.

    Parameters
    ----------
    batch : array_like, shape (N,), int
        Non-decreasing system id of every particle.

    Returns
    -------
    ndarray, shape (2, E), int64
    """
    batch = np.asarray(batch, dtype=np.int64).reshape(-1)
    bounds = np.flatnonzero(np.diff(batch)) + 1
    blocks = []
    for idx in np.split(np.arange(batch.size, dtype=np.int64), bounds):
        rows, cols = np.repeat(idx, idx.size), np.tile(idx, idx.size)
        keep = rows != cols
        blocks.append(np.stack([rows[keep], cols[keep]]))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((2, 0), np.int64)


def nbody_data(pos, vel, charges, batch=None, edge_index=None, *, lmax_attr: int = 1,
               charge_key: str = "charges", zero_length: str = "e3nn", **fields):
    r"""The ``Data`` the published N-body loop and ``O3Transform`` build (module docstring).

    Parameters
    ----------
    pos, vel : array_like or tensor, shape (N, 3)
        Positions and velocities of all particles of the batch.
    charges : array_like or tensor, shape (N,) or (N, 1)
        Charges (gravity: masses).
    batch : array_like or tensor, shape (N,), int, optional
        Non-decreasing system id per particle (default: one system).
    edge_index : array_like or tensor, shape (2, E), int, optional
        Default: :func:`nbody_edges` (the dataset's fully connected systems).
    lmax_attr : int
        Degree of the harmonics (the published ``--lmax_attr``).
    charge_key : {'charges', 'mass'}
        Field name of ``charges`` in the Data (``'mass'`` for the gravity transform).
    zero_length : {'e3nn', 'raise'}
        A zero edge vector or velocity: e3nn's value (the transform's), or a ValueError.
    **fields
        Further fields stored as they are (e.g. ``y=loc_end``).

    Returns
    -------
    torch_geometric.data.Data
        float64 ``pos``, ``vel``, ``charges`` (or ``mass``) (N, 1), ``x`` (N, 7), ``edge_attr``
        (E, (lmax+1)^2), ``node_attr`` (N, (lmax+1)^2), ``additional_message_features``
        (E, 2); int64 ``edge_index`` and ``batch``.
    """
    torch = import_peer("torch", "nbody_data")
    data_cls = import_peer("torch_geometric.data", "nbody_data").Data
    check_choice(charge_key, "charge_key", ("charges", "mass"))
    pos = as_float64(np64(pos), "pos", ndim=2)
    vel = as_float64(np64(vel), "vel", ndim=2)
    q = as_float64(np64(charges), "charges").reshape(-1, 1)
    n = pos.shape[0]
    b = np.zeros(n, np.int64) if batch is None else np.asarray(np64(batch), np.int64)
    ei = nbody_edges(b) if edge_index is None else np.asarray(np64(edge_index), np.int64)
    graph = make_graph(ei, n, b)
    block = NBodyAttributes(lmax_attr, sh_normalization="integral", mode="reference",
                            zero_length=zero_length)
    (x, edge_attr, node_attr, msg), _ = block.forward({}, graph, pos, vel, q)
    node_attr = node_attr.copy()
    # the transform's column 0: mean of Y^0 over incoming edges (0 without any) plus Y^0(v)
    node_attr[:, 0] = (1.0 + (graph.in_degree() > 0)) / math.sqrt(4.0 * math.pi)

    def t(a, dtype=torch.float64):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

    data = data_cls(edge_index=t(ei, torch.long), pos=t(pos), vel=t(vel), x=t(x),
                    edge_attr=t(edge_attr), node_attr=t(node_attr),
                    additional_message_features=t(msg), batch=t(b, torch.long))
    data[charge_key] = t(q)
    for key, value in fields.items():
        data[key] = value
    return data
