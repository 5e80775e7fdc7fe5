"""``geomp-ref verify``: run every registered case's battery and print a table.

For each case of :func:`geomp_ref.cases.cases` (optionally filtered), on random problems from the
case's ``make_inputs`` and, where the case can use them, on real molecules shipped with the package:

* VJP: :func:`geomp_ref.testing.check_vjp` (every parameter and differentiable input, central
  differences in float64) — the largest relative error;
* symmetry: :func:`geomp_ref.testing.symmetry_errors` for the case's group (rotations with
  reflections, translations, node relabelling, edge reordering) — the largest error;
* backends: :func:`geomp_ref.testing.backend_errors` for every available backend — the largest
  relative difference to NumPy (``inf`` if two runs differ in any bit).

Exit status 0 only if every case passes its tolerances. ``--json`` prints machine-readable results.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib

import numpy as np

BACKEND_RTOL = 1e-13


def _problems(case, rng, sizes, molecules):
    for n in sizes:
        yield f"random(N={n})", case.make_inputs(rng, n)
    hook = case.extra.get("from_molecule")
    if hook is not None:
        for mol in molecules:
            yield f"molecule({mol.name})", hook(rng, mol)


def run_case(case, *, sizes=(5, 9), molecules=(), backends=None, symmetry_trials: int = 2) -> dict:
    from . import testing

    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    t0 = time.perf_counter()
    res = {"case": case.name, "group": case.group, "vjp": 0.0, "symmetry": 0.0, "backends": {},
           "problems": 0, "error": None}
    try:
        for _, (graph, inputs) in _problems(case, rng, sizes, molecules):
            params = case.layer.init(rng)
            errs = testing.check_vjp(case.layer, params, graph, inputs, rng=rng,
                                     kinds=case.input_kinds, eps=case.fd_eps)
            res["vjp"] = max([res["vjp"], *errs.values()])
            sym = testing.symmetry_errors(case.layer, params, graph, inputs, case.input_kinds,
                                          case.output_kinds, case.group, rng=rng, trials=symmetry_trials)
            res["symmetry"] = max([res["symmetry"], *sym.values()])
            be = testing.backend_errors(case.layer, params, graph, inputs, backends=backends)
            for k, v in be.items():
                res["backends"][k] = max(res["backends"].get(k, 0.0), v)
            res["problems"] += 1
    except Exception as exc:  # reported, never swallowed: the case fails
        res["error"] = f"{type(exc).__name__}: {exc}"
    res["time_s"] = time.perf_counter() - t0
    res["passed"] = (
        res["error"] is None
        and res["vjp"] <= case.vjp_rtol
        and res["symmetry"] <= case.sym_atol
        and all(v <= BACKEND_RTOL for v in res["backends"].values())
    )
    res["tolerances"] = {"vjp": case.vjp_rtol, "symmetry": case.sym_atol, "backends": BACKEND_RTOL}
    return res


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1e}"


def _table(results) -> str:
    w = max([len("case")] + [len(r["case"]) for r in results])
    head = f"{'case':<{w}}  {'group':<8} {'vjp rel':>8} {'sym err':>8}  {'backends (max rel. diff)':<30} {'time':>7}  ok"
    lines = [head, "-" * len(head)]
    for r in results:
        be = ", ".join(f"{k} {_fmt(v)}" for k, v in r["backends"].items()) or "numpy only"
        ok = "PASS" if r["passed"] else "FAIL"
        lines.append(f"{r['case']:<{w}}  {r['group']:<8} {_fmt(r['vjp']):>8} {_fmt(r['symmetry']):>8}  "
                     f"{be:<30} {r['time_s']:6.2f}s  {ok}")
        if r["error"]:
            lines.append(f"    error: {r['error']}")
    return "\n".join(lines)


def verify(argv=None) -> int:
    from . import backends as _backends
    from . import cases as _cases
    from . import molecules as _molecules

    ap = argparse.ArgumentParser(prog="geomp-ref verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", default=[],
                    help="only cases whose name contains this text (repeatable)")
    ap.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    ap.add_argument("--backends", default=None,
                    help="comma-separated backends to compare with NumPy (default: all available)")
    ap.add_argument("--molecules", type=int, default=3,
                    help="how many shipped molecules to use per case that supports them (default 3)")
    ap.add_argument("--list", action="store_true", help="list the registered cases and exit")
    args = ap.parse_args(argv)

    all_cases = _cases.cases()
    if args.list:
        for c in all_cases:
            print(f"{c.name:<45} {c.group:<8} in={','.join(c.input_kinds)} out={','.join(c.output_kinds)}")
        return 0
    selected = [c for c in all_cases if not args.case or any(s in c.name for s in args.case)]
    if not selected:
        print(f"no case matches {args.case}; see `geomp-ref verify --list`", file=sys.stderr)
        return 2
    backends = args.backends.split(",") if args.backends else None
    if backends:
        for b in backends:
            _backends.get(b)  # an unavailable backend is an error, never a silent skip
    mols = _molecules.load()
    picks = [m for m in mols if m.name in ("H2O", "CH3CH2OH", "C6H6")][: args.molecules]
    print(f"geomp-ref verify: {len(selected)} cases; backends: "
          f"{backends or _backends.available()}; molecules: {[m.name for m in picks]}", file=sys.stderr)
    results = []
    for k, case in enumerate(selected, 1):
        r = run_case(case, molecules=picks, backends=backends)
        results.append(r)
        print(f"[{k}/{len(selected)}] {case.name}: {'PASS' if r['passed'] else 'FAIL'} "
              f"({r['time_s']:.2f}s)", file=sys.stderr, flush=True)
    failed = [r["case"] for r in results if not r["passed"]]
    if args.json:
        print(json.dumps({"results": results, "failed": failed}, indent=1, default=float))
    else:
        print(_table(results))
        print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: geomp-ref verify [--case TEXT] [--json] [--backends LIST] [--list]\n\n"
              "Runs the VJP, symmetry and backend battery of every registered case.")
        return 0 if argv else 2
    if argv[0] == "verify":
        return verify(argv[1:])
    print(f"geomp-ref: unknown command {argv[0]!r}; try `geomp-ref verify`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
