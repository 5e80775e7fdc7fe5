"""Test doubles of the TFN baseline of vgsatorras/egnn (``n_body_system/se3_dynamics``, taken from
the SE(3)-Transformer code), written for these tests from the published structure: the class
names, submodule and parameter names (``kernel_unary['(l,k)'].rp.net``, ``kernel_self['k']``,
``transform['l']``, ``block0``) and the forward signatures ``GConvSE3.forward(h, G, r, basis)``,
``GNormSE3.forward(features)``, ``OursTFN.forward(G)``.

Differences from the published files, on purpose: DGL is replaced by a small graph stand-in
(``Graph`` with ``src``, ``dst``, ``ndata``, ``edata``) and a mean written with ``index_add``;
the basis ``K_J = Y_J Q_J`` is built from e3nn's Wigner 3j symbols and harmonics (orthonormal,
``component / sqrt(4 pi)``) in float64 instead of the published numerical null space cast to
float32. Build everything under ``torch.set_default_dtype(torch.float64)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from e3nn import o3
from torch import nn


class Graph:
    """What the layers read from a DGL graph: edges src -> dst and node / edge data."""

    def __init__(self, src, dst, num_nodes):
        self.src = torch.tensor(np.array(src), dtype=torch.long)
        self.dst = torch.tensor(np.array(dst), dtype=torch.long)
        self.num_nodes = int(num_nodes)
        self.ndata, self.edata = {}, {}


def get_basis(Y, max_degree):
    """``basis['l,k']`` of shape (E, 1, 2k+1, 1, 2l+1, 2 min(l,k)+1)."""
    basis = {}
    for d_in in range(max_degree + 1):
        for d_out in range(max_degree + 1):
            K_Js = []
            for J in range(abs(d_in - d_out), d_in + d_out + 1):
                Q_J = o3.wigner_3j(d_out, d_in, J).reshape(-1, 2 * J + 1).T
                K_Js.append(torch.matmul(Y[J], Q_J))
            size = (-1, 1, 2 * d_out + 1, 1, 2 * d_in + 1, 2 * min(d_in, d_out) + 1)
            basis[f"{d_in},{d_out}"] = torch.stack(K_Js, -1).view(*size)
    return basis


def get_basis_and_r(G, max_degree):
    d = G.edata["d"]
    Y = {J: o3.spherical_harmonics(J, d, normalize=True, normalization="component")
         / math.sqrt(4 * math.pi) for J in range(2 * max_degree + 1)}
    r = torch.sqrt(torch.sum(d ** 2, -1, keepdim=True))
    return get_basis(Y, max_degree), r


class BN(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.bn = nn.LayerNorm(m)

    def forward(self, x):
        return self.bn(x)


class RadialFunc(nn.Module):
    def __init__(self, num_freq, in_dim, out_dim, edge_dim=0, act_fn=None):
        super().__init__()
        act_fn = act_fn if act_fn is not None else nn.ReLU()
        self.num_freq, self.in_dim, self.mid_dim, self.out_dim = num_freq, in_dim, 32, out_dim
        self.net = nn.Sequential(nn.Linear(edge_dim + 1, self.mid_dim), BN(self.mid_dim), act_fn,
                                 nn.Linear(self.mid_dim, self.mid_dim), BN(self.mid_dim), act_fn,
                                 nn.Linear(self.mid_dim, num_freq * in_dim * out_dim))

    def forward(self, x):
        return self.net(x).view(-1, self.out_dim, 1, self.in_dim, 1, self.num_freq)


class PairwiseConv(nn.Module):
    def __init__(self, degree_in, nc_in, degree_out, nc_out, edge_dim=0, act_fn=None):
        super().__init__()
        self.degree_in, self.degree_out = degree_in, degree_out
        self.nc_in, self.nc_out = nc_in, nc_out
        self.num_freq = 2 * min(degree_in, degree_out) + 1
        self.d_out = 2 * degree_out + 1
        self.rp = RadialFunc(self.num_freq, nc_in, nc_out, edge_dim, act_fn)

    def forward(self, feat, basis):
        R = self.rp(feat)
        kernel = torch.sum(R * basis[f"{self.degree_in},{self.degree_out}"], -1)
        return kernel.view(kernel.shape[0], self.d_out * self.nc_out, -1)


class GConvSE3(nn.Module):
    """``f_in`` / ``f_out``: lists of (multiplicity, degree)."""

    def __init__(self, f_in, f_out, self_interaction=False, edge_dim=0, act_fn=None):
        super().__init__()
        self.f_in, self.f_out = list(f_in), list(f_out)
        self.self_interaction = self_interaction
        self.kernel_unary = nn.ModuleDict()
        for mi, di in self.f_in:
            for mo, do in self.f_out:
                self.kernel_unary[f"({di},{do})"] = PairwiseConv(di, mi, do, mo, edge_dim, act_fn)
        self.kernel_self = nn.ParameterDict()
        if self_interaction:
            out_degrees = {d: m for m, d in self.f_out}
            for m_in, d_in in self.f_in:
                if d_in in out_degrees:
                    self.kernel_self[f"{d_in}"] = nn.Parameter(
                        torch.randn(1, out_degrees[d_in], m_in) / math.sqrt(m_in))

    def forward(self, h, G=None, r=None, basis=None, **kwargs):
        feat = torch.cat([r], -1)
        kernels = {f"({di},{do})": self.kernel_unary[f"({di},{do})"](feat, basis)
                   for _, di in self.f_in for _, do in self.f_out}
        out = {}
        for _, do in self.f_out:
            msg = 0
            for mi, di in self.f_in:
                src = h[f"{di}"][G.src].view(-1, mi * (2 * di + 1), 1)
                msg = msg + torch.matmul(kernels[f"({di},{do})"], src)
            msg = msg.view(msg.shape[0], -1, 2 * do + 1)
            if self.self_interaction and f"{do}" in self.kernel_self.keys():
                msg = msg + torch.matmul(self.kernel_self[f"{do}"], h[f"{do}"][G.dst])
            total = torch.zeros((G.num_nodes,) + tuple(msg.shape[1:]), dtype=msg.dtype)
            total = total.index_add(0, G.dst, msg)
            count = torch.bincount(G.dst, minlength=G.num_nodes).clamp(min=1).to(msg.dtype)
            out[f"{do}"] = total / count[:, None, None]
        return out


class GNormSE3(nn.Module):
    def __init__(self, fiber, act_fn=None, num_layers=1):
        super().__init__()
        self.fiber = list(fiber)
        self.act_fn = act_fn if act_fn is not None else nn.ReLU()
        self.num_layers = num_layers
        self.eps = 1e-12
        self.transform = nn.ModuleDict()
        for m, d in self.fiber:
            net = []
            for i in range(num_layers):
                net += [BN(m), self.act_fn, nn.Linear(m, m, bias=(i == num_layers - 1))]
            self.transform[str(d)] = nn.Sequential(*net)

    def forward(self, features, **kwargs):
        output = {}
        for k, v in features.items():
            norm = v.norm(2, -1, keepdim=True).clamp_min(self.eps).expand_as(v)
            phase = v / norm
            transformed = self.transform[str(k)](norm[..., 0]).unsqueeze(-1)
            output[k] = (transformed * phase).view(*v.shape)
        return output


class OursTFN(nn.Module):
    def __init__(self, num_layers, num_channels, num_nlayers=1, num_degrees=4, act_fn=None,
                 edge_dim=0, out_types=None, in_types=None, **kwargs):
        super().__init__()
        act_fn = act_fn if act_fn is not None else nn.ReLU()
        self.num_degrees = num_degrees
        fin = [(m, d) for d, m in (in_types or {0: 1, 1: 1}).items()]
        mid = [(num_channels, d) for d in range(num_degrees)]
        fout = [(m, d) for d, m in (out_types or {1: 1}).items()]
        blocks = []
        for _ in range(num_layers - 1):
            blocks.append(GConvSE3(fin, mid, self_interaction=True, edge_dim=edge_dim,
                                   act_fn=act_fn))
            blocks.append(GNormSE3(mid, num_layers=num_nlayers, act_fn=act_fn))
            fin = mid
        blocks.append(GConvSE3(mid, fout, self_interaction=True, edge_dim=edge_dim,
                               act_fn=act_fn))
        self.block0 = nn.ModuleList(blocks)

    def forward(self, G):
        basis, r = get_basis_and_r(G, self.num_degrees - 1)
        h = {"0": G.ndata["f"], "1": G.ndata["f1"]}
        for layer in self.block0:
            h = layer(h, G=G, r=r, basis=basis)
        return h
