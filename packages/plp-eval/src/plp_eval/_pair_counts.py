"""Exact order statistics of every query-gallery pair distance, in bounded memory.

The verification ROC needs, over all Q x G pairs (junk left out), a few exact points: the
distance of the (k+1)-th smallest negative pair, the first distance where FMR >= FNMR, the
largest distance below each, and the numbers of positive and negative pairs below them. Holding
all the distances would take Q x G floats (4 GB at 10k x 50k), so the pairs are *counted*
instead, per block of queries, in passes:

A non-negative float's bit pattern, read as an unsigned integer, sorts as the float does. Pass 1
counts positive and negative pairs per bin of the top ``LEVELS[0]`` bits of the pattern (bins
2**-7 = 0.8% wide, relative, for float32); each target then lies in one bin, and the largest
distance below it in that bin or in the last non-empty bin before it. Each further pass
counts only the pairs in those few bins, by the next bits; after the last pass a bin is one
float value, so every count and value is exact. float32 distances take two passes (16 + 15
bits), float64 ones three (21 x 3). Memory: the histograms (2 x 2**21 counts at most) plus one
block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BlockSource", "Located", "PairCounts", "Target", "count_pairs"]

# Bits of the pattern resolved per pass: float32 patterns of non-negative values have 31 bits,
# float64 ones 63.
LEVELS = {np.dtype(np.float32): (16, 15), np.dtype(np.float64): (21, 21, 21)}
WIDTHS = {np.dtype(np.float32): 31, np.dtype(np.float64): 63}
UNSIGNED = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


@dataclass
class BlockSource:
    """Where pair distances come from, a block of query rows at a time.

    Attributes:
        num_queries: Q.
        dtype: float32 or float64, the distances' type.
        blocks: Yields ``(start, distances, positive, valid)`` per block of query rows:
            ``distances`` ``(B, G)`` non-negative (no ``-0.0``, no NaN), ``positive`` (same
            label) and ``valid`` (not junk; None: all valid) boolean ``(B, G)``.
    """

    num_queries: int
    dtype: np.dtype
    blocks: Callable[[], Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]]


@dataclass
class Target:
    """An order statistic to locate.

    ``kind == "negatives"``: the first distance at which more than ``k`` negative pairs are
    accepted (the (k+1)-th smallest negative). ``kind == "crossing"``: the first distance at
    which ``FMR >= FNMR`` (``neg * P >= (P - pos) * N`` over the pairs accepted).
    """

    kind: str
    k: int = 0


@dataclass
class Located:
    """Where a target lies, exactly.

    Attributes:
        value: Its distance (None: beyond the largest distance; the target does not occur).
        before: ``(positive, negative)`` pairs with a smaller distance.
        at: ``(positive, negative)`` pairs at exactly ``value``.
        previous: The largest distance below ``value`` (None: there is none).
    """

    value: float | None
    before: tuple[int, int]
    at: tuple[int, int]
    previous: float | None


@dataclass
class PairCounts:
    """What the passes give: the totals, the coarse histogram and the located targets.

    Attributes:
        positives: Positive (same-label) pairs, junk left out.
        negatives: Negative pairs, junk left out.
        histogram: ``(bins, 2)`` pairs per first-pass bin (positive, negative).
        dtype: The distances' type.
        located: One :class:`Located` per target, in order.
    """

    positives: int
    negatives: int
    histogram: np.ndarray
    dtype: np.dtype
    located: list[Located] = field(default_factory=list)

    def bin_tops(self, bins: np.ndarray) -> np.ndarray:
        """Return the largest distance first-pass ``bins`` can hold, as float64."""
        unsigned = UNSIGNED[self.dtype]
        shift = unsigned(WIDTHS[self.dtype] - LEVELS[self.dtype][0])
        tops = ((np.asarray(bins).astype(unsigned) + unsigned(1)) << shift) - unsigned(1)
        return tops.view(self.dtype).astype(np.float64)


@dataclass
class _State:
    target: int | None  # prefix of the bin holding the target (None: past the last value)
    previous: int | None  # prefix of the last non-empty bin before it (None: none)
    before: tuple[int, int]
    at: tuple[int, int] = (0, 0)


def count_pairs(
    source: BlockSource,
    targets: Callable[[int, int], list[Target]],
    first_pass: Callable[[int, np.ndarray, np.ndarray, np.ndarray | None], None] | None = None,
) -> PairCounts:
    """Return the pair totals and the exact location of each target.

    Args:
        source: The pair distances, by blocks (read once per pass).
        targets: Given the numbers of positive and negative pairs (known after the first
            pass), returns the targets to locate.
        first_pass: Sees every block of the first pass (the open-set statistics are
            gathered there).
    """
    dtype = np.dtype(source.dtype)
    levels, width = LEVELS[dtype], WIDTHS[dtype]
    unsigned = UNSIGNED[dtype]
    shift = width - levels[0]
    size = 1 << levels[0]
    every, same = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
    for start, distances, positive, valid in source.blocks():
        if first_pass is not None:
            first_pass(start, distances, positive, valid)
        bins = distances.view(unsigned) >> unsigned(shift)
        if valid is not None:  # junk goes to one more bin, dropped
            bins = np.where(valid, bins, size)
        every += np.bincount(bins.ravel(), minlength=size + 1)[:size]
        same += np.bincount(bins[positive], minlength=size + 1)[:size]  # positives: a few
    histogram = np.stack([same, every - same], axis=1)
    positives, negatives = (int(total) for total in histogram.sum(axis=0))
    counts = PairCounts(positives, negatives, histogram, dtype)
    wanted = targets(positives, negatives)
    states = [_start(histogram, target, positives, negatives) for target in wanted]
    done = levels[0]
    for bits in levels[1:]:
        prefixes = sorted({p for s in states for p in (s.target, s.previous) if p is not None})
        requests = np.array(prefixes, dtype=np.uint64)
        sub = np.zeros((len(requests), 1 << bits, 2), dtype=np.int64)
        if len(requests):
            for _, distances, positive, valid in source.blocks():
                sub += _sub_histogram(
                    distances.view(unsigned), positive, valid, requests, width - done, bits
                )
        index = {int(p): i for i, p in enumerate(prefixes)}
        states = [
            _refine(state, target, sub, index, bits, positives, negatives)
            for state, target in zip(states, wanted, strict=True)
        ]
        done += bits
    counts.located = [_result(state, unsigned, dtype) for state in states]
    return counts


def _sub_histogram(
    patterns: np.ndarray,
    positive: np.ndarray,
    valid: np.ndarray | None,
    requests: np.ndarray,
    prefix_shift: int,
    bits: int,
) -> np.ndarray:
    """``(len(requests), 2**bits, 2)`` counts of the pairs in the requested bins, by next bits."""
    kind = patterns.dtype.type
    prefix = (patterns >> kind(prefix_shift)).ravel()
    if valid is not None:  # no prefix has every bit set: junk matches no request
        prefix[~valid.ravel()] = np.iinfo(patterns.dtype).max
    flat, same = patterns.ravel(), positive.ravel()
    size = 1 << bits
    counts = np.zeros((len(requests), size, 2), dtype=np.int64)
    for slot, request in enumerate(requests):
        found = np.flatnonzero(prefix == kind(request))
        if len(found) == 0:
            continue
        sub = ((flat[found] >> kind(prefix_shift - bits)) & kind(size - 1)).astype(np.intp)
        every = np.bincount(sub, minlength=size)
        counts[slot, :, 0] = np.bincount(sub[same[found]], minlength=size)
        counts[slot, :, 1] = every - counts[slot, :, 0]
    return counts


def _first(cumulative: np.ndarray, target: Target, positives: int, negatives: int) -> int:
    """Index of the first row of ``cumulative`` ``(n, 2)`` meeting ``target`` (n: none)."""
    if target.kind == "negatives":
        return int(np.searchsorted(cumulative[:, 1], target.k + 1, side="left"))
    low, high = 0, len(cumulative)  # exact integer test, monotone in the rows: bisect
    while low < high:
        middle = (low + high) // 2
        pos, neg = (int(v) for v in cumulative[middle])
        if neg * positives >= (positives - pos) * negatives:
            high = middle
        else:
            low = middle + 1
    return low


def _last_nonempty(counts: np.ndarray, stop: int) -> int | None:
    filled = np.flatnonzero(counts[:stop].sum(axis=1))
    return int(filled[-1]) if len(filled) else None


def _start(histogram: np.ndarray, target: Target, positives: int, negatives: int) -> _State:
    cumulative = np.cumsum(histogram, axis=0)
    index = _first(cumulative, target, positives, negatives)
    if index == len(histogram):
        return _State(None, _last_nonempty(histogram, index), (positives, negatives))
    before = cumulative[index] - histogram[index]
    return _State(
        index, _last_nonempty(histogram, index), (int(before[0]), int(before[1])),
        (int(histogram[index, 0]), int(histogram[index, 1])),
    )  # fmt: skip


def _refine(
    state: _State,
    target: Target,
    sub: np.ndarray,
    index: dict[int, int],
    bits: int,
    positives: int,
    negatives: int,
) -> _State:
    """The state one level finer, from the sub-histograms of its bins."""
    previous = None
    if state.previous is not None:
        last = _last_nonempty(sub[index[state.previous]], 1 << bits)
        assert last is not None  # a non-empty bin has a non-empty sub-bin
        previous = state.previous << bits | last
    if state.target is None:
        return _State(None, previous, state.before)
    counts = sub[index[state.target]]
    cumulative = np.cumsum(counts, axis=0) + np.array(state.before)
    j = _first(cumulative, target, positives, negatives)
    assert j < len(counts)  # the coarse bin met the target at its end
    inside = _last_nonempty(counts, j)
    if inside is not None:
        previous = state.target << bits | inside
    before = cumulative[j] - counts[j]
    return _State(
        state.target << bits | j, previous, (int(before[0]), int(before[1])),
        (int(counts[j, 0]), int(counts[j, 1])),
    )  # fmt: skip


def _result(state: _State, unsigned: type, dtype: np.dtype) -> Located:
    def value(pattern: int | None) -> float | None:
        if pattern is None:
            return None
        return float(np.array([pattern], dtype=unsigned).view(dtype)[0])

    return Located(value(state.target), state.before, state.at, value(state.previous))
