"""Test doubles of vgsatorras/egnn's modules, written for these tests from the published structure.

Same class names, submodule and parameter names (``edge_mlp.0``, ``coord_mlp.2``,
``embedding_in``, ``gcl_0`` ...), constructor options and forward signatures as the published
``models/gcl.py``, ``models/egnn_clean/egnn_clean.py``, ``qm9/models.py`` and
``n_body_system/model.py``; the code is our own. Like the published gcl layers, these update
``coord`` in place. Edges are ``[row, col]`` with row = receiver.
"""

# ruff: noqa: B008  (the published constructors take activation module instances as defaults)

from __future__ import annotations

import torch
from torch import nn


def seg_sum(values, index, size):
    out = values.new_zeros((size, values.shape[1]))
    return out.index_add(0, index, values)


def seg_mean(values, index, size):
    count = values.new_zeros((size, 1)).index_add(0, index, values.new_ones((len(index), 1)))
    return seg_sum(values, index, size) / count.clamp(min=1)


def _coord_head(hidden, tanh):
    last = nn.Linear(hidden, 1, bias=False)
    nn.init.xavier_uniform_(last.weight, gain=0.001)
    return [nn.Linear(hidden, hidden), None, last] + ([nn.Tanh()] if tanh else [])


class _Base(nn.Module):
    """What the E_GCL layers share: the edge, node and coordinate networks."""

    def _build(self, c_in, c_out, hidden, edge_d, node_d, act, attention, tanh, coords=True):
        self.attention, self.tanh = attention, tanh
        self.edge_mlp = nn.Sequential(nn.Linear(2 * c_in + 1 + edge_d, hidden), act,
                                      nn.Linear(hidden, hidden), act)
        self.node_mlp = nn.Sequential(nn.Linear(c_in + hidden + node_d, hidden), act,
                                      nn.Linear(hidden, c_out))
        if coords:
            head = _coord_head(hidden, tanh)
            head[1] = act
            self.coord_mlp = nn.Sequential(*head)
        if attention:
            self.att_mlp = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())

    def edge_model(self, source, target, radial, edge_attr):
        parts = [source, target, radial] + ([] if edge_attr is None else [edge_attr])
        m = self.edge_mlp(torch.cat(parts, dim=1))
        return m * self.att_mlp(m) if self.attention else m

    def node_model(self, x, edge_index, m, node_attr):
        agg = seg_sum(m, edge_index[0], x.shape[0])
        parts = [x, agg] + ([] if node_attr is None else [node_attr])
        out = self.node_mlp(torch.cat(parts, dim=1))
        return (x + out if self._residual() else out), agg


class E_GCL(_Base):
    """models/gcl.py's layer: mean of the clamped coordinate terms, in-place update."""

    def __init__(self, input_nf, output_nf, hidden_nf, edges_in_d=0, nodes_att_dim=0,
                 act_fn=nn.ReLU(), recurrent=True, coords_weight=1.0, attention=False,
                 clamp=False, norm_diff=False, tanh=False):
        super().__init__()
        self.recurrent, self.coords_weight, self.clamp = recurrent, coords_weight, clamp
        self.norm_diff = norm_diff
        self._build(input_nf, output_nf, hidden_nf, edges_in_d, nodes_att_dim, act_fn,
                    attention, tanh, coords=not getattr(self, "_no_coords", False))

    def _residual(self):
        return self.recurrent

    def coord2radial(self, edge_index, coord):
        diff = coord[edge_index[0]] - coord[edge_index[1]]
        radial = (diff * diff).sum(dim=1, keepdim=True)
        if self.norm_diff:
            diff = diff / (torch.sqrt(radial) + 1)
        return radial, diff

    def coord_model(self, coord, edge_index, coord_diff, edge_feat):
        trans = torch.clamp(coord_diff * self.coord_mlp(edge_feat), -100, 100)
        coord += self.coords_weight * seg_mean(trans, edge_index[0], coord.shape[0])
        return coord

    def forward(self, h, edge_index, coord, edge_attr=None, node_attr=None):
        row, col = edge_index
        radial, diff = self.coord2radial(edge_index, coord)
        m = self.edge_model(h[row], h[col], radial, edge_attr)
        coord = self.coord_model(coord, edge_index, diff, m)
        h, _ = self.node_model(h, edge_index, m, node_attr)
        return h, coord, edge_attr


