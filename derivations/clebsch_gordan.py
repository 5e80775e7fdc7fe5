r"""Exact real Clebsch-Gordan (coupling) tensors in e3nn's basis -> geomp_ref/o3/tables/.

The lesson
----------
Two irreps of SO(3) of degrees l1 and l2 couple to degree l3 through the Clebsch-Gordan
coefficients <l1 m1 l2 m2 | l3 m3> (Condon-Shortley phase). Those live in the *complex* basis
|l m>. Equivariant networks use *real* features, so e3nn moves the coefficients to a real basis
with the unitary Q_l (row = complex m, column = real index):

    C[a, b, c] = Re sum_{m1 m2 m3} Q1[m1, a] Q2[m2, b] conj(Q3[m3, c]) <l1 m1 l2 m2 | l3 m3>
                 / sqrt(2 l3 + 1).

Why is the result real? For m > 0 the entries of Q are (1, -i, (-1)^m, i(-1)^m)/sqrt(2) times a
global (-i)^l, so every entry is i^k / sqrt(2) (or 1 at m = 0). The product of three such entries
is i^(k1 + k2 - k3 + 3(l1 + l2 - l3)) / sqrt(2)^s, where s counts the non-zero real orders. The
(-i)^l phase is exactly what makes the surviving sums real for odd l1 + l2 + l3 too: without it,
odd-sum tensors would be purely imaginary. So each real entry is

    C[a, b, c] = 2^(-s/2) (2 l3 + 1)^(-1/2) * sum over sign choices m_i = +-mu_i with
                 m3 = m1 + m2 and a real phase (+1 or -1) of  +-<l1 m1 l2 m2 | l3 m3>.

Each Clebsch-Gordan coefficient is rational * sqrt(rational) (SymPy returns it in the canonical
form c * sqrt(squarefree)). A sum of such terms is zero only if the terms with equal square-free
radicands cancel (square roots of distinct square-free integers are linearly independent over Q),
and SymPy collects equal radicands automatically: exact zeros come out as exact zeros, never as
1e-17. Non-zero entries are evaluated to 40 significant digits and rounded *once* to float64, so
every stored number is the correctly rounded exact value.

Why divide by sqrt(2 l3 + 1)? Unitarity of CG gives sum_{m1 m2} |<..|l3 m3>|^2 = 1 for each m3,
so the squared Frobenius norm of the real tensor is 2 l3 + 1 before the division: e3nn
normalises every coupling tensor to norm 1.

Independent checks done here (``--check``):

* the stored table's content hash; the stored floats equal a fresh exact regeneration bit for bit
  (a seeded random subset of triples by default, all with ``--full``);
* a second exact route through the 3j symbols,
  C = (-1)^(l1+l2+l3) Re sum Q1 Q2 Q3 (l1 l2 l3; m1 m2 m3)  (no conj, no 1/sqrt(2l3+1)),
  gives the same correctly rounded floats;
* for even l1 + l2 + l3, C = +G / |G| with G[a,b,c] = real_gaunt (the integral of three real
  spherical harmonics), exactly, on a few small triples.

Run: ``python3 derivations/clebsch_gordan.py --check [--full]`` or ``--write``.
The runtime path for l > 8 (``geomp_ref.o3.wigner._on_demand``) calls the same
``exact_coupling`` used here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geomp_ref.o3 import wigner

LMAX = 8
SUBSET_SEED = 20261126
SUBSET_SIZE = 60


def all_triples(lmax: int = LMAX) -> list[tuple[int, int, int]]:
    """Every (l1, l2, l3) with all l <= lmax and the triangle condition, lexicographic."""
    return [
        (l1, l2, l3)
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), min(lmax, l1 + l2) + 1)
    ]


def derive_table(triples) -> dict:
    """Exact tensors for ``triples``, packed as the table arrays (sparse, per-triple offsets)."""
    flats, vals, offsets = [], [], [0]
    for t in triples:
        f, v = wigner.exact_coupling_float(*t)
        flats.append(f)
        vals.append(v)
        offsets.append(offsets[-1] + len(v))
    return {
        "triples": np.array(triples, dtype=np.int16).reshape(-1, 3),
        "offsets": np.array(offsets, dtype=np.int64),
        "flat_index": np.concatenate(flats).astype(np.int32),
        "values": np.concatenate(vals).astype(np.float64),
    }


def derive_via_3j(l1: int, l2: int, l3: int) -> np.ndarray:
    """Second exact route: (-1)^(l1+l2+l3) Re sum Q1 Q2 Q3 (3j), with SymPy's wigner_3j."""
    import sympy
    from sympy.physics.wigner import wigner_3j as w3j

    def q_entry(l, m, mu):
        k = wigner._q_phase(m, mu)
        if k is None:
            return 0
        return sympy.I ** (k + 3 * l) / (sympy.sqrt(2) if mu else 1)

    out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for mu1 in range(-l1, l1 + 1):
        for mu2 in range(-l2, l2 + 1):
            for mu3 in range(-l3, l3 + 1):
                total = 0
                for m1 in {mu1, -mu1}:
                    for m2 in {mu2, -mu2}:
                        for m3 in {mu3, -mu3}:
                            if m1 + m2 + m3 != 0:
                                continue
                            q = q_entry(l1, m1, mu1) * q_entry(l2, m2, mu2) * q_entry(l3, m3, mu3)
                            total += q * w3j(l1, l2, l3, m1, m2, m3)
                val = sympy.re(sympy.expand(total)) * (-1) ** (l1 + l2 + l3)
                if val != 0:
                    out[mu1 + l1, mu2 + l2, mu3 + l3] = float(sympy.N(val, 40))
    return out


