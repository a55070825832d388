"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), memory-bounded: no (Q+G)^2 matrix.

The result equals torchreid's ``re_ranking`` (fast-reid's is the same algorithm) given plp's
distances, but its memory grows linearly with the number of items instead of quadratically:
neighbour lists come from a blockwise top-k, the encodings ``V`` are sparse (a few dozen
entries per item), and the Jaccard distances are computed one query block at a time from an
inverted index of the gallery's encodings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from plp_core import DEFAULT_MAX_RANK, RERANK_K1, RERANK_K2, RERANK_LAMBDA
from plp_eval._arrays import as_features, as_labels
from plp_eval._errors import PlpEvalError
from plp_eval._problem import check_metric
from plp_eval._ranking import ReidMetrics

if TYPE_CHECKING:
    import torch

__all__ = ["rerank", "rerank_reid_metrics"]

BLOCK_SIZE = 256  # rows of the distance blocks (memory: about 24 x block_size x items bytes)
_PAIRS = 1 << 13  # item pairs whose exact float64 distance is computed at once


def rerank(
    query_features: Any,
    gallery_features: Any,
    k1: int = RERANK_K1,
    k2: int = RERANK_K2,
    lambda_value: float = RERANK_LAMBDA,
    metric: str = "euclidean",
    block_size: int = BLOCK_SIZE,
    query_in_gallery: bool = False,
    device: str | torch.device | None = None,
) -> Iterator[np.ndarray]:
    """Return an iterator over the re-ranked query x gallery distances, one query block at a time.

    Each item yields a float64 ``(rows, G)`` block of consecutive queries (``block_size`` rows,
    fewer in the last); concatenated they are the ``(Q, G)`` re-ranked distance matrix. The
    arguments are checked and the encodings built when this is called; the blocks are computed
    as they are consumed.

    Definitions (torchreid's ``re_ranking``, defaults k1=20, k2=6, lambda=0.3):

    - Items are the queries followed by the gallery (with ``query_in_gallery``, the gallery
      alone: query ``i`` is gallery item ``i``, the leave-one-out protocol).
    - Original distance ``d(i, j)``: the squared metric distance (``euclidean``: squared L2;
      ``cosine``: (1 - cosine similarity)^2), divided by the largest ``d(i, .)`` over all items.
    - ``N(i, k)``: the ``k`` items nearest ``i`` (``i`` itself included), equal distances
      ordered by item index. ``R(i, k)`` = {j in N(i, k): i in N(j, k)} (k-reciprocal).
    - Expansion: ``R*(i) = R(i, k1+1)`` united with every ``R(c, round(k1/2)+1)``, c in it, that
      shares more than 2/3 of its items with ``R(i, k1+1)``.
    - Encoding ``V(i)``: weights ``exp(-d(i, j))`` over ``j`` in ``R*(i)``, summed to 1; then
      (if ``k2 > 1``) local query expansion: ``V(i)`` = mean of ``V(j)`` over ``N(i, k2)``.
    - Jaccard distance ``1 - m / (2 - m)`` with ``m = sum_j min(V(q)_j, V(g)_j)``; the result
      is ``(1 - lambda_value) * jaccard + lambda_value * d(q, g)``.

    Everything is computed in float64, float32 features included (each float32 value is a
    float64 value): the result for float32 features is that of the same values in float64.

    Memory (N items, D dims, B = ``block_size``, K = max(k1 + 1, k2)): the features and
    ``N x K`` neighbour indices; one ``B x N`` distance block at a time; the sparse encodings,
    at most ``N x K x (round(k1/2) + 2)`` entries before query expansion and ``k2`` times that
    after (in practice a few dozen per item, 16 bytes each); per query block the ``B x G``
    float64 result and one ``B x G`` block of original distances. Nothing grows as N^2.

    Args:
        query_features: ``(Q, D)`` query embeddings (array or tensor).
        gallery_features: ``(G, D)`` gallery embeddings.
        k1: Neighbours of the k-reciprocal sets.
        k2: Neighbours of the local query expansion (1: none).
        lambda_value: Weight of the original distance, in [0, 1].
        metric: ``euclidean`` or ``cosine``.
        block_size: Rows per distance block (the memory above).
        query_in_gallery: The queries are the gallery (same rows); see above.
        device: Where the distance blocks and top-k are computed (default: CPU); a GPU is much
            faster for large galleries. The sparse steps run on the CPU.

    Raises:
        PlpEvalError: Bad features (shape, NaN), metric or parameter.
    """
    import torch

    check_metric(metric)
    for name, value in (("k1", k1), ("k2", k2), ("block_size", block_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlpEvalError(f"{name} must be an integer >= 1, got {value!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise PlpEvalError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    queries = as_features(query_features, "query_features")
    gallery = as_features(gallery_features, "gallery_features")
    if queries.shape[1] != gallery.shape[1]:
        raise PlpEvalError(
            f"query_features have dimension {queries.shape[1]}, gallery_features {gallery.shape[1]}"
        )
    if query_in_gallery:
        if queries.shape != gallery.shape or not np.array_equal(queries, gallery):
            raise PlpEvalError(
                f"query_in_gallery needs the queries to be the gallery: query_features "
                f"{queries.shape} differ from gallery_features {gallery.shape}"
            )
        items = gallery
        query_items = np.arange(len(gallery))
        gallery_items = query_items
    else:
        items = np.concatenate([queries, gallery])  # the wider of the two dtypes
        query_items = np.arange(len(queries))
        gallery_items = np.arange(len(queries), len(items))
    # float64 whatever the features' type: float32 distances moved mAP by ~3e-5.
    features = _prepared(items, metric, torch.float64, torch.device(device or "cpu"))
    exact = _Exact(items, metric)

    num_items = len(items)
    num_neighbours = min(max(k1 + 1, k2), num_items)
    neighbours, row_max = _nearest(features, num_neighbours, metric, block_size)
    encodings = _encodings(neighbours, row_max, exact, k1, block_size)
    if k2 != 1:
        encodings = _query_expansion(encodings, neighbours[:, : min(k2, num_items)])
    return _blocks(
        features,
        exact,
        encodings,
        row_max,
        query_items,
        gallery_items,
        metric,
        lambda_value,
        block_size,
    )


def rerank_reid_metrics(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    metric: str = "euclidean",
    max_rank: int = DEFAULT_MAX_RANK,
    k1: int = RERANK_K1,
    k2: int = RERANK_K2,
    lambda_value: float = RERANK_LAMBDA,
    block_size: int = BLOCK_SIZE,
    query_in_gallery: bool = False,
    device: str | torch.device | None = None,
) -> ReidMetrics:
    """Return the re-ID metrics of the k-reciprocal re-ranked distances.

    The distances of :func:`rerank` are consumed block by block by
    :func:`plp_eval.reid_metrics_from_distances` (same definitions as :func:`reid_metrics`,
    cameras and ``query_in_gallery`` included), so the ``(Q, G)`` matrix is never held whole.
    """
    from plp_eval._ranking import reid_metrics_from_distances

    queries = as_features(query_features, "query_features")
    gallery = as_features(gallery_features, "gallery_features")
    q_labels = as_labels(query_labels, "query_labels", len(queries))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(gallery))
    blocks = rerank(
        queries,
        gallery,
        k1=k1,
        k2=k2,
        lambda_value=lambda_value,
        metric=metric,
        block_size=block_size,
        query_in_gallery=query_in_gallery,
        device=device,
    )
    result: ReidMetrics = reid_metrics_from_distances(
        blocks,
        q_labels,
        g_labels,
        query_cameras=query_cameras,
        gallery_cameras=gallery_cameras,
        max_rank=max_rank,
        query_in_gallery=query_in_gallery,
    )
    return result


def _prepared(
    items: np.ndarray, metric: str, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The items as a tensor for the distance blocks: unit rows for ``cosine``."""
    import torch

    features = torch.as_tensor(items).to(device=device, dtype=dtype)
    if metric == "cosine":
        features = torch.nn.functional.normalize(features, dim=1, eps=1e-12)
    return features


def _block_distances(
    left: torch.Tensor, right: torch.Tensor, right_squares: torch.Tensor, metric: str
) -> torch.Tensor:
    """Squared metric distances of two row sets: squared L2, or (1 - cosine similarity)^2.

    ``right_squares`` holds the squared norms of ``right``'s rows (unused for ``cosine``).
    """
    if metric == "cosine":
        return (1.0 - left @ right.T).clamp_(min=0.0).square_()
    distances = (left * left).sum(1, keepdim=True) + right_squares[None, :]
    return distances.addmm_(left, right.T, alpha=-2.0).clamp_(min=0.0)


def _nearest(
    features: torch.Tensor, count: int, metric: str, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return each item's ``count`` nearest items (ties: lower index first) and its row maximum.

    The row maximum is the largest squared distance from the item to any item (torchreid's
    normalisation). One ``block_size x N`` distance block exists at a time.
    """
    import torch

    num_items = len(features)
    neighbours = np.empty((num_items, count), dtype=np.int64)
    row_max = np.empty(num_items, dtype=np.float64)
    squares = (features * features).sum(1)
    for start in range(0, num_items, block_size):
        distances = _block_distances(
            features[start : start + block_size], features, squares, metric
        )
        row_max[start : start + len(distances)] = distances.amax(1).double().cpu().numpy()
        values, indices = torch.topk(distances, count, dim=1, largest=False, sorted=True)
        # A tie at the cut may have left out a lower index: take those rows' stable order.
        tied = ((distances <= values[:, -1:]).sum(1) > count).nonzero().flatten()
        for row in tied.tolist():
            indices[row] = torch.argsort(distances[row], stable=True)[:count]
            values[row] = distances[row, indices[row]]
        # Order each list by (distance, index).
        by_index = torch.argsort(indices, dim=1)
        indices, values = indices.gather(1, by_index), values.gather(1, by_index)
        by_distance = torch.argsort(values, dim=1, stable=True)
        neighbours[start : start + len(distances)] = indices.gather(1, by_distance).cpu().numpy()
    return neighbours, row_max


class _Exact:
    """Float64 squared distances of chosen item pairs, from the items' own values."""

    def __init__(self, items: np.ndarray, metric: str) -> None:
        self.items = items
        self.cosine = metric == "cosine"

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Return the squared distance of item ``left[p]`` to item ``right[p]`` for every p."""
        out = np.empty(len(left), dtype=np.float64)
        for start in range(0, len(left), _PAIRS):
            a = self.items[left[start : start + _PAIRS]].astype(np.float64)
            b = self.items[right[start : start + _PAIRS]].astype(np.float64)
            if self.cosine:
                a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
                b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
                out[start : start + _PAIRS] = np.maximum(1.0 - np.einsum("ij,ij->i", a, b), 0.0)
                out[start : start + _PAIRS] **= 2
            else:
                a -= b
                out[start : start + _PAIRS] = np.einsum("ij,ij->i", a, a)
        return out


def _reciprocal(neighbours: np.ndarray, rows: slice, k: int) -> np.ndarray:
    """Return the mask of ``neighbours[rows, :k]`` entries whose item has the row among its k."""
    forward = neighbours[rows, :k]
    backward = neighbours[forward, :k]  # (rows, k, k)
    own = np.arange(rows.start, rows.start + len(forward))
    return (backward == own[:, None, None]).any(axis=2)


def _encodings(
    neighbours: np.ndarray, row_max: np.ndarray, exact: _Exact, k1: int, block_size: int
) -> Any:
    """Return the sparse k-reciprocal encodings ``V`` as a CSR matrix (items x items)."""
    import scipy.sparse

    num_items = len(neighbours)
    k = min(k1 + 1, num_items)
    half = min(int(np.around(k1 / 2.0)) + 1, num_items)
    half_reciprocal = np.empty((num_items, half), dtype=bool)
    for start in range(0, num_items, block_size):
        rows = slice(start, min(start + block_size, num_items))
        half_reciprocal[rows] = _reciprocal(neighbours, rows, half)

    row_parts, column_parts = [], []
    for start in range(0, num_items, block_size):
        rows = slice(start, min(start + block_size, num_items))
        forward = neighbours[rows, :k]  # (B, k)
        reciprocal = _reciprocal(neighbours, rows, k)
        # Each candidate c's half set R(c, half), and which of its items are in R(i, k1+1).
        candidate_sets = neighbours[forward, :half]  # (B, k, half)
        candidate_masks = half_reciprocal[forward]  # (B, k, half)
        in_set = (
            (candidate_sets[..., None] == forward[:, None, None, :]) & reciprocal[:, None, None, :]
        ).any(axis=3)
        shared = (in_set & candidate_masks).sum(axis=2)
        size = candidate_masks.sum(axis=2)
        accepted = reciprocal & (shared > 2.0 / 3.0 * size)  # torchreid's float comparison
        members = np.concatenate(
            [
                np.where(reciprocal, forward, -1),
                np.where(accepted[..., None] & candidate_masks, candidate_sets, -1).reshape(
                    len(forward), -1
                ),
            ],
            axis=1,
        )
        members.sort(axis=1)
        keep = members >= 0
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]
        row_ids = np.broadcast_to(np.arange(rows.start, rows.stop)[:, None], members.shape)
        row_parts.append(row_ids[keep])
        column_parts.append(members[keep])
    row_ids, columns = np.concatenate(row_parts), np.concatenate(column_parts)
    weights = np.exp(-exact(row_ids, columns) / row_max[row_ids])
    totals = np.bincount(row_ids, weights=weights, minlength=num_items)
    weights /= totals[row_ids]
    counts = np.bincount(row_ids, minlength=num_items)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return scipy.sparse.csr_matrix((weights, columns, indptr), shape=(num_items, num_items))


def _query_expansion(encodings: Any, neighbours: np.ndarray) -> Any:
    """Return the encodings averaged over each item's ``neighbours`` (local query expansion)."""
    import scipy.sparse

    num_items, k2 = neighbours.shape
    averaging = scipy.sparse.csr_matrix(
        (
            np.full(num_items * k2, 1.0 / k2),
            neighbours.ravel(),
            np.arange(0, num_items * k2 + 1, k2),
        ),
        shape=(num_items, num_items),
    )
    expanded = (averaging @ encodings).tocsr()
    expanded.sort_indices()
    return expanded


def _blocks(
    features: torch.Tensor,
    exact: _Exact,
    encodings: Any,
    row_max: np.ndarray,
    query_items: np.ndarray,
    gallery_items: np.ndarray,
    metric: str,
    lambda_value: float,
    block_size: int,
) -> Iterator[np.ndarray]:
    """Yield the final distances of consecutive query blocks."""
    import torch

    jaccard_part = _jaccard_kernel()
    inverted = encodings[gallery_items].tocsc()  # column j: the gallery items that weigh j
    inverted.sort_indices()
    gallery = features[torch.as_tensor(gallery_items, device=features.device)]
    gallery_squares = (gallery * gallery).sum(1)
    for start in range(0, len(query_items), block_size):
        rows = query_items[start : start + block_size]
        block = encodings[rows]
        # (1 - lambda) * jaccard, filled in place by the kernel; then + lambda * d, in place.
        jaccard = np.zeros((len(rows), len(gallery_items)), dtype=np.float64)
        jaccard_part(
            block.indptr,
            block.indices,
            block.data,
            inverted.indptr,
            inverted.indices,
            inverted.data,
            1.0 - lambda_value,
            jaccard,
        )
        block_features = features[torch.as_tensor(rows, device=features.device)]
        original = _block_distances(block_features, gallery, gallery_squares, metric)
        original_64 = original.double().cpu().numpy()
        del original
        original_64 /= row_max[rows, None]
        original_64 *= lambda_value
        jaccard += original_64
        del original_64
        yield jaccard


@functools.cache
def _jaccard_kernel() -> Callable[..., None]:
    """Return the numba kernel of the weighted Jaccard distances (compiled, cached, on first use).

    For each query row ``r`` of the CSR block and each gallery item ``g``, with
    ``m = sum_j min(V(r)_j, V(g)_j)`` summed over the CSC inverted index of the gallery's
    encodings (only pairs that share an item are visited), it writes
    ``out[r, g] = scale * (1 - m / (2 - m))``; ``out`` comes zeroed.
    """
    import numba

    @numba.njit(cache=True, nogil=True)
    def jaccard_part(
        q_indptr: np.ndarray,
        q_indices: np.ndarray,
        q_data: np.ndarray,
        g_indptr: np.ndarray,
        g_rows: np.ndarray,
        g_data: np.ndarray,
        scale: float,
        out: np.ndarray,
    ) -> None:
        for r in range(out.shape[0]):
            for p in range(q_indptr[r], q_indptr[r + 1]):
                column = q_indices[p]
                weight = q_data[p]
                for s in range(g_indptr[column], g_indptr[column + 1]):
                    other = g_data[s]
                    out[r, g_rows[s]] += weight if weight < other else other
            for g in range(out.shape[1]):
                mass = out[r, g]
                out[r, g] = (1.0 - mass / (2.0 - mass)) * scale

    return jaccard_part
