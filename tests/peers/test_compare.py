"""The cross-check engine (``geomp_ref.interop.compare``): what it compares, how it reports, and
the adapter bugs it refuses.

Engine-only behaviour uses a two-parameter test double (``Shift``: ``(x + b) * s``, updating its
input in place as vgsatorras/egnn's ``gcl.py`` does with ``coord``) with a hand-written adapter;
dispatch and dtype handling use the real ``torch.nn.GRUCell`` adapter.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from geomp_ref import interop  # noqa: E402
from geomp_ref.interop import Binding, InputLink, ParamLink, Tap  # noqa: E402
from geomp_ref.interop.compare import TOLERANCES, _err, compare_with  # noqa: E402


class Shift(torch.nn.Module):
    """``(x + b) * s`` that adds ``b`` to the caller's tensor in place."""

    def __init__(self, c=4, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.b = torch.nn.Parameter(torch.randn(c, generator=g, dtype=dtype))
        self.s = torch.nn.Parameter(torch.randn(c, generator=g, dtype=dtype))
        self.inner = torch.nn.Identity()

    def forward(self, x):
        x += self.b  # in place, like ``coord += agg`` in egnn's gcl.py
        return self.inner(x) * self.s


class AffineCache(NamedTuple):
    y: np.ndarray


@dataclass(frozen=True)
class Affine:
    """Our side of ``Shift``; ``bug`` scales the gradient of ``s`` (a deliberate backward bug)."""

    bug: float = 0.0

    def init(self, rng):
        return {"b": np.zeros(4), "s": np.zeros(4)}

    def forward(self, params, x):
        y = x + params["b"]
        return y * params["s"], AffineCache(y)

    def backward(self, params, cache, g):
        gs = (g * cache.y).sum(0) * (1.0 + self.bug)
        return {"b": (g * params["s"]).sum(0), "s": gs}, (g * params["s"],)


def _adapter(links=("b", "s"), bug=0.0, taps=(), params_shift=0.0):
    def binding(module, x):
        params = {k: v.detach().double().numpy().copy() for k, v in module.named_parameters()}
        params["b"] = params["b"] + params_shift
        return Binding(
            Affine(bug),
            params,
            None,
            (x.detach().double().numpy(),),
            [ParamLink(k, (k,)) for k in links],
            [InputLink("x", lambda c: c["x"], 0)],
            lambda r: r,
            list(taps),
            ["a note from the adapter"],
        )

    return SimpleNamespace(binding=binding, matches=lambda m: isinstance(m, Shift))


def _x(dtype=torch.float64):
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(2), dtype=dtype)


def test_agreeing_double_is_ok_and_the_callers_tensor_is_untouched():
    x = _x()
    before = x.clone()
    report = compare_with(_adapter(), Shift(), x)
    assert report.ok, report
    assert torch.equal(x, before)  # the peer's in-place update hit a copy
    assert [r.name for r in report.rows] == ["output", "b", "s", "x"]
    assert report.kinds == ["output", "param", "param", "input"]
    assert all(r.max_rel <= 1e-15 for r in report.rows)
    assert report.first_divergence is None
    assert "a note from the adapter" in report.notes


def test_rows_are_tuples_and_tolerances_are_the_documented_defaults():
    report = compare_with(_adapter(), Shift(), _x())
    name, max_abs, max_rel, tol = report.rows[0]
    assert (name, tol) == ("output", 1e-12)
    assert [r.tol for r in report.rows[1:]] == [1e-10] * 3
    assert TOLERANCES["float64"] == (1e-12, 1e-10)
    loose = compare_with(_adapter(), Shift(), _x(), tol_out=1e-3, tol_grad=1e-2)
    assert [r.tol for r in loose.rows] == [1e-3, 1e-2, 1e-2, 1e-2]


def test_a_backward_bug_fails_only_its_gradient_row():
    report = compare_with(_adapter(bug=1e-8), Shift(), _x())
    assert not report.ok
    assert report.failed == ["s"]
    assert report.first_divergence is None
    assert any("gradients do not" in n for n in report.notes)


def test_a_forward_difference_fails_the_output():
    module = Shift()
    module.register_forward_hook(lambda m, i, out: out * (1 + 1e-9))
    report = compare_with(_adapter(), module, _x())
    assert not report.ok
    assert "output" in report.failed
    assert any("no taps" in n for n in report.notes)


def test_params_that_are_not_the_links_image_are_an_adapter_bug():
    with pytest.raises(RuntimeError, match="does not hold to_ours"):
        compare_with(_adapter(params_shift=1e-9), Shift(), _x())


def test_uncovered_trainable_parameter_is_an_adapter_bug():
    with pytest.raises(RuntimeError, match=r"no ParamLink covers .*'s'"):
        compare_with(_adapter(links=("b",)), Shift(), _x())
    frozen = Shift()
    frozen.s.requires_grad_(False)  # not trainable: no link needed, no gradient row
    report = compare_with(_adapter(links=("b",)), frozen, _x())
    assert [r.name for r in report.rows] == ["output", "b", "x"]


def test_taps_locate_a_perturbation_and_name_the_submodule():
    tap = Tap("inner", lambda cache: cache.y)
    assert compare_with(_adapter(taps=[tap]), Shift(), _x()).ok
    module = Shift()
    module.inner.register_forward_hook(lambda m, i, out: out + 1e-6)
    report = compare_with(_adapter(taps=[tap]), module, _x())
    assert not report.ok
    assert report.first_divergence == "inner"
    assert report.taps[0].max_abs == pytest.approx(1e-6, rel=1e-6)
    assert "first divergence: inner" in str(report)


