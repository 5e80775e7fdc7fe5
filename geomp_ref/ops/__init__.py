"""Parameter-free differentiable primitives: ``f(...)`` and its hand-derived VJP ``f_vjp``.

Each ``f_vjp`` takes the arguments of ``f`` followed by the cotangent of its output.

Submodules: :mod:`.scatter` (gather, scatter, aggregation; backend dispatch), :mod:`.dense`
(linear), :mod:`.normalization` (layer norm), :mod:`.activations`, :mod:`.radial` (radial bases
and cutoffs), :mod:`.geometry`
(edge lengths: the one place they are computed), :mod:`.edge_filters` (SchNet's cutoff-scaled
filter aggregation, reverse-edge pairing, the edge-vector VJP per backend). Functions with one
differentiable argument return its gradient; functions with several return a tuple in argument
order with ``None`` for integer arguments. Every ``*_vjp`` checks that its cotangent has the shape
of the forward output, and every argument is validated with an error that names it.
"""

from . import activations, dense, edge_filters, geometry, normalization, radial, scatter
from .activations import (
    activate,
    derivative,
    gelu,
    gelu_vjp,
    identity,
    identity_vjp,
    relu,
    relu_vjp,
    shifted_softplus,
    shifted_softplus_vjp,
    sigmoid,
    sigmoid_vjp,
    silu,
    silu_vjp,
    softplus,
    softplus_vjp,
    tanh,
    tanh_vjp,
)
from .dense import linear, linear_vjp
from .edge_filters import (
    EdgePairs,
    edge_pairs,
    edge_vectors_vjp,
    filter_aggregate,
    filter_aggregate_vjp,
)
from .geometry import edge_length, edge_length_vjp, edge_sqlength, edge_sqlength_vjp
from .normalization import layer_norm, layer_norm_vjp
from .radial import (
    bessel_rbf,
    bessel_rbf_vjp,
    cosine_cutoff,
    cosine_cutoff_vjp,
    gaussian_centers,
    gaussian_rbf,
    gaussian_rbf_vjp,
    polynomial_cutoff,
    polynomial_cutoff_vjp,
)
from .scatter import (
    aggregate,
    aggregate_mean,
    aggregate_mean_vjp,
    aggregate_vjp,
    edge_product,
    gather,
    gather_vjp,
    scatter_max,
    scatter_max_vjp,
    scatter_mean,
    scatter_mean_vjp,
    scatter_softmax,
    scatter_softmax_vjp,
    scatter_sum,
    scatter_sum_vjp,
    weighted_aggregate,
    weighted_aggregate_vjp,
)

__all__ = [
    # submodules
    "activations", "dense", "edge_filters", "geometry", "normalization", "radial", "scatter",
    # gather / scatter / aggregation (scatter.py)
    "gather", "gather_vjp", "scatter_sum", "scatter_sum_vjp", "scatter_mean", "scatter_mean_vjp",
    "scatter_max", "scatter_max_vjp", "scatter_softmax", "scatter_softmax_vjp",
    "aggregate", "aggregate_vjp", "aggregate_mean", "aggregate_mean_vjp",
    "weighted_aggregate", "weighted_aggregate_vjp", "edge_product",
    # dense.py, normalization.py
    "linear", "linear_vjp", "layer_norm", "layer_norm_vjp",
    # activations.py
    "silu", "silu_vjp", "softplus", "softplus_vjp", "shifted_softplus", "shifted_softplus_vjp",
    "sigmoid", "sigmoid_vjp", "tanh", "tanh_vjp", "relu", "relu_vjp", "identity", "identity_vjp",
    "gelu", "gelu_vjp", "activate", "derivative",
    # edge_filters.py
    "EdgePairs", "edge_pairs", "edge_vectors_vjp", "filter_aggregate", "filter_aggregate_vjp",
    # radial.py
    "gaussian_centers", "gaussian_rbf", "gaussian_rbf_vjp", "bessel_rbf", "bessel_rbf_vjp",
    "cosine_cutoff", "cosine_cutoff_vjp", "polynomial_cutoff", "polynomial_cutoff_vjp",
    # geometry.py
    "edge_length", "edge_length_vjp", "edge_sqlength", "edge_sqlength_vjp",
]
