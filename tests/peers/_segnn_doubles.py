"""Test doubles of Steerable-E3-GNN (RobDHess, commit 1b95898), written for these tests from the
published structure: the class names, attribute, submodule and parameter names and the forward
signatures of ``models/segnn/{o3_building_blocks,segnn,instance_norm}.py`` and the N-body and QM9
transforms, built from e3nn parts as the original is.

Differences from the published files, on purpose: ``InstanceNorm`` pools over nodes (dim 0)
the way the PyG of the publication (2.0) did (current PyG pools dim -2 there and the published
file fails); ``catch_isolated_nodes`` only sets column 0 (the published padding branch fails
with a NameError anyway). Build everything under ``torch.set_default_dtype(torch.float64)``.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import BatchNorm, Gate
from torch_geometric.nn import MessagePassing, global_add_pool, global_max_pool, global_mean_pool


def _node_mean(x, batch):
    """Mean over the nodes of each graph along dim 0 (the pooling the published norm relies on)."""
    size = int(batch.max()) + 1
    total = torch.zeros((size,) + tuple(x.shape[1:]), dtype=x.dtype).index_add(0, batch, x)
    count = torch.bincount(batch, minlength=size).clamp(min=1).to(x.dtype)
    return total / count.reshape((size,) + (1,) * (x.dim() - 1))


class O3TensorProduct(torch.nn.Module):
    """e3nn FCTP, divided by 1/sqrt(fan_in) per output block, plus biases on l = 0 blocks."""

    def __init__(self, irreps_in1, irreps_out, irreps_in2=None, tp_rescale=True):
        super().__init__()
        self.irreps_in1 = o3.Irreps(irreps_in1)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_in2_provided = irreps_in2 is not None
        self.irreps_in2 = o3.Irreps("1x0e") if irreps_in2 is None else o3.Irreps(irreps_in2)
        self.tp_rescale = tp_rescale
        self.tp = o3.FullyConnectedTensorProduct(
            self.irreps_in1, self.irreps_in2, self.irreps_out, shared_weights=True,
            irrep_normalization="component")
        fan = {}
        for ins in self.tp.instructions:
            fan[ins.i_out] = fan.get(ins.i_out, 0) + ins.path_shape[0] * ins.path_shape[1]
        slices = self.irreps_out.slices()
        k = torch.zeros(self.irreps_out.dim)
        for i_out, f in fan.items():
            k[slices[i_out]] = 1.0 / math.sqrt(f)
        self.register_buffer("sqrt_k_correction", k, persistent=False)
        with torch.no_grad():
            for w, ins in zip(self.tp.weight_views(), self.tp.instructions):
                b = 1.0 / math.sqrt(fan[ins.i_out]) if tp_rescale else 1.0
                w.uniform_(-b, b)
        scalar = [i for i, (_, ir) in enumerate(self.irreps_out) if ir.l == 0]
        if scalar:
            idx = torch.cat([torch.arange(slices[i].start, slices[i].stop) for i in scalar])
            self.register_buffer("bias_idx", idx, persistent=False)
            self.biases = torch.nn.Parameter((torch.rand(idx.numel()) * 2 - 1) * k[idx])
        else:
            self.biases = None

    def forward_tp_rescale_bias(self, data_in1, data_in2=None):
        if data_in2 is None:
            data_in2 = torch.ones_like(data_in1[:, 0:1])
        out = self.tp(data_in1, data_in2)
        if self.tp_rescale:
            out = out / self.sqrt_k_correction
        if self.biases is not None:
            out[:, self.bias_idx] += self.biases
        return out

    def forward(self, data_in1, data_in2=None):
        return self.forward_tp_rescale_bias(data_in1, data_in2)


class O3TensorProductSwishGate(O3TensorProduct):
    """The product into scalars + one 0e gate per gated irrep + gated irreps, then e3nn's Gate."""

    def __init__(self, irreps_in1, irreps_out, irreps_in2=None):
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([irreps_out[0]])
        gated = o3.Irreps(list(irreps_out)[1:])
        gates = o3.Irreps(f"{gated.num_irreps}x0e")
        super().__init__(irreps_in1, (scalars + gates + gated).simplify(), irreps_in2)
        if gated.num_irreps:
            self.gate = Gate(scalars, [torch.nn.SiLU()], gates, [torch.sigmoid], gated)
        else:
            self.gate = torch.nn.SiLU()

    def forward(self, data_in1, data_in2=None):
        return self.gate(self.forward_tp_rescale_bias(data_in1, data_in2))


