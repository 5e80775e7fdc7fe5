r"""vgsatorras/egnn's layers ``E_GCL`` (``models/gcl.py`` and ``models/egnn_clean``),
``E_GCL_vel`` and ``E_GCL_mask`` (``qm9/models.py``) as :class:`~geomp_ref.layers.egnn_layer.
EGNNLayer` options, and what the model adapters share (activations, edge lists, taps).

Conventions of the published code: ``edge_index = [row, col]`` with ``row`` = receiver i and
``col`` = sender j, so our ``edge_index`` is ``(col, row)``; it may be a (2, E) tensor or a list
of two index tensors. ``gcl.py`` adds the coordinate update to its ``coord`` argument in place;
the conversion only reads copies of the arguments, before anything runs.

Options, read from the module itself:

=========================  =================================  ===================================
published                  ``models/gcl.py``                  ``models/egnn_clean``
=========================  =================================  ===================================
activation (``act_fn``)    ReLU (the N-body code passes SiLU)  SiLU
residual                   ``recurrent``                      ``residual``
coordinate aggregation     mean                               ``coords_agg`` (mean or sum)
``coords_weight``          read                               1
clamp of :math:`t_{ij}`    always +-100 (its ``clamp`` flag    none
                           is not read)
normalised difference      ``norm_diff``: :math:`/(n + 1)`     ``normalize``: :math:`/(n +
                                                              \epsilon)`, norm detached
``tanh``, ``attention``    read                               read
=========================  =================================  ===================================

egnn_clean's detached norm becomes ``detach_norm=True``, so the gradients are those of its
autograd. ``E_GCL_mask`` has no coordinate network (``update_coords=False``) and multiplies every
message by ``edge_mask``: a 0/1 mask is the graph without the masked edges (any other value
raises); ``node_mask`` and ``n_nodes`` are not read by the layer. Activations: ReLU, SiLU, Tanh,
Sigmoid, GELU (exact), Identity; anything else (e.g. the LeakyReLU default of ``GCL_rf_vel``)
raises ValueError naming it.
"""

from __future__ import annotations

import numpy as np

from .. import make_graph
from ..layers.egnn_layer import EGNNLayer
from ..ops import scatter
from ._binding import Binding, InputLink, Tap, linear_links
from ._egnn_blocks import EGCL
from ._torch import bind_call, class_names, import_torch, np64, params_from_links

_ACTS = {"ReLU": "relu", "SiLU": "silu", "Tanh": "tanh", "Sigmoid": "sigmoid", "GELU": "gelu",
         "Identity": "identity", "Swish_": "silu"}


def activation_name(mod, where: str) -> str:
    """Our name of the activation module ``mod`` (``where`` names the option in errors)."""
    kind = type(mod).__name__
    if kind == "GELU" and getattr(mod, "approximate", "none") != "none":
        raise ValueError(f"{where}={mod!r}: the oracle's GELU is the exact one "
                         "(approximate='none')")
    if kind not in _ACTS:
        raise ValueError(
            f"{where}={mod!r} is not supported: the oracle's activations are "
            f"{', '.join(sorted(set(_ACTS) - {'Swish_'}))}"
        )
    return _ACTS[kind]


def common_activation(acts: list, where: str) -> str:
    """The one activation of a module built with a single ``act_fn`` (``acts``: (name, module))."""
    names = {activation_name(m, f"{where} ({n})") for n, m in acts}
    if len(names) != 1:
        raise ValueError(f"{where}: the layers use different activations {sorted(names)}")
    return names.pop()


def sequence(seq, where: str, kinds: list) -> list:
    """The modules of ``seq`` (a ``Sequential``), checked against ``kinds`` ("act" = any)."""
    mods = list(seq) if "Sequential" in class_names(seq) else None
    got = [type(m).__name__ for m in mods] if mods is not None else [type(seq).__name__]
    ok = mods is not None and len(mods) == len(kinds) and all(
        k == "act" or g == k for g, k in zip(got, kinds)
    )
    if not ok:
        raise ValueError(f"{where} must be Sequential({', '.join(kinds)}); got {got}")
    return mods


def edge_index_from(edges, where: str) -> np.ndarray:
    """Our (2, E) ``edge_index`` = (col, row) from the published ``[row, col]``."""
    if hasattr(edges, "dim"):
        if edges.dim() != 2 or edges.shape[0] != 2:
            raise ValueError(f"{where} must be [row, col]: a (2, E) tensor or two index tensors")
        row, col = edges[0], edges[1]
    elif isinstance(edges, (list, tuple)) and len(edges) == 2:
        row, col = edges
    else:
        raise ValueError(f"{where} must be [row, col]: a (2, E) tensor or two index tensors")
    row, col = (np.asarray(np64(t)).reshape(-1) for t in (row, col))
    if row.shape != col.shape or (row.size and not np.issubdtype(row.dtype, np.integer)):
        raise ValueError(f"{where}: row and col must be integer index tensors of one length")
    return np.stack([col, row]).astype(np.int64)


