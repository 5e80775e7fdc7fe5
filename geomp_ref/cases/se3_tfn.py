"""Cases of the SE(3)-Transformer code's TFN layer (SE3Conv) and its norm nonlinearity.

The convolution's vector-to-vector kernel includes the cross product (:math:`J = 1`), so it is
SE(3)- but not O(3)-equivariant: its group is "SE3" (``tests/layers/test_se3_tfn.py`` checks
what a reflection does). Features of degree 1 are plain vectors, of degree 2 the ``2e`` irreps
of e3nn's basis, so the kind ``"irreps:..."`` describes them under rotations. The nonlinearity
acts on norms and is O(3)-equivariant. Graphs are random point clouds with a radius graph;
isolated nodes occur and get 0, as published.

Finite-difference step: the default 1e-5. The radial networks and the nonlinearity use ReLU,
and a step of 1e-4 moves some of the thousands of pre-activations of a problem across 0 (a kink
the difference quotient straddles: errors of 1e-2 in 2 of 6 problems tried), 1e-5 did not in 84
problems of these cases.
"""

from __future__ import annotations

from ..layers.se3_tfn import SE3Conv, SE3NormNonlinearity, channels_dim
from . import Case
from ._util import cloud_features_maker


def _irreps(channels) -> str:
    parity = "eoe"
    return "irreps:" + "+".join(f"{m}x{l}{parity[l]}" for l, m in enumerate(channels) if m)


def _norm_maker(dim):
    def make(rng, num_nodes):
        return None, (rng.normal(size=(num_nodes, dim)),)

    return make


def _conv_case(name, spec, notes):
    return Case(name, spec, cloud_features_maker(spec.dim_in),
                (_irreps(spec.channels_in), "position"), (_irreps(spec.channels_out),), "SE3",
                notes=notes)


def register() -> list[Case]:
    out = [
        _conv_case("SE3Conv/input", SE3Conv((1, 1), (3, 2), radial_hidden=6),
                   "the published first layer's shape: charge and velocity in"),
        _conv_case("SE3Conv/degree2", SE3Conv((2, 1, 1), (1, 2, 1), radial_hidden=5),
                   "degrees 0-2 both sides: kernels up to J = 4"),
        _conv_case("SE3Conv/to_vector", SE3Conv((2, 2), (0, 1), radial_hidden=4),
                   "the published last layer's shape: one vector out, self-interaction of "
                   "degree 1 only"),
        _conv_case("SE3Conv/no_self", SE3Conv((2, 1), (1, 2), self_interaction=False,
                                              radial_hidden=4),
                   "without the self-interaction"),
    ]
    for ch in ((3, 2), (2, 3, 2)):  # one channel would make the layer norm constant
        spec = SE3NormNonlinearity(ch)
        out.append(Case(f"SE3NormNonlinearity/{'-'.join(map(str, ch))}", spec,
                        _norm_maker(channels_dim(ch)), (_irreps(ch),), (_irreps(ch),), "O3",
                        notes="LayerNorm, ReLU and Linear on the norms of each degree",
                        extra={"takes_graph": False}))
    return out
