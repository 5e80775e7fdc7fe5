"""e3nn modules (the installed peer itself, built in float64) through ``interop.compare``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
o3 = pytest.importorskip("e3nn.o3")
enn = pytest.importorskip("e3nn.nn")

from geomp_ref import interop  # noqa: E402
from geomp_ref.interop import e3nn as interop_e3nn  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def _float64_default():
    # e3nn builds its Clebsch-Gordan buffers in the default dtype at construction
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def _randn(*shape):
    return torch.randn(*shape, dtype=F64)


def _assert_ok(report):
    assert report.ok, report
    for kind, r in zip(report.kinds, report.rows):
        assert r.max_rel <= (1e-12 if kind == "output" else 1e-10), r


def test_fully_connected_tensor_product_with_broadcast_batches():
    tp = o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x1o+1x2e", "2x1e+1x0e+1x1o")
    report = interop.compare(tp, _randn(4, 1, tp.irreps_in1.dim), _randn(3, tp.irreps_in2.dim))
    _assert_ok(report)
    assert [r.name for r in report.rows] == ["output", "weight", "x", "y"]
    assert any("broadcast" in n for n in report.notes)


def test_general_tensor_product_with_variances():
    tp = o3.TensorProduct(
        "3x1o", "2x2e", "3x1o+6x3o",
        [(0, 0, 0, "uvu", True, 3.0), (0, 0, 1, "uvuv", False)],
        in1_var=[2.0], out_var=[0.5, 1.5],
    )
    _assert_ok(interop.compare(tp, _randn(5, tp.irreps_in1.dim), _randn(5, tp.irreps_in2.dim)))


@pytest.mark.parametrize("shared", [True, False])
def test_tensor_product_with_external_weights(shared):
    tp = o3.FullyConnectedTensorProduct(
        "2x0e+1x1o", "1x1o", "2x1e+1x0e", internal_weights=False, shared_weights=shared
    )
    w = _randn(tp.weight_numel) if shared else _randn(4, tp.weight_numel)
    report = interop.compare(tp, _randn(4, tp.irreps_in1.dim), _randn(4, tp.irreps_in2.dim), w)
    _assert_ok(report)
    assert [r.name for r in report.rows] == ["output", "x", "y", "weight"]


def test_linear_with_biases_and_gate():
    lin = o3.Linear("3x0e+2x1o", "2x0e+1x1o", biases=True)
    with torch.no_grad():
        lin.bias.normal_()
    report = interop.compare(lin, _randn(6, lin.irreps_in.dim))
    _assert_ok(report)
    assert [r.name for r in report.rows] == ["output", "weight", "bias", "features"]
    gate = enn.Gate("1x0o", [torch.tanh], "2x0e", [torch.sigmoid], "1x1e+1x1o")
    _assert_ok(interop.compare(gate, _randn(6, gate.irreps_in.dim)))


def test_unsupported_e3nn_modules_and_options():
    with pytest.raises(TypeError, match="supported module types"):
        interop.compare(o3.TensorSquare("1x1o"), _randn(2, 3))
    lin = o3.Linear("2x0e", "1x0e", internal_weights=False, shared_weights=True)
    with pytest.raises(ValueError, match="internal_weights=False"):
        interop_e3nn.from_torch(lin)
    gate = enn.Gate("1x0e", [torch.nn.functional.softsign], "", [], "")
    with pytest.raises(ValueError, match="matches none of"):
        interop.from_torch(gate)
