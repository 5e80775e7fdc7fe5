r"""Instance normalisation of irreps features per graph (SEGNN's ``InstanceNorm``), with its VJP.

Equations
---------
For every block ``(mul, l)`` of ``irreps`` (``d = 2l + 1`` components) and every graph ``g`` of the
batch with node set :math:`V_g`, field :math:`u` of node :math:`i` is :math:`f_{iu} \in
\mathbb R^d`. Scalars (``l = 0``, ``0o`` included) are first centred on their graph mean,

.. math::

    f_{iu} \leftarrow f_{iu} - \frac{1}{|V_g|}\sum_{j \in V_g} f_{ju}\quad (l = 0),\qquad
    q_{iu} = \frac{1}{d}\lVert f_{iu}\rVert^2\ (\texttt{'component'}),\ \
    \lVert f_{iu}\rVert^2\ (\texttt{'norm'}),

then every field is divided by the root of its graph mean, with an affine weight per field
(``weight``, one per irrep copy, init 1) and a bias per scalar field (``bias``, init 0):

.. math::

    \sigma_{gu} = \Big(\frac{1}{|V_g|}\sum_{j \in V_g} q_{ju} + \epsilon\Big)^{-1/2},\qquad
    y_{iu} = w_u\, \sigma_{gu}\, f_{iu} + b_u\,[d = 1].

This is Steerable-E3-GNN's ``InstanceNorm`` with its defaults (``reduce='mean'``, ``eps=1e-5``,
``affine=True``); ``reduce='max'`` is not offered. The norm of a field is invariant under O(3)
(Wigner matrices are orthogonal), and the mean of pseudoscalars is a pseudoscalar, so the map is
equivariant, except for the bias on ``0o`` fields: ``mode="reference"`` adds it as the published
code does (a bias on every ``l = 0`` field), ``mode="corrected"`` biases only ``0e`` fields.

VJP (reverse order; :math:`\bar y` the cotangent, sums over the nodes of each graph):
:math:`\bar b_u = \sum_i \bar y_{iu}`; with :math:`s_{gu} = w_u \sigma_{gu}`,
:math:`\bar s_{gu} = \sum_{i \in V_g} \langle \bar y_{iu}, f_{iu}\rangle`,
:math:`\bar w_u = \sum_g \bar s_{gu} \sigma_{gu}`,
:math:`\bar q_{iu} = -\tfrac12 w_u \bar s_{gu} \sigma_{gu}^3 / |V_g|`,
:math:`\bar f_{iu} = s_{gu} \bar y_{iu} + \bar q_{iu}\, 2 f_{iu}/d` (``'norm'``: without
:math:`1/d`), and for scalars the centring reverses into
:math:`\bar x_{iu} = \bar f_{iu} - \frac{1}{|V_g|}\sum_{j \in V_g} \bar f_{ju}`
(``derivations/segnn.py`` checks it symbolically).

References
----------
J. Brandstetter et al., "Geometric and Physical Quantities Improve E(3) Equivariant Message
Passing", ICLR 2022 (published code: ``models/segnn/instance_norm.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._validate import (
    as_rng,
    check_bool,
    check_cache,
    check_choice,
    check_graph,
    check_params,
    check_positive,
    node_array,
)
from .._validate import grad_out as _grad_out
from ..ops import scatter
from .base import Block, check_backend
from .segnn_blocks import _irreps, check_mode

__all__ = ["InstanceNorm", "InstanceNormCache"]


class InstanceNormCache(NamedTuple):
    """``graph``; per block the centred fields ``fs`` (N, mul, d), the graph factors ``sigmas``
    (B, mul) before the weight and the node counts ``count`` (B, 1)."""

    graph: Any
    fs: tuple
    sigmas: tuple
    count: np.ndarray


@dataclass(frozen=True)
class InstanceNorm(Block):
    r"""Per-graph instance normalisation of irreps features (module docstring).

    Parameters
    ----------
    irreps : Irreps or str
    eps : float
        Added to the mean squared norm before the square root (published default 1e-5).
    affine : bool
        Learn ``weight`` (one per irrep copy) and ``bias`` (one per biased scalar field).
    normalization : {'component', 'norm'}
        Mean or sum of the squared components of a field.
    mode : {'corrected', 'reference'}
        Bias on ``0e`` fields only, or on every ``l = 0`` field (``0o`` included).
    backend : str
        Backend of the per-graph sums.

    Notes
    -----
    ``param_shapes() -> {"weight": (num_irreps,), "bias": (num_bias,)}`` (``{}`` without
    ``affine``); ``forward(params, graph, x) -> (y, cache)`` with ``x`` (N, irreps.dim);
    ``backward(params, cache, grad_out) -> (grads, (grad_x,))``.
    """

    irreps: Any
    eps: float = 1e-5
    affine: bool = True
    normalization: str = "component"
    mode: str = "corrected"
    backend: str = "numpy"
    _plan: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        irreps = _irreps(self.irreps, "InstanceNorm.irreps")
        object.__setattr__(self, "irreps", irreps)
        check_positive(self.eps, "InstanceNorm.eps")
        check_bool(self.affine, "InstanceNorm.affine")
        check_choice(self.normalization, "InstanceNorm.normalization", ("component", "norm"))
        check_mode(self.mode, "InstanceNorm")
        check_backend(self.backend, "InstanceNorm")
        plan, iw, ib = [], 0, 0
        for (mul, ir), sl in zip(irreps, irreps.slices()):
            biased = ir.l == 0 and (ir.p == 1 or self.mode == "reference")
            plan.append((sl, mul, ir.dim, ir.l == 0, slice(iw, iw + mul),
                         slice(ib, ib + mul) if biased else None))
            iw += mul
            ib += mul if biased else 0
        object.__setattr__(self, "_plan", (tuple(plan), iw, ib))

    def param_shapes(self) -> dict:
        if not self.affine:
            return {}
        _, nw, nb = self._plan
        return {"weight": (nw,), "bias": (nb,)}

    def init(self, rng) -> dict:
        """``weight`` ones and ``bias`` zeros, as the published code."""
        as_rng(rng, "rng")
        return {k: (np.ones(s) if k == "weight" else np.zeros(s))
                for k, s in self.param_shapes().items()}

    def forward(self, params, graph, x):
        check_params(params, self.param_shapes(), "InstanceNorm", exact=True)
        graph = check_graph(graph)
        x = node_array(x, "x", graph, self.irreps.dim)
        batch, B, n = graph.batch, graph.num_graphs, x.shape[0]
        count = np.maximum(graph.nodes_per_graph(), 1).astype(np.float64)[:, None]
        plan, _, _ = self._plan
        y = np.empty_like(x)
        fs, sigmas = [], []
        for sl, mul, d, scalar, slw, slb in plan:
            f = x[:, sl].reshape(n, mul, d)
            if scalar:  # centre scalars on their graph mean
                mean = scatter.scatter_sum(f[:, :, 0], batch, B, backend=self.backend) / count
                f = f - mean[batch][:, :, None]
            q = np.sum(f * f, axis=2)
            if self.normalization == "component":
                q = q / d
            sigma = (scatter.scatter_sum(q, batch, B, backend=self.backend) / count
                     + self.eps) ** -0.5
            s = sigma * params["weight"][slw] if self.affine else sigma
            out = f * s[batch][:, :, None]
            if self.affine and slb is not None:
                out = out + params["bias"][slb][None, :, None]
            y[:, sl] = out.reshape(n, mul * d)
            fs.append(f)
            sigmas.append(sigma)
        return y, InstanceNormCache(graph, tuple(fs), tuple(sigmas), count)

    def backward(self, params, cache: InstanceNormCache, grad_out):
        check_cache(cache, InstanceNormCache, "InstanceNorm")
        graph = cache.graph
        batch, B, n = graph.batch, graph.num_graphs, graph.num_nodes
        g = _grad_out(grad_out, (n, self.irreps.dim), "InstanceNorm")
        plan, nw, nb = self._plan
        grads = {"weight": np.zeros(nw), "bias": np.zeros(nb)} if self.affine else {}
        grad_x = np.empty_like(g)
        for (sl, mul, d, scalar, slw, slb), f, sigma in zip(plan, cache.fs, cache.sigmas):
            gy = g[:, sl].reshape(n, mul, d)
            # reverses `out = out + b`
            if self.affine and slb is not None:
                grads["bias"][slb] = gy[:, :, 0].sum(axis=0)
            w = params["weight"][slw] if self.affine else 1.0
            # reverses `out = f * s[batch]`
            gs = scatter.scatter_sum(np.sum(gy * f, axis=2), batch, B, backend=self.backend)
            gf = gy * (sigma * w)[batch][:, :, None]
            # reverses `s = sigma * w`
            if self.affine:
                grads["weight"][slw] = np.sum(gs * sigma, axis=0)
            # reverses `sigma = (sum_g q / count + eps)^-1/2`
            gq = (-0.5 * gs * w * sigma ** 3 / cache.count)[batch]
            # reverses `q = sum_m f^2 (/ d)`
            gf = gf + (2.0 / d if self.normalization == "component" else 2.0) * gq[:, :, None] * f
            # reverses `f = f - mean[batch]` (scalars)
            if scalar:
                gmean = scatter.scatter_sum(gf[:, :, 0], batch, B, backend=self.backend)
                gf = gf - (gmean / cache.count)[batch][:, :, None]
            grad_x[:, sl] = gf.reshape(n, mul * d)
        return grads, (grad_x,)
