"""The exact ranking in numpy alone: the cold-start path for small problems.

Loading numba costs a fresh process a second or more; for a small problem that is more than
the whole evaluation. Until the numba kernels are loaded, small problems are ranked here with
the same scores, bounds and definitions as :mod:`plp_eval._kernels` (so the same result): each
row of scores is sorted once, every match's rank counted by binary search, and the few
non-matches within the error bound compared exactly (a float64 distance with its bound, then
rational arithmetic on the given values).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from plp_eval._match_ranks import VALUES, query_values
from plp_eval._problem import Block, Problem

__all__ = ["SMALL", "TIE_BUDGET", "TooManyTiesError", "numpy_values"]

SMALL = 1 << 25  # queries x gallery up to which a cold process ranks here (2k x 10k: 2e7)
TIE_BUDGET = 2000  # exact (rational) comparisons before handing over to numba
_UNIT = 2.0**-53
_FEW_MATCHES = 16  # up to this many matches, count instead of sorting the candidates


class TooManyTiesError(Exception):
    """More near ties than rational arithmetic settles quickly: use the numba kernels."""


def numpy_values(
    problem: Problem, rows: range, tie_budget: float = TIE_BUDGET, block_rows: int = 256
) -> np.ndarray:
    """Per-query values of query ``rows`` (as the numba backend's, without numba).

    Raises:
        TooManyTiesError: More than ``tie_budget`` pairs needed an exact comparison (integer
            features with many real ties, say), which numba does much faster.
    """
    budget = [tie_budget]
    values = []
    for start in range(rows.start, rows.stop, block_rows):
        block = problem.block(start, min(start + block_rows, rows.stop))
        scores = block.left @ problem.matrix.T
        if scores.dtype == np.float32:
            match_ranks, num_matches = _rank_block(problem, block, scores, budget)
        else:  # float64 scores (huge or tiny values): row by row
            match_ranks = np.zeros(block.out_size, dtype=np.int64)
            num_matches = np.zeros(block.stop - block.start, dtype=np.int64)
            for r in range(block.stop - block.start):
                ranks = _rank_row(problem, block, r, scores[r], budget)
                num_matches[r] = len(ranks)
                match_ranks[block.out_start[r] : block.out_start[r] + len(ranks)] = ranks
        values.append(query_values(match_ranks, num_matches, block.out_start))
    return np.concatenate(values) if values else np.zeros((0, VALUES))


def _rank_block(
    problem: Problem, block: Block, scores: np.ndarray, budget: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Match ranks and counts of a block, vectorised; rows with near ties go one by one."""
    size = block.stop - block.start
    sizes = block.group_stop - block.group_start
    item_rows = np.repeat(np.arange(size), sizes)
    within = np.arange(block.out_size) - np.repeat(block.out_start, sizes)
    items = problem.label_order[np.repeat(block.group_start, sizes) + within]
    keep = np.ones(block.out_size, dtype=bool)
    if problem.use_cameras:
        keep &= problem.g_cameras[items] != problem.q_cameras[block.start + item_rows]
    if problem.leave_self_out:
        keep &= items != block.start + item_rows
    rows, matches = item_rows[keep], items[keep]
    keys = _pair_distances64(problem, block, rows, matches)
    order = np.lexsort((matches, keys, rows))  # by row, then (float64 distance, index)
    rows, matches, keys = rows[order], matches[order], keys[order]
    num_matches = np.bincount(rows, minlength=size)
    first = np.cumsum(num_matches) - num_matches
    position = np.arange(len(rows)) - first[rows]  # index of the match within its row
    # Bounds of each match's exact distance in score units, rounded outwards to float32.
    dim = problem.gallery.shape[1]
    margin = block.errors[rows] + _error64(keys, dim, problem.cosine)  # + the key's own bound
    low = keys - block.offsets[rows] - margin
    high = keys - block.offsets[rows] + margin
    low = (low - np.abs(low) * 2.4e-7 - 1e-37).astype(scores.dtype)
    high = (high + np.abs(high) * 2.4e-7 + 1e-37).astype(scores.dtype)
    # Scores below / up to each bound in the match's row: counted for the k-th matches of all
    # rows at once (rows with many matches go one by one, sorting their candidates instead).
    below = np.zeros(len(rows), dtype=np.int64)
    upto = np.zeros(len(rows), dtype=np.int64)
    few = num_matches[rows] <= _FEW_MATCHES
    for k in range(min(int(num_matches.max(initial=0)), _FEW_MATCHES)):
        slot = np.flatnonzero((position == k) & few)
        for part in np.array_split(slot, max(1, len(slot) // 32)):  # 32 rows copied at a time
            row_scores = scores[rows[part]]
            below[part] = (row_scores < low[part, None]).sum(1)
            upto[part] = (row_scores <= high[part, None]).sum(1)
    # ... less the label items among them (never non-matches).
    group = np.where(few, sizes[rows], 0)
    pairs = np.repeat(np.arange(len(rows)), group)
    pair_items = np.arange(len(pairs)) - np.repeat(np.cumsum(group) - group, group)
    pair_scores = scores[rows[pairs], items[block.out_start[rows[pairs]] + pair_items]]
    below -= np.bincount(pairs, pair_scores < low[pairs], minlength=len(rows)).astype(np.int64)
    upto -= np.bincount(pairs, pair_scores <= high[pairs], minlength=len(rows)).astype(np.int64)
    ranks = 1 + position + below
    # Rows with matches too close to call (to each other or to a non-match): one by one.
    errors = _error64(keys, dim, problem.cosine) + np.zeros(len(keys))
    near = (rows[1:] == rows[:-1]) & (keys[1:] - keys[:-1] <= errors[1:] + errors[:-1])
    many = np.flatnonzero(num_matches > _FEW_MATCHES)
    slow = np.union1d(np.union1d(rows[1:][near], rows[upto > below]), many)
    match_ranks = np.zeros(block.out_size, dtype=np.int64)
    match_ranks[block.out_start[rows] + position] = ranks
    for r in slow:
        row_ranks = _rank_row(problem, block, int(r), scores[r], budget)
        match_ranks[block.out_start[r] : block.out_start[r] + len(row_ranks)] = row_ranks
    return match_ranks, num_matches


def _pair_distances64(
    problem: Problem, block: Block, rows: np.ndarray, items: np.ndarray, chunk: int = 1 << 16
) -> np.ndarray:
    """Float64 distances of (block row, gallery item) pairs, as the numba kernel's."""
    out = np.empty(len(rows), dtype=np.float64)
    step = max(1, chunk // max(problem.gallery.shape[1], 1))
    for begin in range(0, len(rows), step):
        part_rows, part = rows[begin : begin + step], items[begin : begin + step]
        q = problem.queries[block.start + part_rows].astype(np.float64)
        g = problem.gallery[part].astype(np.float64)
        if problem.cosine:
            q_norms = block.q_norms[part_rows]
            g_norms = problem.g_norms[part]
            q /= np.where(q_norms > 0, q_norms, 1.0)[:, None]
            g /= np.where(g_norms > 0, g_norms, 1.0)[:, None]
            out[begin : begin + step] = 1.0 - (q * g).sum(axis=1)
        else:
            out[begin : begin + step] = ((q - g) ** 2).sum(axis=1)
    return out


def _rank_row(
    problem: Problem,
    block: Block,
    r: int,
    row: np.ndarray,
    budget: list[float],
) -> np.ndarray:
    """The ascending ranks of row ``r``'s matches."""
    query = block.start + r
    items = problem.label_order[block.group_start[r] : block.group_stop[r]]
    keep = np.ones(len(items), dtype=bool)
    if problem.use_cameras:
        keep &= problem.g_cameras[items] != problem.q_cameras[query]
    if problem.leave_self_out:
        keep &= items != query
    matches = items[keep]
    if len(matches) == 0:
        return np.zeros(0, dtype=np.int64)
    keys = _distances64(problem, query, block.q_norms[r], matches)
    order = np.lexsort((matches, keys))  # (float64 distance, gallery index)
    matches, keys = matches[order], keys[order]
    _settle_near_ties(problem, query, matches, keys, budget)
    # Bounds of each match's exact distance in score units, rounded outwards to float32.
    margin = block.errors[r] + _error64(keys, problem.gallery.shape[1], problem.cosine)
    low = keys - block.offsets[r] - margin
    high = keys - block.offsets[r] + margin
    low = (low - np.abs(low) * 2.4e-7 - 1e-37).astype(row.dtype)
    high = (high + np.abs(high) * 2.4e-7 + 1e-37).astype(row.dtype)
    # Only scores up to the last bound can be ahead of a match; label items never count.
    pool, item_scores = row[row <= high.max()], row[items]
    if len(matches) <= _FEW_MATCHES:  # count, match by match
        below = (pool < low[:, None]).sum(1) - (item_scores < low[:, None]).sum(1)
        upto = (pool <= high[:, None]).sum(1) - (item_scores <= high[:, None]).sum(1)
    else:  # sort once, binary-search every match's bounds
        pool.sort()
        item_scores.sort()
        below = np.searchsorted(pool, low, "left") - np.searchsorted(item_scores, low, "left")
        upto = np.searchsorted(pool, high, "right") - np.searchsorted(item_scores, high, "right")
    label = problem.q_labels[query]
    for j in np.flatnonzero(upto > below):  # non-matches too close to call in low precision
        close = np.flatnonzero((row >= low[j]) & (row <= high[j]))
        close = close[problem.g_labels[close] != label]
        close_keys = _distances64(problem, query, block.q_norms[r], close)
        below[j] += sum(
            _precedes(problem, query, int(g), key, int(matches[j]), keys[j], budget)
            for g, key in zip(close, close_keys, strict=True)
        )
    return 1 + np.arange(len(matches)) + below


def _distances64(problem: Problem, query: int, q_norm: float, items: np.ndarray) -> np.ndarray:
    """Float64 distances of ``items`` as the numba kernel computes them (same bound)."""
    q = problem.queries[query].astype(np.float64)
    rows = problem.gallery[items].astype(np.float64)
    if problem.cosine:
        g_norms = problem.g_norms[items]
        q_scale = q_norm if q_norm > 0 else 1.0
        g_scale = np.where(g_norms > 0, g_norms, 1.0)
        return 1.0 - ((q / q_scale)[None, :] * (rows / g_scale[:, None])).sum(axis=1)
    return ((q[None, :] - rows) ** 2).sum(axis=1)


def _error64(distance: Any, dim: int, cosine: bool) -> Any:
    """Bound on |float64 distance - real distance| (as in :mod:`plp_eval._kernels`).

    numpy's pairwise summation has a smaller error than the sequential bound used there.
    """
    if cosine:
        return 2.0 * (2 * dim + 10) * _UNIT
    return 2.0 * (dim + 3) * _UNIT * distance + (dim + 1) * 1e-320


def _settle_near_ties(
    problem: Problem, query: int, matches: np.ndarray, keys: np.ndarray, budget: list[float]
) -> None:
    """Reorder (in place) neighbours whose float64 distances are too close to call."""
    for i in range(1, len(matches)):
        j = i
        while j > 0 and _precedes(
            problem, query, int(matches[j]), keys[j], int(matches[j - 1]), keys[j - 1], budget
        ):
            matches[[j - 1, j]] = matches[[j, j - 1]]
            keys[[j - 1, j]] = keys[[j, j - 1]]
            j -= 1


def _precedes(
    problem: Problem, query: int, a: int, key_a: float, b: int, key_b: float, budget: list[float]
) -> bool:
    """Whether gallery item ``a`` ranks before ``b``: exact distance, then gallery index."""
    dim = problem.gallery.shape[1]
    error = _error64(key_a, dim, problem.cosine) + _error64(key_b, dim, problem.cosine)
    if key_a + error < key_b:
        return True
    if key_a > key_b + error:
        return False
    budget[0] -= 1
    if budget[0] < 0:
        raise TooManyTiesError
    sign = _exact_sign(problem, query, a, b)
    return sign < 0 or (sign == 0 and a < b)


def _exact_sign(problem: Problem, query: int, a: int, b: int) -> int:
    """Sign of distance(query, a) - distance(query, b) in rational arithmetic."""
    q = [Fraction(float(x)) for x in problem.queries[query]]
    x = [Fraction(float(v)) for v in problem.gallery[a]]
    y = [Fraction(float(v)) for v in problem.gallery[b]]
    if not problem.cosine:
        difference = sum((u - v) ** 2 - (u - w) ** 2 for u, v, w in zip(q, x, y, strict=True))
    else:  # distance a < b  <=>  sign(q.a) (q.a)^2 / |a|^2 > sign(q.b) (q.b)^2 / |b|^2
        similarity = []
        for g in (x, y):
            dot = sum((u * v for u, v in zip(q, g, strict=True)), Fraction(0))
            norm = sum((v * v for v in g), Fraction(0))
            similarity.append(dot * abs(dot) / norm if norm else Fraction(0))
        difference = similarity[1] - similarity[0]
    return (difference > 0) - (difference < 0)
