r"""Bindings of Steerable-E3-GNN calls: the PyG ``Data`` (or call arguments) read into our graph and
inputs, the links of the differentiable tensors, and the taps.

``SEGNN.forward(graph)`` reads ``graph.x``, ``edge_index``, ``edge_attr``, ``node_attr``,
``batch`` and, when present, ``additional_message_features`` (``pos`` is unpacked but never
used, so it gets no gradient on either side). They become our
``forward(params, graph, x, None, edge_attr, node_attr, message_features)``; edges are PyG's
``(source j, target i)``, which is our ``(src, dst)``. The published forward overwrites
``node_attr[:, 0] = 1`` on the caller's Data; our reference mode does the same on a copy, so
that column's gradient is 0 on both sides.

Data the published code cannot run on is refused with ``ValueError`` naming the field:
``node_attr`` with fewer rows than nodes (the transforms' scatter drops trailing nodes without
incoming edges; the published ``catch_isolated_nodes`` then fails with a NameError), extra
message features the model has no irreps for (or missing ones), and ``norm='instance'`` without
``batch`` (the published InstanceNorm then normalises each node by its own norm instead of its
graph's).

Taps, in the order the peer's submodules run: ``embedding_layer``; per layer ``k``:
``layers.k.message_layer_1``, ``message_layer_2`` (per edge), ``update_layer_1``,
``update_layer_2``, ``feature_norm`` (with ``norm='instance'``), ``layers.k``; then
``pre_pool1``, ``pre_pool2`` and, for graph tasks, ``post_pool1``, ``post_pool2``. Our value of
a block's output is the input the next block received (read from the forward cache) or, for a
block whose output is not stored, the block run again on its cached inputs.
"""

from __future__ import annotations

import numpy as np

from .. import make_graph
from ._binding import Binding, InputLink, Tap
from ._segnn_convert import layer_convert, segnn_convert
from ._segnn_o3 import norm_convert, tp_convert
from ._torch import bind_call, np64, params_from_links

__all__ = ["layer_binding", "norm_binding", "read_data", "segnn_binding", "tp_binding"]


def _rerun(block, params, cache):
    """A steerable block's output, from its cached inputs (plain or gated cache)."""
    c = cache.tp if hasattr(cache, "gate") else cache
    return block.forward(params, c.tp.x1, c.tp.x2 if c.has_x2 else None)[0]


def _input_of(cache):
    """The first input ``x1`` that a steerable block received (plain or gated cache)."""
    c = cache.tp if hasattr(cache, "gate") else cache
    return c.tp.x1


def _floating(t) -> bool:
    return t is not None and hasattr(t, "is_floating_point") and t.is_floating_point()


def _graph(edge_index, n: int, batch, what: str):
    """Our graph; ``edge_index=None`` for a block without edges (InstanceNorm)."""
    if edge_index is None:
        ei = np.zeros((2, 0), np.int64)
    elif not hasattr(edge_index, "dim") or edge_index.dim() != 2:
        raise ValueError(f"{what}edge_index must be a (2, E) tensor")
    else:
        ei = np64(edge_index).astype(np.int64)
    b = None if batch is None else np64(batch).astype(np.int64)
    num_graphs = int(b.max()) + 1 if b is not None and b.size else 1
    return make_graph(ei, n, b, num_graphs=num_graphs)


def _need_batch(spec_norm, batch, what: str) -> None:
    if spec_norm == "instance" and batch is None:
        raise ValueError(
            f"{what}batch is None with norm='instance': the published InstanceNorm then "
            "normalises every node by its own norm (it indexes its per-graph factors with "
            "None); pass a Batch (or set batch to zeros for one graph)"
        )


