"""``reid``: CMC, mAP, mINP and precision metrics by the run's protocol; optional re-ranking."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from plp_pipelines._methods import METHODS, EvaluationContext, EvaluationMethod, junk_keys

if TYPE_CHECKING:
    from plp_pipelines._config import Config
    from plp_pipelines._features import SplitFeatures

__all__ = ["CategorisedDataModule", "Reid", "junk_arrays", "protocol_lists", "rank"]

RANK_LIST_QUERIES = 8
RANK_LIST_TOP_K = 8


@runtime_checkable
class CategorisedDataModule(Protocol):
    """A datamodule that names a category per item (a CSV's ``category``, a concat's part)."""

    def split_categories(self, split: str) -> list[str] | None:
        """Return the category of each item of ``split`` in item order (None: none)."""
        ...


def junk_arrays(query: SplitFeatures, gallery: SplitFeatures) -> dict[str, Any]:
    """Return the protocol's junk rule as the cameras of a plp-eval call (both sides, or neither).

    One key per item (:func:`plp_pipelines._methods.junk_keys`): its camera, else its group (a
    dataset CSV's sequence), so that the same label and key is junk.
    """
    query_keys, gallery_keys = junk_keys(query, gallery)
    return {"query_cameras": query_keys, "gallery_cameras": gallery_keys}


def rank(
    config: Config,
    query: SplitFeatures,
    gallery: SplitFeatures,
    *,
    device: Any = None,
    distributed: bool = False,
    max_rank: int | None = None,
) -> Any:
    """Return the ``plp_eval.ReidMetrics`` of ``query`` against ``gallery`` by the config.

    ``max_rank`` replaces the config's CMC length (comparisons use the shorter of two).
    """
    import plp_eval

    settings = config.evaluate
    return plp_eval.reid_metrics(
        query.features,
        query.labels,
        gallery.features,
        gallery.labels,
        **junk_arrays(query, gallery),
        metric=settings.reid_metric,
        max_rank=settings.max_rank if max_rank is None else max_rank,
        query_in_gallery=settings.protocol == "test_leave_one_out",
        device=device,
        distributed=distributed,
    )


def protocol_lists(
    config: Config, query: SplitFeatures, gallery: SplitFeatures, rows: Any, k: int
) -> Any:
    """Return the first ``k`` gallery rows of each query row in ``rows`` as the metrics rank.

    ``plp_eval.protocol_rank_lists`` under the config's metric and protocol: the protocol's
    junk (same label and camera, the query itself in leave-one-out) is left out; -1 pads.
    """
    import plp_eval

    indices, _ = plp_eval.protocol_rank_lists(
        query.features,
        query.labels,
        gallery.features,
        gallery.labels,
        **junk_arrays(query, gallery),
        k=k,
        metric=config.evaluate.reid_metric,
        queries=rows,
        query_in_gallery=config.evaluate.protocol == "test_leave_one_out",
    )
    return indices


@METHODS.register("reid", order=20, default=True)
class Reid(EvaluationMethod):
    """Re-ID ranking metrics by ``[evaluate] protocol`` (every match ranked, exactly).

    ``trainval_test``: test queries, trainval gallery; ``query_gallery``: the dataset's own
    query and gallery splits and cameras; ``test_leave_one_out``: each test image queries the
    rest. With ``[evaluate] rerank`` the k-reciprocal re-ranked numbers go beside the plain ones
    (section ``reid_reranked``). Under torch.distributed every rank ranks a share of the queries.

    With ``[evaluate] bootstrap = B`` (default 1000; 0: off) every metric gets a 95% percentile
    bootstrap interval over query identities (``ci``, ``num_identities``). When the data has
    cameras, the query-camera x gallery-camera mAP matrix (``camera_map``); always the worst
    and best classes by AP (``per_class_ap``); with categories, the metrics per category.
    """

    sections = ("reid", "reid_reranked")
    plots = ("cmc", "rank_list", "rank_list_files", "distances", "camera_map")
    every_rank = True
    headline = (
        ("reid", "rank-1", "reid rank-1"),
        ("reid", "rank-5", "reid rank-5"),
        ("reid", "mAP", "reid mAP"),
        ("reid", "mINP", "reid mINP"),
        ("reid", "precision@1", "reid precision@1"),
        ("reid", "R-precision", "reid R-precision"),
        ("reid", "MAP@R", "reid MAP@R"),
        ("reid_reranked", "rank-1", "reid re-ranked rank-1"),
        ("reid_reranked", "mAP", "reid re-ranked mAP"),
    )

    def __init__(self) -> None:
        self._result: Any = None  # the typed ReidMetrics, for the plots
        self._cmc_band: Any = None  # its CMC curve's bootstrap band
        self._cameras: Any = None  # the camera matrix (plp_eval.CameraMatrix)

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        """Return ``{"reid": ...}`` (and ``"reid_reranked"`` with ``[evaluate] rerank``)."""
        import plp_eval
        from plp_pipelines._intervals import interval_section

        config = context.config
        settings = config.evaluate
        query = context.features[context.query_split]
        gallery = context.features[context.gallery_split]
        self._result = rank(
            config, query, gallery, device=context.device, distributed=context.distributed
        )
        described = {
            "metric": settings.reid_metric,
            "query": context.query_split,
            "gallery": context.gallery_split,
        }
        intervals, bootstrap = interval_section(self._result, settings.bootstrap, config.seed)
        reid = {**described, **self._result.to_dict(), **intervals}
        self._cmc_band = None if bootstrap is None else bootstrap.curves.get("cmc")
        if _writes(context):  # breakdowns: rank 0 only, nothing else writes them
            reid.update(self._breakdowns(context, query, gallery))
        output: dict[str, dict[str, Any]] = {"reid": reid}
        if settings.rerank:
            reranked = plp_eval.rerank_reid_metrics(
                query.features,
                query.labels,
                gallery.features,
                gallery.labels,
                **junk_arrays(query, gallery),
                metric=settings.reid_metric,
                max_rank=settings.max_rank,
                query_in_gallery=settings.protocol == "test_leave_one_out",
                k1=settings.rerank_k1,
                k2=settings.rerank_k2,
                lambda_value=settings.rerank_lambda,
                device=context.device if context.device.type == "cuda" else None,
            )
            output["reid_reranked"] = {
                **described,
                "k1": settings.rerank_k1,
                "k2": settings.rerank_k2,
                "lambda": settings.rerank_lambda,
                **reranked.to_dict(),
                **interval_section(reranked, settings.bootstrap, config.seed)[0],
            }
        return output

    def _breakdowns(
        self, context: EvaluationContext, query: SplitFeatures, gallery: SplitFeatures
    ) -> dict[str, Any]:
        """Return the camera matrix (with cameras), the class extremes and the categories."""
        import plp_eval
        from plp_pipelines._intervals import class_rows

        found: dict[str, Any] = {"per_class_ap": class_rows(self._result, context.data.class_names)}
        if query.cameras is not None and gallery.cameras is not None:
            self._cameras = plp_eval.camera_matrix(
                query.features,
                query.labels,
                gallery.features,
                gallery.labels,
                query.cameras,
                gallery.cameras,
                metric=context.config.evaluate.reid_metric,
                device=context.device,
            )
            found["camera_map"] = self._cameras.to_dict()
        datamodule = context.datamodule
        categories = (
            datamodule.split_categories(context.query_split)
            if isinstance(datamodule, CategorisedDataModule)
            else None
        )
        if categories is not None:
            found["per_category"] = {
                category: {
                    key: value
                    for key, value in result.to_dict().items()
                    if key in ("rank-1", "mAP", "mINP", "MAP@R", "num_queries")
                }
                for category, result in plp_eval.metrics_by_category(
                    self._result, categories
                ).items()
            }
        return found

    def draw(self, context: EvaluationContext, plot_path: Callable[[str], Path]) -> dict[str, Path]:
        """Draw the CMC curve (with its band), rank lists, pair distances, the camera matrix."""
        import plp_eval
        import plp_viz

        config = context.config
        query = context.features[context.query_split]
        gallery = context.features[context.gallery_split]
        plots: dict[str, Path] = {
            "cmc": plp_viz.plot_cmc(
                self._result.cmc,
                plot_path("cmc.png"),
                max_rank=config.evaluate.max_rank,
                title=f"{config.name}: CMC ({context.query_split} vs {context.gallery_split})",
                intervals=self._cmc_band,
            )
        }
        rank_list = self._draw_rank_list(context, plot_path)
        if rank_list is not None:
            plots["rank_list"] = rank_list
            if (files := plot_path("rank_list.json")).is_file():  # data with files only
                plots["rank_list_files"] = files
        pairs = plp_eval.pair_distances(
            query.features,
            query.labels,
            gallery.features,
            gallery.labels,
            **junk_arrays(query, gallery),
            metric=config.evaluate.reid_metric,
            seed=config.seed,
            query_in_gallery=config.evaluate.protocol == "test_leave_one_out",
        )
        if len(pairs.positive) + len(pairs.negative):
            plots["distances"] = plp_viz.plot_distance_histogram(
                pairs.positive,
                pairs.negative,
                plot_path("distance_histogram.png"),
                metric=config.evaluate.reid_metric,
                num_positive=pairs.num_positive,
                num_negative=pairs.num_negative,
                title=f"{config.name}: {context.query_split} x {context.gallery_split} pairs",
            )
        if self._cameras is not None:
            plots["camera_map"] = plp_viz.plot_camera_matrix(
                self._cameras.mean_average_precision,
                self._cameras.query_cameras,
                self._cameras.gallery_cameras,
                plot_path("camera_map.png"),
                num_valid_queries=self._cameras.num_valid_queries,
                title=f"{config.name}: mAP by query camera x gallery camera",
            )
        return plots

    def _draw_rank_list(
        self, context: EvaluationContext, plot_path: Callable[[str], Path]
    ) -> Path | None:
        """Draw the worst queries (lowest AP) above random ones with their top-k gallery images.

        For data with files the rows are also written by file (``rank_list.json``). The lists
        are the metrics' rankings (``plp_eval.protocol_rank_lists``): same-label same-camera
        items and the query itself are left out, as the metrics leave them out.
        """
        import numpy as np

        import plp_viz

        config = context.config
        query = context.features[context.query_split]
        gallery = context.features[context.gallery_split]
        average_precision = np.asarray(self._result.average_precision, dtype=np.float64)
        if not np.isfinite(average_precision).any():
            return None
        num_worst = RANK_LIST_QUERIES // 2
        worst, random = plp_viz.rank_list_queries(
            average_precision,
            num_worst=num_worst,
            num_random=RANK_LIST_QUERIES - num_worst,
            seed=config.seed,
        )
        chosen = np.concatenate([worst, random])  # worst first, as plot_rank_list expects
        indices = protocol_lists(config, query, gallery, chosen, RANK_LIST_TOP_K)
        if query.paths is not None and gallery.paths is not None:
            _write_rank_list_files(
                plot_path("rank_list.json"), query, gallery, chosen, len(worst), indices,
                average_precision,
            )  # fmt: skip
        query_set = context.datamodule.split_dataloader(context.query_split).dataset
        gallery_set = context.datamodule.split_dataloader(context.gallery_split).dataset
        query_images = np.stack([np.asarray(query_set[int(i)][0]) for i in chosen])
        shown = np.unique(indices[indices >= 0])  # load only the images on show, re-indexed
        gallery_images = np.stack([np.asarray(gallery_set[int(i)][0]) for i in shown])
        return plp_viz.plot_rank_list(
            query_images,
            query.labels[chosen],
            gallery_images,
            gallery.labels[shown],
            np.where(indices >= 0, np.searchsorted(shown, indices), -1),
            plot_path("rank_list.png"),
            max_queries=len(chosen),
            worst_queries=len(worst),
            query_average_precision=average_precision[chosen],
            class_names=context.data.class_names,
            seed=config.seed,
        )

    def report(self, metrics: Mapping[str, Any]) -> list[str]:
        """Return the report's re-ID section: intervals, classes, cameras, categories."""
        from plp_pipelines._intervals import reid_report

        return reid_report(metrics)


def _write_rank_list_files(
    path: Path,
    query: SplitFeatures,
    gallery: SplitFeatures,
    chosen: Any,
    num_worst: int,
    indices: Any,
    average_precision: Any,
) -> None:
    """Write the rank list's rows by file: each query's file, label, AP and its ranked files."""
    import json

    assert query.paths is not None and gallery.paths is not None
    rows = [
        {
            "query": str(query.paths[row]),
            "label": int(query.labels[row]),
            "AP": float(average_precision[row]),
            "kind": "worst" if number < num_worst else "random",
            "results": [
                {
                    "path": str(gallery.paths[item]),
                    "label": int(gallery.labels[item]),
                    "match": bool(gallery.labels[item] == query.labels[row]),
                }
                for item in ranked
                if item >= 0
            ],
        }
        for number, (row, ranked) in enumerate(zip(chosen, indices, strict=True))
    ]
    path.write_text(json.dumps({"queries": rows}, indent=1) + "\n", encoding="utf-8")


def _writes(context: EvaluationContext) -> bool:
    """Whether this process writes the results (rank 0, or the only process)."""
    if not context.distributed:
        return True
    import torch

    return bool(torch.distributed.get_rank() == 0)
