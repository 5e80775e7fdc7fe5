"""EGNN and the N-body models against independent float64 torch autograd code written from the
published equations.

The torch code below is written from Satorras et al. (2021), eqs. (3)-(7), and the options of
vgsatorras/egnn's layers (gcl.py's clamp at 100 and ``norm_diff`` with ``+1``; egnn_clean's
``normalize`` with epsilon 1e-8 and a detached norm; velocity, attention, tanh, node attributes),
in that repository's edge convention (``row`` = receiver i, ``col`` = sender j,
``x[row] - x[col]``), not from geomp_ref's code. Outputs must agree to 1e-12 and every gradient
(parameters, h, x, v, edge_attr, node_attr) to 1e-10, relative to each array's scale. The N-body
models (Linear, GNN, Radial Field, EGNN_vel) are written the same way, from the equations of the
EGNN paper's experiment and of main_nbody.py's feature construction (speeds, charge products and
input-frame squared distances, here not detached, so that x, v and the charges get their full
gradients).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from geomp_ref.graph import complete_graph, make_graph  # noqa: E402
from geomp_ref.layers.egnn import EGNN, EGNNLayer  # noqa: E402
from geomp_ref.layers.gcl import GCL  # noqa: E402
from geomp_ref.layers.radial_field import RadialFieldLayer  # noqa: E402
from geomp_ref.models.nbody import NBodyEGNN, NBodyGNN, NBodyLinear, NBodyRF  # noqa: E402
from geomp_ref.testing import random_points  # noqa: E402

ACTS = {"silu": torch.nn.functional.silu, "relu": torch.relu, "tanh": torch.tanh}


def _mlp(p, x, act, act_last):
    n = len([k for k in p if k.startswith("W")])
    for k in range(n):
        x = x @ p[f"W{k}"] + (p.get(f"b{k}", 0.0))
        if k < n - 1 or act_last:
            x = act(x)
    return x


def torch_egnn_layer(o, p, row, col, h, x, v=None, a=None, detach_norm=False, node_attr=None,
                     edge_mask=None):
    """One layer; ``o`` is the EGNNLayer spec (only its option values are read). ``edge_mask``
    (E, 1) multiplies the messages as QM9's E_GCL_mask does."""
    act = ACTS[o.activation]
    n = h.shape[0]
    coord_diff = x[row] - x[col]
    radial = (coord_diff**2).sum(1, keepdim=True)
    inp = [h[row], h[col], radial] + ([a] if a is not None else [])
    m = _mlp(p["phi_e"], torch.cat(inp, 1), act, True)
    if o.attention:
        m = m * torch.sigmoid(m @ p["phi_inf"]["W0"] + p["phi_inf"]["b0"])
    if edge_mask is not None:
        m = m * edge_mask
    agg_m = torch.zeros(n, m.shape[1], dtype=x.dtype).index_add(0, row, m)
    node_in = [h, agg_m] + ([node_attr] if node_attr is not None else [])
    out = _mlp(p["phi_h"], torch.cat(node_in, 1), act, False)
    h_new = h + out if o.residual else out
    if not o.update_coords:
        return h_new, x
    if o.normalize:
        norm = torch.sqrt(radial)
        if detach_norm:
            norm = norm.detach()
        coord_diff = coord_diff / (norm + o.norm_eps)
    px = p["phi_x"]
    s = act(m @ px["W0"] + px["b0"]) @ px["W1"]
    if o.tanh:
        s = torch.tanh(s)
    trans = coord_diff * s
    if o.clamp is not None:
        trans = torch.clamp(trans, -o.clamp, o.clamp)
    agg = torch.zeros(n, x.shape[1], dtype=x.dtype).index_add(0, row, trans)
    if o.coords_agg == "mean":
        cnt = torch.zeros(n, dtype=x.dtype).index_add(0, row, torch.ones(len(row), dtype=x.dtype))
        agg = agg / cnt.clamp(min=1)[:, None]
    x_new = x + o.coords_weight * agg
    if o.velocity:
        x_new = x_new + _mlp(p["phi_v"], h, act, False) * v
    return h_new, x_new


