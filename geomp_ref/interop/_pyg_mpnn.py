r"""PyG ``NNConv`` and ``Set2Set``, and the Gilmer MPNN of PyG's ``examples/qm9_nn_conv.py``.

**NNConv** (:class:`~geomp_ref.layers.nnconv.NNConv`): the edge network ``nn`` must be
``Sequential(Linear(D, K), ReLU(), Linear(K, C_in * C_out))`` (the oracle's edge network); PyG
reshapes its output row-major to (C_in, C_out) exactly like ours, and ``lin`` (the root weight,
bias-free) plus the separate ``bias`` map onto ``W_root`` and ``b``. ``root_weight=False`` and
``bias=False`` (and bias-free edge-network layers) are expressed by zero params, which reproduce
the missing terms exactly. ``aggr`` ``"add"`` is our ``"sum"``, ``"mean"`` is ``"mean"`` (isolated
nodes get 0 on both sides); any aggregation our NNConv lacks raises ValueError naming
``NNConv.aggr``. ``flow="target_to_source"`` is run on the reversed edge list.

**Set2Set** (:class:`~geomp_ref.layers.set2set.Set2Set` with PyG's softmax epsilon 1e-16): its
LSTM's gates are in torch's order i, f, g, o, like ours; weights transposed.

**The QM9 example's** ``Net`` (``lin0`` -> T x (``conv`` + ReLU, ``gru``) -> ``set2set`` ->
``lin1`` -> ReLU -> ``lin2``, the same ``conv``/``gru`` weights at every step) is
:class:`~geomp_ref.layers.mpnn.MPNN` with ``mode="pyg"`` and ``use_distance=False``: the example's
``edge_attr`` already holds the distance (its ``T.Distance`` transform), so the edge features go in
as they are and the positions play no part. ``Net.forward(data)`` hard-codes T; the binding counts
the calls of ``conv`` in the actual forward, :func:`qm9_net_convert` needs it given (``steps=``)
unless the module has an integer ``steps`` attribute. Taps: ``lin0``, then ``conv`` and ``gru`` at
every step, ``set2set``, ``lin1``, ``lin2``.
"""

from __future__ import annotations

import numpy as np

from .. import make_graph
from ..layers.mpnn import MPNN
from ..layers.nnconv import NNConv
from ..layers.set2set import Set2Set
from ._binding import Binding, InputLink, ParamLink, Tap, linear_links, transpose
from ._torch import bind_call, class_names, count_calls, np64, params_from_links
from ._torch_rnn import _cell_links, check_rnn, gru_matches, gru_taps

_AGGR = {"add": "sum", "sum": "sum", "mean": "mean", "max": "max"}


# --- NNConv -------------------------------------------------------------------------------------


def nnconv_matches(module) -> bool:
    return "NNConv" in class_names(module) and hasattr(module, "nn") and hasattr(module, "aggr")


def _edge_net(nn, name: str, peer: str, path: tuple):
    """``(edge_dim, edge_hidden, out, links)`` of a ``Sequential(Linear, ReLU, Linear)`` whose
    parameters are named ``{peer}0.weight``...; our leaves live under ``path + ("edge_net",)``."""
    layers = list(nn) if "Sequential" in class_names(nn) else [nn]
    kinds = [type(m).__name__ for m in layers]
    if kinds != ["Linear", "ReLU", "Linear"]:
        raise ValueError(
            f"{name}.nn must be Sequential(Linear, ReLU, Linear) (the oracle's edge network); "
            f"got {kinds}"
        )
    first, last = layers[0], layers[2]
    links = []
    for k, lin in ((0, first), (2, last)):
        j = k // 2
        bias = path + ("edge_net", f"b{j}") if lin.bias is not None else None
        links += linear_links(f"{peer}{k}", path + ("edge_net", f"W{j}"), bias)
    return int(first.in_features), int(first.out_features), int(last.out_features), links


def _check_message_passing(module, name: str) -> None:
    if getattr(module, "flow", "source_to_target") not in ("source_to_target", "target_to_source"):
        raise ValueError(f"{name}.flow={module.flow!r} is not supported")
    if getattr(module, "node_dim", -2) not in (-2, 0):
        raise ValueError(f"{name}.node_dim={module.node_dim} is not supported (use -2)")


