r"""Steerable N-body models: SEGNN's published configuration and a TFN baseline, from blocks.

Both follow the N-body signature of :mod:`geomp_ref.models.nbody`:
``forward(params, graph, x, v, charges) -> (x_pred, cache)`` with positions ``x``, velocities
``v`` (N, 3) and charges (N, 1) of B five-body systems batched as complete graphs, and
``backward(params, cache, grad_x_pred) -> (grads, (grad_x, grad_v, grad_charges))``. Both
predict a displacement that is added to the input positions.

:class:`NBodySEGNN` (Steerable-E3-GNN, ``main.py --dataset nbody`` with the README's N-body
command: ``--lmax_h 1 --lmax_attr 1 --layers 4 --hidden_features 64 --subspace_type
weightbalanced --norm none``):

.. math::

    (f, a_{ij}, a_i, s_{ij}) = \mathrm{NBodyAttributes}(x, v, q),\qquad
    \hat x_i = x_i + \mathrm{SEGNN}(f, a_{ij}, a_i, s_{ij})_i,

with :class:`~geomp_ref.layers.segnn_nbody.NBodyAttributes` (inputs ``2x1o + 1x0e`` =
:math:`[x_i - c_i, v_i, \lVert v_i\rVert]`, harmonics up to :math:`l = 1` in ``'integral'``
normalisation, message features :math:`[\lVert x_j - x_i\rVert, q_i q_j]`) and
:class:`~geomp_ref.layers.segnn.SEGNN` (node task, 4 layers, no normalisation, output ``1x1o``).
The hidden irreps ``32x0e+32x1o`` are the published "weight balanced" choice for 64 hidden
features: the smallest :math:`n` for which a fully connected product
:math:`n(0e + 1o) \otimes (0e + 1o) \to n(0e + 1o)` has at least as many weights
(:math:`4 n^2`) as a scalar :math:`64 \times 64` layer. The prediction adds the output to the
raw input positions (the published training step, since the repository's commit of
2022-01-21). ``mode="reference"`` is the published model: it centres each position on the mean of
its own three coordinates, which breaks rotation and translation equivariance;
``mode="corrected"`` centres on the system's centroid and is E(3)-equivariant.

:class:`NBodyTFN` is the TFN baseline of the EGNN paper's Table 2 (the EGNN repository's
``OursTFN`` with ``--degree 2 --nf 32``: features of degrees 0 and 1 with 16 channels each,
4 convolutions, the last to one vector; input degree 0 = charge, degree 1 = velocity;
prediction :math:`x + \text{output}`), built from :class:`~geomp_ref.layers.tfn.TFNConv`:

.. math::

    h^0 = [q_i, v_i] \ (0e + 1o),\quad h^{k+1} = \mathrm{TFNConv}_k(h^k, x)\ (k < 3,\ 16x0e +
    16x1o,\ \text{gated}),\quad \hat x_i = x_i + \mathrm{TFNConv}_3(h^3, x)_i\ (1x1o).

Where our TFNConv differs from the published convolution (documented, not hidden):

* nonlinearity: e3nn's gate (SiLU on scalars, sigmoid gates on vectors) instead of the published
  norm nonlinearity (ReLU of a layer-normalised norm, rescaling each vector);
* radial network: Gaussian basis of the distance (``num_basis`` centres on
  :math:`[0, r_{max}]`) into a bias-free SiLU network (2 hidden layers of 32, as published in
  width and depth) instead of the published ``Lin(1 -> 32) -> LayerNorm -> ReLU`` stack on the
  raw distance, times e3nn's smooth cutoff (1 up to :math:`r_{max}/2`; :math:`r_{max} = 20`
  keeps 99.7% of the input-frame distances of "nbody_small" below 10);
* self-interaction: e3nn's :math:`\sin\frac\pi8 S h_i + \cos\frac\pi8 (\dots)` mixing of a
  linear self-connection, instead of a self-interaction added to every edge message; the
  messages are averaged over the 4 incoming edges as published (``num_neighbors = 16``:
  division by :math:`\sqrt{16} = 4`);
* parity: the published code is SE(3)-equivariant and its degree-1 to degree-1 kernel includes
  the cross product (:math:`J = 1`); ours is E(3)-equivariant (vectors are ``1o``), so that path
  (``1o x 1o -> 1e``) is absent; the :math:`J = 0` and :math:`J = 2` paths are kept (harmonics up
  to ``lmax = 2``);
* the published basis is computed in float64 and cast to float32; here everything is float64.

What :class:`NBodyTFN` is, exactly: e3nn's own model ``e3nn.nn.models.gate_points_2101.Network``
with ``irreps_in="1x0e+1x1o"``, ``irreps_hidden="16x0e+16x1o"``, ``irreps_out="1x1o"``, no node
attributes, harmonics up to ``lmax`` as edge attributes, ``layers=3``, ``max_radius=20``,
``number_of_basis=20``, ``radial_layers=2``, ``radial_neurons=32``, ``num_neighbors=16`` and
``reduce_output=False`` (:meth:`NBodyTFN.e3nn_network_options` returns them for any sizes),
run on the complete graph of each system, plus :math:`x`: the same
20 354 weights in the same layout, the same output and gradients to 1e-12, and the same
parameters after 20 Adam steps to 1e-9 (the e3nn peer tests). So e3nn is the published torch code
of this architecture, and ``benchmarks/tfn_e3nn.py`` trains it for the results table.

:class:`NBodySE3TFN` is the published TFN baseline itself, block for block: the SE(3)-Transformer
code's ``GConvSE3`` (:class:`~geomp_ref.layers.se3_tfn.SE3Conv`: kernels over every
:math:`J`, the cross product included, radial networks with layer normalisation on the raw
distance, self-interaction added to every message, mean aggregation) and ``GNormSE3``
(:class:`~geomp_ref.layers.se3_tfn.SE3NormNonlinearity`), with the published initialisation
and parameter count (127 024). Given the same weights it agrees with the published float32
module to float32 precision, and trained from the same weights on the same batches its loss
follows the published run's (``geomp-ref nbody train --model tfn-se3``). It is SE(3)- but not
E(3)-equivariant.

Backward: both models reverse their forward line by line; :class:`NBodyAttributes` carries the
cotangents of the SEGNN inputs back to positions, velocities and charges, and every TFNConv
returns its position cotangent, summed over the four layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._validate import as_rng, check_cache, check_choice, check_int, check_positive
from .._validate import grad_out as _grad_out
from ..graph import Graph
from ..layers.base import Block, check_backend, check_params
from ..layers.se3_tfn import SE3Conv, SE3NormNonlinearity
from ..layers.segnn import SEGNN
from ..layers.segnn_blocks import check_mode
from ..layers.segnn_nbody import NBodyAttributes
from ..layers.tfn import TFNConv
from . import nbody_features as F

__all__ = ["MODELS", "NBodySE3TFN", "NBodySE3TFNCache", "NBodySEGNN", "NBodySEGNNCache",
           "NBodyTFN", "NBodyTFNCache", "make_model"]


# --- SEGNN -------------------------------------------------------------------------------------


class NBodySEGNNCache(NamedTuple):
    graph: Graph
    attributes: Any  # NBodyAttributesCache
    segnn: Any  # SEGNNCache


@dataclass(frozen=True)
class NBodySEGNN(Block):
    r"""SEGNN on the published N-body inputs; returns :math:`x + \mathrm{SEGNN}(\dots)`.

    Parameters
    ----------
    irreps_hidden : Irreps or str
        Published: ``"32x0e+32x1o"`` (module docstring).
    num_layers : int
        Published: 4.
    lmax_attr : int
        Degree of the attribute harmonics (published 1).
    mode : {'reference', 'corrected'}
        The published centring (each position minus the mean of its own coordinates) and
        SEGNN's published conventions, or the graph centroid and the equivariant conventions.
    act_constants : {'e3nn', 'exact', 'none'}
        Gate normalisation constants (:class:`~geomp_ref.layers.segnn.SEGNN`).
    backend : str

    Notes
    -----
    Params ``{"segnn": SEGNN params}`` (the published ``SEGNN`` module's, see
    :class:`~geomp_ref.layers.segnn.SEGNN`); the attribute builder has none.
    """

    irreps_hidden: Any = "32x0e+32x1o"
    num_layers: int = 4
    lmax_attr: int = 1
    mode: str = "reference"
    act_constants: str = "e3nn"
    backend: str = "numpy"
    attributes: Any = field(init=False, repr=False, compare=False)
    segnn: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        o = "NBodySEGNN"
        check_int(self.num_layers, f"{o}.num_layers", minimum=1)
        check_int(self.lmax_attr, f"{o}.lmax_attr", minimum=1)
        check_mode(self.mode, o)
        check_backend(self.backend, o)
        object.__setattr__(self, "attributes", NBodyAttributes(
            self.lmax_attr, "integral", self.mode, backend=self.backend))
        try:
            segnn = SEGNN("2x1o+1x0e", self.irreps_hidden, "1x1o", num_layers=self.num_layers,
                          lmax_attr=self.lmax_attr, task="node", norm=None, edge_attr="input",
                          node_attr="input", message_features="input",
                          additional_message_irreps="2x0e", mode=self.mode,
                          act_constants=self.act_constants, backend=self.backend)
        except ValueError as exc:
            raise ValueError(f"{o}.irreps_hidden / act_constants: {exc}") from None
        object.__setattr__(self, "segnn", segnn)
        object.__setattr__(self, "irreps_hidden", segnn.irreps_hidden)

    def param_shapes(self) -> dict:
        return {"segnn": self.segnn.param_shapes()}

    def init(self, rng) -> dict:
        return {"segnn": self.segnn.init(as_rng(rng, "rng"))}

    def forward(self, params, graph, x, v, charges):
        check_params(params, self.param_shapes(), "NBodySEGNN", exact=True)
        x, v, charges = F.check_nbody_inputs(graph, x, v, charges)
        (f, a_ij, a_i, s_ij), c_att = self.attributes.forward({}, graph, x, v, charges)
        out, c_segnn = self.segnn.forward(params["segnn"], graph, f, None, a_ij, a_i, s_ij)
        return x + out, NBodySEGNNCache(graph, c_att, c_segnn)

    def backward(self, params, cache: NBodySEGNNCache, grad_out):
        check_cache(cache, NBodySEGNNCache, "NBodySEGNN")
        g = _grad_out(grad_out, (cache.graph.num_nodes, 3), "NBodySEGNN")
        # reverses `x + segnn(f, a_ij, a_i, s_ij)`
        g_segnn, (g_f, _, g_aij, g_ai, g_s) = self.segnn.backward(params["segnn"], cache.segnn,
                                                                   g)
        # reverses `(f, a_ij, a_i, s_ij) = attributes(x, v, q)`
        _, (g_x, g_v, g_q) = self.attributes.backward({}, cache.attributes,
                                                      (g_f, g_aij, g_ai, g_s))
        return {"segnn": g_segnn}, (g + g_x, g_v, g_q)


# --- TFN ---------------------------------------------------------------------------------------


class NBodyTFNCache(NamedTuple):
    graph: Graph
    layers: tuple  # TFNConvCache per layer


@dataclass(frozen=True)
class NBodyTFN(Block):
    r"""TFN baseline: ``num_layers`` :class:`~geomp_ref.layers.tfn.TFNConv` on ``[q, v]``;
    returns :math:`x + \text{last layer}` (module docstring lists the differences from the
    published TFN).

    Parameters
    ----------
    channels : int
        Channels per degree (published 16: ``--nf 32 --degree 2``).
    num_layers : int
        Convolutions (published 4; all but the last gated).
    lmax : int
        Harmonics degree (2 holds the published degree-1 kernel's :math:`J = 2` part).
    max_radius : float
        Cutoff radius and range of the Gaussian basis.
    num_basis : int
        Gaussians of the radial embedding.
    radial_neurons, radial_layers : int
        Radial network (published 32 and 2).
    backend : str

    Notes
    -----
    Params ``{"layers": {"0": TFNConv params, ...}}``.
    """

    channels: int = 16
    num_layers: int = 4
    lmax: int = 2
    max_radius: float = 20.0
    num_basis: int = 20
    radial_neurons: int = 32
    radial_layers: int = 2
    backend: str = "numpy"
    convs: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        o = "NBodyTFN"
        check_int(self.channels, f"{o}.channels", minimum=1)
        check_int(self.num_layers, f"{o}.num_layers", minimum=1)
        check_int(self.lmax, f"{o}.lmax", minimum=1)
        check_positive(self.max_radius, f"{o}.max_radius")
        check_int(self.num_basis, f"{o}.num_basis", minimum=2)
        check_int(self.radial_neurons, f"{o}.radial_neurons", minimum=1)
        check_int(self.radial_layers, f"{o}.radial_layers")
        check_backend(self.backend, o)
        hidden = f"{self.channels}x0e+{self.channels}x1o"
        kw = {"lmax": self.lmax, "max_radius": self.max_radius, "num_basis": self.num_basis,
              "radial_neurons": self.radial_neurons, "radial_layers": self.radial_layers,
              "num_neighbors": 16.0, "backend": self.backend}
        convs, irreps_in = [], "1x0e+1x1o"
        for k in range(self.num_layers):
            last = k == self.num_layers - 1
            convs.append(TFNConv(irreps_in, "1x1o" if last else hidden, gate=not last, **kw))
            irreps_in = hidden
        # layers 1 .. L-2 share a spec (the first reads the input irreps, the last writes 1x1o)
        object.__setattr__(self, "convs", tuple(convs))

    def param_shapes(self) -> dict:
        return {"layers": {str(k): c.param_shapes() for k, c in enumerate(self.convs)}}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {"layers": {str(k): c.init(rng) for k, c in enumerate(self.convs)}}

    def e3nn_network_options(self) -> dict:
        """Keyword arguments of e3nn's ``gate_points_2101.Network`` that build this network.

        ``Network(**model.e3nn_network_options())`` holds the same weights as this model's params
        (``layers[k].first`` is convolution k for k < L-1, ``layers[L-1]`` the last; leaves
        ``sc``, ``lin1``, ``lin2`` and ``fc.layer<j>`` = ``radial/W<j>``, the same flat
        layouts), and ``x + Network.forward`` on the complete graph of each system is this
        model's output. Plain Python values (irreps as strings), so no e3nn import is needed.
        """
        return {"irreps_in": "1x0e+1x1o",
                "irreps_hidden": f"{self.channels}x0e+{self.channels}x1o",
                "irreps_out": "1x1o", "irreps_node_attr": None,
                "irreps_edge_attr": str(self.convs[0].irreps_sh),
                "layers": self.num_layers - 1, "max_radius": self.max_radius,
                "number_of_basis": self.num_basis, "radial_layers": self.radial_layers,
                "radial_neurons": self.radial_neurons,
                "num_neighbors": self.convs[0].num_neighbors, "num_nodes": 5.0,
                "reduce_output": False}

    def weight_normalization(self) -> dict:
        """Each convolution's :meth:`~geomp_ref.layers.tfn.TFNConv.weight_normalization`, in the
        params' tree (``--parametrization standard`` of ``geomp-ref nbody train``)."""
        return {"layers": {str(k): c.weight_normalization() for k, c in enumerate(self.convs)}}

    def forward(self, params, graph, x, v, charges):
        check_params(params, self.param_shapes(), "NBodyTFN", exact=True)
        x, v, charges = F.check_nbody_inputs(graph, x, v, charges)
        h = np.concatenate([charges, v], axis=1)
        caches = []
        for k, conv in enumerate(self.convs):
            h, c = conv.forward(params["layers"][str(k)], graph, h, x)
            caches.append(c)
        return x + h, NBodyTFNCache(graph, tuple(caches))

    def backward(self, params, cache: NBodyTFNCache, grad_out):
        check_cache(cache, NBodyTFNCache, "NBodyTFN")
        g_h = _grad_out(grad_out, (cache.graph.num_nodes, 3), "NBodyTFN")
        # reverses `x + h`
        g_x = g_h
        # reverses `h = conv_k(h, x)`, k = L-1 .. 0
        g_layers = {}
        for k in reversed(range(len(self.convs))):
            g_layers[str(k)], (g_h, g_xk) = self.convs[k].backward(
                params["layers"][str(k)], cache.layers[k], g_h)
            g_x = g_x + g_xk
        g_layers = dict(sorted(g_layers.items(), key=lambda kv: int(kv[0])))
        # reverses `h = [q, v]`
        return {"layers": g_layers}, (g_x, g_h[:, 1:], g_h[:, :1])


# --- TFN, the published architecture ---------------------------------------------------------


class NBodySE3TFNCache(NamedTuple):
    graph: Graph
    layers: tuple  # (conv cache, norm cache or None) per layer


@dataclass(frozen=True)
class NBodySE3TFN(Block):
    r"""The published TFN baseline itself: the SE(3)-Transformer code's ``OursTFN`` on ``[q, v]``.

    .. math::

        h^0 = (q_i;\ v_i),\quad h^{k+1} = \mathrm{Norm}_k(\mathrm{Conv}_k(h^k, x))\ (k < L-1),
        \quad \hat x_i = x_i + \mathrm{Conv}_{L-1}(h^{L-1}, x)_i,

    with :class:`~geomp_ref.layers.se3_tfn.SE3Conv` (self-interaction on) and
    :class:`~geomp_ref.layers.se3_tfn.SE3NormNonlinearity`; hidden features have ``channels``
    channels of every degree below ``num_degrees`` (published ``--nf 32 --degree 2``: 16
    channels of degrees 0 and 1), the input is the charge (degree 0) and the velocity
    (degree 1), the last convolution writes one vector. SE(3)-equivariant (not under
    reflections: the vector-to-vector kernel has a cross-product part).

    Parameters
    ----------
    channels : int
    num_layers : int
    num_degrees : int
    radial_hidden : int
    backend : str

    Notes
    -----
    Params ``{"conv": {"0": SE3Conv params, ...}, "norm": {"0": SE3NormNonlinearity params,
    ...}}`` (``norm`` for every layer but the last). The published module names:
    ``block0[2k]`` is ``conv[k]`` and ``block0[2k+1]`` is ``norm[k]``.
    """

    channels: int = 16
    num_layers: int = 4
    num_degrees: int = 2
    radial_hidden: int = 32
    backend: str = "numpy"
    convs: Any = field(init=False, repr=False, compare=False)
    norms: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        o = "NBodySE3TFN"
        check_int(self.channels, f"{o}.channels", minimum=1)
        check_int(self.num_layers, f"{o}.num_layers", minimum=1)
        check_int(self.num_degrees, f"{o}.num_degrees", minimum=2, maximum=4)
        check_int(self.radial_hidden, f"{o}.radial_hidden", minimum=1)
        check_backend(self.backend, o)
        mid = (self.channels,) * self.num_degrees
        kw = {"radial_hidden": self.radial_hidden, "backend": self.backend}
        convs, norms, c_in = [], [], (1, 1)
        for k in range(self.num_layers):
            last = k == self.num_layers - 1
            convs.append(SE3Conv(c_in, (0, 1) if last else mid, self_interaction=True, **kw))
            if not last:
                norms.append(SE3NormNonlinearity(mid, backend=self.backend))
            c_in = mid
        object.__setattr__(self, "convs", tuple(convs))
        object.__setattr__(self, "norms", tuple(norms))

    def param_shapes(self) -> dict:
        return {"conv": {str(k): c.param_shapes() for k, c in enumerate(self.convs)},
                "norm": {str(k): n.param_shapes() for k, n in enumerate(self.norms)}}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        conv, norm = {}, {}
        for k, c in enumerate(self.convs):  # in the published module order
            conv[str(k)] = c.init(rng)
            if k < len(self.norms):
                norm[str(k)] = self.norms[k].init(rng)
        return {"conv": conv, "norm": norm}

    def forward(self, params, graph, x, v, charges):
        check_params(params, self.param_shapes(), "NBodySE3TFN", exact=True)
        x, v, charges = F.check_nbody_inputs(graph, x, v, charges)
        h = np.concatenate([charges, v], axis=1)
        caches = []
        for k, conv in enumerate(self.convs):
            h, cc = conv.forward(params["conv"][str(k)], graph, h, x)
            cn = None
            if k < len(self.norms):
                h, cn = self.norms[k].forward(params["norm"][str(k)], h)
            caches.append((cc, cn))
        return x + h, NBodySE3TFNCache(graph, tuple(caches))

    def backward(self, params, cache: NBodySE3TFNCache, grad_out):
        check_cache(cache, NBodySE3TFNCache, "NBodySE3TFN")
        g_h = _grad_out(grad_out, (cache.graph.num_nodes, 3), "NBodySE3TFN")
        g_x = g_h  # reverses `x + h`
        g_conv, g_norm = {}, {}
        for k in reversed(range(len(self.convs))):
            cc, cn = cache.layers[k]
            if cn is not None:  # reverses `h = norm_k(h)`
                g_norm[str(k)], (g_h,) = self.norms[k].backward(params["norm"][str(k)], cn, g_h)
            # reverses `h = conv_k(h, x)`
            g_conv[str(k)], (g_h, g_xk) = self.convs[k].backward(params["conv"][str(k)], cc,
                                                                 g_h)
            g_x = g_x + g_xk
        grads = {"conv": dict(sorted(g_conv.items(), key=lambda kv: int(kv[0]))),
                 "norm": dict(sorted(g_norm.items(), key=lambda kv: int(kv[0])))}
        # reverses `h = [q, v]`
        return grads, (g_x, g_h[:, 1:], g_h[:, :1])


# --- registry -----------------------------------------------------------------------------------

#: model name -> class, the names ``geomp-ref nbody train --model`` takes for these models;
#: ``segnn-e3`` is the published SEGNN configuration with the E(3)-equivariant centring
MODELS = {"segnn": NBodySEGNN, "segnn-e3": NBodySEGNN, "tfn": NBodyTFN, "tfn-se3": NBodySE3TFN}
#: fields that differ from the class defaults for a name
_OPTIONS = {"segnn-e3": {"mode": "corrected"}}


def make_model(name: str, **options) -> Block:
    """The published configuration of steerable model ``name`` (``options`` override fields)."""
    check_choice(name, "model", tuple(MODELS))
    return MODELS[name](**{**_OPTIONS.get(name, {}), **options})
