r"""Matrix Lie groups SO(2), SE(2), SO(3), SE(3) with float64-accurate Exp, Log and Jacobians.

Conventions (one place; every module follows them)
---------------------------------------------------
* **Elements are matrices**, batched over leading axes: SO(2) ``(..., 2, 2)``, SO(3)
  ``(..., 3, 3)``, SE(2) ``(..., 3, 3)`` and SE(3) ``(..., 4, 4)`` homogeneous
  ``[[R, t], [0, 1]]``.
* **Tangents** (Lie-algebra coordinates): SO(2) an angle of shape ``(...)``; SE(2) ``(..., 3)`` =
  ``(ρ₁, ρ₂, θ)``; SO(3) ``(..., 3)`` = ``ω``; SE(3) ``(..., 6)`` = ``(ρ, ω)``. SE tangents put the
  **translation part first** (Sophus, manif, Solà). ``hat``/``vee`` map between tangents and
  algebra matrices; ``Exp = expm ∘ hat``.
* **Log is principal**: rotation angle in ``[0, π]`` (SO(3)) or ``(−π, π]`` (SO(2), SE(2)). At
  exactly π the two twins are the same element; tests accept either within 1e-12 of π.
* **Perturbations on the right**: ``X ⊕ τ = X Exp(τ)``, ``Y ⊖ X = Log(X⁻¹ Y)``, so "the" Jacobian
  is the right Jacobian: ``Exp(τ + δ) ≈ Exp(τ) Exp(Jr(τ) δ)``; the left one satisfies
  ``Exp(τ + δ) ≈ Exp(Jl(τ) δ) Exp(τ)``, ``Jl(τ) = Jr(−τ) = Ad_{Exp τ} Jr(τ)``.
  ``Ad_g`` is defined by ``g Exp(δ) = Exp(Ad_g δ) g``.
* **Pairs**: ``relative_log(g_i, g_j) = Log(g_i⁻¹ g_j)`` (receiver ``i``, sender ``j``), with
  ``∂ξ/∂δ_j = Jr⁻¹(ξ)`` and ``∂ξ/∂δ_i = −Jl⁻¹(ξ)``.
* **VJPs** (Rule A): ``exp_vjp(tau, grad_g)``, ``log_vjp(g, grad_tau)``,
  ``compose_vjp(a, b, grad_c) -> (grad_a, grad_b)``, ``act_vjp(g, x, grad_y) -> (grad_g, grad_x)``,
  ``relative_log_vjp(g_i, g_j, grad_tau) -> (grad_g_i, grad_g_j)``. Gradients with respect to
  elements are **ambient matrix gradients** (w.r.t. the matrix entries, what autograd through the
  entries gives for ``compose``/``act``). For ``log`` and ``relative_log`` — defined only on the
  group — the ambient gradient is unique only up to directions normal to the group: they return
  the one tangent to the group (minimum norm), exact for every on-group perturbation; see
  :mod:`geomp_ref.lie._generic`.
* **Validation**: every function taking elements checks orthogonality (``max |RᵀR − I| <= tol``,
  keyword ``tol``, default ``1e-9``), ``det R = +1`` and, for SE, the last row ``[0, …, 0, 1]``;
  NaN/inf are rejected; errors name the argument.
* **Accuracy** (float64 vs 50-digit mpmath; tangents by relative error per block, elements by
  rotation max-entry and relative translation error, Jacobians by relative Frobenius error;
  ``python3 benchmarks/lie_accuracy.py``): on the principal range ``|θ| ≤ π`` Exp, Log, the
  tangent round trip and all Jacobians are within 1e-15 (relative per block / relative Frobenius;
  group round trip within 2e-15), and Exp stays within 1e-15 up to ``|θ| = 10``. Beyond π the
  rounding of ``θ = |ω|`` (≤ ~2 ulp(θ)) bounds the Jacobians (measured ≤ 1.7e-15 up to 10).
  Documented limit: near ``|ω| = 2πk`` (k ≥ 1) ``Log(Exp ω)`` loses
  ``~4 ulp(|ω|)/dist(|ω|, 2πk)`` relative, because ``|ω|`` itself is rounded; not worked around.
* **Any finite input** (hostile-input contract): Exp and the Jacobians accept every finite
  tangent (huge angles through exact unit-axis rewrites, norms rescaled before they overflow;
  accuracy vs mpmath for axis-aligned angles up to 1.7e308 in ``tests/lie/test_lie_hostile.py``);
  ``Jr⁻¹``/``Jl⁻¹`` refuse angles within rounding of ``2πk`` (k ≠ 0), where they do not exist; a
  result that would overflow float64 is refused; ``random`` takes a Generator or an int seed.

Modules: :mod:`.so2`, :mod:`.se2`, :mod:`.so3`, :mod:`.se3` (identical function sets),
:mod:`.grids` (rotation and sphere grids). ``GROUPS`` maps the names ``"so2"``, ``"se2"``,
``"so3"``, ``"se3"`` to those modules, for code that loops over the groups. Importing this
package imports neither sympy nor numba.
"""

from __future__ import annotations

from . import grids, se2, se3, so2, so3

GROUPS = {"so2": so2, "se2": se2, "so3": so3, "se3": se3}

__all__ = ["GROUPS", "grids", "se2", "se3", "so2", "so3"]
