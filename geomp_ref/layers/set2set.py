r"""Set2Set readout (Vinyals et al. 2016; the form used by Gilmer et al. and PyG).

Per graph b, with :math:`q^*_0 = 0 \in \mathbb{R}^{2C}` and :math:`(h_0, c_0) = 0`, for t = 1..T:

.. math::

    (q_t, c_t) = \mathrm{LSTM}(q^*_{t-1}, (q_{t-1}, c_{t-1})),\quad
    e_i = \langle x_i, q_{t, b(i)} \rangle,\quad
    a_i = \frac{e^{e_i - M_b}}{\sum_{k \in b} e^{e_k - M_b} + \epsilon},\quad
    r_{t,b} = \sum_{i \in b} a_i x_i,\quad q^*_t = [q_t, r_t].

Output :math:`q^*_T` of shape (B, 2C). :math:`\epsilon = 10^{-16}` reproduces PyG's ``softmax``
(``eps=0`` the textbook form); with ``eps != 0`` the max shift :math:`M_b` changes the function
slightly and its (tiny) gradient term is included, see
:func:`geomp_ref.ops.scatter.scatter_softmax_vjp`. Empty graphs give
:math:`r = 0`.

Backward walks the steps in reverse, carrying the cotangents of :math:`h_t` and :math:`c_t` into the
previous LSTM step and the cotangent of its input :math:`q^*_{t-1}` into the previous readout.
Derivation: ``derivations/mpnn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_rng, check_cache, check_graph, check_int, node_array
from .._validate import grad_out as _grad_out
from ..ops import scatter
from .base import Block, check_params
from .recurrent import LSTMCell

__all__ = ["Set2Set", "Set2SetCache"]


class Set2SetCache(NamedTuple):
    graph: object
    x: np.ndarray
    batch: np.ndarray
    num_graphs: int
    lstm: tuple  # LSTM cache per step
    q: tuple  # q_t per step (B, C)
    a: tuple  # attention per step (N,)
    e: tuple  # logits per step (N,)


@dataclass(frozen=True)
class Set2Set(Block):
    """Set2Set over the graphs of a batch.

    Parameters
    ----------
    channels : int
        C, the width of the node features ``x``.
    steps : int
        T >= 1 processing steps (PyG's ``processing_steps``).
    eps : float
        Softmax epsilon (>= 0): 1e-16 is PyG's, 0 the textbook softmax.

    Params: ``{"lstm": LSTMCell(2C -> C) params}`` (PyG's ``lstm`` is a one-layer ``torch.nn.LSTM``
    with the same gates). ``forward(params, graph, x) -> (q*, cache)`` with ``x`` (N, C) and
    ``q*`` (B, 2C); ``backward -> (grads, (grad_x,))``.
    """

    channels: int
    steps: int = 3
    eps: float = 1e-16

    def __post_init__(self):
        check_int(self.channels, "Set2Set.channels", minimum=1)
        check_int(self.steps, "Set2Set.steps", minimum=1)
        if not isinstance(self.eps, (int, float, np.floating)) or isinstance(self.eps, bool) \
                or not np.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"Set2Set.eps must be a finite number >= 0; got {self.eps!r}")
        object.__setattr__(self, "lstm", LSTMCell(2 * self.channels, self.channels))

    def param_shapes(self) -> dict:
        return {"lstm": self.lstm.param_shapes()}

    def init(self, rng):
        rng = as_rng(rng, "rng")
        return {"lstm": self.lstm.init(rng)}

    def forward(self, params, graph, x):
        check_params(params, self.param_shapes(), "Set2Set", exact=True)
        check_graph(graph)
        x = node_array(x, "x", graph, self.channels)
        C, B = self.channels, graph.num_graphs
        batch = graph.batch
        h = np.zeros((B, C))
        c = np.zeros((B, C))
        q_star = np.zeros((B, 2 * C))
        caches, qs, atts, logits = [], [], [], []
        for _ in range(self.steps):
            (h, c), cache = self.lstm.forward(params["lstm"], q_star, h, c)
            e = np.sum(x * h[batch], axis=1)
            a = scatter.scatter_softmax(e, batch, B, eps=self.eps)
            r = scatter.scatter_sum(a[:, None] * x, batch, B)
            q_star = np.concatenate([h, r], axis=1)
            caches.append(cache)
            qs.append(h)
            atts.append(a)
            logits.append(e)
        cache = Set2SetCache(graph, x, batch, B, tuple(caches), tuple(qs), tuple(atts),
                             tuple(logits))
        return q_star, cache

    def backward(self, params, cache: Set2SetCache, grad_out):
        check_cache(cache, Set2SetCache, "Set2Set")
        C, B = self.channels, cache.num_graphs
        x, batch = cache.x, cache.batch
        grad_qstar = _grad_out(grad_out, (B, 2 * C), "Set2Set")
        grad_x = np.zeros_like(x)
        grad_lstm = None
        grad_h_next = np.zeros((B, C))
        grad_c_next = np.zeros((B, C))
        for t in reversed(range(self.steps)):
            q, a, e = cache.q[t], cache.a[t], cache.e[t]
            grad_q = grad_qstar[:, :C] + grad_h_next
            grad_r = grad_qstar[:, C:]
            # reverses r = sum_i a_i x_i
            grad_a = np.sum(grad_r[batch] * x, axis=1)
            grad_x += a[:, None] * grad_r[batch]
            # reverses a = softmax(e) within graphs
            grad_e, _ = scatter.scatter_softmax_vjp(e, batch, B, grad_a, eps=self.eps)
            # reverses e_i = <x_i, q_b(i)>
            grad_x += grad_e[:, None] * q[batch]
            grad_q = grad_q + scatter.scatter_sum(grad_e[:, None] * x, batch, B)
            # reverses (q_t, c_t) = LSTM(q*_{t-1}, (q_{t-1}, c_{t-1}))
            gp, (grad_qstar, grad_h_next, grad_c_next) = self.lstm.backward(
                params["lstm"], cache.lstm[t], (grad_q, grad_c_next)
            )
            grad_lstm = gp if grad_lstm is None else {k: grad_lstm[k] + gp[k] for k in gp}
        return {"lstm": grad_lstm}, (grad_x,)