def nnconv_convert(module, name: str = "NNConv", prefix: str = "", path: tuple = ()):
    """``(spec, links, notes)`` for a PyG NNConv (links under ``prefix``, params under ``path``)."""
    _check_message_passing(module, name)
    in_ch = module.in_channels
    if isinstance(in_ch, (tuple, list)):
        if len(set(in_ch)) != 1:
            raise ValueError(f"{name}.in_channels={tuple(in_ch)}: bipartite input is not supported")
        in_ch = in_ch[0]
    if int(in_ch) < 1:
        raise ValueError(
            f"{name}.in_channels={in_ch} (lazy): run one forward first so the weights exist"
        )
    aggr = module.aggr if isinstance(module.aggr, str) else type(module.aggr).__name__
    edge_dim, hidden, out, links = _edge_net(module.nn, name, f"{prefix}nn.", path)
    c_in, c_out = int(in_ch), int(module.out_channels)
    if out != c_in * c_out:
        raise ValueError(f"{name}.nn ends in {out} features, not in_channels * out_channels")
    try:
        spec = NNConv(c_in, c_out, edge_dim, hidden, _AGGR.get(aggr, aggr))
    except ValueError as exc:
        raise ValueError(
            f"{name}.aggr={aggr!r} is not supported by the oracle's NNConv ({exc})"
        ) from None
    notes = []
    if module.root_weight:
        root = ParamLink(f"{prefix}lin.weight", path + ("W_root",), None, transpose, transpose)
        links.append(root)
    else:
        notes.append(f"{name}.root_weight=False: W_root is held at zero")
    if module.bias is not None:
        links.append(ParamLink(f"{prefix}bias", path + ("b",)))
    else:
        notes.append(f"{name}.bias=False: b is held at zero")
    return spec, links, notes


def _edges(module, edge_index, name: str) -> np.ndarray:
    if not hasattr(edge_index, "dim") or edge_index.dim() != 2 or edge_index.is_sparse:
        raise ValueError(f"{name}: edge_index must be a dense (2, E) tensor")
    ei = np64(edge_index)
    if getattr(module, "flow", "source_to_target") == "target_to_source":
        ei = ei[::-1].copy()
    return ei


def nnconv_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = nnconv_convert(module)
    params = params_from_links(spec, module, links)
    x = call["x"]
    if isinstance(x, (tuple, list)):
        raise ValueError("NNConv: bipartite x = (x_src, x_dst) is not supported")  # noqa: TRY004
    if call.get("edge_attr") is None:
        raise ValueError("NNConv: edge_attr is required (its edge network reads it)")
    n = int(x.shape[0])
    if call.get("size") is not None and tuple(call["size"]) != (n, n):
        raise ValueError(f"NNConv: size={tuple(call['size'])} (bipartite) is not supported")
    graph = make_graph(_edges(module, call["edge_index"], "NNConv"), n)
    inputs = (np64(x), np64(call["edge_attr"]))
    links_in = [
        InputLink("x", lambda c: c["x"], 0),
        InputLink("edge_attr", lambda c: c["edge_attr"], 1),
    ]
    taps = [Tap("nn", lambda cache: cache.theta.reshape(cache.theta.shape[0], -1))]
    return Binding(spec, params, graph, inputs, links, links_in, lambda r: r, taps, notes)


# --- Set2Set ------------------------------------------------------------------------------------


def set2set_matches(module) -> bool:
    return "Set2Set" in class_names(module) and hasattr(module, "lstm")


def set2set_convert(module, name: str = "Set2Set", prefix: str = "", path: tuple = ()):
    lstm = module.lstm
    check_rnn(lstm, f"{name}.lstm", "LSTM")
    if lstm.batch_first:
        raise ValueError(f"{name}.lstm.batch_first=True is not supported")
    spec = Set2Set(int(module.in_channels), int(module.processing_steps), 1e-16)
    links = _cell_links(f"{prefix}lstm.", path + ("lstm",), "_l0", bool(lstm.bias))
    return spec, links, []


def set2set_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = set2set_convert(module)
    params = params_from_links(spec, module, links)
    x = call["x"]
    if x.dim() != 2 or call["dim"] not in (-2, 0):
        raise ValueError(f"Set2Set: dim={call['dim']} on a {x.dim()}-d x is not supported")
    n = int(x.shape[0])
    # PyG's Set2Set needs ``index`` (a ``ptr`` alone is refused by PyG itself); no index at all
    # means one graph
    batch = np.zeros(n, dtype=np.int64) if call["index"] is None else np64(call["index"])
    size = call["dim_size"]
    size = (int(batch.max()) + 1 if n else 0) if size is None else int(size)
    graph = make_graph(np.zeros((2, 0), dtype=np.int64), n, batch, num_graphs=size)
    taps = [
        Tap("lstm", (lambda cache, t=t: cache.q[t]), lambda out: out[0][0], t)
        for t in range(spec.steps)
    ]
    links_in = [InputLink("x", lambda c: c["x"], 0)]
    return Binding(spec, params, graph, (np64(x),), links, links_in, lambda r: r, taps, notes)


# --- the QM9 example's Net --------------------------------------------------------------------

QM9_NAMES = ("lin0", "conv", "gru", "set2set", "lin1", "lin2")


def qm9_net_matches(module) -> bool:
    subs = dict(module.named_children())
    if type(module).__name__ != "Net" or not all(k in subs for k in QM9_NAMES):
        return False
    return (
        nnconv_matches(subs["conv"])
        and gru_matches(subs["gru"])
        and set2set_matches(subs["set2set"])
        and all(hasattr(subs[k], "in_features") for k in ("lin0", "lin1", "lin2"))
    )


