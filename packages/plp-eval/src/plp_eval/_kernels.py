"""Numba kernels of the exact re-ID ranking (imported lazily: numba compiles on first use).

The kernel ranks each query's matches without sorting the gallery. ``scores[r, g]`` is a
float32 (or float64) approximation of the query's distance to gallery item ``g`` up to a
per-query constant (``||g||^2 - 2 q.g`` for L2, ``-q.g`` for cosine), with a proven error
bound ``errors[r]``. For each match ``m`` (sorted by exact float64 distance, then gallery
index) the rank is ``1 + matches before m + non-matches before m``; a non-match whose score is
below ``t_m - error`` is certainly before ``m``, above ``t_m + error`` certainly after, and
the few in between are compared exactly in float64 with the tie rule (equal distances: lower
gallery index first). The result is therefore the exact float64 ranking, computed with one
vectorised counting pass per match over the candidates: the scores of the row up to the last
match's bound, gathered in one pass (with many matches, the candidates are sorted instead).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["rank_block"]

_CHUNK = 64  # scores tested at once before gathering the candidates among them
_MANY_MATCHES = 32  # above this many matches, sort the candidates instead of counting


@numba.njit(cache=True, nogil=True, inline="always")
def _distance64(
    queries: np.ndarray,
    qi: int,
    gallery: np.ndarray,
    gi: int,
    cosine: bool,
    q_norm: float,
    g_norm: np.ndarray,
) -> float:
    """Exact-as-float64 distance: squared L2, or 1 - cosine similarity."""
    total = 0.0
    if cosine:  # as 1 - (q / |q|) . (g / |g|), normalising first
        q_scale = max(q_norm, 1e-12)
        g_scale = max(g_norm[gi], 1e-12)
        for k in range(queries.shape[1]):
            total += (np.float64(queries[qi, k]) / q_scale) * (np.float64(gallery[gi, k]) / g_scale)
        return 1.0 - total
    for k in range(queries.shape[1]):
        diff = np.float64(queries[qi, k]) - np.float64(gallery[gi, k])
        total += diff * diff
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _count(row: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """Return (#items < lo, #items <= hi) of a row."""
    below = 0
    upto = 0
    for g in range(row.shape[0]):
        x = row[g]
        below += x < lo
        upto += x <= hi
    return below, upto


@numba.njit(cache=True, nogil=True)
def rank_block(
    scores: np.ndarray,
    q_start: int,
    queries: np.ndarray,
    gallery: np.ndarray,
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    q_cameras: np.ndarray,
    g_cameras: np.ndarray,
    use_cameras: bool,
    label_order: np.ndarray,
    group_start: np.ndarray,
    group_stop: np.ndarray,
    offsets: np.ndarray,
    errors: np.ndarray,
    q_norms: np.ndarray,
    g_norms: np.ndarray,
    cosine: bool,
    first_rank: np.ndarray,
    average_precision: np.ndarray,
    inverse_negative_penalty: np.ndarray,
) -> None:
    """Fill the outputs (one entry per row of ``scores``; ``first_rank`` 0: no match).

    Args:
        scores: ``(B, G)`` approximate distances minus ``offsets`` (float32 or float64).
        q_start: Index of the block's first query in ``queries``.
        queries: ``(Q, D)`` query features (original values, for the exact distances).
        gallery: ``(G, D)`` gallery features (original values).
        q_labels: ``(Q,)`` query labels.
        g_labels: ``(G,)`` gallery labels.
        q_cameras: ``(Q,)`` query cameras (unused unless ``use_cameras``).
        g_cameras: ``(G,)`` gallery cameras.
        use_cameras: Remove same-label, same-camera gallery items.
        label_order: Gallery indices sorted by label, then index.
        group_start: ``(B,)`` start in ``label_order`` of each query's label group.
        group_stop: ``(B,)`` its end (== start: label absent from the gallery).
        offsets: ``(B,)`` float64 constant such that distance = score + offset.
        errors: ``(B,)`` float64 bound on |score + offset - exact distance|.
        q_norms: ``(B,)`` float64 L2 norms of the block's queries (cosine only).
        g_norms: ``(G,)`` float64 L2 norms of the gallery items (cosine only).
        cosine: Distances are 1 - cosine similarity (else squared L2).
        first_rank: ``(B,)`` int64 output: rank of the first match (0: no match).
        average_precision: ``(B,)`` float64 output.
        inverse_negative_penalty: ``(B,)`` float64 output: R / rank of the last match.
    """
    num_rows, size = scores.shape
    # The scores that can still be ahead of a query's last match, and their gallery indices.
    candidates = np.empty(size, dtype=scores.dtype)
    candidate_index = np.empty(size, dtype=np.int64)
    for r in range(num_rows):
        _rank_row(
            r,
            candidates,
            candidate_index,
            scores,
            q_start,
            queries,
            gallery,
            q_labels,
            g_labels,
            q_cameras,
            g_cameras,
            use_cameras,
            label_order,
            group_start,
            group_stop,
            offsets,
            errors,
            q_norms,
            g_norms,
            cosine,
            first_rank,
            average_precision,
            inverse_negative_penalty,
        )


@numba.njit(cache=True, nogil=True)
def _rank_row(
    r: int,
    candidates: np.ndarray,
    candidate_index: np.ndarray,
    scores: np.ndarray,
    q_start: int,
    queries: np.ndarray,
    gallery: np.ndarray,
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    q_cameras: np.ndarray,
    g_cameras: np.ndarray,
    use_cameras: bool,
    label_order: np.ndarray,
    group_start: np.ndarray,
    group_stop: np.ndarray,
    offsets: np.ndarray,
    errors: np.ndarray,
    q_norms: np.ndarray,
    g_norms: np.ndarray,
    cosine: bool,
    first_rank: np.ndarray,
    average_precision: np.ndarray,
    inverse_negative_penalty: np.ndarray,
) -> None:
    """Rank the matches of row ``r`` of the block (see :func:`rank_block`)."""
    qi = q_start + r
    first_rank[r] = 0
    average_precision[r] = 0.0
    inverse_negative_penalty[r] = 0.0
    start = group_start[r]
    n_items = group_stop[r] - start
    if n_items == 0:
        return
    label = q_labels[qi]
    row = scores[r]
    item_scores = np.empty(n_items, dtype=np.float64)
    match_index = np.empty(n_items, dtype=np.int64)
    match_distance = np.empty(n_items, dtype=np.float64)
    num_matches = 0
    for k in range(n_items):
        g = label_order[start + k]
        item_scores[k] = row[g]
        if use_cameras and g_cameras[g] == q_cameras[qi]:
            continue
        match_index[num_matches] = g
        match_distance[num_matches] = _distance64(
            queries, qi, gallery, g, cosine, q_norms[r], g_norms
        )
        num_matches += 1
    if num_matches == 0:
        return
    # label_order is ascending in gallery index within a label: a stable sort by distance
    # orders equal distances by gallery index.
    order = np.argsort(match_distance[:num_matches], kind="mergesort")
    offset = offsets[r]
    error = errors[r]
    bounds = np.empty(2, dtype=row.dtype)
    # Only scores up to the last match's upper bound can be ahead of a match: gather them.
    last = match_distance[order[num_matches - 1]] - offset + error
    bounds[1] = last + abs(last) * 2.4e-7 + 1e-37
    top = bounds[1]
    num_candidates = 0
    size = row.shape[0]
    whole = size - size % _CHUNK
    for begin in range(0, size, _CHUNK):
        if begin < whole:  # vectorised test (fixed trip count), usually no candidate
            chunk = row[begin : begin + _CHUNK]
            hits = 0
            for g in range(_CHUNK):
                hits += chunk[g] <= top
            if hits == 0:
                continue
        end = min(begin + _CHUNK, size)
        for g in range(begin, end):
            x = row[g]
            candidates[num_candidates] = x
            candidate_index[num_candidates] = g
            num_candidates += x <= top
    pool = candidates[:num_candidates]
    # Many matches: sort the candidates once and binary-search each match's bounds, instead of
    # one counting pass per match (O(K log K + R log K) instead of O(R K)).
    many = num_matches > _MANY_MATCHES
    if many:
        pool = np.sort(pool)
    ap = 0.0
    rank = 0
    for j in range(num_matches):
        m = order[j]
        threshold = match_distance[m]
        gi = match_index[m]
        low = threshold - offset - error
        high = threshold - offset + error
        # Round outwards to the scores' precision (float32 rounding error < 2.4e-7 rel).
        low = low - abs(low) * 2.4e-7 - 1e-37
        high = high + abs(high) * 2.4e-7 + 1e-37
        bounds[0] = low
        bounds[1] = high
        lo = bounds[0]
        hi = bounds[1]
        if many:
            below = np.searchsorted(pool, lo, side="left")
            upto = np.searchsorted(pool, hi, side="right")
        else:
            below, upto = _count(pool, lo, hi)
        for k in range(n_items):  # label items are never non-matches
            x = item_scores[k]
            if x < lo:
                below -= 1
                upto -= 1
            elif x <= hi:
                upto -= 1
        ahead = below
        if upto > below:  # non-matches too close to call in low precision
            for c in range(num_candidates):  # (candidates, unlike pool, is never sorted)
                x = candidates[c]
                g = candidate_index[c]
                if x >= lo and x <= hi and g_labels[g] != label:
                    d = _distance64(queries, qi, gallery, g, cosine, q_norms[r], g_norms)
                    if d < threshold or (d == threshold and g < gi):
                        ahead += 1
        rank = 1 + j + ahead
        if j == 0:
            first_rank[r] = rank
        ap += (j + 1) / rank
    average_precision[r] = ap / num_matches
    inverse_negative_penalty[r] = num_matches / rank