def layer_taps(spec, params: dict, layer_cache, prefix: str) -> list:
    """Taps inside one SEGNN layer (``layer_cache(cache)`` -> that layer's cache)."""
    taps = [
        Tap(f"{prefix}message_layer_1", lambda c: _input_of(layer_cache(c).msg2)),
        Tap(f"{prefix}message_layer_2",
            lambda c: _rerun(spec.msg2, params["msg2"], layer_cache(c).msg2)),
        Tap(f"{prefix}update_layer_1", lambda c: _input_of(layer_cache(c).upd2)),
        Tap(f"{prefix}update_layer_2",
            lambda c: _rerun(spec.upd2, params["upd2"], layer_cache(c).upd2)),
    ]
    return taps


# --- SEGNN ---------------------------------------------------------------------------------------


def read_data(spec, data, key: str = "graph"):
    """``(graph, inputs, input_links)`` for our SEGNN from the Data the peer's forward
    takes (``key``: the forward's parameter name, for the report and the links)."""
    what = f"{key}."
    x = getattr(data, "x", None)
    if not _floating(x) or x.dim() != 2:
        raise ValueError(f"{what}x must be a floating (N, dim) tensor")
    n = int(x.shape[0])
    batch = getattr(data, "batch", None)
    _need_batch(spec.norm, batch, what)
    if getattr(data, "edge_index", None) is None:
        raise ValueError(f"{what}edge_index is missing")
    graph = _graph(data.edge_index, n, batch, what)
    fields = {}
    for name in ("edge_attr", "node_attr"):
        t = getattr(data, name, None)
        if not _floating(t):
            raise ValueError(f"{what}{name} must be a floating tensor (the published forward "
                             "reads it)")
        fields[name] = t
    rows = int(fields["node_attr"].shape[0])
    if rows < n:
        raise ValueError(
            f"{what}node_attr has {rows} rows for {n} nodes: the transform dropped the trailing "
            "nodes without incoming edges, and the published SEGNN.catch_isolated_nodes fails "
            "on such data (NameError); give every node a row"
        )
    amf = getattr(data, "additional_message_features", None)
    if spec.message_features == "input" and not _floating(amf):
        raise ValueError(
            f"{what}additional_message_features is missing, but the model's message layers "
            f"expect {spec.additional_message_irreps} extra features per edge"
        )
    if spec.message_features == "none" and amf is not None:
        raise ValueError(
            f"{what}additional_message_features is given, but the model was built with "
            "additional_message_irreps=None (its message layers would reject the extra columns)"
        )
    inputs = (np64(x), None, np64(fields["edge_attr"]), np64(fields["node_attr"]),
              None if amf is None else np64(amf))
    links = [
        InputLink(f"{key}.x", lambda c: c[key].x, 0),
        InputLink(f"{key}.edge_attr", lambda c: c[key].edge_attr, 2),
        InputLink(f"{key}.node_attr", lambda c: c[key].node_attr, 3),
    ]
    if amf is not None:
        links.append(InputLink(f"{key}.additional_message_features",
                               lambda c: c[key].additional_message_features, 4))
    return graph, inputs, links


def segnn_taps(spec, params: dict) -> list:
    d, num = spec.irreps_hidden.dim, spec.num_layers

    def layer_out(k):
        # layer k's output is what layer k + 1's update block read in its first d columns
        if k + 1 < num:
            return lambda c: _input_of(c.layers[k + 1].upd1)[:, :d]
        return lambda c: _input_of(c.pre1)

    taps = [Tap("embedding_layer", layer_out(-1))]
    for k in range(num):
        p = f"layers.{k}."
        taps += layer_taps(spec.layer, params["layers"][str(k)], lambda c, k=k: c.layers[k], p)
        if spec.norm == "instance":
            taps.append(Tap(f"{p}feature_norm", layer_out(k)))
        taps.append(Tap(f"layers.{k}", layer_out(k)))
    taps += [
        Tap("pre_pool1", lambda c: _input_of(c.pre2)),
        Tap("pre_pool2", lambda c: _rerun(spec.pre2, params["pre2"], c.pre2)),
    ]
    if spec.task == "graph":
        taps += [
            Tap("post_pool1", lambda c: _input_of(c.readout.post2)),
            Tap("post_pool2", lambda c: _rerun(spec.post2, params["post2"], c.readout.post2)),
        ]
    return taps


