"""Numba kernels of the exact re-ID ranking (``backend="numba"``, and real ties by the thousand).

Imported lazily: loading numba and these kernels costs a fresh process a second or more, so
the default CPU path is :mod:`plp_eval._numpy_ranking`, which ranks the same way without them.

The kernels rank each query's matches without sorting the gallery. ``scores[r, g]`` is a
float32 (or float64) approximation of the query's distance to gallery item ``g`` up to a
per-query constant (``||g||^2 - 2 q.g`` for L2, ``-q.g / (|q| |g|)`` for cosine), with a proven
error bound ``errors[r]``. For each match ``m`` (in exact order) the rank is
``1 + matches before m + non-matches before m``; a non-match whose score is below
``s_m - 2 error`` is certainly before ``m`` (``s_m``: the match's score), above
``s_m + 2 error`` certainly after, and the few in between are compared exactly (float64
distances with their own bounds, computed only for them and for matches too close to order
by score).

Exact comparison (:func:`_precedes`), for real-arithmetic ties: a float64 distance with a
proven error bound decides when two distances are farther apart than their bounds; otherwise
the sign of their difference is computed exactly (:mod:`plp_eval._exact_kernels`). Equal
real distances are then ordered by gallery index.
"""

from __future__ import annotations

import numba
import numpy as np

from plp_eval._exact_kernels import exact_sign

__all__ = ["COSINE", "L2", "rank_block"]

L2, COSINE = 0, 1
_CHUNK = 64  # scores tested at once (a bit each) before gathering the candidates among them
# The index of a 64-bit word's only set bit: its product with a de Bruijn sequence has a
# distinct top six bits for each of the 64 positions (a table lookup instead of a loop).
_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_LOWEST_BIT = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    _LOWEST_BIT[((1 << _bit) * 0x03F79D71B4CB0A89 % (1 << 64)) >> 58] = _bit
_MANY_MATCHES = 32  # above this many matches, sort the candidates instead of counting
_FEW_PAIRS = 32  # up to this many unsure (match, non-match) pairs, compare pair by pair


# Reassociation only (no other fast-math flag): the sums vectorise, and the bound of
# _error64 holds for any order of summation.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _distance64(
    queries: np.ndarray,
    qi: int,
    gallery: np.ndarray,
    gi: int,
    cosine: bool,
    q_norm: float,
    g_norm: np.ndarray,
) -> float:
    """Float64 distance (squared L2, or 1 - cosine), within :func:`_error64` of the real one."""
    q = queries[qi]
    g = gallery[gi]
    total = 0.0
    if cosine:  # as 1 - (q / |q|) . (g / |g|), normalising first (zero vectors: similarity 0)
        q_scale = q_norm if q_norm > 0.0 else 1.0
        g_scale = g_norm[gi] if g_norm[gi] > 0.0 else 1.0
        for k in range(q.shape[0]):
            total += (np.float64(q[k]) / q_scale) * (np.float64(g[k]) / g_scale)
        return 1.0 - total
    for k in range(q.shape[0]):
        diff = np.float64(q[k]) - np.float64(g[k])
        total += diff * diff
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _error64(distance: float, dim: int, mode: int) -> float:
    """Bound on |_distance64 - real distance| (twice the worst case of the float64 steps).

    L2: d non-negative terms, each a rounded difference squared, summed: relative error at
    most (d + 2) u. Cosine: norms (d + 2) u relative, each of the d products 3 u, the sum
    d u of a total <= 1 (Cauchy-Schwarz): below (2 d + 10) u absolute. ``u = 2**-53``.
    """
    if mode == 1:
        return 2.0 * (2 * dim + 10) * 1.1102230246251565e-16
    return 2.0 * (dim + 3) * 1.1102230246251565e-16 * distance + (dim + 1) * 1e-320


