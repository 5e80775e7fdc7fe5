r"""The SE(3) tensor field network of the SE(3)-Transformer code: convolution and norm nonlinearity.

This is the TFN baseline of the EGNN paper's N-body table (the EGNN repository's ``OursTFN``,
built from the SE(3)-Transformer's ``GConvSE3`` and ``GNormSE3``), written from its equations in
float64 with hand-derived backward passes. It differs from :class:`geomp_ref.layers.tfn.TFNConv`
(e3nn's convolution) in every block: its kernel is a sum over all :math:`J` with
:math:`|l - k| \le J \le l + k` (so it is SE(3)- but not O(3)-equivariant: the
:math:`J = 1` part of the vector-to-vector kernel is a cross product), its radial networks work
on the raw distance with layer normalisation, the self-interaction is added to every message and
messages are averaged, and its nonlinearity acts on norms.

Features
--------
A feature of degree :math:`l` with :math:`m_l` channels is an array (N, m_l, 2l+1); a node's
features are the degrees :math:`l = 0, 1, \dots` in order, each flattened, so that ``channels =
(m_0, m_1, ...)`` describes an (N, sum m_l (2l+1)) array (a degree with 0 channels is absent).
Degree 1 is the plain Cartesian vector :math:`(x, y, z)`; degree :math:`l` transforms with the
real Wigner matrix of :func:`geomp_ref.o3.wigner_D` (e3nn's basis), so ``channels = (m0, m1)`` is
the layout of e3nn's ``"m0x0e + m1x1o"`` under rotations.

Equations (receiver i, sender j, :math:`d_{ij} = x_i - x_j` as the published code's
``x_dst - x_src``, :math:`r = \lVert d_{ij}\rVert`, :math:`u = d_{ij}/r`)
----------------------------------------------------------------------------------------------

Kernel basis from the real Clebsch-Gordan coefficients (:func:`geomp_ref.o3.wigner_3j`, unit
Frobenius norm) and the component-normalised harmonics :math:`Y_J` (:math:`\lVert Y_J\rVert^2 =
2J + 1`):

.. math::

    K^{lk}_J(u)_{ab} = \frac{1}{\sqrt{4\pi}} \sum_{M} C^{(k, l, J)}_{a b M}\, Y_{J M}(u),
    \qquad |l - k| \le J \le l + k,

the published basis exactly (it is built as :math:`Y_J Q_J` with orthonormal harmonics and a
unit-norm null vector :math:`Q_J` of a Sylvester system; checked against it numerically,
signs included). Each pair of an input degree :math:`l` and output degree :math:`k` has a radial
network on the distance,

.. math::

    R^{lk}(r) = W_3\,\mathrm{relu}(\mathrm{LN}_2(W_2\, \mathrm{relu}(\mathrm{LN}_1(W_1 r + b_1))
    + b_2)) + b_3 \in \mathbb R^{m_k \times m_l \times (2\min(l,k)+1)},

(hidden width 32, :func:`geomp_ref.ops.layer_norm` with learned scale and shift), and the
convolution is

.. math::

    f'^k_{i} = [\deg i > 0]\ \Big( \frac{1}{\deg i} \sum_{j \to i} \sum_l \sum_J
    R^{lk}_J(r_{ij})\, K^{lk}_J(u_{ij})\, f^l_j \;+\; S^k f^k_i \Big),

where :math:`R^{lk}_J` acts on channels and :math:`K^{lk}_J` on the :math:`2l+1` components, and
:math:`S^k` (self-interaction, ``self_interaction=True``) exists for the degrees present on both
sides. The published code adds :math:`S^k f^k_i` to every incoming message before the mean, so a
node without incoming edges gets 0, self term included; this is kept.

Norm nonlinearity (``GNormSE3`` with one layer), per degree over its :math:`m` channels:

.. math::

    n_c = \max(\lVert f_c \rVert, \epsilon),\quad
    f'_c = \big(W\,\mathrm{relu}(\mathrm{LN}(n)) + b\big)_c\ \frac{f_c}{n_c},
    \qquad \epsilon = 10^{-12}

(for degree 0, :math:`\lVert f_c\rVert = |f_c|` and the phase is the sign).

Backward (reverse line order): the message :math:`\sum_{i,J} R_{oiJ} B_{Jmi}` with
:math:`B_J = K_J f_j` is a pair of contractions whose VJPs are the transposed contractions;
:math:`\bar K_J` goes to :math:`\bar Y_J` through the same Clebsch-Gordan table and then to
:math:`d_{ij}` through :func:`geomp_ref.o3.edge_harmonics_vjp`; the radial network's chain
reaches :math:`\bar r` and :math:`\bar d_{ij} \mathrel{+}= \bar r\, u`. For the nonlinearity,
with :math:`s_c = \bar f'_c \cdot f_c / n_c` (the cotangent of the gate :math:`t_c`),
:math:`\bar f_c = t_c \bar f'_c / n_c + [\lVert f_c\rVert \ge \epsilon]\,
(\bar n_c - t_c s_c / n_c)\, f_c / \lVert f_c \rVert` with :math:`\bar n` the VJP of
:math:`t(n)` (torch's clamp passes no gradient below :math:`\epsilon`). Proof:
``derivations/se3_tfn.py``.

Initialisation follows the published modules: Kaiming-uniform weights
(:math:`U(\pm\sqrt{6/\mathrm{fan_{in}}})`) and torch's default Linear biases
(:math:`U(\pm 1/\sqrt{\mathrm{fan_{in}}})`) in the radial networks and the nonlinearity, layer
norms at scale 1 and shift 0, self-interaction :math:`\mathcal N(0, 1/m_{in})`.

References
----------
F. Fuchs, D. Worrall, V. Fischer, M. Welling, "SE(3)-Transformers", NeurIPS 2020 (eq. 8 and the
TFN layer of its code). N. Thomas et al., "Tensor field networks", arXiv:1802.08219 (2018).
V. G. Satorras, E. Hoogeboom, M. Welling, "E(n) equivariant graph neural networks", ICML 2021
(Table 2, the TFN baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .. import o3
from .._validate import (
    as_float64,
    as_rng,
    check_cache,
    check_graph,
    check_int,
    node_array,
    positions,
)
from .._validate import grad_out as _grad_out
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..o3.spherical_harmonics import LMAX as _SH_LMAX
from ..ops import activations, dense, scatter
from ..ops.geometry import edge_length, edge_length_vjp
from ..ops.normalization import layer_norm, layer_norm_vjp
from .base import Block, check_backend, check_params

__all__ = ["SE3Conv", "SE3ConvCache", "SE3NormNonlinearity", "SE3NormCache", "check_channels",
           "channels_dim", "kernel_basis", "kernel_basis_vjp"]

_INV_SQRT_4PI = 1.0 / math.sqrt(4.0 * math.pi)
#: the published radial networks' hidden width
RADIAL_HIDDEN = 32
#: torch LayerNorm's default epsilon, used by the published radial networks and nonlinearity
LN_EPS = 1e-5
#: the published clamp of the norms in the nonlinearity
NORM_EPS = 1e-12


# --- layout ------------------------------------------------------------------------------------


def check_channels(channels, name: str) -> tuple:
    """``channels`` as a tuple of non-negative ints (channels per degree 0, 1, ...), not all 0."""
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__len__"):
        raise TypeError(f"{name} must be a tuple of channel counts per degree, e.g. (16, 16); "
                        f"got {type(channels).__name__}")
    out = tuple(check_int(c, f"{name}[{k}]") for k, c in enumerate(channels))
    if not out or sum(out) == 0:
        raise ValueError(f"{name} must give at least one channel to some degree, e.g. (16, 16); "
                         f"got {channels!r}")
    return out


def channels_dim(channels) -> int:
    """Width of the flat feature array: :math:`\\sum_l m_l (2l + 1)`."""
    return sum(m * (2 * l + 1) for l, m in enumerate(channels))


def _split(f: np.ndarray, channels) -> dict:
    """Flat (N, dim) features -> {degree: (N, m, 2l+1)} views (degrees with channels only)."""
    out, start = {}, 0
    for l, m in enumerate(channels):
        width = m * (2 * l + 1)
        if m:
            out[l] = f[:, start:start + width].reshape(f.shape[0], m, 2 * l + 1)
        start += width
    return out


def _join(parts: dict, channels, rows: int) -> np.ndarray:
    """Inverse of :func:`_split` (absent degrees of ``parts`` are zeros)."""
    blocks = []
    for l, m in enumerate(channels):
        if not m:
            continue
        p, width = parts.get(l), m * (2 * l + 1)
        blocks.append(np.zeros((rows, width)) if p is None else p.reshape(rows, width))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((rows, 0))


# --- kernel basis ------------------------------------------------------------------------------


def _js(l: int, k: int) -> range:
    return range(abs(l - k), l + k + 1)


def _Y_J(Y: np.ndarray, J: int) -> np.ndarray:
    return Y[:, J * J:(J + 1) * (J + 1)]


def kernel_basis(Y: np.ndarray, l: int, k: int) -> np.ndarray:
    r"""The basis :math:`K^{lk}_J(u)` for input degree ``l`` and output degree ``k``.

    Parameters
    ----------
    Y : ndarray, shape (E, (L+1)**2)
        Component-normalised harmonics of the edge directions up to at least :math:`L = l + k`.

    Returns
    -------
    K : ndarray, shape (E, 2 min(l, k) + 1, 2k + 1, 2l + 1)
        ``K[:, f]`` is :math:`K_J` for :math:`J = |l - k| + f`.
    """
    l, k = check_int(l, "l"), check_int(k, "k")
    Y = as_float64(Y, "Y", ndim=2)
    if Y.shape[1] < (l + k + 1) ** 2:
        raise ValueError(f"Y must hold the harmonics up to degree l + k = {l + k}, i.e. at least "
                         f"{(l + k + 1) ** 2} columns; got shape {Y.shape}")
    return _basis(Y, l, k)


def _basis(Y: np.ndarray, l: int, k: int) -> np.ndarray:
    """:func:`kernel_basis` on arguments the caller has already checked."""
    return np.stack([np.einsum("abM,eM->eab", o3.wigner_3j(k, l, J), _Y_J(Y, J))
                     for J in _js(l, k)], axis=1) * _INV_SQRT_4PI


def kernel_basis_vjp(grad_K: np.ndarray, l: int, k: int, lmax: int) -> np.ndarray:
    """VJP of :func:`kernel_basis` with respect to ``Y``: shape (E, (lmax+1)**2)."""
    l, k = check_int(l, "l"), check_int(k, "k")
    lmax = check_int(lmax, "lmax", minimum=l + k)
    grad_K = as_float64(grad_K, "grad_K", ndim=4)
    want = (2 * min(l, k) + 1, 2 * k + 1, 2 * l + 1)
    if grad_K.shape[1:] != want:
        raise ValueError(f"grad_K must have shape (E, {want[0]}, {want[1]}, {want[2]}) for "
                         f"l = {l}, k = {k}; got {grad_K.shape}")
    return _basis_vjp(grad_K, l, k, lmax)


def _basis_vjp(grad_K: np.ndarray, l: int, k: int, lmax: int) -> np.ndarray:
    """:func:`kernel_basis_vjp` on arguments the caller has already checked."""
    g = np.zeros((grad_K.shape[0], (lmax + 1) ** 2))
    for f, J in enumerate(_js(l, k)):
        g[:, J * J:(J + 1) * (J + 1)] += np.einsum(
            "abM,eab->eM", o3.wigner_3j(k, l, J), grad_K[:, f]) * _INV_SQRT_4PI
    return g


# --- radial network ----------------------------------------------------------------------------


def _kaiming_uniform(rng, fan_in: int, fan_out: int) -> np.ndarray:
    bound = math.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=(fan_in, fan_out))


def _torch_bias(rng, fan_in: int, fan_out: int) -> np.ndarray:
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=(fan_out,))


def _radial_shapes(hidden: int, out: int) -> dict:
    return {"W1": (1, hidden), "b1": (hidden,), "ln1_gamma": (hidden,), "ln1_beta": (hidden,),
            "W2": (hidden, hidden), "b2": (hidden,), "ln2_gamma": (hidden,),
            "ln2_beta": (hidden,), "W3": (hidden, out), "b3": (out,)}


def _radial_init(rng, hidden: int, out: int) -> dict:
    p = {}
    for k, (fi, fo) in (("1", (1, hidden)), ("2", (hidden, hidden)), ("3", (hidden, out))):
        p["W" + k] = _kaiming_uniform(rng, fi, fo)
        p["b" + k] = _torch_bias(rng, fi, fo)
        if k != "3":
            p[f"ln{k}_gamma"] = np.ones(fo)
            p[f"ln{k}_beta"] = np.zeros(fo)
    return dict(sorted(p.items()))


def _radial(p: dict, r: np.ndarray, backend: str):
    """Lin(1 -> h), LN, ReLU, Lin(h -> h), LN, ReLU, Lin(h -> out) on ``r`` (E, 1)."""
    z1 = dense.linear(r, p["W1"], p["b1"])
    a1 = layer_norm(z1, p["ln1_gamma"], p["ln1_beta"], eps=LN_EPS)
    s1 = activations.relu(a1, backend=backend)
    z2 = dense.linear(s1, p["W2"], p["b2"])
    a2 = layer_norm(z2, p["ln2_gamma"], p["ln2_beta"], eps=LN_EPS)
    s2 = activations.relu(a2, backend=backend)
    y = dense.linear(s2, p["W3"], p["b3"])
    return y, (r, z1, a1, s1, z2, a2, s2)


def _radial_vjp(p: dict, c: tuple, g_y: np.ndarray, backend: str):
    r, z1, a1, s1, z2, a2, s2 = c
    g = {}
    g_s2, g["W3"], g["b3"] = dense.linear_vjp(s2, p["W3"], p["b3"], g_y)
    g_a2 = activations.relu_vjp(a2, g_s2, backend=backend)
    g_z2, g["ln2_gamma"], g["ln2_beta"] = layer_norm_vjp(z2, p["ln2_gamma"], p["ln2_beta"], g_a2,
                                                         eps=LN_EPS)
    g_s1, g["W2"], g["b2"] = dense.linear_vjp(s1, p["W2"], p["b2"], g_z2)
    g_a1 = activations.relu_vjp(a1, g_s1, backend=backend)
    g_z1, g["ln1_gamma"], g["ln1_beta"] = layer_norm_vjp(z1, p["ln1_gamma"], p["ln1_beta"], g_a1,
                                                         eps=LN_EPS)
    g_r, g["W1"], g["b1"] = dense.linear_vjp(r, p["W1"], p["b1"], g_z1)
    return dict(sorted(g.items())), g_r


# --- convolution -------------------------------------------------------------------------------


class SE3ConvCache(NamedTuple):
    graph: Graph
    edge_vec: np.ndarray  # x_j - x_i (graph.edge_vectors)
    d: np.ndarray  # x_i - x_j, the published relative vector
    r: np.ndarray  # (E, 1)
    Y: np.ndarray
    f_in: dict  # degree -> (N, m, 2l+1)
    f_src: dict  # degree -> (E, m, 2l+1)
    pairs: dict  # "l,k" -> (radial cache, R (E, mo, mi*nf), K (E, nf*(2k+1), 2l+1), B)
    has_in: np.ndarray  # (N,) in-degree > 0


@dataclass(frozen=True)
class SE3Conv(Block):
    r"""The SE(3)-Transformer code's ``GConvSE3`` (a TFN layer), see the module docstring.

    Parameters
    ----------
    channels_in, channels_out : tuple of int
        Channels per degree 0, 1, ... of the input and output features (published N-body model:
        ``(1, 1)`` -> ``(16, 16)`` -> ... -> ``(0, 1)``).
    self_interaction : bool
        Add :math:`S^k f^k_i` for every degree present on both sides (published: True).
    radial_hidden : int
        Width of the radial networks (published 32).
    backend : str
        Kernels of the gathers, the mean and the ReLUs.

    Notes
    -----
    Params ``{"radial": {"l,k": {W1, b1, ln1_gamma, ln1_beta, W2, b2, ln2_gamma, ln2_beta, W3,
    b3}}, "self": {"k": (m_out, m_in)}}``; weights stored (in, out) (torch's ``Linear.weight``
    transposed). ``W3`` has ``m_k * m_l * (2 min(l, k) + 1)`` outputs ordered (output channel,
    input channel, J) as the published ``view``. The published self-interaction ``W`` (1, m_out,
    m_in) is ``self[k][None]``.

    ``forward(params, graph, f, pos) -> (f', cache)``; ``backward`` returns
    ``(grads, (grad_f, grad_pos))``. Coincident points joined by an edge have no direction and
    raise a ``ValueError`` naming ``pos``.
    """

    channels_in: tuple = (1, 1)
    channels_out: tuple = (16, 16)
    self_interaction: bool = True
    radial_hidden: int = RADIAL_HIDDEN
    backend: str = "numpy"
    lmax: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        o = "SE3Conv"
        object.__setattr__(self, "channels_in", check_channels(self.channels_in,
                                                               f"{o}.channels_in"))
        object.__setattr__(self, "channels_out", check_channels(self.channels_out,
                                                                f"{o}.channels_out"))
        if not isinstance(self.self_interaction, bool):
            raise TypeError(f"{o}.self_interaction must be a bool; got "
                            f"{type(self.self_interaction).__name__}")
        check_int(self.radial_hidden, f"{o}.radial_hidden", minimum=1)
        check_backend(self.backend, o)
        lmax = (len(self.channels_in) - 1) + (len(self.channels_out) - 1)
        if lmax > _SH_LMAX:
            raise ValueError(f"{o}: degrees up to {lmax} need harmonics beyond l = {_SH_LMAX}; "
                             "use fewer degrees")
        object.__setattr__(self, "lmax", lmax)

    @property
    def dim_in(self) -> int:
        return channels_dim(self.channels_in)

    @property
    def dim_out(self) -> int:
        return channels_dim(self.channels_out)

    def _pairs(self):
        for l, mi in enumerate(self.channels_in):
            for k, mo in enumerate(self.channels_out):
                if mi and mo:
                    yield l, k, mi, mo

    def _self_degrees(self):
        if not self.self_interaction:
            return []
        return [k for k, mo in enumerate(self.channels_out)
                if mo and k < len(self.channels_in) and self.channels_in[k]]

    def param_shapes(self) -> dict:
        radial = {f"{l},{k}": _radial_shapes(self.radial_hidden, mo * mi * (2 * min(l, k) + 1))
                  for l, k, mi, mo in self._pairs()}
        selfw = {str(k): (self.channels_out[k], self.channels_in[k])
                 for k in self._self_degrees()}
        return {"radial": radial, "self": selfw}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        radial = {f"{l},{k}": _radial_init(rng, self.radial_hidden,
                                           mo * mi * (2 * min(l, k) + 1))
                  for l, k, mi, mo in self._pairs()}
        selfw = {str(k): rng.standard_normal((self.channels_out[k], self.channels_in[k]))
                 / math.sqrt(self.channels_in[k]) for k in self._self_degrees()}
        return {"radial": radial, "self": selfw}

    def forward(self, params, graph, f, pos):
        check_params(params, self.param_shapes(), "SE3Conv", exact=True)
        graph = check_graph(graph)
        f = node_array(f, "f", graph, self.dim_in)
        pos = positions(pos, graph, 3)
        edge_vec = edge_vectors(graph, pos)
        d = -edge_vec  # x_i - x_j: the published x_dst - x_src
        Y = o3.edge_harmonics(self.lmax, d, "component")
        r = edge_length(edge_vec, name="pos[src] - pos[dst]")[:, None]
        f_in = _split(f, self.channels_in)
        f_src = {l: scatter.gather(v, graph.src) for l, v in f_in.items()}
        msgs, pairs = {}, {}
        for l, k, mi, mo in self._pairs():
            key = f"{l},{k}"
            y, rc = _radial(params["radial"][key], r, self.backend)
            nf = 2 * min(l, k) + 1
            E = y.shape[0]
            R = y.reshape(E, mo, mi * nf)  # R[e, o, (i, J)]
            K = _basis(Y, l, k).reshape(E, nf * (2 * k + 1), 2 * l + 1)
            # B[e, (i, J), a] = (K_J f_j^i)_a for every input channel i and J
            B = np.matmul(f_src[l], K.transpose(0, 2, 1)).reshape(E, mi * nf, 2 * k + 1)
            m = np.matmul(R, B)  # m[e, o, a] = sum_{i,J} R[e, o, (i, J)] B[e, (i, J), a]
            msgs[k] = m if k not in msgs else msgs[k] + m
            pairs[key] = (rc, R, K, B)
        has_in = graph.in_degree() > 0
        out = {}
        for k, mo in enumerate(self.channels_out):
            if not mo:
                continue
            agg = (scatter.aggregate_mean(graph, msgs[k], backend=self.backend) if k in msgs
                   else np.zeros((graph.num_nodes, mo, 2 * k + 1)))
            if str(k) in params["self"]:
                agg = agg + has_in[:, None, None] * np.einsum(
                    "oi,nia->noa", params["self"][str(k)], f_in[k])
            out[k] = agg
        cache = SE3ConvCache(graph, edge_vec, d, r, Y, f_in, f_src, pairs, has_in)
        return _join(out, self.channels_out, graph.num_nodes), cache

    def backward(self, params, cache: SE3ConvCache, grad_out):
        check_cache(cache, SE3ConvCache, "SE3Conv")
        graph = cache.graph
        g = _split(_grad_out(grad_out, (graph.num_nodes, self.dim_out), "SE3Conv"),
                   self.channels_out)
        g_f = {l: np.zeros_like(v) for l, v in cache.f_in.items()}
        grads = {"radial": {}, "self": {}}
        # reverses the self term `has_in * S^k f^k_i`
        for k in self._self_degrees():
            gk = cache.has_in[:, None, None] * g[k]
            grads["self"][str(k)] = np.einsum("noa,nia->oi", gk, cache.f_in[k])
            g_f[k] += np.einsum("oi,noa->nia", params["self"][str(k)], gk)
        # reverses `mean over incoming messages` (a gather at the receivers, divided by deg)
        g_msg = {k: scatter.aggregate_mean_vjp(graph, None, g[k], backend=self.backend)
                 for k in g}
        g_Y = np.zeros_like(cache.Y)
        g_r = np.zeros_like(cache.r)
        g_src = {l: np.zeros_like(v) for l, v in cache.f_src.items()}
        for l, k, mi, mo in self._pairs():
            key = f"{l},{k}"
            rc, R, K, B = cache.pairs[key]
            gm = g_msg[k]
            E, nf = len(gm), 2 * min(l, k) + 1
            # reverses `m = R B` (batched over edges)
            g_R = np.matmul(gm, B.transpose(0, 2, 1))
            g_B = np.matmul(R.transpose(0, 2, 1), gm).reshape(E, mi, nf * (2 * k + 1))
            # reverses `B = f_j K^T`
            g_K = np.matmul(cache.f_src[l].transpose(0, 2, 1), g_B).transpose(0, 2, 1)
            g_src[l] += np.matmul(g_B, K)
            # reverses `K = basis(Y)` and `R = radial(r)`
            g_Y += _basis_vjp(g_K.reshape(E, nf, 2 * k + 1, 2 * l + 1), l, k, self.lmax)
            grads["radial"][key], g_rk = _radial_vjp(params["radial"][key], rc,
                                                     g_R.reshape(E, mo * mi * nf), self.backend)
            g_r += g_rk
        # reverses the gathers f_j = f[src]
        for l in g_src:
            g_f[l] += scatter.gather_vjp(cache.f_in[l], graph.src, g_src[l],
                                         backend=self.backend)[0]
        # reverses `Y = harmonics(d)`, `d = -edge_vec`, `r = |edge_vec|`, `edge_vec = x_j - x_i`
        g_vec = -o3.edge_harmonics_vjp(self.lmax, cache.d, g_Y, "component")
        g_vec = g_vec + edge_length_vjp(cache.edge_vec, g_r[:, 0], name="pos[src] - pos[dst]")
        g_pos = edge_vectors_vjp(graph, g_vec)
        grads["radial"] = dict(sorted(grads["radial"].items()))
        grads["self"] = dict(sorted(grads["self"].items()))
        return grads, (_join(g_f, self.channels_in, graph.num_nodes), g_pos)


# --- norm nonlinearity -------------------------------------------------------------------------


class SE3NormCache(NamedTuple):
    f: dict  # degree -> (N, m, 2l+1)
    norm: dict  # degree -> (N, m), clamped
    raw: dict  # degree -> (N, m), unclamped
    a: dict  # layer-norm output
    t: dict  # the gates


@dataclass(frozen=True)
class SE3NormNonlinearity(Block):
    r"""The SE(3)-Transformer code's ``GNormSE3`` with one layer (module docstring).

    Parameters
    ----------
    channels : tuple of int
        Channels per degree (published N-body model: ``(16, 16)``).
    backend : str

    Notes
    -----
    Params ``{"l": {"ln_gamma", "ln_beta", "W" (m, m), "b" (m,)}}`` per present degree, ``W``
    stored (in, out). ``forward(params, f) -> (f', cache)``; ``backward -> (grads, (grad_f,))``.
    A feature whose norm is below :math:`10^{-12}` has phase :math:`f/10^{-12}` and no gradient
    through its norm, as published.
    """

    channels: tuple = (16, 16)
    backend: str = "numpy"

    def __post_init__(self):
        object.__setattr__(self, "channels", check_channels(self.channels,
                                                            "SE3NormNonlinearity.channels"))
        check_backend(self.backend, "SE3NormNonlinearity")

    @property
    def dim(self) -> int:
        return channels_dim(self.channels)

    def param_shapes(self) -> dict:
        return {str(l): {"W": (m, m), "b": (m,), "ln_beta": (m,), "ln_gamma": (m,)}
                for l, m in enumerate(self.channels) if m}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {str(l): {"W": _kaiming_uniform(rng, m, m), "b": _torch_bias(rng, m, m),
                         "ln_beta": np.zeros(m), "ln_gamma": np.ones(m)}
                for l, m in enumerate(self.channels) if m}

    def forward(self, params, f):
        check_params(params, self.param_shapes(), "SE3NormNonlinearity", exact=True)
        f = as_float64(f, "f", ndim=2)
        if f.shape[1] != self.dim:
            raise ValueError(f"f must have shape (N, {self.dim}) for channels {self.channels}; "
                             f"got {f.shape}")
        parts = _split(f, self.channels)
        out, norm, raw, a_, t_ = {}, {}, {}, {}, {}
        for l, v in parts.items():
            p = params[str(l)]
            raw[l] = np.sqrt(np.sum(v * v, axis=2))
            norm[l] = np.maximum(raw[l], NORM_EPS)
            a_[l] = layer_norm(norm[l], p["ln_gamma"], p["ln_beta"], eps=LN_EPS)
            s = activations.relu(a_[l], backend=self.backend)
            t_[l] = dense.linear(s, p["W"], p["b"])
            out[l] = t_[l][:, :, None] * (v / norm[l][:, :, None])
        return (_join(out, self.channels, f.shape[0]),
                SE3NormCache(parts, norm, raw, a_, t_))

    def backward(self, params, cache: SE3NormCache, grad_out):
        check_cache(cache, SE3NormCache, "SE3NormNonlinearity")
        rows = next(iter(cache.f.values())).shape[0]
        g = _split(_grad_out(grad_out, (rows, self.dim), "SE3NormNonlinearity"), self.channels)
        grads, g_f = {}, {}
        for l, v in cache.f.items():
            p, n, t = params[str(l)], cache.norm[l], cache.t[l]
            phase = v / n[:, :, None]
            # reverses `out = t * phase`
            g_t = np.sum(g[l] * phase, axis=2)
            g_phase = t[:, :, None] * g[l]
            # reverses `t = W relu(LN(n)) + b`
            s = activations.relu(cache.a[l], backend=self.backend)
            g_s, g_W, g_b = dense.linear_vjp(s, p["W"], p["b"], g_t)
            g_a = activations.relu_vjp(cache.a[l], g_s, backend=self.backend)
            g_n, g_gamma, g_beta = layer_norm_vjp(n, p["ln_gamma"], p["ln_beta"], g_a,
                                                  eps=LN_EPS)
            # reverses `phase = v / n`
            g_v = g_phase / n[:, :, None]
            g_n = g_n - np.sum(g_phase * v, axis=2) / (n * n)
            # reverses `n = max(|v|, eps)` (no gradient below eps, as torch's clamp_min)
            live = cache.raw[l] >= NORM_EPS
            safe = np.where(live, cache.raw[l], 1.0)
            g_v = g_v + (np.where(live, g_n / safe, 0.0))[:, :, None] * v
            g_f[l] = g_v
            grads[str(l)] = {"W": g_W, "b": g_b, "ln_beta": g_beta, "ln_gamma": g_gamma}
        return grads, (_join(g_f, self.channels, rows),)
