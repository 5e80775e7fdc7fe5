r"""Adapter for egnn-pytorch's ``EGNN`` layer (lucidrains, ``pip install egnn-pytorch``; 0.2.8).

``compare(layer, feats, coors, edges=None, mask=None, adj_mat=None)`` takes exactly the layer's
forward arguments (dense batches: ``feats`` (B, n, F), ``coors`` (B, n, D), ``edges`` (B, n, n,
A), bool ``mask`` (B, n), bool ``adj_mat``); the spec is
:class:`~geomp_ref.interop._egnn_pytorch_dense.DenseEGNN`, an
:class:`~geomp_ref.layers.egnn_layer.EGNNLayer` on the graph of the pairs the layer uses (every
pair including self-pairs, or its neighbour selection: see that module), returning ``(feats',
coors')`` in the same layout.

Mapping (egnn-pytorch -> EGNNLayer): flavour ``"egnn_clean"`` (SiLU, no clamp of the products),
``coords_agg="sum"`` (egnn-pytorch sums the coordinate terms), residual features, the widths
``edge_hidden = 2 E_in`` (``E_in = 2 dim + edge_dim + 1``), ``hidden = m_dim``, ``coord_hidden
= 4 m_dim``, ``node_hidden = 2 dim``, ``coord_bias=True`` (``coors_mlp.3`` has a bias);
``soft_edges`` -> ``attention`` (``edge_gate`` = ``phi_inf``); ``m_pool_method`` ->
``messages_agg``; ``norm_coors`` -> ``normalize`` with ``norm_mode="max"``,
``norm_eps=coors_norm.eps`` and the learned ``coors_norm.scale`` as ``coords_scale``
(:math:`\Delta/\max(\lVert\Delta\rVert, \epsilon)\, s`, no detach); ``coor_weights_clamp_value``
-> ``weight_clamp`` (the scalar weight is bounded before it multiplies the direction);
``update_coors=False`` -> ``update_coords=False``; ``update_feats=False`` keeps ``phi_h`` at zero
(exact: :math:`h' = h + 0`). Weights transpose; ``edge_mlp.0/.3`` -> ``phi_e``, ``edge_gate.0``
-> ``phi_inf``, ``coors_mlp.0/.3`` -> ``phi_x``, ``node_mlp.0/.3`` -> ``phi_h`` (rows ``[h,
m]``).

Not expressible (ValueError naming the option): ``fourier_features > 0`` (sinusoidal encodings
of the squared distance), ``norm_feats=True`` (LayerNorm on the node MLP's input), dropout > 0
in training mode (call ``.eval()``; in eval mode dropout is the identity). ``EGNN_Network`` and
``EGNN_Sparse`` are other module types (no adapter).
"""

from __future__ import annotations

from ..layers.egnn_layer import EGNNLayer
from ._binding import Binding, InputLink, ParamLink, Tap, linear_links
from ._egnn_layers import activation_name, sequence
from ._egnn_pytorch_dense import DenseEGNN, neighbour_pairs, pair_graph
from ._torch import bind_call, class_names, import_torch, np64, params_from_links
from .compare import bind_compare

__all__ = ["SUPPORTED", "binding", "compare", "from_torch", "inputs_from_torch", "matches"]

#: The module types this adapter converts.
SUPPORTED = ("egnn_pytorch.EGNN",)

_ATTRS = ("edge_mlp", "node_norm", "coors_norm", "m_pool_method", "num_nearest_neighbors",
          "valid_radius", "coor_weights_clamp_value", "fourier_features")


def matches(module) -> bool:
    """True for egnn-pytorch's ``EGNN`` layer (class name and attributes; no torch import)."""
    return "EGNN" in class_names(module) and all(hasattr(module, a) for a in _ATTRS)


