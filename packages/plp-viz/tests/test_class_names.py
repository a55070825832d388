"""Class names on the plots, the worst-query rank list, and legibility of long class lists."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import plp_viz
from plp_viz import (
    PlpVizError,
    _confusion,
    _names,
    _plots,
    _rank_list,
    plot_aligned,
    plot_confusion_matrix,
    plot_embedding,
    plot_rank_list,
    rank_list_queries,
)
from plp_viz._names import check_class_names, shorten
from plp_viz._plots import MAX_LEGEND_ENTRIES
from plp_viz._rank_list import rank_list_tile


@pytest.fixture
def figures(monkeypatch):
    """Capture every figure as it is saved (the files are still written)."""
    captured = []
    real_save = _plots._save

    def spy(figure, path):
        figure.canvas.draw()  # lay out texts as in the file
        captured.append(figure)
        return real_save(figure, path)

    monkeypatch.setattr(_plots, "_save", spy)
    return captured


def texts(figure) -> list[str]:
    return [text.get_text() for text in figure.findobj(lambda artist: hasattr(artist, "get_text"))]


def test_doctests():
    for module in (_names, _rank_list, _confusion):
        assert doctest.testmod(module).failed == 0


def test_shorten_and_check_class_names():
    assert shorten("abc", 3) == "abc" and shorten("abcd", 3) == "ab…"
    assert check_class_names([0, 2], ["a", "b", "c"], "labels") == ["a", "b", "c"]
    assert check_class_names([5], None, "labels") is None
    with pytest.raises(PlpVizError, match="labels holds label 3 but class_names has 3 names"):
        check_class_names([0, 3], ["a", "b", "c"], "labels")
    with pytest.raises(PlpVizError, match="labels holds label -1"):
        check_class_names([-1, 0], ["a"], "labels")
    with pytest.raises(PlpVizError, match="must be integer labels"):
        check_class_names(np.array([0.5]), ["a"], "labels")


# worst queries --------------------------------------------------------------------------------


def test_rank_list_queries_worst_are_the_lowest_ap_and_random_the_rest():
    rng = np.random.default_rng(0)
    ap = rng.uniform(size=50)
    ap[[3, 7]] = np.nan  # no match: never chosen
    ap[[10, 20]] = 0.0  # a tie at the bottom: lower index first
    worst, random = rank_list_queries(ap, num_worst=5, num_random=6, seed=4)
    valid = [i for i in range(50) if np.isfinite(ap[i])]
    expected = sorted(valid, key=lambda i: (ap[i], i))[:5]
    assert worst.tolist() == expected
    assert worst[:2].tolist() == [10, 20]
    assert len(random) == 6 and random.tolist() == sorted(random.tolist())
    assert not set(random) & set(worst) and not set(random) & {3, 7}
    again = rank_list_queries(ap, num_worst=5, num_random=6, seed=4)
    assert again[1].tolist() == random.tolist()
    assert rank_list_queries(ap, num_worst=5, num_random=6, seed=5)[1].tolist() != random.tolist()
    everything = rank_list_queries(ap, num_worst=40, num_random=40)
    assert len(everything[0]) == 40 and len(everything[1]) == 8  # 48 valid queries


@pytest.mark.parametrize(
    ("ap", "kwargs", "message"),
    [
        ([np.nan, np.nan], {}, "no finite value"),
        ([0.5, 1.5], {}, r"must be in \[0, 1\]"),
        ([[0.5]], {}, "must be 1-D"),
        (["x"], {}, "must be numbers"),
        ([0.5], {"num_worst": -1}, "must be >= 0"),
    ],
)
def test_rank_list_queries_bad_input(ap, kwargs, message):
    with pytest.raises(PlpVizError, match=message):
        rank_list_queries(ap, **{"num_worst": 1, "num_random": 1, **kwargs})


def rank_list_inputs(count=12):
    rng = np.random.default_rng(1)
    queries = rng.uniform(size=(count, 1, 8, 8))
    query_labels = np.arange(count) % 3
    gallery = rng.uniform(size=(9, 1, 8, 8))
    gallery_labels = np.arange(9) % 3
    indices = np.stack([rng.permutation(9)[:4] for _ in range(count)])
    return queries, query_labels, gallery, gallery_labels, indices


def query_titles(figure):
    """The titles of the first column (the queries), top to bottom, and their row labels."""
    firsts = [axis for axis in figure.axes if axis.get_subplotspec().colspan.start == 0]
    firsts.sort(key=lambda axis: axis.get_subplotspec().rowspan.start)
    return [axis.get_title() for axis in firsts], [axis.get_ylabel() for axis in firsts]


def test_plot_rank_list_shows_worst_then_random_queries(tmp_path, figures):
    queries, query_labels, gallery, gallery_labels, indices = rank_list_inputs()
    ap = np.linspace(1.0, 0.0, 12)  # query 11 is the worst, then 10, ...
    ap[5] = np.nan
    plot_rank_list(
        queries,
        query_labels,
        gallery,
        gallery_labels,
        indices,
        tmp_path / "ranks.png",
        max_queries=6,
        worst_queries=2,
        query_average_precision=ap,
        class_names=["zero", "one", "two"],
        seed=3,
    )
    worst, random = rank_list_queries(ap, num_worst=2, num_random=4, seed=3)
    assert worst.tolist() == [11, 10]
    titles, kinds = query_titles(figures[-1])
    assert kinds == ["worst"] * 2 + ["random"] * 4
    expected = [
        f"query {['zero', 'one', 'two'][query_labels[q]]}\nAP {ap[q]:.2f}"
        for q in [*worst, *random]
    ]
    assert titles == expected
    # each gallery tile is titled "rank: name" above it: 6 rows of 4
    gallery_titles = [text for text in texts(figures[-1]) if text[:1].isdigit()]
    assert len(gallery_titles) == 6 * 4
    assert all(title.split(": ")[1] in ("zero", "one", "two") for title in gallery_titles)
    ranked = indices[[*worst, *random]]
    assert gallery_titles == [
        f"{rank + 1}: {['zero', 'one', 'two'][gallery_labels[item]]}"
        for row in ranked
        for rank, item in enumerate(row)
    ]


def test_rank_list_of_preselected_queries_keeps_the_rows(tmp_path, figures):
    # the pipeline loads only the chosen queries' images: the rows must stay the same
    queries, query_labels, gallery, gallery_labels, indices = rank_list_inputs(count=30)
    ap = np.random.default_rng(2).uniform(size=30).round(1)  # ties
    arguments = {"max_queries": 6, "worst_queries": 3, "seed": 0}
    plot_rank_list(
        queries,
        query_labels,
        gallery,
        gallery_labels,
        indices,
        tmp_path / "a.png",
        query_average_precision=ap,
        **arguments,
    )
    worst, random = rank_list_queries(ap, num_worst=3, num_random=3, seed=0)
    chosen = np.concatenate([worst, random])
    plot_rank_list(
        queries[chosen],
        query_labels[chosen],
        gallery,
        gallery_labels,
        indices[chosen],
        tmp_path / "b.png",
        query_average_precision=ap[chosen],
        **arguments,
    )
    assert query_titles(figures[0]) == query_titles(figures[1])


def test_plot_rank_list_without_ap_draws_the_first_queries(tmp_path, figures):
    queries, query_labels, gallery, gallery_labels, indices = rank_list_inputs()
    plot_rank_list(
        queries, query_labels, gallery, gallery_labels, indices, tmp_path / "r.png", max_queries=3
    )
    assert query_titles(figures[-1]) == (["query 0", "query 1", "query 2"], ["", "", ""])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"query_average_precision": np.ones(3)}, "one value per query"),
        (
            {"query_average_precision": np.ones(12), "worst_queries": 9},
            r"worst_queries must be in \[0, 8\]",
        ),
        ({"class_names": ["a", "b"]}, "query_labels holds label 2 but class_names has 2 names"),
    ],
)
def test_plot_rank_list_bad_ap_and_names(tmp_path, change, message):
    queries, query_labels, gallery, gallery_labels, indices = rank_list_inputs()
    with pytest.raises(PlpVizError, match=message):
        plot_rank_list(
            queries, query_labels, gallery, gallery_labels, indices, tmp_path / "x.png", **change
        )


def test_plot_rank_list_checks_gallery_labels_against_names(tmp_path):
    queries, query_labels, gallery, gallery_labels, indices = rank_list_inputs()
    with pytest.raises(PlpVizError, match="gallery_labels holds label 5"):
        plot_rank_list(
            queries,
            query_labels % 2,
            gallery,
            gallery_labels + 3,
            indices % 9,
            tmp_path / "x.png",
            class_names=["a", "b", "c", "d", "e"],
        )


# confusion matrix -----------------------------------------------------------------------------


def test_confusion_matrix_ticks_are_the_class_names(tmp_path, figures):
    names = ["airplane", "automobile", "a_very_long_class_name_indeed"]
    plot_confusion_matrix(np.eye(3), tmp_path / "cm.png", class_names=[*names, "unused"])
    axis = figures[-1].axes[0]
    expected = ["airplane", "automobile", shorten(names[2])]
    assert [t.get_text() for t in axis.get_xticklabels()] == expected
    assert [t.get_text() for t in axis.get_yticklabels()] == expected


def test_confusion_matrix_with_many_classes_names_every_nth(tmp_path, figures):
    names = [f"class_{i}" for i in range(100)]
    plot_confusion_matrix(np.eye(100), tmp_path / "cm.png", class_names=names)
    axis = figures[-1].axes[0]
    shown = [t.get_text() for t in axis.get_xticklabels()]
    assert shown == [f"class_{i}" for i in range(0, 100, 3)]  # ceil(100 / 40) = 3
    assert all(t.get_rotation() == 90 for t in axis.get_xticklabels())
    assert _confusion.confusion_ticks(40) == list(range(40))


def test_confusion_matrix_too_few_names(tmp_path):
    with pytest.raises(PlpVizError, match="class_names has 2 names for 3 classes"):
        plot_confusion_matrix(np.eye(3), tmp_path / "cm.png", class_names=["a", "b"])


# embedding legend -----------------------------------------------------------------------------


def legend_texts(figure):
    legends = [axis.get_legend() for axis in figure.axes if axis.get_legend() is not None]
    assert len(legends) == 1
    return [text.get_text() for text in legends[0].get_texts()]


def test_embedding_legend_names_the_classes(tmp_path, figures):
    points = np.random.default_rng(0).normal(size=(30, 2))
    labels = np.arange(30) % 3
    plot_embedding(points, labels, tmp_path / "u.png", class_names=["cat", "dog", "bird"])
    assert legend_texts(figures[-1]) == ["cat", "dog", "bird"]
    plot_aligned([points, points], labels, tmp_path / "a.png", class_names=["cat", "dog", "bird"])
    assert legend_texts(figures[-1]) == ["cat", "dog", "bird"]
    plot_embedding(points, labels, tmp_path / "n.png")
    assert legend_texts(figures[-1]) == ["0", "1", "2"]


def test_embedding_legend_of_many_classes_keeps_the_largest(tmp_path, figures):
    sizes = np.arange(1, 51)  # class c has c + 1 points: the largest are the last ones
    labels = np.repeat(np.arange(50), sizes)
    points = np.random.default_rng(0).normal(size=(len(labels), 2))
    names = [f"species {c}" for c in range(50)]
    plot_embedding(points, labels, tmp_path / "u.png", class_names=names)
    shown = legend_texts(figures[-1])
    assert shown[:-1] == [f"species {c}" for c in range(50 - MAX_LEGEND_ENTRIES, 50)]
    assert shown[-1] == f"… {50 - MAX_LEGEND_ENTRIES} more classes"


def test_embedding_names_must_cover_the_labels(tmp_path):
    with pytest.raises(PlpVizError, match="labels holds label 2 but class_names has 2 names"):
        plot_embedding(np.zeros((3, 2)), [0, 1, 2], tmp_path / "u.png", class_names=["a", "b"])
    with pytest.raises(PlpVizError, match="labels holds label 2"):
        plot_aligned([np.zeros((3, 2))], [0, 1, 2], tmp_path / "a.png", class_names=["a", "b"])


def test_rank_list_queries_is_public():
    assert "rank_list_queries" in plp_viz.__all__


def test_plot_rank_list_leaves_missing_results_empty(tmp_path, figures):
    # a negative index (no result) gets no tile and no title; the other ranks keep theirs
    queries, query_labels, gallery, gallery_labels, indices = rank_list_inputs(count=2)
    indices[0, 1] = -1
    indices[1, 3] = -1
    plot_rank_list(
        queries, query_labels, gallery, gallery_labels, indices, tmp_path / "r.png", max_queries=2
    )
    gallery_titles = [text for text in texts(figures[-1]) if text[:1].isdigit()]
    assert [title.split(":")[0] for title in gallery_titles] == ["1", "3", "4", "1", "2", "3"]
    # both rows miss one of four tiles: three tiles' columns are opaque, the rest transparent
    for axis in figures[-1].axes[1::2]:
        strip = np.asarray(axis.get_images()[0].get_array())
        tile = rank_list_tile(gallery[0], (0.0, 0.0, 0.0)).shape[1]
        assert strip[..., 3].any(axis=0).sum() == 3 * tile
