"""The torch backend of the exact ranking: scores and candidates on any torch device.

Per block of queries the device computes the float32 scores (the same bounded formulation as
the numba backend), the largest score that may still be ahead of one of each query's matches
(a match's score + twice the error bound), and the candidates at or below it; only those go
back to the host, where :func:`plp_eval._kernels.rank_compact` ranks the matches exactly
(near ties settled in exact arithmetic). The result does not depend on the device's rounding:
any score within the bound gives the same ranks, so both backends agree bit for bit.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from plp_eval._match_ranks import VALUES, query_values
from plp_eval._problem import Block, Problem

__all__ = ["DEVICE_BUDGET", "torch_values"]

DEVICE_BUDGET = 1 << 30  # bytes of per-block device memory: rows x gallery x 17 at most
CPU_ROWS = 256  # rows per block on the CPU (as the numba backend)
# Per block: candidate start per row, candidate scores, their gallery indices, label items' scores.
_Candidates = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def torch_values(problem: Problem, rows: range, device: Any) -> np.ndarray:
    """Per-query values of query ``rows``, the scores computed on ``device``."""
    import torch

    from plp_eval._kernels import COSINE, L2, rank_compact
    from plp_eval._ranking import _num_workers

    device = torch.device(device)
    num_gallery = len(problem.gallery)
    # Device memory per row: scores (4) + mask (1) + flat candidate index (8) + its score (4).
    per_device = max(1, DEVICE_BUDGET // (17 * num_gallery))
    block_rows = CPU_ROWS if device.type == "cpu" else per_device
    mode = COSINE if problem.cosine else L2

    def rank_on_host(block: Block, candidates: _Candidates) -> np.ndarray:
        candidate_start, candidate_scores, candidate_index, item_scores = candidates
        match_ranks = np.empty(block.out_size, dtype=np.int64)
        num_matches = np.empty(block.stop - block.start, dtype=np.int64)
        rank_compact(
            candidate_start, candidate_scores, candidate_index, item_scores, block.start,
            problem.queries,
            problem.gallery, problem.q_labels, problem.g_labels, problem.q_cameras,
            problem.g_cameras, problem.use_cameras, problem.leave_self_out,
            problem.label_order, block.group_start, block.group_stop, block.offsets,
            block.errors, block.q_norms, problem.g_norms, mode, block.out_start,
            match_ranks, num_matches,
        )  # fmt: skip
        return query_values(match_ranks, num_matches, block.out_start)

    # The host ranks earlier blocks (numba, without the GIL) while the device scores the next
    # ones; at most ``workers + 1`` blocks of candidates wait on the host.
    workers = _num_workers()
    pending: collections.deque[Future[np.ndarray]] = collections.deque()
    values = []
    with _full_float32_matmul(), ThreadPoolExecutor(max_workers=workers) as host:
        matrix = torch.from_numpy(problem.matrix).to(device)
        for start in range(rows.start, rows.stop, block_rows):
            block = problem.block(start, min(start + block_rows, rows.stop))
            size = block.stop - block.start
            sizes = block.group_stop - block.group_start
            item_rows = np.repeat(np.arange(size), sizes)
            within = np.arange(block.out_size) - np.repeat(block.out_start, sizes)
            items = problem.label_order[np.repeat(block.group_start, sizes) + within]
            removed = np.zeros(block.out_size, dtype=bool)
            if problem.use_cameras:
                removed |= problem.g_cameras[items] == problem.q_cameras[start + item_rows]
            if problem.leave_self_out:
                removed |= items == start + item_rows

            scores = torch.from_numpy(block.left).to(device) @ matrix.T
            rows_t = torch.from_numpy(item_rows).to(device)
            item_scores = scores[rows_t, torch.from_numpy(items).to(device)]
            keep = torch.from_numpy(~removed).to(device)
            errors = torch.from_numpy(block.errors).to(device)
            # A match's score is within the error of its exact distance: score + 2 error
            # bounds every distance that can be ahead of it.
            tops = torch.full((size,), -torch.inf, dtype=torch.float64, device=device)
            reach = item_scores[keep].double() + 2.0 * errors[rows_t[keep]]
            tops.scatter_reduce_(0, rows_t[keep], reach, reduce="amax")
            tops = torch.where(tops.isfinite(), tops + tops.abs() * 2.4e-7 + 1e-37, tops)
            mask = scores <= tops.to(scores.dtype)[:, None]  # outwards, then to float32
            counts = mask.sum(1)
            flat = mask.view(-1).nonzero().squeeze(1)
            candidate_scores = scores.view(-1)[flat].cpu().numpy()
            candidate_index = (flat % num_gallery).cpu().numpy()
            del scores, mask, flat
            item_host = item_scores.double().cpu().numpy()
            candidate_start = np.zeros(size + 1, dtype=np.int64)
            np.cumsum(counts.cpu().numpy(), out=candidate_start[1:])
            candidates = (candidate_start, candidate_scores, candidate_index, item_host)
            pending.append(host.submit(rank_on_host, block, candidates))
            while len(pending) > workers:
                values.append(pending.popleft().result())
        values.extend(future.result() for future in pending)
    return np.concatenate(values) if values else np.zeros((0, VALUES))


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
