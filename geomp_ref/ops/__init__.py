"""Parameter-free differentiable primitives: ``f(...)`` and its hand-derived ``f_vjp(..., grad_out)``.

Submodules: :mod:`.scatter` (gather, scatter, aggregation; backend dispatch), :mod:`.dense`
(linear), :mod:`.activations`, :mod:`.radial` (radial bases and cutoffs), :mod:`.geometry`
(edge lengths). Functions with one differentiable argument return its gradient; functions with
several return a tuple in argument order with ``None`` for integer arguments.
"""

from . import activations, dense, geometry, radial, scatter
from .activations import (
    relu, relu_vjp, shifted_softplus, shifted_softplus_vjp, sigmoid, sigmoid_vjp, silu, silu_vjp,
    softplus, softplus_vjp, tanh, tanh_vjp,
)
from .dense import linear, linear_vjp
from .geometry import edge_length, edge_length_vjp, edge_sqlength, edge_sqlength_vjp
from .radial import (
    bessel_rbf, bessel_rbf_vjp, cosine_cutoff, cosine_cutoff_vjp, gaussian_rbf, gaussian_rbf_vjp,
    polynomial_cutoff, polynomial_cutoff_vjp,
)
from .scatter import (
    aggregate, aggregate_mean, aggregate_mean_vjp, aggregate_vjp, edge_product, gather, gather_vjp,
    scatter_max, scatter_max_vjp, scatter_mean, scatter_mean_vjp, scatter_softmax,
    scatter_softmax_vjp, scatter_sum, scatter_sum_vjp, weighted_aggregate, weighted_aggregate_vjp,
)

__all__ = [n for n in dir() if not n.startswith("_")]
