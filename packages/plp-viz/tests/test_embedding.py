from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import make_blobs

import plp_viz
from plp_viz import PlpVizError, aligned_umap_2d, plot_aligned, plot_embedding, umap_2d


def grey_pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


@pytest.fixture(scope="module")
def blobs():
    # Far-apart classes: the neighbour graph falls apart into components, the case where
    # umap-learn's default spectral initialisation is not reproducible.
    return make_blobs(
        n_samples=300,
        centers=5,
        n_features=8,
        cluster_std=0.5,
        center_box=(-50, 50),
        random_state=0,
    )


@pytest.fixture(scope="module")
def embedded(blobs):
    features, _ = blobs
    return umap_2d(features, seed=3), umap_2d(features, seed=3)


def test_umap_shape_and_determinism(embedded):
    first, second = embedded
    assert first.points.shape == (300, 2) and first.points.dtype == np.float32
    np.testing.assert_array_equal(first.points, second.points)
    np.testing.assert_array_equal(first.indices, np.arange(300))


@pytest.mark.filterwarnings("ignore::UserWarning")  # umap-learn's own, about its settings
def test_umap_graph_equals_umap_learns_own_and_its_kernels_are_cached(blobs, embedded):
    # umap_2d hands umap-learn the distances precomputed (its small-data path): the neighbour
    # graph must be the one umap-learn builds computing them itself with its numba metric.
    # (The layouts then agree exactly only where the distances do to the last bit, e.g. on
    # whole-number pixels: the SGD amplifies a rounding difference.)
    import umap
    from numba.core.caching import NullCache

    from plp_viz._embedding import _cache_umap_kernels, _euclidean_distances

    features = blobs[0].astype(np.float32)
    settings = {"n_neighbors": 15, "random_state": 3, "n_epochs": 5, "init": "random"}
    own = umap.UMAP(**settings).fit(features).graph_
    given = umap.UMAP(metric="precomputed", **settings).fit(_euclidean_distances(features)).graph_
    assert (own != 0).nnz == (given != 0).nnz and (own.indices == given.indices).all()
    np.testing.assert_allclose(given.toarray(), own.toarray(), rtol=0, atol=1e-5)
    _cache_umap_kernels()  # once per process: what umap_2d did already
    assert not isinstance(umap.umap_.smooth_knn_dist._cache, NullCache)


def test_subsampling_is_seeded_and_announced(blobs):
    features, _ = blobs
    with pytest.warns(UserWarning, match="drawing 100 of them"):
        sample = umap_2d(features, seed=1, max_samples=100)
    assert sample.points.shape == (100, 2) and len(np.unique(sample.indices)) == 100
    with pytest.warns(UserWarning):
        again = umap_2d(features, seed=1, max_samples=100)
    np.testing.assert_array_equal(sample.indices, again.indices)


def test_plot_embedding_writes_a_non_blank_png(embedded, blobs, tmp_path: Path):
    _, labels = blobs
    path = plot_embedding(embedded[0].points, labels, tmp_path / "umap.png", title="blobs")
    pixels = grey_pixels(path)
    assert pixels.shape[0] > 200 and pixels.std() > 5


def test_aligned_panels_share_axes(blobs, tmp_path: Path, monkeypatch):
    features, labels = blobs
    rng = np.random.default_rng(0)
    drifted = features + rng.normal(scale=2.0, size=features.shape)
    embeddings = aligned_umap_2d([features, drifted], seed=0)
    assert [e.points.shape for e in embeddings] == [(300, 2), (300, 2)]
    again = aligned_umap_2d([features, drifted], seed=0)
    np.testing.assert_array_equal(embeddings[1].points, again[1].points)
    from plp_viz import _plots

    limits = []
    real_save = _plots._save

    def spy(figure, path):
        limits.extend((axis.get_xlim(), axis.get_ylim()) for axis in figure.axes)
        return real_save(figure, path)

    monkeypatch.setattr(_plots, "_save", spy)
    path = plot_aligned([e.points for e in embeddings], labels, tmp_path / "aligned.png")
    assert path.is_file() and grey_pixels(path).shape[1] > 400
    assert len(limits) == 2 and limits[0] == limits[1]
    everything = np.concatenate([e.points for e in embeddings])
    (x_low, x_high), (y_low, y_high) = limits[0]
    assert x_low < everything[:, 0].min() and x_high > everything[:, 0].max()
    assert y_low < everything[:, 1].min() and y_high > everything[:, 1].max()
    with pytest.raises(PlpVizError, match="at least two feature sets"):
        aligned_umap_2d([features])
    with pytest.raises(PlpVizError, match="same rows"):
        aligned_umap_2d([features, features[:10]])


def test_bad_inputs():
    with pytest.raises(PlpVizError, match="at least 3 rows"):
        umap_2d(np.zeros((2, 4)))
    with pytest.raises(PlpVizError, match="NaN"):
        umap_2d(np.full((5, 2), np.nan))
    with pytest.raises(PlpVizError, match=r"points must be \(N, 2\)"):
        plot_embedding(np.zeros((3, 3)), [0, 1, 2], "unused.png")


def test_public_api_is_exactly_all():
    public = {name for name in dir(plp_viz) if not name.startswith("_")}
    assert public == set(plp_viz.__all__)
