r"""Adapters for ``torch.nn.GRU`` and ``torch.nn.GRUCell`` (as PyG's QM9 example uses them).

Torch stores ``weight_ih`` (3C, in) and ``weight_hh`` (3C, C) with the gates in the order
r, z, n, and so does our :class:`~geomp_ref.layers.recurrent.GRUCell` (transposed, (in, 3C)):
the weights map by a transpose, the biases as they are. A layer built with ``bias=False`` keeps
zero biases on our side (exact: adding 0.0 changes nothing).

``torch.nn.GRU`` runs the cell over a sequence; :class:`GRUSequence` is that loop as a block,
taking the input ``(L, N, in)`` (``(N, L, in)`` with ``batch_first``) and the initial state
``(1, N, C)`` and returning ``(output, h_n)`` in torch's layout. Unbatched calls (``(L, in)``) are
reshaped to a batch of one by the links. Not expressible: ``num_layers > 1``,
``bidirectional=True``, ``proj_size`` (each raises ValueError naming the option).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64, as_rng, check_bool, check_cache, check_int, check_params
from .._validate import grad_outs as _grad_outs
from ..layers.base import Block
from ..layers.recurrent import GRUCell
from ..params import tree_map2, zeros_like
from ._binding import Binding, InputLink, ParamLink, Tap, identity, transpose
from ._torch import bind_call, class_names, np64, params_from_links

__all__ = ["GRUSequence", "GRUSequenceCache"]


class GRUSequenceCache(NamedTuple):
    cells: tuple  # GRUCellCache per time step
    x_shape: tuple  # (L, N, in), time-major
    had_h0: bool


@dataclass(frozen=True)
class GRUSequence(Block):
    """``torch.nn.GRU`` with one layer: ``forward(params, x, h0=None) -> ((output, h_n), cache)``.

    Parameters
    ----------
    input_size, hidden_size : int
    batch_first : bool
        ``x`` and ``output`` are (N, L, .) instead of (L, N, .).

    Params: ``{"cell": GRUCell params}`` (``W_x`` (in, 3C), ``W_h`` (C, 3C), ``b_x``, ``b_h``).
    ``h0`` and ``h_n`` have shape (1, N, C); ``h0=None`` starts from zeros.
    """

    input_size: int
    hidden_size: int
    batch_first: bool = False

    def __post_init__(self):
        check_int(self.input_size, "GRUSequence.input_size", minimum=1)
        check_int(self.hidden_size, "GRUSequence.hidden_size", minimum=1)
        check_bool(self.batch_first, "GRUSequence.batch_first")
        object.__setattr__(self, "cell", GRUCell(self.input_size, self.hidden_size))

    def param_shapes(self) -> dict:
        c3 = 3 * self.hidden_size
        return {
            "cell": {
                "W_x": (self.input_size, c3),
                "W_h": (self.hidden_size, c3),
                "b_x": (c3,),
                "b_h": (c3,),
            }
        }

    def init(self, rng) -> dict:
        return {"cell": self.cell.init(as_rng(rng, "rng"))}

    def forward(self, params, x, h0=None):
        check_params(params, self.param_shapes(), "GRUSequence", exact=True)
        x = as_float64(x, "x", ndim=3)
        if self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[2] != self.input_size:
            raise ValueError(f"x must have input_size = {self.input_size} features; got {x.shape}")
        n = x.shape[1]
        if h0 is None:
            h = np.zeros((n, self.hidden_size))
        else:
            h = as_float64(h0, "h0", ndim=3)
            if h.shape != (1, n, self.hidden_size):
                raise ValueError(
                    f"h0 must have shape (1, N, hidden_size) = (1, {n}, {self.hidden_size}); "
                    f"got {h.shape}"
                )
            h = h[0]
        outs, cells = [], []
        for t in range(x.shape[0]):
            h, cache = self.cell.forward(params["cell"], x[t], h)
            outs.append(h)
            cells.append(cache)
        out = np.stack(outs) if outs else np.zeros((0, n, self.hidden_size))
        if self.batch_first:
            out = out.transpose(1, 0, 2)
        cache = GRUSequenceCache(tuple(cells), x.shape, h0 is not None)
        return (out, h[None]), cache

    def backward(self, params, cache: GRUSequenceCache, grad_out):
        check_cache(cache, GRUSequenceCache, "GRUSequence")
        steps, n, _ = cache.x_shape
        out_shape = (steps, n, self.hidden_size)
        if self.batch_first:
            out_shape = (n, steps, self.hidden_size)
        g_out, g_hn = _grad_outs(grad_out, (out_shape, (1, n, self.hidden_size)), "GRUSequence")
        g_out = g_out.transpose(1, 0, 2) if self.batch_first else g_out
        g_h = g_hn[0]
        grads = zeros_like(params["cell"])
        g_x = np.zeros((steps, n, self.input_size))
        for t in reversed(range(steps)):
            # reverses out[t] = h_t (h_t also feeds step t + 1)
            g_h = g_h + g_out[t]
            # reverses h_t = GRU(x_t, h_{t-1})
            gp, (g_x[t], g_h) = self.cell.backward(params["cell"], cache.cells[t], g_h)
            grads = tree_map2(np.add, grads, gp)
        if self.batch_first:
            g_x = g_x.transpose(1, 0, 2)
        return {"cell": grads}, (g_x, g_h[None] if cache.had_h0 else None)


# --- adapters -----------------------------------------------------------------------------------


def _cell_links(prefix: str, path: tuple, suffix: str, bias: bool) -> list:
    links = [
        ParamLink(f"{prefix}weight_ih{suffix}", path + ("W_x",), None, transpose, transpose),
        ParamLink(f"{prefix}weight_hh{suffix}", path + ("W_h",), None, transpose, transpose),
    ]
    if bias:
        links += [
            ParamLink(f"{prefix}bias_ih{suffix}", path + ("b_x",)),
            ParamLink(f"{prefix}bias_hh{suffix}", path + ("b_h",)),
        ]
    return links


def check_rnn(module, name: str, mode: str) -> None:
    """Refuse the options of a torch RNN module that the oracle's one-layer cells cannot run."""
    if getattr(module, "mode", mode) != mode:
        raise ValueError(f"{name}: mode {module.mode!r} is not {mode}")
    if int(module.num_layers) != 1:
        raise ValueError(f"{name}.num_layers={module.num_layers} is not supported (only 1)")
    if module.bidirectional:
        raise ValueError(f"{name}.bidirectional=True is not supported")
    if int(getattr(module, "proj_size", 0)):
        raise ValueError(f"{name}.proj_size={module.proj_size} is not supported")


