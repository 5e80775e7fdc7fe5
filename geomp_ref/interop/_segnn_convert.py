r"""Steerable-E3-GNN's ``SEGNNLayer`` and ``SEGNN`` -> our SEGNN specs and :class:`ParamLink`
lists (no torch import here; the O3 blocks inside are converted by
:mod:`geomp_ref.interop._segnn_o3`).

``layer_convert(module, name, prefix, path)`` and ``segnn_convert(module)`` return ``(spec, links,
notes)``. Specs are built in ``mode="reference"``; the network takes its edge attributes, node
attributes and extra message features as inputs (``edge_attr``, ``node_attr`` and
``message_features`` ``"input"``), since the published forward reads them from the Data as they
are, and sets the node attribute's column 0 to 1 as the published ``catch_isolated_nodes`` does.
The layer's extra message irreps are recovered from ``message_layer_1``'s input irreps
``(2 * hidden + extra).simplify()`` (compared irrep copy by irrep copy, so the merge of equal
neighbouring blocks does not matter). Every block is converted on its own and must equal the
block our spec builds; one SEGNN spec holds one layer configuration, so the layers must agree.
"""

from __future__ import annotations

from .. import o3
from ..layers.segnn import SEGNN
from ..layers.segnn_layer import SEGNNLayer
from ..o3.spherical_harmonics import LMAX as _SH_LMAX
from ._segnn_o3 import (
    built,
    check_covered,
    norm_convert,
    norm_matches,
    same_block,
    tp_convert,
    units,
)
from ._torch import class_names

__all__ = ["LAYER_BLOCKS", "NET_BLOCKS", "layer_convert", "layer_matches", "segnn_convert",
           "segnn_matches"]

#: (peer submodule, our child) of a SEGNN layer, in forward order.
LAYER_BLOCKS = (
    ("message_layer_1", "msg1"),
    ("message_layer_2", "msg2"),
    ("update_layer_1", "upd1"),
    ("update_layer_2", "upd2"),
)

#: (peer submodule, our child) of the network's blocks outside the layers.
NET_BLOCKS = (
    ("embedding_layer", "embed"),
    ("pre_pool1", "pre1"),
    ("pre_pool2", "pre2"),
    ("post_pool1", "post1"),
    ("post_pool2", "post2"),
)

_POOLERS = {"global_mean_pool": "avg", "global_add_pool": "sum"}


def layer_matches(module) -> bool:
    """``SEGNNLayer``: a PyG ``MessagePassing`` with the four steerable layers."""
    names = class_names(module)
    return (
        "SEGNNLayer" in names
        and hasattr(module, "propagate")
        and all(hasattr(module, peer) for peer, _ in LAYER_BLOCKS)
    )


def segnn_matches(module) -> bool:
    """The ``SEGNN`` network (embedding, ``layers``, pre-pool blocks, ``task``)."""
    need = ("embedding_layer", "layers", "pre_pool1", "pre_pool2", "task")
    return "SEGNN" in class_names(module) and all(hasattr(module, k) for k in need)


# --- SEGNNLayer ----------------------------------------------------------------------------------


def _check_message_passing(module, name: str) -> None:
    aggr = module.aggr if isinstance(module.aggr, str) else type(module.aggr).__name__
    if aggr not in ("add", "sum", "SumAggregation"):
        raise ValueError(f"{name}.aggr={aggr!r} is not supported (the published layer sums "
                         "its messages: aggr='add')")
    if getattr(module, "flow", "source_to_target") != "source_to_target":
        raise ValueError(f"{name}.flow={module.flow!r} is not supported (source_to_target)")
    if getattr(module, "node_dim", -2) not in (-2, 0):
        raise ValueError(f"{name}.node_dim={module.node_dim} is not supported (-2)")


def _message_irreps(msg_in, hid, name: str):
    """The extra message irreps: ``msg_in`` is ``(2 * hidden + extra).simplify()``."""
    copies, head = units(msg_in), units(hid) * 2
    if copies[: len(head)] != head:
        raise ValueError(f"{name}.message_layer_1.irreps_in1={msg_in} does not start with "
                         f"twice the hidden irreps {hid}")
    tail = copies[len(head):]
    return o3.Irreps([(1, ir) for ir in tail]).simplify() if tail else None


