r"""vgsatorras/egnn's stacked models: ``models/egnn_clean`` ``EGNN``, and ``n_body_system/
model.py``'s ``EGNN_vel``, ``EGNN`` (gcl layers, positions out), ``GNN``, ``RF_vel`` and
``Linear``.

=====================  =========================================  ============================
published              ours                                       forward inputs (ours)
=====================  =========================================  ============================
egnn_clean ``EGNN``    :class:`~geomp_ref.layers.egnn.EGNN`         ``(h, x, None, edge_attr,
                                                                  None)`` -> ``(h, x)``
``EGNN_vel``           :class:`EGNNPositions` (velocity layers)   ``(h, x, vel, edge_attr)``
N-body ``EGNN``        :class:`EGNNPositions`                     ``(h, x, None, edge_attr)``
``GNN``                :class:`GCLNetwork`                        ``(nodes, edge_attr)``
``RF_vel``             :class:`RadialFieldNetwork`                ``(vel_norm, x, vel,
                                                                  edge_attr)``
``Linear``             :class:`~geomp_ref.layers.mlp.MLP` (no      ``(input,)``
                       graph)
=====================  =========================================  ============================

The models take their features as the N-body script builds them (``|v|``, ``[q_i q_j,
|x_i - x_j|^2]``, ...); they are inputs here, differentiated as given. Every ``gcl_k`` must
convert to the same layer spec (the published constructors build them alike); one that differs
raises ValueError naming it. The N-body ``EGNN`` accepts ``vel`` but never reads it. Taps: the
input embedding, then per layer its MLPs and the layer's output (``(h, x)`` flattened for the
EGNN stacks, ``h`` for ``GNN``, ``x`` for ``RF_vel``), then ``GNN``'s decoder.
"""

from __future__ import annotations

from ..graph import make_graph
from ..layers.egnn import EGNN
from ..layers.mlp import MLP
from ..ops import activations
from ._binding import Binding, InputLink, Tap, linear_links
from ._egnn_blocks import EGNNPositions, GCLNetwork, RadialFieldNetwork
from ._egnn_layers import (
    common_activation,
    edge_index_from,
    egcl_convert,
    egcl_kind,
    sequence,
    stack_taps,
)
from ._torch import bind_call, class_names, np64, params_from_links

# --- recognising the models ---------------------------------------------------------------------


def _sub(module, name):
    return dict(module.named_children()).get(name)


def _first_layer_kind(module):
    first = _sub(module, "gcl_0")
    return None if first is None else egcl_kind(first)


def egnn_clean_matches(module) -> bool:
    return ("EGNN" in class_names(module) and _sub(module, "embedding_in") is not None
            and _sub(module, "embedding_out") is not None and hasattr(module, "n_layers")
            and _first_layer_kind(module) == "clean")


def egnn_vel_matches(module) -> bool:
    return ("EGNN_vel" in class_names(module) and _sub(module, "embedding") is not None
            and hasattr(module, "n_layers") and _first_layer_kind(module) == "vel")


def nbody_egnn_matches(module) -> bool:
    return ("EGNN" in class_names(module) and _sub(module, "embedding") is not None
            and _sub(module, "embedding_out") is None and _sub(module, "node_dec") is None
            and hasattr(module, "n_layers") and _first_layer_kind(module) == "gcl")


def gnn_matches(module) -> bool:
    first = _sub(module, "gcl_0")
    return ("GNN" in class_names(module) and first is not None and "GCL" in class_names(first)
            and all(_sub(module, k) is not None for k in ("embedding", "decoder"))
            and hasattr(module, "n_layers") and not hasattr(first, "coord_mlp"))


def rf_matches(module) -> bool:
    first = _sub(module, "gcl_0")
    return ("RF_vel" in class_names(module) and first is not None and hasattr(module, "n_layers")
            and all(hasattr(first, k) for k in ("phi", "coord_mlp_vel")))


def linear_matches(module) -> bool:
    kids = dict(module.named_children())
    return (type(module).__name__ == "Linear" and list(kids) == ["linear"]
            and hasattr(kids["linear"], "in_features"))


# --- shared pieces ------------------------------------------------------------------------------