class InstanceNorm(torch.nn.Module):
    """Per-graph instance norm of irreps fields (scalars centred first)."""

    def __init__(self, irreps, eps=1e-5, affine=True, reduce="mean", normalization="component"):
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.eps = eps
        self.affine = affine
        self.reduce = reduce
        self.normalization = normalization
        if affine:
            num_scalar = sum(mul for mul, ir in self.irreps if ir.l == 0)
            self.weight = torch.nn.Parameter(torch.ones(self.irreps.num_irreps))
            self.bias = torch.nn.Parameter(torch.zeros(num_scalar))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input, batch):  # noqa: A002  (the published argument name)
        out, iw, ib, ix = [], 0, 0, 0
        for mul, ir in self.irreps:
            f = input[:, ix: ix + mul * ir.dim].reshape(-1, mul, ir.dim)
            ix += mul * ir.dim
            if ir.l == 0:
                f = f - _node_mean(f, batch)[batch]
            q = f.pow(2).sum(-1) if self.normalization == "norm" else f.pow(2).mean(-1)
            if self.reduce == "mean":
                q = _node_mean(q, batch)
            else:
                q = global_max_pool(q, batch)
            s = (q + self.eps).pow(-0.5)
            if self.affine:
                s = s * self.weight[None, iw: iw + mul]
                iw += mul
            f = f * s[batch].reshape(-1, mul, 1)
            if self.affine and ir.dim == 1:
                f = f + self.bias[ib: ib + mul].reshape(mul, 1)
                ib += mul
            out.append(f.reshape(-1, mul * ir.dim))
        return torch.cat(out, dim=-1)


class SEGNNLayer(MessagePassing):
    """m_ij = G(G([x_i, x_j, s_ij] x a_ij) x a_ij); x_i += T(G([x_i, sum_j m_ij] x a_i) x a_i)."""

    def __init__(self, input_irreps, hidden_irreps, output_irreps, edge_attr_irreps,
                 node_attr_irreps, norm=None, additional_message_irreps=None, aggr="add"):
        super().__init__(node_dim=-2, aggr=aggr)
        self.hidden_irreps = hidden_irreps
        msg_in = (2 * input_irreps + additional_message_irreps).simplify()
        self.message_layer_1 = O3TensorProductSwishGate(msg_in, hidden_irreps, edge_attr_irreps)
        self.message_layer_2 = O3TensorProductSwishGate(hidden_irreps, hidden_irreps,
                                                        edge_attr_irreps)
        self.update_layer_1 = O3TensorProductSwishGate((input_irreps + hidden_irreps).simplify(),
                                                       hidden_irreps, node_attr_irreps)
        self.update_layer_2 = O3TensorProduct(hidden_irreps, hidden_irreps, node_attr_irreps)
        self.norm = norm
        self.feature_norm = None
        self.message_norm = None
        if norm == "batch":
            self.feature_norm = BatchNorm(hidden_irreps)
            self.message_norm = BatchNorm(hidden_irreps)
        elif norm == "instance":
            self.feature_norm = InstanceNorm(hidden_irreps)

    def forward(self, x, edge_index, edge_attr, node_attr, batch,
                additional_message_features=None):
        x = self.propagate(edge_index, x=x, node_attr=node_attr, edge_attr=edge_attr,
                           additional_message_features=additional_message_features)
        if self.feature_norm is not None:
            x = self.feature_norm(x) if self.norm == "batch" else self.feature_norm(x, batch)
        return x

    def message(self, x_i, x_j, edge_attr, additional_message_features):
        parts = [x_i, x_j] + ([] if additional_message_features is None
                              else [additional_message_features])
        m = self.message_layer_2(self.message_layer_1(torch.cat(parts, -1), edge_attr),
                                 edge_attr)
        return m if self.message_norm is None else self.message_norm(m)

    def update(self, message, x, node_attr):
        u = self.update_layer_2(self.update_layer_1(torch.cat((x, message), -1), node_attr),
                                node_attr)
        x += u  # the published residual is in place
        return x