def segnn_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    if len(call) != 1:
        raise ValueError("SEGNN.forward must take one argument, the PyG Data (or Batch)")
    (key,) = call
    spec, links, notes = segnn_convert(module)
    params = params_from_links(spec, module, links)
    graph, inputs, input_links = read_data(spec, call[key], key)
    taps = segnn_taps(spec, params)
    return Binding(spec, params, graph, inputs, links, input_links, lambda r: (r,), taps, notes,
                   ("output",))


# --- single modules ------------------------------------------------------------------------------


def layer_binding(module, *args, **kwargs):
    """``SEGNNLayer.forward(x, edge_index, edge_attr, node_attr, batch,
    additional_message_features=None)`` -> our ``forward(params, graph, h, edge_attr,
    node_attr, message_features)``."""
    call = bind_call(module, args, kwargs)
    names = list(call)
    if len(names) < 5:
        raise ValueError("SEGNNLayer.forward must take (x, edge_index, edge_attr, node_attr, "
                         "batch[, additional_message_features])")
    spec, links, notes = layer_convert(module)
    params = params_from_links(spec, module, links)
    x_key, ei_key, ea_key, na_key, b_key = names[:5]
    amf_key = names[5] if len(names) > 5 else None
    x = call[x_key]
    _need_batch(spec.norm, call[b_key], "")
    graph = _graph(call[ei_key], int(x.shape[0]), call[b_key], "")
    amf = None if amf_key is None else call[amf_key]
    if (amf is None) != (spec.additional_message_irreps is None):
        raise ValueError(
            f"{amf_key or 'additional_message_features'} must be given exactly when the layer "
            f"has additional_message_irreps (here {spec.additional_message_irreps})"
        )
    inputs = (np64(x), np64(call[ea_key]), np64(call[na_key]),
              None if amf is None else np64(amf))
    input_links = [InputLink(k, (lambda c, k=k: c[k]), i)
                   for i, k in enumerate((x_key, ea_key, na_key, amf_key))
                   if k is not None and _floating(call[k])]
    # no tap on feature_norm: its output is the layer's output row
    taps = layer_taps(spec, params, lambda c: c, "")
    return Binding(spec, params, graph, inputs, links, input_links, lambda r: (r,), taps, notes)


def norm_binding(module, *args, **kwargs):
    """``InstanceNorm.forward(input, batch)`` -> our ``forward(params, graph, x)``."""
    call = bind_call(module, args, kwargs)
    x_key, b_key = list(call)[:2]
    spec, links, notes = norm_convert(module)
    params = params_from_links(spec, module, links)
    _need_batch("instance", call[b_key], "")
    x = call[x_key]
    graph = _graph(None, int(x.shape[0]), call[b_key], "")
    links_in = [InputLink(x_key, lambda c: c[x_key], 0)] if _floating(x) else []
    return Binding(spec, params, graph, (np64(x),), links, links_in, lambda r: (r,), [], notes)


def tp_binding(module, *args, **kwargs):
    """``O3TensorProduct[SwishGate].forward(data_in1, data_in2=None)`` -> our graph-free
    ``forward(params, x1, x2)``."""
    call = bind_call(module, args, kwargs)
    k1, k2 = list(call)[:2]
    x1, x2 = call[k1], call[k2]
    spec, links, notes = tp_convert(module, in2=x2 is not None)
    if x2 is None and spec.irreps_in2 is not None:
        raise ValueError(f"{k2} is required: the module was built with irreps_in2="
                         f"{spec.irreps_in2}")
    params = params_from_links(spec, module, links)
    inputs = (np64(x1), None if x2 is None else np64(x2))
    links_in = [InputLink(k, (lambda c, k=k: c[k]), i)
                for i, k in enumerate((k1, k2)) if _floating(call[k])]
    return Binding(spec, params, None, inputs, links, links_in, lambda r: (r,), [], notes)
