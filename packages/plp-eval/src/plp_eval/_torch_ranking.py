"""The torch backend of the exact ranking: scores and candidates on any torch device.

Per block of queries the device computes the float32 scores (the same bounded formulation as
the CPU paths), the largest score that may still be ahead of one of each query's matches
(a match's score + twice the error bound), and the non-matches at or below it; only those go
back to the host, where :func:`plp_eval._numpy_ranking.candidate_values` ranks the matches
exactly (near ties settled in exact arithmetic). The result does not depend on the device's
rounding: any score within the bound gives the same ranks, so every backend agrees bit for bit.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from plp_eval._match_ranks import VALUES
from plp_eval._numpy_ranking import (
    TIE_BUDGET,
    Fallback,
    TieBudget,
    TooManyTiesError,
    candidate_values,
)
from plp_eval._problem import Block, Problem
from plp_eval._threads import num_workers

__all__ = ["DEVICE_BUDGET", "torch_values"]

DEVICE_BUDGET = 1 << 30  # bytes of per-block device memory: rows x gallery x 17 at most
CPU_ROWS = 256  # rows per block on the CPU (as the numpy path)
# Per block, on the host: the matches' scores, candidate rows (block rows), gallery indices
# and scores.
_Candidates = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def torch_values(
    problem: Problem, rows: range, device: Any, fallback: Fallback | None = None
) -> np.ndarray:
    """Per-query values of query ``rows``, the scores computed on ``device``.

    ``fallback(problem, block, scores)`` ranks a block (its scores computed again on the CPU)
    once the exact comparisons exceed their budget; without it TooManyTiesError is raised.
    """
    import torch

    device = torch.device(device)
    num_gallery = len(problem.gallery)
    # Device memory per row: scores (4) + mask (1) + flat candidate index (8) + its score (4).
    per_device = max(1, DEVICE_BUDGET // (17 * num_gallery))
    block_rows = CPU_ROWS if device.type == "cpu" else per_device
    budget = TieBudget(TIE_BUDGET)

    def rank_on_host(block: Block, candidates: _Candidates) -> np.ndarray:
        if budget.left >= 0:
            try:
                return candidate_values(problem, block, *candidates, budget)
            except TooManyTiesError:
                if fallback is None:
                    raise
        assert fallback is not None
        scores = block.left @ problem.matrix
        return fallback(problem, block, scores)

    # The host ranks earlier blocks (numpy, mostly without the GIL) while the device scores
    # the next ones; at most ``workers + 1`` blocks of candidates wait on the host.
    workers = num_workers()
    pending: collections.deque[Future[np.ndarray]] = collections.deque()
    values = []
    with _full_float32_matmul(), ThreadPoolExecutor(max_workers=workers) as host:
        matrix = torch.from_numpy(problem.matrix).to(device)
        for start in range(rows.start, rows.stop, block_rows):
            block = problem.block(start, min(start + block_rows, rows.stop))
            candidates = _device_candidates(problem, block, matrix, device)
            pending.append(host.submit(rank_on_host, block, candidates))
            while len(pending) > workers:
                values.append(pending.popleft().result())
        values.extend(future.result() for future in pending)
    return np.concatenate(values) if values else np.zeros((0, VALUES))


def _device_candidates(problem: Problem, block: Block, matrix: Any, device: Any) -> _Candidates:
    """The block's non-matches that may rank ahead of a match, chosen on ``device``."""
    import torch

    num_gallery = len(problem.gallery)
    size = block.stop - block.start
    sizes = block.group_stop - block.group_start
    item_rows = np.repeat(np.arange(size), sizes)
    within = np.arange(block.out_size) - np.repeat(block.out_start, sizes)
    items = problem.label_order[np.repeat(block.group_start, sizes) + within]
    removed = np.zeros(block.out_size, dtype=bool)
    if problem.use_cameras:
        removed |= problem.g_cameras[items] == problem.q_cameras[block.start + item_rows]
    if problem.leave_self_out:
        removed |= items == block.start + item_rows

    scores = torch.from_numpy(block.left).to(device) @ matrix
    rows_t = torch.from_numpy(item_rows).to(device)
    items_t = torch.from_numpy(items).to(device)
    item_scores = scores[rows_t, items_t]
    keep = torch.from_numpy(~removed).to(device)
    errors = torch.from_numpy(block.errors).to(device)
    # A match's score is within the error of its exact distance: score + 2 error bounds
    # every distance that can be ahead of it.
    tops = torch.full((size,), -torch.inf, dtype=torch.float64, device=device)
    reach = item_scores[keep].double() + 2.0 * errors[rows_t[keep]]
    tops.scatter_reduce_(0, rows_t[keep], reach, reduce="amax")
    tops = torch.where(tops.isfinite(), tops + tops.abs() * 2.4e-7 + 1e-37, tops)
    mask = scores <= tops.to(scores.dtype)[:, None]  # outwards, then to float32
    mask[rows_t, items_t] = False  # label items: matches or removed, never non-matches
    flat = mask.view(-1).nonzero().squeeze(1)
    candidate_scores = scores.view(-1)[flat].cpu().numpy()
    flat_host = flat.cpu().numpy()
    candidate_rows = flat_host // num_gallery
    match_scores = item_scores[keep].cpu().numpy()
    return match_scores, candidate_rows, flat_host - candidate_rows * num_gallery, candidate_scores


@contextlib.contextmanager
def _full_float32_matmul() -> Iterator[None]:
    """Float32 matmuls in full float32 (no TF32): the error bound assumes 24-bit products."""
    import torch

    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
