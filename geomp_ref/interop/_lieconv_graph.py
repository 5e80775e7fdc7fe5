r"""One call of a LieConv or PointConv layer: its neighbourhoods as an explicit graph, and the
:class:`~geomp_ref.interop.Binding` that :func:`~geomp_ref.interop.compare` needs.

**LieConv's ball.** For query i, LieConv keeps the points j with
``group.distance(abq_pairs[b, i, j]) < r`` (the module's radius buffer ``r``), both points real
(mask True), and then draws ``k = min(mc_samples, n)`` neighbourhood slots at random, preferring
points of the ball (uniform noise added to the ball indicator; ``torch.topk``). When no ball holds
more than k points, every ball point gets a slot and the draw changes only the order of the
slots: the layer is then a fixed function, summed over the graph with edges j -> i for the ball
points. Its own ``group.distance`` is evaluated on the call's pairs, so the graph is the one the
module sees, comparison for comparison. A ball with more than k points would be subsampled at
random: refused, naming ``mc_samples``. In training mode each call moves ``r`` towards the
``fill`` fraction after choosing the neighbourhoods: :func:`check_mode` refuses a compared call
there (the module would not be the same afterwards); ``inputs_from_torch`` runs nothing and
takes the current ``r``.

``knn=True`` takes the k nearest points instead; the published branch combines the mask by point
index with the neighbour slots, which is only consistent when every slot is used and nothing is
padded: accepted with ``mc_samples >= n`` and an all-True mask (all pairs of points), refused
otherwise, naming ``knn``.

**PointConv's nearest neighbours.** ``k = min(mc_samples, n)`` nearest real points by squared
distance on the first ``knn_channels`` coordinates (all when None), deterministic unless the k-th
and (k+1)-th distances tie (then ``torch.topk`` picks arbitrarily: refused, naming
``mc_samples``).

In both layers padded query points give 0; they get no edges here (so no gradient either), and
the taps compare real query points only.

**Taps.** The WeightNet runs on every neighbourhood slot, in the draw's order, so its outputs are
compared per query point through order-free sums: for each ``weightnet.<k>`` the sum over the
real slots of the output and of its square, (B, n, 2 w); then ``linear`` (the output before
``mean`` divides it).
"""

from __future__ import annotations

import numpy as np

from .. import make_graph
from ..ops import scatter
from ._binding import Binding, InputLink, Tap
from ._lieconv_convert import convert, lieconv_matches
from ._torch import bind_call, import_torch, np64, params_from_links

__all__ = ["binding", "check_mode", "neighbourhoods"]


def check_mode(module, name: str) -> None:
    """Refuse a LieConv call that would move its radius (training mode, ball neighbourhoods)."""
    if getattr(module, "training", False) and not getattr(module, "knn", True):
        raise ValueError(
            f"{name}.training=True: in training mode every LieConv forward moves its ball "
            f"radius r (r += coeff * (fill - observed fill)) after choosing the neighbourhoods, "
            "so the module changes with each call; call module.eval() first (inputs_from_torch "
            "uses the current r and runs nothing)"
        )


def _triple(call: dict, name: str):
    if len(call) != 1:
        raise ValueError(
            f"{name}.forward must take one argument, the (coords, values, mask) triple"
        )
    (key,) = call
    inp = call[key]
    if not isinstance(inp, (tuple, list)) or len(inp) != 3:
        raise ValueError(
            f"{name}.forward({key}): {key} must be the triple (coords, values, mask); got "
            f"{type(inp).__name__}"
        )
    coords, values, mask = inp
    if getattr(mask, "dtype", None) is None or str(mask.dtype) != "torch.bool":
        raise ValueError(f"{name}: the mask {key}[2] must be a bool tensor (B, n)")
    if values.dim() != 3 or tuple(mask.shape) != tuple(values.shape[:2]):
        raise ValueError(
            f"{name}: values {key}[1] must be (B, n, C) and mask {key}[2] (B, n); got "
            f"{tuple(values.shape)} and {tuple(mask.shape)}"
        )
    return key, coords, values, mask


def _k(module, n: int) -> int:
    return int(min(module.mc_samples, n))


def _ball(module, pairs, mask, name: str) -> np.ndarray:
    torch = import_torch()
    B, n = mask.shape
    with torch.no_grad():
        dists = module.group.distance(pairs)
        if tuple(dists.shape) != (B, n, n):
            raise ValueError(
                f"{name}.group.distance gives shape {tuple(dists.shape)} on pairs of shape "
                f"{tuple(pairs.shape)}; LieConv needs (B, n, n)"
            )
        inside = (dists < module.r) & mask[:, None, :] & mask[:, :, None]
    inside = np64(inside).astype(bool)
    k = _k(module, n)
    counts = inside.sum(-1)
    if counts.size and counts.max() > k:
        b, i = np.unravel_index(int(np.argmax(counts)), counts.shape)
        raise ValueError(
            f"{name}.mc_samples={module.mc_samples}: query point {i} of cloud {b} has "
            f"{int(counts[b, i])} points within r = {float(module.r):g}, more than the "
            f"k = min(mc_samples, n) = {k} neighbourhood slots, so LieConv keeps a random "
            "subset. The comparison is exact in eval mode, without batch norm, with ds_frac=1, "
            "knn=False, and mc_samples at least the number of points in every ball (e.g. "
            "mc_samples >= n), for the radius r you want (r covering all pairs: every point)"
        )
    return inside


