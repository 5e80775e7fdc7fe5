r"""Irreducible representations of O(3) and direct sums of them, with e3nn's string grammar.

An irrep of :math:`O(3) = SO(3) \times \{I, -I\}` is labelled by its degree :math:`l \ge 0`
(dimension :math:`2l + 1`) and its parity :math:`p = \pm 1` (the factor it picks up under the
inversion :math:`-I`). A rotation-reflection :math:`Q` with :math:`d = \det Q = \pm 1` acts as

.. math::

    D^{(l, p)}(Q) = p^{(1 - d)/2} \, D^l(d\,Q),

where :math:`D^l` is the real Wigner matrix of the rotation :math:`dQ` (see ``wigner.py``).

An :class:`Irreps` is an *ordered* list of blocks ``(mul, ir)``. The feature vector of an
``Irreps`` is the concatenation of its blocks in the order written, each block laid out
multiplicity-major: flat index ``u * (2l + 1) + (m + l)`` for copy ``u`` and order ``m``
(the layout of e3nn >= 0.5, so e3nn feature arrays copy across unchanged).

String grammar (as e3nn): ``"16x0e + 8x1o"``, ``"1e"``, ``"0o + 2x2e"``, ``""`` (empty); the
parity letter is ``e`` (+1), ``o`` (-1) or ``y`` (:math:`(-1)^l`, the parity of spherical
harmonics of a vector). ``sort()`` orders blocks by ``(l, p)``, so odd comes before even at equal
``l``; ``simplify()`` merges adjacent equal irreps and drops zero multiplicities, never reorders.

References
----------
M. Geiger, T. Smidt, "e3nn: Euclidean neural networks", arXiv:2207.09453 (2022), sec. 2-3.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

__all__ = ["Irrep", "Irreps", "MulIr"]

_IRREP_RE = re.compile(r"^\s*(\d+)\s*([eoy])\s*$")
_MULIR_RE = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+)\s*([eoy])\s*$")


def _parity_from_letter(letter: str, l: int) -> int:
    return {"e": 1, "o": -1}.get(letter, (-1) ** l)


class Irrep(tuple):
    r"""One irreducible representation ``(l, p)`` of O(3).

    Parameters
    ----------
    l : int or str or Irrep or tuple
        The degree (then ``p`` is required), a string such as ``"1o"``, ``"2e"``, ``"3y"``,
        an existing :class:`Irrep`, or a pair ``(l, p)``.
    p : {1, -1}, optional
        The parity, when ``l`` is an int.

    Raises
    ------
    ValueError
        If the string is malformed, ``l < 0`` or ``p`` is not +-1.

    Notes
    -----
    Irreps compare as the tuples ``(l, p)``: ``0o < 0e < 1o < 1e < ...``. ``ir1 * ir2`` iterates
    over the irreps in the tensor product (:math:`|l_1 - l_2| \le l \le l_1 + l_2`,
    :math:`p = p_1 p_2`). ``n * ir`` is the :class:`Irreps` ``"nx<ir>"``.

    Examples
    --------
    >>> Irrep("1o"), Irrep(2, 1), Irrep("1o").dim
    (1o, 2e, 3)
    >>> list(Irrep("1o") * Irrep("1o"))
    [0e, 1e, 2e]
    """

    def __new__(cls, l, p=None):
        if isinstance(l, Irrep) and p is None:
            return l
        if isinstance(l, str) and p is None:
            m = _IRREP_RE.match(l)
            if m is None:
                raise ValueError(
                    f"Irrep(l={l!r}): invalid irrep string; expected '<l><parity>' such as "
                    "'0e', '1o' or '2y' (parity letter e, o or y)"
                )
            deg = int(m.group(1))
            return super().__new__(cls, (deg, _parity_from_letter(m.group(2), deg)))
        if isinstance(l, tuple) and p is None:
            if len(l) != 2:
                raise ValueError(f"Irrep(l={l!r}): a tuple must be (l, p)")
            l, p = l
        if isinstance(l, (bool, np.bool_)) or not isinstance(l, (int, np.integer)):
            raise TypeError(f"Irrep(l={l!r}): l must be an int >= 0 or a string such as '1o'")
        if int(l) < 0:
            raise ValueError(f"Irrep(l={l!r}): l must be >= 0")
        if p is None or isinstance(p, bool) or p not in (1, -1):
            raise ValueError(f"Irrep(p={p!r}): parity p must be 1 (even) or -1 (odd)")
        return super().__new__(cls, (int(l), int(p)))

    def __getnewargs__(self):
        return (self.l, self.p)

    @property
    def l(self) -> int:  # noqa: E743  (e3nn's name for the degree)
        """Degree ``l``."""
        return self[0]

    @property
    def p(self) -> int:
        """Parity ``p`` (+1 even, -1 odd)."""
        return self[1]

    @property
    def dim(self) -> int:
        """Dimension ``2l + 1``."""
        return 2 * self[0] + 1

    def is_scalar(self) -> bool:
        """True for ``0e`` (invariant under O(3))."""
        return self[0] == 0 and self[1] == 1

    def __repr__(self) -> str:
        return f"{self[0]}{'e' if self[1] == 1 else 'o'}"

    __str__ = __repr__

    @classmethod
    def iterator(cls, lmax: int | None = None) -> Iterator[Irrep]:
        """Iterate ``0e, 0o, 1o, 1e, 2e, 2o, ...`` (the spherical-harmonic parity first)."""
        l = 0
        while lmax is None or l <= lmax:
            yield cls(l, (-1) ** l)
            yield cls(l, -((-1) ** l))
            l += 1

    def __mul__(self, other):
        if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
            return Irreps([(int(other), self)])
        other = Irrep(other)
        return self._product(other)

    def _product(self, other: Irrep) -> Iterator[Irrep]:
        p = self.p * other.p
        for l in range(abs(self.l - other.l), self.l + other.l + 1):
            yield Irrep(l, p)

    def __rmul__(self, other):
        if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
            return Irreps([(int(other), self)])
        return NotImplemented

    def __add__(self, other):
        return Irreps(self) + Irreps(other)

    def __radd__(self, other):
        return Irreps(other) + Irreps(self)

    def D_from_angles(self, alpha, beta, gamma, k=0) -> np.ndarray:
        r"""Matrix :math:`p^k D^l(\alpha, \beta, \gamma)`, shape ``(..., 2l+1, 2l+1)``.

        ``k`` counts inversions (0 or 1, broadcastable with the angles).
        """
        from .wigner import _irrep_D_from_angles

        return _irrep_D_from_angles(self.l, self.p, alpha, beta, gamma, k)

    def D_from_matrix(self, R) -> np.ndarray:
        r"""Representation matrix of an orthogonal ``R`` (det +-1), shape ``(..., 2l+1, 2l+1)``.

        Features transform as ``x -> x @ D.T``. ``D^{1o}(R) = R`` for every orthogonal ``R``.

        Raises
        ------
        ValueError
            If ``R`` is not orthogonal (``|R^T R - I| > 1e-9``) or has the wrong shape.
        """
        from .wigner import _irrep_D_from_matrix

        return _irrep_D_from_matrix(self.l, self.p, R)


class MulIr(NamedTuple):
    """One block of an :class:`Irreps`: ``mul`` copies of the irrep ``ir``."""

    mul: int
    ir: Irrep

    @property
    def dim(self) -> int:
        """``mul * (2l + 1)``."""
        return self.mul * self.ir.dim

    def __repr__(self) -> str:
        return f"{self.mul}x{self.ir}"

    __str__ = __repr__


class _Sorted(NamedTuple):
    irreps: Irreps
    p: tuple
    inv: tuple


def _parse_irreps(text: str) -> list[MulIr]:
    text = text.strip()
    if text == "":
        return []
    out = []
    for term in text.split("+"):
        m = _MULIR_RE.match(term)
        if m is None:
            raise ValueError(
                f"Irreps(irreps={text!r}): cannot parse {term.strip()!r}; expected terms like "
                "'16x0e', '1o' or '2x2y' joined by '+'"
            )
        mul = 1 if m.group(1) is None else int(m.group(1))
        deg = int(m.group(2))
        out.append(MulIr(mul, Irrep(deg, _parity_from_letter(m.group(3), deg))))
    return out


def _as_mulir(item) -> MulIr:
    if isinstance(item, MulIr):
        return item
    if isinstance(item, Irrep):
        return MulIr(1, item)
    if isinstance(item, str):
        parsed = _parse_irreps(item)
        if len(parsed) != 1:
            raise ValueError(f"Irreps(irreps=[... {item!r} ...]): each entry must be one block")
        return parsed[0]
    if isinstance(item, tuple) and len(item) == 2:
        mul, ir = item
        if isinstance(mul, (bool, np.bool_)) or not isinstance(mul, (int, np.integer)):
            raise TypeError(f"Irreps(irreps=[... {item!r} ...]): multiplicity must be an int")
        if int(mul) < 0:
            raise ValueError(f"Irreps(irreps=[... {item!r} ...]): multiplicity must be >= 0")
        return MulIr(int(mul), Irrep(ir))
    raise TypeError(
        f"Irreps(irreps=[... {item!r} ...]): entries must be (mul, ir) pairs, Irrep or strings"
    )


class Irreps(tuple):
    r"""Direct sum of irreps: an ordered tuple of :class:`MulIr` blocks ``(mul, ir)``.

    Parameters
    ----------
    irreps : str or Irrep or Irreps or sequence, optional
        ``"16x0e + 8x1o"``, an :class:`Irrep`, another :class:`Irreps`, or a sequence of
        ``(mul, ir)`` pairs / :class:`Irrep` / strings. ``None`` or ``""`` is the empty sum.

    Raises
    ------
    ValueError
        On a malformed string, negative multiplicity, bad degree or parity (the message names
        ``irreps``).

    Notes
    -----
    Iteration yields ``(mul, ir)`` pairs; ``irreps[i]`` is a :class:`MulIr`, a slice is an
    ``Irreps``. ``+`` concatenates, ``n * irreps`` repeats the whole list. Equality and hashing
    are those of the tuple of blocks, so ``"0e+0e" != "2x0e"`` until simplified (as in e3nn).

    Examples
    --------
    >>> x = Irreps("2x0e + 1x1o")
    >>> x.dim, x.num_irreps, x.ls, x.slices()
    (5, 3, [0, 0, 1], [slice(0, 2, None), slice(2, 5, None)])
    >>> Irreps("1o + 0e + 1o").sort().irreps.simplify()
    1x0e+2x1o
    """

    def __new__(cls, irreps=None):
        if isinstance(irreps, Irreps):
            return irreps
        if irreps is None:
            blocks = []
        elif isinstance(irreps, str):
            blocks = _parse_irreps(irreps)
        elif isinstance(irreps, Irrep):
            blocks = [MulIr(1, irreps)]
        elif isinstance(irreps, MulIr):
            blocks = [irreps]
        else:
            try:
                items = list(irreps)
            except TypeError:
                raise TypeError(
                    f"Irreps(irreps={irreps!r}): expected a string like '2x0e+1x1o', an Irrep "
                    "or a list of (mul, ir) pairs"
                ) from None
            blocks = [_as_mulir(item) for item in items]
        return super().__new__(cls, blocks)

    def __getnewargs__(self):
        return (list(self),)

    # -- sizes --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Length of the feature vector, ``sum(mul * (2l + 1))``."""
        return sum(mul * ir.dim for mul, ir in self)

    @property
    def num_irreps(self) -> int:
        """Number of irrep copies, ``sum(mul)``."""
        return sum(mul for mul, _ in self)

    @property
    def ls(self) -> list[int]:
        """Degree of every copy, in layout order (each ``l`` repeated ``mul`` times)."""
        return [ir.l for mul, ir in self for _ in range(mul)]

    @property
    def lmax(self) -> int:
        """Largest degree; raises ``ValueError`` for an empty ``Irreps``."""
        if len(self) == 0:
            raise ValueError("Irreps.lmax: the irreps is empty, it has no maximum degree")
        return max(ir.l for _, ir in self)

    def slices(self) -> list[slice]:
        """One ``slice`` of the feature vector per block."""
        out, start = [], 0
        for mul, ir in self:
            out.append(slice(start, start + mul * ir.dim))
            start += mul * ir.dim
        return out

    def count(self, ir) -> int:
        """Total multiplicity of ``ir`` (an :class:`Irrep` or string such as ``"1o"``)."""
        ir = Irrep(ir)
        return sum(mul for mul, irr in self if irr == ir)

    def __contains__(self, ir) -> bool:
        ir = Irrep(ir)
        return any(irr == ir for _, irr in self)

    def is_scalar(self) -> bool:
        """True when every block is ``0e``."""
        return all(ir.is_scalar() for _, ir in self)

    # -- algebra ------------------------------------------------------------------------------
    def __getitem__(self, i):
        if isinstance(i, slice):
            return Irreps(tuple.__getitem__(self, i))
        return tuple.__getitem__(self, i)

    def __add__(self, other):
        return Irreps(list(self) + list(Irreps(other)))

    def __radd__(self, other):
        return Irreps(other) + self

    def __mul__(self, other):
        if isinstance(other, Irreps):
            raise TypeError("Irreps * Irreps is not defined; use a tensor product")
        if isinstance(other, (bool, np.bool_)) or not isinstance(other, (int, np.integer)):
            raise TypeError(f"Irreps * n: n must be an int; got {type(other).__name__}")
        return Irreps(list(self) * int(other))

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return "+".join(repr(b) for b in self)

    __str__ = __repr__

    def sort(self) -> _Sorted:
        """Stable sort of the blocks by irrep.

        Returns
        -------
        irreps : Irreps
            The sorted blocks.
        p : tuple of int
            ``p[old] = new``: where each original block went.
        inv : tuple of int
            ``inv[new] = old``: the inverse permutation.
        """
        inv = tuple(sorted(range(len(self)), key=lambda i: (self[i].ir, i)))
        p = [0] * len(inv)
        for new, old in enumerate(inv):
            p[old] = new
        return _Sorted(Irreps([self[i] for i in inv]), tuple(p), inv)

    def simplify(self) -> Irreps:
        """Merge adjacent blocks with equal irreps and drop zero multiplicities (no reordering)."""
        out: list[list] = []
        for mul, ir in self:
            if mul == 0:
                continue
            if out and out[-1][1] == ir:
                out[-1][0] += mul
            else:
                out.append([mul, ir])
        return Irreps([tuple(b) for b in out])

    def remove_zero_multiplicities(self) -> Irreps:
        """The same blocks without those of multiplicity 0."""
        return Irreps([b for b in self if b.mul > 0])

    def regroup(self) -> Irreps:
        """``sort().irreps.simplify()``: one block per distinct irrep, in sorted order."""
        return self.sort().irreps.simplify()

    @staticmethod
    def spherical_harmonics(lmax: int, p: int = -1) -> Irreps:
        """``0e + 1o + 2e + ...`` up to ``lmax`` (``p=-1``, a vector) or all even (``p=1``)."""
        return Irreps([(1, (l, p**l)) for l in range(lmax + 1)])

    # -- representation matrices --------------------------------------------------------------
    def D_from_angles(self, alpha, beta, gamma, k=0) -> np.ndarray:
        r"""Block-diagonal :math:`\bigoplus_i p_i^k D^{l_i}(\alpha, \beta, \gamma)`,
        shape ``(..., dim, dim)``."""
        blocks = [ir.D_from_angles(alpha, beta, gamma, k) for mul, ir in self for _ in range(mul)]
        return _block_diag(blocks, np.broadcast(alpha, beta, gamma, k).shape, self.dim)

    def D_from_matrix(self, R) -> np.ndarray:
        r"""Block-diagonal representation matrix of an orthogonal ``R`` (det +-1).

        Parameters
        ----------
        R : ndarray, shape (..., 3, 3), float64
            Orthogonal matrix (rotation or rotation times inversion).

        Returns
        -------
        D : ndarray, shape (..., dim, dim), float64
            Features laid out by this ``Irreps`` transform as ``x -> x @ D.T``.

        Raises
        ------
        ValueError
            If ``R`` is not (..., 3, 3) or not orthogonal to 1e-9 (the message names ``R``).
        """
        from .wigner import _check_orthogonal

        R = _check_orthogonal(R, "R")
        cache: dict = {}
        blocks = []
        for mul, ir in self:
            if ir not in cache:
                cache[ir] = ir.D_from_matrix(R)
            blocks.extend([cache[ir]] * mul)
        return _block_diag(blocks, R.shape[:-2], self.dim)


def _block_diag(blocks: list, batch: tuple, dim: int) -> np.ndarray:
    out = np.zeros(tuple(batch) + (dim, dim))
    i = 0
    for b in blocks:
        n = b.shape[-1]
        out[..., i : i + n, i : i + n] = b
        i += n
    return out