def test_a_tap_that_never_runs_fails_with_a_note():
    report = compare_with(_adapter(taps=[Tap("inner", lambda c: c.y, call=1)]), Shift(), _x())
    assert not report.ok
    assert any("never ran" in n for n in report.notes)
    with pytest.raises(RuntimeError, match="unknown submodule 'nope'"):
        compare_with(_adapter(taps=[Tap("nope", lambda c: c.y)]), Shift(), _x())


def test_relative_error_guards_zero():
    assert _err(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    assert _err(np.array([0.0, 1e-300]), np.zeros(2))[1] == float("inf")
    assert _err(np.array([1.0, 2.5]), np.array([1.0, 2.0])) == (0.5, 0.25)
    assert _err(np.array([np.nan]), np.array([1.0]))[1] == float("inf")


def test_same_seed_same_numbers_and_the_documented_cotangent():
    a = compare_with(_adapter(), Shift(), _x(), seed=3)
    b = compare_with(_adapter(), Shift(), _x(), seed=3)
    assert a.rows == b.rows and a.seed == 3
    (cot,) = a.cotangents
    np.testing.assert_array_equal(cot, np.random.default_rng(3).standard_normal((5, 4)))
    # the cotangent really drives the peer's backward: x's gradient is cot * s
    module, x = Shift(), _x().requires_grad_(True)
    (gx,) = torch.autograd.grad(module(x.clone()), x, torch.as_tensor(cot))
    np.testing.assert_array_equal(gx.numpy(), cot * module.s.detach().numpy())
    other = compare_with(_adapter(), Shift(), _x(), seed=4)
    assert not np.array_equal(other.cotangents[0], cot)


def test_float32_module_is_compared_against_float64_and_says_so():
    cell = torch.nn.GRUCell(3, 4)  # float32
    report = interop.compare(cell, torch.randn(6, 3), torch.randn(6, 4))
    assert report.ok, report
    assert report.dtype == "float32"
    assert (report.tol_out, report.tol_grad) == TOLERANCES["float32"]
    text = str(report)
    assert "float32" in text and "oracle in float64" in text
    # the float64 oracle sees float32-rounded values: the float32 peer's own rounding remains
    assert 1e-9 < max(r.max_rel for r in report.rows) < 1e-5
    (cot,) = report.cotangents
    np.testing.assert_array_equal(cot, cot.astype(np.float32))  # float32-rounded values


def test_half_precision_is_refused_naming_the_dtype():
    with pytest.raises(ValueError, match="float16"):
        compare_with(_adapter(), Shift(dtype=torch.float16), _x(torch.float16))


def test_report_text_is_a_readable_table():
    cell = torch.nn.GRUCell(3, 4).double()
    report = interop.compare(cell, torch.randn(6, 3, dtype=torch.float64))
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("compare GRUCell (peer, float64) with geomp_ref GRUCell (float64)")
    assert "cotangent seed 0" in lines[0]
    assert set(lines[1]) == {"="}
    assert lines[2].split() == ["kind", "name", "max_abs", "max_rel", "tol"]
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "input"):
        assert any(line.split()[:2] in (["param", name], ["input", name]) for line in lines)
    assert "first divergence: None" in text
    assert lines[-1] == "OK"
    bad = compare_with(_adapter(bug=1e-6), Shift(), _x())
    assert str(bad).splitlines()[-1] == "FAILED: 1 of 4 rows beyond tolerance"
    assert any(line.endswith("FAIL") and " s " in line for line in str(bad).splitlines())


def test_dispatch_lists_supported_types_when_nothing_matches():
    with pytest.raises(TypeError, match="supported module types") as err:
        interop.compare(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    for name in ("torch_geometric.nn.NNConv", "e3nn.o3.Linear", "torch.nn.GRU"):
        assert name in str(err.value)
    with pytest.raises(TypeError, match="supported module types"):
        interop.from_torch(torch.nn.ReLU())


def test_from_torch_and_inputs_from_torch_dispatch():
    cell = torch.nn.GRUCell(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    spec, params = interop.from_torch(cell)
    graph, inputs = interop.inputs_from_torch(cell, x)
    assert graph is None
    y = spec(params, *inputs)
    np.testing.assert_allclose(y, cell(x).detach().numpy(), rtol=1e-13, atol=1e-15)
    assert interop.find_adapter(cell).__name__ == "geomp_ref.interop.pyg"
    assert {"e3nn", "pyg"} <= set(interop.supported())


def test_adapter_compare_refuses_foreign_modules():
    from geomp_ref.interop import e3nn as interop_e3nn

    with pytest.raises(TypeError, match="geomp_ref.interop.e3nn supports"):
        interop_e3nn.compare(torch.nn.GRUCell(2, 2), torch.zeros(1, 2))


def test_missing_torch_names_the_peers_extra(monkeypatch):
    from geomp_ref.interop import pyg as interop_pyg

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"peers.*geomp-ref\[peers\]"):
        interop_pyg.from_torch(object())


def test_the_docs_page_examples_run(capsys):
    """Every ``code-block:: python`` of docs/check_your_model.rst, in order, in one namespace."""
    path = Path(__file__).resolve().parents[2] / "docs" / "check_your_model.rst"
    if not path.exists():
        pytest.skip("docs/ is not part of this installation")
    pytest.importorskip("torch_geometric")
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", path.read_text())
    assert len(blocks) >= 6
    code = "\n".join(textwrap.dedent(b) for b in blocks)
    exec(compile(code, str(path), "exec"), {"__name__": "check_your_model"})
    out = capsys.readouterr().out
    assert "False gru" in out and "gru (call 2/3)" in out and "float32 True" in out
    assert "NNConv.aggr='max'" in out
