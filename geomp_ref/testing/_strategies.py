"""Hypothesis strategies (needs the ``test`` extra)."""

from __future__ import annotations

import numpy as np

from .._validate import check_bool, check_int
from ..graph import make_graph


def graph_strategy(max_nodes: int = 8, max_edges: int = 20, max_graphs: int = 3, *,
                   self_loops: bool = False):
    """Hypothesis strategy for :class:`~geomp_ref.graph.Graph`: N and E from 0, isolated nodes,
    multi-edges, several graphs in a batch (some possibly empty)."""
    from hypothesis import strategies as st

    max_nodes = check_int(max_nodes, "max_nodes")
    max_edges = check_int(max_edges, "max_edges")
    max_graphs = check_int(max_graphs, "max_graphs", minimum=1)
    self_loops = check_bool(self_loops, "self_loops")

    @st.composite
    def build(draw):
        sizes = draw(st.lists(st.integers(0, max_nodes), min_size=1, max_size=max_graphs))
        batch = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
        n = int(sum(sizes))
        edges = []
        start = 0
        for s in sizes:
            if s:
                pairs = draw(st.lists(st.tuples(st.integers(0, s - 1), st.integers(0, s - 1)),
                                      max_size=max_edges // len(sizes)))
                for a, b in pairs:
                    if self_loops or a != b:
                        edges.append((start + a, start + b))
            start += s
        ei = np.array(edges, dtype=np.int64).T.reshape(2, -1)
        return make_graph(ei, n, batch, len(sizes))

    return build()