def _knn_lieconv(module, mask, name: str) -> np.ndarray:
    B, n = mask.shape
    m = np64(mask).astype(bool)
    if _k(module, n) < n or not m.all():
        raise ValueError(
            f"{name}.knn=True with mc_samples={module.mc_samples} on {n} points"
            f"{'' if m.all() else ' with padding'}: the published knn branch combines the "
            "mask by point index with the neighbour slots, which fails or mixes points unless "
            "every slot is used and nothing is padded. The comparison is exact with knn=True "
            "only for mc_samples >= n and an all-True mask; otherwise use knn=False (ball "
            "neighbourhoods, mc_samples at least the ball sizes)"
        )
    return np.ones((B, n, n), dtype=bool)


def _knn_points(module, xyz, mask, name: str) -> np.ndarray:
    torch = import_torch()
    B, n = mask.shape
    kc = getattr(module, "knn_channels", None)
    with torch.no_grad():
        x = xyz[:, :, :kc]
        d = torch.sum((x[:, :, None, :] - x[:, None, :, :]) ** 2, -1)
        d = torch.where(mask[:, None, :], d, torch.full_like(d, 1e8))
    d = np64(d)
    real = np64(mask).astype(bool)
    k = _k(module, n)
    pair_real = real[:, :, None] & real[:, None, :]
    if k >= n:
        return pair_real
    s = np.sort(d, axis=-1)
    v = s[..., k - 1]
    tie = (s[..., k] == v) & ((d == v[..., None]) & real[:, None, :]).any(-1) & real
    if tie.any():
        b, i = np.argwhere(tie)[0]
        raise ValueError(
            f"{name}.mc_samples={module.mc_samples}: query point {i} of cloud {b} has several "
            f"points at its k-th smallest distance (k = {k}); torch.topk keeps any of them. "
            "The comparison is exact for mc_samples >= n, or for points without such ties"
        )
    return pair_real & (d <= v[..., None])


def neighbourhoods(module, coords, mask, name: str, kind: str) -> np.ndarray:
    """``(B, n, n)`` bool: ``[b, i, j]`` when j is a neighbour of the real query i."""
    if kind == "PointConv":
        return _knn_points(module, coords, mask, name)
    if getattr(module, "knn", False):
        return _knn_lieconv(module, mask, name)
    return _ball(module, coords, mask, name)


# --- taps --------------------------------------------------------------------------------------


def _our_moments(what: str, k: int):
    """Our tap value: per query point, the sums over its edges of a WeightNet layer's output and
    of its square (B, n, 2 w); ``what`` ``"z"`` (linear output) or ``"h"`` (activation)."""

    def ours(cache):
        conv = cache.conv
        net = conv.kernel.net
        last = k == len(net.z) - 1
        v = net.z[k] if what == "z" else (conv.k_ij if last else net.h[k + 1])
        B, n = cache.mask.shape
        out = scatter.scatter_sum(np.concatenate([v, v * v], axis=1), conv.graph.dst, B * n)
        return out.reshape(B, n, -1)

    return ours


def _peer_moments(real):
    torch = import_torch()

    def peer(out):
        t = out[1]
        slots = out[2].unsqueeze(-1).to(t.dtype)
        sums = torch.cat([(t * slots).sum(-2), (t * t * slots).sum(-2)], -1)
        return sums * torch.as_tensor(real, dtype=sums.dtype)[..., None]

    return peer


def _linear_tap(real):
    torch = import_torch()

    def ours(cache):
        y = cache.y if cache.conv.deg is None else cache.y * cache.conv.deg[:, None]
        return y.reshape(*cache.mask.shape, -1) * real[..., None]

    def peer(out):
        return out * torch.as_tensor(real, dtype=out.dtype)[..., None]

    return ours, peer


def binding(module, args: tuple, kwargs: dict, *, run: bool = True) -> Binding:
    """The binding of one ``module(inp)`` call (``run``: the peer will run, so refuse a call in
    training mode that would move LieConv's radius)."""
    kind = "LieConv" if lieconv_matches(module) else "PointConv"
    name = type(module).__name__
    call = bind_call(module, args, kwargs)
    key, coords, values, mask = _triple(call, name)
    if run and kind == "LieConv":
        check_mode(module, name)
    spec, links, info = convert(module)
    params = params_from_links(spec, module, links)
    B, n = tuple(mask.shape)
    sel = neighbourhoods(module, coords, mask, name, kind)
    b, i, j = np.nonzero(sel)
    edge_index = np.stack([b * n + j, b * n + i]).astype(np.int64).reshape(2, -1)
    graph = make_graph(edge_index, B * n, np.repeat(np.arange(B), n), num_graphs=B)
    real = np64(mask).astype(bool)
    inputs = (np64(coords), np64(values), real.copy())
    links_in = [
        InputLink(f"{key}[0]", lambda c: c[key][0], 0),
        InputLink(f"{key}[1]", lambda c: c[key][1], 1),
    ]
    taps = [Tap(peer, _our_moments(what, k), _peer_moments(real)) for peer, what, k in info["taps"]]
    taps.append(Tap("linear", *_linear_tap(real)))
    first = "abq_pairs" if kind == "LieConv" else "xyz"
    notes = [
        f"{name}: {graph.num_edges} neighbour pairs over {int(real.sum())} real points "
        + ("(LieConv's ball, group.distance < r)" if kind == "LieConv" and not
           getattr(module, "knn", False) else "(nearest neighbours)")
    ]
    return Binding(
        spec, params, graph, inputs, links, links_in,
        lambda r: (r[0], r[1], r[2]), taps, notes, (first, "values", "mask"),
    )
