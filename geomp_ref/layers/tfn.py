r"""TFN-style steerable point convolution (e3nn's ``gate_points_2101`` Convolution + Gate).

Equations (receiver i, sender j, :math:`x_{ij} = x_j - x_i`, :math:`r_{ij} = \lVert x_{ij}\rVert`;
conventions: README "O(3) conventions", reference/variants_spec.md §5.1)
-------------------------------------------------------------------------------------------------

.. math::

    a_{ij} &= \phi(r_{ij}/r_{max})\, Y(x_{ij}/r_{ij}), \qquad
    \phi(x) = \tfrac12\big(1 - \cos(2\pi(x-1))\big) \text{ on } [\tfrac12, 1],
    \ 1 \text{ below}, \ 0 \text{ above},\\
    e_{ij,k} &= \tfrac{\sqrt{B}}{1.12} \exp\!\big(-((r_{ij} - \mu_k)/\Delta)^2\big),\quad
    \mu = \mathrm{linspace}(0, r_{max}, B),\ \Delta = \mu_1 - \mu_0,\\
    w_{ij} &= R(e_{ij}),\quad R:\ h \leftarrow c\,\mathrm{silu}(h W_k / \sqrt{h_{in}})\ \text{(hidden)},
    \ h W_{last} / \sqrt{h_{in}}\ \text{(last; no biases)},\\
    m_{ij} &= \mathrm{TP}_{uvu}\big(L_1(f)_j,\ a_{ij};\ w_{ij}\big), \qquad
    f'_i = \sin\tfrac{\pi}{8}\, S(f)_i + \cos\tfrac{\pi}{8}\, L_2\Big(\tfrac{1}{\sqrt{n}}
    \sum_{j} m_{ij}\Big)_i,

followed by the gate :math:`\mathrm{silu}/\tanh` on scalars and :math:`\sigma/\tanh` gates on
:math:`l > 0` irreps (``gate=True``). :math:`L_1, L_2, S` are equivariant linear maps
(:class:`geomp_ref.o3.Linear`, equal to e3nn's FCTP with a ``0e`` node attribute of ones); the
``cos`` factor applies only to output blocks that the self-connection ``S`` reaches. The
``uvu`` paths go into the "mid" irreps (every allowed ``l_in x l_sh -> l_out`` present in the
output, sorted), exactly as e3nn builds them, so e3nn weights copy across unchanged.

With ``0e`` features and ``lmax = 0`` the message is :math:`m_{ij} = \phi(r)\,R(e_{ij}) \odot
L_1(f)_j`: SchNet's continuous-filter convolution (tested).

Backward (reverse line order): the gate, the linear maps and the tensor product use their own
VJPs; :math:`\bar a_{ij}` and :math:`\bar w_{ij}` flow back to :math:`x_{ij}` through the harmonics
(:math:`(I - uu^T)\bar u / r`), the cutoff and the Gaussian basis
(:math:`\partial e_k / \partial r = -2 e_k (r - \mu_k)/\Delta^2`), then to positions through
:func:`geomp_ref.graph.edge_vectors_vjp`. Proof: ``derivations/tfn.py``.

References
----------
N. Thomas et al., "Tensor field networks", arXiv:1802.08219 (2018), eqs. (4)–(5).
M. Geiger, T. Smidt, "e3nn", arXiv:2207.09453 (2022); e3nn ``nn/models/gate_points_2101.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import o3
from .._validate import as_float64, check_int, check_positive
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import activations, scatter
from .base import Block, check_backend, check_params
from .segnn_common import (
    SH_NORMALIZATIONS,
    _check_zero_length,
    act_constant,
    edge_harmonics,
    edge_harmonics_vjp,
    gate_backward,
    gate_forward,
    make_gate,
)

__all__ = [
    "TFNConv",
    "TFNConvCache",
    "gaussian_embedding",
    "gaussian_embedding_vjp",
    "smooth_cutoff",
    "smooth_cutoff_vjp",
]

_SOFT_ONE_HOT_DIV = 1.12  # e3nn's soft_one_hot_linspace 'gaussian' divisor


def smooth_cutoff(x):
    r"""e3nn's ``smooth_cutoff``: 1 for ``x <= 1/2``, ``(1 - cos(2 pi (x - 1)))/2`` up to 1, then 0."""
    x = np.asarray(x, dtype=np.float64)
    u = 2.0 * (x - 1.0)
    y = (1.0 - np.cos(np.pi * u)) / 2.0
    return np.where(u > 0, 0.0, np.where(u < -1, 1.0, y))


