r"""SEGNN: steerable E(3)-equivariant message passing (Brandstetter et al., ICLR 2022).

Equations (receiver i, sender j, :math:`x_{ij} = x_j - x_i`; irreps in e3nn's layout).
:math:`G_W(x \otimes a)` is the gated steerable layer
:class:`~geomp_ref.layers.segnn_blocks.O3TensorProductGate`, :math:`T_W(x \otimes a)` the plain
one (:class:`~geomp_ref.layers.segnn_blocks.O3TensorProduct`); :math:`a_{ij}` are the edge
attributes, :math:`a_i` the node attributes and :math:`s_{ij}` the extra message features
(:mod:`geomp_ref.layers.segnn_attributes`: computed from positions or given):

.. math::

    m_{ij} &= G_{W_2}\big(G_{W_1}([h_i, h_j, s_{ij}] \otimes a_{ij}) \otimes a_{ij}\big),
    \qquad m_i = \sum_{j} m_{ij},\\
    h_i' &= \mathrm{N}\Big(h_i + T_{W_4}\big(G_{W_3}([h_i, m_i] \otimes a_i) \otimes a_i\big)\Big)
    \quad (\text{eqs. 6-8}),

with :math:`\mathrm{N}` the identity (``norm=None``) or the per-graph
:class:`~geomp_ref.layers.segnn_norm.InstanceNorm` (``norm="instance"``). ``SEGNN`` = embedding
:math:`T(f \otimes a_i)`, ``num_layers`` layers (one :class:`SEGNNLayer` spec, separate weights),
then ``task="node"``: :math:`T(G(h \otimes a_i) \otimes a_i)` into ``irreps_out``;
``task="graph"``: the same into ``(irreps_out x num_irreps(hidden))`` sorted, mean
(``pool="avg"``) or sum pooling per graph, then :math:`T(G(\cdot))` without attributes. This is
Steerable-E3-GNN's ``SEGNN`` (RobDHess, commit 1b95898) with every option of its constructor
except ``norm="batch"``.

Modes (``mode``): ``"reference"`` reproduces the published code, including its parity breaks:
biases on pseudoscalar (``0o``) blocks, the gate reading an unsorted product output (see
:mod:`geomp_ref.layers.segnn_blocks`), the node attribute's column 0 set to 1; ``"corrected"``
biases only ``0e`` blocks and feeds the gate its own layout (equivariant for any hidden irreps
whose first block is ``0e``).

Backward: reverse line order; the message input's cotangent splits into :math:`\bar h_i`,
:math:`\bar h_j` and :math:`\bar s_{ij}`; the attributes' cotangents collect every layer before
reaching positions or the attribute inputs (``derivations/segnn.py``).

References
----------
J. Brandstetter, R. Hesselink, E. van der Pol, E. J. Bekkers, M. Welling, "Geometric and
Physical Quantities Improve E(3) Equivariant Message Passing", ICLR 2022, arXiv:2110.02905,
eqs. (6)-(8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import o3
from .._validate import (
    as_rng,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    check_params,
    node_array,
)
from .._validate import grad_out as _grad_out
from ..o3.spherical_harmonics import LMAX as _SH_LMAX
from ..ops import scatter
from .base import Block
from .segnn_attributes import (
    EDGE_ATTR,
    MESSAGE_FEATURES,
    NODE_ATTR,
    SH_NORMALIZATIONS,
    segnn_attributes,
    segnn_attributes_vjp,
)
from .segnn_blocks import O3TensorProduct, O3TensorProductGate, _irreps
from .segnn_layer import SEGNNLayer, SEGNNLayerCache, check_hidden

__all__ = ["SEGNN", "SEGNNCache", "SEGNNLayer", "SEGNNLayerCache"]


class SEGNNReadoutCache(NamedTuple):
    """The graph task's pooled branch: caches of ``post1`` and ``post2``."""

    post1: Any
    post2: Any