@numba.njit(cache=True, nogil=True)
def _precedes(
    queries: np.ndarray,
    qi: int,
    gallery: np.ndarray,
    a: int,
    key_a: float,
    b: int,
    key_b: float,
    mode: int,
) -> bool:
    """Whether gallery item ``a`` ranks before ``b`` (exact distance, then gallery index)."""
    dim = queries.shape[1]
    error = _error64(key_a, dim, mode) + _error64(key_b, dim, mode)
    if key_a + error < key_b:
        return True
    if key_a > key_b + error:
        return False
    sign = exact_sign(queries[qi], gallery[a], gallery[b], mode == 1)
    return sign < 0 or (sign == 0 and a < b)


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
    leave_self_out: bool,
    label_order: np.ndarray,
    group_start: np.ndarray,
    group_stop: np.ndarray,
    errors: np.ndarray,
    q_norms: np.ndarray,
    g_norms: np.ndarray,
    mode: int,
    out_start: np.ndarray,
    match_ranks: np.ndarray,
    num_matches: np.ndarray,
) -> None:
    """Rank the matches of every row of a dense score block.

    Args:
        scores: ``(B, G)`` approximate distances minus a per-row constant (float32 or
            float64).
        q_start: Index of the block's first query in ``queries``.
        queries: ``(Q, D)`` query features (original values, for the exact distances).
        gallery: ``(G, D)`` gallery features (original values).
        q_labels: ``(Q,)`` query labels.
        g_labels: ``(G,)`` gallery labels.
        q_cameras: ``(Q,)`` query cameras (unused unless ``use_cameras``).
        g_cameras: ``(G,)`` gallery cameras.
        use_cameras: Remove same-label, same-camera gallery items.
        leave_self_out: Gallery item ``i`` is query ``i``: remove it from query ``i``'s ranking.
        label_order: Gallery indices sorted by label, then index.
        group_start: ``(B,)`` start in ``label_order`` of each query's label group.
        group_stop: ``(B,)`` its end (== start: label absent from the gallery).
        errors: ``(B,)`` float64 bound on |score + the row's constant - exact distance|.
        q_norms: ``(B,)`` float64 L2 norms of the block's queries (cosine only).
        g_norms: ``(G,)`` float64 L2 norms of the gallery items (cosine only).
        mode: ``L2`` or ``COSINE``.
        out_start: ``(B,)`` where row ``r``'s match ranks start in ``match_ranks`` (room for
            its whole label group).
        match_ranks: int64 output: the 1-based ranks of each row's matches, ascending.
        num_matches: ``(B,)`` int64 output: matches of each row (0: no match).
    """
    num_rows, size = scores.shape
    # The scores that can still be ahead of a query's last match, and their gallery indices.
    candidates = np.empty(size, dtype=scores.dtype)
    candidate_index = np.empty(size, dtype=np.int64)
    top_bound = np.empty(1, dtype=scores.dtype)
    for r in range(num_rows):
        row = scores[r]
        start = group_start[r]
        n_items = group_stop[r] - start
        item_scores = np.empty(n_items, dtype=np.float64)
        for k in range(n_items):
            item_scores[k] = row[label_order[start + k]]
        # Only scores up to the last match's bound can be ahead of a match (a match's score
        # is within the error of its exact distance: score + 2 error bounds it).
        last = -np.inf
        for k in range(n_items):
            if _is_match(q_start + r, label_order[start + k], q_cameras, g_cameras,
                         use_cameras, leave_self_out):  # fmt: skip
                last = max(last, item_scores[k] + 2.0 * errors[r])
        top_bound[0] = last + abs(last) * 2.4e-7 + 1e-37  # outwards, then to float32
        top = top_bound[0]
        num_candidates = _gather(row, top, candidates, candidate_index)
        num_matches[r] = _rank_matches(
            r, q_start, queries, gallery, q_labels, g_labels, q_cameras, g_cameras,
            use_cameras, leave_self_out, label_order, start, n_items, item_scores,
            errors, q_norms, g_norms, mode, candidates[:num_candidates],
            candidate_index[:num_candidates], match_ranks[out_start[r] : out_start[r] + n_items],
        )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _gather(
    row: np.ndarray, top: float, candidates: np.ndarray, candidate_index: np.ndarray
) -> int:
    """Copy the scores of ``row`` up to ``top`` and their indices, in order; return how many.

    ``candidates`` and ``candidate_index`` have room for the whole row.
    """
    size = row.shape[0]
    num_candidates = 0
    whole = size - size % _CHUNK
    for begin in range(0, whole, _CHUNK):
        # A bit per score of the chunk (a vectorised test), then one step per set bit:
        # most chunks hold no candidate, and the few that do hold one or two.
        bits = np.uint64(0)
        for g in range(_CHUNK):
            bits |= np.uint64(row[begin + g] <= top) << np.uint64(g)
        # The first step without a branch (written, counted only if a bit is set; n <=
        # begin, so in bounds): whether a chunk holds a candidate is a coin toss that the
        # CPU mispredicts, whether it holds a second is rarely true (4.6 -> 4.1 ms a 512 x
        # 50k block).
        lowest = bits & (~bits + np.uint64(1))
        g = begin + _LOWEST_BIT[(lowest * _DE_BRUIJN) >> np.uint64(58)]
        candidates[num_candidates] = row[g]
        candidate_index[num_candidates] = g
        num_candidates += bits != 0
        bits ^= lowest
        while bits != 0:
            lowest = bits & (~bits + np.uint64(1))
            g = begin + _LOWEST_BIT[(lowest * _DE_BRUIJN) >> np.uint64(58)]
            candidates[num_candidates] = row[g]
            candidate_index[num_candidates] = g
            num_candidates += 1
            bits ^= lowest
    for g in range(whole, size):
        x = row[g]
        candidates[num_candidates] = x
        candidate_index[num_candidates] = g
        num_candidates += x <= top
    return num_candidates


