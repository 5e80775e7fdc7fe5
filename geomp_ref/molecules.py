"""Real small molecules shipped with the package (G2 set geometries, Angstrom).

Source: ``data/g2_small_molecules.xyz`` — geometries of the G2 molecule set as distributed with
ASE 3.29 (``ase.collections.g2``); see ``data/README.md``. Used by ``geomp-ref verify`` and tests.
"""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple

import numpy as np

__all__ = ["ALIASES", "Molecule", "SYMBOLS", "atomic_number", "load", "names"]

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


#: Common names and other spellings of each shipped molecule (its ``name`` is the G2 label).
ALIASES = {
    "H2O": ("water",),
    "CH4": ("methane",),
    "NH3": ("ammonia",),
    "C6H6": ("benzene",),
    "CH3CH2OH": ("ethanol", "C2H5OH"),
    "CH3COOH": ("acetic acid", "acetic_acid"),
    "HCOOH": ("formic acid", "formic_acid"),
    "CH3CONH2": ("acetamide",),
    "isobutane": ("2-methylpropane", "(CH3)3CH", "C4H10"),
    "C4H4NH": ("pyrrole",),
    "CH3CH2OCH3": ("methoxyethane", "ethyl methyl ether"),
    "CH3SH": ("methanethiol",),
}


def _read() -> list[Molecule]:
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


def names() -> dict[str, tuple[str, ...]]:
    """``{name: (other accepted names, ...)}`` for every shipped molecule, in file order."""
    return {m.name: ALIASES.get(m.name, ()) for m in _read()}


def load(name: str | None = None):
    """The shipped molecules: all of them (a list, in file order), or the one called ``name``.

    ``name`` is matched case-insensitively against each molecule's G2 label (a formula such as
    ``"H2O"`` or ``"CH3CH2OH"``) and its common names (``"water"``, ``"ethanol"``; see
    :data:`ALIASES`). Every call returns fresh arrays.

    Raises
    ------
    TypeError
        ``name`` is not a str.
    ValueError
        No shipped molecule has that name; the message lists the available ones.
    """
    mols = _read()
    if name is None:
        return mols
    if not isinstance(name, str):
        raise TypeError(f"name must be a molecule name (str) such as 'ethanol'; got {name!r}")
    key = name.strip().casefold()
    for m in mols:
        if key in {m.name.casefold(), *(a.casefold() for a in ALIASES.get(m.name, ()))}:
            return m
    listing = ", ".join(f"{m.name} ({'/'.join(ALIASES.get(m.name, ()))})" for m in mols)
    raise ValueError(f"name {name!r} is not a shipped molecule; available: {listing}")