class E_GCL_vel(E_GCL):
    def __init__(self, input_nf, output_nf, hidden_nf, edges_in_d=0, nodes_att_dim=0,
                 act_fn=nn.ReLU(), recurrent=True, coords_weight=1.0, attention=False,
                 norm_diff=False, tanh=False):
        super().__init__(input_nf, output_nf, hidden_nf, edges_in_d, nodes_att_dim, act_fn,
                         recurrent, coords_weight, attention, norm_diff=norm_diff, tanh=tanh)
        self.coord_mlp_vel = nn.Sequential(nn.Linear(input_nf, hidden_nf), act_fn,
                                           nn.Linear(hidden_nf, 1))

    def forward(self, h, edge_index, coord, vel, edge_attr=None, node_attr=None):
        row, col = edge_index
        radial, diff = self.coord2radial(edge_index, coord)
        m = self.edge_model(h[row], h[col], radial, edge_attr)
        coord = self.coord_model(coord, edge_index, diff, m)
        coord += vel * self.coord_mlp_vel(h)
        h, _ = self.node_model(h, edge_index, m, node_attr)
        return h, coord, edge_attr


class E_GCL_mask(E_GCL):
    """qm9/models.py's invariant layer: no coordinate network, messages times the edge mask."""

    _no_coords = True

    def __init__(self, input_nf, output_nf, hidden_nf, edges_in_d=0, nodes_attr_dim=0,
                 act_fn=nn.ReLU(), recurrent=True, coords_weight=1.0, attention=False):
        super().__init__(input_nf, output_nf, hidden_nf, edges_in_d, nodes_attr_dim, act_fn,
                         recurrent, coords_weight, attention)
        self.act_fn = act_fn

    def forward(self, h, edge_index, coord, node_mask, edge_mask, edge_attr=None,
                node_attr=None, n_nodes=None):
        radial, _ = self.coord2radial(edge_index, coord)
        m = self.edge_model(h[edge_index[0]], h[edge_index[1]], radial, edge_attr) * edge_mask
        h, _ = self.node_model(h, edge_index, m, node_attr)
        return h, coord, edge_attr


class clean:  # noqa: N801  (a namespace standing for models/egnn_clean/egnn_clean.py)
    class E_GCL(_Base):
        def __init__(self, input_nf, output_nf, hidden_nf, edges_in_d=0, act_fn=nn.SiLU(),
                     residual=True, attention=False, normalize=False, coords_agg="mean",
                     tanh=False):
            super().__init__()
            self.residual, self.normalize, self.coords_agg = residual, normalize, coords_agg
            self.epsilon = 1e-8
            self._build(input_nf, output_nf, hidden_nf, edges_in_d, 0, act_fn, attention, tanh)

        def _residual(self):
            return self.residual

        def coord2radial(self, edge_index, coord):
            diff = coord[edge_index[0]] - coord[edge_index[1]]
            radial = (diff * diff).sum(dim=1, keepdim=True)
            if self.normalize:
                diff = diff / (torch.sqrt(radial).detach() + self.epsilon)
            return radial, diff

        def coord_model(self, coord, edge_index, coord_diff, edge_feat):
            trans = coord_diff * self.coord_mlp(edge_feat)
            agg = seg_sum if self.coords_agg == "sum" else seg_mean
            return coord + agg(trans, edge_index[0], coord.shape[0])

        def forward(self, h, edge_index, coord, edge_attr=None, node_attr=None):
            radial, diff = self.coord2radial(edge_index, coord)
            m = self.edge_model(h[edge_index[0]], h[edge_index[1]], radial, edge_attr)
            coord = self.coord_model(coord, edge_index, diff, m)
            h, _ = self.node_model(h, edge_index, m, node_attr)
            return h, coord, edge_attr

    class EGNN(nn.Module):
        def __init__(self, in_node_nf, hidden_nf, out_node_nf, in_edge_nf=0, device="cpu",
                     act_fn=nn.SiLU(), n_layers=4, residual=True, attention=False,
                     normalize=False, tanh=False):
            super().__init__()
            self.hidden_nf, self.n_layers = hidden_nf, n_layers
            self.embedding_in = nn.Linear(in_node_nf, hidden_nf)
            self.embedding_out = nn.Linear(hidden_nf, out_node_nf)
            for k in range(n_layers):
                self.add_module(f"gcl_{k}", clean.E_GCL(
                    hidden_nf, hidden_nf, hidden_nf, edges_in_d=in_edge_nf, act_fn=act_fn,
                    residual=residual, attention=attention, normalize=normalize, tanh=tanh))

        def forward(self, h, x, edges, edge_attr):
            h = self.embedding_in(h)
            for k in range(self.n_layers):
                h, x, _ = self._modules[f"gcl_{k}"](h, edges, x, edge_attr=edge_attr)
            return self.embedding_out(h), x