@numba.njit(cache=True, nogil=True, inline="always")
def _is_match(
    qi: int,
    g: int,
    q_cameras: np.ndarray,
    g_cameras: np.ndarray,
    use_cameras: bool,
    leave_self_out: bool,
) -> bool:
    """Whether label-group item ``g`` is a match of query ``qi`` (not removed)."""
    if leave_self_out and g == qi:
        return False
    return not (use_cameras and g_cameras[g] == q_cameras[qi])


@numba.njit(cache=True, nogil=True)
def _rank_matches(
    r: int,
    q_start: int,
    queries: np.ndarray,
    gallery: np.ndarray,
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    q_cameras: np.ndarray,
    g_cameras: np.ndarray,
    use_cameras: bool,
    leave_self_out: bool,
    label_order: np.ndarray,
    start: int,
    n_items: int,
    item_scores: np.ndarray,
    errors: np.ndarray,
    q_norms: np.ndarray,
    g_norms: np.ndarray,
    mode: int,
    pool: np.ndarray,
    pool_index: np.ndarray,
    ranks: np.ndarray,
) -> int:
    """Write the ascending ranks of row ``r``'s matches into ``ranks``; return how many.

    ``pool`` holds (at least) every gallery score that may be ahead of one of the matches,
    ``pool_index`` their gallery indices in ascending order.
    """
    qi = q_start + r
    label = q_labels[qi]
    cosine = mode == 1
    match_index = np.empty(n_items, dtype=np.int64)
    match_score = np.empty(n_items, dtype=np.float64)
    match_key = np.full(n_items, np.nan)  # float64 distance, computed where needed
    num_matches = 0
    for k in range(n_items):
        g = label_order[start + k]
        if not _is_match(qi, g, q_cameras, g_cameras, use_cameras, leave_self_out):
            continue
        match_index[num_matches] = g
        match_score[num_matches] = item_scores[k]
        num_matches += 1
    if num_matches == 0:
        return 0
    error = errors[r]
    order = _exact_order(
        qi, queries, gallery, q_norms[r], g_norms, mode, match_index, match_score[:num_matches],
        match_key, error,
    )  # fmt: skip
    bounds = np.empty(2, dtype=pool.dtype)
    many = num_matches > _MANY_MATCHES
    # Many matches: sort the candidates once and binary-search each match's bounds, instead of
    # one counting pass per match (O(K log K + R log K) instead of O(R K)).
    sorted_pool = np.sort(pool) if many else pool
    # Each match's bounds, and whether a non-match lies within them (see _settle_unsure).
    lows = np.empty(num_matches, dtype=pool.dtype)
    highs = np.empty(num_matches, dtype=pool.dtype)
    unsure = np.zeros(num_matches, dtype=np.bool_)
    pairs = 0  # (match, non-match) pairs too close to call in low precision
    for j in range(num_matches):
        score = match_score[order[j]]
        # A non-match scored two errors below the match is certainly ahead, above certainly
        # behind; rounded outwards to the scores' precision (float32: < 2.4e-7 relative).
        low = score - 2.0 * error
        high = score + 2.0 * error
        bounds[0] = low - abs(low) * 2.4e-7 - 1e-37
        bounds[1] = high + abs(high) * 2.4e-7 + 1e-37
        lo = bounds[0]
        hi = bounds[1]
        if many:
            below = np.searchsorted(sorted_pool, lo, side="left")
            upto = np.searchsorted(sorted_pool, hi, side="right")
        else:
            below = 0
            upto = 0
            for c in range(pool.shape[0]):
                x = pool[c]
                below += x < lo
                upto += x <= hi
        for k in range(n_items):  # label items are never non-matches
            x = item_scores[k]
            if x < lo:
                below -= 1
                upto -= 1
            elif x <= hi:
                upto -= 1
        ranks[j] = 1 + j + below
        lows[j] = lo
        highs[j] = hi
        unsure[j] = upto > below  # non-matches too close to call in low precision
        pairs += upto - below
    if pairs == 0:
        return num_matches
    for j in range(num_matches):  # the float64 keys the exact comparisons need
        m = order[j]
        if np.isnan(match_key[m]) and (unsure[j] or pairs > _FEW_PAIRS):
            match_key[m] = _distance64(
                queries, qi, gallery, match_index[m], cosine, q_norms[r], g_norms
            )
    _settle_unsure(
        qi, queries, gallery, g_labels, label, q_norms[r], g_norms, mode, pool, pool_index,
        match_index[order[:num_matches]], match_key[order[:num_matches]], lows, highs,
        unsure, ranks, pairs,
    )  # fmt: skip
    return num_matches