def _to_torch(tree):
    if isinstance(tree, dict):
        return {k: _to_torch(v) for k, v in tree.items()}
    return torch.tensor(tree, dtype=torch.float64, requires_grad=True)


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from _leaves(tree[k], f"{prefix}{k}/")
    else:
        yield prefix, tree


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _problem(rng, vel, ef, na=0, n=9):
    pos = np.concatenate(
        [random_points(rng, 5, min_dist=0.7), random_points(rng, n - 5, min_dist=0.7) + 40]
    )
    batch = np.repeat([0, 1], [5, n - 5])
    graph = complete_graph(n, batch)
    # drop a few edges so that mean != paper's 1/(M-1) and degrees differ
    keep = rng.random(graph.num_edges) > 0.25
    graph = make_graph(graph.edge_index[:, keep], n, batch)
    inputs = [
        rng.normal(size=(n, 4)),
        pos,
        rng.normal(size=(n, 3)) if vel else None,
        rng.normal(size=(graph.num_edges, ef)) if ef else None,
        rng.normal(size=(n, na)) if na else None,
    ]
    return graph, inputs


def _run(spec, params, graph, inputs, torch_fn, rng, outputs=2):
    """Our forward/backward against torch autograd; ``torch_fn(tp, tin)`` gets the params and the
    inputs as torch tensors (None where absent) and returns the outputs."""
    out, cache = spec.forward(params, graph, *inputs)
    outs = out if isinstance(out, tuple) else (out,)
    cots = tuple(rng.normal(size=o.shape) for o in outs)
    grads, gin = spec.backward(params, cache, cots if isinstance(out, tuple) else cots[0])
    tp = _to_torch(params)
    tin = [None if x is None else torch.tensor(x, dtype=torch.float64, requires_grad=True)
           for x in inputs]
    touts = torch_fn(tp, tin)
    touts = touts if isinstance(touts, tuple) else (touts,)
    loss = sum((t * torch.as_tensor(c)).sum() for t, c in zip(touts, cots))
    loss.backward()
    out_err = max(_rel(o, t.detach().numpy()) for o, t in zip(outs, touts))
    g_err = {}
    for (path, ours), (_, theirs) in zip(_leaves(grads), _leaves(tp)):
        if theirs.grad is None:  # unused by the output (e.g. the last layer's node MLP)
            g_err["param:" + path] = float(np.max(np.abs(ours)))
            continue
        g_err["param:" + path] = _rel(ours, theirs.grad.numpy())
    for k, (ours, theirs) in enumerate(zip(gin, tin)):
        if theirs is None or theirs.grad is None:
            assert ours is None or not np.any(ours), k
            continue
        g_err[f"input:{k}"] = _rel(ours, theirs.grad.numpy())
    return out_err, g_err


LAYER_CONFIGS = {
    "gcl-relu": {"flavour": "gcl"},
    "gcl-vel-att-norm-tanh": {
        "flavour": "gcl",
        "activation": "silu",
        "velocity": True,
        "attention": True,
        "normalize": True,
        "tanh": True,
        "edge_features": 2,
        "coords_weight": 0.7,
    },
    "gcl-clamp-active": {"flavour": "gcl", "activation": "silu", "clamp": 0.02},
    "qm9-mask": {
        "flavour": "gcl",
        "activation": "silu",
        "attention": True,
        "update_coords": False,
        "node_attr_features": 3,
    },
    "egnn_clean": {"flavour": "egnn_clean"},
    "egnn_clean-norm-sum-att": {
        "flavour": "egnn_clean",
        "normalize": True,
        "coords_agg": "sum",
        "attention": True,
        "edge_features": 3,
        "residual": False,
        "out_features": 5,
    },
}


