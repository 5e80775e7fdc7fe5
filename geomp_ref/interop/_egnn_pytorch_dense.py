r"""egnn-pytorch's dense layout on our graphs: the :class:`DenseEGNN` block, and the graph its
neighbourhood rules select.

egnn-pytorch's ``EGNN`` works on dense batches: features (B, n, F), coordinates (B, n, D), edge
attributes (B, n, n, A), with row i receiving from column j. Our graph has the B n nodes in
order (node ``b n + i``) and one edge j -> i per pair the layer uses: every ordered pair of
valid nodes **including i = j** (egnn-pytorch always messages a node to itself), or the pairs its
neighbour selection keeps. The self message :math:`\phi_e([h_i, h_i, 0, a_{ii}])` enters the
message aggregate; its coordinate term is 0 (:math:`\Delta = 0`).

:func:`neighbour_pairs` repeats egnn-pytorch's selection with torch on the call's own tensors
(the same operations on the same values, so ties fall the same way): without ``mask`` every pair
is kept; with ``mask`` the pairs of valid nodes; with ``num_nearest_neighbors = k`` (or
``only_sparse_neighbors``) the k smallest squared distances per row, where ``adj_mat`` ranks the
node itself first (-1) and its adjacent nodes next (0), masked pairs last (1e5), and, **only when
a mask is given**, pairs ranked above ``valid_radius`` (compared with the squared distance) are
dropped. Without neighbour selection ``adj_mat`` is not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64, as_rng, check_cache, check_graph, grad_outs
from ..graph import Graph
from ..layers.base import Block, check_optional, check_params
from ..layers.egnn_layer import EGNNLayer, EGNNLayerCache

__all__ = ["DenseEGNN", "DenseEGNNCache", "neighbour_pairs"]


class DenseEGNNCache(NamedTuple):
    layer: EGNNLayerCache
    shape: tuple  # (B, n)
    pair: np.ndarray  # (E,) flat index b n n + i n + j of every edge j -> i
    had_edges: bool


@dataclass(frozen=True)
class DenseEGNN(Block):
    r"""``forward(params, graph, feats, coors, edges=None) -> ((feats', coors'), cache)`` in
    egnn-pytorch's layout: ``feats`` (B, n, F), ``coors`` (B, n, D), ``edges`` (B, n, n, A) (edge
    j -> i reads ``edges[b, i, j]``); ``graph`` has the B n nodes in order and only edges inside
    one batch element.

    Params: ``{"layer": EGNNLayer params}``. ``backward(params, cache, (grad_feats',
    grad_coors')) -> (grads, (grad_feats, grad_coors, grad_edges))``; ``grad_edges`` is 0 at the
    pairs that are not edges.
    """

    layer: EGNNLayer

    def __post_init__(self):
        if not isinstance(self.layer, EGNNLayer):
            raise TypeError(f"DenseEGNN.layer must be an EGNNLayer; got "
                            f"{type(self.layer).__name__}")
        if self.layer.velocity or self.layer.node_attr_features:
            raise ValueError("DenseEGNN.layer must not read v or node_attr")

    def param_shapes(self) -> dict:
        return {"layer": self.layer.param_shapes()}

    def init(self, rng) -> dict:
        return {"layer": self.layer.init(as_rng(rng, "rng"))}

    def forward(self, params, graph, feats, coors, edges=None):
        check_params(params, self.param_shapes(), "DenseEGNN", exact=True)
        check_graph(graph)
        feats = as_float64(feats, "feats", ndim=3)
        B, n, F = feats.shape
        if B * n != graph.num_nodes:
            raise ValueError(f"feats has B n = {B * n} nodes, the graph {graph.num_nodes}")
        coors = as_float64(coors, "coors", ndim=3)
        if coors.shape[:2] != (B, n):
            raise ValueError(f"coors must have shape ({B}, {n}, D); got {coors.shape}")
        check_optional(edges, "edges", self.layer.edge_features > 0, "edge_features > 0",
                       "DenseEGNN")
        if n and np.any(graph.src // n != graph.dst // n):
            raise ValueError("DenseEGNN: graph edges must stay inside one batch element")
        pair = graph.dst * n + graph.src % n  # = b n n + i n + j
        edge_attr = None
        if edges is not None:
            A = self.layer.edge_features
            edges = as_float64(edges, "edges", ndim=4)
            if edges.shape != (B, n, n, A):
                raise ValueError(f"edges must have shape ({B}, {n}, {n}, {A}); got {edges.shape}")
            edge_attr = edges.reshape(B * n * n, A)[pair]
        (h, x), c = self.layer.forward(params["layer"], graph, feats.reshape(B * n, F),
                                       coors.reshape(B * n, -1), None, edge_attr)
        out = (h.reshape(B, n, -1), x.reshape(B, n, -1))
        return out, DenseEGNNCache(c, (B, n), pair, edges is not None)

    def backward(self, params, cache: DenseEGNNCache, grad_out):
        check_cache(cache, DenseEGNNCache, "DenseEGNN")
        (B, n), D = cache.shape, cache.layer.diff.shape[1]
        g_h, g_x = grad_outs(grad_out, ((B, n, self.layer.out_features), (B, n, D)), "DenseEGNN")
        # (h, x) = layer(feats, coors, edge_attr) on the flattened nodes
        g_layer, (g_f, g_c, _, g_a, _) = self.layer.backward(
            params["layer"], cache.layer, (g_h.reshape(B * n, -1), g_x.reshape(B * n, D))
        )
        # edge_attr = edges[pair]: scatter back, zero at the pairs that are not edges
        g_edges = None
        if cache.had_edges:
            A = self.layer.edge_features
            g_edges = np.zeros((B * n * n, A))
            np.add.at(g_edges, cache.pair, g_a)
            g_edges = g_edges.reshape(B, n, n, A)
        return {"layer": g_layer}, (g_f.reshape(B, n, -1), g_c.reshape(B, n, D), g_edges)


def neighbour_pairs(torch, module, coors, mask=None, adj_mat=None):
    """``(i, j, slot)`` index arrays (B, ...) of the pairs egnn-pytorch's ``EGNN`` uses, flat over
    the batch: ``b``, receiver ``i``, sender ``j``, and the position of the pair in the peer's
    (B, n, J, .) message tensors (J = n, or k with neighbour selection).

    The selection runs in torch on ``coors``, ``mask`` and ``adj_mat`` exactly as the peer's
    forward does it.
    """
    b, n = coors.shape[:2]
    k = int(module.num_nearest_neighbors)
    radius = module.valid_radius
    sparse = bool(module.only_sparse_neighbors)
    with torch.no_grad():
        rel = coors[:, :, None, :] - coors[:, None, :, :]
        dist = (rel ** 2).sum(dim=-1, keepdim=True)[..., 0]
        if not (k > 0 or sparse):
            bb, ii, jj = np.meshgrid(np.arange(b), np.arange(n), np.arange(n), indexing="ij")
            keep = np.ones((b, n, n), dtype=bool)
            if mask is not None:
                m = mask.cpu().numpy().astype(bool)
                keep = m[:, :, None] & m[:, None, :]
            slot = jj
        else:
            ranking = dist.clone()
            if mask is not None:
                ranking.masked_fill_(~(mask[:, :, None] * mask[:, None, :]), 1e5)
            if adj_mat is not None:
                adj = adj_mat.clone()
                if adj.dim() == 2:
                    adj = adj[None].expand(b, n, n)
                if sparse:
                    k = int(adj.float().sum(dim=-1).max().item())
                    radius = 0
                eye = torch.eye(n, dtype=torch.bool)[None]
                adj = adj.masked_fill(eye, False)
                ranking.masked_fill_(eye, -1.0)
                ranking.masked_fill_(adj, 0.0)
            rank, idx = ranking.topk(k, dim=-1, largest=False)
            bb, ii, slot = np.meshgrid(np.arange(b), np.arange(n), np.arange(k), indexing="ij")
            jj = idx.cpu().numpy()
            keep = np.ones((b, n, k), dtype=bool)
            if mask is not None:
                m = mask.cpu().numpy().astype(bool)
                keep = m[:, :, None] & m[bb, jj] & (rank.cpu().numpy() <= radius)
    width = slot.shape[-1]
    flat_slot = (bb * n + ii) * width + slot
    return bb[keep], ii[keep], jj[keep], flat_slot[keep], width


def pair_graph(bb, ii, jj, b: int, n: int) -> Graph:
    """Our graph over the B n nodes with the edges j -> i of the kept pairs."""
    from ..graph import make_graph

    src, dst = bb * n + jj, bb * n + ii
    batch = np.repeat(np.arange(b), n)
    return make_graph(np.stack([src, dst]).astype(np.int64), b * n, batch, num_graphs=b)
