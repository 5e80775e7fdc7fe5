r"""Graph topology: the one representation every layer takes.

Conventions (the documentation's conventions page, ``docs/conventions.rst``):

* ``edge_index`` is int64 of shape (2, E); row 0 is the **sender** j (``src``), row 1 the
  **receiver** i (``dst``). Messages flow ``src -> dst`` and are summed at ``dst`` (PyG's
  ``source_to_target`` flow).
* ``edge_vec = pos[src] - pos[dst]`` :math:`= x_j - x_i`. :func:`edge_vectors` and
  :func:`edge_vectors_vjp` are the only places that sign lives.
* ``num_nodes`` and ``num_graphs`` are always explicit, so isolated trailing nodes and empty graphs
  survive batching.
* The CSR orderings (stable argsort of ``dst`` and of ``src`` plus segment pointers) are computed
  once in :func:`make_graph`; backends walk them for deterministic, atomic-free sums.
* A graph is immutable. :func:`make_graph` copies every array it keeps into read-only memory that
  cannot be made writeable again, and seals the result (the ``token`` field). Kernels trust a
  sealed graph without looking at its indices; any other ``Graph`` (built by hand, or changed with
  ``_replace``) is range-checked in full by :func:`geomp_ref._validate.check_graph` before a kernel
  sees it.

Features are never stored in the graph: they are what we differentiate, topology never is.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import (
    as_float64,
    as_index,
    check_alloc,
    check_bool,
    check_graph,
    check_int,
    check_positive,
    edge_array,
    positions,
)

__all__ = [
    "Graph",
    "make_graph",
    "radius_graph",
    "complete_graph",
    "concat_graphs",
    "edge_vectors",
    "edge_vectors_vjp",
]

_FIELDS = ("edge_index", "num_nodes", "batch", "num_graphs", "dst_ptr", "dst_perm", "src_ptr",
           "src_perm")


class _Seal:
    """Proof that :func:`make_graph` built a graph: the identities of the fields it validated.

    The arrays are read-only views of ``bytes`` (no one can write them or make them writeable), so
    a graph whose fields are still these very objects still holds what was validated.
    """

    __slots__ = ("fields",)

    def __init__(self, fields: tuple):
        self.fields = fields

    def covers(self, graph) -> bool:
        return all(a is b for a, b in zip(self.fields, graph[: len(_FIELDS)]))

    def __repr__(self) -> str:
        return "<sealed by make_graph>"


class Graph(NamedTuple):
    """Directed multigraph with batch membership and CSR caches. Build it with :func:`make_graph`.

    Attributes
    ----------
    edge_index : ndarray, shape (2, E), int64, read-only
        Row 0 = sender ``src`` (j), row 1 = receiver ``dst`` (i).
    num_nodes : int
    batch : ndarray, shape (N,), int64, read-only
        Non-decreasing graph id of every node.
    num_graphs : int
    dst_ptr, dst_perm : ndarray, read-only
        CSR over receivers: edges ``dst_perm[dst_ptr[i]:dst_ptr[i+1]]`` end at node i, in
        increasing edge id (stable sort), which fixes the summation order.
    src_ptr, src_perm : ndarray, read-only
        The same over senders (used by backward passes, which aggregate onto senders).
    token : object
        Set by :func:`make_graph` only; never pass it. A ``Graph`` without a valid token is
        range-checked in full on every use.
    """

    edge_index: np.ndarray
    num_nodes: int
    batch: np.ndarray
    num_graphs: int
    dst_ptr: np.ndarray
    dst_perm: np.ndarray
    src_ptr: np.ndarray
    src_perm: np.ndarray
    token: object = None

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
        return int(np.shape(self.edge_index)[1])

    @property
    def sealed(self) -> bool:
        """True if :func:`make_graph` built this graph and none of its fields was replaced."""
        return type(self.token) is _Seal and self.token.covers(self)

    def reverse(self) -> Graph:
        """The same edges with sender and receiver swapped (caches swapped, nothing recomputed)."""
        if not self.sealed:
            self = check_graph(self, "graph")
        return _seal(_frozen(self.edge_index[::-1]), self.num_nodes, self.batch, self.num_graphs,
                     self.src_ptr, self.src_perm, self.dst_ptr, self.dst_perm)

    def in_degree(self) -> np.ndarray:
        """Number of incoming edges per node, shape (N,), int64."""
        g = self if self.sealed else check_graph(self, "graph")
        return np.diff(g.dst_ptr)

    def nodes_per_graph(self) -> np.ndarray:
        """Number of nodes in each graph, shape (num_graphs,), int64."""
        g = self if self.sealed else check_graph(self, "graph")
        return np.bincount(g.batch, minlength=g.num_graphs).astype(np.int64)

    def __repr__(self) -> str:
        return (
            f"Graph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
            f"num_graphs={self.num_graphs})"
        )

    def __reduce__(self):
        # copies and pickles of a sealed graph are rebuilt (and sealed) by make_graph
        if self.sealed:
            return (make_graph, (np.array(self.edge_index), self.num_nodes, np.array(self.batch),
                                 self.num_graphs))
        return (Graph, tuple(self))


def _frozen(a) -> np.ndarray:
    """An int64 copy of ``a`` backed by ``bytes``: read-only, and never writeable again."""
    a = np.ascontiguousarray(a, dtype=np.int64)
    return np.frombuffer(a.tobytes(), dtype=np.int64).reshape(a.shape)


def _seal(*fields) -> Graph:
    g = Graph(*fields)
    return g._replace(token=_Seal(tuple(g)[: len(_FIELDS)]))


def _csr(index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.argsort(index, kind="stable").astype(np.int64)
    counts = np.bincount(index, minlength=num_nodes)
    ptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return _frozen(ptr), _frozen(perm)


def _checked_batch(batch, num_nodes: int, name: str) -> np.ndarray:
    batch_arr = as_index(batch, name)
    if batch_arr.shape != (num_nodes,):
        raise ValueError(
            f"{name} must have shape (num_nodes,) = ({num_nodes},) (one graph id per node); "
            f"got {batch_arr.shape}"
        )
    if num_nodes and np.any(np.diff(batch_arr) < 0):
        raise ValueError(
            f"{name} must be non-decreasing (nodes of one graph contiguous); sort nodes by graph"
        )
    return batch_arr


def _build(edge_index, num_nodes, batch, num_graphs, prefix: str) -> Graph:
    num_nodes = check_int(num_nodes, prefix + "num_nodes")
    check_alloc((num_nodes + 1,), prefix + "num_nodes")
    try:
        ei = np.asarray(edge_index)
    except (ValueError, TypeError) as exc:
        raise TypeError(
            f"{prefix}edge_index must be a rectangular integer array of shape (2, E)") from exc
    if ei.ndim == 2 and ei.shape[0] == 2 and ei.shape[1] == 0:
        ei = np.zeros((2, 0), np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(
            f"{prefix}edge_index must have shape (2, E) (row 0 senders, row 1 receivers); got "
            f"{ei.shape}. If you have an (E, 2) array of pairs, pass edge_index.T"
        )
    ei = np.stack([
        as_index(ei[0], f"{prefix}edge_index[0] (senders)", size=num_nodes, size_name="num_nodes"),
        as_index(ei[1], f"{prefix}edge_index[1] (receivers)", size=num_nodes,
                 size_name="num_nodes"),
    ])
    if batch is None:
        batch_arr = np.zeros(num_nodes, dtype=np.int64)
        default_graphs = 1
    else:
        batch_arr = _checked_batch(batch, num_nodes, prefix + "batch")
        default_graphs = int(batch_arr.max()) + 1 if num_nodes else 0
    if num_graphs is None:
        num_graphs = default_graphs
    num_graphs = check_int(num_graphs, prefix + "num_graphs")
    check_alloc((num_graphs,), prefix + "num_graphs")
    if num_nodes and int(batch_arr.max()) >= num_graphs:
        raise ValueError(
            f"{prefix}num_graphs={num_graphs} is too small for batch ids up to "
            f"{int(batch_arr.max())}; pass num_graphs >= {int(batch_arr.max()) + 1}"
        )
    if ei.shape[1] and np.any(batch_arr[ei[0]] != batch_arr[ei[1]]):
        e = int(np.flatnonzero(batch_arr[ei[0]] != batch_arr[ei[1]])[0])
        raise ValueError(
            f"{prefix}edge_index connects nodes of different graphs (edge {e}: "
            f"{int(ei[0, e])} -> {int(ei[1, e])}, per batch); edges must stay inside a graph"
        )
    dst_ptr, dst_perm = _csr(ei[1], num_nodes)
    src_ptr, src_perm = _csr(ei[0], num_nodes)
    return _seal(_frozen(ei), num_nodes, _frozen(batch_arr), num_graphs, dst_ptr, dst_perm,
                 src_ptr, src_perm)


def _checked(graph: Graph, name: str) -> Graph:
    """``graph`` if sealed, else its validated, sealed rebuild (see ``_validate.check_graph``)."""
    if type(graph.token) is _Seal and graph.token.covers(graph):
        return graph
    g = _build(graph.edge_index, graph.num_nodes, graph.batch, graph.num_graphs, name + ".")
    for field in ("dst_ptr", "dst_perm", "src_ptr", "src_perm"):
        given = getattr(graph, field)
        want = getattr(g, field)
        ok = isinstance(given, np.ndarray) and given.shape == want.shape and np.array_equal(
            given, want)
        if not ok:
            raise ValueError(
                f"{name}.{field} does not match {name}.edge_index: the CSR caches must be the ones "
                "make_graph computes; build the graph with geomp_ref.make_graph instead of "
                "Graph(...) or _replace"
            )
    return g


def make_graph(edge_index, num_nodes: int, batch=None, num_graphs: int | None = None) -> Graph:
    """Validate topology and build a sealed, immutable :class:`Graph` with its CSR caches.

    Every array is copied (the caller's arrays are never kept) into read-only memory.

    Parameters
    ----------
    edge_index : array_like, shape (2, E), integer
        Row 0 senders j, row 1 receivers i. ``E = 0`` is valid (shape (2, 0)).
    num_nodes : int
        Number of nodes N (>= 0); never inferred from the indices.
    batch : array_like, shape (N,), integer, optional
        Non-decreasing graph id per node; default all zeros (one graph).
    num_graphs : int, optional
        Number of graphs B; default ``batch.max() + 1`` (1 when ``batch`` is None, also for
        N = 0). Pass it to keep trailing empty graphs.

    Raises
    ------
    TypeError, ValueError
        Non-integer indices, wrong shape, negative or out-of-range indices, decreasing ``batch``,
        sizes that cannot fit in memory.
    """
    return _build(edge_index, num_nodes, batch, num_graphs, "")


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
    self_loops = check_bool(self_loops, "self_loops")
    n = pos.shape[0]
    if pos.shape[1] == 0:
        raise ValueError(f"pos must have shape (N, D) with D >= 1; got {pos.shape}")
    batch_arr = np.zeros(n, dtype=np.int64) if batch is None else _checked_batch(batch, n, "batch")
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
        edge_index = allp[order].T
    else:
        edge_index = np.zeros((2, 0), dtype=np.int64)
    return make_graph(edge_index, n, None if batch is None else batch_arr, num_graphs)


def complete_graph(num_nodes: int, batch=None, *, self_loops: bool = False,
                   num_graphs: int | None = None) -> Graph:
    """All ordered pairs j != i (and i == i if ``self_loops``) inside each graph.

    Edges are sorted by receiver, then sender. The edge count (the sum of squared graph sizes)
    is checked against memory before anything is allocated.
    """
    num_nodes = check_int(num_nodes, "num_nodes")
    self_loops = check_bool(self_loops, "self_loops")
    check_alloc((num_nodes,), "num_nodes")
    batch_arr = (np.zeros(num_nodes, dtype=np.int64) if batch is None
                 else _checked_batch(batch, num_nodes, "batch"))
    sizes = np.diff(np.flatnonzero(np.r_[True, np.diff(batch_arr) != 0, True])) if num_nodes else []
    num_edges = sum(int(s) * (int(s) - (0 if self_loops else 1)) for s in sizes)
    check_alloc((2, num_edges), "num_nodes (a complete graph has sum of N_b^2 edges)")
    blocks, start = [], 0
    for s in map(int, sizes):
        idx = np.arange(start, start + s, dtype=np.int64)
        dst, src = np.repeat(idx, s), np.tile(idx, s)  # receiver-major, sender increasing
        keep = slice(None) if self_loops else src != dst
        blocks.append(np.stack([src[keep], dst[keep]]))
        start += s
    edge_index = np.concatenate(blocks, axis=1) if blocks else np.zeros((2, 0), np.int64)
    return make_graph(edge_index, num_nodes, None if batch is None else batch_arr, num_graphs)


def concat_graphs(graphs) -> Graph:
    """Disjoint union: node ids are offset, graph ids are offset, edges are concatenated."""
    if isinstance(graphs, (Graph, str, bytes, np.ndarray)) or not hasattr(graphs, "__iter__"):
        raise TypeError(
            f"graphs must be a list of Graph objects (built by make_graph); got "
            f"{type(graphs).__name__}"
        )
    graphs = [check_graph(g, f"graphs[{k}]") for k, g in enumerate(graphs)]
    if not graphs:
        return make_graph(np.zeros((2, 0), np.int64), 0, num_graphs=0)
    node_off = np.cumsum([0] + [g.num_nodes for g in graphs])
    graph_off = np.cumsum([0] + [g.num_graphs for g in graphs])
    ei = np.concatenate([g.edge_index + node_off[k] for k, g in enumerate(graphs)], axis=1)
    batch = np.concatenate([g.batch + graph_off[k] for k, g in enumerate(graphs)])
    return make_graph(ei, int(node_off[-1]), batch, int(graph_off[-1]))


def edge_vectors(graph: Graph, pos) -> np.ndarray:
    r"""Relative positions :math:`x_j - x_i` = ``pos[src] - pos[dst]``, shape (E, D)."""
    graph = check_graph(graph)
    pos = positions(pos, graph)
    return pos[graph.src] - pos[graph.dst]


def edge_vectors_vjp(graph: Graph, grad_edge_vec) -> np.ndarray:
    r"""VJP of :func:`edge_vectors`: ``+g`` summed at senders, ``-g`` summed at receivers.

    The gather's adjoint is a scatter-sum: :math:`\langle x_{src} - x_{dst}, g\rangle =
    \sum_e \langle x_{src_e}, g_e\rangle - \langle x_{dst_e}, g_e\rangle`, so node n receives
    :math:`\sum_{e: src_e = n} g_e - \sum_{e: dst_e = n} g_e` (``derivations/gather_scatter.py``).
    """
    graph = check_graph(graph)
    g = edge_array(grad_edge_vec, "grad_edge_vec", graph, ndim=2)
    out = np.zeros((graph.num_nodes, g.shape[1]))
    np.add.at(out, graph.src, g)
    np.add.at(out, graph.dst, -g)
    return out