def layer_convert(module, name: str = "SEGNNLayer", prefix: str = "", path: tuple = ()):
    """``(spec, links, notes)`` of a ``SEGNNLayer`` (``norm``: None, ``"none"``, ``"instance"``)."""
    _check_message_passing(module, name)
    norm = getattr(module, "norm", None)
    # the published layer treats any other value (main.py passes the string "none") as no norm
    norm = None if isinstance(norm, str) and norm == "none" else norm
    if norm == "batch" or getattr(module, "message_norm", None) is not None:
        raise ValueError(
            f"{name}.norm='batch' is not supported (e3nn BatchNorm keeps running statistics "
            "and normalises messages too); use norm=None or norm='instance'"
        )
    if norm not in (None, "instance"):
        raise ValueError(f"{name}.norm={norm!r} is not supported (None or 'instance')")
    if (norm == "instance") != (getattr(module, "feature_norm", None) is not None):
        raise ValueError(f"{name}.feature_norm does not fit norm={norm!r}")
    blocks, links, notes = {}, [], []
    for peer, ours in LAYER_BLOCKS:
        spec, lk, nt = tp_convert(getattr(module, peer), f"{name}.{peer}", f"{prefix}{peer}.",
                                  tuple(path) + (ours,))
        blocks[ours] = spec
        links += lk
        notes += [n for n in nt if n not in notes]
    hid = blocks["upd2"].irreps_out
    edge, node = blocks["msg1"].irreps_in2, blocks["upd1"].irreps_in2
    if edge is None or node is None:
        raise ValueError(f"{name}: message_layer_1 and update_layer_1 must take the edge and "
                         "node attributes as their second input")
    add = _message_irreps(blocks["msg1"].irreps_in1, hid, name)
    spec = built(lambda: SEGNNLayer(hid, edge, node, add, norm, mode="reference"), name)
    for peer, ours in LAYER_BLOCKS:
        if not same_block(getattr(spec, ours), blocks[ours]):
            raise ValueError(
                f"{name}.{peer} is {blocks[ours]}, but a SEGNN layer with hidden irreps {hid}, "
                f"edge attributes {edge} and node attributes {node} builds {getattr(spec, ours)}"
            )
    if norm == "instance":
        fn = module.feature_norm
        if not norm_matches(fn):
            raise ValueError(f"{name}.feature_norm must be the published InstanceNorm; got "
                             f"{type(fn).__name__}")
        nspec, lk, _ = norm_convert(fn, f"{name}.feature_norm", f"{prefix}feature_norm.",
                                    tuple(path) + ("feature_norm",))
        for field in ("irreps", "eps", "affine", "normalization"):
            if getattr(nspec, field) != getattr(spec.feature_norm, field):
                raise ValueError(
                    f"{name}.feature_norm.{field}={getattr(fn, field)!r} is not supported "
                    f"inside a layer (the published layer builds InstanceNorm(hidden_irreps) "
                    f"with {field}={getattr(spec.feature_norm, field)!r})"
                )
        links += lk
    return spec, links, notes


# --- SEGNN ---------------------------------------------------------------------------------------


def segnn_convert(module):
    """``(spec, links, notes)`` of the ``SEGNN`` network: our :class:`~geomp_ref.layers.segnn.
    SEGNN` with the edge attributes, node attributes and extra message features as inputs."""
    task = module.task
    if task not in ("graph", "node"):
        raise ValueError(f"SEGNN.task={task!r} is not supported ('graph' or 'node')")
    if len(module.layers) == 0:
        raise ValueError("SEGNN.layers is empty (num_layers=0 is not supported)")
    pool = "avg"
    if task == "graph":
        pooler = getattr(module, "pooler", None)
        pool = _POOLERS.get(getattr(pooler, "__name__", None))
        if pool is None:
            raise ValueError(
                f"SEGNN.pooler={getattr(pooler, '__name__', pooler)!r} is not supported "
                "(pool='avg': global_mean_pool, pool='sum': global_add_pool)"
            )
    links, notes, blocks = [], [], {}
    for peer, ours in NET_BLOCKS:
        if ours.startswith("post") and task == "node":
            continue
        spec, lk, nt = tp_convert(getattr(module, peer), peer, f"{peer}.", (ours,))
        blocks[ours] = spec
        links += lk
        notes += [n for n in nt if n not in notes]
    layer = None
    for k, lay in enumerate(module.layers):
        if not layer_matches(lay):
            raise ValueError(f"layers.{k} must be a SEGNNLayer; got {type(lay).__name__}")
        spec, lk, nt = layer_convert(lay, f"layers.{k}", f"layers.{k}.", ("layers", str(k)))
        if layer is not None and spec != layer:
            raise ValueError(f"layers.{k} is {spec}, layers.0 is {layer}: the oracle's SEGNN "
                             "holds one layer configuration")
        layer = spec
        links += lk
        notes += [n for n in nt if n not in notes]
    out_block = blocks["post2" if task == "graph" else "pre2"]
    add = layer.additional_message_irreps
    lmax = min(max(layer.irreps_edge_attr.lmax, 1), _SH_LMAX)
    spec = built(lambda: SEGNN(
        blocks["embed"].irreps_in1, blocks["embed"].irreps_out, out_block.irreps_out,
        num_layers=len(module.layers), lmax_attr=lmax, task=task, pool=pool, norm=layer.norm,
        edge_attr="input", node_attr="input",
        message_features="none" if add is None else "input", additional_message_irreps=add,
        irreps_edge_attr=layer.irreps_edge_attr, irreps_node_attr=layer.irreps_node_attr,
        mode="reference"), "SEGNN")
    if spec.layer != layer:
        raise ValueError(f"layers: {layer} does not fit the embedding's hidden irreps "
                         f"{spec.irreps_hidden}")
    for peer, ours in NET_BLOCKS:
        if ours in blocks and not same_block(getattr(spec, ours), blocks[ours]):
            raise ValueError(f"{peer} is {blocks[ours]}, but this SEGNN builds "
                             f"{getattr(spec, ours)} there")
    check_covered(module, links, "SEGNN")
    return spec, links, notes
