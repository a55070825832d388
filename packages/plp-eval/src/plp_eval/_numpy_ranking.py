"""The exact ranking in numpy: the default CPU path, with nothing to compile or load.

Per block of queries, with the scores and bounds of :mod:`plp_eval._problem` (the numba
kernels of :mod:`plp_eval._kernels` rank the same way):

1. Each query's matches (its label group less the removed items) get their float64 distance
   (a key with a proven bound) and are sorted by (key, gallery index); neighbours closer than
   their bounds are ordered exactly.
2. Each match's real distance lies in a window of scores ``[low, high]`` (score units, rounded
   outwards): a non-match scored below ``low`` is certainly ahead of it, above ``high``
   certainly behind.
3. The candidates (non-matches scored at or below the largest ``high`` of their row) are
   gathered in one pass over the block, sorted by (row, score), and each window counted by
   binary search: rank = 1 + matches ahead + non-matches certainly ahead.
4. Non-matches inside a window are compared with the match by float64 key and bound, and the
   few too close to call exactly (integer arithmetic on the given values; see
   :func:`exact_sign`). Past ``tie_budget`` exact comparisons (real ties by the thousand:
   integer features, hash codes) :class:`TooManyTiesError` hands the block over to numba.

With given distances (:func:`plp_eval._problem.given_problem`) the scores are the keys and
equal numbers are ordered by gallery index.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from plp_eval._match_ranks import query_values
from plp_eval._problem import Block, Problem
from plp_eval._threads import map_blocks

__all__ = [
    "CANDIDATES",
    "TIE_BUDGET",
    "TieBudget",
    "TooManyTiesError",
    "block_values",
    "candidate_values",
    "exact_sign",
    "numpy_values",
]

TIE_BUDGET = 2000  # exact comparisons per call before handing over to numba (~50 us each)
_UNIT = 2.0**-53
_PAIRS = 1 << 18  # (match, non-match) pairs compared at once: bounds the memory of a block
# Candidates ranked at once (rows with many matches gather most of the gallery): memory of
# at most 64 bytes each, unless one row has more.
CANDIDATES = 1 << 16


class TooManyTiesError(Exception):
    """More near ties than exact integer arithmetic settles quickly: use the numba kernels."""


class TieBudget:
    """Exact comparisons left to one call (shared by its worker threads)."""

    def __init__(self, limit: float) -> None:
        self.left = limit
        self._lock = threading.Lock()

    def spend(self) -> None:
        """Count one exact comparison; raise TooManyTiesError past the budget."""
        with self._lock:
            self.left -= 1
            if self.left < 0:
                raise TooManyTiesError


Fallback = Callable[[Problem, Block, np.ndarray], np.ndarray]
Buffers = tuple[np.ndarray, np.ndarray]  # a block of scores and its candidate mask


def numpy_values(
    problem: Problem, rows: range, tie_budget: float = TIE_BUDGET, fallback: Fallback | None = None
) -> np.ndarray:
    """Per-query values of query ``rows``: float32 matmul per block, then :func:`block_values`.

    Args:
        problem: The prepared problem.
        rows: The queries to rank.
        tie_budget: Exact comparisons allowed to the whole call.
        fallback: ``fallback(problem, block, scores)`` ranks the blocks left once the budget
            is spent (the numba kernels); without it TooManyTiesError is raised.
    """
    budget = TieBudget(tie_budget)

    def make_buffers(block_rows: int) -> Buffers:
        shape = (block_rows, len(problem.gallery))
        return np.empty(shape, dtype=problem.matrix.dtype), np.empty(shape, dtype=bool)

    def rank(start: int, stop: int, buffers: Buffers) -> np.ndarray:
        block = problem.block(start, stop)
        scores, mask = buffers[0][: stop - start], buffers[1][: stop - start]
        np.matmul(block.left, problem.matrix, out=scores)
        if budget.left >= 0:
            try:
                return block_values(problem, block, scores, mask, budget)
            except TooManyTiesError:
                if fallback is None:
                    raise
        assert fallback is not None
        return fallback(problem, block, scores)

    row_bytes = (problem.matrix.itemsize + 1) * len(problem.gallery)  # scores and mask
    return map_blocks(rows, row_bytes, make_buffers, rank)


@dataclass(frozen=True)
class _Matches:
    """A block's matches by row, each row in exact order, and their windows of scores."""

    rows: np.ndarray  # block row of each match
    items: np.ndarray  # gallery index
    scores: np.ndarray  # the match's own score (scores' dtype)
    keys: np.ndarray  # float64 distance where computed, else NaN (given: the given number)
    position: np.ndarray  # index of the match within its row
    num_matches: np.ndarray  # (B,) per row
    first: np.ndarray  # (B,) where each row's matches start
    low: np.ndarray  # scores below this are certainly ahead of the match (scores' dtype)
    high: np.ndarray  # scores above this are certainly behind it

    def rows_between(self, begin: int, end: int) -> _Matches:
        """The matches of block rows ``begin:end`` (``first`` counted from the first)."""
        start = self.first[begin]
        stop = self.first[end - 1] + self.num_matches[end - 1]
        return _Matches(
            self.rows[start:stop], self.items[start:stop], self.scores[start:stop],
            self.keys[start:stop], self.position[start:stop], self.num_matches,
            self.first - start, self.low[start:stop], self.high[start:stop],
        )  # fmt: skip


