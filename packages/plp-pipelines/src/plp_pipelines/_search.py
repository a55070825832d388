"""The index and search pipelines: a faiss index of a gallery, queried by image files.

``index`` embeds a folder or dataset CSV (the gallery) with a run's model and writes
``<run>/index/<name>/``: ``index.faiss``, ``paths.txt`` (one gallery file per line, in index
order) and ``meta.json`` (metric, kind, count, checkpoint and its SHA-256, the preprocessing,
recall@10 against exact search for the approximate kinds). The folder is built beside its place
and renamed into it: an index is whole or absent.

``search`` embeds query images with the same checkpoint (a changed checkpoint makes the old
index an error, not a silent mismatch), returns each query's top-k gallery files with their
distances, marks those past the run's calibrated threshold "no match", and writes
``<run>/search/<timestamp>/results.json`` and ``results.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plp_core import check_choice
from plp_pipelines._embed import Reading, checkpoint_sha256, embed_with_run, warn_unreadable
from plp_pipelines._errors import ConfigError, RunError
from plp_pipelines._image_inputs import image_inputs
from plp_pipelines._run import Run
from plp_pipelines._runs import atomic_write_json, create_run_dir

if TYPE_CHECKING:
    import plp_data

__all__ = ["IndexResult", "QueryResult", "SearchResult", "index", "search"]

KINDS = ("flat", "ivf", "hnsw")
RECALL_SAMPLE = 1000
DRAWN_QUERIES = 16  # queries drawn in results.png (all are in results.json)


@dataclass(frozen=True)
class IndexResult:
    """What :func:`index` wrote.

    Attributes:
        folder: ``<run>/index/<name>/``.
        count: Gallery images indexed.
        kind: ``flat``, ``ivf`` or ``hnsw``.
        recall_at_10: Recall@10 against exact search on a sample (1.0 for ``flat``).
        unreadable: Files skipped as unreadable.
    """

    folder: Path
    count: int
    kind: str
    recall_at_10: float
    unreadable: tuple[str, ...]


@dataclass(frozen=True)
class QueryResult:
    """One query's answer.

    Attributes:
        query: The query file's name.
        paths: Its top-k gallery files, nearest first.
        distances: Their distances.
        accepted: Whether each is within the threshold (all True without one).
    """

    query: str
    paths: tuple[str, ...]
    distances: tuple[float, ...]
    accepted: tuple[bool, ...]

    @property
    def no_match(self) -> bool:
        """Whether nothing in the gallery is within the threshold."""
        return not any(self.accepted)


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search` found and wrote.

    Attributes:
        folder: ``<run>/search/<timestamp>/`` (``results.json``, ``results.png``).
        threshold: The distance past which a result is "no match" (None: not calibrated).
        queries: One :class:`QueryResult` per readable query image.
        unreadable: Query files skipped as unreadable.
    """

    folder: Path
    threshold: float | None
    queries: tuple[QueryResult, ...]
    unreadable: tuple[str, ...]

    def lines(self) -> list[str]:
        """Return what ``invoke search`` prints: each query's results, the threshold, the file."""
        lines = []
        for answer in self.queries:
            lines.append(f"{answer.query}:" + (" no match" if answer.no_match else ""))
            ranked = zip(answer.paths, answer.distances, answer.accepted, strict=True)
            for rank, (path, distance, accepted) in enumerate(ranked, start=1):
                mark = "" if accepted else "  (no match)"
                lines.append(f"  {rank:>3}. {distance:.4f}  {path}{mark}")
        lines.append(
            f"threshold: {self.threshold:.6g} (past it: no match)"
            if self.threshold is not None
            else "threshold: none (evaluate the run with --method verification to calibrate one)"
        )
        return [*lines, f"results: {self.folder / 'results.json'}"]