def _mlp(seq, where, last_act: bool, training: bool, notes: list):
    kinds = ["Linear", "dropout", "act", "Linear"] + (["act"] if last_act else [])
    mods = sequence(seq, where, [k if k == "Linear" else "act" for k in kinds])
    drop = mods[1]
    if type(drop).__name__ not in ("Dropout", "Identity"):
        raise ValueError(f"{where}.1 must be Dropout or Identity; got {type(drop).__name__}")
    p = float(getattr(drop, "p", 0.0))
    if p > 0 and training:
        raise ValueError(f"EGNN.dropout={p} in training mode is not supported (random); call "
                         ".eval() first (dropout is then the identity)")
    if p > 0:
        note = f"EGNN.dropout={p}: the module is in eval mode, dropout is the identity"
        if note not in notes:
            notes.append(note)
    for k in [2] + ([4] if last_act else []):
        if activation_name(mods[k], f"{where}.{k}") != "silu":
            raise ValueError(f"{where}.{k} must be SiLU (egnn-pytorch's activation)")
    return mods


def _convert(module, dim=None):
    """``(DenseEGNN, links, notes)``; ``dim`` is needed only when ``update_feats=False``."""
    if int(module.fourier_features) > 0:
        raise ValueError(f"EGNN.fourier_features={module.fourier_features} > 0 is not supported "
                         "(sinusoidal encodings of the squared distance); use 0")
    if type(module.node_norm).__name__ != "Identity":
        raise ValueError("EGNN.norm_feats=True is not supported (LayerNorm on the node MLP's "
                         "input has no counterpart in the oracle's EGNN layer)")
    if module.m_pool_method not in ("sum", "mean"):
        raise ValueError(f"EGNN.m_pool_method={module.m_pool_method!r} must be 'sum' or 'mean'")
    notes, training = [], bool(module.training)
    edge = _mlp(module.edge_mlp, "EGNN.edge_mlp", True, training, notes)
    m_dim, e_in = int(edge[3].out_features), int(edge[0].in_features)
    node = None
    if module.node_mlp is not None:
        node = _mlp(module.node_mlp, "EGNN.node_mlp", False, training, notes)
        dim = int(node[3].out_features)
    elif dim is None:
        raise ValueError("EGNN with update_feats=False: the feature width is not in the weights; "
                         "pass from_torch(module, dim=...), or let compare / inputs_from_torch "
                         "read it from feats")
    coor = None
    if module.coors_mlp is not None:
        coor = _mlp(module.coors_mlp, "EGNN.coors_mlp", False, training, notes)
    dim = int(dim)
    edge_dim = e_in - 2 * dim - 1
    if edge_dim < 0:
        raise ValueError(f"EGNN.edge_mlp.0 reads {e_in} features, fewer than 2 dim + 1")
    soft = module.edge_gate is not None
    if soft:
        sequence(module.edge_gate, "EGNN.edge_gate", ["Linear", "Sigmoid"])
    norm = type(module.coors_norm).__name__ != "Identity"
    options = {
        "flavour": "egnn_clean", "activation": "silu", "attention": soft, "residual": True,
        "coords_agg": "sum", "edge_features": edge_dim, "edge_hidden": int(edge[0].out_features),
        "node_hidden": int(node[0].out_features) if node is not None else 2 * dim,
        "messages_agg": module.m_pool_method, "update_coords": coor is not None,
        "weight_clamp": module.coor_weights_clamp_value,
    }
    if coor is not None:
        options.update(coord_hidden=int(coor[0].out_features),
                       coord_bias=coor[3].bias is not None)
    if norm:
        options.update(normalize=True, norm_mode="max", norm_eps=float(module.coors_norm.eps),
                       coords_scale=1e-2)
    try:
        layer = EGNNLayer(dim, m_dim, **options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"EGNN: not expressible as an EGNNLayer ({exc})") from None
    links = _links(module, edge, node, coor, soft, norm)
    if node is None:
        notes.append("EGNN.update_feats=False: phi_h is held at zero, so feats' = feats")
    return DenseEGNN(layer), links, notes