def block_values(
    problem: Problem, block: Block, scores: np.ndarray, mask: np.ndarray, budget: TieBudget
) -> np.ndarray:
    """The ``(rows, VALUES)`` per-query values of a block, given its scores.

    ``mask`` is a boolean buffer of the scores' shape (overwritten).
    """
    item_rows, items, keep = _label_items(problem, block)
    rows, match_items = item_rows[keep], items[keep]
    matches = _sorted_matches(problem, block, rows, match_items, scores[rows, match_items], budget)
    # Candidates: non-matches at or below the last window of their row, in one pass.
    top = np.full(len(scores), -np.inf, dtype=scores.dtype)
    has = matches.num_matches > 0
    if has.any():
        top[has] = np.maximum.reduceat(matches.high, matches.first[has])
    np.less_equal(scores, top[:, None], out=mask)
    mask[item_rows, items] = False  # label items are matches or removed: never non-matches
    ranks = np.empty(len(matches.rows), dtype=np.int64)
    num_gallery = scores.shape[1]
    for begin, end in _row_groups(mask):
        flat = np.flatnonzero(mask[begin:end])
        candidate_rows = flat // num_gallery
        candidate_index = flat - candidate_rows * num_gallery
        candidate_scores = scores[begin:end].reshape(-1)[flat]
        group = matches.rows_between(begin, end)
        ranks[matches.first[begin] : matches.first[begin] + len(group.rows)] = _ranks(
            problem, block, group, candidate_rows + begin, candidate_index, candidate_scores,
            budget,
        )  # fmt: skip
    return query_values(ranks, matches.num_matches, matches.first)


