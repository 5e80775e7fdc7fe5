r"""PyG's ``SchNet`` (``torch_geometric.nn.models``) -> :class:`~geomp_ref.layers.schnet.SchNet`.

Weights: torch's ``Linear`` stores (out, in), ours (in, out), so every weight is transposed:
``interactions.t.mlp.0``/``mlp.2`` -> ``filter/W0, b0`` / ``W1, b1``, ``conv.lin1`` -> ``W_in``
(bias-free), ``conv.lin2`` -> ``W_out, b_out``, ``lin`` -> ``W, b``; ``lin1``/``lin2`` ->
``W_out1, b_out1``/``W_out2, b_out2``; the embedding table as it is. (PyG registers each filter
network twice, as ``mlp`` and ``conv.nn``; ``named_parameters()`` reports it under ``mlp``.)

Constants are the module's own: the Gaussian ``offset`` buffer, ``gamma = -coeff``, the
shifted-softplus ``shift`` and torch's softplus threshold 20 go into a
:class:`~geomp_ref.layers.schnet.SchNetConstants`, so a module built under float32 default dtype
(float32-born ln 2, centres and gamma) is reproduced as faithfully as one built in float64.

The interaction graph is the module's own: the binding calls ``module.interaction_graph(pos,
batch)`` and uses its edges (so PyG's neighbour cap ``max_num_neighbors`` is honoured), after
checking that its edge weights are the distances ``|pos[row] - pos[col]|`` and lie below
``cutoff`` (PyG's cosine cutoff is not zeroed beyond ``cutoff``; ours is, so an edge that long
would make the two differ). Not expressible: ``dipole``, ``mean``/``std``, ``atomref``, ``scale``,
readouts other than add/mean, odd ``hidden_channels`` (each a ValueError naming it).
Taps: ``embedding``, ``distance_expansion``, every ``interactions.t`` (the update :math:`v` it
returns, before the residual), ``lin1``, ``lin2``.
"""

from __future__ import annotations

import numpy as np

from .. import make_graph
from ..layers.schnet import SchNet, SchNetConstants
from ..ops import dense
from ._binding import Binding, InputLink, ParamLink, Tap, linear_links
from ._torch import bind_call, class_names, import_torch, np64, params_from_links


def schnet_matches(module) -> bool:
    need = ("interactions", "distance_expansion", "embedding", "lin1", "lin2", "readout")
    return "SchNet" in class_names(module) and all(hasattr(module, k) for k in need)


def schnet_convert(module, backend: str = "numpy"):
    """``(spec, links, notes)`` for a PyG SchNet."""
    if module.dipole:
        raise ValueError("SchNet.dipole=True is not supported by geomp_ref's SchNet")
    if module.mean is not None or module.std is not None:
        raise ValueError("SchNet.mean/std rescaling is not supported; build it with mean=std=None")
    if module.atomref is not None:
        raise ValueError("SchNet.atomref is not supported; build the module with atomref=None")
    if getattr(module, "scale", None) is not None:
        raise ValueError("SchNet.scale is not supported; leave module.scale = None")
    readout = {"SumAggregation": "add", "MeanAggregation": "mean"}.get(
        type(module.readout).__name__
    )
    if readout is None:
        raise ValueError(
            f"SchNet.readout {type(module.readout).__name__} is not supported (add or mean)"
        )
    if int(module.hidden_channels) % 2:
        raise ValueError(
            f"SchNet.hidden_channels={module.hidden_channels}: the oracle needs an even width"
        )
    shifts = {float(module.act.shift)} | {float(b.act.shift) for b in module.interactions}
    shifts |= {float(b.mlp[1].shift) for b in module.interactions}
    if len(shifts) != 1:
        raise ValueError(f"SchNet: shifted-softplus shifts differ between submodules: {shifts}")
    ds = module.distance_expansion
    constants = SchNetConstants(
        offsets=tuple(float(v) for v in np64(ds.offset)),
        gamma=-float(ds.coeff),
        shift=shifts.pop(),
        softplus_threshold=20.0,  # F.softplus(beta=1, threshold=20)
    )
    spec = SchNet(
        hidden=int(module.hidden_channels),
        num_filters=int(module.num_filters),
        num_interactions=int(module.num_interactions),
        num_rbf=int(module.num_gaussians),
        cutoff=float(module.cutoff),
        readout=readout,
        max_z=int(module.embedding.weight.shape[0]),
        constants=constants,
        backend=backend,
    )
    links = [ParamLink("embedding.weight", ("embedding",))]
    for t in range(spec.num_interactions):
        p, q = f"interactions.{t}.", ("interactions", str(t))
        c = q + ("conv",)
        links += linear_links(f"{p}mlp.0", c + ("filter", "W0"), c + ("filter", "b0"))
        links += linear_links(f"{p}mlp.2", c + ("filter", "W1"), c + ("filter", "b1"))
        links += linear_links(f"{p}conv.lin1", c + ("W_in",))
        links += linear_links(f"{p}conv.lin2", c + ("W_out",), c + ("b_out",))
        links += linear_links(f"{p}lin", q + ("W",), q + ("b",))
    links += linear_links("lin1", ("W_out1",), ("b_out1",))
    links += linear_links("lin2", ("W_out2",), ("b_out2",))
    return spec, links, []