class SEGNN(torch.nn.Module):
    """Embedding, SEGNN layers, pre-pool blocks, optional pooling and post-pool blocks."""

    def __init__(self, input_irreps, hidden_irreps, output_irreps, edge_attr_irreps,
                 node_attr_irreps, num_layers, norm=None, pool="avg", task="graph",
                 additional_message_irreps=None):
        super().__init__()
        self.task = task
        self.embedding_layer = O3TensorProduct(input_irreps, hidden_irreps, node_attr_irreps)
        self.layers = torch.nn.ModuleList(
            SEGNNLayer(hidden_irreps, hidden_irreps, hidden_irreps, edge_attr_irreps,
                       node_attr_irreps, norm=norm,
                       additional_message_irreps=additional_message_irreps)
            for _ in range(num_layers))
        self.pre_pool1 = O3TensorProductSwishGate(hidden_irreps, hidden_irreps, node_attr_irreps)
        if task == "graph":
            pooled = (output_irreps * hidden_irreps.num_irreps).simplify().sort().irreps
            self.pre_pool2 = O3TensorProduct(hidden_irreps, pooled, node_attr_irreps)
            self.post_pool1 = O3TensorProductSwishGate(pooled, pooled)
            self.post_pool2 = O3TensorProduct(pooled, output_irreps)
            self.pooler = {"avg": global_mean_pool, "sum": global_add_pool,
                           "max": global_max_pool}[pool]
        else:
            self.pre_pool2 = O3TensorProduct(hidden_irreps, output_irreps, node_attr_irreps)

    def catch_isolated_nodes(self, graph):
        graph.node_attr[:, 0] = 1.0

    def forward(self, graph):
        x, edge_index, edge_attr, node_attr, batch = (
            graph.x, graph.edge_index, graph.edge_attr, graph.node_attr, graph.batch)
        try:
            additional_message_features = graph.additional_message_features
        except AttributeError:
            additional_message_features = None
        self.catch_isolated_nodes(graph)
        x = self.embedding_layer(x, node_attr)
        for layer in self.layers:
            x = layer(x, edge_index, edge_attr, node_attr, batch, additional_message_features)
        x = self.pre_pool2(self.pre_pool1(x, node_attr), node_attr)
        if self.task == "graph":
            x = self.post_pool2(self.post_pool1(self.pooler(x, batch)))
        return x


class O3Transform:
    """The N-body transform: x, edge_attr, node_attr and the message features [|x_ij|, q_i q_j]."""

    def __init__(self, lmax_attr):
        self.attr_irreps = o3.Irreps.spherical_harmonics(lmax_attr)

    def __call__(self, graph):
        src, dst = graph.edge_index
        rel = graph.pos[src] - graph.pos[dst]
        dist = rel.pow(2).sum(1, keepdim=True).sqrt()
        graph.edge_attr = o3.spherical_harmonics(self.attr_irreps, rel, True, "integral")
        mean = torch.zeros((int(dst.max()) + 1, graph.edge_attr.shape[1]),
                           dtype=rel.dtype).index_add(0, dst, graph.edge_attr)
        mean = mean / torch.bincount(dst).clamp(min=1).to(rel.dtype)[:, None]
        graph.node_attr = mean + o3.spherical_harmonics(self.attr_irreps, graph.vel, True,
                                                        "integral")
        speed = graph.vel.pow(2).sum(1, keepdim=True).sqrt()
        graph.x = torch.cat((graph.pos - graph.pos.mean(1, keepdim=True), graph.vel, speed), 1)
        graph.additional_message_features = torch.cat(
            (dist, graph.charges[src] * graph.charges[dst]), -1)
        return graph


def qm9_attributes(edge_index, pos, lmax_attr):
    """QM9's attributes: component-normalised harmonics of x_j - x_i, their mean per receiver
    (a row for every node), and the squared distance."""
    src, dst = edge_index
    rel = pos[src] - pos[dst]
    edge_attr = o3.spherical_harmonics(o3.Irreps.spherical_harmonics(lmax_attr), rel, True,
                                       "component")
    n = pos.shape[0]
    mean = torch.zeros((n, edge_attr.shape[1]), dtype=pos.dtype).index_add(0, dst, edge_attr)
    node_attr = mean / torch.bincount(dst, minlength=n).clamp(min=1).to(pos.dtype)[:, None]
    return edge_attr, node_attr, rel.pow(2).sum(-1, keepdim=True)
