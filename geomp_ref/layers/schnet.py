r"""SchNet (Schütt et al. 2017/2018) in PyG's structure: CFConv, interaction block, full model.

Edge geometry (README "Conventions": edge_index row 0 = sender j, row 1 = receiver i):
:math:`d_{ij} = \lVert x_j - x_i \rVert`, Gaussian expansion
:math:`e_k(d) = \exp(-\gamma (d - \mu_k)^2)`, :math:`\mu_k` = linspace(0, r_c, G),
:math:`\gamma = \tfrac12 / (\mu_1 - \mu_0)^2`, cosine cutoff
:math:`C(d) = \tfrac12(\cos(\pi d / r_c) + 1)` for :math:`d < r_c` (0 beyond), shifted softplus
:math:`\mathrm{ssp}(x) = \log(1 + e^x) - \ln 2`.

**CFConv** (continuous-filter convolution, PyG ``CFConv``):

.. math::

    W_{ij} = \big(\mathrm{ssp}(e(d_{ij}) W_0 + b_0) W_1 + b_1\big)\, C(d_{ij}), \qquad
    y = f\, W_{in}, \qquad
    \mathrm{agg}_i = \sum_{j} y_j \odot W_{ij}, \qquad
    f'_i = \mathrm{agg}_i W_{out} + b_{out}.

The sum is the fused kernel :func:`geomp_ref.ops.scatter.weighted_aggregate` on the chosen backend
(no (E, F) message array). **SchNetInteraction**: :math:`v = \mathrm{ssp}(\mathrm{CFConv}(h)) W + b`
(the residual :math:`h \leftarrow h + v` lives in the model, as in PyG). **SchNet**:
:math:`h^0_i = \mathrm{Emb}[z_i]`, :math:`h^{t} = h^{t-1} + v^t(h^{t-1})`, atom energies
:math:`\epsilon_i = \mathrm{ssp}(h^T_i W_{o1} + b_{o1}) W_{o2} + b_{o2}` and one energy per graph,
:math:`E_b = \sum_{i \in b} \epsilon_i` (``readout="add"``) or the mean.

Backward (reverse order; proof ``derivations/schnet.py``): with :math:`\bar W_{ij}` the edge product
:math:`\bar{\mathrm{agg}}_i \odot y_j`,
:math:`\bar C_{ij} = \langle \bar W_{ij}, \tilde W_{ij}\rangle`,
:math:`\bar d_{ij} = \langle \bar e_{ij}, e'(d_{ij})\rangle + \bar C_{ij} C'(d_{ij})` and the forces
:math:`\bar x_j \mathrel{+}= \bar d_{ij} (x_j - x_i)/d_{ij}`, :math:`\bar x_i \mathrel{-}= \ldots`.

Constants (variants_spec §3, README "float64 traps"): ``constants="exact"`` uses the correctly
rounded :math:`\ln 2`, :math:`\mu` = ``np.linspace`` and :math:`\gamma = 0.5/\delta^2` in float64;
``constants="pyg"`` reproduces a PyG module built under torch's default float32 dtype: the
float32-born shift ``LN2_PYG``, float32 centres and the :math:`\gamma` of their float32 spacing, and
torch's softplus threshold 20 (``softplus(x) = x`` for ``x > 20``). A :class:`SchNetConstants`
instance gives every constant explicitly; :func:`geomp_ref.interop.pyg.schnet` copies a module's
buffers into one (torch's vectorised float32 ``linspace`` can differ from NumPy's by an ulp, so a
bit-exact match needs the copied buffer). There is no neighbour cap: the graph the caller passes is
used as is (:meth:`SchNet.graph` builds the full radius graph; PyG caps at 32 neighbours).

References: K. T. Schütt et al., "SchNet: A continuous-filter convolutional neural network for
modeling quantum interactions", NeurIPS 2017, eqs. (1)-(5); J. Chem. Phys. 148, 241722 (2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64, as_index, check_int, check_positive
from ..graph import Graph, edge_vectors, edge_vectors_vjp, radius_graph
from ..ops import activations, dense, geometry, radial, scatter
from .base import Block, check_backend, check_params

__all__ = [
    "CFConv",
    "CFConvCache",
    "SchNet",
    "SchNetCache",
    "SchNetConstants",
    "SchNetInteraction",
    "SchNetInteractionCache",
]


# --- constants --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchNetConstants:
    """Every numerical constant of SchNet's edge and activation functions, explicitly.

    Attributes
    ----------
    offsets : tuple of float
        Gaussian centres :math:`\\mu_k` (G values).
    gamma : float
        Gaussian width :math:`\\gamma > 0` (PyG stores ``coeff = -gamma``).
    shift : float
        Shift of the shifted softplus (``ln 2``).
    softplus_threshold : float or None
        ``None`` for the exact softplus; ``20.0`` for torch's ``F.softplus`` (returns ``x`` above).
    """

    offsets: tuple
    gamma: float
    shift: float
    softplus_threshold: float | None = None

    @classmethod
    def exact(cls, cutoff: float, num_rbf: int) -> SchNetConstants:
        mu, gamma = radial.gaussian_centers(0.0, cutoff, num_rbf)
        return cls(tuple(float(m) for m in mu), float(gamma), activations.LN2, None)

    @classmethod
    def pyg(cls, cutoff: float, num_rbf: int) -> SchNetConstants:
        # PyG under float32 default dtype: offsets are a float32 linspace, coeff is computed from
        # the float32 spacing read back with .item(), ln 2 is a float32 tensor read back likewise.
        mu32 = np.linspace(0.0, cutoff, num_rbf, dtype=np.float32)
        delta = float(mu32[1] - mu32[0])
        return cls(tuple(float(m) for m in mu32), 0.5 / delta**2, activations.LN2_PYG, 20.0)


def _resolve_constants(constants, cutoff: float, num_rbf: int, owner: str) -> SchNetConstants:
    if isinstance(constants, SchNetConstants):
        if len(constants.offsets) != num_rbf:
            raise ValueError(
                f"{owner}.constants.offsets must hold num_rbf = {num_rbf} centres; "
                f"got {len(constants.offsets)}"
            )
        check_positive(constants.gamma, f"{owner}.constants.gamma")
        return constants
    if constants == "exact":
        return SchNetConstants.exact(cutoff, num_rbf)
    if constants == "pyg":
        return SchNetConstants.pyg(cutoff, num_rbf)
    raise ValueError(
        f"{owner}.constants must be 'exact', 'pyg' or a SchNetConstants; got {constants!r}"
    )


def _torch_linear_init(rng, fan_in, fan_out, bias=True):
    bound = 1.0 / np.sqrt(fan_in)
    W = rng.uniform(-bound, bound, size=(fan_in, fan_out))
    return (W, rng.uniform(-bound, bound, size=(fan_out,))) if bias else (W, None)


def _check_graph(graph):
    if not isinstance(graph, Graph):
        raise TypeError(
            f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
        )


def _check_nodes(x, name, graph, width):
    x = as_float64(x, name, ndim=2)
    if x.shape != (graph.num_nodes, width):
        raise ValueError(
            f"{name} must have shape (num_nodes, {width}) = ({graph.num_nodes}, {width}); "
            f"got {x.shape}"
        )
    return x


def _check_pos(pos, graph):
    pos = as_float64(pos, "pos", ndim=2)
    if pos.shape != (graph.num_nodes, 3):
        raise ValueError(
            f"pos must have shape (num_nodes, 3) = ({graph.num_nodes}, 3); got {pos.shape}"
        )
    return pos


# --- CFConv -----------------------------------------------------------------------------------


class CFConvCache(NamedTuple):
    edge_vec: np.ndarray  # (E, 3) x_j - x_i
    d: np.ndarray  # (E,) |x_j - x_i|
    e: np.ndarray  # (E, G) Gaussian expansion
    z1: np.ndarray  # (E, F) first filter layer, pre-activation
    s1: np.ndarray  # (E, F) ssp(z1)
    w_raw: np.ndarray  # (E, F) filter before the cutoff
    c: np.ndarray  # (E,) cosine cutoff
    w_ij: np.ndarray  # (E, F) filter
    f: np.ndarray  # (N, H) input features
    y: np.ndarray  # (N, F) f W_in
    agg: np.ndarray  # (N, F)
    graph: Graph


@dataclass(frozen=True)
class CFConv(Block):
    r"""Continuous-filter convolution, :math:`f'_i = \mathrm{Lin}_{out}(\sum_j W_{ij} \odot y_j)`.

    Parameters
    ----------
    in_channels, out_channels : int
        H (input width) and output width.
    num_filters : int
        F, the filter width.
    num_rbf : int
        G, number of Gaussians (PyG default 50).
    cutoff : float
        :math:`r_c` (PyG default 10.0); edges with :math:`d \ge r_c` contribute 0.
    constants : {"exact", "pyg"} or SchNetConstants
        See the module docstring.
    backend : str
        Backend of the fused aggregation (``"numpy"``, ``"numba"``, ``"cuda"``).

    Params: ``{"W_in": (H, F), "filter": {"W0": (G, F), "b0": (F,), "W1": (F, F), "b1": (F,)},
    "W_out": (F, H_out), "b_out": (H_out,)}``.

    ``forward(params, graph, f, pos) -> (f', CFConvCache)``; ``backward`` returns
    ``(grad_params, (grad_f, grad_pos))``.

    Raises
    ------
    ValueError
        On coincident points joined by an edge (the distance has no derivative there), wrong shapes,
        non-finite input.

    Notes
    -----
    E(3)-invariant, permutation-equivariant. Proof of the VJP: ``derivations/schnet.py``.
    """

    in_channels: int
    out_channels: int
    num_filters: int
    num_rbf: int = 50
    cutoff: float = 10.0
    constants: object = "exact"
    backend: str = "numpy"

    def __post_init__(self):
        for name in ("in_channels", "out_channels", "num_filters"):
            check_int(getattr(self, name), f"CFConv.{name}", minimum=1)
        check_int(self.num_rbf, "CFConv.num_rbf", minimum=2)
        object.__setattr__(self, "cutoff", check_positive(self.cutoff, "CFConv.cutoff"))
        _resolve_constants(self.constants, self.cutoff, self.num_rbf, "CFConv")
        check_backend(self.backend, "CFConv")

    @property
    def consts(self) -> SchNetConstants:
        return _resolve_constants(self.constants, self.cutoff, self.num_rbf, "CFConv")

    def _shapes(self):
        H, F, G, O = self.in_channels, self.num_filters, self.num_rbf, self.out_channels
        return {
            "W_in": (H, F),
            "filter": {"W0": (G, F), "b0": (F,), "W1": (F, F), "b1": (F,)},
            "W_out": (F, O),
            "b_out": (O,),
        }

    def init(self, rng: np.random.Generator) -> dict:
        H, F, G, O = self.in_channels, self.num_filters, self.num_rbf, self.out_channels
        W0, b0 = _torch_linear_init(rng, G, F)
        W1, b1 = _torch_linear_init(rng, F, F)
        W_in, _ = _torch_linear_init(rng, H, F, bias=False)
        W_out, b_out = _torch_linear_init(rng, F, O)
        return {
            "W_in": W_in,
            "filter": {"W0": W0, "b0": b0, "W1": W1, "b1": b1},
            "W_out": W_out,
            "b_out": b_out,
        }

    def forward(self, params, graph, f, pos):
        _check_graph(graph)
        check_params(params, self._shapes(), "CFConv")
        f = _check_nodes(f, "f", graph, self.in_channels)
        pos = _check_pos(pos, graph)
        edge_vec = edge_vectors(graph, pos)  # x_j - x_i
        d = geometry.edge_length(edge_vec)  # raises on coincident endpoints
        return self._forward_lengths(params, graph, f, edge_vec, d)

    def _forward_lengths(self, params, graph, f, edge_vec, d):
        k = self.consts
        mu = np.asarray(k.offsets)
        ssp = activations.shifted_softplus
        p = params["filter"]
        e = radial.gaussian_rbf(d, mu, k.gamma)
        z1 = dense.linear(e, p["W0"], p["b0"])
        s1 = ssp(z1, k.shift, k.softplus_threshold)
        w_raw = dense.linear(s1, p["W1"], p["b1"])
        c = radial.cosine_cutoff(d, self.cutoff)
        w_ij = w_raw * c[:, None]
        y = dense.linear(f, params["W_in"])
        agg = scatter.weighted_aggregate(graph, y, w_ij, backend=self.backend)
        out = dense.linear(agg, params["W_out"], params["b_out"])
        return out, CFConvCache(edge_vec, d, e, z1, s1, w_raw, c, w_ij, f, y, agg, graph)

    def backward(self, params, cache: CFConvCache, grad_out):
        grads, grad_f, grad_d = self._backward_lengths(params, cache, grad_out)
        grad_edge_vec = geometry.edge_length_vjp(cache.edge_vec, grad_d)  # reverses d = |edge_vec|
        return grads, (grad_f, edge_vectors_vjp(cache.graph, grad_edge_vec))

    def _backward_lengths(self, params, cache: CFConvCache, grad_out):
        k = self.consts
        p = params["filter"]
        g = np.asarray(grad_out, dtype=np.float64)
        # out = agg W_out + b_out
        g_agg, gW_out, gb_out = dense.linear_vjp(cache.agg, params["W_out"], params["b_out"], g)
        # agg = weighted_aggregate(y, w_ij)
        g_y, g_w = scatter.weighted_aggregate_vjp(
            cache.graph, cache.y, cache.w_ij, g_agg, backend=self.backend
        )
        # y = f W_in
        g_f, gW_in, _ = dense.linear_vjp(cache.f, params["W_in"], None, g_y)
        # w_ij = w_raw * c
        g_c = np.sum(g_w * cache.w_raw, axis=1)
        g_raw = g_w * cache.c[:, None]
        # c = C(d)
        g_d = radial.cosine_cutoff_vjp(cache.d, self.cutoff, g_c)
        # w_raw = s1 W1 + b1 ; s1 = ssp(z1) ; z1 = e W0 + b0
        g_s1, gW1, gb1 = dense.linear_vjp(cache.s1, p["W1"], p["b1"], g_raw)
        g_z1 = activations.shifted_softplus_vjp(cache.z1, g_s1, k.shift, k.softplus_threshold)
        g_e, gW0, gb0 = dense.linear_vjp(cache.e, p["W0"], p["b0"], g_z1)
        # e = gaussian_rbf(d)
        g_d = g_d + radial.gaussian_rbf_vjp(cache.d, np.asarray(k.offsets), k.gamma, g_e)
        grads = {
            "W_in": gW_in,
            "filter": {"W0": gW0, "b0": gb0, "W1": gW1, "b1": gb1},
            "W_out": gW_out,
            "b_out": gb_out,
        }
        return grads, g_f, g_d


# --- interaction block ------------------------------------------------------------------------


class SchNetInteractionCache(NamedTuple):
    conv: CFConvCache
    u: np.ndarray  # (N, H) CFConv output
    s: np.ndarray  # (N, H) ssp(u)


@dataclass(frozen=True)
class SchNetInteraction(Block):
    r"""PyG's ``InteractionBlock``: :math:`v = \mathrm{ssp}(\mathrm{CFConv}(h))\, W + b`.

    Parameters
    ----------
    hidden : int
        H (CFConv maps H -> H).
    num_filters, num_rbf, cutoff, constants, backend
        As :class:`CFConv`.

    Params: ``{"conv": CFConv params, "W": (H, H), "b": (H,)}``. ``forward(params, graph, h, pos)
    -> (v, cache)``; ``backward -> (grads, (grad_h, grad_pos))``. The residual is in
    :class:`SchNet`.
    """

    hidden: int
    num_filters: int
    num_rbf: int = 50
    cutoff: float = 10.0
    constants: object = "exact"
    backend: str = "numpy"

    def __post_init__(self):
        _ = self.conv  # validates the fields through CFConv

    @property
    def conv(self) -> CFConv:
        return CFConv(
            self.hidden,
            self.hidden,
            self.num_filters,
            self.num_rbf,
            self.cutoff,
            self.constants,
            self.backend,
        )

    def _shapes(self):
        H = self.hidden
        return {"conv": self.conv._shapes(), "W": (H, H), "b": (H,)}

    def init(self, rng: np.random.Generator) -> dict:
        W, b = _torch_linear_init(rng, self.hidden, self.hidden)
        return {"conv": self.conv.init(rng), "W": W, "b": b}

    def forward(self, params, graph, h, pos):
        _check_graph(graph)
        check_params(params, self._shapes(), "SchNetInteraction")
        h = _check_nodes(h, "h", graph, self.hidden)
        pos = _check_pos(pos, graph)
        edge_vec = edge_vectors(graph, pos)
        d = geometry.edge_length(edge_vec)
        return self._forward_lengths(params, graph, h, edge_vec, d)

    def _forward_lengths(self, params, graph, h, edge_vec, d):
        k = self.conv.consts
        u, conv_cache = self.conv._forward_lengths(params["conv"], graph, h, edge_vec, d)
        s = activations.shifted_softplus(u, k.shift, k.softplus_threshold)
        v = dense.linear(s, params["W"], params["b"])
        return v, SchNetInteractionCache(conv_cache, u, s)

    def backward(self, params, cache: SchNetInteractionCache, grad_out):
        grads, g_h, g_d = self._backward_lengths(params, cache, grad_out)
        g_vec = geometry.edge_length_vjp(cache.conv.edge_vec, g_d)  # reverses d = |edge_vec|
        return grads, (g_h, edge_vectors_vjp(cache.conv.graph, g_vec))

    def _backward_lengths(self, params, cache: SchNetInteractionCache, grad_out):
        k = self.conv.consts
        g_s, gW, gb = dense.linear_vjp(cache.s, params["W"], params["b"], grad_out)  # v = s W + b
        g_u = activations.shifted_softplus_vjp(cache.u, g_s, k.shift, k.softplus_threshold)
        g_conv, g_h, g_d = self.conv._backward_lengths(params["conv"], cache.conv, g_u)
        return {"conv": g_conv, "W": gW, "b": gb}, g_h, g_d


# --- model ------------------------------------------------------------------------------------


class SchNetCache(NamedTuple):
    z: np.ndarray  # (N,) atomic numbers
    edge_vec: np.ndarray  # (E, 3)
    d: np.ndarray  # (E,)
    interactions: tuple  # SchNetInteractionCache per block
    h: np.ndarray  # (N, H) final node features
    z_out1: np.ndarray  # (N, H/2) readout pre-activation
    s_out1: np.ndarray  # (N, H/2)
    graph: Graph


@dataclass(frozen=True)
class SchNet(Block):
    r"""SchNet energy model (PyG ``SchNet`` without ``dipole``/``mean``/``std``/``atomref``).

    Parameters
    ----------
    hidden : int
        H (PyG default 128); must be even (readout H -> H/2 -> 1 uses ``H // 2``).
    num_filters : int
        F (default 128).
    num_interactions : int
        T (default 6).
    num_rbf : int
        G (default 50).
    cutoff : float
        :math:`r_c` (default 10.0).
    readout : {"add", "mean"}
        Pooling of atom energies over ``graph.batch``.
    max_z : int
        Size of the embedding table (PyG: 100); atomic numbers must lie in ``1 .. max_z - 1``
        (row 0 is PyG's padding row).
    constants : {"exact", "pyg"} or SchNetConstants
    backend : str

    Params: ``{"embedding": (max_z, H), "interactions": {"0": SchNetInteraction params, ...},
    "W_out1": (H, H//2), "b_out1": (H//2,), "W_out2": (H//2, 1), "b_out2": (1,)}``.

    ``forward(params, graph, z, pos) -> (energy, cache)`` with ``energy`` of shape **(B,)**, one
    value per graph of ``graph.batch`` (PyG returns (B, 1)); ``backward(params, cache, grad_energy)
    -> (grads, (None, grad_pos))``, so forces are ``-grad_pos`` for ``grad_energy = ones(B)``.
    ``z`` is an integer label: it gets no gradient.

    Raises
    ------
    ValueError
        Atomic numbers outside ``1 .. max_z - 1``, coincident atoms joined by an edge, wrong
        shapes.

    Notes
    -----
    E(3)-invariant energy; the graph is used exactly as given (no neighbour cap). Derivation of
    the VJP: ``derivations/schnet.py``.
    """

    hidden: int = 128
    num_filters: int = 128
    num_interactions: int = 6
    num_rbf: int = 50
    cutoff: float = 10.0
    readout: str = "add"
    max_z: int = 100
    constants: object = "exact"
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.hidden, "SchNet.hidden", minimum=2)
        if self.hidden % 2:
            raise ValueError(
                f"SchNet.hidden must be even (readout uses hidden // 2); got {self.hidden}"
            )
        check_int(self.num_interactions, "SchNet.num_interactions", minimum=0)
        check_int(self.max_z, "SchNet.max_z", minimum=2)
        if self.readout not in ("add", "mean"):
            raise ValueError(f"SchNet.readout must be 'add' or 'mean'; got {self.readout!r}")
        _ = self.interaction  # validates the rest

    @property
    def interaction(self) -> SchNetInteraction:
        return SchNetInteraction(
            self.hidden, self.num_filters, self.num_rbf, self.cutoff, self.constants, self.backend
        )

    def graph(self, pos, batch=None, num_graphs=None) -> Graph:
        """The full radius graph at ``cutoff`` (no self loops, **no neighbour cap**)."""
        return radius_graph(pos, self.cutoff, batch, num_graphs=num_graphs)

    def _shapes(self):
        H = self.hidden
        inter = self.interaction._shapes()
        return {
            "embedding": (self.max_z, H),
            "interactions": {str(t): inter for t in range(self.num_interactions)},
            "W_out1": (H, H // 2),
            "b_out1": (H // 2,),
            "W_out2": (H // 2, 1),
            "b_out2": (1,),
        }

    def init(self, rng: np.random.Generator) -> dict:
        H = self.hidden
        emb = rng.normal(size=(self.max_z, H))
        emb[0] = 0.0  # PyG's padding_idx=0
        W1, b1 = _torch_linear_init(rng, H, H // 2)
        W2, b2 = _torch_linear_init(rng, H // 2, 1)
        return {
            "embedding": emb,
            "interactions": {
                str(t): self.interaction.init(rng) for t in range(self.num_interactions)
            },
            "W_out1": W1,
            "b_out1": b1,
            "W_out2": W2,
            "b_out2": b2,
        }

    def forward(self, params, graph, z, pos):
        _check_graph(graph)
        check_params(params, self._shapes(), "SchNet")
        z = as_index(z, "z")
        if z.shape != (graph.num_nodes,):
            raise ValueError(
                f"z must have shape (num_nodes,) = ({graph.num_nodes},); got {z.shape}"
            )
        if z.size and (z.min() < 1 or z.max() >= self.max_z):
            bad = int(z[(z < 1) | (z >= self.max_z)][0])
            raise ValueError(
                f"z holds atomic number {bad}; SchNet knows atomic numbers 1..{self.max_z - 1} "
                "(raise max_z or fix the input)"
            )
        pos = _check_pos(pos, graph)
        k = self.interaction.conv.consts
        edge_vec = edge_vectors(graph, pos)  # x_j - x_i
        d = geometry.edge_length(edge_vec)  # raises on coincident endpoints
        h = params["embedding"][z]
        caches = []
        inter = self.interaction
        for t in range(self.num_interactions):
            v, c = inter._forward_lengths(params["interactions"][str(t)], graph, h, edge_vec, d)
            caches.append(c)
            h = h + v  # residual, as in PyG's SchNet.forward
        z_out1 = dense.linear(h, params["W_out1"], params["b_out1"])
        s_out1 = activations.shifted_softplus(z_out1, k.shift, k.softplus_threshold)
        eps = dense.linear(s_out1, params["W_out2"], params["b_out2"])[:, 0]  # atom energies
        if self.readout == "add":
            energy = scatter.scatter_sum(eps, graph.batch, graph.num_graphs, backend=self.backend)
        else:
            energy = scatter.scatter_mean(eps, graph.batch, graph.num_graphs, backend=self.backend)
        return energy, SchNetCache(z, edge_vec, d, tuple(caches), h, z_out1, s_out1, graph)

    def backward(self, params, cache: SchNetCache, grad_out):
        k = self.interaction.conv.consts
        graph = cache.graph
        g_E = as_float64(grad_out, "grad_out", ndim=1)
        # energy = pool(eps)
        if self.readout == "add":
            g_eps, _ = scatter.scatter_sum_vjp(None, graph.batch, graph.num_graphs, g_E)
        else:
            g_eps, _ = scatter.scatter_mean_vjp(None, graph.batch, graph.num_graphs, g_E)
        # eps = s_out1 W_out2 + b_out2 ; s_out1 = ssp(z_out1) ; z_out1 = h W_out1 + b_out1
        g_s, gW2, gb2 = dense.linear_vjp(
            cache.s_out1, params["W_out2"], params["b_out2"], g_eps[:, None]
        )
        g_z = activations.shifted_softplus_vjp(cache.z_out1, g_s, k.shift, k.softplus_threshold)
        g_h, gW1, gb1 = dense.linear_vjp(cache.h, params["W_out1"], params["b_out1"], g_z)
        g_d = np.zeros_like(cache.d)
        g_inter = {}
        inter = self.interaction
        for t in reversed(range(self.num_interactions)):
            # h = h + v(h): the residual adds the block's input gradient to the pass-through
            gp, gh_t, gd_t = inter._backward_lengths(
                params["interactions"][str(t)], cache.interactions[t], g_h
            )
            g_inter[str(t)] = gp
            g_h = g_h + gh_t
            g_d = g_d + gd_t
        # h0 = embedding[z]
        g_emb = np.zeros_like(params["embedding"])
        np.add.at(g_emb, cache.z, g_h)
        g_vec = geometry.edge_length_vjp(cache.edge_vec, g_d)  # reverses d = |x_j - x_i|
        g_pos = edge_vectors_vjp(graph, g_vec)
        grads = {
            "embedding": g_emb,
            "interactions": g_inter,
            "W_out1": gW1,
            "b_out1": gb1,
            "W_out2": gW2,
            "b_out2": gb2,
        }
        return grads, (None, g_pos)