def index(
    run: str | Path | None = None,
    *,
    images: str | Path,
    name: str | None = None,
    kind: str = "flat",
    reading: Reading | None = None,
) -> IndexResult:
    """Build a faiss index of a gallery of images (a folder or a dataset CSV) in the run.

    The images are embedded as :func:`plp_pipelines.embed` does; the index searches in the
    run's ``[evaluate] reid_metric`` (L2, or 1 - cosine similarity), ``flat`` (exact, the
    default), ``ivf`` or ``hnsw`` (approximate: for galleries of millions; their recall@10
    against ``flat`` on a sample of 1000 gallery images is measured and recorded).

    Args:
        run: The run directory; the newest run under the reading's ``runs_root`` when None.
        images: The gallery: a folder of images, or a dataset CSV (its gallery rows).
        name: The index's name (default: the folder's or CSV's).
        kind: ``flat``, ``ivf`` or ``hnsw``.
        reading: How the run and the images are read (:class:`~plp_pipelines.Reading`); an
            unreadable image is skipped with a warning unless ``strict``.

    Raises:
        ConfigError: An unknown kind or a bad name.
        RunError: No such run, folder or checkpoint, or no readable image.
    """
    import plp_eval

    check_choice(kind, KINDS, kind="index kind", error=ConfigError, flag="--kind")
    reading = reading or Reading()
    opened = reading.open(run)
    reading, checkpoint_path, preprocessing = reading.resolved(opened)
    inputs = image_inputs(images, rows="gallery")
    name = _check_name(name if name is not None else inputs.name)
    embedded = embed_with_run(opened, inputs, reading)
    warn_unreadable(embedded.unreadable, inputs.source)
    metric = opened.config.evaluate.reid_metric
    built = plp_eval.build_index(
        embedded.features, metric=metric, kind=kind, seed=opened.config.seed
    )
    recall = (
        1.0
        if kind == "flat"
        else plp_eval.index_recall(
            built, embedded.features, sample=RECALL_SAMPLE, seed=opened.config.seed
        )
    )
    meta = {
        "name": name,
        "metric": metric,
        "kind": kind,
        "count": built.count,
        "dimension": built.dimension,
        "checkpoint": checkpoint_path.name,
        "checkpoint_sha256": checkpoint_sha256(checkpoint_path),
        "images": str(inputs.source),
        "recall@10": recall,
        "preprocessing": preprocessing.to_dict(),
    }
    folder = opened.root / "index" / name
    _write_folder(folder, built, embedded.inputs.names, meta)
    return IndexResult(folder, built.count, kind, recall, embedded.unreadable)


def _check_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or "\\" in name or name != name.strip():
        raise ConfigError(
            f"--name {name!r}: an index name is one folder name (no '/', no leading '.')"
        )
    return name


def _write_folder(folder: Path, built: Any, names: list[str], meta: dict[str, Any]) -> None:
    """Write the index folder beside its place, then rename it there (replacing an old one)."""
    from plp_pipelines._runs import atomic_write_text

    partial = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.partial")
    old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        partial.mkdir(parents=True)
        built.save(partial / "index.faiss")
        atomic_write_text(partial / "paths.txt", "".join(f"{name}\n" for name in names))
        atomic_write_json(partial / "meta.json", meta)
        if folder.exists():
            os.replace(folder, old)
        os.replace(partial, folder)
    except OSError as error:
        raise RunError(f"cannot write the index {folder}: {error.strerror}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _read_index(
    opened: Run, name: str, checkpoint_path: Path
) -> tuple[Any, list[str], dict[str, Any]]:
    """Return the run's index ``name``, its gallery files and meta; its checkpoint checked."""
    import plp_eval

    folder = opened.root / "index" / name
    if not (folder / "meta.json").is_file():
        names = sorted(
            p.name for p in (opened.root / "index").glob("*") if not p.name.startswith(".")
        )
        raise RunError(
            f"--index {name!r}: no index of that name in {opened.root / 'index'} "
            f"(built: {', '.join(names) or 'none'}; build one with `invoke index`)"
        )
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        names = (folder / "paths.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{folder}: not a plp index ({type(error).__name__})") from None
    digest = checkpoint_sha256(checkpoint_path)
    if meta.get("checkpoint_sha256") != digest:
        raise RunError(
            f"index {name!r} was built with checkpoint {meta.get('checkpoint')} (sha256 "
            f"{str(meta.get('checkpoint_sha256'))[:12]}...), the run's checkpoint is now "
            f"{checkpoint_path.name} (sha256 {digest[:12]}...): its features would not match; "
            f"rebuild it with `invoke index --name {name}`"
        )
    try:
        built = plp_eval.load_index(folder / "index.faiss", meta["metric"], meta["kind"])
    except (plp_eval.PlpEvalError, KeyError) as error:
        raise RunError(f"{folder}: not a plp index ({error})") from None
    if built.count != len(names):
        raise RunError(f"{folder}: {built.count} vectors but {len(names)} paths in paths.txt")
    return built, names, meta


