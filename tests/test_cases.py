"""The registry battery: every registered case passes its VJP, symmetry and backend checks.

This is the same battery as ``geomp-ref verify``, on fresh random problems, so a new variant is
covered the moment it registers a case. It is the only home of the generic battery: per-layer
test files hold what is specific to a layer. Inputs and outputs may be ``None`` (an unused
optional input is passed explicitly as ``None``).
"""

import inspect
import zlib

import numpy as np
import pytest

from geomp_ref import backends, cases, testing

BROKEN: list = []  # (module, exception) of family modules that fail to register
ALL = cases.cases(errors=BROKEN)


def _rng(case, salt=""):
    return np.random.default_rng(zlib.crc32((case.name + salt).encode()))


def _forward(case, params, graph, inputs):
    if graph is None:
        return case.layer.forward(params, *inputs)
    return case.layer.forward(params, graph, *inputs)


def test_every_family_registers():
    assert not BROKEN, "; ".join(f"{m}: {type(e).__name__}: {e}" for m, e in BROKEN)


def test_registry_is_well_formed():
    assert len(ALL) >= 5
    names = [c.name for c in ALL]
    assert len(set(names)) == len(names)
    for c in ALL:
        assert c.name.startswith(type(c.layer).__name__), c.name
        for k in c.input_kinds + c.output_kinds:
            testing._kind_transform(k)  # every kind is known to the kit (raises otherwise)
        assert callable(c.make_inputs)
        testing._group_sampler(c.group)  # every group is known to the kit


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_inputs_fill_the_forward_signature(case):
    """make_inputs gives one entry per forward input (None for an unused optional one)."""
    sig = inspect.signature(case.layer.forward)
    skip = {"self", "params"} | ({"graph"} if case.takes_graph else set())
    slots = [p for p in sig.parameters.values()
             if p.name not in skip and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    graph, inputs = case.make_inputs(_rng(case, "sig"), 6)
    assert len(inputs) == len(case.input_kinds)
    assert len(inputs) == len(slots), (
        f"make_inputs returns {len(inputs)} inputs for the forward's {len(slots)} slots "
        f"{[p.name for p in slots]}")
    assert (graph is None) == (not case.takes_graph)


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_case_battery(case):
    rng = _rng(case)
    graph, inputs = case.make_inputs(rng, 7)
    assert len(inputs) == len(case.input_kinds)
    params = case.layer.init(rng)
    out, _ = _forward(case, params, graph, inputs)
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(case.output_kinds)
    for o in outs:
        if o is not None:
            assert o.dtype == np.float64 and np.all(np.isfinite(o))
    errs = testing.check_vjp(case.layer, params, graph, inputs, rng=rng, kinds=case.input_kinds,
                             eps=case.fd_eps)
    if errs:
        worst = max(errs, key=errs.get)
        assert errs[worst] <= case.vjp_rtol, (worst, errs[worst])
    sym = testing.symmetry_errors(case.layer, params, graph, inputs, case.input_kinds,
                                  case.output_kinds, case.group, rng=rng)
    assert max(sym.values()) <= case.sym_atol, sym
    be = testing.backend_errors(case.layer, params, graph, inputs,
                                backends=[b for b in backends.available() if b != "cuda"])
    assert all(v <= 1e-13 for v in be.values()), be


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_case_deterministic(case):
    """Same inputs, same bits: two runs of make_inputs + init + forward agree exactly."""
    outs = []
    for _ in range(2):
        rng = _rng(case, "det")
        graph, inputs = case.make_inputs(rng, 6)
        params = case.layer.init(rng)
        out = _forward(case, params, graph, inputs)[0]
        outs.append(out if isinstance(out, tuple) else (out,))
    assert len(outs[0]) == len(outs[1])
    for a, b in zip(*outs):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
