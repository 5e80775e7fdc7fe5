"""Real small molecules shipped with the package (G2 set geometries, Angstrom).

Source: ``data/g2_small_molecules.xyz`` — geometries of the G2 molecule set as distributed with
ASE 3.29 (``ase.collections.g2``); see ``data/README.md``. Used by ``geomp-ref verify`` and tests.
"""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple

import numpy as np

__all__ = ["Molecule", "load", "SYMBOLS", "atomic_number"]

SYMBOLS = ("X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P",
           "S", "Cl", "Ar")


class Molecule(NamedTuple):
    name: str
    z: np.ndarray  # (N,) int64 atomic numbers
    pos: np.ndarray  # (N, 3) float64, Angstrom


def atomic_number(symbol: str) -> int:
    try:
        return SYMBOLS.index(symbol)
    except ValueError:
        raise ValueError(f"symbol must be an element up to Ar; got {symbol!r}") from None


def load() -> list[Molecule]:
    """All shipped molecules, in file order."""
    text = resources.files("geomp_ref").joinpath("data/g2_small_molecules.xyz").read_text()
    lines = text.splitlines()
    out, k = [], 0
    while k < len(lines):
        if not lines[k].strip():
            k += 1
            continue
        n = int(lines[k])
        name = lines[k + 1].split()[0]
        rows = [lines[k + 2 + a].split() for a in range(n)]
        z = np.array([atomic_number(r[0]) for r in rows], dtype=np.int64)
        pos = np.array([[float(v) for v in r[1:4]] for r in rows], dtype=np.float64)
        out.append(Molecule(name, z, pos))
        k += 2 + n
    return out