def check_gaunt(l1: int, l2: int, l3: int, C: np.ndarray) -> bool:
    """Even sums: C = +G/|G| with G the real Gaunt coefficients (exact SymPy)."""
    import sympy
    from sympy.physics.wigner import real_gaunt

    G = np.zeros_like(C)
    for a in range(2 * l1 + 1):
        for b in range(2 * l2 + 1):
            for c in range(2 * l3 + 1):
                G[a, b, c] = float(sympy.N(real_gaunt(l1, l2, l3, a - l1, b - l2, c - l3), 40))
    return bool(np.allclose(C, G / np.linalg.norm(G), rtol=0, atol=4e-16))


def check(full: bool = False) -> bool:
    """Compare the stored table with a fresh exact derivation; True when all agree."""
    import sympy

    ok = True
    stored = wigner._load_table()
    print(
        f"table {wigner.TABLE_PATH.name}: lmax={stored['lmax']}, SymPy {stored['sympy_version']}"
        f" (running {sympy.__version__}), content hash verified on load"
    )
    triples = all_triples()
    if sorted(stored["entries"]) != sorted(triples):
        print("MISMATCH: the table's triples differ from all_triples(LMAX)")
        return False
    if full:
        chosen = triples
    else:
        rng = np.random.default_rng(SUBSET_SEED)
        small = [t for t in triples if max(t) <= 2]
        big = [t for t in triples if max(t) > 2]
        pick = rng.choice(len(big), size=SUBSET_SIZE, replace=False)
        chosen = small + [big[i] for i in sorted(pick)] + [(8, 8, 8), (8, 8, 1), (7, 8, 6)]
    fresh = derive_table(chosen)
    for i, t in enumerate(chosen):
        f = fresh["flat_index"][fresh["offsets"][i] : fresh["offsets"][i + 1]]
        v = fresh["values"][fresh["offsets"][i] : fresh["offsets"][i + 1]]
        sf, sv = stored["entries"][t]
        if not (np.array_equal(f, sf) and np.array_equal(v, sv)):
            print(f"MISMATCH {t}: stored table differs from the exact derivation")
            ok = False
    print(f"exact regeneration: {len(chosen)} triples compared bit for bit")
    for t in [(1, 1, 1), (1, 1, 2), (1, 2, 2), (2, 2, 3), (3, 2, 4), (2, 3, 3)]:
        if not np.array_equal(derive_via_3j(*t), wigner.wigner_3j(*t)):
            print(f"MISMATCH {t}: 3j-symbol route disagrees")
            ok = False
    print("3j-symbol route: 6 triples equal bit for bit")
    for t in [(1, 1, 2), (2, 2, 2), (1, 2, 3)]:
        if not check_gaunt(*t, wigner.wigner_3j(*t)):
            print(f"MISMATCH {t}: not +G/|G| (real Gaunt)")
            ok = False
    print("real-Gaunt route: 3 even triples agree (sign and values)")
    return ok


def write() -> None:
    """Regenerate the whole table exactly and write it with its metadata."""
    import sympy

    t0 = time.perf_counter()
    arrays = derive_table(all_triples())
    digest = wigner.content_hash(**arrays)
    wigner.TABLE_PATH.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        wigner.TABLE_PATH,
        **arrays,
        lmax=np.int64(LMAX),
        sympy_version=np.str_(sympy.__version__),
        content_hash=np.str_(digest),
    )
    print(
        f"wrote {wigner.TABLE_PATH} ({len(arrays['triples'])} triples, "
        f"{len(arrays['values'])} non-zeros, sha256 {digest[:16]}...) "
        f"in {time.perf_counter() - t0:.1f} s"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare with the table (default)")
    mode.add_argument("--write", action="store_true", help="regenerate and write the table")
    parser.add_argument("--full", action="store_true", help="with --check: every triple")
    args = parser.parse_args(argv)
    if args.write:
        write()
        return 0
    t0 = time.perf_counter()
    ok = check(full=args.full)
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