def _num_layers(module, name: str) -> int:
    n = module.n_layers
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name}.n_layers={n!r} must be an int >= 1")
    for k in range(n):
        if _sub(module, f"gcl_{k}") is None:
            raise ValueError(f"{name}: n_layers={n} but there is no submodule gcl_{k}")
    return n


def _same_layers(module, name, convert):
    """Convert every ``gcl_k``; all must give the same spec. ``convert(sub, k) -> (spec,
    links, notes)``."""
    spec, links, notes = None, [], []
    for k in range(_num_layers(module, name)):
        spec_k, links_k, notes_k = convert(_sub(module, f"gcl_{k}"), k)
        if spec is None:
            spec = spec_k
        elif spec_k != spec:
            raise ValueError(f"{name}.gcl_{k} is built with other options than gcl_0 ({spec_k} "
                             f"vs {spec}); the oracle's stack repeats one layer")
        links += links_k
        notes += [n for n in notes_k if n not in notes]
    return spec, links, notes


def _inputs(call, order, keys):
    """(our inputs, input links): ``order`` lists the call keys (or None) in our input order."""
    inputs, links = [], []
    for i, key in enumerate(order):
        value = None if key is None else call.get(key)
        inputs.append(None if value is None else np64(value))
        if value is not None and key in keys:
            links.append(InputLink(key, lambda c, key=key: c[key], i))
    return tuple(inputs), links


# --- EGNN stacks --------------------------------------------------------------------------------


def _egnn_stack(module, name, kind, path):
    emb_name = "embedding_in" if kind == "clean" else "embedding"
    emb = _sub(module, emb_name)
    hidden = int(emb.out_features)

    def convert(sub, k):
        return egcl_convert(sub, f"{name}.gcl_{k}", f"gcl_{k}.", path + ("layers", str(k)),
                            in_features=hidden)

    layer, links, notes = _same_layers(module, name, convert)
    if egcl_kind(_sub(module, "gcl_0")) != kind or layer.in_features != hidden:
        raise ValueError(f"{name}: gcl_k must be {kind} layers on {emb_name}'s {hidden} features")
    bias = path + ("b_in",) if emb.bias is not None else None
    links = linear_links(emb_name, path + ("W_in",), bias) + links
    out = None
    if kind == "clean":
        last = _sub(module, "embedding_out")
        out = int(last.out_features)
        bias = path + ("b_out",) if last.bias is not None else None
        links += linear_links("embedding_out", path + ("W_out",), bias)
    return EGNN(int(emb.in_features), out, layer, module.n_layers), links, notes


def egnn_clean_convert(module):
    return _egnn_stack(module, "EGNN", "clean", ())


def egnn_vel_convert(module):
    egnn, links, notes = _egnn_stack(module, type(module).__name__, "vel", ("egnn",))
    return EGNNPositions(egnn), links, notes


def nbody_egnn_convert(module):
    egnn, links, notes = _egnn_stack(module, "EGNN", "gcl", ("egnn",))
    return EGNNPositions(egnn), links, notes