def smooth_cutoff_vjp(x, grad_y):
    x = np.asarray(x, dtype=np.float64)
    u = 2.0 * (x - 1.0)
    d = np.where((u > 0) | (u < -1), 0.0, np.pi * np.sin(np.pi * u))
    return grad_y * d


def gaussian_embedding(r, max_radius: float, num_basis: int):
    r"""``soft_one_hot_linspace(r, 0, max_radius, B, 'gaussian', cutoff=False) * sqrt(B)``, (E, B)."""
    mu = np.linspace(0.0, max_radius, num_basis)
    step = mu[1] - mu[0]
    diff = (np.asarray(r, dtype=np.float64)[:, None] - mu) / step
    return np.exp(-diff * diff) / _SOFT_ONE_HOT_DIV * math.sqrt(num_basis)


def gaussian_embedding_vjp(r, max_radius: float, num_basis: int, grad_e):
    mu = np.linspace(0.0, max_radius, num_basis)
    step = mu[1] - mu[0]
    diff = (np.asarray(r, dtype=np.float64)[:, None] - mu) / step
    e = np.exp(-diff * diff) / _SOFT_ONE_HOT_DIV * math.sqrt(num_basis)
    return np.sum(grad_e * e * (-2.0 * diff / step), axis=1)


class TFNConvCache(NamedTuple):
    graph: Graph
    edge_vec: np.ndarray
    edge_len: np.ndarray
    u: np.ndarray  # unit directions
    Y: np.ndarray
    cut: np.ndarray
    a_ij: np.ndarray
    emb: np.ndarray
    h: tuple  # radial-net layer inputs
    z: tuple  # radial-net pre-activations
    w_ij: np.ndarray
    s: Any  # LinearCache of the self-connection (None without it)
    x: np.ndarray
    lin1: Any
    tp: Any
    m_ij: np.ndarray
    agg: np.ndarray
    lin2: Any
    conv: np.ndarray
    gate: Any


def _irreps(value, name):
    try:
        return o3.Irreps(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"TFNConv.{name} must be an irreps string like '8x0e+4x1o'; got "
                         f"{value!r} ({exc})") from None


def _path_exists(irreps_in, irreps_sh, ir_out) -> bool:
    return any(ir_out in ir1 * ir2 for _, ir1 in irreps_in for _, ir2 in irreps_sh)


