"""UMAP and AlignedUMAP to 2-D, deterministic for a seed."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_viz._errors import PlpVizError

__all__ = ["Embedding2D", "aligned_umap_2d", "umap_2d"]


@dataclass(frozen=True)
class Embedding2D:
    """2-D points and the input rows they stand for.

    Attributes:
        points: ``(m, 2)`` float32 coordinates.
        indices: ``(m,)`` int64 row of each point in the input features.
    """

    points: np.ndarray
    indices: np.ndarray


def _subsample(num_rows: int, max_samples: int | None, seed: int) -> np.ndarray:
    """Return sorted row indices: all rows, or ``max_samples`` of them drawn with ``seed``."""
    if max_samples is None or num_rows <= max_samples:
        return np.arange(num_rows, dtype=np.int64)
    warnings.warn(
        f"{num_rows} samples: drawing {max_samples} of them (seed {seed}) for the 2-D view",
        stacklevel=3,
    )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, size=max_samples, replace=False)).astype(np.int64)


def _check(features: Any, name: str = "features") -> np.ndarray:
    array = np.asarray(features, dtype=np.float32)
    if array.ndim != 2 or len(array) < 3:
        raise PlpVizError(f"{name} must be 2-D with at least 3 rows, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise PlpVizError(f"{name} has NaN or inf values")
    return array


# umap-learn ranks fewer rows than this by all their pairwise distances, through sklearn's
# Python loop over the pairs with its numba metric (seconds for 2k rows); handed the same
# distances precomputed (float64), it builds the same neighbour graph in a fraction of the time.
UMAP_EXACT_ROWS = 4096


def _euclidean_distances(data: np.ndarray) -> np.ndarray:
    """Return the ``(n, n)`` float32 Euclidean distances of ``data``'s rows (float64 sums)."""
    rows = data.astype(np.float64)
    squares = np.einsum("ij,ij->i", rows, rows)
    distances = squares[:, None] + squares[None, :] - 2.0 * (rows @ rows.T)
    np.maximum(distances, 0.0, out=distances)
    np.fill_diagonal(distances, 0.0)
    return np.sqrt(distances).astype(np.float32)


# numba's warning for a function whose code cannot be cached (it is compiled as before).
_UNCACHEABLE = "Cannot cache compiled function"


@functools.cache
def _cache_umap_kernels() -> int:
    """Make umap-learn's (and pynndescent's) numba functions cache their machine code on disk.

    umap-learn compiles them without numba's ``cache=True``: each process pays their compile
    (10-30 s on a small CPU) at its first fit. With caching on, the first process writes the
    compiled code beside the modules (or in numba's user cache when that folder is read-only)
    and later processes load it; one that cannot be cached (numba warns, :data:`_UNCACHEABLE`,
    silenced around the fits) is compiled as before. Returns how many functions were switched
    (once per process).
    """
    import umap  # noqa: F401  (loads the modules whose functions are switched)
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    switched = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in ("umap", "pynndescent"):
            continue
        for value in list(vars(module).values()):
            cache = getattr(value, "_cache", None)  # numba's own attribute, not typed
            if isinstance(value, CPUDispatcher) and isinstance(cache, NullCache):
                try:
                    value.enable_caching()
                except RuntimeError:  # no folder to cache in: compiled as before
                    continue
                switched += 1
    return switched


def _quiet() -> bool:
    """Return True when progress bars should stay off: stderr is not a terminal."""
    return not sys.stderr.isatty()


def _pca_init(features: np.ndarray) -> np.ndarray:
    """Return the first two principal components, scaled to UMAP's usual init range (±10)."""
    centred = features - features.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:2].T
    if projected.shape[1] < 2:
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    scale = np.abs(projected).max() or 1.0
    return (10.0 * projected / scale).astype(np.float32)