def _graph(module, spec, z, pos, batch):
    """Our graph from the module's own interaction graph, after checking its edge weights."""
    t = import_torch()
    with t.no_grad():
        edge_index, weight = module.interaction_graph(pos.detach().clone(), batch)
    ei, w = np64(edge_index), np64(weight)
    p = np64(pos)
    d = np.linalg.norm(p[ei[0]] - p[ei[1]], axis=1)
    rtol = 1e-12 if pos.dtype == t.float64 else 1e-5
    if d.size and np.max(np.abs(d - w)) > rtol * max(np.max(d), 1e-300):
        raise ValueError(
            "SchNet.interaction_graph: its edge weights are not the distances "
            "|pos[row] - pos[col]| that the oracle computes from pos"
        )
    if d.size and np.max(d) >= spec.cutoff:
        raise ValueError(
            f"SchNet.cutoff={spec.cutoff}: the interaction graph has an edge of length "
            f"{np.max(d):.6g} >= cutoff (PyG does not zero its cosine cutoff there; the oracle "
            "does)"
        )
    b = np64(batch)
    n = int(z.shape[0])
    return make_graph(ei, n, b, num_graphs=int(b.max()) + 1 if n else 0)


def schnet_binding(module, *args, **kwargs):
    call = bind_call(module, args, kwargs)
    spec, links, notes = schnet_convert(module)
    params = params_from_links(spec, module, links)
    z, pos, batch = call["z"], call["pos"], call["batch"]
    batch = import_torch().zeros_like(z) if batch is None else batch
    graph = _graph(module, spec, z, pos, batch)
    inputs = (np64(z), np64(pos))
    links_in = [InputLink("pos", lambda c: c["pos"], 1)]

    def v(cache, t):
        # the interaction's update v = s W + b (the cache keeps s; the residual adds v to h)
        q = params["interactions"][str(t)]
        return dense.linear(cache.interactions[t].s, q["W"], q["b"])

    taps = [Tap("embedding", lambda cache: params["embedding"][cache.z])]
    if spec.num_interactions:
        taps.append(Tap("distance_expansion", lambda cache: cache.interactions[0].conv.e))
    taps += [
        Tap(f"interactions.{t}", (lambda cache, t=t: v(cache, t)))
        for t in range(spec.num_interactions)
    ]
    taps += [
        Tap("lin1", lambda cache: cache.z_out1),
        Tap("lin2", lambda cache: dense.linear(cache.s_out1, params["W_out2"], params["b_out2"])),
    ]
    num_graphs = graph.num_graphs
    return Binding(
        spec, params, graph, inputs, links, links_in,
        lambda r: (r.reshape(num_graphs),), taps, notes, ("energy",),
    )