def gru_matches(module) -> bool:
    return "GRU" in class_names(module) and hasattr(module, "weight_ih_l0")


def gru_convert(module):
    check_rnn(module, "GRU", "GRU")
    spec = GRUSequence(int(module.input_size), int(module.hidden_size), bool(module.batch_first))
    return spec, _cell_links("", ("cell",), "_l0", bool(module.bias)), []


def _seq_axis(a):
    return a[:, None, :]


def _seq_axis_t(a):
    return a[:, 0, :]


def gru_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = gru_convert(module)
    params = params_from_links(spec, module, links)
    x_t, hx = call["input"], call["hx"]
    if x_t.dim() == 3:
        add_x = drop_x = add_h = drop_h = identity
    else:
        notes.append("unbatched input: run as a batch of one")
        add_x, drop_x = (lambda a: a[None], lambda a: a[0]) if spec.batch_first else (
            _seq_axis, _seq_axis_t
        )
        add_h, drop_h = _seq_axis, _seq_axis_t
    links_in = [InputLink("input", lambda c: c["input"], 0, to_ours=add_x, to_peer=drop_x)]
    h0 = None
    if hx is not None:
        h0 = add_h(np64(hx))
        links_in.append(InputLink("hx", lambda c: c["hx"], 1, to_ours=add_h, to_peer=drop_h))

    def outputs(res):
        out, h_n = res
        return add_x(out), add_h(h_n)

    return Binding(
        spec, params, None, (add_x(np64(x_t)), h0), links, links_in, outputs, [], notes,
        ("output", "h_n"),
    )


def gru_cell_matches(module) -> bool:
    return "GRUCell" in class_names(module) and hasattr(module, "weight_ih")


def gru_cell_convert(module):
    spec = GRUCell(int(module.input_size), int(module.hidden_size))
    return spec, _cell_links("", (), "", bool(module.bias)), []


def gru_cell_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = gru_cell_convert(module)
    params = params_from_links(spec, module, links)
    x_t, hx = call["input"], call["hx"]
    batched = x_t.dim() == 2
    add, drop = (identity, identity) if batched else (lambda a: a[None], lambda a: a[0])
    x = add(np64(x_t))
    links_in = [InputLink("input", lambda c: c["input"], 0, to_ours=add, to_peer=drop)]
    if hx is None:
        h = np.zeros((x.shape[0], spec.channels))
    else:
        h = add(np64(hx))
        links_in.append(InputLink("hx", lambda c: c["hx"], 1, to_ours=add, to_peer=drop))
    return Binding(spec, params, None, (x, h), links, links_in, lambda r: add(r), [], notes)


def gru_taps(name: str, steps: int, ours_h) -> list:
    """Taps on a ``torch.nn.GRU`` submodule called once per step with a length-1 sequence:
    the step's new state ``output[0]`` against ``ours_h(cache, t)``."""
    return [
        Tap(name, (lambda cache, t=t: ours_h(cache, t)), lambda out: out[0][0], t)
        for t in range(steps)
    ]
