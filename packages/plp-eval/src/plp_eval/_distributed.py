"""Ranking across processes: each rank takes a share of the queries, values all-reduced."""

from __future__ import annotations

import numpy as np

from plp_eval._errors import PlpEvalError

__all__ = ["gather_values", "share"]


def share(num_queries: int) -> range:
    """Return this rank's contiguous share of the queries (raise outside a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise PlpEvalError(
            "distributed=True needs an initialised torch.distributed process group "
            "(torch.distributed.init_process_group)"
        )
    rank, world = dist.get_rank(), dist.get_world_size()
    return range(num_queries * rank // world, num_queries * (rank + 1) // world)


def gather_values(values: np.ndarray, rows: range, num_queries: int) -> np.ndarray:
    """Return every rank's per-query values in one ``(num_queries, ...)`` array.

    Each rank writes its rows into zeros and the arrays are summed (all-reduce): adding
    zeros is exact, so every rank gets the values one process would have computed, and the
    means that follow are the same bits.
    """
    import torch
    import torch.distributed as dist

    full = np.zeros((num_queries, values.shape[1]), dtype=np.float64)
    full[rows.start : rows.stop] = values
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        device = torch.device("cuda", torch.cuda.current_device())
    tensor = torch.from_numpy(full).to(device)
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()
