import numpy as np
import pytest
from PIL import Image

import plp_viz
from plp_viz import (
    PlpVizError,
    plot_cmc,
    plot_confusion_matrix,
    plot_distance_histogram,
    plot_rank_list,
)
from plp_viz._confusion import confusion_values
from plp_viz._rank_list import (
    MATCH_COLOUR,
    MISMATCH_COLOUR,
    display_image,
    rank_list_matches,
    rank_list_tile,
)


def check_png(path, min_bytes=2_000):
    assert path.exists() and path.suffix == ".png"
    assert path.stat().st_size > min_bytes
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 0, "blank image"
    return pixels


def test_exported():
    for name in (
        "plot_cmc",
        "plot_rank_list",
        "plot_confusion_matrix",
        "plot_distance_histogram",
    ):
        assert name in plp_viz.__all__ and callable(getattr(plp_viz, name))


# CMC ------------------------------------------------------------------------------------------


def test_plot_cmc_single_and_mapping(tmp_path):
    cmc = np.minimum(1.0, 0.6 + 0.01 * np.arange(100))
    out = plot_cmc(cmc, tmp_path / "a" / "cmc.png", title="CMC test")
    check_png(out)
    out = plot_cmc({"model A": cmc, "model B": cmc * 0.9}, str(tmp_path / "cmc2.png"), max_rank=10)
    check_png(out)


@pytest.mark.parametrize(
    "bad",
    [np.array([]), np.ones((3, 3)) * 0.5, np.array([0.5, 1.5]), np.array([0.1, np.nan]), {}],
)
def test_plot_cmc_bad_input(tmp_path, bad):
    with pytest.raises(PlpVizError):
        plot_cmc(bad, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_cmc_bad_max_rank(tmp_path):
    with pytest.raises(PlpVizError, match="max_rank"):
        plot_cmc(np.array([0.5, 1.0]), tmp_path / "x.png", max_rank=0)


# rank list ------------------------------------------------------------------------------------


def test_rank_list_matches():
    query_labels = np.array([0, 1])
    gallery_labels = np.array([0, 1, 0, 2])
    indices = np.array([[0, 1, 2], [3, 1, -1]])
    np.testing.assert_array_equal(
        rank_list_matches(query_labels, gallery_labels, indices),
        [[True, False, True], [False, True, False]],
    )


def test_rank_list_tile_border_colours():
    image = np.random.default_rng(0).normal(size=(3, 20, 10))
    tile = rank_list_tile(image, MATCH_COLOUR)
    assert tile.shape == (20 + 4, 10 + 4, 3)  # border 2 pixels (8% of 20 rounds to 2)
    np.testing.assert_allclose(tile[0, 0], MATCH_COLOUR)
    np.testing.assert_allclose(tile[-1, 5], MATCH_COLOUR)
    np.testing.assert_allclose(tile[2:-2, 2:-2], display_image(image))
    np.testing.assert_allclose(rank_list_tile(image, MISMATCH_COLOUR)[1, 1], MISMATCH_COLOUR)


def test_display_image_normalises_each_image():
    grey = display_image(np.array([[[-5.0, 5.0], [0.0, 5.0]]]))
    assert grey.shape == (2, 2, 3)
    assert grey.min() == 0.0 and grey.max() == 1.0
    np.testing.assert_allclose(grey[1, 0], [0.5, 0.5, 0.5])
    assert display_image(np.full((4, 4), 7.0)).std() == 0.0  # constant image: mid-grey
    with pytest.raises(PlpVizError):
        display_image(np.zeros((2, 4, 4)))


def colour_pixels(pixels, colour, tolerance=40):
    return (np.abs(pixels - 255 * np.asarray(colour)) < tolerance).all(axis=-1).sum()


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_plot_rank_list_png_has_green_and_red_borders(tmp_path, channels):
    rng = np.random.default_rng(1)
    shape = (16, 12) if channels is None else (channels, 16, 12)
    queries = rng.normal(size=(3, *shape)) * 50 + 10  # any float range
    gallery = rng.uniform(size=(10, *shape))
    query_labels = np.array([0, 1, 2])
    gallery_labels = np.arange(10) % 3
    indices = np.array([[0, 1, 3, 4], [1, 2, 4, 7], [5, 8, 0, 2]])
    out = plot_rank_list(
        queries, query_labels, gallery, gallery_labels, indices, tmp_path / "rank.png"
    )
    pixels = check_png(out)
    assert colour_pixels(pixels, MATCH_COLOUR) > 50
    assert colour_pixels(pixels, MISMATCH_COLOUR) > 50


def test_plot_rank_list_only_matches_has_no_red(tmp_path):
    # Greyscale images: no pixel of a grey image is pure red.
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(4, 1, 16, 16))
    labels = np.array([0, 0, 1, 1])
    indices = np.array([[1, 0], [0, 1], [3, 2], [2, 3]])
    pixels = check_png(
        plot_rank_list(images, labels, images, labels, indices, tmp_path / "r.png", max_queries=2)
    )
    assert colour_pixels(pixels, MATCH_COLOUR) > 50
    assert colour_pixels(pixels, MISMATCH_COLOUR) == 0


