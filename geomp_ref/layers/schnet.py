r"""SchNet (Schütt et al. 2017/2018) in PyG's structure: the energy model.

:math:`h^0_i = \mathrm{Emb}[z_i]`, :math:`h^{t} = h^{t-1} + v^t(h^{t-1})` with :math:`v^t` a
:class:`SchNetInteraction` (:math:`v = \mathrm{ssp}(\mathrm{CFConv}(h)) W + b`, see
:mod:`geomp_ref.layers.cfconv`), atom energies
:math:`\epsilon_i = \mathrm{ssp}(h^T_i W_{o1} + b_{o1}) W_{o2} + b_{o2}` and one energy per graph,
:math:`E_b = \sum_{i \in b} \epsilon_i` (``readout="add"``) or the mean. Constants (Gaussian
centres and width, the softplus shift and threshold; ``"exact"`` or ``"pyg"``) are described in
:mod:`geomp_ref.layers.schnet_constants`. There is no neighbour cap: the graph the caller passes is
used as is (:meth:`SchNet.graph` builds the full radius graph; PyG caps at 32 neighbours).

Backward: the residual stack in reverse; each interaction returns its own position gradient (it
recomputes the edge lengths from ``pos``), and the forces are their sum. Proof:
``derivations/schnet.py``.

This module also re-exports :class:`CFConv`, :class:`SchNetInteraction` and
:class:`SchNetConstants`, so ``from geomp_ref.layers.schnet import ...`` finds the whole family.

References: K. T. Schütt et al., "SchNet: A continuous-filter convolutional neural network for
modeling quantum interactions", NeurIPS 2017, eqs. (1)-(5); J. Chem. Phys. 148, 241722 (2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_index,
    as_rng,
    check_alloc,
    check_bool,
    check_cache,
    check_choice,
    check_graph,
    check_int,
)
from .._validate import grad_out as _grad_out
from .._validate import positions as _positions
from ..graph import Graph, radius_graph
from ..ops import activations, dense, scatter
from .base import Block, check_params, linear_init
from .cfconv import CFConv, CFConvCache, SchNetInteraction, SchNetInteractionCache
from .schnet_constants import SchNetConstants

__all__ = [
    "CFConv",
    "CFConvCache",
    "SchNet",
    "SchNetCache",
    "SchNetConstants",
    "SchNetInteraction",
    "SchNetInteractionCache",
]


class SchNetCache(NamedTuple):
    graph: Graph
    z: np.ndarray  # (N,) atomic numbers
    pos_shape: tuple  # (N, 3)
    interactions: tuple  # SchNetInteractionCache per block
    h: np.ndarray  # (N, H) final node features
    z_out1: np.ndarray  # (N, H/2) readout pre-activation
    s_out1: np.ndarray  # (N, H/2)


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
    value per graph of ``graph.batch`` (PyG returns (B, 1)); ``backward(params, cache, grad_energy,
    *, param_grads=True) -> (grads, (None, grad_pos))``, so forces are ``-grad_pos`` for
    ``grad_energy = ones(B)``. ``param_grads=False`` skips every weight, bias and embedding
    gradient and returns ``(None, (None, grad_pos))`` with ``grad_pos`` bit-identical to the full
    backward's (what ``torch.autograd.grad(E, pos)`` computes); ``forces(params, graph, z, pos)
    -> (energy, forces)`` wraps it for energy-and-forces callers (molecular dynamics).
    ``z`` is an integer label: it gets no gradient.

    Raises
    ------
    ValueError
        Atomic numbers outside ``1 .. max_z - 1``, coincident atoms joined by an edge, wrong
        shapes.

    Notes
    -----
    E(3)-invariant energy; the graph is used exactly as given (no neighbour cap). The stack of
    interactions lives under ``params["interactions"]`` (PyG's module name) rather than
    ``"layers"``, so PyG weights map by name.
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
        check_choice(self.readout, "SchNet.readout", ("add", "mean"))
        inter = SchNetInteraction(self.hidden, self.num_filters, self.num_rbf, self.cutoff,
                                  self.constants, self.backend)  # validates the rest
        object.__setattr__(self, "interaction", inter)

    def graph(self, pos, batch=None, num_graphs=None) -> Graph:
        """The full radius graph at ``cutoff`` (no self loops, **no neighbour cap**)."""
        return radius_graph(pos, self.cutoff, batch, num_graphs=num_graphs)

    def param_shapes(self) -> dict:
        H = self.hidden
        inter = self.interaction.param_shapes()
        return {
            "embedding": (self.max_z, H),
            "interactions": {str(t): inter for t in range(self.num_interactions)},
            "W_out1": (H, H // 2),
            "b_out1": (H // 2,),
            "W_out2": (H // 2, 1),
            "b_out2": (1,),
        }

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        H = self.hidden
        check_alloc((self.max_z, H), "SchNet.max_z x SchNet.hidden")
        emb = rng.normal(size=(self.max_z, H))
        emb[0] = 0.0  # PyG's padding_idx=0
        W1, b1 = linear_init(rng, H, H // 2, name="SchNet.hidden")
        W2, b2 = linear_init(rng, H // 2, 1, name="SchNet.hidden")
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
        check_params(params, self.param_shapes(), "SchNet", exact=True)
        check_graph(graph)
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
        pos = _positions(pos, graph, 3)
        k = self.interaction.conv.consts
        h = np.asarray(params["embedding"], dtype=np.float64)[z]
        caches = []
        for t in range(self.num_interactions):
            v, c = self.interaction.forward(params["interactions"][str(t)], graph, h, pos)
            caches.append(c)
            h = h + v  # residual, as in PyG's SchNet.forward
        z_out1 = dense.linear(h, params["W_out1"], params["b_out1"])
        s_out1 = activations.shifted_softplus(z_out1, k.shift, k.softplus_threshold)
        eps = dense.linear(s_out1, params["W_out2"], params["b_out2"])[:, 0]  # atom energies
        if self.readout == "add":
            energy = scatter.scatter_sum(eps, graph.batch, graph.num_graphs, backend=self.backend)
        else:
            energy = scatter.scatter_mean(eps, graph.batch, graph.num_graphs, backend=self.backend)
        return energy, SchNetCache(graph, z, pos.shape, tuple(caches), h, z_out1, s_out1)

    def backward(self, params, cache: SchNetCache, grad_out, *, param_grads: bool = True):
        param_grads = check_bool(param_grads, "param_grads")
        check_cache(cache, SchNetCache, "SchNet")
        graph = cache.graph
        g_E = _grad_out(grad_out, (graph.num_graphs,), "SchNet")
        k = self.interaction.conv.consts
        # energy = pool(eps)
        if self.readout == "add":
            g_eps, _ = scatter.scatter_sum_vjp(None, graph.batch, graph.num_graphs, g_E)
        else:
            g_eps, _ = scatter.scatter_mean_vjp(None, graph.batch, graph.num_graphs, g_E)
        # eps = s_out1 W_out2 + b_out2 ; s_out1 = ssp(z_out1) ; z_out1 = h W_out1 + b_out1
        g_s, gW2, gb2 = dense.linear_vjp(cache.s_out1, params["W_out2"], params["b_out2"],
                                         g_eps[:, None], param_grads=param_grads)
        g_z = activations.shifted_softplus_vjp(cache.z_out1, g_s, k.shift, k.softplus_threshold)
        g_h, gW1, gb1 = dense.linear_vjp(cache.h, params["W_out1"], params["b_out1"], g_z,
                                         param_grads=param_grads)
        g_pos = np.zeros(cache.pos_shape)
        g_inter = {}
        for t in reversed(range(self.num_interactions)):
            # h = h + v(h, pos): the residual adds the block's input gradient to the pass-through
            gp, (gh_t, gpos_t) = self.interaction.backward(
                params["interactions"][str(t)], cache.interactions[t], g_h,
                param_grads=param_grads,
            )
            g_inter[str(t)] = gp
            g_h = g_h + gh_t
            g_pos = g_pos + gpos_t
        if not param_grads:  # h0 = embedding[z]: z gets no gradient, the table is skipped
            return None, (None, g_pos)
        # h0 = embedding[z]
        g_emb = np.zeros(np.shape(params["embedding"]))
        np.add.at(g_emb, cache.z, g_h)
        grads = {
            "embedding": g_emb,
            "interactions": g_inter,
            "W_out1": gW1,
            "b_out1": gb1,
            "W_out2": gW2,
            "b_out2": gb2,
        }
        return grads, (None, g_pos)

    def forces(self, params, graph, z, pos):
        """Energy and forces only: ``(energy (B,), forces (N, 3))``, no parameter gradients.

        For molecular dynamics and for comparing forces with ``torch.autograd.grad(E, pos)``
        (which skips the weight gradients too): ``forward``, then ``backward`` with
        ``grad_energy = ones(B)`` and ``param_grads=False``; ``forces = -grad_pos``, minus the
        gradient of ``energy.sum()``. Equal bit for bit to
        ``-backward(params, cache, np.ones(B))[1][1]``, and ``energy`` to the forward's.
        """
        energy, cache = self.forward(params, graph, z, pos)
        _, (_, g_pos) = self.backward(params, cache, np.ones(cache.graph.num_graphs),
                                      param_grads=False)
        return energy, -g_pos
