"""The ``geomp-ref`` command: ``verify`` (here), ``golden`` and ``nbody`` (loaded on demand).

``geomp-ref verify`` runs, for each case of :func:`geomp_ref.cases.cases` (optionally filtered),
on random problems from the case's ``make_inputs`` and, where the case can use them, on real
molecules shipped with the package:

* VJP: :func:`geomp_ref.testing.check_vjp` (every parameter and differentiable input, central
  differences in float64): the largest relative error, against the case's ``vjp_rtol``;
* symmetry: :func:`geomp_ref.testing.symmetry_errors` for the case's group (rotations with
  reflections, translations, node relabelling, edge reordering): the largest error, against the
  case's ``sym_atol``;
* backends: :func:`geomp_ref.testing.backend_errors` for every available backend: the largest
  relative difference to NumPy (``inf`` if two runs differ in any bit), against 1e-13.

The table shows each measured value next to its tolerance and ends with a legend of the columns
and of every group it names. Exit status 0 only if every case passes; 2 for a usage error.
``--json`` prints machine-readable results (tolerances included).

Molecules are taken in the fixed order :data:`MOLECULE_ORDER` (small and polar first, then the
aromatic ring, then the rest of the shipped set in file order): ``--molecules K`` uses the first K.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import zlib

import numpy as np

BACKEND_RTOL = 1e-13

#: ``--molecules K`` uses the first K of these (the names of ``geomp_ref.molecules.load()``).
MOLECULE_ORDER = ("H2O", "CH3CH2OH", "C6H6", "CH4", "NH3", "CH3COOH", "HCOOH", "CH3CONH2",
                  "isobutane", "C4H4NH", "CH3CH2OCH3", "CH3SH")

#: What the symmetry check applies for each group name a case can declare.
GROUP_LEGEND = {
    "E3": "E(3): rotations and reflections (orthogonal Q, det +-1) and translations in 3D",
    "SE3": "SE(3): proper rotations (det +1) and translations in 3D; reflections not claimed",
    "T3": "T(3): translations in 3D only; rotations are not a symmetry of this case",
    "O3": "O(3): rotations and reflections about the origin; no translations",
    "SO3": "SO(3): proper rotations about the origin",
    "E2": "E(2): rotations and reflections and translations in the plane",
    "SE2": "SE(2): proper rotations and translations in the plane",
    "T2": "T(2): translations in the plane only",
    "O2": "O(2): rotations and reflections about the origin in the plane",
    "SO2": "SO(2): proper rotations about the origin in the plane",
    "C<n>xT2": "cyclic group C_n (rotations by multiples of 2 pi / n) and translations in the "
               "plane: exact for a grid of n orientations",
    "T12xT3": "the 12 rotations of the tetrahedral group and translations: exact for its grid",
    "O24xT3": "the 24 rotations of the octahedral (cube) group and translations: exact for its "
              "grid",
    "I60xT3": "the 60 rotations of the icosahedral group and translations: exact for its grid",
    "none": "no geometric transformation; only node relabelling and edge reordering",
}

COLUMN_LEGEND = (
    "vjp: largest relative error of the hand-written backward against 4th-order central finite "
    "differences (every parameter and differentiable input), then the case's tolerance",
    "symmetry: largest relative output error under random elements of the group, node "
    "relabelling inside each graph and edge reordering, then the case's tolerance",
    f"backends: per backend, largest relative difference of outputs and gradients to NumPy "
    f"(tolerance {BACKEND_RTOL:.0e}; inf = two runs differ, or another structure than NumPy); "
    "'numpy only' for blocks without a backend field",
    "time: seconds for all problems of the case; ok: PASS when every value is within tolerance",
)

_COMMANDS = {
    "verify": (None, "check every registered case: VJPs, symmetries, backends"),
    "golden": ("geomp_ref.golden", "write or check golden reference outputs"),
    "nbody": ("geomp_ref.nbody.cli", "generate the charged N-body data set and train models on it"),
}


# --- the battery -----------------------------------------------------------------------------


def _problems(case, rng, sizes, molecules):
    for n in sizes:
        yield f"random(N={n})", case.make_inputs(rng, n)
    hook = case.extra.get("from_molecule")
    if hook is not None:
        for mol in molecules:
            yield f"molecule({mol.name})", hook(rng, mol)


def run_case(case, *, sizes=(5, 9), molecules=(), backends=None, symmetry_trials: int = 2) -> dict:
    """The battery on one case; returns a dict of measured values, tolerances and the verdict."""
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
                                          case.output_kinds, case.group, rng=rng,
                                          trials=symmetry_trials)
            res["symmetry"] = max([res["symmetry"], *sym.values()])
            # --backends numpy: the oracle alone, nothing to compare it with
            compare = backends is None or any(b != "numpy" for b in backends)
            be = (testing.backend_errors(case.layer, params, graph, inputs, backends=backends)
                  if compare else {})
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


# --- the table -------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1e}"


def _tol(x: float) -> str:
    return f"{x:.0e}"


def _legend_key(group: str) -> str:
    import re

    return "C<n>xT2" if re.fullmatch(r"C\d+xT2", group) else group


def _table(results) -> str:
    w = max([len("case")] + [len(r["case"]) for r in results])
    gw = max([len("group")] + [len(r["group"]) for r in results])
    head = (f"{'case':<{w}}  {'group':<{gw}}  {'vjp':>7} {'(tol)':<7}  {'symmetry':>8} "
            f"{'(tol)':<7}  {'backends (tol ' + _tol(BACKEND_RTOL) + ')':<30} {'time':>7}  ok")
    lines = [head, "-" * len(head)]
    for r in results:
        tol = r["tolerances"]
        be = ", ".join(f"{k} {_fmt(v)}" for k, v in r["backends"].items()) or "numpy only"
        ok = "PASS" if r["passed"] else "FAIL"
        lines.append(
            f"{r['case']:<{w}}  {r['group']:<{gw}}  {_fmt(r['vjp']):>7} "
            f"{'(' + _tol(tol['vjp']) + ')':<7}  {_fmt(r['symmetry']):>8} "
            f"{'(' + _tol(tol['symmetry']) + ')':<7}  {be:<30} {r['time_s']:6.2f}s  {ok}")
        if r["error"]:
            lines.append(f"    error: {r['error']}")
    return "\n".join(lines)


def legend(groups) -> str:
    """The legend printed under the table: the columns, then each group in ``groups``."""
    import textwrap

    def item(text, indent=4):
        return textwrap.fill(text, 100, initial_indent="  ", subsequent_indent=" " * indent)

    lines = ["Columns:"] + [item(c) for c in COLUMN_LEGEND]
    keys = []
    for g in groups:
        k = _legend_key(g)
        if k not in keys:
            keys.append(k)
    lines.append("Groups (node relabelling and edge reordering are checked for every group):")
    for k in keys:
        text = GROUP_LEGEND.get(k, "a group registered with geomp_ref.testing.register_group")
        lines.append(item(f"{k:<8} {text}", indent=11))
    return "\n".join(lines)


# --- argument checks -------------------------------------------------------------------------


class _UsageError(Exception):
    """A bad option: one line on stderr, exit status 2, no traceback."""


def _molecule_count(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None
    if not 0 <= k <= len(MOLECULE_ORDER):
        raise argparse.ArgumentTypeError(
            f"must be between 0 and {len(MOLECULE_ORDER)} (the shipped molecules); got {k}")
    return k


def _parse_backends(text):
    from . import backends as _backends

    if text is None:
        return None
    names = [b.strip() for b in text.split(",") if b.strip()]
    if not names:
        raise _UsageError(f"--backends needs at least one of {', '.join(_backends.NAMES)}")
    for b in names:
        if b not in _backends.NAMES:
            raise _UsageError(
                f"--backends: unknown backend {b!r}; choose from {', '.join(_backends.NAMES)}")
        try:
            _backends.get(b)
        except RuntimeError as exc:
            fix = ("install the cuda extra (pip install geomp-ref[cuda]) on a machine with an "
                   "NVIDIA GPU, or set NUMBA_ENABLE_CUDASIM=1" if b == "cuda" else
                   "reinstall geomp-ref")
            cause = str(exc).split(" (")[0]
            raise _UsageError(
                f"--backends: {cause}; drop {b!r} from --backends (available here: "
                f"{', '.join(_backends.available())}) or {fix}") from None
    return names


def _verify_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="geomp-ref verify",
        description="Run the VJP, symmetry and backend battery of every registered case and "
                    "print a table with tolerances and a legend.",
        epilog="--molecules K uses the first K of: " + ", ".join(MOLECULE_ORDER) + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--case", action="append", default=None, metavar="TEXT",
                    help="only cases whose name contains TEXT (repeatable; all cases when absent)")
    ap.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    ap.add_argument("--backends", default=None, metavar="LIST",
                    help="comma-separated backends to compare with NumPy (numpy, numba, cuda); "
                         "absent: every backend available here")
    ap.add_argument("--molecules", type=_molecule_count, default=3, metavar="K",
                    help=f"how many shipped molecules (0..{len(MOLECULE_ORDER)}) each case that "
                         "supports them also runs on, in the fixed order below")
    ap.add_argument("--list", action="store_true", help="list the registered cases and exit")
    return ap


def verify(argv=None) -> int:
    """``geomp-ref verify``; returns the exit status."""
    from . import backends as _backends
    from . import cases as _cases
    from . import molecules as _molecules

    try:
        args = _verify_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0)
    try:
        backends = _parse_backends(args.backends)
    except _UsageError as exc:
        print(f"geomp-ref verify: error: {exc}", file=sys.stderr)
        return 2
    broken: list = []
    all_cases = _cases.cases(errors=broken)
    for module, exc in broken:
        print(f"geomp-ref verify: error: {module} failed to register its cases: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
    if args.list:
        for c in all_cases:
            print(f"{c.name:<45} {c.group:<8} in={','.join(c.input_kinds)} "
                  f"out={','.join(c.output_kinds)}")
        return 1 if broken else 0
    wanted = args.case or []
    selected = [c for c in all_cases if not wanted or any(s in c.name for s in wanted)]
    if not selected and not broken:
        print(f"geomp-ref verify: error: --case {wanted} matches no case; see "
              "`geomp-ref verify --list`", file=sys.stderr)
        return 2
    picks = [_molecules.load(name) for name in MOLECULE_ORDER[: args.molecules]]
    print(f"geomp-ref verify: {len(selected)} cases; backends: "
          f"{backends or _backends.available()}; molecules: {[m.name for m in picks]}",
          file=sys.stderr)
    results = []
    for k, case in enumerate(selected, 1):
        r = run_case(case, molecules=picks, backends=backends)
        results.append(r)
        print(f"[{k}/{len(selected)}] {case.name}: {'PASS' if r['passed'] else 'FAIL'} "
              f"({r['time_s']:.2f}s)", file=sys.stderr, flush=True)
    failed = [r["case"] for r in results if not r["passed"]]
    if not wanted:  # a broken family may hold any case; with --case, the named ones all ran
        failed += [m for m, _ in broken]
    if args.json:
        print(json.dumps({"results": results, "failed": failed,
                          "broken_families": [{"module": m, "error": f"{type(e).__name__}: {e}"}
                                              for m, e in broken]}, indent=1, default=float))
    else:
        print(_table(results))
        print(f"\n{sum(r['passed'] for r in results)} passed, {len(failed)} failed\n")
        print(legend([r["group"] for r in results]))
    return 1 if failed else 0


# --- dispatch --------------------------------------------------------------------------------


def _top_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(
        prog="geomp-ref",
        description="Float64 oracle for geometric message passing.",
        epilog="Run `geomp-ref COMMAND --help` for the options of a command.")
    ap.add_argument("--version", action="version", version=f"geomp-ref {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, text) in _COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return ap


def _external(name: str, argv) -> int:
    module = _COMMANDS[name][0]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        parts = module.split(".")
        if exc.name not in {".".join(parts[:k]) for k in range(2, len(parts) + 1)}:
            raise  # a dependency of the command is missing: show the real error
        print(f"geomp-ref: error: the {name!r} command is not available in this installation "
              f"({module} is missing)", file=sys.stderr)
        return 2
    return int(mod.main(list(argv)) or 0)


def main(argv=None) -> int:
    """Entry point of ``geomp-ref``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "verify":
        return verify(argv[1:])
    if argv and argv[0] in _COMMANDS:
        return _external(argv[0], argv[1:])
    parser = _top_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    try:
        parser.parse_args(argv)  # --help, --version or an unknown command: all exit here
    except SystemExit as exc:
        return int(exc.code or 0)
    return 2  # pragma: no cover - every valid first word was dispatched above


if __name__ == "__main__":
    sys.exit(main())