def umap_2d(
    features: Any,
    *,
    seed: int = 0,
    max_samples: int | None = 10_000,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> Embedding2D:
    """Return a 2-D UMAP of ``features`` (McInnes et al. 2018), the same for the same seed.

    The layout starts from the data's two principal components instead of umap-learn's
    spectral initialisation, which is not reproducible when classes are so well separated that
    the neighbour graph falls apart. More than ``max_samples`` rows are subsampled (seeded,
    uniformly, with a warning); ``indices`` says which rows were kept. The optimisation shows
    a tqdm progress bar on stderr when it is a terminal.
    """
    import umap

    _cache_umap_kernels()
    data = _check(features)
    indices = _subsample(len(data), max_samples, seed)
    data = data[indices]
    exact = len(data) < UMAP_EXACT_ROWS
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, len(data) - 1),
        min_dist=min_dist,
        metric="precomputed" if exact else "euclidean",
        random_state=seed,
        init=_pca_init(data),
        tqdm_kwds={"disable": _quiet(), "desc": "UMAP epochs"},
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        # Expected with well-separated classes; the PCA start makes the layout reproducible.
        warnings.filterwarnings(
            "ignore", message="Graph is not fully connected", category=UserWarning
        )
        warnings.filterwarnings("ignore", message=".*precomputed metric.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=_UNCACHEABLE)
        points = reducer.fit_transform(_euclidean_distances(data) if exact else data)
    return Embedding2D(np.asarray(points, dtype=np.float32), indices)


def aligned_umap_2d(
    features_list: Sequence[Any],
    *,
    seed: int = 0,
    relations: Sequence[dict[int, int]] | None = None,
    max_samples: int | None = 10_000,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> list[Embedding2D]:
    """Return one 2-D embedding per feature set, aligned with umap-learn's AlignedUMAP.

    ``relations[i]`` maps rows of set ``i`` to rows of set ``i + 1``; None means the identity
    (the same samples embedded by several checkpoints of one model), and then the same rows
    are subsampled in every set. A tqdm progress bar (one step per model's UMAP fit, one for
    the joint alignment) shows on stderr when it is a terminal.
    """
    import umap

    _cache_umap_kernels()
    if len(features_list) < 2:
        raise PlpVizError(
            f"aligned_umap_2d needs at least two feature sets, got {len(features_list)}"
        )
    arrays = [_check(f, f"features_list[{i}]") for i, f in enumerate(features_list)]
    if relations is None:
        sizes = {len(a) for a in arrays}
        if len(sizes) != 1:
            raise PlpVizError(
                f"without relations all feature sets need the same rows; got sizes {sorted(sizes)}"
            )
        indices = _subsample(len(arrays[0]), max_samples, seed)
        arrays = [a[indices] for a in arrays]
        relations = [{i: i for i in range(len(indices))} for _ in range(len(arrays) - 1)]
        kept = [indices] * len(arrays)
    else:
        if len(relations) != len(arrays) - 1:
            raise PlpVizError(f"{len(arrays)} feature sets need {len(arrays) - 1} relations")
        kept = [np.arange(len(a), dtype=np.int64) for a in arrays]
    import numba

    reducer = umap.AlignedUMAP(
        n_neighbors=min(n_neighbors, min(len(a) for a in arrays) - 1),
        min_dist=min_dist,
        random_state=seed,
        transform_seed=seed,
    )
    # Two sources of run-to-run differences in umap-learn 0.5's AlignedUMAP, fixed here: it
    # starts every model from a spectral layout (not reproducible when classes separate into
    # disconnected components) -- replaced by the PCA start -- and it optimises with numba's
    # parallel loops, whose races change the result -- run on one thread.
    import umap.aligned_umap as aligned_module
    from tqdm import tqdm

    progress = tqdm(total=len(arrays) + 1, desc="AlignedUMAP", unit="step", disable=_quiet())
    plain_umap = aligned_module.UMAP

    class _CountedUMAP(plain_umap):  # type: ignore[misc, valid-type]
        """umap-learn's UMAP, advancing the progress bar after each model's fit."""

        def fit(self, *args: Any, **kwargs: Any) -> Any:
            fitted = super().fit(*args, **kwargs)
            progress.set_postfix_str(f"fitted model {progress.n + 1} of {len(arrays)}")
            progress.update(1)
            return fitted

    spectral = aligned_module.spectral_layout
    aligned_module.spectral_layout = lambda data, graph, dim, random_state, **kw: _pca_init(data)
    aligned_module.UMAP = _CountedUMAP
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        # Expected with well-separated classes; the PCA start makes the layout reproducible.
        warnings.filterwarnings(
            "ignore", message="Graph is not fully connected", category=UserWarning
        )
        warnings.filterwarnings("ignore", message=_UNCACHEABLE)
        try:
            reducer.fit(arrays, relations=list(relations))
            progress.set_postfix_str("aligned")
            progress.update(1)
        finally:
            numba.set_num_threads(threads)
            aligned_module.spectral_layout = spectral
            aligned_module.UMAP = plain_umap
            progress.close()
    return [
        Embedding2D(np.asarray(points, dtype=np.float32), rows)
        for points, rows in zip(reducer.embeddings_, kept, strict=True)
    ]
