r"""Golden test vectors: every registered case as plain ``.npz`` files any framework can read.

``geomp-ref golden --out DIR [--case TEXT ...]`` (or ``python -m geomp_ref.golden``) writes, for
each case of :func:`geomp_ref.cases.cases`, a random problem and (for cases with a
``from_molecule`` hook) a problem on a shipped molecule: graph, inputs, params, outputs, random
cotangents, the VJPs, and a symmetry record (a group element, the transformed inputs, the
expected transformed outputs). ``DIR/manifest.json`` lists the cases with their files and
SHA-256 hashes and writes out every convention in words (see :mod:`._conventions`).

Two runs write byte-identical files: the zip entries carry a fixed date (:mod:`._zip`), the
draws come from per-case seeds (:mod:`._record`) and the manifest is JSON with sorted keys.
``geomp-ref golden --check DIR`` reruns the library on the stored problems and compares.

A case that cannot be built (its layer raises) is listed under ``"failed"`` in the manifest
with the error, and the exit status is 1; the other cases are still written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from ._conventions import (
    CONVENTIONS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    KEYS,
    PROBLEMS,
    TOLERANCES,
)
from ._record import MOLECULE, RANDOM_NODES, record
from ._zip import npz_bytes, sha256, write_bytes

__all__ = ["build", "file_stem", "main", "manifest_bytes", "write"]


def file_stem(case_name: str) -> str:
    """File-name stem of a case: ``"EGNNLayer/gcl"`` -> ``"EGNNLayer__gcl"`` (other characters
    outside ``[A-Za-z0-9._-]`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_name.replace("/", "__"))


def _select(all_cases, wanted):
    if not wanted:
        return list(all_cases)
    return [c for c in all_cases if any(s in c.name for s in wanted)]


def build(selected):
    """``(files, entries, failed)``: ``{file name: bytes}``, the manifest's case entries and
    ``[{"name", "error"}]`` for cases whose layer raised."""
    from .. import molecules

    mol = molecules.load(MOLECULE)
    files, entries, failed = {}, [], []
    for case in selected:
        stem = file_stem(case.name)
        try:
            problems = [("random", None)]
            if case.extra.get("from_molecule") is not None:
                problems.append(("molecule", mol))
            infos = []
            for problem, molecule in problems:
                rec = record(case, problem, molecule)
                data = npz_bytes(rec.arrays)
                name = f"{stem}.{problem}.npz"
                if name in files:
                    raise RuntimeError(f"file name {name!r} is used by two cases")
                files[name] = data
                infos.append({**rec.info, "file": name, "sha256": sha256(data)})
        except Exception as exc:  # reported in the manifest and the exit status, never hidden
            failed.append({"name": case.name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        entries.append({
            "name": case.name,
            "file": infos[0]["file"],
            "sha256": infos[0]["sha256"],
            "group": case.group,
            "input_kinds": list(case.input_kinds),
            "output_kinds": list(case.output_kinds),
            "takes_graph": bool(case.takes_graph),
            "sym_atol": float(case.sym_atol),
            "layer": repr(case.layer),
            "problems": infos,
        })
    return files, entries, failed


def manifest_bytes(entries, failed) -> bytes:
    """``manifest.json``: sorted keys, two-space indent, a final newline."""
    import numpy as np

    from .. import __version__

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library": {"name": "geomp-ref", "version": __version__},
        "generated_with": {"numpy": np.__version__},
        "conventions": CONVENTIONS,
        "dtypes": DTYPES,
        "problems": PROBLEMS,
        "keys": KEYS,
        "tolerances": TOLERANCES,
        "random_nodes": RANDOM_NODES,
        "molecule": MOLECULE,
        "cases": entries,
        "failed": failed,
    }
    return (json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write(out_dir, wanted=None) -> dict:
    """Write the golden files of the cases whose name contains one of ``wanted`` (all when
    empty) into ``out_dir``; returns the manifest as a dict."""
    from .. import cases as _cases

    broken: list = []
    all_cases = _cases.cases(errors=broken)
    files, entries, failed = build(_select(all_cases, wanted))
    failed += [{"name": module, "error": f"{type(exc).__name__}: {exc}"}
               for module, exc in broken]
    os.makedirs(out_dir, exist_ok=True)
    for name, data in files.items():
        write_bytes(os.path.join(out_dir, name), data)
    blob = manifest_bytes(entries, failed)
    write_bytes(os.path.join(out_dir, "manifest.json"), blob)
    return json.loads(blob)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="geomp-ref golden",
        description="Write golden test vectors (inputs, params, outputs, VJPs, a symmetry "
                    "record) of every registered case as .npz files plus manifest.json, or "
                    "check stored ones against this library.")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", metavar="DIR", help="directory to write (created if needed)")
    mode.add_argument("--check", metavar="DIR",
                      help="rerun the library on the problems stored in DIR and compare")
    ap.add_argument("--case", action="append", default=None, metavar="TEXT",
                    help="only cases whose name contains TEXT (repeatable; all when absent)")
    return ap


def main(argv=None) -> int:
    """``geomp-ref golden``; returns the exit status (0 ok, 1 a case failed, 2 usage)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.check is not None:
        from ._check import check_dir

        return check_dir(args.check, args.case or [])
    from .. import cases as _cases

    if args.case and not _select(_cases.cases(errors=[]), args.case):
        print(f"geomp-ref golden: error: --case {args.case} matches no case; see "
              "`geomp-ref verify --list`", file=sys.stderr)
        return 2
    manifest = write(args.out, args.case or [])
    n_files = sum(len(c["problems"]) for c in manifest["cases"])
    print(f"geomp-ref golden: {len(manifest['cases'])} cases, {n_files} files in {args.out}",
          file=sys.stderr)
    for f in manifest["failed"]:
        print(f"geomp-ref golden: FAILED {f['name']}: {f['error']}", file=sys.stderr)
    return 1 if manifest["failed"] else 0