def run_threshold(opened: Run) -> float | None:
    """Return the run's calibrated threshold (``metrics.json``'s verification), or None."""
    try:
        metrics = json.loads(opened.paths.metrics.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    section = metrics.get("verification") if isinstance(metrics, dict) else None
    value = section.get("threshold") if isinstance(section, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def search(
    run: str | Path | None = None,
    *,
    index: str,
    query: str | Path,
    top_k: int = 10,
    threshold: float | None = None,
    draw: bool = True,
    reading: Reading | None = None,
) -> SearchResult:
    """Search a run's index with query images; mark results past the threshold "no match".

    Each query image (one file, a folder, or a dataset CSV) is embedded as the gallery was;
    its ``top_k`` nearest gallery images come back nearest first, with their distances
    (L2, or 1 - cosine similarity). A result farther than the threshold (default: the run's,
    calibrated at ``[evaluate] target_fmr`` by the ``verification`` evaluation; none when the
    run has not been evaluated with it) is "no match"; a query with no result within it has
    no match. ``results.json`` (every query) and ``results.png`` (the first 16) go to
    ``<run>/search/<timestamp>/``.

    Args:
        run: The run directory; the newest run under the reading's ``runs_root`` when None.
        index: The name of an index built by :func:`index` in this run.
        query: An image, a folder of images, or a dataset CSV (its query rows).
        top_k: Results per query.
        threshold: A distance threshold instead of the run's.
        draw: Draw ``results.png``.
        reading: How the run and the images are read (:class:`~plp_pipelines.Reading`; its
            checkpoint must be the index's); an unreadable query image is skipped with a
            warning unless ``strict``.

    Raises:
        ConfigError: ``top_k < 1``.
        RunError: No such run, index or query, an index built with another checkpoint, or no
            readable query image.
    """
    if top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {top_k}")
    reading = reading or Reading()
    opened = reading.open(run)
    built, gallery_names, meta = _read_index(opened, index, opened.checkpoint(reading.checkpoint))
    reading, checkpoint_path, preprocessing = reading.resolved(opened)
    queries = image_inputs(query, what="--query", single=True, rows="query")
    embedded = embed_with_run(opened, queries, reading, what="--query")
    warn_unreadable(embedded.unreadable, queries.source)
    if threshold is None:
        threshold = run_threshold(opened)
    found, distances = built.search(embedded.features, k=min(top_k, built.count))
    results = tuple(
        _answer(name, row, row_distances, gallery_names, threshold)
        for name, row, row_distances in zip(embedded.inputs.names, found, distances, strict=True)
    )
    folder = create_run_dir(opened.root, "search")
    atomic_write_json(
        folder / "results.json",
        {
            "index": index,
            "metric": meta["metric"],
            "threshold": threshold,
            "top_k": top_k,
            "checkpoint": checkpoint_path.name,
            "queries": [_as_json(result) for result in results],
            "unreadable": list(embedded.unreadable),
        },
    )
    if draw:
        _draw(folder / "results.png", embedded.inputs, results, preprocessing, meta, threshold)
    return SearchResult(folder, threshold, results, embedded.unreadable)


def _answer(
    name: str, row: np.ndarray, distances: np.ndarray, names: list[str], threshold: float | None
) -> QueryResult:
    kept = row >= 0
    values = tuple(float(d) for d in distances[kept])
    return QueryResult(
        query=name,
        paths=tuple(names[int(i)] for i in row[kept]),
        distances=values,
        accepted=tuple(threshold is None or d <= threshold for d in values),
    )


def _as_json(result: QueryResult) -> dict[str, Any]:
    return {
        "query": result.query,
        "no_match": result.no_match,
        "results": [
            {"rank": rank, "path": path, "distance": distance, "match": accepted}
            for rank, (path, distance, accepted) in enumerate(
                zip(result.paths, result.distances, result.accepted, strict=True), start=1
            )
        ],
    }


def _draw(
    path: Path,
    queries: Any,
    results: tuple[QueryResult, ...],
    reading: plp_data.Preprocessing,
    meta: dict[str, Any],
    threshold: float | None,
) -> None:
    """Draw the first queries beside their results (gallery images read from its source)."""
    import plp_data
    import plp_viz

    gallery = Path(meta["images"])
    root = plp_data.read_dataset_csv(gallery).root if gallery.suffix == ".csv" else gallery

    def picture(file: Path) -> np.ndarray:
        try:
            return reading.read(file)[:, :, 0] if reading.channels == 1 else reading.read(file)
        except plp_data.ImageReadError:  # moved or gone since the index was built: grey
            return np.full((*reading.image_size, 3), 128, dtype=np.uint8)

    shown = results[:DRAWN_QUERIES]
    width = max(len(result.distances) for result in shown)
    distances = np.full((len(shown), width), np.inf)
    for row, result in enumerate(shown):
        distances[row, : len(result.distances)] = result.distances
    plp_viz.plot_search_results(
        [picture(file) for file in queries.files[: len(shown)]],
        [[picture(root / p) for p in result.paths] for result in shown],
        distances,
        path,
        threshold=threshold,
        query_names=[r.query for r in shown],
        title=f"search of index {meta['name']!r}"
        + (f" (no match past {threshold:.4g})" if threshold is not None else ""),
    )
