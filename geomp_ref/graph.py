r"""Graph topology: the one representation every layer takes.

Conventions (README table "Graphs"):

* ``edge_index`` is int64 of shape (2, E); row 0 is the **sender** j (``src``), row 1 the
  **receiver** i (``dst``). Messages flow ``src -> dst`` and are summed at ``dst`` (PyG's
  ``source_to_target`` flow).
* ``edge_vec = pos[src] - pos[dst]`` :math:`= x_j - x_i`. :func:`edge_vectors` and
  :func:`edge_vectors_vjp` are the only places that sign lives.
* ``num_nodes`` and ``num_graphs`` are always explicit, so isolated trailing nodes and empty graphs
  survive batching.
* The CSR orderings (stable argsort of ``dst`` and of ``src`` plus segment pointers) are computed
  once in :func:`make_graph`; backends walk them for deterministic, atomic-free sums.

Features are never stored in the graph: they are what we differentiate, topology never is.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import as_float64, as_index, check_int, check_positive

__all__ = [
    "Graph",
    "make_graph",
    "radius_graph",
    "complete_graph",
    "concat_graphs",
    "edge_vectors",
    "edge_vectors_vjp",
]


class Graph(NamedTuple):
    """Directed multigraph with batch membership and CSR caches. Build it with :func:`make_graph`.

    Attributes
    ----------
    edge_index : ndarray, shape (2, E), int64
        Row 0 = sender ``src`` (j), row 1 = receiver ``dst`` (i).
    num_nodes : int
    batch : ndarray, shape (N,), int64
        Non-decreasing graph id of every node.
    num_graphs : int
    dst_ptr, dst_perm : ndarray
        CSR over receivers: edges ``dst_perm[dst_ptr[i]:dst_ptr[i+1]]`` end at node i, in
        increasing edge id (stable sort), which fixes the summation order.
    src_ptr, src_perm : ndarray
        The same over senders (used by backward passes, which aggregate onto senders).
    """

    edge_index: np.ndarray
    num_nodes: int
    batch: np.ndarray
    num_graphs: int
    dst_ptr: np.ndarray
    dst_perm: np.ndarray
    src_ptr: np.ndarray
    src_perm: np.ndarray

    @property
    def src(self) -> np.ndarray:
        """Senders j, shape (E,)."""
        return self.edge_index[0]

    @property
    def dst(self) -> np.ndarray:
        """Receivers i, shape (E,)."""
        return self.edge_index[1]

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def reverse(self) -> "Graph":
        """The same edges with sender and receiver swapped (caches swapped, nothing recomputed)."""
        return Graph(
            edge_index=self.edge_index[::-1].copy(),
            num_nodes=self.num_nodes,
            batch=self.batch,
            num_graphs=self.num_graphs,
            dst_ptr=self.src_ptr,
            dst_perm=self.src_perm,
            src_ptr=self.dst_ptr,
            src_perm=self.dst_perm,
        )

    def in_degree(self) -> np.ndarray:
        """Number of incoming edges per node, shape (N,), int64."""
        return np.diff(self.dst_ptr)

    def nodes_per_graph(self) -> np.ndarray:
        """Number of nodes in each graph, shape (num_graphs,), int64."""
        return np.bincount(self.batch, minlength=self.num_graphs).astype(np.int64)

    def __repr__(self) -> str:
        return (
            f"Graph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
            f"num_graphs={self.num_graphs})"
        )


def _csr(index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.argsort(index, kind="stable").astype(np.int64)
    counts = np.bincount(index, minlength=num_nodes)
    ptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, perm


def make_graph(edge_index, num_nodes: int, batch=None, num_graphs: int | None = None) -> Graph:
    """Validate topology and build a :class:`Graph` with its CSR caches.

    Parameters
    ----------
    edge_index : array_like, shape (2, E), integer
        Row 0 senders j, row 1 receivers i. ``E = 0`` is valid (shape (2, 0)).
    num_nodes : int
        Number of nodes N (>= 0); never inferred from the indices.
    batch : array_like, shape (N,), integer, optional
        Non-decreasing graph id per node; default all zeros (one graph).
    num_graphs : int, optional
        Number of graphs B; default ``batch.max() + 1`` (1 for ``batch=None``, 0 when N = 0 and
        no batch is given). Pass it to keep trailing empty graphs.

    Raises
    ------
    TypeError, ValueError
        Non-integer indices, wrong shape, negative or out-of-range indices, decreasing ``batch``.
    """
    num_nodes = check_int(num_nodes, "num_nodes")
    ei = np.asarray(edge_index)
    if ei.ndim == 2 and ei.shape[0] == 2 and ei.shape[1] == 0:
        ei = ei.astype(np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(
            f"edge_index must have shape (2, E) (row 0 senders, row 1 receivers); got {ei.shape}. "
            "If you have an (E, 2) array of pairs, pass edge_index.T"
        )
    ei = np.stack(
        [as_index(ei[0], "edge_index[0] (senders)", size=num_nodes),
         as_index(ei[1], "edge_index[1] (receivers)", size=num_nodes)]
    )
    if batch is None:
        batch_arr = np.zeros(num_nodes, dtype=np.int64)
        default_graphs = 1 if num_nodes > 0 else (1 if num_graphs is None else num_graphs)
    else:
        batch_arr = as_index(batch, "batch")
        if batch_arr.shape != (num_nodes,):
            raise ValueError(f"batch must have shape (num_nodes,) = ({num_nodes},); got {batch_arr.shape}")
        if num_nodes and np.any(np.diff(batch_arr) < 0):
            raise ValueError("batch must be non-decreasing (nodes of one graph contiguous); sort nodes by graph")
        default_graphs = int(batch_arr.max()) + 1 if num_nodes else 0
    if num_graphs is None:
        num_graphs = default_graphs
    num_graphs = check_int(num_graphs, "num_graphs")
    if num_nodes and int(batch_arr.max()) >= num_graphs:
        raise ValueError(
            f"num_graphs={num_graphs} is too small for batch ids up to {int(batch_arr.max())}"
        )
    if ei.shape[1] and np.any(batch_arr[ei[0]] != batch_arr[ei[1]]):
        raise ValueError("edge_index connects nodes of different graphs (per batch); edges must stay inside a graph")
    dst_ptr, dst_perm = _csr(ei[1], num_nodes)
    src_ptr, src_perm = _csr(ei[0], num_nodes)
    return Graph(ei, num_nodes, batch_arr, int(num_graphs), dst_ptr, dst_perm, src_ptr, src_perm)


def radius_graph(pos, cutoff: float, batch=None, *, self_loops: bool = False,
                 num_graphs: int | None = None) -> Graph:
    """All ordered pairs (j -> i) with ``|x_j - x_i| <= cutoff`` inside each graph.

    Both directions of every pair are present, no neighbour cap is applied, and pairs never cross
    graphs. Edges are sorted by receiver, then sender, so the result is deterministic.

    Parameters
    ----------
    pos : array_like, shape (N, D), float
    cutoff : float, > 0
    batch : array_like, shape (N,), integer, optional
    self_loops : bool
        Include ``i -> i`` edges.
    """
    pos = as_float64(pos, "pos", ndim=2)
    cutoff = check_positive(cutoff, "cutoff")
    n = pos.shape[0]
    if batch is None:
        batch_arr = np.zeros(n, dtype=np.int64)
    else:
        batch_arr = as_index(batch, "batch")
        if batch_arr.shape != (n,):
            raise ValueError(f"batch must have shape (N,) = ({n},); got {batch_arr.shape}")
        if n and np.any(np.diff(batch_arr) < 0):
            raise ValueError("batch must be non-decreasing (nodes of one graph contiguous)")
    pairs = []
    if n:
        from scipy.spatial import cKDTree

        bounds = np.flatnonzero(np.diff(batch_arr)) + 1
        starts = np.concatenate([[0], bounds])
        stops = np.concatenate([bounds, [n]])
        for a, b in zip(starts, stops):
            tree = cKDTree(pos[a:b])
            p = tree.query_pairs(cutoff, output_type="ndarray").astype(np.int64)
            if p.size:
                pairs.append(p + a)
                pairs.append(p[:, ::-1] + a)
            if self_loops:
                idx = np.arange(a, b, dtype=np.int64)
                pairs.append(np.stack([idx, idx], axis=1))
    if pairs:
        allp = np.concatenate(pairs, axis=0)
        order = np.lexsort((allp[:, 0], allp[:, 1]))
        edge_index = allp[order].T.copy()
    else:
        edge_index = np.zeros((2, 0), dtype=np.int64)
    return make_graph(edge_index, n, batch_arr if batch is not None else None, num_graphs)


def complete_graph(num_nodes: int, batch=None, *, self_loops: bool = False,
                   num_graphs: int | None = None) -> Graph:
    """All ordered pairs j != i (and i == i if ``self_loops``) inside each graph."""
    num_nodes = check_int(num_nodes, "num_nodes")
    batch_arr = np.zeros(num_nodes, dtype=np.int64) if batch is None else as_index(batch, "batch")
    if batch_arr.shape != (num_nodes,):
        raise ValueError(f"batch must have shape ({num_nodes},); got {batch_arr.shape}")
    if num_nodes and np.any(np.diff(batch_arr) < 0):
        raise ValueError("batch must be non-decreasing (nodes of one graph contiguous)")
    same = batch_arr[:, None] == batch_arr[None, :]
    if not self_loops:
        np.fill_diagonal(same, False)
    dst, src = np.nonzero(same)  # row-major: receiver-major, sender increasing
    edge_index = np.stack([src, dst]).astype(np.int64)
    return make_graph(edge_index, num_nodes, None if batch is None else batch_arr, num_graphs)


def concat_graphs(graphs) -> Graph:
    """Disjoint union: node ids are offset, graph ids are offset, edges are concatenated."""
    graphs = list(graphs)
    if not graphs:
        return make_graph(np.zeros((2, 0), np.int64), 0, num_graphs=0)
    for k, g in enumerate(graphs):
        if not isinstance(g, Graph):
            raise TypeError(f"graphs[{k}] must be a Graph built by make_graph; got {type(g).__name__}")
    node_off = np.cumsum([0] + [g.num_nodes for g in graphs])
    graph_off = np.cumsum([0] + [g.num_graphs for g in graphs])
    ei = np.concatenate([g.edge_index + node_off[k] for k, g in enumerate(graphs)], axis=1)
    batch = np.concatenate([g.batch + graph_off[k] for k, g in enumerate(graphs)])
    return make_graph(ei, int(node_off[-1]), batch, int(graph_off[-1]))


def edge_vectors(graph: Graph, pos) -> np.ndarray:
    r"""Relative positions :math:`x_j - x_i` = ``pos[src] - pos[dst]``, shape (E, D)."""
    pos = as_float64(pos, "pos", ndim=2)
    if pos.shape[0] != graph.num_nodes:
        raise ValueError(f"pos must have shape (num_nodes, D) = ({graph.num_nodes}, D); got {pos.shape}")
    return pos[graph.src] - pos[graph.dst]


def edge_vectors_vjp(graph: Graph, grad_edge_vec) -> np.ndarray:
    r"""VJP of :func:`edge_vectors`: ``+g`` summed at senders, ``-g`` summed at receivers.

    Derivation: derivations/gather_scatter.py (the gather's adjoint is a scatter-sum).
    """
    g = np.asarray(grad_edge_vec, dtype=np.float64)
    d = g.shape[1] if g.ndim == 2 else 0
    out = np.zeros((graph.num_nodes, d))
    np.add.at(out, graph.src, g)
    np.add.at(out, graph.dst, -g)
    return out