# --- n_body_system/model.py --------------------------------------------------------------------


class GCL(nn.Module):
    """The non-equivariant layer of models/gcl.py (returns ``(h', messages)``)."""

    def __init__(self, input_nf, output_nf, hidden_nf, edges_in_nf=0, act_fn=nn.ReLU(),
                 bias=True, attention=False, t_eq=False, recurrent=True):
        super().__init__()
        self.attention, self.t_eq, self.recurrent = attention, t_eq, recurrent
        self.edge_mlp = nn.Sequential(nn.Linear(2 * input_nf + edges_in_nf, hidden_nf, bias=bias),
                                      act_fn, nn.Linear(hidden_nf, hidden_nf, bias=bias), act_fn)
        if attention:
            self.att_mlp = nn.Sequential(nn.Linear(input_nf, hidden_nf, bias=bias), act_fn,
                                         nn.Linear(hidden_nf, 1, bias=bias), nn.Sigmoid())
        self.node_mlp = nn.Sequential(nn.Linear(hidden_nf + input_nf, hidden_nf, bias=bias),
                                      act_fn, nn.Linear(hidden_nf, output_nf, bias=bias))

    def forward(self, x, edge_index, edge_attr=None):
        row, col = edge_index
        parts = [x[row], x[col]] + ([] if edge_attr is None else [edge_attr])
        m = self.edge_mlp(torch.cat(parts, dim=1))
        if self.attention:
            m = m * self.att_mlp(torch.abs(x[row] - x[col]))
        out = self.node_mlp(torch.cat([x, seg_sum(m, row, x.shape[0])], dim=1))
        return (out + x if self.recurrent else out), m


class GCL_rf_vel(nn.Module):  # noqa: N801
    def __init__(self, nf=64, edge_attr_nf=0, act_fn=nn.LeakyReLU(0.2), coords_weight=1.0):
        super().__init__()
        self.coords_weight = coords_weight
        self.coord_mlp_vel = nn.Sequential(nn.Linear(1, nf), act_fn, nn.Linear(nf, 1))
        last = nn.Linear(nf, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.phi = nn.Sequential(nn.Linear(1 + edge_attr_nf, nf), act_fn, last, nn.Tanh())

    def forward(self, x, vel_norm, vel, edge_index, edge_attr=None):
        row, col = edge_index
        diff = x[row] - x[col]
        dist = torch.sqrt((diff * diff).sum(dim=1, keepdim=True))
        m = diff * self.phi(torch.cat([dist, edge_attr], dim=1))
        x = x + self.coords_weight * seg_mean(m, row, x.shape[0])
        x += vel * self.coord_mlp_vel(vel_norm)
        return x, edge_attr


class GNN(nn.Module):
    def __init__(self, input_dim, hidden_nf, device="cpu", act_fn=nn.SiLU(), n_layers=4,
                 attention=0, recurrent=False):
        super().__init__()
        self.hidden_nf, self.n_layers = hidden_nf, n_layers
        for k in range(n_layers):
            self.add_module(f"gcl_{k}", GCL(hidden_nf, hidden_nf, hidden_nf, edges_in_nf=1,
                                            act_fn=act_fn, attention=attention,
                                            recurrent=recurrent))
        self.decoder = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act_fn,
                                     nn.Linear(hidden_nf, 3))
        self.embedding = nn.Sequential(nn.Linear(input_dim, hidden_nf))

    def forward(self, nodes, edges, edge_attr=None):
        h = self.embedding(nodes)
        for k in range(self.n_layers):
            h, _ = self._modules[f"gcl_{k}"](h, edges, edge_attr=edge_attr)
        return self.decoder(h)


