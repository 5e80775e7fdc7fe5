r"""TFN-style steerable point convolution (e3nn's ``gate_points_2101`` Convolution + Gate).

Equations (receiver i, sender j, :math:`x_{ij} = x_j - x_i`, :math:`r_{ij} = \lVert x_{ij}\rVert`;
irreps in e3nn's layout, e3nn >= 0.5)
-------------------------------------------------------------------------------------------------

.. math::

    a_{ij} &= \phi(r_{ij}/r_{max})\, Y(x_{ij}/r_{ij}), \qquad
    \phi(x) = \tfrac12\big(1 - \cos(2\pi(x-1))\big) \text{ on } [\tfrac12, 1],
    \ 1 \text{ below}, \ 0 \text{ above},\\
    e_{ij,k} &= \tfrac{\sqrt{B}}{1.12} \exp\!\big(-((r_{ij} - \mu_k)/\Delta)^2\big),\quad
    \mu = \mathrm{linspace}(0, r_{max}, B),\ \Delta = \mu_1 - \mu_0,\\
    w_{ij} &= R(e_{ij}),\quad
    R:\ h \leftarrow c\,\mathrm{silu}(h W_k / \sqrt{h_{in}})\ \text{(hidden)},
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

Range: lengths come from :func:`geomp_ref.ops.geometry.edge_length` and directions from
:func:`geomp_ref.o3.edge_harmonics`, both scale-safe, so positions anywhere in the float64 range
give finite outputs and gradients (a Gaussian or a cutoff that underflows to 0 contributes an
exact 0 to the gradient, never :math:`0 \cdot \infty`).

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
from .._validate import (
    as_rng,
    check_bool,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    check_params,
    check_positive,
    node_array,
    positions,
)
from .._validate import grad_out as _grad_out
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..o3.activations import NORMALIZE_ACT, resolve_activation
from ..o3.spherical_harmonics import LMAX as _SH_LMAX
from ..o3.spherical_harmonics import NORMALIZATIONS as SH_NORMALIZATIONS
from ..ops import activations, scatter
from ..ops.geometry import edge_length, edge_length_vjp
from .base import Block, check_backend
from .tfn_radial import (
    gaussian_embedding,
    gaussian_embedding_vjp,
    smooth_cutoff,
    smooth_cutoff_vjp,
)

__all__ = [
    "TFNConv",
    "TFNConvCache",
    "gaussian_embedding",
    "gaussian_embedding_vjp",
    "smooth_cutoff",
    "smooth_cutoff_vjp",
]

class TFNConvCache(NamedTuple):
    graph: Graph
    edge_vec: np.ndarray
    edge_len: np.ndarray
    Y: np.ndarray
    cut: np.ndarray
    emb: np.ndarray
    hs: tuple  # radial-net layer inputs
    zs: tuple  # radial-net pre-activations
    sc: Any  # LinearCache of the self-connection (None without it)
    x: np.ndarray
    lin1: Any
    tp: Any
    lin2: Any
    gate: Any  # GateCache (None with gate=False)


def _irreps(value, name):
    try:
        return o3.Irreps(value)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
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
        Output features: after the gate (``gate=True``, like e3nn's ``irreps_hidden``: its
        scalars first, then the gated irreps) or of the convolution itself (``gate=False``).
    lmax : int
        Harmonics ``0e + 1o + ...`` up to ``lmax`` (parity :math:`(-1)^l`).
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
        Apply gate_points' gate (silu/tanh scalars, sigmoid gates).
    self_connection : bool
        Include :math:`\sin\frac\pi8 S f` (and the cos factor).
    act_constants : {'e3nn', 'exact', 'none'}
        Second-moment constants of the radial net and gate activations
        (:mod:`geomp_ref.o3.activations`).
    zero_length : {'raise', 'e3nn'}
        Zero-length edges: an error naming ``pos``, or e3nn's value (see
        :func:`geomp_ref.o3.edge_harmonics`; the length's gradient is 0 there).
    backend : str

    Notes
    -----
    ``forward(params, graph, f, pos) -> (out, cache)``; ``backward(params, cache, grad_out) ->
    (grads, (grad_f, grad_pos))``. Params ``{"radial": {"W0", ...}, "lin1", "lin2"[, "sc"]}``
    (the linear maps' params are :class:`geomp_ref.o3.Linear`'s, flat in e3nn's layout; radial
    weights (in, out) like e3nn's FullyConnectedNet). Properties (tested): E(3)-equivariant with
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
        check_int(self.lmax, "TFNConv.lmax", maximum=_SH_LMAX)
        check_positive(self.max_radius, "TFNConv.max_radius")
        check_int(self.num_basis, "TFNConv.num_basis", minimum=2)
        check_int(self.radial_neurons, "TFNConv.radial_neurons", minimum=1)
        check_int(self.radial_layers, "TFNConv.radial_layers", minimum=0)
        if self.num_neighbors is not None:
            check_positive(self.num_neighbors, "TFNConv.num_neighbors")
        check_choice(self.sh_normalization, "TFNConv.sh_normalization", SH_NORMALIZATIONS)
        check_bool(self.gate, "TFNConv.gate")
        check_bool(self.self_connection, "TFNConv.self_connection")
        check_choice(self.act_constants, "TFNConv.act_constants", NORMALIZE_ACT)
        check_choice(self.zero_length, "TFNConv.zero_length", ("raise", "e3nn"))
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
            # silu on 0e scalars, tanh (odd) on 0o scalars, sigmoid on the 0e gates
            plan = o3.Gate(scalars, ["silu" if ir.p == 1 else "tanh" for _, ir in scalars],
                           gates, ["sigmoid"] * len(gates), gated,
                           normalize_act=self.act_constants)
            if plan.irreps_out != irreps_out:
                raise ValueError(f"TFNConv.irreps_out must list all its scalars (l = 0, in any "
                                 f"parity order) before the gated irreps (the gate outputs "
                                 f"{plan.irreps_out}); got {irreps_out}")
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
    def param_shapes(self) -> dict:
        rs = self.radial_sizes
        shapes = {"radial": {f"W{k}": (rs[k], rs[k + 1]) for k in range(len(rs) - 1)},
                  "lin1": self.lin1.param_shapes(), "lin2": self.lin2.param_shapes()}
        if self.sc is not None:
            shapes["sc"] = self.sc.param_shapes()
        return shapes

    def init(self, rng) -> dict:
        """N(0, 1) weights everywhere, as e3nn initialises them."""
        rng = as_rng(rng, "rng")
        rs = self.radial_sizes
        params = {"radial": {f"W{k}": rng.standard_normal((rs[k], rs[k + 1]))
                             for k in range(len(rs) - 1)},
                  "lin1": self.lin1.init(rng), "lin2": self.lin2.init(rng)}
        if self.sc is not None:
            params["sc"] = self.sc.init(rng)
        return params

    def weight_normalization(self) -> dict:
        r"""The fan-in constants by which ``forward`` multiplies each stored weight, as a tree of
        ``param_shapes()``: :math:`1/\sqrt{h_{in}}` for the radial network's ``W_k`` and
        :meth:`geomp_ref.o3.Linear.weight_normalization` for ``lin1``, ``lin2`` and ``sc`` (the
        self-connection mixing constants :math:`\sin\frac\pi8, \cos\frac\pi8` belong to the
        architecture and are not included). Stored weights times these are the effective weights;
        see :func:`geomp_ref.train.standard_parametrization`."""
        rs = self.radial_sizes
        out = {"radial": {f"W{k}": np.full((rs[k], rs[k + 1]), 1.0 / math.sqrt(rs[k]))
                          for k in range(len(rs) - 1)},
               "lin1": self.lin1.weight_normalization(),
               "lin2": self.lin2.weight_normalization()}
        if self.sc is not None:
            out["sc"] = self.sc.weight_normalization()
        return out

    # ------------------------------------------------------------------ radial net
    def _silu_constant(self) -> float:
        return resolve_activation("silu", self.act_constants, "TFNConv.act_constants").c

    def _radial(self, params, emb):
        c = self._silu_constant()
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
        c = self._silu_constant()
        n = len(self.radial_sizes) - 1
        grads = {}
        for k in reversed(range(n)):
            if k < n - 1:
                g = c * activations.silu_vjp(zs[k], g)  # reverses `h = c * silu(z)`
            s = 1.0 / math.sqrt(self.radial_sizes[k])
            grads[f"W{k}"] = s * (hs[k].T @ g)  # reverses `z = h @ (W / sqrt(h_in))`
            g = g @ (s * params["radial"][f"W{k}"]).T
        return dict(sorted(grads.items())), g

    # ------------------------------------------------------------------ forward / backward
    def forward(self, params, graph, f, pos):
        check_params(params, self.param_shapes(), "TFNConv", exact=True)
        graph = check_graph(graph)
        f = node_array(f, "f", graph, self.irreps_in.dim)
        pos = positions(pos, graph, 3)
        edge_vec = edge_vectors(graph, pos)
        Y = o3.edge_harmonics(self.lmax, edge_vec, self.sh_normalization,
                              zero_length=self.zero_length)
        edge_len = edge_length(edge_vec, allow_zero=self.zero_length == "e3nn",
                               name="pos[src] - pos[dst]")
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
        out, gate_cache = conv, None
        if self.gate_plan is not None:
            out, gate_cache = self.gate_plan.forward({}, conv)
        cache = TFNConvCache(graph, edge_vec, edge_len, Y, cut, emb, hs, zs, sc_cache, x,
                             lin1_cache, tp_cache, lin2_cache, gate_cache)
        return out, cache

    def backward(self, params, cache: TFNConvCache, grad_out):
        check_cache(cache, TFNConvCache, "TFNConv")
        graph = cache.graph
        g = _grad_out(grad_out, (graph.num_nodes, self.irreps_out.dim), "TFNConv")
        if self.gate_plan is not None:
            _, (g,) = self.gate_plan.backward({}, cache.gate, g)  # reverses `out = gate(conv)`
        c_s, c_x = self._mix
        grads = {}
        # reverses `conv = c_s * s + c_x * y`
        grads["lin2"], (g_agg,) = self.lin2.backward(params["lin2"], cache.lin2, c_x * g)
        if self.num_neighbors is not None:
            g_agg = g_agg / math.sqrt(self.num_neighbors)
        # reverses `agg = aggregate(m_ij)` (a gather at the receivers)
        g_m = scatter.aggregate_vjp(graph, None, g_agg, backend=self.backend)
        # reverses `m_ij = tp(x[src], a_ij, w_ij)`
        _, (g_xj, g_a, g_w) = self.tp.backward({}, cache.tp, g_m)
        g_x = scatter.gather_vjp(cache.x, graph.src, g_xj, backend=self.backend)[0]
        grads["lin1"], (g_f,) = self.lin1.backward(params["lin1"], cache.lin1, g_x)
        if self.sc is not None:
            grads["sc"], (g_fs,) = self.sc.backward(params["sc"], cache.sc, c_s * g)
            g_f = g_f + g_fs
        # reverses `w_ij = radial(emb)`
        grads["radial"], g_emb = self._radial_vjp(params, cache.hs, cache.zs, g_w)
        # reverses `emb`, `a_ij = cut * Y`, `cut = phi(r / r_max)`
        g_len = gaussian_embedding_vjp(cache.edge_len, self.max_radius, self.num_basis, g_emb)
        g_cut = np.sum(g_a * cache.Y, axis=1)
        g_len = g_len + smooth_cutoff_vjp(cache.edge_len / self.max_radius, g_cut) / self.max_radius
        g_Y = cache.cut[:, None] * g_a
        # reverses `Y = edge_harmonics(edge_vec)` and `edge_len = |edge_vec|` (subgradient 0 at
        # a zero-length edge, as torch's norm)
        g_vec = o3.edge_harmonics_vjp(self.lmax, cache.edge_vec, g_Y, self.sh_normalization,
                                      zero_length=self.zero_length)
        g_vec = g_vec + edge_length_vjp(cache.edge_vec, g_len, allow_zero=True,
                                        name="pos[src] - pos[dst]")
        g_pos = edge_vectors_vjp(graph, g_vec)
        return grads, (g_f, g_pos)
