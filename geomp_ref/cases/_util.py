"""Helpers shared by the case modules: generic random problems on point clouds and molecules."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, radius_graph
from ..testing import random_points


def num_graphs_for(num_nodes: int) -> int:
    return 2 if num_nodes >= 6 else 1


def random_cloud_graph(rng: np.random.Generator, num_nodes: int, *, dim: int = 3,
                       num_graphs: int | None = None, avg_degree: float = 4.0,
                       min_dist: float = 0.7) -> tuple[Graph, np.ndarray]:
    """Random point clouds (one per graph, minimum separation ``min_dist``) with a radius graph
    whose cutoff gives about ``avg_degree`` neighbours; returns ``(graph, pos)``."""
    B = num_graphs if num_graphs is not None else num_graphs_for(num_nodes)
    sizes = np.full(B, num_nodes // B)
    sizes[: num_nodes - sizes.sum()] += 1
    clouds = [random_points(rng, int(s), dim, min_dist=min_dist) + 50.0 * k
              for k, s in enumerate(sizes)]
    pos = np.concatenate(clouds, axis=0) if clouds else np.zeros((0, dim))
    batch = np.repeat(np.arange(B), sizes)
    # cutoff from the median k-th neighbour distance inside the graphs
    cutoff = 1.0
    if num_nodes > 1:
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        same = batch[:, None] == batch[None]
        d = np.where(same, d, np.inf)
        np.fill_diagonal(d, np.inf)
        k = int(min(avg_degree, max(1, (sizes.max() - 1))))
        kth = np.sort(d, axis=1)[:, k - 1]
        kth = kth[np.isfinite(kth)]
        cutoff = float(np.median(kth)) * 1.01 if kth.size else 1.0
    return radius_graph(pos, cutoff, batch, num_graphs=B), pos


def molecule_graph(mol, cutoff: float = 2.0) -> tuple[Graph, np.ndarray]:
    """Radius graph of a shipped molecule (bonded-ish neighbourhoods at 2 Angstrom)."""
    return radius_graph(mol.pos, cutoff), mol.pos.copy()


def cloud_features_maker(dim: int):
    """``make_inputs(rng, num_nodes) -> (graph, (f, pos))``: features of width ``dim`` on a
    :func:`random_cloud_graph`."""

    def make(rng: np.random.Generator, num_nodes: int):
        graph, pos = random_cloud_graph(rng, num_nodes)
        return graph, (rng.normal(size=(num_nodes, dim)), pos)

    return make
