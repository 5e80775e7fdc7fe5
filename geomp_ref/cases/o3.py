r"""Cases for the O(3) blocks: tensor products, equivariant Linear and Gate.

These blocks take no graph (``extra={"takes_graph": False}``): ``make_inputs(rng, num_nodes)``
returns ``(None, inputs)`` with ``num_nodes`` samples per input, aligned with the forward's full
input list (a tensor product's ``weight`` slot is ``None`` unless the weight is an input). Irreps
mix both parities so that the symmetry check (``group="O3"``: rotations and reflections) sees
the parity rules; the Gate case puts a ``0o`` first in its sorted input.
"""

from __future__ import annotations

import numpy as np

from . import Case

__all__ = ["register"]


def _maker(*dims, weight_numel=None, weight_slot=False):
    def make_inputs(rng: np.random.Generator, num_nodes: int):
        inputs = [rng.standard_normal((num_nodes, d)) for d in dims]
        if weight_numel is not None:
            inputs.append(rng.standard_normal((num_nodes, weight_numel)))
        elif weight_slot:
            inputs.append(None)
        return None, tuple(inputs)

    return make_inputs


def _tp_case(name, spec, notes):
    # per-sample weights are invariant per-sample inputs (the kind of an empty slot too)
    kinds = (f"irreps:{spec.irreps_in1}", f"irreps:{spec.irreps_in2}", "node_scalar")
    dims = (spec.irreps_in1.dim, spec.irreps_in2.dim)
    numel = spec.weight_numel if spec.takes_weight else None
    return Case(
        name=name,
        layer=spec,
        make_inputs=_maker(*dims, weight_numel=numel, weight_slot=True),
        input_kinds=kinds,
        output_kinds=(f"irreps:{spec.irreps_out}",),
        group="O3",
        notes=notes,
        extra={"takes_graph": False},
    )


def register() -> list[Case]:
    from ..o3.gating import Gate
    from ..o3.linear import Linear
    from ..o3.tensor_product import FullyConnectedTensorProduct, TensorProduct

    out = []
    fc = FullyConnectedTensorProduct(
        "2x0e+1x0o+2x1o+1x1e+1x2e", "1x0e+1x1o+1x2e", "2x0e+1x0o+2x1o+2x1e+1x2e+1x2o"
    )
    out.append(
        _tp_case(
            "FullyConnectedTensorProduct/mixed_parity",
            fc,
            "all uvw paths in e3nn's order; component/element normalisation",
        )
    )
    tp = TensorProduct(
        "3x1o+2x0e",
        "2x2e+2x1e",
        "3x1o+2x3o+2x2e+2x1o",
        [
            (0, 0, 0, "uvu", True),
            (0, 0, 1, "uvw", True, 0.5),
            (0, 1, 3, "uvv", False),
            (1, 0, 2, "uvw", True),
            (0, 0, 0, "uvw", True, 2.0),
        ],
    )
    out.append(
        _tp_case(
            "TensorProduct/uvw_uvu_uvv",
            tp,
            "weighted and weightless paths, user path weights under the square root",
        )
    )
    tp = TensorProduct(
        "3x1o+2x0o",
        "3x1o+2x2e",
        "3x1e+2x2o+1x0e+6x1e+2x2o",
        [
            (0, 0, 0, "uuu", True),
            (0, 0, 2, "uuw", False),
            (1, 1, 1, "uuw", True),
            (1, 0, 3, "uvuv", True),
            (1, 1, 4, "uuu", False),
        ],
        irrep_normalization="norm",
        path_normalization="path",
    )
    out.append(_tp_case("TensorProduct/uuw_uuu_uvuv", tp, "norm/path normalisation"))
    tp = TensorProduct(
        "2x0e+2x1o",
        "1x1o+1x0o",
        "2x1e+2x0o+2x1o",
        [(1, 0, 0, "uvu", True), (0, 1, 1, "uvu", True), (0, 0, 2, "uvw", True)],
        shared_weights=False,
    )
    out.append(
        _tp_case(
            "TensorProduct/per_sample_weights",
            tp,
            "shared_weights=False: the weight is the third input",
        )
    )
    lin = Linear("3x0e+2x1o+1x0e+1x2e+1x0o", "2x0e+3x1o+1x2e+2x0o", biases=True)
    out.append(
        Case(
            name="Linear/biases",
            layer=lin,
            make_inputs=_maker(lin.irreps_in.dim),
            input_kinds=(f"irreps:{lin.irreps_in}",),
            output_kinds=(f"irreps:{lin.irreps_out}",),
            group="O3",
            notes="e3nn layout; 0e biases",
            extra={"takes_graph": False},
        )
    )
    gate = Gate("2x0e+1x0o", ["silu", "tanh"], "3x0e+1x0o", ["sigmoid", "abs"], "1x0o+2x1o+1x2e")
    out.append(
        Case(
            name="Gate/mixed_parity",
            layer=gate,
            make_inputs=_maker(gate.irreps_in.dim),
            input_kinds=(f"irreps:{gate.irreps_in}",),
            output_kinds=(f"irreps:{gate.irreps_out}",),
            group="O3",
            notes="exact normalisation constants; odd scalars through odd/even acts; a gated 0o",
            extra={"takes_graph": False},
        )
    )
    return out
