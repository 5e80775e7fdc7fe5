"""Random problems: orthogonal matrices, separated point clouds, batched random graphs.

Every argument is validated (errors name it), sizes are checked against memory before anything is
allocated, and no request can loop forever.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import (
    as_rng,
    check_alloc,
    check_bool,
    check_int,
    check_nonnegative,
    check_positive,
)
from ..graph import Graph, make_graph


def random_orthogonal(rng, dim: int = 3, *, proper: bool | None = None) -> np.ndarray:
    """Haar-random orthogonal ``(dim, dim)`` matrix.

    ``proper=True`` forces det +1, ``False`` det -1, ``None`` either with probability 1/2.
    ``rng`` is a ``numpy.random.Generator`` or an int seed.
    """
    rng = as_rng(rng, "rng")
    dim = check_int(dim, "dim", minimum=1)
    check_alloc((dim, dim), "dim")
    if proper is not None:
        proper = check_bool(proper, "proper")
    a = rng.normal(size=(dim, dim))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    want = proper if proper is not None else bool(rng.integers(2))
    if (np.linalg.det(q) > 0) != want:
        q[:, 0] = -q[:, 0]
    return q


def _ball_volume(dim: int, radius: float) -> float:
    return math.pi ** (dim / 2) / math.gamma(dim / 2 + 1) * radius**dim


def random_points(rng, n: int, dim: int = 3, *, min_dist: float = 0.7,
                  scale: float | None = None) -> np.ndarray:
    """``n`` points in ``[-scale, scale]^dim`` with pairwise distances ``>= min_dist``.

    Rejection sampling. With ``scale=None`` the box starts at ``max(1, 0.9 n^(1/dim))`` and grows
    by 20 % whenever ``200 (n + 1)`` draws have not placed every point, so any finite
    ``min_dist`` succeeds. With an explicit ``scale`` the box is kept: a request that cannot fit
    (``n`` balls of diameter ``min_dist`` need more volume than the box offers) is refused at
    once, and one that does not succeed within ``1000 (n + 1)`` draws raises.

    Returns
    -------
    ndarray, shape (n, dim), float64
    """
    rng = as_rng(rng, "rng")
    n = check_int(n, "n")
    dim = check_int(dim, "dim", minimum=1)
    min_dist = check_nonnegative(min_dist, "min_dist")
    check_alloc((n, dim), "n")
    fixed = scale is not None
    if fixed:
        scale = check_positive(scale, "scale")
        room = (2.0 * scale + min_dist) ** dim
        if n > 1 and min_dist > 0 and n * _ball_volume(dim, min_dist / 2) > room:
            raise ValueError(
                f"min_dist={min_dist} is impossible for n={n} points in [-{scale}, {scale}]^{dim}: "
                "balls of that diameter do not fit; lower min_dist or n, raise scale, or pass "
                "scale=None to size the box automatically"
            )
    else:
        scale = max(1.0, 0.9 * n ** (1.0 / dim))
    pts = np.empty((n, dim))
    k = tries = 0
    while k < n:
        p = rng.uniform(-scale, scale, size=dim)
        if np.all(np.linalg.norm(pts[:k] - p, axis=1) >= min_dist):
            pts[k] = p
            k += 1
        tries += 1
        if fixed and tries > 1000 * (n + 1):
            raise ValueError(
                f"random_points placed only {k} of n={n} points with min_dist={min_dist} in "
                f"[-{scale}, {scale}]^{dim} after {tries} draws; lower min_dist or n, raise "
                "scale, or pass scale=None"
            )
        if not fixed and tries > 200 * (n + 1):
            scale *= 1.2
            tries = 0
    return pts


def random_graph(rng, num_nodes: int, *, num_graphs: int = 1, avg_degree: float = 3.0,
                 isolated: bool = True, multi_edges: bool = False,
                 self_loops: bool = False) -> Graph:
    """Random directed graph(s) on ``num_nodes`` nodes split into ``num_graphs`` contiguous graphs.

    Random edges inside each graph (about ``avg_degree`` per node), optionally leaving the last
    node of each graph isolated (``isolated``), keeping duplicate edges (``multi_edges``) and
    self-loops (``self_loops``).
    """
    rng = as_rng(rng, "rng")
    num_nodes = check_int(num_nodes, "num_nodes")
    num_graphs = check_int(num_graphs, "num_graphs", minimum=1)
    avg_degree = check_nonnegative(avg_degree, "avg_degree")
    isolated = check_bool(isolated, "isolated")
    multi_edges = check_bool(multi_edges, "multi_edges")
    self_loops = check_bool(self_loops, "self_loops")
    check_alloc((num_nodes + num_graphs,), "num_nodes + num_graphs")
    check_alloc((4, int(avg_degree * num_nodes) + 1), "avg_degree * num_nodes (edges)")
    sizes = np.full(num_graphs, num_nodes // num_graphs)
    sizes[: num_nodes - sizes.sum()] += 1
    batch = np.repeat(np.arange(num_graphs), sizes)
    edges = []
    start = 0
    for s in sizes:
        usable = s - 1 if (isolated and s > 2) else s
        if usable >= 1:
            m = int(rng.poisson(avg_degree * usable))
            src = rng.integers(0, usable, size=m) + start
            dst = rng.integers(0, usable, size=m) + start
            keep = np.ones(m, bool) if self_loops else src != dst
            pairs = np.stack([src[keep], dst[keep]])
            if not multi_edges and pairs.size:
                pairs = np.unique(pairs, axis=1)
                pairs = pairs[:, rng.permutation(pairs.shape[1])]
            edges.append(pairs)
        start += s
    ei = np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), np.int64)
    return make_graph(ei.astype(np.int64), num_nodes, batch, num_graphs)