def _row_groups(mask: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive rows of ``mask`` with at most ``CANDIDATES`` true values (or one row)."""
    if np.count_nonzero(mask) <= CANDIDATES:
        return [(0, len(mask))]
    # Row by row: 4x faster than count_nonzero(axis=1), which sums the booleans as integers.
    ends = np.cumsum(np.fromiter((np.count_nonzero(row) for row in mask), np.int64, len(mask)))
    groups, begin = [], 0
    while begin < len(mask):
        before = ends[begin - 1] if begin else 0
        end = max(int(np.searchsorted(ends, before + CANDIDATES, "right")), begin + 1)
        groups.append((begin, end))
        begin = end
    return groups


def candidate_values(
    problem: Problem,
    block: Block,
    match_scores: np.ndarray,
    candidate_rows: np.ndarray,
    candidate_index: np.ndarray,
    candidate_scores: np.ndarray,
    budget: TieBudget,
) -> np.ndarray:
    """:func:`block_values` from candidates chosen elsewhere (the torch backend's device).

    ``match_scores``: the scores of the block's matches, in the order of its label groups
    (removed items left out). The candidates must include every non-match of a row scored at
    or below ``score + 2 error`` of one of the row's matches (more is fine) and no item of
    the row's label group.
    """
    item_rows, items, keep = _label_items(problem, block)
    matches = _sorted_matches(problem, block, item_rows[keep], items[keep], match_scores, budget)
    ranks = _ranks(
        problem, block, matches, candidate_rows, candidate_index, candidate_scores, budget
    )
    return query_values(ranks, matches.num_matches, matches.first)


def _label_items(problem: Problem, block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's label group (block row, gallery item) and which of them are matches."""
    sizes = block.group_stop - block.group_start
    item_rows = np.repeat(np.arange(block.stop - block.start), sizes)
    within = np.arange(block.out_size) - np.repeat(block.out_start, sizes)
    items = problem.label_order[np.repeat(block.group_start, sizes) + within]
    keep = np.ones(block.out_size, dtype=bool)
    if problem.use_cameras:
        keep &= problem.g_cameras[items] != problem.q_cameras[block.start + item_rows]
    if problem.leave_self_out:
        keep &= items != block.start + item_rows
    return item_rows, items, keep


def _sorted_matches(
    problem: Problem,
    block: Block,
    rows: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    budget: TieBudget,
) -> _Matches:
    """The matches sorted by row, then exactly; with their windows.

    A match's real distance minus the row's offset lies within ``error`` of its score, so
    matches whose ``[score - error, score + error]`` intervals do not overlap are in score
    order; only chains of overlapping ones are sorted by float64 key (then exactly). A
    non-match scored below ``score - 2 error`` is certainly ahead of the match, above
    ``score + 2 error`` certainly behind: the window, rounded outwards.
    """
    order = np.lexsort((items, scores, rows))  # by row, then (score, gallery index)
    rows, items, scores = rows[order], items[order], scores[order]
    num_matches = np.bincount(rows, minlength=block.stop - block.start)
    first = np.cumsum(num_matches) - num_matches
    wide = scores.astype(np.float64)
    if problem.given:  # the scores are the distances: (score, index) is the exact order
        keys, low, high = wide, scores, scores
    else:
        keys = np.full(len(rows), np.nan)
        errors = block.errors[rows]
        same_row = rows[1:] == rows[:-1]
        # 1% more than twice the bound: float64 rounding of the difference cannot matter.
        overlap = same_row & (wide[1:] - wide[:-1] <= 2.02 * errors[1:])
        if overlap.any():
            _sort_overlapping(problem, block, rows, items, scores, keys, overlap, budget)
        reach = 2.0 * errors
        low, high = wide - reach, wide + reach
        # Outwards to the scores' precision (float32 rounding error < 2.4e-7 relative).
        low = (low - np.abs(low) * 2.4e-7 - 1e-37).astype(scores.dtype)
        high = (high + np.abs(high) * 2.4e-7 + 1e-37).astype(scores.dtype)
    position = np.arange(len(rows)) - first[rows]
    return _Matches(rows, items, scores, keys, position, num_matches, first, low, high)


def _sort_overlapping(
    problem: Problem,
    block: Block,
    rows: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    keys: np.ndarray,
    overlap: np.ndarray,
    budget: TieBudget,
) -> None:
    """Sort (in place) each chain of matches with overlapping intervals into exact order."""
    chain = np.concatenate([[0], np.cumsum(~overlap)])  # chain number of each match
    linked = np.zeros(len(rows), dtype=bool)
    linked[1:] |= overlap
    linked[:-1] |= overlap
    members = np.flatnonzero(linked)  # matches in chains of two or more, chain by chain
    keys[members] = pair_distances64(problem, block, rows[members], items[members])
    order = members[np.lexsort((items[members], keys[members], chain[members]))]
    for values in (items, scores, keys):
        values[members] = values[order]
    # Neighbours too close to call in float64: their chains exactly.
    bound = error64(keys[members], problem.gallery.shape[1], problem.cosine)
    member_keys, member_chain = keys[members], chain[members]
    near = (member_chain[1:] == member_chain[:-1]) & (
        member_keys[1:] - member_keys[:-1] <= bound[1:] + bound[:-1]
    )
    for number in np.unique(member_chain[1:][near]):
        where = members[member_chain == number]
        chain_slice = slice(where[0], where[-1] + 1)
        query = block.start + int(rows[where[0]])
        _exact_sort(
            problem, query, keys[chain_slice], budget, items[chain_slice], scores[chain_slice]
        )


def _ranks(
    problem: Problem,
    block: Block,
    matches: _Matches,
    candidate_rows: np.ndarray,
    candidate_index: np.ndarray,
    candidate_scores: np.ndarray,
    budget: TieBudget,
) -> np.ndarray:
    """Each match's rank: 1 + matches ahead + non-matches ahead (candidates counted).

    The candidates come row by row (rows ascending). Candidates and window bounds become
    int64 keys ordered by (row, score), ``high`` as ``high + 1`` (``c <= high`` is then
    ``c < high + 1``). One binary search of every candidate among the sorted bounds gives,
    by cumulative counts, the candidates below each bound, and, by the number of windows
    opened and not closed at or below it, whether the candidate lies in a window: no sort
    of the candidates.
    """
    keys_of = _ordered_keys(candidate_scores, matches.low, matches.high)
    candidate_keys = _by_row(candidate_rows, keys_of(candidate_scores))
    lows = _by_row(matches.rows, keys_of(matches.low))
    highs = _by_row(matches.rows, keys_of(matches.high)) + 1
    both = np.concatenate([lows, highs])
    order = np.argsort(both, kind="stable")
    bounds = both[order]
    position = np.searchsorted(bounds, candidate_keys, "right")  # bounds <= each candidate
    # below[i]: candidates with key < bounds[i]; open[i]: windows holding a key just >= it.
    below = np.cumsum(np.bincount(position, minlength=len(bounds) + 1))
    open_windows = np.concatenate([[0], np.cumsum(np.where(order < len(lows), 1, -1))])
    earlier = np.searchsorted(candidate_rows, matches.rows)  # candidates of earlier rows
    ranks = 1 + matches.position + below[np.searchsorted(bounds, lows, "left")] - earlier
    inside = np.flatnonzero(open_windows[position] > 0)
    if len(inside) == 0:
        return ranks
    # A row's windows all have the same width: sorted by low, their highs are sorted too,
    # and the windows holding a candidate are consecutive: from the first whose high is
    # not below it to the last whose low is not above it. Each (window, candidate) pair is
    # compared; a bounded number of pairs at once.
    by_low = np.lexsort((highs, lows))
    first_window = np.searchsorted(highs[by_low], candidate_keys[inside], "right")
    counts = np.searchsorted(lows[by_low], candidate_keys[inside], "right") - first_window
    ends = np.cumsum(counts)
    begin = 0
    while begin < len(inside):
        stop = int(np.searchsorted(ends, ends[begin] - counts[begin] + _PAIRS, "right"))
        stop = max(stop, begin + 1)
        part_counts = counts[begin:stop]
        pair_candidate = np.repeat(inside[begin:stop], part_counts)
        pair_window = np.repeat(first_window[begin:stop] - np.cumsum(part_counts) + part_counts,
                                part_counts) + np.arange(len(pair_candidate))  # fmt: skip
        pair_match = by_low[pair_window]
        before = _ahead(
            problem, block, matches, pair_match, candidate_index[pair_candidate],
            candidate_scores[pair_candidate], budget,
        )  # fmt: skip
        ranks += np.bincount(pair_match, before, minlength=len(ranks)).astype(np.int64)
        begin = stop
    return ranks


def _ordered_keys(*arrays: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A map from scores to int64 keys in the same order (equal scores, equal keys).

    float32: the bits, negative values flipped (-0.0 first made +0.0). Otherwise: the rank
    among all the values given (``np.unique``).
    """
    if arrays[0].dtype == np.float32:

        def float32_keys(values: np.ndarray) -> np.ndarray:
            bits = (values + np.float32(0.0)).view(np.int32)
            bits ^= (bits >> 31) & 0x7FFFFFFF  # negative values: magnitude bits reversed
            return bits.view(np.uint32).astype(np.int64) ^ (1 << 31)

        return float32_keys
    distinct = np.unique(np.concatenate(arrays))
    return lambda values: np.searchsorted(distinct, values).astype(np.int64)


def _by_row(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Keys ordered by (row, key) as one int64 (keys in [0, 2**32))."""
    return (rows.astype(np.int64) << 32) | keys


def _ahead(
    problem: Problem,
    block: Block,
    matches: _Matches,
    pair_match: np.ndarray,
    others: np.ndarray,
    other_scores: np.ndarray,
    budget: TieBudget,
) -> np.ndarray:
    """Whether each non-match ``others[p]`` ranks ahead of match ``pair_match[p]``."""
    match_items = matches.items[pair_match]
    if problem.given:
        match_keys = matches.keys[pair_match]
        other_keys = other_scores.astype(np.float64)
        return (other_keys < match_keys) | ((other_keys == match_keys) & (others < match_items))
    missing = np.unique(pair_match[np.isnan(matches.keys[pair_match])])
    matches.keys[missing] = pair_distances64(
        problem, block, matches.rows[missing], matches.items[missing]
    )
    match_keys = matches.keys[pair_match]
    rows = matches.rows[pair_match]
    other_keys = pair_distances64(problem, block, rows, others)
    dim = problem.gallery.shape[1]
    bound = error64(other_keys, dim, problem.cosine) + error64(match_keys, dim, problem.cosine)
    ahead = other_keys + bound < match_keys
    for p in np.flatnonzero(~ahead & (other_keys <= match_keys + bound)):  # too close to call
        budget.spend()
        query = block.start + int(rows[p])
        ahead[p] = _exactly_before(problem, query, int(others[p]), int(match_items[p]))
    return ahead


def _exact_sort(
    problem: Problem,
    query: int,
    keys: np.ndarray,
    budget: TieBudget,
    items: np.ndarray,
    *others: np.ndarray,
) -> None:
    """Insertion-sort ``items`` (sorted by float64 ``keys``) in place into the exact order.

    ``keys`` and ``others`` are permuted along.
    """
    dim = problem.gallery.shape[1]
    bounds = error64(keys, dim, problem.cosine) + np.zeros(len(keys))
    for i in range(1, len(items)):
        j = i
        while j > 0:
            a, b = j, j - 1
            if keys[a] - bounds[a] > keys[b] + bounds[b]:  # certainly behind: in place
                break
            if keys[a] + bounds[a] >= keys[b] - bounds[b]:  # too close to call
                budget.spend()
                if not _exactly_before(problem, query, int(items[a]), int(items[b])):
                    break
            for values in (items, keys, bounds, *others):
                values[[a, b]] = values[[b, a]]
            j -= 1


def _exactly_before(problem: Problem, query: int, a: int, b: int) -> bool:
    """Whether gallery item ``a`` ranks before ``b``: exact distance, then gallery index."""
    sign = exact_sign(
        problem.queries[query], problem.gallery[a], problem.gallery[b], problem.cosine
    )
    return sign < 0 or (sign == 0 and a < b)


def exact_sign(query: np.ndarray, a: np.ndarray, b: np.ndarray, cosine: bool) -> int:
    """Sign of distance(query, a) - distance(query, b) in real arithmetic (finite floats).

    The three vectors become Python integers at one power-of-two scale (every float is an
    integer times a power of two), so every sum and product below is exact. L2 compares
    ``|q-a|^2 - |q-b|^2``; cosine compares ``sign(q.g) (q.g)^2 / |g|^2`` (a zero vector:
    similarity 0), which orders the gallery as cosine similarity does.

    Example:
        >>> exact_sign(np.array([0.1]), np.array([0.3]), np.array([-0.1]), cosine=False)
        0
    """
    q, x, y = _integers(np.stack([query, a, b]))
    if not cosine:
        return _sign(((q - x) ** 2 - (q - y) ** 2).sum())
    dot_a, dot_b, norm_a, norm_b = (q * x).sum(), (q * y).sum(), (x * x).sum(), (y * y).sum()
    # similarity s(g) = dot |dot| / norm (0 for a zero vector); sign(s(b) - s(a)), norms >= 0
    if norm_a == 0 or norm_b == 0:
        return _sign((dot_b * abs(dot_b) if norm_b else 0) * (norm_a or 1)
                     - (dot_a * abs(dot_a) if norm_a else 0) * (norm_b or 1))  # fmt: skip
    return _sign(dot_b * abs(dot_b) * norm_a - dot_a * abs(dot_a) * norm_b)


def _integers(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` as an object array of Python ints, all scaled by one power of two."""
    mantissas, exponents = np.frexp(vectors.astype(np.float64))
    integers = (mantissas * 2.0**53).astype(np.int64)  # exact: 53 bits
    nonzero = integers != 0
    lowest = exponents[nonzero].min() if nonzero.any() else 0
    shifts = np.where(nonzero, exponents - lowest, 0)
    return integers.astype(object) << shifts.astype(object)


def _sign(value: object) -> int:
    return int(value > 0) - int(value < 0)  # type: ignore[operator]


def pair_distances64(
    problem: Problem, block: Block, rows: np.ndarray, items: np.ndarray, chunk: int = 1 << 16
) -> np.ndarray:
    """Float64 distances of (block row, gallery item) pairs, within :func:`error64`.

    As the numba kernel computes them: squared L2, or 1 - the cosine of the normalised
    vectors (a zero vector has similarity 0).
    """
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
            out[begin : begin + step] = 1.0 - np.einsum("ij,ij->i", q, g)
        else:
            q -= g
            out[begin : begin + step] = np.einsum("ij,ij->i", q, q)
    return out


def error64(distance: np.ndarray, dim: int, cosine: bool) -> np.ndarray:
    """Bound on |float64 distance - real distance| (twice the worst case; see the kernels).

    L2: a sum of ``dim`` rounded squared differences, relative error at most (dim + 2) u;
    cosine: below (2 dim + 10) u absolute. ``u = 2**-53``; any summation order.
    """
    if cosine:
        return np.full(np.shape(distance), 2.0 * (2 * dim + 10) * _UNIT)
    return 2.0 * (dim + 3) * _UNIT * distance + (dim + 1) * 1e-320