@pytest.mark.parametrize(
    "change",
    [
        {"query_images": np.zeros((2, 2, 8, 8))},  # 2 channels
        {"query_images": np.zeros((2, 8))},  # 2-D
        {"query_labels": np.array([0, 1, 2])},  # length mismatch
        {"gallery_labels": np.array([0])},
        {"indices": np.array([[0, 1]])},  # one row for two queries
        {"indices": np.array([[0, 9], [1, 2]])},  # past the gallery
        {"indices": np.array([[0.0, 1.0], [1.0, 2.0]])},  # not integers
        {"gallery_images": np.zeros((0, 1, 8, 8)), "gallery_labels": np.array([])},
        {"max_queries": 0},
    ],
)
def test_plot_rank_list_bad_input(tmp_path, change):
    arguments = {
        "query_images": np.zeros((2, 1, 8, 8)),
        "query_labels": np.array([0, 1]),
        "gallery_images": np.zeros((4, 1, 8, 8)),
        "gallery_labels": np.array([0, 1, 0, 1]),
        "indices": np.array([[0, 1], [1, 2]]),
        "max_queries": 8,
    }
    arguments.update(change)
    with pytest.raises(PlpVizError):
        plot_rank_list(path=tmp_path / "x.png", **arguments)


# confusion matrix -----------------------------------------------------------------------------


def test_confusion_values_rows_sum_to_one():
    matrix = np.array([[5, 1, 0], [2, 2, 4], [0, 0, 0]])
    values = confusion_values(matrix)
    np.testing.assert_allclose(values.sum(axis=1), [1.0, 1.0, 0.0])  # unseen class stays 0
    np.testing.assert_allclose(values[1], [0.25, 0.25, 0.5])
    np.testing.assert_array_equal(confusion_values(matrix, normalize=False), matrix)


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix(tmp_path, normalize):
    matrix = np.array([[8, 1, 1], [0, 9, 1], [2, 0, 8]])
    out = plot_confusion_matrix(
        matrix, tmp_path / "cm.png", class_names=["cat", "dog", "bird"], normalize=normalize
    )
    check_png(out)


def test_plot_confusion_matrix_many_classes(tmp_path):
    matrix = np.random.default_rng(0).integers(0, 10, size=(30, 30)) + 20 * np.eye(30)
    check_png(plot_confusion_matrix(matrix, tmp_path / "cm30.png"))


@pytest.mark.parametrize(
    ("matrix", "names"),
    [
        (np.ones((2, 3)), None),
        (np.ones((0, 0)), None),
        (-np.ones((2, 2)), None),
        (np.ones(4), None),
        (np.ones((2, 2)), ["a"]),
    ],
)
def test_plot_confusion_matrix_bad_input(tmp_path, matrix, names):
    with pytest.raises(PlpVizError):
        plot_confusion_matrix(matrix, tmp_path / "x.png", class_names=names)


# pair distances -------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_plot_distance_histogram(tmp_path, metric):
    rng = np.random.default_rng(0)
    positive, negative = rng.gamma(2.0, 0.5, 300), rng.gamma(6.0, 0.5, 2000)
    out = plot_distance_histogram(
        positive, negative, tmp_path / "hist.png", metric=metric, num_negative=90_000
    )
    check_png(out)


def test_plot_distance_histogram_without_positives(tmp_path):
    negative = np.random.default_rng(0).normal(3.0, 1.0, size=15)
    check_png(plot_distance_histogram([], negative, tmp_path / "h.png"))


@pytest.mark.parametrize(
    ("positive", "negative", "kwargs", "message"),
    [
        ([], [], {}, "no pair distances to draw"),
        ([[1.0]], [1.0], {}, "positive must be a 1-D array of distances"),
        ([1.0], [np.nan], {}, "negative has NaN or inf values"),
        ([1.0], [2.0], {"metric": "manhattan"}, "unknown metric 'manhattan'"),
        ([1.0, 2.0], [2.0], {"num_positive": 1}, "num_positive = 1 is below the 2 distances"),
    ],
)
def test_plot_distance_histogram_bad_input(tmp_path, positive, negative, kwargs, message):
    with pytest.raises(PlpVizError, match=message):
        plot_distance_histogram(positive, negative, tmp_path / "x.png", **kwargs)