def qm9_net_convert(module, steps=None):
    """``(spec, links, notes)`` for the example's ``Net`` run for ``steps`` message passes."""
    if steps is None:
        steps = getattr(module, "steps", None)
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ValueError(
            "steps: Net.forward hard-codes how often it runs conv and gru; pass "
            "from_torch(net, steps=T) (the QM9 example uses 3), or let compare / "
            "inputs_from_torch count them on a real call"
        )
    conv_spec, conv_links, notes = nnconv_convert(module.conv, "conv", "conv.", ("conv",))
    if conv_spec.aggr != "mean":
        raise ValueError(
            f"conv.aggr={module.conv.aggr!r}: the MPNN of the QM9 example (MPNN mode 'pyg') "
            "aggregates with 'mean'"
        )
    if module.conv.flow != "source_to_target":
        raise ValueError(f"conv.flow={module.conv.flow!r} is not supported in Net")
    gru = module.gru
    check_rnn(gru, "gru", "GRU")
    if gru.batch_first:
        raise ValueError("gru.batch_first=True is not supported (Net feeds (1, N, H))")
    s2s_spec, s2s_links, _ = set2set_convert(module.set2set, "set2set", "set2set.", ("set2set",))
    hidden = conv_spec.in_channels
    spec = MPNN(
        int(module.lin0.in_features),
        conv_spec.edge_dim,
        hidden=hidden,
        steps=int(steps),
        edge_hidden=conv_spec.edge_hidden,
        set2set_steps=s2s_spec.steps,
        out_channels=int(module.lin2.out_features),
        mode="pyg",
        use_distance=False,
    )
    widths = {
        "lin0.out_features": (module.lin0.out_features, hidden),
        "conv.out_channels": (conv_spec.out_channels, hidden),
        "gru.input_size": (gru.input_size, hidden),
        "gru.hidden_size": (gru.hidden_size, hidden),
        "set2set.in_channels": (module.set2set.in_channels, hidden),
        "lin1.in_features": (module.lin1.in_features, 2 * hidden),
        "lin1.out_features": (module.lin1.out_features, hidden),
        "lin2.in_features": (module.lin2.in_features, hidden),
    }
    for key, (got, want) in widths.items():
        if int(got) != int(want):
            raise ValueError(f"{key}={got}: the MPNN needs {want} (hidden = {hidden})")
    links = linear_links("lin0", ("W_in",), ("b_in",) if module.lin0.bias is not None else None)
    links += conv_links + _cell_links("gru.", ("gru",), "_l0", bool(gru.bias)) + s2s_links
    for k, lin in ((0, module.lin1), (1, module.lin2)):
        bias = ("head", f"b{k}") if lin.bias is not None else None
        links += linear_links(f"lin{k + 1}", ("head", f"W{k}"), bias)
    return spec, links, notes


def qm9_net_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    if len(call) != 1:
        raise ValueError("Net.forward must take one argument, the PyG Data (as the QM9 example)")
    (key,) = call
    data = call[key]
    counts = count_calls(module, args, kwargs, ["conv", "gru"])
    if counts["conv"] != counts["gru"]:
        raise ValueError(f"Net.forward ran conv {counts['conv']} and gru {counts['gru']} times")
    steps = counts["conv"]
    spec, links, notes = qm9_net_convert(module, steps)
    params = params_from_links(spec, module, links)
    x = np64(data.x)
    n = x.shape[0]
    batch = np.zeros(n, dtype=np.int64) if data.batch is None else np64(data.batch)
    num_graphs = int(batch.max()) + 1 if n else 0
    graph = make_graph(np64(data.edge_index), n, batch, num_graphs=num_graphs)
    inputs = (x, np.zeros((n, 3)), np64(data.edge_attr))
    links_in = [
        InputLink(f"{key}.x", lambda c: c[key].x, 0),
        InputLink(f"{key}.edge_attr", lambda c: c[key].edge_attr, 2),
    ]
    notes.append(f"Net.forward ran {steps} message-passing steps (counted on this call)")

    def gru_state(cache, t):
        # h after step t is the GRU input of step t + 1, or Set2Set's input after the last step
        return cache.gru[t + 1].h if t + 1 < steps else cache.set2set.x

    taps = [Tap("lin0", lambda cache: cache.z_in)]
    for t, gru_tap in enumerate(gru_taps("gru", steps, gru_state)):
        taps += [Tap("conv", (lambda cache, t=t: cache.conv_pre[t]), call=t), gru_tap]
    taps += [
        Tap("set2set", lambda cache: cache.head.h[0]),
        Tap("lin1", lambda cache: cache.head.z[0]),
        Tap("lin2", lambda cache: cache.head.z[1]),
    ]
    out = spec.out_channels
    return Binding(
        spec, params, graph, inputs, links, links_in,
        lambda r: (r.reshape(num_graphs, out),), taps, notes, ("out",),
    )