def _stack_binding(module, convert, order, kind, args, kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = convert(module)
    params = params_from_links(spec, module, links)
    h = call["h"]
    graph = make_graph(edge_index_from(call["edges"], "edges"), int(h.shape[0]))
    inputs, links_in = _inputs(call, order, {"h", "x", "vel", "edge_attr"})
    egnn = spec if isinstance(spec, EGNN) else spec.egnn
    get = (lambda c: c) if isinstance(spec, EGNN) else (lambda c: c.egnn)
    emb = "embedding_in" if kind == "clean" else "embedding"
    taps = [Tap(emb, lambda c: get(c).layers[0].h)]
    taps += stack_taps(egnn.layer, lambda c: get(c).layers, lambda c: get(c).h, inputs[1],
                       egnn.num_layers)
    if kind == "gcl" and call.get("vel") is not None:
        notes.append("EGNN.forward takes vel but does not read it")
    if kind == "clean":
        return Binding(spec, params, graph, inputs, links, links_in, lambda r: (r[0], r[1]),
                       taps, notes, ("h", "x"))
    return Binding(spec, params, graph, inputs, links, links_in, lambda r: (r,), taps, notes,
                   ("x",))


def egnn_clean_binding(module, *args, **kwargs):
    return _stack_binding(module, egnn_clean_convert, ("h", "x", None, "edge_attr", None),
                          "clean", args, kwargs)


def egnn_vel_binding(module, *args, **kwargs):
    return _stack_binding(module, egnn_vel_convert, ("h", "x", "vel", "edge_attr"), "vel",
                          args, kwargs)


def nbody_egnn_binding(module, *args, **kwargs):
    return _stack_binding(module, nbody_egnn_convert, ("h", "x", None, "edge_attr"), "gcl",
                          args, kwargs)


# --- GNN ----------------------------------------------------------------------------------------


def _gcl_convert(sub, k):
    name = f"GNN.gcl_{k}"
    edge = sequence(sub.edge_mlp, f"{name}.edge_mlp", ["Linear", "act", "Linear", "act"])
    node = sequence(sub.node_mlp, f"{name}.node_mlp", ["Linear", "act", "Linear"])
    acts = [("edge_mlp.1", edge[1]), ("edge_mlp.3", edge[3]), ("node_mlp.1", node[1])]
    attention = bool(sub.attention)
    lins = [edge[0], edge[2], node[0], node[2]]
    if attention:
        att = sequence(sub.att_mlp, f"{name}.att_mlp", ["Linear", "act", "Linear", "Sigmoid"])
        acts.append(("att_mlp.1", att[1]))
        lins += [att[0], att[2]]
    act = common_activation(acts, f"{name}.act_fn")
    H = int(edge[0].out_features)
    if {int(edge[2].out_features), int(node[0].out_features)} != {H}:
        raise ValueError(f"{name}: edge_mlp and node_mlp must share one hidden width")
    flags = {lin.bias is not None for lin in lins}
    if len(flags) != 1:
        raise ValueError(f"{name}.bias: some linear layers have a bias and some do not")
    c_in = int(node[0].in_features) - H
    options = (int(node[2].out_features), int(edge[0].in_features) - 2 * c_in, act, attention,
               bool(sub.recurrent), flags.pop())
    path = ("layers", str(k))
    links = []
    for peer, lin, child, j in (("edge_mlp.0", edge[0], "phi_e", 0),
                                ("edge_mlp.2", edge[2], "phi_e", 1),
                                ("node_mlp.0", node[0], "phi_h", 0),
                                ("node_mlp.2", node[2], "phi_h", 1)):
        bias = path + (child, f"b{j}") if lin.bias is not None else None
        links += linear_links(f"gcl_{k}.{peer}", path + (child, f"W{j}"), bias)
    if attention:
        for peer, lin, j in (("att_mlp.0", sub.att_mlp[0], 0), ("att_mlp.2", sub.att_mlp[2], 1)):
            bias = path + ("phi_att", f"b{j}") if lin.bias is not None else None
            links += linear_links(f"gcl_{k}.{peer}", path + ("phi_att", f"W{j}"), bias)
    return (c_in, H) + options, links, []


def gnn_convert(module):
    (c_in, H, out, e, act, att, rec, bias), links, _ = _same_layers(module, "GNN", _gcl_convert)
    emb = sequence(module.embedding, "GNN.embedding", ["Linear"])[0]
    dec = sequence(module.decoder, "GNN.decoder", ["Linear", "act", "Linear"])
    if common_activation([("decoder.1", dec[1])], "GNN.act_fn") != act:
        raise ValueError("GNN.act_fn: the decoder and the layers use different activations")
    if c_in != H or out != H or int(emb.out_features) != H or int(dec[0].in_features) != H:
        raise ValueError(f"GNN: the embedding, gcl_k and decoder must all have hidden_nf = {H}")
    spec = GCLNetwork(int(emb.in_features), H, int(dec[2].out_features), e, module.n_layers,
                      act, att, rec, bias)
    links = linear_links("embedding.0", ("embedding", "W0"),
                         ("embedding", "b0") if emb.bias is not None else None) + links
    for j, lin in ((0, dec[0]), (1, dec[2])):
        bias = ("decoder", f"b{j}") if lin.bias is not None else None
        links += linear_links(f"decoder.{2 * j}", ("decoder", f"W{j}"), bias)
    return spec, links, []


def gnn_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = gnn_convert(module)
    params = params_from_links(spec, module, links)
    nodes = call["nodes"]
    graph = make_graph(edge_index_from(call["edges"], "edges"), int(nodes.shape[0]))
    inputs, links_in = _inputs(call, ("nodes", "edge_attr"), {"nodes", "edge_attr"})
    act = activations.get(spec.activation)[0]

    def raw_messages(c):
        return c.attention.m_raw if spec.attention else act(c.phi_e.z[-1])

    taps = [Tap("embedding", lambda c: c.embedding.z[-1])]
    for k in range(spec.num_layers):
        taps.append(Tap(f"gcl_{k}.edge_mlp", lambda c, k=k: raw_messages(c.layers[k])))
        if spec.attention:
            taps.append(Tap(f"gcl_{k}.att_mlp", lambda c, k=k: c.layers[k].attention.att))
        taps.append(Tap(f"gcl_{k}.node_mlp", lambda c, k=k: c.layers[k].phi_h.z[-1]))
        taps.append(Tap(f"gcl_{k}", lambda c, k=k: c.hs[k], lambda out: out[0]))
    taps.append(Tap("decoder", lambda c: c.decoder.z[-1]))
    return Binding(spec, params, graph, inputs, links, links_in, lambda r: (r,), taps, notes,
                   ("output",))


# --- RF_vel -------------------------------------------------------------------------------------


def _rf_convert(sub, k):
    name = f"RF_vel.gcl_{k}"
    phi = sequence(sub.phi, f"{name}.phi", ["Linear", "act", "Linear", "Tanh"])
    vel = sequence(sub.coord_mlp_vel, f"{name}.coord_mlp_vel", ["Linear", "act", "Linear"])
    act = common_activation([("phi.1", phi[1]), ("coord_mlp_vel.1", vel[1])], f"{name}.act_fn")
    H = int(phi[0].out_features)
    if int(vel[0].out_features) != H or int(vel[0].in_features) != 1:
        raise ValueError(f"{name}: coord_mlp_vel must be Linear(1, {H}) -> act -> Linear")
    if phi[2].bias is not None:
        raise ValueError(f"{name}.phi.2 has a bias; the radial field's last layer has none")
    path = ("layers", str(k))
    links = linear_links(f"gcl_{k}.phi.0", path + ("phi", "W0"),
                         path + ("phi", "b0") if phi[0].bias is not None else None)
    links += linear_links(f"gcl_{k}.phi.2", path + ("phi", "W1"))
    for j, lin in ((0, vel[0]), (1, vel[2])):
        bias = path + ("phi_v", f"b{j}") if lin.bias is not None else None
        links += linear_links(f"gcl_{k}.coord_mlp_vel.{2 * j}", path + ("phi_v", f"W{j}"), bias)
    key = (H, int(phi[0].in_features) - 1, act, float(sub.coords_weight))
    return key, links, []


def rf_convert(module):
    (H, a, act, cw), links, _ = _same_layers(module, "RF_vel", _rf_convert)
    return RadialFieldNetwork(H, a, module.n_layers, act, cw), links, []


def rf_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = rf_convert(module)
    params = params_from_links(spec, module, links)
    x = call["x"]
    graph = make_graph(edge_index_from(call["edges"], "edges"), int(x.shape[0]))
    keys = ("vel_norm", "x", "vel", "edge_attr")
    inputs, links_in = _inputs(call, keys, set(keys))
    taps = []
    for k in range(spec.num_layers):
        taps += [
            Tap(f"gcl_{k}.phi", lambda c, k=k: c.layers[k].e),
            Tap(f"gcl_{k}.coord_mlp_vel", lambda c, k=k: c.layers[k].pv),
            Tap(f"gcl_{k}", lambda c, k=k: c.xs[k], lambda out: out[0]),
        ]
    return Binding(spec, params, graph, inputs, links, links_in, lambda r: (r,), taps, notes,
                   ("x",))


# --- Linear -------------------------------------------------------------------------------------


def linear_convert(module):
    lin = module.linear
    spec = MLP((int(lin.in_features), int(lin.out_features)))
    bias = ("b0",) if lin.bias is not None else None
    return spec, linear_links("linear", ("W0",), bias), []


def linear_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = linear_convert(module)
    params = params_from_links(spec, module, links)
    (key,) = call
    links_in = [InputLink(key, lambda c: c[key], 0)]
    return Binding(spec, params, None, (np64(call[key]),), links, links_in, lambda r: (r,), [],
                   notes, ("output",))