@pytest.mark.parametrize("name", list(LAYER_CONFIGS))
def test_layer_matches_torch(name, rng):
    kw = LAYER_CONFIGS[name]
    spec = EGNNLayer(4, 8, coord_init_gain=1.0, **kw)
    params = spec.init(rng)
    graph, inputs = _problem(rng, spec.velocity, spec.edge_features, spec.node_attr_features)
    row = torch.tensor(graph.dst)  # the EGNN repo aggregates at row = receiver i
    col = torch.tensor(graph.src)

    def fn(tp, tin):
        h, x, v, a, na = tin
        return torch_egnn_layer(spec, tp, row, col, h, x, v, a, node_attr=na)

    out_err, g_err = _run(spec, params, graph, inputs, fn, rng)
    assert out_err <= 1e-12, out_err
    assert max(g_err.values()) <= 1e-10, g_err


@pytest.mark.parametrize(
    "kw",
    [
        {"flavour": "egnn_clean", "normalize": True, "tanh": True},
        {
            "flavour": "gcl",
            "activation": "silu",
            "velocity": True,
            "edge_features": 2,
            "attention": True,
        },
    ],
    ids=["egnn_clean", "gcl-vel"],
)
def test_stack_matches_torch(kw, rng):
    spec = EGNN(4, 3, EGNNLayer(8, 8, coord_init_gain=1.0, **kw), num_layers=3)
    params = spec.init(rng)
    lay = spec.layer
    graph, inputs = _problem(rng, lay.velocity, lay.edge_features)
    row, col = torch.tensor(graph.dst), torch.tensor(graph.src)

    def fn(tp, tin):
        h0, x, v, a, _ = tin
        h = h0 @ tp["W_in"] + tp["b_in"]
        for k in range(spec.num_layers):
            h, x = torch_egnn_layer(lay, tp["layers"][str(k)], row, col, h, x, v, a)
        return h @ tp["W_out"] + tp["b_out"], x

    out_err, g_err = _run(spec, params, graph, inputs, fn, rng)
    assert out_err <= 1e-12, out_err
    assert max(g_err.values()) <= 1e-10, g_err


def _clean_norm_runs(detach_norm, rng):
    spec = EGNNLayer(4, 8, flavour="egnn_clean", normalize=True, coord_init_gain=1.0,
                     detach_norm=detach_norm)
    params = spec.init(np.random.default_rng(5))
    graph, inputs = _problem(np.random.default_rng(6), False, 0)
    row, col = torch.tensor(graph.dst), torch.tensor(graph.src)
    runs = {}
    for torch_detach in (False, True):
        runs[torch_detach] = _run(
            spec, params, graph, inputs,
            lambda tp, tin, d=torch_detach: torch_egnn_layer(spec, tp, row, col, tin[0], tin[1],
                                                             detach_norm=d),
            np.random.default_rng(1),
        )
    return runs


def test_egnn_clean_stop_gradient_default_is_the_true_derivative(rng):
    """egnn_clean detaches the norm: its autograd gradient is not the derivative; ours is."""
    runs = _clean_norm_runs(False, rng)
    assert runs[False][0] <= 1e-12 and max(runs[False][1].values()) <= 1e-10
    assert runs[True][0] <= 1e-12  # same values ...
    assert runs[True][1]["input:1"] > 1e-4  # ... different position gradient


def test_detach_norm_reproduces_egnn_clean_autograd(rng):
    """``detach_norm=True`` gives exactly the gradient of egnn_clean's ``.detach()``."""
    runs = _clean_norm_runs(True, rng)
    assert runs[True][0] <= 1e-12 and max(runs[True][1].values()) <= 1e-10, runs[True][1]
    assert runs[False][1]["input:1"] > 1e-4


