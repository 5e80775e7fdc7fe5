"""The registry battery: every registered case passes its VJP, symmetry and backend checks.

This is the same battery as ``geomp-ref verify``, on fresh random problems, so a new variant is
covered the moment it registers a case.
"""

import zlib

import numpy as np
import pytest

from geomp_ref import backends, cases, testing

ALL = cases.cases()


def _rng(case, salt=""):
    return np.random.default_rng(zlib.crc32((case.name + salt).encode()))


def test_registry_is_well_formed():
    assert len(ALL) >= 5
    names = [c.name for c in ALL]
    assert len(set(names)) == len(names)
    for c in ALL:
        assert c.name.split("/")[0] == type(c.layer).__name__ or c.name.startswith(type(c.layer).__name__), c.name
        for k in c.input_kinds + c.output_kinds:
            testing._kind_transform(k)  # every kind is known to the kit (raises otherwise)
        assert callable(c.make_inputs)
        testing._group_sampler(c.group)  # every group is known to the kit


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_case_battery(case):
    rng = _rng(case)
    graph, inputs = case.make_inputs(rng, 7)
    assert len(inputs) == len(case.input_kinds)
    params = case.layer.init(rng)
    out, _ = (case.layer.forward(params, *inputs) if graph is None
              else case.layer.forward(params, graph, *inputs))
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(case.output_kinds)
    for o in outs:
        assert o.dtype == np.float64 and np.all(np.isfinite(o))
    errs = testing.check_vjp(case.layer, params, graph, inputs, rng=rng, kinds=case.input_kinds,
                             eps=case.fd_eps)
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
        out = case.layer(params, *inputs) if graph is None else case.layer(params, graph, *inputs)
        outs.append(out if isinstance(out, tuple) else (out,))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
