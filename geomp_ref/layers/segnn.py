r"""SEGNN: steerable E(3)-equivariant message passing (Brandstetter et al., ICLR 2022).

Equations (receiver i, sender j, :math:`x_{ij} = x_j - x_i`; README "O(3) conventions";
reference/variants_spec.md §6). :math:`G_W(x \otimes a)` is the gated steerable layer
:class:`~geomp_ref.layers.segnn_blocks.O3TensorProductGate`, :math:`T_W(x \otimes a)` the plain
one (:class:`~geomp_ref.layers.segnn_blocks.O3TensorProduct`):

.. math::

    a_{ij} &= Y(x_{ij}/\lVert x_{ij}\rVert), \qquad
    a_i = \frac{1}{|N(i)|}\sum_{j \in N(i)} a_{ij}\ \ (\text{then } a_i^{(0)} := \text{const}),\\
    m_{ij} &= G_{W_2}\big(G_{W_1}([h_i, h_j, \lVert x_{ij}\rVert^2] \otimes a_{ij}) \otimes a_{ij}\big),
    \qquad m_i = \sum_{j} m_{ij},\\
    h_i' &= h_i + T_{W_4}\big(G_{W_3}([h_i, m_i] \otimes a_i) \otimes a_i\big)   \quad (eqs. 6–8).

``SEGNN`` = embedding :math:`T(f \otimes a_i)`, ``num_layers`` layers, then
``task="node"``: :math:`T(G(h \otimes a_i) \otimes a_i)`; ``task="graph"``: the same into
``(irreps_out x num_irreps)`` scalars, mean/sum pooling per graph, :math:`T(G(\cdot))` (an
invariant readout).

Modes (the named option ``mode``)
---------------------------------
``"reference"`` reproduces Steerable-E3-GNN (RobDHess, 1b95898): biases on every ``l = 0`` output
block including pseudoscalars ``0o`` (breaks parity), the node attribute's ``l = 0`` entry
overwritten with 1 for every node (``catch_isolated_nodes``), and, in :func:`nbody_features`,
positions centred on the mean of *their own xyz components* (``pos.mean(1)``, issue #12: breaks
rotation and translation equivariance). ``"corrected"`` biases only ``0e`` blocks, sets
:math:`a_i^{(0)} = Y^0` (the mean of a constant; also for isolated nodes) and centres on the
graph's centroid. With ``sh_normalization="component"`` the two node attributes agree.
The reference N-body setting uses ``sh_normalization="integral"`` (QM9: ``"component"``).

Backward: reverse line order; the message input's cotangent is split into :math:`\bar h_i`,
:math:`\bar h_j` and :math:`\bar s_{ij}`; :math:`\bar a_{ij}` collects both message layers and the
mean that forms :math:`a_i`; everything flows to positions through the harmonics' VJP,
:math:`\bar x_{ij} \mathrel{+}= 2\bar s_{ij} x_{ij}` and :func:`~geomp_ref.graph.edge_vectors_vjp`.
Proof: ``derivations/segnn.py``.

References
----------
J. Brandstetter, R. Hesselink, E. van der Pol, E. J. Bekkers, M. Welling, "Geometric and
Physical Quantities Improve E(3) Equivariant Message Passing", ICLR 2022, arXiv:2110.02905,
eqs. (6)–(8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import o3
from .._validate import as_float64, check_int
from ..graph import Graph
from ..ops import scatter
from .base import Block, check_backend
from .segnn_attributes import (
    SEGNNAttributes,
    nbody_features,
    segnn_attributes,
    segnn_attributes_vjp,
)
from .segnn_blocks import O3TensorProduct, O3TensorProductGate, _check_mode
from .segnn_common import SH_NORMALIZATIONS, _check_zero_length

__all__ = [
    "SEGNN",
    "SEGNNAttributes",
    "SEGNNLayer",
    "nbody_features",
    "segnn_attributes",
    "segnn_attributes_vjp",
]


def _check_common(owner, sh_normalization, mode, zero_length, backend):
    if sh_normalization not in SH_NORMALIZATIONS:
        raise ValueError(f"{owner}.sh_normalization must be one of {SH_NORMALIZATIONS}; got "
                         f"{sh_normalization!r}")
    _check_mode(mode, owner)
    _check_zero_length(zero_length)
    check_backend(backend, owner)


def _check_inputs(graph, h, pos, dim, irreps, name="h"):
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a Graph built by make_graph; got {type(graph).__name__}")
    h = as_float64(h, name, ndim=2)
    if h.shape != (graph.num_nodes, dim):
        raise ValueError(f"{name} must have shape (num_nodes, {dim}) for irreps {irreps}; got "
                         f"{h.shape}")
    pos = as_float64(pos, "pos", ndim=2)
    if pos.shape != (graph.num_nodes, 3):
        raise ValueError(f"pos must have shape (num_nodes, 3) = ({graph.num_nodes}, 3); got "
                         f"{pos.shape}")
    return h, pos


class SEGNNLayerCache(NamedTuple):
    att: Any  # SEGNNAttributes (None when the attributes were passed in)
    h: np.ndarray
    msg1: Any
    msg2: Any
    m_ij: np.ndarray
    m_i: np.ndarray
    upd1: Any
    upd2: Any


@dataclass(frozen=True)
class SEGNNLayer(Block):
    r"""One SEGNN message-passing layer (module docstring, eqs. 6–8).

    Parameters
    ----------
    irreps_hidden : Irreps or str
        Features :math:`h` (first block must be the ``0e`` scalars, e.g. ``"32x0e+32x1o"``).
    lmax_attr : int
        Degree of the steerable attributes :math:`a_{ij}, a_i`.
    mode : {'corrected', 'reference'}
    sh_normalization : {'integral', 'component', 'norm'}
    act_constants : {'e3nn', 'exact', 'none'}
    zero_length : {'raise', 'e3nn'}
    backend : str

    Notes
    -----
    ``forward(params, graph, h, pos) -> (h', cache)``; ``backward(params, cache, grad) ->
    (grads, (grad_h, grad_pos))``. Params ``{"msg1", "msg2", "upd1", "upd2"}``, each
    ``{"weight", "bias"}``.
    """

    irreps_hidden: Any
    lmax_attr: int = 1
    mode: str = "corrected"
    sh_normalization: str = "integral"
    act_constants: str = "e3nn"
    zero_length: str = "raise"
    backend: str = "numpy"
    msg1: Any = field(init=False, repr=False, compare=False)
    msg2: Any = field(init=False, repr=False, compare=False)
    upd1: Any = field(init=False, repr=False, compare=False)
    upd2: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        owner = "SEGNNLayer"
        try:
            hid = o3.Irreps(self.irreps_hidden)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{owner}.irreps_hidden must be an irreps string; got "
                             f"{self.irreps_hidden!r} ({exc})") from None
        put(self, "irreps_hidden", hid)
        check_int(self.lmax_attr, f"{owner}.lmax_attr")
        _check_common(owner, self.sh_normalization, self.mode, self.zero_length, self.backend)
        sh = o3.Irreps.spherical_harmonics(self.lmax_attr)
        msg_in = (2 * hid + o3.Irreps("1x0e")).simplify()
        upd_in = (hid + hid).simplify()
        kw = {"mode": self.mode, "act_constants": self.act_constants}
        put(self, "msg1", O3TensorProductGate(msg_in, hid, sh, **kw))
        put(self, "msg2", O3TensorProductGate(hid, hid, sh, **kw))
        put(self, "upd1", O3TensorProductGate(upd_in, hid, sh, **kw))
        put(self, "upd2", O3TensorProduct(hid, hid, sh, mode=self.mode))

    def init(self, rng: np.random.Generator) -> dict:
        return {k: getattr(self, k).init(rng) for k in ("msg1", "msg2", "upd1", "upd2")}

    def attributes(self, graph, pos) -> SEGNNAttributes:
        return segnn_attributes(graph, pos, self.lmax_attr, self.sh_normalization, self.mode,
                                self.zero_length, self.backend)

    def forward(self, params, graph, h, pos):
        h, pos = _check_inputs(graph, h, pos, self.irreps_hidden.dim, self.irreps_hidden)
        att = self.attributes(graph, pos)
        out, cache = self.forward_with_attributes(params, att, h)
        return out, cache._replace(att=att)

    def forward_with_attributes(self, params, att: SEGNNAttributes, h):
        graph = att.graph
        inp = np.concatenate([h[graph.dst], h[graph.src], att.s_ij], axis=1)
        m1, c1 = self.msg1.forward(params["msg1"], inp, att.a_ij)
        m_ij, c2 = self.msg2.forward(params["msg2"], m1, att.a_ij)
        m_i = scatter.aggregate(graph, m_ij, backend=self.backend)
        u1, c3 = self.upd1.forward(params["upd1"], np.concatenate([h, m_i], axis=1), att.a_i)
        u2, c4 = self.upd2.forward(params["upd2"], u1, att.a_i)
        return h + u2, SEGNNLayerCache(None, h, c1, c2, m_ij, m_i, c3, c4)

    def backward_with_attributes(self, params, cache: SEGNNLayerCache, graph, grad_out):
        """``(grads, grad_h, grad_a_ij, grad_a_i, grad_s_ij)``."""
        g = as_float64(grad_out, "grad_out", ndim=2)
        d = self.irreps_hidden.dim
        grads = {}
        # reverses `h + u2`, `u2 = upd2(u1, a_i)`, `u1 = upd1([h, m_i], a_i)`
        grads["upd2"], (g_u1, g_ai) = self.upd2.backward(params["upd2"], cache.upd2, g)
        grads["upd1"], (g_cat, g_ai1) = self.upd1.backward(params["upd1"], cache.upd1, g_u1)
        g_h = g + g_cat[:, :d]
        g_ai = g_ai + g_ai1
        # reverses `m_i = aggregate(m_ij)`
        g_m = scatter.aggregate_vjp(graph, cache.m_ij, g_cat[:, d:], backend=self.backend)
        # reverses `m_ij = msg2(m1, a_ij)` and `m1 = msg1(inp, a_ij)`
        grads["msg2"], (g_m1, g_aij) = self.msg2.backward(params["msg2"], cache.msg2, g_m)
        grads["msg1"], (g_inp, g_aij1) = self.msg1.backward(params["msg1"], cache.msg1, g_m1)
        g_aij = g_aij + g_aij1
        # reverses `inp = [h_i, h_j, s_ij]`
        g_h = g_h + scatter.scatter_sum(g_inp[:, :d], graph.dst, graph.num_nodes,
                                        backend=self.backend)
        g_h = g_h + scatter.scatter_sum(g_inp[:, d:2 * d], graph.src, graph.num_nodes,
                                        backend=self.backend)
        return grads, g_h, g_aij, g_ai, g_inp[:, 2 * d:]

    def backward(self, params, cache: SEGNNLayerCache, grad_out):
        att = cache.att
        grads, g_h, g_aij, g_ai, g_s = self.backward_with_attributes(params, cache, att.graph,
                                                                     grad_out)
        g_pos = segnn_attributes_vjp(att, self.lmax_attr, self.sh_normalization, g_aij, g_ai, g_s,
                                     self.backend)
        return grads, (g_h, g_pos)


class SEGNNCache(NamedTuple):
    att: SEGNNAttributes
    embed: Any
    layers: tuple
    pre1: Any
    pre2: Any
    pooled: Any
    post1: Any
    post2: Any


@dataclass(frozen=True)
class SEGNN(Block):
    r"""SEGNN network: embedding, ``num_layers`` :class:`SEGNNLayer`, node or graph readout.

    Parameters
    ----------
    irreps_in, irreps_hidden, irreps_out : Irreps or str
        ``irreps_out`` must be scalars for ``task="graph"`` (invariant readout).
    num_layers : int
    lmax_attr : int
    task : {'graph', 'node'}
    pool : {'avg', 'sum'}
    mode, sh_normalization, act_constants, zero_length, backend
        As :class:`SEGNNLayer`.

    Notes
    -----
    ``forward(params, graph, f, pos) -> (out, cache)`` with ``out`` (num_graphs, dim_out) or
    (num_nodes, dim_out); ``backward -> (grads, (grad_f, grad_pos))``. Params ``{"embed",
    "layer0", ..., "pre1", "pre2"[, "post1", "post2"]}``.
    """

    irreps_in: Any
    irreps_hidden: Any
    irreps_out: Any
    num_layers: int = 2
    lmax_attr: int = 1
    task: str = "graph"
    pool: str = "avg"
    mode: str = "corrected"
    sh_normalization: str = "integral"
    act_constants: str = "e3nn"
    zero_length: str = "raise"
    backend: str = "numpy"
    blocks: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        owner = "SEGNN"
        irr = {}
        for name in ("irreps_in", "irreps_hidden", "irreps_out"):
            try:
                irr[name] = o3.Irreps(getattr(self, name))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{owner}.{name} must be an irreps string; got "
                                 f"{getattr(self, name)!r} ({exc})") from None
            put(self, name, irr[name])
        check_int(self.num_layers, f"{owner}.num_layers")
        check_int(self.lmax_attr, f"{owner}.lmax_attr")
        _check_common(owner, self.sh_normalization, self.mode, self.zero_length, self.backend)
        if self.task not in ("graph", "node"):
            raise ValueError(f"{owner}.task must be 'graph' or 'node'; got {self.task!r}")
        if self.pool not in ("avg", "sum"):
            raise ValueError(f"{owner}.pool must be 'avg' or 'sum'; got {self.pool!r}")
        sh = o3.Irreps.spherical_harmonics(self.lmax_attr)
        hid, out = self.irreps_hidden, self.irreps_out
        kw = {"mode": self.mode}
        gkw = {"mode": self.mode, "act_constants": self.act_constants}
        blocks = {"embed": O3TensorProduct(self.irreps_in, hid, sh, **kw)}
        layer = SEGNNLayer(hid, self.lmax_attr, self.mode, self.sh_normalization,
                           self.act_constants, self.zero_length, self.backend)
        for k in range(self.num_layers):
            blocks[f"layer{k}"] = layer
        blocks["pre1"] = O3TensorProductGate(hid, hid, sh, **gkw)
        if self.task == "graph":
            if not all(ir == o3.Irrep("0e") for _, ir in out):
                raise ValueError(f"{owner}.irreps_out must be 0e scalars for task='graph' (an "
                                 f"invariant readout); got {out}")
            pooled = (out * hid.num_irreps).simplify().sort().irreps
            blocks["pre2"] = O3TensorProduct(hid, pooled, sh, **kw)
            blocks["post1"] = O3TensorProductGate(pooled, pooled, None, **gkw)
            blocks["post2"] = O3TensorProduct(pooled, out, None, **kw)
        else:
            blocks["pre2"] = O3TensorProduct(hid, out, sh, **kw)
        put(self, "blocks", blocks)

    def init(self, rng: np.random.Generator) -> dict:
        return {k: b.init(rng) for k, b in self.blocks.items()}

    def forward(self, params, graph, f, pos):
        f, pos = _check_inputs(graph, f, pos, self.irreps_in.dim, self.irreps_in, name="f")
        b = self.blocks
        layer = b.get("layer0")
        att = segnn_attributes(graph, pos, self.lmax_attr, self.sh_normalization, self.mode,
                               self.zero_length, self.backend)
        h, c_embed = b["embed"].forward(params["embed"], f, att.a_i)
        lcs = []
        for k in range(self.num_layers):
            h, c = layer.forward_with_attributes(params[f"layer{k}"], att, h)
            lcs.append(c)
        h, c_pre1 = b["pre1"].forward(params["pre1"], h, att.a_i)
        h, c_pre2 = b["pre2"].forward(params["pre2"], h, att.a_i)
        pooled = c_post1 = c_post2 = None
        if self.task == "graph":
            red = scatter.scatter_mean if self.pool == "avg" else scatter.scatter_sum
            pooled = red(h, graph.batch, graph.num_graphs, backend=self.backend)
            h, c_post1 = b["post1"].forward(params["post1"], pooled)
            h, c_post2 = b["post2"].forward(params["post2"], h)
        return h, SEGNNCache(att, c_embed, tuple(lcs), c_pre1, c_pre2, pooled, c_post1, c_post2)

    def backward(self, params, cache: SEGNNCache, grad_out):
        b = self.blocks
        att = cache.att
        graph = att.graph
        g = as_float64(grad_out, "grad_out", ndim=2)
        grads = {}
        if self.task == "graph":
            grads["post2"], (g,) = b["post2"].backward(params["post2"], cache.post2, g)
            grads["post1"], (g,) = b["post1"].backward(params["post1"], cache.post1, g)
            vjp = scatter.scatter_mean_vjp if self.pool == "avg" else scatter.scatter_sum_vjp
            # reverses the pooling (the VJPs read only the index, not the values)
            g = vjp(None, graph.batch, graph.num_graphs, g, backend=self.backend)[0]
        grads["pre2"], (g, g_ai) = b["pre2"].backward(params["pre2"], cache.pre2, g)
        grads["pre1"], (g, g_ai1) = b["pre1"].backward(params["pre1"], cache.pre1, g)
        g_ai = g_ai + g_ai1
        g_aij = np.zeros_like(att.a_ij)
        g_s = np.zeros_like(att.s_ij)
        layer = b.get("layer0")
        for k in reversed(range(self.num_layers)):
            grads[f"layer{k}"], g, ga, gi, gs = layer.backward_with_attributes(
                params[f"layer{k}"], cache.layers[k], graph, g)
            g_aij, g_ai, g_s = g_aij + ga, g_ai + gi, g_s + gs
        grads["embed"], (g_f, g_ai1) = b["embed"].backward(params["embed"], cache.embed, g)
        g_ai = g_ai + g_ai1
        g_pos = segnn_attributes_vjp(att, self.lmax_attr, self.sh_normalization, g_aij, g_ai, g_s,
                                     self.backend)
        return grads, (g_f, g_pos)