def test_qm9_mask_layer_is_the_masked_complete_graph(rng):
    """E_GCL_mask on padded molecules (a complete graph per molecule, messages times an edge mask)
    equals our layer on the graph of unmasked edges: values and every gradient."""
    spec = EGNNLayer(4, 8, flavour="gcl", activation="silu", attention=True, update_coords=False,
                     node_attr_features=3)
    params = spec.init(rng)
    n_nodes, sizes = 5, (5, 3)  # two molecules padded to 5 atoms
    n = n_nodes * len(sizes)
    full = complete_graph(n, np.repeat(np.arange(len(sizes)), n_nodes))
    real = np.concatenate([np.arange(n_nodes) < s for s in sizes])
    mask = real[full.src] & real[full.dst]
    ours = make_graph(full.edge_index[:, mask], n, full.batch)
    h, x = rng.normal(size=(n, 4)), random_points(rng, n, min_dist=0.7)
    na = rng.normal(size=(n, 3))
    row, col = torch.tensor(full.dst), torch.tensor(full.src)
    em = torch.as_tensor(mask[:, None].astype(np.float64))

    def fn(tp, tin):
        return torch_egnn_layer(spec, tp, row, col, tin[0], tin[1], node_attr=tin[4],
                                edge_mask=em)

    out_err, g_err = _run(spec, params, ours, [h, x, None, None, na], fn, rng)
    assert out_err <= 1e-12, out_err
    assert max(g_err.values()) <= 1e-10, g_err


# --- the N-body baselines and models, written from the published equations ---------------------


def torch_gcl(o, p, row, col, h, a=None):
    """The GNN baseline layer: m = phi_e([h_i, h_j, a]) (x sigmoid(phi_att(|h_i - h_j|))),
    h' = phi_h([h, sum_j m]) (+ h)."""
    act = ACTS[o.activation]
    inp = [h[row], h[col]] + ([a] if a is not None else [])
    m = _mlp(p["phi_e"], torch.cat(inp, 1), act, True)
    if o.attention:
        m = m * torch.sigmoid(_mlp(p["phi_att"], torch.abs(h[row] - h[col]), act, False))
    agg = torch.zeros(h.shape[0], m.shape[1], dtype=h.dtype).index_add(0, row, m)
    out = _mlp(p["phi_h"], torch.cat([h, agg], 1), act, False)
    return out + h if o.recurrent else out


def torch_rf_layer(o, p, row, col, x, s, v, a):
    """Radial field: x' = x + C mean_j (x_i - x_j) tanh(phi([|x_i - x_j|, a])) + v phi_v(s)."""
    act = ACTS[o.activation]
    diff = x[row] - x[col]
    d = torch.sqrt((diff**2).sum(1, keepdim=True))
    e = torch.tanh(_mlp(p["phi"], torch.cat([d, a], 1), act, False))
    m = diff * e
    n = x.shape[0]
    agg = torch.zeros(n, 3, dtype=x.dtype).index_add(0, row, m)
    cnt = torch.zeros(n, dtype=x.dtype).index_add(0, row, torch.ones(len(row), dtype=x.dtype))
    return x + o.coords_weight * agg / cnt.clamp(min=1)[:, None] + v * _mlp(p["phi_v"], s, act,
                                                                              False)


def _nbody_problem(rng, systems=3, n=5):
    N = systems * n
    graph = complete_graph(N, np.repeat(np.arange(systems), n))
    x = np.concatenate([random_points(rng, n, min_dist=0.5, scale=1.5) for _ in range(systems)])
    return graph, [x, rng.normal(size=(N, 3)), rng.choice([-1.0, 1.0], size=(N, 1))]


def _features(row, col, x, v, q):
    """|v|, q_i q_j and [q_i q_j, |x_i - x_j|^2], as main_nbody.py builds them (not detached)."""
    qq = q[row] * q[col]
    d2 = ((x[row] - x[col]) ** 2).sum(1, keepdim=True)
    return torch.sqrt((v**2).sum(1, keepdim=True)), qq, torch.cat([qq, d2], 1)


def _check(spec, params, graph, inputs, fn, rng):
    out_err, g_err = _run(spec, params, graph, inputs, fn, rng)
    assert out_err <= 1e-12, out_err
    assert max(g_err.values()) <= 1e-10, g_err