class SEGNNCache(NamedTuple):
    """``graph``, the attributes' cache ``att`` and the caches of every block in order."""

    graph: Any
    att: Any
    embed: Any
    layers: tuple
    pre1: Any
    pre2: Any
    readout: Any  # SEGNNReadoutCache, None for task="node"


@dataclass(frozen=True)
class SEGNN(Block):
    r"""SEGNN network: embedding, ``num_layers`` :class:`SEGNNLayer`, node or graph readout.

    Parameters
    ----------
    irreps_in, irreps_hidden, irreps_out : Irreps or str
        Input features, hidden features (first block ``0e``), output.
    num_layers : int
    lmax_attr : int
        Degree of computed harmonics, and the default attribute irreps ``0e + 1o + ...``.
    task : {'graph', 'node'}
    pool : {'avg', 'sum'}
        Pooling per graph (``task='graph'``).
    norm : {None, 'instance'}
    edge_attr : {'harmonics', 'input'}
        Edge attributes computed from ``pos`` (:math:`Y(x_{ij}/|x_{ij}|)`) or given.
    node_attr : {'mean', 'input'}
        Node attributes as the mean of the incoming edge attributes, or given.
    message_features : {'squared_distance', 'input', 'none'}
        Extra message features: :math:`|x_{ij}|^2` (``1x0e``, the published QM9 choice), given
        (irreps ``additional_message_irreps``, e.g. N-body's ``"2x0e"``), or none.
    additional_message_irreps : Irreps or str, optional
        Irreps of given message features (only with ``message_features='input'``).
    irreps_edge_attr, irreps_node_attr : Irreps or str, optional
        Irreps of given attributes (only with ``'input'``; default ``Irreps.spherical_harmonics(
        lmax_attr)``, and the node attributes default to the edge attributes' irreps).
    mode : {'corrected', 'reference'}
    sh_normalization : {'integral', 'component', 'norm'}
        Of computed harmonics (published: N-body ``'integral'``, QM9 ``'component'``).
    act_constants : {'e3nn', 'exact', 'none'}
    zero_length : {'raise', 'e3nn'}
        Zero-length edges with computed harmonics (:func:`geomp_ref.o3.edge_harmonics`).
    backend : str

    Notes
    -----
    ``forward(params, graph, f, pos=None, edge_attr=None, node_attr=None, message_features=None)
    -> (out, cache)`` with ``out`` (num_graphs, dim_out) or (num_nodes, dim_out); an input is
    given exactly when the options use it. ``backward -> (grads, (grad_f, grad_pos,
    grad_edge_attr, grad_node_attr, grad_message_features))``, None for inputs not taken. Params
    ``{"embed", "layers": {"0", ...}, "pre1", "pre2"[, "post1", "post2"]}`` (the published
    ``embedding_layer``, ``layers``, ``pre_pool1/2``, ``post_pool1/2``).
    """

    irreps_in: Any
    irreps_hidden: Any
    irreps_out: Any
    num_layers: int = 2
    lmax_attr: int = 1
    task: str = "graph"
    pool: str = "avg"
    norm: Any = None
    edge_attr: str = "harmonics"
    node_attr: str = "mean"
    message_features: str = "squared_distance"
    additional_message_irreps: Any = None
    irreps_edge_attr: Any = None
    irreps_node_attr: Any = None
    mode: str = "corrected"
    sh_normalization: str = "integral"
    act_constants: str = "e3nn"
    zero_length: str = "raise"
    backend: str = "numpy"
    embed: Any = field(init=False, repr=False, compare=False)
    layer: Any = field(init=False, repr=False, compare=False)
    pre1: Any = field(init=False, repr=False, compare=False)
    pre2: Any = field(init=False, repr=False, compare=False)
    post1: Any = field(init=False, repr=False, compare=False)
    post2: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        o = "SEGNN"
        for name in ("irreps_in", "irreps_hidden", "irreps_out"):
            put(self, name, _irreps(getattr(self, name), f"{o}.{name}"))
        check_hidden(self.irreps_hidden, f"{o}.irreps_hidden")
        check_int(self.num_layers, f"{o}.num_layers")
        check_int(self.lmax_attr, f"{o}.lmax_attr", maximum=_SH_LMAX)
        check_choice(self.task, f"{o}.task", ("graph", "node"))
        check_choice(self.pool, f"{o}.pool", ("avg", "sum"))
        check_choice(self.edge_attr, f"{o}.edge_attr", EDGE_ATTR)
        check_choice(self.node_attr, f"{o}.node_attr", NODE_ATTR)
        check_choice(self.message_features, f"{o}.message_features", MESSAGE_FEATURES)
        check_choice(self.sh_normalization, f"{o}.sh_normalization", SH_NORMALIZATIONS)
        check_choice(self.zero_length, f"{o}.zero_length", ("raise", "e3nn"))
        sh = o3.Irreps.spherical_harmonics(self.lmax_attr)
        edge = self._optional_irreps("irreps_edge_attr", self.edge_attr == "input", sh)
        node = self._optional_irreps("irreps_node_attr", self.node_attr == "input", edge)
        if self.node_attr == "mean" and (len(edge) == 0 or edge[0].ir != o3.Irrep("0e")):
            raise ValueError(f"{o}.irreps_edge_attr must start with 0e for node_attr='mean' (its "
                             f"column 0 becomes the constant node attribute); got {edge}")
        add = self._optional_irreps("additional_message_irreps",
                                    self.message_features == "input", None)
        if self.message_features == "squared_distance":
            add = o3.Irreps("1x0e")
        elif self.message_features == "input" and add is None:
            raise ValueError(f"{o}.additional_message_irreps must be given with "
                             "message_features='input' (e.g. '2x0e')")
        hid, out = self.irreps_hidden, self.irreps_out
        layer = SEGNNLayer(hid, edge, node, add, self.norm, self.mode, self.act_constants,
                           self.backend)
        kw = {"mode": self.mode}
        gkw = {"mode": self.mode, "act_constants": self.act_constants, "backend": self.backend}
        put(self, "layer", layer)
        put(self, "embed", O3TensorProduct(self.irreps_in, hid, node, **kw))
        put(self, "pre1", O3TensorProductGate(hid, hid, node, **gkw))
        post1 = post2 = None
        if self.task == "graph":
            pooled = (out * hid.num_irreps).simplify().sort().irreps
            put(self, "pre2", O3TensorProduct(hid, pooled, node, **kw))
            try:
                post1 = O3TensorProductGate(pooled, pooled, None, **gkw)
            except ValueError as exc:
                raise ValueError(f"{o}.irreps_out={out} cannot be read out per graph: {exc}"
                                 ) from None
            post2 = O3TensorProduct(pooled, out, None, **kw)
        else:
            put(self, "pre2", O3TensorProduct(hid, out, node, **kw))
        put(self, "post1", post1)
        put(self, "post2", post2)

    def _optional_irreps(self, name, given, default):
        """The irreps of an attribute: given (only for inputs) or the default, stored back so
        that ``dataclasses.replace`` round-trips (a stored default is accepted again)."""
        value = getattr(self, name)
        irreps = default if value is None else _irreps(value, f"SEGNN.{name}")
        if value is not None and not given and irreps != default:
            raise ValueError(f"SEGNN.{name} applies to given inputs only; leave it None with "
                             f"edge_attr={self.edge_attr!r}, node_attr={self.node_attr!r}, "
                             f"message_features={self.message_features!r}")
        object.__setattr__(self, name, irreps)
        return irreps

    def _children(self):
        names = ("embed", "pre1", "pre2") + (("post1", "post2") if self.task == "graph" else ())
        return {k: getattr(self, k) for k in names}

    def param_shapes(self) -> dict:
        shapes = {k: b.param_shapes() for k, b in self._children().items()}
        shapes["layers"] = {str(k): self.layer.param_shapes() for k in range(self.num_layers)}
        return shapes

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        params = {"embed": self.embed.init(rng)}
        params["layers"] = {str(k): self.layer.init(rng) for k in range(self.num_layers)}
        for k, b in self._children().items():
            if k != "embed":
                params[k] = b.init(rng)
        return params

    def forward(self, params, graph, f, pos=None, edge_attr=None, node_attr=None,
                message_features=None):
        check_params(params, self.param_shapes(), "SEGNN", exact=True)
        graph = check_graph(graph)
        f = node_array(f, "f", graph, self.irreps_in.dim)
        (a_ij, a_i, s_ij), att = segnn_attributes(self, graph, pos, edge_attr, node_attr,
                                                  message_features)
        h, c_embed = self.embed.forward(params["embed"], f, a_i)
        c_layers = []
        for k in range(self.num_layers):
            h, c = self.layer.forward(params["layers"][str(k)], graph, h, a_ij, a_i, s_ij)
            c_layers.append(c)
        h, c_pre1 = self.pre1.forward(params["pre1"], h, a_i)
        h, c_pre2 = self.pre2.forward(params["pre2"], h, a_i)
        readout = None
        if self.task == "graph":
            pool = scatter.scatter_mean if self.pool == "avg" else scatter.scatter_sum
            pooled = pool(h, graph.batch, graph.num_graphs, backend=self.backend)
            h, c_post1 = self.post1.forward(params["post1"], pooled)
            h, c_post2 = self.post2.forward(params["post2"], h)
            readout = SEGNNReadoutCache(c_post1, c_post2)
        cache = SEGNNCache(graph, att, c_embed, tuple(c_layers), c_pre1, c_pre2, readout)
        return h, cache

    def backward(self, params, cache: SEGNNCache, grad_out):
        check_cache(cache, SEGNNCache, "SEGNN")
        graph = cache.graph
        rows = graph.num_graphs if self.task == "graph" else graph.num_nodes
        g = _grad_out(grad_out, (rows, self.irreps_out.dim), "SEGNN")
        grads = {}
        # reverses the graph readout: post2, post1, then the pooling
        if self.task == "graph":
            grads["post2"], (g, _) = self.post2.backward(params["post2"], cache.readout.post2, g)
            grads["post1"], (g, _) = self.post1.backward(params["post1"], cache.readout.post1, g)
            vjp = scatter.scatter_mean_vjp if self.pool == "avg" else scatter.scatter_sum_vjp
            g = vjp(None, graph.batch, graph.num_graphs, g, backend=self.backend)[0]
        # reverses `pre2(h, a_i)` and `pre1(h, a_i)`
        grads["pre2"], (g, g_ai) = self.pre2.backward(params["pre2"], cache.pre2, g)
        grads["pre1"], (g, g_ai1) = self.pre1.backward(params["pre1"], cache.pre1, g)
        g_ai = g_ai + g_ai1
        # reverses the layers, last first; the attributes collect every layer's cotangent
        g_aij, g_s = 0.0, 0.0
        grads["layers"] = {}
        for k in reversed(range(self.num_layers)):
            grads["layers"][str(k)], (g, ga, gi, gs) = self.layer.backward(
                params["layers"][str(k)], cache.layers[k], g)
            g_aij, g_ai = g_aij + ga, g_ai + gi
            g_s = g_s + gs if gs is not None else g_s
        grads["layers"] = dict(sorted(grads["layers"].items(), key=lambda kv: int(kv[0])))
        # reverses `h = embed(f, a_i)`
        grads["embed"], (g_f, g_ai1) = self.embed.backward(params["embed"], cache.embed, g)
        g_ai = g_ai + g_ai1
        # reverses the attributes
        E = graph.num_edges
        if np.ndim(g_aij) == 0:
            g_aij = np.zeros((E, self.layer.irreps_edge_attr.dim))
        if np.ndim(g_s) == 0 and self.layer.additional_message_irreps is not None:
            g_s = np.zeros((E, self.layer.additional_message_irreps.dim))
        g_pos, g_edge, g_node, g_msg = segnn_attributes_vjp(self, cache.att, g_aij, g_ai, g_s)
        return grads, (g_f, g_pos, g_edge, g_node, g_msg)
