r"""LieConv on SE(2) and SE(3): a kernel on the Lie algebra of the relative pose.

Nodes carry poses :math:`g_n = (R_n, x_n) \in SE(D)` (homogeneous (D+1, D+1) matrices) and
features :math:`f_n`. For the edge j -> i (sender j, receiver i) the layer computes (Finzi et al.
2020, the LieConv layer, with the lecture's sign)

.. math::

    \xi_{ij} &= \mathrm{Log}(g_i^{-1} g_j) \in \mathbb{R}^{d}
        \quad (d = 3: (\rho_1, \rho_2, \theta);\ d = 6: (\rho, \omega)), \\
    k_{ij} &= k(a_{ij}) \in \mathbb{R}^K, \qquad
    m_{ij} = \mathrm{vec}(k_{ij} \otimes f_j) \in \mathbb{R}^{K C_{in}}
        \ (\text{index } k C_{in} + c), \\
    out_i &= \Big(\mathrm{AGG}_{j \to i}\, m_{ij}\Big) W + b,

where the kernel :math:`k` is a kernel spec (:mod:`geomp_ref.layers.kernels`; default an MLP
``d -> 32 -> 32 -> 16`` with swish after every layer, the last included, which is exactly
LieConv's ``WeightNet``) and the K kernel channels are contracted with the features by one dense
map ``W`` of shape (K C_in, C_out) (LieConv's "PointConv trick").

Kernel input ``a_ij`` (``kernel_input``)
----------------------------------------
``"log"`` (default)
    :math:`a_{ij} = \xi_{ij} = \mathrm{Log}(g_i^{-1} g_j)`, translation part first (the
    library's convention; for pure translations :math:`\xi = (x_j - x_i, 0)`, the sign of
    ``edge_vec``).
``"lieconv_log"``
    LieConv's own pair coordinates: its code forms ``pair[i, j] = log(exp(-a_j) exp(a_i)) =
    Log(g_j^{-1} g_i)`` (for pure translations :math:`x_i - x_j`) and orders the algebra
    rotation first: SE(2) :math:`(\theta, \rho_1, \rho_2)`, SE(3) :math:`(\omega, \rho)`. So
    :math:`a^{LC}_{ij} = P\,\mathrm{Log}(g_j^{-1} g_i)`, with P the reordering; away from the cut
    at angle :math:`\pi` this is :math:`P(-\xi_{ij})`, and a kernel trained in LieConv satisfies
    :math:`k_{ours}(\xi) = k_{LieConv}(-P\xi)`. Both sign and order matter: with the identity
    order the weights of the kernel's first layer would be applied to the wrong coordinates.
``"given"``
    :math:`a_{ij}` is the input ``pairs`` (E, kernel.in_dim), e.g. LieConv's lifted
    ``abq_pairs[b, i, j]`` gathered per edge (with its orbit embeddings :math:`[q_i, q_j]`
    appended when the group has them); ``g`` is then not used.

Aggregation (``aggr``)
----------------------
``"mean"``: mean of the messages, then ``W``, ``b`` (isolated receivers give ``b``).
``"sum"``: sum of the messages. ``"lieconv_mean"``: LieConv's ``mean=True``, which divides the
*whole output, bias included*, by the number of neighbours:
:math:`out_i = (\sum_j m_{ij} W + b) / \max(\deg_i, 1)`.

Symmetry
--------
:math:`(Tg_i)^{-1}(Tg_j) = g_i^{-1} g_j` for every :math:`T \in SE(D)`, so the output is exactly
invariant under the left action on the poses (kind ``"pose"``); features are ``"node_scalar"``;
given pairs are ``"edge_scalar"``. For point clouds see
:class:`geomp_ref.layers.lifted_lieconv.LiftedLieConv`.

Singular points
---------------
Log is principal (rotation angle in :math:`(-\pi, \pi]` / :math:`[0, \pi]`): :math:`\xi` jumps at
relative rotation angle :math:`\pi`, so the layer is continuous there only if the kernel is
invariant under the twin map (LieConv shares this). Near angle 0 nothing is singular
(:mod:`geomp_ref.lie` evaluates the series branches).

Backward (reverse line order; proof ``derivations/lieconv.py``)
-----------------------------------------------------------------
:math:`\bar{pre} = \bar{out} / \max(\deg, 1)` (``lieconv_mean`` only),
:math:`\bar m = \mathrm{AGG}^T(\bar{pre}\, W^T)`, :math:`\bar k_{ij} = \bar m_{ij} f_j`,
:math:`\bar f_j \mathrel{+}= \bar m_{ij}^T k_{ij}`, :math:`\bar a = k^T(\bar k)` (the kernel
spec's VJP), and the pairwise-log VJP (:func:`geomp_ref.lie.se3.relative_log_vjp`):
right-trivialised gradients :math:`J_r^{-1}(\xi)^T \bar\xi` at j and
:math:`-J_l^{-1}(\xi)^T \bar\xi` at i, returned as tangent matrix gradients (their translation
columns are :math:`\partial L/\partial x` with R held fixed). ``"lieconv_log"`` applies the same
VJP with the roles of i and j swapped after undoing the reordering.

References
----------
M. Finzi, S. Stanton, P. Izmailov, A. G. Wilson, "Generalizing Convolutional Neural Networks for
Equivariance to Lie Groups on Arbitrary Continuous Data", ICML 2020 (code: mfinzi/LieConv).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_rng,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    check_params,
    edge_array,
    grad_out,
    node_array,
)
from ..graph import Graph
from ..lie import _generic, se2, se3
from ..ops import dense, scatter
from .base import Block, check_backend, check_optional
from .kernels import resolve_kernel, with_backend

__all__ = ["LieConv", "LieConvCache"]

_GROUPS = {"SE2": (2, 3, se2), "SE3": (3, 6, se3)}  # name -> (D, algebra dimension, module)
_POSE_TOL = 1e-9
#: LieConv's algebra order (rotation first) as indices into ours (translation first)
_LIECONV_ORDER = {"SE2": np.array([2, 0, 1]), "SE3": np.array([3, 4, 5, 0, 1, 2])}
_DEFAULT_KERNEL = {"kernel_hidden": (32, 32), "kernel_channels": 16, "activation": "silu",
                   "activate_last": True}


class LieConvCache(NamedTuple):
    graph: Graph
    g: np.ndarray | None  # (N, D+1, D+1) poses; None for kernel_input="given"
    a: np.ndarray  # (E, kernel.in_dim) kernel input
    k_ij: np.ndarray  # (E, K)
    kernel: tuple  # the kernel spec's cache
    f_j: np.ndarray  # (E, C_in)
    agg: np.ndarray  # (N, K * C_in)
    deg: np.ndarray | None  # (N,) max(in-degree, 1); only for aggr="lieconv_mean"


@dataclass(frozen=True)
class LieConv(Block):
    r"""Lie group convolution :math:`\mathrm{AGG}_j\, k(a_{ij}) \otimes f_j`, contracted by ``W``.

    Parameters
    ----------
    group : {"SE2", "SE3"}
    in_channels, out_channels : int
    kernel_hidden, kernel_channels, activation, activate_last : optional
        Describe the default kernel ``MLPKernel(d, kernel_channels, kernel_hidden, activation,
        activate_last)``; ``None`` takes LieConv's WeightNet values ((32, 32), 16, ``"silu"``,
        ``True``). Leave them ``None`` when passing ``kernel``.
    aggr : {"mean", "sum", "lieconv_mean"}
        See the module docstring (``"lieconv_mean"`` also divides the bias).
    backend : str
    kernel : kernel spec, optional
        Any spec of :mod:`geomp_ref.layers.kernels` with ``in_dim = d`` (``pairs.shape[1]`` for
        ``kernel_input="given"``); its ``out_dim`` is K.
    kernel_input : {"log", "lieconv_log", "given"}
        What the kernel sees (module docstring).

    ``forward(params, graph, f, g=None, pairs=None)``: ``f`` (N, C_in); ``g`` (N, D+1, D+1) for
    ``"log"``/``"lieconv_log"``; ``pairs`` (E, kernel.in_dim) for ``"given"`` -> (N, C_out).
    ``backward -> (grads, (grad_f, grad_g, grad_pairs))`` (``None`` for the input not used).
    Params: ``{"kernel": kernel params, "W": (K * C_in, C_out), "b": (C_out,)}``.
    """

    group: str
    in_channels: int
    out_channels: int
    kernel_hidden: tuple | None = None
    kernel_channels: int | None = None
    aggr: str = "mean"
    activation: str | None = None
    backend: str = "numpy"
    kernel: object = None
    activate_last: bool | None = None
    kernel_input: str = "log"

    def __post_init__(self):
        check_choice(self.group, "LieConv.group", tuple(_GROUPS))
        check_int(self.in_channels, "LieConv.in_channels", minimum=1)
        check_int(self.out_channels, "LieConv.out_channels", minimum=1)
        check_choice(self.aggr, "LieConv.aggr", ("mean", "sum", "lieconv_mean"))
        check_backend(self.backend, "LieConv")
        check_choice(self.kernel_input, "LieConv.kernel_input", ("log", "lieconv_log", "given"))
        options = {k: getattr(self, k) for k in _DEFAULT_KERNEL}
        spec = resolve_kernel(
            "LieConv", self.kernel, options, _DEFAULT_KERNEL,
            in_dim=None if self.kernel_input == "given" else self.algebra_dim,
            default_in_dim=self.algebra_dim,
        )
        object.__setattr__(self, "kernel", with_backend(spec, self.backend))  # one backend field
        if self.kernel_hidden is not None:
            object.__setattr__(self, "kernel_hidden", tuple(self.kernel_hidden))

    @property
    def dim(self) -> int:
        """D, the dimension of the space the poses act on."""
        return _GROUPS[self.group][0]

    @property
    def algebra_dim(self) -> int:
        """d, the dimension of the Lie algebra (3 for SE(2), 6 for SE(3))."""
        return _GROUPS[self.group][1]

    def param_shapes(self) -> dict:
        K = self.kernel.out_dim
        return {
            "kernel": self.kernel.param_shapes(),
            "W": (K * self.in_channels, self.out_channels),
            "b": (self.out_channels,),
        }

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        fan = self.kernel.out_dim * self.in_channels
        bound = 1.0 / np.sqrt(fan)
        return {
            "kernel": self.kernel.init(rng),
            "W": rng.uniform(-bound, bound, size=(fan, self.out_channels)),
            "b": rng.uniform(-bound, bound, size=(self.out_channels,)),
        }

    def _kernel_input(self, graph, g, pairs):
        """``(a, g)``: the kernel input per edge and the validated poses (None when unused)."""
        given = self.kernel_input == "given"
        check_optional(pairs, "pairs", given, "kernel_input='given'", "LieConv")
        check_optional(g, "g", not given, "kernel_input='log' or 'lieconv_log'", "LieConv")
        if given:
            return edge_array(pairs, "pairs", graph, self.kernel.in_dim), None
        D, d, mod = _GROUPS[self.group]
        g = node_array(g, "g", graph, (D + 1, D + 1))
        _generic.check_element(g, "g", D, True, _POSE_TOL)
        E = graph.num_edges
        if E == 0:
            return np.zeros((0, d)), g
        if self.kernel_input == "log":
            return mod.relative_log(g[graph.dst], g[graph.src]), g
        # LieConv: Log(g_j^-1 g_i), rotation first
        return mod.relative_log(g[graph.src], g[graph.dst])[:, _LIECONV_ORDER[self.group]], g

    def forward(self, params, graph, f, g=None, pairs=None):
        check_params(params, self.param_shapes(), "LieConv", exact=True)
        check_graph(graph)
        f = node_array(f, "f", graph, self.in_channels)
        a, g = self._kernel_input(graph, g, pairs)
        E, C, K = graph.num_edges, self.in_channels, self.kernel.out_dim
        k_ij, kernel_cache = self.kernel.forward(params["kernel"], a)
        f_j = f[graph.src]
        m_ij = (k_ij[:, :, None] * f_j[:, None, :]).reshape(E, K * C)
        agg_fn = scatter.aggregate_mean if self.aggr == "mean" else scatter.aggregate
        agg = agg_fn(graph, m_ij, backend=self.backend)
        out = dense.linear(agg, params["W"], params["b"])
        deg = None
        if self.aggr == "lieconv_mean":
            deg = np.maximum(graph.in_degree(), 1).astype(np.float64)
            out = out / deg[:, None]
        return out, LieConvCache(graph, g, a, k_ij, kernel_cache, f_j, agg, deg)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, LieConvCache, "LieConv")
        graph, g, _a, k_ij, kc, f_j, agg, deg = cache
        N, E = graph.num_nodes, graph.num_edges
        C, K = self.in_channels, self.kernel.out_dim
        grad = grad_out(grad_out_, (N, self.out_channels), "LieConv")
        # reverses out = out / deg (lieconv_mean: the bias is divided too)
        if deg is not None:
            grad = grad / deg[:, None]
        # reverses out = agg W + b
        grad_agg, grad_W, grad_b = dense.linear_vjp(agg, params["W"], params["b"], grad)
        # reverses agg = AGG_{j -> i} m_ij
        vjp = scatter.aggregate_mean_vjp if self.aggr == "mean" else scatter.aggregate_vjp
        grad_m = vjp(graph, None, grad_agg, backend=self.backend).reshape(E, K, C)
        # reverses m_ij = k_ij (x) f_j and f_j = f[src]
        grad_k = np.einsum("ekc,ec->ek", grad_m, f_j)
        grad_fj = np.einsum("ekc,ek->ec", grad_m, k_ij)
        grad_f = scatter.scatter_sum(grad_fj, graph.src, N, backend=self.backend)
        # reverses k_ij = kernel(a)
        grad_kernel, (grad_a,) = self.kernel.backward(params["kernel"], kc, grad_k)
        grads = {"kernel": grad_kernel, "W": grad_W, "b": grad_b}
        # reverses a = pairs / a = Log(...) (tangent matrix gradients at receivers and senders)
        if self.kernel_input == "given":
            return grads, (grad_f, None, grad_a)
        grad_g = np.zeros_like(g)
        if E:
            mod = _GROUPS[self.group][2]
            if self.kernel_input == "log":
                gi, gj = mod.relative_log_vjp(g[graph.dst], g[graph.src], grad_a)
            else:  # a = Log(g_j^-1 g_i)[order]: undo the reordering, swap the roles
                grad_xi = np.empty_like(grad_a)
                grad_xi[:, _LIECONV_ORDER[self.group]] = grad_a
                gj, gi = mod.relative_log_vjp(g[graph.src], g[graph.dst], grad_xi)
            np.add.at(grad_g, graph.dst, gi)
            np.add.at(grad_g, graph.src, gj)
        return grads, (grad_f, grad_g, None)