@pytest.mark.parametrize("kw", [{"activation": "silu", "edge_features": 1},
                                {"activation": "tanh", "attention": True, "recurrent": False,
                                 "out_features": 3}], ids=["nbody", "att-plain"])
def test_gcl_matches_torch(kw, rng):
    spec = GCL(4, 6, **kw)
    params = spec.init(rng)
    graph, inputs = _problem(rng, False, spec.edge_features)
    row, col = torch.tensor(graph.dst), torch.tensor(graph.src)
    _check(spec, params, graph, [inputs[0], inputs[3]],
           lambda tp, tin: torch_gcl(spec, tp, row, col, tin[0], tin[1]), rng)


def test_radial_field_layer_matches_torch(rng):
    spec = RadialFieldLayer(6, edge_features=2, coords_weight=0.8, coord_init_gain=1.0)
    params = spec.init(rng)
    graph, (x, v, q) = _nbody_problem(rng)
    a = np.concatenate([q[graph.dst] * q[graph.src], rng.normal(size=(graph.num_edges, 1))], 1)
    row, col = torch.tensor(graph.dst), torch.tensor(graph.src)
    _check(spec, params, graph, [x, np.linalg.norm(v, axis=1, keepdims=True), v, a],
           lambda tp, tin: torch_rf_layer(spec, tp, row, col, *tin), rng)


def _coord_gain_one(params, key):
    """Replace the published 0.001-gain coordinate weights by O(1) ones (every path visible)."""
    for layer in params["layers"].values():
        layer[key]["W1"] = layer[key]["W1"] * 1000.0
    return params


def test_nbody_egnn_matches_torch(rng):
    spec = NBodyEGNN(hidden=8, num_layers=3)
    params = _coord_gain_one(spec.init(rng), "phi_x")
    graph, inputs = _nbody_problem(rng)
    row, col = torch.tensor(graph.dst), torch.tensor(graph.src)

    def fn(tp, tin):
        x, v, q = tin
        s, _, a = _features(row, col, x, v, q)
        h = _mlp(tp["embedding"], s, None, False)
        for k in range(spec.num_layers):
            h, x = torch_egnn_layer(spec.layer, tp["layers"][str(k)], row, col, h, x, v, a)
        return x

    _check(spec, params, graph, inputs, fn, rng)


def test_nbody_rf_matches_torch(rng):
    spec = NBodyRF(hidden=8, num_layers=3)
    params = _coord_gain_one(spec.init(rng), "phi")
    graph, inputs = _nbody_problem(rng)
    row, col = torch.tensor(graph.dst), torch.tensor(graph.src)

    def fn(tp, tin):
        x, v, q = tin
        s, _, a = _features(row, col, x, v, q)
        for k in range(spec.num_layers):
            x = torch_rf_layer(spec.layer, tp["layers"][str(k)], row, col, x, s, v, a)
        return x

    _check(spec, params, graph, inputs, fn, rng)


def test_nbody_gnn_matches_torch(rng):
    spec = NBodyGNN(hidden=8, num_layers=3)
    params = spec.init(rng)
    graph, inputs = _nbody_problem(rng)
    row, col = torch.tensor(graph.dst), torch.tensor(graph.src)

    def fn(tp, tin):
        x, v, q = tin
        _, qq, _ = _features(row, col, x, v, q)
        h = _mlp(tp["embedding"], torch.cat([x, v], 1), None, False)
        for k in range(spec.num_layers):
            h = torch_gcl(spec.layer, tp["layers"][str(k)], row, col, h, qq)
        return _mlp(tp["decoder"], h, torch.nn.functional.silu, False)

    _check(spec, params, graph, inputs, fn, rng)


def test_nbody_linear_matches_torch(rng):
    spec = NBodyLinear()
    params = spec.init(rng)
    graph, inputs = _nbody_problem(rng)
    _check(spec, params, graph, inputs,
           lambda tp, tin: _mlp(tp["linear"], torch.cat([tin[0], tin[1]], 1), None, False), rng)
