"""The junk rule of every query-gallery protocol: which gallery items a query is not compared with.

A gallery item is left out of a query's ranking (and out of the verification pairs) when it is

- the query itself (``query_in_gallery=True``: leave-one-out, gallery item ``i`` is query ``i``);
- in the query's group (a dataset CSV's ``sequence``: frames of one track), or
- of the query's label and camera (Market-1501's rule; with both camera arrays).

A group is one object's track: it holds one label and, with cameras, one camera (checked here).
The group rule is then the camera rule restricted to a group, so both fold into one key per item
(its camera, else its group) and one test: *same label and same key*. The ranking kernels apply
exactly that test.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plp_eval._arrays import as_labels
from plp_eval._errors import PlpEvalError

__all__ = ["junk_keys", "junk_mask", "junk_pairs"]


def junk_keys(
    query_labels: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    query_groups: Any = None,
    gallery_groups: Any = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return the per-item keys ``(query_keys, gallery_keys)`` of the junk rule (None: no rule).

    A gallery item is junk for a query when it has the query's label and key. The keys are the
    cameras when both camera arrays are given, else the groups when both group arrays are given.
    Passed as the cameras of :func:`~plp_eval.reid_metrics` (or any function taking cameras),
    they apply the whole rule (the query itself, with ``query_in_gallery``, is apart).

    Example:
        >>> keys = junk_keys([1, 2], [1, 1, 2], query_groups=[7, 8], gallery_groups=[7, 9, 8])
        >>> [k.tolist() for k in keys]  # gallery items 0 and 2 are in their query's group
        [[7, 8], [7, 9, 8]]

    Raises:
        PlpEvalError: Only one of a pair of arrays is given, lengths differ, or a group holds two
            labels (or, with cameras, two cameras): one line naming the group.
    """
    q_labels = as_labels(query_labels, "query_labels", len(np.asarray(query_labels)))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(np.asarray(gallery_labels)))
    cameras = _pair(query_cameras, gallery_cameras, "cameras", len(q_labels), len(g_labels))
    groups = _pair(query_groups, gallery_groups, "groups", len(q_labels), len(g_labels))
    if groups is not None:
        all_groups = np.concatenate(groups)
        _one_value_per_group(all_groups, np.concatenate([q_labels, g_labels]), "labels")
        if cameras is not None:
            _one_value_per_group(all_groups, np.concatenate(cameras), "cameras")
    keys = cameras if cameras is not None else groups
    return (None, None) if keys is None else keys


def _pair(
    query: Any, gallery: Any, name: str, num_queries: int, num_gallery: int
) -> tuple[np.ndarray, np.ndarray] | None:
    if query is None and gallery is None:
        return None
    if query is None or gallery is None:
        given = "query" if query is not None else "gallery"
        raise PlpEvalError(f"{given}_{name} given without the other side's {name}")
    return (
        as_labels(query, f"query_{name}", num_queries),
        as_labels(gallery, f"gallery_{name}", num_gallery),
    )


def _one_value_per_group(groups: np.ndarray, values: np.ndarray, what: str) -> None:
    """Raise PlpEvalError naming a group that holds two different ``values``."""
    pairs = np.unique(np.stack([groups, values]), axis=1)
    if pairs.shape[1] == len(np.unique(groups)):
        return
    repeated = pairs[0, 1:] == pairs[0, :-1]
    index = int(np.flatnonzero(repeated)[0])
    group, first, second = pairs[0, index], pairs[1, index], pairs[1, index + 1]
    raise PlpEvalError(
        f"group {group} holds {what} {first} and {second}; a group (a sequence: one object's "
        f"track) holds one of each"
    )


def junk_mask(
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    q_keys: np.ndarray | None,
    g_keys: np.ndarray | None,
    start: int,
    leave_self_out: bool,
) -> np.ndarray | None:
    """Return the ``(B, G)`` junk pairs of query rows ``start : start + B`` (None: none).

    ``q_labels`` and ``q_keys`` are the block's own rows; ``leave_self_out`` removes the
    diagonal of the full problem (gallery item ``start + r`` for row ``r``).
    """
    mask: np.ndarray | None = None
    if q_keys is not None and g_keys is not None:
        mask = (q_labels[:, None] == g_labels[None, :]) & (q_keys[:, None] == g_keys[None, :])
    if leave_self_out:
        rows = np.arange(len(q_labels))
        if mask is None:
            mask = np.zeros((len(q_labels), len(g_labels)), dtype=bool)
        mask[rows, start + rows] = True
    return mask


def junk_pairs(
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    q_keys: np.ndarray | None,
    g_keys: np.ndarray | None,
    query_rows: np.ndarray,
    gallery_rows: np.ndarray,
    leave_self_out: bool,
) -> np.ndarray:
    """Return whether each (query row, gallery row) pair is junk; the row arrays broadcast.

    The same rule as :func:`junk_mask`, pair by pair: same label and same key, or (with
    ``leave_self_out``) the query itself.
    """
    shape = np.broadcast_shapes(np.shape(query_rows), np.shape(gallery_rows))
    junk = np.zeros(shape, dtype=bool)
    if q_keys is not None and g_keys is not None:
        junk |= (q_labels[query_rows] == g_labels[gallery_rows]) & (
            q_keys[query_rows] == g_keys[gallery_rows]
        )
    if leave_self_out:
        junk |= np.asarray(query_rows) == np.asarray(gallery_rows)
    return junk