@numba.njit(cache=True, nogil=True)
def _settle_order(
    qi: int,
    queries: np.ndarray,
    gallery: np.ndarray,
    items: np.ndarray,
    keys: np.ndarray,
    order: np.ndarray,
    mode: int,
) -> None:
    """Insertion-sort ``order`` (sorted by float64 key) into the exact order of its items.

    Only neighbours too close to call move, compared exactly.
    """
    for i in range(1, order.shape[0]):
        j = i
        while j > 0 and _precedes(
            queries, qi, gallery, items[order[j]], keys[order[j]], items[order[j - 1]],
            keys[order[j - 1]], mode,
        ):  # fmt: skip
            order[j], order[j - 1] = order[j - 1], order[j]
            j -= 1


@numba.njit(cache=True, nogil=True)
def _exact_order(
    qi: int,
    queries: np.ndarray,
    gallery: np.ndarray,
    q_norm: float,
    g_norms: np.ndarray,
    mode: int,
    match_index: np.ndarray,
    match_score: np.ndarray,
    match_key: np.ndarray,
    error: float,
) -> np.ndarray:
    """The positions of the matches in exact order (ties: gallery index).

    By score first (stable: the matches come in gallery-index order). A match's real
    distance lies within ``error`` of its score plus the row's constant, so matches more than
    two errors apart are in exact order; chains of closer ones get their float64 keys
    (``match_key``) and are sorted exactly.
    """
    num_matches = match_score.shape[0]
    order = np.argsort(match_score, kind="mergesort")
    begin = 0
    while begin < num_matches:
        end = begin + 1
        # 1% more than twice the bound: float64 rounding of the difference cannot matter.
        while end < num_matches and (
            match_score[order[end]] - match_score[order[end - 1]] <= 2.02 * error
        ):
            end += 1
        if end - begin > 1:  # a chain: float64 keys, then neighbours settled exactly
            chain = order[begin:end]
            chain.sort()  # gallery-index order: equal keys keep it
            for m in chain:
                match_key[m] = _distance64(
                    queries, qi, gallery, match_index[m], mode == 1, q_norm, g_norms
                )
            chain[:] = chain[np.argsort(match_key[chain], kind="mergesort")]
            _settle_order(qi, queries, gallery, match_index, match_key, chain, mode)
        begin = end
    return order


@numba.njit(cache=True, nogil=True)
def _preceding_within(
    qi: int,
    queries: np.ndarray,
    gallery: np.ndarray,
    g_labels: np.ndarray,
    label: int,
    q_norm: float,
    g_norms: np.ndarray,
    mode: int,
    pool: np.ndarray,
    pool_index: np.ndarray,
    match: int,
    match_key: float,
    low: float,
    high: float,
) -> int:
    """How many non-matches of the pool within ``[low, high]`` exactly precede ``match``."""
    count = 0
    for c in range(pool.shape[0]):
        x = pool[c]
        g = pool_index[c]
        if x < low or x > high or g_labels[g] == label:
            continue
        key = _distance64(queries, qi, gallery, g, mode == 1, q_norm, g_norms)
        count += _precedes(queries, qi, gallery, g, key, match, match_key, mode)
    return count