class EGNN(nn.Module):
    """n_body_system/model.py's gcl stack (positions out)."""

    def __init__(self, in_node_nf, in_edge_nf, hidden_nf, device="cpu",
                 act_fn=nn.LeakyReLU(0.2), n_layers=4, coords_weight=1.0):
        super().__init__()
        self.hidden_nf, self.n_layers = hidden_nf, n_layers
        self.embedding = nn.Linear(in_node_nf, hidden_nf)
        for k in range(n_layers):
            self.add_module(f"gcl_{k}", E_GCL(hidden_nf, hidden_nf, hidden_nf,
                                              edges_in_d=in_edge_nf, act_fn=act_fn,
                                              recurrent=True, coords_weight=coords_weight))

    def forward(self, h, x, edges, edge_attr, vel=None):
        h = self.embedding(h)
        for k in range(self.n_layers):
            h, x, _ = self._modules[f"gcl_{k}"](h, edges, x, edge_attr=edge_attr)
        return x


class EGNN_vel(nn.Module):  # noqa: N801
    def __init__(self, in_node_nf, in_edge_nf, hidden_nf, device="cpu", act_fn=nn.SiLU(),
                 n_layers=4, coords_weight=1.0, recurrent=False, norm_diff=False, tanh=False):
        super().__init__()
        self.hidden_nf, self.n_layers = hidden_nf, n_layers
        self.embedding = nn.Linear(in_node_nf, hidden_nf)
        for k in range(n_layers):
            self.add_module(f"gcl_{k}", E_GCL_vel(
                hidden_nf, hidden_nf, hidden_nf, edges_in_d=in_edge_nf, act_fn=act_fn,
                coords_weight=coords_weight, recurrent=recurrent, norm_diff=norm_diff,
                tanh=tanh))

    def forward(self, h, x, edges, vel, edge_attr):
        h = self.embedding(h)
        for k in range(self.n_layers):
            h, x, _ = self._modules[f"gcl_{k}"](h, edges, x, vel, edge_attr=edge_attr)
        return x


class RF_vel(nn.Module):  # noqa: N801
    def __init__(self, hidden_nf, edge_attr_nf=0, device="cpu", act_fn=nn.SiLU(), n_layers=4):
        super().__init__()
        self.hidden_nf, self.n_layers = hidden_nf, n_layers
        for k in range(n_layers):
            self.add_module(f"gcl_{k}", GCL_rf_vel(nf=hidden_nf, edge_attr_nf=edge_attr_nf,
                                                   act_fn=act_fn))

    def forward(self, vel_norm, x, edges, vel, edge_attr):
        for k in range(self.n_layers):
            x, _ = self._modules[f"gcl_{k}"](x, vel_norm, vel, edges, edge_attr)
        return x


class Linear(nn.Module):
    def __init__(self, input_nf, output_nf, device="cpu"):
        super().__init__()
        self.linear = nn.Linear(input_nf, output_nf)

    def forward(self, input):  # noqa: A002  (the published argument name)
        return self.linear(input)
