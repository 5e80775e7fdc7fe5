"""Torch versions of the workloads of ``benchmarks/models.py`` (float64, weights copied from ours).

* :func:`pyg_schnet`: PyG's ``SchNet`` with a fixed interaction graph (the edges of our radius
  graph, lengths recomputed by torch from ``pos`` so forces flow through them); our spec and
  params come from it through :mod:`geomp_ref.interop.pyg`.
* :func:`torch_egnn_vel`: ``EGNN_vel`` of the EGNN paper written here from its equations
  (embedding of the speed, four ``E_GCL_vel`` layers with SiLU, clamp 100, mean coordinate
  aggregation, residual feature update), reading our params.
* :func:`published_egnn_vel`: the published ``EGNN_vel`` class loaded from a checkout of
  vgsatorras/egnn whose path the user gives, with our weights copied in.

Nothing here is imported by the library; torch (and torch_geometric for SchNet) must be installed.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np


def _t(x, grad=False):
    """A float64 tensor on torch's default device (``torch.set_default_device`` picks the GPU)."""
    import torch

    return torch.tensor(np.asarray(x, dtype=np.float64)).requires_grad_(grad)


def cpu_build():
    """Context in which modules are built on the CPU whatever torch's default device.

    e3nn estimates the second moment of each activation (``normalize2mom``) by Monte Carlo with
    torch's generator on the default device; built with the GPU as default device, its constants
    differ from the CPU ones (and from ours, which are the CPU values) by about 7e-4 relative.
    """
    import torch

    return torch.device("cpu")


def to_default_device(*modules) -> None:
    """Move modules to torch's default device (some peers build constant buffers on the CPU)."""
    import torch

    dev = torch.get_default_device()
    for m in modules:
        m.to(dev)
        for sub in m.modules():  # plain tensor attributes (index lists) are not moved by .to()
            for k, v in list(vars(sub).items()):
                if isinstance(v, torch.Tensor):
                    setattr(sub, k, v.to(dev))


def _np(t) -> np.ndarray:
    """A tensor's values as a NumPy array, from any device."""
    return t.detach().cpu().numpy()


# --- SchNet ------------------------------------------------------------------------------------


def pyg_schnet(graph, hidden=128, filters=128, interactions=6, gaussians=50, cutoff=5.0, seed=0):
    """``(module, spec, params)``: a float64 PyG SchNet on ``graph``'s edges and its oracle twin.

    PyG zero-initialises its biases; every parameter gets a generic value so that no product of
    the filter network is trivially zero.
    """
    import torch
    from torch_geometric.nn.models import SchNet

    from geomp_ref.interop import pyg as interop_pyg

    ei = torch.as_tensor(np.array(graph.edge_index))

    def interaction_graph(pos, batch):
        row, col = ei
        return ei, (pos[row] - pos[col]).norm(dim=-1)

    torch.manual_seed(seed)
    net = SchNet(hidden, filters, interactions, gaussians, cutoff,
                 interaction_graph=interaction_graph).double()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype, device="cpu")
                   .to(p.device))  # the same values on every device
    spec, params = interop_pyg.schnet(net)
    return net, spec, params


def schnet_forces(net, z, pos):
    """PyG energy + forces: ``E = net(z, pos)``, ``F = -dE/dpos`` (autograd, no weight grads)."""
    import torch

    p = _t(pos, True)
    e = net(torch.as_tensor(z), p)
    (g,) = torch.autograd.grad(e.sum(), p)
    return _np(e)[:, 0], -_np(g)


def schnet_forces_and_weights(net, z, pos):
    """As :func:`schnet_forces` plus every weight gradient (``backward`` over the whole graph)."""
    import torch

    p = _t(pos, True)
    e = net(torch.as_tensor(z), p)
    e.sum().backward()
    net.zero_grad(set_to_none=True)


# --- EGNN_vel, from the equations -------------------------------------------------------------


def egnn_params_to_torch(params):
    """Our NBodyEGNN params as leaf tensors that require grad (same nesting)."""
    if isinstance(params, dict):
        return {k: egnn_params_to_torch(v) for k, v in params.items()}
    return _t(params, True)


def _lin(p, k, x):
    y = x @ p[f"W{k}"]
    return y + p[f"b{k}"] if f"b{k}" in p else y


def torch_egnn_vel(tp, row, col, x, v, a, num_layers=4, clamp=100.0):
    r"""Positions after ``num_layers`` E_GCL_vel layers (``row`` = receiver i, ``col`` = sender j).

    Per layer: :math:`m_{ij} = \phi_e([h_i, h_j, |x_i - x_j|^2, a_{ij}])`,
    :math:`x_i \mathrel{+}= \mathrm{mean}_j \mathrm{clamp}((x_i - x_j)\phi_x(m_{ij}))
    + \phi_v(h_i) v_i`, :math:`h_i \mathrel{+}= \phi_h([h_i, \sum_j m_{ij}])`.
    """
    import torch
    from torch.nn.functional import silu

    n = x.shape[0]
    cnt = torch.zeros(n, 1).index_add_(0, row, torch.ones(row.shape[0], 1)).clamp(min=1)
    h = _lin(tp["embedding"], 0, v.norm(dim=1, keepdim=True))
    for k in range(num_layers):
        p = tp["layers"][str(k)]
        diff = x[row] - x[col]
        r = (diff * diff).sum(1, keepdim=True)
        pe = p["phi_e"]
        m = silu(_lin(pe, 1, silu(_lin(pe, 0, torch.cat([h[row], h[col], r, a], 1)))))
        s = silu(_lin(p["phi_x"], 0, m)) @ p["phi_x"]["W1"]
        t = torch.clamp(diff * s, -clamp, clamp)
        agg = torch.zeros(n, x.shape[1]).index_add_(0, row, t) / cnt
        x = x + agg
        x = x + _lin(p["phi_v"], 1, silu(_lin(p["phi_v"], 0, h))) * v
        aggm = torch.zeros(n, m.shape[1]).index_add_(0, row, m)
        h = h + _lin(p["phi_h"], 1, silu(_lin(p["phi_h"], 0, torch.cat([h, aggm], 1))))
    return x


def published_egnn_vel(path, params, hidden=64, num_layers=4):
    """The published ``EGNN_vel`` loaded from the checkout at ``path``, holding our weights."""
    import torch

    sys.path.insert(0, str(path))
    try:
        mod = importlib.import_module("n_body_system.model")
    finally:
        sys.path.remove(str(path))
    net = mod.EGNN_vel(in_node_nf=1, in_edge_nf=2, hidden_nf=hidden, n_layers=num_layers,
                       act_fn=torch.nn.SiLU(), recurrent=True).double()
    sd = {"embedding.weight": params["embedding"]["W0"].T,
          "embedding.bias": params["embedding"]["b0"]}
    names = {"phi_e": "edge_mlp", "phi_x": "coord_mlp", "phi_h": "node_mlp",
             "phi_v": "coord_mlp_vel"}
    for k in range(num_layers):
        for ours, theirs in names.items():
            p = params["layers"][str(k)][ours]
            for j, idx in ((0, 0), (1, 2)):
                sd[f"gcl_{k}.{theirs}.{idx}.weight"] = p[f"W{j}"].T
                if f"b{j}" in p:
                    sd[f"gcl_{k}.{theirs}.{idx}.bias"] = p[f"b{j}"]
    net.load_state_dict({k: _t(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=True)
    return net