def _links(module, edge, node, coor, soft, norm) -> list:
    def lin(peer, mod, child, j):
        b = ("layer", child, f"b{j}") if mod.bias is not None else None
        return linear_links(peer, ("layer", child, f"W{j}"), b)

    links = lin("edge_mlp.0", edge[0], "phi_e", 0) + lin("edge_mlp.3", edge[3], "phi_e", 1)
    if soft:
        links += lin("edge_gate.0", module.edge_gate[0], "phi_inf", 0)
    if node is not None:
        links += lin("node_mlp.0", node[0], "phi_h", 0) + lin("node_mlp.3", node[3], "phi_h", 1)
    if coor is not None:
        links += lin("coors_mlp.0", coor[0], "phi_x", 0) + lin("coors_mlp.3", coor[3], "phi_x", 1)
    if norm:
        links.append(ParamLink("coors_norm.scale", ("layer", "coords_scale")))
    return links


def from_torch(module, dim=None):
    """``(DenseEGNN spec, params)`` for an egnn-pytorch ``EGNN`` (``dim=`` only when it was
    built with ``update_feats=False``).

    Raises
    ------
    TypeError
        Not an egnn-pytorch ``EGNN``.
    ValueError
        ``fourier_features > 0``, ``norm_feats=True``, dropout in training mode (each named).
    """
    import_torch()
    if not matches(module):
        raise TypeError(f"geomp_ref.interop.egnn_pytorch converts {SUPPORTED[0]}; got "
                        f"{type(module).__name__}")
    spec, links, _ = _convert(module, dim)
    return spec, params_from_links(spec, module, links)


def binding(module, *args, **kwargs):
    """The :class:`~geomp_ref.interop.Binding` of one ``module(feats, coors, edges, mask,
    adj_mat)`` call."""
    torch = import_torch()
    call = bind_call(module, args, kwargs)
    feats, coors = call["feats"], call["coors"]
    if feats.dim() != 3 or coors.dim() != 3:
        raise ValueError("EGNN: feats and coors must be batched, (B, n, F) and (B, n, D)")
    spec, links, notes = _convert(module, int(feats.shape[-1]))
    params = params_from_links(spec, module, links)
    b, n = int(feats.shape[0]), int(feats.shape[1])
    mask, adj = call.get("mask"), call.get("adj_mat")
    bb, ii, jj, slot, width = neighbour_pairs(torch, module, coors, mask, adj)
    graph = pair_graph(bb, ii, jj, b, n)
    edges = call.get("edges")
    inputs = (np64(feats), np64(coors), None if edges is None else np64(edges))
    links_in = [InputLink("feats", lambda c: c["feats"], 0),
                InputLink("coors", lambda c: c["coors"], 1)]
    if edges is not None:
        links_in.append(InputLink("edges", lambda c: c["edges"], 2))
    if adj is not None and not (int(module.num_nearest_neighbors) > 0
                                or module.only_sparse_neighbors):
        notes.append("adj_mat is not read without neighbour selection (num_nearest_neighbors=0)")
    notes.append(f"graph: {graph.num_edges} pairs j -> i (self-pairs included) of {b * n} nodes")
    taps = _taps(spec.layer, slot, width, b, n, module.node_mlp is not None)
    return Binding(spec, params, graph, inputs, links, links_in, lambda r: (r[0], r[1]), taps,
                   notes, ("feats", "coors"))


def _taps(layer, slot, width, b, n, has_node: bool) -> list:
    """The peer's per-pair tensors (B, n, J, .) read at our edges, and its node MLP."""
    torch = import_torch()
    index = torch.as_tensor(slot)

    def at_edges(out):
        return out.reshape(b * n * width, -1)[index]

    taps = [Tap("edge_mlp", lambda c: c.layer.attention.m_raw if layer.attention else c.layer.m,
                at_edges)]
    if layer.attention:
        taps.append(Tap("edge_gate", lambda c: c.layer.attention.att, at_edges))
    if layer.update_coords:
        taps.append(Tap("coors_mlp", lambda c: c.layer.coord.s, at_edges))
    if has_node:
        taps.append(Tap("node_mlp", lambda c: c.layer.phi_h.z[-1],
                        lambda out: out.reshape(b * n, -1)))
    return taps


def inputs_from_torch(module, *args, **kwargs):
    """``(graph, (feats, coors, edges))`` for ``spec.forward(params, graph, *inputs)``."""
    bnd = binding(module, *args, **kwargs)
    return bnd.graph, bnd.inputs


compare = bind_compare(__name__)