@numba.njit(cache=True, nogil=True)
def _settle_unsure(
    qi: int,
    queries: np.ndarray,
    gallery: np.ndarray,
    g_labels: np.ndarray,
    label: int,
    q_norm: float,
    g_norms: np.ndarray,
    mode: int,
    pool: np.ndarray,
    pool_index: np.ndarray,
    matches: np.ndarray,
    match_keys: np.ndarray,
    lows: np.ndarray,
    highs: np.ndarray,
    unsure: np.ndarray,
    ranks: np.ndarray,
    pairs: int,
) -> None:
    """Add to ``ranks`` the non-matches within the bounds of a match that exactly precede it.

    ``ranks[j]`` counts the non-matches certainly ahead of match ``j`` (matches in exact
    order; score bounds ``lows[j]``, ``highs[j]``); ``pairs`` (match, non-match) pairs lie
    within the bounds. Up to ``_FEW_PAIRS`` of them (the usual case: a non-match or two
    inside a match's bounds) are compared one by one. More: the non-matches inside an unsure
    match's bounds (set U) are sorted exactly together with the matches, once: the U members before
    match ``j`` in that order, less those certainly ahead (score below ``lows[j]``: counted
    already), are the ones to add. Sorting costs O((U + R) log(U + R)) float64 comparisons
    and an exact one only between neighbours too close to call: with many real ties (hash
    codes, integer features) this replaces U x R exact comparisons.
    """
    if pairs <= _FEW_PAIRS:
        for j in range(matches.shape[0]):
            if unsure[j]:
                ranks[j] += _preceding_within(
                    qi, queries, gallery, g_labels, label, q_norm, g_norms, mode, pool,
                    pool_index, matches[j], match_keys[j], lows[j], highs[j],
                )  # fmt: skip
        return
    num_matches = matches.shape[0]
    # The unsure bounds, merged into disjoint intervals.
    starts = np.empty(num_matches, dtype=lows.dtype)
    stops = np.empty(num_matches, dtype=lows.dtype)
    num_intervals = 0
    for j in np.argsort(lows, kind="mergesort"):
        if not unsure[j]:
            continue
        if num_intervals > 0 and lows[j] <= stops[num_intervals - 1]:
            stops[num_intervals - 1] = max(stops[num_intervals - 1], highs[j])
        else:
            starts[num_intervals] = lows[j]
            stops[num_intervals] = highs[j]
            num_intervals += 1
    starts = starts[:num_intervals]
    stops = stops[:num_intervals]
    size = pool.shape[0]
    members = np.empty(size + num_matches, dtype=np.int64)  # gallery indices
    keys = np.empty(size + num_matches, dtype=np.float64)
    is_match = np.zeros(size + num_matches, dtype=np.bool_)
    scores = np.empty(size, dtype=np.float64)
    count = 0
    for c in range(size):
        x = pool[c]
        k = np.searchsorted(starts, x, side="right") - 1
        if k < 0 or x > stops[k] or g_labels[pool_index[c]] == label:
            continue
        g = pool_index[c]
        members[count] = g
        scores[count] = x
        keys[count] = _distance64(queries, qi, gallery, g, mode == 1, q_norm, g_norms)
        count += 1
    num_unsure = count
    for j in range(num_matches):
        members[count] = matches[j]
        keys[count] = match_keys[j]
        is_match[count] = True
        count += 1
    members = members[:count]
    keys = keys[:count]
    # (float64 key, gallery index), then neighbours too close to call settled exactly.
    order = np.argsort(members, kind="mergesort")
    order = order[np.argsort(keys[order], kind="mergesort")]
    _settle_order(qi, queries, gallery, members, keys, order, mode)
    unsure_scores = np.sort(scores[:num_unsure])
    before = 0  # members of U before the current match
    j = 0
    for i in range(count):
        if not is_match[order[i]]:
            before += 1
            continue
        if unsure[j]:
            ranks[j] += before - np.searchsorted(unsure_scores, lows[j], side="left")
        j += 1