# --- which layer --------------------------------------------------------------------------------


def _has(module, *names) -> bool:
    return all(hasattr(module, n) for n in names)


def egcl_kind(module) -> str | None:
    """``"mask"``, ``"vel"``, ``"clean"``, ``"gcl"`` or None (class names and structure)."""
    names = class_names(module)
    if "E_GCL" not in names and "E_GCL_mask" not in names:
        return None
    if not _has(module, "edge_mlp", "node_mlp", "edge_model", "node_model"):
        return None
    if "E_GCL_mask" in names and not hasattr(module, "coord_mlp"):
        return "mask"
    if not hasattr(module, "coord_mlp"):
        return None
    if "E_GCL_vel" in names and _has(module, "coord_mlp_vel", "coords_weight", "recurrent"):
        return "vel"
    if _has(module, "residual", "coords_agg", "epsilon", "normalize"):
        return "clean"
    if _has(module, "recurrent", "coords_weight", "norm_diff"):
        return "gcl"
    return None


def egcl_matches(module) -> bool:
    return egcl_kind(module) is not None


# --- conversion ---------------------------------------------------------------------------------


def _in_features(module, kind, name, edge_in, node_in, h_msg, out, in_features):
    """input_nf, which the weights fix only with residual, velocity or egnn_clean."""
    if kind == "vel":
        return int(module.coord_mlp_vel[0].in_features)
    if kind == "clean":
        return node_in - h_msg
    if in_features is not None:
        return int(in_features)
    if module.recurrent:
        return out
    fits = [c for c in range(1, (edge_in - 1) // 2 + 1) if node_in - h_msg - c >= 0]
    if len(fits) == 1:
        return fits[0]
    raise ValueError(
        f"{name}: with recurrent=False its input_nf is not fixed by the weights (edges_in_d and "
        "nodes_att_dim trade off); pass from_torch(module, in_features=...), or let compare / "
        "inputs_from_torch read it from h"
    )


def egcl_convert(module, name: str = "E_GCL", prefix: str = "", path: tuple = (),
                 in_features=None):
    """``(EGNNLayer, links, notes)`` for one published layer (links under ``prefix``, our
    params under ``path``)."""
    kind = egcl_kind(module)
    edge = sequence(module.edge_mlp, f"{name}.edge_mlp", ["Linear", "act", "Linear", "act"])
    node = sequence(module.node_mlp, f"{name}.node_mlp", ["Linear", "act", "Linear"])
    acts = [("edge_mlp.1", edge[1]), ("edge_mlp.3", edge[3]), ("node_mlp.1", node[1])]
    tanh = bool(getattr(module, "tanh", False))
    coord = None
    if kind != "mask":
        kinds = ["Linear", "act", "Linear"] + (["Tanh"] if tanh else [])
        coord = sequence(module.coord_mlp, f"{name}.coord_mlp (tanh={tanh})", kinds)
        acts.append(("coord_mlp.1", coord[1]))
    vel = None
    if kind == "vel":
        vel = sequence(module.coord_mlp_vel, f"{name}.coord_mlp_vel", ["Linear", "act", "Linear"])
        acts.append(("coord_mlp_vel.1", vel[1]))
    act = common_activation(acts, f"{name}.act_fn")
    attention = bool(module.attention)
    if attention:
        sequence(module.att_mlp, f"{name}.att_mlp", ["Linear", "Sigmoid"])
    edge_in, h_msg = int(edge[0].in_features), int(edge[2].out_features)
    node_in, out = int(node[0].in_features), int(node[2].out_features)
    residual = bool(module.residual if kind == "clean" else module.recurrent)
    c_in = _in_features(module, kind, name, edge_in, node_in, h_msg, out, in_features)
    edge_features, node_attr = edge_in - 2 * c_in - 1, node_in - h_msg - c_in
    if edge_features < 0 or node_attr < 0 or (kind == "clean" and node_attr):
        raise ValueError(f"{name}: the widths of edge_mlp.0 ({edge_in}) and node_mlp.0 "
                         f"({node_in}) do not fit input_nf = {c_in}")
    options = {"flavour": "egnn_clean" if kind == "clean" else "gcl", "activation": act,
               "attention": attention, "residual": residual, "tanh": tanh,
               "edge_features": edge_features, "node_attr_features": node_attr,
               "edge_hidden": int(edge[0].out_features), "node_hidden": int(node[0].out_features)}
    notes = []
    if kind == "clean":
        if module.coords_agg not in ("mean", "sum"):
            raise ValueError(f"{name}.coords_agg={module.coords_agg!r}: egnn_clean knows 'mean' "
                             "and 'sum'")
        options.update(coords_agg=module.coords_agg, normalize=bool(module.normalize),
                       norm_eps=float(module.epsilon), detach_norm=bool(module.normalize))
    elif kind == "mask":
        options.update(update_coords=False)
    else:
        options.update(coords_weight=float(module.coords_weight),
                       normalize=bool(module.norm_diff))
        if getattr(module, "clamp", False):
            notes.append(f"{name}.clamp=True is not read by gcl.py (it always clamps at +-100)")
    if coord is not None:
        options.update(coord_hidden=int(coord[0].out_features),
                       coord_bias=coord[2].bias is not None)
    try:
        spec = EGNNLayer(c_in, h_msg, out, velocity=vel is not None, **options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not expressible as an EGNNLayer ({exc})") from None
    links = _links(module, spec, prefix, path, edge, node, coord, vel)
    return spec, links, notes


def _lin(peer: str, lin, path: tuple, j: int, bias: bool = True) -> list:
    b = path + (f"b{j}",) if (bias and lin.bias is not None) else None
    return linear_links(peer, path + (f"W{j}",), b)


def _links(module, spec, prefix, path, edge, node, coord, vel) -> list:
    p = prefix
    links = _lin(f"{p}edge_mlp.0", edge[0], path + ("phi_e",), 0)
    links += _lin(f"{p}edge_mlp.2", edge[2], path + ("phi_e",), 1)
    links += _lin(f"{p}node_mlp.0", node[0], path + ("phi_h",), 0)
    links += _lin(f"{p}node_mlp.2", node[2], path + ("phi_h",), 1)
    if coord is not None:
        links += _lin(f"{p}coord_mlp.0", coord[0], path + ("phi_x",), 0)
        links += _lin(f"{p}coord_mlp.2", coord[2], path + ("phi_x",), 1)
    if spec.attention:
        links += _lin(f"{p}att_mlp.0", module.att_mlp[0], path + ("phi_inf",), 0)
    if vel is not None:
        links += _lin(f"{p}coord_mlp_vel.0", vel[0], path + ("phi_v",), 0)
        links += _lin(f"{p}coord_mlp_vel.2", vel[2], path + ("phi_v",), 1)
    return links


# --- taps ---------------------------------------------------------------------------------------


def layer_positions(layer: EGNNLayer, c, x: np.ndarray) -> np.ndarray:
    """x' of one EGNNLayer call from its cache and its input positions (the forward's own
    coordinate lines, so the value is the forward's to the last bit)."""
    x_new = x
    if layer.update_coords:
        t = c.coord.t
        t_c = t if layer.clamp is None else np.clip(t, -layer.clamp, layer.clamp)
        if layer.coords_agg == "mean":
            agg = scatter.aggregate_mean(c.graph, t_c, backend=layer.backend)
        else:
            agg = scatter.aggregate(c.graph, t_c, backend=layer.backend)
        x_new = x + layer.coords_weight * agg
    if layer.velocity:
        x_new = x_new + c.velocity.pv * c.velocity.v
    return x_new


def _flat(*arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def _peer_flat(out):
    torch = import_torch()
    return torch.cat([out[0].reshape(-1), out[1].reshape(-1)])


def inner_taps(layer: EGNNLayer, prefix: str, get, keep=None) -> list:
    """Taps on one layer's MLPs, in the order the published forward runs them (``get(cache)``
    returns that layer's :class:`~geomp_ref.layers.egnn_layer.EGNNLayerCache`; ``keep``: the
    peer's edges that are in our graph, None for all)."""

    def rows(out):
        return out if keep is None else out[import_torch().as_tensor(keep)]

    taps = [Tap(f"{prefix}edge_mlp",
                lambda cache: get(cache).attention.m_raw if layer.attention else get(cache).m,
                rows)]
    if layer.attention:
        taps.append(Tap(f"{prefix}att_mlp", lambda cache: get(cache).attention.att, rows))
    if layer.update_coords:
        taps.append(Tap(f"{prefix}coord_mlp", lambda cache: get(cache).coord.s))
    if layer.velocity:
        taps.append(Tap(f"{prefix}coord_mlp_vel", lambda cache: get(cache).velocity.pv))
    taps.append(Tap(f"{prefix}node_mlp", lambda cache: get(cache).phi_h.z[-1]))
    return taps


def stack_taps(layer: EGNNLayer, layers_of, h_last_of, x0: np.ndarray, num_layers: int) -> list:
    """Taps of an EGNN stack: each ``gcl_k``'s MLPs, then ``gcl_k`` itself, whose output
    ``(h, x)`` is compared as one flattened array (``layers_of(cache)``: the layer caches,
    ``h_last_of(cache)``: the last layer's features)."""

    def state(cache, k):
        caches = layers_of(cache)
        x = x0
        for j in range(k + 1):
            x = layer_positions(layer, caches[j], x)
        h = caches[k + 1].h if k + 1 < num_layers else h_last_of(cache)
        return _flat(h, x)

    taps = []
    for k in range(num_layers):
        taps += inner_taps(layer, f"gcl_{k}.", lambda cache, k=k: layers_of(cache)[k])
        taps.append(Tap(f"gcl_{k}", lambda cache, k=k: state(cache, k), _peer_flat))
    return taps


# --- one layer call -----------------------------------------------------------------------------


def _edge_mask(call, n_edges: int, name: str) -> np.ndarray:
    mask = np64(call["edge_mask"])
    if mask.size != n_edges or mask.ndim > 2 or (mask.ndim == 2 and mask.shape[1] != 1):
        raise ValueError(f"{name}: edge_mask must have shape (E, 1) with E = {n_edges}; got "
                         f"{mask.shape}")
    mask = mask.reshape(-1)
    if not np.all((mask == 0.0) | (mask == 1.0)):
        raise ValueError(f"{name}: edge_mask must be binary (0 or 1); a fractional mask scales "
                         "messages, which the oracle's graph cannot express")
    return mask == 1.0


def egcl_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    kind = egcl_kind(module)
    name = type(module).__name__
    h = call["h"]
    layer, links, notes = egcl_convert(module, name, in_features=int(h.shape[1]))
    spec = EGCL(layer)
    links = [_under("layer", lk) for lk in links]
    params = params_from_links(spec, module, links)
    ei = edge_index_from(call["edge_index"], f"{name}: edge_index")
    n_edges = ei.shape[1]
    keep = None
    if kind == "mask":
        keep = _edge_mask(call, n_edges, name)
        ei = ei[:, keep]
        notes.append(f"E_GCL_mask: {int(n_edges - keep.sum())} of {n_edges} edges have "
                     "edge_mask 0 and are left out of the graph; node_mask and n_nodes are not "
                     "read; the masks are data (no gradient rows)")
    graph = make_graph(ei, int(h.shape[0]))
    ea, na = call.get("edge_attr"), call.get("node_attr")
    vel = call.get("vel") if kind == "vel" else None
    ea_ours = None if ea is None else (np64(ea) if keep is None else np64(ea)[keep])
    inputs = (np64(h), np64(call["coord"]), None if vel is None else np64(vel), ea_ours,
              None if na is None else np64(na))
    links_in = [InputLink("h", lambda c: c["h"], 0), InputLink("coord", lambda c: c["coord"], 1)]
    if vel is not None:
        links_in.append(InputLink("vel", lambda c: c["vel"], 2))
    if ea is not None:
        links_in.append(_edge_attr_link(keep, n_edges))
    if na is not None:
        links_in.append(InputLink("node_attr", lambda c: c["node_attr"], 4))
    taps = inner_taps(layer, "", lambda cache: cache.layer, keep)
    n_out = 3 if layer.edge_features else 2

    def outputs(r):
        out = (r[0], r[1])
        if n_out == 3:
            out += (r[2] if keep is None else r[2][import_torch().as_tensor(keep)],)
        return out

    names = ("h", "coord", "edge_attr")[:n_out]
    return Binding(spec, params, graph, inputs, links, links_in, outputs, taps, notes, names)


def egcl_from_torch(module, in_features=None):
    """``(EGCL spec, links)`` of a layer without a call (``in_features`` only where the weights
    leave input_nf open)."""
    layer, links, _ = egcl_convert(module, type(module).__name__, in_features=in_features)
    return EGCL(layer), [_under("layer", lk) for lk in links]


def _edge_attr_link(keep, n_edges: int) -> InputLink:
    if keep is None:
        return InputLink("edge_attr", lambda c: c["edge_attr"], 3)

    def to_peer(g):  # the masked edges' attributes reach nothing
        full = np.zeros((n_edges,) + g.shape[1:])
        full[keep] = g
        return full

    return InputLink("edge_attr", lambda c: c["edge_attr"], 3,
                     to_ours=lambda a: a[keep], to_peer=to_peer)


def _under(key: str, link):
    """``link`` with our path moved under ``params[key]``."""
    from dataclasses import replace

    return replace(link, path=(key,) + tuple(link.path))