@dataclass(frozen=True)
class TFNConv(Block):
    r"""Steerable convolution :math:`f'_i = \mathrm{Gate}(\sin\frac\pi8 S f_i + \cos\frac\pi8
    L_2 \frac{1}{\sqrt n}\sum_j \mathrm{TP}(L_1 f_j, a_{ij}; R(e_{ij})))`.

    Parameters
    ----------
    irreps_in : Irreps or str
        Node features ``f``.
    irreps_out : Irreps or str
        Output features: after the gate (``gate=True``, like e3nn's ``irreps_hidden``) or of the
        convolution itself (``gate=False``).
    lmax : int
        Harmonics ``0e + 1o + ... `` up to ``lmax`` (parity :math:`(-1)^l`).
    max_radius : float
        Cutoff radius of :math:`\phi` and range of the Gaussian basis.
    num_basis : int
        Number ``B >= 2`` of Gaussians.
    radial_neurons, radial_layers : int
        Hidden width and number of hidden layers of the radial network.
    num_neighbors : float or None
        Messages are divided by :math:`\sqrt{n}`; ``None`` = plain sum.
    sh_normalization : {'component', 'norm', 'integral'}
    gate : bool
        Apply gate_points' gate (silu/tanh scalars, sigmoid/tanh gates).
    self_connection : bool
        Include :math:`\sin\frac\pi8 S f` (and the cos factor).
    act_constants : {'e3nn', 'exact', 'none'}
        Second-moment constants of the radial net and gate activations.
    zero_length : {'raise', 'e3nn'}
        Zero-length edges: error naming ``pos``, or e3nn's value (see
        :func:`~geomp_ref.layers.segnn_blocks.edge_harmonics`; the length's gradient is 0 there).
    backend : str

    Notes
    -----
    ``forward(params, graph, f, pos) -> (out, cache)``; ``backward(params, cache, grad_out) ->
    (grads, (grad_f, grad_pos))``. Params ``{"radial": {"W0", ...}, "lin1": {"weight"},
    "lin2": {"weight"}, "sc": {"weight"}}`` (flat weights in e3nn's layout; radial weights
    (in, out) like e3nn's FullyConnectedNet). Properties (tested): E(3)-equivariant with
    reflections, equal to e3nn's Convolution + Gate, reduces to CFConv for scalars.
    """

    irreps_in: Any
    irreps_out: Any
    lmax: int = 1
    max_radius: float = 2.0
    num_basis: int = 8
    radial_neurons: int = 16
    radial_layers: int = 1
    num_neighbors: Any = None
    sh_normalization: str = "component"
    gate: bool = True
    self_connection: bool = True
    act_constants: str = "e3nn"
    zero_length: str = "raise"
    backend: str = "numpy"
    irreps_conv: Any = field(init=False, repr=False, compare=False)
    irreps_sh: Any = field(init=False, repr=False, compare=False)
    gate_plan: Any = field(init=False, repr=False, compare=False)
    lin1: Any = field(init=False, repr=False, compare=False)
    lin2: Any = field(init=False, repr=False, compare=False)
    sc: Any = field(init=False, repr=False, compare=False)
    tp: Any = field(init=False, repr=False, compare=False)
    radial_sizes: tuple = field(init=False, repr=False, compare=False)
    _mix: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        irreps_in = _irreps(self.irreps_in, "irreps_in")
        irreps_out = _irreps(self.irreps_out, "irreps_out")
        put(self, "irreps_in", irreps_in)
        put(self, "irreps_out", irreps_out)
        check_int(self.lmax, "TFNConv.lmax")
        check_positive(self.max_radius, "TFNConv.max_radius")
        check_int(self.num_basis, "TFNConv.num_basis", minimum=2)
        check_int(self.radial_neurons, "TFNConv.radial_neurons", minimum=1)
        check_int(self.radial_layers, "TFNConv.radial_layers", minimum=0)
        if self.num_neighbors is not None:
            check_positive(self.num_neighbors, "TFNConv.num_neighbors")
        if self.sh_normalization not in SH_NORMALIZATIONS:
            raise ValueError(f"TFNConv.sh_normalization must be one of {SH_NORMALIZATIONS}; got "
                             f"{self.sh_normalization!r}")
        act_constant("silu", self.act_constants)
        _check_zero_length(self.zero_length)
        check_backend(self.backend, "TFNConv")
        sh = o3.Irreps.spherical_harmonics(self.lmax)
        put(self, "irreps_sh", sh)
        for mul, ir in irreps_out:
            if not _path_exists(irreps_in, sh, ir):
                raise ValueError(
                    f"TFNConv.irreps_out: {mul}x{ir} cannot be coupled from irreps_in={irreps_in} "
                    f"and harmonics up to lmax={self.lmax}; remove it or raise lmax")
        if self.gate:
            scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
            gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
            g_ir = "0e" if _path_exists(irreps_in, sh, o3.Irrep("0e")) else "0o"
            if gated.num_irreps and g_ir == "0o":
                raise ValueError("TFNConv.irreps_out: no 0e gate can be built from irreps_in="
                                 f"{irreps_in}; use gate=False or add a 0e input")
            gates = o3.Irreps([(m, g_ir) for m, _ in gated])
            plan = make_gate(scalars, tuple("silu" if ir.p == 1 else "tanh" for _, ir in scalars),
                             gates, ("sigmoid",) * len(gates), gated, self.act_constants,
                             "TFNConv.irreps_out")
            if plan.irreps_out != irreps_out:
                raise ValueError(f"TFNConv.irreps_out must list scalars before gated irreps (the "
                                 f"gate outputs {plan.irreps_out}); got {irreps_out}")
            conv_out = plan.irreps_in
        else:
            plan, conv_out = None, irreps_out
        put(self, "gate_plan", plan)
        put(self, "irreps_conv", conv_out)
        # uvu paths into the sorted "mid" irreps, as e3nn's Convolution builds them
        mid, ins = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_edge) in enumerate(sh):
                for ir_o in ir_in * ir_edge:
                    if ir_o in conv_out:
                        ins.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_o))
        mid = o3.Irreps(mid)
        srt = mid.sort()
        ins = [(a, b, srt.p[c], m, t) for a, b, c, m, t in ins]
        tp = o3.TensorProduct(irreps_in, sh, srt.irreps, ins, internal_weights=False,
                              shared_weights=False)
        put(self, "tp", tp)
        put(self, "lin1", o3.Linear(irreps_in, irreps_in))
        put(self, "lin2", o3.Linear(srt.irreps, conv_out))
        sc = o3.Linear(irreps_in, conv_out) if self.self_connection else None
        put(self, "sc", sc)
        put(self, "radial_sizes", (self.num_basis,) + (self.radial_neurons,) * self.radial_layers
            + (tp.weight_numel,))
        if sc is not None:
            reached = np.zeros(conv_out.dim, bool)
            sl = conv_out.slices()
            for _, i_out in sc.instructions:
                reached[sl[i_out]] = True
            c_x = np.where(reached, math.cos(math.pi / 8), 1.0)
            put(self, "_mix", (math.sin(math.pi / 8), c_x))
        else:
            put(self, "_mix", (0.0, np.ones(conv_out.dim)))

    # ------------------------------------------------------------------ params
    def init(self, rng: np.random.Generator) -> dict:
        """N(0, 1) weights everywhere, as e3nn initialises them."""
        rs = self.radial_sizes
        params = {"radial": {f"W{k}": rng.standard_normal((rs[k], rs[k + 1]))
                             for k in range(len(rs) - 1)},
                  "lin1": self.lin1.init(rng), "lin2": self.lin2.init(rng)}
        if self.sc is not None:
            params["sc"] = self.sc.init(rng)
        return params

    def _check_params(self, params):
        rs = self.radial_sizes
        shapes = {"radial": {f"W{k}": (rs[k], rs[k + 1]) for k in range(len(rs) - 1)},
                  "lin1": {"weight": (self.lin1.weight_numel,)},
                  "lin2": {"weight": (self.lin2.weight_numel,)}}
        if self.sc is not None:
            shapes["sc"] = {"weight": (self.sc.weight_numel,)}
        check_params(params, shapes, "TFNConv")

    # ------------------------------------------------------------------ radial net
    def _radial(self, params, emb):
        c = act_constant("silu", self.act_constants)
        n = len(self.radial_sizes) - 1
        h, hs, zs = emb, [], []
        for k in range(n):
            W = params["radial"][f"W{k}"] / math.sqrt(self.radial_sizes[k])
            hs.append(h)
            z = h @ W
            zs.append(z)
            h = c * activations.silu(z) if k < n - 1 else z
        return h, tuple(hs), tuple(zs)

    def _radial_vjp(self, params, hs, zs, g):
        c = act_constant("silu", self.act_constants)
        n = len(self.radial_sizes) - 1
        grads = {}
        for k in reversed(range(n)):
            if k < n - 1:
                g = c * activations.silu_vjp(zs[k], g)  # reverses `h = c * silu(z)`
            s = 1.0 / math.sqrt(self.radial_sizes[k])
            grads[f"W{k}"] = s * (hs[k].T @ g)  # reverses `z = h @ (W / sqrt(h_in))`
            g = g @ (s * params["radial"][f"W{k}"]).T
        return grads, g

    # ------------------------------------------------------------------ forward / backward
    def forward(self, params, graph: Graph, f, pos):
        self._check_params(params)
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a Graph built by make_graph; got {type(graph).__name__}")
        f = as_float64(f, "f", ndim=2)
        if f.shape != (graph.num_nodes, self.irreps_in.dim):
            raise ValueError(f"f must have shape (num_nodes, irreps_in.dim) = ({graph.num_nodes}, "
                             f"{self.irreps_in.dim}) for irreps_in={self.irreps_in}; got {f.shape}")
        pos = as_float64(pos, "pos", ndim=2)
        if pos.shape != (graph.num_nodes, 3):
            raise ValueError(f"pos must have shape (num_nodes, 3) = ({graph.num_nodes}, 3); got "
                             f"{pos.shape}")
        edge_vec = edge_vectors(graph, pos)
        Y, u = edge_harmonics(edge_vec, self.lmax, self.sh_normalization, self.zero_length)
        edge_len = np.sqrt(np.sum(edge_vec * edge_vec, axis=1))
        cut = smooth_cutoff(edge_len / self.max_radius)
        a_ij = cut[:, None] * Y
        emb = gaussian_embedding(edge_len, self.max_radius, self.num_basis)
        w_ij, hs, zs = self._radial(params, emb)
        s, sc_cache = (self.sc.forward(params["sc"], f) if self.sc is not None else (0.0, None))
        x, lin1_cache = self.lin1.forward(params["lin1"], f)
        m_ij, tp_cache = self.tp.forward({}, x[graph.src], a_ij, w_ij)
        agg = scatter.aggregate(graph, m_ij, backend=self.backend)
        if self.num_neighbors is not None:
            agg = agg / math.sqrt(self.num_neighbors)
        y, lin2_cache = self.lin2.forward(params["lin2"], agg)
        c_s, c_x = self._mix
        conv = c_s * s + c_x * y
        if self.gate_plan is not None:
            out, gate_cache = gate_forward(self.gate_plan, conv)
        else:
            out, gate_cache = conv, None
        cache = TFNConvCache(graph, edge_vec, edge_len, u, Y, cut, a_ij, emb, hs, zs, w_ij, sc_cache, x,
                             lin1_cache, tp_cache, m_ij, agg, lin2_cache, conv, gate_cache)
        return out, cache

    def backward(self, params, cache: TFNConvCache, grad_out):
        g = as_float64(grad_out, "grad_out", ndim=2)
        if self.gate_plan is not None:
            g = gate_backward(self.gate_plan, cache.gate, g)  # reverses `out = gate(conv)`
        c_s, c_x = self._mix
        grads = {}
        # reverses `conv = c_s * s + c_x * y`
        grads["lin2"], (g_agg,) = self.lin2.backward(params["lin2"], cache.lin2, c_x * g)
        if self.num_neighbors is not None:
            g_agg = g_agg / math.sqrt(self.num_neighbors)
        # reverses `agg = aggregate(m_ij)` (a gather at the receivers)
        graph = cache.graph
        g_m = scatter.aggregate_vjp(graph, cache.m_ij, g_agg, backend=self.backend)
        # reverses `m_ij = tp(x[src], a_ij, w_ij)`
        _, (g_xj, g_a, g_w) = self.tp.backward({}, cache.tp, g_m)
        g_x = scatter.gather_vjp(cache.x, graph.src, g_xj, backend=self.backend)[0]
        grads["lin1"], (g_f,) = self.lin1.backward(params["lin1"], cache.lin1, g_x)
        if self.sc is not None:
            grads["sc"], (g_fs,) = self.sc.backward(params["sc"], cache.s, c_s * g)
            g_f = g_f + g_fs
        # reverses `w_ij = radial(emb)`
        grads["radial"], g_emb = self._radial_vjp(params, cache.h, cache.z, g_w)
        # reverses `emb`, `a_ij = cut * Y`, `cut = phi(r / r_max)`
        g_len = gaussian_embedding_vjp(cache.edge_len, self.max_radius, self.num_basis, g_emb)
        g_cut = np.sum(g_a * cache.Y, axis=1)
        g_len = g_len + smooth_cutoff_vjp(cache.edge_len / self.max_radius, g_cut) / self.max_radius
        g_Y = cache.cut[:, None] * g_a
        g_vec = edge_harmonics_vjp(cache.edge_vec, cache.u, self.lmax, self.sh_normalization, g_Y)
        # reverses `edge_len = |edge_vec|` (0 where the edge has zero length, as torch's norm)
        safe = np.where(cache.edge_len > 0, cache.edge_len, 1.0)
        g_vec = g_vec + np.where(cache.edge_len > 0, g_len / safe, 0.0)[:, None] * cache.edge_vec
        g_pos = edge_vectors_vjp(graph, g_vec)
        return grads, (g_f, g_pos)
